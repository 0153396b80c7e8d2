//! `records.bin`: a segment's ids, first-insert sequence numbers and per-row fields (metadata,
//! document, uri), column by column in a [`BlockedFile`]:
//!
//! - `ids`: `u64` end offsets per row + UTF-8 bytes, and `by_id`: rows sorted by id bytes, so an
//!   id is found by binary search in the map (no heap index at open);
//! - `first_seq`: `u64` per row, and `order`: rows sorted by first-insert sequence (`get` order);
//! - `payload`: `u64` end offsets + one rkyv archive of [`Fields`] per row, validated when read.

use std::path::Path;

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};
use serde::{Deserialize, Serialize};

use super::blocked::{BlockedFile, BlockedWriter};
use crate::engine::EngineError;
use crate::types::Metadata;

pub(crate) const KIND_RECORDS: u32 = 2;

/// The non-vector fields of a record.
#[derive(Debug, Clone, Default, PartialEq, Archive, RkyvSerialize, RkyvDeserialize)]
pub(crate) struct Fields {
    pub metadata: Option<Metadata>,
    pub document: Option<String>,
    pub uri: Option<String>,
}

/// One row to write.
pub(crate) struct RowIn<'a> {
    pub id: &'a str,
    pub first_seq: u64,
    pub fields: &'a Fields,
}

#[derive(Debug, Serialize, Deserialize)]
struct RecordsMeta {
    rows: usize,
    id_ends: usize,
    id_bytes: usize,
    by_id: usize,
    by_id_len: usize,
    first_seq: usize,
    order: usize,
    payload_ends: usize,
    payload_bytes: usize,
}

