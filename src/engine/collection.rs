//! [`Collection`]: one durable collection — its MANIFEST, its WAL, its memtable and its
//! memory-mapped segments.
//!
//! Write path: validate → take the writer lock → resolve the batch against the current state →
//! append one WAL record → apply to the state (visible) → release the lock → wait for group
//! commit → acknowledge. Resolving and applying under one lock makes log order equal apply
//! order, so replay rebuilds exactly what readers saw.
//!
//! Flush: freeze the memtable (readers keep it) and rotate the WAL under the writer lock, write
//! the segment files without locks, then under the writer lock install the segment, persist
//! changed tombstones, replace the MANIFEST atomically, and delete the WAL files it covers.
//! A crash at any point leaves either the old MANIFEST (and all WAL files) or the new one.
//!
//! Log recovery: a failed WAL sync poisons the log. The writer that hit it (or the next write,
//! or the background thread, with backoff) then cuts the WAL files back to the last successful
//! sync, rebuilds the memory from the files as an open would, swaps it in and accepts writes
//! again — so memory matches disk, and no record whose write failed comes back on replay.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::background::{self, Background};
use super::bitset::Bitset;
use super::budget::{BudgetShare, FlushTarget, MemtableBudget};
use super::log::{LogEntry, LogOp};
use super::memtable::{on_build_pool, INDEX_STEP_ROWS};
use super::online_copy::{self, PendingSnapshot};
use super::segment::records::Fields;
use super::segment::records::RowIn;
use super::segment::{self, Segment};
use super::state::{SegmentSlot, State};
use super::wal::{self, Durability, DurablePoint, WalWriter, DEFAULT_ROTATE_BYTES};
use super::{CollectionConfig, EngineError, HnswParams};
use crate::fsutil::{atomic_replace, create_dir_durable, DirLock};
use crate::index::{quant, BuildParams, GraphBuilder};
use crate::types::{
    ApplyOutcome, GetRequest, GetResult, InputError, Metadata, MetadataPatch, QueryRequest,
    QueryResult, SourcePosition, Space, WriteBatch,
};

/// Flush / checkpoint rounds a purge tries before reporting that writes kept it from emptying
/// the WAL (each round is a flush or a checkpoint under the writer lock).
const PURGE_ROUNDS: usize = 5;

const MANIFEST: &str = "MANIFEST";
const WAL_DIR: &str = "wal";
const SEGMENTS_DIR: &str = "segments";
const MANIFEST_VERSION: u32 = 2;
/// Segments beyond which the smaller ones are merged even while small next to the largest
/// (each segment costs one graph search per query).
const MAX_SEGMENTS: usize = 4;
/// The smaller segments are merged into the largest once they hold this fraction of its rows
/// (1/4): each merge grows the base by ≥ 25%, so a row is rewritten O(log N) times.
const MERGE_FRACTION: usize = 4;

/// Which segments (indices into `segs`, given as `(rows, dead)`) the background should merge
/// now, if any. Size-tiered: a segment more than 30% dead (and > 1,000 dead rows) is rewritten
/// to drop them; otherwise all segments are merged into the largest once the others hold a
/// quarter of its rows; and past [`MAX_SEGMENTS`] the smaller ones are merged among
/// themselves. Merges extend the base's graph, so their cost is mostly the smaller inputs.
pub(crate) fn plan_compaction(segs: &[(usize, usize)]) -> Option<Vec<usize>> {
    if let Some(i) = segs
        .iter()
        .position(|&(rows, dead)| dead > 1000 && dead * 10 > rows * 3)
    {
        return Some(vec![i]);
    }
    if segs.len() < 2 {
        return None;
    }
    let live = |i: usize| segs[i].0 - segs[i].1.min(segs[i].0);
    let largest = (0..segs.len()).max_by_key(|&i| (live(i), std::cmp::Reverse(i)))?;
    let others: usize = (0..segs.len()).filter(|&i| i != largest).map(live).sum();
    if others * MERGE_FRACTION >= live(largest) {
        return Some((0..segs.len()).collect());
    }
    if segs.len() > MAX_SEGMENTS {
        return Some((0..segs.len()).filter(|&i| i != largest).collect());
    }
    None
}
/// Default memtable size (rows) at which it is flushed. Large, because a flush costs a graph
/// build that compaction redoes when it merges segments: at 1536-d this is 384 MiB of vectors
/// (plus the graph's codes of the indexed ones), and writers only wait for a flush at 2×
/// ([`STALL_FACTOR`]) or at the shared memtable budget.
pub const DEFAULT_MEMTABLE_ROWS: usize = 65_536;

/// One published segment, as the MANIFEST lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SegmentEntry {
    id: u64,
    rows: usize,
    /// Tombstone file inside the segment folder, when any row is dead.
    tombstones: Option<String>,
}

/// The collection's small, atomically replaced description of itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    format_version: u32,
    config: CollectionConfig,
    #[serde(default)]
    dimension: Option<usize>,
    #[serde(default)]
    segments: Vec<SegmentEntry>,
    /// WAL records up to this sequence number are in the segments (and tombstones).
    #[serde(default)]
    flushed_seq: u64,
    #[serde(default)]
    next_first_seq: u64,
    #[serde(default = "one")]
    next_segment_id: u64,
    /// Incremented by every MANIFEST write; names tombstone files so none is rewritten.
    #[serde(default)]
    generation: u64,
    /// The change-feed position as of `flushed_seq` (newer ones are in the WAL).
    #[serde(default)]
    source_position: Option<SourcePosition>,
}

fn one() -> u64 {
    1
}

impl Manifest {
    fn new(config: CollectionConfig) -> Manifest {
        Manifest {
            format_version: MANIFEST_VERSION,
            config,
            dimension: None,
            segments: Vec::new(),
            flushed_seq: 0,
            next_first_seq: 0,
            next_segment_id: 1,
            generation: 0,
            source_position: None,
        }
    }
}

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

/// A memtable untouched this long, fully indexed and holding at least
/// [`IDLE_FLUSH_MIN_ROWS`], is flushed: its heap goes back to the allocator, a restart maps it
/// instead of replaying the WAL, and the compaction policy can fold it into the main segment.
const IDLE_FLUSH_AFTER: Duration = Duration::from_secs(5);
/// Smallest memtable the idle flush writes out (smaller ones wait for more writes).
const IDLE_FLUSH_MIN_ROWS: usize = 1024;

/// How far past its limit the memtable may grow while a background flush catches up: the
/// graph of a memtable this big is built with room for it (no regrowth).
const MEMTABLE_HARD_FACTOR: usize = 4;

/// Rows in memory (active plus frozen memtable), in memtable limits, above which writes that
/// add rows stall until a flush makes room (RocksDB's write stall): writes faster than the
/// graph can be built are slowed to its pace instead of growing memory without bound.
const STALL_FACTOR: usize = 2;

/// How long a stalled write waits for room before it is refused with
/// [`EngineError::Overloaded`] (HTTP 429), unless the caller waits longer (the pgvector sync).
pub const DEFAULT_WRITE_STALL: Duration = Duration::from_secs(10);

/// Writes stalled for room since start, all collections (`vectord_write_stalls_total`).
static WRITE_STALLS: AtomicU64 = AtomicU64::new(0);
/// Writes refused after a stall, all collections (`vectord_write_stall_timeouts_total`).
static WRITE_STALL_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// Hands the heap a flush just freed (a memtable's vectors, codes and graph: hundreds of MB)
/// back to the OS. glibc keeps freed chunks in its arenas and returns only the top of each
/// heap, so without this anonymous RSS stays at its peak after the memtable is gone (the
/// 10-minute soak plateaued at ~3.4 GB).
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it has no
    // preconditions and any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Writes that stalled waiting for a flush, and those refused after waiting, since start.
pub fn write_stalls_total() -> (u64, u64) {
    (
        WRITE_STALLS.load(Ordering::Relaxed),
        WRITE_STALL_TIMEOUTS.load(Ordering::Relaxed),
    )
}

/// First wait before retrying a failed log recovery; doubled per failure up to
/// [`RECOVERY_BACKOFF_MAX`], so a dead disk is not hammered by every write.
const RECOVERY_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(100);
/// Longest wait between log recovery attempts.
const RECOVERY_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Log recoveries (after a failed WAL sync) in this process, all collections
/// (`vectord_wal_recoveries_total`).
static WAL_RECOVERIES: AtomicU64 = AtomicU64::new(0);

/// Log recoveries that succeeded in this process, all collections: each cut a collection's
/// WAL back to its last durable record after a failed sync and resumed writes without a restart.
pub fn wal_recoveries_total() -> u64 {
    WAL_RECOVERIES.load(Ordering::Relaxed)
}

