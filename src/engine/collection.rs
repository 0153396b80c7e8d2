//! [`Collection`]: one durable collection — its MANIFEST, its WAL, its memtable and its
//! memory-mapped segments. This file is the handle (create / open, the public surface,
//! stats); each concern behind it has a file of its own:
//!
//! - [`manifest`]: the MANIFEST and the folder layout it names.
//! - [`write`]: Write path: validate → take the writer lock → resolve the batch against the
//!   current state → append one WAL record → apply to the state (visible) → release the lock →
//!   wait for group commit → acknowledge. Resolving and applying under one lock makes log order
//!   equal apply order, so replay rebuilds exactly what readers saw. Writers that outrun the
//!   flushes stall there too.
//! - [`flush`]: freeze the memtable (readers keep it) and rotate the WAL under the writer
//!   lock, write the segment files without locks, then under the writer lock install the
//!   segment, persist changed tombstones, replace the MANIFEST atomically, and delete the WAL
//!   files it covers. A crash at any point leaves either the old MANIFEST (and all WAL files)
//!   or the new one.
//! - [`recovery`]: rebuilding memory from the files (open), and log recovery: a failed WAL
//!   sync poisons the log. The writer that hit it (or the next write, or the background
//!   thread, with backoff) then cuts the WAL files back to the last successful sync, rebuilds
//!   the memory from the files as an open would, swaps it in and accepts writes again — so
//!   memory matches disk, and no record whose write failed comes back on replay.
//! - [`compaction`]: the size-tiered merge policy and the merge; [`purge`] runs one on demand.
//! - [`turn`]: what the shared background pool runs for the collection.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::background::{self, Background};
use super::budget::{BudgetShare, FlushTarget, MemtableBudget};
use super::online_copy::{self, PendingSnapshot};
use super::segment::{self, Segment};
use super::state::State;
use super::wal::{Durability, WalWriter};
use super::{CollectionConfig, EngineError, HnswParams};
use crate::fsutil::{create_dir_durable, DirLock};
use crate::index::BuildParams;
use crate::types::{
    ApplyOutcome, GetRequest, GetResult, QueryRequest, QueryResult, SourcePosition, WriteBatch,
};

mod compaction;
mod flush;
mod manifest;
mod purge;
mod recovery;
#[cfg(test)]
mod testing;
mod turn;
mod write;

use compaction::Compactions;
use flush::Flushes;
use manifest::{
    remove_unpublished, write_manifest, Manifest, MANIFEST, MANIFEST_VERSION, SEGMENTS_DIR, WAL_DIR,
};
use recovery::{load, Loaded, Recovery};
use write::WriteStall;

pub use purge::PurgeReport;
pub use recovery::wal_recoveries_total;
pub use write::{write_stalls_total, DEFAULT_WRITE_STALL};

/// Default memtable size (rows) at which it is flushed. Large, because a flush costs a graph
/// build that compaction redoes when it merges segments: at 1536-d this is 384 MiB of vectors
/// (plus the graph's codes of the indexed ones), and writers only wait for a flush at 2×
/// ([`STALL_FACTOR`]) or at the shared memtable budget.
pub const DEFAULT_MEMTABLE_ROWS: usize = 65_536;

/// A durable collection of records. `Send + Sync`: share it as `Arc<Collection>`. Every method
/// may block (fsync, CPU-bound search), so async callers run them on blocking threads.
///
/// The shared background pool (`engine/background.rs`) builds the memtable graph and flushes
/// the memtable once it passes its size limit, so the write that crosses the limit is not the
/// one that pays for the flush. Dropping the handle waits for a running turn of that work (an
/// in-progress flush completes first); [`Collection::close`] also flushes.
#[derive(Debug)]
pub struct Collection {
    inner: Arc<Inner>,
}

/// How far past its limit the memtable may grow while a background flush catches up: the
/// graph of a memtable this big is built with room for it (no regrowth).
const MEMTABLE_HARD_FACTOR: usize = 4;

