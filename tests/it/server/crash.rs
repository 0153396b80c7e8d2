//! `kill -9` of the real `vectord` server under concurrent HTTP writers and readers.
//!
//! Each round starts the binary, runs writers (adds, upserts, deletes on ids each writer owns)
//! and readers (get, query), kills the process with SIGKILL at a random (seeded) moment,
//! restarts it and checks that every acknowledged write and every acknowledged delete holds,
//! bit for bit; a write in flight at the kill is all-or-nothing. The server runs with
//! 200-row memtables (`--memtable-rows`), so flushes and compactions happen throughout the
//! loop and kills land inside them too. CI runs a few kills; the long run is
//! `VECTORD_KILLS=150 cargo test --features failpoints --test it -- --nocapture server::crash`
//! (figures in RELIABILITY.md). `VECTORD_CRASH_SEED` replays a run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::server::{crash_seed, create_collection, post, vector_for, Server};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const DIM: usize = 16;
const WRITERS: u64 = 4;
const READERS: u64 = 2;
const DEFAULT_KILLS: u64 = 6;
/// Memtable rows per flush: small, so that the rows a round writes are flushed (and the
/// segments compacted) while the kills happen. The default (65,536) never flushed here.
const MEMTABLE_ROWS: &str = "200";
/// The server logs flushes and compactions at info; everything else at warn.
const SERVER_LOG: &str = "warn,vectord::engine=info";

/// What a kill left in the collection's folder: WAL files (more than one: a flush had
/// rotated the log and not yet published its segment or removed the covered files) and
/// segment folders the MANIFEST does not name (a flush or compaction was writing one, or a
/// compaction had swapped its inputs out and not yet removed them).
fn left_by_kill(coll_dir: &std::path::Path) -> (usize, usize) {
    let count = |d: &std::path::Path| std::fs::read_dir(d).map_or(0, |r| r.count());
    let wal = count(&coll_dir.join("wal"));
    let manifest: Value = std::fs::read(coll_dir.join("MANIFEST"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let published: BTreeSet<String> = manifest["segments"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["id"].as_u64())
                .map(|id| format!("{id:08}"))
                .collect()
        })
        .unwrap_or_default();
    let unpublished = std::fs::read_dir(coll_dir.join("segments")).map_or(0, |r| {
        r.filter_map(Result::ok)
            .filter(|e| !published.contains(&e.file_name().to_string_lossy().to_string()))
            .count()
    });
    (wal, unpublished)
}

/// Ids a write changes, each with its version before and after (`None`: absent).
type Change = BTreeMap<String, (Option<u64>, Option<u64>)>;

/// What one writer knows: each id's acknowledged version (absent = deleted or never added).
#[derive(Default)]
struct WriterModel {
    acked: BTreeMap<String, u64>,
    /// The one write in flight when the server died: ids → (version before, version after).
    pending: Option<Change>,
    next_id: u64,
    next_version: u64,
}

fn record_json(ids: &[(String, u64)], w: u64) -> Value {
    json!({
        "ids": ids.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        "embeddings": ids.iter().map(|(id, v)| vector_for(id, *v, DIM)).collect::<Vec<_>>(),
        "documents": ids.iter().map(|(id, v)| format!("doc {id} v{v}")).collect::<Vec<_>>(),
        "metadatas": ids.iter().map(|(_, v)| json!({"v": *v as i64, "w": w as i64})).collect::<Vec<_>>(),
    })
}