/// Writes `rows` (in segment row order) to `path`, fsynced.
pub(crate) fn write(path: &Path, rows: &[RowIn<'_>]) -> Result<(), EngineError> {
    let n = rows.len();
    let mut w = BlockedWriter::create(path)?;

    let mut ends = Vec::with_capacity(n);
    let mut total = 0u64;
    for r in rows {
        total += r.id.len() as u64;
        ends.push(total);
    }
    let id_ends = w.align()?;
    w.write(bytemuck::cast_slice(&ends))?;
    let id_bytes = w.align()?;
    for r in rows {
        w.write(r.id.as_bytes())?;
    }

    // A memtable may hold several versions of an id (updates append); only the newest can be
    // live, so the sorted index keeps just the highest row per id.
    let mut by_id: Vec<u32> = (0..n as u32).collect();
    by_id.sort_unstable_by(|&a, &b| {
        rows[a as usize]
            .id
            .as_bytes()
            .cmp(rows[b as usize].id.as_bytes())
            .then(b.cmp(&a))
    });
    by_id.dedup_by(|later, first| rows[*later as usize].id == rows[*first as usize].id);
    let by_id_len = by_id.len();
    let by_id_at = w.align()?;
    w.write(bytemuck::cast_slice(&by_id))?;

    let seqs: Vec<u64> = rows.iter().map(|r| r.first_seq).collect();
    let first_seq = w.align()?;
    w.write(bytemuck::cast_slice(&seqs))?;
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by_key(|&r| (seqs[r as usize], r));
    let order_at = w.align()?;
    w.write(bytemuck::cast_slice(&order))?;

    let mut blobs = Vec::with_capacity(n);
    let mut ends = Vec::with_capacity(n);
    let mut total = 0u64;
    for r in rows {
        let blob = rkyv::to_bytes::<rancor::Error>(r.fields)
            .map_err(|e| EngineError::Internal(format!("encoding a record: {e}")))?;
        total += blob.len() as u64;
        ends.push(total);
        blobs.push(blob);
    }
    let payload_ends = w.align()?;
    w.write(bytemuck::cast_slice(&ends))?;
    let payload_bytes = w.align()?;
    for b in &blobs {
        w.write(b)?;
    }
    w.align()?;
    let meta = RecordsMeta {
        rows: n,
        id_ends,
        id_bytes,
        by_id: by_id_at,
        by_id_len,
        first_seq,
        order: order_at,
        payload_ends,
        payload_bytes,
    };
    let meta = serde_json::to_vec(&meta)
        .map_err(|e| EngineError::Internal(format!("encoding records meta: {e}")))?;
    w.finish(KIND_RECORDS, &meta)
}

/// A mapped `records.bin`.
#[derive(Debug)]
pub(crate) struct SegmentRecords {
    file: BlockedFile,
    meta: RecordsMeta,
}

impl SegmentRecords {
    /// Maps and checks the file (O(1)).
    pub(crate) fn open(path: &Path) -> Result<SegmentRecords, EngineError> {
        let file = BlockedFile::open(path, KIND_RECORDS)?;
        let meta: RecordsMeta =
            serde_json::from_slice(file.meta()).map_err(|e| EngineError::Corrupt {
                file: path.to_path_buf(),
                offset: file.data_len() as u64,
                reason: format!("unreadable section table: {e}"),
            })?;
        let n = meta.rows;
        let fits = |at: usize, bytes: Option<usize>| {
            at.is_multiple_of(64)
                && bytes
                    .and_then(|b| at.checked_add(b))
                    .is_some_and(|end| end <= file.data_len())
        };
        let ok = fits(meta.id_ends, n.checked_mul(8))
            && fits(meta.id_bytes, Some(0))
            && meta.by_id_len <= n
            && fits(meta.by_id, meta.by_id_len.checked_mul(4))
            && fits(meta.first_seq, n.checked_mul(8))
            && fits(meta.order, n.checked_mul(4))
            && fits(meta.payload_ends, n.checked_mul(8))
            && fits(meta.payload_bytes, Some(0));
        if !ok {
            return Err(EngineError::Corrupt {
                file: path.to_path_buf(),
                offset: file.data_len() as u64,
                reason: format!("section table does not fit the file: {meta:?}"),
            });
        }
        Ok(SegmentRecords { file, meta })
    }

    /// Number of rows.
    pub(crate) fn rows(&self) -> usize {
        self.meta.rows
    }

    fn corrupt(&self, offset: usize, reason: String) -> EngineError {
        EngineError::Corrupt {
            file: self.file.path().to_path_buf(),
            offset: offset as u64,
            reason,
        }
    }

    fn u64_at(&self, section: usize, i: usize) -> Result<u64, EngineError> {
        let at = section + i * 8;
        let b = self.file.bytes(at..at + 8)?;
        Ok(u64::from_le_bytes(
            b.try_into()
                .map_err(|_| self.corrupt(at, "short read".into()))?,
        ))
    }

    fn u32_at(&self, section: usize, i: usize) -> Result<u32, EngineError> {
        let at = section + i * 4;
        let b = self.file.bytes(at..at + 4)?;
        Ok(u32::from_le_bytes(
            b.try_into()
                .map_err(|_| self.corrupt(at, "short read".into()))?,
        ))
    }

    /// Byte range of entry `i` in a variable-length column.
    fn span(
        &self,
        ends: usize,
        base: usize,
        i: usize,
    ) -> Result<std::ops::Range<usize>, EngineError> {
        let start = if i == 0 { 0 } else { self.u64_at(ends, i - 1)? };
        let end = self.u64_at(ends, i)?;
        if start > end {
            return Err(self.corrupt(ends + i * 8, format!("offsets go backwards at row {i}")));
        }
        let (start, end) = (base + start as usize, base + end as usize);
        if end > self.file.data_len() {
            return Err(self.corrupt(ends + i * 8, format!("row {i} ends past the data region")));
        }
        Ok(start..end)
    }

    fn check_row(&self, row: u32) -> Result<usize, EngineError> {
        let r = row as usize;
        if r >= self.meta.rows {
            return Err(EngineError::Internal(format!(
                "row {row} out of {} in {}",
                self.meta.rows,
                self.file.path().display()
            )));
        }
        Ok(r)
    }

    fn id_bytes(&self, r: usize) -> Result<&[u8], EngineError> {
        let span = self.span(self.meta.id_ends, self.meta.id_bytes, r)?;
        self.file.bytes(span)
    }

    /// Row `row`'s id.
    pub(crate) fn id(&self, row: u32) -> Result<&str, EngineError> {
        let r = self.check_row(row)?;
        std::str::from_utf8(self.id_bytes(r)?).map_err(|e| {
            self.corrupt(
                self.meta.id_bytes,
                format!("id of row {r} is not UTF-8: {e}"),
            )
        })
    }

    /// The newest row holding `id`, by binary search over the sorted id column.
    pub(crate) fn find(&self, id: &str) -> Result<Option<u32>, EngineError> {
        let (mut lo, mut hi) = (0usize, self.meta.by_id_len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let row = self.u32_at(self.meta.by_id, mid)? as usize;
            if row >= self.meta.rows {
                return Err(self.corrupt(
                    self.meta.by_id + mid * 4,
                    format!("sorted-id entry points at row {row}"),
                ));
            }
            match self.id_bytes(row)?.cmp(id.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(row as u32)),
            }
        }
        Ok(None)
    }

    /// Row `row`'s first-insert sequence number.
    pub(crate) fn first_seq(&self, row: u32) -> Result<u64, EngineError> {
        let r = self.check_row(row)?;
        self.u64_at(self.meta.first_seq, r)
    }

    /// The `i`-th row in first-insert order.
    pub(crate) fn row_in_order(&self, i: usize) -> Result<u32, EngineError> {
        let row = self.u32_at(self.meta.order, i)?;
        if row as usize >= self.meta.rows {
            return Err(self.corrupt(
                self.meta.order + i * 4,
                format!("order entry points at row {row}"),
            ));
        }
        Ok(row)
    }

    /// Row `row`'s fields, decoded and validated.
    pub(crate) fn fields(&self, row: u32) -> Result<Fields, EngineError> {
        let r = self.check_row(row)?;
        let span = self.span(self.meta.payload_ends, self.meta.payload_bytes, r)?;
        let at = span.start;
        let bytes = self.file.bytes(span)?;
        let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<Fields, rancor::Error>(&aligned)
            .map_err(|e| self.corrupt(at, format!("record of row {r} is undecodable: {e}")))
    }

    /// Verifies every block (background scrub).
    pub(crate) fn verify_all(&self) -> Result<(), EngineError> {
        self.file.verify_all()
    }

    /// Bytes mapped.
    pub(crate) fn mapped_bytes(&self) -> usize {
        self.file.data_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MetadataValue;

    #[test]
    fn round_trip_find_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("records.bin");
        let fields: Vec<Fields> = (0..500)
            .map(|i| Fields {
                metadata: (i % 3 != 0).then(|| {
                    [("k".to_string(), MetadataValue::Int(i))]
                        .into_iter()
                        .collect()
                }),
                document: (i % 2 == 0).then(|| format!("doc {i}")),
                uri: None,
            })
            .collect();
        let ids: Vec<String> = (0..500)
            .map(|i| format!("id-{}", (i * 7919) % 500))
            .collect();
        let rows: Vec<RowIn> = (0..500)
            .map(|i| RowIn {
                id: &ids[i],
                first_seq: 1000 - i as u64,
                fields: &fields[i],
            })
            .collect();
        write(&p, &rows).unwrap();
        let r = SegmentRecords::open(&p).unwrap();
        assert_eq!(r.rows(), 500);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(r.id(i as u32).unwrap(), id);
            assert_eq!(r.find(id).unwrap(), Some(i as u32));
            assert_eq!(r.fields(i as u32).unwrap(), fields[i]);
            assert_eq!(r.first_seq(i as u32).unwrap(), 1000 - i as u64);
        }
        assert_eq!(r.find("nope").unwrap(), None);
        // With duplicate ids, find returns the newest (highest) row.
        let dup_fields = Fields::default();
        let dups = [
            RowIn {
                id: "x",
                first_seq: 1,
                fields: &dup_fields,
            },
            RowIn {
                id: "y",
                first_seq: 2,
                fields: &dup_fields,
            },
            RowIn {
                id: "x",
                first_seq: 1,
                fields: &dup_fields,
            },
        ];
        let p2 = dir.path().join("dups.bin");
        write(&p2, &dups).unwrap();
        let d = SegmentRecords::open(&p2).unwrap();
        assert_eq!(d.find("x").unwrap(), Some(2));
        assert_eq!(d.find("y").unwrap(), Some(1));
        // first_seq decreases with row, so insertion order is reverse row order.
        assert_eq!(r.row_in_order(0).unwrap(), 499);
        assert_eq!(r.row_in_order(499).unwrap(), 0);
        r.verify_all().unwrap();
    }

    #[test]
    fn empty_segment_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("records.bin");
        write(&p, &[]).unwrap();
        let r = SegmentRecords::open(&p).unwrap();
        assert_eq!(r.rows(), 0);
        assert_eq!(r.find("x").unwrap(), None);
    }
}
