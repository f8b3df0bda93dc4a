//! DAMON's region primitives, ported from `mm/damon/core.c` and `vaddr.c`:
//! access-rate update, merge, split, `damon_set_regions` and the vaddr ranges.
//!
//! Every function works on one target's regions, kept as a `Vec` sorted by
//! address (the kernel's `regions_list`). Randomness comes in as an [`Rng`].

use crate::{Addr, AddrRange};
use rand::Rng;

/// One monitoring region of a target (`struct damon_region`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// `[start, end)`, aligned to the monitor's minimum region size.
    pub range: AddrRange,
    /// The address picked for the current sample (`damon_rand(start, end)`).
    pub sampling_addr: Addr,
    /// Samples of the current aggregation interval that found an access.
    pub nr_accesses: u32,
    /// Pseudo moving sum of the access checks, in basis points of one access
    /// per sample (`nr_accesses_bp`); `nr_accesses * 10000` at each reset.
    pub nr_accesses_bp: u32,
    /// Aggregation intervals the access count stayed about the same.
    pub age: u32,
    /// `nr_accesses` of the previous aggregation interval.
    pub last_nr_accesses: u32,
    /// Samples of the current aggregation interval really checked by the
    /// probe (not DAMON's: see [`MonitorAttrs::max_probed_accesses`]).
    ///
    /// [`MonitorAttrs::max_probed_accesses`]: crate::monitor::MonitorAttrs::max_probed_accesses
    pub probed: u32,
    /// Of those, the ones that found an access.
    pub probed_accesses: u32,
}

impl Region {
    /// A fresh region (`damon_new_region`): every counter zero.
    pub fn new(range: AddrRange) -> Region {
        Region {
            range,
            sampling_addr: range.start,
            nr_accesses: 0,
            nr_accesses_bp: 0,
            age: 0,
            last_nr_accesses: 0,
            probed: 0,
            probed_accesses: 0,
        }
    }

    /// Size in bytes (`damon_sz_region`).
    pub fn len(&self) -> u64 {
        self.range.len()
    }

    /// True for a zero-sized region (never kept in a target).
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
}

/// `ALIGN_DOWN(v, to)`; `to` is a power of two.
pub(crate) fn align_down(v: u64, to: u64) -> u64 {
    v / to * to
}

/// `ALIGN(v, to)`, saturating at the top of the address space.
pub(crate) fn align_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to).saturating_mul(to)
}

fn intersects(a: &AddrRange, b: &AddrRange) -> bool {
    !(a.end <= b.start || b.end <= a.start)
}

/// `damon_update_region_access_rate`: feed one check result into a region.
/// `len_window` is `damon_max_nr_accesses` (aggregation / sample interval).
///
/// The kernel computes the moving sum in wrapping `unsigned int`; its
/// invariants keep it from underflowing, and saturating arithmetic here gives
/// the same numbers while staying panic-free in debug builds.
pub fn update_access_rate(r: &mut Region, accessed: bool, len_window: u32) {
    let len_window = len_window.max(1);
    let dropped = r.last_nr_accesses.saturating_mul(10_000) / len_window;
    let added = if accessed { 10_000 } else { 0 };
    r.nr_accesses_bp = r.nr_accesses_bp.saturating_sub(dropped).saturating_add(added);
    if accessed {
        r.nr_accesses = r.nr_accesses.saturating_add(1);
    }
}

/// Size-weighted average of two counters, computed in 128 bits so that
/// huge regions cannot overflow (the kernel uses `unsigned long`).
fn weighted(a: u32, sz_a: u64, b: u32, sz_b: u64) -> u32 {
    let num = u128::from(a) * u128::from(sz_a) + u128::from(b) * u128::from(sz_b);
    let den = u128::from(sz_a) + u128::from(sz_b);
    if den == 0 {
        return 0;
    }
    u32::try_from(num / den).unwrap_or(u32::MAX)
}

/// `damon_merge_two_regions`: `l` absorbs its right neighbour `r`.
/// `last_nr_accesses` stays `l`'s, as in the kernel.
pub fn merge_two(l: &mut Region, r: &Region) {
    let (sz_l, sz_r) = (l.len(), r.len());
    l.nr_accesses = weighted(l.nr_accesses, sz_l, r.nr_accesses, sz_r);
    l.nr_accesses_bp = l.nr_accesses.saturating_mul(10_000);
    l.age = weighted(l.age, sz_l, r.age, sz_r);
    l.range.end = r.range.end;
}

