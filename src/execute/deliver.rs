//! Delivering one sync's planned rows: batches from the batcher (and retries) pass the
//! concurrency gate and the rate limiter, are sent, classified, and their outcome goes to
//! the committer; rows not delivered are retried under the sync's policy or left pending.

use std::collections::{HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backoff::ExponentialBackoff;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::batch::{Batched, PlannedRow};
use super::classify::{classify, Verdict};
use super::committer::Committer;
use super::destination::Destination;
use super::payload::Envelope;
use super::progress::Progress;
use super::retry::{Decision, RetryPolicy};
use crate::manifest::sync::{RateLimit, RatePeriod};
use crate::state::commit::{Acknowledged, NotDelivered, Outcomes};

/// Rows to send in one invocation, and where they are in their retry schedule.
struct Work {
    rows: Vec<PlannedRow>,
    attempt: u32,
    schedule: ExponentialBackoff,
}

/// How an invocation task ended.
enum Finished {
    Sent {
        work: Work,
        verdict: Verdict,
    },
    /// Stopped while waiting for the rate limiter; nothing was sent.
    NotStarted,
}

/// The limits and policy one delivery runs under.
pub struct Settings {
    pub concurrency: usize,
    pub rate: Option<RateLimit>,
    pub timeout: Duration,
    pub policy: RetryPolicy,
    /// How long in-flight invocations may finish after a stop was asked.
    pub grace: Duration,
}

/// What happened to one sync's rows.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub invocations: u64,
    pub rows_sent: u64,
    pub acknowledged: u64,
    pub rejected: u64,
    pub failed: u64,
    /// Set when the function refused the credentials and the sync was stopped.
    pub denied: Option<String>,
    pub interrupted: bool,
    pub unknown_keys: u64,
}

/// An evenly spaced limiter: `requests` per period with no burst, so any window of the
/// period holds at most `requests` (plus one) invocation starts.
pub fn limiter(rate: &RateLimit) -> DefaultDirectRateLimiter {
    let period = match rate.per {
        RatePeriod::Second => Duration::from_secs(1),
        RatePeriod::Minute => Duration::from_secs(60),
        RatePeriod::Hour => Duration::from_secs(3600),
    };
    let spacing = period / rate.requests.max(1);
    let quota = Quota::with_period(spacing.max(Duration::from_nanos(1)))
        .expect("a positive period")
        .allow_burst(NonZeroU32::MIN);
    RateLimiter::direct(quota)
}

