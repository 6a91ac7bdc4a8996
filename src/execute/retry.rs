//! The retry schedule, kept apart from classification: given that rows were not delivered,
//! when (if at all) to send them again in this run. Rows not retried now stay pending and
//! are planned again by the next run.

use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;

use crate::manifest::sync::Retry;

/// What to do with rows that were not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send them again after this delay.
    RetryAfter(Duration),
    /// Split the batch in halves and send each after this delay.
    Split(Duration),
    /// Leave them pending for the next run.
    LeavePending,
}

/// A sync's retry policy.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    retry: Retry,
}

impl RetryPolicy {
    pub fn new(retry: &Retry) -> Self {
        RetryPolicy { retry: retry.clone() }
    }

    /// A fresh schedule for a batch: exponential, doubling, with ±50% jitter.
    pub fn schedule(&self) -> ExponentialBackoff {
        let (initial, max) = match &self.retry {
            Retry::Immediately { initial_backoff, max_backoff, .. } => {
                (initial_backoff.get(), max_backoff.get())
            }
            Retry::NextRun => (Duration::from_secs(1), Duration::from_secs(1)),
        };
        ExponentialBackoff {
            current_interval: initial,
            initial_interval: initial,
            max_interval: max,
            multiplier: 2.0,
            randomization_factor: 0.5,
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        }
    }

    /// Rows the function rejected, or whose invocation failed, after `attempt` attempts.
    pub fn decide(
        &self,
        attempt: u32,
        rows: usize,
        whole_batch_failed: bool,
        retry_after: Option<Duration>,
        schedule: &mut ExponentialBackoff,
    ) -> Decision {
        let Retry::Immediately { attempts, split_failed_batches, .. } = &self.retry else {
            return Decision::LeavePending;
        };
        let mut delay = || {
            let jittered = schedule.next_backoff().unwrap_or(Duration::from_secs(1));
            retry_after.map_or(jittered, |after| after.max(jittered))
        };
        // Splitting isolates the rows that fail; halves do not spend an attempt.
        if whole_batch_failed && *split_failed_batches && rows > 1 {
            return Decision::Split(delay());
        }
        if attempt < *attempts {
            Decision::RetryAfter(delay())
        } else {
            Decision::LeavePending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::duration::HumanDuration;

    fn immediately(split: bool) -> RetryPolicy {
        RetryPolicy::new(&Retry::Immediately {
            attempts: 3,
            initial_backoff: HumanDuration::parse("100ms").unwrap(),
            max_backoff: HumanDuration::parse("1s").unwrap(),
            split_failed_batches: split,
        })
    }

    #[test]
    fn retries_up_to_the_attempts_then_leaves_rows_pending() {
        let policy = immediately(false);
        let mut schedule = policy.schedule();
        assert!(matches!(policy.decide(1, 1, true, None, &mut schedule), Decision::RetryAfter(_)));
        assert!(matches!(policy.decide(2, 1, true, None, &mut schedule), Decision::RetryAfter(_)));
        assert_eq!(policy.decide(3, 1, true, None, &mut schedule), Decision::LeavePending);
        let next_run = RetryPolicy::new(&Retry::NextRun);
        assert_eq!(next_run.decide(1, 1, true, None, &mut schedule), Decision::LeavePending);
    }

    #[test]
    fn delays_grow_stay_bounded_and_honour_retry_after() {
        let policy = immediately(false);
        let mut schedule = policy.schedule();
        for _ in 0..20 {
            let Decision::RetryAfter(delay) = policy.decide(1, 1, true, None, &mut schedule) else {
                panic!()
            };
            assert!(delay <= Duration::from_millis(1500), "{delay:?}");
        }
        let after = Some(Duration::from_secs(30));
        let Decision::RetryAfter(delay) = policy.decide(1, 1, true, after, &mut schedule) else {
            panic!()
        };
        assert_eq!(delay, Duration::from_secs(30));
    }

    #[test]
    fn whole_batch_failures_split_when_asked() {
        let policy = immediately(true);
        let mut schedule = policy.schedule();
        assert!(matches!(policy.decide(3, 8, true, None, &mut schedule), Decision::Split(_)));
        assert_eq!(policy.decide(3, 1, true, None, &mut schedule), Decision::LeavePending);
        assert!(matches!(policy.decide(1, 8, false, None, &mut schedule), Decision::RetryAfter(_)));
    }
}
