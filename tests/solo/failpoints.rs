//! Deterministic failure injection (`--features failpoints`): every failure in the write and
//! flush paths leaves either the old or the new state, never a mix, and nothing acknowledged is
//! lost. One test function runs the scenarios in sequence because failpoints are process-wide;
//! for the same reason each test holds the binary to itself (`solo()`, see `main.rs`). Compiled
//! with `--features failpoints` only (its `mod` line in `main.rs`).

use std::path::Path;

use vectord::engine::{Collection, CollectionConfig, EngineError};
use vectord::types::{GetRequest, Include, Record, WriteBatch};

fn batch(from: usize, n: usize) -> WriteBatch {
    WriteBatch::Add(
        (from..from + n)
            .map(|i| Record {
                id: format!("r{i}"),
                embedding: vec![i as f32, 1.0, -1.0],
                metadata: None,
                document: Some(format!("doc {i}")),
                uri: None,
            })
            .collect(),
    )
}

fn ids(c: &Collection) -> Vec<String> {
    c.get(&GetRequest {
        include: Include::ALL,
        ..Default::default()
    })
    .unwrap()
    .ids
}

fn expected(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("r{i}")).collect()
}

fn segment_dirs(path: &Path) -> usize {
    std::fs::read_dir(path.join("segments"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn failures_leave_old_or_new_state() {
    let _solo = crate::solo();
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let c = Collection::create(&path, CollectionConfig::default()).unwrap();
    c.set_memtable_rows(1_000_000);
    c.apply(batch(0, 10), None).unwrap();

    // A segment write that fails: the flush reports it, data stays readable, and the next
    // flush (failpoint off) succeeds.
    fail::cfg("segment::write", "return").unwrap();
    assert!(c.flush().is_err());
    assert_eq!(ids(&c), expected(10));
    c.apply(batch(10, 5), None).unwrap();
    fail::remove("segment::write");
    assert!(c.flush().unwrap());
    assert_eq!(c.segment_count(), 1);
    assert_eq!(ids(&c), expected(15));

    // A crash between writing the segment and swapping the MANIFEST: the reopened collection
    // still has everything (from the WAL) and the orphaned segment folder is gone.
    c.apply(batch(15, 5), None).unwrap();
    fail::cfg("collection::flush::before_manifest", "return").unwrap();
    assert!(c.flush().is_err());
    fail::remove("collection::flush::before_manifest");
    assert_eq!(segment_dirs(&path), 2);
    // The running collection keeps flushing after that failure (the next MANIFEST includes the
    // segment the failed one did not publish).
    c.apply(batch(20, 1), None).unwrap();
    assert!(c.flush().unwrap());
    assert_eq!(c.segment_count(), 3);
    drop(c);
    let c = Collection::open(&path).unwrap();
    assert_eq!(ids(&c), expected(21));
    assert_eq!(c.segment_count(), 3);
    drop(c);
    // Now the crash itself: fail before the MANIFEST swap and reopen without retrying.
    let c = Collection::open(&path).unwrap();
    c.apply(batch(21, 2), None).unwrap();
    fail::cfg("collection::flush::before_manifest", "return").unwrap();
    assert!(c.flush().is_err());
    fail::remove("collection::flush::before_manifest");
    assert_eq!(segment_dirs(&path), 4);
    drop(c);
    let c = Collection::open(&path).unwrap();
    assert_eq!(
        segment_dirs(&path),
        3,
        "the unpublished segment is removed at open"
    );
    assert_eq!(ids(&c), expected(23));
    assert!(c.flush().unwrap());
    assert_eq!(c.segment_count(), 4);

    // An append that fails: nothing is applied, and the next write goes through.
    fail::cfg("wal::append", "1*return").unwrap();
    assert!(matches!(
        c.apply(batch(23, 3), None),
        Err(EngineError::Io { .. })
    ));
    assert_eq!(ids(&c), expected(23));
    c.apply(batch(23, 3), None).unwrap();
    fail::remove("wal::append");

    // A sync that fails: that write is refused and dropped (the log is cut back to its last
    // durable record, fsync-gate), and the next write goes through without a reopen.
    fail::cfg("wal::sync", "1*return").unwrap();
    assert!(matches!(
        c.apply(batch(26, 2), None),
        Err(EngineError::SyncFailed(_))
    ));
    fail::remove("wal::sync");
    assert_eq!(ids(&c), expected(26));
    c.apply(batch(26, 2), None).unwrap();
    drop(c);
    let c = Collection::open(&path).unwrap();
    assert_eq!(ids(&c), expected(28));
    c.apply(batch(30, 1), None).unwrap();

    // A compaction that dies before its swap: the merged segment is an orphan, removed at the
    // next open, and every row is still served from the old segments.
    c.flush().unwrap();
    let segments_before = c.segment_count();
    assert!(segments_before >= 2);
    fail::cfg("collection::compact::before_swap", "return").unwrap();
    assert!(c.compact().is_err());
    fail::remove("collection::compact::before_swap");
    assert_eq!(c.segment_count(), segments_before);
    let before = ids(&c);
    drop(c);
    let c = Collection::open(&path).unwrap();
    assert_eq!(
        segment_dirs(&path),
        segments_before,
        "the orphaned merge is removed at open"
    );
    assert_eq!(ids(&c), before);
    assert!(c.compact().unwrap());
    assert_eq!(c.segment_count(), 1);
    assert_eq!(ids(&c), before);
    scenario.teardown();
}

// ---- The crash matrix ------------------------------------------------------------------------
//
// Every failpoint on the durable write path, each in two modes: `error` (the site fails once and
// the process goes on, then reopens) and `abort` (a child process dies at the site, as a crash
// would). After either, the data folder must open through the catalog with no failed collection,
// every acknowledged write must be there bit for bit, every acknowledged delete must hold, and a
// write that was not acknowledged must be all-or-nothing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use crate::child::child_test;
use vectord::catalog::{Catalog, NewCollection};
use vectord::types::{DeleteSelector, SourcePosition};

/// Every crash-matrix failpoint and the step of the workload that reaches it.
const MATRIX: &[&str] = &[
    "wal::append",
    "wal::sync",
    "wal::rotate",
    "segment::write",
    "segment::write::vectors",
    "segment::write::codes",
    "segment::write::records",
    "segment::write::graph",
    "segment::publish",
    "segment::published",
    "segment::tombstones",
    "collection::flush::before_manifest",
    "replace::MANIFEST",
    "replace::MANIFEST::renamed",
    "collection::flush::after_manifest",
    "collection::compact::before_swap",
    "collection::compact::after_swap",
    "collection::apply::checkpoint",
    "replace::catalog.json",
    "replace::catalog.json::renamed",
];
/// Failpoints reached only while recovering from a failed WAL sync: each case arms `wal::sync`
/// to fail once (`trigger>failpoint`), so the workload's next sync fails and the recovery that
/// follows hits the failpoint.
const MATRIX_RECOVERY: &[&str] = &[
    "wal::sync>wal::cut_back",
    "wal::sync>collection::recover::rebuild",
];
const MATRIX_CHILD_DIR: &str = "VECTORD_MATRIX_CHILD_DIR";
const MATRIX_CHILD_FP: &str = "VECTORD_MATRIX_CHILD_FAILPOINT";

fn matrix_record(n: usize) -> Record {
    let mut m = vectord::types::Metadata::new();
    m.insert("n".into(), vectord::types::MetadataValue::Int(n as i64));
    Record {
        id: format!("r{n}"),
        embedding: (0..8).map(|d| (n * 8 + d) as f32 / 7.0 - 3.5).collect(),
        metadata: Some(m),
        document: Some(format!("doc {n}")),
        uri: None,
    }
}

fn new_collection(name: &str) -> NewCollection {
    NewCollection {
        tenant: "default_tenant".into(),
        database: "default_database".into(),
        name: name.into(),
        metadata: None,
        configuration: None,
        schema: None,
        config: CollectionConfig::default(),
    }
}

/// One acknowledged (or attempted) step of the workload.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Add(usize, usize),
    Delete(usize, usize),
    Position(String),
    Created(String),
    Flush(usize),
    Compact,
}

impl Step {
    fn line(&self) -> String {
        match self {
            Step::Add(a, b) => format!("add {a} {b}"),
            Step::Delete(a, b) => format!("del {a} {b}"),
            Step::Position(p) => format!("pos {p}"),
            Step::Created(n) => format!("coll {n}"),
            Step::Flush(r) => format!("flush {r}"),
            Step::Compact => "compact now".into(),
        }
    }
    fn parse(s: &str) -> Option<Step> {
        let mut p = s.split_whitespace();
        Some(match (p.next()?, p.next()?, p.next()) {
            ("add", a, Some(b)) => Step::Add(a.parse().ok()?, b.parse().ok()?),
            ("del", a, Some(b)) => Step::Delete(a.parse().ok()?, b.parse().ok()?),
            ("pos", x, None) => Step::Position(x.into()),
            ("coll", x, None) => Step::Created(x.into()),
            ("flush", x, None) => Step::Flush(x.parse().ok()?),
            ("compact", _, None) => Step::Compact,
            _ => return None,
        })
    }
}

/// Builds the folder every matrix case starts from: a catalog with collection `main` holding
/// r0..r100 in one flushed segment with tombstones, plus WAL records after it.
fn matrix_setup(dir: &Path) {
    let cat = Catalog::open(dir).unwrap();
    let (entry, _) = cat
        .create_collection(new_collection("main"), false)
        .unwrap();
    let c = entry.engine().unwrap();
    c.set_memtable_rows(1_000_000);
    c.apply(WriteBatch::Add((0..100).map(matrix_record).collect()), None)
        .unwrap();
    assert!(c.flush().unwrap());
    c.apply(
        WriteBatch::Add((100..120).map(matrix_record).collect()),
        None,
    )
    .unwrap();
}

fn delete_range(a: usize, b: usize) -> WriteBatch {
    WriteBatch::Delete(DeleteSelector {
        ids: Some((a..b).map(|n| format!("r{n}")).collect()),
        filter: None,
        limit: None,
    })
}

/// The steps the matrix runs, reaching every failpoint: appends, a checkpoint, deletes on a
/// flushed segment (tombstones), flushes (WAL rotation, segment files, MANIFEST), a compaction
/// and catalog writes. `ack` is called after each acknowledged step, `attempt` before each.
fn matrix_workload(dir: &Path, attempt: &mut dyn FnMut(&Step), ack: &mut dyn FnMut(&Step)) {
    let Ok(cat) = Catalog::open(dir) else { return };
    let Ok(entry) = cat.collection_by_name("default_tenant", "default_database", "main") else {
        return;
    };
    let Ok(c) = entry.engine().cloned() else {
        return;
    };
    c.set_memtable_rows(1_000_000);
    let mut next = 1000;
    for round in 0..2 {
        let s = Step::Add(next, next + 20);
        attempt(&s);
        if c.apply(
            WriteBatch::Add((next..next + 20).map(matrix_record).collect()),
            None,
        )
        .is_ok()
        {
            ack(&s);
        }
        next += 20;
        let s = Step::Delete(10 * round, 10 * round + 5);
        attempt(&s);
        if c.apply(delete_range(10 * round, 10 * round + 5), None)
            .is_ok()
        {
            ack(&s);
        }
        let s = Step::Position(format!("p{round}"));
        attempt(&s);
        let pos = SourcePosition(format!("p{round}"));
        if c.apply(WriteBatch::Upsert(vec![]), Some(pos)).is_ok() {
            ack(&s);
        }
        let s = Step::Flush(round);
        attempt(&s);
        if c.flush().is_ok() {
            ack(&s);
        }
        let s = Step::Created(format!("extra{round}"));
        attempt(&s);
        if cat
            .create_collection(new_collection(&format!("extra{round}")), false)
            .is_ok()
        {
            ack(&s);
        }
    }
    attempt(&Step::Compact);
    if c.compact().is_ok() {
        ack(&Step::Compact);
    }
}

/// Reopens `dir` and checks it against what was acknowledged (`acked`) and attempted
/// (`attempted`, a superset: steps that may or may not have landed).
fn matrix_check(dir: &Path, fp: &str, mode: &str, acked: &[Step], attempted: &[Step]) {
    let what = format!("failpoint {fp} ({mode})");
    let cat = Catalog::open(dir).unwrap_or_else(|e| panic!("{what}: catalog does not open: {e}"));
    assert!(
        cat.failed_collections().is_empty(),
        "{what}: collections failed to open: {:?}",
        cat.failed_collections()
    );
    let entry = cat
        .collection_by_name("default_tenant", "default_database", "main")
        .unwrap();
    let c = entry.engine().unwrap();
    let got = c
        .get(&GetRequest {
            include: Include::ALL,
            ..Default::default()
        })
        .unwrap();
    let mut present: BTreeMap<String, Record> = BTreeMap::new();
    for (i, id) in got.ids.iter().enumerate() {
        present.insert(
            id.clone(),
            Record {
                id: id.clone(),
                embedding: got.embeddings.as_ref().unwrap()[i].clone(),
                metadata: got.metadatas.as_ref().unwrap()[i].clone(),
                document: got.documents.as_ref().unwrap()[i].clone(),
                uri: None,
            },
        );
    }
    // Every record present is exactly the one written.
    for (id, r) in &present {
        let n: usize = id[1..].parse().unwrap();
        let want = matrix_record(n);
        assert!(
            r.embedding
                .iter()
                .zip(&want.embedding)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{what}: {id} has a different vector"
        );
        assert_eq!(r.document, want.document, "{what}: {id}");
        assert_eq!(r.metadata, want.metadata, "{what}: {id}");
    }
    let has = |a: usize, b: usize| {
        (a..b)
            .filter(|n| present.contains_key(&format!("r{n}")))
            .count()
    };
    // The setup rows: present unless a delete of them was attempted.
    let deleted_attempt = |n: usize| {
        attempted
            .iter()
            .any(|s| matches!(s, Step::Delete(a, b) if (*a..*b).contains(&n)))
    };
    for n in 0..120 {
        if !deleted_attempt(n) {
            assert!(
                present.contains_key(&format!("r{n}")),
                "{what}: setup row r{n} lost"
            );
        }
    }
    for s in attempted {
        let is_acked = acked.contains(s);
        match s {
            Step::Add(a, b) => {
                let k = has(*a, *b);
                assert!(
                    k == 0 || k == b - a,
                    "{what}: {s:?} half-applied ({k} rows)"
                );
                if is_acked {
                    assert_eq!(k, b - a, "{what}: acknowledged {s:?} lost");
                }
            }
            Step::Delete(a, b) => {
                let k = has(*a, *b);
                assert!(
                    k == 0 || k == b - a,
                    "{what}: {s:?} half-applied ({k} rows left)"
                );
                if is_acked {
                    assert_eq!(k, 0, "{what}: acknowledged {s:?} undone");
                }
            }
            Step::Created(name) => {
                let found = cat
                    .collection_by_name("default_tenant", "default_database", name)
                    .is_ok();
                if is_acked {
                    assert!(found, "{what}: acknowledged collection {name} lost");
                }
            }
            Step::Position(_) | Step::Flush(_) | Step::Compact => {}
        }
    }
    // The checkpoint is the last acknowledged one or a later attempted one.
    let positions: Vec<&String> = attempted
        .iter()
        .filter_map(|s| match s {
            Step::Position(p) => Some(p),
            _ => None,
        })
        .collect();
    let last_acked = acked.iter().rev().find_map(|s| match s {
        Step::Position(p) => Some(p),
        _ => None,
    });
    let pos = c.source_position().map(|p| p.0);
    match last_acked {
        Some(p) => {
            let from = positions.iter().position(|x| *x == p).unwrap();
            assert!(
                pos.as_ref().is_some_and(|x| positions[from..].contains(&x)),
                "{what}: checkpoint {pos:?} is behind the acknowledged {p}"
            );
        }
        None => assert!(
            pos.is_none() || positions.iter().any(|x| Some(*x) == pos.as_ref()),
            "{what}: unexpected checkpoint {pos:?}"
        ),
    }
    // And it keeps working: a write and a flush after the reopen.
    c.apply(WriteBatch::Add(vec![matrix_record(9999)]), None)
        .unwrap_or_else(|e| panic!("{what}: write after reopen: {e}"));
    c.flush()
        .unwrap_or_else(|e| panic!("{what}: flush after reopen: {e}"));
}

/// Sets `spec` (a failpoint, or `trigger>failpoint`: the trigger fails once first) to `action`.
fn arm(spec: &str, action: &str) {
    let fp = match spec.split_once('>') {
        Some((trigger, fp)) => {
            fail::cfg(trigger, "1*return").unwrap();
            fp
        }
        None => spec,
    };
    fail::cfg(fp, action).unwrap();
}

fn disarm(spec: &str) {
    for fp in spec.split('>') {
        fail::remove(fp);
    }
}

#[test]
#[ignore = "child process of crash_matrix; it does nothing unless spawned by it"]
fn crash_matrix_child() {
    let (Ok(dir), Ok(fp)) = (
        std::env::var(MATRIX_CHILD_DIR),
        std::env::var(MATRIX_CHILD_FP),
    ) else {
        return;
    };
    arm(&fp, "return(abort)");
    let say = |tag: &str, s: &Step| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{tag} {}", s.line());
        let _ = out.flush();
    };
    matrix_workload(Path::new(&dir), &mut |s| say("TRY", s), &mut |s| {
        say("ACK", s)
    });
    println!("DONE");
}

#[test]
fn crash_matrix() {
    // Failpoints are process-wide: hold the binary and the scenario lock so other tests stay out.
    let _solo = crate::solo();
    let scenario = fail::FailScenario::setup();
    for fp in MATRIX.iter().chain(MATRIX_RECOVERY) {
        // error mode: the site fails once, the process goes on, then reopens.
        {
            let dir = tempfile::tempdir().unwrap();
            matrix_setup(dir.path());
            let (mut acked, mut attempted) = (Vec::new(), Vec::new());
            arm(fp, "1*return");
            matrix_workload(dir.path(), &mut |s| attempted.push(s.clone()), &mut |s| {
                acked.push(s.clone())
            });
            disarm(fp);
            assert!(
                acked.len() < attempted.len(),
                "failpoint {fp} (error) was never reached"
            );
            matrix_check(dir.path(), fp, "error", &acked, &attempted);
        }
        // abort mode: a child process dies at the site.
        {
            let dir = tempfile::tempdir().unwrap();
            matrix_setup(dir.path());
            let out = child_test(module_path!(), "crash_matrix_child")
                .env(MATRIX_CHILD_DIR, dir.path())
                .env(MATRIX_CHILD_FP, fp)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut child = out;
            let (mut acked, mut attempted, mut done) = (Vec::new(), Vec::new(), false);
            for line in BufReader::new(child.stdout.take().unwrap())
                .lines()
                .map_while(Result::ok)
            {
                let at = |t: &str| line.rfind(t).map(|p| &line[p + t.len()..]);
                if let Some(s) = at("ACK ").and_then(Step::parse) {
                    acked.push(s);
                } else if let Some(s) = at("TRY ").and_then(Step::parse) {
                    attempted.push(s);
                } else if line.contains("DONE") {
                    done = true;
                }
            }
            let status = child.wait().unwrap();
            assert!(
                !done && status.signal() == Some(6),
                "failpoint {fp} (abort) was never reached: {status}"
            );
            matrix_check(dir.path(), fp, "abort", &acked, &attempted);
        }
    }
    println!(
        "crash matrix: {} failpoints x 2 modes passed",
        MATRIX.len() + MATRIX_RECOVERY.len()
    );
    scenario.teardown();
}

// ---- Recovery in place after a failed WAL sync -------------------------------------------------
//
// A failed `fdatasync` must not cost a restart: the write it covered fails, the log is cut back
// to its last durable record, memory is rebuilt to match, and later writes go through. Every
// acknowledged record survives bit for bit; no failed one shows up, before or after a reopen.

/// Every live record of `c`, by id.
fn read_all(c: &Collection) -> BTreeMap<String, Record> {
    let got = c
        .get(&GetRequest {
            include: Include::ALL,
            ..Default::default()
        })
        .unwrap();
    let mut out = BTreeMap::new();
    for (i, id) in got.ids.iter().enumerate() {
        out.insert(
            id.clone(),
            Record {
                id: id.clone(),
                embedding: got.embeddings.as_ref().unwrap()[i].clone(),
                metadata: got.metadatas.as_ref().unwrap()[i].clone(),
                document: got.documents.as_ref().unwrap()[i].clone(),
                uri: None,
            },
        );
    }
    out
}

/// Asserts `c` holds exactly `want`, vectors compared bit for bit.
fn assert_holds(c: &Collection, want: &BTreeMap<String, Record>, when: &str) {
    let got = read_all(c);
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{when}: missing {missing:?}, unexpected {extra:?}"
    );
    for (id, w) in want {
        let g = &got[id];
        assert!(
            g.embedding.len() == w.embedding.len()
                && g.embedding
                    .iter()
                    .zip(&w.embedding)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{when}: {id} has a different vector"
        );
        assert_eq!(g.document, w.document, "{when}: {id}");
        assert_eq!(g.metadata, w.metadata, "{when}: {id}");
    }
}

