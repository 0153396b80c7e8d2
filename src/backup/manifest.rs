//! What a snapshot is: the `SNAPSHOT.json` description written last into every snapshot folder
//! (each file with its size and SHA-256), the folder names, and the rules every copy of a
//! snapshot shares, local or in a bucket: its paths never escape it, and retention counts each
//! scope (the whole folder, or one collection) apart.
//!
//! A snapshot of one collection has the same layout as a whole-folder one, with a catalog
//! holding only that collection; its `SNAPSHOT.json` names the collection and has format
//! version 2, so a vectord that predates them refuses it instead of restoring it as a whole
//! data folder.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::SnapshotError;
use crate::fsutil::atomic_replace;

/// The description file written last into every snapshot folder.
pub const SNAPSHOT_FILE: &str = "SNAPSHOT.json";
/// Layout version of a whole-folder snapshot's `SNAPSHOT.json`.
pub(super) const FORMAT_VERSION: u32 = 1;
/// Layout version of a one-collection snapshot's `SNAPSHOT.json` (older vectords refuse it).
pub(super) const COLLECTION_FORMAT_VERSION: u32 = 2;
/// Prefix of snapshot folders created by the server (followed by a sortable UTC timestamp).
pub const NAME_PREFIX: &str = "snapshot-";

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

/// Writes `info` as `dir/SNAPSHOT.json`, atomically.
pub(super) fn write_info(dir: &Path, info: &SnapshotInfo) -> Result<(), SnapshotError> {
    let bytes = serde_json::to_vec_pretty(info)
        .map_err(|e| SnapshotError::invalid(dir, format!("encoding {SNAPSHOT_FILE}: {e}")))?;
    Ok(atomic_replace(&dir.join(SNAPSHOT_FILE), &bytes)?)
}

/// Reads and checks `SNAPSHOT.json` alone (no file is hashed): what a snapshot claims to be.
/// Use [`verify`](super::local::verify) before trusting any of its files.
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

/// Size and SHA-256 (lowercase hex) of one file, as `SNAPSHOT.json` records them.
pub(super) fn hash_file(path: &Path) -> io::Result<(u64, String)> {
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
