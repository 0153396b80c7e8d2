//! Security with tokens configured, table-driven over every route the router serves
//! (`route_docs()`: v2, admin, sync status, metrics) plus the v1 legacy paths: which routes
//! are open, 401 without or with a wrong token, 403 for a tenant-scoped token on another
//! tenant's data on every route, 404 when another tenant's collection id is put under one's
//! own path, unsafe names refused without touching the file system, secrets kept out of logs,
//! and slow clients cut off without blocking others. (`auth.rs` covers the credential forms,
//! roles and reloads; this file does not repeat them.)

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::in_process::{start_in, start_with, Opts, Resp, Server, DB};

fn sha_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Routes that answer without a token: liveness, version, readiness and the API description
/// (the same document for every deployment).
const OPEN: [&str; 6] = [
    "/api/v2",
    "/api/v2/heartbeat",
    "/api/v2/version",
    "/api/v2/healthcheck",
    "/openapi.json",
    "/docs",
];

const ADMIN: &str = "root-admin-token";
/// Admin of tenant `acme` only: the strongest tenant-scoped token.
const ACME: &str = "acme-admin-token";

/// Tokens: a global admin and an admin scoped to tenant `acme`.
async fn secured(dir: Option<&Path>) -> (Server, tempfile::TempDir) {
    let tokdir = tempfile::tempdir().unwrap();
    let file = tokdir.path().join("tokens.json");
    let tokens = json!({"tokens": [
        {"user": "root", "sha256": sha_hex(ADMIN), "tenant": "*", "databases": ["*"], "role": "admin"},
        {"user": "acme-admin", "sha256": sha_hex(ACME), "tenant": "acme", "databases": ["*"], "role": "admin"},
    ]});
    std::fs::write(&file, tokens.to_string()).unwrap();
    let opts = Opts {
        auth_tokens: Some(file),
        ..Default::default()
    };
    let s = match dir {
        Some(d) => start_in(d, opts).await,
        None => start_with(opts).await,
    };
    (s, tokdir)
}

async fn call(s: &Server, m: Method, path: &str, body: Option<Value>, token: Option<&str>) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    s.req_with(m, path, body, &headers).await
}

/// A body that parses for most routes (auth answers before bodies are read anyway).
fn body_for(m: &Method) -> Option<Value> {
    (m == Method::POST || m == Method::PUT).then(|| {
        json!({"ids": ["x1"], "embeddings": [[0.0, 1.0]], "name": "evil_coll",
               "new_name": "evil_renamed", "query_embeddings": [[0.0, 1.0]], "n_results": 1})
    })
}

/// Fills a route template: `{collection}` is a name for GET/DELETE and an id for PUT.
fn fill(template: &str, m: &Method, tenant: &str, db: &str, name: &str, id: &str) -> String {
    let coll = if m == Method::PUT { id } else { name };
    template
        .replace("{tenant}", tenant)
        .replace("{database}", db)
        .replace("{collection_id}", id)
        .replace("{collection}", coll)
        .replace("{crn}", &format!("{tenant}:{db}:{name}"))
        .replace("{job}", "job1")
        .replace("{function}", "fn1")
        .replace("{name}", "fn1")
}

/// The global admin sets up tenant `victim` / database `vdb` / collection `vcol` with two
/// records; returns the collection id.
async fn victim(s: &Server) -> String {
    call(
        s,
        Method::POST,
        "/api/v2/tenants",
        Some(json!({"name": "victim"})),
        Some(ADMIN),
    )
    .await
    .ok(200);
    call(
        s,
        Method::POST,
        "/api/v2/tenants/victim/databases",
        Some(json!({"name": "vdb"})),
        Some(ADMIN),
    )
    .await
    .ok(200);
    let c = call(
        s,
        Method::POST,
        "/api/v2/tenants/victim/databases/vdb/collections",
        Some(json!({"name": "vcol"})),
        Some(ADMIN),
    )
    .await;
    let id = c.ok(200)["id"].as_str().unwrap().to_string();
    call(
        s,
        Method::POST,
        &format!("/api/v2/tenants/victim/databases/vdb/collections/{id}/add"),
        Some(
            json!({"ids": ["v1", "v2"], "embeddings": [[1.0, 0.0], [0.0, 1.0]],
                    "documents": ["victim secret one", "victim secret two"]}),
        ),
        Some(ADMIN),
    )
    .await
    .ok(201);
    id
}

