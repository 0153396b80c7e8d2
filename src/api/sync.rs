//! `GET /sync/status` and `GET /sync/status/{job}`: the pgvector sync jobs' status as JSON.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, AppPath};
use super::AppState;

/// Every job: `{"jobs": [...]}`.
pub async fn status_all(State(st): State<AppState>) -> Json<Value> {
    Json(json!({ "jobs": st.sync.snapshot() }))
}

/// One job by name (404 when there is no such job).
pub async fn status_one(
    State(st): State<AppState>,
    AppPath(job): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    st.sync
        .get(&job)
        .map(|s| Json(json!(s)))
        .ok_or_else(|| ApiError::NotFound(format!("sync job {job} does not exist")))
}
