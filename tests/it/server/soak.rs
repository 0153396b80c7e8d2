//! Load and soak over loopback against the real server binary: concurrent upserts, queries,
//! gets and deletes on a bounded id space, so memtables flush, tombstones pile up and
//! compaction runs, for a configurable duration. Reports p50/p99 latency per operation, the
//! error count (must be 0), RSS (anon/file), open descriptors, disk use, memtable rows and
//! segments sampled over time (must plateau), and how long the graceful stop took. Ignored by
//! default (it is a measurement, not a CI test):
//!
//! ```bash
//! cargo build --release --bin vectord
//! VECTORD_SOAK_SECS=600 cargo test --test it -- --ignored --nocapture server::soak
//! ```
//!
//! Settings: `VECTORD_SOAK_BIN` (default `target/release/vectord`), `VECTORD_SOAK_SECS` (600),
//! `VECTORD_SOAK_DIM` (128), `VECTORD_SOAK_IDS` (ids per collection, 40,000),
//! `VECTORD_SOAK_OUT` (JSON report, default `target/soak-report.json`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

const COLLECTIONS: usize = 4;
const UPSERT_BATCH: usize = 200;
const DELETE_BATCH: usize = 50;

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// A small xorshift generator: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim)
            .map(|_| (self.next() % 2000) as f32 / 1000.0 - 1.0)
            .collect()
    }
}

