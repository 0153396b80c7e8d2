//! [`GraphBuilder`]: our own concurrent HNSW builder over int8 codes — the memtable's live
//! index and the source of every flat `graph.bin`.
//!
//! Why not hnsw_rs (kept as `index::hnsw_rs_builder` behind the `hnsw-rs-baseline` feature,
//! the reference the tests and benches compare against): profiled on 100k × 1536, 73% of its
//! build time was its own traversal — `Arc`'d points, a `RwLock` per point, hash-set visited lists, pointer chasing —
//! and only 16% the distance kernel; the graph caught up with ingest after ~128 CPU-seconds.
//! This builder is hnswlib's algorithm over flat arrays: codes in one contiguous array,
//! neighbour lists as fixed-width rows of atomics, a visited bitset per
//! thread, and the same neighbour-selection heuristic, so the graph it exports is the layout
//! [`crate::index::flat_graph`] writes without translation. Seeding a builder from a flat
//! graph and exporting one (with the reachability repair) live in `builder/flat.rs`.
//!
//! # Concurrency
//! [`insert_batch`](GraphBuilder::insert_batch) calls are serialized; within one, points are
//! inserted in parallel (rayon). Storage grows only under the store's write lock, between the
//! batch's validation and its parallel phase; linking happens under the read lock: a list is
//! rewritten under its stripe lock (ids first, then the count with `Release`), and readers
//! copy it lock-free (count with `Acquire`). A reader racing a rewrite can see a mix of the
//! old and new ids — every one a real, coded point — which at worst costs that traversal a
//! little accuracy, as in hnswlib. Searches may run at any time from any thread.
//!
//! # Graph quality
//! - A level's walk starts only at a *ready* point (its insert finished): one still being
//!   linked may have no list yet on the levels below, and a new point starting there would link
//!   to it alone.
//! - A new point's own list is merged with the links other inserts added to it meanwhile, never
//!   overwritten: losing them left neighbours with no in-link (a compaction test caught it about
//!   one run in ten).
//! - A full list is shrunk by hnswlib's heuristic for l2 and cosine; for ip it keeps its nearest
//!   links, as hnsw_rs does (the heuristic is a metric argument, and on data off the origin ip
//!   lists collapsed to a link or two: recall@10 0.87 against 0.99).
//! - Known limit, shared with hnswlib: a far outlier inserted before the region nearest to it
//!   exists gets no link from that region (later points never see it among their
//!   `ef_construction` nearest), so a query at the outlier itself can miss it. The export's
//!   repair guarantees only that every point is reachable from the entry.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;

use crate::index::error::{IndexError, Result};
use crate::index::flat_graph::MAX_LEVEL;
use crate::index::quant;
use crate::index::search::{rescore_count, SearchOutput, SearchScratch, SearchStats};
use crate::index::topk::{Scored, TopK};
use crate::index::vectors::{prefetch_bytes, PreparedQuery, VectorStore};
use crate::types::Space;

mod flat;

// The hnsw_rs reference builder lays out and repairs its exports the same way.
#[cfg(feature = "hnsw-rs-baseline")]
pub(crate) use flat::flatten;

/// Largest `max_neighbors` accepted.
pub const MAX_NEIGHBORS: usize = 256;
/// Largest `ef` accepted for building or searching (bounds per-search allocations).
pub const MAX_EF: usize = 65_536;
/// Storage reserved up front is capped at this many points (the hint is only a hint).
const MAX_CAPACITY_HINT: usize = 1 << 20;
/// Lock stripes guarding neighbour-list rewrites (a point's lists use stripe `id % STRIPES`).
const STRIPES: usize = 4096;
/// No entry point yet (packed top word).
const NO_TOP: u64 = u64::MAX;

/// Validated build parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildParams {
    /// `M`: links per point on layers ≥ 1 (layer 0 keeps `2·M`). 2..=256.
    pub max_neighbors: usize,
    /// Candidate list size while inserting. 1..=65536.
    pub ef_construction: usize,
    /// Expected number of points (preallocation hint only).
    pub capacity_hint: usize,
}

impl BuildParams {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if !(2..=MAX_NEIGHBORS).contains(&self.max_neighbors) {
            return Err(IndexError::InvalidParams(format!(
                "max_neighbors must be between 2 and {MAX_NEIGHBORS}, got {}",
                self.max_neighbors
            )));
        }
        if !(1..=MAX_EF).contains(&self.ef_construction) {
            return Err(IndexError::InvalidParams(format!(
                "ef_construction must be between 1 and {MAX_EF}, got {}",
                self.ef_construction
            )));
        }
        Ok(())
    }
}

