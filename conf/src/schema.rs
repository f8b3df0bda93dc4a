//! The one source of truth for config keys: every section and key of both
//! formats with its type, default and documentation.
//!
//! The parsers use these tables to find unknown keys (with a "did you mean"),
//! keys that do not apply to the engine or backend kind at hand, and missing
//! required keys; `docs/config.md` is generated from them ([`crate::docs`]).

use crate::model::*;
use crate::units::{fmt_duration, fmt_size};

/// A key's default, as documented and applied.
#[derive(Debug, Clone, Copy)]
pub enum DefaultValue {
    /// The key must be given (for the kinds in `only`).
    Required,
    /// Left out = feature off / no limit / derived; the doc says which.
    Unset,
    /// A fixed text (`false`, `auto`).
    Text(&'static str),
    /// Formatted from a `DEFAULT_*` constant, so docs and code cannot disagree.
    Computed(fn() -> String),
}

impl DefaultValue {
    /// The text shown in docs.
    pub fn render(&self) -> String {
        match self {
            DefaultValue::Required => "required".to_owned(),
            DefaultValue::Unset => "unset".to_owned(),
            DefaultValue::Text(t) => format!("`{t}`"),
            DefaultValue::Computed(f) => format!("`{}`", f()),
        }
    }
}

/// One key of a section.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub key: &'static str,
    /// The value's type, for the docs (`duration`, `size`, `integer 1..=120`).
    pub ty: &'static str,
    pub default: DefaultValue,
    /// The section variants (engine kinds, scan types, backend kinds) the key
    /// applies to; empty = all.
    pub only: &'static [&'static str],
    pub doc: &'static str,
}

/// One section (TOML table or etmem INI group).
#[derive(Debug, Clone, Copy)]
pub struct SectionSpec {
    /// Dotted path used in error keys (`policy.quota`); `""` = the TOML top level.
    pub id: &'static str,
    /// How the section is written (`[policy.quota]`, `[[task]]`).
    pub header: &'static str,
    /// What selects the section's variant, for the docs (`kind`, `scan_type`).
    pub variant_by: &'static str,
    pub doc: &'static str,
    pub keys: &'static [KeySpec],
}

impl SectionSpec {
    pub fn key(&self, key: &str) -> Option<&'static KeySpec> {
        self.keys.iter().find(|k| k.key == key)
    }
}

/// What is wrong with a key's presence in a section.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyProblem {
    Unknown,
    /// Known, but for other variants (engine kinds, scan types, ...).
    NotApplicable(&'static KeySpec),
}

impl PartialEq for KeyProblem {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (KeyProblem::Unknown, KeyProblem::Unknown) => true,
            (KeyProblem::NotApplicable(a), KeyProblem::NotApplicable(b)) => a.key == b.key,
            _ => false,
        }
    }
}

/// Known misspellings from etmem's own docs, with the right key and why.
const KNOWN_TYPOS: &[(&str, &str, &str)] = &[
    (
        "swapcache_high_vmark",
        "swapcache_high_wmark",
        "etmem's user guide misspells it; etmem ignores the misspelt key",
    ),
    (
        "swapcache_low_vmark",
        "swapcache_low_wmark",
        "etmem's user guide misspells it; etmem ignores the misspelt key",
    ),
    ("vma_update_rate", "vma_updata_rate", "etmem spells it `updata`"),
];

/// Checks that `key` may appear in `spec` for `variant` (`None` = not known
/// yet or the section has no variants). Cheap; [`key_message`] explains.
pub(crate) fn check_key(spec: &SectionSpec, variant: Option<&str>, key: &str) -> Result<(), KeyProblem> {
    match (spec.key(key), variant) {
        (None, _) => Err(KeyProblem::Unknown),
        (Some(k), Some(v)) if !k.only.is_empty() && !k.only.contains(&v) => Err(KeyProblem::NotApplicable(k)),
        _ => Ok(()),
    }
}

/// The error message for `problem` with `key`.
pub(crate) fn key_message(
    spec: &SectionSpec,
    variant: Option<&str>,
    key: &str,
    problem: KeyProblem,
) -> String {
    if let KeyProblem::NotApplicable(k) = problem {
        return format!(
            "key does not apply to {} = {}; it is for {}",
            spec.variant_by,
            variant.unwrap_or_default(),
            k.only.join(", ")
        );
    }
    let mut msg = format!("unknown key in {}", spec.header);
    if let Some((_, right, why)) = KNOWN_TYPOS.iter().find(|(typo, _, _)| *typo == key) {
        msg.push_str(&format!("; did you mean `{right}`? ({why})"));
    } else if let Some(s) = suggest(key, spec.keys.iter().map(|k| k.key)) {
        msg.push_str(&format!("; did you mean `{s}`?"));
    } else {
        msg.push_str(&format!("; known keys: {}", applicable_keys(spec, variant).join(", ")));
    }
    msg
}

/// Keys of `spec` that apply to `variant`.
pub(crate) fn applicable_keys(spec: &SectionSpec, variant: Option<&str>) -> Vec<&'static str> {
    spec.keys
        .iter()
        .filter(|k| match variant {
            Some(v) => k.only.is_empty() || k.only.contains(&v),
            None => true,
        })
        .map(|k| k.key)
        .collect()
}

