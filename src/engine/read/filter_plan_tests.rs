//! The filter planner end to end over a collection with segments and a memtable (and over
//! segments written before payload indexes): every result passes the filter, a query never
//! returns fewer than `min(k, matching rows)`, an exactly planned query equals the exact
//! filtered top-k, and a filtered graph walk keeps recall.

use std::collections::HashSet;
use std::path::Path;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::engine::{Collection, CollectionConfig, QueryPlan};
use crate::filter::proptests::{composite, doc_leaf, record, where_leaf};
use crate::filter::{parse, parse_where, Filter};
use crate::index::distance::{distance, inverse_norm};
use crate::types::{Include, Metadata, MetadataValue, QueryRequest, Record, Space, WriteBatch};

struct Row {
    vector: Vec<f32>,
    metadata: Option<Metadata>,
    document: Option<String>,
}

/// Ids (`r<i>`) of the exact filtered top-k, ties by insertion order as the engine breaks them.
fn exact_filtered(rows: &[Row], q: &[f32], k: usize, f: &Filter) -> Vec<String> {
    let qi = inverse_norm(q);
    let mut d: Vec<(f32, usize)> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| f.matches(r.metadata.as_ref(), r.document.as_deref()))
        .map(|(i, r)| {
            (
                distance(Space::L2, q, &r.vector, qi, inverse_norm(&r.vector)),
                i,
            )
        })
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.iter().take(k).map(|(_, i)| format!("r{i}")).collect()
}

fn query(c: &Collection, q: &[f32], k: usize, f: &Filter) -> Vec<String> {
    let out = c
        .query(&QueryRequest {
            embeddings: vec![q.to_vec()],
            n_results: k as u32,
            ids: None,
            filter: Some(f.clone()),
            include: Include::default(),
        })
        .unwrap();
    out.results[0].ids.clone()
}

/// Writes `rows` in batches; flushes after each of `flush_at` row counts (so the collection
/// ends with segments plus a memtable).
fn load(dir: &Path, rows: &[Row], flush_at: &[usize]) -> Collection {
    let c = Collection::create(
        dir,
        CollectionConfig {
            space: Space::L2,
            ..Default::default()
        },
    )
    .unwrap();
    c.set_memtable_rows(rows.len() + 1);
    let mut start = 0;
    let mut cuts: Vec<usize> = flush_at.to_vec();
    cuts.push(rows.len());
    for end in cuts {
        for b in (start..end).step_by(250) {
            let batch = (b..(b + 250).min(end))
                .map(|i| Record {
                    id: format!("r{i}"),
                    embedding: rows[i].vector.clone(),
                    metadata: rows[i].metadata.clone(),
                    document: rows[i].document.clone(),
                    uri: None,
                })
                .collect();
            c.apply(WriteBatch::Add(batch), None).unwrap();
        }
        if end < rows.len() && end > start {
            c.flush().unwrap();
        }
        start = end;
    }
    c
}

/// Checks one answer against the filter and the exact answer; returns the recall hits.
fn check(rows: &[Row], got: &[String], q: &[f32], k: usize, f: &Filter, exact: bool) -> usize {
    let want = exact_filtered(rows, q, k, f);
    assert_eq!(got.len(), want.len(), "min(k, matches) results");
    for id in got {
        let i: usize = id[1..].parse().unwrap();
        assert!(
            f.matches(rows[i].metadata.as_ref(), rows[i].document.as_deref()),
            "{id} fails the filter"
        );
    }
    if exact {
        assert_eq!(got, want.as_slice(), "exact plan gives the exact top-k");
    }
    let got: HashSet<&String> = got.iter().collect();
    want.iter().filter(|id| got.contains(id)).count()
}

/// Checks every query under every filter (planned any way) and asserts each filter's recall
/// is at least 95 %; `what` names the case in the message.
fn assert_recall(
    c: &Collection,
    rows: &[Row],
    queries: &[Vec<f32>],
    filters: &[Filter],
    k: usize,
    what: &str,
) {
    for f in filters {
        let mut hits = 0;
        let mut want = 0;
        for q in queries {
            hits += check(rows, &query(c, q, k, f), q, k, f, false);
            want += exact_filtered(rows, q, k, f).len();
        }
        assert!(
            hits as f64 >= 0.95 * want as f64,
            "{what} recall {hits}/{want} for {f:?}"
        );
    }
}

fn bench_like_rows(n: usize, dim: usize) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..n)
        .map(|i| {
            let payer = match i % 100 {
                0 => "rare".to_string(),
                1..=30 => "big".to_string(),
                p => format!("p{}", p % 9),
            };
            let mut m = Metadata::new();
            m.insert("payer".into(), MetadataValue::Str(payer));
            m.insert(
                "year".into(),
                MetadataValue::Int(2018 + rng.random_range(0..9i64)),
            );
            m.insert("active".into(), MetadataValue::Bool(rng.random_bool(0.6)));
            Row {
                vector: (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
                // A few rows without metadata: the negative operators must match them.
                metadata: (i % 37 != 5).then_some(m),
                document: Some(format!("doc {}", i % 11)),
            }
        })
        .collect()
}

