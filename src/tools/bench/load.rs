//! The load phases: ingest (batches from an atomic counter, N connections) and closed-loop
//! query phases (each worker one connection, bodies built before the clock starts, every answer
//! checked against the exact ground truth).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use bytes::Bytes;
use hyper::Method;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value};

use super::client::{Conn, Target};
use super::dataset::Matrix;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// Percentiles (nearest rank) of request times in nanoseconds.
    pub fn from_nanos(mut v: Vec<u64>) -> Latency {
        if v.is_empty() {
            return Latency::default();
        }
        v.sort_unstable();
        let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1e6;
        Latency {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
            mean: v.iter().sum::<u64>() as f64 / v.len() as f64 / 1e6,
        }
    }
}

/// What the ingest phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    /// Vectors sent.
    pub vectors: usize,
    /// Records per add request.
    pub batch: usize,
    /// Connections adding at once.
    pub concurrency: usize,
    /// `base64` or `json` (embeddings in the add bodies).
    pub embedding_encoding: &'static str,
    /// Whether metadata was sent with the vectors.
    pub with_metadata: bool,
    /// First add sent → last add acknowledged.
    pub seconds: f64,
    /// Acknowledged vectors per second.
    pub vectors_per_s: f64,
    /// Per add request.
    pub batch_latency_ms: Latency,
    /// Last acknowledgement → `count` equal to the number of vectors sent.
    pub count_caught_up_s: f64,
}

/// Sends the whole base in batches over `concurrency` connections.
#[allow(clippy::too_many_arguments)]
pub async fn ingest(
    target: &Target,
    coll: &str,
    base: Arc<Matrix>,
    metadatas: Option<Arc<Vec<Map<String, Value>>>>,
    batch: usize,
    concurrency: usize,
    base64: bool,
) -> anyhow::Result<IngestReport> {
    let batch = batch.max(1);
    let batches = base.rows.div_ceil(batch);
    let next = Arc::new(AtomicUsize::new(0));
    let path: Arc<str> = Conn::open(target)
        .await?
        .scoped(&format!("/collections/{coll}/add"))
        .into();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (target, next, base, metas, path) = (
            target.clone(),
            next.clone(),
            base.clone(),
            metadatas.clone(),
            path.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&target).await?;
            let mut lat = Vec::new();
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return anyhow::Ok(lat);
                }
                let rows = b * batch..((b + 1) * batch).min(base.rows);
                let body = add_body(&base, metas.as_deref(), rows, base64);
                let t = Instant::now();
                conn.send(Method::POST, &path, Some(body))
                    .await?
                    .json(&format!("add batch {b}"))?;
                lat.push(t.elapsed().as_nanos() as u64);
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.context("ingest worker panicked")??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let acked = Instant::now();
    let mut conn = Conn::open(target).await?;
    let deadline = acked + Duration::from_secs(3600);
    loop {
        if conn.count(coll).await? >= base.rows as u64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(IngestReport {
        vectors: base.rows,
        batch,
        concurrency: concurrency.max(1),
        embedding_encoding: if base64 { "base64" } else { "json" },
        with_metadata: metadatas.is_some(),
        seconds,
        vectors_per_s: base.rows as f64 / seconds.max(1e-9),
        batch_latency_ms: Latency::from_nanos(lat),
        count_caught_up_s: acked.elapsed().as_secs_f64(),
    })
}