/// Required keys of `spec` for `variant` that `present` lacks.
pub(crate) fn missing_required<'a>(
    spec: &SectionSpec,
    variant: Option<&str>,
    present: impl Fn(&str) -> bool + 'a,
) -> Vec<&'static str> {
    spec.keys
        .iter()
        .filter(|k| matches!(k.default, DefaultValue::Required))
        .filter(|k| match variant {
            Some(v) => k.only.is_empty() || k.only.contains(&v),
            None => k.only.is_empty(),
        })
        .filter(|k| !present(k.key))
        .map(|k| k.key)
        .collect()
}

/// The candidate closest to `word` if it is close enough to be a typo.
pub(crate) fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|&(d, c)| d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars (inputs are short keys).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------
// Native TOML

const PAGE: &[&str] = &["page"];
const REGIONS: &[&str] = &["region", "kernel-damon"];
const SCANNED: &[&str] = &["page", "region"];

fn d_loops() -> String {
    DEFAULT_PAGE_LOOPS.to_string()
}
fn d_page_sleep() -> String {
    fmt_duration(DEFAULT_PAGE_SLEEP)
}
fn d_page_interval() -> String {
    fmt_duration(DEFAULT_PAGE_INTERVAL)
}
fn d_sample() -> String {
    fmt_duration(DEFAULT_SAMPLE_INTERVAL)
}
fn d_aggr() -> String {
    fmt_duration(DEFAULT_AGGR_INTERVAL)
}
fn d_update() -> String {
    fmt_duration(DEFAULT_UPDATE_INTERVAL)
}
fn d_min_regions() -> String {
    DEFAULT_MIN_NR_REGIONS.to_string()
}
fn d_max_regions() -> String {
    DEFAULT_MAX_NR_REGIONS.to_string()
}
fn d_access_bp() -> String {
    DEFAULT_AUTOTUNE_ACCESS_BP.to_string()
}
fn d_aggrs() -> String {
    DEFAULT_AUTOTUNE_AGGRS.to_string()
}
fn d_min_sample() -> String {
    fmt_duration(DEFAULT_AUTOTUNE_MIN_SAMPLE)
}
fn d_max_sample() -> String {
    fmt_duration(DEFAULT_AUTOTUNE_MAX_SAMPLE)
}
fn d_max_threads() -> String {
    DEFAULT_MAX_THREADS.to_string()
}
pub(crate) fn fmt_access(a: AccessBound) -> String {
    match a {
        AccessBound::Count(n) => n.to_string(),
        AccessBound::Bp(bp) => Percent { bp }.to_string(),
        AccessBound::Max => "max".to_owned(),
    }
}
fn d_hot_acc() -> String {
    fmt_access(DEFAULT_HOT_MIN_ACCESSES)
}
fn d_hot_age() -> String {
    fmt_duration(DEFAULT_HOT_MIN_AGE)
}
fn d_cold_acc() -> String {
    fmt_access(DEFAULT_COLD_MAX_ACCESSES)
}
fn d_cold_age() -> String {
    fmt_duration(DEFAULT_COLD_MIN_AGE)
}
fn d_thp_age() -> String {
    fmt_duration(DEFAULT_THP_MIN_AGE)
}
fn d_thp_size() -> String {
    fmt_size(DEFAULT_THP_MIN_SIZE_BYTES)
}
fn d_cold_action() -> String {
    DEFAULT_COLD_ACTION.map_or("none", |a| a.as_str()).to_owned()
}
fn d_wmark_interval() -> String {
    fmt_duration(DEFAULT_WMARK_INTERVAL)
}
fn permil(p: u32) -> String {
    Percent { bp: p * 10 }.to_string()
}
fn d_wmark_high() -> String {
    permil(DEFAULT_WMARK_HIGH_PERMIL)
}
fn d_wmark_mid() -> String {
    permil(DEFAULT_WMARK_MID_PERMIL)
}
fn d_wmark_low() -> String {
    permil(DEFAULT_WMARK_LOW_PERMIL)
}
fn d_thp_ptes_none() -> String {
    DEFAULT_THP_MAX_PTES_NONE.to_string()
}
fn d_reset() -> String {
    fmt_duration(DEFAULT_QUOTA_RESET_INTERVAL)
}
fn d_w_sz() -> String {
    DEFAULT_QUOTA_WEIGHT_SZ_PERMIL.to_string()
}
fn d_w_nr() -> String {
    DEFAULT_QUOTA_WEIGHT_NR_ACCESSES_PERMIL.to_string()
}
fn d_w_age() -> String {
    DEFAULT_QUOTA_WEIGHT_AGE_PERMIL.to_string()
}
fn d_compressor() -> String {
    DEFAULT_ZRAM_COMPRESSOR.to_owned()
}
fn d_priority() -> String {
    format!("{} (zram), {} (swapfile)", DEFAULT_ZRAM_PRIORITY, DEFAULT_SWAPFILE_PRIORITY)
}

const fn key(
    key: &'static str,
    ty: &'static str,
    default: DefaultValue,
    only: &'static [&'static str],
    doc: &'static str,
) -> KeySpec {
    KeySpec { key, ty, default, only, doc }
}

use DefaultValue::{Computed, Required, Text, Unset};

