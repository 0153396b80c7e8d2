//! Server-side embeddings: text → vectors through an OpenAI-compatible `/embeddings` API
//! (`async-openai` over reqwest), for writes that carry `documents` without `embeddings` and for
//! queries with `query_texts`.
//!
//! - [`settings`]: the server's embedder configuration (base URL, key, model, limits).
//! - [`function`]: the model for a collection, from its stored `embedding_function` (only
//!   `model_name` from an allow-list and `dimensions` are honoured).
//! - [`cache`]: bounded LRU by (model, dimensions, SHA-256 of the text).
//! - [`retry`]: our tower retry policy (429/5xx/timeouts, `Retry-After`, capped waits).
//! - [`metrics`]: `vectord_embed_*` in the process registry.
//!
//! Architecture invariant: this module knows nothing of HTTP routes, collections or files; it
//! turns texts into vectors or says why not ([`EmbedError`]). It never blocks a thread: calls
//! are async, capped by a process-wide semaphore.

pub mod cache;
pub mod error;
pub mod function;
pub mod metrics;
pub mod retry;
pub mod settings;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::ReqwestService;
use async_openai::types::embeddings::{CreateEmbeddingRequest, EmbeddingInput};
use async_openai::Client;
use tokio::sync::Semaphore;

pub use cache::{CacheKey, EmbedCache};
pub use error::EmbedError;
pub use function::ModelSpec;
pub use metrics::EmbedMetrics;
pub use settings::{ApiKey, EmbedSettings};

use retry::{outcome_label, RetryPolicy};

/// Turns texts into vectors for one process: the HTTP client, the cache and the concurrency cap.
pub struct Embedder {
    settings: EmbedSettings,
    /// `Err` when embedding is not configured, or the client could not be built (each embed
    /// call then reports why).
    client: Result<Client<OpenAIConfig>, EmbedError>,
    cache: EmbedCache,
    permits: Semaphore,
    metrics: Arc<EmbedMetrics>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Rough token count of a text for batching: ~3 bytes per token for English prose, rounded up,
/// so a batch stays under the provider's per-request token limit.
fn estimated_tokens(text: &str) -> usize {
    text.len().div_ceil(3).max(1)
}

impl Embedder {
    /// Builds the embedder. Never fails: a client that cannot be built is logged and reported
    /// by every embed call, so a vector server stays up for callers that send vectors.
    pub fn new(settings: EmbedSettings, metrics: Arc<EmbedMetrics>) -> Embedder {
        let client = if settings.enabled() {
            build_client(&settings, &metrics)
        } else {
            Err(EmbedError::NotConfigured)
        };
        if let Err(e @ EmbedError::Setup(_)) = &client {
            tracing::error!(error = %e, "embedding client unavailable");
        }
        Embedder {
            cache: EmbedCache::new(settings.cache_bytes),
            permits: Semaphore::new(settings.concurrency.max(1)),
            settings,
            client,
            metrics,
        }
    }

    /// The settings the embedder runs with.
    pub fn settings(&self) -> &EmbedSettings {
        &self.settings
    }

    /// The model for a collection whose stored `embedding_function` is `ef`.
    pub fn spec_for(&self, ef: Option<&serde_json::Value>) -> Result<ModelSpec, EmbedError> {
        function::resolve(ef, &self.settings)
    }

