//! Pre-1.0 Chroma clients (Python 0.4.15–0.6.3): the `/api/v1` routes, and the old payload
//! formats those clients expect on v1 and (0.5.16–0.6.3) on v2 (chroma-api.md §11).
//!
//! This is a translation layer around the v2 router, not a second API: a v1 request is
//! rewritten to its v2 path (tenant and database from `?tenant=&database=`, or from the
//! collection when the path only names its id), an old request body is normalised (`where: {}`
//! means no filter, `sort` and the `data` include are dropped, the old configuration format is
//! ignored), the v2 handlers run — with the same auth, limits and metrics — and a successful
//! response is reshaped into the old format (collection JSON without `schema` and with the old
//! `configuration_json`, `true`/`null` bodies, `included`). Error names become the ones old
//! clients map to exceptions (`UniqueConstraintError`, `InvalidCollection`, `InvalidDimension`).
//!
//! Old clients are told apart from current ones on v2 by their `User-Agent` (`python-httpx/…`
//! or `python-requests/…`, where Python ≥ 1.0 sends `Chroma Python Client …`) together with the
//! missing `Content-Type` (old clients send none).

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::error::ApiError;
use super::AppState;
use crate::catalog::{DEFAULT_DATABASE, DEFAULT_TENANT};
use crate::telemetry::labels::LegacyLabels;

/// What the v2 route a legacy request maps to returns, so its response can be reshaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// Passed through unchanged (heartbeat, version, counts, reset, database GET).
    AsIs,
    /// `{"max_batch_size"}` only.
    PreFlight,
    /// Identity with `"attributes": null`.
    Identity,
    /// Tenant as `{"name"}`.
    Tenant,
    /// One collection object in the old shape.
    Collection,
    /// A list of collection objects in the old shape.
    Collections,
    /// `add`: 201 `true`.
    Added,
    /// Writes that old servers answered with `null`.
    Null,
    /// `get` / `query` results: `included` instead of `include`, plus `"data": null`.
    Records,
}

/// Body rewrites an old request needs before the v2 handler parses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFix {
    /// None.
    None,
    /// `get` / `query` / `delete`: empty filters mean none; drop `sort` and the `data` include.
    Records,
    /// Create collection: the old configuration format is not the v2 one; legacy `hnsw:*`
    /// metadata (what old servers applied) decides the index settings.
    CreateCollection,
}

/// Whether a v2 request comes from a pre-1.0 Python client.
pub fn is_legacy_client(headers: &HeaderMap) -> bool {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let old_ua = ua.starts_with("python-httpx/") || ua.starts_with("python-requests/");
    old_ua && !headers.contains_key(header::CONTENT_TYPE)
}

/// Middleware around the whole router (it must run before routing, since it rewrites paths).
pub async fn translate(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let v1 = path == "/api/v1" || path.starts_with("/api/v1/");
    let old_v2 = path.starts_with("/api/v2") && is_legacy_client(req.headers());
    if !v1 && !old_v2 {
        return next.run(req).await;
    }
    st.metrics
        .legacy_requests
        .get_or_create(&LegacyLabels {
            api: if v1 { "v1" } else { "v2" },
        })
        .inc();
    match translate_inner(&st, v1, req, next).await {
        Ok(r) => r,
        Err(e) => legacy_error(e.into_response()).await,
    }
}

