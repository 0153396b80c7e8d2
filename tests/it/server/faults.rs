//! The real `vectord` server under a full disk and with damaged files.
//!
//! - `disk_full_fails_writes_keeps_reads_and_recovers`: the data folder lives on a tmpfs of a few
//!   MB that the test mounts (we run as root; under CI (`CI` set and non-empty) a failed mount fails the test).
//!   Writes fill it until they fail with 507 and Chroma's error JSON; reads keep working and
//!   return what was stored; after the tmpfs is remounted bigger, writes resume without a
//!   restart; a shutdown flush that hits the full disk leaves the WAL in charge.
//! - `damaged_files_are_reported_and_others_serve`: for every file kind (WAL, vectors.bin,
//!   codes.bin, graph.bin, records.bin, tombstones, MANIFEST, catalog.json), one flipped byte and
//!   one truncation, each on a fresh copy of a folder with two collections: the server starts,
//!   the damaged collection is reported with its file and offset (error responses, the
//!   healthcheck's `failed_collections`), the other collection serves exactly what was written.
//! - `whole_folder_restore_into_a_mount_point`: the data folder is a tmpfs mount point, as `/data`
//!   is on Fly: it cannot be renamed and beside it is another file system. `vectord restore
//!   --force` still replaces its data, swapping inside it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::server::{
    create_collection, get_json, metrics_text, missing_prerequisite, post, post_ok, succeeded,
    vector_for, Server, BIN,
};
use serde_json::{json, Value};

const DIM: usize = 32;

fn records(from: usize, n: usize, doc_bytes: usize) -> Value {
    let ids: Vec<String> = (from..from + n).map(|i| format!("r{i}")).collect();
    json!({
        "ids": ids,
        "embeddings": ids.iter().map(|id| vector_for(id, 0, DIM)).collect::<Vec<_>>(),
        "documents": ids.iter().map(|id| format!("{id} {}", "x".repeat(doc_bytes))).collect::<Vec<_>>(),
        "metadatas": (from..from + n).map(|i| json!({"i": i as i64})).collect::<Vec<_>>(),
    })
}

/// Fetches all of a collection and checks it holds exactly ids r0..rN (minus `deleted`) with the
/// vectors and documents written. Returns the count.
async fn check_exact(
    client: &reqwest::Client,
    base: &str,
    coll: &str,
    expect: &[usize],
    doc_bytes: usize,
) {
    let body = post_ok(
        client,
        base,
        coll,
        "get",
        &json!({"include": ["embeddings", "documents", "metadatas"]}),
    )
    .await;
    let mut got: Vec<(usize, usize)> = body["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .enumerate()
        .map(|(k, id)| (id.as_str().expect("id")[1..].parse().expect("rN"), k))
        .collect();
    got.sort_unstable();
    let ids: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids, expect, "stored ids differ");
    for (i, k) in got {
        let id = format!("r{i}");
        let emb: Vec<f32> = body["embeddings"][k]
            .as_array()
            .expect("embedding")
            .iter()
            .map(|x| x.as_f64().expect("number") as f32)
            .collect();
        let want = vector_for(&id, 0, DIM);
        assert!(
            emb.len() == want.len()
                && emb
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{id}: vector changed"
        );
        assert_eq!(
            body["documents"][k].as_str(),
            Some(format!("{id} {}", "x".repeat(doc_bytes)).as_str()),
            "{id}: document changed"
        );
    }
}

