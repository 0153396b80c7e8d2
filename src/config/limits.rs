//! Server limits that protect the process from one caller: connection timeouts (slow clients),
//! a cap on requests in flight (backpressure), and per-request size caps that Chroma leaves to
//! its clients (batch rows, `n_results`) or does not have (number of collections).
//!
//! Each limit is a `vectord run` flag with a `VECTORD_*` variable; the record-level caps that
//! never change (id, document, dimension) stay constants in [`crate::types`].

use std::time::Duration;

use super::env::flag_or_env;
use super::error::ConfigError;

/// Default time a client has to send a request's headers (also closes idle keep-alive
/// connections): long enough for any real client, short enough that slowloris cannot pin
/// connections.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a client has to send a request's whole body once its headers arrived (40 MiB
/// at ~1 MB/s fits).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time a stopping server waits for in-flight requests before it stops waiting and
/// flushes: with the final flush it must fit well inside fly.toml's `kill_timeout` (30 s), which
/// the body read timeout alone (60 s) would not. Acknowledged writes are in the WAL already, so
/// cutting a slow request short loses nothing that was acknowledged.
pub const DEFAULT_SHUTDOWN_DRAIN: Duration = Duration::from_secs(15);
/// Default cap on API requests being served at once (beyond it they queue).
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 256;
/// Default time a request may wait for a slot before it is refused with 429.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on rows of one write (ids) or query (embeddings/texts) — above Chroma's
/// advertised `max_batch_size`, which clients already respect.
pub const DEFAULT_MAX_BATCH_ROWS: usize = 100_000;
/// Default cap on `n_results` of one query.
pub const DEFAULT_MAX_N_RESULTS: u32 = 100_000;
/// Default cap on collections in the whole server (each holds a lock file, a WAL file and maps).
pub const DEFAULT_MAX_COLLECTIONS: usize = 100_000;
/// Default cap on one record's metadata, as its JSON size in bytes.
pub const DEFAULT_MAX_METADATA_BYTES: usize = 4 * 1024 * 1024;
/// Default memory budget of all memtables, in MiB (why 2 GiB:
/// [`crate::engine::DEFAULT_MEMTABLE_BUDGET_BYTES`]).
pub const DEFAULT_MEMTABLE_BUDGET_MB: usize = crate::engine::DEFAULT_MEMTABLE_BUDGET_BYTES >> 20;

/// `vectord run` flags for the limits; `None` means "not given".
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LimitArgs {
    /// Seconds a client has to send request headers; also closes idle keep-alive connections
    /// (env `VECTORD_HEADER_READ_TIMEOUT_SECS`) [default: 30]
    #[arg(long)]
    pub header_read_timeout_secs: Option<f64>,
    /// Seconds a client has to send the whole request body (env `VECTORD_BODY_READ_TIMEOUT_SECS`)
    /// [default: 60]
    #[arg(long)]
    pub body_read_timeout_secs: Option<f64>,
    /// Seconds a stopping server waits for in-flight requests before it flushes and exits
    /// anyway; keep it well below the platform's kill timeout (env `VECTORD_SHUTDOWN_DRAIN_SECS`)
    /// [default: 15]
    #[arg(long)]
    pub shutdown_drain_secs: Option<f64>,
    /// API requests served at once; more wait in a queue (env `VECTORD_MAX_CONCURRENT_REQUESTS`)
    /// [default: 256]
    #[arg(long)]
    pub max_concurrent_requests: Option<usize>,
    /// Seconds a queued request waits for a slot before a 429 `RateLimitError`
    /// (env `VECTORD_QUEUE_TIMEOUT_SECS`) [default: 5]
    #[arg(long)]
    pub queue_timeout_secs: Option<f64>,
    /// Rows of one add/upsert/update/delete (ids) or query (embeddings) (env `VECTORD_MAX_BATCH_ROWS`)
    /// [default: 100000]
    #[arg(long)]
    pub max_batch_rows: Option<usize>,
    /// Largest `n_results` of a query (env `VECTORD_MAX_N_RESULTS`) [default: 100000]
    #[arg(long)]
    pub max_n_results: Option<u32>,
    /// Collections in the whole server (env `VECTORD_MAX_COLLECTIONS`) [default: 100000]
    #[arg(long)]
    pub max_collections: Option<usize>,
    /// Bytes of one record's metadata, as JSON (env `VECTORD_MAX_METADATA_BYTES`) [default: 4194304]
    #[arg(long)]
    pub max_metadata_bytes: Option<usize>,
    /// MiB of memory all collections' memtables may hold (estimated); from 7/8 of it the
    /// largest flush first, past it writes that add rows wait (`--write-stall-secs`), then get 429
    /// (env `VECTORD_MEMTABLE_BUDGET_MB`) [default: 2048; about a quarter of RAM on small machines]
    #[arg(long)]
    pub memtable_budget_mb: Option<usize>,
    /// Rows at which a collection's memtable is flushed to a segment; writes stall at twice
    /// this per collection. Smaller: less memory, more segments and compactions
    /// (env `VECTORD_MEMTABLE_ROWS`) [default: 65536]
    #[arg(long)]
    pub memtable_rows: Option<usize>,
    /// Seconds a write that adds rows waits for a flush when memtables are full (the
    /// collection's 2 × `--memtable-rows`, or the budget) before a 429 `RateLimitError`.
    /// Raise it for bulk loads by clients that do not retry 429s
    /// (env `VECTORD_WRITE_STALL_SECS`) [default: 10]
    #[arg(long)]
    pub write_stall_secs: Option<f64>,
}

