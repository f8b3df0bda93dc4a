//! A simulated address space with exact ground truth, for tests and benchmarks:
//! mappings, phases and access patterns described per range, so 16 GiB costs
//! nothing until an address is sampled; plus [`SimProbe`] and ready scenarios.
//!
//! Time runs in ticks of [`SimSpace::tick_us`]. During every tick `t >= 1` each
//! mapped page is accessed with its pattern's probability, decided by a hash
//! of (seed, page, tick): no per-page state, same answer every time asked.
//! A page armed at time `a` and checked at time `c` reports whether any tick
//! in `(a, c]` accessed it. The module does no I/O; it lives in `ops/` because
//! it is an address-space operation set (the kernel's `ops` layer).

use crate::monitor::{Monitor, MonitorAttrs, MonitorAttrsError, TargetId, TargetOps};
use crate::probe::{AccessProbe, ProbeError, Sees};
use crate::{Addr, AddrRange, PAGE_SIZE, Snapshot};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// A point in simulated time, in ticks since the start.
pub type Tick = u64;

/// How the pages of a range are accessed during a phase. A page's access
/// probability per tick is the highest of every pattern covering it and the
/// phase's background; unmapped pages are never accessed.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// Every page of `range`.
    Uniform { range: AddrRange, prob: f64 },
    /// One page in every `every_pages` pages of `range`, starting with page
    /// `offset_pages`: hot pages sprinkled in a cold area.
    SparsePages { range: AddrRange, every_pages: u64, offset_pages: u64, prob: f64 },
    /// `count` islands of `island_bytes`, spaced evenly over `range` (the
    /// spacing is range length / count, page aligned), the first at the start.
    Islands { range: AddrRange, count: u64, island_bytes: u64, prob: f64 },
    /// A window of `window_bytes` inside `range`, starting at `start_offset`
    /// and moving by `step_bytes` every `step_ticks` ticks of the phase,
    /// wrapping around the end of the range.
    MovingWindow {
        range: AddrRange,
        window_bytes: u64,
        start_offset: u64,
        step_bytes: u64,
        step_ticks: u64,
        prob: f64,
    },
}

impl Pattern {
    fn range(&self) -> AddrRange {
        match *self {
            Pattern::Uniform { range, .. }
            | Pattern::SparsePages { range, .. }
            | Pattern::Islands { range, .. }
            | Pattern::MovingWindow { range, .. } => range,
        }
    }

    fn prob(&self) -> f64 {
        match *self {
            Pattern::Uniform { prob, .. }
            | Pattern::SparsePages { prob, .. }
            | Pattern::Islands { prob, .. }
            | Pattern::MovingWindow { prob, .. } => prob,
        }
    }

    fn is_moving(&self) -> bool {
        matches!(self, Pattern::MovingWindow { .. })
    }

    fn island_spacing(range: &AddrRange, count: u64) -> u64 {
        (range.len() / count.max(1)) / PAGE_SIZE * PAGE_SIZE
    }

    /// The moving window as one or two ranges at `t` ticks into the phase.
    fn window_at(&self, t: Tick) -> Vec<AddrRange> {
        let Pattern::MovingWindow { range, window_bytes, start_offset, step_bytes, step_ticks, .. } = *self
        else {
            return vec![self.range()];
        };
        let len = range.len();
        if len == 0 {
            return Vec::new();
        }
        let win = window_bytes.min(len);
        let moved = (t / step_ticks.max(1)).wrapping_mul(step_bytes);
        let off = (start_offset.wrapping_add(moved) % len) / PAGE_SIZE * PAGE_SIZE;
        let start = range.start.0 + off;
        if off + win <= len {
            vec![AddrRange::new(start, start + win)]
        } else {
            vec![
                AddrRange::new(start, range.end.0),
                AddrRange::new(range.start.0, range.start.0 + off + win - len),
            ]
        }
    }

    /// Whether the page at `addr` is covered, `t` ticks into the phase.
    fn covers(&self, addr: Addr, t: Tick) -> bool {
        let range = self.range();
        if !range.contains(addr) {
            return false;
        }
        let off = addr.0 - range.start.0;
        match *self {
            Pattern::Uniform { .. } => true,
            Pattern::SparsePages { every_pages, offset_pages, .. } => {
                (off / PAGE_SIZE) % every_pages.max(1) == offset_pages % every_pages.max(1)
            }
            Pattern::Islands { count, island_bytes, .. } => {
                let spacing = Pattern::island_spacing(&range, count);
                if spacing == 0 {
                    return false;
                }
                let idx = off / spacing;
                idx < count && off - idx * spacing < island_bytes
            }
            Pattern::MovingWindow { .. } => self.window_at(t).iter().any(|w| w.contains(addr)),
        }
    }