/// The graph's arrays. Grown (and codes written) only under the write lock; links change
/// under the read lock through atomics and stripe locks.
#[derive(Debug, Default)]
struct Store {
    /// Bytes per code ([`quant::code_len`]).
    code_len: usize,
    /// Layer-0 row width: a count, then `m0` ids.
    row0: usize,
    /// Upper-layer row width: a count, then `m` ids.
    row_up: usize,
    /// `code_len` bytes per point id.
    codes: Vec<i8>,
    /// Level per point id (valid where `assigned`).
    levels: Vec<u8>,
    /// Whether the id has been inserted (its code written).
    assigned: Vec<bool>,
    /// Whether the point is fully linked on every level it has (its insert returned). A walk
    /// only *starts* a level from a ready point: one still being linked may have no list yet
    /// on the levels below, and a new point that starts there finds only it.
    ready: Vec<AtomicBool>,
    /// `row0` words per point id.
    layer0: Vec<AtomicU32>,
    /// For points of level ≥ 1: `level × row_up` words (layer `l` at row `l − 1`).
    upper: Vec<Option<Box<[AtomicU32]>>>,
}

impl Store {
    #[inline]
    fn code(&self, id: u32) -> &[i8] {
        let at = id as usize * self.code_len;
        self.codes.get(at..at + self.code_len).unwrap_or(&[])
    }

    /// Point `id`'s list on `level` (count word first); empty if it has none there.
    #[inline]
    fn row(&self, id: u32, level: usize) -> &[AtomicU32] {
        let id = id as usize;
        if level == 0 {
            self.layer0
                .get(id * self.row0..(id + 1) * self.row0)
                .unwrap_or(&[])
        } else {
            match self.upper.get(id) {
                Some(Some(rows)) => rows
                    .get((level - 1) * self.row_up..level * self.row_up)
                    .unwrap_or(&[]),
                _ => &[],
            }
        }
    }

    /// Whether point `id` is fully linked (see [`Store::ready`]).
    #[inline]
    fn is_ready(&self, id: u32) -> bool {
        self.ready
            .get(id as usize)
            .is_some_and(|r| r.load(Ordering::Acquire))
    }

    /// Copies point `id`'s neighbours on `level` into `out` (cleared first).
    #[inline]
    fn neighbours_into(&self, id: u32, level: usize, out: &mut Vec<u32>) {
        out.clear();
        let row = self.row(id, level);
        let Some((count, ids)) = row.split_first() else {
            return;
        };
        let c = (count.load(Ordering::Acquire) as usize).min(ids.len());
        out.extend(ids[..c].iter().map(|a| a.load(Ordering::Relaxed)));
    }

    fn grow(&mut self, n: usize) {
        if self.assigned.len() >= n {
            return;
        }
        self.codes.resize(n * self.code_len, 0);
        self.levels.resize(n, 0);
        self.assigned.resize(n, false);
        self.ready.resize_with(n, || AtomicBool::new(false));
        self.layer0.resize_with(n * self.row0, || AtomicU32::new(0));
        self.upper.resize_with(n, || None);
    }
}

thread_local! {
    static SCRATCH: RefCell<SearchScratch> = RefCell::new(SearchScratch::new());
}

/// Runs `f` with this thread's scratch (a fresh one if re-entered).
fn with_scratch<T>(f: impl FnOnce(&mut SearchScratch) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut SearchScratch::new()),
    })
}

/// A growing HNSW graph over dense `u32` point ids, stored as int8 codes.
///
/// Concurrency: inserts and searches may run at the same time from any threads (`&self`
/// everywhere). [`freeze`](Self::freeze) waits for in-flight inserts and refuses later ones;
/// [`export`](Self::export) then produces the flat graph.
pub struct GraphBuilder {
    /// How vectors (inserted and queries) become codes.
    coder: quant::Coder,
    dim: usize,
    params: BuildParams,
    store: RwLock<Store>,
    /// Entry point and top level, packed `entry << 8 | level` ([`NO_TOP`] while empty).
    top: AtomicU64,
    /// Held while inserting a point above the current top level (it becomes the entry).
    top_lock: Mutex<()>,
    stripes: Box<[Mutex<()>]>,
    /// Points inserted.
    len: AtomicUsize,
    /// One batch at a time (storage grows between batches).
    batch_lock: Mutex<()>,
    /// `true` once frozen. Inserts hold the read side for their whole batch.
    frozen: RwLock<bool>,
    /// `1 / ln M`: the level distribution's scale.
    level_mult: f64,
}

