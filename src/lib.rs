//! vectord: a self-hosted vector retrieval server that speaks Chroma's HTTP API.
//!
//! # Layout
//! Three tiers. `api` calls into both others; the operations call into the storage domain; the
//! storage domain calls neither (`sync`'s command line only borrows `config`'s default data
//! folder), and the tools call nothing of the crate at all.
//!
//! HTTP:
//! - [`api`]: Chroma's HTTP API (axum): decodes, checks, calls the storage domain, maps errors.
//!
//! Storage domain:
//! - [`types`]: the engine's public vocabulary (records, batches, requests, results).
//! - [`filter`]: `where` / `where_document` parsing and evaluation.
//! - [`engine`]: durable collections (WAL, recovery, exact search).
//! - [`index`]: distance kernels and ANN indexes.
//! - [`catalog`]: tenants, databases and collections, persisted atomically.
//! - [`embed`]: server-side embeddings through an OpenAI-compatible API, with a cache.
//! - [`sync`]: pgvector sync (snapshot, logical replication or trigger follow, reconcile).
//!
//! Operations:
//! - [`config`]: server settings and limits from flags and the environment.
//! - [`backup`]: online snapshots, their copies in an S3-compatible bucket, restore.
//! - [`telemetry`]: the Prometheus registry behind `/metrics`, and the data-access audit log.
//! - [`tools`]: `vectord bench` and `vectord import` / `export`, clients over HTTP only.
//!
//! The `vectord` binary (`src/main.rs`, its subcommands in `src/cli/`) is wiring over these.
//! The fuzz targets' entry points (`fuzzing`) are compiled only with the `fuzzing` feature.
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
