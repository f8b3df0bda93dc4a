//! From a project's config to kdamond specs: monitoring attributes, the
//! DAMOS schemes the policy and the config's schemes turn into (patterns in
//! raw units, quotas, PSI quota goals, watermarks), and the per-target
//! layout with its filters. Pure: no I/O, features are passed in.
//!
//! What we generate on purpose, beyond a 1:1 translation (issue 7: do
//! better than plain kernel DAMON given etmem's config):
//! - every reclaim scheme of a native config carries *hot guards*: reject
//!   `addr` filters over the ranges our snapshots saw accessed within a hold
//!   time (`super::guard`). DAMON's age only says how long a region's count
//!   stayed the same; a region that mixes a few hot pages with cold ones can
//!   sit at 0 accesses for seconds, get paged out and fault straight back.
//! - the policy's cold rule is ranked coldest first (quota weights on age
//!   and accesses); in the watermark-driven reclaim mode (a quota plus
//!   `watermarks` or `sysmem_threshold`, DAMON_RECLAIM's setting) it also
//!   backs off under memory pressure (a `some_mem_psi_us` quota goal) where
//!   the kernel has PSI goals. Not otherwise: a goal makes the kernel start
//!   the quota at one byte and double it per window, and the pressure is
//!   system wide (another workload's refaults stop our reclaim).
//! - per-target schemes (`target` filters) so quotas and figures are per
//!   process, as the userspace engines have them.
//!
//! etmem's own `damon` configs are translated as they are: same pattern,
//! same action, no quota (that is what etmem writes), on every task pid.

use conf::{AccessBound, AgeBound};
use damon_core::ops::kdamond::{
    DamosAction, Features, FilterKind, FilterSpec, GoalMetric, IntervalsGoalSpec, KdamondSpec, MinMax,
    MonitoringAttrs, OpsKind, PatternSpec, QuotaGoalSpec, QuotaSpec, SchemeSpec, TargetSpec, WatermarkMetric,
    WatermarksSpec,
};
use damon_core::{AddrRange, PAGE_SIZE};
use std::time::Duration;

/// Memory-pressure goal of watermark-driven reclaim: at most this many µs
/// of system "some" memory stall per second of quota window (1 %).
pub const PSI_GOAL_US_PER_S: u64 = 10_000;

/// Most `addr` guard filters per scheme; more hot ranges are merged across
/// their smallest gaps.
pub const MAX_GUARD_FILTERS: usize = 32;

/// Where a generated scheme comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The scheme of etmem's `[engine] name=damon` group (index among the engine's schemes).
    Etmem(usize),
    /// A `[[scheme]]` of the config.
    User(usize),
    /// The policy's cold rule (`cold_action`).
    PolicyCold,
    /// `promote_thp`: MADV_HUGEPAGE on hot ranges.
    PolicyThp,
    /// `demote_thp`: MADV_NOHUGEPAGE on cold ranges.
    PolicyDemote,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Etmem(i) => write!(f, "etmem scheme {i}"),
            Role::User(i) => write!(f, "scheme {i}"),
            Role::PolicyCold => f.write_str("policy cold rule"),
            Role::PolicyThp => f.write_str("policy promote_thp"),
            Role::PolicyDemote => f.write_str("policy demote_thp"),
        }
    }
}

/// One scheme to install per target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub spec: SchemeSpec,
    pub role: Role,
    /// Gets the target's hot guards as reject filters.
    pub guarded: bool,
}

/// DAMON monitoring attributes of the project's region scan.
pub fn monitoring_attrs(scan: &conf::RegionScan) -> MonitoringAttrs {
    let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    MonitoringAttrs {
        sample_us: us(scan.sample_interval),
        aggr_us: us(scan.aggr_interval),
        update_us: us(scan.update_interval),
        min_nr_regions: scan.min_nr_regions,
        max_nr_regions: scan.max_nr_regions,
        intervals_goal: scan.autotune.as_ref().map(|g| IntervalsGoalSpec {
            access_bp: g.access_bp,
            aggrs: g.aggrs,
            min_sample_us: us(g.min_sample_interval),
            max_sample_us: us(g.max_sample_interval),
        }),
    }
}

