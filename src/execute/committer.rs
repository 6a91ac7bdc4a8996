//! The single writer of an apply. Invocation outcomes arrive over a channel; whatever has
//! queued while the previous transaction committed is committed together in the next one
//! (group commit), so the state keeps up with thousands of invocations a second. Under
//! load, transactions start at most every [`GATHER`], so each carries more outcomes and
//! the writer leaves the processor to the invocations; an outcome waits at most that
//! long, plus one transaction, before it is durable.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use duckdb::Connection;

use crate::state::commit::{commit_outcomes, Outcomes};

/// The shortest time between the starts of two transactions. Each transaction costs about
/// as much as a few hundred acknowledged rows, whatever its size; a kill loses at most the
/// outcomes of this window, which the next run sends again.
pub const GATHER: Duration = Duration::from_millis(5);

/// A running committer.
pub struct Committer {
    sender: Option<mpsc::Sender<Outcomes>>,
    thread: Option<JoinHandle<duckdb::Result<()>>>,
}

impl Committer {
    /// Starts the writer on its own connection and thread.
    pub fn start(conn: Connection, sync: String, run_id: String) -> std::io::Result<Committer> {
        // TODO: this queue is unbounded; when the writer falls behind, outcomes pile up in
        // memory. It is one suspect for the growth of an apply's peak memory with the
        // model size that BENCHMARKS.md reports; a bound would make the dispatcher wait.
        let (sender, receiver) = mpsc::channel::<Outcomes>();
        let thread = std::thread::Builder::new().name("committer".into()).spawn(move || {
            let mut last_start: Option<Instant> = None;
            let mut first_commit = true;
            while let Ok(mut group) = receiver.recv() {
                if let Some(wait) = last_start.and_then(|t| GATHER.checked_sub(t.elapsed())) {
                    std::thread::sleep(wait);
                }
                while let Ok(more) = receiver.try_recv() {
                    group.acknowledged.extend(more.acknowledged);
                    group.not_delivered.extend(more.not_delivered);
                    group.history.extend(more.history);
                }
                last_start = Some(Instant::now());
                commit_outcomes(&conn, &sync, &run_id, &group, first_commit)?;
                first_commit = false;
            }
            Ok(())
        })?;
        Ok(Committer { sender: Some(sender), thread: Some(thread) })
    }

    /// Queues outcomes; false when the writer has stopped (its error comes from `finish`).
    pub fn send(&self, outcomes: Outcomes) -> bool {
        self.sender.as_ref().is_some_and(|s| s.send(outcomes).is_ok())
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
