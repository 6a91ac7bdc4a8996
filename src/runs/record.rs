//! Writing the run history. The run row of each sync is written when the sync starts
//! (status `running`) and finished when it ends; invocation attempts, row events and
//! opted-in bodies travel with the outcomes to the committer and are appended in the
//! same transaction, so the history is exactly as durable as the snapshot it explains.

use std::sync::Arc;
use std::time::{Duration, Instant};

use duckdb::arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array};
use duckdb::types::{TimeUnit, Value};
use duckdb::Connection;

use crate::manifest::Operation;
use crate::model::json::quote_literal;
use crate::plan::diff::CHANGES_TABLE;

/// How long request and response bodies are kept when a sync does not say.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How many characters of a response body an invocation record keeps.
const EXCERPT_CHARS: usize = 200;

/// How a run of one sync ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Succeeded,
    CompletedWithRejectedRows,
    Failed,
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::CompletedWithRejectedRows => "completed_with_rejected_rows",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// What happened to one row in one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Acknowledged,
    /// The function listed the row in its `errors`, or the row alone was too large.
    Rejected,
    /// The whole invocation failed.
    Failed,
    /// Committed without invoking: the operation is not a trigger, or an initial sync
    /// that skips existing rows.
    Silent,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Acknowledged => "acknowledged",
            Event::Rejected => "rejected",
            Event::Failed => "failed",
            Event::Silent => "silent",
        }
    }
}

/// One row's outcome in one attempt.
#[derive(Debug, Clone)]
pub struct RowEvent {
    pub key: String,
    pub operation: Operation,
    pub event: Event,
    pub reason: Option<String>,
    pub attempt: u32,
    /// Sent again in the same run.
    pub retried: bool,
    pub invocation_id: Option<String>,
    /// Microseconds since the Unix epoch.
    pub at: i64,
}

/// One invocation attempt, as the history shows it.
#[derive(Debug, Clone)]
pub struct InvocationRecord {
    pub exchange: Exchange,
    pub batch: u64,
    pub attempt: u32,
    pub operation: Operation,
    pub rows: u32,
    /// `acknowledged`, `partial`, `failed` or `denied`.
    pub outcome: &'static str,
    /// None on success; else `rejected_rows`, `http_error`, `timeout`, `connection`,
    /// `unreadable_errors` or `denied`.
    pub error_class: Option<&'static str>,
    pub rejected_rows: u32,
    pub error: Option<String>,
}

/// What went over the wire in one invocation, measured where it was sent. Bodies are
/// kept only when the sync opts in; headers (which carry credentials) never are.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub invocation_id: String,
    /// Microseconds since the Unix epoch.
    pub started_at: i64,
    pub latency: Duration,
    pub request_bytes: u64,
    pub answer: Answer,
    pub response_excerpt: Option<String>,
    pub request_body: Option<String>,
    pub response_body: Option<String>,
}

/// What kind of answer an invocation got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    Timeout,
    Connection,
    /// Not answered yet.
    None,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Status(status) => write!(f, "{status}"),
            Answer::Timeout => f.write_str("timeout"),
            Answer::Connection => f.write_str("connection failed"),
            Answer::None => f.write_str("none"),
        }
    }
}

/// An exchange being timed.
pub struct Stopwatch {
    exchange: Exchange,
    started: Instant,
    keep_bodies: bool,
}

impl Exchange {
    /// Starts timing the invocation `invocation_id` of `body`.
    pub fn start(invocation_id: &str, body: &[u8], keep_bodies: bool) -> Stopwatch {
        let exchange = Exchange {
            invocation_id: invocation_id.to_string(),
            started_at: chrono::Utc::now().timestamp_micros(),
            latency: Duration::ZERO,
            request_bytes: body.len() as u64,
            answer: Answer::None,
            response_excerpt: None,
            request_body: keep_bodies.then(|| String::from_utf8_lossy(body).into_owned()),
            response_body: None,
        };
        Stopwatch { exchange, started: Instant::now(), keep_bodies }
    }
}

