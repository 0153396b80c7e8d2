//! Chroma's `where` / `where_document` filters: JSON → typed AST (with Chroma's validation
//! messages) and evaluation against one record's metadata and document.
//!
//! - the public tree: [`Filter`], [`MetadataOp`], [`DocumentOp`] and their operands.
//! - parsing: [`parse_where`], [`parse_where_document`], [`parse`] follow Chroma 1.5.9's
//!   `rust/types/src/where_parsing.rs` rule for rule; every rejection is a [`FilterError`] whose
//!   `Display` is the message Chroma sends.
//! - evaluation: [`Filter::matches`], with the semantics of Chroma's reference model
//!   (`chromadb/test/property/test_filtering.py`) and exact int/float comparison.
//!
//! Semantics in brief: positive metadata operators (`$eq`, ranges, `$in`, `$contains`) are false
//! for a missing key or another type; `$ne`, `$nin`, `$not_contains` are their complements.
//! `$contains` on metadata matches array values only. Document `$contains` is a case-sensitive
//! substring test, `$regex` an unanchored Rust-`regex` search; records without a document fail
//! the positive forms and pass the negative ones.

mod ast;
mod eval;
mod parse;

#[cfg(test)]
pub(crate) mod proptests;

pub use ast::{DocumentOp, Filter, MetadataOp, Number, Scalar, ScalarSet};
pub use parse::{parse_where, parse_where_document, MAX_DEPTH, MAX_REGEXES, REGEX_SIZE_LIMIT};

use serde_json::Value;

/// Parses a request's `where` and `where_document`: an absent or `null` clause is no filter, and
/// when both are present the result is their conjunction. `where` is validated first, so its
/// error wins when both are invalid (as in Chroma).
pub fn parse(
    where_: Option<&Value>,
    where_document: Option<&Value>,
) -> Result<Option<Filter>, FilterError> {
    fn present(v: Option<&Value>) -> Option<&Value> {
        v.filter(|v| !v.is_null())
    }
    let w = present(where_).map(parse_where).transpose()?;
    let wd = present(where_document)
        .map(parse_where_document)
        .transpose()?;
    Ok(match (w, wd) {
        (Some(w), Some(wd)) => Some(w.and(wd)),
        (w, wd) => w.or(wd),
    })
}

/// A `where` / `where_document` clause Chroma would reject, with Chroma's message.
/// The HTTP layer answers every variant with 400 `InvalidArgumentError` and `to_string()`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// Any malformed `where` (Chroma's `WhereValidationError::WhereClause`).
    #[error("Invalid where clause")]
    InvalidWhere,
    /// Any malformed `where_document` (Chroma's `WhereValidationError::WhereDocumentClause`).
    #[error("Invalid where document clause")]
    InvalidWhereDocument,
    /// A `$regex` / `$not_regex` pattern that does not parse; the payload is the `regex-syntax`
    /// error text, as in Chroma's `ChromaRegexError::RegexSyntax` (the typo is Chroma's).
    #[error("Regex syntax errror: {0}")]
    RegexSyntax(String),
    /// A pattern using byte classes such as `(?-u:\w)` (Chroma's `ChromaRegexError::BytePattern`).
    #[error("Byte pattern is not allowed")]
    BytePattern,
    /// A pattern whose compiled program exceeds [`REGEX_SIZE_LIMIT`]. Chroma would accept it at
    /// validation and fail later; the text is the `regex` crate's, with Chroma's regex prefix.
    #[error("Regex syntax errror: Compiled regex exceeds size limit of {limit} bytes.")]
    RegexTooBig {
        /// The size limit in bytes.
        limit: usize,
    },
    /// More than [`MAX_REGEXES`] patterns in one clause (vectord's limit; Chroma has none).
    #[error("Too many regex patterns in one filter clause (at most {max})")]
    TooManyRegexes {
        /// The limit.
        max: usize,
    },
    /// `$and`/`$or` nested deeper than [`MAX_DEPTH`] (vectord's limit; unreachable through
    /// the JSON body parser, whose recursion limit is lower).
    #[error("Invalid {clause} clause: nested more than {max} levels deep")]
    TooDeep {
        /// `"where"` or `"where document"`.
        clause: &'static str,
        /// The limit.
        max: usize,
    },
}
