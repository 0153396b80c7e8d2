//! [`HnswRsBuilder`]: an hnsw_rs graph behind our own distance — the reference implementation
//! our own [`crate::index::GraphBuilder`] replaced (it spent 3.2× the CPU per build). Kept so tests and benches can check the
//! flat searcher against hnsw_rs's own search on the same graph, and compare build speed.
//!
//! hnsw_rs 0.3.5 behaviours this wrapper exists for (see DESIGN.md §3):
//! - `Hnsw::new` calls `process::exit(1)` when `max_nb_connection > 256`, and a level
//!   generator with `M < 2` divides by `ln 1 = 0`: [`BuildParams::validate`] runs first.
//! - Its search asserts every distance is `>= 0` and its neighbour ordering panics on NaN:
//!   [`SpaceDistance`] never returns either (see its doc for the order-preserving mapping).
//! - Parallel inserts into an *empty* index race on the entry point (two threads can both see
//!   "no entry point", and one point ends up with no links, unreachable): the first point of a
//!   builder is inserted alone, under a lock, before any parallel insert.
//! - Exporting walks the point iterator, which unwraps the entry point (panics when empty) and
//!   must not run during inserts: [`HnswRsBuilder::export`] freezes first and refuses an empty
//!   index.
//! - `get_max_nb_connection()` returns `u8` (256 wraps to 0): we keep our own copy of `M`.
//! - Points get neighbour lists on layers *above* their own level (a by-product of the
//!   descent in `insert`); nobody can reach them there, and the export drops them.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hnsw_rs::anndists::dist::distances::Distance;
use hnsw_rs::hnsw::{Hnsw, Point};
use parking_lot::{Mutex, RwLock};

use crate::index::builder::{check_new, check_rows, check_search, flatten, BuildParams, MAX_EF};
use crate::index::error::{IndexError, Result};
use crate::index::flat_graph::{GraphParts, MAX_LEVEL, NO_NEIGHBOUR};
use crate::index::quant;
use crate::index::search::{SearchOutput, SearchStats};
use crate::index::topk::{Scored, TopK};
use crate::index::vectors::{PreparedQuery, VectorStore};
use crate::types::Space;

/// Capacity hints above this are clamped (hnsw_rs preallocates from the hint).
const MAX_CAPACITY_HINT: usize = 10_000_000;

thread_local! {
    static DIST_EVALS: Cell<u64> = const { Cell::new(0) };
}

/// Distance evaluations [`SpaceDistance`] has made on the current thread so far; the
/// difference around an hnsw_rs search counts that search's work.
pub fn distance_evals_on_this_thread() -> u64 {
    DIST_EVALS.with(|c| c.get())
}

/// Our int8 kernels as an hnsw_rs `Distance` over codes ([`quant`]), for one [`Space`]. The
/// builder stores codes, not f32: a quarter of the bytes to fetch per distance (the build is
/// bound by memory reads of random points) and of the heap hnsw_rs holds. Callers rescore
/// final candidates from their f32 vectors ([`HnswRsBuilder::search`] takes them).
///
/// Never panics and never returns NaN or a negative value (hnsw_rs asserts `>= 0` and panics
/// ordering NaN): l2 and cosine approximations are clamped at 0 (rounding near duplicates);
/// ip's `1 − a·b` ranges over all reals, so it goes through [`ip_order_key`], a strictly
/// monotone map onto `[0, f32::MAX]` (the graph only compares distances, never adds them).
/// NaN maps to `f32::MAX`.
#[derive(Debug, Clone, Copy)]
pub struct SpaceDistance {
    space: Space,
}

impl SpaceDistance {
    /// The distance for `space`.
    pub fn new(space: Space) -> SpaceDistance {
        SpaceDistance { space }
    }
}

impl Distance<i8> for SpaceDistance {
    #[inline]
    fn eval(&self, va: &[i8], vb: &[i8]) -> f32 {
        DIST_EVALS.with(|c| c.set(c.get() + 1));
        let d = quant::approx_distance(self.space, va, vb);
        let d = match self.space {
            Space::Ip => ip_order_key(d),
            Space::L2 | Space::Cosine => d.max(0.0),
        };
        if d.is_nan() {
            f32::MAX
        } else {
            d.min(f32::MAX)
        }
    }
}

/// Maps any f32 to a non-negative, non-NaN f32 preserving order: the float's total-order key
/// (a u32 increasing with the value) halved and read back as the bits of a non-negative float,
/// capped below infinity. Halving merges adjacent floats pairwise (one bit of precision),
/// unavoidable since there are twice as many floats as non-negative ones.
#[inline]
pub fn ip_order_key(d: f32) -> f32 {
    let bits = d.to_bits();
    let key = if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    f32::from_bits((key >> 1).min(f32::MAX.to_bits()))
}

