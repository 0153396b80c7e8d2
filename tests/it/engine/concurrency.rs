//! Concurrency invariants with everything running at once: writers, deleters, queries,
//! background flushes and indexing, and explicit compactions.
//! - every acknowledged id is visible (get and query) until it is deleted;
//! - a deleted id is never returned once its delete was acknowledged;
//! - a query returns k results whenever at least k rows are live.
//!
//! Plus: compaction reclaims disk space (delete half, compact, the segment bytes shrink about
//! by half).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vectord::engine::{Collection, CollectionConfig};
use vectord::types::{
    DeleteSelector, GetRequest, Include, QueryRequest, Record, Space, WriteBatch,
};

const DIM: usize = 16;

fn vector(rng: &mut StdRng) -> Vec<f32> {
    (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn folder_bytes(path: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            folder_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

#[test]
fn invariants_hold_under_concurrent_writes_deletes_queries_flushes_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let c = Arc::new(
        Collection::create(
            &dir.path().join("c"),
            CollectionConfig {
                space: Space::Cosine,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    c.set_memtable_rows(700);
    // Ids acknowledged as written and not (yet) deleted; ids whose delete was acknowledged.
    let live: Arc<Mutex<HashSet<String>>> = Arc::default();
    let deleted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut threads = Vec::new();

    for w in 0..2u64 {
        let (c, live, stop, next) = (
            Arc::clone(&c),
            Arc::clone(&live),
            Arc::clone(&stop),
            Arc::clone(&next),
        );
        threads.push(std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(w);
            while !stop.load(Ordering::Relaxed) {
                let records: Vec<Record> = (0..rng.random_range(1..40))
                    .map(|_| Record {
                        id: format!("id{}", next.fetch_add(1, Ordering::Relaxed)),
                        embedding: vector(&mut rng),
                        metadata: None,
                        document: None,
                        uri: None,
                    })
                    .collect();
                let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
                c.apply(WriteBatch::Add(records), None).unwrap();
                live.lock().extend(ids);
            }
        }));
    }
    {
        let (c, live, deleted, stop) = (
            Arc::clone(&c),
            Arc::clone(&live),
            Arc::clone(&deleted),
            Arc::clone(&stop),
        );
        threads.push(std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(99);
            while !stop.load(Ordering::Relaxed) {
                let victims: Vec<String> = {
                    let l = live.lock();
                    l.iter()
                        .filter(|_| rng.random_bool(0.05))
                        .take(30)
                        .cloned()
                        .collect()
                };
                if victims.is_empty() {
                    std::thread::yield_now();
                    continue;
                }
                // Remove from `live` first: from here on the id may disappear at any moment.
                {
                    let mut l = live.lock();
                    for v in &victims {
                        l.remove(v);
                    }
                }
                let sel = DeleteSelector {
                    ids: Some(victims.clone()),
                    ..Default::default()
                };
                c.apply(WriteBatch::Delete(sel), None).unwrap();
                deleted.lock().extend(victims);
            }
        }));
    }
    {
        let (c, stop) = (Arc::clone(&c), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                c.compact().unwrap();
                std::thread::sleep(Duration::from_millis(150));
            }
        }));
    }
    for qt in 0..2u64 {
        let (c, live, deleted, stop, violations) = (
            Arc::clone(&c),
            Arc::clone(&live),
            Arc::clone(&deleted),
            Arc::clone(&stop),
            Arc::clone(&violations),
        );
        threads.push(std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(1000 + qt);
            while !stop.load(Ordering::Relaxed) {
                // Snapshots taken *before* the read: ids acknowledged live (and still live) must
                // be found; ids acknowledged deleted must not.
                let must_live: Vec<String> = live.lock().iter().take(50).cloned().collect();
                let must_dead: Vec<String> = deleted.lock().iter().take(200).cloned().collect();
                let k = 10;
                let got = c
                    .query(&QueryRequest {
                        embeddings: vec![vector(&mut rng)],
                        n_results: k,
                        ids: None,
                        filter: None,
                        include: Include::default(),
                    })
                    .unwrap();
                let ids = &got.results[0].ids;
                let dead: HashSet<&String> = must_dead.iter().collect();
                if let Some(bad) = ids.iter().find(|id| dead.contains(id)) {
                    violations
                        .lock()
                        .push(format!("query returned deleted {bad}"));
                }
                if c.count() >= k as u64 + 100 && ids.len() < k as usize {
                    violations
                        .lock()
                        .push(format!("query returned {} < {k} results", ids.len()));
                }
                let found = c
                    .get(&GetRequest {
                        ids: Some(must_live.clone()),
                        include: Include::default(),
                        ..Default::default()
                    })
                    .unwrap();
                let found: HashSet<String> = found.ids.into_iter().collect();
                let still_live = live.lock();
                for id in &must_live {
                    if still_live.contains(id) && !found.contains(id) {
                        violations
                            .lock()
                            .push(format!("acknowledged {id} not visible"));
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let v = violations.lock();
    assert!(
        v.is_empty(),
        "{} violations, first: {:?}",
        v.len(),
        &v[..v.len().min(5)]
    );
    // Final state: exactly the live set.
    let all: HashSet<String> = c.ids().unwrap();
    let want = live.lock().clone();
    assert_eq!(all.len(), want.len());
    assert_eq!(all, want);
    println!(
        "{} live rows, {} deleted, stats {:?}",
        want.len(),
        deleted.lock().len(),
        c.stats()
    );
}

#[test]
fn compaction_reclaims_deleted_space() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let c = Collection::create(&path, CollectionConfig::default()).unwrap();
    c.set_memtable_rows(1_000_000);
    let mut rng = StdRng::seed_from_u64(5);
    let n = 4000;
    for b in 0..4 {
        let records = (0..n / 4)
            .map(|i| Record {
                id: format!("r{}", b * n / 4 + i),
                embedding: (0..256).map(|_| rng.random::<f32>()).collect(),
                metadata: None,
                document: Some("x".repeat(100)),
                uri: None,
            })
            .collect();
        c.apply(WriteBatch::Add(records), None).unwrap();
        c.flush().unwrap();
    }
    assert_eq!(c.segment_count(), 4);
    let before = folder_bytes(&path.join("segments"));
    let doomed: Vec<String> = (0..n)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("r{i}"))
        .collect();
    c.apply(
        WriteBatch::Delete(DeleteSelector {
            ids: Some(doomed),
            ..Default::default()
        }),
        None,
    )
    .unwrap();
    assert!(c.compact().unwrap());
    assert_eq!(c.segment_count(), 1);
    assert_eq!(c.stats().tombstones, 0);
    let after = folder_bytes(&path.join("segments"));
    let ratio = after as f64 / before as f64;
    println!(
        "segments: {before} bytes before, {after} after deleting half and compacting ({ratio:.2})"
    );
    assert!(
        ratio < 0.6,
        "compaction should about halve the bytes, got {ratio:.2}"
    );
    assert_eq!(c.count(), (n / 2) as u64);
    drop(c);
    let c = Collection::open(&path).unwrap();
    assert_eq!(c.count(), (n / 2) as u64);
    let g = c
        .get(&GetRequest {
            limit: Some(3),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        g.ids,
        vec!["r1", "r3", "r5"],
        "insertion order survives compaction"
    );
}
