//! Graph search: the flat searcher on memory-mapped `graph.bin` + `vectors` (f32, and int8
//! codes with f32 rescoring of the best `rescore_count(k)` candidates) vs hnsw_rs's own
//! in-memory search over int8 codes (through `HnswRsBuilder::search`, which rescores its `ef`
//! candidates with our f32 kernels), on one clustered set, at ef ∈ {16, 32, 64, 128, 256}, 1 and 2 threads.
//! Recall@10 and distance computations per query are printed beside the timings, and the
//! build rate once at the start.
//!
//! `cargo bench --bench graph_search` uses 20,000 × 1536 (l2, M = 16, ef_construction = 100);
//! `GRAPH_BENCH_N` / `GRAPH_BENCH_DIM` override. Under `cargo test` (no `--bench` flag) it
//! shrinks to 2,000 × 128 so CI stays fast.

// The index tests' fixtures; this bench uses some of them.
#[allow(dead_code)]
#[path = "../tests/it/support/index.rs"]
mod index_common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use index_common::{build_hnsw_rs, clustered, overlap, truth};
use rayon::prelude::*;
use vectord::fsutil::atomic_replace;
use vectord::index::vectors::f32_slice_from_bytes;
use vectord::index::*;
use vectord::types::Space;

const K: usize = 10;
const EFS: [usize; 5] = [16, 32, 64, 128, 256];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn graph_search(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let n = env_usize("GRAPH_BENCH_N", if full { 20_000 } else { 2_000 });
    let dim = env_usize("GRAPH_BENCH_DIM", if full { 1536 } else { 128 });
    let space = Space::L2;
    let (data, queries) = clustered(42, n, 100, dim, 100, 1.0, space);

    let t = Instant::now();
    let builder = build_hnsw_rs(space, dim, &data, 16, 100);
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "build: {n} × {dim} in {secs:.1} s = {:.0} points/s ({} rayon threads)",
        n as f64 / secs,
        rayon::current_num_threads()
    );
    let t = Instant::now();
    let bytes = builder.export().expect("export");
    eprintln!(
        "export: {:.2} s, graph.bin {} bytes ({:.0} B/point)",
        t.elapsed().as_secs_f64(),
        bytes.len(),
        bytes.len() as f64 / n as f64
    );

    // Both files on disk, then mapped: the read path a segment uses.
    let dir = tempfile::tempdir().expect("tempdir");
    let graph_path = dir.path().join("graph.bin");
    atomic_replace(&graph_path, &bytes).expect("write graph");
    let vec_path = dir.path().join("vectors.bin");
    let raw: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    atomic_replace(&vec_path, &raw).expect("write vectors");
    drop(raw);
    let t = Instant::now();
    let graph = FlatGraph::open_mmap(&graph_path).expect("open graph");
    eprintln!("open graph.bin: {:?}", t.elapsed());
    let vec_file = std::fs::File::open(&vec_path).expect("open vectors");
    // SAFETY: the benchmark's own temp file, not modified while mapped.
    let vec_map = unsafe { memmap2::Mmap::map(&vec_file) }.expect("map vectors");
    let floats = f32_slice_from_bytes(&vec_map).expect("aligned vectors");
    let store = F32Vectors::new(dim, floats, None).expect("store");
    // int8 codes at a 64-byte stride, also mapped from a file (what `codes.bin` holds).
    let stride = quant::code_len(dim).next_multiple_of(64);
    let code_path = dir.path().join("codes.bin");
    let mut raw_codes = Vec::with_capacity(n * stride);
    for v in data.chunks_exact(dim) {
        let mut c = quant::encode(space, v);
        c.resize(stride, 0);
        raw_codes.extend(c.into_iter().map(|x| x as u8));
    }
    atomic_replace(&code_path, &raw_codes).expect("write codes");
    drop(raw_codes);
    let code_file = std::fs::File::open(&code_path).expect("open codes");
    // SAFETY: the benchmark's own temp file, not modified while mapped.
    let code_map = unsafe { memmap2::Mmap::map(&code_file) }.expect("map codes");
    let coded = I8Vectors::new(dim, n, stride, bytemuck::cast_slice(&code_map)).expect("codes");

    let truth = truth(&store, space, &queries, K, |_| true);
    let prepared: Vec<PreparedQuery> = queries
        .iter()
        .map(|q| PreparedQuery::new(space, q).expect("query"))
        .collect();
    for ef in EFS {
        let (mut rf, mut rh, mut ef_evals, mut eh_evals) = (0.0, 0.0, 0u64, 0u64);
        let mut rq = 0.0;
        for (pq, t) in prepared.iter().zip(&truth) {
            let p = SearchParams::new(K, ef);
            let r = search_rescored(&graph, &coded, &store, pq, &p, |_| true).expect("int8");
            rq += overlap(&r.results, t);
        }
        eprintln!(
            "ef={ef:>3}: int8+rescore recall@10 {:.4}",
            rq / queries.len() as f64
        );
        for ((q, pq), t) in queries.iter().zip(&prepared).zip(&truth) {
            let f = search(&graph, &store, pq, &SearchParams::new(K, ef), |_| true).expect("flat");
            let h = builder.search(q, K, ef, |_| true, &store).expect("hnsw");
            rf += overlap(&f.results, t);
            rh += overlap(&h.results, t);
            ef_evals += f.stats.distance_computations;
            eh_evals += h.stats.distance_computations;
        }
        let nq = queries.len() as f64;
        eprintln!(
            "ef={ef:>3}: flat recall@10 {:.4} ({:.0} dists/query, {:.2}% of N) | hnsw_rs recall@10 {:.4} ({:.0} dists/query)",
            rf / nq,
            ef_evals as f64 / nq,
            100.0 * ef_evals as f64 / nq / n as f64,
            rh / nq,
            eh_evals as f64 / nq
        );
    }

    let mut group = c.benchmark_group(format!("graph_search_{n}x{dim}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    for ef in EFS {
        let p = SearchParams::new(K, ef);
        let mut i = 0;
        group.bench_function(format!("flat_mmap/1t/ef{ef}"), |b| {
            b.iter(|| {
                i = (i + 1) % prepared.len();
                black_box(
                    search(&graph, &store, &prepared[i], &p, |_| true).map(|o| o.results.len()),
                )
            })
        });
        let mut i = 0;
        group.bench_function(format!("int8_rescore_mmap/1t/ef{ef}"), |b| {
            b.iter(|| {
                i = (i + 1) % prepared.len();
                black_box(
                    search_rescored(&graph, &coded, &store, &prepared[i], &p, |_| true)
                        .map(|o| o.results.len()),
                )
            })
        });
        let mut i = 0;
        group.bench_function(format!("hnsw_rs/1t/ef{ef}"), |b| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                black_box(
                    builder
                        .search(&queries[i], K, ef, |_| true, &store)
                        .map(|o| o.results.len()),
                )
            })
        });
    }
    // Two threads: a batch of all queries through a 2-thread pool, throughput per query.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    group.throughput(Throughput::Elements(queries.len() as u64));
    for ef in [32, 64, 128] {
        let p = SearchParams::new(K, ef);
        group.bench_function(format!("flat_mmap/2t/ef{ef}"), |b| {
            b.iter(|| {
                pool.install(|| {
                    prepared
                        .par_iter()
                        .map(|q| {
                            search(&graph, &store, q, &p, |_| true).map_or(0, |o| o.results.len())
                        })
                        .sum::<usize>()
                })
            })
        });
        group.bench_function(format!("int8_rescore_mmap/2t/ef{ef}"), |b| {
            b.iter(|| {
                pool.install(|| {
                    prepared
                        .par_iter()
                        .map(|q| {
                            search_rescored(&graph, &coded, &store, q, &p, |_| true)
                                .map_or(0, |o| o.results.len())
                        })
                        .sum::<usize>()
                })
            })
        });
        group.bench_function(format!("hnsw_rs/2t/ef{ef}"), |b| {
            b.iter(|| {
                pool.install(|| {
                    queries
                        .par_iter()
                        .map(|q| {
                            builder
                                .search(q, K, ef, |_| true, &store)
                                .map_or(0, |o| o.results.len())
                        })
                        .sum::<usize>()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, graph_search);
criterion_main!(benches);
