//! The single writer of an apply. Invocation outcomes arrive over a bounded channel;
//! whatever has queued while the previous transaction committed is committed together in
//! the next one (group commit), so the state keeps up with thousands of invocations a
//! second. Transactions start at least [`GATHER`] apart, and further apart when they take
//! long (up to [`GATHER_MAX`]), so the writer is busy at most a fifth of the time and
//! leaves the processor to the invocations; an outcome waits at most that window, plus
//! one transaction, before it is durable.
//!
//! The channel holds at most about [`QUEUED_ROWS`] rows: when the writer falls behind,
//! the dispatcher waits to hand over its next outcome, and so starts no new invocation,
//! which keeps an apply's memory bounded by the work in flight.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use duckdb::Connection;
use tokio::sync::mpsc;

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

/// A running committer.
pub struct Committer {
    sender: Option<mpsc::Sender<Outcomes>>,
    thread: Option<JoinHandle<duckdb::Result<()>>>,
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
        let capacity = (QUEUED_ROWS / batch_rows.max(1)).max(16);
        let (sender, mut receiver) = mpsc::channel::<Outcomes>(capacity);
        let thread = std::thread::Builder::new().name("committer".into()).spawn(move || {
            let mut last_start: Option<Instant> = None;
            let mut gather = GATHER;
            let mut first_commit = true;
            while let Some(mut group) = receiver.blocking_recv() {
                if let Some(wait) = last_start.and_then(|t| gather.checked_sub(t.elapsed())) {
                    std::thread::sleep(wait);
                }
                // Gather what has queued, but no more than the queue holds: the
                // dispatcher refills the queue as it drains, and an unbounded group
                // would hold every outcome of a slow transaction's window in memory.
                while group.rows() < QUEUED_ROWS {
                    let Ok(more) = receiver.try_recv() else { break };
                    group.acknowledged.extend(more.acknowledged);
                    group.not_delivered.extend(more.not_delivered);
                    group.history.extend(more.history);
                }
                let started = Instant::now();
                last_start = Some(started);
                commit_outcomes(&conn, &sync, &run_id, &group, first_commit)?;
                gather = window(started.elapsed());
                first_commit = false;
                if let Some(Err(error)) = write_back.as_ref().map(|w| w.after_commit(&conn)) {
                    // The deliveries see the writer stop; the apply's last write-back
                    // reports the cause.
                    tracing::error!(
                        sync,
                        error = format!("{error:#}"),
                        "cannot write the state back"
                    );
                    break;
                }
            }
            Ok(())
        })?;
        Ok(Committer { sender: Some(sender), thread: Some(thread) })
    }

    /// Queues outcomes, waiting while the queue is full; false when the writer has
    /// stopped (its error comes from `finish`).
    pub async fn send(&self, outcomes: Outcomes) -> bool {
        match &self.sender {
            Some(sender) => sender.send(outcomes).await.is_ok(),
            None => false,
        }
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

impl Drop for Committer {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
