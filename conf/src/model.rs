//! The validated configuration model every other crate consumes.
//! Parsers (TOML, etmem INI, scheme one-liners) produce these types; nothing here does I/O.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Longest project, engine or task name, as etmem (`MAX_OBJ_NAME_LEN`).
pub const MAX_NAME_LEN: usize = 64;

/// What one config file adds to (or removes from) the daemon's registry.
///
/// etmem's model: a file holds groups for a project, an engine and a task;
/// `obj add` adds them in that order, `obj del` removes them in reverse.
/// A native TOML file usually holds one whole project (project, its engine,
/// its tasks); it may also hold only tasks for an existing project.
#[derive(Debug, Clone, PartialEq)]
pub struct Objects {
    /// Where these objects were read from, for messages.
    pub format: Format,
    pub project: Option<Project>,
    pub engines: Vec<Engine>,
    pub tasks: Vec<Task>,
}

/// The syntax a config file was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The native format, one TOML file per workload.
    Toml,
    /// openEuler etmem's INI (GKeyFile) files, accepted as they are.
    EtmemIni,
}

/// A project: how its memory is scanned, the policy, the schemes and the
/// swap backends. Engines and tasks refer to it by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub name: String,
    pub scan: Scan,
    pub policy: Policy,
    /// DAMOS-style schemes, applied in order, in addition to the policy.
    pub schemes: Vec<Scheme>,
    /// Swap devices the project creates when it starts and removes when it stops.
    pub backends: Vec<Backend>,
}

/// The scan parameters of a project (etmem keeps them on `[project]`).
#[derive(Debug, Clone, PartialEq)]
pub enum Scan {
    /// etmem `scan_type=page`: every page of every eligible VMA, every scan.
    Page(PageScan),
    /// etmem `scan_type=region`: DAMON's region-based sampling (userspace
    /// `region` engine or the kernel's DAMON).
    Region(RegionScan),
    /// etmem `scan_type=psi`: cgroup PSI-driven reclaim.
    Psi(PsiScan),
}

/// etmem's page-scan timing, with the code's semantics (not the docs').
#[derive(Debug, Clone, PartialEq)]
pub struct PageScan {
    /// Scans per round (etmem `loop`, 1..=120).
    pub loops: u32,
    /// Sleep after each of the `loops` scans (etmem `sleep`).
    pub sleep: Duration,
    /// Idle time between two rounds (etmem `interval`).
    pub interval: Duration,
}

/// DAMON monitoring attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionScan {
    pub sample_interval: Duration,
    pub aggr_interval: Duration,
    pub update_interval: Duration,
    pub min_nr_regions: u32,
    pub max_nr_regions: u32,
    /// DAMON's monitoring-intervals auto-tuning (`intervals_goal`); `None` = off.
    pub autotune: Option<IntervalsGoal>,
}

/// DAMON `intervals_goal`: tune the sample interval so that the observed
/// access events are `access_bp` / 10000 of the possible ones.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalsGoal {
    pub access_bp: u32,
    pub aggrs: u32,
    pub min_sample_interval: Duration,
    pub max_sample_interval: Duration,
}

/// etmem psi project parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct PsiScan {
    pub interval: Duration,
}

/// An engine of a project. Tasks and `etmem engine -e NAME` refer to it by `name`.
#[derive(Debug, Clone, PartialEq)]
pub struct Engine {
    pub project: String,
    /// The engine's name: its kind (`page`, `region`, `kernel-damon`, or
    /// etmem's `slide`, `cslide`, `damon`, `psi`), or a thirdparty `eng_name`.
    pub name: String,
    pub kind: EngineKind,
}

