//! The `region` engine: DAMON's region-based sampling run in userspace
//! (damon-core) on the processes of each task, one monitoring thread per
//! task, fed by the best access probe this host offers. Each snapshot goes
//! through the project's policy and schemes, and the plan is carried out.

use super::act::PidActor;
use super::procinfo::{self, ProcMemory};
use super::{Engine, EngineEnv, EngineError};
use crate::protocol::TaskStats;
use crate::record::feed::{FeedItem, SnapshotFeed};
use crate::runtime::Backends;
use damon_core::monitor::{Monitor, MonitorAttrs, TargetId, TargetOps};
use damon_core::ops::maps::VmaFilter;
use damon_core::ops::refault::{RefaultOptions, ThpPolicy};
use damon_core::ops::select::{self, HostEnv, OsProbe, ProbeKind, ProbeOptions};
use damon_core::ops::{ProbeStats, ProcTarget};
use damon_core::{AccessProbe, AddrRange, ProbeError, Snapshot};
use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a task's target (process name, cgroup) is resolved to pids again.
const RESOLVE_INTERVAL: Duration = Duration::from_secs(1);

/// What a task's thread publishes for `project show` and engine commands.
#[derive(Debug, Default, Clone)]
struct Published {
    stats: TaskStats,
    snapshots: BTreeMap<u32, Snapshot>,
}

struct TaskThread {
    stop: mpsc::Sender<()>,
    handle: Option<JoinHandle<()>>,
    published: Arc<Mutex<Published>>,
    /// Every aggregation's snapshots, for recorders.
    feed: Arc<SnapshotFeed>,
}

impl TaskThread {
    fn stop(&mut self) {
        let _ = self.stop.send(());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Settings every task of the engine shares.
#[derive(Debug, Clone)]
struct RegionSettings {
    attrs: MonitorAttrs,
    /// The region engine's conf (probe choice; `max_probed_accesses` depends
    /// on the probe chosen at start).
    region: conf::RegionEngine,
    forbid_refault: bool,
    filter: VmaFilter,
    policy: conf::Policy,
    schemes: Vec<conf::Scheme>,
    backends: Arc<Backends>,
    /// The project will have swap of its own (for probe selection).
    swap_planned: bool,
    /// How probes treat huge pages ([`probe_options`]).
    probe_options: ProbeOptions,
}

/// A huge page promoted by us is held (not probed) for at least this many
/// `thp_min_age + aggr_interval`s before it has to show again that it is in
/// use (unless `thp_hold` says otherwise): a hot unit is split after its
/// hold and `cold_min_age`, and collapsed again about `thp_min_age` plus an
/// aggregation later, so it spends at most about 1 / (1 + this) of its
/// time in base pages, and the split and collapse (about 2 s of CPU per
/// GiB) come at most once per hold.
const HOLD_PER_COLLAPSE_DELAY: u32 = 10;

/// How the refault probe treats huge pages (issue 5; ARCHITECTURE.md, "THP
/// and the refault probe"): without THP rules, as its default (a sampled
/// huge page is paged out whole); with them, it holds huge pages instead of
/// paging them out, which would undo every collapse. The hold lasts
/// `thp_hold`, by default `max(cold_min_age, 10 (thp_min_age +
/// aggr_interval))`, when something can demote (then the unit looks idle,
/// the cold rule splits it, and its base pages are probed again), for ever
/// otherwise (nothing could split it to look again).
pub fn probe_options(
    policy: &conf::Policy,
    schemes: &[conf::Scheme],
    aggr_interval: Duration,
) -> ProbeOptions {
    let promotes = policy.promote_thp || schemes.iter().any(|s| s.action == conf::Action::Hugepage);
    let demotes = policy.demote_thp || schemes.iter().any(|s| s.action == conf::Action::Nohugepage);
    let thp = if promotes || demotes {
        let ttl = policy.thp_hold.unwrap_or_else(|| {
            policy.cold_min_age.max((policy.thp_min_age + aggr_interval) * HOLD_PER_COLLAPSE_DELAY)
        });
        ThpPolicy::Hold { ttl: demotes.then_some(ttl) }
    } else {
        ThpPolicy::default()
    };
    ProbeOptions { refault: RefaultOptions { thp, ..RefaultOptions::default() }, ..ProbeOptions::default() }
}

/// One `region` engine of a started project.
pub struct RegionEngine {
    name: String,
    /// Set when another engine kind's config runs here (etmem's `damon`).
    stands_in_for: Option<String>,
    settings: RegionSettings,
    tasks: BTreeMap<String, TaskThread>,
}

impl std::fmt::Debug for RegionEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionEngine").field("name", &self.name).field("tasks", &self.tasks.keys()).finish()
    }
}

