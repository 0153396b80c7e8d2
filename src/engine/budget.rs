//! [`MemtableBudget`]: one bound on the memtable memory of every collection in a process.
//!
//! The write stall of each collection bounds its own rows in memory (2 memtable limits), which
//! says nothing about the process once it holds 1,000 collections. The budget adds the bytes
//! held by every collection's active and frozen memtables (each collection charges its
//! [`BudgetShare`] under its state lock whenever its memtables change, from
//! `Memtable::bytes`; dropping the collection gives its bytes back). From 7/8 of the limit
//! (`MemtableBudget::relieve`) the largest active memtables of any collection are asked to
//! flush until what is being flushed would bring usage back to 3/4; at the limit, writers that
//! add rows wait exactly like a collection's own write stall (then 429; deletes never wait),
//! whichever collection they write to. Usage and limit are the gauges
//! `vectord_memtable_budget_bytes{kind="used"|"limit"}`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Default budget: 2 GiB. A fixed figure rather than a share of RAM because containers often
/// report the host's memory, and so that the server behaves the same on every host; 2 GiB
/// leaves eight 128-d collections at their own stall bound (2 × 65,536 rows, ~256 MiB each)
/// while 1,000 collections can no longer each hold that much. Smaller machines set
/// `--memtable-budget-mb` to about a quarter of their memory.
pub const DEFAULT_MEMTABLE_BUDGET_BYTES: usize = 2048 << 20;

/// Flushes start once usage passes this share of the limit (7/8, as RocksDB's write buffer
/// manager does), so writers rarely reach the limit itself and stall.
const FLUSH_AT_NUM: usize = 7;
const FLUSH_AT_DEN: usize = 8;

/// A collection whose memtable the budget can ask to be flushed.
pub(crate) trait FlushTarget: Send + Sync + 'static {
    /// Asks the background pool to flush this collection's active memtable soon.
    fn request_flush(&self);
}

/// The process-wide (per catalog) bound on memtable bytes. Shared as `Arc`.
#[derive(Debug)]
pub struct MemtableBudget {
    limit: AtomicUsize,
    used: AtomicUsize,
    members: Mutex<Vec<Weak<BudgetShare>>>,
    /// Writers waiting for room wait on `room` with this mutex.
    waiting: Mutex<()>,
    room: Condvar,
}

/// One collection's part of a budget: the bytes of its active and frozen memtables, last
/// charged. Dropping it (the collection closes or is deleted) gives its bytes back.
pub(crate) struct BudgetShare {
    budget: Arc<MemtableBudget>,
    active: AtomicUsize,
    frozen: AtomicUsize,
    target: Weak<dyn FlushTarget>,
}

