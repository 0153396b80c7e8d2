//! The catalog file: its JSON shape, loading, and atomic replacement (write a temporary file,
//! fsync it, rename it over the old one, fsync the folder).

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::CatalogError;

/// The catalog file's name inside the data folder.
pub const CATALOG_FILE: &str = "catalog.json";
/// Version of the file's layout; a newer file is refused rather than misread.
pub const FORMAT_VERSION: u32 = 1;

/// A tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Tenant name.
    pub name: String,
    /// Chroma Cloud's resource name; stored and echoed only.
    #[serde(default)]
    pub resource_name: Option<String>,
}

/// A database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseRecord {
    /// Database id.
    pub id: Uuid,
    /// Database name.
    pub name: String,
    /// Owning tenant.
    pub tenant: String,
}

/// A collection's catalog data (the engine keeps space, HNSW parameters and records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionRecord {
    /// Collection id; also the name of its data folder.
    pub id: Uuid,
    /// Collection name, unique within its database.
    pub name: String,
    /// Owning tenant.
    pub tenant: String,
    /// Owning database.
    pub database: String,
    /// Collection metadata (scalars only), `None` when absent.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// The client's `configuration` exactly as sent at creation (its `embedding_function` may be
    /// replaced later by a PUT).
    #[serde(default)]
    pub configuration: Option<Value>,
    /// The client's `schema` exactly as sent at creation, if any.
    #[serde(default)]
    pub schema: Option<Value>,
}

/// The whole catalog file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogFile {
    /// Layout version.
    pub format_version: u32,
    /// Tenants.
    pub tenants: Vec<TenantRecord>,
    /// Databases.
    pub databases: Vec<DatabaseRecord>,
    /// Collections.
    pub collections: Vec<CollectionRecord>,
}

impl Default for CatalogFile {
    fn default() -> Self {
        CatalogFile {
            format_version: FORMAT_VERSION,
            tenants: vec![],
            databases: vec![],
            collections: vec![],
        }
    }
}

impl CatalogFile {
    /// Adds `record` (replacing the collection of the same id, which is returned), and its
    /// tenant and database from `from` when this file lacks them. Refused with
    /// `CollectionExists` when another collection already has its name in its database: two
    /// collections of one name would make name lookups ambiguous.
    pub fn put_collection(
        &mut self,
        record: CollectionRecord,
        from: &CatalogFile,
    ) -> Result<Option<CollectionRecord>, CatalogError> {
        if self.collections.iter().any(|c| {
            c.id != record.id
                && c.name == record.name
                && c.tenant == record.tenant
                && c.database == record.database
        }) {
            return Err(CatalogError::CollectionExists(record.name));
        }
        if !self.tenants.iter().any(|t| t.name == record.tenant) {
            let tenant = from
                .tenants
                .iter()
                .find(|t| t.name == record.tenant)
                .cloned()
                .unwrap_or_else(|| TenantRecord {
                    name: record.tenant.clone(),
                    resource_name: None,
                });
            self.tenants.push(tenant);
        }
        if !self
            .databases
            .iter()
            .any(|d| d.tenant == record.tenant && d.name == record.database)
        {
            // The snapshot's id is kept, unless this folder already uses it elsewhere.
            let id = from
                .databases
                .iter()
                .find(|d| d.tenant == record.tenant && d.name == record.database)
                .map(|d| d.id)
                .filter(|id| !self.databases.iter().any(|d| d.id == *id))
                .unwrap_or_else(Uuid::new_v4);
            self.databases.push(DatabaseRecord {
                id,
                name: record.database.clone(),
                tenant: record.tenant.clone(),
            });
        }
        let old = self
            .collections
            .iter()
            .position(|c| c.id == record.id)
            .map(|i| self.collections.remove(i));
        self.collections.push(record);
        self.collections.sort_by_key(|c| c.id);
        Ok(old)
    }
}

/// Reads the catalog file; `None` when the folder has none yet.
pub fn load(dir: &Path) -> Result<Option<CatalogFile>, CatalogError> {
    let path = dir.join(CATALOG_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CatalogError::io("read", path, e)),
    };
    let file: CatalogFile = serde_json::from_slice(&bytes).map_err(|e| CatalogError::Corrupt {
        path: path.clone(),
        reason: format!(
            "{e} (at byte offset {})",
            json_offset(&bytes, e.line(), e.column())
        ),
    })?;
    if file.format_version != FORMAT_VERSION {
        return Err(CatalogError::Corrupt {
            path,
            reason: format!(
                "format version {} (this build reads {FORMAT_VERSION})",
                file.format_version
            ),
        });
    }
    Ok(Some(file))
}

/// The byte offset of serde_json's 1-based (line, column), so damage is reported like the
/// engine reports it.
fn json_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = bytes
        .split(|&b| b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (line_start + column.saturating_sub(1)).min(bytes.len())
}

/// Replaces the catalog file atomically and durably.
pub fn save(dir: &Path, file: &CatalogFile) -> Result<(), CatalogError> {
    let bytes = serde_json::to_vec_pretty(file).map_err(|e| CatalogError::Corrupt {
        path: dir.join(CATALOG_FILE),
        reason: format!("cannot serialise catalog: {e}"),
    })?;
    crate::fsutil::atomic_replace(&dir.join(CATALOG_FILE), &bytes)
        .map_err(|e| CatalogError::io(e.op, e.path, e.source))
}

/// Reads a data folder's catalog file without opening it (`None` when it has none). For
/// offline tools that hold the folder's [`DirLock`](crate::engine::DirLock) themselves
/// (single-collection restore).
pub fn read_catalog_file(dir: &Path) -> Result<Option<CatalogFile>, CatalogError> {
    load(dir)
}

/// Replaces a data folder's catalog file atomically and durably. Only for offline tools that
/// hold the folder's [`DirLock`](crate::engine::DirLock): a running
/// [`Catalog`](super::Catalog) would overwrite the change.
pub fn write_catalog_file(dir: &Path, file: &CatalogFile) -> Result<(), CatalogError> {
    save(dir, file)
}