/// What an engine is and its own keys.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineKind {
    /// Page scan (etmem `slide`).
    Page(PageEngine),
    /// etmem `cslide`: hot/cold migration between NUMA node pairs.
    Cslide(CslideEngine),
    /// DAMON's algorithm in userspace, fed by a probe.
    Region(RegionEngine),
    /// The kernel's DAMON through /sys/kernel/mm/damon/admin. etmem's
    /// `damon` engine maps here (falling back to `Region` where the kernel
    /// lacks DAMON vaddr is the daemon's decision, not the parser's).
    KernelDamon(KernelDamonEngine),
    /// etmem `psi`.
    Psi,
    /// etmem `thirdparty`: a `.so` with an `engine_ops` table. Parsed so it
    /// can be refused with a clear reason; never loaded.
    Thirdparty(ThirdpartyEngine),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PageEngine {
    pub probe: ProbeChoice,
    /// Default hot threshold T for tasks that do not set their own
    /// (score: idle 0, read 1, dirty 3 per scan; hot when score >= T).
    pub hot_threshold: Option<u32>,
    /// Refuse the refault probe (which pages out every page it checks).
    pub forbid_refault: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CslideEngine {
    /// (hot node, cold node) pairs; first = hot (DRAM), as etmem's code has it.
    pub node_pairs: Vec<(u32, u32)>,
    pub hot_threshold: u32,
    pub node_mig_quota_bytes: u64,
    pub node_hot_reserve_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegionEngine {
    pub probe: ProbeChoice,
    /// Also monitor file-backed mappings (etmem scans anonymous and
    /// private-writable ones only).
    pub file_backed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KernelDamonEngine {
    pub ops: DamonOps,
    /// Set when the engine came from an etmem `damon` engine group.
    pub from_etmem: bool,
}

/// DAMON operations set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamonOps {
    Vaddr,
    Paddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ThirdpartyEngine {
    pub eng_name: String,
    pub libname: PathBuf,
    pub ops_name: String,
    pub private_keys: BTreeMap<String, String>,
}

/// Which access probe an engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbeChoice {
    /// The best the host offers (the daemon says which it chose).
    #[default]
    Auto,
    IdleBitmap,
    EtmemIdlePages,
    SoftDirty,
    Refault,
    /// A synthetic address space (demos without root, tests).
    Simulated,
}

/// A task: the processes an engine watches.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub project: String,
    pub engine: String,
    pub name: String,
    pub target: TaskTarget,
    /// Pids scanned in parallel (etmem `max_threads`, default 1).
    pub max_threads: u32,
    /// Scan only VMAs marked with etmem's MADV_SWAPFLAG (VmFlags where the kernel has it).
    pub swap_flag: bool,
    /// Page-engine keys (`T`, `swap_threshold`, `dram_percent`).
    pub page: PageTask,
    /// cslide keys, when the engine is cslide.
    pub cslide: Option<CslideTask>,
    /// psi keys, when the engine is psi.
    pub psi: Option<PsiTask>,
    /// thirdparty private keys, kept verbatim.
    pub private_keys: BTreeMap<String, String>,
}

/// What a task names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskTarget {
    Pid(u32),
    /// A process name (comm, as `pgrep -x`); its direct children are included.
    Name(String),
    /// A cgroup directory; every process in it.
    Cgroup(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PageTask {
    /// Hot threshold T (hot when score >= T).
    pub hot_threshold: Option<u32>,
    /// Act only when the task's RSS is above this.
    pub swap_threshold_bytes: Option<u64>,
    /// Keep this percentage of the task's memory in RAM.
    pub dram_percent: Option<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CslideTask {
    pub vm_flags: String,
    pub anon_only: bool,
    pub ign_host: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PsiTask {
    pub cg_dir: String,
    pub pressure: f64,
    pub reclaim_rate: f64,
    pub reclaim_rate_max: f64,
    pub reclaim_rate_min: f64,
    pub limit_min_bytes: u64,
    pub limit_min_ratio: f64,
    pub reclaim_max_bytes: u64,
}

/// How regions are classified and what is done with each class.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// A region is hot when its access count reaches this (etmem's T,
    /// DAMON's nr_accesses).
    pub hot_min_accesses: AccessBound,
    /// ... and has been hot for at least this long.
    pub hot_min_age: Duration,
    /// A region is cold when its access count is at most this ...
    pub cold_max_accesses: AccessBound,
    /// ... and it has stayed so for at least this long.
    pub cold_min_age: Duration,
    /// Hot ranges become THP-eligible after this long ...
    pub thp_min_age: Duration,
    /// ... when at least this large (whole aligned 2 MiB units only).
    pub thp_min_size_bytes: u64,
    /// What to do with cold memory (`None` = only classify).
    pub cold_action: Option<Action>,
    /// Collapse THP-eligible ranges into huge pages.
    pub promote_thp: bool,
    /// Give cold huge pages back (demotion).
    pub demote_thp: bool,
    /// Prefetch (MADV_WILLNEED) regions of ours that warm up again.
    pub prefetch_warm: bool,
    /// etmem `sysmem_threshold`: act only while MemFree / MemTotal is below this.
    pub sysmem_threshold: Option<Percent>,
    /// DAMON free-memory watermarks.
    pub watermarks: Option<Watermarks>,
    /// Act on a task only when its RSS is above this.
    pub swap_threshold_bytes: Option<u64>,
    /// Keep at least this share of each task's memory in RAM.
    pub keep_in_ram: Option<Percent>,
    pub quota: Quota,
}

/// An access-count bound, absolute or relative to the engine's maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessBound {
    /// Samples (DAMON nr_accesses) or page score (etmem count).
    Count(u32),
    /// Basis points (1/10000) of the engine's maximum count.
    Bp(u32),
    /// The engine's maximum.
    Max,
}

/// An age bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeBound {
    /// In aggregation intervals, as etmem and DAMON's raw interfaces count.
    Aggregations(u64),
    Time(Duration),
    Max,
}

/// A percentage in hundredths of a percent (basis points): 5000 = 50 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent {
    pub bp: u32,
}

