//! A workload running inside this process: mapped and filled regions, access
//! threads doing real loads and stores in batches, a phase schedule, counters.
//!
//! The `etmem-workload` binary is a thin shell around [`Workload`]; benchmarks
//! may embed it directly. Threads: `threads` access threads plus one conductor
//! thread that advances phases; phase time excludes time spent paused.

use super::content::{RegionContent, WORD_BYTES};
use super::memory::{HUGE_PAGE_SIZE, MapError, Mapping, fill_words, verify_region};
use super::os;
use super::protocol::{
    GroundTruth, PatternTruth, PauseAck, PhaseChange, PhaseStats, PhaseTruth, RegionInfo, StatsReport,
    VerifyReport,
};
use super::spec::{RwMode, SpecError, ThpHint, WorkloadSpec};
use rand::{RngCore, SeedableRng};
use rand_pcg::Pcg64Mcg;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Default seed of the memory content and of the access threads' RNGs.
pub const DEFAULT_SEED: u64 = 0x5eed;
/// Default accesses per batch; flags (pause, phase change, stop) are checked between batches.
pub const DEFAULT_BATCH_ACCESSES: u64 = 64 * 1024;
/// Default number of access threads.
pub const DEFAULT_THREADS: usize = 1;

/// How to run a workload (what to run is the [`WorkloadSpec`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Access threads; each runs the phases' patterns with its own RNG.
    pub threads: usize,
    /// Seeds the memory content and the RNGs.
    pub seed: u64,
    /// Accesses per batch.
    pub batch_accesses: u64,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { threads: DEFAULT_THREADS, seed: DEFAULT_SEED, batch_accesses: DEFAULT_BATCH_ACCESSES }
    }
}

/// Why a workload could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error("at least one access thread and one access per batch are needed")]
    NoWork,
    #[error("cannot start {role} thread {index}")]
    Thread {
        role: &'static str,
        index: usize,
        #[source]
        source: io::Error,
    },
}

/// What the phase schedule reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleEvent {
    /// A phase started.
    Phase(PhaseChange),
    /// The last phase ended (no `repeat`): accesses have stopped.
    Done,
}

/// Marks "no phase to run": paused, done or stopping.
const IDLE: usize = usize::MAX;

#[derive(Debug)]
struct Region {
    name: String,
    mapping: Mapping,
    /// What every word holds (index, seed, sparse fill).
    content: RegionContent,
}

#[derive(Debug)]
struct CompiledPattern {
    region: usize,
    random: bool,
    stride_bytes: u64,
    /// An access stores when the low 32 bits of its random draw are below this (0..=2^32).
    write_threshold: u64,
    /// Load before storing (masim `rw`).
    read_first: bool,
    /// Cumulative weight, for the weighted pick.
    weight_end: u64,
}

#[derive(Debug)]
struct CompiledPhase {
    patterns: Vec<CompiledPattern>,
    total_weight: u64,
    duration: Option<Duration>,
}

/// Phase bookkeeping, under the mutex.
#[derive(Debug)]
struct Clock {
    phase: usize,
    cycle: u64,
    done: bool,
    paused: bool,
    stop: bool,
    /// Start of the running segment of the current phase; `None` while paused or done.
    segment_start: Option<Instant>,
    /// Run time of the current visit of the phase, closed segments only.
    visit_run: Duration,
    /// Run time per phase, closed segments only.
    totals: Vec<Duration>,
    /// Access threads waiting in `park`.
    parked: usize,
}

impl Clock {
    fn close_segment(&mut self, now: Instant) {
        if let Some(start) = self.segment_start.take() {
            let d = now.saturating_duration_since(start);
            self.visit_run += d;
            self.totals[self.phase] += d;
        }
    }

    fn running_segment(&self, now: Instant) -> Duration {
        self.segment_start.map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }

    fn phase_total(&self, phase: usize, now: Instant) -> Duration {
        let open = if phase == self.phase { self.running_segment(now) } else { Duration::ZERO };
        self.totals[phase] + open
    }
}

