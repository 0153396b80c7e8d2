//! Token authentication and tenant/database authorization, off unless configured.
//!
//! Credentials come from `Authorization: Bearer <token>`, `X-Chroma-Token: <token>` or
//! `Authorization: Basic base64(user:password)` (whose secret is the whole `user:password`).
//! The server never stores a token: the token file maps the **sha256** of each secret to a
//! principal (user, tenant or `*`, databases or `*`, role), and a presented secret is hashed and
//! compared with every entry in constant time. The file is re-read when its size or mtime
//! changes (polled) or on SIGHUP; a file that fails to parse keeps the previous tokens.
//!
//! What a route needs is decided in one table ([`rule`]) keyed by the matched route template;
//! a route missing from it is refused (fail closed), and a test checks every served route has
//! an entry.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use axum::extract::{FromRequestParts as _, MatchedPath, RawPathParams, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::config::{Settings, TokenHeader};
use crate::telemetry::audit::AuditPrincipal;

/// How often the token file's size and mtime are checked for changes.
pub const RELOAD_POLL: Duration = Duration::from_secs(2);

/// Wildcard for "every tenant" or "every database" in a token's scope.
pub const ANY: &str = "*";

/// What a principal may do inside its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Role {
    /// Everything, including tenants, databases and reset.
    #[serde(rename = "admin")]
    Admin,
    /// Read and write collections and records.
    #[serde(rename = "rw")]
    ReadWrite,
    /// Read collections and records only.
    #[serde(rename = "ro")]
    ReadOnly,
}

/// The identity a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Name reported by `/auth/identity` and in logs.
    pub user: String,
    /// The one tenant it may use, or `*`.
    pub tenant: String,
    /// Databases it may use, or `["*"]`.
    pub databases: Vec<String>,
    /// What it may do.
    pub role: Role,
}

/// What a route requires of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: liveness, version, the API description.
    Open,
    /// Any valid token (identity, pre-flight, metrics).
    Authenticated,
    /// Read access to the scope.
    Read,
    /// Write access to the scope.
    Write,
    /// Admin access to the scope.
    Admin,
}

/// Which tenant and database a route acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// No scope (only with `Open` / `Authenticated`).
    None,
    /// Every tenant and database (reset, creating tenants).
    Everything,
    /// The `{tenant}` path parameter, all of its databases.
    Tenant,
    /// The `{tenant}` path parameter, any one of its databases (reading the tenant itself,
    /// which every client does at construction).
    TenantOnly,
    /// The `{tenant}` and `{database}` path parameters.
    Database,
    /// The `{crn}` parameter `tenant:database:name`.
    Crn,
}

/// A token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// The file cannot be read.
    #[error("cannot read token file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid token file.
    #[error("invalid token file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the entry.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenFileEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFileEntry {
    user: String,
    sha256: String,
    tenant: String,
    #[serde(default = "all_databases")]
    databases: Vec<String>,
    role: Role,
}

fn all_databases() -> Vec<String> {
    vec![ANY.to_string()]
}

struct TokenEntry {
    hash: [u8; 32],
    principal: Arc<Principal>,
}

/// Parses a token file's text (JSON: `{"tokens":[{"user","sha256","tenant","databases","role"}]}`).
fn parse_token_file(path: &Path, text: &str) -> Result<Vec<TokenEntry>, AuthConfigError> {
    let invalid = |reason: String| AuthConfigError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let file: TokenFile = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let mut out: Vec<TokenEntry> = Vec::with_capacity(file.tokens.len());
    for (i, e) in file.tokens.into_iter().enumerate() {
        let hash = decode_hex32(&e.sha256).ok_or_else(|| {
            invalid(format!(
                "tokens[{i}] ({}): sha256 must be 64 hex digits (the sha256 of the token, e.g. `printf %s TOKEN | sha256sum`)",
                e.user
            ))
        })?;
        if e.tenant.is_empty() || e.databases.is_empty() || e.databases.iter().any(String::is_empty)
        {
            return Err(invalid(format!(
                "tokens[{i}] ({}): tenant and databases must be names or \"*\"",
                e.user
            )));
        }
        if out.iter().any(|o| o.hash == hash) {
            return Err(invalid(format!(
                "tokens[{i}] ({}): the same token hash appears twice",
                e.user
            )));
        }
        out.push(TokenEntry {
            hash,
            principal: Arc::new(Principal {
                user: e.user,
                tenant: e.tenant,
                databases: e.databases,
                role: e.role,
            }),
        });
    }
    Ok(out)
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim().as_bytes();
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn sha256(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// Size and modification time of the token file, to notice edits cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        len: m.len(),
        modified: m.modified().ok(),
    })
}

