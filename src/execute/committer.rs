//! The single writer of an apply. Invocation outcomes arrive over a channel; whatever has
//! queued while the previous transaction committed is committed together in the next one
//! (group commit), so the state keeps up with thousands of invocations a second and an
//! outcome waits at most one transaction before it is durable.

use std::sync::mpsc;
use std::thread::JoinHandle;

use duckdb::Connection;

use crate::state::commit::{commit_outcomes, Outcomes};

/// A running committer.
pub struct Committer {
    sender: Option<mpsc::Sender<Outcomes>>,
    thread: Option<JoinHandle<duckdb::Result<()>>>,
}

impl Committer {
    /// Starts the writer on its own connection.
    pub fn start(conn: Connection, sync: String, run_id: String) -> Committer {
        let (sender, receiver) = mpsc::channel::<Outcomes>();
        let thread = std::thread::spawn(move || {
            while let Ok(first) = receiver.recv() {
                let mut group = first;
                while let Ok(more) = receiver.try_recv() {
                    group.acknowledged.extend(more.acknowledged);
                    group.not_delivered.extend(more.not_delivered);
                }
                commit_outcomes(&conn, &sync, &run_id, &group)?;
            }
            Ok(())
        });
        Committer { sender: Some(sender), thread: Some(thread) }
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