    /// Every covered range, `t` ticks into the phase, sorted.
    fn covered_ranges(&self, t: Tick) -> Vec<AddrRange> {
        let range = self.range();
        match *self {
            Pattern::Uniform { .. } => vec![range],
            Pattern::SparsePages { every_pages, offset_pages, .. } => {
                let every = every_pages.max(1);
                let mut out = Vec::new();
                let mut page = offset_pages % every;
                let pages = range.len() / PAGE_SIZE;
                while page < pages {
                    let s = range.start.0 + page * PAGE_SIZE;
                    out.push(AddrRange::new(s, s + PAGE_SIZE));
                    page += every;
                }
                out
            }
            Pattern::Islands { count, island_bytes, .. } => {
                let spacing = Pattern::island_spacing(&range, count);
                if spacing == 0 {
                    return Vec::new();
                }
                (0..count)
                    .map(|i| {
                        let s = range.start.0 + i * spacing;
                        AddrRange::new(s, (s + island_bytes.min(spacing)).min(range.end.0))
                    })
                    .collect()
            }
            Pattern::MovingWindow { .. } => {
                let mut w = self.window_at(t);
                w.sort();
                w
            }
        }
    }
}

/// A stretch of simulated time with one set of access patterns.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    /// Length in ticks; the last phase lasts forever.
    pub duration_ticks: Tick,
    /// Access probability per tick of every mapped page no pattern covers.
    pub background_prob: f64,
    pub patterns: Vec<Pattern>,
    /// New mappings from this phase on (`None`: unchanged).
    pub mappings: Option<Vec<AddrRange>>,
}

impl Phase {
    /// A phase with no mapping change and no background accesses.
    pub fn new(name: &str, duration_ticks: Tick, patterns: Vec<Pattern>) -> Phase {
        Phase { name: name.to_string(), duration_ticks, background_prob: 0.0, patterns, mappings: None }
    }
}

/// The simulated address space: immutable, shared by probes and evaluators.
#[derive(Debug, Clone)]
pub struct SimSpace {
    seed: u64,
    tick_us: u64,
    /// Sorted, disjoint.
    mappings: Vec<AddrRange>,
    phases: Vec<Phase>,
    /// First tick of each phase (ticks are 1-based: phase 0 starts at 1).
    phase_starts: Vec<Tick>,
    /// Per phase, the mappings in force.
    phase_mappings: Vec<usize>,
    mapping_sets: Vec<Vec<AddrRange>>,
}

/// Why a simulated space could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimSpaceError {
    #[error("a simulated space needs at least one phase")]
    NoPhases,
    #[error("tick_us must be > 0")]
    ZeroTick,
    #[error("phase {phase}: probability {prob} is outside [0, 1]")]
    BadProbability { phase: String, prob: f64 },
}

fn sorted_mappings(m: &[AddrRange]) -> Vec<AddrRange> {
    crate::regions::normalize_ranges(m, PAGE_SIZE)
}

impl SimSpace {
    /// A space with `mappings` at the start and `phases` run in order.
    pub fn new(
        seed: u64,
        tick_us: u64,
        mappings: &[AddrRange],
        phases: Vec<Phase>,
    ) -> Result<SimSpace, SimSpaceError> {
        if phases.is_empty() {
            return Err(SimSpaceError::NoPhases);
        }
        if tick_us == 0 {
            return Err(SimSpaceError::ZeroTick);
        }
        for ph in &phases {
            for prob in ph.patterns.iter().map(Pattern::prob).chain([ph.background_prob]) {
                if !(0.0..=1.0).contains(&prob) {
                    return Err(SimSpaceError::BadProbability { phase: ph.name.clone(), prob });
                }
            }
        }
        let mut mapping_sets = vec![sorted_mappings(mappings)];
        let mut phase_mappings = Vec::with_capacity(phases.len());
        let mut phase_starts = Vec::with_capacity(phases.len());
        let mut start: Tick = 1;
        for ph in &phases {
            if let Some(m) = &ph.mappings {
                mapping_sets.push(sorted_mappings(m));
            }
            phase_mappings.push(mapping_sets.len() - 1);
            phase_starts.push(start);
            start = start.saturating_add(ph.duration_ticks);
        }
        Ok(SimSpace {
            seed,
            tick_us,
            mappings: mapping_sets[0].clone(),
            phases,
            phase_starts,
            phase_mappings,
            mapping_sets,
        })
    }

    /// Simulated time per tick.
    pub fn tick_us(&self) -> u64 {
        self.tick_us
    }

    /// The phases, in order.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    /// First tick of every phase.
    pub fn phase_starts(&self) -> &[Tick] {
        &self.phase_starts
    }

    /// Index of the phase running at `tick` (tick 0, before anything, counts
    /// as the first phase).
    pub fn phase_index(&self, tick: Tick) -> usize {
        self.phase_starts.partition_point(|&s| s <= tick).saturating_sub(1)
    }

    /// The mappings in force at `tick`.
    pub fn mappings_at(&self, tick: Tick) -> &[AddrRange] {
        &self.mapping_sets[self.phase_mappings[self.phase_index(tick)]]
    }

    /// The mappings at the start.
    pub fn initial_mappings(&self) -> &[AddrRange] {
        &self.mappings
    }

    fn mapped_in(maps: &[AddrRange], addr: Addr) -> bool {
        let i = maps.partition_point(|m| m.end <= addr);
        maps.get(i).is_some_and(|m| m.contains(addr))
    }