/// The configured tokens; shared by every request, swapped whole on reload.
pub struct Authenticator {
    file: Option<PathBuf>,
    admin: Option<TokenEntry>,
    header: TokenHeader,
    tokens: RwLock<Arc<Vec<TokenEntry>>>,
    stamp: Mutex<Option<FileStamp>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("file", &self.file)
            .field("admin_token", &self.admin.is_some())
            .field("tokens", &self.tokens.read().len())
            .finish()
    }
}

impl Authenticator {
    /// Builds the authenticator the settings ask for, or `None` when auth is off (no token file
    /// and no admin token). A token file that cannot be read or parsed is an error at startup.
    pub fn from_settings(s: &Settings) -> Result<Option<Arc<Authenticator>>, AuthConfigError> {
        if s.auth_tokens.is_none() && s.admin_token.is_none() {
            return Ok(None);
        }
        let admin = s.admin_token.as_ref().map(|t| TokenEntry {
            hash: sha256(t.0.as_bytes()),
            principal: Arc::new(Principal {
                user: "admin".to_string(),
                tenant: ANY.to_string(),
                databases: all_databases(),
                role: Role::Admin,
            }),
        });
        let auth = Authenticator {
            file: s.auth_tokens.clone(),
            admin,
            header: s.token_header,
            tokens: RwLock::new(Arc::new(Vec::new())),
            stamp: Mutex::new(None),
        };
        if let Some(path) = &auth.file {
            let st = stamp(path);
            let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
                path: path.clone(),
                source,
            })?;
            *auth.tokens.write() = Arc::new(parse_token_file(path, &text)?);
            *auth.stamp.lock() = st;
        }
        Ok(Some(Arc::new(auth)))
    }

    /// Number of tokens currently loaded from the file.
    pub fn file_tokens(&self) -> usize {
        self.tokens.read().len()
    }

    /// Re-reads the token file if `force` or its size or mtime changed. Returns whether a new
    /// set was installed; a file that fails to read or parse keeps the old tokens (logged).
    pub fn reload(&self, force: bool) -> bool {
        let Some(path) = &self.file else { return false };
        let now = stamp(path);
        {
            let mut last = self.stamp.lock();
            if !force && *last == now {
                return false;
            }
            *last = now;
        }
        let parsed = std::fs::read_to_string(path)
            .map_err(|source| AuthConfigError::Read {
                path: path.clone(),
                source,
            })
            .and_then(|text| parse_token_file(path, &text));
        match parsed {
            Ok(tokens) => {
                let n = tokens.len();
                *self.tokens.write() = Arc::new(tokens);
                tracing::info!(file = %path.display(), tokens = n, "token file reloaded");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "token file not reloaded; keeping the previous tokens");
                false
            }
        }
    }

    /// Polls the token file and listens for SIGHUP until the authenticator is dropped.
    pub fn spawn_reloader(self: &Arc<Self>) {
        if self.file.is_none() {
            return;
        }
        let weak: Weak<Authenticator> = Arc::downgrade(self);
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(RELOAD_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let force = match hup.as_mut() {
                    Some(h) => tokio::select! {
                        _ = tick.tick() => false,
                        _ = h.recv() => true,
                    },
                    None => {
                        tick.tick().await;
                        false
                    }
                };
                #[cfg(not(unix))]
                let force = {
                    tick.tick().await;
                    false
                };
                let Some(auth) = weak.upgrade() else { return };
                // Reading the file is blocking I/O; it is small, but keep it off the runtime.
                let _ = tokio::task::spawn_blocking(move || auth.reload(force)).await;
            }
        });
    }

    /// The secret the request presents, if any, per the configured header choice.
    fn presented_secret(&self, headers: &HeaderMap) -> Result<Option<Vec<u8>>, ApiError> {
        let bad = |m: &str| ApiError::Unauthenticated(m.to_string());
        if let Some(v) = headers.get(header::AUTHORIZATION) {
            let v = v
                .to_str()
                .map_err(|_| bad("Malformed Authorization header"))?
                .trim();
            let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
            let rest = rest.trim();
            if scheme.eq_ignore_ascii_case("basic") {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(rest)
                    .map_err(|_| bad("Malformed basic credentials"))?;
                if !decoded.contains(&b':') {
                    return Err(bad("Malformed basic credentials: expected user:password"));
                }
                return Ok(Some(decoded));
            }
            if scheme.eq_ignore_ascii_case("bearer") && self.header != TokenHeader::XChromaToken {
                if rest.is_empty() {
                    return Err(bad("Empty bearer token"));
                }
                return Ok(Some(rest.as_bytes().to_vec()));
            }
        }
        if self.header != TokenHeader::Authorization {
            if let Some(v) = headers.get("x-chroma-token") {
                let v = v.as_bytes().trim_ascii();
                if v.is_empty() {
                    return Err(bad("Empty X-Chroma-Token"));
                }
                return Ok(Some(v.to_vec()));
            }
        }
        Ok(None)
    }

    /// The principal of the request's credentials: 401 `AuthError` when there are none or they
    /// match no token.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Principal>, ApiError> {
        let Some(secret) = self.presented_secret(headers)? else {
            return Err(ApiError::Unauthenticated(
                "Missing credentials: send Authorization: Bearer <token>, X-Chroma-Token or basic auth"
                    .to_string(),
            ));
        };
        let hash = sha256(&secret);
        let tokens = self.tokens.read().clone();
        // Compare against every entry without stopping early, so the time taken does not tell
        // which entry (if any) matched.
        let mut found: Option<Arc<Principal>> = None;
        for e in self.admin.iter().chain(tokens.iter()) {
            let hit: bool = e.hash.ct_eq(&hash).into();
            if hit && found.is_none() {
                found = Some(Arc::clone(&e.principal));
            }
        }
        found.ok_or_else(|| ApiError::Unauthenticated("Invalid credentials".to_string()))
    }
}

