//! The command line: flags parsed by clap, turned into a command call, and the outcome
//! mapped to an exit code. Errors reach the user as sentences, never as debug dumps.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands;
use crate::exit::Outcome;

/// Keep serverless functions in step with SQL queries.
#[derive(Debug, Parser)]
#[command(name = "rowcast", version, about, max_term_width = 100)]
pub struct Cli {
    /// The project folder, holding `rowcast.yaml`.
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    pub project: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests against the schema and for mistakes a schema cannot see.
    Validate(commands::validate::Args),
    /// Write the JSON Schemas of the manifests and of the function contract.
    Schema(commands::schema::Args),
    /// Show which rows would be sent to each sync's function, without sending them.
    Plan(commands::plan::Args),
    /// Send the planned rows and commit what the functions acknowledged.
    Apply(commands::apply::Args),
    /// Prove each sync's credentials and reach its function, without sending rows.
    Check(commands::check::Args),
    /// Show or break the lock that keeps a state to one writer.
    Lock(commands::lock::Args),
}

/// Runs the command line and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match &cli.command {
        Command::Validate(args) => commands::validate::run(&cli, args),
        Command::Schema(args) => commands::schema::run(&cli, args),
        Command::Plan(args) => commands::plan::run(&cli, args),
        Command::Apply(args) => commands::apply::run(&cli, args),
        Command::Check(args) => commands::check::run(&cli, args),
        Command::Lock(args) => commands::lock::run(&cli, args),
    };
    match result {
        Ok(outcome) => outcome.into(),
        Err(error) => {
            eprintln!("error: {}", render_error(&error));
            Outcome::Error.into()
        }
    }
}

/// Logs go to stderr: rowcast's warnings and errors only, unless `ROWCAST_LOG` says
/// otherwise (as `RUST_LOG` would, such as `info` or `rowcast=debug,gcp_auth=debug`). The
/// libraries' own retries stay out of sight; their final errors reach the user anyway.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG_VARIABLE)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("rowcast=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The environment variable that sets which log events are shown.
pub const LOG_VARIABLE: &str = "ROWCAST_LOG";

/// The error and its causes, one sentence after another.
fn render_error(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    text
}
