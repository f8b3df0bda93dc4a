//! Writing a [`KdamondSpec`] into one kdamond's directory, the way damo
//! stages kdamonds: counts first (`nr_*` is written only when it changes,
//! because resizing recreates every child directory with default values),
//! then every value explicitly. Files a kernel lacks are skipped when the
//! spec does not need them and refused when it does.

use super::spec::{FilterKind, FilterSpec, KdamondSpec, QuotaGoalSpec, SchemeSpec, TargetSpec};
use super::tree::{self, WriteError};
use std::path::Path;

/// Why a spec could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("the spec is invalid: {}", problems.join("; "))]
    Invalid { problems: Vec<String> },
    #[error("this kernel's DAMON lacks {feature} (no {path})")]
    Unsupported { feature: String, path: String },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Read(#[from] tree::ReadError),
}

/// Write `n` to a `nr_*` file unless it already holds `n`.
fn ensure_nr(path: &Path, n: usize) -> Result<(), StageError> {
    if tree::read_u64(path)? != n as u64 {
        tree::write(path, &n.to_string())?;
    }
    Ok(())
}

fn put(path: &Path, value: impl ToString) -> Result<(), StageError> {
    tree::write(path, &value.to_string()).map_err(StageError::from)
}

/// Write a file the spec needs; a missing file means the kernel lacks `feature`.
fn need(path: &Path, value: impl ToString, feature: &str) -> Result<(), StageError> {
    if !tree::exists(path) {
        return Err(StageError::Unsupported { feature: feature.into(), path: path.display().to_string() });
    }
    put(path, value)
}

fn yn(b: bool) -> &'static str {
    if b { "Y" } else { "N" }
}

/// Stage the whole spec under `kdamond_dir` (`.../kdamonds/N`).
pub fn stage(kdamond_dir: &Path, spec: &KdamondSpec) -> Result<(), StageError> {
    let problems = spec.problems();
    if !problems.is_empty() {
        return Err(StageError::Invalid { problems: problems.iter().map(ToString::to_string).collect() });
    }
    let contexts = kdamond_dir.join("contexts");
    ensure_nr(&contexts.join("nr_contexts"), 1)?;
    let ctx = contexts.join("0");
    put(&ctx.join("operations"), spec.ops.as_str())?;
    if tree::exists(&ctx.join("addr_unit")) {
        put(&ctx.join("addr_unit"), 1)?;
    }
    let attrs = ctx.join("monitoring_attrs");
    let iv = attrs.join("intervals");
    put(&iv.join("sample_us"), spec.attrs.sample_us)?;
    put(&iv.join("aggr_us"), spec.attrs.aggr_us)?;
    put(&iv.join("update_us"), spec.attrs.update_us)?;
    let goal_dir = iv.join("intervals_goal");
    match &spec.attrs.intervals_goal {
        Some(g) => {
            need(&goal_dir.join("access_bp"), g.access_bp, "monitoring intervals auto-tuning (Linux 6.15)")?;
            put(&goal_dir.join("aggrs"), g.aggrs)?;
            put(&goal_dir.join("min_sample_us"), g.min_sample_us)?;
            put(&goal_dir.join("max_sample_us"), g.max_sample_us)?;
        }
        // aggrs 0 turns tuning off; a previous user may have left it on.
        None if tree::exists(&goal_dir) => put(&goal_dir.join("aggrs"), 0)?,
        None => {}
    }
    // Raise max before min so the pair is never inverted on the way.
    let nr = attrs.join("nr_regions");
    put(&nr.join("max"), spec.attrs.max_nr_regions)?;
    put(&nr.join("min"), spec.attrs.min_nr_regions)?;

    let targets = ctx.join("targets");
    ensure_nr(&targets.join("nr_targets"), spec.targets.len())?;
    for (i, t) in spec.targets.iter().enumerate() {
        stage_target(&targets.join(i.to_string()), t)?;
    }
    let schemes = ctx.join("schemes");
    ensure_nr(&schemes.join("nr_schemes"), spec.schemes.len())?;
    for (i, s) in spec.schemes.iter().enumerate() {
        stage_scheme(&schemes.join(i.to_string()), s)?;
    }
    Ok(())
}

fn stage_target(dir: &Path, t: &TargetSpec) -> Result<(), StageError> {
    if let Some(pid) = t.pid {
        put(&dir.join("pid_target"), pid)?;
    }
    let regions = dir.join("regions");
    ensure_nr(&regions.join("nr_regions"), t.regions.len())?;
    for (i, r) in t.regions.iter().enumerate() {
        let rd = regions.join(i.to_string());
        // A region dir starts at 0-0; write end first so start <= end holds.
        put(&rd.join("end"), r.end.0)?;
        put(&rd.join("start"), r.start.0)?;
    }
    Ok(())
}

