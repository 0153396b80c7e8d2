//! `graph.bin`: an HNSW graph in a flat, zero-copy layout, searched straight from a memory map.
//!
//! # Byte layout (format version 1, all integers little-endian)
//!
//! ```text
//! 0       header, 256 bytes
//!           0  magic  b"VDGRAPH\0"          8  version u32 = 1     12 header_len u32 = 256
//!          16  n u32 (points, ids 0..n)     20  entry point u32    24 m u32 (links, layers >= 1)
//!          28  m0 u32 (links, layer 0)      32  max_level u32 (0..=15)
//!          36  block_nodes u32 (layer-0 rows per CRC block)        40 n_blocks u32
//!          44  reserved u32 = 0             48  count[l] u32 for l = 1..=15 (points whose
//!                                               level is >= l; 0 above max_level)
//!         108  zero padding to 256
//! 256     layer 0: n rows × m0 u32 neighbour ids, row i = point i; a row's links come first,
//!         nearest first, the rest is padded with u32::MAX
//! then, for l = 1..=max_level, each part starting on a 64-byte boundary:
//!         ids_l:   count[l] u32, strictly increasing point ids present on layer l
//!         links_l: count[l] rows × m u32, row j = links of ids_l[j], padded with u32::MAX
//! then    CRC table (64-byte aligned): n_blocks u32 (crc32c of each layer-0 block of
//!         block_nodes rows; the last may be shorter), then max_level u32 (crc32c of ids_l
//!         followed by links_l)
//! end-32  footer: magic b"VDGRFTR\0" | version u32 | reserved u32 | file_len u64 |
//!         meta_crc u32 = crc32c(header ‖ CRC table) | footer_crc u32 = crc32c(footer[0..28])
//! ```
//!
//! Why this layout: layer 0 is where a search spends nearly all its time, and a fixed stride
//! finds a row with one multiply, no offset table and no dependent load; HNSW builders fill most
//! layer-0 lists to `2·M`, so the padding costs little. The upper layers hold ~1/M of the
//! points, so they are stored compactly (sorted ids + rows) and located by binary search,
//! which the greedy descent does only a handful of times per query.
//!
//! Opening reads only the header, footer and CRC table (n/1024 words): O(1) in practice, no
//! heap proportional to the graph. Layer-0 blocks and upper layers carry their own CRCs,
//! checked on first touch by a search (a bad block is refused, never served) or all at once by
//! [`FlatGraph::verify`]. Every neighbour id is bounds-checked where it is used, so even a file
//! whose checksums were forged cannot cause an out-of-bounds read.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use crate::index::error::{IndexError, Result};

/// First bytes of every `graph.bin`.
pub const GRAPH_MAGIC: [u8; 8] = *b"VDGRAPH\0";
/// First bytes of the footer.
pub const FOOTER_MAGIC: [u8; 8] = *b"VDGRFTR\0";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Padding value of an unused neighbour slot.
pub const NO_NEIGHBOUR: u32 = u32::MAX;
/// Highest level a graph may have (hnsw_rs has 16 layers, 0..=15).
pub const MAX_LEVEL: usize = 15;
/// Bytes of layer-0 rows per CRC block by default: one page. A walk reads rows at random, and
/// checking a block on first touch reads all of it, so on a cold page cache bigger blocks
/// multiply the first queries' I/O (1,024 rows of m0 = 32 were 128 KiB per row read).
pub const DEFAULT_BLOCK_BYTES: u32 = 4096;
/// Largest `m`/`m0` accepted in a file (hnsw_rs caps `M` at 256, so `m0` at 512).
pub const MAX_LINKS: u32 = 1024;

const HEADER_LEN: usize = 256;
const FOOTER_LEN: usize = 32;
const ALIGN: u64 = 64;

/// One upper layer (level ≥ 1) of a graph being encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpperLayer {
    /// Points present on this layer, strictly increasing.
    pub ids: Vec<u32>,
    /// `ids.len() × m` neighbour ids, row j for `ids[j]`, padded with [`NO_NEIGHBOUR`].
    pub links: Vec<u32>,
}

/// A graph in memory, ready to encode: what the builder exports and tests can hand-craft.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphParts {
    /// Link slots per point on layers ≥ 1.
    pub m: u32,
    /// Link slots per point on layer 0.
    pub m0: u32,
    /// Where every search starts: a point of the top layer.
    pub entry: u32,
    /// `n × m0` neighbour ids, row i for point i, padded with [`NO_NEIGHBOUR`].
    pub layer0: Vec<u32>,
    /// Layers 1..=max_level, in order.
    pub upper: Vec<UpperLayer>,
}

