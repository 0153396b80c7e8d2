//! Record operations: add, upsert, update, delete, get, query, count.

use serde_json::{json, Value};

use crate::support::in_process::{b64, start, DB};

#[tokio::test]
async fn add_base64_get_and_query_like_python() {
    let s = start().await;
    let id = s.create("test_coll").await;
    let r = s
        .post(
            &s.coll(&id, "add"),
            json!({"ids": ["a", "b", "c"],
                   "embeddings": [b64(&[1.0, 0.0, 0.0]), b64(&[0.0, 1.0, 0.0]), b64(&[1.0, 0.1, 0.0])],
                   "metadatas": [{"k": 1}, {"k": 2, "f": 2.0}, null],
                   "documents": ["doc a", "doc b", null], "uris": null}),
        )
        .await;
    assert_eq!(r.ok(201), &json!({}));
    assert_eq!(b64(&[1.0, 0.0, 0.0]), "AACAPwAAAAAAAAAA");
    let c = s
        .get(&format!("{DB}/collections/by-id/{id}"))
        .await
        .ok(200)
        .clone();
    assert_eq!(c["dimension"], 3);
    assert_eq!(
        s.get(&format!(
            "{}?read_level=index_and_wal",
            s.coll(&id, "count")
        ))
        .await
        .ok(200),
        &json!(3)
    );
    assert_eq!(s.get(&s.coll(&id, "count")).await.ok(200), &json!(3));

    // get as Python sends it: default-like include, nulls for the rest.
    let g = s
        .post(
            &s.coll(&id, "get"),
            json!({"ids": ["b", "a"], "where": null, "limit": null, "offset": null, "where_document": null,
                   "include": ["metadatas", "documents"]}),
        )
        .await;
    assert_eq!(
        g.ok(200),
        &json!({"ids": ["a", "b"], "embeddings": null, "documents": ["doc a", "doc b"], "uris": null,
                "metadatas": [{"k": 1}, {"f": 2.0, "k": 2}], "include": ["metadatas", "documents"]})
    );
    assert!(
        g.text.contains(r#""f":2.0"#),
        "float stays float: {}",
        g.text
    );
    assert!(g.text.contains(r#""k":1"#), "int stays int: {}", g.text);
    // No include → documents and metadatas; embeddings come back as f32 arrays.
    let g = s.post(&s.coll(&id, "get"), json!({})).await.ok(200).clone();
    assert_eq!(g["include"], json!(["documents", "metadatas"]));
    assert_eq!(g["metadatas"][2], Value::Null);
    let g = s
        .post(
            &s.coll(&id, "get"),
            json!({"ids": ["c"], "include": ["embeddings", "uris"]}),
        )
        .await;
    assert!(
        g.text.contains("[1.0,0.1,0.0]"),
        "embeddings serialised as f32: {}",
        g.text
    );
    assert_eq!(g.json["documents"], Value::Null);
    assert_eq!(g.json["uris"], json!([null]));
    let g = s
        .post(
            &s.coll(&id, "get"),
            json!({"limit": 0, "include": ["documents", "metadatas"]}),
        )
        .await;
    assert_eq!(g.ok(200)["documents"], json!([]));
    let g = s
        .post(&s.coll(&id, "get"), json!({"offset": 1, "limit": 1}))
        .await;
    assert_eq!(g.ok(200)["ids"], json!(["b"]));

    // query exactly as Python 1.5.9 sends it.
    let q = s
        .post(
            &s.coll(&id, "query"),
            json!({"ids": null, "query_embeddings": [[1.0, 0.10000000149011612, 0.0]], "n_results": 2,
                   "where": null, "where_document": null, "include": ["metadatas", "documents", "distances"]}),
        )
        .await;
    let q = q.ok(200).clone();
    assert_eq!(q["ids"], json!([["c", "a"]]));
    assert_eq!(q["embeddings"], Value::Null);
    assert_eq!(q["uris"], Value::Null);
    assert_eq!(q["documents"], json!([[null, "doc a"]]));
    assert_eq!(q["metadatas"], json!([[null, {"k": 1}]]));
    assert_eq!(q["distances"], json!([[0.0, 0.010000001]]));
    assert_eq!(q["include"], json!(["metadatas", "documents", "distances"]));
    // Defaults, several vectors, n_results beyond the count, n_results 0, no vectors.
    let q = s
        .post(
            &s.coll(&id, "query"),
            json!({"query_embeddings": [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]}),
        )
        .await;
    let q = q.ok(200).clone();
    assert_eq!(q["ids"][0].as_array().unwrap().len(), 3);
    assert_eq!(q["ids"][1][0], "a");
    assert_eq!(q["include"], json!(["documents", "metadatas", "distances"]));
    let q = s
        .post(
            &s.coll(&id, "query"),
            json!({"query_embeddings": [[1.0, 0.0, 0.0]], "n_results": 0}),
        )
        .await;
    assert_eq!(q.ok(200)["ids"], json!([[]]));
    let q = s
        .post(
            &s.coll(&id, "query"),
            json!({"query_embeddings": [[1.0, 0.0, 0.0]], "n_results": u32::MAX}),
        )
        .await;
    assert_eq!(
        q.ok(200)["ids"][0].as_array().unwrap().len(),
        3,
        "huge n_results means all"
    );
    let g = s
        .post(
            &s.coll(&id, "get"),
            json!({"limit": u32::MAX, "offset": u32::MAX}),
        )
        .await;
    assert_eq!(g.ok(200)["ids"], json!([]));
    let q = s
        .post(
            &s.coll(&id, "query"),
            json!({"query_embeddings": [], "include": ["distances"]}),
        )
        .await;
    assert_eq!(
        q.ok(200),
        &json!({"ids": [], "embeddings": null, "documents": null, "uris": null, "metadatas": null, "distances": [], "include": ["distances"]})
    );
}

#[tokio::test]
async fn upsert_update_delete() {
    let s = start().await;
    let id = s.create("writes").await;
    s.post(&s.coll(&id, "add"), json!({"ids": ["a", "b"], "embeddings": [[1.0, 0.0], [0.0, 1.0]], "metadatas": [{"x": 1, "y": "keep"}, null], "documents": ["A", "B"]}))
        .await
        .ok(201);
    // Adding an existing id is ignored.
    s.post(
        &s.coll(&id, "add"),
        json!({"ids": ["a"], "embeddings": [[9.0, 9.0]], "documents": ["changed"]}),
    )
    .await
    .ok(201);
    // Upsert merges metadata (null deletes a key), replaces the embedding, keeps the document.
    let r = s
        .post(&s.coll(&id, "upsert"), json!({"ids": ["a", "c"], "embeddings": [b64(&[0.5, 0.5]), [0.0, 0.0]], "metadatas": [{"x": null, "z": 2.5}, {"n": 1}]}))
        .await;
    assert_eq!(r.ok(200), &json!({}));
    let g = s
        .post(
            &s.coll(&id, "get"),
            json!({"include": ["embeddings", "metadatas", "documents"]}),
        )
        .await
        .ok(200)
        .clone();
    assert_eq!(g["ids"], json!(["a", "b", "c"]));
    assert_eq!(g["embeddings"][0], json!([0.5, 0.5]));
    assert_eq!(g["metadatas"][0], json!({"y": "keep", "z": 2.5}));
    assert_eq!(g["documents"], json!(["A", "B", null]));
    // Update: unknown ids ignored, null embedding entries leave the vector.
    let r = s
        .post(&s.coll(&id, "update"), json!({"ids": ["b", "zzz"], "embeddings": [null, [1.0, 1.0]], "documents": ["B2", "nope"], "metadatas": [{"m": true}, null]}))
        .await;
    assert_eq!(r.ok(200), &json!({}));
    let g = s
        .post(
            &s.coll(&id, "get"),
            json!({"ids": ["b"], "include": ["embeddings", "metadatas", "documents"]}),
        )
        .await
        .ok(200)
        .clone();
    assert_eq!(g["embeddings"], json!([[0.0, 1.0]]));
    assert_eq!(g["documents"], json!(["B2"]));
    assert_eq!(g["metadatas"], json!([{"m": true}]));
    // Delete.
    assert_eq!(
        s.post(
            &s.coll(&id, "delete"),
            json!({"ids": ["b"], "where": null, "where_document": null})
        )
        .await
        .ok(200),
        &json!({"deleted": 1})
    );
    assert_eq!(
        s.post(&s.coll(&id, "delete"), json!({})).await.ok(200),
        &json!({"deleted": 0})
    );
    let m = s.post(&s.coll(&id, "delete"), json!({"ids": []})).await;
    assert_eq!(
        m.err(400, "InvalidArgumentError"),
        "Validation error: ids, where: Either ids or where must be specified"
    );
    let m = s
        .post(&s.coll(&id, "delete"), json!({"ids": ["a"], "limit": 1}))
        .await;
    assert_eq!(
        m.err(400, "InvalidArgumentError"),
        "limit can only be specified when a where clause is provided"
    );
    assert_eq!(s.get(&s.coll(&id, "count")).await.ok(200), &json!(2));
}

#[tokio::test]
async fn distances_follow_chroma_per_space() {
    let s = start().await;
    for (space, expect) in [
        ("l2", 5.25),
        ("ip", -4.5),
        ("cosine", 1.0 - 5.5 / (1.5f64 * 14f64.sqrt())),
    ] {
        let name = format!("space_{space}");
        let r = s
            .post(
                &format!("{DB}/collections"),
                json!({"name": name, "configuration": {"hnsw": {"space": space}}}),
            )
            .await;
        let id = r.ok(200)["id"].as_str().unwrap().to_string();
        s.post(
            &s.coll(&id, "add"),
            json!({"ids": ["p"], "embeddings": [[1.0, 2.0, 3.0]]}),
        )
        .await
        .ok(201);
        let q = s
            .post(
                &s.coll(&id, "query"),
                json!({"query_embeddings": [[0.5, 1.0, 1.0]], "include": ["distances"]}),
            )
            .await;
        let d = q.ok(200)["distances"][0][0].as_f64().unwrap();
        assert!((d - expect).abs() < 1e-5, "{space}: {d} vs {expect}");
    }
}

#[tokio::test]
async fn record_errors_match_chroma() {
    let s = start().await;
    let id = s.create("errs").await;
    let add = s.coll(&id, "add");
    s.post(&add, json!({"ids": ["a"], "embeddings": [[1.0, 2.0, 3.0]]}))
        .await
        .ok(201);
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"ids": ["b"], "embeddings": [[1.0, 2.0]]}),
            400,
            "InvalidArgumentError",
            "Collection expecting embedding with dimension of 3, got 2",
        ),
        (
            json!({"ids": ["b", "c"], "embeddings": [[1.0, 2.0, 3.0], [1.0, 2.0]]}),
            400,
            "InvalidArgumentError",
            "Inconsistent dimensions in provided embeddings",
        ),
        (
            json!({"ids": [""], "embeddings": [[1.0, 2.0, 3.0]]}),
            400,
            "InvalidArgumentError",
            "Empty ID, ID must have at least one character",
        ),
        (
            json!({"ids": ["b", "c"], "embeddings": [[1.0, 2.0, 3.0]]}),
            400,
            "InvalidArgumentError",
            "Inconsistent number of IDs, embeddings, documents, URIs and metadatas",
        ),
        (
            json!({"ids": ["b"], "embeddings": [[1.0, 2.0, 3.0]], "documents": []}),
            400,
            "InvalidArgumentError",
            "Inconsistent number of IDs, embeddings, documents, URIs and metadatas",
        ),
        (
            json!({"ids": ["b"], "embeddings": [[1.0, 2.0, 3.0]], "metadatas": [{"$bad": 1}]}),
            400,
            "InvalidArgumentError",
            "Validation error: metadatas: Invalid metadata at index 0",
        ),
        (
            json!({"ids": ["b"], "embeddings": [[]]}),
            400,
            "InvalidArgumentError",
            "Validation error: embeddings: Each embedding must have at least 1 dimension",
        ),
        (
            json!({"ids": ["b"], "embeddings": ["!!notbase64"]}),
            400,
            "InvalidArgumentError",
            "Invalid base64 string",
        ),
        (
            json!({"ids": ["b"], "embeddings": ["AACA"]}),
            400,
            "InvalidArgumentError",
            "Invalid base64 string",
        ),
        (
            json!({"ids": ["b"], "embeddings": [[1.0, 2.0, 3.0]], "metadatas": [{"k": null}]}),
            422,
            "ChromaError",
            "untagged enum MetadataValue",
        ),
        (
            json!({"ids": ["b"], "embeddings": [[1.0, 2.0, 3.0]], "metadatas": [{"k": {"x": 1}}]}),
            422,
            "ChromaError",
            "untagged enum MetadataValue",
        ),
        (
            json!({"ids": ["b"]}),
            422,
            "ChromaError",
            "missing field `embeddings`",
        ),
    ];
    for (body, status, name, msg) in cases {
        let r = s.post(&add, body.clone()).await;
        let m = r.err(status, name);
        assert!(m.contains(msg), "{body}: {m}");
    }
    // Duplicate ids in one batch: accepted, first wins.
    s.post(
        &add,
        json!({"ids": ["d", "d"], "embeddings": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]}),
    )
    .await
    .ok(201);
    let g = s
        .post(
            &s.coll(&id, "get"),
            json!({"ids": ["d"], "include": ["embeddings"]}),
        )
        .await
        .ok(200)
        .clone();
    assert_eq!(g["embeddings"], json!([[1.0, 0.0, 0.0]]));
    // Empty ids list is a no-op.
    s.post(&add, json!({"ids": [], "embeddings": []}))
        .await
        .ok(201);
    // Upsert requires embeddings; query needs plain arrays of the right dimension.
    s.post(&s.coll(&id, "upsert"), json!({"ids": ["a"]}))
        .await
        .err(422, "ChromaError");
    let q = s.coll(&id, "query");
    s.post(&q, json!({"query_embeddings": ["AACAPwAAAAAAAAAA"]}))
        .await
        .err(422, "ChromaError");
    let m = s.post(&q, json!({"query_embeddings": [[1.0]]})).await;
    assert_eq!(
        m.err(400, "InvalidArgumentError"),
        "Collection expecting embedding with dimension of 3, got 1"
    );
    // Bad include values.
    let m = s
        .post(&s.coll(&id, "get"), json!({"include": ["data"]}))
        .await;
    assert!(m.err(422, "ChromaError").contains("unknown variant"));
    // Count read levels.
    s.get(&format!("{}?read_level=index_only", s.coll(&id, "count")))
        .await
        .ok(200);
    let m = s
        .get(&format!("{}?read_level=bogus", s.coll(&id, "count")))
        .await;
    assert!(m
        .err(400, "InvalidArgumentError")
        .starts_with("Failed to deserialize query string"));
    // Unknown and malformed collection ids.
    let missing = uuid::Uuid::new_v4();
    let m = s
        .post(
            &s.coll(&missing.to_string(), "add"),
            json!({"ids": ["a"], "embeddings": [[1.0]]}),
        )
        .await;
    assert_eq!(
        m.err(404, "NotFoundError"),
        format!("Collection [{missing}] does not exist.")
    );
    s.get(&s.coll(&missing.to_string(), "count"))
        .await
        .err(404, "NotFoundError");
    let m = s.post(&s.coll("not-a-uuid", "get"), json!({})).await;
    assert_eq!(
        m.err(400, "InvalidArgumentError"),
        "Collection ID is not a valid UUIDv4"
    );
    // A collection of another database is not reachable through this one.
    s.post(
        "/api/v2/tenants/default_tenant/databases",
        json!({"name": "db_two"}),
    )
    .await
    .ok(200);
    let other = format!("/api/v2/tenants/default_tenant/databases/db_two/collections/{id}/count");
    s.get(&other).await.err(404, "NotFoundError");
}

