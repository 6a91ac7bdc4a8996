//! The lock of a state kept in Cloud Storage: an object created only if absent
//! (`ifGenerationMatch=0`), holding who took it, since when, and until when it is honoured
//! without renewal. A holder renews it every third of its time-to-live by rewriting it at
//! its own generation, so a live apply never loses it; one that was killed stops renewing,
//! and once the time-to-live has passed the next apply takes it over (with a warning).
//! Every rewrite and the final delete name the generation the holder last wrote, so a
//! holder whose lock was broken finds out instead of overwriting the new holder's lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::client::Bucket;
use super::GcsError;
use crate::state::lock::Holder;

/// What the lock object holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockRecord {
    #[serde(flatten)]
    pub holder: Holder,
    /// RFC 3339 time after which the lock may be taken over, unless renewed before.
    pub expires: String,
    /// The time-to-live each renewal grants, in seconds.
    pub ttl_seconds: f64,
}

impl LockRecord {
    fn new(holder: Holder, ttl: Duration) -> LockRecord {
        let expires =
            Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::zero());
        LockRecord {
            holder,
            expires: expires.to_rfc3339_opts(SecondsFormat::Millis, true),
            ttl_seconds: ttl.as_secs_f64(),
        }
    }

    /// Whether the time-to-live has passed, by this machine's clock. A record whose
    /// expiry cannot be read never expires: only `rowcast lock break` removes it.
    pub fn expired(&self) -> bool {
        DateTime::parse_from_rfc3339(&self.expires).is_ok_and(|t| t < Utc::now())
    }

    fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a lock record serializes")
    }

    fn parse(bytes: &[u8]) -> LockRecord {
        serde_json::from_slice(bytes).unwrap_or_else(|_| LockRecord {
            holder: Holder {
                host: "unknown".into(),
                pid: 0,
                since: "an unknown time".into(),
                command: "unknown".into(),
            },
            expires: "never (the lock object cannot be read)".into(),
            ttl_seconds: 0.0,
        })
    }
}

/// A lock object held by this process, renewed on a thread of its own and deleted when
/// dropped.
pub struct GcsLock {
    bucket: Arc<Bucket>,
    object: String,
    generation: Arc<Mutex<i64>>,
    lost: Arc<AtomicBool>,
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<JoinHandle<()>>,
}

impl GcsLock {
    /// Takes the lock object `object`: creates it if absent, takes it over if its
    /// time-to-live has passed, and refuses at once, naming the holder, if it is live.
    pub fn acquire(
        bucket: Arc<Bucket>,
        object: &str,
        command: &str,
        ttl: Duration,
    ) -> Result<GcsLock, GcsError> {
        let holder = Holder::current(command);
        let mut expected = 0;
        for _ in 0..5 {
            let record = LockRecord::new(holder.clone(), ttl);
            match bucket.write(object, record.bytes(), expected) {
                Ok(generation) => return Ok(GcsLock::start(bucket, object, record, generation)),
                Err(GcsError::Precondition) => {}
                Err(error) => return Err(error),
            }
            // Someone holds it (or just changed it): read who, and whether it is stale.
            let Some(current) = bucket.read(object)? else {
                expected = 0;
                continue;
            };
            let held = LockRecord::parse(&current.body);
            if !held.expired() {
                let record = Box::new(held);
                return Err(GcsError::Locked { object: bucket.address(object), record });
            }
            tracing::warn!(
                lock = bucket.address(object),
                holder_host = held.holder.host.as_str(),
                holder_pid = held.holder.pid,
                holder_command = held.holder.command.as_str(),
                since = held.holder.since.as_str(),
                expired = held.expires.as_str(),
                "taking over a lock whose time-to-live has passed; its holder stopped renewing it, \
                 so it is presumed gone"
            );
            expected = current.generation;
        }
        Err(GcsError::Contended { object: bucket.address(object) })
    }

    fn start(bucket: Arc<Bucket>, object: &str, record: LockRecord, generation: i64) -> GcsLock {
        let generation = Arc::new(Mutex::new(generation));
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let ttl = Duration::from_secs_f64(record.ttl_seconds);
        let renewer = {
            let (bucket, object) = (bucket.clone(), object.to_string());
            let (generation, lost) = (generation.clone(), lost.clone());
            std::thread::Builder::new()
                .name("lock-renewal".into())
                .spawn(move || {
                    let every = (ttl / 3).max(Duration::from_millis(100));
                    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                        if !renew(&bucket, &object, &record, ttl, &generation) {
                            lost.store(true, Ordering::SeqCst);
                            break;
                        }
                    }
                })
                .ok()
        };
        if renewer.is_none() {
            tracing::warn!("cannot start the lock renewal thread; a long apply may lose its lock");
        }
        GcsLock { bucket, object: object.to_string(), generation, lost, stop: Some(stop), renewer }
    }

    /// Whether the lock was broken or taken over while held: the holder must then stop
    /// writing the state.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    pub fn address(&self) -> String {
        self.bucket.address(&self.object)
    }
}

/// Rewrites the lock with a new expiry at the generation last written. False when the
/// lock is no longer ours.
fn renew(
    bucket: &Bucket,
    object: &str,
    record: &LockRecord,
    ttl: Duration,
    generation: &Mutex<i64>,
) -> bool {
    let renewed = LockRecord::new(record.holder.clone(), ttl);
    let mut current = generation.lock().unwrap_or_else(|e| e.into_inner());
    match bucket.write(object, renewed.bytes(), *current) {
        Ok(next) => {
            *current = next;
            tracing::debug!(
                lock = bucket.address(object),
                expires = renewed.expires.as_str(),
                "renewed"
            );
            true
        }
        Err(GcsError::Precondition) => {
            tracing::error!(
                lock = bucket.address(object),
                "the lock was broken or taken over while this run held it; this run will not \
                 write the state back"
            );
            false
        }
        Err(error) => {
            // A passing network failure: the time-to-live leaves room for the next try.
            tracing::warn!(lock = bucket.address(object), %error, "cannot renew the lock; will retry");
            true
        }
    }
}

impl Drop for GcsLock {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        if self.is_lost() {
            return;
        }
        let generation = *self.generation.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = self.bucket.delete(&self.object, generation) {
            tracing::warn!(
                lock = self.address(),
                %error,
                "cannot release the lock; it lapses when its time-to-live passes"
            );
        }
    }
}

/// The lock object's record and generation, or `None` when the state is free.
pub fn status(bucket: &Bucket, object: &str) -> Result<Option<(LockRecord, i64)>, GcsError> {
    Ok(bucket.read(object)?.map(|f| (LockRecord::parse(&f.body), f.generation)))
}

/// Deletes the lock object if it is still at `generation` (the one shown to whoever
/// confirmed the break), so a lock taken since is never removed unseen.
pub fn break_lock(bucket: &Bucket, object: &str, generation: i64) -> Result<(), GcsError> {
    match bucket.delete(object, generation) {
        Err(GcsError::Precondition) => Err(GcsError::Contended { object: bucket.address(object) }),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_expires_after_its_time_to_live_and_an_unreadable_one_never() {
        let holder = Holder::current("apply");
        assert!(!LockRecord::new(holder.clone(), Duration::from_secs(60)).expired());
        let mut old = LockRecord::new(holder, Duration::ZERO);
        old.expires = "2020-01-01T00:00:00.000Z".into();
        assert!(old.expired());
        let unreadable = LockRecord::parse(b"not json");
        assert!(!unreadable.expired());
        assert_eq!(unreadable.holder.host, "unknown");
    }
}
