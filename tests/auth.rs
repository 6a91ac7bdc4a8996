//! Google credentials for a function deployed with `--no-allow-unauthenticated`: every
//! token source yields an ID token whose audience is the function, which local stand-ins
//! for Google's token endpoint, metadata server, IAM Credentials API and function front
//! end verify as Google would; refusals stop the sync with the role to grant, tokens are
//! refreshed once for all concurrent invocations, and no token is ever printed.

mod common;

use std::process::Output;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::google::{now_secs, GoogleStandIn, KEY_ACCOUNT, METADATA_ACCOUNT, TARGET_ACCOUNT};
use common::{assert_no_panic, counts, stderr, stdout, TestProject};

/// Variables that would make rowcast look for credentials on this machine; each test
/// sets the ones it means.
const CREDENTIAL_VARIABLES: &[&str] = &[
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GCE_METADATA_HOST",
    "ROWCAST_IAM_CREDENTIALS_ENDPOINT",
    "ROWCAST_TOKEN_REFRESH_MARGIN",
];

/// A project with `rows` rows and one sync `s` to the stand-in's function, whose
/// destination has the given `auth` block (YAML, indented under `destination`) and extra
/// top-level options.
fn project(google: &GoogleStandIn, rows: u32, auth: &str, extra: &str) -> TestProject {
    let project = TestProject::new();
    project.warehouse(&format!(
        "CREATE TABLE t AS SELECT i AS id, 'name ' || i AS name FROM range(1, {}) t(i)",
        rows + 1
    ));
    write_sync(google, &project, auth, extra);
    project
}

/// Writes (or rewrites) the manifest of sync `s`.
fn write_sync(google: &GoogleStandIn, project: &TestProject, auth: &str, extra: &str) {
    let manifest = format!(
        "name: s\nmodel:\n  sql: SELECT * FROM t\n  primary_key: id\n\
         destination:\n  type: google_cloud_function\n  url: {url}\n{auth}\
         triggers: [added, changed, removed]\ninitial_sync: backfill\n{extra}",
        url = google.function_url(),
    );
    std::fs::write(project.path().join("syncs/s.yaml"), manifest).unwrap();
}

/// Writes the stand-in's service account key file into the project and returns its path.
fn key_file(google: &GoogleStandIn, project: &TestProject) -> String {
    let path = project.path().join("service-account.json");
    std::fs::write(&path, google.key_file_json()).unwrap();
    path.display().to_string()
}

/// `rowcast` in the project with only the credential variables given.
/// The `auth` block of a sync that signs with the stand-in's key file, with `more` lines.
fn key_file_auth(google: &GoogleStandIn, project: &TestProject, more: &str) -> String {
    let path = key_file(google, project);
    format!("  auth:\n    method: service_account_key\n    key_file: {path}\n{more}")
}

fn run(project: &TestProject, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rowcast"));
    command.current_dir(project.path()).args(args).env("NO_COLOR", "1");
    for name in CREDENTIAL_VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let output = command.output().expect("the rowcast binary runs");
    assert_no_panic(&output);
    output
}

fn apply(project: &TestProject, env: &[(&str, &str)]) -> Output {
    run(project, &["apply", "--quiet"], env)
}

fn text(output: &Output) -> String {
    format!("{}{}", stdout(output), stderr(output))
}

/// No token or key that reached the stand-ins appears in what rowcast printed, in a plan,
/// or in the state.
fn assert_no_secret_leaked(google: &GoogleStandIn, project: &TestProject, outputs: &[&Output]) {
    let plan = run(project, &["plan", "--format", "json", "--show-rows", "100"], &[]);
    let mut places: Vec<String> = outputs.iter().map(|o| text(o)).collect();
    places.push(text(&plan));
    for table in ["snapshot", "pending", "syncs", "rowcast_meta"] {
        let rows = project.state_query(&format!("SELECT CAST(t AS VARCHAR) FROM state.{table} t"));
        places.push(rows.join("\n"));
    }
    let tokens = google.seen.tokens_seen.lock().unwrap().clone();
    assert!(!tokens.is_empty(), "some token reached the stand-ins");
    for header in tokens {
        let token = header.trim_start_matches("Bearer ");
        for place in &places {
            assert!(!place.contains(token), "a token was written out:\n{place}");
        }
    }
    let key = google.key_file_json();
    let key: serde_json::Value = serde_json::from_str(&key).unwrap();
    let pem_line = key["private_key"].as_str().unwrap().lines().nth(1).unwrap().to_string();
    for place in &places {
        assert!(!place.contains(&pem_line), "the private key was written out");
    }
}

