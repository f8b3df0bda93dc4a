//! The validated configuration model every other crate consumes.
//! Parsers (TOML, etmem INI, scheme one-liners) produce these types; nothing here does I/O.
//!
//! The serde derives are for the daemon's state files and JSON output;
//! deserializing does not validate, so user input goes through [`crate::parse`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest project, engine or task name, as etmem (`MAX_OBJ_NAME_LEN`).
pub const MAX_NAME_LEN: usize = 64;

/// Largest config file accepted, as etmem (`MAX_CONFIG_FILE_SIZE`).
pub const MAX_CONFIG_BYTES: usize = 10 << 20;
/// Longest process name a task can match (the kernel's comm is 16 bytes with the NUL).
pub const MAX_PROCESS_NAME_LEN: usize = 15;

// Defaults. The native TOML format uses these for keys left out; `docs/config.md`
// prints them. etmem INI files have no defaults for most keys (etmem requires them).

/// DAMON's sampling interval (kernel and damo default).
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_millis(5);
/// DAMON's aggregation interval (kernel and damo default).
pub const DEFAULT_AGGR_INTERVAL: Duration = Duration::from_millis(100);
/// Regions/target update interval (damo's 1 s; the kernel's own default is 60 s).
pub const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_secs(1);
/// DAMON's default minimum number of regions.
pub const DEFAULT_MIN_NR_REGIONS: u32 = 10;
/// DAMON's default maximum number of regions.
pub const DEFAULT_MAX_NR_REGIONS: u32 = 1000;
/// DAMON's lower bound for `min_nr_regions` (`damon_set_attrs`, etmem's check).
pub const MIN_NR_REGIONS_FLOOR: u32 = 3;
/// Interval auto-tuning target, basis points of the possible access events (DAMON_STAT's 4 %).
pub const DEFAULT_AUTOTUNE_ACCESS_BP: u32 = 400;
/// Aggregations between two interval tunings.
pub const DEFAULT_AUTOTUNE_AGGRS: u32 = 3;
/// Lower bound for the tuned sample interval.
pub const DEFAULT_AUTOTUNE_MIN_SAMPLE: Duration = Duration::from_millis(5);
/// Upper bound for the tuned sample interval.
pub const DEFAULT_AUTOTUNE_MAX_SAMPLE: Duration = Duration::from_secs(10);

/// Page scans per round (etmem `loop`).
pub const DEFAULT_PAGE_LOOPS: u32 = 3;
/// Sleep after each page scan (etmem `sleep`).
pub const DEFAULT_PAGE_SLEEP: Duration = Duration::from_secs(1);
/// Idle time between rounds (etmem `interval`).
pub const DEFAULT_PAGE_INTERVAL: Duration = Duration::from_secs(10);
/// etmem's largest `loop`.
pub const MAX_PAGE_LOOPS: u32 = 120;
/// etmem's largest `sleep` and `interval`.
pub const MAX_PAGE_SLEEP: Duration = Duration::from_secs(1200);
/// Per-page score of a dirty page in one scan (idle 0, read 1, dirty 3).
pub const PAGE_DIRTY_WEIGHT: u32 = 3;

/// Hot when the access count reaches 50 % of the engine's maximum (DAMON_LRU_SORT's 500 permil).
pub const DEFAULT_HOT_MIN_ACCESSES: AccessBound = AccessBound::Bp(5000);
/// Hot regions qualify at once.
pub const DEFAULT_HOT_MIN_AGE: Duration = Duration::ZERO;
/// Cold means not accessed at all.
pub const DEFAULT_COLD_MAX_ACCESSES: AccessBound = AccessBound::Count(0);
/// Cold after 120 s without access (DAMON_RECLAIM, DAMON_LRU_SORT, Google far memory).
pub const DEFAULT_COLD_MIN_AGE: Duration = Duration::from_secs(120);
/// Hot ranges become THP candidates after this long.
pub const DEFAULT_THP_MIN_AGE: Duration = Duration::from_secs(10);
/// One x86-64 PMD huge page.
pub const THP_SIZE_BYTES: u64 = 2 << 20;
/// Smallest THP candidate.
pub const DEFAULT_THP_MIN_SIZE_BYTES: u64 = THP_SIZE_BYTES;
/// Only fully populated units are collapsed: promotion adds no memory.
pub const DEFAULT_THP_MAX_PTES_NONE: u32 = 0;
/// Base pages in a 2 MiB huge page, less one: the most `thp_max_ptes_none` can be.
pub const MAX_THP_MAX_PTES_NONE: u32 = 511;
/// Cold memory is paged out (to zram or a swap file) unless said otherwise.
pub const DEFAULT_COLD_ACTION: Option<Action> = Some(Action::Pageout);

