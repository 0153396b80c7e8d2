//! `vectord sync …`: run, install, reconcile, rebuild, status and drop-slot for one job, given by
//! a config file (`--config`, `--job`) or by flags. Commands that write open the data folder
//! themselves, so they run while the server is stopped (the folder is locked otherwise); a
//! running server is asked through `vectord sync status --server URL`.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::apply::Applier;
use super::config::{FollowMode, JobConfig, NestedRule, SyncFile};
use super::connect::{column_kinds, connect};
use super::job::{open_collection, run, Until};
use super::mapping::Mapper;
use super::{logical, reconcile, trigger, SyncError, SyncRegistry};
use crate::catalog::Catalog;
use crate::types::Space;

/// `vectord sync` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SyncCommand {
    /// Snapshot (if needed) and follow the table, until Ctrl-C (or caught up with
    /// `--until-caught-up`).
    Run {
        /// The job.
        #[command(flatten)]
        job: JobArgs,
        /// Exit once the collection has caught up with the table.
        #[arg(long)]
        until_caught_up: bool,
    },
    /// Trigger mode: create the change table, row and TRUNCATE triggers (`--uninstall` removes them).
    Install {
        /// The job.
        #[command(flatten)]
        job: JobArgs,
        /// Remove the triggers, function and change table instead.
        #[arg(long)]
        uninstall: bool,
    },
    /// Compare the collection with the table; `--repair` fixes drift.
    Reconcile {
        /// The job.
        #[command(flatten)]
        job: JobArgs,
        /// Compare every row's vector, document and metadata, not only the ids.
        #[arg(long)]
        rows: bool,
        /// Repair what differs (upsert missing/different rows, delete extra records).
        #[arg(long)]
        repair: bool,
    },
    /// Recreate the collection from the table (drops it and the slot, snapshots, catches up).
    Rebuild {
        /// The job.
        #[command(flatten)]
        job: JobArgs,
    },
    /// Print the jobs' status: from a running server (`--server`), else from the data folder.
    Status {
        /// The job(s).
        #[command(flatten)]
        job: JobArgs,
        /// Base URL of a running server, e.g. http://127.0.0.1:8000.
        #[arg(long)]
        server: Option<String>,
    },
    /// Drop the job's replication slot (for a machine that goes away: a slot nobody reads
    /// keeps WAL on the source forever, unless `max_slot_wal_keep_size` caps it).
    DropSlot {
        /// The job.
        #[command(flatten)]
        job: JobArgs,
    },
}

/// Which job: from a file, or from flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JobArgs {
    /// Data folder [default: ./vectord_data].
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Sync config file (TOML or JSON with `[[job]]` entries).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Job name in the config file (needed when it has several).
    #[arg(long)]
    pub job: Option<String>,
    /// Postgres URL (instead of a config file).
    #[arg(long)]
    pub url: Option<String>,
    /// Source table, schema.table.
    #[arg(long)]
    pub table: Option<String>,
    /// Target collection.
    #[arg(long)]
    pub collection: Option<String>,
    /// Id column [default: id].
    #[arg(long)]
    pub id_column: Option<String>,
    /// Embedding column [default: embedding].
    #[arg(long)]
    pub embedding_column: Option<String>,
    /// Document column.
    #[arg(long)]
    pub document_column: Option<String>,
    /// Metadata columns, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub metadata_columns: Vec<String>,
    /// Distance space of a created collection: cosine, l2, ip [default: cosine].
    #[arg(long)]
    pub space: Option<String>,
    /// Follow mode: logical, trigger or none [default: logical].
    #[arg(long)]
    pub mode: Option<String>,
    /// Slot name [default: vectord_<job>].
    #[arg(long)]
    pub slot: Option<String>,
    /// Rows per batch [default: 500].
    #[arg(long)]
    pub batch_rows: Option<usize>,
    /// Reject nested JSON objects instead of flattening them to `a.b` keys.
    #[arg(long)]
    pub reject_nested: bool,
}

