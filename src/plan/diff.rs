//! The diff: model rows against the committed snapshot, on the primary key, in SQL.
//!
//! Each sync's model is materialised once into a temporary table of (key, row JSON,
//! fingerprint); a FULL OUTER JOIN with the snapshot finds added, changed and removed
//! keys; the result lands in the changes table, which `apply` and saved plans read.
//! Rows a function rejected never entered the snapshot, so they are planned again by the
//! same join, with their current values.

use std::collections::BTreeMap;

use anyhow::Context;
use duckdb::Connection;

use super::{Counts, ExampleRow, Plan, SyncFailure, SyncOutcome, SyncPlan};
use crate::manifest::sync::InitialSync;
use crate::manifest::{Operation, Project, SyncSource};
use crate::model::json::{fingerprint_sql, key_sql, quote_identifier, quote_literal, row_json_sql};
use crate::model::{Column, ModelError, ModelSource};
use crate::state::StateDb;

/// The table that holds every planned change. It lives in the in-memory catalog of the
/// connection's database (which spills to disk past the memory limit), so the other
/// connections of an apply (the batch reader, the committer) see it too.
pub const CHANGES_TABLE: &str = "memory.main.plan_changes";

/// How many example keys a primary key error shows.
const EXAMPLE_KEYS: usize = 10;

/// Plans the selected syncs of a project (all when `selected` is empty).
pub fn plan_project(
    project: &Project,
    db: &StateDb,
    source: &dyn ModelSource,
    selected: &[String],
    show_rows: usize,
) -> anyhow::Result<Plan> {
    let syncs = select_syncs(project, selected)?;
    let planner = Planner { conn: &db.conn, db, source, show_rows };
    planner.create_changes_table()?;
    let mut outcomes = Vec::new();
    for sync in syncs {
        outcomes.push(planner.plan_sync(sync));
    }
    Ok(Plan { project: project.file.name.clone(), state_id: db.state_id.clone(), syncs: outcomes })
}

/// The syncs named by `--sync`, in manifest order; an unknown name is an error.
pub fn select_syncs<'a>(
    project: &'a Project,
    selected: &[String],
) -> anyhow::Result<Vec<&'a SyncSource>> {
    for name in selected {
        if !project.syncs.iter().any(|s| &s.manifest.name == name) {
            let known: Vec<_> =
                project.syncs.iter().map(|s| format!("`{}`", s.manifest.name)).collect();
            anyhow::bail!("there is no sync named `{name}`; the project has {}", known.join(", "));
        }
    }
    Ok(project
        .syncs
        .iter()
        .filter(|s| selected.is_empty() || selected.contains(&s.manifest.name))
        .collect())
}

/// Plans syncs one after another in one connection.
pub struct Planner<'a> {
    pub conn: &'a Connection,
    pub db: &'a StateDb,
    pub source: &'a dyn ModelSource,
    pub show_rows: usize,
}

