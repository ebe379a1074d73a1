//! Live progress: an indicatif bar on a terminal (connected clients, updates/s, running
//! p99), a plain line every 5 s on stderr otherwise (CI logs, `scripts/bench.sh`), nothing
//! with `--quiet`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::options::Progress;

/// Period of the plain progress lines.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The progress display.
pub struct LiveProgress {
    bar: Option<ProgressBar>,
    plain: bool,
    last_plain: Instant,
    start: Instant,
}

impl LiveProgress {
    /// A display for `clients` clients.
    pub fn new(mode: Progress, clients: usize) -> LiveProgress {
        let start = Instant::now();
        if mode == Progress::Off {
            return LiveProgress { bar: None, plain: false, last_plain: start, start };
        }
        if !std::io::stderr().is_terminal() {
            return LiveProgress { bar: None, plain: true, last_plain: start, start };
        }
        let bar = ProgressBar::with_draw_target(Some(clients as u64), ProgressDrawTarget::stderr_with_hz(4));
        let style =
            ProgressStyle::with_template("[{elapsed_precise}] {bar:24.cyan/blue} {pos:>6}/{len:6} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        LiveProgress { bar: Some(bar), plain: false, last_plain: start, start }
    }

    /// Shows `connected` clients and `msg`.
    pub fn update(&mut self, connected: usize, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_position(connected as u64);
            b.set_message(msg.to_string());
        } else if self.plain && self.last_plain.elapsed() >= PLAIN_EVERY {
            self.last_plain = Instant::now();
            eprintln!("[{:>5.0}s] {connected} connected, {msg}", self.start.elapsed().as_secs_f64());
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    /// Prints a line above the bar (or on stderr).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None if self.plain => eprintln!("{line}"),
            None => {}
        }
    }
}
