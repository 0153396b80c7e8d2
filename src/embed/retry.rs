//! The retry policy for embedding calls, as a tower layer under async-openai (which then runs
//! without its built-in retries, so there is exactly one policy and it is ours).
//!
//! Retried: 429, 5xx, timeouts and connection failures. The wait is the provider's
//! `retry-after-ms` or `Retry-After` (seconds or an HTTP date) when given, else exponential
//! backoff from 200 ms with jitter. A wait longer than `max_wait` is not taken: the request
//! fails now with the provider's answer instead of holding the caller's connection open.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use reqwest::header::HeaderMap;
use reqwest::Response;

use super::metrics::EmbedMetrics;

/// First backoff step; doubles per retry.
const BASE_DELAY: Duration = Duration::from_millis(200);

/// Per-call retry state; tower clones the layer's policy for every call.
#[derive(Clone)]
pub struct RetryPolicy {
    retries: u32,
    max_retries: u32,
    max_wait: Duration,
    metrics: Arc<EmbedMetrics>,
}

impl RetryPolicy {
    /// A policy allowing `max_retries` retries, each waiting at most `max_wait`.
    pub fn new(max_retries: u32, max_wait: Duration, metrics: Arc<EmbedMetrics>) -> RetryPolicy {
        RetryPolicy {
            retries: 0,
            max_retries,
            max_wait,
            metrics,
        }
    }
}

/// What one attempt ended with, as a metrics label.
pub fn outcome_label(result: &Result<Response, OpenAIError>) -> String {
    match result {
        Ok(r) => r.status().as_u16().to_string(),
        Err(OpenAIError::Reqwest(e)) if e.is_timeout() => "timeout".into(),
        Err(OpenAIError::Reqwest(e)) if e.is_connect() => "connect".into(),
        Err(_) => "error".into(),
    }
}

fn retryable(result: &Result<Response, OpenAIError>) -> bool {
    match result {
        Ok(r) => r.status().as_u16() == 429 || r.status().is_server_error(),
        Err(OpenAIError::Reqwest(e)) => e.is_timeout() || e.is_connect(),
        Err(_) => false,
    }
}

/// The wait a response asks for: `retry-after-ms` (OpenAI), else `Retry-After` in seconds
/// (fractions allowed) or as an HTTP date.
pub fn requested_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let v = text("retry-after")?;
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Backoff for retry number `n` (0-based): 200 ms · 2ⁿ, the upper half jittered so that many
/// callers rejected together do not retry together.
fn backoff(n: u32) -> Duration {
    let full = BASE_DELAY.saturating_mul(2u32.saturating_pow(n.min(16)));
    let half = full / 2;
    let jitter = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(n);
        h.finish()
    };
    half + Duration::from_nanos(jitter % (half.as_nanos().max(1) as u64))
}

impl tower::retry::Policy<HttpRequestFactory, Response, OpenAIError> for RetryPolicy {
    type Future = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

    fn retry(
        &mut self,
        _req: &mut HttpRequestFactory,
        result: &mut Result<Response, OpenAIError>,
    ) -> Option<Self::Future> {
        if self.retries >= self.max_retries || !retryable(result) {
            return None;
        }
        let asked = result
            .as_ref()
            .ok()
            .and_then(|r| requested_wait(r.headers(), SystemTime::now()));
        let wait = asked.unwrap_or_else(|| backoff(self.retries));
        if wait > self.max_wait {
            tracing::warn!(
                wait_ms = wait.as_millis() as u64,
                max_wait_ms = self.max_wait.as_millis() as u64,
                "embedding provider asked to wait longer than allowed; not retrying"
            );
            return None;
        }
        let outcome = outcome_label(result);
        tracing::debug!(%outcome, retry = self.retries + 1, wait_ms = wait.as_millis() as u64, "retrying embedding request");
        EmbedMetrics::count(&self.metrics.retries, &outcome);
        self.retries += 1;
        Some(Box::pin(tokio::time::sleep(wait)))
    }

    fn clone_request(&mut self, req: &HttpRequestFactory) -> Option<HttpRequestFactory> {
        // The factory rebuilds the request for every attempt; cloning it is an Arc clone.
        Some(req.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(requested_wait(&h, now), None);
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(requested_wait(&h, now), Some(Duration::from_secs(2)));
        h.insert("retry-after", HeaderValue::from_static("0.25"));
        assert_eq!(requested_wait(&h, now), Some(Duration::from_millis(250)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        h.insert("retry-after", HeaderValue::from_str(&later).unwrap());
        assert_eq!(requested_wait(&h, now), Some(Duration::from_secs(7)));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(requested_wait(&h, now), None);
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(requested_wait(&h, now), Some(Duration::from_millis(150)));
    }

    #[test]
    fn backoff_grows_and_stays_in_its_window() {
        for n in 0..6 {
            let full = BASE_DELAY * 2u32.pow(n);
            let d = backoff(n);
            assert!(d >= full / 2 && d < full, "{n}: {d:?}");
        }
        assert!(backoff(u32::MAX) > Duration::ZERO);
    }
}