const ROOT_KEYS: &[KeySpec] = &[
    key(
        "project",
        "table or string",
        Required,
        &[],
        "`[project]` for a whole project. In a file that only adds tasks to an existing project: \
         the project's name (`project = \"db\"`), together with `engine`.",
    ),
    key(
        "engine",
        "table or string",
        Unset,
        &[],
        "`[engine]`, required with `[project]`. In a tasks-only file: the existing engine's name \
         (`page`, `region` or `kernel-damon`).",
    ),
    key("task", "array of tables", Unset, &[], "`[[task]]`: the processes to watch; zero or more."),
    key("policy", "table", Unset, &[], "`[policy]`: classification and actions; defaults below."),
    key("scheme", "array of tables", Unset, &[], "`[[scheme]]`: DAMOS-style schemes, applied in order."),
    key("backend", "array of tables", Unset, &[], "`[[backend]]`: swap devices the project sets up."),
];

const PROJECT_KEYS: &[KeySpec] = &[key(
    "name",
    "name",
    Required,
    &[],
    "Project name: 1 to 64 characters, no spaces or control characters, not starting with `-`. \
     `etmem project start -n NAME` refers to it.",
)];

const ENGINE_KEYS: &[KeySpec] = &[
    key(
        "kind",
        "`page` / `region` / `kernel-damon`",
        Required,
        &[],
        "`page`: etmem's page scan (every page, every scan). `region`: DAMON's region sampling run \
         in userspace through a probe; cost bounded by `max_nr_regions`. `kernel-damon`: the \
         kernel's DAMON through sysfs. The engine's name is its kind.",
    ),
    key("loop", "integer 1..=120", Computed(d_loops), PAGE, "Scans per round (etmem `loop`)."),
    key(
        "sleep",
        "duration, > 0, <= 1200s",
        Computed(d_page_sleep),
        PAGE,
        "Sleep after each of the `loop` scans (etmem `sleep`, as etmem's code uses it).",
    ),
    key(
        "interval",
        "duration, > 0, <= 1200s",
        Computed(d_page_interval),
        PAGE,
        "Idle time between two rounds (etmem `interval`).",
    ),
    key(
        "T",
        "integer 0..=3*loop",
        Unset,
        PAGE,
        "Default hot threshold for tasks without their own `T`: per page and round, idle scores \
         0, read 1, dirty 3 per scan; hot when the sum >= T. Unset: the policy's \
         `hot_min_accesses` decides.",
    ),
    key(
        "probe",
        "`auto` / `idle-bitmap` / `etmem-idle-pages` / `soft-dirty` / `refault` / `simulated`",
        Text("auto"),
        SCANNED,
        "How accesses are seen. `auto` picks the best the host has (`etmem doctor` lists them).",
    ),
    key(
        "forbid_refault",
        "bool",
        Text("false"),
        PAGE,
        "Never use the `refault` probe, which pages out every page it checks.",
    ),
    key("sample_interval", "duration", Computed(d_sample), REGIONS, "DAMON sampling interval."),
    key(
        "aggr_interval",
        "duration, >= sample_interval",
        Computed(d_aggr),
        REGIONS,
        "DAMON aggregation interval; ages count in these.",
    ),
    key(
        "update_interval",
        "duration",
        Computed(d_update),
        REGIONS,
        "How often the target's address ranges are refreshed.",
    ),
    key("min_nr_regions", "integer >= 3", Computed(d_min_regions), REGIONS, "Fewest regions per target."),
    key(
        "max_nr_regions",
        "integer > min_nr_regions",
        Computed(d_max_regions),
        REGIONS,
        "Most regions per target: bounds the monitoring cost.",
    ),
    key(
        "file_backed",
        "bool",
        Text("false"),
        &["region"],
        "Also monitor file-backed mappings (etmem scans anonymous and private writable ones).",
    ),
    key(
        "max_probed_accesses",
        "integer >= 0",
        Text("refault probe: as the policy needs; else 0"),
        &["region"],
        "Once a region was seen accessed this many times in an aggregation interval, stop \
         checking it until the next one; its other samples are drawn at the rate seen. Bounds \
         what a hot region costs the refault probe (a pageout and a fault per hot check); \
         regions with fewer accesses, every cold one, are checked at every sample. Unset with \
         the refault probe: the fewest accesses that settle every decision of the policy \
         (`cold_max_accesses` + 1; also `hot_min_accesses` when promoting THP or prefetching; \
         the schemes' access ranges), so decisions stay those of checking every sample. 0 = \
         check every sample, as DAMON does.",
    ),
    key(
        "ops",
        "`vaddr` / `paddr`",
        Text("vaddr"),
        &["kernel-damon"],
        "DAMON operations: the tasks' virtual address spaces, or all physical memory.",
    ),
    key(
        "autotune",
        "table",
        Unset,
        REGIONS,
        "`[engine.autotune]`: DAMON's monitoring-interval auto-tuning (Linux 6.15+). Unset = off.",
    ),
];

const AUTOTUNE_KEYS: &[KeySpec] = &[
    key(
        "access_bp",
        "integer 1..=10000",
        Computed(d_access_bp),
        &[],
        "Target share of observed access events, in basis points (400 = 4 %).",
    ),
    key("aggrs", "integer >= 1", Computed(d_aggrs), &[], "Aggregations between two tunings."),
    key("min_sample", "duration", Computed(d_min_sample), &[], "Smallest sample interval the tuner may set."),
    key("max_sample", "duration", Computed(d_max_sample), &[], "Largest sample interval the tuner may set."),
];

