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

    /// How log lines are written to stderr: `text` for people, `json` (one object per
    /// line) for CI log collectors.
    #[arg(long, global = true, value_enum, default_value = "text", value_name = "FORMAT")]
    pub log_format: LogFormat,

    /// Log more: `-v` for each run and sync, `-vv` for each invocation. `RUST_LOG`
    /// overrides both flags.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors in the log, and no progress bar or progress lines.
    #[arg(short, long, global = true)]
    pub quiet: bool,

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
    /// List the latest runs, or show one with `runs show RUN_ID`.
    Runs(commands::runs::Args),
    /// Show the history of one primary key of a sync.
    Rows(commands::rows::Args),
    /// Forget a sync's tracking; its next run is an initial sync.
    Reset(commands::reset::Args),
    /// Send every current row of a sync as added on the next apply, without removals.
    Resync(commands::resync::Args),
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Runs the command line and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(&cli);
    let result = match &cli.command {
        Command::Validate(args) => commands::validate::run(&cli, args),
        Command::Schema(args) => commands::schema::run(&cli, args),
        Command::Plan(args) => commands::plan::run(&cli, args),
        Command::Apply(args) => commands::apply::run(&cli, args),
        Command::Check(args) => commands::check::run(&cli, args),
        Command::Lock(args) => commands::lock::run(&cli, args),
        Command::Runs(args) => commands::runs::run(&cli, args),
        Command::Rows(args) => commands::rows::run(&cli, args),
        Command::Reset(args) => commands::reset::run(&cli, args),
        Command::Resync(args) => commands::resync::run(&cli, args),
    };
    match result {
        Ok(outcome) => outcome.into(),
        Err(error) => {
            eprintln!("error: {}", render_error(&error));
            Outcome::Error.into()
        }
    }
}

/// Sends `tracing` events to stderr, as text or JSON lines, at the level the flags ask
/// for (warnings by default). Log fields share one naming scheme: `run_id`, `sync`,
/// `batch`, `attempt`, `invocation_id`, `rows`, `status`, `latency_ms`, `reason`.
fn init_logs(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    // Other crates (HTTP, auth) show only errors, since their own retries are noise; the
    // filter in `ROWCAST_LOG` (or `RUST_LOG`), such as `rowcast=debug,gcp_auth=debug`,
    // replaces all of this.
    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG_VARIABLE)
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("error,rowcast={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // This fails only when a subscriber is already set, which leaves logging as it was.
    let _ = match cli.log_format {
        LogFormat::Text => builder.with_ansi(use_color()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Colour only on a terminal, and never when `NO_COLOR` is set.
fn use_color() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// The environment variable that sets which log events are shown.
pub const LOG_VARIABLE: &str = "ROWCAST_LOG";

/// The error and its causes, one sentence after another.
fn render_error(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    if let Some(hint) = crate::state::memory_hint(&text) {
        text.push_str(&format!("\n  hint: {hint}"));
    }
    text
}
