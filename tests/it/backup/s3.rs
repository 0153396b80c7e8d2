//! Snapshots copied to a real S3-compatible server (moto, started here): a running vectord
//! uploads each snapshot (manifest last) and prunes the bucket to `--snapshot-keep`; `vectord
//! snapshot list --s3` sees the survivors; `vectord restore --from-s3` downloads, verifies and
//! restores a folder whose records equal the server's; a corrupted object makes restore refuse;
//! an unreachable bucket fails the upload visibly without losing the local snapshot.
//!
//! Needs `moto_server` (PyPI `moto[server]`): `VECTORD_TEST_MOTO_BIN`, or on `PATH`. Without it
//! the test is skipped, except under CI (`CI` set and non-empty) where it fails.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::server::{
    create_collection, external_program, free_port, get_json, metric, post_ok, post_snapshot,
    succeeded, wait_ok, Proc, Server, BIN,
};
use object_store::ObjectStoreExt;
use serde_json::{json, Value};

const BUCKET: &str = "vectord-backups";

/// The S3 stand-in this test uploads to (see the module comment for the CI rule).
fn moto_bin() -> Option<OsString> {
    external_program(
        "VECTORD_TEST_MOTO_BIN",
        Some("moto_server"),
        "moto_server is required under CI (set VECTORD_TEST_MOTO_BIN; tests/run.sh installs it)",
        "skipping: no moto_server (set VECTORD_TEST_MOTO_BIN)",
    )
}

/// Credentials moto accepts (any), given to every vectord child through the standard variables.
const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
];

/// A `vectord` CLI command talking to the bucket at `endpoint`.
fn vectord(args: &[&str], endpoint: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .args(["--snapshot-s3-endpoint", endpoint])
        .envs(AWS_ENV)
        .env("RUST_LOG", "warn");
    cmd
}

/// `vectord run` over `data` with `extra` flags and S3 credentials, once its readiness check
/// answers.
async fn serve(client: &reqwest::Client, data: &Path, extra: &[&str]) -> Server {
    let mut server = Server::start_env(data, extra, &AWS_ENV, None);
    server.ready_at(client, "/api/v2/healthcheck").await;
    server
}

fn vector(i: u64) -> Vec<f32> {
    (0..8).map(|d| ((i * 7 + d) % 97) as f32 / 97.0).collect()
}

async fn upsert(client: &reqwest::Client, base: &str, id: &str, range: std::ops::Range<u64>) {
    let body = json!({
        "ids": range.clone().map(|i| format!("r{i:05}")).collect::<Vec<_>>(),
        "embeddings": range.clone().map(vector).collect::<Vec<_>>(),
        "documents": range.clone().map(|i| format!("passage {i}")).collect::<Vec<_>>(),
        "metadatas": range.clone().map(|i| json!({"i": i})).collect::<Vec<_>>(),
    });
    post_ok(client, base, id, "upsert", &body).await;
}

async fn all_records(client: &reqwest::Client, base: &str, id: &str) -> Value {
    let include = json!({"include": ["embeddings", "documents", "metadatas"]});
    post_ok(client, base, id, "get", &include).await
}