/// The victim's data exactly as it was set up.
async fn assert_victim_intact(s: &Server, id: &str) {
    let base = "/api/v2/tenants/victim/databases/vdb";
    let r = call(
        s,
        Method::GET,
        &format!("{base}/collections"),
        None,
        Some(ADMIN),
    )
    .await;
    let names: Vec<&str> = r
        .ok(200)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["vcol"]);
    let r = call(
        s,
        Method::POST,
        &format!("{base}/collections/{id}/get"),
        Some(json!({"include": ["documents"]})),
        Some(ADMIN),
    )
    .await;
    assert_eq!(r.ok(200)["ids"], json!(["v1", "v2"]));
    assert_eq!(
        r.json["documents"],
        json!(["victim secret one", "victim secret two"])
    );
    let r = call(
        s,
        Method::GET,
        "/api/v2/tenants/victim/databases",
        None,
        Some(ADMIN),
    )
    .await;
    assert_eq!(r.ok(200).as_array().unwrap().len(), 1, "{}", r.text);
}

#[tokio::test]
async fn every_route_but_the_open_ones_needs_a_valid_token() {
    let (s, _t) = secured(None).await;
    let id = victim(&s).await;
    let routes = vectord::api::route_docs();
    assert!(routes.len() >= 40, "route table: {}", routes.len());
    let mut checked = 0;
    for r in &routes {
        let path = fill(&r.path, &r.method, "victim", "vdb", "vcol", &id);
        let open = OPEN.contains(&r.path.as_str());
        let none = call(&s, r.method.clone(), &path, body_for(&r.method), None).await;
        let wrong = call(
            &s,
            r.method.clone(),
            &path,
            body_for(&r.method),
            Some("not-a-token"),
        )
        .await;
        if open {
            assert!(
                none.status.is_success(),
                "{} {path}: {}",
                r.method,
                none.text
            );
            continue;
        }
        let m = none.err(401, "AuthError");
        assert!(
            m.contains("Missing credentials"),
            "{} {path}: {m}",
            r.method
        );
        assert_eq!(
            wrong.err(401, "AuthError"),
            "Invalid credentials",
            "{} {path}",
            r.method
        );
        checked += 1;
    }
    assert!(checked >= 34, "{checked} protected routes");
    // v1 (legacy) paths go through the same rules after translation.
    for (m, p) in v1_routes(&id) {
        let r = call(&s, m.clone(), &p, body_for(&m), None).await;
        if p == "/api/v1/heartbeat" || p == "/api/v1/version" {
            assert!(r.status.is_success(), "{m} {p}: {}", r.text);
        } else {
            assert_eq!(r.status, 401, "{m} {p}: {}", r.text);
            assert_eq!(r.json["error"], "AuthError", "{m} {p}: {}", r.text);
        }
    }
    assert_victim_intact(&s, &id).await;
}

/// v1 paths naming the victim's tenant (query) or collection id (looked up in the catalog).
fn v1_routes(id: &str) -> Vec<(Method, String)> {
    let q = "tenant=victim&database=vdb";
    let mut v = vec![
        (Method::GET, "/api/v1/heartbeat".to_string()),
        (Method::GET, "/api/v1/version".to_string()),
        (Method::GET, "/api/v1/tenants/victim".to_string()),
        (Method::GET, "/api/v1/databases?tenant=victim".to_string()),
        (Method::POST, "/api/v1/databases?tenant=victim".to_string()),
        (
            Method::GET,
            "/api/v1/databases/vdb?tenant=victim".to_string(),
        ),
        (Method::GET, format!("/api/v1/collections?{q}")),
        (Method::POST, format!("/api/v1/collections?{q}")),
        (Method::GET, format!("/api/v1/count_collections?{q}")),
        (Method::GET, format!("/api/v1/collections/vcol?{q}")),
        (Method::DELETE, format!("/api/v1/collections/vcol?{q}")),
        (Method::PUT, format!("/api/v1/collections/{id}")),
        (Method::GET, format!("/api/v1/collections/{id}/count")),
    ];
    for op in ["add", "upsert", "update", "delete", "get", "query"] {
        v.push((Method::POST, format!("/api/v1/collections/{id}/{op}")));
    }
    v
}