/// The limits the server runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to receive a request's headers (hyper closes the connection after it).
    pub header_read_timeout: Duration,
    /// Time to receive a request's body (408 after it).
    pub body_read_timeout: Duration,
    /// How long shutdown waits for in-flight requests (and sync jobs) before flushing.
    pub shutdown_drain: Duration,
    /// Requests served at once (open routes — heartbeat, version, healthcheck — are not counted).
    pub max_concurrent_requests: usize,
    /// Time a request waits for a slot before 429.
    pub queue_timeout: Duration,
    /// Rows in one write or query.
    pub max_batch_rows: usize,
    /// Largest `n_results`.
    pub max_n_results: u32,
    /// Collections in the server.
    pub max_collections: usize,
    /// Bytes of one record's metadata as JSON.
    pub max_metadata_bytes: usize,
    /// Bytes all memtables may hold before writes stall (the catalog's memtable budget).
    pub memtable_budget_bytes: usize,
    /// Memtable rows at which a collection flushes.
    pub memtable_rows: usize,
    /// How long a write that adds rows waits for room before 429.
    pub write_stall: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            shutdown_drain: DEFAULT_SHUTDOWN_DRAIN,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            max_batch_rows: DEFAULT_MAX_BATCH_ROWS,
            max_n_results: DEFAULT_MAX_N_RESULTS,
            max_collections: DEFAULT_MAX_COLLECTIONS,
            max_metadata_bytes: DEFAULT_MAX_METADATA_BYTES,
            memtable_budget_bytes: crate::engine::DEFAULT_MEMTABLE_BUDGET_BYTES,
            memtable_rows: crate::engine::DEFAULT_MEMTABLE_ROWS,
            write_stall: crate::engine::DEFAULT_WRITE_STALL,
        }
    }
}

