//! What one kdamond should do, in the kernel's raw sysfs units: bytes,
//! samples per aggregation, aggregation intervals, µs, per mille.
//!
//! Pure data and validation (`damon_set_attrs` and DAMOS rules); the writer
//! in [`super::write`] puts a [`KdamondSpec`] into a kdamond's directory.

use crate::AddrRange;
use serde::{Deserialize, Serialize};

/// The sysfs value meaning "no upper bound" for `unsigned long` files.
pub const ULONG_MAX: u64 = u64::MAX;

/// DAMON's smallest `min_nr_regions` (`damon_set_attrs`).
pub const MIN_NR_REGIONS_FLOOR: u32 = 3;

/// DAMON operations set (`operations` file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpsKind {
    /// Virtual address spaces of processes (three-region init, periodic update).
    Vaddr,
    /// Fixed virtual ranges given as target regions.
    Fvaddr,
    /// Physical memory (ranges given as target regions, no pids).
    Paddr,
}

impl OpsKind {
    /// The name in `operations` and `avail_operations`.
    pub fn as_str(self) -> &'static str {
        match self {
            OpsKind::Vaddr => "vaddr",
            OpsKind::Fvaddr => "fvaddr",
            OpsKind::Paddr => "paddr",
        }
    }

    /// Whether targets are processes (pid_target).
    pub fn has_pids(self) -> bool {
        !matches!(self, OpsKind::Paddr)
    }
}

/// Everything one kdamond (with its single context) is configured with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdamondSpec {
    pub ops: OpsKind,
    pub attrs: MonitoringAttrs,
    pub targets: Vec<TargetSpec>,
    pub schemes: Vec<SchemeSpec>,
}

/// `monitoring_attrs/`: intervals and region bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitoringAttrs {
    pub sample_us: u64,
    pub aggr_us: u64,
    pub update_us: u64,
    pub min_nr_regions: u32,
    pub max_nr_regions: u32,
    /// `intervals/intervals_goal/` (Linux 6.15+); `None` = tuning off.
    pub intervals_goal: Option<IntervalsGoalSpec>,
}

impl Default for MonitoringAttrs {
    /// The kernel's defaults, with damo's 1 s update interval.
    fn default() -> Self {
        MonitoringAttrs {
            sample_us: 5_000,
            aggr_us: 100_000,
            update_us: 1_000_000,
            min_nr_regions: 10,
            max_nr_regions: 1000,
            intervals_goal: None,
        }
    }
}

impl MonitoringAttrs {
    /// Samples per aggregation: the highest `nr_accesses` a region can have.
    pub fn max_nr_accesses(&self) -> u32 {
        u32::try_from(self.aggr_us / self.sample_us.max(1)).unwrap_or(u32::MAX).max(1)
    }
}

/// DAMON `intervals_goal` (monitoring-intervals auto-tuning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalsGoalSpec {
    pub access_bp: u32,
    pub aggrs: u32,
    pub min_sample_us: u64,
    pub max_sample_us: u64,
}

/// One monitoring target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSpec {
    /// The process (vaddr, fvaddr); `None` for paddr.
    pub pid: Option<u32>,
    /// Initial (vaddr) or fixed (fvaddr, paddr) regions, sorted and disjoint.
    /// Empty for vaddr: the kernel finds the three regions itself.
    pub regions: Vec<AddrRange>,
}

/// DAMOS actions with their sysfs names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DamosAction {
    Willneed,
    Cold,
    Pageout,
    Hugepage,
    Nohugepage,
    LruPrio,
    LruDeprio,
    MigrateHot,
    MigrateCold,
    Stat,
}

