//! One job's life: find or create the collection, read its checkpoint, snapshot if needed, then
//! follow; transient failures (connection lost, Postgres restarting) are retried with
//! exponential backoff from the durable checkpoint, others stop the job with the error in its
//! status.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::apply::Applier;
use super::config::{FollowMode, JobConfig};
use super::connect::{column_kinds, connect};
use super::mapping::Mapper;
use super::position::Position;
use super::status::StatusHandle;
use super::{logical, snapshot, trigger, SyncError};
use crate::catalog::{Catalog, NewCollection};
use crate::engine::{Collection, CollectionConfig};

/// Finds the job's collection, creating it (with the job's space) when missing.
pub fn open_collection(catalog: &Catalog, job: &JobConfig) -> Result<Arc<Collection>, SyncError> {
    let (entry, created) = catalog.create_collection(
        NewCollection {
            tenant: job.tenant.clone(),
            database: job.database.clone(),
            name: job.collection.clone(),
            metadata: None,
            configuration: Some(serde_json::json!({"hnsw": {"space": job.space.as_str()}})),
            schema: None,
            config: CollectionConfig {
                space: job.space,
                ..CollectionConfig::default()
            },
        },
        true,
    )?;
    if created {
        tracing::info!(job = %job.name, collection = %job.collection, space = job.space.as_str(), "collection created");
    }
    let coll = Arc::clone(entry.engine()?);
    if coll.config().space != job.space {
        return Err(SyncError::Config(format!(
            "collection {} exists with space {}, the job wants {}",
            job.collection,
            coll.config().space.as_str(),
            job.space.as_str()
        )));
    }
    Ok(coll)
}

/// How a run ends when nothing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Follow until shutdown.
    Shutdown,
    /// Stop once caught up with the source (CLI `rebuild`, tests, one-shot runs).
    CaughtUp,
}

