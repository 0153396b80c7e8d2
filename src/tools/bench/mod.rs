//! `vectord bench`: benchmark any Chroma-compatible server over HTTP — dataset (harness
//! folder, `.npy` / `.fvecs`, or generated), exact ground truth computed locally, ingest,
//! closed-loop query phases per concurrency, an `ef_search` sweep, filtered phases — and report
//! a table, JSON and a recall-vs-QPS chart. A client of the HTTP API only, never of the engine.
//!
//! - [`dataset`]: loading and generating data.
//! - [`truth`]: exact top-k, cached by a hash of its inputs.
//! - [`filter`]: local `where` evaluation (filtered truth, violation checks).
//! - [`client`]: one keep-alive HTTP/1.1 connection per worker, Chroma v2 calls.
//! - [`load`]: ingest and query phases.
//! - [`report`]: table, JSON, SVG chart.

pub mod client;
pub mod dataset;
pub mod filter;
pub mod load;
pub mod report;
pub mod truth;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use client::{Conn, Target};
use dataset::{Dataset, GenSpec};
use load::{QuerySet, Span};
use report::{BenchReport, DatasetInfo, FilteredReport, RunReport};
use truth::Space;

/// How embeddings travel in add requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// base64 when the server's pre-flight says it supports it (what chromadb 1.x does).
    Auto,
    /// JSON float arrays.
    Json,
    /// base64 of little-endian f32.
    Base64,
}

/// Flags of `vectord bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A dataset folder in the shared harness's layout (base.npy, queries.npy, optional
    /// metadatas.jsonl and filters.json).
    #[arg(long, conflicts_with_all = ["base", "generate"])]
    pub dataset: Option<PathBuf>,
    /// Base vectors (.npy float32 N x D, or .fvecs); needs --queries.
    #[arg(long, requires = "queries", conflicts_with = "generate")]
    pub base: Option<PathBuf>,
    /// Query vectors (.npy or .fvecs).
    #[arg(long, requires = "base")]
    pub queries: Option<PathBuf>,
    /// Metadata for --base: JSON lines, line i for base row i.
    #[arg(long, requires = "base")]
    pub metadatas: Option<PathBuf>,
    /// Filters for --base: a JSON list of {"name", "where"}.
    #[arg(long, requires = "base")]
    pub filters_file: Option<PathBuf>,
    /// Generate N clustered vectors (seeded) with metadata and four filters.
    #[arg(long, value_name = "N")]
    pub generate: Option<usize>,
    /// Dimension of generated vectors.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Clusters of generated vectors.
    #[arg(long, default_value_t = 100)]
    pub clusters: usize,
    /// Generated queries.
    #[arg(long, default_value_t = 1000)]
    pub num_queries: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Use only the first N queries.
    #[arg(long)]
    pub max_queries: Option<usize>,
    /// Server(s) to benchmark, one after the other with the same data and client.
    #[arg(long = "url", default_value = "http://127.0.0.1:8000")]
    pub urls: Vec<String>,
    /// Names for the servers in reports (one per --url; default: the URL).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// File holding a token sent as X-Chroma-Token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Tenant.
    #[arg(long, default_value = "default_tenant")]
    pub tenant: String,
    /// Database.
    #[arg(long, default_value = "default_database")]
    pub database: String,
    /// Collection to (re)create; it is deleted first unless --skip-ingest.
    #[arg(long, default_value = "vectord_bench")]
    pub collection: String,
    /// Distance.
    #[arg(long, value_enum, default_value = "cosine")]
    pub space: Space,
    /// HNSW max_neighbors (M).
    #[arg(long, default_value_t = 16)]
    pub m: u32,
    /// HNSW ef_construction.
    #[arg(long, default_value_t = 100)]
    pub ef_construction: u32,
    /// HNSW ef_search for the query and filtered phases.
    #[arg(long, default_value_t = 100)]
    pub ef_search: u32,
    /// Results per query (recall@k).
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Records per add request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Connections adding at once.
    #[arg(long, default_value_t = 1)]
    pub ingest_concurrency: usize,
    /// Embedding encoding in add requests.
    #[arg(long, value_enum, default_value = "auto")]
    pub encoding: Encoding,
    /// Reuse the existing collection (already loaded with this dataset).
    #[arg(long)]
    pub skip_ingest: bool,
    /// Closed-loop workers per unfiltered phase (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub concurrency: Vec<usize>,
    /// Seconds per measured phase; 0 = exactly one pass over the queries.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Unmeasured seconds before each phase.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// ef_search values for the recall-vs-QPS curve (comma-separated; set through the
    /// collection's configuration between phases).
    #[arg(long, value_delimiter = ',')]
    pub ef_sweep: Vec<u32>,
    /// Workers during the sweep [default: the highest --concurrency].
    #[arg(long)]
    pub sweep_concurrency: Option<usize>,
    /// Filters to run: all, none, or comma-separated names.
    #[arg(long, default_value = "all")]
    pub filters: String,
    /// Workers per filtered phase (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub filter_concurrency: Vec<usize>,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the recall-vs-QPS chart (SVG) here.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Where ground truth is cached when the dataset's folder is not writable.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Seconds to wait for each server's heartbeat.
    #[arg(long, default_value_t = 30)]
    pub wait: u64,
}

