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

mod names;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::engine::{
    Collection, CollectionConfig, DirLock, EngineError, MemtableBudget, PendingSnapshot,
    DEFAULT_MEMTABLE_BUDGET_BYTES, DEFAULT_MEMTABLE_ROWS, DEFAULT_WRITE_STALL,
};

pub use names::{check_safe_name, validate_database_segment, validate_name, validate_tenant_name};
pub use store::{CatalogFile, CollectionRecord, DatabaseRecord, TenantRecord, CATALOG_FILE};

/// The tenant every server has.
pub const DEFAULT_TENANT: &str = "default_tenant";
/// The database every server has (in the default tenant).
pub const DEFAULT_DATABASE: &str = "default_database";
/// The default database's fixed id (Chroma's).
pub const DEFAULT_DATABASE_ID: Uuid = Uuid::nil();
/// Folder (inside the data folder) holding one folder per collection, named by its UUID.
pub const COLLECTIONS_DIR: &str = "collections";
/// Most memtable rows still to be indexed for which a shutdown flush builds their graph (a few
/// seconds at 1536-d on two cores); beyond this the memtable stays in the WAL.
pub const SHUTDOWN_FLUSH_MAX_UNINDEXED: usize = 4096;
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

/// Catalog failures. `api` maps each variant to a status in one place.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A collection or database name breaks Chroma's naming rule.
    #[error(
        "Validation error: name: Expected a name containing 3-512 characters from [a-zA-Z0-9._-], \
         starting and ending with a character in [a-zA-Z0-9]. Got: {0}"
    )]
    InvalidName(String),
    /// Any other invalid argument, with Chroma's message.
    #[error("{0}")]
    InvalidArgument(String),
    /// Creating a tenant that exists.
    #[error("Tenant [{0}] already exists")]
    TenantExists(String),
    /// Reading a tenant that does not exist.
    #[error("Tenant [{0}] not found")]
    TenantNotFound(String),
    /// Creating a database that exists.
    #[error("Database [{0}] already exists")]
    DatabaseExists(String),
    /// Reading or deleting a database that does not exist (`ask` adds Chroma's GET hint).
    #[error("Database [{name}] not found{}", if *.ask { ". Are you sure it exists?" } else { "" })]
    DatabaseNotFound {
        /// The database name.
        name: String,
        /// Whether to add ". Are you sure it exists?" (Chroma does on GET).
        ask: bool,
    },
    /// Creating a collection in a database that does not exist (a 400 in Chroma).
    #[error("Database [{0}] does not exist")]
    DatabaseMissing(String),
    /// A collection name already taken in its database.
    #[error("Collection [{0}] already exists")]
    CollectionExists(String),
    /// Creating one more collection would pass the server's limit (`--max-collections`).
    #[error("The server holds {0} collections, its limit (--max-collections); delete one first")]
    CollectionLimit(usize),
    /// No collection with this name.
    #[error("Collection [{0}] does not exist")]
    CollectionNameNotFound(String),
    /// No collection with this id.
    #[error("Collection [{0}] does not exist.")]
    CollectionIdNotFound(Uuid),
    /// The collection exists but its data failed to open at startup; it stays unavailable.
    #[error("Collection [{name}] ({id}) is unavailable: it failed to open: {reason}")]
    CollectionUnavailable {
        /// Collection id.
        id: Uuid,
        /// Collection name.
        name: String,
        /// The engine's error, as text.
        reason: String,
    },
    /// The engine failed while creating or changing a collection.
    #[error("Collection [{name}] ({id}): {source}")]
    Engine {
        /// Collection id.
        id: Uuid,
        /// Collection name.
        name: String,
        /// What failed.
        #[source]
        source: EngineError,
    },
    /// The data folder is locked by another process, or could not be locked.
    #[error(transparent)]
    Lock(EngineError),
    /// Reading or writing the catalog file (or a collection folder) failed.
    #[error("catalog I/O error during {op} on {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The device is full; the catalog was left unchanged.
    #[error("no space left on device while writing {0}")]
    NoSpace(PathBuf),
    /// The catalog file cannot be read back; the server refuses to start rather than guess.
    #[error("catalog file {path} is corrupt: {reason}")]
    Corrupt {
        /// The catalog file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A restore stopped half way through its swap (its journal is still there).
    #[error(
        "{0} holds an interrupted restore ({RESTORE_JOURNAL}); finish it with \
         `vectord restore --finish --path {0}` before starting the server"
    )]
    InterruptedRestore(PathBuf),
}