#[tokio::test]
async fn metadata_value_types_round_trip() {
    let s = start().await;
    let id = s.create("types").await;
    let md = json!({"i": 1, "neg": -7, "f": 1.0, "pi": 1.2345678901234567, "s": "x", "b": false,
                    "ia": [1, 2], "fa": [1.5, 2.0], "sa": ["a", "b"], "ba": [true, false],
                    "big": 1e300,
                    "sv": {"#type": "sparse_vector", "indices": [1, 5], "values": [0.5, 0.25]}});
    s.post(
        &s.coll(&id, "add"),
        json!({"ids": ["r"], "embeddings": [[1.0]], "metadatas": [md]}),
    )
    .await
    .ok(201);
    let g = s
        .post(&s.coll(&id, "get"), json!({"include": ["metadatas"]}))
        .await;
    assert_eq!(g.ok(200)["metadatas"][0], md);
    for frag in [
        r#""i":1,"#,
        r#""f":1.0,"#,
        r#""fa":[1.5,2.0]"#,
        r#""pi":1.2345678901234567"#,
    ] {
        assert!(g.text.contains(frag), "{frag} in {}", g.text);
    }
    // Empty metadata is stored as null.
    s.post(
        &s.coll(&id, "add"),
        json!({"ids": ["e"], "embeddings": [[1.0]], "metadatas": [{}]}),
    )
    .await
    .ok(201);
    let g = s.post(&s.coll(&id, "get"), json!({"ids": ["e"]})).await;
    assert_eq!(g.ok(200)["metadatas"], json!([null]));
}

