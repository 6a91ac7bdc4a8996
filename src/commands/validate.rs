//! `rowcast validate [PATH...]`: every problem of every manifest in one pass, each as
//! `path:line:column: message` with its field and a hint; exit 1 when there is one.

use std::path::PathBuf;

use crate::cli::Cli;
use crate::exit::Outcome;
use crate::manifest::{self, Target};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifest files, folders of sync manifests, or project folders. Defaults to the
    /// project's `rowcast.yaml` and its syncs folder.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let checked = if args.paths.is_empty() {
        manifest::check(Target::Project(&cli.project))
    } else {
        manifest::check(Target::Paths(&args.paths))
    };

    if !checked.problems.is_empty() {
        println!("{}", manifest::render_problems(&checked.problems));
        return Ok(Outcome::Error);
    }
    let syncs = checked.syncs.len();
    let projects = usize::from(checked.project.is_some());
    println!(
        "{} file{} valid: {projects} project file, {syncs} sync{}",
        checked.files,
        if checked.files == 1 { "" } else { "s" },
        if syncs == 1 { "" } else { "s" },
    );
    Ok(Outcome::Success)
}
