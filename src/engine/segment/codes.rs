//! `codes.bin`: a segment's int8 codes ([`crate::index::quant`]), one per row at a 64-byte
//! stride, in a [`BlockedFile`] (per-block CRCs checked on first touch). Graph traversal reads
//! these (a quarter of the f32 bytes); the final candidates are rescored from `vectors.bin`.
//! Written alongside the graph: a segment without a graph has no codes.
//!
//! Version 3, written since 2026-11-26, stores each row as its trailer, then the high nibble
//! plane, then the low one ([`crate::index::nibbles`]): the walk reads the trailer and high
//! plane only (13 of 25 cache lines at 1536-d), the exact int8 code is both planes, and a row
//! takes the same bytes as before. The centre of l2/ip codes ([`quant::Coder`]) is a section of
//! `dim` f32 after the rows, so it is block-checksummed like them.
//!
//! Versions 1 (plain) and 2 (with a centre) store the int8 code as it is; they still open and
//! are walked over the whole code, until compaction rewrites the segment.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::blocked::{BlockedFile, BlockedWriter, RANDOM_ACCESS_BLOCK_SIZE};
use crate::engine::EngineError;
use crate::index::{nibbles, quant};
use crate::types::Space;

pub(crate) const KIND_CODES: u32 = 4;

/// Format of the codes themselves (bump when `quant`'s encoding changes): int8 codes without a
/// centre.
const CODES_VERSION: u32 = 1;
/// int8 codes relative to a centre stored at `centre_at`.
const CODES_VERSION_CENTRED: u32 = 2;
/// Nibble planes (module docs), with a centre at `centre_at` for l2/ip.
const CODES_VERSION_SPLIT: u32 = 3;

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

/// Bytes per row of an int8 (version 1 and 2) file: the code rounded up to a cache line, so a
/// code never straddles one more line than it must.
fn stride(dim: usize) -> usize {
    quant::code_len(dim).next_multiple_of(64)
}

/// Bytes per row of a split (version 3) file: trailer and two planes, to a cache line.
fn split_stride(dim: usize) -> usize {
    (quant::TRAILER + 2 * nibbles::plane_len(dim)).next_multiple_of(64)
}

/// Fewest components for which a split file's walk ranks by the high plane alone. The 4-bit
/// error of a dot product shrinks relative to its spread as components add up (~1/√dim); in a
/// few dimensions it swamps the gaps between neighbours (a 3-d grid of near-ties lost exact
/// answers), and there the rows are small enough that reading both planes costs little.
const HIGH_PLANE_WALK_MIN_DIM: usize = 256;

/// How a file lays out a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// The int8 code as [`quant`] makes it (components, then trailer).
    Int8,
    /// Trailer, high plane, low plane; walked over the high plane alone.
    Split,
    /// As [`Layout::Split`], in fewer than [`HIGH_PLANE_WALK_MIN_DIM`] dimensions: walked over
    /// the exact int8 code both planes give.
    SplitExact,
}

/// A query coded for one segment's codes, with what its distances need precomputed.
pub(crate) struct QueryCode<'a> {
    code: std::borrow::Cow<'a, [i8]>,
    /// `Σ qᵢ` over the components, for the nibble planes.
    sum: i32,
}

