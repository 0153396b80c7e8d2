//! Auth: token file and admin token, the three credential forms, 401 vs 403, scopes and roles,
//! open routes, identity, and reloading the token file without a restart.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::in_process::{start_with, Opts, Server, DB};

fn sha_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn token_file(entries: &[(&str, &str, &str, &[&str], &str)]) -> String {
    let tokens: Vec<Value> = entries
        .iter()
        .map(|(user, token, tenant, dbs, role)| {
            json!({"user": user, "sha256": sha_hex(token), "tenant": tenant,
                   "databases": dbs, "role": role})
        })
        .collect();
    json!({ "tokens": tokens }).to_string()
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// A server with a token file holding an admin, a read-write user on the default database and
/// a read-only user on tenant `clinic` / database `prod`, plus an env admin token.
async fn secured() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    std::fs::write(
        &file,
        token_file(&[
            ("root", "admin-tok", "*", &["*"], "admin"),
            (
                "writer",
                "rw-tok",
                "default_tenant",
                &["default_database"],
                "rw",
            ),
            ("reader", "ro-tok", "clinic", &["prod"], "ro"),
            ("alice", "alice:pw", "default_tenant", &["*"], "rw"),
        ]),
    )
    .unwrap();
    let s = start_with(Opts {
        auth_tokens: Some(file),
        admin_token: Some("env-admin".into()),
        ..Default::default()
    })
    .await;
    (s, dir)
}

async fn as_(
    s: &Server,
    m: Method,
    path: &str,
    body: Option<Value>,
    auth: &str,
) -> crate::support::in_process::Resp {
    s.req_with(m, path, body, &[("authorization", auth)]).await
}

#[tokio::test]
async fn open_routes_need_no_token_and_others_401() {
    let (s, _d) = secured().await;
    for p in [
        "/api/v2",
        "/api/v2/heartbeat",
        "/api/v2/version",
        "/api/v2/healthcheck",
    ] {
        s.get(p).await.ok(200);
    }
    for p in [
        "/api/v2/auth/identity".to_string(),
        "/api/v2/pre-flight-checks".to_string(),
        "/api/v2/tenants/default_tenant".to_string(),
        format!("{DB}/collections"),
        "/metrics".to_string(),
    ] {
        let r = s.get(&p).await;
        assert!(
            r.err(401, "AuthError").contains("Missing credentials"),
            "{p}"
        );
    }
    let r = as_(
        &s,
        Method::GET,
        &format!("{DB}/collections"),
        None,
        "Bearer nope",
    )
    .await;
    assert_eq!(r.err(401, "AuthError"), "Invalid credentials");
    let r = as_(
        &s,
        Method::GET,
        &format!("{DB}/collections"),
        None,
        "Basic !!",
    )
    .await;
    r.err(401, "AuthError");
    // Unknown routes stay 404 (no rule is consulted for them).
    s.get("/api/v2/nope").await.err(404, "NotFoundError");
}

/// Snapshots copy every tenant's data: read-write and read-only tokens get 403 (and nothing is
/// written), no token gets 401, an admin token takes one.
#[tokio::test]
async fn only_admins_take_or_list_snapshots() {
    let (s, _d) = secured().await;
    const SNAPSHOTS: &str = "/api/v2/admin/snapshots";
    for token in ["rw-tok", "ro-tok", "alice:pw"] {
        for method in [Method::POST, Method::GET] {
            let r = as_(&s, method.clone(), SNAPSHOTS, None, &bearer(token)).await;
            r.err(403, "AuthorizationError");
        }
    }
    s.post(SNAPSHOTS, json!({})).await.err(401, "AuthError");
    let taken = as_(&s, Method::POST, SNAPSHOTS, None, &bearer("admin-tok")).await;
    let name = taken.ok(201)["name"].as_str().unwrap().to_string();
    let list = as_(&s, Method::GET, SNAPSHOTS, None, &bearer("env-admin")).await;
    let names: Vec<&str> = list.ok(200)["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    assert_eq!(names, [name.as_str()], "refused requests took no snapshot");
}

#[tokio::test]
async fn bearer_x_chroma_token_and_basic_are_accepted() {
    let (s, _d) = secured().await;
    let path = format!("{DB}/collections");
    as_(&s, Method::GET, &path, None, &bearer("rw-tok"))
        .await
        .ok(200);
    s.req_with(Method::GET, &path, None, &[("x-chroma-token", "rw-tok")])
        .await
        .ok(200);
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw")
    );
    as_(&s, Method::GET, &path, None, &basic).await.ok(200);
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:nope")
    );
    as_(&s, Method::GET, &path, None, &wrong)
        .await
        .err(401, "AuthError");
    // The env admin token works beside the file.
    as_(&s, Method::GET, &path, None, &bearer("env-admin"))
        .await
        .ok(200);
}