fn stage_scheme(dir: &Path, s: &SchemeSpec) -> Result<(), StageError> {
    let ap = dir.join("access_pattern");
    for (name, r) in
        [("sz", s.pattern.sz_bytes), ("nr_accesses", s.pattern.nr_accesses), ("age", s.pattern.age)]
    {
        put(&ap.join(name).join("min"), r.min)?;
        put(&ap.join(name).join("max"), r.max)?;
    }
    put(&dir.join("action"), s.action.as_str())?;
    if let Some(nid) = s.target_nid {
        need(&dir.join("target_nid"), nid, "migration actions (Linux 6.11)")?;
    }
    let apply = dir.join("apply_interval_us");
    if tree::exists(&apply) {
        put(&apply, s.apply_interval_us)?;
    } else if s.apply_interval_us != 0 {
        return Err(StageError::Unsupported {
            feature: "per-scheme apply intervals (Linux 6.7)".into(),
            path: apply.display().to_string(),
        });
    }

    let q = dir.join("quotas");
    put(&q.join("ms"), s.quota.ms)?;
    put(&q.join("bytes"), s.quota.bytes)?;
    put(&q.join("reset_interval_ms"), s.quota.reset_interval_ms)?;
    let w = q.join("weights");
    put(&w.join("sz_permil"), s.quota.weight_sz_permil)?;
    put(&w.join("nr_accesses_permil"), s.quota.weight_nr_accesses_permil)?;
    put(&w.join("age_permil"), s.quota.weight_age_permil)?;
    let goals = q.join("goals");
    if s.quota.goals.is_empty() {
        if tree::exists(&goals) {
            ensure_nr(&goals.join("nr_goals"), 0)?;
        }
    } else {
        if !tree::exists(&goals) {
            return Err(StageError::Unsupported {
                feature: "DAMOS quota goals (Linux 6.8)".into(),
                path: goals.display().to_string(),
            });
        }
        ensure_nr(&goals.join("nr_goals"), s.quota.goals.len())?;
        for (i, g) in s.quota.goals.iter().enumerate() {
            stage_goal(&goals.join(i.to_string()), g)?;
        }
    }

    let wm = dir.join("watermarks");
    put(&wm.join("metric"), s.watermarks.metric.as_str())?;
    put(&wm.join("interval_us"), s.watermarks.interval_us)?;
    // high first: the kernel checks high >= mid >= low only at on/commit.
    put(&wm.join("high"), s.watermarks.high_permil)?;
    put(&wm.join("mid"), s.watermarks.mid_permil)?;
    put(&wm.join("low"), s.watermarks.low_permil)?;

    stage_filters(dir, &s.filters)
}

fn stage_goal(dir: &Path, g: &QuotaGoalSpec) -> Result<(), StageError> {
    let metric = dir.join("target_metric");
    if tree::exists(&metric) {
        put(&metric, g.metric.as_str())?;
    } else if g.metric != super::spec::GoalMetric::UserInput {
        return Err(StageError::Unsupported {
            feature: format!("quota goal metric {} (Linux 6.9)", g.metric.as_str()),
            path: metric.display().to_string(),
        });
    }
    put(&dir.join("target_value"), g.target_value)?;
    put(&dir.join("current_value"), g.current_value)
}

/// Filters go to `core_filters/` and `ops_filters/` where the kernel has
/// them (6.15+), else all to `filters/` in the given order.
fn stage_filters(dir: &Path, filters: &[FilterSpec]) -> Result<(), StageError> {
    if tree::exists(&dir.join("core_filters")) {
        let (core, ops): (Vec<&FilterSpec>, Vec<&FilterSpec>) =
            filters.iter().partition(|f| f.kind.is_core());
        stage_filter_list(&dir.join("core_filters"), &core)?;
        stage_filter_list(&dir.join("ops_filters"), &ops)?;
        // The deprecated dir still exists beside them: keep it empty.
        if tree::exists(&dir.join("filters")) {
            ensure_nr(&dir.join("filters").join("nr_filters"), 0)?;
        }
        return Ok(());
    }
    let all: Vec<&FilterSpec> = filters.iter().collect();
    let list = dir.join("filters");
    if !tree::exists(&list) {
        if all.is_empty() {
            return Ok(());
        }
        return Err(StageError::Unsupported {
            feature: "DAMOS filters (Linux 6.3)".into(),
            path: list.display().to_string(),
        });
    }
    stage_filter_list(&list, &all)
}

fn stage_filter_list(dir: &Path, filters: &[&FilterSpec]) -> Result<(), StageError> {
    ensure_nr(&dir.join("nr_filters"), filters.len())?;
    for (i, f) in filters.iter().enumerate() {
        let fd = dir.join(i.to_string());
        put(&fd.join("type"), f.kind.type_str()).map_err(|e| match e {
            StageError::Write(WriteError::Io { .. }) => StageError::Unsupported {
                feature: format!("the {} filter type", f.kind.type_str()),
                path: fd.join("type").display().to_string(),
            },
            other => other,
        })?;
        match &f.kind {
            FilterKind::Anon | FilterKind::Young => {}
            FilterKind::Memcg { path } => put(&fd.join("memcg_path"), path)?,
            FilterKind::Addr { range } => {
                put(&fd.join("addr_end"), range.end.0)?;
                put(&fd.join("addr_start"), range.start.0)?;
            }
            FilterKind::Target { index } => {
                // The file is `target_idx`; damo calls the field damon_target_idx.
                let file =
                    ["target_idx", "damon_target_idx"].into_iter().map(|n| fd.join(n)).find(|p| p.exists());
                match file {
                    Some(p) => put(&p, index)?,
                    None => {
                        return Err(StageError::Unsupported {
                            feature: "the target filter (Linux 6.6)".into(),
                            path: fd.join("target_idx").display().to_string(),
                        });
                    }
                }
            }
        }
        let allow = fd.join("allow");
        if tree::exists(&allow) {
            put(&allow, yn(f.allow))?;
        } else if f.allow {
            return Err(StageError::Unsupported {
                feature: "allow filters (Linux 6.14)".into(),
                path: allow.display().to_string(),
            });
        }
        put(&fd.join("matching"), yn(f.matching))?;
    }
    Ok(())
}
