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
    /// pgvector sync jobs (set from their status when `/metrics` is scraped).
    pub sync: SyncMetrics,
}

/// Label of per-job sync metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// Sync job name.
    pub job: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Per-job sync gauges, mirrored from `sync::JobStatus` at scrape time (totals are since the
/// process started, so they are gauges of monotonic values rather than counters we increment).
#[derive(Debug, Clone, Default)]
pub struct SyncMetrics {
    /// Changes waiting at the source.
    pub lag_rows: Family<JobLabels, Gauge>,
    /// Age of the oldest change not yet applied.
    pub lag_seconds: Family<JobLabels, FloatGauge>,
    /// Rows written.
    pub applied: Family<JobLabels, Gauge>,
    /// Rows not stored (NULL embedding, unrepresentable).
    pub skipped: Family<JobLabels, Gauge>,
    /// Reconnects after errors.
    pub reconnects: Family<JobLabels, Gauge>,
    /// 1 when the job's last attempt failed (retrying or stopped), 0 otherwise.
    pub failing: Family<JobLabels, Gauge>,
}

impl SyncMetrics {
    fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sync");
        r.register(
            "lag_rows",
            "Changes waiting at the source",
            self.lag_rows.clone(),
        );
        r.register(
            "lag_seconds",
            "Age of the oldest change not yet applied",
            self.lag_seconds.clone(),
        );
        r.register(
            "applied_rows",
            "Rows written by the job",
            self.applied.clone(),
        );
        r.register("skipped_rows", "Rows not stored", self.skipped.clone());
        r.register(
            "reconnects",
            "Reconnects after errors",
            self.reconnects.clone(),
        );
        r.register(
            "failing",
            "1 while the job is retrying or failed",
            self.failing.clone(),
        );
    }

    /// Copies the jobs' status into the gauges.
    pub fn observe(&self, jobs: &[crate::sync::JobStatus]) {
        for j in jobs {
            let l = JobLabels {
                job: j.name.clone(),
            };
            let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.lag_rows.get_or_create(&l).set(int(j.lag_rows));
            self.lag_seconds.get_or_create(&l).set(j.lag_seconds);
            self.applied.get_or_create(&l).set(int(j.applied));
            self.skipped.get_or_create(&l).set(int(j.skipped.total()));
            self.reconnects.get_or_create(&l).set(int(j.reconnects));
            let failing = matches!(j.phase.as_str(), "retrying" | "failed");
            self.failing.get_or_create(&l).set(i64::from(failing));
        }
    }
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
        let sync = SyncMetrics::default();
        sync.register(&mut registry);
        Metrics {
            registry,
            sync,
            http_requests,
            http_duration,
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
