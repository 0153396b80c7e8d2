//! Moving data between Chroma-compatible servers and portable files: `vectord import
//! --from-chroma URL` copies every database and collection (configuration, metadata, ids,
//! embeddings, documents, uris) from a running Chroma server into a running vectord, and
//! `vectord export` / `vectord import --file` do the same through an NDJSON file.
//!
//! Everything goes through Chroma's HTTP API on both ends, so a migration needs no downtime
//! and works against any server version that speaks v2. Copies are resumable: records are
//! read in insertion order and written with `upsert`, and a rerun starts each collection at
//! the number of records the target already holds when the source records just before that
//! point are all on the target, else from the start (re-upserting is harmless, skipping is
//! not). Each collection ends with a count check: a target that holds a different number of
//! records than the source fails the copy instead of passing silently.

use std::io::{BufRead, Write};
use std::time::Instant;

use serde_json::{json, Map, Value};

/// Migration failures, with the server or line they came from.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The HTTP request could not be made or its body read.
    #[error("{method} {url}: {source}")]
    Http {
        /// HTTP method.
        method: &'static str,
        /// The URL requested.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status {
        /// HTTP method.
        method: &'static str,
        /// The URL requested.
        url: String,
        /// Status code.
        status: u16,
        /// Response body (Chroma's error JSON).
        body: String,
    },
    /// A response or file line did not have the expected shape.
    #[error("unexpected data from {from}: {reason}")]
    Shape {
        /// The URL or file position.
        from: String,
        /// What was wrong.
        reason: String,
    },
    /// After a collection was copied, source and target hold different numbers of records:
    /// records written to the target directly, or the source changed during the copy.
    #[error(
        "{collection}: the source has {source_records} records but the target has \
         {target_records} after the copy (records written to the target directly, or the source \
         changed during the copy); compare the two, fix the difference and rerun the import"
    )]
    CountMismatch {
        /// `tenant/database/name`.
        collection: String,
        /// Records on the source after the copy.
        source_records: u64,
        /// Records on the target after the copy.
        target_records: u64,
    },
    /// Reading or writing the NDJSON file failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A Chroma-compatible server: base URL plus an optional token (sent as `X-Chroma-Token`).
#[derive(Debug, Clone)]
pub struct Endpoint {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

/// What a copy did, for the command's summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Collections copied (created or resumed).
    pub collections: usize,
    /// Records written in this run.
    pub records: u64,
    /// Records found already present and skipped (resume).
    pub skipped: u64,
}

impl Endpoint {
    /// A server at `base` (e.g. `http://localhost:8000`).
    pub fn new(base: &str, token: Option<String>) -> Endpoint {
        Endpoint {
            base: base.trim_end_matches('/').to_string(),
            token,
            client: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, MigrateError> {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.client.get(&url),
            _ => self.client.post(&url),
        };
        if let Some(t) = &self.token {
            req = req.header("x-chroma-token", t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let http = |source| MigrateError::Http {
            method,
            url: url.clone(),
            source,
        };
        let resp = req.send().await.map_err(http)?;
        let status = resp.status();
        let text = resp.text().await.map_err(http)?;
        if !status.is_success() {
            return Err(MigrateError::Status {
                method,
                url,
                status: status.as_u16(),
                body: text,
            });
        }
        serde_json::from_str(&text).map_err(|e| MigrateError::Shape {
            from: url,
            reason: format!("invalid JSON: {e}"),
        })
    }

    async fn databases(&self, tenant: &str) -> Result<Vec<String>, MigrateError> {
        let path = format!("/api/v2/tenants/{tenant}/databases");
        let v = self.call("GET", &path, None).await?;
        names(&v, &path)
    }

    async fn collections(&self, tenant: &str, db: &str) -> Result<Vec<Value>, MigrateError> {
        let mut out = Vec::new();
        loop {
            let path = format!(
                "/api/v2/tenants/{tenant}/databases/{db}/collections?limit=100&offset={}",
                out.len()
            );
            let page = self.call("GET", &path, None).await?;
            let page = page
                .as_array()
                .cloned()
                .ok_or_else(|| MigrateError::Shape {
                    from: path.clone(),
                    reason: "expected a list of collections".into(),
                })?;
            let n = page.len();
            out.extend(page);
            if n < 100 {
                return Ok(out);
            }
        }
    }

    async fn ensure_database(&self, tenant: &str, db: &str) -> Result<(), MigrateError> {
        let tenant_path = format!("/api/v2/tenants/{tenant}");
        if self.call("GET", &tenant_path, None).await.is_err() {
            self.call("POST", "/api/v2/tenants", Some(&json!({ "name": tenant })))
                .await?;
        }
        let db_path = format!("/api/v2/tenants/{tenant}/databases/{db}");
        if self.call("GET", &db_path, None).await.is_err() {
            let create = format!("/api/v2/tenants/{tenant}/databases");
            self.call("POST", &create, Some(&json!({ "name": db })))
                .await?;
        }
        Ok(())
    }
}

fn names(v: &Value, from: &str) -> Result<Vec<String>, MigrateError> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d["name"].as_str().map(str::to_string))
                .collect()
        })
        .ok_or_else(|| MigrateError::Shape {
            from: from.to_string(),
            reason: "expected a list of objects with a name".into(),
        })
}

