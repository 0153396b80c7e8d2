//! `/metrics` after real work: a compaction of two flushed segments, queries of each plan
//! (graph, filtered, exact) and deletes (tombstone count and ratio) show up per collection,
//! with mapped and resident segment bytes.

use std::sync::Arc;

use crate::support::server::{metrics_text, DB};
use serde_json::{json, Map, Value};
use vectord::catalog::{Catalog, NewCollection};
use vectord::engine::CollectionConfig;
use vectord::types::{Columns, MetadataValue, WriteBatch};

fn batch(start: u64, n: u64) -> WriteBatch {
    let ids = (start..start + n).map(|i| format!("r{i}")).collect();
    let embeddings = (start..start + n)
        .map(|i| {
            (0..8)
                .map(|d| ((i * 13 + d) % 101) as f32 / 101.0)
                .collect()
        })
        .collect();
    let metadatas = (start..start + n)
        .map(|i| {
            let mut m = std::collections::BTreeMap::new();
            m.insert("even".to_string(), Some(MetadataValue::Bool(i % 2 == 0)));
            Some(m)
        })
        .collect();
    WriteBatch::upsert(Columns {
        ids,
        embeddings: Some(embeddings),
        metadatas: Some(metadatas),
        documents: None,
        uris: None,
    })
    .expect("valid batch")
}

/// The value of the series `name{labels…}` whose label text contains every part of `parts`.
fn series(text: &str, name: &str, parts: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} series with {parts:?} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_query_plans_are_exported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let catalog = Catalog::open(tmp.path()).expect("catalog");
    let (entry, _) = catalog
        .create_collection(
            NewCollection {
                tenant: "default_tenant".into(),
                database: "default_database".into(),
                name: "plans".into(),
                metadata: Some(Map::new()),
                configuration: Some(Value::Object(Map::new())),
                schema: None,
                config: CollectionConfig::default(),
            },
            false,
        )
        .expect("create");
    let id = entry.record.id.to_string();
    let coll = Arc::clone(entry.engine().expect("engine"));
    for start in [0, 300] {
        coll.apply(batch(start, 300), None).expect("apply");
        assert!(coll.flush().expect("flush"));
    }
    assert_eq!(coll.segment_count(), 2);
    assert!(coll.compact().expect("compact"), "two segments compact");
    assert_eq!(coll.segment_count(), 1);

    let state = vectord::api::AppState::new(catalog, vectord::config::Settings::default())
        .expect("no auth");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(vectord::api::serve(listener, state, async {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let query = format!("{base}{DB}/collections/{id}/query");
    let q = vec![0.5f32; 8];
    for body in [
        json!({"query_embeddings": [q], "n_results": 5}),
        json!({"query_embeddings": [q, q], "n_results": 5}),
        json!({"query_embeddings": [q], "n_results": 5, "where": {"even": true}}),
        json!({"query_embeddings": [q], "n_results": 2, "ids": ["r1", "r2", "r3"]}),
    ] {
        let r = http.post(&query).json(&body).send().await.expect("query");
        assert_eq!(r.status(), 200, "{body}");
    }
    let r = http
        .post(format!("{base}{DB}/collections/{id}/delete"))
        .json(&json!({"ids": (0..60).map(|i| format!("r{i}")).collect::<Vec<_>>()}))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 200);
    let text = metrics_text(&http, &base).await;
    let coll_label = format!("collection=\"{id}\"");
    let c = coll_label.as_str();
    assert_eq!(series(&text, "vectord_collection_compactions", &[c]), 1.0);
    assert!(series(&text, "vectord_collection_compaction_seconds", &[c]) > 0.0);
    let plan = |p: &str| {
        let label = format!("plan=\"{p}\"");
        series(&text, "vectord_collection_query_plans", &[c, &label])
    };
    // 60 of the segment's 600 rows deleted: a tenth is dead weight until the next compaction.
    assert_eq!(series(&text, "vectord_collection_tombstones", &[c]), 60.0);
    assert_eq!(
        series(&text, "vectord_collection_tombstone_ratio", &[c]),
        0.1
    );
    assert_eq!(plan("graph"), 3.0);
    assert_eq!(plan("filtered"), 1.0);
    assert_eq!(plan("exact"), 1.0);
    let mapped = series(&text, "vectord_collection_mapped_bytes", &[c]);
    let resident = series(&text, "vectord_collection_resident_bytes", &[c]);
    // Vectors of 600 rows alone are 19 KB; the queries touched the segment, so some of it is
    // resident, and no more than is mapped (give or take the last page of each file).
    assert!(mapped > 19_000.0, "mapped {mapped}");
    assert!(
        resident > 0.0 && resident <= mapped + 16.0 * 4096.0,
        "resident {resident} of {mapped}"
    );
    let _ = tx.send(());
    server.await.unwrap().unwrap();
}
