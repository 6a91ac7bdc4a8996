//! `rowcast lock status|break` on a local state: the OS lock names its live holder, and
//! `break` never removes a lock a live process holds, since the kernel releases it when
//! that process ends.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::function::TestServer;
use common::{stderr, stdout, TestProject};

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn local_lock_status_names_the_live_holder_and_break_removes_nothing() {
    // While an apply runs, status names its pid and break refuses naming it; after it
    // ends, the state is free without anyone breaking anything.
    let server = TestServer::start(Duration::from_millis(100));
    let project = TestProject::new();
    project.warehouse("CREATE TABLE t AS SELECT i AS id FROM range(1, 21) t(i)");
    project.sync("s", "SELECT * FROM t", "id", "limits:\n  concurrency: 1\n");
    let state = ".rowcast/state.duckdb";
    let mut apply = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_rowcast"))
            .current_dir(project.path())
            .args(["apply", "--quiet", "--state", state, "--destination-url", &server.url])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.bodies().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = apply.0.id();

    let status = project.rowcast(&["lock", "status", "--state", state]);
    let text = stdout(&status);
    assert_eq!(status.status.code(), Some(0));
    assert!(text.contains("is locked by `rowcast apply` on host"), "{text}");
    assert!(text.contains(&format!("(pid {pid}) since 20")), "{text}");

    let refused = project.rowcast(&["lock", "break", "--yes", "--state", state]);
    let message = stderr(&refused);
    assert_eq!(refused.status.code(), Some(1), "{message}");
    assert!(message.contains("is held by a live process"), "{message}");
    assert!(message.contains(&format!("(pid {pid})")), "{message}");
    assert!(message.contains(&format!("`kill {pid}`")), "{message}");

    // However the holder ends (here, SIGKILL), the kernel releases its lock.
    apply.0.kill().unwrap();
    apply.0.wait().unwrap();
    let status = stdout(&project.rowcast(&["lock", "status", "--state", state]));
    assert!(status.contains("is free"), "{status}");
    let broken = project.rowcast(&["lock", "break", "--state", state]);
    assert_eq!(broken.status.code(), Some(0));
    assert!(stdout(&broken).contains("there is no lock to break"), "{}", stdout(&broken));
}