/// A collection's description as copied: where it lives and how to create it elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionSpec {
    /// Tenant.
    pub tenant: String,
    /// Database.
    pub database: String,
    /// Name.
    pub name: String,
    /// Collection metadata (may carry legacy `hnsw:*` keys).
    pub metadata: Option<Map<String, Value>>,
    /// The configuration as the source reports it (`hnsw`, `embedding_function`, …).
    pub configuration: Option<Value>,
}

impl CollectionSpec {
    fn from_source(tenant: &str, db: &str, c: &Value) -> Result<CollectionSpec, MigrateError> {
        let name = c["name"].as_str().ok_or_else(|| MigrateError::Shape {
            from: format!("{tenant}/{db}"),
            reason: "collection without a name".into(),
        })?;
        let configuration = c
            .get("configuration_json")
            .or_else(|| c.get("configuration"))
            .filter(|v| v.is_object())
            .map(|v| {
                // Only what a create request accepts; server-assigned parts stay behind.
                let mut out = Map::new();
                for key in ["hnsw", "spann", "embedding_function"] {
                    if let Some(x) = v.get(key).filter(|x| !x.is_null()) {
                        out.insert(key.to_string(), x.clone());
                    }
                }
                Value::Object(out)
            });
        Ok(CollectionSpec {
            tenant: tenant.to_string(),
            database: db.to_string(),
            name: name.to_string(),
            metadata: c["metadata"].as_object().cloned(),
            configuration,
        })
    }

    fn db_path(&self) -> String {
        format!(
            "/api/v2/tenants/{}/databases/{}",
            self.tenant, self.database
        )
    }

    fn to_json(&self) -> Value {
        json!({
            "type": "collection",
            "tenant": self.tenant,
            "database": self.database,
            "name": self.name,
            "metadata": self.metadata,
            "configuration": self.configuration,
        })
    }

    fn from_json(v: &Value, from: &str) -> Result<CollectionSpec, MigrateError> {
        let s = |k: &str| {
            v[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| MigrateError::Shape {
                    from: from.to_string(),
                    reason: format!("collection line without {k}"),
                })
        };
        Ok(CollectionSpec {
            tenant: s("tenant")?,
            database: s("database")?,
            name: s("name")?,
            metadata: v["metadata"].as_object().cloned(),
            configuration: v.get("configuration").filter(|c| c.is_object()).cloned(),
        })
    }
}

/// Creates (or finds) the collection on `target`; returns its id and current record count.
async fn open_target(
    target: &Endpoint,
    spec: &CollectionSpec,
) -> Result<(String, u64), MigrateError> {
    target.ensure_database(&spec.tenant, &spec.database).await?;
    let mut body = json!({ "name": spec.name, "get_or_create": true });
    if let Some(m) = &spec.metadata {
        body["metadata"] = Value::Object(m.clone());
    }
    if let Some(c) = &spec.configuration {
        body["configuration"] = c.clone();
    }
    let path = format!("{}/collections", spec.db_path());
    let created = target.call("POST", &path, Some(&body)).await?;
    let id = created["id"]
        .as_str()
        .ok_or_else(|| MigrateError::Shape {
            from: path.clone(),
            reason: "created collection without an id".into(),
        })?
        .to_string();
    let n = count(target, spec, &id).await?;
    Ok((id, n))
}

/// A page of records in Chroma's column form (`ids`, `embeddings`, …).
type Page = Value;