fn add(range: std::ops::Range<usize>) -> WriteBatch {
    WriteBatch::Add(range.map(matrix_record).collect())
}

/// A collection with a flushed segment (some rows tombstoned) and WAL records after it, and
/// what it holds.
fn recovery_setup(path: &Path) -> (Collection, BTreeMap<String, Record>) {
    let c = Collection::create(path, CollectionConfig::default()).unwrap();
    c.set_memtable_rows(1_000_000);
    c.apply(add(0..50), None).unwrap();
    assert!(c.flush().unwrap());
    c.apply(add(50..80), None).unwrap();
    c.apply(delete_range(0, 5), None).unwrap();
    let want = (5..80)
        .map(|n| (format!("r{n}"), matrix_record(n)))
        .collect();
    (c, want)
}

fn is_sync_failed(r: &Result<vectord::types::ApplyOutcome, EngineError>) -> bool {
    matches!(r, Err(EngineError::SyncFailed(why)) if why.contains("failpoint wal::sync"))
}

#[test]
fn failed_sync_recovers_in_place() {
    let _solo = crate::solo();
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let (c, mut want) = recovery_setup(&path);
    let recoveries_before = vectord::engine::wal_recoveries_total();

    // An add whose sync fails: refused with the cause, and not visible afterwards.
    fail::cfg("wal::sync", "1*return").unwrap();
    let r = c.apply(add(100..110), None);
    assert!(is_sync_failed(&r), "{r:?}");
    assert_holds(&c, &want, "after a failed add");

    // A delete of acknowledged rows (in the segment and in the memtable) whose sync fails:
    // the rows stay, tombstones included.
    fail::cfg("wal::sync", "1*return").unwrap();
    let r = c.apply(delete_range(10, 60), None);
    assert!(is_sync_failed(&r), "{r:?}");
    assert_holds(&c, &want, "after a failed delete");

    // An upsert over acknowledged rows whose sync fails: the old versions stay.
    fail::cfg("wal::sync", "1*return").unwrap();
    let changed: Vec<vectord::types::UpsertRecord> = (20..25)
        .map(|n| vectord::types::UpsertRecord {
            id: format!("r{n}"),
            embedding: vec![0.5; 8],
            metadata: None,
            document: Some(format!("changed {n}")),
            uri: None,
        })
        .collect();
    let r = c.apply(WriteBatch::Upsert(changed), None);
    assert!(is_sync_failed(&r), "{r:?}");
    assert_holds(&c, &want, "after a failed upsert");
    fail::remove("wal::sync");

    // Writes go on in the same process, and the failed ids can be written again.
    c.apply(add(100..110), None).unwrap();
    c.apply(delete_range(60, 65), None).unwrap();
    want.extend((100..110).map(|n| (format!("r{n}"), matrix_record(n))));
    for n in 60..65 {
        want.remove(&format!("r{n}"));
    }
    assert_holds(&c, &want, "after writes following recovery");

    // A flush that failed after freezing the memtable leaves it frozen; the recovery freezes
    // the rebuilt one at the same record, so the retried flush publishes exactly its rows.
    fail::cfg("segment::write", "1*return").unwrap();
    assert!(c.flush().is_err());
    c.apply(add(300..305), None).unwrap();
    want.extend((300..305).map(|n| (format!("r{n}"), matrix_record(n))));
    fail::cfg("wal::sync", "1*return").unwrap();
    let r = c.apply(add(310..315), None);
    assert!(is_sync_failed(&r), "{r:?}");
    fail::remove("wal::sync");
    assert_holds(&c, &want, "after a failed sync with a frozen memtable");
    assert!(c.flush().unwrap());
    assert_holds(&c, &want, "after the retried flush");
    assert_eq!(c.stats().wal_recoveries, 4);
    assert!(vectord::engine::wal_recoveries_total() >= recoveries_before + 4);

    // The files agree: a reopen replays exactly the same, and so does one after a flush.
    drop(c);
    let c = Collection::open(&path).unwrap();
    assert_holds(&c, &want, "after reopen");
    c.apply(delete_range(100, 103), None).unwrap();
    for n in 100..103 {
        want.remove(&format!("r{n}"));
    }
    assert!(c.flush().unwrap());
    drop(c);
    let c = Collection::open(&path).unwrap();
    assert_holds(&c, &want, "after flush and reopen");
    scenario.teardown();
}