/// When the next log recovery may be tried.
#[derive(Debug, Default)]
struct RecoveryBackoff {
    /// Failed attempts since the last success.
    failures: u32,
    /// Not before this instant (`None`: now).
    next_try: Option<std::time::Instant>,
}

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
        let wait = *self.inner.write_stall.lock();
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
        self.inner.flush_holds.fetch_add(1, Ordering::SeqCst);
        FlushHold {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Sets how long a write waits for room when rows pile up faster than they are flushed
    /// (default [`DEFAULT_WRITE_STALL`]).
    pub fn set_write_stall(&self, wait: Duration) {
        *self.inner.write_stall.lock() = wait;
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
    /// [`plan_compaction`] by itself after each flush.
    pub fn compact(&self) -> Result<bool, EngineError> {
        let _one = self.inner.compacting.lock();
        self.inner.compact(&self.inner.shutdown, None)
    }

    /// Removes deleted and superseded records from every file of the collection, now: flushes
    /// the memtable (or, when it holds no rows, checkpoints the WAL so its delete records are
    /// dropped), then merges every segment into one without dead rows. Everything deleted
    /// before the call is then in no WAL file, segment file or tombstone file of the folder
    /// (hard links a snapshot holds are the snapshot's). Writes go on meanwhile; what they
    /// delete later waits for the next purge or the background policy.
    pub fn purge_deleted(&self) -> Result<PurgeReport, EngineError> {
        let mut report = PurgeReport::default();
        // Everything written before the purge began must leave the WAL: the MANIFEST's
        // `flushed_seq` has to reach this record. A flush may cover only a frozen memtable left
        // by an earlier failed flush, and a write landing between an empty flush and the
        // checkpoint makes the checkpoint decline; both take another round.
        let target = self.inner.writer.lock().last_seq();
        for _ in 0..PURGE_ROUNDS {
            if self.inner.manifest.lock().flushed_seq >= target {
                break;
            }
            if self.inner.flush()? {
                report.flushed = true;
                continue;
            }
            match self.inner.checkpoint_wal()? {
                Checkpoint::Written => report.wal_checkpointed = true,
                Checkpoint::Clean | Checkpoint::Busy => {}
            }
        }
        let covered = self.inner.manifest.lock().flushed_seq;
        if covered < target {
            return Err(EngineError::Unfinished(format!(
                "the purge could not empty the WAL of records up to #{target} (covered up to \
                 #{covered}): writes kept arriving"
            )));
        }
        let before = self.stats();
        report.compacted = self.compact()?;
        let after = self.stats();
        // `compact` also answers false when it gave up (shutdown, or a log recovery meanwhile):
        // with dead rows before it, that is a purge that did not happen.
        if !report.compacted && before.tombstones > 0 {
            return Err(EngineError::Unfinished(format!(
                "the compaction of {} dead rows did not run (shutdown or log recovery)",
                before.tombstones
            )));
        }
        report.dropped_rows = before.segment_rows.saturating_sub(after.segment_rows);
        report.segments = after.segments;
        report.tombstones = after.tombstones;
        Ok(report)
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

/// What [`Collection::purge_deleted`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// The memtable was written out as a segment (and the WAL it covered deleted).
    pub flushed: bool,
    /// The memtable held no rows, and the WAL's delete records were checkpointed away.
    pub wal_checkpointed: bool,
    /// Segments were rewritten without their dead rows.
    pub compacted: bool,
    /// Segment rows the rewrite dropped (deleted or superseded versions).
    pub dropped_rows: usize,
    /// Segments after the purge.
    pub segments: usize,
    /// Dead rows left in segments: deletes that arrived while the purge ran.
    pub tombstones: usize,
}

/// Outcome of [`Inner::checkpoint_wal`].
enum Checkpoint {
    /// The WAL was rotated and every file before it deleted.
    Written,
    /// The WAL holds nothing the MANIFEST does not cover.
    Clean,
    /// The memtable holds rows (a write raced in, or a flush is under way): flush instead.
    Busy,
}

/// Keeps a collection's flushes failing while alive (see [`Collection::hold_flushes`]).
#[doc(hidden)]
#[derive(Debug)]
pub struct FlushHold {
    inner: Arc<Inner>,
}

impl Drop for FlushHold {
    fn drop(&mut self) {
        self.inner.flush_holds.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FlushTarget for Inner {
    fn request_flush(&self) {
        {
            let mut st = self.background.state.lock();
            st.flush_requested = true;
            st.index_requested = true;
        }
        self.schedule();
    }
}

impl Drop for Collection {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::Relaxed);
        background::shutdown(&self.inner.background);
        if let Some(compactor) = self.inner.compactor.lock().take() {
            let _ = compactor.join();
        }
    }
}

/// Index steps per background turn: bounded so one collection with a large backlog lets the
/// others' flushes and indexing run between its turns (it re-queues itself).
const STEPS_PER_TURN: usize = 8;

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

/// Compactions running at once in the process. Each holds a merged graph's codes in memory
/// and competes for the build pool; a restart of a server whose collections all need a merge
/// (after a crash loop) must not start a thousand of them together.
const MAX_RUNNING_COMPACTIONS: usize = 2;
static RUNNING_COMPACTIONS: AtomicUsize = AtomicUsize::new(0);
/// When a compaction put off by [`MAX_RUNNING_COMPACTIONS`] is asked for again.
const COMPACTION_RETRY: Duration = Duration::from_secs(5);

/// Gives a running-compaction slot back when the compaction thread ends (or fails to start).
struct CompactionSlot;

impl Drop for CompactionSlot {
    fn drop(&mut self) {
        RUNNING_COMPACTIONS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs a compaction on its own thread (it can take a while: a full graph rebuild), unless one
/// is already running for this collection. Returns `false` when [`MAX_RUNNING_COMPACTIONS`]
/// run in the process: the caller asks again later.
fn start_compaction(inner: &Arc<Inner>, plan: Vec<u64>) -> bool {
    let mut slot = inner.compactor.lock();
    if slot.as_ref().is_some_and(|h| !h.is_finished()) {
        return true;
    }
    if let Some(done) = slot.take() {
        let _ = done.join();
    }
    if RUNNING_COMPACTIONS
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < MAX_RUNNING_COMPACTIONS).then_some(n + 1)
        })
        .is_err()
    {
        return false;
    }
    let running = CompactionSlot;
    let for_thread = Arc::clone(inner);
    *slot = std::thread::Builder::new()
        .name("vectord-compact".into())
        .spawn(move || {
            let _running = running;
            let _one = for_thread.compacting.lock();
            if let Err(e) = for_thread.compact(&for_thread.shutdown, Some(&plan)) {
                tracing::error!(collection = %for_thread.dir.display(), error = %e, "compaction failed; segments left as they were");
            }
        })
        .map_err(|e| tracing::error!(error = %e, "could not start a compaction thread"))
        .ok();
    true
}

/// The collection proper; [`Collection`] is its handle plus the background thread.
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
    /// One flush at a time.
    flushing: Mutex<()>,
    memtable_rows: AtomicUsize,
    /// Scheduling state in the shared background pool.
    background: Arc<Background>,
    /// This collection itself, for the pool's queue (which must not keep it alive).
    me: Weak<Inner>,
    /// Set when the handle is dropped: long jobs (compaction) stop early.
    shutdown: AtomicBool,
    /// One compaction at a time.
    compacting: Mutex<()>,
    /// The running (or last) compaction thread, joined on drop.
    compactor: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The first corruption found after open (see [`Collection::damage`]).
    damage: Mutex<Option<String>>,
    /// Compactions that rewrote segments since open.
    compactions: AtomicU64,
    /// Their total duration in microseconds.
    compaction_micros: AtomicU64,
    /// Log recoveries since open. Bumped under the state write lock when recovery swaps in the
    /// rebuilt state, so a compaction that read the old one knows not to swap its result in.
    log_generation: AtomicU64,
    /// Retry schedule of log recovery.
    recovery: Mutex<RecoveryBackoff>,
    /// How long [`Collection::apply`] waits for room (see [`STALL_FACTOR`]).
    write_stall: Mutex<Duration>,
    /// Stalled writers wait on `room` (with this mutex) for a flush to finish.
    stall: Mutex<()>,
    room: parking_lot::Condvar,
    /// This collection's part of the shared memtable budget (set by `Collection::start`),
    /// charged under the state write lock whenever the memtables change; dropped with the
    /// collection, which gives its bytes back.
    share: Option<Arc<BudgetShare>>,
    /// Flushes fail while this is non-zero ([`Collection::hold_flushes`], tests only).
    flush_holds: AtomicUsize,
}

/// What [`load`] rebuilt from a collection's files.
struct Loaded {
    state: State,
    position: Option<SourcePosition>,
    writer: WalWriter,
    records: u64,
}

