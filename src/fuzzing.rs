//! Entry points of the `cargo fuzz` targets (`tests/fuzz/`) and of the stable test that replays
//! their seeds and crash regressions (`tests/it/fuzz_regressions.rs`). Not an API: hidden from the
//! docs, free to change, and compiled only with the `fuzzing` feature, so a production build
//! carries none of it.
//!
//! Each function takes arbitrary bytes and must return normally for every input; a panic (or a
//! sanitizer report) is a bug in the code under test, never in the input. They drive the real
//! code paths on real files (under `/dev/shm` when it exists, so fsync is cheap): the harness
//! only builds inputs, it does not re-implement parsing.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use serde_json::Value;

use crate::engine::{Collection, CollectionConfig};
use crate::types::{
    Columns, GetRequest, Include, Metadata, MetadataValue, QueryRequest, Space, WriteBatch,
};

/// A fresh, empty scratch folder for one input; removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = scratch_root().join(format!("in-{n}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("fuzz harness: create scratch folder");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let root = base.join(format!("vectord-fuzz-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("fuzz harness: create scratch root");
        root
    })
}

/// Reads, queries, scrubs, flushes and reopens an opened collection; every call may fail with
/// an error but must not panic. With `same_after_reopen`, what was readable before the flush
/// must still be there, in the same order, after the reopen: true for files whose checksums
/// are real (damage is detected or absent), not for images resealed over damage, whose forged
/// contents may legitimately read differently once rewritten (e.g. a stored order that
/// disagrees with the first-insert numbers).
fn exercise(dir: &Path, c: Collection, same_after_reopen: bool) {
    let all = GetRequest {
        include: Include::ALL,
        ..Default::default()
    };
    let before = c.get(&all).ok();
    let _ = c.count();
    let _ = c.get(&GetRequest {
        ids: Some(vec!["a".into(), "id3".into(), String::new()]),
        offset: 1,
        limit: Some(3),
        include: Include::ALL,
        ..Default::default()
    });
    let filter = crate::filter::parse(
        Some(&serde_json::json!({"$or": [{"k": {"$gte": 2}}, {"s": {"$in": ["x", "y"]}}]})),
        Some(&serde_json::json!({"$contains": "d"})),
    )
    .expect("fuzz harness: fixed filter parses");
    let _ = c.get(&GetRequest {
        filter: filter.clone(),
        include: Include::ALL,
        ..Default::default()
    });
    if let Some(dim) = c.dimension() {
        for (n_results, filter) in [(3, None), (50, filter)] {
            let _ = c.query(&QueryRequest {
                embeddings: vec![vec![0.5; dim], vec![-1.0; dim]],
                n_results,
                ids: None,
                filter,
                include: Include::ALL,
            });
        }
    }
    let _ = c.verify();
    let _ = c.compact();
    let flushed = c.flush();
    if c.close().is_err() || flushed.is_err() {
        return;
    }
    // Everything `get` returned before the flush was made durable by it: a reopen that works
    // must return the same records.
    if let (Some(before), Ok(again)) = (before, Collection::open(dir)) {
        if let Some(after) = again.get(&all).ok().filter(|_| same_after_reopen) {
            assert_eq!(
                before.ids, after.ids,
                "records changed across flush + reopen"
            );
        }
        let _ = again.close();
    }
}

/// Fuzz target `wal`: the input becomes the WAL of an otherwise empty collection, which is then
/// opened (recovery replays it) and exercised.
///
/// Byte 0: bit 0 set selects raw mode (the rest is the file as is), clear record mode (the rest
/// is a list of `[len u16][ctl u8][payload]` turned into records with valid checksums, so mutations
/// reach the payload decoder and replay); bits 1..=2 select the distance space. In record mode
/// `ctl` 0xFF takes the sequence number from the next 8 bytes, 0xFE writes a bad checksum,
/// anything else numbers the record after the previous one.
pub fn wal(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let space = [Space::L2, Space::Cosine, Space::Ip, Space::L2][(mode as usize >> 1) & 3];
    let scratch = Scratch::new();
    let dir = scratch.0.join("c");
    let config = CollectionConfig {
        space,
        ..Default::default()
    };
    Collection::create(&dir, config)
        .and_then(Collection::close)
        .expect("fuzz harness: create collection");
    let wal_dir = dir.join("wal");
    for entry in fs::read_dir(&wal_dir)
        .expect("fuzz harness: list WAL")
        .flatten()
    {
        let _ = fs::remove_file(entry.path());
    }
    let file = if mode & 1 == 1 {
        rest.to_vec()
    } else {
        wal_records(rest)
    };
    fs::write(wal_dir.join("00000001.log"), file).expect("fuzz harness: write WAL");
    if let Ok(c) = Collection::open(&dir) {
        exercise(&dir, c, true);
    }
}

