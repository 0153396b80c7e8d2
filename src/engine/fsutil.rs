//! Small file-system helpers with the durability rules the engine relies on.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::EngineError;

/// Replaces `path` with `bytes` so that a reader (or a crash) sees either the old or the new
/// content: write a temp file, fsync it, rename over, fsync the folder.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    crate::fsutil::atomic_replace(path, bytes).map_err(|e| EngineError::io(e.op, e.path, e.source))
}

/// Fsyncs a folder so the names created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), EngineError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| EngineError::io("fsync folder", dir, e))
}

/// Creates `dir` (and missing parents) and makes its name durable in its parent.
pub fn create_dir_durable(dir: &Path) -> Result<(), EngineError> {
    fs::create_dir_all(dir).map_err(|e| EngineError::io("create folder", dir, e))?;
    sync_dir(&parent(dir))
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// An exclusive advisory lock on a folder (`<dir>/LOCK`), held while the value lives. The
/// kernel drops it when the process dies, so a `kill -9` never leaves a stale lock behind.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock or fails with [`EngineError::Locked`] if another holder has it.
    pub fn acquire(dir: &Path) -> Result<DirLock, EngineError> {
        fs::create_dir_all(dir).map_err(|e| EngineError::io("create folder", dir, e))?;
        let path = dir.join("LOCK");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| EngineError::io("open lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(EngineError::Locked { path }),
            Err(fs::TryLockError::Error(e)) => return Err(EngineError::io("lock", &path, e)),
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
            Err(EngineError::Locked { .. })
        ));
        drop(a);
        DirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("MANIFEST");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!dir.path().join("MANIFEST.tmp").exists());
    }
}