#[derive(Debug)]
struct Shared {
    seed: u64,
    page_size: u64,
    batch_accesses: u64,
    threads: usize,
    repeat: bool,
    regions: Vec<Region>,
    phases: Vec<CompiledPhase>,
    phase_names: Vec<String>,
    /// The phase access threads run, or [`IDLE`]; only written under `clock`.
    active_phase: AtomicUsize,
    accesses: Vec<AtomicU64>,
    clock: Mutex<Clock>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Clock> {
        // A panicking access thread cannot leave the clock half-updated in a
        // way that matters more than stopping would; keep going.
        self.clock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, Clock>) -> MutexGuard<'a, Clock> {
        self.cv.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }

    fn wait_timeout<'a>(&self, guard: MutexGuard<'a, Clock>, timeout: Duration) -> MutexGuard<'a, Clock> {
        self.cv.wait_timeout(guard, timeout).unwrap_or_else(PoisonError::into_inner).0
    }

    /// Tells the access threads what to run after a change of `clock`.
    fn publish(&self, clock: &Clock) {
        let active = if clock.paused || clock.done || clock.stop { IDLE } else { clock.phase };
        self.active_phase.store(active, Ordering::Release);
        self.cv.notify_all();
    }

    /// Waits while there is nothing to run; false when the thread must exit.
    fn park(&self) -> bool {
        let mut clock = self.lock();
        clock.parked += 1;
        self.cv.notify_all();
        while self.active_phase.load(Ordering::Acquire) == IDLE && !clock.stop {
            clock = self.wait(clock);
        }
        clock.parked -= 1;
        !clock.stop
    }

    /// Waits while `phase` (an idle phase without patterns) is the active one.
    fn sit_out(&self, phase: usize) {
        let mut clock = self.lock();
        while self.active_phase.load(Ordering::Acquire) == phase && !clock.stop {
            clock = self.wait(clock);
        }
    }
}

/// A running workload. Dropping it stops the threads and unmaps the memory.
#[derive(Debug)]
pub struct Workload {
    shared: Arc<Shared>,
    spec: WorkloadSpec,
    regions: Vec<RegionInfo>,
    workers: Vec<JoinHandle<()>>,
    conductor: Option<JoinHandle<()>>,
    events: Option<mpsc::Receiver<ScheduleEvent>>,
    started: Instant,
}

