//! The planner the engine thread calls once per snapshot: classification,
//! built-in rules, DAMOS schemes, gates and quotas, turned into ranked decisions.

use std::fmt;

use conf::{Action, PageTask, Percent, Policy, Quota, Scheme, Watermarks};
use damon_core::{AddrRange, PAGE_SIZE, RegionSnapshot, Snapshot};
use serde::{Deserialize, Serialize};

use crate::classify::{Class, ClassTotals, Classification, Thresholds, aligned_runs, classify, duration_us};
use crate::gates::{
    Blocked, HostMemory, TaskMemory, WatermarkState, swappable_bytes, sysmem_gate, task_swap_gate,
};
use crate::quota::{Candidate, QuotaState, select};
use crate::ranges::{HPAGE_SIZE, huge_outward, intersect, normalize, subtract};
use crate::scheme::{ResolvedPattern, is_reclaim};
use crate::score::{Weights, cold_score, hot_score};

/// A rule of a planner: one of the policy's built-in rules or a scheme.
/// Rules run in this order; a later rule never acts on a range an earlier
/// one took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RuleId {
    /// `prefetch_warm`: `Willneed` for paged-out ranges whose region reached
    /// the hot access watermark again (no age needed: refaults are costly now).
    Prefetch,
    /// Cold regions get `cold_action`; with `demote_thp`, their parts that
    /// are backed by huge pages get `Nohugepage` instead.
    Cold,
    /// `promote_thp`: `Hugepage` (collapse) for THP-eligible units.
    Promote,
    /// The project's schemes, by position.
    Scheme(usize),
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleId::Prefetch => f.write_str("prefetch"),
            RuleId::Cold => f.write_str("cold"),
            RuleId::Promote => f.write_str("promote"),
            RuleId::Scheme(i) => write!(f, "scheme[{i}]"),
        }
    }
}

/// What the engine knows when it asks for a plan.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// Monotonic time, µs; drives quota windows, watermark checks and apply intervals.
    pub now_us: u64,
    pub snapshot: &'a Snapshot,
    pub task: TaskMemory,
    pub host: HostMemory,
    /// Ranges this project paged out and has not yet prefetched back. They are
    /// not paged out again, never collapsed, and are what `prefetch_warm` brings back.
    pub paged_out: &'a [AddrRange],
    /// Ranges known to be backed by huge pages (collapsed by us, or seen in
    /// smaps): not collapsed again; cold ones are demoted under `demote_thp`.
    pub huge: &'a [AddrRange],
    /// Ranges that must not be collapsed (`VM_NOHUGEPAGE` mappings, swapped
    /// pages found in pagemap). Any huge page touching them is skipped.
    pub no_collapse: &'a [AddrRange],
}

/// One action on one range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub range: AddrRange,
    /// The class of the memory (`ThpEligible` for the promotion rule).
    pub class: Class,
    pub action: Action,
    /// The rule that decided, which is also what outcomes are recorded against.
    pub rule: RuleId,
    /// Priority score, 0..=99: the cold score for actions that give memory
    /// back, the hot score for the others.
    pub score: u8,
}

/// What one rule saw and did in one plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleReport {
    pub rule: RuleId,
    /// The rule's action (`Nohugepage` for a cold rule that only demotes).
    pub action: Action,
    /// Bytes the rule could act on (after ranges taken by earlier rules and
    /// ranges it must not touch); for `Stat`, the bytes that matched.
    pub matched_bytes: u64,
    /// Bytes of this plan's decisions for the rule.
    pub planned_bytes: u64,
    /// Why the rule did nothing, when a gate was closed.
    pub blocked: Option<Blocked>,
    /// Effective size quota of the current window (`u64::MAX`: unlimited).
    pub esz_bytes: u64,
    /// Bytes charged in the current window, this plan included.
    pub charged_bytes: u64,
    /// Lowest priority score the quota could afford this time.
    pub min_score: u8,
}

/// The decisions for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub time_us: u64,
    /// Disjoint, inside the snapshot's regions; ranked by rule order, then
    /// score (best first), then address.
    pub decisions: Vec<Decision>,
    /// Bytes per class in the snapshot, for `project show`.
    pub totals: ClassTotals,
    /// One report per rule, in rule order.
    pub rules: Vec<RuleReport>,
}

impl Plan {
    /// Bytes of all decisions.
    pub fn planned_bytes(&self) -> u64 {
        self.decisions.iter().map(|d| d.range.len()).sum()
    }

    /// Rules that did nothing because a gate was closed, with the reason.
    pub fn blocked(&self) -> impl Iterator<Item = (RuleId, Blocked)> + '_ {
        self.rules.iter().filter_map(|r| r.blocked.map(|b| (r.rule, b)))
    }
}

/// What applying a plan's decisions of one rule really did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Bytes the action was tried on (what the quota is charged with).
    pub tried_bytes: u64,
    /// Bytes the kernel reports as done.
    pub applied_bytes: u64,
    /// CPU time spent acting, in ns (teaches the CPU quota its throughput).
    pub cpu_ns: u64,
}

