//! Online snapshots: taken while writers run, verified by checksum, restored into a fresh data
//! folder that opens to a consistent cut of the writes (every writer's records form a prefix,
//! everything acknowledged before the snapshot started is there, every record is bit-exact).
//! One-collection snapshots and restores leave the other collections alone; purging deleted
//! records leaves none of their bytes in the collection's files.

use std::collections::HashMap;
use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Map, Value};
use uuid::Uuid;
use vectord::backup::error::SnapshotError;
use vectord::backup::{local, manifest, restore};
use vectord::catalog::{Catalog, CollectionSelector, NewCollection};
use vectord::engine::{Collection, CollectionConfig};
use vectord::types::{Columns, DeleteSelector, GetRequest, Include, MetadataValue, WriteBatch};

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
    let name = local::new_name(&root);
    let info = local::create(&catalog, &root, &name).expect("snapshot");
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    assert_eq!(info.collections, 2);
    assert!(info.files.iter().any(|f| f.path == "catalog.json"));
    local::verify(&root.join(&name)).expect("verify");
    drop(colls);
    drop(catalog);

    let restored_dir = tmp.path().join("restored");
    restore::restore(&root.join(&name), &restored_dir, false).expect("restore");
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
        let name = local::new_name(&root);
        local::create(&catalog, &root, &name).expect("snapshot");
        name
    };
    let snap = root.join(&name);
    // Flip one byte in a segment file: verify and restore name that file.
    let (victim_path, _) = damage_a_segment(&snap);
    let target = tmp.path().join("restored");
    match restore::restore(&snap, &target, false) {
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
    fs::remove_file(snap.join(manifest::SNAPSHOT_FILE)).expect("remove");
    assert!(matches!(
        restore::restore(&snap, &target, false),
        Err(SnapshotError::Invalid { .. })
    ));
    // The original data folder still opens intact.
    assert_eq!(count_in(&data, "gamma"), 2 * BATCH);
}

#[test]
fn restore_over_existing_data_needs_force_and_swaps_inside_the_folder() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    // The default layout: snapshots inside the data folder, which on Fly is the volume's mount
    // point. The restore must neither rename the folder nor write beside it.
    let root = data.join("snapshots");
    let name = {
        let catalog = Catalog::open(&data).expect("open");
        let c = new_collection(&catalog, "delta");
        c.apply(batch(1, 0), None).expect("apply");
        let name = local::new_name(&root);
        local::create(&catalog, &root, &name).expect("snapshot");
        c.apply(batch(1, BATCH), None)
            .expect("apply after snapshot");
        name
    };
    let snap = root.join(&name);
    assert!(matches!(
        restore::restore(&snap, &data, false),
        Err(SnapshotError::TargetNotEmpty(_))
    ));
    {
        let _running = Catalog::open(&data).expect("open");
        assert!(matches!(
            restore::restore(&snap, &data, true),
            Err(SnapshotError::TargetLocked(_))
        ));
    }
    let names = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let beside_before = names(tmp.path());
    let inode_before = fs::metadata(&data).expect("stat").ino();
    let done = restore::restore(&snap, &data, true).expect("forced restore");
    assert_eq!(
        names(tmp.path()),
        beside_before,
        "nothing written beside the folder"
    );
    assert_eq!(
        fs::metadata(&data).expect("stat").ino(),
        inode_before,
        "the folder itself stays"
    );
    let kept = done.kept_aside.expect("the replaced data is kept");
    assert!(
        kept.starts_with(&data),
        "kept inside the folder: {}",
        kept.display()
    );
    assert_eq!(names(&kept), ["catalog.json", "collections"]);
    let mut left = names(&data);
    left.retain(|n| !n.starts_with(".before-restore-"));
    assert_eq!(left, ["LOCK", "catalog.json", "collections", "snapshots"]);
    local::verify(&snap).expect("the snapshots folder is left alone");

    assert_eq!(count_in(&data, "delta"), BATCH);
    // What was kept aside is a data folder of its own: the records written after the snapshot
    // are still there.
    assert_eq!(count_in(&kept, "delta"), 2 * BATCH);
}

