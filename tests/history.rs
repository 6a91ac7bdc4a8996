//! The run history: every apply records its runs, invocation attempts and row events in
//! the state, and `rowcast runs`, `runs show` and `rows` read them back as text, JSON and
//! CSV; bodies are kept only when a sync asks, and only for their retention.

mod common;

use std::time::Duration;

use common::function::{Recorder, TestServer};
use common::{assert_no_panic, stderr, stdout, TestProject};
use serde_json::Value;

const STATE: &str = ".rowcast/state.duckdb";

fn apply(project: &TestProject, url: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["apply", "--quiet", "--state", STATE, "--destination-url", url];
    args.extend_from_slice(extra);
    let output = project.rowcast(&args);
    assert_no_panic(&output);
    output
}

/// Runs a history command against the test state and returns its stdout.
fn history(project: &TestProject, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--state", STATE]);
    let output = project.rowcast(&all);
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(0), "{args:?}: {}{}", stdout(&output), stderr(&output));
    stdout(&output)
}

fn history_json(project: &TestProject, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--format", "json"]);
    let text = history(project, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON does not parse ({e}):\n{text}"))
}

/// Run ids, times and durations differ from run to run.
fn redactions() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[id]"),
        (r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{3})?Z?", "[time]"),
        (r"\b\d+\.\d{2}s\b", "[duration]"),
        (r"\b\d+\.\dms\b", "[latency]"),
    ]
}

/// Two syncs in one run: `orders` (rows 3 and 5 rejected twice, so left pending) and
/// `customers`, whose rows are all recorded silently.
fn run_with_rejections(function: &Recorder) -> (TestProject, String) {
    let project = TestProject::new();
    project.warehouse(
        "CREATE TABLE orders AS SELECT i AS id,
            CASE WHEN i IN (3, 5) THEN 'no email for ' || i END AS reject
         FROM range(1, 7) t(i);
         CREATE TABLE customers AS SELECT i AS id FROM range(1, 7) t(i);",
    );
    let retry = "batching:\n  size: 10\nretry:\n  mode: immediately\n  attempts: 2\n  \
                 initial_backoff: 10ms\n  max_backoff: 20ms\n";
    project.sync("orders", "SELECT * FROM orders", "id", retry);
    project.sync("customers", "SELECT * FROM customers", "id", "triggers: [changed]\n");
    let output = apply(&project, &function.url, &[]);
    assert_eq!(output.status.code(), Some(3), "{}{}", stdout(&output), stderr(&output));
    let runs = history_json(&project, &["runs"]);
    let run_id = runs["runs"][0]["run_id"].as_str().unwrap().to_string();
    (project, run_id)
}

fn sync<'a>(value: &'a Value, key: &str, name: &str) -> &'a Value {
    value[key]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sync"] == name)
        .unwrap_or_else(|| panic!("no sync {name} in {value}"))
}

#[test]
fn runs_and_runs_show_text_match_their_snapshots() {
    // The text of `runs` and of `runs show --invocations --rejected` holds still.
    let function = Recorder::start();
    let (project, run_id) = run_with_rejections(&function);
    let list = history(&project, &["runs"]);
    let show = history(&project, &["runs", "show", &run_id, "--invocations", "--rejected"]);
    insta::with_settings!({ filters => redactions() }, {
        insta::assert_snapshot!("runs_list", list);
        insta::assert_snapshot!("runs_show", show);
    });
}

