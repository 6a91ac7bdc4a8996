//! Benchmark of `rowcast plan` against a bare DuckDB FULL OUTER JOIN of the same two
//! tables (the model table and the committed snapshot), measured side by side in one run.
//!
//! For each model size it builds a warehouse table, commits every row to the snapshot,
//! changes 10% of the rows, then alternates `rowcast plan` and two bare joins, each in its
//! own process, recording wall time and peak resident memory (wait4's ru_maxrss). The
//! bare joins run under the settings rowcast uses (spill folder, insertion order) and
//! materialise their result: one joins the keys only, the other whole rows of both tables.
//! They run under [`BASELINE_MEMORY_LIMIT`], as DuckDB cannot finish the whole-row join of
//! ten million rows under rowcast's default limit; rowcast's plan is measured under its
//! default and, as `memory_limit` in the project file, under that same limit.
//!
//! `--profile ROWS` instead times, in this process, each SQL statement a plan of one sync
//! runs (the statements are rebuilt here from rowcast's own SQL builders; the real
//! `plan_project` is timed beside them as a check), to show which step dominates.
//!
//! Usage: `cargo run --release --example bench_plan -- [ROWS...] [--runs N]`
//! (default: 1000000 10000000, 3 runs each), or `-- --profile ROWS`.

// This benchmark reads exit codes and timings only, not the children's output.
#[allow(dead_code)]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use rowcast::model::json::{fingerprint_sql, key_sql, quote_identifier, row_json_sql};
use rowcast::model::ModelSource;
use rowcast::plan::diff::{changes_insert_sql, differing_keys_sql};
use support::{median, run_measured, sibling_binary};

const SYNC: &str = "bench";

/// The two baselines: what each selects from the joined tables.
const BARE_KEYS: &str = "m.id, s.key";
const BARE_ROWS: &str = "m.*, s.*";

/// The memory limit of the bare joins, and of the second rowcast plan of each run.
const BASELINE_MEMORY_LIMIT: &str = "512MB";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--bare-join") => return bare_join(Path::new(&args[1]), &args[2]),
        Some("--profile") => {
            let rows = args.get(1).context("--profile needs a row count")?;
            return profile(rows.replace('_', "").parse()?);
        }
        _ => {}
    }
    let mut sizes = Vec::new();
    let mut runs = 3;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--runs" => runs = iter.next().context("--runs needs a number")?.parse()?,
            size => sizes.push(size.replace('_', "").parse::<u64>()?),
        }
    }
    anyhow::ensure!(runs > 0, "--runs must be at least 1");
    if sizes.is_empty() {
        sizes = vec![1_000_000, 10_000_000];
    }
    let rowcast = sibling_binary("rowcast")?;
    let mut summaries = Vec::new();
    for rows in sizes {
        summaries.push(bench_size(&rowcast, rows, runs)?);
    }
    print_summary(&summaries);
    Ok(())
}

/// Medians of one model size: (wall time, peak RSS in KiB) of rowcast and each baseline.
struct Summary {
    rows: u64,
    ours: (Duration, u64),
    /// rowcast's plan under the baselines' memory limit.
    ours_large: (Duration, u64),
    keys: (Duration, u64),
    whole: (Duration, u64),
}