impl CatalogError {
    fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> CatalogError {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::StorageFull
            || matches!(source.raw_os_error(), Some(28 | 122))
        {
            return CatalogError::NoSpace(path);
        }
        CatalogError::Io { op, path, source }
    }
}

/// A collection as the API sees it: its catalog record and its engine handle (or why it failed).
#[derive(Clone)]
pub struct CollectionEntry {
    /// Catalog data.
    pub record: CollectionRecord,
    /// The open engine collection, or the reason it failed to open.
    engine: Result<Arc<Collection>, Arc<str>>,
}

impl CollectionEntry {
    /// The engine handle, or `CollectionUnavailable` when the collection failed to open.
    pub fn engine(&self) -> Result<&Arc<Collection>, CatalogError> {
        self.engine
            .as_ref()
            .map_err(|reason| CatalogError::CollectionUnavailable {
                id: self.record.id,
                name: self.record.name.clone(),
                reason: reason.to_string(),
            })
    }

    /// Wraps an engine error with this collection's identity.
    pub fn engine_error(&self, source: EngineError) -> CatalogError {
        CatalogError::Engine {
            id: self.record.id,
            name: self.record.name.clone(),
            source,
        }
    }
}

/// What `create_collection` needs besides the names.
#[derive(Debug, Clone)]
pub struct NewCollection {
    /// Tenant.
    pub tenant: String,
    /// Database.
    pub database: String,
    /// Collection name (checked here).
    pub name: String,
    /// Validated collection metadata.
    pub metadata: Option<Map<String, Value>>,
    /// The client's `configuration`, stored as sent.
    pub configuration: Option<Value>,
    /// The client's `schema`, stored as sent.
    pub schema: Option<Value>,
    /// Resolved engine settings.
    pub config: CollectionConfig,
}

/// A change to an existing collection (PUT).
#[derive(Debug, Clone, Default)]
pub struct CollectionUpdate {
    /// Rename.
    pub new_name: Option<String>,
    /// Replace the whole metadata map (`Some(None)` clears it).
    pub new_metadata: Option<Option<Map<String, Value>>>,
    /// Replace the stored `configuration.embedding_function`.
    pub new_embedding_function: Option<Value>,
}

#[derive(Clone, Default)]
struct State {
    tenants: BTreeMap<String, TenantRecord>,
    /// Keyed by (tenant, name), so iteration is ordered by name within a tenant.
    databases: BTreeMap<(String, String), DatabaseRecord>,
    /// Keyed by id: listing order is id order, as in Chroma.
    collections: BTreeMap<Uuid, CollectionEntry>,
    /// (tenant, database, name) → id.
    names: HashMap<(String, String, String), Uuid>,
}

impl State {
    fn with_defaults(mut self) -> State {
        self.tenants
            .entry(DEFAULT_TENANT.to_string())
            .or_insert_with(|| TenantRecord {
                name: DEFAULT_TENANT.to_string(),
                resource_name: None,
            });
        self.databases
            .entry((DEFAULT_TENANT.to_string(), DEFAULT_DATABASE.to_string()))
            .or_insert_with(|| DatabaseRecord {
                id: DEFAULT_DATABASE_ID,
                name: DEFAULT_DATABASE.to_string(),
                tenant: DEFAULT_TENANT.to_string(),
            });
        self
    }

    fn to_file(&self) -> CatalogFile {
        CatalogFile {
            format_version: store::FORMAT_VERSION,
            tenants: self.tenants.values().cloned().collect(),
            databases: self.databases.values().cloned().collect(),
            collections: self
                .collections
                .values()
                .map(|e| e.record.clone())
                .collect(),
        }
    }

