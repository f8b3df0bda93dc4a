//! Checks shared by both config formats, and the cross-object checks the
//! daemon needs when objects arrive in separate files (etmem's way).
//!
//! Each check returns a message without file or line; the parsers attach
//! those, the daemon prefixes the object it was adding.

use std::time::Duration;

use crate::model::*;
use crate::units::fmt_duration;

/// Project, engine and task names: 1..=64 bytes, no whitespace or control
/// characters (etmem's wire format separates fields by spaces), not
/// starting with `-` (etmem's wire format reads that as "absent").
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("name is {} bytes long, at most {MAX_NAME_LEN} are allowed", name.len()));
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "name `{}` contains {c:?}; names have no spaces or control characters",
            name.escape_debug()
        ));
    }
    if name.starts_with('-') {
        return Err(format!("name `{name}` starts with `-`, which etmem's protocol reads as \"no value\""));
    }
    Ok(())
}

/// A process name as `/proc/PID/comm` holds it: 1..=15 bytes, printable.
pub fn check_process_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty process name".to_owned());
    }
    if name.len() > MAX_PROCESS_NAME_LEN {
        return Err(format!(
            "process name `{name}` is {} bytes; the kernel keeps only {MAX_PROCESS_NAME_LEN} \
             (/proc/PID/comm), so it would never match",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!("process name contains the control character {c:?}"));
    }
    Ok(())
}

/// Page scan timing: `loops` in 1..=120, `sleep` and `interval` in (0, 1200 s].
pub fn check_page_scan(scan: &PageScan) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !(1..=MAX_PAGE_LOOPS).contains(&scan.loops) {
        out.push(("loop", format!("loop is {}, expected 1..={MAX_PAGE_LOOPS}", scan.loops)));
    }
    for (key, d) in [("sleep", scan.sleep), ("interval", scan.interval)] {
        if d.is_zero() || d > MAX_PAGE_SLEEP {
            out.push((key, format!("{key} is {}, expected more than 0 and at most 1200s", fmt_duration(d))));
        }
    }
    out
}

/// DAMON monitoring attributes: what `damon_set_attrs()` and etmem check,
/// plus `max_nr_regions > min_nr_regions` (etmem's rule).
pub fn check_region_scan(scan: &RegionScan) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let d = fmt_duration;
    if scan.sample_interval.is_zero() {
        out.push(("sample_interval", "sample_interval must be more than 0".to_owned()));
    }
    if scan.sample_interval > scan.aggr_interval {
        out.push((
            "sample_interval",
            format!(
                "sample_interval {} is above aggr_interval {}: every aggregation needs at least one sample",
                d(scan.sample_interval),
                d(scan.aggr_interval)
            ),
        ));
    }
    if scan.update_interval.is_zero() {
        out.push(("update_interval", "update_interval must be more than 0".to_owned()));
    }
    if scan.min_nr_regions < MIN_NR_REGIONS_FLOOR {
        out.push((
            "min_nr_regions",
            format!("min_nr_regions is {}, DAMON needs at least {MIN_NR_REGIONS_FLOOR}", scan.min_nr_regions),
        ));
    }
    if scan.max_nr_regions <= scan.min_nr_regions {
        out.push((
            "max_nr_regions",
            format!(
                "max_nr_regions {} must be above min_nr_regions {}",
                scan.max_nr_regions, scan.min_nr_regions
            ),
        ));
    }
    if let Some(g) = &scan.autotune {
        out.extend(check_intervals_goal(g, scan.sample_interval));
    }
    out
}

fn check_intervals_goal(g: &IntervalsGoal, sample: Duration) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !(1..=10_000).contains(&g.access_bp) {
        out.push(("access_bp", format!("access_bp is {}, expected 1..=10000", g.access_bp)));
    }
    if g.aggrs == 0 {
        out.push((
            "aggrs",
            "aggrs must be at least 1 (leave [engine.autotune] out to turn tuning off)".to_owned(),
        ));
    }
    if g.min_sample_interval.is_zero() {
        out.push(("min_sample", "min_sample must be more than 0".to_owned()));
    }
    if g.min_sample_interval > g.max_sample_interval {
        out.push((
            "min_sample",
            format!(
                "min_sample {} is above max_sample {}",
                fmt_duration(g.min_sample_interval),
                fmt_duration(g.max_sample_interval)
            ),
        ));
    } else if sample < g.min_sample_interval || sample > g.max_sample_interval {
        out.push((
            "min_sample",
            format!(
                "sample_interval {} is outside min_sample..max_sample ({}..{}), which DAMON refuses",
                fmt_duration(sample),
                fmt_duration(g.min_sample_interval),
                fmt_duration(g.max_sample_interval)
            ),
        ));
    }
    out
}

