//! Whole-catalog operations: the flush at shutdown, online snapshots, health and scrubbing.

use std::path::Path;

use uuid::Uuid;

use super::{store, Catalog, CatalogError, CatalogFile, COLLECTIONS_DIR};
use crate::engine::PendingSnapshot;

/// Most memtable rows still to be indexed for which a shutdown flush builds their graph (a few
/// seconds at 1536-d on two cores); beyond this the memtable stays in the WAL.
pub const SHUTDOWN_FLUSH_MAX_UNINDEXED: usize = 4096;

/// A catalog snapshot in progress: the catalog file to write and the collections whose WAL
/// tails still need copying.
#[derive(Debug)]
pub struct CatalogSnapshot {
    /// The catalog as of the snapshot (without skipped collections).
    pub file: CatalogFile,
    /// Each included collection's unfinished snapshot.
    pub pending: Vec<(Uuid, PendingSnapshot)>,
    /// Collections left out because they failed to open.
    pub skipped: Vec<Uuid>,
}

impl Catalog {
    /// Flushes every open collection's memtable whose graph is (nearly) built, so the next
    /// start maps segments instead of replaying the WAL. A memtable with more than
    /// `SHUTDOWN_FLUSH_MAX_UNINDEXED` rows left to index stays in the WAL instead: finishing its
    /// graph could take minutes, longer than a platform waits after SIGTERM (Fly: 30 s), and the
    /// rows replay and index in the background at the next start. Returns how many collections
    /// failed to flush; their data is safe in the WAL either way.
    pub fn flush_all(&self) -> usize {
        let snapshot = self.snapshot();
        let mut failed = 0;
        // First stop every background flush that is building a large graph: the flushes
        // below would wait for them.
        for entry in snapshot.collections.values() {
            if let Ok(engine) = entry.engine() {
                engine.begin_shutdown();
            }
        }
        for entry in snapshot.collections.values() {
            if let Ok(engine) = entry.engine() {
                let unindexed = engine.stats().unindexed_rows;
                if unindexed > SHUTDOWN_FLUSH_MAX_UNINDEXED {
                    tracing::info!(collection = %entry.record.id, unindexed, "memtable left in the WAL at shutdown (graph not built yet)");
                    continue;
                }
                if let Err(e) = engine.flush() {
                    failed += 1;
                    tracing::warn!(collection = %entry.record.id, error = %e, "flush at shutdown failed; the WAL keeps the data");
                }
            }
        }
        failed
    }

    /// Starts an online snapshot of the catalog and every open collection into `out` (laid out
    /// like a data folder). Catalog changes wait while collection files are linked; the WAL
    /// tails are copied afterwards by the returned [`PendingSnapshot`]s. Collections that
    /// failed to open are left out and returned by id (their files may be damaged).
    pub fn snapshot_into(&self, out: &Path) -> Result<CatalogSnapshot, CatalogError> {
        let _w = self.writer.lock();
        let state = self.snapshot();
        let mut file = state.to_file();
        let mut pending = Vec::new();
        let mut skipped = Vec::new();
        for entry in state.collections.values() {
            let id = entry.record.id;
            match entry.engine() {
                Ok(engine) => {
                    let dest = out.join(COLLECTIONS_DIR).join(id.to_string());
                    let p = engine
                        .snapshot_into(&dest)
                        .map_err(|e| entry.engine_error(e))?;
                    pending.push((id, p));
                }
                Err(_) => skipped.push(id),
            }
        }
        file.collections.retain(|c| !skipped.contains(&c.id));
        Ok(CatalogSnapshot {
            file,
            pending,
            skipped,
        })
    }

    /// Starts an online snapshot of one collection into `out`, laid out like a data folder
    /// whose catalog holds only that collection (with its tenant and database). As
    /// [`Catalog::snapshot_into`], but a collection that failed to open is an error.
    pub fn snapshot_collection_into(
        &self,
        id: Uuid,
        out: &Path,
    ) -> Result<CatalogSnapshot, CatalogError> {
        // Held while the files are linked, so the collection cannot be deleted or renamed
        // between the catalog record taken here and its files.
        let _w = self.writer.lock();
        let state = self.snapshot();
        let entry = state
            .collections
            .get(&id)
            .ok_or(CatalogError::CollectionIdNotFound(id))?;
        let engine = entry.engine()?;
        let dest = out.join(COLLECTIONS_DIR).join(id.to_string());
        let pending = engine
            .snapshot_into(&dest)
            .map_err(|e| entry.engine_error(e))?;
        let r = &entry.record;
        let file = CatalogFile {
            format_version: store::FORMAT_VERSION,
            tenants: state.tenants.get(&r.tenant).cloned().into_iter().collect(),
            databases: state
                .databases
                .get(&(r.tenant.clone(), r.database.clone()))
                .cloned()
                .into_iter()
                .collect(),
            collections: vec![r.clone()],
        };
        Ok(CatalogSnapshot {
            file,
            pending: vec![(id, pending)],
            skipped: Vec::new(),
        })
    }

    /// The collections that failed to open, or whose files a read or scrub found damaged since,
    /// with their errors (for readiness and metrics).
    pub fn failed_collections(&self) -> Vec<(Uuid, String, String)> {
        self.snapshot()
            .collections
            .values()
            .filter_map(|e| {
                let why = match &e.engine {
                    Err(r) => Some(r.to_string()),
                    Ok(c) => c.damage(),
                };
                why.map(|r| (e.record.id, e.record.name.clone(), r))
            })
            .collect()
    }

    /// Verifies every block of every segment of every open collection, one collection at a
    /// time (a scrub: finds damage in data no read has touched). Damage found is remembered by
    /// the collection, so [`Catalog::failed_collections`] lists it. Returns the collections
    /// found damaged and the segment bytes verified.
    pub fn scrub(&self) -> (usize, u64) {
        let (mut damaged, mut bytes) = (0, 0u64);
        for entry in self.all_collections() {
            let Ok(c) = entry.engine() else { continue };
            match c.verify() {
                Ok(()) => bytes += c.stats().mapped_bytes as u64,
                Err(e) => {
                    damaged += 1;
                    tracing::error!(collection = %entry.record.id, name = %entry.record.name, error = %e, "scrub found damage");
                }
            }
            // Low priority: give the request threads the CPU between collections.
            std::thread::yield_now();
        }
        (damaged, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    use crate::catalog::test_support::new;
    use crate::catalog::{DEFAULT_DATABASE, DEFAULT_TENANT};

    #[test]
    fn failed_collection_is_reported_and_others_serve() {
        let tmp = tempfile::tempdir().unwrap();
        let (bad, good) = {
            let c = Catalog::open(tmp.path()).unwrap();
            let (bad, _) = c.create_collection(new("bad"), false).unwrap();
            let (good, _) = c.create_collection(new("good"), false).unwrap();
            (bad.record.id, good.record.id)
        };
        fs::remove_dir_all(tmp.path().join(COLLECTIONS_DIR).join(bad.to_string())).unwrap();
        let c = Catalog::open(tmp.path()).unwrap();
        let err = c
            .collection_by_id(DEFAULT_TENANT, DEFAULT_DATABASE, bad)
            .unwrap()
            .engine()
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, CatalogError::CollectionUnavailable { .. }));
        assert!(c
            .collection_by_id(DEFAULT_TENANT, DEFAULT_DATABASE, good)
            .unwrap()
            .engine()
            .is_ok());
        assert_eq!(c.failed_collections().len(), 1);
    }
}