#[tokio::test]
async fn identity_reports_the_tokens_scope() {
    let (s, _d) = secured().await;
    let r = as_(
        &s,
        Method::GET,
        "/api/v2/auth/identity",
        None,
        &bearer("ro-tok"),
    )
    .await;
    assert_eq!(
        r.ok(200),
        &json!({"user_id": "reader", "tenant": "clinic", "databases": ["prod"]})
    );
    let r = as_(
        &s,
        Method::GET,
        "/api/v2/auth/identity",
        None,
        &bearer("env-admin"),
    )
    .await;
    assert_eq!(
        r.ok(200),
        &json!({"user_id": "admin", "tenant": "*", "databases": ["*"]})
    );
}

#[tokio::test]
async fn roles_and_scopes_give_403() {
    let (s, _d) = secured().await;
    let admin = bearer("admin-tok");
    let rw = bearer("rw-tok");
    let ro = bearer("ro-tok");
    // Admin sets up tenant clinic / database prod with a collection.
    as_(
        &s,
        Method::POST,
        "/api/v2/tenants",
        Some(json!({"name": "clinic"})),
        &admin,
    )
    .await
    .ok(200);
    as_(
        &s,
        Method::POST,
        "/api/v2/tenants/clinic/databases",
        Some(json!({"name": "prod"})),
        &admin,
    )
    .await
    .ok(200);
    let prod = "/api/v2/tenants/clinic/databases/prod";
    let c = as_(
        &s,
        Method::POST,
        &format!("{prod}/collections"),
        Some(json!({"name": "pol1"})),
        &admin,
    )
    .await;
    let cid = c.ok(200)["id"].as_str().unwrap().to_string();
    let add = json!({"ids": ["a"], "embeddings": [[1.0, 0.0]]});
    as_(
        &s,
        Method::POST,
        &format!("{prod}/collections/{cid}/add"),
        Some(add.clone()),
        &admin,
    )
    .await
    .ok(201);

    // Read-only on clinic/prod: reads pass, writes are 403 AuthorizationError.
    as_(
        &s,
        Method::POST,
        &format!("{prod}/collections/{cid}/get"),
        Some(json!({})),
        &ro,
    )
    .await
    .ok(200);
    as_(
        &s,
        Method::GET,
        &format!("{prod}/collections/{cid}/count"),
        None,
        &ro,
    )
    .await
    .ok(200);
    let q = json!({"query_embeddings": [[1.0, 0.0]], "n_results": 1});
    as_(
        &s,
        Method::POST,
        &format!("{prod}/collections/{cid}/query"),
        Some(q),
        &ro,
    )
    .await
    .ok(200);
    let r = as_(
        &s,
        Method::POST,
        &format!("{prod}/collections/{cid}/add"),
        Some(add.clone()),
        &ro,
    )
    .await;
    assert!(r.err(403, "AuthorizationError").contains("reader"));
    as_(
        &s,
        Method::POST,
        &format!("{prod}/collections"),
        Some(json!({"name": "pol2"})),
        &ro,
    )
    .await
    .err(403, "AuthorizationError");
    as_(
        &s,
        Method::DELETE,
        &format!("{prod}/collections/pol1"),
        None,
        &ro,
    )
    .await
    .err(403, "AuthorizationError");
    // ... and nothing outside its tenant and database.
    as_(&s, Method::GET, &format!("{DB}/collections"), None, &ro)
        .await
        .err(403, "AuthorizationError");
    as_(
        &s,
        Method::GET,
        "/api/v2/tenants/clinic/databases/other/collections",
        None,
        &ro,
    )
    .await
    .err(403, "AuthorizationError");
    // Listing every database of a tenant needs all of its databases.
    as_(
        &s,
        Method::GET,
        "/api/v2/tenants/clinic/databases",
        None,
        &ro,
    )
    .await
    .err(403, "AuthorizationError");
    as_(
        &s,
        Method::GET,
        "/api/v2/collections/clinic:prod:pol1",
        None,
        &ro,
    )
    .await
    .ok(200);
    as_(
        &s,
        Method::GET,
        "/api/v2/collections/default_tenant:default_database:pol1",
        None,
        &ro,
    )
    .await
    .err(403, "AuthorizationError");

    // Read-write on the default database: collection and record writes, no admin operations.
    let d = as_(
        &s,
        Method::POST,
        &format!("{DB}/collections"),
        Some(json!({"name": "mine"})),
        &rw,
    )
    .await;
    let mine = d.ok(200)["id"].as_str().unwrap().to_string();
    as_(
        &s,
        Method::POST,
        &format!("{DB}/collections/{mine}/add"),
        Some(add),
        &rw,
    )
    .await
    .ok(201);
    as_(
        &s,
        Method::POST,
        &format!("{prod}/collections/{cid}/get"),
        Some(json!({})),
        &rw,
    )
    .await
    .err(403, "AuthorizationError");
    as_(
        &s,
        Method::POST,
        "/api/v2/tenants",
        Some(json!({"name": "t3x"})),
        &rw,
    )
    .await
    .err(403, "AuthorizationError");
    as_(
        &s,
        Method::POST,
        "/api/v2/tenants/default_tenant/databases",
        Some(json!({"name": "db2"})),
        &rw,
    )
    .await
    .err(403, "AuthorizationError");
    as_(&s, Method::DELETE, DB, None, &rw)
        .await
        .err(403, "AuthorizationError");
    as_(&s, Method::POST, "/api/v2/reset", None, &rw)
        .await
        .err(403, "AuthorizationError");
    // The admin may reset.
    as_(&s, Method::POST, "/api/v2/reset", None, &admin)
        .await
        .ok(200);
}

