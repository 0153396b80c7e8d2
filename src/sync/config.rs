//! What a sync job is: one source table mapped onto one collection, read from a TOML or JSON file
//! (`[[job]]` entries) or built from `vectord sync` flags.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SyncError;
use crate::types::Space;

/// How changes after the snapshot reach vectord.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FollowMode {
    /// Logical replication (publication + slot, `pgoutput`): no change to the source schema.
    #[default]
    Logical,
    /// A trigger-fed change table (`vectord sync install`), for roles that cannot replicate.
    Trigger,
    /// Snapshot only; no follow (a one-shot copy).
    None,
}

impl FollowMode {
    /// The name used in positions, status and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FollowMode::Logical => "logical",
            FollowMode::Trigger => "trigger",
            FollowMode::None => "none",
        }
    }
}

/// What happens to a nested JSON object inside a metadata column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NestedRule {
    /// `{"a": {"b": 1}}` becomes the key `a.b` = 1.
    #[default]
    Flatten,
    /// A nested object makes the row unrepresentable (reported, not stored).
    Reject,
}

fn default_tenant() -> String {
    crate::catalog::DEFAULT_TENANT.to_string()
}
fn default_database() -> String {
    crate::catalog::DEFAULT_DATABASE.to_string()
}
fn default_id() -> String {
    "id".to_string()
}
fn default_embedding() -> String {
    "embedding".to_string()
}
fn default_space() -> Space {
    Space::Cosine
}
fn default_batch() -> usize {
    500
}
fn default_poll_ms() -> u64 {
    1000
}

/// One sync job. Field names are the config file's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Job name (status, metrics, default slot/publication names).
    pub name: String,
    /// libpq-style URL, e.g. `postgresql://user:pw@host:5432/db?sslmode=require`.
    pub url: String,
    /// Source table, `schema.table` or `table` (schema `public`).
    pub table: String,
    /// Primary-key column that becomes the record id.
    #[serde(default = "default_id")]
    pub id_column: String,
    /// `vector` or `real[]` column that becomes the embedding.
    #[serde(default = "default_embedding")]
    pub embedding_column: String,
    /// Text column that becomes the document.
    #[serde(default)]
    pub document_column: Option<String>,
    /// Columns that become metadata: scalars under their own name, JSON objects expanded.
    #[serde(default)]
    pub metadata_columns: Vec<String>,
    /// Target collection name (created on first run).
    pub collection: String,
    /// Tenant of the collection.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// Database of the collection.
    #[serde(default = "default_database")]
    pub database: String,
    /// Distance space of a collection the job creates.
    #[serde(default = "default_space")]
    pub space: Space,
    /// How changes are followed after the snapshot.
    #[serde(default)]
    pub mode: FollowMode,
    /// Replication slot name (logical mode); default `vectord_<name>`.
    #[serde(default)]
    pub slot: Option<String>,
    /// Publication name (logical mode); default `vectord_<name>`.
    #[serde(default)]
    pub publication: Option<String>,
    /// Nested JSON objects: flattened as `a.b` or rejected.
    #[serde(default)]
    pub nested: NestedRule,
    /// Rows per applied batch.
    #[serde(default = "default_batch")]
    pub batch_rows: usize,
    /// Trigger mode: poll interval in milliseconds (LISTEN wakes it sooner).
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// PEM file of CA certificates for TLS (managed Postgres); the web PKI roots otherwise.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Let HTTP clients write to the synced collection too (off: they get a 4xx).
    #[serde(default)]
    pub allow_http_writes: bool,
}

/// A sync config file: `[[job]]` tables in TOML, or `{"job": [...]}` in JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncFile {
    /// The jobs.
    #[serde(default)]
    pub job: Vec<JobConfig>,
}

impl SyncFile {
    /// Reads and validates a file; `.json` is JSON, anything else TOML.
    pub fn load(path: &Path) -> Result<SyncFile, SyncError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SyncError::Config(format!("cannot read sync config {}: {e}", path.display()))
        })?;
        let file: SyncFile = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text)
                .map_err(|e| SyncError::Config(format!("{}: {e}", path.display())))?
        } else {
            toml::from_str(&text)
                .map_err(|e| SyncError::Config(format!("{}: {e}", path.display())))?
        };
        let mut names = std::collections::HashSet::new();
        for j in &file.job {
            j.validate()?;
            if !names.insert(j.name.as_str()) {
                return Err(SyncError::Config(format!(
                    "job name {:?} is used twice",
                    j.name
                )));
            }
        }
        Ok(file)
    }

    /// The job of that name, or the only job when `name` is `None`.
    pub fn pick(&self, name: Option<&str>) -> Result<&JobConfig, SyncError> {
        match name {
            Some(n) => self
                .job
                .iter()
                .find(|j| j.name == n)
                .ok_or_else(|| SyncError::Config(format!("no job named {n:?}"))),
            None if self.job.len() == 1 => Ok(&self.job[0]),
            None => Err(SyncError::Config(format!(
                "the config has {} jobs; name one with --job",
                self.job.len()
            ))),
        }
    }
}

