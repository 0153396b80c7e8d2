//! Reads: [`get`] (rows by id and filter, in insertion order), [`query`] (fan-out over the
//! sources and exact scoring of explicit rows) and [`plan`] (how one source is searched, over
//! the [`source::SearchSource`] trait that memtables and segments both implement).

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::state::Loc;

mod get;
mod plan;
mod query;
mod source;

#[cfg(test)]
mod filter_plan_tests;

pub(crate) use plan::{FILTER_EXACT_MAX_PERMILLE, FILTER_EXACT_MAX_ROWS};

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

    pub(super) fn exact(filtered: bool) -> QueryPlan {
        if filtered {
            QueryPlan::FilteredExact
        } else {
            QueryPlan::Exact
        }
    }

    pub(super) fn count(self) {
        PLAN_COUNTS[self as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Keeps the `k` smallest candidates in a max-heap.
pub(super) fn push_bounded(top: &mut BinaryHeap<Candidate>, k: usize, c: Candidate) {
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
pub(super) struct Candidate {
    pub(super) distance: f32,
    pub(super) first_seq: u64,
    pub(super) loc: Loc,
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
