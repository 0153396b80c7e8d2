//! Restoring snapshots into a stopped server's data folder: the whole folder, or one
//! collection leaving the others alone.
//!
//! Every restore works *inside* the data folder, never beside it: on Fly the data folder is
//! the volume's mount point (`/data`), which cannot be renamed, and its parent (`/`) is
//! another file system. So a restore
//! 1. verifies every checksum of the snapshot,
//! 2. copies the files into a staging folder in the data folder (`.restore-staging`, or
//!    `collections/.restoring-<id>`), checks each copy again and fsyncs it,
//! 3. writes a journal (`RESTORE.json`) listing the renames that swap the old files out (into
//!    `.before-restore-<time>/`, or `collections/.before-restore-<id>-<time>`) and the staged
//!    ones in, plus the catalog to write afterwards,
//! 4. performs the renames and removes the journal.
//!
//! A crash before step 3 leaves only a staging folder, removed by the next restore or server
//! start. A crash during step 4 leaves the journal: the server refuses to open the folder, and
//! `vectord restore --finish` (or [`finish`]) replays it. Each step of the journal is a rename
//! that is done when its source is gone and its destination present, so replaying is
//! idempotent and needs nothing but the data folder (the snapshot may be gone by then).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::SnapshotError;
use super::local::{copy_checked, verify};
use super::manifest::{safe_join, utc_stamp, SnapshotEntry, SnapshotInfo};
use crate::catalog::{
    self, CatalogFile, CollectionRecord, CollectionSelector, CATALOG_FILE, COLLECTIONS_DIR,
    COLLECTION_STAGING_PREFIX, RESTORE_JOURNAL, RESTORE_STAGING,
};
use crate::engine::DirLock;
use crate::fsutil::{atomic_replace, sync_path, sync_tree};

/// Prefix of the folder a whole-folder restore moves the replaced data into.
const KEPT_PREFIX: &str = ".before-restore-";
/// Layout version of `RESTORE.json`.
const JOURNAL_VERSION: u32 = 1;
/// The entries of a data folder that a whole-folder restore replaces. Everything else in it
/// (`LOCK`, a `snapshots/` folder, earlier `.before-restore-*` folders, an operator's files)
/// stays where it is.
const DATA_ENTRIES: [&str; 2] = [CATALOG_FILE, COLLECTIONS_DIR];

/// The plan of a restore's swap, written before the first rename so a crash can be finished.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Journal {
    format_version: u32,
    /// The snapshot being restored (its folder name), for messages.
    snapshot: String,
    /// The restored collection, for a collection restore.
    collection: Option<Uuid>,
    /// Renames, in order, relative to the data folder.
    moves: Vec<Move>,
    /// Written as `catalog.json` after the renames (a collection restore's merged catalog).
    catalog: Option<CatalogFile>,
    /// Emptied staging folders removed at the end, relative to the data folder.
    remove: Vec<String>,
    /// Where the replaced data was moved, relative to the data folder.
    kept_aside: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Move {
    from: String,
    to: String,
}

/// How a restore stages the snapshot's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// Copy each file and check the copy against its checksum: the snapshot stays as it was.
    Copy,
    /// Rename each file into the staging folder and fsync it: for a private, just verified
    /// download inside the data folder (`restore --from-s3`), which the restore consumes, so
    /// the volume never holds a second copy of it.
    Move,
}

/// What [`restore`] did.
#[derive(Debug, Clone)]
pub struct RestoredFolder {
    /// The snapshot it came from.
    pub info: SnapshotInfo,
    /// Where the replaced catalog and collections were moved (inside the data folder), when
    /// the folder held any.
    pub kept_aside: Option<PathBuf>,
}

/// What [`restore_collection`] put back.
#[derive(Debug, Clone)]
pub struct RestoredCollection {
    /// The snapshot it came from.
    pub info: SnapshotInfo,
    /// The collection's catalog record as restored (configuration and metadata included).
    pub record: CollectionRecord,
    /// Where the collection's replaced folder was kept (inside the data folder's
    /// `collections/`), when one existed.
    pub kept_aside: Option<PathBuf>,
}

