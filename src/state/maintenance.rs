//! Maintenance of one sync's tracking, for `rowcast reset` and `rowcast resync`. Both
//! run under the state lock, each in one transaction, and leave the run history alone.

use duckdb::Connection;

use crate::model::json::quote_literal;

/// What a sync's tracking holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    /// Rows in the snapshot: what the function acknowledged.
    pub snapshot: u64,
    /// Rows rejected or failed, sent again by the next apply.
    pub pending: u64,
    /// Whether the sync has run at all (its next run is not an initial sync).
    pub known: bool,
}

/// What `sync`'s tracking holds.
pub fn tracked(conn: &Connection, sync: &str) -> duckdb::Result<Tracked> {
    conn.query_row(
        "SELECT (SELECT count(*) FROM state.snapshot WHERE sync = $1),
                (SELECT count(*) FROM state.pending WHERE sync = $1),
                (SELECT count(*) > 0 FROM state.syncs WHERE sync = $1)",
        [sync],
        |row| {
            Ok(Tracked {
                snapshot: row.get::<_, i64>(0)? as u64,
                pending: row.get::<_, i64>(1)? as u64,
                known: row.get(2)?,
            })
        },
    )
}

/// Forgets `sync`'s snapshot, pending rows and version, so its next plan is an initial
/// sync, as if it had never run.
pub fn reset(conn: &Connection, sync: &str) -> duckdb::Result<()> {
    let s = quote_literal(sync);
    transaction(
        conn,
        &format!(
            "DELETE FROM state.snapshot WHERE sync = {s};
             DELETE FROM state.pending WHERE sync = {s};
             DELETE FROM state.journal WHERE sync = {s};
             DELETE FROM state.syncs WHERE sync = {s};"
        ),
    )
}

/// Empties `sync`'s snapshot and pending rows but keeps it known, with a new snapshot
/// version: its next plan has every model row as `added` and no `removed` row (an empty
/// snapshot has nothing to remove), and saved plans made before are refused.
pub fn resync(conn: &Connection, sync: &str) -> duckdb::Result<()> {
    let s = quote_literal(sync);
    let now = format!("make_timestamp({})", chrono::Utc::now().timestamp_micros());
    transaction(
        conn,
        &format!(
            "DELETE FROM state.snapshot WHERE sync = {s};
             DELETE FROM state.pending WHERE sync = {s};
             DELETE FROM state.journal WHERE sync = {s};
             INSERT INTO state.syncs (sync, snapshot_version, initialized_at, updated_at)
                 VALUES ({s}, 1, {now}, {now})
                 ON CONFLICT (sync) DO UPDATE SET
                     snapshot_version = snapshot_version + 1,
                     updated_at = excluded.updated_at;"
        ),
    )
}

fn transaction(conn: &Connection, sql: &str) -> duckdb::Result<()> {
    if let Err(error) = conn.execute_batch(&format!("BEGIN TRANSACTION; {sql} COMMIT;")) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(error);
    }
    Ok(())
}