/// Why one sync could not be planned.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{0}")]
    Key(String),
    #[error("state query failed: {0}")]
    Query(#[from] duckdb::Error),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Planner<'_> {
    pub fn create_changes_table(&self) -> duckdb::Result<()> {
        self.conn.execute_batch(&format!(
            "CREATE OR REPLACE TABLE {CHANGES_TABLE} (
                sync VARCHAR NOT NULL,
                key VARCHAR NOT NULL,
                operation VARCHAR NOT NULL,
                invoke BOOLEAN NOT NULL,
                fingerprint UHUGEINT,
                row VARCHAR NOT NULL,
                previous_row VARCHAR,
                -- The same for the same change of the same row, across retries and runs.
                idempotency_key VARCHAR NOT NULL
            );"
        ))
    }

    /// Plans one sync; its failure is reported in the plan and other syncs go on.
    pub fn plan_sync(&self, sync: &SyncSource) -> SyncOutcome {
        let name = sync.manifest.name.clone();
        let manifest = sync.path.display().to_string();
        let outcome = self.try_plan_sync(sync);
        // The model's rows are not needed past the plan: the changes hold what apply sends.
        let _ = self.conn.execute_batch("DROP TABLE IF EXISTS temp.plan_model");
        match outcome {
            Ok(plan) => SyncOutcome::Planned(plan),
            Err(error) => {
                // Whatever was inserted before the failure is not part of the plan.
                let _ = self
                    .conn
                    .execute(&format!("DELETE FROM {CHANGES_TABLE} WHERE sync = ?"), [&name]);
                let mut error = format!("sync `{name}` ({manifest}): {error}");
                if let Some(hint) = crate::state::memory_hint(&error) {
                    error.push_str(&format!("\nhint: {hint}"));
                }
                SyncOutcome::Failed(SyncFailure { name, manifest, error })
            }
        }
    }

    fn try_plan_sync(&self, sync: &SyncSource) -> Result<SyncPlan, SyncError> {
        let name = &sync.manifest.name;
        let relation = self.source.relation(self.conn, &sync.sql)?;
        let key_column = &sync.manifest.model.primary_key;
        if !relation.columns.iter().any(|c| &c.name == key_column) {
            let names: Vec<_> = relation.columns.iter().map(|c| format!("`{}`", c.name)).collect();
            return Err(SyncError::Key(format!(
                "the primary key `{key_column}` is not a column of the model; its columns are {}. \
                 Fix `model.primary_key` or select the column",
                names.join(", ")
            )));
        }

        self.materialise_model(&relation.from_sql, &relation.columns, key_column)?;
        self.check_keys(key_column)?;

        let snapshot_version = self.db.snapshot_version(name)?;
        let initial = !self.sync_known(name)?;
        let skip_existing = initial && sync.manifest.initial_sync == InitialSync::FutureChangesOnly;
        self.diff(name, &sync.manifest.trigger_set(), skip_existing)?;

        let (invoke, silent) = self.counts(name)?;
        let mut warnings =
            self.column_warnings(name, &relation.columns, invoke.changed + silent.changed)?;
        warnings.extend(self.emptied_warning(name, invoke.removed + silent.removed)?);
        if skip_existing && silent.added > 0 {
            warnings.push(format!(
                "first run with `initial_sync: future_changes_only`: the {} existing rows are \
                 recorded without invoking the function",
                silent.added
            ));
        }
        Ok(SyncPlan {
            name: name.clone(),
            manifest: sync.path.display().to_string(),
            invoke,
            silent,
            pending: self.pending_count(name)?,
            initial,
            snapshot_version,
            columns: relation
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.type_text.clone()))
                .collect(),
            warnings,
            examples: self.examples(name)?,
        })
    }

    /// The model's rows as (key, row JSON, fingerprint) in `temp.plan_model`.
    fn materialise_model(
        &self,
        from_sql: &str,
        columns: &[Column],
        key: &str,
    ) -> Result<(), SyncError> {
        let typed: Vec<_> = columns.iter().map(|c| (c.name.clone(), c.ty.clone())).collect();
        let row = row_json_sql("m", &typed);
        let key = key_sql(&format!("m.{}", quote_identifier(key)));
        let fingerprint = fingerprint_sql("row");
        let sql = format!(
            "CREATE OR REPLACE TEMP TABLE plan_model AS
             SELECT key, row, {fingerprint} AS fingerprint
             FROM (SELECT {key} AS key, {row} AS row FROM {from_sql} AS m)"
        );
        self.conn.execute_batch(&sql).map_err(ModelError::Sql)?;
        Ok(())
    }

    /// Null and duplicate primary keys stop the sync, with counts and examples.
    fn check_keys(&self, key_column: &str) -> Result<(), SyncError> {
        let nulls: i64 = self.conn.query_row(
            "SELECT count(*) FROM temp.plan_model WHERE key IS NULL",
            [],
            |row| row.get(0),
        )?;
        let duplicated: i64 = self.conn.query_row(
            "SELECT count(*) FROM (SELECT key FROM temp.plan_model WHERE key IS NOT NULL \
             GROUP BY key HAVING count(*) > 1)",
            [],
            |row| row.get(0),
        )?;
        if nulls == 0 && duplicated == 0 {
            return Ok(());
        }
        let mut problems = Vec::new();
        if nulls > 0 {
            problems.push(format!("{nulls} rows have a null `{key_column}`"));
        }
        if duplicated > 0 {
            let mut statement = self.conn.prepare(&format!(
                "SELECT key, count(*) FROM temp.plan_model WHERE key IS NOT NULL GROUP BY key \
                 HAVING count(*) > 1 ORDER BY count(*) DESC, key LIMIT {EXAMPLE_KEYS}"
            ))?;
            let examples: Vec<String> = statement
                .query_map([], |row| {
                    Ok(format!("`{}` ({}×)", row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })?
                .collect::<Result<_, _>>()?;
            problems.push(format!(
                "{duplicated} values of `{key_column}` appear more than once, such as {}",
                examples.join(", ")
            ));
        }
        Err(SyncError::Key(format!(
            "the primary key must be unique and never null: {}. Nothing of this sync is planned; \
             fix the model so `{key_column}` identifies each row",
            problems.join("; ")
        )))
    }

    fn sync_known(&self, name: &str) -> duckdb::Result<bool> {
        self.conn.query_row("SELECT count(*) > 0 FROM state.syncs WHERE sync = ?", [name], |row| {
            row.get(0)
        })
    }

    fn diff(
        &self,
        name: &str,
        triggers: &std::collections::BTreeSet<Operation>,
        skip_existing: bool,
    ) -> Result<(), SyncError> {
        let triggered: Vec<String> = triggers.iter().map(|op| quote_literal(op.as_str())).collect();
        let invoke = if skip_existing || triggered.is_empty() {
            "false".to_string()
        } else {
            format!("operation IN ({})", triggered.join(", "))
        };
        let sync = quote_literal(name);
        self.conn.execute_batch(&differing_keys_sql(&sync))?;
        self.conn.execute_batch(&changes_insert_sql(&sync, &invoke))?;
        self.conn.execute_batch("DROP TABLE temp.plan_diff")?;
        Ok(())
    }

    fn counts(&self, name: &str) -> duckdb::Result<(Counts, Counts)> {
        let mut statement = self.conn.prepare(&format!(
            "SELECT operation, invoke, count(*) FROM {CHANGES_TABLE} WHERE sync = ? GROUP BY ALL"
        ))?;
        let mut invoke = Counts::default();
        let mut silent = Counts::default();
        let rows = statement.query_map([name], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, bool>(1)?, row.get::<_, i64>(2)?))
        })?;
        for row in rows {
            let (operation, invoked, count) = row?;
            let operation = parse_operation(&operation);
            let counts = if invoked { &mut invoke } else { &mut silent };
            counts.add(operation, count as u64);
        }
        Ok((invoke, silent))
    }

    fn pending_count(&self, name: &str) -> duckdb::Result<u64> {
        let count: i64 = self.conn.query_row(
            &format!(
                "SELECT count(*) FROM {CHANGES_TABLE} AS c JOIN state.pending AS p
                 ON p.sync = c.sync AND p.key = c.key WHERE c.sync = ? AND c.invoke"
            ),
            [name],
            |row| row.get(0),
        )?;
        Ok(count as u64)
    }

    fn examples(&self, name: &str) -> Result<BTreeMap<Operation, Vec<ExampleRow>>, SyncError> {
        let mut examples: BTreeMap<Operation, Vec<ExampleRow>> = BTreeMap::new();
        if self.show_rows == 0 {
            return Ok(examples);
        }
        let mut statement = self.conn.prepare(&format!(
            "SELECT operation, key, row, previous_row FROM {CHANGES_TABLE}
             WHERE sync = ? AND invoke
             QUALIFY row_number() OVER (PARTITION BY operation ORDER BY key) <= {}
             ORDER BY operation, key",
            self.show_rows
        ))?;
        let rows = statement.query_map([name], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
            ))
        })?;
        for row in rows {
            let (operation, key, values, previous) = row?;
            let parse =
                |text: &str| serde_json::from_str(text).context("a planned row is not valid JSON");
            let example = ExampleRow {
                key,
                row: parse(&values)?,
                previous: previous.as_deref().map(parse).transpose()?,
            };
            examples.entry(parse_operation(&operation)).or_default().push(example);
        }
        Ok(examples)
    }

    /// Warns when the model's columns differ from those last committed.
    fn column_warnings(
        &self,
        name: &str,
        columns: &[Column],
        changed: u64,
    ) -> Result<Vec<String>, SyncError> {
        let Some(committed) = self.db.committed_columns(name)? else { return Ok(Vec::new()) };
        let current: Vec<(String, String)> =
            columns.iter().map(|c| (c.name.clone(), c.type_text.clone())).collect();
        let mut differences = Vec::new();
        for (column, ty) in &current {
            match committed.iter().find(|(c, _)| c == column) {
                None => differences.push(format!("added `{column}` ({ty})")),
                Some((_, old)) if old != ty => {
                    differences.push(format!("`{column}` changed type from {old} to {ty}"))
                }
                Some(_) => {}
            }
        }
        for (column, _) in &committed {
            if !current.iter().any(|(c, _)| c == column) {
                differences.push(format!("removed `{column}`"));
            }
        }
        if differences.is_empty() {
            return Ok(Vec::new());
        }
        let snapshot_rows: i64 = self.conn.query_row(
            "SELECT count(*) FROM temp.plan_model AS m JOIN state.snapshot AS s
             ON s.sync = ? AND s.key = m.key",
            [name],
            |row| row.get(0),
        )?;
        let mut warning = format!(
            "the model's columns changed since the last commit: {}",
            differences.join(", ")
        );
        if snapshot_rows > 0 && changed as i64 >= snapshot_rows {
            warning.push_str(&format!(
                "; this is why every one of the {snapshot_rows} rows already sent is planned as changed"
            ));
        }
        Ok(vec![warning])
    }

    /// Warns when the model returned no rows but the snapshot has some: every row would be
    /// removed, which is more often a broken upstream table than a real change.
    fn emptied_warning(&self, name: &str, removed: u64) -> duckdb::Result<Option<String>> {
        let model_rows: i64 =
            self.conn.query_row("SELECT count(*) FROM temp.plan_model", [], |row| row.get(0))?;
        if model_rows > 0 || removed == 0 {
            return Ok(None);
        }
        let _ = name;
        Ok(Some(format!(
            "the model returned no rows, so all {removed} acknowledged rows are planned as removed; \
             check the warehouse before applying"
        )))
    }
}

