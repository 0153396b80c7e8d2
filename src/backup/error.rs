//! The one error of taking, checking and restoring snapshots.

use std::io;
use std::path::PathBuf;

use uuid::Uuid;

use crate::catalog::CatalogError;
use crate::engine::EngineError;
use crate::fsutil::FsError;

/// Snapshot and restore failures.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Taking the catalog or a collection's snapshot failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Finishing a collection's snapshot failed.
    #[error("collection {id}: {source}")]
    Collection {
        /// The collection.
        id: Uuid,
        /// What failed.
        #[source]
        source: EngineError,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The folder is not a complete snapshot, or a file does not match its recorded checksum.
    #[error("snapshot {path} is invalid: {reason}")]
    Invalid {
        /// The snapshot folder or the offending file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The restore target holds data and `force` was not given.
    #[error("{0} is not empty; restore replaces a data folder only with --force")]
    TargetNotEmpty(PathBuf),
    /// The restore target is in use by a running server.
    #[error("{0} is locked by a running vectord; stop it before restoring")]
    TargetLocked(PathBuf),
    /// An earlier restore into the target stopped half way through its swap.
    #[error(
        "{0} holds an interrupted restore; finish it first with `vectord restore --finish --path {0}`"
    )]
    Interrupted(PathBuf),
    /// A one-collection snapshot given to the whole-folder restore, which would drop every
    /// other collection.
    #[error(
        "snapshot {path} holds only collection {collection}; restore it with \
         `vectord restore --collection`, which keeps the folder's other collections"
    )]
    OneCollection {
        /// The snapshot folder.
        path: PathBuf,
        /// Its collection.
        collection: Uuid,
    },
    /// The snapshot has no collection matching the selector.
    #[error("snapshot {path} has no collection {collection}")]
    NoSuchCollection {
        /// The snapshot folder.
        path: PathBuf,
        /// The selector, as text.
        collection: String,
    },
    /// A whole-folder snapshot of several collections and no collection chosen.
    #[error("snapshot {0} holds several collections; choose one with --collection")]
    NeedsCollection(PathBuf),
    /// The collection exists in the target and `force` was not given.
    #[error("collection {name} ({id}) exists in {path}; restore replaces it only with --force")]
    CollectionPresent {
        /// Collection id.
        id: Uuid,
        /// Collection name.
        name: String,
        /// The data folder.
        path: PathBuf,
    },
    /// Another collection of the target has the restored collection's name in its database.
    #[error(
        "{path} already has a different collection {name} ({id}) in {tenant}/{database}; \
         delete or rename it before restoring"
    )]
    NameTaken {
        /// The other collection's id.
        id: Uuid,
        /// The shared name.
        name: String,
        /// Tenant.
        tenant: String,
        /// Database.
        database: String,
        /// The data folder.
        path: PathBuf,
    },
    /// The task taking or uploading a snapshot panicked or was cancelled (the message says
    /// which task).
    #[error("{0}")]
    Task(String),
}

/// A file-system step of a snapshot or restore failed: the same `Io` error, step and path kept.
impl From<FsError> for SnapshotError {
    fn from(e: FsError) -> SnapshotError {
        SnapshotError::io(e.op, e.path, e.source)
    }
}

impl SnapshotError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: io::Error,
    ) -> SnapshotError {
        SnapshotError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> SnapshotError {
        SnapshotError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
