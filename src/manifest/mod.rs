//! Manifests: the project file `rowcast.yaml` and one `syncs/*.yaml` per sync. This stage
//! reads them, checks them against the JSON Schemas generated from these types and
//! against what a schema cannot see, and hands sound syncs to the model stage.

pub mod check;
pub mod duration;
pub mod env;
pub mod locate;
pub mod problem;
pub mod project;
pub mod reference;
pub mod schema;
mod schema_walk;
pub mod sync;
pub mod urls;

use std::path::{Path, PathBuf};

pub use check::{check, Checked, SyncSource, Target};
pub use problem::Problem;
pub use project::{ProjectFile, Warehouse, PROJECT_FILE};
pub use sync::{Operation, SyncManifest};

/// A project whose manifests all passed every check.
#[derive(Debug, Clone)]
pub struct Project {
    /// The folder holding `rowcast.yaml`; relative paths in it start here.
    pub root: PathBuf,
    pub file: ProjectFile,
    pub syncs: Vec<SyncSource>,
}

/// The manifests of a project have problems; nothing may run.
#[derive(Debug, thiserror::Error)]
#[error("{}", render_problems(.problems))]
pub struct InvalidManifests {
    pub problems: Vec<Problem>,
}

impl Project {
    /// Loads and checks a project. Any problem in any manifest refuses the whole project,
    /// so a run never starts on manifests that `rowcast validate` would reject.
    pub fn load(root: &Path) -> Result<Project, InvalidManifests> {
        let checked = check(Target::Project(root));
        if !checked.problems.is_empty() {
            return Err(InvalidManifests { problems: checked.problems });
        }
        let (root, file) = checked.project.expect("a sound project has its project file");
        Ok(Project { root, file, syncs: checked.syncs })
    }

    /// A path from the project file, made absolute against the project folder.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }
}

/// Problems, one block each, then a count.
pub fn render_problems(problems: &[Problem]) -> String {
    let mut text = String::new();
    for problem in problems {
        text.push_str(&problem.to_string());
        text.push('\n');
    }
    let count = problems.len();
    text.push_str(&format!("{count} problem{} found", if count == 1 { "" } else { "s" }));
    text
}
