//! Tenants and databases: the registry above collections. Like local Chroma, a database may be
//! created in a tenant that was never created, and the default tenant and database always exist.

use uuid::Uuid;

use super::{
    validate_database_segment, validate_name, validate_tenant_name, Catalog, CatalogError,
    DatabaseRecord, TenantRecord, DEFAULT_DATABASE, DEFAULT_TENANT,
};

impl Catalog {
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
}
