//! `vectord bench` end to end: a small generated dataset (3,000 × 32-d, four filters) driven
//! against a vectord server started here and against a real Chroma 1.5.9 server
//! (`VECTORD_TEST_CHROMA_BIN`, as in `tools::migrate_chroma`), checking recall, filter
//! correctness and the JSON / SVG outputs.

use std::path::Path;
use std::process::Command;

use crate::support::server::{chroma_bin, start_chroma, Server, BIN};
use serde_json::Value;

/// Runs `vectord bench` on the generated set against `url` and returns its JSON report.
fn bench(url: &str, dir: &Path, extra: &[&str]) -> Value {
    let json = dir.join("report.json");
    let chart = dir.join("chart.svg");
    let out = Command::new(BIN)
        .args([
            "bench",
            "--generate",
            "3000",
            "--dim",
            "32",
            "--clusters",
            "20",
            "--num-queries",
            "200",
        ])
        .args(["--url", url, "--label", "server-under-test", "--wait", "90"])
        .args([
            "--duration",
            "0",
            "--warmup",
            "0",
            "--concurrency",
            "1,4",
            "--ef-sweep",
            "10,100",
        ])
        .args([
            "--filter-concurrency",
            "2",
            "--batch",
            "500",
            "--ingest-concurrency",
            "2",
        ])
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("--json")
        .arg(&json)
        .arg("--chart")
        .arg(&chart)
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run vectord bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "vectord bench failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("recall@10") && stdout.contains("payer_1pct"),
        "table: {stdout}"
    );
    let svg = std::fs::read_to_string(&chart).expect("chart written");
    assert!(
        svg.starts_with("<svg") && svg.contains("recall@10") && svg.contains("server-under-test")
    );
    serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
        .expect("valid JSON")
}

/// What every compatible server must show on this set.
fn check(report: &Value, expect_ingest: bool) {
    assert_eq!(report["tool"], "vectord bench");
    assert_eq!(report["dataset"]["vectors"], 3000);
    assert_eq!(report["dataset"]["queries"], 200);
    let run = &report["runs"][0];
    if expect_ingest {
        let ingest = &run["ingest"];
        assert_eq!(ingest["vectors"], 3000);
        assert!(ingest["vectors_per_s"].as_f64().unwrap() > 0.0);
        assert_eq!(ingest["with_metadata"], true);
    }
    let phases = run["queries"].as_array().unwrap();
    assert_eq!(phases.len(), 2);
    for p in phases {
        // One pass over 200 queries, every answer 200 OK.
        assert_eq!(p["queries"], 200, "{p}");
        assert_eq!(p["errors"], 0, "{p}");
        assert!(p["recall_at_k"].as_f64().unwrap() >= 0.9, "{p}");
        assert_eq!(p["under_returned"], 0, "{p}");
        for key in ["p50", "p95", "p99", "max"] {
            assert!(p["latency_ms"][key].as_f64().unwrap() > 0.0, "{p}");
        }
        assert!(p["qps"].as_f64().unwrap() > 0.0);
    }
    let sweep = run["ef_sweep"].as_array().unwrap();
    assert_eq!(
        sweep
            .iter()
            .map(|p| p["ef_search"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [10, 100]
    );
    assert!(sweep[1]["recall_at_k"].as_f64().unwrap() >= 0.9);
    let filtered = run["filtered"].as_array().unwrap();
    let names: Vec<&str> = filtered
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["payer_1pct", "payer_30pct", "payer_in3", "recent_active"]
    );
    for f in filtered {
        let sel = f["selectivity"].as_f64().unwrap();
        assert!(sel > 0.0 && sel < 0.5, "{f}");
        let p = &f["phases"][0];
        assert_eq!(p["queries"], 200, "{f}");
        assert_eq!(p["wrong_filter"], 0, "{f}");
        assert_eq!(p["under_returned"], 0, "{f}");
        assert!(p["recall_at_k"].as_f64().unwrap() >= 0.9, "{f}");
    }
}

#[test]
fn bench_against_vectord_reports_recall_filters_json_and_chart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&tmp.path().join("data"), &[], None);
    let url = &server.base;
    let first = bench(url, tmp.path(), &[]);
    check(&first, true);
    assert_eq!(first["dataset"]["ground_truth_cached"], false);
    // A second run reuses the loaded collection and the cached ground truth.
    let second = bench(url, tmp.path(), &["--skip-ingest"]);
    check(&second, false);
    assert_eq!(second["dataset"]["ground_truth_cached"], true);
    assert!(second["runs"][0]["ingest"].is_null());
}

#[test]
fn bench_against_real_chroma() {
    let Some(chroma) = chroma_bin() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_chroma, url) = start_chroma(&chroma, &tmp.path().join("chroma"));
    let report = bench(&url, tmp.path(), &[]);
    check(&report, true);
    let run = &report["runs"][0];
    assert_eq!(
        run["ingest"]["embedding_encoding"], "base64",
        "Chroma's pre-flight offers base64"
    );
    assert!(
        run["server_version"].as_str().unwrap().starts_with("1."),
        "{}",
        run["server_version"]
    );
}
