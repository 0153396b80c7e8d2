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
        // Chroma echoes the name; a huge one is cut so errors and logs stay small.
        let shown = if name.len() > MAX_NAME_LEN {
            let cut: String = name.chars().take(64).collect();
            format!("{cut}… ({} bytes)", name.len())
        } else {
            name.to_string()
        };
        Err(CatalogError::InvalidName(shown))
    }
}

/// Characters that reorder or hide text (bidirectional overrides and isolates, zero-width
/// marks): a name holding one displays as something it is not in logs and listings.
fn is_deceptive(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}')
}

/// Refuses any tenant, database or collection name (or a `{crn}`/`{job}` path segment) that
/// holds `/`, `\\`, `..`, a control character (NUL included), a bidirectional override or
/// zero-width character, or is longer than [`MAX_NAME_LEN`] bytes. Applied to every route's
/// path parameters and to created tenants, on top of Chroma's own rules.
pub fn check_safe_name(name: &str) -> Result<(), CatalogError> {
    let why = if name.len() > MAX_NAME_LEN {
        Some(format!(
            "longer than {MAX_NAME_LEN} bytes ({} bytes)",
            name.len()
        ))
    } else if name.contains('/') || name.contains('\\') {
        Some("contains a path separator".to_string())
    } else if name.contains("..") {
        Some("contains '..'".to_string())
    } else if name.chars().any(char::is_control) {
        Some("contains a control character".to_string())
    } else if name.chars().any(is_deceptive) {
        Some("contains a bidirectional-override or zero-width character".to_string())
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => {
            // Never echo the name itself: it may be 10 KB or carry terminal controls.
            Err(CatalogError::InvalidArgument(format!(
                "Validation error: name: {why}"
            )))
        }
    }
}

/// Checks a tenant name (Chroma only asks for 3 characters; [`check_safe_name`] on top).
pub fn validate_tenant_name(name: &str) -> Result<(), CatalogError> {
    check_safe_name(name)?;
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

    #[test]
    fn unsafe_names_are_refused() {
        for bad in [
            "../etc",
            "a/b/c",
            "a\\b",
            "ab\0c",
            "ab\ncd",
            "ab\u{202E}cd",
            "ab\u{200B}cd",
            &"x".repeat(10 * 1024),
        ] {
            assert!(check_safe_name(bad).is_err(), "{bad:?}");
            assert!(validate_tenant_name(bad).is_err(), "{bad:?}");
        }
        // Homoglyphs (Cyrillic а) are allowed for tenants: they are just other letters.
        assert!(validate_tenant_name("\u{0430}cme").is_ok());
        assert!(check_safe_name("default_tenant").is_ok());
    }
}
