//! Server-level routes.

use reqwest::Method;
use serde_json::json;

use crate::support::in_process::{start, start_with, Opts, DB};

#[tokio::test]
async fn heartbeat_version_preflight_identity_health() {
    let s = start().await;
    for p in ["/api/v2", "/api/v2/heartbeat"] {
        let r = s.get(p).await;
        assert!(r.ok(200)["nanosecond heartbeat"].as_u64().unwrap() > 1_600_000_000_000_000_000);
    }
    assert_eq!(s.get("/api/v2/version").await.ok(200), &json!("1.0.0"));
    assert_eq!(
        s.get("/api/v2/pre-flight-checks").await.ok(200),
        &json!({"max_batch_size": 3140, "supports_base64_encoding": true})
    );
    assert_eq!(
        s.get("/api/v2/auth/identity").await.ok(200),
        &json!({"user_id": "", "tenant": "default_tenant", "databases": ["default_database"]})
    );
    assert_eq!(
        s.get("/api/v2/healthcheck").await.ok(200),
        &json!({"is_executor_ready": true, "is_log_client_ready": true})
    );
    // The discovery calls Python makes at construction.
    assert_eq!(
        s.get("/api/v2/tenants/default_tenant").await.ok(200),
        &json!({"name": "default_tenant", "resource_name": null})
    );
    assert_eq!(
        s.get(DB).await.ok(200),
        &json!({"id": "00000000-0000-0000-0000-000000000000", "name": "default_database", "tenant": "default_tenant"})
    );
}

#[tokio::test]
async fn reset_wipes_everything_when_allowed() {
    let s = start().await;
    let id = s.create("to_wipe").await;
    s.post("/api/v2/tenants", json!({"name": "tenant2"}))
        .await
        .ok(200);
    assert_eq!(
        s.post("/api/v2/reset", json!(null)).await.ok(200),
        &json!(true)
    );
    assert_eq!(
        s.get(&format!("{DB}/collections_count")).await.ok(200),
        &json!(0)
    );
    s.get("/api/v2/tenants/tenant2")
        .await
        .err(404, "NotFoundError");
    s.get(DB).await.ok(200);
    assert!(!s.dir.join("collections").join(&id).exists());
    // Reset needs no body and no content type.
    s.raw(Method::POST, "/api/v2/reset", vec![], None)
        .await
        .ok(200);
}

#[tokio::test]
async fn reset_is_forbidden_by_default() {
    let s = start_with(Opts {
        allow_reset: false,
        ..Default::default()
    })
    .await;
    let id = s.create("kept").await;
    let r = s.post("/api/v2/reset", json!(null)).await;
    assert_eq!(r.err(403, "ChromaError"), "Reset is disabled by config");
    assert!(s.dir.join("collections").join(&id).exists());
}

#[tokio::test]
async fn unknown_routes_methods_and_v1() {
    let s = start().await;
    s.get("/api/v2/nope").await.err(404, "NotFoundError");
    s.req(Method::DELETE, "/api/v2/heartbeat", None)
        .await
        .err(405, "ChromaError");
    // v1 is served (see legacy.rs); paths v1 never had are 404.
    s.get("/api/v1/heartbeat").await.ok(200);
    s.get("/api/v1/nope/nope/nope/x")
        .await
        .err(404, "NotFoundError");
}

#[tokio::test]
async fn cloud_only_routes_answer_501() {
    let s = start().await;
    let id = s.create("c501").await;
    let r = s.post(&s.coll(&id, "fork"), json!({"new_name": "x"})).await;
    assert_eq!(
        r.err(501, "ChromaError"),
        "Collection forking is unsupported for local chroma"
    );
    s.get(&s.coll(&id, "fork_count"))
        .await
        .err(501, "ChromaError");
    s.post(&s.coll(&id, "search"), json!({"searches": []}))
        .await
        .err(501, "ChromaError");
    s.post(&s.coll(&id, "functions/attach"), json!({}))
        .await
        .err(501, "ChromaError");
}

#[tokio::test]
async fn graceful_stop_and_restart_keep_the_catalog() {
    let s = start().await;
    let r = s
        .post(
            &format!("{DB}/collections"),
            json!({"name": "persisted", "metadata": {"hnsw:space": "cosine", "k": 1.5},
                   "configuration": {"embedding_function": {"type": "known", "name": "openai", "config": {"model": "m"}}}}),
        )
        .await;
    let before = r.ok(200).clone();
    s.post("/api/v2/tenants", json!({"name": "tenant2"}))
        .await
        .ok(200);
    s.post("/api/v2/tenants/tenant2/databases", json!({"name": "db2"}))
        .await
        .ok(200);
    let dir = s.dir.clone();
    let tmp = s.stop().await;
    let s2 = crate::support::in_process::start_in(&dir, Opts::default()).await;
    let after = s2
        .get(&format!("{DB}/collections/persisted"))
        .await
        .ok(200)
        .clone();
    assert_eq!(before, after);
    assert_eq!(after["configuration_json"]["hnsw"]["space"], "cosine");
    s2.get("/api/v2/tenants/tenant2/databases/db2")
        .await
        .ok(200);
    drop(tmp);
}

