//! End-to-end engine figures in process (no HTTP): acknowledged ingest rate, time until every
//! row is in a graph, query latency/QPS and recall@10, flush + reopen time.
//!
//! Real data: `VECTORD_BENCH_DATA=/tmp/bench-data/real100k cargo bench --bench engine_real`
//! (the set `../shared/bench/make-data.sh real100k` writes: base.npy, queries.npy, gt.npy).
//! Without it (and under `cargo test`) a small synthetic clustered set is used.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

mod common;

use common::{harness_config, ingest, load, synthetic, wait_caught_up};
use vectord::engine::{Collection, HnswParams};
use vectord::types::{Include, QueryRequest};

fn rss_anon_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("RssAnon:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let real = std::env::args().any(|a| a == "--bench");
    let data = match std::env::var_os("VECTORD_BENCH_DATA") {
        Some(dir) if real => load(Path::new(&dir)),
        _ => synthetic(
            if real { 20_000 } else { 2_000 },
            if real { 200 } else { 20 },
            64,
        ),
    };
    let n = data.base.len() / data.dim;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let config = harness_config();
    let c = Arc::new(Collection::create(&path, config).unwrap());

    // Ingest: 2 writers, batches of 100, as the HTTP harness does.
    let started = Instant::now();
    let base = Arc::new(data.base);
    let dim = data.dim;
    ingest(&c, &base, dim);
    let acked = started.elapsed();
    // Caught up: every row in a graph (memtable indexed, flushes and compactions settled).
    wait_caught_up(&c);
    let caught_up = started.elapsed();
    let stats_after_ingest = c.stats();

    let run_queries = |c: &Collection| -> (Vec<f64>, f64) {
        let mut lat = Vec::new();
        let mut hits = 0usize;
        for (qi, q) in data.queries.chunks_exact(dim).enumerate() {
            let t = Instant::now();
            let r = c
                .query(&QueryRequest {
                    embeddings: vec![q.to_vec()],
                    n_results: 10,
                    ids: None,
                    filter: None,
                    include: Include {
                        distances: true,
                        ..Default::default()
                    },
                })
                .unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            let want: HashSet<String> = data.gt[qi].iter().map(|i| i.to_string()).collect();
            hits += r.results[0]
                .ids
                .iter()
                .filter(|id| want.contains(*id))
                .count();
        }
        lat.sort_by(f64::total_cmp);
        (lat, hits as f64 / (data.gt.len() * 10) as f64)
    };
    let before = c.stats();
    let (lat, recall) = run_queries(&c);
    let after = c.stats();
    let comps =
        (after.distance_computations - before.distance_computations) as f64 / lat.len() as f64;

    let t = Instant::now();
    Arc::try_unwrap(c).map_err(|_| ()).unwrap().close().unwrap();
    let close = t.elapsed();
    let rss_before_open = rss_anon_kib();
    let t = Instant::now();
    let c = Collection::open(&path).unwrap();
    let open = t.elapsed();
    let rss_after_open = rss_anon_kib();
    let (lat2, recall2) = run_queries(&c);
    println!(
        "{{\"n\": {n}, \"dim\": {dim}, \"ack_ingest_per_s\": {:.0}, \"ack_s\": {:.2}, \"graph_caught_up_s\": {:.2}, \
\"segments_after_ingest\": {}, \"recall_at_10\": {recall:.4}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"distances_per_query\": {comps:.0}, \
\"close_s\": {:.2}, \"open_ms\": {:.1}, \"rss_anon_open_delta_kib\": {}, \"reopened_recall\": {recall2:.4}, \"reopened_p50_ms\": {:.3}, \"reopened_p99_ms\": {:.3}}}",
        n as f64 / acked.as_secs_f64(),
        acked.as_secs_f64(),
        caught_up.as_secs_f64(),
        stats_after_ingest.segments,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        close.as_secs_f64(),
        open.as_secs_f64() * 1000.0,
        match (rss_before_open, rss_after_open) { (Some(a), Some(b)) => (b as i64 - a as i64).to_string(), _ => "null".into() },
        percentile(&lat2, 0.5),
        percentile(&lat2, 0.99),
    );

    // Recall/QPS curve over the reopened segments: int8 traversal + f32 rescoring vs f32
    // traversal, per ef_search; QPS with 2 query threads (the whole machine).
    let hnsw = c.config().hnsw;
    for quantized in [true, false] {
        c.set_quantized_search(quantized);
        for ef in [16u32, 32, 64, 100, 200] {
            c.set_hnsw(HnswParams {
                ef_search: ef,
                ..hnsw
            })
            .unwrap();
            let (lat, recall) = run_queries(&c);
            let nq = data.queries.len() / dim;
            let t = Instant::now();
            std::thread::scope(|s| {
                for part in 0..2 {
                    let (c, queries) = (&c, &data.queries);
                    s.spawn(move || {
                        for q in queries.chunks_exact(dim).skip(part).step_by(2) {
                            c.query(&QueryRequest {
                                embeddings: vec![q.to_vec()],
                                n_results: 10,
                                ids: None,
                                filter: None,
                                include: Include {
                                    distances: true,
                                    ..Default::default()
                                },
                            })
                            .unwrap();
                        }
                    });
                }
            });
            println!(
                "{{\"curve\": \"{}\", \"ef\": {ef}, \"recall_at_10\": {recall:.4}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"qps_2_threads\": {:.0}}}",
                if quantized { "int8+rescore" } else { "f32" },
                percentile(&lat, 0.5),
                percentile(&lat, 0.99),
                nq as f64 / t.elapsed().as_secs_f64(),
            );
        }
    }
}
