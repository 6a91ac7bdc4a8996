//! The example functions (`examples/functions/python` and `examples/functions/node`),
//! each served by its own Functions Framework, implement the contract on the example
//! project: `check` passes, the customer without an email address is rejected with the
//! function's reason and stays pending, every other row is acknowledged, and a day of
//! changes is delivered on the next apply.

mod common;

use std::path::Path;

use common::function::Recorder;
use common::{assert_no_panic, repo, rowcast, stdout};

/// A copy of the example project (manifests and warehouse sources) with its warehouse
/// built, in a temporary folder.
fn example_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let copy = |relative: &str| {
        let from = repo().join(relative);
        let to = dir.path().join(relative);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {relative}: {e}"));
    };
    copy("rowcast.yaml");
    for folder in ["syncs", "warehouse", "warehouse/data"] {
        for entry in std::fs::read_dir(repo().join(folder)).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(repo()).unwrap().to_str().unwrap().to_string();
            let wanted = ["yaml", "sql", "csv"];
            if path.is_file() && path.extension().is_some_and(|e| wanted.iter().any(|w| e == *w)) {
                copy(&relative);
            }
        }
    }
    rowcast::model::example::build_warehouse(dir.path()).unwrap();
    dir
}

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    let output = rowcast(dir, args);
    assert_no_panic(&output);
    output
}

/// One pending-row line per key, `sync key: reason`.
fn pending(dir: &Path) -> Vec<String> {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let state = dir.join(".rowcast/local/state.duckdb");
    conn.execute_batch(&format!("ATTACH '{}' AS state (READ_ONLY)", state.display())).unwrap();
    let mut statement = conn
        .prepare("SELECT sync || ' ' || key || ': ' || reason FROM state.pending ORDER BY ALL")
        .unwrap();
    let rows = statement.query_map([], |row| row.get::<_, String>(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

fn the_example_function_implements_the_contract(function: Recorder) {
    let project = example_project();
    let dir = project.path();
    let url = function.url.as_str();

    let output = run(dir, &["check", "--destination-url", url]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(stdout(&output).lines().filter(|l| l.starts_with("ok ")).count(), 3);

    // Day 1: the backfill of crm_hydration; customer 42 has no email address.
    let output = run(dir, &["apply", "--quiet", "--destination-url", url]);
    assert_eq!(output.status.code(), Some(3), "one row rejected:\n{}", stdout(&output));
    assert_eq!(pending(dir), ["crm_hydration 42: the row has no email address"]);
    let plan = run(dir, &["plan", "--format", "json", "--destination-url", url]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let crm = &plan["syncs"].as_array().unwrap().iter().find(|s| s["name"] == "crm_hydration");
    assert_eq!(crm.unwrap()["pending"], 1, "only the rejected row is planned again: {plan}");
    assert_eq!(crm.unwrap()["added"], 1, "{plan}");

    // Day 2: new and shipped orders, a changed and a closed account, a leaver.
    rowcast::model::example::next_day(dir).unwrap();
    let output = run(dir, &["apply", "--quiet", "--destination-url", url]);
    assert_eq!(output.status.code(), Some(3), "{}", stdout(&output));
    let summary = stdout(&output);
    let line = |sync: &str| {
        let line = summary.lines().find(|l| l.starts_with(sync)).unwrap();
        line.split_whitespace().skip(1).take(3).collect::<Vec<_>>().join(" ")
    };
    // invoked, acknowledged, rejected: four orders one by one (the new paid one and three
    // shipped; the new placed one is not in the model); for the CRM, the upgraded and the
    // closed account, and three attempts at the customer without an email address; one
    // leaver.
    assert_eq!(line("order_confirmations"), "4 4 0", "{summary}");
    assert_eq!(line("crm_hydration"), "5 2 1", "{summary}");
    assert_eq!(line("employee_offboarding"), "1 1 0", "{summary}");
    assert_eq!(pending(dir), ["crm_hydration 42: the row has no email address"]);
}

#[test]
fn the_python_example_function_implements_the_contract() {
    let source = repo().join("examples/functions/python");
    the_example_function_implements_the_contract(Recorder::serve(&source, "handle_rows"));
}

#[test]
fn the_node_example_function_implements_the_contract() {
    let source = repo().join("examples/functions/node");
    the_example_function_implements_the_contract(Recorder::serve_node(&source, "handleRows"));
}
