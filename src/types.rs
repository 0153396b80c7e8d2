//! The engine's public vocabulary: records, metadata values, write batches, read requests and
//! their results. These types carry no JSON or HTTP concerns; `api` converts wire shapes into them.
//!
//! Batches are built through validating constructors (`WriteBatch::add` and friends) so every
//! path into the engine (HTTP, the pgvector sync, imports) gets the same checks and the same
//! Chroma-worded errors.

use std::collections::BTreeMap;

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};
use serde::{Deserialize, Serialize};

use crate::filter::Filter;

/// Longest accepted record id, in bytes. Chroma sets none; a bound keeps one bad id from
/// bloating every index structure that holds ids.
pub const MAX_ID_BYTES: usize = 8 * 1024;
/// Longest accepted document or uri, in bytes (the HTTP body limit is 40 MiB anyway).
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024 * 1024;
/// Longest accepted metadata key, in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 1024;
/// Largest accepted embedding dimension.
pub const MAX_DIMENSION: usize = 65_536;

/// Distance function of a collection, as Chroma names it (`hnsw.space`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Space {
    /// Squared Euclidean distance (Chroma's default).
    #[default]
    L2,
    /// `1 - cos(a, b)`.
    Cosine,
    /// `1 - a·b`.
    Ip,
}

impl Space {
    /// The name Chroma uses on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Space::L2 => "l2",
            Space::Cosine => "cosine",
            Space::Ip => "ip",
        }
    }

    /// Parses Chroma's wire name.
    pub fn parse(s: &str) -> Option<Space> {
        match s {
            "l2" => Some(Space::L2),
            "cosine" => Some(Space::Cosine),
            "ip" => Some(Space::Ip),
            _ => None,
        }
    }
}

/// A sparse vector stored as a metadata value (`{"#type":"sparse_vector",...}` on the wire).
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize,
)]
pub struct SparseVector {
    /// Dimension indices, strictly increasing.
    pub indices: Vec<u32>,
    /// One value per index.
    pub values: Vec<f32>,
    /// Optional token strings, one per index.
    pub tokens: Option<Vec<String>>,
}

/// One metadata value. Int and float stay distinct (`3.0` round-trips as a float, `3` as an int),
/// and arrays are homogeneous by construction.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize,
)]
pub enum MetadataValue {
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer.
    Int(i64),
    /// A 64-bit float (never NaN or infinite once validated).
    Float(f64),
    /// A UTF-8 string.
    Str(String),
    /// A non-empty array of booleans.
    BoolArray(Vec<bool>),
    /// A non-empty array of integers.
    IntArray(Vec<i64>),
    /// A non-empty array of floats.
    FloatArray(Vec<f64>),
    /// A non-empty array of strings.
    StrArray(Vec<String>),
    /// A sparse vector.
    SparseVector(SparseVector),
}

/// A record's metadata: key → value. An empty map is stored as no metadata at all (Chroma does).
pub type Metadata = BTreeMap<String, MetadataValue>;

/// A metadata patch for upsert/update: `None` deletes the key, `Some` sets it.
pub type MetadataPatch = BTreeMap<String, Option<MetadataValue>>;

/// A complete record as stored and returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The user's id (non-empty).
    pub id: String,
    /// The embedding, exactly as written.
    pub embedding: Vec<f32>,
    /// Metadata, `None` when the record has none.
    pub metadata: Option<Metadata>,
    /// The document text.
    pub document: Option<String>,
    /// The uri.
    pub uri: Option<String>,
}

/// An upsert of one record: inserted when new, merged into the existing record otherwise
/// (embedding replaced, metadata merged key by key, document/uri replaced only when `Some`).
#[derive(Debug, Clone, PartialEq)]
pub struct UpsertRecord {
    /// The user's id.
    pub id: String,
    /// The embedding (required for upsert, as in Chroma).
    pub embedding: Vec<f32>,
    /// Metadata patch; for a new record `None` values are simply dropped.
    pub metadata: Option<MetadataPatch>,
    /// New document, or `None` to keep the existing one.
    pub document: Option<String>,
    /// New uri, or `None` to keep the existing one.
    pub uri: Option<String>,
}

