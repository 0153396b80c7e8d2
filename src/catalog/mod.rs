//! The catalog: tenants, databases and collections (id, name, metadata, the client's
//! configuration), persisted as one JSON file replaced atomically, plus the open engine handle of
//! every collection.
//!
//! Architecture invariants:
//! - Names are never turned into paths: a collection's data lives in `<data>/collections/<uuid>/`.
//! - The catalog does not hold what the engine owns (space, HNSW parameters, dimension, records).
//! - Every method is blocking (it may fsync); async callers use `spawn_blocking`.
//! - Readers never wait for a write's fsync: writers are serialised by `writer`, build the next
//!   state from a copy, persist it, and only then swap it in under a short write lock.
//!
//! Layout: this file holds the [`Catalog`] handle, its opening and its one write path
//! (`mutate`); `state` the in-memory registry; `store` the catalog file; `names` the naming
//! rules; `tenants` tenants and databases; `collections` collection lookups and lifecycle;
//! `tuning` what the server's flags set; `maintenance` shutdown flush, snapshots and scrubs;
//! `layout` the collection folders and the sweeping of leftovers; `error` the error enum.

mod collections;
mod error;
mod layout;
mod maintenance;
mod names;
mod state;
mod store;
mod tenants;
mod tuning;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use crate::engine::{Collection, DirLock, MemtableBudget, DEFAULT_MEMTABLE_BUDGET_BYTES};

pub use collections::{CollectionEntry, CollectionSelector, CollectionUpdate, NewCollection};
pub use error::CatalogError;
pub use layout::{
    COLLECTIONS_DIR, COLLECTION_STAGING_PREFIX, RESTORE_DOWNLOAD_PREFIX, RESTORE_JOURNAL,
    RESTORE_STAGING,
};
pub use maintenance::{CatalogSnapshot, SHUTDOWN_FLUSH_MAX_UNINDEXED};
pub use names::{check_safe_name, validate_database_segment, validate_name, validate_tenant_name};
pub use store::{
    read_catalog_file, write_catalog_file, CatalogFile, CollectionRecord, DatabaseRecord,
    TenantRecord, CATALOG_FILE,
};

use layout::{sweep_restore_leftovers, sweep_trash};
use state::State;
use tuning::Tuning;

/// The tenant every server has.
pub const DEFAULT_TENANT: &str = "default_tenant";
/// The database every server has (in the default tenant).
pub const DEFAULT_DATABASE: &str = "default_database";
/// The default database's fixed id (Chroma's).
pub const DEFAULT_DATABASE_ID: Uuid = Uuid::nil();

/// The catalog of one data folder. Holds the folder's lock for its whole life.
pub struct Catalog {
    dir: PathBuf,
    state: RwLock<Arc<State>>,
    /// Serialises writers so each builds on the previous persisted state; readers never take it.
    writer: Mutex<()>,
    /// Most collections a create may bring the catalog to (checked under `writer`, so
    /// concurrent creates cannot pass it together).
    max_collections: std::sync::atomic::AtomicUsize,
    /// The memory budget every collection's memtables count against (`--memtable-budget-mb`).
    budget: Arc<MemtableBudget>,
    /// What every collection, open or created later, runs with (`--memtable-rows`,
    /// `--write-stall-secs`).
    tuning: Mutex<Tuning>,
    _lock: DirLock,
}

