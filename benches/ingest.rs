//! Acknowledged ingest and graph catch-up (issue 4's "acknowledged ingest rate and time until
//! the graph has caught up"), in process: each sample creates a fresh cosine collection
//! (M 16, ef_construction 100), adds every base row with 2 writers in batches of 100, and
//! times (a) until the last batch is acknowledged and (b) until every row is in a graph.
//!
//! real100k: `VECTORD_BENCH_DATA=/tmp/bench-data/real100k cargo bench --bench ingest`
//! (10 samples of ~30 s). Without it a 20,000-row synthetic clustered set at 256-d is used;
//! under `cargo test` a 2,000-row one, once.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};

mod common;

use common::{harness_config, ingest, load, synthetic, wait_caught_up, Data};
use vectord::engine::Collection;

fn dataset() -> Data {
    let bench = std::env::args().any(|a| a == "--bench");
    match std::env::var_os("VECTORD_BENCH_DATA") {
        Some(dir) if bench => load(Path::new(&dir)),
        _ if bench => synthetic(20_000, 10, 256),
        _ => synthetic(2_000, 10, 64),
    }
}

/// One fresh collection, ingested; returns (acknowledged, caught up) since the first add.
fn run_once(base: &Arc<Vec<f32>>, dim: usize) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let config = harness_config();
    let c = Arc::new(Collection::create(&dir.path().join("c"), config).unwrap());
    let started = Instant::now();
    ingest(&c, base, dim);
    let acked = started.elapsed();
    wait_caught_up(&c);
    let caught_up = started.elapsed();
    drop(c);
    (acked, caught_up)
}

fn ingest_bench(cr: &mut Criterion) {
    let data = dataset();
    let dim = data.dim;
    let n = data.base.len() / dim;
    let base = Arc::new(data.base);
    let mut group = cr.benchmark_group("ingest");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .throughput(Throughput::Elements(n as u64));
    // Criterion times each stage with its own runs: a run's acknowledged time and its
    // caught-up time are the two figures the issue asks for.
    for stage in ["acknowledged", "caught_up"] {
        group.bench_function(BenchmarkId::new(stage, format!("{n}x{dim}")), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let (acked, caught_up) = run_once(&base, dim);
                        if stage == "acknowledged" {
                            acked
                        } else {
                            caught_up
                        }
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, ingest_bench);
criterion_main!(benches);
