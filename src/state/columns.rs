//! Appending to a state table column by column. The single writer of an apply appends a
//! journal entry and an invocation record for every invocation; handing DuckDB whole
//! Arrow columns costs it less than binding each value of each row through the appender
//! one call at a time, and the writer's share of the processor is what the invocations
//! do not get.

use std::sync::Arc;

use duckdb::arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;

/// A text column.
pub fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

/// A text column of `n` copies of `value`.
pub fn repeated(value: &str, n: usize) -> ArrayRef {
    strings(std::iter::repeat_n(Some(value), n))
}

/// A timestamp column, in microseconds since the Unix epoch.
pub fn timestamps(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter_values(values))
}

/// A timestamp column of `n` copies of `micros`.
pub fn repeated_timestamp(micros: i64, n: usize) -> ArrayRef {
    timestamps(std::iter::repeat_n(micros, n))
}

/// How many items are turned into columns at a time: DuckDB's vector size, so the Arrow
/// copy of a large group of outcomes (whose rows may be large) is never held whole.
const CHUNK: usize = 2048;

/// Appends `items` to `state.<table>`, turned into columns (in the order of the table's
/// columns) by `columns`, a chunk at a time.
pub fn append<T>(
    conn: &Connection,
    table: &str,
    items: &[T],
    columns: impl Fn(&[T]) -> Vec<ArrayRef>,
) -> duckdb::Result<()> {
    let mut appender = conn.appender_to_catalog_and_db(table, "state", "main")?;
    for chunk in items.chunks(CHUNK) {
        let named = columns(chunk).into_iter().enumerate().map(|(i, c)| (format!("c{i}"), c));
        let batch = RecordBatch::try_from_iter(named)
            .map_err(|error| duckdb::Error::ToSqlConversionFailure(Box::new(error)))?;
        appender.append_record_batch(batch)?;
    }
    appender.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateDb;
    use duckdb::arrow::array::Int32Array;

    #[test]
    fn columns_land_in_order_with_their_nulls_over_several_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let db =
            StateDb::open(&dir.path().join("state.duckdb"), crate::state::MEMORY_LIMIT).unwrap();
        let conn = &db.conn;
        conn.execute_batch("CREATE TABLE state.t (s VARCHAR, n INTEGER, t TIMESTAMP, o VARCHAR)")
            .unwrap();
        // One more item than a chunk holds, so a second chunk is appended too.
        let items: Vec<Option<i32>> =
            std::iter::once(Some(7)).chain(std::iter::repeat_n(None, CHUNK)).collect();
        append(conn, "t", &items, |chunk| {
            let n = chunk.len();
            let reasons = chunk.iter().map(|v| if v.is_some() { None } else { Some("why") });
            vec![
                repeated("sync", n),
                Arc::new(chunk.iter().copied().collect::<Int32Array>()) as ArrayRef,
                repeated_timestamp(1_700_000_000_000_000, n),
                strings(reasons),
            ]
        })
        .unwrap();

        let mut statement = conn
            .prepare(
                "SELECT s, n, epoch_us(t), o, count(*) FROM state.t
                 GROUP BY ALL ORDER BY n NULLS LAST",
            )
            .unwrap();
        type Row = (String, Option<i32>, i64, Option<String>, i64);
        let rows: Vec<Row> = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let at = 1_700_000_000_000_000;
        let expected = vec![
            ("sync".to_string(), Some(7), at, None, 1),
            ("sync".to_string(), None, at, Some("why".to_string()), CHUNK as i64),
        ];
        assert_eq!(rows, expected);
    }
}
