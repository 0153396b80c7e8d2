//! Request guards that protect the server from one caller: backpressure (a cap on requests in
//! flight with a bounded queue wait, then 429), a deadline on receiving the body (408), and
//! path names that could confuse a log reader or a file system (400).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts as _, RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use tokio::sync::Semaphore;

use super::error::{ApiError, BodyTimedOut};
use crate::catalog::check_safe_name;
use crate::telemetry::labels::HttpLabels;
use crate::telemetry::metrics::Metrics;

/// The cap on requests in flight, shared by every connection.
#[derive(Debug, Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    limit: usize,
    queue_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Admission {
    /// `limit` requests at once; others wait up to `queue_timeout`. Refusals are counted in
    /// `metrics`.
    pub fn new(limit: usize, queue_timeout: Duration, metrics: Arc<Metrics>) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            queue_timeout,
            metrics,
        }
    }
}

/// The `route` label of requests refused before routing (by [`admit`]).
pub const ADMISSION_ROUTE: &str = "admission";

/// Paths that are never queued: probes must answer while the server is saturated, or an
/// orchestrator would restart a server that is merely busy.
fn exempt(path: &str) -> bool {
    matches!(
        path,
        "/api/v2" | "/api/v2/heartbeat" | "/api/v2/version" | "/api/v2/healthcheck"
    )
}

/// Middleware: holds a slot for the whole request; waits for one at most the queue timeout,
/// then answers 429 `RateLimitError` (backpressure instead of an unbounded pile-up of tasks).
pub async fn admit(State(adm): State<Admission>, req: Request, next: Next) -> Response {
    if exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let permit = match Arc::clone(&adm.slots).try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            let waited = std::time::Instant::now();
            match tokio::time::timeout(adm.queue_timeout, Arc::clone(&adm.slots).acquire_owned())
                .await
            {
                Ok(Ok(p)) => p,
                _ => {
                    let response = ApiError::Overloaded(format!(
                        "Server busy: {} requests in flight and none finished within {:.1} s; retry later",
                        adm.limit,
                        adm.queue_timeout.as_secs_f64()
                    ))
                    .into_response();
                    // Counted here because the request never reaches the router, whose layer
                    // counts every other request: saturation must show in the metrics.
                    adm.metrics.observe_http(
                        HttpLabels {
                            method: req.method().to_string(),
                            route: ADMISSION_ROUTE.to_string(),
                            status: response.status().as_u16(),
                        },
                        waited.elapsed().as_secs_f64(),
                    );
                    tracing::warn!(method = %req.method(), path = %req.uri().path(), "request refused: server busy");
                    return response;
                }
            }
        }
    };
    let response = next.run(req).await;
    drop(permit);
    response
}

/// Middleware: the body must arrive completely within `timeout` of the headers, so a client
/// that never finishes its body cannot hold a handler (and its queue slot) forever.
pub async fn body_deadline(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let deadline = tokio::time::Instant::now() + timeout;
    let secs = timeout.as_secs_f64();
    let stream = body.into_data_stream();
    let timed = futures_util::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(item)) => Some((item.map_err(axum::Error::new), Some(stream))),
            Ok(None) => None,
            Err(_) => Some((Err(axum::Error::new(BodyTimedOut(secs))), None)),
        }
    });
    next.run(Request::from_parts(parts, Body::from_stream(timed)))
        .await
}

/// Route layer: tenant, database and collection-name path parameters with path separators,
/// `..`, control or bidirectional-override characters, or over 512 bytes are refused (400)
/// before any handler sees them. Names never become paths, but they reach logs, the audit log
/// and the catalog, where such characters mislead a reader.
pub async fn check_names(req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    if let Ok(params) = RawPathParams::from_request_parts(&mut parts, &()).await {
        for (key, value) in &params {
            let checked = match key {
                "tenant" | "database" | "collection" | "crn" | "job" => check_safe_name(value),
                _ => Ok(()),
            };
            if let Err(e) = checked {
                return ApiError::from(e).into_response();
            }
        }
    }
    next.run(Request::from_parts(parts, body)).await
}
