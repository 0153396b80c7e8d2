//! `vectord run`: the server. Wiring only: open the catalog, bind, start the snapshot service,
//! the scrub and the sync jobs, serve until SIGINT or SIGTERM, drain, flush.

use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use vectord::api::{self, AppState};
use vectord::backup::s3::S3Target;
use vectord::catalog::Catalog;
use vectord::config::Settings;
use vectord::telemetry::audit::AuditLog;

use super::common::runtime;

/// The shutdown signal as the listeners see it: when it arrived, once it has.
type StopReceiver = tokio::sync::watch::Receiver<Option<tokio::time::Instant>>;

/// Runs [`Catalog::scrub`] every `every`, on a blocking thread (one at a time), and reports
/// the result in metrics and the log.
async fn scrub_schedule(state: AppState, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        let catalog = state.catalog.clone();
        match tokio::task::spawn_blocking(move || catalog.scrub()).await {
            Ok((damaged, bytes)) => {
                state.metrics.observe_scrub(damaged, bytes);
                tracing::info!(
                    damaged_collections = damaged,
                    verified_bytes = bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "scrub finished"
                );
            }
            Err(e) => tracing::error!(error = %e, "scrub task failed"),
        }
    }
}

/// Runs the server with `settings` until a shutdown signal, then drains and flushes.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    let rt = runtime()?;
    let result = rt.block_on(async move {
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
        let every = settings.snapshot_every;
        let drain = settings.limits.shutdown_drain;
        let scrub_every = settings.scrub_every;
        let metrics_port = settings.metrics_port;
        let audit = match &settings.audit_log {
            Some(path) => AuditLog::to_file(path)
                .with_context(|| format!("opening the audit log {}", path.display()))?,
            None => AuditLog::to_tracing(),
        };
        let sync_file = match &settings.sync_config {
            Some(p) => Some(vectord::sync::SyncFile::load(p)?),
            None => None,
        };
        let remote = match &settings.snapshot_s3 {
            Some(s3) => Some(S3Target::new(s3).context("--snapshot-s3-url")?),
            None => None,
        };
        let mut state = AppState::new(catalog, settings)
            .context("setting up auth")?
            .with_audit(audit);
        if let Some(remote) = remote {
            tracing::info!(url = %remote.url(), "snapshots are also uploaded");
            state.snapshots = state.snapshots.with_remote(remote);
        }
        // Gauges from the snapshots already taken, and the schedule when one is set.
        state.snapshots.start(every).await?;
        if let Some(every) = scrub_every {
            tokio::spawn(scrub_schedule(state.clone(), every));
        }
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
        // One signal stops both listeners and the sync jobs; it carries when it arrived, so
        // the whole shutdown keeps to one drain deadline.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(None::<tokio::time::Instant>);
        let stopped = move |mut rx: StopReceiver| async move {
            let _ = rx.wait_for(Option::is_some).await;
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
            let _ = stop_tx.send(Some(tokio::time::Instant::now()));
            // Sync jobs write their last batch and checkpoint while requests drain.
            let _ = stop_sync.send(true);
        });
        api::serve(listener, state, stopped(stop_rx.clone())).await?;
        if let Some(m) = metrics_server {
            m.await??;
        }
        let signalled = (*stop_rx.borrow()).unwrap_or_else(tokio::time::Instant::now);
        let deadline = signalled + drain;
        for j in jobs {
            if tokio::time::timeout_at(deadline, j).await.is_err() {
                tracing::warn!("a sync job did not stop within the shutdown drain deadline");
            }
        }
        // Requests have drained (or the deadline passed; the WAL has what they acknowledged):
        // write memtables out so the next start maps everything.
        let failed = tokio::task::spawn_blocking(move || catalog.flush_all()).await?;
        tracing::info!(flush_failures = failed, "vectord stopped");
        Ok::<(), anyhow::Error>(())
    });
    // Requests cut off by the drain deadline may still sit on blocking threads; dropping the
    // runtime would wait for them. The flush is done and the WAL holds every acknowledged write.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
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
