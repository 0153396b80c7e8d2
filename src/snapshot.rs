//! Data-folder snapshots: online, consistent copies of the catalog and every collection taken
//! while the server serves, checked by SHA-256, and restored only after every checksum passes.
//!
//! A snapshot folder is laid out like a data folder (`catalog.json`, `collections/<uuid>/…`)
//! plus `SNAPSHOT.json`, written last: the list of files with sizes and SHA-256 digests. A
//! folder without `SNAPSHOT.json`, or whose files disagree with it, is not a snapshot and is
//! never restored. Segment files are hard-linked when the snapshot lives on the data volume, so
//! a snapshot costs little space until compaction replaces the segments it shares.
//!
//! A snapshot of one collection has the same layout with a catalog holding only that
//! collection (and its tenant and database); its `SNAPSHOT.json` names the collection and
//! has format version 2, so a vectord that predates them refuses it instead of restoring it
//! as a whole data folder. Restoring (whole folder or one collection) is `crate::restore`.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::catalog::{Catalog, CatalogError, CATALOG_FILE};
use crate::engine::EngineError;
use crate::fsutil::atomic_replace;
use crate::s3::{S3Error, S3Target};

/// The description file written last into every snapshot folder.
pub const SNAPSHOT_FILE: &str = "SNAPSHOT.json";
/// Layout version of a whole-folder snapshot's `SNAPSHOT.json`.
const FORMAT_VERSION: u32 = 1;
/// Layout version of a one-collection snapshot's `SNAPSHOT.json` (older vectords refuse it).
const COLLECTION_FORMAT_VERSION: u32 = 2;
/// Prefix of snapshot folders created by the server (followed by a sortable UTC timestamp).
pub const NAME_PREFIX: &str = "snapshot-";

/// Snapshot and restore failures.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Taking the catalog or a collection's snapshot failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Finishing a collection's snapshot failed.
    #[error("collection {id}: {source}")]
    Collection {
        /// The collection.
        id: Uuid,
        /// What failed.
        #[source]
        source: EngineError,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The folder is not a complete snapshot, or a file does not match its recorded checksum.
    #[error("snapshot {path} is invalid: {reason}")]
    Invalid {
        /// The snapshot folder or the offending file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The restore target holds data and `force` was not given.
    #[error("{0} is not empty; restore replaces a data folder only with --force")]
    TargetNotEmpty(PathBuf),
    /// The restore target is in use by a running server.
    #[error("{0} is locked by a running vectord; stop it before restoring")]
    TargetLocked(PathBuf),
    /// An earlier restore into the target stopped half way through its swap.
    #[error(
        "{0} holds an interrupted restore; finish it first with `vectord restore --finish --path {0}`"
    )]
    Interrupted(PathBuf),
    /// A one-collection snapshot given to the whole-folder restore, which would drop every
    /// other collection.
    #[error(
        "snapshot {path} holds only collection {collection}; restore it with \
         `vectord restore --collection`, which keeps the folder's other collections"
    )]
    OneCollection {
        /// The snapshot folder.
        path: PathBuf,
        /// Its collection.
        collection: Uuid,
    },
    /// The snapshot has no collection matching the selector.
    #[error("snapshot {path} has no collection {collection}")]
    NoSuchCollection {
        /// The snapshot folder.
        path: PathBuf,
        /// The selector, as text.
        collection: String,
    },
    /// A whole-folder snapshot of several collections and no collection chosen.
    #[error("snapshot {0} holds several collections; choose one with --collection")]
    NeedsCollection(PathBuf),
    /// The collection exists in the target and `force` was not given.
    #[error("collection {name} ({id}) exists in {path}; restore replaces it only with --force")]
    CollectionPresent {
        /// Collection id.
        id: Uuid,
        /// Collection name.
        name: String,
        /// The data folder.
        path: PathBuf,
    },
    /// Another collection of the target has the restored collection's name in its database.
    #[error(
        "{path} already has a different collection {name} ({id}) in {tenant}/{database}; \
         delete or rename it before restoring"
    )]
    NameTaken {
        /// The other collection's id.
        id: Uuid,
        /// The shared name.
        name: String,
        /// Tenant.
        tenant: String,
        /// Database.
        database: String,
        /// The data folder.
        path: PathBuf,
    },
}

