//! Saved plans (`plan --out FILE`). A plan file is a DuckDB database holding the planned
//! changes and a header naming the state and the snapshot version of each sync it was
//! made from, so `apply FILE` sends exactly what was reviewed, or refuses when the
//! snapshot has moved since.

use std::path::{Path, PathBuf};

use anyhow::Context;
use duckdb::Connection;
use serde::{Deserialize, Serialize};

use super::diff::CHANGES_TABLE;
use super::{Plan, SyncOutcome, SyncPlan};
use crate::model::json::quote_literal;

/// The format version of plan files this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// What a plan file says about where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format_version: u32,
    pub project: String,
    pub state_id: String,
    pub created_at: String,
    /// Each planned sync and the snapshot version it was diffed against.
    pub syncs: Vec<SyncVersion>,
    /// The plan of each sync, as it was shown.
    pub plans: Vec<SyncPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncVersion {
    pub name: String,
    pub snapshot_version: i64,
}

/// A saved plan that no longer matches the state.
#[derive(Debug, thiserror::Error)]
pub enum StalePlan {
    #[error(
        "the plan `{path}` was made against another state (`{planned}`, this is `{current}`); \
         run `rowcast plan` again against this state"
    )]
    OtherState { path: PathBuf, planned: String, current: String },
    #[error(
        "the plan `{path}` is stale: sync `{sync}` was at snapshot version {planned} when it \
         was planned and is now at {current}, so its rows may have been sent since. Run \
         `rowcast plan` again and review the new plan"
    )]
    Moved { path: PathBuf, sync: String, planned: i64, current: i64 },
}

/// Writes the planned changes and the header to `path`, replacing it atomically.
pub fn write(conn: &Connection, plan: &Plan, path: &Path) -> anyhow::Result<()> {
    let header = Header {
        format_version: FORMAT_VERSION,
        project: plan.project.clone(),
        state_id: plan.state_id.clone(),
        created_at: chrono::Utc::now().to_rfc3339(),
        syncs: plan
            .planned()
            .map(|s| SyncVersion { name: s.name.clone(), snapshot_version: s.snapshot_version })
            .collect(),
        plans: plan.planned().cloned().collect(),
    };
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let names: Vec<String> = header.syncs.iter().map(|s| quote_literal(&s.name)).collect();
    let filter = if names.is_empty() {
        "false".to_string()
    } else {
        format!("sync IN ({})", names.join(", "))
    };
    let header_json = serde_json::to_string(&header)?;
    let sql = format!(
        "ATTACH {file} AS planfile;
         CREATE TABLE planfile.header (json VARCHAR NOT NULL);
         INSERT INTO planfile.header VALUES ({header});
         CREATE TABLE planfile.changes AS SELECT * FROM {CHANGES_TABLE} WHERE {filter};
         DETACH planfile;",
        file = quote_literal(&partial.to_string_lossy()),
        header = quote_literal(&header_json),
    );
    conn.execute_batch(&sql)
        .with_context(|| format!("cannot write the plan file `{}`", path.display()))?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("cannot move the plan file into `{}`", path.display()))?;
    Ok(())
}

/// Reads the header of a plan file.
pub fn read_header(conn: &Connection, path: &Path) -> anyhow::Result<Header> {
    if !path.is_file() {
        anyhow::bail!("the plan file `{}` does not exist", path.display());
    }
    conn.execute_batch(&format!(
        "ATTACH {} AS planfile (READ_ONLY);",
        quote_literal(&path.to_string_lossy())
    ))
    .with_context(|| format!("`{}` is not a rowcast plan file", path.display()))?;
    let text: String = conn
        .query_row("SELECT json FROM planfile.header", [], |row| row.get(0))
        .with_context(|| format!("`{}` is not a rowcast plan file", path.display()))?;
    let header: Header = serde_json::from_str(&text)
        .with_context(|| format!("the header of `{}` is unreadable", path.display()))?;
    if header.format_version != FORMAT_VERSION {
        anyhow::bail!(
            "the plan file `{}` has format version {}, this rowcast reads {FORMAT_VERSION}; \
             plan again with this rowcast",
            path.display(),
            header.format_version
        );
    }
    Ok(header)
}

/// Refuses a plan whose state or snapshot versions differ from the current ones.
pub fn check_fresh(
    header: &Header,
    path: &Path,
    state_id: &str,
    current_version: impl Fn(&str) -> anyhow::Result<i64>,
) -> anyhow::Result<()> {
    if header.state_id != state_id {
        return Err(StalePlan::OtherState {
            path: path.to_path_buf(),
            planned: header.state_id.clone(),
            current: state_id.to_string(),
        }
        .into());
    }
    for sync in &header.syncs {
        let current = current_version(&sync.name)?;
        if current != sync.snapshot_version {
            return Err(StalePlan::Moved {
                path: path.to_path_buf(),
                sync: sync.name.clone(),
                planned: sync.snapshot_version,
                current,
            }
            .into());
        }
    }
    Ok(())
}

/// Loads the changes of a plan file attached by [`read_header`] into the changes table,
/// keeping only the `selected` syncs (all when empty), and returns the plan they form.
pub fn load(conn: &Connection, header: &Header, selected: &[String]) -> anyhow::Result<Plan> {
    let plans: Vec<SyncPlan> = header
        .plans
        .iter()
        .filter(|p| selected.is_empty() || selected.contains(&p.name))
        .cloned()
        .collect();
    for name in selected {
        if !plans.iter().any(|p| &p.name == name) {
            anyhow::bail!("the plan file has no sync named `{name}`");
        }
    }
    let names: Vec<String> = plans.iter().map(|p| quote_literal(&p.name)).collect();
    let filter = if names.is_empty() {
        "false".to_string()
    } else {
        format!("sync IN ({})", names.join(", "))
    };
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TABLE {CHANGES_TABLE} AS SELECT * FROM planfile.changes WHERE {filter};
         DETACH planfile;"
    ))
    .context("cannot read the changes of the plan file")?;
    Ok(Plan {
        project: header.project.clone(),
        state_id: header.state_id.clone(),
        syncs: plans.into_iter().map(SyncOutcome::Planned).collect(),
    })
}