    /// Embeds `texts` with `spec`, one vector per text in order. Texts seen before (same model
    /// and dimensions) come from the cache; the rest go out in batches, at most `concurrency`
    /// requests at once across the process. All or nothing: any failure fails the whole call.
    pub async fn embed(
        &self,
        spec: &ModelSpec,
        texts: &[String],
    ) -> Result<Vec<Arc<[f32]>>, EmbedError> {
        let client = self.client.as_ref().map_err(Clone::clone)?;
        if let Some(index) = texts.iter().position(|t| t.is_empty()) {
            return Err(EmbedError::EmptyText {
                what: "text",
                index,
            });
        }
        let mut out: Vec<Option<Arc<[f32]>>> = vec![None; texts.len()];
        // Unique texts not in the cache, each with the positions it fills.
        let mut missing: Vec<(&str, Vec<usize>)> = Vec::new();
        let mut slot: HashMap<&str, usize> = HashMap::new();
        for (i, text) in texts.iter().enumerate() {
            if let Some(&m) = slot.get(text.as_str()) {
                missing[m].1.push(i);
                continue;
            }
            match self.cache.get(&CacheKey::new(spec, text)) {
                Some(v) => out[i] = Some(v),
                None => {
                    slot.insert(text.as_str(), missing.len());
                    missing.push((text.as_str(), vec![i]));
                }
            }
        }
        self.metrics
            .cache_hits
            .inc_by((texts.len() - missing.len()) as u64);
        self.metrics.cache_misses.inc_by(missing.len() as u64);

        let batches = self.batches(&missing);
        let calls = batches
            .iter()
            .map(|range| self.call(client, spec, &missing[range.clone()]));
        let results = futures_util::future::try_join_all(calls).await?;
        for (range, vectors) in batches.into_iter().zip(results) {
            for ((text, positions), v) in missing[range].iter().zip(vectors) {
                self.cache.insert(CacheKey::new(spec, text), Arc::clone(&v));
                for &p in positions {
                    out[p] = Some(Arc::clone(&v));
                }
            }
        }
        let (entries, bytes) = self.cache.usage();
        self.metrics.cache_entries.set(entries as i64);
        self.metrics.cache_bytes.set(bytes as i64);
        out.into_iter()
            .map(|v| v.ok_or_else(|| EmbedError::BadResponse("a text got no vector".into())))
            .collect()
    }

    /// Splits `missing` into index ranges within the per-request input and token limits.
    fn batches(&self, missing: &[(&str, Vec<usize>)]) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let (mut start, mut tokens) = (0, 0);
        for (i, (text, _)) in missing.iter().enumerate() {
            let t = estimated_tokens(text);
            let full = i - start >= self.settings.batch_size.max(1)
                || (i > start && tokens + t > self.settings.batch_tokens);
            if full {
                out.push(start..i);
                start = i;
                tokens = 0;
            }
            tokens += t;
        }
        if start < missing.len() {
            out.push(start..missing.len());
        }
        out
    }

