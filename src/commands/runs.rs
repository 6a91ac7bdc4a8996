//! `rowcast runs`: the run history. Without a subcommand it lists the latest runs;
//! `runs show RUN_ID` shows one run, with its invocations, its rejected rows, or all of
//! it as a self-contained HTML report.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::cli::Cli;
use crate::exit::Outcome;
use crate::runs::render::{self, Format, RunDetail};
use crate::runs::{html, query};
use crate::workspace::Workspace;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<RunsCommand>,

    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Show one run: per sync its status and counts by operation and outcome.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only the runs of this sync.
    #[arg(long, value_name = "NAME")]
    pub sync: Option<String>,

    /// How many lines (one per sync of a run) to show, newest first.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub limit: usize,

    /// `text` for terminals, `json` for machines, `csv` for spreadsheets.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    /// Read this state file instead of the project's.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The run id, or enough of its start to name one run.
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,

    /// Also list every invocation attempt: status, latency, size, outcome, error.
    #[arg(long)]
    pub invocations: bool,

    /// Also list the rows the run left rejected or failed, with their reasons.
    #[arg(long)]
    pub rejected: bool,

    /// `text` for terminals, `json` for machines, `csv` for spreadsheets (one table: the
    /// invocations or the rejected rows when asked, else the counts).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    /// Write a self-contained HTML report of the run to FILE (counts, a latency
    /// histogram, invocations and errors over time, rejected rows).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Read this state file instead of the project's.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    match &args.command {
        Some(RunsCommand::Show(show_args)) => show(cli, show_args),
        None => list(cli, &args.list),
    }
}

fn list(cli: &Cli, args: &ListArgs) -> anyhow::Result<Outcome> {
    let workspace = Workspace::open(&cli.project, args.state.as_deref())?;
    crate::runs::prune_bodies(&workspace)?;
    let runs = query::list(&workspace.db.conn, args.sync.as_deref(), args.limit)?;
    print!(
        "{}",
        match args.format {
            Format::Text => render::list_text(&runs),
            Format::Json => render::list_json(&runs),
            Format::Csv => render::list_csv(&runs),
        }
    );
    Ok(Outcome::Success)
}

fn show(cli: &Cli, args: &ShowArgs) -> anyhow::Result<Outcome> {
    if args.format == Format::Csv && args.invocations && args.rejected {
        anyhow::bail!(
            "CSV holds one table: pass `--invocations` or `--rejected`, not both, with \
             `--format csv`"
        );
    }
    let workspace = Workspace::open(&cli.project, args.state.as_deref())?;
    crate::runs::prune_bodies(&workspace)?;
    let conn = &workspace.db.conn;
    let run_id = query::resolve(conn, &args.run_id)?;
    let syncs = query::run(conn, &run_id)?;
    let everything = args.html.is_some();
    let detail = RunDetail {
        invocations: (args.invocations || everything)
            .then(|| query::invocations(conn, &run_id))
            .transpose()?,
        rejected: (args.rejected || everything)
            .then(|| query::rejected(conn, &run_id))
            .transpose()?,
        run_id,
        syncs,
    };
    if let Some(path) = &args.html {
        std::fs::write(path, html::report(&detail))
            .with_context(|| format!("cannot write the report `{}`", path.display()))?;
        eprintln!("wrote the report of run {} to {}", detail.run_id, path.display());
        return Ok(Outcome::Success);
    }
    print!(
        "{}",
        match args.format {
            Format::Text => render::show_text(&detail),
            Format::Json => render::show_json(&detail),
            Format::Csv => render::show_csv(&detail),
        }
    );
    Ok(Outcome::Success)
}
