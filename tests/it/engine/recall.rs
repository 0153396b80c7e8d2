//! Recall and cost of the engine's graph search at a CI-sized scale: a clustered synthetic set
//! (10,000 × 64), 100 queries, k = 10, default HNSW parameters. recall@10 against an exact
//! brute force must be ≥ 0.98 while the rows sit in the memtable graph, after they are flushed
//! to a memory-mapped segment, and across several segments; the distance computations per
//! query must stay ≤ 5% of N for a single graph, so a brute-force engine cannot pass.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vectord::engine::{Collection, CollectionConfig};
use vectord::index::distance::{distance, inverse_norm};
use vectord::types::{Include, QueryRequest, Record, Space, WriteBatch};

const N: usize = 10_000;
const DIM: usize = 64;
const QUERIES: usize = 100;
const K: usize = 10;

fn clustered(rng: &mut StdRng, n: usize, centers: &[Vec<f32>]) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            let c = &centers[rng.random_range(0..centers.len())];
            c.iter()
                .map(|x| x + (rng.random::<f32>() + rng.random::<f32>() - 1.0) * 0.35)
                .collect()
        })
        .collect()
}

fn exact_top(space: Space, data: &[Vec<f32>], q: &[f32]) -> Vec<String> {
    let qi = inverse_norm(q);
    let mut d: Vec<(f32, usize)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| (distance(space, q, v, qi, inverse_norm(v)), i))
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.iter().take(K).map(|(_, i)| format!("r{i}")).collect()
}

/// A clustered data set, queries from the same clusters, and a collection holding the data
/// (ingested in batches of 500, flushed every `flush_every` batches when given).
fn setup(
    seed: u64,
    space: Space,
    flush_every: Option<usize>,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>, tempfile::TempDir, Collection) {
    let mut rng = StdRng::seed_from_u64(seed);
    let centers: Vec<Vec<f32>> = (0..40)
        .map(|_| (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect();
    let data = clustered(&mut rng, N, &centers);
    let queries = clustered(&mut rng, QUERIES, &centers);
    let dir = tempfile::tempdir().unwrap();
    let c = Collection::create(
        &dir.path().join("c"),
        CollectionConfig {
            space,
            ..Default::default()
        },
    )
    .unwrap();
    c.set_memtable_rows(N + 1);
    for (b, chunk) in data.chunks(500).enumerate() {
        let records = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                id: format!("r{}", b * 500 + i),
                embedding: v.clone(),
                metadata: None,
                document: None,
                uri: None,
            })
            .collect();
        c.apply(WriteBatch::Add(records), None).unwrap();
        if flush_every.is_some_and(|f| b % f == f - 1) {
            c.flush().unwrap();
        }
    }
    (data, queries, dir, c)
}

fn wait_indexed(c: &Collection) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while c.stats().unindexed_rows > 0 {
        assert!(
            Instant::now() < deadline,
            "background indexing did not catch up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (recall@10, distance computations per query)
fn measure(c: &Collection, space: Space, data: &[Vec<f32>], queries: &[Vec<f32>]) -> (f64, f64) {
    let before = c.stats();
    let mut hits = 0;
    for q in queries {
        let got = c
            .query(&QueryRequest {
                embeddings: vec![q.clone()],
                n_results: K as u32,
                ids: None,
                filter: None,
                include: Include {
                    distances: true,
                    ..Default::default()
                },
            })
            .unwrap();
        let got: HashSet<&String> = got.results[0].ids.iter().collect();
        assert_eq!(got.len(), K, "k results when N rows are live");
        hits += exact_top(space, data, q)
            .iter()
            .filter(|id| got.contains(id))
            .count();
    }
    let after = c.stats();
    let comps =
        (after.distance_computations - before.distance_computations) as f64 / queries.len() as f64;
    (hits as f64 / (queries.len() * K) as f64, comps)
}

fn run(space: Space) {
    let (data, queries, _dir, c) = setup(42, space, None);
    wait_indexed(&c);
    let (recall, comps) = measure(&c, space, &data, &queries);
    println!(
        "{space:?} memtable graph: recall@10 {recall:.3}, {comps:.0} distances/query ({:.1}% of N)",
        comps * 100.0 / N as f64
    );
    assert!(recall >= 0.98, "memtable recall {recall}");
    assert!(comps <= 0.05 * N as f64, "memtable cost {comps}");

    assert!(c.flush().unwrap());
    let (recall, comps) = measure(&c, space, &data, &queries);
    println!(
        "{space:?} one segment:    recall@10 {recall:.3}, {comps:.0} distances/query ({:.1}% of N)",
        comps * 100.0 / N as f64
    );
    assert!(recall >= 0.98, "segment recall {recall}");
    assert!(comps <= 0.05 * N as f64, "segment cost {comps}");

    // Reopen: the segment is mapped, nothing rebuilt, same answers.
    let path = c.dir().to_path_buf();
    drop(c);
    let c = Collection::open(&path).unwrap();
    let (recall2, _) = measure(&c, space, &data, &queries);
    assert_eq!(recall, recall2, "a reopened segment answers the same");

    // Half the rows deleted: tombstones are excluded inside the search, k still come back.
    let doomed: Vec<String> = (0..N)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("r{i}"))
        .collect();
    c.apply(
        WriteBatch::Delete(vectord::types::DeleteSelector {
            ids: Some(doomed),
            ..Default::default()
        }),
        None,
    )
    .unwrap();
    let live: Vec<Vec<f32>> = data
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, v)| v.clone())
        .collect();
    let live_ids: Vec<usize> = (0..N).filter(|i| i % 2 == 1).collect();
    let mut hits = 0;
    for q in &queries {
        let got = c
            .query(&QueryRequest {
                embeddings: vec![q.clone()],
                n_results: K as u32,
                ids: None,
                filter: None,
                include: Include::default(),
            })
            .unwrap();
        assert_eq!(got.results[0].ids.len(), K);
        let want: HashSet<String> = exact_top(space, &live, q)
            .iter()
            .map(|s| format!("r{}", live_ids[s[1..].parse::<usize>().unwrap()]))
            .collect();
        for id in &got.results[0].ids {
            let n: usize = id[1..].parse().unwrap();
            assert!(n % 2 == 1, "deleted row {id} returned");
        }
        hits += got.results[0]
            .ids
            .iter()
            .filter(|id| want.contains(*id))
            .count();
    }
    let recall = hits as f64 / (QUERIES * K) as f64;
    println!("{space:?} half deleted:   recall@10 {recall:.3}");
    assert!(recall >= 0.98, "recall with tombstones {recall}");
}

