//! The native config format: one TOML file per workload, read into the model.
//!
//! The TOML is parsed into a spanned tree and walked by hand against the
//! tables in [`crate::schema`], rather than through serde derives with
//! `deny_unknown_fields`: serde stops at the first error, and a config must
//! get every error reported at once, each with its line and key.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::checks;
use crate::errors::Diag;
use crate::model::*;
use crate::schema::{self, SectionSpec, toml_section};
use crate::scheme::{self, SchemeError, SchemeForm};
use crate::units::{self, UnitError};

type Val<'i> = Spanned<DeValue<'i>>;

/// Engine kinds of the native format (engines are named by their kind).
const ENGINE_KINDS: &[&str] = &["page", "region", "kernel-damon"];
/// Highest pid the kernel hands out (`PID_MAX_LIMIT` on 64-bit).
const PID_MAX: i64 = 4_194_304;

/// Parses a native TOML config. Errors go to `d`; `None` when there were any.
pub(crate) fn parse(text: &str, d: &mut Diag) -> Option<Objects> {
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            let offset = e.span().map_or(0, |s| s.start);
            d.at_offset(offset, "", format!("TOML syntax: {}", e.message().trim_end()));
        }
        return None;
    }
    let root =
        Tbl { spec: toml_section(""), path: String::new(), table: root.get_ref(), at: 0, variant: None };
    if root.table.is_empty() {
        d.at_line(
            0,
            "",
            "empty config: expected [project], [engine] and [[task]] tables (see docs/config.md)",
        );
        return None;
    }
    root.check_keys(d, &["project"]);
    let objects = match root.raw("project").map(|v| v.get_ref()) {
        Some(DeValue::Table(_)) => project_file(&root, d),
        Some(DeValue::String(_)) => tasks_file(&root, d),
        Some(_) => {
            root.type_error(d, "project", "a [project] table, or a project name in a tasks-only file");
            None
        }
        None => {
            d.at_line(
                0,
                "project",
                "missing [project] (or, to add tasks to an existing project, top-level \
                 project = \"NAME\" and engine = \"KIND\")",
            );
            None
        }
    };
    if d.is_empty() { objects } else { None }
}

/// A file with `[project]`: the whole project.
fn project_file(root: &Tbl<'_, '_>, d: &mut Diag) -> Option<Objects> {
    let project_t = root.table(d, "project", "project")?;
    project_t.check_keys(d, &[]);
    let name = project_t.name(d, "name").unwrap_or_default();

    let engine = match root.raw("engine").map(|v| v.get_ref()) {
        Some(DeValue::Table(_)) => root.table(d, "engine", "engine").and_then(|t| engine(t, d)),
        Some(_) => {
            root.type_error(d, "engine", "an [engine] table (a plain engine name is for tasks-only files)");
            None
        }
        None => {
            d.at_offset(
                project_t.at,
                "engine",
                "missing [engine]: every project needs one (kind = \"page\", \"region\" or \"kernel-damon\")",
            );
            None
        }
    };
    // Keep going without a valid engine so that the other sections' errors show too.
    let (engine_name, page) = match &engine {
        Some((Scan::Page(p), kind)) => (Some(kind.kind_str()), Some(p.clone())),
        Some((_, kind)) => (Some(kind.kind_str()), None),
        None => (None, None),
    };
    let tasks = tasks(root, d, &name, engine_name, page.as_ref());
    let policy = match root.opt_table(d, "policy", "policy") {
        Some(t) => policy(&t, d),
        None => Policy::default(),
    };
    let schemes = root.tables(d, "scheme", "scheme").into_iter().filter_map(|t| scheme(&t, d)).collect();
    let backends = backends(root, d);
    let (scan, engine_kind) = engine?;
    let engine_name = engine_kind.kind_str();
    Some(Objects {
        format: Format::Toml,
        project: Some(Project { name: name.clone(), scan, policy, schemes, backends }),
        engines: vec![Engine { project: name, name: engine_name.to_owned(), kind: engine_kind }],
        tasks,
    })
}

/// A file with `project = "NAME"`: tasks for an existing project.
fn tasks_file(root: &Tbl<'_, '_>, d: &mut Diag) -> Option<Objects> {
    let project = root.name(d, "project").unwrap_or_default();
    for key in ["policy", "scheme", "backend"] {
        if let Some(v) = root.raw(key) {
            root.err(d, key, v, "a tasks-only file (project = \"NAME\") may hold only [[task]]s; put this in the project's own file");
        }
    }
    let engine = match root.raw("engine") {
        None => {
            d.at_line(
                0,
                "engine",
                "missing engine = \"KIND\": a tasks-only file names the engine its tasks join",
            );
            None
        }
        Some(_) => root.choice(d, "engine", ENGINE_KINDS),
    };
    if root.raw("task").is_none() {
        d.at_line(0, "task", "a tasks-only file (project = \"NAME\") needs at least one [[task]]");
    }
    // The project's loop is in another file; the daemon checks T against it.
    let tasks = tasks(root, d, &project, engine, None);
    engine?;
    Some(Objects { format: Format::Toml, project: None, engines: vec![], tasks })
}