async fn read_page(
    source: &Endpoint,
    spec: &CollectionSpec,
    id: &str,
    offset: u64,
    limit: usize,
) -> Result<Page, MigrateError> {
    let path = format!("{}/collections/{id}/get", spec.db_path());
    let body = json!({
        "limit": limit,
        "offset": offset,
        "include": ["embeddings", "documents", "metadatas", "uris"],
    });
    source.call("POST", &path, Some(&body)).await
}

/// The ids of `limit` records from `offset` (insertion order), without their data.
async fn read_ids(
    source: &Endpoint,
    spec: &CollectionSpec,
    id: &str,
    offset: u64,
    limit: u64,
) -> Result<Vec<Value>, MigrateError> {
    let path = format!("{}/collections/{id}/get", spec.db_path());
    let body = json!({ "limit": limit, "offset": offset, "include": [] });
    let page = source.call("POST", &path, Some(&body)).await?;
    Ok(page["ids"].as_array().cloned().unwrap_or_default())
}

/// How many of `ids` exist in the collection `id` on `target`.
async fn count_present(
    target: &Endpoint,
    spec: &CollectionSpec,
    id: &str,
    ids: &[Value],
) -> Result<usize, MigrateError> {
    let path = format!("{}/collections/{id}/get", spec.db_path());
    let body = json!({ "ids": ids, "include": [] });
    let found = target.call("POST", &path, Some(&body)).await?;
    Ok(found["ids"].as_array().map_or(0, Vec::len))
}

/// Where a rerun resumes a collection at `offset` (the target's record count, at most the
/// source's): there, if the (up to `check`) source records just before it are all on the
/// target, which is what an earlier run that stopped there leaves; otherwise at 0, because a
/// count that matches by accident (records deleted on one side, added on the other) would skip
/// records.
async fn resume_offset(
    source: &Endpoint,
    target: &Endpoint,
    spec: &CollectionSpec,
    src_id: &str,
    dst_id: &str,
    offset: u64,
    check: u64,
) -> Result<u64, MigrateError> {
    if offset == 0 {
        return Ok(0);
    }
    let check = check.clamp(1, offset);
    let ids = read_ids(source, spec, src_id, offset - check, check).await?;
    if ids.len() as u64 == check && count_present(target, spec, dst_id, &ids).await? == ids.len() {
        return Ok(offset);
    }
    tracing::warn!(
        collection = %format!("{}/{}/{}", spec.tenant, spec.database, spec.name),
        target_records = offset,
        "the target's records are not the source's first ones; copying from the start"
    );
    Ok(0)
}

/// The record count of collection `id` on `server`.
async fn count(server: &Endpoint, spec: &CollectionSpec, id: &str) -> Result<u64, MigrateError> {
    let path = format!("{}/collections/{id}/count", spec.db_path());
    let v = server.call("GET", &path, None).await?;
    v.as_u64().ok_or_else(|| MigrateError::Shape {
        from: path,
        reason: format!("expected a count, got {v}"),
    })
}

fn page_len(page: &Page) -> usize {
    page["ids"].as_array().map_or(0, Vec::len)
}

async fn write_page(
    target: &Endpoint,
    spec: &CollectionSpec,
    id: &str,
    page: &Page,
) -> Result<(), MigrateError> {
    let mut body = Map::new();
    for key in ["ids", "embeddings", "documents", "metadatas", "uris"] {
        if let Some(v) = page.get(key).filter(|v| !v.is_null()) {
            body.insert(key.to_string(), v.clone());
        }
    }
    let path = format!("{}/collections/{id}/upsert", spec.db_path());
    target
        .call("POST", &path, Some(&Value::Object(body)))
        .await?;
    Ok(())
}

fn progress(total: u64, label: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:40} {pos}/{len} records ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(label.to_string());
        bar
    })
}

