//! `vectord snapshot create|list|verify` and `vectord restore`: the backup commands that work on
//! a data folder no server is using (a running server takes snapshots through its admin route).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use vectord::backup::error::SnapshotError;
use vectord::backup::local;
use vectord::backup::manifest::read_info;
use vectord::backup::restore::{self, Transfer};
use vectord::backup::s3::S3Target;
use vectord::backup::service::{SnapshotSummary, Snapshots};
use vectord::catalog::{Catalog, CollectionSelector};
use vectord::config::{S3Args, S3Settings};

use super::common::{runtime, CollectionArgs};

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
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

fn s3_target(url: String, args: S3Args) -> anyhow::Result<S3Target> {
    Ok(S3Target::new(&S3Settings::from_args(url, args))?)
}

/// `vectord restore`: from a local snapshot folder, or downloaded from a bucket into a folder
/// inside the target (same volume, even when the target is a mount point), verified,
/// restored, then the download is removed.
pub fn restore_command(
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
            let done = restore::restore_with(dir, path, force, transfer)?;
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
        let done = restore::restore_collection_with(dir, path, sel.as_ref(), force, transfer)?;
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
pub fn finish_restore_command(path: &std::path::Path) -> anyhow::Result<()> {
    match restore::finish(path)
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

/// `vectord snapshot create|list|verify`.
pub fn snapshot_command(cmd: SnapshotCommand) -> anyhow::Result<()> {
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
