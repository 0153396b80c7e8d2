//! Tenants, databases and collections.

use serde_json::{json, Value};

use crate::support::in_process::{start, DB};

#[tokio::test]
async fn tenants() {
    let s = start().await;
    assert_eq!(
        s.post("/api/v2/tenants", json!({"name": "acme"}))
            .await
            .ok(200),
        &json!({})
    );
    let m = s
        .post("/api/v2/tenants", json!({"name": "acme"}))
        .await
        .err(409, "ChromaError")
        .to_string();
    assert_eq!(m, "Tenant [acme] already exists");
    let m = s
        .post("/api/v2/tenants", json!({"name": "ab"}))
        .await
        .err(400, "InvalidArgumentError")
        .to_string();
    assert!(m.contains("min 3"), "{m}");
    assert_eq!(
        s.get("/api/v2/tenants/nobody")
            .await
            .err(404, "NotFoundError"),
        "Tenant [nobody] not found"
    );
    let r = s
        .req(
            reqwest::Method::PATCH,
            "/api/v2/tenants/acme",
            Some(json!({"resource_name": "crn"})),
        )
        .await;
    r.ok(200);
    assert_eq!(
        s.get("/api/v2/tenants/acme").await.ok(200),
        &json!({"name": "acme", "resource_name": "crn"})
    );
}

#[tokio::test]
async fn databases() {
    let s = start().await;
    let base = "/api/v2/tenants/default_tenant/databases";
    for n in ["zeta_db", "alpha_db"] {
        s.post(base, json!({"name": n})).await.ok(200);
    }
    let m = s
        .post(base, json!({"name": "alpha_db"}))
        .await
        .err(409, "ChromaError")
        .to_string();
    assert_eq!(m, "Database [alpha_db] already exists");
    s.post(base, json!({"name": "bad name"}))
        .await
        .err(400, "InvalidArgumentError");
    let m = s
        .post(base, json!({"name": "ab"}))
        .await
        .err(400, "InvalidArgumentError")
        .to_string();
    assert_eq!(m, "database name must be at least 3 characters");
    let names: Vec<Value> = s
        .get(base)
        .await
        .ok(200)
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![
            json!("alpha_db"),
            json!("default_database"),
            json!("zeta_db")
        ]
    );
    let page = s.get(&format!("{base}?limit=1&offset=1")).await;
    assert_eq!(page.ok(200)[0]["name"], "default_database");
    let db = s.get(&format!("{base}/alpha_db")).await.ok(200).clone();
    assert_eq!(db["tenant"], "default_tenant");
    assert!(db["id"].as_str().unwrap().len() == 36);
    let m = s
        .get(&format!("{base}/missing"))
        .await
        .err(404, "NotFoundError")
        .to_string();
    assert_eq!(m, "Database [missing] not found. Are you sure it exists?");
    s.get(&format!("{base}/ab"))
        .await
        .err(400, "InvalidArgumentError");
    // Deleting a database deletes its collections.
    let r = s
        .post(
            &format!("{base}/alpha_db/collections"),
            json!({"name": "inside"}),
        )
        .await;
    let cid = r.ok(200)["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.delete(&format!("{base}/alpha_db")).await.ok(200),
        &json!({})
    );
    assert_eq!(
        s.delete(&format!("{base}/alpha_db"))
            .await
            .err(404, "NotFoundError"),
        "Database [alpha_db] not found"
    );
    assert!(!s.dir.join("collections").join(cid).exists());
    // Unknown database: empty list, zero count, 400 on create.
    assert_eq!(
        s.get(&format!("{base}/nodb_here/collections"))
            .await
            .ok(200),
        &json!([])
    );
    assert_eq!(
        s.get(&format!("{base}/nodb_here/collections_count"))
            .await
            .ok(200),
        &json!(0)
    );
    let m = s
        .post(
            &format!("{base}/nodb_here/collections"),
            json!({"name": "x12"}),
        )
        .await;
    assert_eq!(
        m.err(400, "InvalidArgumentError"),
        "Database [nodb_here] does not exist"
    );
}