async fn translate_inner(
    st: &AppState,
    v1: bool,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let query = parse_query(parts.uri.query());
    let v2_path = if v1 {
        // v1 names the tenant and database in the query; they are spliced into the v2 path,
        // so anything that could change the path's shape (separators, `?`, `#`, `..`) is
        // refused here rather than routed somewhere unexpected.
        for (k, v) in &query {
            if k == "tenant" || k == "database" {
                crate::catalog::check_safe_name(v)?;
                if v.contains(['?', '#', '%']) {
                    return Err(ApiError::InvalidArgument(format!(
                        "Validation error: {k}: contains '?', '#' or '%'"
                    )));
                }
            }
        }
        match v1_to_v2(st, &parts.method, parts.uri.path(), &query) {
            Some(p) => p,
            None => {
                return Err(ApiError::RouteNotFound(format!(
                    "{} {}",
                    parts.method,
                    parts.uri.path()
                )))
            }
        }
    } else {
        parts.uri.path().to_owned()
    };
    let (reply, fix) = classify(&parts.method, &v2_path);
    // Keep paging parameters; tenant/database were moved into the path.
    let kept: Vec<String> = query
        .iter()
        .filter(|(k, _)| k != "tenant" && k != "database")
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    let pq = if kept.is_empty() {
        v2_path
    } else {
        format!("{v2_path}?{}", kept.join("&"))
    };
    parts.uri = pq
        .parse::<Uri>()
        .map_err(|e| ApiError::InvalidArgument(format!("Invalid path: {e}")))?;
    let body = match fix {
        BodyFix::None => body,
        _ => {
            let bytes = to_bytes(body, st.settings.max_body_bytes)
                .await
                .map_err(|_| ApiError::PayloadTooLarge(st.settings.max_body_bytes))?;
            Body::from(fix_body(fix, &bytes))
        }
    };
    let resp = next.run(Request::from_parts(parts, body)).await;
    if !resp.status().is_success() {
        return Ok(legacy_error(resp).await);
    }
    reshape(reply, resp).await
}

fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|x| x.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
}

fn param<'a>(query: &'a [(String, String)], key: &str, default: &'a str) -> &'a str {
    query
        .iter()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
        .unwrap_or(default)
}

/// Maps a v1 path to its v2 path, or `None` for a path v1 never had.
fn v1_to_v2(
    st: &AppState,
    method: &Method,
    path: &str,
    query: &[(String, String)],
) -> Option<String> {
    let rest = path.strip_prefix("/api/v1").unwrap_or("");
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segs: Vec<&str> = rest.split('/').skip(1).collect();
    let tenant = param(query, "tenant", DEFAULT_TENANT);
    let database = param(query, "database", DEFAULT_DATABASE);
    let db = |t: &str, d: &str| format!("/api/v2/tenants/{t}/databases/{d}");
    // Collections named by id carry no tenant or database in v1: take them from the catalog.
    let by_id = |cid: &str| match Uuid::parse_str(cid)
        .ok()
        .and_then(|id| st.catalog.collection_location(id))
    {
        Some((t, d)) => db(&t, &d),
        None => db(tenant, database),
    };
    let p = match (method, segs.as_slice()) {
        (_, []) => "/api/v2/heartbeat".to_string(),
        (_, ["heartbeat" | "version" | "pre-flight-checks" | "reset" | "healthcheck"]) => {
            format!("/api/v2{rest}")
        }
        (_, ["auth", "identity"]) => "/api/v2/auth/identity".to_string(),
        (_, ["tenants"]) => "/api/v2/tenants".to_string(),
        (_, ["tenants", t]) => format!("/api/v2/tenants/{t}"),
        (_, ["databases"]) => format!("/api/v2/tenants/{tenant}/databases"),
        (_, ["databases", d]) => db(tenant, d),
        (_, ["count_collections"]) => format!("{}/collections_count", db(tenant, database)),
        (_, ["collections"]) => format!("{}/collections", db(tenant, database)),
        (&Method::PUT, ["collections", cid]) => format!("{}/collections/{cid}", by_id(cid)),
        (_, ["collections", name]) => format!("{}/collections/{name}", db(tenant, database)),
        (_, ["collections", cid, op]) => format!("{}/collections/{cid}/{op}", by_id(cid)),
        _ => return None,
    };
    Some(p)
}

/// How the response of the v2 route `path` is reshaped, and how its body is fixed.
fn classify(method: &Method, path: &str) -> (Reply, BodyFix) {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(3).collect();
    match (method, segs.as_slice()) {
        (_, ["pre-flight-checks"]) => (Reply::PreFlight, BodyFix::None),
        (_, ["auth", "identity"]) => (Reply::Identity, BodyFix::None),
        (&Method::GET, ["tenants", _]) => (Reply::Tenant, BodyFix::None),
        (&Method::POST, ["tenants"]) | (&Method::POST, ["tenants", _, "databases"]) => {
            (Reply::Null, BodyFix::None)
        }
        (&Method::GET, ["tenants", _, "databases", _, "collections"]) => {
            (Reply::Collections, BodyFix::None)
        }
        (&Method::POST, ["tenants", _, "databases", _, "collections"]) => {
            (Reply::Collection, BodyFix::CreateCollection)
        }
        (&Method::GET, ["tenants", _, "databases", _, "collections", _])
        | (&Method::GET, ["tenants", _, "databases", _, "collections", "by-id", _]) => {
            (Reply::Collection, BodyFix::None)
        }
        (&Method::PUT | &Method::DELETE, ["tenants", _, "databases", _, "collections", _]) => {
            (Reply::Null, BodyFix::None)
        }
        (_, ["tenants", _, "databases", _, "collections", _, op]) => match *op {
            "add" => (Reply::Added, BodyFix::None),
            "upsert" | "update" => (Reply::Null, BodyFix::None),
            "delete" => (Reply::Null, BodyFix::Records),
            "get" | "query" => (Reply::Records, BodyFix::Records),
            _ => (Reply::AsIs, BodyFix::None),
        },
        _ => (Reply::AsIs, BodyFix::None),
    }
}