/// `damon_merge_regions_of`: update every region's age, then merge adjacent
/// regions whose access counts differ by at most `thres` while the merged
/// size stays within `sz_limit`.
///
/// Age rule (newest kernel): reset when the count moved by more than
/// `thres`, or when it went from zero to non-zero or back; else age + 1.
///
/// Not in the kernel: with `settled` > 0 (the monitor's
/// [`max_probed_accesses`](crate::MonitorAttrs::max_probed_accesses)), counts
/// at or above `settled` compare as `settled`. Above the cap a region's count
/// is partly filled in at random, so a difference there is noise, not a
/// change of access pattern; a region that reached the cap in both intervals
/// keeps ageing.
pub fn merge_regions_of(regions: &mut Vec<Region>, thres: u32, sz_limit: u64, settled: u32) {
    let seen = |n: u32| if settled > 0 { n.min(settled) } else { n };
    let mut out: Vec<Region> = Vec::with_capacity(regions.len());
    for mut r in regions.drain(..) {
        let (now, last) = (seen(r.nr_accesses), seen(r.last_nr_accesses));
        if now.abs_diff(last) > thres || (now == 0) != (last == 0) {
            r.age = 0;
        } else {
            r.age = r.age.saturating_add(1);
        }
        match out.last_mut() {
            Some(prev)
                if prev.range.end == r.range.start
                    && prev.nr_accesses.abs_diff(r.nr_accesses) <= thres
                    && prev.len().saturating_add(r.len()) <= sz_limit =>
            {
                merge_two(prev, &r)
            }
            _ => out.push(r),
        }
    }
    *regions = out;
}

/// `damon_split_region_at`: split `regions[idx]` so that its left piece is
/// `sz_left` bytes; the right piece copies every counter and follows it.
pub fn split_region_at(regions: &mut Vec<Region>, idx: usize, sz_left: u64) {
    let left = &mut regions[idx];
    debug_assert!(sz_left > 0 && sz_left < left.len(), "split of {} at {sz_left}", left.range);
    let mut right = *left;
    right.range.start = Addr(left.range.start.0 + sz_left);
    left.range.end = right.range.start;
    regions.insert(idx + 1, right);
}

/// `damon_split_regions_of`: split every region into up to `nr_subs` pieces.
/// Each cut leaves a left piece of 10 %..90 % (10 % steps, aligned down to
/// `min_region_sz`) and the next cut splits that left piece again.
pub fn split_regions_of(regions: &mut Vec<Region>, nr_subs: u32, min_region_sz: u64, rng: &mut impl Rng) {
    let mut out: Vec<Region> = Vec::with_capacity(regions.len() * nr_subs.max(1) as usize);
    let mut rights: Vec<Region> = Vec::new();
    for r in regions.drain(..) {
        let mut left = r;
        let mut sz_region = left.len();
        rights.clear();
        let mut i = 0;
        while i + 1 < nr_subs && sz_region > 2 * min_region_sz {
            i += 1;
            // damon_rand(1, 10): uniform in [1, 10).
            let tenths: u64 = rng.random_range(1..10);
            let sz_sub = align_down(
                u64::try_from(u128::from(tenths) * u128::from(sz_region) / 10).unwrap_or(u64::MAX),
                min_region_sz,
            );
            // Do not allow blank regions.
            if sz_sub == 0 || sz_sub >= sz_region {
                continue;
            }
            let mut right = left;
            right.range.start = Addr(left.range.start.0 + sz_sub);
            left.range.end = right.range.start;
            rights.push(right);
            sz_region = sz_sub;
        }
        out.push(left);
        out.extend(rights.iter().rev());
    }
    *regions = out;
}

