//! Server settings from command-line flags and the environment.
//!
//! Precedence for every setting: the flag, then `VECTORD_*`, then Chroma's own variable where
//! Chroma has one (`CHROMA_SERVER_HOST`, `CHROMA_SERVER_HTTP_PORT`, `PERSIST_DIRECTORY`,
//! `ALLOW_RESET`), then the default. Auth also reads Chroma's `CHROMA_SERVER_AUTHN_CREDENTIALS`
//! (one admin token) and `CHROMA_AUTH_TOKEN_TRANSPORT_HEADER`. This is the only module that
//! reads the environment.

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
    /// Token file enabling auth: sha256 of each token → user, tenant, databases, role; reloaded
    /// when it changes or on SIGHUP (env `VECTORD_AUTH_TOKENS`)
    #[arg(long)]
    pub auth_tokens: Option<PathBuf>,
    /// Also serve `/metrics`, without auth, on this port (env `VECTORD_METRICS_PORT`)
    #[arg(long)]
    pub metrics_port: Option<u16>,
}

/// Which header carries a bearer token (Chroma's `CHROMA_AUTH_TOKEN_TRANSPORT_HEADER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenHeader {
    /// Unset: `Authorization: Bearer` and `X-Chroma-Token` are both accepted.
    #[default]
    Any,
    /// Only `Authorization: Bearer <token>`.
    Authorization,
    /// Only `X-Chroma-Token: <token>`.
    XChromaToken,
}

/// A secret from the environment; `Debug` never prints it, so settings can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
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
    /// Token file (`--auth-tokens`); with it or `admin_token`, every non-public route needs a token.
    pub auth_tokens: Option<PathBuf>,
    /// One admin token for every tenant and database (Chroma's `CHROMA_SERVER_AUTHN_CREDENTIALS`).
    pub admin_token: Option<Secret>,
    /// Header that carries bearer tokens.
    pub token_header: TokenHeader,
    /// Port of the separate, unauthenticated `/metrics` listener (same host).
    pub metrics_port: Option<u16>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            path: PathBuf::from(DEFAULT_PATH),
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            allow_reset: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            auth_tokens: None,
            admin_token: None,
            token_header: TokenHeader::Any,
            metrics_port: None,
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
        let auth_tokens = args
            .auth_tokens
            .or_else(|| first(&["VECTORD_AUTH_TOKENS"]).map(|(_, v)| PathBuf::from(v)));
        let admin_token = first(&["CHROMA_SERVER_AUTHN_CREDENTIALS"]).map(|(_, v)| Secret(v));
        let token_header = match first(&["CHROMA_AUTH_TOKEN_TRANSPORT_HEADER"]) {
            None => TokenHeader::Any,
            Some((var, v)) => match v.trim().to_ascii_lowercase().as_str() {
                "authorization" => TokenHeader::Authorization,
                "x-chroma-token" | "x_chroma_token" => TokenHeader::XChromaToken,
                _ => {
                    return Err(ConfigError::InvalidEnv {
                        var,
                        value: v,
                        reason: "expected Authorization or X-Chroma-Token",
                    })
                }
            },
        };
        let metrics_port = match args.metrics_port {
            Some(p) => Some(p),
            None => match first(&["VECTORD_METRICS_PORT"]) {
                Some((var, v)) => Some(v.trim().parse().map_err(|_| ConfigError::InvalidEnv {
                    var,
                    value: v,
                    reason: "expected a port number 0-65535",
                })?),
                None => None,
            },
        };
        Ok(Settings {
            path,
            host,
            port,
            allow_reset,
            max_body_bytes,
            auth_tokens,
            admin_token,
            token_header,
            metrics_port,
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

    #[test]
    fn auth_and_metrics_settings() {
        let s = Settings::resolve(
            RunArgs::default(),
            env(&[
                ("CHROMA_SERVER_AUTHN_CREDENTIALS", "s3cret"),
                ("CHROMA_AUTH_TOKEN_TRANSPORT_HEADER", "X-Chroma-Token"),
                ("VECTORD_AUTH_TOKENS", "/etc/tokens.json"),
                ("VECTORD_METRICS_PORT", "9091"),
            ]),
        )
        .unwrap();
        assert_eq!(s.admin_token, Some(Secret("s3cret".into())));
        assert!(
            !format!("{s:?}").contains("s3cret"),
            "secrets are never printed"
        );
        assert_eq!(s.token_header, TokenHeader::XChromaToken);
        assert_eq!(s.auth_tokens, Some(PathBuf::from("/etc/tokens.json")));
        assert_eq!(s.metrics_port, Some(9091));
        let bad = env(&[("CHROMA_AUTH_TOKEN_TRANSPORT_HEADER", "Cookie")]);
        assert!(Settings::resolve(RunArgs::default(), bad).is_err());
    }
}