    fn insert_collection(&mut self, entry: CollectionEntry) {
        let r = &entry.record;
        self.names
            .insert((r.tenant.clone(), r.database.clone(), r.name.clone()), r.id);
        self.collections.insert(r.id, entry);
    }

    fn remove_collection(&mut self, id: Uuid) -> Option<CollectionEntry> {
        let entry = self.collections.remove(&id)?;
        let r = &entry.record;
        self.names
            .remove(&(r.tenant.clone(), r.database.clone(), r.name.clone()));
        Some(entry)
    }
}

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

/// Which collection an operator command means: `collection` is an id (a UUID, matched in any
/// tenant and database) or a name within `tenant`/`database`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionSelector {
    /// The collection's id or name.
    pub collection: String,
    /// The tenant a name is looked up in.
    pub tenant: String,
    /// The database a name is looked up in.
    pub database: String,
}

impl CollectionSelector {
    /// A selector for `collection` (id or name) in the default tenant and database.
    pub fn new(collection: impl Into<String>) -> CollectionSelector {
        CollectionSelector {
            collection: collection.into(),
            tenant: DEFAULT_TENANT.to_string(),
            database: DEFAULT_DATABASE.to_string(),
        }
    }

    /// The matching record: by id first, then by name in the tenant and database (a name may
    /// itself look like a UUID, so a UUID that is no collection's id is tried as a name).
    pub fn find<'a>(
        &self,
        mut records: impl Iterator<Item = &'a CollectionRecord> + Clone,
    ) -> Option<&'a CollectionRecord> {
        let by_id = self
            .collection
            .parse::<Uuid>()
            .ok()
            .and_then(|id| records.clone().find(|r| r.id == id));
        by_id.or_else(|| {
            records.find(|r| {
                r.name == self.collection && r.tenant == self.tenant && r.database == self.database
            })
        })
    }
}

impl std::fmt::Display for CollectionSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (in {}/{} if a name)",
            self.collection, self.tenant, self.database
        )
    }
}

/// Reads a data folder's catalog file without opening it (`None` when it has none). For
/// offline tools that hold the folder's [`DirLock`] themselves (single-collection restore).
pub fn read_catalog_file(dir: &Path) -> Result<Option<CatalogFile>, CatalogError> {
    store::load(dir)
}

/// Replaces a data folder's catalog file atomically and durably. Only for offline tools that
/// hold the folder's [`DirLock`]: a running [`Catalog`] would overwrite the change.
pub fn write_catalog_file(dir: &Path, file: &CatalogFile) -> Result<(), CatalogError> {
    store::save(dir, file)
}

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

/// Per-collection settings the server's flags give every collection of the catalog.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    memtable_rows: usize,
    write_stall: std::time::Duration,
}

impl Tuning {
    fn apply(&self, engine: &Collection) {
        engine.set_memtable_rows(self.memtable_rows);
        engine.set_write_stall(self.write_stall);
    }
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
            tuning: Mutex::new(Tuning {
                memtable_rows: DEFAULT_MEMTABLE_ROWS,
                write_stall: DEFAULT_WRITE_STALL,
            }),
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

    fn snapshot(&self) -> Arc<State> {
        self.state.read().clone()
    }

