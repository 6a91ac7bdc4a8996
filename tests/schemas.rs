//! The committed JSON Schemas and manifest reference equal what the types generate, and
//! an independent validator (check-jsonschema) agrees with rowcast about which manifests
//! the schema accepts.

mod common;

use std::process::Command;

use common::{repo, rowcast, stderr, stdout};

#[test]
fn committed_schemas_are_current() {
    let output = rowcast(&repo(), &["schema", "--check"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stale schemas; run `cargo run --release -- schema` and commit:\n{}",
        stderr(&output)
    );
}

fn check_jsonschema(schema: &str, files: &[String]) -> std::process::Output {
    Command::new("check-jsonschema")
        .current_dir(repo())
        .arg("--schemafile")
        .arg(schema)
        .args(files)
        .output()
        .expect("check-jsonschema is installed by scripts/test.sh (pip)")
}

#[test]
fn check_jsonschema_accepts_the_example_manifests() {
    let syncs: Vec<String> = std::fs::read_dir(repo().join("syncs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.strip_prefix(repo()).unwrap().display().to_string())
        .collect();
    assert_eq!(syncs.len(), 3);
    let output = check_jsonschema("schemas/sync.schema.json", &syncs);
    assert!(output.status.success(), "{}{}", stdout(&output), stderr(&output));

    let output = check_jsonschema("schemas/project.schema.json", &["rowcast.yaml".into()]);
    assert!(output.status.success(), "{}{}", stdout(&output), stderr(&output));
}

/// The broken manifests whose mistake is the schema's to catch; the others (duplicate
/// names, unset variables, URLs, files) need rowcast's own checks.
const SCHEMA_MISTAKES: &[&str] = &[
    "bad_duration",
    "bad_name",
    "bad_yaml",
    "batch_too_big",
    "bearer_without_env",
    "concurrency_zero",
    "empty_triggers",
    "missing_initial_sync",
    "missing_primary_key",
    "primary_key_expression",
    "rate_zero",
    "sql_and_sql_file",
    "unknown_destination",
    "unknown_field",
    "unknown_trigger",
    "wrong_type",
];

#[test]
fn check_jsonschema_rejects_each_schema_mistake() {
    for name in SCHEMA_MISTAKES {
        let file = format!("tests/manifests/broken/{name}.yaml");
        let output = check_jsonschema("schemas/sync.schema.json", std::slice::from_ref(&file));
        assert!(!output.status.success(), "check-jsonschema accepted {file}:\n{}", stdout(&output));

        let ours = rowcast(&repo(), &["validate", &file]);
        assert_eq!(ours.status.code(), Some(1), "rowcast accepted {file}");
    }
}
