//! Vector search building blocks: distance kernels, the hnsw_rs graph builder, the flat
//! on-disk graph layout and the read-only searcher that runs on it. Nothing here knows about
//! records, metadata or collections; the engine maps record ids to dense `u32` point ids.
//!
//! - [`distance`], [`topk`]: Chroma's distances and bounded top-k selection.
//! - [`builder`]: [`GraphBuilder`] (hnsw_rs behind our [`SpaceDistance`]), the memtable index
//!   and the source of every flat graph.
//! - [`flat_graph`]: the `graph.bin` byte layout, its writer and its zero-copy reader.
//! - [`quant`]: int8 codes (per-vector scale) and the SIMD int8 dot kernels traversal runs on.
//! - [`vectors`]: prepared queries and the [`VectorStore`] the searcher scores against.
//! - [`search`]: HNSW search over a [`FlatGraph`] with an in-search `accept` predicate.
//! - [`ann`]: [`AnnIndex`], one interface over the builder, a mapped graph and brute force.

pub mod ann;
pub mod builder;
pub mod distance;
pub mod error;
pub mod flat_graph;
pub mod quant;
pub mod search;
pub mod topk;
pub mod vectors;

pub use ann::{AnnIndex, BuilderView, ExactIndex, GraphView};
pub use builder::{BuildParams, GraphBuilder, SpaceDistance};
pub use error::IndexError;
pub use flat_graph::{write_file_atomic, FlatGraph, GraphParts};
pub use search::{
    exact_search, search, search_rescored, SearchOutput, SearchParams, SearchScratch, SearchStats,
};
pub use vectors::{F32Vectors, I8Vectors, PreparedQuery, VectorStore};