/// DAMOS quota charge window.
pub const DEFAULT_QUOTA_RESET_INTERVAL: Duration = Duration::from_secs(1);
/// Quota prioritisation weight of region size (unused by the kernel's scorer).
pub const DEFAULT_QUOTA_WEIGHT_SZ_PERMIL: u32 = 0;
/// Quota prioritisation weight of the access count.
pub const DEFAULT_QUOTA_WEIGHT_NR_ACCESSES_PERMIL: u32 = 1000;
/// Quota prioritisation weight of the age.
pub const DEFAULT_QUOTA_WEIGHT_AGE_PERMIL: u32 = 1000;

/// Watermark check interval (DAMON_RECLAIM's 5 s).
pub const DEFAULT_WMARK_INTERVAL: Duration = Duration::from_secs(5);
/// Deactivate above 50 % free memory (DAMON_RECLAIM).
pub const DEFAULT_WMARK_HIGH_PERMIL: u32 = 500;
/// Activate below 40 % free memory (DAMON_RECLAIM).
pub const DEFAULT_WMARK_MID_PERMIL: u32 = 400;
/// Deactivate below 20 % free memory, leaving it to the kernel (DAMON_RECLAIM).
pub const DEFAULT_WMARK_LOW_PERMIL: u32 = 200;

/// Pids scanned in parallel per task (etmem's default).
pub const DEFAULT_MAX_THREADS: u32 = 1;
/// Upper bound for `max_threads` (the daemon also clamps to 2 * CPUs + 1, as etmem).
pub const MAX_MAX_THREADS: u32 = 4096;

/// zram compressor every kernel with zram has.
pub const DEFAULT_ZRAM_COMPRESSOR: &str = "lzo-rle";
/// swapon priority of zram devices: used before swap files.
pub const DEFAULT_ZRAM_PRIORITY: i32 = 100;
/// swapon priority of swap files: the spill-over after zram.
pub const DEFAULT_SWAPFILE_PRIORITY: i32 = 10;
/// Largest swapon priority (`SWAP_FLAG_PRIO_MASK`).
pub const MAX_SWAP_PRIORITY: i32 = 32767;

/// etmem psi defaults (`etmemd_psi_fb.c`).
pub const DEFAULT_PSI_PRESSURE: f64 = 0.1;
pub const DEFAULT_PSI_RECLAIM_RATE: f64 = 0.05;
pub const DEFAULT_PSI_RECLAIM_RATE_MAX: f64 = 0.5;
pub const DEFAULT_PSI_RECLAIM_RATE_MIN: f64 = 0.01;
pub const DEFAULT_PSI_LIMIT_MIN_BYTES: u64 = 0;
pub const DEFAULT_PSI_LIMIT_MIN_RATIO: f64 = 0.1;
pub const DEFAULT_PSI_RECLAIM_MAX_BYTES: u64 = 1 << 30;

/// What one config file adds to (or removes from) the daemon's registry.
///
/// etmem's model: a file holds groups for a project, an engine and a task;
/// `obj add` adds them in that order, `obj del` removes them in reverse.
/// A native TOML file usually holds one whole project (project, its engine,
/// its tasks); it may also hold only tasks for an existing project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objects {
    /// Where these objects were read from, for messages.
    pub format: Format,
    pub project: Option<Project>,
    pub engines: Vec<Engine>,
    pub tasks: Vec<Task>,
}