fn probe(t: &Tbl<'_, '_>, d: &mut Diag) -> ProbeChoice {
    let names: Vec<&'static str> = ProbeChoice::ALL.iter().map(|p| p.as_str()).collect();
    t.choice(d, "probe", &names).and_then(ProbeChoice::from_name).unwrap_or_default()
}

fn engine(t: Tbl<'_, '_>, d: &mut Diag) -> Option<(Scan, EngineKind)> {
    let kind = t.choice(d, "kind", ENGINE_KINDS);
    let t = Tbl { variant: kind, ..t };
    t.check_keys(d, &[]);
    let kind = kind?;
    match kind {
        "page" => {
            let scan = PageScan {
                loops: t.uint(d, "loop", 1, MAX_PAGE_LOOPS.into()).unwrap_or(DEFAULT_PAGE_LOOPS),
                sleep: t.duration(d, "sleep").unwrap_or(DEFAULT_PAGE_SLEEP),
                interval: t.duration(d, "interval").unwrap_or(DEFAULT_PAGE_INTERVAL),
            };
            for (key, msg) in checks::check_page_scan(&scan) {
                t.err_key(d, key, msg);
            }
            let hot_threshold = t.uint(d, "T", 0, u32::MAX.into());
            if let Some(Err(m)) = hot_threshold.map(|hot| checks::check_hot_threshold(hot, &scan)) {
                t.err_key(d, "T", m);
            }
            let probe = probe(&t, d);
            let forbid_refault = t.bool(d, "forbid_refault").unwrap_or(false);
            if forbid_refault && probe == ProbeChoice::Refault {
                t.err_key(d, "probe", "probe = \"refault\" contradicts forbid_refault = true");
            }
            Some((Scan::Page(scan), EngineKind::Page(PageEngine { probe, hot_threshold, forbid_refault })))
        }
        _ => {
            let autotune_t = t.opt_table(d, "autotune", "engine.autotune");
            let autotune = autotune_t.as_ref().map(|a| {
                a.check_keys(d, &[]);
                IntervalsGoal {
                    access_bp: a
                        .uint(d, "access_bp", 0, u32::MAX.into())
                        .unwrap_or(DEFAULT_AUTOTUNE_ACCESS_BP),
                    aggrs: a.uint(d, "aggrs", 0, u32::MAX.into()).unwrap_or(DEFAULT_AUTOTUNE_AGGRS),
                    min_sample_interval: a.duration(d, "min_sample").unwrap_or(DEFAULT_AUTOTUNE_MIN_SAMPLE),
                    max_sample_interval: a.duration(d, "max_sample").unwrap_or(DEFAULT_AUTOTUNE_MAX_SAMPLE),
                }
            });
            let scan = RegionScan {
                sample_interval: t.duration(d, "sample_interval").unwrap_or(DEFAULT_SAMPLE_INTERVAL),
                aggr_interval: t.duration(d, "aggr_interval").unwrap_or(DEFAULT_AGGR_INTERVAL),
                update_interval: t.duration(d, "update_interval").unwrap_or(DEFAULT_UPDATE_INTERVAL),
                min_nr_regions: t
                    .uint(d, "min_nr_regions", 0, u32::MAX.into())
                    .unwrap_or(DEFAULT_MIN_NR_REGIONS),
                max_nr_regions: t
                    .uint(d, "max_nr_regions", 0, u32::MAX.into())
                    .unwrap_or(DEFAULT_MAX_NR_REGIONS),
                autotune,
            };
            for (key, msg) in checks::check_region_scan(&scan) {
                match &autotune_t {
                    Some(a) if ["access_bp", "aggrs", "min_sample"].contains(&key) => a.err_key(d, key, msg),
                    _ => t.err_key(d, key, msg),
                }
            }
            let kind = if kind == "region" {
                EngineKind::Region(RegionEngine {
                    probe: probe(&t, d),
                    file_backed: t.bool(d, "file_backed").unwrap_or(false),
                    max_probed_accesses: t.uint(d, "max_probed_accesses", 0, u32::MAX.into()),
                })
            } else {
                let ops = match t.choice(d, "ops", &["vaddr", "paddr"]) {
                    Some("paddr") => DamonOps::Paddr,
                    _ => DamonOps::Vaddr,
                };
                EngineKind::KernelDamon(KernelDamonEngine { ops, from_etmem: false, schemes: Vec::new() })
            };
            Some((Scan::Region(scan), kind))
        }
    }
}

/// The `[[task]]`s; `engine` is `None` when the file's engine is invalid.
fn tasks(
    root: &Tbl<'_, '_>,
    d: &mut Diag,
    project: &str,
    engine: Option<&'static str>,
    page: Option<&PageScan>,
) -> Vec<Task> {
    let mut out: Vec<Task> = Vec::new();
    let mut names = HashSet::new();
    for t in root.tables(d, "task", "task") {
        let t = Tbl { variant: engine, ..t };
        let engine = engine.unwrap_or_default();
        let Some(task) = task(&t, d, project, engine, page) else { continue };
        if !names.insert(task.name.clone()) {
            let at = t.raw("name").map_or(t.at, |v| v.span().start);
            d.at_offset(
                at,
                "task.name",
                format!("two tasks are named `{}`; task names must differ", task.name),
            );
        }
        out.push(task);
    }
    out
}

