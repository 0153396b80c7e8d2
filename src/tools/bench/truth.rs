//! Exact ground truth, computed on the client (rayon over blocks of queries, so each base row
//! is read once per block) and cached next to the dataset under a hash of its inputs.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use super::dataset::Matrix;

/// Distance function of the collection (Chroma's `space`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Space {
    /// 1 − cosine similarity.
    Cosine,
    /// Squared Euclidean distance.
    L2,
    /// 1 − inner product.
    Ip,
}

impl Space {
    /// The name Chroma uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Space::Cosine => "cosine",
            Space::L2 => "l2",
            Space::Ip => "ip",
        }
    }
}

/// Queries per block: 8 queries of 1536 floats (48 KiB) stay in L2 while base rows stream.
const BLOCK: usize = 8;

/// Eight independent accumulators so the loop vectorises without fast-math.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[derive(PartialEq)]
struct Cand(f32, u32);
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

/// Exact top-`k` base row ids per query (ascending distance), restricted to `rows` when given;
/// `nq * k` ids, padded with −1 when fewer rows are eligible.
pub fn exact_topk(
    base: &Matrix,
    queries: &Matrix,
    space: Space,
    k: usize,
    rows: Option<&[u32]>,
) -> Vec<i32> {
    let norms = |m: &Matrix| -> Vec<f32> { (0..m.rows).map(|i| dot(m.row(i), m.row(i))).collect() };
    let bnorm = norms(base);
    let qnorm = norms(queries);
    let all: Vec<u32>;
    let rows = match rows {
        Some(r) => r,
        None => {
            all = (0..base.rows as u32).collect();
            &all
        }
    };
    let dist = |q: usize, r: usize, d: f32| -> f32 {
        match space {
            Space::Cosine => 1.0 - d / (qnorm[q] * bnorm[r]).sqrt().max(f32::MIN_POSITIVE),
            Space::L2 => qnorm[q] + bnorm[r] - 2.0 * d,
            Space::Ip => 1.0 - d,
        }
    };
    let blocks: Vec<Vec<i32>> = (0..queries.rows.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let qs: Vec<usize> = (b * BLOCK..((b + 1) * BLOCK).min(queries.rows)).collect();
            let mut heaps: Vec<BinaryHeap<Cand>> = qs
                .iter()
                .map(|_| BinaryHeap::with_capacity(k + 1))
                .collect();
            for &r in rows {
                let row = base.row(r as usize);
                for (h, &q) in heaps.iter_mut().zip(&qs) {
                    let d = dist(q, r as usize, dot(queries.row(q), row));
                    if h.len() < k {
                        h.push(Cand(d, r));
                    } else if h.peek().is_some_and(|w| Cand(d, r) < *w) {
                        h.pop();
                        h.push(Cand(d, r));
                    }
                }
            }
            let mut out = Vec::with_capacity(qs.len() * k);
            for h in heaps {
                let mut v = h.into_sorted_vec();
                v.truncate(k);
                let n = v.len();
                out.extend(v.into_iter().map(|c| c.1 as i32));
                out.extend(std::iter::repeat_n(-1, k - n));
            }
            out
        })
        .collect();
    blocks.concat()
}

/// A fast 64-bit fingerprint of float data (not cryptographic: it only keys a cache).
pub fn hash_f32(data: &[f32]) -> u64 {
    let parts: Vec<u64> = data
        .par_chunks(1 << 20)
        .map(|c| {
            c.iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, x| mix(h ^ x.to_bits() as u64))
        })
        .collect();
    parts.iter().fold(data.len() as u64, |h, p| mix(h ^ p))
}

/// Mixes one more word into a running hash.
pub fn mix(h: u64) -> u64 {
    let h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 29)
}

/// Mixes bytes (filter JSON, metadata) into a running hash.
pub fn hash_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    for c in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    mix(h ^ bytes.len() as u64)
}

/// Ground truth from `dir/vectord-bench-gt-<key>.bin`, or computed with `compute` and stored
/// there (atomically; a failure to store is only reported).
pub fn cached(
    dir: &Path,
    key: u64,
    nq: usize,
    k: usize,
    compute: impl FnOnce() -> Vec<i32>,
) -> (Vec<i32>, bool) {
    let path = dir.join(format!("vectord-bench-gt-{key:016x}.bin"));
    if let Ok(raw) = std::fs::read(&path) {
        if raw.len() == 24 + nq * k * 4
            && &raw[..8] == b"VBGT0001"
            && raw[8..16] == (nq as u64).to_le_bytes()
            && raw[16..24] == (k as u64).to_le_bytes()
        {
            let ids = raw[24..]
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            return (ids, true);
        }
    }
    let ids = compute();
    let store = || -> std::io::Result<()> {
        let _ = std::fs::create_dir_all(dir);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        f.write_all(b"VBGT0001")?;
        f.write_all(&(nq as u64).to_le_bytes())?;
        f.write_all(&(k as u64).to_le_bytes())?;
        for id in &ids {
            f.write_all(&id.to_le_bytes())?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = store() {
        eprintln!(
            "vectord bench: could not cache ground truth in {}: {e}",
            path.display()
        );
    }
    (ids, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rows: &[&[f32]]) -> Matrix {
        Matrix {
            rows: rows.len(),
            dim: rows[0].len(),
            data: rows.concat(),
        }
    }

    #[test]
    fn topk_orders_by_each_space_and_respects_the_row_subset() {
        let base = m(&[&[1.0, 0.0], &[0.0, 1.0], &[3.0, 0.1], &[-1.0, 0.0]]);
        let q = m(&[&[1.0, 0.0]]);
        // Cosine: rows 0 (exact direction) then 2 (nearly); L2: row 0 (distance 0) then 1 (√2).
        assert_eq!(exact_topk(&base, &q, Space::Cosine, 2, None), vec![0, 2]);
        assert_eq!(exact_topk(&base, &q, Space::L2, 2, None), vec![0, 1]);
        assert_eq!(exact_topk(&base, &q, Space::Ip, 2, None), vec![2, 0]);
        assert_eq!(
            exact_topk(&base, &q, Space::Cosine, 3, Some(&[1, 3])),
            vec![1, 3, -1]
        );
    }

    #[test]
    fn blocked_search_equals_brute_force_on_random_data() {
        let mut rng = super::super::dataset::Rng::new(3);
        let mut gen = |n: usize| Matrix {
            rows: n,
            dim: 13,
            data: (0..n * 13).map(|_| rng.normal() as f32).collect(),
        };
        let (base, qs) = (gen(300), gen(19));
        let got = exact_topk(&base, &qs, Space::L2, 5, None);
        for q in 0..qs.rows {
            let mut d: Vec<(f32, i32)> = (0..base.rows)
                .map(|r| {
                    (
                        base.row(r)
                            .iter()
                            .zip(qs.row(q))
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum(),
                        r as i32,
                    )
                })
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0));
            let want: Vec<i32> = d[..5].iter().map(|x| x.1).collect();
            assert_eq!(&got[q * 5..q * 5 + 5], &want[..], "query {q}");
        }
    }

    #[test]
    fn cache_is_reused_and_keyed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, hit) = cached(dir.path(), 1, 2, 2, || vec![1, 2, 3, 4]);
        assert!(!hit);
        let (b, hit) = cached(dir.path(), 1, 2, 2, || unreachable!());
        assert!(hit);
        assert_eq!(a, b);
        let (_, hit) = cached(dir.path(), 2, 2, 2, || vec![0; 4]);
        assert!(!hit);
    }
}
