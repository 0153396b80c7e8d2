//! Online snapshots: taken while writers run, verified by checksum, restored into a fresh data
//! folder that opens to a consistent cut of the writes (every writer's records form a prefix,
//! everything acknowledged before the snapshot started is there, every record is bit-exact).

use std::collections::HashMap;
use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{Map, Value};
use vectord::catalog::{Catalog, NewCollection};
use vectord::engine::{Collection, CollectionConfig};
use vectord::snapshot::{self, SnapshotError};
use vectord::types::{Columns, GetRequest, Include, MetadataValue, WriteBatch};

const DIM: usize = 16;
const BATCH: u64 = 20;

fn vector(writer: u64, i: u64) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((writer * 7919 + i * 31 + d as u64) % 1000) as f32 / 1000.0)
        .collect()
}

fn id(writer: u64, i: u64) -> String {
    format!("w{writer}-{i:06}")
}

fn batch(writer: u64, start: u64) -> WriteBatch {
    let ids: Vec<String> = (start..start + BATCH).map(|i| id(writer, i)).collect();
    let embeddings: Vec<Vec<f32>> = (start..start + BATCH).map(|i| vector(writer, i)).collect();
    let metadatas = (start..start + BATCH)
        .map(|i| {
            let mut m = std::collections::BTreeMap::new();
            m.insert("i".to_string(), Some(MetadataValue::Int(i as i64)));
            Some(m)
        })
        .collect();
    let documents = (start..start + BATCH)
        .map(|i| Some(format!("doc {writer} {i}")))
        .collect();
    WriteBatch::upsert(Columns {
        ids,
        embeddings: Some(embeddings),
        metadatas: Some(metadatas),
        documents: Some(documents),
        uris: None,
    })
    .expect("valid batch")
}

