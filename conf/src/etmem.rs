//! openEuler etmem's INI (GKeyFile) config files, read as they are and
//! mapped onto the model, with etmem's pitfalls turned into errors.
//!
//! etmem reads these with glib's GKeyFile, which silently merges repeated
//! groups (so one file holds at most one project, one engine and one task)
//! and ignores keys it does not know. Here a repeated group, a repeated key
//! and an unknown key are errors; everything else follows etmem's code
//! (not its docs; see reference/etmem.md §9).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use crate::checks;
use crate::errors::Diag;
use crate::model::*;
use crate::schema::{self, SectionSpec, etmem_section};
use crate::scheme::{self, SchemeError};

/// etmem's built-in engine types (`g_engine_add_items`).
const ENGINE_TYPES: &[&str] = &["slide", "cslide", "damon", "thirdparty", "psi", "memdcd"];
/// Built-in engine names a task may refer to (a thirdparty engine is named by its `eng_name`).
const BUILTIN_ENGINES: &[&str] = &["slide", "cslide", "damon", "psi", "memdcd"];
/// Highest NUMA node id (`MAX_NUMNODES` with NODES_SHIFT 10).
const MAX_NUMA_NODE: u32 = 1023;
/// Highest pid the kernel hands out.
const PID_MAX: i64 = 4_194_304;

/// One `key=value` line.
#[derive(Debug)]
struct Entry<'a> {
    key: &'a str,
    value: String,
    line: usize,
}

/// One `[group]` with its entries.
#[derive(Debug)]
struct Group<'a> {
    name: &'a str,
    line: usize,
    /// In line order.
    entries: Vec<Entry<'a>>,
    /// Line of each key, to find keys without a linear scan (files may be 10 MiB).
    lines: HashMap<&'a str, usize>,
}

/// Parses an etmem INI config. Errors go to `d`; `None` when there were any.
pub(crate) fn parse(text: &str, d: &mut Diag) -> Option<Objects> {
    let groups = lex(text, d);
    if groups.is_empty() {
        if d.is_empty() {
            d.at_line(0, "", "empty config: an etmem file needs a [project], [engine] or [task] group");
        }
        return None;
    }
    let find = |name: &str| groups.iter().find(|g| g.name == name);
    let project = find("project").map(|g| project(g, d));
    let project = project.flatten();
    let engine_g = find("engine");
    let engine = engine_g.and_then(|g| engine(g, d, project.as_ref()));
    let task = find("task").and_then(|g| task(g, d, project.as_ref(), engine.as_ref(), engine_g));
    if !d.is_empty() {
        return None;
    }
    Some(Objects {
        format: Format::EtmemIni,
        project,
        engines: engine.into_iter().collect(),
        tasks: task.into_iter().collect(),
    })
}

/// Splits the text into groups the way GKeyFile does, reporting what GKeyFile
/// would refuse and what it would silently merge.
fn lex<'a>(text: &'a str, d: &mut Diag) -> Vec<Group<'a>> {
    let mut groups: Vec<Group<'a>> = Vec::new();
    let mut skipping = false;
    let mut orphan_reported = false;
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw).trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l.starts_with('[') {
            let name = match l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                Some(n) if !n.is_empty() && !n.contains(['[', ']']) && !n.chars().any(char::is_control) => n,
                _ => {
                    d.at_line(
                        line,
                        "",
                        format!("malformed group header `{l}`, expected [project], [engine] or [task]"),
                    );
                    skipping = true;
                    continue;
                }
            };
            skipping = false;
            if !["project", "engine", "task"].contains(&name) {
                let mut msg =
                    format!("unknown group [{name}]; etmem files have [project], [engine] and [task]");
                if let Some(s) = schema::suggest(name, ["project", "engine", "task"]) {
                    msg.push_str(&format!("; did you mean [{s}]?"));
                }
                d.at_line(line, "", msg);
                skipping = true;
                continue;
            }
            if let Some(first) = groups.iter().find(|g| g.name == name) {
                d.at_line(
                    line,
                    "",
                    format!(
                        "second [{name}] group (the first is at line {}): etmem reads one project, one \
                         engine and one task per file (it merges repeated groups, later keys winning); \
                         put each {name} in its own file",
                        first.line
                    ),
                );
                skipping = true;
                continue;
            }
            groups.push(Group { name, line, entries: Vec::new(), lines: HashMap::new() });
            continue;
        }
        if skipping {
            continue;
        }
        let Some((key, value)) = l.split_once('=') else {
            d.at_line(
                line,
                "",
                format!("expected `key=value`, a [group] or a # comment, found `{}`", shorten(l)),
            );
            continue;
        };
        let key = key.trim_end();
        let Some(group) = groups.last_mut() else {
            if !orphan_reported {
                d.at_line(
                    line,
                    key,
                    "key outside of a group: etmem files start with [project], [engine] or [task]",
                );
                orphan_reported = true;
            }
            continue;
        };
        if key.is_empty() {
            d.at_line(line, "", "a line starting with `=` has no key");
            continue;
        }
        if key.contains(['[', ']']) {
            d.at_line(line, key, "localized keys (`key[locale]`) are not used by etmem");
            continue;
        }
        let value = match unescape(value.trim()) {
            Ok(v) => v,
            Err(m) => {
                d.at_line(line, key, m);
                continue;
            }
        };
        if let Some(first) = group.lines.get(key) {
            d.at_line(
                line,
                key,
                format!(
                    "given twice in [{}] (first at line {first}); etmem would keep only this one",
                    group.name
                ),
            );
            continue;
        }
        group.lines.insert(key, line);
        group.entries.push(Entry { key, value, line });
    }
    groups
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// GKeyFile's value escapes: `\s`, `\n`, `\t`, `\r`, `\\`.
fn unescape(v: &str) -> Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                return Err(format!(
                    "invalid escape `\\{other}` in value (GKeyFile knows \\s \\n \\t \\r \\\\)"
                ));
            }
            None => return Err("value ends with a lone `\\`".to_owned()),
        }
    }
    Ok(out)
}