impl JobArgs {
    /// The job these flags name.
    pub fn resolve(&self) -> Result<JobConfig, SyncError> {
        if let Some(path) = &self.config {
            return SyncFile::load(path)?.pick(self.job.as_deref()).cloned();
        }
        let need = |v: &Option<String>, flag: &str| {
            v.clone().ok_or_else(|| {
                SyncError::Config(format!(
                    "give --config FILE, or --{flag} (and the other job flags)"
                ))
            })
        };
        let space = match &self.space {
            None => Space::Cosine,
            Some(s) => {
                Space::parse(s).ok_or_else(|| SyncError::Config(format!("unknown space {s:?}")))?
            }
        };
        let mode = match self.mode.as_deref() {
            None | Some("logical") => FollowMode::Logical,
            Some("trigger") => FollowMode::Trigger,
            Some("none") => FollowMode::None,
            Some(m) => return Err(SyncError::Config(format!("unknown mode {m:?}"))),
        };
        let collection = need(&self.collection, "collection")?;
        let job = JobConfig {
            name: self
                .job
                .clone()
                .unwrap_or_else(|| collection.replace('-', "_")),
            url: need(&self.url, "url")?,
            table: need(&self.table, "table")?,
            id_column: self.id_column.clone().unwrap_or_else(|| "id".into()),
            embedding_column: self
                .embedding_column
                .clone()
                .unwrap_or_else(|| "embedding".into()),
            document_column: self.document_column.clone(),
            metadata_columns: self.metadata_columns.clone(),
            collection,
            tenant: crate::catalog::DEFAULT_TENANT.into(),
            database: crate::catalog::DEFAULT_DATABASE.into(),
            space,
            mode,
            slot: self.slot.clone(),
            publication: None,
            nested: if self.reject_nested {
                NestedRule::Reject
            } else {
                NestedRule::Flatten
            },
            batch_rows: self.batch_rows.unwrap_or(500),
            poll_ms: 1000,
            ca_file: None,
            allow_http_writes: false,
        };
        job.validate()?;
        Ok(job)
    }

    fn data_path(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_PATH))
    }
}

fn open_catalog(args: &JobArgs) -> Result<Arc<Catalog>, SyncError> {
    let path = args.data_path();
    Catalog::open(&path).map(Arc::new).map_err(|e| {
        SyncError::Config(format!(
            "cannot open data folder {} ({e}); if a server is running on it, stop it first \
             (or use `vectord sync status --server URL` to look)",
            path.display()
        ))
    })
}

/// Resolves on Ctrl-C or SIGTERM by flipping the watch.
fn shutdown_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = tx.send(true);
    });
    rx
}

