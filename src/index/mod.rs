//! Vector search building blocks: distance kernels, the HNSW graph builder, the flat
//! on-disk graph layout and the read-only searcher that runs on it. Nothing here knows about
//! records, metadata or collections; the engine maps record ids to dense `u32` point ids.
//!
//! - [`distance`], [`topk`]: Chroma's distances and bounded top-k selection.
//! - [`builder`]: [`GraphBuilder`], our concurrent HNSW builder over int8 codes: the memtable
//!   index and the source of every flat graph.
//! - `hnsw_rs_builder` (feature `hnsw-rs-baseline`): `HnswRsBuilder`, the hnsw_rs-based
//!   builder it replaced, kept as the reference tests and benches compare against.
//! - [`flat_graph`]: the `graph.bin` byte layout, its writer and its zero-copy reader.
//! - [`quant`]: int8 codes (per-vector scale) and the SIMD int8 dot kernels traversal runs on.
//! - [`nibbles`]: int8 codes split into nibble planes, so a walk reads half of each code.
//! - [`vectors`]: prepared queries and the [`VectorStore`] the searcher scores against.
//! - [`search`]: HNSW search over a [`FlatGraph`] with an in-search `accept` predicate.

pub mod builder;
pub mod distance;
pub mod error;
pub mod flat_graph;
#[cfg(feature = "hnsw-rs-baseline")]
pub mod hnsw_rs_builder;
pub mod nibbles;
pub mod quant;
pub mod search;
pub mod topk;
pub mod vectors;

pub use builder::{BuildParams, GraphBuilder};
pub use error::IndexError;
pub use flat_graph::{FlatGraph, GraphParts};
#[cfg(feature = "hnsw-rs-baseline")]
pub use hnsw_rs_builder::{HnswRsBuilder, SpaceDistance};
pub use search::{
    exact_search, search, search_rescored, Rejected, SearchOutput, SearchParams, SearchScratch,
    SearchStats, MAX_SEARCH_EF,
};
pub use vectors::{F32Vectors, I8Vectors, PreparedQuery, VectorStore};
