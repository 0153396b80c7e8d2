//! Source row → record: the mapping rules of a sync job.
//!
//! - id: UUIDs as lowercase hyphenated strings, text as is, integers in decimal.
//! - embedding: `vector`, `real[]` or `float8[]`; a NULL embedding skips the row (counted).
//! - document: a text column; NULL is no document.
//! - metadata: a scalar column is the key of its own name (NULL: key absent); timestamps and
//!   dates are epoch seconds (int), UUIDs lowercase strings, numerics int or float. A JSON object
//!   column is expanded into keys (with one JSON column the keys are top level; with several,
//!   each key is prefixed `column.`); nested objects become `a.b` keys (or reject the row with
//!   `nested = "reject"`); JSON null means the key is absent; arrays must be non-empty and of
//!   one kind (strings, bools, or numbers — ints unless one is fractional). A JSON value that is
//!   not an object is stored under the column's name.
//! - Anything Chroma metadata cannot hold (mixed or nested arrays, empty arrays, integers beyond
//!   i64, keys starting with `#`/`$`, colliding keys, NaN, wrong dimension) makes the row
//!   *unrepresentable*: it is not stored, any older version is removed, and it is counted and
//!   logged with its id and the reason. Nothing is dropped silently.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::config::{JobConfig, NestedRule};
use super::value::{ColumnKind, PgValue};
use crate::types::{
    validate_embedding, validate_id, Metadata, MetadataValue, Record, WriteBatch,
    MAX_METADATA_KEY_BYTES,
};

/// One column of a row change.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// A TOASTed value the change did not touch (logical replication): keep what is stored.
    Unchanged,
    /// A value.
    Value(PgValue),
}

/// Why a row is not stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Skip {
    /// The embedding is NULL.
    NullEmbedding,
    /// A value Chroma cannot hold; the message names the column or key.
    Unrepresentable(String),
    /// An unchanged (TOASTed) column, and no stored record to take it from.
    NoStoredValue(String),
}

/// Maps rows of one job: knows the columns' kinds and the rules.
#[derive(Debug, Clone)]
pub struct Mapper {
    names: Vec<String>,
    kinds: Vec<ColumnKind>,
    document: Option<usize>,
    meta_start: usize,
    /// More than one JSON column: their keys get a `column.` prefix.
    json_prefixed: bool,
    nested: NestedRule,
}

impl Mapper {
    /// A mapper for `job`'s columns, whose kinds are given in [`JobConfig::columns`] order.
    pub fn new(job: &JobConfig, kinds: Vec<ColumnKind>) -> Mapper {
        let meta_start = job.metadata_start();
        let json_cols = kinds[meta_start..].iter().filter(|k| k.is_json()).count();
        Mapper {
            names: job.columns().map(str::to_string).collect(),
            kinds,
            document: job.document_index(),
            meta_start,
            json_prefixed: json_cols > 1,
            nested: job.nested,
        }
    }

    /// Column kinds in row order.
    pub fn kinds(&self) -> &[ColumnKind] {
        &self.kinds
    }

    /// Column names in row order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The record id of a row's id cell.
    pub fn id_of(&self, cell: &Cell) -> Result<String, Skip> {
        let id = match cell {
            Cell::Value(PgValue::Str(s)) => s.clone(),
            Cell::Value(PgValue::Int(i)) => i.to_string(),
            other => {
                return Err(Skip::Unrepresentable(format!(
                    "id column {} holds {other:?}",
                    self.names[0]
                )))
            }
        };
        validate_id(&id).map_err(|e| Skip::Unrepresentable(format!("id: {e}")))?;
        Ok(id)
    }

