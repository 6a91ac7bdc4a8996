//! One writer per state. `apply` holds an exclusive OS lock (flock) on a file beside the
//! state for as long as it runs; the kernel releases it when the process ends, however it
//! ends, so a lock is never left behind by a killed apply. The file also records who holds
//! it, so a second apply can say whom it is waiting for.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// RFC 3339 time the lock was taken.
    pub since: String,
    /// The command that holds it, such as `apply`.
    pub command: String,
}

impl Holder {
    /// This process, running `command`, from now.
    pub fn current(command: &str) -> Holder {
        Holder {
            host: hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
            pid: std::process::id(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command: command.to_string(),
        }
    }
}

/// The state is locked by another process.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the state `{state}` is locked by `rowcast {}` on host `{}` (pid {}) since {}; wait \
         for it to finish, or stop that process",
        .holder.command, .holder.host, .holder.pid, .holder.since
    )]
    Held { state: PathBuf, holder: Holder },
    #[error("cannot use the lock file `{path}`: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
}

/// The lock file of a state file.
pub fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    state.with_file_name(name)
}

impl StateLock {
    /// Takes the lock of `state` at once, or fails naming the holder.
    pub fn acquire(state: &Path, command: &str) -> Result<StateLock, LockError> {
        let path = lock_path(state);
        let io = |source| LockError::Io { path: path.clone(), source };
        if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file).unwrap_or_else(|| Holder {
                    host: "unknown".into(),
                    pid: 0,
                    since: "an unknown time".into(),
                    command: "apply".into(),
                });
                return Err(LockError::Held { state: state.to_path_buf(), holder });
            }
            Err(TryLockError::Error(error)) => return Err(io(error)),
        }
        let holder = serde_json::to_string(&Holder::current(command)).expect("a holder serializes");
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(holder.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(StateLock { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Empty the record first, so a reader never names a holder that is gone.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Who holds the lock of `state` now, if anyone.
pub fn status(state: &Path) -> Result<Option<Holder>, LockError> {
    let path = lock_path(state);
    let io = |source| LockError::Io { path: path.clone(), source };
    let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io(error)),
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            Ok(None)
        }
        Err(TryLockError::WouldBlock) => Ok(read_holder(&mut file)),
        Err(TryLockError::Error(error)) => Err(io(error)),
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_named() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.duckdb");
        let first = StateLock::acquire(&state, "apply").unwrap();
        let error = StateLock::acquire(&state, "apply").unwrap_err();
        let LockError::Held { holder, .. } = &error else { panic!("{error}") };
        assert_eq!(holder.pid, std::process::id());
        assert!(error.to_string().contains(&format!("(pid {})", std::process::id())));
        assert_eq!(status(&state).unwrap().map(|h| h.pid), Some(std::process::id()));

        drop(first);
        assert_eq!(status(&state).unwrap(), None);
        StateLock::acquire(&state, "apply").expect("a released lock can be taken again");
    }
}
