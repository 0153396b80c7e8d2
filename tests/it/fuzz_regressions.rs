//! Replays every seed and every crash regression input kept under `tests/fuzz/` through the same
//! functions the `cargo fuzz` targets call (`vectord::fuzzing`), on stable, so CI checks them
//! without nightly or libFuzzer. A file in `tests/fuzz/regressions/<target>/` is an input that
//! once crashed that target; the fix is named in RELIABILITY.md, section 4.
//!
//! Built only with the `fuzzing` feature (`tests/run.sh` enables it), which compiles those
//! entry points into the library.
#![cfg(feature = "fuzzing")]

use std::fs;
use std::path::PathBuf;

/// Every input file of `target`, seeds then regressions; fails when there is none, so a moved
/// folder cannot turn this test into a no-op.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut out = Vec::new();
    for kind in ["seeds", "regressions"] {
        let dir = root.join(kind).join(target);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths.into_iter().filter(|p| p.is_file()) {
            let bytes = fs::read(&p).unwrap();
            out.push((p, bytes));
        }
    }
    assert!(!out.is_empty(), "no seeds for fuzz target {target}");
    out
}

fn replay(target: &str, run: fn(&[u8])) {
    for (path, bytes) in inputs(target) {
        let outcome = std::panic::catch_unwind(|| run(&bytes));
        assert!(outcome.is_ok(), "{target}: {} panics", path.display());
    }
}

#[test]
fn wal_inputs() {
    replay("wal", vectord::fuzzing::wal);
}

#[test]
fn segment_inputs() {
    replay("segment", vectord::fuzzing::segment);
}

#[test]
fn filter_inputs() {
    replay("filter", vectord::fuzzing::filter);
}

#[test]
fn request_inputs() {
    replay("request", vectord::fuzzing::request);
}
