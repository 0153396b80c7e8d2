//! The readable state of a collection: the active memtable, a memtable being flushed (frozen),
//! and the mapped segments, each with its tombstones. Every change arrives as a resolved
//! [`LogOp`] through [`State::apply`]; reads are answered by [`super::read`].
//!
//! An id has at most one live row across all sources: writing a new version appends it to the
//! active memtable and tombstones the previous one. So the newest row found for an id — active
//! memtable first, then frozen, then segments newest to oldest — is the only candidate, and if
//! it is tombstoned the id is absent.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::bitset::Bitset;
use super::log::LogOp;
use super::memtable::{IndexJob, Memtable};
use super::read::{FILTER_EXACT_MAX_PERMILLE, FILTER_EXACT_MAX_ROWS};
use super::segment::records::Fields;
use super::segment::Segment;
use super::EngineError;
use crate::index::BuildParams;
use crate::types::Space;

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
    pub(super) space: Space,
    pub(super) dim: Option<usize>,
    pub(super) active: Memtable,
    pub(super) active_dead: Bitset,
    pub(super) frozen: Option<Frozen>,
    pub(super) segments: Vec<SegmentSlot>,
    next_first_seq: u64,
    pub(super) live: usize,
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

    pub(super) fn inv_norm(&self, loc: Loc) -> Result<f32, EngineError> {
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
}
