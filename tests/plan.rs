//! `rowcast plan` diffs each model against its committed snapshot exactly: a first plan
//! adds every row, later plans find inserts, updates and deletes, unchanged rows of every
//! type never look changed, and bad keys, SQL errors and column changes are reported.

mod common;

use std::collections::BTreeSet;

use common::{assert_no_panic, counts, stderr, stdout, TestProject};
use serde_json::{json, Value};

fn example_keys(plan: &Value, sync: &str, operation: &str) -> BTreeSet<String> {
    let entry = plan["syncs"].as_array().unwrap().iter().find(|s| s["name"] == sync).unwrap();
    entry["examples"][operation]
        .as_array()
        .map(|rows| rows.iter().map(|r| r["key"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn keys(items: &[i64]) -> BTreeSet<String> {
    items.iter().map(|k| k.to_string()).collect()
}

#[test]
fn a_first_plan_adds_every_row() {
    let project = TestProject::new();
    project.warehouse(
        "CREATE TABLE customers AS SELECT i AS id, 'c' || i AS name FROM range(1, 101) t(i)",
    );
    project.sync("customers", "SELECT * FROM customers", "id", "");

    let plan = project.plan_json(&[]);
    assert_eq!(counts(&plan, "customers"), (100, 0, 0, 0, 0));
    assert_eq!(plan["syncs"][0]["initial"], true);
}

#[test]
fn inserts_updates_and_deletes_are_planned_exactly() {
    let project = TestProject::new();
    project.warehouse(
        "CREATE TABLE customers AS
         SELECT i AS id, 'c' || i AS name, i * 1.5 AS score FROM range(1, 1001) t(i)",
    );
    project.sync("customers", "SELECT * FROM customers", "id", "");
    project.commit_everything();
    assert_eq!(counts(&project.plan_json(&[]), "customers"), (0, 0, 0, 0, 0));

    project.warehouse(
        "INSERT INTO customers SELECT i, 'new' || i, 0 FROM range(2001, 2008) t(i);
         UPDATE customers SET name = name || '!' WHERE id IN (10, 20, 30, 40, 50);
         UPDATE customers SET name = name WHERE id IN (60, 70);
         DELETE FROM customers WHERE id IN (5, 500, 999);",
    );
    let plan = project.plan_json(&["--show-rows", "100"]);
    assert_eq!(counts(&plan, "customers"), (7, 5, 3, 0, 0));
    assert_eq!(
        example_keys(&plan, "customers", "added"),
        keys(&[2001, 2002, 2003, 2004, 2005, 2006, 2007])
    );
    assert_eq!(example_keys(&plan, "customers", "changed"), keys(&[10, 20, 30, 40, 50]));
    assert_eq!(example_keys(&plan, "customers", "removed"), keys(&[5, 500, 999]));

    let changed = &plan["syncs"][0]["examples"]["changed"][0];
    assert_eq!(changed["row"]["name"], "c10!");
    assert_eq!(changed["previous"]["name"], "c10");
    let removed = &plan["syncs"][0]["examples"]["removed"][0];
    // `i * 1.5` is a DECIMAL(21,1), wider than a double holds exactly: a string.
    assert_eq!(removed["row"], json!({"id": 5, "name": "c5", "score": "7.5"}));
}

#[test]
fn planning_never_changes_the_snapshot() {
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(10) t(i)");
    project.sync("t", "SELECT * FROM t", "id", "");
    let first = project.plan_json(&[]);
    let second = project.plan_json(&[]);
    assert_eq!(counts(&first, "t"), (10, 0, 0, 0, 0));
    assert_eq!(first["syncs"], second["syncs"]);
    assert_eq!(second["syncs"][0]["snapshot_version"], 0);
}

#[test]
fn unchanged_rows_of_every_type_are_never_planned_as_changed() {
    let project = TestProject::new();
    // DuckDB's own table of every type at its minimum, its maximum and NULL.
    project.warehouse(
        "CREATE TABLE all_types AS SELECT row_number() OVER () AS row_id, * FROM test_all_types()",
    );
    project.sync("all_types", "SELECT * FROM all_types", "row_id", "");
    let plan = project.plan_json(&["--show-rows", "10"]);
    assert_eq!(counts(&plan, "all_types"), (3, 0, 0, 0, 0));
    assert_eq!(plan["syncs"][0]["examples"]["added"].as_array().unwrap().len(), 3);

    project.commit_everything();
    let plan = project.plan_json(&[]);
    assert_eq!(counts(&plan, "all_types"), (0, 0, 0, 0, 0), "{plan}");
}

#[test]
fn values_map_to_the_documented_json() {
    let project = TestProject::new();
    project.warehouse(
        "CREATE TYPE mood AS ENUM ('happy', 'sad');
         CREATE TABLE v AS SELECT
            1 AS id,
            true AS b,
            -42::TINYINT AS tiny,
            9007199254740991::BIGINT AS safe_big,
            9007199254740993::BIGINT AS unsafe_big,
            18446744073709551615::UBIGINT AS ubig,
            170141183460469231731687303715884105727::HUGEINT AS huge,
            12.50::DECIMAL(10,2) AS price,
            1234567890123456789.5::DECIMAL(38,1) AS wide,
            'nan'::DOUBLE AS nan,
            'inf'::DOUBLE AS inf,
            '-inf'::DOUBLE AS neg_inf,
            0.1::DOUBLE AS tenth,
            'quote \" backslash \\ newline' || chr(10) AS text,
            DATE '2024-02-29' AS day,
            TIME '13:45:30.5' AS clock,
            TIMESTAMP '2024-02-29 13:45:30' AS ts,
            TIMESTAMPTZ '2024-02-29 13:45:30+02' AS tstz,
            INTERVAL '1 year 2 months 3 days 04:05:06.5' AS span,
            'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::UUID AS uid,
            '\\x00\\xFFab'::BLOB AS bytes,
            'sad'::mood AS feeling,
            [1, NULL, 3] AS list,
            [1.5, 2.5]::DOUBLE[2] AS arr,
            {'a': 1, 'b': [true]} AS st,
            MAP {'k': 1, 'l': 2} AS m,
            union_value(num := 7)::UNION(num INTEGER, txt VARCHAR) AS u,
            NULL::INTEGER AS nothing",
    );
    project.sync("v", "SELECT * FROM v", "id", "");
    let plan = project.plan_json(&["--show-rows", "1"]);
    let row = &plan["syncs"][0]["examples"]["added"][0]["row"];
    let expected = json!({
        "id": 1, "b": true, "tiny": -42,
        "safe_big": 9007199254740991_i64, "unsafe_big": "9007199254740993",
        "ubig": "18446744073709551615", "huge": "170141183460469231731687303715884105727",
        "price": 12.50, "wide": "1234567890123456789.5",
        "nan": "NaN", "inf": "Infinity", "neg_inf": "-Infinity", "tenth": 0.1,
        "text": "quote \" backslash \\ newline\n",
        "day": "2024-02-29", "clock": "13:45:30.5",
        "ts": "2024-02-29T13:45:30", "tstz": "2024-02-29T11:45:30Z",
        "span": {"months": 14, "days": 3, "micros": 14706500000_i64},
        "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "bytes": "AP9hYg==",
        "feeling": "sad",
        "list": [1, null, 3], "arr": [1.5, 2.5],
        "st": {"a": 1, "b": [true]},
        "m": {"k": 1, "l": 2},
        "u": {"num": 7},
        "nothing": null,
    });
    assert_eq!(row, &expected);
}

#[test]
fn null_and_duplicate_keys_stop_that_sync_with_examples_and_others_still_plan() {
    let project = TestProject::new();
    project.warehouse(
        "CREATE TABLE dupes AS SELECT i % 5 AS id FROM range(20) t(i);
         CREATE TABLE nulls AS SELECT CASE WHEN i < 3 THEN NULL ELSE i END AS id FROM range(10) t(i);
         CREATE TABLE fine AS SELECT i AS id FROM range(4) t(i);",
    );
    project.sync("dupes", "SELECT * FROM dupes", "id", "");
    project.sync("nulls", "SELECT * FROM nulls", "id", "");
    project.sync("fine", "SELECT * FROM fine", "id", "");

    let output = project.rowcast(&["plan", "--format", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(counts(&plan, "fine"), (4, 0, 0, 0, 0));

    let error = |name: &str| {
        let entry = plan["syncs"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap();
        entry["error"].as_str().unwrap().to_string()
    };
    let dupes = error("dupes");
    assert!(dupes.contains("5 values of `id` appear more than once"), "{dupes}");
    assert!(dupes.contains("`0` (4×)") && dupes.contains("`4` (4×)"), "{dupes}");
    assert!(dupes.contains("syncs/dupes.yaml"), "{dupes}");
    let nulls = error("nulls");
    assert!(nulls.contains("3 rows have a null `id`"), "{nulls}");
}

#[test]
fn a_missing_key_column_and_bad_sql_name_the_sync_and_file() {
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT 1 AS id");
    project.sync("wrong_key", "SELECT * FROM t", "customer_id", "");
    project.sync("bad_sql", "SELECT * FROM no_such_table", "id", "");

    let output = project.rowcast(&["plan"]);
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.contains("sync `wrong_key` (./syncs/wrong_key.yaml): the primary key `customer_id` is not a column"), "{text}");
    assert!(
        text.contains("sync `bad_sql` (./syncs/bad_sql.yaml): the model's SQL failed in DuckDB"),
        "{text}"
    );
    assert!(text.contains("no_such_table"), "{text}");
}

#[test]
fn a_changed_column_set_is_reported_with_its_columns() {
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id, 'x' AS name FROM range(5) t(i)");
    project.sync("t", "SELECT * FROM t", "id", "");
    project.commit_everything();

    project.warehouse("ALTER TABLE t ADD COLUMN email VARCHAR; ALTER TABLE t DROP COLUMN name;");
    let plan = project.plan_json(&[]);
    assert_eq!(counts(&plan, "t"), (0, 5, 0, 0, 0));
    let warning = plan["syncs"][0]["warnings"][0].as_str().unwrap();
    assert!(warning.contains("added `email` (VARCHAR)"), "{warning}");
    assert!(warning.contains("removed `name`"), "{warning}");
    assert!(
        warning.contains("every one of the 5 rows already sent is planned as changed"),
        "{warning}"
    );
}

#[test]
fn triggers_and_initial_sync_decide_what_is_silent() {
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id, i AS v FROM range(10) t(i)");
    project.sync("future", "SELECT * FROM t", "id", "initial_sync: future_changes_only\n");
    project.sync("removals", "SELECT * FROM t", "id", "triggers: [removed]\n");

    let plan = project.plan_json(&[]);
    assert_eq!(counts(&plan, "future"), (0, 0, 0, 10, 0));
    assert_eq!(counts(&plan, "removals"), (0, 0, 0, 10, 0));
    project.commit_everything();

    project.warehouse("UPDATE t SET v = v + 1 WHERE id < 2; DELETE FROM t WHERE id = 9;");
    let plan = project.plan_json(&[]);
    assert_eq!(counts(&plan, "future"), (0, 2, 1, 0, 0));
    assert_eq!(counts(&plan, "removals"), (0, 0, 1, 2, 0));
}

#[test]
fn detailed_exitcode_is_0_with_nothing_to_do_2_with_changes_and_1_on_error() {
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(3) t(i)");
    project.sync("t", "SELECT * FROM t", "id", "");
    assert_eq!(project.rowcast(&["plan", "--detailed-exitcode"]).status.code(), Some(2));
    assert_eq!(project.rowcast(&["plan"]).status.code(), Some(0));

    project.commit_everything();
    assert_eq!(project.rowcast(&["plan", "--detailed-exitcode"]).status.code(), Some(0));

    project.sync("broken", "SELECT FROM WHERE", "id", "");
    assert_eq!(project.rowcast(&["plan", "--detailed-exitcode"]).status.code(), Some(1));
}

#[test]
fn a_saved_plan_is_refused_once_the_snapshot_moves() {
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(3) t(i)");
    project.sync("t", "SELECT * FROM t", "id", "");
    let output = project.rowcast(&["plan", "--out", "plan.rowcast"]);
    assert_eq!(output.status.code(), Some(0));

    let check = || {
        let workspace = rowcast::workspace::Workspace::open(project.path(), None).unwrap();
        let path = project.path().join("plan.rowcast");
        let header = rowcast::plan::file::read_header(&workspace.db.conn, &path).unwrap();
        assert_eq!(header.syncs[0].name, "t");
        rowcast::plan::file::check_fresh(&header, &path, &workspace.db.state_id, |sync| {
            Ok(workspace.db.snapshot_version(sync)?)
        })
    };
    check().expect("a fresh plan is accepted");
    project.commit_everything();
    let error = check().expect_err("a stale plan is refused").to_string();
    assert!(
        error.contains("sync `t` was at snapshot version 0 when it was planned and is now at 1"),
        "{error}"
    );
}

fn snapshot_project() -> TestProject {
    let project = TestProject::new();
    project.warehouse(
        "CREATE TABLE orders AS SELECT i AS order_id, 'placed' AS status, i * 10.25 AS total
         FROM range(1, 6) t(i)",
    );
    project.sync("orders", "SELECT * FROM orders", "order_id", "");
    project.commit_everything();
    project.warehouse(
        "INSERT INTO orders VALUES (6, 'placed', 61.5);
         UPDATE orders SET status = 'paid' WHERE order_id = 2;
         DELETE FROM orders WHERE order_id = 3;",
    );
    project
}

#[test]
fn markdown_output_matches_its_snapshot() {
    let project = snapshot_project();
    let output = project.rowcast(&["plan", "--format", "markdown", "--show-rows", "2"]);
    assert_eq!(output.status.code(), Some(0));
    insta::assert_snapshot!(stdout(&output));
}

#[test]
fn json_output_matches_its_snapshot() {
    let project = snapshot_project();
    let plan = project.plan_json(&["--show-rows", "2"]);
    insta::assert_json_snapshot!(plan, {".state_id" => "[state id]"});
}

#[test]
fn text_output_matches_its_snapshot() {
    let project = snapshot_project();
    let output = project.rowcast(&["plan", "--show-rows", "2"]);
    assert_eq!(output.status.code(), Some(0));
    insta::assert_snapshot!(stdout(&output));
}

#[test]
fn the_project_memory_limit_is_checked_and_given_to_duckdb() {
    let project = TestProject::new();
    project.warehouse(
        "CREATE TABLE items AS SELECT i AS id, repeat('x', 200) || i AS v FROM range(200000) t(i)",
    );
    project.sync("items", "SELECT * FROM items", "id", "");
    let file = project.path().join("rowcast.yaml");
    let base = std::fs::read_to_string(&file).unwrap();

    // Not a size: a problem of the project file, named with its value.
    std::fs::write(&file, format!("{base}memory_limit: lots\n")).unwrap();
    let output = project.rowcast(&["plan"]);
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(1));
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(text.contains("rowcast.yaml:") && text.contains("lots"), "{text}");

    // Far too small for this model: DuckDB runs out of memory, so the limit was applied.
    std::fs::write(&file, format!("{base}memory_limit: 2MB\n")).unwrap();
    let output = project.rowcast(&["plan"]);
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(1));
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(text.contains("Out of Memory"), "{text}");
    assert!(text.contains("raise `memory_limit` in rowcast.yaml"), "{text}");

    // Large enough: every row is planned.
    std::fs::write(&file, format!("{base}memory_limit: 1GB\n")).unwrap();
    assert_eq!(counts(&project.plan_json(&[]), "items"), (200000, 0, 0, 0, 0));
}
