//! Progress for long commands (`etmem record`, demos, benchmarks): one
//! status line on stderr, redrawn in place on a terminal, or a plain line
//! every few seconds when stderr is a file or a pipe.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the line is redrawn on a terminal.
const TTY_EVERY: Duration = Duration::from_millis(250);
/// How often a line is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// A progress reporter on stderr.
#[derive(Debug)]
pub struct Progress {
    label: String,
    tty: bool,
    enabled: bool,
    started: Instant,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// Progress under `label` (e.g. `recording db`).
    pub fn new(label: impl Into<String>) -> Progress {
        Progress {
            label: label.into(),
            tty: std::io::stderr().is_terminal(),
            enabled: true,
            started: Instant::now(),
            last: None,
            drawn: false,
        }
    }

    /// A reporter that prints nothing (`--quiet`).
    pub fn quiet() -> Progress {
        Progress { enabled: false, ..Progress::new("") }
    }

    /// Time since the reporter was made.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Show `status()` if a line is due; `status` runs only then.
    pub fn update(&mut self, status: impl FnOnce() -> String) {
        if !self.enabled {
            return;
        }
        let every = if self.tty { TTY_EVERY } else { PLAIN_EVERY };
        if self.last.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let line = format!("{}: {}", self.label, status());
        let mut err = std::io::stderr().lock();
        let _ = if self.tty { write!(err, "\r\x1b[K{line}") } else { writeln!(err, "{line}") };
        let _ = err.flush();
        self.drawn = true;
    }

    /// End the status line with a final message.
    pub fn finish(&mut self, message: &str) {
        if !self.enabled {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty && self.drawn {
            let _ = write!(err, "\r\x1b[K");
        }
        let _ = writeln!(err, "{}: {message}", self.label);
    }
}

/// `1m 05s`, `12.3s`.
pub fn fmt_elapsed(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 { format!("{s:.1}s") } else { format!("{}m {:02}s", d.as_secs() / 60, d.as_secs() % 60) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_reads_well() {
        assert_eq!(fmt_elapsed(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(fmt_elapsed(Duration::from_secs(65)), "1m 05s");
    }
}
