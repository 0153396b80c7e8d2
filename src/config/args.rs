//! The raw `vectord run` flags, as clap parses them (validated by
//! [`Settings::resolve`](super::Settings::resolve)).

use std::path::PathBuf;

use super::embed::EmbedArgs;
use super::limits::LimitArgs;
use super::s3::S3Args;

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
    /// Verify every block of every segment this often, e.g. `6h`; `0` turns it off (env
    /// `VECTORD_SCRUB_EVERY`) [default: 6h]
    #[arg(long)]
    pub scrub_every: Option<String>,
    /// Also copy every snapshot to this S3-compatible bucket and prefix, e.g.
    /// `s3://backups/vectord` (env `VECTORD_SNAPSHOT_S3_URL`); `--snapshot-keep` applies there too
    #[arg(long)]
    pub snapshot_s3_url: Option<String>,
    /// Endpoint and region of the bucket.
    #[command(flatten)]
    pub s3: S3Args,
    /// Report not ready (503 from `/api/v2/healthcheck`) until every sync job has loaded its
    /// initial snapshot and caught up once (env `VECTORD_READY_AFTER_SYNC`)
    #[arg(long)]
    pub ready_after_sync: bool,
    /// Append the data-access audit log to this file as JSON lines (env `VECTORD_AUDIT_LOG`)
    /// [default: the `audit` target of the server log].
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// pgvector sync jobs to run inside the server: a TOML or JSON file of `[[job]]` entries
    /// (env `VECTORD_SYNC_CONFIG`)
    #[arg(long)]
    pub sync_config: Option<PathBuf>,
    /// Token file enabling auth: sha256 of each token → user, tenant, databases, role; reloaded
    /// when it changes or on SIGHUP (env `VECTORD_AUTH_TOKENS`)
    #[arg(long)]
    pub auth_tokens: Option<PathBuf>,
    /// Also serve `/metrics`, without auth, on this port (env `VECTORD_METRICS_PORT`)
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// Server-side embedding settings.
    #[command(flatten)]
    pub embed: EmbedArgs,
    /// Timeouts, backpressure and size caps (`src/config/limits.rs`).
    #[command(flatten)]
    pub limits: LimitArgs,
}
