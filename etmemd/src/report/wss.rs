//! Working-set size over time (damo's `report wss`): per snapshot, the
//! bytes of the regions seen accessed at least `acc_thres` times (counting
//! only mapped bytes when the mappings are recorded), and its percentiles.

use super::plot::{self, Anchor, Canvas, DrawError};
use super::{AddressAxis, ReportError, byte_step, fmt_bytes_short, fmt_seconds, nice_step};
use crate::record::TargetRecord;
use crate::render::bytes;
use std::fmt::Write;
use std::path::Path;

/// damo skips the first 20 snapshots (the monitor's warm-up) by default.
pub const DEFAULT_SKIP: usize = 20;
/// The percentiles reported, as damo's `--range 0 101 25`.
pub const PERCENTILES: [u32; 5] = [0, 25, 50, 75, 100];
/// Default PNG size.
pub const PNG_WIDTH: u32 = 1000;
pub const PNG_HEIGHT: u32 = 540;

/// What counts as the working set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WssOptions {
    /// Fewest accesses per aggregation for a region to count (damo `acc_thres`).
    pub acc_thres: u32,
    /// Smallest region, bytes (damo `sz_thres`).
    pub sz_thres: u64,
    /// Snapshots skipped at the start; `None`: damo's 20, but never more
    /// than half of the snapshots.
    pub skip: Option<usize>,
}

impl Default for WssOptions {
    fn default() -> Self {
        WssOptions { acc_thres: 1, sz_thres: 1, skip: None }
    }
}

/// The working-set size of one target over time.
#[derive(Debug, Clone, PartialEq)]
pub struct WssSeries {
    pub label: String,
    /// (end of the aggregation in s from the record's start, bytes), every snapshot.
    pub points: Vec<(f64, u64)>,
    /// Snapshots left out of the percentiles.
    pub skipped: usize,
    /// (percentile, bytes).
    pub percentiles: Vec<(u32, u64)>,
    pub avg_bytes: u64,
}

impl WssSeries {
    pub fn percentile(&self, p: u32) -> Option<u64> {
        self.percentiles.iter().find(|(q, _)| *q == p).map(|(_, v)| *v)
    }
}

/// damo's percentile: the value at index `p * n / 100` of the sorted list.
pub fn percentile(sorted: &[u64], p: u32) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = (p as usize * sorted.len() / 100).min(sorted.len() - 1);
    Some(sorted[i])
}

/// The series of one target.
pub fn series(target: &TargetRecord, opts: &WssOptions) -> Result<WssSeries, ReportError> {
    let label = target.label();
    if target.snapshots.is_empty() {
        return Err(ReportError::NoSnapshots(label));
    }
    let mapped = (!target.mappings.is_empty()).then(|| AddressAxis::from_ranges(&target.mappings));
    let points: Vec<(f64, u64)> = target
        .snapshots
        .iter()
        .map(|s| {
            let wss = s
                .regions
                .iter()
                .filter(|r| r.nr_accesses >= opts.acc_thres && r.range.len() >= opts.sz_thres)
                .map(|r| mapped.as_ref().map_or(r.range.len(), |m| m.bytes_in(r.range)))
                .sum();
            (s.end_us as f64 / 1e6, wss)
        })
        .collect();
    let skipped = opts.skip.unwrap_or(DEFAULT_SKIP.min(points.len() / 2)).min(points.len().saturating_sub(1));
    let mut sorted: Vec<u64> = points[skipped..].iter().map(|p| p.1).collect();
    sorted.sort_unstable();
    let percentiles = PERCENTILES.iter().filter_map(|p| percentile(&sorted, *p).map(|v| (*p, v))).collect();
    let avg_bytes = if sorted.is_empty() {
        0
    } else {
        (sorted.iter().map(|v| *v as u128).sum::<u128>() / sorted.len() as u128) as u64
    };
    Ok(WssSeries { label, points, skipped, percentiles, avg_bytes })
}

/// Lines of the text chart at most.
const TEXT_ROWS: usize = 30;
const BAR_CHARS: usize = 50;