impl Limits {
    /// Resolves the flags against an environment lookup; every value must be positive.
    pub fn resolve(
        args: LimitArgs,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let secs = |flag: Option<f64>, var: &'static str, default: Duration| {
            let v = flag_or_env(flag, env, var, "expected seconds, e.g. 30 or 0.5", |v| {
                v.parse().ok()
            })?;
            match v {
                None => Ok(default),
                Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => {
                    Ok(Duration::from_secs_f64(s))
                }
                Some(s) => Err(ConfigError::InvalidLimit(format!(
                    "{var}: must be between 0 and 86400 seconds, got {s}"
                ))),
            }
        };
        let count = |flag: Option<usize>, var: &'static str, default: usize| match flag_or_env(
            flag,
            env,
            var,
            "expected a positive count",
            |v| v.parse().ok(),
        )? {
            None => Ok(default),
            Some(0) => Err(ConfigError::InvalidLimit(format!(
                "{var}: must be at least 1"
            ))),
            Some(n) => Ok(n),
        };
        Ok(Limits {
            header_read_timeout: secs(
                args.header_read_timeout_secs,
                "VECTORD_HEADER_READ_TIMEOUT_SECS",
                d.header_read_timeout,
            )?,
            body_read_timeout: secs(
                args.body_read_timeout_secs,
                "VECTORD_BODY_READ_TIMEOUT_SECS",
                d.body_read_timeout,
            )?,
            shutdown_drain: secs(
                args.shutdown_drain_secs,
                "VECTORD_SHUTDOWN_DRAIN_SECS",
                d.shutdown_drain,
            )?,
            max_concurrent_requests: count(
                args.max_concurrent_requests,
                "VECTORD_MAX_CONCURRENT_REQUESTS",
                d.max_concurrent_requests,
            )?,
            queue_timeout: secs(
                args.queue_timeout_secs,
                "VECTORD_QUEUE_TIMEOUT_SECS",
                d.queue_timeout,
            )?,
            max_batch_rows: count(
                args.max_batch_rows,
                "VECTORD_MAX_BATCH_ROWS",
                d.max_batch_rows,
            )?,
            max_n_results: u32::try_from(count(
                args.max_n_results.map(|n| n as usize),
                "VECTORD_MAX_N_RESULTS",
                d.max_n_results as usize,
            )?)
            .unwrap_or(u32::MAX),
            max_collections: count(
                args.max_collections,
                "VECTORD_MAX_COLLECTIONS",
                d.max_collections,
            )?,
            max_metadata_bytes: count(
                args.max_metadata_bytes,
                "VECTORD_MAX_METADATA_BYTES",
                d.max_metadata_bytes,
            )?,
            memtable_budget_bytes: count(
                args.memtable_budget_mb,
                "VECTORD_MEMTABLE_BUDGET_MB",
                DEFAULT_MEMTABLE_BUDGET_MB,
            )?
            .saturating_mul(1 << 20),
            memtable_rows: count(args.memtable_rows, "VECTORD_MEMTABLE_ROWS", d.memtable_rows)?,
            write_stall: secs(
                args.write_stall_secs,
                "VECTORD_WRITE_STALL_SECS",
                d.write_stall,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_then_env_then_defaults() {
        let env = |k: &str| match k {
            "VECTORD_MAX_N_RESULTS" => Some("50".to_string()),
            "VECTORD_QUEUE_TIMEOUT_SECS" => Some("0.25".to_string()),
            _ => None,
        };
        let l = Limits::resolve(
            LimitArgs {
                max_batch_rows: Some(7),
                ..Default::default()
            },
            &env,
        )
        .unwrap();
        assert_eq!(l.max_batch_rows, 7);
        assert_eq!(l.max_n_results, 50);
        assert_eq!(l.queue_timeout, Duration::from_millis(250));
        assert_eq!(l.header_read_timeout, DEFAULT_HEADER_READ_TIMEOUT);
        assert_eq!(l.shutdown_drain, Duration::from_secs(15));
        assert_eq!(l.memtable_budget_bytes, 2048 << 20);
        assert_eq!(l.memtable_rows, 65_536);
        assert_eq!(l.write_stall, Duration::from_secs(10));
        let small = Limits::resolve(
            LimitArgs {
                memtable_budget_mb: Some(64),
                write_stall_secs: Some(300.0),
                ..Default::default()
            },
            &|k: &str| match k {
                "VECTORD_MEMTABLE_ROWS" => Some("200".to_string()),
                "VECTORD_SHUTDOWN_DRAIN_SECS" => Some("2.5".to_string()),
                _ => None,
            },
        )
        .unwrap();
        assert_eq!(small.shutdown_drain, Duration::from_millis(2500));
        assert_eq!(
            (small.memtable_budget_bytes, small.memtable_rows),
            (64 << 20, 200)
        );
        assert_eq!(small.write_stall, Duration::from_secs(300));
        let zero = Limits::resolve(
            LimitArgs {
                max_concurrent_requests: Some(0),
                ..Default::default()
            },
            &|_: &str| None,
        );
        assert!(zero.is_err());
        let bad = Limits::resolve(LimitArgs::default(), &|k: &str| {
            (k == "VECTORD_BODY_READ_TIMEOUT_SECS").then(|| "soon".to_string())
        });
        assert!(matches!(bad, Err(ConfigError::InvalidEnv { .. })));
    }
}
