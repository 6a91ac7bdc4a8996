//! Reading the run history back: the list of runs, one run with its invocations and the
//! rows it left rejected or failed, and the history of one primary key. Times are UTC,
//! as ISO 8601 text with milliseconds.

use duckdb::{Connection, Row};
use serde::Serialize;

use crate::plan::Counts;

/// How a time column is read: ISO 8601, UTC, with milliseconds.
fn iso(column: &str) -> String {
    format!("strftime({column}, '%Y-%m-%dT%H:%M:%S.%gZ')")
}

/// Errors reading the history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("there is no run `{0}` in this state; `rowcast runs` lists the runs it has")]
    NoRun(String),
    #[error(
        "`{prefix}` is the start of several run ids ({}); give more of the id",
        .matches.join(", ")
    )]
    Ambiguous { prefix: String, matches: Vec<String> },
    #[error("cannot read the run history: {0}")]
    Query(#[from] duckdb::Error),
}

/// Rows of one run of one sync, by outcome and operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    pub acknowledged: Counts,
    pub rejected: Counts,
    pub failed: Counts,
    pub silent: Counts,
}

impl OutcomeCounts {
    fn add(&mut self, outcome: &str, operation: &str, rows: u64) {
        let counts = match outcome {
            "acknowledged" => &mut self.acknowledged,
            "rejected" => &mut self.rejected,
            "failed" => &mut self.failed,
            _ => &mut self.silent,
        };
        counts.add(crate::plan::diff::parse_operation(operation), rows);
    }
}

/// One sync's part of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub sync: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    /// Rows planned for invocation.
    pub planned: u64,
    pub invocations: u64,
    /// Rows planned for invocation that were not acknowledged by the end of the run.
    pub pending: u64,
    pub counts: OutcomeCounts,
    pub error: Option<String>,
    pub threshold: Option<String>,
}

const SUMMARY_COLUMNS: &str = "run_id, sync, status, {started}, {finished},
    epoch_ms(finished_at) - epoch_ms(started_at), planned, invocations, pending, error, threshold";

fn summary_columns() -> String {
    SUMMARY_COLUMNS
        .replace("{started}", &iso("started_at"))
        .replace("{finished}", &iso("finished_at"))
}

fn summary(row: &Row) -> duckdb::Result<RunSummary> {
    Ok(RunSummary {
        run_id: row.get(0)?,
        sync: row.get(1)?,
        status: row.get(2)?,
        started_at: row.get(3)?,
        finished_at: row.get(4)?,
        duration_ms: row.get(5)?,
        planned: row.get::<_, i64>(6)? as u64,
        invocations: row.get::<_, i64>(7)? as u64,
        pending: row.get::<_, i64>(8)? as u64,
        counts: OutcomeCounts::default(),
        error: row.get(9)?,
        threshold: row.get(10)?,
    })
}

/// The latest runs, newest first, of one sync or of all.
pub fn list(
    conn: &Connection,
    sync: Option<&str>,
    limit: usize,
) -> Result<Vec<RunSummary>, HistoryError> {
    let sql = format!(
        "SELECT {} FROM state.runs WHERE (?::VARCHAR IS NULL OR sync = ?)
         ORDER BY started_at DESC, sync LIMIT {limit}",
        summary_columns()
    );
    let mut statement = conn.prepare(&sql)?;
    let mut runs: Vec<RunSummary> =
        statement.query_map([sync, sync], summary)?.collect::<Result<_, _>>()?;
    fill_counts(conn, &mut runs)?;
    Ok(runs)
}

/// The full run id that `prefix` starts.
pub fn resolve(conn: &Connection, prefix: &str) -> Result<String, HistoryError> {
    let mut statement = conn.prepare(
        "SELECT DISTINCT run_id FROM state.runs WHERE starts_with(run_id, ?) ORDER BY 1 LIMIT 5",
    )?;
    let matches: Vec<String> =
        statement.query_map([prefix], |row| row.get(0))?.collect::<Result<_, _>>()?;
    match matches.len() {
        0 => Err(HistoryError::NoRun(prefix.to_string())),
        1 => Ok(matches.into_iter().next().expect("one match")),
        _ => Err(HistoryError::Ambiguous { prefix: prefix.to_string(), matches }),
    }
}

