//! The project file `rowcast.yaml`: where the warehouse is, where the state lives and
//! where the sync manifests are. Paths in it are relative to the file.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;

/// The name of the project file at the root of a rowcast project.
pub const PROJECT_FILE: &str = "rowcast.yaml";

/// A rowcast project: one warehouse, one state, a folder of syncs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "rowcast project file")]
pub struct ProjectFile {
    /// Name of the project, shown in plans and run summaries.
    #[schemars(pattern(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"))]
    pub name: String,

    /// Where the models' queries run.
    #[serde(default)]
    pub warehouse: Warehouse,

    /// Where rowcast keeps each sync's snapshot, pending rows and run history.
    #[serde(default)]
    pub state: State,

    /// Folder of the sync manifests, one sync per `.yaml` file. Defaults to `syncs`.
    #[serde(default = "default_syncs_dir")]
    pub syncs: String,

    /// How much memory DuckDB may hold for plans and the state before it spills to disk
    /// next to the state file, such as `128MB` or `1GB`. Defaults to `128MB`, under which
    /// an apply's peak memory stays the same however many rows it sends; a larger limit
    /// makes plans of millions of rows faster and costs that much more memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]+(\.[0-9]+)? ?(B|[KMGT]i?B)$"))]
    pub memory_limit: Option<String>,
}

fn default_syncs_dir() -> String {
    "syncs".to_string()
}

/// The warehouse the models' queries run in.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Warehouse {
    /// DuckDB, embedded. With `path`, queries run against that database file (opened
    /// read-only); without it, in an empty in-memory database, where queries read CSV,
    /// Parquet or JSON files such as `read_csv('data/orders.csv')`.
    Duckdb {
        /// Path of the `.duckdb` file. Relative paths start at the project folder.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
}

impl Default for Warehouse {
    fn default() -> Self {
        Warehouse::Duckdb { path: None }
    }
}

/// Where state lives.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum State {
    /// A DuckDB file on the local disk.
    Local {
        /// Path of the state file. Defaults to `.rowcast/state.duckdb`.
        #[serde(default = "default_state_path")]
        path: String,
    },
    /// A DuckDB file kept in a Cloud Storage bucket, for CI runners that start empty. It
    /// is fetched at start, written back at commit points with generation preconditions,
    /// and guarded by a lock object.
    Gcs {
        /// Name of the bucket, such as `acme-rowcast-state`.
        bucket: String,
        /// Prefix of the state and lock objects in the bucket.
        #[serde(default = "default_gcs_prefix")]
        prefix: String,
        /// Storage API endpoint, for an emulator. Defaults to Google's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        /// Longest time between two write-backs during an apply. Defaults to `30s`.
        #[serde(default = "default_write_back")]
        write_back_every: HumanDuration,
        /// How long a lock is honoured without being renewed, such as `15m`.
        #[serde(default = "default_lock_ttl")]
        lock_ttl: HumanDuration,
    },
}

fn default_state_path() -> String {
    ".rowcast/state.duckdb".to_string()
}

fn default_gcs_prefix() -> String {
    "rowcast/".to_string()
}

fn default_write_back() -> HumanDuration {
    HumanDuration::from_secs(30)
}

fn default_lock_ttl() -> HumanDuration {
    HumanDuration::from_secs(15 * 60)
}

impl Default for State {
    fn default() -> Self {
        State::Local { path: default_state_path() }
    }
}
