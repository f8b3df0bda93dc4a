//! The `page` engine: etmem's slide scan as etmem's code has it. Per task,
//! rounds with `interval` of idle time between them; each round checks every
//! page of every eligible VMA `loop` times, `sleep` apart, scoring idle 0,
//! read 1, dirty 3; the scores become a snapshot of page-granular runs that
//! goes through the same policies and backends as the region engine.
//!
//! Per round and task, the processes (a named task includes its direct
//! children) are scanned `max_threads` at a time. etmem's gates
//! (`sysmem_threshold`, `swap_threshold`) are checked before a process is
//! scanned, as etmem's `check_should_swap` does, so a closed gate costs no scan.

pub mod probes;
pub mod round;

use super::act::PidActor;
use super::procinfo::{self, HostMemInfo, ProcMemory};
use super::{Engine, EngineEnv, EngineError};
use crate::protocol::TaskStats;
use crate::runtime::Backends;
use damon_core::ops::ProcTarget;
use damon_core::ops::maps::VmaFilter;
use damon_core::ops::select::{self, HostEnv, ProbeKind};
use damon_core::{AddrRange, PAGE_SIZE, ProbeError, Snapshot};
use policies::{HostMemory, TaskMemory};
use probes::OsPageProbe;
use round::{PageProbe, PageSpace, PageState, RoundError};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A stop request that wakes sleeping scan threads at once.
#[derive(Debug, Default)]
pub struct StopSignal {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl StopSignal {
    pub fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleep for `d` unless stopped; `true` when the sleep ran its course.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        while !*stopped {
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            stopped = match self.cv.wait_timeout(stopped, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        false
    }
}

/// What a task's thread publishes for `project show` and engine commands.
#[derive(Debug, Default, Clone)]
struct Published {
    stats: TaskStats,
    snapshots: BTreeMap<u32, Snapshot>,
    /// When the last round ended (the age in `project show` is taken at
    /// the time of asking, not of publishing: rounds are seconds apart).
    last_round: Option<Instant>,
}

struct TaskThread {
    stop: Arc<StopSignal>,
    handle: Option<JoinHandle<()>>,
    published: Arc<Mutex<Published>>,
}

impl TaskThread {
    fn stop(&mut self) {
        self.stop.stop();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Settings every task of the engine shares.
#[derive(Debug, Clone)]
struct PageSettings {
    scan: conf::PageScan,
    engine: conf::PageEngine,
    policy: conf::Policy,
    schemes: Vec<conf::Scheme>,
    backends: Arc<Backends>,
    probe: ProbeKind,
    /// Why this probe and not the others.
    probe_choice: String,
}

/// One `page` (etmem `slide`) engine of a started project.
pub struct PageEngine {
    name: String,
    settings: PageSettings,
    tasks: BTreeMap<String, TaskThread>,
}

impl std::fmt::Debug for PageEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageEngine").field("name", &self.name).field("tasks", &self.tasks.keys()).finish()
    }
}

fn probe_kind(choice: conf::ProbeChoice) -> Option<ProbeKind> {
    match choice {
        conf::ProbeChoice::Auto | conf::ProbeChoice::Simulated => None,
        conf::ProbeChoice::IdleBitmap => Some(ProbeKind::IdleBitmap),
        conf::ProbeChoice::EtmemIdlePages => Some(ProbeKind::EtmemIdlePages),
        conf::ProbeChoice::SoftDirty => Some(ProbeKind::SoftDirty),
        conf::ProbeChoice::Refault => Some(ProbeKind::Refault),
    }
}

/// What the refault probe costs a page scan, for the log and `project show`.
pub fn refault_warning(probe_choice: &str) -> String {
    format!(
        "the refault probe pages out every resident page of the task at each scan (a page scan \
         checks every page, not one sample per region): everything the task touches faults back \
         from swap, and the round costs a pageout and a swap-in of the working set; it is used \
         because no other probe works here ({probe_choice}); set forbid_refault = true (native \
         [engine]) to refuse it"
    )
}

/// Choose the probe for a page engine, or say why none works.
fn choose_probe(
    engine: &conf::PageEngine,
    swap_planned: bool,
    kind_label: &str,
) -> Result<(ProbeKind, String), EngineError> {
    let unsupported = |reason: String| EngineError::Unsupported { kind: kind_label.into(), reason };
    if engine.probe == conf::ProbeChoice::Simulated {
        return Err(unsupported("probe simulated drives only benchmarks and demos, not real tasks".into()));
    }
    let env = HostEnv { swap_planned, ..HostEnv::default() };
    let sel = match probe_kind(engine.probe) {
        Some(ProbeKind::Refault) if engine.forbid_refault => {
            return Err(unsupported("probe refault is configured but forbid_refault = true".into()));
        }
        Some(kind) => select::select_explicit(kind, &env, None),
        None => {
            let forbidden: &[ProbeKind] = if engine.forbid_refault { &[ProbeKind::Refault] } else { &[] };
            select::select_auto(&env, None, forbidden)
        }
    }
    .map_err(|e| unsupported(e.to_string()))?;
    Ok((sel.chosen, sel.to_string()))
}

impl PageEngine {
    pub fn new(
        project: &conf::Project,
        engine: &conf::Engine,
        page: &conf::PageEngine,
        env: &EngineEnv,
    ) -> Result<PageEngine, EngineError> {
        let label = if engine.name == "slide" { "slide" } else { "page" };
        let conf::Scan::Page(scan) = &project.scan else {
            return Err(EngineError::Unsupported {
                kind: label.into(),
                reason: format!("project {} has no page scan parameters (scan_type=page)", project.name),
            });
        };
        let swap_planned =
            project.backends.iter().any(|b| matches!(b, conf::Backend::Zram(_) | conf::Backend::SwapFile(_)));
        let (probe, probe_choice) = choose_probe(page, swap_planned, label)?;
        tracing::info!(project = %project.name, engine = %engine.name, "page engine: {probe_choice}");
        if probe == ProbeKind::Refault {
            tracing::warn!(project = %project.name, engine = %engine.name, "{}", refault_warning(&probe_choice));
        }
        let mut schemes = project.schemes.clone();
        schemes.extend(engine.kind.schemes().iter().cloned());
        Ok(PageEngine {
            name: engine.name.clone(),
            settings: PageSettings {
                scan: scan.clone(),
                engine: page.clone(),
                policy: project.policy.clone(),
                schemes,
                backends: Arc::clone(&env.backends),
                probe,
                probe_choice,
            },
            tasks: BTreeMap::new(),
        })
    }
}

/// `max_threads` as etmem clamps it: 1 ..= 2 * CPUs + 1.
fn clamp_threads(max_threads: u32) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    (max_threads as usize).clamp(1, 2 * cpus + 1)
}

/// Notes that hold for a task whatever the round finds.
fn task_notes(settings: &PageSettings, task: &conf::Task, policy: &conf::Policy) -> BTreeMap<String, String> {
    let mut notes = BTreeMap::new();
    if settings.probe == ProbeKind::Refault {
        notes.insert("probe_warning".into(), refault_warning(&settings.probe_choice));
    }
    if task.swap_flag {
        let note = if settings.probe == ProbeKind::EtmemIdlePages {
            "honoured: idle_pages walks only VMAs marked with MADV_SWAPFLAG (etmem_scan VMA_SCAN_FLAG)"
                .to_string()
        } else {
            format!(
                "no effect here: only etmem's kernel (MADV_SWAPFLAG, read through etmem_scan's idle_pages) \
                 marks VMAs for swapping, and the probe here is {}; every eligible VMA is scanned",
                settings.probe
            )
        };
        notes.insert("swap_flag".into(), note);
    }
    if let Some(w) = &policy.swapcache {
        notes.insert(
            "swapcache".into(),
            format!(
                "swapcache_high_wmark={} swapcache_low_wmark={} have no effect: swap-cache reclaim needs \
                 etmem's etmem_swap kernel module, which this kernel does not have",
                w.high_percent, w.low_percent
            ),
        );
    }
    if task.page.pmu.is_some() {
        notes.insert("pmu".into(), "sample_period / vma_updata_rate / cpu_set_size have no effect: etmem's PMU sampling is not in this build".into());
    }
    let max = round::max_score(settings.scan.loops, probes::max_weight(settings.probe));
    if let conf::AccessBound::Count(t) = policy.hot_min_accesses
        && t > max
    {
        notes.insert(
            "threshold".into(),
            format!(
                "T={t} is above {max}, the highest score the {} probe gives in {} scans (it {}): no page \
                 can be hot, every page seen is cold",
                settings.probe,
                settings.scan.loops,
                if probes::max_weight(settings.probe) == 1 {
                    "cannot tell writes from reads, every access scores 1"
                } else {
                    "scores a written page 3"
                }
            ),
        );
    }
    notes
}

impl Engine for PageEngine {
    fn start_task(&mut self, task: &conf::Task) -> Result<(), EngineError> {
        if self.tasks.contains_key(&task.name) {
            return Ok(());
        }
        let policy = round::task_policy(&self.settings.policy, &self.settings.engine, task);
        let stop = Arc::new(StopSignal::default());
        let published = Arc::new(Mutex::new(Published::default()));
        let mut runner = TaskRunner {
            notes: task_notes(&self.settings, task, &policy),
            task: task.clone(),
            policy,
            settings: self.settings.clone(),
            pids: BTreeMap::new(),
            published: Arc::clone(&published),
            started: Instant::now(),
            rounds: 0,
            last_round: None,
            refused_logged: Vec::new(),
            pid_history: procinfo::PidHistory::default(),
            last_error: None,
        };
        let stop2 = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name(format!("page:{}", task.name))
            .spawn(move || runner.run(&stop2))
            .map_err(|e| EngineError::Task {
                task: task.name.clone(),
                reason: format!("cannot start thread: {e}"),
            })?;
        self.tasks.insert(task.name.clone(), TaskThread { stop, handle: Some(handle), published });
        Ok(())
    }