#[tokio::test]
async fn where_filters_reach_get_query_and_delete() {
    let s = start().await;
    let id = s.create("filtered").await;
    s.post(
        &s.coll(&id, "add"),
        json!({"ids": ["a", "b", "c", "d"],
               "embeddings": [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.5, 0.5]],
               "metadatas": [{"k": 1, "tag": "x"}, {"k": 2, "tag": "y"}, {"k": 3.0, "tag": "x"}, null],
               "documents": ["apple pie", "banana split", "cherry tart", null]}),
    )
    .await
    .ok(201);
    let get = |body: Value| {
        let s = &s;
        let path = s.coll(&id, "get");
        async move { s.post(&path, body).await }
    };
    assert_eq!(
        get(json!({"where": {"tag": "x"}})).await.ok(200)["ids"],
        json!(["a", "c"])
    );
    // Int and float compare numerically; $ne is true for records that lack the key.
    assert_eq!(
        get(json!({"where": {"k": {"$gte": 2}}})).await.ok(200)["ids"],
        json!(["b", "c"])
    );
    assert_eq!(
        get(json!({"where": {"tag": {"$ne": "x"}}})).await.ok(200)["ids"],
        json!(["b", "d"])
    );
    assert_eq!(
        get(json!({"where_document": {"$contains": "an"}}))
            .await
            .ok(200)["ids"],
        json!(["b"])
    );
    assert_eq!(
        get(json!({"ids": ["a", "b", "c"], "where": {"$or": [{"k": 1}, {"k": 3}]}, "where_document": {"$not_contains": "apple"}}))
            .await
            .ok(200)["ids"],
        json!(["c"])
    );
    // Invalid clauses are 400 with Chroma's messages.
    let m = get(json!({"where": {}})).await;
    assert_eq!(m.err(400, "InvalidArgumentError"), "Invalid where clause");
    let m = get(json!({"where_document": {"$bogus": "x"}})).await;
    assert_eq!(
        m.err(400, "InvalidArgumentError"),
        "Invalid where document clause"
    );
    // Query with a filter.
    let q = s
        .post(&s.coll(&id, "query"), json!({"query_embeddings": [[1.0, 0.0]], "n_results": 5, "where": {"tag": "x"}, "include": []}))
        .await;
    assert_eq!(q.ok(200)["ids"], json!([["a", "c"]]));
    // Delete with a filter and a limit: deleted is the number removed.
    let d = s
        .post(
            &s.coll(&id, "delete"),
            json!({"where": {"tag": "x"}, "limit": 0}),
        )
        .await;
    assert_eq!(d.ok(200), &json!({"deleted": 0}));
    let d = s
        .post(
            &s.coll(&id, "delete"),
            json!({"where": {"tag": "x"}, "limit": 1}),
        )
        .await;
    assert_eq!(d.ok(200), &json!({"deleted": 1}));
    let d = s
        .post(
            &s.coll(&id, "delete"),
            json!({"where_document": {"$contains": "a"}}),
        )
        .await;
    assert_eq!(d.ok(200), &json!({"deleted": 2}));
    assert_eq!(get(json!({})).await.ok(200)["ids"], json!(["d"]));
}
