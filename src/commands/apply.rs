//! `rowcast apply [PLANFILE]`: send the planned changes and commit what the functions
//! acknowledged. Without a plan file it plans afresh first, like `terraform apply`.

use std::path::PathBuf;

use anyhow::Context;

use crate::cli::Cli;
use crate::execute::{apply, ApplyOptions, ApplyReport};
use crate::exit::Outcome;
use crate::plan::{file, plan_project, render};
use crate::workspace::Workspace;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A plan saved by `rowcast plan --out FILE`: apply exactly that plan, or refuse it if
    /// the snapshot moved since it was made.
    #[arg(value_name = "PLANFILE")]
    pub plan: Option<PathBuf>,

    /// Apply only this sync; repeat for several. Defaults to every sync.
    #[arg(long = "sync", value_name = "NAME")]
    pub syncs: Vec<String>,

    /// Send the selected syncs to this URL, with no credential, instead of their
    /// destination: for a function served locally while it is written. The state of such
    /// a run is kept apart (`.rowcast/local/`) unless `--state` says otherwise.
    #[arg(long, value_name = "URL")]
    pub destination_url: Option<String>,

    /// Use this state file instead of the project's.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let (workspace, _lock) = Workspace::open_locked(
        &cli.project,
        args.state.as_deref(),
        args.destination_url.is_some(),
        "apply",
    )?;
    let plan = match &args.plan {
        Some(path) => {
            let header = file::read_header(&workspace.db.conn, path)?;
            file::check_fresh(&header, path, &workspace.db.state_id, |sync| {
                Ok(workspace.db.snapshot_version(sync)?)
            })?;
            file::load(&workspace.db.conn, &header, &args.syncs)?
        }
        None => {
            let plan =
                plan_project(&workspace.project, &workspace.db, &workspace.source, &args.syncs, 0)?;
            if plan.has_failures() {
                print!("{}", render::render(&plan, render::Format::Text));
                anyhow::bail!("nothing was applied, since some syncs could not be planned");
            }
            println!("{}", render::summary_line(&plan));
            plan
        }
    };
    let options = ApplyOptions { destination_url: args.destination_url.clone(), quiet: cli.quiet };
    let report = apply(&workspace, &plan, &options);
    // What was committed reaches a remote state even when the apply failed part way.
    let written = workspace.write_back().context("cannot write the state back");
    let report = report.context("the apply failed")?;
    print!("{}", summary(&report));
    written?;
    Ok(outcome(&report))
}

/// The exit code: errors first, then an interruption, then rows not delivered.
fn outcome(report: &ApplyReport) -> Outcome {
    if report.syncs.iter().any(|s| s.error.is_some()) {
        Outcome::Error
    } else if report.interrupted {
        Outcome::Interrupted
    } else if report.syncs.iter().any(|s| s.pending > 0 || s.threshold.is_some()) {
        Outcome::RowsNotDelivered
    } else {
        Outcome::Success
    }
}

/// One line per sync, then whatever went wrong.
pub fn summary(report: &ApplyReport) -> String {
    let mut out = format!(
        "\n{:<28} {:>9} {:>12} {:>9} {:>8} {:>8} {:>7} {:>9} {:>8}\n",
        "sync",
        "invoked",
        "acknowledged",
        "rejected",
        "failed",
        "pending",
        "silent",
        "duration",
        "inv/s"
    );
    for sync in &report.syncs {
        let t = &sync.tally;
        let seconds = sync.duration.as_secs_f64();
        let rate = if seconds > 0.0 { t.invocations as f64 / seconds } else { 0.0 };
        out.push_str(&format!(
            "{:<28} {:>9} {:>12} {:>9} {:>8} {:>8} {:>7} {:>8.2}s {:>8.1}\n",
            sync.name,
            t.invocations,
            t.acknowledged,
            t.rejected,
            t.failed,
            sync.pending,
            sync.silent,
            seconds,
            rate
        ));
    }
    for sync in &report.syncs {
        if let Some(error) = &sync.error {
            out.push_str(&format!("error: {error}\n"));
        }
        if let Some(threshold) = &sync.threshold {
            out.push_str(&format!("threshold passed in `{}`: {threshold}\n", sync.name));
        }
    }
    if report.interrupted {
        let pending: u64 = report.syncs.iter().map(|s| s.pending).sum();
        out.push_str(&format!(
            "interrupted: what the functions acknowledged is committed; {pending} rows stay pending for the next run\n"
        ));
    }
    out.push_str(&format!("run {}\n", report.run_id));
    out
}
