//! What both benchmarks need to run a child process and measure it: wall time, peak
//! resident memory (wait4's `ru_maxrss`), a deadline, and no process left behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How long any one child process may run before it is killed and the benchmark fails.
pub const DEADLINE: Duration = Duration::from_secs(1800);

/// A finished child process: its stdout lines with when each arrived, wall time, processor
/// time (user and system) and peak resident memory.
pub struct Measured {
    pub lines: Vec<(Duration, String)>,
    pub wall: Duration,
    pub cpu: Duration,
    pub peak_rss_kib: u64,
    pub exit_code: Option<i32>,
}

impl Measured {
    pub fn text(&self) -> String {
        self.lines.iter().map(|l| format!("{}\n", l.1)).collect()
    }
}

/// Kills a child that was not reaped, so no process outlives an error.
struct Reaper {
    child: Child,
    reaped: bool,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `command` to its end (killing it past [`DEADLINE`]), reading its stdout as it
/// comes, and reaps it with wait4 for its peak RSS.
pub fn run_measured(command: &mut Command) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let child = command.stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
    let mut child = Reaper { child, reaped: false };
    let stdout = child.child.stdout.take().context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            lines.push((started.elapsed(), line));
        }
        lines
    });

    let pid = child.child.id() as libc::pid_t;
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waiting, without blocking, for our own child with valid pointers.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            child.reaped = true;
            break (status, usage);
        }
        anyhow::ensure!(reaped == 0, "wait4 failed: {}", std::io::Error::last_os_error());
        anyhow::ensure!(started.elapsed() < DEADLINE, "{command:?} ran past {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(2));
    };
    let wall = started.elapsed();
    let lines = reader.join().map_err(|_| anyhow::anyhow!("the stdout reader panicked"))?;
    let exit_code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = time(usage.ru_utime) + time(usage.ru_stime);
    Ok(Measured { lines, wall, cpu, peak_rss_kib: usage.ru_maxrss as u64, exit_code })
}

/// The binary `name` built beside the running example.
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let release = exe.parent().and_then(Path::parent).context("no target folder")?;
    let path = release.join(name);
    anyhow::ensure!(
        path.exists(),
        "build it first: cargo build --release --bin {name} (missing {})",
        path.display()
    );
    Ok(path)
}

/// The median of `values` (the upper one of an even count); sorts them.
pub fn median<T: PartialOrd + Copy>(values: &mut [T]) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}