#[test]
fn failed_group_commit_fails_every_writer_it_covered() {
    let _solo = crate::solo();
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let (c, mut want) = recovery_setup(&path);
    let c = std::sync::Arc::new(c);
    fail::cfg("wal::sync", "1*return").unwrap();
    // Four writers, each its own ids; whichever batches shared the failed sync must all fail.
    let results: Vec<(usize, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let c = &c;
                s.spawn(move || {
                    (0..5)
                        .map(|b| {
                            let from = 1000 + t * 100 + b * 3;
                            let r = c.apply(add(from..from + 3), None);
                            assert!(r.is_ok() || is_sync_failed(&r), "{r:?}");
                            (from, r.is_ok())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    fail::remove("wal::sync");
    let failed = results.iter().filter(|(_, ok)| !ok).count();
    assert!(failed >= 1, "the failed sync covered no write");
    for &(from, ok) in &results {
        if ok {
            want.extend((from..from + 3).map(|n| (format!("r{n}"), matrix_record(n))));
        }
    }
    assert_holds(&c, &want, "after concurrent writes with a failed sync");
    c.apply(add(2000..2003), None).unwrap();
    want.extend((2000..2003).map(|n| (format!("r{n}"), matrix_record(n))));
    drop(c);
    let c = Collection::open(&path).unwrap();
    assert_holds(&c, &want, "after reopen");
    scenario.teardown();
}

#[test]
fn failed_recovery_keeps_refusing_writes_until_retried() {
    let _solo = crate::solo();
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let (c, mut want) = recovery_setup(&path);
    // The sync fails, then so does cutting the log back: the write's outcome is in doubt.
    fail::cfg("wal::sync", "1*return").unwrap();
    fail::cfg("wal::cut_back", "1*return").unwrap();
    let r = c.apply(add(100..105), None);
    assert!(matches!(r, Err(EngineError::Poisoned(_))), "{r:?}");
    fail::remove("wal::sync");
    fail::remove("wal::cut_back");
    // Reads go on, with every acknowledged record.
    let got = read_all(&c);
    assert!(want.keys().all(|k| got.contains_key(k)));
    // A retry (the background's, or this one) recovers; the write in doubt is gone.
    c.recover_log().unwrap();
    assert_holds(&c, &want, "after the retried recovery");
    c.apply(add(105..110), None).unwrap();
    want.extend((105..110).map(|n| (format!("r{n}"), matrix_record(n))));
    drop(c);
    let c = Collection::open(&path).unwrap();
    assert_holds(&c, &want, "after reopen");
    scenario.teardown();
}

/// A configuration change, a write and a multi-vector query all complete while a graph build
/// is paused mid-insert: none of them waits for a build. Before, a `PUT` changing `ef_search`
/// right after a bulk load waited ~40 s for a 70k-row flush's build: a two-vector query queued
/// on rayon's pool behind the build held the state's read lock, and `set_hnsw` (WAL writer,
/// then the state's write lock) waited for it, as did every later write.
#[test]
fn config_change_does_not_wait_for_a_graph_build() {
    use std::sync::{mpsc, Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};
    use vectord::engine::HnswParams;
    use vectord::types::QueryRequest;

    let _solo = crate::solo();
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let c =
        Arc::new(Collection::create(&dir.path().join("c"), CollectionConfig::default()).unwrap());
    c.set_memtable_rows(1_000_000);
    // Every build worker reaching the failpoint reports it, then blocks until the gate opens.
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let (hit_tx, hit_rx) = mpsc::channel();
    let hit_tx = Mutex::new(hit_tx);
    let g = Arc::clone(&gate);
    fail::cfg_callback("graph::insert", move || {
        let _ = hit_tx.lock().unwrap().send(());
        let (open, cv) = &*g;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
    })
    .unwrap();
    let release = || {
        let (open, cv) = &*gate;
        *open.lock().unwrap() = true;
        cv.notify_all();
    };
    c.apply(batch(0, 600), None).unwrap();
    let paused = hit_rx.recv_timeout(Duration::from_secs(120));
    if paused.is_err() {
        release();
    }
    paused.expect("the background build reached the failpoint");

    let (done_tx, done_rx) = mpsc::channel::<(&str, Result<(), String>)>();
    let spawn = |what: &'static str, f: Box<dyn FnOnce() -> Result<(), String> + Send>| {
        let tx = done_tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send((what, f()));
        });
    };
    let q = Arc::clone(&c);
    spawn(
        "two-vector query",
        Box::new(move || {
            let req = QueryRequest {
                embeddings: vec![vec![3.0, 1.0, -1.0], vec![300.0, 1.0, -1.0]],
                n_results: 3,
                ids: None,
                filter: None,
                include: Include::default(),
            };
            let got = q.query(&req).map_err(|e| e.to_string())?;
            match got.results[0].ids == ["r3", "r2", "r4"] {
                true => Ok(()),
                false => Err(format!("wrong answer {:?}", got.results[0].ids)),
            }
        }),
    );
    // A head start for the query: before the fix it then held the state lock while it waited.
    std::thread::sleep(Duration::from_millis(300));
    let h = Arc::clone(&c);
    spawn(
        "set_hnsw",
        Box::new(move || {
            let hnsw = HnswParams {
                ef_search: 7,
                ..h.config().hnsw
            };
            h.set_hnsw(hnsw).map_err(|e| e.to_string())
        }),
    );
    let w = Arc::clone(&c);
    spawn(
        "apply",
        Box::new(move || {
            w.apply(batch(600, 5), None)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }),
    );
    let mut done = Vec::new();
    while done.len() < 3 {
        match done_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(d) => done.push(d),
            Err(_) => break,
        }
    }
    // Open the gate before asserting, so a failure does not leave the build blocked.
    release();
    fail::remove("graph::insert");
    assert_eq!(
        done.len(),
        3,
        "still waiting for the paused build; finished: {done:?}"
    );
    for (what, r) in &done {
        assert!(r.is_ok(), "{what}: {r:?}");
    }
    assert_eq!(c.config().hnsw.ef_search, 7);
    assert_eq!(c.count(), 605);
    // The build resumes and completes.
    let deadline = Instant::now() + Duration::from_secs(300);
    while c.stats().unindexed_rows > 0 {
        assert!(Instant::now() < deadline, "indexing did not resume");
        std::thread::sleep(Duration::from_millis(20));
    }
    scenario.teardown();
}

// ---- Restore interrupted by a crash ------------------------------------------------------------
//
// A restore swaps files inside the data folder under a journal. A child process aborts at every
// step of the swap (and just before the journal lands); afterwards the server must refuse the
// folder while the journal is there, `restore::finish` must complete it from the folder alone,
// and the result must be exactly the snapshot, with the replaced data kept aside intact.

const RESTORE_CHILD_DIR: &str = "VECTORD_RESTORE_CHILD_DIR";
const RESTORE_CHILD_CASE: &str = "VECTORD_RESTORE_CHILD_CASE";

/// Renames in a whole-folder restore over a folder with data: catalog and collections out,
/// catalog and collections in.
const FOLDER_RENAMES: usize = 4;
/// Renames in a collection restore over the same collection: old folder out, staged folder in.
const COLLECTION_RENAMES: usize = 2;

/// A data folder with collection `delta` (r0..r20), a whole-folder snapshot of it in
/// `data/snapshots`, then r20..r40 written after the snapshot. Returns the snapshot folder.
fn restore_setup(data: &Path) -> std::path::PathBuf {
    let cat = Catalog::open(data).unwrap();
    let (entry, _) = cat
        .create_collection(new_collection("delta"), false)
        .unwrap();
    let c = entry.engine().unwrap();
    c.apply(WriteBatch::Add((0..20).map(matrix_record).collect()), None)
        .unwrap();
    c.flush().unwrap();
    let root = data.join("snapshots");
    let name = vectord::backup::local::new_name(&root);
    vectord::backup::local::create(&cat, &root, &name).unwrap();
    c.apply(WriteBatch::Add((20..40).map(matrix_record).collect()), None)
        .unwrap();
    root.join(name)
}

fn delta_ids(data: &Path) -> Vec<String> {
    let cat = Catalog::open(data).unwrap_or_else(|e| panic!("open {}: {e}", data.display()));
    let entry = cat
        .collection_by_name("default_tenant", "default_database", "delta")
        .unwrap();
    let mut v = ids(entry.engine().unwrap());
    v.sort();
    v
}

fn sorted_ids(range: std::ops::Range<usize>) -> Vec<String> {
    let mut v: Vec<String> = range.map(|i| format!("r{i}")).collect();
    v.sort();
    v
}

#[test]
#[ignore = "child process of restore_crash; it does nothing unless spawned by it"]
fn restore_crash_child() {
    let (Ok(dir), Ok(case)) = (
        std::env::var(RESTORE_CHILD_DIR),
        std::env::var(RESTORE_CHILD_CASE),
    ) else {
        return;
    };
    let data = Path::new(&dir);
    let snap = data.join("snapshots").join(
        vectord::backup::local::list(&data.join("snapshots")).unwrap()[0]
            .name
            .clone(),
    );
    let (scope, at) = case.split_once(':').unwrap();
    match at.parse::<usize>() {
        Ok(k) => fail::cfg("restore::rename", &format!("{k}*off->return(abort)")).unwrap(),
        Err(_) => fail::cfg(at, "return(abort)").unwrap(),
    }
    let result = match scope {
        "folder" => vectord::backup::restore::restore(&snap, data, true).map(|_| ()),
        _ => vectord::backup::restore::restore_collection(&snap, data, None, true).map(|_| ()),
    };
    println!("DONE {result:?}");
}

#[test]
fn restore_crash() {
    let _solo = crate::solo();
    let scenario = fail::FailScenario::setup();
    let cases = (0..FOLDER_RENAMES)
        .map(|k| format!("folder:{k}"))
        .chain((0..COLLECTION_RENAMES).map(|k| format!("collection:{k}")))
        .chain([
            "folder:replace::RESTORE.json".to_string(),
            "collection:replace::RESTORE.json".to_string(),
            "collection:replace::catalog.json".to_string(),
        ]);
    for case in cases {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let snap = restore_setup(&data);
        let status = child_test(module_path!(), "restore_crash_child")
            .env(RESTORE_CHILD_DIR, &data)
            .env(RESTORE_CHILD_CASE, &case)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.signal(), Some(6), "{case}: the child did not crash");

        if case.ends_with("replace::RESTORE.json") {
            // Crashed before the journal landed: nothing was swapped, and the server's open
            // removes the staged copy.
            assert_eq!(delta_ids(&data), sorted_ids(0..40), "{case}");
            for entry in std::fs::read_dir(&data)
                .unwrap()
                .chain(std::fs::read_dir(data.join("collections")).unwrap())
            {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                assert!(
                    !name.starts_with(".restore") && !name.starts_with(".before-restore"),
                    "{case}: {name} left after the server opened"
                );
            }
            continue;
        }
        match Catalog::open(&data) {
            Err(vectord::catalog::CatalogError::InterruptedRestore(_)) => {}
            Err(e) => panic!("{case}: expected an interrupted restore, got {e}"),
            Ok(_) => panic!("{case}: a half-swapped folder opened"),
        }
        assert!(
            matches!(
                vectord::backup::restore::restore(&snap, &data, true),
                Err(vectord::backup::error::SnapshotError::Interrupted(_))
            ),
            "{case}: a second restore must not start on top of the first"
        );
        // The snapshot is not needed to finish: it may be gone (a deleted download).
        std::fs::rename(&snap, tmp.path().join("moved-away")).unwrap();
        if case == "folder:1" {
            // Through the binary, as an operator would: the server refuses, --finish completes.
            let bin = env!("CARGO_BIN_EXE_vectord");
            let run = Command::new(bin)
                .args(["run", "--port", "0", "--path"])
                .arg(&data)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&run.stderr);
            assert!(
                !run.status.success() && err.contains("vectord restore --finish"),
                "{case}: the server must refuse a half-restored folder: {err}"
            );
            let fin = Command::new(bin)
                .args(["restore", "--finish", "--path"])
                .arg(&data)
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&fin.stdout);
            assert!(
                fin.status.success() && out.contains("finished restoring"),
                "{case}: {out} {}",
                String::from_utf8_lossy(&fin.stderr)
            );
            assert_eq!(
                delta_ids(&data),
                sorted_ids(0..20),
                "{case}: restored content"
            );
            continue;
        }
        let done = vectord::backup::restore::finish(&data)
            .unwrap_or_else(|e| panic!("{case}: finish: {e}"))
            .unwrap_or_else(|| panic!("{case}: nothing to finish"));
        assert_eq!(
            delta_ids(&data),
            sorted_ids(0..20),
            "{case}: restored content"
        );
        let kept = done.kept_aside.expect("replaced data kept");
        if case.starts_with("folder") {
            assert_eq!(delta_ids(&kept), sorted_ids(0..40), "{case}: kept data");
        } else {
            // The kept collection folder opens as a collection with everything it held.
            let c = Collection::open(&kept).unwrap();
            let mut v = ids(&c);
            v.sort();
            assert_eq!(v, sorted_ids(0..40), "{case}: kept collection");
        }
        assert!(
            vectord::backup::restore::finish(&data).unwrap().is_none(),
            "{case}"
        );
    }
    scenario.teardown();
}
