//! The engine's error type. `api` maps it to HTTP in one place; the variants say whose fault an
//! error is (caller, stored data, or the machine) so that mapping needs no string matching.

use std::io;
use std::path::PathBuf;

use crate::filter::FilterError;
use crate::types::InputError;

/// Errors from opening, writing or reading a collection.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The caller's batch or request is invalid; nothing was written.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A filter failed to parse (only reachable through the engine's JSON helpers).
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// A file is damaged in a way recovery must not guess about (not a torn tail).
    /// The collection refuses to open; other collections are unaffected.
    #[error("corrupt data in {file}: {reason} (at byte offset {offset})")]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the first bad byte found.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// An I/O operation failed; `op` says which, `path` where.
    #[error("I/O error during {op} on {path}: {source}")]
    Io {
        /// What the engine was doing.
        op: &'static str,
        /// The file or folder involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The device is full (ENOSPC/EDQUOT); the write was rolled back and reads still work.
    #[error("no space left on device while writing {path}")]
    NoSpace {
        /// The file being written.
        path: PathBuf,
    },
    /// Another process (or another handle in this one) holds the folder's lock.
    #[error("{path} is locked by another vectord process")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A WAL sync failed and the log has not recovered yet: writes are refused (the OS may
    /// have dropped the dirty pages, fsync-gate) until the records after the last successful
    /// sync are cut away, which is retried in the background. A write that gets this error
    /// was not acknowledged and may or may not survive a crash before that recovery.
    #[error("collection refuses writes after a failed WAL sync until its log recovers (retried in the background): {0}")]
    Poisoned(String),
    /// The WAL sync covering this write failed; the log was cut back to its last durable
    /// record and the write removed from memory, so it is not applied. Retrying is safe.
    #[error("the write was not applied: the WAL sync failed ({0}); the log recovered, retry")]
    SyncFailed(String),
    /// Writes arrive faster than the collection can index and flush them: the rows waiting
    /// stayed over their bound for the whole stall timeout. The write was not applied; retry
    /// later (HTTP 429).
    #[error("the write was not applied: {0}")]
    Overloaded(String),
    /// A maintenance operation (a purge) could not finish its work because writes or a
    /// shutdown kept interfering; what it did finish is kept, and retrying is safe (HTTP 503).
    #[error("{0}; nothing was lost, retry")]
    Unfinished(String),
    /// A bug: an internal invariant did not hold. The operation was not applied.
    #[error("internal error: {0}")]
    Internal(String),
    /// The folder was written by an unknown format version.
    #[error("{path} has format version {found}; this build reads version {expected}")]
    Version {
        /// The file.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Version this build understands.
        expected: u32,
    },
}

impl EngineError {
    /// Wraps an I/O error, turning "disk full" into its own variant.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> EngineError {
        let path = path.into();
        if crate::fsutil::is_storage_full(&source) {
            return EngineError::NoSpace { path };
        }
        EngineError::Io { op, path, source }
    }

    /// True when the caller caused the error (a 4xx on the wire).
    pub fn is_user_error(&self) -> bool {
        matches!(self, EngineError::Input(_) | EngineError::Filter(_))
    }
}

/// File-system helper failures keep their step and path; "disk full" becomes
/// [`EngineError::NoSpace`].
impl From<crate::fsutil::FsError> for EngineError {
    fn from(e: crate::fsutil::FsError) -> EngineError {
        EngineError::io(e.op, e.path, e.source)
    }
}

impl From<crate::fsutil::LockError> for EngineError {
    fn from(e: crate::fsutil::LockError) -> EngineError {
        match e {
            crate::fsutil::LockError::Held { path } => EngineError::Locked { path },
            crate::fsutil::LockError::Io(e) => e.into(),
        }
    }
}

impl From<crate::index::error::IndexError> for EngineError {
    fn from(e: crate::index::error::IndexError) -> EngineError {
        use crate::index::error::IndexError;
        match e {
            IndexError::Corrupt {
                file,
                offset,
                reason,
            } => EngineError::Corrupt {
                file,
                offset,
                reason,
            },
            IndexError::Version {
                file,
                found,
                supported,
            } => EngineError::Version {
                path: file,
                found,
                expected: supported,
            },
            IndexError::Io { op, path, source } => EngineError::io(op, path, source),
            // Everything else is a broken invariant between the engine and its index.
            other => EngineError::Internal(format!("index: {other}")),
        }
    }
}
