//! The write path: resolve a batch against the current state (Chroma's add / upsert / update
//! / delete semantics), append it to the WAL, apply it, wait for group commit; and the write
//! stall that slows writers to the pace of flushes.
//!
//! The stall: a batch that adds rows while more than [`STALL_FACTOR`] memtable limits of rows
//! (active plus frozen) wait in memory, or while the shared memtable budget is full, waits for
//! a flush up to [`DEFAULT_WRITE_STALL`] (`--write-stall-secs`), then gets
//! [`EngineError::Overloaded`] (429) unapplied. Deletes never stall; the pgvector sync waits
//! longer (`sync/apply.rs`). Writes are thus held to the pace of graph building instead of
//! growing memory or flushing inside a request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::Inner;
use crate::engine::budget::FlushTarget;
use crate::engine::log::{LogEntry, LogOp};
use crate::engine::segment::records::Fields;
use crate::engine::state::State;
use crate::engine::wal;
use crate::engine::EngineError;
use crate::types::{ApplyOutcome, InputError, Metadata, MetadataPatch, SourcePosition, WriteBatch};

/// Writers waiting for room while rows arrive faster than they are flushed.
#[derive(Debug)]
pub(super) struct WriteStall {
    /// How long [`super::Collection::apply`] waits for room (see [`STALL_FACTOR`]).
    pub(super) limit: Mutex<Duration>,
    /// Stalled writers wait on `room` (with this mutex) for a flush to finish.
    pub(super) lock: Mutex<()>,
    pub(super) room: Condvar,
}

impl Default for WriteStall {
    fn default() -> WriteStall {
        WriteStall {
            limit: Mutex::new(DEFAULT_WRITE_STALL),
            lock: Mutex::new(()),
            room: Condvar::new(),
        }
    }
}

/// Rows in memory (active plus frozen memtable), in memtable limits, above which writes that
/// add rows stall until a flush makes room (RocksDB's write stall): writes faster than the
/// graph can be built are slowed to its pace instead of growing memory without bound.
pub(super) const STALL_FACTOR: usize = 2;

/// How long a stalled write waits for room before it is refused with
/// [`EngineError::Overloaded`] (HTTP 429), unless the caller waits longer (the pgvector sync).
pub const DEFAULT_WRITE_STALL: Duration = Duration::from_secs(10);

/// Writes stalled for room since start, all collections (`vectord_write_stalls_total`).
pub(super) static WRITE_STALLS: AtomicU64 = AtomicU64::new(0);

/// Writes refused after a stall, all collections (`vectord_write_stall_timeouts_total`).
pub(super) static WRITE_STALL_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// Writes that stalled waiting for a flush, and those refused after waiting, since start.
pub fn write_stalls_total() -> (u64, u64) {
    (
        WRITE_STALLS.load(Ordering::Relaxed),
        WRITE_STALL_TIMEOUTS.load(Ordering::Relaxed),
    )
}

impl Inner {
    /// Applies and makes durable one batch; also returns the active memtable's row count.
    pub(super) fn apply(
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
    pub(super) fn wait_durable(&self, ticket: wal::Ticket) -> Result<(), EngineError> {
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
    pub(super) fn wait_for_room(&self, stall: Duration) -> Result<(), EngineError> {
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
                let mut room = self.stall.lock.lock();
                if self.state.read().unflushed_rows() >= bound {
                    self.stall.room.wait_until(&mut room, until);
                }
            } else if let Some(b) = &budget {
                b.wait_for_room(until);
            }
        }
    }
}

/// The latest version of a record, as a batch sees it while resolving.
#[derive(Clone)]
pub(super) struct Current {
    first_seq: u64,
    embedding: Vec<f32>,
    fields: Fields,
}

/// Turns a batch into the puts and deletes it amounts to against `state`.
pub(super) fn resolve(
    state: &State,
    batch: WriteBatch,
) -> Result<(Vec<LogOp>, ApplyOutcome), EngineError> {
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
    pub(super) fn put(
        ops: &mut Vec<LogOp>,
        touched: &mut HashMap<String, Current>,
        id: String,
        c: Current,
    ) {
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

pub(super) fn merge(
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
    use std::time::{Duration, Instant};

    use crate::engine::collection::testing::*;
    use crate::engine::{Collection, CollectionConfig, EngineError, MemtableBudget};
    use crate::types::*;

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
        let flushing = c.inner.flushes.one.lock();
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
}
