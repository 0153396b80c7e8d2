//! The embedder's metrics, registered under `vectord_embed_*` in the process's one registry
//! (`crate::telemetry::metrics::Metrics::embed`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label of per-attempt and retry counters: an HTTP status (`200`, `429`, `500` …) or
/// `timeout` / `connect` / `error` when no response arrived.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// What the attempt ended with.
    pub outcome: String,
}

/// Counters and gauges of the embedder.
#[derive(Debug)]
pub struct EmbedMetrics {
    /// Texts served without an API call (from the cache, or repeated within one request).
    pub cache_hits: Counter,
    /// Texts sent to the API.
    pub cache_misses: Counter,
    /// Entries in the cache.
    pub cache_entries: Gauge,
    /// Bytes the cache holds (vectors plus per-entry overhead).
    pub cache_bytes: Gauge,
    /// HTTP attempts to the provider, by outcome.
    pub attempts: Family<OutcomeLabel, Counter>,
    /// Retries, by the outcome that caused them.
    pub retries: Family<OutcomeLabel, Counter>,
    /// Latency of one batch call including its retries, in seconds.
    pub call_duration: Histogram,
}

/// Unregistered metrics (for an embedder outside a server, e.g. in unit tests).
impl Default for EmbedMetrics {
    fn default() -> Self {
        EmbedMetrics {
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_entries: Gauge::default(),
            cache_bytes: Gauge::default(),
            attempts: Family::default(),
            retries: Family::default(),
            // 5 ms … ~80 s in doublings: a local model to a slow, retried provider call.
            call_duration: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
        }
    }
}

impl EmbedMetrics {
    /// Creates the metrics and registers them in `registry` (an `embed` sub-registry).
    pub fn register(registry: &mut Registry) -> EmbedMetrics {
        let m = EmbedMetrics::default();
        registry.register(
            "cache_hits",
            "Texts embedded without an API call (cache or repeated in the request)",
            m.cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Texts sent to the embedding API",
            m.cache_misses.clone(),
        );
        registry.register(
            "cache_entries",
            "Embeddings held in the cache",
            m.cache_entries.clone(),
        );
        registry.register(
            "cache_bytes",
            "Bytes held by the embedding cache",
            m.cache_bytes.clone(),
        );
        registry.register(
            "api_attempts",
            "HTTP attempts to the embedding provider, by outcome",
            m.attempts.clone(),
        );
        registry.register(
            "api_retries",
            "Retries of embedding requests, by the outcome that caused them",
            m.retries.clone(),
        );
        registry.register(
            "api_call_duration_seconds",
            "Latency of one embedding batch call including retries",
            m.call_duration.clone(),
        );
        m
    }

    /// Counts one attempt or retry under `outcome`.
    pub fn count(family: &Family<OutcomeLabel, Counter>, outcome: &str) {
        family
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}