impl Collection {
    /// Creates an empty collection in `dir` (created if missing; must not hold a collection).
    /// Its memtables count against no shared budget (see [`Collection::create_with_budget`]).
    pub fn create(dir: &Path, config: CollectionConfig) -> Result<Collection, EngineError> {
        Self::create_with_budget(dir, config, &MemtableBudget::unlimited())
    }

    /// As [`Collection::create`], with the collection's memtables counted against `budget`
    /// (shared by the catalog's collections).
    pub fn create_with_budget(
        dir: &Path,
        config: CollectionConfig,
        budget: &Arc<MemtableBudget>,
    ) -> Result<Collection, EngineError> {
        Ok(Self::start(Inner::create(dir, config)?, budget))
    }

    /// Opens the collection in `dir`: maps its segments (no index is rebuilt) and replays the
    /// WAL records after the last flush. A torn WAL tail (a write cut by a crash, never
    /// acknowledged) is truncated; any other damage fails with the file and offset.
    pub fn open(dir: &Path) -> Result<Collection, EngineError> {
        Self::open_with_budget(dir, &MemtableBudget::unlimited())
    }

    /// As [`Collection::open`], with the memtables (replayed rows included) counted against
    /// `budget`.
    pub fn open_with_budget(
        dir: &Path,
        budget: &Arc<MemtableBudget>,
    ) -> Result<Collection, EngineError> {
        Ok(Self::start(Inner::open(dir)?, budget))
    }

    fn start(mut inner: Inner, budget: &Arc<MemtableBudget>) -> Collection {
        let inner = Arc::new_cyclic(|me| {
            inner.me = me.clone();
            let target: Weak<dyn FlushTarget> = me.clone();
            inner.share = Some(budget.join(target));
            inner
        });
        inner.charge(&inner.state.read());
        budget.relieve();
        // Rows replayed from the WAL have no graph yet: index them (and let the idle flush write
        // them out) now, not only after the next write arrives.
        if inner.state.read().active_rows() > 0 {
            {
                let mut st = inner.background.state.lock();
                st.index_requested = true;
                // Counts as the last write for the idle flush's quiet period.
                st.last_write = Some(Instant::now());
            }
            inner.schedule();
        }
        Collection { inner }
    }

    /// The folder holding the collection.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Space and HNSW parameters.
    pub fn config(&self) -> CollectionConfig {
        self.inner.manifest.lock().config
    }

    /// The embedding dimension, fixed by the first write that stored a vector.
    pub fn dimension(&self) -> Option<usize> {
        self.inner.state.read().dimension()
    }

    /// Number of live records.
    pub fn count(&self) -> u64 {
        self.inner.state.read().len() as u64
    }

    /// Number of published segments.
    pub fn segment_count(&self) -> usize {
        self.inner.state.read().segments().len()
    }

    /// The change-feed position stored with the newest batch that carried one.
    pub fn source_position(&self) -> Option<SourcePosition> {
        self.inner.source_position.read().clone()
    }

    /// Sets the memtable size (rows) at which the memtable is flushed.
    pub fn set_memtable_rows(&self, rows: usize) {
        self.inner
            .memtable_rows
            .store(rows.max(1), Ordering::Relaxed);
    }

    /// Chooses how segment graphs are walked: over int8 codes with exact f32 rescoring of the
    /// `ef_search` best candidates (default), or in f32 throughout (for comparisons).
    pub fn set_quantized_search(&self, on: bool) {
        self.inner
            .state
            .read()
            .quantized
            .store(on, Ordering::Relaxed);
    }

    /// Sets when the filter planner scans a source's candidate rows exactly instead of walking
    /// its graph: at most `max_rows` candidates, or at most `max_permille` ‰ of the source's
    /// rows (defaults: 4,096 and 150‰). `(0, 0)` forces filtered graph walks (tests, tuning).
    pub fn set_filter_planning(&self, max_rows: usize, max_permille: usize) {
        let st = self.inner.state.read();
        st.filter_exact_rows.store(max_rows, Ordering::Relaxed);
        st.filter_exact_permille
            .store(max_permille, Ordering::Relaxed);
    }