/// Creates `dir` and mounts a tmpfs of `size` on it, unmounted when the guard drops; `None`
/// when mounting is not permitted outside CI.
fn mount_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    std::fs::create_dir_all(dir).expect("mount point");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        missing_prerequisite(
            "mounting a tmpfs failed; the disk-full and mount-point tests need root (CAP_SYS_ADMIN) under CI",
            "SKIPPED: cannot mount a tmpfs here (not root?); the test did not run",
        );
        return None;
    }
    Some(Mount(dir.to_path_buf()))
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_fails_writes_keeps_reads_and_recovers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("mnt");
    let Some(_mount) = mount_tmpfs(&mnt, "6m") else {
        return;
    };
    let data = mnt.join("data");
    let client = reqwest::Client::new();
    let mut server = Server::start(&data, &[], None);
    server.ready(&client).await;
    let base = server.base.clone();
    let keep = create_collection(&client, &base, "keep").await;
    let fill = create_collection(&client, &base, "fill").await;
    post_ok(&client, &base, &keep, "add", &records(0, 50, 100)).await;
    let keep_ids: Vec<usize> = (0..50).collect();

    // Fill the disk through one collection until a write is refused.
    let mut stored = 0;
    let mut refusal = Value::Null;
    for b in 0..10_000 {
        let (status, body) = post(&client, &base, &fill, "add", &records(b * 20, 20, 2000))
            .await
            .expect("add");
        if status == 201 {
            stored += 20;
            continue;
        }
        assert_eq!(status, 507, "a full disk is a 507, not {status}: {body}");
        refusal = body;
        break;
    }
    assert!(stored > 0 && !refusal.is_null(), "the disk never filled");
    assert_eq!(refusal["error"], "InternalError", "{refusal}");
    let msg = refusal["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("no space left on device") && msg.contains("free disk space"),
        "unclear message: {msg}"
    );
    // More writes, to either collection and to the catalog, keep being refused cleanly.
    for _ in 0..3 {
        let (status, body) = post(&client, &base, &keep, "upsert", &records(1000, 20, 4000))
            .await
            .expect("upsert");
        assert_eq!(status, 507, "{body}");
    }
    // Reads keep working and return exactly what was stored.
    let fill_ids: Vec<usize> = (0..stored).collect();
    check_exact(&client, &base, &keep, &keep_ids, 100).await;
    check_exact(&client, &base, &fill, &fill_ids, 2000).await;
    let body = post_ok(
        &client,
        &base,
        &keep,
        "query",
        &json!({"query_embeddings": [vector_for("r7", 0, DIM)], "n_results": 1}),
    )
    .await;
    assert_eq!(body["ids"][0][0], "r7");

    // Space returns: writes resume in the same process.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&mnt)
        .status()
        .expect("remount");
    assert!(grown.success(), "remount bigger");
    let (status, body) = post(&client, &base, &fill, "add", &records(stored, 20, 2000))
        .await
        .expect("add");
    assert_eq!(
        status, 201,
        "writes did not resume after space returned: {body}"
    );
    stored += 20;
    post_ok(&client, &base, &keep, "add", &records(50, 10, 100)).await;
    let keep_ids: Vec<usize> = (0..60).collect();
    let fill_ids: Vec<usize> = (0..stored).collect();
    check_exact(&client, &base, &fill, &fill_ids, 2000).await;

    // Shrink the disk back to full and stop: the shutdown flush fails for lack of space and
    // leaves everything in the WAL; the restart (with room again) has every row.
    let used_kb = String::from_utf8(
        Command::new("df")
            .args(["--output=used", "-k"])
            .arg(&mnt)
            .output()
            .expect("df")
            .stdout,
    )
    .expect("utf8");
    let used_kb: u64 = used_kb
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df used");
    let shrunk = Command::new("mount")
        .args(["-o", &format!("remount,size={}k", used_kb + 8)])
        .arg(&mnt)
        .status()
        .expect("remount");
    assert!(shrunk.success(), "remount to full");
    let status = server.stop();
    assert!(
        status.success(),
        "clean shutdown even when the flush fails: {status}"
    );
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&mnt)
        .status()
        .expect("remount");
    assert!(grown.success());
    let mut server = Server::start(&data, &[], None);
    server.ready(&client).await;
    let base = server.base.clone();
    check_exact(&client, &base, &keep, &keep_ids, 100).await;
    check_exact(&client, &base, &fill, &fill_ids, 2000).await;
    let health = healthcheck(&client, &base).await;
    assert!(health.get("failed_collections").is_none(), "{health}");
    server.stop();
    println!("disk full: {stored} rows stored on a 6 MB tmpfs before the first 507; writes resumed after remount");
}

// ---- corruption ------------------------------------------------------------------------------

const BAD_ROWS: usize = 300;

/// Builds a data folder with collections `bad` and `good`: `bad` has a flushed segment with a
/// graph, codes and tombstones, plus WAL records after it.
async fn build_corruption_base(data: &Path, client: &reqwest::Client) -> (String, String) {
    let mut s = Server::start(data, &[], None);
    s.ready(client).await;
    let bad = create_collection(client, &s.base, "bad").await;
    let good = create_collection(client, &s.base, "good").await;
    for c in [&bad, &good] {
        post_ok(client, &s.base, c, "add", &records(0, BAD_ROWS, 50)).await;
    }
    assert!(s.stop().success());
    // Second life: a delete on the flushed segment (tombstones at the next flush).
    let mut s = Server::start(data, &[], None);
    s.ready(client).await;
    post_ok(
        client,
        &s.base,
        &bad,
        "delete",
        &json!({"ids": ["r0", "r1", "r2"]}),
    )
    .await;
    post_ok(client, &s.base, &bad, "add", &records(BAD_ROWS, 10, 50)).await;
    assert!(s.stop().success());
    // Third life: rows that stay in the WAL (killed, so nothing flushes them).
    let mut s = Server::start(data, &[], None);
    s.ready(client).await;
    for k in 0..5 {
        post_ok(
            client,
            &s.base,
            &bad,
            "add",
            &records(BAD_ROWS + 10 + k, 1, 50),
        )
        .await;
    }
    s.kill9();
    (bad, good)
}

