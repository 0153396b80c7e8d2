//! [`SearchSource`]: the one interface the planner searches a memtable or a segment through,
//! so each plan in [`super::plan`] is written once. Implementations are small views built per
//! query on the stack; the planner is generic over them (static dispatch: the row loops call
//! these methods per row).

use std::borrow::Cow;

use crate::engine::bitset::Bitset;
use crate::engine::memtable::Memtable;
use crate::engine::segment::payload::PayloadIndex;
use crate::engine::segment::{QueryCode, Segment};
use crate::engine::state::Loc;
use crate::engine::EngineError;
use crate::index::distance::distance;
use crate::index::{quant, PreparedQuery, SearchOutput, SearchParams};
use crate::types::Space;

/// Rows of one source with their tombstones, graph, payload index and codes.
pub(super) trait SearchSource {
    /// The graph covers only a prefix of the rows and grows while it is searched (a
    /// memtable's live graph). Then rows past [`Self::indexed`] are scanned besides the walk,
    /// and a short answer is never taken as proof that no more rows match.
    const GROWS: bool;
    /// A scan of every row after an unusable walk ranks rows over their int8 codes and
    /// rescores a shortlist (a memtable: a quarter of the bytes while the indexer catches up);
    /// otherwise it is an exact f32 scan.
    const CODED_FALLBACK: bool;

    /// Rows in the source (live or not).
    fn rows(&self) -> usize;
    /// Its tombstones.
    fn dead(&self) -> &Bitset;
    /// Where row `r` lives, for the state.
    fn loc(&self, r: u32) -> Loc;
    /// Rows `0..indexed` are in the graph.
    fn indexed(&self) -> usize;
    /// Whether a walk is worth trying (a memtable whose graph holds no row yet is not).
    fn walkable(&self) -> bool;
    /// The metadata postings, if the source has them (segments written before payload
    /// indexes do not).
    fn payload(&self) -> Result<Option<&PayloadIndex>, EngineError>;
    /// The walk parameters for a filter that `matches` of the rows pass.
    fn filtered_walk(&self, params: &SearchParams, matches: usize) -> SearchParams;
    /// Graph search for the accepted rows; `None` when the source has no graph.
    fn walk<F: Fn(u32) -> bool>(
        &self,
        q: &PreparedQuery,
        params: &SearchParams,
        accept: F,
    ) -> Result<Option<SearchOutput>, EngineError>;
    /// Whether the rows keep int8 codes in `space`.
    fn has_codes(&self, space: Space) -> bool;
    /// How the rows' codes in `space` are made, if they have a coder.
    fn coder(&self, space: Space) -> Option<&quant::Coder>;
    /// The query coded like these rows' codes (see [`PreparedQuery::code_for`]).
    fn query_code<'q>(&self, space: Space, q: &'q PreparedQuery) -> QueryCode<'q> {
        QueryCode::new(match self.coder(space) {
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
    ) -> Option<Result<f32, EngineError>>;
    /// Row `r`'s f32 vector.
    fn vector(&self, r: u32) -> Result<&[f32], EngineError>;
    /// Row `r`'s inverse norm (what cosine divides by).
    fn inv_norm(&self, r: u32) -> Result<f32, EngineError>;
    /// Exact distance to row `r`.
    #[inline]
    fn distance(&self, space: Space, q: &PreparedQuery, r: u32) -> Result<f32, EngineError> {
        Ok(distance(
            space,
            q.vector(),
            self.vector(r)?,
            q.inv_norm(),
            self.inv_norm(r)?,
        ))
    }
    /// Row `r`'s first-insert number (Chroma's tie order).
    fn first_seq(&self, r: u32) -> Result<u64, EngineError>;
}

/// The active or the frozen memtable.
pub(super) struct MemSource<'a> {
    pub(super) mem: &'a Memtable,
    pub(super) dead: &'a Bitset,
    pub(super) make: fn(u32) -> Loc,
    /// Rows in the graph when the query started (it grows meanwhile).
    pub(super) indexed: usize,
}

impl<'a> MemSource<'a> {
    pub(super) fn new(mem: &'a Memtable, dead: &'a Bitset, make: fn(u32) -> Loc) -> Self {
        let indexed = mem.graph().map_or(0, |g| g.indexed()).min(mem.len());
        MemSource {
            mem,
            dead,
            make,
            indexed,
        }
    }
}

