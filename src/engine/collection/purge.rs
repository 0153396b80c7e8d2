//! [`Collection::purge_deleted`]: removing deleted and superseded records from every file of
//! the collection now (flush or WAL checkpoint, then a full compaction).

use serde::Serialize;

use super::flush::Checkpoint;
use super::Collection;
use crate::engine::EngineError;

/// Flush / checkpoint rounds a purge tries before reporting that writes kept it from emptying
/// the WAL (each round is a flush or a checkpoint under the writer lock).
pub(super) const PURGE_ROUNDS: usize = 5;

impl Collection {
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
