//! The real `vectord` binary, and the servers tests run beside it (Chroma, moto), as child
//! processes: one copy of the port, process, readiness, `/metrics` and prerequisite helpers for
//! every test that drives them.

use std::ffi::{OsStr, OsString};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The binary Cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_vectord");
/// The default database's route prefix.
pub const DB: &str = "/api/v2/tenants/default_tenant/databases/default_database";

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process (moto, Chroma, a bare `vectord`) killed when the test ends or panics.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A test's prerequisite (a program, a permission) is missing: under CI (`CI` set and non-empty)
/// that fails the test with `ci_message`, so CI cannot pass without running it; elsewhere
/// `skip_message` goes to stderr and the caller returns early, skipping the test.
pub fn missing_prerequisite(ci_message: &str, skip_message: &str) {
    assert!(
        !std::env::var("CI").is_ok_and(|v| !v.is_empty()),
        "{ci_message}"
    );
    eprintln!("{skip_message}");
}

/// An external program: the path in `env_var`, else `on_path` if `<on_path> --help` runs; when
/// neither, [`missing_prerequisite`] with the two messages and `None`.
pub fn external_program(
    env_var: &str,
    on_path: Option<&str>,
    ci_message: &str,
    skip_message: &str,
) -> Option<OsString> {
    if let Some(p) = std::env::var_os(env_var) {
        return Some(p);
    }
    if let Some(name) = on_path {
        let runs = Command::new(name)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if runs {
            return Some(name.into());
        }
    }
    missing_prerequisite(ci_message, skip_message);
    None
}

/// The real Chroma 1.5.9 `chroma` executable vectord is compared with (`VECTORD_TEST_CHROMA_BIN`;
/// tests/run.sh installs it into its own venv).
pub fn chroma_bin() -> Option<OsString> {
    external_program(
        "VECTORD_TEST_CHROMA_BIN",
        None,
        "VECTORD_TEST_CHROMA_BIN is not set under CI: tests/run.sh installs Chroma 1.5.9",
        "SKIPPED: set VECTORD_TEST_CHROMA_BIN to a `chroma` executable (tests/run.sh does)",
    )
}

