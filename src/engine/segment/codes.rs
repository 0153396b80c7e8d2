//! `codes.bin`: a segment's int8 codes ([`crate::index::quant`]), one per row at a 64-byte
//! stride, in a [`BlockedFile`] (per-block CRCs checked on first touch). Graph traversal reads
//! these (a quarter of the f32 bytes); the final candidates are rescored from `vectors.bin`.
//! Written alongside the graph: a segment without a graph has no codes.
//!
//! Version 2 (l2/ip) adds the centre the codes are taken relative to ([`quant::Coder`]) as a
//! section of `dim` f32 after the codes, so it is block-checksummed like them. Codes without a
//! centre (cosine) are still written as version 1, byte for byte as before; version-1 files
//! open as codes without a centre, which is what they are.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::blocked::{BlockedFile, BlockedWriter, RANDOM_ACCESS_BLOCK_SIZE};
use crate::engine::EngineError;
use crate::index::quant;
use crate::types::Space;

pub(crate) const KIND_CODES: u32 = 4;

/// Format of the codes themselves (bump when `quant`'s encoding changes): codes without a
/// centre.
const CODES_VERSION: u32 = 1;
/// Codes relative to a centre stored at `centre_at`.
const CODES_VERSION_CENTRED: u32 = 2;

#[derive(Debug, Serialize, Deserialize)]
struct CodesMeta {
    version: u32,
    space: String,
    rows: usize,
    dim: usize,
    stride: usize,
    codes_at: usize,
    /// Version 2: offset of the centre (`dim` little-endian f32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    centre_at: Option<usize>,
}

/// Bytes per row: the code rounded up to a cache line, so a code never straddles one more
/// line than it must.
fn stride(dim: usize) -> usize {
    quant::code_len(dim).next_multiple_of(64)
}

/// Streams codes into a new `codes.bin`.
pub(crate) struct CodesWriter {
    w: BlockedWriter,
    coder: quant::Coder,
    dim: usize,
    rows: usize,
    codes_at: usize,
    row: Vec<i8>,
}

