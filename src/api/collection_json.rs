//! Collection-level wire shapes: the create/modify requests, the resolution of `configuration`
//! against legacy `hnsw:*` metadata, collection metadata validation, and the Collection object
//! (with `configuration_json` and Chroma's default `schema`).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::{parse_json, ApiError};
use crate::catalog::CollectionEntry;
use crate::engine::{CollectionConfig, HnswParams};
use crate::filter::{Filter, MetadataOp, Number, Scalar, ScalarSet};
use crate::types::Space;

/// `POST …/collections` body. `metadata` and `configuration` stay raw JSON here: the
/// configuration is stored exactly as sent, and metadata checks need Chroma's 400-vs-422 split.
#[derive(Debug, Deserialize)]
pub struct CreateCollectionRequest {
    /// Collection name.
    pub name: String,
    /// Collection metadata.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// Client configuration (hnsw, spann, embedding_function).
    #[serde(default)]
    pub configuration: Option<Map<String, Value>>,
    /// Index schema: its vector index settings are used when `configuration` sets none, and it
    /// is stored and merged into the reported schema.
    #[serde(default)]
    pub schema: Option<Value>,
    /// Return an existing collection of that name instead of failing.
    #[serde(default)]
    pub get_or_create: bool,
}

/// Typed view of `configuration` for creation.
#[derive(Debug, Default, Deserialize)]
struct ConfigurationIn {
    #[serde(default)]
    hnsw: Option<HnswIn>,
    #[serde(default)]
    spann: Option<SpannIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HnswIn {
    space: Option<Space>,
    ef_construction: Option<u32>,
    ef_search: Option<u32>,
    max_neighbors: Option<u32>,
    num_threads: Option<u32>,
    resize_factor: Option<f64>,
    sync_threshold: Option<u32>,
    batch_size: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
struct SpannIn {
    space: Option<Space>,
}

/// `PUT …/collections/{id}` body.
#[derive(Debug, Deserialize)]
pub struct UpdateCollectionRequest {
    /// New name.
    #[serde(default)]
    pub new_name: Option<String>,
    /// Replacement metadata (null values dropped).
    #[serde(default)]
    pub new_metadata: Option<Map<String, Value>>,
    /// Configuration changes.
    #[serde(default)]
    pub new_configuration: Option<UpdateConfigurationIn>,
}

/// `new_configuration`: only the fields that may change after creation.
#[derive(Debug, Default, Deserialize)]
pub struct UpdateConfigurationIn {
    /// HNSW changes (`space` and `ef_construction` are rejected as unknown fields).
    #[serde(default)]
    pub hnsw: Option<UpdateHnswIn>,
    /// SPANN changes (accepted and ignored: this server builds HNSW).
    #[serde(default)]
    pub spann: Option<Value>,
    /// Replacement embedding function, stored as sent.
    #[serde(default)]
    pub embedding_function: Option<Value>,
}

/// Changeable HNSW parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateHnswIn {
    /// Search breadth.
    pub ef_search: Option<u32>,
    /// Links per node.
    pub max_neighbors: Option<u32>,
    /// Build threads.
    pub num_threads: Option<u32>,
    /// Compatibility field.
    pub resize_factor: Option<f64>,
    /// Compatibility field.
    pub sync_threshold: Option<u32>,
    /// Compatibility field.
    pub batch_size: Option<u32>,
}

impl UpdateHnswIn {
    /// Merges the given fields into `p`.
    pub fn apply(&self, mut p: HnswParams) -> HnswParams {
        if let Some(v) = self.ef_search {
            p.ef_search = v;
        }
        if let Some(v) = self.max_neighbors {
            p.max_neighbors = v;
        }
        if let Some(v) = self.num_threads {
            p.num_threads = v;
        }
        if let Some(v) = self.resize_factor {
            p.resize_factor = v;
        }
        if let Some(v) = self.sync_threshold {
            p.sync_threshold = v;
        }
        if let Some(v) = self.batch_size {
            p.batch_size = v;
        }
        p
    }
}

const LEGACY_ERROR: &str = "Failed to parse hnsw parameters from segment metadata";

/// Applies the legacy `hnsw:*` metadata keys to the defaults (400 on an unknown key or bad value).
fn legacy_config(metadata: Option<&Map<String, Value>>) -> Result<CollectionConfig, ApiError> {
    let mut c = CollectionConfig::default();
    let bad = || ApiError::InvalidArgument(LEGACY_ERROR.to_string());
    let uint = |v: &Value| {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(bad)
    };
    for (k, v) in metadata.into_iter().flatten() {
        let Some(param) = k.strip_prefix("hnsw:") else {
            continue;
        };
        match param {
            "space" => c.space = v.as_str().and_then(Space::parse).ok_or_else(bad)?,
            "construction_ef" => c.hnsw.ef_construction = uint(v)?,
            "search_ef" => c.hnsw.ef_search = uint(v)?,
            "M" => c.hnsw.max_neighbors = uint(v)?,
            "num_threads" => c.hnsw.num_threads = uint(v)?,
            "resize_factor" => c.hnsw.resize_factor = v.as_f64().ok_or_else(bad)?,
            "sync_threshold" => c.hnsw.sync_threshold = uint(v)?,
            "batch_size" => c.hnsw.batch_size = uint(v)?,
            _ => return Err(bad()),
        }
    }
    Ok(c)
}

fn apply_hnsw(c: &mut CollectionConfig, h: &HnswIn) {
    if let Some(s) = h.space {
        c.space = s;
    }
    let p = &mut c.hnsw;
    p.ef_construction = h.ef_construction.unwrap_or(p.ef_construction);
    p.ef_search = h.ef_search.unwrap_or(p.ef_search);
    p.max_neighbors = h.max_neighbors.unwrap_or(p.max_neighbors);
    p.num_threads = h.num_threads.unwrap_or(p.num_threads);
    p.resize_factor = h.resize_factor.unwrap_or(p.resize_factor);
    p.sync_threshold = h.sync_threshold.unwrap_or(p.sync_threshold);
    p.batch_size = h.batch_size.unwrap_or(p.batch_size);
}

/// The vector index settings a client put in `schema` (on `#embedding`, else in `defaults`),
/// or `None` when it set none.
fn schema_config(schema: Option<&Value>) -> Result<Option<CollectionConfig>, ApiError> {
    let Some(schema) = schema else {
        return Ok(None);
    };
    let cfg = schema
        .pointer("/keys/#embedding/float_list/vector_index/config")
        .filter(|v| v.is_object())
        .or_else(|| schema.pointer("/defaults/float_list/vector_index/config"))
        .and_then(Value::as_object);
    let Some(cfg) = cfg else { return Ok(None) };
    let mut c = CollectionConfig::default();
    let mut set = false;
    match cfg.get("space") {
        None | Some(Value::Null) => {}
        Some(v) => {
            c.space = v.as_str().and_then(Space::parse).ok_or_else(|| {
                ApiError::InvalidArgument(format!("Invalid schema input: unknown space {v}"))
            })?;
            set = true;
        }
    }
    if let Some(h) = cfg.get("hnsw").filter(|h| !h.is_null()) {
        let mut h: HnswIn = serde_json::from_value(h.clone())
            .map_err(|e| ApiError::InvalidArgument(format!("Invalid HNSW configuration: {e}")))?;
        // The space lives beside `hnsw` in a schema.
        h.space = None;
        apply_hnsw(&mut c, &h);
        set = true;
    }
    Ok(set.then_some(c))
}

/// A schema that enables a sparse vector index anywhere is a 400, as on local Chroma: sparse
/// vectors are stored as metadata values, but there is no sparse index to search them with.
fn reject_sparse_indexes(schema: Option<&Value>) -> Result<(), ApiError> {
    let Some(schema) = schema else { return Ok(()) };
    let enabled = |v: &Value| {
        v.pointer("/sparse_vector/sparse_vector_index/enabled") == Some(&Value::Bool(true))
    };
    let in_keys = schema
        .get("keys")
        .and_then(Value::as_object)
        .is_some_and(|keys| keys.values().any(enabled));
    if in_keys || schema.get("defaults").is_some_and(enabled) {
        return Err(ApiError::InvalidArgument(
            "Sparse vector indexing is not enabled in local".to_string(),
        ));
    }
    Ok(())
}

/// Resolves the engine configuration of a new collection, following Chroma: the
/// `configuration` decides when it differs from the defaults, else the vector index settings in
/// `schema`, else the legacy `hnsw:*` metadata. Non-default settings in both `configuration`
/// and `schema` are a 400, as in Chroma.
pub fn resolve_config(
    configuration: Option<&Map<String, Value>>,
    metadata: Option<&Map<String, Value>>,
    schema: Option<&Value>,
) -> Result<CollectionConfig, ApiError> {
    let conf: ConfigurationIn = match configuration {
        Some(m) => {
            // Re-parse through the body parser so shape errors carry Chroma's 422 text and a path.
            let bytes = serde_json::to_vec(m).map_err(|e| ApiError::Internal(e.to_string()))?;
            parse_json(&bytes).map_err(|e| match e {
                ApiError::Unprocessable(msg) => ApiError::Unprocessable(msg.replacen(
                    "target type: ",
                    "target type: configuration.",
                    1,
                )),
                other => other,
            })?
        }
        None => ConfigurationIn::default(),
    };
    reject_sparse_indexes(schema)?;
    let legacy = legacy_config(metadata)?;
    let mut c = CollectionConfig::default();
    match (&conf.hnsw, &conf.spann) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidArgument(
                "Multiple vector index configurations provided".to_string(),
            ))
        }
        (Some(h), None) => apply_hnsw(&mut c, h),
        // A single node builds HNSW; from SPANN it keeps only the space.
        (None, Some(s)) => c.space = s.space.unwrap_or_default(),
        (None, None) => {}
    }
    let default = CollectionConfig::default();
    let from_schema = schema_config(schema)?.filter(|s| *s != default);
    let resolved = match from_schema {
        Some(_) if c != default => {
            return Err(ApiError::InvalidArgument(
                "Cannot set both collection config and schema simultaneously".to_string(),
            ))
        }
        Some(s) => s,
        None if c != default => c,
        None => legacy,
    };
    resolved.validate()?;
    Ok(resolved)
}

