//! Query fan-out: validate, choose between an exact scan of explicit rows and a search of
//! every source, merge the per-source top-k, and fetch the included columns.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use rayon::prelude::*;

use super::get::Selector;
use super::source::{MemSource, SegSource};
use super::{Candidate, QueryPlan};
use crate::engine::state::{Loc, State};
use crate::engine::EngineError;
use crate::filter::Filter;
use crate::index::distance::distance;
use crate::index::{PreparedQuery, SearchParams};
use crate::types::{validate_embedding, InputError, QueryHits, QueryRequest, QueryResult};

/// `n_results` above which a query scans exactly instead of widening graph beams to k.
const EXACT_ABOVE_K: usize = 4096;

impl State {
    /// The `n_results` nearest live rows per query vector. Explicit `ids` are scored exactly;
    /// otherwise each memtable and segment is searched through its graph with tombstones and
    /// the filter applied inside the search (rows not yet in a memtable's graph are scanned
    /// exactly), and a source whose search could not guarantee its k falls back to an exact scan.
    pub(crate) fn query(
        &self,
        req: &QueryRequest,
        ef_search: usize,
    ) -> Result<QueryResult, EngineError> {
        for q in &req.embeddings {
            validate_embedding(q)?;
            if let Some(d) = self.dim {
                if q.len() != d {
                    return Err(InputError::DimensionMismatch {
                        expected: d,
                        got: q.len(),
                    }
                    .into());
                }
            }
        }
        let k = req.n_results as usize;
        let by_ids: Option<Vec<Loc>> = match (&req.ids, self.dim) {
            (Some(_), Some(_)) if k > 0 => Some(self.select(
                &Selector {
                    ids: req.ids.as_deref(),
                    filter: req.filter.as_ref(),
                },
                usize::MAX,
            )?),
            _ => None,
        };
        let search = |q: &Vec<f32>| -> Result<Vec<Candidate>, EngineError> {
            if self.dim.is_none() || k == 0 || (req.ids.is_some() && by_ids.is_none()) {
                return Ok(Vec::new());
            }
            let pq = PreparedQuery::new(self.space, q)?;
            self.counters.queries.fetch_add(1, Ordering::Relaxed);
            let filtered = req.filter.is_some();
            match &by_ids {
                Some(locs) => {
                    self.counters.plan_exact.fetch_add(1, Ordering::Relaxed);
                    QueryPlan::exact(filtered).count();
                    self.scan_locs(&pq, k, locs)
                }
                // Asking for (nearly) everything: a graph beam that wide costs more than a scan,
                // and the searchers cap their beams anyway.
                None if k > EXACT_ABOVE_K || k >= self.live => {
                    self.counters.plan_exact.fetch_add(1, Ordering::Relaxed);
                    let locs = self.select(
                        &Selector {
                            ids: None,
                            filter: req.filter.as_ref(),
                        },
                        usize::MAX,
                    )?;
                    QueryPlan::exact(filtered).count();
                    self.scan_locs(&pq, k, &locs)
                }
                None => {
                    let plan = if req.filter.is_some() {
                        &self.counters.plan_filtered
                    } else {
                        &self.counters.plan_graph
                    };
                    plan.fetch_add(1, Ordering::Relaxed);
                    self.search_all(&pq, k, ef_search.max(k), req.filter.as_ref())
                }
            }
        };
        let hits: Vec<Vec<Candidate>> = if req.embeddings.len() > 1 {
            // Several query vectors in one request do use rayon: the batch is the caller's
            // explicit request for throughput over latency.
            req.embeddings
                .par_iter()
                .map(search)
                .collect::<Result<_, _>>()?
        } else {
            req.embeddings
                .iter()
                .map(search)
                .collect::<Result<_, _>>()?
        };
        let mut results = Vec::with_capacity(hits.len());
        for h in hits {
            let locs: Vec<Loc> = h.iter().map(|c| c.loc).collect();
            let (ids, embeddings, documents, metadatas, uris) = self.columns(&locs, req.include)?;
            let distances = req
                .include
                .distances
                .then(|| h.iter().map(|c| c.distance).collect());
            results.push(QueryHits {
                ids,
                distances,
                embeddings,
                documents,
                metadatas,
                uris,
            });
        }
        Ok(QueryResult { results })
    }

    fn score(&self, q: &PreparedQuery, loc: Loc) -> Result<f32, EngineError> {
        Ok(distance(
            self.space,
            q.vector(),
            self.vector(loc)?,
            q.inv_norm(),
            self.inv_norm(loc)?,
        ))
    }

    fn candidate(&self, distance: f32, loc: Loc) -> Result<Candidate, EngineError> {
        Ok(Candidate {
            distance,
            first_seq: self.first_seq(loc)?,
            loc,
        })
    }

    /// Exact top-k over explicit rows.
    fn scan_locs(
        &self,
        q: &PreparedQuery,
        k: usize,
        locs: &[Loc],
    ) -> Result<Vec<Candidate>, EngineError> {
        self.counters
            .distance_computations
            .fetch_add(locs.len() as u64, Ordering::Relaxed);
        // Sequential for the same reason as `search_all`: never wait behind graph builds.
        let mut all = locs
            .iter()
            .map(|&loc| self.score(q, loc).and_then(|d| self.candidate(d, loc)))
            .collect::<Result<Vec<_>, _>>()?;
        all.sort();
        all.truncate(k);
        Ok(all)
    }

    /// Top-k over every source, each searched by graph where it has one.
    fn search_all(
        &self,
        q: &PreparedQuery,
        k: usize,
        ef: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<Candidate>, EngineError> {
        // Filter evaluation inside a graph search cannot return an error; the first one is kept
        // here and reported after the search.
        let filter_error: Mutex<Option<EngineError>> = Mutex::new(None);
        let passes = |loc: Loc| -> bool {
            let Some(f) = filter else { return true };
            match self.fields(loc) {
                Ok(fields) => f.matches(fields.metadata.as_ref(), fields.document.as_deref()),
                Err(e) => {
                    filter_error.lock().get_or_insert(e);
                    false
                }
            }
        };
        let params = SearchParams::new(k, ef);
        let quantized = self.quantized.load(Ordering::Relaxed);
        let walked = AtomicBool::new(false);
        // Sequential on the caller's thread, not rayon: graph builds keep the global pool busy
        // with long insert jobs, and a query queued behind them stalled for seconds (measured:
        // one c=1 query waited 50 s during a flush). Concurrency comes from concurrent requests.
        let active = MemSource::new(&self.active, &self.active_dead, Loc::Active);
        let mut all = self.search_source(&active, q, &params, filter, &passes, &walked)?;
        if let Some(f) = &self.frozen {
            let frozen = MemSource::new(&f.mem, &f.dead, Loc::Frozen);
            all.extend(self.search_source(&frozen, q, &params, filter, &passes, &walked)?);
        }
        for (at, slot) in self.segments.iter().enumerate() {
            let seg = SegSource {
                seg: &slot.seg,
                dead: &slot.dead,
                at,
                quantized,
            };
            all.extend(self.search_source(&seg, q, &params, filter, &passes, &walked)?);
        }
        if let Some(e) = filter_error.into_inner() {
            return Err(e);
        }
        match (filter.is_some(), walked.into_inner()) {
            (false, _) => QueryPlan::Graph,
            (true, true) => QueryPlan::FilteredGraph,
            (true, false) => QueryPlan::FilteredExact,
        }
        .count();
        all.sort();
        all.dedup_by_key(|c| c.loc);
        all.truncate(k);
        Ok(all)
    }
}
