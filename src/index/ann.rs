//! [`AnnIndex`]: the one search interface the engine fans a query out over: the memtable's
//! live graph ([`BuilderView`]), a segment's mapped flat graph ([`GraphView`]), and
//! brute force ([`ExactIndex`], also the recall oracle and the plan for selective filters).
//! All return Chroma distances from our kernels, so their results merge by distance.

use crate::index::builder::GraphBuilder;
use crate::index::error::{IndexError, Result};
use crate::index::flat_graph::FlatGraph;
use crate::index::search::{exact_search, search, SearchOutput, SearchParams, SearchStats};
use crate::index::vectors::{PreparedQuery, VectorStore};

/// A set of points searchable for the `k` nearest accepted ones.
pub trait AnnIndex: Sync {
    /// Points in the index (ids `0..len`).
    fn len(&self) -> usize;
    /// Whether the index has no points.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Top-`params.k` accepted points nearest `query`, nearest first, with Chroma distances.
    fn search(
        &self,
        query: &PreparedQuery,
        params: &SearchParams,
        accept: &dyn Fn(u32) -> bool,
    ) -> Result<SearchOutput>;
}

/// The live graph and the f32 vectors it was built over (its candidates are
/// rescored from them).
#[derive(Debug, Clone, Copy)]
pub struct BuilderView<'a, S: VectorStore + ?Sized> {
    /// The graph.
    pub builder: &'a GraphBuilder,
    /// Its vectors, by the same ids.
    pub store: &'a S,
}

impl<S: VectorStore + ?Sized> AnnIndex for BuilderView<'_, S> {
    fn len(&self) -> usize {
        self.builder.len()
    }

    /// Live-graph search (no distance budget: `max_distance_computations` is ignored).
    fn search(
        &self,
        query: &PreparedQuery,
        params: &SearchParams,
        accept: &dyn Fn(u32) -> bool,
    ) -> Result<SearchOutput> {
        if query.space() != self.builder.space() {
            return Err(IndexError::InvalidParams(format!(
                "query prepared for {} on a {} index",
                query.space().as_str(),
                self.builder.space().as_str()
            )));
        }
        self.builder
            .search(query.vector(), params.k, params.ef, accept, self.store)
    }
}

/// A flat graph and the vectors it was built over: a segment's searchable view.
#[derive(Debug, Clone, Copy)]
pub struct GraphView<'a, B: AsRef<[u8]>, S: VectorStore + ?Sized> {
    /// The graph.
    pub graph: &'a FlatGraph<B>,
    /// Its vectors (same point count).
    pub store: &'a S,
}

impl<B: AsRef<[u8]> + Sync, S: VectorStore + ?Sized> AnnIndex for GraphView<'_, B, S> {
    fn len(&self) -> usize {
        self.graph.n()
    }

    fn search(
        &self,
        query: &PreparedQuery,
        params: &SearchParams,
        accept: &dyn Fn(u32) -> bool,
    ) -> Result<SearchOutput> {
        search(self.graph, self.store, query, params, accept)
    }
}

/// Brute force over a vector store: exact, O(N) per query.
#[derive(Debug, Clone, Copy)]
pub struct ExactIndex<'a, S: VectorStore + ?Sized> {
    /// The vectors.
    pub store: &'a S,
}

impl<S: VectorStore + ?Sized> AnnIndex for ExactIndex<'_, S> {
    fn len(&self) -> usize {
        self.store.len()
    }

    fn search(
        &self,
        query: &PreparedQuery,
        params: &SearchParams,
        accept: &dyn Fn(u32) -> bool,
    ) -> Result<SearchOutput> {
        if query.vector().len() != self.store.dim() {
            return Err(IndexError::Dimension {
                expected: self.store.dim(),
                got: query.vector().len(),
            });
        }
        let results = exact_search(self.store, query, params.k, accept);
        let n = self.store.len() as u64;
        Ok(SearchOutput {
            results,
            stats: SearchStats {
                distance_computations: n,
                visited: n,
                exhausted: true,
                truncated: false,
            },
            complete: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::builder::BuildParams;
    use crate::index::vectors::F32Vectors;
    use crate::types::Space;

    #[test]
    fn all_three_agree_on_a_tiny_set() {
        let dim = 4;
        let data: Vec<f32> = (0..200).map(|i| ((i * 37 % 101) as f32).sin()).collect();
        let store = F32Vectors::new(dim, &data, None).unwrap();
        let b = GraphBuilder::new(
            Space::L2,
            dim,
            BuildParams {
                max_neighbors: 8,
                ef_construction: 64,
                capacity_hint: 50,
            },
        )
        .unwrap();
        let rows: Vec<(&[f32], u32)> = data
            .chunks(dim)
            .enumerate()
            .map(|(i, v)| (v, i as u32))
            .collect();
        b.insert_batch(&rows).unwrap();
        let g = FlatGraph::from_bytes("mem", b.export().unwrap()).unwrap();
        let view = GraphView {
            graph: &g,
            store: &store,
        };
        let exact = ExactIndex { store: &store };
        let live = BuilderView {
            builder: &b,
            store: &store,
        };
        let indexes: [&dyn AnnIndex; 3] = [&live, &view, &exact];
        let q = PreparedQuery::new(Space::L2, &data[8..12]).unwrap();
        let p = SearchParams::new(5, 50);
        let want = exact.search(&q, &p, &|_| true).unwrap().results;
        for idx in indexes {
            assert_eq!(idx.len(), 50);
            assert_eq!(idx.search(&q, &p, &|_| true).unwrap().results, want);
        }
        let wrong = PreparedQuery::new(Space::Ip, &data[8..12]).unwrap();
        assert!(AnnIndex::search(&live, &wrong, &p, &|_| true).is_err());
    }
}
