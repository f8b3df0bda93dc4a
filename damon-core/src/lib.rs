//! DAMON's region-based access monitoring, run in userspace.
//!
//! The core (everything but `ops`) is pure: it takes time as counted samples
//! and randomness as a seeded RNG, and sees memory only through [`AccessProbe`].
//! `ops` holds the address-space operations that do I/O: /proc maps, pidfds,
//! pagemap, the probes, and the simulated address space.

pub mod addr;
pub mod ops;
pub mod probe;
pub mod snapshot;

pub use addr::{Addr, AddrRange, PAGE_SIZE};
pub use probe::{AccessProbe, ProbeError, Sees};
pub use snapshot::{RegionSnapshot, Snapshot};
