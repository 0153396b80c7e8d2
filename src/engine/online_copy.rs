//! Online snapshots of one collection folder: a consistent copy taken while writes continue.
//!
//! Under the collection's writer lock (no append, flush publish or compaction swap can run)
//! [`Collection::snapshot_into`](super::Collection::snapshot_into) hard-links every published
//! segment file — they are immutable once published — and opens every WAL file, noting its
//! length (appends are whole records under that lock, so each length is a record boundary).
//! After the lock is released, [`PendingSnapshot::finish`] copies the WAL prefixes through the
//! open handles (a flush may unlink the files meanwhile; the handles keep them readable) and
//! writes the MANIFEST captured under the lock. The result is a collection folder that opens
//! to exactly the state at the moment of the lock: MANIFEST + segments + WAL replay.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::EngineError;
use crate::fsutil::{atomic_replace, create_dir_durable, sync_dir};

/// A snapshot whose immutable files are linked and whose WAL still has to be copied.
#[must_use = "a snapshot is incomplete until finish() copies its WAL and writes its MANIFEST"]
pub struct PendingSnapshot {
    pub(super) dest: PathBuf,
    pub(super) manifest: Vec<u8>,
    pub(super) wal: Vec<(String, File, u64)>,
    pub(super) wal_dir_name: &'static str,
    /// Returns once every record within the captured WAL lengths is durable; fails if a sync
    /// failed first (those records are in doubt, and the log's recovery drops them).
    pub(super) durable: Box<dyn FnOnce() -> Result<(), EngineError> + Send>,
}

impl std::fmt::Debug for PendingSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSnapshot")
            .field("dest", &self.dest)
            .field("wal", &self.wal)
            .finish_non_exhaustive()
    }
}

impl PendingSnapshot {
    /// Waits until the captured WAL prefixes are durable (a snapshot holds only acknowledged
    /// or acknowledgeable records), copies them and writes the MANIFEST; fsyncs all.
    pub fn finish(self) -> Result<PathBuf, EngineError> {
        (self.durable)()?;
        let wal_dir = self.dest.join(self.wal_dir_name);
        create_dir_durable(&wal_dir)?;
        for (name, file, len) in self.wal {
            let path = wal_dir.join(&name);
            copy_prefix(file, len, &path).map_err(|e| EngineError::io("copy WAL", &path, e))?;
        }
        sync_dir(&wal_dir)?;
        // Written last: a folder without a MANIFEST is recognisably incomplete.
        atomic_replace(&self.dest.join("MANIFEST"), &self.manifest)?;
        Ok(self.dest)
    }
}

/// Copies the first `len` bytes of `from` (read from its start) into a new file and fsyncs it.
fn copy_prefix(mut from: File, len: u64, to: &Path) -> io::Result<()> {
    use std::io::Seek;
    from.seek(io::SeekFrom::Start(0))?;
    let mut out = File::create_new(to)?;
    let copied = io::copy(&mut (&mut from).take(len), &mut out)?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("WAL file ended after {copied} of {len} bytes"),
        ));
    }
    out.flush()?;
    out.sync_all()
}

/// Links (or, across file systems, copies) `files` of `src_dir` into `dest_dir` and fsyncs it.
pub(super) fn link_files(
    src_dir: &Path,
    dest_dir: &Path,
    files: &[String],
) -> Result<(), EngineError> {
    create_dir_durable(dest_dir)?;
    for name in files {
        let from = src_dir.join(name);
        let to = dest_dir.join(name);
        if let Err(e) = fs::hard_link(&from, &to) {
            // EXDEV: the snapshot folder is on another file system; copy instead (the source
            // is immutable, so copying under the lock is only slower, never inconsistent).
            if e.raw_os_error() == Some(18) {
                fs::copy(&from, &to).map_err(|e| EngineError::io("copy segment file", &from, e))?;
                File::open(&to)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| EngineError::io("fsync segment file", &to, e))?;
            } else {
                return Err(EngineError::io("link segment file", &from, e));
            }
        }
    }
    Ok(sync_dir(dest_dir)?)
}

/// Opens every WAL file in `wal_dir` and notes its current length (call under the writer lock).
pub(super) fn open_wal_files(wal_dir: &Path) -> Result<Vec<(String, File, u64)>, EngineError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(wal_dir).map_err(|e| EngineError::io("list WAL", wal_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| EngineError::io("list WAL", wal_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".log") {
            continue;
        }
        let path = entry.path();
        let file = File::open(&path).map_err(|e| EngineError::io("open WAL", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| EngineError::io("stat WAL", &path, e))?
            .len();
        out.push((name, file, len));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The files of a published segment folder a snapshot needs: everything except tombstone
/// files other than the live one (older generations await deletion).
pub(super) fn segment_files(
    seg_dir: &Path,
    live_tombstones: Option<&str>,
) -> Result<Vec<String>, EngineError> {
    let mut names = Vec::new();
    let entries = fs::read_dir(seg_dir).map_err(|e| EngineError::io("list segment", seg_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| EngineError::io("list segment", seg_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_tombstones = name.starts_with("tombstones-");
        if name.ends_with(".tmp") || (is_tombstones && Some(name.as_str()) != live_tombstones) {
            continue;
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}
