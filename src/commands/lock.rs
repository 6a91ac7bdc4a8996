//! `rowcast lock status|break`: who holds the state's lock, and removing a lock whose
//! holder is gone.
//!
//! A local state is locked by an OS lock (flock) that the kernel releases when its holder
//! ends, however it ends, so it is never stale: `break` names the live holder and removes
//! nothing, since deleting the file a live process holds would let a second writer in. A
//! Cloud Storage state's lock object outlives a killed holder until its time-to-live
//! passes; `break` deletes it after a confirmation (or `--yes`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use crate::cli::Cli;
use crate::exit::Outcome;
use crate::manifest::{self, Project, Target};
use crate::state::gcs::lock::{break_lock, status, LockRecord};
use crate::state::gcs::GcsConfig;
use crate::state::lock;
use crate::workspace::{location, StateLocation};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Show who holds the state's lock (host, pid, command, since, and for a Cloud
    /// Storage state its expiry), or say that the state is free.
    Status(StateArg),
    /// Remove the lock of a Cloud Storage state whose holder is gone, after asking on a
    /// terminal. A local state's OS lock cannot be stale: it is never removed.
    Break(BreakArgs),
}

/// Which state.
#[derive(Debug, clap::Args)]
pub struct StateArg {
    /// The lock of this local state file instead of the project's state.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct BreakArgs {
    #[command(flatten)]
    pub target: StateArg,
    /// Break without asking, for scripts.
    #[arg(long, short)]
    pub yes: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let (state, yes) = match &args.action {
        Action::Status(target) => (&target.state, None),
        Action::Break(args) => (&args.target.state, Some(args.yes)),
    };
    let project = project_only(&cli.project)?;
    match (location(&project, state.as_deref(), false), yes) {
        (StateLocation::Local(path), None) => local_status(&path),
        (StateLocation::Local(path), Some(_)) => local_break(&path),
        (StateLocation::Gcs(config), None) => gcs_status(&config),
        (StateLocation::Gcs(config), Some(yes)) => gcs_break(&config, yes),
    }
}

/// The project file alone: a lock can be looked at and broken while a sync manifest is
/// broken.
fn project_only(root: &Path) -> anyhow::Result<Project> {
    let checked = manifest::check(Target::Project(root));
    match checked.project {
        Some((root, file)) => Ok(Project { root, file, syncs: Vec::new() }),
        None => anyhow::bail!("{}", manifest::render_problems(&checked.problems)),
    }
}

fn local_status(path: &Path) -> anyhow::Result<Outcome> {
    match lock::status(path)? {
        Some(holder) => println!(
            "The state `{}` is locked by `rowcast {}` on host `{}` (pid {}) since {}.\n\
             It is an OS lock: it ends with that process, however the process ends.",
            path.display(),
            holder.command,
            holder.host,
            holder.pid,
            holder.since
        ),
        None => println!("The state `{}` is free.", path.display()),
    }
    Ok(Outcome::Success)
}

fn local_break(path: &Path) -> anyhow::Result<Outcome> {
    match lock::status(path)? {
        Some(holder) => anyhow::bail!(
            "the lock of the local state `{}` is held by a live process: `rowcast {}` on host \
             `{}` (pid {}) since {}. It is an OS lock that the kernel releases when that \
             process ends, so it cannot be stale, and removing it would let two writers in; \
             wait for the process, or stop it (`kill {}`)",
            path.display(),
            holder.command,
            holder.host,
            holder.pid,
            holder.since,
            holder.pid
        ),
        None => {
            println!("The state `{}` is free; there is no lock to break.", path.display());
            Ok(Outcome::Success)
        }
    }
}

fn gcs_status(config: &GcsConfig) -> anyhow::Result<Outcome> {
    let bucket = config.bucket()?;
    let object = config.lock_object();
    match status(&bucket, &object)? {
        Some((record, _)) => println!("{}", describe(&bucket.address(&object), &record)),
        None => println!("The state `{}` is free.", bucket.address(&config.state_object())),
    }
    Ok(Outcome::Success)
}

fn gcs_break(config: &GcsConfig, yes: bool) -> anyhow::Result<Outcome> {
    let bucket = config.bucket()?;
    let object = config.lock_object();
    let address = bucket.address(&object);
    let Some((record, generation)) = status(&bucket, &object)? else {
        let state = bucket.address(&config.state_object());
        println!("The state `{state}` is free; there is no lock to break.");
        return Ok(Outcome::Success);
    };
    println!("{}", describe(&address, &record));
    if !yes && !confirm(&record)? {
        println!("The lock was left in place.");
        return Ok(Outcome::Error);
    }
    break_lock(&bucket, &object, generation)?;
    println!(
        "Broke the lock `{address}`. If its holder is still running, it finds out at its next \
         renewal and stops writing the state back; its generation checks keep it from \
         overwriting the state of a later run."
    );
    Ok(Outcome::Success)
}

/// Asks on the terminal; without one, refuses with the flag to pass.
fn confirm(record: &LockRecord) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "refusing to break the lock without a confirmation, and there is no terminal to \
             ask on; pass `--yes` to break it"
        );
    }
    let warning = if record.expired() {
        "Its time-to-live has passed, so its holder is presumably gone."
    } else {
        "Its time-to-live has not passed: its holder may still be running."
    };
    print!("{warning} Break it? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

fn describe(address: &str, record: &LockRecord) -> String {
    let state = if record.expired() { "expired" } else { "live" };
    let holder = &record.holder;
    format!(
        "The lock `{address}` is held by `rowcast {}` on host `{}` (pid {}) since {}.\n\
         Time-to-live: {}s, renewed while the holder runs; expires {} ({state}).",
        holder.command, holder.host, holder.pid, holder.since, record.ttl_seconds, record.expires
    )
}