impl SnapshotError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: io::Error,
    ) -> SnapshotError {
        SnapshotError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> SnapshotError {
        SnapshotError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// One file of a snapshot, relative to the snapshot folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// Path relative to the snapshot folder, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// The content of `SNAPSHOT.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Layout version.
    pub format_version: u32,
    /// The snapshot folder's name.
    pub name: String,
    /// When the consistent point was taken, seconds since the Unix epoch.
    pub created_at: u64,
    /// vectord version that wrote it.
    pub vectord_version: String,
    /// Collections included.
    pub collections: usize,
    /// Collections left out because they had failed to open.
    pub skipped_collections: Vec<Uuid>,
    /// The one collection a collection snapshot holds; absent for a whole-folder snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<Uuid>,
    /// Sum of file sizes.
    pub total_bytes: u64,
    /// Every file with its checksum.
    pub files: Vec<SnapshotEntry>,
}

/// The server's snapshot service: where snapshots go, how many to keep, one at a time.
#[derive(Debug)]
pub struct Snapshots {
    root: PathBuf,
    keep: usize,
    running: parking_lot::Mutex<()>,
    /// One upload (and the bucket prune after it) at a time: a prune run while another
    /// upload is in flight would take that upload's manifest-less folder for an abandoned one
    /// and delete files it has already sent.
    uploading: tokio::sync::Mutex<()>,
    remote: Option<Arc<S3Target>>,
}

/// What happened to the bucket copy of one snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteCopy {
    /// `s3://bucket/prefix`.
    pub url: String,
    /// Whether every file and the manifest were uploaded.
    pub uploaded: bool,
    /// Bytes sent.
    pub bytes: u64,
    /// Remote snapshots deleted by retention after the upload.
    pub pruned: Vec<String>,
    /// Why the upload or pruning failed (the local snapshot stands regardless).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the HTTP API and logs report about one snapshot (without the file list).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotSummary {
    /// Folder name under the snapshot root.
    pub name: String,
    /// Consistent point, seconds since the Unix epoch.
    pub created_at: u64,
    /// Collections included.
    pub collections: usize,
    /// Collections left out (failed to open).
    pub skipped_collections: Vec<Uuid>,
    /// The one collection of a collection snapshot; absent for a whole-folder snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<Uuid>,
    /// Files and their total size.
    pub files: usize,
    /// Sum of file sizes (hard-linked files count in full).
    pub total_bytes: u64,
    /// The bucket copy, when a bucket is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<RemoteCopy>,
}

impl From<&SnapshotInfo> for SnapshotSummary {
    fn from(i: &SnapshotInfo) -> Self {
        SnapshotSummary {
            name: i.name.clone(),
            created_at: i.created_at,
            collections: i.collections,
            skipped_collections: i.skipped_collections.clone(),
            collection: i.collection,
            files: i.files.len(),
            total_bytes: i.total_bytes,
            s3: None,
        }
    }
}

impl Snapshots {
    /// Snapshots under `root`, keeping the newest `keep` (at least one).
    pub fn new(root: PathBuf, keep: usize) -> Snapshots {
        Snapshots {
            root,
            keep: keep.max(1),
            running: parking_lot::Mutex::new(()),
            uploading: tokio::sync::Mutex::new(()),
            remote: None,
        }
    }

    /// Also copies every snapshot to `remote` (see [`Snapshots::upload`]).
    pub fn with_remote(mut self, remote: S3Target) -> Snapshots {
        self.remote = Some(Arc::new(remote));
        self
    }

    /// The bucket receiving copies, if any.
    pub fn remote(&self) -> Option<&S3Target> {
        self.remote.as_deref()
    }

