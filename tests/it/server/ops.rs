//! Operations against the real `vectord` binary: the Dockerfile and fly.toml agree with each
//! other and with the server (paths, ports, health check, stop signal, environment, shutdown
//! deadline), a snapshot taken over HTTP while clients write restores, through `vectord
//! restore`, to a consistent cut, scheduled snapshots continue from the newest one across
//! restarts, and a stuck request cannot hold shutdown past the drain deadline.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::server::{
    create_collection, free_port, get_json, metric, metrics_text, post_ok, post_snapshot,
    succeeded, Server, BIN, DB,
};
use serde_json::{json, Value};

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `vectord run` over `data` with `extra` flags, once its readiness check answers.
async fn ready_server(client: &reqwest::Client, data: &Path, extra: &[&str]) -> Server {
    let mut server = Server::start(data, extra, None);
    server.ready_at(client, "/api/v2/healthcheck").await;
    server
}

/// The JSON array of a Dockerfile exec-form instruction (`CMD ["a", "b"]`).
fn exec_form(dockerfile: &str, instruction: &str) -> Vec<String> {
    let line = dockerfile
        .lines()
        .find(|l| l.starts_with(&format!("{instruction} ")))
        .unwrap_or_else(|| panic!("Dockerfile has no {instruction}"));
    serde_json::from_str(line[instruction.len()..].trim())
        .unwrap_or_else(|e| panic!("{instruction} is not exec form JSON: {e}"))
}

fn instruction_arg(dockerfile: &str, instruction: &str) -> String {
    dockerfile
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{instruction} ")))
        .unwrap_or_else(|| panic!("Dockerfile has no {instruction}"))
        .trim()
        .to_string()
}

/// `vectord run`'s flags, parsed by the server's own clap definition.
#[derive(clap::Parser)]
struct RunCli {
    #[command(flatten)]
    args: vectord::config::RunArgs,
}