impl DamosAction {
    /// The name written to a scheme's `action` file.
    pub fn as_str(self) -> &'static str {
        match self {
            DamosAction::Willneed => "willneed",
            DamosAction::Cold => "cold",
            DamosAction::Pageout => "pageout",
            DamosAction::Hugepage => "hugepage",
            DamosAction::Nohugepage => "nohugepage",
            DamosAction::LruPrio => "lru_prio",
            DamosAction::LruDeprio => "lru_deprio",
            DamosAction::MigrateHot => "migrate_hot",
            DamosAction::MigrateCold => "migrate_cold",
            DamosAction::Stat => "stat",
        }
    }

    /// Whether the operations set can carry the action out (design.rst
    /// "Operation Action"); `stat` and `pageout` work everywhere.
    pub fn supported_by(self, ops: OpsKind) -> bool {
        match self {
            DamosAction::Stat | DamosAction::Pageout | DamosAction::MigrateHot | DamosAction::MigrateCold => {
                true
            }
            DamosAction::Willneed | DamosAction::Cold | DamosAction::Hugepage | DamosAction::Nohugepage => {
                ops != OpsKind::Paddr
            }
            DamosAction::LruPrio | DamosAction::LruDeprio => ops == OpsKind::Paddr,
        }
    }
}

/// A closed interval, as every DAMOS access-pattern bound is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinMax {
    pub min: u64,
    pub max: u64,
}

impl MinMax {
    pub const ALL: MinMax = MinMax { min: 0, max: ULONG_MAX };

    pub fn new(min: u64, max: u64) -> MinMax {
        MinMax { min, max }
    }

    pub fn contains(&self, v: u64) -> bool {
        (self.min..=self.max).contains(&v)
    }
}

/// `access_pattern/`: every bound written explicitly, because a new sysfs
/// scheme starts at 0..0 for all three (reference/damon.md §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatternSpec {
    pub sz_bytes: MinMax,
    /// Samples per aggregation interval.
    pub nr_accesses: MinMax,
    /// Aggregation intervals.
    pub age: MinMax,
}

impl PatternSpec {
    /// Matches every region.
    pub const ALL: PatternSpec =
        PatternSpec { sz_bytes: MinMax::ALL, nr_accesses: MinMax::ALL, age: MinMax::ALL };
}

/// `quotas/` (0 = unlimited for `ms` and `bytes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaSpec {
    pub ms: u64,
    pub bytes: u64,
    pub reset_interval_ms: u64,
    pub weight_sz_permil: u32,
    pub weight_nr_accesses_permil: u32,
    pub weight_age_permil: u32,
    pub goals: Vec<QuotaGoalSpec>,
}

impl Default for QuotaSpec {
    /// No quota; the kernel's default weights are all zero, but these only
    /// matter once a quota is set.
    fn default() -> Self {
        QuotaSpec {
            ms: 0,
            bytes: 0,
            reset_interval_ms: 0,
            weight_sz_permil: 0,
            weight_nr_accesses_permil: 0,
            weight_age_permil: 0,
            goals: Vec::new(),
        }
    }
}

/// One quota goal (`quotas/goals/N/`, Linux 6.8+; metrics 6.9+).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaGoalSpec {
    pub metric: GoalMetric,
    pub target_value: u64,
    /// Only meaningful for `user_input`.
    pub current_value: u64,
}

/// Quota goal metrics this driver writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GoalMetric {
    UserInput,
    /// System-wide "some" memory PSI, µs of stall per quota reset interval.
    SomeMemPsiUs,
}

impl GoalMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            GoalMetric::UserInput => "user_input",
            GoalMetric::SomeMemPsiUs => "some_mem_psi_us",
        }
    }
}

/// `watermarks/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarksSpec {
    pub metric: WatermarkMetric,
    pub interval_us: u64,
    pub high_permil: u32,
    pub mid_permil: u32,
    pub low_permil: u32,
}

impl WatermarksSpec {
    /// Always active (`metric none`).
    pub const NONE: WatermarksSpec = WatermarksSpec {
        metric: WatermarkMetric::None,
        interval_us: 0,
        high_permil: 0,
        mid_permil: 0,
        low_permil: 0,
    };
}

impl Default for WatermarksSpec {
    fn default() -> Self {
        WatermarksSpec::NONE
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatermarkMetric {
    None,
    FreeMemRate,
}

impl WatermarkMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            WatermarkMetric::None => "none",
            WatermarkMetric::FreeMemRate => "free_mem_rate",
        }
    }
}

