//! `rowcast validate` accepts the example project and reports every mistake of a folder
//! of broken manifests with file:line:column, the field and a hint, without panicking.

mod common;

use common::{assert_no_panic, repo, rowcast, stderr, stdout};

#[test]
fn the_example_project_is_valid() {
    let output = rowcast(&repo(), &["validate"]);
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(0), "{}{}", stdout(&output), stderr(&output));
    assert_eq!(stdout(&output), "4 files valid: 1 project file, 3 syncs\n");
}

#[test]
fn the_syncs_folder_alone_is_valid() {
    let output = rowcast(&repo(), &["validate", "syncs"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
}

#[test]
fn every_broken_manifest_is_reported_with_position_and_hint() {
    let output = rowcast(&repo(), &["validate", "tests/manifests/broken"]);
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);

    // Each broken file is named at least once, with a line and a column.
    let broken = std::fs::read_dir(repo().join("tests/manifests/broken")).unwrap();
    for entry in broken {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let prefix = format!("tests/manifests/broken/{name}:");
        let line = text.lines().find(|l| l.starts_with(&prefix));
        let line = line.unwrap_or_else(|| panic!("{name} is not reported:\n{text}"));
        let position: Vec<&str> = line[prefix.len()..].splitn(3, ':').collect();
        assert!(
            position[0].parse::<usize>().is_ok() && position[1].parse::<usize>().is_ok(),
            "{line}"
        );
    }

    // Every problem carries a hint.
    let problems = text.lines().filter(|l| l.starts_with("tests/")).count();
    let hints = text.lines().filter(|l| l.starts_with("  hint: ")).count();
    assert_eq!(problems, hints, "{text}");
    assert!(problems >= 15, "{text}");

    insta::assert_snapshot!(text);
}

#[test]
fn a_folder_without_manifests_is_a_problem_not_a_success() {
    let empty = tempfile::tempdir().unwrap();
    let output = rowcast(empty.path(), &["validate", "."]);
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("holds no sync manifests"), "{}", stdout(&output));
}

#[test]
fn a_folder_without_a_project_file_is_named() {
    let empty = tempfile::tempdir().unwrap();
    let output = rowcast(empty.path(), &["validate"]);
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("has no `rowcast.yaml`"), "{}", stdout(&output));
}

#[test]
fn a_missing_path_is_reported() {
    let output = rowcast(&repo(), &["validate", "syncs/nowhere.yaml"]);
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("`syncs/nowhere.yaml` does not exist"));
}
