//! Measuring a workload child over a time window: its accesses per second
//! (from the child's own counters) and its page faults (from /proc), plus
//! this process's CPU time, between two marks.

use super::procfs::{self, ProcStat};
use super::{Interrupted, sleep_checked};
use crate::workload::{Child, CommandError};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// Why a window could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("cannot read the workload's counters")]
    Command(#[from] CommandError),
    #[error("cannot read /proc/{pid}/stat")]
    Proc {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub at: Instant,
    pub accesses: u64,
    pub run_ms: u64,
    pub faults: ProcStat,
    /// This (benchmark) process's CPU time.
    pub process_cpu: Duration,
}

/// What happened between two marks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub secs: f64,
    /// The workload's accesses per second of run time.
    pub accesses_per_s: f64,
    pub majflt_per_s: f64,
    pub minflt_per_s: f64,
    /// CPU seconds this process used (an embedded daemon's engines included).
    pub process_cpu_s: f64,
}

/// Reads the child's counters now.
pub fn mark(child: &mut Child) -> Result<Mark, WindowError> {
    let pid = child.pid();
    let stats = child.stats()?;
    let faults = procfs::proc_stat(pid).map_err(|source| WindowError::Proc { pid, source })?;
    Ok(Mark {
        at: Instant::now(),
        accesses: stats.accesses,
        run_ms: stats.run_ms,
        faults,
        process_cpu: super::sys::process_cpu_time(),
    })
}

/// The window from `a` to `b`.
pub fn between(a: &Mark, b: &Mark) -> Window {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let run_s = (b.run_ms.saturating_sub(a.run_ms) as f64 / 1000.0).max(1e-9);
    Window {
        secs,
        accesses_per_s: b.accesses.saturating_sub(a.accesses) as f64 / run_s,
        majflt_per_s: b.faults.majflt.saturating_sub(a.faults.majflt) as f64 / secs,
        minflt_per_s: b.faults.minflt.saturating_sub(a.faults.minflt) as f64 / secs,
        process_cpu_s: b.process_cpu.saturating_sub(a.process_cpu).as_secs_f64(),
    }
}

/// Marks, sleeps `d` (stopping early on a signal), marks again.
pub fn measure(child: &mut Child, d: Duration, flag: Option<&AtomicBool>) -> Result<Window, WindowError> {
    let a = mark(child)?;
    sleep_checked(d, flag)?;
    let b = mark(child)?;
    Ok(between(&a, &b))
}