/// Record mode of [`wal`]: a valid file header, then one record per `[len u16][ctl u8]` chunk.
fn wal_records(mut rest: &[u8]) -> Vec<u8> {
    let mut out = crate::engine::wal_file_header_for_fuzzing().to_vec();
    let mut seq = 0u64;
    while rest.len() >= 3 {
        let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let ctl = rest[2];
        rest = &rest[3..];
        if ctl == 0xFF && rest.len() >= 8 {
            let mut b = [0u8; 8];
            b.copy_from_slice(&rest[..8]);
            seq = u64::from_le_bytes(b);
            rest = &rest[8..];
        } else {
            seq = seq.wrapping_add(1);
        }
        let take = len.min(rest.len());
        let mut rec = crate::engine::wal_record_for_fuzzing(seq, &rest[..take]);
        if ctl == 0xFE {
            rec[4] ^= 0x5A;
        }
        out.extend_from_slice(&rec);
        rest = &rest[take..];
    }
    out
}

/// The files [`segment`] damages, relative to the template collection, in a fixed order.
const SEGMENT_FILES: &[&str] = &[
    "segments/00000001/vectors.bin",
    "segments/00000001/records.bin",
    "segments/00000001/graph.bin",
    "segments/00000001/codes.bin",
    "segments/00000002/vectors.bin",
    "segments/00000002/records.bin",
    "segments/00000002/graph.bin",
    "segments/00000002/codes.bin",
    "MANIFEST",
    // The live tombstone file of segment 1 (its name carries the MANIFEST generation).
    "tombstones",
];

/// A collection with two flushed segments (graphs, codes, a tombstone file) built once per
/// process; [`segment`] copies it for every input.
fn segment_template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = scratch_root().join("segment-template");
        let c = Collection::create(&dir, CollectionConfig::default())
            .expect("fuzz harness: create template");
        let batch = |from: u32, to: u32| {
            let ids: Vec<String> = (from..to).map(|i| format!("id{i}")).collect();
            let n = ids.len();
            let meta = |i: u32| {
                let mut m = Metadata::new();
                m.insert("k".into(), MetadataValue::Int(i64::from(i % 5)));
                m.insert(
                    "s".into(),
                    MetadataValue::Str(["x", "y", "z"][i as usize % 3].into()),
                );
                m.insert(
                    "f".into(),
                    MetadataValue::FloatArray(vec![f64::from(i), 0.5]),
                );
                Some(m)
            };
            WriteBatch::add(Columns {
                ids,
                embeddings: Some(
                    (from..to)
                        .map(|i| vec![i as f32, (i % 7) as f32, 1.0, -(i as f32) / 3.0])
                        .collect(),
                ),
                metadatas: Some((from..to).map(meta).collect()),
                documents: Some((from..to).map(|i| Some(format!("doc {i}"))).collect()),
                uris: Some(vec![Some("u".into()); n]),
            })
            .expect("fuzz harness: template batch")
        };
        c.apply(batch(0, 40), None).expect("fuzz harness: add");
        c.flush().expect("fuzz harness: flush");
        let delete = WriteBatch::Delete(crate::types::DeleteSelector {
            ids: Some(vec!["id3".into(), "id7".into(), "id11".into()]),
            ..Default::default()
        });
        c.apply(delete, None).expect("fuzz harness: delete");
        c.apply(batch(40, 52), None).expect("fuzz harness: add");
        c.flush().expect("fuzz harness: flush");
        c.close().expect("fuzz harness: close");
        for f in &SEGMENT_FILES[..SEGMENT_FILES.len() - 1] {
            assert!(dir.join(f).is_file(), "fuzz harness: template lacks {f}");
        }
        dir
    })
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("fuzz harness: create folder");
    for entry in fs::read_dir(from).expect("fuzz harness: list").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("fuzz harness: copy");
        }
    }
}

