//! The logical-replication follower: publication and slot management, then `START_REPLICATION`
//! from the checkpoint through `pgwire-replication` (which answers keepalives and sends standby
//! status updates with the LSN we report as durable), `pgoutput` decoded by [`super::pgoutput`].
//!
//! Changes are buffered per transaction and written at commit boundaries, batched: a flush
//! happens when `batch_rows` ids are pending or 10 ms after the first unflushed commit (group
//! commit: one fsync covers every transaction that arrived meanwhile). The
//! checkpoint written with a flush is the last commit's end LSN, and only then is that LSN
//! reported to the server, so the slot never releases WAL vectord could still need.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use tokio_postgres::Client;

use super::apply::{Applier, Change};
use super::config::JobConfig;
use super::connect::replication_config;
use super::mapping::Cell;
use super::pgoutput::{decode, Message, TupleValue};
use super::position::{lsn_to_string, parse_lsn, Position};
use super::snapshot::{cell, fetch_by_ids, fetch_by_ids_sql};
use super::status::StatusHandle;
use super::value::decode_binary;
use super::{blocking, SyncError};

/// Prefix of the logical message the follower emits to learn when it has caught up.
const CAUGHT_UP_PREFIX: &str = "vectord.caught_up";

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Creates the publication for the job's table unless it exists (with a column list on
/// PostgreSQL 15+, so only the mapped columns are decoded and sent).
pub async fn ensure_publication(client: &Client, job: &JobConfig) -> Result<(), SyncError> {
    let pubname = job.publication_name();
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&pubname],
        )
        .await?
        .is_some();
    if exists {
        return Ok(());
    }
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await?
        .try_get(0)?;
    let cols = if version >= 150_000 {
        let c: Vec<String> = job.columns().map(|c| format!("\"{c}\"")).collect();
        format!(" ({})", c.join(", "))
    } else {
        String::new()
    };
    client
        .batch_execute(&format!(
            "CREATE PUBLICATION \"{pubname}\" FOR TABLE {}{cols}",
            job.qualified_table()
        ))
        .await?;
    tracing::info!(job = %job.name, publication = %pubname, "publication created");
    Ok(())
}

