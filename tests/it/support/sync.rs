//! Shared by the `sync` tests (and `solo`'s `sync_restart`): the real Postgres that `tests/run.sh` starts
//! (`VECTORD_TEST_PG_URL`), one database and slot per test, the production table, and an
//! independent statement of the mapping rules to compare a collection with its table.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio_postgres::{Client, NoTls};
use vectord::catalog::Catalog;
use vectord::engine::Collection;
use vectord::sync::config::JobConfig;
use vectord::sync::job::{open_collection, run, Until};
use vectord::sync::SyncRegistry;
use vectord::types::{GetRequest, Include, MetadataValue};

/// Dimension of the production column.
pub const DIM: usize = 1536;

/// The server URL, or `None` (with a loud message) when the suite runs without Postgres.
/// Under CI a missing Postgres fails the test instead.
pub fn pg_url() -> Option<String> {
    match std::env::var("VECTORD_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var("CI").is_ok_and(|v| !v.is_empty()) {
                panic!("VECTORD_TEST_PG_URL is not set under CI: tests/run.sh must start Postgres");
            }
            eprintln!(
                "\n*** SKIPPING: VECTORD_TEST_PG_URL is not set; run `bash tests/run.sh` (it starts \
                 PostgreSQL + pgvector) to run the sync tests ***\n"
            );
            None
        }
    }
}

/// `url` with its database replaced.
pub fn with_db(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) if url[..i].contains('@') || url[..i].contains("//") => {
            format!("{}/{db}", &url[..i])
        }
        _ => format!("{url}/{db}"),
    }
}

/// Connects (plain TCP; the test server has no TLS).
pub async fn client(url: &str) -> Client {
    let (c, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

/// The production DDL, verbatim from the issue.
pub const DDL: &str = "CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA IF NOT EXISTS healthcare;
CREATE TABLE healthcare.policy_embeddings (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(), payer_id VARCHAR(255), policy_text TEXT,
  embedding vector(1536), metadata JSONB, created_at TIMESTAMP DEFAULT NOW(), user_id UUID);";

/// A fresh database `name` with the production table; slots named `name` are dropped first.
pub async fn fresh_db(base: &str, name: &str) -> (String, Client) {
    let admin = client(base).await;
    admin
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1",
            &[&name],
        )
        .await
        .expect("drop slots");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .expect("drop database");
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create database");
    let url = with_db(base, name);
    let c = client(&url).await;
    c.batch_execute(DDL).await.expect("ddl");
    (url, c)
}

/// A job over the production table in `url`.
pub fn job(name: &str, url: &str, mode: &str) -> JobConfig {
    let toml = format!(
        r#"
        [[job]]
        name = "{name}"
        url = "{url}"
        table = "healthcare.policy_embeddings"
        document_column = "policy_text"
        metadata_columns = ["payer_id", "metadata", "created_at", "user_id"]
        collection = "{name}"
        mode = "{mode}"
        batch_rows = 64
        poll_ms = 200
        "#
    );
    toml::from_str::<vectord::sync::SyncFile>(&toml)
        .expect("job toml")
        .job
        .remove(0)
}

/// A deterministic random generator.
pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// A random unit-ish vector.
pub fn vector(r: &mut impl Rng) -> Vec<f32> {
    (0..DIM).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

/// Random JSON metadata of the kinds the rules cover (strings, ints, floats, bools, arrays,
/// one nested object).
pub fn meta(r: &mut impl Rng) -> serde_json::Value {
    let state = ["CA", "NY", "TX"][r.random_range(0..3)];
    let tier = ["gold", "silver"][r.random_range(0..2)];
    serde_json::json!({
        "state": state,
        "rev": r.random_range(0..1000),
        "score": r.random_range(0..100) as f64 / 8.0 + 0.5,
        "active": r.random_bool(0.5),
        "codes": ["A1", "B2"],
        "plan": {"tier": tier},
    })
}

/// Inserts one row; returns its id.
pub async fn insert(c: &Client, r: &mut impl Rng, with_embedding: bool) -> String {
    let id = uuid::Uuid::from_u128(r.random()).to_string();
    let emb: Option<Vec<f32>> = with_embedding.then(|| vector(r));
    let payer = format!("PAYER-{}", r.random_range(0..20));
    let text = format!("policy text {}", r.random::<u32>());
    let user = uuid::Uuid::from_u128(r.random()).to_string();
    c.execute(
        "INSERT INTO healthcare.policy_embeddings (id, payer_id, policy_text, embedding, metadata, user_id)
         VALUES ($1::text::uuid, $2, $3, $4::real[]::vector, $5::text::jsonb, $6::text::uuid)",
        &[&id, &payer, &text, &emb, &meta(r).to_string(), &user],
    )
    .await
    .expect("insert");
    id
}

/// One expected record: (embedding, document, metadata).
pub type Expected = (Vec<f32>, Option<String>, BTreeMap<String, MetadataValue>);

fn json_to_meta(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, MetadataValue>) {
    use serde_json::Value as J;
    if let J::Object(m) = v {
        for (k, v) in m {
            let key = format!("{prefix}{k}");
            match v {
                J::Null => {}
                J::Object(_) => json_to_meta(&format!("{key}."), v, out),
                J::Bool(b) => {
                    out.insert(key, MetadataValue::Bool(*b));
                }
                J::Number(n) => {
                    out.insert(
                        key,
                        n.as_i64()
                            .map(MetadataValue::Int)
                            .unwrap_or_else(|| MetadataValue::Float(n.as_f64().unwrap())),
                    );
                }
                J::String(s) => {
                    out.insert(key, MetadataValue::Str(s.clone()));
                }
                J::Array(a) => {
                    out.insert(
                        key,
                        MetadataValue::StrArray(
                            a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
                        ),
                    );
                }
            }
        }
    }
}

/// The table as the mapping rules say the collection must hold it (rows with an embedding).
pub async fn expected(c: &Client) -> BTreeMap<String, Expected> {
    let rows = c
        .query(
            "SELECT id::text, embedding::real[], policy_text, payer_id, metadata::text,
                    floor(extract(epoch from created_at))::int8, user_id::text
               FROM healthcare.policy_embeddings WHERE embedding IS NOT NULL",
            &[],
        )
        .await
        .expect("read table");
    rows.into_iter()
        .map(|r| {
            let mut m = BTreeMap::new();
            if let Some(p) = r.get::<_, Option<String>>(3) {
                m.insert("payer_id".into(), MetadataValue::Str(p));
            }
            if let Some(j) = r.get::<_, Option<String>>(4) {
                json_to_meta("", &serde_json::from_str(&j).unwrap(), &mut m);
            }
            if let Some(t) = r.get::<_, Option<i64>>(5) {
                m.insert("created_at".into(), MetadataValue::Int(t));
            }
            if let Some(u) = r.get::<_, Option<String>>(6) {
                m.insert("user_id".into(), MetadataValue::Str(u));
            }
            (
                r.get::<_, String>(0),
                (r.get::<_, Vec<f32>>(1), r.get::<_, Option<String>>(2), m),
            )
        })
        .collect()
}

/// The collection's content in the same shape.
pub fn actual(coll: &Collection) -> BTreeMap<String, Expected> {
    let res = coll
        .get(&GetRequest {
            include: Include {
                embeddings: true,
                documents: true,
                metadatas: true,
                ..Include::default()
            },
            ..GetRequest::default()
        })
        .expect("get");
    let embs = res.embeddings.unwrap();
    let docs = res.documents.unwrap();
    let metas = res.metadatas.unwrap();
    res.ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            (
                id,
                (
                    embs[i].clone(),
                    docs[i].clone(),
                    metas[i].clone().unwrap_or_default(),
                ),
            )
        })
        .collect()
}