/// What [`finish`] completed.
#[derive(Debug, Clone)]
pub struct FinishedRestore {
    /// The snapshot the interrupted restore was restoring.
    pub snapshot: String,
    /// Its collection, when it restored one.
    pub collection: Option<Uuid>,
    /// Where the replaced data is kept, when there was any.
    pub kept_aside: Option<PathBuf>,
}

/// Restores the whole-folder snapshot in `snapshot` into the data folder `target` (created if
/// absent), after verifying every checksum. A target holding data (a catalog or collections)
/// is replaced only with `force`; the replaced `catalog.json` and `collections/` are kept in
/// `<target>/.before-restore-<time>/`. The target folder itself is never renamed, so it may be
/// a mount point. Nothing is replaced if anything fails before the swap; a crash during the
/// swap is finished by [`finish`].
pub fn restore(
    snapshot: &Path,
    target: &Path,
    force: bool,
) -> Result<RestoredFolder, SnapshotError> {
    restore_with(snapshot, target, force, Transfer::Copy)
}

/// [`restore`], staging the snapshot's files as `transfer` says.
pub fn restore_with(
    snapshot: &Path,
    target: &Path,
    force: bool,
    transfer: Transfer,
) -> Result<RestoredFolder, SnapshotError> {
    let info = verify(snapshot)?;
    if let Some(collection) = info.collection {
        return Err(SnapshotError::OneCollection {
            path: snapshot.to_path_buf(),
            collection,
        });
    }
    let incoming = top_level_names(snapshot, &info.files)?;
    fs::create_dir_all(target).map_err(|e| SnapshotError::io("create", target, e))?;
    // Held for the whole restore: a server cannot start on a half-restored folder, and we
    // cannot replace a folder a server is using.
    let _held = DirLock::acquire(target).map_err(|_| SnapshotError::TargetLocked(target.into()))?;
    refuse_interrupted(target)?;
    let has_data = holds_data(target)?;
    if has_data && !force {
        return Err(SnapshotError::TargetNotEmpty(target.to_path_buf()));
    }
    if !has_data {
        // An empty `collections/` (a server started once on an empty folder) is not worth
        // keeping aside.
        let coll = target.join(COLLECTIONS_DIR);
        if exists(&coll) {
            fs::remove_dir(&coll).map_err(|e| SnapshotError::io("remove", &coll, e))?;
        }
    }
    let replaced: Vec<String> = DATA_ENTRIES
        .iter()
        .map(|s| s.to_string())
        .chain(incoming.iter().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|name| exists(&target.join(name)))
        .collect();

    let staging = target.join(RESTORE_STAGING);
    stage(
        snapshot,
        &staging,
        info.files.iter().map(|e| (e, e.path.as_str())),
        transfer,
    )?;

    let kept = (!replaced.is_empty()).then(|| unused_name(target, KEPT_PREFIX));
    let mut moves = Vec::new();
    if let Some(kept) = &kept {
        moves.extend(replaced.iter().map(|name| Move {
            from: name.clone(),
            to: format!("{kept}/{name}"),
        }));
    }
    moves.extend(incoming.iter().map(|name| Move {
        from: format!("{RESTORE_STAGING}/{name}"),
        to: name.clone(),
    }));
    let journal = Journal {
        format_version: JOURNAL_VERSION,
        snapshot: info.name.clone(),
        collection: None,
        moves,
        catalog: None,
        remove: vec![RESTORE_STAGING.to_string()],
        kept_aside: kept,
    };
    let done = run(target, &journal)?;
    Ok(RestoredFolder {
        info,
        kept_aside: done.kept_aside,
    })
}