fn task(t: &Tbl<'_, '_>, d: &mut Diag, project: &str, engine: &str, page: Option<&PageScan>) -> Option<Task> {
    t.check_keys(d, &[]);
    let given: Vec<&str> = ["pid", "process", "cgroup"].into_iter().filter(|k| t.raw(k).is_some()).collect();
    match given.as_slice() {
        [] => {
            d.at_offset(t.at, "task", "missing target: give one of pid, process, cgroup");
        }
        [_] => {}
        [first, rest @ ..] => {
            for k in rest {
                t.err_key(
                    d,
                    k,
                    format!(
                        "a task has one target: give only one of pid, process, cgroup (also found {first})"
                    ),
                );
            }
        }
    }
    let target = match given.first() {
        Some(&"pid") => t.uint(d, "pid", 1, PID_MAX as u64).map(TaskTarget::Pid),
        Some(&"process") => t.str(d, "process").and_then(|p| match checks::check_process_name(p) {
            Ok(()) => Some(TaskTarget::Name(p.to_owned())),
            Err(m) => {
                t.err_key(d, "process", m);
                None
            }
        }),
        Some(_) => t.str(d, "cgroup").and_then(|c| {
            let bad = c.trim().is_empty() || c.contains('\0') || c.split('/').any(|p| p == "..");
            if bad {
                t.err_key(d, "cgroup", "expected a cgroup directory path without `..`");
                return None;
            }
            Some(TaskTarget::Cgroup(PathBuf::from(c)))
        }),
        None => None,
    };
    let name = match t.raw("name") {
        Some(_) => t.name(d, "name"),
        None => target.as_ref().and_then(|target| {
            let derived = match target {
                TaskTarget::Pid(pid) => format!("pid-{pid}"),
                TaskTarget::Name(n) => n.clone(),
                TaskTarget::Cgroup(p) => {
                    p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
                }
            };
            match checks::check_name(&derived) {
                Ok(()) => Some(derived),
                Err(m) => {
                    d.at_offset(
                        t.at,
                        "task.name",
                        format!("cannot derive a task name ({m}); give name = \"...\""),
                    );
                    None
                }
            }
        }),
    };
    let hot_threshold = t.uint(d, "T", 0, u32::MAX.into());
    if let (Some(hot), Some(scan)) = (hot_threshold, page) {
        checks::check_hot_threshold(hot, scan).unwrap_or_else(|m| t.err_key(d, "T", m));
    }
    let dram_percent = t.percent_or_int(d, "dram_percent").and_then(|p| {
        if p.bp % 100 != 0 || p.bp == 0 {
            t.err_key(
                d,
                "dram_percent",
                format!("dram_percent is {p}, expected a whole percentage 1%..=100%"),
            );
            return None;
        }
        u8::try_from(p.bp / 100).ok()
    });
    let mut task = Task::new(project, engine, &name?, target?);
    task.max_threads = t.uint(d, "max_threads", 1, MAX_MAX_THREADS.into()).unwrap_or(DEFAULT_MAX_THREADS);
    task.swap_flag = t.bool(d, "swap_flag").unwrap_or(false);
    task.allow_special_target = t.bool(d, "allow_special_target").unwrap_or(false);
    task.page = PageTask {
        hot_threshold,
        swap_threshold_bytes: t.size(d, "swap_threshold"),
        dram_percent,
        pmu: None,
    };
    Some(task)
}

fn policy(t: &Tbl<'_, '_>, d: &mut Diag) -> Policy {
    t.check_keys(d, &[]);
    let cold_action = match t.choice(d, "cold_action", &["pageout", "cold", "stat", "none"]) {
        Some(a) => Action::from_name(a),
        None => DEFAULT_COLD_ACTION,
    };
    let policy = Policy {
        hot_min_accesses: t.access(d, "hot_min_accesses").unwrap_or(DEFAULT_HOT_MIN_ACCESSES),
        hot_min_age: t.duration(d, "hot_min_age").unwrap_or(DEFAULT_HOT_MIN_AGE),
        cold_max_accesses: t.access(d, "cold_max_accesses").unwrap_or(DEFAULT_COLD_MAX_ACCESSES),
        cold_min_age: t.duration(d, "cold_min_age").unwrap_or(DEFAULT_COLD_MIN_AGE),
        refault_protect: t.duration(d, "refault_protect").unwrap_or(Duration::ZERO),
        thp_min_age: t.duration(d, "thp_min_age").unwrap_or(DEFAULT_THP_MIN_AGE),
        thp_min_size_bytes: t.size(d, "thp_min_size").unwrap_or(DEFAULT_THP_MIN_SIZE_BYTES),
        thp_max_ptes_none: t
            .uint(d, "thp_max_ptes_none", 0, MAX_THP_MAX_PTES_NONE.into())
            .unwrap_or(DEFAULT_THP_MAX_PTES_NONE),
        thp_min_class: match t.choice(d, "thp_min_class", &["hot", "warm"]) {
            Some("warm") => ThpMinClass::Warm,
            _ => ThpMinClass::Hot,
        },
        thp_hold: t.duration(d, "thp_hold"),
        cold_action,
        promote_thp: t.bool(d, "promote_thp").unwrap_or(false),
        demote_thp: t.bool(d, "demote_thp").unwrap_or(false),
        prefetch_warm: t.bool(d, "prefetch_warm").unwrap_or(false),
        sysmem_threshold: t.percent(d, "sysmem_threshold"),
        watermarks: t.opt_table(d, "watermarks", "policy.watermarks").map(|w| watermarks(&w, d)),
        swap_threshold_bytes: t.size(d, "swap_threshold"),
        keep_in_ram: t.percent(d, "keep_in_ram"),
        quota: t.opt_table(d, "quota", "policy.quota").map(|q| quota(&q, d)).unwrap_or_default(),
        swapcache: None,
    };
    let (cold, hot) = (policy.cold_max_accesses, policy.hot_min_accesses);
    if !scheme::access_above(hot, cold) && comparable(cold, hot) {
        let at = if t.raw("cold_max_accesses").is_some() { "cold_max_accesses" } else { "hot_min_accesses" };
        t.err_key(
            d,
            at,
            format!(
                "cold_max_accesses {} must be below hot_min_accesses {}: a region cannot be both",
                schema::fmt_access(cold),
                schema::fmt_access(hot)
            ),
        );
    }
    if policy.thp_min_size_bytes == 0 || !policy.thp_min_size_bytes.is_multiple_of(THP_SIZE_BYTES) {
        t.err_key(
            d,
            "thp_min_size",
            format!(
                "thp_min_size is {}, expected a multiple of 2M",
                units::fmt_size(policy.thp_min_size_bytes)
            ),
        );
    }
    if policy.thp_hold == Some(Duration::ZERO) {
        t.err_key(
            d,
            "thp_hold",
            "thp_hold must be above 0s: every huge page would look idle as soon as it is seen",
        );
    }
    policy
}