/// A get answer as id -> (embedding, document, metadata).
fn by_id(got: &Value) -> std::collections::BTreeMap<String, (Value, Value, Value)> {
    let col = |k: &str| got[k].as_array().cloned().unwrap_or_default();
    let (ids, embs, docs, metas) = (
        col("ids"),
        col("embeddings"),
        col("documents"),
        col("metadatas"),
    );
    ids.iter()
        .enumerate()
        .map(|(i, rid)| {
            (
                rid.as_str().expect("id").to_string(),
                (embs[i].clone(), docs[i].clone(), metas[i].clone()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_round_trip_through_a_bucket() {
    let Some(moto) = moto_bin() else { return };
    let moto_port = free_port();
    let _moto = Proc(
        Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server"),
    );
    let endpoint = format!("http://127.0.0.1:{moto_port}");
    let client = reqwest::Client::new();
    wait_ok(
        &client,
        &format!("{endpoint}/moto-api/"),
        Duration::from_secs(60),
    )
    .await;
    // moto (like S3) needs the bucket to exist; it does not check signatures.
    let r = client
        .put(format!("{endpoint}/{BUCKET}"))
        .send()
        .await
        .expect("create bucket");
    assert!(r.status().is_success(), "create bucket: {}", r.status());
    let url = format!("s3://{BUCKET}/prod/vectord");

    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let server = serve(
        &client,
        &data,
        &[
            "--snapshot-keep",
            "2",
            "--snapshot-s3-url",
            &url,
            "--snapshot-s3-endpoint",
            &endpoint,
        ],
    )
    .await;
    let base = server.base.clone();
    let id = create_collection(&client, &base, "policies").await;

    // Three snapshots with writes between them; keep = 2 prunes the first remotely.
    let mut names = Vec::new();
    for round in 0..3u64 {
        upsert(&client, &base, &id, round * 300..(round + 1) * 300).await;
        let s = post_snapshot(&client, &base, None).await;
        assert_eq!(s["s3"]["uploaded"], json!(true), "{s}");
        assert!(s["s3"].get("error").is_none(), "{s}");
        assert_eq!(s["s3"]["url"], json!(url));
        assert!(s["s3"]["bytes"].as_u64().unwrap_or(0) > s["total_bytes"].as_u64().unwrap_or(0));
        names.push(s["name"].as_str().expect("name").to_string());
        if round == 2 {
            assert_eq!(s["s3"]["pruned"], json!([names[0]]), "{s}");
        }
    }
    assert_eq!(
        metric(&client, &base, "vectord_snapshot_upload_failures_total").await,
        0.0
    );
    assert!(
        metric(
            &client,
            &base,
            "vectord_snapshot_upload_last_success_timestamp_seconds"
        )
        .await
            > 1.0e9
    );
    let listed = get_json(&client, &format!("{base}/api/v2/admin/snapshots")).await;
    let remote: Vec<&str> = listed["s3"]["snapshots"]
        .as_array()
        .expect("remote list")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(remote, [names[1].as_str(), names[2].as_str()]);
    let expected = all_records(&client, &base, &id).await;
    assert_eq!(expected["ids"].as_array().map(Vec::len), Some(900));

    // The CLI sees the same two complete snapshots in the bucket.
    let out = succeeded(&mut vectord(&["snapshot", "list", "--s3", &url], &endpoint));
    let cli_list: Value = serde_json::from_slice(&out.stdout).expect("list json");
    let cli_names: Vec<&str> = cli_list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(cli_names, remote);

    // Restore the newest from the bucket into a new folder; every record matches.
    let restored = tmp.path().join("restored");
    let target = restored.to_str().expect("utf-8 path");
    let entries = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let beside = entries(tmp.path());
    let out = succeeded(&mut vectord(
        &["restore", "--from-s3", &url, "--path", target],
        &endpoint,
    ));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&names[2]));
    // The download went inside the target (on Fly the target is the volume's mount point, and
    // beside it is another file system) and is gone.
    let mut want = beside.clone();
    want.push("restored".into());
    want.sort();
    assert_eq!(entries(tmp.path()), want, "restore wrote beside its target");
    assert_eq!(entries(&restored), ["LOCK", "catalog.json", "collections"]);
    let second = serve(&client, &restored, &[]).await;
    let got = all_records(&client, &second.base, &id).await;
    assert_eq!(got, expected, "restored records differ");
    drop(second);

    // Corrupt one object of the newest remote snapshot (same size, one byte changed): restore
    // must refuse and leave no data folder.
    // Signed requests through object_store (moto refuses anonymous reads, like S3).
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .expect("store");
    let key = object_store::path::Path::from(format!("prod/vectord/{}/catalog.json", names[2]));
    let mut bytes = store
        .get(&key)
        .await
        .expect("get object")
        .bytes()
        .await
        .expect("bytes")
        .to_vec();
    assert!(!bytes.is_empty());
    bytes[0] ^= 0x20;
    store
        .put(&key, object_store::PutPayload::from(bytes))
        .await
        .expect("put object");
    let bad = tmp.path().join("from-corrupt");
    let out = vectord(
        &[
            "restore",
            "--from-s3",
            &url,
            "--path",
            bad.to_str().expect("utf-8"),
        ],
        &endpoint,
    )
    .output()
    .expect("run vectord");
    assert!(!out.status.success(), "restore accepted a corrupted object");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(!bad.exists(), "a refused restore created the data folder");

    // The older remote snapshot is intact and restores by name with --force over the folder
    // restored above, as an operator replaces live data: the folder then holds exactly the
    // older snapshot's records, and the data it replaced is kept inside it.
    succeeded(&mut vectord(
        &[
            "restore",
            "--from-s3",
            &url,
            "--snapshot",
            &names[1],
            "--path",
            target,
            "--force",
        ],
        &endpoint,
    ));
    let now = entries(&restored);
    let kept: Vec<&String> = now
        .iter()
        .filter(|n| n.starts_with(".before-restore-"))
        .collect();
    assert_eq!(kept.len(), 1, "{now:?}");
    assert!(
        !now.iter().any(|n| n.starts_with(".restore")),
        "download or staging left behind: {now:?}"
    );
    let third = serve(&client, &restored, &[]).await;
    let older = by_id(&all_records(&client, &third.base, &id).await);
    drop(third);
    let newest = by_id(&expected);
    assert_eq!(older.len(), 600, "the records of the second snapshot");
    for (rid, record) in &older {
        assert_eq!(Some(record), newest.get(rid), "{rid} differs");
    }
    drop(server);

    // A bucket that does not exist: the snapshot is taken locally, the upload failure is
    // reported in the answer and counted.
    let data3 = tmp.path().join("data3");
    let third = serve(
        &client,
        &data3,
        &[
            "--snapshot-s3-url",
            "s3://no-such-bucket/x",
            "--snapshot-s3-endpoint",
            &endpoint,
        ],
    )
    .await;
    let base3 = &third.base;
    let s = post_snapshot(&client, base3, None).await;
    assert_eq!(s["s3"]["uploaded"], json!(false), "{s}");
    assert!(s["s3"]["error"].is_string(), "{s}");
    let name = s["name"].as_str().expect("name");
    assert!(data3
        .join("snapshots")
        .join(name)
        .join("SNAPSHOT.json")
        .exists());
    assert_eq!(
        metric(&client, base3, "vectord_snapshot_upload_failures_total").await,
        1.0
    );
}