/// An update of one existing record; every `None` leaves that field unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateRecord {
    /// The user's id; unknown ids are ignored.
    pub id: String,
    /// Replacement embedding.
    pub embedding: Option<Vec<f32>>,
    /// Metadata patch.
    pub metadata: Option<MetadataPatch>,
    /// Replacement document.
    pub document: Option<String>,
    /// Replacement uri.
    pub uri: Option<String>,
}

/// Which records a delete removes: `ids` and `filter` are ANDed; `limit` caps the count.
#[derive(Debug, Clone, Default)]
pub struct DeleteSelector {
    /// Only these ids (when given).
    pub ids: Option<Vec<String>>,
    /// Only records matching this filter (when given).
    pub filter: Option<Filter>,
    /// At most this many records, in insertion order (only meaningful with a filter).
    pub limit: Option<u32>,
}

/// One atomic write: every record of the batch is applied, or none is.
#[derive(Debug, Clone)]
pub enum WriteBatch {
    /// Insert new records; ids already present are ignored, and within the batch the first
    /// occurrence of an id wins.
    Add(Vec<Record>),
    /// Insert or merge.
    Upsert(Vec<UpsertRecord>),
    /// Merge into existing records only.
    Update(Vec<UpdateRecord>),
    /// Remove records.
    Delete(DeleteSelector),
}

/// Column-wise batch input, as it arrives from Chroma's wire format; the `WriteBatch`
/// constructors check that present columns have one entry per id.
#[derive(Debug, Clone, Default)]
pub struct Columns<E, M> {
    /// Record ids.
    pub ids: Vec<String>,
    /// One embedding per id (the element type differs per operation).
    pub embeddings: Option<Vec<E>>,
    /// One metadata entry per id.
    pub metadatas: Option<Vec<Option<M>>>,
    /// One document per id.
    pub documents: Option<Vec<Option<String>>>,
    /// One uri per id.
    pub uris: Option<Vec<Option<String>>>,
}

impl<E, M> Columns<E, M> {
    fn check_lengths(&self) -> Result<(), InputError> {
        let n = self.ids.len();
        let ok = self.embeddings.as_ref().is_none_or(|v| v.len() == n)
            && self.metadatas.as_ref().is_none_or(|v| v.len() == n)
            && self.documents.as_ref().is_none_or(|v| v.len() == n)
            && self.uris.as_ref().is_none_or(|v| v.len() == n);
        if ok {
            Ok(())
        } else {
            Err(InputError::InconsistentLengths)
        }
    }

    /// Splits the columns into per-row parts.
    #[allow(clippy::type_complexity)]
    fn into_rows(
        self,
    ) -> impl Iterator<Item = (String, Option<E>, Option<M>, Option<String>, Option<String>)> {
        let n = self.ids.len();
        let mut emb = self.embeddings.map(|v| v.into_iter());
        let mut met = self.metadatas.map(|v| v.into_iter());
        let mut doc = self.documents.map(|v| v.into_iter());
        let mut uri = self.uris.map(|v| v.into_iter());
        self.ids.into_iter().take(n).map(move |id| {
            (
                id,
                emb.as_mut().and_then(Iterator::next),
                met.as_mut().and_then(Iterator::next).flatten(),
                doc.as_mut().and_then(Iterator::next).flatten(),
                uri.as_mut().and_then(Iterator::next).flatten(),
            )
        })
    }
}

impl<M> Columns<Vec<f32>, M> {
    /// Splits an add's or upsert's columns into rows, refusing them when they have rows but no
    /// embeddings (both require them).
    #[allow(clippy::type_complexity)]
    fn into_embedded_rows(
        self,
    ) -> Result<
        impl Iterator<Item = (String, Vec<f32>, Option<M>, Option<String>, Option<String>)>,
        InputError,
    > {
        self.check_lengths()?;
        if self.embeddings.is_none() && !self.ids.is_empty() {
            return Err(InputError::MissingEmbeddings);
        }
        Ok(self
            .into_rows()
            .map(|(id, e, m, d, u)| (id, e.unwrap_or_default(), m, d, u)))
    }
}

