//! The model stage: run a sync's SQL where the data lives and make its rows available, as
//! a relation, to the connection that plans against the state.
//!
//! [`ModelSource`] is the seam for warehouses. The DuckDB source attaches the warehouse
//! file to the planning connection, so rows never leave DuckDB; a later source (Postgres,
//! BigQuery) would stream its rows into a table of that connection instead.

pub mod example;
pub mod json;
pub mod types;

use std::path::{Path, PathBuf};

use duckdb::Connection;

use self::json::quote_literal;
use self::types::{DuckType, TypeParseError};

/// The catalog name a DuckDB warehouse is attached as.
pub const WAREHOUSE_CATALOG: &str = "warehouse";

/// A model column: its name and DuckDB type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// The type as DuckDB prints it, such as `DECIMAL(12,2)`.
    pub type_text: String,
    pub ty: DuckType,
}

/// The rows of a model, as something the planning connection can select from.
#[derive(Debug, Clone)]
pub struct ModelRelation {
    /// SQL usable after `FROM`, such as a parenthesised query.
    pub from_sql: String,
    pub columns: Vec<Column>,
}

/// Errors of the model stage; each names what the user can change.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "the warehouse `{path}` does not exist; build it, or fix `warehouse.path` in \
         rowcast.yaml"
    )]
    MissingWarehouse { path: PathBuf },
    #[error("cannot attach the warehouse `{path}`: {source}")]
    Attach { path: PathBuf, source: duckdb::Error },
    #[error("the model's SQL holds more than one statement; keep one SELECT per model")]
    SeveralStatements,
    #[error("the model's SQL failed in DuckDB: {0}")]
    Sql(duckdb::Error),
    #[error(transparent)]
    Type(#[from] TypeParseError),
}

/// A place model queries run.
pub trait ModelSource {
    /// Makes the rows of `sql` available to `conn`.
    fn relation(&self, conn: &Connection, sql: &str) -> Result<ModelRelation, ModelError>;
}

/// DuckDB as the warehouse: a database file, or none for queries that read files.
pub struct DuckDbSource;

impl DuckDbSource {
    /// Attaches the warehouse file read-only and makes it the default catalog, so model
    /// queries name its tables without a prefix. Without a file, queries run in the
    /// connection's own empty database and read CSV, Parquet or JSON files.
    pub fn attach(conn: &Connection, path: Option<&Path>) -> Result<DuckDbSource, ModelError> {
        let Some(path) = path else { return Ok(DuckDbSource) };
        if !path.exists() {
            return Err(ModelError::MissingWarehouse { path: path.to_path_buf() });
        }
        let sql = format!(
            "ATTACH {} AS {WAREHOUSE_CATALOG} (READ_ONLY); USE {WAREHOUSE_CATALOG};",
            quote_literal(&path.to_string_lossy())
        );
        conn.execute_batch(&sql)
            .map_err(|source| ModelError::Attach { path: path.to_path_buf(), source })?;
        Ok(DuckDbSource)
    }
}

impl ModelSource for DuckDbSource {
    fn relation(&self, conn: &Connection, sql: &str) -> Result<ModelRelation, ModelError> {
        let query = single_statement(sql)?;
        // A newline before the closing parenthesis keeps a trailing `-- comment` harmless.
        let from_sql = format!("(\n{query}\n)");
        let columns = describe(conn, &from_sql)?;
        Ok(ModelRelation { from_sql, columns })
    }
}

/// The columns of a relation, in order.
pub fn describe(conn: &Connection, from_sql: &str) -> Result<Vec<Column>, ModelError> {
    let mut statement = conn
        .prepare(&format!(
            "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {from_sql})"
        ))
        .map_err(ModelError::Sql)?;
    let rows = statement
        .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
        .map_err(ModelError::Sql)?;
    let mut columns = Vec::new();
    for row in rows {
        let (name, type_text) = row.map_err(ModelError::Sql)?;
        let ty = DuckType::parse(&type_text)?;
        columns.push(Column { name, type_text, ty });
    }
    Ok(columns)
}

/// The query without trailing semicolons; more than one statement is refused.
fn single_statement(sql: &str) -> Result<&str, ModelError> {
    let trimmed = sql.trim().trim_end_matches(';').trim_end();
    if trimmed.contains(';') && !semicolons_are_quoted(trimmed) {
        return Err(ModelError::SeveralStatements);
    }
    Ok(trimmed)
}

/// Whether every `;` sits inside a string literal or a comment.
fn semicolons_are_quoted(sql: &str) -> bool {
    let mut in_string = false;
    for line in sql.lines() {
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' => in_string = !in_string,
                '-' if !in_string && chars.peek() == Some(&'-') => break,
                ';' if !in_string => return false,
                _ => {}
            }
        }
    }
    true
}