    fn stop_task(&mut self, task: &str) {
        if let Some(mut t) = self.tasks.remove(task) {
            t.stop();
        }
    }

    fn task_stats(&self, task: &str) -> Option<TaskStats> {
        let t = self.tasks.get(task)?;
        let p = t.published.lock().ok()?;
        let mut s = p.stats.clone();
        s.last_aggregation_age_s = p.last_round.map(|t| t.elapsed().as_secs_f64());
        Some(s)
    }

    fn snapshots(&self, task: &str) -> Vec<(u32, Snapshot)> {
        let Some(t) = self.tasks.get(task) else { return Vec::new() };
        t.published
            .lock()
            .map(|p| p.snapshots.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default()
    }

    fn command(&mut self, cmd: &str, task: Option<&str>) -> Result<String, EngineError> {
        let tasks = super::command_tasks(task, self.tasks.keys())?;
        if let Some(out) = super::snapshot_command(cmd, &tasks, |t| self.snapshots(t)) {
            return Ok(out);
        }
        Err(EngineError::UnknownCommand {
            engine: self.name.clone(),
            cmd: cmd.into(),
            known: "regions, snapshot".into(),
        })
    }

    fn stop(&mut self) {
        for (_, mut t) in std::mem::take(&mut self.tasks) {
            t.stop();
        }
    }
}

impl Drop for PageEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What one round of one process cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct RoundCost {
    pages: u64,
    /// Probe and scoring CPU (the scan), seconds.
    scan_cpu_s: f64,
    /// Planning, acting and bringing pages back, seconds.
    act_cpu_s: f64,
    bytes_read: u64,
    pages_evicted: u64,
}

/// One process of a task.
struct PidState {
    proc: Arc<ProcTarget>,
    probe: OsPageProbe,
    actor: PidActor,
    memory: ProcMemory,
    prev: Option<Snapshot>,
    last: RoundCost,
    scan_cpu: Duration,
    brought_back_bytes: u64,
    /// Why the last round did not scan (a closed gate).
    gated: Option<String>,
    rounds_gated: u64,
    last_error: Option<String>,
    gone: bool,
}

/// What the scan threads share, read-only.
struct RoundCtx<'a> {
    settings: &'a PageSettings,
    policy: &'a conf::Policy,
    filter: VmaFilter,
    started: Instant,
    stop: &'a StopSignal,
    host: HostMemInfo,
}

impl RoundCtx<'_> {
    fn aggr_interval_us(&self) -> u64 {
        let s = &self.settings.scan;
        (s.sleep * s.loops + s.interval).as_micros() as u64
    }
}

