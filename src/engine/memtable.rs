//! The memtable: the newest rows, appended in write order, in RAM. Rows are never changed in
//! place — an update appends a new version and tombstones the old one — so a frozen memtable can
//! be written out as a segment (row numbers preserved) while readers keep using it.
//!
//! Rows sit in one contiguous vector array beside a payload index extended on every append. The
//! HNSW graph ([`MemGraph`], an [`crate::index::GraphBuilder`]) is built behind the
//! acknowledgement by the background pool, [`INDEX_STEP_ROWS`] at a time, from [`IndexJob`]s
//! that copy rows out so the state lock is not held during inserts; rows it does not hold yet
//! are scanned. Every graph build (indexing, flush, compaction) runs on a dedicated rayon pool
//! ([`on_build_pool`]). l2/ip codes are centred on the previous memtable's mean, at open on the
//! largest segment's centre, and without either on the first row.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

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

/// Graph builds (memtable indexing, flush, compaction) run their parallel inserts on this pool,
/// not rayon's global one. A build keeps every worker of its pool busy for as long as it runs
/// (minutes for ~100k rows), and rayon serves work injected from outside a pool only when its
/// workers run dry: a multi-vector query's fan-out on the same pool waited for the whole
/// build while holding the state's read lock, and every writer, flush and config change
/// queued behind it. `None` if the threads could not be started (builds then use the caller's
/// pool, as before).
static BUILD_POOL: LazyLock<Option<rayon::ThreadPool>> = LazyLock::new(|| {
    rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("vectord-build-{i}"))
        .build()
        .map_err(|e| tracing::error!(error = %e, "no graph build pool; builds share rayon's global pool"))
        .ok()
});

/// Runs `f` (a graph build step) on the build pool, so its `rayon` work stays there.
pub(crate) fn on_build_pool<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match BUILD_POOL.as_ref() {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

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
/// lock is not held while the graph builder inserts.
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
        on_build_pool(|| self.graph.builder.insert_batch(&items))?;
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
    /// The graph still to be made (l2/ip without a known centre): the first row pushed
    /// becomes the centre of its codes.
    pending: Option<(Space, BuildParams)>,
    /// Componentwise sum of the rows' vectors (l2/ip), for [`Self::mean`].
    sum: Vec<f64>,
    /// Metadata postings of the rows, extended on every append (the filter planner's input).
    payload: PayloadIndex,
    /// Graph bytes per row once indexed (codes and the layer-0 neighbour row); 0 without a
    /// graph. Counted for every row, indexed or not: the memory budget must cover the graph
    /// the background is about to build, not only what it has built so far.
    graph_row_bytes: usize,
    /// Heap bytes of the rows' variable parts: ids (held twice: row and id map), documents,
    /// uris and metadata, estimated at push.
    variable_bytes: usize,
}

/// Fixed heap bytes per row besides vectors, codes and graph: the row struct, the id map
/// entry and the payload postings (estimated).
const ROW_OVERHEAD_BYTES: usize = 160;

/// Estimated heap bytes of a row's id and fields (strings and arrays, plus map entries).
fn variable_bytes(id: &str, fields: &Fields) -> usize {
    use crate::types::MetadataValue as V;
    let strings = |v: &[String]| v.iter().map(|s| s.len() + 24).sum::<usize>();
    let metadata = fields.metadata.as_ref().map_or(0, |m| {
        m.iter()
            .map(|(k, v)| {
                48 + k.len()
                    + match v {
                        V::Bool(_) | V::Int(_) | V::Float(_) => 0,
                        V::Str(s) => s.len(),
                        V::BoolArray(a) => a.len(),
                        V::IntArray(a) => a.len() * 8,
                        V::FloatArray(a) => a.len() * 8,
                        V::StrArray(a) => strings(a),
                        V::SparseVector(sv) => {
                            sv.indices.len() * 8 + sv.tokens.as_deref().map_or(0, strings)
                        }
                    }
            })
            .sum()
    });
    2 * id.len()
        + fields.document.as_ref().map_or(0, String::len)
        + fields.uri.as_ref().map_or(0, String::len)
        + metadata
}

