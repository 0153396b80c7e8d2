//! The process's one Prometheus registry, created with the HTTP API and served at `/metrics`
//! (OpenMetrics text). Other modules get an `Arc<Metrics>` and record into its fields.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::embed::EmbedMetrics;

/// Labels of HTTP request metrics. `route` is the matched route template (e.g.
/// `/api/v2/tenants/{tenant}/…/{collection_id}/query`), never the raw path, so the number of
/// series stays bounded whatever clients send.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// HTTP method.
    pub method: String,
    /// Matched route template, or `unmatched`.
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Labels of requests from pre-1.0 clients: `api` is `v1` or `v2` (old formats on v2 paths).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LegacyLabels {
    /// Which legacy surface the request used.
    pub api: &'static str,
}

type HistogramFamily = Family<HttpLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~8 s in doublings: covers a cached heartbeat and a 40 MiB ingest batch.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// Requests served, by method, route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Request latency in seconds, by method, route and status.
    pub http_duration: HistogramFamily,
    /// Requests from pre-1.0 clients, so operators can see when the last old worker is gone.
    pub legacy_requests: Family<LegacyLabels, Counter>,
    /// Collections in the catalog (set when `/metrics` is scraped).
    pub collections: Gauge,
    /// Collections whose data failed to open (set when `/metrics` is scraped).
    pub collections_failed: Gauge,
    /// The embedder's cache and API call metrics (`vectord_embed_*`).
    pub embed: Arc<EmbedMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates the registry and registers every metric under the `vectord` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("vectord");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let legacy_requests = Family::<LegacyLabels, Counter>::default();
        let collections = Gauge::default();
        let collections_failed = Gauge::default();
        registry.register(
            "legacy_requests",
            "Requests from pre-1.0 Chroma clients (v1 routes or old formats on v2)",
            legacy_requests.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests served",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            http_duration.clone(),
        );
        registry.register(
            "collections",
            "Collections in the catalog",
            collections.clone(),
        );
        registry.register(
            "collections_failed",
            "Collections whose data failed to open",
            collections_failed.clone(),
        );
        let embed = Arc::new(EmbedMetrics::register(
            registry.sub_registry_with_prefix("embed"),
        ));
        Metrics {
            registry,
            embed,
            http_requests,
            http_duration,
            legacy_requests,
            collections,
            collections_failed,
        }
    }

    /// Records one served request.
    pub fn observe_http(&self, labels: HttpLabels, seconds: f64) {
        self.http_requests.get_or_create(&labels).inc();
        self.http_duration.get_or_create(&labels).observe(seconds);
    }

    /// Renders every metric in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_by_route() {
        let m = Metrics::new();
        let labels = HttpLabels {
            method: "GET".into(),
            route: "/api/v2/heartbeat".into(),
            status: 200,
        };
        m.observe_http(labels, 0.001);
        m.collections.set(3);
        let text = m.encode().unwrap();
        assert!(text.contains(
            r#"vectord_http_requests_total{method="GET",route="/api/v2/heartbeat",status="200"} 1"#
        ));
        assert!(text.contains("vectord_collections 3"));
        assert!(text.ends_with("# EOF\n"));
    }
}
