//! Collections in the catalog: the entry the API sees, lookups by name, id or operator
//! selector, and the lifecycle (create, update, delete, reset).

use std::sync::Arc;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::state::State;
use super::{
    store, validate_database_segment, validate_name, Catalog, CatalogError, CollectionRecord,
    DEFAULT_DATABASE, DEFAULT_TENANT,
};
use crate::engine::{Collection, CollectionConfig, EngineError};

/// A collection as the API sees it: its catalog record and its engine handle (or why it failed).
#[derive(Clone)]
pub struct CollectionEntry {
    /// Catalog data.
    pub record: CollectionRecord,
    /// The open engine collection, or the reason it failed to open.
    pub(super) engine: Result<Arc<Collection>, Arc<str>>,
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

impl Catalog {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::test_support::new;

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
}
