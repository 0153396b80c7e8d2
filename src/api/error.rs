//! The one place where errors become HTTP responses, in Chroma's shape
//! `{"error": "<Name>", "message": "<text>"}`, plus the extractors (`AppJson`, `AppQuery`) whose
//! rejections use that shape too.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::backup::error::SnapshotError;
use crate::catalog::CatalogError;
use crate::embed::EmbedError;
use crate::engine::EngineError;
use crate::filter::FilterError;
use crate::types::InputError;

/// An error as the API reports it. Each variant fixes the status and Chroma's `error` name.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `InvalidArgumentError`: the request is invalid.
    #[error("{0}")]
    InvalidArgument(String),
    /// 404 `NotFoundError`: a tenant, database or collection does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409 `ChromaError`: the name is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// 401 `AuthError`: auth is on and the request has no valid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403 `AuthorizationError`: the credentials are valid but do not cover this tenant,
    /// database or operation.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `ChromaError`: not allowed by configuration (reset).
    #[error("{0}")]
    Forbidden(String),
    /// 422 `ChromaError`: JSON of the wrong shape.
    #[error("{0}")]
    Unprocessable(String),
    /// 415 `ChromaError`: the body is not declared as JSON.
    #[error("Expected request with `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// 413 `ChromaError`: the body exceeds the configured limit.
    #[error("Payload too large: the request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    /// 404 `NotFoundError` for a path no route matches.
    #[error("No route for {0}")]
    RouteNotFound(String),
    /// 405 `ChromaError` for a known path with the wrong method.
    #[error("Method not allowed")]
    MethodNotAllowed,
    /// 501 `ChromaError`: a Chroma route this server does not implement.
    #[error("{0}")]
    Unimplemented(String),
    /// 507 `InternalError`: the disk is full; nothing was written.
    #[error("{0}")]
    InsufficientStorage(String),
    /// 500 `InternalError`: anything else.
    #[error("{0}")]
    Internal(String),
    /// 502 `InternalError`: the embedding provider failed or answered nonsense.
    #[error("{0}")]
    BadGateway(String),
    /// 503 `InternalError`: the embedding client is unavailable, or a collection's log is
    /// recovering from a failed sync (retry).
    #[error("{0}")]
    ServiceUnavailable(String),
    /// 503 `NotReadyError`: readiness waits for something (sync jobs catching up).
    #[error("{0}")]
    NotReady(String),
    /// 503 `RateLimitError`: the embedding provider is still rate limiting after the retries.
    #[error("{0}")]
    UpstreamRateLimited(String),
    /// 429 `RateLimitError`: too many requests in flight; the caller should retry later.
    #[error("{0}")]
    Overloaded(String),
    /// 408 `ChromaError`: the request body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
    /// 504 `InternalError`: the embedding provider did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
}

impl ApiError {
    /// The HTTP status and Chroma's `error` name.
    pub fn status_and_name(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "InvalidArgumentError"),
            ApiError::NotFound(_) | ApiError::RouteNotFound(_) => {
                (StatusCode::NOT_FOUND, "NotFoundError")
            }
            ApiError::AlreadyExists(_) => (StatusCode::CONFLICT, "ChromaError"),
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "AuthError"),
            ApiError::Unauthorized(_) => (StatusCode::FORBIDDEN, "AuthorizationError"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "ChromaError"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "ChromaError"),
            ApiError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "ChromaError"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "ChromaError"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "ChromaError"),
            ApiError::Unimplemented(_) => (StatusCode::NOT_IMPLEMENTED, "ChromaError"),
            ApiError::InsufficientStorage(_) => (StatusCode::INSUFFICIENT_STORAGE, "InternalError"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            ApiError::BadGateway(_) => (StatusCode::BAD_GATEWAY, "InternalError"),
            ApiError::ServiceUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "InternalError"),
            ApiError::UpstreamRateLimited(_) => (StatusCode::SERVICE_UNAVAILABLE, "RateLimitError"),
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "NotReadyError"),
            ApiError::GatewayTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "InternalError"),
            ApiError::Overloaded(_) => (StatusCode::TOO_MANY_REQUESTS, "RateLimitError"),
            ApiError::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "ChromaError"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, name) = self.status_and_name();
        let message = self.to_string();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = name, %message, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = name, %message, "request rejected");
        }
        (
            status,
            axum::Json(serde_json::json!({ "error": name, "message": message })),
        )
            .into_response()
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        ApiError::InvalidArgument(e.to_string())
    }
}