impl Stopwatch {
    /// Stops the clock on the reply's status and body.
    pub fn answered(self, status: Option<u16>, timed_out: bool, body: &[u8]) -> Exchange {
        let mut exchange = self.exchange;
        exchange.latency = self.started.elapsed();
        exchange.answer = match (status, timed_out) {
            (Some(status), _) => Answer::Status(status),
            (None, true) => Answer::Timeout,
            (None, false) => Answer::Connection,
        };
        if status.is_some() {
            exchange.response_excerpt = excerpt(body);
            if self.keep_bodies {
                exchange.response_body = Some(String::from_utf8_lossy(body).into_owned());
            }
        }
        exchange
    }
}

/// The start of a body with its whitespace collapsed, or None when it is empty.
fn excerpt(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    let joined = words.join(" ");
    let mut cut: String = joined.chars().take(EXCERPT_CHARS).collect();
    if cut.len() < joined.len() {
        cut.push('…');
    }
    Some(cut)
}

/// The history that travels with a group of outcomes to the committer.
#[derive(Debug, Default)]
pub struct History {
    pub invocations: Vec<InvocationRecord>,
    pub events: Vec<RowEvent>,
}

impl History {
    pub fn extend(&mut self, more: History) {
        self.invocations.extend(more.invocations);
        self.events.extend(more.events);
    }
}

fn timestamp(micros: i64) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, micros)
}

/// Now, in UTC, as SQL. Times in the history are UTC, taken from the system clock by
/// Rust rather than by DuckDB, whose `now()` follows the session's time zone.
fn now_sql() -> String {
    format!("make_timestamp({})", chrono::Utc::now().timestamp_micros())
}

/// Appends `history` with DuckDB appenders, inside the caller's transaction.
pub fn append(
    conn: &Connection,
    sync: &str,
    run_id: &str,
    history: &History,
) -> duckdb::Result<()> {
    if !history.invocations.is_empty() {
        append_invocations(conn, sync, run_id, &history.invocations)?;
    }
    if !history.events.is_empty() {
        let mut appender = conn.appender_to_catalog_and_db("row_events", "state", "main")?;
        for e in &history.events {
            appender.append_row(duckdb::params![
                run_id,
                sync,
                e.key,
                e.operation.as_str(),
                e.event.as_str(),
                e.reason,
                e.attempt as i32,
                e.retried,
                e.invocation_id,
                timestamp(e.at),
            ])?;
        }
        appender.flush()?;
    }
    Ok(())
}

fn append_invocations(
    conn: &Connection,
    sync: &str,
    run_id: &str,
    invocations: &[InvocationRecord],
) -> duckdb::Result<()> {
    crate::state::columns::append(conn, "invocations", invocations, |chunk| {
        invocation_columns(run_id, sync, chunk)
    })?;
    let kept: Vec<&Exchange> =
        invocations.iter().map(|i| &i.exchange).filter(|x| x.request_body.is_some()).collect();
    if kept.is_empty() {
        return Ok(());
    }
    let now = timestamp(chrono::Utc::now().timestamp_micros());
    let mut appender = conn.appender_to_catalog_and_db("invocation_bodies", "state", "main")?;
    for x in kept {
        appender.append_row(duckdb::params![
            run_id,
            sync,
            x.invocation_id,
            x.request_body,
            x.response_body,
            now.clone()
        ])?;
    }
    appender.flush()
}

