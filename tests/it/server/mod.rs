//! The real `vectord` binary as a child process: `kill -9` under HTTP load, full disks and
//! damaged files, operations (Dockerfile, snapshots over HTTP, shutdown), `/metrics`, and the
//! hand-run soak.

mod crash;
mod faults;
mod metrics;
mod ops;
mod soak;
