//! Trigger mode against a real PostgreSQL: `install` adds the change table and triggers; the
//! follower mirrors inserts (also during the snapshot), vector updates, metadata-only updates,
//! deletes, key changes and TRUNCATE, and prunes the changes it applied.

use crate::support::sync::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trigger_mode_mirrors_every_kind_of_change() {
    let Some(base) = pg_url() else { return };
    let (url, c) = fresh_db(&base, "sync_trigger_changes").await;
    let mut r = rng(11);
    let mut ids = Vec::new();
    for i in 0..80 {
        ids.push(insert(&c, &mut r, i % 20 != 3).await);
    }
    let job = job("sync_trigger_changes", &url, "trigger");
    let dir = tempfile::tempdir().unwrap();
    // Without the change table the job refuses to start, saying what to run.
    {
        let catalog = std::sync::Arc::new(vectord::catalog::Catalog::open(dir.path()).unwrap());
        let status = vectord::sync::SyncRegistry::default().register(&job);
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let err = vectord::sync::job::run(
            catalog,
            job.clone(),
            status,
            rx,
            vectord::sync::job::Until::CaughtUp,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("vectord sync install"), "{err}");
    }
    let mut admin = vectord::sync::connect::connect(&job).await.unwrap();
    vectord::sync::trigger::install(&mut admin, &job)
        .await
        .unwrap();
    // Installing twice is harmless.
    vectord::sync::trigger::install(&mut admin, &job)
        .await
        .unwrap();
    let run = start(dir.path(), &job);
    for _ in 0..20 {
        ids.push(insert(&c, &mut r, true).await);
    }
    assert_converges(&c, &run.coll, "after snapshot").await;

    c.execute(
        "UPDATE healthcare.policy_embeddings SET payer_id = 'CHANGED', metadata = metadata - 'state'
          WHERE id = ANY(SELECT id FROM healthcare.policy_embeddings LIMIT 15)",
        &[],
    )
    .await
    .unwrap();
    let v = vector(&mut r);
    c.execute(
        "UPDATE healthcare.policy_embeddings SET embedding = $1::real[]::vector WHERE id = $2::text::uuid",
        &[&v, &ids[30]],
    )
    .await
    .unwrap();
    c.batch_execute(&format!(
        "BEGIN;
         DELETE FROM healthcare.policy_embeddings WHERE id = '{}';
         UPDATE healthcare.policy_embeddings SET id = gen_random_uuid() WHERE id = '{}';
         UPDATE healthcare.policy_embeddings SET policy_text = NULL WHERE id = '{}';
         COMMIT;",
        ids[31], ids[32], ids[33]
    ))
    .await
    .unwrap();
    assert_converges(&c, &run.coll, "after updates and deletes").await;

    c.batch_execute("TRUNCATE healthcare.policy_embeddings")
        .await
        .unwrap();
    for _ in 0..4 {
        insert(&c, &mut r, true).await;
    }
    assert_converges(&c, &run.coll, "after truncate").await;
    // Applied changes are pruned.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM vectord.changes_sync_trigger_changes",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} changes not pruned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let pos = run.coll.source_position().unwrap().0;
    assert!(pos.starts_with("trigger "), "{pos}");
    run.stop().await;
    vectord::sync::trigger::uninstall(&admin, &job)
        .await
        .unwrap();
}
