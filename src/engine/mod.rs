//! Durable collections: MANIFEST, write-ahead log with group commit, recovery, and exact search
//! over the records rebuilt from the log.
//!
//! The public surface is [`Collection`] (create/open, `apply`, `get`, `query`, `count`) plus
//! [`DirLock`] for the one-process-per-folder rule.

mod background;
mod bitset;
mod budget;
mod collection;
mod error;
mod log;
mod memtable;
mod online_copy;
mod params;
mod segment;
mod state;
mod wal;

#[cfg(test)]
mod filter_plan_tests;

pub use crate::fsutil::DirLock;
pub use background::pool_threads;
pub use budget::{MemtableBudget, DEFAULT_MEMTABLE_BUDGET_BYTES};
pub use collection::{
    wal_recoveries_total, write_stalls_total, Collection, CollectionStats, FlushHold, PurgeReport,
    DEFAULT_MEMTABLE_ROWS, DEFAULT_WRITE_STALL,
};
pub use error::EngineError;
pub use online_copy::PendingSnapshot;
pub use params::{CollectionConfig, HnswParams, MAX_NEIGHBORS_LIMIT};
pub use segment::payload::{Candidates, PayloadIndex, RowSet};
pub use state::QueryPlan;

// For `crate::fuzzing` only: building WAL files and resealing damaged segment files.
pub(crate) use segment::blocked::reseal_for_fuzzing as reseal_blocked_for_fuzzing;
pub(crate) use wal::{
    encode_record as wal_record_for_fuzzing, file_header as wal_file_header_for_fuzzing,
};
