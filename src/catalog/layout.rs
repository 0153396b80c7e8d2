//! The data folder's layout as the catalog sees it: one folder per collection under
//! `collections/`, named by its UUID, and the leftovers of interrupted deletes and restores that
//! are swept at open.

use std::fs;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::Catalog;

/// Folder (inside the data folder) holding one folder per collection, named by its UUID.
pub const COLLECTIONS_DIR: &str = "collections";
/// Prefix of a collection folder being removed (renamed first so a crash never leaves a
/// half-deleted folder under a live UUID).
const TRASH_PREFIX: &str = ".deleted-";
/// The journal of a restore that is swapping files in the data folder (`restore` module). While
/// it exists the folder is half old, half new, so no server may open it.
pub const RESTORE_JOURNAL: &str = "RESTORE.json";
/// Folder (in the data folder) a whole-folder restore copies a snapshot into before the swap.
pub const RESTORE_STAGING: &str = ".restore-staging";
/// Prefix of a folder (in the data folder) `restore --from-s3` downloads a snapshot into.
pub const RESTORE_DOWNLOAD_PREFIX: &str = ".restore-download-";
/// Prefix of a folder (in `collections/`) a collection restore copies a collection into.
pub const COLLECTION_STAGING_PREFIX: &str = ".restoring-";

impl Catalog {
    /// The folder of collection `id`.
    pub(super) fn collection_path(&self, id: Uuid) -> PathBuf {
        self.dir.join(COLLECTIONS_DIR).join(id.to_string())
    }

    /// Renames a collection folder to a trash name, then removes it. Failures are logged: the
    /// catalog no longer references the folder, and the next start sweeps the trash.
    pub(super) fn remove_collection_dir(&self, id: Uuid) {
        let path = self.collection_path(id);
        let trash = self
            .dir
            .join(COLLECTIONS_DIR)
            .join(format!("{TRASH_PREFIX}{id}"));
        let target = match fs::rename(&path, &trash) {
            Ok(()) => trash,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!(collection = %id, error = %e, "could not move collection folder to trash");
                path
            }
        };
        if let Err(e) = fs::remove_dir_all(&target) {
            tracing::warn!(collection = %id, path = %target.display(), error = %e, "could not remove collection folder");
        }
    }
}

/// Removes folders left by deletes that were interrupted.
pub(super) fn sweep_trash(coll_dir: &Path) {
    sweep_prefixed(coll_dir, TRASH_PREFIX, "trashed collection folder");
}

/// Removes copies a restore or a download left when it stopped before its swap began (with no
/// journal they are not part of the data): they hold records, which is PHI, and disk space.
/// Only under the folder's lock, so no restore is writing them.
pub(super) fn sweep_restore_leftovers(dir: &Path) {
    sweep_prefixed(dir, RESTORE_STAGING, "restore staging folder");
    sweep_prefixed(dir, RESTORE_DOWNLOAD_PREFIX, "snapshot download folder");
    sweep_prefixed(
        &dir.join(COLLECTIONS_DIR),
        COLLECTION_STAGING_PREFIX,
        "collection restore staging folder",
    );
}

/// Removes every folder in `dir` whose name starts with `prefix`.
fn sweep_prefixed(dir: &Path, prefix: &str, what: &'static str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            match fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed a leftover {what}")
                }
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "could not remove a leftover {what}")
                }
            }
        }
    }
}
