//! The state database: a DuckDB file (`.rowcast/state.duckdb` by default) that holds, per
//! sync, the snapshot of rows the function acknowledged, the rows left pending, and the
//! version of the snapshot that plans refer to.
//!
//! rowcast works in one in-memory DuckDB connection with the state file attached as the
//! catalog `state` and the warehouse attached beside it, so the diff and the commits are
//! set-based SQL that DuckDB runs out of core.

pub mod columns;
pub mod commit;
pub mod gcs;
pub mod lock;
pub mod maintenance;
mod migrations;
pub mod write_back;

use std::path::{Path, PathBuf};

use duckdb::Connection;

pub use migrations::SCHEMA_VERSION;

/// The catalog name the state file is attached as.
pub const CATALOG: &str = "state";

/// Errors opening or migrating the state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the folder `{path}` for the state: {source}")]
    Folder { path: PathBuf, source: std::io::Error },
    #[error(
        "cannot open the state `{path}`: {source}. If another rowcast is running on this \
         state, wait for it to finish"
    )]
    Open { path: PathBuf, source: duckdb::Error },
    #[error(
        "the state `{path}` has schema version {found}, newer than this rowcast knows \
         ({known}); upgrade rowcast"
    )]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error(
        "DuckDB refused the memory limit `{value}` (`memory_limit` in rowcast.yaml): {source}. \
         Use a size such as `128MB` or `1GB`"
    )]
    MemoryLimit { value: String, source: duckdb::Error },
    #[error("the state `{path}` could not be migrated to version {version}: {source}")]
    Migrate { path: PathBuf, version: i64, source: duckdb::Error },
    #[error("state query failed: {0}")]
    Query(#[from] duckdb::Error),
}

/// How much memory DuckDB may use for its buffers before it spills to disk, unless the
/// project sets `memory_limit`. An apply reads every planned row once and writes each
/// acknowledged row once, so past this limit DuckDB's buffers hold data it has finished
/// with; a limit that a million-row apply already reaches keeps the peak memory of larger
/// ones the same. Plans of millions of rows are somewhat slower under it than under a
/// larger limit, as their joins spill sooner.
pub const MEMORY_LIMIT: &str = "128MB";

/// What to do when DuckDB ran out of memory in `error` (the text of an error and its
/// causes), or None for other errors. DuckDB's own advice names its `SET` statement; a
/// rowcast user raises `memory_limit` in rowcast.yaml instead.
pub fn memory_hint(error: &str) -> Option<String> {
    error.contains("Out of Memory Error").then(|| {
        format!(
            "DuckDB needed more memory than its limit ({MEMORY_LIMIT} unless rowcast.yaml sets \
             `memory_limit`); raise `memory_limit` in rowcast.yaml, such as `memory_limit: 1GB`"
        )
    })
}

/// How much write-ahead log DuckDB gathers before it checkpoints it into the state file.
/// DuckDB's default (16 MB) makes an apply of many small invocations checkpoint every few
/// seconds, each time rewriting the tables it appends to; a larger log costs a little
/// more time to replay when the state is opened after a kill.
pub const CHECKPOINT_THRESHOLD: &str = "256MB";

/// An open connection with the state attached and migrated.
pub struct StateDb {
    pub conn: Connection,
    pub path: PathBuf,
    /// Identifies this state file; a plan made against one state is refused by another.
    pub state_id: String,
}

impl StateDb {
    /// Opens (creating when missing) the state file at `path`, migrating it to the current
    /// schema version, with DuckDB's buffers limited to `memory_limit` (such as `128MB`).
    pub fn open(path: &Path, memory_limit: &str) -> Result<StateDb, StateError> {
        if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)
                .map_err(|source| StateError::Folder { path: folder.to_path_buf(), source })?;
        }
        let open_error = |source| StateError::Open { path: path.to_path_buf(), source };
        let conn = Connection::open_in_memory().map_err(open_error)?;
        let temp = path.with_extension("tmp");
        let limit = crate::model::json::quote_literal(memory_limit);
        conn.execute_batch(&format!("SET memory_limit = {limit}")).map_err(|source| {
            StateError::MemoryLimit { value: memory_limit.to_string(), source }
        })?;
        conn.execute_batch(&format!(
            "SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}';
             SET preserve_insertion_order = false;
             SET temp_directory = {};
             ATTACH {} AS {CATALOG};",
            crate::model::json::quote_literal(&temp.to_string_lossy()),
            crate::model::json::quote_literal(&path.to_string_lossy()),
        ))
        .map_err(open_error)?;
        let state_id = migrations::migrate(&conn, path)?;
        // Changes acknowledged by an apply that was stopped before it folded them in.
        let folded = commit::fold_journal(&conn)?;
        if folded > 0 {
            tracing::info!(
                entries = folded,
                "folded acknowledged changes left by an earlier apply"
            );
        }
        let interrupted = crate::runs::record::recover(&conn)?;
        if interrupted > 0 {
            tracing::warn!(runs = interrupted, "marked runs of a stopped apply as interrupted");
        }
        Ok(StateDb { conn, path: path.to_path_buf(), state_id })
    }

    /// The snapshot version of a sync: 0 before its first commit.
    pub fn snapshot_version(&self, sync: &str) -> Result<i64, StateError> {
        let version = self
            .conn
            .query_row("SELECT snapshot_version FROM state.syncs WHERE sync = ?", [sync], |row| {
                row.get::<_, i64>(0)
            })
            .or_else(|error| match error {
                duckdb::Error::QueryReturnedNoRows => Ok(0),
                other => Err(other),
            })?;
        Ok(version)
    }

    /// The column set of the rows last committed for a sync, as `name TYPE` pairs, if
    /// the sync has committed anything.
    pub fn committed_columns(
        &self,
        sync: &str,
    ) -> Result<Option<Vec<(String, String)>>, StateError> {
        let text: Option<String> = self
            .conn
            .query_row("SELECT columns FROM state.syncs WHERE sync = ?", [sync], |row| row.get(0))
            .or_else(|error| match error {
                duckdb::Error::QueryReturnedNoRows => Ok(None),
                other => Err(other),
            })?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }
}
