//! TEMPORARY stand-in for `crate::filter::parse` (being written on the `filter` branch, same
//! signature): only "no filter" is accepted until it lands on `main`; any `where` or
//! `where_document` is rejected with Chroma's "Invalid where clause".

use serde_json::Value;

use crate::filter::{Filter, FilterError};

/// Parses `where` and `where_document`; JSON `null` counts as absent.
pub fn parse_filter(
    where_: Option<&Value>,
    where_document: Option<&Value>,
) -> Result<Option<Filter>, FilterError> {
    let present = |v: Option<&Value>| v.is_some_and(|v| !v.is_null());
    if present(where_) || present(where_document) {
        return Err(FilterError::InvalidWhere);
    }
    Ok(None)
}
