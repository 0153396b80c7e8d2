//! The HTTP API: Chroma's v2 routes over axum, with Chroma's wire shapes and error bodies.
//!
//! Architecture invariant: `api` touches no files or indexes itself; it decodes and validates
//! requests, calls the catalog and the engine (on blocking threads), and maps every error to
//! HTTP in one place (`error.rs`).
//!
//! - [`serve`] runs the server on an already-bound listener until a shutdown future resolves,
//!   so tests bind `127.0.0.1:0` and `main` passes SIGINT/SIGTERM.
//! - [`app`] builds the router.

mod admin;
pub mod collection_json;
mod collections;
mod embedding;
pub mod error;
mod records;
mod sync;
mod system;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::audit::{self, AuditEvent, AuditLog, AuditPrincipal, AuditRecords};
use crate::catalog::Catalog;
use crate::config::Settings;
use crate::embed::Embedder;
use crate::metrics::{HttpLabels, Metrics};
use crate::snapshot::Snapshots;
use error::{ApiError, BodyLimit};

/// Shared state of every handler: a cheap clone of a few `Arc`s.
#[derive(Clone)]
pub struct AppState {
    /// Tenants, databases, collections and their engine handles.
    pub catalog: Arc<Catalog>,
    /// The settings the server was started with.
    pub settings: Arc<Settings>,
    /// The process's metrics registry.
    pub metrics: Arc<Metrics>,
    /// Server-side embeddings (documents without embeddings, `query_texts`).
    pub embedder: Arc<Embedder>,
    /// Online snapshots of the data folder (admin route and schedule).
    pub snapshots: Arc<Snapshots>,
    /// Where data-access events go.
    pub audit: Arc<AuditLog>,
    /// pgvector sync jobs of this process (their status; which collections they own).
    pub sync: Arc<crate::sync::SyncRegistry>,
}

impl AppState {
    /// Bundles an opened catalog with the settings, a fresh metrics registry and the embedder
    /// the settings describe.
    pub fn new(catalog: Catalog, settings: Settings) -> AppState {
        let metrics = Arc::new(Metrics::new());
        let snapshots = Snapshots::new(settings.snapshot_dir.clone(), settings.snapshot_keep);
        let embedder = Arc::new(Embedder::new(
            settings.embed.clone(),
            Arc::clone(&metrics.embed),
        ));
        AppState {
            catalog: Arc::new(catalog),
            settings: Arc::new(settings),
            metrics,
            embedder,
            snapshots: Arc::new(snapshots),
            audit: Arc::new(AuditLog::to_tracing()),
            sync: Arc::new(crate::sync::SyncRegistry::default()),
        }
    }

    /// Sends audit events to `audit` instead of the `audit` tracing target.
    pub fn with_audit(mut self, audit: AuditLog) -> AppState {
        self.audit = Arc::new(audit);
        self
    }
}

/// Runs `f` on the blocking pool (fsync and CPU-heavy work must not stall the async runtime).
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

