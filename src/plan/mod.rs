//! The plan stage: diff each sync's model rows against its committed snapshot, in DuckDB
//! and out of core, into a change plan: rows to invoke per operation, rows to commit
//! silently (operations that are not triggers, or an initial sync that skips existing
//! rows), and the warnings a reviewer should read. Planning never changes the snapshot.

pub mod diff;
pub mod file;
pub mod render;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manifest::Operation;

pub use diff::{plan_project, Planner};

/// Counts of rows by operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.added + self.changed + self.removed
    }

    pub fn get(&self, operation: Operation) -> u64 {
        match operation {
            Operation::Added => self.added,
            Operation::Changed => self.changed,
            Operation::Removed => self.removed,
        }
    }

    pub fn add(&mut self, operation: Operation, count: u64) {
        match operation {
            Operation::Added => self.added += count,
            Operation::Changed => self.changed += count,
            Operation::Removed => self.removed += count,
        }
    }
}

/// One planned row, shown to reviewers as an example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleRow {
    /// The primary key in its canonical text form.
    pub key: String,
    /// The row's values; for `removed`, its last acknowledged values.
    pub row: serde_json::Value,
    /// For `changed`, the acknowledged values it replaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<serde_json::Value>,
}

/// The plan of one sync that planned cleanly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncPlan {
    pub name: String,
    /// The manifest, as the user named it.
    pub manifest: String,
    /// Rows to invoke the function for.
    pub invoke: Counts,
    /// Rows to commit to the snapshot without invoking.
    pub silent: Counts,
    /// Rows to invoke that an earlier run left pending (rejected or failed).
    pub pending: u64,
    /// Whether this is the sync's first run.
    pub initial: bool,
    /// The snapshot version the plan was made from.
    pub snapshot_version: i64,
    /// The model's columns as `(name, DuckDB type)`, recorded with the rows committed.
    pub columns: Vec<(String, String)>,
    pub warnings: Vec<String>,
    /// The first rows of each operation to invoke, by primary key.
    pub examples: BTreeMap<Operation, Vec<ExampleRow>>,
}

impl SyncPlan {
    pub fn has_changes(&self) -> bool {
        self.invoke.total() + self.silent.total() > 0
    }
}

/// A sync that could not be planned, and why. Nothing of it is planned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncFailure {
    pub name: String,
    pub manifest: String,
    pub error: String,
}

/// The outcome of planning one sync.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncOutcome {
    Planned(SyncPlan),
    Failed(SyncFailure),
}

/// The change plan of a project.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub project: String,
    /// Identifies the state the plan was made from.
    pub state_id: String,
    pub syncs: Vec<SyncOutcome>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.planned().any(SyncPlan::has_changes)
    }

    pub fn has_failures(&self) -> bool {
        self.syncs.iter().any(|s| matches!(s, SyncOutcome::Failed(_)))
    }

    pub fn planned(&self) -> impl Iterator<Item = &SyncPlan> {
        self.syncs.iter().filter_map(|s| match s {
            SyncOutcome::Planned(plan) => Some(plan),
            SyncOutcome::Failed(_) => None,
        })
    }
}