fn project(g: &Group<'_>, d: &mut Diag) -> Option<Project> {
    let spec = etmem_section("project")?;
    let base = Grp { spec, group: g, variant: None, private: false };
    let scan_type = match base.get("scan_type") {
        None => Some("page"),
        Some(_) => base.choice(d, "scan_type", &["page", "region", "psi"]),
    };
    let g = Grp { variant: scan_type, ..base };
    g.check_keys(d);
    let name = g.name(d, "name");
    let secs = |key: &str, d: &mut Diag| g.int(d, key, 1, 1200).map(|s| Duration::from_secs(s as u64));
    let (scan, policy) = match scan_type? {
        "page" => {
            let scan = PageScan {
                loops: g.int(d, "loop", 1, MAX_PAGE_LOOPS.into()).map_or(1, |n| n as u32),
                interval: secs("interval", d).unwrap_or(Duration::from_secs(1)),
                sleep: secs("sleep", d).unwrap_or(Duration::from_secs(1)),
            };
            let mut policy = Policy::etmem_slide();
            policy.sysmem_threshold =
                g.int(d, "sysmem_threshold", 0, 100).map(|p| Percent::from_percent(p as u32));
            let high = g.int(d, "swapcache_high_wmark", 1, 100);
            let low = g.int(d, "swapcache_low_wmark", 1, 100);
            match (high, low) {
                (Some(h), Some(l)) if l >= h => {
                    g.err(
                        d,
                        "swapcache_low_wmark",
                        format!("swapcache_low_wmark {l} must be below swapcache_high_wmark {h}"),
                    );
                }
                (Some(h), Some(l)) => {
                    policy.swapcache =
                        Some(SwapcacheWatermarks { high_percent: h as u8, low_percent: l as u8 });
                }
                (Some(_), None) if g.get("swapcache_low_wmark").is_none() => {
                    g.err(d, "swapcache_high_wmark", "set swapcache_low_wmark too, or neither");
                }
                (None, Some(_)) if g.get("swapcache_high_wmark").is_none() => {
                    g.err(d, "swapcache_low_wmark", "set swapcache_high_wmark too, or neither");
                }
                _ => {}
            }
            (Scan::Page(scan), policy)
        }
        "region" => {
            let us =
                |key: &str, d: &mut Diag| g.int(d, key, 1, i64::MAX).map(|n| Duration::from_micros(n as u64));
            let count = |key: &str, d: &mut Diag| g.int(d, key, 0, u32::MAX.into()).map(|n| n as u32);
            let scan = RegionScan {
                sample_interval: us("sample_interval", d).unwrap_or(DEFAULT_SAMPLE_INTERVAL),
                aggr_interval: us("aggr_interval", d).unwrap_or(DEFAULT_AGGR_INTERVAL),
                update_interval: us("update_interval", d).unwrap_or(DEFAULT_UPDATE_INTERVAL),
                min_nr_regions: count("min_nr_regions", d).unwrap_or(DEFAULT_MIN_NR_REGIONS),
                max_nr_regions: count("max_nr_regions", d).unwrap_or(DEFAULT_MAX_NR_REGIONS),
                autotune: None,
            };
            for (key, msg) in checks::check_region_scan(&scan) {
                g.err(d, key, msg);
            }
            (Scan::Region(scan), Policy::etmem_passive())
        }
        _ => {
            let interval = secs("interval", d).unwrap_or(Duration::from_secs(1));
            (Scan::Psi(PsiScan { interval }), Policy::etmem_passive())
        }
    };
    Some(Project { name: name?, scan, policy, schemes: Vec::new(), backends: Vec::new() })
}