fn bench_filters() -> Vec<Filter> {
    [
        json!({"payer": "rare"}),
        json!({"payer": "big"}),
        json!({"payer": {"$in": ["p1", "p2", "p3"]}}),
        json!({"$and": [{"year": {"$gte": 2024}}, {"active": true}]}),
        json!({"payer": {"$ne": "big"}}),
        json!({"payer": {"$nin": ["big", "p1"]}}),
        json!({"$or": [{"payer": "rare"}, {"year": {"$lt": 2019.5}}]}),
        json!({"$and": [{"payer": "big"}, {"#document": {"$contains": "doc 3"}}]}),
        json!({"payer": "nobody"}),
    ]
    .iter()
    .map(|j| parse_where(j).unwrap())
    .collect()
}

#[test]
fn planned_filters_are_exact_complete_and_recall_well() {
    const N: usize = 3000;
    const DIM: usize = 12;
    const K: usize = 10;
    let rows = bench_like_rows(N, DIM);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let c = load(&path, &rows, &[1000, 2000]);
    assert_eq!(c.segment_count(), 2);
    let mut rng = StdRng::seed_from_u64(99);
    let queries: Vec<Vec<f32>> = (0..20)
        .map(|_| (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect();
    let filters = bench_filters();

    // Default planning: every source here is small enough to be scanned exactly.
    let before = QueryPlan::FilteredExact.total();
    for f in &filters {
        for q in &queries {
            check(&rows, &query(&c, q, K, f), q, K, f, true);
        }
    }
    assert!(QueryPlan::FilteredExact.total() >= before + (filters.len() * queries.len()) as u64);

    // Forced graph walks with the candidate bitmap inside: complete, correct, high recall.
    c.set_filter_planning(0, 0);
    let before = QueryPlan::FilteredGraph.total();
    assert_recall(&c, &rows, &queries, &filters, K, "filtered-graph");
    assert!(QueryPlan::FilteredGraph.total() > before);

    // A snapshot carries payload.bin (every published segment file), and the copy plans the
    // same way.
    let snap = c
        .snapshot_into(&dir.path().join("snap"))
        .unwrap()
        .finish()
        .unwrap();
    let copied: Vec<_> = std::fs::read_dir(snap.join("segments"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .join(crate::engine::segment::payload::FILE_NAME)
        })
        .collect();
    assert_eq!(copied.len(), 2);
    assert!(copied.iter().all(|p| p.exists()));
    let restored = Collection::open(&snap).unwrap();
    for f in &filters {
        for q in &queries[..5] {
            check(&rows, &query(&restored, q, K, f), q, K, f, true);
        }
    }
    drop(restored);
    c.close().unwrap();

    // Segments from before payload indexes (no payload.bin): filtered per row, still correct.
    let segments = path.join("segments");
    let mut removed = 0;
    for e in std::fs::read_dir(&segments).unwrap() {
        let p = e
            .unwrap()
            .path()
            .join(crate::engine::segment::payload::FILE_NAME);
        if p.exists() {
            std::fs::remove_file(p).unwrap();
            removed += 1;
        }
    }
    assert!(removed >= 2);
    let c = Collection::open(&path).unwrap();
    assert_recall(&c, &rows, &queries, &filters, K, "old-segment");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random records and filters (the filter module's generators): results pass the filter,
    /// number min(k, matches), and equal the exact filtered top-k (small sources are scanned
    /// exactly); forced graph walks still pass the filter and are never short.
    #[test]
    fn filtered_queries_match_the_exact_answer(
        recs in proptest::collection::vec(record(), 1..160),
        where_ in prop::option::weighted(0.9, composite(where_leaf())),
        where_document in prop::option::weighted(0.2, composite(doc_leaf(None).boxed())),
        k in 1usize..15,
        seed in any::<u64>(),
    ) {
        let Some(f) = parse(where_.as_ref(), where_document.as_ref()).unwrap() else {
            return Ok(());
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let rows: Vec<Row> = recs
            .into_iter()
            .map(|r| Row {
                vector: (0..4).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
                metadata: r.metadata,
                document: r.document,
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let c = load(&dir.path().join("c"), &rows, &[rows.len() / 2]);
        let q: Vec<f32> = (0..4).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        check(&rows, &query(&c, &q, k, &f), &q, k, &f, true);
        c.set_filter_planning(0, 0);
        check(&rows, &query(&c, &q, k, &f), &q, k, &f, false);
    }
}
