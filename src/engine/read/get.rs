//! Reads by id and filter: live rows in insertion order (a k-way merge over the sources by
//! first-insert number), and the columns a request includes.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use crate::engine::segment::records::Fields;
use crate::engine::state::{Loc, State};
use crate::engine::EngineError;
use crate::filter::Filter;
use crate::types::{GetRequest, GetResult, Include};

/// Which rows a read touches: `ids` and `filter` ANDed.
pub(super) struct Selector<'a> {
    pub(super) ids: Option<&'a [String]>,
    pub(super) filter: Option<&'a Filter>,
}

impl State {
    /// Live rows passing the selector, in insertion order, stopping after `max` rows.
    pub(super) fn select(&self, sel: &Selector<'_>, max: usize) -> Result<Vec<Loc>, EngineError> {
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
    pub(super) fn columns(
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

    /// Ids of every live record (reconciliation and tests; O(n)).
    pub(crate) fn live_ids(&self) -> Result<HashSet<String>, EngineError> {
        self.select_ids(None, None, None)
            .map(|v| v.into_iter().collect())
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