    /// Recovers the log now if a failed WAL sync poisoned it, ignoring the retry backoff (the
    /// next write and the background thread do this by themselves). Returns whether a recovery
    /// ran; an error means the log is still refusing writes.
    pub fn recover_log(&self) -> Result<bool, EngineError> {
        self.inner.recover_log(true)
    }

    /// Replaces the HNSW parameters (the space never changes); persisted atomically.
    pub fn set_hnsw(&self, hnsw: HnswParams) -> Result<(), EngineError> {
        self.inner.set_hnsw(hnsw)
    }

    /// Applies one batch atomically and returns once it is durable. `source_position` (the
    /// pgvector sync's checkpoint) is stored in the same WAL record, so it is durable exactly
    /// when the data is.
    ///
    /// Semantics follow Chroma: add ignores ids already present (and repeats within the batch);
    /// upsert inserts or merges; update merges into existing records and ignores unknown ids;
    /// metadata merges key by key with `None` deleting a key; delete with neither ids nor filter
    /// deletes nothing.
    ///
    /// A batch that adds rows while more than `STALL_FACTOR` memtable limits of rows wait in
    /// memory for a flush first waits for room, up to the collection's write stall (see
    /// [`Collection::set_write_stall`]); then it is refused with [`EngineError::Overloaded`],
    /// not applied.
    pub fn apply(
        &self,
        batch: WriteBatch,
        source_position: Option<SourcePosition>,
    ) -> Result<ApplyOutcome, EngineError> {
        let wait = *self.inner.stall.limit.lock();
        self.apply_within(batch, source_position, wait)
    }

    /// As [`Collection::apply`], waiting up to `stall` for room (the pgvector sync waits as
    /// long as it takes: its next batch cannot overtake this one anyway).
    pub fn apply_within(
        &self,
        batch: WriteBatch,
        source_position: Option<SourcePosition>,
        stall: Duration,
    ) -> Result<ApplyOutcome, EngineError> {
        let adds_rows = match &batch {
            WriteBatch::Add(r) => !r.is_empty(),
            WriteBatch::Upsert(r) => !r.is_empty(),
            WriteBatch::Update(r) => !r.is_empty(),
            WriteBatch::Delete(_) => false,
        };
        if adds_rows {
            self.inner.wait_for_room(stall)?;
        }
        let (outcome, memtable_rows) = self.inner.apply(batch, source_position)?;
        let limit = self.inner.memtable_rows.load(Ordering::Relaxed);
        {
            let mut st = self.inner.background.state.lock();
            st.index_requested = true;
            st.last_write = Some(Instant::now());
            st.flush_requested |= memtable_rows >= limit;
        }
        self.inner.schedule();
        if adds_rows {
            // Near the shared budget, the largest memtables (of any collection) flush first.
            if let Some(share) = &self.inner.share {
                share.budget().relieve();
            }
        }
        Ok(outcome)
    }

    /// Asks the background pool to run the compaction policy once, as it does after each
    /// flush. The catalog calls it for every collection it opens: segments a crash loop
    /// (compactions killed before they finished) or a stop before a merge left behind are
    /// then merged without waiting for the next flush. `open` alone does not, so callers that
    /// reopen a folder see the segments they left.
    pub fn request_compaction_check(&self) {
        if self.inner.planned_compaction().is_none() {
            return;
        }
        {
            let mut st = self.inner.background.state.lock();
            st.compact_requested = true;
            // Makes the pool queue a turn; with nothing to index it only runs the check.
            st.index_requested = true;
        }
        self.inner.schedule();
    }