/// Checks collection metadata: `{}` is a 400, array values a 400 (they crash real Chroma),
/// null or object values a 422. With `drop_nulls` (PUT), null values are removed instead.
pub fn validate_collection_metadata(
    field: &str,
    metadata: Option<Map<String, Value>>,
    drop_nulls: bool,
) -> Result<Option<Map<String, Value>>, ApiError> {
    let Some(mut m) = metadata else {
        return Ok(None);
    };
    if m.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "Validation error: {field}: Metadata cannot be empty"
        )));
    }
    if drop_nulls {
        m.retain(|_, v| !v.is_null());
    }
    for (k, v) in &m {
        match v {
            Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
            Value::Array(_) => {
                return Err(ApiError::InvalidArgument(format!(
                    "Validation error: {field}: array values are not supported in collection metadata (key {k:?})"
                )))
            }
            Value::Null | Value::Object(_) => {
                return Err(ApiError::Unprocessable(format!(
                    "Failed to deserialize the JSON body into the target type: {field}.{k}: \
                     data did not match any variant of untagged enum MetadataValue"
                )))
            }
        }
    }
    Ok((!m.is_empty()).then_some(m))
}

/// The stored embedding function of a collection (`null` when the client sent none).
/// The collection's embedding function as the client stored it: one set explicitly on the
/// schema's `#embedding` index wins (Python then also sends its default one in `configuration`),
/// else the configuration's.
fn embedding_function(entry: &CollectionEntry) -> Value {
    let default_ef = json!({"name": "default", "type": "known", "config": {}});
    let from_schema = entry
        .record
        .schema
        .as_ref()
        .and_then(|s| {
            s.pointer("/keys/#embedding/float_list/vector_index/config/embedding_function")
        })
        .filter(|ef| !ef.is_null() && **ef != default_ef);
    from_schema
        .or_else(|| {
            entry
                .record
                .configuration
                .as_ref()
                .and_then(|c| c.get("embedding_function"))
        })
        .cloned()
        .unwrap_or(Value::Null)
}

