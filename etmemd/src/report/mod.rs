//! `etmem report`: what a record shows. `raw` in damo's line form,
//! `heatmap` (text digits like damo, or a PNG), `wss` (working-set size
//! over time and its percentiles, text or PNG), `stats` (what was done).
//!
//! Shared here: the squeezed address axis (gaps between mappings removed),
//! axis ticks with units, and number formatting.

pub mod heatmap;
pub mod plot;
pub mod raw;
pub mod stats;
pub mod wss;

use crate::record::TargetRecord;
use damon_core::AddrRange;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("the record has no target matching {0}")]
    NoTarget(String),
    #[error("target {0} has no snapshot")]
    NoSnapshots(String),
    #[error("the record holds no stats lines (record with this etmem to get them)")]
    NoStats,
    #[error("cannot draw {path}")]
    Draw {
        path: std::path::PathBuf,
        #[source]
        source: plot::DrawError,
    },
    #[error("image size {0}x{1} is too small (at least {min}x{min})", min = plot::MIN_SIDE)]
    TooSmall(u32, u32),
}

/// The address space of a target with the gaps between its mappings
/// squeezed out: the ranges that some snapshot covers (and, when the
/// mappings are known, that are mapped), laid end to end.
#[derive(Debug, Clone, PartialEq)]
pub struct AddressAxis {
    /// `(range, offset of range.start on the axis)`, sorted.
    pub segments: Vec<(AddrRange, u64)>,
    pub total_bytes: u64,
}

/// Sorted disjoint union of ranges.
fn union(mut ranges: Vec<AddrRange>) -> Vec<AddrRange> {
    ranges.retain(|r| !r.is_empty());
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<AddrRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Intersection of two sorted disjoint lists.
fn intersect(a: &[AddrRange], b: &[AddrRange]) -> Vec<AddrRange> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        if let Some(x) = a[i].intersect(&b[j]) {
            out.push(x);
        }
        if a[i].end <= b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

impl AddressAxis {
    /// The axis of a target: covered by its snapshots, within its mappings.
    pub fn of(target: &TargetRecord) -> AddressAxis {
        let covered =
            union(target.snapshots.iter().flat_map(|s| s.regions.iter().map(|r| r.range)).collect());
        let kept = if target.mappings.is_empty() {
            covered
        } else {
            let inside = intersect(&covered, &target.mappings);
            if inside.is_empty() { covered } else { inside }
        };
        AddressAxis::from_ranges(&kept)
    }

    /// An axis over sorted, disjoint ranges.
    pub fn from_ranges(ranges: &[AddrRange]) -> AddressAxis {
        let mut segments = Vec::with_capacity(ranges.len());
        let mut off = 0;
        for r in ranges {
            segments.push((*r, off));
            off += r.len();
        }
        AddressAxis { segments, total_bytes: off }
    }

    /// Axis offset of an address, if it is on the axis.
    pub fn offset_of(&self, addr: u64) -> Option<u64> {
        let i = self.segments.partition_point(|(r, _)| r.end.0 <= addr);
        let (r, off) = self.segments.get(i)?;
        (r.start.0 <= addr).then(|| off + (addr - r.start.0))
    }

    /// The parts of `range` on the axis, as `[start, end)` axis offsets.
    pub fn pieces(&self, range: AddrRange) -> impl Iterator<Item = (u64, u64)> + '_ {
        let first = self.segments.partition_point(|(r, _)| r.end <= range.start);
        self.segments[first..].iter().take_while(move |(r, _)| r.start < range.end).filter_map(
            move |(r, off)| {
                r.intersect(&range).map(|x| (off + (x.start.0 - r.start.0), off + (x.end.0 - r.start.0)))
            },
        )
    }

    /// Bytes of `range` that are on the axis.
    pub fn bytes_in(&self, range: AddrRange) -> u64 {
        self.pieces(range).map(|(a, b)| b - a).sum()
    }
}

/// A step of 1, 2 or 5 times a power of ten giving about `want` ticks over `span`.
pub fn nice_step(span: f64, want: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / want.max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let step = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    step * mag
}

/// A power-of-two byte step giving about `want` ticks over `span_bytes` (at least 4 KiB).
pub fn byte_step(span_bytes: u64, want: u64) -> u64 {
    let raw = (span_bytes / want.max(1)).max(4096);
    let mut step = 4096u64;
    while step < raw {
        step *= 2;
    }
    // Prefer steps that read well: 1, 2, 4, 8, 16, 32, 64, 128, 256, 512 of a unit.
    step
}

/// `512 KiB`, `64 MiB`, `1.5 GiB`: short, for axis labels.
pub fn fmt_bytes_short(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if n >= unit {
            let v = n as f64 / unit as f64;
            return if (v - v.round()).abs() < 0.05 {
                format!("{} {name}", v.round() as u64)
            } else {
                format!("{v:.1} {name}")
            };
        }
    }
    format!("{n} B")
}

/// Seconds for an axis label: `0`, `2.5`, `120`.
pub fn fmt_seconds(s: f64) -> String {
    if (s - s.round()).abs() < 1e-6 { format!("{}", s.round() as i64) } else { format!("{s:.1}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u64, b: u64) -> AddrRange {
        AddrRange::new(a, b)
    }

    #[test]
    fn axis_squeezes_gaps() {
        let axis = AddressAxis::from_ranges(&[r(0x1000, 0x3000), r(0x10000, 0x11000)]);
        assert_eq!(axis.total_bytes, 0x3000);
        assert_eq!(axis.offset_of(0x1000), Some(0));
        assert_eq!(axis.offset_of(0x2fff), Some(0x1fff));
        assert_eq!(axis.offset_of(0x5000), None);
        assert_eq!(axis.offset_of(0x10800), Some(0x2800));
        assert_eq!(
            axis.pieces(r(0x2000, 0x10800)).collect::<Vec<_>>(),
            vec![(0x1000, 0x2000), (0x2000, 0x2800)]
        );
        assert_eq!(axis.bytes_in(r(0, 0x20000)), 0x3000);
    }

    #[test]
    fn union_and_intersection() {
        assert_eq!(union(vec![r(5, 9), r(1, 3), r(2, 6)]), vec![r(1, 9)]);
        assert_eq!(intersect(&[r(0, 10), r(20, 30)], &[r(5, 25)]), vec![r(5, 10), r(20, 25)]);
    }

    #[test]
    fn steps_and_labels() {
        assert_eq!(nice_step(60.0, 6.0), 10.0);
        assert_eq!(nice_step(7.0, 6.0), 1.0);
        assert_eq!(nice_step(13.0, 6.0), 2.0);
        assert_eq!(byte_step(256 << 20, 8), 32 << 20);
        assert_eq!(fmt_bytes_short(64 << 20), "64 MiB");
        assert_eq!(fmt_bytes_short(3 << 29), "1.5 GiB");
        assert_eq!(fmt_bytes_short(100), "100 B");
        assert_eq!(fmt_seconds(2.5), "2.5");
        assert_eq!(fmt_seconds(10.0), "10");
    }
}
