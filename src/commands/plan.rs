//! `rowcast plan`: what `apply` would send, per sync, without changing the snapshot.

use std::path::PathBuf;

use crate::cli::Cli;
use crate::exit::Outcome;
use crate::plan::render::{render, Format};
use crate::plan::{file, plan_project};
use crate::workspace::{Workspace, LOCAL_STATE};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Plan only this sync; repeat for several. Defaults to every sync.
    #[arg(long = "sync", value_name = "NAME")]
    pub syncs: Vec<String>,

    /// How to print the plan: `text` for terminals, `markdown` for a pull-request
    /// comment, `json` for machines.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    /// How many example rows to show per operation and sync. Rows may carry personal
    /// data; use 0 where the plan is posted publicly.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub show_rows: usize,

    /// Save the plan to FILE, for `rowcast apply FILE` to send exactly what was reviewed.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,

    /// Use this state file instead of the project's.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Plan against the state of runs to a local function (`apply --destination-url`),
    /// kept apart from the real one. The URL itself is not called by `plan`.
    #[arg(long, value_name = "URL")]
    pub destination_url: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let local = args.destination_url.as_ref().map(|_| cli.project.join(LOCAL_STATE));
    let workspace = Workspace::open(&cli.project, args.state.as_deref().or(local.as_deref()))?;
    let plan = plan_project(
        &workspace.project,
        &workspace.db,
        &workspace.source,
        &args.syncs,
        args.show_rows,
    )?;
    if let Some(out) = &args.out {
        file::write(&workspace.db.conn, &plan, out)?;
        eprintln!(
            "saved the plan to {}; apply it with `rowcast apply {}`",
            out.display(),
            out.display()
        );
    }
    print!("{}", render(&plan, args.format));

    Ok(if plan.has_failures() {
        Outcome::Error
    } else if args.detailed_exitcode && plan.has_changes() {
        Outcome::ChangesPending
    } else {
        Outcome::Success
    })
}