impl Workload {
    /// Validates `spec`, maps and fills every region, and starts the access
    /// threads on the first phase. Returns once accesses have started.
    pub fn start(spec: &WorkloadSpec, options: &RunOptions) -> Result<Workload, StartError> {
        spec.validate()?;
        if options.threads == 0 || options.batch_accesses == 0 {
            return Err(StartError::NoWork);
        }
        let page_size = os::page_size();
        spec.validate_for_page_size(page_size)?;
        let mut regions = Vec::with_capacity(spec.regions.len());
        for (i, r) in spec.regions.iter().enumerate() {
            let mapping = Mapping::new(&r.name, r.size_bytes, r.thp, page_size)?;
            let content = RegionContent {
                seed: options.seed,
                region_index: i as u32,
                sparse: r.fill_stride_bytes.map(|s| (s, page_size)),
            };
            regions.push(Region { name: r.name.clone(), mapping, content });
        }
        fill(&regions, options.threads)?;

        let phases = spec
            .phases
            .iter()
            .map(|p| {
                let mut weight_end = 0;
                let patterns = p
                    .patterns
                    .iter()
                    .filter(|pat| pat.weight > 0)
                    .map(|pat| {
                        weight_end += u64::from(pat.weight);
                        CompiledPattern {
                            region: spec.region_index(&pat.region).expect("validated: the region exists"),
                            random: pat.random,
                            stride_bytes: pat.stride_bytes.max(1),
                            write_threshold: write_threshold(pat.rw),
                            read_first: matches!(pat.rw, RwMode::Rw),
                            weight_end,
                        }
                    })
                    .collect();
                CompiledPhase {
                    patterns,
                    total_weight: weight_end,
                    duration: p.duration_ms.map(Duration::from_millis),
                }
            })
            .collect::<Vec<_>>();

        let infos = region_infos(spec, &regions);
        let now = Instant::now();
        let shared = Arc::new(Shared {
            seed: options.seed,
            page_size,
            batch_accesses: options.batch_accesses,
            threads: options.threads,
            repeat: spec.repeat,
            accesses: spec.phases.iter().map(|_| AtomicU64::new(0)).collect(),
            phase_names: spec.phases.iter().map(|p| p.name.clone()).collect(),
            regions,
            phases,
            active_phase: AtomicUsize::new(0),
            clock: Mutex::new(Clock {
                phase: 0,
                cycle: 0,
                done: false,
                paused: false,
                stop: false,
                segment_start: Some(now),
                visit_run: Duration::ZERO,
                totals: vec![Duration::ZERO; spec.phases.len()],
                parked: 0,
            }),
            cv: Condvar::new(),
        });
        let (tx, rx) = mpsc::channel();
        let mut workload = Workload {
            shared: Arc::clone(&shared),
            spec: spec.clone(),
            regions: infos,
            workers: Vec::new(),
            conductor: None,
            events: Some(rx),
            started: now,
        };
        // On an early return `workload` is dropped, which stops what has started.
        let _ = tx.send(ScheduleEvent::Phase(PhaseChange {
            name: spec.phases[0].name.clone(),
            index: 0,
            cycle: 0,
        }));
        let s = Arc::clone(&shared);
        workload.conductor = Some(
            std::thread::Builder::new()
                .name("wl-conductor".into())
                .spawn(move || conduct(&s, &tx))
                .map_err(|source| StartError::Thread { role: "conductor", index: 0, source })?,
        );
        for t in 0..options.threads {
            let s = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("wl-access-{t}"))
                .spawn(move || access_loop(&s, t))
                .map_err(|source| StartError::Thread { role: "access", index: t, source })?;
            workload.workers.push(handle);
        }
        Ok(workload)
    }

    /// The mapped regions, in spec order.
    pub fn regions(&self) -> &[RegionInfo] {
        &self.regions
    }

    pub fn spec(&self) -> &WorkloadSpec {
        &self.spec
    }

    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    pub fn page_size(&self) -> u64 {
        self.shared.page_size
    }

    /// Phase starts and the end of the schedule, as they happen; `None` after the first call.
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<ScheduleEvent>> {
        self.events.take()
    }

    /// Access counts so far, in total and per phase.
    pub fn stats(&self) -> StatsReport {
        let now = Instant::now();
        let clock = self.shared.lock();
        let phases: Vec<PhaseStats> = self
            .shared
            .phase_names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let accesses = self.shared.accesses[i].load(Ordering::Relaxed);
                let run = clock.phase_total(i, now);
                PhaseStats {
                    name: name.clone(),
                    accesses,
                    run_ms: millis(run),
                    accesses_per_s: rate(accesses, run),
                }
            })
            .collect();
        let accesses = phases.iter().map(|p| p.accesses).sum();
        let run: Duration = (0..phases.len()).map(|i| clock.phase_total(i, now)).sum();
        let current = (!clock.done).then_some(clock.phase);
        StatsReport {
            elapsed_ms: millis(now.saturating_duration_since(self.started)),
            run_ms: millis(run),
            accesses,
            accesses_per_s: rate(accesses, run),
            phase: current.map(|i| self.shared.phase_names[i].clone()),
            phase_index: current,
            cycle: clock.cycle,
            paused: clock.paused,
            done: clock.done,
            threads: self.shared.threads,
            phases,
            is_final: false,
        }
    }

    /// Checks every byte of every region against its expected value. Safe to
    /// run while accesses go on: stores write the expected value.
    pub fn verify(&self) -> VerifyReport {
        let started = Instant::now();
        let mut report = VerifyReport::default();
        for r in &self.shared.regions {
            verify_region(&r.mapping, &r.name, &r.content, self.shared.page_size, &mut report);
        }
        report.duration_ms = millis(started.elapsed());
        report
    }

    /// Stops accesses between batches; waits up to `timeout` for every access
    /// thread to stop. Phase time stands still until [`Workload::resume`].
    pub fn pause(&self, timeout: Duration) -> PauseAck {
        let deadline = Instant::now() + timeout;
        let mut clock = self.shared.lock();
        if !clock.paused {
            clock.close_segment(Instant::now());
            clock.paused = true;
            self.shared.publish(&clock);
        }
        while clock.parked < self.shared.threads && !clock.stop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            clock = self.shared.wait_timeout(clock, deadline - now);
        }
        PauseAck {
            parked_threads: clock.parked,
            threads: self.shared.threads,
            complete: clock.parked >= self.shared.threads,
        }
    }

    /// Lets accesses go on after [`Workload::pause`].
    pub fn resume(&self) {
        let mut clock = self.shared.lock();
        if clock.paused {
            clock.paused = false;
            if !clock.done && !clock.stop {
                clock.segment_start = Some(Instant::now());
            }
            self.shared.publish(&clock);
        }
    }

    /// True once the last phase has ended (never with `repeat`).
    pub fn is_done(&self) -> bool {
        self.shared.lock().done
    }

    /// Stops and joins every thread. Memory stays mapped (for a final
    /// [`Workload::verify`]) until the workload is dropped. Idempotent.
    pub fn shutdown(&mut self) {
        {
            let mut clock = self.shared.lock();
            if !clock.stop {
                clock.close_segment(Instant::now());
                clock.stop = true;
                self.shared.publish(&clock);
            }
        }
        for handle in self.workers.drain(..).chain(self.conductor.take()) {
            // A panicked thread has already printed its panic; nothing to add.
            let _ = handle.join();
        }
    }

    /// Which regions are hot in which phase, with their addresses.
    pub fn ground_truth(&self) -> GroundTruth {
        let phases = self
            .spec
            .phases
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let hot_regions: Vec<String> =
                    self.spec.hot_regions(i).into_iter().map(String::from).collect();
                let hot_ranges = self
                    .regions
                    .iter()
                    .filter(|r| hot_regions.contains(&r.name))
                    .map(RegionInfo::range)
                    .collect();
                let total: u64 = p.patterns.iter().map(|pat| u64::from(pat.weight)).sum();
                let patterns = p
                    .patterns
                    .iter()
                    .map(|pat| PatternTruth {
                        region: pat.region.clone(),
                        random: pat.random,
                        stride_bytes: pat.stride_bytes,
                        weight: pat.weight,
                        share: if total == 0 { 0.0 } else { f64::from(pat.weight) / total as f64 },
                        rw: pat.rw,
                    })
                    .collect();
                PhaseTruth {
                    name: p.name.clone(),
                    index: i,
                    duration_ms: p.duration_ms,
                    hot_regions,
                    hot_ranges,
                    patterns,
                }
            })
            .collect();
        GroundTruth {
            pid: std::process::id(),
            page_size: self.shared.page_size,
            huge_page_size: HUGE_PAGE_SIZE,
            repeat: self.shared.repeat,
            regions: self.regions.clone(),
            phases,
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        // Threads must stop touching the mappings before `shared` can unmap them.
        self.shutdown();
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn rate(count: u64, over: Duration) -> f64 {
    let s = over.as_secs_f64();
    if s > 0.0 { count as f64 / s } else { 0.0 }
}

fn write_threshold(rw: RwMode) -> u64 {
    const ALL: u64 = 1 << 32;
    match rw {
        RwMode::Ro => 0,
        RwMode::Wo | RwMode::Rw => ALL,
        RwMode::Mix(r) => (r.clamp(0.0, 1.0) * ALL as f64).round() as u64,
    }
}

fn region_infos(spec: &WorkloadSpec, regions: &[Region]) -> Vec<RegionInfo> {
    regions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let range = r.mapping.range();
            let hot_phases: Vec<String> = (0..spec.phases.len())
                .filter(|&p| spec.hot_regions(p).contains(&r.name.as_str()))
                .map(|p| spec.phases[p].name.clone())
                .collect();
            RegionInfo {
                name: r.name.clone(),
                index: i,
                start: range.start,
                end: range.end,
                size: range.len(),
                hot: spec.hot_regions(0).contains(&r.name.as_str()),
                hot_phases,
                thp: spec.regions.get(i).map_or(ThpHint::None, |s| s.thp),
                fill_stride: spec.regions.get(i).and_then(|s| s.fill_stride_bytes),
            }
        })
        .collect()
}