/// Cumulative accounting of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleStats {
    pub rule: RuleId,
    pub tried_bytes: u64,
    pub applied_bytes: u64,
    pub cpu_ns: u64,
    /// Windows that ended with the quota used up (DAMOS `qt_exceeds`).
    pub qt_exceeds: u64,
    /// Measured bytes per ms of CPU (DAMOS's initial guess until measured).
    pub throughput_bytes_per_ms: u64,
    pub esz_bytes: u64,
    pub charged_bytes: u64,
}

/// Recording an outcome can fail with this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("this planner has no rule {rule}")]
    UnknownRule { rule: RuleId },
}

#[derive(Debug, Clone)]
struct RuleState {
    id: RuleId,
    quota: QuotaState,
    watermarks: WatermarkState,
    next_apply_us: Option<u64>,
}

/// Plans actions for one task. Its only state is per rule: the quota window
/// and charge, the resume cursor, the watermark activation and the next
/// apply time.
///
/// Gates: the policy's memory gates (`watermarks`, `sysmem_threshold`,
/// `swap_threshold_bytes`, `keep_in_ram`) close only the cold rule, the one
/// that gives memory back; promotion and prefetch are not held back by
/// memory pressure. Each scheme is gated by its own watermarks and
/// `apply_interval`, as in DAMOS. Every built-in rule has its own window of
/// the policy's quota; each scheme has its own quota (none: unlimited).
#[derive(Debug, Clone)]
pub struct Planner {
    policy: Policy,
    schemes: Vec<Scheme>,
    rules: Vec<RuleState>,
}

/// A rule's configuration, borrowed from the policy or a scheme.
struct Spec<'a> {
    action: Action,
    quota: Option<&'a Quota>,
    watermarks: Option<&'a Watermarks>,
    apply_interval_us: Option<u64>,
    /// etmem's sysmem / swap / dram_percent gates apply.
    reclaim_gates: bool,
}

impl Planner {
    /// A planner for `policy` and `schemes` (rules: prefetch if
    /// `prefetch_warm`, cold if there is a `cold_action` or `demote_thp`,
    /// promote if `promote_thp`, then every scheme).
    pub fn new(policy: Policy, schemes: Vec<Scheme>) -> Planner {
        let mut ids = Vec::new();
        if policy.prefetch_warm {
            ids.push(RuleId::Prefetch);
        }
        if policy.cold_action.is_some() || policy.demote_thp {
            ids.push(RuleId::Cold);
        }
        if policy.promote_thp {
            ids.push(RuleId::Promote);
        }
        ids.extend((0..schemes.len()).map(RuleId::Scheme));
        let rules = ids
            .into_iter()
            .map(|id| RuleState {
                id,
                quota: QuotaState::default(),
                watermarks: WatermarkState::default(),
                next_apply_us: None,
            })
            .collect();
        Planner { policy, schemes, rules }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The rules, in the order they run.
    pub fn rules(&self) -> impl Iterator<Item = RuleId> + '_ {
        self.rules.iter().map(|r| r.id)
    }