    /// Maps a row to a record. `stored` is the collection's current version of it, used for
    /// [`Cell::Unchanged`] columns; `dimension` is the collection's, when fixed.
    pub fn map(
        &self,
        cells: &[Cell],
        stored: Option<&Record>,
        dimension: Option<usize>,
    ) -> Result<Record, Skip> {
        if cells.len() != self.kinds.len() {
            return Err(Skip::Unrepresentable(format!(
                "row has {} columns, expected {}",
                cells.len(),
                self.kinds.len()
            )));
        }
        let id = self.id_of(&cells[0])?;
        let embedding = match &cells[1] {
            Cell::Null => return Err(Skip::NullEmbedding),
            Cell::Unchanged => match stored {
                Some(r) => r.embedding.clone(),
                None => return Err(Skip::NoStoredValue(self.names[1].clone())),
            },
            Cell::Value(PgValue::Vector(v)) => v.clone(),
            Cell::Value(other) => {
                return Err(Skip::Unrepresentable(format!(
                    "embedding column {} holds {other:?}",
                    self.names[1]
                )))
            }
        };
        validate_embedding(&embedding)
            .map_err(|e| Skip::Unrepresentable(format!("embedding: {e}")))?;
        if let Some(d) = dimension {
            if d != embedding.len() {
                return Err(Skip::Unrepresentable(format!(
                    "embedding has {} dimensions, the collection {d}",
                    embedding.len()
                )));
            }
        }
        let document = match self.document {
            None => None,
            Some(i) => match &cells[i] {
                Cell::Null => None,
                Cell::Unchanged => match stored {
                    Some(r) => r.document.clone(),
                    None => return Err(Skip::NoStoredValue(self.names[i].clone())),
                },
                Cell::Value(PgValue::Str(s)) => Some(s.clone()),
                Cell::Value(other) => {
                    return Err(Skip::Unrepresentable(format!(
                        "document column {} holds {other:?}",
                        self.names[i]
                    )))
                }
            },
        };
        let mut meta = Metadata::new();
        for (i, c) in cells.iter().enumerate().skip(self.meta_start) {
            match c {
                Cell::Null => {}
                Cell::Unchanged => {
                    let Some(r) = stored else {
                        return Err(Skip::NoStoredValue(self.names[i].clone()));
                    };
                    for (k, v) in r.metadata.iter().flatten() {
                        if self.owner_of(k) == Some(i) {
                            put(&mut meta, k.clone(), v.clone())?;
                        }
                    }
                }
                Cell::Value(v) => self.put_column(&mut meta, i, v)?,
            }
        }
        let record = Record {
            id,
            embedding,
            metadata: (!meta.is_empty()).then_some(meta),
            document,
            uri: None,
        };
        // The engine's own checks, so one bad row never fails a whole batch.
        let batch = WriteBatch::Add(vec![record]);
        batch
            .validate()
            .map_err(|e| Skip::Unrepresentable(e.to_string()))?;
        match batch {
            WriteBatch::Add(mut v) => v.pop().ok_or_else(|| Skip::Unrepresentable("empty".into())),
            _ => Err(Skip::Unrepresentable("internal: batch kind changed".into())),
        }
    }

    /// Which metadata column a stored key came from (for unchanged TOASTed columns).
    fn owner_of(&self, key: &str) -> Option<usize> {
        let meta = self.meta_start..self.names.len();
        if let Some(i) = meta
            .clone()
            .find(|&i| !self.kinds[i].is_json() && self.names[i] == key)
        {
            return Some(i);
        }
        if self.json_prefixed {
            meta.clone().find(|&i| {
                self.kinds[i].is_json()
                    && (key == self.names[i]
                        || key
                            .strip_prefix(self.names[i].as_str())
                            .is_some_and(|rest| rest.starts_with('.')))
            })
        } else {
            meta.clone().find(|&i| self.kinds[i].is_json())
        }
    }

    fn put_column(&self, meta: &mut Metadata, i: usize, v: &PgValue) -> Result<(), Skip> {
        let name = &self.names[i];
        match v {
            PgValue::Json(Json::Object(obj)) => {
                let prefix = if self.json_prefixed {
                    format!("{name}.")
                } else {
                    String::new()
                };
                self.expand(meta, &prefix, obj)
            }
            PgValue::Json(Json::Null) => Ok(()),
            PgValue::Json(j) => put(meta, name.clone(), json_value(name, j)?),
            PgValue::Bool(b) => put(meta, name.clone(), MetadataValue::Bool(*b)),
            PgValue::Int(x) => put(meta, name.clone(), MetadataValue::Int(*x)),
            PgValue::Float(f) => put(meta, name.clone(), float(name, *f)?),
            PgValue::Str(s) => put(meta, name.clone(), MetadataValue::Str(s.clone())),
            PgValue::StrArray(a) if !a.is_empty() => {
                put(meta, name.clone(), MetadataValue::StrArray(a.clone()))
            }
            PgValue::IntArray(a) if !a.is_empty() => {
                put(meta, name.clone(), MetadataValue::IntArray(a.clone()))
            }
            PgValue::Vector(a) if !a.is_empty() => put(
                meta,
                name.clone(),
                MetadataValue::FloatArray(a.iter().map(|&f| f64::from(f)).collect()),
            ),
            _ => Err(Skip::Unrepresentable(format!(
                "column {name}: an empty array has no Chroma metadata form"
            ))),
        }
    }

