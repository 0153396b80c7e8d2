//! Graph build rate and quality: our [`GraphBuilder`] vs the hnsw_rs reference
//! ([`HnswRsBuilder`]) on the same rows with the same int8 distance, then recall@10 of the
//! exported flat graph (int8 walk + f32 rescoring, as segments are searched) at several `ef`.
//!
//! Real data: `VECTORD_BENCH_DATA=/tmp/bench-data/real100k cargo bench --bench graph_build`
//! (`HNSW_RS=1` also times hnsw_rs, ~2 minutes per 100k × 1536 on 2 cores). Without it (and
//! under `cargo test`) a small synthetic clustered set is used.

mod common;

use std::path::Path;
use std::time::Instant;

use common::{load, synthetic};
use vectord::index::distance::inverse_norm;
use vectord::index::{
    quant, search_rescored, BuildParams, F32Vectors, FlatGraph, GraphBuilder, HnswRsBuilder,
    I8Vectors, PreparedQuery, SearchParams,
};
use vectord::types::Space;

const SPACE: Space = Space::Cosine;

/// CPU seconds this process has used (user + system), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime and stime are 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

fn main() {
    let real = std::env::args().any(|a| a == "--bench");
    let data = match std::env::var("VECTORD_BENCH_DATA") {
        Ok(dir) if real => load(Path::new(&dir)),
        _ => synthetic(if real { 20_000 } else { 2_000 }, 100, 64),
    };
    let dim = data.dim;
    let n = data.base.len() / dim;
    let rows: Vec<(&[f32], u32)> = data
        .base
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| (v, i as u32))
        .collect();
    let params = BuildParams {
        max_neighbors: 16,
        ef_construction: 100,
        capacity_hint: n,
    };
    println!(
        "{n} × {dim}, M 16, ef_construction 100, {} rayon threads, int8 kernel {}",
        rayon::current_num_threads(),
        quant::kernel_name()
    );

    let b = GraphBuilder::new(SPACE, dim, params).expect("builder");
    let (t, cpu) = (Instant::now(), cpu_seconds());
    // Batches of 512 rows, as the memtable's indexer feeds it.
    for chunk in rows.chunks(512) {
        b.insert_batch(chunk).expect("insert");
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "native build: {secs:.1} s wall, {:.1} CPU-s = {:.0} points/s",
        cpu_seconds() - cpu,
        n as f64 / secs
    );
    let t = Instant::now();
    let bytes = b.export().expect("export");
    println!(
        "export: {:.2} s, graph.bin {:.1} MiB",
        t.elapsed().as_secs_f64(),
        bytes.len() as f64 / (1 << 20) as f64
    );
    let graph = FlatGraph::from_bytes("mem", bytes).expect("open");

    if std::env::var_os("HNSW_RS").is_some() {
        let h = HnswRsBuilder::new(SPACE, dim, params).expect("hnsw_rs");
        let (t, cpu) = (Instant::now(), cpu_seconds());
        for chunk in rows.chunks(512) {
            h.insert_batch(chunk).expect("insert");
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "hnsw_rs build: {secs:.1} s wall, {:.1} CPU-s = {:.0} points/s",
            cpu_seconds() - cpu,
            n as f64 / secs
        );
    }

    let inv: Vec<f32> = data.base.chunks_exact(dim).map(inverse_norm).collect();
    let exact = F32Vectors::new(dim, &data.base, Some(&inv)).expect("store");
    let mut codes = Vec::with_capacity(n * quant::code_len(dim));
    for v in data.base.chunks_exact(dim) {
        quant::encode_into(SPACE, v, &mut codes);
    }
    let coded = I8Vectors::new(dim, n, quant::code_len(dim), &codes).expect("codes");
    for ef in [16, 32, 64, 100, 200] {
        let mut hits = 0usize;
        let mut dists = 0u64;
        let t = Instant::now();
        for (q, want) in data.queries.chunks_exact(dim).zip(&data.gt) {
            let pq = PreparedQuery::new(SPACE, q).expect("query");
            let out = search_rescored(
                &graph,
                &coded,
                &exact,
                &pq,
                &SearchParams::new(10, ef),
                |_| true,
            )
            .expect("search");
            dists += out.stats.distance_computations;
            hits += out
                .results
                .iter()
                .filter(|r| want.contains(&(r.row as usize)))
                .count();
        }
        let nq = data.gt.len();
        println!(
            "ef {ef:>3}: recall@10 {:.4}, {:.0} distances/query ({:.2}% of N), {:.3} ms/query (1 thread)",
            hits as f64 / (nq * 10) as f64,
            dists as f64 / nq as f64,
            100.0 * dists as f64 / nq as f64 / n as f64,
            t.elapsed().as_secs_f64() * 1e3 / nq as f64
        );
    }
}