const TASK_KEYS: &[KeySpec] = &[
    key(
        "name",
        "name",
        Unset,
        &[],
        "Task name (etmem's rules, as the project name). Unset: the process name, `pid-N`, or the \
         cgroup directory's last component.",
    ),
    key("pid", "integer", Unset, &[], "A process id. Give exactly one of `pid`, `process`, `cgroup`."),
    key(
        "process",
        "string, <= 15 bytes",
        Unset,
        &[],
        "A process name as in /proc/PID/comm (`pgrep -x`); its direct children are included.",
    ),
    key(
        "cgroup",
        "path",
        Unset,
        &[],
        "A cgroup directory: every process in it. Relative paths start at the cgroup mount.",
    ),
    key(
        "max_threads",
        "integer 1..=4096",
        Computed(d_max_threads),
        SCANNED,
        "Pids scanned in parallel (the daemon also caps it at 2 * CPUs + 1, as etmem).",
    ),
    key(
        "swap_flag",
        "bool",
        Text("false"),
        SCANNED,
        "Scan only VMAs marked with etmem's MADV_SWAPFLAG (needs etmem's kernel patches).",
    ),
    key(
        "allow_special_target",
        "bool",
        Text("false"),
        &[],
        "Also monitor and act on targets refused by default: pid 1, kernel threads and etmemd \
         itself. Only root clients may add a task with it (see SECURITY.md).",
    ),
    key("T", "integer 0..=3*loop", Unset, PAGE, "This task's hot threshold (see `[engine] T`)."),
    key("swap_threshold", "size", Unset, SCANNED, "Act on the task only while its RSS is above this."),
    key(
        "dram_percent",
        "percent 1..=100 (`50%` or `50`)",
        Unset,
        SCANNED,
        "Keep this share of the task's memory (RSS + swap) in RAM; swap the coldest rest.",
    ),
];

const POLICY_KEYS: &[KeySpec] = &[
    key(
        "hot_min_accesses",
        "access bound",
        Computed(d_hot_acc),
        &[],
        "A region is hot when its access count reaches this: an integer count (DAMON nr_accesses, \
         or the page engine's score), `N%` of the engine's maximum, or `max`.",
    ),
    key("hot_min_age", "duration", Computed(d_hot_age), &[], "... and it has been so for this long."),
    key(
        "cold_max_accesses",
        "access bound",
        Computed(d_cold_acc),
        &[],
        "A region is cold when its access count is at most this ...",
    ),
    key("cold_min_age", "duration", Computed(d_cold_age), &[], "... and it has stayed so for this long."),
    key(
        "refault_protect",
        "duration",
        Text("0s"),
        &[],
        "Pages we paged out that the task touches again stay out of pageouts for this long \
         (`0s`: never protected), twice as long each time the same page comes back again (up to \
         16x; a page is remembered for 4x its last protection after it ran out). The sampler sees \
         a region, not every page: without this, pages of a cold-looking region that the workload \
         still uses are paged out again and again.",
    ),
    key(
        "thp_min_age",
        "duration",
        Computed(d_thp_age),
        &[],
        "Hot ranges (`thp_min_class`) become THP candidates after this long ...",
    ),
    key(
        "thp_min_size",
        "size, multiple of 2M",
        Computed(d_thp_size),
        &[],
        "... when at least this large (whole aligned 2 MiB units).",
    ),
    key(
        "thp_max_ptes_none",
        "integer 0..=511",
        Computed(d_thp_ptes_none),
        &[],
        "A 2 MiB unit with more unpopulated pages than this is not collapsed (khugepaged's \
         `max_ptes_none`): MADV_COLLAPSE would fill them with new zeroed pages, memory the \
         process never asked for. `0`: only fully populated units, promotion adds no memory; \
         `511`: any unit, as khugepaged by default. Region and page engines; with kernel-damon, \
         khugepaged's own setting applies.",
    ),
    key(
        "thp_min_class",
        "`hot` / `warm`",
        Text("hot"),
        &[],
        "Which memory `promote_thp` collapses: `hot` (accessed at least `hot_min_accesses`), or \
         `warm` (everything not cold: with demotion, a unit stays huge until its region goes \
         cold). A database's buffer pool is warm at 2 MiB granularity even when a sampler sees \
         each 4 KiB page seldom.",
    ),
    key(
        "thp_hold",
        "duration, > 0",
        Text("max(cold_min_age, 10 × (thp_min_age + aggr_interval))"),
        &[],
        "With demotion and the refault probe (which cannot look into a huge page without undoing \
         it): how long a huge page is taken for in use once the probe has seen it, spread ±25 % \
         per 2 MiB unit. Then it looks idle, the cold rule splits it after `cold_min_age` and its \
         base pages are probed again: a unit still in use is collapsed again. Each such round \
         costs a split and a collapse (about 2 s of CPU per GiB) and leaves the unit in base pages \
         for about an aggregation; a longer hold costs less and gives cold huge pages back later. \
         Region engine.",
    ),
    key(
        "cold_action",
        "`pageout` / `cold` / `stat` / `none`",
        Computed(d_cold_action),
        &[],
        "What to do with cold memory: page it out (to the backends), mark it cold \
         (MADV_COLD: reclaimed first under pressure), only count it, or nothing.",
    ),
    key(
        "promote_thp",
        "bool",
        Text("false"),
        &[],
        "Collapse THP candidates into huge pages (MADV_COLLAPSE).",
    ),
    key(
        "demote_thp",
        "bool",
        Text("false"),
        &[],
        "Split cold huge pages back into base pages (a partial MADV_COLD; the memory stays resident).",
    ),
    key(
        "prefetch_warm",
        "bool",
        Text("false"),
        &[],
        "Bring back (MADV_WILLNEED) swapped regions that get accessed again.",
    ),
    key(
        "sysmem_threshold",
        "percent",
        Unset,
        &[],
        "Act only while free memory is below this share of RAM (etmem `sysmem_threshold`).",
    ),
    key("swap_threshold", "size", Unset, &[], "Act on a task only while its RSS is above this."),
    key("keep_in_ram", "percent", Unset, &[], "Keep at least this share of each task's memory in RAM."),
    key(
        "watermarks",
        "table",
        Unset,
        &[],
        "`[policy.watermarks]`: act only while free memory is between `low` and `high`.",
    ),
    key("quota", "table", Text("unlimited"), &[], "`[policy.quota]`: how much may be acted on per second."),
];