fn bench_size(rowcast: &Path, rows: u64, runs: usize) -> anyhow::Result<Summary> {
    let dir = tempfile::tempdir()?;
    setup(dir.path(), rows)?;
    println!("\n### Plan of {rows} rows, {} changed\n", rows / 10);
    println!(
        "| run | rowcast plan | RSS | rowcast plan, {BASELINE_MEMORY_LIMIT} | RSS | \
         bare join, keys | RSS | bare join, whole rows | RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");

    let (mut ours, mut ours_large) = (Vec::new(), Vec::new());
    let (mut keys, mut whole) = (Vec::new(), Vec::new());
    let this = std::env::current_exe()?;
    let project_file = dir.path().join("rowcast.yaml");
    let default_project = std::fs::read_to_string(&project_file)?;
    for run in 1..=runs {
        let plan = ["plan", "--format", "json", "--show-rows", "0"];
        ours.push(measure(Command::new(rowcast).current_dir(dir.path()).args(plan))?);
        std::fs::write(
            &project_file,
            format!("{default_project}memory_limit: {BASELINE_MEMORY_LIMIT}\n"),
        )?;
        ours_large.push(measure(Command::new(rowcast).current_dir(dir.path()).args(plan))?);
        std::fs::write(&project_file, &default_project)?;
        let bare = |select: &str| {
            measure(Command::new(&this).arg("--bare-join").arg(dir.path()).arg(select))
        };
        keys.push(bare(BARE_KEYS)?);
        whole.push(bare(BARE_ROWS)?);
        println!(
            "| {run} | {} | {} | {} | {} | {} | {} | {} | {} |",
            seconds(ours[run - 1].0),
            mib(ours[run - 1].1),
            seconds(ours_large[run - 1].0),
            mib(ours_large[run - 1].1),
            seconds(keys[run - 1].0),
            mib(keys[run - 1].1),
            seconds(whole[run - 1].0),
            mib(whole[run - 1].1),
        );
    }
    Ok(Summary {
        rows,
        ours: medians(&ours),
        ours_large: medians(&ours_large),
        keys: medians(&keys),
        whole: medians(&whole),
    })
}

fn print_summary(summaries: &[Summary]) {
    println!("\n### Plan, medians\n");
    println!(
        "Ratios are to the bare whole-row join; \"same limit\" is rowcast's plan under the \
         join's {BASELINE_MEMORY_LIMIT}.\n"
    );
    println!(
        "| model rows | changed | rowcast plan | ratio | rowcast plan, {BASELINE_MEMORY_LIMIT} | \
         ratio, same limit | bare join, keys | bare join, whole rows | rowcast peak RSS \
         (default / {BASELINE_MEMORY_LIMIT}) | bare join peak RSS (keys / rows) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in summaries {
        let ratio = |ours: Duration| ours.as_secs_f64() / s.whole.0.as_secs_f64();
        println!(
            "| {} | {} | {} | {:.2}x | {} | {:.2}x | {} | {} | {} / {} | {} / {} |",
            s.rows,
            s.rows / 10,
            seconds(s.ours.0),
            ratio(s.ours.0),
            seconds(s.ours_large.0),
            ratio(s.ours_large.0),
            seconds(s.keys.0),
            seconds(s.whole.0),
            mib(s.ours.1),
            mib(s.ours_large.1),
            mib(s.keys.1),
            mib(s.whole.1),
        );
    }
}

fn seconds(time: Duration) -> String {
    format!("{:.2} s", time.as_secs_f64())
}

fn mib(kib: u64) -> String {
    format!("{} MiB", kib / 1024)
}