/// A filter with everything its phases need.
struct PreparedFilter {
    name: String,
    where_: serde_json::Value,
    matches: usize,
    set: Arc<QuerySet>,
}

fn load_dataset(a: &BenchArgs, cache_root: &std::path::Path) -> anyhow::Result<Dataset> {
    let mut d = if let Some(dir) = &a.dataset {
        dataset::load_dir(dir, cache_root)?
    } else if let (Some(b), Some(q)) = (&a.base, &a.queries) {
        dataset::load_files(
            b,
            q,
            a.metadatas.as_deref(),
            a.filters_file.as_deref(),
            cache_root,
        )?
    } else if let Some(n) = a.generate {
        dataset::generate(
            GenSpec {
                n,
                dim: a.dim,
                clusters: a.clusters,
                queries: a.num_queries,
                seed: a.seed,
            },
            cache_root,
        )?
    } else {
        bail!("give a dataset: --dataset DIR, --base FILE --queries FILE, or --generate N");
    };
    if let Some(n) = a.max_queries {
        d.queries.truncate(n.max(1));
    }
    if a.filters == "none" {
        d.filters.clear();
        d.metadatas = None;
    } else if a.filters != "all" {
        let want: Vec<&str> = a.filters.split(',').map(str::trim).collect();
        for w in &want {
            if !d.filters.iter().any(|f| f.name == *w) {
                bail!("no filter named {w} in the dataset");
            }
        }
        d.filters.retain(|f| want.contains(&f.name.as_str()));
    }
    if d.metadatas.is_none() {
        d.filters.clear();
    }
    d.validate()?;
    Ok(d)
}

