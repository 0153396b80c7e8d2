//! The validated settings the server runs with, their defaults, and the resolution of the
//! `vectord run` flags against the environment.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::args::RunArgs;
use super::embed::resolve_embed;
use super::env::{parse_bool, parse_found, Secret};
use super::error::ConfigError;
use super::limits::Limits;
use super::s3::S3Settings;
use crate::embed::EmbedSettings;

/// Default data folder, relative to the working directory (like Chroma's `./chroma_data`).
pub const DEFAULT_PATH: &str = "./vectord_data";
/// Default bind host (Chroma binds `localhost`).
pub const DEFAULT_HOST: &str = "localhost";
/// Default port (Chroma's).
pub const DEFAULT_PORT: u16 = 8000;
/// Default request body limit: Chroma's `max_payload_size_bytes`, 40 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 40 * 1024 * 1024;
/// Default interval of the background scrub: often enough to find silent damage long before
/// the 30 daily snapshots that could replace it rotate out.
pub const DEFAULT_SCRUB_EVERY: Duration = Duration::from_secs(6 * 3600);
/// Default number of snapshots kept (the current deployment keeps 30 daily volume snapshots).
pub const DEFAULT_SNAPSHOT_KEEP: usize = 30;

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
    /// The server-side embedder (disabled unless a base URL or key is configured).
    pub embed: EmbedSettings,
    /// Where snapshots are written.
    pub snapshot_dir: PathBuf,
    /// Interval of scheduled snapshots; `None` turns them off.
    pub snapshot_every: Option<Duration>,
    /// How many snapshots to keep.
    pub snapshot_keep: usize,
    /// Interval of the background scrub; `None` turns it off.
    pub scrub_every: Option<Duration>,
    /// Audit log file; `None` logs audit events through `tracing`.
    pub audit_log: Option<PathBuf>,
    /// pgvector sync job file, if any.
    pub sync_config: Option<PathBuf>,
    /// Bucket that receives a copy of every snapshot, if any.
    pub snapshot_s3: Option<S3Settings>,
    /// Whether readiness waits for every sync job to catch up once.
    pub ready_after_sync: bool,
    /// Timeouts, backpressure and size caps.
    pub limits: Limits,
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
            embed: EmbedSettings::default(),
            snapshot_dir: PathBuf::from(DEFAULT_PATH).join("snapshots"),
            snapshot_every: None,
            snapshot_keep: DEFAULT_SNAPSHOT_KEEP,
            scrub_every: Some(DEFAULT_SCRUB_EVERY),
            audit_log: None,
            sync_config: None,
            snapshot_s3: None,
            ready_after_sync: false,
            limits: Limits::default(),
        }
    }
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
            None => parse_found(
                first(&["VECTORD_PORT", "CHROMA_SERVER_HTTP_PORT"]),
                PORT,
                number,
            )?
            .unwrap_or(DEFAULT_PORT),
        };
        let allow_reset = args.allow_reset
            || parse_found(
                first(&["VECTORD_ALLOW_RESET", "ALLOW_RESET"]),
                BOOL,
                parse_bool,
            )?
            .unwrap_or(false);
        let max_body_bytes = match args.max_body_bytes {
            Some(n) => n,
            None => parse_found(
                first(&["VECTORD_MAX_BODY_BYTES"]),
                "expected a byte count",
                number,
            )?
            .unwrap_or(DEFAULT_MAX_BODY_BYTES),
        };
        if max_body_bytes == 0 {
            return Err(ConfigError::ZeroBodyLimit);
        }
        let auth_tokens = args
            .auth_tokens
            .or_else(|| first(&["VECTORD_AUTH_TOKENS"]).map(|(_, v)| PathBuf::from(v)));
        let admin_token = first(&["CHROMA_SERVER_AUTHN_CREDENTIALS"]).map(|(_, v)| Secret(v));
        let token_header = parse_found(
            first(&["CHROMA_AUTH_TOKEN_TRANSPORT_HEADER"]),
            "expected Authorization or X-Chroma-Token",
            |v| match v.trim().to_ascii_lowercase().as_str() {
                "authorization" => Some(TokenHeader::Authorization),
                "x-chroma-token" | "x_chroma_token" => Some(TokenHeader::XChromaToken),
                _ => None,
            },
        )?
        .unwrap_or(TokenHeader::Any);
        let metrics_port = match args.metrics_port {
            Some(p) => Some(p),
            None => parse_found(first(&["VECTORD_METRICS_PORT"]), PORT, number)?,
        };
        let embed = resolve_embed(args.embed, &env)?;
        let limits = Limits::resolve(args.limits, &env)?;
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
        let scrub_every = match args
            .scrub_every
            .or_else(|| first(&["VECTORD_SCRUB_EVERY"]).map(|(_, v)| v))
        {
            Some(v) if v.trim() == "0" || v.trim() == "off" => None,
            // Seconds are allowed here (tests); a scrub only reads.
            Some(v) => Some(parse_scrub_interval(&v).ok_or(ConfigError::InvalidInterval(v))?),
            None => Some(DEFAULT_SCRUB_EVERY),
        };
        let snapshot_keep = match args.snapshot_keep {
            Some(n) => n,
            None => parse_found(
                first(&["VECTORD_SNAPSHOT_KEEP"]),
                "expected a count",
                number,
            )?
            .unwrap_or(DEFAULT_SNAPSHOT_KEEP),
        }
        .max(1);
        let audit_log = args
            .audit_log
            .or_else(|| first(&["VECTORD_AUDIT_LOG"]).map(|(_, v)| PathBuf::from(v)));
        let sync_config = args
            .sync_config
            .or_else(|| first(&["VECTORD_SYNC_CONFIG"]).map(|(_, v)| PathBuf::from(v)));
        let snapshot_s3 = args
            .snapshot_s3_url
            .or_else(|| first(&["VECTORD_SNAPSHOT_S3_URL"]).map(|(_, v)| v))
            .map(|url| S3Settings::resolve(url, args.s3, &env));
        let ready_after_sync = args.ready_after_sync
            || parse_found(first(&["VECTORD_READY_AFTER_SYNC"]), BOOL, parse_bool)?
                .unwrap_or(false);
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
            embed,
            snapshot_dir,
            snapshot_every,
            snapshot_keep,
            scrub_every,
            audit_log,
            sync_config,
            snapshot_s3,
            ready_after_sync,
            limits,
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