impl PidState {
    /// One round for this process: gates, scan, plan and act.
    fn round(&mut self, ctx: &RoundCtx<'_>) {
        if ctx.stop.is_stopped() {
            return;
        }
        let cpu0 = swap_backends::thread_cpu_time();
        self.memory = procinfo::proc_memory(self.proc.dir());
        let mem_before = self.memory;
        let task_mem = TaskMemory { rss_bytes: self.memory.rss_bytes, swap_bytes: self.memory.swap_bytes };
        let host = HostMemory { total_bytes: ctx.host.total_bytes, free_bytes: ctx.host.free_bytes };
        // etmem's check_should_swap: a closed gate means no scan at all.
        let gate = policies::gates::sysmem_gate(ctx.policy.sysmem_threshold, &host).and_then(|()| {
            policies::gates::task_swap_gate(
                ctx.policy.swap_threshold_bytes,
                ctx.policy.sysmem_threshold,
                &task_mem,
            )
        });
        if let Err(b) = gate {
            self.gated = Some(format!("not scanned: {b}"));
            self.rounds_gated += 1;
            return;
        }
        self.gated = None;
        let vmas = match self.proc.eligible_vmas(&ctx.filter) {
            Ok(v) => v,
            Err(e) => return self.failed(e),
        };
        let space = PageSpace::new(vmas.into_iter().map(|v| v.range));
        let before = self.probe.cost();
        let sleep = ctx.settings.scan.sleep;
        let scores = match round::run_round(&mut self.probe, space, ctx.settings.scan.loops, |_| {
            ctx.stop.sleep(sleep)
        }) {
            Ok(s) => s,
            Err(RoundError::Stopped) => return,
            Err(RoundError::Probe(e)) => return self.failed(e),
        };
        let scan_cpu = swap_backends::thread_cpu_time().saturating_sub(cpu0);
        let cpu1 = swap_backends::thread_cpu_time();
        let now_us = ctx.started.elapsed().as_micros() as u64;
        let max = round::max_score(ctx.settings.scan.loops, self.probe.max_weight());
        let snapshot = scores.to_snapshot(self.prev.as_ref(), now_us, ctx.aggr_interval_us(), max);

        // The refault probe took the idle pages out of RAM: the policy must
        // see the task as it would be without the probe.
        let space = scores.space();
        let evicted: Vec<AddrRange> = if self.probe.evicts() {
            space.runs(|i| scores.last_state(i) == PageState::Idle)
        } else {
            Vec::new()
        };
        let evicted_bytes: u64 = evicted.iter().map(AddrRange::len).sum();
        // For an evicting probe, the figures from before the arm: reading
        // them now and adding the probe's evictions back would count twice
        // whatever the kernel's counters have not caught up with yet.
        let mem = if self.probe.evicts() { mem_before } else { procinfo::proc_memory(self.proc.dir()) };
        if self.probe.evicts() {
            // Pages out only while being probed do not keep a unit from a collapse.
            let pages: Vec<u64> =
                evicted.iter().flat_map(|r| (r.start.0..r.end.0).step_by(PAGE_SIZE as usize)).collect();
            self.actor.set_probe_pages(&pages);
        }
        let host_now = procinfo::host_memory();
        tracing::debug!(
            pid = self.proc.pid(),
            pages = space.len(),
            seen = scores.seen_pages(),
            evicted_bytes,
            rss_bytes = mem.rss_bytes,
            swap_bytes = mem.swap_bytes,
            regions = snapshot.regions.len(),
            "page round scanned"
        );
        self.actor.on_snapshot(&self.proc, &snapshot, now_us, mem, host_now, &ctx.settings.backends);
        if !evicted.is_empty() {
            let keep = round::subtract_sorted(&evicted, self.actor.paged_out_ranges());
            tracing::debug!(
                pid = self.proc.pid(),
                paged_out_bytes = self.actor.paged_out_now_bytes(),
                bring_back_bytes = keep.iter().map(AddrRange::len).sum::<u64>(),
                idle = ?self.actor.idle_reason,
                "page round acted"
            );
            match probes::bring_back(&self.proc, &keep) {
                Ok(b) => self.brought_back_bytes += b,
                Err(e) => return self.failed(e),
            }
        }
        self.memory = procinfo::proc_memory(self.proc.dir());
        let act_cpu = swap_backends::thread_cpu_time().saturating_sub(cpu1);
        let after = self.probe.cost();
        self.last = RoundCost {
            pages: space.len() as u64,
            scan_cpu_s: scan_cpu.as_secs_f64(),
            act_cpu_s: act_cpu.as_secs_f64(),
            bytes_read: after.bytes_read - before.bytes_read,
            pages_evicted: after.pages_evicted - before.pages_evicted,
        };
        self.scan_cpu += scan_cpu;
        self.prev = Some(snapshot);
        self.last_error = None;
    }