fn accesses(b: AccessBound, attrs: &MonitoringAttrs) -> u64 {
    match b {
        AccessBound::Max => u64::MAX,
        other => u64::from(policies::resolve_accesses(other, attrs.max_nr_accesses())),
    }
}

/// The fewest accesses `promote_thp` marks: `hot_min_accesses`, or one more
/// than `cold_max_accesses` with `thp_min_class = "warm"`.
fn promote_min_accesses(policy: &conf::Policy, attrs: &MonitoringAttrs) -> u64 {
    match policy.thp_min_class {
        conf::ThpMinClass::Hot => accesses(policy.hot_min_accesses, attrs),
        conf::ThpMinClass::Warm => accesses(policy.cold_max_accesses, attrs).saturating_add(1),
    }
}

/// A minimum age in aggregation intervals, rounded up so "at least this long" holds.
fn min_age(b: AgeBound, attrs: &MonitoringAttrs) -> u64 {
    match b {
        AgeBound::Time(d) => u64::try_from(d.as_micros()).unwrap_or(u64::MAX).div_ceil(attrs.aggr_us.max(1)),
        other => policies::resolve_age(other, attrs.aggr_us),
    }
}

/// A config access pattern in raw kernel units; every bound explicit.
pub fn pattern(p: &conf::AccessPattern, attrs: &MonitoringAttrs) -> PatternSpec {
    PatternSpec {
        sz_bytes: MinMax::new(p.min_size_bytes, p.max_size_bytes),
        nr_accesses: MinMax::new(accesses(p.min_accesses, attrs), accesses(p.max_accesses, attrs)),
        age: MinMax::new(min_age(p.min_age, attrs), policies::resolve_age(p.max_age, attrs.aggr_us)),
    }
}

/// A config quota as DAMOS quotas: per-second rates become amounts per
/// reset interval. With a limit, PSI support and `psi_goal`, a
/// `some_mem_psi_us` goal makes the kernel back off under pressure.
pub fn quota(q: Option<&conf::Quota>, features: &Features, psi_goal: bool) -> QuotaSpec {
    let Some(q) = q else { return QuotaSpec::default() };
    let reset_ms = u64::try_from(q.reset_interval.as_millis()).unwrap_or(u64::MAX).max(1);
    let per_window =
        |per_s: u64| u64::try_from(u128::from(per_s) * u128::from(reset_ms) / 1000).unwrap_or(u64::MAX);
    let mut goals = Vec::new();
    if psi_goal && q.is_limited() && features.goal_metrics && features.psi {
        goals.push(QuotaGoalSpec {
            metric: GoalMetric::SomeMemPsiUs,
            target_value: per_window(PSI_GOAL_US_PER_S).max(1),
            current_value: 0,
        });
    }
    QuotaSpec {
        // 0 means unlimited to the kernel: a tiny quota must stay a quota.
        ms: q.cpu_ms_per_s.map(|ms| per_window(u64::from(ms)).max(1)).unwrap_or(0),
        bytes: q.bytes_per_s.map(|b| per_window(b).max(PAGE_SIZE)).unwrap_or(0),
        reset_interval_ms: reset_ms,
        weight_sz_permil: q.weight_sz_permil,
        weight_nr_accesses_permil: q.weight_nr_accesses_permil,
        weight_age_permil: q.weight_age_permil,
        goals,
    }
}

/// Config watermarks (per mille of free memory) as DAMOS watermarks.
pub fn watermarks(w: Option<&conf::Watermarks>) -> WatermarksSpec {
    match w {
        None => WatermarksSpec::NONE,
        Some(w) => WatermarksSpec {
            metric: WatermarkMetric::FreeMemRate,
            interval_us: u64::try_from(w.interval.as_micros()).unwrap_or(u64::MAX),
            high_permil: w.high_permil,
            mid_permil: w.mid_permil,
            low_permil: w.low_permil,
        },
    }
}

/// etmem's `sysmem_threshold` (act while free memory is below it) as
/// watermarks: active from 0 up to the threshold.
fn sysmem_watermarks(threshold: conf::Percent) -> WatermarksSpec {
    let permil = threshold.bp / 10;
    WatermarksSpec {
        metric: WatermarkMetric::FreeMemRate,
        interval_us: u64::try_from(conf::DEFAULT_WMARK_INTERVAL.as_micros()).unwrap_or(u64::MAX),
        high_permil: permil,
        mid_permil: permil,
        low_permil: 0,
    }
}

