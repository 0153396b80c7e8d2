//! Re-running one test of this very test binary in a child process, for tests that must kill a
//! process or let a failpoint abort it: the parent spawns the child test and watches it. Shared by
//! the `it` and `solo` binaries.

use std::process::Command;

/// The libtest name of `test` in the module whose `module_path!()` is `module`: the module path
/// without the crate's name, so the name follows the module when it moves.
fn test_name(module: &str, test: &str) -> String {
    match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{test}"),
        None => test.to_string(),
    }
}

/// A command that runs only `test`, an `#[ignore]`d test of the module whose `module_path!()` is
/// `module`, in a new process of this test binary, its output not captured.
pub fn child_test(module: &str, test: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary's own path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", &test_name(module, test)]).args([
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd
}