/// Restores one collection of `snapshot` into the data folder `target` (created if absent),
/// leaving its other collections alone: every checksum of the snapshot is verified first,
/// the collection's files are copied to a staging folder and checked again, then swapped in
/// and its catalog record (configuration, metadata, and its tenant and database when
/// missing) written. `sel` picks the collection (optional for a one-collection snapshot, or
/// a snapshot holding one). A collection of the same id is replaced only with `force`, its
/// folder kept as `collections/.before-restore-<id>-<time>`; another collection of the same
/// name is never replaced. The folder's lock is held throughout, so a running server makes
/// this fail with [`SnapshotError::TargetLocked`]: its catalog and open collection would not
/// see the swap, and would write over it.
pub fn restore_collection(
    snapshot: &Path,
    target: &Path,
    sel: Option<&CollectionSelector>,
    force: bool,
) -> Result<RestoredCollection, SnapshotError> {
    restore_collection_with(snapshot, target, sel, force, Transfer::Copy)
}

/// [`restore_collection`], staging the collection's files as `transfer` says.
pub fn restore_collection_with(
    snapshot: &Path,
    target: &Path,
    sel: Option<&CollectionSelector>,
    force: bool,
    transfer: Transfer,
) -> Result<RestoredCollection, SnapshotError> {
    let info = verify(snapshot)?;
    let snap_catalog = catalog::read_catalog_file(snapshot)?
        .ok_or_else(|| SnapshotError::invalid(snapshot, "no catalog.json"))?;
    let record = match (sel, info.collection) {
        (Some(sel), _) => sel.find(snap_catalog.collections.iter()),
        (None, Some(id)) => snap_catalog.collections.iter().find(|c| c.id == id),
        (None, None) if snap_catalog.collections.len() == 1 => snap_catalog.collections.first(),
        (None, None) => return Err(SnapshotError::NeedsCollection(snapshot.to_path_buf())),
    }
    .filter(|r| info.collection.is_none_or(|id| id == r.id))
    .cloned()
    .ok_or_else(|| SnapshotError::NoSuchCollection {
        path: snapshot.to_path_buf(),
        collection: sel.map_or_else(|| format!("{:?}", info.collection), |s| s.to_string()),
    })?;
    let id = record.id;
    let prefix = format!("{COLLECTIONS_DIR}/{id}/");
    let files: Vec<&SnapshotEntry> = info
        .files
        .iter()
        .filter(|f| f.path.starts_with(&prefix))
        .collect();
    // The MANIFEST is written last into a collection's snapshot: without it the copy is
    // partial (verify cannot tell, since SNAPSHOT.json would not list it either).
    if !files.iter().any(|f| f.path == format!("{prefix}MANIFEST")) {
        return Err(SnapshotError::invalid(
            snapshot.join(&prefix),
            "the collection has no MANIFEST (a partial snapshot)",
        ));
    }

    fs::create_dir_all(target).map_err(|e| SnapshotError::io("create", target, e))?;
    let _held = DirLock::acquire(target).map_err(|_| SnapshotError::TargetLocked(target.into()))?;
    refuse_interrupted(target)?;
    let mut current = catalog::read_catalog_file(target)?.unwrap_or_default();
    if let Some(other) = current.collections.iter().find(|c| {
        c.id != id
            && c.name == record.name
            && c.tenant == record.tenant
            && c.database == record.database
    }) {
        return Err(SnapshotError::NameTaken {
            id: other.id,
            name: other.name.clone(),
            tenant: other.tenant.clone(),
            database: other.database.clone(),
            path: target.to_path_buf(),
        });
    }
    let live_rel = format!("{COLLECTIONS_DIR}/{id}");
    let live = target.join(&live_rel);
    let present = current.collections.iter().any(|c| c.id == id) || exists(&live);
    if present && !force {
        return Err(SnapshotError::CollectionPresent {
            id,
            name: record.name,
            path: target.to_path_buf(),
        });
    }
    current.put_collection(record.clone(), &snap_catalog)?;

    // Staged inside `collections/`: the same file system as the live folder, so the swap is
    // a rename; the catalog never names a dot-folder.
    let staging_rel = format!("{COLLECTIONS_DIR}/{COLLECTION_STAGING_PREFIX}{id}");
    let staging = target.join(&staging_rel);
    stage(
        snapshot,
        &staging,
        files.iter().map(|e| (*e, &e.path[prefix.len()..])),
        transfer,
    )?;

    let kept = exists(&live).then(|| {
        unused_name(
            &target.join(COLLECTIONS_DIR),
            &format!("{KEPT_PREFIX}{id}-"),
        )
    });
    let kept = kept.map(|name| format!("{COLLECTIONS_DIR}/{name}"));
    let mut moves = Vec::new();
    if let Some(kept) = &kept {
        moves.push(Move {
            from: live_rel.clone(),
            to: kept.clone(),
        });
    }
    moves.push(Move {
        from: staging_rel,
        to: live_rel,
    });
    let journal = Journal {
        format_version: JOURNAL_VERSION,
        snapshot: info.name.clone(),
        collection: Some(id),
        moves,
        catalog: Some(current),
        remove: Vec::new(),
        kept_aside: kept,
    };
    let done = run(target, &journal)?;
    Ok(RestoredCollection {
        info,
        record,
        kept_aside: done.kept_aside,
    })
}

