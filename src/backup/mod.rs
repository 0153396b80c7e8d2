//! Backups of the data folder: online snapshots, their copies in an S3-compatible bucket, and
//! restoring them into a stopped server's folder.
//!
//! - [`manifest`]: what a snapshot is — `SNAPSHOT.json` (every file with its SHA-256), folder
//!   names, path safety and per-scope retention; shared by every other file here.
//! - [`local`]: snapshots in a local folder — take (online, while writes go on), verify, list,
//!   prune.
//! - [`s3`]: copies in a bucket — upload, list, prune, download.
//! - [`restore`]: a verified snapshot back into a stopped server's folder (whole or one
//!   collection), crash-safe through a journal.
//! - [`service`]: the running server's snapshot service (one at a time, upload after each,
//!   metrics, the schedule); the admin routes only call it.
//! - [`error`]: [`error::SnapshotError`], the error of all of the above but the bucket's.
//!
//! Imports run one way: `manifest` and `error` know nothing of the others; `local`, `s3` and
//! `restore` build on them; only `service` ties local snapshots to the bucket.
//!
//! **Architecture Invariant:** a folder without a valid `SNAPSHOT.json`, or whose files disagree
//! with it, is never restored; a remote snapshot is complete only once its manifest object exists.

pub mod error;
pub mod local;
pub mod manifest;
pub mod restore;
pub mod s3;
pub mod service;
