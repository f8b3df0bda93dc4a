//! Address-space operations: everything in damon-core that does I/O.
//! Syscall wrappers, pidfds, /proc parsing, the probes, and the simulated space.

pub mod idle_bitmap;
pub mod idle_pages;
pub mod kdamond;
pub mod kpageflags;
pub mod maps;
pub mod pagemap;
pub mod pidfd;
pub mod refault;
pub mod select;
pub mod sim;
pub mod soft_dirty;
pub mod sys;

pub use pidfd::{OpenTargetError, ProcTarget};
pub use select::{OsProbe, ProbeKind};

/// What a probe saw of one sample, when "not accessed" and "could not
/// tell" must be told apart ([`crate::AccessProbe::check`] reports
/// `Unknown` as not accessed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleState {
    Accessed,
    NotAccessed,
    /// The probe could not observe this page (not armed, skipped, or the
    /// arm did not take): reported not accessed, counted in
    /// [`ProbeStats::unknown`].
    Unknown,
}

/// Counters every OS probe keeps since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProbeStats {
    pub arm_calls: u64,
    pub check_calls: u64,
    /// Addresses passed to `arm` in total.
    pub addrs_armed: u64,
    /// Addresses passed to `check` in total.
    pub addrs_checked: u64,
    /// Checked addresses found accessed.
    pub accessed: u64,
    /// Checked addresses the probe could not observe (reported not accessed).
    pub unknown: u64,
}
