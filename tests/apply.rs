//! `rowcast apply` delivers every planned row to a real function (the Functions
//! Framework serving a Python function, or a Rust server where timing matters), commits
//! exactly what was acknowledged, retries what was not, and honours its limits.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::function::{Recorder, TestServer};
use common::{assert_no_panic, counts, repo, stderr, stdout, TestProject};
use serde_json::Value;

fn apply(project: &TestProject, url: &str, extra: &[&str]) -> std::process::Output {
    let mut args =
        vec!["apply", "--quiet", "--state", ".rowcast/state.duckdb", "--destination-url", url];
    args.extend_from_slice(extra);
    let output = project.rowcast(&args);
    assert_no_panic(&output);
    output
}

fn plan(project: &TestProject) -> Value {
    project.plan_json(&["--state", ".rowcast/state.duckdb"])
}

/// (operation, key) of every row the recorder received with a 200.
fn delivered(recorder: &Recorder) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for record in recorder.records().into_iter().filter(|r| r["status"] == 200) {
        let payload = &record["payload"];
        let key_column = payload["primary_key_column"].as_str().unwrap();
        let rows = match payload.get("rows") {
            Some(rows) => rows.as_array().unwrap().clone(),
            None => vec![payload["row"].clone()],
        };
        for row in rows {
            out.push((
                payload["operation"].as_str().unwrap().to_string(),
                row[key_column].to_string(),
            ));
        }
    }
    out.sort();
    out
}

fn payload_validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join("schemas/payload.schema.json")).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

