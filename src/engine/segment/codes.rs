//! `codes.bin`: a segment's int8 codes ([`crate::index::quant`]), one per row at a 64-byte
//! stride, in a [`BlockedFile`] (per-block CRCs checked on first touch). Graph traversal reads
//! these (a quarter of the f32 bytes); the final candidates are rescored from `vectors.bin`.
//! Written alongside the graph: a segment without a graph has no codes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::blocked::{BlockedFile, BlockedWriter};
use crate::engine::EngineError;
use crate::index::quant;
use crate::types::Space;

pub(crate) const KIND_CODES: u32 = 4;

/// Format of the codes themselves (bump when `quant`'s encoding changes).
const CODES_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct CodesMeta {
    version: u32,
    space: String,
    rows: usize,
    dim: usize,
    stride: usize,
    codes_at: usize,
}

/// Bytes per row: the code rounded up to a cache line, so a code never straddles one more
/// line than it must.
fn stride(dim: usize) -> usize {
    quant::code_len(dim).next_multiple_of(64)
}

/// Streams codes into a new `codes.bin`.
pub(crate) struct CodesWriter {
    w: BlockedWriter,
    space: Space,
    dim: usize,
    rows: usize,
    codes_at: usize,
    row: Vec<i8>,
}

impl CodesWriter {
    /// Creates `path` for `dim`-d codes in `space`.
    pub(crate) fn create(
        path: &Path,
        space: Space,
        dim: usize,
    ) -> Result<CodesWriter, EngineError> {
        let mut w = BlockedWriter::create(path)?;
        let codes_at = w.align()?;
        Ok(CodesWriter {
            w,
            space,
            dim,
            rows: 0,
            codes_at,
            row: Vec::with_capacity(stride(dim)),
        })
    }

    /// Appends the code of the next row's vector.
    pub(crate) fn push(&mut self, v: &[f32]) -> Result<(), EngineError> {
        if v.len() != self.dim {
            return Err(EngineError::Internal(format!(
                "code for a row of length {} in dimension {}",
                v.len(),
                self.dim
            )));
        }
        self.row.clear();
        quant::encode_into(self.space, v, &mut self.row);
        self.row.resize(stride(self.dim), 0);
        self.w.write(bytemuck::cast_slice(&self.row))?;
        self.rows += 1;
        Ok(())
    }

    /// Writes the section table and footer, fsynced.
    pub(crate) fn finish(mut self) -> Result<(), EngineError> {
        self.w.align()?;
        let meta = serde_json::to_vec(&CodesMeta {
            version: CODES_VERSION,
            space: self.space.as_str().to_string(),
            rows: self.rows,
            dim: self.dim,
            stride: stride(self.dim),
            codes_at: self.codes_at,
        })
        .map_err(|e| EngineError::Internal(format!("encoding codes meta: {e}")))?;
        self.w.finish(KIND_CODES, &meta)
    }
}

/// A mapped `codes.bin`.
#[derive(Debug)]
pub(crate) struct SegmentCodes {
    file: BlockedFile,
    space: Space,
    rows: usize,
    dim: usize,
    stride: usize,
    codes_at: usize,
}

impl SegmentCodes {
    /// Maps and checks the file (O(1)).
    pub(crate) fn open(path: &Path) -> Result<SegmentCodes, EngineError> {
        let file = BlockedFile::open(path, KIND_CODES)?;
        let corrupt = |reason: String| EngineError::Corrupt {
            file: path.to_path_buf(),
            offset: file.data_len() as u64,
            reason,
        };
        let meta: CodesMeta = serde_json::from_slice(file.meta())
            .map_err(|e| corrupt(format!("unreadable section table: {e}")))?;
        if meta.version != CODES_VERSION {
            return Err(EngineError::Version {
                path: path.to_path_buf(),
                found: meta.version,
                expected: CODES_VERSION,
            });
        }
        let space = Space::parse(&meta.space)
            .ok_or_else(|| corrupt(format!("unknown space {:?}", meta.space)))?;
        let fits = meta.dim > 0
            && meta.stride == stride(meta.dim)
            && meta.codes_at.is_multiple_of(64)
            && meta
                .rows
                .checked_mul(meta.stride)
                .and_then(|b| b.checked_add(meta.codes_at))
                .is_some_and(|end| end <= file.data_len());
        if !fits {
            return Err(corrupt(format!(
                "section table does not fit the file: {meta:?}"
            )));
        }
        Ok(SegmentCodes {
            space,
            rows: meta.rows,
            dim: meta.dim,
            stride: meta.stride,
            codes_at: meta.codes_at,
            file,
        })
    }

    /// Number of rows.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Vector length.
    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// The space the codes were made for.
    pub(crate) fn space(&self) -> Space {
        self.space
    }

    /// Row `row`'s code (components + trailer), its blocks verified.
    #[inline]
    pub(crate) fn code(&self, row: u32) -> Result<&[i8], EngineError> {
        if row as usize >= self.rows {
            return Err(EngineError::Internal(format!(
                "code row {row} out of {} in {}",
                self.rows,
                self.file.path().display()
            )));
        }
        let start = self.codes_at + row as usize * self.stride;
        let bytes = self.file.bytes(start..start + quant::code_len(self.dim))?;
        Ok(bytemuck::cast_slice(bytes))
    }

    /// Row `row`'s bytes without verification — only for prefetch hints.
    #[inline]
    pub(crate) fn unverified(&self, row: u32) -> Option<&[u8]> {
        if row as usize >= self.rows {
            return None;
        }
        let start = self.codes_at + row as usize * self.stride;
        self.file
            .unverified(start..start + quant::code_len(self.dim))
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

    #[test]
    fn round_trip_and_strict_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("codes.bin");
        let rows: Vec<Vec<f32>> = (0..300)
            .map(|i| {
                (0..37)
                    .map(|d| ((i * 37 + d) as f32 * 0.37).sin())
                    .collect()
            })
            .collect();
        let mut w = CodesWriter::create(&p, Space::Cosine, 37).unwrap();
        for r in &rows {
            w.push(r).unwrap();
        }
        assert!(w.push(&[1.0]).is_err());
        w.finish().unwrap();
        let c = SegmentCodes::open(&p).unwrap();
        assert_eq!((c.rows(), c.dim(), c.space()), (300, 37, Space::Cosine));
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(
                c.code(i as u32).unwrap(),
                quant::encode(Space::Cosine, r).as_slice()
            );
        }
        assert!(c.code(300).is_err());
        c.verify_all().unwrap();

        // A flipped byte in the data is reported with the file, never read as a code.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[100] ^= 0x40;
        std::fs::write(&p, &bytes).unwrap();
        match SegmentCodes::open(&p) {
            Ok(c) => assert!(matches!(c.code(0), Err(EngineError::Corrupt { .. }))),
            Err(e) => assert!(matches!(e, EngineError::Corrupt { .. })),
        }
    }
}