impl WriteBatch {
    /// Builds an add batch from Chroma-style columns; embeddings are required.
    pub fn add(cols: Columns<Vec<f32>, Metadata>) -> Result<WriteBatch, InputError> {
        let rows = cols
            .into_embedded_rows()?
            .map(|(id, embedding, metadata, document, uri)| Record {
                id,
                embedding,
                metadata,
                document,
                uri,
            });
        WriteBatch::Add(rows.collect()).validated()
    }

    /// Builds an upsert batch from Chroma-style columns; embeddings are required.
    pub fn upsert(cols: Columns<Vec<f32>, MetadataPatch>) -> Result<WriteBatch, InputError> {
        let rows = cols
            .into_embedded_rows()?
            .map(|(id, embedding, metadata, document, uri)| UpsertRecord {
                id,
                embedding,
                metadata,
                document,
                uri,
            });
        WriteBatch::Upsert(rows.collect()).validated()
    }

    /// Builds an update batch from Chroma-style columns; an embedding entry may be `None`.
    pub fn update(
        cols: Columns<Option<Vec<f32>>, MetadataPatch>,
    ) -> Result<WriteBatch, InputError> {
        cols.check_lengths()?;
        let rows = cols.into_rows().map(|(id, e, m, d, u)| UpdateRecord {
            id,
            embedding: e.flatten(),
            metadata: m,
            document: d,
            uri: u,
        });
        WriteBatch::Update(rows.collect()).validated()
    }

    /// The batch, once [`WriteBatch::validate`] accepts it.
    fn validated(self) -> Result<WriteBatch, InputError> {
        self.validate()?;
        Ok(self)
    }

    /// Number of records the batch names (0 for a delete).
    pub fn len(&self) -> usize {
        match self {
            WriteBatch::Add(r) => r.len(),
            WriteBatch::Upsert(r) => r.len(),
            WriteBatch::Update(r) => r.len(),
            WriteBatch::Delete(_) => 0,
        }
    }

    /// True when the batch names no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dimension the batch's embeddings agree on, `None` when it carries none.
    pub fn dimension(&self) -> Option<usize> {
        match self {
            WriteBatch::Add(r) => r.first().map(|r| r.embedding.len()),
            WriteBatch::Upsert(r) => r.first().map(|r| r.embedding.len()),
            WriteBatch::Update(r) => r.iter().find_map(|r| r.embedding.as_ref().map(Vec::len)),
            WriteBatch::Delete(_) => None,
        }
    }

    /// Checks everything that does not depend on the collection's state: ids, embeddings
    /// (non-empty, finite, one dimension across the batch), metadata keys and values, sizes.
    /// The engine calls it again, so a hand-built batch cannot skip it.
    pub fn validate(&self) -> Result<(), InputError> {
        let mut dim: Option<usize> = None;
        let mut check_embedding = |e: &[f32]| -> Result<(), InputError> {
            validate_embedding(e)?;
            match dim {
                None => dim = Some(e.len()),
                Some(d) if d != e.len() => return Err(InputError::InconsistentDimensions),
                Some(_) => {}
            }
            Ok(())
        };
        match self {
            WriteBatch::Add(rows) => {
                for (i, r) in rows.iter().enumerate() {
                    validate_id(&r.id)?;
                    check_embedding(&r.embedding)?;
                    if let Some(m) = &r.metadata {
                        validate_metadata(i, m.iter().map(|(k, v)| (k, Some(v))))?;
                    }
                    validate_text(&r.document, &r.uri)?;
                }
            }
            WriteBatch::Upsert(rows) => {
                for (i, r) in rows.iter().enumerate() {
                    validate_id(&r.id)?;
                    check_embedding(&r.embedding)?;
                    if let Some(m) = &r.metadata {
                        validate_metadata(i, m.iter().map(|(k, v)| (k, v.as_ref())))?;
                    }
                    validate_text(&r.document, &r.uri)?;
                }
            }
            WriteBatch::Update(rows) => {
                for (i, r) in rows.iter().enumerate() {
                    validate_id(&r.id)?;
                    if let Some(e) = &r.embedding {
                        check_embedding(e)?;
                    }
                    if let Some(m) = &r.metadata {
                        validate_metadata(i, m.iter().map(|(k, v)| (k, v.as_ref())))?;
                    }
                    validate_text(&r.document, &r.uri)?;
                }
            }
            WriteBatch::Delete(sel) => {
                if let Some(ids) = &sel.ids {
                    for id in ids {
                        validate_id(id)?;
                    }
                }
                if sel.limit.is_some() && sel.filter.is_none() {
                    return Err(InputError::LimitWithoutFilter);
                }
            }
        }
        Ok(())
    }
}

