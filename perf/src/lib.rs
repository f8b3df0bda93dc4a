//! Workload generator, benchmark helpers and benchmark reports for etmem-rs.
//!
//! [`workload`] is `etmem-workload`, a masim-like generator with checkable
//! memory content, usable in-process ([`workload::Workload`]) or as a child
//! process ([`workload::Child`]).
//!
//! [`bench`](mod@bench) holds what the `bench-*` binaries share: an embedded etmemd,
//! /proc readings, statistics, the machine description.
//!
//! [`daemon_load`] puts a real etmemd under load (`bench-load`, tests/tests/load.rs).

pub mod bench;
pub mod daemon_load;
pub mod tpcc;
pub mod workload;
