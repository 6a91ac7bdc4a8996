//! `rowcast rows SYNC KEY`: the history of one primary key: each time it was sent,
//! acknowledged, rejected (and why), failed, or committed silently, and where it stands
//! now.

use std::path::PathBuf;

use crate::cli::Cli;
use crate::exit::Outcome;
use crate::plan::diff::select_syncs;
use crate::runs::query;
use crate::runs::render::{self, Format};
use crate::workspace::Workspace;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sync.
    #[arg(value_name = "SYNC")]
    pub sync: String,

    /// The primary key, as text (as a function names it in `primary_key_value`).
    #[arg(value_name = "KEY")]
    pub key: String,

    /// `text` for terminals, `json` for machines, `csv` for spreadsheets (the events).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    /// Read this state file instead of the project's.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let workspace = Workspace::open(&cli.project, args.state.as_deref())?;
    crate::runs::prune_bodies(&workspace)?;
    select_syncs(&workspace.project, std::slice::from_ref(&args.sync))?;
    let history = query::key_history(&workspace.db.conn, &args.sync, &args.key)?;
    print!(
        "{}",
        match args.format {
            Format::Text => render::key_text(&history),
            Format::Json => render::key_json(&history),
            Format::Csv => render::key_csv(&history),
        }
    );
    Ok(Outcome::Success)
}
