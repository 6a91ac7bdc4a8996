//! Delivering one sync's planned rows: batches from the batcher (and retries) pass the
//! concurrency gate and the rate limiter, are sent, classified, and their outcome goes to
//! the committer; rows not delivered are retried under the sync's policy or left pending.

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backoff::ExponentialBackoff;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::batch::{Batched, PlannedRow};
use super::classify::{classify, Verdict};
use super::committer::Committer;
use super::destination::{Destination, Reply};
use super::payload::Envelope;
use super::progress::Progress;
use super::retry::{Decision, RetryPolicy};
use crate::manifest::sync::{RateLimit, RatePeriod};
use crate::manifest::Operation;
use crate::runs::record::{Answer, Event, Exchange, History, InvocationRecord, RowEvent};
use crate::state::commit::{Acknowledged, NotDelivered, Outcomes};

/// Rows to send in one invocation, and where they are in their retry schedule.
struct Work {
    rows: Vec<PlannedRow>,
    attempt: u32,
    schedule: ExponentialBackoff,
    /// The batch these rows came in (halves of a split batch keep it), and its log span.
    batch: u64,
    span: tracing::Span,
}

/// How an invocation task ended.
enum Finished {
    /// Boxed, since the other variant is empty.
    Sent(Box<Sent>),
    /// Stopped while waiting for the rate limiter; nothing was sent.
    NotStarted,
}

/// An invocation that was sent: its rows, the verdict on its reply, and the exchange
/// as the history records it.
struct Sent {
    work: Work,
    verdict: Verdict,
    exchange: Exchange,
}

/// The limits and policy one delivery runs under.
pub struct Settings {
    pub concurrency: usize,
    pub rate: Option<RateLimit>,
    pub timeout: Duration,
    pub policy: RetryPolicy,
    /// How long in-flight invocations may finish after a stop was asked.
    pub grace: Duration,
    /// Keep request and response bodies in the run history.
    pub record_bodies: bool,
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
    let mut batch_number = 0u64;
    let task_stop = stop.clone();

