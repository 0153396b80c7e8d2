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
pub mod auth;
pub mod collection_json;
mod collections;
mod embedding;
pub mod error;
pub mod floats;
pub mod guard;
pub mod legacy;
pub mod openapi;
mod records;
mod server;
mod sync;
mod system;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Router};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::backup::service::{SnapshotService, Snapshots};
use crate::catalog::Catalog;
use crate::config::Settings;
use crate::embed::Embedder;
use crate::telemetry::audit::{self, AuditEvent, AuditLog, AuditPrincipal, AuditRecords};
use crate::telemetry::labels::HttpLabels;
use crate::telemetry::metrics::Metrics;
use auth::{AuthConfigError, Authenticator, Need};
use error::{ApiError, BodyLimit};

/// Shared state of every handler: a cheap clone of a few `Arc`s.
#[derive(Clone)]
pub struct AppState {
    /// Token checks, or `None` when auth is off (the default, like Chroma).
    pub auth: Option<Arc<Authenticator>>,
    /// Tenants, databases, collections and their engine handles.
    pub catalog: Arc<Catalog>,
    /// The settings the server was started with.
    pub settings: Arc<Settings>,
    /// The process's metrics registry.
    pub metrics: Arc<Metrics>,
    /// Server-side embeddings (documents without embeddings, `query_texts`).
    pub embedder: Arc<Embedder>,
    /// Online snapshots of the data folder (admin route and schedule).
    pub snapshots: SnapshotService,
    /// Where data-access events go.
    pub audit: Arc<AuditLog>,
    /// pgvector sync jobs of this process (their status; which collections they own).
    pub sync: Arc<crate::sync::SyncRegistry>,
}

impl AppState {
    /// Bundles an opened catalog with the settings, a fresh metrics registry, the embedder the
    /// settings describe and the authenticator they ask for (fails when the token file is
    /// unusable).
    pub fn new(catalog: Catalog, settings: Settings) -> Result<AppState, AuthConfigError> {
        let metrics = Arc::new(Metrics::new());
        let embedder = Arc::new(Embedder::new(
            settings.embed.clone(),
            Arc::clone(&metrics.embed),
        ));
        catalog.set_max_collections(settings.limits.max_collections);
        catalog.set_memtable_budget(settings.limits.memtable_budget_bytes);
        catalog.set_memtable_rows(settings.limits.memtable_rows);
        catalog.set_write_stall(settings.limits.write_stall);
        let auth = Authenticator::from_settings(&settings)?;
        let catalog = Arc::new(catalog);
        let snapshots = SnapshotService::new(
            Snapshots::new(settings.snapshot_dir.clone(), settings.snapshot_keep),
            Arc::clone(&catalog),
            Arc::clone(&metrics),
        );
        Ok(AppState {
            auth,
            catalog,
            settings: Arc::new(settings),
            metrics,
            embedder,
            snapshots,
            audit: Arc::new(AuditLog::to_tracing()),
            sync: Arc::new(crate::sync::SyncRegistry::default()),
        })
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

/// Runs `f`, a short CPU-bound request (a query), on this worker thread after tokio moves the
/// worker's other tasks to another thread (`block_in_place`). Unlike [`blocking`], the request
/// does not wait for a blocking-pool thread to wake and then for this task to be woken again:
/// two cross-thread wake-ups fewer on a sub-millisecond query. On a current-thread runtime
/// (some tests), where `block_in_place` is not allowed, it uses the blocking pool.
pub(crate) async fn in_place<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(f)
    } else {
        blocking(f).await
    }
}

/// One route the router serves, as the OpenAPI document and the route tests enumerate it.
#[derive(Debug, Clone)]
pub struct RouteDoc {
    /// HTTP method.
    pub method: Method,
    /// Route template, e.g. `/api/v2/tenants/{tenant}`.
    pub path: String,
    /// One line for the docs.
    pub summary: &'static str,
    /// Group in the docs.
    pub tag: &'static str,
    /// What auth requires of the caller.
    pub need: Need,
}

/// The router under construction and the list of what it serves: routes are only ever added
/// through [`Routes::add`], so the list (and the OpenAPI document built from it) is complete.
struct Routes {
    router: Router<AppState>,
    docs: Vec<RouteDoc>,
}

