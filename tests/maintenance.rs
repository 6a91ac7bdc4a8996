//! `rowcast reset` and `rowcast resync` change what the next plan does, exactly as they
//! say; they ask for confirmation (`--yes` in scripts), refuse without a terminal, and
//! take the state lock like any writer.

mod common;

use common::function::Recorder;
use common::{assert_no_panic, counts, stderr, stdout, TestProject};

const STATE: &str = ".rowcast/state.duckdb";

fn run(project: &TestProject, args: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--state", STATE]);
    let output = project.rowcast(&all);
    assert_no_panic(&output);
    output
}

fn plan(project: &TestProject) -> serde_json::Value {
    project.plan_json(&["--state", STATE])
}

fn initial(plan: &serde_json::Value, sync: &str) -> bool {
    let syncs = plan["syncs"].as_array().unwrap();
    let entry = syncs.iter().find(|s| s["name"] == sync).unwrap();
    entry["initial"].as_bool().unwrap_or_else(|| panic!("no `initial` in {entry}"))
}

/// A project whose sync `s` (5 rows, `initial_sync` as given) was applied in full.
fn applied(function: &Recorder, initial_sync: &str) -> TestProject {
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(1, 6) t(i)");
    project.sync("s", "SELECT * FROM t", "id", &format!("initial_sync: {initial_sync}\n"));
    let output = run(&project, &["apply", "--quiet", "--destination-url", &function.url]);
    assert_eq!(output.status.code(), Some(0), "{}{}", stdout(&output), stderr(&output));
    assert_eq!(counts(&plan(&project), "s"), (0, 0, 0, 0, 0));
    project
}

#[test]
fn reset_makes_the_next_plan_an_initial_sync() {
    // After a reset the sync is planned as if it had never run: under `backfill` every
    // row is added again; under `future_changes_only` every row is recorded silently.
    let function = Recorder::start();
    let project = applied(&function, "backfill");
    project.warehouse("DELETE FROM t WHERE id = 5");
    let output = run(&project, &["reset", "s", "--yes"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    insta::assert_snapshot!("reset", stdout(&output));
    let after = plan(&project);
    assert!(initial(&after, "s"));
    assert_eq!(counts(&after, "s"), (4, 0, 0, 0, 0), "every row added, nothing removed");

    let project = applied(&function, "future_changes_only");
    assert_eq!(run(&project, &["reset", "s", "--yes"]).status.code(), Some(0));
    let after = plan(&project);
    assert!(initial(&after, "s"));
    assert_eq!(counts(&after, "s"), (0, 0, 0, 5, 0), "every row silent again");
}

#[test]
fn resync_sends_every_current_row_as_added_and_no_removals() {
    // After a resync the next apply sends every row the model has as `added`, even under
    // `future_changes_only`, and nothing as `removed`.
    let function = Recorder::start();
    let project = applied(&function, "future_changes_only");
    project.warehouse("DELETE FROM t WHERE id = 5; INSERT INTO t VALUES (6);");
    let output = run(&project, &["resync", "s", "--yes"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    insta::assert_snapshot!("resync", stdout(&output));
    let after = plan(&project);
    assert!(!initial(&after, "s"));
    assert_eq!(counts(&after, "s"), (5, 0, 0, 0, 0));

    let before = function.records().len();
    let output = run(&project, &["apply", "--quiet", "--destination-url", &function.url]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let sent: Vec<(String, String)> = function.records()[before..]
        .iter()
        .map(|r| {
            let payload = &r["payload"];
            (payload["operation"].as_str().unwrap().into(), payload["row"]["id"].to_string())
        })
        .collect();
    let mut sent = sent;
    sent.sort();
    let expected: Vec<(String, String)> =
        ["1", "2", "3", "4", "6"].iter().map(|k| ("added".into(), k.to_string())).collect();
    assert_eq!(sent, expected);
    assert_eq!(counts(&plan(&project), "s"), (0, 0, 0, 0, 0));
}

#[test]
fn without_a_terminal_reset_and_resync_refuse_unless_given_yes() {
    // A script that forgets `--yes` changes nothing and is told what to pass.
    let function = Recorder::start();
    let project = applied(&function, "backfill");
    for command in ["reset", "resync"] {
        let output = run(&project, &[command, "s"]);
        assert_eq!(output.status.code(), Some(1));
        insta::assert_snapshot!(format!("refusal_{command}"), stderr(&output));
    }
    assert_eq!(counts(&plan(&project), "s"), (0, 0, 0, 0, 0), "nothing changed");
    assert_eq!(project.state_query("SELECT count(*)::VARCHAR FROM state.snapshot"), ["5"]);
}

#[test]
fn resync_refuses_a_sync_that_added_rows_do_not_trigger() {
    // A resync sends rows as `added`; a sync that ignores added rows would send nothing.
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(1, 3) t(i)");
    project.sync("s", "SELECT * FROM t", "id", "triggers: [removed]\n");
    let output = run(&project, &["resync", "s", "--yes"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("is not triggered by `added` rows"), "{}", stderr(&output));
}

#[test]
fn reset_and_resync_take_the_state_lock_and_refuse_a_held_one() {
    // Both write the state, so both take its lock, and a held lock refuses them.
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(1, 3) t(i)");
    project.sync("s", "SELECT * FROM t", "id", "");
    let lock = rowcast::state::lock::StateLock::acquire(&project.path().join(STATE), "apply")
        .expect("the lock is free");
    for command in ["reset", "resync"] {
        let output = run(&project, &[command, "s", "--yes"]);
        assert_eq!(output.status.code(), Some(1));
        assert!(stderr(&output).contains("is locked by `rowcast apply`"), "{}", stderr(&output));
    }
    drop(lock);
    assert_eq!(run(&project, &["reset", "s", "--yes"]).status.code(), Some(0));
}

/// Runs `rowcast ARGS` on a pseudo-terminal (util-linux `script`), typing `answer`.
fn on_terminal(project: &TestProject, args: &str, answer: &str) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    let command = format!("{} {args} --state {STATE}", env!("CARGO_BIN_EXE_rowcast"));
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(project.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("`script` (util-linux) runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
    // Keep stdin open until the command ends: its end would end the session early.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            break child.wait().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    drop(stdin);
    let mut text = String::new();
    child.stdout.take().unwrap().read_to_string(&mut text).unwrap();
    (status.code(), text)
}

#[test]
fn on_a_terminal_reset_asks_and_goes_on_only_for_yes() {
    // A person at a terminal is asked what will be forgotten; anything but `yes` changes
    // nothing.
    let function = Recorder::start();
    let project = applied(&function, "backfill");
    let (code, text) = on_terminal(&project, "reset s", "no");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("forgets the 5 rows the function acknowledged"), "{text}");
    assert!(text.contains("cancelled; nothing was changed"), "{text}");
    assert_eq!(counts(&plan(&project), "s"), (0, 0, 0, 0, 0));

    let (code, text) = on_terminal(&project, "reset s", "yes");
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(counts(&plan(&project), "s"), (5, 0, 0, 0, 0));
}
