//! The `gcs` state backend, for CI runners that start empty: the DuckDB state file lives
//! in a Cloud Storage bucket as `<prefix>state.duckdb`, beside its lock `<prefix>state.lock`.
//!
//! A writer takes the lock object, downloads the state into a working copy under
//! `.rowcast/gcs/` and remembers its generation; it writes the file back (after a DuckDB
//! `CHECKPOINT`) at most every `write_back_every` while it commits, and at its end, each
//! time only if the object is still at the generation it read or last wrote. So a writer
//! can never overwrite state it did not read, and a killed one loses only what it
//! acknowledged after its last write-back, which the next run sends again.

pub mod client;
pub mod lock;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duckdb::Connection;
use serde::{Deserialize, Serialize};

use self::client::Bucket;
use self::lock::{GcsLock, LockRecord};
use super::lock::Holder;
use super::write_back::WriteBack;

/// The working copies of Cloud Storage state, relative to the project folder.
pub const WORKING_FOLDER: &str = ".rowcast/gcs";

/// The settings of the `gcs` backend, as `rowcast.yaml` gives them.
#[derive(Debug, Clone)]
pub struct GcsConfig {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub write_back_every: Duration,
    pub lock_ttl: Duration,
}

impl GcsConfig {
    /// The name of the state object.
    pub fn state_object(&self) -> String {
        format!("{}state.duckdb", self.folder())
    }

    /// The name of the lock object.
    pub fn lock_object(&self) -> String {
        format!("{}state.lock", self.folder())
    }

    fn folder(&self) -> String {
        let prefix = self.prefix.trim_start_matches('/');
        if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/")
        }
    }

    /// The working copy of a writer, under the project folder `root`.
    pub fn working_copy(&self, root: &Path) -> PathBuf {
        root.join(WORKING_FOLDER).join(&self.bucket).join(self.state_object())
    }

    pub fn bucket(&self) -> Result<Arc<Bucket>, GcsError> {
        Bucket::new(&self.bucket, self.endpoint.as_deref()).map(Arc::new)
    }
}

/// Errors of the `gcs` backend.
#[derive(Debug, thiserror::Error)]
pub enum GcsError {
    #[error("cannot use the `gcs` state backend: {problem}")]
    Setup { problem: String },
    #[error(
        "no Google credentials for Cloud Storage ({problem}); set `GOOGLE_OAUTH_ACCESS_TOKEN`, \
         or Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, `gcloud auth \
         application-default login`, or a metadata server)"
    )]
    Credentials { problem: String },
    #[error("cannot {action} `{object}`: HTTP {status}: {detail}{}", hint_text(.hint))]
    Http { action: &'static str, object: String, status: u16, detail: String, hint: String },
    #[error("cannot {action} `{object}`: {problem}; check the network and the state `endpoint`")]
    Unreachable { action: &'static str, object: String, problem: String },
    #[error("cannot use the working copy `{path}`: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A generation precondition failed; callers say what it means for them.
    #[error("the object changed since it was read (generation precondition failed)")]
    Precondition,
    #[error(
        "the state object `{object}` changed since this run read it (generation {read}, now \
         {}): another rowcast wrote it; nothing was overwritten; run again",
        .now.map_or("deleted".to_string(), |g| g.to_string())
    )]
    Changed { object: String, read: i64, now: Option<i64> },
    #[error(
        "the state is locked: `{object}` is held by `rowcast {}` on host `{}` (pid {}) since {}, \
         until {} unless renewed; wait for it to finish, or if that run is gone, run `rowcast \
         lock break`",
        .record.holder.command, .record.holder.host, .record.holder.pid, .record.holder.since,
        .record.expires
    )]
    Locked { object: String, record: Box<LockRecord> },
    #[error(
        "the lock `{object}` changed while rowcast was taking or breaking it: another rowcast \
         is at work on this state; look with `rowcast lock status`"
    )]
    Contended { object: String },
    #[error(
        "the lock `{object}` was broken or taken over while this run held it, so this run did \
         not write the state back (nothing another run wrote was overwritten); what it \
         acknowledged since its last write-back is sent again by the next run"
    )]
    LockLost { object: String },
    #[error("cannot checkpoint the state before writing it back: {0}")]
    Checkpoint(#[from] duckdb::Error),
}