#[test]
fn a_key_file_assertion_is_verified_and_its_id_token_accepted_by_the_function() {
    let google = GoogleStandIn::start();
    let project = project(&google, 20, "", "");
    write_sync(&google, &project, &key_file_auth(&google, &project, ""), "");

    let output = apply(&project, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(google.refusals(), vec![], "the front end let every invocation through");
    assert_eq!(google.seen.invocations.load(Ordering::SeqCst), 20);
    assert_eq!(google.seen.id_token_grants.load(Ordering::SeqCst), 1, "one token for all");
    assert!(google.seen.refused_grants.lock().unwrap().is_empty());
    assert_eq!(counts(&project.plan_json(&[]), "s"), (0, 0, 0, 0, 0));
    assert_no_secret_leaked(&google, &project, &[&output]);
}

#[test]
fn the_metadata_server_is_asked_for_a_token_with_the_function_as_audience() {
    let google = GoogleStandIn::start();
    let project = project(&google, 5, "  auth:\n    method: metadata_server\n", "");
    let output = apply(&project, &[("GCE_METADATA_HOST", &google.host)]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(google.seen.invocations.load(Ordering::SeqCst), 5);
    assert_eq!(*google.seen.metadata_audiences.lock().unwrap(), vec![google.function_url()]);
    assert_no_secret_leaked(&google, &project, &[&output]);
}

#[test]
fn application_default_credentials_try_the_key_file_then_the_metadata_server() {
    let google = GoogleStandIn::start();
    let project = project(&google, 3, "", "");
    let path = key_file(&google, &project);
    let metadata = ("GCE_METADATA_HOST", google.host.as_str());

    let output = apply(&project, &[("GOOGLE_APPLICATION_CREDENTIALS", &path), metadata]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(google.seen.id_token_grants.load(Ordering::SeqCst), 1);
    assert!(google.seen.metadata_audiences.lock().unwrap().is_empty());

    project.warehouse("UPDATE t SET name = 'renamed'");
    let output = apply(&project, &[metadata]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(google.seen.metadata_audiences.lock().unwrap().len(), 1);
    assert_eq!(google.seen.invocations.load(Ordering::SeqCst), 6);
}

#[test]
fn impersonation_trades_the_callers_access_token_for_the_targets_id_token() {
    let google = GoogleStandIn::start();
    // Only the impersonated account may invoke, so the caller's own identity would fail.
    google.settings().invokers = [TARGET_ACCOUNT.to_string()].into();
    let auth = format!("  auth:\n    method: impersonate\n    service_account: {TARGET_ACCOUNT}\n");
    let project = project(&google, 10, &auth, "");
    let path = key_file(&google, &project);
    let env = [
        ("GOOGLE_APPLICATION_CREDENTIALS", path.as_str()),
        ("ROWCAST_IAM_CREDENTIALS_ENDPOINT", google.base.as_str()),
    ];

    let output = apply(&project, &env);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(google.refusals(), vec![]);
    assert_eq!(google.seen.invocations.load(Ordering::SeqCst), 10);
    assert_eq!(google.seen.access_token_grants.load(Ordering::SeqCst), 1);
    assert_eq!(google.seen.impersonations.load(Ordering::SeqCst), 1);
    assert_no_secret_leaked(&google, &project, &[&output]);
}

#[test]
fn a_bearer_token_from_the_environment_is_sent_and_never_shown() {
    let google = GoogleStandIn::start();
    let auth = "  auth:\n    method: bearer_token_env\n    env: ROWCAST_TEST_ID_TOKEN\n";
    let project = project(&google, 4, auth, "");
    let token = google.mint_id_token(KEY_ACCOUNT, &google.function_url(), now_secs() + 600);
    let output = apply(&project, &[("ROWCAST_TEST_ID_TOKEN", &token)]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(google.seen.invocations.load(Ordering::SeqCst), 4);
    assert_no_secret_leaked(&google, &project, &[&output]);
}

/// A refused apply: exit 1, the sync stopped, and every row still planned with nothing
/// marked failed. Returns what rowcast printed.
fn assert_refused_and_stopped(project: &TestProject, output: &Output) -> String {
    let printed = text(output);
    assert_eq!(output.status.code(), Some(1), "{printed}");
    assert!(printed.contains("refused rowcast's credentials"), "{printed}");
    assert!(printed.contains("rows stay planned"), "{printed}");
    let pending = project.state_query("SELECT key FROM state.pending");
    assert!(pending.is_empty(), "rows were failed one by one: {pending:?}");
    let (added, ..) = counts(&project.plan_json(&[]), "s");
    assert_eq!(added, 30, "every row is still planned");
    printed
}

#[test]
fn missing_expired_and_wrong_audience_tokens_get_401_and_stop_the_sync() {
    let google = GoogleStandIn::start();
    let limits = "limits:\n  concurrency: 2\n";

    // No token at all.
    let project = project(&google, 30, "  auth:\n    method: none\n", limits);
    let output = apply(&project, &[]);
    let printed = assert_refused_and_stopped(&project, &output);
    assert!(printed.contains("HTTP 401"), "{printed}");
    assert!(printed.contains("roles/run.invoker"), "{printed}");

    // A token that expired a minute ago.
    let auth = "  auth:\n    method: bearer_token_env\n    env: ROWCAST_TEST_ID_TOKEN\n";
    write_sync(&google, &project, auth, limits);
    let stale = google.mint_id_token(KEY_ACCOUNT, &google.function_url(), now_secs() - 60);
    let output = apply(&project, &[("ROWCAST_TEST_ID_TOKEN", &stale)]);
    assert_refused_and_stopped(&project, &output);

    // A token minted for another audience.
    let other = "    audience: https://other-function.example/\n";
    write_sync(&google, &project, &key_file_auth(&google, &project, other), limits);
    let output = apply(&project, &[]);
    assert_refused_and_stopped(&project, &output);

    let refusals = google.refusals();
    assert!(refusals.iter().all(|(status, _)| *status == 401), "{refusals:?}");
    assert!(refusals.len() <= 3 * 2, "each sync stopped at once: {refusals:?}");
    assert_eq!(google.seen.invocations.load(Ordering::SeqCst), 0);
}

#[test]
fn a_principal_without_the_invoker_role_gets_403_naming_principal_function_and_role() {
    let google = GoogleStandIn::start();
    google.settings().invokers.clear();
    let project = project(&google, 30, "", "limits:\n  concurrency: 3\n");
    let auth = format!("  generation: gen1\n{}", key_file_auth(&google, &project, ""));
    write_sync(&google, &project, &auth, "limits:\n  concurrency: 3\n");

    let output = apply(&project, &[]);
    let printed = assert_refused_and_stopped(&project, &output);
    assert!(printed.contains("HTTP 403"), "{printed}");
    assert!(printed.contains(KEY_ACCOUNT), "{printed}");
    assert!(printed.contains(&google.function_url()), "{printed}");
    assert!(printed.contains("roles/cloudfunctions.invoker"), "{printed}");
    assert!(google.refusals().len() <= 3, "the sync stopped at once: {:?}", google.refusals());
}

#[test]
fn tokens_are_refreshed_across_expiry_once_for_all_concurrent_invocations() {
    let google = GoogleStandIn::start();
    {
        let mut settings = google.settings();
        settings.id_token_lifetime = Duration::from_secs(3);
        // A slow token endpoint: invocations that each asked for a token would overlap.
        settings.grant_delay = Duration::from_millis(300);
    }
    // 120 invocations at 20 per second, 8 at a time: six seconds, two token lifetimes.
    let limits = "limits:\n  concurrency: 8\n  rate:\n    requests: 20\n    per: second\n";
    let project = project(&google, 120, "", limits);
    write_sync(&google, &project, &key_file_auth(&google, &project, ""), limits);

    let started = Instant::now();
    let output = apply(&project, &[("ROWCAST_TOKEN_REFRESH_MARGIN", "1s")]);
    let elapsed = started.elapsed();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(google.refusals(), vec![], "no invocation was sent with an expired token");
    assert_eq!(google.seen.invocations.load(Ordering::SeqCst), 120);

    let grants = google.seen.id_token_grants.load(Ordering::SeqCst);
    assert!(grants >= 2, "the token was refreshed as it expired ({grants} grants)");
    // At most one grant per second of the run (each token lives at least a second before
    // its refresh is due), plus the first.
    assert!(grants as u64 <= elapsed.as_secs() + 1, "{grants} grants in {elapsed:?}");
    assert_eq!(
        google.seen.max_grants_in_flight.load(Ordering::SeqCst),
        1,
        "one refresh at a time, shared by every invocation"
    );
}

#[test]
fn check_proves_the_credentials_and_names_the_role_when_refused() {
    let google = GoogleStandIn::start();
    let project = project(&google, 3, "", "");
    write_sync(&google, &project, &key_file_auth(&google, &project, ""), "");

    let output = run(&project, &["check"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(stdout(&output).starts_with("ok     sync `s`"), "{}", stdout(&output));
    assert!(stdout(&output).contains(KEY_ACCOUNT), "{}", stdout(&output));
    assert_eq!(counts(&project.plan_json(&[]), "s"), (3, 0, 0, 0, 0), "no row was sent");

    google.settings().invokers = [METADATA_ACCOUNT.to_string()].into();
    let output = run(&project, &["check"], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(stdout(&output).contains("roles/run.invoker"), "{}", stdout(&output));
    assert_no_secret_leaked(&google, &project, &[&output]);
}