#[derive(Default)]
struct Stats {
    lat: Mutex<std::collections::BTreeMap<&'static str, Vec<u32>>>,
    errors: AtomicU64,
    /// 429s: backpressure (a write stall that ran out), not failures; the writer backs off.
    throttled: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Stats {
    /// Records one operation; returns whether it was refused with 429 (back off).
    fn record(&self, op: &'static str, started: Instant, ok: Result<(), String>) -> bool {
        let us = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
        self.lat.lock().entry(op).or_default().push(us);
        if let Err(e) = &ok {
            if e.starts_with("429") {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            self.errors.fetch_add(1, Ordering::Relaxed);
            let mut f = self.first_errors.lock();
            if f.len() < 10 {
                f.push(format!("{op}: {e}"));
            }
        }
        false
    }
}

async fn post(c: &reqwest::Client, url: &str, body: &Value) -> Result<Value, String> {
    let r = c
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let text = r.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {text:.300}"));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

struct Sample {
    t: f64,
    rss_anon_mb: f64,
    rss_file_mb: f64,
    fds: usize,
    disk_mb: f64,
    ops: u64,
    /// Rows in the collections' active memtables and their segment count (from `/metrics`):
    /// what RSS should track.
    memtable_rows: f64,
    segments: f64,
    /// Memtable rows not yet in a graph (a backlog the next flush must index first).
    unindexed_rows: f64,
}

/// Sum of a per-collection gauge in the Prometheus text of `/metrics`.
fn gauge_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn proc_status(pid: u32, key: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

fn pct(v: &mut [u32], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64 / 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak: run by hand with a release server (see the file's doc)"]
async fn soak() {
    let secs: u64 = env_or("VECTORD_SOAK_SECS", 600);
    let dim: usize = env_or("VECTORD_SOAK_DIM", 128);
    let id_space: usize = env_or("VECTORD_SOAK_IDS", 40_000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = std::env::var("VECTORD_SOAK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/release/vectord"));
    let out_path = std::env::var("VECTORD_SOAK_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/soak-report.json"));
    assert!(bin.exists(), "build the server first: {}", bin.display());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(tmp.path().join("server.log")).unwrap();
    let mut child = std::process::Command::new(&bin)
        .args(["run", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--path")
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    let db = format!("{base}/api/v2/tenants/default_tenant/databases/default_database");
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    for _ in 0..300 {
        if c.get(format!("{base}/api/v2/heartbeat"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut colls = Vec::new();
    for i in 0..COLLECTIONS {
        let r = post(
            &c,
            &format!("{db}/collections"),
            &json!({"name": format!("soak{i}"), "configuration": {"hnsw": {"space": "cosine"}}}),
        )
        .await
        .unwrap();
        colls.push(format!("{db}/collections/{}", r["id"].as_str().unwrap()));
    }
    let colls = Arc::new(colls);
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    // Writers: upserts over a bounded id space (new versions tombstone old ones → flushes,
    // compactions), one per collection.
    for w in 0..COLLECTIONS {
        let (c, colls, stats, stop, ops) = (
            c.clone(),
            colls.clone(),
            stats.clone(),
            stop.clone(),
            ops.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9 + w as u64);
            while !stop.load(Ordering::Relaxed) {
                let ids: Vec<String> = (0..UPSERT_BATCH)
                    .map(|_| format!("id{}", rng.below(id_space)))
                    .collect();
                let embs: Vec<Vec<f32>> = (0..UPSERT_BATCH).map(|_| rng.vector(dim)).collect();
                let metas: Vec<Value> = (0..UPSERT_BATCH)
                    .map(|_| json!({"g": rng.below(10) as i64}))
                    .collect();
                let docs: Vec<String> = (0..UPSERT_BATCH)
                    .map(|i| format!("document {i} of a soak batch"))
                    .collect();
                let body =
                    json!({"ids": ids, "embeddings": embs, "metadatas": metas, "documents": docs});
                let t = Instant::now();
                let r = post(&c, &format!("{}/upsert", colls[w]), &body).await;
                if stats.record("upsert", t, r.map(|_| ())) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                ops.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Readers: queries (half filtered) and gets by id.
    for q in 0..4 {
        let (c, colls, stats, stop, ops) = (
            c.clone(),
            colls.clone(),
            stats.clone(),
            stop.clone(),
            ops.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0xC0FF_EE00 + q as u64);
            while !stop.load(Ordering::Relaxed) {
                let coll = &colls[rng.below(COLLECTIONS)];
                let mut body = json!({"query_embeddings": [rng.vector(dim)], "n_results": 10,
                                      "include": ["distances", "metadatas"]});
                if rng.below(2) == 0 {
                    body["where"] = json!({"g": rng.below(10) as i64});
                }
                let t = Instant::now();
                let r = post(&c, &format!("{coll}/query"), &body).await;
                stats.record("query", t, r.map(|_| ()));
                let ids: Vec<String> = (0..20)
                    .map(|_| format!("id{}", rng.below(id_space)))
                    .collect();
                let t = Instant::now();
                let r = post(&c, &format!("{coll}/get"), &json!({"ids": ids})).await;
                stats.record("get", t, r.map(|_| ()));
                ops.fetch_add(2, Ordering::Relaxed);
            }
        }));
    }
    // Deleter.
    {
        let (c, colls, stats, stop, ops) = (
            c.clone(),
            colls.clone(),
            stats.clone(),
            stop.clone(),
            ops.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0xDE1E_7E00);
            while !stop.load(Ordering::Relaxed) {
                let coll = &colls[rng.below(COLLECTIONS)];
                let ids: Vec<String> = (0..DELETE_BATCH)
                    .map(|_| format!("id{}", rng.below(id_space)))
                    .collect();
                let t = Instant::now();
                let r = post(&c, &format!("{coll}/delete"), &json!({"ids": ids})).await;
                stats.record("delete", t, r.map(|_| ()));
                ops.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let started = Instant::now();
    let every = Duration::from_secs(if secs >= 120 { 10 } else { 1 });
    let mut samples: Vec<Sample> = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(every).await;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0);
        let metrics = match c.get(format!("{base}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let s = Sample {
            t: started.elapsed().as_secs_f64(),
            rss_anon_mb: proc_status(pid, "RssAnon:"),
            rss_file_mb: proc_status(pid, "RssFile:"),
            fds,
            disk_mb: disk_bytes(&data) as f64 / 1e6,
            ops: ops.load(Ordering::Relaxed),
            memtable_rows: gauge_sum(&metrics, "vectord_collection_memtable_rows"),
            segments: gauge_sum(&metrics, "vectord_collection_segments"),
            unindexed_rows: gauge_sum(&metrics, "vectord_collection_unindexed_rows"),
        };
        eprintln!(
            "t={:>6.0}s ops={:>8} rss_anon={:>7.1}MB rss_file={:>7.1}MB fds={:>4} disk={:>8.1}MB memtable_rows={:>7} unindexed={:>7} segments={:>3} errors={}",
            s.t,
            s.ops,
            s.rss_anon_mb,
            s.rss_file_mb,
            s.fds,
            s.disk_mb,
            s.memtable_rows,
            s.unindexed_rows,
            s.segments,
            stats.errors.load(Ordering::Relaxed)
        );
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Final state: counts per collection, then a graceful stop.
    let mut live = 0u64;
    for coll in colls.iter() {
        let r = c.get(format!("{coll}/count")).send().await.unwrap();
        live += r.text().await.unwrap().trim().parse::<u64>().unwrap_or(0);
    }
    // The graceful stop: drain connections, flush memtables, close collections.
    let stopping = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let exit = child.wait().unwrap();
    let shutdown_secs = stopping.elapsed().as_secs_f64();
    let mut lat = std::mem::take(&mut *stats.lat.lock());
    let mut per_op = serde_json::Map::new();
    for (op, v) in lat.iter_mut() {
        let n = v.len();
        per_op.insert(
            op.to_string(),
            json!({"count": n, "per_sec": n as f64 / elapsed, "p50_ms": pct(v, 0.5),
                   "p99_ms": pct(v, 0.99), "max_ms": pct(v, 1.0)}),
        );
    }
    let errors = stats.errors.load(Ordering::Relaxed);
    let throttled = stats.throttled.load(Ordering::Relaxed);
    let third = samples.len() / 3;
    let max_of = |s: &[Sample], f: fn(&Sample) -> f64| s.iter().map(f).fold(0.0, f64::max);
    let (mid, last) = if third > 0 {
        (&samples[third..2 * third], &samples[2 * third..])
    } else {
        (&samples[..], &samples[..])
    };
    let report = json!({
        "seconds": elapsed, "dim": dim, "collections": COLLECTIONS, "id_space": id_space,
        "ops": per_op, "errors": errors, "throttled_429": throttled, "first_errors": *stats.first_errors.lock(),
        "live_records_at_end": live, "server_exit": exit.to_string(), "shutdown_secs": shutdown_secs,
        "rss_anon_mb": {"middle_third_max": max_of(mid, |s| s.rss_anon_mb), "last_third_max": max_of(last, |s| s.rss_anon_mb)},
        "rss_file_mb": {"middle_third_max": max_of(mid, |s| s.rss_file_mb), "last_third_max": max_of(last, |s| s.rss_file_mb)},
        "fds": {"middle_third_max": max_of(mid, |s| s.fds as f64), "last_third_max": max_of(last, |s| s.fds as f64)},
        "disk_mb": {"middle_third_max": max_of(mid, |s| s.disk_mb), "last_third_max": max_of(last, |s| s.disk_mb),
                    "end": samples.last().map_or(0.0, |s| s.disk_mb)},
        "memtable_rows": {"middle_third_max": max_of(mid, |s| s.memtable_rows), "last_third_max": max_of(last, |s| s.memtable_rows)},
        "sample_columns": ["t", "rss_anon_mb", "rss_file_mb", "fds", "disk_mb", "ops", "memtable_rows", "segments", "unindexed_rows"],
        "samples": samples.iter().map(|s| json!([s.t, s.rss_anon_mb, s.rss_file_mb, s.fds, s.disk_mb, s.ops, s.memtable_rows, s.segments, s.unindexed_rows])).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&report).unwrap();
    std::fs::write(&out_path, &text).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&report["ops"]).unwrap());
    eprintln!(
        "errors={errors} throttled={throttled} shutdown={shutdown_secs:.1}s rss_anon={} rss_file={} fds={} disk={} report={}",
        report["rss_anon_mb"],
        report["rss_file_mb"],
        report["fds"],
        report["disk_mb"],
        out_path.display()
    );
    assert_eq!(errors, 0, "{:?}", stats.first_errors.lock());
    // Backpressure, not collapse: no request waits much past the write stall (10 s) before it
    // is answered, refused or not.
    for (op, v) in per_op.iter() {
        let max = v["max_ms"].as_f64().unwrap_or(0.0);
        assert!(
            max <= 30_000.0,
            "{op} took {max} ms: the server collapsed instead of pushing back"
        );
    }
    assert!(exit.success(), "the server's graceful stop failed: {exit}");
    // Well inside fly.toml's kill_timeout (30 s): a stop must not wait for graph builds (it
    // once waited 52.7 s for a background flush).
    assert!(
        shutdown_secs <= 15.0,
        "the graceful stop took {shutdown_secs:.1} s"
    );
    if secs >= 120 {
        // Plateau: the last third grows at most 25% (+64 MB) over the middle third.
        for key in ["rss_anon_mb", "fds", "disk_mb"] {
            let (m, l) = (
                report[key]["middle_third_max"].as_f64().unwrap(),
                report[key]["last_third_max"].as_f64().unwrap(),
            );
            assert!(l <= m * 1.25 + 64.0, "{key} kept growing: {m} → {l}");
        }
    }
}