/// DAMON monitoring attributes from the project's region scan.
pub fn monitor_attrs(scan: &conf::RegionScan) -> MonitorAttrs {
    MonitorAttrs {
        sample_interval_us: scan.sample_interval.as_micros() as u64,
        aggr_interval_us: scan.aggr_interval.as_micros() as u64,
        update_interval_us: scan.update_interval.as_micros() as u64,
        min_nr_regions: scan.min_nr_regions,
        max_nr_regions: scan.max_nr_regions,
        intervals_goal: scan.autotune.as_ref().map(|g| damon_core::monitor::IntervalsGoal {
            access_bp: g.access_bp,
            aggrs: g.aggrs,
            min_sample_us: g.min_sample_interval.as_micros() as u64,
            max_sample_us: g.max_sample_interval.as_micros() as u64,
        }),
        ..MonitorAttrs::default()
    }
}

impl RegionEngine {
    /// `probe` and `file_backed` come from a native `region` engine; etmem's
    /// `damon` engine runs here with the defaults and its scheme.
    pub fn new(
        project: &conf::Project,
        engine: &conf::Engine,
        region: &conf::RegionEngine,
        env: &EngineEnv,
    ) -> Result<RegionEngine, EngineError> {
        let conf::Scan::Region(scan) = &project.scan else {
            return Err(EngineError::Unsupported {
                kind: "region".into(),
                reason: format!("project {} has no region scan parameters", project.name),
            });
        };
        let attrs = monitor_attrs(scan);
        attrs
            .validate()
            .map_err(|e| EngineError::Unsupported { kind: "region".into(), reason: e.to_string() })?;
        let mut schemes = project.schemes.clone();
        schemes.extend(engine.kind.schemes().iter().cloned());
        let filter = VmaFilter { file_backed: region.file_backed, ..VmaFilter::anonymous() };
        let stands_in_for = match &engine.kind {
            conf::EngineKind::Region(_) => None,
            other => Some(other.kind_str().to_string()),
        };
        Ok(RegionEngine {
            name: engine.name.clone(),
            stands_in_for,
            settings: RegionSettings {
                attrs,
                region: region.clone(),
                forbid_refault: false,
                filter,
                policy: project.policy.clone(),
                probe_options: probe_options(&project.policy, &schemes, scan.aggr_interval),
                schemes,
                backends: Arc::clone(&env.backends),
                swap_planned: project
                    .backends
                    .iter()
                    .any(|b| matches!(b, conf::Backend::Zram(_) | conf::Backend::SwapFile(_))),
            },
            tasks: BTreeMap::new(),
        })
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

/// Choose the probe for this engine, or say why none works.
fn choose_probe(s: &RegionSettings) -> Result<(ProbeKind, String), EngineError> {
    let env = HostEnv { swap_planned: s.swap_planned, ..HostEnv::default() };
    let unsupported = |reason: String| EngineError::Unsupported { kind: "region".into(), reason };
    if s.region.probe == conf::ProbeChoice::Simulated {
        return Err(unsupported("probe simulated drives only the built-in demo, not real tasks".into()));
    }
    let sel = match probe_kind(s.region.probe) {
        Some(kind) => select::select_explicit(kind, &env, None),
        None => {
            let forbidden: &[ProbeKind] = if s.forbid_refault { &[ProbeKind::Refault] } else { &[] };
            select::select_auto(&env, None, forbidden)
        }
    }
    .map_err(|e| unsupported(e.to_string()))?;
    Ok((sel.chosen, sel.to_string()))
}

impl Engine for RegionEngine {
    fn start_task(&mut self, task: &conf::Task) -> Result<(), EngineError> {
        if self.tasks.contains_key(&task.name) {
            return Ok(());
        }
        let (kind, why) = choose_probe(&self.settings)?;
        tracing::info!(task = %task.name, "region engine: {why}");
        let attrs = MonitorAttrs {
            max_probed_accesses: self.settings.region.max_probed_accesses.unwrap_or(match kind {
                ProbeKind::Refault => policies::settled_after(
                    &self.settings.policy,
                    &self.settings.schemes,
                    self.settings.attrs.max_nr_accesses(),
                ),
                _ => 0,
            }),
            ..self.settings.attrs.clone()
        };
        let monitor = Monitor::new(attrs, seed_for(&task.name))
            .map_err(|e| EngineError::Task { task: task.name.clone(), reason: e.to_string() })?;
        let (stop_tx, stop_rx) = mpsc::channel();
        let published = Arc::new(Mutex::new(Published::default()));
        let feed = SnapshotFeed::new();
        let mut runner = TaskRunner {
            task: task.clone(),
            settings: self.settings.clone(),
            probe_kind: kind,
            monitor,
            targets: BTreeMap::new(),
            next_id: 0,
            published: Arc::clone(&published),
            feed: Arc::clone(&feed),
            started: Instant::now(),
            monitor_cpu: Duration::ZERO,
            last_aggregation: None,
            refused_logged: Vec::new(),
            pid_history: procinfo::PidHistory::default(),
            last_error: None,
        };
        let handle = std::thread::Builder::new()
            .name(format!("region:{}", task.name))
            .spawn(move || runner.run(stop_rx))
            .map_err(|e| EngineError::Task {
                task: task.name.clone(),
                reason: format!("cannot start thread: {e}"),
            })?;
        self.tasks
            .insert(task.name.clone(), TaskThread { stop: stop_tx, handle: Some(handle), published, feed });
        Ok(())
    }

    fn stop_task(&mut self, task: &str) {
        if let Some(mut t) = self.tasks.remove(task) {
            t.stop();
        }
    }

    fn task_stats(&self, task: &str) -> Option<TaskStats> {
        let t = self.tasks.get(task)?;
        Some(t.published.lock().map(|p| p.stats.clone()).unwrap_or_default())
    }

    fn feed(&self, task: &str) -> Option<Arc<SnapshotFeed>> {
        self.tasks.get(task).map(|t| Arc::clone(&t.feed))
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

    fn running_as(&self) -> Option<String> {
        self.stands_in_for.as_ref().map(|k| format!("region, standing in for {k}"))
    }
}

impl Drop for RegionEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A stable per-task seed so runs are reproducible for the same task name.
fn seed_for(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// damo's raw form: a header per target, then `start-end (size): nr_accesses age`.
pub fn damo_raw(task: &str, pid: u32, snap: &Snapshot) -> String {
    let mut out = format!(
        "# task {task} pid {pid} time {:.3} s  aggr {} us  nr_regions {}\n",
        snap.time_us as f64 / 1e6,
        snap.aggr_interval_us,
        snap.regions.len()
    );
    for r in &snap.regions {
        out.push_str(&format!(
            "{:012x}-{:012x} ({:>12}): {:>5} {:>5}\n",
            r.range.start.0,
            r.range.end.0,
            crate::render::bytes(r.range.len()),
            r.nr_accesses,
            r.age
        ));
    }
    out
}

/// How often the region engine reads a target's AnonHugePages, at most:
/// the THP rules need it, ...
const ROLLUP_INTERVAL: Duration = Duration::from_secs(2);
/// ... `project show` alone does not.
const ROLLUP_INTERVAL_NO_THP: Duration = Duration::from_secs(10);
/// ... and at least this many times the last read's duration apart, so the
/// read costs at most 1 % of a CPU however large the target (a 3.4 GiB
/// mariadbd takes 40-150 ms per read).
const ROLLUP_COST_FACTOR: u32 = 100;

/// One process being monitored.
struct PidTarget {
    id: TargetId,
    proc: Arc<ProcTarget>,
    probe: OsProbe,
    actor: PidActor,
    memory: ProcMemory,
    /// When AnonHugePages was last read (smaps_rollup costs O(RSS)), and
    /// how long that took.
    rollup_at: Option<Instant>,
    rollup_took: Duration,
}

/// The monitoring thread of one task.
struct TaskRunner {
    task: conf::Task,
    settings: RegionSettings,
    probe_kind: ProbeKind,
    monitor: Monitor,
    targets: BTreeMap<u32, PidTarget>,
    next_id: u64,
    published: Arc<Mutex<Published>>,
    feed: Arc<SnapshotFeed>,
    started: Instant,
    monitor_cpu: Duration,
    last_aggregation: Option<Instant>,
    refused_logged: Vec<u32>,
    /// Keeps a pid task off a reused pid.
    pid_history: procinfo::PidHistory,
    last_error: Option<String>,
}

/// `TargetOps` over the runner's targets.
struct Ops<'a> {
    targets: &'a mut BTreeMap<u32, PidTarget>,
    filter: &'a VmaFilter,
}

impl Ops<'_> {
    fn by_id(&mut self, id: TargetId) -> Option<&mut PidTarget> {
        self.targets.values_mut().find(|t| t.id == id)
    }
}

impl TargetOps for Ops<'_> {
    fn probe(&mut self, target: TargetId) -> Option<&mut dyn AccessProbe> {
        self.by_id(target).map(|t| &mut t.probe as &mut dyn AccessProbe)
    }

    fn mappings(&mut self, target: TargetId) -> Option<Vec<AddrRange>> {
        let filter = self.filter.clone();
        let t = self.by_id(target)?;
        t.proc.eligible_vmas(&filter).ok().map(|v| v.into_iter().map(|m| m.range).collect())
    }
}

impl TaskRunner {
    fn run(&mut self, stop: mpsc::Receiver<()>) {
        let mut next_resolve = Instant::now();
        loop {
            if Instant::now() >= next_resolve {
                let first = self.targets.is_empty();
                self.resolve();
                next_resolve = Instant::now() + RESOLVE_INTERVAL;
                if first {
                    self.publish(false);
                }
            }
            let cpu0 = swap_backends::thread_cpu_time();
            let mut ops = Ops { targets: &mut self.targets, filter: &self.settings.filter };
            let outcome = self.monitor.step(&mut ops);
            self.monitor_cpu += swap_backends::thread_cpu_time().saturating_sub(cpu0);
            for (id, err) in outcome.probe_failures {
                self.probe_failed(id, err);
            }
            if let Some(snaps) = outcome.aggregated {
                self.on_aggregation(snaps);
            }
            // The step ended by arming the probes, and the next check sees
            // what happened since: wait a whole sample interval from here,
            // as kdamond sleeps one after prepare. A fixed schedule would
            // shrink that window to nothing whenever the thread runs late (a
            // slow probe, or a busy host waking it late), and a window of
            // nothing sees no access: hot regions would read cold.
            let interval = Duration::from_micros(self.monitor.sample_interval_us());
            match stop.recv_timeout(interval) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.publish(true);
    }

    /// Add new processes of the task, drop the ones that are gone.
    fn resolve(&mut self) {
        let mut resolved = procinfo::resolve_task(&self.task);
        self.pid_history.filter(&self.task.target, &mut resolved);
        for (pid, why) in &resolved.refused {
            if !self.refused_logged.contains(pid) {
                tracing::warn!(task = %self.task.name, pid, "not monitored: {why}");
                self.refused_logged.push(*pid);
            }
        }
        let gone: Vec<u32> = self
            .targets
            .keys()
            .copied()
            .filter(|p| !resolved.pids.contains(p) || !self.targets[p].proc.is_alive())
            .collect();
        for pid in gone {
            self.drop_target(pid, "process exited");
        }
        for pid in resolved.pids {
            if self.targets.contains_key(&pid) {
                continue;
            }
            if let Err(e) = self.add_target(pid) {
                self.last_error = Some(e.clone());
                tracing::warn!(task = %self.task.name, pid, "cannot monitor: {e}");
            }
        }
    }

    fn add_target(&mut self, pid: u32) -> Result<(), String> {
        let proc = Arc::new(ProcTarget::open(pid).map_err(|e| e.to_string())?);
        let probe = select::build(self.probe_kind, Arc::clone(&proc), &self.settings.probe_options)
            .map_err(|e| e.to_string())?;
        let vmas = proc.eligible_vmas(&self.settings.filter).map_err(|e| e.to_string())?;
        let mappings: Vec<AddrRange> = vmas.into_iter().map(|v| v.range).collect();
        if mappings.is_empty() {
            return Err("no eligible (anonymous, private) memory".into());
        }
        let id = TargetId(self.next_id);
        self.next_id += 1;
        self.monitor.add_target(id, &mappings).map_err(|e| e.to_string())?;
        let actor = PidActor::new(pid, self.settings.policy.clone(), self.settings.schemes.clone());
        tracing::info!(task = %self.task.name, pid, probe = self.probe_kind.name(), "monitoring");
        self.targets.insert(
            pid,
            PidTarget {
                id,
                proc,
                probe,
                actor,
                memory: ProcMemory::default(),
                rollup_at: None,
                rollup_took: Duration::ZERO,
            },
        );
        Ok(())
    }

    fn drop_target(&mut self, pid: u32, why: &str) {
        if let Some(t) = self.targets.remove(&pid) {
            let _ = self.monitor.remove_target(t.id);
            tracing::info!(task = %self.task.name, pid, "no longer monitored: {why}");
        }
    }

    fn probe_failed(&mut self, id: TargetId, err: ProbeError) {
        let Some(pid) = self.targets.iter().find(|(_, t)| t.id == id).map(|(p, _)| *p) else { return };
        match err {
            ProbeError::TargetGone { .. } => self.drop_target(pid, "process exited"),
            other => {
                let msg = damon_core_error_chain(&other);
                if self.last_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(task = %self.task.name, pid, "probe: {msg}");
                }
                self.last_error = Some(msg);
            }
        }
    }

