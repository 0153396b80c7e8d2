//! The readable state of a collection: the active memtable, a memtable being flushed (frozen),
//! and the mapped segments, each with its tombstones. Every read is answered from here; every
//! change arrives as a resolved [`LogOp`] through [`State::apply`].
//!
//! An id has at most one live row across all sources: writing a new version appends it to the
//! active memtable and tombstones the previous one. So the newest row found for an id — active
//! memtable first, then frozen, then segments newest to oldest — is the only candidate, and if
//! it is tombstoned the id is absent.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;

use rayon::prelude::*;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::bitset::Bitset;
use super::log::LogOp;
use super::memtable::{IndexJob, Memtable};
use super::segment::payload::RowSet;
use super::segment::records::Fields;
use super::segment::{QueryCode, Segment};
use super::EngineError;
use crate::filter::Filter;
use crate::index::distance::distance;
use crate::index::topk::{Scored, TopK};
use crate::index::{quant, BuildParams, PreparedQuery, Rejected, SearchParams, MAX_SEARCH_EF};
use crate::types::{
    validate_embedding, GetRequest, GetResult, Include, InputError, QueryHits, QueryRequest,
    QueryResult, Space,
};

/// Fewest coded-scan candidates rescored in f32 for a memtable's unindexed rows: tails shorter
/// than this are scored exactly; longer ones keep a margin over small `ef_search` settings,
/// where int8 rounding could otherwise push a true neighbour out of the shortlist.
const TAIL_SHORTLIST_MIN: usize = 128;

/// `n_results` above which a query scans exactly instead of widening graph beams to k.
const EXACT_ABOVE_K: usize = 4096;

/// The centre of the largest segment's codes, if it has one.
fn largest_centre(segments: &[SegmentSlot]) -> Option<Vec<f32>> {
    segments
        .iter()
        .max_by_key(|s| s.seg.rows())
        .and_then(|s| s.seg.centre())
        .map(<[f32]>::to_vec)
}

/// Where a row lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Loc {
    /// Row of the active memtable.
    Active(u32),
    /// Row of the memtable being flushed.
    Frozen(u32),
    /// Row of the segment at this index in `State::segments` (oldest first).
    Seg(usize, u32),
}

/// A mapped segment and its tombstones.
#[derive(Debug)]
pub(crate) struct SegmentSlot {
    pub seg: Arc<Segment>,
    pub dead: Bitset,
    /// Tombstones changed since they were last written to a file.
    pub dirty: bool,
    /// The tombstone file holding `dead` as of the last flush, if any.
    pub tombstone_file: Option<String>,
}

/// A memtable being written out as a segment, with the tombstones it gathers meanwhile.
#[derive(Debug)]
pub(crate) struct Frozen {
    pub mem: Arc<Memtable>,
    pub dead: Bitset,
    /// The last WAL sequence number whose effects the frozen memtable holds.
    pub covers_seq: u64,
    /// The change-feed position as of `covers_seq`.
    pub position: Option<crate::types::SourcePosition>,
}

#[derive(Debug)]
pub(crate) struct State {
    space: Space,
    dim: Option<usize>,
    active: Memtable,
    active_dead: Bitset,
    frozen: Option<Frozen>,
    segments: Vec<SegmentSlot>,
    next_first_seq: u64,
    live: usize,
    /// Parameters for the graphs of new memtables. Shared with the collection, which changes
    /// them without the state lock: a config change must not wait for readers or writers.
    build: Arc<Mutex<BuildParams>>,
    /// Search work, cumulative (exported as metrics).
    pub(crate) counters: QueryCounters,
    /// Segment graphs are walked over int8 codes (then rescored in f32); off: walked in f32.
    pub(crate) quantized: AtomicBool,
    /// The planner scans a filtered source exactly at up to this many candidate rows...
    pub(crate) filter_exact_rows: AtomicUsize,
    /// ...or at up to this share (‰) of the source's rows.
    pub(crate) filter_exact_permille: AtomicUsize,
}

/// Cumulative search work of a collection.
#[derive(Debug, Default)]
pub(crate) struct QueryCounters {
    /// Query vectors answered.
    pub queries: AtomicU64,
    /// Distance computations spent on them (graph and exact).
    pub distance_computations: AtomicU64,
    /// Sources (memtables, segments) that fell back to an exact scan.
    pub exact_fallbacks: AtomicU64,
    /// Query vectors planned as an unfiltered graph search.
    pub plan_graph: AtomicU64,
    /// Query vectors planned as a filtered graph search.
    pub plan_filtered: AtomicU64,
    /// Query vectors planned as an exact scan.
    pub plan_exact: AtomicU64,
}

/// Which rows a read touches: `ids` and `filter` ANDed.
struct Selector<'a> {
    ids: Option<&'a [String]>,
    filter: Option<&'a Filter>,
}

impl State {
    /// State over already-opened segments (with their tombstones).
    pub(crate) fn new(
        space: Space,
        dim: Option<usize>,
        segments: Vec<SegmentSlot>,
        next_first_seq: u64,
        build: BuildParams,
    ) -> Result<State, EngineError> {
        let live = segments.iter().map(|s| s.seg.rows() - s.dead.count()).sum();
        Ok(State {
            space,
            dim,
            active: Memtable::new(
                dim.unwrap_or(0),
                Some((space, build)),
                largest_centre(&segments),
            )?,
            active_dead: Bitset::default(),
            frozen: None,
            segments,
            next_first_seq,
            live,
            build: Arc::new(Mutex::new(build)),
            counters: QueryCounters::default(),
            quantized: AtomicBool::new(true),
            filter_exact_rows: AtomicUsize::new(FILTER_EXACT_MAX_ROWS),
            filter_exact_permille: AtomicUsize::new(FILTER_EXACT_MAX_PERMILLE),
        })
    }

    pub(crate) fn space(&self) -> Space {
        self.space
    }

    pub(crate) fn build_params(&self) -> BuildParams {
        *self.build.lock()
    }

    /// The parameters new memtables are built with, to change them without the state lock.
    pub(crate) fn build_handle(&self) -> Arc<Mutex<BuildParams>> {
        Arc::clone(&self.build)
    }

