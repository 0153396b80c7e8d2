//! Operator routes under `/api/v2/admin`: online snapshots of the data folder or of one
//! collection, and purging deleted records. When auth is configured these need an admin token.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::collections::parse_collection_id;
use super::error::{ApiError, AppPath};
use super::{blocking, AppState};
use crate::backup::service::SnapshotSummary;
use crate::catalog::{CollectionSelector, DEFAULT_DATABASE, DEFAULT_TENANT};

/// Body of `POST /api/v2/admin/snapshots`. No body (or `{}`) snapshots the whole folder.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotRequest {
    /// Snapshot only this collection: its id, or its name in `tenant`/`database`.
    collection: Option<String>,
    /// Tenant of a collection given by name [default: `default_tenant`].
    tenant: Option<String>,
    /// Database of a collection given by name [default: `default_database`].
    database: Option<String>,
}

/// `POST /api/v2/admin/snapshots`: takes a consistent snapshot now (writes continue) of the
/// whole folder, or of the collection the JSON body names, prunes beyond the configured count
/// (per scope), uploads it when a bucket is configured, and answers 201 with its summary (`s3`
/// tells how the upload went; a failed upload still answers 201, since the local snapshot
/// exists).
pub async fn create_snapshot(
    State(st): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<SnapshotSummary>), ApiError> {
    // Parsed by hand: the route took no body before, and clients still send none.
    let req: SnapshotRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SnapshotRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::InvalidArgument(format!("snapshot request: {e}")))?
    };
    let only = match req.collection {
        Some(collection) => {
            let sel = CollectionSelector {
                collection,
                tenant: req.tenant.unwrap_or_else(|| DEFAULT_TENANT.to_string()),
                database: req.database.unwrap_or_else(|| DEFAULT_DATABASE.to_string()),
            };
            Some(st.catalog.select(&sel)?.record.id)
        }
        None if req.tenant.is_some() || req.database.is_some() => {
            return Err(ApiError::InvalidArgument(
                "snapshot request: tenant and database only qualify a collection name; \
                 add \"collection\""
                    .to_string(),
            ))
        }
        None => None,
    };
    let summary = st.snapshots.snapshot_now(only).await?;
    Ok((StatusCode::CREATED, Json(summary)))
}

/// `GET /api/v2/admin/snapshots`: the complete snapshots, oldest first, and where they live
/// (with the bucket's complete snapshots when one is configured).
pub async fn list_snapshots(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let snapshots = st.snapshots.clone();
    let infos = blocking(move || snapshots.list().map_err(ApiError::from)).await?;
    let list: Vec<SnapshotSummary> = infos.iter().map(SnapshotSummary::from).collect();
    let mut body = json!({
        "root": st.snapshots.root(),
        "snapshots": list,
    });
    if let Some(remote) = st.snapshots.remote() {
        // A bucket that cannot be listed is reported, not an error: the local list stands.
        body["s3"] = match remote.list().await {
            Ok(infos) => json!({
                "url": remote.url(),
                "snapshots": infos.iter().map(SnapshotSummary::from).collect::<Vec<_>>(),
            }),
            Err(e) => json!({ "url": remote.url(), "error": e.to_string() }),
        };
    }
    Ok(Json(body))
}

/// `POST /api/v2/admin/collections/{collection_id}/compact`: purges the collection's deleted
/// records from its files now (flush or WAL checkpoint, then a full compaction; see
/// [`crate::engine::Collection::purge_deleted`]) and answers 200 with what was done. Reads
/// and writes go on meanwhile; the call lasts as long as the rewrite (a graph rebuild).
pub async fn compact_collection(
    State(st): State<AppState>,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_collection_id(&id)?;
    let entry = st
        .catalog
        .select(&CollectionSelector::new(id.to_string()))?;
    if entry.record.id != id {
        // A collection *named* like this UUID: not what a path parameter for an id means.
        return Err(crate::catalog::CatalogError::CollectionIdNotFound(id).into());
    }
    let engine = std::sync::Arc::clone(entry.engine()?);
    let name = entry.record.name.clone();
    let started = std::time::Instant::now();
    let report = blocking(move || {
        engine
            .purge_deleted()
            .map_err(|e| ApiError::from(entry.engine_error(e)))
    })
    .await?;
    tracing::info!(collection = %id, ?report, elapsed_ms = started.elapsed().as_millis() as u64, "deleted records purged");
    let mut body = serde_json::to_value(report)
        .map_err(|e| ApiError::Internal(format!("encoding the purge report: {e}")))?;
    body["collection"] = json!(id);
    body["name"] = json!(name);
    body["elapsed_ms"] = json!(started.elapsed().as_millis() as u64);
    Ok(Json(body))
}
