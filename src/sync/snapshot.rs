//! The snapshot: `COPY (SELECT … ORDER BY id) TO STDOUT (FORMAT binary)`, decoded as it
//! streams and applied every `batch_rows` rows with a `snapshot` checkpoint naming the last id,
//! so a restart resumes after it (`WHERE id > last`). Memory holds one batch, whatever the table.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, ToStatement};

use super::apply::{Applier, Change};
use super::config::JobConfig;
use super::mapping::{Cell, Mapper};
use super::position::Position;
use super::status::StatusHandle;
use super::value::{decode_binary, ColumnKind};
use super::{blocking, SyncError};

/// A column's raw bytes, whatever its type (we decode them ourselves).
pub struct Raw<'a>(pub Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }
    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Decodes one column into a cell; a value that does not decode is a protocol error (the type
/// was checked up front, so the bytes are not what the type promises).
pub fn cell(kind: ColumnKind, raw: Option<&[u8]>, column: &str) -> Result<Cell, SyncError> {
    match raw {
        None => Ok(Cell::Null),
        Some(b) => decode_binary(kind, b)
            .map(Cell::Value)
            .map_err(|e| SyncError::Protocol(format!("column {column}: {e}"))),
    }
}

/// `'…'` with quotes doubled (standard_conforming_strings, the default since 9.1).
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The `SELECT` every reader of the table uses, optionally restricted to ids after `after`.
pub fn select_sql(job: &JobConfig, after: Option<&str>) -> String {
    let mut sql = select_columns_sql(job);
    if let Some(id) = after {
        sql.push_str(&format!(
            " WHERE \"{}\" > {}",
            job.id_column,
            sql_literal(id)
        ));
    }
    sql.push_str(&format!(" ORDER BY \"{}\"", job.id_column));
    sql
}

/// `SELECT <the job's columns> FROM <its table>`, the start of every read of the table.
fn select_columns_sql(job: &JobConfig) -> String {
    let cols: Vec<String> = job.columns().map(|c| format!("\"{c}\"")).collect();
    format!("SELECT {} FROM {}", cols.join(", "), job.qualified_table())
}

/// Decodes one row, whose columns `raw` reads as bytes, into cells with `mapper`'s decoders.
pub fn decode_row<'r>(
    mapper: &Mapper,
    mut raw: impl FnMut(usize) -> Result<Raw<'r>, tokio_postgres::Error>,
) -> Result<Vec<Cell>, SyncError> {
    let (kinds, names) = (mapper.kinds(), mapper.names());
    let mut cells = Vec::with_capacity(kinds.len());
    for (i, kind) in kinds.iter().enumerate() {
        cells.push(cell(*kind, raw(i)?.0, &names[i])?);
    }
    Ok(cells)
}

/// The SQL type name ids are cast to when fetching rows by id: the id column's own type, so
/// the primary key's index finds the rows.
fn id_sql_type(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Uuid => "uuid",
        ColumnKind::Int2 | ColumnKind::Int4 | ColumnKind::Int8 => "int8",
        _ => "text",
    }
}

/// The `SELECT` of the rows whose ids are in `$1` (a `text[]` of record ids), for
/// [`fetch_by_ids`]; `id_kind` is the id column's kind.
pub fn fetch_by_ids_sql(job: &JobConfig, id_kind: ColumnKind) -> String {
    format!(
        "{} WHERE \"{}\" = ANY($1::text[]::{}[])",
        select_columns_sql(job),
        job.id_column,
        id_sql_type(id_kind)
    )
}

/// Re-reads the current rows of `ids` (emptied) from the table into the applier: an upsert for
/// each row found, a delete for each id gone. `query` is [`fetch_by_ids_sql`], as text or
/// prepared.
pub async fn fetch_by_ids<Q: ToStatement + ?Sized>(
    client: &Client,
    query: &Q,
    applier: &mut Applier,
    ids: &mut Vec<String>,
) -> Result<(), SyncError> {
    if ids.is_empty() {
        return Ok(());
    }
    ids.sort_unstable();
    ids.dedup();
    let rows = client.query(query, &[&*ids]).await?;
    let mut found = std::collections::HashSet::new();
    for row in rows {
        let cells = decode_row(applier.mapper(), |i| row.try_get(i))?;
        if let Ok(id) = applier.mapper().id_of(&cells[0]) {
            found.insert(id);
        }
        applier.push(Change::Upsert(cells))?;
    }
    for id in ids.drain(..) {
        if !found.contains(&id) {
            applier.push(Change::Delete(id))?;
        }
    }
    Ok(())
}