impl Objects {
    /// The project these objects belong to: the file's own project, else
    /// the one its engine or first task names.
    pub fn project_name(&self) -> Option<&str> {
        self.project
            .as_ref()
            .map(|p| p.name.as_str())
            .or_else(|| self.engines.first().map(|e| e.project.as_str()))
            .or_else(|| self.tasks.first().map(|t| t.project.as_str()))
    }
}

/// The syntax a config file was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    /// The native format, one TOML file per workload.
    Toml,
    /// openEuler etmem's INI (GKeyFile) files, accepted as they are.
    EtmemIni,
}

impl Format {
    /// The name used by `--format` and in messages: `toml` or `etmem`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Toml => "toml",
            Format::EtmemIni => "etmem",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    /// `toml`, or `etmem` / `ini` for etmem's INI files.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "toml" => Ok(Format::Toml),
            "etmem" | "ini" => Ok(Format::EtmemIni),
            _ => Err(format!("unknown config format `{s}`, expected `toml` or `etmem`")),
        }
    }
}

/// A project: how its memory is scanned, the policy, the schemes and the
/// swap backends. Engines and tasks refer to it by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Scan {
    /// etmem `scan_type=page`: every page of every eligible VMA, every scan.
    Page(PageScan),
    /// etmem `scan_type=region`: DAMON's region-based sampling (userspace
    /// `region` engine or the kernel's DAMON).
    Region(RegionScan),
    /// etmem `scan_type=psi`: cgroup PSI-driven reclaim.
    Psi(PsiScan),
}

impl Scan {
    /// etmem's `scan_type` for this scan: `page`, `region` or `psi`.
    pub fn scan_type(&self) -> &'static str {
        match self {
            Scan::Page(_) => "page",
            Scan::Region(_) => "region",
            Scan::Psi(_) => "psi",
        }
    }
}

/// etmem's page-scan timing, with the code's semantics (not the docs').
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageScan {
    /// Scans per round (etmem `loop`, 1..=120).
    pub loops: u32,
    /// Sleep after each of the `loops` scans (etmem `sleep`).
    pub sleep: Duration,
    /// Idle time between two rounds (etmem `interval`).
    pub interval: Duration,
}

impl PageScan {
    /// The highest per-page score a round can give: `3 * loops` (every scan dirty).
    /// Hot thresholds `T` range over `0..=max_score()`.
    pub fn max_score(&self) -> u32 {
        self.loops.saturating_mul(PAGE_DIRTY_WEIGHT)
    }
}

impl Default for PageScan {
    fn default() -> Self {
        PageScan { loops: DEFAULT_PAGE_LOOPS, sleep: DEFAULT_PAGE_SLEEP, interval: DEFAULT_PAGE_INTERVAL }
    }
}

/// DAMON monitoring attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionScan {
    pub sample_interval: Duration,
    pub aggr_interval: Duration,
    pub update_interval: Duration,
    pub min_nr_regions: u32,
    pub max_nr_regions: u32,
    /// DAMON's monitoring-intervals auto-tuning (`intervals_goal`); `None` = off.
    pub autotune: Option<IntervalsGoal>,
}

impl RegionScan {
    /// DAMON's `max_nr_accesses`: samples per aggregation, at least 1.
    pub fn max_nr_accesses(&self) -> u32 {
        let sample = self.sample_interval.as_nanos().max(1);
        u32::try_from(self.aggr_interval.as_nanos() / sample).unwrap_or(u32::MAX).max(1)
    }
}

impl Default for RegionScan {
    fn default() -> Self {
        RegionScan {
            sample_interval: DEFAULT_SAMPLE_INTERVAL,
            aggr_interval: DEFAULT_AGGR_INTERVAL,
            update_interval: DEFAULT_UPDATE_INTERVAL,
            min_nr_regions: DEFAULT_MIN_NR_REGIONS,
            max_nr_regions: DEFAULT_MAX_NR_REGIONS,
            autotune: None,
        }
    }
}

/// DAMON `intervals_goal`: tune the sample interval so that the observed
/// access events are `access_bp` / 10000 of the possible ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalsGoal {
    pub access_bp: u32,
    pub aggrs: u32,
    pub min_sample_interval: Duration,
    pub max_sample_interval: Duration,
}