/// Checks one id.
pub fn validate_id(id: &str) -> Result<(), InputError> {
    if id.is_empty() {
        return Err(InputError::EmptyId);
    }
    if id.len() > MAX_ID_BYTES {
        return Err(InputError::IdTooLong {
            len: id.len(),
            max: MAX_ID_BYTES,
        });
    }
    Ok(())
}

/// Checks one embedding on its own: at least one dimension, at most `MAX_DIMENSION`, all finite.
pub fn validate_embedding(e: &[f32]) -> Result<(), InputError> {
    if e.is_empty() {
        return Err(InputError::EmptyEmbedding);
    }
    if e.len() > MAX_DIMENSION {
        return Err(InputError::DimensionTooLarge {
            got: e.len(),
            max: MAX_DIMENSION,
        });
    }
    if e.iter().any(|x| !x.is_finite()) {
        return Err(InputError::NonFiniteEmbedding);
    }
    Ok(())
}

fn validate_text(document: &Option<String>, uri: &Option<String>) -> Result<(), InputError> {
    for s in [document, uri].into_iter().flatten() {
        if s.len() > MAX_DOCUMENT_BYTES {
            return Err(InputError::ValueTooLarge {
                len: s.len(),
                max: MAX_DOCUMENT_BYTES,
            });
        }
    }
    Ok(())
}

fn validate_metadata<'a>(
    index: usize,
    entries: impl Iterator<Item = (&'a String, Option<&'a MetadataValue>)>,
) -> Result<(), InputError> {
    for (key, value) in entries {
        if key.is_empty()
            || key.starts_with('#')
            || key.starts_with('$')
            || key.len() > MAX_METADATA_KEY_BYTES
        {
            return Err(InputError::InvalidMetadata { index });
        }
        let ok = match value {
            None => true,
            Some(MetadataValue::Float(f)) => f.is_finite(),
            Some(MetadataValue::FloatArray(a)) => !a.is_empty() && a.iter().all(|f| f.is_finite()),
            Some(MetadataValue::BoolArray(a)) => !a.is_empty(),
            Some(MetadataValue::IntArray(a)) => !a.is_empty(),
            Some(MetadataValue::StrArray(a)) => {
                !a.is_empty() && a.iter().all(|s| s.len() <= MAX_DOCUMENT_BYTES)
            }
            Some(MetadataValue::Str(s)) => s.len() <= MAX_DOCUMENT_BYTES,
            Some(MetadataValue::SparseVector(sv)) => {
                sv.indices.len() == sv.values.len()
                    && sv.indices.windows(2).all(|w| w[0] < w[1])
                    && sv.values.iter().all(|v| v.is_finite())
                    && sv
                        .tokens
                        .as_ref()
                        .is_none_or(|t| t.len() == sv.indices.len())
            }
            Some(MetadataValue::Bool(_) | MetadataValue::Int(_)) => true,
        };
        if !ok {
            return Err(InputError::InvalidMetadata { index });
        }
    }
    Ok(())
}

