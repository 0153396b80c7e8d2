//! Exact search: the distance kernels alone (1536-d pairs, hot in cache; f32 and the int8
//! traversal kernels) and a full exact query
//! over 20,000 × 1536 records through `Collection::query` (top-10, l2 and cosine).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vectord::engine::{Collection, CollectionConfig};
use vectord::index::{distance, nibbles, quant};
use vectord::types::{Include, QueryRequest, Record, Space, WriteBatch};

const DIM: usize = 1536;
const N: usize = 20_000;

fn random_vectors(rng: &mut StdRng, n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect()
}

fn kernels(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(7);
    let v = random_vectors(&mut rng, 2);
    let mut group = c.benchmark_group("kernel_1536");
    group.throughput(Throughput::Elements(1));
    for (name, dot, l2sq) in distance::available_kernels() {
        group.bench_function(format!("dot_{name}"), |b| {
            b.iter(|| dot(black_box(&v[0]), black_box(&v[1])))
        });
        group.bench_function(format!("l2sq_{name}"), |b| {
            b.iter(|| l2sq(black_box(&v[0]), black_box(&v[1])))
        });
    }
    // The int8 traversal kernels (a quarter of the bytes), and the full approximate distance
    // the searcher calls (kernel + trailer decode), on the codes of the same two vectors.
    let codes: Vec<Vec<i8>> = v.iter().map(|x| quant::encode(Space::Cosine, x)).collect();
    for (name, dot) in quant::available_kernels() {
        group.bench_function(format!("dot_i8_{name}"), |b| {
            b.iter(|| dot(black_box(&codes[0][..DIM]), black_box(&codes[1][..DIM])))
        });
    }
    group.bench_function(format!("approx_cosine_i8_{}", quant::kernel_name()), |b| {
        b.iter(|| quant::approx_distance(Space::Cosine, black_box(&codes[0]), black_box(&codes[1])))
    });
    // The nibble-plane kernels segment walks run on (`codes.bin` version 3): the high plane is
    // what a walk reads per row; both planes give the exact int8 dot product.
    let (mut hi, mut lo) = (Vec::new(), Vec::new());
    nibbles::split_into(&codes[1][..DIM], &mut hi, &mut lo);
    let q = &codes[0][..DIM];
    let q_sum = nibbles::sum(q);
    for (name, dot) in nibbles::available_kernels() {
        group.bench_function(format!("dot_plane_{name}"), |b| {
            b.iter(|| dot(black_box(q), black_box(&hi)))
        });
    }
    group.bench_function(
        format!("exact_dot_planes_{}", nibbles::kernel_name()),
        |b| b.iter(|| nibbles::exact_dot(black_box(q), q_sum, black_box(&hi), black_box(&lo))),
    );
    group.finish();
}

fn exact_query(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(11);
    let data = random_vectors(&mut rng, N);
    let queries = random_vectors(&mut rng, 16);
    let mut group = c.benchmark_group("exact_scan_20k_1536");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(N as u64));
    for space in [Space::L2, Space::Cosine] {
        let dir = tempfile::tempdir().expect("tempdir");
        let coll = Collection::create(
            &dir.path().join("c"),
            CollectionConfig {
                space,
                ..Default::default()
            },
        )
        .expect("create");
        for (chunk_no, chunk) in data.chunks(1000).enumerate() {
            let records = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| Record {
                    id: format!("r{}", chunk_no * 1000 + i),
                    embedding: v.clone(),
                    metadata: None,
                    document: None,
                    uri: None,
                })
                .collect();
            coll.apply(WriteBatch::Add(records), None).expect("apply");
        }
        let mut q = 0;
        group.bench_function(format!("{}_top10", space.as_str()), |b| {
            b.iter(|| {
                q = (q + 1) % queries.len();
                coll.query(&QueryRequest {
                    embeddings: vec![queries[q].clone()],
                    n_results: 10,
                    ids: None,
                    filter: None,
                    include: Include {
                        distances: true,
                        ..Default::default()
                    },
                })
                .expect("query")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, kernels, exact_query);
criterion_main!(benches);