impl GraphParts {
    /// Number of points.
    pub fn n(&self) -> usize {
        if self.m0 == 0 {
            0
        } else {
            self.layer0.len() / self.m0 as usize
        }
    }

    /// Checks the shape and every id, so no invalid file is ever written.
    pub fn validate(&self) -> Result<()> {
        let bad = |s: String| Err(IndexError::InvalidParams(s));
        if !(1..=MAX_LINKS).contains(&self.m) || !(1..=MAX_LINKS).contains(&self.m0) {
            return bad(format!("m={} m0={} out of range", self.m, self.m0));
        }
        let n = self.n();
        if n == 0 {
            return Err(IndexError::Empty);
        }
        if n > u32::MAX as usize - 1 || !self.layer0.len().is_multiple_of(self.m0 as usize) {
            return bad(format!(
                "layer 0 has {} slots for m0={}",
                self.layer0.len(),
                self.m0
            ));
        }
        if self.entry as usize >= n {
            return bad(format!("entry point {} not below n={n}", self.entry));
        }
        if self.upper.len() > MAX_LEVEL {
            return bad(format!(
                "{} upper layers, at most {MAX_LEVEL}",
                self.upper.len()
            ));
        }
        if let Some(&id) = self
            .layer0
            .iter()
            .find(|&&id| id != NO_NEIGHBOUR && id as usize >= n)
        {
            return bad(format!("layer 0 links to {id}, not below n={n}"));
        }
        let mut prev_count = n;
        for (i, layer) in self.upper.iter().enumerate() {
            let l = i + 1;
            if layer.ids.is_empty() || layer.ids.len() > prev_count {
                return bad(format!("layer {l} has {} points", layer.ids.len()));
            }
            prev_count = layer.ids.len();
            if layer.links.len() != layer.ids.len() * self.m as usize {
                return bad(format!("layer {l} has {} link slots", layer.links.len()));
            }
            if layer.ids.windows(2).any(|w| w[0] >= w[1])
                || layer.ids.iter().any(|&id| id as usize >= n)
            {
                return bad(format!("layer {l} ids not strictly increasing below n"));
            }
            if layer
                .links
                .iter()
                .any(|&id| id != NO_NEIGHBOUR && layer.ids.binary_search(&id).is_err())
            {
                return bad(format!("layer {l} links to a point not on layer {l}"));
            }
        }
        if let Some(top) = self.upper.last() {
            if top.ids.binary_search(&self.entry).is_err() {
                return bad("entry point is not on the top layer".into());
            }
        }
        Ok(())
    }

    /// Serialises into the `graph.bin` byte layout (see the module doc).
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.encode_with_blocks((DEFAULT_BLOCK_BYTES / (self.m0.max(1) * 4)).max(1))
    }

    /// As [`encode`](Self::encode), with `block_nodes` layer-0 rows per CRC block.
    pub fn encode_with_blocks(&self, block_nodes: u32) -> Result<Vec<u8>> {
        self.validate()?;
        if block_nodes == 0 {
            return Err(IndexError::InvalidParams("block_nodes must be >= 1".into()));
        }
        let mut counts = [0u32; MAX_LEVEL];
        for (i, layer) in self.upper.iter().enumerate() {
            counts[i] = layer.ids.len() as u32;
        }
        let header = Header {
            n: self.n() as u32,
            entry: self.entry,
            m: self.m,
            m0: self.m0,
            max_level: self.upper.len() as u32,
            block_nodes,
            n_blocks: (self.n() as u32).div_ceil(block_nodes),
            counts,
        };
        let layout = Layout::compute(&header)
            .ok_or_else(|| IndexError::InvalidParams("graph too large to lay out".into()))?;
        let len = usize::try_from(layout.file_len)
            .map_err(|_| IndexError::InvalidParams("graph too large for memory".into()))?;
        let mut out = vec![0u8; len];
        header.write(&mut out[..HEADER_LEN]);
        put_u32s(&mut out, layout.layer0, &self.layer0);
        for (i, layer) in self.upper.iter().enumerate() {
            put_u32s(&mut out, layout.upper[i].ids, &layer.ids);
            put_u32s(&mut out, layout.upper[i].links, &layer.links);
        }
        let mut crcs = Vec::with_capacity(layout.crc_entries());
        for b in 0..header.n_blocks {
            let r = layout.block_range(b);
            crcs.push(crc32c::crc32c(&out[r.start as usize..r.end as usize]));
        }
        for l in 1..=header.max_level as usize {
            let r = layout.upper_range(l);
            crcs.push(crc32c::crc32c(&out[r.start as usize..r.end as usize]));
        }
        put_u32s(&mut out, layout.crc_table, &crcs);
        let crc_bytes = layout.crc_table as usize..layout.crc_table as usize + crcs.len() * 4;
        let meta_crc = crc32c::crc32c_append(crc32c::crc32c(&out[..HEADER_LEN]), &out[crc_bytes]);
        let f = len - FOOTER_LEN;
        out[f..f + 8].copy_from_slice(&FOOTER_MAGIC);
        out[f + 8..f + 12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[f + 16..f + 24].copy_from_slice(&layout.file_len.to_le_bytes());
        out[f + 24..f + 28].copy_from_slice(&meta_crc.to_le_bytes());
        let footer_crc = crc32c::crc32c(&out[f..f + 28]);
        out[f + 28..f + 32].copy_from_slice(&footer_crc.to_le_bytes());
        Ok(out)
    }
}

