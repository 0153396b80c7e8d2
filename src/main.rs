//! The `vectord` command line: parse the flags, set up logging, run the subcommand
//! (`src/cli/`), and turn its outcome into the exit status.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing();
    match cli.command.execute() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            tracing::error!(error = format!("{e:#}"), "vectord failed");
            eprintln!("vectord: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs as JSON lines when stdout is not a terminal (containers, CI), as text otherwise;
/// `RUST_LOG` overrides the default `info` level. Audit events (target `audit`) stay on at
/// `info` whatever the level, unless `RUST_LOG` names the `audit` target itself: without
/// `--audit-log` the log is the audit trail, and a quieter log level must not end it.
fn init_tracing() {
    let env = std::env::var(EnvFilter::DEFAULT_ENV).unwrap_or_default();
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if !env.contains("audit") {
        if let Ok(directive) = "audit=info".parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::io::stdout().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}
