//! The in-memory table every read is answered from: rows in insertion order, vectors in one
//! contiguous array (so an exact scan streams memory linearly), an id → row map, and dead rows
//! reclaimed once they outnumber live ones.
//!
//! It is rebuilt from the WAL at open. The segments work moves older rows into memory-mapped
//! files behind the same read methods.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use super::log::LogOp;
use crate::filter::Filter;
use crate::index::distance::{distance, inverse_norm};
use crate::index::topk::{Scored, TopK};
use crate::types::{
    validate_embedding, GetRequest, GetResult, Include, InputError, Metadata, QueryHits,
    QueryRequest, QueryResult, Space,
};

/// Rows scanned per parallel task in a single-vector exact query.
const SCAN_CHUNK: usize = 4096;
/// Dead rows tolerated before reclaiming them (and only while they outnumber live rows).
const COMPACT_MIN_DEAD: usize = 1024;

#[derive(Debug)]
struct Row {
    id: String,
    alive: bool,
    metadata: Option<Metadata>,
    document: Option<String>,
    uri: Option<String>,
}

/// Records of one collection, readable concurrently, changed only by [`Store::apply`].
#[derive(Debug)]
pub(crate) struct Store {
    space: Space,
    dim: Option<usize>,
    index: HashMap<String, u32>,
    rows: Vec<Row>,
    vectors: Vec<f32>,
    inv_norms: Vec<f32>,
    dead: usize,
}

/// The current non-vector fields of a record, as merges see them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fields {
    pub metadata: Option<Metadata>,
    pub document: Option<String>,
    pub uri: Option<String>,
}

impl Store {
    pub(crate) fn new(space: Space) -> Store {
        Store {
            space,
            dim: None,
            index: HashMap::new(),
            rows: Vec::new(),
            vectors: Vec::new(),
            inv_norms: Vec::new(),
            dead: 0,
        }
    }

    pub(crate) fn dimension(&self) -> Option<usize> {
        self.dim
    }

    /// Live records.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// The current fields of a live record.
    pub(crate) fn fields(&self, id: &str) -> Option<Fields> {
        let row = &self.rows[*self.index.get(id)? as usize];
        Some(Fields {
            metadata: row.metadata.clone(),
            document: row.document.clone(),
            uri: row.uri.clone(),
        })
    }

    fn vector(&self, row: u32) -> &[f32] {
        let d = self.dim.unwrap_or(0);
        let start = row as usize * d;
        &self.vectors[start..start + d]
    }

    /// Applies one resolved change. An error means the op contradicts the table (a put without
    /// a vector for a new id, or a vector of the wrong length); replay reports it as corruption.
    pub(crate) fn apply(&mut self, op: LogOp) -> Result<(), String> {
        match op {
            LogOp::Put {
                id,
                embedding,
                metadata,
                document,
                uri,
            } => {
                if let Some(e) = &embedding {
                    match self.dim {
                        Some(d) if d != e.len() => {
                            return Err(format!(
                                "vector of length {} in a collection of dimension {d}",
                                e.len()
                            ))
                        }
                        _ => {}
                    }
                }
                match self.index.get(&id).copied() {
                    Some(r) => {
                        if let Some(e) = embedding {
                            let d = e.len();
                            let start = r as usize * d;
                            self.inv_norms[r as usize] = inverse_norm(&e);
                            self.vectors[start..start + d].copy_from_slice(&e);
                        }
                        let row = &mut self.rows[r as usize];
                        row.metadata = metadata;
                        row.document = document;
                        row.uri = uri;
                    }
                    None => {
                        let Some(e) = embedding else {
                            return Err(format!("insert of {id:?} without a vector"));
                        };
                        self.dim.get_or_insert(e.len());
                        let r = u32::try_from(self.rows.len())
                            .map_err(|_| "more than 2^32 rows".to_string())?;
                        self.inv_norms.push(inverse_norm(&e));
                        self.vectors.extend_from_slice(&e);
                        self.rows.push(Row {
                            id: id.clone(),
                            alive: true,
                            metadata,
                            document,
                            uri,
                        });
                        self.index.insert(id, r);
                    }
                }
            }
            LogOp::Delete { id } => {
                if let Some(r) = self.index.remove(&id) {
                    let row = &mut self.rows[r as usize];
                    row.alive = false;
                    row.metadata = None;
                    row.document = None;
                    row.uri = None;
                    self.dead += 1;
                    self.maybe_compact();
                }
            }
        }
        Ok(())
    }

    /// Drops dead rows once they dominate, keeping insertion order.
    fn maybe_compact(&mut self) {
        if self.dead < COMPACT_MIN_DEAD || self.dead <= self.index.len() {
            return;
        }
        let d = self.dim.unwrap_or(0);
        let mut rows = Vec::with_capacity(self.index.len());
        let mut vectors = Vec::with_capacity(self.index.len() * d);
        let mut inv_norms = Vec::with_capacity(self.index.len());
        for (r, row) in std::mem::take(&mut self.rows).into_iter().enumerate() {
            if row.alive {
                vectors.extend_from_slice(&self.vectors[r * d..(r + 1) * d]);
                inv_norms.push(self.inv_norms[r]);
                rows.push(row);
            }
        }
        self.index = rows
            .iter()
            .enumerate()
            .map(|(r, row)| (row.id.clone(), r as u32))
            .collect();
        self.rows = rows;
        self.vectors = vectors;
        self.inv_norms = inv_norms;
        self.dead = 0;
    }

