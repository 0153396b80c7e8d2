//! The benchmark's outputs: a table on stdout, the JSON document, and the recall-vs-QPS chart
//! (plotters' SVG backend: text is written as SVG `<text>`, so no font library is linked).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use serde::Serialize;
use serde_json::Value;

use super::load::{IngestReport, PhaseReport};

/// The whole JSON document of one `vectord bench` invocation.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// Always `vectord bench`.
    pub tool: &'static str,
    /// Version of the vectord binary that ran the benchmark.
    pub tool_version: &'static str,
    /// Unix time the run started.
    pub started_unix: u64,
    /// The data.
    pub dataset: DatasetInfo,
    /// Collection and load settings shared by every server.
    pub settings: Value,
    /// One entry per server URL, in order.
    pub runs: Vec<RunReport>,
}

/// Shape and provenance of the dataset.
#[derive(Debug, Serialize)]
pub struct DatasetInfo {
    /// Folder / file / generator name.
    pub name: String,
    /// Base vectors.
    pub vectors: usize,
    /// Dimension.
    pub dim: usize,
    /// Query vectors.
    pub queries: usize,
    /// Whether metadata was sent.
    pub metadata: bool,
    /// Seconds spent on exact ground truth (0 when all of it came from the cache).
    pub ground_truth_s: f64,
    /// Whether every ground truth came from the cache.
    pub ground_truth_cached: bool,
}

/// Everything measured against one server.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// Name in tables and the chart.
    pub label: String,
    /// Server URL.
    pub url: String,
    /// `GET /api/v2/version`.
    pub server_version: String,
    /// Collection used.
    pub collection: String,
    /// Ingest phase (absent with `--skip-ingest`).
    pub ingest: Option<IngestReport>,
    /// Unfiltered phases at the configured `ef_search`, one per concurrency.
    pub queries: Vec<PhaseReport>,
    /// Unfiltered phases per `ef_search` of the sweep.
    pub ef_sweep: Vec<PhaseReport>,
    /// Filtered phases per filter.
    pub filtered: Vec<FilteredReport>,
}

/// One filter's phases.
#[derive(Debug, Serialize)]
pub struct FilteredReport {
    /// Filter name.
    pub name: String,
    /// The `where` sent.
    #[serde(rename = "where")]
    pub where_: Value,
    /// Base rows passing it.
    pub matches: usize,
    /// matches ÷ base rows.
    pub selectivity: f64,
    /// One phase per filter concurrency.
    pub phases: Vec<PhaseReport>,
}

fn row(out: &mut String, name: &str, p: &PhaseReport, filtered: bool) {
    let wrong = if filtered {
        p.wrong_filter.to_string()
    } else {
        "-".into()
    };
    out.push_str(&format!(
        "{name:<16} {:>4} {:>5} {:>9.4} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.0} {:>6} {:>6} {:>6}\n",
        p.concurrency, p.ef_search, p.recall_at_k, p.latency_ms.p50, p.latency_ms.p95, p.latency_ms.p99, p.latency_ms.max, p.qps, p.under_returned, wrong, p.errors
    ));
}

/// The human-readable table of one report.
pub fn table(r: &BenchReport, k: usize) -> String {
    let d = &r.dataset;
    let mut out = String::new();
    for run in &r.runs {
        out.push_str(&format!(
            "== {} ({}, server {}) on {}: {} x {}, {} queries, k={k}\n",
            run.label, run.url, run.server_version, d.name, d.vectors, d.dim, d.queries
        ));
        if let Some(i) = &run.ingest {
            out.push_str(&format!(
                "ingest: {} vectors in {:.2} s = {:.0} vec/s acknowledged ({}, batch {} x {} conn{}); batch p50 {:.1} ms, p99 {:.1} ms; count caught up {:.2} s after the last ack\n",
                i.vectors, i.seconds, i.vectors_per_s, i.embedding_encoding, i.batch, i.concurrency,
                if i.with_metadata { ", with metadata" } else { "" },
                i.batch_latency_ms.p50, i.batch_latency_ms.p99, i.count_caught_up_s
            ));
        }
        out.push_str(&format!(
            "{:<16} {:>4} {:>5} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6} {:>6} {:>6}\n",
            "phase",
            "c",
            "ef",
            format!("recall@{k}"),
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "QPS",
            "under",
            "wrong",
            "errors"
        ));
        for p in &run.queries {
            row(&mut out, "unfiltered", p, false);
        }
        for p in &run.ef_sweep {
            row(&mut out, "ef sweep", p, false);
        }
        for f in &run.filtered {
            for p in &f.phases {
                row(&mut out, &f.name, p, true);
            }
        }
        for p in run
            .queries
            .iter()
            .chain(&run.ef_sweep)
            .chain(run.filtered.iter().flat_map(|f| &f.phases))
        {
            if let Some(e) = &p.first_error {
                out.push_str(&format!("first error (c={}): {e}\n", p.concurrency));
                break;
            }
        }
        out.push('\n');
    }
    out
}

/// Writes the JSON document.
pub fn write_json(r: &BenchReport, path: &Path) -> anyhow::Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    serde_json::to_writer_pretty(&mut f, r)?;
    f.write_all(b"\n")?;
    Ok(())
}

/// Recall-vs-QPS points of one run: the ef sweep when there is one, else the unfiltered phases.
fn points(run: &RunReport) -> Vec<(f64, f64, String)> {
    let (src, by_ef) = if run.ef_sweep.is_empty() {
        (&run.queries, false)
    } else {
        (&run.ef_sweep, true)
    };
    let mut p: Vec<(f64, f64, String)> = src
        .iter()
        .map(|p| {
            (
                p.recall_at_k,
                p.qps,
                if by_ef {
                    format!("ef {}", p.ef_search)
                } else {
                    format!("c={}", p.concurrency)
                },
            )
        })
        .collect();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    p
}

/// One server's chart line: its label and `(recall, qps, point label)` points.
type Series = (String, Vec<(f64, f64, String)>);

/// Writes the recall@k (x) vs QPS (y) chart, one line per server.
pub fn write_chart(r: &BenchReport, k: usize, path: &Path) -> anyhow::Result<()> {
    let series: Vec<Series> = r
        .runs
        .iter()
        .map(|run| (run.label.clone(), points(run)))
        .collect();
    let all = series.iter().flat_map(|s| s.1.iter());
    let xmin = all.clone().map(|p| p.0).fold(1.0f64, f64::min);
    let ymax = all.map(|p| p.1).fold(1.0f64, f64::max);
    let xmin = ((xmin - 0.02).max(0.0) * 50.0).floor() / 50.0;
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let title = format!(
            "{}: recall@{k} vs QPS ({} x {})",
            r.dataset.name, r.dataset.vectors, r.dataset.dim
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(xmin..1.0f64, 0.0..ymax * 1.15)?;
        chart
            .configure_mesh()
            .x_desc(format!("recall@{k}"))
            .y_desc("queries per second")
            .x_label_formatter(&|x| format!("{x:.2}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for (i, (label, pts)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0, p.1)),
                    color.stroke_width(2),
                ))?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(
                pts.iter()
                    .map(|p| Circle::new((p.0, p.1), 4, color.filled())),
            )?;
            chart.draw_series(pts.iter().map(|p| {
                Text::new(
                    p.2.clone(),
                    (p.0, p.1),
                    ("sans-serif", 12).into_font().color(&BLACK),
                )
            }))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}
