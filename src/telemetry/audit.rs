//! The audit log of data access: who (token id, tenant), what (route, collection, operation,
//! record count), when, and the outcome — one JSON line per request that touches tenant data.
//!
//! Never vectors, documents, metadata values, filters or ids: the log itself must not become
//! a second copy of protected health information. Lines go to `--audit-log FILE` (appended by a
//! background thread, flushed per batch and fsynced at least every second, so a request never
//! waits on the audit disk) or, without a file, to the `audit` tracing target.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// One audited request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEvent {
    /// Milliseconds since the Unix epoch when the response was ready.
    pub ts_ms: u64,
    /// The request's trace id (also in the `chroma-trace-id` response header and the logs).
    pub request_id: String,
    /// Token id of the caller (`anonymous` when auth is off or no token was sent).
    pub principal: String,
    /// The tenant the caller's token is scoped to (`*` for every tenant), when a token was
    /// accepted; `tenant` below is the one the request addressed.
    pub principal_tenant: Option<String>,
    /// Client address as reported by the proxy (`Fly-Client-IP`, else `X-Forwarded-For`).
    pub client_ip: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Matched route template (never the raw path).
    pub route: String,
    /// Operation name: `add`, `query`, `create_collection`, `snapshot`, …
    pub operation: String,
    /// Tenant from the path, when the route has one.
    pub tenant: Option<String>,
    /// Database from the path, when the route has one.
    pub database: Option<String>,
    /// Collection id (or name, for routes addressed by name), when the route has one.
    pub collection: Option<String>,
    /// Records written, read or matched, when the handler reported a count.
    pub records: Option<u64>,
    /// HTTP status of the response.
    pub status: u16,
    /// `ok` for 2xx, `denied` for 401/403, `error` otherwise.
    pub outcome: &'static str,
}

/// Response extension: how many records the request wrote, read or returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRecords(pub u64);

/// Response extension set by authentication: the caller's token id and the tenant it is
/// scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPrincipal {
    /// Token id (the token file's `user`).
    pub user: String,
    /// The token's tenant, or `*`.
    pub tenant: String,
}

/// Tags a response with the number of records it concerned.
pub fn tag_records(response: &mut axum::response::Response, n: u64) {
    response.extensions_mut().insert(AuditRecords(n));
}

/// Whether a route template reads or changes tenant data (heartbeat, metrics, docs are not).
pub fn is_audited(route: &str) -> bool {
    route.starts_with("/api/v2/tenants")
        || route.starts_with("/api/v1/")
        || route.starts_with("/api/v2/admin")
        || route == "/api/v2/reset"
}

/// The operation a route template and method stand for.
pub fn operation(method: &str, route: &str) -> String {
    let last = route.rsplit('/').next().unwrap_or_default();
    let op = match (method, last) {
        (_, "add" | "upsert" | "update" | "delete" | "get" | "query" | "count") => last,
        ("POST", "snapshots") => "snapshot",
        ("GET", "snapshots") => "list_snapshots",
        ("POST", "compact") => "compact",
        ("POST", "reset") => "reset",
        ("POST", "collections") => "create_collection",
        ("GET", "collections") => "list_collections",
        ("GET", "collections_count") => "count_collections",
        ("GET", "{collection_id}" | "{collection_name}") => "get_collection",
        ("PUT", "{collection_id}") => "modify_collection",
        ("DELETE", "{collection_id}" | "{collection_name}") => "delete_collection",
        ("POST", "databases") => "create_database",
        ("GET", "databases") => "list_databases",
        ("GET", "{database}") => "get_database",
        ("DELETE", "{database}") => "delete_database",
        ("POST", "tenants") => "create_tenant",
        ("GET", "{tenant}") => "get_tenant",
        ("PATCH", "{tenant}") => "update_tenant",
        _ => "",
    };
    if op.is_empty() {
        format!("{} {route}", method.to_ascii_lowercase())
    } else {
        op.to_string()
    }
}

