//! What the engines did during a record: from the `stats` lines (the task
//! counters, about once a second) the change of each counter over the
//! recording and its rate, a timeline of the main figures, and how full the
//! project's swap devices got.

use crate::protocol::TaskStats;
use crate::record::{Recording, StatsLine};
use crate::render::bytes;
use std::collections::BTreeMap;
use std::fmt::Write;

use super::ReportError;

/// Timeline rows at most.
const TIMELINE_ROWS: usize = 20;

fn delta(first: Option<u64>, last: Option<u64>) -> Option<u64> {
    Some(last?.saturating_sub(first.unwrap_or(0)))
}

fn fdelta(first: Option<f64>, last: Option<f64>) -> Option<f64> {
    Some((last? - first.unwrap_or(0.0)).max(0.0))
}

fn opt_bytes(v: Option<u64>) -> String {
    v.map(bytes).unwrap_or_else(|| "-".into())
}

/// The stats report of a record.
pub fn text(rec: &Recording, task: Option<&str>) -> Result<String, ReportError> {
    let mut by_task: BTreeMap<(String, String), Vec<&StatsLine>> = BTreeMap::new();
    for s in rec.stats.iter().filter(|s| task.is_none_or(|t| t == s.task)) {
        by_task.entry((s.engine.clone(), s.task.clone())).or_default().push(s);
    }
    if by_task.is_empty() {
        return Err(ReportError::NoStats);
    }
    let mut out = String::new();
    if let Some(h) = &rec.header {
        let _ = writeln!(out, "record of project {} on {} ({})", h.project, h.host, h.kernel);
    }
    for ((engine, task), lines) in &by_task {
        let (Some(first), Some(last)) = (lines.first(), lines.last()) else { continue };
        let secs = ((last.at_ms.saturating_sub(first.at_ms)) as f64 / 1000.0).max(1e-3);
        let (a, b): (&TaskStats, &TaskStats) = (&first.stats, &last.stats);
        let _ =
            writeln!(out, "\ntask {task} (engine {engine}): {} stats samples over {secs:.1} s", lines.len());
        let mut about = Vec::new();
        if let Some(p) = &b.probe {
            about.push(format!("probe {p}"));
        }
        if let Some(n) = b.nr_regions {
            about.push(format!("{n} regions"));
        }
        if !b.pids.is_empty() {
            let pids: Vec<String> = b.pids.iter().map(u32::to_string).collect();
            about.push(format!("pids {}", pids.join(",")));
        }
        if !about.is_empty() {
            let _ = writeln!(out, "  {}", about.join(", "));
        }
        let _ = writeln!(out, "  {:<22} {:>14} {:>16}", "action", "during record", "rate");
        let mut row = |name: &str, v: Option<u64>, as_bytes: bool| {
            if let Some(v) = v {
                let (total, rate) = if as_bytes {
                    (bytes(v), format!("{}/s", bytes((v as f64 / secs) as u64)))
                } else {
                    (v.to_string(), format!("{:.2}/s", v as f64 / secs))
                };
                let _ = writeln!(out, "  {name:<22} {total:>14} {rate:>16}");
            }
        };
        row("paged out", delta(a.paged_out_bytes, b.paged_out_bytes), true);
        row("prefetched back", delta(a.prefetched_bytes, b.prefetched_bytes), true);
        row("refaulted pages", delta(a.refaults, b.refaults), false);
        row("THP collapses", delta(a.collapses, b.collapses), false);
        row("THP demotions", delta(a.demotions, b.demotions), false);
        row("quota exhausted", delta(a.quota_exceeded, b.quota_exceeded), false);
        row("aggregations", delta(a.aggregations, b.aggregations), false);
        for (name, v) in [
            ("monitor CPU", fdelta(a.monitor_cpu_s, b.monitor_cpu_s)),
            ("action CPU", fdelta(a.action_cpu_s, b.action_cpu_s)),
        ] {
            if let Some(v) = v {
                let _ = writeln!(out, "  {name:<22} {:>13.3}s {:>15.2}%", v, v / secs * 100.0);
            }
        }
        for (kind, n) in &b.action_errors {
            let before = a.action_errors.get(kind).copied().unwrap_or(0);
            let _ = writeln!(out, "  {:<22} {:>14}", format!("errors {kind}"), n.saturating_sub(before));
        }
        if let Some(e) = &b.last_error {
            let _ = writeln!(out, "  last error: {e}");
        }
        let _ = writeln!(
            out,
            "  {:>8} {:>11} {:>11} {:>11} {:>11} {:>11}",
            "time s", "hot", "cold", "rss", "swap", "paged out"
        );
        let step = lines.len().div_ceil(TIMELINE_ROWS).max(1);
        let mut picked: Vec<&&StatsLine> = lines.iter().step_by(step).collect();
        if picked.last().map(|l| l.at_ms) != Some(last.at_ms) {
            picked.push(last);
        }
        for l in picked {
            let s = &l.stats;
            let _ = writeln!(
                out,
                "  {:>8.1} {:>11} {:>11} {:>11} {:>11} {:>11}",
                l.at_ms.saturating_sub(first.at_ms) as f64 / 1000.0,
                opt_bytes(s.hot_bytes),
                opt_bytes(s.cold_bytes),
                opt_bytes(s.rss_bytes),
                opt_bytes(s.swap_bytes),
                opt_bytes(delta(a.paged_out_bytes, s.paged_out_bytes)),
            );
        }
    }
    if !rec.backends.is_empty() {
        let _ = writeln!(out, "\nswap devices (most used during the record):");
        let mut peak: BTreeMap<String, (String, u64, u64)> = BTreeMap::new();
        for l in &rec.backends {
            for b in &l.backends {
                let e = peak.entry(b.device.clone()).or_insert((b.kind.clone(), b.size_bytes, 0));
                e.2 = e.2.max(b.used_bytes);
            }
        }
        for (dev, (kind, size, used)) in peak {
            let pct = if size > 0 { used as f64 * 100.0 / size as f64 } else { 0.0 };
            let _ = writeln!(out, "  {kind} {dev}: {} of {} ({pct:.1} %)", bytes(used), bytes(size));
        }
    }
    let lost: u64 = rec.lost.iter().map(|l| l.items).sum();
    if lost > 0 || rec.end.is_some() {
        let _ = writeln!(out);
    }
    if lost > 0 {
        let _ = writeln!(out, "{lost} aggregation(s) were lost: the recorder fell behind");
    }
    if let Some(e) = &rec.end {
        let _ = writeln!(
            out,
            "recording ended after {:.1} s: {} ({} snapshots)",
            e.at_ms as f64 / 1000.0,
            e.reason,
            e.snapshots
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(at_ms: u64, paged: u64, refaults: u64) -> StatsLine {
        StatsLine {
            at_ms,
            engine: "region".into(),
            task: "wl".into(),
            stats: TaskStats {
                paged_out_bytes: Some(paged),
                refaults: Some(refaults),
                monitor_cpu_s: Some(at_ms as f64 / 10_000.0),
                probe: Some("refault".into()),
                ..TaskStats::default()
            },
        }
    }

    #[test]
    fn deltas_and_rates() {
        let rec = Recording {
            stats: vec![line(1000, 1 << 20, 3), line(3000, 5 << 20, 7), line(11_000, 21 << 20, 13)],
            ..Recording::default()
        };
        let out = text(&rec, None).expect("report");
        let squashed = out.split_whitespace().collect::<Vec<_>>().join(" ");
        for want in [
            "paged out 20.0 MiB 2.0 MiB/s",
            "refaulted pages 10 1.00/s",
            "monitor CPU 1.000s 10.00%",
            "10.0 - - - - 20.0 MiB",
        ] {
            assert!(squashed.contains(want), "{want:?} not in\n{out}");
        }
        assert!(matches!(text(&rec, Some("nope")), Err(ReportError::NoStats)));
    }
}
