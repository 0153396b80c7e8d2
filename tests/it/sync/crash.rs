//! The real `vectord` binary syncing a table while a writer changes it, SIGKILLed at seeded
//! random points: 6 during the snapshot (at a random number of rows copied) and 6 during follow
//! (after a random delay). After the last restart has caught up, the collection equals the
//! table exactly: ids, vectors, documents, metadata.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::sync::*;
use rand::Rng;
use vectord::sync::position::parse_lsn;

const ROWS: i64 = 2000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(
    data: &std::path::Path,
    config: &std::path::Path,
    port: u16,
    log: &std::path::Path,
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_vectord"))
        .args([
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--path",
        ])
        .arg(data)
        .arg("--sync-config")
        .arg(config)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn vectord")
}

async fn status(http: &reqwest::Client, port: u16) -> Option<serde_json::Value> {
    let r = http
        .get(format!("http://127.0.0.1:{port}/sync/status/crash"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_snapshot_and_follow_loses_nothing() {
    let Some(base) = pg_url() else { return };
    let (url, c) = fresh_db(&base, "sync_crash").await;
    // The initial rows are generated server-side (random 1536-d vectors, JSON with a nested key).
    c.execute(
        "INSERT INTO healthcare.policy_embeddings (payer_id, policy_text, embedding, metadata, user_id)
         SELECT 'PAYER-' || (g % 20), 'policy ' || g,
                (SELECT array_agg(random()::real - 0.5) FROM generate_series(1, 1536) WHERE g > 0)::vector,
                jsonb_build_object('rev', g, 'state', 'CA', 'plan', jsonb_build_object('tier', 'gold')),
                gen_random_uuid()
           FROM generate_series(1, $1::int8) g",
        &[&ROWS],
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("sync.toml");
    let log = dir.path().join("vectord.log");
    std::fs::write(
        &config,
        format!(
            "[[job]]\nname = \"crash\"\nurl = \"{url}\"\ntable = \"healthcare.policy_embeddings\"\n\
             document_column = \"policy_text\"\n\
             metadata_columns = [\"payer_id\", \"metadata\", \"created_at\", \"user_id\"]\n\
             collection = \"crash\"\nbatch_rows = 40\n"
        ),
    )
    .unwrap();

    // A writer changing the table the whole time (inserts, vector and metadata updates, deletes).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let url = url.clone();
        tokio::spawn(async move {
            let c = client(&url).await;
            let mut r = rng(99);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match r.random_range(0..100) {
                    0..50 => {
                        insert(&c, &mut r, true).await;
                    }
                    50..70 => {
                        c.execute("UPDATE healthcare.policy_embeddings SET metadata = metadata || jsonb_build_object('rev', (random()*1e6)::int) WHERE id = (SELECT id FROM healthcare.policy_embeddings LIMIT 1 OFFSET (random()*100)::int)", &[]).await.unwrap();
                    }
                    70..85 => {
                        let v = vector(&mut r);
                        c.execute("UPDATE healthcare.policy_embeddings SET embedding = $1::real[]::vector WHERE id = (SELECT id FROM healthcare.policy_embeddings LIMIT 1 OFFSET (random()*100)::int)", &[&v]).await.unwrap();
                    }
                    _ => {
                        c.execute("DELETE FROM healthcare.policy_embeddings WHERE id = (SELECT id FROM healthcare.policy_embeddings LIMIT 1 OFFSET (random()*100)::int)", &[]).await.unwrap();
                    }
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };

    let http = reqwest::Client::new();
    let mut r = rng(2026);
    let (mut snapshot_kills, mut follow_kills) = (0, 0);
    let mut attempts = 0;
    while snapshot_kills + follow_kills < 12 {
        attempts += 1;
        assert!(
            attempts < 40,
            "could not place the kills; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let port = free_port();
        let mut child = spawn(&data, &config, port, &log);
        let want_snapshot = snapshot_kills < 6;
        let threshold: u64 = r.random_range(1..400);
        let delay = Duration::from_millis(r.random_range(100..1500));
        let started = Instant::now();
        let mut phase = String::new();
        loop {
            phase.clear();
            if let Some(s) = status(&http, port).await {
                phase.push_str(s["phase"].as_str().unwrap_or(""));
                let rows = s["snapshot_rows"].as_u64().unwrap_or(0);
                if want_snapshot && phase == "snapshot" && rows >= threshold {
                    break;
                }
                if !want_snapshot && phase == "follow" && started.elapsed() >= delay {
                    break;
                }
                if want_snapshot && phase == "follow" {
                    break; // the snapshot finished before the threshold: counts as a follow kill
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no progress; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        match phase.as_str() {
            "snapshot" => snapshot_kills += 1,
            "follow" => follow_kills += 1,
            _ => {}
        }
    }
    assert!(
        snapshot_kills >= 3,
        "only {snapshot_kills} kills landed in the snapshot"
    );

    // Stop writing; the last run catches up, then is killed too, and the folder is compared.
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    let target: String = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let target = parse_lsn(&target).unwrap();
    let port = free_port();
    let mut child = spawn(&data, &config, port, &log);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(s) = status(&http, port).await {
            let pos = s["position"].as_str().and_then(parse_lsn).unwrap_or(0);
            if s["phase"] == "follow" && pos >= target {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "did not catch up; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let catalog = vectord::catalog::Catalog::open(&data).unwrap();
    let entry = catalog
        .collection_by_name("default_tenant", "default_database", "crash")
        .unwrap();
    let coll = Arc::clone(entry.engine().unwrap());
    let want = expected(&c).await;
    let have = actual(&coll);
    assert!(want.len() > ROWS as usize / 2, "{} rows", want.len());
    if let Some(d) = diff(&want, &have) {
        panic!("after {snapshot_kills} snapshot kills, {follow_kills} follow kills and {writes} writes: {d}");
    }
    eprintln!("{snapshot_kills} snapshot kills, {follow_kills} follow kills, {writes} writes, {} rows: equal", want.len());
}

/// A synced collection with a damaged segment is recovered from its source: the damage is
/// reported (scrub), and `vectord sync rebuild` drops the collection and its slot, snapshots
/// the table again and catches up, after which the collection equals the table and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupted_synced_collection_is_rebuilt_from_postgres() {
    let Some(base) = pg_url() else { return };
    let (url, c) = fresh_db(&base, "sync_rebuild_corrupt").await;
    let mut r = rng(11);
    for _ in 0..120 {
        insert(&c, &mut r, true).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let j = job("rebuilt", &url, "logical");
    let run = start(&data, &j);
    assert_converges(&c, &run.coll, "before the damage").await;
    let coll = std::sync::Arc::clone(&run.coll);
    tokio::task::spawn_blocking(move || coll.flush().unwrap())
        .await
        .unwrap();
    run.stop().await;

    // Flip a byte in the middle of the segment's vectors.
    let segments = std::fs::read_dir(data.join("collections"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("segments"))
        .find(|p| p.exists())
        .expect("a segments folder");
    let vectors = std::fs::read_dir(&segments)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("vectors.bin"))
        .find(|p| p.exists())
        .expect("vectors.bin");
    let mut bytes = std::fs::read(&vectors).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&vectors, &bytes).unwrap();
    {
        // The stopped job's last blocking tasks can still hold the catalog (and its folder
        // lock) for a moment on a loaded machine; a new process would not see this.
        let cat = open_when_unlocked(&data).await;
        let entry = cat
            .collection_by_name("default_tenant", "default_database", "rebuilt")
            .unwrap();
        let err = entry.engine().unwrap().verify().unwrap_err().to_string();
        assert!(err.contains("vectors.bin"), "{err}");
        assert_eq!(cat.failed_collections().len(), 1);
    }

    let config = dir.path().join("sync.toml");
    std::fs::write(
        &config,
        format!(
            "[[job]]\nname = \"rebuilt\"\nurl = \"{url}\"\ntable = \"healthcare.policy_embeddings\"\n\
             document_column = \"policy_text\"\n\
             metadata_columns = [\"payer_id\", \"metadata\", \"created_at\", \"user_id\"]\n\
             collection = \"rebuilt\"\nmode = \"logical\"\nbatch_rows = 64\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vectord"))
        .args(["sync", "rebuild", "--path"])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("vectord sync rebuild");
    assert!(
        out.status.success(),
        "sync rebuild failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cat = vectord::catalog::Catalog::open(&data).unwrap();
    assert!(cat.failed_collections().is_empty());
    let entry = cat
        .collection_by_name("default_tenant", "default_database", "rebuilt")
        .unwrap();
    let coll = std::sync::Arc::clone(entry.engine().unwrap());
    coll.verify().expect("the rebuilt collection verifies");
    let want = expected(&c).await;
    let have = actual(&coll);
    assert_eq!(diff(&want, &have), None, "rebuilt collection != table");
}

/// Opens the catalog once the previous in-process owner has let go of its folder lock.
async fn open_when_unlocked(data: &std::path::Path) -> vectord::catalog::Catalog {
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        match vectord::catalog::Catalog::open(data) {
            Ok(c) => return c,
            Err(e) if Instant::now() < give_up && e.to_string().contains("lock") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("opening the catalog: {e}"),
        }
    }
}
