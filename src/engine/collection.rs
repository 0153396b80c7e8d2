//! [`Collection`]: one durable collection — its MANIFEST, its WAL and the table rebuilt from it.
//!
//! Write path: validate → take the writer lock → resolve the batch against the current table →
//! append one WAL record → apply to the table (visible) → release the lock → wait for group
//! commit → acknowledge. Resolving and applying under one lock makes log order equal apply
//! order, so replay rebuilds exactly what readers saw.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::fsutil::{atomic_write, create_dir_durable, DirLock};
use super::log::{LogEntry, LogOp};
use super::store::{Fields, Store};
use super::wal::{self, Durability, WalWriter, DEFAULT_ROTATE_BYTES};
use super::{CollectionConfig, EngineError, HnswParams};
use crate::types::{
    ApplyOutcome, GetRequest, GetResult, InputError, Metadata, MetadataPatch, QueryRequest,
    QueryResult, SourcePosition, WriteBatch,
};

const MANIFEST: &str = "MANIFEST";
const WAL_DIR: &str = "wal";
const MANIFEST_VERSION: u32 = 1;

/// The collection's small, atomically replaced description of itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    format_version: u32,
    config: CollectionConfig,
}

/// A durable collection of records. `Send + Sync`: share it as `Arc<Collection>`. Every method
/// may block (fsync, CPU-bound search), so async callers run them on blocking threads.
#[derive(Debug)]
pub struct Collection {
    dir: PathBuf,
    _lock: DirLock,
    config: RwLock<CollectionConfig>,
    store: RwLock<Store>,
    writer: Mutex<WalWriter>,
    durability: Arc<Durability>,
    source_position: RwLock<Option<SourcePosition>>,
}

impl Collection {
    /// Creates an empty collection in `dir` (created if missing; must not hold a collection).
    pub fn create(dir: &Path, config: CollectionConfig) -> Result<Collection, EngineError> {
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
        write_manifest(dir, &config)?;
        Self::open_locked(dir, lock)
    }

    /// Opens the collection in `dir`, replaying its WAL. A torn tail (a write cut by a crash,
    /// never acknowledged) is truncated; any other damage fails with the file and offset.
    pub fn open(dir: &Path) -> Result<Collection, EngineError> {
        let lock = DirLock::acquire(dir)?;
        Self::open_locked(dir, lock)
    }

    fn open_locked(dir: &Path, lock: DirLock) -> Result<Collection, EngineError> {
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
        let config = manifest.config;
        let mut store = Store::new(config.space);
        let mut position = None;
        let started = std::time::Instant::now();
        let mut records = 0u64;
        let writer = wal::recover(
            &dir.join(WAL_DIR),
            DEFAULT_ROTATE_BYTES,
            |_seq, payload, file, offset| {
                let corrupt = |reason: String| EngineError::Corrupt {
                    file: file.to_path_buf(),
                    offset,
                    reason,
                };
                let entry = LogEntry::decode(payload)
                    .map_err(|e| corrupt(format!("undecodable WAL record: {e}")))?;
                for op in entry.ops {
                    store.apply(op).map_err(|e| {
                        corrupt(format!("WAL record contradicts the collection: {e}"))
                    })?;
                }
                if entry.source_position.is_some() {
                    position = entry.source_position;
                }
                records += 1;
                Ok(())
            },
        )?;
        tracing::info!(
            collection = %dir.display(),
            wal_records = records,
            rows = store.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "collection opened"
        );
        let durability = Arc::clone(writer.durability());
        Ok(Collection {
            dir: dir.to_path_buf(),
            _lock: lock,
            config: RwLock::new(config),
            store: RwLock::new(store),
            writer: Mutex::new(writer),
            durability,
            source_position: RwLock::new(position),
        })
    }

    /// The folder holding the collection.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Space and HNSW parameters.
    pub fn config(&self) -> CollectionConfig {
        *self.config.read()
    }

    /// The embedding dimension, fixed by the first write that stored a vector.
    pub fn dimension(&self) -> Option<usize> {
        self.store.read().dimension()
    }

    /// Number of live records.
    pub fn count(&self) -> u64 {
        self.store.read().len() as u64
    }

    /// The change-feed position stored with the newest batch that carried one.
    pub fn source_position(&self) -> Option<SourcePosition> {
        self.source_position.read().clone()
    }

    /// Replaces the HNSW parameters (the space never changes); persisted atomically.
    pub fn set_hnsw(&self, hnsw: HnswParams) -> Result<(), EngineError> {
        hnsw.validate()?;
        // The writer lock orders MANIFEST rewrites with each other.
        let _w = self.writer.lock();
        let mut config = *self.config.read();
        config.hnsw = hnsw;
        write_manifest(&self.dir, &config)?;
        *self.config.write() = config;
        Ok(())
    }