fn is_reclaim(a: DamosAction) -> bool {
    matches!(a, DamosAction::Pageout | DamosAction::Cold | DamosAction::Nohugepage | DamosAction::LruDeprio)
}

fn action_of(a: conf::Action) -> DamosAction {
    match a {
        conf::Action::Willneed => DamosAction::Willneed,
        conf::Action::Cold => DamosAction::Cold,
        conf::Action::Pageout => DamosAction::Pageout,
        conf::Action::Hugepage => DamosAction::Hugepage,
        conf::Action::Nohugepage => DamosAction::Nohugepage,
        conf::Action::Stat => DamosAction::Stat,
    }
}

/// The schemes a kernel-damon engine installs for each target, and notes
/// about config that has no kernel equivalent.
pub fn generate(
    project: &conf::Project,
    engine: &conf::KernelDamonEngine,
    attrs: &MonitoringAttrs,
    features: &Features,
) -> (Vec<Generated>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let policy = &project.policy;
    let default_wmarks = match (&policy.watermarks, policy.sysmem_threshold) {
        (Some(w), _) => watermarks(Some(w)),
        (None, Some(t)) => sysmem_watermarks(t),
        (None, None) => WatermarksSpec::NONE,
    };
    let convert = |s: &conf::Scheme, role: Role, guarded: bool| {
        let action = action_of(s.action);
        let mut spec = SchemeSpec::new(action, pattern(&s.pattern, attrs));
        spec.quota = quota(s.quota.as_ref(), features, false);
        spec.watermarks = match &s.watermarks {
            Some(w) => watermarks(Some(w)),
            None if engine.from_etmem => WatermarksSpec::NONE,
            None => default_wmarks,
        };
        spec.apply_interval_us =
            s.apply_interval.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)).unwrap_or(0);
        Generated { guarded: guarded && is_reclaim(action), spec, role }
    };
    for (i, s) in project.schemes.iter().enumerate() {
        out.push(convert(s, Role::User(i), !engine.from_etmem));
    }
    for (i, s) in engine.schemes.iter().enumerate() {
        out.push(convert(s, Role::Etmem(i), !engine.from_etmem));
    }
    let cold_pattern = PatternSpec {
        sz_bytes: MinMax::new(PAGE_SIZE, u64::MAX),
        nr_accesses: MinMax::new(0, accesses(policy.cold_max_accesses, attrs)),
        age: MinMax::new(min_age(AgeBound::Time(policy.cold_min_age), attrs), u64::MAX),
    };
    if let Some(a) = policy.cold_action {
        let mut spec = SchemeSpec::new(action_of(a), cold_pattern);
        // Coldest first when the quota binds: the kernel's default weights are 0.
        let reclaim_mode = policy.watermarks.is_some() || policy.sysmem_threshold.is_some();
        spec.quota = quota(Some(&policy.quota), features, reclaim_mode);
        spec.watermarks = default_wmarks;
        out.push(Generated { guarded: is_reclaim(spec.action), spec, role: Role::PolicyCold });
    }
    if policy.promote_thp {
        let p = PatternSpec {
            sz_bytes: MinMax::new(policy.thp_min_size_bytes, u64::MAX),
            nr_accesses: MinMax::new(promote_min_accesses(policy, attrs), u64::MAX),
            age: MinMax::new(min_age(AgeBound::Time(policy.thp_min_age), attrs), u64::MAX),
        };
        out.push(Generated {
            spec: SchemeSpec::new(DamosAction::Hugepage, p),
            role: Role::PolicyThp,
            guarded: false,
        });
        notes.push(
            "promote_thp: the kernel marks hot ranges MADV_HUGEPAGE and khugepaged collapses them in its own time"
                .into(),
        );
        if policy.thp_min_class == conf::ThpMinClass::Warm {
            notes.push(
                "thp_min_class = \"warm\": the kernel marks ranges accessed more than cold_max_accesses; \
                 idle ranges younger than cold_min_age are not marked (a DAMOS pattern is one range per \
                 bound, and khugepaged would keep what it collapsed)"
                    .into(),
            );
        }
    }
    if policy.demote_thp {
        let mut spec = SchemeSpec::new(DamosAction::Nohugepage, cold_pattern);
        spec.watermarks = default_wmarks;
        out.push(Generated { spec, role: Role::PolicyDemote, guarded: false });
    }
    for (set, what) in [
        (policy.prefetch_warm, "prefetch_warm"),
        (policy.keep_in_ram.is_some(), "keep_in_ram"),
        (policy.swap_threshold_bytes.is_some(), "swap_threshold"),
    ] {
        if set {
            notes.push(format!(
                "policy {what} has no kernel DAMON equivalent: the kernel-damon engine ignores it"
            ));
        }
    }
    if engine.ops == conf::DamonOps::Paddr {
        out.retain(|g| {
            let ok = g.spec.action.supported_by(OpsKind::Paddr);
            if !ok {
                notes.push(format!(
                    "{}: action {} does not work on physical memory; left out",
                    g.role,
                    g.spec.action.as_str()
                ));
            }
            ok
        });
    }
    (out, notes)
}