/// An add body for `rows`, as the chromadb 1.x Python client sends it.
fn add_body(
    base: &Matrix,
    metas: Option<&Vec<Map<String, Value>>>,
    rows: std::ops::Range<usize>,
    base64: bool,
) -> Bytes {
    let mut s = Vec::with_capacity(rows.len() * (base.dim * if base64 { 6 } else { 20 } + 16));
    s.extend_from_slice(b"{\"ids\":[");
    for (j, i) in rows.clone().enumerate() {
        if j > 0 {
            s.push(b',');
        }
        s.extend_from_slice(format!("\"{i}\"").as_bytes());
    }
    s.extend_from_slice(b"],\"embeddings\":[");
    let mut raw = Vec::with_capacity(base.dim * 4);
    for (j, i) in rows.clone().enumerate() {
        if j > 0 {
            s.push(b',');
        }
        if base64 {
            raw.clear();
            base.row(i)
                .iter()
                .for_each(|x| raw.extend_from_slice(&x.to_le_bytes()));
            s.push(b'"');
            s.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(&raw)
                    .as_bytes(),
            );
            s.push(b'"');
        } else {
            push_floats(&mut s, base.row(i));
        }
    }
    s.extend_from_slice(b"],\"metadatas\":");
    match metas {
        Some(m) => {
            let part: Vec<&Map<String, Value>> = rows.map(|i| &m[i]).collect();
            // Serialising plain JSON values into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut s, &part);
        }
        None => s.extend_from_slice(b"null"),
    }
    s.extend_from_slice(b",\"documents\":null,\"uris\":null}");
    s.into()
}

/// `[x, …]` with each f32 widened to f64, as Python's `.tolist()` writes it.
fn push_floats(s: &mut Vec<u8>, v: &[f32]) {
    s.push(b'[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(b',');
        }
        let _ = serde_json::to_writer(&mut *s, &(*x as f64));
    }
    s.push(b']');
}

/// Everything a query phase sends and checks, built before the clock starts.
pub struct QuerySet {
    /// One query body per query.
    pub bodies: Vec<Bytes>,
    /// `k` true ids per query (−1 padded).
    pub truth: Vec<i32>,
    /// Ids a complete answer must hold: min(k, rows passing the filter).
    pub expected: usize,
    /// Which base rows pass the filter (None: unfiltered).
    pub allowed: Option<Arc<Vec<bool>>>,
    /// Results per query.
    pub k: usize,
    /// Base rows (ids ≥ this name no row).
    pub n_base: usize,
}

impl QuerySet {
    /// Bodies for every query with an optional `where`.
    pub fn build(
        queries: &Matrix,
        k: usize,
        where_: Option<&Value>,
        truth: Vec<i32>,
        expected: usize,
        allowed: Option<Arc<Vec<bool>>>,
        n_base: usize,
    ) -> QuerySet {
        let w = where_
            .map(Value::to_string)
            .unwrap_or_else(|| "null".into());
        let bodies = (0..queries.rows)
            .into_par_iter()
            .map(|q| {
                let mut s = Vec::with_capacity(queries.dim * 20 + 128 + w.len());
                s.extend_from_slice(b"{\"ids\":null,\"where\":");
                s.extend_from_slice(w.as_bytes());
                s.extend_from_slice(b",\"where_document\":null,\"query_embeddings\":[");
                push_floats(&mut s, queries.row(q));
                s.extend_from_slice(
                    format!("],\"n_results\":{k},\"include\":[\"distances\"]}}").as_bytes(),
                );
                Bytes::from(s)
            })
            .collect();
        QuerySet {
            bodies,
            truth,
            expected,
            allowed,
            k,
            n_base,
        }
    }
}

/// One query phase's figures.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// Closed-loop workers (connections).
    pub concurrency: usize,
    /// The collection's `ef_search` during the phase.
    pub ef_search: u32,
    /// Answers received (HTTP 200).
    pub queries: u64,
    /// Failed requests (non-200 or transport errors).
    pub errors: u64,
    /// The first error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Measured wall time.
    pub seconds: f64,
    /// Answers per second.
    pub qps: f64,
    /// Returned ids (first k) in the true top-k ÷ Σ min(k, matching rows).
    pub recall_at_k: f64,
    /// Request latency, send → whole answer read.
    pub latency_ms: Latency,
    /// Answers with fewer than min(k, matching rows) ids.
    pub under_returned: u64,
    /// Answers with no ids.
    pub zero_results: u64,
    /// Mean ids per answer.
    pub results_per_query_mean: f64,
    /// Returned ids failing the filter (or naming no base row).
    pub wrong_filter: u64,
    /// Answers with at least one such id.
    pub wrong_filter_queries: u64,
    /// Returned ids naming no base row.
    pub unknown_ids: u64,
}

