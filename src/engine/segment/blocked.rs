//! The container every segment file uses: a data region checksummed in fixed-size blocks, a
//! small metadata blob (the section table), and a fixed footer.
//!
//! ```text
//! [data region: sections written by the caller, each 64-byte aligned]
//! [meta blob (JSON section table)] [block CRC table: u32 × n_blocks]
//! [footer, 48 bytes: magic u64 | version u32 | kind u32 | data_len u64 | meta_len u32 |
//!                    block_size u32 | n_blocks u32 | meta_table_crc u32 | footer_crc u32 | pad u32]
//! ```
//!
//! Opening reads only the footer, the meta blob and the CRC table (O(1) in the data size). Data
//! blocks are verified on first touch ([`BlockedFile::bytes`]) or by [`BlockedFile::verify_all`]
//! (background scrub), so a flipped byte is reported with its file and offset instead of being
//! served. Files are written once, fsynced, and never modified: a mapped file that changes under
//! a reader is undefined behaviour.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use memmap2::Mmap;

use crate::engine::EngineError;

const MAGIC: u64 = u64::from_le_bytes(*b"VDSEGBLK");
const VERSION: u32 = 1;
const FOOTER_LEN: usize = 48;
/// Bytes per checksummed block by default: small enough that verifying on first touch costs
/// little (~5 µs), large enough that the CRC table stays tiny (64 KiB per GiB).
pub(crate) const BLOCK_SIZE: usize = 64 * 1024;
/// Block size of files read at random, a few rows at a time (graph-walk codes, rescored
/// vectors): verifying a block on first touch reads all of it, so on a cold page cache a
/// 64 KiB block costs 16 pages of I/O for one 1.5 KiB code. One page per block keeps the first
/// queries after a restart at the I/O they need (the CRC table grows to 1 MiB per GiB).
pub(crate) const RANDOM_ACCESS_BLOCK_SIZE: usize = 4 * 1024;
/// Block sizes a reader accepts (powers of two in this range; the footer says which).
const BLOCK_SIZES: std::ops::RangeInclusive<usize> = 4 * 1024..=1024 * 1024;
/// Alignment of every section, so f32/u64 columns can be viewed in place.
pub(crate) const SECTION_ALIGN: usize = 64;

/// Writes a blocked file: sections, then [`BlockedWriter::finish`] with the section table.
pub(crate) struct BlockedWriter {
    out: BufWriter<File>,
    path: PathBuf,
    len: usize,
    block_size: usize,
    block: Vec<u8>,
    crcs: Vec<u32>,
}

impl BlockedWriter {
    /// Creates (truncating) `path`, checksummed in [`BLOCK_SIZE`] blocks.
    pub(crate) fn create(path: &Path) -> Result<BlockedWriter, EngineError> {
        Self::create_with_block_size(path, BLOCK_SIZE)
    }

    /// Creates (truncating) `path`, checksummed in blocks of `block_size` bytes (a power of
    /// two from 4 KiB to 1 MiB).
    pub(crate) fn create_with_block_size(
        path: &Path,
        block_size: usize,
    ) -> Result<BlockedWriter, EngineError> {
        if !block_size.is_power_of_two() || !BLOCK_SIZES.contains(&block_size) {
            return Err(EngineError::Internal(format!(
                "segment block size {block_size} is not a power of two in {BLOCK_SIZES:?}"
            )));
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| EngineError::io("create segment file", path, e))?;
        Ok(BlockedWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            len: 0,
            block_size,
            block: Vec::with_capacity(block_size),
            crcs: Vec::new(),
        })
    }

    /// Appends bytes to the data region.
    pub(crate) fn write(&mut self, mut bytes: &[u8]) -> Result<(), EngineError> {
        self.out
            .write_all(bytes)
            .map_err(|e| EngineError::io("write segment file", &self.path, e))?;
        self.len += bytes.len();
        while !bytes.is_empty() {
            let take = (self.block_size - self.block.len()).min(bytes.len());
            self.block.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.block.len() == self.block_size {
                self.crcs.push(crc32c::crc32c(&self.block));
                self.block.clear();
            }
        }
        Ok(())
    }

    /// Pads with zeros to the next section boundary and returns the new position.
    pub(crate) fn align(&mut self) -> Result<usize, EngineError> {
        let pad = (SECTION_ALIGN - self.len % SECTION_ALIGN) % SECTION_ALIGN;
        self.write(&[0u8; SECTION_ALIGN][..pad])?;
        Ok(self.len)
    }

    /// Writes the section table and footer, then fsyncs the file.
    pub(crate) fn finish(mut self, kind: u32, meta: &[u8]) -> Result<(), EngineError> {
        if !self.block.is_empty() {
            self.crcs.push(crc32c::crc32c(&self.block));
        }
        let mut tail = Vec::with_capacity(meta.len() + self.crcs.len() * 4 + FOOTER_LEN);
        tail.extend_from_slice(meta);
        for c in &self.crcs {
            tail.extend_from_slice(&c.to_le_bytes());
        }
        let meta_table_crc = crc32c::crc32c(&tail);
        let meta_len = u32::try_from(meta.len())
            .map_err(|_| EngineError::Internal("segment meta too large".into()))?;
        let n_blocks = u32::try_from(self.crcs.len())
            .map_err(|_| EngineError::Internal("segment too large".into()))?;
        let mut footer = Vec::with_capacity(FOOTER_LEN);
        footer.extend_from_slice(&MAGIC.to_le_bytes());
        footer.extend_from_slice(&VERSION.to_le_bytes());
        footer.extend_from_slice(&kind.to_le_bytes());
        footer.extend_from_slice(&(self.len as u64).to_le_bytes());
        footer.extend_from_slice(&meta_len.to_le_bytes());
        footer.extend_from_slice(&(self.block_size as u32).to_le_bytes());
        footer.extend_from_slice(&n_blocks.to_le_bytes());
        footer.extend_from_slice(&meta_table_crc.to_le_bytes());
        let footer_crc = crc32c::crc32c(&footer);
        footer.extend_from_slice(&footer_crc.to_le_bytes());
        footer.extend_from_slice(&0u32.to_le_bytes());
        tail.extend_from_slice(&footer);
        let path = self.path.clone();
        self.out
            .write_all(&tail)
            .map_err(|e| EngineError::io("write segment file", &path, e))?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| EngineError::io("write segment file", &path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| EngineError::io("fsync segment file", &path, e))
    }
}

