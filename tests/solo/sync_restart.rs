//! Postgres restarted under a running logical follower: the job retries with backoff and resumes
//! from its checkpoint. In the `solo` binary, alone in its process, because the restart would
//! break concurrent tests.

use crate::sync_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[allow(
    clippy::await_holding_lock,
    reason = "the binary's lock is held for the whole test on purpose; no task here takes it"
)]
async fn postgres_restart_mid_follow_is_retried_and_resumes() {
    let _solo = crate::solo();
    let Some(base) = pg_url() else { return };
    let Ok(restart) = std::env::var("VECTORD_TEST_PG_RESTART") else {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty()) {
            panic!("VECTORD_TEST_PG_RESTART is not set under CI");
        }
        eprintln!("*** SKIPPING: VECTORD_TEST_PG_RESTART (restart command) not set ***");
        return;
    };
    let (url, c) = fresh_db(&base, "sync_logical_restart").await;
    let mut r = rng(3);
    for _ in 0..30 {
        insert(&c, &mut r, true).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let job = job("sync_logical_restart", &url, "logical");
    let run = start(dir.path(), &job);
    assert_converges(&c, &run.coll, "before restart").await;
    // Restart Postgres under the follower.
    let ok = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&restart)
            .status()
            .map(|s| s.success())
    })
    .await
    .unwrap()
    .unwrap();
    assert!(ok, "restart command failed");
    let c = client(&url).await;
    for _ in 0..30 {
        insert(&c, &mut r, true).await;
    }
    c.batch_execute("DELETE FROM healthcare.policy_embeddings WHERE id IN (SELECT id FROM healthcare.policy_embeddings LIMIT 5)")
        .await
        .unwrap();
    assert_converges(&c, &run.coll, "after postgres restart").await;
    assert!(
        run.status.lock().reconnects >= 1,
        "the follower reconnected"
    );
    run.stop().await;
}