impl Default for IntervalsGoal {
    fn default() -> Self {
        IntervalsGoal {
            access_bp: DEFAULT_AUTOTUNE_ACCESS_BP,
            aggrs: DEFAULT_AUTOTUNE_AGGRS,
            min_sample_interval: DEFAULT_AUTOTUNE_MIN_SAMPLE,
            max_sample_interval: DEFAULT_AUTOTUNE_MAX_SAMPLE,
        }
    }
}

/// etmem psi project parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PsiScan {
    pub interval: Duration,
}

/// An engine of a project. Tasks and `etmem engine -e NAME` refer to it by `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Engine {
    pub project: String,
    /// The engine's name: its kind (`page`, `region`, `kernel-damon`, or
    /// etmem's `slide`, `cslide`, `damon`, `psi`, `memdcd`), or a thirdparty `eng_name`.
    pub name: String,
    pub kind: EngineKind,
}

/// What an engine is and its own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// etmem `memdcd`: hands scan results to the memdcd policy daemon
    /// (userswap). Parsed so it can be refused with a clear reason.
    Memdcd,
}

impl EngineKind {
    /// The kind's name: `page`, `cslide`, `region`, `kernel-damon`, `psi`,
    /// `thirdparty` or `memdcd`.
    pub fn kind_str(&self) -> &'static str {
        match self {
            EngineKind::Page(_) => "page",
            EngineKind::Cslide(_) => "cslide",
            EngineKind::Region(_) => "region",
            EngineKind::KernelDamon(_) => "kernel-damon",
            EngineKind::Psi => "psi",
            EngineKind::Thirdparty(_) => "thirdparty",
            EngineKind::Memdcd => "memdcd",
        }
    }

    /// Schemes that come with the engine itself (etmem's `damon` engine group
    /// carries one). The schemes in effect for an engine are its project's
    /// `schemes` followed by these.
    pub fn schemes(&self) -> &[Scheme] {
        match self {
            EngineKind::KernelDamon(k) => &k.schemes,
            _ => &[],
        }
    }

    /// The `scan_type`s of projects this engine can belong to.
    pub fn scan_types(&self) -> &'static [&'static str] {
        match self {
            EngineKind::Page(_) | EngineKind::Cslide(_) | EngineKind::Thirdparty(_) | EngineKind::Memdcd => {
                &["page"]
            }
            EngineKind::Region(_) | EngineKind::KernelDamon(_) => &["region"],
            EngineKind::Psi => &["psi"],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageEngine {
    pub probe: ProbeChoice,
    /// Default hot threshold T for tasks that do not set their own
    /// (score: idle 0, read 1, dirty 3 per scan; hot when score >= T).
    pub hot_threshold: Option<u32>,
    /// Refuse the refault probe (which pages out every page it checks).
    pub forbid_refault: bool,
}

impl Default for PageEngine {
    fn default() -> Self {
        PageEngine { probe: ProbeChoice::Auto, hot_threshold: None, forbid_refault: false }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CslideEngine {
    /// (hot node, cold node) pairs; first = hot (DRAM), as etmem's code has it.
    pub node_pairs: Vec<(u32, u32)>,
    pub hot_threshold: u32,
    pub node_mig_quota_bytes: u64,
    pub node_hot_reserve_bytes: u64,
    /// etmem's PMU-build keys (`sample_period`, `vma_updata_rate`,
    /// `cpu_set_size`, `cooling_interval`), when the file has them.
    pub pmu: Option<PmuSampling>,
}

/// etmem's PMU sampling keys (only meaningful in etmem's `-DENABLE_PMU=ON`
/// build; kept so the daemon can say they have no effect here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PmuSampling {
    pub sample_period: u64,
    /// etmem's spelling (`vma_updata_rate`).
    pub vma_updata_rate: u64,
    pub cpu_set_size: u64,
    /// cslide only: counts are halved every this many samples.
    pub cooling_interval: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionEngine {
    pub probe: ProbeChoice,
    /// Also monitor file-backed mappings (etmem scans anonymous and
    /// private-writable ones only).
    pub file_backed: bool,
    /// Stop checking a region for the rest of an aggregation interval once
    /// it was seen accessed this many times (0 = never stop, DAMON's way).
    /// `None`: with the refault probe, the fewest accesses that settle every
    /// decision of the policy (`policies::settled_after`); 0 with the others.
    pub max_probed_accesses: Option<u32>,
}

impl Default for RegionEngine {
    fn default() -> Self {
        RegionEngine { probe: ProbeChoice::Auto, file_backed: false, max_probed_accesses: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelDamonEngine {
    pub ops: DamonOps,
    /// Set when the engine came from an etmem `damon` engine group.
    pub from_etmem: bool,
    /// Schemes carried by the engine itself: etmem's `damon` group holds one
    /// (its `min_size` .. `action` keys), so that a separate engine file
    /// brings its scheme along. Native configs put schemes on the project.
    pub schemes: Vec<Scheme>,
}

impl Default for KernelDamonEngine {
    fn default() -> Self {
        KernelDamonEngine { ops: DamonOps::Vaddr, from_etmem: false, schemes: Vec::new() }
    }
}

/// DAMON operations set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DamonOps {
    Vaddr,
    Paddr,
}

impl DamonOps {
    /// The sysfs `operations` name.
    pub fn as_str(self) -> &'static str {
        match self {
            DamonOps::Vaddr => "vaddr",
            DamonOps::Paddr => "paddr",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThirdpartyEngine {
    pub eng_name: String,
    pub libname: PathBuf,
    pub ops_name: String,
    pub private_keys: BTreeMap<String, String>,
}

/// Which access probe an engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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

impl ProbeChoice {
    /// Every probe, in documentation order.
    pub const ALL: [ProbeChoice; 6] = [
        ProbeChoice::Auto,
        ProbeChoice::IdleBitmap,
        ProbeChoice::EtmemIdlePages,
        ProbeChoice::SoftDirty,
        ProbeChoice::Refault,
        ProbeChoice::Simulated,
    ];

    /// The config name (`auto`, `idle-bitmap`, `etmem-idle-pages`,
    /// `soft-dirty`, `refault`, `simulated`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeChoice::Auto => "auto",
            ProbeChoice::IdleBitmap => "idle-bitmap",
            ProbeChoice::EtmemIdlePages => "etmem-idle-pages",
            ProbeChoice::SoftDirty => "soft-dirty",
            ProbeChoice::Refault => "refault",
            ProbeChoice::Simulated => "simulated",
        }
    }

    /// The probe with this config name.
    pub fn from_name(name: &str) -> Option<ProbeChoice> {
        ProbeChoice::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// A task: the processes an engine watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub project: String,
    pub engine: String,
    pub name: String,
    pub target: TaskTarget,
    /// Pids scanned in parallel (etmem `max_threads`, default 1).
    pub max_threads: u32,
    /// Scan only VMAs marked with etmem's MADV_SWAPFLAG (VmFlags where the kernel has it).
    pub swap_flag: bool,
    /// Monitor and act on targets that are refused by default: pid 1, kernel
    /// threads and etmemd itself (TOML `allow_special_target`; root clients only).
    #[serde(default)]
    pub allow_special_target: bool,
    /// Page-engine keys (`T`, `swap_threshold`, `dram_percent`).
    pub page: PageTask,
    /// cslide keys, when the engine is cslide.
    pub cslide: Option<CslideTask>,
    /// psi keys, when the engine is psi.
    pub psi: Option<PsiTask>,
    /// memdcd keys, when the engine is memdcd.
    pub memdcd: Option<MemdcdTask>,
    /// thirdparty private keys, kept verbatim.
    pub private_keys: BTreeMap<String, String>,
}

impl Task {
    /// A task with etmem's defaults for everything but its names and target.
    pub fn new(project: &str, engine: &str, name: &str, target: TaskTarget) -> Task {
        Task {
            project: project.to_owned(),
            engine: engine.to_owned(),
            name: name.to_owned(),
            target,
            max_threads: DEFAULT_MAX_THREADS,
            swap_flag: false,
            allow_special_target: false,
            page: PageTask::default(),
            cslide: None,
            psi: None,
            memdcd: None,
            private_keys: BTreeMap::new(),
        }
    }
}

/// etmem memdcd task keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemdcdTask {
    /// memdcd's socket name (`Sock`); `None` = its default `@_memdcd.server`.
    pub sock: Option<String>,
}

/// What a task names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskTarget {
    Pid(u32),
    /// A process name (comm, as `pgrep -x`); its direct children are included.
    Name(String),
    /// A cgroup directory; every process in it. Relative paths are relative
    /// to the cgroup mount (`/sys/fs/cgroup`, or its `memory` controller on v1).
    Cgroup(PathBuf),
}

impl TaskTarget {
    /// etmem's `type` and `value` columns for this target (`project show`).
    pub fn type_value(&self) -> (&'static str, String) {
        match self {
            TaskTarget::Pid(pid) => ("pid", pid.to_string()),
            TaskTarget::Name(name) => ("name", name.clone()),
            TaskTarget::Cgroup(path) => ("cgroup", path.display().to_string()),
        }
    }
}

impl std::fmt::Display for TaskTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskTarget::Pid(pid) => write!(f, "pid {pid}"),
            TaskTarget::Name(name) => write!(f, "process {name}"),
            TaskTarget::Cgroup(path) => write!(f, "cgroup {}", path.display()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PageTask {
    /// Hot threshold T (hot when score >= T).
    pub hot_threshold: Option<u32>,
    /// Act only when the task's RSS is above this.
    pub swap_threshold_bytes: Option<u64>,
    /// Keep this percentage of the task's memory in RAM (1..=100).
    /// Scores range over `0..=3 * loops`: anything bucketing pages by score
    /// needs `3 * loops + 1` buckets (etmem's `loop + 1` overflows).
    pub dram_percent: Option<u8>,
    /// etmem's PMU-build keys, when the file has them.
    pub pmu: Option<PmuSampling>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CslideTask {
    pub vm_flags: String,
    pub anon_only: bool,
    pub ign_host: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

impl PsiTask {
    /// etmem's defaults for a cgroup directory.
    pub fn new(cg_dir: &str) -> PsiTask {
        PsiTask {
            cg_dir: cg_dir.to_owned(),
            pressure: DEFAULT_PSI_PRESSURE,
            reclaim_rate: DEFAULT_PSI_RECLAIM_RATE,
            reclaim_rate_max: DEFAULT_PSI_RECLAIM_RATE_MAX,
            reclaim_rate_min: DEFAULT_PSI_RECLAIM_RATE_MIN,
            limit_min_bytes: DEFAULT_PSI_LIMIT_MIN_BYTES,
            limit_min_ratio: DEFAULT_PSI_LIMIT_MIN_RATIO,
            reclaim_max_bytes: DEFAULT_PSI_RECLAIM_MAX_BYTES,
        }
    }
}

/// How regions are classified and what is done with each class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Pages paged out that are touched again are kept out of pageouts for
    /// this long (zero: never). Stops the churn of paging out, again and
    /// again, pages a sampler calls cold but the workload still uses.
    pub refault_protect: Duration,
    /// Hot ranges become THP-eligible after this long ...
    pub thp_min_age: Duration,
    /// ... when at least this large (whole aligned 2 MiB units only).
    pub thp_min_size_bytes: u64,
    /// A 2 MiB unit with more unpopulated pages than this is not collapsed
    /// (khugepaged's `max_ptes_none`): `MADV_COLLAPSE` would fill them with
    /// new zeroed pages.
    pub thp_max_ptes_none: u32,
    /// The coolest class whose units `promote_thp` collapses: `Hot` (seen
    /// accessed at least `hot_min_accesses`) or `Warm` (everything not cold).
    #[serde(default)]
    pub thp_min_class: ThpMinClass,
    /// How long the refault probe takes a huge page for in use once it has
    /// seen it (it cannot look into one without undoing it); then the huge
    /// page looks idle, the cold rule splits it and its base pages are
    /// probed again. `None`: the engine's default, `max(cold_min_age,
    /// 10 (thp_min_age + aggregation interval))`. Only with demotion.
    #[serde(default)]
    pub thp_hold: Option<Duration>,
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
    /// etmem's `swapcache_high_wmark` / `swapcache_low_wmark`. They act
    /// through etmem's `etmem_swap` kernel module only; kept so the daemon
    /// can say that they have no effect without it.
    pub swapcache: Option<SwapcacheWatermarks>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            hot_min_accesses: DEFAULT_HOT_MIN_ACCESSES,
            hot_min_age: DEFAULT_HOT_MIN_AGE,
            cold_max_accesses: DEFAULT_COLD_MAX_ACCESSES,
            cold_min_age: DEFAULT_COLD_MIN_AGE,
            refault_protect: Duration::ZERO,
            thp_min_age: DEFAULT_THP_MIN_AGE,
            thp_min_size_bytes: DEFAULT_THP_MIN_SIZE_BYTES,
            thp_max_ptes_none: DEFAULT_THP_MAX_PTES_NONE,
            thp_min_class: ThpMinClass::Hot,
            thp_hold: None,
            cold_action: DEFAULT_COLD_ACTION,
            promote_thp: false,
            demote_thp: false,
            prefetch_warm: false,
            sysmem_threshold: None,
            watermarks: None,
            swap_threshold_bytes: None,
            keep_in_ram: None,
            quota: Quota::default(),
            swapcache: None,
        }
    }
}

impl Policy {
    /// The policy of an etmem `scan_type=page` project (slide): every round,
    /// pages scoring below the task's `T` are paged out, with no age
    /// requirement and no THP handling. The task's `T` (or the engine's)
    /// replaces `hot_min_accesses`; cold = score `< T`.
    pub fn etmem_slide() -> Policy {
        Policy {
            hot_min_accesses: AccessBound::Count(1),
            hot_min_age: Duration::ZERO,
            cold_max_accesses: AccessBound::Count(0),
            cold_min_age: Duration::ZERO,
            thp_min_age: DEFAULT_THP_MIN_AGE,
            thp_min_size_bytes: DEFAULT_THP_MIN_SIZE_BYTES,
            cold_action: Some(Action::Pageout),
            ..Policy::default()
        }
    }

    /// The policy of an etmem `scan_type=region` or `psi` project: no
    /// userspace policy (the kernel applies the engine's scheme, or psi
    /// reclaims by pressure); only classification.
    pub fn etmem_passive() -> Policy {
        Policy { cold_action: None, ..Policy::default() }
    }
}

/// Which memory `promote_thp` makes huge: the coolest class it collapses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ThpMinClass {
    /// Hot memory only: accessed at least `hot_min_accesses` for `hot_min_age`.
    #[default]
    Hot,
    /// Hot and warm memory: everything not cold. A unit of memory a sampler
    /// sees too seldom to call hot (a buffer pool's 4 KiB pages are each
    /// touched about once a minute) is still in use at 2 MiB granularity.
    Warm,
}

/// etmem's swap-cache watermarks, percent of RAM (`1..=100`, low < high).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapcacheWatermarks {
    pub high_percent: u8,
    pub low_percent: u8,
}

/// An access-count bound, absolute or relative to the engine's maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessBound {
    /// Samples (DAMON nr_accesses) or page score (etmem count).
    Count(u32),
    /// Basis points (1/10000) of the engine's maximum count.
    Bp(u32),
    /// The engine's maximum.
    Max,
}

/// An age bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgeBound {
    /// In aggregation intervals, as etmem and DAMON's raw interfaces count.
    Aggregations(u64),
    Time(Duration),
    Max,
}

/// A percentage in hundredths of a percent (basis points): 5000 = 50 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Percent {
    pub bp: u32,
}