/// Fills every region with its expected content, `threads` threads per region.
fn fill(regions: &[Region], threads: usize) -> Result<(), StartError> {
    for r in regions {
        let words = r.mapping.words();
        let chunk = words.len().div_ceil(threads.max(1)).max(1);
        std::thread::scope(|scope| {
            for (t, part) in words.chunks(chunk).enumerate() {
                let first_word = (t * chunk) as u64;
                std::thread::Builder::new()
                    .name(format!("wl-fill-{t}"))
                    .spawn_scoped(scope, move || fill_words(part, first_word, &r.content))
                    .map_err(|source| StartError::Thread { role: "fill", index: t, source })?;
            }
            Ok::<(), StartError>(())
        })?;
    }
    Ok(())
}

/// Advances phases when their time is up.
fn conduct(shared: &Shared, events: &mpsc::Sender<ScheduleEvent>) {
    let mut clock = shared.lock();
    loop {
        if clock.stop {
            return;
        }
        if clock.paused || clock.done {
            clock = shared.wait(clock);
            continue;
        }
        let Some(duration) = shared.phases[clock.phase].duration else {
            clock = shared.wait(clock);
            continue;
        };
        let now = Instant::now();
        let ran = clock.visit_run + clock.running_segment(now);
        if ran < duration {
            clock = shared.wait_timeout(clock, duration - ran);
            continue;
        }
        clock.close_segment(now);
        clock.visit_run = Duration::ZERO;
        let mut next = clock.phase + 1;
        if next == shared.phases.len() {
            if shared.repeat {
                next = 0;
                clock.cycle += 1;
            } else {
                clock.done = true;
                shared.publish(&clock);
                let _ = events.send(ScheduleEvent::Done);
                continue;
            }
        }
        clock.phase = next;
        clock.segment_start = Some(now);
        shared.publish(&clock);
        let _ = events.send(ScheduleEvent::Phase(PhaseChange {
            name: shared.phase_names[next].clone(),
            index: next,
            cycle: clock.cycle,
        }));
    }
}