#[test]
fn recall_l2() {
    run(Space::L2);
}

#[test]
fn recall_cosine() {
    run(Space::Cosine);
}

#[test]
fn recall_across_segments() {
    let (data, queries, _dir, c) = setup(7, Space::L2, Some(5));
    assert!(
        c.segment_count() >= 3,
        "several segments, got {}",
        c.segment_count()
    );
    let (recall, comps) = measure(&c, Space::L2, &data, &queries);
    println!(
        "{} segments: recall@10 {recall:.3}, {comps:.0} distances/query",
        c.segment_count()
    );
    assert!(recall >= 0.98, "multi-segment recall {recall}");
}

/// recall@10 of a collection holding `data`, at default parameters: with 60% of the rows in
/// the memtable graph (the rest in a segment), with all of them flushed, and in the segment a
/// compaction of the two produced.
fn recall_by_stage(space: Space, data: &[Vec<f32>], queries: &[Vec<f32>]) -> [f64; 3] {
    let dir = tempfile::tempdir().unwrap();
    let c = Collection::create(
        &dir.path().join("c"),
        CollectionConfig {
            space,
            ..Default::default()
        },
    )
    .unwrap();
    c.set_memtable_rows(data.len() + 1);
    let add = |c: &Collection, from: usize, rows: &[Vec<f32>]| {
        for (b, chunk) in rows.chunks(500).enumerate() {
            let records = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| Record {
                    id: format!("r{}", from + b * 500 + i),
                    embedding: v.clone(),
                    metadata: None,
                    document: None,
                    uri: None,
                })
                .collect();
            c.apply(WriteBatch::Add(records), None).unwrap();
        }
    };
    // The first 40% become their own segment, so the compaction below merges two.
    let split = data.len() * 2 / 5;
    add(&c, 0, &data[..split]);
    assert!(c.flush().unwrap());
    add(&c, split, &data[split..]);
    wait_indexed(&c);
    let (memtable, _) = measure(&c, space, data, queries);
    // (The idle flush, and the compaction the background starts after it, may have run
    // already: only the end state is asserted.)
    c.flush().unwrap();
    let (segment, _) = measure(&c, space, data, queries);
    c.compact().unwrap();
    assert_eq!(c.segment_count(), 1);
    let (compacted, _) = measure(&c, space, data, queries);
    [memtable, segment, compacted]
}

/// Int8 codes are per-vector scaled: data far from the origin (every vector = μ + a small
/// spread, ‖μ‖ ≫ spread, as many embedding sets are not centred) must keep the recall centred
/// data has in l2 and ip, in the memtable, a flushed segment and after a compaction. (Before
/// codes were centred, l2 offset data had 0.78 / 0.78 / 0.53 against 1.0 centred.)
#[test]
fn recall_with_a_large_common_offset() {
    for space in [Space::L2, Space::Ip] {
        let mut rng = StdRng::seed_from_u64(11);
        let centers: Vec<Vec<f32>> = (0..40)
            .map(|_| (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect())
            .collect();
        let data = clustered(&mut rng, N, &centers);
        let queries = clustered(&mut rng, QUERIES, &centers);
        // ‖μ‖ ≈ 48 against a spread of ≈ 5 around it.
        let mu: Vec<f32> = (0..DIM).map(|_| rng.random_range(4.0f32..8.0)).collect();
        let shift = |rows: &[Vec<f32>]| -> Vec<Vec<f32>> {
            rows.iter()
                .map(|v| v.iter().zip(&mu).map(|(x, m)| x + m).collect())
                .collect()
        };
        let centred = recall_by_stage(space, &data, &queries);
        let offset = recall_by_stage(space, &shift(&data), &shift(&queries));
        println!("{space:?} recall@10 memtable/segment/compacted: centred {centred:?}, offset {offset:?}");
        for (stage, (c, o)) in ["memtable", "segment", "compacted"]
            .iter()
            .zip(centred.iter().zip(&offset))
        {
            // The bar is 0.98 where centred data meets it (ip is non-metric: its graph may
            // do worse on any data), else the centred recall less sampling noise. (Ip offset
            // data had 0.64 / 0.905 / 0.875 until full neighbour lists stopped being shrunk
            // by the metric heuristic for ip.)
            // Ip's parallel build varies more run to run (0.984–0.994 over six runs), so its
            // bar is 0.97: still far above the 0.64–0.88 the defect gave.
            let bar = if space == Space::Ip { 0.97 } else { 0.98 };
            let want = if *c >= bar { bar } else { c - 0.02 };
            assert!(
                *o >= want,
                "{space:?} {stage}: offset recall {o} (centred {c})"
            );
        }
    }
}
