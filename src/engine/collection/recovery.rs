//! Rebuilding a collection's memory from its files ([`load`], run by an open) and log
//! recovery: after a failed WAL sync, cut the WAL back to the last successful sync, rebuild,
//! swap the result in and accept writes again, with a backoff between failed attempts.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::manifest::{Manifest, SEGMENTS_DIR, WAL_DIR};
use super::Inner;
use crate::engine::log::LogEntry;
use crate::engine::segment::{self, Segment};
use crate::engine::state::{SegmentSlot, State};
use crate::engine::wal::{self, DurablePoint, WalWriter, DEFAULT_ROTATE_BYTES};
use crate::engine::EngineError;
use crate::index::BuildParams;
use crate::types::SourcePosition;

/// Log recovery's retry schedule and generation.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    /// When the next attempt may run.
    pub(super) backoff: Mutex<RecoveryBackoff>,
    /// Log recoveries since open. Bumped under the state write lock when recovery swaps in
    /// the rebuilt state, so a compaction that read the old one knows not to swap its result in.
    pub(super) generation: AtomicU64,
}

/// First wait before retrying a failed log recovery; doubled per failure up to
/// [`RECOVERY_BACKOFF_MAX`], so a dead disk is not hammered by every write.
pub(super) const RECOVERY_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(100);

/// Longest wait between log recovery attempts.
pub(super) const RECOVERY_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Log recoveries (after a failed WAL sync) in this process, all collections
/// (`vectord_wal_recoveries_total`).
pub(super) static WAL_RECOVERIES: AtomicU64 = AtomicU64::new(0);

/// Log recoveries that succeeded in this process, all collections: each cut a collection's
/// WAL back to its last durable record after a failed sync and resumed writes without a restart.
pub fn wal_recoveries_total() -> u64 {
    WAL_RECOVERIES.load(Ordering::Relaxed)
}

/// When the next log recovery may be tried.
#[derive(Debug, Default)]
pub(super) struct RecoveryBackoff {
    /// Failed attempts since the last success.
    failures: u32,
    /// Not before this instant (`None`: now).
    next_try: Option<std::time::Instant>,
}

/// What [`load`] rebuilt from a collection's files.
pub(super) struct Loaded {
    pub(super) state: State,
    pub(super) position: Option<SourcePosition>,
    pub(super) writer: WalWriter,
    pub(super) records: u64,
}

/// Rebuilds a collection's memory from its files, as an open does: the segments `manifest`
/// names (reusing those already mapped in `reuse`) with their tombstone files, then the WAL
/// records after its `flushed_seq`. `frozen` re-freezes, at the same record, a memtable that a
/// failed flush left frozen (log recovery; an open has none).
pub(super) fn load(
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
    /// Recovers the log after a failed WAL sync: cuts the WAL files back to the last successful
    /// sync, rebuilds the memory from the files (dropping every record in doubt — none was
    /// acknowledged) and accepts writes again. Returns whether a recovery ran (`false`: the
    /// log was healthy). Unless `now`, an attempt within the backoff after a failed one is
    /// refused with `Poisoned`. On failure the log stays poisoned and the background retries.
    pub(super) fn recover_log(&self, now: bool) -> Result<bool, EngineError> {
        let Some(why) = self.durability.failure() else {
            return Ok(false);
        };
        if !now {
            let b = self.recovery.backoff.lock();
            if b.next_try.is_some_and(|t| std::time::Instant::now() < t) {
                return Err(EngineError::Poisoned(why));
            }
        }
        // No flush in flight (its frozen memtable and segment belong to the old state); no
        // append or sync either (the writer lock, then the tracker's sync lock).
        let _one = self.flushes.one.lock();
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
                *self.recovery.backoff.lock() = RecoveryBackoff::default();
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
                    let mut b = self.recovery.backoff.lock();
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
    pub(super) fn recovery_wait(&self) -> std::time::Duration {
        self.recovery
            .backoff
            .lock()
            .next_try
            .map(|t| t.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or(RECOVERY_BACKOFF_MIN)
    }

    /// The body of [`Inner::recover_log`], run with the writer lock held and no sync in
    /// flight: cut the WAL back to `point`, rebuild state and writer from the files, swap them
    /// in. Disk is made right before memory, so a crash in between loses only what was in doubt.
    /// Returns the last kept record and the new durable point.
    pub(super) fn rebuild(
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
            self.recovery.generation.fetch_add(1, Ordering::Relaxed);
        }
        *self.source_position.write() = loaded.position;
        *writer = loaded.writer;
        Ok((point.seq, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    use crate::engine::collection::testing::*;
    use crate::engine::{Collection, CollectionConfig, EngineError, HnswParams};
    use crate::types::*;

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
