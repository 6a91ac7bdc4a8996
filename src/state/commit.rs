//! Commits into the snapshot. Every commit is one transaction that moves rows from the
//! planned changes into the snapshot (or out of it, for removals), clears them from the
//! pending set, and bumps the sync's snapshot version so saved plans made before it are
//! refused.

use duckdb::Connection;

use crate::model::json::{fingerprint_sql, quote_literal};
use crate::plan::diff::CHANGES_TABLE;

/// Commits the planned changes of `sync` that match the SQL predicate `filter` (over the
/// columns of the changes table, such as `NOT invoke` or `key IN (…)`), and records the
/// model's column set. Returns how many rows were committed.
pub fn commit_planned(
    conn: &Connection,
    sync: &str,
    filter: &str,
    columns: &[(String, String)],
) -> duckdb::Result<u64> {
    let selected = format!(
        "SELECT key FROM {CHANGES_TABLE} WHERE sync = {s} AND ({filter})",
        s = quote_literal(sync)
    );
    let columns_json = serde_json::to_string(columns).expect("column names serialize");
    let sql = format!(
        "BEGIN TRANSACTION;
         DELETE FROM state.snapshot WHERE sync = {s} AND key IN ({selected});
         INSERT INTO state.snapshot
             SELECT sync, key, fingerprint, row, now()::TIMESTAMP FROM {CHANGES_TABLE}
             WHERE sync = {s} AND ({filter}) AND operation <> 'removed';
         DELETE FROM state.pending WHERE sync = {s} AND key IN ({selected});
         INSERT INTO state.syncs (sync, snapshot_version, columns, initialized_at, updated_at)
             VALUES ({s}, 1, {c}, now()::TIMESTAMP, now()::TIMESTAMP)
             ON CONFLICT (sync) DO UPDATE SET
                 snapshot_version = snapshot_version + 1,
                 columns = excluded.columns,
                 updated_at = excluded.updated_at;
         COMMIT;",
        s = quote_literal(sync),
        c = quote_literal(&columns_json),
    );
    let count: i64 = conn.query_row(
        &format!("SELECT count(*) FROM {CHANGES_TABLE} WHERE sync = ? AND ({filter})"),
        [sync],
        |row| row.get(0),
    )?;
    if let Err(error) = conn.execute_batch(&sql) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(error);
    }
    Ok(count as u64)
}

/// A row change the function acknowledged, as the journal records it.
#[derive(Debug, Clone)]
pub struct Acknowledged {
    pub key: String,
    pub operation: crate::manifest::Operation,
    pub row: String,
    /// The invocation that acknowledged it, and its attempt: the history's event.
    pub invocation_id: String,
    pub attempt: u32,
}

/// A row change that was rejected or failed, to be sent again.
#[derive(Debug, Clone)]
pub struct NotDelivered {
    pub key: String,
    pub operation: crate::manifest::Operation,
    pub reason: String,
    /// Attempts made in this run.
    pub attempts: u32,
}

/// The outcome of one or more invocations of one sync, committed together.
#[derive(Debug, Default)]
pub struct Outcomes {
    pub acknowledged: Vec<Acknowledged>,
    pub not_delivered: Vec<NotDelivered>,
    /// The invocation attempts and row events behind these outcomes, for the run history.
    pub history: crate::runs::record::History,
}

impl Outcomes {
    /// Row changes these outcomes carry.
    pub fn rows(&self) -> usize {
        self.acknowledged.len() + self.not_delivered.len()
    }

    /// About how many bytes of text these outcomes hold: row texts, keys, reasons, and the
    /// bodies of invocations that keep them.
    pub fn bytes(&self) -> usize {
        let acknowledged: usize = self.acknowledged.iter().map(|a| a.row.len() + a.key.len()).sum();
        let not_delivered: usize =
            self.not_delivered.iter().map(|n| n.key.len() + n.reason.len()).sum();
        let bodies: usize = self
            .history
            .invocations
            .iter()
            .map(|i| {
                let x = &i.exchange;
                x.request_body.as_ref().map_or(0, String::len)
                    + x.response_body.as_ref().map_or(0, String::len)
            })
            .sum();
        acknowledged + not_delivered + bodies
    }
}

