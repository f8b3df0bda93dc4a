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

/// A size the way damo prints it: `0 B`, `512 B`, `4.000 KiB`, `31.617 MiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit {
            return format!("{:.3} {name}", bytes as f64 / unit as f64);
        }
    }
    format!("{bytes} B")
}

impl RegionSnapshot {
    /// The region in damo's raw report form, `start-end( size): nr_accesses age`,
    /// e.g. `7f0000000000-7f0000400000(   4.000 MiB):         20     3`.
    pub fn damo_raw_line(&self) -> String {
        format!(
            "{:x}-{:x}({:>12}): {:>10} {:>5}",
            self.range.start.0,
            self.range.end.0,
            format_size(self.range.len()),
            self.nr_accesses,
            self.age
        )
    }
}

impl Snapshot {
    /// Every region in damo's raw form, one line each (no header).
    pub fn damo_raw(&self) -> String {
        self.regions.iter().map(|r| r.damo_raw_line() + "\n").collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damo_raw_form() {
        let r = RegionSnapshot {
            range: AddrRange::new(0x7f00_0000_0000, 0x7f00_0040_0000),
            nr_accesses: 20,
            age: 3,
        };
        assert_eq!(r.damo_raw_line(), "7f0000000000-7f0000400000(   4.000 MiB):         20     3");
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1536), "1.500 KiB");
        assert_eq!(format_size(33_152_000), "31.616 MiB");
        let s = Snapshot { regions: vec![r, r], ..Snapshot::default() };
        assert_eq!(s.damo_raw().lines().count(), 2);
    }
}