#[tokio::test]
async fn a_tenant_scoped_token_cannot_touch_another_tenant_on_any_route() {
    let (s, _t) = secured(None).await;
    let id = victim(&s).await;
    // Positive control: the token works in its own tenant.
    call(
        &s,
        Method::POST,
        "/api/v2/tenants",
        Some(json!({"name": "acme"})),
        Some(ADMIN),
    )
    .await
    .ok(200);
    call(
        &s,
        Method::POST,
        "/api/v2/tenants/acme/databases",
        Some(json!({"name": "adb"})),
        Some(ACME),
    )
    .await
    .ok(200);
    let own = call(
        &s,
        Method::POST,
        "/api/v2/tenants/acme/databases/adb/collections",
        Some(json!({"name": "acol"})),
        Some(ACME),
    )
    .await;
    let own_id = own.ok(200)["id"].as_str().unwrap().to_string();

    let mut denied = 0;
    for r in vectord::api::route_docs() {
        let path = fill(&r.path, &r.method, "victim", "vdb", "vcol", &id);
        let resp = call(&s, r.method.clone(), &path, body_for(&r.method), Some(ACME)).await;
        use vectord::api::auth::Need;
        match r.need {
            Need::Open | Need::Authenticated => {
                assert!(
                    resp.status.is_success(),
                    "{} {path}: {}",
                    r.method,
                    resp.text
                )
            }
            _ => {
                let m = resp.err(403, "AuthorizationError");
                assert!(m.contains("acme-admin"), "{} {path}: {m}", r.method);
                denied += 1;
            }
        }
    }
    assert!(denied >= 30, "{denied} routes denied");
    // The victim's collection id under the token's own tenant and database: not found, for
    // every record route and the id routes (the catalog matches id *and* location).
    let mine = "/api/v2/tenants/acme/databases/adb";
    for op in ["add", "upsert", "update", "delete", "get", "query"] {
        let r = call(
            &s,
            Method::POST,
            &format!("{mine}/collections/{id}/{op}"),
            body_for(&Method::POST),
            Some(ACME),
        )
        .await;
        r.err(404, "NotFoundError");
    }
    for (m, p) in [
        (Method::GET, format!("{mine}/collections/{id}/count")),
        (Method::GET, format!("{mine}/collections/by-id/{id}")),
        (Method::PUT, format!("{mine}/collections/{id}")),
    ] {
        let r = call(&s, m.clone(), &p, body_for(&m), Some(ACME)).await;
        r.err(404, "NotFoundError");
    }
    let r = call(
        &s,
        Method::POST,
        &format!("{mine}/collections/{id}/fork"),
        body_for(&Method::POST),
        Some(ACME),
    )
    .await;
    assert!(!r.status.is_success(), "fork: {}", r.text);
    // v1 paths resolve the victim's location and are refused the same way.
    for (m, p) in v1_routes(&id) {
        if p.ends_with("heartbeat") || p.ends_with("version") {
            continue;
        }
        let r = call(&s, m.clone(), &p, body_for(&m), Some(ACME)).await;
        assert_eq!(r.status, 403, "{m} {p}: {}", r.text);
        assert_eq!(r.json["error"], "AuthorizationError", "{m} {p}: {}", r.text);
    }
    assert_victim_intact(&s, &id).await;
    // And its own data is served.
    let r = call(
        &s,
        Method::GET,
        &format!("{mine}/collections/{own_id}/count"),
        None,
        Some(ACME),
    )
    .await;
    assert_eq!(r.ok(200), &json!(0));
}