/// Caller mistakes found before anything is written. Messages follow Chroma 1.5.9 where it has one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    /// An id is the empty string.
    #[error("Empty ID, ID must have at least one character")]
    EmptyId,
    /// An id exceeds `MAX_ID_BYTES`.
    #[error("ID is {len} bytes long; the maximum is {max}")]
    IdTooLong {
        /// Length of the offending id.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Present columns do not all have one entry per id.
    #[error("Inconsistent number of IDs, embeddings, documents, URIs and metadatas")]
    InconsistentLengths,
    /// An add or upsert without embeddings (the server has no embedder configured).
    #[error("Embeddings are required for this operation")]
    MissingEmbeddings,
    /// An embedding with zero elements.
    #[error("Validation error: embeddings: Each embedding must have at least 1 dimension")]
    EmptyEmbedding,
    /// An embedding longer than `MAX_DIMENSION`.
    #[error("Embedding has {got} dimensions; the maximum is {max}")]
    DimensionTooLarge {
        /// Dimension received.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// An embedding holding NaN or an infinity.
    #[error("Embeddings must not contain NaN or Infinity")]
    NonFiniteEmbedding,
    /// Embeddings of one batch disagree on their length.
    #[error("Inconsistent dimensions in provided embeddings")]
    InconsistentDimensions,
    /// An embedding's length differs from the collection's dimension.
    #[error("Collection expecting embedding with dimension of {expected}, got {got}")]
    DimensionMismatch {
        /// The collection's dimension.
        expected: usize,
        /// The embedding's length.
        got: usize,
    },
    /// A metadata key is empty or starts with `#`/`$`, or a value is not storable.
    #[error("Validation error: metadatas: Invalid metadata at index {index}")]
    InvalidMetadata {
        /// Position of the record in the batch.
        index: usize,
    },
    /// A document, uri or string value over `MAX_DOCUMENT_BYTES`.
    #[error("Value is {len} bytes long; the maximum is {max}")]
    ValueTooLarge {
        /// Length received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A delete `limit` without a `where`/`where_document`.
    #[error("limit can only be specified when a where clause is provided")]
    LimitWithoutFilter,
    /// Invalid HNSW or collection parameters.
    #[error("{0}")]
    InvalidConfig(String),
}

/// Which fields a read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Include {
    /// Return embeddings.
    pub embeddings: bool,
    /// Return documents.
    pub documents: bool,
    /// Return metadatas.
    pub metadatas: bool,
    /// Return uris.
    pub uris: bool,
    /// Return distances (queries only).
    pub distances: bool,
}

impl Include {
    /// Chroma's default for `get`: documents and metadatas.
    pub const GET_DEFAULT: Include = Include {
        embeddings: false,
        documents: true,
        metadatas: true,
        uris: false,
        distances: false,
    };
    /// Chroma's default for `query`: documents, metadatas and distances.
    pub const QUERY_DEFAULT: Include = Include {
        embeddings: false,
        documents: true,
        metadatas: true,
        uris: false,
        distances: true,
    };
    /// Everything.
    pub const ALL: Include = Include {
        embeddings: true,
        documents: true,
        metadatas: true,
        uris: true,
        distances: true,
    };
}

/// A `get`: records by ids and/or filter, in insertion order, then `offset` and `limit`.
#[derive(Debug, Clone, Default)]
pub struct GetRequest {
    /// Only these ids (ANDed with the filter); duplicates are returned once.
    pub ids: Option<Vec<String>>,
    /// Only records matching this filter.
    pub filter: Option<Filter>,
    /// Skip this many matches.
    pub offset: u32,
    /// Return at most this many (after `offset`).
    pub limit: Option<u32>,
    /// Which fields to return.
    pub include: Include,
}

/// The answer to a `get`, column-wise; a column is `None` when not included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GetResult {
    /// Ids in insertion order.
    pub ids: Vec<String>,
    /// Embeddings exactly as written.
    pub embeddings: Option<Vec<Vec<f32>>>,
    /// Documents.
    pub documents: Option<Vec<Option<String>>>,
    /// Metadatas.
    pub metadatas: Option<Vec<Option<Metadata>>>,
    /// Uris.
    pub uris: Option<Vec<Option<String>>>,
}