/// Whether two access bounds can be ordered without knowing the engine's maximum.
fn comparable(a: AccessBound, b: AccessBound) -> bool {
    matches!(
        (a, b),
        (AccessBound::Count(_), AccessBound::Count(_))
            | (AccessBound::Bp(_), AccessBound::Bp(_))
            | (AccessBound::Max, _)
            | (_, AccessBound::Max)
    )
}

fn watermarks(t: &Tbl<'_, '_>, d: &mut Diag) -> Watermarks {
    t.check_keys(d, &[]);
    let permil = |key: &str, default: u32, d: &mut Diag| match t.percent(d, key) {
        Some(p) if p.bp % 10 != 0 => {
            t.err_key(d, key, format!("{key} is {p}; watermarks have 0.1% steps"));
            default
        }
        Some(p) => p.bp / 10,
        None => default,
    };
    let w = Watermarks {
        interval: t.duration(d, "interval").unwrap_or(DEFAULT_WMARK_INTERVAL),
        high_permil: permil("high", DEFAULT_WMARK_HIGH_PERMIL, d),
        mid_permil: permil("mid", DEFAULT_WMARK_MID_PERMIL, d),
        low_permil: permil("low", DEFAULT_WMARK_LOW_PERMIL, d),
    };
    if w.interval.is_zero() {
        t.err_key(d, "interval", "interval must be more than 0");
    }
    let pct = |p: u32| Percent { bp: p * 10 };
    if w.mid_permil > w.high_permil {
        t.err_key(d, "mid", format!("mid {} is above high {}", pct(w.mid_permil), pct(w.high_permil)));
    }
    if w.low_permil > w.mid_permil {
        t.err_key(d, "low", format!("low {} is above mid {}", pct(w.low_permil), pct(w.mid_permil)));
    }
    w
}

fn quota(t: &Tbl<'_, '_>, d: &mut Diag) -> Quota {
    t.check_keys(d, &[]);
    let q = Quota {
        bytes_per_s: t.size(d, "bytes_per_s"),
        cpu_ms_per_s: t.uint(d, "cpu_ms_per_s", 1, 1000),
        reset_interval: t.duration(d, "reset_interval").unwrap_or(DEFAULT_QUOTA_RESET_INTERVAL),
        weight_sz_permil: t.uint(d, "weight_sz", 0, 1000).unwrap_or(DEFAULT_QUOTA_WEIGHT_SZ_PERMIL),
        weight_nr_accesses_permil: t
            .uint(d, "weight_nr_accesses", 0, 1000)
            .unwrap_or(DEFAULT_QUOTA_WEIGHT_NR_ACCESSES_PERMIL),
        weight_age_permil: t.uint(d, "weight_age", 0, 1000).unwrap_or(DEFAULT_QUOTA_WEIGHT_AGE_PERMIL),
    };
    if q.bytes_per_s == Some(0) {
        t.err_key(d, "bytes_per_s", "bytes_per_s must be more than 0 (leave it out for no limit)");
    }
    if q.reset_interval.is_zero() {
        t.err_key(d, "reset_interval", "reset_interval must be more than 0");
    }
    q
}

