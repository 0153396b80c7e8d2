//! Follow-lag measurement (not a test: `#[ignore]`, prints figures, asserts nothing timed).
//!
//! ```bash
//! VECTORD_TEST_PG_URL=postgresql://postgres@127.0.0.1:PORT/postgres \
//!   cargo test --release --test it -- --ignored --nocapture sync::bench
//! ```
//! A writer inserts production-shaped rows (1536-d) at a steady rate (`VECTORD_BENCH_RATE`,
//! default 200/s) for `VECTORD_BENCH_SECS` (default 30 s) while the logical follower runs; a
//! reader notes when each row becomes visible in the collection. Lag = visible − commit returned.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::sync::*;
use parking_lot::Mutex;
use vectord::types::{GetRequest, Include};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run explicitly with --ignored"]
async fn follow_lag_at_a_steady_rate() {
    let Some(base) = pg_url() else { return };
    let rate: u64 = std::env::var("VECTORD_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let secs: u64 = std::env::var("VECTORD_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let (url, c) = fresh_db(&base, "sync_bench_lag").await;
    let dir = tempfile::tempdir().unwrap();
    let job = job("sync_bench_lag", &url, "logical");
    let run = start(dir.path(), &job);
    // Let the (empty) snapshot finish and streaming start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pending: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let lags: Arc<Mutex<Vec<f64>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (pending, lags, done, coll) = (
            Arc::clone(&pending),
            Arc::clone(&lags),
            Arc::clone(&done),
            Arc::clone(&run.coll),
        );
        std::thread::spawn(move || loop {
            let ids: Vec<String> = pending.lock().keys().cloned().collect();
            if !ids.is_empty() {
                let got = coll
                    .get(&GetRequest {
                        ids: Some(ids),
                        include: Include {
                            documents: false,
                            metadatas: false,
                            ..Include::default()
                        },
                        ..GetRequest::default()
                    })
                    .unwrap();
                let now = Instant::now();
                let mut p = pending.lock();
                for id in got.ids {
                    if let Some(t) = p.remove(&id) {
                        lags.lock().push(now.duration_since(t).as_secs_f64());
                    }
                }
            } else if done.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        })
    };
    let mut r = rng(7);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start_at = Instant::now();
    let mut next = start_at;
    let mut n = 0u64;
    while start_at.elapsed() < Duration::from_secs(secs) {
        let id = insert(&c, &mut r, true).await;
        pending.lock().insert(id, Instant::now());
        n += 1;
        next += interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
    let achieved = n as f64 / start_at.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pending.lock().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().unwrap();
    let mut l = lags.lock().clone();
    l.sort_by(f64::total_cmp);
    let q = |p: f64| l[((l.len() as f64 - 1.0) * p).round() as usize] * 1000.0;
    println!(
        "follow lag over {} inserts at {achieved:.0}/s (target {rate}/s): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; unseen {}",
        l.len(),
        q(0.5),
        q(0.99),
        q(1.0),
        pending.lock().len()
    );
    run.stop().await;
}