/// `damon_evenly_split_region` as the (fixed) vaddr init uses it: exactly
/// `nr_pieces` pieces of `ALIGN_DOWN(size / nr_pieces)` bytes, the last one
/// taking the rounding remainder. Regions that cannot be split stay whole.
pub fn evenly_split(r: Region, nr_pieces: u64, min_region_sz: u64) -> Vec<Region> {
    if nr_pieces <= 1 {
        return vec![r];
    }
    let sz_piece = align_down(r.len() / nr_pieces, min_region_sz);
    if sz_piece == 0 {
        return vec![r];
    }
    let mut out = Vec::with_capacity(usize::try_from(nr_pieces).unwrap_or(0));
    let mut start = r.range.start.0;
    for i in 0..nr_pieces {
        let end = if i + 1 == nr_pieces { r.range.end.0 } else { start + sz_piece };
        let mut piece = r;
        piece.range = AddrRange::new(start, end);
        out.push(piece);
        start = end;
    }
    out
}

/// Fill the gaps between `regions[first..=last]` with fresh regions
/// (`damon_fill_regions_holes`); returns how many were inserted.
fn fill_holes(regions: &mut Vec<Region>, first: usize, mut last: usize) -> usize {
    let mut inserted = 0;
    let mut i = first;
    while i < last {
        let (end, next_start) = (regions[i].range.end, regions[i + 1].range.start);
        if end != next_start {
            regions.insert(i + 1, Region::new(AddrRange { start: end, end: next_start }));
            inserted += 1;
            last += 1;
            i += 1;
        }
        i += 1;
    }
    inserted
}

/// `damon_set_regions`: fit a target's regions to `ranges` (sorted, not
/// overlapping). Regions that intersect no range are dropped; a range that no
/// region intersects gets one new region; otherwise the first intersecting
/// region is stretched to the range start, the last to the range end, and the
/// holes between them are filled with new regions (zero counts, zero age).
pub fn set_regions(regions: &mut Vec<Region>, ranges: &[AddrRange], min_region_sz: u64) {
    regions.retain(|r| ranges.iter().any(|range| intersects(&r.range, range)));
    let mut cursor = 0;
    for range in ranges {
        let mut first = None;
        let mut last = 0;
        while cursor < regions.len() {
            let r = &regions[cursor].range;
            if intersects(r, range) {
                first.get_or_insert(cursor);
                last = cursor;
            }
            if r.start >= range.end {
                break;
            }
            cursor += 1;
        }
        let start = align_down(range.start.0, min_region_sz);
        let end = align_up(range.end.0, min_region_sz);
        match first {
            None => {
                if start < end {
                    regions.insert(cursor, Region::new(AddrRange::new(start, end)));
                    cursor += 1;
                }
            }
            Some(first) => {
                regions[first].range.start = Addr(start);
                regions[last].range.end = Addr(end);
                cursor += fill_holes(regions, first, last);
            }
        }
    }
}

/// Sort `ranges`, align them outward to `min_region_sz`, drop empty ones and
/// coalesce the ones that overlap or touch. `damon_set_regions` expects
/// sorted, disjoint ranges; a caller handing raw VMAs gets them made so.
pub fn normalize_ranges(ranges: &[AddrRange], min_region_sz: u64) -> Vec<AddrRange> {
    let mut v: Vec<AddrRange> = ranges
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| AddrRange::new(align_down(r.start.0, min_region_sz), align_up(r.end.0, min_region_sz)))
        .collect();
    v.sort();
    let mut out: Vec<AddrRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(prev) if r.start <= prev.end => prev.end = prev.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// `__damon_va_three_regions`, kernel-exact: the ranges around the two
/// biggest gaps between consecutive mappings, or `None` when there are fewer
/// than two non-empty gaps (the kernel's `-EINVAL`). `mappings` must be
/// sorted and disjoint (see [`normalize_ranges`]).
pub fn three_regions(mappings: &[AddrRange], min_region_sz: u64) -> Option<[AddrRange; 3]> {
    let (first_gap, second_gap) = two_biggest_gaps(mappings);
    let (g1, g2) = (first_gap?, second_gap?);
    let (g1, g2) = if g1.start > g2.start { (g2, g1) } else { (g1, g2) };
    let start = mappings.first()?.start.0;
    let end = mappings.last()?.end.0;
    let a = |v: u64| align_up(v, min_region_sz);
    Some([
        AddrRange::new(a(start), a(g1.start.0)),
        AddrRange::new(a(g1.end.0), a(g2.start.0)),
        AddrRange::new(a(g2.end.0), a(end)),
    ])
}

