//! The `vectord` command line. Wiring only: parse flags, set up logging, open the catalog, bind,
//! serve until SIGINT or SIGTERM.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use vectord::api::{self, AppState};
use vectord::backup::error::SnapshotError;
use vectord::backup::local;
use vectord::backup::manifest::read_info;
use vectord::backup::restore::Transfer;
use vectord::backup::s3::S3Target;
use vectord::backup::service::{SnapshotSummary, Snapshots};
use vectord::catalog::{Catalog, CollectionSelector, DEFAULT_DATABASE, DEFAULT_TENANT};
use vectord::config::{RunArgs, S3Args, S3Settings, Settings};
use vectord::telemetry::audit::AuditLog;
use vectord::tools::migrate;

/// A self-hosted vector retrieval server that speaks Chroma's HTTP API.
#[derive(Debug, Parser)]
#[command(name = "vectord", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (flags as `chroma run`).
    Run(Box<RunArgs>),
    /// pgvector sync: run, install, reconcile, rebuild, status, drop-slot.
    #[command(subcommand)]
    Sync(Box<vectord::sync::cli::SyncCommand>),
    /// Take, list or verify data-folder snapshots (while the server runs, use
    /// `POST /api/v2/admin/snapshots` instead: the folder is locked by the server).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Replace a data folder with a verified snapshot, or put back one collection of a
    /// snapshot leaving the others alone (the server must be stopped).
    Restore {
        /// The snapshot folder (one with SNAPSHOT.json).
        #[arg(
            long,
            required_unless_present_any = ["from_s3", "finish"],
            conflicts_with = "from_s3"
        )]
        from: Option<PathBuf>,
        /// Download the snapshot from this bucket and prefix (`s3://bucket/prefix`), verify every
        /// checksum, then restore it.
        #[arg(long)]
        from_s3: Option<String>,
        /// Which remote snapshot (folder name) to restore [default: the newest complete whole-folder one].
        #[arg(long, requires = "from_s3")]
        snapshot: Option<String>,
        #[command(flatten)]
        s3: S3Args,
        /// The data folder to restore into.
        #[arg(long, default_value = vectord::config::DEFAULT_PATH)]
        path: PathBuf,
        /// Replace a data folder holding data (its catalog and collections are kept in
        /// `<path>/.before-restore-<time>/`), or, restoring one collection, that collection
        /// (kept as `<path>/collections/.before-restore-<id>-<time>`).
        #[arg(long)]
        force: bool,
        /// Finish a restore into `--path` that stopped half way through its swap (the server
        /// refuses to start until then); needs no snapshot.
        #[arg(long, conflicts_with_all = ["from", "from_s3", "force"])]
        finish: bool,
        /// Restore only this collection of the snapshot into the existing folder (implied by a
        /// one-collection snapshot).
        #[command(flatten)]
        which: CollectionArgs,
    },
    /// Purge deleted records from a data folder no server is using: flush, checkpoint the WAL
    /// and rewrite every segment without deleted rows (while the server runs, use
    /// `POST /api/v2/admin/collections/{id}/compact`).
    Compact {
        /// The data folder.
        #[arg(long, default_value = vectord::config::DEFAULT_PATH)]
        path: PathBuf,
        /// Only this collection [default: every collection].
        #[command(flatten)]
        which: CollectionArgs,
    },
    /// Copy every database and collection from a Chroma server (or an NDJSON export) into a
    /// running vectord, resumably.
    Import {
        /// Base URL of the source Chroma server, e.g. http://chroma.internal:8000.
        #[arg(long, required_unless_present = "file", conflicts_with = "file")]
        from_chroma: Option<String>,
        /// An NDJSON file written by `vectord export`.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Base URL of the target server.
        #[arg(long, default_value = "http://localhost:8000")]
        to: String,
        #[command(flatten)]
        copy: CopyArgs,
    },
    /// Benchmark Chroma-compatible servers: ingest, recall@k, latency, QPS per concurrency, an
    /// ef_search sweep and filtered search, with exact ground truth computed locally.
    Bench(Box<vectord::tools::bench::BenchArgs>),
    /// Write every collection of a Chroma-compatible server to an NDJSON file.
    Export {
        /// Base URL of the server to read.
        #[arg(long, default_value = "http://localhost:8000")]
        from: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        copy: CopyArgs,
    },
}

