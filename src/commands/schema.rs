//! `rowcast schema`: write the JSON Schemas, or check that the committed ones are current.

use std::path::PathBuf;

use anyhow::Context;

use crate::cli::Cli;
use crate::exit::Outcome;
use crate::manifest::{reference, schema};

/// Where the generated manifest reference is written, relative to the project folder.
pub const REFERENCE: &str = "docs/manifest-reference.md";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder to write the schemas into. Defaults to `schemas` in the project folder.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Write nothing; exit 1 when a committed schema differs from the generated one.
    #[arg(long)]
    pub check: bool,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let dir = args.out.clone().unwrap_or_else(|| cli.project.join("schemas"));
    if args.check {
        let mut stale = schema::stale(&dir);
        let reference = cli.project.join(REFERENCE);
        if std::fs::read_to_string(&reference).ok() != Some(reference::markdown()) {
            stale.push(reference);
        }
        for path in &stale {
            eprintln!("{} is stale; run `rowcast schema` and commit the result", path.display());
        }
        return Ok(if stale.is_empty() { Outcome::Success } else { Outcome::Error });
    }
    let mut written = schema::write_all(&dir)
        .with_context(|| format!("cannot write the schemas into `{}`", dir.display()))?;
    let reference = cli.project.join(REFERENCE);
    if let Some(folder) = reference.parent() {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create the folder `{}`", folder.display()))?;
    }
    std::fs::write(&reference, reference::markdown())
        .with_context(|| format!("cannot write `{}`", reference.display()))?;
    written.push(reference);
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(Outcome::Success)
}
