//! Filter evaluation throughput: realistic `where` / `where_document` filters evaluated over
//! 100k pre-generated records (a full scan, as the exact-search path does). Parsing happens once,
//! outside the timed loop; the figure is records evaluated per second.
//!
//! `cargo bench --bench filter -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use vectord::filter::{parse, Filter};
use vectord::types::{Metadata, MetadataValue};

const RECORDS: usize = 100_000;
const PAYERS: usize = 40;

const WORDS: &[&str] = &[
    "claim",
    "payment",
    "denied",
    "approved",
    "patient",
    "provider",
    "invoice",
    "balance",
    "policy",
    "coverage",
    "deductible",
    "copay",
    "review",
    "appeal",
    "pending",
    "submitted",
    "statement",
    "account",
    "service",
    "visit",
];
const STATUSES: &[&str] = &["open", "closed", "pending", "appealed"];
const TAGS: &[&str] = &["urgent", "followup", "audit", "duplicate", "manual", "auto"];

struct Rec {
    metadata: Option<Metadata>,
    document: Option<String>,
}

fn records() -> Vec<Rec> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..RECORDS)
        .map(|i| {
            let mut m = Metadata::new();
            m.insert(
                "payer_id".into(),
                MetadataValue::Str(format!("payer_{:03}", rng.random_range(0..PAYERS))),
            );
            m.insert(
                "amount".into(),
                MetadataValue::Float(rng.random_range(0.0..2000.0)),
            );
            m.insert(
                "year".into(),
                MetadataValue::Int(rng.random_range(2015..2026)),
            );
            m.insert(
                "status".into(),
                MetadataValue::Str(STATUSES[rng.random_range(0..STATUSES.len())].into()),
            );
            let tags: Vec<String> = (0..rng.random_range(1..4))
                .map(|_| TAGS[rng.random_range(0..TAGS.len())].to_string())
                .collect();
            m.insert("tags".into(), MetadataValue::StrArray(tags));
            // ~2% of records carry no metadata, ~5% no document, as real collections do.
            let metadata = (i % 50 != 0).then_some(m);
            let document = (i % 20 != 0).then(|| {
                let mut words: Vec<String> = (0..rng.random_range(20..60))
                    .map(|_| WORDS[rng.random_range(0..WORDS.len())].to_string())
                    .collect();
                if rng.random_range(0..10) == 0 {
                    words.push("refund".into());
                }
                if rng.random_range(0..4) == 0 {
                    words.push(format!("Invoice #{}", rng.random_range(1000..10000)));
                }
                words.join(" ")
            });
            Rec { metadata, document }
        })
        .collect()
}

fn filters() -> Vec<(&'static str, Filter)> {
    let w = |name, v: serde_json::Value| (name, parse(Some(&v), None).unwrap().unwrap());
    let wd = |name, v: serde_json::Value| (name, parse(None, Some(&v)).unwrap().unwrap());
    vec![
        w("eq_payer_id", json!({"payer_id": "payer_017"})),
        w(
            "numeric_range",
            json!({"$and": [{"amount": {"$gte": 250}}, {"amount": {"$lt": 750.5}}]}),
        ),
        w(
            "in_5_strings",
            json!({"payer_id": {"$in": ["payer_001", "payer_007", "payer_013", "payer_029", "payer_038"]}}),
        ),
        w(
            "nested_and_or",
            json!({"$and": [
                {"$or": [{"status": "open"}, {"year": {"$gte": 2023}}]},
                {"tags": {"$contains": "urgent"}},
                {"payer_id": {"$ne": "payer_003"}}
            ]}),
        ),
        wd("doc_contains", json!({"$contains": "refund"})),
        wd("doc_regex", json!({"$regex": "(?i)invoice #\\d{4}"})),
    ]
}

fn bench(c: &mut Criterion) {
    let recs = records();
    let mut group = c.benchmark_group("filter");
    group.throughput(Throughput::Elements(recs.len() as u64));
    for (name, filter) in filters() {
        group.bench_function(name, |b| {
            b.iter(|| {
                recs.iter()
                    .filter(|r| {
                        black_box(&filter).matches(r.metadata.as_ref(), r.document.as_deref())
                    })
                    .count()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
