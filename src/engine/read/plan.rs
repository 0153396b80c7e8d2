//! How one source (a memtable or a segment) is searched: one dispatch over [`SearchSource`], so
//! each plan is written once for both.
//!
//! - **Filtered, planned** (the source has a payload index): the filter's candidate rows come
//!   from bitmap algebra, minus tombstones. Few candidates ([`State::plan_exact`]) are scanned
//!   exactly; many are found by a graph walk with O(1) bitmap membership as its predicate.
//! - **Unplanned** (no filter, or a segment written before payload indexes): a graph walk with
//!   tombstones and the filter evaluated per visited row inside it.
//! - Either way, rows a growing graph does not hold yet are scanned beside the walk, and a
//!   walk that cannot guarantee its k falls back to a scan of every candidate.
//!
//! Thresholds: "few" is at most [`FILTER_EXACT_MAX_ROWS`] candidates or
//! [`FILTER_EXACT_MAX_PERMILLE`] of the source's rows (`Collection::set_filter_planning`). A
//! scan ranks over int8 codes and rescores a shortlist in f32, or scores all in f32 when the
//! candidates fit the shortlist. A segment's filtered walk is the two-hop walk
//! (`Rejected::TwoHop`) with its beam widened below 30 % selectivity (`source::two_hop_ef`); a
//! memtable's live graph scores every row it meets, its beam widened up to 8×
//! (`source::filtered_ef`). Each query vector is counted by plan (`QueryPlan`,
//! `vectord_query_plan_total{plan}`).

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};

use super::source::SearchSource;
use super::{push_bounded, Candidate};
use crate::engine::segment::payload::{Candidates, RowSet};
use crate::engine::state::{Loc, State};
use crate::engine::EngineError;
use crate::filter::Filter;
use crate::index::topk::{Scored, TopK};
use crate::index::{PreparedQuery, SearchOutput, SearchParams};

/// Candidate rows up to which a filtered source is scanned instead of walking its graph.
pub(crate) const FILTER_EXACT_MAX_ROWS: usize = 4096;
/// Candidate share (per mille of the source's rows) up to which a filtered source is scanned.
/// Above it the two-hop walk costs about 1.5–2× an unfiltered query; below it the filter's rows
/// are too sparse for two hops to connect them, and recall falls (real100k, `cargo bench --bench
/// filtered`: recall@10 0.993 at 11 %, 0.988 at 6.7 %, 0.972 at 3.6 %, 0.85 at 1 %).
pub(crate) const FILTER_EXACT_MAX_PERMILLE: usize = 100;

/// Fewest coded-scan candidates rescored in f32 for a memtable's unindexed rows: tails shorter
/// than this are scored exactly; longer ones keep a margin over small `ef_search` settings,
/// where int8 rounding could otherwise push a true neighbour out of the shortlist.
const TAIL_SHORTLIST_MIN: usize = 128;

impl State {
    /// Top-k of one source for `q` among the rows passing `filter` (and `passes`, the filter
    /// evaluated on one row). Sets `walked` when a graph was walked.
    pub(super) fn search_source<S, P>(
        &self,
        src: &S,
        q: &PreparedQuery,
        params: &SearchParams,
        filter: Option<&Filter>,
        passes: &P,
        walked: &AtomicBool,
    ) -> Result<Vec<Candidate>, EngineError>
    where
        S: SearchSource,
        P: Fn(Loc) -> bool,
    {
        let mut work = 0u64;
        let index = match filter {
            Some(_) => src.payload()?,
            None => None,
        };
        let out = match (filter, index) {
            (Some(f), Some(index)) => {
                self.planned(src, q, params, index.evaluate(f), passes, walked, &mut work)?
            }
            _ => {
                walked.store(true, Ordering::Relaxed);
                self.unplanned(src, q, params, passes, &mut work)?
            }
        };
        self.counters
            .distance_computations
            .fetch_add(work, Ordering::Relaxed);
        Ok(out)
    }