/// Copies every database and collection of `tenants` from `source` to `target`.
pub async fn copy_servers(
    source: &Endpoint,
    target: &Endpoint,
    tenants: &[String],
    batch: usize,
) -> Result<CopyReport, MigrateError> {
    let mut report = CopyReport::default();
    let batch = batch.max(1);
    for tenant in tenants {
        for db in source.databases(tenant).await? {
            for c in source.collections(tenant, &db).await? {
                let spec = CollectionSpec::from_source(tenant, &db, &c)?;
                let src_id = c["id"].as_str().unwrap_or_default().to_string();
                let total = count(source, &spec, &src_id).await?;
                let (dst_id, already) = open_target(target, &spec).await?;
                let label = format!("{tenant}/{db}/{}", spec.name);
                let bar = progress(total, &label);
                let started = Instant::now();
                let mut offset = resume_offset(
                    source,
                    target,
                    &spec,
                    &src_id,
                    &dst_id,
                    already.min(total),
                    batch as u64,
                )
                .await?;
                report.skipped += offset;
                if let Some(b) = &bar {
                    b.set_position(offset);
                }
                loop {
                    let page = read_page(source, &spec, &src_id, offset, batch).await?;
                    let n = page_len(&page);
                    if n == 0 {
                        break;
                    }
                    write_page(target, &spec, &dst_id, &page).await?;
                    offset += n as u64;
                    report.records += n as u64;
                    match &bar {
                        Some(b) => b.set_position(offset),
                        None => {
                            tracing::info!(collection = %label, copied = offset, total, "import progress")
                        }
                    }
                    if n < batch {
                        break;
                    }
                }
                if let Some(b) = bar {
                    b.finish();
                }
                let (source_records, target_records) = (
                    count(source, &spec, &src_id).await?,
                    count(target, &spec, &dst_id).await?,
                );
                if source_records != target_records {
                    return Err(MigrateError::CountMismatch {
                        collection: label,
                        source_records,
                        target_records,
                    });
                }
                tracing::info!(
                    collection = %label,
                    records = offset,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "collection copied"
                );
                report.collections += 1;
            }
        }
    }
    Ok(report)
}

/// Writes every collection of `tenants` on `source` to `out` as NDJSON: one `collection`
/// line, then one `records` line per page (Chroma's column form).
pub async fn export(
    source: &Endpoint,
    tenants: &[String],
    out: &mut impl Write,
    batch: usize,
) -> Result<CopyReport, MigrateError> {
    let mut report = CopyReport::default();
    let io = |op: &str| {
        let op = op.to_string();
        move |source| MigrateError::Io { op, source }
    };
    for tenant in tenants {
        for db in source.databases(tenant).await? {
            for c in source.collections(tenant, &db).await? {
                let spec = CollectionSpec::from_source(tenant, &db, &c)?;
                let id = c["id"].as_str().unwrap_or_default().to_string();
                serde_json::to_writer(&mut *out, &spec.to_json())
                    .map_err(|e| io("write export")(e.into()))?;
                out.write_all(b"\n").map_err(io("write export"))?;
                let mut offset = 0u64;
                loop {
                    let page = read_page(source, &spec, &id, offset, batch.max(1)).await?;
                    let n = page_len(&page);
                    if n == 0 {
                        break;
                    }
                    let mut line = page.clone();
                    line["type"] = json!("records");
                    serde_json::to_writer(&mut *out, &line)
                        .map_err(|e| io("write export")(e.into()))?;
                    out.write_all(b"\n").map_err(io("write export"))?;
                    offset += n as u64;
                    report.records += n as u64;
                    if n < batch.max(1) {
                        break;
                    }
                }
                report.collections += 1;
            }
        }
    }
    out.flush().map_err(io("flush export"))?;
    Ok(report)
}

/// Loads an NDJSON file written by [`export`] into `target` (upserts: rerunning is safe).
pub async fn import_file(
    target: &Endpoint,
    input: impl BufRead,
) -> Result<CopyReport, MigrateError> {
    let mut report = CopyReport::default();
    let mut current: Option<(CollectionSpec, String)> = None;
    for (no, line) in input.lines().enumerate() {
        let line = line.map_err(|source| MigrateError::Io {
            op: format!("read line {}", no + 1),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("line {}", no + 1);
        let v: Value = serde_json::from_str(&line).map_err(|e| MigrateError::Shape {
            from: at.clone(),
            reason: format!("invalid JSON: {e}"),
        })?;
        match v["type"].as_str() {
            Some("collection") => {
                let spec = CollectionSpec::from_json(&v, &at)?;
                let (id, _) = open_target(target, &spec).await?;
                current = Some((spec, id));
                report.collections += 1;
            }
            Some("records") => {
                let (spec, id) = current.as_ref().ok_or_else(|| MigrateError::Shape {
                    from: at.clone(),
                    reason: "records before any collection line".into(),
                })?;
                write_page(target, spec, id, &v).await?;
                report.records += page_len(&v) as u64;
            }
            other => {
                return Err(MigrateError::Shape {
                    from: at,
                    reason: format!("unknown line type {other:?}"),
                })
            }
        }
    }
    Ok(report)
}
