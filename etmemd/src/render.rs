//! Human renderings of responses: the CLI's tables, and the text etmem's own
//! client expects over the line protocol.

use crate::protocol::{ProjectView, Response, TaskStats};
use std::fmt::Write;

/// `1.5 GiB`, `12.0 MiB`, `512 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

fn stats_lines(s: &TaskStats, out: &mut String) {
    let mut fields: Vec<String> = Vec::new();
    let mut push = |label: &str, v: Option<String>| {
        if let Some(v) = v {
            fields.push(format!("{label} {v}"));
        }
    };
    push("probe", s.probe.clone());
    push("regions", s.nr_regions.map(|v| v.to_string()));
    push("hot", s.hot_bytes.map(bytes));
    push("cold", s.cold_bytes.map(bytes));
    push("thp-eligible", s.thp_eligible_bytes.map(bytes));
    push("rss", s.rss_bytes.map(bytes));
    push("swap", s.swap_bytes.map(bytes));
    push("anon-huge", s.anon_huge_bytes.map(bytes));
    push("paged-out", s.paged_out_bytes.map(bytes));
    push("prefetched", s.prefetched_bytes.map(bytes));
    push("refaults", s.refaults.map(|v| v.to_string()));
    push("collapses", s.collapses.map(|v| v.to_string()));
    push("demotions", s.demotions.map(|v| v.to_string()));
    push("quota-used", s.quota_used_permil.map(|v| format!("{:.1}%", v as f64 / 10.0)));
    push("quota-exceeded", s.quota_exceeded.map(|v| v.to_string()));
    push("aggregations", s.aggregations.map(|v| v.to_string()));
    push("last-aggregation", s.last_aggregation_age_s.map(|v| format!("{v:.1}s ago")));
    push("monitor-cpu", s.monitor_cpu_s.map(|v| format!("{v:.3}s")));
    push("action-cpu", s.action_cpu_s.map(|v| format!("{v:.3}s")));
    for (k, v) in &s.extra {
        push(k, Some(v.clone()));
    }
    // Wrap the fields into lines of a readable width.
    let mut line = String::new();
    for f in fields {
        if !line.is_empty() && line.len() + f.len() + 2 > 96 {
            let _ = writeln!(out, "      {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push_str("  ");
        }
        line.push_str(&f);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "      {line}");
    }
    if let Some(r) = &s.idle_reason {
        let _ = writeln!(out, "      idle: {r}");
    }
    if let Some(e) = &s.last_error {
        let _ = writeln!(out, "      last error: {e}");
    }
}

/// The CLI's `project show`.
pub fn projects(projects: &[ProjectView]) -> String {
    if projects.is_empty() {
        return "no project exists\n".into();
    }
    let mut out = String::new();
    for p in projects {
        let state = if p.started { "started" } else { "stopped" };
        let _ = writeln!(out, "project {}  {state}  scan={}", p.name, p.scan);
        for e in &p.engines {
            let _ = writeln!(out, "  engine {} ({})", e.name, e.kind);
            if e.tasks.is_empty() {
                let _ = writeln!(out, "    no tasks");
            }
            for t in &e.tasks {
                let state = if t.started { "running" } else { "idle" };
                let pids = t
                    .stats
                    .as_ref()
                    .filter(|s| !s.pids.is_empty())
                    .map(|s| {
                        let v: Vec<String> = s.pids.iter().map(u32::to_string).collect();
                        format!("  pids {}", v.join(","))
                    })
                    .unwrap_or_default();
                let _ = writeln!(out, "    task {}  {}={}  {state}{pids}", t.name, t.target_type, t.target);
                if let Some(s) = &t.stats {
                    stats_lines(s, &mut out);
                }
            }
        }
        for b in &p.backends {
            let _ = writeln!(
                out,
                "  backend {} {}  priority {}  used {} of {}",
                b.kind,
                b.device,
                b.priority,
                bytes(b.used_bytes),
                bytes(b.size_bytes)
            );
        }
        for n in &p.notes {
            let _ = writeln!(out, "  note: {n}");
        }
    }
    out
}

/// etmem's `project show` table (`etmemd_project.c`).
fn etmem_projects(projects: &[ProjectView]) -> String {
    if projects.is_empty() {
        return "no project exists\n".into();
    }
    let mut out = String::new();
    for p in projects {
        let _ = writeln!(out, "project: {}\n", p.name);
        let _ = writeln!(
            out,
            "{:<8} {:<8} {:<16} {:<16} {:<16} {:<8}",
            "number", "type", "value", "name", "engine", "started"
        );
        let mut n = 0;
        for e in &p.engines {
            for t in &e.tasks {
                n += 1;
                let _ = writeln!(
                    out,
                    "{:<8} {:<8} {:<16} {:<16} {:<16} {:<8}",
                    n, t.target_type, t.target, t.name, e.name, t.started
                );
            }
        }
    }
    out
}

/// The text and success flag for a reply over etmem's line protocol.
pub fn etmem_reply(reply: &Response) -> (String, bool) {
    match reply {
        Response::Hello { version, .. } => (format!("etmemd {version}\n"), true),
        Response::Done { .. } => (String::new(), true),
        Response::Projects { projects } => (etmem_projects(projects), true),
        Response::EngineOutput { text } => (text.clone(), true),
        // etmem's line protocol has no recording commands.
        Response::RecordStarted { .. } | Response::RecordBatch { .. } => (String::new(), true),
        Response::Error(e) => (format!("{}\n{}\n", e.kind.etmem_message(), e.message), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_read_well() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
    }
}
