//! Snapshots in a folder of the local volume: taken online while the server serves (consistent
//! copies of the catalog and every collection), verified against their checksums, listed and
//! pruned.
//!
//! A snapshot folder is laid out like a data folder (`catalog.json`, `collections/<uuid>/…`)
//! plus `SNAPSHOT.json` ([`super::manifest`]), written last. A folder without `SNAPSHOT.json`,
//! or whose files disagree with it, is not a snapshot and is never restored. Segment files are
//! hard-linked when the snapshot lives on the data volume, so a snapshot costs little space
//! until compaction replaces the segments it shares. Restoring (whole folder or one collection)
//! is [`super::restore`].

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use super::error::SnapshotError;
use super::manifest::{
    excess, hash_file, read_info, safe_join, utc_stamp, write_info, SnapshotEntry, SnapshotInfo,
    COLLECTION_FORMAT_VERSION, FORMAT_VERSION, NAME_PREFIX, SNAPSHOT_FILE,
};
use crate::catalog::{Catalog, CATALOG_FILE};
use crate::fsutil::{atomic_replace, sync_path};

/// A new snapshot's folder name: `snapshot-YYYYMMDDTHHMMSSZ` (sortable, UTC), plus a suffix
/// when two snapshots fall in the same second.
pub fn new_name(root: &Path) -> String {
    new_name_for(root, None)
}

/// As [`new_name`], with `-<collection id>` after the timestamp for a collection snapshot.
pub fn new_name_for(root: &Path, only: Option<Uuid>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let base = match only {
        Some(id) => format!("{NAME_PREFIX}{}-{id}", utc_stamp(now)),
        None => format!("{NAME_PREFIX}{}", utc_stamp(now)),
    };
    let mut name = base.clone();
    let mut n = 1;
    while root.join(&name).exists() {
        n += 1;
        name = format!("{base}-{n}");
    }
    name
}

/// Takes a consistent snapshot of `catalog` into `root/<name>` and returns its description.
/// Writes go on meanwhile; they wait only while segment files are linked.
pub fn create(catalog: &Catalog, root: &Path, name: &str) -> Result<SnapshotInfo, SnapshotError> {
    create_scoped(catalog, root, name, None)
}

/// As [`create`], of the collection `only` when given: the snapshot then holds that
/// collection's files and a catalog listing just it, and writers of other collections never
/// wait for it.
pub fn create_scoped(
    catalog: &Catalog,
    root: &Path,
    name: &str,
    only: Option<Uuid>,
) -> Result<SnapshotInfo, SnapshotError> {
    fs::create_dir_all(root).map_err(|e| SnapshotError::io("create", root, e))?;
    let out = root.join(name);
    // Built under a temporary name and renamed at the end: a crash leaves a `.partial` folder
    // that listing ignores and pruning removes, never something that looks like a snapshot.
    let tmp = root.join(format!(".{name}.partial"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| SnapshotError::io("remove", &tmp, e))?;
    }
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    fs::create_dir_all(&tmp).map_err(|e| SnapshotError::io("create", &tmp, e))?;
    let taken = match only {
        Some(id) => catalog.snapshot_collection_into(id, &tmp),
        None => catalog.snapshot_into(&tmp),
    };
    let taken = match taken {
        Ok(t) => t,
        Err(e) => {
            // Links already made would otherwise stay until the next prune.
            let _ = fs::remove_dir_all(&tmp);
            return Err(e.into());
        }
    };
    for (id, pending) in taken.pending {
        pending
            .finish()
            .map_err(|source| SnapshotError::Collection { id, source })?;
    }
    let catalog_bytes = serde_json::to_vec_pretty(&taken.file)
        .map_err(|e| SnapshotError::invalid(&tmp, format!("encoding the catalog: {e}")))?;
    let catalog_path = tmp.join(CATALOG_FILE);
    atomic_replace(&catalog_path, &catalog_bytes)?;
    let files = checksum_tree(&tmp)?;
    let info = SnapshotInfo {
        format_version: if only.is_some() {
            COLLECTION_FORMAT_VERSION
        } else {
            FORMAT_VERSION
        },
        name: name.to_string(),
        created_at,
        vectord_version: env!("CARGO_PKG_VERSION").to_string(),
        collections: taken.file.collections.len(),
        skipped_collections: taken.skipped,
        collection: only,
        total_bytes: files.iter().map(|f| f.bytes).sum(),
        files,
    };
    write_info(&tmp, &info)?;
    fs::rename(&tmp, &out).map_err(|e| SnapshotError::io("rename", &tmp, e))?;
    sync_path(root)?;
    Ok(info)
}

