//! Request bodies, written straight from the rows' JSON text (already produced by DuckDB
//! with the one JSON mapping), so rows are never parsed and re-serialized on the way out.
//! The shape is [`crate::contract::Payload`]; a test checks bodies against its schema.

use super::batch::PlannedRow;
use crate::manifest::Operation;

/// Who is sending: the same for every invocation of a sync in a run.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub sync: String,
    pub run_id: String,
    pub primary_key_column: String,
    /// Batch mode (`rows`) rather than per-row mode (`row`).
    pub batch_mode: bool,
}

/// Bytes a row adds beside its own JSON: separators, its idempotency key.
pub fn row_overhead(row: &PlannedRow) -> usize {
    row.idempotency_key.len() + 8
}

impl Envelope {
    /// Bytes of a body besides its rows.
    pub fn size(&self) -> usize {
        self.sync.len() + self.run_id.len() + self.primary_key_column.len() + 220
    }

    /// The JSON body of one invocation of `rows`, which share one operation.
    pub fn body(&self, rows: &[PlannedRow], invocation_id: &str, attempt: u32) -> Vec<u8> {
        let operation = rows.first().map_or(Operation::Added, |r| r.operation);
        let mut out =
            String::with_capacity(self.size() + rows.iter().map(PlannedRow::size).sum::<usize>());
        out.push_str("{\"operation\":\"");
        out.push_str(operation.as_str());
        out.push_str("\",\"primary_key_column\":");
        out.push_str(&json_string(&self.primary_key_column));
        let with_previous = operation == Operation::Changed;
        if self.batch_mode {
            out.push_str(",\"rows\":[");
            join(&mut out, rows.iter().map(|r| r.row.as_str()));
            out.push(']');
            if with_previous {
                out.push_str(",\"previous_rows\":[");
                join(&mut out, rows.iter().map(|r| r.previous.as_deref().unwrap_or("{}")));
                out.push(']');
            }
        } else {
            out.push_str(",\"row\":");
            out.push_str(&rows[0].row);
            if with_previous {
                out.push_str(",\"previous_row\":");
                out.push_str(rows[0].previous.as_deref().unwrap_or("{}"));
            }
        }
        out.push_str(",\"metadata\":{\"sync\":");
        out.push_str(&json_string(&self.sync));
        out.push_str(",\"run_id\":\"");
        out.push_str(&self.run_id);
        out.push_str("\",\"invocation_id\":\"");
        out.push_str(invocation_id);
        out.push_str("\",\"attempt\":");
        out.push_str(&attempt.to_string());
        if self.batch_mode {
            out.push_str(",\"idempotency_keys\":[");
            let quoted: Vec<String> =
                rows.iter().map(|r| format!("\"{}\"", r.idempotency_key)).collect();
            join(&mut out, quoted.iter().map(String::as_str));
            out.push(']');
        } else {
            out.push_str(",\"idempotency_key\":\"");
            out.push_str(&rows[0].idempotency_key);
            out.push('"');
        }
        out.push_str("}}");
        out.into_bytes()
    }
}

fn join<'a>(out: &mut String, items: impl Iterator<Item = &'a str>) {
    for (index, item) in items.enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes")
}