/// Commits invocation outcomes in one transaction: acknowledged changes are appended to
/// the journal (folded into the snapshot by [`fold_journal`]); rows that were not
/// delivered enter or update the pending set; the run history behind them is appended. The
/// first commit of a run (`first`) moves the snapshot version, so saved plans made before
/// the run are refused; later commits of the same run need not move it again, since no
/// plan can be made while the run holds the state.
pub fn commit_outcomes(
    conn: &Connection,
    sync: &str,
    run_id: &str,
    outcomes: &Outcomes,
    first: bool,
) -> duckdb::Result<()> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    let result = (|| {
        crate::runs::record::append(conn, sync, run_id, &outcomes.history)?;
        if !outcomes.acknowledged.is_empty() {
            append_journal(conn, sync, run_id, &outcomes.acknowledged)?;
        }
        if !outcomes.not_delivered.is_empty() {
            merge_pending(conn, sync, &outcomes.not_delivered)?;
        }
        if first {
            conn.execute(
            "UPDATE state.syncs SET snapshot_version = snapshot_version + 1, updated_at = now()::TIMESTAMP
             WHERE sync = ?",
            [sync],
        )?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

/// Appends acknowledged changes to the journal column by column, which costs the single
/// writer less than binding every value of every row on its own.
fn append_journal(
    conn: &Connection,
    sync: &str,
    run_id: &str,
    rows: &[Acknowledged],
) -> duckdb::Result<()> {
    use crate::state::columns::{repeated, repeated_timestamp, strings};
    use duckdb::arrow::array::Int32Array;

    let now = chrono::Utc::now().timestamp_micros();
    crate::state::columns::append(conn, "journal", rows, |rows| {
        let n = rows.len();
        vec![
            repeated(sync, n),
            strings(rows.iter().map(|r| Some(r.key.as_str()))),
            strings(rows.iter().map(|r| Some(r.operation.as_str()))),
            strings(rows.iter().map(|r| Some(r.row.as_str()))),
            repeated(run_id, n),
            repeated_timestamp(now, n),
            strings(rows.iter().map(|r| Some(r.invocation_id.as_str()))),
            std::sync::Arc::new(rows.iter().map(|r| r.attempt as i32).collect::<Int32Array>()),
        ]
    })
}

/// Rows that were not delivered enter the pending set, or update their entry there
/// (operation, reason, attempts added, time of the last failure), in a few statements
/// over all of them: a statement per row (an upsert) costs a scan of the pending set
/// each, which made an apply of many failing rows quadratic.
fn merge_pending(conn: &Connection, sync: &str, rows: &[NotDelivered]) -> duckdb::Result<()> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS not_delivered (
             seq BIGINT, key VARCHAR, operation VARCHAR, reason VARCHAR, attempts INTEGER);
         DELETE FROM temp.not_delivered;",
    )?;
    let mut appender = conn.appender_to_catalog_and_db("not_delivered", "temp", "main")?;
    for (seq, row) in rows.iter().enumerate() {
        appender.append_row(duckdb::params![
            seq as i64,
            row.key,
            row.operation.as_str(),
            row.reason,
            row.attempts
        ])?;
    }
    appender.flush()?;
    drop(appender);
    // A key twice in one group (never expected) keeps its last outcome and every attempt.
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE merged_pending AS
         SELECT ?::VARCHAR AS sync, n.key, n.operation, n.reason,
                coalesce(p.attempts, 0) + n.attempts AS attempts,
                coalesce(p.first_failed_at, now()::TIMESTAMP) AS first_failed_at,
                now()::TIMESTAMP AS last_failed_at
         FROM (SELECT key, arg_max(operation, seq) AS operation, arg_max(reason, seq) AS reason,
                      sum(attempts)::INTEGER AS attempts
               FROM temp.not_delivered GROUP BY key) AS n
         LEFT JOIN state.pending AS p ON p.sync = ? AND p.key = n.key",
        [sync, sync],
    )?;
    conn.execute(
        "DELETE FROM state.pending WHERE sync = ? AND key IN (SELECT key FROM temp.merged_pending)",
        [sync],
    )?;
    conn.execute_batch(
        "INSERT INTO state.pending SELECT * FROM temp.merged_pending;
         DROP TABLE temp.merged_pending;
         DELETE FROM temp.not_delivered;",
    )
}

