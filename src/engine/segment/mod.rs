//! Immutable, memory-mapped segments: files written once at flush or compaction, then only read.
//!
//! A segment folder `segments/NNNNNNNN/` holds `vectors.bin`, `records.bin`, `payload.bin`
//! (metadata postings) and, with a graph, `graph.bin` and `codes.bin` (written under a
//! temporary folder name, fsynced, then renamed into place) and zero or more tombstone files
//! `tombstones-<seq>.bin`, one per flush that changed them; the MANIFEST names the live one.

pub(crate) mod blocked;
pub(crate) mod codes;
pub(crate) mod payload;
pub(crate) mod records;
pub(crate) mod vectors;

use std::fs;
use std::path::{Path, PathBuf};

use std::io::Write;

use parking_lot::Mutex;

use self::blocked::{BlockedFile, BlockedWriter};
pub(crate) use self::codes::QueryCode;
use self::codes::{CodesWriter, SegmentCodes};
use self::payload::{PayloadIndex, SegmentPayload};
use self::records::{Fields, RowIn, SegmentRecords};
use self::vectors::SegmentVectors;
use super::bitset::Bitset;
use super::memtable::Memtable;
use super::EngineError;
use crate::fsutil::sync_dir;
use crate::index::quant;
use crate::index::vectors::{prefetch_bytes, prefetch_slice};
use crate::index::{
    search, search_rescored, BuildParams, FlatGraph, GraphBuilder, PreparedQuery, SearchOutput,
    SearchParams, VectorStore,
};
use crate::types::Space;

const KIND_TOMBSTONES: u32 = 3;

/// A mapped segment.
#[derive(Debug)]
pub(crate) struct Segment {
    id: u64,
    dir: PathBuf,
    vectors: SegmentVectors,
    records: SegmentRecords,
    /// The HNSW graph over the rows (absent only for a memtable that had none).
    graph: Option<FlatGraph>,
    /// int8 codes the graph is traversed over (written with the graph).
    codes: Option<SegmentCodes>,
    /// Metadata postings for the filter planner (absent in segments written before it: those
    /// are filtered per row).
    payload: Option<SegmentPayload>,
}

/// The folder name of segment `id`.
pub(crate) fn dir_name(id: u64) -> String {
    format!("{id:08}")
}

impl Segment {
    /// Writes the memtable's rows (all of them, in row order, so row numbers and tombstones carry
    /// over) and its graph as segment `id` under `segments_dir`, durably, and returns the opened
    /// segment. The memtable's graph must hold every row (the flush finishes indexing first).
    pub(crate) fn write_from_memtable(
        segments_dir: &Path,
        id: u64,
        mem: &Memtable,
    ) -> Result<Segment, EngineError> {
        let n = mem.len() as u32;
        let rows: Vec<RowIn> = (0..n)
            .map(|r| {
                let row = mem.row(r);
                RowIn {
                    id: &row.id,
                    first_seq: row.first_seq,
                    fields: &row.fields,
                }
            })
            .collect();
        let graph = mem.graph().map(|g| &g.builder);
        Segment::write(
            segments_dir,
            id,
            mem.dim(),
            (0..n).map(|r| Ok(mem.vector(r))),
            &rows,
            graph,
        )
    }

