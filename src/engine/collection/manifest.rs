//! The MANIFEST: a collection's small, atomically replaced description of itself (config,
//! dimension, published segments with their tombstone files, the WAL position they cover),
//! and the folder layout it names.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::segment;
use crate::engine::{CollectionConfig, EngineError};
use crate::fsutil::atomic_replace;
use crate::types::SourcePosition;

pub(super) const MANIFEST: &str = "MANIFEST";

pub(super) const WAL_DIR: &str = "wal";

pub(super) const SEGMENTS_DIR: &str = "segments";

pub(super) const MANIFEST_VERSION: u32 = 2;

/// One published segment, as the MANIFEST lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SegmentEntry {
    pub(super) id: u64,
    pub(super) rows: usize,
    /// Tombstone file inside the segment folder, when any row is dead.
    pub(super) tombstones: Option<String>,
}

/// The collection's small, atomically replaced description of itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Manifest {
    pub(super) format_version: u32,
    pub(super) config: CollectionConfig,
    #[serde(default)]
    pub(super) dimension: Option<usize>,
    #[serde(default)]
    pub(super) segments: Vec<SegmentEntry>,
    /// WAL records up to this sequence number are in the segments (and tombstones).
    #[serde(default)]
    pub(super) flushed_seq: u64,
    #[serde(default)]
    pub(super) next_first_seq: u64,
    #[serde(default = "one")]
    pub(super) next_segment_id: u64,
    /// Incremented by every MANIFEST write; names tombstone files so none is rewritten.
    #[serde(default)]
    pub(super) generation: u64,
    /// The change-feed position as of `flushed_seq` (newer ones are in the WAL).
    #[serde(default)]
    pub(super) source_position: Option<SourcePosition>,
}

pub(super) fn one() -> u64 {
    1
}

impl Manifest {
    pub(super) fn new(config: CollectionConfig) -> Manifest {
        Manifest {
            format_version: MANIFEST_VERSION,
            config,
            dimension: None,
            segments: Vec::new(),
            flushed_seq: 0,
            next_first_seq: 0,
            next_segment_id: 1,
            generation: 0,
            source_position: None,
        }
    }
}

/// Removes segment folders the MANIFEST does not name (a flush or compaction that crashed
/// before publishing), so they never shadow published data.
pub(super) fn remove_unpublished(
    segments_dir: &Path,
    manifest: &Manifest,
) -> Result<(), EngineError> {
    let published: HashSet<String> = manifest
        .segments
        .iter()
        .map(|s| segment::dir_name(s.id))
        .collect();
    for entry in
        fs::read_dir(segments_dir).map_err(|e| EngineError::io("list segments", segments_dir, e))?
    {
        let entry = entry.map_err(|e| EngineError::io("list segments", segments_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !published.contains(&name) {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing an unpublished segment left by an interrupted flush");
            fs::remove_dir_all(&path)
                .map_err(|e| EngineError::io("remove unpublished segment", &path, e))?;
        }
    }
    Ok(())
}

pub(super) fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), EngineError> {
    let bytes = serde_json::to_vec_pretty(manifest)
        .map_err(|e| EngineError::Internal(format!("encoding MANIFEST: {e}")))?;
    Ok(atomic_replace(&dir.join(MANIFEST), &bytes)?)
}