impl From<FilterError> for ApiError {
    fn from(e: FilterError) -> Self {
        ApiError::InvalidArgument(e.to_string())
    }
}

/// Embedder failures: the caller's mistakes (no embedder, client-side or disallowed model,
/// input the provider rejects) are 400s; the provider's failures 502/503/504, and nothing was
/// written.
impl From<EmbedError> for ApiError {
    fn from(e: EmbedError) -> Self {
        let msg = e.to_string();
        match e {
            _ if e.is_user_error() => ApiError::InvalidArgument(msg),
            EmbedError::RateLimited { .. } => ApiError::UpstreamRateLimited(msg),
            EmbedError::Setup(_) => ApiError::ServiceUnavailable(msg),
            EmbedError::Timeout(_) => ApiError::GatewayTimeout(msg),
            _ => ApiError::BadGateway(msg),
        }
    }
}

/// Engine errors without a collection to name (callers with one go through `CatalogError::Engine`).
impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        engine_error(e, None)
    }
}

fn engine_error(e: EngineError, collection: Option<String>) -> ApiError {
    let ctx = |msg: String| match &collection {
        Some(c) => format!("{c}: {msg}"),
        None => msg,
    };
    match e {
        EngineError::Input(i) => ApiError::InvalidArgument(i.to_string()),
        EngineError::Filter(f) => ApiError::InvalidArgument(f.to_string()),
        EngineError::NoSpace { .. } => ApiError::InsufficientStorage(ctx(format!(
            "{e}; the write was not applied, free disk space and retry"
        ))),
        EngineError::Corrupt { .. } => {
            ApiError::Internal(ctx(format!("collection data is corrupt: {e}")))
        }
        EngineError::Overloaded(_) => ApiError::Overloaded(ctx(e.to_string())),
        // These pass: the log recovers in place (or the purge is rerun) and a retry succeeds.
        EngineError::Poisoned(_) | EngineError::SyncFailed(_) | EngineError::Unfinished(_) => {
            ApiError::ServiceUnavailable(ctx(e.to_string()))
        }
        EngineError::Internal(_)
        | EngineError::Io { .. }
        | EngineError::Locked { .. }
        | EngineError::Version { .. } => ApiError::Internal(ctx(e.to_string())),
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::InvalidName(_)
            | CatalogError::InvalidArgument(_)
            | CatalogError::CollectionLimit(_)
            | CatalogError::DatabaseMissing(_) => ApiError::InvalidArgument(e.to_string()),
            CatalogError::TenantExists(_)
            | CatalogError::DatabaseExists(_)
            | CatalogError::CollectionExists(_) => ApiError::AlreadyExists(e.to_string()),
            CatalogError::TenantNotFound(_)
            | CatalogError::DatabaseNotFound { .. }
            | CatalogError::CollectionNameNotFound(_)
            | CatalogError::CollectionIdNotFound(_) => ApiError::NotFound(e.to_string()),
            CatalogError::Engine { id, name, source } => {
                engine_error(source, Some(format!("Collection [{name}] ({id})")))
            }
            CatalogError::NoSpace(_) => {
                ApiError::InsufficientStorage(format!("{e}; nothing was changed"))
            }
            CatalogError::CollectionUnavailable { .. }
            | CatalogError::Lock(_)
            | CatalogError::InterruptedRestore(_)
            | CatalogError::Io { .. }
            | CatalogError::Corrupt { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<SnapshotError> for ApiError {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::Catalog(c) => c.into(),
            SnapshotError::Collection { source, id } => {
                engine_error(source, Some(format!("snapshot of collection {id}")))
            }
            SnapshotError::Io { ref source, .. } if crate::fsutil::is_storage_full(source) => {
                ApiError::InsufficientStorage(format!("{e}; the snapshot was abandoned"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Maps a panicked or cancelled blocking task to a 500.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(format!("internal task failed: {e}"))
    }
}

/// Error a body read fails with after the deadline (the `body_deadline` guard);
/// [`JsonBytes`] maps it to 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within {0:.1} s")]
pub struct BodyTimedOut(pub f64);

/// A JSON body whose every failure is an `ApiError`: no `Content-Type` means JSON (old clients
/// send none), another content type is 415, a body over the limit 413, invalid JSON 400, and
/// JSON of the wrong shape 422, with the path of the bad field.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        parse_json(&bytes).map(AppJson)
    }
}

/// A JSON body read but not yet parsed, so large bodies (record batches) can be parsed on a
/// blocking thread instead of the async runtime. Same content-type and size rules as `AppJson`.
#[derive(Debug, Clone, Default)]
pub struct JsonBytes(pub Bytes);

impl JsonBytes {
    /// Parses the body (400 for invalid JSON, 422 for the wrong shape).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json(&self.0)
    }
}

impl<S> FromRequest<S> for JsonBytes
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_or_absent(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(0);
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(limit)
            } else if let Some(t) = find_source::<BodyTimedOut>(&rej) {
                ApiError::RequestTimeout(t.to_string())
            } else {
                ApiError::InvalidArgument(format!("Failed to read the request body: {rej}"))
            }
        })?;
        Ok(JsonBytes(bytes))
    }
}