    /// Swaps compacted input segments (by id) for their merged replacement (`None` when no row
    /// survived). `map[i][r]` is input `i`'s row `r` in the new segment (`u32::MAX`: dropped);
    /// rows tombstoned since the merge started are tombstoned in the new segment too.
    pub(crate) fn replace_segments(
        &mut self,
        input_ids: &[u64],
        new: Option<Arc<Segment>>,
        map: &[Vec<u32>],
    ) -> Result<(), EngineError> {
        let mut dead = Bitset::default();
        let mut first_pos = None;
        for (i, id) in input_ids.iter().enumerate() {
            let Some(pos) = self.segments.iter().position(|s| s.seg.id() == *id) else {
                return Err(EngineError::Internal(format!(
                    "compacted segment {id} is gone"
                )));
            };
            first_pos.get_or_insert(pos);
            let slot = &self.segments[pos];
            for (r, &to) in map[i].iter().enumerate() {
                if to != u32::MAX && slot.dead.get(r as u32) {
                    dead.set(to);
                }
            }
        }
        // Live rows move, dead ones vanish: the live count is unchanged.
        self.segments.retain(|s| !input_ids.contains(&s.seg.id()));
        if let Some(seg) = new {
            let at = first_pos.unwrap_or(0).min(self.segments.len());
            let dirty = dead.count() > 0;
            self.segments.insert(
                at,
                SegmentSlot {
                    seg,
                    dead,
                    dirty,
                    tombstone_file: None,
                },
            );
        }
        Ok(())
    }