/// `configuration_json`: always an object with `hnsw.space` (LangChain reads it).
pub fn configuration_json(config: &CollectionConfig, ef: &Value) -> Value {
    let h = &config.hnsw;
    json!({
        "hnsw": {
            "space": config.space.as_str(),
            "ef_construction": h.ef_construction,
            "ef_search": h.ef_search,
            "max_neighbors": h.max_neighbors,
            "resize_factor": h.resize_factor,
            "sync_threshold": h.sync_threshold,
        },
        "spann": null,
        "embedding_function": ef,
    })
}

/// Chroma's default index schema for a collection with this configuration, so that clients
/// that read `schema` (Python's `modify(configuration=…)`) find what they expect.
pub fn default_schema(config: &CollectionConfig, ef: &Value) -> Value {
    let h = &config.hnsw;
    let hnsw = json!({
        "ef_construction": h.ef_construction,
        "max_neighbors": h.max_neighbors,
        "ef_search": h.ef_search,
        "num_threads": if h.num_threads == 0 { default_threads() } else { h.num_threads },
        "batch_size": h.batch_size,
        "sync_threshold": h.sync_threshold,
        "resize_factor": h.resize_factor,
    });
    let mut vector_config = json!({ "space": config.space.as_str(), "hnsw": hnsw });
    let mut embedding_config =
        json!({ "space": config.space.as_str(), "source_key": "#document", "hnsw": hnsw });
    if !ef.is_null() {
        vector_config["embedding_function"] = ef.clone();
        embedding_config["embedding_function"] = ef.clone();
    }
    json!({
        "defaults": {
            "string": {
                "fts_index": { "enabled": false, "config": {} },
                "string_inverted_index": { "enabled": true, "config": {} },
            },
            "float_list": { "vector_index": { "enabled": false, "config": vector_config } },
            "sparse_vector": {
                "sparse_vector_index": {
                    "enabled": false,
                    "config": { "embedding_function": { "type": "unknown" }, "bm25": false },
                },
            },
            "int": { "int_inverted_index": { "enabled": true, "config": {} } },
            "float": { "float_inverted_index": { "enabled": true, "config": {} } },
            "bool": { "bool_inverted_index": { "enabled": true, "config": {} } },
        },
        "keys": {
            "#document": {
                "string": {
                    "fts_index": { "enabled": true, "config": {} },
                    "string_inverted_index": { "enabled": false, "config": {} },
                },
            },
            "#embedding": {
                "float_list": { "vector_index": { "enabled": true, "config": embedding_config } },
            },
        },
    })
}

