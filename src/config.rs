//! Server settings from command-line flags and the environment.
//!
//! Precedence for every setting: the flag, then `VECTORD_*`, then Chroma's own variable where
//! Chroma has one (`CHROMA_SERVER_HOST`, `CHROMA_SERVER_HTTP_PORT`, `PERSIST_DIRECTORY`,
//! `ALLOW_RESET`), then the default. This is the only module that reads the environment.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Default data folder, relative to the working directory (like Chroma's `./chroma_data`).
pub const DEFAULT_PATH: &str = "./vectord_data";
/// Default bind host (Chroma binds `localhost`).
pub const DEFAULT_HOST: &str = "localhost";
/// Default port (Chroma's).
pub const DEFAULT_PORT: u16 = 8000;
/// Default request body limit: Chroma's `max_payload_size_bytes`, 40 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 40 * 1024 * 1024;
/// Default number of snapshots kept (the current deployment keeps 30 daily volume snapshots).
pub const DEFAULT_SNAPSHOT_KEEP: usize = 30;

/// Raw `vectord run` flags as clap parses them; `None` means "not given on the command line".
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// Data folder (env `VECTORD_PATH`, or Chroma's `PERSIST_DIRECTORY`) [default: ./vectord_data]
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Host or address to bind (env `VECTORD_HOST`, or `CHROMA_SERVER_HOST`) [default: localhost]
    #[arg(long)]
    pub host: Option<String>,
    /// Port to bind (env `VECTORD_PORT`, or `CHROMA_SERVER_HTTP_PORT`) [default: 8000]
    #[arg(long)]
    pub port: Option<u16>,
    /// Allow `POST /api/v2/reset` to wipe every collection (env `VECTORD_ALLOW_RESET`, or `ALLOW_RESET`)
    #[arg(long)]
    pub allow_reset: bool,
    /// Largest accepted request body in bytes (env `VECTORD_MAX_BODY_BYTES`) [default: 41943040]
    #[arg(long)]
    pub max_body_bytes: Option<usize>,
    /// Folder for snapshots [default: `<path>/snapshots`; same volume, so segments hard-link].
    #[arg(long)]
    pub snapshot_dir: Option<PathBuf>,
    /// Take a snapshot this often (e.g. `24h`, `30m`); off unless set.
    #[arg(long)]
    pub snapshot_every: Option<String>,
    /// Snapshots to keep; older ones are deleted after each new one [default: 30].
    #[arg(long)]
    pub snapshot_keep: Option<usize>,
    /// Append the data-access audit log to this file as JSON lines (env `VECTORD_AUDIT_LOG`)
    /// [default: the `audit` target of the server log].
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
}

/// Validated settings the server runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The data folder (catalog file, collection folders, lock file).
    pub path: PathBuf,
    /// Host name or address to bind.
    pub host: String,
    /// Port to bind (0 picks a free one).
    pub port: u16,
    /// Whether `POST /api/v2/reset` may wipe the data.
    pub allow_reset: bool,
    /// Request body limit in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Where snapshots are written.
    pub snapshot_dir: PathBuf,
    /// Interval of scheduled snapshots; `None` turns them off.
    pub snapshot_every: Option<Duration>,
    /// How many snapshots to keep.
    pub snapshot_keep: usize,
    /// Audit log file; `None` logs audit events through `tracing`.
    pub audit_log: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            path: PathBuf::from(DEFAULT_PATH),
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            allow_reset: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            snapshot_dir: PathBuf::from(DEFAULT_PATH).join("snapshots"),
            snapshot_every: None,
            snapshot_keep: DEFAULT_SNAPSHOT_KEEP,
            audit_log: None,
        }
    }
}

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
    /// A `--snapshot-every` value that is not a positive interval.
    #[error("--snapshot-every {0:?} is not an interval like 30m, 6h or 1d (at least 1m)")]
    InvalidInterval(String),
}

impl Settings {
    /// Resolves flags against the process environment.
    pub fn from_args(args: RunArgs) -> Result<Settings, ConfigError> {
        Settings::resolve(args, |k| std::env::var(k).ok())
    }