const WMARK_KEYS: &[KeySpec] = &[
    key("interval", "duration", Computed(d_wmark_interval), &[], "How often free memory is checked."),
    key("high", "percent, 0.1% steps", Computed(d_wmark_high), &[], "Stop when free memory is above this."),
    key("mid", "percent, 0.1% steps", Computed(d_wmark_mid), &[], "Start when free memory falls below this."),
    key(
        "low",
        "percent, 0.1% steps",
        Computed(d_wmark_low),
        &[],
        "Stop when free memory is below this (the kernel's own reclaim takes over).",
    ),
];

const QUOTA_KEYS: &[KeySpec] = &[
    key("bytes_per_s", "size", Unset, &[], "Bytes acted on per second. Unset: unlimited."),
    key(
        "cpu_ms_per_s",
        "integer 1..=1000",
        Unset,
        &[],
        "CPU milliseconds spent acting per second. Unset: unlimited.",
    ),
    key(
        "reset_interval",
        "duration",
        Computed(d_reset),
        &[],
        "The quota's charge window. Engines act once per aggregation (the page engine once per \
         round), so with an `aggr_interval` longer than this window each aggregation gets one \
         window's budget, not the rate times the aggregation (as DAMOS does): set it to \
         `aggr_interval` or more for long aggregations.",
    ),
    key("weight_sz", "integer permil 0..=1000", Computed(d_w_sz), &[], "Priority weight of region size."),
    key(
        "weight_nr_accesses",
        "integer permil 0..=1000",
        Computed(d_w_nr),
        &[],
        "Priority weight of access count.",
    ),
    key("weight_age", "integer permil 0..=1000", Computed(d_w_age), &[], "Priority weight of age."),
];

const SCHEME_KEYS: &[KeySpec] = &[
    key(
        "line",
        "string",
        Unset,
        &[],
        "The whole pattern and action as a one-liner (damo's or etmem's seven fields, see below). \
         Replaces `action` and the `min_*`/`max_*` keys.",
    ),
    key("form", "`auto` / `damo` / `etmem`", Text("auto"), &[], "How to read `line`; `auto` detects it."),
    key(
        "action",
        "`willneed` / `cold` / `pageout` / `hugepage` / `nohugepage` / `stat`",
        Required,
        &[],
        "The DAMOS action (required unless `line` is given).",
    ),
    key("min_size", "size or `min`", Text("min"), &[], "Smallest region size that matches."),
    key("max_size", "size or `max`", Text("max"), &[], "Largest region size that matches."),
    key(
        "min_accesses",
        "access bound",
        Text("min"),
        &[],
        "Fewest accesses: integer count, `N%` of the maximum, `min` or `max`.",
    ),
    key("max_accesses", "access bound", Text("max"), &[], "Most accesses."),
    key("min_age", "duration or `min`", Text("min"), &[], "Youngest age that matches."),
    key("max_age", "duration or `max`", Text("max"), &[], "Oldest age that matches."),
    key(
        "apply_interval",
        "duration",
        Unset,
        &[],
        "How often the scheme is applied. Unset: every aggregation.",
    ),
    key("quota", "table", Unset, &[], "`[scheme.quota]`, keys as `[policy.quota]`. Unset: unlimited."),
    key(
        "watermarks",
        "table",
        Unset,
        &[],
        "`[scheme.watermarks]`, keys as `[policy.watermarks]`. Unset: always active.",
    ),
];

const BACKEND_KEYS: &[KeySpec] = &[
    key("kind", "`zram` / `swapfile`", Required, &[], "Compressed RAM, or a swap file on disk."),
    key(
        "size",
        "size",
        Required,
        &[],
        "zram: the uncompressed capacity (`disksize`); swapfile: the file's size.",
    ),
    key(
        "priority",
        "integer -1..=32767",
        Computed(d_priority),
        &[],
        "swapon priority: higher is used first, so zram fills before the swap file.",
    ),
    key(
        "compressor",
        "string",
        Computed(d_compressor),
        &["zram"],
        "zram `comp_algorithm` (`lz4`, `zstd`, ...).",
    ),
    key("mem_limit", "size", Unset, &["zram"], "RAM the compressed pages may use. Unset: no limit."),
    key("path", "absolute path", Required, &["swapfile"], "Where the swap file is created."),
];

