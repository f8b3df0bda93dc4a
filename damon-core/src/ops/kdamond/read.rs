//! Reading the DAMON sysfs tree back: who runs which kdamond (the survey
//! coexistence is decided on), scheme stats, tried regions, the features a
//! kernel has, and a kdamond thread's CPU time. Nothing here writes.

use super::tree::{self, ReadError};
use crate::{AddrRange, RegionSnapshot, Snapshot};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// One kdamond directory as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdamondInfo {
    pub index: usize,
    pub running: bool,
    /// The kdamond thread's pid while it runs.
    pub pid: Option<u32>,
    /// `operations` of its context, when it has one.
    pub ops: Option<String>,
    /// `pid_target` of each target (vaddr).
    pub target_pids: Vec<u32>,
}

impl std::fmt::Display for KdamondInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kdamond {}", self.index)?;
        if let Some(p) = self.pid {
            write!(f, " (pid {p})")?;
        }
        write!(f, " is {}", if self.running { "on" } else { "off" })?;
        if let Some(o) = &self.ops {
            write!(f, ", {o}")?;
        }
        if !self.target_pids.is_empty() {
            let pids: Vec<String> = self.target_pids.iter().map(u32::to_string).collect();
            write!(f, ", targets {}", pids.join(" "))?;
        }
        Ok(())
    }
}

/// Every kdamond directory under `kdamonds/`.
pub fn survey(kdamonds_dir: &Path) -> Result<Vec<KdamondInfo>, ReadError> {
    let n = tree::read_u64(&kdamonds_dir.join("nr_kdamonds"))? as usize;
    (0..n).map(|i| kdamond_info(&kdamonds_dir.join(i.to_string()), i)).collect()
}

/// One kdamond directory.
pub fn kdamond_info(dir: &Path, index: usize) -> Result<KdamondInfo, ReadError> {
    let running = tree::read(&dir.join("state"))?.trim() == "on";
    let pid = if running { u32::try_from(tree::read_i64(&dir.join("pid"))?).ok() } else { None };
    let ctx = dir.join("contexts").join("0");
    let (ops, target_pids) = if tree::read_u64(&dir.join("contexts").join("nr_contexts"))? > 0 {
        let ops = tree::read(&ctx.join("operations"))?.trim().to_string();
        let mut pids = Vec::new();
        if ops != "paddr" {
            for (_, t) in tree::numbered_dirs(&ctx.join("targets"))? {
                if let Ok(p) = tree::read_i64(&t.join("pid_target"))
                    && let Ok(p) = u32::try_from(p)
                {
                    pids.push(p);
                }
            }
        }
        (Some(ops), pids)
    } else {
        (None, Vec::new())
    };
    Ok(KdamondInfo { index, running, pid, ops, target_pids })
}

/// A scheme's `stats/` (refreshed by `update_schemes_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SchemeStats {
    pub nr_tried: u64,
    pub sz_tried: u64,
    pub nr_applied: u64,
    pub sz_applied: u64,
    pub qt_exceeds: u64,
    /// Linux 6.14+.
    pub sz_ops_filter_passed: Option<u64>,
}

pub fn scheme_stats(scheme_dir: &Path) -> Result<SchemeStats, ReadError> {
    let s = scheme_dir.join("stats");
    let opt = |name: &str| tree::read_u64(&s.join(name)).ok();
    Ok(SchemeStats {
        nr_tried: tree::read_u64(&s.join("nr_tried"))?,
        sz_tried: tree::read_u64(&s.join("sz_tried"))?,
        nr_applied: tree::read_u64(&s.join("nr_applied"))?,
        sz_applied: tree::read_u64(&s.join("sz_applied"))?,
        qt_exceeds: tree::read_u64(&s.join("qt_exceeds"))?,
        sz_ops_filter_passed: opt("sz_ops_filter_passed"),
    })
}

/// A scheme's `quotas/effective_bytes` (after `update_schemes_effective_quotas`; 6.9+).
pub fn effective_bytes(scheme_dir: &Path) -> Option<u64> {
    tree::read_u64(&scheme_dir.join("quotas").join("effective_bytes")).ok()
}

/// One region a scheme tried in the last apply interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriedRegion {
    pub range: AddrRange,
    pub nr_accesses: u32,
    pub age: u32,
    /// Linux 6.14+.
    pub sz_filter_passed: Option<u64>,
}

/// A scheme's `tried_regions/` (after `update_schemes_tried_regions`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TriedRegions {
    /// Linux 6.6+.
    pub total_bytes: Option<u64>,
    /// Sorted by address.
    pub regions: Vec<TriedRegion>,
}

pub fn tried_regions(scheme_dir: &Path) -> Result<TriedRegions, ReadError> {
    let dir = scheme_dir.join("tried_regions");
    let total_bytes = tree::read_u64(&dir.join("total_bytes")).ok();
    let mut regions = Vec::new();
    for (_, r) in tree::numbered_dirs(&dir)? {
        let start = tree::read_u64(&r.join("start"))?;
        let end = tree::read_u64(&r.join("end"))?;
        if end <= start {
            continue;
        }
        regions.push(TriedRegion {
            range: AddrRange::new(start, end),
            nr_accesses: u32::try_from(tree::read_u64(&r.join("nr_accesses"))?).unwrap_or(u32::MAX),
            age: u32::try_from(tree::read_u64(&r.join("age"))?).unwrap_or(u32::MAX),
            sz_filter_passed: tree::read_u64(&r.join("sz_filter_passed")).ok(),
        });
    }
    regions.sort_by_key(|r| r.range.start);
    Ok(TriedRegions { total_bytes, regions })
}

