//! 1,000+ collections: created through the catalog with a few rows each (a third flushed to
//! segments, the rest still in their WAL), then the catalog is closed and reopened (a server
//! restart) and must open them all, answer queries on a sample, and stay within bounded file
//! descriptors and threads: mapped segment files hold no descriptor, and background work runs
//! on the shared pool, not one thread per collection. Its own test binary, so no other test's
//! files or threads are counted.

use std::sync::Arc;

use serde_json::{Map, Value};
use vectord::catalog::{Catalog, NewCollection};
use vectord::engine::{Collection, CollectionConfig};
use vectord::types::{Columns, Include, QueryRequest, WriteBatch};

const COLLECTIONS: usize = 1_000;
const ROWS: usize = 4;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Files mapped into this process (`/proc/self/maps` entries with a path under `dir`).
fn mapped_files(dir: &std::path::Path) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let d = dir.display().to_string();
    maps.lines().filter(|l| l.contains(&d)).count()
}

fn vector(c: usize, r: usize) -> Vec<f32> {
    vec![c as f32, r as f32, 1.0]
}

fn create(catalog: &Catalog, i: usize) -> Arc<Collection> {
    let (entry, _) = catalog
        .create_collection(
            NewCollection {
                tenant: "default_tenant".into(),
                database: "default_database".into(),
                name: format!("c{i:05}"),
                metadata: Some(Map::new()),
                configuration: Some(Value::Object(Map::new())),
                schema: None,
                config: CollectionConfig::default(),
            },
            false,
        )
        .expect("create collection");
    Arc::clone(entry.engine().expect("engine"))
}

#[test]
fn a_thousand_collections_reopen_with_bounded_fds_and_threads() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(dir.path()).unwrap();
    let threads_before = threads();
    for i in 0..COLLECTIONS {
        let c = create(&catalog, i);
        let batch = WriteBatch::add(Columns {
            ids: (0..ROWS).map(|r| format!("r{r}")).collect(),
            embeddings: Some((0..ROWS).map(|r| vector(i, r)).collect()),
            metadatas: None,
            documents: Some((0..ROWS).map(|r| Some(format!("doc {i} {r}"))).collect()),
            uris: None,
        })
        .unwrap();
        c.apply(batch, None).unwrap();
        if i % 3 == 0 {
            assert!(c.flush().unwrap(), "collection {i} wrote no segment");
        }
    }
    // Every write asked the background pool for indexing: still no thread per collection.
    let grown = threads().saturating_sub(threads_before);
    assert!(
        grown <= vectord::engine::pool_threads() + 4,
        "{grown} new threads for {COLLECTIONS} collections"
    );
    drop(catalog);

    let fds_before = open_fds();
    let threads_before = threads();
    let catalog = Catalog::open(dir.path()).unwrap();
    assert_eq!(catalog.collection_count(), COLLECTIONS);
    assert!(
        catalog.failed_collections().is_empty(),
        "{:?}",
        catalog.failed_collections()
    );
    let all = catalog.all_collections();
    let fds = open_fds() - fds_before;
    let mapped = mapped_files(dir.path());
    // Each open collection holds its folder lock and its WAL file; segment files are mapped
    // (334 collections × 4 files here) and hold no descriptor once mapped.
    assert!(
        mapped >= COLLECTIONS / 3,
        "only {mapped} mapped files: segments not mapped?"
    );
    assert!(
        fds <= 2 * COLLECTIONS + 16,
        "{fds} descriptors for {COLLECTIONS} collections ({mapped} mapped files)"
    );
    // Queries on a sample (flushed and unflushed) find each collection's own rows.
    for i in (0..COLLECTIONS).step_by(37) {
        let entry = all
            .iter()
            .find(|e| e.record.name == format!("c{i:05}"))
            .unwrap();
        let c = entry.engine().unwrap();
        assert_eq!(c.count(), ROWS as u64);
        let res = c
            .query(&QueryRequest {
                embeddings: vec![vector(i, 2)],
                n_results: 2,
                ids: None,
                filter: None,
                include: Include::QUERY_DEFAULT,
            })
            .unwrap();
        assert_eq!(res.results[0].ids[0], "r2", "collection {i}");
        assert_eq!(
            res.results[0].documents.as_ref().unwrap()[0].as_deref(),
            Some(format!("doc {i} 2").as_str())
        );
    }
    let grown = threads().saturating_sub(threads_before);
    assert!(
        grown <= vectord::engine::pool_threads() + 4,
        "{grown} new threads after reopening {COLLECTIONS} collections"
    );
    eprintln!(
        "{COLLECTIONS} collections: {fds} fds, {mapped} mapped files, {grown} new threads after reopen"
    );
}
