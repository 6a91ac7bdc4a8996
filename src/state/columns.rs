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

/// Appends `columns`, in the order of the table's columns, to `state.<table>`.
pub fn append(conn: &Connection, table: &str, columns: Vec<ArrayRef>) -> duckdb::Result<()> {
    let named = columns.into_iter().enumerate().map(|(i, column)| (format!("c{i}"), column));
    let batch = RecordBatch::try_from_iter(named)
        .map_err(|error| duckdb::Error::ToSqlConversionFailure(Box::new(error)))?;
    let mut appender = conn.appender_to_catalog_and_db(table, "state", "main")?;
    appender.append_record_batch(batch)?;
    appender.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateDb;
    use duckdb::arrow::array::Int32Array;

    #[test]
    fn columns_land_in_order_with_their_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let db =
            StateDb::open(&dir.path().join("state.duckdb"), crate::state::MEMORY_LIMIT).unwrap();
        let conn = &db.conn;
        conn.execute_batch("CREATE TABLE state.t (s VARCHAR, n INTEGER, t TIMESTAMP, o VARCHAR)")
            .unwrap();
        let columns = vec![
            repeated("sync", 2),
            Arc::new(Int32Array::from(vec![Some(7), None])) as ArrayRef,
            repeated_timestamp(1_700_000_000_000_000, 2),
            strings([None, Some("why")].into_iter()),
        ];
        append(conn, "t", columns).unwrap();

        let mut statement =
            conn.prepare("SELECT s, n, epoch_us(t), o FROM state.t ORDER BY n NULLS LAST").unwrap();
        let rows: Vec<(String, Option<i32>, i64, Option<String>)> = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let at = 1_700_000_000_000_000;
        let expected = vec![
            ("sync".to_string(), Some(7), at, None),
            ("sync".to_string(), None, at, Some("why".to_string())),
        ];
        assert_eq!(rows, expected);
    }
}