/// Normalises an old request body; a body that is not a JSON object is left for the handler
/// to reject with the usual 400/422.
fn fix_body(fix: BodyFix, bytes: &[u8]) -> Vec<u8> {
    let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(bytes) else {
        return bytes.to_vec();
    };
    match fix {
        BodyFix::None => {}
        BodyFix::Records => {
            for k in ["where", "where_document"] {
                if m.get(k)
                    .is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
                {
                    m.remove(k);
                }
            }
            m.remove("sort");
            if let Some(Value::Array(inc)) = m.get_mut("include") {
                inc.retain(|v| v != "data");
            }
        }
        BodyFix::CreateCollection => {
            m.remove("configuration");
        }
    }
    serde_json::to_vec(&Value::Object(m)).unwrap_or_else(|_| bytes.to_vec())
}

async fn body_json(resp: Response) -> Result<(axum::http::response::Parts, Value), ApiError> {
    let (parts, body) = resp.into_parts();
    let bytes = to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::Internal(format!("reading a response: {e}")))?;
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((parts, v))
}

fn json_reply(parts: axum::http::response::Parts, status: StatusCode, v: &Value) -> Response {
    let mut r = (status, axum::Json(v)).into_response();
    for (k, val) in parts.headers.iter() {
        if k != header::CONTENT_LENGTH && k != header::CONTENT_TYPE {
            r.headers_mut().insert(k.clone(), val.clone());
        }
    }
    r
}

async fn reshape(reply: Reply, resp: Response) -> Result<Response, ApiError> {
    if reply == Reply::AsIs {
        return Ok(resp);
    }
    let (parts, mut v) = body_json(resp).await?;
    let status = parts.status;
    let out = match reply {
        Reply::AsIs => v,
        Reply::PreFlight => json!({ "max_batch_size": v["max_batch_size"] }),
        Reply::Identity => {
            if let Value::Object(m) = &mut v {
                m.insert("attributes".into(), Value::Null);
            }
            v
        }
        Reply::Tenant => json!({ "name": v["name"] }),
        Reply::Collection => legacy_collection(&v),
        Reply::Collections => Value::Array(
            v.as_array()
                .map(|a| a.iter().map(legacy_collection).collect())
                .unwrap_or_default(),
        ),
        Reply::Added => return Ok(json_reply(parts, StatusCode::CREATED, &json!(true))),
        Reply::Null => Value::Null,
        Reply::Records => {
            if let Value::Object(m) = &mut v {
                if let Some(inc) = m.remove("include") {
                    m.insert("included".into(), inc);
                }
                m.insert("data".into(), Value::Null);
            }
            v
        }
    };
    Ok(json_reply(parts, status, &out))
}

/// A collection object in the shape old clients parse: exactly `id, name, configuration_json,
/// metadata, dimension, tenant, database, version, log_position` (their pydantic model rejects
/// unknown keys such as `schema`), with the old `configuration_json` format.
fn legacy_collection(c: &Value) -> Value {
    let h = &c["configuration_json"]["hnsw"];
    let num = |k: &str, d: Value| h.get(k).filter(|v| !v.is_null()).cloned().unwrap_or(d);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    json!({
        "id": c["id"],
        "name": c["name"],
        "configuration_json": {
            "hnsw_configuration": {
                "space": num("space", json!("l2")),
                "ef_construction": num("ef_construction", json!(100)),
                "ef_search": num("ef_search", json!(100)),
                "num_threads": threads,
                "M": num("max_neighbors", json!(16)),
                "resize_factor": num("resize_factor", json!(1.2)),
                "batch_size": 100,
                "sync_threshold": num("sync_threshold", json!(1000)),
                "_type": "HNSWConfigurationInternal",
            },
            "_type": "CollectionConfigurationInternal",
        },
        "metadata": c["metadata"],
        "dimension": c["dimension"],
        "tenant": c["tenant"],
        "database": c["database"],
        "version": c.get("version").cloned().unwrap_or(json!(0)),
        "log_position": c.get("log_position").cloned().unwrap_or(json!(0)),
    })
}