    /// Live rows passing `ids` and `filter`, in insertion order.
    pub(crate) fn select(&self, ids: Option<&[String]>, filter: Option<&Filter>) -> Vec<u32> {
        let passes = |r: u32| {
            let row = &self.rows[r as usize];
            filter.is_none_or(|f| f.matches(row.metadata.as_ref(), row.document.as_deref()))
        };
        match ids {
            Some(ids) => {
                let mut rows: Vec<u32> = ids
                    .iter()
                    .filter_map(|id| self.index.get(id.as_str()).copied())
                    .collect();
                rows.sort_unstable();
                rows.dedup();
                rows.retain(|&r| passes(r));
                rows
            }
            None => (0..self.rows.len() as u32)
                .filter(|&r| self.rows[r as usize].alive && passes(r))
                .collect(),
        }
    }

    /// Ids of the given rows.
    pub(crate) fn ids_of(&self, rows: &[u32]) -> Vec<String> {
        rows.iter()
            .map(|&r| self.rows[r as usize].id.clone())
            .collect()
    }

    pub(crate) fn get(&self, req: &GetRequest) -> GetResult {
        let selected = self.select(req.ids.as_deref(), req.filter.as_ref());
        let limit = req.limit.map_or(usize::MAX, |l| l as usize);
        let rows: Vec<u32> = selected
            .into_iter()
            .skip(req.offset as usize)
            .take(limit)
            .collect();
        let inc = req.include;
        GetResult {
            ids: self.ids_of(&rows),
            embeddings: inc
                .embeddings
                .then(|| rows.iter().map(|&r| self.vector(r).to_vec()).collect()),
            documents: inc.documents.then(|| {
                rows.iter()
                    .map(|&r| self.rows[r as usize].document.clone())
                    .collect()
            }),
            metadatas: inc.metadatas.then(|| {
                rows.iter()
                    .map(|&r| self.rows[r as usize].metadata.clone())
                    .collect()
            }),
            uris: inc.uris.then(|| {
                rows.iter()
                    .map(|&r| self.rows[r as usize].uri.clone())
                    .collect()
            }),
        }
    }

    /// Exact nearest-neighbour search.
    pub(crate) fn query(&self, req: &QueryRequest) -> Result<QueryResult, InputError> {
        for q in &req.embeddings {
            validate_embedding(q)?;
            if let Some(d) = self.dim {
                if q.len() != d {
                    return Err(InputError::DimensionMismatch {
                        expected: d,
                        got: q.len(),
                    });
                }
            }
        }
        let candidates: Option<Vec<u32>> = (req.ids.is_some() || req.filter.is_some())
            .then(|| self.select(req.ids.as_deref(), req.filter.as_ref()));
        let k = req.n_results as usize;
        let search = |q: &Vec<f32>| -> Vec<Scored> {
            if self.dim.is_none() || k == 0 {
                return Vec::new();
            }
            let q_inv = inverse_norm(q);
            let score = |r: u32| Scored {
                distance: distance(
                    self.space,
                    q,
                    self.vector(r),
                    q_inv,
                    self.inv_norms[r as usize],
                ),
                row: r,
            };
            let top = match &candidates {
                Some(rows) => rows
                    .par_chunks(SCAN_CHUNK)
                    .fold(
                        || TopK::new(k),
                        |mut t, chunk| {
                            chunk.iter().for_each(|&r| t.push(score(r)));
                            t
                        },
                    )
                    .reduce(
                        || TopK::new(k),
                        |mut a, b| {
                            a.merge(b);
                            a
                        },
                    ),
                None => (0..self.rows.len().div_ceil(SCAN_CHUNK))
                    .into_par_iter()
                    .fold(
                        || TopK::new(k),
                        |mut t, c| {
                            let end = ((c + 1) * SCAN_CHUNK).min(self.rows.len());
                            for r in c * SCAN_CHUNK..end {
                                if self.rows[r].alive {
                                    t.push(score(r as u32));
                                }
                            }
                            t
                        },
                    )
                    .reduce(
                        || TopK::new(k),
                        |mut a, b| {
                            a.merge(b);
                            a
                        },
                    ),
            };
            top.into_sorted()
        };
        let hits: Vec<Vec<Scored>> = if req.embeddings.len() > 1 {
            req.embeddings.par_iter().map(search).collect()
        } else {
            req.embeddings.iter().map(search).collect()
        };
        let results = hits
            .into_iter()
            .map(|h| self.hits(&h, req.include))
            .collect();
        Ok(QueryResult { results })
    }

    fn hits(&self, scored: &[Scored], inc: Include) -> QueryHits {
        let rows: Vec<u32> = scored.iter().map(|s| s.row).collect();
        QueryHits {
            ids: self.ids_of(&rows),
            distances: inc
                .distances
                .then(|| scored.iter().map(|s| s.distance).collect()),
            embeddings: inc
                .embeddings
                .then(|| rows.iter().map(|&r| self.vector(r).to_vec()).collect()),
            documents: inc.documents.then(|| {
                rows.iter()
                    .map(|&r| self.rows[r as usize].document.clone())
                    .collect()
            }),
            metadatas: inc.metadatas.then(|| {
                rows.iter()
                    .map(|&r| self.rows[r as usize].metadata.clone())
                    .collect()
            }),
            uris: inc.uris.then(|| {
                rows.iter()
                    .map(|&r| self.rows[r as usize].uri.clone())
                    .collect()
            }),
        }
    }

    /// Ids of every live record (for tests and reconciliation).
    pub(crate) fn live_ids(&self) -> HashSet<String> {
        self.index.keys().cloned().collect()
    }
}
