//! The `kernel-damon` engine: the kernel's own DAMON (a kdamond) watches
//! the tasks and applies the DAMOS schemes we generate from the config;
//! this side only stages specs, commits changes online, and reads stats and
//! tried regions back into snapshots for `project show`, records, reports
//! and engine commands.
//!
//! One kdamond per engine instance, owned through a process-wide
//! [`KdamondPool`]: vaddr with every pid of every task as a target (etmem's
//! sysfs backend writes only the first), or paddr with a memcg filter per
//! cgroup task. A kdamond this daemon did not start makes the engine refuse
//! to start before anything is written (DESIGN.md: the host's own kdamond).

mod guard;
pub mod schemes;

use super::procinfo::{self, ProcMemory};
use super::{Engine, EngineEnv, EngineError};
use crate::protocol::TaskStats;
use crate::record::feed::{FeedItem, SnapshotFeed};
use damon_core::ops::ProcTarget;
use damon_core::ops::kdamond::{
    self, AcquireError, DamonSysfs, Features, KdamondPool, OpsKind, PoolError, SchemeStats, StateCommand,
};
use damon_core::ops::maps::VmaFilter;
use damon_core::{AddrRange, Snapshot};
use guard::HotGuard;
use schemes::{Generated, Layout, MemcgGroup, TargetKey};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often targets are resolved and a snapshot is read back.
const TICK: Duration = Duration::from_secs(1);
/// Least time between two online commits for guard changes.
const MIN_COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// Hot guards hold at least this long.
const MIN_GUARD_HOLD: Duration = Duration::from_secs(20);
/// Where cgroup2 is mounted (memcg filter paths are relative to it).
const CGROUP2_MOUNT: &str = "/sys/fs/cgroup";

/// The factory's entry: the kernel engine, or for etmem's `damon` engine
/// the userspace region engine when kernel DAMON vaddr is unusable here or
/// a kdamond we did not start runs.
pub fn create(
    project: &conf::Project,
    engine: &conf::Engine,
    kd: &conf::KernelDamonEngine,
    env: &EngineEnv,
) -> Result<Box<dyn Engine>, EngineError> {
    match KernelDamonEngine::new(project, engine, kd, env) {
        Ok(e) => Ok(Box::new(e)),
        Err(e) if kd.from_etmem && e.can_fall_back() => {
            let why = e.reason();
            tracing::warn!(project = %project.name, "etmem damon engine on the userspace region engine: {why}");
            let inner =
                super::region::RegionEngine::new(project, engine, &conf::RegionEngine::default(), env)?;
            Ok(Box::new(FallBack { inner, why }))
        }
        Err(e) => Err(e.into()),
    }
}

/// etmem's `damon` engine running on the region engine, saying why.
#[derive(Debug)]
struct FallBack {
    inner: super::region::RegionEngine,
    why: String,
}

impl Engine for FallBack {
    fn start_task(&mut self, task: &conf::Task) -> Result<(), EngineError> {
        // When the stand-in cannot run either, say why kernel DAMON was not used too.
        self.inner.start_task(task).map_err(|e| match e {
            EngineError::Unsupported { kind, reason } => EngineError::Unsupported {
                kind,
                reason: format!(
                    "{reason}; it stands in for etmem's damon engine, since kernel DAMON is not used here \
                     either: {}",
                    self.why
                ),
            },
            other => other,
        })
    }
    fn stop_task(&mut self, task: &str) {
        self.inner.stop_task(task)
    }
    fn task_stats(&self, task: &str) -> Option<TaskStats> {
        self.inner.task_stats(task).map(|mut s| {
            s.extra.insert("kernel_damon".into(), format!("not used: {}", self.why));
            s
        })
    }
    fn snapshots(&self, task: &str) -> Vec<(u32, Snapshot)> {
        self.inner.snapshots(task)
    }
    fn feed(&self, task: &str) -> Option<Arc<SnapshotFeed>> {
        self.inner.feed(task)
    }
    fn command(&mut self, cmd: &str, task: Option<&str>) -> Result<String, EngineError> {
        self.inner.command(cmd, task)
    }
    fn stop(&mut self) {
        self.inner.stop()
    }
    fn running_as(&self) -> Option<String> {
        Some("region, standing in for kernel-damon (kernel DAMON unusable here)".into())
    }
}

/// The pool every kernel-damon engine of this daemon shares.
pub fn system_pool() -> Arc<Mutex<KdamondPool>> {
    static POOL: OnceLock<Arc<Mutex<KdamondPool>>> = OnceLock::new();
    Arc::clone(POOL.get_or_init(|| {
        Arc::new(Mutex::new(KdamondPool::new(
            DamonSysfs::system(),
            Some(PathBuf::from(kdamond::DEFAULT_RECORD_DIR)),
        )))
    }))
}

