//! What every command that touches data starts from: the checked project, its state
//! database, and its warehouse attached to the same DuckDB connection.
//!
//! With the `gcs` backend the state database is a working copy fetched from Cloud Storage;
//! a writer also holds the lock object and writes the copy back ([`Workspace::write_back`]
//! at its end, and the committer while it runs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::manifest::project::State;
use crate::manifest::{Project, Warehouse};
use crate::model::DuckDbSource;
use crate::state::gcs::{GcsConfig, GcsState};
use crate::state::lock::StateLock;
use crate::state::write_back::WriteBack;
use crate::state::{StateDb, MEMORY_LIMIT};

/// The state of runs against a local function (`--destination-url`), relative to the
/// project folder.
pub const LOCAL_STATE: &str = ".rowcast/local/state.duckdb";

/// A loaded project with its state open and its warehouse attached.
pub struct Workspace {
    pub project: Project,
    pub db: StateDb,
    pub source: DuckDbSource,
    /// The Cloud Storage state the database is a working copy of. Declared last, so the
    /// database is closed before a read-only copy is deleted.
    remote: Option<Arc<GcsState>>,
}

/// Where a command's state is.
pub enum StateLocation {
    Local(PathBuf),
    Gcs(GcsConfig),
}

impl Workspace {
    /// Loads and checks the project at `root`, opens its state (or `state_override`), and
    /// attaches its warehouse. A Cloud Storage state is fetched into a copy of this
    /// process's own, without the lock: what is done to it is never written back.
    pub fn open(root: &Path, state_override: Option<&Path>) -> anyhow::Result<Workspace> {
        let project = Project::load(root)?;
        match location(&project, state_override, false) {
            StateLocation::Local(path) => Workspace::attach(project, &path, None),
            StateLocation::Gcs(config) => {
                let remote = GcsState::fetch_for_reading(&config, &project.root)?;
                let path = remote.path.clone();
                Workspace::attach(project, &path, Some(Arc::new(remote)))
            }
        }
    }

    /// Like [`Workspace::open`], holding the state's lock first, so this is the only
    /// writer. With `local_destination`, the default state is kept apart from the real
    /// one, since a local function's acknowledgements say nothing about the real one's.
    /// A Cloud Storage state is locked by its lock object, and its working copy by an OS
    /// lock as well.
    pub fn open_locked(
        root: &Path,
        state_override: Option<&Path>,
        local_destination: bool,
        command: &str,
    ) -> anyhow::Result<(Workspace, StateLock)> {
        let project = Project::load(root)?;
        match location(&project, state_override, local_destination) {
            StateLocation::Local(path) => {
                let lock = StateLock::acquire(&path, command)?;
                Ok((Workspace::attach(project, &path, None)?, lock))
            }
            StateLocation::Gcs(config) => {
                let path = config.working_copy(&project.root);
                let lock = StateLock::acquire(&path, command)?;
                let remote = GcsState::fetch_for_writing(&config, &project.root, command)?;
                let workspace = Workspace::attach(project, &path, Some(Arc::new(remote)))?;
                if let Some(remote) = &workspace.remote {
                    remote.report_unfinished_writer(&workspace.db.conn);
                }
                Ok((workspace, lock))
            }
        }
    }

    fn attach(
        project: Project,
        state_path: &Path,
        remote: Option<Arc<GcsState>>,
    ) -> anyhow::Result<Workspace> {
        let memory_limit = project.file.memory_limit.as_deref().unwrap_or(MEMORY_LIMIT);
        let db = StateDb::open(state_path, memory_limit)?;
        let Warehouse::Duckdb { path } = &project.file.warehouse;
        let warehouse = path.as_deref().map(|p| project.path(p));
        let source = DuckDbSource::attach(&db.conn, warehouse.as_deref())
            .context("cannot open the warehouse named in rowcast.yaml")?;
        Ok(Workspace { project, db, source, remote })
    }

    /// What the committer calls after each transaction, when the state lives elsewhere.
    pub fn write_back_hook(&self) -> Option<Arc<dyn WriteBack>> {
        self.remote.clone().map(|remote| remote as Arc<dyn WriteBack>)
    }

    /// Writes the state back to where it lives, at the end of a command that changed it.
    /// Nothing to do for a local state, whose commits are already on disk.
    pub fn write_back(&self) -> anyhow::Result<()> {
        match &self.remote {
            Some(remote) => Ok(remote.write_back(&self.db.conn, true)?),
            None => Ok(()),
        }
    }
}

/// Where the state of `project` is for a command: `--state FILE`, the apart state of
/// local-function runs, or the project's backend.
pub fn location(
    project: &Project,
    state_override: Option<&Path>,
    local_destination: bool,
) -> StateLocation {
    match (&project.file.state, state_override) {
        (_, Some(path)) => StateLocation::Local(path.to_path_buf()),
        _ if local_destination => StateLocation::Local(project.path(LOCAL_STATE)),
        (State::Local { path }, None) => StateLocation::Local(project.path(path)),
        (State::Gcs { bucket, prefix, endpoint, write_back_every, lock_ttl }, None) => {
            StateLocation::Gcs(GcsConfig {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                endpoint: endpoint.clone(),
                write_back_every: write_back_every.get(),
                lock_ttl: lock_ttl.get(),
            })
        }
    }
}