    /// Access probability per tick of the page holding `addr` at `tick`.
    pub fn access_prob(&self, addr: Addr, tick: Tick) -> f64 {
        let idx = self.phase_index(tick);
        self.prob_in_phase(idx, addr.align_down(PAGE_SIZE), tick.saturating_sub(self.phase_starts[idx]))
    }

    fn prob_in_phase(&self, idx: usize, page: Addr, t_in_phase: Tick) -> f64 {
        if !SimSpace::mapped_in(&self.mapping_sets[self.phase_mappings[idx]], page) {
            return 0.0;
        }
        let ph = &self.phases[idx];
        ph.patterns
            .iter()
            .filter(|p| p.covers(page, t_in_phase))
            .map(Pattern::prob)
            .fold(ph.background_prob, f64::max)
    }

    /// A uniform number in [0, 1) fixed by (seed, page, tick).
    fn draw(&self, page: u64, tick: Tick) -> f64 {
        let h = mix64(mix64(self.seed ^ page.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ tick);
        (h >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Ground truth: was the page holding `addr` accessed during tick `tick`?
    pub fn accessed(&self, addr: Addr, tick: Tick) -> bool {
        if tick == 0 {
            return false;
        }
        let p = self.access_prob(addr, tick);
        p > 0.0 && self.draw(addr.0 / PAGE_SIZE, tick) < p
    }

    /// Was the page holding `addr` accessed during any tick in `(from, to]`?
    /// Cost: constant per phase crossed where the page is idle or always
    /// accessed, one draw per tick otherwise.
    pub fn accessed_between(&self, addr: Addr, from: Tick, to: Tick) -> bool {
        let page = addr.align_down(PAGE_SIZE);
        let mut t = from + 1;
        while t <= to {
            let idx = self.phase_index(t);
            let start = self.phase_starts[idx];
            let seg_end = self.phase_starts.get(idx + 1).map_or(to, |&next| next.saturating_sub(1).min(to));
            let moving = self.phases[idx].patterns.iter().any(Pattern::is_moving);
            if moving {
                for tick in t..=seg_end {
                    let p = self.prob_in_phase(idx, page, tick - start);
                    if p > 0.0 && self.draw(page.0 / PAGE_SIZE, tick) < p {
                        return true;
                    }
                }
            } else {
                let p = self.prob_in_phase(idx, page, 0);
                if p >= 1.0 {
                    return true;
                }
                if p > 0.0 && (t..=seg_end).any(|tick| self.draw(page.0 / PAGE_SIZE, tick) < p) {
                    return true;
                }
            }
            t = seg_end + 1;
        }
        false
    }

    /// Ground truth for small ranges: the pages of `range` accessed at `tick`.
    pub fn accessed_pages(&self, range: AddrRange, tick: Tick) -> Vec<Addr> {
        let first = range.start.align_down(PAGE_SIZE).0;
        (first..range.end.0)
            .step_by(PAGE_SIZE as usize)
            .map(Addr)
            .filter(|&a| self.accessed(a, tick))
            .collect()
    }

    /// Ground truth hot set at `tick`: the mapped pages whose access
    /// probability per tick is at least `min_prob`, as sorted disjoint ranges.
    pub fn hot_set(&self, tick: Tick, min_prob: f64) -> Vec<AddrRange> {
        let idx = self.phase_index(tick);
        let t_in = tick.saturating_sub(self.phase_starts[idx]);
        let ph = &self.phases[idx];
        let maps = &self.mapping_sets[self.phase_mappings[idx]];
        if ph.background_prob >= min_prob {
            return maps.clone();
        }
        let mut covered: Vec<AddrRange> = ph
            .patterns
            .iter()
            .filter(|p| p.prob() >= min_prob && p.prob() > 0.0)
            .flat_map(|p| p.covered_ranges(t_in))
            .collect();
        covered.sort();
        let merged = crate::regions::normalize_ranges(&covered, PAGE_SIZE);
        intersect_sorted(&merged, maps)
    }

    /// Bytes mapped at `tick`.
    pub fn mapped_bytes(&self, tick: Tick) -> u64 {
        self.mappings_at(tick).iter().map(AddrRange::len).sum()
    }
}

/// splitmix64's finalizer.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Intersection of two sorted lists of disjoint ranges.
pub fn intersect_sorted(a: &[AddrRange], b: &[AddrRange]) -> Vec<AddrRange> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        if let Some(x) = a[i].intersect(&b[j]) {
            out.push(x);
        }
        if a[i].end <= b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Bytes two sorted lists of disjoint ranges have in common.
pub fn overlap_bytes(a: &[AddrRange], b: &[AddrRange]) -> u64 {
    intersect_sorted(a, b).iter().map(AddrRange::len).sum()
}

/// A cheap hasher for page numbers (the arm table is hit once per check).
#[derive(Debug, Default)]
struct PageHasher(u64);

impl Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix64(self.0 ^ u64::from(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        let h = v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

/// Counters of a [`SimProbe`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SimProbeStats {
    pub armed: u64,
    pub checked: u64,
    pub found_accessed: u64,
}

/// An [`AccessProbe`] over a [`SimSpace`], with its own clock.
///
/// `arm` records the current tick for each page; `check` reports whether the
/// page was accessed in any tick since and consumes the arm. Checking a page
/// that is not armed looks back to the last `arm` call.
#[derive(Debug, Clone)]
pub struct SimProbe {
    space: Arc<SimSpace>,
    now: Tick,
    armed: HashMap<u64, Tick, BuildHasherDefault<PageHasher>>,
    last_arm: Tick,
    stats: SimProbeStats,
}

impl SimProbe {
    /// A probe at tick 0.
    pub fn new(space: Arc<SimSpace>) -> SimProbe {
        SimProbe { space, now: 0, armed: HashMap::default(), last_arm: 0, stats: SimProbeStats::default() }
    }

    /// Let `ticks` ticks of simulated time pass.
    pub fn advance(&mut self, ticks: Tick) {
        self.now += ticks;
    }

    /// The current tick.
    pub fn now(&self) -> Tick {
        self.now
    }

    /// The space probed.
    pub fn space(&self) -> &Arc<SimSpace> {
        &self.space
    }

    /// Counters.
    pub fn stats(&self) -> SimProbeStats {
        self.stats
    }
}

impl AccessProbe for SimProbe {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn sees(&self) -> Sees {
        Sees::ReadsAndWrites
    }

    fn arm(&mut self, addrs: &[Addr]) -> Result<(), ProbeError> {
        for a in addrs {
            self.armed.insert(a.0 / PAGE_SIZE, self.now);
        }
        self.last_arm = self.now;
        self.stats.armed += addrs.len() as u64;
        Ok(())
    }

    fn check(&mut self, addrs: &[Addr], accessed: &mut [bool]) -> Result<(), ProbeError> {
        for (a, out) in addrs.iter().zip(accessed.iter_mut()) {
            let since = self.armed.remove(&(a.0 / PAGE_SIZE)).unwrap_or(self.last_arm);
            *out = self.space.accessed_between(*a, since, self.now);
            self.stats.found_accessed += u64::from(*out);
        }
        self.stats.checked += addrs.len() as u64;
        Ok(())
    }
}

/// One simulated target drives a monitor: its probe, and its mappings as they
/// are at the probe's current tick.
impl TargetOps for SimProbe {
    fn probe(&mut self, _target: TargetId) -> Option<&mut dyn AccessProbe> {
        Some(self)
    }

    fn mappings(&mut self, _target: TargetId) -> Option<Vec<AddrRange>> {
        Some(self.space.mappings_at(self.now).to_vec())
    }
}

/// Several simulated targets for one monitor, each with its own space and
/// clock: a [`TargetOps`] for multi-target runs.
#[derive(Debug, Default)]
pub struct SimTargets {
    targets: Vec<(TargetId, SimProbe)>,
}

impl SimTargets {
    pub fn new() -> SimTargets {
        SimTargets::default()
    }

    /// Add (or replace) the probe of a target.
    pub fn add(&mut self, id: TargetId, probe: SimProbe) {
        self.targets.retain(|(t, _)| *t != id);
        self.targets.push((id, probe));
    }

    /// Drop a target's probe: the monitor then counts its checks as "not
    /// accessed", as for a vanished process.
    pub fn remove(&mut self, id: TargetId) -> Option<SimProbe> {
        let i = self.targets.iter().position(|(t, _)| *t == id)?;
        Some(self.targets.remove(i).1)
    }

    /// Let `ticks` ticks pass in every target.
    pub fn advance(&mut self, ticks: Tick) {
        self.targets.iter_mut().for_each(|(_, p)| p.advance(ticks));
    }

    /// The probe of a target.
    pub fn get(&self, id: TargetId) -> Option<&SimProbe> {
        self.targets.iter().find(|(t, _)| *t == id).map(|(_, p)| p)
    }
}

impl TargetOps for SimTargets {
    fn probe(&mut self, target: TargetId) -> Option<&mut dyn AccessProbe> {
        self.targets.iter_mut().find(|(t, _)| *t == target).map(|(_, p)| p as &mut dyn AccessProbe)
    }

    fn mappings(&mut self, target: TargetId) -> Option<Vec<AddrRange>> {
        let p = self.get(target)?;
        Some(p.space.mappings_at(p.now).to_vec())
    }
}

// ---------------------------------------------------------------------------
// Scenarios

/// Where things sit in a simulated process (x86-64-like layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessLayout {
    /// The executable's image.
    pub exe: AddrRange,
    /// The brk heap, a small gap after the executable.
    pub heap: AddrRange,
    /// The workload's data: one big anonymous mapping in the mmap area.
    pub data: AddrRange,
    /// Shared libraries just above the data, with small gaps between.
    pub libs: [AddrRange; 3],
    /// The main thread's stack, far above.
    pub stack: AddrRange,
}

const MIB: u64 = 1 << 20;

impl ProcessLayout {
    /// A process whose data mapping is `data_bytes` (rounded up to pages).
    pub fn new(data_bytes: u64) -> ProcessLayout {
        let data_bytes = data_bytes.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let exe = AddrRange::new(0x5555_5555_4000, 0x5555_5555_4000 + 2 * MIB);
        let heap = AddrRange::new(0x5555_5600_0000, 0x5555_5600_0000 + 8 * MIB);
        let data_start = 0x7f00_0000_0000;
        let data = AddrRange::new(data_start, data_start + data_bytes);
        let lib = |i: u64| {
            let s = data.end.0 + 64 * 1024 + i * 3 * MIB;
            AddrRange::new(s, s + 2 * MIB)
        };
        let stack = AddrRange::new(0x7ffd_0000_0000 - 132 * 1024, 0x7ffd_0000_0000);
        ProcessLayout { exe, heap, data, libs: [lib(0), lib(1), lib(2)], stack }
    }

    /// Every mapping, sorted.
    pub fn mappings(&self) -> Vec<AddrRange> {
        let mut v = vec![self.exe, self.heap, self.data];
        v.extend(self.libs);
        v.push(self.stack);
        v
    }

    /// `[start, end)` of the data mapping given as fractions of its size,
    /// page aligned.
    pub fn data_part(&self, from: f64, to: f64) -> AddrRange {
        let at = |f: f64| {
            let off = (self.data.len() as f64 * f) as u64 / PAGE_SIZE * PAGE_SIZE;
            self.data.start.0 + off.min(self.data.len())
        };
        AddrRange::new(at(from), at(to))
    }

    /// The hot top of the stack and the hot start of the heap: every process
    /// has some, and the monitor must find them in their own ranges.
    fn process_patterns(&self, hot: f64) -> Vec<Pattern> {
        vec![
            Pattern::Uniform { range: AddrRange::new(self.heap.start.0, self.heap.start.0 + MIB), prob: hot },
            Pattern::Uniform {
                range: AddrRange::new(self.stack.end.0 - 16 * 1024, self.stack.end.0),
                prob: hot,
            },
        ]
    }
}

/// A workload with known hot set and how to judge a monitor on it.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub space: Arc<SimSpace>,
    pub layout: ProcessLayout,
    /// Pages at least this likely to be accessed per tick form the hot set.
    pub hot_min_prob: f64,
    /// A region is classified hot when its `nr_accesses` is at least this
    /// share of `max_nr_accesses` (midway between hot and cold pages'
    /// expected counts).
    pub hot_nr_frac: f64,
    /// Snapshots whose interval starts before this tick are not judged.
    pub warmup_ticks: Tick,
    /// Snapshots this close after a phase change are not judged.
    pub settle_ticks: Tick,
    /// Ticks to run.
    pub total_ticks: Tick,
}

/// Per-tick access probability of hot pages in the scenarios.
pub const HOT_PROB: f64 = 0.8;
/// Per-tick access probability of cold data pages (rare touches).
pub const COLD_PROB: f64 = 0.001;
/// One tick = the default sample interval.
pub const SCENARIO_TICK_US: u64 = 5_000;

impl Scenario {
    fn build(
        name: &str,
        seed: u64,
        layout: ProcessLayout,
        phases: Vec<Phase>,
        total_ticks: Tick,
    ) -> Scenario {
        let space = SimSpace::new(seed, SCENARIO_TICK_US, &layout.mappings(), phases)
            .expect("scenario phases are non-empty with valid probabilities");
        Scenario {
            name: name.to_string(),
            space: Arc::new(space),
            layout,
            hot_min_prob: HOT_PROB / 2.0,
            hot_nr_frac: (HOT_PROB + COLD_PROB) / 2.0,
            warmup_ticks: 60 * 20,
            settle_ticks: 20 * 20,
            total_ticks,
        }
    }

    fn data_patterns(layout: &ProcessLayout, mut hot: Vec<Pattern>) -> Vec<Pattern> {
        let mut v = layout.process_patterns(HOT_PROB);
        v.push(Pattern::Uniform { range: layout.data, prob: COLD_PROB });
        v.append(&mut hot);
        v
    }

    /// 10 % of the data hot (one block at 40-50 %), the rest cold, forever.
    pub fn static_hot_cold(data_bytes: u64, seed: u64) -> Scenario {
        let l = ProcessLayout::new(data_bytes);
        let hot = vec![Pattern::Uniform { range: l.data_part(0.4, 0.5), prob: HOT_PROB }];
        let phases = vec![Phase::new("steady", u64::MAX, Scenario::data_patterns(&l, hot))];
        Scenario::build("static hot/cold", seed, l, phases, 240 * 20)
    }

    /// A hot window of 10 % of the data sliding through it by 0.1 % of the
    /// data every aggregation interval (20 ticks).
    pub fn moving_hot_spot(data_bytes: u64, seed: u64) -> Scenario {
        let l = ProcessLayout::new(data_bytes);
        let step = (l.data.len() / 1000).max(PAGE_SIZE) / PAGE_SIZE * PAGE_SIZE;
        let hot = vec![Pattern::MovingWindow {
            range: l.data,
            window_bytes: l.data.len() / 10,
            start_offset: l.data.len() / 5,
            step_bytes: step,
            step_ticks: 20,
            prob: HOT_PROB,
        }];
        let phases = vec![Phase::new("moving", u64::MAX, Scenario::data_patterns(&l, hot))];
        Scenario::build("moving hot spot", seed, l, phases, 300 * 20)
    }

    /// Hot 10-20 % of the data, then 60-75 %, then back, 100 aggregation
    /// intervals each.
    pub fn phase_change(data_bytes: u64, seed: u64) -> Scenario {
        let l = ProcessLayout::new(data_bytes);
        let a = vec![Pattern::Uniform { range: l.data_part(0.1, 0.2), prob: HOT_PROB }];
        let b = vec![Pattern::Uniform { range: l.data_part(0.6, 0.75), prob: HOT_PROB }];
        let phases = vec![
            Phase::new("A", 100 * 20, Scenario::data_patterns(&l, a.clone())),
            Phase::new("B", 100 * 20, Scenario::data_patterns(&l, b)),
            Phase::new("A again", u64::MAX, Scenario::data_patterns(&l, a)),
        ];
        let mut s = Scenario::build("phase change", seed, l, phases, 300 * 20);
        s.warmup_ticks = 40 * 20;
        s
    }

    /// A dense hot block (20-30 % of the data) and, in the cold second half,
    /// one hot page in every 64: sparse hot pages inside a cold region.
    pub fn sparse_hot_in_cold(data_bytes: u64, seed: u64) -> Scenario {
        let l = ProcessLayout::new(data_bytes);
        let hot = vec![
            Pattern::Uniform { range: l.data_part(0.2, 0.3), prob: HOT_PROB },
            Pattern::SparsePages {
                range: l.data_part(0.5, 1.0),
                every_pages: 64,
                offset_pages: 7,
                prob: HOT_PROB,
            },
        ];
        let phases = vec![Phase::new("steady", u64::MAX, Scenario::data_patterns(&l, hot))];
        Scenario::build("sparse hot pages in cold", seed, l, phases, 240 * 20)
    }

    /// `count` small hot islands spread evenly over the data, each a quarter
    /// of its slot (256 MiB, 1000 islands: 64 KiB islands every 256 KiB).
    pub fn hot_islands(data_bytes: u64, count: u64, seed: u64) -> Scenario {
        let l = ProcessLayout::new(data_bytes);
        let slot = (l.data.len() / count.max(1)) / PAGE_SIZE * PAGE_SIZE;
        let island = (slot / 4).max(PAGE_SIZE) / PAGE_SIZE * PAGE_SIZE;
        let hot = vec![Pattern::Islands { range: l.data, count, island_bytes: island, prob: HOT_PROB }];
        let phases = vec![Phase::new("steady", u64::MAX, Scenario::data_patterns(&l, hot))];
        Scenario::build(&format!("{count} hot islands"), seed, l, phases, 240 * 20)
    }

    /// The five scenarios of the accuracy test and benchmark.
    pub fn all(data_bytes: u64, seed: u64) -> Vec<Scenario> {
        vec![
            Scenario::static_hot_cold(data_bytes, seed),
            Scenario::moving_hot_spot(data_bytes, seed),
            Scenario::phase_change(data_bytes, seed),
            Scenario::sparse_hot_in_cold(data_bytes, seed),
            Scenario::hot_islands(data_bytes, 1000, seed),
        ]
    }
}

/// How well one snapshot matches the ground truth, byte-weighted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accuracy {
    /// Bytes classified hot that are hot.
    pub true_hot_bytes: u64,
    /// Bytes classified hot (the estimated working set).
    pub classified_hot_bytes: u64,
    /// Bytes truly hot (the true working set).
    pub hot_bytes: u64,
}

impl Accuracy {
    pub fn precision(&self) -> f64 {
        if self.classified_hot_bytes == 0 {
            1.0
        } else {
            self.true_hot_bytes as f64 / self.classified_hot_bytes as f64
        }
    }
    pub fn recall(&self) -> f64 {
        if self.hot_bytes == 0 { 1.0 } else { self.true_hot_bytes as f64 / self.hot_bytes as f64 }
    }
    /// Hot-set F1 = 2 TP / (classified + truth); 1 when both are empty.
    pub fn f1(&self) -> f64 {
        let den = self.classified_hot_bytes + self.hot_bytes;
        if den == 0 { 1.0 } else { 2.0 * self.true_hot_bytes as f64 / den as f64 }
    }
    /// |estimated - true| / true working-set size.
    pub fn wss_error(&self) -> f64 {
        if self.hot_bytes == 0 {
            return if self.classified_hot_bytes == 0 { 0.0 } else { 1.0 };
        }
        self.classified_hot_bytes.abs_diff(self.hot_bytes) as f64 / self.hot_bytes as f64
    }
}

/// The ranges of regions whose `nr_accesses` reach `hot_nr_frac` of the
/// snapshot's maximum, sorted.
pub fn classified_hot(snapshot: &Snapshot, hot_nr_frac: f64) -> Vec<AddrRange> {
    let thr = hot_nr_frac * f64::from(snapshot.max_nr_accesses);
    snapshot
        .regions
        .iter()
        .filter(|r| f64::from(r.nr_accesses) >= thr && r.nr_accesses > 0)
        .map(|r| r.range)
        .collect()
}

/// Judge a snapshot against a ground-truth hot set (sorted, disjoint).
pub fn evaluate(snapshot: &Snapshot, truth: &[AddrRange], hot_nr_frac: f64) -> Accuracy {
    let hot = classified_hot(snapshot, hot_nr_frac);
    Accuracy {
        true_hot_bytes: overlap_bytes(&hot, truth),
        classified_hot_bytes: hot.iter().map(AddrRange::len).sum(),
        hot_bytes: truth.iter().map(AddrRange::len).sum(),
    }
}

/// The result of running a monitor over a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioReport {
    pub scenario: String,
    /// Snapshots judged (after warm-up, away from phase changes).
    pub judged: usize,
    pub f1_mean: f64,
    pub f1_min: f64,
    pub precision_mean: f64,
    pub recall_mean: f64,
    pub wss_error_mean: f64,
    pub wss_error_max: f64,
    /// Mean number of regions over the judged snapshots.
    pub nr_regions_mean: f64,
    pub samples: u64,
    pub aggregations: u64,
}

