//! Acknowledged write throughput: `Collection::apply` of add/upsert batches of 1536-d records,
//! each call returning only after its WAL record is durable (fdatasync). Batch sizes 1, 100 and
//! 1000; reported as records/s and as bytes/s of vector payload.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vectord::engine::{Collection, CollectionConfig};
use vectord::types::{Space, UpsertRecord, WriteBatch};

const DIM: usize = 1536;

fn batch(n: usize, round: u64) -> WriteBatch {
    WriteBatch::Upsert(
        (0..n)
            .map(|i| UpsertRecord {
                // Upserting a fixed id set keeps memory flat however many iterations run.
                id: format!("id-{i}"),
                embedding: (0..DIM)
                    .map(|d| ((d + i) as f32 + round as f32).sin())
                    .collect(),
                metadata: None,
                document: None,
                uri: None,
            })
            .collect(),
    )
}

fn wal_append_sync(c: &mut Criterion) {
    for (name, per_record_bytes) in [("records", None), ("bytes", Some((DIM * 4) as u64))] {
        let mut group = c.benchmark_group(format!("wal_append_sync_{name}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(4))
            .warm_up_time(Duration::from_secs(1));
        for n in [1usize, 100, 1000] {
            group.throughput(match per_record_bytes {
                None => Throughput::Elements(n as u64),
                Some(b) => Throughput::Bytes(b * n as u64),
            });
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
                let batches: Vec<WriteBatch> = (0..4).map(|r| batch(n, r)).collect();
                b.iter_custom(|iters| {
                    // A fresh collection per sample keeps the WAL (and the disk) bounded.
                    let dir = tempfile::tempdir().expect("tempdir");
                    let coll = Collection::create(
                        &dir.path().join("c"),
                        CollectionConfig {
                            space: Space::Cosine,
                            ..Default::default()
                        },
                    )
                    .expect("create");
                    let start = Instant::now();
                    for i in 0..iters {
                        coll.apply(batches[i as usize % batches.len()].clone(), None)
                            .expect("apply");
                    }
                    start.elapsed()
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, wal_append_sync);
criterion_main!(benches);
