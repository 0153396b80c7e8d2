//! The server's snapshot service: where snapshots go, how many to keep, one at a time, the copy
//! in a bucket after each one, and the schedule. The admin route and the schedule both take
//! snapshots through [`SnapshotService::snapshot_now`]; `vectord snapshot create` drives
//! [`Snapshots`] directly (no server, no metrics).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use super::error::SnapshotError;
use super::local::{create_scoped, list, new_name_for, prune};
use super::manifest::SnapshotInfo;
use super::s3::{S3Error, S3Target};
use crate::catalog::Catalog;
use crate::telemetry::metrics::Metrics;

/// The server's snapshot service: where snapshots go, how many to keep, one at a time.
#[derive(Debug)]
pub struct Snapshots {
    root: PathBuf,
    keep: usize,
    running: parking_lot::Mutex<()>,
    /// One upload (and the bucket prune after it) at a time: a prune run while another
    /// upload is in flight would take that upload's manifest-less folder for an abandoned one
    /// and delete files it has already sent.
    uploading: tokio::sync::Mutex<()>,
    remote: Option<Arc<S3Target>>,
}

/// What happened to the bucket copy of one snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteCopy {
    /// `s3://bucket/prefix`.
    pub url: String,
    /// Whether every file and the manifest were uploaded.
    pub uploaded: bool,
    /// Bytes sent.
    pub bytes: u64,
    /// Remote snapshots deleted by retention after the upload.
    pub pruned: Vec<String>,
    /// Why the upload or pruning failed (the local snapshot stands regardless).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the HTTP API and logs report about one snapshot (without the file list).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotSummary {
    /// Folder name under the snapshot root.
    pub name: String,
    /// Consistent point, seconds since the Unix epoch.
    pub created_at: u64,
    /// Collections included.
    pub collections: usize,
    /// Collections left out (failed to open).
    pub skipped_collections: Vec<Uuid>,
    /// The one collection of a collection snapshot; absent for a whole-folder snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<Uuid>,
    /// Files and their total size.
    pub files: usize,
    /// Sum of file sizes (hard-linked files count in full).
    pub total_bytes: u64,
    /// The bucket copy, when a bucket is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<RemoteCopy>,
}

impl From<&SnapshotInfo> for SnapshotSummary {
    fn from(i: &SnapshotInfo) -> Self {
        SnapshotSummary {
            name: i.name.clone(),
            created_at: i.created_at,
            collections: i.collections,
            skipped_collections: i.skipped_collections.clone(),
            collection: i.collection,
            files: i.files.len(),
            total_bytes: i.total_bytes,
            s3: None,
        }
    }
}

impl Snapshots {
    /// Snapshots under `root`, keeping the newest `keep` (at least one).
    pub fn new(root: PathBuf, keep: usize) -> Snapshots {
        Snapshots {
            root,
            keep: keep.max(1),
            running: parking_lot::Mutex::new(()),
            uploading: tokio::sync::Mutex::new(()),
            remote: None,
        }
    }

    /// Also copies every snapshot to `remote` (see [`Snapshots::upload`]).
    pub fn with_remote(mut self, remote: S3Target) -> Snapshots {
        self.remote = Some(Arc::new(remote));
        self
    }

    /// The bucket receiving copies, if any.
    pub fn remote(&self) -> Option<&S3Target> {
        self.remote.as_deref()
    }

    /// Uploads the local snapshot `info` to the bucket and prunes the bucket to the same
    /// retention. `None` without a bucket. Failures are reported in the result, logged, and
    /// never touch the local snapshot.
    pub async fn upload(&self, info: &SnapshotInfo) -> Option<RemoteCopy> {
        let remote = self.remote.as_ref()?;
        let _one = self.uploading.lock().await;
        let started = std::time::Instant::now();
        let dir = self.root.join(&info.name);
        let mut copy = RemoteCopy {
            url: remote.url(),
            uploaded: false,
            bytes: 0,
            pruned: Vec::new(),
            error: None,
        };
        let result = async {
            copy.bytes = remote.upload(&dir, info).await?;
            copy.uploaded = true;
            copy.pruned = remote.prune(self.keep).await?;
            Ok::<(), S3Error>(())
        }
        .await;
        match result {
            Ok(()) => tracing::info!(
                snapshot = %info.name,
                url = %copy.url,
                bytes = copy.bytes,
                pruned = copy.pruned.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "snapshot uploaded"
            ),
            Err(e) => {
                tracing::error!(snapshot = %info.name, url = %copy.url, uploaded = copy.uploaded, error = %e, "snapshot upload failed");
                copy.error = Some(e.to_string());
            }
        }
        Some(copy)
    }

    /// The folder holding the snapshots.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes a snapshot of the whole folder now (waiting for one in progress), then prunes
    /// old ones.
    pub fn take(&self, catalog: &Catalog) -> Result<SnapshotInfo, SnapshotError> {
        self.take_scoped(catalog, None)
    }