/// Runs the delivery until every batch has an outcome, or a stop was asked.
pub async fn deliver<D: Destination>(
    destination: Arc<D>,
    envelope: Arc<Envelope>,
    settings: Settings,
    mut batches: mpsc::Receiver<Vec<Batched>>,
    committer: &Committer,
    progress: &mut Progress,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let limiter = settings.rate.as_ref().map(|rate| Arc::new(limiter(rate)));
    let (retry_sender, mut retries) = mpsc::unbounded_channel::<Work>();
    let mut in_flight: JoinSet<Finished> = JoinSet::new();
    let mut sleeping: JoinSet<()> = JoinSet::new();
    // Batches received from the batcher (which hands them over in groups) not yet started.
    let mut ready: VecDeque<Batched> = VecDeque::new();
    let mut tally = Tally::default();
    let mut batches_done = false;
    let mut stopping = false;
    let task_stop = stop.clone();

    loop {
        // Start whatever there is room for: retries first, then new batches.
        while in_flight.len() < settings.concurrency && !stopping {
            let work = if let Ok(work) = retries.try_recv() {
                work
            } else {
                match ready.pop_front() {
                    Some(Batched::Batch(rows)) => {
                        Work { rows, attempt: 1, schedule: settings.policy.schedule() }
                    }
                    Some(Batched::TooLarge(row, size)) => {
                        tally.rejected += 1;
                        progress.advance(0, 1);
                        committer.send(too_large(row, size)).await;
                        continue;
                    }
                    None => break,
                }
            };
            spawn(
                &mut in_flight,
                &destination,
                &envelope,
                &limiter,
                &settings,
                work,
                &task_stop,
                &mut tally,
            );
        }
        let idle = batches_done && ready.is_empty() && sleeping.is_empty() && retries.is_empty();
        if in_flight.is_empty() && (stopping || idle) {
            break;
        }
        let room = in_flight.len() < settings.concurrency && !stopping;
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s), if !stopping => {
                tracing::warn!(sync = envelope.sync, in_flight = in_flight.len(), "stopping: no new invocations");
                stopping = true;
                tally.interrupted = true;
            }
            Some(joined) = in_flight.join_next() => {
                let Ok(Finished::Sent { work, verdict }) = joined else { continue };
                let outcome = judge(work, verdict, &settings.policy, &mut tally, &envelope.sync);
                if let Some(message) = &tally.denied {
                    tracing::error!(sync = envelope.sync, reason = message.as_str(), "credentials refused, stopping the sync");
                    stopping = true;
                }
                progress.advance(outcome.outcomes.acknowledged.len() as u64, outcome.outcomes.not_delivered.len() as u64);
                if !committer.send(outcome.outcomes).await {
                    tracing::error!(sync = envelope.sync, "the committer stopped; no new invocations");
                    stopping = true;
                }
                for (delay, work) in outcome.retries {
                    let sender = retry_sender.clone();
                    sleeping.spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = sender.send(work);
                    });
                }
            }
            Some(_) = sleeping.join_next(), if !sleeping.is_empty() => {}
            Some(work) = retries.recv(), if room => {
                spawn(&mut in_flight, &destination, &envelope, &limiter, &settings, work, &task_stop, &mut tally);
            }
            next = batches.recv(), if room && !batches_done && ready.is_empty() => match next {
                Some(group) => ready.extend(group),
                None => batches_done = true,
            },
        }
    }

    // A stop: give what is in flight its grace period, then abandon it; its rows were not
    // committed, so the next run plans them again.
    if !in_flight.is_empty() {
        let deadline = Instant::now() + settings.grace;
        while let Ok(Some(joined)) =
            tokio::time::timeout_at(deadline.into(), in_flight.join_next()).await
        {
            if let Ok(Finished::Sent { work, verdict }) = joined {
                let outcome = judge(
                    work,
                    verdict,
                    &RetryPolicy::new(&crate::manifest::sync::Retry::NextRun),
                    &mut tally,
                    &envelope.sync,
                );
                progress.advance(
                    outcome.outcomes.acknowledged.len() as u64,
                    outcome.outcomes.not_delivered.len() as u64,
                );
                committer.send(outcome.outcomes).await;
            }
        }
        in_flight.abort_all();
    }
    sleeping.abort_all();
    tally
}

#[allow(clippy::too_many_arguments)]
fn spawn<D: Destination>(
    in_flight: &mut JoinSet<Finished>,
    destination: &Arc<D>,
    envelope: &Arc<Envelope>,
    limiter: &Option<Arc<DefaultDirectRateLimiter>>,
    settings: &Settings,
    work: Work,
    stop: &watch::Receiver<bool>,
    tally: &mut Tally,
) {
    tally.invocations += 1;
    tally.rows_sent += work.rows.len() as u64;
    let (destination, envelope, limiter) = (destination.clone(), envelope.clone(), limiter.clone());
    let (timeout, mut stop) = (settings.timeout, stop.clone());
    in_flight.spawn(async move {
        if let Some(limiter) = limiter {
            tokio::select! {
                _ = limiter.until_ready() => {}
                _ = stop.wait_for(|s| *s) => return Finished::NotStarted,
            }
        }
        let invocation_id = uuid::Uuid::now_v7().to_string();
        let body = envelope.body(&work.rows, &invocation_id, work.attempt);
        let reply = destination.send(body, timeout).await;
        let keys: HashSet<&str> = work.rows.iter().map(|r| r.key.as_str()).collect();
        let verdict = classify(reply, &keys, timeout);
        Finished::Sent { work, verdict }
    });
}

/// What one verdict means: outcomes to commit and work to retry.
struct Judged {
    outcomes: Outcomes,
    retries: Vec<(Duration, Work)>,
}