/// Which collection a command is limited to.
#[derive(Debug, clap::Args)]
struct CollectionArgs {
    /// The collection: its id, or its name in --tenant/--database.
    #[arg(long)]
    collection: Option<String>,
    /// Tenant of a collection given by name.
    #[arg(long, default_value = DEFAULT_TENANT, requires = "collection")]
    tenant: String,
    /// Database of a collection given by name.
    #[arg(long, default_value = DEFAULT_DATABASE, requires = "collection")]
    database: String,
}

impl CollectionArgs {
    fn selector(self) -> Option<CollectionSelector> {
        let (tenant, database) = (self.tenant, self.database);
        self.collection.map(|collection| CollectionSelector {
            collection,
            tenant,
            database,
        })
    }
}

/// Options shared by `import` and `export`.
#[derive(Debug, clap::Args)]
struct CopyArgs {
    /// Tenants to copy (Chroma has no API to list them).
    #[arg(long = "tenant", default_value = "default_tenant")]
    tenants: Vec<String>,
    /// Records per request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// File holding the source server's token (sent as X-Chroma-Token).
    #[arg(long)]
    from_token_file: Option<PathBuf>,
    /// File holding the target server's token.
    #[arg(long)]
    to_token_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Snapshot a data folder no server is using.
    Create {
        /// The data folder.
        #[arg(long, default_value = vectord::config::DEFAULT_PATH)]
        path: PathBuf,
        /// Where to put the snapshot [default: `<path>/snapshots`].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Snapshots to keep in `dir` (and in the bucket) after this one.
        #[arg(long, default_value_t = vectord::config::DEFAULT_SNAPSHOT_KEEP)]
        keep: usize,
        /// Also upload it to this bucket and prefix (`s3://bucket/prefix`) and prune there.
        #[arg(long)]
        s3: Option<String>,
        #[command(flatten)]
        s3_args: S3Args,
        /// Snapshot only this collection [default: the whole folder]. Retention (`--keep`)
        /// counts the whole folder's snapshots and each collection's separately.
        #[command(flatten)]
        which: CollectionArgs,
    },
    /// List the complete snapshots in a folder (or a bucket), oldest first.
    List {
        /// The snapshot folder [default: `./vectord_data/snapshots`].
        #[arg(long, conflicts_with = "s3")]
        dir: Option<PathBuf>,
        /// List the bucket and prefix `s3://bucket/prefix` instead.
        #[arg(long)]
        s3: Option<String>,
        #[command(flatten)]
        s3_args: S3Args,
    },
    /// Check every file of a snapshot against its recorded SHA-256.
    Verify {
        /// The snapshot folder (one with SNAPSHOT.json).
        snapshot: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Run(args) => Settings::from_args(*args)
            .map_err(anyhow::Error::from)
            .and_then(run),
        Command::Snapshot(cmd) => snapshot_command(cmd),
        Command::Import {
            from_chroma,
            file,
            to,
            copy,
        } => migrate_command(
            MigrateJob::Import {
                from_chroma,
                file,
                to,
            },
            copy,
        ),
        Command::Export { from, out, copy } => {
            migrate_command(MigrateJob::Export { from, out }, copy)
        }
        Command::Restore {
            from,
            from_s3,
            snapshot,
            s3,
            path,
            force,
            finish,
            which,
        } => {
            if finish {
                finish_restore_command(&path)
            } else {
                restore_command(
                    from,
                    from_s3.map(|u| (u, snapshot, s3)),
                    &path,
                    force,
                    which.selector(),
                )
            }
        }
        Command::Compact { path, which } => compact_command(&path, which.selector()),
        Command::Sync(cmd) => run_sync(*cmd),
        Command::Bench(args) => vectord::tools::bench::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            tracing::error!(error = format!("{e:#}"), "vectord failed");
            eprintln!("vectord: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs as JSON lines when stdout is not a terminal (containers, CI), as text otherwise;
/// `RUST_LOG` overrides the default `info` level. Audit events (target `audit`) stay on at
/// `info` whatever the level, unless `RUST_LOG` names the `audit` target itself: without
/// `--audit-log` the log is the audit trail, and a quieter log level must not end it.
fn init_tracing() {
    let env = std::env::var(EnvFilter::DEFAULT_ENV).unwrap_or_default();
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if !env.contains("audit") {
        if let Ok(directive) = "audit=info".parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::io::stdout().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

fn s3_target(url: String, args: S3Args) -> anyhow::Result<S3Target> {
    Ok(S3Target::new(&S3Settings::from_args(url, args))?)
}

/// `vectord restore`: from a local snapshot folder, or downloaded from a bucket into a folder
/// inside the target (same volume, even when the target is a mount point), verified,
/// restored, then the download is removed.
fn restore_command(
    from: Option<PathBuf>,
    from_s3: Option<(String, Option<String>, S3Args)>,
    path: &std::path::Path,
    force: bool,
    sel: Option<CollectionSelector>,
) -> anyhow::Result<()> {
    // One collection when asked for, or when the snapshot holds only one collection's scope;
    // the whole folder otherwise.
    let restore = |dir: &std::path::Path, transfer: Transfer| -> anyhow::Result<()> {
        let info = read_info(dir)?;
        if sel.is_none() && info.collection.is_none() {
            let done = vectord::backup::restore::restore_with(dir, path, force, transfer)?;
            println!(
                "restored {} ({} collections, {} files, {} bytes) into {}",
                done.info.name,
                done.info.collections,
                done.info.files.len(),
                done.info.total_bytes,
                path.display()
            );
            print_kept_aside(done.kept_aside.as_deref());
            return Ok(());
        }
        let done = vectord::backup::restore::restore_collection_with(
            dir,
            path,
            sel.as_ref(),
            force,
            transfer,
        )?;
        println!(
            "restored collection {} ({}) of {} into {}/{} of {}",
            done.record.name,
            done.record.id,
            done.info.name,
            done.record.tenant,
            done.record.database,
            path.display()
        );
        print_kept_aside(done.kept_aside.as_deref());
        Ok(())
    };
    if let Some((url, name, args)) = from_s3 {
        let target = s3_target(url.clone(), args)?;
        let created = !path.exists();
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        // Fail before a long download, not after it, when a server holds the folder.
        drop(
            vectord::engine::DirLock::acquire(path)
                .map_err(|_| SnapshotError::TargetLocked(path.to_path_buf()))?,
        );
        let download = path.join(format!(
            "{}{}",
            vectord::catalog::RESTORE_DOWNLOAD_PREFIX,
            std::process::id()
        ));
        let result = (|| {
            let dir = runtime()?
                .block_on(target.download(name.as_deref(), &download))
                .with_context(|| format!("downloading from {url}"))?;
            // The download is ours and verified before anything moves: its files are renamed
            // into place, so the volume needs room for one copy of the snapshot, not two.
            restore(&dir, Transfer::Move)
                .with_context(|| format!("restoring {} into {}", dir.display(), path.display()))
        })();
        let _ = std::fs::remove_dir_all(&download);
        if result.is_err() && created {
            remove_if_only_lock(path);
        }
        return result;
    }
    let from = from.context("--from or --from-s3 is required")?;
    restore(&from, Transfer::Copy)
        .with_context(|| format!("restoring {} into {}", from.display(), path.display()))
}

/// Removes a data folder this command created when a failed restore left nothing in it but
/// its lock file, so a refused restore leaves no trace.
fn remove_if_only_lock(path: &std::path::Path) {
    let only_lock = std::fs::read_dir(path).is_ok_and(|entries| {
        entries
            .flatten()
            .all(|e| e.file_name() == std::ffi::OsStr::new("LOCK"))
    });
    if only_lock {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// `vectord restore --finish`: replays an interrupted restore's journal.
fn finish_restore_command(path: &std::path::Path) -> anyhow::Result<()> {
    match vectord::backup::restore::finish(path)
        .with_context(|| format!("finishing the restore into {}", path.display()))?
    {
        None => println!("{}: no interrupted restore to finish", path.display()),
        Some(done) => {
            match done.collection {
                Some(id) => println!(
                    "finished restoring collection {id} of {} into {}",
                    done.snapshot,
                    path.display()
                ),
                None => println!(
                    "finished restoring {} into {}",
                    done.snapshot,
                    path.display()
                ),
            }
            print_kept_aside(done.kept_aside.as_deref());
        }
    }
    Ok(())
}

/// Tells the operator where the replaced data went: it holds records (PHI) until deleted.
fn print_kept_aside(kept: Option<&std::path::Path>) {
    if let Some(kept) = kept {
        println!(
            "the replaced data is kept at {} (delete it when no longer needed: it holds the old records)",
            kept.display()
        );
    }
}

/// `vectord compact`: purges deleted records from the selected collection (or every one) of
/// a stopped server's folder, printing one JSON report per collection. Every collection is
/// attempted; any failure makes the exit status non-zero.
fn compact_command(path: &std::path::Path, sel: Option<CollectionSelector>) -> anyhow::Result<()> {
    let catalog = Catalog::open(path).with_context(|| {
        format!(
            "opening {} (if a server is running, use POST /api/v2/admin/collections/{{id}}/compact)",
            path.display()
        )
    })?;
    let entries = match &sel {
        Some(sel) => vec![catalog.select(sel)?],
        None => catalog.all_collections(),
    };
    let mut failed = 0;
    for entry in entries {
        let started = std::time::Instant::now();
        let result = entry
            .engine()
            .map_err(anyhow::Error::from)
            .and_then(|c| c.purge_deleted().map_err(anyhow::Error::from));
        match result {
            Ok(report) => {
                let mut line = serde_json::to_value(report)?;
                line["collection"] = serde_json::json!(entry.record.id);
                line["name"] = serde_json::json!(entry.record.name);
                line["elapsed_ms"] = serde_json::json!(started.elapsed().as_millis() as u64);
                println!("{line}");
            }
            Err(e) => {
                failed += 1;
                eprintln!(
                    "vectord: purging {} ({}) failed: {e:#}",
                    entry.record.name, entry.record.id
                );
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} collection(s) could not be purged");
    Ok(())
}

fn snapshot_command(cmd: SnapshotCommand) -> anyhow::Result<()> {
    match cmd {
        SnapshotCommand::Create {
            path,
            dir,
            keep,
            s3,
            s3_args,
            which,
        } => {
            let catalog = Catalog::open(&path).with_context(|| {
                format!(
                    "opening {} (if a server is running, use POST /api/v2/admin/snapshots)",
                    path.display()
                )
            })?;
            let mut snapshots = Snapshots::new(dir.unwrap_or_else(|| path.join("snapshots")), keep);
            if let Some(url) = s3 {
                snapshots = snapshots.with_remote(s3_target(url, s3_args)?);
            }
            let only = match which.selector() {
                Some(sel) => Some(catalog.select(&sel)?.record.id),
                None => None,
            };
            let info = snapshots.take_scoped(&catalog, only)?;
            let mut summary = SnapshotSummary::from(&info);
            summary.s3 = runtime()?.block_on(snapshots.upload(&info));
            println!("{}", serde_json::to_string_pretty(&summary)?);
            match summary.s3.and_then(|c| c.error) {
                // The local snapshot exists; the exit status still tells scripts the copy failed.
                Some(e) => Err(anyhow::anyhow!(
                    "snapshot {} taken, upload failed: {e}",
                    info.name
                )),
                None => Ok(()),
            }
        }
        SnapshotCommand::List {
            s3: Some(url),
            s3_args,
            ..
        } => {
            let target = s3_target(url.clone(), s3_args)?;
            let list: Vec<SnapshotSummary> = runtime()?
                .block_on(target.list())
                .with_context(|| format!("listing {url}"))?
                .iter()
                .map(SnapshotSummary::from)
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
            Ok(())
        }
        SnapshotCommand::List { dir, .. } => {
            let dir = dir
                .unwrap_or_else(|| PathBuf::from(vectord::config::DEFAULT_PATH).join("snapshots"));
            let list: Vec<SnapshotSummary> = local::list(&dir)?
                .iter()
                .map(SnapshotSummary::from)
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
            Ok(())
        }
        SnapshotCommand::Verify { snapshot: dir } => {
            let info = local::verify(&dir)?;
            println!(
                "{}: OK ({} files, {} bytes, {} collections)",
                dir.display(),
                info.files.len(),
                info.total_bytes,
                info.collections
            );
            Ok(())
        }
    }
}

enum MigrateJob {
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

fn migrate_command(job: MigrateJob, copy: CopyArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
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

/// The shutdown signal as the listeners see it: when it arrived, once it has.
type StopReceiver = tokio::sync::watch::Receiver<Option<tokio::time::Instant>>;

/// Runs [`Catalog::scrub`] every `every`, on a blocking thread (one at a time), and reports
/// the result in metrics and the log.
async fn scrub_schedule(state: AppState, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        let catalog = state.catalog.clone();
        match tokio::task::spawn_blocking(move || catalog.scrub()).await {
            Ok((damaged, bytes)) => {
                state.metrics.observe_scrub(damaged, bytes);
                tracing::info!(
                    damaged_collections = damaged,
                    verified_bytes = bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "scrub finished"
                );
            }
            Err(e) => tracing::error!(error = %e, "scrub task failed"),
        }
    }
}

fn run(settings: Settings) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = rt.block_on(async move {
        let path = settings.path.clone();
        let catalog = tokio::task::spawn_blocking(move || Catalog::open(&path))
            .await?
            .with_context(|| format!("opening data folder {}", settings.path.display()))?;
        let failed = catalog.failed_collections().len();
        let addrs = settings
            .bind_addrs()
            .with_context(|| format!("resolving host {:?}", settings.host))?;
        let listener = TcpListener::bind(&addrs[..])
            .await
            .with_context(|| format!("binding {}:{}", settings.host, settings.port))?;
        tracing::info!(
            addr = %listener.local_addr()?,
            path = %settings.path.display(),
            allow_reset = settings.allow_reset,
            failed_collections = failed,
            "vectord listening"
        );
        if settings.embed.enabled() {
            // The key itself is never logged; only whether one is set.
            tracing::info!(
                base_url = %settings.embed.base_url_for_logs(),
                model = %settings.embed.model,
                api_key_set = settings.embed.api_key.is_some(),
                "server-side embeddings enabled"
            );
        }
        let every = settings.snapshot_every;
        let drain = settings.limits.shutdown_drain;
        let scrub_every = settings.scrub_every;
        let metrics_port = settings.metrics_port;
        let audit = match &settings.audit_log {
            Some(path) => AuditLog::to_file(path)
                .with_context(|| format!("opening the audit log {}", path.display()))?,
            None => AuditLog::to_tracing(),
        };
        let sync_file = match &settings.sync_config {
            Some(p) => Some(vectord::sync::SyncFile::load(p)?),
            None => None,
        };
        let remote = match &settings.snapshot_s3 {
            Some(s3) => Some(S3Target::new(s3).context("--snapshot-s3-url")?),
            None => None,
        };
        let mut state = AppState::new(catalog, settings)
            .context("setting up auth")?
            .with_audit(audit);
        if let Some(remote) = remote {
            tracing::info!(url = %remote.url(), "snapshots are also uploaded");
            state.snapshots = state.snapshots.with_remote(remote);
        }
        // Gauges from the snapshots already taken, and the schedule when one is set.
        state.snapshots.start(every).await?;
        if let Some(every) = scrub_every {
            tokio::spawn(scrub_schedule(state.clone(), every));
        }
        let catalog = std::sync::Arc::clone(&state.catalog);
        let (stop_sync, sync_stopped) = tokio::sync::watch::channel(false);
        let jobs = match &sync_file {
            Some(f) => vectord::sync::job::spawn_all(
                std::sync::Arc::clone(&catalog),
                &f.job,
                &state.sync,
                sync_stopped,
            ),
            None => Vec::new(),
        };
        // One signal stops both listeners and the sync jobs; it carries when it arrived, so
        // the whole shutdown keeps to one drain deadline.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(None::<tokio::time::Instant>);
        let stopped = move |mut rx: StopReceiver| async move {
            let _ = rx.wait_for(Option::is_some).await;
        };
        let metrics_server = match metrics_port {
            Some(port) => {
                let addrs: Vec<_> = addrs
                    .iter()
                    .map(|a| std::net::SocketAddr::new(a.ip(), port))
                    .collect();
                let l = TcpListener::bind(&addrs[..])
                    .await
                    .with_context(|| format!("binding metrics port {port}"))?;
                tracing::info!(addr = %l.local_addr()?, "metrics listening");
                Some(tokio::spawn(api::serve_metrics(
                    l,
                    state.clone(),
                    stopped(stop_rx.clone()),
                )))
            }
            None => None,
        };
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(Some(tokio::time::Instant::now()));
            // Sync jobs write their last batch and checkpoint while requests drain.
            let _ = stop_sync.send(true);
        });
        api::serve(listener, state, stopped(stop_rx.clone())).await?;
        if let Some(m) = metrics_server {
            m.await??;
        }
        let signalled = (*stop_rx.borrow()).unwrap_or_else(tokio::time::Instant::now);
        let deadline = signalled + drain;
        for j in jobs {
            if tokio::time::timeout_at(deadline, j).await.is_err() {
                tracing::warn!("a sync job did not stop within the shutdown drain deadline");
            }
        }
        // Requests have drained (or the deadline passed; the WAL has what they acknowledged):
        // write memtables out so the next start maps everything.
        let failed = tokio::task::spawn_blocking(move || catalog.flush_all()).await?;
        tracing::info!(flush_failures = failed, "vectord stopped");
        Ok::<(), anyhow::Error>(())
    });
    // Requests cut off by the drain deadline may still sit on blocking threads; dropping the
    // runtime would wait for them. The flush is done and the WAL holds every acknowledged write.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

fn run_sync(cmd: vectord::sync::cli::SyncCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(vectord::sync::cli::execute(cmd))?;
    Ok(())
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
