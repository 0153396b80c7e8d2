//! The `vectord` command line. Wiring only: parse flags, set up logging, open the catalog, bind,
//! serve until SIGINT or SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use vectord::api::{self, AppState};
use vectord::catalog::Catalog;
use vectord::config::{RunArgs, Settings};

/// A self-hosted vector retrieval server that speaks Chroma's HTTP API.
#[derive(Debug, Parser)]
#[command(name = "vectord", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (flags as `chroma run`).
    Run(RunArgs),
    /// pgvector sync: run, install, reconcile, rebuild, status, drop-slot.
    #[command(subcommand)]
    Sync(Box<vectord::sync::cli::SyncCommand>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Run(args) => Settings::from_args(args)
            .map_err(anyhow::Error::from)
            .and_then(run),
        Command::Sync(cmd) => run_sync(*cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            tracing::error!(error = format!("{e:#}"), "vectord failed");
            eprintln!("vectord: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs as JSON lines when stdout is not a terminal (containers, CI), as text otherwise;
/// `RUST_LOG` overrides the default `info` level.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::io::stdout().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}

fn run(settings: Settings) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let path = settings.path.clone();
        let catalog = tokio::task::spawn_blocking(move || Catalog::open(&path))
            .await?
            .with_context(|| format!("opening data folder {}", settings.path.display()))?;
        let failed = catalog.failed_collections().len();
        let addrs = settings
            .bind_addrs()
            .with_context(|| format!("resolving host {:?}", settings.host))?;
        let listener = TcpListener::bind(&addrs[..])
            .await
            .with_context(|| format!("binding {}:{}", settings.host, settings.port))?;
        tracing::info!(
            addr = %listener.local_addr()?,
            path = %settings.path.display(),
            allow_reset = settings.allow_reset,
            failed_collections = failed,
            "vectord listening"
        );
        let sync_file = match &settings.sync_config {
            Some(p) => Some(vectord::sync::SyncFile::load(p)?),
            None => None,
        };
        let state = AppState::new(catalog, settings);
        let catalog = std::sync::Arc::clone(&state.catalog);
        let (stop_sync, sync_stopped) = tokio::sync::watch::channel(false);
        let jobs = match &sync_file {
            Some(f) => vectord::sync::job::spawn_all(
                std::sync::Arc::clone(&catalog),
                &f.job,
                &state.sync,
                sync_stopped,
            ),
            None => Vec::new(),
        };
        api::serve(listener, state, shutdown_signal()).await?;
        // Sync jobs write their last batch and checkpoint before the final flush.
        let _ = stop_sync.send(true);
        for j in jobs {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), j).await;
        }
        // Requests have drained: write memtables out so the next start maps everything.
        let failed = tokio::task::spawn_blocking(move || catalog.flush_all()).await?;
        tracing::info!(flush_failures = failed, "vectord stopped");
        Ok(())
    })
}

fn run_sync(cmd: vectord::sync::cli::SyncCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(vectord::sync::cli::execute(cmd))?;
    Ok(())
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
