//! The access heatmap: time on one axis, the target's address space (gaps
//! between mappings squeezed out) on the other, each cell the time- and
//! space-weighted average access frequency of the regions over it (damo's
//! `report heatmap` pixel heat), as text digits 0-9 or as a PNG.

use super::plot::{self, Anchor, Canvas, DrawError, Rgb};
use super::{AddressAxis, ReportError, byte_step, fmt_bytes_short, fmt_seconds, nice_step};
use crate::record::TargetRecord;
use std::fmt::Write;
use std::path::Path;

/// damo's terminal resolution: 80 address columns, 40 time rows.
pub const TEXT_COLS: usize = 80;
pub const TEXT_ROWS: usize = 40;
/// Default PNG size.
pub const PNG_WIDTH: u32 = 1200;
pub const PNG_HEIGHT: u32 = 720;

/// A grid of access frequencies.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    /// `task wl pid 42 (engine region)`.
    pub label: String,
    pub time_cells: usize,
    pub addr_cells: usize,
    /// Time-major: `cells[t * addr_cells + a]`, `a = 0` the lowest address;
    /// the access frequency (0.0 ..= 1.0 of the samples), `None` where no
    /// snapshot covers the cell.
    pub cells: Vec<Option<f64>>,
    pub t0_us: u64,
    pub t1_us: u64,
    pub axis: AddressAxis,
    /// The highest cell value.
    pub max: f64,
    pub nr_snapshots: usize,
    pub aggr_interval_us: u64,
}

impl Heatmap {
    pub fn cell(&self, t: usize, a: usize) -> Option<f64> {
        self.cells.get(t * self.addr_cells + a).copied().flatten()
    }
}

/// Build the grid of one target at `time_cells` x `addr_cells`.
pub fn build(target: &TargetRecord, time_cells: usize, addr_cells: usize) -> Result<Heatmap, ReportError> {
    let label = format!("{} (engine {})", target.label(), target.engine);
    if target.snapshots.is_empty() {
        return Err(ReportError::NoSnapshots(label));
    }
    let (time_cells, addr_cells) = (time_cells.max(1), addr_cells.max(1));
    let axis = AddressAxis::of(target);
    let t0 = target.snapshots.iter().map(|s| s.start_us).min().unwrap_or(0);
    let t1 = target.snapshots.iter().map(|s| s.end_us).max().unwrap_or(0).max(t0 + 1);
    let tcell = (t1 - t0) as f64 / time_cells as f64;
    let bcell = (axis.total_bytes.max(1)) as f64 / addr_cells as f64;
    let mut sum = vec![0f64; time_cells * addr_cells];
    let mut cover = vec![0f64; time_cells * addr_cells];
    let mut rows: Vec<(usize, f64, f64)> = Vec::new();
    for s in &target.snapshots {
        // This snapshot's contribution per address cell: (row, bytes, frequency).
        rows.clear();
        for r in &s.regions {
            let f = s.frequency(r);
            for (a, b) in axis.pieces(r.range) {
                let (a, b) = (a as f64, b as f64);
                let r0 = (a / bcell).floor() as usize;
                let r1 = ((b / bcell).ceil() as usize).min(addr_cells);
                for row in r0..r1 {
                    let lo = a.max(row as f64 * bcell);
                    let hi = b.min((row + 1) as f64 * bcell);
                    if hi > lo {
                        rows.push((row, hi - lo, f));
                    }
                }
            }
        }
        let (ts, te) = ((s.start_us - t0) as f64, (s.end_us.max(s.start_us) - t0) as f64);
        let c0 = (ts / tcell).floor() as usize;
        let c1 = ((te / tcell).ceil() as usize).min(time_cells);
        for c in c0..c1 {
            let ot = te.min((c + 1) as f64 * tcell) - ts.max(c as f64 * tcell);
            if ot <= 0.0 {
                continue;
            }
            for &(row, bytes, f) in &rows {
                let w = ot * bytes;
                sum[c * addr_cells + row] += f * w;
                cover[c * addr_cells + row] += w;
            }
        }
    }
    let cells: Vec<Option<f64>> =
        sum.iter().zip(&cover).map(|(s, c)| (*c > 0.0).then(|| (s / c).clamp(0.0, 1.0))).collect();
    let max = cells.iter().flatten().fold(0f64, |m, v| m.max(*v));
    Ok(Heatmap {
        label,
        time_cells,
        addr_cells,
        cells,
        t0_us: t0,
        t1_us: t1,
        axis,
        max,
        nr_snapshots: target.snapshots.len(),
        aggr_interval_us: target.aggr_interval_us,
    })
}

