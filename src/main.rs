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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Run(args) => Settings::from_args(args)
            .map_err(anyhow::Error::from)
            .and_then(run),
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
        if settings.embed.enabled() {
            // The key itself is never logged; only whether one is set.
            tracing::info!(
                base_url = %settings.embed.base_url_for_logs(),
                model = %settings.embed.model,
                api_key_set = settings.embed.api_key.is_some(),
                "server-side embeddings enabled"
            );
        }
        let metrics_port = settings.metrics_port;
        let state = AppState::new(catalog, settings).context("setting up auth")?;
        let catalog = std::sync::Arc::clone(&state.catalog);
        // One signal stops both listeners.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let metrics_server = match metrics_port {
            Some(port) => {
                let addrs: Vec<_> = addrs
                    .iter()
                    .map(|a| std::net::SocketAddr::new(a.ip(), port))
                    .collect();
                let l = TcpListener::bind(&addrs[..])
                    .await
                    .with_context(|| format!("binding metrics port {port}"))?;
                tracing::info!(addr = %l.local_addr()?, "metrics listening");
                Some(tokio::spawn(api::serve_metrics(
                    l,
                    state.clone(),
                    stopped(stop_rx.clone()),
                )))
            }
            None => None,
        };
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        api::serve(listener, state, stopped(stop_rx)).await?;
        if let Some(m) = metrics_server {
            m.await??;
        }
        // Requests have drained: write memtables out so the next start maps everything.
        let failed = tokio::task::spawn_blocking(move || catalog.flush_all()).await?;
        tracing::info!(flush_failures = failed, "vectord stopped");
        Ok(())
    })
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
