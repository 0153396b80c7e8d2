//! vectord's integration tests: one test binary with a module per topic, so the crate is linked
//! once for all of them instead of once per file (`autotests = false` in Cargo.toml). A test's
//! name is its topic path, e.g. `engine::model::engine_matches_model`; run a topic with
//! `cargo test --features failpoints --test it -- engine::`.
//!
//! Tests that must not run beside any other test (failpoints, which are process-wide; restarting
//! the shared Postgres) are in the `solo` binary next to this one, which runs them one at a time.
//! A test that needs a process of its own re-runs itself in a child process instead
//! (`support::child`).
//!
//! Topics:
//! - `api`: the HTTP API of a server running in this process, over a real loopback listener;
//! - `engine`: the storage engine through its Rust API (semantics, recall, concurrency, hostile
//!   input, `kill -9` of a child process, 1,000+ collections);
//! - `index`: the graph builder and searcher;
//! - `server`: the real `vectord` binary (crashes, full disks, damaged files, operations,
//!   `/metrics`, the soak run);
//! - `tools`: `vectord bench` and the Chroma import, which talk to servers over HTTP;
//! - `backup`: snapshots, restores and S3 copies;
//! - `sync`: pgvector sync against a real Postgres (skipped without `VECTORD_TEST_PG_URL`);
//! - `fuzz_regressions`: the fuzz corpus replayed on stable (`--features fuzzing`).
//!
//! `support` holds the helpers the topics share.

mod api;
mod backup;
mod engine;
#[cfg(feature = "fuzzing")]
mod fuzz_regressions;
mod index;
mod server;
mod support;
mod sync;
mod tools;