/// Why a port variable is refused.
const PORT: &str = "expected a port number 0-65535";
/// Why a yes/no variable is refused.
const BOOL: &str = "expected true/false, 1/0, yes/no or on/off";

/// A number with surrounding white space allowed.
fn number<T: std::str::FromStr>(v: &str) -> Option<T> {
    v.trim().parse().ok()
}

/// `30m`, `6h`, `1d`, `90s` → a duration of at least one minute (shorter would snapshot
/// continuously).
pub fn parse_interval(s: &str) -> Option<Duration> {
    interval_secs(s)
        .filter(|&secs| secs >= 60)
        .map(Duration::from_secs)
}

/// Like [`parse_interval`] without the one-minute floor (at least one second).
fn parse_scrub_interval(s: &str) -> Option<Duration> {
    interval_secs(s)
        .filter(|&secs| secs >= 1)
        .map(Duration::from_secs)
}

/// `<digits><s|m|h|d>` in seconds; `None` for any other form or an overflow.
fn interval_secs(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit.trim() {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::embed::EmbedArgs;
    use crate::config::s3::S3Args;
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
    fn embedder_settings_from_flags_env_and_key_file() {
        let s = Settings::resolve(RunArgs::default(), env(&[])).unwrap();
        assert!(!s.embed.enabled());
        let e = env(&[
            ("OPENAI_API_KEY", "sk-from-openai-env"),
            ("VECTORD_EMBED_DIMENSIONS", "256"),
            ("VECTORD_EMBED_ALLOWED_MODELS", "a, b,,"),
            ("VECTORD_EMBED_TIMEOUT_SECS", "0.5"),
        ]);
        let s = Settings::resolve(RunArgs::default(), &e).unwrap();
        assert!(s.embed.enabled());
        assert_eq!(
            s.embed.api_key.as_ref().unwrap().expose(),
            "sk-from-openai-env"
        );
        assert_eq!(s.embed.effective_base_url(), "https://api.openai.com/v1");
        assert_eq!(s.embed.dimensions, Some(256));
        assert_eq!(s.embed.allowed_models, vec!["a", "b"]);
        assert_eq!(s.embed.timeout, Duration::from_millis(500));
        assert!(!format!("{s:?}").contains("sk-from-openai-env"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "sk-from-file\n").unwrap();
        let args = RunArgs {
            embed: EmbedArgs {
                embed_base_url: Some("http://127.0.0.1:9/v1".into()),
                embed_api_key_file: Some(file),
                embed_model: Some("local".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let s = Settings::resolve(args, &e).unwrap();
        assert_eq!(s.embed.api_key.unwrap().expose(), "sk-from-file");
        assert_eq!(s.embed.model, "local");

        for bad in [
            ("VECTORD_EMBED_BASE_URL", "ftp://x"),
            ("VECTORD_EMBED_CONCURRENCY", "0"),
            ("VECTORD_EMBED_BATCH_SIZE", "5000"),
            ("VECTORD_EMBED_TIMEOUT_SECS", "-1"),
            ("VECTORD_EMBED_API_KEY", "two words"),
        ] {
            let err = Settings::resolve(RunArgs::default(), env(&[bad, ("OPENAI_API_KEY", "k")]))
                .unwrap_err();
            assert!(!err.to_string().contains("two words"), "{err}");
        }
        // Dimensions the default model cannot produce are refused at startup.
        let err = Settings::resolve(
            RunArgs::default(),
            env(&[
                ("OPENAI_API_KEY", "k"),
                ("VECTORD_EMBED_DIMENSIONS", "4000"),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("1536"), "{err}");
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

    #[test]
    fn s3_and_readiness_settings() {
        let e = env(&[
            ("VECTORD_SNAPSHOT_S3_URL", "s3://b/p"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_DEFAULT_REGION", "eu-west-3"),
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "shh"),
            ("VECTORD_READY_AFTER_SYNC", "true"),
        ]);
        let s = Settings::resolve(RunArgs::default(), e).unwrap();
        let s3 = s.snapshot_s3.expect("bucket from env");
        assert_eq!(s3.url, "s3://b/p");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region, "eu-west-3");
        assert_eq!(s3.access_key_id.as_deref(), Some("AKIA"));
        assert_eq!(
            s3.secret_access_key.as_ref().map(Secret::expose),
            Some("shh")
        );
        assert!(!format!("{s3:?}").contains("shh"), "secret in Debug output");
        assert!(s.ready_after_sync);
        // Flags win over the environment.
        let args = RunArgs {
            snapshot_s3_url: Some("s3://flag".into()),
            s3: S3Args {
                snapshot_s3_endpoint: None,
                snapshot_s3_region: Some("us-west-2".into()),
            },
            ..RunArgs::default()
        };
        let s = Settings::resolve(args, env(&[("AWS_REGION", "eu-west-3")])).unwrap();
        let s3 = s.snapshot_s3.expect("bucket from flag");
        assert_eq!(
            (s3.url.as_str(), s3.region.as_str()),
            ("s3://flag", "us-west-2")
        );
        assert!(!s.ready_after_sync);
        assert!(Settings::resolve(
            RunArgs::default(),
            env(&[("VECTORD_READY_AFTER_SYNC", "soon")])
        )
        .is_err());
    }
}