impl std::fmt::Debug for BudgetShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetShare")
            .field("active", &self.active.load(Ordering::Relaxed))
            .field("frozen", &self.frozen.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl MemtableBudget {
    /// A budget of `limit_bytes` (at least 1).
    pub fn new(limit_bytes: usize) -> Arc<MemtableBudget> {
        Arc::new(MemtableBudget {
            limit: AtomicUsize::new(limit_bytes.max(1)),
            used: AtomicUsize::new(0),
            members: Mutex::new(Vec::new()),
            waiting: Mutex::new(()),
            room: Condvar::new(),
        })
    }

    /// A budget that never stalls (a collection opened outside a catalog).
    pub fn unlimited() -> Arc<MemtableBudget> {
        MemtableBudget::new(usize::MAX)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes the limit; a lower one starts flushes at once, a higher one wakes writers.
    pub fn set_limit(&self, limit_bytes: usize) {
        self.limit.store(limit_bytes.max(1), Ordering::Relaxed);
        self.relieve();
        self.notify();
    }

    /// Estimated bytes held by the members' active and frozen memtables.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether writers that add rows must wait.
    pub(crate) fn over(&self) -> bool {
        self.used() >= self.limit()
    }

    /// Adds a collection; its bytes count from its first [`BudgetShare::charge`].
    pub(crate) fn join(self: &Arc<Self>, target: Weak<dyn FlushTarget>) -> Arc<BudgetShare> {
        let share = Arc::new(BudgetShare {
            budget: Arc::clone(self),
            active: AtomicUsize::new(0),
            frozen: AtomicUsize::new(0),
            target,
        });
        let mut members = self.members.lock();
        members.retain(|m| m.strong_count() > 0);
        members.push(Arc::downgrade(&share));
        share
    }

    /// Once usage passes 7/8 of the limit, asks the largest active memtables to flush until
    /// what is being flushed (frozen memtables, and those asked now) would bring usage back to
    /// 3/4 of it. Memtables already frozen count as on their way out, so repeated calls while
    /// a flush runs do not pile flushes of small memtables on top of it. O(collections).
    pub(crate) fn relieve(&self) {
        let (used, limit) = (self.used(), self.limit());
        if used < limit / FLUSH_AT_DEN * FLUSH_AT_NUM {
            return;
        }
        let goal = used.saturating_sub(limit / 4 * 3);
        let mut freeing = 0usize;
        let mut candidates: Vec<(usize, Arc<BudgetShare>)> = Vec::new();
        {
            let members = self.members.lock();
            for share in members.iter().filter_map(Weak::upgrade) {
                freeing += share.frozen.load(Ordering::Relaxed);
                let active = share.active.load(Ordering::Relaxed);
                if active > 0 {
                    candidates.push((active, share));
                }
            }
        }
        candidates.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
        for (active, share) in candidates {
            if freeing >= goal {
                break;
            }
            if let Some(target) = share.target.upgrade() {
                target.request_flush();
                freeing += active;
            }
        }
    }

    /// Waits until usage falls under the limit or `until` passes. Returns whether there is
    /// room.
    pub(crate) fn wait_for_room(&self, until: Instant) -> bool {
        let mut g = self.waiting.lock();
        if !self.over() {
            return true;
        }
        self.room.wait_until(&mut g, until);
        !self.over()
    }

    /// Wakes writers waiting for room.
    fn notify(&self) {
        let _g = self.waiting.lock();
        self.room.notify_all();
    }
}

impl BudgetShare {
    /// Records the collection's memtable bytes now. Callers hold the collection's state lock,
    /// so charges of one collection never interleave. Wakes waiting writers when usage fell.
    pub(crate) fn charge(&self, active: usize, frozen: usize) {
        let old = self.active.swap(active, Ordering::Relaxed)
            + self.frozen.swap(frozen, Ordering::Relaxed);
        let new = active + frozen;
        if new >= old {
            self.budget.used.fetch_add(new - old, Ordering::Relaxed);
        } else {
            self.budget.used.fetch_sub(old - new, Ordering::Relaxed);
            self.budget.notify();
        }
    }

    /// The budget this share counts against.
    pub(crate) fn budget(&self) -> &Arc<MemtableBudget> {
        &self.budget
    }
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        self.charge(0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Target {
        asked: AtomicUsize,
    }

    impl FlushTarget for Target {
        fn request_flush(&self) {
            self.asked.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Over 7/8 of the limit the largest active memtables are asked to flush first, and only
    /// as many as needed; frozen memtables count as already leaving; dropping a share gives
    /// its bytes back.
    #[test]
    fn relieve_asks_the_largest_and_drop_releases() {
        let budget = MemtableBudget::new(1000);
        let targets: Vec<Arc<Target>> = (0..3)
            .map(|_| {
                Arc::new(Target {
                    asked: AtomicUsize::new(0),
                })
            })
            .collect();
        let shares: Vec<Arc<BudgetShare>> = targets
            .iter()
            .map(|t| {
                let w: Weak<dyn FlushTarget> = Arc::downgrade(t) as Weak<dyn FlushTarget>;
                budget.join(w)
            })
            .collect();
        shares[0].charge(100, 0);
        shares[1].charge(500, 0);
        shares[2].charge(300, 0);
        assert_eq!(budget.used(), 900);
        assert!(!budget.over());
        // 900 ≥ 875: bring it to 750, so 150 must go: the largest (500) alone is enough.
        budget.relieve();
        let asked: Vec<usize> = targets
            .iter()
            .map(|t| t.asked.load(Ordering::Relaxed))
            .collect();
        assert_eq!(asked, vec![0, 1, 0]);
        // Its flush froze it: no new request while it is on its way out.
        shares[1].charge(0, 500);
        budget.relieve();
        assert_eq!(targets[1].asked.load(Ordering::Relaxed), 1);
        assert_eq!(targets[2].asked.load(Ordering::Relaxed), 0);
        shares[1].charge(200, 500);
        assert!(budget.over());
        drop(shares);
        assert_eq!(budget.used(), 0);
        assert!(!budget.over());
    }
}
