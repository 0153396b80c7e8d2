//! Limits: each cap answers with a Chroma-format 4xx naming the limit, and nothing is written.
//! Record caps are constants in `types.rs` (id 8 KiB, document 32 MiB, dimension 65,536);
//! server caps are `--max-*` flags (`src/limits.rs`).

use serde_json::json;

use crate::support::in_process::{b64, start_with, Opts, DB};

fn small_limits() -> Opts {
    Opts {
        max_body_bytes: 64 * 1024 * 1024,
        limits: vectord::config::Limits {
            max_batch_rows: 3,
            max_n_results: 5,
            max_collections: 3,
            max_metadata_bytes: 1000,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn record_and_request_caps_give_clear_400s() {
    let s = start_with(small_limits()).await;
    let id = s.create("caps").await;
    let add = s.coll(&id, "add");
    // Batch rows: writes, gets by id, deletes by id, queries.
    let four = json!(["a", "b", "c", "d"]);
    let m = s
        .post(
            &add,
            json!({"ids": four, "embeddings": [[1.0], [1.0], [1.0], [1.0]]}),
        )
        .await
        .err(400, "InvalidArgumentError")
        .to_string();
    assert!(m.contains("--max-batch-rows") && m.contains("4 ids"), "{m}");
    for op in ["upsert", "update"] {
        s.post(
            &s.coll(&id, op),
            json!({"ids": four, "embeddings": [[1.0], [1.0], [1.0], [1.0]]}),
        )
        .await
        .err(400, "InvalidArgumentError");
    }
    s.post(&s.coll(&id, "get"), json!({"ids": four}))
        .await
        .err(400, "InvalidArgumentError");
    s.post(&s.coll(&id, "delete"), json!({"ids": four}))
        .await
        .err(400, "InvalidArgumentError");
    s.post(
        &s.coll(&id, "query"),
        json!({"query_embeddings": [[1.0], [1.0], [1.0], [1.0]], "n_results": 1}),
    )
    .await
    .err(400, "InvalidArgumentError");
    s.post(
        &add,
        json!({"ids": ["a", "b", "c"], "embeddings": [[1.0], [2.0], [3.0]]}),
    )
    .await
    .ok(201);
    s.post(
        &add,
        json!({"ids": ["d", "e", "f"], "embeddings": [[4.0], [5.0], [6.0]]}),
    )
    .await
    .ok(201);
    // n_results: the cap applies to what would be returned (6 records here), since asking
    // for more than a collection holds means "all" to Chroma clients.
    s.post(
        &s.coll(&id, "query"),
        json!({"query_embeddings": [[1.0]], "n_results": u32::MAX}),
    )
    .await
    .err(400, "InvalidArgumentError");
    let m = s
        .post(
            &s.coll(&id, "query"),
            json!({"query_embeddings": [[1.0]], "n_results": 6}),
        )
        .await
        .err(400, "InvalidArgumentError")
        .to_string();
    assert!(m.contains("--max-n-results"), "{m}");
    s.post(
        &s.coll(&id, "query"),
        json!({"query_embeddings": [[1.0]], "n_results": 5}),
    )
    .await
    .ok(200);
    // Metadata size.
    let m = s
        .post(
            &add,
            json!({"ids": ["m"], "embeddings": [[1.0]], "metadatas": [{"k": "v".repeat(2000)}]}),
        )
        .await
        .err(400, "InvalidArgumentError")
        .to_string();
    assert!(m.contains("--max-metadata-bytes"), "{m}");
    // Id length (8 KiB).
    s.post(
        &add,
        json!({"ids": ["i".repeat(8 * 1024 + 1)], "embeddings": [[1.0]]}),
    )
    .await
    .err(400, "InvalidArgumentError");
    // Dimension (65,536), in a fresh collection whose dimension is not fixed yet.
    let wide = s.create("wide").await;
    let big = vec![0.5f32; 65_537];
    let m = s
        .post(
            &s.coll(&wide, "add"),
            json!({"ids": ["w"], "embeddings": [b64(&big)]}),
        )
        .await
        .err(400, "InvalidArgumentError")
        .to_string();
    assert!(m.contains("65536"), "{m}");
    // Document size (32 MiB).
    let doc = "d".repeat(32 * 1024 * 1024 + 1);
    s.post(
        &add,
        json!({"ids": ["doc"], "embeddings": [[1.0]], "documents": [doc]}),
    )
    .await
    .err(400, "InvalidArgumentError");
    assert_eq!(s.get(&s.coll(&id, "count")).await.ok(200), &json!(6));
    assert_eq!(s.get(&s.coll(&wide, "count")).await.ok(200), &json!(0));
    // Number of collections: two exist, the third is the last one allowed.
    s.create("third").await;
    let m = s
        .post(&format!("{DB}/collections"), json!({"name": "fourth"}))
        .await
        .err(400, "InvalidArgumentError")
        .to_string();
    assert!(m.contains("--max-collections"), "{m}");
    // get_or_create of an existing one still answers.
    s.post(
        &format!("{DB}/collections"),
        json!({"name": "third", "get_or_create": true}),
    )
    .await
    .ok(200);
}

#[tokio::test]
async fn batch_bytes_are_capped_by_the_body_limit() {
    let s = start_with(Opts {
        max_body_bytes: 4096,
        ..Default::default()
    })
    .await;
    let id = s.create("bytes").await;
    let ids: Vec<String> = (0..1000).map(|i| format!("id-{i}")).collect();
    let embs: Vec<Vec<f32>> = (0..1000).map(|i| vec![i as f32]).collect();
    let r = s
        .post(&s.coll(&id, "add"), json!({"ids": ids, "embeddings": embs}))
        .await;
    r.err(413, "ChromaError");
    assert_eq!(s.get(&s.coll(&id, "count")).await.ok(200), &json!(0));
}