fn scheme(t: &Tbl<'_, '_>, d: &mut Diag) -> Option<Scheme> {
    let structured = ["action", "min_size", "max_size", "min_accesses", "max_accesses", "min_age", "max_age"];
    let has_line = t.raw("line").is_some();
    t.check_keys(d, if has_line { &["action"] } else { &[] });
    let quota = t.opt_table(d, "quota", "scheme.quota").map(|q| quota(&q, d));
    let watermarks = t.opt_table(d, "watermarks", "scheme.watermarks").map(|w| watermarks(&w, d));
    let apply_interval = t.duration(d, "apply_interval");
    if apply_interval == Some(Duration::ZERO) {
        t.err_key(
            d,
            "apply_interval",
            "apply_interval must be more than 0 (leave it out for every aggregation)",
        );
    }
    let mut scheme = if has_line {
        for key in structured {
            if let Some(v) = t.raw(key) {
                t.err(d, key, v, "give either `line` or the structured keys, not both");
            }
        }
        let form = match t.choice(d, "form", &["auto", "damo", "etmem"]) {
            Some("damo") => Some(SchemeForm::Damo),
            Some("etmem") => Some(SchemeForm::Etmem),
            _ => None,
        };
        let line = t.str(d, "line")?;
        match scheme::parse_line_as(line, form) {
            Ok(s) => s,
            Err(e) => {
                t.err_key(d, "line", e.to_string());
                return None;
            }
        }
    } else {
        if let Some(v) = t.raw("form") {
            t.err(d, "form", v, "form applies to `line` only");
        }
        let action = t.str(d, "action").and_then(|a| match scheme::parse_action(a) {
            Ok(a) => Some(a),
            Err(m) => {
                t.err_key(d, "action", m);
                None
            }
        });
        let pattern = AccessPattern {
            min_size_bytes: t.size_bound(d, "min_size").unwrap_or(0),
            max_size_bytes: t.size_bound(d, "max_size").unwrap_or(u64::MAX),
            min_accesses: t.access(d, "min_accesses").unwrap_or(AccessBound::Count(0)),
            max_accesses: t.access(d, "max_accesses").unwrap_or(AccessBound::Max),
            min_age: t.age(d, "min_age").unwrap_or(AgeBound::Aggregations(0)),
            max_age: t.age(d, "max_age").unwrap_or(AgeBound::Max),
        };
        if let Err(SchemeError::MinAboveMax { what, min, max }) = scheme::check_pattern(&pattern) {
            let key = match what {
                "size" => "min_size",
                "accesses" => "min_accesses",
                _ => "min_age",
            };
            t.err_key(d, key, format!("min {min} is above max {max}"));
        }
        Scheme { pattern, action: action?, quota: None, watermarks: None, apply_interval: None }
    };
    scheme.quota = quota;
    scheme.watermarks = watermarks;
    scheme.apply_interval = apply_interval;
    Some(scheme)
}

fn backends(root: &Tbl<'_, '_>, d: &mut Diag) -> Vec<Backend> {
    let mut out: Vec<Backend> = Vec::new();
    let mut paths = HashSet::new();
    for t in root.tables(d, "backend", "backend") {
        let kind = t.choice(d, "kind", &["zram", "swapfile"]);
        let t = Tbl { variant: kind, ..t };
        t.check_keys(d, &[]);
        let size = t.size(d, "size");
        if size == Some(0) {
            t.err_key(d, "size", "size must be more than 0");
        }
        match kind {
            Some("zram") => {
                let compressor = t.str(d, "compressor").unwrap_or(DEFAULT_ZRAM_COMPRESSOR);
                let valid = !compressor.is_empty()
                    && compressor.len() <= 64
                    && compressor.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !valid {
                    t.err_key(
                        d,
                        "compressor",
                        format!("`{compressor}` is not a compressor name (like lz4, zstd, lzo-rle)"),
                    );
                }
                let backend = ZramBackend {
                    size_bytes: size.unwrap_or(0),
                    compressor: compressor.to_owned(),
                    priority: priority(&t, d).unwrap_or(DEFAULT_ZRAM_PRIORITY),
                    mem_limit_bytes: t.size(d, "mem_limit"),
                };
                out.push(Backend::Zram(backend));
            }
            Some(_) => {
                // mkswap refuses areas under 10 pages.
                if size.is_some_and(|s| s > 0 && s < 40 << 10) {
                    t.err_key(d, "size", "a swap file needs at least 40K");
                }
                let path = t.str(d, "path").and_then(|p| {
                    if !p.starts_with('/') || p.contains('\0') || p.ends_with('/') {
                        t.err_key(d, "path", format!("`{p}` is not an absolute file path"));
                        return None;
                    }
                    Some(PathBuf::from(p))
                });
                let Some(path) = path else { continue };
                if !paths.insert(path.clone()) {
                    t.err_key(d, "path", format!("two swap files at {}", path.display()));
                }
                out.push(Backend::SwapFile(SwapFileBackend {
                    path,
                    size_bytes: size.unwrap_or(0),
                    priority: priority(&t, d).unwrap_or(DEFAULT_SWAPFILE_PRIORITY),
                }));
            }
            None => {}
        }
    }
    out
}

fn priority(t: &Tbl<'_, '_>, d: &mut Diag) -> Option<i32> {
    t.int(d, "priority", -1, MAX_SWAP_PRIORITY.into()).and_then(|p| i32::try_from(p).ok())
}