/// A nearest-neighbour query for one or more vectors.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    /// Query vectors (each of the collection's dimension).
    pub embeddings: Vec<Vec<f32>>,
    /// Results per query vector.
    pub n_results: u32,
    /// Restrict candidates to these ids.
    pub ids: Option<Vec<String>>,
    /// Restrict candidates to records matching this filter.
    pub filter: Option<Filter>,
    /// Which fields to return.
    pub include: Include,
}

/// Results for one query vector, nearest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryHits {
    /// Ids, nearest first.
    pub ids: Vec<String>,
    /// Distances per Chroma's definition for the collection's space, in f32.
    pub distances: Option<Vec<f32>>,
    /// Embeddings.
    pub embeddings: Option<Vec<Vec<f32>>>,
    /// Documents.
    pub documents: Option<Vec<Option<String>>>,
    /// Metadatas.
    pub metadatas: Option<Vec<Option<Metadata>>>,
    /// Uris.
    pub uris: Option<Vec<Option<String>>>,
}

/// The answer to a query: one `QueryHits` per query vector, in request order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    /// Per query vector.
    pub results: Vec<QueryHits>,
}

/// An opaque position in an external change feed (a pgvector LSN or change sequence), stored
/// atomically with the batch that reached it.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub struct SourcePosition(pub String);

/// What an applied batch changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyOutcome {
    /// The WAL sequence number of the batch (unchanged when the batch changed nothing and
    /// carried no source position, since nothing was logged).
    pub seq: u64,
    /// Records inserted.
    pub inserted: u32,
    /// Existing records changed.
    pub updated: u32,
    /// Records deleted.
    pub deleted: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(ids: &[&str], embs: Option<Vec<Vec<f32>>>) -> Columns<Vec<f32>, Metadata> {
        Columns {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            embeddings: embs,
            ..Default::default()
        }
    }

    #[test]
    fn add_checks_lengths_and_dimensions() {
        assert_eq!(
            WriteBatch::add(cols(&["a", "b"], Some(vec![vec![1.0]]))).unwrap_err(),
            InputError::InconsistentLengths
        );
        assert_eq!(
            WriteBatch::add(cols(&["a", "b"], Some(vec![vec![1.0], vec![1.0, 2.0]]))).unwrap_err(),
            InputError::InconsistentDimensions
        );
        assert_eq!(
            WriteBatch::add(cols(&[""], Some(vec![vec![1.0]]))).unwrap_err(),
            InputError::EmptyId
        );
        assert_eq!(
            WriteBatch::add(cols(&["a"], Some(vec![vec![f32::NAN]]))).unwrap_err(),
            InputError::NonFiniteEmbedding
        );
        assert_eq!(
            WriteBatch::add(cols(&["a"], Some(vec![vec![]]))).unwrap_err(),
            InputError::EmptyEmbedding
        );
        assert_eq!(
            WriteBatch::add(cols(&["a"], None)).unwrap_err(),
            InputError::MissingEmbeddings
        );
        assert!(WriteBatch::add(cols(&[], None)).is_ok());
    }

    #[test]
    fn metadata_keys_are_checked() {
        let mut c = cols(&["a", "b"], Some(vec![vec![1.0], vec![2.0]]));
        let mut bad = Metadata::new();
        bad.insert("$x".into(), MetadataValue::Int(1));
        c.metadatas = Some(vec![None, Some(bad)]);
        assert_eq!(
            WriteBatch::add(c).unwrap_err(),
            InputError::InvalidMetadata { index: 1 }
        );
        assert_eq!(
            InputError::InvalidMetadata { index: 0 }.to_string(),
            "Validation error: metadatas: Invalid metadata at index 0"
        );
    }

    #[test]
    fn update_allows_missing_embeddings() {
        let c: Columns<Option<Vec<f32>>, MetadataPatch> = Columns {
            ids: vec!["a".into(), "b".into()],
            embeddings: Some(vec![None, Some(vec![1.0, 2.0])]),
            ..Default::default()
        };
        let b = WriteBatch::update(c).unwrap();
        assert_eq!(b.dimension(), Some(2));
    }
}
