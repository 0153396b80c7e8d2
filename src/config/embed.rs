//! The server-side embedder's flags and their resolution into [`EmbedSettings`] (`src/embed`).

use std::path::PathBuf;
use std::time::Duration;

use super::env::flag_or_env;
use super::error::ConfigError;
use crate::embed::{ApiKey, EmbedSettings};

/// Flags of the server-side embedder (`src/embed`). The API key comes from
/// `VECTORD_EMBED_API_KEY`, `OPENAI_API_KEY` or `--embed-api-key-file`, never from a flag.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EmbedArgs {
    /// Base URL of an OpenAI-compatible embeddings API, e.g. http://127.0.0.1:11434/v1 (env
    /// `VECTORD_EMBED_BASE_URL`, or `OPENAI_BASE_URL`) [default: https://api.openai.com/v1 when a key is set]
    #[arg(long)]
    pub embed_base_url: Option<String>,
    /// File holding the embedding API key (env `VECTORD_EMBED_API_KEY_FILE`); else the key comes
    /// from `VECTORD_EMBED_API_KEY` or `OPENAI_API_KEY`
    #[arg(long)]
    pub embed_api_key_file: Option<PathBuf>,
    /// Model for collections whose configuration names none (env `VECTORD_EMBED_MODEL`)
    /// [default: text-embedding-3-small]
    #[arg(long)]
    pub embed_model: Option<String>,
    /// `dimensions` to request from the default model (env `VECTORD_EMBED_DIMENSIONS`)
    /// [default: the model's own]
    #[arg(long)]
    pub embed_dimensions: Option<u32>,
    /// Comma-separated models a collection's `embedding_function` may name, besides
    /// --embed-model (env `VECTORD_EMBED_ALLOWED_MODELS`)
    /// [default: text-embedding-3-small,text-embedding-3-large,text-embedding-ada-002]
    #[arg(long)]
    pub embed_allowed_models: Option<String>,
    /// Texts per API request (env `VECTORD_EMBED_BATCH_SIZE`) [default: 512; OpenAI allows 2048]
    #[arg(long)]
    pub embed_batch_size: Option<usize>,
    /// API requests in flight at once, process-wide (env `VECTORD_EMBED_CONCURRENCY`) [default: 4]
    #[arg(long)]
    pub embed_concurrency: Option<usize>,
    /// Seconds allowed for one API request (env `VECTORD_EMBED_TIMEOUT_SECS`) [default: 30]
    #[arg(long)]
    pub embed_timeout_secs: Option<f64>,
    /// Retries on 429, 5xx, timeouts and connection errors (env `VECTORD_EMBED_MAX_RETRIES`) [default: 4]
    #[arg(long)]
    pub embed_max_retries: Option<u32>,
    /// Longest wait in seconds before one retry; a longer Retry-After fails the request
    /// (env `VECTORD_EMBED_MAX_RETRY_WAIT_SECS`) [default: 20]
    #[arg(long)]
    pub embed_max_retry_wait_secs: Option<f64>,
    /// Embedding cache size in MiB, 0 disables it (env `VECTORD_EMBED_CACHE_MIB`) [default: 64]
    #[arg(long)]
    pub embed_cache_mib: Option<usize>,
}

fn seconds(v: f64, what: &str) -> Result<Duration, ConfigError> {
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(ConfigError::InvalidEmbed(format!(
            "{what} must be between 0 and 86400 seconds, got {v}"
        )))
    }
}