impl std::fmt::Debug for GraphBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphBuilder")
            .field("space", &self.coder.space())
            .field("dim", &self.dim)
            .field("params", &self.params)
            .field("len", &self.len())
            .finish()
    }
}

impl GraphBuilder {
    /// An empty graph for `dim`-dimensional vectors in `space`, coded without a centre.
    pub fn new(space: Space, dim: usize, params: BuildParams) -> Result<GraphBuilder> {
        GraphBuilder::with_coder(quant::Coder::plain(space), dim, params)
    }

    /// An empty graph whose codes `coder` makes (e.g. centred on the data's mean).
    pub fn with_coder(
        coder: quant::Coder,
        dim: usize,
        params: BuildParams,
    ) -> Result<GraphBuilder> {
        check_new(&params, dim)?;
        if coder.centre().is_some_and(|c| c.len() != dim) {
            return Err(IndexError::Dimension {
                expected: dim,
                got: coder.centre().map_or(0, |c| c.len()),
            });
        }
        let m = params.max_neighbors;
        let code_len = quant::code_len(dim);
        let reserve = params.capacity_hint.min(MAX_CAPACITY_HINT);
        let store = Store {
            code_len,
            row0: 2 * m + 1,
            row_up: m + 1,
            codes: Vec::with_capacity(reserve * code_len),
            levels: Vec::with_capacity(reserve),
            assigned: Vec::with_capacity(reserve),
            ready: Vec::with_capacity(reserve),
            layer0: Vec::with_capacity(reserve * (2 * m + 1)),
            upper: Vec::with_capacity(reserve),
        };
        Ok(GraphBuilder {
            coder,
            dim,
            params,
            store: RwLock::new(store),
            top: AtomicU64::new(NO_TOP),
            top_lock: Mutex::new(()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            len: AtomicUsize::new(0),
            batch_lock: Mutex::new(()),
            frozen: RwLock::new(false),
            level_mult: 1.0 / (m as f64).ln(),
        })
    }

    /// Distance space.
    pub fn space(&self) -> Space {
        self.coder.space()
    }

    /// How this graph's codes are made (a segment written from it stores the same codes).
    pub fn coder(&self) -> &quant::Coder {
        &self.coder
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Build parameters.
    pub fn params(&self) -> BuildParams {
        self.params
    }

    /// Points inserted (including ones still being linked by a running batch).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether no point has been inserted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held by the graph's arrays (codes, links, levels).
    pub fn heap_bytes(&self) -> usize {
        let s = self.store.read();
        let upper: usize = s.upper.iter().flatten().map(|r| r.len() * 4).sum();
        s.codes.capacity()
            + s.layer0.capacity() * 4
            + s.levels.capacity()
            + s.assigned.capacity()
            + s.upper.capacity() * 16
            + upper
    }

    fn load_top(&self) -> Option<(u32, usize)> {
        let t = self.top.load(Ordering::Acquire);
        (t != NO_TOP).then_some(((t >> 8) as u32, (t & 0xff) as usize))
    }

    fn store_top(&self, entry: u32, level: usize) {
        self.top
            .store(((entry as u64) << 8) | level as u64, Ordering::Release);
    }

    /// The level of point `id`: `⌊−ln(u) / ln M⌋` with `u` a hash of the id, so a rebuild of
    /// the same rows gives the same layers.
    fn level_of(&self, id: u32) -> usize {
        let mut x = (id as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        // 53 random bits in (0, 1].
        let u = ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        ((-u.ln() * self.level_mult) as usize).min(MAX_LEVEL)
    }

    #[inline]
    fn dist(&self, a: &[i8], b: &[i8]) -> f32 {
        let d = quant::approx_distance(self.coder.space(), a, b);
        if d.is_nan() {
            f32::INFINITY
        } else {
            d
        }
    }

    /// Inserts `(vector, id)` pairs in parallel (rayon; the caller's pool if called inside
    /// `ThreadPool::install`). Ids are the dense row numbers the flat graph will use; each
    /// may be inserted once. All-or-nothing validation: on error nothing was inserted.
    pub fn insert_batch(&self, items: &[(&[f32], u32)]) -> Result<()> {
        let _one_batch = self.batch_lock.lock();
        let frozen = self.frozen.read();
        if *frozen {
            return Err(IndexError::Frozen);
        }
        check_rows(self.dim, items)?;
        for &(_, id) in items {
            if id == u32::MAX {
                return Err(IndexError::NotDense(format!("id {id} is out of range")));
            }
        }
        if items.is_empty() {
            return Ok(());
        }
        let codes: Vec<Vec<i8>> = items
            .par_iter()
            .map(|(v, _)| self.coder.encode(v))
            .collect();
        {
            let mut st = self.store.write();
            let mut max_id = 0usize;
            let mut seen = std::collections::HashSet::with_capacity(items.len());
            for &(_, id) in items {
                let taken = st.assigned.get(id as usize).copied().unwrap_or(false);
                if taken || !seen.insert(id) {
                    return Err(IndexError::DuplicateId(id));
                }
                max_id = max_id.max(id as usize);
            }
            st.grow(max_id + 1);
            let row_up = st.row_up;
            for (&(_, id), code) in items.iter().zip(&codes) {
                let i = id as usize;
                let at = i * st.code_len;
                st.codes[at..at + code.len()].copy_from_slice(code);
                let level = self.level_of(id);
                st.levels[i] = level as u8;
                st.assigned[i] = true;
                if level > 0 {
                    st.upper[i] = Some((0..level * row_up).map(|_| AtomicU32::new(0)).collect());
                }
            }
            self.len.fetch_add(items.len(), Ordering::AcqRel);
        }
        drop(codes);
        let st = self.store.read();
        let mut ids: Vec<u32> = items.iter().map(|&(_, id)| id).collect();
        if self.load_top().is_none() {
            // The first point becomes the entry alone: parallel inserts into an empty graph
            // would race on "no entry point yet".
            let first = ids.remove(0);
            st.ready[first as usize].store(true, Ordering::Release);
            self.store_top(first, st.levels[first as usize] as usize);
        }
        ids.par_iter().for_each(|&id| {
            // Tests pause builds here to check nothing else waits for one.
            fail::fail_point!("graph::insert");
            self.insert_one(&st, id)
        });
        drop(frozen);
        Ok(())
    }

    /// Links one point whose code and level are already stored (hnswlib's `addPoint`).
    fn insert_one(&self, st: &Store, id: u32) {
        let level = st.levels[id as usize] as usize;
        let Some(mut top) = self.load_top() else {
            return;
        };
        // A point above the top level will become the entry: hold the top lock while linking
        // it so two such points do not both claim it from stale views.
        let _top_guard = if level > top.1 {
            let g = self.top_lock.lock();
            match self.load_top() {
                Some(t) => top = t,
                None => return,
            }
            (level > top.1).then_some(g)
        } else {
            None
        };
        let (entry, top_level) = top;
        let code = st.code(id);
        let m = self.params.max_neighbors;
        let ef = self.params.ef_construction.max(m);
        with_scratch(|s| {
            let mut ep = Scored {
                distance: self.dist(code, st.code(entry)),
                row: entry,
            };
            for l in (level + 1..=top_level).rev() {
                ep = self.greedy(st, code, ep, l, s);
            }
            for l in (0..=level.min(top_level)).rev() {
                let found = self.beam(st, code, ep, ef, l, s, |_| true, u64::MAX).0;
                if let Some(best) = found.iter().find(|c| st.is_ready(c.row)) {
                    ep = *best;
                }
                let chosen = self.select(st, &found, m, Some(id));
                let cap = if l == 0 { 2 * m } else { m };
                self.write_links(st, id, l, &chosen, cap);
                for &nb in &chosen {
                    self.link_back(st, nb, id, l, cap);
                }
            }
        });
        st.ready[id as usize].store(true, Ordering::Release);
        if level > top_level {
            self.store_top(id, level);
        }
    }

    /// Greedy walk on an upper layer: moves to a nearer neighbour while there is one.
    fn greedy(
        &self,
        st: &Store,
        q: &[i8],
        mut cur: Scored,
        level: usize,
        s: &mut SearchScratch,
    ) -> Scored {
        let mut links = std::mem::take(&mut s.fresh);
        loop {
            st.neighbours_into(cur.row, level, &mut links);
            for &nb in &links {
                prefetch_bytes(bytemuck::cast_slice(st.code(nb)), 32);
            }
            let mut changed = false;
            for &nb in &links {
                // Descend only through finished points: the next level starts here.
                if !st.is_ready(nb) {
                    continue;
                }
                let d = self.dist(q, st.code(nb));
                if d < cur.distance {
                    cur = Scored {
                        distance: d,
                        row: nb,
                    };
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        s.fresh = links;
        cur
    }

    /// `ef`-bounded beam search on `level` from `ep`: the best `ef` accepted points, nearest
    /// first, the distance computations made and whether the queue ran dry (every point
    /// reachable from `ep` seen). Rejected points are expanded but never returned.
    #[allow(clippy::too_many_arguments)]
    fn beam(
        &self,
        st: &Store,
        q: &[i8],
        ep: Scored,
        ef: usize,
        level: usize,
        s: &mut SearchScratch,
        accept: impl Fn(u32) -> bool,
        budget: u64,
    ) -> (Vec<Scored>, u64, bool, usize) {
        s.start(st.assigned.len());
        s.visit(ep.row);
        let mut visited = 1usize;
        let mut evals = 0u64;
        s.candidates.push(Reverse(ep));
        if accept(ep.row) {
            s.results.push(ep);
        }
        let mut links = std::mem::take(&mut s.fresh);
        let mut converged = false;
        while let Some(Reverse(c)) = s.candidates.pop() {
            if s.results.len() >= ef && s.results.peek().is_some_and(|w| c.distance > w.distance) {
                converged = true;
                break;
            }
            if evals >= budget {
                converged = true;
                break;
            }
            st.neighbours_into(c.row, level, &mut links);
            // Unvisited neighbours first, their codes prefetched as a group: the walk is bound
            // by fetching ~25 cache lines per random code, so overlapping those misses pays.
            links.retain(|&nb| s.visit(nb));
            for &nb in &links {
                prefetch_bytes(bytemuck::cast_slice(st.code(nb)), 32);
            }
            for &nb in &links {
                visited += 1;
                let d = self.dist(q, st.code(nb));
                evals += 1;
                let full = s.results.len() >= ef;
                if !full || s.results.peek().is_some_and(|w| d < w.distance) {
                    let sc = Scored {
                        distance: d,
                        row: nb,
                    };
                    s.candidates.push(Reverse(sc));
                    if accept(nb) {
                        s.results.push(sc);
                        if s.results.len() > ef {
                            s.results.pop();
                        }
                    }
                }
            }
        }
        s.fresh = links;
        let mut out: Vec<Scored> = s.results.drain().collect();
        out.sort_unstable();
        (out, evals, !converged, visited)
    }

    /// hnswlib's neighbour-selection heuristic: walking candidates nearest first, keep one
    /// only if it is nearer to the base point than to every one already kept (so links spread
    /// in different directions), up to `m`. `skip` is the base point itself.
    fn select(&self, st: &Store, cands: &[Scored], m: usize, skip: Option<u32>) -> Vec<u32> {
        let usable = || cands.iter().filter(|c| Some(c.row) != skip);
        if usable().count() <= m {
            return usable().map(|c| c.row).collect();
        }
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for c in usable() {
            if kept.len() >= m {
                break;
            }
            let cc = st.code(c.row);
            let diverse = kept
                .iter()
                .all(|&k| self.dist(cc, st.code(k)) >= c.distance);
            if diverse {
                kept.push(c.row);
            }
        }
        kept
    }

    /// Sets new point `id`'s list on `level` to `links` (ids first, count last), keeping
    /// any links other inserts added to it meanwhile: a point that found `id` and linked it
    /// back must not lose that link, or it may be the only in-link `id`'s neighbour has. Over
    /// `cap` the heuristic picks among all of them.
    fn write_links(&self, st: &Store, id: u32, level: usize, links: &[u32], cap: usize) {
        let _g = self.stripes[id as usize % STRIPES].lock();
        let row = st.row(id, level);
        let Some((count, slots)) = row.split_first() else {
            return;
        };
        let had = (count.load(Ordering::Acquire) as usize).min(slots.len());
        let mut all: Vec<u32> = links.to_vec();
        for s in &slots[..had] {
            let l = s.load(Ordering::Relaxed);
            if l != id && !all.contains(&l) {
                all.push(l);
            }
        }
        let cap = cap.min(slots.len());
        if all.len() > cap {
            all = self.shrink(st, id, all.into_iter(), cap);
        }
        for (slot, &l) in slots.iter().zip(&all) {
            slot.store(l, Ordering::Relaxed);
        }
        count.store(all.len() as u32, Ordering::Release);
    }

    /// The at most `cap` of `links` that `base`'s list keeps when they do not all fit.
    /// The heuristic's "nearer to the base than to a kept link" is a metric argument, and
    /// inner product is not a metric: on data off the origin, a point with a large projection
    /// on the mean is "near" everything and prunes the rest, so full lists collapsed to a link
    /// or two (recall@10 0.87 on offset data, 0.99 for hnsw_rs). Ip keeps the `cap` nearest
    /// instead, as hnsw_rs's shrink does.
    fn shrink(
        &self,
        st: &Store,
        base: u32,
        links: impl Iterator<Item = u32>,
        cap: usize,
    ) -> Vec<u32> {
        let code = st.code(base);
        let mut cands: Vec<Scored> = links
            .filter(|&r| r != base)
            .map(|r| Scored {
                distance: self.dist(code, st.code(r)),
                row: r,
            })
            .collect();
        cands.sort_unstable();
        if self.coder.space() == Space::Ip {
            cands.iter().map(|c| c.row).take(cap).collect()
        } else {
            self.select(st, &cands, cap, None)
        }
    }

    /// Adds `new` to `nb`'s list on `level`; a full list keeps the heuristic's best `cap` of
    /// its links plus `new`.
    fn link_back(&self, st: &Store, nb: u32, new: u32, level: usize, cap: usize) {
        let _g = self.stripes[nb as usize % STRIPES].lock();
        let row = st.row(nb, level);
        let Some((count, slots)) = row.split_first() else {
            return;
        };
        let c = (count.load(Ordering::Acquire) as usize).min(slots.len());
        if slots[..c].iter().any(|s| s.load(Ordering::Relaxed) == new) {
            return;
        }
        if c < cap.min(slots.len()) {
            slots[c].store(new, Ordering::Relaxed);
            count.store(c as u32 + 1, Ordering::Release);
            return;
        }
        let links = slots[..c]
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .chain(std::iter::once(new));
        let kept = self.shrink(st, nb, links, cap);
        for (slot, &l) in slots.iter().zip(&kept) {
            slot.store(l, Ordering::Relaxed);
        }
        count.store(kept.len() as u32, Ordering::Release);
    }

    /// The `k` nearest accepted points to `query` with Chroma distances: the graph is walked
    /// over int8 codes, then the [`rescore_count`] best accepted candidates are rescored exactly
    /// from `exact` (the f32 rows this graph was built over, same ids) and the best `k` kept. Rejected
    /// points are expanded but not returned, so the walk goes on until it holds `ef` accepted
    /// ones; `complete` is false if fewer than `k` came back and some point was never seen
    /// (then scan exactly).
    pub fn search<S: VectorStore + ?Sized>(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: impl Fn(u32) -> bool,
        exact: &S,
    ) -> Result<SearchOutput> {
        check_search(self.dim, query, ef)?;
        let q = PreparedQuery::new(self.coder.space(), query)?;
        let mut stats = SearchStats::default();
        let st = self.store.read();
        let n = self.len();
        let top = self.load_top();
        let (Some((entry, top_level)), true) = (top, k > 0 && n > 0) else {
            return Ok(SearchOutput {
                results: Vec::new(),
                stats,
                complete: true,
            });
        };
        let qcode = q.code_for(&self.coder);
        let code: &[i8] = &qcode;
        let (found, evals, exhausted, visited) = with_scratch(|s| {
            let mut ep = Scored {
                distance: self.dist(code, st.code(entry)),
                row: entry,
            };
            for l in (1..=top_level).rev() {
                ep = self.greedy(&st, code, ep, l, s);
            }
            self.beam(&st, code, ep, ef.max(k), 0, s, &accept, u64::MAX)
        });
        stats.distance_computations = evals + 1;
        stats.visited = visited as u64;
        stats.exhausted = exhausted;
        let mut top = TopK::new(k);
        let mut rescored = 0u64;
        // `found` is in int8-distance order: rescore its best few (see `rescore_count`).
        for c in found.iter().take(rescore_count(k)) {
            if (c.row as usize) < exact.len() {
                rescored += 1;
                top.push(Scored {
                    distance: exact.distance(&q, c.row),
                    row: c.row,
                });
            }
        }
        stats.distance_computations += rescored;
        let results = top.into_sorted();
        // A live graph can hold points nothing links to yet (a batch in flight, or a link
        // shrunk away; the export repairs that), so running out of candidates proves
        // completeness only when every point was seen.
        let complete = results.len() >= k || (exhausted && visited >= n);
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
}

/// Checks what a new builder is given: the parameters' ranges, then the dimension. (Shared
/// with the hnsw_rs reference builder.)
pub(crate) fn check_new(params: &BuildParams, dim: usize) -> Result<()> {
    params.validate()?;
    if dim == 0 || dim > crate::types::MAX_DIMENSION {
        return Err(IndexError::InvalidParams(format!(
            "dimension must be between 1 and {}, got {dim}",
            crate::types::MAX_DIMENSION
        )));
    }
    Ok(())
}

/// Checks a batch's rows before anything is inserted: every vector of dimension `dim`, every
/// component finite. (Shared with the hnsw_rs reference builder, which takes the same input.)
pub(crate) fn check_rows(dim: usize, items: &[(&[f32], u32)]) -> Result<()> {
    for &(v, id) in items {
        if v.len() != dim {
            return Err(IndexError::Dimension {
                expected: dim,
                got: v.len(),
            });
        }
        if !v.iter().all(|x| x.is_finite()) {
            return Err(IndexError::NonFinite { id });
        }
    }
    Ok(())
}

/// Checks a search's query and beam before the walk: dimension `dim`, `ef` within
/// [`MAX_EF`]. (Shared with the hnsw_rs reference builder.)
pub(crate) fn check_search(dim: usize, query: &[f32], ef: usize) -> Result<()> {
    if query.len() != dim {
        return Err(IndexError::Dimension {
            expected: dim,
            got: query.len(),
        });
    }
    if ef > MAX_EF {
        return Err(IndexError::InvalidParams(format!(
            "ef must be at most {MAX_EF}, got {ef}"
        )));
    }
    Ok(())
}

/// Asserts that `insert`, into an empty builder of dimension 2, refuses the batches every graph
/// builder refuses before touching its graph: a wrong dimension, a non-finite component, an id
/// twice in one batch (shared with the hnsw_rs baseline's tests).
#[cfg(test)]
pub(crate) fn assert_refuses_bad_batches(insert: impl Fn(&[(&[f32], u32)]) -> Result<()>) {
    assert!(matches!(
        insert(&[(&[1.0, 0.0, 0.0], 0)]),
        Err(IndexError::Dimension { .. })
    ));
    assert!(matches!(
        insert(&[(&[f32::NAN, 0.0], 0)]),
        Err(IndexError::NonFinite { .. })
    ));
    assert!(matches!(
        insert(&[(&[1.0, 0.0], 0), (&[0.0, 1.0], 0)]),
        Err(IndexError::DuplicateId(0))
    ));
}

#[cfg(test)]
mod tests {
    use super::flat::mark_reachable;
    use super::*;
    use crate::index::exact_search;
    use crate::index::F32Vectors;

    pub(super) fn params(m: usize, ef: usize) -> BuildParams {
        BuildParams {
            max_neighbors: m,
            ef_construction: ef,
            capacity_hint: 10,
        }
    }

    #[test]
    fn shareable_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<GraphBuilder>();
    }

    #[test]
    fn params_validated() {
        assert!(GraphBuilder::new(Space::L2, 4, params(257, 10)).is_err());
        assert!(GraphBuilder::new(Space::L2, 4, params(1, 10)).is_err());
        assert!(GraphBuilder::new(Space::L2, 4, params(16, 0)).is_err());
        assert!(GraphBuilder::new(Space::L2, 0, params(16, 10)).is_err());
        assert!(GraphBuilder::new(Space::L2, 4, params(256, 10)).is_ok());
    }

    #[test]
    fn levels_are_deterministic_and_geometric() {
        let b = GraphBuilder::new(Space::L2, 4, params(16, 10)).unwrap();
        let levels: Vec<usize> = (0..100_000).map(|i| b.level_of(i)).collect();
        assert_eq!(
            levels,
            (0..100_000).map(|i| b.level_of(i)).collect::<Vec<_>>()
        );
        let above = levels.iter().filter(|&&l| l >= 1).count() as f64 / 1e5;
        // P(level ≥ 1) = 1/M.
        assert!((above - 1.0 / 16.0).abs() < 0.01, "{above}");
        assert!(levels.iter().all(|&l| l <= MAX_LEVEL));
    }

    #[test]
    fn empty_export_and_bad_inserts() {
        let b = GraphBuilder::new(Space::Cosine, 2, params(4, 8)).unwrap();
        let none = F32Vectors::new(2, &[], None).unwrap();
        assert!(b
            .search(&[1.0, 0.0], 3, 10, |_| true, &none)
            .unwrap()
            .results
            .is_empty());
        assert_refuses_bad_batches(|batch| b.insert_batch(batch));
        assert!(b.is_empty());
        assert!(matches!(b.export(), Err(IndexError::Empty)));
        assert!(matches!(
            b.insert_batch(&[(&[1.0, 0.0], 0)]),
            Err(IndexError::Frozen)
        ));
    }

    #[test]
    fn sparse_ids_refused_at_export_and_duplicates_across_batches() {
        let b = GraphBuilder::new(Space::L2, 2, params(4, 8)).unwrap();
        b.insert_batch(&[(&[1.0, 0.0], 0), (&[0.0, 1.0], 5)])
            .unwrap();
        assert!(matches!(
            b.insert_batch(&[(&[1.0, 1.0], 5)]),
            Err(IndexError::DuplicateId(5))
        ));
        assert!(matches!(b.export(), Err(IndexError::NotDense(_))));
    }

    /// Pseudo-random vectors in `dim` dimensions (a fixed LCG: no test dependency).
    pub(super) fn data(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..n * dim)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn recall_live_and_exported_every_point_reachable() {
        let (n, dim) = (3000, 24);
        for space in [Space::L2, Space::Cosine, Space::Ip] {
            let v = data(n, dim, 3);
            let inv: Vec<f32> = v
                .chunks(dim)
                .map(crate::index::distance::inverse_norm)
                .collect();
            let store = F32Vectors::new(dim, &v, Some(&inv)).unwrap();
            let b = GraphBuilder::new(space, dim, params(12, 64)).unwrap();
            // Several batches, like the memtable's indexer.
            let rows: Vec<(&[f32], u32)> = v
                .chunks(dim)
                .enumerate()
                .map(|(i, r)| (r, i as u32))
                .collect();
            for chunk in rows.chunks(700) {
                b.insert_batch(chunk).unwrap();
            }
            assert_eq!(b.len(), n);
            let queries = data(50, dim, 99);
            let mut hits = 0;
            for q in queries.chunks(dim) {
                let want =
                    exact_search(&store, &PreparedQuery::new(space, q).unwrap(), 10, |_| true);
                let got = b.search(q, 10, 64, |_| true, &store).unwrap();
                assert!(got.complete);
                assert_eq!(got.results.len(), 10);
                hits += got
                    .results
                    .iter()
                    .filter(|r| want.iter().any(|w| w.row == r.row))
                    .count();
                // Distances are the exact ones.
                for r in &got.results {
                    let d = store.distance(&PreparedQuery::new(space, q).unwrap(), r.row);
                    assert_eq!(d, r.distance);
                }
            }
            let recall = hits as f64 / 500.0;
            assert!(recall >= 0.95, "{space:?} recall {recall}");
            let parts = b.export_parts().unwrap();
            parts.validate().unwrap();
            let m0 = parts.m0 as usize;
            let mut reached = vec![false; n];
            mark_reachable(
                parts.entry,
                m0,
                &parts.layer0,
                &mut reached,
                &mut Vec::new(),
            );
            assert!(reached.iter().all(|&r| r), "{space:?}: unreachable points");
        }
    }

    #[test]
    fn filtered_live_search_returns_only_accepted_and_all_when_few() {
        let (n, dim) = (1000, 8);
        let v = data(n, dim, 5);
        let store = F32Vectors::new(dim, &v, None).unwrap();
        let b = GraphBuilder::new(Space::L2, dim, params(8, 32)).unwrap();
        let rows: Vec<(&[f32], u32)> = v
            .chunks(dim)
            .enumerate()
            .map(|(i, r)| (r, i as u32))
            .collect();
        b.insert_batch(&rows).unwrap();
        let q = &v[..dim];
        let even = b.search(q, 10, 32, |r| r % 2 == 0, &store).unwrap();
        assert_eq!(even.results.len(), 10);
        assert!(even.results.iter().all(|r| r.row % 2 == 0));
        // Only 3 points accepted: either all 3 come back or the output says it is incomplete.
        let rare = b.search(q, 10, 32, |r| r % 400 == 7, &store).unwrap();
        assert!(rare.results.iter().all(|r| r.row % 400 == 7));
        assert!(rare.results.len() == 3 || !rare.complete);
    }
}
