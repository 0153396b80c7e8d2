//! The one error of configuration: a flag or variable that cannot be used.

use std::path::PathBuf;

/// A setting given in the environment that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A variable holds a value of the wrong form.
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    InvalidEnv {
        /// The variable's name.
        var: &'static str,
        /// What it held.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
    /// The body limit is zero.
    #[error("--max-body-bytes must be at least 1")]
    ZeroBodyLimit,
    /// An embedder setting is out of range.
    #[error("{0}")]
    InvalidEmbed(String),
    /// The API key file cannot be read.
    #[error("cannot read the embedding API key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A limit flag (timeouts, counts) out of range.
    #[error("{0}")]
    InvalidLimit(String),
    /// A `--snapshot-every` value that is not a positive interval.
    #[error("--snapshot-every {0:?} is not an interval like 30m, 6h or 1d (at least 1m)")]
    InvalidInterval(String),
}
