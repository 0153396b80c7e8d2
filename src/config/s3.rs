//! Where an S3-compatible bucket for snapshot copies lives: flags, and the resolved location
//! with credentials from the standard AWS variables.

use super::env::Secret;

/// Where an S3-compatible bucket lives (shared by `run`, `snapshot` and `restore`). Credentials
/// come only from the standard `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
/// `AWS_SESSION_TOKEN` variables, or the instance's role when they are unset.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct S3Args {
    /// S3 endpoint for non-AWS servers (MinIO, R2, Tigris), e.g. https://fly.storage.tigris.dev
    /// (env `VECTORD_SNAPSHOT_S3_ENDPOINT`, or `AWS_ENDPOINT_URL`) [default: AWS]
    #[arg(long)]
    pub snapshot_s3_endpoint: Option<String>,
    /// Bucket region (env `VECTORD_SNAPSHOT_S3_REGION`, `AWS_REGION` or `AWS_DEFAULT_REGION`)
    /// [default: us-east-1]
    #[arg(long)]
    pub snapshot_s3_region: Option<String>,
}

/// A resolved S3 location with its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// `s3://bucket/prefix`.
    pub url: String,
    /// Custom endpoint, if not AWS.
    pub endpoint: Option<String>,
    /// Region used for signing.
    pub region: String,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<Secret>,
    /// `AWS_SESSION_TOKEN`.
    pub session_token: Option<Secret>,
}

impl S3Settings {
    /// Resolves `url` and `args` against the process environment.
    pub fn from_args(url: String, args: S3Args) -> S3Settings {
        S3Settings::resolve(url, args, |k| std::env::var(k).ok())
    }

    /// Resolves against an arbitrary environment lookup (tests pass a map).
    pub fn resolve(url: String, args: S3Args, env: impl Fn(&str) -> Option<String>) -> S3Settings {
        let first = |names: &[&str]| names.iter().find_map(|n| env(n).filter(|v| !v.is_empty()));
        S3Settings {
            url,
            endpoint: args
                .snapshot_s3_endpoint
                .or_else(|| first(&["VECTORD_SNAPSHOT_S3_ENDPOINT", "AWS_ENDPOINT_URL"])),
            region: args
                .snapshot_s3_region
                .or_else(|| {
                    first(&[
                        "VECTORD_SNAPSHOT_S3_REGION",
                        "AWS_REGION",
                        "AWS_DEFAULT_REGION",
                    ])
                })
                .unwrap_or_else(|| "us-east-1".to_string()),
            access_key_id: first(&["AWS_ACCESS_KEY_ID"]),
            secret_access_key: first(&["AWS_SECRET_ACCESS_KEY"]).map(Secret),
            session_token: first(&["AWS_SESSION_TOKEN"]).map(Secret),
        }
    }
}