    /// Uploads the local snapshot `info` to the bucket and prunes the bucket to the same
    /// retention. `None` without a bucket. Failures are reported in the result, logged, and
    /// never touch the local snapshot.
    pub async fn upload(&self, info: &SnapshotInfo) -> Option<RemoteCopy> {
        let remote = self.remote.as_ref()?;
        let _one = self.uploading.lock().await;
        let started = std::time::Instant::now();
        let dir = self.root.join(&info.name);
        let mut copy = RemoteCopy {
            url: remote.url(),
            uploaded: false,
            bytes: 0,
            pruned: Vec::new(),
            error: None,
        };
        let result = async {
            copy.bytes = remote.upload(&dir, info).await?;
            copy.uploaded = true;
            copy.pruned = remote.prune(self.keep).await?;
            Ok::<(), S3Error>(())
        }
        .await;
        match result {
            Ok(()) => tracing::info!(
                snapshot = %info.name,
                url = %copy.url,
                bytes = copy.bytes,
                pruned = copy.pruned.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "snapshot uploaded"
            ),
            Err(e) => {
                tracing::error!(snapshot = %info.name, url = %copy.url, uploaded = copy.uploaded, error = %e, "snapshot upload failed");
                copy.error = Some(e.to_string());
            }
        }
        Some(copy)
    }

    /// The folder holding the snapshots.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes a snapshot of the whole folder now (waiting for one in progress), then prunes
    /// old ones.
    pub fn take(&self, catalog: &Catalog) -> Result<SnapshotInfo, SnapshotError> {
        self.take_scoped(catalog, None)
    }

    /// Takes a snapshot of the collection `only` (the whole folder when `None`), then prunes
    /// old snapshots of the same scope (see [`prune`]).
    pub fn take_scoped(
        &self,
        catalog: &Catalog,
        only: Option<Uuid>,
    ) -> Result<SnapshotInfo, SnapshotError> {
        let _one = self.running.lock();
        let name = new_name_for(&self.root, only);
        let started = std::time::Instant::now();
        let info = create_scoped(catalog, &self.root, &name, only)?;
        let pruned = prune(&self.root, self.keep)?;
        tracing::info!(
            snapshot = %info.name,
            collection = ?info.collection,
            collections = info.collections,
            files = info.files.len(),
            bytes = info.total_bytes,
            pruned = pruned.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot taken"
        );
        Ok(info)
    }

    /// The complete snapshots, oldest first.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        list(&self.root)
    }
}

/// How long from `now` (Unix seconds) until the next scheduled snapshot: `every` after the
/// newest existing one, or right away when there is none or it is already `every` old. Counting
/// from the last snapshot rather than from startup keeps frequent deploys from postponing the
/// schedule forever. A newest snapshot in the future (clock stepped back) waits at most `every`.
pub fn next_snapshot_delay(newest: Option<u64>, now: u64, every: Duration) -> Duration {
    match newest {
        None => Duration::ZERO,
        Some(t) => {
            let due = t.saturating_add(every.as_secs());
            Duration::from_secs(due.saturating_sub(now)).min(every)
        }
    }
}

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
    atomic_replace(&catalog_path, &catalog_bytes)
        .map_err(|e| SnapshotError::io(e.op, e.path, e.source))?;
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
    fsync(root)?;
    Ok(info)
}

fn write_info(dir: &Path, info: &SnapshotInfo) -> Result<(), SnapshotError> {
    let bytes = serde_json::to_vec_pretty(info)
        .map_err(|e| SnapshotError::invalid(dir, format!("encoding {SNAPSHOT_FILE}: {e}")))?;
    atomic_replace(&dir.join(SNAPSHOT_FILE), &bytes)
        .map_err(|e| SnapshotError::io(e.op, e.path, e.source))
}