    /// Classifies `input.snapshot` and decides what to do with it. Quota use
    /// is charged with the planned bytes until [`Planner::record`] says what
    /// was really tried.
    pub fn plan(&mut self, input: &PlanInput<'_>) -> Plan {
        let snap = input.snapshot;
        let cls = classify(&self.policy, snap);
        let paged_out = normalize(input.paged_out.to_vec());
        let huge = normalize(input.huge.to_vec());
        let mut keep_flat = input.no_collapse.to_vec();
        keep_flat.extend_from_slice(&paged_out);
        keep_flat.extend_from_slice(&huge);
        let ctx = Ctx {
            snap,
            cls: &cls,
            thr: Thresholds::resolve(&self.policy, snap),
            policy: &self.policy,
            paged_out,
            huge,
            no_collapse: normalize(keep_flat),
        };

        let mut claimed: Vec<AddrRange> = Vec::new();
        let mut decisions = Vec::new();
        let mut reports = Vec::with_capacity(self.rules.len());
        for state in &mut self.rules {
            let spec = spec(&self.policy, &self.schemes, state.id);
            let cands = ctx.candidates(state.id, &self.schemes, &claimed);
            let matched_bytes: u64 = cands.iter().map(|c| c.range.len()).sum();
            let mut report = RuleReport {
                rule: state.id,
                action: spec.action,
                matched_bytes,
                planned_bytes: 0,
                blocked: None,
                esz_bytes: u64::MAX,
                charged_bytes: 0,
                min_score: 0,
            };

            let mut blocked = None;
            if let Some(wm) = spec.watermarks {
                blocked = state.watermarks.update(wm, input.now_us, &input.host).err();
            }
            if spec.reclaim_gates && blocked.is_none() {
                blocked = sysmem_gate(self.policy.sysmem_threshold, &input.host)
                    .and_then(|()| {
                        task_swap_gate(
                            self.policy.swap_threshold_bytes,
                            self.policy.sysmem_threshold,
                            &input.task,
                        )
                    })
                    .err();
            }
            match (state.next_apply_us, blocked) {
                (Some(next), None) if input.now_us < next => {
                    blocked = Some(Blocked::NotDue { next_apply_us: next });
                }
                _ => {}
            }
            state.quota.roll(spec.quota, input.now_us);
            report.esz_bytes = state.quota.esz;
            report.charged_bytes = state.quota.charged;
            if let (None, Some(iv)) = (blocked, spec.apply_interval_us) {
                state.next_apply_us = Some(input.now_us.saturating_add(iv));
            }
            if spec.action == Action::Stat || blocked.is_some() {
                report.blocked = blocked;
                reports.push(report);
                continue;
            }

            let cap = if spec.reclaim_gates {
                swappable_bytes(self.policy.keep_in_ram, &input.task)
            } else {
                u64::MAX
            };
            let remaining = state.quota.remaining();
            if remaining == 0 {
                report.blocked = Some(Blocked::QuotaExhausted {
                    esz_bytes: state.quota.esz,
                    charged_bytes: state.quota.charged,
                });
                reports.push(report);
                continue;
            }
            if cap == 0 {
                let keep = self.policy.keep_in_ram.unwrap_or(Percent { bp: 10_000 });
                report.blocked = Some(Blocked::KeepInRam {
                    rss_bytes: input.task.rss_bytes,
                    swap_bytes: input.task.swap_bytes,
                    keep,
                });
                reports.push(report);
                continue;
            }

            let granularity = if spec.action == Action::Hugepage { HPAGE_SIZE } else { PAGE_SIZE };
            let had_cands = !cands.is_empty();
            let sel = select(cands, remaining.min(cap), granularity, state.quota.cursor);
            if had_cands {
                state.quota.cursor = sel.cursor;
            }
            let planned: u64 = sel.chosen.iter().map(|c| c.range.len()).sum();
            if state.quota.esz != u64::MAX {
                state.quota.reserve(planned);
            }
            report.planned_bytes = planned;
            report.charged_bytes = state.quota.charged;
            report.min_score = sel.min_score;
            reports.push(report);

            let mut chosen = sel.chosen;
            chosen.sort_by(|a, b| b.score.cmp(&a.score).then(a.range.start.cmp(&b.range.start)));
            claimed.extend(chosen.iter().map(|c| c.range));
            claimed = normalize(claimed);
            decisions.extend(chosen.into_iter().map(|c| Decision {
                range: c.range,
                class: c.class,
                action: c.action,
                rule: state.id,
                score: c.score,
            }));
        }
        Plan { time_us: input.now_us, decisions, totals: cls.totals, rules: reports }
    }

    /// Charges `rule`'s quota with what applying its decisions of the last
    /// plan really did: the first outcome after a plan replaces that plan's
    /// reservation, further ones add to it.
    pub fn record(&mut self, rule: RuleId, outcome: &Outcome) -> Result<(), RecordError> {
        let state = self.rules.iter_mut().find(|r| r.id == rule).ok_or(RecordError::UnknownRule { rule })?;
        state.quota.record(outcome.tried_bytes, outcome.applied_bytes, outcome.cpu_ns);
        Ok(())
    }

    /// Cumulative accounting per rule, for `project show` and metrics.
    pub fn stats(&self) -> Vec<RuleStats> {
        self.rules
            .iter()
            .map(|r| RuleStats {
                rule: r.id,
                tried_bytes: r.quota.tried_bytes,
                applied_bytes: r.quota.applied_bytes,
                cpu_ns: r.quota.cpu_ns,
                qt_exceeds: r.quota.qt_exceeds,
                throughput_bytes_per_ms: r.quota.throughput_bytes_per_ms(),
                esz_bytes: r.quota.esz,
                charged_bytes: r.quota.charged,
            })
            .collect()
    }
}

fn spec<'a>(policy: &'a Policy, schemes: &'a [Scheme], id: RuleId) -> Spec<'a> {
    let builtin = |action, reclaim_gates| Spec {
        action,
        quota: Some(&policy.quota),
        watermarks: if reclaim_gates { policy.watermarks.as_ref() } else { None },
        apply_interval_us: None,
        reclaim_gates,
    };
    match id {
        RuleId::Prefetch => builtin(Action::Willneed, false),
        RuleId::Cold => builtin(policy.cold_action.unwrap_or(Action::Nohugepage), true),
        RuleId::Promote => builtin(Action::Hugepage, false),
        RuleId::Scheme(i) => {
            let s = &schemes[i];
            Spec {
                action: s.action,
                quota: s.quota.as_ref(),
                watermarks: s.watermarks.as_ref(),
                apply_interval_us: s.apply_interval.map(duration_us),
                reclaim_gates: false,
            }
        }
    }
}

