//! damo's raw report form (`damo report access --raw_form`, the old
//! `damo report raw`): per target a `base_time_absolute:` line, then per
//! snapshot its times, `target_id:`, `nr_regions:` and one line per region,
//! `"%012x-%012x (%12s) %11d %5d"` (start-end (size) nr_accesses age).

use crate::record::Recording;
use damon_core::format_size;
use std::fmt::Write;

/// damo's readable time: `0 ns`, `400 ms`, `1 s 200 ms`, `2 m 3.400 s`.
pub fn fmt_time_ns(ns: u64, raw: bool) -> String {
    if raw {
        return ns.to_string();
    }
    let ms = ns / 1_000_000;
    if ns == 0 {
        "0 ns".into()
    } else if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.3} us", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.3} ms", ns as f64 / 1e6)
    } else if ms < 60_000 {
        format!("{:.3} s", ns as f64 / 1e9)
    } else {
        format!("{} m {:.3} s", ms / 60_000, (ns % 60_000_000_000) as f64 / 1e9)
    }
}

/// The raw form of every target (or those `select` keeps).
pub fn text(rec: &Recording, task: Option<&str>, pid: Option<u32>, raw_numbers: bool) -> String {
    let mut out = String::new();
    if let Some(h) = &rec.header {
        let _ = writeln!(out, "# etmem record of project {} on {} ({})", h.project, h.host, h.kernel);
    }
    for t in rec.select(task, pid) {
        let Some(first) = t.snapshots.first() else { continue };
        let base = first.start_us * 1000;
        let _ = writeln!(out, "# {} (engine {})", t.label(), t.engine);
        let _ = writeln!(out, "base_time_absolute: {}\n", fmt_time_ns(base, raw_numbers));
        for s in &t.snapshots {
            let (start, end) = (s.start_us * 1000, s.end_us * 1000);
            let _ = writeln!(out, "monitoring_start:    {:>16}", fmt_time_ns(start - base, raw_numbers));
            let _ = writeln!(out, "monitoring_end:      {:>16}", fmt_time_ns(end - base, raw_numbers));
            let _ = writeln!(out, "monitoring_duration: {:>16}", fmt_time_ns(end - start, raw_numbers));
            let _ = writeln!(out, "target_id: {}", t.pid);
            let _ = writeln!(out, "nr_regions: {}", s.regions.len());
            let _ = writeln!(
                out,
                "# {:>10} {:>12}  {:>12}  {:>11} {:>5}",
                "start_addr", "end_addr", "length", "nr_accesses", "age"
            );
            for r in &s.regions {
                let size = if raw_numbers { r.range.len().to_string() } else { format_size(r.range.len()) };
                let _ = writeln!(
                    out,
                    "{:012x}-{:012x} ({:>12}) {:>11} {:>5}",
                    r.range.start.0, r.range.end.0, size, r.nr_accesses, r.age
                );
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{SnapshotRecord, TargetRecord};
    use damon_core::{AddrRange, RegionSnapshot};

    #[test]
    fn raw_form_matches_damos_lines() {
        let t = TargetRecord {
            engine: "region".into(),
            task: "wl".into(),
            pid: 42,
            aggr_interval_us: 100_000,
            snapshots: vec![SnapshotRecord {
                start_us: 1_000_000,
                end_us: 1_100_000,
                max_nr_accesses: 20,
                regions: vec![RegionSnapshot {
                    range: AddrRange::new(0x563e_baa0_0000, 0x563e_bc99_e000),
                    nr_accesses: 1,
                    age: 7,
                }],
            }],
            mappings: vec![],
        };
        let rec = Recording { targets: vec![t], ..Recording::default() };
        let out = text(&rec, None, None, false);
        assert!(out.contains("563ebaa00000-563ebc99e000 (  31.617 MiB)           1     7"), "{out}");
        assert!(out.contains("monitoring_duration:       100.000 ms"), "{out}");
        assert!(out.contains("target_id: 42\nnr_regions: 1\n"), "{out}");
        let raw = text(&rec, None, Some(42), true);
        assert!(raw.contains("(    33153024)"), "{raw}");
        assert!(text(&rec, Some("other"), None, false).is_empty());
    }

    #[test]
    fn times_read_like_damo() {
        assert_eq!(fmt_time_ns(0, false), "0 ns");
        assert_eq!(fmt_time_ns(400_000_000, false), "400.000 ms");
        assert_eq!(fmt_time_ns(1_200_000_000, false), "1.200 s");
        assert_eq!(fmt_time_ns(123_400_000_000, false), "2 m 3.400 s");
        assert_eq!(fmt_time_ns(5, true), "5");
    }
}
