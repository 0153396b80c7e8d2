//! The process-wide pool of background workers that build memtable graphs and flush
//! memtables for every open collection.
//!
//! A thread per collection would cost 1,000 OS threads (stacks, scheduler load) for 1,000 mostly
//! idle collections; instead a collection with work puts itself in one shared queue once, and
//! a few workers (`vectord-bg-N`: one per core, at least 2, at most 8) take turns. A turn does a
//! bounded amount of work so one busy collection cannot starve the others (at most 8 index
//! steps of 512 rows: `collection/turn.rs`, `memtable::INDEX_STEP_ROWS`), then the collection
//! re-queues itself. A turn that panics is caught and logged, so it can neither kill a worker
//! nor leave a closing collection waiting for it.
//!
//! A turn may also ask to be woken at an instant (the idle flush: a memtable quiet for 5 s is
//! written out; a failed flush is retried after 1 s). Each collection has at most one pending
//! wake-up, the earliest asked for; a wake-up that fires while the collection is queued or
//! running makes that turn run once more, so none is lost.
//!
//! Lifetime: the queue holds only `Weak` handles. A worker marks the collection `running`
//! (under its state lock, only if it is not shut down) *before* upgrading, and drops the strong
//! handle before clearing `running`, so a closing collection that waits for `running` to clear
//! knows no worker still holds it (its folder lock is released when its handle drops).

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Work the pool can run a turn of.
pub(crate) trait Turn: Send + Sync + 'static {
    /// Does a bounded amount of work. Returns `Some(at)` to get a turn again at `at` even if
    /// nothing new is requested by then (the idle flush, a failed flush retried later).
    fn turn(&self) -> Option<Instant>;
}

/// Per-collection scheduling state, shared by the collection and the queue.
#[derive(Debug, Default)]
pub(crate) struct Background {
    /// Flags; guarded, and waited on through `cv`.
    pub(crate) state: Mutex<BackgroundState>,
    /// Signalled when a turn ends (closing collections wait on it).
    pub(crate) cv: Condvar,
}

/// What a collection asked its background work to do, and where that work is.
#[derive(Debug, Default)]
pub(crate) struct BackgroundState {
    /// Set when the collection is closing: no new turn starts.
    pub(crate) shutdown: bool,
    /// The memtable passed its limit.
    pub(crate) flush_requested: bool,
    /// New memtable rows wait for the graph.
    pub(crate) index_requested: bool,
    /// A background flush failed and is to be retried.
    pub(crate) retry_flush: bool,
    /// Check the compaction policy once (set at open: segments left by a crash loop, or by
    /// a shutdown before a merge, would otherwise wait for the next flush).
    pub(crate) compact_requested: bool,
    /// When the last write was acknowledged (the idle flush waits for a quiet period).
    pub(crate) last_write: Option<Instant>,
    /// In the pool's ready queue (at most once).
    queued: bool,
    /// A worker is running a turn.
    running: bool,
    /// The pending wake-up, if any (its entry in the pool's delayed list).
    wake_at: Option<Instant>,
    /// A wake-up fired during a queued or running turn: run one more turn after it.
    woken: bool,
}

#[derive(Clone)]
struct Item {
    bg: Arc<Background>,
    work: Weak<dyn Turn>,
}

struct Pool {
    queue: Mutex<Queue>,
    cv: Condvar,
}

#[derive(Default)]
struct Queue {
    ready: VecDeque<Item>,
    delayed: Vec<(Instant, Item)>,
}

/// Workers in the pool: one per core, at least 2 (a flush should not wait behind a long
/// indexing turn on a 1-core machine), at most 8.
fn workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            queue: Mutex::new(Queue::default()),
            cv: Condvar::new(),
        }));
        for i in 0..workers() {
            if let Err(e) = std::thread::Builder::new()
                .name(format!("vectord-bg-{i}"))
                .spawn(move || worker(pool))
            {
                tracing::error!(error = %e, "could not start a background worker");
            }
        }
        pool
    })
}

/// Number of threads the pool runs (for tests and docs).
pub fn pool_threads() -> usize {
    workers()
}

/// Asks for a turn of `work` unless one is queued or running (a running turn re-queues itself
/// when it sees new requests), or the collection is closing.
pub(crate) fn schedule(bg: &Arc<Background>, work: Weak<dyn Turn>) {
    {
        let mut st = bg.state.lock();
        if st.shutdown || st.queued || st.running {
            return;
        }
        st.queued = true;
    }
    enqueue(
        Item {
            bg: Arc::clone(bg),
            work,
        },
        None,
    );
}

