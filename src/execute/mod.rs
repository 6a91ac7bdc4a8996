//! The execute stage: deliver a change plan to each sync's function and commit what it
//! acknowledged. Per sync: rows that are not triggers are committed silently first; then
//! the batcher, the dispatcher (limits, invocation, classification, retries) and the
//! committer run together until every planned row has an outcome; finally the journal of
//! acknowledged changes is folded into the snapshot.

pub mod auth;
pub mod batch;
pub mod classify;
pub mod committer;
pub mod deliver;
pub mod destination;
pub mod payload;
pub mod progress;
pub mod retry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use self::batch::{handoff_capacity, read_batches, BatchLimits};
use self::committer::Committer;
use self::deliver::{deliver, Settings, Tally};
use self::destination::{Destination, HttpDestination};
use self::payload::Envelope;
use self::progress::Progress;
use self::retry::RetryPolicy;
use crate::manifest::SyncSource;
use crate::plan::{Plan, SyncPlan};
use crate::runs::record::{self, Finish, RunStatus};
use crate::state::commit::{commit_planned, fold_journal};
use crate::workspace::Workspace;

/// How an apply runs.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Send every selected sync to this URL with no credential instead of its destination.
    pub destination_url: Option<String>,
    /// No progress bar or progress lines.
    pub quiet: bool,
}

/// What happened to one sync.
#[derive(Debug, Clone)]
pub struct SyncReport {
    pub name: String,
    /// Rows planned for invocation.
    pub planned: u64,
    /// Rows committed without invoking.
    pub silent: u64,
    pub tally: Tally,
    /// Rows planned for invocation that were not acknowledged.
    pub pending: u64,
    pub duration: Duration,
    /// A rejected-rows threshold that was passed.
    pub threshold: Option<String>,
    /// Why the sync stopped, when it did.
    pub error: Option<String>,
}

/// What happened to every sync of an apply.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    pub run_id: String,
    pub syncs: Vec<SyncReport>,
    pub interrupted: bool,
}

/// Applies a plan made in (or loaded into) `workspace`'s connection.
pub fn apply(
    workspace: &Workspace,
    plan: &Plan,
    options: &ApplyOptions,
) -> anyhow::Result<ApplyReport> {
    // One thread runs the dispatcher, every invocation and every connection: measured,
    // it spends a quarter less processor time per invocation than a pool of workers that
    // wake one another. The batcher and the committer have threads of their own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (stop_sender, stop) = watch::channel(false);
    runtime.spawn(stop_on_signal(stop_sender));

    let run_id = uuid::Uuid::now_v7().to_string();
    // Always on, so every warning of the run carries its id and its sync.
    let _run = tracing::warn_span!("run", run_id = run_id.as_str()).entered();
    crate::runs::prune_bodies(workspace)?;
    let mut syncs = Vec::new();
    for sync_plan in plan.planned() {
        if *stop.borrow() {
            break;
        }
        let source = workspace
            .project
            .syncs
            .iter()
            .find(|s| s.manifest.name == sync_plan.name)
            .with_context(|| {
                format!("the plan names sync `{}`, which the project no longer has", sync_plan.name)
            })?;
        let report =
            recorded_sync(&runtime, workspace, source, sync_plan, &run_id, options, stop.clone())?;
        syncs.push(report);
    }
    fold_journal(&workspace.db.conn).context("cannot fold acknowledged rows into the snapshot")?;
    let interrupted = *stop.borrow();
    Ok(ApplyReport { run_id, syncs, interrupted })
}

