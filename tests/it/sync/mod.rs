//! pgvector sync against a real PostgreSQL (`VECTORD_TEST_PG_URL`; skipped without it, except
//! under CI). Restarting Postgres under a follower is in the `solo` binary: a restart would break
//! the tests here running beside it.

mod bench;
mod crash;
mod logical;
mod ready;
mod trigger;
