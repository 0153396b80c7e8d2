//! The process-wide pool of background workers that build memtable graphs and flush
//! memtables for every open collection.
//!
//! A thread per collection would cost 1,000 OS threads (stacks, scheduler load) for 1,000 mostly
//! idle collections; instead a collection with work puts itself in one shared queue once, and
//! a few workers (one per core, at most 8) take turns. A turn does a bounded amount of work so
//! one busy collection cannot starve the others, then the collection re-queues itself.
//!
//! Lifetime: the queue holds only `Weak` handles. A worker marks the collection `running`
//! (under its state lock, only if it is not shut down) *before* upgrading, and drops the strong
//! handle before clearing `running`, so a closing collection that waits for `running` to clear
//! knows no worker still holds it (its folder lock is released when its handle drops).

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Work the pool can run a turn of.
pub(crate) trait Turn: Send + Sync + 'static {
    /// Does a bounded amount of work. Returns `Some(delay)` to be queued again after `delay`
    /// even if nothing new was requested (a failed flush retried later).
    fn turn(&self) -> Option<Duration>;
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
    /// In the pool's queue (at most once).
    queued: bool,
    /// A worker is running a turn.
    running: bool,
}

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

fn enqueue(item: Item, delay: Option<Duration>) {
    let p = pool();
    let mut q = p.queue.lock();
    match delay {
        None => q.ready.push_back(item),
        Some(d) => q.delayed.push((Instant::now() + d, item)),
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

fn next_item(p: &Pool) -> Item {
    let mut q = p.queue.lock();
    loop {
        let now = Instant::now();
        if let Some(i) = q.delayed.iter().position(|(at, _)| *at <= now) {
            let (_, item) = q.delayed.swap_remove(i);
            return item;
        }
        if let Some(item) = q.ready.pop_front() {
            return item;
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
        let item = next_item(p);
        {
            let mut st = item.bg.state.lock();
            st.queued = false;
            if st.shutdown {
                continue;
            }
            st.running = true;
        }
        let retry = match item.work.upgrade() {
            // The strong handle lives only inside this block.
            Some(work) => work.turn(),
            None => None,
        };
        let mut st = item.bg.state.lock();
        st.running = false;
        item.bg.cv.notify_all();
        if st.shutdown {
            continue;
        }
        if st.index_requested || st.flush_requested || retry.is_some() {
            st.queued = true;
            drop(st);
            enqueue(item, retry);
        }
    }
}