    fn failed(&mut self, e: ProbeError) {
        match e {
            ProbeError::TargetGone { .. } => self.gone = true,
            other => self.last_error = Some(crate::daemon::chain(&other)),
        }
    }
}

/// The thread of one task.
struct TaskRunner {
    task: conf::Task,
    policy: conf::Policy,
    settings: PageSettings,
    notes: BTreeMap<String, String>,
    pids: BTreeMap<u32, PidState>,
    published: Arc<Mutex<Published>>,
    started: Instant,
    rounds: u64,
    last_round: Option<Instant>,
    refused_logged: Vec<u32>,
    /// Keeps a pid task off a reused pid.
    pid_history: procinfo::PidHistory,
    last_error: Option<String>,
}

impl TaskRunner {
    fn run(&mut self, stop: &StopSignal) {
        for (k, v) in &self.notes {
            tracing::warn!(task = %self.task.name, "{k}: {v}");
        }
        while !stop.is_stopped() {
            self.resolve();
            self.round(stop);
            self.publish(false);
            if !stop.sleep(self.settings.scan.interval) {
                break;
            }
        }
        self.publish(true);
    }

    /// etmem resolves the task's pids at every round.
    fn resolve(&mut self) {
        let mut resolved = procinfo::resolve_task(&self.task);
        self.pid_history.filter(&self.task.target, &mut resolved);
        for (pid, why) in &resolved.refused {
            if !self.refused_logged.contains(pid) {
                tracing::warn!(task = %self.task.name, pid, "not monitored: {why}");
                self.refused_logged.push(*pid);
            }
        }
        self.pids.retain(|pid, s| {
            let keep = resolved.pids.contains(pid) && !s.gone && s.proc.is_alive();
            if !keep {
                tracing::info!(task = %self.task.name, pid, "no longer scanned: process exited");
            }
            keep
        });
        for pid in resolved.pids {
            if self.pids.contains_key(&pid) {
                continue;
            }
            match self.add_pid(pid) {
                Ok(s) => {
                    tracing::info!(task = %self.task.name, pid, probe = self.settings.probe.name(), "scanning");
                    self.pids.insert(pid, s);
                }
                Err(e) => {
                    tracing::warn!(task = %self.task.name, pid, "cannot scan: {e}");
                    self.last_error = Some(e);
                }
            }
        }
    }