/// Renames v2 error names to the ones old clients know.
async fn legacy_error(resp: Response) -> Response {
    let status = resp.status();
    let Ok((parts, v)) = body_json(resp).await else {
        return ApiError::Internal("reading an error response".into()).into_response();
    };
    let name = v["error"].as_str().unwrap_or("");
    let msg = v["message"].as_str().unwrap_or("").to_owned();
    let (status, name, msg) = if status == StatusCode::CONFLICT && msg.contains("already exists") {
        (status, "UniqueConstraintError", unbracket(&msg))
    } else if name == "NotFoundError" && msg.starts_with("Collection ") {
        let m = unbracket(&msg);
        let m = if m.ends_with('.') { m } else { format!("{m}.") };
        (StatusCode::BAD_REQUEST, "InvalidCollection", m)
    } else if name == "InvalidArgumentError" && msg.contains("expecting embedding with dimension") {
        (status, "InvalidDimension", msg)
    } else {
        return json_reply(parts, status, &v);
    };
    json_reply(parts, status, &json!({ "error": name, "message": msg }))
}

/// `Collection [x] already exists` → `Collection x already exists` (the old servers' text).
fn unbracket(msg: &str) -> String {
    match (msg.find('['), msg.find(']')) {
        (Some(a), Some(b)) if a < b => format!("{}{}{}", &msg[..a], &msg[a + 1..b], &msg[b + 1..]),
        _ => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_clients_are_recognised_by_agent_and_missing_content_type() {
        let mut h = HeaderMap::new();
        h.insert(header::USER_AGENT, "python-httpx/0.27.2".parse().unwrap());
        assert!(is_legacy_client(&h));
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(!is_legacy_client(&h));
        let mut h = HeaderMap::new();
        h.insert(
            header::USER_AGENT,
            "Chroma Python Client v1.5.9 (https://github.com/chroma-core/chroma)"
                .parse()
                .unwrap(),
        );
        assert!(!is_legacy_client(&h));
    }

    #[test]
    fn records_bodies_drop_empty_filters_sort_and_data() {
        let b = br#"{"where":{},"where_document":{},"sort":null,"include":["metadatas","data"],"ids":["a"]}"#;
        let v: Value = serde_json::from_slice(&fix_body(BodyFix::Records, b)).unwrap();
        assert_eq!(v, json!({"ids": ["a"], "include": ["metadatas"]}));
        let b = br#"{"where":{"k":1}}"#;
        let v: Value = serde_json::from_slice(&fix_body(BodyFix::Records, b)).unwrap();
        assert_eq!(v, json!({"where": {"k": 1}}));
        assert_eq!(fix_body(BodyFix::Records, b"not json"), b"not json");
    }

    #[test]
    fn messages_lose_brackets() {
        assert_eq!(
            unbracket("Collection [x] already exists"),
            "Collection x already exists"
        );
        assert_eq!(unbracket("no brackets"), "no brackets");
    }

    #[test]
    fn v2_paths_classify() {
        let p = "/api/v2/tenants/t/databases/d/collections";
        assert_eq!(
            classify(&Method::POST, p),
            (Reply::Collection, BodyFix::CreateCollection)
        );
        assert_eq!(classify(&Method::GET, p).0, Reply::Collections);
        assert_eq!(
            classify(&Method::POST, &format!("{p}/abc/query")),
            (Reply::Records, BodyFix::Records)
        );
        assert_eq!(
            classify(&Method::GET, &format!("{p}/abc/count")).0,
            Reply::AsIs
        );
        assert_eq!(
            classify(&Method::GET, &format!("{p}/name")).0,
            Reply::Collection
        );
        assert_eq!(
            classify(&Method::DELETE, &format!("{p}/name")).0,
            Reply::Null
        );
    }
}