/// Finishes a restore into `target` that stopped during its swap (a crash, a full disk),
/// replaying its journal. `Ok(None)` when there was nothing to finish. Needs the folder's
/// lock, so the server must be stopped.
pub fn finish(target: &Path) -> Result<Option<FinishedRestore>, SnapshotError> {
    let _held = DirLock::acquire(target).map_err(|_| SnapshotError::TargetLocked(target.into()))?;
    let path = target.join(RESTORE_JOURNAL);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SnapshotError::io("read", &path, e)),
    };
    let journal: Journal = serde_json::from_slice(&bytes)
        .map_err(|e| SnapshotError::invalid(&path, format!("unreadable restore journal: {e}")))?;
    if journal.format_version != JOURNAL_VERSION {
        return Err(SnapshotError::invalid(
            &path,
            format!(
                "restore journal version {} (this vectord writes {JOURNAL_VERSION})",
                journal.format_version
            ),
        ));
    }
    apply(target, &journal).map(Some)
}

/// Fills `staging` (emptied first) with the snapshot's files, each `(entry, path in staging)`,
/// and fsyncs it; on failure removes it.
fn stage<'a>(
    snapshot: &Path,
    staging: &Path,
    files: impl Iterator<Item = (&'a SnapshotEntry, &'a str)>,
    transfer: Transfer,
) -> Result<(), SnapshotError> {
    remove_if_present(staging)?;
    let staged = (|| {
        for (entry, rel) in files {
            let from = safe_join(snapshot, &entry.path)?;
            let to = safe_join(staging, rel)?;
            match transfer {
                Transfer::Copy => copy_checked(&from, &to, entry)?,
                Transfer::Move => {
                    let dir = parent_of(&to);
                    fs::create_dir_all(&dir).map_err(|e| SnapshotError::io("create", &dir, e))?;
                    fs::rename(&from, &to).map_err(|e| SnapshotError::io("rename", &from, e))?;
                    // A download is written without fsync; the journal must not point at
                    // files a power cut could still lose.
                    sync_path(&to)?;
                }
            }
        }
        Ok(sync_tree(staging)?)
    })();
    if staged.is_err() {
        let _ = fs::remove_dir_all(staging);
    }
    staged
}

/// Writes the journal durably, then applies it.
fn run(target: &Path, journal: &Journal) -> Result<FinishedRestore, SnapshotError> {
    let bytes = serde_json::to_vec_pretty(journal)
        .map_err(|e| SnapshotError::invalid(target, format!("encoding the journal: {e}")))?;
    atomic_replace(&target.join(RESTORE_JOURNAL), &bytes)?;
    apply(target, journal)
}