/// A growing HNSW graph (hnsw_rs) over dense `u32` point ids.
///
/// Concurrency: inserts and searches may run at the same time from any threads (`&self`
/// everywhere). hnsw_rs guards each point's links with a `parking_lot::RwLock` and the layer
/// tables with another; a search sees a consistent-enough graph (a point being inserted may
/// not be found yet). [`freeze`](Self::freeze) waits for in-flight inserts and refuses later
/// ones; [`export`](Self::export) then produces the flat graph.
pub struct HnswRsBuilder {
    hnsw: Hnsw<'static, i8, SpaceDistance>,
    space: Space,
    dim: usize,
    params: BuildParams,
    /// Ids inserted so far (duplicate ids would make the export ambiguous).
    ids: Mutex<HashSet<u32>>,
    /// Set once the first point is in; until then inserts take `seed_lock` (entry-point race).
    seeded: AtomicBool,
    seed_lock: Mutex<()>,
    /// `true` once frozen. Inserts hold the read side for their whole batch, so `freeze`
    /// (write side) waits for them.
    frozen: RwLock<bool>,
}

impl std::fmt::Debug for HnswRsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswRsBuilder")
            .field("space", &self.space)
            .field("dim", &self.dim)
            .field("params", &self.params)
            .field("len", &self.len())
            .finish()
    }
}

impl HnswRsBuilder {
    /// An empty graph for `dim`-dimensional vectors in `space`.
    pub fn new(space: Space, dim: usize, params: BuildParams) -> Result<HnswRsBuilder> {
        check_new(&params, dim)?;
        let hnsw = Hnsw::new(
            params.max_neighbors,
            params.capacity_hint.clamp(1, MAX_CAPACITY_HINT),
            MAX_LEVEL + 1,
            params.ef_construction,
            SpaceDistance::new(space),
        );
        Ok(HnswRsBuilder {
            hnsw,
            space,
            dim,
            params,
            ids: Mutex::new(HashSet::new()),
            seeded: AtomicBool::new(false),
            seed_lock: Mutex::new(()),
            frozen: RwLock::new(false),
        })
    }