impl Catalog {
    /// Locks the data folder, loads (or creates) the catalog and opens every collection. A
    /// collection that fails to open is kept as unavailable; the others serve normally.
    pub fn open(dir: &Path) -> Result<Catalog, CatalogError> {
        fs::create_dir_all(dir).map_err(|e| CatalogError::io("create data folder", dir, e))?;
        let lock = DirLock::acquire(dir).map_err(|e| CatalogError::Lock(e.into()))?;
        if dir.join(RESTORE_JOURNAL).exists() {
            return Err(CatalogError::InterruptedRestore(dir.to_path_buf()));
        }
        sweep_restore_leftovers(dir);
        let coll_dir = dir.join(COLLECTIONS_DIR);
        fs::create_dir_all(&coll_dir)
            .map_err(|e| CatalogError::io("create collections folder", &coll_dir, e))?;
        let file = store::load(dir)?;
        let fresh = file.is_none();
        let file = file.unwrap_or_default();
        let mut state = State::default();
        for t in file.tenants {
            state.tenants.insert(t.name.clone(), t);
        }
        for d in file.databases {
            state
                .databases
                .insert((d.tenant.clone(), d.name.clone()), d);
        }
        let had_defaults = state.tenants.contains_key(DEFAULT_TENANT)
            && state
                .databases
                .contains_key(&(DEFAULT_TENANT.to_string(), DEFAULT_DATABASE.to_string()));
        state = state.with_defaults();
        let budget = MemtableBudget::new(DEFAULT_MEMTABLE_BUDGET_BYTES);
        for record in file.collections {
            let path = coll_dir.join(record.id.to_string());
            let engine = match Collection::open_with_budget(&path, &budget) {
                Ok(c) => {
                    // Segments a crash loop or a stop before a merge left behind are merged
                    // now, not after the next flush.
                    c.request_compaction_check();
                    Ok(Arc::new(c))
                }
                Err(e) => {
                    tracing::error!(collection = %record.id, name = %record.name, error = %e, "collection failed to open");
                    Err(Arc::from(e.to_string()))
                }
            };
            state.insert_collection(CollectionEntry { record, engine });
        }
        sweep_trash(&coll_dir);
        let catalog = Catalog {
            dir: dir.to_path_buf(),
            state: RwLock::new(Arc::new(state)),
            writer: Mutex::new(()),
            max_collections: std::sync::atomic::AtomicUsize::new(usize::MAX),
            budget,
            tuning: Mutex::new(Tuning::default()),
            _lock: lock,
        };
        if fresh || !had_defaults {
            let st = catalog.snapshot();
            store::save(&catalog.dir, &st.to_file())?;
        }
        Ok(catalog)
    }

    /// The data folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current state (readers never wait for a writer's fsync).
    fn snapshot(&self) -> Arc<State> {
        self.state.read().clone()
    }

    /// Applies `f` to a copy of the state, persists the result and publishes it.
    fn mutate<R>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R, CatalogError>,
    ) -> Result<R, CatalogError> {
        let _w = self.writer.lock();
        let mut next = (*self.snapshot()).clone();
        let r = f(&mut next)?;
        store::save(&self.dir, &next.to_file())?;
        *self.state.write() = Arc::new(next);
        Ok(r)
    }
}

#[cfg(test)]
mod test_support {
    use super::*;
    use crate::engine::CollectionConfig;

    /// A collection named `name` in the default database, with a legacy embedding function.
    pub(in crate::catalog) fn new(name: &str) -> NewCollection {
        NewCollection {
            tenant: DEFAULT_TENANT.into(),
            database: DEFAULT_DATABASE.into(),
            name: name.into(),
            metadata: None,
            configuration: Some(serde_json::json!({"embedding_function": {"type": "legacy"}})),
            schema: None,
            config: CollectionConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::new;
    use super::*;

    #[test]
    fn survives_reopen_and_keeps_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let id = {
            let c = Catalog::open(tmp.path()).unwrap();
            assert_eq!(
                c.get_database(DEFAULT_TENANT, DEFAULT_DATABASE).unwrap().id,
                DEFAULT_DATABASE_ID
            );
            c.create_database(DEFAULT_TENANT, "other_db").unwrap();
            let (e, created) = c.create_collection(new("coll"), false).unwrap();
            assert!(created);
            assert!(matches!(
                c.create_collection(new("coll"), false),
                Err(CatalogError::CollectionExists(_))
            ));
            let (again, created) = c.create_collection(new("coll"), true).unwrap();
            assert!(!created);
            assert_eq!(again.record.id, e.record.id);
            e.record.id
        };
        let c = Catalog::open(tmp.path()).unwrap();
        let e = c
            .collection_by_name(DEFAULT_TENANT, DEFAULT_DATABASE, "coll")
            .unwrap();
        assert_eq!(e.record.id, id);
        assert_eq!(
            e.record.configuration,
            Some(serde_json::json!({"embedding_function": {"type": "legacy"}}))
        );
        assert!(e.engine().is_ok());
        assert_eq!(c.list_databases(DEFAULT_TENANT, None, 0).len(), 2);
        assert!(tmp
            .path()
            .join(COLLECTIONS_DIR)
            .join(id.to_string())
            .is_dir());
    }

    #[test]
    fn corrupt_catalog_refuses_to_open() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(CATALOG_FILE), b"{not json").unwrap();
        assert!(matches!(
            Catalog::open(tmp.path()),
            Err(CatalogError::Corrupt { .. })
        ));
    }
}
