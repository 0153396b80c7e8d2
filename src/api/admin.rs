//! Operator routes under `/api/v2/admin`: online snapshots of the data folder. When auth is
//! configured these need an admin token.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::{blocking, AppState};
use crate::snapshot::SnapshotSummary;

/// `POST /api/v2/admin/snapshots`: takes a consistent snapshot now (writes continue), prunes
/// beyond the configured count, and answers 201 with its summary.
pub async fn create_snapshot(
    State(st): State<AppState>,
) -> Result<(StatusCode, Json<SnapshotSummary>), ApiError> {
    let started = Instant::now();
    let (catalog, snapshots) = (st.catalog.clone(), st.snapshots.clone());
    let result = blocking(move || snapshots.take(&catalog).map_err(ApiError::from)).await;
    st.metrics
        .observe_snapshot(result.is_ok(), started.elapsed().as_secs_f64());
    let info = result?;
    Ok((StatusCode::CREATED, Json(SnapshotSummary::from(&info))))
}

/// `GET /api/v2/admin/snapshots`: the complete snapshots, oldest first, and where they live.
pub async fn list_snapshots(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let snapshots = st.snapshots.clone();
    let infos = blocking(move || snapshots.list().map_err(ApiError::from)).await?;
    let list: Vec<SnapshotSummary> = infos.iter().map(SnapshotSummary::from).collect();
    Ok(Json(json!({
        "root": st.snapshots.root(),
        "snapshots": list,
    })))
}
