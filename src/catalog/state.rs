//! The catalog's in-memory registry of tenants, databases and collections.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::store::{self, CatalogFile, DatabaseRecord, TenantRecord};
use super::{CollectionEntry, DEFAULT_DATABASE, DEFAULT_DATABASE_ID, DEFAULT_TENANT};

/// Tenants, databases and collections, indexed for lookups. Readers share one as an `Arc`;
/// a writer changes a copy and swaps it in whole once it is persisted.
#[derive(Clone, Default)]
pub(super) struct State {
    /// Keyed by name.
    pub(super) tenants: BTreeMap<String, TenantRecord>,
    /// Keyed by (tenant, name), so iteration is ordered by name within a tenant.
    pub(super) databases: BTreeMap<(String, String), DatabaseRecord>,
    /// Keyed by id: listing order is id order, as in Chroma.
    pub(super) collections: BTreeMap<Uuid, CollectionEntry>,
    /// (tenant, database, name) → id.
    pub(super) names: HashMap<(String, String, String), Uuid>,
}

impl State {
    /// Adds the default tenant and database when missing.
    pub(super) fn with_defaults(mut self) -> State {
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

    /// The catalog file that persists this state.
    pub(super) fn to_file(&self) -> CatalogFile {
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

    /// Adds (or replaces) a collection and its name.
    pub(super) fn insert_collection(&mut self, entry: CollectionEntry) {
        let r = &entry.record;
        self.names
            .insert((r.tenant.clone(), r.database.clone(), r.name.clone()), r.id);
        self.collections.insert(r.id, entry);
    }

    /// Removes a collection and its name.
    pub(super) fn remove_collection(&mut self, id: Uuid) -> Option<CollectionEntry> {
        let entry = self.collections.remove(&id)?;
        let r = &entry.record;
        self.names
            .remove(&(r.tenant.clone(), r.database.clone(), r.name.clone()));
        Some(entry)
    }
}
