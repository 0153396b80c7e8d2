//! One turn of the shared background pool for a collection: recover a poisoned log, build
//! the memtable graphs a step at a time, flush (on request, or once the memtable is idle),
//! and start the compactions the policy plans.
//!
//! The idle flush writes out a memtable untouched for [`IDLE_FLUSH_AFTER`], fully indexed and
//! holding at least [`IDLE_FLUSH_MIN_ROWS`] (a turn that leaves that many rows asks for a
//! wake-up then); a failed flush is retried after 1 s. Opening a collection whose WAL replay
//! left rows in the memtable schedules a turn at once (the open counts as the last write), so
//! those rows are indexed and idle-flushed without waiting for a new write.

use std::time::{Duration, Instant};

use super::compaction::{start_compaction, COMPACTION_RETRY};
use super::Inner;
use crate::engine::background;
use crate::engine::memtable::INDEX_STEP_ROWS;

/// A memtable untouched this long, fully indexed and holding at least
/// [`IDLE_FLUSH_MIN_ROWS`], is flushed: its heap goes back to the allocator, a restart maps it
/// instead of replaying the WAL, and the compaction policy can fold it into the main segment.
pub(super) const IDLE_FLUSH_AFTER: Duration = Duration::from_secs(5);

/// Smallest memtable the idle flush writes out (smaller ones wait for more writes).
pub(super) const IDLE_FLUSH_MIN_ROWS: usize = 1024;

/// Index steps per background turn: bounded so one collection with a large backlog lets the
/// others' flushes and indexing run between its turns (it re-queues itself).
pub(super) const STEPS_PER_TURN: usize = 8;

impl background::Turn for Inner {
    fn turn(&self) -> Option<Instant> {
        self.background.state.lock().index_requested = false;
        // A poisoned log comes first: until it recovers, flushes and writes are refused.
        if self.durability.failure().is_some() && self.recover_log(false).is_err() {
            return Some(Instant::now() + self.recovery_wait());
        }
        // Build the memtable graphs behind the acknowledgements, a step at a time, so a
        // shutdown or a flush request is noticed between steps.
        for step in 0.. {
            let jobs = self.state.read().index_jobs(INDEX_STEP_ROWS);
            if jobs.is_empty() {
                break;
            }
            for job in jobs {
                if let Err(e) = job.run() {
                    tracing::error!(collection = %self.dir.display(), error = %e, "graph indexing failed; rows stay exact-scanned");
                }
            }
            let mut st = self.background.state.lock();
            if st.shutdown || st.flush_requested {
                break;
            }
            if step + 1 >= STEPS_PER_TURN {
                st.index_requested = true;
                break;
            }
        }
        let (flush, last_write, compact) = {
            let mut st = self.background.state.lock();
            let retry = std::mem::take(&mut st.retry_flush);
            (
                std::mem::take(&mut st.flush_requested) || retry,
                st.last_write,
                std::mem::take(&mut st.compact_requested),
            )
        };
        // A compaction the process-wide cap put off is asked for again after a while.
        let mut compact_later = false;
        if compact {
            if let (Some(plan), Some(me)) = (self.planned_compaction(), self.me.upgrade()) {
                compact_later |= !start_compaction(&me, plan);
            }
        }
        // The idle flush: no write for IDLE_FLUSH_AFTER and the memtable fully indexed.
        let quiet = last_write.is_some_and(|t| t.elapsed() >= IDLE_FLUSH_AFTER);
        if flush || (quiet && self.idle_flush_due()) {
            match self.flush_with(true) {
                Ok(_) => {
                    if let (Some(plan), Some(me)) = (self.planned_compaction(), self.me.upgrade()) {
                        compact_later |= !start_compaction(&me, plan);
                    }
                }
                Err(e) => {
                    tracing::warn!(collection = %self.dir.display(), error = %e, "background flush failed; retrying in 1 s");
                    self.background.state.lock().retry_flush = true;
                    return Some(Instant::now() + Duration::from_secs(1));
                }
            }
        }
        let now = Instant::now();
        let retry_compaction = compact_later.then(|| {
            self.background.state.lock().compact_requested = true;
            now + COMPACTION_RETRY
        });
        // A memtable big enough for the idle flush is looked at again once writes have been
        // quiet for IDLE_FLUSH_AFTER (or, if it was not yet due, IDLE_FLUSH_AFTER from now).
        let idle_flush = (self.state.read().active_rows() >= IDLE_FLUSH_MIN_ROWS).then(|| {
            let at = last_write.map_or(now, |t| t + IDLE_FLUSH_AFTER);
            if at > now {
                at
            } else {
                now + IDLE_FLUSH_AFTER
            }
        });
        match (retry_compaction, idle_flush) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Inner {
    /// Whether an idle memtable should be flushed: big enough, fully indexed, none frozen.
    pub(super) fn idle_flush_due(&self) -> bool {
        let st = self.state.read();
        st.frozen().is_none() && st.active_rows() >= IDLE_FLUSH_MIN_ROWS && st.unindexed_rows() == 0
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::collection::testing::*;
    use crate::engine::Collection;
    use crate::types::*;

    /// The idle flush runs on the shared pool: no flush is asked for (the memtable is far below
    /// its limit), yet once writes stop the pool's wake-up writes the memtable out.
    #[test]
    fn an_idle_memtable_is_flushed_by_the_pool() {
        let (_d, c) = open(Space::L2);
        let rows = add_idle_flush_rows(&c);
        assert_eq!(c.segment_count(), 0);
        wait_for_a_segment(&c);
        assert_eq!(c.segment_count(), 1, "the idle memtable was never flushed");
        let st = c.stats();
        assert_eq!((st.memtable_rows, st.segment_rows), (0, rows));
        assert_eq!(c.count(), rows as u64);
    }

    /// A memtable replayed from the WAL (a shutdown that did not wait for its graph, or a
    /// crash) is indexed and idle-flushed after open with no further write; it used to stay
    /// unindexed, exact-scanned and in the WAL until the next write arrived.
    #[test]
    fn a_replayed_memtable_is_indexed_and_flushed_without_a_new_write() {
        let (d, c) = open(Space::L2);
        let rows = add_idle_flush_rows(&c);
        // Dropping does not flush: the rows live only in the WAL (what a crash, or a graceful
        // stop that did not wait for the graph, leaves).
        assert_eq!(c.segment_count(), 0);
        drop(c);
        let c = Collection::open(&d.path().join("c")).unwrap();
        assert_eq!(c.count(), rows as u64);
        wait_for_a_segment(&c);
        let st = c.stats();
        assert_eq!(
            c.segment_count(),
            1,
            "the replayed memtable was never flushed"
        );
        assert_eq!((st.memtable_rows, st.unindexed_rows), (0, 0));
        assert_eq!(c.count(), rows as u64);
    }
}