/// Puts `item` in the ready queue, or in the delayed list until `at`.
fn enqueue(item: Item, at: Option<Instant>) {
    let p = pool();
    let mut q = p.queue.lock();
    match at {
        None => q.ready.push_back(item),
        Some(at) => q.delayed.push((at, item)),
    }
    p.cv.notify_one();
}

/// Marks the collection closing and waits for a running turn to end. After this no worker
/// holds the collection and none will start a turn of it.
pub(crate) fn shutdown(bg: &Background) {
    let mut st = bg.state.lock();
    st.shutdown = true;
    while st.running {
        bg.cv.wait(&mut st);
    }
}

/// The next item to run, with its wake-up instant if it comes from the delayed list.
fn next_item(p: &Pool) -> (Item, Option<Instant>) {
    let mut q = p.queue.lock();
    loop {
        let now = Instant::now();
        if let Some(i) = q.delayed.iter().position(|(at, _)| *at <= now) {
            let (at, item) = q.delayed.swap_remove(i);
            return (item, Some(at));
        }
        if let Some(item) = q.ready.pop_front() {
            return (item, None);
        }
        match q.delayed.iter().map(|(at, _)| *at).min() {
            Some(at) => {
                p.cv.wait_until(&mut q, at);
            }
            None => p.cv.wait(&mut q),
        }
    }
}

fn worker(p: &'static Pool) {
    loop {
        let (item, wake) = next_item(p);
        {
            let mut st = item.bg.state.lock();
            match wake {
                // Superseded by an earlier wake-up, which ran a turn that re-armed as needed.
                Some(at) if st.wake_at != Some(at) => continue,
                Some(_) => {
                    st.wake_at = None;
                    if st.queued || st.running {
                        st.woken = true;
                        continue;
                    }
                }
                None => st.queued = false,
            }
            if st.shutdown {
                continue;
            }
            st.running = true;
            st.woken = false;
        }
        let wake_at = match item.work.upgrade() {
            // The strong handle lives only inside this block. A panicking turn must not take
            // the worker with it, nor leave `running` set (the collection's drop would wait
            // for it forever); the collection gets its next turn on its next write.
            Some(work) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.turn()))
                .unwrap_or_else(|_| {
                    tracing::error!(
                        "a background turn panicked; its collection resumes on its next write"
                    );
                    None
                }),
            None => None,
        };
        let mut st = item.bg.state.lock();
        st.running = false;
        item.bg.cv.notify_all();
        if st.shutdown {
            continue;
        }
        if let Some(at) = wake_at {
            // Keep only the earliest wake-up; a later one is asked for again by that turn.
            if st.wake_at.is_none_or(|w| at < w) {
                st.wake_at = Some(at);
                enqueue(item.clone(), Some(at));
            }
        }
        if (st.index_requested || st.flush_requested || st.woken) && !st.queued {
            st.queued = true;
            drop(st);
            enqueue(item, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Counts its turns; the first asks for a wake-up, later ones do not.
    struct Counter {
        turns: AtomicUsize,
    }

    impl Turn for Counter {
        fn turn(&self) -> Option<Instant> {
            let n = self.turns.fetch_add(1, Ordering::SeqCst);
            (n == 0).then(|| Instant::now() + Duration::from_millis(20))
        }
    }

    fn wait_for_turns(c: &Counter, n: usize) -> usize {
        // Polls, but asserts no timing: the bound only keeps a lost wake-up from hanging.
        let give_up = Instant::now() + Duration::from_secs(120);
        while c.turns.load(Ordering::SeqCst) < n && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(5));
        }
        c.turns.load(Ordering::SeqCst)
    }

    #[test]
    fn a_requested_wake_up_runs_another_turn_and_shutdown_stops_them() {
        let bg = Arc::new(Background::default());
        let work = Arc::new(Counter {
            turns: AtomicUsize::new(0),
        });
        let weak: Weak<dyn Turn> = Arc::downgrade(&work) as Weak<dyn Turn>;
        schedule(&bg, weak.clone());
        // The second turn comes from the wake-up alone: nothing else was scheduled.
        assert_eq!(wait_for_turns(&work, 2), 2);
        shutdown(&bg);
        let st = bg.state.lock();
        assert!(!st.running && st.shutdown);
        drop(st);
        // Closing: a new request is ignored.
        schedule(&bg, weak);
        assert!(!bg.state.lock().queued);
    }
}