fn hint_text(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!("; {hint}")
    }
}

/// What the last write-back recorded in the state, so the next run can tell whether the
/// writer finished.
#[derive(Debug, Serialize, Deserialize)]
struct WriteBackRecord {
    #[serde(flatten)]
    holder: Holder,
    /// RFC 3339 time of the write-back.
    at: String,
    /// True for the write-back at the end of a command, false for one made while it ran.
    complete: bool,
}

const WRITE_BACK_KEY: &str = "gcs_write_back";

/// A state fetched from Cloud Storage into a local working copy.
pub struct GcsState {
    bucket: Arc<Bucket>,
    object: String,
    /// The working copy that the state database opens.
    pub path: PathBuf,
    /// The generation read, then the one last written.
    generation: Mutex<i64>,
    every: Duration,
    last: Mutex<Instant>,
    /// This run, as its write-backs record it.
    holder: Holder,
    /// Held by a writer; `None` for a read-only copy, which is deleted when dropped.
    lock: Option<GcsLock>,
}

impl GcsState {
    /// Takes the lock and downloads the state into the working copy under `root`.
    pub fn fetch_for_writing(
        config: &GcsConfig,
        root: &Path,
        command: &str,
    ) -> Result<GcsState, GcsError> {
        let bucket = config.bucket()?;
        let lock =
            GcsLock::acquire(bucket.clone(), &config.lock_object(), command, config.lock_ttl)?;
        let path = config.working_copy(root);
        let generation = download(&bucket, &config.state_object(), &path)?;
        Ok(GcsState {
            bucket,
            object: config.state_object(),
            path,
            generation: Mutex::new(generation),
            every: config.write_back_every,
            last: Mutex::new(Instant::now()),
            holder: Holder::current(command),
            lock: Some(lock),
        })
    }

    /// Downloads the state into a copy of this process's own, for commands that only
    /// read it (such as `plan`), without the lock.
    pub fn fetch_for_reading(config: &GcsConfig, root: &Path) -> Result<GcsState, GcsError> {
        let bucket = config.bucket()?;
        let writer = config.working_copy(root);
        let path = writer.with_extension(format!("read-{}.duckdb", std::process::id()));
        let generation = download(&bucket, &config.state_object(), &path)?;
        Ok(GcsState {
            bucket,
            object: config.state_object(),
            path,
            generation: Mutex::new(generation),
            every: Duration::MAX,
            last: Mutex::new(Instant::now()),
            holder: Holder::current("plan"),
            lock: None,
        })
    }

    /// `gs://bucket/object` of the state.
    pub fn address(&self) -> String {
        self.bucket.address(&self.object)
    }