    /// Takes a snapshot of the collection `only` (the whole folder when `None`), then prunes
    /// old snapshots of the same scope (see [`prune`]).
    pub fn take_scoped(
        &self,
        catalog: &Catalog,
        only: Option<Uuid>,
    ) -> Result<SnapshotInfo, SnapshotError> {
        let _one = self.running.lock();
        let name = new_name_for(&self.root, only);
        let started = std::time::Instant::now();
        let info = create_scoped(catalog, &self.root, &name, only)?;
        let pruned = prune(&self.root, self.keep)?;
        tracing::info!(
            snapshot = %info.name,
            collection = ?info.collection,
            collections = info.collections,
            files = info.files.len(),
            bytes = info.total_bytes,
            pruned = pruned.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot taken"
        );
        Ok(info)
    }

    /// The complete snapshots, oldest first.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        list(&self.root)
    }
}

/// The snapshot service of a running server: [`Snapshots`] with the catalog it copies and the
/// metrics it reports to. A cheap clone of three `Arc`s, held by the HTTP API's state.
#[derive(Clone)]
pub struct SnapshotService {
    snapshots: Arc<Snapshots>,
    catalog: Arc<Catalog>,
    metrics: Arc<Metrics>,
}

impl SnapshotService {
    /// The service taking `snapshots` of `catalog`, recording outcomes in `metrics`.
    pub fn new(snapshots: Snapshots, catalog: Arc<Catalog>, metrics: Arc<Metrics>) -> Self {
        SnapshotService {
            snapshots: Arc::new(snapshots),
            catalog,
            metrics,
        }
    }

    /// Copies every snapshot (scheduled or through the admin route) to `remote` as well.
    pub fn with_remote(self, remote: S3Target) -> Self {
        let snapshots = Snapshots::new(self.snapshots.root.clone(), self.snapshots.keep);
        SnapshotService {
            snapshots: Arc::new(snapshots.with_remote(remote)),
            ..self
        }
    }

    /// The folder holding the snapshots.
    pub fn root(&self) -> &Path {
        self.snapshots.root()
    }

    /// The bucket receiving copies, if any.
    pub fn remote(&self) -> Option<&S3Target> {
        self.snapshots.remote()
    }