fn engine(g: &Group<'_>, d: &mut Diag, project: Option<&Project>) -> Option<Engine> {
    let spec = etmem_section("engine")?;
    let base = Grp { spec, group: g, variant: None, private: false };
    let kind = base.choice(d, "name", ENGINE_TYPES);
    let g = Grp { variant: kind, private: kind == Some("thirdparty"), ..base };
    let private_keys = g.check_keys(d);
    let project_name = g.name(d, "project");
    let kind = match kind? {
        "slide" => EngineKind::Page(PageEngine::default()),
        "cslide" => EngineKind::Cslide(cslide(&g, d)?),
        "damon" => EngineKind::KernelDamon(KernelDamonEngine {
            ops: DamonOps::Vaddr,
            from_etmem: true,
            schemes: vec![damon_scheme(&g, d)?],
        }),
        "thirdparty" => {
            let eng_name = g.name(d, "eng_name");
            if let Some(n) = eng_name.as_deref().filter(|n| ENGINE_TYPES.contains(n)) {
                g.err(
                    d,
                    "eng_name",
                    format!("eng_name `{n}` is a built-in engine type; tasks could not tell them apart"),
                );
            }
            let libname = g.string(d, "libname").and_then(|l| {
                if !l.starts_with('/') || l.ends_with('/') {
                    g.err(d, "libname", format!("`{l}` is not an absolute path to a shared object"));
                    return None;
                }
                Some(PathBuf::from(l))
            });
            let ops_name = g.string(d, "ops_name").and_then(|o| {
                let ident = o.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && o.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ident {
                    g.err(d, "ops_name", format!("`{o}` is not a C symbol name"));
                    return None;
                }
                Some(o.to_owned())
            });
            EngineKind::Thirdparty(ThirdpartyEngine {
                eng_name: eng_name?,
                libname: libname?,
                ops_name: ops_name?,
                private_keys,
            })
        }
        "psi" => EngineKind::Psi,
        _ => EngineKind::Memdcd,
    };
    let name = match &kind {
        EngineKind::Thirdparty(t) => t.eng_name.clone(),
        _ => g.get("name").map(|e| e.value.clone()).unwrap_or_default(),
    };
    let engine = Engine { project: project_name?, name, kind };
    if let Some(Err(e)) =
        project.filter(|p| p.name == engine.project).map(|p| checks::engine_fits(&engine, p))
    {
        g.err(d, "name", e.to_string());
    }
    Some(engine)
}

fn cslide(g: &Grp<'_, '_>, d: &mut Diag) -> Option<CslideEngine> {
    let node_pairs = g.string(d, "node_pair").and_then(|s| match parse_node_pairs(s) {
        Ok(p) => Some(p),
        Err(m) => {
            g.err(d, "node_pair", m);
            None
        }
    });
    let mib = |key: &str, d: &mut Diag| g.int(d, key, 0, i64::from(u32::MAX)).map(|n| (n as u64) << 20);
    let hot_threshold = g.int(d, "hot_threshold", 0, i64::from(u32::MAX)).map(|n| n as u32);
    let node_mig_quota_bytes = mib("node_mig_quota", d);
    let node_hot_reserve_bytes = mib("node_hot_reserve", d);
    let pmu = pmu(g, d, &["sample_period", "vma_updata_rate", "cpu_set_size", "cooling_interval"]);
    Some(CslideEngine {
        node_pairs: node_pairs?,
        hot_threshold: hot_threshold?,
        node_mig_quota_bytes: node_mig_quota_bytes?,
        node_hot_reserve_bytes: node_hot_reserve_bytes?,
        pmu,
    })
}

