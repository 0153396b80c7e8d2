//! The process's one Prometheus registry, created with the HTTP API and served at `/metrics`
//! (OpenMetrics text). Other modules get an `Arc<Metrics>` and record into its fields.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::labels::{
    CollectionLabels, HttpLabels, JobLabels, LegacyLabels, MemoryLabels, PlanLabels,
    QueryPlanLabels,
};
use super::process;
use crate::embed::EmbedMetrics;
use crate::engine::CollectionStats;

type CollectionGauges = Family<CollectionLabels, Gauge>;

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
    /// 1 for each collection whose data failed to open, so an alert can name it.
    pub collection_failed: CollectionGauges,
    /// The embedder's cache and API call metrics (`vectord_embed_*`).
    pub embed: Arc<EmbedMetrics>,
    /// Live records per collection.
    pub collection_records: CollectionGauges,
    /// Published segments per collection.
    pub collection_segments: CollectionGauges,
    /// Rows in the active memtable per collection.
    pub collection_memtable_rows: CollectionGauges,
    /// Memtable rows not yet in its graph (scanned exactly by queries).
    pub collection_unindexed_rows: CollectionGauges,
    /// Tombstoned segment rows per collection (reclaimed by compaction).
    pub collection_tombstones: CollectionGauges,
    /// Tombstoned share of segment rows per collection (0 without segments): how much of what
    /// is mapped and scanned is dead weight until compaction.
    pub collection_tombstone_ratio: Family<CollectionLabels, FloatGauge>,
    /// Rows in segments per collection (live or tombstoned).
    pub collection_segment_rows: CollectionGauges,
    /// Bytes of the current WAL file per collection.
    pub collection_wal_bytes: CollectionGauges,
    /// Bytes of segment files mapped per collection.
    pub collection_mapped_bytes: CollectionGauges,
    /// Queries answered per collection (a counter kept by the engine, exported as a gauge).
    pub collection_queries: CollectionGauges,
    /// Queries that fell back to an exact scan per collection.
    pub collection_exact_fallbacks: CollectionGauges,
    /// Bytes of a collection's mapped segment files resident in memory (from /proc/self/smaps).
    pub collection_resident_bytes: CollectionGauges,
    /// Compactions that rewrote segments, per collection (engine counter, as a gauge).
    pub collection_compactions: CollectionGauges,
    /// Total time spent in those compactions, per collection.
    pub collection_compaction_seconds: Family<CollectionLabels, FloatGauge>,
    /// Query vectors per collection since it was opened, by the plan chosen before searching
    /// (`graph`, `filtered`, `exact`); resets when the collection is reopened.
    pub collection_query_plans: Family<PlanLabels, Gauge>,
    /// Query vectors of all collections since the process started, by the plan that ran
    /// (`filtered` split into `filtered-graph` / `filtered-exact`); mirrored from the engine's
    /// process-wide counts when `/metrics` is scraped.
    pub query_plans: Family<QueryPlanLabels, Counter>,
    /// Collection logs recovered in place after a failed WAL sync (mirrored from the engine's
    /// process-wide count when `/metrics` is scraped).
    pub wal_recoveries: Counter,
    /// Writes that waited for a flush to make room (mirrored from the engine when scraped).
    pub write_stalls: Counter,
    /// Writes refused (429) after waiting the whole stall (mirrored likewise).
    pub write_stall_timeouts: Counter,
    /// Resident memory of the process by kind (from /proc/self/status).
    pub process_resident_bytes: Family<MemoryLabels, Gauge>,
    /// The memtable memory budget: `kind="used"` (estimated bytes of every active and frozen
    /// memtable) and `kind="limit"` (`--memtable-budget-mb`).
    pub memtable_budget_bytes: Family<MemoryLabels, Gauge>,
    /// Memory of the machine (or the cgroup limit, when lower), the base of memory alerts.
    pub memory_limit_bytes: Gauge,
    /// Size of the data folder's file system.
    pub data_volume_size_bytes: Gauge,
    /// Space available to vectord on the data folder's file system.
    pub data_volume_available_bytes: Gauge,
    /// Unix time of the last successful snapshot: at startup, of the newest snapshot already
    /// in the snapshot folder (0 when there is none).
    pub snapshot_last_success: Gauge,
    /// Snapshots that failed.
    pub snapshot_failures: Counter,
    /// Time taken by successful snapshots, in seconds.
    pub snapshot_duration: Histogram,
    /// Completed background scrubs (every block of every segment read and checksummed).
    pub scrub_runs: Counter,
    /// Collections the last scrub found damaged.
    pub scrub_damaged_collections: Gauge,
    /// Segment bytes the last scrub verified.
    pub scrub_bytes: Gauge,
    /// Unix time the last scrub finished (0 before the first).
    pub scrub_last_timestamp: Gauge,
    /// Snapshot uploads to the bucket (or retention there) that failed.
    pub snapshot_upload_failures: Counter,
    /// Unix time of the last snapshot fully uploaded to the bucket: at startup, of the newest
    /// complete snapshot in the bucket (0 when there is none or the listing failed).
    pub snapshot_upload_last_success: Gauge,
    /// Time taken by successful uploads, in seconds.
    pub snapshot_upload_duration: Histogram,
    /// pgvector sync jobs (set from their status when `/metrics` is scraped).
    pub sync: SyncMetrics,
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
        let legacy_requests = Family::<LegacyLabels, Counter>::default();
        let collections = Gauge::default();
        let collections_failed = Gauge::default();
        let snapshot_last_success = Gauge::default();
        let per_collection = |registry: &mut Registry, name: &str, help: &str| {
            let family = CollectionGauges::default();
            registry.register(name, help, family.clone());
            family
        };
        let collection_records =
            per_collection(&mut registry, "collection_records", "Live records");
        let collection_segments =
            per_collection(&mut registry, "collection_segments", "Published segments");
        let collection_memtable_rows = per_collection(
            &mut registry,
            "collection_memtable_rows",
            "Rows in the active memtable",
        );
        let collection_unindexed_rows = per_collection(
            &mut registry,
            "collection_unindexed_rows",
            "Memtable rows not yet in the graph (scanned exactly)",
        );
        let collection_tombstones = per_collection(
            &mut registry,
            "collection_tombstones",
            "Tombstoned segment rows awaiting compaction",
        );
        let collection_tombstone_ratio = Family::<CollectionLabels, FloatGauge>::default();
        registry.register(
            "collection_tombstone_ratio",
            "Tombstoned share of segment rows (tombstones / segment rows; 0 without segments): dead weight until compaction",
            collection_tombstone_ratio.clone(),
        );
        let collection_segment_rows = per_collection(
            &mut registry,
            "collection_segment_rows",
            "Rows in segments, live or tombstoned",
        );
        let collection_wal_bytes = per_collection(
            &mut registry,
            "collection_wal_bytes",
            "Bytes in the current WAL file",
        );
        let collection_mapped_bytes = per_collection(
            &mut registry,
            "collection_mapped_bytes",
            "Bytes of segment files memory-mapped",
        );
        let collection_queries = per_collection(
            &mut registry,
            "collection_queries",
            "Queries answered since the collection was opened",
        );
        let collection_exact_fallbacks = per_collection(
            &mut registry,
            "collection_exact_fallbacks",
            "Queries answered by an exact scan instead of the graph",
        );
        let collection_resident_bytes = per_collection(
            &mut registry,
            "collection_resident_bytes",
            "Bytes of the collection's mapped segment files resident in memory",
        );
        let collection_compactions = per_collection(
            &mut registry,
            "collection_compactions",
            "Compactions that rewrote segments since the collection was opened",
        );
        let collection_compaction_seconds = Family::<CollectionLabels, FloatGauge>::default();
        registry.register(
            "collection_compaction_seconds",
            "Total time spent compacting since the collection was opened",
            collection_compaction_seconds.clone(),
        );
        let collection_query_plans = Family::<PlanLabels, Gauge>::default();
        registry.register(
            "collection_query_plans",
            "Query vectors answered by this collection since it was opened (resets on reopen), by the plan chosen before searching: graph (unfiltered graph search), filtered (filtered graph search, whatever each segment then did) or exact (a scan chosen up front: ids given or n_results near the collection size, filtered or not). vectord_query_plan_total is the process-wide count by the plan that ran",
            collection_query_plans.clone(),
        );
        let query_plans = Family::<QueryPlanLabels, Counter>::default();
        registry.register(
            "query_plan",
            "Query vectors answered by all collections since the process started, by the plan that ran: graph, exact (unfiltered scan), filtered-graph (a filtered walk of at least one graph) or filtered-exact (every source scanned its filter matches). vectord_collection_query_plans has the per-collection count by the plan chosen up front",
            query_plans.clone(),
        );
        let wal_recoveries = Counter::default();
        registry.register(
            "wal_recoveries",
            "Collection logs recovered in place after a failed WAL sync (records after the last durable one dropped, writes resumed)",
            wal_recoveries.clone(),
        );
        let write_stalls = Counter::default();
        registry.register(
            "write_stalls",
            "Writes that waited because rows arrived faster than they were indexed and flushed",
            write_stalls.clone(),
        );
        let write_stall_timeouts = Counter::default();
        registry.register(
            "write_stall_timeouts",
            "Writes refused with 429 after waiting the whole write stall for room",
            write_stall_timeouts.clone(),
        );
        let process_resident_bytes = Family::<MemoryLabels, Gauge>::default();
        registry.register(
            "process_resident_bytes",
            "Resident memory by kind: anon (heap) or file (mapped, reclaimable)",
            process_resident_bytes.clone(),
        );
        let memtable_budget_bytes = Family::<MemoryLabels, Gauge>::default();
        registry.register(
            "memtable_budget_bytes",
            "Memtable memory budget: used (estimated bytes of all active and frozen memtables) and limit; past the limit writes that add rows stall, then get 429",
            memtable_budget_bytes.clone(),
        );
        let memory_limit_bytes = Gauge::default();
        registry.register(
            "memory_limit_bytes",
            "Memory available to the process: MemTotal, or the cgroup limit when lower",
            memory_limit_bytes.clone(),
        );
        let data_volume_size_bytes = Gauge::default();
        registry.register(
            "data_volume_size_bytes",
            "Size of the data folder's file system",
            data_volume_size_bytes.clone(),
        );
        let data_volume_available_bytes = Gauge::default();
        registry.register(
            "data_volume_available_bytes",
            "Space available on the data folder's file system",
            data_volume_available_bytes.clone(),
        );
        let snapshot_failures = Counter::default();
        // 10 ms … ~5 min: a small folder hard-links in milliseconds, a large WAL tail takes longer.
        let snapshot_duration = Histogram::new(exponential_buckets(0.01, 2.0, 15));
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
        let collection_failed = CollectionGauges::default();
        registry.register(
            "collection_failed",
            "1 for each collection whose data failed to open (listed in /api/v2/healthcheck)",
            collection_failed.clone(),
        );
        let embed = Arc::new(EmbedMetrics::register(
            registry.sub_registry_with_prefix("embed"),
        ));
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
        let scrub_runs = Counter::default();
        let scrub_damaged_collections = Gauge::default();
        let scrub_bytes = Gauge::default();
        let scrub_last_timestamp = Gauge::default();
        registry.register(
            "scrub_runs",
            "Completed background scrubs of every segment block",
            scrub_runs.clone(),
        );
        registry.register(
            "scrub_damaged_collections",
            "Collections the last scrub found damaged",
            scrub_damaged_collections.clone(),
        );
        registry.register(
            "scrub_verified_bytes",
            "Segment bytes the last scrub verified",
            scrub_bytes.clone(),
        );
        registry.register(
            "scrub_last_timestamp_seconds",
            "Unix time the last scrub finished",
            scrub_last_timestamp.clone(),
        );
        let snapshot_upload_failures = Counter::default();
        registry.register(
            "snapshot_upload_failures",
            "Snapshot uploads to the S3 bucket (or pruning there) that failed",
            snapshot_upload_failures.clone(),
        );
        let snapshot_upload_last_success = Gauge::default();
        registry.register(
            "snapshot_upload_last_success_timestamp_seconds",
            "Unix time of the last snapshot fully uploaded to the S3 bucket",
            snapshot_upload_last_success.clone(),
        );
        // 100 ms … ~2 h: uploads are bounded by the link, not the disk.
        let snapshot_upload_duration = Histogram::new(exponential_buckets(0.1, 2.0, 17));
        registry.register(
            "snapshot_upload_duration_seconds",
            "Duration of successful snapshot uploads",
            snapshot_upload_duration.clone(),
        );
        let sync = SyncMetrics::default();
        sync.register(&mut registry);
        Metrics {
            registry,
            embed,
            sync,
            http_requests,
            http_duration,
            legacy_requests,
            collections,
            collections_failed,
            collection_failed,
            collection_records,
            collection_segments,
            collection_memtable_rows,
            collection_unindexed_rows,
            collection_tombstones,
            collection_tombstone_ratio,
            collection_segment_rows,
            collection_wal_bytes,
            collection_mapped_bytes,
            collection_queries,
            collection_exact_fallbacks,
            collection_resident_bytes,
            collection_compactions,
            collection_compaction_seconds,
            collection_query_plans,
            query_plans,
            wal_recoveries,
            write_stalls,
            write_stall_timeouts,
            process_resident_bytes,
            memtable_budget_bytes,
            memory_limit_bytes,
            data_volume_size_bytes,
            data_volume_available_bytes,
            snapshot_last_success,
            snapshot_failures,
            snapshot_duration,
            scrub_runs,
            scrub_damaged_collections,
            scrub_bytes,
            scrub_last_timestamp,
            snapshot_upload_failures,
            snapshot_upload_last_success,
            snapshot_upload_duration,
        }
    }

    /// Replaces the per-collection gauges with `stats` (collections deleted since the last
    /// scrape disappear instead of lingering).
    pub fn set_collection_stats<'a>(
        &self,
        stats: impl IntoIterator<Item = (CollectionLabels, &'a CollectionStats)>,
    ) {
        let families = [
            &self.collection_records,
            &self.collection_segments,
            &self.collection_memtable_rows,
            &self.collection_unindexed_rows,
            &self.collection_tombstones,
            &self.collection_segment_rows,
            &self.collection_wal_bytes,
            &self.collection_mapped_bytes,
            &self.collection_queries,
            &self.collection_exact_fallbacks,
            &self.collection_resident_bytes,
            &self.collection_compactions,
        ];
        for f in families {
            f.clear();
        }
        self.collection_compaction_seconds.clear();
        self.collection_tombstone_ratio.clear();
        self.collection_query_plans.clear();
        self.observe_query_plans();
        self.observe_wal_recoveries();
        self.observe_write_stalls();
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (labels, s) in stats {
            let values = [
                s.records,
                s.segments as u64,
                s.memtable_rows as u64,
                s.unindexed_rows as u64,
                s.tombstones as u64,
                s.segment_rows as u64,
                s.wal_bytes,
                s.mapped_bytes as u64,
                s.queries,
                s.exact_fallbacks,
            ];
            for (f, v) in families.iter().zip(values) {
                f.get_or_create(&labels).set(clamp(v));
            }
            self.collection_compactions
                .get_or_create(&labels)
                .set(clamp(s.compactions));
            self.collection_compaction_seconds
                .get_or_create(&labels)
                .set(s.compaction_micros as f64 / 1e6);
            self.collection_tombstone_ratio
                .get_or_create(&labels)
                .set(tombstone_ratio(s.tombstones, s.segment_rows));
            for (plan, v) in [
                ("graph", s.plan_graph),
                ("filtered", s.plan_filtered),
                ("exact", s.plan_exact),
            ] {
                self.collection_query_plans
                    .get_or_create(&PlanLabels {
                        collection: labels.collection.clone(),
                        name: labels.name.clone(),
                        plan,
                    })
                    .set(clamp(v));
            }
        }
    }

    /// Replaces `vectord_collection_failed` with one series per collection that failed to
    /// open (dropped ones disappear).
    pub fn set_failed_collections(&self, failed: impl IntoIterator<Item = CollectionLabels>) {
        self.collection_failed.clear();
        for labels in failed {
            self.collection_failed.get_or_create(&labels).set(1);
        }
    }

    /// Brings `vectord_wal_recoveries_total` up to the engine's count (it only grows).
    pub fn observe_wal_recoveries(&self) {
        let (now, have) = (
            crate::engine::wal_recoveries_total(),
            self.wal_recoveries.get(),
        );
        if now > have {
            self.wal_recoveries.inc_by(now - have);
        }
    }

    /// Brings the write-stall counters up to the engine's counts (they only grow).
    pub fn observe_write_stalls(&self) {
        let (stalls, timeouts) = crate::engine::write_stalls_total();
        for (c, now) in [
            (&self.write_stalls, stalls),
            (&self.write_stall_timeouts, timeouts),
        ] {
            let have = c.get();
            if now > have {
                c.inc_by(now - have);
            }
        }
    }

    /// Brings `vectord_query_plan_total` up to the engine's counts (they only grow, so the
    /// counters stay monotonic).
    pub fn observe_query_plans(&self) {
        for plan in crate::engine::QueryPlan::ALL {
            let c = self
                .query_plans
                .get_or_create(&QueryPlanLabels { plan: plan.label() });
            let (now, have) = (plan.total(), c.get());
            if now > have {
                c.inc_by(now - have);
            }
        }
    }

    /// Sets the memtable budget gauges from the catalog's budget.
    pub fn observe_memtable_budget(&self, budget: &crate::engine::MemtableBudget) {
        let clamp = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        for (kind, v) in [("used", budget.used()), ("limit", budget.limit())] {
            self.memtable_budget_bytes
                .get_or_create(&MemoryLabels { kind: kind.into() })
                .set(clamp(v));
        }
    }

    /// Samples process memory (Linux `/proc/self/status`) and the data volume's space.
    pub fn sample_process(&self, data_dir: &std::path::Path) {
        for (kind, bytes) in process::resident_by_kind() {
            self.process_resident_bytes
                .get_or_create(&MemoryLabels { kind: kind.into() })
                .set(bytes);
        }
        if let Some(limit) = process::memory_limit() {
            self.memory_limit_bytes.set(limit);
        }
        if let Some((size, available)) = process::volume_space(data_dir) {
            let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.data_volume_size_bytes.set(clamp(size));
            self.data_volume_available_bytes.set(clamp(available));
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

    /// Records a snapshot that already existed when the process started (`created_at`, Unix
    /// seconds), so the stale-snapshot alert measures the snapshot's age, not the uptime. A
    /// newer success already recorded wins.
    pub fn note_snapshot_taken_at(&self, created_at: u64) {
        let t = i64::try_from(created_at).unwrap_or(i64::MAX);
        self.snapshot_last_success
            .inner()
            .fetch_max(t, std::sync::atomic::Ordering::Relaxed);
    }

    /// Like [`Metrics::note_snapshot_taken_at`] for the newest snapshot found in the bucket.
    pub fn note_snapshot_uploaded_at(&self, created_at: u64) {
        let t = i64::try_from(created_at).unwrap_or(i64::MAX);
        self.snapshot_upload_last_success
            .inner()
            .fetch_max(t, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records one finished scrub.
    pub fn observe_scrub(&self, damaged: usize, bytes: u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.scrub_runs.inc();
        self.scrub_damaged_collections.set(damaged as i64);
        self.scrub_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.scrub_last_timestamp.set(now);
    }

    /// Records the outcome of one snapshot upload (with pruning of the bucket).
    pub fn observe_snapshot_upload(&self, ok: bool, seconds: f64) {
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            self.snapshot_upload_last_success.set(now);
            self.snapshot_upload_duration.observe(seconds);
        } else {
            self.snapshot_upload_failures.inc();
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

/// `tombstones / segment_rows`, or 0 when there are no segment rows.
fn tombstone_ratio(tombstones: usize, segment_rows: usize) -> f64 {
    if segment_rows == 0 {
        0.0
    } else {
        tombstones as f64 / segment_rows as f64
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

    #[test]
    fn failed_collections_and_existing_snapshots_are_exported() {
        let m = Metrics::new();
        let broken = CollectionLabels {
            collection: "0b6c".into(),
            name: "broken".into(),
        };
        m.set_failed_collections([broken]);
        let text = m.encode().unwrap();
        assert!(text.contains(r#"vectord_collection_failed{collection="0b6c",name="broken"} 1"#));
        m.set_failed_collections([]);
        assert!(!m.encode().unwrap().contains("vectord_collection_failed{"));
        // A snapshot found at startup sets the gauge; an older one never moves it back.
        m.note_snapshot_taken_at(1_700_000_000);
        m.note_snapshot_taken_at(1_600_000_000);
        m.note_snapshot_uploaded_at(1_650_000_000);
        let text = m.encode().unwrap();
        assert!(text.contains("vectord_snapshot_last_success_timestamp_seconds 1700000000"));
        assert!(text.contains("vectord_snapshot_upload_last_success_timestamp_seconds 1650000000"));
        assert_eq!(tombstone_ratio(0, 0), 0.0);
        assert_eq!(tombstone_ratio(25, 100), 0.25);
    }
}