/// Reads and checks `SNAPSHOT.json` alone (no file is hashed): what a snapshot claims to be.
/// Use [`verify`] before trusting any of its files.
pub fn read_info(dir: &Path) -> Result<SnapshotInfo, SnapshotError> {
    let info_path = dir.join(SNAPSHOT_FILE);
    let bytes = fs::read(&info_path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => SnapshotError::invalid(
            dir,
            format!("{SNAPSHOT_FILE} is missing (an incomplete or foreign folder)"),
        ),
        _ => SnapshotError::io("read", &info_path, e),
    })?;
    let info: SnapshotInfo = serde_json::from_slice(&bytes)
        .map_err(|e| SnapshotError::invalid(&info_path, format!("unreadable: {e}")))?;
    let expected = if info.collection.is_some() {
        COLLECTION_FORMAT_VERSION
    } else {
        FORMAT_VERSION
    };
    if info.format_version != expected {
        return Err(SnapshotError::invalid(
            &info_path,
            format!(
                "format version {} (this vectord reads {FORMAT_VERSION} for a data folder, \
                 {COLLECTION_FORMAT_VERSION} for one collection)",
                info.format_version
            ),
        ));
    }
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
    fsync(to)
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

/// Names of the snapshots beyond the newest `keep` (at least one) of their scope — the whole
/// folder, or one collection — in `sorted` (oldest first). Counted per scope so that
/// collection snapshots taken by hand never push whole-folder backups out of retention.
pub fn excess(sorted: &[SnapshotInfo], keep: usize) -> Vec<String> {
    let mut left: std::collections::HashMap<Option<Uuid>, usize> = Default::default();
    for info in sorted {
        *left.entry(info.collection).or_default() += 1;
    }
    let mut out = Vec::new();
    for info in sorted {
        let n = left.entry(info.collection).or_default();
        if *n > keep.max(1) {
            *n -= 1;
            out.push(info.name.clone());
        }
    }
    out
}

/// Joins a relative `/`-separated path from `SNAPSHOT.json` onto `dir`, refusing anything that
/// could escape it (a crafted snapshot must not make restore read or write elsewhere).
pub fn safe_join(dir: &Path, rel: &str) -> Result<PathBuf, SnapshotError> {
    let mut out = dir.to_path_buf();
    for part in rel.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains('\\') {
            return Err(SnapshotError::invalid(
                dir,
                format!("unsafe path {rel:?} in {SNAPSHOT_FILE}"),
            ));
        }
        out.push(part);
    }
    Ok(out)
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

fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    let digest = hasher.finalize();
    let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok((total, hex))
}

/// Fsyncs every folder under `dir` (files were fsynced as they were written).
pub(crate) fn sync_tree(dir: &Path) -> Result<(), SnapshotError> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).map_err(|e| SnapshotError::io("list", &d, e))?;
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(entry.path());
            }
        }
        fsync(&d)?;
    }
    Ok(())
}

/// Fsyncs one file or folder.
pub(crate) fn fsync(path: &Path) -> Result<(), SnapshotError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| SnapshotError::io("fsync", path, e))
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time (civil-from-days, proleptic Gregorian, UTC).
pub(crate) fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}{mo:02}{d:02}T{h:02}{m:02}{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamp_matches_known_dates() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_795_651_199), "20261125T235959Z");
    }

    #[test]
    fn next_snapshot_counts_from_the_newest_snapshot() {
        let day = Duration::from_secs(86_400);
        let now = 1_795_651_199;
        // No snapshot yet, or the newest is a day old or more: take one now.
        assert_eq!(next_snapshot_delay(None, now, day), Duration::ZERO);
        assert_eq!(
            next_snapshot_delay(Some(now - 86_400), now, day),
            Duration::ZERO
        );
        assert_eq!(
            next_snapshot_delay(Some(now - 90_000), now, day),
            Duration::ZERO
        );
        // Taken an hour ago (before a restart): due in 23 h, not a full day after startup.
        assert_eq!(
            next_snapshot_delay(Some(now - 3600), now, day),
            Duration::from_secs(82_800)
        );
        // A clock that went backwards never pushes the schedule past one interval.
        assert_eq!(next_snapshot_delay(Some(now + 7200), now, day), day);
    }

    #[test]
    fn safe_join_refuses_escapes() {
        let d = Path::new("/tmp/x");
        assert!(safe_join(d, "../etc/passwd").is_err());
        assert!(safe_join(d, "a//b").is_err());
        assert!(safe_join(d, "/abs").is_err());
        assert_eq!(
            safe_join(d, "collections/a/MANIFEST").unwrap(),
            Path::new("/tmp/x/collections/a/MANIFEST")
        );
    }
}
