//! `vectord import` and `vectord export`: moving collections between servers and NDJSON files,
//! over HTTP (`vectord::tools::migrate`).

use std::path::PathBuf;

use anyhow::Context;

use vectord::tools::migrate;

use super::common::runtime;

/// Options shared by `import` and `export`.
#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// Tenants to copy (Chroma has no API to list them).
    #[arg(long = "tenant", default_value = "default_tenant")]
    pub tenants: Vec<String>,
    /// Records per request.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// File holding the source server's token (sent as X-Chroma-Token).
    #[arg(long)]
    pub from_token_file: Option<PathBuf>,
    /// File holding the target server's token.
    #[arg(long)]
    pub to_token_file: Option<PathBuf>,
}

/// What `migrate_command` copies, and where.
pub enum MigrateJob {
    Import {
        from_chroma: Option<String>,
        file: Option<PathBuf>,
        to: String,
    },
    Export {
        from: String,
        out: PathBuf,
    },
}

fn read_token(path: &Option<PathBuf>) -> anyhow::Result<Option<String>> {
    path.as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|t| t.trim().to_string())
                .with_context(|| format!("reading token file {}", p.display()))
        })
        .transpose()
}

/// `vectord import` / `vectord export`: runs `job`, then prints what was copied.
pub fn migrate_command(job: MigrateJob, copy: CopyArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let from_token = read_token(&copy.from_token_file)?;
    let to_token = read_token(&copy.to_token_file)?;
    let started = std::time::Instant::now();
    let report = rt.block_on(async {
        match job {
            MigrateJob::Import {
                from_chroma: Some(url),
                to,
                ..
            } => {
                let source = migrate::Endpoint::new(&url, from_token);
                let target = migrate::Endpoint::new(&to, to_token);
                migrate::copy_servers(&source, &target, &copy.tenants, copy.batch)
                    .await
                    .with_context(|| format!("importing from {url} into {to}"))
            }
            MigrateJob::Import { file, to, .. } => {
                let path = file.context("--from-chroma or --file is required")?;
                let f = std::fs::File::open(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
                let target = migrate::Endpoint::new(&to, to_token);
                migrate::import_file(&target, std::io::BufReader::new(f))
                    .await
                    .with_context(|| format!("importing {} into {to}", path.display()))
            }
            MigrateJob::Export { from, out } => {
                let source = migrate::Endpoint::new(&from, from_token);
                let f = std::fs::File::create(&out)
                    .with_context(|| format!("creating {}", out.display()))?;
                let mut w = std::io::BufWriter::new(f);
                let r = migrate::export(&source, &copy.tenants, &mut w, copy.batch)
                    .await
                    .with_context(|| format!("exporting {from} to {}", out.display()))?;
                w.into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|f| f.sync_all())
                    .with_context(|| format!("writing {}", out.display()))?;
                Ok(r)
            }
        }
    })?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} collections, {} records copied, {} already present; {:.1} s ({:.0} records/s)",
        report.collections,
        report.records,
        report.skipped,
        secs,
        report.records as f64 / secs.max(1e-9)
    );
    Ok(())
}