    fn collection_path(&self, id: Uuid) -> PathBuf {
        self.dir.join(COLLECTIONS_DIR).join(id.to_string())
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

    /// The collection `sel` names, or `CollectionNameNotFound`.
    pub fn select(&self, sel: &CollectionSelector) -> Result<CollectionEntry, CatalogError> {
        let state = self.snapshot();
        let id = sel
            .find(state.collections.values().map(|e| &e.record))
            .map(|r| r.id)
            .ok_or_else(|| CatalogError::CollectionNameNotFound(sel.collection.clone()))?;
        state
            .collections
            .get(&id)
            .cloned()
            .ok_or(CatalogError::CollectionIdNotFound(id))
    }

    /// Number of collections in the catalog, across tenants and databases.
    pub fn collection_count(&self) -> usize {
        self.snapshot().collections.len()
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

    // ---- tenants ----

    /// Creates a tenant.
    pub fn create_tenant(&self, name: &str) -> Result<(), CatalogError> {
        validate_tenant_name(name)?;
        self.mutate(|st| {
            if st.tenants.contains_key(name) {
                return Err(CatalogError::TenantExists(name.to_string()));
            }
            st.tenants.insert(
                name.to_string(),
                TenantRecord {
                    name: name.to_string(),
                    resource_name: None,
                },
            );
            Ok(())
        })
    }

    /// Reads a tenant.
    pub fn get_tenant(&self, name: &str) -> Result<TenantRecord, CatalogError> {
        self.snapshot()
            .tenants
            .get(name)
            .cloned()
            .ok_or_else(|| CatalogError::TenantNotFound(name.to_string()))
    }

    /// Sets a tenant's `resource_name`.
    pub fn update_tenant(
        &self,
        name: &str,
        resource_name: Option<String>,
    ) -> Result<(), CatalogError> {
        self.mutate(|st| {
            let t = st
                .tenants
                .get_mut(name)
                .ok_or_else(|| CatalogError::TenantNotFound(name.to_string()))?;
            t.resource_name = resource_name;
            Ok(())
        })
    }

    // ---- databases ----

    /// Creates a database. Like local Chroma, the tenant need not exist.
    pub fn create_database(&self, tenant: &str, name: &str) -> Result<(), CatalogError> {
        validate_database_segment(name)?;
        validate_name(name)?;
        self.mutate(|st| {
            let key = (tenant.to_string(), name.to_string());
            if st.databases.contains_key(&key) {
                return Err(CatalogError::DatabaseExists(name.to_string()));
            }
            st.databases.insert(
                key,
                DatabaseRecord {
                    id: Uuid::new_v4(),
                    name: name.to_string(),
                    tenant: tenant.to_string(),
                },
            );
            Ok(())
        })
    }

    /// Reads a database.
    pub fn get_database(&self, tenant: &str, name: &str) -> Result<DatabaseRecord, CatalogError> {
        validate_database_segment(name)?;
        self.snapshot()
            .databases
            .get(&(tenant.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| CatalogError::DatabaseNotFound {
                name: name.to_string(),
                ask: true,
            })
    }

    /// Lists a tenant's databases ordered by name.
    pub fn list_databases(
        &self,
        tenant: &str,
        limit: Option<usize>,
        offset: usize,
    ) -> Vec<DatabaseRecord> {
        self.snapshot()
            .databases
            .values()
            .filter(|d| d.tenant == tenant)
            .skip(offset)
            .take(limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// Deletes a database and every collection in it. The default database is emptied but
    /// stays, because clients expect it to exist.
    pub fn delete_database(&self, tenant: &str, name: &str) -> Result<(), CatalogError> {
        validate_database_segment(name)?;
        let removed = self.mutate(|st| {
            let key = (tenant.to_string(), name.to_string());
            if !st.databases.contains_key(&key) {
                return Err(CatalogError::DatabaseNotFound {
                    name: name.to_string(),
                    ask: false,
                });
            }
            if !(tenant == DEFAULT_TENANT && name == DEFAULT_DATABASE) {
                st.databases.remove(&key);
            }
            let ids: Vec<Uuid> = st
                .collections
                .values()
                .filter(|e| e.record.tenant == tenant && e.record.database == name)
                .map(|e| e.record.id)
                .collect();
            Ok(ids
                .into_iter()
                .filter_map(|id| st.remove_collection(id))
                .collect::<Vec<_>>())
        })?;
        for entry in removed {
            self.remove_collection_dir(entry.record.id);
        }
        Ok(())
    }

    // ---- collections ----

    /// Lists a database's collections in id order (`[]` for an unknown database).
    pub fn list_collections(
        &self,
        tenant: &str,
        database: &str,
        limit: Option<usize>,
        offset: usize,
    ) -> Vec<CollectionEntry> {
        self.snapshot()
            .collections
            .values()
            .filter(|e| e.record.tenant == tenant && e.record.database == database)
            .skip(offset)
            .take(limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// Every collection in the catalog (all tenants and databases), in id order.
    pub fn all_collections(&self) -> Vec<CollectionEntry> {
        self.snapshot().collections.values().cloned().collect()
    }

    /// Counts a database's collections (0 for an unknown database).
    pub fn count_collections(&self, tenant: &str, database: &str) -> usize {
        self.snapshot()
            .collections
            .values()
            .filter(|e| e.record.tenant == tenant && e.record.database == database)
            .count()
    }

    /// Finds a collection by name.
    pub fn collection_by_name(
        &self,
        tenant: &str,
        database: &str,
        name: &str,
    ) -> Result<CollectionEntry, CatalogError> {
        let st = self.snapshot();
        st.names
            .get(&(tenant.to_string(), database.to_string(), name.to_string()))
            .and_then(|id| st.collections.get(id))
            .cloned()
            .ok_or_else(|| CatalogError::CollectionNameNotFound(name.to_string()))
    }

    /// Finds a collection by id within a tenant and database.
    pub fn collection_by_id(
        &self,
        tenant: &str,
        database: &str,
        id: Uuid,
    ) -> Result<CollectionEntry, CatalogError> {
        self.snapshot()
            .collections
            .get(&id)
            .filter(|e| e.record.tenant == tenant && e.record.database == database)
            .cloned()
            .ok_or(CatalogError::CollectionIdNotFound(id))
    }

    /// The tenant and database of a collection, by id alone (v1 routes name only the id).
    pub fn collection_location(&self, id: Uuid) -> Option<(String, String)> {
        self.snapshot()
            .collections
            .get(&id)
            .map(|e| (e.record.tenant.clone(), e.record.database.clone()))
    }

    /// Sets the most collections creates may bring the catalog to (existing ones stay).
    pub fn set_max_collections(&self, max: usize) {
        self.max_collections
            .store(max, std::sync::atomic::Ordering::Relaxed);
    }

    /// The memtable memory budget shared by every collection (its use and limit are metrics).
    pub fn memtable_budget(&self) -> &Arc<MemtableBudget> {
        &self.budget
    }

    /// Sets the memtable memory budget in bytes (default
    /// [`DEFAULT_MEMTABLE_BUDGET_BYTES`]); past it writes that add rows stall, then get 429.
    pub fn set_memtable_budget(&self, bytes: usize) {
        self.budget.set_limit(bytes);
    }

    /// Sets the memtable rows at which every collection, open or created later, flushes
    /// (default [`DEFAULT_MEMTABLE_ROWS`]).
    pub fn set_memtable_rows(&self, rows: usize) {
        self.tune(|t| t.memtable_rows = rows);
    }

    /// Sets how long a write that adds rows waits for room (a flush) before 429, for every
    /// collection, open or created later (default [`DEFAULT_WRITE_STALL`]).
    pub fn set_write_stall(&self, wait: std::time::Duration) {
        self.tune(|t| t.write_stall = wait);
    }

    fn tune(&self, change: impl FnOnce(&mut Tuning)) {
        // Under the writer lock, so a create running meanwhile gets the new value.
        let _w = self.writer.lock();
        let mut tuning = self.tuning.lock();
        change(&mut tuning);
        for entry in self.snapshot().collections.values() {
            if let Ok(engine) = entry.engine() {
                tuning.apply(engine);
            }
        }
    }

    /// Creates a collection, or with `get_or_create` returns the existing one of that name
    /// unchanged. The bool is true when a collection was created. Refused with
    /// `CollectionLimit` at the limit set by [`Catalog::set_max_collections`].
    pub fn create_collection(
        &self,
        new: NewCollection,
        get_or_create: bool,
    ) -> Result<(CollectionEntry, bool), CatalogError> {
        validate_database_segment(&new.database)?;
        validate_name(&new.name)?;
        let _w = self.writer.lock();
        let mut next = (*self.snapshot()).clone();
        if !next
            .databases
            .contains_key(&(new.tenant.clone(), new.database.clone()))
        {
            return Err(CatalogError::DatabaseMissing(new.database));
        }
        let key = (new.tenant.clone(), new.database.clone(), new.name.clone());
        if let Some(existing) = next.names.get(&key).and_then(|id| next.collections.get(id)) {
            return if get_or_create {
                Ok((existing.clone(), false))
            } else {
                Err(CatalogError::CollectionExists(new.name))
            };
        }
        let max = self
            .max_collections
            .load(std::sync::atomic::Ordering::Relaxed);
        if next.collections.len() >= max {
            return Err(CatalogError::CollectionLimit(max));
        }
        let id = Uuid::new_v4();
        let path = self.collection_path(id);
        let record = CollectionRecord {
            id,
            name: new.name,
            tenant: new.tenant,
            database: new.database,
            metadata: new.metadata,
            configuration: new.configuration,
            schema: new.schema,
        };
        let engine =
            Collection::create_with_budget(&path, new.config, &self.budget).map_err(|source| {
                CatalogError::Engine {
                    id,
                    name: record.name.clone(),
                    source,
                }
            })?;
        self.tuning.lock().apply(&engine);
        let entry = CollectionEntry {
            record,
            engine: Ok(Arc::new(engine)),
        };
        next.insert_collection(entry.clone());
        if let Err(e) = store::save(&self.dir, &next.to_file()) {
            // The catalog never referenced the folder: remove it so nothing is orphaned.
            drop(entry);
            self.remove_collection_dir(id);
            return Err(e);
        }
        *self.state.write() = Arc::new(next);
        Ok((entry, true))
    }

    /// Renames a collection and/or replaces its metadata or embedding function.
    pub fn update_collection(
        &self,
        tenant: &str,
        database: &str,
        id: Uuid,
        update: CollectionUpdate,
    ) -> Result<CollectionEntry, CatalogError> {
        if let Some(n) = &update.new_name {
            validate_name(n)?;
        }
        self.mutate(|st| {
            let mut entry = st
                .collections
                .get(&id)
                .filter(|e| e.record.tenant == tenant && e.record.database == database)
                .cloned()
                .ok_or(CatalogError::CollectionIdNotFound(id))?;
            if let Some(new_name) = update.new_name {
                if new_name != entry.record.name {
                    if st.names.contains_key(&(
                        tenant.to_string(),
                        database.to_string(),
                        new_name.clone(),
                    )) {
                        return Err(CatalogError::CollectionExists(new_name));
                    }
                    entry.record.name = new_name;
                }
            }
            if let Some(md) = update.new_metadata {
                entry.record.metadata = md;
            }
            if let Some(ef) = update.new_embedding_function {
                let mut conf = match entry.record.configuration.take() {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                conf.insert("embedding_function".to_string(), ef);
                entry.record.configuration = Some(Value::Object(conf));
            }
            st.remove_collection(id);
            st.insert_collection(entry.clone());
            Ok(entry)
        })
    }

    /// Deletes a collection by name, and its data folder.
    pub fn delete_collection(
        &self,
        tenant: &str,
        database: &str,
        name: &str,
    ) -> Result<(), CatalogError> {
        let entry = self.mutate(|st| {
            let id = st
                .names
                .get(&(tenant.to_string(), database.to_string(), name.to_string()))
                .copied()
                .ok_or_else(|| CatalogError::CollectionNameNotFound(name.to_string()))?;
            st.remove_collection(id)
                .ok_or_else(|| CatalogError::CollectionNameNotFound(name.to_string()))
        })?;
        self.remove_collection_dir(entry.record.id);
        Ok(())
    }

    /// Removes every tenant, database and collection, leaving only the defaults.
    pub fn reset(&self) -> Result<(), CatalogError> {
        let removed = self.mutate(|st| {
            let old = std::mem::take(st);
            *st = State::default().with_defaults();
            Ok(old.collections.into_keys().collect::<Vec<_>>())
        })?;
        for id in removed {
            self.remove_collection_dir(id);
        }
        Ok(())
    }

    /// Renames a collection folder to a trash name, then removes it. Failures are logged: the
    /// catalog no longer references the folder, and the next start sweeps the trash.
    fn remove_collection_dir(&self, id: Uuid) {
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
fn sweep_trash(coll_dir: &Path) {
    sweep_prefixed(coll_dir, TRASH_PREFIX, "trashed collection folder");
}

/// Removes copies a restore or a download left when it stopped before its swap began (with no
/// journal they are not part of the data): they hold records, which is PHI, and disk space.
/// Only under the folder's lock, so no restore is writing them.
fn sweep_restore_leftovers(dir: &Path) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn new(name: &str) -> NewCollection {
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

    /// The limit is checked under the writer lock: creates racing at the limit cannot pass it
    /// together, and get_or_create of an existing collection still answers there.
    #[test]
    fn concurrent_creates_stop_at_the_collection_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Catalog::open(tmp.path()).unwrap();
        c.set_max_collections(5);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let c = &c;
                    s.spawn(move || c.create_collection(new(&format!("coll{i}")), false))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| matches!(e, CatalogError::CollectionLimit(5))),
            "{:?}",
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
        );
        assert_eq!(c.collection_count(), 5);
        let name = results
            .iter()
            .find_map(|r| r.as_ref().ok())
            .map(|(e, _)| e.record.name.clone())
            .unwrap();
        assert!(!c.create_collection(new(&name), true).unwrap().1);
    }

    /// Every collection of the catalog charges one memtable budget; deleting a collection
    /// gives its bytes back, and a reopened catalog charges the replayed memtables again.
    #[test]
    fn collections_share_the_memtable_budget_and_deletes_release_it() {
        use crate::types::{Record, WriteBatch};
        let tmp = tempfile::tempdir().unwrap();
        let add = |c: &Catalog, name: &str, n: usize| {
            let (e, _) = c.create_collection(new(name), true).unwrap();
            let rows = (0..n)
                .map(|i| Record {
                    id: format!("id{i}"),
                    embedding: vec![i as f32, 1.0],
                    metadata: None,
                    document: Some("doc".into()),
                    uri: None,
                })
                .collect();
            e.engine()
                .unwrap()
                .apply(WriteBatch::Add(rows), None)
                .unwrap();
        };
        let used = {
            let c = Catalog::open(tmp.path()).unwrap();
            c.set_memtable_budget(1 << 30);
            assert_eq!(c.memtable_budget().limit(), 1 << 30);
            add(&c, "one", 10);
            let one = c.memtable_budget().used();
            assert!(one > 0);
            add(&c, "two", 10);
            assert_eq!(c.memtable_budget().used(), 2 * one);
            c.delete_collection(DEFAULT_TENANT, DEFAULT_DATABASE, "two")
                .unwrap();
            assert_eq!(c.memtable_budget().used(), one);
            one
        };
        // Not flushed (dropping does not flush): the rows replay into a charged memtable.
        let c = Catalog::open(tmp.path()).unwrap();
        assert_eq!(c.memtable_budget().used(), used);
        c.reset().unwrap();
        assert_eq!(c.memtable_budget().used(), 0);
    }

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
    fn delete_and_reset_remove_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Catalog::open(tmp.path()).unwrap();
        let (a, _) = c.create_collection(new("aaa"), false).unwrap();
        let (b, _) = c.create_collection(new("bbb"), false).unwrap();
        c.delete_collection(DEFAULT_TENANT, DEFAULT_DATABASE, "aaa")
            .unwrap();
        assert!(!c.collection_path(a.record.id).exists());
        assert!(matches!(
            c.collection_by_id(DEFAULT_TENANT, DEFAULT_DATABASE, a.record.id),
            Err(CatalogError::CollectionIdNotFound(_))
        ));
        c.reset().unwrap();
        assert!(!c.collection_path(b.record.id).exists());
        assert_eq!(c.count_collections(DEFAULT_TENANT, DEFAULT_DATABASE), 0);
        assert!(c.get_tenant(DEFAULT_TENANT).is_ok());
    }

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