    fn on_aggregation(&mut self, snaps: Vec<(TargetId, Snapshot)>) {
        self.last_aggregation = Some(Instant::now());
        let host = procinfo::host_memory();
        let now_us = self.started.elapsed().as_micros() as u64;
        let mut published: BTreeMap<u32, Snapshot> = BTreeMap::new();
        let mut mappings: BTreeMap<u32, Vec<AddrRange>> = BTreeMap::new();
        let watched = self.feed.is_watched();
        for (id, snap) in snaps {
            let Some(t) = self.targets.values_mut().find(|t| t.id == id) else { continue };
            // VmRSS/VmSwap every aggregation; AnonHugePages (a page-table
            // walk, O(RSS)) at most every ROLLUP_INTERVAL(_NO_THP) and never for more
            // than 1 % of the time, so the cost does not grow with the
            // target's size.
            let least = if t.actor.thp_rules() { ROLLUP_INTERVAL } else { ROLLUP_INTERVAL_NO_THP };
            let every = least.max(t.rollup_took * ROLLUP_COST_FACTOR);
            let huge = match t.rollup_at {
                Some(at) if at.elapsed() < every => t.memory.anon_huge_bytes,
                _ => {
                    let now = Instant::now();
                    t.rollup_at = Some(now);
                    let huge = procinfo::anon_huge_bytes(t.proc.dir());
                    t.rollup_took = now.elapsed();
                    huge
                }
            };
            t.memory = procinfo::proc_status_memory(t.proc.dir(), huge);
            // DAMON's regions span the small gaps between mappings; the
            // policy only sees memory that is mapped and eligible.
            if let Ok(vmas) = t.proc.eligible_vmas(&self.settings.filter) {
                let ranges: Vec<AddrRange> = vmas.into_iter().map(|v| v.range).collect();
                let mapped = clip(&snap, &ranges);
                if let OsProbe::Refault(p) = &mut t.probe {
                    t.actor.set_probe_pages(&p.take_paged_out());
                }
                t.actor.on_snapshot(&t.proc, &mapped, now_us, t.memory, host, &self.settings.backends);
                if watched {
                    mappings.insert(t.proc.pid(), ranges);
                }
            }
            published.insert(t.proc.pid(), snap);
        }
        self.feed.publish(|| FeedItem {
            at: Instant::now(),
            snapshots: published.clone(),
            mappings,
            stats: None,
        });
        if let Ok(mut p) = self.published.lock() {
            p.snapshots = published;
        }
        self.publish(false);
    }