#[tokio::test]
async fn every_response_carries_a_trace_id() {
    let s = start().await;
    let r = s
        .client
        .get(format!("{}{DB}/collections/ghost", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let id = r
        .headers()
        .get("chroma-trace-id")
        .expect("trace id header")
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 32);
    let r2 = s
        .client
        .get(format!("{}/api/v2/heartbeat", s.base))
        .send()
        .await
        .unwrap();
    assert_ne!(
        r2.headers()
            .get("chroma-trace-id")
            .unwrap()
            .to_str()
            .unwrap(),
        id
    );
}

#[tokio::test]
async fn a_collection_that_fails_to_open_is_reported_and_the_rest_serve() {
    let s = start().await;
    let bad = s.create("broken").await;
    let good = s.create("fine").await;
    s.post(
        &s.coll(&good, "add"),
        json!({"ids": ["a"], "embeddings": [[1.0]]}),
    )
    .await
    .ok(201);
    let dir = s.dir.clone();
    let tmp = s.stop().await;
    std::fs::write(
        dir.join("collections").join(&bad).join("MANIFEST"),
        b"garbage",
    )
    .unwrap();
    let s = crate::support::in_process::start_in(&dir, Opts::default()).await;
    // The healthy collection serves; the broken one answers 500 naming itself and the cause.
    assert_eq!(s.get(&s.coll(&good, "count")).await.ok(200), &json!(1));
    let m = s
        .get(&format!("{DB}/collections/broken"))
        .await
        .err(500, "InternalError")
        .to_string();
    assert!(
        m.contains("broken") && m.contains(&bad) && m.contains("MANIFEST"),
        "{m}"
    );
    let m = s
        .post(&s.coll(&bad, "get"), json!({}))
        .await
        .err(500, "InternalError")
        .to_string();
    assert!(m.contains("failed to open"), "{m}");
    // Listing still works, readiness lists the failure, and the broken collection can be dropped.
    assert_eq!(
        s.get(&format!("{DB}/collections"))
            .await
            .ok(200)
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let h = s.get("/api/v2/healthcheck").await.ok(200).clone();
    assert_eq!(h["failed_collections"][0]["name"], "broken");
    // Metrics count the failure and name the collection, so an alert can say which one.
    let r = s.get("/metrics").await;
    assert!(
        r.text.contains("vectord_collections_failed 1"),
        "{}",
        r.text
    );
    let series = format!(r#"vectord_collection_failed{{collection="{bad}",name="broken"}} 1"#);
    assert!(r.text.contains(&series), "{}", r.text);
    assert!(
        !r.text.contains(&format!(
            r#"vectord_collection_failed{{collection="{good}""#
        )),
        "{}",
        r.text
    );
    s.delete(&format!("{DB}/collections/broken")).await.ok(200);
    let r = s.get("/metrics").await;
    assert!(
        r.text.contains("vectord_collections_failed 0"),
        "{}",
        r.text
    );
    assert!(!r.text.contains("vectord_collection_failed{"), "{}", r.text);
    assert_eq!(
        s.get(&format!("{DB}/collections_count")).await.ok(200),
        &json!(1)
    );
    drop(tmp);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let s = start().await;
    let id = s.create("metered").await;
    s.get(&s.coll(&id, "count")).await.ok(200);
    s.get("/api/v2/nope").await.err(404, "NotFoundError");
    let r = s.get("/metrics").await;
    assert_eq!(r.status.as_u16(), 200);
    let t = &r.text;
    assert!(
        t.contains(r#"route="/api/v2/tenants/{tenant}/databases/{database}/collections/{collection_id}/count",status="200"} 1"#),
        "{t}"
    );
    assert!(t.contains(r#"route="unmatched",status="404"} 1"#), "{t}");
    assert!(t.contains("vectord_collections 1"), "{t}");
    assert!(
        !t.lines()
            .any(|l| l.contains("route=") && l.contains(id.as_str())),
        "raw paths never become route labels"
    );
    // Per-collection gauges are keyed by collection (bounded by the catalog, not by requests).
    assert!(
        t.contains(&format!(
            r#"vectord_collection_records{{collection="{id}",name="metered"}} 0"#
        )),
        "{t}"
    );
    assert!(
        t.contains(r#"vectord_process_resident_bytes{kind="anon"}"#),
        "{t}"
    );
    assert!(t.contains("vectord_data_volume_available_bytes "), "{t}");
}