/// Rebuilds a collection's memory from its files, as an open does: the segments `manifest`
/// names (reusing those already mapped in `reuse`) with their tombstone files, then the WAL
/// records after its `flushed_seq`. `frozen` re-freezes, at the same record, a memtable that a
/// failed flush left frozen (log recovery; an open has none).
fn load(
    dir: &Path,
    manifest: &Manifest,
    reuse: &[Arc<Segment>],
    frozen: Option<(u64, Option<SourcePosition>)>,
    build: BuildParams,
) -> Result<Loaded, EngineError> {
    let segments_dir = dir.join(SEGMENTS_DIR);
    let mut slots = Vec::with_capacity(manifest.segments.len());
    for entry in &manifest.segments {
        let seg = match reuse.iter().find(|s| s.id() == entry.id) {
            Some(seg) => Arc::clone(seg),
            None => Arc::new(Segment::open(&segments_dir, entry.id)?),
        };
        if Some(seg.dim()) != manifest.dimension || seg.rows() != entry.rows {
            return Err(EngineError::Corrupt {
                file: seg.dir().join("vectors.bin"),
                offset: 0,
                reason: format!(
                    "segment holds {} rows of dimension {}; the MANIFEST says {} rows of dimension {:?}",
                    seg.rows(),
                    seg.dim(),
                    entry.rows,
                    manifest.dimension
                ),
            });
        }
        let dead = match &entry.tombstones {
            Some(name) => segment::read_tombstones(&seg.dir().join(name))?,
            None => Default::default(),
        };
        slots.push(SegmentSlot {
            seg,
            dead,
            dirty: false,
            tombstone_file: entry.tombstones.clone(),
        });
    }
    let mut state = State::new(
        manifest.config.space,
        manifest.dimension,
        slots,
        manifest.next_first_seq,
        build,
    )?;
    let mut position = manifest.source_position.clone();
    let mut records = 0u64;
    let mut freeze_at = frozen;
    let writer = wal::recover(
        &dir.join(WAL_DIR),
        DEFAULT_ROTATE_BYTES,
        manifest.flushed_seq,
        |seq, payload, file, offset| {
            if freeze_at.as_ref().is_some_and(|(covers, _)| seq > *covers) {
                if let Some((covers, at)) = freeze_at.take() {
                    state.freeze(covers, at);
                }
            }
            let corrupt = |reason: String| EngineError::Corrupt {
                file: file.to_path_buf(),
                offset,
                reason,
            };
            let entry = LogEntry::decode(payload)
                .map_err(|e| corrupt(format!("undecodable WAL record: {e}")))?;
            for op in entry.ops {
                state.apply(op).map_err(|e| match e {
                    corrupt @ EngineError::Corrupt { .. } => corrupt,
                    other => EngineError::Corrupt {
                        file: file.to_path_buf(),
                        offset,
                        reason: format!("WAL record contradicts the collection: {other}"),
                    },
                })?;
            }
            if entry.source_position.is_some() {
                position = entry.source_position;
            }
            records += 1;
            Ok(())
        },
    )?;
    if let Some((covers, at)) = freeze_at {
        state.freeze(covers, at);
    }
    Ok(Loaded {
        state,
        position,
        writer,
        records,
    })
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
            flushing: Mutex::new(()),
            memtable_rows: AtomicUsize::new(DEFAULT_MEMTABLE_ROWS),
            background: Arc::default(),
            me: Weak::new(),
            shutdown: AtomicBool::new(false),
            compacting: Mutex::new(()),
            compactor: Mutex::new(None),
            damage: Mutex::new(None),
            compactions: AtomicU64::new(0),
            compaction_micros: AtomicU64::new(0),
            log_generation: AtomicU64::new(0),
            recovery: Mutex::new(RecoveryBackoff::default()),
            write_stall: Mutex::new(DEFAULT_WRITE_STALL),
            stall: Mutex::new(()),
            room: parking_lot::Condvar::new(),
            share: None,
            flush_holds: AtomicUsize::new(0),
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

    /// Recovers the log after a failed WAL sync: cuts the WAL files back to the last successful
    /// sync, rebuilds the memory from the files (dropping every record in doubt — none was
    /// acknowledged) and accepts writes again. Returns whether a recovery ran (`false`: the
    /// log was healthy). Unless `now`, an attempt within the backoff after a failed one is
    /// refused with `Poisoned`. On failure the log stays poisoned and the background retries.
    fn recover_log(&self, now: bool) -> Result<bool, EngineError> {
        let Some(why) = self.durability.failure() else {
            return Ok(false);
        };
        if !now {
            let b = self.recovery.lock();
            if b.next_try.is_some_and(|t| std::time::Instant::now() < t) {
                return Err(EngineError::Poisoned(why));
            }
        }
        // No flush in flight (its frozen memtable and segment belong to the old state); no
        // append or sync either (the writer lock, then the tracker's sync lock).
        let _one = self.flushing.lock();
        let mut writer = self.writer.lock();
        let started = std::time::Instant::now();
        let had = writer.last_seq();
        let result = self
            .durability
            .recover_with(|point, epoch| self.rebuild(&mut writer, point, epoch));
        drop(writer);
        match result {
            Ok(None) => Ok(false),
            Ok(Some(kept)) => {
                *self.recovery.lock() = RecoveryBackoff::default();
                WAL_RECOVERIES.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    collection = %self.dir.display(),
                    cause = %why,
                    kept_seq = kept,
                    dropped_records = had.saturating_sub(kept),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "WAL recovered in place after a failed sync: records after the last durable one dropped, writes resume"
                );
                // The rebuilt memtable has no graph yet.
                self.background.state.lock().index_requested = true;
                self.schedule();
                Ok(true)
            }
            Err(e) => {
                let wait = {
                    let mut b = self.recovery.lock();
                    b.failures = b.failures.saturating_add(1);
                    let wait = RECOVERY_BACKOFF_MIN
                        .saturating_mul(1u32 << (b.failures - 1).min(16))
                        .min(RECOVERY_BACKOFF_MAX);
                    b.next_try = Some(std::time::Instant::now() + wait);
                    wait
                };
                tracing::error!(
                    collection = %self.dir.display(),
                    error = %e,
                    retry_in_ms = wait.as_millis() as u64,
                    "WAL recovery after a failed sync failed; writes stay refused"
                );
                // The pool's turn retries once the backoff has passed.
                self.schedule();
                Err(e)
            }
        }
    }

    /// How long until the next log recovery may be tried.
    fn recovery_wait(&self) -> std::time::Duration {
        self.recovery
            .lock()
            .next_try
            .map(|t| t.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or(RECOVERY_BACKOFF_MIN)
    }

    /// The body of [`Inner::recover_log`], run with the writer lock held and no sync in
    /// flight: cut the WAL back to `point`, rebuild state and writer from the files, swap them
    /// in. Disk is made right before memory, so a crash in between loses only what was in doubt.
    /// Returns the last kept record and the new durable point.
    fn rebuild(
        &self,
        writer: &mut WalWriter,
        point: DurablePoint,
        epoch: u64,
    ) -> Result<(u64, DurablePoint), EngineError> {
        wal::cut_back(&self.dir.join(WAL_DIR), point)?;
        crash_point!(
            "collection::recover::rebuild",
            Err(EngineError::Internal(
                "failpoint collection::recover::rebuild".into()
            ))
        );
        let manifest = self.manifest.lock().clone();
        let (reuse, frozen, build) = {
            let st = self.state.read();
            let reuse: Vec<Arc<Segment>> =
                st.segments().iter().map(|s| Arc::clone(&s.seg)).collect();
            let frozen = st.frozen().map(|(_, seq, at)| (seq, at.cloned()));
            (reuse, frozen, st.build_params())
        };
        let mut loaded = load(&self.dir, &manifest, &reuse, frozen, build)?;
        if loaded.writer.last_seq() != point.seq {
            return Err(EngineError::Internal(format!(
                "the WAL was cut back to record {} but replay ends at {}",
                point.seq,
                loaded.writer.last_seq()
            )));
        }
        let now = loaded
            .writer
            .continue_after_recovery(Arc::clone(&self.durability), epoch)?;
        {
            let mut state = self.state.write();
            loaded.state.carry_over(&state);
            *state = loaded.state;
            self.charge(&state);
            self.log_generation.fetch_add(1, Ordering::Relaxed);
        }
        *self.source_position.write() = loaded.position;
        *writer = loaded.writer;
        Ok((point.seq, now))
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

    /// Applies and makes durable one batch; also returns the active memtable's row count.
    fn apply(
        &self,
        batch: WriteBatch,
        source_position: Option<SourcePosition>,
    ) -> Result<(ApplyOutcome, usize), EngineError> {
        batch.validate()?;
        // A poisoned log recovers on the next write (within the backoff this refuses). A sync
        // failing between that check and the lock is recovered from once more.
        let mut writer = {
            let mut tries = 0;
            loop {
                match self.recover_log(false) {
                    Ok(_) | Err(EngineError::Poisoned(_)) => {}
                    Err(e @ EngineError::NoSpace { .. }) => return Err(e),
                    // This batch was not appended: say the log is refusing writes, with why.
                    Err(e) => {
                        return Err(EngineError::Poisoned(format!(
                            "recovering the log failed: {e}"
                        )))
                    }
                }
                let writer = self.writer.lock();
                match self.durability.failure() {
                    None => break writer,
                    Some(why) if tries == 1 => return Err(EngineError::Poisoned(why)),
                    Some(_) => tries += 1,
                }
            }
        };
        let (ops, mut outcome) = {
            let state = self.state.read();
            if let (Some(expected), Some(got)) = (state.dimension(), batch.dimension()) {
                if expected != got {
                    return Err(InputError::DimensionMismatch { expected, got }.into());
                }
            }
            resolve(&state, batch)?
        };
        if ops.is_empty() && source_position.is_none() {
            // Nothing to log, but what the caller observed (e.g. ids that made an add a no-op)
            // may come from a write still in its group commit: wait for it too.
            let ticket = writer.ticket();
            drop(writer);
            self.wait_durable(ticket)?;
            outcome.seq = ticket.seq();
            return Ok((outcome, self.state.read().active_rows()));
        }
        let entry = LogEntry {
            ops,
            source_position,
        };
        let payload = entry
            .encode()
            .map_err(|e| EngineError::Internal(format!("encoding a WAL record: {e}")))?;
        if entry.source_position.is_some() {
            // A sync checkpoint rides in this record.
            crash_point!(
                "collection::apply::checkpoint",
                Err(EngineError::Internal(
                    "failpoint collection::apply::checkpoint".into()
                ))
            );
        }
        let seq = writer.append(&payload)?;
        let ticket = writer.ticket();
        let memtable_rows = {
            let mut state = self.state.write();
            for op in entry.ops {
                if let Err(e) = state.apply(op) {
                    // Resolution guarantees this cannot happen; if it does, the state and the log
                    // disagree, so stop accepting writes rather than diverge further.
                    let why = format!("applying a resolved batch failed: {e}");
                    self.durability.poison(why.clone());
                    return Err(EngineError::Internal(why));
                }
            }
            self.charge(&state);
            state.active_rows()
        };
        if entry.source_position.is_some() {
            *self.source_position.write() = entry.source_position;
        }
        drop(writer);
        self.wait_durable(ticket)?;
        outcome.seq = seq;
        Ok((outcome, memtable_rows))
    }

    /// Waits for group commit to cover `ticket`. When a sync fails first, recovers the log
    /// right away, so the caller learns the definite outcome (`SyncFailed`: not applied) rather
    /// than "in doubt" (`Poisoned`, only while recovery fails).
    fn wait_durable(&self, ticket: wal::Ticket) -> Result<(), EngineError> {
        match self.durability.wait(ticket, &self.writer) {
            Err(EngineError::Poisoned(_)) => {
                // Failure is reported by the log itself (and retried in the background).
                let _ = self.recover_log(false);
                self.durability.wait(ticket, &self.writer)
            }
            other => other,
        }
    }

    /// Waits (up to `stall`) until the rows held in memory are under [`STALL_FACTOR`]
    /// memtable limits and the shared memtable budget has room, asking for flushes meanwhile
    /// (this collection's for its own bound; the largest memtables of any collection for the
    /// budget); then refuses with [`EngineError::Overloaded`]. Counted before the batch: one
    /// batch may cross.
    fn wait_for_room(&self, stall: Duration) -> Result<(), EngineError> {
        let bound = self
            .memtable_rows
            .load(Ordering::Relaxed)
            .saturating_mul(STALL_FACTOR);
        let budget = self.share.as_ref().map(|s| Arc::clone(s.budget()));
        let budget_full = || budget.as_ref().is_some_and(|b| b.over());
        if self.state.read().unflushed_rows() < bound && !budget_full() {
            return Ok(());
        }
        WRITE_STALLS.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let deadline = started + stall;
        loop {
            let rows = self.state.read().unflushed_rows();
            let own = rows >= bound;
            let shared = budget_full();
            if !own && !shared {
                tracing::debug!(collection = %self.dir.display(), waited_ms = started.elapsed().as_millis() as u64, "write stall ended");
                return Ok(());
            }
            if own {
                self.request_flush();
            }
            if let Some(b) = budget.as_ref().filter(|_| shared) {
                b.relieve();
            }
            let now = Instant::now();
            if now >= deadline || self.shutdown.load(Ordering::Relaxed) {
                WRITE_STALL_TIMEOUTS.fetch_add(1, Ordering::Relaxed);
                let waited = started.elapsed().as_millis();
                return Err(match budget.as_ref().filter(|_| !own) {
                    Some(b) => {
                        let (used, limit) = (b.used(), b.limit());
                        tracing::warn!(collection = %self.dir.display(), used, limit, "write refused after a stall: memtables of all collections are over the memory budget");
                        EngineError::Overloaded(format!(
                            "the memtables of all collections hold {used} bytes, over the \
                             memory budget of {limit} bytes (--memtable-budget-mb), after \
                             {waited} ms: writes arrive faster than they are indexed and \
                             flushed; retry later"
                        ))
                    }
                    None => {
                        tracing::warn!(collection = %self.dir.display(), rows, bound, "write refused after a stall: rows arrive faster than they are indexed");
                        EngineError::Overloaded(format!(
                            "{rows} rows wait in memory to be indexed and flushed (bound \
                             {bound}) after {waited} ms: writes arrive faster than this \
                             collection indexes them; retry later"
                        ))
                    }
                });
            }
            // Re-checked at least every second: the flush requests above are repeated, and a
            // wake-up missed between the check and the wait costs at most that.
            let until = deadline.min(now + Duration::from_secs(1));
            if own {
                // Checked again under the lock `flush_with` notifies under: no lost wake-up.
                let mut room = self.stall.lock();
                if self.state.read().unflushed_rows() >= bound {
                    self.room.wait_until(&mut room, until);
                }
            } else if let Some(b) = &budget {
                b.wait_for_room(until);
            }
        }
    }

    /// Writes the memtable out as a segment and drops the WAL it covers, then wakes writers
    /// stalled for room. Returns whether a segment was written.
    fn flush(&self) -> Result<bool, EngineError> {
        self.flush_with(false)
    }

    /// As [`Inner::flush`]; `interruptible` (background flushes) gives up between graph steps
    /// once shutdown has begun, leaving the memtable frozen and its rows in the WAL.
    fn flush_with(&self, interruptible: bool) -> Result<bool, EngineError> {
        let r = self.flush_once(interruptible);
        {
            let _room = self.stall.lock();
            self.room.notify_all();
        }
        if matches!(r, Ok(true)) {
            release_free_heap();
        }
        r
    }

    fn flush_once(&self, interruptible: bool) -> Result<bool, EngineError> {
        let _one = self.flushing.lock();
        if self.flush_holds.load(Ordering::SeqCst) > 0 {
            return Err(EngineError::Internal(
                "flushes of this collection are held back (test hook)".into(),
            ));
        }
        // 1. Freeze (or pick up a frozen memtable a failed flush left behind, with the WAL
        //    position it was frozen at — not today's, which may include newer records).
        let (mem, flushed_seq, position, seg_id) = {
            let mut writer = self.writer.lock();
            if let Some(why) = self.durability.failure() {
                return Err(EngineError::Poisoned(why));
            }
            let mut state = self.state.write();
            // Reserve the id now: a failed attempt may leave a folder under it behind.
            let seg_id = {
                let mut m = self.manifest.lock();
                m.next_segment_id += 1;
                m.next_segment_id - 1
            };
            match state.frozen() {
                Some((mem, seq, position)) => (Arc::clone(mem), seq, position.cloned(), seg_id),
                None => {
                    if state.active_rows() == 0 {
                        return Ok(false);
                    }
                    // Rotate first: the sealed files then hold exactly the frozen records.
                    writer.rotate()?;
                    let seq = writer.last_seq();
                    let position = self.source_position.read().clone();
                    match state.freeze(seq, position.clone()) {
                        Some(mem) => {
                            self.charge(&state);
                            (mem, seq, position, seg_id)
                        }
                        None => return Ok(false),
                    }
                }
            }
        };
        // 2. Finish the frozen memtable's graph, then write the segment files; no locks held,
        //    so reads and writes go on.
        // (A job that finds the background indexer got there first does nothing; the next one
        // starts where that indexer stopped.)
        while let Some(job) = mem.index_job(INDEX_STEP_ROWS) {
            if interruptible && self.shutdown.load(Ordering::Relaxed) {
                tracing::info!(collection = %self.dir.display(), "flush abandoned for shutdown; the WAL keeps its rows");
                return Ok(false);
            }
            job.run()?;
        }
        let segments_dir = self.dir.join(SEGMENTS_DIR);
        let seg = Arc::new(Segment::write_from_memtable(&segments_dir, seg_id, &mem)?);
        // 3. Publish.
        let mut writer = self.writer.lock();
        let mut state = self.state.write();
        state.install_segment(Arc::clone(&seg))?;
        self.charge(&state);
        let mut m = self.manifest.lock();
        crash_point!(
            "collection::flush::before_manifest",
            Err(EngineError::Internal(
                "failpoint collection::flush::before_manifest".into()
            ))
        );
        let stale = self.publish(&mut state, &mut m, Some((flushed_seq, position)))?;
        drop(m);
        drop(state);
        crash_point!(
            "collection::flush::after_manifest",
            Err(EngineError::Internal(
                "failpoint collection::flush::after_manifest".into()
            ))
        );
        // 4. The WAL before the rotation is now redundant.
        writer.remove_covered(flushed_seq);
        drop(writer);
        for path in stale {
            let _ = fs::remove_file(path);
        }
        tracing::info!(collection = %self.dir.display(), segment = seg_id, rows = seg.rows(), "memtable flushed");
        Ok(true)
    }

    /// Drops WAL files whose records the memtable does not hold: with no rows in memory, every
    /// record since the last flush is a delete of segment rows (or of nothing), and publishing
    /// the tombstones with a MANIFEST covering the WAL's last record makes them redundant. A
    /// flush cannot do this (it has no rows to write), so without it delete records — ids —
    /// would stay in the WAL until the next write that adds rows is flushed.
    fn checkpoint_wal(&self) -> Result<Checkpoint, EngineError> {
        // Same order as a flush: no freeze or publish can run in between.
        let _one = self.flushing.lock();
        let mut writer = self.writer.lock();
        if let Some(why) = self.durability.failure() {
            return Err(EngineError::Poisoned(why));
        }
        let mut state = self.state.write();
        if state.frozen().is_some() || state.active_rows() > 0 {
            return Ok(Checkpoint::Busy);
        }
        let mut m = self.manifest.lock();
        let dirty = state.segments().iter().any(|s| s.dirty);
        if writer.last_seq() <= m.flushed_seq && !dirty {
            return Ok(Checkpoint::Clean);
        }
        writer.rotate()?;
        let seq = writer.last_seq();
        let position = self.source_position.read().clone();
        let stale = self.publish(&mut state, &mut m, Some((seq, position)))?;
        drop(m);
        drop(state);
        writer.remove_covered(seq);
        drop(writer);
        for path in stale {
            let _ = fs::remove_file(path);
        }
        tracing::info!(collection = %self.dir.display(), covered_seq = seq, "WAL checkpointed");
        Ok(Checkpoint::Written)
    }

    /// Writes the MANIFEST for the current state: persists changed tombstones under new names,
    /// records the segment list and, after a flush, the WAL position and checkpoint it covers.
    /// The caller holds the writer lock. Returns files the new MANIFEST no longer needs.
    fn publish(
        &self,
        state: &mut State,
        m: &mut Manifest,
        flushed: Option<(u64, Option<SourcePosition>)>,
    ) -> Result<Vec<PathBuf>, EngineError> {
        let mut next = m.clone();
        next.generation += 1;
        next.dimension = state.dimension();
        next.next_first_seq = state.next_first_seq();
        if let Some((seq, position)) = flushed {
            next.flushed_seq = seq;
            next.source_position = position;
        }
        let mut stale = Vec::new();
        next.segments.clear();
        for slot in state.segments_mut() {
            if slot.dirty {
                // Named after the MANIFEST generation, so a published file is never rewritten.
                let name = format!("tombstones-{}.bin", next.generation);
                segment::write_tombstones(&slot.seg.dir().join(&name), &slot.dead)?;
                if let Some(old) = slot.tombstone_file.replace(name) {
                    stale.push(slot.seg.dir().join(old));
                }
                slot.dirty = false;
            }
            next.segments.push(SegmentEntry {
                id: slot.seg.id(),
                rows: slot.seg.rows(),
                tombstones: slot.tombstone_file.clone(),
            });
        }
        write_manifest(&self.dir, &next)?;
        *m = next;
        Ok(stale)
    }

    /// Merges segments into one and swaps it in atomically; reads and writes continue
    /// meanwhile, and rows deleted or replaced during the merge are tombstoned in the result.
    /// `plan: None` merges every segment and drops every dead row (what [`Collection::compact`]
    /// promises); `Some(ids)` merges those segments (the background policy,
    /// [`plan_compaction`]). When one input is a clean base — a graph built with today's `M`,
    /// and no dead rows (or, for a planned merge, under 10%, carried over as tombstones) —
    /// its graph is extended with the other inputs' rows instead of rebuilt: a copy plus the
    /// other rows' inserts. Returns whether anything was rewritten.
    fn compact(&self, shutdown: &AtomicBool, plan: Option<&[u64]>) -> Result<bool, EngineError> {
        let r = self.compact_once(shutdown, plan);
        // The merge's graph builder and row lists were freed whatever the outcome.
        release_free_heap();
        r
    }

    fn compact_once(
        &self,
        shutdown: &AtomicBool,
        plan: Option<&[u64]>,
    ) -> Result<bool, EngineError> {
        let (inputs, space, dim, build, generation) = {
            let st = self.state.read();
            let generation = self.log_generation.load(Ordering::Relaxed);
            let inputs: Vec<(Arc<Segment>, Bitset)> = st
                .segments()
                .iter()
                .filter(|s| plan.is_none_or(|ids| ids.contains(&s.seg.id())))
                .map(|s| (Arc::clone(&s.seg), s.dead.clone()))
                .collect();
            (
                inputs,
                st.space(),
                st.dimension(),
                st.build_params(),
                generation,
            )
        };
        let dead: usize = inputs.iter().map(|(_, d)| d.count()).sum();
        let Some(dim) = dim else { return Ok(false) };
        if inputs.len() < 2 && dead == 0 {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        // The base whose graph is extended: the largest input that qualifies.
        let max_dead = |rows: usize| if plan.is_some() { rows / 10 } else { 0 };
        let base = inputs
            .iter()
            .enumerate()
            .filter(|(_, (seg, d))| d.count() <= max_dead(seg.rows()))
            .max_by_key(|(_, (seg, _))| seg.rows())
            .map(|(i, _)| i);
        let base_builder = match base {
            Some(i) => inputs[i].0.extend_graph(
                space,
                BuildParams {
                    capacity_hint: inputs.iter().map(|(s, _)| s.rows()).sum(),
                    ..build
                },
            )?,
            None => None,
        };
        let base = base.filter(|_| base_builder.is_some());
        // The new segment's rows: the base's rows as they are (dead ones too, so its graph's
        // point ids stay valid; they stay tombstoned), then every other input's live rows in
        // first-insert order. A later row for an id wins in a segment's id index, so a live
        // version appended after a carried dead one is the one found.
        let mut live: Vec<(u64, usize, u32)> = Vec::new();
        if let Some(b) = base {
            for r in 0..inputs[b].0.rows() as u32 {
                live.push((inputs[b].0.first_seq(r)?, b, r));
            }
        }
        let kept = live.len();
        for (i, (seg, dead)) in inputs.iter().enumerate() {
            if Some(i) == base {
                continue;
            }
            for r in 0..seg.rows() as u32 {
                if !dead.get(r) {
                    live.push((seg.first_seq(r)?, i, r));
                }
            }
        }
        live[kept..].sort_unstable();
        let mut map: Vec<Vec<u32>> = inputs
            .iter()
            .map(|(s, _)| vec![u32::MAX; s.rows()])
            .collect();
        for (new, &(_, i, r)) in live.iter().enumerate() {
            map[i][r as usize] = new as u32;
        }
        let seg_id = {
            let mut m = self.manifest.lock();
            m.next_segment_id += 1;
            m.next_segment_id - 1
        };
        let new_seg = if live.is_empty() {
            None
        } else {
            let builder = match base_builder {
                Some(b) => b,
                None => GraphBuilder::with_coder(
                    mean_coder(
                        space,
                        dim,
                        live.iter().map(|&(_, i, r)| inputs[i].0.vector(r)),
                    )?,
                    dim,
                    BuildParams {
                        capacity_hint: live.len(),
                        ..build
                    },
                )?,
            };
            for (c, chunk) in live[kept..].chunks(1024).enumerate() {
                if shutdown.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                let items = chunk
                    .iter()
                    .enumerate()
                    .map(|(j, &(_, i, r))| {
                        Ok((inputs[i].0.vector(r)?, (kept + c * 1024 + j) as u32))
                    })
                    .collect::<Result<Vec<_>, EngineError>>()?;
                on_build_pool(|| builder.insert_batch(&items))?;
            }
            let fields = live
                .iter()
                .map(|&(_, i, r)| inputs[i].0.fields(r))
                .collect::<Result<Vec<_>, _>>()?;
            let ids = live
                .iter()
                .map(|&(_, i, r)| inputs[i].0.id_of(r))
                .collect::<Result<Vec<_>, _>>()?;
            let rows: Vec<RowIn> = live
                .iter()
                .zip(ids.iter().zip(&fields))
                .map(|(&(first_seq, _, _), (id, fields))| RowIn {
                    id,
                    first_seq,
                    fields,
                })
                .collect();
            let vectors = live.iter().map(|&(_, i, r)| inputs[i].0.vector(r));
            let segments_dir = self.dir.join(SEGMENTS_DIR);
            Some(Arc::new(Segment::write(
                &segments_dir,
                seg_id,
                dim,
                vectors,
                &rows,
                Some(&builder),
            )?))
        };
        crash_point!(
            "collection::compact::before_swap",
            Err(EngineError::Internal(
                "failpoint collection::compact::before_swap".into()
            ))
        );
        let _writer = self.writer.lock();
        if self.log_generation.load(Ordering::Relaxed) != generation {
            // A log recovery replaced the state since the merge read its tombstones: deletes it
            // saw may have been dropped, so its result could lose rows. Leave it unpublished.
            drop(_writer);
            if let Some(seg) = &new_seg {
                let _ = fs::remove_dir_all(seg.dir());
            }
            tracing::info!(collection = %self.dir.display(), "compaction abandoned: the log recovered meanwhile");
            return Ok(false);
        }
        let mut state = self.state.write();
        let input_ids: Vec<u64> = inputs.iter().map(|(s, _)| s.id()).collect();
        state.replace_segments(&input_ids, new_seg.clone(), &map)?;
        let mut m = self.manifest.lock();
        let stale = self.publish(&mut state, &mut m, None)?;
        drop(m);
        drop(state);
        drop(_writer);
        crash_point!(
            "collection::compact::after_swap",
            Err(EngineError::Internal(
                "failpoint collection::compact::after_swap".into()
            ))
        );
        for path in stale {
            let _ = fs::remove_file(path);
        }
        for (seg, _) in &inputs {
            // Readers still holding the old segments keep their mappings (unlinked files stay
            // readable until unmapped).
            if let Err(e) = fs::remove_dir_all(seg.dir()) {
                tracing::warn!(dir = %seg.dir().display(), error = %e, "could not remove a compacted segment");
            }
        }
        self.compactions.fetch_add(1, Ordering::Relaxed);
        self.compaction_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        tracing::info!(
            collection = %self.dir.display(),
            inputs = inputs.len(),
            rows = live.len(),
            extended_rows = kept,
            dropped = dead - base.map_or(0, |b| inputs[b].1.count()),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "segments compacted"
        );
        Ok(true)
    }

    /// Whether an idle memtable should be flushed: big enough, fully indexed, none frozen.
    fn idle_flush_due(&self) -> bool {
        let st = self.state.read();
        st.frozen().is_none() && st.active_rows() >= IDLE_FLUSH_MIN_ROWS && st.unindexed_rows() == 0
    }

    /// The segments the background policy would merge now ([`plan_compaction`]), by id.
    fn planned_compaction(&self) -> Option<Vec<u64>> {
        let st = self.state.read();
        let segs = st.segments();
        let sizes: Vec<(usize, usize)> = segs
            .iter()
            .map(|s| (s.seg.rows(), s.dead.count()))
            .collect();
        plan_compaction(&sizes).map(|picked| picked.iter().map(|&i| segs[i].seg.id()).collect())
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
            compactions: self.compactions.load(Ordering::Relaxed),
            compaction_micros: self.compaction_micros.load(Ordering::Relaxed),
            wal_bytes,
            wal_recoveries: self.log_generation.load(Ordering::Relaxed),
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

/// The coder of a graph rebuilt over `vectors`: for l2 and ip, codes centred on their mean
/// (see [`quant`]); cosine codes have no centre.
fn mean_coder<'a>(
    space: Space,
    dim: usize,
    vectors: impl Iterator<Item = Result<&'a [f32], EngineError>>,
) -> Result<quant::Coder, EngineError> {
    if space == Space::Cosine {
        return Ok(quant::Coder::plain(space));
    }
    let mut sum = vec![0f64; dim];
    let mut n = 0usize;
    for v in vectors {
        for (s, x) in sum.iter_mut().zip(v?) {
            *s += f64::from(*x);
        }
        n += 1;
    }
    if n == 0 {
        return Ok(quant::Coder::plain(space));
    }
    let mean: Vec<f32> = sum.iter().map(|s| (s / n as f64) as f32).collect();
    Ok(quant::Coder::centred(space, &mean))
}

/// Removes segment folders the MANIFEST does not name (a flush or compaction that crashed
/// before publishing), so they never shadow published data.
fn remove_unpublished(segments_dir: &Path, manifest: &Manifest) -> Result<(), EngineError> {
    let published: HashSet<String> = manifest
        .segments
        .iter()
        .map(|s| segment::dir_name(s.id))
        .collect();
    for entry in
        fs::read_dir(segments_dir).map_err(|e| EngineError::io("list segments", segments_dir, e))?
    {
        let entry = entry.map_err(|e| EngineError::io("list segments", segments_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !published.contains(&name) {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing an unpublished segment left by an interrupted flush");
            fs::remove_dir_all(&path)
                .map_err(|e| EngineError::io("remove unpublished segment", &path, e))?;
        }
    }
    Ok(())
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), EngineError> {
    let bytes = serde_json::to_vec_pretty(manifest)
        .map_err(|e| EngineError::Internal(format!("encoding MANIFEST: {e}")))?;
    Ok(atomic_replace(&dir.join(MANIFEST), &bytes)?)
}

/// The latest version of a record, as a batch sees it while resolving.
#[derive(Clone)]
struct Current {
    first_seq: u64,
    embedding: Vec<f32>,
    fields: Fields,
}

/// Turns a batch into the puts and deletes it amounts to against `state`.
fn resolve(state: &State, batch: WriteBatch) -> Result<(Vec<LogOp>, ApplyOutcome), EngineError> {
    let mut ops = Vec::with_capacity(batch.len());
    let mut out = ApplyOutcome::default();
    let mut next_first_seq = state.next_first_seq();
    // Versions already written by this batch: later rows merge into them.
    let mut touched: HashMap<String, Current> = HashMap::new();
    let current =
        |touched: &HashMap<String, Current>, id: &str| -> Result<Option<Current>, EngineError> {
            if let Some(c) = touched.get(id) {
                return Ok(Some(c.clone()));
            }
            match state.lookup(id)? {
                None => Ok(None),
                Some(loc) => Ok(Some(Current {
                    first_seq: state.first_seq(loc)?,
                    embedding: state.vector(loc)?.to_vec(),
                    fields: state.fields(loc)?.into_owned(),
                })),
            }
        };
    fn put(ops: &mut Vec<LogOp>, touched: &mut HashMap<String, Current>, id: String, c: Current) {
        touched.insert(id.clone(), c.clone());
        ops.push(LogOp::Put {
            id,
            first_seq: c.first_seq,
            embedding: c.embedding,
            metadata: c.fields.metadata,
            document: c.fields.document,
            uri: c.fields.uri,
        });
    }
    match batch {
        WriteBatch::Add(records) => {
            for r in records {
                if touched.contains_key(&r.id) || state.lookup(&r.id)?.is_some() {
                    continue;
                }
                out.inserted += 1;
                let c = Current {
                    first_seq: next_first_seq,
                    embedding: r.embedding,
                    fields: Fields {
                        metadata: r.metadata.filter(|m| !m.is_empty()),
                        document: r.document,
                        uri: r.uri,
                    },
                };
                next_first_seq += 1;
                put(&mut ops, &mut touched, r.id, c);
            }
        }
        WriteBatch::Upsert(records) => {
            for r in records {
                let c = match current(&touched, &r.id)? {
                    Some(mut c) => {
                        out.updated += 1;
                        c.embedding = r.embedding;
                        c.fields = merge(c.fields, r.metadata, r.document, r.uri);
                        c
                    }
                    None => {
                        out.inserted += 1;
                        let first_seq = next_first_seq;
                        next_first_seq += 1;
                        Current {
                            first_seq,
                            embedding: r.embedding,
                            fields: merge(Fields::default(), r.metadata, r.document, r.uri),
                        }
                    }
                };
                put(&mut ops, &mut touched, r.id, c);
            }
        }
        WriteBatch::Update(records) => {
            for r in records {
                let Some(mut c) = current(&touched, &r.id)? else {
                    continue;
                };
                out.updated += 1;
                if let Some(e) = r.embedding {
                    c.embedding = e;
                }
                c.fields = merge(c.fields, r.metadata, r.document, r.uri);
                put(&mut ops, &mut touched, r.id, c);
            }
        }
        WriteBatch::Delete(sel) => {
            if sel.ids.is_some() || sel.filter.is_some() {
                let ids = state.select_ids(sel.ids.as_deref(), sel.filter.as_ref(), sel.limit)?;
                out.deleted = ids.len() as u32;
                ops.extend(ids.into_iter().map(|id| LogOp::Delete { id }));
            }
        }
    }
    Ok((ops, out))
}

fn merge(
    mut current: Fields,
    patch: Option<MetadataPatch>,
    document: Option<String>,
    uri: Option<String>,
) -> Fields {
    if let Some(patch) = patch {
        let mut m: Metadata = current.metadata.take().unwrap_or_default();
        for (k, v) in patch {
            match v {
                Some(v) => {
                    m.insert(k, v);
                }
                None => {
                    m.remove(&k);
                }
            }
        }
        current.metadata = (!m.is_empty()).then_some(m);
    }
    if document.is_some() {
        current.document = document;
    }
    if uri.is_some() {
        current.uri = uri;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::HnswParams;
    use crate::types::{
        Columns, DeleteSelector, Include, MetadataValue, Record, Space, UpdateRecord, UpsertRecord,
    };

    fn open(space: Space) -> (tempfile::TempDir, Collection) {
        let dir = tempfile::tempdir().unwrap();
        let c = Collection::create(
            &dir.path().join("c"),
            CollectionConfig {
                space,
                ..Default::default()
            },
        )
        .unwrap();
        (dir, c)
    }

    fn rec(id: &str, v: &[f32], meta: &[(&str, MetadataValue)], doc: Option<&str>) -> Record {
        let m: Metadata = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Record {
            id: id.into(),
            embedding: v.to_vec(),
            metadata: (!m.is_empty()).then_some(m),
            document: doc.map(Into::into),
            uri: None,
        }
    }

    fn all(c: &Collection) -> GetResult {
        c.get(&GetRequest {
            include: Include::ALL,
            ..Default::default()
        })
        .unwrap()
    }

    /// A planned merge extends the clean base's graph, carrying its few dead rows as
    /// tombstones; an explicit compaction then drops them. Every live record, the newest
    /// version of an updated id, and exact nearest neighbours survive both.
    #[test]
    fn merges_extend_the_base_graph_and_keep_every_record() {
        let (_d, c) = open(Space::L2);
        let v = |i: usize| vec![(i % 37) as f32, (i / 37) as f32, (i as f32).sin()];
        let add = |from: usize, to: usize| {
            c.apply(
                WriteBatch::Add(
                    (from..to)
                        .map(|i| rec(&format!("r{i}"), &v(i), &[], None))
                        .collect(),
                ),
                None,
            )
            .unwrap();
        };
        add(0, 400);
        assert!(c.flush().unwrap());
        add(400, 550);
        assert!(c.flush().unwrap());
        // A few deletes in the base (under 10%) and an update that moves r7 out of it.
        c.apply(
            WriteBatch::Delete(DeleteSelector {
                ids: Some((0..20).map(|i| format!("r{}", i * 3)).collect()),
                ..Default::default()
            }),
            None,
        )
        .unwrap();
        c.apply(
            WriteBatch::Upsert(vec![UpsertRecord {
                id: "r7".into(),
                embedding: vec![100.0, 100.0, 0.5],
                metadata: None,
                document: None,
                uri: None,
            }]),
            None,
        )
        .unwrap();
        assert!(c.flush().unwrap());
        assert_eq!(c.segment_count(), 3);
        let before = all(&c);
        let check = |c: &Collection, outlier: bool| {
            let now = all(c);
            assert_eq!(now.ids, before.ids);
            assert_eq!(now.embeddings, before.embeddings);
            // Exact neighbours on a grid full of near-ties: a miss here was a real defect of the
            // concurrent build (a new point that started a level at a point still being linked,
            // whose own list then overwrote the back-link), seen in CI about one run in ten.
            // The moved outlier r7 is checked where the merge inserts it after the grid; a
            // rebuild inserts it early (it keeps its first sequence), before the grid's far
            // corner exists, and HNSW then has no link to it from there (a known limit for an
            // outlier this far from everything: ARCHITECTURE.md, "Graph quality").
            for q in [
                vec![3.0, 2.0, 0.1],
                vec![100.0, 100.0, 0.5],
                vec![36.0, 14.0, 0.9],
                vec![30.0, 9.0, -0.5],
            ]
            .into_iter()
            .filter(|q| outlier || q[0] < 100.0)
            {
                let got = c
                    .query(&QueryRequest {
                        embeddings: vec![q.clone()],
                        n_results: 5,
                        ids: None,
                        filter: None,
                        include: Include::QUERY_DEFAULT,
                    })
                    .unwrap();
                let mut want: Vec<(f32, &String)> = before
                    .ids
                    .iter()
                    .zip(before.embeddings.as_ref().unwrap())
                    .map(|(id, e)| (e.iter().zip(&q).map(|(a, b)| (a - b) * (a - b)).sum(), id))
                    .collect();
                want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
                let want: Vec<&String> = want.iter().take(5).map(|w| w.1).collect();
                let got: Vec<&String> = got.results[0].ids.iter().collect();
                assert_eq!(got, want, "query {q:?}");
            }
        };
        let ids: Vec<u64> = c
            .inner
            .state
            .read()
            .segments()
            .iter()
            .map(|s| s.seg.id())
            .collect();
        assert!(c
            .inner
            .compact(&AtomicBool::new(false), Some(&ids))
            .unwrap());
        assert_eq!(c.segment_count(), 1);
        // 400 base rows kept as they were (20 + 1 dead among them), then 150 + 1 live ones.
        let rows = c.inner.state.read().segments()[0].seg.rows();
        assert_eq!(rows, 400 + 150 + 1);
        check(&c, true);
        assert!(c.compact().unwrap());
        assert_eq!(c.inner.state.read().segments()[0].seg.rows(), 550 - 20);
        check(&c, false);
        drop(c);
        let c = Collection::open(&_d.path().join("c")).unwrap();
        check(&c, false);
    }

    /// Adds whole batches of 100 rows, at least `IDLE_FLUSH_MIN_ROWS` in all; returns the count.
    fn add_idle_flush_rows(c: &Collection) -> usize {
        let rows = (IDLE_FLUSH_MIN_ROWS / 100 + 2) * 100;
        for from in (0..rows).step_by(100) {
            c.apply(
                WriteBatch::Add(
                    (from..from + 100)
                        .map(|i| rec(&format!("r{i}"), &[i as f32, 1.0, 2.0], &[], None))
                        .collect(),
                ),
                None,
            )
            .unwrap();
        }
        rows
    }

    /// Polls until a segment appears, but asserts no timing: the bound only keeps a broken
    /// wake-up from hanging the run.
    fn wait_for_a_segment(c: &Collection) {
        let give_up = Instant::now() + Duration::from_secs(300);
        while c.segment_count() == 0 && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

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

    /// Writes that add rows stall while the rows in memory are over their bound, and are
    /// refused (not applied) with `Overloaded` once the stall runs out; a flush that makes room
    /// lets a waiting write through; deletes never stall.
    #[test]
    fn writes_stall_for_a_flush_and_are_refused_when_it_does_not_come() {
        let (_d, c) = open(Space::L2);
        c.set_memtable_rows(100);
        c.set_write_stall(Duration::from_millis(200));
        let batch = |from: usize| {
            WriteBatch::Add(
                (from..from + 100)
                    .map(|i| rec(&format!("r{i}"), &[i as f32, 0.0], &[], None))
                    .collect(),
            )
        };
        // No flush can run while the test holds the flush lock.
        let flushing = c.inner.flushing.lock();
        c.apply(batch(0), None).unwrap();
        c.apply(batch(100), None).unwrap();
        let (stalls, timeouts) = write_stalls_total();
        let started = Instant::now();
        let err = c.apply(batch(200), None).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(matches!(err, EngineError::Overloaded(_)), "{err}");
        assert!(!err.is_user_error());
        let after = write_stalls_total();
        assert!(after.0 > stalls && after.1 > timeouts);
        assert_eq!(c.count(), 200, "the refused batch was not applied");
        // A delete goes through at once.
        c.apply(
            WriteBatch::Delete(DeleteSelector {
                ids: Some(vec!["r0".into()]),
                ..Default::default()
            }),
            None,
        )
        .unwrap();
        assert_eq!(c.count(), 199);
        // A write that may wait long enough gets in once the flush runs.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| c.apply_within(batch(200), None, Duration::from_secs(60)));
            std::thread::sleep(Duration::from_millis(300));
            assert!(!waiter.is_finished(), "the write did not wait for room");
            drop(flushing);
            waiter.join().unwrap().unwrap();
        });
        assert_eq!(c.count(), 299);
        assert!(c.segment_count() >= 1);
    }
    /// The shared memtable budget: with several collections far below their own bounds but
    /// together over the budget, a write to any of them stalls and is refused (unapplied) with
    /// `Overloaded` while flushes are held back; deletes never stall; once flushes run, the
    /// largest memtable is flushed first (only it: it alone brings usage back) and a waiting
    /// write gets in; usage returns to 0 when every memtable is flushed, and a dropped
    /// collection gives its share back.
    #[test]
    fn writes_stall_on_the_shared_budget_until_the_largest_memtable_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let budget = MemtableBudget::new(usize::MAX);
        let open = |name: &str| {
            let c = Collection::create_with_budget(
                &dir.path().join(name),
                CollectionConfig::default(),
                &budget,
            )
            .unwrap();
            // Small, but far above what is written: only the budget can stall these writes.
            c.set_memtable_rows(1000);
            c.set_write_stall(Duration::from_millis(200));
            c
        };
        let (a, b, c) = (open("a"), open("b"), open("c"));
        let batch = |from: usize, n: usize| {
            WriteBatch::Add(
                (from..from + n)
                    .map(|i| rec(&format!("r{i:05}"), &[i as f32, 1.0], &[], None))
                    .collect(),
            )
        };
        let holds = [a.hold_flushes(), b.hold_flushes(), c.hold_flushes()];
        a.apply(batch(0, 50), None).unwrap();
        // Rows of equal size: bytes grow linearly with rows.
        let per50 = budget.used();
        assert!(per50 > 0);
        budget.set_limit(4 * per50);
        b.apply(batch(0, 50), None).unwrap();
        // The batch that crosses the budget is applied (counted before it); C is the largest.
        c.apply(batch(0, 150), None).unwrap();
        assert_eq!(budget.used(), 5 * per50);
        let (stalls, timeouts) = write_stalls_total();
        let err = a.apply(batch(50, 50), None).unwrap_err();
        assert!(matches!(err, EngineError::Overloaded(_)), "{err}");
        assert!(err.to_string().contains("memory budget"), "{err}");
        let after = write_stalls_total();
        assert!(after.0 > stalls && after.1 > timeouts);
        assert_eq!(a.count(), 50, "the refused batch was not applied");
        assert_eq!(budget.used(), 5 * per50);
        // A delete goes through at once (a stall would end in `Overloaded`: flushes are held).
        c.apply(
            WriteBatch::Delete(DeleteSelector {
                ids: Some(vec!["r00000".into()]),
                ..Default::default()
            }),
            None,
        )
        .unwrap();
        assert_eq!(c.count(), 149);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| a.apply_within(batch(50, 50), None, Duration::from_secs(300)));
            std::thread::sleep(Duration::from_millis(300));
            assert!(!waiter.is_finished(), "the write did not wait for room");
            drop(holds);
            waiter.join().unwrap().unwrap();
        });
        assert_eq!(a.count(), 100);
        // Room came from C's flush alone: the largest memtable, which sufficed.
        assert_eq!(
            (a.segment_count(), b.segment_count(), c.segment_count()),
            (0, 0, 1)
        );
        assert_eq!(budget.used(), 3 * per50);
        for x in [&a, &b, &c] {
            x.flush().unwrap();
        }
        assert_eq!(budget.used(), 0);
        b.apply(batch(50, 50), None).unwrap();
        assert_eq!(budget.used(), per50);
        drop(b);
        assert_eq!(budget.used(), 0);
        assert_eq!((a.count(), c.count()), (100, 149));
    }

    /// Segments the policy would merge but that were never merged (a crash loop kills
    /// compactions before they finish; here, foreground flushes, which plan none) are merged
    /// after open, on the catalog's request, with no further write; past the process-wide
    /// cap on running compactions the merge waits for a slot instead of starting.
    #[test]
    fn segments_left_unmerged_are_merged_after_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        {
            let c = Collection::create(&path, CollectionConfig::default()).unwrap();
            for b in 0..4 {
                let rows = (0..50)
                    .map(|i| rec(&format!("r{b}-{i}"), &[b as f32, i as f32], &[], None))
                    .collect();
                c.apply(WriteBatch::Add(rows), None).unwrap();
                c.flush().unwrap();
            }
            assert_eq!(c.segment_count(), 4);
            assert!(c.inner.planned_compaction().is_some());
        }
        let c = Collection::open(&path).unwrap();
        assert_eq!(c.segment_count(), 4, "open alone merges nothing");
        // With the process's compaction slots taken, the merge is put off, not lost: it is
        // asked for again (COMPACTION_RETRY) once a slot is free.
        RUNNING_COMPACTIONS.fetch_add(MAX_RUNNING_COMPACTIONS, Ordering::SeqCst);
        c.request_compaction_check();
        std::thread::sleep(Duration::from_millis(300));
        let put_off = c.segment_count();
        RUNNING_COMPACTIONS.fetch_sub(MAX_RUNNING_COMPACTIONS, Ordering::SeqCst);
        assert_eq!(put_off, 4, "no compaction starts past the process-wide cap");
        // Waits for the event, with a generous bound so a hang fails instead of blocking.
        let deadline = Instant::now() + Duration::from_secs(120);
        while c.segment_count() > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(c.segment_count(), 1);
        assert_eq!(c.count(), 200);
        assert_eq!(c.inner.planned_compaction(), None);
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
    fn compaction_policy_is_size_tiered() {
        // One segment, or a small newcomer next to a big base: nothing to do.
        assert_eq!(plan_compaction(&[]), None);
        assert_eq!(plan_compaction(&[(65_536, 0)]), None);
        assert_eq!(plan_compaction(&[(400_000, 0), (65_536, 0)]), None);
        // The others reach a quarter of the largest: merge everything into it.
        assert_eq!(
            plan_compaction(&[(65_536, 0), (34_464, 0)]),
            Some(vec![0, 1])
        );
        assert_eq!(
            plan_compaction(&[(400_000, 0), (65_536, 0), (40_000, 0)]),
            Some(vec![0, 1, 2])
        );
        // Dead rows count against a segment's size.
        assert_eq!(
            plan_compaction(&[(400_000, 300_000), (65_536, 0)]),
            Some(vec![0])
        );
        // Too many small segments: merged among themselves, the base left alone.
        let many = [(1_000_000, 0), (10, 0), (10, 0), (10, 0), (10, 0)];
        assert_eq!(plan_compaction(&many), Some(vec![1, 2, 3, 4]));
        // Mostly dead: rewritten alone.
        assert_eq!(
            plan_compaction(&[(100_000, 0), (10_000, 5_000)]),
            Some(vec![1])
        );
        assert_eq!(plan_compaction(&[(2_000, 900)]), None);
    }

    #[test]
    fn add_keeps_first_of_duplicates_and_ignores_existing() {
        let (_d, c) = open(Space::L2);
        let out = c
            .apply(
                WriteBatch::Add(vec![
                    rec("a", &[1.0, 0.0], &[], Some("first")),
                    rec("a", &[2.0, 0.0], &[], Some("second")),
                ]),
                None,
            )
            .unwrap();
        assert_eq!((out.inserted, out.updated), (1, 0));
        let out = c
            .apply(
                WriteBatch::Add(vec![rec("a", &[3.0, 0.0], &[], Some("third"))]),
                None,
            )
            .unwrap();
        assert_eq!(out.inserted, 0);
        let g = all(&c);
        assert_eq!(g.ids, vec!["a"]);
        assert_eq!(g.documents.unwrap(), vec![Some("first".to_string())]);
        assert_eq!(g.embeddings.unwrap(), vec![vec![1.0, 0.0]]);
    }

    #[test]
    fn upsert_and_update_merge_metadata() {
        let (_d, c) = open(Space::L2);
        c.apply(
            WriteBatch::Add(vec![rec(
                "a",
                &[1.0],
                &[
                    ("x", MetadataValue::Int(1)),
                    ("y", MetadataValue::Float(2.0)),
                ],
                Some("d"),
            )]),
            None,
        )
        .unwrap();
        let patch: MetadataPatch = [
            ("x".to_string(), None),
            ("z".to_string(), Some(MetadataValue::Str("s".into()))),
        ]
        .into_iter()
        .collect();
        let out = c
            .apply(
                WriteBatch::Upsert(vec![
                    UpsertRecord {
                        id: "a".into(),
                        embedding: vec![5.0],
                        metadata: Some(patch),
                        document: None,
                        uri: None,
                    },
                    UpsertRecord {
                        id: "b".into(),
                        embedding: vec![6.0],
                        metadata: None,
                        document: None,
                        uri: Some("u".into()),
                    },
                ]),
                None,
            )
            .unwrap();
        assert_eq!((out.inserted, out.updated), (1, 1));
        let g = all(&c);
        let m = g.metadatas.as_ref().unwrap()[0].clone().unwrap();
        assert_eq!(m.get("y"), Some(&MetadataValue::Float(2.0)));
        assert_eq!(m.get("z"), Some(&MetadataValue::Str("s".into())));
        assert!(!m.contains_key("x"));
        assert_eq!(
            g.documents.as_ref().unwrap()[0].as_deref(),
            Some("d"),
            "None keeps the document"
        );
        assert_eq!(g.embeddings.as_ref().unwrap()[0], vec![5.0]);

        // Update: unknown ids ignored, a missing embedding keeps the vector, deleting every key
        // leaves no metadata at all.
        let patch: MetadataPatch = [("y".to_string(), None), ("z".to_string(), None)]
            .into_iter()
            .collect();
        let out = c
            .apply(
                WriteBatch::Update(vec![
                    UpdateRecord {
                        id: "a".into(),
                        embedding: None,
                        metadata: Some(patch),
                        document: Some("d2".into()),
                        uri: None,
                    },
                    UpdateRecord {
                        id: "nope".into(),
                        embedding: Some(vec![1.0]),
                        metadata: None,
                        document: None,
                        uri: None,
                    },
                ]),
                None,
            )
            .unwrap();
        assert_eq!(out.updated, 1);
        let g = all(&c);
        assert_eq!(g.ids, vec!["a", "b"], "insertion order survives updates");
        assert_eq!(g.metadatas.unwrap()[0], None);
        assert_eq!(g.documents.unwrap()[0].as_deref(), Some("d2"));
        assert_eq!(g.embeddings.unwrap()[0], vec![5.0]);
        assert_eq!(c.count(), 2);
    }

    #[test]
    fn delete_counts_what_it_removed() {
        let (_d, c) = open(Space::L2);
        c.apply(
            WriteBatch::Add(
                (0..5)
                    .map(|i| rec(&format!("r{i}"), &[i as f32], &[], None))
                    .collect(),
            ),
            None,
        )
        .unwrap();
        let del = |ids: &[&str]| {
            c.apply(
                WriteBatch::Delete(DeleteSelector {
                    ids: Some(ids.iter().map(|s| s.to_string()).collect()),
                    ..Default::default()
                }),
                None,
            )
            .unwrap()
            .deleted
        };
        assert_eq!(del(&["r1", "r3", "missing", "r1"]), 2);
        assert_eq!(del(&["r1"]), 0);
        assert_eq!(
            c.apply(WriteBatch::Delete(DeleteSelector::default()), None)
                .unwrap()
                .deleted,
            0
        );
        assert_eq!(all(&c).ids, vec!["r0", "r2", "r4"]);
        let limit_without_filter = WriteBatch::Delete(DeleteSelector {
            limit: Some(1),
            ..Default::default()
        });
        assert!(matches!(
            c.apply(limit_without_filter, None),
            Err(EngineError::Input(InputError::LimitWithoutFilter))
        ));
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
    fn dimension_is_fixed_by_first_write() {
        let (_d, c) = open(Space::L2);
        assert_eq!(c.dimension(), None);
        let empty = c
            .query(&QueryRequest {
                embeddings: vec![vec![1.0, 2.0]],
                n_results: 3,
                ids: None,
                filter: None,
                include: Include::QUERY_DEFAULT,
            })
            .unwrap();
        assert_eq!(empty.results.len(), 1);
        assert!(empty.results[0].ids.is_empty());
        c.apply(
            WriteBatch::Add(vec![rec("a", &[1.0, 2.0, 3.0], &[], None)]),
            None,
        )
        .unwrap();
        assert_eq!(c.dimension(), Some(3));
        let err = c
            .apply(
                WriteBatch::Add(vec![rec("b", &[1.0, 2.0], &[], None)]),
                None,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Collection expecting embedding with dimension of 3, got 2"
        );
        let err = c
            .query(&QueryRequest {
                embeddings: vec![vec![1.0]],
                n_results: 1,
                ids: None,
                filter: None,
                include: Include::QUERY_DEFAULT,
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Collection expecting embedding with dimension of 3, got 1"
        );
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

    #[test]
    fn state_and_checkpoint_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let config = CollectionConfig {
            space: Space::Cosine,
            hnsw: HnswParams {
                ef_search: 42,
                ..Default::default()
            },
        };
        {
            let c = Collection::create(&path, config).unwrap();
            c.apply(
                WriteBatch::Add(vec![rec(
                    "a",
                    &[1.0, 0.5],
                    &[("k", MetadataValue::Int(1))],
                    Some("doc"),
                )]),
                None,
            )
            .unwrap();
            c.apply(
                WriteBatch::Add(vec![rec("b", &[0.0, 1.0], &[], None)]),
                Some(SourcePosition("0/10".into())),
            )
            .unwrap();
            c.apply(
                WriteBatch::Delete(DeleteSelector {
                    ids: Some(vec!["b".into()]),
                    ..Default::default()
                }),
                None,
            )
            .unwrap();
            c.set_hnsw(HnswParams {
                ef_search: 7,
                ..config.hnsw
            })
            .unwrap();
            assert!(matches!(
                Collection::open(&path),
                Err(EngineError::Locked { .. })
            ));
        }
        let c = Collection::open(&path).unwrap();
        assert_eq!(c.config().space, Space::Cosine);
        assert_eq!(c.config().hnsw.ef_search, 7);
        assert_eq!(c.source_position(), Some(SourcePosition("0/10".into())));
        let g = all(&c);
        assert_eq!(g.ids, vec!["a"]);
        assert_eq!(g.embeddings.unwrap(), vec![vec![1.0, 0.5]]);
        assert_eq!(g.documents.unwrap(), vec![Some("doc".into())]);
        assert_eq!(
            g.metadatas.unwrap()[0].as_ref().unwrap().get("k"),
            Some(&MetadataValue::Int(1))
        );
        assert!(
            Collection::create(&path, config).is_err(),
            "create refuses an existing collection"
        );
    }

    #[test]
    fn invalid_input_writes_nothing() {
        let (_d, c) = open(Space::L2);
        let bad = WriteBatch::Add(vec![
            rec("a", &[1.0], &[], None),
            rec("", &[1.0], &[], None),
        ]);
        assert!(matches!(
            c.apply(bad, None),
            Err(EngineError::Input(InputError::EmptyId))
        ));
        let bad = WriteBatch::Add(vec![
            rec("a", &[1.0], &[], None),
            rec("b", &[f32::INFINITY], &[], None),
        ]);
        assert!(c.apply(bad, None).is_err());
        assert_eq!(c.count(), 0);
        assert_eq!(
            c.inner.writer.lock().last_seq(),
            0,
            "nothing reached the WAL"
        );
        let cols = Columns::<Vec<f32>, Metadata> {
            ids: vec!["a".into()],
            embeddings: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(
            WriteBatch::add(cols).unwrap_err(),
            InputError::InconsistentLengths
        );
    }

    #[test]
    fn corrupt_wal_refuses_to_open_with_location() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        {
            let c = Collection::create(&path, CollectionConfig::default()).unwrap();
            for i in 0..3 {
                c.apply(
                    WriteBatch::Add(vec![rec(&format!("r{i}"), &[i as f32; 8], &[], None)]),
                    None,
                )
                .unwrap();
            }
        }
        let wal = path.join(WAL_DIR).join("00000001.log");
        let mut data = fs::read(&wal).unwrap();
        data[40] ^= 0x55; // inside the first record's payload
        fs::write(&wal, &data).unwrap();
        match Collection::open(&path) {
            Err(EngineError::Corrupt { file, offset, .. }) => {
                assert_eq!(file, wal);
                assert_eq!(offset, 16);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}