pub fn parse_operation(text: &str) -> Operation {
    match text {
        "added" => Operation::Added,
        "changed" => Operation::Changed,
        _ => Operation::Removed,
    }
}

// The diff runs in two steps: the keys that differ are found by joining keys and
// fingerprints only, then only those keys fetch their row texts. Joining whole rows at
// once would carry every row's text through the join's hash table.

/// SQL that fills `temp.plan_diff` with the keys of sync `sync` (a SQL literal) that
/// were added, changed or removed between `temp.plan_model` and the snapshot.
pub fn differing_keys_sql(sync: &str) -> String {
    format!(
        "CREATE OR REPLACE TEMP TABLE plan_diff AS
         SELECT coalesce(m.key, s.key) AS key,
                CASE WHEN s.key IS NULL THEN 'added'
                     WHEN m.key IS NULL THEN 'removed'
                     ELSE 'changed' END AS operation
         FROM (SELECT key, fingerprint FROM temp.plan_model) AS m
         FULL OUTER JOIN (SELECT key, fingerprint FROM state.snapshot WHERE sync = {sync}) AS s
           ON m.key = s.key
         WHERE m.key IS NULL OR s.key IS NULL OR m.fingerprint <> s.fingerprint"
    )
}

/// SQL that inserts the changes of `temp.plan_diff` into the changes table, with their
/// rows, previous rows and idempotency keys; `invoke` is the SQL predicate (over
/// `operation`) of the changes that invoke the function.
///
/// The model's rows and the snapshot's rows are each fetched by an inner join with the
/// differing keys, whose hash table is built from those keys alone; the two halves then
/// meet on the differing keys only. Outer joins from the differing keys to the whole
/// model and snapshot would hash one of those whole-row tables instead, which runs out of
/// memory under a small `memory_limit` once the model has millions of rows.
pub fn changes_insert_sql(sync: &str, invoke: &str) -> String {
    format!(
        "INSERT INTO {CHANGES_TABLE}
         SELECT sync, key, operation, {invoke}, fingerprint, row, previous_row,
                md5(concat_ws(chr(0), sync, operation, key, row)) AS idempotency_key
         FROM (
            SELECT {sync} AS sync,
                   coalesce(m.key, s.key) AS key,
                   coalesce(m.operation, s.operation) AS operation,
                   m.fingerprint,
                   coalesce(m.row, s.row) AS row,
                   CASE WHEN s.operation = 'changed' THEN s.row END AS previous_row
            FROM (SELECT d.key, d.operation, model.fingerprint, model.row
                  FROM temp.plan_model AS model JOIN temp.plan_diff AS d ON model.key = d.key)
                 AS m
            FULL OUTER JOIN
                 (SELECT d.key, d.operation, snapshot.row
                  FROM state.snapshot AS snapshot JOIN temp.plan_diff AS d
                    ON snapshot.key = d.key
                  WHERE snapshot.sync = {sync}) AS s
              ON m.key = s.key
         )"
    )
}
