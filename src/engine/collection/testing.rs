//! Fixtures shared by the collection's unit tests.

use std::time::{Duration, Instant};

use super::turn::IDLE_FLUSH_MIN_ROWS;
use super::Collection;
use crate::engine::CollectionConfig;
use crate::types::{
    GetRequest, GetResult, Include, Metadata, MetadataValue, Record, Space, WriteBatch,
};

pub(super) fn open(space: Space) -> (tempfile::TempDir, Collection) {
    let dir = tempfile::tempdir().unwrap();
    let c = Collection::create(
        &dir.path().join("c"),
        CollectionConfig {
            space,
            ..Default::default()
        },
    )
    .unwrap();
    (dir, c)
}

pub(super) fn rec(
    id: &str,
    v: &[f32],
    meta: &[(&str, MetadataValue)],
    doc: Option<&str>,
) -> Record {
    let m: Metadata = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Record {
        id: id.into(),
        embedding: v.to_vec(),
        metadata: (!m.is_empty()).then_some(m),
        document: doc.map(Into::into),
        uri: None,
    }
}

pub(super) fn all(c: &Collection) -> GetResult {
    c.get(&GetRequest {
        include: Include::ALL,
        ..Default::default()
    })
    .unwrap()
}

/// Adds whole batches of 100 rows, at least `IDLE_FLUSH_MIN_ROWS` in all; returns the count.
pub(super) fn add_idle_flush_rows(c: &Collection) -> usize {
    let rows = (IDLE_FLUSH_MIN_ROWS / 100 + 2) * 100;
    for from in (0..rows).step_by(100) {
        c.apply(
            WriteBatch::Add(
                (from..from + 100)
                    .map(|i| rec(&format!("r{i}"), &[i as f32, 1.0, 2.0], &[], None))
                    .collect(),
            ),
            None,
        )
        .unwrap();
    }
    rows
}

/// Polls until a segment appears, but asserts no timing: the bound only keeps a broken
/// wake-up from hanging the run.
pub(super) fn wait_for_a_segment(c: &Collection) {
    let give_up = Instant::now() + Duration::from_secs(300);
    while c.segment_count() == 0 && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(50));
    }
}