    /// Distance space.
    pub fn space(&self) -> Space {
        self.space
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Build parameters.
    pub fn params(&self) -> BuildParams {
        self.params
    }

    /// Points inserted (including ones still being linked by concurrent inserts).
    pub fn len(&self) -> usize {
        self.hnsw.get_nb_point()
    }

    /// Whether no point has been inserted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vector as hnsw_rs stores it: its int8 code.
    fn stored_form(&self, v: &[f32]) -> Vec<i8> {
        quant::encode(self.space, v)
    }

    /// Inserts `(vector, id)` pairs in parallel (rayon; the caller's pool if called inside
    /// `ThreadPool::install`). Ids are the dense row numbers the flat graph will use; each
    /// may be inserted once. All-or-nothing validation: on error nothing was inserted.
    pub fn insert_batch(&self, items: &[(&[f32], u32)]) -> Result<()> {
        let frozen = self.frozen.read();
        if *frozen {
            return Err(IndexError::Frozen);
        }
        check_rows(self.dim, items)?;
        {
            let mut ids = self.ids.lock();
            let mut batch = HashSet::with_capacity(items.len());
            for &(_, id) in items {
                if ids.contains(&id) || !batch.insert(id) {
                    return Err(IndexError::DuplicateId(id));
                }
            }
            ids.extend(batch);
        }
        let stored: Vec<Vec<i8>> = items.iter().map(|(v, _)| self.stored_form(v)).collect();
        let mut data: Vec<(&[i8], usize)> = stored
            .iter()
            .zip(items)
            .map(|(s, &(_, id))| (s.as_slice(), id as usize))
            .collect();
        if !self.seeded.load(Ordering::Acquire) && !data.is_empty() {
            let _seed = self.seed_lock.lock();
            if !self.seeded.load(Ordering::Acquire) {
                let first = data.remove(0);
                self.hnsw.insert_slice(first);
                self.seeded.store(true, Ordering::Release);
            }
        }
        if !data.is_empty() {
            self.hnsw.parallel_insert_slice(&data);
        }
        drop(frozen);
        Ok(())
    }

    /// The `k` nearest accepted points to `query` with Chroma distances: the graph is walked
    /// over int8 codes, then up to `ef` accepted candidates are rescored exactly from `exact`
    /// (the f32 rows this graph was built over, same ids) and the best `k` kept. `accept`
    /// filters inside the result set: when fewer than `k` accepted points are among the `ef`
    /// found, `ef` grows (×4, up to all points) and the search is repeated; `complete` is false
    /// if fewer than `k` came back and some point was never seen (then scan exactly).
    /// `stats.distance_computations` counts hnsw_rs's work plus the rescoring.
    pub fn search<S: VectorStore + ?Sized>(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: impl Fn(u32) -> bool,
        exact: &S,
    ) -> Result<SearchOutput> {
        check_search(self.dim, query, ef)?;
        let q = PreparedQuery::new(self.space, query)?;
        let n = self.len();
        let mut stats = SearchStats::default();
        if k == 0 || n == 0 || !self.seeded.load(Ordering::Acquire) {
            return Ok(SearchOutput {
                results: Vec::new(),
                stats,
                complete: true,
            });
        }
        let evals_before = distance_evals_on_this_thread();
        let mut ef_now = ef.max(k).clamp(1, n);
        let (accepted, found_all, saw_every_point) = loop {
            let found = self.hnsw.search(q.code(), ef_now, ef_now);
            let found_all = found.len() < ef_now || found.len() >= n;
            let saw_every_point = found.len() >= n;
            let accepted: Vec<u32> = found
                .into_iter()
                .filter_map(|nb| u32::try_from(nb.d_id).ok())
                .filter(|&r| accept(r))
                .take(ef_now.max(k))
                .collect();
            if accepted.len() >= k || found_all || ef_now >= n.min(MAX_EF) {
                break (accepted, found_all, saw_every_point);
            }
            ef_now = (ef_now * 4).min(n).min(MAX_EF);
        };
        stats.distance_computations = distance_evals_on_this_thread() - evals_before;
        stats.exhausted = found_all;
        let mut top = TopK::new(k);
        for &row in &accepted {
            if (row as usize) < exact.len() {
                top.push(Scored {
                    distance: exact.distance(&q, row),
                    row,
                });
            }
        }
        stats.distance_computations += accepted.len() as u64;
        let results = top.into_sorted();
        stats.visited = stats.distance_computations;
        // hnsw_rs's own graph can hold points nothing links to (the export repairs that, the
        // live graph does not), so "ran out of candidates" only proves completeness when the
        // search returned every point.
        let complete = results.len() >= k || saw_every_point;
        Ok(SearchOutput {
            results,
            stats,
            complete,
        })
    }

    /// Stops inserts: waits for in-flight batches; later inserts get [`IndexError::Frozen`].
    /// Searches keep working. Idempotent.
    pub fn freeze(&self) {
        *self.frozen.write() = true;
    }

    /// Freezes, then exports the graph as [`GraphParts`] (point ids = the inserted ids, which
    /// must be exactly `0..len`). Refuses an empty index.
    pub fn export_parts(&self) -> Result<GraphParts> {
        self.freeze();
        let n = self.len();
        if n == 0 || !self.seeded.load(Ordering::Acquire) {
            return Err(IndexError::Empty);
        }
        if n >= u32::MAX as usize {
            return Err(IndexError::NotDense(format!("{n} points exceed u32 ids")));
        }
        let indexation = self.hnsw.get_point_indexation();
        let mut points: Vec<Option<Arc<Point<'static, i8>>>> = vec![None; n];
        let mut seen = 0usize;
        for p in indexation {
            let id = p.get_origin_id();
            let slot = points.get_mut(id).ok_or_else(|| {
                IndexError::NotDense(format!("id {id} is not below the point count {n}"))
            })?;
            if slot.is_some() {
                return Err(IndexError::NotDense(format!("id {id} appears twice")));
            }
            *slot = Some(p);
            seen += 1;
        }
        if seen != n {
            return Err(IndexError::NotDense(format!(
                "iterated {seen} points, expected {n}"
            )));
        }
        let points: Vec<Arc<Point<'static, i8>>> = points.into_iter().flatten().collect();
        let levels: Vec<usize> = points
            .iter()
            .map(|p| (p.get_point_id().0 as usize).min(MAX_LEVEL))
            .collect();
        let max_level = levels.iter().copied().max().unwrap_or(0);
        let entry = levels.iter().position(|&l| l == max_level).unwrap_or(0) as u32;
        // hnsw_rs can leave points with no in-links (its shrinking drops a list's farthest
        // link); its own search finds a reachable neighbour for them.
        let (parts, dropped, repaired) = flatten(
            n,
            self.params.max_neighbors,
            entry,
            max_level,
            |i| levels[i as usize],
            |i, l, out| {
                out.clear();
                if let Some(list) = points[i as usize].get_neighborhood_id().get(l) {
                    // An id past u32 is out of range, so dropped like any other.
                    out.extend(
                        list.iter()
                            .map(|nb| u32::try_from(nb.d_id).unwrap_or(NO_NEIGHBOUR)),
                    );
                }
            },
            |u, _| {
                self.hnsw
                    .search(points[u as usize].get_v(), 16, 64)
                    .iter()
                    .filter_map(|nb| u32::try_from(nb.d_id).ok())
                    .collect()
            },
        );
        if dropped > 0 {
            tracing::debug!(
                dropped,
                "hnsw export dropped self, duplicate or off-layer links"
            );
        }
        if repaired > 0 {
            tracing::debug!(repaired, "hnsw export linked unreachable points");
        }
        Ok(parts)
    }

    /// Freezes and encodes the flat `graph.bin` image (see [`crate::index::flat_graph`]).
    pub fn export(&self) -> Result<Vec<u8>> {
        self.export_parts()?.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shareable_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<HnswRsBuilder>();
        send_sync::<crate::index::FlatGraph>();
        send_sync::<crate::index::FlatGraph<Vec<u8>>>();
    }

    #[test]
    fn ip_key_is_monotone_and_valid() {
        let mut xs = vec![
            f32::NEG_INFINITY,
            f32::MIN,
            -1e30,
            -2.0,
            -1.0,
            -1e-30,
            -0.0,
            0.0,
            1e-30,
            1.0,
            2.0,
            1e30,
            f32::MAX,
            f32::INFINITY,
        ];
        xs.sort_by(|a, b| a.total_cmp(b));
        let keys: Vec<f32> = xs.iter().map(|&x| ip_order_key(x)).collect();
        for w in keys.windows(2) {
            assert!(w[0] <= w[1]);
        }
        assert!(keys.iter().all(|k| *k >= 0.0 && k.is_finite()));
        assert!(ip_order_key(-1.0) < ip_order_key(-0.999));
        assert!(ip_order_key(0.5) < ip_order_key(0.5000001));
    }

    #[test]
    fn distance_never_negative_or_nan() {
        for space in [Space::L2, Space::Cosine, Space::Ip] {
            let d = SpaceDistance::new(space);
            for (a, b) in [
                (vec![1.0f32, 2.0, 0.3], vec![1.0f32, 2.0, 0.3]),
                (vec![f32::MAX, f32::MAX, 1.0], vec![f32::MAX, f32::MAX, 1.0]),
                (vec![f32::NAN, 0.0, 1.0], vec![1.0, 0.0, 1.0]),
                (vec![], vec![]),
            ] {
                let (a, b) = (quant::encode(space, &a), quant::encode(space, &b));
                let x = d.eval(&a, &b);
                assert!(x >= 0.0 && !x.is_nan(), "{space:?} {x}");
                let x = d.eval(&a[..a.len() / 2], &b);
                assert!(x >= 0.0 && !x.is_nan(), "{space:?} {x}");
            }
        }
    }

    #[test]
    fn params_validated_before_hnsw() {
        let p = |m, ef| BuildParams {
            max_neighbors: m,
            ef_construction: ef,
            capacity_hint: 10,
        };
        assert!(HnswRsBuilder::new(Space::L2, 4, p(257, 10)).is_err());
        assert!(HnswRsBuilder::new(Space::L2, 4, p(1, 10)).is_err());
        assert!(HnswRsBuilder::new(Space::L2, 4, p(16, 0)).is_err());
        assert!(HnswRsBuilder::new(Space::L2, 0, p(16, 10)).is_err());
        assert!(HnswRsBuilder::new(Space::L2, 4, p(256, 10)).is_ok());
    }

    #[test]
    fn empty_export_and_bad_inserts() {
        let b = HnswRsBuilder::new(
            Space::Cosine,
            2,
            BuildParams {
                max_neighbors: 4,
                ef_construction: 8,
                capacity_hint: 0,
            },
        )
        .unwrap();
        let none = crate::index::F32Vectors::new(2, &[], None).unwrap();
        assert!(b
            .search(&[1.0, 0.0], 3, 10, |_| true, &none)
            .unwrap()
            .results
            .is_empty());
        crate::index::builder::assert_refuses_bad_batches(|batch| b.insert_batch(batch));
        assert!(matches!(b.export(), Err(IndexError::Empty)));
        assert!(matches!(
            b.insert_batch(&[(&[1.0, 0.0], 0)]),
            Err(IndexError::Frozen)
        ));
    }

    #[test]
    fn sparse_ids_refused_at_export() {
        let b = HnswRsBuilder::new(
            Space::L2,
            2,
            BuildParams {
                max_neighbors: 4,
                ef_construction: 8,
                capacity_hint: 0,
            },
        )
        .unwrap();
        b.insert_batch(&[(&[1.0, 0.0], 0), (&[0.0, 1.0], 5)])
            .unwrap();
        assert!(matches!(b.export(), Err(IndexError::NotDense(_))));
    }
}