    /// Makes every flush of this collection fail until the returned guard is dropped, so tests
    /// can watch writes stall and be refused; the background retries every second meanwhile.
    /// The guard keeps the collection's memory (and folder lock) alive: drop it first.
    #[doc(hidden)]
    pub fn hold_flushes(&self) -> FlushHold {
        self.inner.flushes.holds.fetch_add(1, Ordering::SeqCst);
        FlushHold {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Sets how long a write waits for room when rows pile up faster than they are flushed
    /// (default [`DEFAULT_WRITE_STALL`]).
    pub fn set_write_stall(&self, wait: Duration) {
        *self.inner.stall.limit.lock() = wait;
    }

    /// Writes the memtable out as a segment and drops the WAL it covers, now. Returns whether a
    /// segment was written.
    pub fn flush(&self) -> Result<bool, EngineError> {
        self.inner.flush()
    }

    /// Records by ids and/or filter, in insertion order, then `offset` and `limit`.
    pub fn get(&self, req: &GetRequest) -> Result<GetResult, EngineError> {
        let r = self.inner.state.read().get(req);
        self.note_damage(r)
    }

    /// The `n_results` nearest records per query vector among those passing `ids` and the
    /// filter, nearest first.
    pub fn query(&self, req: &QueryRequest) -> Result<QueryResult, EngineError> {
        let ef = self.inner.manifest.lock().config.hnsw.ef_search as usize;
        let r = self.inner.state.read().query(req, ef);
        self.note_damage(r)
    }

    /// The first damage a read or scrub found in this collection's files (checksums are verified
    /// per block on first touch, so damage can surface after open). The catalog lists such a
    /// collection as failed, with this message, next to those that failed to open.
    pub fn damage(&self) -> Option<String> {
        self.inner.damage.lock().clone()
    }

    /// Remembers a corruption error on its way out, so health checks and metrics report it.
    fn note_damage<T>(&self, r: Result<T, EngineError>) -> Result<T, EngineError> {
        if let Err(e @ EngineError::Corrupt { .. }) = &r {
            let mut d = self.inner.damage.lock();
            if d.is_none() {
                tracing::error!(collection = %self.inner.dir.display(), error = %e, "collection data is corrupt");
                *d = Some(e.to_string());
            }
        }
        r
    }

    /// Ids of all live records (reconciliation and tests; O(n)).
    pub fn ids(&self) -> Result<HashSet<String>, EngineError> {
        self.inner.state.read().live_ids()
    }

    /// Sizes and counts for metrics and status pages.
    pub fn stats(&self) -> CollectionStats {
        self.inner.stats()
    }

    /// Reads every block of every segment file and checks its checksum (a scrub). Reads verify
    /// blocks on first touch anyway; this finds damage in data nobody has read yet.
    pub fn verify(&self) -> Result<(), EngineError> {
        let segments: Vec<Arc<Segment>> = self
            .inner
            .state
            .read()
            .segments()
            .iter()
            .map(|s| Arc::clone(&s.seg))
            .collect();
        let r = segments.iter().try_for_each(|s| s.verify_all());
        self.note_damage(r)
    }

    /// Merges all segments into one without dead rows and swaps it in atomically while reads
    /// and writes go on (the largest clean segment's graph is extended, otherwise rebuilt).
    /// Returns whether anything was rewritten. The background runs the size-tiered policy of
    /// [`compaction::plan_compaction`] by itself after each flush.
    pub fn compact(&self) -> Result<bool, EngineError> {
        let _one = self.inner.compactions.one.lock();
        self.inner.compact(&self.inner.shutdown, None)
    }

    /// Starts an online snapshot of this collection into `dest` (a new folder, ideally on the
    /// same file system so segment files are hard-linked). Writers wait only while links are
    /// made; [`PendingSnapshot::finish`] then copies the WAL tail without blocking anyone.
    pub fn snapshot_into(&self, dest: &Path) -> Result<PendingSnapshot, EngineError> {
        if dest.exists() {
            return Err(EngineError::io(
                "snapshot",
                dest,
                io::Error::new(io::ErrorKind::AlreadyExists, "snapshot folder exists"),
            ));
        }
        let _writer = self.inner.writer.lock();
        let manifest = self.inner.manifest.lock().clone();
        let segments_dir = self.inner.dir.join(SEGMENTS_DIR);
        let dest_segments = dest.join(SEGMENTS_DIR);
        create_dir_durable(&dest_segments)?;
        for entry in &manifest.segments {
            let name = segment::dir_name(entry.id);
            let src = segments_dir.join(&name);
            let files = online_copy::segment_files(&src, entry.tombstones.as_deref())?;
            online_copy::link_files(&src, &dest_segments.join(&name), &files)?;
        }
        let wal = online_copy::open_wal_files(&self.inner.dir.join(WAL_DIR))?;
        // The WAL lengths include records appended but maybe not yet synced; `finish` waits
        // until the last of them is durable, so a record whose sync fails (and which recovery
        // then drops) is never in a snapshot.
        let ticket = _writer.ticket();
        let manifest = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| EngineError::Internal(format!("encoding the MANIFEST: {e}")))?;
        let inner = Arc::clone(&self.inner);
        Ok(PendingSnapshot {
            dest: dest.to_path_buf(),
            manifest,
            wal,
            wal_dir_name: WAL_DIR,
            durable: Box::new(move || inner.durability.wait(ticket, &inner.writer)),
        })
    }

    /// Flushes the memtable so the next open maps everything instead of replaying the WAL, then
    /// stops the background thread.
    pub fn close(self) -> Result<(), EngineError> {
        self.inner.flush().map(|_| ())
    }

    /// Tells background work the process is stopping: a flush the background started gives
    /// up at its next graph step (its rows stay in the WAL and are indexed after the next
    /// open), and compactions stop, so a shutdown does not wait for minutes of graph building.
    /// Explicit [`Collection::flush`] and [`Collection::close`] still complete.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.store(true, Ordering::Relaxed);
    }
}