/// The record count of collection `name` (default database) in the data folder `dir`.
fn count_in(dir: &std::path::Path, name: &str) -> u64 {
    let catalog = Catalog::open(dir).expect("open catalog");
    let entry = catalog
        .collection_by_name("default_tenant", "default_database", name)
        .expect("collection");
    entry.engine().expect("engine").count()
}

/// Flips one byte of a segment file in snapshot `snap`; returns the file and its good bytes.
/// The file is written as a new inode: segment files are hard links into the data folder, which
/// must stay intact.
fn damage_a_segment(snap: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let info = local::verify(snap).expect("verify");
    let victim = info
        .files
        .iter()
        .find(|f| f.path.contains("/segments/") && f.bytes > 0)
        .expect("a segment file");
    let victim_path = snap.join(&victim.path);
    let good = fs::read(&victim_path).expect("read");
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0x40;
    fs::remove_file(&victim_path).expect("unlink");
    fs::write(&victim_path, &bad).expect("write");
    (victim_path, good)
}

#[test]
fn leftover_staging_and_downloads_are_removed_when_the_server_opens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    for dir in [
        ".restore-staging/collections/x",
        ".restore-download-123/snapshot-1",
        "collections/.restoring-7b0c7d5e-0000-4000-8000-000000000000",
    ] {
        fs::create_dir_all(data.join(dir)).expect("leftover");
        fs::write(data.join(dir).join("f"), b"phi").expect("leftover file");
    }
    fs::create_dir_all(data.join(".before-restore-20260101T000000Z")).expect("kept");
    drop(Catalog::open(&data).expect("open"));
    assert!(!data.join(".restore-staging").exists());
    assert!(!data.join(".restore-download-123").exists());
    assert!(!data
        .join("collections/.restoring-7b0c7d5e-0000-4000-8000-000000000000")
        .exists());
    assert!(
        data.join(".before-restore-20260101T000000Z").exists(),
        "kept data is the operator's to delete"
    );
}

#[test]
fn prune_keeps_the_newest() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let catalog = Catalog::open(&tmp.path().join("data")).expect("open");
    let root = tmp.path().join("snapshots");
    let mut names = Vec::new();
    for _ in 0..3 {
        let name = local::new_name(&root);
        local::create(&catalog, &root, &name).expect("snapshot");
        names.push(name);
    }
    fs::create_dir_all(root.join(".snapshot-x.partial")).expect("leftover");
    let removed = local::prune(&root, 2).expect("prune");
    assert_eq!(removed, vec![names[0].clone()]);
    let left: Vec<String> = local::list(&root)
        .expect("list")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(left, names[1..].to_vec());
    assert!(!root.join(".snapshot-x.partial").exists());
}