/// A project whose snapshot holds every row, then a warehouse where 10% of rows changed.
fn setup(dir: &Path, rows: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("syncs"))?;
    std::fs::write(
        dir.join("rowcast.yaml"),
        "name: bench\nwarehouse:\n  type: duckdb\n  path: warehouse.duckdb\n",
    )?;
    std::fs::write(
        dir.join("syncs/bench.yaml"),
        format!(
            "name: {SYNC}\nmodel:\n  sql: SELECT * FROM model\n  primary_key: id\n\
             destination:\n  type: http\n  url: http://127.0.0.1:9/\n\
             triggers: [added, changed, removed]\ninitial_sync: backfill\n"
        ),
    )?;
    let warehouse = duckdb::Connection::open(dir.join("warehouse.duckdb"))?;
    warehouse.execute_batch(&format!(
        "CREATE TABLE model AS SELECT
            i AS id,
            'customer ' || i AS name,
            'user' || i || '@example.com' AS email,
            (i % 1000) * 1.25 AS score,
            TIMESTAMP '2024-01-01' + INTERVAL (i % 100000) SECOND AS updated_at,
            i % 7 = 0 AS active
         FROM range({rows}) t(i);"
    ))?;
    drop(warehouse);

    let started = Instant::now();
    let workspace = rowcast::workspace::Workspace::open(dir, None)?;
    let (project, db) = (&workspace.project, &workspace.db);
    let plan = rowcast::plan::plan_project(project, db, &workspace.source, &[], 0)?;
    for sync in plan.planned() {
        rowcast::state::commit::commit_planned(&db.conn, &sync.name, "true", &sync.columns)?;
    }
    drop(workspace);
    eprintln!("{rows} rows committed to the snapshot in {:.1} s", started.elapsed().as_secs_f64());

    let warehouse = duckdb::Connection::open(dir.join("warehouse.duckdb"))?;
    warehouse.execute_batch(
        "UPDATE model SET name = name || ' (renamed)' WHERE id % 10 = 0; CHECKPOINT;",
    )?;
    Ok(())
}

/// A connection set up as rowcast sets up its own (spill folder, insertion order), under
/// the baselines' memory limit, with the warehouse and the state attached read-only.
fn baseline_connection(dir: &Path) -> anyhow::Result<duckdb::Connection> {
    let conn = duckdb::Connection::open_in_memory()?;
    conn.execute_batch(&format!(
        "SET memory_limit = '{}';
         SET preserve_insertion_order = false;
         SET temp_directory = '{}';
         ATTACH '{}' AS warehouse (READ_ONLY);
         ATTACH '{}' AS state (READ_ONLY);",
        BASELINE_MEMORY_LIMIT,
        dir.join(".rowcast/bare.tmp").display(),
        dir.join("warehouse.duckdb").display(),
        dir.join(".rowcast/state.duckdb").display(),
    ))?;
    Ok(conn)
}

/// The baseline: the same two tables joined on the key (as rowcast compares keys, as
/// text), selecting `select`, the result materialised.
fn bare_join(dir: &Path, select: &str) -> anyhow::Result<()> {
    let conn = baseline_connection(dir)?;
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE joined AS
            SELECT {select}
            FROM warehouse.model AS m
            FULL OUTER JOIN (SELECT * FROM state.snapshot WHERE sync = '{SYNC}') AS s
              ON CAST(m.id AS VARCHAR) = s.key;"
    ))?;
    Ok(())
}

/// Wall time and peak RSS (KiB) of one child process, which must exit 0 within
/// [`support::DEADLINE`].
fn measure(command: &mut Command) -> anyhow::Result<(Duration, u64)> {
    let run = run_measured(command)?;
    anyhow::ensure!(run.exit_code == Some(0), "{command:?} failed: {:?}", run.exit_code);
    Ok((run.wall, run.peak_rss_kib))
}

fn medians(samples: &[(Duration, u64)]) -> (Duration, u64) {
    let mut times: Vec<Duration> = samples.iter().map(|s| s.0).collect();
    let mut rss: Vec<u64> = samples.iter().map(|s| s.1).collect();
    (median(&mut times), median(&mut rss))
}

// ---------------------------------------------------------------------------------------
// Profile: which statement of a plan dominates
// ---------------------------------------------------------------------------------------