/// The slot's `confirmed_flush_lsn`, or `None` when the slot does not exist.
pub async fn slot_position(client: &Client, slot: &str) -> Result<Option<u64>, SyncError> {
    let row = client
        .query_opt(
            "SELECT COALESCE(confirmed_flush_lsn, restart_lsn)::text FROM pg_replication_slots
              WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    match row {
        None => Ok(None),
        Some(r) => {
            let s: Option<String> = r.try_get(0)?;
            Ok(Some(s.as_deref().and_then(parse_lsn).unwrap_or(0)))
        }
    }
}

/// Creates the slot and returns its consistent point: every transaction committing after it
/// will be streamed, so a snapshot taken after this call loses nothing.
pub async fn create_slot(client: &Client, slot: &str) -> Result<u64, SyncError> {
    let row = client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await?;
    let lsn: String = row.try_get(0)?;
    let lsn = parse_lsn(&lsn)
        .ok_or_else(|| SyncError::Protocol(format!("slot consistent point {lsn:?}")))?;
    tracing::info!(slot, lsn = %lsn_to_string(lsn), "replication slot created");
    Ok(lsn)
}

/// Drops the slot if it exists (waiting for its walsender to go away, if one still holds it).
pub async fn drop_slot(client: &Client, slot: &str) -> Result<bool, SyncError> {
    for _ in 0..50 {
        let r = client
            .query_opt(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                  WHERE slot_name = $1 AND NOT active",
                &[&slot],
            )
            .await?;
        if r.is_some() {
            return Ok(true);
        }
        if slot_position(client, slot).await?.is_none() {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(SyncError::Config(format!(
        "slot {slot} is in use by another consumer; stop it first"
    )))
}

/// Where our columns sit in the table's tuples.
struct RelMap {
    positions: Vec<usize>,
}

fn now_micros_pg() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64 - PG_EPOCH_MICROS)
        .unwrap_or(0)
}

/// Follows the slot from `start` until `shutdown` (or, with `until_caught_up`, until the
/// stream has reached the server's WAL position at start). Returns the applier for reuse.
pub async fn follow(
    client: &Client,
    job: &JobConfig,
    mut applier: Applier,
    start: u64,
    status: &StatusHandle,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    until_caught_up: bool,
) -> Result<Applier, SyncError> {
    let cfg = replication_config(job, Lsn::from_u64(start))?;
    let mut repl = ReplicationClient::connect(cfg).await?;
    repl.wait_started().await?;
    // A marker written into the WAL now: once the stream delivers it, everything committed
    // before this point has been received, so "caught up" needs no LSN arithmetic (an idle
    // server's keepalive position can stay just short of pg_current_wal_lsn()).
    let nonce = format!("{}:{}", job.name, now_micros_pg());
    client
        .query_one(
            "SELECT pg_logical_emit_message(false, $1, $2)::text",
            &[&CAUGHT_UP_PREFIX, &nonce],
        )
        .await?;
    let mut marker_seen = false;
    tracing::info!(job = %job.name, from = %lsn_to_string(start), "streaming from slot");
    {
        let mut st = status.lock();
        st.phase = "follow".into();
        st.position = Some(lsn_to_string(start));
    }
    let (schema, table) = job.schema_table();
    let kinds = applier.mapper().kinds().to_vec();
    let names = applier.mapper().names().to_vec();
    let mut rels: HashMap<u32, Option<RelMap>> = HashMap::new();
    let mut durable = start;
    let mut in_txn = false;
    // Commit end LSN and commit time of transactions applied to the buffer but not yet durable.
    let mut unflushed: Option<(u64, i64, Instant)> = None;
    let mut oldest_unflushed_commit: Option<i64> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut last_idle_checkpoint = Instant::now();
    loop {
        let event = tokio::select! {
            ev = repl.recv() => ev?,
            _ = tick.tick() => Some(ReplicationEvent::KeepAlive {
                // A timer tick, dressed as a keepalive from nowhere: flushes what waited 10 ms.
                wal_end: Lsn::ZERO,
                reply_requested: false,
                server_time_micros: 0,
            }),
            _ = shutdown.changed() => {
                if let Some((lsn, _, _)) = unflushed.take() {
                    applier = flush(client, job, applier, lsn, status).await?;
                    repl.update_applied_lsn(Lsn::from_u64(lsn));
                }
                let _ = repl.shutdown().await;
                return Ok(applier);
            }
        };
        let Some(event) = event else {
            return Err(SyncError::Protocol("replication stream ended".into()));
        };
        match event {
            ReplicationEvent::Begin { .. } => in_txn = true,
            ReplicationEvent::XLogData { data, .. } => {
                let msg = decode(data).map_err(|e| SyncError::Protocol(e.to_string()))?;
                match msg {
                    Message::Relation {
                        id,
                        namespace,
                        name,
                        columns,
                    } => {
                        let ours = namespace == schema && name == table;
                        let map = if ours {
                            let mut positions = Vec::new();
                            for n in &names {
                                let p = columns.iter().position(|c| &c.name == n).ok_or_else(|| {
                                    SyncError::Resume(format!(
                                        "column {n} is no longer published for {}; fix the table or publication, then rebuild",
                                        job.table
                                    ))
                                })?;
                                positions.push(p);
                            }
                            Some(RelMap { positions })
                        } else {
                            None
                        };
                        rels.insert(id, map);
                    }
                    Message::Insert { rel, new }
                    | Message::Update {
                        rel,
                        new,
                        old: None,
                    } => {
                        if let Some(Some(m)) = rels.get(&rel) {
                            applier.push(Change::Upsert(cells(m, &new, &kinds, &names)?))?;
                        }
                    }
                    Message::Update {
                        rel,
                        new,
                        old: Some(old),
                    } => {
                        if let Some(Some(m)) = rels.get(&rel) {
                            let new_cells = cells(m, &new, &kinds, &names)?;
                            let old_id = key_id(m, &old, &kinds, &applier)?;
                            let new_id = applier.mapper().id_of(&new_cells[0]).ok();
                            if let Some(old_id) = old_id {
                                if Some(&old_id) != new_id.as_ref() {
                                    applier.push(Change::Delete(old_id))?;
                                }
                            }
                            applier.push(Change::Upsert(new_cells))?;
                        }
                    }
                    Message::Delete { rel, old } => {
                        if let Some(Some(m)) = rels.get(&rel) {
                            if let Some(id) = key_id(m, &old, &kinds, &applier)? {
                                applier.push(Change::Delete(id))?;
                            }
                        }
                    }
                    Message::Truncate { rels: ids } => {
                        if ids.iter().any(|r| matches!(rels.get(r), Some(Some(_)))) {
                            let (a, r) = blocking(applier, |a| a.push(Change::Truncate)).await?;
                            applier = a;
                            r?;
                        }
                    }
                    Message::Other(_) => {}
                }
                if applier.pending() >= job.batch_rows && in_txn {
                    // A large transaction: write what we have without moving the checkpoint;
                    // a restart replays the transaction and converges on the same state.
                    let (a, r) = blocking(applier, |a| a.flush(None)).await?;
                    applier = a;
                    r?;
                }
            }
            ReplicationEvent::Commit {
                end_lsn,
                commit_time_micros,
                ..
            } => {
                in_txn = false;
                let first = unflushed.map_or(Instant::now(), |u| u.2);
                unflushed = Some((end_lsn.as_u64(), commit_time_micros, first));
                oldest_unflushed_commit.get_or_insert(commit_time_micros);
                if applier.pending() >= job.batch_rows {
                    applier = flush(client, job, applier, end_lsn.as_u64(), status).await?;
                    durable = end_lsn.as_u64();
                    repl.update_applied_lsn(end_lsn);
                    unflushed = None;
                    record_lag(status, oldest_unflushed_commit.take());
                }
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                if let Some((lsn, _, first)) = unflushed {
                    if first.elapsed() >= Duration::from_millis(10) || wal_end.as_u64() > 0 {
                        applier = flush(client, job, applier, lsn, status).await?;
                        durable = lsn;
                        repl.update_applied_lsn(Lsn::from_u64(lsn));
                        unflushed = None;
                        record_lag(status, oldest_unflushed_commit.take());
                    }
                } else if !in_txn && applier.pending() == 0 && wal_end.as_u64() > durable {
                    // Idle for our table while the server moves on: everything before the
                    // keepalive's position has been streamed and applied, so it may be
                    // confirmed (otherwise the slot would hold WAL for other tables' traffic).
                    repl.update_applied_lsn(wal_end);
                    if last_idle_checkpoint.elapsed() >= Duration::from_secs(1) {
                        last_idle_checkpoint = Instant::now();
                        applier = flush(client, job, applier, wal_end.as_u64(), status).await?;
                        durable = wal_end.as_u64();
                    }
                }
                let server_end = repl.metrics().last_wal_end().as_u64();
                let mut st = status.lock();
                st.lag_bytes = server_end.saturating_sub(durable);
                st.lag_rows = applier.pending() as u64;
                st.set_caught_up(unflushed.is_none() && !in_txn && marker_seen);
                if unflushed.is_none() && !in_txn {
                    st.lag_seconds = 0.0;
                }
            }
            ReplicationEvent::Message {
                prefix, content, ..
            } => {
                if prefix == CAUGHT_UP_PREFIX && content.as_ref() == nonce.as_bytes() {
                    marker_seen = true;
                }
            }
            ReplicationEvent::StoppedAt { .. } => return Ok(applier),
        }
        if until_caught_up && marker_seen && !in_txn {
            if let Some((lsn, _, _)) = unflushed.take() {
                applier = flush(client, job, applier, lsn, status).await?;
                repl.update_applied_lsn(Lsn::from_u64(lsn));
            }
            status.lock().set_caught_up(true);
            let _ = repl.shutdown().await;
            return Ok(applier);
        }
    }
}

fn record_lag(status: &StatusHandle, commit_time: Option<i64>) {
    if let Some(t) = commit_time {
        let lag = (now_micros_pg() - t).max(0) as f64 / 1e6;
        status.lock().lag_seconds = lag;
    }
}

async fn flush(
    client: &Client,
    job: &JobConfig,
    applier: Applier,
    lsn: u64,
    status: &StatusHandle,
) -> Result<Applier, SyncError> {
    let pos = Position::Logical { lsn }.encode();
    let p = pos.clone();
    let (mut a, r) = blocking(applier, move |a| a.flush(Some(p))).await?;
    let mut flushed = r?;
    if !a.refetch.is_empty() {
        // Unchanged TOASTed values we never stored: read the rows' present state instead (later
        // changes in the stream are applied after it, so the collection still converges).
        let mut ids = std::mem::take(&mut a.refetch);
        tracing::info!(job = %job.name, rows = ids.len(), "re-reading rows with unchanged TOASTed values we do not hold");
        let sql = fetch_by_ids_sql(job, a.mapper().kinds()[0]);
        fetch_by_ids(client, sql.as_str(), &mut a, &mut ids).await?;
        let (b, r) = blocking(a, move |a| a.flush(Some(pos))).await?;
        a = b;
        let more = r?;
        flushed.upserted += more.upserted;
        flushed.deleted += more.deleted;
    }
    let mut st = status.lock();
    st.applied += flushed.upserted;
    st.deleted += flushed.deleted;
    st.position = Some(lsn_to_string(lsn));
    st.skipped = a.skips.clone();
    st.last_skip = a.last_skip.clone();
    Ok(a)
}

fn raw(v: &TupleValue) -> Result<Option<Option<&[u8]>>, SyncError> {
    match v {
        TupleValue::Null => Ok(Some(None)),
        TupleValue::Unchanged => Ok(None),
        TupleValue::Binary(b) => Ok(Some(Some(b))),
        TupleValue::Text(_) => Err(SyncError::Protocol(
            "text-format value in a binary stream".into(),
        )),
    }
}

fn cells(
    m: &RelMap,
    tuple: &[TupleValue],
    kinds: &[super::value::ColumnKind],
    names: &[String],
) -> Result<Vec<Cell>, SyncError> {
    let mut out = Vec::with_capacity(m.positions.len());
    for (i, &p) in m.positions.iter().enumerate() {
        let v = tuple
            .get(p)
            .ok_or_else(|| SyncError::Protocol("tuple shorter than its relation".into()))?;
        out.push(match raw(v)? {
            None => Cell::Unchanged,
            Some(r) => cell(kinds[i], r, &names[i])?,
        });
    }
    Ok(out)
}

fn key_id(
    m: &RelMap,
    tuple: &[TupleValue],
    kinds: &[super::value::ColumnKind],
    applier: &Applier,
) -> Result<Option<String>, SyncError> {
    match tuple.get(m.positions[0]) {
        Some(TupleValue::Binary(b)) => {
            let v = decode_binary(kinds[0], b).map_err(|e| SyncError::Protocol(e.to_string()))?;
            Ok(applier.mapper().id_of(&Cell::Value(v)).ok())
        }
        _ => Ok(None),
    }
}

/// The LSN a follower should resume from, checked against the slot.
pub async fn resume_point(
    client: &Client,
    job: &JobConfig,
    checkpoint: u64,
) -> Result<u64, SyncError> {
    match slot_position(client, &job.slot_name()).await? {
        None => Err(SyncError::Resume(format!(
            "replication slot {} is gone; run `vectord sync rebuild`",
            job.slot_name()
        ))),
        Some(_) => Ok(checkpoint),
    }
}
