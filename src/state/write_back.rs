//! Where the state is written back to, when it lives somewhere other than the local disk.
//! The committer calls [`WriteBack::after_commit`] after each transaction; the backend
//! decides whether a write-back is due (the `gcs` backend: every `write_back_every`).

use duckdb::Connection;

/// A remote copy of the state that committed transactions must reach.
pub trait WriteBack: Send + Sync {
    /// Called on the committer's connection after each transaction; writes the state
    /// back when it is due. An error stops the committer, and so the deliveries.
    fn after_commit(&self, conn: &Connection) -> anyhow::Result<()>;
}
