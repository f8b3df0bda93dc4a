//! DAMON's region-based access monitoring, run in userspace.
//!
//! The core (everything but `ops`) is pure: it takes time as counted samples
//! and randomness as a seeded RNG, and sees memory only through [`AccessProbe`].
//! `ops` holds the address-space operations that do I/O: /proc maps, pidfds,
//! pagemap, the probes, and the simulated address space.
//!
//! Core map: [`monitor`] is the kdamond main loop (targets, sampling,
//! aggregation, auto-tuning, the [`Monitor::step`] driver), [`regions`] the
//! region rules (merge, split, `damon_set_regions`, vaddr ranges),
//! [`autotune`] the interval tuning and feedback loop.

pub mod addr;
pub mod autotune;
pub mod monitor;
pub mod ops;
pub mod probe;
pub mod regions;
pub mod snapshot;

pub use addr::{Addr, AddrRange, PAGE_SIZE};
pub use monitor::{
    AddTargetError, AttrsProblem, IntervalsGoal, Monitor, MonitorAttrs, MonitorAttrsError, MonitorStats,
    RangeLayout, RecordError, SampleOutcome, StepOutcome, TargetId, TargetOps, UnknownTargetError,
};
pub use probe::{AccessProbe, ProbeError, Sees};
pub use regions::Region;
pub use snapshot::{RegionSnapshot, Snapshot, format_size};