    loop {
        // Start whatever there is room for: retries first, then new batches.
        while in_flight.len() < settings.concurrency && !stopping {
            let work = if let Ok(work) = retries.try_recv() {
                work
            } else {
                match ready.pop_front() {
                    Some(Batched::Batch(rows)) => {
                        batch_number += 1;
                        let span =
                            tracing::info_span!("batch", batch = batch_number, rows = rows.len());
                        let schedule = settings.policy.schedule();
                        Work { rows, attempt: 1, schedule, batch: batch_number, span }
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
                let Ok(Finished::Sent(sent)) = joined else { continue };
                let Sent { work, verdict, exchange } = *sent;
                let outcome = judge(work, verdict, exchange, &settings.policy, &mut tally, &envelope.sync);
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
            if let Ok(Finished::Sent(sent)) = joined {
                let Sent { work, verdict, exchange } = *sent;
                let outcome = judge(
                    work,
                    verdict,
                    exchange,
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
    let keep_bodies = settings.record_bodies;
    let span = tracing::info_span!(
        parent: &work.span,
        "attempt",
        attempt = work.attempt,
        rows = work.rows.len(),
        invocation_id = tracing::field::Empty,
    );
    let task = async move {
        if let Some(limiter) = limiter {
            tokio::select! {
                _ = limiter.until_ready() => {}
                _ = stop.wait_for(|s| *s) => return Finished::NotStarted,
            }
        }
        let invocation_id = uuid::Uuid::now_v7().to_string();
        tracing::Span::current().record("invocation_id", invocation_id.as_str());
        let body = envelope.body(&work.rows, &invocation_id, work.attempt);
        let stopwatch = Exchange::start(&invocation_id, &body, keep_bodies);
        let reply = destination.send(body, timeout).await;
        let exchange = match &reply {
            Reply::Answered { status, body, .. } => stopwatch.answered(Some(*status), false, body),
            Reply::TimedOut => stopwatch.answered(None, true, &[]),
            Reply::Unreachable(_) => stopwatch.answered(None, false, &[]),
        };
        tracing::debug!(
            status = %exchange.answer,
            latency_ms = exchange.latency.as_secs_f64() * 1000.0,
            request_bytes = exchange.request_bytes,
            "invocation answered"
        );
        let keys: HashSet<&str> = work.rows.iter().map(|r| r.key.as_str()).collect();
        let verdict = classify(reply, &keys, timeout);
        Finished::Sent(Box::new(Sent { work, verdict, exchange }))
    };
    in_flight.spawn(task.instrument(span));
}

/// What one verdict means: outcomes to commit, work to retry, and the row events that
/// the history records.
struct Judged {
    outcomes: Outcomes,
    retries: Vec<(Duration, Work)>,
    events: Events,
}

impl Judged {
    /// Acknowledged rows go to the journal, which becomes their history events when it is
    /// folded, so they need no event of their own here.
    fn acknowledge(&mut self, rows: Vec<PlannedRow>, tally: &mut Tally) {
        tally.acknowledged += rows.len() as u64;
        let (invocation, attempt) = (&self.events.invocation_id, self.events.attempt);
        let acknowledged = rows.into_iter().map(|row| Acknowledged {
            key: row.key,
            operation: row.operation,
            row: row.row,
            invocation_id: invocation.clone(),
            attempt,
        });
        self.outcomes.acknowledged.extend(acknowledged);
    }
}

fn judge(
    work: Work,
    verdict: Verdict,
    exchange: Exchange,
    policy: &RetryPolicy,
    tally: &mut Tally,
    sync: &str,
) -> Judged {
    let _entered = work.span.clone().entered();
    let mut record = InvocationRecord {
        batch: work.batch,
        attempt: work.attempt,
        operation: work.rows.first().map_or(Operation::Added, |r| r.operation),
        rows: work.rows.len() as u32,
        outcome: "acknowledged",
        error_class: None,
        rejected_rows: 0,
        error: None,
        exchange,
    };
    let mut judged = Judged {
        outcomes: Outcomes::default(),
        retries: Vec::new(),
        events: Events::new(&record.exchange.invocation_id, work.attempt),
    };
    match verdict {
        Verdict::Acknowledged { unknown_keys } => {
            warn_unknown(sync, &unknown_keys, tally);
            judged.acknowledge(work.rows, tally);
        }
        Verdict::Partial { rejected, unknown_keys } => {
            warn_unknown(sync, &unknown_keys, tally);
            (record.outcome, record.error_class) = ("partial", Some("rejected_rows"));
            record.rejected_rows = judge_partial(&mut judged, work, &rejected, policy, tally, sync);
        }
        Verdict::Failed { reason, retry_after } => {
            record.outcome = "failed";
            record.error_class = Some(failure_class(record.exchange.answer));
            record.error = Some(reason.clone());
            judge_failed(&mut judged, work, reason, retry_after, policy, tally, sync);
        }
        Verdict::Denied { status, reason } => {
            (record.outcome, record.error_class) = ("denied", Some("denied"));
            record.error = Some(reason.clone());
            tally.denied = Some(format!("{reason} (status {status})"));
        }
    }
    let events = std::mem::take(&mut judged.events.events);
    judged.outcomes.history = History { invocations: vec![record], events };
    judged
}

/// Rows the function listed as rejected are retried or left pending; the others are
/// acknowledged. Returns how many were rejected.
fn judge_partial(
    judged: &mut Judged,
    work: Work,
    rejected: &HashMap<String, String>,
    policy: &RetryPolicy,
    tally: &mut Tally,
    sync: &str,
) -> u32 {
    let Work { rows, attempt, mut schedule, batch, span } = work;
    let (refused, accepted): (Vec<_>, Vec<_>) =
        rows.into_iter().partition(|r| rejected.contains_key(&r.key));
    judged.acknowledge(accepted, tally);
    let count = refused.len() as u32;
    let reason = |row: &PlannedRow| Some(rejected[&row.key].clone());
    match policy.decide(attempt, refused.len(), false, None, &mut schedule) {
        Decision::RetryAfter(delay) | Decision::Split(delay) => {
            tracing::warn!(sync, attempt, rows = refused.len(), "rows rejected, retrying");
            judged.events.add(&refused, Event::Rejected, reason, true);
            let work = Work { rows: refused, attempt: attempt + 1, schedule, batch, span };
            judged.retries.push((delay, work));
        }
        Decision::LeavePending => {
            tally.rejected += refused.len() as u64;
            judged.events.add(&refused, Event::Rejected, reason, false);
            judged.outcomes.not_delivered = refused
                .iter()
                .map(|r| NotDelivered {
                    key: r.key.clone(),
                    operation: r.operation,
                    reason: rejected[&r.key].clone(),
                    attempts: attempt,
                })
                .collect();
        }
    }
    count
}

/// Every row of an invocation that failed as a whole is retried (whole, or split in
/// halves) or left pending.
fn judge_failed(
    judged: &mut Judged,
    work: Work,
    reason: String,
    retry_after: Option<Duration>,
    policy: &RetryPolicy,
    tally: &mut Tally,
    sync: &str,
) {
    let Work { rows, attempt, mut schedule, batch, span } = work;
    let decision = policy.decide(attempt, rows.len(), true, retry_after, &mut schedule);
    let retried = decision != Decision::LeavePending;
    judged.events.add(&rows, Event::Failed, |_| Some(reason.clone()), retried);
    let count = rows.len();
    match decision {
        Decision::Split(delay) => {
            tracing::warn!(sync, attempt, rows = count, reason, "batch failed, splitting it");
            let mut first = rows;
            let second = first.split_off(first.len() / 2);
            let (twin, twin_span) = (schedule.clone(), span.clone());
            judged.retries.push((delay, Work { rows: first, attempt, schedule, batch, span }));
            let half = Work { rows: second, attempt, schedule: twin, batch, span: twin_span };
            judged.retries.push((delay, half));
        }
        Decision::RetryAfter(delay) => {
            tracing::warn!(sync, attempt, rows = count, reason, "invocation failed, retrying");
            let work = Work { rows, attempt: attempt + 1, schedule, batch, span };
            judged.retries.push((delay, work));
        }
        Decision::LeavePending => {
            tracing::error!(
                sync,
                attempt,
                rows = count,
                reason,
                "invocation failed, rows left pending"
            );
            tally.failed += count as u64;
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

/// The error class of an invocation that failed as a whole.
fn failure_class(answer: Answer) -> &'static str {
    match answer {
        Answer::Status(200..=299) => "unreadable_errors",
        Answer::Status(_) => "http_error",
        Answer::Timeout => "timeout",
        Answer::Connection | Answer::None => "connection",
    }
}

/// The row events of one invocation attempt.
struct Events {
    invocation_id: String,
    attempt: u32,
    at: i64,
    events: Vec<RowEvent>,
}

impl Events {
    fn new(invocation_id: &str, attempt: u32) -> Events {
        let at = chrono::Utc::now().timestamp_micros();
        Events { invocation_id: invocation_id.to_string(), attempt, at, events: Vec::new() }
    }

    fn add(
        &mut self,
        rows: &[PlannedRow],
        event: Event,
        reason: impl Fn(&PlannedRow) -> Option<String>,
        retried: bool,
    ) {
        self.events.extend(rows.iter().map(|row| RowEvent {
            key: row.key.clone(),
            operation: row.operation,
            event,
            reason: reason(row),
            attempt: self.attempt,
            retried,
            invocation_id: Some(self.invocation_id.clone()),
            at: self.at,
        }));
    }
}

/// A row too large for a request of its own: rejected with the reason, never cut.
fn too_large(row: PlannedRow, size: usize) -> Outcomes {
    let reason = format!(
        "the row alone makes a request of {size} bytes, above `batching.max_request_bytes`; \
         it is never cut, so raise the limit or slim the model"
    );
    let event = RowEvent {
        key: row.key.clone(),
        operation: row.operation,
        event: Event::Rejected,
        reason: Some(reason.clone()),
        attempt: 1,
        retried: false,
        invocation_id: None,
        at: chrono::Utc::now().timestamp_micros(),
    };
    let not_delivered =
        NotDelivered { key: row.key, operation: row.operation, reason, attempts: 1 };
    let history = History { invocations: vec![], events: vec![event] };
    Outcomes { acknowledged: vec![], not_delivered: vec![not_delivered], history }
}

fn warn_unknown(sync: &str, keys: &[String], tally: &mut Tally) {
    if !keys.is_empty() {
        tally.unknown_keys += keys.len() as u64;
        tracing::warn!(sync, keys = ?keys, "the function rejected keys that were not in the invocation");
    }
}