/// Folds the journal into the snapshot in one transaction: the last acknowledged change of
/// each key replaces its snapshot row (or removes it), those keys leave the pending set,
/// and every entry becomes an `acknowledged` event of the run history. Returns how many
/// journal entries were folded.
pub fn fold_journal(conn: &Connection) -> duckdb::Result<u64> {
    let (entries, runs): (i64, i64) =
        conn.query_row("SELECT count(*), count(DISTINCT run_id) FROM state.journal", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    if entries == 0 {
        return Ok(0);
    }
    // A run acknowledges each planned change once, so the journal of one run holds each
    // key once and is folded as it is. Entries of several runs (an apply killed before its
    // fold, then another that could not fold) keep only each key's latest change; that
    // window sorts every entry with its row text, which is too costly for the usual case.
    let latest = if runs <= 1 {
        "state.journal"
    } else {
        "(SELECT * FROM state.journal
          QUALIFY row_number() OVER (PARTITION BY sync, key ORDER BY committed_at DESC) = 1)"
    };
    // The journal keeps the row text only: its fingerprint is computed here, in bulk, by
    // the same expression the plan uses.
    let fingerprint = fingerprint_sql("row");
    let sql = format!(
        "BEGIN TRANSACTION;
        CREATE OR REPLACE TEMP VIEW folded AS SELECT * FROM {latest};
        DELETE FROM state.snapshot AS s USING temp.folded AS f
            WHERE s.sync = f.sync AND s.key = f.key;
        INSERT INTO state.snapshot
            SELECT sync, key, {fingerprint}, row, committed_at FROM temp.folded
            WHERE operation <> 'removed';
        DELETE FROM state.pending AS p USING temp.folded AS f
            WHERE p.sync = f.sync AND p.key = f.key;
        INSERT INTO state.row_events
            SELECT run_id, sync, key, operation, 'acknowledged', NULL, coalesce(attempt, 1),
                   false, invocation_id, committed_at
            FROM state.journal;
        DELETE FROM state.journal;
        DROP VIEW temp.folded;
        COMMIT;"
    );
    if let Err(error) = conn.execute_batch(&sql) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(error);
    }
    Ok(entries as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateDb;

    fn journal(conn: &Connection, key: &str, operation: &str, row: &str, run: &str, at: &str) {
        conn.execute(
            "INSERT INTO state.journal VALUES ('s', ?, ?, ?, ?, CAST(? AS TIMESTAMP), 'i', 1)",
            [key, operation, row, run, at],
        )
        .unwrap();
    }

    fn snapshot(conn: &Connection) -> Vec<(String, String)> {
        let mut statement =
            conn.prepare("SELECT key, row FROM state.snapshot ORDER BY key").unwrap();
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn the_latest_change_of_each_key_wins_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let db =
            StateDb::open(&dir.path().join("state.duckdb"), crate::state::MEMORY_LIMIT).unwrap();
        let conn = &db.conn;
        journal(conn, "1", "added", r#"{"v":1}"#, "run-a", "2026-01-01 00:00:00");
        journal(conn, "2", "added", r#"{"v":2}"#, "run-a", "2026-01-01 00:00:00");
        journal(conn, "1", "changed", r#"{"v":10}"#, "run-b", "2026-01-02 00:00:00");
        journal(conn, "2", "removed", r#"{"v":2}"#, "run-b", "2026-01-02 00:00:00");
        journal(conn, "3", "added", r#"{"v":3}"#, "run-b", "2026-01-02 00:00:00");

        assert_eq!(fold_journal(conn).unwrap(), 5);
        let expected = vec![("1".into(), r#"{"v":10}"#.into()), ("3".into(), r#"{"v":3}"#.into())];
        assert_eq!(snapshot(conn), expected);
        assert_eq!(fold_journal(conn).unwrap(), 0, "the journal is emptied");
    }

    #[test]
    fn rows_not_delivered_accumulate_attempts_in_one_pending_entry_each() {
        let dir = tempfile::tempdir().unwrap();
        let db =
            StateDb::open(&dir.path().join("state.duckdb"), crate::state::MEMORY_LIMIT).unwrap();
        let conn = &db.conn;
        let failed = |key: &str, reason: &str, attempts: u32| NotDelivered {
            key: key.into(),
            operation: crate::manifest::Operation::Added,
            reason: reason.into(),
            attempts,
        };
        let outcomes = |rows| Outcomes { not_delivered: rows, ..Outcomes::default() };
        commit_outcomes(conn, "s", "run-a", &outcomes(vec![failed("1", "HTTP 500", 3)]), true)
            .unwrap();
        let rows = vec![failed("1", "timeout", 2), failed("2", "HTTP 503", 1)];
        commit_outcomes(conn, "s", "run-b", &outcomes(rows), false).unwrap();

        let mut statement = conn
            .prepare(
                "SELECT key, reason, attempts, first_failed_at <= last_failed_at
                 FROM state.pending ORDER BY key",
            )
            .unwrap();
        let pending: Vec<(String, String, i32, bool)> = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = vec![
            ("1".to_string(), "timeout".to_string(), 5, true),
            ("2".to_string(), "HTTP 503".to_string(), 1, true),
        ];
        assert_eq!(pending, expected);
    }

    #[test]
    fn one_run_replaces_and_removes_snapshot_rows() {
        let dir = tempfile::tempdir().unwrap();
        let db =
            StateDb::open(&dir.path().join("state.duckdb"), crate::state::MEMORY_LIMIT).unwrap();
        let conn = &db.conn;
        journal(conn, "1", "added", r#"{"v":1}"#, "run-a", "2026-01-01 00:00:00");
        journal(conn, "2", "added", r#"{"v":2}"#, "run-a", "2026-01-01 00:00:00");
        fold_journal(conn).unwrap();
        conn.execute(
            "INSERT INTO state.pending VALUES ('s', '1', 'changed', 'HTTP 500', 1, now(), now())",
            [],
        )
        .unwrap();

        journal(conn, "1", "changed", r#"{"v":10}"#, "run-b", "2026-01-02 00:00:00");
        journal(conn, "2", "removed", r#"{"v":2}"#, "run-b", "2026-01-02 00:00:00");
        assert_eq!(fold_journal(conn).unwrap(), 2);
        assert_eq!(snapshot(conn), vec![("1".into(), r#"{"v":10}"#.into())]);
        let pending: i64 =
            conn.query_row("SELECT count(*) FROM state.pending", [], |r| r.get(0)).unwrap();
        assert_eq!(pending, 0, "an acknowledged key leaves the pending set");
    }
}
