//! The catalog's one error enum (`api` maps each variant to a status in one place).

use std::path::PathBuf;

use uuid::Uuid;

use super::RESTORE_JOURNAL;
use crate::engine::EngineError;

/// Catalog failures. `api` maps each variant to a status in one place.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A collection or database name breaks Chroma's naming rule.
    #[error(
        "Validation error: name: Expected a name containing 3-512 characters from [a-zA-Z0-9._-], \
         starting and ending with a character in [a-zA-Z0-9]. Got: {0}"
    )]
    InvalidName(String),
    /// Any other invalid argument, with Chroma's message.
    #[error("{0}")]
    InvalidArgument(String),
    /// Creating a tenant that exists.
    #[error("Tenant [{0}] already exists")]
    TenantExists(String),
    /// Reading a tenant that does not exist.
    #[error("Tenant [{0}] not found")]
    TenantNotFound(String),
    /// Creating a database that exists.
    #[error("Database [{0}] already exists")]
    DatabaseExists(String),
    /// Reading or deleting a database that does not exist (`ask` adds Chroma's GET hint).
    #[error("Database [{name}] not found{}", if *.ask { ". Are you sure it exists?" } else { "" })]
    DatabaseNotFound {
        /// The database name.
        name: String,
        /// Whether to add ". Are you sure it exists?" (Chroma does on GET).
        ask: bool,
    },
    /// Creating a collection in a database that does not exist (a 400 in Chroma).
    #[error("Database [{0}] does not exist")]
    DatabaseMissing(String),
    /// A collection name already taken in its database.
    #[error("Collection [{0}] already exists")]
    CollectionExists(String),
    /// Creating one more collection would pass the server's limit (`--max-collections`).
    #[error("The server holds {0} collections, its limit (--max-collections); delete one first")]
    CollectionLimit(usize),
    /// No collection with this name.
    #[error("Collection [{0}] does not exist")]
    CollectionNameNotFound(String),
    /// No collection with this id.
    #[error("Collection [{0}] does not exist.")]
    CollectionIdNotFound(Uuid),
    /// The collection exists but its data failed to open at startup; it stays unavailable.
    #[error("Collection [{name}] ({id}) is unavailable: it failed to open: {reason}")]
    CollectionUnavailable {
        /// Collection id.
        id: Uuid,
        /// Collection name.
        name: String,
        /// The engine's error, as text.
        reason: String,
    },
    /// The engine failed while creating or changing a collection.
    #[error("Collection [{name}] ({id}): {source}")]
    Engine {
        /// Collection id.
        id: Uuid,
        /// Collection name.
        name: String,
        /// What failed.
        #[source]
        source: EngineError,
    },
    /// The data folder is locked by another process, or could not be locked.
    #[error(transparent)]
    Lock(EngineError),
    /// Reading or writing the catalog file (or a collection folder) failed.
    #[error("catalog I/O error during {op} on {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The device is full; the catalog was left unchanged.
    #[error("no space left on device while writing {0}")]
    NoSpace(PathBuf),
    /// The catalog file cannot be read back; the server refuses to start rather than guess.
    #[error("catalog file {path} is corrupt: {reason}")]
    Corrupt {
        /// The catalog file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A restore stopped half way through its swap (its journal is still there).
    #[error(
        "{0} holds an interrupted restore ({RESTORE_JOURNAL}); finish it with \
         `vectord restore --finish --path {0}` before starting the server"
    )]
    InterruptedRestore(PathBuf),
}

impl CatalogError {
    /// An I/O failure, or `NoSpace` when the device is full (the catalog is then known to be
    /// unchanged, which a caller may tell the client).
    pub(super) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> CatalogError {
        let path = path.into();
        if crate::fsutil::is_storage_full(&source) {
            return CatalogError::NoSpace(path);
        }
        CatalogError::Io { op, path, source }
    }
}