/// Runs the job until shutdown (or until caught up), retrying transient failures with
/// exponential backoff (0.5 s doubling to 30 s, reset after progress).
pub async fn run(
    catalog: Arc<Catalog>,
    job: JobConfig,
    status: StatusHandle,
    mut shutdown: watch::Receiver<bool>,
    until: Until,
) -> Result<(), SyncError> {
    let mut backoff = Duration::from_millis(500);
    loop {
        let applied_before = status.lock().applied;
        match run_once(&catalog, &job, &status, &mut shutdown, until).await {
            Ok(()) => {
                status.lock().phase = if *shutdown.borrow() {
                    "stopped"
                } else {
                    "done"
                }
                .into();
                return Ok(());
            }
            Err(e) if e.is_transient() && !*shutdown.borrow() => {
                {
                    let mut st = status.lock();
                    st.error(&e);
                    st.reconnects += 1;
                    st.phase = "retrying".into();
                    st.set_caught_up(false);
                    if st.applied > applied_before {
                        backoff = Duration::from_millis(500);
                    }
                }
                tracing::warn!(job = %job.name, error = %e, retry_in_ms = backoff.as_millis() as u64, "sync failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    status.lock().phase = "stopped".into();
                    return Ok(());
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                tracing::error!(job = %job.name, error = %e, "sync job stopped");
                let mut st = status.lock();
                st.error(&e);
                st.phase = if *shutdown.borrow() {
                    "stopped"
                } else {
                    "failed"
                }
                .into();
                return if *shutdown.borrow() { Ok(()) } else { Err(e) };
            }
        }
    }
}

async fn run_once(
    catalog: &Arc<Catalog>,
    job: &JobConfig,
    status: &StatusHandle,
    shutdown: &mut watch::Receiver<bool>,
    until: Until,
) -> Result<(), SyncError> {
    let client = connect(job).await?;
    let kinds = column_kinds(&client, job).await?;
    let coll = {
        let catalog = Arc::clone(catalog);
        let job = job.clone();
        tokio::task::spawn_blocking(move || open_collection(&catalog, &job))
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))??
    };
    let mut applier = Applier::new(&job.name, Arc::clone(&coll), Mapper::new(job, kinds));
    let mut position = coll.source_position().map(|p| {
        Position::decode(&p).ok_or_else(|| {
            SyncError::Resume(format!(
                "collection {} holds checkpoint {:?}, not one of ours; rebuild it",
                job.collection, p.0
            ))
        })
    });
    let position = position.take().transpose()?;
    status.lock().position = position.as_ref().map(Position::describe);

    // Phase 1: the snapshot (fresh, or resumed after its last id).
    let (lsn, resume_after) = match position {
        None => {
            if coll.count() > 0 {
                return Err(SyncError::Resume(format!(
                    "collection {} has records but no sync checkpoint; rebuild it or pick another collection",
                    job.collection
                )));
            }
            let lsn = match job.mode {
                FollowMode::Logical => {
                    logical::ensure_publication(&client, job).await?;
                    // Nothing was consumed from a slot left by an earlier first attempt.
                    logical::drop_slot(&client, &job.slot_name()).await?;
                    Some(logical::create_slot(&client, &job.slot_name()).await?)
                }
                FollowMode::Trigger => {
                    trigger::check_installed(&client, job).await?;
                    None
                }
                FollowMode::None => None,
            };
            // The slot's consistent point is durable before any row is copied.
            let pos = Position::Snapshot {
                mode: job.mode,
                lsn,
                last_id: None,
            }
            .encode();
            let (a, r) = super::blocking(applier, move |a| a.flush(Some(pos))).await?;
            applier = a;
            r?;
            (Some(lsn), None)
        }
        Some(Position::Snapshot { mode, lsn, last_id }) => {
            if mode != job.mode {
                return Err(SyncError::Resume(format!(
                    "the snapshot was started in {} mode, the job is now {}; rebuild",
                    mode.as_str(),
                    job.mode.as_str()
                )));
            }
            if mode == FollowMode::Logical {
                logical::resume_point(&client, job, lsn.unwrap_or(0)).await?;
            }
            (Some(lsn), last_id)
        }
        Some(other) => {
            let ok = matches!(
                (&other, job.mode),
                (Position::Logical { .. }, FollowMode::Logical)
                    | (Position::Trigger { .. }, FollowMode::Trigger)
                    | (Position::Copied, FollowMode::None)
            );
            if !ok {
                return Err(SyncError::Resume(format!(
                    "the collection is synced by another mode ({}); rebuild to switch to {}",
                    other.describe(),
                    job.mode.as_str()
                )));
            }
            return follow(&client, job, applier, other, status, shutdown, until).await;
        }
    };
    let lsn = lsn.flatten();
    let done = match job.mode {
        FollowMode::Logical => Position::Logical {
            lsn: lsn.unwrap_or(0),
        },
        FollowMode::Trigger => Position::Trigger { seq: 0 },
        FollowMode::None => Position::Copied,
    };
    status.lock().phase = "snapshot".into();
    let (applier, finished) = snapshot::copy_table(
        &client,
        job,
        applier,
        lsn,
        resume_after,
        done.clone(),
        status,
        shutdown,
    )
    .await?;
    if !finished {
        return Ok(());
    }
    follow(&client, job, applier, done, status, shutdown, until).await
}

async fn follow(
    client: &tokio_postgres::Client,
    job: &JobConfig,
    applier: Applier,
    from: Position,
    status: &StatusHandle,
    shutdown: &mut watch::Receiver<bool>,
    until: Until,
) -> Result<(), SyncError> {
    status.lock().phase = "follow".into();
    match from {
        Position::Logical { lsn } => {
            let start = logical::resume_point(client, job, lsn).await?;
            logical::follow(
                client,
                job,
                applier,
                start,
                status,
                shutdown,
                until == Until::CaughtUp,
            )
            .await?;
        }
        Position::Trigger { .. } => {
            trigger::follow(job, applier, status, shutdown, until == Until::CaughtUp).await?;
        }
        Position::Copied | Position::Snapshot { .. } => {
            status.lock().set_caught_up(true);
            if until == Until::Shutdown {
                // A snapshot-only job has nothing to follow; it stays listed until shutdown.
                let _ = shutdown.changed().await;
            }
        }
    }
    Ok(())
}

/// Starts every job of a config file on the current runtime; they stop when `shutdown` flips.
pub fn spawn_all(
    catalog: Arc<Catalog>,
    jobs: &[JobConfig],
    registry: &super::SyncRegistry,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    jobs.iter()
        .map(|job| {
            let status = registry.register(job);
            let catalog = Arc::clone(&catalog);
            let job = job.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                // Errors are in the job's status and the log; the server keeps serving.
                let _ = run(catalog, job, status, shutdown, Until::Shutdown).await;
            })
        })
        .collect()
}