/// Path parameters by name, read by aligning the route template with the path.
pub fn path_params(route: &str, path: &str) -> Vec<(String, String)> {
    route
        .split('/')
        .zip(path.split('/'))
        .filter_map(|(t, p)| {
            let name = t.strip_prefix('{')?.strip_suffix('}')?;
            Some((name.to_string(), p.to_string()))
        })
        .collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where audit events go.
#[derive(Debug)]
pub struct AuditLog {
    sink: Sink,
    /// The file writer thread, joined on drop so the last events reach the disk.
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Closing the channel ends the writer's loop after it wrote what was queued.
        self.sink = Sink::Tracing;
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

#[derive(Debug)]
enum Sink {
    Tracing,
    File(mpsc::Sender<AuditEvent>),
}

impl AuditLog {
    /// Events as `tracing` records with target `audit` (structured logs carry them).
    pub fn to_tracing() -> AuditLog {
        AuditLog {
            sink: Sink::Tracing,
            writer: None,
        }
    }

    /// Events appended to `path` as JSON lines by a background thread.
    pub fn to_file(path: &Path) -> io::Result<AuditLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = mpsc::channel();
        let path = path.to_path_buf();
        let writer = std::thread::Builder::new()
            .name("vectord-audit".into())
            .spawn(move || write_loop(file, path, rx))?;
        Ok(AuditLog {
            sink: Sink::File(tx),
            writer: Some(writer),
        })
    }

    /// Records one event; never blocks on I/O.
    pub fn record(&self, event: AuditEvent) {
        match &self.sink {
            Sink::Tracing => tracing::info!(
                target: "audit",
                ts_ms = event.ts_ms,
                request_id = %event.request_id,
                principal = %event.principal,
                principal_tenant = event.principal_tenant.as_deref().unwrap_or(""),
                client_ip = event.client_ip.as_deref().unwrap_or(""),
                method = %event.method,
                route = %event.route,
                operation = %event.operation,
                tenant = event.tenant.as_deref().unwrap_or(""),
                database = event.database.as_deref().unwrap_or(""),
                collection = event.collection.as_deref().unwrap_or(""),
                records = event.records,
                status = event.status,
                outcome = event.outcome,
                "audit"
            ),
            Sink::File(tx) => {
                if tx.send(event).is_err() {
                    tracing::error!("audit writer stopped; audit events are being lost");
                }
            }
        }
    }
}

fn write_loop(mut file: File, path: PathBuf, rx: mpsc::Receiver<AuditEvent>) {
    let mut last_sync = Instant::now();
    let mut dirty = false;
    loop {
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(e) => Some(e),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
        };
        let closed =
            first.is_none() && matches!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
        let mut buf = Vec::new();
        for event in first.into_iter().chain(rx.try_iter()) {
            if serde_json::to_writer(&mut buf, &event).is_ok() {
                buf.push(b'\n');
            }
        }
        if !buf.is_empty() {
            if let Err(e) = file.write_all(&buf) {
                tracing::error!(path = %path.display(), error = %e, "writing the audit log failed");
            }
            dirty = true;
        }
        if closed {
            let _ = file.sync_data();
            return;
        }
        if dirty && last_sync.elapsed() >= Duration::from_secs(1) {
            if let Err(e) = file.sync_data() {
                tracing::error!(path = %path.display(), error = %e, "fsync of the audit log failed");
            }
            dirty = false;
            last_sync = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_and_params_come_from_the_route_template() {
        let route =
            "/api/v2/tenants/{tenant}/databases/{database}/collections/{collection_id}/query";
        let path = "/api/v2/tenants/t1/databases/db/collections/abc/query";
        assert_eq!(operation("POST", route), "query");
        assert_eq!(
            path_params(route, path),
            vec![
                ("tenant".to_string(), "t1".to_string()),
                ("database".to_string(), "db".to_string()),
                ("collection_id".to_string(), "abc".to_string()),
            ]
        );
        assert_eq!(
            operation(
                "DELETE",
                "/api/v2/tenants/{tenant}/databases/{database}/collections/{collection_id}"
            ),
            "delete_collection"
        );
        assert!(is_audited(route));
        assert!(!is_audited("/api/v2/heartbeat"));
        assert!(!is_audited("/metrics"));
    }
}