    /// One API request for a batch (retried inside the client), checked against the request.
    async fn call(
        &self,
        client: &Client<OpenAIConfig>,
        spec: &ModelSpec,
        batch: &[(&str, Vec<usize>)],
    ) -> Result<Vec<Arc<[f32]>>, EmbedError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| EmbedError::Setup("the embedder is shutting down".into()))?;
        let request = CreateEmbeddingRequest {
            model: spec.model.clone(),
            input: EmbeddingInput::StringArray(batch.iter().map(|(t, _)| t.to_string()).collect()),
            encoding_format: None,
            user: None,
            dimensions: spec.dimensions,
        };
        let started = Instant::now();
        let response = client.embeddings().create(request).await;
        self.metrics
            .call_duration
            .observe(started.elapsed().as_secs_f64());
        let response = response.map_err(|e| self.map_error(e))?;
        check_response(spec, batch.len(), response.data)
    }

    fn map_error(&self, e: OpenAIError) -> EmbedError {
        match e {
            OpenAIError::ApiError(api) => {
                let status = api.status_code.as_u16();
                let message = api.api_error.message;
                let code = api
                    .api_error
                    .code
                    .as_deref()
                    .or(api.api_error.r#type.as_deref());
                match status {
                    // Out of credit is a 429 too, but waiting does not help: an operator must act.
                    429 if code == Some("insufficient_quota") => EmbedError::Upstream(format!(
                        "the server's embedding quota is exhausted: {}",
                        truncate(&message)
                    )),
                    429 => EmbedError::RateLimited {
                        message: format!(
                            "429 after {} retries: {message}",
                            self.settings.max_retries
                        ),
                        retry_after: None,
                    },
                    // The provider's text for these may quote (part of) the key: never pass it on.
                    401 | 403 => {
                        tracing::error!(status, "embedding provider refused the server's API key");
                        EmbedError::Unauthorized {
                            status,
                            message: "check the server's embedding API key and model access".into(),
                        }
                    }
                    400 | 404 | 413 | 422 => EmbedError::Rejected { status, message },
                    408 => EmbedError::Timeout(self.settings.timeout),
                    _ => EmbedError::Upstream(format!("HTTP {status}: {}", truncate(&message))),
                }
            }
            OpenAIError::Reqwest(e) if e.is_timeout() => EmbedError::Timeout(self.settings.timeout),
            OpenAIError::Reqwest(e) if e.is_connect() => EmbedError::Upstream(format!(
                "cannot connect to {}: {e}",
                self.settings.base_url_for_logs()
            )),
            OpenAIError::Reqwest(e) if e.is_decode() || e.is_body() => {
                EmbedError::BadResponse(e.to_string())
            }
            OpenAIError::JSONDeserialize(e, body) => {
                EmbedError::BadResponse(format!("{e}; body starts {:?}", truncate(&body)))
            }
            other => EmbedError::Upstream(other.to_string()),
        }
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Orders the response's vectors by `index` and checks them: one per input, one length (the
/// requested `dimensions` when given), finite values.
fn check_response(
    spec: &ModelSpec,
    n: usize,
    data: Vec<async_openai::types::embeddings::Embedding>,
) -> Result<Vec<Arc<[f32]>>, EmbedError> {
    if data.len() != n {
        return Err(EmbedError::BadResponse(format!(
            "{} embeddings for {n} inputs",
            data.len()
        )));
    }
    let mut out: Vec<Option<Arc<[f32]>>> = vec![None; n];
    let expected = spec.dimensions.map(|d| d as usize);
    let mut dim: Option<usize> = None;
    for e in data {
        let i = e.index as usize;
        let len = e.embedding.len();
        if len == 0 || expected.is_some_and(|d| d != len) || dim.is_some_and(|d| d != len) {
            return Err(EmbedError::BadResponse(format!(
                "embedding {i} has {len} dimensions, expected {}",
                expected
                    .or(dim)
                    .map_or("a non-empty vector".into(), |d| d.to_string())
            )));
        }
        dim = Some(len);
        if e.embedding.iter().any(|x| !x.is_finite()) {
            return Err(EmbedError::BadResponse(format!(
                "embedding {i} holds NaN or infinity"
            )));
        }
        match out.get_mut(i) {
            Some(slot @ None) => *slot = Some(Arc::from(e.embedding)),
            _ => {
                return Err(EmbedError::BadResponse(format!(
                    "index {i} is out of range or repeated"
                )))
            }
        }
    }
    out.into_iter()
        .map(|v| v.ok_or_else(|| EmbedError::BadResponse("an input got no embedding".into())))
        .collect()
}

/// The async-openai client over our own tower stack: per-attempt metrics, our retry policy,
/// reqwest with the configured timeout. async-openai's built-in retry layer is bypassed.
fn build_client(
    settings: &EmbedSettings,
    metrics: &Arc<EmbedMetrics>,
) -> Result<Client<OpenAIConfig>, EmbedError> {
    let http = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(std::time::Duration::from_secs(10)))
        .user_agent(concat!("vectord/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| EmbedError::Setup(e.to_string()))?;
    // Every field is set explicitly: `OpenAIConfig::default()` also reads OPENAI_ORG_ID and
    // OPENAI_PROJECT_ID from the environment, which only `config` may read.
    let config = OpenAIConfig::new()
        .with_api_base(settings.effective_base_url())
        .with_api_key(
            settings
                .api_key
                .as_ref()
                .map(ApiKey::expose)
                .unwrap_or_default(),
        )
        .with_org_id("")
        .with_project_id("");
    let attempts = Arc::clone(metrics);
    let service = tower::ServiceBuilder::new()
        .retry(RetryPolicy::new(
            settings.max_retries,
            settings.max_retry_wait,
            Arc::clone(metrics),
        ))
        .map_result(move |r| {
            EmbedMetrics::count(&attempts.attempts, &outcome_label(&r));
            r
        })
        .service(ReqwestService::new(http));
    Ok(Client::with_config(config).with_http_service(service))
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_openai::types::embeddings::Embedding;

    fn emb(index: u32, v: Vec<f32>) -> Embedding {
        Embedding {
            index,
            object: "embedding".into(),
            embedding: v,
        }
    }

    #[test]
    fn responses_are_ordered_by_index_and_checked() {
        let spec = ModelSpec {
            model: "m".into(),
            dimensions: Some(2),
        };
        let got = check_response(
            &spec,
            2,
            vec![emb(1, vec![1.0, 1.0]), emb(0, vec![0.0, 1.0])],
        )
        .unwrap();
        assert_eq!(&*got[0], &[0.0, 1.0]);
        for bad in [
            vec![emb(0, vec![1.0, 1.0])],
            vec![emb(0, vec![1.0, 1.0]), emb(0, vec![1.0, 1.0])],
            vec![emb(0, vec![1.0, 1.0]), emb(5, vec![1.0, 1.0])],
            vec![emb(0, vec![1.0, 1.0]), emb(1, vec![1.0])],
            vec![emb(0, vec![1.0, f32::NAN]), emb(1, vec![1.0, 1.0])],
        ] {
            assert!(matches!(
                check_response(&spec, 2, bad),
                Err(EmbedError::BadResponse(_))
            ));
        }
        let free = ModelSpec {
            model: "m".into(),
            dimensions: None,
        };
        assert!(check_response(&free, 2, vec![emb(0, vec![1.0]), emb(1, vec![1.0, 2.0])]).is_err());
    }

    #[test]
    fn batches_respect_count_and_token_limits() {
        let e = Embedder::new(
            EmbedSettings {
                batch_size: 3,
                batch_tokens: 10,
                ..Default::default()
            },
            Arc::new(EmbedMetrics::default()),
        );
        let texts: Vec<String> = ["a", "b", "c", "d", &"x".repeat(27), "e", &"y".repeat(60)]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let missing: Vec<(&str, Vec<usize>)> = texts.iter().map(|t| (t.as_str(), vec![])).collect();
        // 3 per batch; "d" and the 9-token text fill 10 tokens; a text over the budget goes alone.
        assert_eq!(e.batches(&missing), vec![0..3, 3..5, 5..6, 6..7]);
    }

    #[test]
    fn provider_errors_map_by_status_and_code() {
        use async_openai::error::{ApiError, ApiErrorResponse};
        let e = Embedder::new(EmbedSettings::default(), Arc::new(EmbedMetrics::default()));
        let api = |status: u16, code: Option<&str>, message: &str| {
            OpenAIError::ApiError(ApiErrorResponse {
                status_code: reqwest::StatusCode::from_u16(status).unwrap(),
                api_error: ApiError {
                    message: message.into(),
                    r#type: None,
                    param: None,
                    code: code.map(String::from),
                    misalignment: None,
                },
            })
        };
        assert!(matches!(
            e.map_error(api(429, None, "slow down")),
            EmbedError::RateLimited { .. }
        ));
        assert!(matches!(
            e.map_error(api(429, Some("insufficient_quota"), "no credit")),
            EmbedError::Upstream(m) if m.contains("quota is exhausted")
        ));
        let refused = e.map_error(api(401, None, "Incorrect API key provided: sk-abc123"));
        assert!(matches!(
            &refused,
            EmbedError::Unauthorized { status: 401, .. }
        ));
        assert!(!refused.to_string().contains("sk-abc123"), "{refused}");
        for s in [400, 404, 413, 422] {
            let r = e.map_error(api(s, None, "too long"));
            assert!(
                r.is_user_error() && r.to_string().contains("too long"),
                "{s}: {r}"
            );
        }
        assert!(matches!(
            e.map_error(api(408, None, "")),
            EmbedError::Timeout(_)
        ));
        assert!(
            matches!(e.map_error(api(503, None, "down")), EmbedError::Upstream(m) if m.contains("HTTP 503"))
        );
        let bad_json = serde_json::from_str::<u8>("x").unwrap_err();
        assert!(matches!(
            e.map_error(OpenAIError::JSONDeserialize(bad_json, "x".into())),
            EmbedError::BadResponse(_)
        ));
    }

    #[tokio::test]
    async fn unconfigured_embedder_says_so() {
        let e = Embedder::new(EmbedSettings::default(), Arc::new(EmbedMetrics::default()));
        let spec = ModelSpec {
            model: "m".into(),
            dimensions: None,
        };
        assert_eq!(
            e.embed(&spec, &["x".to_string()]).await.unwrap_err(),
            EmbedError::NotConfigured
        );
    }
}