/// One write: returns the ids it changes with before/after versions, and the request.
fn next_write(rng: &mut StdRng, m: &mut WriterModel, w: u64) -> (&'static str, Value, Change) {
    let live: Vec<String> = m.acked.keys().cloned().collect();
    let roll = rng.random_range(0..100);
    if live.len() < 4 || roll < 50 {
        let n = rng.random_range(1..=8);
        let ids: Vec<(String, u64)> = (0..n)
            .map(|_| {
                m.next_id += 1;
                (format!("w{w}-{}", m.next_id), 0)
            })
            .collect();
        let change = ids
            .iter()
            .map(|(id, v)| (id.clone(), (None, Some(*v))))
            .collect();
        ("add", record_json(&ids, w), change)
    } else if roll < 80 {
        // Upsert some live ids to a new version, and one new id.
        m.next_version += 1;
        let v = m.next_version;
        let n = rng.random_range(1..=4.min(live.len()));
        let mut ids: BTreeSet<String> = (0..n)
            .map(|_| live[rng.random_range(0..live.len())].clone())
            .collect();
        m.next_id += 1;
        ids.insert(format!("w{w}-{}", m.next_id));
        let ids: Vec<(String, u64)> = ids.into_iter().map(|id| (id, v)).collect();
        let change = ids
            .iter()
            .map(|(id, v)| (id.clone(), (m.acked.get(id).copied(), Some(*v))))
            .collect();
        ("upsert", record_json(&ids, w), change)
    } else {
        let n = rng.random_range(1..=3.min(live.len()));
        let ids: BTreeSet<String> = (0..n)
            .map(|_| live[rng.random_range(0..live.len())].clone())
            .collect();
        let change = ids
            .iter()
            .map(|id| (id.clone(), (m.acked.get(id).copied(), None)))
            .collect();
        ("delete", json!({ "ids": ids }), change)
    }
}

