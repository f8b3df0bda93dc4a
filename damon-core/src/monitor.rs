//! The monitor: DAMON's `kdamond_fn` main loop as a pure state machine that a
//! driver thread steps once per sample interval (time counted in samples).
//!
//! Per sample: pick one page per region ([`Monitor::prepare_sample`]), let a
//! probe arm them, sleep (the driver's job), check them and
//! [`Monitor::record`] the results, then [`Monitor::finish_sample`], which
//! merges, snapshots, resets and splits at each aggregation and says when the
//! targets' mappings are due for an update. [`Monitor::step`] does all of this
//! for every target through a [`TargetOps`]. Reference: damon.md §2-§8.

use crate::autotune;
use crate::probe::{AccessProbe, ProbeError};
use crate::regions::{self, Region, align_up};
use crate::{Addr, AddrRange, PAGE_SIZE, RegionSnapshot, Snapshot};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use std::fmt;

/// Kernel default sample interval (`damon_new_ctx`): 5 ms.
pub const DEFAULT_SAMPLE_INTERVAL_US: u64 = 5_000;
/// Kernel default aggregation interval: 100 ms (20 samples).
pub const DEFAULT_AGGR_INTERVAL_US: u64 = 100_000;
/// Mapping update interval: damo's 1 s rather than the kernel's 60 s, because
/// a userspace engine re-reads /proc/PID/maps cheaply and the kernel default
/// leaves new mappings unmonitored for a minute (damon.md §13).
pub const DEFAULT_UPDATE_INTERVAL_US: u64 = 1_000_000;
/// Kernel default `min_nr_regions`.
pub const DEFAULT_MIN_NR_REGIONS: u32 = 10;
/// Kernel default `max_nr_regions`.
pub const DEFAULT_MAX_NR_REGIONS: u32 = 1000;