#[tokio::test]
async fn create_returns_the_full_collection_object() {
    let s = start().await;
    let ef = json!({"name": "openai", "type": "known", "config": {"api_key_env_var": "K", "model_name": "m"}});
    let r = s
        .post(
            &format!("{DB}/collections"),
            json!({"name": "coll", "metadata": {"a": 1, "b": 2.0, "c": "x", "d": true},
                   "configuration": {"hnsw": {"space": "cosine", "ef_search": 50}, "spann": null, "embedding_function": ef},
                   "schema": null, "get_or_create": false}),
        )
        .await;
    let c = r.ok(200).clone();
    assert_eq!(c["name"], "coll");
    assert_eq!(c["tenant"], "default_tenant");
    assert_eq!(c["database"], "default_database");
    assert_eq!(c["dimension"], Value::Null);
    assert_eq!(c["log_position"], 0);
    assert_eq!(c["version"], 0);
    assert_eq!(
        c["metadata"],
        json!({"a": 1, "b": 2.0, "c": "x", "d": true})
    );
    assert_eq!(c["metadata"]["b"].to_string(), "2.0", "floats stay floats");
    assert_eq!(
        c["configuration_json"],
        json!({"hnsw": {"space": "cosine", "ef_construction": 100, "ef_search": 50, "max_neighbors": 16,
                        "resize_factor": 1.2, "sync_threshold": 1000},
               "spann": null, "embedding_function": ef})
    );
    let schema = &c["schema"];
    assert_eq!(
        schema["defaults"]["float_list"]["vector_index"]["enabled"],
        false
    );
    assert_eq!(
        schema["defaults"]["float_list"]["vector_index"]["config"]["space"],
        "cosine"
    );
    assert_eq!(
        schema["keys"]["#embedding"]["float_list"]["vector_index"]["config"]["source_key"],
        "#document"
    );
    assert_eq!(
        schema["keys"]["#embedding"]["float_list"]["vector_index"]["config"]["embedding_function"],
        ef
    );
    assert_eq!(
        schema["keys"]["#document"]["string"]["fts_index"]["enabled"],
        true
    );
    // Same object from every read route.
    let id = c["id"].as_str().unwrap();
    assert_eq!(s.get(&format!("{DB}/collections/coll")).await.ok(200), &c);
    assert_eq!(
        s.get(&format!("{DB}/collections/by-id/{id}")).await.ok(200),
        &c
    );
    assert_eq!(
        s.get("/api/v2/collections/default_tenant:default_database:coll")
            .await
            .ok(200),
        &c
    );
    assert_eq!(
        s.get(&format!("{DB}/collections")).await.ok(200),
        &json!([c])
    );
}

#[tokio::test]
async fn get_or_create_and_duplicates() {
    let s = start().await;
    let path = format!("{DB}/collections");
    let first = s
        .post(&path, json!({"name": "dup", "metadata": {"v": 1}}))
        .await
        .ok(200)
        .clone();
    let m = s
        .post(&path, json!({"name": "dup"}))
        .await
        .err(409, "ChromaError")
        .to_string();
    assert_eq!(m, "Collection [dup] already exists");
    let again = s
        .post(&path, json!({"name": "dup", "metadata": {"v": 2}, "configuration": {"hnsw": {"space": "ip"}}, "get_or_create": true}))
        .await
        .ok(200)
        .clone();
    assert_eq!(
        first, again,
        "get_or_create returns the existing collection unchanged"
    );
    // JS style: configuration {} and null keys left out.
    let js = s
        .post(
            &path,
            json!({"name": "from_js", "configuration": {}, "get_or_create": true}),
        )
        .await
        .ok(200)
        .clone();
    assert_eq!(js["configuration_json"]["hnsw"]["space"], "l2");
    assert_eq!(js["configuration_json"]["embedding_function"], Value::Null);
    assert_eq!(js["metadata"], Value::Null);
}

#[tokio::test]
async fn legacy_hnsw_metadata() {
    let s = start().await;
    let path = format!("{DB}/collections");
    // LangChain: configuration null, space in metadata.
    let c = s
        .post(&path, json!({"name": "lc_coll", "metadata": {"hnsw:space": "cosine", "hnsw:M": 32}, "configuration": null, "get_or_create": true}))
        .await
        .ok(200)
        .clone();
    assert_eq!(c["configuration_json"]["hnsw"]["space"], "cosine");
    assert_eq!(c["configuration_json"]["hnsw"]["max_neighbors"], 32);
    assert_eq!(
        c["metadata"],
        json!({"hnsw:space": "cosine", "hnsw:M": 32}),
        "hnsw:* keys stay in metadata"
    );
    // Python: default hnsw configuration plus metadata → metadata wins.
    let c = s
        .post(&path, json!({"name": "py_coll", "metadata": {"hnsw:space": "ip"}, "configuration": {"hnsw": {"space": "l2"}, "spann": null}}))
        .await
        .ok(200)
        .clone();
    assert_eq!(c["configuration_json"]["hnsw"]["space"], "ip");
    let m = s
        .post(
            &path,
            json!({"name": "bad", "metadata": {"hnsw:space": "foobar"}}),
        )
        .await;
    assert_eq!(
        m.err(400, "InvalidArgumentError"),
        "Failed to parse hnsw parameters from segment metadata"
    );
    s.post(
        &path,
        json!({"name": "bad", "metadata": {"hnsw:unknown": 1}}),
    )
    .await
    .err(400, "InvalidArgumentError");
    let m = s
        .post(&path, json!({"name": "bad", "configuration": {"hnsw": {"space": "l2"}, "spann": {"space": "l2"}}}))
        .await;
    assert_eq!(
        m.err(400, "InvalidArgumentError"),
        "Multiple vector index configurations provided"
    );
    let m = s
        .post(
            &path,
            json!({"name": "bad", "configuration": {"hnsw": {"foo": 1}}}),
        )
        .await;
    assert!(m.err(422, "ChromaError").contains("configuration.hnsw"));
    s.post(
        &path,
        json!({"name": "bad", "configuration": {"hnsw": {"space": "manhattan"}}}),
    )
    .await
    .err(422, "ChromaError");
    s.post(
        &path,
        json!({"name": "bad", "configuration": {"hnsw": {"max_neighbors": 100000}}}),
    )
    .await
    .err(400, "InvalidArgumentError");
}