impl MemGraph {
    fn new(
        space: Space,
        dim: usize,
        params: BuildParams,
        centre: Option<&[f32]>,
    ) -> Result<MemGraph, EngineError> {
        let coder = match centre {
            Some(c) => quant::Coder::centred(space, c),
            None => quant::Coder::plain(space),
        };
        Ok(MemGraph {
            builder: GraphBuilder::with_coder(coder, dim, params)?,
            indexed: AtomicUsize::new(0),
            indexing: Mutex::new(()),
        })
    }
}

impl Memtable {
    /// An empty memtable; with `build`, rows are also indexed into an HNSW graph. For l2 and
    /// ip the graph's codes are centred on `centre` (the previous memtable's mean), or without
    /// one on the first row pushed; cosine codes have no centre.
    pub(crate) fn new(
        dim: usize,
        build: Option<(Space, BuildParams)>,
        centre: Option<Vec<f32>>,
    ) -> Result<Memtable, EngineError> {
        let centre = centre.filter(|c| c.len() == dim);
        let (graph, pending) = match build {
            Some((space, params)) if dim > 0 => match (space, centre) {
                (Space::Cosine, _) => (Some(MemGraph::new(space, dim, params, None)?), None),
                (_, Some(c)) => (Some(MemGraph::new(space, dim, params, Some(&c))?), None),
                (_, None) => {
                    params.validate()?;
                    (None, Some((space, params)))
                }
            },
            _ => (None, None),
        };
        let centred = dim > 0 && matches!(build, Some((Space::L2 | Space::Ip, _)));
        // Codes plus the layer-0 row of 2·M + 1 u32 slots; upper layers, levels and flags
        // add about another 24 bytes a row on average.
        let graph_row_bytes = match build {
            Some((_, p)) if dim > 0 => quant::code_len(dim) + (2 * p.max_neighbors + 1) * 4 + 24,
            _ => 0,
        };
        Ok(Memtable {
            dim,
            graph: graph.map(Arc::new),
            pending,
            sum: if centred { vec![0.0; dim] } else { Vec::new() },
            graph_row_bytes,
            ..Default::default()
        })
    }

    /// The mean of the rows' vectors (l2/ip memtables with rows; `None` otherwise).
    pub(crate) fn mean(&self) -> Option<Vec<f32>> {
        let n = self.rows.len();
        (n > 0 && self.sum.len() == self.dim)
            .then(|| self.sum.iter().map(|s| (s / n as f64) as f32).collect())
    }

    /// How the rows' codes are made (`None`: no graph, so no codes).
    pub(crate) fn coder(&self) -> Option<&quant::Coder> {
        self.graph.as_ref().map(|g| g.builder.coder())
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
        if let Some((space, params)) = self.pending.take() {
            // Validated in `new`, so this cannot fail; if it did, the rows would be scanned
            // exactly, never answered wrong.
            match MemGraph::new(space, self.dim, params, Some(vector)) {
                Ok(g) => self.graph = Some(Arc::new(g)),
                Err(e) => {
                    tracing::error!(error = %e, "memtable graph not created; rows are scanned exactly")
                }
            }
        }
        self.vectors.extend_from_slice(vector);
        self.inv_norms.push(inverse_norm(vector));
        if let Some(g) = &self.graph {
            g.builder.coder().encode_into(vector, &mut self.codes);
        }
        if self.sum.len() == vector.len() {
            for (s, x) in self.sum.iter_mut().zip(vector) {
                *s += f64::from(*x);
            }
        }
        self.variable_bytes += variable_bytes(&id, &fields);
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

    /// Estimated heap bytes held once every row is indexed: vectors, inverse norms, codes,
    /// the graph, ids, documents and metadata. Grows only with rows (not with indexing), so
    /// the memory budget charged from it changes only when rows are added or flushed. Counts
    /// what the rows need, not allocator slack or reserved capacity (RSS runs higher: the soak
    /// saw ~2 KB of RSS per 128-d row, where this counts ~1.1 KB).
    pub(crate) fn bytes(&self) -> usize {
        self.rows.len() * (self.dim * 4 + 4 + ROW_OVERHEAD_BYTES)
            + self.codes.len()
            + self.rows.len() * self.graph_row_bytes
            + self.variable_bytes
    }
}