/// Describes the first difference, or `None` when equal.
pub fn diff(
    want: &BTreeMap<String, Expected>,
    have: &BTreeMap<String, Expected>,
) -> Option<String> {
    if want.len() != have.len() {
        let missing: Vec<_> = want
            .keys()
            .filter(|k| !have.contains_key(*k))
            .take(3)
            .collect();
        let extra: Vec<_> = have
            .keys()
            .filter(|k| !want.contains_key(*k))
            .take(3)
            .collect();
        return Some(format!(
            "table has {} rows, collection {}; missing {missing:?}, extra {extra:?}",
            want.len(),
            have.len()
        ));
    }
    for (id, w) in want {
        match have.get(id) {
            None => return Some(format!("missing {id}")),
            Some(h) if h != w => {
                let what = if h.0 != w.0 {
                    "embedding".to_string()
                } else if h.1 != w.1 {
                    format!("document {:?} vs {:?}", h.1, w.1)
                } else {
                    format!("metadata {:?} vs {:?}", h.2, w.2)
                };
                return Some(format!("{id}: {what}"));
            }
            Some(_) => {}
        }
    }
    None
}

/// Waits until the collection equals the table (the follower is asynchronous), or panics with
/// the last difference.
pub async fn assert_converges(c: &Client, coll: &Arc<Collection>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let want = expected(c).await;
        let co = Arc::clone(coll);
        let have = tokio::task::spawn_blocking(move || actual(&co))
            .await
            .unwrap();
        match diff(&want, &have) {
            None => return,
            Some(d) if Instant::now() > deadline => panic!("{what}: collection != table: {d}"),
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A job running in this process on its own catalog.
pub struct Running {
    pub catalog: Arc<Catalog>,
    pub coll: Arc<vectord::engine::Collection>,
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<Result<(), vectord::sync::SyncError>>,
    pub status: vectord::sync::status::StatusHandle,
}

/// Opens a catalog in `dir` and runs `job` on it until stopped.
pub fn start(dir: &std::path::Path, job: &JobConfig) -> Running {
    let catalog = Arc::new(Catalog::open(dir).expect("catalog"));
    let coll = open_collection(&catalog, job).expect("collection");
    let registry = SyncRegistry::default();
    let status = registry.register(job);
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(run(
        Arc::clone(&catalog),
        job.clone(),
        Arc::clone(&status),
        rx,
        Until::Shutdown,
    ));
    Running {
        catalog,
        coll,
        stop,
        task,
        status,
    }
}

impl Running {
    /// Stops the job and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let r = tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("job stops")
            .expect("join");
        r.expect("job ended cleanly");
        drop(self.coll);
        drop(self.catalog);
    }
}
