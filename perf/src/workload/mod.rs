//! `etmem-workload`: a masim-style memory access generator with a known hot
//! set and checkable memory content, for tests, demos and benchmarks.
//!
//! A workload is regions (each its own anonymous mapping, optionally with a
//! THP hint) and phases of weighted access patterns (sequential or random,
//! stride, read/write mix); see [`spec`]. It comes from a masim config file
//! ([`masim`]), a JSON [`WorkloadSpec`], or the `--size 1G --hot 10%` shortcut
//! ([`HotColdConfig`]: one hot region accessed all the time, one cold region
//! touched once when filled).
//!
//! Every 8-byte word holds a value derived from (seed, region, offset)
//! ([`content`]); writes store that same value, so [`Workload::verify`] can
//! check every byte at any time: after pageout, refault, collapse or demotion
//! nothing may have changed (issue 10, "no data lost").
//!
//! Three ways to use it:
//! - in-process: [`Workload::start`], then `stats`, `verify`, `pause`, `resume`;
//! - as a child process: [`Child::spawn`]`(["--size", "16M", "--hot", "25%"])`,
//!   which finds (or under cargo builds) the binary and speaks the protocol;
//! - from a shell: `etmem-workload --size 1G --hot 10% --duration 60s`.
//!
//! The binary's stdin/stdout control protocol is described in [`protocol`].
//!
//! Architecture invariant: only `os` and `memory` contain `unsafe`, and only
//! `os` makes system calls (`child` spawns processes through std); `spec`, `masim`, `units` and `content` are pure.

pub mod child;
pub mod content;
pub mod engine;
pub mod masim;
pub mod memory;
mod os;
pub mod protocol;
pub mod spec;
pub mod units;

pub use child::{Child, CommandError, ExitReport, LocateError, SpawnError, SpawnOptions, locate_binary};
pub use engine::{RunOptions, ScheduleEvent, StartError, Workload};
pub use masim::{MasimConfig, MasimParseError, parse_masim};
pub use os::{page_size, termination_flag};
pub use protocol::{
    BadWord, Event, GroundTruth, PROTOCOL_VERSION, PauseAck, PhaseStats, Ready, RegionInfo, StatsReport,
    VerifyReport,
};
pub use spec::{HotColdConfig, HotSize, PatternSpec, PhaseSpec, RegionSpec, RwMode, ThpHint, WorkloadSpec};

/// The control protocol as plain text, for the binary's `--help`.
pub fn protocol_help() -> String {
    include_str!("PROTOCOL.md").lines().filter(|l| !l.starts_with("```")).collect::<Vec<_>>().join("\n")
}
