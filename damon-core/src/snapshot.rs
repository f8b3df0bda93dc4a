//! Snapshots: what an engine hands to policies, records and reports once
//! per aggregation interval.

use crate::AddrRange;
use serde::{Deserialize, Serialize};

/// One region of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionSnapshot {
    pub range: AddrRange,
    /// Accesses seen in the last aggregation interval: samples that found the
    /// region accessed (region engine) or the page score (page engine).
    pub nr_accesses: u32,
    /// Aggregation intervals the access count has stayed about the same.
    pub age: u32,
}

/// The regions of one target at the end of one aggregation interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    /// Monotonic time of the snapshot, in microseconds since the engine started.
    pub time_us: u64,
    /// Length of the aggregation interval the counts cover, in microseconds.
    pub aggr_interval_us: u64,
    /// The highest count a region can reach (aggr / sample, or 3 * loop).
    pub max_nr_accesses: u32,
    /// Sorted by address, non-overlapping.
    pub regions: Vec<RegionSnapshot>,
}

impl Snapshot {
    /// Sum of region sizes.
    pub fn total_bytes(&self) -> u64 {
        self.regions.iter().map(|r| r.range.len()).sum()
    }
}
