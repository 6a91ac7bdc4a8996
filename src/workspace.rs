//! What every command that touches data starts from: the checked project, its state
//! database, and its warehouse attached to the same DuckDB connection.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::manifest::project::State;
use crate::manifest::{Project, Warehouse};
use crate::model::DuckDbSource;
use crate::state::lock::StateLock;
use crate::state::StateDb;

/// The state of runs against a local function (`--destination-url`), relative to the
/// project folder.
pub const LOCAL_STATE: &str = ".rowcast/local/state.duckdb";

/// A loaded project with its state open and its warehouse attached.
pub struct Workspace {
    pub project: Project,
    pub db: StateDb,
    pub source: DuckDbSource,
}

impl Workspace {
    /// Loads and checks the project at `root`, opens its state (or `state_override`), and
    /// attaches its warehouse.
    pub fn open(root: &Path, state_override: Option<&Path>) -> anyhow::Result<Workspace> {
        let project = Project::load(root)?;
        let state_path = match state_override {
            Some(path) => path.to_path_buf(),
            None => state_path(&project)?,
        };
        Workspace::attach(project, &state_path)
    }

    /// Like [`Workspace::open`], holding the state's lock first, so this is the only
    /// writer. With `local_destination`, the default state is kept apart from the real
    /// one, since a local function's acknowledgements say nothing about the real one's.
    pub fn open_locked(
        root: &Path,
        state_override: Option<&Path>,
        local_destination: bool,
        command: &str,
    ) -> anyhow::Result<(Workspace, StateLock)> {
        let project = Project::load(root)?;
        let state_path = match state_override {
            Some(path) => path.to_path_buf(),
            None if local_destination => project.path(LOCAL_STATE),
            None => state_path(&project)?,
        };
        let lock = StateLock::acquire(&state_path, command)?;
        Ok((Workspace::attach(project, &state_path)?, lock))
    }

    fn attach(project: Project, state_path: &Path) -> anyhow::Result<Workspace> {
        let db = StateDb::open(state_path)?;
        let Warehouse::Duckdb { path } = &project.file.warehouse;
        let warehouse = path.as_deref().map(|p| project.path(p));
        let source = DuckDbSource::attach(&db.conn, warehouse.as_deref())
            .context("cannot open the warehouse named in rowcast.yaml")?;
        Ok(Workspace { project, db, source })
    }
}

/// The local state file of a project.
fn state_path(project: &Project) -> anyhow::Result<PathBuf> {
    match &project.file.state {
        State::Local { path } => Ok(project.path(path)),
        State::Gcs { .. } => {
            // TODO: the Cloud Storage backend is not built yet; until it is, such a project
            // can still run with `--state FILE`.
            anyhow::bail!(
                "the `gcs` state backend is not available in this build of rowcast; pass \
                 `--state FILE` to use a local state file"
            )
        }
    }
}
