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

use super::bitset::Bitset;
use super::log::LogOp;
use super::memtable::Memtable;
use super::segment::records::Fields;
use super::segment::Segment;
use super::EngineError;
use crate::filter::Filter;
use crate::index::distance::{distance, inverse_norm};
use crate::index::topk::{Scored, TopK};
use crate::types::{
    validate_embedding, GetRequest, GetResult, Include, InputError, QueryHits, QueryRequest,
    QueryResult, Space,
};

/// Rows scanned per parallel task in an exact query.
const SCAN_CHUNK: usize = 2048;

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
    ) -> State {
        let live = segments.iter().map(|s| s.seg.rows() - s.dead.count()).sum();
        State {
            space,
            dim,
            active: Memtable::new(dim.unwrap_or(0)),
            active_dead: Bitset::default(),
            frozen: None,
            segments,
            next_first_seq,
            live,
        }
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

    /// Approximate heap bytes of the active memtable.
    pub(crate) fn active_bytes(&self) -> usize {
        self.active.bytes()
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
                    self.active = Memtable::new(embedding.len());
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
        let mem = Arc::new(std::mem::replace(
            &mut self.active,
            Memtable::new(self.dim.unwrap_or(0)),
        ));
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

    /// Exact nearest-neighbour search over every live row.
    pub(crate) fn query(&self, req: &QueryRequest) -> Result<QueryResult, EngineError> {
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
        let restricted = req.ids.is_some() || req.filter.is_some();
        let candidates: Vec<Loc> = if restricted && k > 0 && self.dim.is_some() {
            self.select(
                &Selector {
                    ids: req.ids.as_deref(),
                    filter: req.filter.as_ref(),
                },
                usize::MAX,
            )?
        } else {
            Vec::new()
        };
        let search = |q: &Vec<f32>| -> Result<Vec<(f32, Loc)>, EngineError> {
            if self.dim.is_none() || k == 0 {
                return Ok(Vec::new());
            }
            let q_inv = inverse_norm(q);
            let top = if restricted {
                self.scan(q, q_inv, k, &candidates)?
            } else {
                self.scan_all(q, q_inv, k)?
            };
            Ok(top)
        };
        let hits: Vec<Vec<(f32, Loc)>> = if req.embeddings.len() > 1 {
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
            let locs: Vec<Loc> = h.iter().map(|(_, l)| *l).collect();
            let (ids, embeddings, documents, metadatas, uris) = self.columns(&locs, req.include)?;
            let distances = req
                .include
                .distances
                .then(|| h.iter().map(|(d, _)| *d).collect());
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

    fn score(&self, q: &[f32], q_inv: f32, loc: Loc) -> Result<f32, EngineError> {
        Ok(distance(
            self.space,
            q,
            self.vector(loc)?,
            q_inv,
            self.inv_norm(loc)?,
        ))
    }

    /// Top-k over explicit candidates; ties go to the earlier candidate (insertion order).
    fn scan(
        &self,
        q: &[f32],
        q_inv: f32,
        k: usize,
        candidates: &[Loc],
    ) -> Result<Vec<(f32, Loc)>, EngineError> {
        let top = candidates
            .par_chunks(SCAN_CHUNK)
            .enumerate()
            .try_fold(
                || TopK::new(k),
                |mut t, (c, chunk)| {
                    for (i, &loc) in chunk.iter().enumerate() {
                        t.push(Scored {
                            distance: self.score(q, q_inv, loc)?,
                            row: (c * SCAN_CHUNK + i) as u32,
                        });
                    }
                    Ok::<_, EngineError>(t)
                },
            )
            .try_reduce(
                || TopK::new(k),
                |mut a, b| {
                    a.merge(b);
                    Ok(a)
                },
            )?;
        Ok(top
            .into_sorted()
            .into_iter()
            .map(|s| (s.distance, candidates[s.row as usize]))
            .collect())
    }

    /// Top-k over all live rows; ties go to the earlier insert.
    fn scan_all(&self, q: &[f32], q_inv: f32, k: usize) -> Result<Vec<(f32, Loc)>, EngineError> {
        // (source, start row) work units over every source.
        let mut units: Vec<(Option<usize>, u32, u32)> = Vec::new();
        let mut add = |src: Option<usize>, rows: usize| {
            for start in (0..rows).step_by(SCAN_CHUNK) {
                units.push((src, start as u32, (start + SCAN_CHUNK).min(rows) as u32));
            }
        };
        // `None` = the memtables (active then frozen, numbered as one range), `Some(s)` = segment.
        let active_rows = self.active.len();
        add(
            None,
            active_rows + self.frozen.as_ref().map_or(0, |f| f.mem.len()),
        );
        for (s, slot) in self.segments.iter().enumerate() {
            add(Some(s), slot.seg.rows());
        }
        let loc_of = |src: Option<usize>, r: u32| match src {
            None if (r as usize) < active_rows => Loc::Active(r),
            None => Loc::Frozen(r - active_rows as u32),
            Some(s) => Loc::Seg(s, r),
        };
        // Ties must go to the earlier insert *within* a unit too (a unit's row order is not
        // insertion order once updates append new versions), so candidates carry first_seq.
        let scored = units
            .par_iter()
            .try_fold(Vec::new, |mut acc: Vec<Candidate>, &(src, start, end)| {
                let mut top: BinaryHeap<Candidate> = BinaryHeap::with_capacity(k + 1);
                for r in start..end {
                    let loc = loc_of(src, r);
                    if self.is_dead(loc) {
                        continue;
                    }
                    let distance = self.score(q, q_inv, loc)?;
                    if top.len() == k && top.peek().is_some_and(|worst| distance > worst.distance) {
                        continue;
                    }
                    let c = Candidate {
                        distance,
                        first_seq: self.first_seq(loc)?,
                        loc,
                    };
                    if top.len() < k {
                        top.push(c);
                    } else if let Some(mut worst) = top.peek_mut() {
                        if c < *worst {
                            *worst = c;
                        }
                    }
                }
                acc.extend(top);
                Ok::<_, EngineError>(acc)
            })
            .try_reduce(Vec::new, |mut a, b| {
                a.extend(b);
                Ok(a)
            })?;
        let mut scored = scored;
        scored.sort();
        scored.truncate(k);
        Ok(scored.into_iter().map(|c| (c.distance, c.loc)).collect())
    }

    /// Ids of every live record (reconciliation and tests; O(n)).
    pub(crate) fn live_ids(&self) -> Result<HashSet<String>, EngineError> {
        self.select_ids(None, None, None)
            .map(|v| v.into_iter().collect())
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