/// Applies one sync within its run record: `running` before it starts, its status, counts
/// and error after it ends.
fn recorded_sync(
    runtime: &tokio::runtime::Runtime,
    workspace: &Workspace,
    source: &SyncSource,
    sync_plan: &SyncPlan,
    run_id: &str,
    options: &ApplyOptions,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<SyncReport> {
    let _sync = tracing::warn_span!("sync", sync = sync_plan.name.as_str()).entered();
    let conn = &workspace.db.conn;
    record::start_run(conn, run_id, &sync_plan.name, sync_plan.invoke.total())
        .context("cannot record the start of the run")?;
    let applied = apply_sync(runtime, workspace, source, sync_plan, run_id, options, stop);
    // The sync's acknowledged changes enter the snapshot, and become history events, before
    // its run is counted.
    let applied = applied.and_then(|report| {
        fold_journal(conn).context("cannot fold acknowledged rows into the snapshot")?;
        Ok(report)
    });
    let report = match applied {
        Ok(report) => report,
        Err(error) => {
            let message = format!("{error:#}");
            let finish = Finish {
                status: RunStatus::Failed,
                pending: sync_plan.invoke.total(),
                error: Some(&message),
                threshold: None,
            };
            let _ = record::finish_run(conn, run_id, &sync_plan.name, &finish);
            return Err(error);
        }
    };
    record::finish_run(conn, run_id, &sync_plan.name, &finish(&report))
        .context("cannot record the end of the run")?;
    tracing::info!(
        status = finish(&report).status.as_str(),
        acknowledged = report.tally.acknowledged,
        rejected = report.tally.rejected,
        failed = report.tally.failed,
        pending = report.pending,
        "sync finished"
    );
    Ok(report)
}

fn apply_sync(
    runtime: &tokio::runtime::Runtime,
    workspace: &Workspace,
    source: &SyncSource,
    plan: &SyncPlan,
    run_id: &str,
    options: &ApplyOptions,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<SyncReport> {
    let started = Instant::now();
    let conn = &workspace.db.conn;
    let manifest = &source.manifest;
    let silent = commit_planned(conn, &plan.name, "NOT invoke", &plan.columns)
        .with_context(|| format!("cannot commit the silent rows of `{}`", plan.name))?;
    record::record_silent(conn, run_id, &plan.name)
        .with_context(|| format!("cannot record the silent rows of `{}`", plan.name))?;
    let mut report = SyncReport {
        name: plan.name.clone(),
        planned: plan.invoke.total(),
        silent,
        tally: Tally::default(),
        pending: plan.invoke.total(),
        duration: Duration::ZERO,
        threshold: None,
        error: None,
    };
    if plan.invoke.total() == 0 {
        report.duration = started.elapsed();
        return Ok(report);
    }

    let destination = match HttpDestination::from_manifest(
        &plan.name,
        &manifest.destination,
        options.destination_url.as_deref(),
    ) {
        Ok(destination) => Arc::new(destination),
        Err(error) => {
            report.error = Some(error.to_string());
            return Ok(report);
        }
    };
    // Credentials that do not work stop the sync here, with every row still planned.
    if let Err(error) = runtime.block_on(destination.authenticate()) {
        report.error = Some(error.to_string());
        report.duration = started.elapsed();
        return Ok(report);
    }
    let envelope = Arc::new(Envelope {
        sync: plan.name.clone(),
        run_id: run_id.to_string(),
        primary_key_column: manifest.model.primary_key.clone(),
        batch_mode: manifest.batching.size > 1,
    });
    let settings = Settings {
        concurrency: manifest.limits.concurrency as usize,
        rate: manifest.limits.rate.clone(),
        timeout: manifest.timeout.get(),
        policy: RetryPolicy::new(&manifest.retry),
        grace: manifest.timeout.get() + Duration::from_secs(2),
        record_bodies: manifest.record_bodies.is_some(),
    };
    let limits = BatchLimits {
        rows: manifest.batching.size as usize,
        max_bytes: manifest.batching.max_request_bytes.map(|b| b as usize),
        envelope: envelope.size(),
    };

    let committer = Committer::start(
        conn.try_clone()?,
        plan.name.clone(),
        run_id.to_string(),
        limits.rows,
        workspace.write_back_hook(),
    )
    .context("cannot start the committer")?;
    let (sender, batches) = mpsc::channel(handoff_capacity(settings.concurrency, limits.rows));
    let reader_conn = conn.try_clone()?;
    let sync_name = plan.name.clone();
    let reader = std::thread::Builder::new()
        .name("batcher".into())
        .spawn(move || read_batches(reader_conn, sync_name, limits, sender))
        .context("cannot start the batch reader")?;

    let mut progress = Progress::new(&plan.name, plan.invoke.total(), options.quiet);
    let tally = runtime.block_on(deliver(
        destination.clone(),
        envelope,
        settings,
        batches,
        &committer,
        &mut progress,
        stop,
    ));
    progress.finish();
    let read = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the batch reader of `{}` panicked", plan.name))?;
    read.with_context(|| format!("cannot read the planned rows of `{}`", plan.name))?;
    committer.finish().with_context(|| format!("cannot commit the outcomes of `{}`", plan.name))?;

    report.pending = plan.invoke.total().saturating_sub(tally.acknowledged);
    report.threshold = threshold(manifest, &tally);
    report.error = tally
        .denied
        .as_ref()
        .map(|reason| denied_message(&plan.name, destination.as_ref(), reason));
    report.tally = tally;
    report.duration = started.elapsed();
    Ok(report)
}

/// How a sync's report reads in the run history.
fn finish(report: &SyncReport) -> Finish<'_> {
    let status = if report.error.is_some() {
        RunStatus::Failed
    } else if report.tally.interrupted {
        RunStatus::Interrupted
    } else if report.pending > 0 || report.threshold.is_some() {
        RunStatus::CompletedWithRejectedRows
    } else {
        RunStatus::Succeeded
    };
    Finish {
        status,
        pending: report.pending,
        error: report.error.as_deref(),
        threshold: report.threshold.as_deref(),
    }
}

/// The rejected-rows threshold this run passed, if any.
fn threshold(manifest: &crate::manifest::SyncManifest, tally: &Tally) -> Option<String> {
    let alerts = manifest.alerts.as_ref()?;
    let bad = tally.rejected + tally.failed;
    if let Some(max) = alerts.max_rejected_rows {
        if bad > max {
            return Some(format!(
                "{bad} rows were rejected or failed, above `alerts.max_rejected_rows` ({max})"
            ));
        }
    }
    let sent = tally.acknowledged + bad;
    if let (Some(max), true) = (alerts.max_rejected_percent, sent > 0) {
        let percent = bad as f64 * 100.0 / sent as f64;
        if percent > max {
            return Some(format!(
                "{percent:.1}% of the rows were rejected or failed, above `alerts.max_rejected_percent` ({max}%)"
            ));
        }
    }
    None
}

/// Why a sync stopped on 401 or 403: who was refused, by which function, and the one role
/// to grant. A 401 means the front end did not accept the token at all (missing, expired,
/// or for another audience); a 403, that the principal lacks the invoker role.
pub(crate) fn denied_message(sync: &str, destination: &impl Destination, reason: &str) -> String {
    let role = destination.invoker_role().unwrap_or("the role that lets it call the endpoint");
    let principal = match destination.principal() {
        Some(email) => format!("`{email}`"),
        None => "the principal rowcast runs as".to_string(),
    };
    let url = destination.url();
    // The reason starts with the status, as the classifier writes it.
    let fix = if reason.starts_with("HTTP 401") {
        format!(
            "The token was missing, expired, or issued for another audience than the function; \
             check the sync's `auth` (its `audience` defaults to the function URL), and that \
             {principal} holds `{role}` on that function"
        )
    } else {
        format!("Grant {principal} `{role}` on that function, and nothing more")
    };
    format!(
        "sync `{sync}`: the function at `{url}` refused rowcast's credentials ({reason}). {fix}. \
         The sync was stopped; its rows stay planned and are sent by the next run"
    )
}

/// Asks running deliveries to stop on SIGINT or SIGTERM.
async fn stop_on_signal(stop: watch::Sender<bool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut interrupt), Ok(mut terminate)) =
            (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
        else {
            return;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    let _ = stop.send(true);
}