/// DAMON free-memory watermarks (per mille of free memory).
#[derive(Debug, Clone, PartialEq)]
pub struct Watermarks {
    pub interval: Duration,
    pub high_permil: u32,
    pub mid_permil: u32,
    pub low_permil: u32,
}

/// A DAMOS-like quota: what may be acted on per `reset_interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    /// Bytes per second (`None` = unlimited).
    pub bytes_per_s: Option<u64>,
    /// CPU milliseconds per second spent acting (`None` = unlimited).
    pub cpu_ms_per_s: Option<u32>,
    pub reset_interval: Duration,
    /// Prioritisation weights (DAMON's weight_sz / nr_accesses / age, permil).
    pub weight_sz_permil: u32,
    pub weight_nr_accesses_permil: u32,
    pub weight_age_permil: u32,
}

/// A DAMOS scheme: an access pattern and an action.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheme {
    pub pattern: AccessPattern,
    pub action: Action,
    pub quota: Option<Quota>,
    pub watermarks: Option<Watermarks>,
    pub apply_interval: Option<Duration>,
}

/// Closed ranges a region must fall in for a scheme to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessPattern {
    pub min_size_bytes: u64,
    /// `u64::MAX` for "max".
    pub max_size_bytes: u64,
    pub min_accesses: AccessBound,
    pub max_accesses: AccessBound,
    pub min_age: AgeBound,
    pub max_age: AgeBound,
}

/// DAMOS actions (etmem's and DAMON's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Willneed,
    Cold,
    Pageout,
    Hugepage,
    Nohugepage,
    Stat,
}

/// A swap device a project creates and removes.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    Zram(ZramBackend),
    SwapFile(SwapFileBackend),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ZramBackend {
    pub size_bytes: u64,
    pub compressor: String,
    /// swapon priority (higher is used first); default above swap files.
    pub priority: i32,
    /// zram `mem_limit`: RAM the compressed pages may use.
    pub mem_limit_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SwapFileBackend {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub priority: i32,
}