    fn publish(&mut self, stopping: bool) {
        let mut s = TaskStats { probe: Some(self.probe_kind.name().to_string()), ..TaskStats::default() };
        s.pids = self.targets.keys().copied().collect();
        let sum = |f: &dyn Fn(&PidTarget) -> u64| -> u64 { self.targets.values().map(f).sum() };
        s.nr_regions = Some(self.monitor.nr_regions() as u64);
        s.hot_bytes = Some(sum(&|t| t.actor.totals.hot_bytes));
        s.cold_bytes = Some(sum(&|t| t.actor.totals.cold_bytes));
        s.thp_eligible_bytes = Some(sum(&|t| t.actor.totals.thp_eligible_bytes));
        s.rss_bytes = Some(sum(&|t| t.memory.rss_bytes));
        s.swap_bytes = Some(sum(&|t| t.memory.swap_bytes));
        s.anon_huge_bytes = Some(sum(&|t| t.memory.anon_huge_bytes));
        s.paged_out_bytes = Some(sum(&|t| t.actor.counters.paged_out_bytes));
        s.prefetched_bytes = Some(sum(&|t| t.actor.counters.prefetched_bytes));
        s.refaults = Some(sum(&|t| t.actor.counters.refaulted_pages));
        s.collapses = Some(sum(&|t| t.actor.counters.collapses_done));
        s.demotions = Some(sum(&|t| t.actor.counters.demotions));
        let protected = sum(&|t| t.actor.protected_bytes());
        let quotas: Vec<(Option<u64>, u64)> = self.targets.values().map(|t| t.actor.quota()).collect();
        s.quota_used_permil = quotas.iter().filter_map(|q| q.0).max();
        s.quota_exceeded = Some(quotas.iter().map(|q| q.1).sum());
        s.aggregations = Some(self.monitor.stats().aggregations);
        s.last_aggregation_age_s = self.last_aggregation.map(|t| t.elapsed().as_secs_f64());
        s.monitor_cpu_s = Some(self.monitor_cpu.as_secs_f64());
        s.action_cpu_s = Some(self.targets.values().map(|t| t.actor.counters.action_cpu.as_secs_f64()).sum());
        let probe: ProbeStats = self.targets.values().fold(ProbeStats::default(), |mut acc, t| {
            let p = t.probe.stats();
            acc.addrs_checked += p.addrs_checked;
            acc.accessed += p.accessed;
            acc.unknown += p.unknown;
            acc
        });
        let counters: Vec<&super::act::ActCounters> =
            self.targets.values().map(|t| &t.actor.counters).collect();
        if let Some(note) = super::act::protected_note(protected, &counters) {
            s.extra.insert("refault_protected".into(), note);
        }
        if let Some(note) = super::act::pageout_note(&counters) {
            s.extra.insert("pageouts".into(), note);
        }
        let mut samples = format!(
            "{} checked, {} accessed, {} unknown",
            probe.addrs_checked, probe.accessed, probe.unknown
        );
        let cap = self.monitor.attrs().max_probed_accesses;
        if cap > 0 {
            samples += &format!(
                ", {} filled in for regions already seen accessed (max_probed_accesses {cap})",
                self.monitor.stats().imputed_samples
            );
        }
        s.extra.insert("probe_samples".into(), samples);
        if self.probe_kind == ProbeKind::Refault {
            let armed: u64 =
                self.targets.values().filter_map(|t| t.probe.refault_stats()).map(|r| r.pages_armed).sum();
            s.extra.insert(
                "probe_cost".into(),
                format!("the refault probe paged out {armed} sampled pages; each hot one faults back in"),
            );
            if let ThpPolicy::Hold { ttl } = self.settings.probe_options.refault.thp {
                let (mut expired, mut held) = (0, 0);
                for t in self.targets.values() {
                    if let OsProbe::Refault(p) = &t.probe {
                        let (e, h) = p.held_bytes();
                        expired += e;
                        held += h;
                    }
                }
                s.extra.insert(
                    "probe_huge_pages".into(),
                    format!(
                        "held, not probed: {} ({} expired: idle until split); {}",
                        crate::render::bytes(held),
                        crate::render::bytes(expired),
                        ttl.map_or("a hold never expires (no demotion)".to_owned(), |t| format!(
                            "hold {} ±25 % (thp_hold)",
                            conf::units::fmt_duration(t)
                        ))
                    ),
                );
            }
        }
        let actors: Vec<&PidActor> = self.targets.values().map(|t| &t.actor).collect();
        s.extra.extend(super::act::thp_extra(&actors));
        let errors: BTreeMap<String, u64> = self
            .targets
            .values()
            .flat_map(|t| t.actor.counters.errors.clone())
            .fold(BTreeMap::new(), |mut acc, (k, v)| {
                *acc.entry(k).or_default() += v;
                acc
            });
        s.action_errors = errors.clone();
        if !errors.is_empty() {
            s.extra.insert(
                "action_errors".into(),
                errors.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "),
            );
        }
        s.idle_reason = if self.targets.is_empty() {
            Some(if stopping { "stopped".into() } else { "no live process matches the task".into() })
        } else {
            self.targets.values().find_map(|t| t.actor.idle_reason.clone())
        };
        s.last_error = self.last_error.clone();
        if let Ok(mut p) = self.published.lock() {
            p.stats = s;
        }
    }
}

/// The parts of a snapshot's regions that lie inside `mappings` (sorted,
/// disjoint), each piece keeping its region's counts.
///
/// DAMON's vaddr regions span the small gaps between mappings, so one region
/// can cover the tail of one mapping and the head of the next. When such a
/// region was seen accessed, nothing says which of its mappings the accesses
/// came from (the tail of an idle buffer next to a hot one reads hot), so its
/// pieces get age 0: they are never old hot memory, which a huge page needs.
/// Unaccessed pieces keep their age (an idle region is idle in every piece).
pub fn clip(snap: &Snapshot, mappings: &[AddrRange]) -> Snapshot {
    let mut regions = Vec::with_capacity(snap.regions.len());
    let mut i = 0;
    for r in &snap.regions {
        while i < mappings.len() && mappings[i].end <= r.range.start {
            i += 1;
        }
        let first = regions.len();
        let mut j = i;
        while j < mappings.len() && mappings[j].start < r.range.end {
            if let Some(range) = r.range.intersect(&mappings[j]) {
                regions.push(damon_core::RegionSnapshot { range, ..*r });
            }
            j += 1;
        }
        if r.nr_accesses > 0 && regions.len() - first > 1 {
            regions[first..].iter_mut().for_each(|p| p.age = 0);
        }
    }
    Snapshot { regions, ..snap.clone() }
}

fn damon_core_error_chain(e: &dyn std::error::Error) -> String {
    crate::daemon::chain(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use damon_core::RegionSnapshot;

    fn reg(a: u64, b: u64, nr_accesses: u32, age: u32) -> RegionSnapshot {
        RegionSnapshot { range: AddrRange::new(a, b), nr_accesses, age }
    }

    #[test]
    fn huge_pages_are_held_for_thp_hold_or_ten_collapse_delays() {
        let secs = Duration::from_secs;
        let thp = |p: &conf::Policy, aggr: u64| probe_options(p, &[], secs(aggr)).refault.thp;
        let mut p =
            conf::Policy { cold_min_age: secs(120), thp_min_age: Duration::ZERO, ..Default::default() };
        assert_eq!(thp(&p, 30), ThpPolicy::default(), "no THP rule: huge pages are probed whole");
        p.promote_thp = true;
        assert_eq!(thp(&p, 30), ThpPolicy::Hold { ttl: None }, "nothing demotes: held for ever");
        p.demote_thp = true;
        // Ten times the delay between a split and the next collapse.
        assert_eq!(thp(&p, 30), ThpPolicy::Hold { ttl: Some(secs(300)) });
        p.thp_min_age = secs(5);
        assert_eq!(thp(&p, 1), ThpPolicy::Hold { ttl: Some(secs(120)) }, "at least cold_min_age");
        p.thp_hold = Some(secs(1800));
        assert_eq!(thp(&p, 30), ThpPolicy::Hold { ttl: Some(secs(1800)) });
        // A nohugepage scheme demotes too.
        let p = conf::Policy { thp_hold: Some(secs(7)), ..Default::default() };
        let scheme = conf::Scheme {
            pattern: conf::AccessPattern::default(),
            action: conf::Action::Nohugepage,
            quota: None,
            watermarks: None,
            apply_interval: None,
        };
        assert_eq!(probe_options(&p, &[scheme], secs(1)).refault.thp, ThpPolicy::Hold { ttl: Some(secs(7)) });
    }

    #[test]
    fn clipping_keeps_only_mapped_parts() {
        let snap = Snapshot {
            regions: vec![reg(0x0, 0x4000, 0, 7), reg(0x4000, 0x6000, 5, 3), reg(0x8000, 0x9000, 5, 3)],
            ..Snapshot::default()
        };
        let maps =
            [AddrRange::new(0x1000, 0x2000), AddrRange::new(0x3000, 0x6000), AddrRange::new(0x8000, 0xa000)];
        let out = clip(&snap, &maps);
        assert_eq!(
            out.regions,
            vec![
                reg(0x1000, 0x2000, 0, 7),
                reg(0x3000, 0x4000, 0, 7),
                reg(0x4000, 0x6000, 5, 3),
                reg(0x8000, 0x9000, 5, 3)
            ]
        );
    }

    /// The tail of an idle mapping shares a region with the head of a hot
    /// one across the gap: both pieces read accessed, neither may look old
    /// hot memory (the THP promotion would collapse the idle tail).
    #[test]
    fn accessed_regions_spanning_mappings_give_young_pieces() {
        let snap = Snapshot {
            regions: vec![reg(0x0, 0x5000, 10, 9), reg(0x5000, 0x8000, 10, 9)],
            ..Snapshot::default()
        };
        let maps = [AddrRange::new(0x0, 0x2000), AddrRange::new(0x3000, 0x8000)];
        let out = clip(&snap, &maps);
        assert_eq!(
            out.regions,
            vec![reg(0x0, 0x2000, 10, 0), reg(0x3000, 0x5000, 10, 0), reg(0x5000, 0x8000, 10, 9)]
        );
    }
}
