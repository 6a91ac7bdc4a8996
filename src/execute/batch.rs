//! The batcher: reads a sync's rows to invoke from the changes table in chunks and groups
//! them into invocations of one operation, up to the batch size and the request size
//! limit. It runs on its own thread with its own connection and hands batches over a
//! bounded channel, so rows are read only as fast as they are sent. Batches travel in
//! groups of at least [`HANDOFF_ROWS`] rows, so with one row per invocation the two
//! threads do not wake each other for every row.

use duckdb::arrow::array::{Array, AsArray};
use duckdb::Connection;
use tokio::sync::mpsc;

use crate::manifest::Operation;
use crate::plan::diff::CHANGES_TABLE;

use super::payload::row_overhead;

/// One row change to send.
#[derive(Debug, Clone)]
pub struct PlannedRow {
    pub key: String,
    pub operation: Operation,
    /// The row's JSON text; for `removed`, its last acknowledged values.
    pub row: String,
    /// For `changed`, the JSON text of the values acknowledged before.
    pub previous: Option<String>,
    pub idempotency_key: String,
}

impl PlannedRow {
    /// Bytes this row adds to a request body.
    pub fn size(&self) -> usize {
        self.row.len() + self.previous.as_ref().map_or(0, String::len) + row_overhead(self)
    }
}

/// What the batcher hands the dispatcher.
#[derive(Debug)]
pub enum Batched {
    /// Rows to send in one invocation.
    Batch(Vec<PlannedRow>),
    /// A row larger than the request size limit on its own: it is rejected, never cut.
    TooLarge(PlannedRow, usize),
}

/// The fewest rows handed to the dispatcher at once (but the last group).
pub const HANDOFF_ROWS: usize = 256;

/// The most rows the channel to the dispatcher holds when invocations are large.
pub const HANDOFF_MAX_ROWS: usize = 16_384;

/// How many groups the channel to the dispatcher holds: about twice `concurrency`
/// invocations, however many rows a group carries, but no more than about
/// [`HANDOFF_MAX_ROWS`] rows. The batcher fills a free place in well under the time an
/// invocation takes, so invocations of many rows need fewer waiting.
pub fn handoff_capacity(concurrency: usize, batch_rows: usize) -> usize {
    let batch_rows = batch_rows.max(1);
    let per_group = HANDOFF_ROWS.div_ceil(batch_rows);
    let invocations = (concurrency * 2).min(HANDOFF_MAX_ROWS.div_ceil(batch_rows));
    invocations.div_ceil(per_group).max(2)
}

/// Batches waiting to be handed over as one group.
struct Outbox {
    out: mpsc::Sender<Vec<Batched>>,
    ready: Vec<Batched>,
    rows: usize,
}

impl Outbox {
    /// Queues a batch; false when the dispatcher has gone.
    fn push(&mut self, batched: Batched) -> bool {
        self.rows += match &batched {
            Batched::Batch(rows) => rows.len(),
            Batched::TooLarge(..) => 1,
        };
        self.ready.push(batched);
        self.rows < HANDOFF_ROWS || self.flush()
    }

    fn flush(&mut self) -> bool {
        self.rows = 0;
        self.ready.is_empty() || self.out.blocking_send(std::mem::take(&mut self.ready)).is_ok()
    }
}

/// How rows are grouped.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub rows: usize,
    pub max_bytes: Option<usize>,
    /// Bytes of a request besides its rows (operation, metadata).
    pub envelope: usize,
}

/// Streams the rows of `sync` to invoke, operation by operation, in batches.
pub fn read_batches(
    conn: Connection,
    sync: String,
    limits: BatchLimits,
    out: mpsc::Sender<Vec<Batched>>,
) -> duckdb::Result<()> {
    let mut outbox = Outbox { out, ready: Vec::new(), rows: 0 };
    for operation in Operation::ALL {
        let mut statement = conn.prepare(&format!(
            "SELECT key, row, previous_row, idempotency_key
             FROM {CHANGES_TABLE} WHERE sync = ? AND invoke AND operation = ?"
        ))?;
        let mut batch: Vec<PlannedRow> = Vec::with_capacity(limits.rows);
        let mut bytes = limits.envelope;
        for chunk in statement.stream_arrow([sync.as_str(), operation.as_str()])? {
            let chunk = chunk?;
            let text = |column: usize| chunk.column(column).as_string::<i32>().clone();
            let (keys, rows, previous, idempotency) = (text(0), text(1), text(2), text(3));
            for index in 0..chunk.num_rows() {
                let row = PlannedRow {
                    key: keys.value(index).to_string(),
                    operation,
                    row: rows.value(index).to_string(),
                    previous: (!previous.is_null(index)).then(|| previous.value(index).to_string()),
                    idempotency_key: idempotency.value(index).to_string(),
                };
                let size = row.size();
                if let Some(max) = limits.max_bytes {
                    if limits.envelope + size > max {
                        if !outbox.push(Batched::TooLarge(row, limits.envelope + size)) {
                            return Ok(());
                        }
                        continue;
                    }
                    if !batch.is_empty() && bytes + size > max {
                        if !outbox.push(Batched::Batch(std::mem::take(&mut batch))) {
                            return Ok(());
                        }
                        bytes = limits.envelope;
                    }
                }
                bytes += size;
                batch.push(row);
                if batch.len() >= limits.rows {
                    if !outbox.push(Batched::Batch(std::mem::take(&mut batch))) {
                        return Ok(());
                    }
                    bytes = limits.envelope;
                }
            }
        }
        if !batch.is_empty() && !outbox.push(Batched::Batch(batch)) {
            return Ok(());
        }
    }
    outbox.flush();
    Ok(())
}