impl Percent {
    /// 100 %.
    pub const FULL: Percent = Percent { bp: 10_000 };

    /// A whole percentage (`from_percent(50)` = 50 %).
    pub const fn from_percent(p: u32) -> Percent {
        Percent { bp: p * 100 }
    }

    /// The share as a fraction (0.5 for 50 %).
    pub fn as_fraction(self) -> f64 {
        f64::from(self.bp) / 10_000.0
    }

    /// `self` of `total`, rounded down.
    pub fn of(self, total: u64) -> u64 {
        u64::try_from(u128::from(total) * u128::from(self.bp) / 10_000).unwrap_or(u64::MAX)
    }
}

/// DAMON free-memory watermarks (per mille of free memory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watermarks {
    pub interval: Duration,
    pub high_permil: u32,
    pub mid_permil: u32,
    pub low_permil: u32,
}

impl Default for Watermarks {
    fn default() -> Self {
        Watermarks {
            interval: DEFAULT_WMARK_INTERVAL,
            high_permil: DEFAULT_WMARK_HIGH_PERMIL,
            mid_permil: DEFAULT_WMARK_MID_PERMIL,
            low_permil: DEFAULT_WMARK_LOW_PERMIL,
        }
    }
}

/// A DAMOS-like quota: what may be acted on per `reset_interval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