/// One DAMOS filter. `allow: false` is a reject filter, the only kind
/// kernels before 6.14 know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterSpec {
    pub kind: FilterKind,
    /// The filter applies to memory that matches (`Y`) or that does not (`N`).
    pub matching: bool,
    pub allow: bool,
}

impl FilterSpec {
    /// Skip memory that matches `kind`.
    pub fn reject(kind: FilterKind) -> FilterSpec {
        FilterSpec { kind, matching: true, allow: false }
    }

    /// Skip memory that does not match `kind` (works on every kernel with filters).
    pub fn reject_others(kind: FilterKind) -> FilterSpec {
        FilterSpec { kind, matching: false, allow: false }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterKind {
    /// Anonymous pages (paddr; vaddr from 6.16).
    Anon,
    /// Pages of a memory cgroup; the path is relative to the cgroup2 mount.
    Memcg { path: String },
    /// Pages accessed since the last check (6.10, paddr).
    Young,
    /// An address range (core filter, 6.6).
    Addr { range: AddrRange },
    /// The target at this position in `targets/` (core filter, 6.6).
    Target { index: u32 },
}

impl FilterKind {
    /// The `type` file's value.
    pub fn type_str(&self) -> &'static str {
        match self {
            FilterKind::Anon => "anon",
            FilterKind::Memcg { .. } => "memcg",
            FilterKind::Young => "young",
            FilterKind::Addr { .. } => "addr",
            FilterKind::Target { .. } => "target",
        }
    }

    /// Handled by DAMON's core (regions are split at its bounds and what it
    /// rejects is not counted as tried) rather than by the operations set.
    pub fn is_core(&self) -> bool {
        matches!(self, FilterKind::Addr { .. } | FilterKind::Target { .. })
    }
}

/// One DAMOS scheme.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemeSpec {
    pub action: DamosAction,
    pub pattern: PatternSpec,
    pub quota: QuotaSpec,
    pub watermarks: WatermarksSpec,
    pub filters: Vec<FilterSpec>,
    /// 0 = every aggregation interval (Linux 6.7+ for other values).
    pub apply_interval_us: u64,
    /// Destination node of migrate actions.
    pub target_nid: Option<u32>,
}

impl SchemeSpec {
    /// A scheme with no quota, no watermarks and no filters.
    pub fn new(action: DamosAction, pattern: PatternSpec) -> SchemeSpec {
        SchemeSpec {
            action,
            pattern,
            quota: QuotaSpec::default(),
            watermarks: WatermarksSpec::NONE,
            filters: Vec::new(),
            apply_interval_us: 0,
            target_nid: None,
        }
    }
}

/// One thing wrong with a spec, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {problem}")]
pub struct SpecProblem {
    pub place: String,
    pub problem: String,
}

