//! The real `vectord` binary as a child process, for tests that kill it, fill its disk or damage
//! its files.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
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

/// A `vectord run` child process, killed if the test panics.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Server {
    /// Starts `vectord run` on loopback over `data` with `extra` flags; stderr goes to `log` when
    /// given (so a test can read what the server logged), else to the test's stderr.
    pub fn start(data: &Path, extra: &[&str], log: Option<&Path>) -> Server {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--path")
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        Self::spawn(cmd, port, log)
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
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits until the heartbeat answers; panics if the process exits or 60 s pass.
    pub async fn ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client
                .get(format!("{}/api/v2/heartbeat", self.base))
                .send()
                .await
            {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("vectord exited before it was ready: {status}");
            }
            assert!(Instant::now() < deadline, "vectord not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9` and reap.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the process to exit (a clean shutdown).
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        c.wait().expect("wait for vectord")
    }

    /// Waits for the process to exit by itself (e.g. it refused to start).
    pub fn wait_exit(mut self) -> std::process::ExitStatus {
        self.child.take().expect("running").wait().expect("wait")
    }
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