    /// Resolves flags against an arbitrary environment lookup (tests pass a map).
    pub fn resolve(
        args: RunArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let first = |names: &[&'static str]| -> Option<(&'static str, String)> {
            names
                .iter()
                .find_map(|n| env(n).filter(|v| !v.is_empty()).map(|v| (*n, v)))
        };
        let path = match args.path {
            Some(p) => p,
            None => first(&["VECTORD_PATH", "PERSIST_DIRECTORY"])
                .map(|(_, v)| PathBuf::from(v))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH)),
        };
        let host = match args.host {
            Some(h) => h,
            None => first(&["VECTORD_HOST", "CHROMA_SERVER_HOST"])
                .map(|(_, v)| v)
                .unwrap_or_else(|| DEFAULT_HOST.to_string()),
        };
        let port = match args.port {
            Some(p) => p,
            None => match first(&["VECTORD_PORT", "CHROMA_SERVER_HTTP_PORT"]) {
                Some((var, v)) => v.trim().parse().map_err(|_| ConfigError::InvalidEnv {
                    var,
                    value: v,
                    reason: "expected a port number 0-65535",
                })?,
                None => DEFAULT_PORT,
            },
        };
        let allow_reset = args.allow_reset
            || match first(&["VECTORD_ALLOW_RESET", "ALLOW_RESET"]) {
                Some((var, v)) => parse_bool(&v).ok_or(ConfigError::InvalidEnv {
                    var,
                    value: v,
                    reason: "expected true/false, 1/0, yes/no or on/off",
                })?,
                None => false,
            };
        let max_body_bytes = match args.max_body_bytes {
            Some(n) => n,
            None => match first(&["VECTORD_MAX_BODY_BYTES"]) {
                Some((var, v)) => v.trim().parse().map_err(|_| ConfigError::InvalidEnv {
                    var,
                    value: v,
                    reason: "expected a byte count",
                })?,
                None => DEFAULT_MAX_BODY_BYTES,
            },
        };
        if max_body_bytes == 0 {
            return Err(ConfigError::ZeroBodyLimit);
        }
        let snapshot_dir = match args.snapshot_dir {
            Some(d) => d,
            None => first(&["VECTORD_SNAPSHOT_DIR"])
                .map(|(_, v)| PathBuf::from(v))
                .unwrap_or_else(|| path.join("snapshots")),
        };
        let snapshot_every = match args
            .snapshot_every
            .or_else(|| first(&["VECTORD_SNAPSHOT_EVERY"]).map(|(_, v)| v))
        {
            Some(v) => Some(parse_interval(&v).ok_or(ConfigError::InvalidInterval(v))?),
            None => None,
        };
        let snapshot_keep = match args.snapshot_keep {
            Some(n) => n,
            None => match first(&["VECTORD_SNAPSHOT_KEEP"]) {
                Some((var, v)) => v.trim().parse().map_err(|_| ConfigError::InvalidEnv {
                    var,
                    value: v,
                    reason: "expected a count",
                })?,
                None => DEFAULT_SNAPSHOT_KEEP,
            },
        }
        .max(1);
        let audit_log = args
            .audit_log
            .or_else(|| first(&["VECTORD_AUDIT_LOG"]).map(|(_, v)| PathBuf::from(v)));
        Ok(Settings {
            path,
            host,
            port,
            allow_reset,
            max_body_bytes,
            snapshot_dir,
            snapshot_every,
            snapshot_keep,
            audit_log,
        })
    }

    /// The socket addresses to try binding, in order. `localhost` maps to 127.0.0.1 only, so the
    /// default never listens on every interface.
    pub fn bind_addrs(&self) -> std::io::Result<Vec<SocketAddr>> {
        if self.host.eq_ignore_ascii_case("localhost") {
            return Ok(vec![SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                self.port,
            )]);
        }
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        Ok((host, self.port).to_socket_addrs()?.collect())
    }
}

/// `30m`, `6h`, `1d`, `90s` → a duration of at least one minute (shorter would snapshot
/// continuously).
pub fn parse_interval(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs >= 60).then(|| Duration::from_secs(secs))
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults_match_chroma() {
        let s = Settings::resolve(RunArgs::default(), env(&[])).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(
            s.bind_addrs().unwrap(),
            vec!["127.0.0.1:8000".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn flag_beats_vectord_env_beats_chroma_env() {
        let e = env(&[
            ("VECTORD_PORT", "9000"),
            ("CHROMA_SERVER_HTTP_PORT", "9100"),
            ("CHROMA_SERVER_HOST", "0.0.0.0"),
        ]);
        let s = Settings::resolve(RunArgs::default(), &e).unwrap();
        assert_eq!((s.port, s.host.as_str()), (9000, "0.0.0.0"));
        let args = RunArgs {
            port: Some(1234),
            ..Default::default()
        };
        assert_eq!(Settings::resolve(args, &e).unwrap().port, 1234);
    }

    #[test]
    fn bad_env_values_are_reported() {
        let err =
            Settings::resolve(RunArgs::default(), env(&[("VECTORD_PORT", "eighty")])).unwrap_err();
        assert!(err.to_string().contains("VECTORD_PORT"));
        assert!(Settings::resolve(RunArgs::default(), env(&[("ALLOW_RESET", "maybe")])).is_err());
        let s = Settings::resolve(RunArgs::default(), env(&[("ALLOW_RESET", "TRUE")])).unwrap();
        assert!(s.allow_reset);
        let args = RunArgs {
            max_body_bytes: Some(0),
            ..Default::default()
        };
        assert_eq!(
            Settings::resolve(args, env(&[])).unwrap_err(),
            ConfigError::ZeroBodyLimit
        );
    }

    #[test]
    fn snapshot_settings() {
        assert_eq!(parse_interval("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_interval(" 1d "), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_interval("59s"), None);
        assert_eq!(parse_interval("h"), None);
        assert_eq!(parse_interval("10x"), None);
        let s = Settings::resolve(
            RunArgs {
                path: Some("/data".into()),
                ..Default::default()
            },
            env(&[
                ("VECTORD_SNAPSHOT_EVERY", "24h"),
                ("VECTORD_SNAPSHOT_KEEP", "7"),
            ]),
        )
        .unwrap();
        assert_eq!(s.snapshot_dir, PathBuf::from("/data/snapshots"));
        assert_eq!(s.snapshot_every, Some(Duration::from_secs(86_400)));
        assert_eq!(s.snapshot_keep, 7);
        let bad = RunArgs {
            snapshot_every: Some("often".into()),
            ..Default::default()
        };
        assert!(matches!(
            Settings::resolve(bad, env(&[])),
            Err(ConfigError::InvalidInterval(_))
        ));
    }
}
