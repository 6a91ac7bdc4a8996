//! The example warehouse the repository ships as CSV files, built into a DuckDB file so
//! the example syncs have a real warehouse to read.

use std::path::{Path, PathBuf};

use anyhow::Context;
use duckdb::Connection;

/// Where the example warehouse is built, relative to the project folder.
pub const WAREHOUSE: &str = "warehouse/shop.duckdb";

/// Runs `warehouse/build.sql` of the project at `root` into a fresh `warehouse/shop.duckdb`.
/// The script reads its CSV files relative to `root`.
pub fn build_warehouse(root: &Path) -> anyhow::Result<PathBuf> {
    let script_path = root.join("warehouse/build.sql");
    let script = std::fs::read_to_string(&script_path)
        .with_context(|| format!("cannot read `{}`", script_path.display()))?;
    let path = root.join(WAREHOUSE);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(path.with_extension("duckdb.wal"));

    let conn =
        Connection::open(&path).with_context(|| format!("cannot create `{}`", path.display()))?;
    let root_literal = super::json::quote_literal(&root.to_string_lossy());
    conn.execute_batch(&format!("SET file_search_path = {root_literal};"))?;
    conn.execute_batch(&script).with_context(|| format!("`{}` failed", script_path.display()))?;
    Ok(path)
}

/// Applies `warehouse/next_day.sql` to the example warehouse: a day of changes.
pub fn next_day(root: &Path) -> anyhow::Result<PathBuf> {
    let script_path = root.join("warehouse/next_day.sql");
    let script = std::fs::read_to_string(&script_path)
        .with_context(|| format!("cannot read `{}`", script_path.display()))?;
    let path = root.join(WAREHOUSE);
    let conn =
        Connection::open(&path).with_context(|| format!("cannot open `{}`", path.display()))?;
    conn.execute_batch(&script).with_context(|| format!("`{}` failed", script_path.display()))?;
    Ok(path)
}
