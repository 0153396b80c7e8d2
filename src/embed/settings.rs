//! What the server's embedder is configured with. Filled in by `config` (the only module that
//! reads the environment); nothing here comes from a collection or a request.

use std::fmt;
use std::time::Duration;

/// The OpenAI API's base URL, used when only a key is configured.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// The model used for collections that name none, unless `--embed-model` says otherwise.
pub const DEFAULT_MODEL: &str = "text-embedding-3-small";
/// Models a collection's `embedding_function.config.model_name` may name by default (the
/// server's own `--embed-model` is always allowed too).
pub const DEFAULT_ALLOWED_MODELS: &[&str] = &[
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
];
/// Inputs per API request; OpenAI accepts at most 2,048.
pub const DEFAULT_BATCH_SIZE: usize = 512;
/// Estimated tokens per API request; OpenAI accepts at most 300,000 summed over the inputs.
pub const DEFAULT_BATCH_TOKENS: usize = 250_000;
/// API requests in flight at once, across the whole process.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Time allowed for one API request (connect, send, full response).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Retries after the first attempt, on 429, 5xx, timeouts and connection failures.
pub const DEFAULT_MAX_RETRIES: u32 = 4;
/// Longest single wait before a retry; a `Retry-After` asking for more fails the request now
/// rather than holding the caller's connection open.
pub const DEFAULT_MAX_RETRY_WAIT: Duration = Duration::from_secs(20);
/// Memory the embedding cache may use (vectors plus per-entry overhead).
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// An API key. `Debug` never shows it, so settings can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key; `None` when it is empty or is not a valid HTTP header value (a key read
    /// from a secret file with a stray newline would otherwise fail every request).
    pub fn new(key: &str) -> Option<ApiKey> {
        let key = key.trim();
        let printable = key.bytes().all(|b| (0x21..=0x7e).contains(&b));
        (!key.is_empty() && printable).then(|| ApiKey(key.to_string()))
    }

    /// The key itself, for the HTTP client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The server's embedder settings. `enabled()` is false when neither a base URL nor a key was
/// given: then documents-only writes and `query_texts` are refused with a clear 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedSettings {
    /// Base URL of the OpenAI-compatible API (`…/v1`), `None` = not configured.
    pub base_url: Option<String>,
    /// The API key, `None` for local servers that need none.
    pub api_key: Option<ApiKey>,
    /// Model for collections whose configuration names none.
    pub model: String,
    /// `dimensions` sent with the default model (`None` = the model's native size).
    pub dimensions: Option<u32>,
    /// Model names a collection's configuration may select.
    pub allowed_models: Vec<String>,
    /// Inputs per API request.
    pub batch_size: usize,
    /// Estimated tokens per API request (bytes / 3, rounded up, per input).
    pub batch_tokens: usize,
    /// API requests in flight at once.
    pub concurrency: usize,
    /// Time allowed for one API request.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Longest wait before one retry.
    pub max_retry_wait: Duration,
    /// Cache budget in bytes (0 disables the cache).
    pub cache_bytes: usize,
}

impl Default for EmbedSettings {
    fn default() -> Self {
        EmbedSettings {
            base_url: None,
            api_key: None,
            model: DEFAULT_MODEL.to_string(),
            dimensions: None,
            allowed_models: DEFAULT_ALLOWED_MODELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            batch_size: DEFAULT_BATCH_SIZE,
            batch_tokens: DEFAULT_BATCH_TOKENS,
            concurrency: DEFAULT_CONCURRENCY,
            timeout: DEFAULT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            max_retry_wait: DEFAULT_MAX_RETRY_WAIT,
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

impl EmbedSettings {
    /// True when the server should embed text: a base URL or a key was configured.
    pub fn enabled(&self) -> bool {
        self.base_url.is_some() || self.api_key.is_some()
    }

    /// The base URL requests go to (OpenAI's when only a key was given), without a trailing `/`.
    pub fn effective_base_url(&self) -> String {
        self.base_url
            .as_deref()
            .unwrap_or(OPENAI_BASE_URL)
            .trim_end_matches('/')
            .to_string()
    }

    /// The base URL with any `user:password@` removed, for logs.
    pub fn base_url_for_logs(&self) -> String {
        let url = self.effective_base_url();
        match (url.find("://"), url.find('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}<redacted>@{}", &url[..scheme + 3], &url[at + 1..])
            }
            _ => url,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_never_printed_and_must_be_header_safe() {
        let k = ApiKey::new(" sk-secret\n").unwrap();
        assert_eq!(k.expose(), "sk-secret");
        assert!(!format!("{k:?}").contains("secret"));
        let s = EmbedSettings {
            api_key: Some(k),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("sk-secret"));
        assert!(ApiKey::new("").is_none());
        assert!(ApiKey::new("a b").is_none());
        assert!(ApiKey::new("a\u{7f}").is_none());
    }

    #[test]
    fn enabled_and_base_url() {
        let mut s = EmbedSettings::default();
        assert!(!s.enabled());
        s.api_key = ApiKey::new("k");
        assert!(s.enabled());
        assert_eq!(s.effective_base_url(), OPENAI_BASE_URL);
        s.base_url = Some("http://u:p@127.0.0.1:9/v1/".into());
        assert_eq!(s.effective_base_url(), "http://u:p@127.0.0.1:9/v1");
        assert_eq!(s.base_url_for_logs(), "http://<redacted>@127.0.0.1:9/v1");
    }
}
