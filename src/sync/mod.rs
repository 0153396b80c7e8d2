//! pgvector sync: mirrors a PostgreSQL table into a collection — a streaming snapshot, then a
//! change feed (logical replication or a trigger-fed change table), written only through
//! `Collection::apply(batch, Some(position))` so a checkpoint is durable exactly when its data is.
//!
//! - [`config`]: jobs (TOML/JSON file or flags).
//! - [`connect`]: connections (TLS), the table's column types.
//! - [`value`]: binary PostgreSQL values; [`mapping`]: row → record rules.
//! - [`apply`]: coalesced, idempotent writes with a checkpoint; [`position`]: its encoding.
//! - [`snapshot`]: binary `COPY`, resumable by key.
//! - [`pgoutput`]: the logical replication protocol's messages; [`logical`]: the follower.
//! - [`trigger`]: the change-table installer and follower.
//! - [`job`]: one job's life (snapshot, follow, retry with backoff); [`reconcile`].
//! - [`status`]: per-job counters for the status endpoint and `/metrics`.

pub mod apply;
pub mod cli;
pub mod config;
pub mod connect;
pub mod job;
pub mod logical;
pub mod mapping;
pub mod pgoutput;
pub mod position;
pub mod reconcile;
pub mod snapshot;
pub mod status;
pub mod trigger;
pub mod value;

use crate::catalog::CatalogError;
use crate::engine::EngineError;

pub use config::{FollowMode, JobConfig, SyncFile};
pub use status::{JobStatus, SyncRegistry};

/// Everything a sync job can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The job's configuration is wrong (names, URL, columns); retrying will not help.
    #[error("sync config: {0}")]
    Config(String),
    /// PostgreSQL reported an error or the connection failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The replication transport failed.
    #[error("replication: {0}")]
    Replication(#[from] pgwire_replication::PgWireError),
    /// A message from the server could not be decoded.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The collection refused a write or read.
    #[error("collection: {0}")]
    Engine(#[from] EngineError),
    /// The catalog refused (creating or finding the collection).
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// The stored checkpoint cannot be resumed (slot gone, table changed); `rebuild` fixes it.
    #[error("cannot resume: {0}")]
    Resume(String),
    /// A blocking task died.
    #[error("internal: {0}")]
    Internal(String),
}

impl SyncError {
    /// Whether retrying (after a backoff) can succeed: connection and server trouble, not
    /// configuration or a lost slot.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Postgres(_) | SyncError::Replication(_) => true,
            SyncError::Engine(e) => !e.is_user_error(),
            _ => false,
        }
    }
}

/// Runs blocking engine work off the async threads, moving `state` in and out.
pub(crate) async fn blocking<S, T, F>(state: S, f: F) -> Result<(S, T), SyncError>
where
    S: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut S) -> T + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let mut s = state;
        let out = f(&mut s);
        (s, out)
    })
    .await
    .map_err(|e| SyncError::Internal(format!("blocking task failed: {e}")))
}