fn lock(pool: &Mutex<KdamondPool>) -> std::sync::MutexGuard<'_, KdamondPool> {
    pool.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum KernelDamonStartError {
    /// No usable kernel DAMON here (no sysfs tree, no such operations set).
    #[error("kernel DAMON is not usable here: {0}")]
    Unavailable(String),
    /// A kdamond we did not start runs: we must not touch the tree.
    #[error(
        "{0}; use the userspace region engine instead (`kind = \"region\"` in [engine], or an etmem \
         `[engine] name=damon` project, which falls back to it)"
    )]
    Foreign(String),
    #[error(transparent)]
    Other(#[from] EngineError),
}

impl KernelDamonStartError {
    /// Whether etmem's damon engine may run on the userspace region engine instead.
    pub fn can_fall_back(&self) -> bool {
        matches!(self, KernelDamonStartError::Unavailable(_) | KernelDamonStartError::Foreign(_))
    }

    /// Why, without the advice to use the region engine (for the engine
    /// that stands in).
    pub fn reason(&self) -> String {
        match self {
            KernelDamonStartError::Foreign(why) => why.clone(),
            other => other.to_string(),
        }
    }
}

impl From<KernelDamonStartError> for EngineError {
    fn from(e: KernelDamonStartError) -> EngineError {
        match e {
            KernelDamonStartError::Other(e) => e,
            other => EngineError::Unsupported { kind: "kernel-damon".into(), reason: other.to_string() },
        }
    }
}

/// What the engine thread publishes.
#[derive(Debug, Default, Clone)]
struct Published {
    stats: TaskStats,
    snapshots: BTreeMap<u32, Snapshot>,
}

#[derive(Debug, Default)]
struct Shared {
    tasks: BTreeMap<String, conf::Task>,
    /// Per task, kept while the task runs.
    feeds: BTreeMap<String, Arc<SnapshotFeed>>,
    published: BTreeMap<String, Published>,
    /// JSON for the `kdamond` engine command.
    kdamond_view: String,
}

/// One kernel-damon engine of a started project.
pub struct KernelDamonEngine {
    name: String,
    ops: OpsKind,
    shared: Arc<Mutex<Shared>>,
    stop_tx: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for KernelDamonEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelDamonEngine").field("name", &self.name).field("ops", &self.ops).finish()
    }
}

impl KernelDamonEngine {
    /// Start on the system's DAMON sysfs tree.
    pub fn new(
        project: &conf::Project,
        engine: &conf::Engine,
        kd: &conf::KernelDamonEngine,
        env: &EngineEnv,
    ) -> Result<KernelDamonEngine, KernelDamonStartError> {
        KernelDamonEngine::with_pool(project, engine, kd, env, system_pool())
    }