/// Who a target is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKey {
    Pid(u32),
    /// paddr: all physical memory (the System RAM ranges).
    Physical,
}

/// Where each target's schemes sit in `schemes/`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// The stat scheme whose tried regions are target i's snapshot
    /// (`None`: no per-target view, several targets without target filters).
    pub stat: Vec<Option<usize>>,
    /// Target i's action schemes, parallel to the generated list.
    pub actions: Vec<Vec<usize>>,
}

/// A memcg filter group for paddr: the schemes of one cgroup task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcgGroup {
    /// Path relative to the cgroup2 mount, starting with '/'.
    pub path: String,
}

/// The whole kdamond spec for the current targets.
///
/// vaddr: targets in the given order; per target a block of schemes: its
/// stat scheme, then its generated schemes, each with a `target` filter
/// when there are several targets and, where `guarded`, reject `addr`
/// filters over the target's hot guards.
/// paddr: one target over `ram`; one stat scheme; the generated schemes once
/// per memcg group with a filter rejecting every other memcg.
#[allow(clippy::too_many_arguments)]
pub fn build(
    ops: OpsKind,
    attrs: &MonitoringAttrs,
    targets: &[TargetKey],
    ram: &[AddrRange],
    generated: &[Generated],
    guards: &[Vec<AddrRange>],
    memcgs: &[MemcgGroup],
    features: &Features,
) -> (KdamondSpec, Layout) {
    let mut spec = KdamondSpec { ops, attrs: attrs.clone(), targets: Vec::new(), schemes: Vec::new() };
    let mut layout = Layout::default();
    if ops == OpsKind::Paddr {
        spec.targets.push(TargetSpec { pid: None, regions: ram.to_vec() });
        spec.schemes.push(SchemeSpec::new(DamosAction::Stat, PatternSpec::ALL));
        layout.stat.push(Some(0));
        let mut actions = Vec::new();
        for m in memcgs {
            for g in generated {
                let mut s = g.spec.clone();
                s.filters.push(FilterSpec::reject_others(FilterKind::Memcg { path: m.path.clone() }));
                actions.push(spec.schemes.len());
                spec.schemes.push(s);
            }
        }
        layout.actions.push(actions);
        return (spec, layout);
    }
    let n = targets.len();
    for t in targets {
        let pid = match t {
            TargetKey::Pid(p) => Some(*p),
            TargetKey::Physical => None,
        };
        spec.targets.push(TargetSpec { pid, regions: Vec::new() });
    }
    let per_target = n <= 1 || features.target_filter;
    let target_filter = |i: usize| FilterSpec::reject_others(FilterKind::Target { index: i as u32 });
    if per_target {
        // One block per target, [stat, actions...], so appending a target
        // (an online commit) leaves every existing scheme where it was.
        for i in 0..n {
            let mut s = SchemeSpec::new(DamosAction::Stat, PatternSpec::ALL);
            if n > 1 {
                s.filters.push(target_filter(i));
            }
            layout.stat.push(Some(spec.schemes.len()));
            spec.schemes.push(s);
            let mut idx = Vec::new();
            for g in generated {
                let mut s = g.spec.clone();
                if n > 1 {
                    s.filters.push(target_filter(i));
                }
                if g.guarded
                    && let Some(gs) = guards.get(i)
                {
                    s.filters.extend(gs.iter().map(|r| FilterSpec::reject(FilterKind::Addr { range: *r })));
                }
                idx.push(spec.schemes.len());
                spec.schemes.push(s);
            }
            layout.actions.push(idx);
        }
    } else {
        // Several targets and no target filter (kernels before 6.6): one
        // shared set of schemes; address ranges mean nothing across targets,
        // so no guards and no per-target snapshots.
        spec.schemes.push(SchemeSpec::new(DamosAction::Stat, PatternSpec::ALL));
        let idx: Vec<usize> = (0..generated.len()).map(|k| k + 1).collect();
        spec.schemes.extend(generated.iter().map(|g| g.spec.clone()));
        for _ in 0..n {
            layout.stat.push(None);
            layout.actions.push(idx.clone());
        }
    }
    (spec, layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn features() -> Features {
        Features {
            operations: vec!["vaddr".into(), "paddr".into()],
            target_filter: true,
            goal_metrics: true,
            psi: true,
            filters: true,
            ..Features::default()
        }
    }

    fn project(policy: conf::Policy) -> conf::Project {
        conf::Project {
            name: "p".into(),
            scan: conf::Scan::Region(conf::RegionScan::default()),
            policy,
            schemes: Vec::new(),
            backends: Vec::new(),
        }
    }

    #[test]
    fn etmem_schemes_are_translated_as_they_are() {
        let attrs = monitoring_attrs(&conf::RegionScan::default());
        let scheme = conf::Scheme {
            pattern: conf::AccessPattern {
                min_size_bytes: 0,
                max_size_bytes: 4_294_967_295,
                min_accesses: AccessBound::Count(0),
                max_accesses: AccessBound::Count(0),
                min_age: AgeBound::Aggregations(50),
                max_age: AgeBound::Aggregations(4_294_967_295),
            },
            action: conf::Action::Pageout,
            quota: None,
            watermarks: None,
            apply_interval: None,
        };
        let engine =
            conf::KernelDamonEngine { ops: conf::DamonOps::Vaddr, from_etmem: true, schemes: vec![scheme] };
        let (g, notes) = generate(&project(conf::Policy::etmem_passive()), &engine, &attrs, &features());
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(g.len(), 1);
        let s = &g[0];
        assert!(!s.guarded);
        assert_eq!(s.spec.action, DamosAction::Pageout);
        assert_eq!(s.spec.pattern.nr_accesses, MinMax::new(0, 0));
        assert_eq!(s.spec.pattern.age, MinMax::new(50, 4_294_967_295));
        assert_eq!(s.spec.quota, QuotaSpec::default());
        assert_eq!(s.spec.watermarks, WatermarksSpec::NONE);
    }

    #[test]
    fn warm_promotion_marks_ranges_accessed_above_the_cold_watermark() {
        let attrs = monitoring_attrs(&conf::RegionScan::default());
        let engine =
            conf::KernelDamonEngine { ops: conf::DamonOps::Vaddr, from_etmem: false, schemes: vec![] };
        let mut policy = conf::Policy {
            hot_min_accesses: AccessBound::Count(5),
            cold_max_accesses: AccessBound::Count(1),
            cold_action: None,
            promote_thp: true,
            ..conf::Policy::default()
        };
        let thp = |policy: &conf::Policy| {
            let (g, notes) = generate(&project(policy.clone()), &engine, &attrs, &features());
            let g = g.into_iter().find(|g| g.role == Role::PolicyThp).expect("a promote scheme");
            (g.spec.pattern.nr_accesses, notes.len())
        };
        let (hot, hot_notes) = thp(&policy);
        assert_eq!(hot, MinMax::new(5, u64::MAX));
        policy.thp_min_class = conf::ThpMinClass::Warm;
        let (warm, warm_notes) = thp(&policy);
        assert_eq!(warm, MinMax::new(2, u64::MAX));
        assert_eq!(warm_notes, hot_notes + 1, "the narrower kernel rule is said");
    }

    #[test]
    fn the_cold_rule_becomes_a_guarded_ranked_scheme() {
        let attrs = monitoring_attrs(&conf::RegionScan::default());
        let mut policy =
            conf::Policy { cold_min_age: Duration::from_millis(5050), ..conf::Policy::default() };
        policy.quota.bytes_per_s = Some(8 << 20);
        policy.quota.reset_interval = Duration::from_millis(500);
        let engine = conf::KernelDamonEngine::default();
        let (g, _) = generate(&project(policy.clone()), &engine, &attrs, &features());
        assert!(g[0].spec.quota.goals.is_empty(), "no pressure goal outside the watermark mode");
        policy.watermarks = Some(conf::Watermarks::default());
        let (g, _) = generate(&project(policy), &engine, &attrs, &features());
        assert_eq!(g.len(), 1);
        let s = &g[0];
        assert!(s.guarded);
        assert_eq!(s.role, Role::PolicyCold);
        // 5.05 s at 100 ms aggregations: at least 51 of them.
        assert_eq!(s.spec.pattern.age.min, 51);
        assert_eq!(s.spec.pattern.nr_accesses, MinMax::new(0, 0));
        assert_eq!(s.spec.quota.bytes, 4 << 20);
        assert_eq!(s.spec.quota.reset_interval_ms, 500);
        assert_eq!(s.spec.quota.weight_age_permil, conf::DEFAULT_QUOTA_WEIGHT_AGE_PERMIL);
        assert_eq!(s.spec.quota.goals.len(), 1);
        assert_eq!(s.spec.quota.goals[0].target_value, 5_000);
        // No PSI goal without a limit, nor where the kernel lacks goal metrics.
        let engine = conf::KernelDamonEngine::default();
        let (g, _) = generate(
            &project(conf::Policy::default()),
            &engine,
            &attrs,
            &Features { goal_metrics: false, ..features() },
        );
        assert!(g[0].spec.quota.goals.is_empty());
    }

    #[test]
    fn layout_gives_each_target_its_stat_and_action_schemes() {
        let attrs = MonitoringAttrs::default();
        let g = Generated {
            spec: SchemeSpec::new(DamosAction::Pageout, PatternSpec::ALL),
            role: Role::PolicyCold,
            guarded: true,
        };
        let guards = vec![vec![AddrRange::new(0x1000, 0x2000)], vec![]];
        let targets = [TargetKey::Pid(10), TargetKey::Pid(11)];
        let (spec, layout) =
            build(OpsKind::Vaddr, &attrs, &targets, &[], std::slice::from_ref(&g), &guards, &[], &features());
        assert_eq!(spec.problems(), Vec::new());
        assert_eq!(layout.stat, vec![Some(0), Some(2)]);
        assert_eq!(layout.actions, vec![vec![1], vec![3]]);
        assert_eq!(spec.schemes[1].filters.len(), 2);
        assert_eq!(spec.schemes[3].filters, vec![FilterSpec::reject_others(FilterKind::Target { index: 1 })]);
        // One target: no target filters at all.
        let (spec, _) = build(
            OpsKind::Vaddr,
            &attrs,
            &targets[..1],
            &[],
            std::slice::from_ref(&g),
            &guards,
            &[],
            &features(),
        );
        assert_eq!(spec.schemes[0].filters, Vec::new());
        assert_eq!(spec.schemes[1].filters.len(), 1);
        // No target filter in the kernel: shared schemes, no snapshots.
        let old = Features { target_filter: false, ..features() };
        let (spec, layout) =
            build(OpsKind::Vaddr, &attrs, &targets, &[], std::slice::from_ref(&g), &guards, &[], &old);
        assert_eq!(spec.schemes.len(), 2);
        assert_eq!(layout.stat, vec![None, None]);
        // paddr: memcg filters per group.
        let ram = [AddrRange::new(0x100000, 0x4000_0000)];
        let m = [MemcgGroup { path: "/a".into() }];
        let (spec, layout) = build(OpsKind::Paddr, &attrs, &[], &ram, &[g], &[], &m, &features());
        assert_eq!(spec.problems(), Vec::new());
        assert_eq!(layout.actions, vec![vec![1]]);
        assert_eq!(
            spec.schemes[1].filters,
            vec![FilterSpec::reject_others(FilterKind::Memcg { path: "/a".into() })]
        );
    }
}