fn judge(
    work: Work,
    verdict: Verdict,
    policy: &RetryPolicy,
    tally: &mut Tally,
    sync: &str,
) -> Judged {
    let mut judged = Judged { outcomes: Outcomes::default(), retries: Vec::new() };
    let Work { rows, attempt, mut schedule } = work;
    match verdict {
        Verdict::Acknowledged { unknown_keys } => {
            warn_unknown(sync, &unknown_keys, tally);
            tally.acknowledged += rows.len() as u64;
            judged.outcomes.acknowledged = rows.into_iter().map(acknowledged).collect();
        }
        Verdict::Partial { rejected, unknown_keys } => {
            warn_unknown(sync, &unknown_keys, tally);
            let (refused, accepted): (Vec<_>, Vec<_>) =
                rows.into_iter().partition(|r| rejected.contains_key(&r.key));
            tally.acknowledged += accepted.len() as u64;
            judged.outcomes.acknowledged = accepted.into_iter().map(acknowledged).collect();
            let reason = |row: &PlannedRow| rejected[&row.key].clone();
            match policy.decide(attempt, refused.len(), false, None, &mut schedule) {
                Decision::RetryAfter(delay) | Decision::Split(delay) => {
                    tracing::warn!(sync, attempt, rows = refused.len(), "rows rejected, retrying");
                    judged
                        .retries
                        .push((delay, Work { rows: refused, attempt: attempt + 1, schedule }));
                }
                Decision::LeavePending => {
                    tally.rejected += refused.len() as u64;
                    judged.outcomes.not_delivered = refused
                        .iter()
                        .map(|r| NotDelivered {
                            key: r.key.clone(),
                            operation: r.operation,
                            reason: reason(r),
                            attempts: attempt,
                        })
                        .collect();
                }
            }
        }
        Verdict::Failed { reason, retry_after } => {
            match policy.decide(attempt, rows.len(), true, retry_after, &mut schedule) {
                Decision::Split(delay) => {
                    tracing::warn!(
                        sync,
                        attempt,
                        rows = rows.len(),
                        reason,
                        "batch failed, splitting it"
                    );
                    let mut first = rows;
                    let second = first.split_off(first.len() / 2);
                    let twin = schedule.clone();
                    judged.retries.push((delay, Work { rows: first, attempt, schedule }));
                    judged.retries.push((delay, Work { rows: second, attempt, schedule: twin }));
                }
                Decision::RetryAfter(delay) => {
                    tracing::warn!(
                        sync,
                        attempt,
                        rows = rows.len(),
                        reason,
                        "invocation failed, retrying"
                    );
                    judged.retries.push((delay, Work { rows, attempt: attempt + 1, schedule }));
                }
                Decision::LeavePending => {
                    tracing::error!(
                        sync,
                        attempt,
                        rows = rows.len(),
                        reason,
                        "invocation failed, rows left pending"
                    );
                    tally.failed += rows.len() as u64;
                    judged.outcomes.not_delivered = rows
                        .into_iter()
                        .map(|r| NotDelivered {
                            key: r.key,
                            operation: r.operation,
                            reason: reason.clone(),
                            attempts: attempt,
                        })
                        .collect();
                }
            }
        }
        Verdict::Denied { status, reason } => {
            tally.denied = Some(format!("{reason} (status {status})"));
        }
    }
    judged
}

/// A row too large for one request on its own: rejected, never cut.
fn too_large(row: PlannedRow, size: usize) -> Outcomes {
    let reason = format!(
        "the row alone makes a request of {size} bytes, above `batching.max_request_bytes`; \
         it is never cut, so raise the limit or slim the model"
    );
    let not_delivered =
        NotDelivered { key: row.key, operation: row.operation, reason, attempts: 1 };
    Outcomes { acknowledged: vec![], not_delivered: vec![not_delivered] }
}

fn acknowledged(row: PlannedRow) -> Acknowledged {
    Acknowledged { key: row.key, operation: row.operation, row: row.row }
}

fn warn_unknown(sync: &str, keys: &[String], tally: &mut Tally) {
    if !keys.is_empty() {
        tally.unknown_keys += keys.len() as u64;
        tracing::warn!(sync, keys = ?keys, "the function rejected keys that were not in the invocation");
    }
}