/// Every sync's part of run `run_id`, in the order they ran.
pub fn run(conn: &Connection, run_id: &str) -> Result<Vec<RunSummary>, HistoryError> {
    let sql = format!(
        "SELECT {} FROM state.runs WHERE run_id = ? ORDER BY started_at",
        summary_columns()
    );
    let mut statement = conn.prepare(&sql)?;
    let mut runs: Vec<RunSummary> =
        statement.query_map([run_id], summary)?.collect::<Result<_, _>>()?;
    if runs.is_empty() {
        return Err(HistoryError::NoRun(run_id.to_string()));
    }
    fill_counts(conn, &mut runs)?;
    Ok(runs)
}

fn fill_counts(conn: &Connection, runs: &mut [RunSummary]) -> Result<(), HistoryError> {
    let mut statement = conn.prepare_cached(
        "SELECT outcome, operation, rows FROM state.run_counts WHERE run_id = ? AND sync = ?",
    )?;
    for run in runs {
        let rows = statement.query_map([&run.run_id, &run.sync], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
        })?;
        for row in rows {
            let (outcome, operation, count) = row?;
            run.counts.add(&outcome, &operation, count as u64);
        }
    }
    Ok(())
}

/// One invocation attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Invocation {
    pub sync: String,
    pub invocation_id: String,
    pub batch: u64,
    pub attempt: u32,
    pub operation: String,
    pub rows: u32,
    pub started_at: String,
    /// Milliseconds since the Unix epoch, for charts.
    #[serde(skip)]
    pub started_ms: i64,
    pub latency_ms: f64,
    pub request_bytes: u64,
    pub http_status: Option<u16>,
    pub outcome: String,
    pub error_class: Option<String>,
    pub rejected_rows: u32,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
    /// Kept only for syncs with `record_bodies`, until their retention passes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
}

