//! A test server running in this process on a temporary data folder, and a small JSON client.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use vectord::api::{serve, AppState};
use vectord::catalog::Catalog;
use vectord::config::Settings;

/// Prefix of the default database's routes.
pub const DB: &str = "/api/v2/tenants/default_tenant/databases/default_database";

/// A running server; dropping it leaves the task to die with the test runtime, `stop` waits.
pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub dir: PathBuf,
    /// The server's catalog (engine handles, for tests that hold flushes back).
    pub catalog: std::sync::Arc<Catalog>,
    _tmp: Option<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

/// Options for `start_with`.
#[derive(Clone)]
pub struct Opts {
    pub allow_reset: bool,
    pub max_body_bytes: usize,
    pub auth_tokens: Option<PathBuf>,
    pub admin_token: Option<String>,
    pub token_header: vectord::config::TokenHeader,
    pub embed: vectord::embed::EmbedSettings,
    pub limits: vectord::config::Limits,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            allow_reset: true,
            max_body_bytes: vectord::config::DEFAULT_MAX_BODY_BYTES,
            auth_tokens: None,
            admin_token: None,
            token_header: Default::default(),
            embed: Default::default(),
            limits: Default::default(),
        }
    }
}

pub async fn start() -> Server {
    start_with(Opts::default()).await
}

pub async fn start_with(opts: Opts) -> Server {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut s = start_in(&dir, opts).await;
    s._tmp = Some(tmp);
    s
}

/// Starts a server on an existing data folder (for restart tests).
pub async fn start_in(dir: &Path, opts: Opts) -> Server {
    // New settings fields (other branches add some) take their defaults here.
    #[allow(clippy::needless_update)]
    let settings = Settings {
        path: dir.to_path_buf(),
        host: "127.0.0.1".into(),
        port: 0,
        allow_reset: opts.allow_reset,
        max_body_bytes: opts.max_body_bytes,
        auth_tokens: opts.auth_tokens.clone(),
        admin_token: opts.admin_token.clone().map(vectord::config::Secret),
        token_header: opts.token_header,
        embed: opts.embed,
        snapshot_dir: dir.join("snapshots"),
        limits: opts.limits,
        ..Settings::default()
    };
    let d = dir.to_path_buf();
    let catalog = tokio::task::spawn_blocking(move || Catalog::open(&d))
        .await
        .unwrap()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let state = AppState::new(catalog, settings).unwrap();
    let catalog = state.catalog.clone();
    let handle = tokio::spawn(serve(listener, state, async {
        let _ = rx.await;
    }));
    Server {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        dir: dir.to_path_buf(),
        catalog,
        _tmp: None,
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

/// A response: status, raw body, and the body parsed as JSON (Null when it is not JSON).
pub struct Resp {
    pub status: StatusCode,
    pub text: String,
    pub json: Value,
}

impl Resp {
    /// Asserts a Chroma error body and returns its message.
    #[track_caller]
    pub fn err(&self, status: u16, name: &str) -> &str {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.json["error"], name, "body: {}", self.text);
        self.json["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message: {}", self.text))
    }

    /// Asserts a success status and returns the JSON.
    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        &self.json
    }
}

impl Server {
    pub async fn req(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.req_with(method, path, body, &[]).await
    }

    /// A JSON request with extra headers (credentials, user agent).
    pub async fn req_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut rb = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        Self::finish(rb.send().await.unwrap()).await
    }

    /// Sends raw bytes with an optional content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Resp {
        let mut rb = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .body(body);
        if let Some(ct) = content_type {
            rb = rb.header("content-type", ct);
        }
        Self::finish(rb.send().await.unwrap()).await
    }

    async fn finish(r: reqwest::Response) -> Resp {
        let status = r.status();
        let text = r.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, text, json }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.req(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.req(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.req(Method::DELETE, path, None).await
    }

    /// Creates a collection the way Python 1.5.9 does and returns its id.
    pub async fn create(&self, name: &str) -> String {
        let r = self
            .post(
                &format!("{DB}/collections"),
                serde_json::json!({"name": name, "metadata": null,
                    "configuration": {"hnsw": {"space": "l2"}, "spann": null,
                        "embedding_function": {"name": "default", "type": "known", "config": {}}},
                    "schema": null, "get_or_create": false}),
            )
            .await;
        r.ok(200)["id"].as_str().unwrap().to_string()
    }

    /// Path of a record route of collection `id`.
    pub fn coll(&self, id: &str, op: &str) -> String {
        format!("{DB}/collections/{id}/{op}")
    }

    /// Stops the server gracefully and waits for it (its data folder stays).
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        self._tmp.take()
    }
}

/// Base64 of little-endian f32s, as the Python client encodes embeddings.
pub fn b64(v: &[f32]) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
