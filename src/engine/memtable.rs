//! The memtable: the newest rows, appended in write order, in RAM. Rows are never changed in
//! place — an update appends a new version and tombstones the old one — so a frozen memtable can
//! be written out as a segment (row numbers preserved) while readers keep using it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::segment::payload::PayloadIndex;
use super::segment::records::Fields;
use super::EngineError;
use crate::index::distance::inverse_norm;
use crate::index::quant;
use crate::index::{BuildParams, F32Vectors, GraphBuilder};
use crate::types::Space;

/// Rows inserted into the graph per indexing step: large enough for rayon to spread over the
/// cores, small enough that new rows leave the exact-scan tail quickly.
pub(crate) const INDEX_STEP_ROWS: usize = 512;

/// The memtable's HNSW graph, built behind the acknowledgement: rows `0..indexed` are in it,
/// later rows are scanned exactly until the indexer reaches them.
#[derive(Debug)]
pub(crate) struct MemGraph {
    pub builder: GraphBuilder,
    indexed: AtomicUsize,
    /// One indexer at a time per graph (the background thread, or a flush finishing a frozen
    /// memtable), so no row is inserted twice.
    indexing: Mutex<()>,
}

impl MemGraph {
    /// Rows already in the graph.
    pub(crate) fn indexed(&self) -> usize {
        self.indexed.load(Ordering::Acquire)
    }
}

/// Work for the indexer: a graph and the rows to add, copied out of the memtable so the state
/// lock is not held while hnsw_rs inserts.
pub(crate) struct IndexJob {
    graph: Arc<MemGraph>,
    start: usize,
    dim: usize,
    vectors: Vec<f32>,
}

impl IndexJob {
    /// Inserts the rows; returns how many.
    pub(crate) fn run(self) -> Result<usize, EngineError> {
        let _one = self.graph.indexing.lock();
        // Another indexer may have taken these rows meanwhile.
        let done = self.graph.indexed();
        if done != self.start {
            return Ok(0);
        }
        let n = self.vectors.len() / self.dim.max(1);
        let items: Vec<(&[f32], u32)> = self
            .vectors
            .chunks_exact(self.dim)
            .enumerate()
            .map(|(i, v)| (v, (self.start + i) as u32))
            .collect();
        self.graph.builder.insert_batch(&items)?;
        self.graph.indexed.store(self.start + n, Ordering::Release);
        Ok(n)
    }
}

#[derive(Debug)]
pub(crate) struct MemRow {
    pub id: String,
    pub first_seq: u64,
    pub fields: Fields,
}

/// Append-only rows with their vectors in one contiguous array (exact scans stream it), and
/// the graph being built over them.
#[derive(Debug, Default)]
pub(crate) struct Memtable {
    dim: usize,
    rows: Vec<MemRow>,
    vectors: Vec<f32>,
    inv_norms: Vec<f32>,
    /// int8 codes of the rows ([`quant`]), `code_len(dim)` bytes each: rows the graph does not
    /// hold yet are scanned over these (a quarter of the bytes), then rescored in f32.
    codes: Vec<i8>,
    /// Newest row per id (it may be tombstoned; callers check).
    newest: HashMap<String, u32>,
    graph: Option<Arc<MemGraph>>,
    /// The space codes are made for (`None`: no graph, so no codes either).
    space: Option<Space>,
    /// Metadata postings of the rows, extended on every append (the filter planner's input).
    payload: PayloadIndex,
}

impl Memtable {
    /// An empty memtable; with `build`, rows are also indexed into an HNSW graph.
    pub(crate) fn new(
        dim: usize,
        build: Option<(Space, BuildParams)>,
    ) -> Result<Memtable, EngineError> {
        let space = build.map(|(s, _)| s);
        let graph = match build {
            Some((space, params)) if dim > 0 => Some(Arc::new(MemGraph {
                builder: GraphBuilder::new(space, dim, params)?,
                indexed: AtomicUsize::new(0),
                indexing: Mutex::new(()),
            })),
            _ => None,
        };
        Ok(Memtable {
            dim,
            graph,
            space,
            ..Default::default()
        })
    }

    /// The graph over the first [`MemGraph::indexed`] rows.
    pub(crate) fn graph(&self) -> Option<&Arc<MemGraph>> {
        self.graph.as_ref()
    }

    /// The next indexing step, if rows are waiting (at most `max_rows`).
    pub(crate) fn index_job(&self, max_rows: usize) -> Option<IndexJob> {
        let graph = self.graph.as_ref()?;
        let start = graph.indexed();
        let end = self.rows.len().min(start.saturating_add(max_rows));
        (end > start).then(|| IndexJob {
            graph: Arc::clone(graph),
            start,
            dim: self.dim,
            vectors: self.vectors[start * self.dim..end * self.dim].to_vec(),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// Appends a row; the caller has checked the vector's length.
    pub(crate) fn push(
        &mut self,
        id: String,
        first_seq: u64,
        vector: &[f32],
        fields: Fields,
    ) -> u32 {
        debug_assert_eq!(vector.len(), self.dim);
        let r = self.rows.len() as u32;
        self.vectors.extend_from_slice(vector);
        self.inv_norms.push(inverse_norm(vector));
        if let Some(space) = self.space {
            quant::encode_into(space, vector, &mut self.codes);
        }
        self.newest.insert(id.clone(), r);
        self.payload
            .push(fields.metadata.as_ref(), &Default::default());
        self.rows.push(MemRow {
            id,
            first_seq,
            fields,
        });
        r
    }

    /// The rows' metadata postings.
    pub(crate) fn payload(&self) -> &PayloadIndex {
        &self.payload
    }

    /// The newest row holding `id`, live or not.
    pub(crate) fn newest(&self, id: &str) -> Option<u32> {
        self.newest.get(id).copied()
    }

    pub(crate) fn row(&self, r: u32) -> &MemRow {
        &self.rows[r as usize]
    }

    pub(crate) fn vector(&self, r: u32) -> &[f32] {
        let start = r as usize * self.dim;
        &self.vectors[start..start + self.dim]
    }

    /// Row `r`'s int8 code, if this memtable keeps codes (it does when it has a graph).
    pub(crate) fn code(&self, r: u32) -> Option<&[i8]> {
        let len = quant::code_len(self.dim);
        let start = (r as usize).checked_mul(len)?;
        self.codes.get(start..start + len)
    }

    /// The rows' f32 vectors as a store (rescoring the graph's int8 candidates).
    pub(crate) fn store(&self) -> F32Vectors<'_> {
        // The arrays grow together (`push`), so the shapes always agree; an empty dimension
        // (no vector yet) gives an empty store.
        F32Vectors::new(self.dim.max(1), &self.vectors, Some(&self.inv_norms))
            .unwrap_or_else(|_| F32Vectors::empty())
    }

    pub(crate) fn inv_norm(&self, r: u32) -> f32 {
        self.inv_norms[r as usize]
    }

    /// Heap bytes held (vectors dominate; the graph keeps int8 codes of indexed vectors).
    pub(crate) fn bytes(&self) -> usize {
        let indexed = self.graph.as_ref().map_or(0, |g| g.indexed());
        self.vectors.len() * 4 + self.codes.len() + indexed * (self.dim + 8) + self.rows.len() * 96
    }
}
