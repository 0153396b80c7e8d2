//! Filtered search in process (no HTTP): per filter, the plan the engine chose, latency
//! percentiles, recall@10 against exact-with-filter ground truth, under-returned queries and
//! distance computations per query — the figures behind goal 6 of BENCHMARKS.md, without the
//! HTTP client's noise.
//!
//! Real data: `VECTORD_BENCH_DATA=/tmp/bench-data/real100k cargo bench --bench filtered` (the
//! shared harness's set with `--filters`: base.npy, queries.npy, metadatas.jsonl, filters.json
//! and its `gt_filter_*.npy`). The collection is ingested (2 writers, batches of 100), caught
//! up and compacted to one segment, as in the HTTP side-by-side run. Set
//! `VECTORD_BENCH_COLLECTION=DIR` to keep it there and reopen it on later runs (A/B of the
//! search path without re-ingesting). Without data (and under `cargo test`) a small synthetic
//! set with the same four filter shapes runs instead.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

mod common;

use common::{harness_config, ingest_with, read_npy, synthetic, wait_caught_up};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use vectord::engine::Collection;
use vectord::index::distance::{distance, inverse_norm};
use vectord::types::{Include, Metadata, MetadataValue, QueryRequest, Space};

/// One filter with its exact top-10 per query (row numbers = ids).
struct FilterSet {
    name: String,
    filter: Value,
    gt: Vec<Vec<usize>>,
}

struct Data {
    dim: usize,
    base: Vec<f32>,
    queries: Vec<f32>,
    gt: Vec<Vec<usize>>,
    metadatas: Vec<Metadata>,
    filters: Vec<FilterSet>,
}

fn metadata_of(v: &Value) -> Metadata {
    let mut m = Metadata::new();
    for (k, v) in v.as_object().into_iter().flatten() {
        let value = match v {
            Value::Bool(b) => MetadataValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => MetadataValue::Int(i),
                None => MetadataValue::Float(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => MetadataValue::Str(s.clone()),
            _ => continue,
        };
        m.insert(k.clone(), value);
    }
    m
}

fn gt_of(path: &Path) -> Vec<Vec<usize>> {
    let (shape, raw) = read_npy(path);
    raw.chunks_exact(4 * shape[1])
        .map(|r| {
            r.chunks_exact(4)
                .take(10)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .filter(|&i| i >= 0)
                .map(|i| i as usize)
                .collect()
        })
        .collect()
}

fn load(dir: &Path) -> Data {
    let plain = common::load(dir);
    let metadatas = std::fs::read_to_string(dir.join("metadatas.jsonl"))
        .expect("metadatas.jsonl (make the set with --filters)")
        .lines()
        .map(|l| metadata_of(&serde_json::from_str(l).expect("metadata line")))
        .collect();
    let listed: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("filters.json")).unwrap()).unwrap();
    let filters = listed
        .iter()
        .map(|f| FilterSet {
            name: f["name"].as_str().unwrap().to_string(),
            filter: f["where"].clone(),
            gt: gt_of(&dir.join(f["gt_file"].as_str().unwrap())),
        })
        .collect();
    Data {
        dim: plain.dim,
        base: plain.base,
        queries: plain.queries,
        gt: plain.gt,
        metadatas,
        filters,
    }
}

/// The synthetic set with the harness's four filter shapes: a ~1 % and a ~30 % payer, `$in`
/// of three ~4 % payers, a year range AND a boolean; exact ground truth computed here.
fn synthetic_filtered(n: usize, nq: usize, dim: usize) -> Data {
    let plain = synthetic(n, nq, dim);
    let mut rng = StdRng::seed_from_u64(7);
    let metadatas: Vec<Metadata> = (0..n)
        .map(|_| {
            let r: f64 = rng.random();
            let payer = if r < 0.01 {
                "rare"
            } else if r < 0.31 {
                "big"
            } else if r < 0.35 {
                "m1"
            } else if r < 0.39 {
                "m2"
            } else if r < 0.43 {
                "m3"
            } else {
                "other"
            };
            metadata_of(&json!({
                "payer_id": payer,
                "effective_year": rng.random_range(2020..2027),
                "active": rng.random_bool(0.6),
            }))
        })
        .collect();
    let shapes = [
        ("payer_1pct", json!({"payer_id": "rare"})),
        ("payer_30pct", json!({"payer_id": "big"})),
        (
            "payer_in3",
            json!({"payer_id": {"$in": ["m1", "m2", "m3"]}}),
        ),
        (
            "recent_active",
            json!({"$and": [{"effective_year": {"$gte": 2024}}, {"active": true}]}),
        ),
    ];
    let mut data = Data {
        dim,
        base: plain.base,
        queries: plain.queries,
        gt: plain.gt,
        metadatas,
        filters: Vec::new(),
    };
    for (name, filter) in shapes {
        data.filters.push(exact_set(&data, name, filter));
    }
    data
}

