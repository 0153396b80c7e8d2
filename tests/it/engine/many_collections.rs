//! 1,000+ collections: created through the catalog with a few rows each (a third flushed to
//! segments, the rest still in their WAL), then the catalog is closed and reopened (a server
//! restart) and must open them all, answer queries on a sample, and stay within bounded file
//! descriptors, maps, memtables and threads: mapped segment files hold no descriptor, and
//! background work runs on the shared pool, not one thread per collection. Finally the API
//! refuses one collection more than `--max-collections` with a clear 400.
//!
//! The measurement runs in a fresh process of this test binary (the `#[ignore]`d
//! `a_thousand_collections_child`, which does nothing unless spawned with `CHILD_ENV` set): no
//! other test's files or threads are counted, and the engine's shared pool starts inside it, as
//! it did when this was a test binary of its own.
//!
//! The data folder is on tmpfs (`/dev/shm`) when there is one: this test is about descriptors,
//! maps and threads, not durability, and on a disk its ~3,000 fsyncs alone took 90 s in CI.

use std::sync::Arc;

use crate::support::child::child_test;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Map, Value};
use tower::ServiceExt as _;
use vectord::api::{app, AppState};
use vectord::catalog::{Catalog, NewCollection};
use vectord::config::Limits;
use vectord::config::Settings;
use vectord::engine::{Collection, CollectionConfig};
use vectord::types::{Columns, Include, QueryRequest, WriteBatch};

const COLLECTIONS: usize = 1_024;
const ROWS: usize = 2;
/// Creating threads: the catalog serialises creation itself, but writes and flushes overlap.
const CREATORS: usize = 4;

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

/// A temporary folder on tmpfs if the machine has one (see the file's doc).
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

fn fill(catalog: &Catalog, i: usize) {
    let c = create(catalog, i);
    let batch = WriteBatch::add(Columns {
        ids: (0..ROWS).map(|r| format!("r{r}")).collect(),
        embeddings: Some((0..ROWS).map(|r| vector(i, r)).collect()),
        metadatas: None,
        documents: Some((0..ROWS).map(|r| Some(format!("doc {i} {r}"))).collect()),
        uris: None,
    })
    .unwrap();
    c.apply(batch, None).unwrap();
    if i.is_multiple_of(3) {
        assert!(c.flush().unwrap(), "collection {i} wrote no segment");
    }
}

/// Set for the child process that runs the measurement.
const CHILD_ENV: &str = "VECTORD_MANY_COLLECTIONS_CHILD";

#[test]
fn a_thousand_collections_reopen_with_bounded_fds_and_threads() {
    let out = child_test(module_path!(), "a_thousand_collections_child")
        .env(CHILD_ENV, "1")
        .output()
        .expect("spawn the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    // "1 passed": a child that matched no test would succeed too.
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "the child process failed ({}):\n{stdout}",
        out.status
    );
}

#[test]
#[ignore = "child process of a_thousand_collections_reopen_with_bounded_fds_and_threads; it does nothing unless spawned by it"]
fn a_thousand_collections_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let dir = scratch_dir();
    let catalog = Catalog::open(dir.path()).unwrap();
    let threads_before = threads();
    std::thread::scope(|s| {
        for t in 0..CREATORS {
            let catalog = &catalog;
            s.spawn(move || {
                for i in (t..COLLECTIONS).step_by(CREATORS) {
                    fill(catalog, i);
                }
            });
        }
    });
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
                embeddings: vec![vector(i, ROWS - 1)],
                n_results: 2,
                ids: None,
                filter: None,
                include: Include::QUERY_DEFAULT,
            })
            .unwrap();
        assert_eq!(
            res.results[0].ids[0],
            format!("r{}", ROWS - 1),
            "collection {i}"
        );
        assert_eq!(
            res.results[0].documents.as_ref().unwrap()[0].as_deref(),
            Some(format!("doc {i} {}", ROWS - 1).as_str())
        );
    }
    // Memtables: the 2/3 never flushed hold their rows (replayed from the WAL), nothing more.
    let unflushed = COLLECTIONS - COLLECTIONS.div_ceil(3);
    let (mut memtable_rows, mut memtable_bytes) = (0, 0);
    for e in &all {
        let st = e.engine().unwrap().stats();
        memtable_rows += st.memtable_rows;
        memtable_bytes += st.memtable_bytes;
    }
    assert_eq!(memtable_rows, unflushed * ROWS);
    assert!(
        memtable_bytes <= unflushed * 4096,
        "{memtable_bytes} memtable bytes for {unflushed} memtables of {ROWS} rows"
    );
    let grown = threads().saturating_sub(threads_before);
    assert!(
        grown <= vectord::engine::pool_threads() + 4,
        "{grown} new threads after reopening {COLLECTIONS} collections"
    );
    eprintln!(
        "{COLLECTIONS} collections: {fds} fds, {mapped} mapped files, {memtable_bytes} memtable bytes, {grown} new threads after reopen"
    );
    drop(all);
    at_the_limit_one_more_is_refused(catalog, dir.path());
}

/// Through the real router, with `--max-collections` equal to what the catalog holds: a new
/// name gets Chroma's 400 naming the flag, `get_or_create` of an existing one still answers.
fn at_the_limit_one_more_is_refused(catalog: Catalog, dir: &std::path::Path) {
    #[allow(clippy::needless_update)]
    let settings = Settings {
        path: dir.to_path_buf(),
        snapshot_dir: dir.join("snapshots"),
        limits: Limits {
            max_collections: COLLECTIONS,
            ..Default::default()
        },
        ..Settings::default()
    };
    let router = app(AppState::new(catalog, settings).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let create = |body: Value| {
        let req =
            Request::post("/api/v2/tenants/default_tenant/databases/default_database/collections")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
        rt.block_on(async {
            let resp = router.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        })
    };
    let (status, body) = create(json!({"name": "one_too_many"}));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("InvalidArgumentError") && body.contains("--max-collections"),
        "{body}"
    );
    let (status, body) = create(json!({"name": "c00007", "get_or_create": true}));
    assert_eq!(status, StatusCode::OK, "{body}");
}