/// The columns of `state.invocations` for `invocations`, in the table's order.
fn invocation_columns(run_id: &str, sync: &str, invocations: &[InvocationRecord]) -> Vec<ArrayRef> {
    use crate::state::columns::{repeated, strings, timestamps};
    let int32 = |values: &dyn Fn(&InvocationRecord) -> Option<i32>| -> ArrayRef {
        Arc::new(invocations.iter().map(values).collect::<Int32Array>())
    };
    let n = invocations.len();
    vec![
        repeated(run_id, n),
        repeated(sync, n),
        strings(invocations.iter().map(|i| Some(i.exchange.invocation_id.as_str()))),
        Arc::new(invocations.iter().map(|i| i.batch as i64).collect::<Int64Array>()),
        int32(&|i| Some(i.attempt as i32)),
        strings(invocations.iter().map(|i| Some(i.operation.as_str()))),
        int32(&|i| Some(i.rows as i32)),
        timestamps(invocations.iter().map(|i| i.exchange.started_at)),
        Arc::new(
            invocations
                .iter()
                .map(|i| i.exchange.latency.as_secs_f64() * 1000.0)
                .collect::<Float64Array>(),
        ),
        Arc::new(
            invocations.iter().map(|i| i.exchange.request_bytes as i64).collect::<Int64Array>(),
        ),
        int32(&|i| match i.exchange.answer {
            Answer::Status(status) => Some(status as i32),
            _ => None,
        }),
        strings(invocations.iter().map(|i| Some(i.outcome))),
        strings(invocations.iter().map(|i| i.error_class)),
        int32(&|i| Some(i.rejected_rows as i32)),
        strings(invocations.iter().map(|i| i.error.as_deref())),
        strings(invocations.iter().map(|i| i.exchange.response_excerpt.as_deref())),
    ]
}

/// Records that `sync` starts in run `run_id`, with `planned` rows to invoke.
pub fn start_run(conn: &Connection, run_id: &str, sync: &str, planned: u64) -> duckdb::Result<()> {
    conn.execute(
        "INSERT INTO state.runs (run_id, sync, status, started_at, planned)
         VALUES (?, ?, 'running', ?, ?)",
        duckdb::params![
            run_id,
            sync,
            timestamp(chrono::Utc::now().timestamp_micros()),
            planned as i64
        ],
    )?;
    Ok(())
}

/// Records the rows of `sync` that were committed without invoking, from the plan.
pub fn record_silent(conn: &Connection, run_id: &str, sync: &str) -> duckdb::Result<()> {
    conn.execute(
        &format!(
            "INSERT INTO state.row_events
             SELECT ?, sync, key, operation, 'silent', NULL, 0, false, NULL, {now}
             FROM {CHANGES_TABLE} WHERE sync = ? AND NOT invoke",
            now = now_sql()
        ),
        [run_id, sync],
    )?;
    Ok(())
}

/// How a sync's run ended, as [`finish_run`] records it.
#[derive(Debug, Clone)]
pub struct Finish<'a> {
    pub status: RunStatus,
    pub pending: u64,
    pub error: Option<&'a str>,
    pub threshold: Option<&'a str>,
}

/// Records the end of `sync` in run `run_id`, and its counts by operation and outcome
/// (each row's last event in the run), in one transaction.
pub fn finish_run(
    conn: &Connection,
    run_id: &str,
    sync: &str,
    finish: &Finish,
) -> duckdb::Result<()> {
    let (r, s) = (quote_literal(run_id), quote_literal(sync));
    let text = |value: Option<&str>| value.map_or("NULL".to_string(), quote_literal);
    let sql = format!(
        "BEGIN TRANSACTION;
         {counts}
         UPDATE state.runs SET status = '{status}', finished_at = {now},
             pending = {pending}, error = {error}, threshold = {threshold},
             invocations = (SELECT count(*) FROM state.invocations
                            WHERE run_id = {r} AND sync = {s})
         WHERE run_id = {r} AND sync = {s};
         COMMIT;",
        counts = counts_sql(&r, &s),
        status = finish.status.as_str(),
        pending = finish.pending,
        error = text(finish.error),
        threshold = text(finish.threshold),
        now = now_sql(),
    );
    run_batch(conn, &sql)
}

fn counts_sql(run_id: &str, sync: &str) -> String {
    format!(
        "DELETE FROM state.run_counts WHERE run_id = {run_id} AND sync = {sync};
         INSERT INTO state.run_counts
             SELECT run_id, sync, operation, event, count(*) FROM state.row_events
             WHERE run_id = {run_id} AND sync = {sync} AND NOT retried
             GROUP BY ALL;"
    )
}

