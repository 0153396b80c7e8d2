//! Durable file replacement shared by every layer that persists small files (engine MANIFEST,
//! catalog, index files), so the crash-safety recipe lives in one place.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Which step of an atomic replace failed, where, and why.
#[derive(Debug)]
pub struct AtomicWriteError {
    /// The step: "write", "rename" or "fsync folder".
    pub op: &'static str,
    /// The file or folder involved.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
}

/// Replaces `path` with `bytes` so that a reader (or a crash) sees either the old or the new
/// content: write `<path>.tmp`, fsync it, rename over `path`, fsync the folder.
pub fn atomic_replace(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(source) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(AtomicWriteError {
            op: "write",
            path: tmp,
            source,
        });
    }
    // Crash-matrix failpoints named after the file: `replace::MANIFEST`, `replace::catalog.json`
    // (before the rename) and `replace::<file>::renamed` (after it, before the folder fsync).
    #[cfg(feature = "failpoints")]
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    #[cfg(feature = "failpoints")]
    crash_point!(format!("replace::{file}").as_str(), {
        let _ = std::fs::remove_file(&tmp);
        Err(AtomicWriteError {
            op: "rename",
            path: path.to_path_buf(),
            source: io::Error::other("failpoint replace"),
        })
    });
    std::fs::rename(&tmp, path).map_err(|source| AtomicWriteError {
        op: "rename",
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(feature = "failpoints")]
    crash_point!(format!("replace::{file}::renamed").as_str(), {
        Err(AtomicWriteError {
            op: "fsync folder",
            path: path.to_path_buf(),
            source: io::Error::other("failpoint replace renamed"),
        })
    });
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| AtomicWriteError {
            op: "fsync folder",
            path: dir.to_path_buf(),
            source,
        })
}