impl Quota {
    /// Whether the quota limits anything.
    pub fn is_limited(&self) -> bool {
        self.bytes_per_s.is_some() || self.cpu_ms_per_s.is_some()
    }
}

impl Default for Quota {
    /// Unlimited, with DAMON-style charge window and weights.
    fn default() -> Self {
        Quota {
            bytes_per_s: None,
            cpu_ms_per_s: None,
            reset_interval: DEFAULT_QUOTA_RESET_INTERVAL,
            weight_sz_permil: DEFAULT_QUOTA_WEIGHT_SZ_PERMIL,
            weight_nr_accesses_permil: DEFAULT_QUOTA_WEIGHT_NR_ACCESSES_PERMIL,
            weight_age_permil: DEFAULT_QUOTA_WEIGHT_AGE_PERMIL,
        }
    }
}

/// A DAMOS scheme: an access pattern and an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scheme {
    pub pattern: AccessPattern,
    pub action: Action,
    pub quota: Option<Quota>,
    pub watermarks: Option<Watermarks>,
    pub apply_interval: Option<Duration>,
}

/// Closed ranges a region must fall in for a scheme to apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessPattern {
    pub min_size_bytes: u64,
    /// `u64::MAX` for "max".
    pub max_size_bytes: u64,
    pub min_accesses: AccessBound,
    pub max_accesses: AccessBound,
    pub min_age: AgeBound,
    pub max_age: AgeBound,
}