/// Identifiers we splice into SQL: letters, digits, `_`, `$` (no quoting games).
fn check_ident(what: &str, s: &str) -> Result<(), SyncError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && !s.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(SyncError::Config(format!(
            "{what} {s:?} must be a plain identifier (letters, digits, _; at most 63)"
        )))
    }
}

impl JobConfig {
    /// Checks names before any of them reaches SQL.
    pub fn validate(&self) -> Result<(), SyncError> {
        check_ident("job name", &self.name)?;
        let (schema, table) = self.schema_table();
        check_ident("schema", schema)?;
        check_ident("table", table)?;
        check_ident("id_column", &self.id_column)?;
        check_ident("embedding_column", &self.embedding_column)?;
        if let Some(d) = &self.document_column {
            check_ident("document_column", d)?;
        }
        for c in &self.metadata_columns {
            check_ident("metadata column", c)?;
        }
        check_ident("slot", &self.slot_name())?;
        check_ident("publication", &self.publication_name())?;
        let mut all: Vec<&str> = self.columns().collect();
        all.sort_unstable();
        if all.windows(2).any(|w| w[0] == w[1]) {
            return Err(SyncError::Config(
                "a column is named twice among id, embedding, document and metadata".into(),
            ));
        }
        if self.batch_rows == 0 {
            return Err(SyncError::Config("batch_rows must be at least 1".into()));
        }
        tokio_postgres::Config::from_str_checked(&self.url)?;
        Ok(())
    }

    /// `(schema, table)`.
    pub fn schema_table(&self) -> (&str, &str) {
        self.table
            .split_once('.')
            .unwrap_or(("public", &self.table))
    }

    /// `"schema"."table"` for SQL.
    pub fn qualified_table(&self) -> String {
        let (s, t) = self.schema_table();
        format!("\"{s}\".\"{t}\"")
    }

    /// The replication slot name.
    pub fn slot_name(&self) -> String {
        self.slot
            .clone()
            .unwrap_or_else(|| format!("vectord_{}", self.name))
    }

    /// The publication name.
    pub fn publication_name(&self) -> String {
        self.publication
            .clone()
            .unwrap_or_else(|| format!("vectord_{}", self.name))
    }

    /// Every source column, in the order rows are read: id, embedding, document?, metadata….
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        [self.id_column.as_str(), self.embedding_column.as_str()]
            .into_iter()
            .chain(self.document_column.as_deref())
            .chain(self.metadata_columns.iter().map(String::as_str))
    }

    /// Where the document is among [`columns`](Self::columns).
    pub fn document_index(&self) -> Option<usize> {
        self.document_column.as_ref().map(|_| 2)
    }

    /// Index of the first metadata column among [`columns`](Self::columns).
    pub fn metadata_start(&self) -> usize {
        if self.document_column.is_some() {
            3
        } else {
            2
        }
    }
}

/// `tokio_postgres::Config::from_str` with our error type.
trait FromStrChecked {
    fn from_str_checked(s: &str) -> Result<tokio_postgres::Config, SyncError>;
}

impl FromStrChecked for tokio_postgres::Config {
    fn from_str_checked(s: &str) -> Result<tokio_postgres::Config, SyncError> {
        s.parse::<tokio_postgres::Config>()
            .map_err(|e| SyncError::Config(format!("invalid Postgres URL: {e}")))
    }
}

/// Parses a job's URL (validated by [`JobConfig::validate`]).
pub fn pg_config(url: &str) -> Result<tokio_postgres::Config, SyncError> {
    tokio_postgres::Config::from_str_checked(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobConfig {
        toml::from_str::<SyncFile>(
            r#"
            [[job]]
            name = "policies"
            url = "postgresql://postgres@127.0.0.1:5432/db"
            table = "healthcare.policy_embeddings"
            document_column = "policy_text"
            metadata_columns = ["payer_id", "metadata", "created_at", "user_id"]
            collection = "policies"
            "#,
        )
        .unwrap()
        .job
        .remove(0)
    }

    #[test]
    fn defaults_and_columns() {
        let j = job();
        j.validate().unwrap();
        assert_eq!(j.space, Space::Cosine);
        assert_eq!(j.mode, FollowMode::Logical);
        assert_eq!(j.slot_name(), "vectord_policies");
        assert_eq!(j.qualified_table(), "\"healthcare\".\"policy_embeddings\"");
        let cols: Vec<_> = j.columns().collect();
        assert_eq!(
            cols,
            [
                "id",
                "embedding",
                "policy_text",
                "payer_id",
                "metadata",
                "created_at",
                "user_id"
            ]
        );
        assert_eq!(j.metadata_start(), 3);
    }

    #[test]
    fn rejects_injection_and_duplicates() {
        let mut j = job();
        j.table = "x; drop table y".into();
        assert!(j.validate().is_err());
        let mut j = job();
        j.metadata_columns.push("id".into());
        assert!(j.validate().is_err());
        let mut j = job();
        j.url = "postgresql://[".into();
        assert!(j.validate().is_err());
    }
}