/// Run `attrs` over `scenario` (one target, [`Monitor::step`] driver) and
/// judge every snapshot after convergence. Under auto-tuning the probe's
/// clock advances by the current sample interval in ticks.
pub fn run_scenario(
    scenario: &Scenario,
    attrs: &MonitorAttrs,
    seed: u64,
) -> Result<ScenarioReport, MonitorAttrsError> {
    let space = &scenario.space;
    let mut monitor = Monitor::new(attrs.clone(), seed)?;
    let id = TargetId(1);
    // Cannot fail: the monitor has no other target.
    let _ = monitor.add_target(id, space.initial_mappings());
    let mut probe = SimProbe::new(Arc::clone(space));
    let mut window_start: Tick = 0;
    let mut acc: Vec<Accuracy> = Vec::new();
    let mut regions_sum = 0usize;
    while probe.now() <= scenario.total_ticks {
        let out = monitor.step(&mut probe);
        if let Some(snaps) = out.aggregated {
            let now = probe.now();
            let judged = window_start >= scenario.warmup_ticks
                && !space
                    .phase_starts()
                    .iter()
                    .skip(1)
                    .any(|&s| s <= now && s + scenario.settle_ticks > window_start);
            if judged {
                for (_, snap) in &snaps {
                    let mid = window_start + (now - window_start) / 2;
                    let truth = space.hot_set(mid.max(1), scenario.hot_min_prob);
                    acc.push(evaluate(snap, &truth, scenario.hot_nr_frac));
                    regions_sum += snap.regions.len();
                }
            }
            window_start = now;
        }
        let ticks = (monitor.sample_interval_us() / space.tick_us()).max(1);
        probe.advance(ticks);
    }
    let n = acc.len().max(1) as f64;
    let mean = |f: &dyn Fn(&Accuracy) -> f64| acc.iter().map(f).sum::<f64>() / n;
    Ok(ScenarioReport {
        scenario: scenario.name.clone(),
        judged: acc.len(),
        f1_mean: mean(&Accuracy::f1),
        // With nothing judged every figure is 0; callers check `judged`.
        f1_min: if acc.is_empty() { 0.0 } else { acc.iter().map(Accuracy::f1).fold(f64::INFINITY, f64::min) },
        precision_mean: mean(&Accuracy::precision),
        recall_mean: mean(&Accuracy::recall),
        wss_error_mean: mean(&Accuracy::wss_error),
        wss_error_max: acc.iter().map(Accuracy::wss_error).fold(0.0, f64::max),
        nr_regions_mean: regions_sum as f64 / n,
        samples: monitor.stats().samples,
        aggregations: monitor.stats().aggregations,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const P: u64 = PAGE_SIZE;

    fn space(phases: Vec<Phase>) -> SimSpace {
        SimSpace::new(42, 5_000, &[AddrRange::new(0, 100 * P), AddrRange::new(200 * P, 300 * P)], phases)
            .unwrap()
    }

    #[test]
    fn probabilities_follow_patterns_and_mappings() {
        let s = space(vec![Phase::new(
            "p",
            10,
            vec![
                Pattern::Uniform { range: AddrRange::new(0, 10 * P), prob: 1.0 },
                Pattern::SparsePages {
                    range: AddrRange::new(200 * P, 300 * P),
                    every_pages: 10,
                    offset_pages: 3,
                    prob: 0.5,
                },
            ],
        )]);
        assert_eq!(s.access_prob(Addr(5 * P + 17), 1), 1.0);
        assert_eq!(s.access_prob(Addr(50 * P), 1), 0.0);
        assert_eq!(s.access_prob(Addr(150 * P), 1), 0.0, "unmapped");
        assert_eq!(s.access_prob(Addr(213 * P), 1), 0.5);
        assert_eq!(s.access_prob(Addr(214 * P), 1), 0.0);
        let hot = s.hot_set(1, 0.5);
        assert_eq!(hot.len(), 11);
        assert_eq!(hot[0], AddrRange::new(0, 10 * P));
        assert_eq!(hot[1], AddrRange::new(203 * P, 204 * P));
    }

    #[test]
    fn ground_truth_is_deterministic_and_matches_probability() {
        let s = space(vec![Phase::new(
            "p",
            10,
            vec![Pattern::Uniform { range: AddrRange::new(0, 100 * P), prob: 0.3 }],
        )]);
        let a = s.accessed_pages(AddrRange::new(0, 100 * P), 5);
        assert_eq!(a, s.accessed_pages(AddrRange::new(0, 100 * P), 5));
        let total: usize = (1..=200).map(|t| s.accessed_pages(AddrRange::new(0, 100 * P), t).len()).sum();
        let rate = total as f64 / (200.0 * 100.0);
        assert!((rate - 0.3).abs() < 0.02, "rate {rate}");
    }

    #[test]
    fn probe_reports_accesses_between_arm_and_check() {
        let s = Arc::new(space(vec![
            Phase::new("idle", 10, vec![]),
            Phase::new("busy", 10, vec![Pattern::Uniform { range: AddrRange::new(0, 100 * P), prob: 1.0 }]),
        ]));
        let mut p = SimProbe::new(Arc::clone(&s));
        let addrs = [Addr(3 * P), Addr(250 * P)];
        let mut acc = [true; 2];
        p.arm(&addrs).unwrap();
        p.advance(5);
        p.check(&addrs, &mut acc).unwrap();
        assert_eq!(acc, [false, false], "idle phase");
        p.arm(&addrs).unwrap();
        p.advance(10); // ticks 6..=15 cross into the busy phase at 11
        p.check(&addrs, &mut acc).unwrap();
        assert_eq!(acc, [true, false]);
        // Consistent with the per-tick ground truth.
        assert!(s.accessed(Addr(3 * P), 11) && !s.accessed(Addr(3 * P), 10));
    }

    #[test]
    fn moving_window_moves_and_wraps() {
        let range = AddrRange::new(0, 100 * P);
        let pat = Pattern::MovingWindow {
            range,
            window_bytes: 10 * P,
            start_offset: 85 * P,
            step_bytes: P,
            step_ticks: 2,
            prob: 1.0,
        };
        assert_eq!(pat.window_at(0), vec![AddrRange::new(85 * P, 95 * P)]);
        assert_eq!(pat.window_at(4), vec![AddrRange::new(87 * P, 97 * P)]);
        assert_eq!(pat.window_at(20), vec![AddrRange::new(95 * P, 100 * P), AddrRange::new(0, 5 * P)]);
        assert!(pat.covers(Addr(2 * P), 20) && !pat.covers(Addr(2 * P), 0));
    }

    #[test]
    fn islands_are_evenly_spaced() {
        let pat = Pattern::Islands {
            range: AddrRange::new(0, 1000 * P),
            count: 10,
            island_bytes: 25 * P,
            prob: 1.0,
        };
        let r = pat.covered_ranges(0);
        assert_eq!(r.len(), 10);
        assert_eq!(r[1], AddrRange::new(100 * P, 125 * P));
        assert!(pat.covers(Addr(124 * P), 0) && !pat.covers(Addr(125 * P), 0));
    }

    #[test]
    fn mappings_change_with_phases() {
        let mut b = Phase::new("b", 10, vec![]);
        b.mappings = Some(vec![AddrRange::new(0, 50 * P)]);
        let s = space(vec![Phase::new("a", 10, vec![]), b]);
        assert_eq!(s.mappings_at(5).len(), 2);
        assert_eq!(s.mappings_at(11), &[AddrRange::new(0, 50 * P)]);
        assert_eq!(s.mapped_bytes(11), 50 * P);
    }

    #[test]
    fn evaluation_is_byte_weighted() {
        use crate::RegionSnapshot;
        let snap = Snapshot {
            time_us: 0,
            aggr_interval_us: 100_000,
            max_nr_accesses: 20,
            regions: vec![
                RegionSnapshot { range: AddrRange::new(0, 10 * P), nr_accesses: 18, age: 0 },
                RegionSnapshot { range: AddrRange::new(10 * P, 40 * P), nr_accesses: 2, age: 0 },
            ],
        };
        let acc = evaluate(&snap, &[AddrRange::new(5 * P, 15 * P)], 0.4);
        assert_eq!(acc.true_hot_bytes, 5 * P);
        assert_eq!(acc.classified_hot_bytes, 10 * P);
        assert!((acc.f1() - 0.5).abs() < 1e-9);
        assert!(acc.wss_error().abs() < 1e-9);
    }

    #[test]
    fn scenarios_scale_without_per_page_state() {
        let s = Scenario::static_hot_cold(16 << 30, 1);
        assert_eq!(s.layout.data.len(), 16 << 30);
        let hot = s.space.hot_set(1, s.hot_min_prob);
        let hot_bytes: u64 = hot.iter().map(AddrRange::len).sum();
        assert!(hot_bytes > (16u64 << 30) / 10, "10 % of the data plus heap and stack");
    }
}