/// Sections of the native TOML format.
pub static TOML_SECTIONS: &[SectionSpec] = &[
    SectionSpec {
        id: "",
        header: "top level",
        variant_by: "",
        doc: "A file describes one project: `[project]`, `[engine]`, optional `[policy]`, \
              `[[task]]`, `[[scheme]]` and `[[backend]]`. A file that only adds tasks to an \
              existing project has `project = \"NAME\"`, `engine = \"KIND\"` and `[[task]]`s.",
        keys: ROOT_KEYS,
    },
    SectionSpec {
        id: "project",
        header: "[project]",
        variant_by: "",
        doc: "The project.",
        keys: PROJECT_KEYS,
    },
    SectionSpec {
        id: "engine",
        header: "[engine]",
        variant_by: "kind",
        doc: "How memory is watched. Its scan parameters become the project's.",
        keys: ENGINE_KEYS,
    },
    SectionSpec {
        id: "engine.autotune",
        header: "[engine.autotune]",
        variant_by: "",
        doc: "DAMON `intervals_goal`: the sample interval (and the aggregation interval with it) \
              is tuned so that `access_bp` of the possible access events are seen.",
        keys: AUTOTUNE_KEYS,
    },
    SectionSpec {
        id: "task",
        header: "[[task]]",
        variant_by: "engine kind",
        doc: "One watched target. Exactly one of `pid`, `process`, `cgroup`.",
        keys: TASK_KEYS,
    },
    SectionSpec {
        id: "policy",
        header: "[policy]",
        variant_by: "",
        doc: "How regions are classified (cold, hot, THP candidate) and what is done with each class.",
        keys: POLICY_KEYS,
    },
    SectionSpec {
        id: "policy.watermarks",
        header: "[policy.watermarks]",
        variant_by: "",
        doc: "DAMON free-memory watermarks (`free_mem_rate`): `high` >= `mid` >= `low`.",
        keys: WMARK_KEYS,
    },
    SectionSpec {
        id: "policy.quota",
        header: "[policy.quota]",
        variant_by: "",
        doc: "A DAMOS-style quota; when it binds, coldest (or hottest) regions go first by the weights.",
        keys: QUOTA_KEYS,
    },
    SectionSpec {
        id: "scheme",
        header: "[[scheme]]",
        variant_by: "",
        doc: "A DAMOS scheme: regions whose size, access count and age are within the ranges get \
              the action. Either `line` or the structured keys.",
        keys: SCHEME_KEYS,
    },
    SectionSpec {
        id: "scheme.quota",
        header: "[scheme.quota]",
        variant_by: "",
        doc: "The scheme's own quota; keys as `[policy.quota]`.",
        keys: QUOTA_KEYS,
    },
    SectionSpec {
        id: "scheme.watermarks",
        header: "[scheme.watermarks]",
        variant_by: "",
        doc: "The scheme's own watermarks; keys as `[policy.watermarks]`.",
        keys: WMARK_KEYS,
    },
    SectionSpec {
        id: "backend",
        header: "[[backend]]",
        variant_by: "kind",
        doc: "A swap device created when the project starts and removed when it stops.",
        keys: BACKEND_KEYS,
    },
];

// ---------------------------------------------------------------------------
// etmem INI

const SLIDE: &[&str] = &["slide"];
const CSLIDE: &[&str] = &["cslide"];
const PSI: &[&str] = &["psi"];

const ETMEM_PROJECT_KEYS: &[KeySpec] = &[
    key("name", "name", Required, &[], "Project name (<= 64)."),
    key(
        "scan_type",
        "`page` / `region` / `psi`",
        Text("page"),
        &[],
        "`page`: slide/cslide/thirdparty/memdcd engines; `region`: the damon engine; `psi`: the psi engine.",
    ),
    key("loop", "integer 1..=120", Required, PAGE, "Scans per round."),
    key(
        "interval",
        "integer seconds 1..=1200",
        Required,
        &["page", "psi"],
        "page: idle time between rounds (etmem's code; its docs swap `interval` and `sleep`); \
         psi: reclaim period.",
    ),
    key("sleep", "integer seconds 1..=1200", Required, PAGE, "Sleep after each of the `loop` scans."),
    key(
        "sysmem_threshold",
        "integer percent 0..=100",
        Unset,
        PAGE,
        "Swap only while MemFree / MemTotal is below this. Honoured (`[policy] sysmem_threshold`).",
    ),
    key(
        "swapcache_high_wmark",
        "integer percent 1..=100",
        Unset,
        PAGE,
        "Swap-cache share of RAM that triggers swap-cache reclaim. Accepted and kept, but it acts \
         through etmem's `etmem_swap` kernel module only: without it the daemon says it has no effect.",
    ),
    key(
        "swapcache_low_wmark",
        "integer percent 1..=100, < high",
        Unset,
        PAGE,
        "Swap-cache reclaim target. Set both watermarks or neither.",
    ),
    key("sample_interval", "integer µs > 0", Required, &["region"], "DAMON sampling interval."),
    key(
        "aggr_interval",
        "integer µs >= sample_interval",
        Required,
        &["region"],
        "DAMON aggregation interval.",
    ),
    key("update_interval", "integer µs > 0", Required, &["region"], "DAMON target update interval."),
    key("min_nr_regions", "integer >= 3", Required, &["region"], "Fewest regions."),
    key("max_nr_regions", "integer > min_nr_regions", Required, &["region"], "Most regions."),
];