    fn add_pid(&self, pid: u32) -> Result<PidState, String> {
        let proc = Arc::new(ProcTarget::open(pid).map_err(|e| e.to_string())?);
        let probe = OsPageProbe::new(self.settings.probe, Arc::clone(&proc), self.task.swap_flag)
            .map_err(|e| crate::daemon::chain(&e))?;
        Ok(PidState {
            proc,
            probe,
            actor: PidActor::new(pid, self.policy.clone(), self.settings.schemes.clone()),
            memory: ProcMemory::default(),
            prev: None,
            last: RoundCost::default(),
            scan_cpu: Duration::ZERO,
            brought_back_bytes: 0,
            gated: None,
            rounds_gated: 0,
            last_error: None,
            gone: false,
        })
    }

    /// One round: every process, `max_threads` at a time (each thread takes
    /// its share of the processes one after the other, as etmem's pool does).
    fn round(&mut self, stop: &StopSignal) {
        if self.pids.is_empty() {
            return;
        }
        let ctx = RoundCtx {
            settings: &self.settings,
            policy: &self.policy,
            filter: VmaFilter::anonymous(),
            started: self.started,
            stop,
            host: procinfo::host_memory(),
        };
        let n = clamp_threads(self.task.max_threads).min(self.pids.len());
        let mut groups: Vec<Vec<&mut PidState>> = (0..n).map(|_| Vec::new()).collect();
        for (k, s) in self.pids.values_mut().enumerate() {
            groups[k % n].push(s);
        }
        if n == 1 {
            for s in groups.into_iter().flatten() {
                s.round(&ctx);
            }
        } else {
            std::thread::scope(|scope| {
                for group in groups {
                    let ctx = &ctx;
                    scope.spawn(move || {
                        for s in group {
                            s.round(ctx);
                        }
                    });
                }
            });
        }
        if !stop.is_stopped() {
            self.rounds += 1;
            self.last_round = Some(Instant::now());
        }
    }

