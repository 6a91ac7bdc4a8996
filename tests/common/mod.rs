//! Helpers shared by the integration tests: the built binary, the repository root and
//! scratch projects.

#![allow(dead_code)]

pub mod function;
pub mod gcs;
pub mod google;

use std::path::{Path, PathBuf};
use std::process::Output;

/// The repository root, which is also the example project.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `rowcast` run in `dir` with `args`, with no environment variable the tests rely on
/// being unset leaking in.
pub fn rowcast(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rowcast"))
        .current_dir(dir)
        .args(args)
        .env_remove("ROWCAST_EXAMPLE_UNSET_PROJECT")
        // A proxy variable would send invocations through reqwest instead of hyper.
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env("NO_COLOR", "1")
        .output()
        .expect("the rowcast binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the process did not panic, whatever its exit code.
pub fn assert_no_panic(output: &Output) {
    let err = stderr(output);
    assert!(!err.contains("panicked"), "rowcast panicked:\n{err}");
    assert_ne!(output.status.code(), Some(101), "exit code 101 is a panic:\n{err}");
}

/// A scratch project in a temporary folder: `rowcast.yaml`, a DuckDB warehouse file and a
/// `syncs/` folder, with the state under `.rowcast/`.
pub struct TestProject {
    pub dir: tempfile::TempDir,
}

impl TestProject {
    pub fn new() -> TestProject {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::create_dir(dir.path().join("syncs")).unwrap();
        std::fs::write(
            dir.path().join("rowcast.yaml"),
            "name: test\nwarehouse:\n  type: duckdb\n  path: warehouse.duckdb\n",
        )
        .unwrap();
        TestProject { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs SQL in the warehouse file, creating it when missing.
    pub fn warehouse(&self, sql: &str) {
        let conn = duckdb::Connection::open(self.path().join("warehouse.duckdb")).unwrap();
        conn.execute_batch(sql).unwrap();
    }

    /// Writes `syncs/NAME.yaml` with the given model and options; the destination is a
    /// loopback URL nobody listens on, since planning never calls it.
    pub fn sync(&self, name: &str, sql: &str, key: &str, extra: &str) {
        let sql = sql.replace('\n', " ");
        let text = format!(
            "name: {name}\nmodel:\n  sql: \"{sql}\"\n  primary_key: {key}\n\
             destination:\n  type: http\n  url: http://127.0.0.1:9/hook\n{extra}"
        );
        let text = if extra.contains("triggers:") {
            text
        } else {
            format!("{text}\ntriggers: [added, changed, removed]\n")
        };
        let text = if text.contains("initial_sync:") {
            text
        } else {
            format!("{text}initial_sync: backfill\n")
        };
        std::fs::write(self.path().join(format!("syncs/{name}.yaml")), text).unwrap();
    }

    pub fn rowcast(&self, args: &[&str]) -> Output {
        rowcast(self.path(), args)
    }

    /// `plan --format json` parsed.
    pub fn plan_json(&self, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["plan", "--format", "json"];
        args.extend_from_slice(extra);
        let output = self.rowcast(&args);
        assert_no_panic(&output);
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!("plan JSON does not parse ({e}):\n{}{}", stdout(&output), stderr(&output))
        })
    }

    /// Plans every sync and commits every planned row, as if the function had
    /// acknowledged all of them.
    pub fn commit_everything(&self) {
        let workspace = rowcast::workspace::Workspace::open(self.path(), None).unwrap();
        let plan = rowcast::plan::plan_project(
            &workspace.project,
            &workspace.db,
            &workspace.source,
            &[],
            0,
        )
        .unwrap();
        for sync in plan.planned() {
            rowcast::state::commit::commit_planned(
                &workspace.db.conn,
                &sync.name,
                "true",
                &sync.columns,
            )
            .unwrap();
        }
    }
}

/// The counts of one sync in a JSON plan: (added, changed, removed, silent, pending).
pub fn counts(plan: &serde_json::Value, sync: &str) -> (u64, u64, u64, u64, u64) {
    let entry = plan["syncs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == sync)
        .unwrap_or_else(|| panic!("no sync {sync} in {plan}"));
    let n = |k: &str| entry[k].as_u64().unwrap_or_else(|| panic!("{k} missing in {entry}"));
    (n("added"), n("changed"), n("removed"), n("silent"), n("pending"))
}

impl TestProject {
    /// Opens the project's state file read-only and runs `sql`, returning the first column
    /// of each row as text.
    pub fn state_query(&self, sql: &str) -> Vec<String> {
        self.state_query_at(".rowcast/state.duckdb", sql)
    }

    pub fn state_query_at(&self, state: &str, sql: &str) -> Vec<String> {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let path = self.path().join(state);
        conn.execute_batch(&format!("ATTACH '{}' AS state (READ_ONLY)", path.display())).unwrap();
        let mut statement = conn.prepare(sql).unwrap();
        let rows = statement.query_map([], |row| row.get::<_, String>(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }
}
