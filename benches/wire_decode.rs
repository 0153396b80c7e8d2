//! Request decoding on the query hot path: serde_json of a Chroma `query` body with one 1536-d
//! vector (JSON floats, what every client sends for queries), and base64 → f32 of one 1536-d
//! embedding (what chromadb 1.x sends for `add`/`upsert`). `query_body_json_serde_floats` is
//! the same body with serde_json converting the floats, as before `api::floats`.

use std::hint::black_box;

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vectord::api::error::parse_json;
use vectord::api::wire::{decode_base64_f32, QueryRecordsRequest};

const DIM: usize = 1536;

/// The query body as it was parsed before `api::floats`: serde_json converting every float.
#[derive(serde::Deserialize)]
struct SerdeFloatsQuery {
    query_embeddings: Vec<Vec<f32>>,
}

fn wire_decode(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(3);
    let v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-0.1f32..0.1)).collect();
    let body = serde_json::json!({
        "query_embeddings": [v],
        "n_results": 10,
        "include": ["metadatas", "documents", "distances"],
    })
    .to_string()
    .into_bytes();
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);

    let mut group = c.benchmark_group("wire_1536");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("query_body_json", |b| {
        b.iter(|| {
            parse_json::<QueryRecordsRequest>(black_box(&body))
                .map(|r| r.query_embeddings.as_ref().map_or(0, Vec::len))
                .unwrap_or(0)
        })
    });
    group.bench_function("query_body_json_serde_floats", |b| {
        b.iter(|| {
            parse_json::<SerdeFloatsQuery>(black_box(&body))
                .map(|r| r.query_embeddings.len())
                .unwrap_or(0)
        })
    });
    group.throughput(Throughput::Bytes(b64.len() as u64));
    group.bench_function("embedding_base64", |b| {
        b.iter(|| {
            decode_base64_f32(black_box(&b64))
                .map(|v| v.len())
                .unwrap_or(0)
        })
    });
    group.finish();
}

criterion_group!(benches, wire_decode);
criterion_main!(benches);
