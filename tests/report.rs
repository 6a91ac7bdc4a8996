//! `rowcast runs show RUN_ID --html FILE` writes one self-contained page that headless
//! Chromium renders with its script run and no console message, and that a person can
//! read: the test leaves a screenshot (`ROWCAST_REPORT_SCREENSHOT=PATH` copies it).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::function::Recorder;
use common::{assert_no_panic, stderr, stdout, TestProject};

/// The browser: `ROWCAST_CHROMIUM`, else the first of Chromium (the Debian package that
/// `scripts/test.sh` installs when none is found) or Chrome on the PATH.
fn browser() -> String {
    if let Some(path) = std::env::var_os("ROWCAST_CHROMIUM") {
        return path.to_string_lossy().into_owned();
    }
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    };
    let names = ["chromium", "chromium-browser", "google-chrome"];
    names.into_iter().find(|name| on_path(name)).unwrap_or("chromium").to_string()
}

/// Headless Chromium on `page`, with `args`.
fn chromium(page: &Path, args: &[&str]) -> Output {
    Command::new(browser())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
        .args(["--enable-logging=stderr", "--v=0"])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs (scripts/test.sh installs the Debian package `chromium`)")
}

/// The console messages Chromium logged: errors, uncaught exceptions, logs.
fn console_messages(output: &Output) -> Vec<String> {
    stderr(output).lines().filter(|l| l.contains(":CONSOLE")).map(String::from).collect()
}

/// A run of two syncs: `orders` (200 rows, every twentieth rejected) delivered to the
/// recorder, and `events` whose function cannot be reached, so its rows fail.
fn run_worth_reporting(function: &Recorder) -> (TestProject, String) {
    let project = TestProject::new();
    project.warehouse(
        "CREATE TABLE orders AS SELECT i AS id, 'customer ' || i AS name,
            CASE WHEN i % 20 = 0 THEN 'customer ' || i || ' has no email address' END AS reject
         FROM range(1, 201) t(i);
         CREATE TABLE events AS SELECT i AS id FROM range(1, 11) t(i);",
    );
    project.sync("orders", "SELECT * FROM orders", "id", "limits:\n  concurrency: 4\n");
    let retry = "retry:\n  mode: immediately\n  attempts: 2\n  initial_backoff: 10ms\n  \
                 max_backoff: 20ms\n";
    project.sync("events", "SELECT * FROM events", "id", retry);
    // `orders` goes to the recorder; `events` keeps the address nobody listens on.
    let manifest = project.path().join("syncs/orders.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("http://127.0.0.1:9/hook", &function.url)).unwrap();

    let output = project.rowcast(&["apply", "--quiet"]);
    assert_no_panic(&output);
    assert_eq!(output.status.code(), Some(3), "{}{}", stdout(&output), stderr(&output));
    let list = project.rowcast(&["runs", "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    (project, runs["runs"][0]["run_id"].as_str().unwrap().to_string())
}

#[test]
fn the_html_report_renders_in_headless_chromium_without_console_messages() {
    // The detector works: a page with a failing script is caught.
    let scratch = tempfile::tempdir().unwrap();
    let broken = scratch.path().join("broken.html");
    std::fs::write(&broken, "<!DOCTYPE html><script>notDefined()</script>").unwrap();
    let output = chromium(&broken, &["--dump-dom"]);
    assert!(!console_messages(&output).is_empty(), "{}", stderr(&output));

    let function = Recorder::start();
    let (project, run_id) = run_worth_reporting(&function);
    let page = scratch.path().join("report.html");
    let output = project.rowcast(&["runs", "show", &run_id, "--html", page.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<link") && !html.contains(" src="), "nothing is fetched");
    assert!(html.contains("customer 20 has no email address"));
    assert!(html.contains("connection failed"), "the failed invocations say why");

    let dom = chromium(&page, &["--dump-dom"]);
    assert!(dom.status.success(), "{}", stderr(&dom));
    assert!(stdout(&dom).contains("data-rendered=\"ok\""), "the inline script ran");
    assert_eq!(console_messages(&dom), Vec::<String>::new());

    let screenshot = scratch.path().join("run-report.png");
    let shot = format!("--screenshot={}", screenshot.display());
    let output = chromium(&page, &[&shot, "--window-size=1280,1500"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(console_messages(&output), Vec::<String>::new());
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{} bytes", png.len());
    if let Some(copy) = std::env::var_os("ROWCAST_REPORT_SCREENSHOT") {
        std::fs::copy(&screenshot, copy).unwrap();
    }
}