/// Runs the benchmark and prints / writes its reports.
pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    if a.k == 0 {
        bail!("--k must be positive");
    }
    if a.concurrency.is_empty() || a.concurrency.contains(&0) {
        bail!("--concurrency needs positive worker counts");
    }
    if !a.labels.is_empty() && a.labels.len() != a.urls.len() {
        bail!("give one --label per --url");
    }
    let token = a
        .token_file
        .as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|t| t.trim().to_string())
                .with_context(|| format!("reading {}", p.display()))
        })
        .transpose()?;
    let targets = a
        .urls
        .iter()
        .map(|u| Target::new(u, token.as_deref(), &a.tenant, &a.database))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cache_root = a
        .cache_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("vectord-bench"));
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    let t = Instant::now();
    let ds = load_dataset(&a, &cache_root)?;
    eprintln!(
        "dataset {}: {} x {}, {} queries, {} filters ({:.1} s)",
        ds.name,
        ds.base.rows,
        ds.base.dim,
        ds.queries.rows,
        ds.filters.len(),
        t.elapsed().as_secs_f64()
    );

    // Ground truth, keyed by everything it depends on.
    let t = Instant::now();
    let data_key =
        truth::mix(truth::hash_f32(&ds.base.data) ^ truth::mix(truth::hash_f32(&ds.queries.data)))
            ^ truth::hash_bytes(a.k as u64, a.space.as_str().as_bytes());
    let k = a.k;
    let (gt, mut all_cached) = truth::cached(&ds.cache_dir, data_key, ds.queries.rows, k, || {
        truth::exact_topk(&ds.base, &ds.queries, a.space, k, None)
    });
    let meta_key = match &ds.metadatas {
        Some(m) => truth::hash_bytes(data_key, serde_json::to_string(m)?.as_bytes()),
        None => data_key,
    };
    let n = ds.base.rows;
    let unfiltered = Arc::new(QuerySet::build(&ds.queries, k, None, gt, k.min(n), None, n));
    let mut filters = Vec::new();
    for f in &ds.filters {
        let cond = filter::Cond::parse(&f.where_).with_context(|| format!("filter {}", f.name))?;
        let metas = ds.metadatas.as_deref().unwrap_or(&[]);
        let allowed: Vec<bool> = metas.iter().map(|m| cond.matches(m)).collect();
        let rows: Vec<u32> = (0..n as u32).filter(|&i| allowed[i as usize]).collect();
        let key = truth::hash_bytes(meta_key, f.where_.to_string().as_bytes());
        let (fgt, hit) = truth::cached(&ds.cache_dir, key, ds.queries.rows, k, || {
            truth::exact_topk(&ds.base, &ds.queries, a.space, k, Some(&rows))
        });
        all_cached &= hit;
        filters.push(PreparedFilter {
            name: f.name.clone(),
            where_: f.where_.clone(),
            matches: rows.len(),
            set: Arc::new(QuerySet::build(
                &ds.queries,
                k,
                Some(&f.where_),
                fgt,
                k.min(rows.len()),
                Some(Arc::new(allowed)),
                n,
            )),
        });
    }
    let gt_s = t.elapsed().as_secs_f64();
    eprintln!(
        "ground truth: {:.1} s ({})",
        gt_s,
        if all_cached { "cached" } else { "computed" }
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let base = Arc::new(ds.base);
    let metas = ds.metadatas.map(Arc::new);
    let span = if a.duration <= 0.0 {
        Span::OnePass
    } else {
        Span::For(Duration::from_secs_f64(a.duration))
    };
    let warmup = Duration::from_secs_f64(a.warmup.max(0.0));
    let hnsw = json!({
        "space": a.space.as_str(),
        "max_neighbors": a.m,
        "ef_construction": a.ef_construction,
        "ef_search": a.ef_search,
    });
    let mut runs = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let label = a
            .labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| target.url.clone());
        let run = rt.block_on(async {
            let mut conn = Conn::wait_up(target, Duration::from_secs(a.wait)).await?;
            let server_version = conn.version().await;
            eprintln!("[{label}] server {server_version} at {}", target.url);
            let (coll, ingest) = if a.skip_ingest {
                let id = conn.collection_id(&a.collection).await?;
                let count = conn.count(&id).await?;
                if count != n as u64 {
                    eprintln!(
                        "[{label}] warning: collection holds {count} records, the dataset {n}"
                    );
                }
                (id, None)
            } else {
                conn.delete_collection(&a.collection).await?;
                let id = conn.create_collection(&a.collection, &hnsw).await?;
                let b64 = match a.encoding {
                    Encoding::Auto => conn.supports_base64().await,
                    Encoding::Json => false,
                    Encoding::Base64 => true,
                };
                eprintln!(
                    "[{label}] ingesting {n} vectors ({})",
                    if b64 { "base64" } else { "json" }
                );
                let r = load::ingest(
                    target,
                    &id,
                    base.clone(),
                    metas.clone(),
                    a.batch,
                    a.ingest_concurrency,
                    b64,
                )
                .await?;
                eprintln!(
                    "[{label}] ingest: {:.0} vec/s acknowledged",
                    r.vectors_per_s
                );
                (id, Some(r))
            };
            conn.set_ef_search(&coll, a.ef_search).await?;
            let mut queries = Vec::new();
            for &c in &a.concurrency {
                let p = load::query_phase(
                    target,
                    &coll,
                    unfiltered.clone(),
                    c,
                    span,
                    warmup,
                    a.ef_search,
                )
                .await?;
                eprintln!(
                    "[{label}] c={c}: recall {:.4}, p50 {:.2} ms, {:.0} QPS",
                    p.recall_at_k, p.latency_ms.p50, p.qps
                );
                queries.push(p);
            }
            let mut ef_sweep = Vec::new();
            let sc = a
                .sweep_concurrency
                .unwrap_or_else(|| a.concurrency.iter().copied().max().unwrap_or(1));
            for &ef in &a.ef_sweep {
                conn.set_ef_search(&coll, ef).await?;
                let p = load::query_phase(target, &coll, unfiltered.clone(), sc, span, warmup, ef)
                    .await?;
                eprintln!(
                    "[{label}] ef {ef}, c={sc}: recall {:.4}, {:.0} QPS",
                    p.recall_at_k, p.qps
                );
                ef_sweep.push(p);
            }
            if !a.ef_sweep.is_empty() {
                conn.set_ef_search(&coll, a.ef_search).await?;
            }
            let mut filtered = Vec::new();
            for f in &filters {
                let mut phases = Vec::new();
                for &c in &a.filter_concurrency {
                    let p = load::query_phase(
                        target,
                        &coll,
                        f.set.clone(),
                        c,
                        span,
                        warmup,
                        a.ef_search,
                    )
                    .await?;
                    eprintln!(
                        "[{label}] {} c={c}: recall {:.4}, under {}, wrong {}, p50 {:.2} ms",
                        f.name, p.recall_at_k, p.under_returned, p.wrong_filter, p.latency_ms.p50
                    );
                    phases.push(p);
                }
                filtered.push(FilteredReport {
                    name: f.name.clone(),
                    where_: f.where_.clone(),
                    matches: f.matches,
                    selectivity: f.matches as f64 / n as f64,
                    phases,
                });
            }
            anyhow::Ok(RunReport {
                label: label.clone(),
                url: target.url.clone(),
                server_version,
                collection: a.collection.clone(),
                ingest,
                queries,
                ef_sweep,
                filtered,
            })
        })?;
        runs.push(run);
    }

    let report = BenchReport {
        tool: "vectord bench",
        tool_version: env!("CARGO_PKG_VERSION"),
        started_unix,
        dataset: DatasetInfo {
            name: ds.name,
            vectors: n,
            dim: base.dim,
            queries: unfiltered.bodies.len(),
            metadata: metas.is_some(),
            ground_truth_s: if all_cached { 0.0 } else { gt_s },
            ground_truth_cached: all_cached,
        },
        settings: json!({
            "k": k,
            "space": a.space.as_str(),
            "max_neighbors": a.m,
            "ef_construction": a.ef_construction,
            "ef_search": a.ef_search,
            "batch": a.batch,
            "ingest_concurrency": a.ingest_concurrency,
            "duration_s": a.duration,
            "warmup_s": a.warmup,
            "concurrency": a.concurrency,
            "ef_sweep": a.ef_sweep,
            "filter_concurrency": a.filter_concurrency,
        }),
        runs,
    };
    print!("{}", report::table(&report, k));
    if let Some(p) = &a.json {
        report::write_json(&report, p)?;
        eprintln!("JSON written to {}", p.display());
    }
    if let Some(p) = &a.chart {
        report::write_chart(&report, k, p)?;
        eprintln!("chart written to {}", p.display());
    }
    Ok(())
}