    /// Writes segment `id` from the caller's rows (vectors in row order, records, and the graph
    /// over exactly these rows) under a temporary folder name, fsyncs, renames it into place,
    /// and returns it opened.
    pub(crate) fn write<'a>(
        segments_dir: &Path,
        id: u64,
        dim: usize,
        vectors: impl ExactSizeIterator<Item = Result<&'a [f32], EngineError>>,
        rows: &[RowIn<'_>],
        graph: Option<&GraphBuilder>,
    ) -> Result<Segment, EngineError> {
        crash_point!(
            "segment::write",
            Err(EngineError::Internal("failpoint segment::write".into()))
        );
        let final_dir = segments_dir.join(dir_name(id));
        let tmp = segments_dir.join(format!("{}.tmp", dir_name(id)));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)
                .map_err(|e| EngineError::io("remove stale segment folder", &tmp, e))?;
        }
        let write = || -> Result<(), EngineError> {
            fs::create_dir_all(&tmp)
                .map_err(|e| EngineError::io("create segment folder", &tmp, e))?;
            let mut codes = match graph {
                Some(g) => Some(CodesWriter::create(&tmp.join("codes.bin"), g.coder(), dim)?),
                None => None,
            };
            vectors::write(
                &tmp.join("vectors.bin"),
                dim,
                vectors,
                |v| match &mut codes {
                    Some(c) => c.push(v),
                    None => Ok(()),
                },
            )?;
            crash_point!(
                "segment::write::vectors",
                Err(EngineError::Internal(
                    "failpoint segment::write::vectors".into()
                ))
            );
            if let Some(c) = codes {
                c.finish()?;
                crash_point!(
                    "segment::write::codes",
                    Err(EngineError::Internal(
                        "failpoint segment::write::codes".into()
                    ))
                );
            }
            records::write(&tmp.join("records.bin"), rows)?;
            crash_point!(
                "segment::write::records",
                Err(EngineError::Internal(
                    "failpoint segment::write::records".into()
                ))
            );
            let mut index = PayloadIndex::default();
            for row in rows {
                index.push(row.fields.metadata.as_ref(), &Default::default());
            }
            payload::write(&tmp.join(payload::FILE_NAME), &index)?;
            if let Some(graph) = graph {
                let bytes = graph.export()?;
                let path = tmp.join("graph.bin");
                let mut f = fs::File::create(&path)
                    .map_err(|e| EngineError::io("create graph file", &path, e))?;
                f.write_all(&bytes)
                    .and_then(|_| f.sync_all())
                    .map_err(|e| EngineError::io("write graph file", &path, e))?;
                crash_point!(
                    "segment::write::graph",
                    Err(EngineError::Internal(
                        "failpoint segment::write::graph".into()
                    ))
                );
            }
            Ok(sync_dir(&tmp)?)
        };
        if let Err(e) = write() {
            // Best effort: a leftover is removed at the next open anyway.
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        crash_point!("segment::publish", {
            let _ = fs::remove_dir_all(&tmp);
            Err(EngineError::Internal("failpoint segment::publish".into()))
        });
        fs::rename(&tmp, &final_dir)
            .map_err(|e| EngineError::io("publish segment folder", &final_dir, e))?;
        crash_point!(
            "segment::published",
            Err(EngineError::Internal("failpoint segment::published".into()))
        );
        sync_dir(segments_dir)?;
        Segment::open(segments_dir, id)
    }

    /// Maps segment `id` (O(1): footers and section tables only).
    pub(crate) fn open(segments_dir: &Path, id: u64) -> Result<Segment, EngineError> {
        let dir = segments_dir.join(dir_name(id));
        let vectors = SegmentVectors::open(&dir.join("vectors.bin"))?;
        let records = SegmentRecords::open(&dir.join("records.bin"))?;
        let graph_path = dir.join("graph.bin");
        let graph = if graph_path.exists() {
            Some(FlatGraph::open_mmap(&graph_path)?)
        } else {
            None
        };
        if let Some(g) = &graph {
            if g.n() != records.rows() {
                return Err(EngineError::Corrupt {
                    file: graph_path,
                    offset: 0,
                    reason: format!(
                        "graph over {} points in a segment of {} rows",
                        g.n(),
                        records.rows()
                    ),
                });
            }
        }
        if vectors.rows() != records.rows() {
            return Err(EngineError::Corrupt {
                file: dir.join("records.bin"),
                offset: 0,
                reason: format!("{} records but {} vectors", records.rows(), vectors.rows()),
            });
        }
        // Codes come with the graph; a segment from before them is traversed in f32.
        let codes_path = dir.join("codes.bin");
        let codes = if graph.is_some() && codes_path.exists() {
            let c = SegmentCodes::open(&codes_path)?;
            if c.rows() != vectors.rows() || c.dim() != vectors.dim() {
                return Err(EngineError::Corrupt {
                    file: codes_path,
                    offset: 0,
                    reason: format!(
                        "{} codes of {} components for {} rows of {}",
                        c.rows(),
                        c.dim(),
                        vectors.rows(),
                        vectors.dim()
                    ),
                });
            }
            Some(c)
        } else {
            None
        };
        let payload_path = dir.join(payload::FILE_NAME);
        let payload = if payload_path.exists() {
            let p = SegmentPayload::open(&payload_path)?;
            if p.rows() != records.rows() {
                return Err(EngineError::Corrupt {
                    file: payload_path,
                    offset: 0,
                    reason: format!(
                        "payload index over {} rows in a segment of {}",
                        p.rows(),
                        records.rows()
                    ),
                });
            }
            Some(p)
        } else {
            None
        };
        Ok(Segment {
            id,
            dir,
            vectors,
            records,
            graph,
            codes,
            payload,
        })
    }

    /// Graph search from the map; `accept` excludes rows inside the search (tombstones,
    /// filters). With `quantized` (and codes present) the graph is walked over int8 codes and
    /// the `ef` best accepted candidates are rescored from the f32 vectors; otherwise it is
    /// walked in f32. Distances returned are always exact. `None` when the segment has no graph.
    pub(crate) fn search(
        &self,
        query: &PreparedQuery,
        params: &SearchParams,
        quantized: bool,
        accept: impl Fn(u32) -> bool,
    ) -> Result<Option<SearchOutput>, EngineError> {
        let Some(graph) = &self.graph else {
            return Ok(None);
        };
        let store = SegmentStore {
            seg: self,
            error: Mutex::new(None),
        };
        let out = match self
            .codes
            .as_ref()
            .filter(|c| quantized && c.space() == query.space())
        {
            Some(codes) => {
                let coded = SegmentCodeStore {
                    codes,
                    query: QueryCode::new(query.code_for(codes.coder())),
                    error: Mutex::new(None),
                };
                let out = search_rescored(graph, &coded, &store, query, params, accept)?;
                if let Some(e) = coded.error.into_inner() {
                    return Err(e);
                }
                out
            }
            None => search(graph, &store, query, params, accept)?,
        };
        match store.error.into_inner() {
            Some(e) => Err(e),
            None => Ok(Some(out)),
        }
    }

    /// A builder seeded with this segment's graph and codes (see
    /// [`GraphBuilder::from_graph`]), to extend it with more rows; `None` if the segment has no
    /// graph or codes for `space`, or was built with another `M`.
    pub(crate) fn extend_graph(
        &self,
        space: Space,
        params: BuildParams,
    ) -> Result<Option<GraphBuilder>, EngineError> {
        let (Some(graph), Some(codes)) = (&self.graph, &self.codes) else {
            return Ok(None);
        };
        if codes.space() != space
            || graph.m() != params.max_neighbors
            || graph.m0() != 2 * params.max_neighbors
        {
            return Ok(None);
        }
        let coder = codes.coder().clone();
        GraphBuilder::from_graph(coder, self.dim(), params, graph, |r, out| {
            codes.code_into(r, out)
        })
        .map(Some)
    }

    /// The centre this segment's codes are taken relative to, if any (a new memtable starts
    /// from it rather than from its first row).
    pub(crate) fn centre(&self) -> Option<&[f32]> {
        self.codes.as_ref().and_then(|c| c.coder().centre())
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The payload index, when the segment has one (decoded on first use).
    pub(crate) fn payload(&self) -> Result<Option<&PayloadIndex>, EngineError> {
        self.payload.as_ref().map(|p| p.index()).transpose()
    }

    /// How the codes are made, when the segment has codes in `space` (a scan over
    /// [`Self::approx_distance`] codes its query with it).
    pub(crate) fn coder(&self, space: crate::types::Space) -> Option<&quant::Coder> {
        self.codes
            .as_ref()
            .filter(|c| c.space() == space)
            .map(|c| c.coder())
    }

    /// Approximate (ordering-only) distance from `q` to row `r` over the codes, when the
    /// segment has codes in `space`; `q` was coded by [`Self::coder`].
    pub(crate) fn approx_distance(
        &self,
        space: crate::types::Space,
        q: &QueryCode<'_>,
        r: u32,
    ) -> Option<Result<f32, EngineError>> {
        self.codes
            .as_ref()
            .filter(|c| c.space() == space)
            .map(|c| c.approx_distance(q, r))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn rows(&self) -> usize {
        self.records.rows()
    }

    pub(crate) fn dim(&self) -> usize {
        self.vectors.dim()
    }

    pub(crate) fn vector(&self, r: u32) -> Result<&[f32], EngineError> {
        self.vectors.vector(r)
    }

    pub(crate) fn inv_norm(&self, r: u32) -> Result<f32, EngineError> {
        self.vectors.inv_norm(r)
    }

    pub(crate) fn id_of(&self, r: u32) -> Result<&str, EngineError> {
        self.records.id(r)
    }

    pub(crate) fn fields(&self, r: u32) -> Result<Fields, EngineError> {
        self.records.fields(r)
    }

    pub(crate) fn first_seq(&self, r: u32) -> Result<u64, EngineError> {
        self.records.first_seq(r)
    }

    pub(crate) fn find(&self, id: &str) -> Result<Option<u32>, EngineError> {
        self.records.find(id)
    }

    pub(crate) fn row_in_order(&self, i: usize) -> Result<u32, EngineError> {
        self.records.row_in_order(i)
    }

    /// Bytes mapped by this segment's files.
    pub(crate) fn mapped_bytes(&self) -> usize {
        self.vectors.mapped_bytes()
            + self.records.mapped_bytes()
            + self.codes.as_ref().map_or(0, |c| c.mapped_bytes())
            + self.graph.as_ref().map_or(0, |g| g.byte_len())
            + self.payload.as_ref().map_or(0, |p| p.mapped_bytes())
    }

    /// Verifies every block of every file (background scrub).
    pub(crate) fn verify_all(&self) -> Result<(), EngineError> {
        self.vectors.verify_all()?;
        self.records.verify_all()?;
        if let Some(g) = &self.graph {
            g.verify()?;
        }
        if let Some(c) = &self.codes {
            c.verify_all()?;
        }
        if let Some(p) = &self.payload {
            p.verify_all()?;
        }
        Ok(())
    }
}

/// The segment's vectors as the graph searcher sees them. Each access verifies its blocks; a
/// damaged block scores infinity and is reported after the search, so a search never returns a
/// result computed from bad bytes.
struct SegmentStore<'a> {
    seg: &'a Segment,
    error: Mutex<Option<EngineError>>,
}

