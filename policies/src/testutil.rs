//! Builders for unit tests: a reference policy and small simulated snapshots.
//! Every `conf` struct literal lives here; `..Default::default()` absorbs new fields.

use std::time::Duration;

use conf::{AccessBound, Action, Policy, Quota};
use damon_core::{AddrRange, RegionSnapshot, Snapshot};

pub const MIB: u64 = 1 << 20;

/// A region as `(start_mib, end_mib, nr_accesses, age)`.
pub type Region = (u64, u64, u32, u32);

/// Hot at >= 10 of 20 samples for 1 s, cold at <= 1 for 2 s, THP after 5 s
/// and 2 MiB; pages cold memory out; no gates; unlimited quota, weights 1:1.
pub fn policy() -> Policy {
    Policy {
        hot_min_accesses: AccessBound::Count(10),
        hot_min_age: Duration::from_secs(1),
        cold_max_accesses: AccessBound::Count(1),
        cold_min_age: Duration::from_secs(2),
        thp_min_age: Duration::from_secs(5),
        thp_min_size_bytes: 2 * MIB,
        thp_max_ptes_none: 0,
        cold_action: Some(Action::Pageout),
        promote_thp: false,
        demote_thp: false,
        prefetch_warm: false,
        sysmem_threshold: None,
        watermarks: None,
        swap_threshold_bytes: None,
        keep_in_ram: None,
        quota: quota(None, None),
        ..Policy::default()
    }
}

/// A quota with 1 s windows and weights 1:1.
pub fn quota(bytes_per_s: Option<u64>, cpu_ms_per_s: Option<u32>) -> Quota {
    Quota {
        bytes_per_s,
        cpu_ms_per_s,
        reset_interval: Duration::from_secs(1),
        weight_nr_accesses_permil: 1000,
        weight_age_permil: 1000,
        ..Quota::default()
    }
}

/// Regions as `(start_mib, end_mib, nr_accesses, age)`; max_nr_accesses 20,
/// aggregation interval 100 ms.
pub fn snap(regions: &[Region]) -> Snapshot {
    Snapshot {
        time_us: 0,
        aggr_interval_us: 100_000,
        max_nr_accesses: 20,
        regions: regions
            .iter()
            .map(|&(s, e, nr_accesses, age)| RegionSnapshot {
                range: AddrRange::new(s * MIB, e * MIB),
                nr_accesses,
                age,
            })
            .collect(),
    }
}
