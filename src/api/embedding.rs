//! Server-side embedding in the record routes: which texts a write or query needs embedded,
//! the collection's model and dimension checks, and filling the vectors into a batch that was
//! validated before any API call was paid for.

use super::error::ApiError;
use super::AppState;
use crate::catalog::CollectionEntry;
use crate::embed::{EmbedError, ModelSpec};
use crate::engine::Collection;
use crate::types::{InputError, WriteBatch};

/// A one-element stand-in vector: lets `WriteBatch` constructors validate ids, lengths and
/// metadata before the real vectors exist.
pub fn placeholder(n: usize) -> Vec<Vec<f32>> {
    vec![vec![0.0]; n]
}

/// The collection's model, with the vector length checked against the collection's dimension
/// before any API call when both are known. With `optional`, a server without an embedder or a
/// collection whose function runs client-side yields `None` instead of an error.
pub fn spec_for(
    st: &AppState,
    entry: &CollectionEntry,
    coll: &Collection,
    optional: bool,
) -> Result<Option<ModelSpec>, ApiError> {
    let ef = entry
        .record
        .configuration
        .as_ref()
        .and_then(|c| c.get("embedding_function"));
    let spec = match st.embedder.spec_for(ef) {
        Ok(spec) => spec,
        Err(EmbedError::NotConfigured | EmbedError::ClientSideFunction(_)) if optional => {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    };
    if let (Some(expected), Some(got)) = (coll.dimension(), spec.expected_dimension()) {
        if expected != got {
            return Err(InputError::DimensionMismatch { expected, got }.into());
        }
    }
    Ok(Some(spec))
}

/// Embeds `texts` for the collection; `what` names them in errors ("document", "query text").
pub async fn embed_texts(
    st: &AppState,
    spec: &ModelSpec,
    texts: &[String],
    what: &'static str,
) -> Result<Vec<Vec<f32>>, ApiError> {
    if let Some(index) = texts.iter().position(String::is_empty) {
        return Err(EmbedError::EmptyText { what, index }.into());
    }
    let vectors = st.embedder.embed(spec, texts).await?;
    Ok(vectors.iter().map(|v| v.to_vec()).collect())
}

/// The documents of a batch built with placeholder vectors: every row of an add or upsert
/// needs one; an update embeds only the rows that carry one. Returns (row, text) pairs.
pub fn texts_to_embed(batch: &WriteBatch) -> Result<Vec<(usize, String)>, ApiError> {
    let missing = |index: usize| {
        ApiError::InvalidArgument(format!(
            "record at index {index} has neither an embedding nor a document to embed"
        ))
    };
    let docs: Vec<(usize, Option<&String>)> = match batch {
        WriteBatch::Add(rows) => rows
            .iter()
            .enumerate()
            .map(|(i, r)| (i, r.document.as_ref()))
            .collect(),
        WriteBatch::Upsert(rows) => rows
            .iter()
            .enumerate()
            .map(|(i, r)| (i, r.document.as_ref()))
            .collect(),
        WriteBatch::Update(rows) => rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.document.as_ref().map(|d| (i, Some(d))))
            .collect(),
        WriteBatch::Delete(_) => vec![],
    };
    docs.into_iter()
        .map(|(i, d)| d.map(|d| (i, d.clone())).ok_or_else(|| missing(i)))
        .collect()
}

/// Puts the vectors into the rows `texts_to_embed` named, then re-validates the batch.
pub fn fill(
    batch: &mut WriteBatch,
    rows: &[(usize, String)],
    vectors: Vec<Vec<f32>>,
) -> Result<(), ApiError> {
    for ((i, _), v) in rows.iter().zip(vectors) {
        match batch {
            WriteBatch::Add(r) => r[*i].embedding = v,
            WriteBatch::Upsert(r) => r[*i].embedding = v,
            WriteBatch::Update(r) => r[*i].embedding = Some(v),
            WriteBatch::Delete(_) => {}
        }
    }
    batch.validate()?;
    Ok(())
}
