//! Chroma's `where` / `where_document` filters: JSON → typed AST (with Chroma's validation
//! messages) and evaluation against one record's metadata and document.
//!
//! This file fixes the public interface used by the engine and the HTTP layer.

use crate::types::Metadata;

/// A parsed filter: `where` and `where_document` clauses in one tree.
#[derive(Debug, Clone)]
pub enum Filter {
    /// All children match (an empty list matches everything).
    And(Vec<Filter>),
    /// Any child matches (an empty list matches nothing).
    Or(Vec<Filter>),
}

impl Filter {
    /// True when a record with this metadata and document passes the filter.
    pub fn matches(&self, metadata: Option<&Metadata>, document: Option<&str>) -> bool {
        let _ = (metadata, document);
        match self {
            Filter::And(c) => c.iter().all(|f| f.matches(metadata, document)),
            Filter::Or(c) => c.iter().any(|f| f.matches(metadata, document)),
        }
    }
}

/// A `where` / `where_document` clause Chroma would reject, with Chroma's message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// Invalid `where`.
    #[error("Invalid where clause")]
    InvalidWhere,
}
