//! Server-level routes: heartbeat, version, pre-flight checks, health, reset, identity, and
//! the Chroma routes this server answers with 501 (or 410 for v1).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::auth::Principal;
use super::error::ApiError;
use super::{blocking, AppState};
use crate::catalog::{DEFAULT_DATABASE, DEFAULT_TENANT};
use crate::telemetry::labels::CollectionLabels;

/// Bytes of one 1536-dimension embedding as base64 in a JSON array: 1536 × 4 = 6144 bytes of
/// f32, 6144 / 3 × 4 = 8192 base64 characters, plus two quotes and a comma.
const EMBEDDING_1536_B64_JSON: usize = 8192 + 3;
/// Room for one record's id, document and metadata besides the embedding: a UUID id (~40 B), a
/// document of ~4 KiB (a typical RAG chunk of 500–1000 tokens, JSON-escaped) and ~1 KiB of
/// metadata.
const RECORD_OVERHEAD: usize = 40 + 4096 + 1024;

/// `max_batch_size` advertised by pre-flight: as many records as fit the body limit when each
/// carries a 1536-d base64 embedding, a ~4 KiB document and ~1 KiB of metadata. With the
/// default 40 MiB limit: 41_943_040 / (8195 + 5160) = 3140 records (Chroma's own 5461 would
/// not fit 40 MiB with 1536-d embeddings alone: 5461 × 8195 B ≈ 44.8 MB). Clients enforce it.
pub fn max_batch_size(max_body_bytes: usize) -> u32 {
    let n = max_body_bytes / (EMBEDDING_1536_B64_JSON + RECORD_OVERHEAD);
    u32::try_from(n.clamp(1, 100_000)).unwrap_or(100_000)
}

/// `GET /api/v2` and `/api/v2/heartbeat`.
pub async fn heartbeat() -> Json<Value> {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Json(json!({ "nanosecond heartbeat": ns }))
}

/// `GET /api/v2/version`: Chroma 1.x reports the fixed string "1.0.0"; clients only display it.
pub async fn version() -> Json<&'static str> {
    Json("1.0.0")
}

/// `GET /api/v2/pre-flight-checks`.
pub async fn pre_flight_checks(State(st): State<AppState>) -> Json<Value> {
    Json(json!({
        "max_batch_size": max_batch_size(st.settings.max_body_bytes),
        "supports_base64_encoding": true,
    }))
}

/// `GET /api/v2/healthcheck`: ready once every collection was opened or marked failed (which
/// `Catalog::open` guarantees before the server binds). Failed collections are listed. With
/// `--ready-after-sync`, 503 until every sync job has loaded its snapshot and caught up once,
/// naming the jobs still behind (a job that later falls behind does not make it unready again:
/// serving slightly stale data beats taking the machine out of rotation).
pub async fn healthcheck(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    if st.settings.ready_after_sync {
        let behind = st.sync.not_caught_up();
        if !behind.is_empty() {
            let jobs: Vec<String> = behind
                .iter()
                .map(|j| match &j.last_error {
                    Some(e) => format!("{} ({}, lag {} rows: {e})", j.name, j.phase, j.lag_rows),
                    None => format!("{} ({}, lag {} rows)", j.name, j.phase, j.lag_rows),
                })
                .collect();
            return Err(ApiError::NotReady(format!(
                "sync jobs not caught up yet: {}",
                jobs.join("; ")
            )));
        }
    }
    let failed: Vec<Value> = st
        .catalog
        .failed_collections()
        .into_iter()
        .map(|(id, name, error)| json!({ "id": id, "name": name, "error": error }))
        .collect();
    let mut body = json!({ "is_executor_ready": true, "is_log_client_ready": true });
    if !failed.is_empty() {
        body["failed_collections"] = Value::Array(failed);
    }
    Ok(Json(body))
}

/// `POST /api/v2/reset`: wipes everything when the server runs with `--allow-reset`.
pub async fn reset(State(st): State<AppState>) -> Result<Json<bool>, ApiError> {
    if !st.settings.allow_reset {
        return Err(ApiError::Forbidden(
            "Reset is disabled by config".to_string(),
        ));
    }
    let catalog = st.catalog.clone();
    blocking(move || catalog.reset().map_err(ApiError::from)).await?;
    Ok(Json(true))
}

/// `GET /api/v2/auth/identity`: the token's user, tenant and databases (the Python client adopts
/// a single tenant and database from it); without auth, the default identity.
pub async fn identity(principal: Option<Extension<Arc<Principal>>>) -> Json<Value> {
    match principal {
        Some(Extension(p)) => Json(json!({
            "user_id": p.user,
            "tenant": p.tenant,
            "databases": p.databases,
        })),
        None => Json(
            json!({ "user_id": "", "tenant": DEFAULT_TENANT, "databases": [DEFAULT_DATABASE] }),
        ),
    }
}

/// `GET /metrics`: Prometheus / OpenMetrics text.
pub async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    let m = &st.metrics;
    m.collections.set(st.catalog.collection_count() as i64);
    let failed = st.catalog.failed_collections();
    m.collections_failed.set(failed.len() as i64);
    m.set_failed_collections(failed.into_iter().map(|(id, name, _)| CollectionLabels {
        collection: id.to_string(),
        name,
    }));
    let (catalog, metrics) = (st.catalog.clone(), st.metrics.clone());
    // Stats take each collection's locks briefly; keep that off the async workers.
    blocking(move || {
        let stats: Vec<_> = catalog
            .all_collections()
            .into_iter()
            .filter_map(|e| {
                let engine = e.engine().ok()?;
                let labels = CollectionLabels {
                    collection: e.record.id.to_string(),
                    name: e.record.name.clone(),
                };
                Some((labels, engine.stats(), engine.dir().to_path_buf()))
            })
            .collect();
        metrics.set_collection_stats(stats.iter().map(|(l, s, _)| (l.clone(), s)));
        let dirs: Vec<&std::path::Path> = stats.iter().map(|(_, _, d)| d.as_path()).collect();
        let resident = crate::telemetry::process::resident_bytes_under(&dirs);
        for ((labels, _, _), bytes) in stats.iter().zip(resident) {
            metrics
                .collection_resident_bytes
                .get_or_create(labels)
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        metrics.sample_process(catalog.dir());
        metrics.observe_memtable_budget(catalog.memtable_budget());
        Ok(())
    })
    .await?;
    m.sync.observe(&st.sync.snapshot());
    let body = m
        .encode()
        .map_err(|e| ApiError::Internal(format!("failed to encode metrics: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// `fork` and `fork_count`: Chroma Cloud only.
pub async fn fork() -> ApiError {
    ApiError::Unimplemented("Collection forking is unsupported for local chroma".to_string())
}

/// `indexing_status`: Chroma Cloud only.
pub async fn indexing_status() -> ApiError {
    ApiError::Unimplemented("Indexing status is not implemented for local chroma".to_string())
}

/// `search`: local Chroma does not implement it either.
pub async fn search() -> ApiError {
    ApiError::Unimplemented("Search operation is not implemented for local executor".to_string())
}

/// Attached functions: Chroma Cloud only.
pub async fn functions() -> ApiError {
    ApiError::Unimplemented("Functions are not supported by this server".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_batch_fits_the_default_body_limit() {
        let limit = crate::config::DEFAULT_MAX_BODY_BYTES;
        let n = max_batch_size(limit) as usize;
        assert_eq!(n, 3140);
        assert!(n * (EMBEDDING_1536_B64_JSON + RECORD_OVERHEAD) <= limit);
        assert_eq!(max_batch_size(10), 1);
    }
}