/// Starts `writers` threads writing batches to `targets[w % len]` until `stop`; each notes how
/// far it has been acknowledged and how far it has *issued* (a batch not yet acknowledged).
struct Load {
    stop: Arc<AtomicBool>,
    acked: Vec<Arc<AtomicU64>>,
    issued: Vec<Arc<AtomicU64>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(targets: &[Arc<Collection>], writers: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Vec<Arc<AtomicU64>> = (0..writers).map(|_| Arc::default()).collect();
        let issued: Vec<Arc<AtomicU64>> = (0..writers).map(|_| Arc::default()).collect();
        let threads = (0..writers)
            .map(|w| {
                let c = Arc::clone(&targets[(w as usize) % targets.len()]);
                let (stop, acked, issued) = (
                    Arc::clone(&stop),
                    Arc::clone(&acked[w as usize]),
                    Arc::clone(&issued[w as usize]),
                );
                std::thread::spawn(move || {
                    let mut next = 0;
                    while !stop.load(Ordering::Relaxed) && next < 4000 {
                        issued.store(next + BATCH, Ordering::SeqCst);
                        c.apply(batch(w, next), None).expect("apply");
                        next += BATCH;
                        acked.store(next, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        Load {
            stop,
            acked,
            issued,
            threads,
        }
    }

    fn wait_for(&self, at_least: u64) {
        while self.acked.iter().map(|a| a.load(Ordering::SeqCst)).min() < Some(at_least) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn read(v: &[Arc<AtomicU64>]) -> Vec<u64> {
        v.iter().map(|a| a.load(Ordering::SeqCst)).collect()
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("writer");
        }
    }
}

/// Writer `w`'s ids in `records`, sorted by their number.
fn writer_ids(records: &HashMap<String, Row>, w: u64) -> Vec<u64> {
    let mut v: Vec<u64> = records
        .keys()
        .filter_map(|k| k.strip_prefix(&format!("w{w}-")))
        .map(|s| s.parse().expect("numeric id"))
        .collect();
    v.sort_unstable();
    v
}

fn new_collection_with(catalog: &Catalog, name: &str, metadata: Value, conf: Value) -> Uuid {
    let (entry, _) = catalog
        .create_collection(
            NewCollection {
                tenant: "default_tenant".into(),
                database: "default_database".into(),
                name: name.into(),
                metadata: metadata.as_object().cloned(),
                configuration: Some(conf),
                schema: None,
                config: CollectionConfig::default(),
            },
            false,
        )
        .expect("create collection");
    entry.record.id
}

/// A snapshot of one collection taken while four writers load it and another collection holds
/// exactly a consistent cut of that collection — each writer's records a whole-batch prefix
/// between what was acknowledged before the snapshot and what had been issued when it
/// returned — and nothing of the other. Restoring it into the (stopped) folder replaces that
/// collection with the cut, with its catalog record, and leaves the other collection as it was.
#[test]
fn collection_snapshot_under_load_restores_only_that_collection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let root = tmp.path().join("snapshots");
    let catalog = Catalog::open(&data).expect("open catalog");
    let alpha_id = new_collection_with(
        &catalog,
        "alpha",
        json!({"owner": "radiology"}),
        json!({"hnsw": {"space": "l2"}}),
    );
    let alpha = Arc::clone(
        catalog
            .select(&CollectionSelector::new("alpha"))
            .expect("alpha")
            .engine()
            .expect("engine"),
    );
    let beta = new_collection(&catalog, "beta");
    for c in [&alpha, &beta] {
        c.set_memtable_rows(200);
    }
    let alpha_record = catalog
        .select(&CollectionSelector::new(alpha_id.to_string()))
        .expect("by id")
        .record;
    // Writers 0 and 2 write alpha, 1 and 3 beta.
    let load = Load::start(&[Arc::clone(&alpha), Arc::clone(&beta)], 4);
    load.wait_for(400);
    let before = Load::read(&load.acked);
    let name = local::new_name_for(&root, Some(alpha_id));
    let info = local::create_scoped(&catalog, &root, &name, Some(alpha_id)).expect("snapshot");
    let issued = Load::read(&load.issued);
    load.stop();
    assert_eq!(info.collection, Some(alpha_id));
    assert_eq!(info.collections, 1);
    assert!(name.ends_with(&alpha_id.to_string()));
    let other_files: Vec<&str> = info
        .files
        .iter()
        .map(|f| f.path.as_str())
        .filter(|p| *p != "catalog.json" && !p.starts_with(&format!("collections/{alpha_id}/")))
        .collect();
    assert!(other_files.is_empty(), "{other_files:?}");
    local::verify(&root.join(&name)).expect("verify");

    // Writes after the snapshot, to both: the restore must undo alpha's and keep beta's.
    alpha.apply(batch(10, 0), None).expect("late alpha write");
    beta.apply(batch(11, 0), None).expect("late beta write");
    let beta_before = dump(&beta);
    drop((alpha, beta));

    // The whole-folder restore refuses a one-collection snapshot: it would drop beta.
    assert!(matches!(
        restore::restore(&root.join(&name), &tmp.path().join("elsewhere"), false),
        Err(SnapshotError::OneCollection { .. })
    ));
    // A running server holds the folder: restoring under it is refused, and says so.
    match restore::restore_collection(&root.join(&name), &data, None, true) {
        Err(e @ SnapshotError::TargetLocked(_)) => {
            assert!(e.to_string().contains("stop it"), "{e}")
        }
        other => panic!("expected TargetLocked, got {other:?}"),
    }
    drop(catalog);
    // The collection exists: replacing it needs force.
    assert!(matches!(
        restore::restore_collection(&root.join(&name), &data, None, false),
        Err(SnapshotError::CollectionPresent { .. })
    ));
    let done = restore::restore_collection(&root.join(&name), &data, None, true).expect("restore");
    assert_eq!(done.record, alpha_record);
    let aside = done.kept_aside.expect("old folder kept");
    assert!(aside.starts_with(data.join("collections")));

    let catalog = Catalog::open(&data).expect("reopen");
    assert!(catalog.failed_collections().is_empty());
    let entry = catalog
        .select(&CollectionSelector::new("alpha"))
        .expect("alpha restored");
    assert_eq!(
        entry.record, alpha_record,
        "catalog record restored as it was"
    );
    let records = dump(entry.engine().expect("engine"));
    assert!(
        !records.keys().any(|k| k.starts_with("w10-")),
        "a write after the cut came back"
    );
    for w in [0u64, 2] {
        let mine = writer_ids(&records, w);
        let n = mine.len() as u64;
        assert!(
            n >= before[w as usize] && n <= issued[w as usize],
            "writer {w}: {n} records, acknowledged before {}, issued by the end {}",
            before[w as usize],
            issued[w as usize]
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
    assert!(
        !records
            .keys()
            .any(|k| k.starts_with("w1-") || k.starts_with("w3-")),
        "beta's records leaked into alpha"
    );
    let beta_after = dump(
        catalog
            .select(&CollectionSelector::new("beta"))
            .expect("beta")
            .engine()
            .expect("engine"),
    );
    assert!(beta_after == beta_before, "beta changed");
}

/// A one-collection restore into another folder adds the collection (catalog record, tenant
/// and database) beside what is there; a damaged or partial snapshot changes nothing; a
/// different collection of the same name is never replaced.
#[test]
fn collection_restore_into_another_folder_checks_everything_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("snapshots");
    let (name, rec) = {
        let catalog = Catalog::open(&tmp.path().join("src")).expect("open");
        catalog
            .create_database("default_tenant", "imaging")
            .expect("database");
        let (entry, _) = catalog
            .create_collection(
                NewCollection {
                    tenant: "default_tenant".into(),
                    database: "imaging".into(),
                    name: "scans".into(),
                    metadata: json!({"k": "v"}).as_object().cloned(),
                    configuration: Some(json!({"embedding_function": {"type": "legacy"}})),
                    schema: None,
                    config: CollectionConfig::default(),
                },
                false,
            )
            .expect("create");
        let c = entry.engine().expect("engine");
        c.apply(batch(0, 0), None).expect("apply");
        c.flush().expect("flush");
        c.apply(batch(0, BATCH), None).expect("apply");
        let sel = CollectionSelector {
            collection: "scans".into(),
            tenant: "default_tenant".into(),
            database: "imaging".into(),
        };
        let id = catalog.select(&sel).expect("select").record.id;
        let name = local::new_name_for(&root, Some(id));
        local::create_scoped(&catalog, &root, &name, Some(id)).expect("snapshot");
        (name, entry.record.clone())
    };
    let snap = root.join(&name);
    let target = tmp.path().join("target");
    {
        let catalog = Catalog::open(&target).expect("open target");
        new_collection(&catalog, "resident")
            .apply(batch(5, 0), None)
            .expect("apply");
    }
    let catalog_before = fs::read(target.join("catalog.json")).expect("catalog");

    // Damage one file of the snapshot.
    let (victim_path, good) = damage_a_segment(&snap);
    assert!(matches!(
        restore::restore_collection(&snap, &target, None, true),
        Err(SnapshotError::Invalid { .. })
    ));
    fs::write(&victim_path, &good).expect("repair");
    // Partial: SNAPSHOT.json missing.
    let manifest = fs::read(snap.join(manifest::SNAPSHOT_FILE)).expect("read");
    fs::remove_file(snap.join(manifest::SNAPSHOT_FILE)).expect("remove");
    assert!(matches!(
        restore::restore_collection(&snap, &target, None, true),
        Err(SnapshotError::Invalid { .. })
    ));
    fs::write(snap.join(manifest::SNAPSHOT_FILE), &manifest).expect("put back");
    assert_eq!(
        fs::read(target.join("catalog.json")).expect("catalog"),
        catalog_before,
        "a refused restore changed the catalog"
    );
    assert!(!target.join("collections").join(rec.id.to_string()).exists());

    let done = restore::restore_collection(&snap, &target, None, false).expect("restore");
    assert!(done.kept_aside.is_none());
    let catalog = Catalog::open(&target).expect("open restored");
    assert!(catalog.get_database("default_tenant", "imaging").is_ok());
    let entry = catalog
        .select(&CollectionSelector {
            collection: "scans".into(),
            tenant: "default_tenant".into(),
            database: "imaging".into(),
        })
        .expect("restored");
    assert_eq!(entry.record, rec);
    assert_eq!(entry.engine().expect("engine").count(), 2 * BATCH);
    let resident = catalog
        .select(&CollectionSelector::new("resident"))
        .expect("resident kept");
    assert_eq!(resident.engine().expect("engine").count(), BATCH);
    drop((entry, resident));
    drop(catalog);

    // A different collection named "scans" in imaging: refused even with force.
    let other = tmp.path().join("other");
    {
        let catalog = Catalog::open(&other).expect("open");
        catalog
            .create_database("default_tenant", "imaging")
            .expect("database");
        catalog
            .create_collection(
                NewCollection {
                    tenant: "default_tenant".into(),
                    database: "imaging".into(),
                    name: "scans".into(),
                    metadata: None,
                    configuration: None,
                    schema: None,
                    config: CollectionConfig::default(),
                },
                false,
            )
            .expect("create");
    }
    assert!(matches!(
        restore::restore_collection(&snap, &other, None, true),
        Err(SnapshotError::NameTaken { .. })
    ));
}

/// Retention counts each scope apart: collection snapshots do not push out folder snapshots.
#[test]
fn prune_counts_each_scope_apart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let catalog = Catalog::open(&tmp.path().join("data")).expect("open");
    let id = new_collection_with(&catalog, "solo", json!({}), json!({}));
    let root = tmp.path().join("snapshots");
    let whole = local::new_name(&root);
    local::create(&catalog, &root, &whole).expect("snapshot");
    let mut mine = Vec::new();
    for _ in 0..3 {
        let name = local::new_name_for(&root, Some(id));
        local::create_scoped(&catalog, &root, &name, Some(id)).expect("snapshot");
        mine.push(name);
    }
    let removed = local::prune(&root, 1).expect("prune");
    assert_eq!(removed, mine[..2].to_vec());
    let left: Vec<String> = local::list(&root)
        .expect("list")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&whole) && left.contains(&mine[2]));
}

/// Every file under `dir` holding `needle`, as paths relative to `dir`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("list").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if fs::read(&path)
                .expect("read")
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                out.push(
                    path.strip_prefix(dir)
                        .expect("under dir")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    out
}

fn phi_batch(prefix: &str, range: std::ops::Range<u64>) -> WriteBatch {
    let ids: Vec<String> = range
        .clone()
        .map(|i| format!("{prefix}-id-{i:04}"))
        .collect();
    WriteBatch::upsert(Columns {
        ids,
        embeddings: Some(range.clone().map(|i| vector(9, i)).collect()),
        metadatas: None,
        documents: Some(
            range
                .map(|i| Some(format!("{prefix} patient note {i:04} zqx")))
                .collect(),
        ),
        uris: None,
    })
    .expect("valid batch")
}

fn delete_ids(c: &Collection, prefix: &str, range: std::ops::Range<u64>) {
    let ids = range.map(|i| format!("{prefix}-id-{i:04}")).collect();
    c.apply(
        WriteBatch::Delete(DeleteSelector {
            ids: Some(ids),
            filter: None,
            limit: None,
        }),
        None,
    )
    .expect("delete");
}

/// Deleted records — some already in a segment, some still in the memtable and WAL, one
/// superseded by an upsert — leave no byte of their document or id in any file of the
/// collection after a purge; live records stay, and the folder reopens to the same state.
#[test]
fn purge_leaves_no_deleted_record_in_any_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let catalog = Catalog::open(&data).expect("open");
    let c = new_collection(&catalog, "notes");
    let dir = c.dir().to_path_buf();
    c.apply(phi_batch("gone", 0..20), None).expect("apply");
    c.apply(phi_batch("keep", 0..20), None).expect("apply");
    c.flush().expect("flush");
    c.apply(phi_batch("gone", 20..40), None).expect("apply");
    c.apply(phi_batch("keep", 20..40), None).expect("apply");
    // One live record's earlier version: its document must go too.
    c.apply(phi_batch("old", 0..1), None).expect("apply");
    c.flush().expect("flush");
    c.apply(
        WriteBatch::upsert(Columns {
            ids: vec!["old-id-0000".into()],
            embeddings: Some(vec![vector(9, 0)]),
            metadatas: None,
            documents: Some(vec![Some("rewritten note".into())]),
            uris: None,
        })
        .expect("batch"),
        None,
    )
    .expect("upsert");
    c.apply(phi_batch("gone", 40..50), None)
        .expect("apply (memtable only)");
    delete_ids(&c, "gone", 0..50);
    // The data is stored in the clear, so the checks below can see it.
    assert!(!files_containing(&dir, "gone patient note 0005 zqx").is_empty());
    assert!(!files_containing(&dir, "gone patient note 0045 zqx").is_empty());

    let report = c.purge_deleted().expect("purge");
    assert!(report.flushed && report.compacted, "{report:?}");
    assert_eq!(report.segments, 1);
    assert_eq!(report.tombstones, 0);
    for i in [0u64, 19, 20, 39, 40, 49] {
        for needle in [
            format!("gone patient note {i:04} zqx"),
            format!("gone-id-{i:04}"),
        ] {
            let hits = files_containing(&dir, &needle);
            assert!(hits.is_empty(), "{needle:?} still in {hits:?}");
        }
    }
    let old = files_containing(&dir, "old patient note 0000 zqx");
    assert!(old.is_empty(), "the superseded version is still in {old:?}");
    assert!(!files_containing(&dir, "keep patient note 0033 zqx").is_empty());
    assert_eq!(c.count(), 41);
    drop(c);
    drop(catalog);
    let catalog = Catalog::open(&data).expect("reopen");
    let c = catalog
        .select(&CollectionSelector::new("notes"))
        .expect("notes");
    let records = dump(c.engine().expect("engine"));
    assert_eq!(records.len(), 41);
    assert!(!records.keys().any(|k| k.starts_with("gone-")));
    assert_eq!(records["old-id-0000"].1.as_deref(), Some("rewritten note"));
}

/// With nothing in the memtable, the deletes of segment rows live only in the WAL (ids) and
/// in-memory tombstones; a purge checkpoints the WAL so the ids go, and the deletes survive a
/// reopen.
#[test]
fn purge_checkpoints_a_wal_of_deletes_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let catalog = Catalog::open(&data).expect("open");
    let c = new_collection(&catalog, "notes");
    let dir = c.dir().to_path_buf();
    c.apply(phi_batch("gone", 0..10), None).expect("apply");
    c.apply(phi_batch("keep", 0..10), None).expect("apply");
    c.flush().expect("flush");
    delete_ids(&c, "gone", 0..10);
    assert!(!files_containing(&dir.join("wal"), "gone-id-0003").is_empty());

    let report = c.purge_deleted().expect("purge");
    assert!(report.wal_checkpointed && !report.flushed, "{report:?}");
    assert!(report.compacted, "{report:?}");
    assert_eq!(report.dropped_rows, 10);
    for i in 0..10u64 {
        for needle in [
            format!("gone-id-{i:04}"),
            format!("gone patient note {i:04} zqx"),
        ] {
            let hits = files_containing(&dir, &needle);
            assert!(hits.is_empty(), "{needle:?} still in {hits:?}");
        }
    }
    // Nothing left to do: a second purge changes nothing.
    let again = c.purge_deleted().expect("purge again");
    assert!(
        !again.flushed && !again.wal_checkpointed && !again.compacted,
        "{again:?}"
    );
    drop(c);
    drop(catalog);
    let catalog = Catalog::open(&data).expect("reopen");
    let c = catalog
        .select(&CollectionSelector::new("notes"))
        .expect("notes");
    assert_eq!(c.engine().expect("engine").count(), 10);
}