/// A filter with its exact top-10 computed here (brute force over the rows it matches).
fn exact_set(data: &Data, name: &str, filter: Value) -> FilterSet {
    let f = vectord::filter::parse(Some(&filter), None)
        .unwrap()
        .unwrap();
    let rows: Vec<(usize, &[f32], f32)> = data
        .base
        .chunks_exact(data.dim)
        .enumerate()
        .filter(|(i, _)| f.matches(Some(&data.metadatas[*i]), None))
        .map(|(i, v)| (i, v, inverse_norm(v)))
        .collect();
    let gt = data
        .queries
        .chunks_exact(data.dim)
        .map(|q| {
            let qi = inverse_norm(q);
            let mut d: Vec<(f32, usize)> = rows
                .iter()
                .map(|&(i, v, vi)| (distance(Space::Cosine, q, v, qi, vi), i))
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0));
            d.iter().take(10).map(|x| x.1).collect()
        })
        .collect();
    FilterSet {
        name: name.to_string(),
        filter,
        gt,
    }
}

/// Opens the kept collection, or ingests `data` into `dir` and settles it into one segment.
fn collection(data: &Data, dir: &Path) -> Collection {
    if dir.join("MANIFEST").exists() {
        return Collection::open(dir).expect("reopen the kept collection");
    }
    let c = Arc::new(Collection::create(dir, harness_config()).unwrap());
    let started = Instant::now();
    ingest_with(
        &c,
        &Arc::new(data.base.clone()),
        data.dim,
        Some(Arc::new(data.metadatas.clone())),
    );
    wait_caught_up(&c);
    c.flush().unwrap();
    c.compact().unwrap();
    eprintln!(
        "ingested {} rows into one segment in {:.1} s",
        data.base.len() / data.dim,
        started.elapsed().as_secs_f64()
    );
    Arc::try_unwrap(c)
        .map_err(|_| "the ingest writers still hold the collection")
        .unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let real = std::env::args().any(|a| a == "--bench");
    let mut data = match std::env::var_os("VECTORD_BENCH_DATA") {
        Some(dir) if real => load(Path::new(&dir)),
        _ => synthetic_filtered(if real { 20_000 } else { 2_000 }, 100, 64),
    };
    // More filters to try, exact ground truth computed here:
    // VECTORD_BENCH_FILTERS='[{"name": "payer_7pct", "where": {"payer_id": "ZN507"}}]'.
    if let Ok(extra) = std::env::var("VECTORD_BENCH_FILTERS") {
        let extra: Vec<Value> = serde_json::from_str(&extra).expect("VECTORD_BENCH_FILTERS");
        for f in extra {
            let set = exact_set(&data, f["name"].as_str().unwrap(), f["where"].clone());
            data.filters.push(set);
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("VECTORD_BENCH_COLLECTION")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("c"));
    let c = collection(&data, &dir);
    let passes = if real { 3 } else { 1 };

    let mut sets = vec![FilterSet {
        name: "unfiltered".into(),
        filter: Value::Null,
        gt: data.gt.clone(),
    }];
    sets.extend(data.filters);
    for set in &sets {
        let filter = vectord::filter::parse(Some(&set.filter), None).unwrap();
        let query = |q: &[f32]| {
            c.query(&QueryRequest {
                embeddings: vec![q.to_vec()],
                n_results: 10,
                ids: None,
                filter: filter.clone(),
                include: Include {
                    distances: true,
                    ..Default::default()
                },
            })
            .unwrap()
        };
        // One warm-up pass: the page cache and the payload index's first touch.
        for q in data.queries.chunks_exact(data.dim) {
            query(q);
        }
        let before = c.stats();
        let mut lat = Vec::new();
        let (mut hits, mut wanted, mut short) = (0usize, 0usize, 0usize);
        for _ in 0..passes {
            for (qi, q) in data.queries.chunks_exact(data.dim).enumerate() {
                let t = Instant::now();
                let r = query(q);
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                let want: HashSet<String> = set.gt[qi].iter().map(|i| i.to_string()).collect();
                let ids = &r.results[0].ids;
                short += usize::from(ids.len() < want.len());
                wanted += want.len();
                hits += ids.iter().filter(|id| want.contains(*id)).count();
            }
        }
        let after = c.stats();
        lat.sort_by(f64::total_cmp);
        let recall = hits as f64 / wanted.max(1) as f64;
        println!(
            "{}",
            json!({
                "filter": set.name,
                "queries": lat.len(),
                "p50_ms": (percentile(&lat, 0.5) * 1000.0).round() / 1000.0,
                "p99_ms": (percentile(&lat, 0.99) * 1000.0).round() / 1000.0,
                "recall_at_10": (recall * 10_000.0).round() / 10_000.0,
                "under_returned": short,
                "distances_per_query": (after.distance_computations - before.distance_computations) / lat.len() as u64,
                "exact_fallbacks": after.exact_fallbacks - before.exact_fallbacks,
            })
        );
        if !real {
            // A smoke check under `cargo test`: the plans answer, and answer right.
            assert_eq!(short, 0, "{}: under-returned", set.name);
            assert!(recall >= 0.9, "{}: recall {recall}", set.name);
        }
    }
}
