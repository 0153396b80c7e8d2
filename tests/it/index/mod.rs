//! The index building blocks end to end: graph builder, flat `graph.bin`, memory-mapped searcher.

mod graph;
mod probe;