/// Copies the table (after `resume_after`, when resuming) into the applier's collection. Every
/// batch carries `snapshot` progress; the last one carries `done`.
#[allow(clippy::too_many_arguments)]
pub async fn copy_table(
    client: &Client,
    job: &JobConfig,
    mut applier: Applier,
    lsn: Option<u64>,
    resume_after: Option<String>,
    done: Position,
    status: &StatusHandle,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> Result<(Applier, bool), SyncError> {
    let estimate: i64 = client
        .query_one(
            "SELECT GREATEST(c.reltuples, 0)::int8 FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2",
            &[&job.schema_table().0, &job.schema_table().1],
        )
        .await?
        .try_get(0)?;
    let sql = format!(
        "COPY ({}) TO STDOUT (FORMAT binary)",
        select_sql(job, resume_after.as_deref())
    );
    tracing::info!(job = %job.name, resume_after = ?resume_after, estimate, "snapshot started");
    let types = vec![Type::BYTEA; applier.mapper().kinds().len()];
    let stream = client.copy_out(sql.as_str()).await?;
    let rows = BinaryCopyOutStream::new(stream, &types);
    futures_util::pin_mut!(rows);

    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(u64::try_from(estimate).unwrap_or(0));
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:40}] {pos}/{len} rows ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(format!("snapshot {}", job.name));
        b
    });
    let started = Instant::now();
    let mut last_log = Instant::now();
    let mut copied: u64 = 0;
    let mut in_batch = 0usize;
    let mut last_id = resume_after;
    let progress = |last_id: &Option<String>| Position::Snapshot {
        mode: job.mode,
        lsn,
        last_id: last_id.clone(),
    };
    while let Some(row) = rows.next().await {
        let row = row?;
        let cells = decode_row(applier.mapper(), |i| row.try_get(i))?;
        // Ids are never NULL (primary key); a row whose id cannot be mapped is still counted.
        if let Ok(id) = applier.mapper().id_of(&cells[0]) {
            last_id = Some(id);
        }
        applier.push(Change::Upsert(cells))?;
        copied += 1;
        in_batch += 1;
        if in_batch >= job.batch_rows {
            in_batch = 0;
            let rate;
            (applier, rate) =
                flush_progress(applier, &progress(&last_id), copied, started, status).await?;
            if let Some(b) = &bar {
                b.set_position(copied);
            } else if last_log.elapsed() >= Duration::from_secs(5) {
                last_log = Instant::now();
                tracing::info!(job = %job.name, rows = copied, rows_per_sec = rate as u64, estimate, "snapshot progress");
            }
            if *shutdown.borrow() {
                // Stopping mid-snapshot is fine: the checkpoint names the last id written.
                return Ok((applier, false));
            }
        }
    }
    let rate;
    (applier, rate) = flush_progress(applier, &done, copied, started, status).await?;
    let secs = started.elapsed().as_secs_f64();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    tracing::info!(
        job = %job.name,
        rows = copied,
        seconds = secs,
        rows_per_sec = rate as u64,
        null_embeddings = applier.skips.null_embedding,
        unrepresentable = applier.skips.unrepresentable,
        "snapshot complete"
    );
    Ok((applier, true))
}

/// Flushes the applier with checkpoint `pos` and shows the snapshot's progress (`copied` rows
/// since `started`) in `status`. Returns the applier and the rows per second.
async fn flush_progress(
    applier: Applier,
    pos: &Position,
    copied: u64,
    started: Instant,
    status: &StatusHandle,
) -> Result<(Applier, f64), SyncError> {
    let encoded = pos.encode();
    let (applier, r) = blocking(applier, move |a| a.flush(Some(encoded))).await?;
    let flushed = r?;
    let rate = copied as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let mut st = status.lock();
    st.applied += flushed.upserted;
    st.snapshot_rows = copied;
    st.snapshot_rows_per_sec = rate;
    st.skipped = applier.skips.clone();
    st.last_skip = applier.last_skip.clone();
    st.position = Some(pos.describe());
    Ok((applier, rate))
}