#[tokio::test]
async fn name_and_metadata_rules() {
    let s = start().await;
    let path = format!("{DB}/collections");
    for bad in ["ab", "-abc", "abc-", "a..b", "has space", "127.0.0.1"] {
        let m = s
            .post(&path, json!({"name": bad}))
            .await
            .err(400, "InvalidArgumentError")
            .to_string();
        assert_eq!(
            m,
            format!(
                "Validation error: name: Expected a name containing 3-512 characters from [a-zA-Z0-9._-], \
                 starting and ending with a character in [a-zA-Z0-9]. Got: {bad}"
            )
        );
    }
    let m = s
        .post(&path, json!({"name": "okname", "metadata": {}}))
        .await;
    assert_eq!(
        m.err(400, "InvalidArgumentError"),
        "Validation error: metadata: Metadata cannot be empty"
    );
    s.post(&path, json!({"name": "okname", "metadata": {"a": [1, 2]}}))
        .await
        .err(400, "InvalidArgumentError");
    s.post(&path, json!({"name": "okname", "metadata": {"a": null}}))
        .await
        .err(422, "ChromaError");
    s.post(
        &path,
        json!({"name": "okname", "metadata": {"a": {"b": 1}}}),
    )
    .await
    .err(422, "ChromaError");
    s.post(&path, json!({"metadata": {"a": 1}}))
        .await
        .err(422, "ChromaError");
}

#[tokio::test]
async fn list_count_and_paging() {
    let s = start().await;
    let mut ids = Vec::new();
    for n in ["c_one", "c_two", "c_three"] {
        ids.push(s.create(n).await);
    }
    ids.sort();
    assert_eq!(
        s.get(&format!("{DB}/collections_count")).await.ok(200),
        &json!(3)
    );
    let all = s.get(&format!("{DB}/collections")).await.ok(200).clone();
    let got: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids, "listed in id order");
    let page = s
        .get(&format!("{DB}/collections?limit=1&offset=1"))
        .await
        .ok(200)
        .clone();
    assert_eq!(page[0]["id"], ids[1]);
    assert_eq!(
        s.get(&format!("{DB}/collections?limit=0")).await.ok(200),
        &json!([])
    );
    assert_eq!(
        s.get(&format!("{DB}/collections?offset=10")).await.ok(200),
        &json!([])
    );
    let m = s.get(&format!("{DB}/collections?limit=-1")).await;
    assert!(m
        .err(400, "InvalidArgumentError")
        .starts_with("Failed to deserialize query string"));
}

#[tokio::test]
async fn get_and_delete_by_name() {
    let s = start().await;
    let m = s
        .get(&format!("{DB}/collections/ghost"))
        .await
        .err(404, "NotFoundError")
        .to_string();
    assert_eq!(m, "Collection [ghost] does not exist");
    let id = s.create("gone").await;
    assert_eq!(
        s.delete(&format!("{DB}/collections/gone")).await.ok(200),
        &json!({})
    );
    s.delete(&format!("{DB}/collections/gone"))
        .await
        .err(404, "NotFoundError");
    let m = s
        .get(&format!("{DB}/collections/by-id/{id}"))
        .await
        .err(404, "NotFoundError")
        .to_string();
    assert_eq!(m, format!("Collection [{id}] does not exist."));
    s.get(&format!("{DB}/collections/by-id/not-a-uuid"))
        .await
        .err(400, "InvalidArgumentError");
    assert!(!s.dir.join("collections").join(&id).exists());
}

