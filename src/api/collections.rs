//! Tenant, database and collection routes.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::collection_json::{
    collection_json, resolve_config, validate_collection_metadata, CreateCollectionRequest,
    UpdateCollectionRequest,
};
use super::error::{ApiError, AppJson, AppPath, AppQuery};
use super::{blocking, AppState};
use crate::catalog::{
    validate_database_segment, validate_name, Catalog, CatalogError, CollectionEntry,
    CollectionUpdate, NewCollection,
};

/// Body of tenant and database creation.
#[derive(Debug, Deserialize)]
pub struct NameBody {
    name: String,
}

/// Body of `PATCH /tenants/{t}`.
#[derive(Debug, Deserialize)]
pub struct TenantPatch {
    #[serde(default)]
    resource_name: Option<String>,
}

/// `?limit=&offset=` of list routes.
#[derive(Debug, Default, Deserialize)]
pub struct Page {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    offset: Option<usize>,
}

/// Runs a catalog change (it may fsync) on a blocking thread and answers `{}`.
async fn change(
    st: AppState,
    f: impl FnOnce(&Catalog) -> Result<(), CatalogError> + Send + 'static,
) -> Result<Json<Value>, ApiError> {
    blocking(move || f(&st.catalog).map_err(ApiError::from)).await?;
    Ok(Json(json!({})))
}

/// A collection's JSON, or why it is unavailable (a collection that failed to open answers
/// every route with the reason).
fn found(entry: &CollectionEntry) -> Result<Json<Value>, ApiError> {
    entry.engine()?;
    Ok(Json(collection_json(entry)))
}

/// Parses a collection id path segment (400 like Chroma when it is not a UUID).
pub fn parse_collection_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s)
        .map_err(|_| ApiError::InvalidArgument("Collection ID is not a valid UUIDv4".to_string()))
}

/// `POST /tenants`.
pub async fn create_tenant(
    State(st): State<AppState>,
    AppJson(body): AppJson<NameBody>,
) -> Result<Json<Value>, ApiError> {
    change(st, move |c| c.create_tenant(&body.name)).await
}

/// `GET /tenants/{t}`.
pub async fn get_tenant(
    State(st): State<AppState>,
    AppPath(tenant): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    let t = st.catalog.get_tenant(&tenant)?;
    Ok(Json(
        json!({ "name": t.name, "resource_name": t.resource_name }),
    ))
}

/// `PATCH /tenants/{t}`.
pub async fn update_tenant(
    State(st): State<AppState>,
    AppPath(tenant): AppPath<String>,
    AppJson(body): AppJson<TenantPatch>,
) -> Result<Json<Value>, ApiError> {
    change(st, move |c| c.update_tenant(&tenant, body.resource_name)).await
}

/// `GET /tenants/{t}/databases`.
pub async fn list_databases(
    State(st): State<AppState>,
    AppPath(tenant): AppPath<String>,
    AppQuery(page): AppQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    let dbs = st
        .catalog
        .list_databases(&tenant, page.limit, page.offset.unwrap_or(0));
    Ok(Json(json!(dbs)))
}

/// `POST /tenants/{t}/databases`.
pub async fn create_database(
    State(st): State<AppState>,
    AppPath(tenant): AppPath<String>,
    AppJson(body): AppJson<NameBody>,
) -> Result<Json<Value>, ApiError> {
    change(st, move |c| c.create_database(&tenant, &body.name)).await
}

/// `GET /tenants/{t}/databases/{db}`.
pub async fn get_database(
    State(st): State<AppState>,
    AppPath((tenant, database)): AppPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(st.catalog.get_database(&tenant, &database)?)))
}

/// `DELETE /tenants/{t}/databases/{db}`: also deletes the database's collections.
pub async fn delete_database(
    State(st): State<AppState>,
    AppPath((tenant, database)): AppPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    change(st, move |c| c.delete_database(&tenant, &database)).await
}

/// `GET …/collections?limit&offset` (`[]` for an unknown database).
pub async fn list_collections(
    State(st): State<AppState>,
    AppPath((tenant, database)): AppPath<(String, String)>,
    AppQuery(page): AppQuery<Page>,
) -> Result<Json<Value>, ApiError> {
    validate_database_segment(&database)?;
    let entries =
        st.catalog
            .list_collections(&tenant, &database, page.limit, page.offset.unwrap_or(0));
    Ok(Json(Value::Array(
        entries.iter().map(collection_json).collect(),
    )))
}

/// `GET …/collections_count` (0 for an unknown database).
pub async fn count_collections(
    State(st): State<AppState>,
    AppPath((tenant, database)): AppPath<(String, String)>,
) -> Result<Json<usize>, ApiError> {
    validate_database_segment(&database)?;
    Ok(Json(st.catalog.count_collections(&tenant, &database)))
}