/// A TOML table being read against its section spec.
struct Tbl<'t, 'i> {
    spec: &'static SectionSpec,
    /// Dotted path for error keys (`policy.quota`), empty at the top level.
    path: String,
    table: &'t DeTable<'i>,
    /// Byte offset of the table's header, for errors about missing keys.
    at: usize,
    /// The section's variant (engine or backend kind) once known.
    variant: Option<&'static str>,
}

impl<'t, 'i> Tbl<'t, 'i> {
    fn keypath(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    fn raw(&self, key: &str) -> Option<&'t Val<'i>> {
        debug_assert!(self.spec.key(key).is_some(), "{}.{key} is not in the schema", self.spec.id);
        self.table.get(key)
    }

    fn err(&self, d: &mut Diag, key: &str, v: &Val<'_>, msg: impl Into<String>) {
        d.at_offset(v.span().start, &self.keypath(key), msg);
    }

    /// An error about `key`, at its value when present, else at the header.
    fn err_key(&self, d: &mut Diag, key: &str, msg: impl Into<String>) {
        let at = self.table.get(key).map_or(self.at, |v| v.span().start);
        d.at_offset(at, &self.keypath(key), msg);
    }

    fn type_error(&self, d: &mut Diag, key: &str, expected: &str) {
        if let Some(v) = self.raw(key) {
            let found = v.get_ref().type_str();
            self.err(d, key, v, format!("expected {expected}, found {found}"));
        }
    }

    /// Unknown keys, keys of another variant, missing required keys
    /// (except those in `skip`, which the caller checks).
    fn check_keys(&self, d: &mut Diag, skip: &[&str]) {
        for (k, _) in self.table.iter() {
            let key: &str = k.get_ref();
            if let Err(p) = schema::check_key(self.spec, self.variant, key) {
                let line = d.line_of(k.span().start);
                d.at_line_with(line, &self.keypath(key), || {
                    schema::key_message(self.spec, self.variant, key, p)
                });
            }
        }
        for key in schema::missing_required(self.spec, self.variant, |k| self.table.get(k).is_some()) {
            if !skip.contains(&key) {
                d.at_offset(
                    self.at,
                    &self.keypath(key),
                    format!("missing required key in {}", self.spec.header),
                );
            }
        }
    }

    fn str(&self, d: &mut Diag, key: &str) -> Option<&'t str> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            other => {
                self.err(d, key, v, format!("expected a string, found {}", other.type_str()));
                None
            }
        }
    }

    fn name(&self, d: &mut Diag, key: &str) -> Option<String> {
        let s = self.str(d, key)?;
        match checks::check_name(s) {
            Ok(()) => Some(s.to_owned()),
            Err(m) => {
                self.err_key(d, key, m);
                None
            }
        }
    }

    fn choice(&self, d: &mut Diag, key: &str, options: &[&'static str]) -> Option<&'static str> {
        let s = self.str(d, key)?;
        if let Some(o) = options.iter().find(|o| **o == s) {
            return Some(o);
        }
        let mut msg = format!("`{s}` is not one of {}", options.join(", "));
        if let Some(near) = schema::suggest(s, options.iter().copied()) {
            msg.push_str(&format!("; did you mean `{near}`?"));
        }
        self.err_key(d, key, msg);
        None
    }

    fn bool(&self, d: &mut Diag, key: &str) -> Option<bool> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            DeValue::String(s) if matches!(s.as_ref(), "true" | "false" | "yes" | "no") => {
                self.err(d, key, v, format!("expected true or false without quotes, found \"{s}\""));
                None
            }
            other => {
                self.err(d, key, v, format!("expected true or false, found {}", other.type_str()));
                None
            }
        }
    }

    fn int(&self, d: &mut Diag, key: &str, min: i64, max: i64) -> Option<i64> {
        let v = self.raw(key)?;
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            DeValue::String(s) if s.trim().parse::<i64>().is_ok() => {
                self.err(d, key, v, format!("expected an integer without quotes, found \"{s}\""));
                return None;
            }
            other => {
                self.err(d, key, v, format!("expected an integer, found {}", other.type_str()));
                return None;
            }
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                let shown = match v.get_ref() {
                    DeValue::Integer(i) => i.to_string(),
                    _ => String::new(),
                };
                self.err(d, key, v, format!("{shown} is out of range, expected {min}..={max}"));
                None
            }
        }
    }

    fn uint<T: TryFrom<i64>>(&self, d: &mut Diag, key: &str, min: u64, max: u64) -> Option<T> {
        let (min, max) = (i64::try_from(min).unwrap_or(i64::MAX), i64::try_from(max).unwrap_or(i64::MAX));
        self.int(d, key, min, max).and_then(|n| T::try_from(n).ok())
    }

    /// A string value parsed by `parse`; integers get `int_hint`.
    fn unit<T>(
        &self,
        d: &mut Diag,
        key: &str,
        int_hint: &str,
        parse: impl Fn(&str) -> Result<T, UnitError>,
    ) -> Option<T> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::String(s) => match parse(s) {
                Ok(x) => Some(x),
                Err(e) => {
                    self.err(d, key, v, e.to_string());
                    None
                }
            },
            DeValue::Integer(n) => {
                self.err(d, key, v, format!("`{n}` has no unit: write a string such as {int_hint}"));
                None
            }
            DeValue::Float(n) => {
                self.err(d, key, v, format!("`{n}` has no unit: write a string such as {int_hint}"));
                None
            }
            other => {
                self.err(
                    d,
                    key,
                    v,
                    format!("expected a string such as {int_hint}, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn duration(&self, d: &mut Diag, key: &str) -> Option<Duration> {
        self.unit(d, key, "\"100ms\"", units::parse_duration)
    }

    fn size(&self, d: &mut Diag, key: &str) -> Option<u64> {
        self.unit(d, key, "\"4G\" (\"4096B\" for bytes)", units::parse_size)
    }

    fn size_bound(&self, d: &mut Diag, key: &str) -> Option<u64> {
        self.unit(d, key, "\"4K\", \"min\" or \"max\"", units::parse_size_bound)
    }

    fn percent(&self, d: &mut Diag, key: &str) -> Option<Percent> {
        self.unit(d, key, "\"50%\"", units::parse_percent)
    }

    /// A percentage as `"50%"` or as a plain integer (for keys named `*_percent`).
    fn percent_or_int(&self, d: &mut Diag, key: &str) -> Option<Percent> {
        match self.raw(key)?.get_ref() {
            DeValue::Integer(_) => self.uint(d, key, 0, 100).map(Percent::from_percent),
            _ => self.percent(d, key),
        }
    }

    /// An access bound: integer count, `"N%"`, `"Nsamples"`, `"min"`, `"max"`.
    fn access(&self, d: &mut Diag, key: &str) -> Option<AccessBound> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::Integer(_) => self.uint(d, key, 0, u32::MAX.into()).map(AccessBound::Count),
            DeValue::String(s) => {
                let s = s.trim();
                let parsed = if s == "min" {
                    Ok(AccessBound::Count(0))
                } else if s == "max" {
                    Ok(AccessBound::Max)
                } else if let Some(n) = s.strip_suffix("samples") {
                    n.trim()
                        .parse()
                        .map(AccessBound::Count)
                        .map_err(|_| "expected a count like \"3samples\"".to_owned())
                } else if s.ends_with('%') {
                    units::parse_percent(s).map(|p| AccessBound::Bp(p.bp)).map_err(|e| e.to_string())
                } else {
                    Err(format!(
                        "`{s}`: expected an integer count (without quotes), \"N%\" of the maximum, \"min\" or \"max\""
                    ))
                };
                parsed.map_err(|m| self.err(d, key, v, m)).ok()
            }
            other => {
                self.err(d, key, v, format!("expected a count or \"N%\", found {}", other.type_str()));
                None
            }
        }
    }

    fn age(&self, d: &mut Diag, key: &str) -> Option<AgeBound> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::String(s) => scheme::parse_age(s).map_err(|m| self.err(d, key, v, m)).ok(),
            other => {
                self.err(
                    d,
                    key,
                    v,
                    format!(
                        "expected a duration such as \"5s\", \"min\" or \"max\" (a string), found {}",
                        other.type_str()
                    ),
                );
                None
            }
        }
    }

    /// The sub-table `key` (required: reports when it is not a table).
    fn table(&self, d: &mut Diag, key: &str, id: &str) -> Option<Tbl<'t, 'i>> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(Tbl {
                spec: toml_section(id),
                path: id.to_owned(),
                table: t,
                at: v.span().start,
                variant: None,
            }),
            other => {
                self.err(d, key, v, format!("expected a table ([{id}]), found {}", other.type_str()));
                None
            }
        }
    }

    fn opt_table(&self, d: &mut Diag, key: &str, id: &str) -> Option<Tbl<'t, 'i>> {
        self.raw(key).and_then(|_| self.table(d, key, id))
    }

    /// An array of tables (`[[key]]` or an inline array of inline tables).
    fn tables(&self, d: &mut Diag, key: &str, id: &str) -> Vec<Tbl<'t, 'i>> {
        let Some(v) = self.raw(key) else { return Vec::new() };
        let DeValue::Array(items) = v.get_ref() else {
            self.err(d, key, v, format!("expected [[{id}]] tables, found {}", v.get_ref().type_str()));
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Table(t) => out.push(Tbl {
                    spec: toml_section(id),
                    path: id.to_owned(),
                    table: t,
                    at: item.span().start,
                    variant: None,
                }),
                other => d.at_offset(
                    item.span().start,
                    key,
                    format!("expected a [[{id}]] table, found {}", other.type_str()),
                ),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Objects {
        let mut d = Diag::new("t.toml", text);
        let o = parse(text, &mut d);
        match d.finish(o) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        }
    }

    fn errs(text: &str) -> String {
        let mut d = Diag::new("t.toml", text);
        let o = parse(text, &mut d);
        d.finish(o).unwrap_err().to_string()
    }

    #[test]
    fn minimal_project_takes_defaults() {
        let o = ok("[project]\nname = \"db\"\n[engine]\nkind = \"region\"\n[[task]]\nprocess = \"mysqld\"\n");
        let p = o.project.unwrap();
        assert_eq!(p.name, "db");
        assert_eq!(p.scan, Scan::Region(RegionScan::default()));
        assert_eq!(p.policy, Policy::default());
        assert_eq!(o.engines[0].name, "region");
        assert_eq!(o.engines[0].kind, EngineKind::Region(RegionEngine::default()));
        let t = &o.tasks[0];
        assert_eq!((t.name.as_str(), t.project.as_str(), t.engine.as_str()), ("mysqld", "db", "region"));
        assert_eq!(t.target, TaskTarget::Name("mysqld".into()));
    }

    #[test]
    fn thp_keys() {
        let base = "[project]\nname = \"db\"\n[engine]\nkind = \"region\"\n[[task]]\npid = 1\n[policy]\n";
        let p = ok(&format!("{base}thp_min_class = \"warm\"\nthp_hold = \"30m\"\n")).project.unwrap().policy;
        assert_eq!((p.thp_min_class, p.thp_hold), (ThpMinClass::Warm, Some(Duration::from_secs(1800))));
        let p = ok(base).project.unwrap().policy;
        assert_eq!((p.thp_min_class, p.thp_hold), (ThpMinClass::Hot, None));
    }

    #[test]
    fn page_engine_and_task_threshold() {
        let o = ok("[project]\nname = \"p\"\n[engine]\nkind = \"page\"\nloop = 2\nT = 6\n\
                    [[task]]\npid = 42\nT = 3\ndram_percent = \"50%\"\nswap_threshold = \"1G\"\n");
        assert_eq!(o.tasks[0].name, "pid-42");
        assert_eq!(o.tasks[0].page.hot_threshold, Some(3));
        assert_eq!(o.tasks[0].page.dram_percent, Some(50));
        assert_eq!(o.tasks[0].page.swap_threshold_bytes, Some(1 << 30));
        let e =
            errs("[project]\nname = \"p\"\n[engine]\nkind = \"page\"\nloop = 2\n[[task]]\npid = 4\nT = 7\n");
        assert!(e.contains("t.toml:8: key task.T: T is 7, above 3 * loop = 6"), "{e}");
    }

    #[test]
    fn tasks_only_file() {
        let o = ok("project = \"db\"\nengine = \"region\"\n[[task]]\ncgroup = \"/sys/fs/cgroup/db\"\n");
        assert!(o.project.is_none() && o.engines.is_empty());
        assert_eq!(o.tasks[0].name, "db");
        assert_eq!(o.tasks[0].project, "db");
        let e = errs("project = \"db\"\n[[task]]\npid = 1\n[policy]\n");
        assert!(e.contains("key engine: missing engine"), "{e}");
    }

    #[test]
    fn several_errors_at_once() {
        let e = errs(
            "[project]\nname = \"db\"\n[engine]\nkind = \"region\"\nsample_interval = \"10\"\nmax_nr_regions = 5\n\
             smaple = 1\n[[task]]\nname = \"x\"\n[policy]\ncold_min_age = 120\n",
        );
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 5, "{e}");
        assert!(lines[0].starts_with("t.toml:5: key engine.sample_interval: `10` has no unit"), "{e}");
        assert!(lines[1].starts_with("t.toml:6: key engine.max_nr_regions: max_nr_regions 5"), "{e}");
        assert!(lines[2].starts_with("t.toml:7: key engine.smaple: unknown key"), "{e}");
        assert!(lines[3].starts_with("t.toml:8: key task: missing target"), "{e}");
        assert!(lines[4].starts_with("t.toml:11: key policy.cold_min_age: `120` has no unit"), "{e}");
    }

    #[test]
    fn schemes_both_ways() {
        let o = ok("[project]\nname = \"p\"\n[engine]\nkind = \"kernel-damon\"\nops = \"paddr\"\n\
                    [[scheme]]\nline = \"4K max min min 5s max pageout\"\napply_interval = \"1s\"\n\
                    [scheme.quota]\nbytes_per_s = \"128M\"\n\
                    [[scheme]]\naction = \"hugepage\"\nmin_size = \"2M\"\nmin_accesses = \"90%\"\nmin_age = \"100ms\"\n");
        let p = o.project.unwrap();
        assert_eq!(p.schemes.len(), 2);
        assert_eq!(
            p.schemes[0],
            Scheme {
                apply_interval: Some(Duration::from_secs(1)),
                quota: Some(Quota { bytes_per_s: Some(128 << 20), ..Quota::default() }),
                ..scheme::parse_line("4K max min min 5s max pageout").unwrap()
            }
        );
        assert_eq!(p.schemes[1], scheme::parse_line("2M max 90 max 100ms max hugepage").unwrap());
        assert_eq!(
            o.engines[0].kind,
            EngineKind::KernelDamon(KernelDamonEngine { ops: DamonOps::Paddr, ..Default::default() })
        );
    }

    #[test]
    fn backends_with_defaults() {
        let o = ok("[project]\nname = \"p\"\n[engine]\nkind = \"region\"\n\
                    [[backend]]\nkind = \"zram\"\nsize = \"4G\"\n\
                    [[backend]]\nkind = \"swapfile\"\nsize = \"16G\"\npath = \"/var/swap0\"\n");
        let b = &o.project.unwrap().backends;
        assert_eq!(b[0].priority(), DEFAULT_ZRAM_PRIORITY);
        assert_eq!(b[1].priority(), DEFAULT_SWAPFILE_PRIORITY);
        assert!(b[0].priority() > b[1].priority());
    }
}