fn digit(v: f64, max: f64) -> char {
    if max <= 0.0 {
        return '0';
    }
    let d = (v / max * 9.0 + 0.5).floor().clamp(0.0, 9.0) as u8;
    (b'0' + d) as char
}

fn describe_axis(axis: &AddressAxis) -> String {
    let n = axis.segments.len();
    match (axis.segments.first(), axis.segments.last()) {
        (Some((first, _)), Some((last, _))) => format!(
            "{:#x}-{:#x}, {} in {n} range{}{}",
            first.start.0,
            last.end.0,
            fmt_bytes_short(axis.total_bytes),
            if n == 1 { "" } else { "s" },
            if n > 1 { ", gaps squeezed out" } else { "" }
        ),
        _ => "empty".into(),
    }
}

/// damo's terminal heatmap: one line per time step (top = start), one digit
/// per address step (left = lowest address), 0-9 relative to the hottest cell.
pub fn text(h: &Heatmap) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# heatmap of {}, {} snapshots", h.label, h.nr_snapshots);
    for t in 0..h.time_cells {
        let line: String = (0..h.addr_cells).map(|a| h.cell(t, a).map_or(' ', |v| digit(v, h.max))).collect();
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = writeln!(
        out,
        "# access_frequency: 0123456789 (0: not seen accessed, 9: {:.1} % of the samples, the hottest cell)",
        h.max * 100.0
    );
    let _ = writeln!(out, "# x-axis: space ({})", describe_axis(&h.axis));
    let _ = writeln!(out, "# y-axis: time (0-{:.1} s)", (h.t1_us - h.t0_us) as f64 / 1e6);
    let _ = writeln!(
        out,
        "# resolution: {}x{} ({} and {:.2} s for each character)",
        h.addr_cells,
        h.time_cells,
        fmt_bytes_short(h.axis.total_bytes / h.addr_cells as u64),
        (h.t1_us - h.t0_us) as f64 / 1e6 / h.time_cells as f64
    );
    out
}

/// Where the plot area of a heatmap PNG lies (pixel bounds, inclusive):
/// time runs left to right, addresses bottom (lowest) to top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    pub x0: i32,
    pub y0: i32,
    pub x1: i32,
    pub y1: i32,
}

const LEFT_PX: i32 = 150;
const RIGHT_PX: i32 = 150;
const TOP_PX: i32 = 78;
const BOTTOM_PX: i32 = 70;

impl Layout {
    pub fn of(width: u32, height: u32) -> Result<Layout, ReportError> {
        if width < plot::MIN_SIDE || height < plot::MIN_SIDE {
            return Err(ReportError::TooSmall(width, height));
        }
        let (w, h) = (width as i32, height as i32);
        Ok(Layout { width, height, x0: LEFT_PX, y0: TOP_PX, x1: w - RIGHT_PX - 1, y1: h - BOTTOM_PX - 1 })
    }

    /// Time cells (one per pixel column).
    pub fn time_cells(&self) -> usize {
        (self.x1 - self.x0 + 1) as usize
    }

    /// Address cells (one per pixel row).
    pub fn addr_cells(&self) -> usize {
        (self.y1 - self.y0 + 1) as usize
    }

    /// Pixel row of address cell `a` (0 = lowest address, at the bottom).
    pub fn y_of_cell(&self, a: usize) -> i32 {
        self.y1 - a as i32
    }

    /// Pixel row of an axis offset.
    pub fn y_of_offset(&self, offset: u64, total_bytes: u64) -> i32 {
        let cells = self.addr_cells() as f64;
        let a = (offset as f64 / total_bytes.max(1) as f64 * cells).floor().min(cells - 1.0);
        self.y_of_cell(a as usize)
    }

    /// Pixel column of a time (µs from the record's start).
    pub fn x_of_time(&self, t_us: f64, span_us: f64) -> i32 {
        let cells = self.time_cells() as f64;
        self.x0 + (t_us / span_us.max(1.0) * cells).floor().clamp(0.0, cells - 1.0) as i32
    }
}