impl SearchSource for MemSource<'_> {
    const GROWS: bool = true;
    const CODED_FALLBACK: bool = true;

    #[inline]
    fn rows(&self) -> usize {
        self.mem.len()
    }

    #[inline]
    fn dead(&self) -> &Bitset {
        self.dead
    }

    #[inline]
    fn loc(&self, r: u32) -> Loc {
        (self.make)(r)
    }

    fn indexed(&self) -> usize {
        self.indexed
    }

    fn walkable(&self) -> bool {
        self.indexed > 0
    }

    fn payload(&self) -> Result<Option<&PayloadIndex>, EngineError> {
        Ok(Some(self.mem.payload()))
    }

    /// The live graph's walk scores and expands rejected rows like any other: widen its beam
    /// so about `ef` rows of the filter are in it.
    fn filtered_walk(&self, params: &SearchParams, matches: usize) -> SearchParams {
        SearchParams {
            ef: filtered_ef(params.ef, params.k, matches, self.mem.len()),
            ..*params
        }
    }

    fn walk<F: Fn(u32) -> bool>(
        &self,
        q: &PreparedQuery,
        params: &SearchParams,
        accept: F,
    ) -> Result<Option<SearchOutput>, EngineError> {
        let Some(graph) = self.mem.graph() else {
            return Ok(None);
        };
        let found =
            graph
                .builder
                .search(q.vector(), params.k, params.ef, accept, &self.mem.store())?;
        Ok(Some(found))
    }

    fn has_codes(&self, _space: Space) -> bool {
        self.mem.code(0).is_some()
    }

    fn coder(&self, _space: Space) -> Option<&quant::Coder> {
        self.mem.coder()
    }

    #[inline]
    fn approx_distance(
        &self,
        space: Space,
        q: &QueryCode<'_>,
        r: u32,
    ) -> Option<Result<f32, EngineError>> {
        self.mem
            .code(r)
            .map(|c| Ok(quant::approx_distance(space, q.code(), c)))
    }

    #[inline]
    fn vector(&self, r: u32) -> Result<&[f32], EngineError> {
        Ok(self.mem.vector(r))
    }

    #[inline]
    fn inv_norm(&self, r: u32) -> Result<f32, EngineError> {
        Ok(self.mem.inv_norm(r))
    }

    #[inline]
    fn first_seq(&self, r: u32) -> Result<u64, EngineError> {
        Ok(self.mem.row(r).first_seq)
    }
}

/// One mapped segment.
pub(super) struct SegSource<'a> {
    pub(super) seg: &'a Segment,
    pub(super) dead: &'a Bitset,
    /// Its index in the state's segment list.
    pub(super) at: usize,
    /// Walk over int8 codes (then rescore in f32), or in f32 throughout.
    pub(super) quantized: bool,
}

impl SearchSource for SegSource<'_> {
    const GROWS: bool = false;
    const CODED_FALLBACK: bool = false;

    #[inline]
    fn rows(&self) -> usize {
        self.seg.rows()
    }

    #[inline]
    fn dead(&self) -> &Bitset {
        self.dead
    }

    #[inline]
    fn loc(&self, r: u32) -> Loc {
        Loc::Seg(self.at, r)
    }

    fn indexed(&self) -> usize {
        self.seg.rows()
    }

    /// [`Segment::search`] answers `None` when the segment has no graph.
    fn walkable(&self) -> bool {
        true
    }

    fn payload(&self) -> Result<Option<&PayloadIndex>, EngineError> {
        self.seg.payload()
    }

    /// Only the filter's rows are scored; the others are stepped over (ACORN-1): at 31 %
    /// selectivity a walk that scores every row it meets computes 3,800 distances, this one
    /// 2,600 (`cargo bench --bench filtered`).
    fn filtered_walk(&self, params: &SearchParams, matches: usize) -> SearchParams {
        SearchParams {
            rejected: crate::index::Rejected::TwoHop,
            ef: two_hop_ef(params.ef, matches, self.seg.rows()),
            ..*params
        }
    }

    fn walk<F: Fn(u32) -> bool>(
        &self,
        q: &PreparedQuery,
        params: &SearchParams,
        accept: F,
    ) -> Result<Option<SearchOutput>, EngineError> {
        self.seg.search(q, params, self.quantized, accept)
    }

    fn has_codes(&self, space: Space) -> bool {
        self.seg.coder(space).is_some()
    }

    fn coder(&self, space: Space) -> Option<&quant::Coder> {
        self.seg.coder(space)
    }

    #[inline]
    fn approx_distance(
        &self,
        space: Space,
        q: &QueryCode<'_>,
        r: u32,
    ) -> Option<Result<f32, EngineError>> {
        self.seg.approx_distance(space, q, r)
    }

    #[inline]
    fn vector(&self, r: u32) -> Result<&[f32], EngineError> {
        self.seg.vector(r)
    }

    #[inline]
    fn inv_norm(&self, r: u32) -> Result<f32, EngineError> {
        self.seg.inv_norm(r)
    }

    #[inline]
    fn first_seq(&self, r: u32) -> Result<u64, EngineError> {
        self.seg.first_seq(r)
    }
}

/// Beam of a two-hop filtered walk ([`crate::index::Rejected::TwoHop`]): `ef` at 30 %
/// selectivity and above, 16 % wider per 10 points below it. The filter's nearest rows lie
/// farther out in a sparser subgraph, so the same `ef` loses recall as selectivity falls
/// (real100k, `cargo bench --bench filtered`: recall@10 0.993 at 31 % with `ef`, 0.990 at 11 %
/// with `ef` and 0.993 with 1.3×).
fn two_hop_ef(ef: usize, matches: usize, rows: usize) -> usize {
    let permille = (matches * 1000 / rows.max(1)).min(1000);
    let widen_pct = 300usize.saturating_sub(permille) * 16 / 100;
    (ef.saturating_mul(100 + widen_pct) / 100).clamp(ef, crate::index::MAX_SEARCH_EF.max(ef))
}

/// Beam for a filtered walk of the live graph: wide enough that about `max(ef, 3k)` rows
/// of the filter fall inside it, capped at 8× `ef`.
fn filtered_ef(ef: usize, k: usize, matches: usize, rows: usize) -> usize {
    let want = ef.max(3 * k);
    let widened = (want * rows).div_ceil(matches.max(1));
    widened.clamp(ef, ef.saturating_mul(8))
}
