//! The single writer of an apply. Invocation outcomes arrive over a bounded channel;
//! whatever has queued while the previous transaction committed is committed together in
//! the next one (group commit), so the state keeps up with thousands of invocations a
//! second. Transactions start at least [`GATHER`] apart, and further apart when they take
//! long (up to [`GATHER_MAX`]), so the writer is busy at most a fifth of the time and
//! leaves the processor to the invocations; an outcome waits at most that window, plus
//! one transaction, before it is durable.
//!
//! The queue holds at most about [`QUEUED_ROWS`] rows and [`QUEUED_BYTES`] bytes of
//! outcomes: when the writer falls behind, the dispatcher waits to hand over its next outcome,
//! and so starts no new invocation, which keeps an apply's memory bounded by the work in
//! flight, however large its rows.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use duckdb::Connection;
use tokio::sync::{mpsc, Semaphore};

use crate::state::commit::{commit_outcomes, Outcomes};
use crate::state::write_back::WriteBack;

/// The shortest time between the starts of two transactions. Each transaction has a cost
/// that does not depend on its size (planning each appender's insert, writing the log);
/// a kill loses at most the outcomes of this window, which the next run sends again.
pub const GATHER: Duration = Duration::from_millis(5);

/// The longest time between the starts of two transactions under load. Each transaction
/// has a cost that does not depend on its size (every appender's flush is planned as an
/// insert; the commit syncs the log), so under tens of thousands of invocations a second
/// a wider window leaves more of the processor to the invocations.
pub const GATHER_MAX: Duration = Duration::from_millis(100);

/// The window after a transaction that took `took`: five times as long, within bounds.
fn window(took: Duration) -> Duration {
    (took * 5).clamp(GATHER, GATHER_MAX)
}

/// About how many rows of outcomes may wait for the writer: enough for the widest window
/// of one-row invocations, so the queue does not stall the dispatcher while the writer
/// merely waits.
pub const QUEUED_ROWS: usize = 65_536;

/// About how many bytes of outcomes (row texts, keys, reasons, kept bodies) may wait for
/// the writer. Rows of a few hundred bytes reach [`QUEUED_ROWS`] first; large rows (JSON
/// documents of tens of kilobytes) reach this.
pub const QUEUED_BYTES: usize = 64 << 20;

/// A running committer.
pub struct Committer {
    sender: Option<mpsc::Sender<(Outcomes, u32)>>,
    thread: Option<JoinHandle<duckdb::Result<()>>>,
    /// Bytes that may still be queued: taken by `send`, given back once committed.
    budget: Arc<Semaphore>,
    budget_bytes: u32,
}

impl Committer {
    /// Starts the writer on its own connection and thread, for invocations of up to
    /// `batch_rows` rows each. `write_back`, when the state lives elsewhere, is told of
    /// each transaction, and an error of its stops the writer.
    pub fn start(
        conn: Connection,
        sync: String,
        run_id: String,
        batch_rows: usize,
        write_back: Option<Arc<dyn WriteBack>>,
    ) -> std::io::Result<Committer> {
        Committer::with_budget(conn, sync, run_id, batch_rows, QUEUED_BYTES, write_back)
    }

    /// [`Committer::start`] with `queued_bytes` in place of [`QUEUED_BYTES`].
    pub fn with_budget(
        conn: Connection,
        sync: String,
        run_id: String,
        batch_rows: usize,
        queued_bytes: usize,
        write_back: Option<Arc<dyn WriteBack>>,
    ) -> std::io::Result<Committer> {
        let capacity = (QUEUED_ROWS / batch_rows.max(1)).max(16);
        let (sender, mut receiver) = mpsc::channel::<(Outcomes, u32)>(capacity);
        let budget_bytes = u32::try_from(queued_bytes).unwrap_or(u32::MAX).max(1);
        let budget = Arc::new(Semaphore::new(budget_bytes as usize));
        let released = budget.clone();
        let thread = std::thread::Builder::new().name("committer".into()).spawn(move || {
            let result = write(&conn, &sync, &run_id, &mut receiver, &released, write_back);
            // A writer that stopped takes no more outcomes: a sender waiting for the
            // budget learns it at once instead of waiting for bytes never given back.
            released.close();
            result
        })?;
        Ok(Committer { sender: Some(sender), thread: Some(thread), budget, budget_bytes })
    }

    /// Queues outcomes, waiting while the queue is full; false when the writer has
    /// stopped (its error comes from `finish`). Outcomes larger than the whole byte budget
    /// take all of it, and so wait for the queue to empty, then go alone.
    pub async fn send(&self, outcomes: Outcomes) -> bool {
        let Some(sender) = &self.sender else { return false };
        let bytes = u32::try_from(outcomes.bytes()).unwrap_or(u32::MAX).min(self.budget_bytes);
        match self.budget.acquire_many(bytes).await {
            Ok(permit) => permit.forget(),
            Err(_) => return false,
        }
        sender.send((outcomes, bytes)).await.is_ok()
    }