/// Fuzz target `segment`: one file of a two-segment collection (vectors, records, graph,
/// codes, tombstones, MANIFEST) is damaged, then the collection is opened and exercised.
///
/// Byte 0 picks the file, byte 1 the mode: 0 replaces the file with the rest of the input;
/// 1 and 2 apply `[offset u32][value u8]` patches (offset modulo the file size), 2 then
/// recomputes the file's checksums from its own (possibly damaged) header so the damage gets
/// past the CRCs; 3 first sets the length to the next u32 (modulo twice the size), patches and
/// reseals.
pub fn segment(data: &[u8]) {
    let [which, mode, rest @ ..] = data else {
        return;
    };
    let template = segment_template();
    let scratch = Scratch::new();
    let dir = scratch.0.join("c");
    copy_dir(template, &dir);
    let name = SEGMENT_FILES[*which as usize % SEGMENT_FILES.len()];
    let path = if name == "tombstones" {
        let seg = dir.join("segments/00000001");
        let found = fs::read_dir(&seg)
            .expect("fuzz harness: list segment")
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("tombstones-"))
            });
        found.expect("fuzz harness: template has a tombstone file")
    } else {
        dir.join(name)
    };
    let mut bytes = fs::read(&path).expect("fuzz harness: read file");
    let mut rest = rest;
    match mode % 4 {
        0 => bytes = rest.to_vec(),
        m => {
            if m == 3 && rest.len() >= 4 {
                let want = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                bytes.resize(want % (2 * bytes.len().max(1)), 0);
                rest = &rest[4..];
            }
            if !bytes.is_empty() {
                for p in rest.chunks_exact(5) {
                    let off = u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as usize;
                    let len = bytes.len();
                    bytes[off % len] = p[4];
                }
            }
            if m >= 2 {
                if name.ends_with("graph.bin") {
                    crate::index::flat_graph::reseal_for_fuzzing(&mut bytes);
                } else if name != "MANIFEST" {
                    crate::engine::reseal_blocked_for_fuzzing(&mut bytes);
                }
            }
        }
    }
    fs::write(&path, &bytes).expect("fuzz harness: write file");
    if let Ok(c) = Collection::open(&dir) {
        exercise(&dir, c, mode % 4 < 2);
    }
}

/// Metadata and documents every parsed filter is evaluated against: each value type, arrays,
/// a missing document, non-ASCII text.
fn filter_samples() -> &'static [(Option<Metadata>, Option<String>)] {
    static SAMPLES: OnceLock<Vec<(Option<Metadata>, Option<String>)>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let mut a = Metadata::new();
        a.insert("k".into(), MetadataValue::Int(3));
        a.insert("f".into(), MetadataValue::Float(2.5));
        a.insert("s".into(), MetadataValue::Str("x".into()));
        a.insert("b".into(), MetadataValue::Bool(true));
        let mut b = Metadata::new();
        b.insert("k".into(), MetadataValue::Float(3.0));
        b.insert(
            "s".into(),
            MetadataValue::StrArray(vec!["x".into(), "é".into()]),
        );
        b.insert("i".into(), MetadataValue::IntArray(vec![1, -2, i64::MAX]));
        b.insert("f".into(), MetadataValue::FloatArray(vec![f64::MIN, 0.0]));
        b.insert("b".into(), MetadataValue::BoolArray(vec![false]));
        vec![
            (Some(a), Some("the quick brown fox".into())),
            (Some(b), Some("ünïcödé \u{0} text with $contains".into())),
            (None, None),
            (Some(Metadata::new()), Some(String::new())),
        ]
    })
}

/// Fuzz target `filter`: the input as JSON through the `where` / `where_document` parsers
/// (alone, and as a request's pair when it is an object with those keys), and every filter that
/// parses evaluated against [`filter_samples`].
pub fn filter(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let mut parsed = vec![
        crate::filter::parse_where(&v).ok(),
        crate::filter::parse_where_document(&v).ok(),
    ];
    if let Value::Object(m) = &v {
        parsed.push(
            crate::filter::parse(m.get("where"), m.get("where_document"))
                .ok()
                .flatten(),
        );
    }
    for f in parsed.into_iter().flatten() {
        for (m, d) in filter_samples() {
            let _ = f.matches(m.as_ref(), d.as_deref());
        }
    }
}