/// Runs one `vectord sync` command to completion; what it prints goes to stdout.
pub async fn execute(cmd: SyncCommand) -> Result<(), SyncError> {
    match cmd {
        SyncCommand::Run {
            job,
            until_caught_up,
        } => {
            let cfg = job.resolve()?;
            let catalog = open_catalog(&job)?;
            let registry = SyncRegistry::default();
            let status = registry.register(&cfg);
            let until = if until_caught_up {
                Until::CaughtUp
            } else {
                Until::Shutdown
            };
            let res = run(
                Arc::clone(&catalog),
                cfg,
                Arc::clone(&status),
                shutdown_on_signal(),
                until,
            )
            .await;
            let flush = tokio::task::spawn_blocking(move || catalog.flush_all()).await;
            println!(
                "{}",
                serde_json::to_string_pretty(&*status.lock()).unwrap_or_default()
            );
            res?;
            if let Ok(failed) = flush {
                if failed > 0 {
                    return Err(SyncError::Internal(format!(
                        "{failed} collections failed to flush"
                    )));
                }
            }
            Ok(())
        }
        SyncCommand::Install { job, uninstall } => {
            let cfg = job.resolve()?;
            let mut client = connect(&cfg).await?;
            if uninstall {
                trigger::uninstall(&client, &cfg).await?;
                println!("removed the change table and triggers of job {}", cfg.name);
            } else {
                column_kinds(&client, &cfg).await?;
                trigger::install(&mut client, &cfg).await?;
                println!(
                    "installed {} and triggers on {} (job {})",
                    trigger::change_table(&cfg),
                    cfg.table,
                    cfg.name
                );
            }
            Ok(())
        }
        SyncCommand::Reconcile { job, rows, repair } => {
            let cfg = job.resolve()?;
            let catalog = open_catalog(&job)?;
            let client = connect(&cfg).await?;
            let kinds = column_kinds(&client, &cfg).await?;
            let coll = {
                let (c, j) = (Arc::clone(&catalog), cfg.clone());
                tokio::task::spawn_blocking(move || open_collection(&c, &j))
                    .await
                    .map_err(|e| SyncError::Internal(e.to_string()))??
            };
            let applier = Applier::new(&cfg.name, coll, Mapper::new(&cfg, kinds));
            let (_, report) = reconcile::reconcile(&client, &cfg, applier, rows, repair).await?;
            let _ = tokio::task::spawn_blocking(move || catalog.flush_all()).await;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            Ok(())
        }
        SyncCommand::Rebuild { job } => {
            let cfg = job.resolve()?;
            let catalog = open_catalog(&job)?;
            rebuild(&catalog, &cfg).await?;
            let registry = SyncRegistry::default();
            let status = registry.register(&cfg);
            let res = run(
                Arc::clone(&catalog),
                cfg,
                Arc::clone(&status),
                shutdown_on_signal(),
                Until::CaughtUp,
            )
            .await;
            let _ = tokio::task::spawn_blocking(move || catalog.flush_all()).await;
            println!(
                "{}",
                serde_json::to_string_pretty(&*status.lock()).unwrap_or_default()
            );
            res
        }
        SyncCommand::Status { job, server } => match server {
            Some(url) => {
                let body = http_get(&url, "/sync/status").await?;
                println!("{body}");
                Ok(())
            }
            None => {
                let cfg = job.resolve()?;
                let catalog = open_catalog(&job)?;
                let entry =
                    catalog.collection_by_name(&cfg.tenant, &cfg.database, &cfg.collection)?;
                let coll = entry.engine()?;
                let pos = coll.source_position();
                let out = serde_json::json!({
                    "job": cfg.name,
                    "collection": cfg.collection,
                    "records": coll.count(),
                    "checkpoint": pos.map(|p| p.0),
                });
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
                Ok(())
            }
        },
        SyncCommand::DropSlot { job } => {
            let cfg = job.resolve()?;
            let client = connect(&cfg).await?;
            let dropped = logical::drop_slot(&client, &cfg.slot_name()).await?;
            println!(
                "{}",
                if dropped {
                    format!("dropped slot {}", cfg.slot_name())
                } else {
                    format!("no slot {}", cfg.slot_name())
                }
            );
            Ok(())
        }
    }
}

/// Deletes the job's collection (even one that fails to open) and, in logical mode, its slot,
/// so the next run starts with a fresh snapshot.
pub async fn rebuild(catalog: &Arc<Catalog>, cfg: &JobConfig) -> Result<(), SyncError> {
    let (c, j) = (Arc::clone(catalog), cfg.clone());
    tokio::task::spawn_blocking(move || {
        match c.delete_collection(&j.tenant, &j.database, &j.collection) {
            Ok(_) | Err(crate::catalog::CatalogError::CollectionNameNotFound(_)) => Ok(()),
            Err(e) => Err(SyncError::from(e)),
        }
    })
    .await
    .map_err(|e| SyncError::Internal(e.to_string()))??;
    if cfg.mode == FollowMode::Logical {
        let client = connect(cfg).await?;
        logical::drop_slot(&client, &cfg.slot_name()).await?;
    }
    tracing::info!(job = %cfg.name, collection = %cfg.collection, "collection dropped for rebuild");
    Ok(())
}

/// A minimal HTTP/1.1 GET (the CLI has no HTTP client otherwise).
async fn http_get(base: &str, path: &str) -> Result<String, SyncError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| SyncError::Config("--server must be an http:// URL".into()))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| SyncError::Config(format!("cannot reach {base}: {e}")))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    let io = |e: std::io::Error| SyncError::Config(format!("{base}: {e}"));
    stream.write_all(req.as_bytes()).await.map_err(io)?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.map_err(io)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") {
        return Err(SyncError::Config(format!(
            "{base}{path}: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    Ok(body.to_string())
}
