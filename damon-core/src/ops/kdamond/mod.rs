//! The kernel's own DAMON, driven through its sysfs interface
//! (`/sys/kernel/mm/damon/admin`, reference/damon.md §10): specs in raw
//! kernel units ([`spec`]), the writer ([`mod@write`]), read-back of stats and
//! tried regions into [`crate::Snapshot`]s ([`read`]), and the pool of
//! kdamonds this process owns with the coexistence rules ([`pool`]).
//!
//! The root is a parameter everywhere, so nothing here assumes the real
//! tree. Architecture invariant: every write goes through [`KdamondPool`],
//! which refuses to write anything while a kdamond it does not own runs.

pub mod pool;
pub mod read;
pub mod spec;
pub mod tree;
pub mod write;

pub use pool::{AcquireError, DEFAULT_RECORD_DIR, KdamondPool, PoolError};
pub use read::{Features, KdamondInfo, SchemeStats, TriedRegion, TriedRegions, thread_cpu_time};
pub use spec::{
    DamosAction, FilterKind, FilterSpec, GoalMetric, IntervalsGoalSpec, KdamondSpec, MinMax, MonitoringAttrs,
    OpsKind, PatternSpec, QuotaGoalSpec, QuotaSpec, SchemeSpec, SpecProblem, TargetSpec, WatermarkMetric,
    WatermarksSpec,
};
pub use tree::{ReadError, WriteError};
pub use write::StageError;

use std::path::{Path, PathBuf};

/// The DAMON sysfs admin directory on a real system.
pub const DEFAULT_ADMIN_DIR: &str = "/sys/kernel/mm/damon/admin";

/// Commands written to a kdamond's `state` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateCommand {
    On,
    Off,
    /// Re-read every input but `state` while running.
    Commit,
    CommitSchemesQuotaGoals,
    UpdateSchemesStats,
    /// Updates only `total_bytes`, and removes the per-region directories.
    UpdateSchemesTriedBytes,
    UpdateSchemesTriedRegions,
    ClearSchemesTriedRegions,
    UpdateSchemesEffectiveQuotas,
    UpdateTunedIntervals,
}

impl StateCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            StateCommand::On => "on",
            StateCommand::Off => "off",
            StateCommand::Commit => "commit",
            StateCommand::CommitSchemesQuotaGoals => "commit_schemes_quota_goals",
            StateCommand::UpdateSchemesStats => "update_schemes_stats",
            StateCommand::UpdateSchemesTriedBytes => "update_schemes_tried_bytes",
            StateCommand::UpdateSchemesTriedRegions => "update_schemes_tried_regions",
            StateCommand::ClearSchemesTriedRegions => "clear_schemes_tried_regions",
            StateCommand::UpdateSchemesEffectiveQuotas => "update_schemes_effective_quotas",
            StateCommand::UpdateTunedIntervals => "update_tuned_intervals",
        }
    }
}

/// Paths of one DAMON sysfs tree and the read-only queries on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamonSysfs {
    admin: PathBuf,
}

impl DamonSysfs {
    /// The tree under `admin` (the directory holding `kdamonds/`).
    pub fn new(admin: impl Into<PathBuf>) -> DamonSysfs {
        DamonSysfs { admin: admin.into() }
    }

    /// The real tree, `/sys/kernel/mm/damon/admin`.
    pub fn system() -> DamonSysfs {
        DamonSysfs::new(DEFAULT_ADMIN_DIR)
    }

    pub fn admin(&self) -> &Path {
        &self.admin
    }

    pub fn kdamonds_dir(&self) -> PathBuf {
        self.admin.join("kdamonds")
    }

    pub fn kdamond_dir(&self, index: usize) -> PathBuf {
        self.kdamonds_dir().join(index.to_string())
    }

    pub fn state_file(&self, index: usize) -> PathBuf {
        self.kdamond_dir(index).join("state")
    }

    /// `.../kdamonds/K/contexts/0/schemes/S`.
    pub fn scheme_dir(&self, index: usize, scheme: usize) -> PathBuf {
        self.kdamond_dir(index).join("contexts/0/schemes").join(scheme.to_string())
    }