const ETMEM_ENGINE_KEYS: &[KeySpec] = &[
    key(
        "name",
        "`slide` / `cslide` / `damon` / `thirdparty` / `psi` / `memdcd`",
        Required,
        &[],
        "The engine type (etmem's README tables call this key `engine`; the code reads `name`).",
    ),
    key("project", "name", Required, &[], "The project the engine belongs to."),
    key(
        "node_pair",
        "`hot,cold;hot,cold`",
        Required,
        CSLIDE,
        "NUMA node pairs, first = hot (DRAM) node, second = cold (AEP/PMEM) node, as etmem's code \
         has it (its docs say the reverse). Every node at most once. The daemon refuses cslide on a \
         host with one NUMA node.",
    ),
    key(
        "hot_threshold",
        "integer >= 0",
        Required,
        CSLIDE,
        "Access count below which memory is cold (etmem clamps it to 3 * loop + 1).",
    ),
    key(
        "node_mig_quota",
        "integer MiB >= 0",
        Required,
        CSLIDE,
        "Most memory moved per direction, round and pair.",
    ),
    key("node_hot_reserve", "integer MiB >= 0", Required, CSLIDE, "DRAM kept for hot memory."),
    key(
        "sample_period",
        "integer > 0",
        Unset,
        CSLIDE,
        "etmem PMU build only; with `vma_updata_rate`, `cpu_set_size`, `cooling_interval`: all four or none. \
         Kept; the daemon says PMU sampling is not supported.",
    ),
    key("vma_updata_rate", "integer > 0", Unset, CSLIDE, "PMU build only (etmem's spelling)."),
    key("cpu_set_size", "integer > 0", Unset, CSLIDE, "PMU build only."),
    key("cooling_interval", "integer > 0", Unset, CSLIDE, "PMU build only."),
    key(
        "eng_name",
        "name",
        Required,
        &["thirdparty"],
        "The engine's name; tasks name it in `engine`. Must not be a built-in engine type.",
    ),
    key(
        "libname",
        "absolute path",
        Required,
        &["thirdparty"],
        "The engine's shared object. Parsed, never loaded: the daemon refuses the engine naming this key.",
    ),
    key("ops_name", "symbol", Required, &["thirdparty"], "The `struct engine_ops` symbol in `libname`."),
    key("min_size", "integer bytes", Required, &["damon"], "Scheme: smallest region."),
    key("max_size", "integer bytes", Required, &["damon"], "Scheme: largest region."),
    key("min_acc", "integer nr_accesses", Required, &["damon"], "Scheme: fewest accesses per aggregation."),
    key("max_acc", "integer nr_accesses", Required, &["damon"], "Scheme: most accesses per aggregation."),
    key("min_age", "integer aggregation intervals", Required, &["damon"], "Scheme: youngest age."),
    key("max_age", "integer aggregation intervals", Required, &["damon"], "Scheme: oldest age."),
    key(
        "action",
        "`willneed` / `cold` / `pageout` / `hugepage` / `nohugepage` / `stat`",
        Required,
        &["damon"],
        "Scheme action. The scheme is carried by the engine (`KernelDamonEngine::schemes`).",
    ),
];

