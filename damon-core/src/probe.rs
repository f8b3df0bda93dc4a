//! The access probe: how the core learns whether a sampled page was touched.
//! Batched, so one sampling round of every region costs a few syscalls.

use crate::Addr;

/// What kind of access a probe can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sees {
    ReadsAndWrites,
    WritesOnly,
}

/// Checks whether addresses were accessed between `arm` and `check`.
pub trait AccessProbe {
    /// A short name for logs and `project show` (`refault`, `soft-dirty`, ...).
    fn name(&self) -> &'static str;

    /// What accesses this probe can see.
    fn sees(&self) -> Sees;

    /// Clear the access state of every address in `addrs` (one per region).
    fn arm(&mut self, addrs: &[Addr]) -> Result<(), ProbeError>;

    /// For each address of `addrs` (the ones armed before), set
    /// `accessed[i]` to whether it was touched since it was armed.
    /// `accessed.len() == addrs.len()`.
    fn check(&mut self, addrs: &[Addr], accessed: &mut [bool]) -> Result<(), ProbeError>;
}

/// Why a probe could not arm or check.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The target process exited (or its pid now names another process).
    #[error("target process {pid} is gone")]
    TargetGone { pid: u32 },
    #[error("{what} for pid {pid}")]
    Io {
        pid: u32,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("probe {probe} is not available here: {reason}")]
    Unavailable { probe: &'static str, reason: String },
}