    /// Start with a given pool (its sysfs root).
    pub fn with_pool(
        project: &conf::Project,
        engine: &conf::Engine,
        kd: &conf::KernelDamonEngine,
        _env: &EngineEnv,
        pool: Arc<Mutex<KdamondPool>>,
    ) -> Result<KernelDamonEngine, KernelDamonStartError> {
        let unsupported = |reason: String| {
            KernelDamonStartError::Other(EngineError::Unsupported { kind: "kernel-damon".into(), reason })
        };
        let conf::Scan::Region(scan) = &project.scan else {
            return Err(unsupported(format!("project {} has no region scan parameters", project.name)));
        };
        let ops = match kd.ops {
            conf::DamonOps::Vaddr => OpsKind::Vaddr,
            conf::DamonOps::Paddr => OpsKind::Paddr,
        };
        let mut attrs = schemes::monitoring_attrs(scan);
        let index;
        let features;
        {
            let mut p = lock(&pool);
            // Read-only checks first: nothing is written when they fail.
            // Coexistence is said first: it is the reason even where the ops
            // set is missing too (this host: a paddr-only kdamond of its own).
            p.sysfs().available().map_err(KernelDamonStartError::Unavailable)?;
            let missing = ops_missing_in_existing_dirs(p.sysfs(), ops);
            let also =
                |m: &Option<String>| m.as_ref().map(|m| format!(" (besides, {m})")).unwrap_or_default();
            match p.foreign_running() {
                Ok(f) if !f.is_empty() => {
                    let e =
                        AcquireError::ForeignRunning { kdamonds: f, admin: p.sysfs().admin().to_path_buf() };
                    return Err(KernelDamonStartError::Foreign(format!("{e}{}", also(&missing))));
                }
                Ok(_) => {}
                Err(AcquireError::Unavailable { reason }) => {
                    return Err(KernelDamonStartError::Unavailable(reason));
                }
                Err(e) => return Err(unsupported(crate::daemon::chain(&e))),
            }
            if let Some(missing) = missing {
                return Err(KernelDamonStartError::Unavailable(missing));
            }
            index = match p.acquire() {
                Ok(i) => i,
                Err(AcquireError::Unavailable { reason }) => {
                    return Err(KernelDamonStartError::Unavailable(reason));
                }
                Err(e @ AcquireError::ForeignRunning { .. }) => {
                    return Err(KernelDamonStartError::Foreign(e.to_string()));
                }
                Err(e) => return Err(unsupported(crate::daemon::chain(&e))),
            };
            features = match p.features(index) {
                Ok(f) => f,
                Err(e) => {
                    let _ = p.release(index);
                    return Err(unsupported(crate::daemon::chain(&e)));
                }
            };
            if !features.has_operations(ops) {
                let _ = p.release(index);
                return Err(KernelDamonStartError::Unavailable(format!(
                    "this kernel's DAMON has no {} operations (it has: {})",
                    ops.as_str(),
                    features.operations.join(" ")
                )));
            }
        }
        if attrs.intervals_goal.is_some() && !features.intervals_goal {
            tracing::warn!(project = %project.name, "autotune needs Linux 6.15 DAMON (intervals_goal): fixed intervals used");
            attrs.intervals_goal = None;
        }
        let (generated, notes) = schemes::generate(project, kd, &attrs, &features);
        for n in &notes {
            tracing::warn!(project = %project.name, "kernel-damon: {n}");
        }
        let hold = Duration::from_micros(
            generated
                .iter()
                .filter(|g| g.guarded)
                .map(|g| g.spec.pattern.age.min.saturating_mul(attrs.aggr_us))
                .max()
                .unwrap_or(0),
        )
        .saturating_mul(2)
        .max(MIN_GUARD_HOLD);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop_tx, stop_rx) = mpsc::channel();
        let mut runner = Runner {
            project: project.name.clone(),
            policy: project.policy.clone(),
            pool,
            index,
            ops,
            attrs,
            features,
            generated,
            notes,
            hold_us: u64::try_from(hold.as_micros()).unwrap_or(u64::MAX),
            shared: Arc::clone(&shared),
            targets: Vec::new(),
            procs: BTreeMap::new(),
            memcgs: Vec::new(),
            guards: BTreeMap::new(),
            staged_guards: Vec::new(),
            layout: Layout::default(),
            running: false,
            started: Instant::now(),
            last_commit: None,
            last_snapshot: None,
            snapshots_read: 0,
            aggregations: 0,
            snapshots: BTreeMap::new(),
            stats: Vec::new(),
            totals: BTreeMap::new(),
            effective: BTreeMap::new(),
            kdamond_pid: None,
            kdamond_cpu_done: Duration::ZERO,
            kdamond_cpu_now: Duration::ZERO,
            driver_cpu: Duration::ZERO,
            commits: 0,
            restarts: 0,
            last_error: None,
            refused_logged: BTreeSet::new(),
            pid_history: BTreeMap::new(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("kdamond:{}", project.name))
            .spawn(move || runner.run(stop_rx))
            .map_err(|e| unsupported(format!("cannot start the engine thread: {e}")))?;
        Ok(KernelDamonEngine {
            name: engine.name.clone(),
            ops,
            shared,
            stop_tx: Some(stop_tx),
            handle: Some(handle),
        })
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// When a kdamond directory with a context exists, its `avail_operations`
/// tells (read-only) whether `ops` exists before anything is written.
fn ops_missing_in_existing_dirs(sysfs: &DamonSysfs, ops: OpsKind) -> Option<String> {
    let survey = sysfs.survey().ok()?;
    let k = survey.iter().find(|k| k.ops.is_some())?;
    let avail =
        std::fs::read_to_string(sysfs.kdamond_dir(k.index).join("contexts/0/avail_operations")).ok()?;
    (!avail.split_whitespace().any(|o| o == ops.as_str()))
        .then(|| format!("this kernel's DAMON has no {} operations (it has: {})", ops.as_str(), avail.trim()))
}

impl Engine for KernelDamonEngine {
    fn start_task(&mut self, task: &conf::Task) -> Result<(), EngineError> {
        if self.ops == OpsKind::Paddr && !matches!(task.target, conf::TaskTarget::Cgroup(_)) {
            return Err(EngineError::Task {
                task: task.name.clone(),
                reason:
                    "a paddr kernel-damon engine acts on physical memory: give it cgroup tasks (each gets a \
                         memcg filter), or use ops = \"vaddr\" for pids and process names"
                        .into(),
            });
        }
        let mut s = self.shared();
        s.tasks.insert(task.name.clone(), task.clone());
        s.feeds.entry(task.name.clone()).or_insert_with(SnapshotFeed::new);
        Ok(())
    }

    fn stop_task(&mut self, task: &str) {
        let mut s = self.shared();
        s.tasks.remove(task);
        s.feeds.remove(task);
        s.published.remove(task);
    }

    fn task_stats(&self, task: &str) -> Option<TaskStats> {
        let s = self.shared();
        if !s.tasks.contains_key(task) {
            return None;
        }
        Some(s.published.get(task).map(|p| p.stats.clone()).unwrap_or_else(|| TaskStats {
            probe: Some("kdamond".into()),
            idle_reason: Some("starting".into()),
            ..TaskStats::default()
        }))
    }

    fn snapshots(&self, task: &str) -> Vec<(u32, Snapshot)> {
        let s = self.shared();
        s.published
            .get(task)
            .map(|p| p.snapshots.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default()
    }

    fn feed(&self, task: &str) -> Option<Arc<SnapshotFeed>> {
        self.shared().feeds.get(task).cloned()
    }

    fn command(&mut self, cmd: &str, task: Option<&str>) -> Result<String, EngineError> {
        let tasks = super::command_tasks(task, self.shared().tasks.keys())?;
        if let Some(out) = super::snapshot_command(cmd, &tasks, |t| self.snapshots(t)) {
            return Ok(out);
        }
        match cmd {
            "kdamond" => Ok(self.shared().kdamond_view.clone() + "\n"),
            _ => Err(EngineError::UnknownCommand {
                engine: self.name.clone(),
                cmd: cmd.into(),
                known: "regions, snapshot, kdamond".into(),
            }),
        }
    }

    fn stop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for KernelDamonEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whose schemes: a process (vaddr) or a memcg group (paddr).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Pid(u32),
    Memcg(String),
}

/// One scheme's figures summed over the kdamond's lifetimes.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    last: SchemeStats,
    tried_bytes: u64,
    applied_bytes: u64,
    qt_exceeds: u64,
}

impl Totals {
    fn add(&mut self, now: SchemeStats) {
        // Counters only grow while one kdamond lives; smaller means a new one.
        let d = |cur: u64, last: u64| if cur >= last { cur - last } else { cur };
        self.tried_bytes += d(now.sz_tried, self.last.sz_tried);
        self.applied_bytes += d(now.sz_applied, self.last.sz_applied);
        self.qt_exceeds += d(now.qt_exceeds, self.last.qt_exceeds);
        self.last = now;
    }
}

/// The engine thread: owns the kdamond.
struct Runner {
    project: String,
    policy: conf::Policy,
    pool: Arc<Mutex<KdamondPool>>,
    index: usize,
    ops: OpsKind,
    attrs: kdamond::MonitoringAttrs,
    features: Features,
    generated: Vec<Generated>,
    notes: Vec<String>,
    hold_us: u64,
    shared: Arc<Mutex<Shared>>,
    /// The kdamond's targets, in `targets/` order.
    targets: Vec<TargetKey>,
    procs: BTreeMap<u32, Arc<ProcTarget>>,
    memcgs: Vec<MemcgGroup>,
    guards: BTreeMap<u32, HotGuard>,
    /// Guards as last staged, per target position.
    staged_guards: Vec<Vec<AddrRange>>,
    layout: Layout,
    running: bool,
    started: Instant,
    last_commit: Option<Instant>,
    last_snapshot: Option<Instant>,
    snapshots_read: u64,
    /// Aggregation intervals the kdamond ran through (from wall time while on).
    aggregations: u64,
    snapshots: BTreeMap<u32, Snapshot>,
    /// Per scheme, as last read.
    stats: Vec<SchemeStats>,
    /// Cumulative figures per (owner, generated scheme), across commits and
    /// restarts (a restarted kdamond counts from 0 again).
    totals: BTreeMap<(Owner, usize), Totals>,
    /// Effective size quota per (owner, generated scheme), when quotas are set.
    effective: BTreeMap<(Owner, usize), u64>,
    kdamond_pid: Option<u32>,
    /// CPU of kdamonds of ours that have stopped.
    kdamond_cpu_done: Duration,
    kdamond_cpu_now: Duration,
    driver_cpu: Duration,
    commits: u64,
    restarts: u64,
    last_error: Option<String>,
    refused_logged: BTreeSet<u32>,
    /// Per task name: the process a `pid` task found first, so a reused pid is refused.
    pid_history: BTreeMap<String, procinfo::PidHistory>,
}

/// A cgroup task's memcg path relative to the cgroup2 mount.
fn memcg_path(dir: &Path) -> String {
    let rel = dir.strip_prefix(CGROUP2_MOUNT).unwrap_or(dir);
    let s = rel.to_string_lossy();
    format!("/{}", s.trim_start_matches('/'))
}

impl Runner {
    fn run(&mut self, stop: mpsc::Receiver<()>) {
        loop {
            let cpu0 = swap_backends::thread_cpu_time();
            let reads = self.snapshots_read;
            self.tick();
            self.driver_cpu += swap_backends::thread_cpu_time().saturating_sub(cpu0);
            self.publish(false, self.snapshots_read != reads);
            match stop.recv_timeout(TICK) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.sample_kdamond_cpu();
        let mut p = lock(&self.pool);
        if let Err(e) = p.release(self.index) {
            tracing::warn!(project = %self.project, "cannot release kdamond {}: {}", self.index, crate::daemon::chain(&e));
        }
        drop(p);
        self.went_off();
        self.publish(true, false);
    }

    fn error(&mut self, what: &str, e: &dyn std::error::Error) {
        let msg = format!("{what}: {}", crate::daemon::chain(e));
        if self.last_error.as_deref() != Some(msg.as_str()) {
            tracing::warn!(project = %self.project, "kernel-damon: {msg}");
        }
        self.last_error = Some(msg);
    }

    fn tick(&mut self) {
        let (targets, memcgs) = self.resolve();
        let removed = self.targets.iter().any(|t| !targets.contains(t)) || memcgs != self.memcgs;
        let changed = targets != self.targets || memcgs != self.memcgs;
        if self.running {
            // The kdamond stops by itself when every target process is gone.
            let state = lock(&self.pool).state(self.index);
            match state {
                Ok(info) if !info.running => {
                    self.sample_kdamond_cpu();
                    self.went_off();
                }
                // Restarted under us (the pool grew nr_kdamonds for another project).
                Ok(info) if info.pid != self.kdamond_pid => {
                    self.kdamond_cpu_done += self.kdamond_cpu_now;
                    self.kdamond_cpu_now = Duration::ZERO;
                    self.kdamond_pid = info.pid;
                }
                Ok(_) => {}
                Err(e) => self.error("kdamond state", &e),
            }
        }
        if changed || !self.running {
            self.targets = targets;
            self.memcgs = memcgs;
            self.guards.retain(|pid, _| self.targets.contains(&TargetKey::Pid(*pid)));
            self.apply(removed);
        }
        if !self.running {
            return;
        }
        self.read_back();
        self.update_guards();
    }

    /// The targets and memcg groups the tasks name now.
    fn resolve(&mut self) -> (Vec<TargetKey>, Vec<MemcgGroup>) {
        let tasks: Vec<conf::Task> =
            self.shared.lock().unwrap_or_else(|p| p.into_inner()).tasks.values().cloned().collect();
        if self.ops == OpsKind::Paddr {
            let mut memcgs: Vec<MemcgGroup> = tasks
                .iter()
                .filter_map(|t| match &t.target {
                    conf::TaskTarget::Cgroup(dir) => Some(MemcgGroup { path: memcg_path(dir) }),
                    _ => None,
                })
                .collect();
            memcgs.sort_by(|a, b| a.path.cmp(&b.path));
            memcgs.dedup();
            let targets = if memcgs.is_empty() { Vec::new() } else { vec![TargetKey::Physical] };
            return (targets, memcgs);
        }
        let mut pids: BTreeSet<u32> = BTreeSet::new();
        self.pid_history.retain(|name, _| tasks.iter().any(|t| t.name == *name));
        for t in &tasks {
            let mut r = procinfo::resolve_task(t);
            self.pid_history.entry(t.name.clone()).or_default().filter(&t.target, &mut r);
            for (pid, why) in &r.refused {
                if self.refused_logged.insert(*pid) {
                    tracing::warn!(task = %t.name, pid, "not monitored: {why}");
                }
            }
            pids.extend(r.pids);
        }
        // Keep the kdamond's order for pids that stay; new ones go last.
        let mut out: Vec<TargetKey> = self
            .targets
            .iter()
            .filter(|t| matches!(t, TargetKey::Pid(p) if pids.contains(p)))
            .cloned()
            .collect();
        for p in pids {
            if !out.contains(&TargetKey::Pid(p)) {
                out.push(TargetKey::Pid(p));
            }
        }
        self.procs.retain(|p, _| out.contains(&TargetKey::Pid(*p)));
        for t in &out {
            if let TargetKey::Pid(p) = t
                && !self.procs.contains_key(p)
                && let Ok(pt) = ProcTarget::open(*p)
            {
                self.procs.insert(*p, Arc::new(pt));
            }
        }
        (out, Vec::new())
    }

    fn guard_ranges(&self) -> Vec<Vec<AddrRange>> {
        self.targets
            .iter()
            .map(|t| match t {
                TargetKey::Pid(p) => {
                    self.guards.get(p).map(|g| g.ranges(schemes::MAX_GUARD_FILTERS)).unwrap_or_default()
                }
                TargetKey::Physical => Vec::new(),
            })
            .collect()
    }

    /// Stage the spec for the current targets and get the kdamond to run it:
    /// `on` when stopped, `commit` when running, off-stage-on when a target
    /// went away (6.12 commits targets by position, so a removal would hand
    /// one process's regions to the next).
    fn apply(&mut self, removed: bool) {
        let guards = self.guard_ranges();
        let ram = if self.ops == OpsKind::Paddr { kdamond::system_ram_ranges() } else { Vec::new() };
        let (spec, layout) = schemes::build(
            self.ops,
            &self.attrs,
            &self.targets,
            &ram,
            &self.generated,
            &guards,
            &self.memcgs,
            &self.features,
        );
        let pool = Arc::clone(&self.pool);
        let mut p = lock(&pool);
        if self.targets.is_empty() {
            if self.running {
                self.sample_kdamond_cpu();
                if let Err(e) = p.command(self.index, StateCommand::Off) {
                    drop(p);
                    self.error("stop kdamond", &e);
                    return;
                }
                self.went_off();
            }
            return;
        }
        let result: Result<(), PoolError> = (|| {
            if self.running && removed {
                self.sample_kdamond_cpu();
                p.command(self.index, StateCommand::Off)?;
                self.went_off();
                self.restarts += 1;
            }
            p.stage(self.index, &spec)?;
            if self.running {
                p.command(self.index, StateCommand::Commit)?;
                self.commits += 1;
            } else {
                p.command(self.index, StateCommand::On)?;
                self.running = true;
                self.kdamond_pid = p.state(self.index).ok().and_then(|i| i.pid);
            }
            Ok(())
        })();
        drop(p);
        match result {
            Ok(()) => {
                self.layout = layout;
                self.staged_guards = guards;
                self.last_commit = Some(Instant::now());
                self.last_error = None;
                tracing::info!(
                    project = %self.project,
                    kdamond = self.index,
                    targets = self.targets.len(),
                    schemes = spec.schemes.len(),
                    "kdamond configured"
                );
            }
            // A target that exited between resolve and `on` is the usual cause: retry next tick.
            Err(e) => self.error("configure kdamond", &e),
        }
        self.update_view(&spec);
    }

    fn update_view(&self, spec: &kdamond::KdamondSpec) {
        let view = serde_json::json!({
            "index": self.index,
            "pid": self.kdamond_pid,
            "running": self.running,
            "features": self.features,
            "spec": spec,
            "layout": {"stat": self.layout.stat, "actions": self.layout.actions},
            "roles": self.generated.iter().map(|g| g.role.to_string()).collect::<Vec<_>>(),
            "notes": self.notes,
        });
        if let Ok(mut s) = self.shared.lock() {
            s.kdamond_view = view.to_string();
        }
    }

    /// Book-keeping when our kdamond stopped (its CPU time is final).
    fn went_off(&mut self) {
        self.kdamond_cpu_done += self.kdamond_cpu_now;
        self.kdamond_cpu_now = Duration::ZERO;
        self.running = false;
        self.kdamond_pid = None;
        self.last_snapshot = None;
    }

    fn sample_kdamond_cpu(&mut self) {
        if let Some(pid) = self.kdamond_pid
            && let Some(t) = kdamond::thread_cpu_time(pid)
        {
            self.kdamond_cpu_now = t;
        }
    }

    /// Tried regions of the stat schemes into snapshots; scheme stats.
    fn read_back(&mut self) {
        let pool = Arc::clone(&self.pool);
        let sysfs = lock(&pool).sysfs().clone();
        let index = self.index;
        let cmd = |c: StateCommand| lock(&pool).command(index, c);
        if self.attrs.intervals_goal.is_some() {
            let _ = cmd(StateCommand::UpdateTunedIntervals);
        }
        let (sample_us, aggr_us) =
            sysfs.intervals_us(self.index).unwrap_or((self.attrs.sample_us, self.attrs.aggr_us));
        let max_nr = u32::try_from(aggr_us / sample_us.max(1)).unwrap_or(u32::MAX).max(1);
        if let Err(e) = cmd(StateCommand::UpdateSchemesTriedRegions) {
            self.error("update tried regions", &e);
            return;
        }
        let now_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut snaps = BTreeMap::new();
        let mut failed = None;
        for (i, t) in self.targets.iter().enumerate() {
            let Some(Some(scheme)) = self.layout.stat.get(i) else { continue };
            let key = match t {
                TargetKey::Pid(p) => *p,
                TargetKey::Physical => 0,
            };
            match sysfs.tried_regions(self.index, *scheme) {
                Ok(tr) => {
                    snaps.insert(key, tr.to_snapshot(now_us, aggr_us, max_nr));
                }
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            self.error("read tried regions", &e);
        }
        self.snapshots = snaps;
        self.snapshots_read += 1;
        if let Some(prev) = self.last_snapshot {
            let us = u64::try_from(prev.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.aggregations += us / aggr_us.max(1);
        }
        self.last_snapshot = Some(Instant::now());
        if let Err(e) = cmd(StateCommand::UpdateSchemesStats) {
            self.error("update scheme stats", &e);
            return;
        }
        let n = self.layout.stat.len() + self.layout.actions.iter().map(Vec::len).sum::<usize>();
        self.stats = (0..n).map(|s| sysfs.scheme_stats(self.index, s).unwrap_or_default()).collect();
        for (owner, k, scheme) in self.owned_schemes() {
            if let Some(st) = self.stats.get(scheme).copied() {
                self.totals.entry((owner, k)).or_default().add(st);
            }
        }
        let quotas = self.generated.iter().any(|g| g.spec.quota.bytes > 0 || g.spec.quota.ms > 0);
        if quotas && self.features.effective_bytes && cmd(StateCommand::UpdateSchemesEffectiveQuotas).is_ok()
        {
            self.effective = self
                .owned_schemes()
                .into_iter()
                .filter_map(|(o, k, scheme)| Some(((o, k), sysfs.effective_bytes(self.index, scheme)?)))
                .collect();
        }
        self.sample_kdamond_cpu();
    }

    /// Feed the snapshots to the hot guards; commit when the guarded ranges changed.
    fn update_guards(&mut self) {
        // Guards are per address space; paddr gets none (build() ignores them).
        if self.ops == OpsKind::Paddr || !self.generated.iter().any(|g| g.guarded) {
            return;
        }
        let now_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        for (pid, snap) in &self.snapshots {
            self.guards.entry(*pid).or_insert_with(|| HotGuard::new(self.hold_us)).observe(snap, now_us);
        }
        let due = self.last_commit.is_none_or(|t| t.elapsed() >= MIN_COMMIT_INTERVAL);
        if due && self.guard_ranges() != self.staged_guards {
            self.apply(false);
        }
    }

    /// (owner, generated scheme index, sysfs scheme index) of every action scheme.
    fn owned_schemes(&self) -> Vec<(Owner, usize, usize)> {
        let mut out = Vec::new();
        let nk = self.generated.len();
        if self.ops == OpsKind::Paddr {
            let idx = self.layout.actions.first().cloned().unwrap_or_default();
            for (gi, m) in self.memcgs.iter().enumerate() {
                for k in 0..nk {
                    if let Some(&s) = idx.get(gi * nk + k) {
                        out.push((Owner::Memcg(m.path.clone()), k, s));
                    }
                }
            }
            return out;
        }
        for (i, t) in self.targets.iter().enumerate() {
            let (TargetKey::Pid(pid), Some(idx)) = (t, self.layout.actions.get(i)) else { continue };
            for (k, &s) in idx.iter().enumerate() {
                out.push((Owner::Pid(*pid), k, s));
            }
        }
        out
    }

    /// Figures and snapshots per task; `fresh` when a new snapshot was just
    /// read (recorders get it through the task's feed).
    fn publish(&mut self, stopping: bool, fresh: bool) {
        let (tasks, feeds): (Vec<conf::Task>, BTreeMap<String, Arc<SnapshotFeed>>) = {
            let sh = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            (sh.tasks.values().cloned().collect(), sh.feeds.clone())
        };
        let kdamond_cpu = self.kdamond_cpu_done + self.kdamond_cpu_now;
        let nr_targets = self.targets.len().max(1) as f64;
        let host = procinfo::host_memory();
        let mut published = BTreeMap::new();
        for task in &tasks {
            let pids: Vec<u32> = match (&task.target, self.ops) {
                (_, OpsKind::Paddr) => vec![0],
                _ => procinfo::resolve_task(task)
                    .pids
                    .into_iter()
                    .filter(|p| self.targets.contains(&TargetKey::Pid(*p)))
                    .collect(),
            };
            let positions: Vec<usize> = self
                .targets
                .iter()
                .enumerate()
                .filter(|(_, t)| match t {
                    TargetKey::Pid(p) => pids.contains(p),
                    TargetKey::Physical => true,
                })
                .map(|(i, _)| i)
                .collect();
            let mut s = TaskStats {
                probe: Some(format!("kdamond ({})", self.ops.as_str())),
                pids: if self.ops == OpsKind::Paddr { Vec::new() } else { pids.clone() },
                ..TaskStats::default()
            };
            let mut snapshots = BTreeMap::new();
            let mut mappings = BTreeMap::new();
            let mut totals = policies::ClassTotals::default();
            let mut mem = ProcMemory::default();
            let mut nr_regions = 0u64;
            for pid in &pids {
                let Some(snap) = self.snapshots.get(pid) else { continue };
                nr_regions += snap.regions.len() as u64;
                // Like the region engine: the policy sees only mapped, eligible memory.
                let ranges: Option<Vec<AddrRange>> = self
                    .procs
                    .get(pid)
                    .and_then(|pt| pt.eligible_vmas(&VmaFilter::anonymous()).ok())
                    .map(|v| v.into_iter().map(|m| m.range).collect());
                let view = match &ranges {
                    Some(r) => super::region::clip(snap, r),
                    None => snap.clone(),
                };
                if let Some(r) = ranges {
                    mappings.insert(*pid, r);
                }
                let c = policies::classify(&self.policy, &view).totals;
                totals.hot_bytes += c.hot_bytes;
                totals.cold_bytes += c.cold_bytes;
                totals.warm_bytes += c.warm_bytes;
                totals.thp_eligible_bytes += c.thp_eligible_bytes;
                if let Some(pt) = self.procs.get(pid) {
                    let m = procinfo::proc_memory(pt.dir());
                    mem.rss_bytes += m.rss_bytes;
                    mem.swap_bytes += m.swap_bytes;
                    mem.anon_huge_bytes += m.anon_huge_bytes;
                }
                snapshots.insert(*pid, snap.clone());
            }
            let owners: Vec<Owner> = match (&task.target, self.ops) {
                (conf::TaskTarget::Cgroup(dir), OpsKind::Paddr) => vec![Owner::Memcg(memcg_path(dir))],
                _ => pids.iter().map(|p| Owner::Pid(*p)).collect(),
            };
            let mut paged_out = 0;
            let mut exceeded = 0;
            let mut applied: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            for ((owner, k), esz) in &self.effective {
                if let (true, Some(g)) = (owners.contains(owner), self.generated.get(*k)) {
                    s.extra.insert(format!("quota {} effective_bytes", g.role), esz.to_string());
                }
            }
            for ((owner, k), t) in &self.totals {
                if !owners.contains(owner) {
                    continue;
                }
                let Some(g) = self.generated.get(*k) else { continue };
                if g.spec.action == kdamond::DamosAction::Pageout {
                    paged_out += t.applied_bytes;
                }
                exceeded += t.qt_exceeds;
                let e = applied.entry(format!("{} ({})", g.role, g.spec.action.as_str())).or_default();
                e.0 += t.tried_bytes;
                e.1 += t.applied_bytes;
            }
            s.nr_regions = Some(nr_regions);
            s.hot_bytes = Some(totals.hot_bytes);
            s.cold_bytes = Some(totals.cold_bytes);
            s.thp_eligible_bytes = Some(totals.thp_eligible_bytes);
            if self.ops != OpsKind::Paddr {
                s.rss_bytes = Some(mem.rss_bytes);
                s.swap_bytes = Some(mem.swap_bytes);
                s.anon_huge_bytes = Some(mem.anon_huge_bytes);
            }
            s.paged_out_bytes = Some(paged_out);
            s.quota_exceeded = Some(exceeded);
            s.aggregations = Some(self.aggregations);
            s.extra.insert("snapshots_read".into(), self.snapshots_read.to_string());
            s.last_aggregation_age_s = self.last_snapshot.map(|t| t.elapsed().as_secs_f64());
            // The kdamond serves every target: each task gets its share.
            s.monitor_cpu_s = Some(kdamond_cpu.as_secs_f64() * positions.len() as f64 / nr_targets);
            s.extra.insert(
                "kdamond".into(),
                format!(
                    "kdamond {}{} {}, {} target(s), {} scheme(s), cpu {:.3} s, driver cpu {:.3} s, {} commit(s), {} restart(s)",
                    self.index,
                    self.kdamond_pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                    if self.running { "on" } else { "off" },
                    self.targets.len(),
                    self.stats.len(),
                    kdamond_cpu.as_secs_f64(),
                    self.driver_cpu.as_secs_f64(),
                    self.commits,
                    self.restarts
                ),
            );
            s.extra.insert("kdamond_cpu_s".into(), format!("{:.6}", kdamond_cpu.as_secs_f64()));
            s.extra.insert("driver_cpu_s".into(), format!("{:.6}", self.driver_cpu.as_secs_f64()));
            for (role, (tried, done)) in &applied {
                s.extra.insert(format!("scheme {role}"), format!("tried {tried} B, applied {done} B"));
            }
            let guarded: u64 = pids.iter().filter_map(|p| self.guards.get(p)).map(HotGuard::bytes).sum();
            if self.ops != OpsKind::Paddr && self.generated.iter().any(|g| g.guarded) {
                s.extra.insert("hot_guard_bytes".into(), guarded.to_string());
            }
            if host.swap_total_bytes == 0
                && self.generated.iter().any(|g| g.spec.action == kdamond::DamosAction::Pageout)
            {
                s.extra.insert(
                    "note".into(),
                    "no swap space on this host: the kernel cannot page anonymous memory out".into(),
                );
            }
            s.idle_reason = if stopping {
                Some("stopped".into())
            } else if pids.is_empty() {
                Some("no live process matches the task".into())
            } else if !self.running {
                Some("kdamond not running".into())
            } else {
                None
            };
            s.last_error = self.last_error.clone();
            if fresh && let Some(feed) = feeds.get(&task.name) {
                feed.publish(|| FeedItem {
                    at: Instant::now(),
                    snapshots: snapshots.clone(),
                    mappings,
                    stats: Some(s.clone()),
                });
            }
            published.insert(task.name.clone(), Published { stats: s, snapshots });
        }
        if let Ok(mut sh) = self.shared.lock() {
            sh.published = published;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memcg_paths_are_relative_to_the_cgroup2_mount() {
        assert_eq!(memcg_path(Path::new("/sys/fs/cgroup/etmem/a")), "/etmem/a");
        assert_eq!(memcg_path(Path::new("etmem/a")), "/etmem/a");
    }

    #[test]
    fn a_missing_tree_cannot_start_and_may_fall_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = Arc::new(Mutex::new(KdamondPool::new(DamonSysfs::new(dir.path()), None)));
        let project = conf::Project {
            name: "p".into(),
            scan: conf::Scan::Region(conf::RegionScan::default()),
            policy: conf::Policy::default(),
            schemes: Vec::new(),
            backends: Vec::new(),
        };
        let kd = conf::KernelDamonEngine::default();
        let engine = conf::Engine {
            project: "p".into(),
            name: "kernel-damon".into(),
            kind: conf::EngineKind::KernelDamon(kd.clone()),
        };
        let env = EngineEnv { backends: Arc::new(crate::runtime::Backends::default()) };
        let e = KernelDamonEngine::with_pool(&project, &engine, &kd, &env, pool).expect_err("no tree");
        assert!(e.can_fall_back(), "{e}");
        assert!(e.to_string().contains("CONFIG_DAMON_SYSFS"), "{e}");
        assert!(std::fs::read_dir(dir.path()).expect("dir").next().is_none(), "nothing written");
    }
}
