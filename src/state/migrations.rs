//! Versioned migrations of the state schema, so a newer rowcast opens the state an older
//! one wrote. Each migration runs once, in a transaction, and records its version.

use std::path::Path;

use duckdb::Connection;

use super::StateError;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 2;

/// Migration `n` (1-based) turns version `n - 1` into version `n`.
const MIGRATIONS: &[&str] = &[
    // 1: snapshots, pending rows, per-sync versions.
    "CREATE TABLE state.syncs (
        sync VARCHAR PRIMARY KEY,
        -- Bumped by every commit; a saved plan records it and apply refuses a mismatch.
        snapshot_version BIGINT NOT NULL DEFAULT 0,
        -- JSON list of [name, type] of the model columns last committed.
        columns VARCHAR,
        initialized_at TIMESTAMP,
        updated_at TIMESTAMP
    );
    CREATE TABLE state.snapshot (
        sync VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        fingerprint UHUGEINT NOT NULL,
        row VARCHAR NOT NULL,
        committed_at TIMESTAMP NOT NULL
    );
    -- Acknowledged changes not yet folded into the snapshot: apply appends here, one
    -- transaction per group of invocations, and folds them in at its end (or the next
    -- command folds them in, after a killed apply). The fingerprint of each row is
    -- computed from its text when it is folded.
    CREATE TABLE state.journal (
        sync VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        operation VARCHAR NOT NULL,
        row VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL,
        committed_at TIMESTAMP NOT NULL
    );
    CREATE TABLE state.pending (
        sync VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        operation VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        attempts INTEGER NOT NULL,
        first_failed_at TIMESTAMP NOT NULL,
        last_failed_at TIMESTAMP NOT NULL,
        PRIMARY KEY (sync, key)
    );",
    // 2: run history. One run row per sync of an apply, one row per invocation attempt,
    // one event per row and attempt, the counts of each finished run, and request and
    // response bodies for the syncs that opt in (deleted after their retention). The
    // journal learns which invocation acknowledged each change: its `acknowledged` events
    // are written from the journal when it is folded, in bulk, not one by one.
    "ALTER TABLE state.journal ADD COLUMN invocation_id VARCHAR;
    ALTER TABLE state.journal ADD COLUMN attempt INTEGER;
    CREATE TABLE state.runs (
        run_id VARCHAR NOT NULL,
        sync VARCHAR NOT NULL,
        -- running, succeeded, completed_with_rejected_rows, failed, interrupted
        status VARCHAR NOT NULL,
        started_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP,
        -- Rows planned for invocation, and rows committed without invoking.
        planned BIGINT NOT NULL DEFAULT 0,
        invocations BIGINT NOT NULL DEFAULT 0,
        -- Rows planned for invocation that were not acknowledged by the end of the run.
        pending BIGINT NOT NULL DEFAULT 0,
        error VARCHAR,
        threshold VARCHAR,
        PRIMARY KEY (run_id, sync)
    );
    CREATE TABLE state.run_counts (
        run_id VARCHAR NOT NULL,
        sync VARCHAR NOT NULL,
        operation VARCHAR NOT NULL,
        -- acknowledged, rejected, failed, silent
        outcome VARCHAR NOT NULL,
        rows BIGINT NOT NULL
    );
    CREATE TABLE state.invocations (
        run_id VARCHAR NOT NULL,
        sync VARCHAR NOT NULL,
        invocation_id VARCHAR NOT NULL,
        batch BIGINT NOT NULL,
        attempt INTEGER NOT NULL,
        operation VARCHAR NOT NULL,
        rows INTEGER NOT NULL,
        started_at TIMESTAMP NOT NULL,
        latency_ms DOUBLE NOT NULL,
        request_bytes BIGINT NOT NULL,
        -- NULL when no status came back (timeout, connection error).
        http_status INTEGER,
        -- acknowledged, partial, failed, denied
        outcome VARCHAR NOT NULL,
        -- NULL on success; else rejected_rows, http_error, timeout, connection,
        -- unreadable_errors or denied.
        error_class VARCHAR,
        rejected_rows INTEGER NOT NULL,
        -- Why the invocation failed, as the run reported it.
        error VARCHAR,
        -- The start of the response body, whitespace collapsed.
        response_excerpt VARCHAR
    );
    CREATE TABLE state.row_events (
        run_id VARCHAR NOT NULL,
        sync VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        operation VARCHAR NOT NULL,
        -- acknowledged, rejected, failed, silent
        event VARCHAR NOT NULL,
        reason VARCHAR,
        attempt INTEGER NOT NULL,
        -- Whether the row was sent again in the same run; the one event of a row and run
        -- that is not retried is its outcome in that run.
        retried BOOLEAN NOT NULL,
        invocation_id VARCHAR,
        happened_at TIMESTAMP NOT NULL
    );
    CREATE TABLE state.invocation_bodies (
        run_id VARCHAR NOT NULL,
        sync VARCHAR NOT NULL,
        invocation_id VARCHAR NOT NULL,
        request VARCHAR NOT NULL,
        response VARCHAR,
        recorded_at TIMESTAMP NOT NULL
    );",
];

/// Brings the attached state to [`SCHEMA_VERSION`] and returns its state id.
pub fn migrate(conn: &Connection, path: &Path) -> Result<String, StateError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS state.rowcast_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);",
    )?;
    let current: i64 = meta(conn, "schema_version")?.and_then(|v| v.parse().ok()).unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(StateError::TooNew {
            path: path.to_path_buf(),
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let failed = |source| StateError::Migrate { path: path.to_path_buf(), version, source };
        let batch = format!(
            "BEGIN TRANSACTION;
             {sql}
             INSERT OR REPLACE INTO state.rowcast_meta VALUES ('schema_version', '{version}');
             COMMIT;"
        );
        if let Err(error) = conn.execute_batch(&batch) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(failed(error));
        }
    }
    if let Some(id) = meta(conn, "state_id")? {
        return Ok(id);
    }
    let id = uuid::Uuid::new_v4().to_string();
    conn.execute("INSERT INTO state.rowcast_meta VALUES ('state_id', ?)", [&id])?;
    Ok(id)
}

fn meta(conn: &Connection, key: &str) -> Result<Option<String>, StateError> {
    conn.query_row("SELECT value FROM state.rowcast_meta WHERE key = ?", [key], |row| row.get(0))
        .map(Some)
        .or_else(|error| match error {
            duckdb::Error::QueryReturnedNoRows => Ok(None),
            other => Err(other.into()),
        })
}
