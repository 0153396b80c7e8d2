//! Integration tests that need the whole test process to themselves, in a binary of their own
//! beside `it`, running one at a time: every test here starts with `let _solo = solo();`.
//!
//! - `failpoints`: the `fail` crate's failpoints are process-wide. A failpoint armed by one test
//!   (`wal::sync` failing once, a build paused at `graph::insert`) fires in whatever else runs in
//!   the process, so no other test may run beside these. `FailScenario` only serialises tests
//!   that use it.
//! - `sync_restart`: restarts the Postgres the sync tests share; done beside them, it would break
//!   their connections. (Cargo runs test binaries one after another, so `it`'s sync tests are
//!   never running at the same time either.)
//!
//! Helpers come from `it`'s support modules, by path.

use std::sync::{Mutex, MutexGuard, PoisonError};

#[cfg(feature = "failpoints")]
mod failpoints;
mod sync_restart;

/// Re-running one test in a child process (`failpoints`' crash tests), from `it`'s support.
#[cfg(feature = "failpoints")]
#[path = "../it/support/child.rs"]
mod child;
/// The `sync` helpers of `it`'s support; this binary uses only some of them.
#[allow(dead_code)]
#[path = "../it/support/sync.rs"]
mod sync_support;

static SOLO: Mutex<()> = Mutex::new(());

/// Holds this binary to one running test for as long as the guard lives. A test that failed while
/// holding it leaves it poisoned; the next test goes ahead (its own assertions still stand).
fn solo() -> MutexGuard<'static, ()> {
    SOLO.lock().unwrap_or_else(PoisonError::into_inner)
}
