//! Builds the example warehouse `warehouse/shop.duckdb` from the CSV files in
//! `warehouse/data`, by running `warehouse/build.sql` in DuckDB. With `--next-day`, it
//! instead applies `warehouse/next_day.sql` to the existing warehouse: a day of changes
//! for the demo to send.
//!
//! Usage: `cargo run --release --example build_warehouse -- [PROJECT_DIR] [--next-day]`.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let next_day = args.iter().any(|a| a == "--next-day");
    let root =
        args.iter().find(|a| !a.starts_with("--")).map(PathBuf::from).unwrap_or_else(|| ".".into());
    let path = if next_day {
        rowcast::model::example::next_day(&root)?
    } else {
        rowcast::model::example::build_warehouse(&root)?
    };
    println!("{} {}", if next_day { "changed" } else { "built" }, path.display());
    Ok(())
}