#[tokio::test]
async fn token_file_changes_apply_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    std::fs::write(&file, token_file(&[("old", "old-tok", "*", &["*"], "ro")])).unwrap();
    let s = start_with(Opts {
        auth_tokens: Some(file.clone()),
        ..Default::default()
    })
    .await;
    let path = format!("{DB}/collections");
    as_(&s, Method::GET, &path, None, &bearer("old-tok"))
        .await
        .ok(200);
    // Replace the file (new size, so the poll sees it even within one mtime tick).
    let tmp = dir.path().join("tokens.json.new");
    std::fs::write(
        &tmp,
        token_file(&[("new", "a-new-token", "*", &["*"], "ro")]),
    )
    .unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let mut switched = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if as_(&s, Method::GET, &path, None, &bearer("a-new-token"))
            .await
            .status
            == 200
        {
            switched = true;
            break;
        }
    }
    assert!(switched, "the new token was never accepted");
    as_(&s, Method::GET, &path, None, &bearer("old-tok"))
        .await
        .err(401, "AuthError");
    // A broken file keeps the tokens that work.
    std::fs::write(&file, "{ not json").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    as_(&s, Method::GET, &path, None, &bearer("a-new-token"))
        .await
        .ok(200);
}

#[tokio::test]
async fn header_choice_restricts_token_transport() {
    let s = start_with(Opts {
        admin_token: Some("only".into()),
        token_header: vectord::config::TokenHeader::XChromaToken,
        ..Default::default()
    })
    .await;
    let path = format!("{DB}/collections");
    s.req_with(Method::GET, &path, None, &[("x-chroma-token", "only")])
        .await
        .ok(200);
    as_(&s, Method::GET, &path, None, &bearer("only"))
        .await
        .err(401, "AuthError");
}