fn flag(args: &[String], name: &str) -> String {
    let i = args
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("CMD has no {name}"));
    args.get(i + 1).cloned().expect("flag value")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerfile_and_fly_toml_agree_with_the_server() {
    let dockerfile = repo_file("Dockerfile");
    let fly: toml::Value = toml::from_str(&repo_file("fly.toml")).expect("fly.toml parses");
    let cmd = exec_form(&dockerfile, "CMD");
    let entrypoint = exec_form(&dockerfile, "ENTRYPOINT");
    assert_eq!(entrypoint, vec!["/usr/local/bin/vectord".to_string()]);
    assert!(
        dockerfile.contains("COPY --from=build /src/target/release/vectord /usr/local/bin/vectord")
    );
    assert_eq!(cmd.first().map(String::as_str), Some("run"));

    // Ports: CMD --port == EXPOSE == fly's internal_port; the host listens on all interfaces.
    let port: u16 = flag(&cmd, "--port").parse().expect("numeric port");
    let metrics_port: u16 = flag(&cmd, "--metrics-port").parse().expect("numeric port");
    assert_eq!(
        instruction_arg(&dockerfile, "EXPOSE"),
        format!("{port} {metrics_port}")
    );
    assert_eq!(
        fly["metrics"]["port"].as_integer(),
        Some(i64::from(metrics_port))
    );
    assert_eq!(fly["metrics"]["path"].as_str(), Some("/metrics"));
    let http = &fly["http_service"];
    assert_eq!(http["internal_port"].as_integer(), Some(i64::from(port)));
    assert_eq!(flag(&cmd, "--host"), "0.0.0.0");

    // Data: CMD --path == VOLUME == fly's mount destination.
    let data = flag(&cmd, "--path");
    assert_eq!(
        instruction_arg(&dockerfile, "VOLUME"),
        format!("[\"{data}\"]")
    );
    let mounts = fly["mounts"].as_array().expect("[[mounts]]");
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0]["destination"].as_str(), Some(data.as_str()));

    // Stop: the same signal in both, a kill timeout long enough for a graceful flush.
    assert_eq!(instruction_arg(&dockerfile, "STOPSIGNAL"), "SIGTERM");
    assert_eq!(fly["kill_signal"].as_str(), Some("SIGTERM"));
    let kill_timeout: u64 = fly["kill_timeout"]
        .as_str()
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|s| s.parse().ok())
        .expect("kill_timeout like \"30s\"");
    assert!(kill_timeout >= 10);

    // The CMD's flags and fly.toml's [env] resolve through the real config parser: daily
    // snapshots keeping 30 (the current deployment's 30 days of dailies), and a shutdown that
    // drains, then flushes, well inside kill_timeout.
    let env: std::collections::HashMap<String, String> = fly["env"]
        .as_table()
        .expect("[env]")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().expect("[env] values are strings").into(),
            )
        })
        .collect();
    let run_args = <RunCli as clap::Parser>::try_parse_from(&cmd)
        .unwrap_or_else(|e| panic!("CMD flags: {e}"))
        .args;
    let settings = vectord::config::Settings::resolve(run_args, |k| env.get(k).cloned())
        .unwrap_or_else(|e| panic!("fly.toml [env] with the CMD: {e}"));
    assert_eq!(settings.snapshot_every, Some(Duration::from_secs(86_400)));
    assert_eq!(settings.snapshot_keep, 30);
    assert_eq!(
        settings.snapshot_dir,
        Path::new(&flag(&cmd, "--path")).join("snapshots")
    );
    // Time left after the drain for sync jobs' last checkpoint and the final memtable flush.
    const FLUSH_MARGIN: Duration = Duration::from_secs(10);
    assert!(
        Duration::from_secs(kill_timeout) >= settings.limits.shutdown_drain + FLUSH_MARGIN,
        "kill_timeout {kill_timeout}s leaves no room to flush after a {:?} drain",
        settings.limits.shutdown_drain
    );

    // Health: Docker's HEALTHCHECK and Fly's check probe the same readiness route.
    let checks = http["checks"].as_array().expect("[[http_service.checks]]");
    let check_path = checks[0]["path"].as_str().expect("check path").to_string();
    assert_eq!(check_path, "/api/v2/healthcheck");
    assert!(dockerfile.contains(&format!("http://127.0.0.1:{port}{check_path}")));

    // Concurrency limits stay below what the server accepts without queueing forever.
    let conc = &http["concurrency"];
    let (soft, hard) = (
        conc["soft_limit"].as_integer().expect("soft_limit"),
        conc["hard_limit"].as_integer().expect("hard_limit"),
    );
    assert!(0 < soft && soft <= hard);
    // Fly stops sending at hard_limit; the server's own admission cap is the same number, so
    // Fly's proxy, not a queue inside vectord, holds the excess.
    assert_eq!(
        usize::try_from(hard).expect("positive"),
        settings.limits.max_concurrent_requests,
        "fly.toml hard_limit and the server's --max-concurrent-requests differ"
    );
    // The build is reproducible from Cargo.lock, and the runtime is not root.
    assert!(
        dockerfile.contains("cargo build --release --locked"),
        "the Dockerfile builds without --locked"
    );
    let user = instruction_arg(&dockerfile, "USER");
    assert!(
        !user.is_empty() && user != "root" && user != "0",
        "the image runs as {user:?}"
    );

    // Run the image's CMD with the built binary: /data mapped to a temporary folder, and the
    // port fly.toml routes to (a free one instead if something on this machine holds it).
    let tmp = tempfile::tempdir().expect("tempdir");
    let pick = |p: u16| {
        if TcpListener::bind(("0.0.0.0", p)).is_ok() {
            p
        } else {
            eprintln!("port {p} is busy on this machine; running the CMD on a free port");
            free_port()
        }
    };
    let (run_port, run_metrics_port) = (pick(port), pick(metrics_port));
    let args: Vec<String> = cmd
        .iter()
        .map(|a| {
            if *a == data {
                tmp.path().display().to_string()
            } else if *a == port.to_string() {
                run_port.to_string()
            } else if *a == metrics_port.to_string() {
                run_metrics_port.to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    let mut server = Server::start_args(&args, run_port);
    let client = reqwest::Client::new();
    let health = server.ready_at(&client, &check_path).await;
    assert_eq!(health["is_executor_ready"], json!(true));
    let scraped = client
        .get(format!("http://127.0.0.1:{run_metrics_port}/metrics"))
        .send()
        .await
        .expect("metrics port");
    assert!(scraped.status().is_success());
    assert!(scraped
        .text()
        .await
        .expect("text")
        .contains("vectord_http_requests"));
    let status = server.terminate(Duration::from_secs(kill_timeout));
    assert!(status.success(), "graceful stop on SIGTERM: {status:?}");
    assert!(tmp.path().join("catalog.json").exists());
}

fn b64(v: &[f32]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn vector(w: u64, i: u64) -> Vec<f32> {
    (0..8)
        .map(|d| ((w * 131 + i * 7 + d) % 97) as f32 / 97.0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_snapshot_under_load_restores_through_the_cli() {
    const BATCH: u64 = 25;
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let client = reqwest::Client::new();
    let server = ready_server(&client, &data, &[]).await;
    let base = server.base.clone();
    let id = create_collection(&client, &base, "policies").await;
    let upsert = format!("{base}{DB}/collections/{id}/upsert");

    let acked: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let (client, upsert, acked, stop) = (
            client.clone(),
            upsert.clone(),
            Arc::clone(&acked[w as usize]),
            Arc::clone(&stop),
        );
        writers.push(tokio::spawn(async move {
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) && next < 5000 {
                let range = next..next + BATCH;
                let body = json!({
                    "ids": range.clone().map(|i| format!("w{w}-{i:05}")).collect::<Vec<_>>(),
                    "embeddings": range.clone().map(|i| b64(&vector(w, i))).collect::<Vec<_>>(),
                    "documents": range.clone().map(|i| format!("passage {w}/{i}")).collect::<Vec<_>>(),
                    "metadatas": range.clone().map(|i| json!({"i": i})).collect::<Vec<_>>(),
                });
                let r = client.post(&upsert).json(&body).send().await.expect("upsert");
                assert!(r.status().is_success(), "upsert: {}", r.status());
                next += BATCH;
                acked.store(next, Ordering::SeqCst);
            }
        }));
    }
    while acked.iter().map(|a| a.load(Ordering::SeqCst)).min() < Some(200) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    let summary = post_snapshot(&client, &base, None).await;
    let name = summary["name"].as_str().expect("name").to_string();
    assert_eq!(summary["collections"], json!(1));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let list = get_json(&client, &format!("{base}/api/v2/admin/snapshots")).await;
    assert_eq!(list["snapshots"][0]["name"], json!(name));
    assert!(server.terminate(Duration::from_secs(30)).success());

    let snap: PathBuf = data.join("snapshots").join(&name);
    succeeded(Command::new(BIN).args(["snapshot", "verify"]).arg(&snap));
    let restored = tmp.path().join("restored");
    succeeded(
        Command::new(BIN)
            .args(["restore", "--from"])
            .arg(&snap)
            .arg("--path")
            .arg(&restored),
    );

    let server = ready_server(&client, &restored, &[]).await;
    let include = json!({"include": ["embeddings", "documents", "metadatas"]});
    let got = post_ok(&client, &server.base, &id, "get", &include).await;
    let ids = got["ids"].as_array().expect("ids");
    for w in 0..2u64 {
        let mut mine: Vec<u64> = ids
            .iter()
            .filter_map(|v| v.as_str()?.strip_prefix(&format!("w{w}-"))?.parse().ok())
            .collect();
        mine.sort_unstable();
        let n = mine.len() as u64;
        assert!(
            n >= before[w as usize],
            "writer {w}: acknowledged records missing"
        );
        assert_eq!(n % BATCH, 0, "writer {w}: half a batch restored");
        assert_eq!(mine, (0..n).collect::<Vec<_>>(), "writer {w}: not a prefix");
    }
    for (k, id) in ids.iter().enumerate() {
        let id = id.as_str().expect("id");
        let (w, i) = id[1..].split_once('-').expect("w-i");
        let (w, i): (u64, u64) = (w.parse().expect("w"), i.parse().expect("i"));
        let emb: Vec<f32> = serde_json::from_value(got["embeddings"][k].clone()).expect("f32s");
        assert_eq!(emb, vector(w, i), "{id}");
        assert_eq!(got["documents"][k], json!(format!("passage {w}/{i}")));
        assert_eq!(got["metadatas"][k]["i"], json!(i));
    }
    assert!(server.terminate(Duration::from_secs(30)).success());
}

/// Every `vectord_*` metric an alert rule uses must be one the server exports (a renamed
/// metric would silently disarm its alert).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_only_use_exported_metrics() {
    let rules = repo_file("data/prometheus/alerts.yml");
    let tmp = tempfile::tempdir().expect("tempdir");
    // A sync job whose Postgres is unreachable: it retries, and its gauges (lag, failing) are
    // exported as they are in production.
    let sync = tmp.path().join("sync.toml");
    std::fs::write(
        &sync,
        "[[job]]\nname = \"policies\"\nurl = \"postgresql://postgres@127.0.0.1:1/none\"\n\
         table = \"healthcare.policy_embeddings\"\ncollection = \"policies\"\n",
    )
    .expect("sync config");
    let sync = sync.display().to_string();
    let extra = ["--sync-config", &sync];
    let client = reqwest::Client::new();
    let server = ready_server(&client, &tmp.path().join("data"), &extra).await;
    let text = metrics_text(&client, &server.base).await;
    let exported: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut used = 0;
    for line in rules
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
    {
        for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !word.starts_with("vectord_") {
                continue;
            }
            let base = ["_bucket", "_total", "_count", "_sum"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .unwrap_or(word);
            assert!(
                exported.contains(base),
                "alert rule uses {word}, which /metrics does not export"
            );
            used += 1;
        }
    }
    assert!(used >= 8, "the rules file lost its expressions");
    assert!(server.terminate(Duration::from_secs(30)).success());
}

/// The audit log names who did what to which collection, with counts and outcomes, and never
/// contains documents, metadata values or vectors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_records_access_without_phi() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("audit").join("audit.jsonl");
    let log_arg = log.display().to_string();
    let extra = ["--audit-log", &log_arg];
    let client = reqwest::Client::new();
    let server = ready_server(&client, &tmp.path().join("data"), &extra).await;
    let base = server.base.clone();
    let id = create_collection(&client, &base, "phi").await;
    let secret_doc = "patient Jane Roe, DOB 1970-01-01, lumbar MRI";
    let r = client
        .post(format!("{base}{DB}/collections/{id}/add"))
        .header("fly-client-ip", "203.0.113.7")
        .json(&json!({
            "ids": ["a", "b", "c"],
            "embeddings": [[0.125, 0.5], [0.25, 0.75], [0.375, 1.0]],
            "documents": [secret_doc, "x", "y"],
            "metadatas": [{"member": "M-998877"}, {"member": "M-1"}, {"member": "M-2"}],
        }))
        .send()
        .await
        .expect("add");
    assert_eq!(r.status().as_u16(), 201);
    let r = client
        .post(format!("{base}{DB}/collections/{id}/query"))
        .json(&json!({"query_embeddings": [[0.125, 0.5]], "n_results": 2}))
        .send()
        .await
        .expect("query");
    assert_eq!(r.status().as_u16(), 200);
    let r = client
        .post(format!("{base}{DB}/collections/{id}/add"))
        .json(&json!({"ids": ["d"], "embeddings": [[1.0, 2.0, 3.0]]}))
        .send()
        .await
        .expect("bad add");
    assert_eq!(r.status().as_u16(), 400);
    client
        .get(format!("{base}/api/v2/heartbeat"))
        .send()
        .await
        .expect("heartbeat");
    assert!(server.terminate(Duration::from_secs(30)).success());

    let text = std::fs::read_to_string(&log).expect("audit log written");
    for secret in [secret_doc, "M-998877", "0.125", "\"a\""] {
        assert!(!text.contains(secret), "audit log leaks {secret:?}: {text}");
    }
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let ops: Vec<&str> = events
        .iter()
        .map(|e| e["operation"].as_str().expect("operation"))
        .collect();
    assert_eq!(ops, ["create_collection", "add", "query", "add"], "{text}");
    let add = &events[1];
    assert_eq!(add["collection"], json!(id));
    assert_eq!(add["tenant"], json!("default_tenant"));
    assert_eq!(add["records"], json!(3));
    assert_eq!(add["status"], json!(201));
    assert_eq!(add["outcome"], json!("ok"));
    assert_eq!(add["principal"], json!("anonymous"));
    assert_eq!(add["client_ip"], json!("203.0.113.7"));
    assert_eq!(events[2]["records"], json!(2));
    assert_eq!(events[3]["outcome"], json!("error"));
    assert_eq!(events[3]["status"], json!(400));
    assert!(events
        .iter()
        .all(|e| e["request_id"].as_str().is_some_and(|s| s.len() == 32)));
}

/// The complete whole-folder snapshots the server lists: (name, created_at).
async fn listed_snapshots(client: &reqwest::Client, base: &str) -> Vec<(String, u64)> {
    let list = get_json(client, &format!("{base}/api/v2/admin/snapshots")).await;
    list["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .filter(|s| s.get("collection").is_none())
        .map(|s| {
            (
                s["name"].as_str().expect("name").to_string(),
                s["created_at"].as_u64().expect("created_at"),
            )
        })
        .collect()
}

/// A first start with `--snapshot-every` and no snapshot takes one right away; a restart
/// reports the existing snapshot's time in the gauge and waits for `every` after it instead of
/// snapshotting again (or resetting the stale-snapshot alert to 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_snapshots_continue_from_the_newest_across_restarts() {
    const LAST_SUCCESS: &str = "vectord_snapshot_last_success_timestamp_seconds";
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let every = ["--snapshot-every", "24h"];
    let client = reqwest::Client::new();

    let server = ready_server(&client, &data, &every).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let list = listed_snapshots(&client, &server.base).await;
        if let [one] = list.as_slice() {
            break one.clone();
        }
        assert!(list.is_empty(), "more than one snapshot: {list:?}");
        assert!(Instant::now() < deadline, "no snapshot at startup");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The gauge is set after the snapshot is listed; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&client, &server.base, LAST_SUCCESS).await < first.1 as f64 {
        assert!(
            Instant::now() < deadline,
            "gauge not set after the snapshot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A newer snapshot of one collection is not a backup of the folder: after a restart it
    // must neither set the gauge nor put off the schedule.
    create_collection(&client, &server.base, "one").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    post_snapshot(&client, &server.base, Some("one")).await;
    assert!(server.terminate(Duration::from_secs(30)).success());

    for extra in [every.to_vec(), Vec::new()] {
        let server = ready_server(&client, &data, &extra).await;
        assert_eq!(
            metric(&client, &server.base, LAST_SUCCESS).await,
            first.1 as f64,
            "the gauge starts from the snapshot on disk ({extra:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            listed_snapshots(&client, &server.base).await,
            vec![first.clone()],
            "a restart within the interval takes no new snapshot ({extra:?})"
        );
        assert!(server.terminate(Duration::from_secs(30)).success());
    }
}

/// A request whose body never arrives would hold a graceful shutdown for the whole body read
/// timeout (60 s by default, past fly.toml's kill_timeout); the drain deadline cuts it short
/// and the server still flushes and exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_waiting_for_a_stuck_request_at_the_drain_deadline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let extra = [
        "--shutdown-drain-secs",
        "1",
        "--body-read-timeout-secs",
        "120",
    ];
    let client = reqwest::Client::new();
    let server = ready_server(&client, &tmp.path().join("data"), &extra).await;
    let id = create_collection(&client, &server.base, "kept").await;
    let r = client
        .post(format!("{}{DB}/collections/{id}/add", server.base))
        .json(&json!({"ids": ["a"], "embeddings": [[1.0, 2.0]]}))
        .send()
        .await
        .expect("add");
    assert_eq!(r.status().as_u16(), 201);

    // Headers and the first byte of a 100-byte body, then nothing.
    let mut stuck = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    write!(
        stuck,
        "POST {DB}/collections/{id}/add HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    )
    .expect("send headers");
    stuck.flush().expect("flush");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let status = server.terminate(Duration::from_secs(20));
    assert!(
        status.success(),
        "clean exit after the deadline: {status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?} with a 1 s drain",
        started.elapsed()
    );
    drop(stuck);

    // The acknowledged write survived.
    let server = ready_server(&client, &tmp.path().join("data"), &[]).await;
    let n = get_json(
        &client,
        &format!("{}{DB}/collections/{id}/count", server.base),
    )
    .await;
    assert_eq!(n, json!(1));
    assert!(server.terminate(Duration::from_secs(30)).success());
}

/// Files under `dir` containing `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("list").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .map(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
                .unwrap_or(false)
            {
                out.push(path);
            }
        }
    }
    out
}