impl Default for AccessPattern {
    /// Matches every region.
    fn default() -> Self {
        AccessPattern {
            min_size_bytes: 0,
            max_size_bytes: u64::MAX,
            min_accesses: AccessBound::Count(0),
            max_accesses: AccessBound::Max,
            min_age: AgeBound::Aggregations(0),
            max_age: AgeBound::Max,
        }
    }
}

/// DAMOS actions (etmem's and DAMON's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    Willneed,
    Cold,
    Pageout,
    Hugepage,
    Nohugepage,
    Stat,
}

impl Action {
    /// Every action, in DAMON's debugfs order (willneed = 0 .. stat = 5).
    pub const ALL: [Action; 6] =
        [Action::Willneed, Action::Cold, Action::Pageout, Action::Hugepage, Action::Nohugepage, Action::Stat];

    /// The name etmem, damo and DAMON sysfs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Willneed => "willneed",
            Action::Cold => "cold",
            Action::Pageout => "pageout",
            Action::Hugepage => "hugepage",
            Action::Nohugepage => "nohugepage",
            Action::Stat => "stat",
        }
    }

    /// The action with this name.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// DAMON debugfs `schemes` action number (etmem's debugfs backend).
    pub fn dbgfs_code(self) -> u32 {
        self as u32
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A swap device a project creates and removes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Backend {
    Zram(ZramBackend),
    SwapFile(SwapFileBackend),
}

impl Backend {
    /// The swapon priority.
    pub fn priority(&self) -> i32 {
        match self {
            Backend::Zram(z) => z.priority,
            Backend::SwapFile(f) => f.priority,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZramBackend {
    pub size_bytes: u64,
    pub compressor: String,
    /// swapon priority (higher is used first); default above swap files.
    pub priority: i32,
    /// zram `mem_limit`: RAM the compressed pages may use.
    pub mem_limit_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwapFileBackend {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub priority: i32,
}