/// Every invocation attempt of a run, in the order they started.
pub fn invocations(conn: &Connection, run_id: &str) -> Result<Vec<Invocation>, HistoryError> {
    let sql = format!(
        "SELECT i.sync, i.invocation_id, i.batch, i.attempt, i.operation, i.rows,
                {started}, epoch_ms(i.started_at), i.latency_ms, i.request_bytes,
                i.http_status, i.outcome, i.error_class, i.rejected_rows, i.error,
                i.response_excerpt, b.request, b.response
         FROM state.invocations AS i
         LEFT JOIN state.invocation_bodies AS b
           ON b.run_id = i.run_id AND b.invocation_id = i.invocation_id
         WHERE i.run_id = ?
         ORDER BY i.started_at, i.invocation_id",
        started = iso("i.started_at")
    );
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map([run_id], |row| {
        Ok(Invocation {
            sync: row.get(0)?,
            invocation_id: row.get(1)?,
            batch: row.get::<_, i64>(2)? as u64,
            attempt: row.get(3)?,
            operation: row.get(4)?,
            rows: row.get(5)?,
            started_at: row.get(6)?,
            started_ms: row.get(7)?,
            latency_ms: row.get(8)?,
            request_bytes: row.get::<_, i64>(9)? as u64,
            http_status: row.get::<_, Option<i32>>(10)?.map(|s| s as u16),
            outcome: row.get(11)?,
            error_class: row.get(12)?,
            rejected_rows: row.get(13)?,
            error: row.get(14)?,
            response_excerpt: row.get(15)?,
            request_body: row.get(16)?,
            response_body: row.get(17)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A row a run left rejected or failed, and why.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedRow {
    pub sync: String,
    pub key: String,
    pub operation: String,
    /// `rejected` (the function refused the row) or `failed` (its invocation failed).
    pub outcome: String,
    pub reason: Option<String>,
    pub attempts: u32,
    pub invocation_id: Option<String>,
    pub at: String,
}

/// The rows run `run_id` left rejected or failed, by sync and key.
pub fn rejected(conn: &Connection, run_id: &str) -> Result<Vec<RejectedRow>, HistoryError> {
    let sql = format!(
        "SELECT sync, key, operation, event, reason, attempt, invocation_id, {at}
         FROM state.row_events
         WHERE run_id = ? AND NOT retried AND event IN ('rejected', 'failed')
         ORDER BY sync, TRY_CAST(key AS HUGEINT) NULLS LAST, key",
        at = iso("happened_at")
    );
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map([run_id], |row| {
        Ok(RejectedRow {
            sync: row.get(0)?,
            key: row.get(1)?,
            operation: row.get(2)?,
            outcome: row.get(3)?,
            reason: row.get(4)?,
            attempts: row.get(5)?,
            invocation_id: row.get(6)?,
            at: row.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Where a primary key stands now.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum KeyStatus {
    /// The function acknowledged its last change; `row` is what it acknowledged.
    InSnapshot { row: serde_json::Value, committed_at: String },
    /// Not acknowledged; every plan sends it again.
    Pending { operation: String, reason: String, attempts: u32 },
    /// Neither in the snapshot nor pending: never seen, or removed and acknowledged.
    NotTracked,
}

/// One event in the life of a primary key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyEvent {
    pub run_id: String,
    pub at: String,
    pub operation: String,
    /// `acknowledged`, `rejected`, `failed` or `silent`.
    pub event: String,
    pub reason: Option<String>,
    pub attempt: u32,
    /// Sent again in the same run.
    pub retried: bool,
    pub invocation_id: Option<String>,
}

/// The history of one primary key of one sync.
#[derive(Debug, Clone, Serialize)]
pub struct KeyHistory {
    pub sync: String,
    pub key: String,
    pub now: KeyStatus,
    pub events: Vec<KeyEvent>,
}

/// The events of `key` in `sync`, oldest first, and where it stands now.
pub fn key_history(conn: &Connection, sync: &str, key: &str) -> Result<KeyHistory, HistoryError> {
    let sql = format!(
        "SELECT run_id, {at}, operation, event, reason, attempt, retried, invocation_id
         FROM state.row_events WHERE sync = ? AND key = ?
         ORDER BY happened_at, attempt, retried DESC",
        at = iso("happened_at")
    );
    let mut statement = conn.prepare(&sql)?;
    let events = statement
        .query_map([sync, key], |row| {
            Ok(KeyEvent {
                run_id: row.get(0)?,
                at: row.get(1)?,
                operation: row.get(2)?,
                event: row.get(3)?,
                reason: row.get(4)?,
                attempt: row.get(5)?,
                retried: row.get(6)?,
                invocation_id: row.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let now = key_status(conn, sync, key)?;
    Ok(KeyHistory { sync: sync.to_string(), key: key.to_string(), now, events })
}

fn key_status(conn: &Connection, sync: &str, key: &str) -> Result<KeyStatus, HistoryError> {
    let pending = conn.query_row(
        "SELECT operation, reason, attempts FROM state.pending WHERE sync = ? AND key = ?",
        [sync, key],
        |row| {
            Ok(KeyStatus::Pending {
                operation: row.get(0)?,
                reason: row.get(1)?,
                attempts: row.get(2)?,
            })
        },
    );
    match pending {
        Ok(status) => return Ok(status),
        Err(duckdb::Error::QueryReturnedNoRows) => {}
        Err(error) => return Err(error.into()),
    }
    let sql = format!(
        "SELECT row, {at} FROM state.snapshot WHERE sync = ? AND key = ?",
        at = iso("committed_at")
    );
    let snapshot = conn.query_row(&sql, [sync, key], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    });
    match snapshot {
        Ok((row, committed_at)) => Ok(KeyStatus::InSnapshot {
            row: serde_json::from_str(&row).unwrap_or(serde_json::Value::String(row)),
            committed_at,
        }),
        Err(duckdb::Error::QueryReturnedNoRows) => Ok(KeyStatus::NotTracked),
        Err(error) => Err(error.into()),
    }
}