    /// A filtered search planned from the payload index's candidate rows `cand`.
    #[allow(clippy::too_many_arguments)]
    fn planned<S, P>(
        &self,
        src: &S,
        q: &PreparedQuery,
        params: &SearchParams,
        mut cand: Candidates,
        passes: &P,
        walked: &AtomicBool,
        work: &mut u64,
    ) -> Result<Vec<Candidate>, EngineError>
    where
        S: SearchSource,
        P: Fn(Loc) -> bool,
    {
        let k = params.k;
        cand.rows.and_not_words(src.dead().words());
        let matches = cand.rows.count();
        let exact = cand.exact;
        let check = |r: u32| exact || passes(src.loc(r));
        if src.walkable() && !self.plan_exact(matches, src.rows()) {
            walked.store(true, Ordering::Relaxed);
            let indexed = src.indexed();
            let accept =
                |r: u32| (!S::GROWS || (r as usize) < indexed) && cand.rows.contains(r) && check(r);
            if let Some(found) = src.walk(q, &src.filtered_walk(params, matches), accept)? {
                *work += found.stats.distance_computations;
                if trusted::<S>(&found, k) {
                    let tail = if S::GROWS { k } else { 0 };
                    let mut out = Vec::with_capacity(found.results.len() + tail);
                    for s in found.results {
                        out.push(candidate(src, s.distance, s.row)?);
                    }
                    if S::GROWS && indexed < src.rows() {
                        // Rows the graph does not hold yet.
                        let mut tail = cand.rows.clone();
                        tail.and_not_words(&prefix_words(indexed));
                        out.extend(self.scan_set(src, q, k, params.ef, &tail, &check, work)?);
                    }
                    return Ok(out);
                }
                self.counters
                    .exact_fallbacks
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        self.scan_set(src, q, k, params.ef, &cand.rows, &check, work)
    }

    /// A search with tombstones and `passes` applied per visited row inside the walk.
    fn unplanned<S, P>(
        &self,
        src: &S,
        q: &PreparedQuery,
        params: &SearchParams,
        passes: &P,
        work: &mut u64,
    ) -> Result<Vec<Candidate>, EngineError>
    where
        S: SearchSource,
        P: Fn(Loc) -> bool,
    {
        let k = params.k;
        let dead = src.dead();
        let indexed = src.indexed();
        let live = |r: u32| !dead.get(r) && passes(src.loc(r));
        let mut out = Vec::new();
        // Rows from here on are scanned: those a growing graph does not hold yet, or every row
        // when the walk could not be used.
        let mut scan_from = indexed;
        let found = if src.walkable() {
            src.walk(q, params, |r: u32| {
                (!S::GROWS || (r as usize) < indexed) && live(r)
            })?
        } else {
            None
        };
        match found {
            Some(found) => {
                *work += found.stats.distance_computations;
                if trusted::<S>(&found, k) {
                    out.reserve(found.results.len());
                    for s in found.results {
                        out.push(candidate(src, s.distance, s.row)?);
                    }
                } else {
                    self.counters
                        .exact_fallbacks
                        .fetch_add(1, Ordering::Relaxed);
                    scan_from = 0;
                }
            }
            None => scan_from = 0,
        }
        let rows = src.rows();
        if scan_from < rows {
            let coded = S::CODED_FALLBACK && src.has_codes(self.space);
            let shortlist = params.ef.max(k).max(TAIL_SHORTLIST_MIN);
            let range = scan_from as u32..rows as u32;
            out.extend(self.scan(src, q, k, shortlist, coded, range, &live, work)?);
        }
        Ok(out)
    }

    /// Top-k among the candidate `set` of one source (rows failing `check` skipped). Up to
    /// `shortlist_for(ef, k)` rows are scored in f32 directly, so the answer is exact; above
    /// that, the rows are ranked over their int8 codes (a quarter of the bytes) and the
    /// shortlist is rescored in f32.
    #[allow(clippy::too_many_arguments)]
    fn scan_set<S, C>(
        &self,
        src: &S,
        q: &PreparedQuery,
        k: usize,
        ef: usize,
        set: &RowSet,
        check: &C,
        work: &mut u64,
    ) -> Result<Vec<Candidate>, EngineError>
    where
        S: SearchSource,
        C: Fn(u32) -> bool,
    {
        let shortlist = shortlist_for(ef, k);
        let coded = set.count() > shortlist && src.has_codes(self.space);
        self.scan(src, q, k, shortlist, coded, set.iter(), check, work)
    }

    /// Top-k among `rows` of one source passing `check`: with `coded`, ranked over their int8
    /// codes and the `shortlist` best rescored in f32 (exact distances); otherwise scored in
    /// f32 directly.
    #[allow(clippy::too_many_arguments)]
    fn scan<S, I, C>(
        &self,
        src: &S,
        q: &PreparedQuery,
        k: usize,
        shortlist: usize,
        coded: bool,
        rows: I,
        check: &C,
        work: &mut u64,
    ) -> Result<Vec<Candidate>, EngineError>
    where
        S: SearchSource,
        I: Iterator<Item = u32>,
        C: Fn(u32) -> bool,
    {
        let space = self.space;
        let mut top: BinaryHeap<Candidate> = BinaryHeap::with_capacity(k + 1);
        if coded {
            let mut coarse = TopK::new(shortlist);
            let qcode = src.query_code(space, q);
            for r in rows {
                if !check(r) {
                    continue;
                }
                *work += 1;
                match src.approx_distance(space, &qcode, r) {
                    Some(d) => coarse.push(Scored {
                        distance: d?,
                        row: r,
                    }),
                    // A row without a code (none today: codes are all or nothing) is scored
                    // exactly.
                    None => {
                        let d = src.distance(space, q, r)?;
                        push_bounded(&mut top, k, candidate(src, d, r)?);
                    }
                }
            }
            for s in coarse.into_sorted() {
                *work += 1;
                let d = src.distance(space, q, s.row)?;
                push_bounded(&mut top, k, candidate(src, d, s.row)?);
            }
        } else {
            for r in rows {
                if !check(r) {
                    continue;
                }
                *work += 1;
                let d = src.distance(space, q, r)?;
                if top.len() == k && top.peek().is_some_and(|w| d > w.distance) {
                    continue;
                }
                push_bounded(&mut top, k, candidate(src, d, r)?);
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
}

/// Whether a walk's answer is final. A growing graph (a memtable's) gives no reachability
/// guarantee and is extended while it is searched, so a short answer is never taken as proof
/// that no more rows match: the memtable is small, scan it instead.
#[inline]
fn trusted<S: SearchSource>(found: &SearchOutput, k: usize) -> bool {
    found.complete && (!S::GROWS || found.results.len() >= k)
}

/// Row `r` of `src` at `distance`, as a result candidate.
#[inline]
fn candidate<S: SearchSource>(src: &S, distance: f32, r: u32) -> Result<Candidate, EngineError> {
    Ok(Candidate {
        distance,
        first_seq: src.first_seq(r)?,
        loc: src.loc(r),
    })
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