/// Keeps a collection's flushes failing while alive (see [`Collection::hold_flushes`]).
#[doc(hidden)]
#[derive(Debug)]
pub struct FlushHold {
    inner: Arc<Inner>,
}

impl Drop for FlushHold {
    fn drop(&mut self) {
        self.inner.flushes.holds.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Collection {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::Relaxed);
        background::shutdown(&self.inner.background);
        if let Some(compactor) = self.inner.compactions.thread.lock().take() {
            let _ = compactor.join();
        }
    }
}

/// The collection proper; [`Collection`] is its handle plus the background thread.
///
/// Lock order, wherever several are held: `flushes.one` → `writer` → `state` → `manifest`
/// (and `compactions.one` before any of them). The groups below say who owns what: the write
/// path (`writer`, `state`, `stall`), the flush (`flushes`), compaction (`compactions`) and
/// log recovery (`recovery`); the rest is shared by all of them.
#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    _lock: DirLock,
    state: RwLock<State>,
    writer: Mutex<WalWriter>,
    durability: Arc<Durability>,
    /// Everything the next MANIFEST needs that the state does not hold. Every MANIFEST write
    /// happens under this lock (taken after `writer` and `state` where those are held too).
    manifest: Mutex<Manifest>,
    /// The state's graph parameters for new memtables ([`State::build_handle`]).
    build: Arc<Mutex<BuildParams>>,
    source_position: RwLock<Option<SourcePosition>>,
    memtable_rows: AtomicUsize,
    /// Scheduling state in the shared background pool.
    background: Arc<Background>,
    /// This collection itself, for the pool's queue (which must not keep it alive).
    me: Weak<Inner>,
    /// Set when the handle is dropped: long jobs (compaction) stop early.
    shutdown: AtomicBool,
    /// The first corruption found after open (see [`Collection::damage`]).
    damage: Mutex<Option<String>>,
    /// This collection's part of the shared memtable budget (set by `Collection::start`),
    /// charged under the state write lock whenever the memtables change; dropped with the
    /// collection, which gives its bytes back.
    share: Option<Arc<BudgetShare>>,
    /// Writers waiting for room (the write stall).
    stall: WriteStall,
    /// The flush's own lock and test hook.
    flushes: Flushes,
    /// Compaction's lock, thread and counters.
    compactions: Compactions,
    /// Log recovery's backoff and generation.
    recovery: Recovery,
}

