//! Durable collections: MANIFEST, write-ahead log with group commit, recovery, and exact search
//! over the records rebuilt from the log.
//!
//! The public surface is [`Collection`] (create/open, `apply`, `get`, `query`, `count`) plus
//! [`DirLock`] for the one-process-per-folder rule.

mod background;
mod bitset;
mod collection;
mod config;
mod error;
mod fsutil;
mod log;
mod memtable;
mod segment;
mod snapshot;
mod state;
mod wal;

pub use background::pool_threads;
pub use collection::{Collection, CollectionStats, DEFAULT_MEMTABLE_ROWS};
pub use config::{CollectionConfig, HnswParams, MAX_NEIGHBORS_LIMIT};
pub use error::EngineError;
pub use fsutil::{atomic_write, sync_dir, DirLock};
pub use snapshot::PendingSnapshot;
