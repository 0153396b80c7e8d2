//! Record routes: add, upsert, update, delete, get, query, count. Bodies are parsed, converted
//! and applied on a blocking thread; the engine does the rest. Writes without `embeddings` and
//! queries with `query_texts` are embedded server-side first (`embedding.rs`, `crate::embed`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::collection_json::check_filter_indexes;
use super::collections::parse_collection_id;
use super::embedding::{embed_texts, fill, placeholder, spec_for, texts_to_embed};
use super::error::{ApiError, AppPath, AppQuery, JsonBytes};
use super::wire::{
    include_flags, metadata_for_add, metadata_patch, AddRequest, DeleteRequest, GetRecordsRequest,
    GetResponse, IncludeField, MetadataColumn, QueryRecordsRequest, QueryResponse, UpdateRequest,
    WireMetadata, GET_INCLUDE_DEFAULT, QUERY_INCLUDE_DEFAULT,
};
use super::{blocking, in_place, AppState};
use crate::catalog::{validate_database_segment, CollectionEntry};
use crate::engine::Collection;
use crate::filter::parse as parse_filter;
use crate::telemetry::audit;
use crate::types::{
    Columns, DeleteSelector, GetRequest, Metadata, MetadataPatch, QueryRequest, WriteBatch,
};

type CollPath = AppPath<(String, String, String)>;

/// Resolves `{tenant}/{database}/{collection_id}` to an open collection.
fn lookup(
    st: &AppState,
    (tenant, database, id): &(String, String, String),
) -> Result<(CollectionEntry, Arc<Collection>), ApiError> {
    validate_database_segment(database)?;
    let id = parse_collection_id(id)?;
    let entry = st.catalog.collection_by_id(tenant, database, id)?;
    let engine = entry.engine()?.clone();
    Ok((entry, engine))
}