#[tokio::test]
async fn modify_collection() {
    let s = start().await;
    let id = s.create("orig").await;
    let other = s.create("taken").await;
    let put = format!("{DB}/collections/{id}");
    assert_eq!(s.put(&put, json!({})).await.ok(200), &json!({}));
    s.put(
        &put,
        json!({"new_name": "renamed", "new_metadata": {"a": null, "c": 3}}),
    )
    .await
    .ok(200);
    let c = s
        .get(&format!("{DB}/collections/renamed"))
        .await
        .ok(200)
        .clone();
    assert_eq!(c["id"], id.as_str());
    assert_eq!(c["metadata"], json!({"c": 3}));
    s.get(&format!("{DB}/collections/orig"))
        .await
        .err(404, "NotFoundError");
    let m = s.put(&put, json!({"new_metadata": {}})).await;
    assert_eq!(
        m.err(400, "InvalidArgumentError"),
        "Validation error: new_metadata: Metadata cannot be empty"
    );
    let m = s.put(&put, json!({"new_name": "taken"})).await;
    assert_eq!(
        m.err(409, "ChromaError"),
        "Collection [taken] already exists"
    );
    s.put(&put, json!({"new_name": "x"}))
        .await
        .err(400, "InvalidArgumentError");
    // Configuration: ef_search and the embedding function change; space may not.
    let ef = json!({"type": "known", "name": "cohere", "config": {}});
    s.put(
        &put,
        json!({"new_configuration": {"hnsw": {"ef_search": 77}, "embedding_function": ef}}),
    )
    .await
    .ok(200);
    let c = s
        .get(&format!("{DB}/collections/by-id/{id}"))
        .await
        .ok(200)
        .clone();
    assert_eq!(c["configuration_json"]["hnsw"]["ef_search"], 77);
    assert_eq!(c["configuration_json"]["embedding_function"], ef);
    // A rejected PUT changes nothing, not even the parts that were valid.
    let m = s
        .put(
            &put,
            json!({"new_name": "taken", "new_configuration": {"hnsw": {"ef_search": 5}}}),
        )
        .await;
    m.err(409, "ChromaError");
    let m = s
        .put(
            &put,
            json!({"new_name": "fresh_name", "new_configuration": {"hnsw": {"max_neighbors": 1}}}),
        )
        .await;
    m.err(400, "InvalidArgumentError");
    let c = s
        .get(&format!("{DB}/collections/by-id/{id}"))
        .await
        .ok(200)
        .clone();
    assert_eq!(c["configuration_json"]["hnsw"]["ef_search"], 77);
    assert_eq!(c["name"], "renamed");
    s.put(
        &put,
        json!({"new_configuration": {"hnsw": {"space": "ip"}}}),
    )
    .await
    .err(422, "ChromaError");
    s.put(
        &put,
        json!({"new_configuration": {"hnsw": {"ef_construction": 5}}}),
    )
    .await
    .err(422, "ChromaError");
    s.put(
        &put,
        json!({"new_configuration": {"hnsw": {"max_neighbors": 1}}}),
    )
    .await
    .err(400, "InvalidArgumentError");
    // Unknown and malformed ids.
    let missing = uuid::Uuid::new_v4();
    let m = s
        .put(&format!("{DB}/collections/{missing}"), json!({}))
        .await;
    assert_eq!(
        m.err(404, "NotFoundError"),
        format!("Collection [{missing}] does not exist.")
    );
    let m = s.put(&format!("{DB}/collections/nope"), json!({})).await;
    assert_eq!(
        m.err(400, "InvalidArgumentError"),
        "Collection ID is not a valid UUIDv4"
    );
    let _ = other;
}