/// The two biggest non-empty gaps, found the way the kernel walks the VMAs
/// (`gap > first` demotes first to second; ties keep the earlier gap).
fn two_biggest_gaps(mappings: &[AddrRange]) -> (Option<AddrRange>, Option<AddrRange>) {
    let mut first: Option<AddrRange> = None;
    let mut second: Option<AddrRange> = None;
    for w in mappings.windows(2) {
        let gap = AddrRange { start: w[0].end, end: w[1].start.max(w[0].end) };
        let len = gap.len();
        if len > first.map_or(0, |g| g.len()) {
            second = first;
            first = Some(gap);
        } else if len > second.map_or(0, |g| g.len()) {
            second = Some(gap);
        }
    }
    (first, second)
}

/// The ranges a virtual-address target is monitored as.
///
/// Kernel behaviour with two or more gaps ([`three_regions`]). With fewer the
/// kernel fails (`-EINVAL`) and the target stays unmonitored; we want a
/// single-mapping target (one big anonymous mmap, a test child) monitored too,
/// so we use the gaps there are: one gap gives two ranges, none gives one
/// range over all mappings. Empty ranges (possible only with a minimum region
/// size above the page size) are dropped.
pub fn vaddr_ranges(mappings: &[AddrRange], min_region_sz: u64) -> Vec<AddrRange> {
    let mappings = normalize_ranges(mappings, min_region_sz);
    let (Some(start), Some(end)) = (mappings.first(), mappings.last()) else {
        return Vec::new();
    };
    let (start, end) = (start.start.0, end.end.0);
    let ranges: Vec<AddrRange> = match three_regions(&mappings, min_region_sz) {
        Some(three) => three.to_vec(),
        None => match two_biggest_gaps(&mappings).0 {
            Some(g) => vec![AddrRange::new(start, g.start.0), AddrRange::new(g.end.0, end)],
            None => vec![AddrRange::new(start, end)],
        },
    };
    ranges.into_iter().filter(|r| !r.is_empty()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;

    const P: u64 = crate::PAGE_SIZE;

    fn r(start: u64, end: u64) -> Region {
        Region::new(AddrRange::new(start, end))
    }

    fn ranges(v: &[Region]) -> Vec<(u64, u64)> {
        v.iter().map(|r| (r.range.start.0, r.range.end.0)).collect()
    }

    #[test]
    fn access_rate_moving_sum_matches_kernel_formula() {
        // len_window 20, last window had 10 accesses: each check drops 5000.
        let mut reg = r(0, P);
        reg.last_nr_accesses = 10;
        reg.nr_accesses_bp = 100_000;
        update_access_rate(&mut reg, true, 20);
        assert_eq!(reg.nr_accesses_bp, 100_000 - 5_000 + 10_000);
        assert_eq!(reg.nr_accesses, 1);
        update_access_rate(&mut reg, false, 20);
        assert_eq!(reg.nr_accesses_bp, 100_000 - 10_000 + 10_000);
        assert_eq!(reg.nr_accesses, 1);
    }

    #[test]
    fn bp_equals_count_times_10000_after_a_full_window() {
        let mut reg = r(0, P);
        reg.last_nr_accesses = 7;
        reg.nr_accesses_bp = 70_000;
        for i in 0..20 {
            update_access_rate(&mut reg, i % 3 == 0, 20);
        }
        assert_eq!(reg.nr_accesses, 7);
        assert_eq!(reg.nr_accesses_bp, reg.nr_accesses * 10_000);
    }

    #[test]
    fn merge_two_uses_size_weighted_averages() {
        let mut l = r(0, 3 * P);
        l.nr_accesses = 10;
        l.age = 9;
        l.last_nr_accesses = 4;
        let mut rr = r(3 * P, 4 * P);
        rr.nr_accesses = 2;
        rr.age = 1;
        merge_two(&mut l, &rr);
        assert_eq!((l.range.start.0, l.range.end.0), (0, 4 * P));
        assert_eq!(l.nr_accesses, (10 * 3 + 2) / 4); // 8
        assert_eq!(l.nr_accesses_bp, 80_000);
        assert_eq!(l.age, (9 * 3 + 1) / 4); // 7
        assert_eq!(l.last_nr_accesses, 4, "merge keeps the left region's last count");
    }

    #[test]
    fn merge_respects_threshold_adjacency_and_size_limit() {
        // counts 10, 11, 20 | gap | 20 ; thres 1
        let mut v = vec![r(0, P), r(P, 2 * P), r(2 * P, 3 * P), r(4 * P, 5 * P)];
        for (reg, n) in v.iter_mut().zip([10, 11, 20, 20]) {
            reg.nr_accesses = n;
            reg.last_nr_accesses = n;
            reg.nr_accesses_bp = n * 10_000;
        }
        merge_regions_of(&mut v, 1, u64::MAX, 0);
        assert_eq!(ranges(&v), vec![(0, 2 * P), (2 * P, 3 * P), (4 * P, 5 * P)]);
        assert_eq!(v[0].nr_accesses, 10); // (10 + 11) / 2

        // Same counts everywhere but a size limit of two pages.
        let mut v: Vec<Region> = (0..4).map(|i| r(i * P, (i + 1) * P)).collect();
        merge_regions_of(&mut v, 0, 2 * P, 0);
        assert_eq!(ranges(&v), vec![(0, 2 * P), (2 * P, 4 * P)]);
    }

    #[test]
    fn age_rules() {
        let mk = |nr: u32, last: u32, age: u32| {
            let mut reg = r(0, P);
            reg.nr_accesses = nr;
            reg.last_nr_accesses = last;
            reg.nr_accesses_bp = nr * 10_000;
            reg.age = age;
            reg
        };
        let age_after_settled = |reg: Region, thres: u32, settled: u32| {
            let mut v = vec![reg];
            merge_regions_of(&mut v, thres, u64::MAX, settled);
            v[0].age
        };
        let age_after = |reg: Region, thres: u32| age_after_settled(reg, thres, 0);
        assert_eq!(age_after(mk(10, 12, 5), 2), 6, "within threshold: older");
        assert_eq!(age_after(mk(10, 13, 5), 2), 0, "moved more than threshold: reset");
        assert_eq!(age_after(mk(1, 0, 5), 2), 0, "zero to non-zero: reset");
        assert_eq!(age_after(mk(0, 1, 5), 2), 0, "non-zero to zero: reset");
        assert_eq!(age_after(mk(0, 0, 5), 2), 6, "idle stays idle: older");
        // Counts filled in above a cap of 2 differ by noise only.
        assert_eq!(age_after_settled(mk(10, 2, 5), 1, 2), 6, "both at or above the cap: older");
        assert_eq!(age_after_settled(mk(10, 1, 5), 0, 2), 0, "below the cap a move still resets");
        assert_eq!(age_after_settled(mk(0, 9, 5), 1, 2), 0, "to zero still resets");
    }

    #[test]
    fn split_cut_points_are_tenths_aligned_and_left_piece_resplit() {
        let mut rng = Pcg64Mcg::seed_from_u64(7);
        for _ in 0..200 {
            let mut v = vec![r(0, 100 * P)];
            v[0].nr_accesses = 3;
            v[0].age = 4;
            split_regions_of(&mut v, 2, P, &mut rng);
            assert_eq!(v.len(), 2);
            let cut = v[0].range.end.0;
            assert_eq!(cut % (10 * P), 0, "cut at a 10% step of a 100-page region");
            assert!((10 * P..=90 * P).contains(&cut));
            assert!(v.iter().all(|x| x.nr_accesses == 3 && x.age == 4), "split copies counters");
        }
        // Three pieces: the second cut splits the left piece.
        let mut saw_three = false;
        for _ in 0..50 {
            let mut v = vec![r(0, 1000 * P)];
            split_regions_of(&mut v, 3, P, &mut rng);
            assert!(v.len() == 3, "1000 pages always split twice");
            assert!(v[2].len() >= 100 * P);
            assert_eq!(v[0].len() + v[1].len(), v[2].range.start.0);
            saw_three = true;
        }
        assert!(saw_three);
        // Regions of at most two pages are never split.
        let mut v = vec![r(0, 2 * P)];
        split_regions_of(&mut v, 3, P, &mut rng);
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn evenly_split_makes_exact_pieces() {
        let v = evenly_split(r(0, 10 * P), 3, P);
        assert_eq!(ranges(&v), vec![(0, 3 * P), (3 * P, 6 * P), (6 * P, 10 * P)]);
        let v = evenly_split(r(0, 2 * P), 5, P);
        assert_eq!(ranges(&v), vec![(0, 2 * P)], "pieces below a page: region kept whole");
    }

    #[test]
    fn set_regions_drops_stretches_and_fills() {
        // Regions: [1,3) [3,5) [8,9) [12,14); ranges [2,6) [10,16).
        let mut v = vec![r(P, 3 * P), r(3 * P, 5 * P), r(8 * P, 9 * P), r(12 * P, 14 * P)];
        v[0].nr_accesses = 5;
        set_regions(&mut v, &[AddrRange::new(2 * P, 6 * P), AddrRange::new(10 * P, 16 * P)], P);
        // [8,9) intersects nothing: dropped. First range: [1,3) pulled to 2,
        // [3,5) stretched to 6. Second: [12,14) stretched to [10,16).
        assert_eq!(ranges(&v), vec![(2 * P, 3 * P), (3 * P, 6 * P), (10 * P, 16 * P)]);
        assert_eq!(v[0].nr_accesses, 5, "kept regions keep their counts");

        // Holes inside a range get new regions; a range with no region gets one.
        let mut v = vec![r(0, P), r(3 * P, 4 * P)];
        v[1].age = 9;
        set_regions(&mut v, &[AddrRange::new(0, 4 * P), AddrRange::new(8 * P, 9 * P)], P);
        assert_eq!(ranges(&v), vec![(0, P), (P, 3 * P), (3 * P, 4 * P), (8 * P, 9 * P)]);
        assert_eq!((v[1].age, v[2].age, v[3].age), (0, 9, 0));
    }

    #[test]
    fn set_regions_aligns_outward() {
        let mut v = Vec::new();
        set_regions(&mut v, &[AddrRange::new(P + 10, 3 * P - 10)], P);
        assert_eq!(ranges(&v), vec![(P, 3 * P)]);
    }

    #[test]
    fn three_regions_around_the_two_biggest_gaps() {
        // heap [1,4), gap 96 pages, mmap [100,110) [112,120), gap 880, stack [1000,1002)
        let maps = [
            AddrRange::new(P, 4 * P),
            AddrRange::new(100 * P, 110 * P),
            AddrRange::new(112 * P, 120 * P),
            AddrRange::new(1000 * P, 1002 * P),
        ];
        let three = three_regions(&maps, P).unwrap();
        assert_eq!(three[0], AddrRange::new(P, 4 * P));
        assert_eq!(three[1], AddrRange::new(100 * P, 120 * P), "the small gap stays inside");
        assert_eq!(three[2], AddrRange::new(1000 * P, 1002 * P));
        assert_eq!(vaddr_ranges(&maps, P), three.to_vec());
    }

    #[test]
    fn fewer_than_two_gaps_falls_back() {
        let one = [AddrRange::new(P, 9 * P)];
        assert_eq!(three_regions(&one, P), None, "the kernel fails here");
        assert_eq!(vaddr_ranges(&one, P), vec![AddrRange::new(P, 9 * P)]);
        let two = [AddrRange::new(P, 2 * P), AddrRange::new(2 * P, 3 * P), AddrRange::new(7 * P, 8 * P)];
        assert_eq!(vaddr_ranges(&two, P), vec![AddrRange::new(P, 3 * P), AddrRange::new(7 * P, 8 * P)]);
        assert!(vaddr_ranges(&[], P).is_empty());
    }

    #[test]
    fn normalize_sorts_and_coalesces() {
        let v = normalize_ranges(
            &[AddrRange::new(5 * P, 6 * P), AddrRange::new(P, 2 * P + 1), AddrRange::new(3 * P - 5, 4 * P)],
            P,
        );
        assert_eq!(v, vec![AddrRange::new(P, 4 * P), AddrRange::new(5 * P, 6 * P)]);
    }
}