/// One plan's view of the snapshot and of the caller's range sets.
struct Ctx<'a> {
    snap: &'a Snapshot,
    cls: &'a Classification,
    thr: Thresholds,
    policy: &'a Policy,
    paged_out: Vec<AddrRange>,
    huge: Vec<AddrRange>,
    /// paged_out ∪ huge ∪ no_collapse.
    no_collapse: Vec<AddrRange>,
}

impl Ctx<'_> {
    fn score(&self, region: &RegionSnapshot, action: Action, weights: Weights) -> u8 {
        if is_reclaim(action) {
            cold_score(region, self.snap, weights)
        } else {
            hot_score(region, self.snap, weights)
        }
    }

    fn candidates(&self, id: RuleId, schemes: &[Scheme], claimed: &[AddrRange]) -> Vec<Candidate> {
        let weights = Weights::of(&self.policy.quota);
        match id {
            RuleId::Prefetch => self.prefetch(weights),
            RuleId::Cold => self.cold(weights, claimed),
            RuleId::Promote => {
                let excluded = self.collapse_excluded(claimed);
                let pieces: Vec<AddrRange> =
                    self.cls.thp_eligible.iter().flat_map(|&p| subtract(p, &excluded)).collect();
                self.huge_units(&pieces, weights, Some(Class::ThpEligible))
            }
            RuleId::Scheme(i) => self.scheme(&schemes[i], claimed),
        }
    }

    fn prefetch(&self, weights: Weights) -> Vec<Candidate> {
        let mut out = Vec::new();
        for r in &self.snap.regions {
            if r.nr_accesses < self.thr.hot_min_accesses {
                continue;
            }
            let score = hot_score(r, self.snap, weights);
            out.extend(intersect(r.range, &self.paged_out).into_iter().map(|range| Candidate {
                range,
                score,
                class: Class::Hot,
                action: Action::Willneed,
            }));
        }
        out
    }

    fn cold(&self, weights: Weights, claimed: &[AddrRange]) -> Vec<Candidate> {
        let mut flat = self.paged_out.clone();
        flat.extend_from_slice(claimed);
        let excluded = normalize(flat);
        let mut out = Vec::new();
        for (r, class) in self.snap.regions.iter().zip(&self.cls.classes) {
            if *class != Class::Cold {
                continue;
            }
            let score = cold_score(r, self.snap, weights);
            let cand = |range, action| Candidate { range, score, class: Class::Cold, action };
            for piece in subtract(r.range, &excluded) {
                if self.policy.demote_thp {
                    out.extend(intersect(piece, &self.huge).into_iter().map(|p| cand(p, Action::Nohugepage)));
                    if let Some(action) = self.policy.cold_action {
                        out.extend(subtract(piece, &self.huge).into_iter().map(|p| cand(p, action)));
                    }
                } else if let Some(action) = self.policy.cold_action {
                    out.push(cand(piece, action));
                }
            }
        }
        out
    }

    fn scheme(&self, scheme: &Scheme, claimed: &[AddrRange]) -> Vec<Candidate> {
        let pattern = ResolvedPattern::resolve(&scheme.pattern, self.snap);
        let weights = scheme.quota.as_ref().map_or(Weights::EQUAL, Weights::of);
        let action = scheme.action;
        if action == Action::Hugepage {
            let runs = aligned_runs(&self.snap.regions, HPAGE_SIZE, |_, r| pattern.matches(r));
            let excluded = self.collapse_excluded(claimed);
            let pieces: Vec<AddrRange> = runs.into_iter().flat_map(|p| subtract(p, &excluded)).collect();
            return self.huge_units(&pieces, weights, None);
        }
        let excluded = match action {
            // Stat only counts what matches; Willneed is for paged-out memory.
            Action::Stat => Vec::new(),
            Action::Willneed => claimed.to_vec(),
            _ => {
                let mut flat = self.paged_out.clone();
                flat.extend_from_slice(claimed);
                normalize(flat)
            }
        };
        let mut out = Vec::new();
        for (r, class) in self.snap.regions.iter().zip(&self.cls.classes) {
            if !pattern.matches(r) {
                continue;
            }
            let score = self.score(r, action, weights);
            out.extend(subtract(r.range, &excluded).into_iter().map(|range| Candidate {
                range,
                score,
                class: *class,
                action,
            }));
        }
        out
    }

    /// Huge pages that must not be collapsed: anything touching a range the
    /// caller forbids, a paged-out or already huge range, or an earlier decision.
    fn collapse_excluded(&self, claimed: &[AddrRange]) -> Vec<AddrRange> {
        let mut flat = self.no_collapse.clone();
        flat.extend_from_slice(claimed);
        huge_outward(&flat)
    }

    /// Aligned `pieces` cut per region: each 2 MiB unit belongs to the region
    /// holding its first byte and takes that region's hot score (and class,
    /// unless `class` is given).
    fn huge_units(&self, pieces: &[AddrRange], weights: Weights, class: Option<Class>) -> Vec<Candidate> {
        let regions = &self.snap.regions;
        let mut out = Vec::new();
        for &piece in pieces {
            let first = regions.partition_point(|r| r.range.end <= piece.start);
            for (i, r) in regions.iter().enumerate().skip(first) {
                if r.range.start >= piece.end {
                    break;
                }
                let span = AddrRange {
                    start: r.range.start.align_up(HPAGE_SIZE),
                    end: r.range.end.align_up(HPAGE_SIZE),
                };
                if let Some(range) = span.intersect(&piece) {
                    out.push(Candidate {
                        range,
                        score: hot_score(r, self.snap, weights),
                        class: class.unwrap_or(self.cls.classes[i]),
                        action: Action::Hugepage,
                    });
                }
            }
        }
        out
    }
}

