//! The `vectord` subcommands: their flags (clap) and what each runs. One file per family;
//! `main.rs` only parses, sets up logging and calls [`Command::execute`].
//!
//! - `run.rs`: `vectord run`, the server (wiring: catalog, listeners, schedules, shutdown).
//! - `backup.rs`: `vectord snapshot …` and `vectord restore`.
//! - `compact.rs`: `vectord compact`, purging a stopped server's folder.
//! - `migrate.rs`: `vectord import` and `vectord export`.
//! - `common.rs`: what several of them share (the collection flags, the runtime).
//!
//! `vectord sync …` and `vectord bench` are dispatched here but defined by their own modules
//! (`vectord::sync::cli`, `vectord::tools::bench`): the sync command drives sync's internals,
//! which stay private to that module.

mod backup;
mod common;
mod compact;
mod migrate;
mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use vectord::config::{RunArgs, S3Args, Settings};
use vectord::sync::cli::SyncCommand;
use vectord::tools::bench::BenchArgs;

use backup::SnapshotCommand;
use common::{runtime, CollectionArgs};
use migrate::{CopyArgs, MigrateJob};

/// A self-hosted vector retrieval server that speaks Chroma's HTTP API.
#[derive(Debug, Parser)]
#[command(name = "vectord", version, about)]
pub struct Cli {
    #[command(subcommand)]
    /// The subcommand.
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (flags as `chroma run`).
    Run(Box<RunArgs>),
    /// pgvector sync: run, install, reconcile, rebuild, status, drop-slot.
    #[command(subcommand)]
    Sync(Box<SyncCommand>),
    /// Take, list or verify data-folder snapshots (while the server runs, use
    /// `POST /api/v2/admin/snapshots` instead: the folder is locked by the server).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Replace a data folder with a verified snapshot, or put back one collection of a
    /// snapshot leaving the others alone (the server must be stopped).
    Restore {
        /// The snapshot folder (one with SNAPSHOT.json).
        #[arg(
            long,
            required_unless_present_any = ["from_s3", "finish"],
            conflicts_with = "from_s3"
        )]
        from: Option<PathBuf>,
        /// Download the snapshot from this bucket and prefix (`s3://bucket/prefix`), verify every
        /// checksum, then restore it.
        #[arg(long)]
        from_s3: Option<String>,
        /// Which remote snapshot (folder name) to restore [default: the newest complete whole-folder one].
        #[arg(long, requires = "from_s3")]
        snapshot: Option<String>,
        #[command(flatten)]
        s3: S3Args,
        /// The data folder to restore into.
        #[arg(long, default_value = vectord::config::DEFAULT_PATH)]
        path: PathBuf,
        /// Replace a data folder holding data (its catalog and collections are kept in
        /// `<path>/.before-restore-<time>/`), or, restoring one collection, that collection
        /// (kept as `<path>/collections/.before-restore-<id>-<time>`).
        #[arg(long)]
        force: bool,
        /// Finish a restore into `--path` that stopped half way through its swap (the server
        /// refuses to start until then); needs no snapshot.
        #[arg(long, conflicts_with_all = ["from", "from_s3", "force"])]
        finish: bool,
        /// Restore only this collection of the snapshot into the existing folder (implied by a
        /// one-collection snapshot).
        #[command(flatten)]
        which: CollectionArgs,
    },
    /// Purge deleted records from a data folder no server is using: flush, checkpoint the WAL
    /// and rewrite every segment without deleted rows (while the server runs, use
    /// `POST /api/v2/admin/collections/{id}/compact`).
    Compact {
        /// The data folder.
        #[arg(long, default_value = vectord::config::DEFAULT_PATH)]
        path: PathBuf,
        /// Only this collection [default: every collection].
        #[command(flatten)]
        which: CollectionArgs,
    },
    /// Copy every database and collection from a Chroma server (or an NDJSON export) into a
    /// running vectord, resumably.
    Import {
        /// Base URL of the source Chroma server, e.g. http://chroma.internal:8000.
        #[arg(long, required_unless_present = "file", conflicts_with = "file")]
        from_chroma: Option<String>,
        /// An NDJSON file written by `vectord export`.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Base URL of the target server.
        #[arg(long, default_value = "http://localhost:8000")]
        to: String,
        #[command(flatten)]
        copy: CopyArgs,
    },
    /// Benchmark Chroma-compatible servers: ingest, recall@k, latency, QPS per concurrency, an
    /// ef_search sweep and filtered search, with exact ground truth computed locally.
    Bench(Box<BenchArgs>),
    /// Write every collection of a Chroma-compatible server to an NDJSON file.
    Export {
        /// Base URL of the server to read.
        #[arg(long, default_value = "http://localhost:8000")]
        from: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        copy: CopyArgs,
    },
}

impl Command {
    /// Runs the subcommand to completion.
    pub fn execute(self) -> anyhow::Result<()> {
        match self {
            Command::Run(args) => Settings::from_args(*args)
                .map_err(anyhow::Error::from)
                .and_then(run::run),
            Command::Snapshot(cmd) => backup::snapshot_command(cmd),
            Command::Import {
                from_chroma,
                file,
                to,
                copy,
            } => migrate::migrate_command(
                MigrateJob::Import {
                    from_chroma,
                    file,
                    to,
                },
                copy,
            ),
            Command::Export { from, out, copy } => {
                migrate::migrate_command(MigrateJob::Export { from, out }, copy)
            }
            Command::Restore {
                from,
                from_s3,
                snapshot,
                s3,
                path,
                force,
                finish,
                which,
            } => {
                if finish {
                    backup::finish_restore_command(&path)
                } else {
                    backup::restore_command(
                        from,
                        from_s3.map(|u| (u, snapshot, s3)),
                        &path,
                        force,
                        which.selector(),
                    )
                }
            }
            Command::Compact { path, which } => compact::compact_command(&path, which.selector()),
            Command::Sync(cmd) => {
                runtime()?.block_on(vectord::sync::cli::execute(*cmd))?;
                Ok(())
            }
            Command::Bench(args) => vectord::tools::bench::run(*args),
        }
    }
}