/// Times each statement of the plan of one sync, in the order the planner runs them.
fn profile(rows: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    setup(dir.path(), rows)?;

    let started = Instant::now();
    let workspace = rowcast::workspace::Workspace::open(dir.path(), None)?;
    let open = started.elapsed();
    let (project, db) = (&workspace.project, &workspace.db);
    let started = Instant::now();
    rowcast::plan::plan_project(project, db, &workspace.source, &[], 0)?;
    let real = started.elapsed();

    let conn = &db.conn;
    let sync = &project.syncs[0];
    let relation = workspace.source.relation(conn, &sync.sql)?;
    let typed: Vec<_> = relation.columns.iter().map(|c| (c.name.clone(), c.ty.clone())).collect();
    let row = row_json_sql("m", &typed);
    let key = key_sql(&format!("m.{}", quote_identifier(&sync.manifest.model.primary_key)));
    let from = &relation.from_sql;
    let changes = rowcast::plan::diff::CHANGES_TABLE;
    let steps = plan_steps(&key, &row, from, changes);

    println!("\n### Plan of {rows} rows, {} changed: time per statement\n", rows / 10);
    println!("| step | time | share |");
    println!("|---|---:|---:|");
    println!("| open the workspace (before the plan) | {} | |", seconds(open));
    // Replaced rather than emptied: rows deleted from an in-memory table keep its memory.
    let empty_changes = format!("CREATE OR REPLACE TABLE {changes} AS FROM {changes} LIMIT 0");
    conn.execute_batch(&empty_changes)?;
    let mut timed = Vec::new();
    for (name, sql) in &steps {
        let started = Instant::now();
        conn.execute_batch(sql).with_context(|| format!("step `{name}`"))?;
        timed.push((name, started.elapsed()));
    }
    let total: Duration = timed.iter().map(|t| t.1).sum();
    for (name, time) in &timed {
        let share = 100.0 * time.as_secs_f64() / total.as_secs_f64();
        println!("| {name} | {} | {share:.0}% |", seconds(*time));
    }
    println!("| **sum of the steps** | {} | |", seconds(total));
    println!("| `plan_project` itself, same connection | {} | |", seconds(real));

    // Where time goes inside the two heaviest statements, run again from the same start.
    conn.execute_batch(&empty_changes)?;
    for (name, sql) in
        steps.iter().filter(|s| s.0.starts_with("materialise") || s.0.starts_with("diff"))
    {
        let plan: String = conn
            .query_row(&format!("EXPLAIN ANALYZE {sql}"), [], |r| r.get(1))
            .with_context(|| format!("EXPLAIN ANALYZE of `{name}`"))?;
        eprintln!("\nEXPLAIN ANALYZE of `{name}`:\n{plan}");
    }
    Ok(())
}

/// The statements of a plan of one sync, as `src/plan/diff.rs` runs them.
fn plan_steps(key: &str, row: &str, from: &str, changes: &str) -> Vec<(&'static str, String)> {
    let sync = format!("'{SYNC}'");
    let fingerprint = fingerprint_sql("row");
    vec![
        (
            "materialise the model (key, row JSON, md5 fingerprint)",
            format!(
                "CREATE OR REPLACE TEMP TABLE plan_model AS
                 SELECT key, row, {fingerprint} AS fingerprint
                 FROM (SELECT {key} AS key, {row} AS row FROM {from} AS m)"
            ),
        ),
        ("null keys", "SELECT count(*) FROM temp.plan_model WHERE key IS NULL".into()),
        (
            "duplicate keys",
            "SELECT count(*) FROM (SELECT key FROM temp.plan_model WHERE key IS NOT NULL \
             GROUP BY key HAVING count(*) > 1)"
                .into(),
        ),
        ("diff: the keys that differ", differing_keys_sql(&sync)),
        ("diff: their rows, into the changes table", changes_insert_sql(&sync, "true")),
        ("drop the differing keys", "DROP TABLE temp.plan_diff".into()),
        (
            "counts",
            format!(
                "SELECT operation, invoke, count(*) FROM {changes} WHERE sync = {sync} \
                 GROUP BY ALL"
            ),
        ),
        (
            "pending",
            format!(
                "SELECT count(*) FROM {changes} AS c JOIN state.pending AS p
                 ON p.sync = c.sync AND p.key = c.key WHERE c.sync = {sync} AND c.invoke"
            ),
        ),
        ("model rows (emptied warning)", "SELECT count(*) FROM temp.plan_model".into()),
    ]
}