fn files_of_kind(coll_dir: &Path, kind: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![coll_dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let hit = match kind {
                "wal" => {
                    name.ends_with(".log")
                        && std::fs::metadata(&p).map(|m| m.len() > 16).unwrap_or(false)
                }
                "tombstones" => name.starts_with("tombstones-"),
                other => name == other,
            };
            if hit {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp")
        .success();
    assert!(ok, "cp -a");
}

async fn healthcheck(client: &reqwest::Client, base: &str) -> Value {
    get_json(client, &format!("{base}/api/v2/healthcheck")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_are_reported_and_others_serve() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base_data = tmp.path().join("base");
    let client = reqwest::Client::new();
    let (bad, good) = build_corruption_base(&base_data, &client).await;
    let good_ids: Vec<usize> = (0..BAD_ROWS).collect();
    let kinds = [
        "wal",
        "vectors.bin",
        "codes.bin",
        "graph.bin",
        "records.bin",
        "tombstones",
        "MANIFEST",
        "catalog.json",
    ];
    let mut cases = 0;
    for kind in kinds {
        for damage in ["flip", "truncate"] {
            let what = format!("{damage} {kind}");
            let data = tmp.path().join(format!("{kind}-{damage}"));
            copy_dir(&base_data, &data);
            let target = if kind == "catalog.json" {
                data.join("catalog.json")
            } else {
                let files = files_of_kind(&data.join("collections").join(&bad), kind);
                files
                    .first()
                    .cloned()
                    .unwrap_or_else(|| panic!("{what}: no such file"))
            };
            let mut bytes = std::fs::read(&target).expect("read target");
            let len = bytes.len();
            // A byte in the middle of the data (for the WAL: inside the first record, so valid
            // records follow it and it cannot pass for a torn tail).
            let at = if kind == "wal" { 16 + 20 } else { len / 2 };
            match damage {
                "flip" => bytes[at] ^= 0xff,
                _ => bytes.truncate(len / 2),
            }
            std::fs::write(&target, &bytes).expect("write target");
            let file_name = target
                .file_name()
                .and_then(|n| n.to_str())
                .expect("name")
                .to_string();
            let log = tmp.path().join(format!("{kind}-{damage}.log"));

            if kind == "catalog.json" {
                // Without its catalog the server cannot tell which collections exist; it refuses
                // to start (serving an empty catalog would look like data loss and the next
                // change would overwrite the file), naming the file and offset.
                let s = Server::start(&data, &[], Some(&log));
                let status = s.wait_exit();
                assert!(
                    !status.success(),
                    "{what}: the server started on a damaged catalog"
                );
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                assert!(
                    text.contains("catalog.json") && text.contains("byte offset"),
                    "{what}: the refusal does not name the file and offset: {text}"
                );
                assert!(!text.contains("panicked"), "{what}: panic: {text}");
                cases += 1;
                continue;
            }

            let mut s = Server::start(&data, &[], Some(&log));
            s.ready(&client).await;
            let base = s.base.clone();
            // The other collection serves exactly what was written.
            check_exact(&client, &base, &good, &good_ids, 50).await;
            // The damaged one: reported with its file and offset, at open or on first touch;
            // never a wrong answer. WAL truncation is the one exception: a cut log is what a
            // crash mid-append leaves, so recovery keeps the records before the cut.
            let (get_status, get_body) = post(
                &client,
                &base,
                &bad,
                "get",
                &json!({"include": ["embeddings", "documents", "metadatas"]}),
            )
            .await
            .expect("get");
            let (q_status, q_body) = post(
                &client,
                &base,
                &bad,
                "query",
                &json!({"query_embeddings": [vector_for("r100", 0, DIM)], "n_results": 10, "include": ["documents"]}),
            )
            .await
            .expect("query");
            let health = healthcheck(&client, &base).await;
            if kind == "wal" && damage == "truncate" {
                assert_eq!(get_status, 200, "{what}: {get_body}");
                let n = get_body["ids"].as_array().map(Vec::len).unwrap_or(0);
                assert!(
                    (BAD_ROWS + 7..BAD_ROWS + 12).contains(&n),
                    "{what}: {n} rows"
                );
            } else {
                let reported = |v: &Value| {
                    let t = v.to_string();
                    t.contains(&file_name) && t.contains("offset")
                };
                assert!(
                    get_status == 500 || q_status == 500,
                    "{what}: the damaged collection answered as if whole: {get_status} {get_body} / {q_status} {q_body}"
                );
                for (st, body) in [(get_status, &get_body), (q_status, &q_body)] {
                    if st != 200 {
                        assert_eq!(st, 500, "{what}: {body}");
                        assert!(
                            reported(body),
                            "{what}: error does not name {file_name} and the offset: {body}"
                        );
                    }
                }
                let failed = health["failed_collections"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                assert!(
                    failed.len() == 1 && failed[0]["id"] == bad.as_str() && reported(&failed[0]),
                    "{what}: healthcheck does not report the damaged collection: {health}"
                );
            }
            // Writes to the other collection work, and nothing panicked.
            let (st, b) = post(&client, &base, &good, "upsert", &records(0, 1, 50))
                .await
                .expect("upsert");
            assert!((200..300).contains(&st), "{what}: {b}");
            assert!(s.stop().success(), "{what}: clean shutdown");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(!text.contains("panicked"), "{what}: panic: {text}");
            cases += 1;
        }
    }
    println!("corruption: {cases} damaged-file cases, each detected or (WAL cut) recovered as a torn tail");

    // The background scrub finds damage no request touched.
    let data = tmp.path().join("scrub");
    copy_dir(&base_data, &data);
    let target = files_of_kind(&data.join("collections").join(&bad), "vectors.bin")
        .into_iter()
        .next()
        .expect("vectors.bin");
    let mut bytes = std::fs::read(&target).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&target, &bytes).expect("write");
    let mut s = Server::start(&data, &["--scrub-every", "1s"], None);
    s.ready(&client).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let metrics = loop {
        let m = metrics_text(&client, &s.base).await;
        if m.contains("vectord_scrub_damaged_collections 1") {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the scrub never reported the damage: {m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(metrics.contains("vectord_scrub_runs_total"), "{metrics}");
    let health = healthcheck(&client, &s.base).await;
    let failed = &health["failed_collections"][0];
    assert_eq!(failed["id"], bad.as_str(), "{health}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("vectors.bin"),
        "{health}"
    );
    check_exact(&client, &s.base, &good, &good_ids, 50).await;
    assert!(s.stop().success());
    let _ = BIN;
}

#[test]
fn whole_folder_restore_into_a_mount_point() {
    use std::os::unix::fs::MetadataExt;
    use vectord::catalog::{Catalog, NewCollection};
    use vectord::types::{Record, WriteBatch};

    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let Some(_mount) = mount_tmpfs(&data, "64m") else {
        return;
    };
    let device = std::fs::metadata(&data).expect("stat").dev();
    assert_ne!(device, std::fs::metadata(tmp.path()).expect("stat").dev());

    let add = |from: usize, n: usize| {
        WriteBatch::Add(
            (from..from + n)
                .map(|i| Record {
                    id: format!("r{i}"),
                    embedding: vector_for(&format!("r{i}"), 0, DIM),
                    metadata: None,
                    document: Some(format!("doc {i}")),
                    uri: None,
                })
                .collect(),
        )
    };
    let count = |dir: &Path| -> u64 {
        let catalog = Catalog::open(dir).expect("open");
        let entry = catalog
            .collection_by_name("default_tenant", "default_database", "policies")
            .expect("collection");
        entry.engine().expect("engine").count()
    };
    let snapshots = data.join("snapshots");
    let name = {
        let catalog = Catalog::open(&data).expect("open");
        let (entry, _) = catalog
            .create_collection(
                NewCollection {
                    tenant: "default_tenant".into(),
                    database: "default_database".into(),
                    name: "policies".into(),
                    metadata: None,
                    configuration: None,
                    schema: None,
                    config: Default::default(),
                },
                false,
            )
            .expect("create");
        let c = entry.engine().expect("engine");
        c.apply(add(0, 50), None).expect("apply");
        c.flush().expect("flush");
        let name = vectord::backup::local::new_name(&snapshots);
        vectord::backup::local::create(&catalog, &snapshots, &name).expect("snapshot");
        c.apply(add(50, 30), None)
            .expect("apply after the snapshot");
        name
    };

    succeeded(
        Command::new(BIN)
            .args(["restore", "--force", "--from"])
            .arg(snapshots.join(&name))
            .arg("--path")
            .arg(&data),
    );
    assert_eq!(
        std::fs::metadata(&data).expect("stat").dev(),
        device,
        "still the mount"
    );
    assert_eq!(count(&data), 50, "the snapshot's records");
    let kept: Vec<PathBuf> = std::fs::read_dir(&data)
        .expect("list")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".before-restore-"))
        })
        .collect();
    assert_eq!(kept.len(), 1, "one folder of replaced data: {kept:?}");
    assert_eq!(
        count(&kept[0]),
        80,
        "the replaced data, writes after the snapshot included"
    );
}