/// The first error of type `T` in `e`'s source chain.
fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// Path parameters whose rejection is a JSON 400.
#[derive(Debug, Clone)]
pub struct AppPath<T>(pub T);

impl<T, S> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| AppPath(p.0))
            .map_err(|e| ApiError::InvalidArgument(e.body_text()))
    }
}

/// The configured body limit, put in request extensions so 413 messages can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

fn is_json_or_absent(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(ct) = ct.to_str() else { return false };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.is_empty()
        || essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON body, telling syntax errors (400) from shape errors (422) like Chroma.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let syntax = |e: &dyn std::fmt::Display| {
        ApiError::InvalidArgument(format!("Failed to parse the request body as JSON: {e}"))
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let inner = err.inner();
        if inner.is_data() {
            let path = err.path().to_string();
            let msg = if path == "." {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            };
            ApiError::Unprocessable(format!(
                "Failed to deserialize the JSON body into the target type: {msg}"
            ))
        } else {
            syntax(inner)
        }
    })?;
    // Trailing bytes after the value are a syntax error, as in axum's `Json`.
    de.end().map_err(|e| syntax(&e))?;
    Ok(value)
}

/// A query string whose rejection is Chroma's 400 "Failed to deserialize query string: …".
#[derive(Debug, Clone, Copy, Default)]
pub struct AppQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(q).map(AppQuery).map_err(|e| {
            ApiError::InvalidArgument(format!("Failed to deserialize query string: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_vs_shape() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        let e = parse_json::<T>(b"{").unwrap_err();
        assert!(
            matches!(e, ApiError::InvalidArgument(m) if m.starts_with("Failed to parse the request body as JSON"))
        );
        let e = parse_json::<T>(br#"{"a":"x"}"#).unwrap_err();
        assert!(matches!(e, ApiError::Unprocessable(m) if m.contains("a: invalid type")),);
        let e = parse_json::<T>(br#"{"a":1} x"#).unwrap_err();
        assert!(matches!(e, ApiError::InvalidArgument(_)));
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(is_json_or_absent(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(is_json_or_absent(&h));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json_or_absent(&h));
    }
}