/// Percent-encodes every byte but unreserved ASCII, so any name fits in one path segment.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every file and folder under `root`, relative.
fn tree(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn unsafe_names_are_refused_and_never_touch_the_file_system() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let (s, _t) = secured(Some(&data)).await;
    let id = s_create(&s).await;
    let before_root = tree(root.path());
    let before = tree(&data);
    let bad: Vec<String> = vec![
        "../../etc".into(),
        "..".into(),
        "../x".into(),
        "a/b".into(),
        "/etc/passwd".into(),
        "a\\b".into(),
        "ab\0c".into(),
        "ab\u{1}c".into(),
        "ab\ncd".into(),
        "ab\u{7f}cd".into(),
        "evil\u{202E}gpj.exe".into(),
        "ab\u{2066}cd".into(),
        "ab\u{200B}cd".into(),
        "x".repeat(10 * 1024),
    ];
    for name in &bad {
        let e = enc(name);
        let show = name.chars().take(20).collect::<String>();
        let mut cases: Vec<(Method, String, Option<Value>)> = vec![
            (
                Method::POST,
                "/api/v2/tenants".into(),
                Some(json!({"name": name})),
            ),
            (
                Method::POST,
                "/api/v2/tenants/default_tenant/databases".into(),
                Some(json!({"name": name})),
            ),
            (
                Method::POST,
                format!("{DB}/collections"),
                Some(json!({"name": name})),
            ),
            (
                Method::PUT,
                format!("{DB}/collections/{id}"),
                Some(json!({"new_name": name})),
            ),
            (Method::GET, format!("/api/v2/tenants/{e}"), None),
            (Method::GET, format!("/api/v2/tenants/{e}/databases"), None),
            (
                Method::GET,
                format!("/api/v2/tenants/{e}/databases/default_database/collections"),
                None,
            ),
            (
                Method::GET,
                format!("/api/v2/tenants/default_tenant/databases/{e}/collections"),
                None,
            ),
            (
                Method::DELETE,
                format!("/api/v2/tenants/default_tenant/databases/{e}"),
                None,
            ),
            (Method::GET, format!("{DB}/collections/{e}"), None),
            (Method::DELETE, format!("{DB}/collections/{e}"), None),
            (
                Method::GET,
                format!("/api/v2/collections/default_tenant:default_database:{e}"),
                None,
            ),
            (Method::GET, format!("/api/v1/collections?tenant={e}"), None),
            (
                Method::GET,
                format!("/api/v1/collections?database={e}"),
                None,
            ),
        ];
        if name.len() < 100 {
            cases.push((
                Method::POST,
                format!("{DB}/collections/{e}/add"),
                body_for(&Method::POST),
            ));
        }
        for (m, p, b) in cases {
            let r = call(&s, m.clone(), &p, b, Some(ADMIN)).await;
            if name == ".." && b_is_none(&p) && r.status == 404 {
                // The client's URL parser resolves a `%2E%2E` segment as `..` before sending
                // (WHATWG URL rules): the server sees a shorter path, which is no route.
                continue;
            }
            assert_eq!(r.status, 400, "{m} {p:.120} ({show:?}): {:.300}", r.text);
            assert!(
                r.json["error"].is_string() && r.json["message"].is_string(),
                "{m} {p:.120}: {:.300}",
                r.text
            );
            assert!(
                r.text.len() < 2048 || !name.starts_with('x'),
                "echoed 10 KB: {m} {p:.80}"
            );
        }
    }
    // Homoglyph-only names are just other letters: allowed, and still never a path.
    call(
        &s,
        Method::POST,
        "/api/v2/tenants",
        Some(json!({"name": "\u{0430}cme"})),
        Some(ADMIN),
    )
    .await
    .ok(200);
    assert_eq!(tree(&data), before, "files changed in the data folder");
    assert_eq!(
        tree(root.path()),
        before_root,
        "files appeared next to the data folder"
    );
}

/// Whether `p` names the bad value in its path (not only in a body).
fn b_is_none(p: &str) -> bool {
    p.contains("%2E%2E")
}

async fn s_create(s: &Server) -> String {
    let r = call(
        s,
        Method::POST,
        &format!("{DB}/collections"),
        Some(json!({"name": "plain"})),
        Some(ADMIN),
    )
    .await;
    r.ok(200)["id"].as_str().unwrap().to_string()
}