/// A mapped, footer-checked blocked file whose data blocks are verified on first touch.
#[derive(Debug)]
pub(crate) struct BlockedFile {
    map: Mmap,
    path: PathBuf,
    data_len: usize,
    block_size: usize,
    crc_table: Range<usize>,
    meta: Range<usize>,
    verified: Box<[AtomicU64]>,
    all_verified: AtomicBool,
}

impl BlockedFile {
    /// Maps `path` and checks its footer, section table and CRC table. O(1) in the data size.
    pub(crate) fn open(path: &Path, kind: u32) -> Result<BlockedFile, EngineError> {
        let file = File::open(path).map_err(|e| EngineError::io("open segment file", path, e))?;
        // SAFETY: published segment files are never modified or truncated while mapped (they are
        // written once under a temporary name and replaced only by new files), so the mapping's
        // contents stay fixed for its lifetime.
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| EngineError::io("map segment file", path, e))?;
        let corrupt = |offset: usize, reason: &str| EngineError::Corrupt {
            file: path.to_path_buf(),
            offset: offset as u64,
            reason: reason.to_string(),
        };
        let len = map.len();
        if len < FOOTER_LEN {
            return Err(corrupt(0, "file shorter than its footer"));
        }
        let f = &map[len - FOOTER_LEN..];
        let u32_at = |o: usize| u32::from_le_bytes([f[o], f[o + 1], f[o + 2], f[o + 3]]);
        let u64_at = |o: usize| {
            u64::from_le_bytes([
                f[o],
                f[o + 1],
                f[o + 2],
                f[o + 3],
                f[o + 4],
                f[o + 5],
                f[o + 6],
                f[o + 7],
            ])
        };
        if u64_at(0) != MAGIC {
            return Err(corrupt(
                len - FOOTER_LEN,
                "bad footer magic (truncated or not a segment file)",
            ));
        }
        if crc32c::crc32c(&f[..40]) != u32_at(40) || u32_at(44) != 0 {
            return Err(corrupt(len - FOOTER_LEN, "footer checksum mismatch"));
        }
        let version = u32_at(8);
        if version != VERSION {
            return Err(EngineError::Version {
                path: path.to_path_buf(),
                found: version,
                expected: VERSION,
            });
        }
        if u32_at(12) != kind {
            return Err(corrupt(len - FOOTER_LEN, "segment file of the wrong kind"));
        }
        let data_len = usize::try_from(u64_at(16))
            .map_err(|_| corrupt(len - FOOTER_LEN, "data length overflows"))?;
        let meta_len = u32_at(24) as usize;
        let block_size = u32_at(28) as usize;
        let n_blocks = u32_at(32) as usize;
        if !block_size.is_power_of_two()
            || !BLOCK_SIZES.contains(&block_size)
            || n_blocks != data_len.div_ceil(block_size)
        {
            return Err(corrupt(len - FOOTER_LEN, "inconsistent block geometry"));
        }
        let expected = data_len
            .checked_add(meta_len)
            .and_then(|v| v.checked_add(n_blocks * 4))
            .and_then(|v| v.checked_add(FOOTER_LEN));
        if expected != Some(len) {
            return Err(corrupt(
                len - FOOTER_LEN,
                "file length does not match its footer (truncated?)",
            ));
        }
        let meta = data_len..data_len + meta_len;
        let crc_table = meta.end..meta.end + n_blocks * 4;
        if crc32c::crc32c(&map[meta.start..crc_table.end]) != u32_at(36) {
            return Err(corrupt(
                data_len,
                "section table or block checksums damaged",
            ));
        }
        let verified = (0..n_blocks.div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        Ok(BlockedFile {
            map,
            path: path.to_path_buf(),
            data_len,
            block_size,
            crc_table,
            meta,
            verified,
            all_verified: AtomicBool::new(n_blocks == 0),
        })
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The section table the writer stored.
    pub(crate) fn meta(&self) -> &[u8] {
        &self.map[self.meta.clone()]
    }

    /// Bytes of the data region the mapping covers (for resident/mapped metrics).
    pub(crate) fn data_len(&self) -> usize {
        self.data_len
    }

    /// The data bytes in `range`, after verifying every block they touch.
    #[inline]
    pub(crate) fn bytes(&self, range: Range<usize>) -> Result<&[u8], EngineError> {
        if range.start > range.end || range.end > self.data_len {
            return Err(EngineError::Corrupt {
                file: self.path.clone(),
                offset: range.start as u64,
                reason: format!(
                    "section range {range:?} outside the data region of {} bytes",
                    self.data_len
                ),
            });
        }
        if !self.all_verified.load(Ordering::Acquire) && range.start < range.end {
            for block in range.start / self.block_size..=(range.end - 1) / self.block_size {
                self.verify_block(block)?;
            }
        }
        Ok(&self.map[range])
    }

    /// Asks the kernel to start reading `range` in if it has not been read through this map
    /// yet (some block in it is unverified): a walk that is about to touch several rows issues
    /// their reads together, so on a cold page cache the waits overlap instead of queueing one
    /// page fault at a time. Once the blocks are verified it costs a bitmap test. Best effort.
    #[inline]
    pub(crate) fn will_need(&self, range: Range<usize>) {
        if self.all_verified.load(Ordering::Relaxed)
            || range.start >= range.end
            || range.end > self.data_len
        {
            return;
        }
        let cold = (range.start / self.block_size..=(range.end - 1) / self.block_size)
            .any(|b| self.verified[b / 64].load(Ordering::Relaxed) & (1u64 << (b % 64)) == 0);
        if cold {
            crate::index::vectors::advise_will_need(&self.map[range]);
        }
    }

    /// The data bytes in `range` without checksum verification: for prefetch hints only.
    pub(crate) fn unverified(&self, range: Range<usize>) -> Option<&[u8]> {
        (range.start <= range.end && range.end <= self.data_len).then(|| &self.map[range])
    }

    fn verify_block(&self, block: usize) -> Result<(), EngineError> {
        let (word, bit) = (block / 64, 1u64 << (block % 64));
        if self.verified[word].load(Ordering::Acquire) & bit != 0 {
            return Ok(());
        }
        let start = block * self.block_size;
        let end = (start + self.block_size).min(self.data_len);
        let t = self.crc_table.start + block * 4;
        let want = u32::from_le_bytes([
            self.map[t],
            self.map[t + 1],
            self.map[t + 2],
            self.map[t + 3],
        ]);
        if crc32c::crc32c(&self.map[start..end]) != want {
            return Err(EngineError::Corrupt {
                file: self.path.clone(),
                offset: start as u64,
                reason: format!("block {block} fails its checksum"),
            });
        }
        self.verified[word].fetch_or(bit, Ordering::AcqRel);
        Ok(())
    }

    /// Verifies every block (the background scrub); afterwards reads skip the per-block check.
    pub(crate) fn verify_all(&self) -> Result<(), EngineError> {
        for block in 0..self.data_len.div_ceil(self.block_size) {
            self.verify_block(block)?;
        }
        self.all_verified.store(true, Ordering::Release);
        Ok(())
    }
}

/// Recomputes every checksum of a blocked-file image (blocks, section table, footer) from its
/// own footer fields wherever the ranges they describe lie inside the image. For fuzzing only:
/// it lets damaged section tables and data reach the checks behind the CRCs.
#[cfg(feature = "fuzzing")]
pub(crate) fn reseal_for_fuzzing(bytes: &mut [u8]) {
    let len = bytes.len();
    if len < FOOTER_LEN {
        return;
    }
    let f = len - FOOTER_LEN;
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let mut data_len = [0u8; 8];
    data_len.copy_from_slice(&bytes[f + 16..f + 24]);
    let data_len = usize::try_from(u64::from_le_bytes(data_len)).unwrap_or(usize::MAX);
    let meta_len = u32_at(bytes, f + 24) as usize;
    let block_size = (u32_at(bytes, f + 28) as usize).max(1);
    let n_blocks = u32_at(bytes, f + 32) as usize;
    let table_end = data_len
        .checked_add(meta_len)
        .and_then(|m| m.checked_add(n_blocks.checked_mul(4)?));
    if let Some(table_end) = table_end.filter(|&e| e <= f) {
        let table = data_len + meta_len;
        for b in 0..n_blocks {
            let start = b.saturating_mul(block_size).min(data_len);
            let end = start.saturating_add(block_size).min(data_len);
            let crc = crc32c::crc32c(&bytes[start..end]);
            bytes[table + 4 * b..table + 4 * b + 4].copy_from_slice(&crc.to_le_bytes());
        }
        let crc = crc32c::crc32c(&bytes[data_len..table_end]);
        bytes[f + 36..f + 40].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32c::crc32c(&bytes[f..f + 40]);
    bytes[f + 40..f + 44].copy_from_slice(&crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(path: &Path, data: &[u8]) {
        let mut w = BlockedWriter::create(path).unwrap();
        w.write(data).unwrap();
        w.align().unwrap();
        w.finish(7, b"{\"s\":1}").unwrap();
    }

    #[test]
    fn round_trip_and_lazy_verification() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        write_file(&p, &data);
        let f = BlockedFile::open(&p, 7).unwrap();
        assert_eq!(f.meta(), b"{\"s\":1}");
        assert_eq!(f.bytes(1000..200_000).unwrap(), &data[1000..200_000]);
        f.verify_all().unwrap();
        assert!(matches!(
            BlockedFile::open(&p, 8),
            Err(EngineError::Corrupt { .. })
        ));
        assert!(f.bytes(0..f.data_len() + 1).is_err());
    }

    #[test]
    fn flipped_data_byte_is_found_on_touch_with_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data = vec![3u8; 3 * BLOCK_SIZE];
        write_file(&p, &data);
        let mut raw = std::fs::read(&p).unwrap();
        raw[BLOCK_SIZE + 17] ^= 1;
        std::fs::write(&p, &raw).unwrap();
        let f = BlockedFile::open(&p, 7).unwrap(); // O(1) open does not read data blocks
        assert!(f.bytes(0..100).is_ok());
        match f.bytes(BLOCK_SIZE..BLOCK_SIZE + 10) {
            Err(EngineError::Corrupt { offset, .. }) => assert_eq!(offset, BLOCK_SIZE as u64),
            other => panic!("expected corruption, got {other:?}"),
        }
        assert!(f.verify_all().is_err());
    }

    /// Random-access files use one-page blocks: damage is found at its 4 KiB block, reading one
    /// row verifies only the page(s) it spans, and a hint for a verified range is a no-op.
    #[test]
    fn page_sized_blocks_verify_only_what_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
        let mut w = BlockedWriter::create_with_block_size(&p, RANDOM_ACCESS_BLOCK_SIZE).unwrap();
        w.write(&data).unwrap();
        w.finish(7, b"{}").unwrap();
        let mut raw = std::fs::read(&p).unwrap();
        raw[5 * 4096 + 3] ^= 1;
        std::fs::write(&p, &raw).unwrap();
        let f = BlockedFile::open(&p, 7).unwrap();
        f.will_need(4000..4200);
        assert_eq!(f.bytes(4000..4200).unwrap(), &data[4000..4200]);
        assert_eq!(
            f.bytes(6 * 4096..7 * 4096).unwrap(),
            &data[6 * 4096..7 * 4096]
        );
        match f.bytes(5 * 4096 + 100..5 * 4096 + 101) {
            Err(EngineError::Corrupt { offset, .. }) => assert_eq!(offset, 5 * 4096),
            other => panic!("expected corruption, got {other:?}"),
        }
        f.will_need(0..f.data_len());
        for bad in [1000, 3 * 1024 * 1024, 6000] {
            assert!(BlockedWriter::create_with_block_size(&dir.path().join("g"), bad).is_err());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]
        #[test]
        fn damage_anywhere_is_an_error_never_a_panic(pos in 0usize..200_000, cut in proptest::prelude::any::<bool>()) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("f");
            let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
            write_file(&p, &data);
            let mut raw = std::fs::read(&p).unwrap();
            let pos = pos % raw.len();
            if cut { raw.truncate(pos) } else { raw[pos] ^= 0x40 }
            std::fs::write(&p, &raw).unwrap();
            // Every byte is covered by the footer, the table checksum or a block checksum.
            if let Ok(f) = BlockedFile::open(&p, 7) {
                proptest::prop_assert!(f.verify_all().is_err(), "damage at {} went unnoticed", pos);
                proptest::prop_assert!(f.bytes(0..f.data_len()).is_err());
            }
        }
    }
}