impl VectorStore for SegmentStore<'_> {
    fn dim(&self) -> usize {
        self.seg.dim()
    }

    fn len(&self) -> usize {
        self.seg.rows()
    }

    fn distance(&self, q: &PreparedQuery, id: u32) -> f32 {
        match self
            .seg
            .vector(id)
            .and_then(|v| Ok((v, self.seg.inv_norm(id)?)))
        {
            Ok((v, inv)) => {
                crate::index::distance::distance(q.space(), q.vector(), v, q.inv_norm(), inv)
            }
            Err(e) => {
                self.error.lock().get_or_insert(e);
                f32::INFINITY
            }
        }
    }

    fn prefetch(&self, id: u32) {
        self.seg.vectors.will_need(id);
        if let Some(v) = self.seg.vectors.unverified_row(id) {
            prefetch_slice(v);
        }
    }
}

/// The segment's codes as the int8 traversal sees them; like [`SegmentStore`], a damaged block
/// scores infinity and fails the search afterwards.
struct SegmentCodeStore<'a> {
    codes: &'a SegmentCodes,
    /// The query coded the way these codes were (relative to their centre, if any).
    query: QueryCode<'a>,
    error: Mutex<Option<EngineError>>,
}

impl VectorStore for SegmentCodeStore<'_> {
    fn dim(&self) -> usize {
        self.codes.dim()
    }

    fn len(&self) -> usize {
        self.codes.rows()
    }

    #[inline]
    fn distance(&self, _q: &PreparedQuery, id: u32) -> f32 {
        match self.codes.approx_distance(&self.query, id) {
            Ok(d) => d,
            Err(e) => {
                self.error.lock().get_or_insert(e);
                f32::INFINITY
            }
        }
    }

    #[inline]
    fn prefetch(&self, id: u32) {
        self.codes.will_need(id);
        if let Some(c) = self.codes.unverified(id) {
            prefetch_bytes(c, 32);
        }
    }
}