impl Inner {
    /// Asks the shared background pool for a turn of this collection's indexing/flushing.
    fn schedule(&self) {
        let work: Weak<dyn background::Turn> = self.me.clone();
        background::schedule(&self.background, work);
    }

    fn create(dir: &Path, config: CollectionConfig) -> Result<Inner, EngineError> {
        config.validate()?;
        create_dir_durable(dir)?;
        let lock = DirLock::acquire(dir)?;
        let manifest = dir.join(MANIFEST);
        if manifest.exists() {
            return Err(EngineError::io(
                "create collection",
                &manifest,
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a collection already exists here",
                ),
            ));
        }
        write_manifest(dir, &Manifest::new(config))?;
        Self::open_locked(dir, lock)
    }

    fn open(dir: &Path) -> Result<Inner, EngineError> {
        let lock = DirLock::acquire(dir)?;
        Self::open_locked(dir, lock)
    }

    fn open_locked(dir: &Path, lock: DirLock) -> Result<Inner, EngineError> {
        let started = std::time::Instant::now();
        let path = dir.join(MANIFEST);
        let bytes = fs::read(&path).map_err(|e| EngineError::io("read MANIFEST", &path, e))?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupt {
                file: path.clone(),
                offset: 0,
                reason: format!("unreadable MANIFEST: {e}"),
            })?;
        if manifest.format_version != MANIFEST_VERSION {
            return Err(EngineError::Version {
                path,
                found: manifest.format_version,
                expected: MANIFEST_VERSION,
            });
        }
        let segments_dir = dir.join(SEGMENTS_DIR);
        if !segments_dir.exists() {
            create_dir_durable(&segments_dir)?;
        }
        remove_unpublished(&segments_dir, &manifest)?;
        let build = manifest
            .config
            .hnsw
            .build_params(DEFAULT_MEMTABLE_ROWS * MEMTABLE_HARD_FACTOR);
        let Loaded {
            state,
            position,
            writer,
            records,
        } = load(dir, &manifest, &[], None, build)?;
        tracing::info!(
            collection = %dir.display(),
            segments = manifest.segments.len(),
            wal_records_replayed = records,
            rows = state.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "collection opened"
        );
        let durability = Arc::clone(writer.durability());
        let build = state.build_handle();
        Ok(Inner {
            dir: dir.to_path_buf(),
            _lock: lock,
            state: RwLock::new(state),
            writer: Mutex::new(writer),
            durability,
            manifest: Mutex::new(manifest),
            build,
            source_position: RwLock::new(position),
            memtable_rows: AtomicUsize::new(DEFAULT_MEMTABLE_ROWS),
            background: Arc::default(),
            me: Weak::new(),
            shutdown: AtomicBool::new(false),
            damage: Mutex::new(None),
            share: None,
            stall: WriteStall::default(),
            flushes: Flushes::default(),
            compactions: Compactions::default(),
            recovery: Recovery::default(),
        })
    }

    /// Records the memtables' bytes in the shared budget; the caller holds the state lock
    /// (write, or read where nothing else can change it), so one collection's charges are
    /// ordered like its state changes.
    fn charge(&self, state: &State) {
        if let Some(share) = &self.share {
            share.charge(state.active_bytes(), state.frozen_bytes());
        }
    }

    /// Takes only the MANIFEST lock (never held across a graph build, nor while waiting for
    /// one) and the build parameters' own lock: not the WAL writer, which a writer can hold
    /// while it waits for the state lock, nor the state lock, which readers hold for the whole
    /// of a query. New parameters apply to the next query (`ef_search`) or the next memtable
    /// and rebuilt graph (`M`, `ef_construction`); graphs being built keep theirs.
    fn set_hnsw(&self, hnsw: HnswParams) -> Result<(), EngineError> {
        hnsw.validate()?;
        let mut m = self.manifest.lock();
        let mut next = m.clone();
        next.config.hnsw = hnsw;
        write_manifest(&self.dir, &next)?;
        *m = next;
        drop(m);
        let rows = self.memtable_rows.load(Ordering::Relaxed);
        *self.build.lock() = hnsw.build_params(rows * MEMTABLE_HARD_FACTOR);
        Ok(())
    }

    fn stats(&self) -> CollectionStats {
        // The WAL size first, and alone: writers take `writer` then `state`, so holding `state`
        // while waiting for `writer` deadlocks against a write (or flush) that holds `writer`
        // and waits for `state` — every later reader then queues behind that write.
        let wal_bytes = self.writer.lock().current_file_bytes();
        let state = self.state.read();
        let segments = state.segments();
        CollectionStats {
            records: state.len() as u64,
            segments: segments.len(),
            memtable_rows: state.active_rows(),
            segment_rows: segments.iter().map(|s| s.seg.rows()).sum(),
            tombstones: segments.iter().map(|s| s.dead.count()).sum(),
            mapped_bytes: segments.iter().map(|s| s.seg.mapped_bytes()).sum(),
            memtable_bytes: state.active_bytes(),
            unindexed_rows: state.unindexed_rows(),
            queries: state.counters.queries.load(Ordering::Relaxed),
            distance_computations: state.counters.distance_computations.load(Ordering::Relaxed),
            exact_fallbacks: state.counters.exact_fallbacks.load(Ordering::Relaxed),
            plan_graph: state.counters.plan_graph.load(Ordering::Relaxed),
            plan_filtered: state.counters.plan_filtered.load(Ordering::Relaxed),
            plan_exact: state.counters.plan_exact.load(Ordering::Relaxed),
            compactions: self.compactions.done.load(Ordering::Relaxed),
            compaction_micros: self.compactions.micros.load(Ordering::Relaxed),
            wal_bytes,
            wal_recoveries: self.recovery.generation.load(Ordering::Relaxed),
        }
    }
}

