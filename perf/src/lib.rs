//! Workload generator, benchmark helpers and benchmark reports for etmem-rs.
//!
//! [`workload`] is `etmem-workload`, a masim-like generator with checkable
//! memory content, usable in-process ([`workload::Workload`]) or as a child
//! process ([`workload::Child`]).

pub mod workload;