    /// The generation this run read or last wrote; 0 when the object did not exist.
    pub fn generation(&self) -> i64 {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs a warning when the last writer was stopped before its final write-back: what
    /// it acknowledged after its last write-back is not in this state and is sent again.
    pub fn report_unfinished_writer(&self, conn: &Connection) {
        let text: Option<String> = conn
            .query_row(
                "SELECT value FROM state.rowcast_meta WHERE key = ?",
                [WRITE_BACK_KEY],
                |r| r.get(0),
            )
            .ok();
        let Some(record) = text.and_then(|t| serde_json::from_str::<WriteBackRecord>(&t).ok())
        else {
            return;
        };
        if !record.complete {
            tracing::warn!(
                state = self.address(),
                last_write_back = record.at.as_str(),
                writer_command = record.holder.command.as_str(),
                writer_host = record.holder.host.as_str(),
                writer_pid = record.holder.pid,
                writer_since = record.holder.since.as_str(),
                "the last run on this state stopped before it finished; what it acknowledged \
                 after its last write-back is not in this state and is sent again by this run, \
                 with the same idempotency keys, so the function can drop the repeats"
            );
        }
    }

    /// Checkpoints the state and uploads it if the object is still at the generation this
    /// run read or last wrote. `complete` marks the write-back at the end of a command.
    pub fn write_back(&self, conn: &Connection, complete: bool) -> Result<(), GcsError> {
        let Some(lock) = &self.lock else { return Ok(()) };
        if lock.is_lost() {
            return Err(GcsError::LockLost { object: lock.address() });
        }
        let record = WriteBackRecord {
            holder: self.holder.clone(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            complete,
        };
        let record = serde_json::to_string(&record).expect("a record serializes");
        conn.execute(
            "INSERT OR REPLACE INTO state.rowcast_meta VALUES (?, ?)",
            [WRITE_BACK_KEY, record.as_str()],
        )?;
        conn.execute_batch("CHECKPOINT state")?;

        let mut generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        match self.bucket.upload_file(&self.object, &self.path, *generation) {
            Ok(next) => {
                tracing::info!(
                    state = self.address(),
                    generation = next,
                    complete,
                    millis = started.elapsed().as_millis() as u64,
                    "wrote the state back"
                );
                *generation = next;
                *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                Ok(())
            }
            Err(GcsError::Precondition) => Err(GcsError::Changed {
                object: self.address(),
                read: *generation,
                now: self.bucket.generation(&self.object).ok().flatten(),
            }),
            Err(error) => Err(error),
        }
    }

    fn due(&self) -> bool {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).elapsed() >= self.every
    }
}

impl WriteBack for GcsState {
    fn after_commit(&self, conn: &Connection) -> anyhow::Result<()> {
        if self.lock.is_some() && self.due() {
            self.write_back(conn, false)?;
        }
        Ok(())
    }
}

impl Drop for GcsState {
    fn drop(&mut self) {
        if self.lock.is_none() {
            remove_copy(&self.path);
        }
    }
}

/// Replaces the working copy at `path` with the state object, returning its generation,
/// or 0 (and no file) when there is no state object yet.
fn download(bucket: &Bucket, object: &str, path: &Path) -> Result<i64, GcsError> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)
            .map_err(|source| GcsError::Io { path: folder.to_path_buf(), source })?;
    }
    // A copy left by an earlier run, and above all its write-ahead log, must not be
    // replayed over the state just fetched.
    // TODO: on a machine that keeps its folder (a laptop, a persistent runner), the copy
    // left by a killed apply holds acknowledgements newer than the object; reusing it
    // when the generation it was fetched at is still the object's would re-send less.
    remove_copy(path);
    let generation = bucket.download(object, path)?;
    match generation {
        Some(generation) => {
            tracing::info!(state = bucket.address(object), generation, "fetched the state");
            Ok(generation)
        }
        None => {
            tracing::info!(state = bucket.address(object), "no state object yet; starting empty");
            Ok(0)
        }
    }
}

/// Removes a working copy with its write-ahead log and spill folder.
fn remove_copy(path: &Path) {
    let _ = std::fs::remove_file(path);
    let mut wal = path.as_os_str().to_owned();
    wal.push(".wal");
    let _ = std::fs::remove_file(PathBuf::from(wal));
    let _ = std::fs::remove_dir_all(path.with_extension("tmp"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(prefix: &str) -> GcsConfig {
        GcsConfig {
            bucket: "b".into(),
            prefix: prefix.into(),
            endpoint: None,
            write_back_every: Duration::from_secs(30),
            lock_ttl: Duration::from_secs(900),
        }
    }

    #[test]
    fn objects_sit_under_the_prefix_as_a_folder() {
        assert_eq!(config("rowcast/").state_object(), "rowcast/state.duckdb");
        assert_eq!(config("team").lock_object(), "team/state.lock");
        assert_eq!(config("").state_object(), "state.duckdb");
        assert_eq!(config("/a/b/").state_object(), "a/b/state.duckdb");
        let copy = config("team").working_copy(Path::new("/p"));
        assert_eq!(copy, Path::new("/p/.rowcast/gcs/b/team/state.duckdb"));
    }
}
