//! The commands the GitOps workflows run (`scripts/gitops/plan.sh` in plan.yml,
//! `scripts/gitops/apply.sh` in apply.yml) work on the example project, on runners that
//! start empty: its state lives in a Cloud Storage emulator, and its syncs are sent to
//! the Python example function served by the Functions Framework.

mod common;

use std::path::Path;
use std::process::Output;

use common::function::Recorder;
use common::gcs::Emulator;
use common::repo;

/// A fresh copy of the example project, as a runner checks it out, with its warehouse
/// built, its state in `emulator` and every sync sent to `url`.
fn checkout(emulator: &Emulator, url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["syncs", "warehouse", "warehouse/data"] {
        std::fs::create_dir_all(dir.path().join(folder)).unwrap();
        for entry in std::fs::read_dir(repo().join(folder)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let relative = path.strip_prefix(repo()).unwrap();
                std::fs::copy(&path, dir.path().join(relative)).unwrap();
            }
        }
    }
    let project = std::fs::read_to_string(repo().join("rowcast.yaml")).unwrap();
    let local = "state:\n  backend: local\n  path: .rowcast/state.duckdb\n";
    assert!(project.contains(local), "the example project's state block changed");
    let state = emulator.state_block("acme-shop/", "30s", "15m");
    std::fs::write(dir.path().join("rowcast.yaml"), project.replace(local, &state)).unwrap();
    for entry in std::fs::read_dir(dir.path().join("syncs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let mut manifest: serde_yaml::Value =
                serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            manifest["destination"] =
                serde_yaml::from_str(&format!("{{type: http, url: '{url}'}}")).unwrap();
            std::fs::write(&path, serde_yaml::to_string(&manifest).unwrap()).unwrap();
        }
    }
    rowcast::model::example::build_warehouse(dir.path()).unwrap();
    dir
}

/// Runs a GitOps script as its workflow step does, with the outputs inside `dir`.
fn script(name: &str, dir: &Path) -> Output {
    std::process::Command::new(repo().join("scripts/gitops").join(name))
        .env("ROWCAST", env!("CARGO_BIN_EXE_rowcast"))
        .env("ROWCAST_PROJECT", dir)
        .env("ROWCAST_COMMENT", dir.join("comment.md"))
        .env("ROWCAST_SUMMARY", dir.join("summary.txt"))
        .current_dir(dir)
        .output()
        .unwrap()
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

#[test]
fn the_workflow_scripts_plan_apply_and_fail_on_thresholds_and_invalid_manifests() {
    // The pull request's plan is posted as one marked comment; the merge's apply leaves
    // the state in the bucket for the next runner; a tripped threshold and an invalid
    // manifest each fail their step.
    let emulator = Emulator::start();
    let function = Recorder::serve(&repo().join("examples/functions/python"), "handle_rows");

    let runner = checkout(&emulator, &function.url);
    let plan = script("plan.sh", runner.path());
    assert_eq!(plan.status.code(), Some(0), "{}", describe(&plan));
    let comment = read(runner.path(), "comment.md");
    assert!(comment.starts_with("<!-- rowcast-plan -->\n### rowcast plan for"), "{comment}");
    assert!(comment.contains("crm_hydration") && comment.contains("60"), "{comment}");

    // Day 1: one customer has no email address (1 of 60 rejected, under the 2.5%
    // threshold): a warning, the row stays pending, the step passes.
    let apply = script("apply.sh", runner.path());
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    assert!(
        describe(&apply).contains("::warning::some rows were rejected"),
        "{}",
        describe(&apply)
    );
    let summary = read(runner.path(), "summary.txt");
    assert!(summary.contains("crm_hydration") && summary.contains("\nrun "), "{summary}");
    assert!(emulator.object("acme-shop/state.duckdb").is_some(), "the state is in the bucket");
    assert!(emulator.object("acme-shop/state.lock").is_none(), "the lock was released");
    let invoked = function.records().len();

    // Day 2 on a new runner: only the day's changes are sent, and the CRM's rejected row
    // is now one of three, past the threshold: the step fails.
    let runner = checkout(&emulator, &function.url);
    rowcast::model::example::next_day(runner.path()).unwrap();
    let apply = script("apply.sh", runner.path());
    assert_eq!(apply.status.code(), Some(1), "{}", describe(&apply));
    let summary = read(runner.path(), "summary.txt");
    assert!(summary.contains("threshold passed in `crm_hydration`"), "{summary}");
    let day_two = function.records().len() - invoked;
    assert!(day_two < 20, "{day_two} invocations: the day's changes only, not a backfill");

    // An invalid manifest fails the plan check, and the comment says why.
    std::fs::write(runner.path().join("syncs/broken.yaml"), "name: [not, a, name]\n").unwrap();
    let plan = script("plan.sh", runner.path());
    assert_eq!(plan.status.code(), Some(1), "{}", describe(&plan));
    let comment = read(runner.path(), "comment.md");
    assert!(comment.starts_with("<!-- rowcast-plan -->\n### rowcast plan\n"), "{comment}");
    assert!(comment.contains("**The manifests are invalid; nothing was planned.**"), "{comment}");
    assert!(comment.contains("broken.yaml"), "{comment}");
}