#[tokio::test]
async fn a_bad_token_file_stops_startup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    std::fs::write(
        &file,
        r#"{"tokens":[{"user":"u","sha256":"zz","tenant":"*","role":"ro"}]}"#,
    )
    .unwrap();
    let settings = vectord::config::Settings {
        path: dir.path().join("data"),
        auth_tokens: Some(file),
        ..Default::default()
    };
    let d = settings.path.clone();
    let catalog = tokio::task::spawn_blocking(move || vectord::catalog::Catalog::open(&d))
        .await
        .unwrap()
        .unwrap();
    let err = vectord::api::AppState::new(catalog, settings)
        .err()
        .unwrap();
    assert!(err.to_string().contains("64 hex digits"), "{err}");
}

#[tokio::test]
async fn metrics_port_serves_metrics_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let settings = vectord::config::Settings {
        path: dir.path().to_path_buf(),
        admin_token: Some(vectord::config::Secret("tok".into())),
        ..Default::default()
    };
    let d = settings.path.clone();
    let catalog = tokio::task::spawn_blocking(move || vectord::catalog::Catalog::open(&d))
        .await
        .unwrap()
        .unwrap();
    let state = vectord::api::AppState::new(catalog, settings).unwrap();
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (main_addr, metrics_addr) = (main.local_addr().unwrap(), metrics.local_addr().unwrap());
    tokio::spawn(vectord::api::serve(
        main,
        state.clone(),
        std::future::pending(),
    ));
    tokio::spawn(vectord::api::serve_metrics(
        metrics,
        state,
        std::future::pending(),
    ));
    let c = reqwest::Client::new();
    let r = c
        .get(format!("http://{main_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("vectord_http_requests_total"), "{text}");
    // Only /metrics is there.
    let r = c
        .get(format!("http://{metrics_addr}/api/v2/heartbeat"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// Purging a collection's deleted records and snapshotting one collection are admin
/// operations: a read-write token on that very database gets 403, no token 401, the admin 200.
#[tokio::test]
async fn purge_and_collection_snapshot_need_the_admin_role() {
    let (s, _d) = secured().await;
    let admin = bearer("admin-tok");
    let rw = bearer("rw-tok");
    let c = as_(
        &s,
        Method::POST,
        &format!("{DB}/collections"),
        Some(json!({"name": "purged"})),
        &rw,
    )
    .await;
    let cid = c.ok(200)["id"].as_str().unwrap().to_string();
    let compact = format!("/api/v2/admin/collections/{cid}/compact");
    as_(&s, Method::POST, &compact, None, &rw)
        .await
        .err(403, "AuthorizationError");
    assert_eq!(
        s.req(Method::POST, &compact, None).await.status.as_u16(),
        401
    );
    let report = as_(&s, Method::POST, &compact, None, &admin).await;
    assert_eq!(report.ok(200)["collection"], json!(cid));
    let snap = Some(json!({"collection": "purged"}));
    as_(
        &s,
        Method::POST,
        "/api/v2/admin/snapshots",
        snap.clone(),
        &rw,
    )
    .await
    .err(403, "AuthorizationError");
    let taken = as_(&s, Method::POST, "/api/v2/admin/snapshots", snap, &admin).await;
    assert_eq!(taken.ok(201)["collection"], json!(cid));
}