fn default_threads() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Merges `overlay` into `base`: objects recursively, anything else replaced; nulls skipped.
fn deep_merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    continue;
                }
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => deep_merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The `schema` of a collection: Chroma's default schema with the client's own schema (index
/// switches, key overrides) merged in; the vector index settings are always the resolved ones.
pub fn schema_json(config: &CollectionConfig, ef: &Value, user: Option<&Value>) -> Value {
    let default = default_schema(config, ef);
    let Some(user) = user.filter(|u| u.is_object()) else {
        return default;
    };
    let mut merged = default.clone();
    deep_merge(&mut merged, user);
    for ptr in [
        "/defaults/float_list/vector_index",
        "/keys/#embedding/float_list/vector_index",
    ] {
        if let (Some(slot), Some(v)) = (merged.pointer_mut(ptr), default.pointer(ptr)) {
            *slot = v.clone();
        }
    }
    merged
}

/// Refuses a filter on a metadata key whose inverted index the collection's schema disabled
/// (for the compared value's type), as Chroma does: such a key is stored but not filterable.
/// Only a client-sent schema can disable one; the default schema enables them all.
pub fn check_filter_indexes(
    user_schema: Option<&Value>,
    filter: Option<&Filter>,
) -> Result<(), ApiError> {
    match (user_schema.filter(|s| s.is_object()), filter) {
        (Some(schema), Some(filter)) => check_node(schema, filter),
        _ => Ok(()),
    }
}

fn check_node(schema: &Value, filter: &Filter) -> Result<(), ApiError> {
    match filter {
        Filter::And(fs) | Filter::Or(fs) => fs.iter().try_for_each(|f| check_node(schema, f)),
        Filter::Document(_) => Ok(()),
        Filter::Metadata { key, op } => {
            for kind in op_kinds(op) {
                let (ty, index, name) = match kind {
                    Kind::Bool => ("bool", "bool_inverted_index", "Bool"),
                    Kind::Int => ("int", "int_inverted_index", "Int"),
                    Kind::Float => ("float", "float_inverted_index", "Float"),
                    Kind::Str => ("string", "string_inverted_index", "Str"),
                };
                let enabled = |root: Option<&Value>| {
                    root.and_then(|r| r.get(ty))
                        .and_then(|t| t.get(index))
                        .and_then(|i| i.get("enabled"))
                        .and_then(Value::as_bool)
                };
                let per_key = enabled(schema.get("keys").and_then(|k| k.get(key)));
                if per_key.or_else(|| enabled(schema.get("defaults"))) == Some(false) {
                    return Err(ApiError::InvalidArgument(format!(
                        "Cannot filter using metadata key '{key}' with type '{name}' because indexing is disabled"
                    )));
                }
            }
            Ok(())
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Int,
    Float,
    Str,
}

fn scalar_kind(s: &Scalar) -> Kind {
    match s {
        Scalar::Bool(_) => Kind::Bool,
        Scalar::Num(n) => number_kind(*n),
        Scalar::Str(_) => Kind::Str,
    }
}

fn number_kind(n: Number) -> Kind {
    match n {
        Number::Int(_) => Kind::Int,
        Number::Float(_) => Kind::Float,
    }
}

/// The value types an operator compares against (a set may mix ints and floats).
fn op_kinds(op: &MetadataOp) -> Vec<Kind> {
    match op {
        MetadataOp::Eq(s)
        | MetadataOp::Ne(s)
        | MetadataOp::Contains(s)
        | MetadataOp::NotContains(s) => {
            vec![scalar_kind(s)]
        }
        MetadataOp::Gt(n) | MetadataOp::Gte(n) | MetadataOp::Lt(n) | MetadataOp::Lte(n) => {
            vec![number_kind(*n)]
        }
        MetadataOp::In(set) | MetadataOp::Nin(set) => match set {
            ScalarSet::Str(_) => vec![Kind::Str],
            ScalarSet::Bool(_) => vec![Kind::Bool],
            ScalarSet::Num(ns) => ns.iter().map(|n| number_kind(*n)).collect(),
        },
    }
}

/// The Collection object returned by every collection route. A collection that failed to open
/// reports default settings and no dimension (its record routes answer 500 with the reason).
pub fn collection_json(entry: &CollectionEntry) -> Value {
    let (config, dimension) = match entry.engine() {
        Ok(c) => (c.config(), c.dimension()),
        Err(_) => (CollectionConfig::default(), None),
    };
    let ef = embedding_function(entry);
    let r = &entry.record;
    json!({
        "id": r.id,
        "name": r.name,
        "configuration_json": configuration_json(&config, &ef),
        "schema": schema_json(&config, &ef, r.schema.as_ref()),
        "metadata": r.metadata,
        "dimension": dimension,
        "tenant": r.tenant,
        "database": r.database,
        "log_position": 0,
        "version": 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn legacy_metadata_wins_over_default_configuration() {
        let conf = map(
            json!({"hnsw": {"space": "l2"}, "spann": null, "embedding_function": {"type": "legacy"}}),
        );
        let md = map(json!({"hnsw:space": "cosine", "hnsw:M": 32}));
        let c = resolve_config(Some(&conf), Some(&md), None).unwrap();
        assert_eq!(c.space, Space::Cosine);
        assert_eq!(c.hnsw.max_neighbors, 32);
        // A non-default configuration wins.
        let conf = map(json!({"hnsw": {"space": "ip"}}));
        assert_eq!(
            resolve_config(Some(&conf), Some(&md), None).unwrap().space,
            Space::Ip
        );
        assert_eq!(
            resolve_config(None, Some(&md), None).unwrap().space,
            Space::Cosine
        );
    }

    #[test]
    fn sparse_indexes_are_refused() {
        let schema = json!({"keys": {"sparse_metadata": {"sparse_vector": {"sparse_vector_index":
            {"enabled": true, "config": {"embedding_function": {"type": "unknown"}}}}}}});
        assert!(
            matches!(resolve_config(None, None, Some(&schema)), Err(ApiError::InvalidArgument(m)) if m.starts_with("Sparse vector indexing is not enabled in local"))
        );
        let off =
            json!({"defaults": {"sparse_vector": {"sparse_vector_index": {"enabled": false}}}});
        assert!(resolve_config(None, None, Some(&off)).is_ok());
    }

    #[test]
    fn bad_configurations() {
        let md = map(json!({"hnsw:space": "foobar"}));
        assert!(
            matches!(resolve_config(None, Some(&md), None), Err(ApiError::InvalidArgument(m)) if m == LEGACY_ERROR)
        );
        let md = map(json!({"hnsw:bogus": 1}));
        assert!(matches!(
            resolve_config(None, Some(&md), None),
            Err(ApiError::InvalidArgument(_))
        ));
        let conf = map(json!({"hnsw": {"space": "l2"}, "spann": {"space": "l2"}}));
        assert!(
            matches!(resolve_config(Some(&conf), None, None), Err(ApiError::InvalidArgument(m)) if m.contains("Multiple"))
        );
        let conf = map(json!({"hnsw": {"nope": 1}}));
        assert!(
            matches!(resolve_config(Some(&conf), None, None), Err(ApiError::Unprocessable(m)) if m.contains("configuration.hnsw"))
        );
        let conf = map(json!({"hnsw": {"max_neighbors": 1000}}));
        assert!(matches!(
            resolve_config(Some(&conf), None, None),
            Err(ApiError::InvalidArgument(_))
        ));
        let conf = map(json!({"spann": {"space": "cosine"}}));
        assert_eq!(
            resolve_config(Some(&conf), None, None).unwrap().space,
            Space::Cosine
        );
    }

    #[test]
    fn collection_metadata_rules() {
        assert!(matches!(
            validate_collection_metadata("metadata", Some(Map::new()), false),
            Err(ApiError::InvalidArgument(_))
        ));
        let arr = map(json!({"a": [1]}));
        assert!(matches!(
            validate_collection_metadata("metadata", Some(arr), false),
            Err(ApiError::InvalidArgument(_))
        ));
        let null = map(json!({"a": null, "c": 3}));
        assert!(matches!(
            validate_collection_metadata("metadata", Some(null.clone()), false),
            Err(ApiError::Unprocessable(_))
        ));
        assert_eq!(
            validate_collection_metadata("new_metadata", Some(null), true).unwrap(),
            Some(map(json!({"c": 3})))
        );
    }
}
