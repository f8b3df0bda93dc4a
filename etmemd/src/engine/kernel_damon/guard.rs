//! Hot guards: the address ranges of one target that DAMON saw accessed
//! within the last `hold`, kept out of reclaim schemes by reject `addr`
//! filters. Pure: snapshots and the time come in, ranges go out.
//!
//! Why: a DAMOS pattern "0 accesses for N aggregations" also matches a
//! region that mixes a few hot pages with cold ones while its sampled pages
//! happen to miss the hot ones; the kernel pages the hot pages out and they
//! fault straight back. Remembering where accesses were seen, longer than
//! the pattern's age, keeps those ranges in RAM until DAMON's adaptive
//! regions have separated the hot part from the cold.

use damon_core::{AddrRange, PAGE_SIZE, Snapshot};

/// The guard of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotGuard {
    hold_us: u64,
    /// Sorted, disjoint: (range, last time an access was seen in it).
    seen: Vec<(AddrRange, u64)>,
}

impl HotGuard {
    pub fn new(hold_us: u64) -> HotGuard {
        HotGuard { hold_us, seen: Vec::new() }
    }

    /// Note every region of `snap` with at least one access at `now_us`,
    /// and forget what was last seen before `now_us - hold`.
    pub fn observe(&mut self, snap: &Snapshot, now_us: u64) {
        let mut fresh: Vec<(AddrRange, u64)> =
            snap.regions.iter().filter(|r| r.nr_accesses > 0).map(|r| (r.range, now_us)).collect();
        let horizon = now_us.saturating_sub(self.hold_us);
        fresh.extend(self.seen.iter().copied().filter(|(_, t)| *t >= horizon));
        self.seen = merge(fresh);
    }

    /// The guarded ranges, page aligned, at most `max` of them (the closest
    /// neighbours are joined first).
    pub fn ranges(&self, max: usize) -> Vec<AddrRange> {
        let mut out: Vec<AddrRange> = Vec::new();
        for (r, _) in &self.seen {
            let r = AddrRange { start: r.start.align_down(PAGE_SIZE), end: r.end.align_up(PAGE_SIZE) };
            match out.last_mut() {
                Some(l) if r.start <= l.end => l.end = l.end.max(r.end),
                _ => out.push(r),
            }
        }
        while out.len() > max.max(1) {
            let (i, _) = out
                .windows(2)
                .enumerate()
                .min_by_key(|(_, w)| w[1].start.0 - w[0].end.0)
                .expect("more than one range");
            out[i].end = out[i + 1].end;
            out.remove(i + 1);
        }
        out
    }

    /// Bytes guarded now.
    pub fn bytes(&self) -> u64 {
        self.seen.iter().map(|(r, _)| r.len()).sum()
    }
}

/// Merge overlapping or touching ranges, keeping the latest time of each part.
/// Parts with different times stay apart so each expires on its own.
fn merge(mut v: Vec<(AddrRange, u64)>) -> Vec<(AddrRange, u64)> {
    if v.is_empty() {
        return v;
    }
    // Cut every range at every boundary, then keep the latest time per piece.
    let mut bounds: Vec<u64> = v.iter().flat_map(|(r, _)| [r.start.0, r.end.0]).collect();
    bounds.sort_unstable();
    bounds.dedup();
    v.sort_by_key(|(r, _)| r.start);
    let mut out: Vec<(AddrRange, u64)> = Vec::new();
    for w in bounds.windows(2) {
        let piece = AddrRange::new(w[0], w[1]);
        let t = v
            .iter()
            .filter(|(r, _)| r.start.0 <= piece.start.0 && piece.end.0 <= r.end.0)
            .map(|(_, t)| *t)
            .max();
        let Some(t) = t else { continue };
        match out.last_mut() {
            Some((l, lt)) if l.end == piece.start && *lt == t => l.end = piece.end,
            _ => out.push((piece, t)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use damon_core::RegionSnapshot;

    fn snap(regions: &[(u64, u64, u32)]) -> Snapshot {
        Snapshot {
            regions: regions
                .iter()
                .map(|&(a, b, n)| RegionSnapshot { range: AddrRange::new(a, b), nr_accesses: n, age: 0 })
                .collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn accessed_ranges_are_held_then_forgotten() {
        let mut g = HotGuard::new(10);
        g.observe(&snap(&[(0x0, 0x4000, 0), (0x4000, 0x8000, 3), (0x8000, 0x9000, 0)]), 100);
        assert_eq!(g.ranges(8), vec![AddrRange::new(0x4000, 0x8000)]);
        // A later snapshot sees a neighbour hot; the old part is kept within hold.
        g.observe(&snap(&[(0x0, 0x6000, 0), (0x6000, 0xa000, 1)]), 105);
        assert_eq!(g.ranges(8), vec![AddrRange::new(0x4000, 0xa000)]);
        assert_eq!(g.bytes(), 0x6000);
        // Past the hold, only what was seen since stays.
        g.observe(&snap(&[(0x0, 0xa000, 0)]), 112);
        assert_eq!(g.ranges(8), vec![AddrRange::new(0x6000, 0xa000)]);
        g.observe(&snap(&[]), 200);
        assert!(g.ranges(8).is_empty());
    }

    #[test]
    fn too_many_ranges_join_across_the_smallest_gaps() {
        let mut g = HotGuard::new(10);
        g.observe(
            &snap(&[(0x0, 0x1000, 1), (0x2000, 0x3000, 1), (0x10000, 0x11000, 1), (0x11800, 0x12000, 1)]),
            1,
        );
        let r = g.ranges(2);
        assert_eq!(r, vec![AddrRange::new(0x0, 0x3000), AddrRange::new(0x10000, 0x12000)]);
    }
}