impl KdamondSpec {
    /// Every rule DAMON would refuse at `on` or `commit`, so a bad spec is
    /// caught before anything is written.
    pub fn problems(&self) -> Vec<SpecProblem> {
        let mut out = Vec::new();
        let mut bad = |place: String, problem: String| out.push(SpecProblem { place, problem });
        let a = &self.attrs;
        if a.sample_us == 0 {
            bad("monitoring_attrs".into(), "sample interval is 0".into());
        }
        if a.sample_us > a.aggr_us {
            bad(
                "monitoring_attrs".into(),
                format!(
                    "sample interval {} us is above the aggregation interval {} us",
                    a.sample_us, a.aggr_us
                ),
            );
        }
        if a.min_nr_regions < MIN_NR_REGIONS_FLOOR {
            bad("monitoring_attrs".into(), format!("min_nr_regions {} is below 3", a.min_nr_regions));
        }
        if a.min_nr_regions > a.max_nr_regions {
            bad(
                "monitoring_attrs".into(),
                format!("min_nr_regions {} is above max_nr_regions {}", a.min_nr_regions, a.max_nr_regions),
            );
        }
        if let Some(g) = &a.intervals_goal
            && g.min_sample_us > g.max_sample_us
        {
            bad("intervals_goal".into(), "min_sample_us is above max_sample_us".into());
        }
        for (i, t) in self.targets.iter().enumerate() {
            let place = format!("target {i}");
            match (self.ops.has_pids(), t.pid) {
                (true, None) => bad(place.clone(), format!("{} targets need a pid", self.ops.as_str())),
                (false, Some(p)) => bad(place.clone(), format!("paddr targets have no pid (got {p})")),
                _ => {}
            }
            if self.ops != OpsKind::Vaddr && t.regions.is_empty() {
                bad(place.clone(), format!("{} targets need regions", self.ops.as_str()));
            }
            for w in t.regions.windows(2) {
                if w[1].start < w[0].end {
                    bad(place.clone(), format!("regions {} and {} overlap or are unsorted", w[0], w[1]));
                }
            }
            if let Some(r) = t.regions.iter().find(|r| r.is_empty()) {
                bad(place.clone(), format!("region {r} is empty"));
            }
        }
        for (i, s) in self.schemes.iter().enumerate() {
            let place = format!("scheme {i} ({})", s.action.as_str());
            let p = &s.pattern;
            for (name, r) in [("sz", p.sz_bytes), ("nr_accesses", p.nr_accesses), ("age", p.age)] {
                if r.min > r.max {
                    bad(place.clone(), format!("access_pattern {name} min {} is above max {}", r.min, r.max));
                }
            }
            if !s.action.supported_by(self.ops) {
                bad(
                    place.clone(),
                    format!("action {} does not work with {}", s.action.as_str(), self.ops.as_str()),
                );
            }
            let w = &s.watermarks;
            if w.metric != WatermarkMetric::None
                && !(w.high_permil >= w.mid_permil && w.mid_permil >= w.low_permil)
            {
                bad(place.clone(), "watermarks need high >= mid >= low".into());
            }
            for f in &s.filters {
                if let FilterKind::Target { index } = f.kind
                    && index as usize >= self.targets.len()
                {
                    bad(
                        place.clone(),
                        format!("target filter names target {index} of {}", self.targets.len()),
                    );
                }
                if let FilterKind::Addr { range } = f.kind
                    && range.is_empty()
                {
                    bad(place.clone(), format!("addr filter {range} is empty"));
                }
                if let FilterKind::Memcg { path } = &f.kind
                    && !path.starts_with('/')
                {
                    bad(
                        place.clone(),
                        format!("memcg path {path:?} must start with '/' (cgroup2 mount relative)"),
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> KdamondSpec {
        KdamondSpec {
            ops: OpsKind::Vaddr,
            attrs: MonitoringAttrs::default(),
            targets: vec![TargetSpec { pid: Some(42), regions: Vec::new() }],
            schemes: vec![SchemeSpec::new(DamosAction::Stat, PatternSpec::ALL)],
        }
    }

    #[test]
    fn a_plain_spec_is_valid() {
        assert_eq!(spec().problems(), Vec::new());
        assert_eq!(spec().attrs.max_nr_accesses(), 20);
    }

    #[test]
    fn every_problem_is_reported() {
        let mut s = spec();
        s.attrs.sample_us = 200_000;
        s.attrs.min_nr_regions = 2;
        s.targets.push(TargetSpec { pid: None, regions: Vec::new() });
        let mut bad = SchemeSpec::new(DamosAction::LruPrio, PatternSpec::ALL);
        bad.pattern.age = MinMax::new(5, 1);
        bad.filters.push(FilterSpec::reject(FilterKind::Target { index: 7 }));
        s.schemes.push(bad);
        let p = s.problems();
        let text: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(p.len(), 6, "{text:#?}");
        assert!(text.iter().any(|t| t.contains("above the aggregation interval")));
        assert!(text.iter().any(|t| t.contains("target 1: vaddr targets need a pid")));
        assert!(text.iter().any(|t| t.contains("lru_prio does not work with vaddr")));
        assert!(text.iter().any(|t| t.contains("names target 7 of 2")));
    }

    #[test]
    fn paddr_needs_regions_and_no_pid() {
        let s = KdamondSpec {
            ops: OpsKind::Paddr,
            targets: vec![TargetSpec { pid: Some(1), regions: Vec::new() }],
            ..spec()
        };
        assert_eq!(s.problems().len(), 2);
    }
}
