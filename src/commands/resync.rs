//! `rowcast resync SYNC`: send every current row of a sync again, as `added`, on the
//! next apply, without sending removals: the snapshot is emptied, the sync stays known.

use std::path::PathBuf;

use anyhow::Context;

use super::confirm::confirm;
use crate::cli::Cli;
use crate::exit::Outcome;
use crate::manifest::Operation;
use crate::plan::diff::select_syncs;
use crate::state::maintenance;
use crate::workspace::Workspace;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sync to send again in full.
    #[arg(value_name = "SYNC")]
    pub sync: String,

    /// Do not ask for confirmation (for scripts).
    #[arg(long)]
    pub yes: bool,

    /// Use this state file instead of the project's.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let (workspace, _lock) =
        Workspace::open_locked(&cli.project, args.state.as_deref(), false, "resync")?;
    let source = select_syncs(&workspace.project, std::slice::from_ref(&args.sync))?[0];
    if !source.manifest.triggers.contains(&Operation::Added) {
        anyhow::bail!(
            "sync `{}` ({}) is not triggered by `added` rows, so a resync would send nothing \
             and only record every row silently; add `added` to its `triggers` first",
            args.sync,
            source.path.display()
        );
    }
    let conn = &workspace.db.conn;
    let tracked = maintenance::tracked(conn, &args.sync)?;
    let question = format!(
        "Resync sync `{}`? rowcast forgets the {} rows the function acknowledged and the {} \
         pending rows; the next apply sends every row the model has as added, and no removals.",
        args.sync, tracked.snapshot, tracked.pending
    );
    confirm(&question, args.yes, "resync", &args.sync)?;
    maintenance::resync(conn, &args.sync)
        .with_context(|| format!("cannot resync sync `{}`", args.sync))?;
    // A state kept in Cloud Storage is changed only once it is written back.
    workspace.write_back().context("cannot write the state back")?;
    println!(
        "resync `{}`: the next apply sends every row of the model as added ({} were \
         acknowledged before)",
        args.sync, tracked.snapshot
    );
    Ok(Outcome::Success)
}