/// A collection fed by a pgvector sync job takes writes from that job only (unless the job
/// allows HTTP writes): another writer would make it disagree with its source table.
fn check_writable(st: &AppState, entry: &CollectionEntry) -> Result<(), ApiError> {
    let r = &entry.record;
    if st.sync.write_blocker(&r.tenant, &r.database, &r.name) {
        return Err(ApiError::Forbidden(format!(
            "Collection {} is synced from PostgreSQL and is read-only over HTTP; write to the \
             source table instead (or set allow_http_writes in its sync job)",
            r.name
        )));
    }
    Ok(())
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| ApiError::Internal(format!("failed to encode response: {e}")))?;
    Ok((status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

/// Chroma's 422 for an add/upsert with neither `embeddings` nor `documents` to embed.
fn missing_embeddings() -> ApiError {
    ApiError::Unprocessable(
        "Failed to deserialize the JSON body into the target type: missing field `embeddings`"
            .to_string(),
    )
}

/// Decodes the embeddings column of an add/upsert. Without one, the rows get placeholder
/// vectors and `Embed::Documents` says the documents must be embedded before applying.
fn wire_embeddings(
    embeddings: Option<Vec<super::wire::WireEmbedding>>,
    ids: usize,
    has_documents: bool,
) -> Result<(Vec<Vec<f32>>, Embed), ApiError> {
    match embeddings {
        Some(es) => Ok((
            es.into_iter()
                .map(|e| e.into_vec())
                .collect::<Result<Vec<_>, _>>()?,
            Embed::No,
        )),
        None if has_documents => Ok((placeholder(ids), Embed::Documents)),
        None if ids == 0 => Ok((vec![], Embed::No)),
        None => Err(missing_embeddings()),
    }
}

/// The columns of an add or upsert, with `metadatas` converting its metadata column.
fn row_columns<M>(
    req: AddRequest,
    metadatas: impl FnOnce(Vec<Option<WireMetadata>>) -> Result<Vec<Option<M>>, ApiError>,
) -> Result<(Columns<Vec<f32>, M>, Embed), ApiError> {
    let (embeddings, embed) =
        wire_embeddings(req.embeddings, req.ids.len(), req.documents.is_some())?;
    let metadatas = req.metadatas.map(metadatas).transpose()?;
    Ok((
        Columns {
            ids: req.ids,
            embeddings: Some(embeddings),
            metadatas,
            documents: req.documents,
            uris: req.uris,
        },
        embed,
    ))
}

/// An add's metadata column: every metadata checked as a whole record's.
fn add_metadatas(ms: Vec<Option<WireMetadata>>) -> Result<Vec<Option<Metadata>>, ApiError> {
    ms.into_iter()
        .enumerate()
        .map(|(i, m)| {
            m.map(|m| metadata_for_add(i, m))
                .transpose()
                .map(Option::flatten)
        })
        .collect()
}

/// An upsert's or update's metadata column: patches, where `null` values delete keys.
fn patch_metadatas(ms: Vec<Option<WireMetadata>>) -> Vec<Option<MetadataPatch>> {
    ms.into_iter().map(|m| m.and_then(metadata_patch)).collect()
}

fn update_columns(
    req: UpdateRequest,
) -> Result<Columns<Option<Vec<f32>>, MetadataPatch>, ApiError> {
    let embeddings = match req.embeddings {
        Some(es) => Some(
            es.into_iter()
                .map(|e| e.map(|e| e.into_vec()).transpose())
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    Ok(Columns {
        ids: req.ids,
        embeddings,
        metadatas: req.metadatas.map(patch_metadatas),
        documents: req.documents,
        uris: req.uris,
    })
}

/// Refuses a request with more rows than `--max-batch-rows` (400, before any work).
fn check_rows(what: &str, rows: usize, max: usize) -> Result<(), ApiError> {
    if rows > max {
        return Err(ApiError::InvalidArgument(format!(
            "Batch too large: {rows} {what}, the server accepts at most {max} (--max-batch-rows)"
        )));
    }
    Ok(())
}

/// Approximate JSON size of a metadata value (strings by length, numbers 8 bytes each).
fn value_bytes(v: &crate::types::MetadataValue) -> usize {
    use crate::types::MetadataValue as V;
    match v {
        V::Str(s) => s.len() + 2,
        V::StrArray(a) => a.iter().map(|s| s.len() + 3).sum(),
        V::BoolArray(a) => a.len() * 6,
        V::IntArray(a) => a.len() * 8,
        V::FloatArray(a) => a.len() * 8,
        V::SparseVector(sv) => {
            sv.indices.len() * 16
                + sv.tokens
                    .as_ref()
                    .map_or(0, |t| t.iter().map(|s| s.len() + 3).sum())
        }
        V::Bool(_) | V::Int(_) | V::Float(_) => 8,
    }
}

/// Refuses records whose metadata is larger than `--max-metadata-bytes` (400).
fn check_metadata_sizes(
    metadatas: Option<&Vec<Option<WireMetadata>>>,
    max: usize,
) -> Result<(), ApiError> {
    for (i, m) in metadatas.into_iter().flatten().enumerate() {
        let Some(m) = m else { continue };
        let size: usize = m
            .iter()
            .map(|(k, v)| {
                k.len()
                    + 4
                    + match v {
                        super::wire::WireValue::Value(v) => value_bytes(v),
                        super::wire::WireValue::Null => 4,
                    }
            })
            .sum();
        if size > max {
            return Err(ApiError::InvalidArgument(format!(
                "Metadata of record {i} is about {size} bytes; the server accepts at most {max} (--max-metadata-bytes)"
            )));
        }
    }
    Ok(())
}

/// Whether a write's documents must be embedded before it is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Embed {
    /// The body carried the vectors.
    No,
    /// add/upsert without `embeddings`: every row's document is embedded (or the write fails).
    Documents,
    /// update without `embeddings`: rows with a new document get a new vector when the
    /// collection has a server-side model; otherwise only the documents change (as before).
    DocumentsIfAvailable,
}

/// Applies a batch built by `build` from the body (parsed on a blocking thread). A batch built
/// without vectors was validated with placeholders; its documents are embedded here, and if
/// that fails nothing is written.
async fn write(
    st: AppState,
    path: (String, String, String),
    body: JsonBytes,
    build: impl FnOnce(&JsonBytes) -> Result<(WriteBatch, Embed), ApiError> + Send + 'static,
) -> Result<u64, ApiError> {
    let (entry, coll) = lookup(&st, &path)?;
    check_writable(&st, &entry)?;
    // The common case (vectors in the body) stays one blocking hop: parse, build, apply.
    let (e, c) = (entry.clone(), Arc::clone(&coll));
    let pending = blocking(move || {
        let (batch, embed) = build(&body)?;
        if embed == Embed::No {
            return apply(&e, &c, batch).map(Err);
        }
        Ok(Ok((batch, embed)))
    })
    .await?;
    let (mut batch, embed) = match pending {
        Ok(pending) => pending,
        Err(applied) => return Ok(applied),
    };
    let rows = texts_to_embed(&batch)?;
    let spec = if rows.is_empty() {
        None
    } else {
        spec_for(&st, &entry, &coll, embed == Embed::DocumentsIfAvailable)?
    };
    if let Some(spec) = spec {
        let texts: Vec<String> = rows.iter().map(|(_, t)| t.clone()).collect();
        let vectors = embed_texts(&st, &spec, &texts, "document").await?;
        fill(&mut batch, &rows, vectors)?;
    }
    blocking(move || apply(&entry, &coll, batch)).await
}

/// Applies a batch; returns how many records it inserted, changed or deleted (for the audit).
fn apply(entry: &CollectionEntry, coll: &Collection, batch: WriteBatch) -> Result<u64, ApiError> {
    let out = coll
        .apply(batch, None)
        .map_err(|e| ApiError::from(entry.engine_error(e)))?;
    Ok(u64::from(out.inserted) + u64::from(out.updated) + u64::from(out.deleted))
}

/// A JSON response tagged with its record count for the audit log.
fn audited(
    status: StatusCode,
    body: &serde_json::Value,
    records: u64,
) -> Result<Response, ApiError> {
    let mut response = json_response(status, body)?;
    audit::tag_records(&mut response, records);
    Ok(response)
}

/// A body that writes rows (`add`, `upsert`, `update`): what the limits look at before any work.
trait RowsBody: serde::de::DeserializeOwned + 'static {
    /// Its ids, one per row.
    fn ids(&self) -> &[String];
    /// Its metadata column.
    fn metadatas(&self) -> Option<&Vec<Option<WireMetadata>>>;
}

impl RowsBody for AddRequest {
    fn ids(&self) -> &[String] {
        &self.ids
    }
    fn metadatas(&self) -> Option<&Vec<Option<WireMetadata>>> {
        self.metadatas.as_ref()
    }
}

impl RowsBody for UpdateRequest {
    fn ids(&self) -> &[String] {
        &self.ids
    }
    fn metadatas(&self) -> Option<&Vec<Option<WireMetadata>>> {
        self.metadatas.as_ref()
    }
}

/// A row write: parses the body, refuses it past `--max-batch-rows` or `--max-metadata-bytes`,
/// builds its batch with `build`, applies it, and answers `{}` with `status`.
async fn write_rows<R: RowsBody>(
    st: AppState,
    path: (String, String, String),
    body: JsonBytes,
    status: StatusCode,
    build: fn(R) -> Result<(WriteBatch, Embed), ApiError>,
) -> Result<Response, ApiError> {
    let lim = st.settings.limits;
    let n = write(st, path, body, move |b| {
        let req: R = b.parse()?;
        check_rows("ids", req.ids().len(), lim.max_batch_rows)?;
        check_metadata_sizes(req.metadatas(), lim.max_metadata_bytes)?;
        build(req)
    })
    .await?;
    audited(status, &json!({}), n)
}

/// `POST …/add` → 201 `{}`. Ids already present are ignored, as in Chroma.
pub async fn add(
    State(st): State<AppState>,
    AppPath(path): CollPath,
    body: JsonBytes,
) -> Result<Response, ApiError> {
    write_rows(st, path, body, StatusCode::CREATED, |req: AddRequest| {
        let (cols, embed) = row_columns(req, add_metadatas)?;
        Ok((WriteBatch::add(cols)?, embed))
    })
    .await
}

/// `POST …/upsert` → `{}`.
pub async fn upsert(
    State(st): State<AppState>,
    AppPath(path): CollPath,
    body: JsonBytes,
) -> Result<Response, ApiError> {
    write_rows(st, path, body, StatusCode::OK, |req: AddRequest| {
        let (cols, embed) = row_columns(req, |ms| Ok(patch_metadatas(ms)))?;
        Ok((WriteBatch::upsert(cols)?, embed))
    })
    .await
}

/// `POST …/update` → `{}`. Unknown ids are ignored.
pub async fn update(
    State(st): State<AppState>,
    AppPath(path): CollPath,
    body: JsonBytes,
) -> Result<Response, ApiError> {
    write_rows(st, path, body, StatusCode::OK, |req: UpdateRequest| {
        let embed = if req.embeddings.is_none() && req.documents.is_some() {
            Embed::DocumentsIfAvailable
        } else {
            Embed::No
        };
        Ok((WriteBatch::update(update_columns(req)?)?, embed))
    })
    .await
}

/// `POST …/delete` → `{"deleted": n}` (the number of records actually removed).
pub async fn delete(
    State(st): State<AppState>,
    AppPath(path): CollPath,
    body: JsonBytes,
) -> Result<Response, ApiError> {
    let (entry, coll) = lookup(&st, &path)?;
    check_writable(&st, &entry)?;
    let max_rows = st.settings.limits.max_batch_rows;
    let deleted = blocking(move || {
        let req: DeleteRequest = if body.0.is_empty() {
            DeleteRequest::default()
        } else {
            body.parse()?
        };
        check_rows("ids", req.ids.as_ref().map_or(0, Vec::len), max_rows)?;
        let filter = parse_filter(req.where_.as_ref(), req.where_document.as_ref())?;
        check_filter_indexes(entry.record.schema.as_ref(), filter.as_ref())?;
        if filter.is_none() {
            if req.limit.is_some() {
                return Err(crate::types::InputError::LimitWithoutFilter.into());
            }
            match &req.ids {
                None => return Ok(0),
                Some(ids) if ids.is_empty() => {
                    return Err(ApiError::InvalidArgument(
                        "Validation error: ids, where: Either ids or where must be specified"
                            .to_string(),
                    ))
                }
                Some(_) => {}
            }
        }
        let batch = WriteBatch::Delete(DeleteSelector {
            ids: req.ids,
            filter,
            limit: req.limit,
        });
        batch.validate()?;
        let out = coll
            .apply(batch, None)
            .map_err(|e| ApiError::from(entry.engine_error(e)))?;
        Ok(out.deleted)
    })
    .await?;
    audited(
        StatusCode::OK,
        &json!({ "deleted": deleted }),
        u64::from(deleted),
    )
}

/// `POST …/get`: records in insertion order; columns not included are `null`.
pub async fn get(
    State(st): State<AppState>,
    AppPath(path): CollPath,
    body: JsonBytes,
) -> Result<Response, ApiError> {
    let (entry, coll) = lookup(&st, &path)?;
    let max_rows = st.settings.limits.max_batch_rows;
    blocking(move || {
        let req: GetRecordsRequest = if body.0.is_empty() {
            GetRecordsRequest::default()
        } else {
            body.parse()?
        };
        check_rows("ids", req.ids.as_ref().map_or(0, Vec::len), max_rows)?;
        let include: Vec<IncludeField> =
            req.include.unwrap_or_else(|| GET_INCLUDE_DEFAULT.to_vec());
        let filter = parse_filter(req.where_.as_ref(), req.where_document.as_ref())?;
        check_filter_indexes(entry.record.schema.as_ref(), filter.as_ref())?;
        let request = GetRequest {
            ids: req.ids,
            filter,
            offset: req.offset.unwrap_or(0),
            limit: req.limit,
            include: include_flags(&include),
        };
        let res = coll
            .get(&request)
            .map_err(|e| ApiError::from(entry.engine_error(e)))?;
        let body = GetResponse {
            ids: &res.ids,
            embeddings: res.embeddings.as_deref(),
            documents: res.documents.as_deref(),
            uris: res.uris.as_deref(),
            metadatas: res.metadatas.as_deref().map(MetadataColumn),
            include: &include,
        };
        let mut response = json_response(StatusCode::OK, &body)?;
        audit::tag_records(&mut response, res.ids.len() as u64);
        Ok(response)
    })
    .await
}

/// `POST …/query`: nearest records per query vector. `query_texts` (instead of
/// `query_embeddings`) are embedded with the collection's model first.
pub async fn query(
    State(st): State<AppState>,
    AppPath(path): CollPath,
    body: JsonBytes,
) -> Result<Response, ApiError> {
    let (entry, coll) = lookup(&st, &path)?;
    // The common case (vectors in the body) is parsed and searched on this worker, in place.
    let (e, c) = (entry.clone(), Arc::clone(&coll));
    let lim = st.settings.limits;
    let texts = in_place(move || {
        let mut req: QueryRecordsRequest = body.parse()?;
        let queries = req.query_embeddings.as_ref().map_or(0, Vec::len)
            + req.query_texts.as_ref().map_or(0, Vec::len);
        check_rows("query embeddings", queries, lim.max_batch_rows)?;
        // Asking for more than the collection holds means "all" (Chroma clients do this), so
        // the cap applies to what would be returned.
        let wanted = req.n_results.unwrap_or(10);
        let held = u32::try_from(c.count()).unwrap_or(u32::MAX);
        if wanted.min(held) > lim.max_n_results {
            return Err(ApiError::InvalidArgument(format!(
                "n_results {wanted} is above the server's limit of {} (--max-n-results)",
                lim.max_n_results
            )));
        }
        match (req.query_embeddings.take(), req.query_texts.take()) {
            (Some(vectors), None) => {
                let vectors = vectors.into_iter().map(|v| v.0).collect();
                run_query(&e, &c, req, vectors).map(Ok)
            }
            (None, Some(texts)) => {
                // A bad filter fails before the embedding call is paid for.
                parse_filter(req.where_.as_ref(), req.where_document.as_ref())?;
                Ok(Err((req, texts)))
            }
            (Some(_), Some(_)) => Err(ApiError::InvalidArgument(
                "Provide either query_embeddings or query_texts, not both".to_string(),
            )),
            (None, None) => Err(ApiError::Unprocessable(
                "Failed to deserialize the JSON body into the target type: missing field `query_embeddings`"
                    .to_string(),
            )),
        }
    })
    .await?;
    let (req, texts) = match texts {
        Ok(response) => return Ok(response),
        Err(pending) => pending,
    };
    let vectors = if texts.is_empty() {
        vec![]
    } else {
        let spec = spec_for(&st, &entry, &coll, false)?
            .ok_or_else(|| ApiError::Internal("no embedding model was resolved".into()))?;
        embed_texts(&st, &spec, &texts, "query text").await?
    };
    blocking(move || run_query(&entry, &coll, req, vectors)).await
}

/// Runs a parsed query with its vectors and encodes the response.
fn run_query(
    entry: &CollectionEntry,
    coll: &Collection,
    req: QueryRecordsRequest,
    embeddings: Vec<Vec<f32>>,
) -> Result<Response, ApiError> {
    let include: Vec<IncludeField> = req
        .include
        .unwrap_or_else(|| QUERY_INCLUDE_DEFAULT.to_vec());
    let inc = include_flags(&include);
    let filter = parse_filter(req.where_.as_ref(), req.where_document.as_ref())?;
    check_filter_indexes(entry.record.schema.as_ref(), filter.as_ref())?;
    let request = QueryRequest {
        embeddings,
        // No query can return more records than the collection holds, so asking for more
        // is clamped here; this keeps the engine's search breadth (ef >= k) in range for
        // requests like n_results = 2^32 - 1 on small collections.
        n_results: req
            .n_results
            .unwrap_or(10)
            .min(u32::try_from(coll.count()).unwrap_or(u32::MAX)),
        ids: req.ids,
        filter,
        include: inc,
    };
    let res = coll
        .query(&request)
        .map_err(|e| ApiError::from(entry.engine_error(e)))?;
    let hits = &res.results;
    let body = QueryResponse {
        ids: hits.iter().map(|h| h.ids.as_slice()).collect(),
        embeddings: inc.embeddings.then(|| {
            hits.iter()
                .map(|h| h.embeddings.as_deref().unwrap_or(&[]))
                .collect()
        }),
        documents: inc.documents.then(|| {
            hits.iter()
                .map(|h| h.documents.as_deref().unwrap_or(&[]))
                .collect()
        }),
        uris: inc.uris.then(|| {
            hits.iter()
                .map(|h| h.uris.as_deref().unwrap_or(&[]))
                .collect()
        }),
        metadatas: inc.metadatas.then(|| {
            hits.iter()
                .map(|h| MetadataColumn(h.metadatas.as_deref().unwrap_or(&[])))
                .collect()
        }),
        distances: inc.distances.then(|| {
            hits.iter()
                .map(|h| h.distances.as_deref().unwrap_or(&[]))
                .collect()
        }),
        include: &include,
    };
    let returned: usize = hits.iter().map(|h| h.ids.len()).sum();
    let mut response = json_response(StatusCode::OK, &body)?;
    audit::tag_records(&mut response, returned as u64);
    Ok(response)
}

/// Chroma's `read_level`; every level reads everything acknowledged here.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::enum_variant_names)]
enum ReadLevel {
    IndexAndWal,
    IndexOnly,
    IndexAndBoundedWal,
}

/// `?read_level=` of count.
#[derive(Debug, Default, Deserialize)]
pub struct CountParams {
    #[serde(default)]
    read_level: Option<ReadLevel>,
}

/// `GET …/count` → integer.
pub async fn count(
    State(st): State<AppState>,
    AppPath(path): CollPath,
    AppQuery(params): AppQuery<CountParams>,
) -> Result<Json<u64>, ApiError> {
    // Every acknowledged write is visible to reads, so all levels give the same answer.
    let _ = params.read_level;
    let (_, coll) = lookup(&st, &path)?;
    Ok(Json(blocking(move || Ok(coll.count())).await?))
}