/// What the server holds for `ids`: id → version, checking vector, document and metadata agree.
async fn fetch(
    client: &reqwest::Client,
    base: &str,
    coll: &str,
    ids: &[String],
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(500) {
        let (status, body) = post(
            client,
            base,
            coll,
            "get",
            &json!({"ids": chunk, "include": ["embeddings", "documents", "metadatas"]}),
        )
        .await
        .expect("get after restart");
        assert_eq!(status, 200, "get after restart: {body}");
        let got_ids = body["ids"].as_array().expect("ids");
        for (i, id) in got_ids.iter().enumerate() {
            let id = id.as_str().expect("id").to_string();
            let v = body["metadatas"][i]["v"].as_u64().expect("metadata v");
            let emb: Vec<f32> = body["embeddings"][i]
                .as_array()
                .expect("embedding")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect();
            let want = vector_for(&id, v, DIM);
            assert!(
                emb.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
                    && emb.len() == want.len(),
                "{id} v{v}: vector differs from the one written"
            );
            assert_eq!(
                body["documents"][i].as_str(),
                Some(format!("doc {id} v{v}").as_str()),
                "{id}: document does not match its metadata version"
            );
            out.insert(id, v);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_over_http_loses_no_acknowledged_write() {
    let kills: u64 = std::env::var("VECTORD_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_KILLS);
    let seed = crash_seed();
    println!(
        "server kill -9 test: {kills} kills, seed {seed} (replay with VECTORD_CRASH_SEED={seed})"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let models: Vec<Arc<Mutex<WriterModel>>> = (0..WRITERS)
        .map(|_| Arc::new(Mutex::new(WriterModel::default())))
        .collect();
    let (mut acked_writes, mut in_flight_applied, mut in_flight_lost) = (0u64, 0u64, 0u64);
    let mut coll = String::new();
    let log = tmp.path().join("server.log");
    let (mut kills_in_flush, mut kills_with_unpublished) = (0u64, 0u64);
    let started = std::time::Instant::now();
    for round in 0..=kills {
        let mut server =
            Server::start_logged(&data, &["--memtable-rows", MEMTABLE_ROWS], &log, SERVER_LOG);
        server.ready(&client).await;
        let base = server.base.clone();
        if round == 0 {
            coll = create_collection(&client, &base, "crash").await;
        }

        // Check the previous rounds' acknowledged state, and settle the writes in flight.
        for (w, model) in models.iter().enumerate() {
            let (pending, ids) = {
                let mut m = model.lock();
                let pending = m.pending.take().unwrap_or_default();
                let ids: Vec<String> = m
                    .acked
                    .keys()
                    .chain(pending.keys())
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                (pending, ids)
            };
            let got = fetch(&client, &base, &coll, &ids).await;
            let mut m = model.lock();
            for id in &ids {
                if pending.contains_key(id) {
                    continue;
                }
                assert_eq!(
                    got.get(id),
                    m.acked.get(id),
                    "round {round}, writer {w}: acknowledged state of {id} lost (seed {seed})"
                );
            }
            if !pending.is_empty() {
                let applied = pending
                    .iter()
                    .all(|(id, (_, after))| got.get(id) == after.as_ref());
                let not_applied = pending
                    .iter()
                    .all(|(id, (before, _))| got.get(id) == before.as_ref());
                assert!(
                    applied || not_applied,
                    "round {round}, writer {w}: the write in flight is half-applied: {pending:?} vs {got:?} (seed {seed})"
                );
                if applied {
                    in_flight_applied += 1;
                } else {
                    in_flight_lost += 1;
                }
                for (id, (before, after)) in pending {
                    match if applied { after } else { before } {
                        Some(v) => m.acked.insert(id, v),
                        None => m.acked.remove(&id),
                    };
                }
            }
        }
        if round == kills {
            server.stop();
            break;
        }

        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let (model, client, base, coll) = (
                Arc::clone(&models[w as usize]),
                client.clone(),
                base.clone(),
                coll.clone(),
            );
            let (stop, acks, failures) =
                (Arc::clone(&stop), Arc::clone(&acks), Arc::clone(&failures));
            let mut wrng = StdRng::seed_from_u64(seed ^ (round << 8) ^ w);
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let (op, body, change) = next_write(&mut wrng, &mut model.lock(), w);
                    model.lock().pending = Some(change.clone());
                    match post(&client, &base, &coll, op, &body).await {
                        Ok((200..=299, _)) => {
                            let mut m = model.lock();
                            m.pending = None;
                            for (id, (_, after)) in change {
                                match after {
                                    Some(v) => m.acked.insert(id, v),
                                    None => m.acked.remove(&id),
                                };
                            }
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((status, body)) => {
                            failures.lock().push(format!("{op}: {status} {body}"));
                            model.lock().pending = None;
                            return;
                        }
                        // The server died with this write in flight: it stays pending.
                        Err(_) => return,
                    }
                }
            }));
        }
        for r in 0..READERS {
            let (client, base, coll) = (client.clone(), base.clone(), coll.clone());
            let (stop, acks, failures) =
                (Arc::clone(&stop), Arc::clone(&acks), Arc::clone(&failures));
            let mut rrng = StdRng::seed_from_u64(seed ^ (round << 8) ^ (100 + r));
            tasks.push(tokio::spawn(async move {
                // Queries need the collection's dimension: start after the first write.
                while acks.load(Ordering::Relaxed) == 0 && !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                while !stop.load(Ordering::Relaxed) {
                    let q = vector_for("query", rrng.random_range(0..1000), DIM);
                    let (op, body) = if rrng.random_bool(0.5) {
                        ("query", json!({"query_embeddings": [q], "n_results": 5}))
                    } else {
                        ("get", json!({"limit": 20, "include": ["metadatas"]}))
                    };
                    match post(&client, &base, &coll, op, &body).await {
                        Ok((200, _)) => {}
                        Ok((status, body)) => {
                            failures.lock().push(format!("{op}: {status} {body}"));
                            return;
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        // Kill once the writers are under way, at a random moment.
        while acks.load(Ordering::Relaxed) < WRITERS && failures.lock().is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        let (wal_files, unpublished) = left_by_kill(&data.join("collections").join(&coll));
        kills_in_flush += u64::from(wal_files > 1);
        kills_with_unpublished += u64::from(unpublished > 0);
        for t in tasks {
            t.await.expect("client task");
        }
        let failures = failures.lock().clone();
        assert!(
            failures.is_empty(),
            "round {round}: requests failed: {failures:?}"
        );
        acked_writes += acks.load(Ordering::Relaxed);
    }
    let live: usize = models.iter().map(|m| m.lock().acked.len()).sum();
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let (flushes, compactions) = (
        logged.matches("memtable flushed").count(),
        logged.matches("segments compacted").count(),
    );
    let segments = {
        let manifest: Value = std::fs::read(data.join("collections").join(&coll).join("MANIFEST"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        manifest["segments"].as_array().map_or(0, Vec::len)
    };
    println!(
        "server kill -9 test: {kills} kills survived, {acked_writes} acknowledged writes checked, \
         {live} live ids at the end; writes in flight at a kill: {in_flight_applied} applied, \
         {in_flight_lost} not applied; {flushes} flushes and {compactions} compactions \
         completed, kills with a flush unfinished (more than one WAL file) \
         {kills_in_flush}, kills with a segment folder the MANIFEST does not name {kills_with_unpublished}, \
         {segments} segments at the end; {:.1} s (seed {seed})",
        started.elapsed().as_secs_f64()
    );
}