    /// The complete local snapshots, oldest first (reads the folder: call it off the runtime).
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        self.snapshots.list()
    }

    /// Takes a snapshot now — of the collection `only`, or of the whole folder — and, when a
    /// bucket is configured, uploads it and prunes the bucket. A whole-folder snapshot's
    /// outcomes are recorded in the metrics; a failed upload leaves the local snapshot.
    pub async fn snapshot_now(&self, only: Option<Uuid>) -> Result<SnapshotSummary, SnapshotError> {
        // In a task of its own: a client or proxy that gives up must not cancel the work half
        // way (an upload cut short leaves partial objects, and neither outcome is counted).
        let service = self.clone();
        tokio::spawn(async move { service.take_and_upload(only).await })
            .await
            .map_err(|e| SnapshotError::Task(format!("the snapshot task failed: {e}")))?
    }

    async fn take_and_upload(&self, only: Option<Uuid>) -> Result<SnapshotSummary, SnapshotError> {
        let started = std::time::Instant::now();
        let (catalog, snapshots) = (self.catalog.clone(), self.snapshots.clone());
        // On the blocking pool: hashing and fsyncs must not stall the async runtime.
        let result = tokio::task::spawn_blocking(move || snapshots.take_scoped(&catalog, only))
            .await
            .map_err(|e| SnapshotError::Task(format!("internal task failed: {e}")))
            .and_then(|taken| taken);
        // The snapshot metrics are the folder backups the alerts watch ("snapshot older than
        // 26 h"): a collection snapshot taken by hand must not make a missed backup look fresh.
        let whole = only.is_none();
        if whole {
            self.metrics
                .observe_snapshot(result.is_ok(), started.elapsed().as_secs_f64());
        }
        let info = result?;
        let mut summary = SnapshotSummary::from(&info);
        let started = std::time::Instant::now();
        if let Some(copy) = self.snapshots.upload(&info).await {
            if whole {
                self.metrics.observe_snapshot_upload(
                    copy.uploaded && copy.error.is_none(),
                    started.elapsed().as_secs_f64(),
                );
            }
            summary.s3 = Some(copy);
        }
        Ok(summary)
    }

    /// Sets `vectord_snapshot_last_success_timestamp_seconds` from the newest complete snapshot
    /// already in the snapshot folder and returns its time (Unix seconds): after a restart the
    /// stale-snapshot alert keeps measuring the snapshot's age, and the schedule counts from it.
    /// Reads the manifests only (no checksums); a folder that cannot be listed counts as empty.
    pub fn note_existing_snapshots(&self) -> Option<u64> {
        match self.snapshots.list() {
            Ok(list) => {
                // Whole-folder snapshots only: a collection snapshot taken by hand is not a
                // backup of the folder, so it must neither look fresh to the backup-age alert
                // nor put off the next scheduled one.
                let newest = list
                    .iter()
                    .filter(|i| i.collection.is_none())
                    .map(|i| i.created_at)
                    .max();
                if let Some(t) = newest {
                    self.metrics.note_snapshot_taken_at(t);
                }
                newest
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list existing snapshots");
                None
            }
        }
    }

    /// With a bucket, sets `vectord_snapshot_upload_last_success_timestamp_seconds` from the
    /// newest complete snapshot there (same reason as
    /// [`SnapshotService::note_existing_snapshots`]). A listing failure is logged and leaves
    /// the gauge alone.
    pub async fn note_remote_snapshots(&self) {
        let Some(remote) = self.snapshots.remote() else {
            return;
        };
        match remote.list().await {
            Ok(list) => {
                let whole = list.iter().filter(|i| i.collection.is_none());
                if let Some(t) = whole.map(|i| i.created_at).max() {
                    self.metrics.note_snapshot_uploaded_at(t);
                }
            }
            Err(e) => {
                tracing::warn!(url = %remote.url(), error = %e, "cannot list snapshots in the bucket")
            }
        }
    }

    /// Starts the service in a server that has just opened its folder: snapshots taken before
    /// this start count (the gauges and the schedule continue from them: a deploy more often
    /// than `every` would otherwise never snapshot), the bucket is listed in the background,
    /// and with `every` the schedule begins. Fails only if the folder listing task panicked.
    pub async fn start(&self, every: Option<Duration>) -> Result<(), tokio::task::JoinError> {
        let newest = {
            let service = self.clone();
            tokio::task::spawn_blocking(move || service.note_existing_snapshots()).await?
        };
        if self.remote().is_some() {
            let service = self.clone();
            // In the background: a slow or unreachable bucket must not delay readiness.
            tokio::spawn(async move {
                let listing = service.note_remote_snapshots();
                if tokio::time::timeout(Duration::from_secs(60), listing)
                    .await
                    .is_err()
                {
                    tracing::warn!("listing the snapshot bucket took over 60 s; gave up");
                }
            });
        }
        if let Some(every) = every {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let first = next_snapshot_delay(newest, now, every);
            tracing::info!(
                every_secs = every.as_secs(),
                first_in_secs = first.as_secs(),
                newest_snapshot = newest,
                dir = %self.root().display(),
                "scheduled snapshots on"
            );
            tokio::spawn(self.clone().schedule(first, every));
        }
        Ok(())
    }

    /// Takes (and uploads, with a bucket) a snapshot after `first`, then every `every`, until
    /// the process stops; failures are logged and counted (`vectord_snapshot_failures_total`,
    /// `vectord_snapshot_upload_failures_total`), never fatal.
    async fn schedule(self, first: Duration, every: Duration) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Metrics and upload-failure logs are recorded inside; only the local failure is here.
            if let Err(e) = self.snapshot_now(None).await {
                tracing::error!(error = %e, "scheduled snapshot failed");
            }
        }
    }
}

/// How long from `now` (Unix seconds) until the next scheduled snapshot: `every` after the
/// newest existing one, or right away when there is none or it is already `every` old. Counting
/// from the last snapshot rather than from startup keeps frequent deploys from postponing the
/// schedule forever. A newest snapshot in the future (clock stepped back) waits at most `every`.
pub fn next_snapshot_delay(newest: Option<u64>, now: u64, every: Duration) -> Duration {
    match newest {
        None => Duration::ZERO,
        Some(t) => {
            let due = t.saturating_add(every.as_secs());
            Duration::from_secs(due.saturating_sub(now)).min(every)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_snapshot_counts_from_the_newest_snapshot() {
        let day = Duration::from_secs(86_400);
        let now = 1_795_651_199;
        // No snapshot yet, or the newest is a day old or more: take one now.
        assert_eq!(next_snapshot_delay(None, now, day), Duration::ZERO);
        assert_eq!(
            next_snapshot_delay(Some(now - 86_400), now, day),
            Duration::ZERO
        );
        assert_eq!(
            next_snapshot_delay(Some(now - 90_000), now, day),
            Duration::ZERO
        );
        // Taken an hour ago (before a restart): due in 23 h, not a full day after startup.
        assert_eq!(
            next_snapshot_delay(Some(now - 3600), now, day),
            Duration::from_secs(82_800)
        );
        // A clock that went backwards never pushes the schedule past one interval.
        assert_eq!(next_snapshot_delay(Some(now + 7200), now, day), day);
    }
}
