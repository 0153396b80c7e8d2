//! Chroma's naming rules for tenants, databases and collections, with Chroma's messages.
//! Names are only ever compared and stored; they never become file paths.

use std::net::IpAddr;

use super::CatalogError;

/// Shortest tenant and database name.
pub const MIN_NAME_LEN: usize = 3;
/// Longest collection or database name.
pub const MAX_NAME_LEN: usize = 512;

/// Checks a collection or database name: `^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$`,
/// no `..`, and not an IP address.
pub fn validate_name(name: &str) -> Result<(), CatalogError> {
    let bytes = name.as_bytes();
    let edge_ok = |b: u8| b.is_ascii_alphanumeric();
    let inner_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    let ok = (MIN_NAME_LEN..=MAX_NAME_LEN).contains(&bytes.len())
        && bytes.first().copied().is_some_and(edge_ok)
        && bytes.last().copied().is_some_and(edge_ok)
        && bytes.iter().copied().all(inner_ok)
        && !name.contains("..")
        && name.parse::<IpAddr>().is_err();
    if ok {
        Ok(())
    } else {
        Err(CatalogError::InvalidName(name.to_string()))
    }
}

/// Checks a tenant name (Chroma only asks for 3 characters).
pub fn validate_tenant_name(name: &str) -> Result<(), CatalogError> {
    if name.chars().count() < MIN_NAME_LEN {
        return Err(CatalogError::InvalidArgument(format!(
            "Validation error: name: length must be at least min {MIN_NAME_LEN}, got {name:?}"
        )));
    }
    Ok(())
}

/// Checks the `{db}` segment of any route (Chroma checks only the length there).
pub fn validate_database_segment(name: &str) -> Result<(), CatalogError> {
    if name.chars().count() < MIN_NAME_LEN {
        return Err(CatalogError::InvalidArgument(
            "database name must be at least 3 characters".to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_follow_chroma() {
        for ok in ["abc", "a.b", "my_coll-1", "A1b", &"a".repeat(512)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "",
            "_ab",
            "ab_",
            "a..b",
            "a b",
            "192.168.1.1",
            "ab-",
            "é12",
            &"a".repeat(513),
            "1.2.3.4",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_name("ab").unwrap_err().to_string(),
            "Validation error: name: Expected a name containing 3-512 characters from [a-zA-Z0-9._-], \
             starting and ending with a character in [a-zA-Z0-9]. Got: ab"
        );
    }
}
