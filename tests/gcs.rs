//! The `gcs` state backend against a real Cloud Storage emulator (fake-gcs-server): the
//! state survives runners that start empty, one writer at a time holds the lock object,
//! a writer never overwrites state it did not read, a stale lock can be broken or taken
//! over, and a killed apply loses nothing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::function::TestServer;
use common::gcs::{gcs_project, Emulator};
use common::{assert_no_panic, counts, rowcast, stderr, stdout};

const STATE: &str = "team/state.duckdb";
const LOCK: &str = "team/state.lock";

fn apply(dir: &Path) -> std::process::Output {
    let output = rowcast(dir, &["apply"]);
    assert_no_panic(&output);
    output
}

fn spawn_apply(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rowcast"))
        .current_dir(dir)
        .args(["apply"])
        .env("ROWCAST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Kills a child when dropped, so a failing test leaves no apply running.
struct Killed(Option<Child>);

impl Killed {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    /// Waits for the child to end by itself, with what it wrote to stderr.
    fn output(mut self) -> std::process::Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_state_round_trips_through_the_bucket_across_empty_runners() {
    // Each run starts in a fresh folder, as a CI runner does; only the bucket remembers.
    let emulator = Emulator::start();
    let server = TestServer::start(Duration::ZERO);
    let state = emulator.state_block("team", "30s", "1m");
    let first = tempfile::tempdir().unwrap();
    gcs_project(first.path(), &state, 30, &server.url, "");

    let output = apply(first.path());
    assert_eq!(output.status.code(), Some(0), "{}{}", stdout(&output), stderr(&output));
    assert_eq!(server.bodies().len(), 30);
    assert!(emulator.object(STATE).is_some(), "the state was written back");
    assert!(emulator.object(LOCK).is_none(), "the lock was released");

    // A second runner plans nothing, without the lock and without writing anything back;
    // then only the new rows are sent.
    let written = emulator.object(STATE).unwrap().1;
    let second = tempfile::tempdir().unwrap();
    gcs_project(second.path(), &state, 30, &server.url, "");
    let second = common::TestProject { dir: second };
    let plan = second.plan_json(&[]);
    assert_eq!(counts(&plan, "s"), (0, 0, 0, 0, 0), "{plan}");
    assert_eq!(emulator.object(STATE).unwrap().1, written, "plan wrote nothing back");
    let copies = second.path().join(".rowcast/gcs/rowcast-state/team");
    let left: Vec<_> =
        std::fs::read_dir(&copies).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "plan removed its read-only copy: {left:?}");

    let third = tempfile::tempdir().unwrap();
    gcs_project(third.path(), &state, 35, &server.url, "");
    let output = apply(third.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(server.bodies().len(), 35, "only the five new rows were sent");
}

#[test]
fn reset_reaches_the_bucket_so_the_next_runner_starts_an_initial_sync() {
    // A maintenance verb on another runner changes the state in the bucket, not only its
    // own working copy: after `reset`, a fresh runner plans every row as added again.
    let emulator = Emulator::start();
    let server = TestServer::start(Duration::ZERO);
    let state = emulator.state_block("team", "30s", "1m");
    let runners: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for runner in &runners {
        gcs_project(runner.path(), &state, 20, &server.url, "");
    }
    let output = apply(runners[0].path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let output = rowcast(runners[1].path(), &["reset", "s", "--yes"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(emulator.object(LOCK).is_none(), "reset released the lock");

    let third = common::TestProject { dir: runners.into_iter().nth(2).unwrap() };
    let plan = third.plan_json(&[]);
    assert_eq!(counts(&plan, "s").0, 20, "every row is added again: {plan}");
}

#[test]
fn a_second_apply_on_another_runner_is_refused_naming_the_holder() {
    // While one apply holds the lock object, another fails at once with its holder, also
    // long after the lock's time-to-live, since a live holder renews it.
    let emulator = Emulator::start();
    let server = TestServer::start(Duration::from_millis(100));
    let state = emulator.state_block("team", "30s", "1s");
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    gcs_project(one.path(), &state, 50, &server.url, "limits:\n  concurrency: 1\n");
    gcs_project(two.path(), &state, 50, &server.url, "limits:\n  concurrency: 1\n");

    let mut first = Killed(Some(spawn_apply(one.path())));
    wait_until("the first invocation", Duration::from_secs(20), || !server.bodies().is_empty());
    let second = apply(two.path());
    assert_eq!(second.status.code(), Some(1));
    let message = stderr(&second);
    let pid = first.child().id();
    assert!(message.contains("the state is locked: `gs://rowcast-state/team/state.lock`"));
    assert!(message.contains("is held by `rowcast apply` on host"), "{message}");
    assert!(message.contains(&format!("(pid {pid}) since 20")), "{message}");

    let status = rowcast(two.path(), &["lock", "status"]);
    assert_eq!(status.status.code(), Some(0));
    let text = stdout(&status);
    assert!(text.contains(&format!("(pid {pid})")) && text.contains("expires 20"), "{text}");
    assert!(text.contains("(live)"), "{text}");

    std::thread::sleep(Duration::from_millis(1500));
    assert!(first.child().try_wait().unwrap().is_none(), "the first apply still runs");
    let late = apply(two.path());
    assert_eq!(late.status.code(), Some(1), "the renewed lock still refuses");
    assert!(stderr(&late).contains(&format!("(pid {pid})")), "{}", stderr(&late));

    assert!(first.child().wait().unwrap().success());
    let status = stdout(&rowcast(two.path(), &["lock", "status"]));
    assert!(status.contains("is free"), "{status}");
    assert_eq!(server.bodies().len(), 50, "the refused applies sent nothing");
}

#[test]
fn a_write_back_is_refused_when_the_state_object_changed_underneath() {
    // Another writer replaced the state while this apply ran: its write-backs fail on
    // the generation precondition, the apply stops, and the other state stays intact.
    let emulator = Emulator::start();
    let server = TestServer::start(Duration::from_millis(50));
    let state = emulator.state_block("team", "200ms", "1m");
    let dir = tempfile::tempdir().unwrap();
    gcs_project(dir.path(), &state, 200, &server.url, "limits:\n  concurrency: 1\n");

    let child = Killed(Some(spawn_apply(dir.path())));
    wait_until("a first write-back", Duration::from_secs(20), || emulator.object(STATE).is_some());
    let (_, generation) = emulator.object(STATE).unwrap();
    let foreign = emulator.bucket().write(STATE, b"another writer's state".to_vec(), generation);
    let foreign = foreign.unwrap();

    let output = child.output();
    let message = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(
        message.contains(&format!(
            "the state object `gs://rowcast-state/{STATE}` changed since this run read it"
        )),
        "{message}"
    );
    assert!(message.contains(&format!("now {foreign}): another rowcast wrote it")), "{message}");
    assert!(message.contains("nothing was overwritten; run again"), "{message}");
    let (bytes, now) = emulator.object(STATE).unwrap();
    assert_eq!((bytes.as_slice(), now), (&b"another writer's state"[..], foreign));
    assert!(server.bodies().len() < 200, "the deliveries stopped");
}

#[test]
fn a_stale_lock_is_broken_with_yes_and_refused_without_a_terminal() {
    // A lock object left by a runner that died: `lock status` names it, `lock break`
    // refuses off a terminal without `--yes`, and removes it with `--yes`.
    let emulator = Emulator::start();
    let server = TestServer::start(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    gcs_project(dir.path(), &emulator.state_block("team", "30s", "15m"), 3, &server.url, "");
    let record = r#"{"host":"runner-7","pid":4242,"since":"2026-01-01T00:00:00Z",
        "command":"apply","expires":"2999-01-01T00:00:00.000Z","ttl_seconds":900.0}"#;
    emulator.bucket().write(LOCK, record.as_bytes().to_vec(), 0).unwrap();

    let refused = apply(dir.path());
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert!(message.contains("on host `runner-7` (pid 4242) since 2026-01-01T00:00:00Z"));
    assert!(message.contains("run `rowcast lock break`"), "{message}");

    let status = stdout(&rowcast(dir.path(), &["lock", "status"]));
    assert!(status.contains("held by `rowcast apply` on host `runner-7` (pid 4242)"), "{status}");
    assert!(status.contains("expires 2999-01-01T00:00:00.000Z (live)"), "{status}");

    let output = rowcast(dir.path(), &["lock", "break"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("pass `--yes` to break it"), "{}", stderr(&output));
    assert!(emulator.object(LOCK).is_some(), "nothing was removed without a confirmation");

    let output = rowcast(dir.path(), &["lock", "break", "--yes"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("Broke the lock"), "{}", stdout(&output));
    assert!(emulator.object(LOCK).is_none());
    assert_eq!(apply(dir.path()).status.code(), Some(0));
    assert_eq!(server.bodies().len(), 3);
}

#[test]
fn an_expired_lock_is_taken_over_with_a_warning() {
    // A lock past its time-to-live is presumed dead and taken over, with a warning.
    let emulator = Emulator::start();
    let server = TestServer::start(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    gcs_project(dir.path(), &emulator.state_block("team", "30s", "15m"), 3, &server.url, "");
    let record = r#"{"host":"runner-7","pid":4242,"since":"2026-01-01T00:00:00Z",
        "command":"apply","expires":"2026-01-01T00:15:00.000Z","ttl_seconds":900.0}"#;
    emulator.bucket().write(LOCK, record.as_bytes().to_vec(), 0).unwrap();

    let output = apply(dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(log.contains("taking over a lock whose time-to-live has passed"), "{log}");
    assert!(log.contains("holder_host=\"runner-7\"") && log.contains("holder_pid=4242"), "{log}");
    assert!(emulator.object(LOCK).is_none(), "the new holder released it");
}

#[test]
fn a_killed_apply_loses_nothing_and_the_next_run_says_what_it_sends_again() {
    // kill -9 in the middle of an apply: the next run (on an empty runner, once the lock's
    // time-to-live has passed) takes over, warns that it re-sends what was acknowledged
    // after the last write-back, and sends every row, repeating only that window.
    const ROWS: usize = 1000;
    let emulator = Emulator::start();
    let server = TestServer::start(Duration::from_millis(15));
    let state = emulator.state_block("team", "300ms", "2s");
    let extra = "limits:\n  concurrency: 4\n";
    let first = tempfile::tempdir().unwrap();
    gcs_project(first.path(), &state, ROWS, &server.url, extra);

    let mut child = Killed(Some(spawn_apply(first.path())));
    wait_until("two write-backs", Duration::from_secs(30), || {
        server.bodies().len() >= 300 && emulator.object(STATE).is_some()
    });
    std::thread::sleep(Duration::from_millis(500));
    child.child().kill().unwrap(); // SIGKILL
    child.child().wait().unwrap();
    let sent_before_kill = server.bodies().len();
    assert!(sent_before_kill < ROWS, "the apply was killed while delivering");
    assert!(emulator.object(LOCK).is_some(), "a killed apply leaves its lock behind");

    // The lock lapses two seconds after its last renewal.
    std::thread::sleep(Duration::from_millis(2500));
    let second = tempfile::tempdir().unwrap();
    gcs_project(second.path(), &state, ROWS, &server.url, extra);
    let output = apply(second.path());
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("taking over a lock whose time-to-live has passed"), "{log}");
    assert!(log.contains("the last run on this state stopped before it finished"), "{log}");
    assert!(log.contains("is sent again by this run"), "{log}");

    let mut times_sent: BTreeMap<String, usize> = BTreeMap::new();
    for body in server.bodies() {
        *times_sent.entry(body["row"]["id"].to_string()).or_default() += 1;
    }
    assert_eq!(times_sent.len(), ROWS, "no row lost");
    let repeats: usize = times_sent.values().map(|n| n - 1).sum();
    // Only what was acknowledged after the last write-back (at most 300 ms plus 500 ms
    // of margin, about 270 rows a second) and what was in flight is sent again.
    eprintln!("{repeats} repeats of {sent_before_kill} invocations sent before the kill");
    assert!(repeats <= 260, "{repeats} repeats of {sent_before_kill} sent before the kill");

    let plan = common::TestProject { dir: second }.plan_json(&[]);
    assert_eq!(counts(&plan, "s"), (0, 0, 0, 0, 0), "every row is in the bucket's snapshot");
}

#[test]
fn a_cancelled_apply_writes_back_what_was_acknowledged_and_releases_the_lock() {
    // SIGTERM, as a cancelled CI job gets: the apply commits, writes the state back and
    // releases the lock, so the next runner goes on at once and sends only the rest.
    let emulator = Emulator::start();
    let server = TestServer::start(Duration::from_millis(20));
    let state = emulator.state_block("team", "30s", "15m");
    let extra = "limits:\n  concurrency: 2\n";
    let first = tempfile::tempdir().unwrap();
    gcs_project(first.path(), &state, 400, &server.url, extra);

    let mut child = Killed(Some(spawn_apply(first.path())));
    wait_until("some deliveries", Duration::from_secs(20), || server.bodies().len() >= 50);
    // SAFETY: signalling the child this test spawned.
    unsafe { libc::kill(child.child().id() as i32, libc::SIGTERM) };
    let output = child.output();
    assert_eq!(output.status.code(), Some(130), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(emulator.object(LOCK).is_none(), "the lock was released");
    let sent = server.bodies().len();
    assert!(sent < 400, "the apply stopped early");

    let second = tempfile::tempdir().unwrap();
    gcs_project(second.path(), &state, 400, &server.url, extra);
    let output = apply(second.path());
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(!log.contains("stopped before it finished"), "a cancelled run finished: {log}");
    assert_eq!(server.bodies().len(), 400, "the rest, and only the rest, sent by the next run");
}