#[test]
fn the_happy_path_delivers_every_row_exactly_once_per_row_and_in_batches() {
    let function = Recorder::start();
    let project = TestProject::new();
    project
        .warehouse("CREATE TABLE t AS SELECT i AS id, 'name ' || i AS name FROM range(1, 61) t(i)");
    project.sync("per_row", "SELECT * FROM t", "id", "limits:\n  concurrency: 4\n");
    project.sync("batched", "SELECT * FROM t", "id", "batching:\n  size: 25\n");

    let output = apply(&project, &function.url, &[]);
    assert_eq!(output.status.code(), Some(0), "{}{}", stdout(&output), stderr(&output));
    let received = delivered(&function);
    assert_eq!(received.len(), 120, "60 rows per sync, each once");
    let distinct: BTreeSet<_> = received.iter().collect();
    assert_eq!(distinct.len(), 60, "the same 60 keys for both syncs");

    let records = function.records();
    let batch_sizes: Vec<usize> = records
        .iter()
        .filter_map(|r| r["payload"].get("rows").map(|rows| rows.as_array().unwrap().len()))
        .collect();
    assert_eq!(batch_sizes.iter().sum::<usize>(), 60);
    assert!(batch_sizes.iter().all(|size| *size <= 25), "{batch_sizes:?}");
    assert_eq!(records.iter().filter(|r| r["payload"].get("row").is_some()).count(), 60);

    let validator = payload_validator();
    for record in &records {
        let errors: Vec<String> =
            validator.iter_errors(&record["payload"]).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?} in {}", record["payload"]);
    }
    assert_eq!(counts(&plan(&project), "per_row"), (0, 0, 0, 0, 0));

    // Changes and removals carry the right operation, and changes their previous values.
    project.warehouse("UPDATE t SET name = 'renamed' WHERE id = 7; DELETE FROM t WHERE id = 8;");
    let output = apply(&project, &function.url, &["--sync", "per_row"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let records = function.records();
    let last_two: Vec<&Value> = records.iter().rev().take(2).map(|r| &r["payload"]).collect();
    let changed =
        last_two.iter().find(|p| p["operation"] == "changed").expect("a changed invocation");
    assert_eq!(changed["row"]["name"], "renamed");
    assert_eq!(changed["previous_row"]["name"], "name 7");
    let removed =
        last_two.iter().find(|p| p["operation"] == "removed").expect("a removed invocation");
    assert_eq!(removed["row"]["id"], 8);
}

#[test]
fn rejected_rows_are_kept_pending_with_reasons_and_delivered_once_fixed() {
    let function = Recorder::start();
    let project = TestProject::new();
    project.warehouse(
        "CREATE TABLE t AS SELECT i AS id,
            CASE WHEN i IN (3, 7) THEN 'no email for ' || i END AS reject
         FROM range(1, 11) t(i)",
    );
    project.sync("s", "SELECT * FROM t", "id", "batching:\n  size: 5\nretry:\n  mode: next_run\n");

    let output = apply(&project, &function.url, &[]);
    assert_eq!(output.status.code(), Some(3), "rows not delivered exit 3:\n{}", stdout(&output));
    assert!(stdout(&output).contains("s "), "{}", stdout(&output));
    let pending =
        project.state_query("SELECT key || ': ' || reason FROM state.pending ORDER BY key");
    assert_eq!(pending, ["3: no email for 3", "7: no email for 7"]);
    let snapshot = project.state_query("SELECT key FROM state.snapshot ORDER BY key::INT");
    assert_eq!(snapshot.len(), 8);
    assert!(!snapshot.contains(&"3".to_string()));

    // The next plan sends them again, counted as pending retries.
    assert_eq!(counts(&plan(&project), "s"), (2, 0, 0, 0, 2));
    project.warehouse("UPDATE t SET reject = NULL");
    let output = apply(&project, &function.url, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(project.state_query("SELECT key FROM state.pending").is_empty());
    assert_eq!(project.state_query("SELECT key FROM state.snapshot").len(), 10);
}

#[test]
fn immediate_retries_resend_only_the_rejected_rows() {
    let function = Recorder::start();
    let project = TestProject::new();
    project.warehouse(
        "CREATE TABLE t AS SELECT i AS id, CASE WHEN i = 2 THEN 'refused' END AS reject FROM range(1, 5) t(i)",
    );
    let retry = "batching:\n  size: 4\nretry:\n  mode: immediately\n  attempts: 3\n  initial_backoff: 10ms\n  max_backoff: 20ms\n";
    project.sync("s", "SELECT * FROM t", "id", retry);
    let output = apply(&project, &function.url, &[]);
    assert_eq!(output.status.code(), Some(3));

    let sizes: Vec<usize> =
        function.records().iter().map(|r| r["payload"]["rows"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [4, 1, 1], "the first batch, then the rejected row alone, twice");
    let attempts: Vec<u64> = function
        .records()
        .iter()
        .map(|r| r["payload"]["metadata"]["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert_eq!(project.state_query("SELECT attempts::VARCHAR FROM state.pending"), ["3"]);
}

#[test]
fn server_errors_timeouts_and_refused_connections_are_retried_then_left_pending() {
    let function = Recorder::start();
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(1, 4) t(i)");
    let retry = "retry:\n  mode: immediately\n  attempts: 2\n  initial_backoff: 10ms\n  max_backoff: 20ms\ntimeout: 300ms\n";
    project.sync("s", "SELECT * FROM t", "id", retry);

    function.control("fail");
    let output = apply(&project, &function.url, &[]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(function.records().len(), 6, "3 rows, 2 attempts each");
    let reasons = project.state_query("SELECT DISTINCT reason FROM state.pending");
    assert_eq!(reasons, ["HTTP 500: warehouse of the function is down"]);

    function.control("slow 1500");
    let output = apply(&project, &function.url, &[]);
    assert_eq!(output.status.code(), Some(3));
    let reasons = project.state_query("SELECT DISTINCT reason FROM state.pending");
    assert_eq!(reasons, ["no response within the timeout of 300ms"]);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let output = apply(&project, &format!("http://{closed}/"), &[]);
    assert_eq!(output.status.code(), Some(3));
    let reasons = project.state_query("SELECT DISTINCT reason FROM state.pending");
    assert!(reasons[0].starts_with("connection failed"), "{reasons:?}");
    assert_eq!(project.state_query("SELECT attempts::VARCHAR FROM state.pending")[0], "6");

    function.control("");
    let output = apply(&project, &function.url, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(project.state_query("SELECT key FROM state.pending").is_empty());
}

#[test]
fn a_denied_invocation_stops_the_sync_without_failing_every_row() {
    let function = Recorder::start();
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(1, 51) t(i)");
    project.sync("s", "SELECT * FROM t", "id", "limits:\n  concurrency: 1\n");
    function.control("deny");
    let output = apply(&project, &function.url, &[]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.contains("refused rowcast's credentials (HTTP 403"), "{text}");
    assert!(function.records().len() < 5, "the sync stopped at once");
    assert!(
        project.state_query("SELECT key FROM state.pending").is_empty(),
        "rows were not failed one by one"
    );
    assert_eq!(counts(&plan(&project), "s"), (50, 0, 0, 0, 0), "every row is still planned");
}

#[test]
fn the_function_never_sees_more_invocations_in_flight_than_the_concurrency_limit() {
    let server = TestServer::start(Duration::from_millis(50));
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(1, 61) t(i)");
    project.sync("s", "SELECT * FROM t", "id", "limits:\n  concurrency: 4\n");
    let output = apply(&project, &server.url, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(server.bodies().len(), 60);
    let max = server.seen.max_in_flight.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(max, 4, "the limit is used fully and never passed");
}

#[test]
fn with_a_proxy_variable_set_invocations_go_through_the_proxy() {
    // The "proxy" is the Rust test server: an HTTP proxy receives plain-HTTP requests in
    // absolute form, which it answers like any other. The function's own port is closed,
    // so every acknowledged row went through the proxy.
    let proxy = TestServer::start(Duration::ZERO);
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(1, 11) t(i)");
    project.sync("s", "SELECT * FROM t", "id", "");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{closed}/");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rowcast"))
        .current_dir(project.path())
        .args(["apply", "--quiet", "--state", ".rowcast/state.duckdb", "--destination-url", &url])
        .env("HTTP_PROXY", proxy.url.trim_end_matches('/'))
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(0), "{}{}", stdout(&output), stderr(&output));
    assert_eq!(proxy.bodies().len(), 10);
}

#[test]
fn the_rate_limit_holds_within_five_percent_over_ten_seconds() {
    let server = TestServer::start(Duration::ZERO);
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(1, 131) t(i)");
    project.sync(
        "s",
        "SELECT * FROM t",
        "id",
        "limits:\n  concurrency: 16\n  rate:\n    requests: 10\n    per: second\n",
    );
    let output = apply(&project, &server.url, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));

    let times = server.request_times();
    assert_eq!(times.len(), 130);
    // Every 10-second window starting at a request holds 100 ± 5% requests at most, and
    // the busiest one is not far below it (the limit is used, not just respected).
    let mut busiest = 0;
    for (index, start) in times.iter().enumerate() {
        let window =
            times[index..].iter().take_while(|t| **t < *start + Duration::from_secs(10)).count();
        busiest = busiest.max(window);
    }
    assert!(busiest <= 105, "{busiest} requests in a 10-second window");
    assert!(busiest >= 95, "{busiest} requests in the busiest 10-second window");
}

#[test]
fn a_second_apply_is_refused_by_the_lock_naming_the_holder() {
    let server = TestServer::start(Duration::from_millis(200));
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(1, 21) t(i)");
    project.sync("s", "SELECT * FROM t", "id", "limits:\n  concurrency: 1\n");
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_rowcast"))
        .current_dir(project.path())
        .args([
            "apply",
            "--quiet",
            "--state",
            ".rowcast/state.duckdb",
            "--destination-url",
            &server.url,
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.bodies().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = apply(&project, &server.url, &[]);
    let pid = first.id();
    assert!(first.wait().unwrap().success());
    assert_eq!(second.status.code(), Some(1));
    let message = stderr(&second);
    assert!(message.contains("is locked by `rowcast apply` on host"), "{message}");
    assert!(message.contains(&format!("(pid {pid}) since 20")), "{message}");
}

#[test]
fn a_stale_plan_file_is_refused_and_a_fresh_one_applied_exactly() {
    let function = Recorder::start();
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(1, 6) t(i)");
    project.sync("s", "SELECT * FROM t", "id", "");
    let saved =
        project.rowcast(&["plan", "--state", ".rowcast/state.duckdb", "--out", "reviewed.plan"]);
    assert_eq!(saved.status.code(), Some(0));

    // Rows added after the review are not sent by the reviewed plan.
    project.warehouse("INSERT INTO t VALUES (6)");
    let output = apply(&project, &function.url, &["reviewed.plan"]);
    assert_eq!(output.status.code(), Some(0), "{}{}", stdout(&output), stderr(&output));
    assert_eq!(delivered(&function).len(), 5);

    let output = apply(&project, &function.url, &["reviewed.plan"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("is stale: sync `s` was at snapshot version 0"),
        "{}",
        stderr(&output)
    );
    assert_eq!(delivered(&function).len(), 5, "nothing was sent");
}

#[test]
fn kill_nine_at_random_moments_loses_nothing_and_repeats_only_in_flight_work() {
    const TRIALS: usize = 20;
    const CONCURRENCY: usize = 8;
    const ROWS: usize = 1000;
    // 1000 rows, 8 at a time, 15 ms each: an apply of every row takes about two seconds,
    // longer than any kill delay below, so every trial kills an apply that is delivering.
    let server = TestServer::start(Duration::from_millis(15));
    let project = TestProject::new();
    project.warehouse(&format!(
        "CREATE TABLE t AS SELECT i AS id, 'generation 0' AS v FROM range(1, {}) t(i)",
        ROWS + 1
    ));
    project.sync("s", "SELECT * FROM t", "id", &format!("limits:\n  concurrency: {CONCURRENCY}\n"));

    let mut seed = 0x2545_f491_u64;
    let mut kills = 0;
    let mut generation = 0;
    for trial in 0..TRIALS {
        // Every fourth trial changes every row, so there is always work to kill; the
        // trials in between resume the same changes, where repeats could show.
        if trial % 4 == 3 {
            generation += 1;
            project.warehouse(&format!("UPDATE t SET v = 'generation {generation}'"));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(150 + seed % 400);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rowcast"))
            .current_dir(project.path())
            .args([
                "apply",
                "--quiet",
                "--state",
                ".rowcast/state.duckdb",
                "--destination-url",
                &server.url,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        // The state always opens after a kill.
        let plan =
            project.rowcast(&["plan", "--format", "json", "--state", ".rowcast/state.duckdb"]);
        assert_eq!(plan.status.code(), Some(0), "{}", stderr(&plan));
    }
    assert!(kills >= TRIALS * 3 / 4, "only {kills} of {TRIALS} trials killed a running apply");

    let output = apply(&project, &server.url, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(counts(&plan(&project), "s"), (0, 0, 0, 0, 0), "every row is in the snapshot");

    // Every row's last values reached the function, and no change of a row was sent more
    // often than kills could explain.
    let mut times_sent: BTreeMap<(String, String), usize> = BTreeMap::new();
    for body in server.bodies() {
        let change = (body["row"]["id"].to_string(), body["row"]["v"].to_string());
        *times_sent.entry(change).or_default() += 1;
    }
    let last = format!("\"generation {generation}\"");
    let delivered_last = times_sent.keys().filter(|(_, v)| *v == last).count();
    assert_eq!(delivered_last, ROWS, "no row lost");
    let repeats: usize = times_sent.values().map(|n| n - 1).sum();
    // A kill can only lose the outcome of invocations in flight (at most CONCURRENCY) and
    // of those acknowledged but still queued for the committer's next transaction.
    assert!(repeats <= kills * CONCURRENCY * 2, "{repeats} repeats over {kills} kills");
}

#[test]
fn sigterm_stops_new_invocations_commits_and_exits_130() {
    let server = TestServer::start(Duration::from_millis(30));
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(1, 401) t(i)");
    project.sync("s", "SELECT * FROM t", "id", "limits:\n  concurrency: 2\n");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_rowcast"))
        .current_dir(project.path())
        .args([
            "apply",
            "--quiet",
            "--state",
            ".rowcast/state.duckdb",
            "--destination-url",
            &server.url,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stdout(&output));
    assert!(stdout(&output).contains("interrupted: what the functions acknowledged is committed"));

    let sent = server.bodies().len();
    assert!(sent < 400, "the apply stopped early");
    let snapshot = project.state_query("SELECT key FROM state.snapshot").len();
    assert_eq!(snapshot, sent, "every acknowledged row was committed before exiting");
    let output = apply(&project, &server.url, &[]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(server.bodies().len(), 400, "the rest, and only the rest, sent by the next run");
}
