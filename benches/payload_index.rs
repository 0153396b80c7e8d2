//! Payload index lookups: a `where` tree answered from the per-key postings of 100k rows with the
//! shape of the shared harness's metadata (22 payers with Zipf shares, plan type, effective
//! year, active flag) — the planner's first step on every filtered query of a 100k segment.
//! Compare with `cargo bench --bench filter`, which evaluates the same kind of filters per row.
//!
//! `cargo bench --bench payload_index -- --warm-up-time 1 --measurement-time 3`

use std::collections::HashSet;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use vectord::engine::PayloadIndex;
use vectord::filter::parse_where;
use vectord::types::{Metadata, MetadataValue};

const ROWS: usize = 100_000;
const PAYERS: usize = 22;

fn index() -> PayloadIndex {
    let mut rng = StdRng::seed_from_u64(11);
    // Zipf(1.1)-like shares: payer 0 ≈ 31 %, the last ≈ 1 %.
    let weights: Vec<f64> = (1..=PAYERS).map(|r| 1.0 / (r as f64).powf(1.109)).collect();
    let total: f64 = weights.iter().sum();
    let mut ix = PayloadIndex::default();
    let skip = HashSet::new();
    for _ in 0..ROWS {
        let mut x = rng.random::<f64>() * total;
        let mut payer = PAYERS - 1;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                payer = i;
                break;
            }
            x -= w;
        }
        let year = 2018 + rng.random_range(0..9i64);
        let mut m = Metadata::new();
        m.insert(
            "payer_id".into(),
            MetadataValue::Str(format!("P{payer:02}")),
        );
        m.insert(
            "plan_type".into(),
            MetadataValue::Str(["HMO", "PPO", "HDHP", "MAPD"][rng.random_range(0..4)].into()),
        );
        m.insert("effective_year".into(), MetadataValue::Int(year));
        m.insert("active".into(), MetadataValue::Bool(rng.random_bool(0.6)));
        ix.push(Some(&m), &skip);
    }
    ix
}

fn bench(c: &mut Criterion) {
    let ix = index();
    let filters = [
        ("payer_1pct", json!({"payer_id": "P21"})),
        ("payer_30pct", json!({"payer_id": "P00"})),
        (
            "payer_in3",
            json!({"payer_id": {"$in": ["P03", "P04", "P05"]}}),
        ),
        (
            "recent_active",
            json!({"$and": [{"effective_year": {"$gte": 2024}}, {"active": true}]}),
        ),
        ("payer_ne", json!({"payer_id": {"$ne": "P00"}})),
    ];
    let mut g = c.benchmark_group("payload_index_100k");
    for (name, j) in filters {
        let f = parse_where(&j).expect("valid filter");
        let matches = ix.evaluate(&f).rows.count();
        eprintln!("{name}: {matches} of {ROWS} rows");
        g.bench_function(name, |b| b.iter(|| black_box(ix.evaluate(black_box(&f)))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