/// Performs the journal's renames that are not done yet, writes its catalog, removes its
/// staging folders and then the journal. Safe to repeat after a crash at any point.
fn apply(target: &Path, journal: &Journal) -> Result<FinishedRestore, SnapshotError> {
    let paths = journal
        .moves
        .iter()
        .map(|m| Ok((safe_join(target, &m.from)?, safe_join(target, &m.to)?)))
        .collect::<Result<Vec<_>, SnapshotError>>()?;
    // A later rename may put something where an earlier one took something away (the new
    // catalog.json where the old one was), so "destination present" alone cannot tell what is
    // done. The renames run in order, so the last one whose source is gone and destination
    // present marks how far the swap got; every rename after it still has its source.
    let done = paths
        .iter()
        .rposition(|(from, to)| !exists(from) && exists(to))
        .map_or(0, |i| i + 1);
    for (m, (from, to)) in journal.moves.iter().zip(&paths).skip(done) {
        if !exists(from) || exists(to) {
            return Err(SnapshotError::invalid(
                target.join(RESTORE_JOURNAL),
                format!(
                    "cannot rename {} to {}: the folder was changed after the restore stopped",
                    m.from, m.to
                ),
            ));
        }
        crash_point!(
            "restore::rename",
            Err(SnapshotError::io(
                "rename",
                from,
                io::Error::other("failpoint restore::rename")
            ))
        );
        let (from_dir, to_dir) = (parent_of(from), parent_of(to));
        fs::create_dir_all(&to_dir).map_err(|e| SnapshotError::io("create", &to_dir, e))?;
        fs::rename(from, to).map_err(|e| SnapshotError::io("rename", from, e))?;
        sync_path(&from_dir)?;
        if to_dir != from_dir {
            sync_path(&to_dir)?;
        }
    }
    if let Some(file) = &journal.catalog {
        catalog::write_catalog_file(target, file)?;
    }
    for rel in &journal.remove {
        remove_if_present(&safe_join(target, rel)?)?;
    }
    sync_path(target)?;
    let path = target.join(RESTORE_JOURNAL);
    fs::remove_file(&path).map_err(|e| SnapshotError::io("remove", &path, e))?;
    sync_path(target)?;
    Ok(FinishedRestore {
        snapshot: journal.snapshot.clone(),
        collection: journal.collection,
        kept_aside: journal.kept_aside.as_ref().map(|k| target.join(k)),
    })
}

/// Fails when an earlier restore's journal is pending: restoring again on top of a half-swapped
/// folder would keep the wrong files aside.
fn refuse_interrupted(target: &Path) -> Result<(), SnapshotError> {
    if exists(&target.join(RESTORE_JOURNAL)) {
        return Err(SnapshotError::Interrupted(target.to_path_buf()));
    }
    Ok(())
}

/// Whether the data folder holds data a restore would replace: a catalog, or anything in
/// `collections/`.
fn holds_data(target: &Path) -> Result<bool, SnapshotError> {
    if exists(&target.join(CATALOG_FILE)) {
        return Ok(true);
    }
    let coll = target.join(COLLECTIONS_DIR);
    match fs::read_dir(&coll) {
        Ok(mut it) => Ok(it.next().is_some()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(SnapshotError::io("read", &coll, e)),
    }
}

/// The first path component of every snapshot file, checked to be a plain data entry: a
/// crafted snapshot must not swap the lock, the journal or a dot-folder.
fn top_level_names(snapshot: &Path, files: &[SnapshotEntry]) -> Result<Vec<String>, SnapshotError> {
    let mut names = std::collections::BTreeSet::new();
    for f in files {
        let first = f.path.split('/').next().unwrap_or_default();
        if first.is_empty() || first.starts_with('.') || first == "LOCK" || first == RESTORE_JOURNAL
        {
            return Err(SnapshotError::invalid(
                snapshot,
                format!("snapshot file {} is not part of a data folder", f.path),
            ));
        }
        names.insert(first.to_string());
    }
    Ok(names.into_iter().collect())
}

/// `<prefix><UTC time>` naming nothing in `dir` yet (a counter is added when two restores
/// land in the same second).
fn unused_name(dir: &Path, prefix: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let base = format!("{prefix}{}", utc_stamp(secs));
    let mut name = base.clone();
    let mut n = 1;
    while exists(&dir.join(&name)) {
        n += 1;
        name = format!("{base}-{n}");
    }
    name
}

/// Whether anything (file, folder, dangling link) is at `path`.
fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn remove_if_present(dir: &Path) -> Result<(), SnapshotError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SnapshotError::io("remove", dir, e)),
    }
}
