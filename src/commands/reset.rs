//! `rowcast reset SYNC`: forget what rowcast tracks for a sync (its snapshot, pending
//! rows and version), so its next run is an initial sync under its `initial_sync`.

use std::path::PathBuf;

use anyhow::Context;

use super::confirm::confirm;
use crate::cli::Cli;
use crate::exit::Outcome;
use crate::manifest::sync::InitialSync;
use crate::plan::diff::select_syncs;
use crate::state::maintenance;
use crate::workspace::Workspace;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sync to reset.
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
        Workspace::open_locked(&cli.project, args.state.as_deref(), false, "reset")?;
    let source = select_syncs(&workspace.project, std::slice::from_ref(&args.sync))?[0];
    let conn = &workspace.db.conn;
    let tracked = maintenance::tracked(conn, &args.sync)?;
    let next = match source.manifest.initial_sync {
        InitialSync::Backfill => "every row the model has is sent as added",
        InitialSync::FutureChangesOnly => "every row the model has is recorded without invoking",
    };
    let question = format!(
        "Reset sync `{}`? rowcast forgets the {} rows the function acknowledged and the {} \
         pending rows; the next apply is an initial sync (`initial_sync: {}`: {next}). \
         The run history stays.",
        args.sync,
        tracked.snapshot,
        tracked.pending,
        initial_sync_name(source.manifest.initial_sync),
    );
    confirm(&question, args.yes, "reset", &args.sync)?;
    maintenance::reset(conn, &args.sync)
        .with_context(|| format!("cannot reset sync `{}`", args.sync))?;
    // A state kept in Cloud Storage is changed only once it is written back.
    workspace.write_back().context("cannot write the state back")?;
    println!(
        "reset `{}`: forgot {} acknowledged and {} pending rows; the next apply is an initial sync",
        args.sync, tracked.snapshot, tracked.pending
    );
    Ok(Outcome::Success)
}

fn initial_sync_name(initial: InitialSync) -> &'static str {
    match initial {
        InitialSync::Backfill => "backfill",
        InitialSync::FutureChangesOnly => "future_changes_only",
    }
}