#[derive(Default)]
struct Tally {
    lat: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    hits: u64,
    expected: u64,
    under: u64,
    zero: u64,
    results: u64,
    wrong: u64,
    wrong_queries: u64,
    unknown: u64,
}

#[derive(serde::Deserialize)]
struct QueryAnswer {
    ids: Vec<Vec<String>>,
}

impl Tally {
    fn check(&mut self, set: &QuerySet, q: usize, body: &[u8]) {
        let ids = match serde_json::from_slice::<QueryAnswer>(body) {
            Ok(a) => a.ids.into_iter().next().unwrap_or_default(),
            Err(e) => {
                self.fail(format!("query answer not understood: {e}"));
                return;
            }
        };
        let truth = &set.truth[q * set.k..(q + 1) * set.k];
        self.expected += set.expected as u64;
        self.results += ids.len() as u64;
        if ids.is_empty() {
            self.zero += 1;
        }
        if ids.len() < set.expected {
            self.under += 1;
        }
        let mut wrong_here = false;
        for id in ids.iter().take(set.k) {
            match id.parse::<usize>() {
                Ok(i) if i < set.n_base => {
                    if truth.contains(&(i as i32)) {
                        self.hits += 1;
                    }
                    if set.allowed.as_ref().is_some_and(|a| !a[i]) {
                        self.wrong += 1;
                        wrong_here = true;
                    }
                }
                _ => {
                    self.unknown += 1;
                    if set.allowed.is_some() {
                        self.wrong += 1;
                        wrong_here = true;
                    }
                }
            }
        }
        if wrong_here {
            self.wrong_queries += 1;
        }
    }

    fn fail(&mut self, msg: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(msg);
        }
    }
}

/// How long a phase runs.
#[derive(Debug, Clone, Copy)]
pub enum Span {
    /// Exactly one pass over the queries, shared by the workers.
    OnePass,
    /// Closed loop for this long, each worker cycling through the queries from its own offset.
    For(Duration),
}

