//! The index layer's error type. Variants say whose fault an error is: the caller's parameters
//! or inputs, the stored file, or the machine, so the engine can map them without string matching.

use std::io;
use std::path::PathBuf;

/// Errors from building, exporting, opening or searching an ANN index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A build or search parameter is out of range; nothing was changed. Checked before any
    /// graph is built or walked.
    #[error("invalid index parameter: {0}")]
    InvalidParams(String),
    /// A vector's length differs from the index dimension.
    #[error("dimension mismatch: index has {expected}, got {got}")]
    Dimension {
        /// The index's dimension.
        expected: usize,
        /// The offending vector's length.
        got: usize,
    },
    /// A vector holds NaN or an infinity; the graph cannot order it, so it is refused.
    #[error("vector for point {id} has a non-finite component")]
    NonFinite {
        /// The point id given with the vector.
        id: u32,
    },
    /// A point id was inserted twice into one builder.
    #[error("point id {0} inserted twice")]
    DuplicateId(u32),
    /// The builder was frozen for export and takes no more inserts.
    #[error("index is frozen; no more inserts")]
    Frozen,
    /// Exporting needs at least one point (a graph file names an entry point).
    #[error("cannot export an empty index")]
    Empty,
    /// Export needs the ids to be exactly `0..n` (dense row numbers); these were not.
    #[error("point ids are not dense: {0}")]
    NotDense(String),
    /// A graph and a vector store that do not belong together (different point counts).
    #[error("graph has {graph} points but the vector store has {store}")]
    StoreMismatch {
        /// Points in the graph.
        graph: usize,
        /// Rows in the vector store.
        store: usize,
    },
    /// A file is damaged: bad magic, checksum mismatch, truncation, or an impossible value.
    /// Opening never reads past what the header promises; search refuses a bad block.
    #[error("corrupt index file {file}: {reason} (at byte offset {offset})")]
    Corrupt {
        /// The damaged file (or the name given to an in-memory image).
        file: PathBuf,
        /// Byte offset of the damaged part.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The file was written by a format version this build does not read.
    #[error("index file {file} has format version {found}; this build reads {supported}")]
    Version {
        /// The file.
        file: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// An I/O operation failed; `op` says which, `path` where.
    #[error("I/O error during {op} on {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or folder involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Result alias for the index layer.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;