#[tokio::test]
async fn schema_sets_space_and_keeps_client_overrides() {
    let s = start().await;
    let path = format!("{DB}/collections");
    let vector = json!({"space": "cosine", "embedding_function": null, "source_key": null,
                        "hnsw": {"ef_construction": 200, "max_neighbors": null, "ef_search": null,
                                 "num_threads": null, "batch_size": null, "sync_threshold": null,
                                 "resize_factor": null},
                        "spann": null});
    let schema = json!({
        "defaults": {"float_list": {"vector_index": {"enabled": false, "config": vector}}},
        "keys": {"custom_tag": {"string": {"string_inverted_index": {"enabled": false, "config": {}}}}}
    });
    let c = s
        .post(
            &path,
            json!({"name": "with_schema", "schema": schema, "configuration": null}),
        )
        .await
        .ok(200)
        .clone();
    assert_eq!(c["configuration_json"]["hnsw"]["space"], "cosine");
    assert_eq!(c["configuration_json"]["hnsw"]["ef_construction"], 200);
    let sc = &c["schema"];
    assert_eq!(
        sc["keys"]["custom_tag"]["string"]["string_inverted_index"]["enabled"],
        false
    );
    assert_eq!(
        sc["keys"]["#embedding"]["float_list"]["vector_index"]["config"]["space"],
        "cosine"
    );
    assert_eq!(
        sc["defaults"]["int"]["int_inverted_index"]["enabled"], true,
        "defaults not named by the client stay"
    );
    let again = s
        .post(&path, json!({"name": "with_schema", "get_or_create": true}))
        .await
        .ok(200)
        .clone();
    assert_eq!(again, c);
    // Non-default settings in both configuration and schema are a conflict.
    let m = s
        .post(
            &path,
            json!({"name": "both_set", "schema": schema, "configuration": {"hnsw": {"space": "ip"}}}),
        )
        .await;
    assert_eq!(
        m.err(400, "InvalidArgumentError"),
        "Cannot set both collection config and schema simultaneously"
    );
}

#[tokio::test]
async fn schema_embedding_function_is_echoed_and_sparse_indexes_refused() {
    let s = start().await;
    let simple = json!({"name": "simple_ef", "type": "known", "config": {"dim": 6}});
    let r = s
        .post(
            &format!("{DB}/collections"),
            json!({"name": "ef_in_schema", "metadata": null,
                   "configuration": {"hnsw": null, "spann": null,
                       "embedding_function": {"name": "default", "type": "known", "config": {}}},
                   "schema": {"keys": {"#embedding": {"float_list": {"vector_index": {"enabled": true,
                       "config": {"space": "cosine", "embedding_function": simple, "source_key": "#document"}}}}}},
                   "get_or_create": true}),
        )
        .await;
    let c = r.ok(200);
    assert_eq!(c["configuration_json"]["embedding_function"], simple);
    assert_eq!(
        c["schema"]["keys"]["#embedding"]["float_list"]["vector_index"]["config"]
            ["embedding_function"],
        simple
    );
    let r = s
        .post(
            &format!("{DB}/collections"),
            json!({"name": "sparse_idx", "schema": {"keys": {"sp": {"sparse_vector":
                {"sparse_vector_index": {"enabled": true, "config": {}}}}}}}),
        )
        .await;
    assert!(r
        .err(400, "InvalidArgumentError")
        .starts_with("Sparse vector indexing is not enabled in local"));
}

/// A schema that disables a key's inverted index makes filters on that key (for that value
/// type) an InvalidArgumentError in get, query and delete, as in Chroma; other keys and types
/// still filter, and the record stays stored.
#[tokio::test]
async fn filters_on_keys_with_a_disabled_index_are_refused() {
    let s = start().await;
    let r = s
        .post(
            &format!("{DB}/collections"),
            json!({"name": "restricted", "schema": {"keys": {"restricted_tag": {"string":
                {"string_inverted_index": {"enabled": false, "config": {}}}}}}}),
        )
        .await;
    let id = r.ok(200)["id"].as_str().expect("id").to_string();
    s.post(
        &s.coll(&id, "add"),
        json!({"ids": ["r1"], "embeddings": [[0.1, 0.2, 0.3, 0.4]],
               "metadatas": [{"restricted_tag": "blocked", "n": 3}], "documents": ["doc"]}),
    )
    .await
    .ok(201);
    let blocked = json!({"restricted_tag": "blocked"});
    for (op, body) in [
        ("get", json!({"where": blocked})),
        (
            "query",
            json!({"query_embeddings": [[0.1, 0.2, 0.3, 0.4]], "n_results": 1, "where": blocked}),
        ),
        ("delete", json!({"where": {"$and": [{"n": 3}, blocked]}})),
    ] {
        let r = s.post(&s.coll(&id, op), body).await;
        assert_eq!(
            r.err(400, "InvalidArgumentError"),
            "Cannot filter using metadata key 'restricted_tag' with type 'Str' because indexing is disabled",
            "{op}"
        );
    }
    // Another type on the same key, and other keys, still filter.
    let r = s
        .post(&s.coll(&id, "get"), json!({"where": {"restricted_tag": 5}}))
        .await;
    assert_eq!(r.ok(200)["ids"], json!([]));
    let r = s
        .post(&s.coll(&id, "get"), json!({"where": {"n": 3}}))
        .await;
    assert_eq!(r.ok(200)["ids"], json!(["r1"]));
}
