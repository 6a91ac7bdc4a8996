//! `rowcast check [--sync NAME]...`: proves each selected sync's credentials and that its
//! function answers, without sending a row. An ID token is obtained when the sync's `auth`
//! calls for one, then the contract's check probe (a `GET` of the function URL with no
//! body) is sent. One line per sync; exit 1 when any sync fails, so a pipeline can stop
//! before `apply`.

use std::time::Duration;

use crate::cli::Cli;
use crate::execute::denied_message;
use crate::execute::destination::{Destination, HttpDestination, Reply};
use crate::exit::Outcome;
use crate::manifest::{Project, SyncManifest};
use crate::plan::diff::select_syncs;

/// How much of an unexpected answer's body is shown.
const BODY_CHARS: usize = 200;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check only this sync; repeat for several. Defaults to every sync.
    #[arg(long = "sync", value_name = "NAME")]
    pub syncs: Vec<String>,

    /// Probe this URL, with no credential, instead of each sync's destination: for a
    /// function served locally while it is written.
    #[arg(long, value_name = "URL")]
    pub destination_url: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let project = Project::load(&cli.project)?;
    let syncs = select_syncs(&project, &args.syncs)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    let mut failed = 0;
    for source in &syncs {
        let manifest = &source.manifest;
        match runtime.block_on(check_sync(manifest, args.destination_url.as_deref())) {
            Ok(detail) => println!("ok     sync `{}`: {detail}", manifest.name),
            Err(message) => {
                failed += 1;
                println!("error  {message}");
            }
        }
    }
    if failed > 0 {
        println!("{failed} of {} syncs failed the check", syncs.len());
        return Ok(Outcome::Error);
    }
    Ok(Outcome::Success)
}

/// Obtains the sync's credential and probes its function; `Ok` says what answered.
async fn check_sync(manifest: &SyncManifest, override_url: Option<&str>) -> Result<String, String> {
    let name = manifest.name.as_str();
    let destination = HttpDestination::from_manifest(name, &manifest.destination, override_url)
        .map_err(|error| error.to_string())?;
    let timeout = manifest.timeout.get();
    let reply = destination.probe(timeout).await.map_err(|error| error.to_string())?;
    judge(name, &destination, reply, timeout)
}

/// A 2xx passes; 401 and 403 say whom to grant what; anything else says what came back.
fn judge(
    sync: &str,
    destination: &HttpDestination,
    reply: Reply,
    timeout: Duration,
) -> Result<String, String> {
    let url = destination.url();
    let (status, body) = match reply {
        Reply::Answered { status, body, .. } => (status, body),
        Reply::TimedOut => {
            return Err(format!(
                "sync `{sync}`: the function at `{url}` did not answer the check probe within \
                 the sync's timeout of {}s",
                timeout.as_secs_f64()
            ))
        }
        Reply::Unreachable(error) => {
            return Err(format!(
                "sync `{sync}`: the function at `{url}` cannot be reached ({error})"
            ))
        }
    };
    let reason = status_reason(status, &body);
    match status {
        200..=299 => Ok(match destination.principal() {
            Some(principal) => format!("`{url}` answered HTTP {status} to `{principal}`"),
            None => format!("`{url}` answered HTTP {status}"),
        }),
        401 | 403 => Err(denied_message(sync, destination, &reason)),
        _ => Err(format!(
            "sync `{sync}`: the function at `{url}` answered the check probe (a `GET` with no \
             body) with {reason}; a function that follows the rowcast contract answers it with \
             a 2xx without doing any work (see \"Writing and deploying a function\" in the README)"
        )),
    }
}

/// `HTTP 403`, followed by the start of the body unless it is an HTML page.
fn status_reason(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() || text.starts_with('<') {
        return format!("HTTP {status}");
    }
    format!("HTTP {status}: {}", text.chars().take(BODY_CHARS).collect::<String>())
}