/// `chroma run` on loopback over `dir`, quiet and without telemetry; returns it and its base URL
/// (not yet ready: see [`wait_ok`]).
pub fn start_chroma(chroma: &OsStr, dir: &Path) -> (Proc, String) {
    let port = free_port();
    let child = Command::new(chroma)
        .args(["run", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--path")
        .arg(dir)
        .env("ANONYMIZED_TELEMETRY", "False")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chroma");
    (Proc(child), format!("http://127.0.0.1:{port}"))
}

/// Polls GET `url` until it answers 2xx and returns that answer; panics after `within`.
pub async fn wait_ok(client: &reqwest::Client, url: &str, within: Duration) -> reqwest::Response {
    poll_ok(client, url, within, || None).await
}

/// [`wait_ok`], also panicking as soon as `exited` reports the serving process gone.
async fn poll_ok(
    client: &reqwest::Client,
    url: &str,
    within: Duration,
    mut exited: impl FnMut() -> Option<ExitStatus>,
) -> reqwest::Response {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return r;
            }
        }
        if let Some(status) = exited() {
            panic!("vectord exited before {url} answered: {status}");
        }
        assert!(Instant::now() < deadline, "{url} not up within {within:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// GETs `url` and returns its JSON body.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// The text of `base`'s `/metrics`.
pub async fn metrics_text(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of the unlabelled metric `name` on `base`'s `/metrics`.
pub async fn metric(client: &reqwest::Client, base: &str, name: &str) -> f64 {
    metrics_text(client, base)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not exported"))
}

/// Runs `cmd` (a `vectord` CLI command) and asserts it succeeded, its stderr in the message.
pub fn succeeded(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run vectord");
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A `vectord run` child process, killed if the test panics.
pub struct Server {
    child: Option<Child>,
    /// The port it listens on.
    pub port: u16,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Server {
    /// Starts `vectord run` on loopback over `data` with `extra` flags; stderr goes to `log` when
    /// given (so a test can read what the server logged), else to the test's stderr.
    pub fn start(data: &Path, extra: &[&str], log: Option<&Path>) -> Server {
        Self::start_env(data, extra, &[], log)
    }

    /// As [`Server::start`], with `env` set for the server too (e.g. S3 credentials).
    pub fn start_env(
        data: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Server {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--path")
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null());
        Self::spawn(cmd, port, log)
    }

    /// Runs `vectord` with exactly `args` (e.g. the Dockerfile's CMD), which must make it listen
    /// on `port`.
    pub fn start_args(args: &[String], port: u16) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(args).env("RUST_LOG", "warn").stdout(Stdio::null());
        Self::spawn(cmd, port, None)
    }

    /// As [`Server::start`], with the server's log lines (written to stdout) at `rust_log`
    /// appended to `log` too, so a test can count what the server did (flushes, compactions).
    pub fn start_logged(data: &Path, extra: &[&str], log: &Path, rust_log: &str) -> Server {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("server log file");
        cmd.args(["run", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--path")
            .arg(data)
            .args(extra)
            .env("RUST_LOG", rust_log)
            .stdout(out);
        Self::spawn(cmd, port, Some(log))
    }

    fn spawn(mut cmd: Command, port: u16, log: Option<&Path>) -> Server {
        match log {
            Some(p) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .expect("server log file");
                cmd.stderr(f);
            }
            None => {
                cmd.stderr(Stdio::inherit());
            }
        }
        Server {
            child: Some(cmd.spawn().expect("spawn vectord")),
            port,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits until the heartbeat answers; panics if the process exits or 60 s pass.
    pub async fn ready(&mut self, client: &reqwest::Client) {
        self.ready_at(client, "/api/v2/heartbeat").await;
    }

    /// Waits until GET `path` answers 2xx (e.g. the readiness check) and returns its JSON body
    /// (`Null` if none); panics if the process exits or 60 s pass.
    pub async fn ready_at(&mut self, client: &reqwest::Client, path: &str) -> Value {
        let url = format!("{}{path}", self.base);
        let child = &mut self.child;
        let exited = || child.as_mut().and_then(|c| c.try_wait().ok().flatten());
        let r = poll_ok(client, &url, Duration::from_secs(60), exited).await;
        r.json().await.unwrap_or(Value::Null)
    }

    /// `kill -9` and reap.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the process to exit (a clean shutdown).
    pub fn stop(mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = sigterm(&c); // one that already exited cannot be signalled: wait() says how it ended
        c.wait().expect("wait for vectord")
    }

    /// SIGTERM and wait for the process to exit, within `limit` (a shutdown deadline under test).
    pub fn terminate(mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        assert!(sigterm(&child), "kill -TERM {}", child.id());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("vectord did not stop within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself (e.g. it refused to start).
    pub fn wait_exit(mut self) -> ExitStatus {
        self.child.take().expect("running").wait().expect("wait")
    }
}

/// Sends SIGTERM (what Docker and Fly send to stop a machine); `false` if it could not be sent.
fn sigterm(child: &Child) -> bool {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Creates (or gets) collection `name` and returns its id.
pub async fn create_collection(client: &reqwest::Client, base: &str, name: &str) -> String {
    let r = client
        .post(format!("{base}{DB}/collections"))
        .json(&json!({ "name": name, "get_or_create": true }))
        .send()
        .await
        .expect("create collection");
    let status = r.status();
    let body: Value = r.json().await.expect("json");
    assert!(status.is_success(), "create {name}: {status} {body}");
    body["id"].as_str().expect("id").to_string()
}

/// POSTs `body` to `<base><DB>/collections/<id>/<op>`; returns status and JSON body.
pub async fn post(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    op: &str,
    body: &Value,
) -> reqwest::Result<(u16, Value)> {
    let r = client
        .post(format!("{base}{DB}/collections/{id}/{op}"))
        .json(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// [`post`] that must succeed: asserts a 2xx answer and returns its body.
pub async fn post_ok(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    op: &str,
    body: &Value,
) -> Value {
    let (status, body) = post(client, base, id, op, body)
        .await
        .unwrap_or_else(|e| panic!("{op}: {e}"));
    assert!((200..300).contains(&status), "{op}: {status} {body}");
    body
}

/// Takes a snapshot over HTTP, of the collection named `collection` or else of the whole folder;
/// asserts it was made (201) and returns the summary.
pub async fn post_snapshot(
    client: &reqwest::Client,
    base: &str,
    collection: Option<&str>,
) -> Value {
    let req = client.post(format!("{base}/api/v2/admin/snapshots"));
    let req = match collection {
        Some(name) => req.json(&json!({ "collection": name })),
        None => req,
    };
    let r = req.send().await.expect("snapshot");
    assert_eq!(r.status().as_u16(), 201);
    r.json().await.expect("json")
}

/// The seed of a randomized crash test: `VECTORD_CRASH_SEED` replays a run, else a fresh one
/// from the clock (print it, so a failure can be replayed).
pub fn crash_seed() -> u64 {
    std::env::var("VECTORD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        })
}

/// A deterministic vector for (`id`, `version`), so a reader can check it bit for bit.
pub fn vector_for(id: &str, version: u64, dim: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ version.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in id.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    (0..dim)
        .map(|_| {
            h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = h;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}
