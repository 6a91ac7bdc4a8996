//! Versioned migrations of the state schema, so a newer rowcast opens the state an older
//! one wrote. Each migration runs once, in a transaction, and records its version.

use std::path::Path;

use duckdb::Connection;

use super::StateError;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 3;

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
    // 3: the pending set loses its primary key. DuckDB keeps a primary key's index in
    // memory as the table grows, and past about a million pending rows (a function down
    // for a whole large apply) it no longer fit under a 128 MB memory limit, so commits
    // failed. Every statement that writes the pending set deletes a key's entry before
    // inserting it again, which keeps keys unique without the index.
    "CREATE TABLE state.pending_unindexed (
        sync VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        operation VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        attempts INTEGER NOT NULL,
        first_failed_at TIMESTAMP NOT NULL,
        last_failed_at TIMESTAMP NOT NULL
    );
    INSERT INTO state.pending_unindexed SELECT * FROM state.pending;
    DROP TABLE state.pending;
    ALTER TABLE state.pending_unindexed RENAME TO pending;",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A state left at version 2 by an older rowcast, with one pending row.
    fn state_at_version_2(conn: &Connection, path: &Path) {
        conn.execute_batch(&format!("ATTACH '{}' AS state", path.display())).unwrap();
        conn.execute_batch(
            "CREATE TABLE state.rowcast_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);",
        )
        .unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO state.rowcast_meta VALUES ('schema_version', '2'), ('state_id', 'old');
             INSERT INTO state.pending
                 VALUES ('s', '7', 'changed', 'HTTP 500', 2, now(), now());",
        )
        .unwrap();
    }

    #[test]
    fn version_3_keeps_pending_rows_and_drops_the_pending_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.duckdb");
        let conn = Connection::open_in_memory().unwrap();
        state_at_version_2(&conn, &path);

        assert_eq!(migrate(&conn, &path).unwrap(), "old");
        let kept: (String, i32) = conn
            .query_row("SELECT key, attempts FROM state.pending WHERE sync = 's'", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        assert_eq!(kept, ("7".to_string(), 2));
        let keys: i64 = conn
            .query_row(
                "SELECT count(*) FROM duckdb_constraints()
                 WHERE database_name = 'state' AND table_name = 'pending'
                   AND constraint_type = 'PRIMARY KEY'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(keys, 0);
        let version = meta(&conn, "schema_version").unwrap();
        assert_eq!(version.as_deref(), Some("3"));
    }
}