/// Reads `SNAPSHOT.json` and checks every listed file's size and SHA-256, and that no file of
/// the data layout is missing from the list. Returns the description when all match.
pub fn verify(dir: &Path) -> Result<SnapshotInfo, SnapshotError> {
    let info = read_info(dir)?;
    let on_disk = list_files(dir)?;
    let listed: std::collections::HashSet<&str> =
        info.files.iter().map(|f| f.path.as_str()).collect();
    if let Some(extra) = on_disk.iter().find(|p| !listed.contains(p.as_str())) {
        return Err(SnapshotError::invalid(
            dir.join(extra),
            "file not listed in SNAPSHOT.json",
        ));
    }
    if !listed.contains(CATALOG_FILE) {
        return Err(SnapshotError::invalid(dir, "no catalog.json listed"));
    }
    for entry in &info.files {
        let path = safe_join(dir, &entry.path)?;
        let (bytes, sha) = hash_file(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SnapshotError::invalid(&path, "listed file is missing"),
            _ => SnapshotError::io("read", &path, e),
        })?;
        if bytes != entry.bytes || sha != entry.sha256 {
            return Err(SnapshotError::invalid(
                &path,
                format!(
                    "checksum mismatch: {} bytes sha256 {sha}, expected {} bytes sha256 {}",
                    bytes, entry.bytes, entry.sha256
                ),
            ));
        }
    }
    Ok(info)
}

/// Copies one snapshot file to `to` (creating its folder), checks the copy against `entry`
/// and fsyncs it.
pub(crate) fn copy_checked(
    from: &Path,
    to: &Path,
    entry: &SnapshotEntry,
) -> Result<(), SnapshotError> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).map_err(|e| SnapshotError::io("create", dir, e))?;
    }
    // Copied, not linked: the restored folder must not share inodes with the snapshot, or
    // a later write to it (WAL append) would change the snapshot too.
    fs::copy(from, to).map_err(|e| SnapshotError::io("copy", from, e))?;
    let (bytes, sha) = hash_file(to).map_err(|e| SnapshotError::io("read", to, e))?;
    if bytes != entry.bytes || sha != entry.sha256 {
        return Err(SnapshotError::invalid(
            to,
            "copy does not match its checksum",
        ));
    }
    Ok(sync_path(to)?)
}

/// The complete snapshots under `root`, oldest first (folders being written are ignored).
pub fn list(root: &Path) -> Result<Vec<SnapshotInfo>, SnapshotError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(SnapshotError::io("list", root, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| SnapshotError::io("list", root, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let info_path = entry.path().join(SNAPSHOT_FILE);
        if let Ok(bytes) = fs::read(&info_path) {
            if let Ok(info) = serde_json::from_slice::<SnapshotInfo>(&bytes) {
                out.push(info);
            }
        }
    }
    out.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
    Ok(out)
}

/// Deletes all but the newest `keep` snapshots of each scope under `root` (see [`excess`]),
/// and leftovers of interrupted ones. Returns the names removed.
pub fn prune(root: &Path, keep: usize) -> Result<Vec<String>, SnapshotError> {
    let mut removed = Vec::new();
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".partial") {
                let path = entry.path();
                fs::remove_dir_all(&path).map_err(|e| SnapshotError::io("remove", &path, e))?;
            }
        }
    }
    for name in excess(&list(root)?, keep) {
        let path = root.join(&name);
        fs::remove_dir_all(&path).map_err(|e| SnapshotError::io("remove", &path, e))?;
        removed.push(name);
    }
    Ok(removed)
}

/// Relative paths of every regular file under `dir` except `SNAPSHOT.json` and lock files.
fn list_files(dir: &Path) -> Result<Vec<String>, SnapshotError> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = stack.pop() {
        let entries = fs::read_dir(&abs).map_err(|e| SnapshotError::io("list", &abs, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| SnapshotError::io("list", &abs, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel_child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let ft = entry
                .file_type()
                .map_err(|e| SnapshotError::io("stat", entry.path(), e))?;
            if ft.is_dir() {
                stack.push((entry.path(), rel_child));
            } else if rel_child != SNAPSHOT_FILE && name != "LOCK" {
                out.push(rel_child);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn checksum_tree(dir: &Path) -> Result<Vec<SnapshotEntry>, SnapshotError> {
    list_files(dir)?
        .into_iter()
        .map(|rel| {
            let path = dir.join(&rel);
            let (bytes, sha256) =
                hash_file(&path).map_err(|e| SnapshotError::io("read", &path, e))?;
            Ok(SnapshotEntry {
                path: rel,
                bytes,
                sha256,
            })
        })
        .collect()
}