#[test]
fn runs_json_parses_and_carries_every_count() {
    // The JSON of a run has its status, its counts by outcome and operation, every
    // invocation attempt and every row left rejected, with reasons.
    let function = Recorder::start();
    let (project, run_id) = run_with_rejections(&function);
    // A prefix of the id names the run as well.
    let show =
        history_json(&project, &["runs", "show", &run_id[..13], "--invocations", "--rejected"]);
    assert_eq!(show["run_id"], run_id.as_str());

    let orders = sync(&show, "syncs", "orders");
    assert_eq!(orders["status"], "completed_with_rejected_rows");
    assert_eq!(orders["planned"], 6);
    assert_eq!(orders["invocations"], 2, "the batch, then its two rejected rows again");
    assert_eq!(orders["pending"], 2);
    assert_eq!(orders["counts"]["acknowledged"]["added"], 4);
    assert_eq!(orders["counts"]["rejected"]["added"], 2);
    assert_eq!(orders["counts"]["failed"]["added"], 0);
    let customers = sync(&show, "syncs", "customers");
    assert_eq!(customers["status"], "succeeded");
    assert_eq!(customers["counts"]["silent"]["added"], 6);
    assert_eq!(customers["invocations"], 0);

    let invocations = show["invocations"].as_array().unwrap();
    let shape: Vec<(u64, u64, u64, u64)> = invocations
        .iter()
        .map(|i| {
            let n = |k: &str| i[k].as_u64().unwrap();
            (n("attempt"), n("rows"), n("http_status"), n("rejected_rows"))
        })
        .collect();
    assert_eq!(shape, [(1, 6, 200, 2), (2, 2, 200, 2)]);
    assert!(invocations.iter().all(|i| i["error_class"] == "rejected_rows"));
    assert!(invocations.iter().all(|i| i["latency_ms"].as_f64().unwrap() > 0.0));
    assert!(invocations[0]["response_excerpt"].as_str().unwrap().contains("no email for 3"));
    assert!(invocations[0].get("request_body").is_none(), "bodies are not kept by default");

    let rejected: Vec<(String, String, u64)> = show["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap().to_string();
            (text("key"), text("reason"), r["attempts"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        rejected,
        [("3".into(), "no email for 3".into(), 2), ("5".into(), "no email for 5".into(), 2)]
    );

    let list = history_json(&project, &["runs", "--sync", "orders"]);
    assert_eq!(list["runs"].as_array().unwrap().len(), 1);
    assert_eq!(list["runs"][0]["counts"], orders["counts"]);
}

#[test]
fn runs_csv_opens_as_a_table_with_every_count() {
    // CSV output is one well-formed table (same width on every line, quoted as needed),
    // with the same counts as the JSON.
    let function = Recorder::start();
    let (project, run_id) = run_with_rejections(&function);
    let parse = |text: String| -> Vec<csv::StringRecord> {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let width = reader.headers().unwrap().len();
        let records: Vec<_> = reader.records().map(Result::unwrap).collect();
        assert!(records.iter().all(|r| r.len() == width), "{text}");
        let mut all = vec![reader.headers().unwrap().clone()];
        all.extend(records);
        all
    };
    let list = parse(history(&project, &["runs", "--format", "csv"]));
    let column = |name: &str| list[0].iter().position(|h| h == name).unwrap();
    let orders = list.iter().find(|r| &r[column("sync")] == "orders").unwrap();
    assert_eq!(&orders[column("acknowledged_added")], "4");
    assert_eq!(&orders[column("rejected_added")], "2");
    assert_eq!(&orders[column("status")], "completed_with_rejected_rows");

    let rejected =
        parse(history(&project, &["runs", "show", &run_id, "--rejected", "--format", "csv"]));
    assert_eq!(rejected.len(), 3, "a header and two rows");
    assert_eq!(&rejected[1][1], "3");
    assert_eq!(&rejected[1][4], "no email for 3");
    let invocations =
        parse(history(&project, &["runs", "show", &run_id, "--invocations", "--format", "csv"]));
    assert_eq!(invocations.len(), 3, "a header and two invocations");
    // The response excerpt holds quotes and commas, which CSV quotes.
    assert!(invocations[1][14].contains("\"primary_key_value\""));
}

#[test]
fn a_rows_history_follows_reject_retry_acknowledgement_change_and_removal() {
    // `rows SYNC KEY` lists every event of one key across runs, and where it stands now.
    let function = Recorder::start();
    let project = TestProject::new();
    project.warehouse(
        "CREATE TABLE t AS SELECT i AS id, 'first' AS v,
            CASE WHEN i = 2 THEN 'no email' END AS reject
         FROM range(1, 5) t(i)",
    );
    let retry = "retry:\n  mode: immediately\n  attempts: 2\n  initial_backoff: 10ms\n  \
                 max_backoff: 20ms\n";
    project.sync("s", "SELECT * FROM t", "id", retry);
    let events = |project: &TestProject| -> (String, Vec<String>) {
        let value = history_json(project, &["rows", "s", "2"]);
        let list = value["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let retried = if e["retried"] == true { ", retried" } else { "" };
                format!(
                    "{} {}{retried} (attempt {})",
                    e["operation"].as_str().unwrap(),
                    e["event"].as_str().unwrap(),
                    e["attempt"]
                )
            })
            .collect();
        (value["now"]["status"].as_str().unwrap().to_string(), list)
    };

    assert_eq!(apply(&project, &function.url, &[]).status.code(), Some(3));
    let (now, list) = events(&project);
    assert_eq!(now, "pending");
    assert_eq!(list, ["added rejected, retried (attempt 1)", "added rejected (attempt 2)"]);

    project.warehouse("UPDATE t SET reject = NULL");
    assert_eq!(apply(&project, &function.url, &[]).status.code(), Some(0));
    let (now, list) = events(&project);
    assert_eq!(now, "in_snapshot");
    assert_eq!(list.last().unwrap(), "added acknowledged (attempt 1)");

    project.warehouse("UPDATE t SET v = 'second' WHERE id = 2");
    assert_eq!(apply(&project, &function.url, &[]).status.code(), Some(0));
    project.warehouse("DELETE FROM t WHERE id = 2");
    assert_eq!(apply(&project, &function.url, &[]).status.code(), Some(0));
    let (now, list) = events(&project);
    assert_eq!(now, "not_tracked");
    assert_eq!(
        list,
        [
            "added rejected, retried (attempt 1)",
            "added rejected (attempt 2)",
            "added acknowledged (attempt 1)",
            "changed acknowledged (attempt 1)",
            "removed acknowledged (attempt 1)",
        ]
    );
    let text = history(&project, &["rows", "s", "2"]);
    insta::with_settings!({ filters => redactions() }, {
        insta::assert_snapshot!("rows_history", text);
    });
}

#[test]
fn bodies_are_kept_only_when_asked_and_deleted_after_retention_while_counts_stay() {
    // Request and response bodies are kept for syncs with `record_bodies`, as sent, and
    // deleted once their retention passed; the run's counts and invocations remain.
    let server = TestServer::start(Duration::ZERO);
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(1, 4) t(i)");
    project.sync("kept", "SELECT * FROM t", "id", "record_bodies:\n  retention: 2s\n");
    project.sync("plain", "SELECT * FROM t", "id", "");
    assert_eq!(apply(&project, &server.url, &[]).status.code(), Some(0));

    let count = |sync: &str| {
        project.state_query(&format!(
            "SELECT count(*)::VARCHAR FROM state.invocation_bodies WHERE sync = '{sync}'"
        ))[0]
            .clone()
    };
    assert_eq!((count("kept").as_str(), count("plain").as_str()), ("3", "0"));
    let stored: Vec<Value> = project
        .state_query("SELECT request FROM state.invocation_bodies")
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let sent = server.bodies();
    assert!(stored.iter().all(|body| sent.contains(body)), "the bodies as they were sent");

    let run_id =
        history_json(&project, &["runs"])["runs"][0]["run_id"].as_str().unwrap().to_string();
    let before = history_json(&project, &["runs", "show", &run_id, "--invocations"]);
    let kept = before["invocations"].as_array().unwrap().iter().filter(|i| i["sync"] == "kept");
    assert!(kept.clone().all(|i| i["request_body"].is_string()), "{before}");

    // Any history command (or apply) deletes what passed its retention.
    std::thread::sleep(Duration::from_millis(2500));
    let after = history_json(&project, &["runs", "show", &run_id, "--invocations"]);
    assert_eq!(count("kept"), "0", "deleted after the retention");
    assert_eq!(after["syncs"], before["syncs"], "the counts stay");
    let invocations = after["invocations"].as_array().unwrap();
    assert_eq!(invocations.len(), 6);
    assert!(invocations.iter().all(|i| i.get("request_body").is_none()));
}

#[test]
fn a_killed_apply_shows_as_interrupted_with_what_it_committed() {
    // A run killed midway is marked interrupted by the next command that opens the
    // state, with the counts of the rows it committed.
    let server = TestServer::start(Duration::from_millis(20));
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(1, 301) t(i)");
    project.sync("s", "SELECT * FROM t", "id", "limits:\n  concurrency: 2\n");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rowcast"))
        .current_dir(project.path())
        .args(["apply", "--quiet", "--state", STATE, "--destination-url", &server.url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.bodies().len() < 40 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(child.try_wait().unwrap().is_none(), "the apply was still running");
    child.kill().unwrap();
    child.wait().unwrap();

    let runs = history_json(&project, &["runs"]);
    let run = &runs["runs"][0];
    assert_eq!(run["status"], "interrupted");
    assert_eq!(run["planned"], 300);
    let acknowledged = run["counts"]["acknowledged"]["added"].as_u64().unwrap();
    let snapshot = project.state_query("SELECT count(*)::VARCHAR FROM state.snapshot");
    assert_eq!(acknowledged.to_string(), snapshot[0], "the counts are what was committed");
    assert_eq!(run["pending"].as_u64().unwrap(), 300 - acknowledged);
    assert!(acknowledged > 0 && acknowledged < 300, "{run}");
}

#[test]
fn json_logs_carry_the_run_sync_batch_and_attempt_spans() {
    // `--log-format json` writes one JSON object per line, and an invocation's event
    // names its run, sync, batch and attempt; `-q` keeps warnings out.
    let function = Recorder::start();
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(1, 3) t(i)");
    let retry = "retry:\n  mode: immediately\n  attempts: 2\n  initial_backoff: 10ms\n  \
                 max_backoff: 20ms\n";
    project.sync("s", "SELECT * FROM t", "id", retry);
    function.control("fail");
    let run = |flags: &[&str]| {
        let mut args = vec!["apply", "--state", STATE, "--destination-url", &function.url];
        args.extend_from_slice(flags);
        let output = project.rowcast(&args);
        assert_no_panic(&output);
        output
    };
    let output = run(&["--log-format", "json", "-vv"]);
    assert_eq!(output.status.code(), Some(3));
    let lines: Vec<Value> = stderr(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let answered = lines
        .iter()
        .find(|l| l["message"] == "invocation answered")
        .unwrap_or_else(|| panic!("no invocation event in {lines:?}"));
    let spans = answered["spans"].as_array().unwrap();
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["run", "sync", "batch", "attempt"]);
    assert_eq!(spans[1]["sync"], "s");
    assert!(spans[0]["run_id"].as_str().unwrap().len() == 36);
    assert!(spans[3]["attempt"].is_number() && spans[2]["batch"].is_number());
    let retry = lines.iter().find(|l| l["message"] == "invocation failed, retrying").unwrap();
    assert_eq!(retry["level"], "WARN");
    assert_eq!(retry["reason"], "HTTP 500: warehouse of the function is down");

    project.warehouse("INSERT INTO t VALUES (3)");
    let default = run(&[]);
    assert!(stderr(&default).contains("invocation failed, retrying"), "{}", stderr(&default));
    let quiet = run(&["-q"]);
    assert!(!stderr(&quiet).contains("WARN"), "{}", stderr(&quiet));
}

#[test]
fn an_apply_stopped_by_sigterm_records_its_run_as_interrupted() {
    // SIGTERM lets the apply finish its run record itself: interrupted, with the counts
    // of what was acknowledged before it stopped.
    let server = TestServer::start(Duration::from_millis(20));
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(1, 301) t(i)");
    project.sync("s", "SELECT * FROM t", "id", "limits:\n  concurrency: 2\n");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_rowcast"))
        .current_dir(project.path())
        .args(["apply", "--quiet", "--state", STATE, "--destination-url", &server.url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.bodies().len() < 40 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));

    let run = &history_json(&project, &["runs"])["runs"][0];
    assert_eq!(run["status"], "interrupted");
    assert!(run["error"].is_null(), "it ended itself, it was not recovered: {run}");
    let acknowledged = run["counts"]["acknowledged"]["added"].as_u64().unwrap();
    assert_eq!(acknowledged as usize, server.bodies().len(), "{run}");
    assert_eq!(run["pending"].as_u64().unwrap(), 300 - acknowledged);
}

#[test]
fn a_row_too_large_to_send_is_in_the_history_with_its_reason() {
    // A row that alone passes `batching.max_request_bytes` is never sent: the run lists it
    // as rejected, with the reason, and so does its key's history.
    let function = Recorder::start();
    let project = TestProject::new();
    project.warehouse(
        "CREATE TABLE t AS SELECT i AS id, CASE WHEN i = 2 THEN repeat('x', 3000) ELSE 'small' END
         AS note FROM range(1, 4) t(i)",
    );
    project.sync("s", "SELECT * FROM t", "id", "batching:\n  max_request_bytes: 1024\n");
    assert_eq!(apply(&project, &function.url, &[]).status.code(), Some(3));
    let run_id =
        history_json(&project, &["runs"])["runs"][0]["run_id"].as_str().unwrap().to_string();
    let show = history_json(&project, &["runs", "show", &run_id, "--rejected"]);
    let rejected = &show["rejected"][0];
    assert_eq!(
        (rejected["key"].as_str(), rejected["outcome"].as_str()),
        (Some("2"), Some("rejected"))
    );
    assert!(rejected["reason"].as_str().unwrap().contains("`batching.max_request_bytes`"));
    assert!(rejected["invocation_id"].is_null(), "it was never sent");
    assert_eq!(show["syncs"][0]["counts"]["acknowledged"]["added"], 2);
    assert_eq!(show["syncs"][0]["invocations"], 2);
    let key = history_json(&project, &["rows", "s", "2"]);
    assert_eq!(key["now"]["status"], "pending");
    assert_eq!(key["events"][0]["event"], "rejected");
}