/// The routes [`request`] posts its body to (`{c}`: the fuzz collection's id), with the method.
const REQUEST_ROUTES: &[(&str, &str)] = &[
    (
        "POST",
        "/api/v2/tenants/default_tenant/databases/default_database/collections",
    ),
    (
        "POST",
        "/api/v2/tenants/default_tenant/databases/default_database/collections/{c}/add",
    ),
    (
        "POST",
        "/api/v2/tenants/default_tenant/databases/default_database/collections/{c}/upsert",
    ),
    (
        "POST",
        "/api/v2/tenants/default_tenant/databases/default_database/collections/{c}/update",
    ),
    (
        "POST",
        "/api/v2/tenants/default_tenant/databases/default_database/collections/{c}/delete",
    ),
    (
        "POST",
        "/api/v2/tenants/default_tenant/databases/default_database/collections/{c}/get",
    ),
    (
        "POST",
        "/api/v2/tenants/default_tenant/databases/default_database/collections/{c}/query",
    ),
    (
        "PUT",
        "/api/v2/tenants/default_tenant/databases/default_database/collections/{c}",
    ),
    ("POST", "/api/v2/tenants"),
    ("POST", "/api/v2/tenants/default_tenant/databases"),
    ("POST", "/api/v1/collections"),
    ("POST", "/api/v1/collections/{c}/add"),
    ("POST", "/api/v1/collections/{c}/upsert"),
    ("POST", "/api/v1/collections/{c}/update"),
    ("POST", "/api/v1/collections/{c}/delete"),
    ("POST", "/api/v1/collections/{c}/get"),
    ("POST", "/api/v1/collections/{c}/query"),
];

struct Server {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    collection: String,
}

/// The in-process server [`request`] talks to: a real catalog in a scratch folder, auth off,
/// server-side embeddings unconfigured, and one collection `fuzz` of dimension 3 holding a few
/// records.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = scratch_root().join("server");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("fuzz harness: runtime");
        let settings = crate::config::Settings {
            path: dir.clone(),
            snapshot_dir: dir.join("snapshots"),
            ..Default::default()
        };
        let catalog = crate::catalog::Catalog::open(&dir).expect("fuzz harness: catalog");
        let state = crate::api::AppState::new(catalog, settings).expect("fuzz harness: state");
        let app = crate::api::app(state);
        let mut s = Server {
            runtime,
            app,
            collection: String::new(),
        };
        let (status, body) = s.call(
            "POST",
            REQUEST_ROUTES[0].1,
            br#"{"name":"fuzz","metadata":{"hnsw:space":"cosine"}}"#,
        );
        assert_eq!(status, 200, "fuzz harness: create collection: {body:?}");
        s.collection = body["id"]
            .as_str()
            .expect("fuzz harness: collection id")
            .to_owned();
        let add = br#"{"ids":["a","b","c"],"embeddings":[[1,0,0],[0,1,0],[0.5,0.5,0.1]],
            "metadatas":[{"k":1},{"k":2.5,"s":"x"},null],"documents":["alpha","beta",null]}"#;
        let (status, body) = s.call("POST", &s.route(1), add);
        assert_eq!(status, 201, "fuzz harness: add: {body:?}");
        s
    })
}

impl Server {
    fn route(&self, i: usize) -> String {
        REQUEST_ROUTES[i].1.replace("{c}", &self.collection)
    }

    /// One request through the whole router (legacy translation, auth, limits, handler).
    fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
        use tower::ServiceExt;
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_vec()))
            .expect("fuzz harness: request");
        self.runtime.block_on(async {
            let resp = self
                .app
                .clone()
                .oneshot(req)
                .await
                .expect("fuzz harness: router is infallible");
            let status = resp.status().as_u16();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        })
    }
}

/// Fuzz target `request`: byte 0 picks a route with a JSON body (create collection, add, upsert,
/// update, delete, get, query, modify collection, create tenant/database, and their v1 forms),
/// the rest is the body, sent through the real router of an in-process server. No answer may be
/// a 5xx other than 501; a collection the input created is deleted again so the catalog stays
/// small.
pub fn request(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let s = server();
    let i = which as usize % REQUEST_ROUTES.len();
    let (method, _) = REQUEST_ROUTES[i];
    let (status, resp) = s.call(method, &s.route(i), body);
    assert!(
        status < 500 || status == 501,
        "{method} {} answered {status}: {resp}",
        REQUEST_ROUTES[i].1
    );
    if status == 200 && (i == 0 || i == 10) {
        let ours = resp["id"].as_str() == Some(s.collection.as_str());
        if let Some(name) = resp["name"].as_str().filter(|_| !ours) {
            let path = format!("{}/{}", REQUEST_ROUTES[0].1, urlencode(name));
            let _ = s.call("DELETE", &path, b"");
        }
    }
}

/// Percent-encodes everything but unreserved characters (a collection name in a path).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