/// etmem's PMU keys: all of `keys` or none.
fn pmu(g: &Grp<'_, '_>, d: &mut Diag, keys: &[&str]) -> Option<PmuSampling> {
    let given: Vec<&str> = keys.iter().copied().filter(|k| g.get(k).is_some()).collect();
    if given.is_empty() {
        return None;
    }
    if given.len() != keys.len() {
        let missing: Vec<&str> = keys.iter().copied().filter(|k| !given.contains(k)).collect();
        g.err(d, given[0], format!("etmem's PMU keys go together: also set {}", missing.join(", ")));
        return None;
    }
    let v = |key: &str, d: &mut Diag| g.int(d, key, 1, i64::MAX).map(|n| n as u64);
    let sample_period = v("sample_period", d);
    let vma_updata_rate = v("vma_updata_rate", d);
    let cpu_set_size = v("cpu_set_size", d);
    let cooling_interval =
        if keys.contains(&"cooling_interval") { Some(v("cooling_interval", d)?) } else { None };
    Some(PmuSampling {
        sample_period: sample_period?,
        vma_updata_rate: vma_updata_rate?,
        cpu_set_size: cpu_set_size?,
        cooling_interval,
    })
}

/// `node_pair`: `hot,cold;hot,cold` (etmem's delimiters: `;` or space between
/// pairs, `,` or space within one), every node at most once.
fn parse_node_pairs(s: &str) -> Result<Vec<(u32, u32)>, String> {
    let mut pairs = Vec::new();
    let mut seen: Vec<u32> = Vec::new();
    for pair in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let nodes: Vec<&str> = pair.split([',', ' ']).filter(|n| !n.is_empty()).collect();
        let [hot, cold] = nodes.as_slice() else {
            return Err(format!("`{pair}` is not a pair `hot,cold` of NUMA nodes"));
        };
        let node = |n: &str| -> Result<u32, String> {
            n.parse::<u32>()
                .ok()
                .filter(|&n| n <= MAX_NUMA_NODE)
                .ok_or_else(|| format!("`{n}` is not a NUMA node number (0..={MAX_NUMA_NODE})"))
        };
        let (hot, cold) = (node(hot)?, node(cold)?);
        for n in [hot, cold] {
            if seen.contains(&n) {
                return Err(format!("node {n} appears twice; each node belongs to one pair"));
            }
            seen.push(n);
        }
        pairs.push((hot, cold));
    }
    if pairs.is_empty() {
        return Err("no node pairs; expected `hot,cold;hot,cold` (first = DRAM node)".to_owned());
    }
    Ok(pairs)
}

/// The scheme of an etmem `damon` engine group.
fn damon_scheme(g: &Grp<'_, '_>, d: &mut Diag) -> Option<Scheme> {
    let n = |key: &str, d: &mut Diag| g.int(d, key, 0, i64::MAX).map(|n| n as u64);
    let min_size = n("min_size", d);
    let max_size = n("max_size", d);
    let min_acc = g.int(d, "min_acc", 0, i64::from(u32::MAX) - 1).map(|n| n as u32);
    let max_acc = n("max_acc", d);
    let min_age = n("min_age", d);
    let max_age = n("max_age", d);
    let action = g.string(d, "action").and_then(|a| match scheme::parse_action(a) {
        Ok(a) => Some(a),
        Err(m) => {
            g.err(d, "action", m);
            None
        }
    });
    let pattern = AccessPattern {
        min_size_bytes: min_size?,
        max_size_bytes: max_size?,
        min_accesses: AccessBound::Count(min_acc?),
        max_accesses: scheme::etmem_max_accesses(max_acc?),
        min_age: AgeBound::Aggregations(min_age?),
        max_age: AgeBound::Aggregations(max_age?),
    };
    if let Err(SchemeError::MinAboveMax { what, min, max }) = scheme::check_pattern(&pattern) {
        let key = match what {
            "size" => "min_size",
            "accesses" => "min_acc",
            _ => "min_age",
        };
        g.err(d, key, format!("{key} {min} is above {} {max}", key.replacen("min", "max", 1)));
        return None;
    }
    Some(Scheme { pattern, action: action?, quota: None, watermarks: None, apply_interval: None })
}

