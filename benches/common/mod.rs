//! Datasets shared by the benches: the shared harness's `.npy` sets (real100k) and a seeded
//! clustered synthetic set with exact ground truth.
#![allow(dead_code)]

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vectord::index::distance::{distance, inverse_norm};
use vectord::types::Space;

/// Reads a little-endian .npy of `<f4` or `<i4` as raw 4-byte values: (shape, data).
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{} is not .npy", path.display());
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).unwrap();
    assert!(
        header.contains("'<f4'") || header.contains("'<i4'"),
        "unsupported dtype: {header}"
    );
    let shape_str = &header[header.find("'shape': (").unwrap() + 10..];
    let shape: Vec<usize> = shape_str[..shape_str.find(')').unwrap()]
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    (shape, bytes[start + hlen..].to_vec())
}

pub fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Base vectors, queries and their exact top-10 (cosine).
pub struct Data {
    pub dim: usize,
    pub base: Vec<f32>,
    pub queries: Vec<f32>,
    pub gt: Vec<Vec<usize>>,
}

/// A clustered synthetic set (seeded) with exact cosine ground truth.
pub fn synthetic(n: usize, nq: usize, dim: usize) -> Data {
    let mut rng = StdRng::seed_from_u64(1);
    let centers: Vec<Vec<f32>> = (0..32)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect();
    let mut gen = |n: usize| -> Vec<f32> {
        (0..n)
            .flat_map(|_| {
                let c = centers[rng.random_range(0..centers.len())].clone();
                c.into_iter()
                    .map(|x| x + rng.random_range(-0.3f32..0.3))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let base = gen(n);
    let queries = gen(nq);
    let gt = queries
        .chunks_exact(dim)
        .map(|q| {
            let qi = inverse_norm(q);
            let mut d: Vec<(f32, usize)> = base
                .chunks_exact(dim)
                .enumerate()
                .map(|(i, v)| (distance(Space::Cosine, q, v, qi, inverse_norm(v)), i))
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0));
            d.iter().take(10).map(|x| x.1).collect()
        })
        .collect();
    Data {
        dim,
        base,
        queries,
        gt,
    }
}

/// Loads base.npy, queries.npy and gt.npy from `dir`.
pub fn load(dir: &Path) -> Data {
    let (bs, b) = read_npy(&dir.join("base.npy"));
    let (_, q) = read_npy(&dir.join("queries.npy"));
    let (gs, g) = read_npy(&dir.join("gt.npy"));
    let gt_raw: Vec<i32> = g
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let gt = gt_raw
        .chunks_exact(gs[1])
        .map(|r| r.iter().take(10).map(|&x| x as usize).collect())
        .collect();
    Data {
        dim: bs[1],
        base: f32s(&b),
        queries: f32s(&q),
        gt,
    }
}

/// Adds rows `0..n` of `base` (row-major, `dim` wide) to `c` as the HTTP harness does: 2
/// writer threads, batches of 100, ids `"0"`, `"1"`, …; returns once every batch is
/// acknowledged.
pub fn ingest(
    c: &std::sync::Arc<vectord::engine::Collection>,
    base: &std::sync::Arc<Vec<f32>>,
    dim: usize,
) {
    ingest_with(c, base, dim, None)
}

/// As [`ingest`], with row `i`'s metadata from `metadatas[i]`.
pub fn ingest_with(
    c: &std::sync::Arc<vectord::engine::Collection>,
    base: &std::sync::Arc<Vec<f32>>,
    dim: usize,
    metadatas: Option<std::sync::Arc<Vec<vectord::types::Metadata>>>,
) {
    use vectord::types::{Record, WriteBatch};
    let n = base.len() / dim;
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (c, base) = (std::sync::Arc::clone(c), std::sync::Arc::clone(base));
            let metadatas = metadatas.clone();
            std::thread::spawn(move || {
                let batches = n.div_ceil(100);
                for b in (w..batches).step_by(2) {
                    let records = (b * 100..((b + 1) * 100).min(n))
                        .map(|i| Record {
                            id: format!("{i}"),
                            embedding: base[i * dim..(i + 1) * dim].to_vec(),
                            metadata: metadatas
                                .as_ref()
                                .and_then(|m| m.get(i).cloned())
                                .filter(|m| !m.is_empty()),
                            document: None,
                            uri: None,
                        })
                        .collect();
                    c.apply(WriteBatch::Add(records), None).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
}

/// Waits until every row of `c` is in a graph (memtables indexed; flushes and compactions
/// may still run).
pub fn wait_caught_up(c: &vectord::engine::Collection) {
    while c.stats().unindexed_rows > 0 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The shared harness's collection settings: cosine, M 16, ef_construction 100, ef_search 100.
pub fn harness_config() -> vectord::engine::CollectionConfig {
    vectord::engine::CollectionConfig {
        space: Space::Cosine,
        hnsw: vectord::engine::HnswParams {
            ef_construction: 100,
            ef_search: 100,
            max_neighbors: 16,
            ..Default::default()
        },
    }
}