    fn publish(&mut self, stopping: bool) {
        let mut s = TaskStats { probe: Some(self.settings.probe.name().to_string()), ..TaskStats::default() };
        let live: Vec<&PidState> = self.pids.values().filter(|p| !p.gone).collect();
        s.pids = self.pids.iter().filter(|(_, p)| !p.gone).map(|(k, _)| *k).collect();
        let sum = |f: &dyn Fn(&PidState) -> u64| -> u64 { live.iter().map(|p| f(p)).sum() };
        s.nr_regions = Some(sum(&|p| p.prev.as_ref().map_or(0, |s| s.regions.len() as u64)));
        s.hot_bytes = Some(sum(&|p| p.actor.totals.hot_bytes));
        s.cold_bytes = Some(sum(&|p| p.actor.totals.cold_bytes));
        s.thp_eligible_bytes = Some(sum(&|p| p.actor.totals.thp_eligible_bytes));
        s.rss_bytes = Some(sum(&|p| p.memory.rss_bytes));
        s.swap_bytes = Some(sum(&|p| p.memory.swap_bytes));
        s.anon_huge_bytes = Some(sum(&|p| p.memory.anon_huge_bytes));
        s.paged_out_bytes = Some(sum(&|p| p.actor.counters.paged_out_bytes));
        s.prefetched_bytes = Some(sum(&|p| p.actor.counters.prefetched_bytes));
        s.refaults = Some(sum(&|p| p.actor.counters.refaulted_pages));
        s.collapses = Some(sum(&|p| p.actor.counters.collapses_done));
        s.demotions = Some(sum(&|p| p.actor.counters.demotions));
        let protected = sum(&|p| p.actor.protected_bytes());
        let quotas: Vec<(Option<u64>, u64)> = live.iter().map(|p| p.actor.quota()).collect();
        s.quota_used_permil = quotas.iter().filter_map(|q| q.0).max();
        s.quota_exceeded = Some(quotas.iter().map(|q| q.1).sum());
        s.aggregations = Some(self.rounds);
        s.last_aggregation_age_s = self.last_round.map(|t| t.elapsed().as_secs_f64());
        s.monitor_cpu_s = Some(live.iter().map(|p| p.scan_cpu.as_secs_f64()).sum());
        s.action_cpu_s = Some(live.iter().map(|p| p.actor.counters.action_cpu.as_secs_f64()).sum());
        s.extra = self.notes.clone();
        let counters: Vec<&super::act::ActCounters> = live.iter().map(|p| &p.actor.counters).collect();
        if let Some(note) = super::act::protected_note(protected, &counters) {
            s.extra.insert("refault_protected".into(), note);
        }
        if let Some(note) = super::act::pageout_note(&counters) {
            s.extra.insert("pageouts".into(), note);
        }

        let pages: u64 = live.iter().map(|p| p.last.pages).sum();
        let scan_cpu: f64 = live.iter().map(|p| p.last.scan_cpu_s).sum();
        let act_cpu: f64 = live.iter().map(|p| p.last.act_cpu_s).sum();
        if pages > 0 {
            let gib = (pages * PAGE_SIZE) as f64 / f64::from(1u32 << 30);
            s.extra.insert(
                "scan_cost".into(),
                format!(
                    "{pages} pages ({}) per round, scan CPU {:.1} ms/round ({:.1} ms per GiB), plan+act CPU {:.1} ms/round, {} read",
                    crate::render::bytes(pages * PAGE_SIZE),
                    scan_cpu * 1e3,
                    scan_cpu * 1e3 / gib.max(f64::MIN_POSITIVE),
                    act_cpu * 1e3,
                    crate::render::bytes(live.iter().map(|p| p.last.bytes_read).sum())
                ),
            );
        }
        if self.settings.probe == ProbeKind::Refault {
            let evicted: u64 = live.iter().map(|p| p.last.pages_evicted).sum();
            let back: u64 = live.iter().map(|p| p.brought_back_bytes).sum();
            let r = live.iter().filter_map(|p| p.probe.refault_stats()).fold((0, 0, 0, 0), |a, r| {
                (
                    a.0 + r.skipped_no_swap,
                    a.1 + r.skipped_huge,
                    a.2 + r.skipped_file_or_shared,
                    a.3 + r.failed_arms,
                )
            });
            s.extra.insert(
                "probe_cost".into(),
                format!(
                    "last round the refault probe paged out {evicted} pages ({}); {} brought back in total \
                     for the policy's kept pages; pages not probed so far: {} without swap space, {} in huge \
                     pages, {} shared or file-backed, {} that stayed in RAM",
                    crate::render::bytes(evicted * PAGE_SIZE),
                    crate::render::bytes(back),
                    r.0,
                    r.1,
                    r.2,
                    r.3
                ),
            );
        }
        let scanned: u64 = live.iter().map(|p| p.probe.cost().pages_scanned).sum();
        s.extra.insert("pages_scanned".into(), scanned.to_string());
        let gated: u64 = live.iter().map(|p| p.rounds_gated).sum();
        if gated > 0 {
            s.extra.insert("rounds_not_scanned".into(), gated.to_string());
        }
        s.idle_reason = if live.is_empty() {
            Some(if stopping { "stopped".into() } else { "no live process matches the task".into() })
        } else {
            live.iter()
                .find_map(|p| p.gated.clone())
                .or_else(|| live.iter().find_map(|p| p.actor.idle_reason.clone()))
        };
        s.last_error = live.iter().find_map(|p| p.last_error.clone()).or_else(|| self.last_error.clone());
        let snapshots: BTreeMap<u32, Snapshot> =
            self.pids.iter().filter_map(|(pid, p)| p.prev.clone().map(|s| (*pid, s))).collect();
        if let Ok(mut p) = self.published.lock() {
            p.stats = s;
            p.snapshots = snapshots;
            p.last_round = self.last_round;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(probe: ProbeKind, loops: u32) -> PageSettings {
        PageSettings {
            scan: conf::PageScan { loops, sleep: Duration::from_secs(1), interval: Duration::from_secs(1) },
            engine: conf::PageEngine::default(),
            policy: conf::Policy::etmem_slide(),
            schemes: Vec::new(),
            backends: Arc::new(Backends::default()),
            probe,
            probe_choice: "probe refault; not soft-dirty: none here".into(),
        }
    }

    #[test]
    fn notes_say_what_has_no_effect_and_what_the_probe_costs() {
        let mut task = conf::Task::new("p", "slide", "t", conf::TaskTarget::Pid(1));
        task.swap_flag = true;
        task.page.hot_threshold = Some(2);
        let mut project_policy = conf::Policy::etmem_slide();
        project_policy.swapcache = Some(conf::SwapcacheWatermarks { high_percent: 10, low_percent: 6 });
        let s = settings(ProbeKind::Refault, 1);
        let policy = round::task_policy(&project_policy, &s.engine, &task);
        let notes = task_notes(&s, &task, &policy);
        assert!(notes["probe_warning"].contains("pages out every resident page"));
        assert!(notes["probe_warning"].contains("forbid_refault"));
        assert!(notes["swap_flag"].contains("no effect here"));
        assert!(notes["swapcache"].contains("etmem_swap kernel module"));
        // T = 2 with one scan of a probe that scores reads 1: nothing can be hot.
        assert!(notes["threshold"].contains("T=2 is above 1"), "{notes:?}");
        let s = settings(ProbeKind::EtmemIdlePages, 1);
        let notes = task_notes(&s, &task, &policy);
        assert!(notes["swap_flag"].starts_with("honoured"));
        assert!(!notes.contains_key("threshold") && !notes.contains_key("probe_warning"));
    }

    #[test]
    fn forbid_refault_refuses_a_configured_refault_probe() {
        let e = choose_probe(
            &conf::PageEngine {
                probe: conf::ProbeChoice::Refault,
                forbid_refault: true,
                ..Default::default()
            },
            true,
            "page",
        )
        .expect_err("forbidden");
        assert!(e.to_string().contains("forbid_refault"), "{e}");
        let e = choose_probe(
            &conf::PageEngine { probe: conf::ProbeChoice::Simulated, ..Default::default() },
            true,
            "page",
        )
        .expect_err("simulated");
        assert!(e.to_string().contains("simulated"), "{e}");
    }

    #[test]
    fn max_threads_is_clamped_as_etmem_does() {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(clamp_threads(0), 1);
        assert_eq!(clamp_threads(1), 1);
        assert_eq!(clamp_threads(4096), 2 * cpus + 1);
    }

    #[test]
    fn a_stop_wakes_a_sleeper_at_once() {
        let stop = Arc::new(StopSignal::default());
        let s2 = Arc::clone(&stop);
        let t = std::thread::spawn(move || s2.sleep(Duration::from_secs(600)));
        stop.stop();
        assert!(!t.join().expect("join"), "the sleep was cut short");
        assert!(!stop.sleep(Duration::from_secs(600)));
        assert!(StopSignal::default().sleep(Duration::ZERO));
    }
}