/// Cut `s` to at most `chars` characters, ending in `...` when cut.
pub fn fit(s: &str, chars: usize) -> String {
    if s.chars().count() <= chars {
        return s.to_string();
    }
    let mut out: String = s.chars().take(chars.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// The ranges worth naming on the picture: the largest ones (at least 2 %
/// of the axis), in address order, at most `max`.
fn main_ranges(axis: &AddressAxis, max: usize) -> Vec<(damon_core::AddrRange, u64)> {
    let mut big: Vec<(damon_core::AddrRange, u64)> =
        axis.segments.iter().copied().filter(|(r, _)| r.len() * 50 >= axis.total_bytes).collect();
    big.sort_by_key(|(r, _)| std::cmp::Reverse(r.len()));
    big.truncate(max);
    big.sort_by_key(|(r, _)| r.start);
    big
}

fn draw_png(h: &Heatmap, l: &Layout, c: &Canvas<'_>) -> Result<(), DrawError> {
    // The cells, as one block of pixels (time left to right, low addresses at the bottom).
    let (tw, ah) = (h.time_cells, h.addr_cells);
    let mut rgb = vec![0u8; tw * ah * 3];
    for t in 0..tw {
        for a in 0..ah {
            let color: Rgb = match h.cell(t, a) {
                Some(v) if h.max > 0.0 => plot::heat_color(v / h.max),
                Some(_) => plot::heat_color(0.0),
                None => plot::NO_DATA_RGB,
            };
            let i = ((ah - 1 - a) * tw + t) * 3;
            rgb[i..i + 3].copy_from_slice(&[color.0, color.1, color.2]);
        }
    }
    c.blit(l.x0, l.y0, tw as u32, ah as u32, rgb)?;
    // Where one mapping ends and the next (squeezed against it) begins:
    // only for ranges big enough to see.
    let mut last_y = i32::MAX;
    for (r, off) in h.axis.segments.iter().skip(1) {
        let y = l.y_of_offset(*off, h.axis.total_bytes);
        if r.len() * 100 >= h.axis.total_bytes && (last_y - y).abs() > 3 {
            c.dashed_hline(l.x0, l.x1, y, (90, 200, 255), 4)?;
            last_y = y;
        }
    }
    c.outline(l.x0 - 1, l.y0 - 1, l.x1 + 1, l.y1 + 1, plot::BLACK_RGB)?;

    // Time axis.
    let span_s = (h.t1_us - h.t0_us) as f64 / 1e6;
    let step = nice_step(span_s, 8.0);
    let mut s = 0.0;
    while s <= span_s + 1e-9 {
        let x = l.x_of_time(s * 1e6, span_s * 1e6);
        c.fill(x, l.y1 + 2, x, l.y1 + 8, plot::BLACK_RGB)?;
        c.text(x, l.y1 + 12, &fmt_seconds(s), 2, plot::TEXT_RGB, Anchor::TopCenter)?;
        s += step;
    }
    c.text((l.x0 + l.x1) / 2, l.y1 + 40, "time (s)", 2, plot::TEXT_RGB, Anchor::TopCenter)?;

    // Address axis: offsets into the squeezed space.
    let total = h.axis.total_bytes;
    let bstep = byte_step(total, 7);
    let mut off = 0u64;
    while off <= total {
        let y = l.y_of_offset(off.min(total.saturating_sub(1)), total);
        c.fill(l.x0 - 8, y, l.x0 - 2, y, plot::BLACK_RGB)?;
        c.text(l.x0 - 12, y, &fmt_bytes_short(off), 2, plot::TEXT_RGB, Anchor::MiddleRight)?;
        off += bstep;
    }
    let axis_title = if h.axis.segments.len() > 1 { "address (gaps squeezed out)" } else { "address" };
    c.text_up(16, (l.y0 + l.y1) / 2, axis_title, 2, plot::TEXT_RGB)?;

    // Colour bar: 0 at the bottom, the hottest cell at the top.
    let (bx0, bx1) = (l.x1 + 24, l.x1 + 46);
    let bh = (l.y1 - l.y0).max(1);
    for y in l.y0..=l.y1 {
        let v = (l.y1 - y) as f64 / bh as f64;
        c.fill(bx0, y, bx1, y, plot::heat_color(v))?;
    }
    c.outline(bx0 - 1, l.y0 - 1, bx1 + 1, l.y1 + 1, plot::BLACK_RGB)?;
    for i in 0..=4 {
        let v = i as f64 / 4.0;
        let y = l.y1 - (v * bh as f64).round() as i32;
        c.fill(bx1 + 2, y, bx1 + 6, y, plot::BLACK_RGB)?;
        c.text(bx1 + 9, y, &format!("{:.0}%", v * h.max * 100.0), 2, plot::TEXT_RGB, Anchor::MiddleLeft)?;
    }
    c.text_up(l.x1 + 134, (l.y0 + l.y1) / 2, "samples accessed", 2, plot::TEXT_RGB)?;

    // Title and what the picture covers, cut to the image's width.
    let chars = ((c.w - l.x0 - 8) / plot::GLYPH_PX).max(10) as usize;
    c.text(
        l.x0,
        10,
        &fit(&format!("Access heatmap: {}", h.label), chars / 2),
        2,
        plot::TEXT_RGB,
        Anchor::TopLeft,
    )?;
    let n = h.axis.segments.len();
    let sub = format!(
        "{} in {n} mapped range{}{}, {:.1} s, {} snapshots, aggregation {} ms; grey: no snapshot",
        fmt_bytes_short(h.axis.total_bytes),
        if n == 1 { "" } else { "s" },
        if n > 1 { " (gaps between them squeezed out)" } else { "" },
        span_s,
        h.nr_snapshots,
        h.aggr_interval_us / 1000
    );
    c.text(l.x0, 36, &fit(&sub, chars), 1, plot::DIM_RGB, Anchor::TopLeft)?;
    let named: Vec<String> = main_ranges(&h.axis, 4)
        .iter()
        .map(|(r, off)| {
            format!("{} at {:#x} (from {} up)", fmt_bytes_short(r.len()), r.start.0, fmt_bytes_short(*off))
        })
        .collect();
    if !named.is_empty() {
        c.text(
            l.x0,
            52,
            &fit(&format!("main ranges: {}", named.join("; ")), chars),
            1,
            plot::DIM_RGB,
            Anchor::TopLeft,
        )?;
    }
    Ok(())
}

/// Draw the heatmap of `target` as a `width` x `height` PNG; returns its layout.
pub fn png(target: &TargetRecord, path: &Path, width: u32, height: u32) -> Result<Layout, ReportError> {
    let l = Layout::of(width, height)?;
    let h = build(target, l.time_cells(), l.addr_cells())?;
    let draw = |source| ReportError::Draw { path: path.into(), source };
    let canvas = Canvas::new(path, width, height).map_err(draw)?;
    draw_png(&h, &l, &canvas).map_err(draw)?;
    canvas.finish().map_err(draw)?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SnapshotRecord;
    use damon_core::{AddrRange, RegionSnapshot};

    fn target() -> TargetRecord {
        // Two mappings far apart; the upper half of the first is hot.
        let snap = |i: u64| SnapshotRecord {
            start_us: i * 100_000,
            end_us: (i + 1) * 100_000,
            max_nr_accesses: 20,
            regions: vec![
                RegionSnapshot { range: AddrRange::new(0x10_0000, 0x18_0000), nr_accesses: 0, age: 5 },
                RegionSnapshot { range: AddrRange::new(0x18_0000, 0x20_0000), nr_accesses: 20, age: 5 },
                RegionSnapshot { range: AddrRange::new(0x20_0000, 0x9000_0000), nr_accesses: 0, age: 5 },
            ],
        };
        TargetRecord {
            engine: "region".into(),
            task: "wl".into(),
            pid: 1,
            aggr_interval_us: 100_000,
            snapshots: (0..10).map(snap).collect(),
            mappings: vec![AddrRange::new(0x10_0000, 0x20_0000), AddrRange::new(0x8000_0000, 0x8010_0000)],
        }
    }

    #[test]
    fn grid_puts_heat_where_the_hot_region_is_and_squeezes_gaps() {
        let h = build(&target(), 10, 3).expect("build");
        // 1 MiB + 1 MiB on the axis: cells of 2/3 MiB.
        assert_eq!(h.axis.total_bytes, 2 << 20);
        let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < 1e-3);
        assert!(near(h.cell(0, 0), 0.25), "{:?}", h.cell(0, 0));
        assert!(near(h.cell(5, 1), 0.5), "cell straddling hot and the next mapping: {:?}", h.cell(5, 1));
        assert_eq!(h.cell(9, 2), Some(0.0));
        assert!((h.max - 0.5).abs() < 1e-3);
    }

    #[test]
    fn text_heatmap_has_damos_shape() {
        let h = build(&target(), 4, 8).expect("build");
        let t = text(&h);
        let rows: Vec<&str> = t.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0], "00990000");
        assert!(t.contains("# access_frequency: 0123456789"));
        assert!(t.contains("gaps squeezed out"));
    }

    #[test]
    fn png_is_written_with_the_hot_band_bright() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("h.png");
        let l = png(&target(), &path, 400, 300).expect("png");
        assert!(std::fs::metadata(&path).expect("written").len() > 1000);
        assert!(l.time_cells() > 50 && l.addr_cells() > 50);
        assert!(matches!(png(&target(), &path, 100, 100), Err(ReportError::TooSmall(..))));
    }
}
