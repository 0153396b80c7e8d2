//! Per-job status: what the status endpoint returns and `/metrics` exports. Jobs update their own
//! entry; readers take a copy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use super::mapping::SkipCounts;

/// One job's state, as JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobStatus {
    /// Job name.
    pub name: String,
    /// `tenant/database/collection`.
    pub collection: String,
    /// `logical`, `trigger` or `none`.
    pub mode: String,
    /// `starting`, `snapshot`, `follow`, `retrying`, `failed`, `stopped`, `done`.
    pub phase: String,
    /// The durable checkpoint (LSN, change seq, or snapshot progress).
    pub position: Option<String>,
    /// Changes known to be waiting at the source (trigger mode: change-table rows; logical
    /// mode: changes received but not yet durable).
    pub lag_rows: u64,
    /// Age of the oldest change not yet durable here, in seconds (0 when caught up).
    pub lag_seconds: f64,
    /// Logical mode: WAL bytes between the server's end and the checkpoint.
    pub lag_bytes: u64,
    /// Rows written (snapshot and follow), since the process started.
    pub applied: u64,
    /// Rows deleted by the follower.
    pub deleted: u64,
    /// Rows copied by the current snapshot.
    pub snapshot_rows: u64,
    /// Snapshot speed, rows per second.
    pub snapshot_rows_per_sec: f64,
    /// Rows not stored, by reason.
    pub skipped: SkipCounts,
    /// The most recent skipped row and why.
    pub last_skip: Option<String>,
    /// The most recent error.
    pub last_error: Option<String>,
    /// When it happened (Unix seconds).
    pub last_error_at: Option<u64>,
    /// Reconnects after errors.
    pub reconnects: u64,
    /// Whether the job is caught up with the source.
    pub caught_up: bool,
    /// Whether it has been caught up at least once since the process started (its initial
    /// snapshot is loaded); `--ready-after-sync` waits for this.
    pub caught_up_once: bool,
}

impl JobStatus {
    /// Sets `caught_up`, latching `caught_up_once` the first time it is true.
    pub fn set_caught_up(&mut self, caught_up: bool) {
        self.caught_up = caught_up;
        self.caught_up_once |= caught_up;
    }

    /// Records an error with its time.
    pub fn error(&mut self, e: &dyn std::fmt::Display) {
        self.last_error = Some(e.to_string());
        self.last_error_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
    }
}

/// A job's live status handle.
pub type StatusHandle = Arc<Mutex<JobStatus>>;

/// Every job of the process, and which collections they own.
#[derive(Debug, Default)]
pub struct SyncRegistry {
    jobs: RwLock<BTreeMap<String, StatusHandle>>,
    /// `(tenant, database, collection)` → HTTP writes allowed.
    owned: RwLock<BTreeMap<(String, String, String), bool>>,
}

impl SyncRegistry {
    /// Registers a job (replacing one of the same name) and returns its handle.
    pub fn register(&self, job: &super::JobConfig) -> StatusHandle {
        let h = Arc::new(Mutex::new(JobStatus {
            name: job.name.clone(),
            collection: format!("{}/{}/{}", job.tenant, job.database, job.collection),
            mode: job.mode.as_str().to_string(),
            phase: "starting".to_string(),
            ..JobStatus::default()
        }));
        self.jobs.write().insert(job.name.clone(), Arc::clone(&h));
        self.owned.write().insert(
            (
                job.tenant.clone(),
                job.database.clone(),
                job.collection.clone(),
            ),
            job.allow_http_writes,
        );
        h
    }

    /// A copy of every job's status, by name.
    pub fn snapshot(&self) -> Vec<JobStatus> {
        self.jobs
            .read()
            .values()
            .map(|h| h.lock().clone())
            .collect()
    }

    /// Jobs not yet caught up once (readiness with `--ready-after-sync` waits for them).
    pub fn not_caught_up(&self) -> Vec<JobStatus> {
        self.snapshot()
            .into_iter()
            .filter(|j| !j.caught_up_once)
            .collect()
    }

    /// A copy of one job's status.
    pub fn get(&self, name: &str) -> Option<JobStatus> {
        self.jobs.read().get(name).map(|h| h.lock().clone())
    }

    /// The name of the job that owns a collection and forbids HTTP writes to it, if any.
    pub fn write_blocker(&self, tenant: &str, database: &str, collection: &str) -> bool {
        self.owned
            .read()
            .get(&(
                tenant.to_string(),
                database.to_string(),
                collection.to_string(),
            ))
            .is_some_and(|allowed| !allowed)
    }
}
