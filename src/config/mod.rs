//! Server settings from command-line flags and the environment.
//!
//! Precedence for every setting: the flag, then `VECTORD_*`, then Chroma's own variable where
//! Chroma has one (`CHROMA_SERVER_HOST`, `CHROMA_SERVER_HTTP_PORT`, `PERSIST_DIRECTORY`,
//! `ALLOW_RESET`), then the default. Auth also reads Chroma's `CHROMA_SERVER_AUTHN_CREDENTIALS`
//! (one admin token) and `CHROMA_AUTH_TOKEN_TRANSPORT_HEADER`. This is the only module that
//! reads the environment. The embedder's API key is read only from the environment or a file,
//! never from a flag (flags show in `ps`).
//!
//! Two stages, as ripgrep's low and high arguments: clap parses raw flags ([`RunArgs`], with
//! `None` for "not given"), then [`Settings::resolve`] validates them against the environment.
//! One file per concern; the items are re-exported here, so callers name `config::Settings`:
//! - `args.rs`: [`RunArgs`], the `vectord run` flags.
//! - `settings.rs`: [`Settings`], the validated result, and its defaults.
//! - `limits.rs`: [`Limits`], timeouts, backpressure and size caps, with their flags.
//! - `embed.rs`: the server-side embedder's flags ([`EmbedArgs`]) and their checks.
//! - `s3.rs`: where a snapshot bucket lives ([`S3Args`], [`S3Settings`]).
//! - `env.rs`: reading one flag-or-variable, and [`Secret`].
//! - `error.rs`: [`ConfigError`], the one error of them all.

mod args;
mod embed;
mod env;
mod error;
mod limits;
mod s3;
mod settings;

pub use args::RunArgs;
pub use embed::EmbedArgs;
pub use env::Secret;
pub use error::ConfigError;
pub use limits::{
    LimitArgs, Limits, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT,
    DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_COLLECTIONS, DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_MAX_METADATA_BYTES, DEFAULT_MAX_N_RESULTS, DEFAULT_MEMTABLE_BUDGET_MB,
    DEFAULT_QUEUE_TIMEOUT, DEFAULT_SHUTDOWN_DRAIN,
};
pub use s3::{S3Args, S3Settings};
pub use settings::{
    parse_interval, Settings, TokenHeader, DEFAULT_HOST, DEFAULT_MAX_BODY_BYTES, DEFAULT_PATH,
    DEFAULT_PORT, DEFAULT_SCRUB_EVERY, DEFAULT_SNAPSHOT_KEEP,
};