/// `POST …/collections`: create, or with `get_or_create` return the existing collection
/// unchanged (its metadata and configuration win over the request's).
pub async fn create_collection(
    State(st): State<AppState>,
    AppPath((tenant, database)): AppPath<(String, String)>,
    AppJson(req): AppJson<CreateCollectionRequest>,
) -> Result<Json<Value>, ApiError> {
    validate_database_segment(&database)?;
    validate_name(&req.name)?;
    let metadata = validate_collection_metadata("metadata", req.metadata, false)?;
    let schema = req.schema.filter(|s| !s.is_null());
    let config = resolve_config(
        req.configuration.as_ref(),
        metadata.as_ref(),
        schema.as_ref(),
    )?;
    let new = NewCollection {
        tenant,
        database,
        name: req.name,
        metadata,
        configuration: req.configuration.map(Value::Object),
        schema,
        config,
    };
    let get_or_create = req.get_or_create;
    // The catalog enforces --max-collections under its writer lock: each collection holds a
    // lock file, a WAL file and its maps, and the cap keeps one tenant from exhausting the
    // process's file descriptors.
    let (entry, _created) = blocking(move || {
        st.catalog
            .create_collection(new, get_or_create)
            .map_err(ApiError::from)
    })
    .await?;
    // get_or_create on a collection that failed to open reports why, like every other route.
    found(&entry)
}

/// `GET …/collections/{name}`.
pub async fn get_collection(
    State(st): State<AppState>,
    AppPath((tenant, database, name)): AppPath<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    validate_database_segment(&database)?;
    let entry = st.catalog.collection_by_name(&tenant, &database, &name)?;
    found(&entry)
}

/// `GET …/collections/by-id/{id}`.
pub async fn get_collection_by_id(
    State(st): State<AppState>,
    AppPath((tenant, database, id)): AppPath<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    validate_database_segment(&database)?;
    let id = parse_collection_id(&id)?;
    let entry = st.catalog.collection_by_id(&tenant, &database, id)?;
    found(&entry)
}

/// `GET /api/v2/collections/{tenant:database:name}` (Chroma Cloud's resource name form).
pub async fn get_collection_by_crn(
    State(st): State<AppState>,
    AppPath(crn): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    let parts: Vec<&str> = crn.splitn(3, ':').collect();
    let [tenant, database, name] = parts[..] else {
        return Err(ApiError::InvalidArgument(format!(
            "Invalid collection resource name {crn:?}: expected tenant:database:collection"
        )));
    };
    let entry = st.catalog.collection_by_name(tenant, database, name)?;
    found(&entry)
}

/// `PUT …/collections/{id}`: rename, replace metadata, change search parameters or the
/// embedding function. `{}` is a no-op.
pub async fn update_collection(
    State(st): State<AppState>,
    AppPath((tenant, database, id)): AppPath<(String, String, String)>,
    AppJson(req): AppJson<UpdateCollectionRequest>,
) -> Result<Json<Value>, ApiError> {
    validate_database_segment(&database)?;
    let id = parse_collection_id(&id)?;
    let entry = st.catalog.collection_by_id(&tenant, &database, id)?;
    if let Some(name) = &req.new_name {
        validate_name(name)?;
    }
    let new_metadata = match req.new_metadata {
        Some(m) => Some(validate_collection_metadata("new_metadata", Some(m), true)?),
        None => None,
    };
    let conf = req.new_configuration.unwrap_or_default();
    let update = CollectionUpdate {
        new_name: req.new_name,
        new_metadata,
        new_embedding_function: conf.embedding_function.filter(|v| !v.is_null()),
    };
    // Check and compute everything first so that nothing is half-applied: the new HNSW
    // parameters are validated before the catalog changes, and once the catalog change (which
    // can still fail with 409) is persisted, setting them can only fail on I/O.
    let new_hnsw = match conf.hnsw {
        Some(h) => {
            let engine = entry.engine()?.clone();
            let params = h.apply(engine.config().hnsw);
            params.validate()?;
            Some((engine, params))
        }
        None => None,
    };
    blocking(move || {
        // A search-parameter change alone leaves the catalog as it is: no catalog.json
        // rewrite, and no wait for the catalog lock (a snapshot holds it while it links files).
        let catalog_change = update.new_name.is_some()
            || update.new_metadata.is_some()
            || update.new_embedding_function.is_some();
        if catalog_change {
            st.catalog
                .update_collection(&tenant, &database, id, update)?;
        }
        if let Some((engine, params)) = new_hnsw {
            engine.set_hnsw(params).map_err(|e| entry.engine_error(e))?;
        }
        Ok(())
    })
    .await?;
    Ok(Json(json!({})))
}

/// `DELETE …/collections/{name}`.
pub async fn delete_collection(
    State(st): State<AppState>,
    AppPath((tenant, database, name)): AppPath<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    validate_database_segment(&database)?;
    change(st, move |c| c.delete_collection(&tenant, &database, &name)).await
}
