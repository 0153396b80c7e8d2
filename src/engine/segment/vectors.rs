//! `vectors.bin`: a segment's vectors exactly as written (row-major little-endian f32, 64-byte
//! aligned) followed by one f32 inverse norm per row for cosine, in a [`BlockedFile`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::blocked::{BlockedFile, BlockedWriter, RANDOM_ACCESS_BLOCK_SIZE};
use crate::engine::EngineError;
use crate::index::distance::inverse_norm;

#[cfg(not(target_endian = "little"))]
compile_error!("segment files store little-endian floats and are viewed in place");

pub(crate) const KIND_VECTORS: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct VectorsMeta {
    rows: usize,
    dim: usize,
    vectors_at: usize,
    norms_at: usize,
}

/// Writes `rows` vectors of length `dim` (and their inverse norms) to `path`, fsynced; each
/// row is also handed to `each` (the codes writer), so the rows are read once.
pub(crate) fn write<'a>(
    path: &Path,
    dim: usize,
    rows: impl ExactSizeIterator<Item = Result<&'a [f32], EngineError>>,
    mut each: impl FnMut(&[f32]) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    let n = rows.len();
    let mut w = BlockedWriter::create_with_block_size(path, RANDOM_ACCESS_BLOCK_SIZE)?;
    let vectors_at = w.align()?;
    let mut norms = Vec::with_capacity(n);
    for v in rows {
        let v = v?;
        if v.len() != dim {
            return Err(EngineError::Internal(format!(
                "segment row of length {} in dimension {dim}",
                v.len()
            )));
        }
        w.write(bytemuck::cast_slice(v))?;
        norms.push(inverse_norm(v));
        each(v)?;
    }
    let norms_at = w.align()?;
    w.write(bytemuck::cast_slice(&norms))?;
    w.align()?;
    let meta = serde_json::to_vec(&VectorsMeta {
        rows: n,
        dim,
        vectors_at,
        norms_at,
    })
    .map_err(|e| EngineError::Internal(format!("encoding vectors meta: {e}")))?;
    w.finish(KIND_VECTORS, &meta)
}

/// A mapped `vectors.bin`.
#[derive(Debug)]
pub(crate) struct SegmentVectors {
    file: BlockedFile,
    rows: usize,
    dim: usize,
    vectors_at: usize,
    norms_at: usize,
}

impl SegmentVectors {
    /// Maps and checks the file (O(1)).
    pub(crate) fn open(path: &Path) -> Result<SegmentVectors, EngineError> {
        let file = BlockedFile::open(path, KIND_VECTORS)?;
        let corrupt = |reason: String| EngineError::Corrupt {
            file: path.to_path_buf(),
            offset: file.data_len() as u64,
            reason,
        };
        let meta: VectorsMeta = serde_json::from_slice(file.meta())
            .map_err(|e| corrupt(format!("unreadable section table: {e}")))?;
        let vec_bytes = meta
            .rows
            .checked_mul(meta.dim)
            .and_then(|x| x.checked_mul(4));
        let fits = vec_bytes
            .and_then(|b| meta.vectors_at.checked_add(b))
            .is_some_and(|end| end <= meta.norms_at)
            && meta
                .norms_at
                .checked_add(meta.rows * 4)
                .is_some_and(|end| end <= file.data_len())
            && meta.vectors_at.is_multiple_of(64)
            && meta.norms_at.is_multiple_of(64)
            && meta.dim > 0;
        if !fits {
            return Err(corrupt(format!(
                "section table does not fit the file: {meta:?}"
            )));
        }
        Ok(SegmentVectors {
            rows: meta.rows,
            dim: meta.dim,
            vectors_at: meta.vectors_at,
            norms_at: meta.norms_at,
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

    /// Row `row`'s vector, viewed in place.
    #[inline]
    pub(crate) fn vector(&self, row: u32) -> Result<&[f32], EngineError> {
        let start = self.vectors_at + row as usize * self.dim * 4;
        self.floats(start, self.dim, row)
    }

    /// Row `row`'s inverse norm.
    #[inline]
    pub(crate) fn inv_norm(&self, row: u32) -> Result<f32, EngineError> {
        Ok(self.floats(self.norms_at + row as usize * 4, 1, row)?[0])
    }

    /// Starts reading row `row` (vector and inverse norm) in if this map has not read it yet
    /// (see [`BlockedFile::will_need`]).
    #[inline]
    pub(crate) fn will_need(&self, row: u32) {
        if (row as usize) < self.rows {
            let start = self.vectors_at + row as usize * self.dim * 4;
            self.file.will_need(start..start + self.dim * 4);
            let norm = self.norms_at + row as usize * 4;
            self.file.will_need(norm..norm + 4);
        }
    }

    /// Row `row` without checksum verification — only for prefetch hints, never for reading.
    pub(crate) fn unverified_row(&self, row: u32) -> Option<&[f32]> {
        if row as usize >= self.rows {
            return None;
        }
        let start = self.vectors_at + row as usize * self.dim * 4;
        self.file
            .unverified(start..start + self.dim * 4)
            .and_then(|b| bytemuck::try_cast_slice(b).ok())
    }

    fn floats(&self, start: usize, count: usize, row: u32) -> Result<&[f32], EngineError> {
        if row as usize >= self.rows {
            return Err(EngineError::Internal(format!(
                "row {row} out of {} in {}",
                self.rows,
                self.file.path().display()
            )));
        }
        let bytes = self.file.bytes(start..start + count * 4)?;
        bytemuck::try_cast_slice(bytes).map_err(|e| EngineError::Corrupt {
            file: self.file.path().to_path_buf(),
            offset: start as u64,
            reason: format!("misaligned vector data: {e}"),
        })
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
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vectors.bin");
        let rows: Vec<Vec<f32>> = (0..1000)
            .map(|i| (0..37).map(|d| (i * 37 + d) as f32 * 0.5).collect())
            .collect();
        write(&p, 37, rows.iter().map(|r| Ok(r.as_slice())), |_| Ok(())).unwrap();
        let v = SegmentVectors::open(&p).unwrap();
        assert_eq!((v.rows(), v.dim()), (1000, 37));
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(v.vector(i as u32).unwrap(), r.as_slice());
            assert_eq!(v.inv_norm(i as u32).unwrap(), inverse_norm(r));
        }
        assert!(v.vector(1000).is_err());
        v.verify_all().unwrap();
    }
}
