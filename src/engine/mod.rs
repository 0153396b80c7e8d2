//! Durable collections: write-ahead log, recovery, and search over the stored records.

mod config;
mod error;

pub use config::{CollectionConfig, HnswParams, MAX_NEIGHBORS_LIMIT};
pub use error::EngineError;