/// Hot threshold `T` against the page scan's `loops`.
pub fn check_hot_threshold(t: u32, scan: &PageScan) -> Result<(), String> {
    if t > scan.max_score() {
        return Err(format!(
            "T is {t}, above 3 * loop = {}: a page scores at most 3 per scan (when dirty), loop = {} scans per round",
            scan.max_score(),
            scan.loops
        ));
    }
    Ok(())
}

/// What makes an engine unfit for a project, or a task unfit for its engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    #[error(
        "engine {engine} ({kind}) needs a project with scan_type {expected}, project {project} has {found}"
    )]
    ScanType { engine: String, kind: &'static str, project: String, expected: String, found: &'static str },
    #[error("task {task}: {message}")]
    Task { task: String, message: String },
}

/// Whether `engine` can belong to `project` (etmem: a region project has
/// only damon engines; psi projects only psi engines).
pub fn engine_fits(engine: &Engine, project: &Project) -> Result<(), FitError> {
    let found = project.scan.scan_type();
    if engine.kind.scan_types().contains(&found) {
        return Ok(());
    }
    Err(FitError::ScanType {
        engine: engine.name.clone(),
        kind: engine.kind.kind_str(),
        project: project.name.clone(),
        expected: engine.kind.scan_types().join(" or "),
        found,
    })
}

/// Whether `task` fits `engine` of `project`: `T` within `3 * loop`, and
/// engine-specific keys present for the engine's kind.
pub fn task_fits(task: &Task, engine: &Engine, project: &Project) -> Result<(), FitError> {
    let err = |message: String| FitError::Task { task: task.name.clone(), message };
    if let (Some(t), Scan::Page(scan)) = (task.page.hot_threshold, &project.scan) {
        check_hot_threshold(t, scan).map_err(err)?;
    }
    match &engine.kind {
        EngineKind::Cslide(_) if task.cslide.is_none() => {
            Err(err("a cslide task needs vm_flags, anon_only and ign_host".to_owned()))
        }
        EngineKind::Psi if task.psi.is_none() => Err(err("a psi task needs cg_dir".to_owned())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("test").is_ok());
        assert!(check_name(&"x".repeat(64)).is_ok());
        assert!(check_name(&"x".repeat(65)).unwrap_err().contains("65 bytes"));
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("a\u{7}").is_err());
        assert!(check_process_name("mysqld").is_ok());
        assert!(check_process_name("a_very_long_process").unwrap_err().contains("15"));
    }

    #[test]
    fn region_scan() {
        assert!(check_region_scan(&RegionScan::default()).is_empty());
        let bad = RegionScan {
            sample_interval: Duration::from_millis(200),
            min_nr_regions: 2,
            max_nr_regions: 2,
            ..RegionScan::default()
        };
        let keys: Vec<_> = check_region_scan(&bad).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["sample_interval", "min_nr_regions", "max_nr_regions"]);
        let tuned = RegionScan { autotune: Some(IntervalsGoal::default()), ..RegionScan::default() };
        assert!(check_region_scan(&tuned).is_empty());
    }

    #[test]
    fn fits() {
        let project = Project {
            name: "p".into(),
            scan: Scan::Page(PageScan { loops: 1, ..PageScan::default() }),
            policy: Policy::default(),
            schemes: vec![],
            backends: vec![],
        };
        let damon = Engine {
            project: "p".into(),
            name: "damon".into(),
            kind: EngineKind::KernelDamon(KernelDamonEngine::default()),
        };
        assert!(engine_fits(&damon, &project).unwrap_err().to_string().contains("scan_type region"));
        let slide = Engine {
            project: "p".into(),
            name: "slide".into(),
            kind: EngineKind::Page(PageEngine::default()),
        };
        assert!(engine_fits(&slide, &project).is_ok());
        let mut task = Task::new("p", "slide", "t", TaskTarget::Pid(1));
        task.page.hot_threshold = Some(3);
        assert!(task_fits(&task, &slide, &project).is_ok());
        task.page.hot_threshold = Some(4);
        assert!(task_fits(&task, &slide, &project).unwrap_err().to_string().contains("3 * loop = 3"));
    }
}