fn task(
    g: &Group<'_>,
    d: &mut Diag,
    project: Option<&Project>,
    engine: Option<&Engine>,
    engine_g: Option<&Group<'_>>,
) -> Option<Task> {
    let spec = etmem_section("task")?;
    let base = Grp { spec, group: g, variant: None, private: false };
    let project_name = base.get("project").map(|e| e.value.as_str());
    let engine_name = base.get("engine").map(|e| e.value.as_str());
    // Which engine type the task's keys follow: the same file's engine when it
    // is the one named, else the built-in engine of that name, else thirdparty.
    let kind: &'static str = match (engine, engine_name) {
        (Some(e), Some(n)) if e.name == n && Some(e.project.as_str()) == project_name => match e.kind {
            EngineKind::Page(_) => "slide",
            EngineKind::Cslide(_) => "cslide",
            EngineKind::KernelDamon(_) => "damon",
            EngineKind::Psi => "psi",
            EngineKind::Memdcd => "memdcd",
            EngineKind::Thirdparty(_) | EngineKind::Region(_) => "thirdparty",
        },
        // The same file's engine group was invalid: follow its type if it names this engine.
        (None, Some(n))
            if engine_g.is_some_and(|eg| eg.entries.iter().any(|e| e.key == "eng_name" && e.value == n)) =>
        {
            "thirdparty"
        }
        (_, Some(n)) => BUILTIN_ENGINES.iter().copied().find(|b| *b == n).unwrap_or("thirdparty"),
        (_, None) => "slide",
    };
    let g = Grp { variant: Some(kind), private: kind == "thirdparty", ..base };
    let private_keys = g.check_keys(d);
    let project_name = g.name(d, "project");
    let engine_name = g.name(d, "engine");
    let name = g.name(d, "name");
    let ty = g.choice(d, "type", &["pid", "name"]);
    let value = g.string(d, "value").and_then(|v| match check_value(ty, v) {
        Ok(()) => Some(v.to_owned()),
        Err(m) => {
            g.err(d, "value", m);
            None
        }
    });
    if g.get("value").is_none() && name.as_deref().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
        g.err(d, "name", "is this the pid? etmem's README example puts it in `name`; it belongs in `value`");
    }
    let mut target = match (ty, &value) {
        (Some("pid"), Some(v)) => v.parse().ok().map(TaskTarget::Pid),
        (Some(_), Some(v)) => Some(TaskTarget::Name(v.clone())),
        _ => None,
    };
    let max_threads =
        g.int(d, "max_threads", 1, MAX_MAX_THREADS.into()).map_or(DEFAULT_MAX_THREADS, |n| n as u32);
    let swap_flag = g.yes_no(d, "swap_flag").unwrap_or(false);
    let mut page = PageTask::default();
    let (mut cslide, mut psi, mut memdcd) = (None, None, None);
    match kind {
        "slide" => {
            page.hot_threshold = g.int(d, "T", 0, i64::from(u32::MAX)).map(|n| n as u32);
            let same_project = project.filter(|p| Some(&p.name) == project_name.as_ref());
            let scan = match same_project {
                Some(Project { scan: Scan::Page(scan), .. }) => Some(scan),
                _ => None,
            };
            if let (Some(t), Some(scan)) = (page.hot_threshold, scan) {
                checks::check_hot_threshold(t, scan).unwrap_or_else(|m| g.err(d, "T", m));
            }
            page.swap_threshold_bytes =
                g.string(d, "swap_threshold").and_then(|s| match etmem_gigabytes(s) {
                    Ok(b) => Some(b),
                    Err(m) => {
                        g.err(d, "swap_threshold", m);
                        None
                    }
                });
            page.dram_percent = g.int(d, "dram_percent", 1, 100).map(|n| n as u8);
            page.pmu = pmu(&g, d, &["sample_period", "vma_updata_rate", "cpu_set_size"]);
        }
        "cslide" => {
            let vm_flags = g.string(d, "vm_flags").filter(|f| {
                let ok = *f == "ht";
                if !ok {
                    g.err(
                        d,
                        "vm_flags",
                        format!("vm_flags is `{f}`; etmem's cslide supports only `ht` (hugetlb)"),
                    );
                }
                ok
            });
            let anon_only = g.yes_no(d, "anon_only");
            let ign_host = g.yes_no(d, "ign_host");
            if let (Some(v), Some(a), Some(i)) = (vm_flags, anon_only, ign_host) {
                cslide = Some(CslideTask { vm_flags: v.to_owned(), anon_only: a, ign_host: i });
            }
        }
        "memdcd" => {
            let sock = g.string(d, "Sock").filter(|s| *s != "-").map(str::to_owned);
            memdcd = Some(MemdcdTask { sock });
        }
        "psi" => {
            psi = psi_task(&g, d);
            if let Some(p) = &psi {
                target = target.map(|_| TaskTarget::Cgroup(PathBuf::from(&p.cg_dir)));
            }
        }
        _ => {}
    }
    let mut task = Task::new(&project_name?, &engine_name?, &name?, target?);
    task.max_threads = max_threads;
    task.swap_flag = swap_flag;
    task.page = page;
    task.cslide = cslide;
    task.psi = psi;
    task.memdcd = memdcd;
    task.private_keys = private_keys;
    Some(task)
}