/// damo's percentile table, then the size over time as a bar chart.
pub fn text(all: &[WssSeries], opts: &WssOptions) -> String {
    let mut out = String::new();
    for s in all {
        let _ = writeln!(
            out,
            "# working set of {}: regions with >= {} access(es) per aggregation and >= {}",
            s.label,
            opts.acc_thres,
            bytes(opts.sz_thres)
        );
        let _ = writeln!(
            out,
            "# {} snapshots, the first {} skipped for the percentiles",
            s.points.len(),
            s.skipped
        );
        let _ = writeln!(out, "# <percentile> <wss>");
        for (p, v) in &s.percentiles {
            let _ = writeln!(out, "{p:>3} {:>12}", bytes(*v));
        }
        let _ = writeln!(out, "# avr: {}", bytes(s.avg_bytes));
        let max = s.points.iter().map(|p| p.1).max().unwrap_or(0).max(1);
        let _ = writeln!(out, "# <time s> <wss>  (one # per {})", bytes(max.div_ceil(BAR_CHARS as u64)));
        let step = s.points.len().div_ceil(TEXT_ROWS).max(1);
        for chunk in s.points.chunks(step) {
            let (t, _) = chunk[chunk.len() - 1];
            let v = chunk.iter().map(|p| p.1).max().unwrap_or(0);
            let n = (v as f64 / max as f64 * BAR_CHARS as f64).round() as usize;
            let _ = writeln!(out, "{t:>8.1} {:>12}  {}", bytes(v), "#".repeat(n));
        }
        out.push('\n');
    }
    out
}

fn draw_png(all: &[WssSeries], c: &Canvas<'_>, opts: &WssOptions) -> Result<(), DrawError> {
    let (x0, y0, x1, y1) = (140, 80, c.w - 40, c.h - 72);
    let t_max = all.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(0f64, f64::max).max(1e-3);
    let v_max = all.iter().flat_map(|s| s.points.iter().map(|p| p.1)).max().unwrap_or(0).max(1 << 20);
    let bstep = byte_step(v_max, 6);
    let top = v_max.div_ceil(bstep) * bstep;
    let x_of = |t: f64| x0 + ((t / t_max) * (x1 - x0) as f64).round() as i32;
    let y_of = |v: u64| y1 - ((v as f64 / top as f64) * (y1 - y0) as f64).round() as i32;

    // The warm-up the percentiles leave out, shaded.
    if let Some(t_skip) = all.iter().filter_map(|s| s.points.get(s.skipped).map(|p| p.0)).reduce(f64::max)
        && all.iter().any(|s| s.skipped > 0)
    {
        c.fill(x0, y0, x_of(t_skip), y1, (244, 244, 244))?;
    }
    // Grid and axes.
    let mut v = 0;
    while v <= top {
        let y = y_of(v);
        c.fill(x0, y, x1, y, plot::GRID_RGB)?;
        c.fill(x0 - 7, y, x0 - 1, y, plot::BLACK_RGB)?;
        c.text(x0 - 11, y, &fmt_bytes_short(v), 2, plot::TEXT_RGB, Anchor::MiddleRight)?;
        v += bstep;
    }
    let tstep = nice_step(t_max, 8.0);
    let mut t = 0.0;
    while t <= t_max + 1e-9 {
        let x = x_of(t);
        c.fill(x, y0, x, y1, plot::GRID_RGB)?;
        c.fill(x, y1 + 1, x, y1 + 7, plot::BLACK_RGB)?;
        c.text(x, y1 + 11, &fmt_seconds(t), 2, plot::TEXT_RGB, Anchor::TopCenter)?;
        t += tstep;
    }
    c.outline(x0, y0, x1, y1, plot::BLACK_RGB)?;
    c.text((x0 + x1) / 2, y1 + 38, "time (s)", 2, plot::TEXT_RGB, Anchor::TopCenter)?;
    c.text_up(16, (y0 + y1) / 2, "working set size", 2, plot::TEXT_RGB)?;

    // The series, their medians, and a legend with the percentiles.
    for (i, s) in all.iter().enumerate() {
        let color = plot::SERIES_RGB[i % plot::SERIES_RGB.len()];
        if let Some(p50) = s.percentile(50) {
            c.dashed_hline(x0 + 1, x1 - 1, y_of(p50), color, 6)?;
        }
        let pts: Vec<(i32, i32)> = s.points.iter().map(|(t, v)| (x_of(*t), y_of(*v))).collect();
        c.line(&pts, color, 2)?;
        let pct: Vec<String> =
            s.percentiles.iter().map(|(p, v)| format!("p{p} {}", fmt_bytes_short(*v))).collect();
        let ly = y0 + 8 + i as i32 * 18;
        c.fill(x0 + 10, ly + 3, x0 + 30, ly + 4, color)?;
        c.text(x0 + 36, ly, &format!("{}: {}", s.label, pct.join(", ")), 1, plot::TEXT_RGB, Anchor::TopLeft)?;
    }
    let title = match all {
        [one] => format!("Working set size: {}", one.label),
        _ => format!("Working set size of {} processes", all.len()),
    };
    c.text(x0, 12, &title, 2, plot::TEXT_RGB, Anchor::TopLeft)?;
    let skipped = all.iter().map(|s| s.skipped).max().unwrap_or(0);
    let chars = ((c.w - x0 - 8) / plot::GLYPH_PX).max(10) as usize;
    let sub = format!(
        "regions accessed >= {}x per aggregation; dashed: median; shaded: {} warm-up snapshots (not in percentiles)",
        opts.acc_thres, skipped
    );
    c.text(x0, 40, &super::heatmap::fit(&sub, chars), 1, plot::DIM_RGB, Anchor::TopLeft)?;
    Ok(())
}