impl Routes {
    fn add(
        mut self,
        path: &str,
        tag: &'static str,
        ops: &[(Method, &'static str)],
        handlers: MethodRouter<AppState>,
    ) -> Routes {
        for (method, summary) in ops {
            // A route without an access rule is refused at run time; a test checks none is.
            let need = auth::rule(method, path).map_or(Need::Admin, |r| r.0);
            self.docs.push(RouteDoc {
                method: method.clone(),
                path: path.to_string(),
                summary,
                tag,
                need,
            });
        }
        self.router = self.router.route(path, handlers);
        self
    }
}

/// Every route of the API (Chroma's v2, metrics and the API description).
fn routes() -> Routes {
    const DB: &str = "/api/v2/tenants/{tenant}/databases/{database}";
    let coll = |suffix: &str| format!("{DB}/collections/{{collection_id}}/{suffix}");
    let (g, p) = (Method::GET, Method::POST);
    Routes {
        router: Router::new(),
        docs: Vec::new(),
    }
    .add(
        "/api/v2",
        "system",
        &[(g.clone(), "Heartbeat")],
        get(system::heartbeat),
    )
    .add(
        "/api/v2/heartbeat",
        "system",
        &[(g.clone(), "Heartbeat: nanoseconds since the epoch")],
        get(system::heartbeat),
    )
    .add(
        "/api/v2/version",
        "system",
        &[(g.clone(), "Server version")],
        get(system::version),
    )
    .add(
        "/api/v2/pre-flight-checks",
        "system",
        &[(g.clone(), "Batch size limit and base64 support")],
        get(system::pre_flight_checks),
    )
    .add(
        "/api/v2/healthcheck",
        "system",
        &[(
            g.clone(),
            "Readiness; lists collections that failed to open",
        )],
        get(system::healthcheck),
    )
    .add(
        "/api/v2/reset",
        "system",
        &[(p.clone(), "Delete everything (needs --allow-reset)")],
        post(system::reset),
    )
    .add(
        "/api/v2/auth/identity",
        "system",
        &[(g.clone(), "The caller's user, tenant and databases")],
        get(system::identity),
    )
    .add(
        "/api/v2/tenants",
        "tenants",
        &[(p.clone(), "Create a tenant")],
        post(collections::create_tenant),
    )
    .add(
        "/api/v2/tenants/{tenant}",
        "tenants",
        &[
            (g.clone(), "Get a tenant"),
            (Method::PATCH, "Update a tenant's resource name"),
        ],
        get(collections::get_tenant).patch(collections::update_tenant),
    )
    .add(
        "/api/v2/tenants/{tenant}/databases",
        "databases",
        &[
            (g.clone(), "List databases"),
            (p.clone(), "Create a database"),
        ],
        get(collections::list_databases).post(collections::create_database),
    )
    .add(
        DB,
        "databases",
        &[
            (g.clone(), "Get a database"),
            (Method::DELETE, "Delete a database and its collections"),
        ],
        get(collections::get_database).delete(collections::delete_database),
    )
    .add(
        &format!("{DB}/collections"),
        "collections",
        &[
            (g.clone(), "List collections (limit, offset)"),
            (p.clone(), "Create (or get_or_create) a collection"),
        ],
        get(collections::list_collections).post(collections::create_collection),
    )
    .add(
        &format!("{DB}/collections_count"),
        "collections",
        &[(g.clone(), "Count collections")],
        get(collections::count_collections),
    )
    .add(
        &format!("{DB}/collections/by-id/{{collection_id}}"),
        "collections",
        &[(g.clone(), "Get a collection by id")],
        get(collections::get_collection_by_id),
    )
    .add(
        &format!("{DB}/collections/{{collection}}"),
        "collections",
        &[
            (g.clone(), "Get a collection by name"),
            (
                Method::PUT,
                "Modify a collection (by id): name, metadata, configuration",
            ),
            (Method::DELETE, "Delete a collection by name"),
        ],
        get(collections::get_collection)
            .put(collections::update_collection)
            .delete(collections::delete_collection),
    )
    .add(
        &coll("add"),
        "records",
        &[(p.clone(), "Add records (existing ids are ignored)")],
        post(records::add),
    )
    .add(
        &coll("upsert"),
        "records",
        &[(p.clone(), "Insert or update records")],
        post(records::upsert),
    )
    .add(
        &coll("update"),
        "records",
        &[(p.clone(), "Update existing records")],
        post(records::update),
    )
    .add(
        &coll("delete"),
        "records",
        &[(p.clone(), "Delete records by id and/or filter")],
        post(records::delete),
    )
    .add(
        &coll("get"),
        "records",
        &[(p.clone(), "Get records by id and/or filter")],
        post(records::get),
    )
    .add(
        &coll("query"),
        "records",
        &[(p.clone(), "Nearest neighbours of query embeddings")],
        post(records::query),
    )
    .add(
        &coll("count"),
        "records",
        &[(g.clone(), "Count records")],
        get(records::count),
    )
    .add(
        &coll("fork"),
        "unsupported",
        &[(p.clone(), "Chroma Cloud only: 501")],
        post(system::fork),
    )
    .add(
        &coll("fork_count"),
        "unsupported",
        &[(g.clone(), "Chroma Cloud only: 501")],
        get(system::fork),
    )
    .add(
        &coll("indexing_status"),
        "unsupported",
        &[(g.clone(), "Chroma Cloud only: 501")],
        get(system::indexing_status),
    )
    .add(
        &coll("search"),
        "unsupported",
        &[(p.clone(), "Hybrid search: 501, as local Chroma")],
        post(system::search),
    )
    .add(
        &coll("functions/attach"),
        "unsupported",
        &[(p.clone(), "Chroma Cloud only: 501")],
        post(system::functions),
    )
    .add(
        &coll("functions/{function}"),
        "unsupported",
        &[(g.clone(), "Chroma Cloud only: 501")],
        get(system::functions),
    )
    .add(
        &coll("attached_functions/{name}/detach"),
        "unsupported",
        &[(p.clone(), "Chroma Cloud only: 501")],
        post(system::functions),
    )
    .add(
        "/api/v2/collections/{crn}",
        "collections",
        &[(g.clone(), "Get a collection by tenant:database:name")],
        get(collections::get_collection_by_crn),
    )
    .add(
        "/api/v2/admin/snapshots",
        "admin",
        &[
            (g.clone(), "List data-folder snapshots"),
            (
                p.clone(),
                "Take a consistent snapshot now, of one collection or all (writes continue)",
            ),
        ],
        get(admin::list_snapshots).post(admin::create_snapshot),
    )
    .add(
        "/api/v2/admin/collections/{collection_id}/compact",
        "admin",
        &[(
            p.clone(),
            "Purge deleted records now: flush, checkpoint the WAL, rewrite segments without them",
        )],
        post(admin::compact_collection),
    )
    .add(
        "/sync/status",
        "sync",
        &[(g.clone(), "Status of every pgvector sync job")],
        get(sync::status_all),
    )
    .add(
        "/sync/status/{job}",
        "sync",
        &[(g.clone(), "Status of one pgvector sync job")],
        get(sync::status_one),
    )
    .add(
        "/metrics",
        "system",
        &[(g.clone(), "Prometheus metrics")],
        get(system::metrics),
    )
    .add(
        "/openapi.json",
        "system",
        &[(g.clone(), "This OpenAPI document")],
        get(openapi::openapi_json),
    )
    .add(
        "/docs",
        "system",
        &[(g, "API docs page")],
        get(openapi::docs_page),
    )
}

/// Every (method, route template) the router serves, with its summary and access need.
pub fn route_docs() -> Vec<RouteDoc> {
    routes().docs
}

/// Builds the router with every v2 route, the JSON 404/405 fallbacks, the body limit, auth, and
/// the legacy translation (v1 routes and old formats) in front of it all; outermost, the cap
/// on requests in flight and the body deadline (so they also cover the legacy translation,
/// which reads bodies).
pub fn app(state: AppState) -> Router {
    let limit = state.settings.max_body_bytes;
    let limits = state.settings.limits;
    let admission = guard::Admission::new(
        limits.max_concurrent_requests,
        limits.queue_timeout,
        Arc::clone(&state.metrics),
    );
    let v2 = routes()
        .router
        // Runs after auth (route layers added later run first): unsafe names are refused only
        // for callers allowed to use the route.
        .route_layer(middleware::from_fn(guard::check_names))
        // After routing, so the access rule is looked up by the matched route template.
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(Extension(BodyLimit(limit)))
        .layer(middleware::from_fn_with_state(state.clone(), trace_request))
        .with_state(state.clone());
    // v1 and old payload formats are rewritten before routing, so this wraps the whole router.
    // The outer router has no routes, so its layer runs before the inner router matches.
    Router::new()
        .fallback_service(v2)
        .layer(middleware::from_fn_with_state(state, legacy::translate))
        .layer(middleware::from_fn_with_state(
            limits.body_read_timeout,
            guard::body_deadline,
        ))
        .layer(middleware::from_fn_with_state(admission, guard::admit))
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
        let who = response.extensions().get::<AuditPrincipal>();
        st.audit.record(AuditEvent {
            ts_ms: audit::now_ms(),
            principal: who
                .map(|p| p.user.clone())
                .unwrap_or_else(|| "anonymous".to_owned()),
            principal_tenant: who.map(|p| p.tenant.clone()),
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
/// for in-flight requests to finish. Starts the token file watcher when auth uses one.
pub async fn serve<F>(listener: TcpListener, state: AppState, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Some(auth) = &state.auth {
        auth.spawn_reloader();
    }
    let limits = state.settings.limits;
    server::run(
        listener,
        app(state),
        limits.header_read_timeout,
        limits.shutdown_drain,
        shutdown,
    )
    .await
}

/// The router of the separate metrics listener (`--metrics-port`): `/metrics` only, never
/// authenticated, so a scraper needs no token.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(system::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serves [`metrics_app`] on `listener` until `shutdown` resolves.
pub async fn serve_metrics<F>(
    listener: TcpListener,
    state: AppState,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let limits = state.settings.limits;
    server::run(
        listener,
        metrics_app(state),
        limits.header_read_timeout,
        limits.shutdown_drain,
        shutdown,
    )
    .await
}