/// Resolves the embedder flags against `env`, checking every value.
pub(super) fn resolve_embed(
    args: EmbedArgs,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<EmbedSettings, ConfigError> {
    let d = EmbedSettings::default();
    let string = |flag: Option<String>, vars: &[&'static str]| {
        flag.filter(|v| !v.trim().is_empty()).or_else(|| {
            vars.iter()
                .find_map(|v| env(v).filter(|x| !x.trim().is_empty()))
        })
    };
    let base_url = string(
        args.embed_base_url,
        &["VECTORD_EMBED_BASE_URL", "OPENAI_BASE_URL"],
    )
    .map(|u| u.trim().to_string());
    if let Some(u) = &base_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(ConfigError::InvalidEmbed(format!(
                "--embed-base-url must start with http:// or https://, got {u:?}"
            )));
        }
    }
    let key_file = args.embed_api_key_file.or_else(|| {
        env("VECTORD_EMBED_API_KEY_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let api_key = match key_file {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::KeyFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            Some(ApiKey::new(&text).ok_or(ConfigError::KeyFile {
                path,
                reason: "the file holds no usable key (empty, or not one printable token)".into(),
            })?)
        }
        None => match ["VECTORD_EMBED_API_KEY", "OPENAI_API_KEY"]
            .iter()
            .find_map(|v| env(v).filter(|x| !x.trim().is_empty()).map(|x| (*v, x)))
        {
            // The value is not echoed in the error: it is a secret.
            Some((var, key)) => Some(ApiKey::new(&key).ok_or(ConfigError::InvalidEnv {
                var,
                value: "<redacted>".into(),
                reason: "an API key must be one printable token",
            })?),
            None => None,
        },
    };
    let model = string(args.embed_model, &["VECTORD_EMBED_MODEL"])
        .map(|m| m.trim().to_string())
        .unwrap_or(d.model);
    let dimensions = flag_or_env(
        args.embed_dimensions,
        env,
        "VECTORD_EMBED_DIMENSIONS",
        "expected a positive integer",
        |v| v.parse().ok(),
    )?;
    let allowed_models = match string(args.embed_allowed_models, &["VECTORD_EMBED_ALLOWED_MODELS"])
    {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(String::from)
            .collect(),
        None => d.allowed_models,
    };
    let usize_env = |flag, var| {
        flag_or_env(flag, env, var, "expected a non-negative integer", |v| {
            v.parse().ok()
        })
    };
    let batch_size =
        usize_env(args.embed_batch_size, "VECTORD_EMBED_BATCH_SIZE")?.unwrap_or(d.batch_size);
    let concurrency =
        usize_env(args.embed_concurrency, "VECTORD_EMBED_CONCURRENCY")?.unwrap_or(d.concurrency);
    let cache_mib = usize_env(args.embed_cache_mib, "VECTORD_EMBED_CACHE_MIB")?;
    let secs_env = |flag, var| {
        flag_or_env(flag, env, var, "expected a number of seconds", |v| {
            v.parse::<f64>().ok()
        })
    };
    let timeout = match secs_env(args.embed_timeout_secs, "VECTORD_EMBED_TIMEOUT_SECS")? {
        Some(v) => seconds(v, "--embed-timeout-secs")?,
        None => d.timeout,
    };
    let max_retry_wait = match secs_env(
        args.embed_max_retry_wait_secs,
        "VECTORD_EMBED_MAX_RETRY_WAIT_SECS",
    )? {
        Some(v) => seconds(v, "--embed-max-retry-wait-secs")?,
        None => d.max_retry_wait,
    };
    let max_retries = flag_or_env(
        args.embed_max_retries,
        env,
        "VECTORD_EMBED_MAX_RETRIES",
        "expected a non-negative integer",
        |v| v.parse().ok(),
    )?
    .unwrap_or(d.max_retries);
    if !(1..=2048).contains(&batch_size) {
        return Err(ConfigError::InvalidEmbed(format!(
            "--embed-batch-size must be 1..=2048, got {batch_size}"
        )));
    }
    if !(1..=256).contains(&concurrency) {
        return Err(ConfigError::InvalidEmbed(format!(
            "--embed-concurrency must be 1..=256, got {concurrency}"
        )));
    }
    if max_retries > 20 {
        return Err(ConfigError::InvalidEmbed(format!(
            "--embed-max-retries must be at most 20, got {max_retries}"
        )));
    }
    if model.is_empty() {
        return Err(ConfigError::InvalidEmbed(
            "--embed-model must not be empty".into(),
        ));
    }
    let settings = EmbedSettings {
        base_url,
        api_key,
        model,
        dimensions,
        allowed_models,
        batch_size,
        batch_tokens: d.batch_tokens,
        concurrency,
        timeout,
        max_retries,
        max_retry_wait,
        cache_bytes: cache_mib.map_or(d.cache_bytes, |m| m.saturating_mul(1024 * 1024)),
    };
    // The default model's dimensions are checked now, not at the first request.
    if settings.enabled() {
        crate::embed::function::resolve(None, &settings)
            .map_err(|e| ConfigError::InvalidEmbed(format!("--embed-dimensions: {e}")))?;
    }
    Ok(settings)
}
