//! The process's one Prometheus registry, created with the HTTP API and served at `/metrics`
//! (OpenMetrics text). Other modules get an `Arc<Metrics>` and record into its fields.

use std::fmt;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
    /// Collections in the catalog (set when `/metrics` is scraped).
    pub collections: Gauge,
    /// Collections whose data failed to open (set when `/metrics` is scraped).
    pub collections_failed: Gauge,
    /// Unix time of the last successful snapshot (0 before the first).
    pub snapshot_last_success: Gauge,
    /// Snapshots that failed.
    pub snapshot_failures: Counter,
    /// Time taken by successful snapshots, in seconds.
    pub snapshot_duration: Histogram,
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
        let collections = Gauge::default();
        let collections_failed = Gauge::default();
        let snapshot_last_success = Gauge::default();
        let snapshot_failures = Counter::default();
        // 10 ms … ~5 min: a small folder hard-links in milliseconds, a large WAL tail takes longer.
        let snapshot_duration = Histogram::new(exponential_buckets(0.01, 2.0, 15));
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
        registry.register(
            "snapshot_last_success_timestamp_seconds",
            "Unix time of the last successful snapshot",
            snapshot_last_success.clone(),
        );
        registry.register(
            "snapshot_failures",
            "Snapshots that failed",
            snapshot_failures.clone(),
        );
        registry.register(
            "snapshot_duration_seconds",
            "Duration of successful snapshots",
            snapshot_duration.clone(),
        );
        Metrics {
            registry,
            http_requests,
            http_duration,
            collections,
            collections_failed,
            snapshot_last_success,
            snapshot_failures,
            snapshot_duration,
        }
    }

    /// Records the outcome of one snapshot attempt.
    pub fn observe_snapshot(&self, ok: bool, seconds: f64) {
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            self.snapshot_last_success.set(now);
            self.snapshot_duration.observe(seconds);
        } else {
            self.snapshot_failures.inc();
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
