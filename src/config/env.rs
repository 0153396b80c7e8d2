//! Reading one setting from a flag or the environment, and the wrapper that keeps secrets out
//! of logs.

use super::error::ConfigError;

/// A secret from the environment; `Debug` never prints it, so settings can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A flag, else the first non-empty variable parsed by `parse`, else `None`.
pub(super) fn flag_or_env<T>(
    flag: Option<T>,
    env: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    reason: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, ConfigError> {
    if flag.is_some() {
        return Ok(flag);
    }
    parse_found(
        env(var).filter(|v| !v.trim().is_empty()).map(|v| (var, v)),
        reason,
        |v| parse(v.trim()),
    )
}

/// A variable found by name (`(name, value)`) parsed by `parse`, else `None`; a value `parse`
/// refuses is [`ConfigError::InvalidEnv`] naming the variable, its value and `reason`.
pub(super) fn parse_found<T>(
    found: Option<(&'static str, String)>,
    reason: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, ConfigError> {
    match found {
        Some((var, v)) => match parse(&v) {
            Some(t) => Ok(Some(t)),
            None => Err(ConfigError::InvalidEnv {
                var,
                value: v,
                reason,
            }),
        },
        None => Ok(None),
    }
}

/// `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off`, in any case.
pub(super) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}
