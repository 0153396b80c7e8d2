//! Durable collections: MANIFEST, write-ahead log with group commit, memtables indexed behind
//! the acknowledgement, memory-mapped segments, recovery, compaction, and the read path.
//!
//! The public surface is [`Collection`] (create/open, `apply`, `get`, `query`, `count`) plus
//! [`DirLock`] for the one-process-per-folder rule.
//!
//! # Layout
//! - `collection` (+ `collection/`): the handle, and one file per concern behind it: the
//!   MANIFEST, the write path, flush and publish, recovery, compaction, purge, the background
//!   turn.
//! - `state`: the sources a read sees (active and frozen memtable, segments, tombstones) and
//!   how a resolved change is applied to them.
//! - `read/`: get, query fan-out, and the per-source search plans over one source trait.
//! - `memtable`, `segment/`, `wal`, `log`: the data structures and files.
//! - `background`, `budget`: the shared indexing/flush pool and the memtable memory budget.
//! - `params`: a collection's space and HNSW settings; `online_copy`: the online copy of one
//!   collection folder that snapshots are made of.

mod background;
mod bitset;
mod budget;
mod collection;
mod error;
mod log;
mod memtable;
mod online_copy;
mod params;
mod read;
mod segment;
mod state;
mod wal;

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
pub use read::QueryPlan;
pub use segment::payload::{Candidates, PayloadIndex, RowSet};

// For `crate::fuzzing` only: building WAL files and resealing damaged segment files.
#[cfg(feature = "fuzzing")]
pub(crate) use segment::blocked::reseal_for_fuzzing as reseal_blocked_for_fuzzing;
#[cfg(feature = "fuzzing")]
pub(crate) use wal::{
    encode_record as wal_record_for_fuzzing, file_header as wal_file_header_for_fuzzing,
};