/// The operator flow for one collection: snapshot it over HTTP, delete and purge records over
/// HTTP (their text leaves the collection's files while the server runs), purge offline with
/// `vectord compact`, then put the snapshot back with `vectord restore` (which needs --force
/// because the collection exists) without touching the other collection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_collection_snapshot_purge_and_cli_restore() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let client = reqwest::Client::new();
    let server = ready_server(&client, &data, &[]).await;
    let base = server.base.clone();
    let phi = create_collection(&client, &base, "phi").await;
    let other = create_collection(&client, &base, "other").await;
    let add = |coll: &str, prefix: &str, n: u64| {
        let body = json!({
            "ids": (0..n).map(|i| format!("{prefix}-{i:03}")).collect::<Vec<_>>(),
            "embeddings": (0..n).map(|i| vector(3, i)).collect::<Vec<_>>(),
            "documents": (0..n).map(|i| format!("{prefix} chart note {i:03} qjz")).collect::<Vec<_>>(),
        });
        client
            .post(format!("{base}{DB}/collections/{coll}/add"))
            .json(&body)
            .send()
    };
    assert_eq!(
        add(&phi, "gone", 30).await.expect("add").status().as_u16(),
        201
    );
    assert_eq!(
        add(&phi, "kept", 30).await.expect("add").status().as_u16(),
        201
    );
    assert_eq!(
        add(&other, "side", 10)
            .await
            .expect("add")
            .status()
            .as_u16(),
        201
    );

    let summary = post_snapshot(&client, &base, Some("phi")).await;
    assert_eq!(summary["collection"], json!(phi));
    assert_eq!(summary["collections"], json!(1));
    let name = summary["name"].as_str().expect("name").to_string();
    for (body, status) in [
        (json!({"collection": "nope"}), 404),
        (json!({"tenant": "default_tenant"}), 400),
        (json!({"colection": "phi"}), 400),
    ] {
        let r = client
            .post(format!("{base}/api/v2/admin/snapshots"))
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), status, "{body}");
    }

    let r = client
        .post(format!("{base}{DB}/collections/{phi}/delete"))
        .json(&json!({"ids": (0..30).map(|i| format!("gone-{i:03}")).collect::<Vec<_>>()}))
        .send()
        .await
        .expect("delete");
    assert!(r.status().is_success());
    let coll_dir = data.join("collections").join(&phi);
    assert!(!files_containing(&coll_dir, "gone chart note 007 qjz").is_empty());
    let r = client
        .post(format!("{base}/api/v2/admin/collections/{phi}/compact"))
        .send()
        .await
        .expect("compact");
    assert_eq!(r.status().as_u16(), 200);
    let report: Value = r.json().await.expect("json");
    assert_eq!(report["collection"], json!(phi));
    assert_eq!(report["name"], json!("phi"), "{report}");
    assert_eq!(report["compacted"], json!(true), "{report}");
    for needle in ["gone chart note 007 qjz", "gone-029"] {
        let hits = files_containing(&coll_dir, needle);
        assert!(hits.is_empty(), "{needle} still in {hits:?}");
    }
    assert!(!files_containing(&coll_dir, "kept chart note 007 qjz").is_empty());
    for (id, status) in [(uuid_nil(), 404), ("not-a-uuid".to_string(), 400)] {
        let r = client
            .post(format!("{base}/api/v2/admin/collections/{id}/compact"))
            .send()
            .await
            .expect("compact");
        assert_eq!(r.status().as_u16(), status);
    }
    assert!(server.terminate(Duration::from_secs(30)).success());

    let out = succeeded(
        Command::new(BIN)
            .args(["compact", "--collection", "phi", "--path"])
            .arg(&data),
    );
    // Logs share stdout (JSON lines when it is not a terminal): pick the report out.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line: Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("dropped_rows").is_some())
        .unwrap_or_else(|| panic!("no purge report in {stdout}"));
    assert_eq!(line["name"], json!("phi"));

    let snap = data.join("snapshots").join(&name);
    let restore = || {
        let mut cmd = Command::new(BIN);
        cmd.args(["restore", "--from"])
            .arg(&snap)
            .arg("--path")
            .arg(&data);
        cmd
    };
    let refused = restore().output().expect("restore");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    succeeded(restore().arg("--force"));

    let server = ready_server(&client, &data, &[]).await;
    let count = |coll: &str| {
        let url = format!("{}{DB}/collections/{coll}/count", server.base);
        let client = &client;
        async move { get_json(client, &url).await }
    };
    assert_eq!(
        count(&phi).await,
        json!(60),
        "the snapshot's records are back"
    );
    assert_eq!(
        count(&other).await,
        json!(10),
        "the other collection is untouched"
    );
    assert!(server.terminate(Duration::from_secs(30)).success());
}