/// Runs `concurrency` closed-loop workers (after `warmup` unmeasured) and checks every answer.
pub async fn query_phase(
    target: &Target,
    coll: &str,
    set: Arc<QuerySet>,
    concurrency: usize,
    span: Span,
    warmup: Duration,
    ef_search: u32,
) -> anyhow::Result<PhaseReport> {
    let c = concurrency.max(1);
    let nq = set.bodies.len();
    let path: Arc<str> = Conn::open(target)
        .await?
        .scoped(&format!("/collections/{coll}/query"))
        .into();
    let barrier = Arc::new(tokio::sync::Barrier::new(c));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..c {
        let (target, set, path, barrier, next) = (
            target.clone(),
            set.clone(),
            path.clone(),
            barrier.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&target).await?;
            let mut i = w * nq / c;
            let warm_end = Instant::now() + warmup;
            while Instant::now() < warm_end {
                let _ = conn
                    .send(Method::POST, &path, Some(set.bodies[i % nq].clone()))
                    .await;
                i += 1;
            }
            barrier.wait().await;
            let start = Instant::now();
            let mut tally = Tally::default();
            loop {
                let q = match span {
                    Span::OnePass => {
                        let q = next.fetch_add(1, Ordering::Relaxed);
                        if q >= nq {
                            break;
                        }
                        q
                    }
                    Span::For(d) => {
                        if start.elapsed() >= d {
                            break;
                        }
                        i += 1;
                        i % nq
                    }
                };
                let t = Instant::now();
                match conn
                    .send(Method::POST, &path, Some(set.bodies[q].clone()))
                    .await
                {
                    Ok(r) if r.status == 200 => {
                        tally.lat.push(t.elapsed().as_nanos() as u64);
                        tally.check(&set, q, &r.body);
                    }
                    Ok(r) => tally.fail(format!(
                        "HTTP {} {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    )),
                    Err(e) => {
                        tally.fail(format!("{e:#}"));
                        // A dead connection makes every later request fail at once; stop.
                        if conn
                            .send(Method::GET, "/api/v2/heartbeat", None)
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
            anyhow::Ok((start, Instant::now(), tally))
        }));
    }
    let mut total = Tally::default();
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    for t in tasks {
        let (s, e, tl) = t.await.context("query worker panicked")??;
        first = Some(first.map_or(s, |f| f.min(s)));
        last = Some(last.map_or(e, |l| l.max(e)));
        total.lat.extend(tl.lat);
        total.errors += tl.errors;
        total.first_error = total.first_error.or(tl.first_error);
        total.hits += tl.hits;
        total.expected += tl.expected;
        total.under += tl.under;
        total.zero += tl.zero;
        total.results += tl.results;
        total.wrong += tl.wrong;
        total.wrong_queries += tl.wrong_queries;
        total.unknown += tl.unknown;
    }
    let seconds = match (first, last) {
        (Some(f), Some(l)) => (l - f).as_secs_f64(),
        _ => 0.0,
    };
    let answers = total.lat.len() as u64;
    Ok(PhaseReport {
        concurrency: c,
        ef_search,
        queries: answers,
        errors: total.errors,
        first_error: total.first_error,
        seconds,
        qps: answers as f64 / seconds.max(1e-9),
        recall_at_k: if total.expected == 0 {
            1.0
        } else {
            total.hits as f64 / total.expected as f64
        },
        latency_ms: Latency::from_nanos(total.lat),
        under_returned: total.under,
        zero_results: total.zero,
        results_per_query_mean: if answers == 0 {
            0.0
        } else {
            total.results as f64 / answers as f64
        },
        wrong_filter: total.wrong,
        wrong_filter_queries: total.wrong_queries,
        unknown_ids: total.unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let l = Latency::from_nanos((1..=100).map(|ms| ms * 1_000_000).collect());
        assert_eq!((l.p50, l.p99, l.max), (51.0, 99.0, 100.0));
    }

    #[test]
    fn bodies_are_valid_json_in_both_encodings() {
        let m = Matrix {
            rows: 2,
            dim: 2,
            data: vec![0.1, -2.0, 1e-12, 3.5],
        };
        let meta: Vec<Map<String, Value>> = vec![Map::new(), Map::new()];
        for b64 in [false, true] {
            let v: Value = serde_json::from_slice(&add_body(&m, Some(&meta), 0..2, b64)).unwrap();
            assert_eq!(v["ids"], serde_json::json!(["0", "1"]));
            if !b64 {
                assert_eq!(v["embeddings"][0][0].as_f64(), Some(0.1f32 as f64));
            } else {
                let want = [1e-12f32.to_le_bytes(), 3.5f32.to_le_bytes()].concat();
                let got = v["embeddings"][1].as_str().unwrap();
                assert_eq!(
                    base64::engine::general_purpose::STANDARD
                        .decode(got)
                        .unwrap(),
                    want
                );
            }
        }
        let set = QuerySet::build(
            &m,
            3,
            Some(&serde_json::json!({"a": 1})),
            vec![],
            3,
            None,
            2,
        );
        let v: Value = serde_json::from_slice(&set.bodies[1]).unwrap();
        assert_eq!(v["where"]["a"], 1);
        assert_eq!(v["n_results"], 3);
        assert_eq!(v["query_embeddings"][0][1].as_f64(), Some(3.5));
    }

    #[test]
    fn answers_are_scored_for_recall_under_return_and_filter() {
        let m = Matrix {
            rows: 1,
            dim: 1,
            data: vec![1.0],
        };
        let allowed = Arc::new(vec![true, false, true, true]);
        let set = QuerySet::build(&m, 2, None, vec![0, 2], 2, Some(allowed), 4);
        let mut t = Tally::default();
        t.check(&set, 0, br#"{"ids":[["0","1"]],"distances":[[0.1,0.2]]}"#);
        t.check(&set, 0, br#"{"ids":[["9"]]}"#);
        assert_eq!(
            (
                t.hits,
                t.expected,
                t.under,
                t.wrong,
                t.wrong_queries,
                t.unknown
            ),
            (1, 4, 1, 2, 2, 1)
        );
    }
}
