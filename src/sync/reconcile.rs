//! Reconcile: compare the collection with the table and repair drift. Ids are compared as sets;
//! with `rows`, every row is read from the table (binary COPY, in batches), mapped, and compared
//! field by field (vector, document, metadata) with the stored record. Repairs go through the
//! same applier as the followers (upsert what is missing or different, delete what is extra),
//! without moving the checkpoint.

use std::collections::{HashMap, HashSet};

use futures_util::StreamExt;
use serde::Serialize;
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::apply::{Applier, Change};
use super::config::JobConfig;
use super::mapping::Cell;
use super::snapshot::{decode_row, select_sql};
use super::{blocking, SyncError};
use crate::types::Record;

/// What reconcile found (and fixed).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    /// Rows in the table (rows with a NULL embedding included).
    pub source_rows: u64,
    /// Records in the collection.
    pub collection_rows: u64,
    /// Ids in the table (with an embedding) but not in the collection.
    pub missing: u64,
    /// Ids in the collection but not in the table.
    pub extra: u64,
    /// Rows whose stored record differs (only with row comparison).
    pub different: u64,
    /// Rows the mapping rules skip (NULL embedding, unrepresentable), not drift.
    pub skipped: u64,
    /// Whether drift was repaired.
    pub repaired: bool,
    /// A few of the ids involved, for the operator.
    pub examples: Vec<String>,
}

/// Compares the collection with the table; repairs when `repair` is set.
pub async fn reconcile(
    client: &Client,
    job: &JobConfig,
    mut applier: Applier,
    compare_rows: bool,
    repair: bool,
) -> Result<(Applier, Report), SyncError> {
    let coll = std::sync::Arc::clone(applier.collection());
    let stored_ids = {
        let c = std::sync::Arc::clone(&coll);
        tokio::task::spawn_blocking(move || c.ids())
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))??
    };
    let mut report = Report {
        collection_rows: stored_ids.len() as u64,
        ..Report::default()
    };
    let sql = format!("COPY ({}) TO STDOUT (FORMAT binary)", select_sql(job, None));
    let stream = client.copy_out(sql.as_str()).await?;
    let columns = applier.mapper().kinds().len();
    let rows = BinaryCopyOutStream::new(stream, &vec![Type::BYTEA; columns]);
    futures_util::pin_mut!(rows);
    let mut seen: HashSet<String> = HashSet::new();
    let mut batch: Vec<(String, Vec<Cell>)> = Vec::new();
    let dimension = coll.dimension();
    loop {
        let next = rows.next().await;
        if let Some(row) = &next {
            let row = row
                .as_ref()
                .map_err(|e| SyncError::Protocol(e.to_string()))?;
            let cells = decode_row(applier.mapper(), |i| row.try_get(i))?;
            report.source_rows += 1;
            let Ok(id) = applier.mapper().id_of(&cells[0]) else {
                report.skipped += 1;
                continue;
            };
            seen.insert(id.clone());
            batch.push((id, cells));
        }
        if batch.len() >= job.batch_rows || (next.is_none() && !batch.is_empty()) {
            let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
            let stored = stored_records(&coll, ids, compare_rows).await?;
            for (id, cells) in batch.drain(..) {
                let expected = applier.mapper().map(&cells, None, dimension);
                let verdict = match (&expected, stored.get(&id)) {
                    (Err(_), None) => {
                        report.skipped += 1;
                        continue;
                    }
                    (Err(_), Some(_)) => "different",
                    (Ok(_), None) => "missing",
                    (Ok(want), Some(have)) => {
                        if !compare_rows || same(want, have) {
                            continue;
                        }
                        "different"
                    }
                };
                if verdict == "missing" {
                    report.missing += 1;
                } else {
                    report.different += 1;
                }
                if report.examples.len() < 10 {
                    report.examples.push(format!("{verdict} {id}"));
                }
                if repair {
                    applier.push(Change::Upsert(cells))?;
                }
            }
            if repair && applier.pending() > 0 {
                let (a, r) = blocking(applier, |a| a.flush(None)).await?;
                applier = a;
                r?;
            }
        }
        if next.is_none() {
            break;
        }
    }
    let extra: Vec<String> = stored_ids
        .into_iter()
        .filter(|id| !seen.contains(id))
        .collect();
    report.extra = extra.len() as u64;
    for id in extra
        .iter()
        .take(10usize.saturating_sub(report.examples.len()))
    {
        report.examples.push(format!("extra {id}"));
    }
    if repair && !extra.is_empty() {
        for id in extra {
            applier.push(Change::Delete(id))?;
        }
        let (a, r) = blocking(applier, |a| a.flush(None)).await?;
        applier = a;
        r?;
    }
    report.repaired = repair;
    Ok((applier, report))
}

/// [`super::apply::stored_records`] on a blocking thread.
async fn stored_records(
    coll: &std::sync::Arc<crate::engine::Collection>,
    ids: Vec<String>,
    full: bool,
) -> Result<HashMap<String, Record>, SyncError> {
    let coll = std::sync::Arc::clone(coll);
    tokio::task::spawn_blocking(move || super::apply::stored_records(&coll, ids, full))
        .await
        .map_err(|e| SyncError::Internal(e.to_string()))?
}

/// Field-by-field equality; vectors compared bit for bit.
fn same(a: &Record, b: &Record) -> bool {
    a.embedding.len() == b.embedding.len()
        && a.embedding
            .iter()
            .zip(&b.embedding)
            .all(|(x, y)| x.to_bits() == y.to_bits())
        && a.document == b.document
        && a.metadata == b.metadata
}
