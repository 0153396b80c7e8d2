//! TEMPORARY stand-in for `crate::engine::{Collection, DirLock}` with the agreed signatures, so
//! the HTTP layer compiles and its tests run before the engine lands on `main`. In memory only
//! (records do not survive a restart); deleted as soon as the engine is merged.

#![allow(missing_docs, dead_code)]

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use parking_lot::RwLock;

use crate::engine::{CollectionConfig, EngineError, HnswParams};
use crate::types::{
    ApplyOutcome, GetRequest, GetResult, InputError, QueryHits, QueryRequest, QueryResult, Record,
    SourcePosition, Space, WriteBatch,
};

pub struct DirLock {
    _path: PathBuf,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock, EngineError> {
        fs::create_dir_all(dir).map_err(|e| EngineError::io("create data dir", dir, e))?;
        Ok(DirLock {
            _path: dir.join("LOCK"),
        })
    }
}

#[derive(Default)]
struct State {
    records: Vec<Record>,
    index: HashMap<String, usize>,
    dim: Option<usize>,
    seq: u64,
}

pub struct Collection {
    dir: PathBuf,
    config: RwLock<CollectionConfig>,
    state: RwLock<State>,
}

fn manifest(dir: &Path) -> PathBuf {
    dir.join("MANIFEST.json")
}

impl Collection {
    pub fn create(dir: &Path, config: CollectionConfig) -> Result<Collection, EngineError> {
        config.validate()?;
        fs::create_dir_all(dir).map_err(|e| EngineError::io("create", dir, e))?;
        let json = serde_json::to_vec(&config).unwrap_or_default();
        fs::write(manifest(dir), json).map_err(|e| EngineError::io("write manifest", dir, e))?;
        Ok(Collection {
            dir: dir.to_path_buf(),
            config: RwLock::new(config),
            state: RwLock::default(),
        })
    }

