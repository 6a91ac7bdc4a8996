//! Progress of a delivery: a bar on a terminal, a plain line every few seconds elsewhere
//! (CI logs), so a long apply is never silent.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain progress line is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    sync: String,
    total: u64,
    done: u64,
    not_delivered: u64,
    bar: Option<ProgressBar>,
    last_line: Instant,
}

impl Progress {
    pub fn new(sync: &str, total: u64, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} rows {per_sec} eta {eta} {msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(sync.to_string());
            bar
        });
        Progress {
            sync: sync.to_string(),
            total,
            done: 0,
            not_delivered: 0,
            bar,
            last_line: Instant::now(),
        }
    }

    /// Rows that reached a final outcome in this run.
    pub fn advance(&mut self, acknowledged: u64, not_delivered: u64) {
        self.done += acknowledged + not_delivered;
        self.not_delivered += not_delivered;
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.done);
                if self.not_delivered > 0 {
                    bar.set_message(format!("{} not delivered", self.not_delivered));
                }
            }
            None if self.last_line.elapsed() >= PLAIN_EVERY => {
                self.last_line = Instant::now();
                eprintln!(
                    "{}: {}/{} rows done, {} not delivered",
                    self.sync, self.done, self.total, self.not_delivered
                );
            }
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