    fn expand(
        &self,
        meta: &mut Metadata,
        prefix: &str,
        obj: &serde_json::Map<String, Json>,
    ) -> Result<(), Skip> {
        for (k, v) in obj {
            let key = format!("{prefix}{k}");
            match v {
                Json::Null => {}
                Json::Object(inner) => match self.nested {
                    NestedRule::Flatten => self.expand(meta, &format!("{key}."), inner)?,
                    NestedRule::Reject => {
                        return Err(Skip::Unrepresentable(format!(
                            "key {key}: nested object (nested = \"reject\")"
                        )))
                    }
                },
                other => {
                    if self.names[self.meta_start..].contains(&key) {
                        return Err(Skip::Unrepresentable(format!(
                            "JSON key {key} collides with the column of that name"
                        )));
                    }
                    put(meta, key.clone(), json_value(&key, other)?)?
                }
            }
        }
        Ok(())
    }
}

fn put(meta: &mut Metadata, key: String, v: MetadataValue) -> Result<(), Skip> {
    if key.is_empty()
        || key.starts_with('#')
        || key.starts_with('$')
        || key.len() > MAX_METADATA_KEY_BYTES
    {
        return Err(Skip::Unrepresentable(format!(
            "metadata key {key:?} is not allowed (empty, starts with # or $, or too long)"
        )));
    }
    if meta.contains_key(&key) {
        return Err(Skip::Unrepresentable(format!(
            "metadata key {key} appears twice"
        )));
    }
    meta.insert(key, v);
    Ok(())
}

fn float(key: &str, f: f64) -> Result<MetadataValue, Skip> {
    if f.is_finite() {
        Ok(MetadataValue::Float(f))
    } else {
        Err(Skip::Unrepresentable(format!(
            "key {key}: {f} is not a finite number"
        )))
    }
}

fn json_number(key: &str, n: &serde_json::Number) -> Result<MetadataValue, Skip> {
    if let Some(i) = n.as_i64() {
        Ok(MetadataValue::Int(i))
    } else if n.is_u64() {
        Err(Skip::Unrepresentable(format!(
            "key {key}: {n} does not fit a 64-bit integer"
        )))
    } else {
        float(key, n.as_f64().unwrap_or(f64::NAN))
    }
}

/// A non-object JSON value as one metadata value.
fn json_value(key: &str, v: &Json) -> Result<MetadataValue, Skip> {
    let bad = |why: &str| Err(Skip::Unrepresentable(format!("key {key}: {why}")));
    match v {
        Json::Bool(b) => Ok(MetadataValue::Bool(*b)),
        Json::Number(n) => json_number(key, n),
        Json::String(s) => Ok(MetadataValue::Str(s.clone())),
        Json::Array(a) if a.is_empty() => bad("empty array"),
        Json::Array(a) => {
            if a.iter().all(Json::is_string) {
                Ok(MetadataValue::StrArray(
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect(),
                ))
            } else if a.iter().all(Json::is_boolean) {
                Ok(MetadataValue::BoolArray(
                    a.iter().filter_map(Json::as_bool).collect(),
                ))
            } else if a.iter().all(|x| x.as_i64().is_some()) {
                Ok(MetadataValue::IntArray(
                    a.iter().filter_map(Json::as_i64).collect(),
                ))
            } else if a.iter().all(Json::is_number) {
                let f: Vec<f64> = a.iter().filter_map(Json::as_f64).collect();
                if f.iter().all(|x| x.is_finite()) {
                    Ok(MetadataValue::FloatArray(f))
                } else {
                    bad("non-finite number in array")
                }
            } else {
                bad("array mixes kinds or holds objects, arrays or nulls")
            }
        }
        Json::Null | Json::Object(_) => bad("internal: not a scalar"),
    }
}

/// Counts why rows were skipped; shared by the snapshot and the followers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SkipCounts {
    /// Rows whose embedding was NULL.
    pub null_embedding: u64,
    /// Rows with a value Chroma cannot hold.
    pub unrepresentable: u64,
    /// Unchanged TOASTed columns with no stored value to keep.
    pub no_stored_value: u64,
}

impl SkipCounts {
    /// Counts one skip.
    pub fn count(&mut self, s: &Skip) {
        match s {
            Skip::NullEmbedding => self.null_embedding += 1,
            Skip::Unrepresentable(_) => self.unrepresentable += 1,
            Skip::NoStoredValue(_) => self.no_stored_value += 1,
        }
    }

    /// All skips.
    pub fn total(&self) -> u64 {
        self.null_embedding + self.unrepresentable + self.no_stored_value
    }
}