impl CodesWriter {
    /// Creates `path` for `dim`-d codes made by `coder`.
    pub(crate) fn create(
        path: &Path,
        coder: &quant::Coder,
        dim: usize,
    ) -> Result<CodesWriter, EngineError> {
        if coder.centre().is_some_and(|c| c.len() != dim) {
            return Err(EngineError::Internal(format!(
                "a centre of dimension {:?} for codes of dimension {dim}",
                coder.centre().map(<[f32]>::len)
            )));
        }
        let mut w = BlockedWriter::create_with_block_size(path, RANDOM_ACCESS_BLOCK_SIZE)?;
        let codes_at = w.align()?;
        Ok(CodesWriter {
            w,
            coder: coder.clone(),
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
        self.coder.encode_into(v, &mut self.row);
        self.row.resize(stride(self.dim), 0);
        self.w.write(bytemuck::cast_slice(&self.row))?;
        self.rows += 1;
        Ok(())
    }

    /// Writes the section table and footer, fsynced.
    pub(crate) fn finish(mut self) -> Result<(), EngineError> {
        let end = self.w.align()?;
        let centre_at = match self.coder.centre() {
            Some(centre) => {
                let bytes: Vec<u8> = centre.iter().flat_map(|x| x.to_le_bytes()).collect();
                self.w.write(&bytes)?;
                self.w.align()?;
                Some(end)
            }
            None => None,
        };
        let meta = serde_json::to_vec(&CodesMeta {
            version: if centre_at.is_some() {
                CODES_VERSION_CENTRED
            } else {
                CODES_VERSION
            },
            space: self.coder.space().as_str().to_string(),
            rows: self.rows,
            dim: self.dim,
            stride: stride(self.dim),
            codes_at: self.codes_at,
            centre_at,
        })
        .map_err(|e| EngineError::Internal(format!("encoding codes meta: {e}")))?;
        self.w.finish(KIND_CODES, &meta)
    }
}

/// A mapped `codes.bin`.
#[derive(Debug)]
pub(crate) struct SegmentCodes {
    file: BlockedFile,
    coder: quant::Coder,
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
        let centred = match meta.version {
            CODES_VERSION => false,
            CODES_VERSION_CENTRED => true,
            found => {
                return Err(EngineError::Version {
                    path: path.to_path_buf(),
                    found,
                    expected: CODES_VERSION_CENTRED,
                })
            }
        };
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
        let centre_fits = match (centred, meta.centre_at) {
            (false, None) => true,
            (true, Some(at)) => {
                at.is_multiple_of(64)
                    && meta
                        .rows
                        .checked_mul(meta.stride)
                        .and_then(|b| b.checked_add(meta.codes_at))
                        .is_some_and(|codes_end| at >= codes_end)
                    && meta
                        .dim
                        .checked_mul(4)
                        .and_then(|b| b.checked_add(at))
                        .is_some_and(|end| end <= file.data_len())
            }
            _ => false,
        };
        if !fits || !centre_fits {
            return Err(corrupt(format!(
                "section table does not fit the file: {meta:?}"
            )));
        }
        let coder = match meta.centre_at.filter(|_| centred) {
            // Read (and its blocks verified) once: every query is coded against it.
            Some(at) => {
                let bytes = file.bytes(at..at + meta.dim * 4)?;
                let centre: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                let coder = quant::Coder::centred(space, &centre);
                if coder.centre().is_none() {
                    return Err(corrupt(format!(
                        "the codes' centre is unusable for {}",
                        space.as_str()
                    )));
                }
                coder
            }
            None => quant::Coder::plain(space),
        };
        Ok(SegmentCodes {
            coder,
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
        self.coder.space()
    }

    /// How the codes were made (queries are coded the same way).
    pub(crate) fn coder(&self) -> &quant::Coder {
        &self.coder
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

    /// Starts reading row `row`'s code in if this map has not read it yet (see
    /// [`BlockedFile::will_need`]).
    #[inline]
    pub(crate) fn will_need(&self, row: u32) {
        if (row as usize) < self.rows {
            let start = self.codes_at + row as usize * self.stride;
            self.file
                .will_need(start..start + quant::code_len(self.dim));
        }
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
    fn centred_codes_round_trip_and_plain_ones_stay_version_1() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<Vec<f32>> = (0..200)
            .map(|i| {
                (0..19)
                    .map(|d| 50.0 + ((i * 19 + d) as f32).sin())
                    .collect()
            })
            .collect();
        let centre = vec![50.0f32; 19];
        for (space, centred) in [(Space::L2, true), (Space::Ip, true), (Space::Cosine, false)] {
            let p = dir.path().join(format!("{}.bin", space.as_str()));
            let coder = quant::Coder::centred(space, &centre);
            let mut w = CodesWriter::create(&p, &coder, 19).unwrap();
            for r in &rows {
                w.push(r).unwrap();
            }
            w.finish().unwrap();
            let c = SegmentCodes::open(&p).unwrap();
            assert_eq!(c.coder(), &coder);
            assert_eq!(c.coder().centre().is_some(), centred);
            let meta: CodesMeta =
                serde_json::from_slice(BlockedFile::open(&p, KIND_CODES).unwrap().meta()).unwrap();
            assert_eq!(meta.version, if centred { 2 } else { 1 });
            for (i, r) in rows.iter().enumerate() {
                assert_eq!(c.code(i as u32).unwrap(), coder.encode(r).as_slice());
            }
            c.verify_all().unwrap();
        }
        // A centre of the wrong length is refused before anything is written.
        let p = dir.path().join("bad.bin");
        assert!(CodesWriter::create(&p, &quant::Coder::centred(Space::L2, &[1.0; 3]), 19).is_err());
    }

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
        let mut w = CodesWriter::create(&p, &quant::Coder::plain(Space::Cosine), 37).unwrap();
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
