//! Source changes → engine batches. Changes are coalesced per id (last one wins, unchanged
//! TOASTed columns filled from the earlier change), then written as full-state upserts and
//! deletes, so replaying any change a second time converges on the same state (at-least-once
//! delivery + idempotent writes = the source state).
//!
//! Upserts merge in the engine (Chroma's semantics), so a full replacement is spelt out: stored
//! metadata keys the row no longer has are deleted (`None`), and a record whose document became
//! NULL is deleted and written anew.

use std::collections::HashMap;
use std::sync::Arc;

use super::mapping::{Cell, Mapper, Skip, SkipCounts};
use super::SyncError;
use crate::engine::Collection;
use crate::types::{
    DeleteSelector, GetRequest, Include, MetadataPatch, Record, SourcePosition, UpsertRecord,
    WriteBatch,
};

/// How long a sync batch waits for room in a collection that is behind on indexing before
/// the job backs off and retries from its checkpoint.
const SYNC_WRITE_STALL: std::time::Duration = std::time::Duration::from_secs(120);

/// One change read from the source.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert or update: the row's cells in the job's column order.
    Upsert(Vec<Cell>),
    /// Delete by record id.
    Delete(String),
    /// TRUNCATE: every record goes.
    Truncate,
}

#[derive(Debug)]
enum Pending {
    Upsert(Vec<Cell>),
    Delete,
}

/// What one flush wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Records upserted.
    pub upserted: u64,
    /// Records deleted.
    pub deleted: u64,
}

/// Buffers changes for one collection and writes them with a checkpoint.
pub struct Applier {
    coll: Arc<Collection>,
    mapper: Mapper,
    pending: HashMap<String, Pending>,
    /// Why rows were skipped, since this applier was made.
    pub skips: SkipCounts,
    /// The last skip's reason, with the row id (for status).
    pub last_skip: Option<String>,
    /// Ids whose change left a TOASTed column "unchanged" while no stored version exists (the
    /// row was unrepresentable or skipped before): the caller re-reads them from the source.
    /// While any are listed, a flush withholds its checkpoint.
    pub refetch: Vec<String>,
    job: String,
}

impl Applier {
    /// An applier writing into `coll` with `mapper`'s rules.
    pub fn new(job: &str, coll: Arc<Collection>, mapper: Mapper) -> Applier {
        Applier {
            coll,
            mapper,
            pending: HashMap::new(),
            skips: SkipCounts::default(),
            last_skip: None,
            refetch: Vec::new(),
            job: job.to_string(),
        }
    }

    /// The collection written to.
    pub fn collection(&self) -> &Arc<Collection> {
        &self.coll
    }

    /// The row mapper.
    pub fn mapper(&self) -> &Mapper {
        &self.mapper
    }

    /// Distinct ids waiting to be written.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Buffers a change (a TRUNCATE writes what is pending and deletes everything at once).
    pub fn push(&mut self, change: Change) -> Result<(), SyncError> {
        match change {
            Change::Upsert(mut cells) => {
                let id = match cells.first().map(|c| self.mapper.id_of(c)) {
                    Some(Ok(id)) => id,
                    Some(Err(skip)) => {
                        self.note_skip("?", &skip);
                        return Ok(());
                    }
                    None => return Err(SyncError::Protocol("row change without columns".into())),
                };
                if let Some(Pending::Upsert(prev)) = self.pending.get(&id) {
                    for (c, p) in cells.iter_mut().zip(prev) {
                        if *c == Cell::Unchanged {
                            *c = p.clone();
                        }
                    }
                }
                self.pending.insert(id, Pending::Upsert(cells));
            }
            Change::Delete(id) => {
                self.pending.insert(id, Pending::Delete);
            }
            Change::Truncate => {
                self.flush(None)?;
                let ids: Vec<String> = self.coll.ids()?.into_iter().collect();
                if !ids.is_empty() {
                    self.coll.apply(delete(ids), None)?;
                }
            }
        }
        Ok(())
    }

    fn note_skip(&mut self, id: &str, skip: &Skip) {
        self.skips.count(skip);
        let why = match skip {
            Skip::NullEmbedding => "embedding is NULL".to_string(),
            Skip::Unrepresentable(m) => format!("unrepresentable: {m}"),
            Skip::NoStoredValue(c) => format!("unchanged column {c} has no stored value"),
        };
        if !matches!(skip, Skip::NullEmbedding) {
            let n = self.skips.unrepresentable + self.skips.no_stored_value;
            // Every problem row is logged while they are few, then every 1000th.
            if n <= 100 || n.is_multiple_of(1000) {
                tracing::warn!(job = %self.job, id, reason = %why, skipped = n, "row not stored");
            }
        }
        self.last_skip = Some(format!("{id}: {why}"));
    }