/// Builds the router with every v2 route, the JSON 404/405 fallbacks and the body limit.
pub fn app(state: AppState) -> Router {
    let limit = state.settings.max_body_bytes;
    const DB: &str = "/api/v2/tenants/{tenant}/databases/{database}";
    let coll = |suffix: &str| format!("{DB}/collections/{{collection_id}}/{suffix}");
    Router::new()
        .route("/api/v2", get(system::heartbeat))
        .route("/api/v2/heartbeat", get(system::heartbeat))
        .route("/api/v2/version", get(system::version))
        .route("/api/v2/pre-flight-checks", get(system::pre_flight_checks))
        .route("/api/v2/healthcheck", get(system::healthcheck))
        .route("/api/v2/reset", post(system::reset))
        .route("/api/v2/auth/identity", get(system::identity))
        .route("/api/v2/tenants", post(collections::create_tenant))
        .route(
            "/api/v2/tenants/{tenant}",
            get(collections::get_tenant).patch(collections::update_tenant),
        )
        .route(
            "/api/v2/tenants/{tenant}/databases",
            get(collections::list_databases).post(collections::create_database),
        )
        .route(
            DB,
            get(collections::get_database).delete(collections::delete_database),
        )
        .route(
            &format!("{DB}/collections"),
            get(collections::list_collections).post(collections::create_collection),
        )
        .route(
            &format!("{DB}/collections_count"),
            get(collections::count_collections),
        )
        .route(
            &format!("{DB}/collections/by-id/{{collection_id}}"),
            get(collections::get_collection_by_id),
        )
        .route(
            &format!("{DB}/collections/{{collection}}"),
            get(collections::get_collection)
                .put(collections::update_collection)
                .delete(collections::delete_collection),
        )
        .route(&coll("add"), post(records::add))
        .route(&coll("upsert"), post(records::upsert))
        .route(&coll("update"), post(records::update))
        .route(&coll("delete"), post(records::delete))
        .route(&coll("get"), post(records::get))
        .route(&coll("query"), post(records::query))
        .route(&coll("count"), get(records::count))
        .route(&coll("fork"), post(system::fork))
        .route(&coll("fork_count"), get(system::fork))
        .route(&coll("indexing_status"), get(system::indexing_status))
        .route(&coll("search"), post(system::search))
        .route(&coll("functions/attach"), post(system::functions))
        .route(&coll("functions/{function}"), get(system::functions))
        .route(
            &coll("attached_functions/{name}/detach"),
            post(system::functions),
        )
        .route(
            "/api/v2/collections/{crn}",
            get(collections::get_collection_by_crn),
        )
        .route(
            "/api/v2/admin/snapshots",
            get(admin::list_snapshots).post(admin::create_snapshot),
        )
        .route("/metrics", get(system::metrics))
        .route("/sync/status", get(sync::status_all))
        .route("/sync/status/{job}", get(sync::status_one))
        .route("/api/v1", axum::routing::any(system::v1_gone))
        .route("/api/v1/{*rest}", axum::routing::any(system::v1_gone))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(Extension(BodyLimit(limit)))
        .layer(middleware::from_fn_with_state(state.clone(), trace_request))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::RouteNotFound(format!("{} {}", req.method(), req.uri().path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Header carrying the request's trace id; the Python client attaches it to raised errors.
pub const TRACE_ID_HEADER: &str = "chroma-trace-id";

/// Gives each request a trace id (returned in `chroma-trace-id`), wraps it in a span with the
/// id, method and path, records it in the metrics by route template, and logs its status and
/// latency at debug level; errors are logged where they become responses, inside the span.
async fn trace_request(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let started = std::time::Instant::now();
    let client_ip = ["fly-client-ip", "x-forwarded-for"].iter().find_map(|h| {
        req.headers()
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or(v).trim().to_owned())
    });
    let span = tracing::info_span!("request", %trace_id, %method, %path);
    let mut response = next.run(req).instrument(span).await;
    tracing::debug!(
        %trace_id,
        %method,
        %path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request served"
    );
    st.metrics.observe_http(
        HttpLabels {
            method: method.to_string(),
            route: route.clone(),
            status: response.status().as_u16(),
        },
        started.elapsed().as_secs_f64(),
    );
    if audit::is_audited(&route) {
        let status = response.status().as_u16();
        let params = audit::path_params(&route, &path);
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        st.audit.record(AuditEvent {
            ts_ms: audit::now_ms(),
            principal: response
                .extensions()
                .get::<AuditPrincipal>()
                .map(|p| p.0.clone())
                .unwrap_or_else(|| "anonymous".to_owned()),
            client_ip,
            method: method.to_string(),
            operation: audit::operation(method.as_str(), &route),
            tenant: param("tenant"),
            database: param("database"),
            collection: param("collection_id").or_else(|| param("collection_name")),
            records: response.extensions().get::<AuditRecords>().map(|r| r.0),
            status,
            outcome: match status {
                200..=299 => "ok",
                401 | 403 => "denied",
                _ => "error",
            },
            request_id: trace_id.clone(),
            route,
        });
    }
    if let Ok(v) = axum::http::HeaderValue::from_str(&trace_id) {
        response.headers_mut().insert(TRACE_ID_HEADER, v);
    }
    response
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then stops accepting and waits
/// for in-flight requests to finish.
pub async fn serve<F>(listener: TcpListener, state: AppState, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