fn put_u32s(out: &mut [u8], offset: u64, vals: &[u32]) {
    let start = offset as usize;
    for (chunk, v) in out[start..start + vals.len() * 4]
        .chunks_exact_mut(4)
        .zip(vals)
    {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    n: u32,
    entry: u32,
    m: u32,
    m0: u32,
    max_level: u32,
    block_nodes: u32,
    n_blocks: u32,
    counts: [u32; MAX_LEVEL],
}

impl Header {
    /// The fields of a header image (`h` holds at least [`HEADER_LEN`] bytes); not validated.
    fn read(h: &[u8]) -> Header {
        let mut counts = [0u32; MAX_LEVEL];
        for (i, c) in counts.iter_mut().enumerate() {
            *c = le32(h, 48 + 4 * i);
        }
        Header {
            n: le32(h, 16),
            entry: le32(h, 20),
            m: le32(h, 24),
            m0: le32(h, 28),
            max_level: le32(h, 32),
            block_nodes: le32(h, 36),
            n_blocks: le32(h, 40),
            counts,
        }
    }

    fn write(&self, h: &mut [u8]) {
        h[0..8].copy_from_slice(&GRAPH_MAGIC);
        let words = [
            FORMAT_VERSION,
            HEADER_LEN as u32,
            self.n,
            self.entry,
            self.m,
            self.m0,
            self.max_level,
            self.block_nodes,
            self.n_blocks,
            0,
        ];
        for (i, w) in words.iter().chain(self.counts.iter()).enumerate() {
            h[8 + 4 * i..12 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct UpperLayout {
    count: u64,
    ids: u64,
    links: u64,
}

/// Byte offsets of every section, computed from the header alone (writer and reader share it).
#[derive(Debug, Clone)]
struct Layout {
    n: u64,
    m: u64,
    m0: u64,
    block_nodes: u64,
    n_blocks: u64,
    max_level: usize,
    layer0: u64,
    upper: [UpperLayout; MAX_LEVEL],
    crc_table: u64,
    footer: u64,
    file_len: u64,
}

fn align_up(x: u64) -> Option<u64> {
    x.checked_add(ALIGN - 1).map(|v| v / ALIGN * ALIGN)
}

impl Layout {
    /// Offsets for `h`, or `None` if they overflow u64.
    fn compute(h: &Header) -> Option<Layout> {
        let (n, m, m0) = (h.n as u64, h.m as u64, h.m0 as u64);
        let layer0 = HEADER_LEN as u64;
        let mut at = layer0.checked_add(n.checked_mul(m0)?.checked_mul(4)?)?;
        let mut upper = [UpperLayout::default(); MAX_LEVEL];
        for (i, u) in upper.iter_mut().enumerate().take(h.max_level as usize) {
            let count = h.counts[i] as u64;
            let ids = align_up(at)?;
            let links = align_up(ids.checked_add(count * 4)?)?;
            at = links.checked_add(count.checked_mul(m)?.checked_mul(4)?)?;
            *u = UpperLayout { count, ids, links };
        }
        let crc_table = align_up(at)?;
        let footer =
            crc_table.checked_add((h.n_blocks as u64 + h.max_level as u64).checked_mul(4)?)?;
        Some(Layout {
            n,
            m,
            m0,
            block_nodes: h.block_nodes as u64,
            n_blocks: h.n_blocks as u64,
            max_level: h.max_level as usize,
            layer0,
            upper,
            crc_table,
            footer,
            file_len: footer.checked_add(FOOTER_LEN as u64)?,
        })
    }

    fn crc_entries(&self) -> usize {
        (self.n_blocks as usize) + self.max_level
    }

    /// Bytes of layer-0 block `b` (`b < n_blocks`).
    fn block_range(&self, b: u32) -> std::ops::Range<u64> {
        let first = b as u64 * self.block_nodes;
        let last = (first + self.block_nodes).min(self.n);
        let row = self.m0 * 4;
        self.layer0 + first * row..self.layer0 + last * row
    }

    /// Bytes of upper layer `l` (ids through links; `1 <= l <= max_level`).
    fn upper_range(&self, l: usize) -> std::ops::Range<u64> {
        let u = &self.upper[l - 1];
        u.ids..u.links + u.count * self.m * 4
    }
}

/// Per-block check state: not yet checked, checked good, checked bad.
const UNCHECKED: u8 = 0;
const GOOD: u8 = 1;
const BAD: u8 = 2;

/// An opened `graph.bin` over any byte container: a `Vec<u8>` in tests, a [`memmap2::Mmap`]
/// in production, a borrowed slice of a larger mapping. Cheap to open, `Sync` for parallel
/// searches; blocks are CRC-checked on first touch.
#[derive(Debug)]
pub struct FlatGraph<B: AsRef<[u8]> = memmap2::Mmap> {
    bytes: B,
    file: PathBuf,
    layout: Layout,
    entry: u32,
    /// One state per CRC'd part: layer-0 blocks first, then upper layers 1..=max_level.
    checked: Box<[AtomicU8]>,
}

impl FlatGraph<memmap2::Mmap> {
    /// Maps `path` read-only and opens it (O(1): header, footer and CRC table only).
    pub fn open_mmap(path: &Path) -> Result<FlatGraph<memmap2::Mmap>> {
        let io = |op, source| IndexError::Io {
            op,
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(|e| io("open", e))?;
        // SAFETY: published segment files are immutable (never rewritten in place, only
        // replaced by rename), so the mapped bytes do not change under us. Truncation by
        // another process would be a SIGBUS; the engine's folder lock rules that out.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io("mmap", e))?;
        #[cfg(unix)]
        {
            // Searches hop randomly; read-ahead would only evict useful pages. Advisory only.
            let _ = map.advise(memmap2::Advice::Random);
        }
        FlatGraph::from_bytes(path, map)
    }
}

impl<B: AsRef<[u8]>> FlatGraph<B> {
    /// Opens an in-memory image; `name` is the file named in errors.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: B) -> Result<FlatGraph<B>> {
        let file: PathBuf = name.into();
        let data = bytes.as_ref();
        let len = data.len() as u64;
        let corrupt = |offset: u64, reason: String| IndexError::Corrupt {
            file: file.clone(),
            offset,
            reason,
        };
        if data.len() < HEADER_LEN + FOOTER_LEN {
            return Err(corrupt(
                len,
                format!("file is {len} bytes, shorter than header and footer (truncated?)"),
            ));
        }
        let f = data.len() - FOOTER_LEN;
        let footer = &data[f..];
        if footer[0..8] != FOOTER_MAGIC {
            return Err(corrupt(
                f as u64,
                "no footer at the end of the file (truncated or not a graph file)".into(),
            ));
        }
        if crc32c::crc32c(&footer[..28]) != le32(footer, 28) {
            return Err(corrupt(f as u64, "footer checksum mismatch".into()));
        }
        let version = le32(footer, 8);
        if version != FORMAT_VERSION {
            return Err(IndexError::Version {
                file,
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let claimed = u64::from_le_bytes(footer[16..24].try_into().unwrap_or([0; 8]));
        if claimed != len {
            return Err(corrupt(
                f as u64,
                format!("footer records {claimed} bytes but the file has {len}"),
            ));
        }
        let h = &data[..HEADER_LEN];
        if h[0..8] != GRAPH_MAGIC {
            return Err(corrupt(0, "bad magic (not a vectord graph file)".into()));
        }
        if le32(h, 8) != FORMAT_VERSION {
            return Err(IndexError::Version {
                file,
                found: le32(h, 8),
                supported: FORMAT_VERSION,
            });
        }
        let header = Header::read(h);
        // The CRC table location depends on the header, so sanity-check what the layout needs
        // before trusting it, then check the header and table against the footer's CRC.
        let sane = le32(h, 12) == HEADER_LEN as u32
            && header.n >= 1
            && header.n < u32::MAX
            && (1..=MAX_LINKS).contains(&header.m)
            && (1..=MAX_LINKS).contains(&header.m0)
            && header.max_level as usize <= MAX_LEVEL
            && header.block_nodes >= 1
            && header.n_blocks == header.n.div_ceil(header.block_nodes.max(1));
        if !sane {
            return Err(corrupt(12, "impossible header values".into()));
        }
        let layout = Layout::compute(&header)
            .filter(|l| l.file_len == len)
            .ok_or_else(|| {
                corrupt(
                    16,
                    format!("header describes a different file size than {len} bytes"),
                )
            })?;
        let table = &data[layout.crc_table as usize..layout.footer as usize];
        let meta_crc = crc32c::crc32c_append(crc32c::crc32c(h), table);
        if meta_crc != le32(footer, 24) {
            return Err(corrupt(0, "header or CRC table checksum mismatch".into()));
        }
        // With the header authenticated, check the values the search relies on.
        let mut prev = header.n;
        for (i, &c) in header.counts.iter().enumerate() {
            let used = i < header.max_level as usize;
            if (used && (c == 0 || c > prev)) || (!used && c != 0) {
                return Err(corrupt(
                    48 + 4 * i as u64,
                    format!("layer {} point count {c} is impossible", i + 1),
                ));
            }
            prev = c;
        }
        if header.entry >= header.n {
            return Err(corrupt(20, format!("entry point {} >= n", header.entry)));
        }
        let checked = (0..layout.crc_entries())
            .map(|_| AtomicU8::new(UNCHECKED))
            .collect();
        Ok(FlatGraph {
            bytes,
            file,
            layout,
            entry: header.entry,
            checked,
        })
    }

    /// Number of points (valid ids are `0..n`).
    #[inline]
    pub fn n(&self) -> usize {
        self.layout.n as usize
    }

    /// Link slots per point on layers ≥ 1.
    pub fn m(&self) -> usize {
        self.layout.m as usize
    }

    /// Link slots per point on layer 0.
    pub fn m0(&self) -> usize {
        self.layout.m0 as usize
    }

    /// Highest layer.
    pub fn max_level(&self) -> usize {
        self.layout.max_level
    }

    /// The search entry point (a point of the top layer).
    pub fn entry(&self) -> u32 {
        self.entry
    }

    /// The file named in errors.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Size of the image in bytes.
    pub fn byte_len(&self) -> usize {
        self.bytes.as_ref().len()
    }

    /// Points on upper layer `l` (`1..=max_level`), 0 otherwise.
    pub fn layer_len(&self, l: usize) -> usize {
        if (1..=self.layout.max_level).contains(&l) {
            self.layout.upper[l - 1].count as usize
        } else {
            0
        }
    }

    fn corrupt(&self, offset: u64, reason: String) -> IndexError {
        IndexError::Corrupt {
            file: self.file.clone(),
            offset,
            reason,
        }
    }

    fn slice(&self, r: std::ops::Range<u64>) -> Result<&[u8]> {
        self.bytes
            .as_ref()
            .get(r.start as usize..r.end as usize)
            .ok_or_else(|| self.corrupt(r.start, "section out of bounds".into()))
    }

    /// Checks part `idx` (layer-0 blocks, then upper layers) against its CRC once.
    #[inline]
    fn ensure_checked(&self, idx: usize) -> Result<()> {
        let Some(state) = self.checked.get(idx) else {
            return Err(self.corrupt(0, format!("no CRC entry {idx}")));
        };
        match state.load(Ordering::Acquire) {
            GOOD => Ok(()),
            BAD => Err(self.part_error(idx)),
            _ => self.check_part(idx, state),
        }
    }

    #[cold]
    fn check_part(&self, idx: usize, state: &AtomicU8) -> Result<()> {
        let range = self.part_range(idx);
        let want = {
            let at = self.layout.crc_table + idx as u64 * 4;
            let b = self.slice(at..at + 4)?;
            le32(b, 0)
        };
        let ok = crc32c::crc32c(self.slice(range)?) == want;
        state.store(if ok { GOOD } else { BAD }, Ordering::Release);
        if ok {
            Ok(())
        } else {
            Err(self.part_error(idx))
        }
    }

    fn part_range(&self, idx: usize) -> std::ops::Range<u64> {
        let nb = self.layout.n_blocks as usize;
        if idx < nb {
            self.layout.block_range(idx as u32)
        } else {
            self.layout.upper_range(idx - nb + 1)
        }
    }

    fn part_error(&self, idx: usize) -> IndexError {
        let r = self.part_range(idx);
        let nb = self.layout.n_blocks as usize;
        let what = if idx < nb {
            format!("layer-0 block {idx}")
        } else {
            format!("layer {}", idx - nb + 1)
        };
        self.corrupt(
            r.start,
            format!("checksum mismatch in {what} (bytes {}..{})", r.start, r.end),
        )
    }

    /// Starts reading `node`'s layer-0 row in if its block has not been checked yet (never
    /// read through this map): a walk hints the rows it may expand next so that, on a cold
    /// page cache, their reads overlap. Costs one atomic load once the block is checked.
    #[inline]
    pub(crate) fn will_need_row(&self, node: u32) {
        let l = &self.layout;
        if node as u64 >= l.n {
            return;
        }
        let checked = self
            .checked
            .get((node as u64 / l.block_nodes) as usize)
            .is_some_and(|s| s.load(Ordering::Relaxed) == GOOD);
        if !checked {
            let row = l.m0 * 4;
            let start = l.layer0 + node as u64 * row;
            if let Ok(bytes) = self.slice(start..start + row) {
                crate::index::vectors::advise_will_need(bytes);
            }
        }
    }

    /// Pulls `node`'s layer-0 row into the CPU cache without checking it: a walk calls this for
    /// each point it queues, so the row has arrived by the time the point is expanded (the
    /// expansion's first read was otherwise a dependent miss, ~4% of a query's time).
    #[inline]
    pub(crate) fn prefetch_row(&self, node: u32) {
        let l = &self.layout;
        if (node as u64) < l.n {
            let row = l.m0 * 4;
            let start = l.layer0 + node as u64 * row;
            if let Ok(bytes) = self.slice(start..start + row) {
                crate::index::vectors::prefetch_bytes(bytes, 4);
            }
        }
    }

    /// Layer-0 link row of `node` (raw little-endian u32 slots), CRC-checked on first touch.
    #[inline]
    pub(crate) fn layer0_row(&self, node: u32) -> Result<&[u8]> {
        let l = &self.layout;
        if node as u64 >= l.n {
            return Err(self.corrupt(l.layer0, format!("point {node} out of range")));
        }
        self.ensure_checked((node as u64 / l.block_nodes) as usize)?;
        let row = l.m0 * 4;
        let start = l.layer0 + node as u64 * row;
        self.slice(start..start + row)
    }

    /// Link row of `node` on upper layer `level`, or `None` if `node` is not on that layer.
    pub(crate) fn upper_row(&self, level: usize, node: u32) -> Result<Option<&[u8]>> {
        if !(1..=self.layout.max_level).contains(&level) {
            return Ok(None);
        }
        self.ensure_checked(self.layout.n_blocks as usize + level - 1)?;
        let u = self.layout.upper[level - 1];
        let ids = self.slice(u.ids..u.ids + u.count * 4)?;
        // Binary search over the sorted little-endian ids.
        let (mut lo, mut hi) = (0usize, u.count as usize);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let v = le32(ids, mid * 4);
            if v < node {
                lo = mid + 1;
            } else if v > node {
                hi = mid;
            } else {
                let row = self.layout.m * 4;
                let start = u.links + mid as u64 * row;
                return self.slice(start..start + row).map(Some);
            }
        }
        Ok(None)
    }

    /// The points of upper layer `level` (sorted), CRC-checked; empty outside `1..=max_level`.
    pub(crate) fn upper_ids(&self, level: usize) -> Result<Vec<u32>> {
        if !(1..=self.layout.max_level).contains(&level) {
            return Ok(Vec::new());
        }
        self.ensure_checked(self.layout.n_blocks as usize + level - 1)?;
        let u = self.layout.upper[level - 1];
        let ids = self.slice(u.ids..u.ids + u.count * 4)?;
        Ok((0..u.count as usize).map(|i| le32(ids, i * 4)).collect())
    }

    /// Valid links of layer-0 row `node` (stops at padding, skips out-of-range ids).
    pub fn neighbours(&self, node: u32) -> Result<Vec<u32>> {
        Ok(links(self.layer0_row(node)?, self.layout.n as u32).collect())
    }

    /// Checks every block CRC and every structural invariant (ids in range, upper layers sorted,
    /// upper links on their layer, entry point on the top layer). O(file size); for a
    /// background scrub or tests. Returns the first problem found.
    pub fn verify(&self) -> Result<()> {
        for idx in 0..self.checked.len() {
            self.ensure_checked(idx)?;
        }
        let l = &self.layout;
        // Alignment padding between sections is covered by no CRC; it must be zero.
        let mut sections = vec![(l.layer0, l.layer0 + l.n * l.m0 * 4)];
        for u in &l.upper[..l.max_level] {
            sections.push((u.ids, u.ids + u.count * 4));
            sections.push((u.links, u.links + u.count * l.m * 4));
        }
        sections.push((l.crc_table, l.footer));
        for w in sections.windows(2) {
            let gap = self.slice(w[0].1..w[1].0)?;
            if let Some(i) = gap.iter().position(|&b| b != 0) {
                return Err(self.corrupt(w[0].1 + i as u64, "non-zero padding".into()));
            }
        }
        let n = l.n as u32;
        let l0 = self.slice(l.layer0..l.layer0 + l.n * l.m0 * 4)?;
        for (i, chunk) in l0.chunks_exact(4).enumerate() {
            let id = le32(chunk, 0);
            if id != NO_NEIGHBOUR && id >= n {
                return Err(self.corrupt(
                    l.layer0 + i as u64 * 4,
                    format!("layer-0 link {id} >= n={n}"),
                ));
            }
        }
        for level in 1..=l.max_level {
            let u = l.upper[level - 1];
            let ids_b = self.slice(u.ids..u.ids + u.count * 4)?;
            let ids: Vec<u32> = ids_b.chunks_exact(4).map(|c| le32(c, 0)).collect();
            if let Some(i) = ids.windows(2).position(|w| w[0] >= w[1]) {
                return Err(self.corrupt(
                    u.ids + i as u64 * 4,
                    format!("layer {level} ids not strictly increasing"),
                ));
            }
            if ids.last().is_some_and(|&id| id >= n) {
                return Err(self.corrupt(u.ids, format!("layer {level} id >= n")));
            }
            let links_b = self.slice(u.links..u.links + u.count * l.m * 4)?;
            for (i, chunk) in links_b.chunks_exact(4).enumerate() {
                let id = le32(chunk, 0);
                if id != NO_NEIGHBOUR && ids.binary_search(&id).is_err() {
                    return Err(self.corrupt(
                        u.links + i as u64 * 4,
                        format!("layer {level} link {id} is not on layer {level}"),
                    ));
                }
            }
            if level == l.max_level && ids.binary_search(&self.entry).is_err() {
                return Err(self.corrupt(20, "entry point is not on the top layer".into()));
            }
        }
        Ok(())
    }
}

/// Decodes the valid links of a raw row: stops at the first padding slot, skips ids `>= n`.
#[inline]
pub(crate) fn links(row: &[u8], n: u32) -> impl Iterator<Item = u32> + '_ {
    row.chunks_exact(4)
        .map(|c| le32(c, 0))
        .take_while(|&id| id != NO_NEIGHBOUR)
        .filter(move |&id| id < n)
}

/// Little-endian u32 at `off`; 0 if out of range (callers have checked lengths already).
#[inline(always)]
fn le32(b: &[u8], off: usize) -> u32 {
    match b.get(off..off + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

/// Recomputes every checksum of a `graph.bin` image (parts, header + table, footer) from its own
/// header wherever the ranges it describes lie inside the image. For fuzzing only: it lets a
/// damaged header or damaged links get past the CRCs to the checks behind them.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn reseal_for_fuzzing(bytes: &mut [u8]) {
    let len = bytes.len();
    if len < HEADER_LEN + FOOTER_LEN {
        return;
    }
    let header = Header::read(&bytes[..HEADER_LEN]);
    let layout = (header.max_level as usize <= MAX_LEVEL)
        .then(|| Layout::compute(&header))
        .flatten()
        .filter(|l| l.footer <= (len - FOOTER_LEN) as u64);
    let f = len - FOOTER_LEN;
    if let Some(layout) = layout {
        let nb = layout.n_blocks as usize;
        for idx in 0..layout.crc_entries() {
            let r = if idx < nb {
                layout.block_range(idx as u32)
            } else {
                layout.upper_range(idx - nb + 1)
            };
            let Some(part) = bytes.get(r.start as usize..r.end as usize) else {
                continue;
            };
            let crc = crc32c::crc32c(part);
            let at = layout.crc_table as usize + idx * 4;
            bytes[at..at + 4].copy_from_slice(&crc.to_le_bytes());
        }
        let table = layout.crc_table as usize..layout.footer as usize;
        let meta_crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..HEADER_LEN]), &bytes[table]);
        bytes[f + 24..f + 28].copy_from_slice(&meta_crc.to_le_bytes());
    }
    let footer_crc = crc32c::crc32c(&bytes[f..f + 28]);
    bytes[f + 28..f + 32].copy_from_slice(&footer_crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5-point graph: layer 0 a ring, layer 1 = {1, 3}, entry 3.
    fn tiny() -> GraphParts {
        let m0 = 4;
        let n = 5u32;
        let mut layer0 = vec![NO_NEIGHBOUR; (n * m0) as usize];
        for i in 0..n {
            layer0[(i * m0) as usize] = (i + 1) % n;
            layer0[(i * m0) as usize + 1] = (i + n - 1) % n;
        }
        GraphParts {
            m: 2,
            m0,
            entry: 3,
            layer0,
            upper: vec![UpperLayer {
                ids: vec![1, 3],
                links: vec![3, NO_NEIGHBOUR, 1, NO_NEIGHBOUR],
            }],
        }
    }

    #[test]
    fn round_trip() {
        let parts = tiny();
        let bytes = parts.encode_with_blocks(2).unwrap();
        let g = FlatGraph::from_bytes("mem", bytes).unwrap();
        assert_eq!(
            (g.n(), g.m(), g.m0(), g.max_level(), g.entry()),
            (5, 2, 4, 1, 3)
        );
        g.verify().unwrap();
        assert_eq!(g.neighbours(0).unwrap(), vec![1, 4]);
        assert_eq!(g.neighbours(4).unwrap(), vec![0, 3]);
        let r = g.upper_row(1, 3).unwrap().unwrap();
        assert_eq!(links(r, 5).collect::<Vec<_>>(), vec![1]);
        assert!(g.upper_row(1, 2).unwrap().is_none());
        assert!(g.upper_row(2, 3).unwrap().is_none());
        assert!(g.neighbours(5).is_err());
    }

    #[test]
    fn encode_refuses_bad_parts() {
        let mut p = tiny();
        p.entry = 2; // not on the top layer
        assert!(p.encode().is_err());
        let mut p = tiny();
        p.layer0[0] = 9;
        assert!(p.encode().is_err());
        let mut p = tiny();
        p.upper[0].links[0] = 2; // not on layer 1
        assert!(p.encode().is_err());
        let p = GraphParts {
            m: 2,
            m0: 4,
            ..Default::default()
        };
        assert!(matches!(p.encode(), Err(IndexError::Empty)));
    }

    #[test]
    fn every_flip_and_truncation_is_an_error_or_caught_by_verify() {
        let bytes = tiny().encode_with_blocks(2).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            // Either opening fails, or the damaged byte is in a block that verify refuses.
            if let Ok(g) = FlatGraph::from_bytes("mem", b) {
                assert!(g.verify().is_err(), "flip at {i} went unnoticed");
            }
        }
        for len in 0..bytes.len() {
            assert!(FlatGraph::from_bytes("mem", &bytes[..len]).is_err());
        }
    }

    #[test]
    fn atomic_write_then_mmap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("graph.bin");
        let bytes = tiny().encode().unwrap();
        crate::fsutil::atomic_replace(&path, &bytes).unwrap();
        let g = FlatGraph::open_mmap(&path).unwrap();
        g.verify().unwrap();
        assert_eq!(g.byte_len(), bytes.len());
        assert!(!dir.path().join("graph.bin.tmp").exists());
    }
}
