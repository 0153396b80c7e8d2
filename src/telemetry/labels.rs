//! Label sets of the Prometheus series. Every label is bounded by something the operator
//! controls (routes, collections, jobs), never by request content, so the number of series
//! stays bounded whatever clients send.

use prometheus_client::encoding::EncodeLabelSet;

/// Labels of HTTP request metrics. `route` is the matched route template (e.g.
/// `/api/v2/tenants/{tenant}/…/{collection_id}/query`), never the raw path, so the number of
/// series stays bounded whatever clients send.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// HTTP method.
    pub method: String,
    /// Matched route template, `unmatched`, or `admission` for requests refused (429) before
    /// routing because the server was busy.
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Labels of per-collection gauges. Bounded by the number of collections (each has a few
/// series), never by request content.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CollectionLabels {
    /// Collection id.
    pub collection: String,
    /// Collection name (changes on rename; the id is the stable key).
    pub name: String,
}

/// Labels of the per-collection query-plan series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlanLabels {
    /// Collection id.
    pub collection: String,
    /// Collection name.
    pub name: String,
    /// `graph` (unfiltered HNSW), `filtered` (filter applied inside the graph search) or
    /// `exact` (a scan chosen up front: `ids` given, or k near the collection's size).
    pub plan: &'static str,
}

/// Label of the process memory gauges.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemoryLabels {
    /// `anon` (heap: what counts against the machine) or `file` (mapped pages the kernel can
    /// drop and re-read).
    pub kind: String,
}

/// Label of `vectord_query_plan_total`: how a query vector was answered
/// ([`crate::engine::QueryPlan`]: `graph`, `exact`, `filtered-graph`, `filtered-exact`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryPlanLabels {
    /// The plan's label.
    pub plan: &'static str,
}

/// Labels of requests from pre-1.0 clients: `api` is `v1` or `v2` (old formats on v2 paths).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LegacyLabels {
    /// Which legacy surface the request used.
    pub api: &'static str,
}

/// Label of per-job sync metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// Sync job name.
    pub job: String,
}