/// etmem's `check_str_valid` on `value`: <= 15 chars of `[A-Za-z0-9.%/_-]`;
/// a pid must be a positive number.
fn check_value(ty: Option<&str>, v: &str) -> Result<(), String> {
    if v.len() > MAX_PROCESS_NAME_LEN {
        return Err(format!(
            "value is {} characters, at most {MAX_PROCESS_NAME_LEN} (the kernel's comm length)",
            v.len()
        ));
    }
    if let Some(c) = v.chars().find(|c| !(c.is_ascii_alphanumeric() || ".%/_-".contains(*c))) {
        return Err(format!("value contains {c:?}; etmem allows only letters, digits and . % / _ -"));
    }
    if ty == Some("pid") && !v.parse::<i64>().is_ok_and(|p| (1..=PID_MAX).contains(&p)) {
        return Err(format!("`{v}` is not a pid (type=pid); use type=name for a process name"));
    }
    Ok(())
}

/// etmem's `swap_threshold`: `<digits>g` or `G`, at most 10 characters.
fn etmem_gigabytes(s: &str) -> Result<u64, String> {
    let digits = s.strip_suffix(['g', 'G']).unwrap_or("");
    if s.len() > 10 || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{s}` is not etmem's form `<N>g` (whole GiB, like 10g, at most 10 characters)"));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << 30))
        .ok_or_else(|| format!("`{s}` is too large"))
}

fn psi_task(g: &Grp<'_, '_>, d: &mut Diag) -> Option<PsiTask> {
    let cg_dir = g.string(d, "cg_dir").and_then(|c| {
        if c.len() >= 64 || c.starts_with('/') || c.split('/').any(|p| p == "..") {
            g.err(d, "cg_dir", "cg_dir is a cgroup path relative to /sys/fs/cgroup/memory/, under 64 characters, without `..`");
            return None;
        }
        Some(c)
    })?;
    let mut p = PsiTask::new(cg_dir);
    if let Some(v) = g.float(d, "pressure", false, 100.0) {
        p.pressure = v;
    }
    for (key, zero_ok, field) in [
        ("reclaim_rate", false, &mut p.reclaim_rate),
        ("reclaim_rate_max", false, &mut p.reclaim_rate_max),
        ("reclaim_rate_min", false, &mut p.reclaim_rate_min),
        ("limit_min_ratio", true, &mut p.limit_min_ratio),
    ] {
        if let Some(v) = g.float(d, key, zero_ok, 1.0) {
            *field = v;
        }
    }
    if let Some(v) = g.int(d, "limit_min_bytes", 0, i64::MAX) {
        p.limit_min_bytes = v as u64;
    }
    if let Some(v) = g.int(d, "reclaim_max_bytes", 1, i64::MAX) {
        p.reclaim_max_bytes = v as u64;
    }
    if !(p.reclaim_rate_min <= p.reclaim_rate && p.reclaim_rate <= p.reclaim_rate_max) {
        let key = ["reclaim_rate", "reclaim_rate_min", "reclaim_rate_max"]
            .into_iter()
            .find(|k| g.get(k).is_some())
            .unwrap_or("reclaim_rate");
        g.err(
            d,
            key,
            format!(
                "expected reclaim_rate_min <= reclaim_rate <= reclaim_rate_max, found {} <= {} <= {}",
                p.reclaim_rate_min, p.reclaim_rate, p.reclaim_rate_max
            ),
        );
    }
    Some(p)
}

/// A group being read against its section spec.
struct Grp<'g, 'a> {
    spec: &'static SectionSpec,
    group: &'g Group<'a>,
    variant: Option<&'static str>,
    /// thirdparty groups: unknown keys are the engine's private keys.
    private: bool,
}

impl Grp<'_, '_> {
    fn get(&self, key: &str) -> Option<&Entry<'_>> {
        let line = *self.group.lines.get(key)?;
        let entries = &self.group.entries;
        entries.binary_search_by_key(&line, |e| e.line).ok().map(|i| &entries[i])
    }

    /// An error about `key`, at its line when present, else at the group header.
    fn err(&self, d: &mut Diag, key: &str, msg: impl Into<String>) {
        let line = self.get(key).map_or(self.group.line, |e| e.line);
        d.at_line(line, key, msg);
    }

    /// Reports unknown, inapplicable and missing keys; returns the private
    /// keys of a thirdparty group.
    fn check_keys(&self, d: &mut Diag) -> BTreeMap<String, String> {
        let mut private = BTreeMap::new();
        for e in &self.group.entries {
            match schema::check_key(self.spec, self.variant, e.key) {
                Ok(()) => {}
                Err(_) if self.private => {
                    private.insert(e.key.to_owned(), e.value.clone());
                }
                Err(p) => {
                    d.at_line_with(e.line, e.key, || schema::key_message(self.spec, self.variant, e.key, p))
                }
            }
        }
        for key in schema::missing_required(self.spec, self.variant, |k| self.get(k).is_some()) {
            let mut msg = format!("missing required key in [{}]", self.group.name);
            if let (Some(v), true) = (self.variant, !self.spec.variant_by.is_empty()) {
                msg.push_str(&format!(" ({} {v})", self.spec.variant_by));
            }
            // Bounded: a pathological group may hold a million keys.
            let others =
                self.group.entries.iter().map(|e| e.key).filter(|k| self.spec.key(k).is_none()).take(100);
            if let Some(near) = schema::suggest(key, others) {
                msg.push_str(&format!("; is `{near}` a misspelling of it?"));
            }
            d.at_line(self.group.line, key, msg);
        }
        private
    }

    /// A non-empty string value (etmem refuses empty strings).
    fn string(&self, d: &mut Diag, key: &str) -> Option<&str> {
        let e = self.get(key)?;
        if e.value.is_empty() {
            d.at_line(e.line, key, "empty value");
            return None;
        }
        Some(&e.value)
    }

    fn name(&self, d: &mut Diag, key: &str) -> Option<String> {
        let s = self.string(d, key)?;
        match checks::check_name(s) {
            Ok(()) => Some(s.to_owned()),
            Err(m) => {
                self.err(d, key, m);
                None
            }
        }
    }

    fn choice(&self, d: &mut Diag, key: &str, options: &[&'static str]) -> Option<&'static str> {
        let s = self.string(d, key)?;
        if let Some(o) = options.iter().find(|o| **o == s) {
            return Some(o);
        }
        let mut msg = format!("`{s}` is not one of {}", options.join(", "));
        if let Some(near) = schema::suggest(s, options.iter().copied()) {
            msg.push_str(&format!("; did you mean `{near}`?"));
        }
        self.err(d, key, msg);
        None
    }

    /// A decimal integer as `g_key_file_get_int64` reads it, within `min..=max`.
    fn int(&self, d: &mut Diag, key: &str, min: i64, max: i64) -> Option<i64> {
        let s = self.string(d, key)?;
        match s.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            Ok(n) => {
                self.err(d, key, format!("{n} is out of range, expected {min}..={max}"));
                None
            }
            Err(_) => {
                let mut msg = format!("`{s}` is not an integer");
                if crate::units::parse_size(s).is_ok() || crate::units::parse_duration(s).is_ok() {
                    msg.push_str("; etmem files take plain numbers (the native TOML format takes units)");
                }
                self.err(d, key, msg);
                None
            }
        }
    }

    /// A decimal number in `0..=max` (`zero_ok`) or `(0, max]`.
    fn float(&self, d: &mut Diag, key: &str, zero_ok: bool, max: f64) -> Option<f64> {
        let s = self.string(d, key)?;
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() && (v > 0.0 || (zero_ok && v == 0.0)) && v <= max => Some(v),
            Ok(_) => {
                let lo = if zero_ok { "0" } else { "more than 0" };
                self.err(d, key, format!("{s} is out of range, expected {lo} and at most {max}"));
                None
            }
            Err(_) => {
                self.err(d, key, format!("`{s}` is not a decimal number"));
                None
            }
        }
    }

    fn yes_no(&self, d: &mut Diag, key: &str) -> Option<bool> {
        match self.string(d, key)? {
            "yes" => Some(true),
            "no" => Some(false),
            other => {
                let hint = match other {
                    "true" | "1" | "on" | "YES" | "Yes" => "; did you mean `yes`?",
                    "false" | "0" | "off" | "NO" | "No" => "; did you mean `no`?",
                    _ => "",
                };
                self.err(d, key, format!("`{other}` is not `yes` or `no`{hint}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Objects {
        let mut d = Diag::new("t.conf", text);
        let o = parse(text, &mut d);
        match d.finish(o) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        }
    }

    fn errs(text: &str) -> String {
        let mut d = Diag::new("t.conf", text);
        let o = parse(text, &mut d);
        d.finish(o).unwrap_err().to_string()
    }

    const SLIDE: &str = "[project]\nname=test\nloop=1\ninterval=1\nsleep=1\n\n[engine]\nname=slide\nproject=test\n\n\
                         [task]\nproject=test\nengine=slide\nname=t\ntype=name\nvalue=mysql\nT=1\n";

    #[test]
    fn slide_defaults_scan_type_page() {
        let o = ok(SLIDE);
        let p = o.project.unwrap();
        assert_eq!(
            p.scan,
            Scan::Page(PageScan {
                loops: 1,
                sleep: Duration::from_secs(1),
                interval: Duration::from_secs(1)
            })
        );
        assert_eq!(p.policy, Policy::etmem_slide());
        assert_eq!(o.engines[0].kind, EngineKind::Page(PageEngine::default()));
        assert_eq!(o.tasks[0].page.hot_threshold, Some(1));
        assert_eq!(o.tasks[0].target, TaskTarget::Name("mysql".into()));
    }

    #[test]
    fn lexing() {
        let o = ok("# c\n  [project]  \r\n name = ab \r\nloop=1\ninterval = 2\nsleep=3\n");
        let p = o.project.unwrap();
        assert_eq!(p.name, "ab");
        assert_eq!(unescape("a\\sb\\\\c\\t"), Ok("a b\\c\t".to_owned()));
        assert!(unescape("a\\q").is_err());
        assert!(unescape("a\\").is_err());
        let e = errs("name=x\n[project]\nname=y\nloop=1\ninterval=1\nsleep=1\nlonely line\n[projct]\nx=1\n");
        assert!(e.contains("t.conf:1: key name: key outside of a group"), "{e}");
        assert!(e.contains("t.conf:7: expected `key=value`"), "{e}");
        assert!(e.contains("t.conf:8: unknown group [projct]; etmem files have [project], [engine] and [task]; did you mean [project]?"), "{e}");
        assert_eq!(e.lines().count(), 3, "{e}");
    }

    #[test]
    fn pitfalls_are_errors() {
        let e = errs(&format!("{SLIDE}[engine]\nname=cslide\n"));
        assert!(e.contains("t.conf:18: second [engine] group (the first is at line 7)"), "{e}");
        let e = errs("[project]\nname=x\nloop=1\ninterval=1\nsleep=1\nswapcache_high_vmark=10\n");
        assert!(e.contains("t.conf:6: key swapcache_high_vmark: unknown key in [project]; did you mean `swapcache_high_wmark`?"), "{e}");
        let e = errs("[task]\nproject=p\nengine=slide\nname=t\ntype=name\nvalue=x\nT=1\ndram_percent=0\n");
        assert!(e.contains("t.conf:8: key dram_percent: 0 is out of range, expected 1..=100"), "{e}");
        let e = errs("[engine]\nengine=slide\nproject=p\n");
        assert!(e.contains("t.conf:2: key engine: unknown key in [engine]"), "{e}");
        assert!(e.contains("t.conf:1: key name: missing required key"), "{e}");
    }

    #[test]
    fn node_pairs() {
        assert_eq!(parse_node_pairs("0,2;1,3"), Ok(vec![(0, 2), (1, 3)]));
        assert_eq!(parse_node_pairs(" 0 2 ; 1,3 ;"), Ok(vec![(0, 2), (1, 3)]));
        assert!(parse_node_pairs("0,2;2,3").unwrap_err().contains("twice"));
        assert!(parse_node_pairs("0,1,2").is_err());
        assert!(parse_node_pairs("").is_err());
        assert!(parse_node_pairs("0,x").is_err());
    }

    #[test]
    fn gigabytes() {
        assert_eq!(etmem_gigabytes("10g"), Ok(10 << 30));
        assert_eq!(etmem_gigabytes("1G"), Ok(1 << 30));
        assert!(etmem_gigabytes("10").is_err());
        assert!(etmem_gigabytes("512M").is_err());
        assert!(etmem_gigabytes("12345678901g").is_err());
    }
}