    /// Why DAMON sysfs cannot be used here, if it cannot.
    pub fn available(&self) -> Result<(), String> {
        let nr = self.kdamonds_dir().join("nr_kdamonds");
        match tree::read_u64(&nr) {
            Ok(_) => Ok(()),
            Err(ReadError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Err(
                format!("no {} (a kernel without CONFIG_DAMON_SYSFS, or sysfs not mounted)", nr.display()),
            ),
            Err(ReadError::Io { source, .. }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(format!("{} is not readable (kernel DAMON needs root)", nr.display()))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Every kdamond directory and whether it runs.
    pub fn survey(&self) -> Result<Vec<KdamondInfo>, ReadError> {
        read::survey(&self.kdamonds_dir())
    }

    pub fn scheme_stats(&self, index: usize, scheme: usize) -> Result<SchemeStats, ReadError> {
        read::scheme_stats(&self.scheme_dir(index, scheme))
    }

    pub fn tried_regions(&self, index: usize, scheme: usize) -> Result<TriedRegions, ReadError> {
        read::tried_regions(&self.scheme_dir(index, scheme))
    }

    pub fn effective_bytes(&self, index: usize, scheme: usize) -> Option<u64> {
        read::effective_bytes(&self.scheme_dir(index, scheme))
    }

    /// The current (possibly auto-tuned) sample and aggregation intervals in µs.
    pub fn intervals_us(&self, index: usize) -> Result<(u64, u64), ReadError> {
        let iv = self.kdamond_dir(index).join("contexts/0/monitoring_attrs/intervals");
        Ok((tree::read_u64(&iv.join("sample_us"))?, tree::read_u64(&iv.join("aggr_us"))?))
    }

    /// Every file of the tree with its content: a read-only fingerprint.
    pub fn listing(&self) -> Vec<(PathBuf, String)> {
        tree::listing(&self.admin)
    }

    /// Every directory and file of the tree with its inode number and
    /// modification time (metadata only): see [`tree::Stamp`].
    pub fn stamps(&self) -> Vec<tree::Stamp> {
        tree::stamps(&self.admin)
    }
}

/// "System RAM" ranges of /proc/iomem (top level only), for paddr targets.
/// Needs root: others read zeroed addresses, which yields no range.
pub fn system_ram_ranges() -> Vec<crate::AddrRange> {
    let text = std::fs::read_to_string("/proc/iomem").unwrap_or_default();
    parse_system_ram(&text)
}

fn parse_system_ram(text: &str) -> Vec<crate::AddrRange> {
    let mut out: Vec<crate::AddrRange> = text
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| {
            let (range, name) = l.split_once(" : ")?;
            if name.trim() != "System RAM" {
                return None;
            }
            let (a, b) = range.trim().split_once('-')?;
            let start = crate::Addr(u64::from_str_radix(a, 16).ok()?).align_up(crate::PAGE_SIZE);
            let end =
                crate::Addr(u64::from_str_radix(b, 16).ok()?.checked_add(1)?).align_down(crate::PAGE_SIZE);
            (end > start).then_some(crate::AddrRange { start, end })
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_ram_from_iomem() {
        let text = "00000000-00000fff : Reserved\n00001000-0009fbff : System RAM\n000a0000-000bffff : PCI Bus\n\
                    00100000-3ffdffff : System RAM\n  01000000-01ffffff : Kernel code\n";
        let r = parse_system_ram(text);
        assert_eq!(
            r,
            vec![crate::AddrRange::new(0x1000, 0x9f000), crate::AddrRange::new(0x100000, 0x3ffe0000)]
        );
        // Unprivileged readers see zeros: no usable range.
        assert!(parse_system_ram("00000000-00000000 : System RAM\n").is_empty());
    }

    #[test]
    fn a_missing_tree_is_unavailable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = DamonSysfs::new(dir.path());
        assert!(s.available().expect_err("no tree").contains("CONFIG_DAMON_SYSFS"));
    }
}
