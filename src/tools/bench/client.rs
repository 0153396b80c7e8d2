//! The benchmark's HTTP/1.1 client: one keep-alive connection per worker (hyper's connection
//! API, no pool), bodies passed as pre-built `Bytes`, and the calls of Chroma's v2 API the
//! benchmark needs.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// A server under test: where to connect and what to put in every request.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// Resolved address.
    addr: SocketAddr,
    /// `Host` header value.
    host: HeaderValue,
    /// Path prefix from the URL (usually empty).
    prefix: String,
    /// `X-Chroma-Token`, if any.
    token: Option<HeaderValue>,
    /// Tenant and database (`/api/v2/tenants/{t}/databases/{d}`).
    pub scope: String,
}

impl Target {
    /// Parses `http://host:port[/prefix]`; https is not supported (measure without TLS).
    pub fn new(
        url: &str,
        token: Option<&str>,
        tenant: &str,
        database: &str,
    ) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let with_port = if authority
            .rsplit(':')
            .next()
            .is_some_and(|p| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&with_port)
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to no address"))?;
        Ok(Target {
            url: url.to_string(),
            addr,
            host: HeaderValue::from_str(authority).context("bad host")?,
            prefix: path.to_string(),
            token: token
                .map(HeaderValue::from_str)
                .transpose()
                .context("bad token")?,
            scope: format!("/api/v2/tenants/{tenant}/databases/{database}"),
        })
    }
}

/// One HTTP/1.1 connection; requests on it are strictly sequential.
pub struct Conn {
    target: Target,
    sender: SendRequest<Full<Bytes>>,
}

/// A response: status and the whole body.
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON after checking for a 2xx status.
    pub fn json(&self, what: &str) -> anyhow::Result<Value> {
        if !(200..300).contains(&self.status) {
            bail!(
                "{what}: HTTP {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            );
        }
        serde_json::from_slice(&self.body).with_context(|| format!("{what}: answer is not JSON"))
    }
}

impl Conn {
    /// Opens a connection (TCP_NODELAY: requests are single writes, answers are waited for).
    pub async fn open(target: &Target) -> anyhow::Result<Conn> {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(target.addr))
            .await
            .with_context(|| format!("connecting to {} timed out", target.url))?
            .with_context(|| format!("connecting to {}", target.url))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes; errors surface on send.
            let _ = conn.await;
        });
        Ok(Conn {
            target: target.clone(),
            sender,
        })
    }

    /// Sends one request with a JSON body (or none) and reads the whole answer. A connection the
    /// server closed is reopened once.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<Reply> {
        if self.sender.ready().await.is_err() || self.sender.is_closed() {
            *self = Conn::open(&self.target).await?;
        }
        let uri = format!("{}{path}", self.target.prefix);
        let mut req = Request::builder()
            .method(method)
            .uri(&uri)
            .header(HOST, self.target.host.clone());
        if let Some(t) = &self.target.token {
            req = req.header("x-chroma-token", t.clone());
        }
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default()))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .with_context(|| format!("{uri}: request failed"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("{uri}: reading the answer"))?
            .to_bytes();
        Ok(Reply { status, body })
    }

    /// `path` relative to `/api/v2/tenants/{t}/databases/{d}`.
    pub fn scoped(&self, path: &str) -> String {
        format!("{}{path}", self.target.scope)
    }

    /// Waits up to `wait` for the heartbeat to answer 200.
    pub async fn wait_up(target: &Target, wait: Duration) -> anyhow::Result<Conn> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let attempt = async {
                let mut c = Conn::open(target).await?;
                c.send(Method::GET, "/api/v2/heartbeat", None)
                    .await?
                    .json("heartbeat")?;
                anyhow::Ok(c)
            };
            match attempt.await {
                Ok(c) => return Ok(c),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// `GET /api/v2/version` (a JSON string), or `"unknown"`.
    pub async fn version(&mut self) -> String {
        match self.send(Method::GET, "/api/v2/version", None).await {
            Ok(r) => r
                .json("version")
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "unknown".into()),
            Err(_) => "unknown".into(),
        }
    }

    /// Whether the server takes base64 embeddings in writes (pre-flight checks).
    pub async fn supports_base64(&mut self) -> bool {
        match self
            .send(Method::GET, "/api/v2/pre-flight-checks", None)
            .await
        {
            Ok(r) => r
                .json("pre-flight")
                .ok()
                .and_then(|v| v.get("supports_base64_encoding").and_then(Value::as_bool))
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Deletes the collection if it exists (a 404 is fine).
    pub async fn delete_collection(&mut self, name: &str) -> anyhow::Result<()> {
        let path = self.scoped(&format!("/collections/{name}"));
        let r = self.send(Method::DELETE, &path, None).await?;
        if (200..300).contains(&r.status) || r.status == 404 || r.status == 400 {
            return Ok(());
        }
        bail!(
            "deleting collection {name}: HTTP {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )
    }

    /// Creates the collection with its HNSW configuration and returns its id.
    pub async fn create_collection(&mut self, name: &str, hnsw: &Value) -> anyhow::Result<String> {
        let body = json!({
            "name": name,
            "metadata": null,
            "configuration": {"hnsw": hnsw, "spann": null, "embedding_function": null},
            "get_or_create": false,
        });
        let path = self.scoped("/collections");
        let v = self
            .send(Method::POST, &path, Some(body.to_string().into()))
            .await?
            .json("create collection")?;
        v.get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .context("create collection: no id in the answer")
    }

    /// The id of an existing collection.
    pub async fn collection_id(&mut self, name: &str) -> anyhow::Result<String> {
        let path = self.scoped(&format!("/collections/{name}"));
        let v = self
            .send(Method::GET, &path, None)
            .await?
            .json("get collection")?;
        v.get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .context("get collection: no id")
    }

    /// Sets `ef_search` through `PUT …/collections/{id}` (`new_configuration.hnsw`), as
    /// `collection.modify(configuration=…)` does.
    pub async fn set_ef_search(&mut self, id: &str, ef: u32) -> anyhow::Result<()> {
        let body = json!({"new_configuration": {"hnsw": {"ef_search": ef}}});
        let path = self.scoped(&format!("/collections/{id}"));
        self.send(Method::PUT, &path, Some(body.to_string().into()))
            .await?
            .json("set ef_search")?;
        Ok(())
    }

    /// `GET …/collections/{id}/count`.
    pub async fn count(&mut self, id: &str) -> anyhow::Result<u64> {
        let path = self.scoped(&format!("/collections/{id}/count"));
        self.send(Method::GET, &path, None)
            .await?
            .json("count")?
            .as_u64()
            .context("count: not an integer")
    }
}