    /// Takes over `old`'s cumulative counters and search settings, for a state rebuilt from
    /// the files to replace it (log recovery): metrics stay monotonic, tuning stays as set, and
    /// the collection's handle on the build parameters stays the one in use.
    pub(crate) fn carry_over(&mut self, old: &State) {
        // The collection changes build parameters through `old`'s handle: keep sharing it.
        self.build = Arc::clone(&old.build);
        let c = (&self.counters, &old.counters);
        for (to, from) in [
            (&c.0.queries, &c.1.queries),
            (&c.0.distance_computations, &c.1.distance_computations),
            (&c.0.exact_fallbacks, &c.1.exact_fallbacks),
            (&c.0.plan_graph, &c.1.plan_graph),
            (&c.0.plan_filtered, &c.1.plan_filtered),
            (&c.0.plan_exact, &c.1.plan_exact),
        ] {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.quantized
            .store(old.quantized.load(Ordering::Relaxed), Ordering::Relaxed);
        self.filter_exact_rows.store(
            old.filter_exact_rows.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        self.filter_exact_permille.store(
            old.filter_exact_permille.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }

    /// The next step of graph building for the active and frozen memtables, if any rows wait.
    pub(crate) fn index_jobs(&self, max_rows: usize) -> Vec<IndexJob> {
        let frozen = self.frozen.as_ref().and_then(|f| f.mem.index_job(max_rows));
        frozen
            .into_iter()
            .chain(self.active.index_job(max_rows))
            .collect()
    }

    /// Rows of the active and frozen memtables not yet in their graphs.
    pub(crate) fn unindexed_rows(&self) -> usize {
        let unindexed = |m: &Memtable| m.len() - m.graph().map_or(m.len(), |g| g.indexed());
        unindexed(&self.active) + self.frozen.as_ref().map_or(0, |f| unindexed(&f.mem))
    }

    pub(crate) fn dimension(&self) -> Option<usize> {
        self.dim
    }

    /// Live records.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Rows in the active memtable (live or not).
    pub(crate) fn active_rows(&self) -> usize {
        self.active.len()
    }

    /// Rows held in memory until a flush writes them out: the active memtable's and a frozen
    /// one's (what the write stall bounds).
    pub(crate) fn unflushed_rows(&self) -> usize {
        self.active.len() + self.frozen.as_ref().map_or(0, |f| f.mem.len())
    }

    /// Approximate heap bytes of the active memtable.
    pub(crate) fn active_bytes(&self) -> usize {
        self.active.bytes()
    }

    /// Approximate heap bytes of the frozen memtable (0 when none is being flushed).
    pub(crate) fn frozen_bytes(&self) -> usize {
        self.frozen.as_ref().map_or(0, |f| f.mem.bytes())
    }

    /// The next first-insert number to hand out.
    pub(crate) fn next_first_seq(&self) -> u64 {
        self.next_first_seq
    }

    pub(crate) fn segments(&self) -> &[SegmentSlot] {
        &self.segments
    }

    pub(crate) fn segments_mut(&mut self) -> &mut [SegmentSlot] {
        &mut self.segments
    }

    /// The memtable being flushed, with the WAL position and change-feed position it covers.
    pub(crate) fn frozen(
        &self,
    ) -> Option<(&Arc<Memtable>, u64, Option<&crate::types::SourcePosition>)> {
        self.frozen
            .as_ref()
            .map(|f| (&f.mem, f.covers_seq, f.position.as_ref()))
    }

    fn is_dead(&self, loc: Loc) -> bool {
        match loc {
            Loc::Active(r) => self.active_dead.get(r),
            Loc::Frozen(r) => self.frozen.as_ref().is_none_or(|f| f.dead.get(r)),
            Loc::Seg(s, r) => self.segments[s].dead.get(r),
        }
    }

    /// The live row holding `id`, if any.
    pub(crate) fn lookup(&self, id: &str) -> Result<Option<Loc>, EngineError> {
        let found = if let Some(r) = self.active.newest(id) {
            Some(Loc::Active(r))
        } else if let Some(r) = self.frozen.as_ref().and_then(|f| f.mem.newest(id)) {
            Some(Loc::Frozen(r))
        } else {
            let mut found = None;
            for (s, slot) in self.segments.iter().enumerate().rev() {
                if let Some(r) = slot.seg.find(id)? {
                    found = Some(Loc::Seg(s, r));
                    break;
                }
            }
            found
        };
        Ok(found.filter(|&loc| !self.is_dead(loc)))
    }

    fn mem(&self, loc: Loc) -> Option<(&Memtable, u32)> {
        match loc {
            Loc::Active(r) => Some((&self.active, r)),
            Loc::Frozen(r) => self.frozen.as_ref().map(|f| (&*f.mem, r)),
            Loc::Seg(..) => None,
        }
    }

    fn segment(&self, loc: Loc) -> Result<(&Segment, u32), EngineError> {
        match loc {
            Loc::Seg(s, r) => Ok((&self.segments[s].seg, r)),
            _ => Err(EngineError::Internal(format!(
                "{loc:?} used after its memtable was flushed"
            ))),
        }
    }

    pub(crate) fn fields(&self, loc: Loc) -> Result<Cow<'_, Fields>, EngineError> {
        match self.mem(loc) {
            Some((m, r)) => Ok(Cow::Borrowed(&m.row(r).fields)),
            None => self
                .segment(loc)
                .and_then(|(s, r)| s.fields(r))
                .map(Cow::Owned),
        }
    }

    pub(crate) fn vector(&self, loc: Loc) -> Result<&[f32], EngineError> {
        match self.mem(loc) {
            Some((m, r)) => Ok(m.vector(r)),
            None => self.segment(loc).and_then(|(s, r)| s.vector(r)),
        }
    }

    fn inv_norm(&self, loc: Loc) -> Result<f32, EngineError> {
        match self.mem(loc) {
            Some((m, r)) => Ok(m.inv_norm(r)),
            None => self.segment(loc).and_then(|(s, r)| s.inv_norm(r)),
        }
    }

    pub(crate) fn id(&self, loc: Loc) -> Result<Cow<'_, str>, EngineError> {
        match self.mem(loc) {
            Some((m, r)) => Ok(Cow::Borrowed(m.row(r).id.as_str())),
            None => self
                .segment(loc)
                .and_then(|(s, r)| s.id_of(r))
                .map(Cow::Borrowed),
        }
    }

    pub(crate) fn first_seq(&self, loc: Loc) -> Result<u64, EngineError> {
        match self.mem(loc) {
            Some((m, r)) => Ok(m.row(r).first_seq),
            None => self.segment(loc).and_then(|(s, r)| s.first_seq(r)),
        }
    }

    fn kill(&mut self, loc: Loc) {
        let newly = match loc {
            Loc::Active(r) => self.active_dead.set(r),
            Loc::Frozen(r) => self.frozen.as_mut().is_some_and(|f| f.dead.set(r)),
            Loc::Seg(s, r) => {
                let slot = &mut self.segments[s];
                slot.dirty = true;
                slot.dead.set(r)
            }
        };
        self.live -= usize::from(newly);
    }

    /// Applies one resolved change. An error means the op contradicts the state (replay reports
    /// it as corruption); nothing is changed in that case.
    pub(crate) fn apply(&mut self, op: LogOp) -> Result<(), EngineError> {
        match op {
            LogOp::Put {
                id,
                first_seq,
                embedding,
                metadata,
                document,
                uri,
            } => {
                if let Some(d) = self.dim {
                    if d != embedding.len() {
                        return Err(EngineError::Internal(format!(
                            "vector of length {} in a collection of dimension {d}",
                            embedding.len()
                        )));
                    }
                } else {
                    self.dim = Some(embedding.len());
                    self.active = Memtable::new(
                        embedding.len(),
                        Some((self.space, self.build_params())),
                        None,
                    )?;
                }
                if let Some(old) = self.lookup(&id)? {
                    self.kill(old);
                }
                self.active.push(
                    id,
                    first_seq,
                    &embedding,
                    Fields {
                        metadata,
                        document,
                        uri,
                    },
                );
                self.live += 1;
                self.next_first_seq = self.next_first_seq.max(first_seq + 1);
            }
            LogOp::Delete { id } => {
                if let Some(old) = self.lookup(&id)? {
                    self.kill(old);
                }
            }
        }
        Ok(())
    }

    /// Moves the active memtable aside for flushing; readers keep seeing it. `covers_seq` is the
    /// WAL's last sequence number now, `position` the change-feed position as of it.
    pub(crate) fn freeze(
        &mut self,
        covers_seq: u64,
        position: Option<crate::types::SourcePosition>,
    ) -> Option<Arc<Memtable>> {
        if self.active.is_empty() || self.frozen.is_some() {
            return None;
        }
        // A builder that cannot be created (it validates what config already validated) leaves
        // the new memtable without a graph: exact-scanned, never wrong.
        // The new memtable's codes are centred on this one's mean: the best guess at where
        // the next rows lie.
        let centre = self.active.mean();
        let build = self.build_params();
        let next = Memtable::new(self.dim.unwrap_or(0), Some((self.space, build)), centre)
            .or_else(|_| Memtable::new(self.dim.unwrap_or(0), None, None))
            .unwrap_or_default();
        let mem = Arc::new(std::mem::replace(&mut self.active, next));
        let dead = std::mem::take(&mut self.active_dead);
        self.frozen = Some(Frozen {
            mem: Arc::clone(&mem),
            dead,
            covers_seq,
            position,
        });
        Some(mem)
    }

    /// Replaces the frozen memtable with the segment written from it (same rows, same order).
    pub(crate) fn install_segment(&mut self, seg: Arc<Segment>) -> Result<(), EngineError> {
        let Some(frozen) = self.frozen.take() else {
            return Err(EngineError::Internal(
                "no frozen memtable to replace".into(),
            ));
        };
        if frozen.mem.len() != seg.rows() {
            let rows = frozen.mem.len();
            self.frozen = Some(frozen);
            return Err(EngineError::Internal(format!(
                "segment has {} rows, memtable {rows}",
                seg.rows()
            )));
        }
        let dirty = frozen.dead.count() > 0;
        self.segments.push(SegmentSlot {
            seg,
            dead: frozen.dead,
            dirty,
            tombstone_file: None,
        });
        Ok(())
    }

    /// Live rows passing the selector, in insertion order, stopping after `max` rows.
    fn select(&self, sel: &Selector<'_>, max: usize) -> Result<Vec<Loc>, EngineError> {
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        let passes = |loc: Loc| -> Result<bool, EngineError> {
            match sel.filter {
                None => Ok(true),
                Some(f) => {
                    let fields = self.fields(loc)?;
                    Ok(f.matches(fields.metadata.as_ref(), fields.document.as_deref()))
                }
            }
        };
        if let Some(ids) = sel.ids {
            let mut locs = Vec::with_capacity(ids.len());
            let mut seen = HashSet::with_capacity(ids.len());
            for id in ids {
                if let Some(loc) = self.lookup(id)? {
                    if seen.insert(loc) {
                        locs.push((self.first_seq(loc)?, loc));
                    }
                }
            }
            locs.sort_unstable();
            for (_, loc) in locs {
                if passes(loc)? {
                    out.push(loc);
                    if out.len() == max {
                        break;
                    }
                }
            }
            return Ok(out);
        }
        // K-way merge of the sources by first-insert number: memtables are sorted here (they
        // are small), segments carry a stored order.
        let mut cursors: Vec<Cursor> = Vec::new();
        for (mem, dead, make) in [
            (
                Some(&self.active),
                Some(&self.active_dead),
                Loc::Active as fn(u32) -> Loc,
            ),
            (
                self.frozen.as_ref().map(|f| &*f.mem),
                self.frozen.as_ref().map(|f| &f.dead),
                Loc::Frozen as fn(u32) -> Loc,
            ),
        ] {
            if let (Some(mem), Some(dead)) = (mem, dead) {
                let mut rows: Vec<(u64, Loc)> = (0..mem.len() as u32)
                    .filter(|&r| !dead.get(r))
                    .map(|r| (mem.row(r).first_seq, make(r)))
                    .collect();
                rows.sort_unstable();
                cursors.push(Cursor::Mem(rows, 0));
            }
        }
        for s in 0..self.segments.len() {
            cursors.push(Cursor::Seg(s, 0));
        }
        let mut heap = BinaryHeap::new();
        for (c, cursor) in cursors.iter_mut().enumerate() {
            if let Some(head) = cursor.next(self)? {
                heap.push(Reverse((head, c)));
            }
        }
        while let Some(Reverse(((_, loc), c))) = heap.pop() {
            if passes(loc)? {
                out.push(loc);
                if out.len() == max {
                    break;
                }
            }
            if let Some(head) = cursors[c].next(self)? {
                heap.push(Reverse((head, c)));
            }
        }
        Ok(out)
    }

    /// Ids of the live rows passing `ids` and `filter`, in insertion order, at most `limit`.
    pub(crate) fn select_ids(
        &self,
        ids: Option<&[String]>,
        filter: Option<&Filter>,
        limit: Option<u32>,
    ) -> Result<Vec<String>, EngineError> {
        let locs = self.select(
            &Selector { ids, filter },
            limit.map_or(usize::MAX, |l| l as usize),
        )?;
        locs.into_iter()
            .map(|l| self.id(l).map(Cow::into_owned))
            .collect()
    }

    pub(crate) fn get(&self, req: &GetRequest) -> Result<GetResult, EngineError> {
        let max = req.limit.map_or(usize::MAX, |l| {
            (req.offset as usize).saturating_add(l as usize)
        });
        let locs = self.select(
            &Selector {
                ids: req.ids.as_deref(),
                filter: req.filter.as_ref(),
            },
            max,
        )?;
        let locs: Vec<Loc> = locs.into_iter().skip(req.offset as usize).collect();
        let (ids, embeddings, documents, metadatas, uris) = self.columns(&locs, req.include)?;
        Ok(GetResult {
            ids,
            embeddings,
            documents,
            metadatas,
            uris,
        })
    }

    #[allow(clippy::type_complexity)]
    fn columns(
        &self,
        locs: &[Loc],
        inc: Include,
    ) -> Result<
        (
            Vec<String>,
            Option<Vec<Vec<f32>>>,
            Option<Vec<Option<String>>>,
            Option<Vec<Option<crate::types::Metadata>>>,
            Option<Vec<Option<String>>>,
        ),
        EngineError,
    > {
        let ids = locs
            .iter()
            .map(|&l| self.id(l).map(Cow::into_owned))
            .collect::<Result<_, _>>()?;
        let embeddings = if inc.embeddings {
            Some(
                locs.iter()
                    .map(|&l| self.vector(l).map(<[f32]>::to_vec))
                    .collect::<Result<_, _>>()?,
            )
        } else {
            None
        };
        let need_fields = inc.documents || inc.metadatas || inc.uris;
        let fields: Vec<Cow<Fields>> = if need_fields {
            locs.iter()
                .map(|&l| self.fields(l))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let documents = inc
            .documents
            .then(|| fields.iter().map(|f| f.document.clone()).collect());
        let metadatas = inc
            .metadatas
            .then(|| fields.iter().map(|f| f.metadata.clone()).collect());
        let uris = inc
            .uris
            .then(|| fields.iter().map(|f| f.uri.clone()).collect());
        Ok((ids, embeddings, documents, metadatas, uris))
    }

    /// The `n_results` nearest live rows per query vector. Explicit `ids` are scored exactly;
    /// otherwise each memtable and segment is searched through its graph with tombstones and
    /// the filter applied inside the search (rows not yet in a memtable's graph are scanned
    /// exactly), and a source whose search could not guarantee its k falls back to an exact scan.
    pub(crate) fn query(
        &self,
        req: &QueryRequest,
        ef_search: usize,
    ) -> Result<QueryResult, EngineError> {
        for q in &req.embeddings {
            validate_embedding(q)?;
            if let Some(d) = self.dim {
                if q.len() != d {
                    return Err(InputError::DimensionMismatch {
                        expected: d,
                        got: q.len(),
                    }
                    .into());
                }
            }
        }
        let k = req.n_results as usize;
        let by_ids: Option<Vec<Loc>> = match (&req.ids, self.dim) {
            (Some(_), Some(_)) if k > 0 => Some(self.select(
                &Selector {
                    ids: req.ids.as_deref(),
                    filter: req.filter.as_ref(),
                },
                usize::MAX,
            )?),
            _ => None,
        };
        let search = |q: &Vec<f32>| -> Result<Vec<Candidate>, EngineError> {
            if self.dim.is_none() || k == 0 || (req.ids.is_some() && by_ids.is_none()) {
                return Ok(Vec::new());
            }
            let pq = PreparedQuery::new(self.space, q)?;
            self.counters.queries.fetch_add(1, Ordering::Relaxed);
            let filtered = req.filter.is_some();
            match &by_ids {
                Some(locs) => {
                    self.counters.plan_exact.fetch_add(1, Ordering::Relaxed);
                    QueryPlan::exact(filtered).count();
                    self.scan_locs(&pq, k, locs)
                }
                // Asking for (nearly) everything: a graph beam that wide costs more than a scan,
                // and hnsw_rs caps its beam anyway.
                None if k > EXACT_ABOVE_K || k >= self.live => {
                    self.counters.plan_exact.fetch_add(1, Ordering::Relaxed);
                    let locs = self.select(
                        &Selector {
                            ids: None,
                            filter: req.filter.as_ref(),
                        },
                        usize::MAX,
                    )?;
                    QueryPlan::exact(filtered).count();
                    self.scan_locs(&pq, k, &locs)
                }
                None => {
                    let plan = if req.filter.is_some() {
                        &self.counters.plan_filtered
                    } else {
                        &self.counters.plan_graph
                    };
                    plan.fetch_add(1, Ordering::Relaxed);
                    self.search_all(&pq, k, ef_search.max(k), req.filter.as_ref())
                }
            }
        };
        let hits: Vec<Vec<Candidate>> = if req.embeddings.len() > 1 {
            // Several query vectors in one request do use rayon: the batch is the caller's
            // explicit request for throughput over latency.
            req.embeddings
                .par_iter()
                .map(search)
                .collect::<Result<_, _>>()?
        } else {
            req.embeddings
                .iter()
                .map(search)
                .collect::<Result<_, _>>()?
        };
        let mut results = Vec::with_capacity(hits.len());
        for h in hits {
            let locs: Vec<Loc> = h.iter().map(|c| c.loc).collect();
            let (ids, embeddings, documents, metadatas, uris) = self.columns(&locs, req.include)?;
            let distances = req
                .include
                .distances
                .then(|| h.iter().map(|c| c.distance).collect());
            results.push(QueryHits {
                ids,
                distances,
                embeddings,
                documents,
                metadatas,
                uris,
            });
        }
        Ok(QueryResult { results })
    }

    fn score(&self, q: &PreparedQuery, loc: Loc) -> Result<f32, EngineError> {
        Ok(distance(
            self.space,
            q.vector(),
            self.vector(loc)?,
            q.inv_norm(),
            self.inv_norm(loc)?,
        ))
    }

    fn candidate(&self, distance: f32, loc: Loc) -> Result<Candidate, EngineError> {
        Ok(Candidate {
            distance,
            first_seq: self.first_seq(loc)?,
            loc,
        })
    }

    /// Exact top-k over explicit rows.
    fn scan_locs(
        &self,
        q: &PreparedQuery,
        k: usize,
        locs: &[Loc],
    ) -> Result<Vec<Candidate>, EngineError> {
        self.counters
            .distance_computations
            .fetch_add(locs.len() as u64, Ordering::Relaxed);
        // Sequential for the same reason as `search_all`: never wait behind graph builds.
        let mut all = locs
            .iter()
            .map(|&loc| self.score(q, loc).and_then(|d| self.candidate(d, loc)))
            .collect::<Result<Vec<_>, _>>()?;
        all.sort();
        all.truncate(k);
        Ok(all)
    }

    /// Top-k over every source, each searched by graph where it has one.
    fn search_all(
        &self,
        q: &PreparedQuery,
        k: usize,
        ef: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<Candidate>, EngineError> {
        // Filter evaluation inside a graph search cannot return an error; the first one is kept
        // here and reported after the search.
        let filter_error: Mutex<Option<EngineError>> = Mutex::new(None);
        let passes = |loc: Loc| -> bool {
            let Some(f) = filter else { return true };
            match self.fields(loc) {
                Ok(fields) => f.matches(fields.metadata.as_ref(), fields.document.as_deref()),
                Err(e) => {
                    filter_error.lock().get_or_insert(e);
                    false
                }
            }
        };
        let params = SearchParams::new(k, ef);
        let mut sources: Vec<Source> = vec![Source::Active];
        if self.frozen.is_some() {
            sources.push(Source::Frozen);
        }
        sources.extend((0..self.segments.len()).map(Source::Segment));
        // Sequential on the caller's thread, not rayon: graph builds keep the global pool busy
        // with long insert jobs, and a query queued behind them stalled for seconds (measured:
        // one c=1 query waited 50 s during a flush). Concurrency comes from concurrent requests.
        let walked = AtomicBool::new(false);
        let per_source = sources
            .iter()
            .map(|&src| {
                if let Some(f) = filter {
                    if let Some(out) = self.planned_source(src, q, &params, f, &passes, &walked)? {
                        return Ok(out);
                    }
                }
                // No filter, or a segment written before payload indexes: the filter is
                // evaluated per visited row inside the walk.
                walked.store(true, Ordering::Relaxed);
                self.search_source(src, q, &params, &passes)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(e) = filter_error.into_inner() {
            return Err(e);
        }
        match (filter.is_some(), walked.into_inner()) {
            (false, _) => QueryPlan::Graph,
            (true, true) => QueryPlan::FilteredGraph,
            (true, false) => QueryPlan::FilteredExact,
        }
        .count();
        let mut all: Vec<Candidate> = per_source.into_iter().flatten().collect();
        all.sort();
        all.dedup_by_key(|c| c.loc);
        all.truncate(k);
        Ok(all)
    }

    /// One source under a filter, planned from its payload index: the candidate rows come
    /// from bitmap algebra; few candidates are scanned exactly, many are searched through the
    /// graph with O(1) bitmap membership as the predicate. `None` for a segment without a
    /// payload index (written before them). Sets `walked` when a graph was searched.
    fn planned_source(
        &self,
        src: Source,
        q: &PreparedQuery,
        params: &SearchParams,
        filter: &Filter,
        passes: &(dyn Fn(Loc) -> bool + Sync),
        walked: &AtomicBool,
    ) -> Result<Option<Vec<Candidate>>, EngineError> {
        let k = params.k;
        let mut work = 0u64;
        let out = match src {
            Source::Active | Source::Frozen => {
                let (mem, dead, make): (&Memtable, &Bitset, fn(u32) -> Loc) =
                    match (src, &self.frozen) {
                        (Source::Frozen, Some(f)) => (&f.mem, &f.dead, Loc::Frozen),
                        _ => (&self.active, &self.active_dead, Loc::Active),
                    };
                let mut cand = mem.payload().evaluate(filter);
                cand.rows.and_not_words(dead.words());
                let matches = cand.rows.count();
                let exact = cand.exact;
                let check = |r: u32| exact || passes(make(r));
                let rows = RowsOf::Mem(mem);
                let indexed = mem.graph().map_or(0, |g| g.indexed()).min(mem.len());
                let graph = mem
                    .graph()
                    .filter(|_| indexed > 0 && !self.plan_exact(matches, mem.len()));
                let mut found_by_graph = None;
                if let Some(graph) = graph {
                    walked.store(true, Ordering::Relaxed);
                    // hnsw_rs filters after its beam: widen the beam so about `ef` candidates
                    // of the filter are in it.
                    let ef = filtered_ef(params.ef, k, matches, mem.len());
                    let accept =
                        |r: u32| (r as usize) < indexed && cand.rows.contains(r) && check(r);
                    let found = graph
                        .builder
                        .search(q.vector(), k, ef, accept, &mem.store())?;
                    work += found.stats.distance_computations;
                    if found.complete && found.results.len() >= k {
                        found_by_graph = Some(found.results);
                    } else {
                        self.counters
                            .exact_fallbacks
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                match found_by_graph {
                    Some(results) => {
                        let mut out = Vec::with_capacity(results.len() + k);
                        for s in results {
                            out.push(self.candidate(s.distance, make(s.row))?);
                        }
                        // Rows the graph does not hold yet.
                        let mut tail = cand.rows.clone();
                        tail.and_not_words(&prefix_words(indexed));
                        out.extend(self.scan_candidates(
                            q, k, params.ef, rows, &tail, &check, make, &mut work,
                        )?);
                        out
                    }
                    None => self.scan_candidates(
                        q, k, params.ef, rows, &cand.rows, &check, make, &mut work,
                    )?,
                }
            }
            Source::Segment(s) => {
                let slot = &self.segments[s];
                let Some(index) = slot.seg.payload()? else {
                    return Ok(None);
                };
                let mut cand = index.evaluate(filter);
                cand.rows.and_not_words(slot.dead.words());
                let matches = cand.rows.count();
                let exact = cand.exact;
                let check = |r: u32| exact || passes(Loc::Seg(s, r));
                let rows = RowsOf::Seg(&slot.seg);
                let make = move |r: u32| Loc::Seg(s, r);
                let mut out = None;
                if !self.plan_exact(matches, slot.seg.rows()) {
                    walked.store(true, Ordering::Relaxed);
                    let accept = |r: u32| cand.rows.contains(r) && check(r);
                    let quantized = self.quantized.load(Ordering::Relaxed);
                    // Only the filter's rows are scored; the others are stepped over (ACORN-1):
                    // at 31 % selectivity a walk that scores every row it meets computes 3,800
                    // distances, this one 2,600 (`cargo bench --bench filtered`).
                    let walk = SearchParams {
                        rejected: Rejected::TwoHop,
                        ef: two_hop_ef(params.ef, matches, slot.seg.rows()),
                        ..*params
                    };
                    if let Some(found) = slot.seg.search(q, &walk, quantized, accept)? {
                        work += found.stats.distance_computations;
                        if found.complete {
                            let mut v = Vec::with_capacity(found.results.len());
                            for hit in found.results {
                                v.push(self.candidate(hit.distance, make(hit.row))?);
                            }
                            out = Some(v);
                        } else {
                            self.counters
                                .exact_fallbacks
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                match out {
                    Some(v) => v,
                    None => self.scan_candidates(
                        q, k, params.ef, rows, &cand.rows, &check, make, &mut work,
                    )?,
                }
            }
        };
        self.counters
            .distance_computations
            .fetch_add(work, Ordering::Relaxed);
        Ok(Some(out))
    }

    /// Top-k among the candidate `set` of one source (rows failing `check` skipped). Up to
    /// `shortlist_for(ef, k)` rows are scored in f32 directly, so the answer is exact; above
    /// that, the rows are ranked over their int8 codes (a quarter of the bytes) and the
    /// shortlist is rescored in f32.
    #[allow(clippy::too_many_arguments)]
    fn scan_candidates(
        &self,
        q: &PreparedQuery,
        k: usize,
        ef: usize,
        rows: RowsOf<'_>,
        set: &RowSet,
        check: &dyn Fn(u32) -> bool,
        make: impl Fn(u32) -> Loc,
        work: &mut u64,
    ) -> Result<Vec<Candidate>, EngineError> {
        let shortlist = shortlist_for(ef, k);
        let mut top: BinaryHeap<Candidate> = BinaryHeap::with_capacity(k + 1);
        let coded = set.count() > shortlist && rows.has_codes(self.space);
        if coded {
            let mut coarse = TopK::new(shortlist);
            let qcode = rows.query_code(self.space, q);
            for r in set.iter() {
                if !check(r) {
                    continue;
                }
                *work += 1;
                if let Some(d) = rows.approx_distance(self.space, &qcode, r) {
                    coarse.push(Scored {
                        distance: d?,
                        row: r,
                    });
                }
            }
            for s in coarse.into_sorted() {
                *work += 1;
                let d = rows.distance(self.space, q, s.row)?;
                push_bounded(&mut top, k, self.candidate(d, make(s.row))?);
            }
        } else {
            for r in set.iter() {
                if !check(r) {
                    continue;
                }
                *work += 1;
                let d = rows.distance(self.space, q, r)?;
                if top.len() == k && top.peek().is_some_and(|w| d > w.distance) {
                    continue;
                }
                push_bounded(&mut top, k, self.candidate(d, make(r))?);
            }
        }
        Ok(top.into_vec())
    }

    /// Whether a filtered source with `matches` candidates out of `rows` is scanned exactly.
    fn plan_exact(&self, matches: usize, rows: usize) -> bool {
        matches == 0
            || matches <= self.filter_exact_rows.load(Ordering::Relaxed)
            || matches * 1000 <= rows * self.filter_exact_permille.load(Ordering::Relaxed)
    }

    fn search_source(
        &self,
        src: Source,
        q: &PreparedQuery,
        params: &SearchParams,
        passes: &(dyn Fn(Loc) -> bool + Sync),
    ) -> Result<Vec<Candidate>, EngineError> {
        let k = params.k;
        let mut out = Vec::new();
        let mut work = 0u64;
        match src {
            Source::Active | Source::Frozen => {
                let (mem, dead, make): (&Memtable, &Bitset, fn(u32) -> Loc) =
                    match (src, &self.frozen) {
                        (Source::Frozen, Some(f)) => (&f.mem, &f.dead, Loc::Frozen),
                        _ => (&self.active, &self.active_dead, Loc::Active),
                    };
                let indexed = mem.graph().map_or(0, |g| g.indexed()).min(mem.len());
                let mut exact_from = indexed;
                if let Some(graph) = mem.graph().filter(|_| indexed > 0) {
                    let accept = |r: u32| (r as usize) < indexed && !dead.get(r) && passes(make(r));
                    let found =
                        graph
                            .builder
                            .search(q.vector(), k, params.ef, accept, &mem.store())?;
                    work += found.stats.distance_computations;
                    // hnsw_rs's live graph gives no reachability guarantee and is being
                    // extended while we search, so a short answer is never taken as proof that
                    // no more rows match: the memtable is small, scan it instead.
                    if found.complete && found.results.len() >= k {
                        for s in found.results {
                            out.push(self.candidate(s.distance, make(s.row))?);
                        }
                    } else {
                        self.counters
                            .exact_fallbacks
                            .fetch_add(1, Ordering::Relaxed);
                        exact_from = 0;
                    }
                }
                // Rows the graph does not hold yet (or all, after a fallback): scanned over
                // their int8 codes, the `ef` best rescored in f32 (exact distances; a quarter of
                // the bytes of an f32 scan while the indexer catches up).
                let shortlist = params.ef.max(k).max(TAIL_SHORTLIST_MIN);
                let mut coarse = TopK::new(shortlist);
                let mut top: BinaryHeap<Candidate> = BinaryHeap::with_capacity(k + 1);
                let exact = |r: u32| {
                    distance(
                        self.space,
                        q.vector(),
                        mem.vector(r),
                        q.inv_norm(),
                        mem.inv_norm(r),
                    )
                };
                let qcode = match mem.coder() {
                    Some(c) if exact_from < mem.len() => q.code_for(c),
                    _ => Cow::Borrowed(q.code()),
                };
                for r in exact_from as u32..mem.len() as u32 {
                    if dead.get(r) || !passes(make(r)) {
                        continue;
                    }
                    work += 1;
                    match mem.code(r) {
                        Some(c) => coarse.push(Scored {
                            distance: quant::approx_distance(self.space, &qcode, c),
                            row: r,
                        }),
                        None => push_bounded(
                            &mut top,
                            k,
                            Candidate {
                                distance: exact(r),
                                first_seq: mem.row(r).first_seq,
                                loc: make(r),
                            },
                        ),
                    }
                }
                for s in coarse.into_sorted() {
                    work += 1;
                    push_bounded(
                        &mut top,
                        k,
                        Candidate {
                            distance: exact(s.row),
                            first_seq: mem.row(s.row).first_seq,
                            loc: make(s.row),
                        },
                    );
                }
                out.extend(top);
            }
            Source::Segment(s) => {
                let slot = &self.segments[s];
                let accept = |r: u32| !slot.dead.get(r) && passes(Loc::Seg(s, r));
                let quantized = self.quantized.load(Ordering::Relaxed);
                let found = slot.seg.search(q, params, quantized, accept)?;
                match found {
                    Some(found) if found.complete => {
                        work += found.stats.distance_computations;
                        for hit in found.results {
                            out.push(self.candidate(hit.distance, Loc::Seg(s, hit.row))?);
                        }
                    }
                    other => {
                        if let Some(found) = other {
                            work += found.stats.distance_computations;
                            self.counters
                                .exact_fallbacks
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        let mut top: BinaryHeap<Candidate> = BinaryHeap::with_capacity(k + 1);
                        for r in 0..slot.seg.rows() as u32 {
                            if !accept(r) {
                                continue;
                            }
                            work += 1;
                            let loc = Loc::Seg(s, r);
                            let d = self.score(q, loc)?;
                            if top.len() == k && top.peek().is_some_and(|w| d > w.distance) {
                                continue;
                            }
                            push_bounded(&mut top, k, self.candidate(d, loc)?);
                        }
                        out.extend(top);
                    }
                }
            }
        }
        self.counters
            .distance_computations
            .fetch_add(work, Ordering::Relaxed);
        Ok(out)
    }

    /// Ids of every live record (reconciliation and tests; O(n)).
    pub(crate) fn live_ids(&self) -> Result<HashSet<String>, EngineError> {
        self.select_ids(None, None, None)
            .map(|v| v.into_iter().collect())
    }
}

/// Candidate rows up to which a filtered source is scanned instead of walking its graph.
const FILTER_EXACT_MAX_ROWS: usize = 4096;
/// Candidate share (per mille of the source's rows) up to which a filtered source is scanned.
/// Above it the two-hop walk costs about 1.5–2× an unfiltered query; below it the filter's rows
/// are too sparse for two hops to connect them, and recall falls (real100k, `cargo bench --bench
/// filtered`: recall@10 0.993 at 11 %, 0.988 at 6.7 %, 0.972 at 3.6 %, 0.85 at 1 %).
const FILTER_EXACT_MAX_PERMILLE: usize = 100;

/// Beam of a two-hop filtered walk ([`Rejected::TwoHop`]): `ef` at 30 % selectivity and above,
/// 16 % wider per 10 points below it. The filter's nearest rows lie farther out in a sparser
/// subgraph, so the same `ef` loses recall as selectivity falls (real100k, `cargo bench --bench
/// filtered`: recall@10 0.993 at 31 % with `ef`, 0.990 at 11 % with `ef` and 0.993 with 1.3×).
fn two_hop_ef(ef: usize, matches: usize, rows: usize) -> usize {
    let permille = (matches * 1000 / rows.max(1)).min(1000);
    let widen_pct = 300usize.saturating_sub(permille) * 16 / 100;
    (ef.saturating_mul(100 + widen_pct) / 100).clamp(ef, MAX_SEARCH_EF.max(ef))
}

/// Beam for hnsw_rs's post-filtered search: wide enough that about `max(ef, 3k)` rows of the
/// filter fall inside it, capped at 8× `ef`.
fn filtered_ef(ef: usize, k: usize, matches: usize, rows: usize) -> usize {
    let want = ef.max(3 * k);
    let widened = (want * rows).div_ceil(matches.max(1));
    widened.clamp(ef, ef.saturating_mul(8))
}

/// Rows rescored in f32 after an int8 pre-ranking (and below which a scan is all f32).
fn shortlist_for(ef: usize, k: usize) -> usize {
    (2 * ef).max(k).max(2 * TAIL_SHORTLIST_MIN)
}

/// Words of a bitset whose first `n` bits are set.
fn prefix_words(n: usize) -> Vec<u64> {
    let mut w = vec![u64::MAX; n / 64];
    if !n.is_multiple_of(64) {
        w.push((1u64 << (n % 64)) - 1);
    }
    w
}

/// The rows of one source, for candidate scans.
#[derive(Clone, Copy)]
enum RowsOf<'a> {
    Mem(&'a Memtable),
    Seg(&'a Segment),
}

impl<'a> RowsOf<'a> {
    fn has_codes(&self, space: Space) -> bool {
        match self {
            RowsOf::Mem(m) => m.code(0).is_some(),
            RowsOf::Seg(s) => s.coder(space).is_some(),
        }
    }

    /// The query coded like these rows' codes (see [`PreparedQuery::code_for`]).
    fn query_code<'q>(&self, space: Space, q: &'q PreparedQuery) -> QueryCode<'q> {
        let coder = match self {
            RowsOf::Mem(m) => m.coder(),
            RowsOf::Seg(s) => s.coder(space),
        };
        QueryCode::new(match coder {
            Some(c) => q.code_for(c),
            None => Cow::Borrowed(q.code()),
        })
    }

    /// Approximate (ordering-only) distance to row `r` over its code, if the rows have codes.
    fn approx_distance(
        &self,
        space: Space,
        q: &QueryCode<'_>,
        r: u32,
    ) -> Option<Result<f32, EngineError>> {
        match self {
            RowsOf::Mem(m) => m
                .code(r)
                .map(|c| Ok(quant::approx_distance(space, q.code(), c))),
            RowsOf::Seg(s) => s.approx_distance(space, q, r),
        }
    }

    fn distance(&self, space: Space, q: &PreparedQuery, r: u32) -> Result<f32, EngineError> {
        let (v, inv) = match self {
            RowsOf::Mem(m) => (m.vector(r), m.inv_norm(r)),
            RowsOf::Seg(s) => (s.vector(r)?, s.inv_norm(r)?),
        };
        Ok(distance(space, q.vector(), v, q.inv_norm(), inv))
    }
}

/// How a query was answered: the label of `vectord_query_plan_total{plan=...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryPlan {
    /// No filter; graph search (with exact scans of unindexed memtable rows).
    Graph,
    /// No filter; exact scan (explicit ids, or `n_results` near the collection size).
    Exact,
    /// Filtered; at least one source walked its graph with the filter inside the walk.
    FilteredGraph,
    /// Filtered; every source scanned its candidate rows exactly.
    FilteredExact,
}

static PLAN_COUNTS: [AtomicU64; 4] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];

impl QueryPlan {
    /// Every plan, in label order.
    pub const ALL: [QueryPlan; 4] = [
        QueryPlan::Graph,
        QueryPlan::Exact,
        QueryPlan::FilteredGraph,
        QueryPlan::FilteredExact,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            QueryPlan::Graph => "graph",
            QueryPlan::Exact => "exact",
            QueryPlan::FilteredGraph => "filtered-graph",
            QueryPlan::FilteredExact => "filtered-exact",
        }
    }

    /// Query vectors answered with this plan since the process started (all collections).
    pub fn total(self) -> u64 {
        PLAN_COUNTS[self as usize].load(Ordering::Relaxed)
    }

    fn exact(filtered: bool) -> QueryPlan {
        if filtered {
            QueryPlan::FilteredExact
        } else {
            QueryPlan::Exact
        }
    }

    fn count(self) {
        PLAN_COUNTS[self as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A place to search: one memtable or one segment.
#[derive(Debug, Clone, Copy)]
enum Source {
    Active,
    Frozen,
    Segment(usize),
}

/// Keeps the `k` smallest candidates in a max-heap.
fn push_bounded(top: &mut BinaryHeap<Candidate>, k: usize, c: Candidate) {
    if k == 0 {
        return;
    }
    if top.len() < k {
        top.push(c);
    } else if let Some(mut worst) = top.peek_mut() {
        if c < *worst {
            *worst = c;
        }
    }
}

/// A scored row, ordered by distance then first-insert number (Chroma's tie order).
#[derive(Debug, Clone, Copy)]
struct Candidate {
    distance: f32,
    first_seq: u64,
    loc: Loc,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.first_seq.cmp(&other.first_seq))
    }
}

/// One source's rows in first-insert order, for the k-way merge.
enum Cursor {
    Mem(Vec<(u64, Loc)>, usize),
    Seg(usize, usize),
}

impl Cursor {
    fn next(&mut self, st: &State) -> Result<Option<(u64, Loc)>, EngineError> {
        match self {
            Cursor::Mem(rows, i) => {
                let head = rows.get(*i).copied();
                *i += 1;
                Ok(head)
            }
            Cursor::Seg(s, i) => {
                let slot = &st.segments[*s];
                while *i < slot.seg.rows() {
                    let r = slot.seg.row_in_order(*i)?;
                    *i += 1;
                    if !slot.dead.get(r) {
                        return Ok(Some((slot.seg.first_seq(r)?, Loc::Seg(*s, r))));
                    }
                }
                Ok(None)
            }
        }
    }
}