const ETMEM_TASK_KEYS: &[KeySpec] = &[
    key("project", "name", Required, &[], "The task's project."),
    key("engine", "name", Required, &[], "The engine type, or a thirdparty engine's `eng_name`."),
    key("name", "name", Required, &[], "Task name (<= 64)."),
    key("type", "`pid` / `name`", Required, &[], "What `value` is."),
    key(
        "value",
        "<= 15 chars of `A-Za-z0-9.%/_-`",
        Required,
        &[],
        "A pid, or a process name (`pgrep -x`; its direct children are included).",
    ),
    key(
        "max_threads",
        "integer 1..=4096",
        Text("1"),
        &[],
        "Pids scanned in parallel. Out of range is an error (etmem clamps); the daemon caps it at 2 * CPUs + 1.",
    ),
    key("swap_flag", "`yes` / `no`", Text("no"), &[], "Scan only VMAs marked with MADV_SWAPFLAG."),
    key("T", "integer 0..=3*loop", Required, SLIDE, "Hot threshold: hot when the round's score >= T."),
    key(
        "swap_threshold",
        "`<N>g`, <= 10 chars",
        Unset,
        SLIDE,
        "Swap only while the task's RSS is above N GiB.",
    ),
    key(
        "dram_percent",
        "integer 1..=100",
        Unset,
        SLIDE,
        "Keep this share of the task's memory in RAM (an error when out of range, where etmem ignores it).",
    ),
    key(
        "sample_period",
        "integer > 0",
        Unset,
        SLIDE,
        "etmem PMU build only; all three or none. Kept, not used.",
    ),
    key("vma_updata_rate", "integer > 0", Unset, SLIDE, "PMU build only (etmem's spelling)."),
    key("cpu_set_size", "integer > 0", Unset, SLIDE, "PMU build only."),
    key("vm_flags", "`ht`", Required, CSLIDE, "VMAs to scan by smaps VmFlags; only `ht` (hugetlb) exists."),
    key(
        "anon_only",
        "`yes` / `no`",
        Required,
        CSLIDE,
        "Only anonymous hugetlb memory (required, as in etmem's code).",
    ),
    key("ign_host", "`yes` / `no`", Required, CSLIDE, "Ignore the host's accessed bits when scanning a VM."),
    key("Sock", "string", Unset, &["memdcd"], "memdcd's socket name; unset or `-`: `@_memdcd.server`."),
    key(
        "cg_dir",
        "string < 64 chars",
        Required,
        PSI,
        "cgroup v1 directory relative to `/sys/fs/cgroup/{cpuacct,memory}/`; globs like `isulad/*`.",
    ),
    key(
        "pressure",
        "decimal, > 0, <= 100",
        Text("0.1"),
        PSI,
        "Skip reclaim while memory PSI (some avg10/avg60) is at least this.",
    ),
    key(
        "reclaim_rate",
        "decimal, > 0, <= 1",
        Text("0.05"),
        PSI,
        "Share of reclaimable memory reclaimed per period.",
    ),
    key("reclaim_rate_max", "decimal, > 0, <= 1", Text("0.5"), PSI, "Highest adaptive rate."),
    key("reclaim_rate_min", "decimal, > 0, <= 1", Text("0.01"), PSI, "Lowest adaptive rate."),
    key("limit_min_bytes", "integer bytes", Text("0"), PSI, "Never reclaim below this usage."),
    key("limit_min_ratio", "decimal 0..=1", Text("0.1"), PSI, "Never reclaim below this share of the limit."),
    key(
        "reclaim_max_bytes",
        "integer bytes > 0",
        Text("1073741824"),
        PSI,
        "Most bytes reclaimed per period.",
    ),
];

/// Groups of etmem's INI files.
pub static ETMEM_SECTIONS: &[SectionSpec] = &[
    SectionSpec {
        id: "project",
        header: "[project]",
        variant_by: "scan_type",
        doc: "The project and its scan parameters.",
        keys: ETMEM_PROJECT_KEYS,
    },
    SectionSpec {
        id: "engine",
        header: "[engine]",
        variant_by: "name",
        doc: "An engine of a project. `thirdparty` engines may have any further (private) keys.",
        keys: ETMEM_ENGINE_KEYS,
    },
    SectionSpec {
        id: "task",
        header: "[task]",
        variant_by: "engine",
        doc: "A task of an engine. Which keys apply depends on the engine's type: taken from the \
              `[engine]` group of the same file when it names the same engine, else from the \
              engine name (`slide`, `cslide`, `damon`, `psi`, `memdcd`; any other name is a \
              thirdparty engine, whose tasks may have any further private keys).",
        keys: ETMEM_TASK_KEYS,
    },
];

/// The TOML section with this id.
pub(crate) fn toml_section(id: &str) -> &'static SectionSpec {
    TOML_SECTIONS.iter().find(|s| s.id == id).unwrap_or(&TOML_SECTIONS[0])
}

/// The etmem group with this id.
pub(crate) fn etmem_section(id: &str) -> Option<&'static SectionSpec> {
    ETMEM_SECTIONS.iter().find(|s| s.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("smaple_interval", ["sample_interval", "aggr_interval"]), Some("sample_interval"));
        assert_eq!(suggest("lop", ["loop", "sleep"]), Some("loop"));
        assert_eq!(suggest("zzzzzz", ["loop", "sleep"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn key_checks() {
        let s = toml_section("engine");
        assert_eq!(check_key(s, Some("page"), "loop"), Ok(()));
        let Err(p) = check_key(s, Some("region"), "loop") else { panic!() };
        assert!(
            key_message(s, Some("region"), "loop", p)
                .contains("does not apply to kind = region; it is for page")
        );
        assert_eq!(check_key(s, Some("page"), "lop"), Err(KeyProblem::Unknown));
        assert!(key_message(s, Some("page"), "lop", KeyProblem::Unknown).contains("did you mean `loop`"));
        let p = etmem_section("project").unwrap();
        let m = key_message(p, Some("page"), "swapcache_high_vmark", KeyProblem::Unknown);
        assert!(m.contains("swapcache_high_wmark") && m.contains("misspells"), "{m}");
        let missing = missing_required(p, Some("page"), |k| k == "name");
        assert_eq!(missing, vec!["loop", "interval", "sleep"]);
    }

    #[test]
    fn tables_are_consistent() {
        for sections in [TOML_SECTIONS, ETMEM_SECTIONS] {
            for s in sections {
                for (i, k) in s.keys.iter().enumerate() {
                    assert!(!k.doc.is_empty(), "{}.{} has no doc", s.id, k.key);
                    assert!(s.keys[..i].iter().all(|o| o.key != k.key), "{}.{} appears twice", s.id, k.key);
                    let _ = k.default.render();
                }
            }
        }
    }
}