impl Principal {
    fn may_tenant(&self, tenant: Option<&str>) -> bool {
        self.tenant == ANY || tenant == Some(self.tenant.as_str())
    }

    fn may_database(&self, database: Option<&str>) -> bool {
        self.databases
            .iter()
            .any(|d| d == ANY || Some(d.as_str()) == database)
    }

    fn may_role(&self, need: Need) -> bool {
        match need {
            Need::Open | Need::Authenticated | Need::Read => true,
            Need::Write => matches!(self.role, Role::Admin | Role::ReadWrite),
            Need::Admin => self.role == Role::Admin,
        }
    }

    /// Whether this principal may do `need` in `tenant`/`database` (`None` = all of them).
    pub fn allows(&self, need: Need, tenant: Option<&str>, database: Option<&str>) -> bool {
        self.may_role(need) && self.may_tenant(tenant) && self.may_database(database)
    }

    /// Whether this principal may do `need` on `tenant` itself (through any of its databases).
    pub fn allows_tenant(&self, need: Need, tenant: Option<&str>) -> bool {
        self.may_role(need) && self.may_tenant(tenant)
    }
}

/// What the route `template` (as axum matched it) needs for `method`, or `None` for a route the
/// table does not know (refused).
pub fn rule(method: &Method, template: &str) -> Option<(Need, Scope)> {
    use Need::*;
    const DB: &str = "/api/v2/tenants/{tenant}/databases/{database}";
    let read_or_write = |m: &Method| if m == Method::GET { Read } else { Write };
    let r = match template {
        "/api/v2" | "/api/v2/heartbeat" | "/api/v2/version" | "/api/v2/healthcheck" => {
            (Open, Scope::None)
        }
        "/openapi.json" | "/docs" => (Open, Scope::None),
        "/api/v2/auth/identity" | "/api/v2/pre-flight-checks" | "/metrics" => {
            (Authenticated, Scope::None)
        }
        "/api/v2/reset" | "/api/v2/tenants" => (Admin, Scope::Everything),
        // Snapshots copy every tenant's data; sync status names tables and positions; a
        // purge rewrites a collection of any tenant (and costs a graph rebuild).
        "/api/v2/admin/snapshots"
        | "/api/v2/admin/collections/{collection_id}/compact"
        | "/sync/status"
        | "/sync/status/{job}" => (Admin, Scope::Everything),
        "/api/v2/tenants/{tenant}" => {
            if method == Method::GET {
                (Read, Scope::TenantOnly)
            } else {
                (Admin, Scope::Tenant)
            }
        }
        "/api/v2/tenants/{tenant}/databases" => {
            if method == Method::GET {
                (Read, Scope::Tenant)
            } else {
                (Admin, Scope::Tenant)
            }
        }
        "/api/v2/collections/{crn}" => (Read, Scope::Crn),
        t if t == DB => {
            if method == Method::GET {
                (Read, Scope::Database)
            } else {
                (Admin, Scope::Database)
            }
        }
        t => {
            let rest = t.strip_prefix(DB)?;
            match rest {
                "/collections"
                | "/collections_count"
                | "/collections/by-id/{collection_id}"
                | "/collections/{collection}" => (read_or_write(method), Scope::Database),
                _ => {
                    let op = rest.strip_prefix("/collections/{collection_id}/")?;
                    match op {
                        "get" | "query" | "count" | "fork_count" | "indexing_status" | "search" => {
                            (Read, Scope::Database)
                        }
                        "add"
                        | "upsert"
                        | "update"
                        | "delete"
                        | "fork"
                        | "functions/attach"
                        | "attached_functions/{name}/detach" => (Write, Scope::Database),
                        "functions/{function}" => (Read, Scope::Database),
                        _ => return None,
                    }
                }
            }
        }
    };
    Some(r)
}