    pub fn open(dir: &Path) -> Result<Collection, EngineError> {
        let bytes =
            fs::read(manifest(dir)).map_err(|e| EngineError::io("read manifest", dir, e))?;
        let config: CollectionConfig =
            serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupt {
                file: manifest(dir),
                offset: 0,
                reason: e.to_string(),
            })?;
        Ok(Collection {
            dir: dir.to_path_buf(),
            config: RwLock::new(config),
            state: RwLock::default(),
        })
    }

    pub fn apply(
        &self,
        batch: WriteBatch,
        _pos: Option<SourcePosition>,
    ) -> Result<ApplyOutcome, EngineError> {
        batch.validate()?;
        let mut st = self.state.write();
        if let (Some(d), Some(b)) = (st.dim, batch.dimension()) {
            if d != b {
                return Err(InputError::DimensionMismatch {
                    expected: d,
                    got: b,
                }
                .into());
            }
        }
        if st.dim.is_none() {
            st.dim = batch.dimension();
        }
        let mut out = ApplyOutcome::default();
        match batch {
            WriteBatch::Add(rows) => {
                for r in rows {
                    if !st.index.contains_key(&r.id) {
                        let i = st.records.len();
                        st.index.insert(r.id.clone(), i);
                        st.records.push(r);
                        out.inserted += 1;
                    }
                }
            }
            WriteBatch::Upsert(rows) => {
                for r in rows {
                    match st.index.get(&r.id).copied() {
                        Some(i) => {
                            let rec = &mut st.records[i];
                            rec.embedding = r.embedding;
                            merge(&mut rec.metadata, r.metadata);
                            if r.document.is_some() {
                                rec.document = r.document;
                            }
                            if r.uri.is_some() {
                                rec.uri = r.uri;
                            }
                            out.updated += 1;
                        }
                        None => {
                            let mut md = None;
                            merge(&mut md, r.metadata);
                            let i = st.records.len();
                            st.index.insert(r.id.clone(), i);
                            st.records.push(Record {
                                id: r.id,
                                embedding: r.embedding,
                                metadata: md,
                                document: r.document,
                                uri: r.uri,
                            });
                            out.inserted += 1;
                        }
                    }
                }
            }
            WriteBatch::Update(rows) => {
                for r in rows {
                    if let Some(i) = st.index.get(&r.id).copied() {
                        let rec = &mut st.records[i];
                        if let Some(e) = r.embedding {
                            rec.embedding = e;
                        }
                        merge(&mut rec.metadata, r.metadata);
                        if r.document.is_some() {
                            rec.document = r.document;
                        }
                        if r.uri.is_some() {
                            rec.uri = r.uri;
                        }
                        out.updated += 1;
                    }
                }
            }
            WriteBatch::Delete(sel) => {
                let mut keep = Vec::new();
                let mut limit = sel.limit.map(|l| l as usize).unwrap_or(usize::MAX);
                for r in st.records.drain(..) {
                    let hit = sel.ids.as_ref().is_none_or(|ids| ids.contains(&r.id))
                        && sel
                            .filter
                            .as_ref()
                            .is_none_or(|f| f.matches(r.metadata.as_ref(), r.document.as_deref()));
                    if hit && limit > 0 {
                        limit -= 1;
                        out.deleted += 1;
                    } else {
                        keep.push(r);
                    }
                }
                st.index = keep
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.id.clone(), i))
                    .collect();
                st.records = keep;
            }
        }
        st.seq += 1;
        out.seq = st.seq;
        Ok(out)
    }

    pub fn get(&self, req: &GetRequest) -> Result<GetResult, EngineError> {
        let st = self.state.read();
        let rows: Vec<&Record> = st
            .records
            .iter()
            .filter(|r| req.ids.as_ref().is_none_or(|ids| ids.contains(&r.id)))
            .filter(|r| {
                req.filter
                    .as_ref()
                    .is_none_or(|f| f.matches(r.metadata.as_ref(), r.document.as_deref()))
            })
            .skip(req.offset as usize)
            .take(req.limit.map(|l| l as usize).unwrap_or(usize::MAX))
            .collect();
        let inc = req.include;
        Ok(GetResult {
            ids: rows.iter().map(|r| r.id.clone()).collect(),
            embeddings: inc
                .embeddings
                .then(|| rows.iter().map(|r| r.embedding.clone()).collect()),
            documents: inc
                .documents
                .then(|| rows.iter().map(|r| r.document.clone()).collect()),
            metadatas: inc
                .metadatas
                .then(|| rows.iter().map(|r| r.metadata.clone()).collect()),
            uris: inc
                .uris
                .then(|| rows.iter().map(|r| r.uri.clone()).collect()),
        })
    }

    pub fn query(&self, req: &QueryRequest) -> Result<QueryResult, EngineError> {
        let st = self.state.read();
        let space = self.config.read().space;
        let mut results = Vec::new();
        for q in &req.embeddings {
            if let Some(d) = st.dim {
                if q.len() != d {
                    return Err(InputError::DimensionMismatch {
                        expected: d,
                        got: q.len(),
                    }
                    .into());
                }
            }
            let mut scored: Vec<(f32, &Record)> = st
                .records
                .iter()
                .filter(|r| req.ids.as_ref().is_none_or(|ids| ids.contains(&r.id)))
                .filter(|r| {
                    req.filter
                        .as_ref()
                        .is_none_or(|f| f.matches(r.metadata.as_ref(), r.document.as_deref()))
                })
                .map(|r| (distance(space, q, &r.embedding), r))
                .collect();
            scored.sort_by(|a, b| a.0.total_cmp(&b.0));
            scored.truncate(req.n_results as usize);
            let inc = req.include;
            results.push(QueryHits {
                ids: scored.iter().map(|(_, r)| r.id.clone()).collect(),
                distances: inc
                    .distances
                    .then(|| scored.iter().map(|(d, _)| *d).collect()),
                embeddings: inc
                    .embeddings
                    .then(|| scored.iter().map(|(_, r)| r.embedding.clone()).collect()),
                documents: inc
                    .documents
                    .then(|| scored.iter().map(|(_, r)| r.document.clone()).collect()),
                metadatas: inc
                    .metadatas
                    .then(|| scored.iter().map(|(_, r)| r.metadata.clone()).collect()),
                uris: inc
                    .uris
                    .then(|| scored.iter().map(|(_, r)| r.uri.clone()).collect()),
            });
        }
        Ok(QueryResult { results })
    }

    pub fn count(&self) -> u64 {
        self.state.read().records.len() as u64
    }

    pub fn dimension(&self) -> Option<usize> {
        self.state.read().dim
    }

    pub fn config(&self) -> CollectionConfig {
        *self.config.read()
    }

    pub fn set_hnsw(&self, params: HnswParams) -> Result<(), EngineError> {
        params.validate()?;
        let mut c = self.config.write();
        c.hnsw = params;
        let json = serde_json::to_vec(&*c).unwrap_or_default();
        fs::write(manifest(&self.dir), json)
            .map_err(|e| EngineError::io("write manifest", &self.dir, e))?;
        Ok(())
    }
}

fn merge(md: &mut Option<crate::types::Metadata>, patch: Option<crate::types::MetadataPatch>) {
    let Some(patch) = patch else { return };
    let m = md.get_or_insert_with(Default::default);
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
    if m.is_empty() {
        *md = None;
    }
}

fn distance(space: Space, a: &[f32], b: &[f32]) -> f32 {
    match space {
        Space::L2 => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
        Space::Ip => 1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>(),
        Space::Cosine => {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt() + 1e-32;
            let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt() + 1e-32;
            1.0 - dot / (na * nb)
        }
    }
}

/// Stand-in for `crate::filter::parse`: only "no filter" is supported until the filter lands.
pub fn parse_filter(
    where_: Option<&serde_json::Value>,
    where_document: Option<&serde_json::Value>,
) -> Result<Option<crate::filter::Filter>, crate::filter::FilterError> {
    match (where_, where_document) {
        (None, None) => Ok(None),
        _ => Err(crate::filter::FilterError::InvalidWhere),
    }
}