/// The policy for one etmem page-engine task: its `T` becomes the access
/// watermark (hot when count >= T, cold below; T = 0 makes everything hot,
/// as in etmem), its `swap_threshold` and `dram_percent` replace the
/// project's. Keys the task does not set keep the project's values.
pub fn task_policy(policy: &Policy, task: &PageTask) -> Policy {
    let mut p = policy.clone();
    if let Some(t) = task.hot_threshold {
        p.hot_min_accesses = conf::AccessBound::Count(t);
        // Hot wins over cold, so Count(0) with T = 0 leaves nothing cold.
        p.cold_max_accesses = conf::AccessBound::Count(t.saturating_sub(1));
    }
    if let Some(bytes) = task.swap_threshold_bytes {
        p.swap_threshold_bytes = Some(bytes);
    }
    if let Some(pct) = task.dram_percent {
        p.keep_in_ram = Some(Percent { bp: u32::from(pct) * 100 });
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{MIB, policy, quota, snap};
    use conf::{AccessBound, AccessPattern, AgeBound};
    use std::time::Duration;

    const GIB: u64 = 1 << 30;

    fn input(s: &Snapshot) -> PlanInput<'_> {
        PlanInput {
            now_us: 0,
            snapshot: s,
            task: TaskMemory { rss_bytes: GIB, swap_bytes: 0 },
            host: HostMemory { total_bytes: 100 * GIB, free_bytes: 10 * GIB },
            paged_out: &[],
            huge: &[],
            no_collapse: &[],
        }
    }

    fn mib(a: u64, b: u64) -> AddrRange {
        AddrRange::new(a * MIB, b * MIB)
    }

    /// `(action, start_mib, end_mib)` per decision, in plan order.
    fn decided(plan: &Plan) -> Vec<(Action, u64, u64)> {
        plan.decisions.iter().map(|d| (d.action, d.range.start.0 / MIB, d.range.end.0 / MIB)).collect()
    }

    fn report(plan: &Plan, rule: RuleId) -> RuleReport {
        *plan.rules.iter().find(|r| r.rule == rule).expect("rule in plan")
    }

    fn all_pattern() -> AccessPattern {
        AccessPattern {
            min_size_bytes: 0,
            max_size_bytes: u64::MAX,
            min_accesses: AccessBound::Count(0),
            max_accesses: AccessBound::Max,
            min_age: AgeBound::Aggregations(0),
            max_age: AgeBound::Max,
        }
    }

    fn scheme(action: Action, pattern: AccessPattern) -> Scheme {
        Scheme { pattern, action, quota: None, watermarks: None, apply_interval: None }
    }

    #[test]
    fn cold_regions_get_the_cold_action() {
        let s = snap(&[(0, 4, 0, 100), (4, 8, 5, 100), (8, 12, 20, 100)]);
        let plan = Planner::new(policy(), vec![]).plan(&input(&s));
        assert_eq!(decided(&plan), [(Action::Pageout, 0, 4)]);
        assert_eq!(plan.decisions[0].class, Class::Cold);
        assert_eq!(report(&plan, RuleId::Cold).planned_bytes, 4 * MIB);
        assert_eq!(plan.totals.cold_bytes, 4 * MIB);
    }

    #[test]
    fn prefetch_warm_brings_back_paged_out_ranges_that_turned_hot() {
        let mut p = policy();
        p.prefetch_warm = true;
        // 0..4 reaches the hot watermark (too young to be "hot" by age, which
        // prefetch does not wait for); 8..12 is paged out and still idle.
        let s = snap(&[(0, 4, 20, 0), (4, 8, 5, 100), (8, 12, 0, 100)]);
        let paged_out = [mib(1, 2), mib(3, 5), mib(9, 10)];
        let plan = Planner::new(p, vec![]).plan(&PlanInput { paged_out: &paged_out, ..input(&s) });
        let willneed: Vec<_> = decided(&plan).into_iter().filter(|d| d.0 == Action::Willneed).collect();
        assert_eq!(willneed, [(Action::Willneed, 1, 2), (Action::Willneed, 3, 4)]);
    }

    #[test]
    fn paged_out_ranges_are_not_paged_out_again() {
        let s = snap(&[(0, 8, 0, 100)]);
        let paged_out = [mib(2, 3), mib(6, 8)];
        let schemes = vec![scheme(Action::Pageout, all_pattern())];
        let mut p = policy();
        p.cold_action = Some(Action::Cold);
        let plan = Planner::new(p, schemes).plan(&PlanInput { paged_out: &paged_out, ..input(&s) });
        // The cold rule takes 0..2 and 3..6 with MADV_COLD; the pageout scheme
        // finds nothing left that is not paged out already.
        assert_eq!(decided(&plan), [(Action::Cold, 0, 2), (Action::Cold, 3, 6)]);
        assert_eq!(report(&plan, RuleId::Scheme(0)).matched_bytes, 0);
    }

    #[test]
    fn promotion_collapses_thp_eligible_units_hottest_first() {
        let mut p = policy();
        p.cold_action = None;
        p.promote_thp = true;
        p.quota = quota(Some(4 * MIB), None);
        let s = snap(&[(0, 8, 12, 100), (8, 16, 20, 100)]);
        let plan = Planner::new(p, vec![]).plan(&input(&s));
        assert_eq!(decided(&plan), [(Action::Hugepage, 8, 12)]);
        assert_eq!(plan.decisions[0].class, Class::ThpEligible);
        assert_eq!(plan.totals.thp_eligible_bytes, 16 * MIB);
    }

    #[test]
    fn never_collapse_units_touching_paged_out_huge_or_excluded_ranges() {
        let mut p = policy();
        p.promote_thp = true;
        let s = snap(&[(0, 16, 20, 100)]);
        let paged_out = [AddrRange::new(3 * MIB, 3 * MIB + 4096)];
        let huge = [mib(8, 10)];
        let no_collapse = [AddrRange::new(12 * MIB + 4096, 13 * MIB)];
        let plan = Planner::new(p, vec![]).plan(&PlanInput {
            paged_out: &paged_out,
            huge: &huge,
            no_collapse: &no_collapse,
            ..input(&s)
        });
        assert_eq!(
            decided(&plan),
            [
                (Action::Hugepage, 0, 2),
                (Action::Hugepage, 4, 8),
                (Action::Hugepage, 10, 12),
                (Action::Hugepage, 14, 16)
            ]
        );
    }

    #[test]
    fn demotion_gives_back_cold_huge_pages_with_nohugepage() {
        let mut p = policy();
        p.demote_thp = true;
        let s = snap(&[(0, 8, 0, 100)]);
        let huge = [mib(2, 4)];
        let plan = Planner::new(p.clone(), vec![]).plan(&PlanInput { huge: &huge, ..input(&s) });
        assert_eq!(
            decided(&plan),
            [(Action::Pageout, 0, 2), (Action::Nohugepage, 2, 4), (Action::Pageout, 4, 8)]
        );
        // Demotion alone, without a cold action.
        p.cold_action = None;
        let plan = Planner::new(p, vec![]).plan(&PlanInput { huge: &huge, ..input(&s) });
        assert_eq!(decided(&plan), [(Action::Nohugepage, 2, 4)]);
    }

    #[test]
    fn closed_gate_reports_why_nothing_was_done() {
        let s = snap(&[(0, 8, 0, 100)]);
        let mut p = policy();
        p.swap_threshold_bytes = Some(2 * GIB);
        let plan = Planner::new(p, vec![]).plan(&input(&s));
        assert!(plan.decisions.is_empty());
        let blocked: Vec<_> = plan.blocked().collect();
        assert_eq!(
            blocked,
            [(RuleId::Cold, Blocked::RssNotAboveSwapThreshold { rss_bytes: GIB, threshold_bytes: 2 * GIB })]
        );
        assert_eq!(blocked[0].1.to_string(), "RSS 1073741824 B is not above swap_threshold 2147483648 B");
    }

    #[test]
    fn memory_gates_close_only_reclaim() {
        // 10 % free is not below sysmem_threshold 5 %: no pageout, but
        // promotion and prefetch still run.
        let mut p = policy();
        p.sysmem_threshold = Some(Percent { bp: 500 });
        p.promote_thp = true;
        p.prefetch_warm = true;
        let s = snap(&[(0, 4, 0, 100), (4, 8, 20, 100)]);
        let paged_out = [mib(6, 7)];
        let plan = Planner::new(p, vec![]).plan(&PlanInput { paged_out: &paged_out, ..input(&s) });
        assert_eq!(decided(&plan), [(Action::Willneed, 6, 7), (Action::Hugepage, 4, 6)]);
        assert_eq!(
            report(&plan, RuleId::Cold).blocked,
            Some(Blocked::EnoughFreeMemory { free_bp: 1000, threshold: Percent { bp: 500 } })
        );
    }

    #[test]
    fn policy_watermarks_gate_the_cold_rule() {
        let mut p = policy();
        p.watermarks = Some(Watermarks {
            interval: Duration::from_secs(1),
            high_permil: 500,
            mid_permil: 200,
            low_permil: 10,
        });
        let s = snap(&[(0, 4, 0, 100)]);
        let mut planner = Planner::new(p, vec![]);
        let at = |now_us, free_bytes| PlanInput {
            now_us,
            host: HostMemory { total_bytes: 1000, free_bytes },
            ..input(&s)
        };
        assert!(planner.plan(&at(0, 300)).decisions.is_empty()); // mid..high, inactive
        assert_eq!(decided(&planner.plan(&at(1_000_000, 150))), [(Action::Pageout, 0, 4)]); // below mid
        assert_eq!(decided(&planner.plan(&at(1_100_000, 300))), [(Action::Pageout, 0, 4)]); // stays active
        assert!(planner.plan(&at(1_200_000, 600)).decisions.is_empty()); // above high
    }

    #[test]
    fn keep_in_ram_pages_out_coldest_first() {
        // dram_percent 50 of 8 MiB: 4 MiB may go. 4..8 has been idle for
        // 100 s (cold score 81), 0..4 for 2 s (77): 4..8 goes.
        let mut p = policy();
        p.keep_in_ram = Some(Percent { bp: 5000 });
        let s = snap(&[(0, 4, 0, 20), (4, 8, 0, 1000)]);
        let task = TaskMemory { rss_bytes: 8 * MIB, swap_bytes: 0 };
        let mut planner = Planner::new(p, vec![]);
        let plan = planner.plan(&PlanInput { task, ..input(&s) });
        assert_eq!(decided(&plan), [(Action::Pageout, 4, 8)]);
        assert_eq!(plan.decisions[0].score, 81);
        // Once half is swapped, nothing more may go.
        let task = TaskMemory { rss_bytes: 4 * MIB, swap_bytes: 4 * MIB };
        let plan = planner.plan(&PlanInput { task, ..input(&s) });
        assert!(matches!(report(&plan, RuleId::Cold).blocked, Some(Blocked::KeepInRam { .. })));
    }

    #[test]
    fn byte_quota_pages_out_coldest_first() {
        let mut p = policy();
        p.quota = quota(Some(5 * MIB), None);
        let s = snap(&[(0, 4, 0, 20), (4, 8, 0, 1000), (8, 12, 1, 1000)]);
        let plan = Planner::new(p, vec![]).plan(&input(&s));
        // Cold scores: 4..8 idle for 100 s = 81, 0..4 idle for 2 s = 77,
        // 8..12 accessed once for 100 s = 68. 5 MiB: 4 MiB at 81, 1 MiB at 77.
        assert_eq!(decided(&plan), [(Action::Pageout, 4, 8), (Action::Pageout, 0, 1)]);
        assert_eq!(report(&plan, RuleId::Cold).min_score, 77);
    }

    #[test]
    fn quota_resumes_round_robin_across_windows() {
        let mut p = policy();
        p.quota = quota(Some(2 * MIB), None);
        let s = snap(&[(0, 6, 0, 100)]);
        let mut planner = Planner::new(p, vec![]);
        let mut got = Vec::new();
        for window in 0..4u64 {
            let plan = planner.plan(&PlanInput { now_us: window * 1_000_000, ..input(&s) });
            got.extend(decided(&plan));
            let out =
                Outcome { tried_bytes: plan.planned_bytes(), applied_bytes: plan.planned_bytes(), cpu_ns: 1 };
            planner.record(RuleId::Cold, &out).expect("cold rule exists");
        }
        assert_eq!(
            got,
            [
                (Action::Pageout, 0, 2),
                (Action::Pageout, 2, 4),
                (Action::Pageout, 4, 6),
                (Action::Pageout, 0, 2)
            ]
        );
    }

    #[test]
    fn outcomes_charge_the_quota_with_what_was_done() {
        let mut p = policy();
        p.quota = quota(Some(4 * MIB), None);
        let s = snap(&[(0, 16, 0, 100)]);
        let mut planner = Planner::new(p, vec![]);
        assert_eq!(decided(&planner.plan(&input(&s))), [(Action::Pageout, 0, 4)]);
        // Only 1 MiB was really tried: 3 MiB remain, from where it stopped.
        let out = Outcome { tried_bytes: MIB, applied_bytes: MIB, cpu_ns: 10 };
        planner.record(RuleId::Cold, &out).expect("cold rule exists");
        let plan = planner.plan(&PlanInput { now_us: 100_000, ..input(&s) });
        assert_eq!(decided(&plan), [(Action::Pageout, 4, 7)]);
        // Without an outcome the reservation holds: nothing more this window.
        let plan = planner.plan(&PlanInput { now_us: 200_000, ..input(&s) });
        assert_eq!(
            report(&plan, RuleId::Cold).blocked,
            Some(Blocked::QuotaExhausted { esz_bytes: 4 * MIB, charged_bytes: 4 * MIB })
        );
        assert_eq!(
            planner.record(RuleId::Promote, &out),
            Err(RecordError::UnknownRule { rule: RuleId::Promote })
        );
    }

    #[test]
    fn cpu_quota_learns_throughput_from_outcomes() {
        // 1 ms of CPU per 1 s window; DAMOS's initial 4 MiB/ms gives 4 MiB.
        let mut p = policy();
        p.quota = quota(None, Some(1));
        let s = snap(&[(0, 64, 0, 100)]);
        let mut planner = Planner::new(p, vec![]);
        let plan = planner.plan(&input(&s));
        assert_eq!(plan.planned_bytes(), 4 * MIB);
        // Those 4 MiB took 4 ms: 1 MiB/ms, so the next window affords 1 MiB.
        let out = Outcome { tried_bytes: 4 * MIB, applied_bytes: 4 * MIB, cpu_ns: 4_000_000 };
        planner.record(RuleId::Cold, &out).expect("cold rule exists");
        let plan = planner.plan(&PlanInput { now_us: 1_000_000, ..input(&s) });
        assert_eq!(plan.planned_bytes(), MIB);
        let stats = planner.stats();
        assert_eq!((stats[0].throughput_bytes_per_ms, stats[0].qt_exceeds), (MIB, 1));
    }

    #[test]
    fn stat_scheme_only_counts() {
        let mut p = policy();
        p.cold_action = None;
        let s = snap(&[(0, 4, 0, 100), (4, 8, 20, 100)]);
        let mut planner = Planner::new(p, vec![scheme(Action::Stat, all_pattern())]);
        let plan = planner.plan(&input(&s));
        assert!(plan.decisions.is_empty());
        let r = report(&plan, RuleId::Scheme(0));
        assert_eq!((r.matched_bytes, r.planned_bytes, r.blocked), (8 * MIB, 0, None));
    }

    #[test]
    fn schemes_never_act_on_ranges_taken_by_earlier_rules() {
        let s = snap(&[(0, 4, 0, 100), (4, 8, 5, 100)]);
        let schemes = vec![scheme(Action::Cold, all_pattern()), scheme(Action::Willneed, all_pattern())];
        let plan = Planner::new(policy(), schemes).plan(&input(&s));
        assert_eq!(decided(&plan), [(Action::Pageout, 0, 4), (Action::Cold, 4, 8)]);
        assert_eq!(report(&plan, RuleId::Scheme(1)).matched_bytes, 0);
    }

    #[test]
    fn scheme_runs_once_per_apply_interval() {
        let mut p = policy();
        p.cold_action = None;
        let mut sc = scheme(Action::Cold, all_pattern());
        sc.apply_interval = Some(Duration::from_secs(1));
        let s = snap(&[(0, 4, 0, 100)]);
        let mut planner = Planner::new(p, vec![sc]);
        assert_eq!(planner.plan(&input(&s)).decisions.len(), 1);
        let plan = planner.plan(&PlanInput { now_us: 500_000, ..input(&s) });
        assert_eq!(
            report(&plan, RuleId::Scheme(0)).blocked,
            Some(Blocked::NotDue { next_apply_us: 1_000_000 })
        );
        assert_eq!(planner.plan(&PlanInput { now_us: 1_000_000, ..input(&s) }).decisions.len(), 1);
    }

    #[test]
    fn hugepage_scheme_acts_on_whole_units_scored_by_region() {
        let mut p = policy();
        p.cold_action = None;
        let mut pattern = all_pattern();
        pattern.min_accesses = AccessBound::Count(10);
        let s = snap(&[(1, 3, 20, 0), (3, 7, 15, 0)]);
        let plan = Planner::new(p, vec![scheme(Action::Hugepage, pattern)]).plan(&input(&s));
        // Joined 1..7 MiB: units 2..4 (starts in the first, hotter region) and 4..6.
        assert_eq!(decided(&plan), [(Action::Hugepage, 2, 4), (Action::Hugepage, 4, 6)]);
        assert!(plan.decisions[0].score > plan.decisions[1].score);
    }

    #[test]
    fn task_policy_follows_etmem_t_swap_threshold_and_dram_percent() {
        let task = PageTask {
            hot_threshold: Some(2),
            swap_threshold_bytes: Some(GIB),
            dram_percent: Some(60),
            ..PageTask::default()
        };
        let mut base = policy();
        base.hot_min_age = Duration::ZERO;
        base.cold_min_age = Duration::ZERO;
        let p = task_policy(&base, &task);
        assert_eq!((p.swap_threshold_bytes, p.keep_in_ram), (Some(GIB), Some(Percent { bp: 6000 })));
        let c = classify(&p, &snap(&[(0, 1, 1, 0), (1, 2, 2, 0), (2, 3, 6, 0)]));
        assert_eq!(c.classes, [Class::Cold, Class::Hot, Class::Hot]);
        // T = 0: every page is hot, nothing is swapped.
        let p = task_policy(&base, &PageTask { hot_threshold: Some(0), ..PageTask::default() });
        assert_eq!(classify(&p, &snap(&[(0, 1, 0, 0)])).classes, [Class::Hot]);
    }
}
