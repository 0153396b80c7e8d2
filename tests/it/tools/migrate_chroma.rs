//! Migration from a real Chroma 1.5.9 server (`chroma run`, installed by tests/run.sh into its
//! own venv and passed as `VECTORD_TEST_CHROMA_BIN`): `vectord import --from-chroma` copies
//! databases, collections (space, metadata) and records exactly, a rerun resumes without
//! copying again, a target missing an early record is recopied rather than resumed at its
//! count, a target with records the source lacks fails the import, and `vectord export` →
//! `vectord import --file` round-trips through NDJSON.

use std::process::Command;
use std::time::Duration;

use crate::support::server::{chroma_bin, start_chroma, succeeded, wait_ok, Server, BIN};
use serde_json::{json, Value};

/// Waits for `base`'s heartbeat, allowing Chroma's slow first start.
async fn wait_ready(client: &reqwest::Client, base: &str) {
    let url = format!("{base}/api/v2/heartbeat");
    wait_ok(client, &url, Duration::from_secs(90)).await;
}

async fn call(client: &reqwest::Client, method: &str, url: &str, body: Option<Value>) -> Value {
    let req = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let r = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = r.status();
    let text = r.text().await.expect("body");
    assert!(status.is_success(), "{method} {url}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Every collection of `db` on `base`: name → ([space, ef_search], metadata, records sorted by
/// id).
async fn dump(
    client: &reqwest::Client,
    base: &str,
    db: &str,
) -> Vec<(String, Value, Value, Value)> {
    let prefix = format!("{base}/api/v2/tenants/default_tenant/databases/{db}");
    let colls = call(client, "GET", &format!("{prefix}/collections"), None).await;
    let mut out = Vec::new();
    for c in colls.as_array().expect("list") {
        let id = c["id"].as_str().expect("id");
        let got = call(
            client,
            "POST",
            &format!("{prefix}/collections/{id}/get"),
            Some(json!({"include": ["embeddings", "documents", "metadatas", "uris"]})),
        )
        .await;
        let mut rows: Vec<Value> = (0..got["ids"].as_array().expect("ids").len())
            .map(|k| {
                json!([
                    got["ids"][k],
                    got["embeddings"][k],
                    got["documents"][k],
                    got["metadatas"][k],
                    got["uris"][k]
                ])
            })
            .collect();
        rows.sort_by(|a, b| a[0].as_str().cmp(&b[0].as_str()));
        let meta = c["metadata"].clone();
        out.push((
            c["name"].as_str().expect("name").to_string(),
            // The configuration the import carries over: the space and the search beam.
            json!([
                c["configuration_json"]["hnsw"]["space"],
                c["configuration_json"]["hnsw"]["ef_search"]
            ]),
            meta,
            Value::Array(rows),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn vectord(args: &[&str]) -> String {
    let out = succeeded(Command::new(BIN).args(args));
    // Progress logs share stdout when it is not a terminal; the summary is the last line.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_from_real_chroma_then_ndjson_round_trip() {
    let Some(chroma) = chroma_bin() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let (_chroma, chroma_base) = start_chroma(&chroma, &tmp.path().join("chroma"));
    wait_ready(&client, &chroma_base).await;

    // Source data: two databases, three collections with different spaces and metadata.
    let t = format!("{chroma_base}/api/v2/tenants/default_tenant");
    call(
        &client,
        "POST",
        &format!("{t}/databases"),
        Some(json!({"name": "claims"})),
    )
    .await;
    let mut n_total = 0;
    for (db, name, space, n) in [
        ("default_database", "policies", "cosine", 1200usize),
        ("default_database", "notes", "l2", 7),
        ("claims", "appeals", "ip", 40),
    ] {
        let c = call(
            &client,
            "POST",
            &format!("{t}/databases/{db}/collections"),
            Some(json!({
                "name": name,
                "metadata": {"owner": "prior-auth", "version": 3},
                "configuration": {"hnsw": {"space": space, "ef_search": 120}},
            })),
        )
        .await;
        let id = c["id"].as_str().expect("id").to_string();
        for start in (0..n).step_by(300) {
            let ids: Vec<usize> = (start..n.min(start + 300)).collect();
            call(
                &client,
                "POST",
                &format!("{t}/databases/{db}/collections/{id}/add"),
                Some(json!({
                    "ids": ids.iter().map(|i| format!("{name}-{i:05}")).collect::<Vec<_>>(),
                    "embeddings": ids.iter().map(|i| (0..12).map(|d| ((i * 13 + d * 7) % 101) as f32 / 101.0 - 0.3).collect::<Vec<f32>>()).collect::<Vec<_>>(),
                    "documents": ids.iter().map(|i| format!("{name} passage {i}: prior authorization ✓")).collect::<Vec<_>>(),
                    "metadatas": ids.iter().map(|i| json!({"payer_id": format!("p{}", i % 5), "year": 2020 + (i % 6) as i64, "score": *i as f64 / 4.0, "active": i % 2 == 0})).collect::<Vec<_>>(),
                    "uris": ids.iter().map(|i| format!("s3://policies/{name}/{i}")).collect::<Vec<_>>(),
                })),
            )
            .await;
        }
        n_total += n;
    }

    let target = Server::start(&tmp.path().join("vectord"), &[], None);
    let target_base = target.base.clone();
    wait_ready(&client, &target_base).await;
    let import: [&str; 5] = [
        "import",
        "--from-chroma",
        &chroma_base,
        "--to",
        &target_base,
    ];
    let summary = vectord(&[&import[..], &["--batch", "250"]].concat());
    assert!(
        summary.starts_with(&format!(
            "3 collections, {n_total} records copied, 0 already present"
        )),
        "{summary}"
    );
    for db in ["default_database", "claims"] {
        let (src, dst) = (
            dump(&client, &chroma_base, db).await,
            dump(&client, &target_base, db).await,
        );
        assert_eq!(src.len(), dst.len(), "{db}: collections");
        for (s, d) in src.iter().zip(&dst) {
            assert_eq!(s.0, d.0);
            assert_eq!(s.1, d.1, "{}: space and ef_search", s.0);
            assert_eq!(s.1[1], json!(120), "{}: the ef_search set at creation", s.0);
            assert_eq!(s.2, d.2, "{}: metadata", s.0);
            assert_eq!(s.3, d.3, "{}: records differ", s.0);
        }
    }
    // A rerun finds everything present and copies nothing.
    let again = vectord(&import);
    assert!(
        again.starts_with(&format!(
            "3 collections, 0 records copied, {n_total} already present"
        )),
        "{again}"
    );

    // A target missing an early record: resuming at its count would skip the last record, so
    // the collection is copied from the start.
    let notes = call(
        &client,
        "GET",
        &format!("{target_base}/api/v2/tenants/default_tenant/databases/default_database/collections/notes"),
        None,
    )
    .await;
    let notes_url = format!(
        "{target_base}/api/v2/tenants/default_tenant/databases/default_database/collections/{}",
        notes["id"].as_str().expect("id")
    );
    call(
        &client,
        "POST",
        &format!("{notes_url}/delete"),
        Some(json!({"ids": ["notes-00002"]})),
    )
    .await;
    let repaired = vectord(&import);
    assert!(
        repaired.starts_with(&format!(
            "3 collections, 7 records copied, {} already present",
            n_total - 7
        )),
        "{repaired}"
    );
    // A record the source does not have: the counts differ after the copy, and the import
    // says so instead of succeeding.
    call(
        &client,
        "POST",
        &format!("{notes_url}/add"),
        Some(json!({"ids": ["stray"], "embeddings": [vec![0.5f32; 12]]})),
    )
    .await;
    let out = Command::new(BIN)
        .args(import)
        .output()
        .expect("run vectord");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "import passed with a stray record");
    assert!(
        err.contains(
            "default_tenant/default_database/notes: the source has 7 records but the target has 8"
        ),
        "{err}"
    );
    call(
        &client,
        "POST",
        &format!("{notes_url}/delete"),
        Some(json!({"ids": ["stray"]})),
    )
    .await;

    // NDJSON: export the migrated server, import into a fresh one, compare.
    let file = tmp.path().join("export.ndjson");
    let file_arg = file.display().to_string();
    vectord(&["export", "--from", &target_base, "--out", &file_arg]);
    drop(target);
    let fresh = Server::start(&tmp.path().join("fresh"), &[], None);
    let fresh_base = fresh.base.clone();
    wait_ready(&client, &fresh_base).await;
    let loaded = vectord(&["import", "--file", &file_arg, "--to", &fresh_base]);
    // Only the default tenant's databases are exported; both came across.
    assert!(
        loaded.starts_with(&format!("3 collections, {n_total} records copied")),
        "{loaded}"
    );
    for db in ["default_database", "claims"] {
        assert_eq!(
            dump(&client, &chroma_base, db).await,
            dump(&client, &fresh_base, db).await,
            "{db}: NDJSON round trip"
        );
    }
}