    /// Applies one batch atomically and returns once it is durable. `source_position` (the
    /// pgvector sync's checkpoint) is stored in the same WAL record, so it is durable exactly
    /// when the data is.
    ///
    /// Semantics follow Chroma: add ignores ids already present (and repeats within the batch);
    /// upsert inserts or merges; update merges into existing records and ignores unknown ids;
    /// metadata merges key by key with `None` deleting a key; delete with neither ids nor filter
    /// deletes nothing.
    pub fn apply(
        &self,
        batch: WriteBatch,
        source_position: Option<SourcePosition>,
    ) -> Result<ApplyOutcome, EngineError> {
        batch.validate()?;
        let mut writer = self.writer.lock();
        if let Some(why) = self.durability.failure() {
            return Err(EngineError::Poisoned(why));
        }
        let (ops, mut outcome) = {
            let store = self.store.read();
            if let (Some(expected), Some(got)) = (store.dimension(), batch.dimension()) {
                if expected != got {
                    return Err(InputError::DimensionMismatch { expected, got }.into());
                }
            }
            resolve(&store, batch)
        };
        if ops.is_empty() && source_position.is_none() {
            // Nothing to log, but what the caller observed (e.g. ids that made an add a no-op)
            // may come from a write still in its group commit: wait for it too.
            let seq = writer.last_seq();
            drop(writer);
            self.durability.wait(seq, &self.writer)?;
            outcome.seq = seq;
            return Ok(outcome);
        }
        let entry = LogEntry {
            ops,
            source_position,
        };
        let payload = entry
            .encode()
            .map_err(|e| EngineError::Internal(format!("encoding a WAL record: {e}")))?;
        let seq = writer.append(&payload)?;
        {
            let mut store = self.store.write();
            for op in entry.ops {
                if let Err(e) = store.apply(op) {
                    // Resolution guarantees this cannot happen; if it does, the table and the log
                    // disagree, so stop accepting writes rather than diverge further.
                    let why = format!("applying a resolved batch failed: {e}");
                    self.durability.poison(why.clone());
                    return Err(EngineError::Internal(why));
                }
            }
        }
        if entry.source_position.is_some() {
            *self.source_position.write() = entry.source_position;
        }
        drop(writer);
        self.durability.wait(seq, &self.writer)?;
        outcome.seq = seq;
        Ok(outcome)
    }

    /// Records by ids and/or filter, in insertion order, then `offset` and `limit`.
    pub fn get(&self, req: &GetRequest) -> Result<GetResult, EngineError> {
        Ok(self.store.read().get(req))
    }

    /// The `n_results` nearest records per query vector among those passing `ids` and the
    /// filter, nearest first. Exact search.
    pub fn query(&self, req: &QueryRequest) -> Result<QueryResult, EngineError> {
        Ok(self.store.read().query(req)?)
    }

    /// Ids of all live records (reconciliation and tests; O(n)).
    pub fn ids(&self) -> HashSet<String> {
        self.store.read().live_ids()
    }
}

fn write_manifest(dir: &Path, config: &CollectionConfig) -> Result<(), EngineError> {
    let manifest = Manifest {
        format_version: MANIFEST_VERSION,
        config: *config,
    };
    let bytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| EngineError::Internal(format!("encoding MANIFEST: {e}")))?;
    atomic_write(&dir.join(MANIFEST), &bytes)
}

/// Turns a batch into the puts and deletes it amounts to against `store`.
fn resolve(store: &Store, batch: WriteBatch) -> (Vec<LogOp>, ApplyOutcome) {
    let mut ops = Vec::with_capacity(batch.len());
    let mut out = ApplyOutcome::default();
    // The latest fields of ids already touched by this batch: later rows merge into them.
    let mut touched: HashMap<String, Fields> = HashMap::new();
    match batch {
        WriteBatch::Add(records) => {
            let mut seen = HashSet::new();
            for r in records {
                if store.contains(&r.id) || !seen.insert(r.id.clone()) {
                    continue;
                }
                out.inserted += 1;
                ops.push(LogOp::Put {
                    id: r.id,
                    embedding: Some(r.embedding),
                    metadata: r.metadata.filter(|m| !m.is_empty()),
                    document: r.document,
                    uri: r.uri,
                });
            }
        }
        WriteBatch::Upsert(records) => {
            for r in records {
                let current = touched.get(&r.id).cloned().or_else(|| store.fields(&r.id));
                if current.is_some() {
                    out.updated += 1;
                } else {
                    out.inserted += 1;
                }
                let merged = merge(current.unwrap_or_default(), r.metadata, r.document, r.uri);
                touched.insert(r.id.clone(), merged.clone());
                ops.push(LogOp::Put {
                    id: r.id,
                    embedding: Some(r.embedding),
                    metadata: merged.metadata,
                    document: merged.document,
                    uri: merged.uri,
                });
            }
        }
        WriteBatch::Update(records) => {
            for r in records {
                let Some(current) = touched.get(&r.id).cloned().or_else(|| store.fields(&r.id))
                else {
                    continue;
                };
                out.updated += 1;
                let merged = merge(current, r.metadata, r.document, r.uri);
                touched.insert(r.id.clone(), merged.clone());
                ops.push(LogOp::Put {
                    id: r.id,
                    embedding: r.embedding,
                    metadata: merged.metadata,
                    document: merged.document,
                    uri: merged.uri,
                });
            }
        }
        WriteBatch::Delete(sel) => {
            if sel.ids.is_some() || sel.filter.is_some() {
                let mut rows = store.select(sel.ids.as_deref(), sel.filter.as_ref());
                if let Some(limit) = sel.limit {
                    rows.truncate(limit as usize);
                }
                out.deleted = rows.len() as u32;
                ops.extend(
                    store
                        .ids_of(&rows)
                        .into_iter()
                        .map(|id| LogOp::Delete { id }),
                );
            }
        }
    }
    (ops, out)
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
        assert_eq!(c.writer.lock().last_seq(), 0, "nothing reached the WAL");
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
