//! `--ready-after-sync` against a real PostgreSQL: while a sync job cannot load its snapshot
//! (the test holds a lock on the table), `/api/v2/healthcheck` answers 503 with Chroma's error
//! JSON naming the job; once the lock is released and the job has caught up, 200, and the
//! collection holds the whole table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::sync::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn healthcheck_waits_for_sync_catch_up() {
    let Some(base) = pg_url() else { return };
    let (url, c) = fresh_db(&base, "sync_ready").await;
    let mut r = rng(21);
    for _ in 0..30 {
        insert(&c, &mut r, true).await;
    }
    // Holding this lock keeps the job from copying the table (and, in logical mode, from
    // creating its slot, which waits for open transactions): it cannot catch up until we let go.
    let locker = client(&url).await;
    locker
        .batch_execute(
            "BEGIN; LOCK TABLE healthcare.policy_embeddings IN ACCESS EXCLUSIVE MODE; SELECT 1;",
        )
        .await
        .expect("lock table");

    let dir = tempfile::tempdir().unwrap();
    let job = job("sync_ready", &url, "logical");
    let catalog = vectord::catalog::Catalog::open(dir.path()).unwrap();
    let settings = vectord::config::Settings {
        ready_after_sync: true,
        ..vectord::config::Settings::default()
    };
    let state = vectord::api::AppState::new(catalog, settings).expect("no auth configured");
    let (stop_sync, sync_rx) = tokio::sync::watch::channel(false);
    let jobs = vectord::sync::job::spawn_all(
        Arc::clone(&state.catalog),
        std::slice::from_ref(&job),
        &state.sync,
        sync_rx,
    );
    let catalog = Arc::clone(&state.catalog);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(vectord::api::serve(listener, state, async {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let health = format!("http://{addr}/api/v2/healthcheck");

    let resp = http.get(&health).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "NotReadyError", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("sync_ready ("), "{body}");
    // Liveness is unaffected.
    let beat = http
        .get(format!("http://{addr}/api/v2/heartbeat"))
        .send()
        .await
        .unwrap();
    assert_eq!(beat.status(), 200);

    locker.batch_execute("ROLLBACK").await.expect("unlock");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let resp = http.get(&health).send().await.unwrap();
        if resp.status() == 200 {
            break;
        }
        assert_eq!(resp.status(), 503);
        assert!(
            Instant::now() < deadline,
            "not ready 120 s after the lock was released: {}",
            resp.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Ready means the snapshot is in: the collection already equals the table.
    let coll = vectord::sync::job::open_collection(&catalog, &job).expect("collection");
    let want = expected(&c).await;
    let have = tokio::task::spawn_blocking(move || actual(&coll))
        .await
        .unwrap();
    assert_eq!(diff(&want, &have), None);
    assert_eq!(have.len(), 30);

    let _ = stop_sync.send(true);
    for j in jobs {
        let _ = tokio::time::timeout(Duration::from_secs(10), j).await;
    }
    let _ = tx.send(());
    server.await.unwrap().unwrap();
}