/// Per-key view used by tests and reconcile: metadata as a sorted map of JSON-ish strings.
pub fn metadata_fingerprint(m: &Option<Metadata>) -> BTreeMap<String, String> {
    m.iter()
        .flatten()
        .map(|(k, v)| (k.clone(), format!("{v:?}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::config::SyncFile;

    fn mapper(nested: &str) -> Mapper {
        let job = toml::from_str::<SyncFile>(&format!(
            r#"
            [[job]]
            name = "p"
            url = "postgresql://postgres@127.0.0.1/db"
            table = "healthcare.policy_embeddings"
            document_column = "policy_text"
            metadata_columns = ["payer_id", "metadata", "created_at", "user_id"]
            collection = "c"
            nested = "{nested}"
            "#
        ))
        .unwrap()
        .job
        .remove(0);
        Mapper::new(
            &job,
            vec![
                ColumnKind::Uuid,
                ColumnKind::Vector,
                ColumnKind::Text,
                ColumnKind::Text,
                ColumnKind::Jsonb,
                ColumnKind::Timestamp,
                ColumnKind::Uuid,
            ],
        )
    }

    fn row(meta: Json, emb: Cell) -> Vec<Cell> {
        vec![
            Cell::Value(PgValue::Str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into())),
            emb,
            Cell::Value(PgValue::Str("doc".into())),
            Cell::Value(PgValue::Str("AETNA".into())),
            Cell::Value(PgValue::Json(meta)),
            Cell::Value(PgValue::Int(1_700_000_000)),
            Cell::Null,
        ]
    }

    #[test]
    fn production_row_maps_by_the_rules() {
        let m = mapper("flatten");
        let r = m
            .map(
                &row(
                    serde_json::json!({"state": "CA", "rev": 3, "w": 0.5, "tags": ["a", "b"],
                        "plan": {"tier": "gold"}, "gone": null}),
                    Cell::Value(PgValue::Vector(vec![1.0, 2.0])),
                ),
                None,
                None,
            )
            .unwrap();
        let md = r.metadata.unwrap();
        assert_eq!(md["payer_id"], MetadataValue::Str("AETNA".into()));
        assert_eq!(md["state"], MetadataValue::Str("CA".into()));
        assert_eq!(md["rev"], MetadataValue::Int(3));
        assert_eq!(md["w"], MetadataValue::Float(0.5));
        assert_eq!(md["plan.tier"], MetadataValue::Str("gold".into()));
        assert_eq!(md["created_at"], MetadataValue::Int(1_700_000_000));
        assert_eq!(
            md["tags"],
            MetadataValue::StrArray(vec!["a".into(), "b".into()])
        );
        assert!(!md.contains_key("gone") && !md.contains_key("user_id"));
        assert_eq!(r.document.as_deref(), Some("doc"));
    }

    #[test]
    fn unrepresentable_values_are_reported() {
        let m = mapper("reject");
        let emb = || Cell::Value(PgValue::Vector(vec![1.0]));
        for bad in [
            serde_json::json!({"plan": {"tier": "gold"}}),
            serde_json::json!({"mixed": [1, "a"]}),
            serde_json::json!({"empty": []}),
            serde_json::json!({"big": 18446744073709551615u64}),
            serde_json::json!({"payer_id": "dup"}),
            serde_json::json!({"#x": 1}),
        ] {
            assert!(
                matches!(
                    m.map(&row(bad.clone(), emb()), None, None),
                    Err(Skip::Unrepresentable(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            m.map(&row(serde_json::json!({}), Cell::Null), None, None),
            Err(Skip::NullEmbedding)
        );
        let ok = m.map(&row(serde_json::json!({}), emb()), None, Some(2));
        assert!(
            matches!(ok, Err(Skip::Unrepresentable(_))),
            "dimension mismatch"
        );
    }

    #[test]
    fn unchanged_columns_come_from_the_stored_record() {
        let m = mapper("flatten");
        let stored = m
            .map(
                &row(
                    serde_json::json!({"state": "CA"}),
                    Cell::Value(PgValue::Vector(vec![3.0])),
                ),
                None,
                None,
            )
            .unwrap();
        let mut cells = row(serde_json::json!({}), Cell::Unchanged);
        cells[4] = Cell::Unchanged;
        cells[3] = Cell::Value(PgValue::Str("CIGNA".into()));
        assert!(matches!(
            m.map(&cells, None, None),
            Err(Skip::NoStoredValue(_))
        ));
        let r = m.map(&cells, Some(&stored), None).unwrap();
        assert_eq!(r.embedding, vec![3.0]);
        let md = r.metadata.unwrap();
        assert_eq!(md["state"], MetadataValue::Str("CA".into()));
        assert_eq!(md["payer_id"], MetadataValue::Str("CIGNA".into()));
    }
}
