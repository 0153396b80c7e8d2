//! Shared fixtures for the index tests and the `graph_search` bench: clustered gaussian data, a built graph,
//! exact ground truth.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vectord::index::topk::Scored;
#[cfg(feature = "hnsw-rs-baseline")]
use vectord::index::HnswRsBuilder;
use vectord::index::{exact_search, BuildParams, F32Vectors, GraphBuilder, PreparedQuery};
use vectord::types::Space;

/// Standard normal sample (Box–Muller; rand_distr is not a dependency).
pub fn gauss(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// `n` points in `clusters` gaussian clusters (centres N(0,1), spread `sigma`), row-major,
/// plus `nq` queries from the same distribution. For `ip` rows are scaled to norms in
/// [0.8, 1.2] so inner product is a meaningful (non-metric) ranking.
pub fn clustered(
    seed: u64,
    n: usize,
    nq: usize,
    dim: usize,
    clusters: usize,
    sigma: f32,
    space: Space,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| gauss(&mut rng)).collect())
        .collect();
    let point = |rng: &mut StdRng| -> Vec<f32> {
        let c = &centres[rng.random_range(0..clusters)];
        let mut v: Vec<f32> = c.iter().map(|x| x + sigma * gauss(rng)).collect();
        if space == Space::Ip {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
            let scale = rng.random_range(0.8f32..1.2) / norm;
            v.iter_mut().for_each(|x| *x *= scale);
        }
        v
    };
    let data: Vec<f32> = (0..n).flat_map(|_| point(&mut rng)).collect();
    let queries = (0..nq).map(|_| point(&mut rng)).collect();
    (data, queries)
}

/// `data`'s rows as `(vector, id)` pairs, ids = row numbers.
pub fn rows(data: &[f32], dim: usize) -> Vec<(&[f32], u32)> {
    data.chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| (v, i as u32))
        .collect()
}

fn params(data: &[f32], dim: usize, m: usize, ef_c: usize) -> BuildParams {
    BuildParams {
        max_neighbors: m,
        ef_construction: ef_c,
        capacity_hint: data.len() / dim,
    }
}

/// Builds a graph over `data` (ids = row numbers) in batches, like the engine's flushes.
pub fn build(space: Space, dim: usize, data: &[f32], m: usize, ef_c: usize) -> GraphBuilder {
    let b = GraphBuilder::new(space, dim, params(data, dim, m, ef_c)).expect("params");
    for batch in rows(data, dim).chunks(4096) {
        b.insert_batch(batch).expect("insert");
    }
    b
}

/// The same with the hnsw_rs reference builder.
#[cfg(feature = "hnsw-rs-baseline")]
pub fn build_hnsw_rs(
    space: Space,
    dim: usize,
    data: &[f32],
    m: usize,
    ef_c: usize,
) -> HnswRsBuilder {
    let b = HnswRsBuilder::new(space, dim, params(data, dim, m, ef_c)).expect("params");
    for batch in rows(data, dim).chunks(4096) {
        b.insert_batch(batch).expect("insert");
    }
    b
}

/// Inverse norms per row (what vectors.bin stores for cosine).
pub fn inv_norms(data: &[f32], dim: usize) -> Vec<f32> {
    data.chunks_exact(dim)
        .map(vectord::index::distance::inverse_norm)
        .collect()
}

/// Exact top-k per query with `accept`.
pub fn truth(
    store: &F32Vectors<'_>,
    space: Space,
    queries: &[Vec<f32>],
    k: usize,
    accept: impl Fn(u32) -> bool + Copy,
) -> Vec<Vec<Scored>> {
    queries
        .iter()
        .map(|q| {
            let pq = PreparedQuery::new(space, q).expect("query");
            exact_search(store, &pq, k, accept)
        })
        .collect()
}

/// |found ∩ truth| / |truth| by row id.
pub fn overlap(found: &[Scored], truth: &[Scored]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    let hits = truth
        .iter()
        .filter(|t| found.iter().any(|f| f.row == t.row))
        .count();
    hits as f64 / truth.len() as f64
}