    /// Writes everything pending; the last batch written carries `position`, and with nothing
    /// pending an empty batch carries it, so the checkpoint is durable when this returns.
    pub fn flush(&mut self, position: Option<SourcePosition>) -> Result<Flushed, SyncError> {
        let pending = std::mem::take(&mut self.pending);
        let mut deletes: Vec<String> = Vec::new();
        let mut upserts: Vec<(String, Vec<Cell>)> = Vec::new();
        for (id, p) in pending {
            match p {
                Pending::Delete => deletes.push(id),
                Pending::Upsert(cells) => upserts.push((id, cells)),
            }
        }
        let stored = if !upserts.is_empty() && self.coll.count() > 0 {
            let ids = upserts.iter().map(|(id, _)| id.clone()).collect();
            stored_records(&self.coll, ids, true)?
        } else {
            HashMap::new()
        };
        let mut dimension = self.coll.dimension();
        let mut rows: Vec<UpsertRecord> = Vec::with_capacity(upserts.len());
        for (id, cells) in upserts {
            let old = stored.get(&id);
            match self.mapper.map(&cells, old, dimension) {
                Ok(rec) => {
                    dimension.get_or_insert(rec.embedding.len());
                    let mut patch: MetadataPatch = rec
                        .metadata
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k, Some(v)))
                        .collect();
                    if let Some(o) = old {
                        for k in o.metadata.iter().flatten().map(|(k, _)| k) {
                            patch.entry(k.clone()).or_insert(None);
                        }
                        if o.document.is_some() && rec.document.is_none() {
                            // An upsert cannot clear a document: write the record anew.
                            deletes.push(id.clone());
                            patch.retain(|_, v| v.is_some());
                        }
                    }
                    rows.push(UpsertRecord {
                        id: rec.id,
                        embedding: rec.embedding,
                        metadata: (!patch.is_empty()).then_some(patch),
                        document: rec.document,
                        uri: None,
                    });
                }
                Err(Skip::NoStoredValue(_)) if old.is_none() => self.refetch.push(id),
                Err(skip) => {
                    self.note_skip(&id, &skip);
                    if old.is_some() {
                        // The source row is no longer representable: an old version would lie.
                        deletes.push(id);
                    }
                }
            }
        }
        // Rows still to be re-read: the checkpoint must not pass their change yet.
        let position = if self.refetch.is_empty() {
            position
        } else {
            None
        };
        let mut out = Flushed::default();
        let has_rows = !rows.is_empty();
        let mut position_written = false;
        if !deletes.is_empty() {
            let pos = if has_rows { None } else { position.clone() };
            position_written = pos.is_some();
            out.deleted = u64::from(self.coll.apply(delete(deletes), pos)?.deleted);
        }
        if has_rows {
            // A sync batch waits longer than an HTTP write for a flush to make room: refused,
            // the job would only back off and re-read the same rows.
            let o = self
                .coll
                .apply_within(WriteBatch::Upsert(rows), position, SYNC_WRITE_STALL)?;
            out.upserted = u64::from(o.inserted) + u64::from(o.updated);
        } else if !position_written && position.is_some() && self.coll.source_position() != position
        {
            self.coll.apply(WriteBatch::Upsert(Vec::new()), position)?;
        }
        Ok(out)
    }
}

fn delete(ids: Vec<String>) -> WriteBatch {
    WriteBatch::Delete(DeleteSelector {
        ids: Some(ids),
        filter: None,
        limit: None,
    })
}

/// The collection's records of `ids` (those it holds), by id; `full` reads their embeddings,
/// documents and metadata too, otherwise only which ids exist. Blocking.
pub(super) fn stored_records(
    coll: &Collection,
    ids: Vec<String>,
    full: bool,
) -> Result<HashMap<String, Record>, SyncError> {
    let res = coll.get(&GetRequest {
        ids: Some(ids),
        include: Include {
            embeddings: full,
            documents: full,
            metadatas: full,
            ..Include::default()
        },
        ..GetRequest::default()
    })?;
    let mut emb = res.embeddings.unwrap_or_default().into_iter();
    let mut docs = res.documents.unwrap_or_default().into_iter();
    let mut metas = res.metadatas.unwrap_or_default().into_iter();
    Ok(res
        .ids
        .into_iter()
        .map(|id| {
            let r = Record {
                id: id.clone(),
                embedding: emb.next().unwrap_or_default(),
                metadata: metas.next().flatten(),
                document: docs.next().flatten(),
                uri: None,
            };
            (id, r)
        })
        .collect())
}
