//! Sets of address ranges: normalise, subtract, intersect, align to huge pages.
//! The planner uses them to keep decisions disjoint and inside the snapshot.

use damon_core::{Addr, AddrRange};

/// Size of a transparent huge page on x86-64 (PMD mapping): the unit of
/// THP eligibility and of `MADV_COLLAPSE`.
pub const HPAGE_SIZE: u64 = 2 << 20;

/// Sorts, drops empty ranges and merges overlapping or touching ones, so the
/// result is strictly increasing with gaps between ranges.
pub(crate) fn normalize(mut ranges: Vec<AddrRange>) -> Vec<AddrRange> {
    ranges.retain(|r| !r.is_empty());
    ranges.sort_unstable_by_key(|r| r.start);
    let mut out: Vec<AddrRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// The members of a normalised `set` that may overlap `r`.
fn candidates<'a>(r: &AddrRange, set: &'a [AddrRange]) -> &'a [AddrRange] {
    let first = set.partition_point(|s| s.end <= r.start);
    let last = set.partition_point(|s| s.start < r.end);
    &set[first..last.max(first)]
}

/// `r` minus every range of the normalised `set`, in address order.
pub(crate) fn subtract(r: AddrRange, set: &[AddrRange]) -> Vec<AddrRange> {
    let mut out = Vec::new();
    let mut cur = r.start;
    for s in candidates(&r, set) {
        if s.start > cur {
            out.push(AddrRange { start: cur, end: s.start.min(r.end) });
        }
        cur = cur.max(s.end);
        if cur >= r.end {
            break;
        }
    }
    if cur < r.end {
        out.push(AddrRange { start: cur, end: r.end });
    }
    out
}

/// The parts of `r` covered by the normalised `set`, in address order.
pub(crate) fn intersect(r: AddrRange, set: &[AddrRange]) -> Vec<AddrRange> {
    candidates(&r, set).iter().filter_map(|s| s.intersect(&r)).collect()
}

/// `r` shrunk to the whole huge pages it covers, if any.
pub(crate) fn huge_inward(r: AddrRange) -> Option<AddrRange> {
    let start = r.start.align_up(HPAGE_SIZE);
    let end = r.end.align_down(HPAGE_SIZE);
    (start < end).then_some(AddrRange { start, end })
}

/// `set` grown to whole huge pages, so subtracting it from an aligned range
/// removes every huge page that any member touches.
pub(crate) fn huge_outward(set: &[AddrRange]) -> Vec<AddrRange> {
    normalize(
        set.iter()
            .map(|r| AddrRange { start: r.start.align_down(HPAGE_SIZE), end: r.end.align_up(HPAGE_SIZE) })
            .collect(),
    )
}

/// `a + len`, saturating at the top of the address space.
pub(crate) fn addr_plus(a: Addr, len: u64) -> Addr {
    Addr(a.0.saturating_add(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: u64, e: u64) -> AddrRange {
        AddrRange::new(s, e)
    }

    #[test]
    fn normalize_merges_touching_and_overlapping() {
        let got = normalize(vec![r(30, 40), r(0, 10), r(10, 20), r(35, 50), r(60, 60)]);
        assert_eq!(got, vec![r(0, 20), r(30, 50)]);
    }

    #[test]
    fn subtract_cuts_holes() {
        let set = normalize(vec![r(10, 20), r(30, 40), r(90, 200)]);
        assert_eq!(subtract(r(0, 100), &set), vec![r(0, 10), r(20, 30), r(40, 90)]);
        assert_eq!(subtract(r(12, 18), &set), vec![]);
        assert_eq!(subtract(r(20, 30), &set), vec![r(20, 30)]);
    }

    #[test]
    fn intersect_keeps_covered_parts() {
        let set = normalize(vec![r(10, 20), r(30, 40)]);
        assert_eq!(intersect(r(15, 35), &set), vec![r(15, 20), r(30, 35)]);
        assert_eq!(intersect(r(20, 30), &set), vec![]);
    }

    #[test]
    fn huge_alignment_inward_and_outward() {
        let h = HPAGE_SIZE;
        assert_eq!(huge_inward(r(1, 3 * h - 1)), Some(r(h, 2 * h)));
        assert_eq!(huge_inward(r(1, 2 * h - 1)), None);
        assert_eq!(huge_outward(&[r(h + 1, h + 2), r(3 * h, 3 * h + 1)]), vec![r(h, 2 * h), r(3 * h, 4 * h)]);
    }
}