impl TriedRegions {
    /// The regions as a [`Snapshot`]: the stat scheme that matches every
    /// region of one target gives DAMON's full view of that target.
    pub fn to_snapshot(&self, time_us: u64, aggr_interval_us: u64, max_nr_accesses: u32) -> Snapshot {
        let mut regions: Vec<RegionSnapshot> = Vec::with_capacity(self.regions.len());
        for r in &self.regions {
            // Overlaps cannot come from one target; drop any defensively so the
            // snapshot stays sorted and disjoint as its contract says.
            if regions.last().is_some_and(|l| l.range.end > r.range.start) {
                continue;
            }
            regions.push(RegionSnapshot { range: r.range, nr_accesses: r.nr_accesses, age: r.age });
        }
        Snapshot { time_us, aggr_interval_us, max_nr_accesses, regions }
    }
}

/// What a kernel's DAMON sysfs interface offers, from the files it has.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Features {
    /// `avail_operations` (vaddr, fvaddr, paddr).
    pub operations: Vec<String>,
    pub refresh_ms: bool,
    pub intervals_goal: bool,
    pub addr_unit: bool,
    pub apply_interval: bool,
    pub quota_goals: bool,
    /// Goal metrics beyond user_input (`target_metric`).
    pub goal_metrics: bool,
    pub effective_bytes: bool,
    /// `core_filters/` + `ops_filters/` (6.15) rather than `filters/` only.
    pub core_ops_filters: bool,
    pub filters: bool,
    pub filter_allow: bool,
    /// The target filter's index file (`target_idx`).
    pub target_filter: bool,
    pub tried_regions_total_bytes: bool,
    pub sz_filter_passed: bool,
    pub obsolete_target: bool,
    /// /proc/pressure/memory exists (PSI goals make sense).
    pub psi: bool,
}

impl Features {
    /// Read the features from a kdamond directory whose context has at least
    /// one target, one scheme, one filter and one quota goal (the pool sizes
    /// its own kdamond that way before calling this).
    pub fn read(kdamond_dir: &Path) -> Features {
        let ctx = kdamond_dir.join("contexts").join("0");
        let s = ctx.join("schemes").join("0");
        let filter0 = if s.join("core_filters").exists() {
            s.join("core_filters").join("0")
        } else {
            s.join("filters").join("0")
        };
        let operations = tree::read(&ctx.join("avail_operations"))
            .map(|t| t.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        Features {
            operations,
            refresh_ms: kdamond_dir.join("refresh_ms").exists(),
            intervals_goal: ctx.join("monitoring_attrs/intervals/intervals_goal").exists(),
            addr_unit: ctx.join("addr_unit").exists(),
            apply_interval: s.join("apply_interval_us").exists(),
            quota_goals: s.join("quotas/goals").exists(),
            goal_metrics: s.join("quotas/goals/0/target_metric").exists(),
            effective_bytes: s.join("quotas/effective_bytes").exists(),
            core_ops_filters: s.join("core_filters").exists(),
            filters: s.join("filters").exists() || s.join("core_filters").exists(),
            filter_allow: filter0.join("allow").exists(),
            target_filter: filter0.join("target_idx").exists() || filter0.join("damon_target_idx").exists(),
            tried_regions_total_bytes: s.join("tried_regions/total_bytes").exists(),
            sz_filter_passed: s.join("stats/sz_ops_filter_passed").exists(),
            obsolete_target: ctx.join("targets/0/obsolete_target").exists(),
            psi: Path::new("/proc/pressure/memory").exists(),
        }
    }

    pub fn has_operations(&self, ops: super::spec::OpsKind) -> bool {
        self.operations.iter().any(|o| o == ops.as_str())
    }
}

/// CPU time a thread (a kdamond) has used: `/proc/PID/schedstat`'s first
/// field (ns on CPU), else utime + stime of `/proc/PID/stat` in USER_HZ (100).
pub fn thread_cpu_time(pid: u32) -> Option<Duration> {
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        && let Some(ns) = s.split_whitespace().next().and_then(|f| f.parse::<u64>().ok())
    {
        return Some(Duration::from_nanos(ns));
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime); `rest` starts at field 3.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tried_regions_become_a_sorted_snapshot() {
        let t = |a, b, n| TriedRegion {
            range: AddrRange::new(a, b),
            nr_accesses: n,
            age: 2,
            sz_filter_passed: None,
        };
        let tr = TriedRegions {
            total_bytes: Some(0x3000),
            regions: vec![t(0x1000, 0x2000, 0), t(0x1800, 0x2800, 9), t(0x2000, 0x4000, 5)],
        };
        let s = tr.to_snapshot(7, 100_000, 20);
        assert_eq!(s.regions.len(), 2);
        assert_eq!(s.regions[1].nr_accesses, 5);
        assert_eq!((s.time_us, s.aggr_interval_us, s.max_nr_accesses), (7, 100_000, 20));
    }

    #[test]
    fn our_own_cpu_time_is_readable() {
        let t = thread_cpu_time(std::process::id()).expect("cpu time of this process");
        assert!(t < Duration::from_secs(3600));
    }
}