/// Sizes and counts of one collection, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectionStats {
    /// Live records.
    pub records: u64,
    /// Published segments.
    pub segments: usize,
    /// Rows in the active memtable (live or superseded).
    pub memtable_rows: usize,
    /// Rows in segments (live or tombstoned).
    pub segment_rows: usize,
    /// Tombstoned segment rows (reclaimed by compaction).
    pub tombstones: usize,
    /// Bytes of segment files mapped into memory (resident or not).
    pub mapped_bytes: usize,
    /// Approximate heap bytes of the active memtable (rows and graph).
    pub memtable_bytes: usize,
    /// Active memtable rows the background indexer has not put in the graph yet.
    pub unindexed_rows: usize,
    /// Query vectors answered since open.
    pub queries: u64,
    /// Distance computations spent on them (graph hops and exact scans).
    pub distance_computations: u64,
    /// Times a source fell back to an exact scan because its graph search could not
    /// guarantee k results.
    pub exact_fallbacks: u64,
    /// Query vectors answered by an unfiltered graph search.
    pub plan_graph: u64,
    /// Query vectors answered by a graph search with the filter applied inside it.
    pub plan_filtered: u64,
    /// Query vectors answered by an exact scan chosen up front (`ids` given, or k near the
    /// collection's size).
    pub plan_exact: u64,
    /// Compactions that rewrote segments since open.
    pub compactions: u64,
    /// Their total duration, in microseconds.
    pub compaction_micros: u64,
    /// Bytes in the current WAL file.
    pub wal_bytes: u64,
    /// Log recoveries after a failed WAL sync since open.
    pub wal_recoveries: u64,
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::types::*;

    /// `stats` (metrics, scrub, the shutdown flush) must wait for the writer lock without
    /// holding the state lock: a write holds writer then waits for state, so the reverse order
    /// deadlocked. Here a "write" holds the writer lock while `stats` runs, then takes the state
    /// lock as `apply` does; with the old order this blocks forever (the test hangs, it cannot
    /// pass), with the new one `stats` completes once the writer lock is released.
    #[test]
    fn stats_does_not_hold_the_state_lock_while_waiting_for_the_writer() {
        let (_d, c) = open(Space::L2);
        for _ in 0..20 {
            let w = c.inner.writer.lock();
            std::thread::scope(|s| {
                let stats = s.spawn(|| c.stats().records);
                // Gives `stats` time to reach its wait; a slow start only makes the round weaker.
                std::thread::sleep(Duration::from_millis(2));
                drop(c.inner.state.write());
                drop(w);
                assert_eq!(stats.join().unwrap(), 0);
            });
        }
    }
    #[test]
    fn get_orders_by_insertion_and_pages() {
        let (_d, c) = open(Space::L2);
        c.apply(
            WriteBatch::Add(
                (0..10)
                    .map(|i| rec(&format!("r{i}"), &[i as f32], &[], None))
                    .collect(),
            ),
            None,
        )
        .unwrap();
        let g = c
            .get(&GetRequest {
                ids: Some(vec!["r7".into(), "r2".into(), "r7".into(), "zz".into()]),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(g.ids, vec!["r2", "r7"]);
        assert_eq!(g.documents, None, "unrequested columns are None");
        let g = c
            .get(&GetRequest {
                offset: 3,
                limit: Some(2),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(g.ids, vec!["r3", "r4"]);
        let g = c
            .get(&GetRequest {
                limit: Some(0),
                include: Include::GET_DEFAULT,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(g.documents, Some(vec![]));
    }
    #[test]
    fn distances_follow_chroma() {
        for (space, want) in [
            (Space::L2, 5.25f32),
            (Space::Ip, 1.0 - 5.5),
            (Space::Cosine, 1.0 - 5.5 / (1.5 * 14f32.sqrt())),
        ] {
            let (_d, c) = open(space);
            c.apply(
                WriteBatch::Add(vec![rec("a", &[1.0, 2.0, 3.0], &[], None)]),
                None,
            )
            .unwrap();
            let r = c
                .query(&QueryRequest {
                    embeddings: vec![vec![0.5, 1.0, 1.0]],
                    n_results: 10,
                    ids: None,
                    filter: None,
                    include: Include::QUERY_DEFAULT,
                })
                .unwrap();
            let d = r.results[0].distances.as_ref().unwrap()[0];
            assert!((d - want).abs() < 1e-6, "{space:?}: {d} vs {want}");
        }
    }

    #[test]
    fn query_returns_nearest_first_and_respects_ids() {
        let (_d, c) = open(Space::L2);
        c.apply(
            WriteBatch::Add(
                (0..100)
                    .map(|i| rec(&format!("r{i}"), &[i as f32, 0.0], &[], None))
                    .collect(),
            ),
            None,
        )
        .unwrap();
        let q = |ids: Option<Vec<String>>, k| {
            c.query(&QueryRequest {
                embeddings: vec![vec![10.2, 0.0], vec![99.0, 0.0]],
                n_results: k,
                ids,
                filter: None,
                include: Include::QUERY_DEFAULT,
            })
            .unwrap()
        };
        let r = q(None, 3);
        assert_eq!(r.results[0].ids, vec!["r10", "r11", "r9"]);
        assert_eq!(r.results[1].ids, vec!["r99", "r98", "r97"]);
        let r = q(Some(vec!["r1".into(), "r50".into(), "missing".into()]), 5);
        assert_eq!(r.results[0].ids, vec!["r1", "r50"]);
        assert!(q(None, 0).results[0].ids.is_empty());
        // n_results far beyond any graph beam: everything, nearest first.
        let all = q(None, 1_000_000);
        assert_eq!(all.results[0].ids.len(), 100);
        assert_eq!(all.results[0].ids[0], "r10");
    }
}
