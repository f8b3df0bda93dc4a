//! Shared helpers of the whole-run benchmarks (`bench-*` binaries): an
//! embedded etmemd, /proc readings, statistics and the machine description.
//!
//! The benchmarks are documented commands (`cargo run --release -p perf --bin
//! bench-...`), not tests: they print markdown and assert nothing.
//!
//! Architecture invariant: only [`sys`] contains `unsafe`.

pub mod daemon;
pub mod machine;
pub mod procfs;
pub mod stats;
pub mod sys;
pub mod thp;
pub mod window;

pub use daemon::{EmbeddedDaemon, EmbeddedDaemonError};
pub use machine::Machine;
pub use stats::{human_bytes, median, min_max};

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Ctrl-C or SIGTERM arrived: the benchmark stops and its guards clean up.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("interrupted by a signal; cleaning up")]
pub struct Interrupted;

/// The flag SIGINT and SIGTERM set once [`perf::workload::termination_flag`](crate::workload::termination_flag)
/// installed the handlers; `None` when they could not be installed.
pub fn interrupt_flag() -> Option<&'static AtomicBool> {
    crate::workload::termination_flag().ok()
}

/// Sleeps `d`, waking every 20 ms to check `flag`.
pub fn sleep_checked(d: Duration, flag: Option<&AtomicBool>) -> Result<(), Interrupted> {
    let end = Instant::now() + d;
    loop {
        check(flag)?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// `Err` once a termination signal arrived.
pub fn check(flag: Option<&AtomicBool>) -> Result<(), Interrupted> {
    if flag.is_some_and(|f| f.load(Ordering::SeqCst)) { Err(Interrupted) } else { Ok(()) }
}
