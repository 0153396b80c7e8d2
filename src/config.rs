//! Server settings from command-line flags and the environment.
//!
//! Precedence for every setting: the flag, then `VECTORD_*`, then Chroma's own variable where
//! Chroma has one (`CHROMA_SERVER_HOST`, `CHROMA_SERVER_HTTP_PORT`, `PERSIST_DIRECTORY`,
//! `ALLOW_RESET`), then the default. This is the only module that reads the environment.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Default data folder, relative to the working directory (like Chroma's `./chroma_data`).
pub const DEFAULT_PATH: &str = "./vectord_data";
/// Default bind host (Chroma binds `localhost`).
pub const DEFAULT_HOST: &str = "localhost";
/// Default port (Chroma's).
pub const DEFAULT_PORT: u16 = 8000;
/// Default request body limit: Chroma's `max_payload_size_bytes`, 40 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 40 * 1024 * 1024;

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
    /// pgvector sync jobs to run inside the server: a TOML or JSON file of `[[job]]` entries
    /// (env `VECTORD_SYNC_CONFIG`)
    #[arg(long)]
    pub sync_config: Option<PathBuf>,
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
    /// pgvector sync job file, if any.
    pub sync_config: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            path: PathBuf::from(DEFAULT_PATH),
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            allow_reset: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            sync_config: None,
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
        let sync_config = args
            .sync_config
            .or_else(|| first(&["VECTORD_SYNC_CONFIG"]).map(|(_, v)| PathBuf::from(v)));
        Ok(Settings {
            path,
            host,
            port,
            allow_reset,
            max_body_bytes,
            sync_config,
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
}
