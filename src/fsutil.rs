//! File-system helpers with the durability rules every layer that persists files relies on
//! (engine MANIFEST and WAL, catalog, index files, snapshots): atomic replacement, durable
//! folder creation, folder fsync, and the one-process-per-folder lock. The crash-safety recipe
//! lives here once; each layer maps [`FsError`] into its own error type.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Which file-system step failed, where, and why.
#[derive(Debug, thiserror::Error)]
#[error("I/O error during {op} on {}: {source}", path.display())]
pub struct FsError {
    /// The step, e.g. "write", "rename", "fsync folder", "create folder", "lock".
    pub op: &'static str,
    /// The file or folder involved.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl FsError {
    fn new(op: &'static str, path: &Path, source: io::Error) -> FsError {
        FsError {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Replaces `path` with `bytes` so that a reader (or a crash) sees either the old or the new
/// content: write `<path>.tmp`, fsync it, rename over `path`, fsync the folder.
pub fn atomic_replace(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
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
        return Err(FsError {
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
        Err(FsError {
            op: "rename",
            path: path.to_path_buf(),
            source: io::Error::other("failpoint replace"),
        })
    });
    std::fs::rename(&tmp, path).map_err(|source| FsError {
        op: "rename",
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(feature = "failpoints")]
    crash_point!(format!("replace::{file}::renamed").as_str(), {
        Err(FsError {
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
        .map_err(|source| FsError {
            op: "fsync folder",
            path: dir.to_path_buf(),
            source,
        })
}

/// Whether `e` says the device is full: ENOSPC (28) or EDQUOT (122) on Linux, both meaning
/// "make room and retry", so every layer maps them to its own "no space" error.
pub fn is_storage_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || matches!(e.raw_os_error(), Some(28 | 122))
}

/// Fsyncs a folder so the names created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    sync_path(dir).map_err(|e| FsError {
        op: "fsync folder",
        ..e
    })
}

/// Fsyncs one file or folder (opened read-only: fsync needs no write access).
pub fn sync_path(path: &Path) -> Result<(), FsError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| FsError::new("fsync", path, e))
}

/// Fsyncs `dir` and every folder below it, so the names of a copied tree are durable (files
/// are synced by whoever wrote them).
pub fn sync_tree(dir: &Path) -> Result<(), FsError> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).map_err(|e| FsError::new("list", &d, e))?;
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(entry.path());
            }
        }
        sync_path(&d)?;
    }
    Ok(())
}

/// Creates `dir` (and missing parents) and makes its name durable in its parent.
pub fn create_dir_durable(dir: &Path) -> Result<(), FsError> {
    fs::create_dir_all(dir).map_err(|e| FsError::new("create folder", dir, e))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    sync_dir(parent)
}

/// Why [`DirLock::acquire`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process (or another handle in this one) holds the lock.
    #[error("{} is locked by another vectord process", path.display())]
    Held {
        /// The lock file.
        path: PathBuf,
    },
    /// The folder or its lock file could not be created, opened or locked.
    #[error(transparent)]
    Io(#[from] FsError),
}

/// An exclusive advisory lock on a folder (`<dir>/LOCK`), held while the value lives. The
/// kernel drops it when the process dies, so a `kill -9` never leaves a stale lock behind.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock or fails with [`LockError::Held`] if another holder has it.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        fs::create_dir_all(dir).map_err(|e| FsError::new("create folder", dir, e))?;
        let path = dir.join("LOCK");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| FsError::new("open lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(LockError::Held { path }),
            Err(fs::TryLockError::Error(e)) => return Err(FsError::new("lock", &path, e).into()),
        }
        // The pid is informational (who holds it); failing to write it is harmless.
        let _ = file
            .set_len(0)
            .and_then(|_| writeln!(file, "{}", std::process::id()));
        Ok(DirLock { _file: file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = DirLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            DirLock::acquire(dir.path()),
            Err(LockError::Held { .. })
        ));
        drop(a);
        DirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn atomic_replace_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("MANIFEST");
        atomic_replace(&p, b"one").unwrap();
        atomic_replace(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!dir.path().join("MANIFEST.tmp").exists());
    }
}
