//! Pre-1.0 clients: `/api/v1` routes and the old payload formats (chroma-api.md §11), as the
//! Python 0.4.15–0.6.3 clients send them (no Content-Type, `python-httpx` user agent).

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::in_process::{start, start_with, Opts, Resp, Server, DB};

/// A request the way an old client sends it: JSON bytes without a Content-Type.
async fn old(s: &Server, m: Method, path: &str, body: Option<Value>) -> Resp {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let rb = s
        .client
        .request(m, format!("{}{}", s.base, path))
        .header("user-agent", "python-httpx/0.27.2")
        .body(bytes);
    let r = rb.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, text, json }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

const OLD_KEYS: [&str; 9] = [
    "configuration_json",
    "database",
    "dimension",
    "id",
    "log_position",
    "metadata",
    "name",
    "tenant",
    "version",
];

#[tokio::test]
async fn v1_routes_with_query_tenant_and_database() {
    let s = start().await;
    old(
        &s,
        Method::POST,
        "/api/v1/tenants",
        Some(json!({"name": "t_old"})),
    )
    .await
    .ok(200);
    old(
        &s,
        Method::POST,
        "/api/v1/databases?tenant=t_old",
        Some(json!({"name": "d_old"})),
    )
    .await
    .ok(200);
    assert_eq!(
        old(&s, Method::GET, "/api/v1/tenants/t_old", None)
            .await
            .ok(200),
        &json!({"name": "t_old"})
    );
    assert_eq!(
        old(
            &s,
            Method::GET,
            "/api/v1/databases/d_old?tenant=t_old",
            None
        )
        .await
        .ok(200)["name"],
        "d_old"
    );
    let q = "?tenant=t_old&database=d_old";
    let c = old(
        &s,
        Method::POST,
        &format!("/api/v1/collections{q}"),
        Some(json!({"name": "old_c", "metadata": {"hnsw:space": "ip"}, "get_or_create": false,
                    "configuration": {"hnsw_configuration": {"space": "l2", "_type": "HNSWConfigurationInternal"},
                                      "_type": "CollectionConfigurationInternal"}})),
    )
    .await;
    let c = c.ok(200).clone();
    assert_eq!(keys(&c), OLD_KEYS);
    assert_eq!(c["tenant"], "t_old");
    let hc = &c["configuration_json"]["hnsw_configuration"];
    assert_eq!(hc["space"], "ip", "legacy metadata decides: {c}");
    assert_eq!(hc["_type"], "HNSWConfigurationInternal");
    let id = c["id"].as_str().unwrap().to_string();

    // Record routes name only the collection id; its tenant and database come from the catalog.
    let r = old(
        &s,
        Method::POST,
        &format!("/api/v1/collections/{id}/add"),
        Some(
            json!({"ids": ["a", "b"], "embeddings": [[1.0, 0.0], [0.0, 1.0]],
                    "metadatas": [{"k": 1}, null], "documents": ["A", "B"], "uris": null}),
        ),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json, json!(true));
    let g = old(
        &s,
        Method::POST,
        &format!("/api/v1/collections/{id}/get"),
        Some(
            json!({"ids": null, "where": {}, "where_document": {}, "sort": null, "limit": null,
                    "offset": null, "include": ["metadatas", "documents"]}),
        ),
    )
    .await;
    let g = g.ok(200);
    assert_eq!(g["ids"], json!(["a", "b"]));
    assert_eq!(g["included"], json!(["metadatas", "documents"]));
    assert_eq!(g["data"], Value::Null);
    assert!(g.get("include").is_none());
    let qr = old(&s, Method::POST, &format!("/api/v1/collections/{id}/query"),
        Some(json!({"query_embeddings": [[1.0, 0.0]], "n_results": 1, "where": {}, "where_document": {},
                    "include": ["distances"]}))).await;
    assert_eq!(qr.ok(200)["ids"], json!([["a"]]));
    assert_eq!(
        old(
            &s,
            Method::GET,
            &format!("/api/v1/collections/{id}/count"),
            None
        )
        .await
        .ok(200),
        &json!(2)
    );
    for op in ["update", "upsert"] {
        let r = old(
            &s,
            Method::POST,
            &format!("/api/v1/collections/{id}/{op}"),
            Some(json!({"ids": ["b"], "embeddings": [[0.0, 2.0]]})),
        )
        .await;
        assert_eq!(r.ok(200), &Value::Null, "{op}");
    }
    let r = old(
        &s,
        Method::POST,
        &format!("/api/v1/collections/{id}/delete"),
        Some(json!({"ids": ["b"], "where": {}, "where_document": {}})),
    )
    .await;
    assert_eq!(r.ok(200), &Value::Null);
    assert_eq!(
        old(
            &s,
            Method::GET,
            &format!("/api/v1/count_collections{q}"),
            None
        )
        .await
        .ok(200),
        &json!(1)
    );
    let list = old(&s, Method::GET, &format!("/api/v1/collections{q}"), None).await;
    assert_eq!(keys(&list.ok(200)[0]), OLD_KEYS);
    let r = old(
        &s,
        Method::PUT,
        &format!("/api/v1/collections/{id}"),
        Some(json!({"new_name": "old_c2", "new_metadata": null})),
    )
    .await;
    assert_eq!(r.ok(200), &Value::Null);
    assert_eq!(
        old(
            &s,
            Method::GET,
            &format!("/api/v1/collections/old_c2{q}"),
            None
        )
        .await
        .ok(200)["id"],
        id
    );
    // The default tenant and database when the parameters are absent.
    assert_eq!(
        old(&s, Method::GET, "/api/v1/count_collections", None)
            .await
            .ok(200),
        &json!(0)
    );
    assert_eq!(
        old(
            &s,
            Method::DELETE,
            &format!("/api/v1/collections/old_c2{q}"),
            None
        )
        .await
        .ok(200),
        &Value::Null
    );
    assert_eq!(
        old(&s, Method::GET, "/api/v1/pre-flight-checks", None)
            .await
            .ok(200),
        &json!({"max_batch_size": 3140})
    );
    // Operators can see old clients in the metrics (one count per v1 request above).
    let metrics = s.get("/metrics").await;
    let line = metrics
        .text
        .lines()
        .find(|l| l.starts_with(r#"vectord_legacy_requests_total{api="v1"}"#))
        .unwrap_or_else(|| panic!("{}", metrics.text));
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 18, "{line}");
}

#[tokio::test]
async fn old_error_names() {
    let s = start().await;
    let c = old(
        &s,
        Method::POST,
        "/api/v1/collections",
        Some(json!({"name": "dup"})),
    )
    .await;
    let id = c.ok(200)["id"].as_str().unwrap().to_string();
    let r = old(
        &s,
        Method::POST,
        "/api/v1/collections",
        Some(json!({"name": "dup"})),
    )
    .await;
    assert_eq!(
        r.err(409, "UniqueConstraintError"),
        "Collection dup already exists"
    );
    let r = old(&s, Method::GET, "/api/v1/collections/nope", None).await;
    assert_eq!(
        r.err(400, "InvalidCollection"),
        "Collection nope does not exist."
    );
    old(
        &s,
        Method::POST,
        &format!("/api/v1/collections/{id}/add"),
        Some(json!({"ids": ["a"], "embeddings": [[1.0, 0.0]]})),
    )
    .await;
    let r = old(
        &s,
        Method::POST,
        &format!("/api/v1/collections/{id}/add"),
        Some(json!({"ids": ["b"], "embeddings": [[1.0, 0.0, 0.0]]})),
    )
    .await;
    assert!(r
        .err(400, "InvalidDimension")
        .contains("dimension of 2, got 3"));
    let r = old(
        &s,
        Method::POST,
        "/api/v1/collections/4a1e6a52-0000-4000-8000-000000000000/get",
        Some(json!({})),
    )
    .await;
    r.err(400, "InvalidCollection");
}

#[tokio::test]
async fn old_formats_on_v2_only_for_old_clients() {
    let s = start().await;
    let path = format!("{DB}/collections");
    // Python 0.5.16-0.6.3: v2 paths, no Content-Type, python-httpx.
    let c = old(&s, Method::POST, &path, Some(json!({"name": "old_v2", "metadata": null, "configuration": null, "get_or_create": true}))).await;
    assert_eq!(keys(c.ok(200)), OLD_KEYS);
    let id = c.json["id"].as_str().unwrap().to_string();
    let r = old(
        &s,
        Method::POST,
        &format!("{path}/{id}/add"),
        Some(json!({"ids": ["a"], "embeddings": [[1.0]]})),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.json.clone()), (201, json!(true)));
    let id_resp = old(&s, Method::GET, "/api/v2/auth/identity", None).await;
    assert_eq!(id_resp.ok(200)["attributes"], Value::Null);
    assert!(id_resp.json.as_object().unwrap().contains_key("attributes"));
    // The same request from a current client keeps the v2 format.
    let c = s.get(&format!("{path}/old_v2")).await;
    assert!(c.ok(200).get("schema").is_some());
    let r = s.post(&format!("{path}/{id}/get"), json!({})).await;
    assert!(r.ok(200).get("include").is_some());
    // where: {} is still a 400 on v2 for current clients.
    s.post(&format!("{path}/{id}/get"), json!({"where": {}}))
        .await
        .err(400, "InvalidArgumentError");
}

#[tokio::test]
async fn v1_goes_through_auth() {
    let s = start_with(Opts {
        admin_token: Some("tok".into()),
        ..Default::default()
    })
    .await;
    let r = old(&s, Method::GET, "/api/v1/collections", None).await;
    r.err(401, "AuthError");
    old(&s, Method::GET, "/api/v1/heartbeat", None)
        .await
        .ok(200);
    let r = s
        .req_with(
            Method::GET,
            "/api/v1/collections",
            None,
            &[("x-chroma-token", "tok")],
        )
        .await;
    r.ok(200);
}
