//! Operator routes under `/api/v2/admin`: online snapshots of the data folder. When auth is
//! configured these need an admin token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::{blocking, AppState};
use crate::snapshot::SnapshotSummary;

/// `POST /api/v2/admin/snapshots`: takes a consistent snapshot now (writes continue), prunes
/// beyond the configured count, uploads it when a bucket is configured, and answers 201 with
/// its summary (`s3` tells how the upload went; a failed upload still answers 201, since the
/// local snapshot exists).
pub async fn create_snapshot(
    State(st): State<AppState>,
) -> Result<(StatusCode, Json<SnapshotSummary>), ApiError> {
    let summary = st.snapshot_now().await?;
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