fn run_batch(conn: &Connection, sql: &str) -> duckdb::Result<()> {
    if let Err(error) = conn.execute_batch(sql) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(error);
    }
    Ok(())
}

/// Marks the runs still `running` as interrupted, with the counts of what they
/// committed. It runs when the state is opened: DuckDB lets one process at a time open
/// the state file, and a run in this process has not started yet, so a run still
/// `running` belongs to a process that was killed. Returns how many were marked.
pub fn recover(conn: &Connection) -> duckdb::Result<u64> {
    let mut statement =
        conn.prepare("SELECT run_id, sync FROM state.runs WHERE status = 'running'")?;
    let running: Vec<(String, String)> =
        statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<Result<_, _>>()?;
    for (run_id, sync) in &running {
        let (r, s) = (quote_literal(run_id), quote_literal(sync));
        let sql = format!(
            "BEGIN TRANSACTION;
             {counts}
             UPDATE state.runs SET status = 'interrupted',
                 finished_at = coalesce(
                     (SELECT max(happened_at) FROM state.row_events
                      WHERE run_id = {r} AND sync = {s}),
                     started_at),
                 invocations = (SELECT count(*) FROM state.invocations
                                WHERE run_id = {r} AND sync = {s}),
                 pending = planned - (SELECT count(*) FROM state.row_events
                     WHERE run_id = {r} AND sync = {s} AND event = 'acknowledged'),
                 error = 'the process stopped before the run ended'
             WHERE run_id = {r} AND sync = {s};
             COMMIT;",
            counts = counts_sql(&r, &s),
        );
        run_batch(conn, &sql)?;
    }
    Ok(running.len() as u64)
}

// TODO: invocation records and row events are kept for good (they are what `rows` and
// `runs show` read); a state that runs every few minutes for years grows without bound
// until they too get a retention, longer than that of bodies.

/// Deletes the request and response bodies older than their sync's retention; syncs
/// not in `retention` (removed from the project, or no longer keeping bodies) get
/// [`DEFAULT_RETENTION`]. Counts and invocation records stay. Returns how many bodies
/// were deleted.
pub fn prune_bodies(conn: &Connection, retention: &[(String, Duration)]) -> duckdb::Result<u64> {
    let mut cases = String::new();
    for (sync, keep) in retention {
        cases.push_str(&format!(" WHEN {} THEN {}", quote_literal(sync), keep.as_micros()));
    }
    let case = if cases.is_empty() {
        DEFAULT_RETENTION.as_micros().to_string()
    } else {
        format!("CASE sync{cases} ELSE {} END", DEFAULT_RETENTION.as_micros())
    };
    let deleted = conn.execute(
        &format!(
            "DELETE FROM state.invocation_bodies
             WHERE recorded_at < {now} - to_microseconds(({case})::BIGINT)",
            now = now_sql()
        ),
        [],
    )?;
    Ok(deleted as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_collapses_whitespace_and_cuts_long_bodies() {
        assert_eq!(excerpt(b" \n "), None);
        assert_eq!(excerpt(b"{\"errors\":\n  []}").as_deref(), Some("{\"errors\": []}"));
        let long = "x".repeat(500);
        let cut = excerpt(long.as_bytes()).unwrap();
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn bodies_are_kept_only_when_asked() {
        let kept = Exchange::start("i", b"{\"row\":1}", true).answered(Some(200), false, b"ok");
        assert_eq!(kept.request_body.as_deref(), Some("{\"row\":1}"));
        assert_eq!(kept.response_body.as_deref(), Some("ok"));
        assert_eq!((kept.answer, kept.request_bytes), (Answer::Status(200), 9));
        let plain = Exchange::start("i", b"{}", false).answered(None, true, b"");
        assert_eq!((plain.request_body, plain.response_body), (None, None));
        assert_eq!(plain.answer, Answer::Timeout);
    }
}