/// Middleware (after routing): authenticates and authorizes the request when auth is on and
/// puts the [`Principal`] in the request's extensions for `/auth/identity`.
pub async fn require(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(auth) = st.auth.clone() else {
        return next.run(req).await;
    };
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let Some((need, scope)) = rule(req.method(), &template) else {
        return ApiError::Unauthorized(format!("No access rule for {template}")).into_response();
    };
    if need == Need::Open {
        return next.run(req).await;
    }
    let principal = match auth.authenticate(req.headers()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let (mut parts, body) = req.into_parts();
    let params = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(p) => p,
        Err(e) => return ApiError::InvalidArgument(e.body_text()).into_response(),
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    };
    let (tenant, database) = match scope {
        Scope::None => (None, None),
        Scope::Everything => (None, None),
        Scope::Tenant | Scope::TenantOnly => (param("tenant"), None),
        Scope::Database => (param("tenant"), param("database")),
        Scope::Crn => {
            let crn = param("crn").unwrap_or_default();
            let mut it = crn.splitn(3, ':');
            (it.next().map(str::to_owned), it.next().map(str::to_owned))
        }
    };
    let allowed = match scope {
        Scope::None => true,
        Scope::TenantOnly => principal.allows_tenant(need, tenant.as_deref()),
        _ => principal.allows(need, tenant.as_deref(), database.as_deref()),
    };
    if !allowed {
        let what = match need {
            Need::Admin => "administer",
            Need::Write => "write to",
            _ => "read",
        };
        let target = match (&tenant, &database) {
            (Some(t), Some(d)) => format!("tenant {t:?}, database {d:?}"),
            (Some(t), None) => format!("tenant {t:?} (all databases)"),
            _ => "every tenant".to_string(),
        };
        let mut denied =
            ApiError::Unauthorized(format!("User {:?} may not {what} {target}", principal.user))
                .into_response();
        denied.extensions_mut().insert(AuditPrincipal {
            user: principal.user.clone(),
            tenant: principal.tenant.clone(),
        });
        return denied;
    }
    tracing::debug!(user = %principal.user, "authorized");
    // The audit log (outside this layer) reads who it was from the response.
    let who = AuditPrincipal {
        user: principal.user.clone(),
        tenant: principal.tenant.clone(),
    };
    let mut req = Request::from_parts(parts, body);
    req.extensions_mut().insert(principal);
    let mut response = next.run(req).await;
    response.extensions_mut().insert(who);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8; 32]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hex_round_trip_and_rejects() {
        let h = sha256(b"tok");
        assert_eq!(decode_hex32(&hex(&h)), Some(h));
        assert_eq!(decode_hex32(&hex(&h).to_uppercase()), Some(h));
        assert_eq!(decode_hex32("abc"), None);
        assert_eq!(decode_hex32(&"g".repeat(64)), None);
    }

    #[test]
    fn token_file_errors_name_the_entry() {
        let p = Path::new("t.json");
        let h = hex(&sha256(b"a"));
        let ok = format!(
            r#"{{"tokens":[{{"user":"u","sha256":"{h}","tenant":"t","databases":["d"],"role":"ro"}}]}}"#
        );
        assert_eq!(parse_token_file(p, &ok).unwrap().len(), 1);
        let dup = format!(
            r#"{{"tokens":[{{"user":"u","sha256":"{h}","tenant":"t","role":"ro"}},{{"user":"v","sha256":"{h}","tenant":"*","role":"admin"}}]}}"#
        );
        assert!(parse_token_file(p, &dup)
            .err()
            .unwrap()
            .to_string()
            .contains("tokens[1] (v)"));
        let bad = r#"{"tokens":[{"user":"u","sha256":"xyz","tenant":"t","role":"ro"}]}"#;
        assert!(parse_token_file(p, bad).is_err());
        let role =
            format!(r#"{{"tokens":[{{"user":"u","sha256":"{h}","tenant":"t","role":"root"}}]}}"#);
        assert!(parse_token_file(p, &role).is_err());
    }

    #[test]
    fn scopes_and_roles() {
        let p = Principal {
            user: "u".into(),
            tenant: "t".into(),
            databases: vec!["d".into()],
            role: Role::ReadOnly,
        };
        assert!(p.allows(Need::Read, Some("t"), Some("d")));
        assert!(!p.allows(Need::Write, Some("t"), Some("d")));
        assert!(!p.allows(Need::Read, Some("t"), Some("e")));
        assert!(!p.allows(Need::Read, Some("x"), Some("d")));
        assert!(
            !p.allows(Need::Read, Some("t"), None),
            "listing all databases needs *"
        );
        let admin = Principal {
            tenant: ANY.into(),
            databases: vec![ANY.into()],
            role: Role::Admin,
            ..p
        };
        assert!(admin.allows(Need::Admin, None, None));
    }

    #[test]
    fn unknown_routes_have_no_rule() {
        assert_eq!(rule(&Method::GET, "/api/v2/nope"), None);
        assert_eq!(
            rule(
                &Method::POST,
                "/api/v2/tenants/{tenant}/databases/{database}/collections/{collection_id}/add"
            ),
            Some((Need::Write, Scope::Database))
        );
    }
}
