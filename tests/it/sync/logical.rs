//! Logical-replication sync against a real PostgreSQL + pgvector (`tests/run.sh` starts one):
//! snapshot of the production table with writes during the snapshot, then inserts, vector
//! updates, metadata-only updates (TOASTed vector unchanged), deletes, key changes and TRUNCATE,
//! each checked for collection == table; plus reconcile, rebuild, HTTP write refusal and status.
//! (Postgres restarts are in the `solo` binary: a restart would break the other tests here.)

use std::sync::Arc;
use std::time::Duration;

use crate::support::sync::*;
use tokio::sync::watch;
use vectord::catalog::Catalog;
use vectord::sync::job::{open_collection, run, Until};
use vectord::sync::{JobConfig, SyncRegistry};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logical_snapshot_then_every_kind_of_change() {
    let Some(base) = pg_url() else { return };
    let (url, c) = fresh_db(&base, "sync_logical_changes").await;
    let mut r = rng(1);
    let mut ids = Vec::new();
    for i in 0..150 {
        ids.push(insert(&c, &mut r, i % 25 != 7).await);
    }
    // Unrepresentable row: a mixed array. It is reported and not stored.
    c.execute(
        "UPDATE healthcare.policy_embeddings SET metadata = '{\"bad\": [1, \"x\"]}' WHERE id = $1::text::uuid",
        &[&ids[3]],
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = job("sync_logical_changes", &url, "logical");
    let run = start(dir.path(), &job);
    // Writes racing the snapshot must not be lost (slot first, then COPY).
    for _ in 0..40 {
        ids.push(insert(&c, &mut r, true).await);
    }
    c.execute(
        "DELETE FROM healthcare.policy_embeddings WHERE id = $1::text::uuid",
        &[&ids[10]],
    )
    .await
    .unwrap();
    // The bad row is reported (not stored) by the snapshot; then the source fixes it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while run.status.lock().skipped.unrepresentable == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "bad row was not reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(run.status.lock().last_skip.is_some());
    assert!(!run.coll.ids().unwrap().contains(&ids[3]));
    c.execute(
        "UPDATE healthcare.policy_embeddings SET metadata = '{\"fixed\": true}' WHERE id = $1::text::uuid",
        &[&ids[3]],
    )
    .await
    .unwrap();
    assert_converges(&c, &run.coll, "after snapshot").await;
    {
        let st = run.status.lock();
        assert!(st.skipped.null_embedding >= 6, "{:?}", st.skipped);
        assert_eq!(st.skipped.unrepresentable, 1, "{:?}", st.skipped);
    }

    // Metadata-only update: the 6 KiB vector is TOASTed and arrives as "unchanged".
    c.execute(
        "UPDATE healthcare.policy_embeddings SET payer_id = 'CHANGED', metadata = metadata || '{\"rev\": 99999}'
          WHERE id = ANY(SELECT id FROM healthcare.policy_embeddings WHERE embedding IS NOT NULL LIMIT 20)",
        &[],
    )
    .await
    .unwrap();
    // Document-only update, document to NULL, metadata key removed.
    c.batch_execute(
        "UPDATE healthcare.policy_embeddings SET policy_text = NULL, metadata = metadata - 'state'
          WHERE id = (SELECT id FROM healthcare.policy_embeddings WHERE embedding IS NOT NULL ORDER BY id LIMIT 1 OFFSET 30)",
    )
    .await
    .unwrap();
    assert_converges(&c, &run.coll, "after metadata-only updates").await;

    // Vector updates, including one in a multi-statement transaction with a delete.
    let v = vector(&mut r);
    c.execute(
        "UPDATE healthcare.policy_embeddings SET embedding = $1::real[]::vector WHERE id = $2::text::uuid",
        &[&v, &ids[20]],
    )
    .await
    .unwrap();
    c.batch_execute(&format!(
        "BEGIN;
         UPDATE healthcare.policy_embeddings SET embedding = NULL WHERE id = '{}';
         DELETE FROM healthcare.policy_embeddings WHERE id = '{}';
         UPDATE healthcare.policy_embeddings SET id = gen_random_uuid() WHERE id = '{}';
         COMMIT;",
        ids[21], ids[22], ids[23]
    ))
    .await
    .unwrap();
    assert_converges(&c, &run.coll, "after vector updates, deletes, key change").await;

    // TRUNCATE, then new rows.
    c.batch_execute("TRUNCATE healthcare.policy_embeddings")
        .await
        .unwrap();
    for _ in 0..5 {
        insert(&c, &mut r, true).await;
    }
    assert_converges(&c, &run.coll, "after truncate").await;
    assert_eq!(run.coll.count(), 5);
    // The checkpoint is an LSN, and the slot is confirmed up to (at least near) it.
    let pos = run.coll.source_position().unwrap().0;
    assert!(pos.starts_with("logical "), "{pos}");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_writes_to_a_synced_collection_are_refused() {
    let Some(base) = pg_url() else { return };
    let (url, c) = fresh_db(&base, "sync_logical_http").await;
    let mut r = rng(2);
    insert(&c, &mut r, true).await;
    let dir = tempfile::tempdir().unwrap();
    let job = job("sync_logical_http", &url, "logical");
    let catalog = Catalog::open(dir.path()).unwrap();
    let state = vectord::api::AppState::new(catalog, vectord::config::Settings::default())
        .expect("no auth configured");
    state.sync.register(&job);
    let coll = open_collection(&state.catalog, &job).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(vectord::api::serve(listener, state, async {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let resp = http
        .post(format!(
            "http://{addr}/api/v2/tenants/default_tenant/databases/default_database/collections/{}/add",
            coll.dir().file_name().unwrap().to_string_lossy()
        ))
        .json(&serde_json::json!({"ids": ["x"], "embeddings": [[1.0, 2.0]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("synced from PostgreSQL"),
        "{body}"
    );
    let status: serde_json::Value = http
        .get(format!("http://{addr}/sync/status/sync_logical_http"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["mode"], "logical");
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("vectord_sync_lag_rows{job=\"sync_logical_http\"}"),
        "{metrics}"
    );
    let _ = tx.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconcile_repairs_drift_and_rebuild_recreates() {
    let Some(base) = pg_url() else { return };
    let (url, c) = fresh_db(&base, "sync_logical_reconcile").await;
    let mut r = rng(4);
    for _ in 0..60 {
        insert(&c, &mut r, true).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let job = job("sync_logical_reconcile", &url, "logical");
    let run = start(dir.path(), &job);
    assert_converges(&c, &run.coll, "initial").await;
    let coll = Arc::clone(&run.coll);
    let catalog = Arc::clone(&run.catalog);
    run.stop().await;

    // Drift behind the sync's back: a record lost, one changed, one extra.
    use vectord::types::{DeleteSelector, UpsertRecord, WriteBatch};
    let mut all: Vec<String> = coll.ids().unwrap().into_iter().collect();
    all.sort();
    let (victim, changed) = (all[0].clone(), all[1].clone());
    coll.apply(
        WriteBatch::Delete(DeleteSelector {
            ids: Some(vec![victim.clone()]),
            filter: None,
            limit: None,
        }),
        None,
    )
    .unwrap();
    coll.apply(
        WriteBatch::Upsert(vec![
            UpsertRecord {
                id: changed,
                embedding: vec![0.5; DIM],
                metadata: None,
                document: Some("tampered".into()),
                uri: None,
            },
            UpsertRecord {
                id: "extra".into(),
                embedding: vec![0.25; DIM],
                metadata: None,
                document: None,
                uri: None,
            },
        ]),
        None,
    )
    .unwrap();
    let client_pg = vectord::sync::connect::connect(&job).await.unwrap();
    let kinds = vectord::sync::connect::column_kinds(&client_pg, &job)
        .await
        .unwrap();
    let applier = vectord::sync::apply::Applier::new(
        &job.name,
        Arc::clone(&coll),
        vectord::sync::mapping::Mapper::new(&job, kinds),
    );
    let (applier, report) =
        vectord::sync::reconcile::reconcile(&client_pg, &job, applier, true, false)
            .await
            .unwrap();
    assert_eq!(
        (report.missing, report.extra, report.different),
        (1, 1, 1),
        "{report:?}"
    );
    let (_, report) = vectord::sync::reconcile::reconcile(&client_pg, &job, applier, true, true)
        .await
        .unwrap();
    assert!(report.repaired);
    assert_converges(&c, &coll, "after reconcile --repair").await;

    // Rebuild: the collection is dropped with its slot and recreated from the table.
    drop(coll);
    vectord::sync::cli::rebuild(&catalog, &job).await.unwrap();
    let status = SyncRegistry::default().register(&job);
    let (_tx, rx) = watch::channel(false);
    run_until_caught_up(&catalog, &job, status, rx).await;
    let coll = open_collection(&catalog, &job).unwrap();
    assert_converges(&c, &coll, "after rebuild").await;
}

async fn run_until_caught_up(
    catalog: &Arc<Catalog>,
    job: &JobConfig,
    status: vectord::sync::status::StatusHandle,
    rx: watch::Receiver<bool>,
) {
    tokio::time::timeout(
        Duration::from_secs(60),
        run(
            Arc::clone(catalog),
            job.clone(),
            status,
            rx,
            Until::CaughtUp,
        ),
    )
    .await
    .expect("caught up in time")
    .expect("run");
}
