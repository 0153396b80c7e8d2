//! Helpers the topics share, compiled once for the whole binary.

pub mod child;
pub mod in_process;
pub mod index;
pub mod server;
pub mod sync;
