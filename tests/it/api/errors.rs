//! Transport-level errors: content types, body limits, malformed JSON.

use reqwest::Method;
use serde_json::json;

use crate::support::in_process::{b64, start, start_with, Opts, DB};

#[tokio::test]
async fn content_type_rules() {
    let s = start().await;
    let path = format!("{DB}/collections");
    // No Content-Type at all means JSON (clients before 1.0 send none).
    let r = s
        .raw(Method::POST, &path, br#"{"name":"no_ct"}"#.to_vec(), None)
        .await;
    assert_eq!(r.ok(200)["name"], "no_ct");
    let r = s
        .raw(
            Method::POST,
            &path,
            br#"{"name":"with_charset"}"#.to_vec(),
            Some("application/json; charset=utf-8"),
        )
        .await;
    r.ok(200);
    let r = s
        .raw(
            Method::POST,
            &path,
            br#"{"name":"text"}"#.to_vec(),
            Some("text/plain"),
        )
        .await;
    assert_eq!(
        r.err(415, "ChromaError"),
        "Expected request with `Content-Type: application/json`"
    );
}

#[tokio::test]
async fn malformed_and_misshapen_json() {
    let s = start().await;
    let path = format!("{DB}/collections");
    let r = s
        .raw(
            Method::POST,
            &path,
            b"{\"name\": ".to_vec(),
            Some("application/json"),
        )
        .await;
    assert!(r
        .err(400, "InvalidArgumentError")
        .starts_with("Failed to parse the request body as JSON: "));
    let r = s.raw(Method::POST, &path, b"not json".to_vec(), None).await;
    r.err(400, "InvalidArgumentError");
    let r = s.post(&path, json!({"name": 5})).await;
    let m = r.err(422, "ChromaError");
    assert!(
        m.starts_with(
            "Failed to deserialize the JSON body into the target type: name: invalid type"
        ),
        "{m}"
    );
    let r = s
        .post(&path, json!({"name": "okay", "get_or_create": "yes"}))
        .await;
    assert!(r.err(422, "ChromaError").contains("get_or_create"));
    // Record bodies are parsed the same way.
    let id = s.create("shape").await;
    let r = s
        .raw(Method::POST, &s.coll(&id, "add"), b"[".to_vec(), None)
        .await;
    r.err(400, "InvalidArgumentError");
    let r = s
        .post(&s.coll(&id, "add"), json!({"ids": "a", "embeddings": []}))
        .await;
    assert!(r.err(422, "ChromaError").contains("ids: invalid type"));
}

#[tokio::test]
async fn body_limit_gives_413() {
    let s = start_with(Opts {
        max_body_bytes: 4096,
        ..Default::default()
    })
    .await;
    let id = s.create("small").await;
    let big: Vec<String> = (0..100).map(|_| b64(&[0.5; 64])).collect();
    let ids: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let r = s
        .post(&s.coll(&id, "add"), json!({"ids": ids, "embeddings": big}))
        .await;
    assert!(r.err(413, "ChromaError").contains("4096"));
    // The server keeps serving after rejecting the body.
    s.post(
        &s.coll(&id, "add"),
        json!({"ids": ["a"], "embeddings": [[1.0]]}),
    )
    .await
    .ok(201);
    // Pre-flight advertises a batch size derived from the limit.
    assert_eq!(
        s.get("/api/v2/pre-flight-checks").await.ok(200)["max_batch_size"],
        1
    );
}