fn uuid_nil() -> String {
    "00000000-0000-0000-0000-000000000000".to_string()
}

/// Without `--audit-log` the server log is the audit trail: a quieter `RUST_LOG` must not drop
/// the audit events (the `audit` target stays at info unless `RUST_LOG` names it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_survive_a_quiet_log_level() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("server.log");
    let client = reqwest::Client::new();
    let mut server = Server::start_logged(&tmp.path().join("data"), &[], &log, "warn");
    server.ready_at(&client, "/api/v2/healthcheck").await;
    let base = server.base.clone();
    let id = create_collection(&client, &base, "quiet").await;
    let body = json!({"ids": ["a", "b"], "embeddings": [[0.5, 1.0], [1.0, 0.5]]});
    post_ok(&client, &base, &id, "add", &body).await;
    assert!(server.terminate(Duration::from_secs(30)).success());
    let text = std::fs::read_to_string(&log).expect("server log");
    let added = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|v| {
            v["target"] == json!("audit")
                && v["fields"]["operation"] == json!("add")
                && v["fields"]["records"] == json!(2)
        });
    assert!(added, "no audit event for the add at RUST_LOG=warn: {text}");
    // RUST_LOG=warn still applies to everything else (the startup lines are at info).
    let other_info: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|v| v["level"] == json!("INFO") && v["target"] != json!("audit"))
        })
        .collect();
    assert!(
        other_info.is_empty(),
        "info lines at RUST_LOG=warn: {other_info:?}"
    );
}

/// A snapshot that fails (here: the snapshot folder is a file) is an error answer, counted in
/// `vectord_snapshot_failures_total`, and leaves the last-success gauge alone, so the "snapshot
/// older than 26 h" alert keeps counting from the last good one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_snapshot_is_counted_and_does_not_look_fresh() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let blocker = tmp.path().join("not-a-folder");
    std::fs::write(&blocker, b"x").expect("file");
    let client = reqwest::Client::new();
    let dir = blocker.display().to_string();
    let server = ready_server(&client, &tmp.path().join("data"), &["--snapshot-dir", &dir]).await;
    let base = server.base.clone();
    let r = client
        .post(format!("{base}/api/v2/admin/snapshots"))
        .send()
        .await
        .expect("snapshot");
    assert!(r.status().is_server_error(), "{}", r.status());
    let body: Value = r.json().await.expect("Chroma error JSON");
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{body}"
    );
    assert_eq!(
        metric(&client, &base, "vectord_snapshot_failures_total").await,
        1.0
    );
    assert_eq!(
        metric(
            &client,
            &base,
            "vectord_snapshot_last_success_timestamp_seconds"
        )
        .await,
        0.0
    );
}