    /// Waits until everything queued is committed.
    pub fn finish(mut self) -> duckdb::Result<()> {
        self.sender.take();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(duckdb::Error::ExecuteReturnedResults),
            None => Ok(()),
        }
    }
}

/// The writer's loop: takes outcomes off the queue and commits them in groups, until the
/// queue is closed or a write-back fails.
fn write(
    conn: &Connection,
    sync: &str,
    run_id: &str,
    receiver: &mut mpsc::Receiver<(Outcomes, u32)>,
    budget: &Semaphore,
    write_back: Option<Arc<dyn WriteBack>>,
) -> duckdb::Result<()> {
    let mut last_start: Option<Instant> = None;
    let mut gather = GATHER;
    let mut first_commit = true;
    while let Some((mut group, bytes)) = receiver.blocking_recv() {
        if let Some(wait) = last_start.and_then(|t| gather.checked_sub(t.elapsed())) {
            std::thread::sleep(wait);
        }
        // Gather what has queued, but no more than the queue holds: the dispatcher
        // refills the queue as it drains, and an unbounded group would hold every
        // outcome of a slow transaction's window in memory.
        let mut taken = bytes as usize;
        while group.rows() < QUEUED_ROWS {
            let Ok((more, bytes)) = receiver.try_recv() else { break };
            group.acknowledged.extend(more.acknowledged);
            group.not_delivered.extend(more.not_delivered);
            group.history.extend(more.history);
            taken += bytes as usize;
        }
        let started = Instant::now();
        last_start = Some(started);
        commit_outcomes(conn, sync, run_id, &group, first_commit)?;
        drop(group);
        budget.add_permits(taken);
        gather = window(started.elapsed());
        first_commit = false;
        if let Some(Err(error)) = write_back.as_ref().map(|w| w.after_commit(conn)) {
            // The deliveries see the writer stop; the apply's last write-back reports
            // the cause.
            tracing::error!(sync, error = format!("{error:#}"), "cannot write the state back");
            break;
        }
    }
    Ok(())
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Operation;
    use crate::state::commit::Acknowledged;
    use crate::state::StateDb;

    fn acknowledged(key: usize, bytes: usize) -> Outcomes {
        let row = Acknowledged {
            key: key.to_string(),
            operation: Operation::Added,
            row: "x".repeat(bytes),
            invocation_id: "i".into(),
            attempt: 1,
        };
        Outcomes { acknowledged: vec![row], ..Outcomes::default() }
    }

    fn journal_rows(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM state.journal", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_small_byte_budget_still_commits_everything_even_outcomes_larger_than_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("s.duckdb"), crate::state::MEMORY_LIMIT).unwrap();
        let conn = db.conn.try_clone().unwrap();
        let committer =
            Committer::with_budget(conn, "s".into(), "run".into(), 1, 100, None).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let sends = async {
                for key in 0..40 {
                    // Every fifth outcome is ten times the whole budget.
                    let bytes = if key % 5 == 0 { 1000 } else { 30 };
                    assert!(committer.send(acknowledged(key, bytes)).await);
                }
            };
            tokio::time::timeout(Duration::from_secs(60), sends)
                .await
                .expect("no send waits forever");
        });
        committer.finish().unwrap();
        assert_eq!(journal_rows(&db.conn), 40);
    }

    struct Failing;

    impl WriteBack for Failing {
        fn after_commit(&self, _: &Connection) -> anyhow::Result<()> {
            anyhow::bail!("the bucket is gone")
        }
    }

    #[test]
    fn a_writer_that_stopped_refuses_senders_waiting_for_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("s.duckdb"), crate::state::MEMORY_LIMIT).unwrap();
        let conn = db.conn.try_clone().unwrap();
        let failing: Arc<dyn WriteBack> = Arc::new(Failing);
        let committer =
            Committer::with_budget(conn, "s".into(), "run".into(), 1, 100, Some(failing)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let refused = runtime.block_on(async {
            let sends = async {
                // The first commit's write-back fails and stops the writer; the budget
                // that outcomes hold is never given back, so later sends must be refused,
                // not left waiting.
                for key in 0..10 {
                    if !committer.send(acknowledged(key, 60)).await {
                        return true;
                    }
                }
                false
            };
            tokio::time::timeout(Duration::from_secs(60), sends)
                .await
                .expect("no send waits forever")
        });
        assert!(refused, "a send after the writer stopped is refused");
        committer.finish().unwrap();
        assert_eq!(journal_rows(&db.conn), 1, "only the first outcome was committed");
    }
}