/// One access thread: batches of the current phase's patterns, picked by weight.
fn access_loop(shared: &Shared, thread: usize) {
    let mut rng =
        Pcg64Mcg::seed_from_u64(shared.seed ^ (thread as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    // Sequential cursors per phase and pattern; threads start spread over the region.
    let mut cursors: Vec<Vec<u64>> = shared
        .phases
        .iter()
        .map(|p| {
            p.patterns
                .iter()
                .map(|pat| {
                    let len = shared.regions[pat.region].mapping.len_bytes();
                    let start = (u128::from(len) * thread as u128 / shared.threads as u128) as u64;
                    start / WORD_BYTES * WORD_BYTES
                })
                .collect()
        })
        .collect();
    loop {
        let p = shared.active_phase.load(Ordering::Acquire);
        if p == IDLE {
            if shared.park() {
                continue;
            }
            return;
        }
        let phase = &shared.phases[p];
        if phase.patterns.is_empty() {
            shared.sit_out(p);
            continue;
        }
        let pick = if phase.patterns.len() == 1 {
            0
        } else {
            let r = rng.next_u64() % phase.total_weight;
            phase.patterns.iter().position(|pat| r < pat.weight_end).unwrap_or(0)
        };
        let pattern = &phase.patterns[pick];
        let region = &shared.regions[pattern.region];
        let sum = run_batch(region, pattern, shared.batch_accesses, &mut rng, &mut cursors[p][pick]);
        std::hint::black_box(sum);
        shared.accesses[p].fetch_add(shared.batch_accesses, Ordering::Relaxed);
    }
}

/// `n` accesses of one pattern; returns the sum of the loaded words so the
/// loads cannot be optimised away.
fn run_batch(
    region: &Region,
    pattern: &CompiledPattern,
    n: u64,
    rng: &mut Pcg64Mcg,
    cursor: &mut u64,
) -> u64 {
    const ALL: u64 = 1 << 32;
    let words = region.mapping.words();
    let n_words = words.len() as u64;
    let len = region.mapping.len_bytes();
    let mixed = pattern.write_threshold > 0 && pattern.write_threshold < ALL;
    let mut sum = 0u64;
    for _ in 0..n {
        let draw = if pattern.random || mixed { rng.next_u64() } else { 0 };
        let word = if pattern.random {
            // Multiply-shift: uniform in 0..n_words using the draw's high bits,
            // so the low 32 bits stay free for the read/write decision.
            ((u128::from(draw) * u128::from(n_words)) >> 64) as u64
        } else {
            *cursor += pattern.stride_bytes;
            if *cursor >= len {
                *cursor = 0;
            }
            *cursor / WORD_BYTES
        };
        let cell = &words[word as usize];
        let write = (draw & 0xffff_ffff) < pattern.write_threshold;
        if !write || pattern.read_first {
            sum = sum.wrapping_add(cell.load(Ordering::Relaxed));
        }
        if write {
            cell.store(region.content.expected(word * WORD_BYTES), Ordering::Relaxed);
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::spec::{HotColdConfig, HotSize, PatternSpec, PhaseSpec, RegionSpec};

    fn small(duration_ms: Option<u64>) -> WorkloadSpec {
        HotColdConfig {
            size_bytes: 4 << 20,
            hot: HotSize::Share(0.25),
            write_ratio: 0.5,
            duration_ms,
            ..Default::default()
        }
        .to_spec(os::page_size())
        .expect("valid")
    }

    fn opts() -> RunOptions {
        RunOptions { threads: 2, seed: 3, batch_accesses: 1024 }
    }

    #[test]
    fn accesses_grow_and_memory_verifies() {
        let mut w = Workload::start(&small(None), &opts()).expect("start");
        let first = w.stats().accesses;
        let deadline = Instant::now() + Duration::from_secs(30);
        while w.stats().accesses <= first && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(w.stats().accesses > first);
        let report = w.verify();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.bytes_checked, 4 << 20);
        w.shutdown();
        assert!(w.verify().ok);
    }

    #[test]
    fn pause_stops_accesses() {
        let w = Workload::start(&small(None), &opts()).expect("start");
        let ack = w.pause(Duration::from_secs(30));
        assert!(ack.complete, "{ack:?}");
        let a = w.stats().accesses;
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(w.stats().accesses, a);
        assert!(w.stats().paused);
        w.resume();
        assert!(!w.stats().paused);
    }

    #[test]
    fn phases_advance_and_finish() {
        let spec = WorkloadSpec {
            regions: vec![
                RegionSpec {
                    name: "a".into(),
                    size_bytes: 1 << 20,
                    thp: ThpHint::None,
                    fill_stride_bytes: None,
                },
                RegionSpec {
                    name: "b".into(),
                    size_bytes: 1 << 20,
                    thp: ThpHint::None,
                    fill_stride_bytes: None,
                },
            ],
            phases: vec![
                PhaseSpec {
                    name: "one".into(),
                    duration_ms: Some(10),
                    patterns: vec![PatternSpec {
                        region: "a".into(),
                        random: false,
                        stride_bytes: 4096,
                        weight: 1,
                        rw: RwMode::Rw,
                    }],
                },
                PhaseSpec { name: "idle".into(), duration_ms: Some(10), patterns: vec![] },
            ],
            repeat: false,
        };
        let mut w = Workload::start(&spec, &opts()).expect("start");
        let events = w.take_events().expect("first take");
        let mut seen = Vec::new();
        while let ScheduleEvent::Phase(p) = events.recv_timeout(Duration::from_secs(30)).expect("event") {
            seen.push(p.name);
        }
        assert_eq!(seen, vec!["one", "idle"]);
        assert!(w.is_done());
        let stats = w.stats();
        assert_eq!(stats.phase, None);
        assert_eq!(stats.phases[1].accesses, 0);
        assert!(w.verify().ok);
        let truth = w.ground_truth();
        assert_eq!(truth.phases[0].hot_regions, vec!["a"]);
        assert!(truth.phases[1].hot_ranges.is_empty());
    }
}
