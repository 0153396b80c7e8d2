//! Online snapshots and restores, and their copies on an S3-compatible server.

mod s3;
mod snapshot;