/// Runs the real binary with JSON logs at debug level, the audit log on, an embedder key, a
/// sync job whose Postgres URL has a password, and requests carrying secrets in every
/// credential form; none of the secrets may appear in the log output or the audit log.
#[tokio::test]
async fn secrets_never_reach_the_logs_or_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let audit = dir.path().join("audit.jsonl");
    let admin_secret = "adm-SECRET-7f3a9c";
    let file_secret = "rw-SECRET-51d2e8";
    let openai_secret = "sk-SECRET-openai-4be1";
    let pg_secret = "pgpw-SECRET-90ac";
    let wrong_secret = "wrong-SECRET-1c7d";
    let xct_secret = "xct-SECRET-66f0";
    let basic_secret = "basic-SECRET-3a3a";
    let doc_secret = "phi-SECRET-document-8e8e";
    let tokens = dir.path().join("tokens.json");
    std::fs::write(
        &tokens,
        json!({"tokens": [{"user": "worker", "sha256": sha_hex(file_secret),
                           "tenant": "default_tenant", "role": "rw"}]})
        .to_string(),
    )
    .unwrap();
    let dead = free_port();
    let sync = dir.path().join("sync.toml");
    std::fs::write(
        &sync,
        format!(
            "[[job]]\nname = \"pol\"\nurl = \"postgresql://vectord:{pg_secret}@127.0.0.1:{dead}/db?sslmode=disable\"\n\
             table = \"policies\"\ncollection = \"pol_sync\"\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_vectord"))
        .args(["run", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--path")
        .arg(&data)
        .arg("--auth-tokens")
        .arg(&tokens)
        .arg("--audit-log")
        .arg(&audit)
        .arg("--sync-config")
        .arg(&sync)
        .args([
            "--embed-base-url",
            &format!("http://127.0.0.1:{dead}/v1"),
            "--embed-max-retries",
            "0",
        ])
        .env("RUST_LOG", "debug")
        .env("CHROMA_SERVER_AUTHN_CREDENTIALS", admin_secret)
        .env("OPENAI_API_KEY", openai_secret)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::new();
    let mut up = false;
    for _ in 0..300 {
        if c.get(format!("{base}/api/v2/heartbeat"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "server did not start");
    let bearer = |t: &str| format!("Bearer {t}");
    let r = c
        .post(format!("{base}{DB}/collections"))
        .header("authorization", bearer(admin_secret))
        .json(&json!({"name": "leaks"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let coll = format!("{base}{DB}/collections/{id}");
    let r = c
        .post(format!("{coll}/add"))
        .header("x-chroma-token", file_secret)
        .json(&json!({"ids": ["a"], "embeddings": [[1.0, 0.0]], "documents": [doc_secret]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // The embedder's endpoint is dead: the query fails (502) after trying with the key.
    let r = c
        .post(format!("{coll}/query"))
        .header("authorization", bearer(admin_secret))
        .json(&json!({"query_texts": [doc_secret], "n_results": 1}))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_server_error() || r.status() == 400,
        "{}",
        r.status()
    );
    for (h, v) in [
        ("authorization", bearer(wrong_secret)),
        ("x-chroma-token", xct_secret.to_string()),
        ("authorization", {
            use base64::Engine as _;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("alice:{basic_secret}"))
            )
        }),
    ] {
        let r = c
            .post(format!("{coll}/get"))
            .header(h, v)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // Let the sync job fail to connect (and log it) at least once.
    let mut sync_failed = false;
    for _ in 0..100 {
        let r = c
            .get(format!("{base}/sync/status"))
            .header("authorization", bearer(admin_secret))
            .send()
            .await
            .unwrap();
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(pg_secret),
            "sync status shows the password: {text}"
        );
        if text.contains("error") {
            sync_failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A graceful stop, so the audit log's buffered events are written.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let audit_text = std::fs::read_to_string(&audit).unwrap_or_default();
    assert!(sync_failed, "the sync job never reported its failure");
    assert!(
        logs.contains("\"level\":\"DEBUG\"") && logs.contains("request served"),
        "no JSON debug logs captured: {:.2000}",
        logs
    );
    // Every log line is one JSON object (stdout is not a terminal), and each served request
    // carries its request id, the one its audit event has.
    let served: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .filter(|v: &Value| v["fields"]["message"] == json!("request served"))
        .collect();
    assert!(!served.is_empty(), "no request log lines");
    let events: Vec<Value> = audit_text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON audit event per line"))
        .collect();
    let add = events
        .iter()
        .find(|e| e["operation"] == json!("add"))
        .unwrap_or_else(|| panic!("no add event: {audit_text}"));
    assert_eq!(
        add["principal"],
        json!("worker"),
        "the token file's user: {add}"
    );
    assert_eq!(add["principal_tenant"], json!("default_tenant"), "{add}");
    assert_eq!(add["outcome"], json!("ok"));
    assert_eq!(add["records"], json!(1));
    let request_id = add["request_id"].as_str().expect("request id");
    assert!(
        served
            .iter()
            .any(|v| v["fields"]["trace_id"].as_str() == Some(request_id)),
        "no request log line with the add's request id {request_id}"
    );
    let denied: Vec<&Value> = events
        .iter()
        .filter(|e| e["outcome"] == json!("denied"))
        .collect();
    assert_eq!(denied.len(), 3, "the three refused gets: {audit_text}");
    for e in denied {
        assert_eq!(e["status"], json!(401));
        assert_eq!(e["operation"], json!("get"));
        assert_eq!(
            e["principal"],
            json!("anonymous"),
            "no credentials were accepted: {e}"
        );
        assert_eq!(e["principal_tenant"], Value::Null, "{e}");
    }
    for secret in [
        admin_secret,
        file_secret,
        openai_secret,
        pg_secret,
        wrong_secret,
        xct_secret,
        basic_secret,
        doc_secret,
    ] {
        for (what, text) in [("server log", &logs), ("audit log", &audit_text)] {
            if let Some(at) = text.find(secret) {
                let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                panic!("{secret} found in the {what}: {:.500}", &text[line_start..]);
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server whose clients get 1 s for headers and 1 s for bodies.
async fn impatient() -> Server {
    start_with(Opts {
        limits: vectord::config::Limits {
            header_read_timeout: Duration::from_secs(1),
            body_read_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

/// Reads until the server closes the connection (or 30 s pass, which fails the test).
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let res = tokio::time::timeout(Duration::from_secs(30), async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        res.is_ok(),
        "the server kept a slow connection open for 30 s"
    );
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn slowloris_headers_and_unfinished_bodies_are_cut_off_without_blocking_others() {
    let s = impatient().await;
    let id = s.create("slow").await;
    let addr = s.base.trim_start_matches("http://").to_string();
    // 20 clients dribbling their headers a byte every 100 ms (a 40-byte request line alone
    // takes 4 s), and 5 that never send anything.
    let mut dribblers = Vec::new();
    for _ in 0..20 {
        let addr = addr.clone();
        dribblers.push(tokio::spawn(async move {
            let mut st = TcpStream::connect(&addr).await.unwrap();
            let req = b"GET /api/v2/heartbeat HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n\r\n";
            for b in req.iter() {
                if st.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            read_until_closed(&mut st).await
        }));
    }
    let mut idle = Vec::new();
    for _ in 0..5 {
        let mut st = TcpStream::connect(&addr).await.unwrap();
        idle.push(tokio::spawn(
            async move { read_until_closed(&mut st).await },
        ));
    }
    // A body promised but never finished.
    let mut body_st = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"ids\":",
        s.coll(&id, "add")
    );
    body_st.write_all(head.as_bytes()).await.unwrap();
    // Meanwhile ordinary clients are served.
    for _ in 0..5 {
        s.get("/api/v2/heartbeat").await.ok(200);
        s.get(&s.coll(&id, "count")).await.ok(200);
    }
    let answer = read_until_closed(&mut body_st).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\":\"ChromaError\""), "{answer}");
    assert!(answer.contains("not received within"), "{answer}");
    for d in dribblers {
        let got = d.await.unwrap();
        assert!(
            !got.contains("200 OK"),
            "a dribbled request was served: {got}"
        );
    }
    for i in idle {
        assert_eq!(i.await.unwrap(), "", "an idle connection got bytes");
    }
    // Nothing was written by the unfinished add.
    assert_eq!(s.get(&s.coll(&id, "count")).await.ok(200), &json!(0));
}

#[tokio::test]
async fn overload_gets_429_rate_limit_error_and_probes_still_answer() {
    let s = start_with(Opts {
        limits: vectord::config::Limits {
            max_concurrent_requests: 1,
            queue_timeout: Duration::from_millis(200),
            body_read_timeout: Duration::from_secs(30),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let id = s.create("busy").await;
    let addr = s.base.trim_start_matches("http://").to_string();
    // One request holds the only slot while its body trickles in.
    let body = json!({"ids": ["a"], "embeddings": [[1.0, 2.0]]}).to_string();
    let (first, rest) = body.split_at(5);
    let mut holder = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{first}",
        s.coll(&id, "add"),
        body.len()
    );
    holder.write_all(head.as_bytes()).await.unwrap();
    let mut refused = None;
    for _ in 0..100 {
        let r = s.get(&format!("{DB}/collections")).await;
        if r.status == 429 {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = refused.expect("never refused while the only slot was taken");
    let m = r.err(429, "RateLimitError");
    assert!(m.contains("retry later"), "{m}");
    // Probes are not queued behind the load.
    s.get("/api/v2/heartbeat").await.ok(200);
    s.get("/api/v2/healthcheck").await.ok(200);
    holder.write_all(rest.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut holder).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    s.get(&format!("{DB}/collections")).await.ok(200);
    assert_eq!(s.get(&s.coll(&id, "count")).await.ok(200), &json!(1));
    // Refused before routing, yet counted: saturation shows in the request metrics.
    let m = s.get("/metrics").await.text;
    assert!(
        m.contains(r#"vectord_http_requests_total{method="GET",route="admission",status="429"}"#),
        "{m}"
    );
}

/// A write refused by the write stall — the collection's own bound (`--memtable-rows`) or the
/// shared memtable budget (`--memtable-budget-mb`) — answers 429 with Chroma's
/// `RateLimitError` JSON while flushes are held back; nothing of that batch is stored, the
/// records written before are intact, deletes are not stalled, and once flushes run the same
/// batch is accepted.
#[tokio::test]
async fn write_stall_answers_429_and_stores_nothing_of_the_batch() {
    for (case, limits, says) in [
        (
            "own bound",
            vectord::config::Limits {
                memtable_rows: 2,
                ..Default::default()
            },
            "rows wait in memory",
        ),
        (
            "budget",
            vectord::config::Limits {
                memtable_budget_bytes: 1,
                ..Default::default()
            },
            "memory budget",
        ),
    ] {
        let s = start_with(Opts {
            limits,
            ..Default::default()
        })
        .await;
        let id = s.create("stalled").await;
        let engine = s
            .catalog
            .collection_by_id("default_tenant", "default_database", id.parse().unwrap())
            .unwrap()
            .engine()
            .unwrap()
            .clone();
        engine.set_write_stall(Duration::from_millis(300));
        let hold = engine.hold_flushes();
        let first = json!({"ids": ["a", "b", "c", "d"],
            "embeddings": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]],
            "documents": ["da", "db", "dc", "dd"],
            "metadatas": [{"k": 1}, {"k": 2}, {"k": 3}, {"k": 4}]});
        // Counted before the batch: this one fits, and fills the bound.
        s.post(&s.coll(&id, "add"), first.clone()).await.ok(201);
        let second = json!({"ids": ["e", "f"], "embeddings": [[9.0, 9.5], [10.0, 10.5]],
            "documents": ["de", "df"]});
        let r = s.post(&s.coll(&id, "add"), second.clone()).await;
        let m = r.err(429, "RateLimitError");
        assert!(m.contains(says) && m.contains("retry later"), "{case}: {m}");
        assert_eq!(r.json.as_object().unwrap().len(), 2, "{case}: {}", r.text);
        // An upsert that would add a version of an existing row is refused the same way.
        let r = s
            .post(
                &s.coll(&id, "upsert"),
                json!({"ids": ["a"], "embeddings": [[0.0, 0.0]], "documents": ["new"]}),
            )
            .await;
        r.err(429, "RateLimitError");
        let all = s
            .post(
                &s.coll(&id, "get"),
                json!({"include": ["embeddings", "documents", "metadatas"]}),
            )
            .await;
        let all = all.ok(200);
        assert_eq!(all["ids"], first["ids"], "{case}");
        assert_eq!(all["embeddings"], first["embeddings"], "{case}");
        assert_eq!(all["documents"], first["documents"], "{case}");
        assert_eq!(all["metadatas"], first["metadatas"], "{case}");
        // Deletes free rows; they never wait.
        s.post(&s.coll(&id, "delete"), json!({"ids": ["d"]}))
            .await
            .ok(200);
        assert_eq!(s.get(&s.coll(&id, "count")).await.ok(200), &json!(3));
        // Once flushes run (the background retries each second), the batch gets in.
        engine.set_write_stall(Duration::from_secs(120));
        drop(hold);
        s.post(&s.coll(&id, "add"), second).await.ok(201);
        assert_eq!(s.get(&s.coll(&id, "count")).await.ok(200), &json!(5));
        assert!(engine.segment_count() >= 1, "{case}");
    }
}