impl<'a> QueryCode<'a> {
    /// `code`, a query coded the way the segment's rows were ([`quant::Coder`]).
    pub(crate) fn new(code: std::borrow::Cow<'a, [i8]>) -> QueryCode<'a> {
        let sum = quant::split(&code).map_or(0, |(c, _, _)| nibbles::sum(c));
        QueryCode { code, sum }
    }

    /// The int8 code (components + trailer).
    pub(crate) fn code(&self) -> &[i8] {
        &self.code
    }
}

/// Streams codes into a new `codes.bin`.
pub(crate) struct CodesWriter {
    w: BlockedWriter,
    coder: quant::Coder,
    dim: usize,
    rows: usize,
    codes_at: usize,
    /// Scratch: one row's int8 code, its bytes as written, its low plane.
    code: Vec<i8>,
    row: Vec<u8>,
    lo: Vec<u8>,
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
            code: Vec::with_capacity(quant::code_len(dim)),
            row: Vec::with_capacity(split_stride(dim)),
            lo: Vec::with_capacity(nibbles::plane_len(dim)),
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
        self.code.clear();
        self.coder.encode_into(v, &mut self.code);
        let (components, _, _) = quant::split(&self.code)
            .ok_or_else(|| EngineError::Internal("a code without its trailer".into()))?;
        let trailer = &self.code[components.len()..];
        let half = nibbles::plane_len(self.dim);
        self.row.clear();
        self.row.extend(trailer.iter().map(|&b| b as u8));
        self.lo.clear();
        nibbles::split_into(components, &mut self.row, &mut self.lo);
        debug_assert_eq!(self.row.len(), quant::TRAILER + half);
        self.row.extend_from_slice(&self.lo);
        self.row.resize(split_stride(self.dim), 0);
        self.w.write(&self.row)?;
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
            version: CODES_VERSION_SPLIT,
            space: self.coder.space().as_str().to_string(),
            rows: self.rows,
            dim: self.dim,
            stride: split_stride(self.dim),
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
    layout: Layout,
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
        // `None`: a split file, whose centre is optional (present for l2/ip).
        let (layout, centred) = match meta.version {
            CODES_VERSION => (Layout::Int8, Some(false)),
            CODES_VERSION_CENTRED => (Layout::Int8, Some(true)),
            CODES_VERSION_SPLIT if meta.dim >= HIGH_PLANE_WALK_MIN_DIM => (Layout::Split, None),
            CODES_VERSION_SPLIT => (Layout::SplitExact, None),
            found => {
                return Err(EngineError::Version {
                    path: path.to_path_buf(),
                    found,
                    expected: CODES_VERSION_SPLIT,
                })
            }
        };
        let space = Space::parse(&meta.space)
            .ok_or_else(|| corrupt(format!("unknown space {:?}", meta.space)))?;
        let want_stride = match layout {
            Layout::Int8 => stride(meta.dim),
            Layout::Split | Layout::SplitExact => split_stride(meta.dim),
        };
        let fits = meta.dim > 0
            && meta.stride == want_stride
            && meta.codes_at.is_multiple_of(64)
            && meta
                .rows
                .checked_mul(meta.stride)
                .and_then(|b| b.checked_add(meta.codes_at))
                .is_some_and(|end| end <= file.data_len());
        let centre_fits = match (centred, meta.centre_at) {
            (Some(false) | None, None) => true,
            (Some(true) | None, Some(at)) => {
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
        let coder = match meta.centre_at {
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
            layout,
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

    /// Bytes of a row the walk reads: the whole int8 code, or the trailer and high plane.
    #[inline]
    fn walk_len(&self) -> usize {
        match self.layout {
            Layout::Int8 => quant::code_len(self.dim),
            Layout::Split => quant::TRAILER + nibbles::plane_len(self.dim),
            Layout::SplitExact => quant::TRAILER + 2 * nibbles::plane_len(self.dim),
        }
    }

    /// The first `len` bytes of row `row`, their blocks verified.
    #[inline]
    fn row_bytes(&self, row: u32, len: usize) -> Result<&[u8], EngineError> {
        if row as usize >= self.rows {
            return Err(EngineError::Internal(format!(
                "code row {row} out of {} in {}",
                self.rows,
                self.file.path().display()
            )));
        }
        let start = self.codes_at + row as usize * self.stride;
        self.file.bytes(start..start + len)
    }

    /// Approximate distance from `q` (coded by [`Self::coder`]) to row `row`: ordering only,
    /// from the int8 code or, in a split file, from the high plane alone.
    #[inline]
    pub(crate) fn approx_distance(&self, q: &QueryCode<'_>, row: u32) -> Result<f32, EngineError> {
        let bytes = self.row_bytes(row, self.walk_len())?;
        let space = self.coder.space();
        Ok(match self.layout {
            Layout::Int8 => quant::approx_distance(space, &q.code, bytemuck::cast_slice(bytes)),
            Layout::Split | Layout::SplitExact => {
                let (Some((qc, sa, na)), Some((t, planes))) =
                    (quant::split(&q.code), bytes.split_first_chunk::<8>())
                else {
                    return Ok(f32::INFINITY);
                };
                let word = |i: usize| f32::from_le_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
                let half = nibbles::plane_len(self.dim);
                let dot = match self.layout {
                    Layout::SplitExact => {
                        let (hi, lo) = planes.split_at(half);
                        nibbles::exact_dot(qc, q.sum, hi, lo) as f32
                    }
                    _ => nibbles::approx_dot(qc, q.sum, planes),
                };
                quant::distance_from_dot(space, dot, (sa, na), (word(0), word(4)))
            }
        })
    }

    /// Writes row `row`'s int8 code (components + trailer, [`quant`]'s layout) into `out`,
    /// which is [`quant::code_len`] long.
    pub(crate) fn code_into(&self, row: u32, out: &mut [i8]) -> Result<(), EngineError> {
        let len = quant::code_len(self.dim);
        if out.len() != len {
            return Err(EngineError::Internal(format!(
                "a code buffer of {} bytes for codes of {len}",
                out.len()
            )));
        }
        match self.layout {
            Layout::Int8 => {
                out.copy_from_slice(bytemuck::cast_slice(self.row_bytes(row, len)?));
            }
            Layout::Split | Layout::SplitExact => {
                let half = nibbles::plane_len(self.dim);
                let bytes = self.row_bytes(row, quant::TRAILER + 2 * half)?;
                let (trailer, planes) = bytes.split_at(quant::TRAILER);
                let (hi, lo) = planes.split_at(half);
                let (components, out_trailer) = out.split_at_mut(self.dim);
                nibbles::join(hi, lo, components);
                out_trailer.copy_from_slice(bytemuck::cast_slice(trailer));
            }
        }
        Ok(())
    }

    /// Starts reading row `row`'s walked bytes in if this map has not read them yet (see
    /// [`BlockedFile::will_need`]).
    #[inline]
    pub(crate) fn will_need(&self, row: u32) {
        if (row as usize) < self.rows {
            let start = self.codes_at + row as usize * self.stride;
            self.file.will_need(start..start + self.walk_len());
        }
    }

    /// Row `row`'s walked bytes without verification — only for prefetch hints.
    #[inline]
    pub(crate) fn unverified(&self, row: u32) -> Option<&[u8]> {
        if row as usize >= self.rows {
            return None;
        }
        let start = self.codes_at + row as usize * self.stride;
        self.file.unverified(start..start + self.walk_len())
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

/// Writes a version 1 (no centre) or 2 (centred) file: the layout before nibble planes, kept so
/// tests can check that such files still open and read the same.
#[cfg(test)]
pub(crate) fn write_int8_file(
    path: &Path,
    coder: &quant::Coder,
    dim: usize,
    rows: &[Vec<f32>],
) -> Result<(), EngineError> {
    let mut w = BlockedWriter::create_with_block_size(path, RANDOM_ACCESS_BLOCK_SIZE)?;
    let codes_at = w.align()?;
    for r in rows {
        let mut code = coder.encode(r);
        code.resize(stride(dim), 0);
        w.write(bytemuck::cast_slice(&code))?;
    }
    let end = w.align()?;
    let centre_at = match coder.centre() {
        Some(centre) => {
            let bytes: Vec<u8> = centre.iter().flat_map(|x| x.to_le_bytes()).collect();
            w.write(&bytes)?;
            w.align()?;
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
        space: coder.space().as_str().to_string(),
        rows: rows.len(),
        dim,
        stride: stride(dim),
        codes_at,
        centre_at,
    })
    .map_err(|e| EngineError::Internal(format!("encoding codes meta: {e}")))?;
    w.finish(KIND_CODES, &meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(c: &SegmentCodes, row: u32) -> Result<Vec<i8>, EngineError> {
        let mut out = vec![0i8; quant::code_len(c.dim())];
        c.code_into(row, &mut out)?;
        Ok(out)
    }

    #[test]
    fn codes_round_trip_as_nibble_planes_and_int8_files_still_open() {
        let dir = tempfile::tempdir().unwrap();
        // 19-d: walked over both planes (exact int8); 300-d: over the high plane.
        for dim in [19usize, 300] {
            let rows: Vec<Vec<f32>> = (0..200)
                .map(|i| {
                    (0..dim)
                        .map(|d| 50.0 + ((i * dim + d) as f32).sin())
                        .collect()
                })
                .collect();
            let centre = vec![50.0f32; dim];
            let query = vec![50.5f32; dim];
            for (space, centred) in [(Space::L2, true), (Space::Ip, true), (Space::Cosine, false)] {
                let coder = quant::Coder::centred(space, &centre);
                let qcode = coder.encode(&query);
                let q = QueryCode::new(std::borrow::Cow::Borrowed(&qcode));
                let (qc, qs, _) = quant::split(&qcode).unwrap();

                let p = dir.path().join(format!("{}-{dim}.bin", space.as_str()));
                let mut w = CodesWriter::create(&p, &coder, dim).unwrap();
                for r in &rows {
                    w.push(r).unwrap();
                }
                w.finish().unwrap();
                let c = SegmentCodes::open(&p).unwrap();
                assert_eq!(c.coder(), &coder);
                assert_eq!(c.coder().centre().is_some(), centred);
                let meta: CodesMeta =
                    serde_json::from_slice(BlockedFile::open(&p, KIND_CODES).unwrap().meta())
                        .unwrap();
                assert_eq!(meta.version, CODES_VERSION_SPLIT);
                for (i, r) in rows.iter().enumerate() {
                    let code = coder.encode(r);
                    assert_eq!(code_of(&c, i as u32).unwrap(), code);
                    let exact = quant::approx_distance(space, &qcode, &code);
                    let walk = c.approx_distance(&q, i as u32).unwrap();
                    if dim < HIGH_PLANE_WALK_MIN_DIM {
                        assert_eq!(walk, exact);
                        continue;
                    }
                    // The high plane is the int8 code up to half a nibble step per component
                    // (l2 counts the dot product twice).
                    let (_, rs, _) = quant::split(&code).unwrap();
                    let slack: f32 =
                        qc.iter().map(|&x| (x as f32).abs() * 8.0).sum::<f32>() * qs * rs;
                    let slack = if space == Space::L2 {
                        2.0 * slack
                    } else {
                        slack
                    };
                    assert!(
                        (walk - exact).abs() <= slack * 1.001 + 1e-4,
                        "{space:?} {dim}-d row {i}: {walk} vs {exact} (slack {slack})"
                    );
                }
                c.verify_all().unwrap();

                // The int8 layout of versions 1 and 2 reads the same codes, walked exactly.
                let old = dir
                    .path()
                    .join(format!("{}-{dim}-int8.bin", space.as_str()));
                write_int8_file(&old, &coder, dim, &rows).unwrap();
                let c = SegmentCodes::open(&old).unwrap();
                assert_eq!(c.coder(), &coder);
                for (i, r) in rows.iter().enumerate() {
                    let code = coder.encode(r);
                    assert_eq!(code_of(&c, i as u32).unwrap(), code);
                    assert_eq!(
                        c.approx_distance(&q, i as u32).unwrap(),
                        quant::approx_distance(space, &qcode, &code)
                    );
                }
            }
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
                code_of(&c, i as u32).unwrap(),
                quant::encode(Space::Cosine, r)
            );
        }
        assert!(code_of(&c, 300).is_err());
        let q = QueryCode::new(std::borrow::Cow::Owned(quant::encode(
            Space::Cosine,
            &rows[0],
        )));
        assert!(c.approx_distance(&q, 300).is_err());
        c.verify_all().unwrap();

        // A flipped byte in the data is reported with the file, never read as a code.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[100] ^= 0x40;
        std::fs::write(&p, &bytes).unwrap();
        match SegmentCodes::open(&p) {
            Ok(c) => assert!(matches!(
                c.approx_distance(&q, 0),
                Err(EngineError::Corrupt { .. })
            )),
            Err(e) => assert!(matches!(e, EngineError::Corrupt { .. })),
        }
    }
}
