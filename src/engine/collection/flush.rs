//! Flush and publish: freeze the memtable and rotate the WAL under the writer lock, write the
//! segment files without locks, then install the segment and replace the MANIFEST (with the
//! tombstones it names) under the writer lock; and the WAL checkpoint that drops delete-only
//! WAL files without a flush.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::manifest::{write_manifest, Manifest, SegmentEntry, SEGMENTS_DIR};
use super::Inner;
use crate::engine::budget::FlushTarget;
use crate::engine::memtable::INDEX_STEP_ROWS;
use crate::engine::segment::{self, Segment};
use crate::engine::state::State;
use crate::engine::EngineError;
use crate::types::SourcePosition;

/// The flush's lock and its test hook.
#[derive(Debug, Default)]
pub(super) struct Flushes {
    /// One flush at a time; log recovery and WAL checkpoints take it too, so none of them
    /// runs while a frozen memtable is being written out.
    pub(super) one: Mutex<()>,
    /// Flushes fail while this is non-zero ([`super::Collection::hold_flushes`], tests only).
    pub(super) holds: AtomicUsize,
}

/// Hands the heap a flush just freed (a memtable's vectors, codes and graph: hundreds of MB)
/// back to the OS. glibc keeps freed chunks in its arenas and returns only the top of each
/// heap, so without this anonymous RSS stays at its peak after the memtable is gone (the
/// 10-minute soak plateaued at ~3.4 GB).
pub(super) fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it has no
    // preconditions and any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Outcome of [`Inner::checkpoint_wal`].
pub(super) enum Checkpoint {
    /// The WAL was rotated and every file before it deleted.
    Written,
    /// The WAL holds nothing the MANIFEST does not cover.
    Clean,
    /// The memtable holds rows (a write raced in, or a flush is under way): flush instead.
    Busy,
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

impl Inner {
    /// Writes the memtable out as a segment and drops the WAL it covers, then wakes writers
    /// stalled for room. Returns whether a segment was written.
    pub(super) fn flush(&self) -> Result<bool, EngineError> {
        self.flush_with(false)
    }

    /// As [`Inner::flush`]; `interruptible` (background flushes) gives up between graph steps
    /// once shutdown has begun, leaving the memtable frozen and its rows in the WAL.
    pub(super) fn flush_with(&self, interruptible: bool) -> Result<bool, EngineError> {
        let r = self.flush_once(interruptible);
        {
            let _room = self.stall.lock.lock();
            self.stall.room.notify_all();
        }
        if matches!(r, Ok(true)) {
            release_free_heap();
        }
        r
    }

    pub(super) fn flush_once(&self, interruptible: bool) -> Result<bool, EngineError> {
        let _one = self.flushes.one.lock();
        if self.flushes.holds.load(Ordering::SeqCst) > 0 {
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
    pub(super) fn checkpoint_wal(&self) -> Result<Checkpoint, EngineError> {
        // Same order as a flush: no freeze or publish can run in between.
        let _one = self.flushes.one.lock();
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
    pub(super) fn publish(
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
}