/// Writes a tombstone bitset as `path`, durably.
pub(crate) fn write_tombstones(path: &Path, bits: &Bitset) -> Result<(), EngineError> {
    crash_point!(
        "segment::tombstones",
        Err(EngineError::Internal(
            "failpoint segment::tombstones".into()
        ))
    );
    let mut w = BlockedWriter::create(path)?;
    w.write(bytemuck::cast_slice(bits.words()))?;
    w.finish(KIND_TOMBSTONES, b"{}")?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads a tombstone file written by [`write_tombstones`], fully verified.
pub(crate) fn read_tombstones(path: &Path) -> Result<Bitset, EngineError> {
    let f = BlockedFile::open(path, KIND_TOMBSTONES)?;
    let bytes = f.bytes(0..f.data_len())?;
    if bytes.len() % 8 != 0 {
        return Err(EngineError::Corrupt {
            file: path.to_path_buf(),
            offset: 0,
            reason: "tombstone bitmap is not whole words".into(),
        });
    }
    let words = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    Ok(Bitset::from_words(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memtable_round_trips_through_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        let params = crate::index::BuildParams {
            max_neighbors: 8,
            ef_construction: 32,
            capacity_hint: 128,
        };
        let mut mem = Memtable::new(3, Some((crate::types::Space::L2, params)), None).unwrap();
        for i in 0..100u32 {
            let fields = Fields {
                document: Some(format!("d{i}")),
                ..Default::default()
            };
            mem.push(
                format!("id{i}"),
                1000 + i as u64,
                &[i as f32, 1.0, 2.0],
                fields,
            );
        }
        while let Some(job) = mem.index_job(30) {
            job.run().unwrap();
        }
        let seg = Segment::write_from_memtable(dir.path(), 7, &mem).unwrap();
        // The graph came along: search it from the map, with a tombstone-like predicate.
        let q = PreparedQuery::new(crate::types::Space::L2, &[42.2, 1.0, 2.0]).unwrap();
        let out = seg
            .search(&q, &SearchParams::new(3, 16), true, |r| r != 42)
            .unwrap()
            .unwrap();
        let rows: Vec<u32> = out.results.iter().map(|s| s.row).collect();
        assert_eq!(rows, vec![43, 41, 44]);
        assert!(out.complete);
        assert_eq!(seg.rows(), 100);
        assert_eq!(seg.vector(42).unwrap(), &[42.0, 1.0, 2.0]);
        assert_eq!(seg.find("id42").unwrap(), Some(42));
        assert_eq!(seg.fields(42).unwrap().document.as_deref(), Some("d42"));
        assert_eq!(seg.first_seq(42).unwrap(), 1042);
        let reopened = Segment::open(dir.path(), 7).unwrap();
        assert_eq!(reopened.id_of(99).unwrap(), "id99");
        assert!(!dir.path().join("00000007.tmp").exists());

        // l2 codes are centred on the memtable's first row, and the centre travels with them.
        assert_eq!(seg.centre(), Some(&[0.0, 1.0, 2.0][..]));
        assert_eq!(reopened.centre(), seg.centre());

        let mut bits = Bitset::default();
        bits.set(5);
        bits.set(99);
        let p = seg.dir().join("tombstones-1.bin");
        write_tombstones(&p, &bits).unwrap();
        assert_eq!(read_tombstones(&p).unwrap(), bits);
    }

    /// Segments written before codes were centred (l2 codes without a centre, version 1) still
    /// open, search over their codes, and seed a builder that extends them the same way.
    #[test]
    fn l2_codes_without_a_centre_still_open_and_search() {
        let dir = tempfile::tempdir().unwrap();
        let params = crate::index::BuildParams {
            max_neighbors: 8,
            ef_construction: 32,
            capacity_hint: 128,
        };
        let vectors: Vec<Vec<f32>> = (0..100).map(|i| vec![i as f32, 1.0, 2.0]).collect();
        let plain = GraphBuilder::new(Space::L2, 3, params).unwrap();
        let rows: Vec<(&[f32], u32)> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (v.as_slice(), i as u32))
            .collect();
        plain.insert_batch(&rows).unwrap();
        let fields = Fields::default();
        let ids: Vec<String> = (0..100).map(|i| format!("id{i}")).collect();
        let records: Vec<RowIn> = ids
            .iter()
            .map(|id| RowIn {
                id,
                first_seq: 1,
                fields: &fields,
            })
            .collect();
        let vs = vectors.iter().map(|v| Ok(v.as_slice()));
        Segment::write(dir.path(), 3, 3, vs, &records, Some(&plain)).unwrap();
        // As an old server wrote it: int8 codes, version 1.
        let codes_path = dir.path().join("00000003").join("codes.bin");
        codes::write_int8_file(&codes_path, &quant::Coder::plain(Space::L2), 3, &vectors).unwrap();
        let seg = Segment::open(dir.path(), 3).unwrap();
        assert_eq!(seg.centre(), None);
        let meta = BlockedFile::open(&seg.dir().join("codes.bin"), codes::KIND_CODES).unwrap();
        assert!(std::str::from_utf8(meta.meta())
            .unwrap()
            .contains("\"version\":1"));
        let q = PreparedQuery::new(Space::L2, &[42.2, 1.0, 2.0]).unwrap();
        let out = seg
            .search(&q, &SearchParams::new(3, 16), true, |_| true)
            .unwrap()
            .unwrap();
        let found: Vec<u32> = out.results.iter().map(|s| s.row).collect();
        assert_eq!(found, vec![42, 43, 41]);
        let ext = seg.extend_graph(Space::L2, params).unwrap().unwrap();
        assert_eq!(ext.coder().centre(), None);
        assert_eq!(ext.len(), 100);
    }
}