fn new_collection(catalog: &Catalog, name: &str) -> Arc<Collection> {
    let (entry, _) = catalog
        .create_collection(
            NewCollection {
                tenant: "default_tenant".into(),
                database: "default_database".into(),
                name: name.into(),
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

/// Every record of `c`, by id: (embedding, document, metadata `i`).
/// A restored record: embedding, document and metadata `i`.
type Row = (Vec<f32>, Option<String>, Option<i64>);

fn dump(c: &Collection) -> HashMap<String, Row> {
    let res = c
        .get(&GetRequest {
            include: Include {
                embeddings: true,
                documents: true,
                metadatas: true,
                ..Default::default()
            },
            ..Default::default()
        })
        .expect("get");
    let mut out = HashMap::new();
    for (k, id) in res.ids.iter().enumerate() {
        let emb = res.embeddings.as_ref().expect("embeddings")[k].clone();
        let doc = res.documents.as_ref().expect("documents")[k].clone();
        let i = res.metadatas.as_ref().expect("metadatas")[k]
            .as_ref()
            .and_then(|m| match m.get("i") {
                Some(MetadataValue::Int(i)) => Some(*i),
                _ => None,
            });
        out.insert(id.clone(), (emb, doc, i));
    }
    out
}

#[test]
fn snapshot_under_load_restores_a_consistent_cut() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let catalog = Catalog::open(&data).expect("open catalog");
    let colls = [
        new_collection(&catalog, "alpha"),
        new_collection(&catalog, "beta"),
    ];
    // Small memtables so flushes (and a compaction) happen during the snapshot.
    for c in &colls {
        c.set_memtable_rows(200);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Vec<Arc<AtomicU64>> = (0..4).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let c = Arc::clone(&colls[(w % 2) as usize]);
        let stop = Arc::clone(&stop);
        let acked = Arc::clone(&acked[w as usize]);
        writers.push(std::thread::spawn(move || {
            let mut next = 0;
            while !stop.load(Ordering::Relaxed) && next < 4000 {
                c.apply(batch(w, next), None).expect("apply");
                next += BATCH;
                acked.store(next, Ordering::SeqCst);
            }
        }));
    }
    while acked.iter().map(|a| a.load(Ordering::SeqCst)).min() < Some(400) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    let root = tmp.path().join("snapshots");
    let name = snapshot::new_name(&root);
    let info = snapshot::create(&catalog, &root, &name).expect("snapshot");
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    assert_eq!(info.collections, 2);
    assert!(info.files.iter().any(|f| f.path == "catalog.json"));
    snapshot::verify(&root.join(&name)).expect("verify");
    drop(colls);
    drop(catalog);

    let restored_dir = tmp.path().join("restored");
    snapshot::restore(&root.join(&name), &restored_dir, false).expect("restore");
    let restored = Catalog::open(&restored_dir).expect("open restored");
    assert!(restored.failed_collections().is_empty());
    for (ci, cname) in ["alpha", "beta"].iter().enumerate() {
        let entry = restored
            .collection_by_name("default_tenant", "default_database", cname)
            .expect("restored collection");
        let records = dump(entry.engine().expect("engine"));
        for w in (0..4u64).filter(|w| (w % 2) as usize == ci) {
            let mine: Vec<u64> = {
                let mut v: Vec<u64> = records
                    .keys()
                    .filter_map(|k| k.strip_prefix(&format!("w{w}-")))
                    .map(|s| s.parse().expect("numeric id"))
                    .collect();
                v.sort_unstable();
                v
            };
            let n = mine.len() as u64;
            assert!(
                n >= before[w as usize],
                "writer {w}: {n} records restored, {} were acknowledged before the snapshot",
                before[w as usize]
            );
            assert_eq!(n % BATCH, 0, "writer {w}: a batch was cut in half");
            assert_eq!(mine, (0..n).collect::<Vec<_>>(), "writer {w}: not a prefix");
            for i in 0..n {
                let (emb, doc, meta_i) = &records[&id(w, i)];
                assert_eq!(emb, &vector(w, i));
                assert_eq!(doc.as_deref(), Some(format!("doc {w} {i}").as_str()));
                assert_eq!(*meta_i, Some(i as i64));
            }
        }
    }
}

#[test]
fn restore_refuses_a_damaged_or_partial_snapshot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let root = tmp.path().join("snapshots");
    let name = {
        let catalog = Catalog::open(&data).expect("open catalog");
        let c = new_collection(&catalog, "gamma");
        c.apply(batch(0, 0), None).expect("apply");
        c.flush().expect("flush");
        c.apply(batch(0, BATCH), None).expect("apply");
        let name = snapshot::new_name(&root);
        snapshot::create(&catalog, &root, &name).expect("snapshot");
        name
    };
    let snap = root.join(&name);
    // Flip one byte in a segment file: verify and restore name that file.
    let info = snapshot::verify(&snap).expect("verify");
    let victim = info
        .files
        .iter()
        .find(|f| f.path.contains("/segments/") && f.bytes > 0)
        .expect("a segment file");
    let victim_path = snap.join(&victim.path);
    let mut bytes = fs::read(&victim_path).expect("read");
    bytes[victim.bytes as usize / 2] ^= 0x40;
    // Segment files are hard links into the data folder: write a new inode, do not damage the
    // collection itself.
    fs::remove_file(&victim_path).expect("unlink");
    fs::write(&victim_path, &bytes).expect("write");
    let target = tmp.path().join("restored");
    match snapshot::restore(&snap, &target, false) {
        Err(SnapshotError::Invalid { path, reason }) => {
            assert_eq!(path, victim_path);
            assert!(reason.contains("checksum mismatch"), "{reason}");
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    assert!(
        !target.exists(),
        "a failed restore must leave nothing behind"
    );

    // Without SNAPSHOT.json it is not a snapshot at all.
    fs::remove_file(snap.join(snapshot::SNAPSHOT_FILE)).expect("remove");
    assert!(matches!(
        snapshot::restore(&snap, &target, false),
        Err(SnapshotError::Invalid { .. })
    ));
    // The original data folder still opens intact.
    let catalog = Catalog::open(&data).expect("reopen");
    let entry = catalog
        .collection_by_name("default_tenant", "default_database", "gamma")
        .expect("collection");
    assert_eq!(entry.engine().expect("engine").count(), 2 * BATCH);
}

#[test]
fn restore_over_existing_data_needs_force_and_keeps_the_old_folder() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let root = tmp.path().join("snapshots");
    let name = {
        let catalog = Catalog::open(&data).expect("open");
        let c = new_collection(&catalog, "delta");
        c.apply(batch(1, 0), None).expect("apply");
        let name = snapshot::new_name(&root);
        snapshot::create(&catalog, &root, &name).expect("snapshot");
        c.apply(batch(1, BATCH), None)
            .expect("apply after snapshot");
        name
    };
    let snap = root.join(&name);
    assert!(matches!(
        snapshot::restore(&snap, &data, false),
        Err(SnapshotError::TargetNotEmpty(_))
    ));
    {
        let _running = Catalog::open(&data).expect("open");
        assert!(matches!(
            snapshot::restore(&snap, &data, true),
            Err(SnapshotError::TargetLocked(_))
        ));
    }
    snapshot::restore(&snap, &data, true).expect("forced restore");
    let catalog = Catalog::open(&data).expect("open restored");
    let entry = catalog
        .collection_by_name("default_tenant", "default_database", "delta")
        .expect("collection");
    assert_eq!(entry.engine().expect("engine").count(), BATCH);
    let kept = fs::read_dir(tmp.path()).expect("list").flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with("data.before-restore-")
    });
    assert!(kept, "the replaced folder is kept beside the restored one");
}

#[test]
fn prune_keeps_the_newest() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let catalog = Catalog::open(&tmp.path().join("data")).expect("open");
    let root = tmp.path().join("snapshots");
    let mut names = Vec::new();
    for _ in 0..3 {
        let name = snapshot::new_name(&root);
        snapshot::create(&catalog, &root, &name).expect("snapshot");
        names.push(name);
    }
    fs::create_dir_all(root.join(".snapshot-x.partial")).expect("leftover");
    let removed = snapshot::prune(&root, 2).expect("prune");
    assert_eq!(removed, vec![names[0].clone()]);
    let left: Vec<String> = snapshot::list(&root)
        .expect("list")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(left, names[1..].to_vec());
    assert!(!root.join(".snapshot-x.partial").exists());
}