/// Identifies a monitoring target (the driver's choice: a pid, an index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetId(pub u64);

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The monitoring-intervals auto-tuning goal (`struct damon_intervals_goal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalsGoal {
    /// Wanted share of observed access events over the possible maximum, in
    /// basis points (400 = 4 %, design.rst's recommendation).
    pub access_bp: u32,
    /// Tune every this many aggregations; 0 disables tuning (as in the kernel).
    pub aggrs: u32,
    /// Lower bound for the tuned sample interval.
    pub min_sample_us: u64,
    /// Upper bound for the tuned sample interval.
    pub max_sample_us: u64,
}

impl IntervalsGoal {
    /// damo's `--monitoring_intervals_autotune`: "4% 3 5ms 10s".
    pub const DAMO_DEFAULT: IntervalsGoal =
        IntervalsGoal { access_bp: 400, aggrs: 3, min_sample_us: 5_000, max_sample_us: 10_000_000 };
}

/// How a target's mappings become monitoring ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RangeLayout {
    /// vaddr: three ranges around the two biggest gaps between mappings
    /// (fewer ranges when there are fewer gaps, see [`regions::vaddr_ranges`]).
    #[default]
    ThreeRegions,
    /// Every mapping (coalesced when adjacent) is its own range, like fvaddr
    /// with user-given ranges. Each range needs at least one region, so a
    /// target with more ranges than `max_nr_regions` exceeds it.
    Exact,
}

impl RangeLayout {
    /// The monitoring ranges for `mappings`.
    pub fn ranges(self, mappings: &[AddrRange], min_region_sz: u64) -> Vec<AddrRange> {
        match self {
            RangeLayout::ThreeRegions => regions::vaddr_ranges(mappings, min_region_sz),
            RangeLayout::Exact => regions::normalize_ranges(mappings, min_region_sz),
        }
    }
}

/// Monitoring attributes (`struct damon_attrs` plus the context's minimum
/// region size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorAttrs {
    /// Time between two access checks of a region.
    pub sample_interval_us: u64,
    /// Time over which checks are summed into `nr_accesses`.
    pub aggr_interval_us: u64,
    /// Time between two updates of the targets' mappings.
    pub update_interval_us: u64,
    /// Lower bound on the number of regions, enforced through the merge size
    /// limit (and, when `strict_min_nr_regions`, by splitting).
    pub min_nr_regions: u32,
    /// Upper bound on the number of regions.
    pub max_nr_regions: u32,
    /// Smallest region and alignment of every region edge: a power of two,
    /// at least [`PAGE_SIZE`].
    pub min_region_sz: u64,
    /// Interval auto-tuning, off when `None`.
    pub intervals_goal: Option<IntervalsGoal>,
    /// Newest kernels' `damon_apply_min_nr_regions`: after each merge, split
    /// every region larger than total / min_nr_regions, so min_nr_regions
    /// really holds and a big cold region cannot swallow a hot area
    /// (damon.md §5, §13). Off = mainline ≤ 6.x behaviour.
    pub strict_min_nr_regions: bool,
    /// Not in the kernel: once a region has been seen accessed this many
    /// times in the current aggregation interval, stop checking it until the
    /// next one, and fill its remaining samples in at random from the rate
    /// seen so far (`probed_accesses / probed`). For probes whose check costs
    /// per accessed page (the refault probe pays a page fault for every hot
    /// sample) this bounds a hot region's cost per aggregation to this many
    /// accesses, while a region with fewer accesses (every cold one) is
    /// checked at every sample exactly as DAMON does. 0 = check every sample.
    pub max_probed_accesses: u32,
}

impl Default for MonitorAttrs {
    fn default() -> Self {
        MonitorAttrs {
            sample_interval_us: DEFAULT_SAMPLE_INTERVAL_US,
            aggr_interval_us: DEFAULT_AGGR_INTERVAL_US,
            update_interval_us: DEFAULT_UPDATE_INTERVAL_US,
            min_nr_regions: DEFAULT_MIN_NR_REGIONS,
            max_nr_regions: DEFAULT_MAX_NR_REGIONS,
            min_region_sz: PAGE_SIZE,
            intervals_goal: None,
            strict_min_nr_regions: false,
            max_probed_accesses: 0,
        }
    }
}

/// One reason why [`MonitorAttrs`] are invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttrsProblem {
    /// The kernel treats 0 as 1 µs; a userspace driver would spin, so we refuse.
    #[error("sample_interval_us must be > 0")]
    ZeroSampleInterval,
    #[error("sample_interval_us ({sample_us}) exceeds aggr_interval_us ({aggr_us})")]
    SampleLongerThanAggr { sample_us: u64, aggr_us: u64 },
    #[error("min_nr_regions ({min}) must be >= 3")]
    MinNrRegionsBelowThree { min: u32 },
    #[error("min_nr_regions ({min}) exceeds max_nr_regions ({max})")]
    MinAboveMax { min: u32, max: u32 },
    #[error("min_region_sz ({sz}) must be a power of two >= {PAGE_SIZE}")]
    BadMinRegionSize { sz: u64 },
    #[error("intervals_goal min_sample_us ({min_us}) exceeds max_sample_us ({max_us})")]
    GoalMinAboveMax { min_us: u64, max_us: u64 },
    #[error("sample_interval_us ({sample_us}) is outside intervals_goal [{min_us}, {max_us}]")]
    SampleOutsideGoal { sample_us: u64, min_us: u64, max_us: u64 },
    #[error("intervals_goal min_sample_us must be > 0")]
    GoalZeroMinSample,
    /// Existing regions are aligned to the old size; start a new monitor.
    #[error("min_region_sz cannot change while monitoring ({from} -> {to})")]
    MinRegionSizeChanged { from: u64, to: u64 },
}

/// Invalid monitoring attributes, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid monitoring attributes: {}", list(.problems))]
pub struct MonitorAttrsError {
    pub problems: Vec<AttrsProblem>,
}

fn list(problems: &[AttrsProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl MonitorAttrs {
    /// `damon_set_attrs` validation, plus what a userspace driver needs;
    /// collects every problem.
    pub fn validate(&self) -> Result<(), MonitorAttrsError> {
        let mut p = Vec::new();
        if self.sample_interval_us == 0 {
            p.push(AttrsProblem::ZeroSampleInterval);
        }
        if self.sample_interval_us > self.aggr_interval_us {
            p.push(AttrsProblem::SampleLongerThanAggr {
                sample_us: self.sample_interval_us,
                aggr_us: self.aggr_interval_us,
            });
        }
        if self.min_nr_regions < 3 {
            p.push(AttrsProblem::MinNrRegionsBelowThree { min: self.min_nr_regions });
        }
        if self.min_nr_regions > self.max_nr_regions {
            p.push(AttrsProblem::MinAboveMax { min: self.min_nr_regions, max: self.max_nr_regions });
        }
        if !self.min_region_sz.is_power_of_two() || self.min_region_sz < PAGE_SIZE {
            p.push(AttrsProblem::BadMinRegionSize { sz: self.min_region_sz });
        }
        if let Some(g) = self.intervals_goal.filter(|g| g.aggrs != 0) {
            if g.min_sample_us > g.max_sample_us {
                p.push(AttrsProblem::GoalMinAboveMax { min_us: g.min_sample_us, max_us: g.max_sample_us });
            }
            if g.min_sample_us == 0 {
                p.push(AttrsProblem::GoalZeroMinSample);
            }
            if self.sample_interval_us < g.min_sample_us || self.sample_interval_us > g.max_sample_us {
                p.push(AttrsProblem::SampleOutsideGoal {
                    sample_us: self.sample_interval_us,
                    min_us: g.min_sample_us,
                    max_us: g.max_sample_us,
                });
            }
        }
        if p.is_empty() { Ok(()) } else { Err(MonitorAttrsError { problems: p }) }
    }

    /// `damon_max_nr_accesses`: aggregation / sample interval.
    pub fn max_nr_accesses(&self) -> u32 {
        u32::try_from(self.aggr_interval_us / self.sample_interval_us.max(1)).unwrap_or(u32::MAX)
    }

    fn active_goal(&self) -> Option<IntervalsGoal> {
        self.intervals_goal.filter(|g| g.aggrs != 0)
    }
}

/// Why a target could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddTargetError {
    #[error("target {id} is already monitored")]
    Duplicate { id: TargetId },
}

/// The target named is not monitored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target {id} is not monitored")]
pub struct UnknownTargetError {
    pub id: TargetId,
}

/// Why check results could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("target {id} is not monitored")]
    UnknownTarget { id: TargetId },
    #[error("target {id} has no sampling addresses armed for this sample")]
    NotArmed { id: TargetId },
    #[error("target {id}: {got} check results for {expected} sampled regions")]
    LengthMismatch { id: TargetId, expected: usize, got: usize },
}

/// What one finished sample produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SampleOutcome {
    /// At the end of an aggregation interval: one snapshot per target.
    pub aggregated: Option<Vec<(TargetId, Snapshot)>>,
    /// The targets' mappings are due for an update ([`Monitor::update_target`]).
    pub update_due: bool,
    /// Set when auto-tuning changed the sample interval (the new value).
    pub tuned_sample_interval_us: Option<u64>,
}

/// What one [`Monitor::step`] produced.
#[derive(Debug, Default)]
pub struct StepOutcome {
    /// At the end of an aggregation interval: one snapshot per target.
    pub aggregated: Option<Vec<(TargetId, Snapshot)>>,
    /// The mappings of the targets were updated in this step.
    pub updated: bool,
    /// Set when auto-tuning changed the sample interval (the new value).
    pub tuned_sample_interval_us: Option<u64>,
    /// Probes that failed to arm or check; the failed checks count as "not
    /// accessed", as the kernel does for a target without an mm.
    pub probe_failures: Vec<(TargetId, ProbeError)>,
}

/// Counters for cost reporting.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MonitorStats {
    /// Samples finished.
    pub samples: u64,
    /// Aggregation intervals finished (snapshots produced per target).
    pub aggregations: u64,
    /// Mapping updates that came due.
    pub updates: u64,
    /// Sample-interval changes made by auto-tuning.
    pub interval_tunes: u64,
    /// Sampled addresses handed out for checking.
    pub sampled_addrs: u64,
    /// Region samples not checked but filled in from the region's rate
    /// ([`MonitorAttrs::max_probed_accesses`]).
    pub imputed_samples: u64,
}

/// What the monitor needs from the world for [`Monitor::step`]: a probe per
/// target and, once per update interval, the target's mappings.
pub trait TargetOps {
    /// The probe of `target`; `None` counts its checks as "not accessed".
    fn probe(&mut self, target: TargetId) -> Option<&mut dyn AccessProbe>;

    /// The target's current mappings; `None` keeps its regions as they are
    /// (the kernel skips a target whose three regions cannot be found).
    fn mappings(&mut self, target: TargetId) -> Option<Vec<AddrRange>> {
        let _ = target;
        None
    }
}

#[derive(Debug)]
struct Target {
    id: TargetId,
    layout: RangeLayout,
    regions: Vec<Region>,
    /// This sample's addresses, one per checked region.
    sampling_addrs: Vec<Addr>,
    /// The index in `regions` of each of `sampling_addrs`.
    probed: Vec<usize>,
    armed: bool,
    recorded: bool,
}

/// DAMON's monitoring context (`struct damon_ctx` + `kdamond_fn`), pure.
#[derive(Debug)]
pub struct Monitor {
    attrs: MonitorAttrs,
    /// `attrs->aggr_samples`: kept constant by auto-tuning.
    aggr_samples: u64,
    rng: Pcg64Mcg,
    targets: Vec<Target>,
    passed_samples: u64,
    next_aggregation_sis: u64,
    next_update_sis: u64,
    next_tune_sis: u64,
    sz_limit: u64,
    /// `kdamond_split_regions`' static; per monitor here (the kernel shares
    /// it between all contexts, a quirk nobody wants to copy).
    last_nr_regions: usize,
    prepared: bool,
    elapsed_us: u64,
    stats: MonitorStats,
    scratch: Vec<bool>,
}

impl Monitor {
    /// A monitor without targets; `seed` drives every random choice.
    pub fn new(attrs: MonitorAttrs, seed: u64) -> Result<Monitor, MonitorAttrsError> {
        attrs.validate()?;
        let sample = attrs.sample_interval_us;
        let next_aggregation_sis = attrs.aggr_interval_us / sample;
        let goal_aggrs = attrs.active_goal().map_or(0, |g| u64::from(g.aggrs));
        Ok(Monitor {
            aggr_samples: attrs.aggr_interval_us / sample,
            next_aggregation_sis,
            next_update_sis: attrs.update_interval_us / sample,
            next_tune_sis: next_aggregation_sis * goal_aggrs,
            sz_limit: attrs.min_region_sz,
            attrs,
            rng: Pcg64Mcg::seed_from_u64(seed),
            targets: Vec::new(),
            passed_samples: 0,
            last_nr_regions: 0,
            prepared: false,
            elapsed_us: 0,
            stats: MonitorStats::default(),
            scratch: Vec::new(),
        })
    }

    /// The current attributes (intervals change under auto-tuning).
    pub fn attrs(&self) -> &MonitorAttrs {
        &self.attrs
    }

    /// How long the driver should sleep between two steps.
    pub fn sample_interval_us(&self) -> u64 {
        self.attrs.sample_interval_us
    }

    /// Samples since the start (`passed_sample_intervals`).
    pub fn passed_samples(&self) -> u64 {
        self.passed_samples
    }

    /// Monitoring time since the start: the sum of the sample intervals.
    pub fn elapsed_us(&self) -> u64 {
        self.elapsed_us
    }

    /// Cost counters.
    pub fn stats(&self) -> MonitorStats {
        self.stats
    }

    /// Regions of all targets.
    pub fn nr_regions(&self) -> usize {
        self.targets.iter().map(|t| t.regions.len()).sum()
    }

    /// The current merge size limit (total size / min_nr_regions).
    pub fn region_sz_limit(&self) -> u64 {
        self.sz_limit
    }

    /// The monitored targets, in the order they were added.
    pub fn target_ids(&self) -> impl Iterator<Item = TargetId> + '_ {
        self.targets.iter().map(|t| t.id)
    }

    /// The current regions of a target, sorted by address.
    pub fn regions(&self, id: TargetId) -> Option<&[Region]> {
        self.target(id).map(|t| t.regions.as_slice())
    }

    /// The addresses to arm and check for a target in the current sample
    /// (empty before the first [`Monitor::prepare_sample`]).
    pub fn sampling_addrs(&self, id: TargetId) -> Option<&[Addr]> {
        self.target(id).map(|t| t.sampling_addrs.as_slice())
    }

    fn target(&self, id: TargetId) -> Option<&Target> {
        self.targets.iter().find(|t| t.id == id)
    }

    fn target_index(&self, id: TargetId) -> Option<usize> {
        self.targets.iter().position(|t| t.id == id)
    }

    /// Add a virtual-address target ([`RangeLayout::ThreeRegions`]).
    pub fn add_target(&mut self, id: TargetId, mappings: &[AddrRange]) -> Result<(), AddTargetError> {
        self.add_target_with_layout(id, mappings, RangeLayout::ThreeRegions)
    }

    /// Add a target and set up its initial regions (`damon_va_init`). With no
    /// usable mappings the target starts without regions and gets them at the
    /// first update that has some.
    pub fn add_target_with_layout(
        &mut self,
        id: TargetId,
        mappings: &[AddrRange],
        layout: RangeLayout,
    ) -> Result<(), AddTargetError> {
        if self.target(id).is_some() {
            return Err(AddTargetError::Duplicate { id });
        }
        self.targets.push(Target {
            id,
            layout,
            regions: Vec::new(),
            sampling_addrs: Vec::new(),
            probed: Vec::new(),
            armed: false,
            recorded: false,
        });
        let idx = self.targets.len() - 1;
        self.init_regions(idx, mappings);
        // The kernel computes the size limit at start and after updates only;
        // targets added while running get it recomputed here too, or a new
        // big target would merge under a limit sized for the old ones.
        self.refresh_sz_limit();
        Ok(())
    }

    /// Stop monitoring a target.
    pub fn remove_target(&mut self, id: TargetId) -> Result<(), UnknownTargetError> {
        let idx = self.target_index(id).ok_or(UnknownTargetError { id })?;
        self.targets.remove(idx);
        self.refresh_sz_limit();
        Ok(())
    }

    /// The vaddr init: the layout's ranges, then (mainline) each range evenly
    /// split into pieces of total / min_nr_regions, or (strict) split by
    /// `damon_apply_min_nr_regions`.
    fn init_regions(&mut self, idx: usize, mappings: &[AddrRange]) {
        let min_sz = self.attrs.min_region_sz;
        let t = &mut self.targets[idx];
        let ranges = t.layout.ranges(mappings, min_sz);
        if ranges.is_empty() {
            return;
        }
        let mut regions = Vec::new();
        regions::set_regions(&mut regions, &ranges, min_sz);
        if self.attrs.strict_min_nr_regions {
            t.regions = regions;
            t.armed = false;
            self.sz_limit = self.apply_min_nr_regions();
            return;
        }
        let total: u64 = regions.iter().map(Region::len).sum();
        let sz = (total / u64::from(self.attrs.min_nr_regions)).max(min_sz);
        t.regions =
            regions.into_iter().flat_map(|r| regions::evenly_split(r, r.len() / sz, min_sz)).collect();
        t.armed = false;
    }

    /// `damon_va_update` for one target: fit its regions to the current
    /// mappings (`damon_set_regions`). Mappings that yield no range keep the
    /// regions as they are, as the kernel does when it finds no three regions.
    /// A target that has no regions yet gets the init instead (the kernel would
    /// set bare ranges here; the init's even split converges faster).
    pub fn update_target(&mut self, id: TargetId, mappings: &[AddrRange]) -> Result<(), UnknownTargetError> {
        let idx = self.target_index(id).ok_or(UnknownTargetError { id })?;
        let min_sz = self.attrs.min_region_sz;
        let t = &mut self.targets[idx];
        if t.regions.is_empty() {
            self.init_regions(idx, mappings);
        } else {
            let ranges = t.layout.ranges(mappings, min_sz);
            if ranges.is_empty() {
                return Ok(());
            }
            regions::set_regions(&mut t.regions, &ranges, min_sz);
            t.armed = false;
        }
        if !self.attrs.strict_min_nr_regions {
            self.refresh_sz_limit();
        }
        Ok(())
    }

    /// Change the attributes while running (`damon_set_attrs` from a commit):
    /// counts and ages are rescaled to the new intervals, the current
    /// aggregation restarts.
    pub fn set_attrs(&mut self, attrs: MonitorAttrs) -> Result<(), MonitorAttrsError> {
        let mut problems = attrs.validate().err().map(|e| e.problems).unwrap_or_default();
        if attrs.min_region_sz != self.attrs.min_region_sz {
            problems.push(AttrsProblem::MinRegionSizeChanged {
                from: self.attrs.min_region_sz,
                to: attrs.min_region_sz,
            });
        }
        if !problems.is_empty() {
            return Err(MonitorAttrsError { problems });
        }
        let aggregating = self.passed_samples < self.next_aggregation_sis;
        self.aggr_samples = attrs.aggr_interval_us / attrs.sample_interval_us;
        self.apply_attrs(attrs, aggregating);
        // Mainline recomputes the size limit only after updates; a changed
        // min_nr_regions should not wait for one.
        self.refresh_sz_limit();
        Ok(())
    }

    /// `damon_set_attrs` after validation.
    fn apply_attrs(&mut self, new: MonitorAttrs, aggregating: bool) {
        let sample = new.sample_interval_us;
        self.next_aggregation_sis = self.passed_samples + new.aggr_interval_us / sample;
        self.next_update_sis = self.passed_samples + new.update_interval_us / sample;
        let (old_max, new_max) = (u64::from(self.attrs.max_nr_accesses()), u64::from(new.max_nr_accesses()));
        let (old_aggr, new_aggr) = (self.attrs.aggr_interval_us, new.aggr_interval_us);
        let rescale = |nr: u32| -> u32 {
            // damon_nr_accesses_for_new_attrs: via an access ratio in bp.
            let bp = u64::from(nr) * 10_000 / old_max.max(1);
            u32::try_from(bp * new_max / 10_000).unwrap_or(u32::MAX)
        };
        for r in self.targets.iter_mut().flat_map(|t| t.regions.iter_mut()) {
            if aggregating {
                r.last_nr_accesses = rescale(r.last_nr_accesses);
                r.nr_accesses_bp = r.last_nr_accesses.saturating_mul(10_000);
                r.nr_accesses = 0;
            } else {
                r.nr_accesses = rescale(r.nr_accesses);
                r.nr_accesses_bp = r.nr_accesses.saturating_mul(10_000);
            }
            r.age = u32::try_from(u64::from(r.age) * old_aggr / new_aggr.max(1)).unwrap_or(u32::MAX);
            r.probed = 0;
            r.probed_accesses = 0;
        }
        self.attrs = new;
    }

    /// `damon_region_sz_limit`: total size / min_nr_regions, at least the
    /// minimum region size.
    fn compute_sz_limit(&self) -> u64 {
        let total: u64 = self.targets.iter().flat_map(|t| t.regions.iter()).map(Region::len).sum();
        (total / u64::from(self.attrs.min_nr_regions.max(1))).max(self.attrs.min_region_sz)
    }

    fn refresh_sz_limit(&mut self) {
        self.sz_limit = if self.attrs.strict_min_nr_regions {
            self.apply_min_nr_regions()
        } else {
            self.compute_sz_limit()
        };
    }

    /// `damon_apply_min_nr_regions`: split every region larger than the
    /// (aligned) size limit into limit-sized pieces; returns the limit.
    fn apply_min_nr_regions(&mut self) -> u64 {
        let min_sz = self.attrs.min_region_sz;
        let max_sz = align_up(self.compute_sz_limit(), min_sz);
        for t in &mut self.targets {
            if t.regions.iter().all(|r| r.len() <= max_sz) {
                continue;
            }
            let mut out = Vec::with_capacity(t.regions.len());
            for mut r in t.regions.drain(..) {
                while r.len() > max_sz {
                    let mut left = r;
                    left.range.end = Addr(r.range.start.0 + max_sz);
                    out.push(left);
                    r.range.start = left.range.end;
                }
                out.push(r);
            }
            t.regions = out;
            t.armed = false;
        }
        max_sz
    }

    /// `prepare_access_checks`: pick this sample's address in every region,
    /// uniformly among its pages (the kernel picks a byte; probes work on
    /// pages, and page-aligned regions make the two choices equivalent).
    /// A region that reached [`MonitorAttrs::max_probed_accesses`] gets no
    /// address.
    pub fn prepare_sample(&mut self) {
        let cap = self.attrs.max_probed_accesses;
        for t in &mut self.targets {
            t.sampling_addrs.clear();
            t.probed.clear();
            for (i, r) in t.regions.iter_mut().enumerate() {
                if cap > 0 && r.probed_accesses >= cap {
                    continue;
                }
                let pages = r.len() / PAGE_SIZE;
                let page = if pages > 1 { self.rng.random_range(0..pages) } else { 0 };
                r.sampling_addr = Addr(r.range.start.0 + page * PAGE_SIZE);
                t.sampling_addrs.push(r.sampling_addr);
                t.probed.push(i);
            }
            self.stats.sampled_addrs += t.sampling_addrs.len() as u64;
            t.armed = true;
            t.recorded = false;
        }
        self.prepared = true;
    }

    /// Feed a target's check results: `accessed[i]` for the i-th sampling
    /// address of this sample (`damon_update_region_access_rate`). Regions
    /// that got no address this sample are filled in from their rate.
    pub fn record(&mut self, id: TargetId, accessed: &[bool]) -> Result<(), RecordError> {
        let idx = self.target_index(id).ok_or(RecordError::UnknownTarget { id })?;
        self.record_index(idx, accessed)
    }

    fn record_index(&mut self, idx: usize, accessed: &[bool]) -> Result<(), RecordError> {
        let len_window = self.attrs.max_nr_accesses();
        let t = &mut self.targets[idx];
        if !t.armed || t.recorded {
            return Err(RecordError::NotArmed { id: t.id });
        }
        if accessed.len() != t.probed.len() {
            return Err(RecordError::LengthMismatch {
                id: t.id,
                expected: t.probed.len(),
                got: accessed.len(),
            });
        }
        let mut checked = t.probed.iter().copied().zip(accessed.iter().copied()).peekable();
        for (i, r) in t.regions.iter_mut().enumerate() {
            let a = match checked.next_if(|&(j, _)| j == i) {
                Some((_, a)) => {
                    r.probed += 1;
                    r.probed_accesses += u32::from(a);
                    a
                }
                None => {
                    self.stats.imputed_samples += 1;
                    self.rng.random_ratio(r.probed_accesses.min(r.probed), r.probed.max(1))
                }
            };
            regions::update_access_rate(r, a, len_window);
        }
        t.recorded = true;
        Ok(())
    }

    /// End the current sample: count it, and at aggregation time merge
    /// (ages updated there), auto-tune, snapshot, reset and split, in the
    /// kernel's order. Targets whose results were not recorded count as "not
    /// accessed" in this sample.
    pub fn finish_sample(&mut self) -> SampleOutcome {
        let len_window = self.attrs.max_nr_accesses();
        for t in &mut self.targets {
            if !t.recorded {
                for r in &mut t.regions {
                    regions::update_access_rate(r, false, len_window);
                }
            }
            t.armed = false;
            t.recorded = false;
        }
        self.prepared = false;
        self.passed_samples += 1;
        self.elapsed_us += self.attrs.sample_interval_us;
        self.stats.samples += 1;
        let max_nr_accesses =
            self.targets.iter().flat_map(|t| t.regions.iter()).map(|r| r.nr_accesses).max().unwrap_or(0);

        // kdamond_fn reads these before the iteration's work.
        let next_aggregation_sis = self.next_aggregation_sis;
        let next_update_sis = self.next_update_sis;
        let mut out = SampleOutcome::default();
        let aggregate = self.passed_samples >= next_aggregation_sis;
        if aggregate {
            self.merge_regions(max_nr_accesses / 10);
            if self.attrs.strict_min_nr_regions {
                self.sz_limit = self.apply_min_nr_regions();
            }
        }
        let mut sample = self.attrs.sample_interval_us;
        if aggregate {
            let goal = self.attrs.active_goal().filter(|_| self.passed_samples >= self.next_tune_sis);
            if let Some(goal) = goal {
                self.next_aggregation_sis = next_aggregation_sis;
                self.next_tune_sis += self.aggr_samples * u64::from(goal.aggrs);
                if self.tune_intervals(goal) {
                    out.tuned_sample_interval_us = Some(self.attrs.sample_interval_us);
                    self.stats.interval_tunes += 1;
                }
                sample = self.attrs.sample_interval_us;
            }
            self.next_aggregation_sis = next_aggregation_sis + self.attrs.aggr_interval_us / sample;
            out.aggregated = Some(self.snapshots());
            self.stats.aggregations += 1;
            self.reset_aggregated();
            self.split_regions();
        }
        if self.passed_samples >= next_update_sis {
            self.next_update_sis = next_update_sis + self.attrs.update_interval_us / sample;
            out.update_due = true;
            self.stats.updates += 1;
        }
        out
    }

    /// `kdamond_merge_regions`: merge with `threshold`, and while there are
    /// more than max_nr_regions regions retry with a doubled threshold.
    ///
    /// As in the kernel, each retry runs the whole `damon_merge_regions_of`
    /// again, age update included, so a retried aggregation ages regions more
    /// than once. Kept for fidelity; retries happen only after a mapping update
    /// or a lowered max_nr_regions pushed the count over the limit.
    fn merge_regions(&mut self, mut threshold: u32) {
        let max_thres = self.attrs.max_nr_accesses();
        let sz_limit = self.sz_limit;
        let settled = self.attrs.max_probed_accesses;
        loop {
            let mut nr_regions = 0;
            for t in &mut self.targets {
                regions::merge_regions_of(&mut t.regions, threshold, sz_limit, settled);
                nr_regions += t.regions.len();
            }
            threshold = threshold.saturating_mul(2).max(1);
            if !(nr_regions > self.attrs.max_nr_regions as usize && threshold / 2 < max_thres) {
                break;
            }
        }
    }

    /// `kdamond_tune_intervals`; true when the intervals changed.
    fn tune_intervals(&mut self, goal: IntervalsGoal) -> bool {
        let score = autotune::intervals_score(
            self.targets.iter().flat_map(|t| t.regions.iter()),
            self.aggr_samples,
            u64::from(goal.access_bp),
        );
        let adaptation = autotune::adaptation_bp(score);
        if adaptation == 10_000 {
            return false;
        }
        let mut new = self.attrs.clone();
        new.sample_interval_us = autotune::tuned_sample_interval_us(
            self.attrs.sample_interval_us,
            adaptation,
            goal.min_sample_us,
            goal.max_sample_us,
        );
        new.aggr_interval_us = new.sample_interval_us * self.aggr_samples;
        let changed = new != self.attrs;
        // Called between merge and reset: not "aggregating" for damon_set_attrs.
        self.apply_attrs(new, false);
        changed
    }

    /// The `damon_aggregated` trace point's view: every target's regions as
    /// they are just before the reset (merged, aged). After an auto-tune the
    /// ages are already in units of the new aggregation interval, which is the
    /// interval reported.
    fn snapshots(&self) -> Vec<(TargetId, Snapshot)> {
        let max_nr_accesses = self.attrs.max_nr_accesses();
        self.targets
            .iter()
            .map(|t| {
                let regions = t
                    .regions
                    .iter()
                    .map(|r| RegionSnapshot { range: r.range, nr_accesses: r.nr_accesses, age: r.age })
                    .collect();
                let snap = Snapshot {
                    time_us: self.elapsed_us,
                    aggr_interval_us: self.attrs.aggr_interval_us,
                    max_nr_accesses,
                    regions,
                };
                (t.id, snap)
            })
            .collect()
    }

    /// `kdamond_reset_aggregated`, with `damon_warn_fix_nr_accesses_corruption`.
    fn reset_aggregated(&mut self) {
        for r in self.targets.iter_mut().flat_map(|t| t.regions.iter_mut()) {
            let want = r.nr_accesses.saturating_mul(10_000);
            if r.nr_accesses_bp != want {
                tracing::debug!(range = %r.range, bp = r.nr_accesses_bp, nr = r.nr_accesses, "fixing nr_accesses_bp");
                r.nr_accesses_bp = want;
            }
            r.last_nr_accesses = r.nr_accesses;
            r.nr_accesses = 0;
            r.probed = 0;
            r.probed_accesses = 0;
        }
    }

    /// `kdamond_split_regions`: while at most max/2 regions, split each in 2,
    /// or in 3 when the count did not change since the last split and is
    /// below max/3.
    fn split_regions(&mut self) {
        let nr_regions = self.nr_regions();
        let max = self.attrs.max_nr_regions as usize;
        if nr_regions > max / 2 {
            return;
        }
        let nr_subs = if self.last_nr_regions == nr_regions && nr_regions < max / 3 { 3 } else { 2 };
        let min_sz = self.attrs.min_region_sz;
        for t in &mut self.targets {
            regions::split_regions_of(&mut t.regions, nr_subs, min_sz, &mut self.rng);
        }
        self.last_nr_regions = nr_regions;
    }

    /// One whole sample for every target: check the addresses armed by the
    /// previous step and record them, finish the sample (and update mappings
    /// when due), then pick and arm the next addresses. A driver thread runs
    /// `loop { monitor.step(&mut ops); sleep(monitor.sample_interval_us()) }`.
    /// The first call only arms.
    pub fn step(&mut self, ops: &mut dyn TargetOps) -> StepOutcome {
        let mut out = StepOutcome::default();
        if self.prepared {
            let mut accessed = std::mem::take(&mut self.scratch);
            for idx in 0..self.targets.len() {
                let t = &self.targets[idx];
                if !t.armed {
                    continue;
                }
                accessed.clear();
                accessed.resize(t.sampling_addrs.len(), false);
                let checked = ops.probe(t.id).map(|probe| probe.check(&t.sampling_addrs, &mut accessed));
                if let Some(Err(e)) = checked {
                    accessed.iter_mut().for_each(|a| *a = false);
                    out.probe_failures.push((t.id, e));
                }
                // Cannot fail: the target is armed and the lengths match.
                let _ = self.record_index(idx, &accessed);
            }
            self.scratch = accessed;
            let sample = self.finish_sample();
            out.aggregated = sample.aggregated;
            out.tuned_sample_interval_us = sample.tuned_sample_interval_us;
            if sample.update_due {
                let ids: Vec<TargetId> = self.target_ids().collect();
                for id in ids {
                    if let Some(mappings) = ops.mappings(id) {
                        // Cannot fail: the id comes from the target list.
                        let _ = self.update_target(id, &mappings);
                    }
                }
                out.updated = true;
            }
        }
        self.prepare_sample();
        for t in &self.targets {
            if let Some(Err(e)) = ops.probe(t.id).map(|probe| probe.arm(&t.sampling_addrs)) {
                out.probe_failures.push((t.id, e));
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Sees;

    const P: u64 = PAGE_SIZE;

    fn attrs() -> MonitorAttrs {
        MonitorAttrs::default()
    }

    #[test]
    fn validation_collects_every_problem() {
        let bad = MonitorAttrs {
            sample_interval_us: 200,
            aggr_interval_us: 100,
            min_nr_regions: 2,
            max_nr_regions: 1,
            min_region_sz: 3000,
            intervals_goal: Some(IntervalsGoal {
                access_bp: 400,
                aggrs: 3,
                min_sample_us: 9,
                max_sample_us: 5,
            }),
            ..attrs()
        };
        let err = bad.validate().unwrap_err();
        assert_eq!(err.problems.len(), 6, "{err}");
        assert!(err.to_string().contains("min_nr_regions (2) must be >= 3"));
        assert!(attrs().validate().is_ok());
        // aggrs == 0 disables the goal, so its bounds are not checked.
        let off = MonitorAttrs {
            intervals_goal: Some(IntervalsGoal {
                aggrs: 0,
                min_sample_us: 9,
                max_sample_us: 5,
                access_bp: 1,
            }),
            ..attrs()
        };
        assert!(off.validate().is_ok());
    }

    #[test]
    fn init_splits_three_regions_evenly_to_min_nr_regions() {
        let mut m = Monitor::new(attrs(), 1).unwrap();
        let maps = [
            AddrRange::new(0x1000_0000, 0x1000_0000 + 100 * P),
            AddrRange::new(0x7000_0000, 0x7000_0000 + 1000 * P),
            AddrRange::new(0x7fff_0000, 0x7fff_0000 + 10 * P),
        ];
        m.add_target(TargetId(1), &maps).unwrap();
        let regs = m.regions(TargetId(1)).unwrap();
        // total 1110 pages / 10 = 111 pages per piece: 1 + 9 + 1 pieces.
        assert_eq!(regs.len(), 11);
        assert_eq!(regs.iter().map(Region::len).sum::<u64>(), 1110 * P);
        assert_eq!(m.region_sz_limit(), 1110 * P / 10);
    }

    #[test]
    fn strict_init_splits_to_the_size_limit() {
        let a = MonitorAttrs { strict_min_nr_regions: true, ..attrs() };
        let mut m = Monitor::new(a, 1).unwrap();
        m.add_target(TargetId(1), &[AddrRange::new(0, 1000 * P)]).unwrap();
        let regs = m.regions(TargetId(1)).unwrap();
        assert_eq!(regs.len(), 10);
        assert!(regs.iter().all(|r| r.len() == 100 * P));
    }

    #[test]
    fn sampling_addresses_are_pages_inside_their_regions() {
        let mut m = Monitor::new(attrs(), 3).unwrap();
        m.add_target(TargetId(1), &[AddrRange::new(0, 1000 * P)]).unwrap();
        for _ in 0..50 {
            m.prepare_sample();
            let addrs = m.sampling_addrs(TargetId(1)).unwrap().to_vec();
            let regs = m.regions(TargetId(1)).unwrap();
            assert_eq!(addrs.len(), regs.len());
            for (a, r) in addrs.iter().zip(regs) {
                assert!(r.range.contains(*a) && a.0 % P == 0);
            }
            let n = addrs.len();
            m.record(TargetId(1), &vec![false; n]).unwrap();
            m.finish_sample();
        }
    }

    #[test]
    fn record_checks_arming_and_length() {
        let mut m = Monitor::new(attrs(), 3).unwrap();
        m.add_target(TargetId(1), &[AddrRange::new(0, 100 * P)]).unwrap();
        assert_eq!(m.record(TargetId(1), &[]), Err(RecordError::NotArmed { id: TargetId(1) }));
        m.prepare_sample();
        assert!(matches!(m.record(TargetId(1), &[true]), Err(RecordError::LengthMismatch { .. })));
        assert_eq!(m.record(TargetId(9), &[]), Err(RecordError::UnknownTarget { id: TargetId(9) }));
        assert_eq!(m.add_target(TargetId(1), &[]), Err(AddTargetError::Duplicate { id: TargetId(1) }));
    }

    /// Every page is accessed in every sample.
    #[derive(Debug)]
    struct AllHot;
    impl AccessProbe for AllHot {
        fn name(&self) -> &'static str {
            "all-hot"
        }
        fn sees(&self) -> Sees {
            Sees::ReadsAndWrites
        }
        fn arm(&mut self, _: &[Addr]) -> Result<(), ProbeError> {
            Ok(())
        }
        fn check(&mut self, _: &[Addr], accessed: &mut [bool]) -> Result<(), ProbeError> {
            accessed.iter_mut().for_each(|a| *a = true);
            Ok(())
        }
    }

    struct Ops {
        probe: AllHot,
        maps: Vec<AddrRange>,
    }
    impl TargetOps for Ops {
        fn probe(&mut self, _: TargetId) -> Option<&mut dyn AccessProbe> {
            Some(&mut self.probe)
        }
        fn mappings(&mut self, _: TargetId) -> Option<Vec<AddrRange>> {
            Some(self.maps.clone())
        }
    }

    #[test]
    fn step_aggregates_every_aggr_interval_and_updates_when_due() {
        let a = MonitorAttrs { update_interval_us: 300_000, ..attrs() };
        let mut m = Monitor::new(a, 5).unwrap();
        let mut ops = Ops { probe: AllHot, maps: vec![AddrRange::new(0, 1000 * P)] };
        m.add_target(TargetId(7), &ops.maps.clone()).unwrap();
        let mut aggregations = Vec::new();
        let mut updates = Vec::new();
        for step in 0..=120 {
            let out = m.step(&mut ops);
            if let Some(snaps) = out.aggregated {
                assert_eq!(snaps.len(), 1);
                let (id, s) = &snaps[0];
                assert_eq!(*id, TargetId(7));
                assert_eq!(s.max_nr_accesses, 20);
                assert!(s.regions.iter().all(|r| r.nr_accesses == 20), "every check hit");
                assert_eq!(s.time_us, m.elapsed_us());
                aggregations.push(step);
            }
            if out.updated {
                updates.push(step);
            }
        }
        // step 0 only arms; sample k finishes in step k.
        assert_eq!(aggregations, vec![20, 40, 60, 80, 100, 120]);
        assert_eq!(updates, vec![60, 120]);
        assert_eq!(m.stats().samples, 120);
        assert_eq!(m.stats().aggregations, 6);
    }

    /// Pages below `hot_end` are accessed at every sample, pages from
    /// `warm_start` one sample in `warm_every`; counts the addresses checked.
    struct Banded {
        hot_end: u64,
        warm_start: u64,
        warm_every: u32,
        calls: u32,
        checked: u64,
    }
    impl AccessProbe for Banded {
        fn name(&self) -> &'static str {
            "banded"
        }
        fn sees(&self) -> Sees {
            Sees::ReadsAndWrites
        }
        fn arm(&mut self, _: &[Addr]) -> Result<(), ProbeError> {
            Ok(())
        }
        fn check(&mut self, addrs: &[Addr], accessed: &mut [bool]) -> Result<(), ProbeError> {
            self.calls += 1;
            self.checked += addrs.len() as u64;
            for (a, hit) in addrs.iter().zip(accessed.iter_mut()) {
                *hit = a.0 < self.hot_end
                    || (a.0 >= self.warm_start && self.calls.is_multiple_of(self.warm_every));
            }
            Ok(())
        }
    }
    impl TargetOps for Banded {
        fn probe(&mut self, _: TargetId) -> Option<&mut dyn AccessProbe> {
            Some(self)
        }
    }

    /// Hot area [0, 300 pages), cold [300, 700), warm [700, 1000) (one sample
    /// in 4); 10 fixed regions (no merge: min_nr_regions keeps them apart).
    fn banded_run(cap: u32) -> (Vec<Snapshot>, Banded, MonitorStats) {
        let a = MonitorAttrs { min_nr_regions: 10, max_nr_regions: 10, max_probed_accesses: cap, ..attrs() };
        let mut m = Monitor::new(a, 11).unwrap();
        m.add_target(TargetId(1), &[AddrRange::new(0, 1000 * P)]).unwrap();
        let mut probe = Banded { hot_end: 300 * P, warm_start: 700 * P, warm_every: 4, calls: 0, checked: 0 };
        let mut snaps = Vec::new();
        for _ in 0..=200 {
            if let Some(mut out) = m.step(&mut probe).aggregated {
                snaps.push(out.remove(0).1);
            }
        }
        (snaps, probe, m.stats())
    }

    #[test]
    fn probed_accesses_cap_stops_checking_hot_regions_and_keeps_cold_ones_exact() {
        let (plain, plain_probe, plain_stats) = banded_run(0);
        let (capped, capped_probe, stats) = banded_run(6);
        assert_eq!(plain_stats.imputed_samples, 0);
        assert_eq!(plain_probe.checked, 200 * 10);
        // Per aggregation: 3 hot regions checked 6 times, 7 others 20 times
        // (warm ones have 5 hits, below the cap).
        assert_eq!(capped_probe.checked, 10 * (3 * 6 + 7 * 20));
        assert_eq!(stats.imputed_samples, 10 * 3 * 14);
        // The last sample is prepared (all 10 regions: a new aggregation) but not checked.
        assert_eq!(stats.sampled_addrs, capped_probe.checked + 10);
        for (p, c) in plain.iter().zip(&capped) {
            let counts = |s: &Snapshot| s.regions.iter().map(|r| r.nr_accesses).collect::<Vec<_>>();
            let (p, c) = (counts(p), counts(c));
            // Hot regions: 6 of 6 checks hit, the rest filled in as hits.
            assert_eq!(&c[..3], &[20, 20, 20]);
            assert_eq!(&p[..3], &[20, 20, 20]);
            // Cold regions are checked at every sample: exactly 0 either way.
            assert_eq!(&c[3..7], &[0, 0, 0, 0]);
            assert_eq!(&p[3..7], &[0, 0, 0, 0]);
            // Warm regions (5 hits of 20) are never capped: checked as DAMON does.
            assert_eq!(&c[7..], &p[7..]);
            assert!(c[7..].iter().all(|&n| n == 5), "{c:?}");
        }
    }

    #[test]
    fn capped_regions_are_filled_in_at_the_rate_seen() {
        // Cap 2: warm regions (one hit in 4) reach it after 8 checks; their
        // 12 other samples are drawn at 2/8, so the count stays about 5.
        let (capped, probe, _) = banded_run(2);
        assert_eq!(probe.checked, 10 * (3 * 2 + 4 * 20 + 3 * 8));
        let warm: Vec<u32> =
            capped.iter().flat_map(|s| s.regions[7..].iter().map(|r| r.nr_accesses)).collect();
        let mean = f64::from(warm.iter().sum::<u32>()) / warm.len() as f64;
        assert!((4.0..=6.0).contains(&mean), "mean {mean} of {warm:?}");
        assert!(warm.iter().all(|&n| (2..=14).contains(&n)), "{warm:?}");
        // The filled-in part moves by more than the merge threshold (2) from
        // one interval to the next, yet the regions keep ageing: at or above
        // the cap, counts compare equal (first snapshot: 0 -> 5 resets).
        let last = capped.last().unwrap();
        let want = u32::try_from(capped.len() - 1).unwrap();
        assert!(last.regions[7..].iter().all(|r| r.age == want), "{:?}", last.regions);
        assert!(capped.iter().all(|s| s.regions[3..7].iter().all(|r| r.nr_accesses == 0)));
    }

    #[test]
    fn update_follows_mapping_changes() {
        let mut m = Monitor::new(attrs(), 5).unwrap();
        m.add_target(TargetId(1), &[AddrRange::new(0, 100 * P)]).unwrap();
        // The mapping grows and a far one appears (one gap: two ranges).
        m.update_target(TargetId(1), &[AddrRange::new(0, 150 * P), AddrRange::new(1000 * P, 1010 * P)])
            .unwrap();
        let regs = m.regions(TargetId(1)).unwrap();
        assert_eq!(regs.first().unwrap().range.start.0, 0);
        assert_eq!(regs.last().unwrap().range, AddrRange::new(1000 * P, 1010 * P));
        let covered: u64 = regs.iter().map(Region::len).sum();
        assert_eq!(covered, 160 * P);
        assert!(m.update_target(TargetId(2), &[]).is_err());
    }

    #[test]
    fn autotune_lengthens_intervals_when_nothing_is_accessed() {
        let a = MonitorAttrs {
            intervals_goal: Some(IntervalsGoal {
                access_bp: 400,
                aggrs: 1,
                min_sample_us: 1_000,
                max_sample_us: 100_000,
            }),
            ..attrs()
        };
        let mut m = Monitor::new(a, 5).unwrap();
        m.add_target(TargetId(1), &[AddrRange::new(0, 1000 * P)]).unwrap();
        let mut tuned = Vec::new();
        for _ in 0..200 {
            m.prepare_sample();
            let n = m.sampling_addrs(TargetId(1)).unwrap().len();
            m.record(TargetId(1), &vec![false; n]).unwrap();
            if let Some(s) = m.finish_sample().tuned_sample_interval_us {
                tuned.push(s);
            }
        }
        assert_eq!(tuned[0], 10_000, "no access: the sample interval doubles");
        assert_eq!(*tuned.last().unwrap(), 100_000, "and stops at the maximum");
        assert_eq!(m.attrs().aggr_interval_us, 100_000 * 20, "the aggr/sample ratio is kept");
    }

    #[test]
    fn autotune_shortens_intervals_when_everything_is_accessed() {
        let a = MonitorAttrs {
            sample_interval_us: 40_000,
            aggr_interval_us: 800_000,
            intervals_goal: Some(IntervalsGoal {
                access_bp: 400,
                aggrs: 1,
                min_sample_us: 5_000,
                max_sample_us: 100_000,
            }),
            ..attrs()
        };
        let mut m = Monitor::new(a, 5).unwrap();
        let mut ops = Ops { probe: AllHot, maps: vec![AddrRange::new(0, 1000 * P)] };
        m.add_target(TargetId(1), &ops.maps.clone()).unwrap();
        let mut tuned = Vec::new();
        for _ in 0..200 {
            if let Some(s) = m.step(&mut ops).tuned_sample_interval_us {
                tuned.push(s);
            }
        }
        assert_eq!(tuned[0], 20_000, "everything accessed: halve the interval");
        assert_eq!(*tuned.last().unwrap(), 5_000, "down to the minimum");
    }

    fn set_counts(m: &mut Monitor, counts: &[u32]) {
        let t = &mut m.targets[0];
        t.regions = counts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let i = i as u64;
                let mut r = Region::new(AddrRange::new(i * 100 * P, (i + 1) * 100 * P));
                r.nr_accesses = n;
                r.last_nr_accesses = n;
                r.nr_accesses_bp = n * 10_000;
                r
            })
            .collect();
    }

    #[test]
    fn merge_retries_with_doubled_threshold_above_max_nr_regions() {
        let a = MonitorAttrs { min_nr_regions: 3, max_nr_regions: 4, ..attrs() };
        let mut m = Monitor::new(a, 1).unwrap();
        m.add_target(TargetId(1), &[AddrRange::new(0, 800 * P)]).unwrap();
        m.sz_limit = u64::MAX;
        // Neighbours differ by 2-3: thresholds 0, 1 and 2 leave more than 4
        // regions, 4 merges pairs ([0,3] → 1, [6,9] → 7, ...; the averaged
        // count then differs from the next by 5): the retries go 0 → 1 → 2 → 4.
        set_counts(&mut m, &[0, 3, 6, 9, 12, 15, 18, 20]);
        m.merge_regions(0);
        let counts: Vec<u32> = m.targets[0].regions.iter().map(|r| r.nr_accesses).collect();
        assert_eq!(counts, vec![1, 7, 13, 19]);
        // Each retry runs the age update again (kernel quirk, kept): the
        // regions went through four passes.
        assert_eq!(m.targets[0].regions[0].age, 4);
        // Below max_nr_regions, no retry: threshold 0 merges only equal counts.
        set_counts(&mut m, &[0, 0, 6, 9]);
        m.merge_regions(0);
        assert_eq!(m.nr_regions(), 3);
        // The retry stops once threshold / 2 reaches aggr / sample (20).
        set_counts(&mut m, &[0, 20, 0, 20, 0, 20]);
        m.sz_limit = 100 * P; // nothing can merge
        m.merge_regions(0);
        assert_eq!(m.nr_regions(), 6);
    }

    #[test]
    fn split_in_three_only_when_count_is_stable_and_below_a_third_of_max() {
        let a = MonitorAttrs { min_nr_regions: 3, max_nr_regions: 30, ..attrs() };
        let mut m = Monitor::new(a, 1).unwrap();
        m.add_target(TargetId(1), &[AddrRange::new(0, 800 * P)]).unwrap();
        // 100-page regions: every cut lands, so the piece count is exact.
        set_counts(&mut m, &[1; 8]);
        m.last_nr_regions = 0;
        m.split_regions();
        assert_eq!(m.nr_regions(), 16, "count changed since the last split: 2 pieces");
        set_counts(&mut m, &[1; 8]);
        m.split_regions();
        assert_eq!(m.nr_regions(), 24, "same count as last time and 8 < 30/3: 3 pieces");
        set_counts(&mut m, &[1; 8]);
        m.attrs.max_nr_regions = 24; // 8 is not below 24/3
        m.split_regions();
        assert_eq!(m.nr_regions(), 16);
        set_counts(&mut m, &[1; 8]);
        m.attrs.max_nr_regions = 15; // 8 > 15/2: no split at all
        m.split_regions();
        assert_eq!(m.nr_regions(), 8);
    }

    #[test]
    fn aggregation_snapshot_is_taken_after_merge_and_before_reset() {
        let mut m = Monitor::new(attrs(), 5).unwrap();
        let mut ops = Ops { probe: AllHot, maps: vec![AddrRange::new(0, 1000 * P)] };
        m.add_target(TargetId(1), &ops.maps.clone()).unwrap();
        let mut snaps = Vec::new();
        for _ in 0..=60 {
            if let Some(s) = m.step(&mut ops).aggregated {
                snaps.push(s[0].1.clone());
            }
        }
        // Uniform accesses: merged up to the size limit (100 pages) at once.
        assert!(snaps[0].regions.iter().all(|r| r.range.len() <= 100 * P));
        assert!(snaps[0].regions.len() <= 11);
        // Age grows by one per aggregation for unchanged counts (first window:
        // 0 → 20 resets it; later windows 20 → 20 keep it).
        assert!(snaps[0].regions.iter().all(|r| r.age == 0));
        assert!(snaps[2].regions.iter().all(|r| r.age >= 1));
        // After the reset, bp == last * 10000 (damon_verify_reset_aggregated).
        for r in m.regions(TargetId(1)).unwrap() {
            assert_eq!(r.nr_accesses_bp, r.last_nr_accesses * 10_000);
        }
    }

    #[test]
    fn monitor_can_move_to_a_driver_thread() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<Monitor>();
        assert_send::<StepOutcome>();
    }

    /// A probe whose target is gone.
    #[derive(Debug)]
    struct Gone;
    impl AccessProbe for Gone {
        fn name(&self) -> &'static str {
            "gone"
        }
        fn sees(&self) -> Sees {
            Sees::ReadsAndWrites
        }
        fn arm(&mut self, _: &[Addr]) -> Result<(), ProbeError> {
            Err(ProbeError::TargetGone { pid: 42 })
        }
        fn check(&mut self, _: &[Addr], accessed: &mut [bool]) -> Result<(), ProbeError> {
            accessed.iter_mut().for_each(|a| *a = true); // must be ignored
            Err(ProbeError::TargetGone { pid: 42 })
        }
    }

    struct TwoTargets {
        hot: AllHot,
        gone: Gone,
    }
    impl TargetOps for TwoTargets {
        fn probe(&mut self, target: TargetId) -> Option<&mut dyn AccessProbe> {
            match target.0 {
                1 => Some(&mut self.hot),
                2 => Some(&mut self.gone),
                _ => None,
            }
        }
    }

    #[test]
    fn failing_and_missing_probes_count_as_not_accessed_and_are_reported() {
        let mut m = Monitor::new(attrs(), 9).unwrap();
        let mut ops = TwoTargets { hot: AllHot, gone: Gone };
        m.add_target(TargetId(1), &[AddrRange::new(0, 100 * P)]).unwrap();
        m.add_target(TargetId(2), &[AddrRange::new(1000 * P, 1100 * P)]).unwrap();
        m.add_target(TargetId(3), &[AddrRange::new(5000 * P, 5100 * P)]).unwrap();
        let first = m.step(&mut ops);
        assert_eq!(first.probe_failures.len(), 1, "arm failed for target 2");
        let mut snaps = None;
        for _ in 0..20 {
            let out = m.step(&mut ops);
            assert!(
                out.probe_failures
                    .iter()
                    .all(|(id, e)| *id == TargetId(2) && matches!(e, ProbeError::TargetGone { pid: 42 }))
            );
            snaps = snaps.or(out.aggregated);
        }
        let snaps = snaps.unwrap();
        assert_eq!(snaps.len(), 3, "one snapshot per target");
        let count = |i: usize| snaps[i].1.regions.iter().map(|r| r.nr_accesses).max().unwrap();
        assert_eq!(count(0), 20);
        assert_eq!(count(1), 0, "a failed check is 'not accessed'");
        assert_eq!(count(2), 0, "no probe: 'not accessed'");
        // Removing the gone target leaves the others running.
        m.remove_target(TargetId(2)).unwrap();
        assert_eq!(m.target_ids().collect::<Vec<_>>(), vec![TargetId(1), TargetId(3)]);
        assert!(m.remove_target(TargetId(2)).is_err());
        for _ in 0..20 {
            assert!(m.step(&mut ops).probe_failures.is_empty());
        }
    }

    #[test]
    fn size_limit_spans_all_targets() {
        let mut m = Monitor::new(attrs(), 9).unwrap();
        m.add_target(TargetId(1), &[AddrRange::new(0, 100 * P)]).unwrap();
        assert_eq!(m.region_sz_limit(), 10 * P);
        m.add_target(TargetId(2), &[AddrRange::new(1000 * P, 1900 * P)]).unwrap();
        assert_eq!(m.region_sz_limit(), 100 * P, "(100 + 900) pages / 10");
        m.remove_target(TargetId(1)).unwrap();
        assert_eq!(m.region_sz_limit(), 90 * P);
    }

    #[test]
    fn set_attrs_rescales_counts_and_ages() {
        let mut m = Monitor::new(attrs(), 5).unwrap();
        let mut ops = Ops { probe: AllHot, maps: vec![AddrRange::new(0, 100 * P)] };
        m.add_target(TargetId(1), &ops.maps.clone()).unwrap();
        for _ in 0..=45 {
            m.step(&mut ops);
        }
        let before: Vec<(u32, u32)> =
            m.regions(TargetId(1)).unwrap().iter().map(|r| (r.last_nr_accesses, r.age)).collect();
        assert!(before.iter().all(|&(last, _)| last == 20));
        let err =
            m.set_attrs(MonitorAttrs { min_region_sz: 2 * P, min_nr_regions: 1, ..attrs() }).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        m.set_attrs(MonitorAttrs { aggr_interval_us: 200_000, ..attrs() }).unwrap();
        for (r, (_, age)) in m.regions(TargetId(1)).unwrap().iter().zip(before) {
            assert_eq!(r.last_nr_accesses, 40, "100 % of the new maximum");
            assert_eq!(r.nr_accesses_bp, 400_000);
            assert_eq!(r.nr_accesses, 0);
            assert_eq!(r.age, age / 2);
        }
    }
}