/// Draw the series as a `width` x `height` PNG.
pub fn png(
    all: &[WssSeries],
    opts: &WssOptions,
    path: &Path,
    width: u32,
    height: u32,
) -> Result<(), ReportError> {
    if width < plot::MIN_SIDE || height < plot::MIN_SIDE {
        return Err(ReportError::TooSmall(width, height));
    }
    let draw = |source| ReportError::Draw { path: path.into(), source };
    let canvas = Canvas::new(path, width, height).map_err(draw)?;
    draw_png(all, &canvas, opts).map_err(draw)?;
    canvas.finish().map_err(draw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SnapshotRecord;
    use damon_core::{AddrRange, RegionSnapshot};

    fn target(hot_mib: &[u64]) -> TargetRecord {
        let snapshots = hot_mib
            .iter()
            .enumerate()
            .map(|(i, h)| SnapshotRecord {
                start_us: i as u64 * 100_000,
                end_us: (i as u64 + 1) * 100_000,
                max_nr_accesses: 20,
                regions: vec![
                    RegionSnapshot { range: AddrRange::new(0, h << 20), nr_accesses: 3, age: 1 },
                    RegionSnapshot { range: AddrRange::new(h << 20, 256 << 20), nr_accesses: 0, age: 1 },
                ],
            })
            .collect();
        TargetRecord {
            engine: "region".into(),
            task: "wl".into(),
            pid: 1,
            aggr_interval_us: 100_000,
            snapshots,
            mappings: vec![],
        }
    }

    #[test]
    fn percentiles_follow_damo() {
        let t = target(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let s = series(&t, &WssOptions { skip: Some(0), ..WssOptions::default() }).expect("series");
        assert_eq!(s.percentile(0), Some(1 << 20));
        assert_eq!(s.percentile(50), Some(6 << 20));
        assert_eq!(s.percentile(100), Some(10 << 20));
        assert_eq!(s.points[0], (0.1, 1 << 20));
        // Default skip: damo's 20, at most half.
        let s = series(&t, &WssOptions::default()).expect("series");
        assert_eq!((s.skipped, s.percentile(0)), (5, Some(6 << 20)));
    }

    #[test]
    fn thresholds_and_mappings_count() {
        let mut t = target(&[4, 4]);
        let s = series(&t, &WssOptions { acc_thres: 4, skip: Some(0), ..WssOptions::default() }).expect("s");
        assert_eq!(s.percentile(50), Some(0));
        t.mappings = vec![AddrRange::new(1 << 20, 2 << 20)];
        let s = series(&t, &WssOptions { skip: Some(0), ..WssOptions::default() }).expect("s");
        assert_eq!(s.percentile(50), Some(1 << 20));
    }

    #[test]
    fn text_and_png() {
        let t = target(&[8, 16, 16, 12]);
        let opts = WssOptions { skip: Some(0), ..WssOptions::default() };
        let s = series(&t, &opts).expect("series");
        let txt = text(std::slice::from_ref(&s), &opts);
        assert!(txt.contains(" 50     16.0 MiB"), "{txt}");
        assert!(txt.contains("# avr: 13.0 MiB"), "{txt}");
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("w.png");
        png(&[s], &opts, &p, 500, 300).expect("png");
        assert!(std::fs::metadata(&p).expect("written").len() > 1000);
    }
}
