//! vectord: a self-hosted vector retrieval server that speaks Chroma's HTTP API.
//!
//! # Layout
//! - [`types`]: the engine's public vocabulary (records, batches, requests, results).
//! - [`filter`]: `where` / `where_document` parsing and evaluation.
//! - [`engine`]: durable collections (WAL, recovery, exact search).
//! - [`index`]: distance kernels and ANN indexes.
//! - [`catalog`]: tenants, databases and collections, persisted atomically.
//! - [`api`]: Chroma's HTTP API (axum).
//! - [`backup`]: online snapshots, their copies in an S3-compatible bucket, restore.
//! - [`config`]: server settings and limits (timeouts, backpressure, size caps) from flags and
//!   the environment.
//! - [`embed`]: server-side embeddings through an OpenAI-compatible API, with a cache.
//! - [`sync`]: pgvector sync (snapshot, logical replication or trigger follow, reconcile).
//! - [`telemetry`]: the Prometheus registry behind `/metrics`, and the data-access audit log.
//! - [`tools`]: `vectord bench` and `vectord import` / `export`, clients over HTTP only.
//!
//! `ARCHITECTURE.md` at the repository root maps the modules and their invariants.
#![warn(missing_docs)]

/// A `fail` failpoint (feature `failpoints`) for the crash matrix: the action `return(abort)`
/// aborts the process right there, as a crash would; any other `return` makes the site fail
/// with `$err`. Without the feature it compiles to nothing.
macro_rules! crash_point {
    ($name:expr, $err:expr) => {
        fail::fail_point!($name, |arg: Option<String>| {
            if arg.as_deref() == Some("abort") {
                std::process::abort();
            }
            $err
        })
    };
}

pub mod api;
pub mod backup;
pub mod catalog;
pub mod config;
pub mod embed;
pub mod engine;
pub mod filter;
pub mod fsutil;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod index;
pub mod sync;
pub mod telemetry;
pub mod tools;
pub mod types;
