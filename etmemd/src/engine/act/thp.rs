//! What the acting half knows about one process's huge pages, for THP
//! promotion and demotion (issue 5): which 2 MiB units are huge now, which
//! must not be collapsed, and whether a split really gave a huge page back.
//!
//! Sources, cheapest first:
//! - our own collapses and verified splits, between refreshes;
//! - a refresh: /proc/PID/smaps for the `nh` (VM_NOHUGEPAGE) mappings and for
//!   which mappings hold any huge page or swapped page at all, then one
//!   `PAGEMAP_SCAN` (PAGE_IS_HUGE | PAGE_IS_SWAPPED) over just those
//!   mappings: the huge units and swapped ranges, exactly. A refresh runs at
//!   the start, every [`REFRESH_INTERVAL_US`], and sooner (at most every
//!   [`RECHECK_MIN_US`]) when AnonHugePages moved in a way our own actions do
//!   not explain (khugepaged, page faults under THP `always`, reclaim
//!   splitting a huge page). A smaps read walks the page tables (tens of ms
//!   per GiB mapped with base pages, under 1 ms with huge pages), so it is
//!   not done at every aggregation;
//! - the collapse itself: each unit's pagemap is read right before
//!   `MADV_COLLAPSE`, and a unit holding swapped pages is left alone — but
//!   for the pages the refault probe paged out to sample them and no
//!   pageout of ours took since (a hot one is back within milliseconds, but
//!   a sampled 4 KiB page nobody touches again stays out: counting them
//!   would keep every hot unit of a sparsely touched heap, such as a
//!   database's buffer pool, from ever being collapsed, and faulting a few
//!   sampled pages back in is what any access would do anyway); and a unit
//!   with more than the policy's `thp_max_ptes_none` pages unpopulated or
//!   mapping the zero page is left alone too, since the collapse would fill
//!   them with new zeroed pages (under TPC-C a tenth of mariadbd's buffer
//!   pool units are only partly populated: collapsing every hot unit grew
//!   it by 16 %). The kernel refuses units it will never collapse
//!   (`EINVAL`) and fails units it cannot collapse now (`EAGAIN`, `ENOMEM`,
//!   ...). Those units are left out of later plans for a while, so quota is
//!   not spent on them again and again.

use damon_core::ops::ProcTarget;
use damon_core::ops::pagemap::{self, PagemapEntry};
use damon_core::ops::sys::{PAGE_IS_HUGE, PAGE_IS_SWAPPED};
use damon_core::{AddrRange, PAGE_SIZE};
use std::collections::HashSet;
use swap_backends::madvise::{self, ActionOutcome, HPAGE_SIZE, MemAction, UnitResult};

/// A refresh at least this often while a THP rule runs.
pub const REFRESH_INTERVAL_US: u64 = 30_000_000;
/// An early refresh (AnonHugePages changed unexplained) at most this often.
pub const RECHECK_MIN_US: u64 = 5_000_000;
/// Units found holding swapped pages are not planned for this long; then
/// the collapse-time pagemap check looks again.
pub const SWAPPED_EXCLUSION_US: u64 = 10_000_000;
/// Units whose collapse failed for now (`EAGAIN`, `ENOMEM`, ...) wait this long.
pub const FAILED_BACKOFF_US: u64 = 10_000_000;
/// Units too sparsely populated to collapse are not planned for this long
/// (the process may fill them in).
pub const SPARSE_EXCLUSION_US: u64 = 30_000_000;

/// What [`ThpState::screen_units`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Screened {
    /// Units to collapse, in address order.
    pub keep: Vec<AddrRange>,
    /// Units left out for holding swapped pages.
    pub swapped: u64,
    /// Units left out for holding more than `max_ptes_none` unpopulated
    /// pages, and those pages summed: what collapsing them would have added.
    pub sparse: u64,
    pub sparse_none_pages: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnitVerdict {
    Collapse,
    Swapped,
    Sparse { none: u32 },
}

/// The verdict on one unit from its pagemap `entries` (the unit starts at
/// `start`): swapped pages other than the probe's first, then too many
/// pages that are neither present nor swapped, or only map the zero page at
/// `zero_pfn` (read, never written: the kernel's collapse counts them as
/// none too, and gives each a page of its own).
fn unit_verdict(
    entries: &[PagemapEntry],
    start: u64,
    probe_pages: &HashSet<u64>,
    max_ptes_none: u32,
    zero_pfn: Option<u64>,
) -> UnitVerdict {
    let mut none = 0u32;
    for (k, e) in entries.iter().enumerate() {
        if e.swapped() {
            if !probe_pages.contains(&(start + k as u64 * PAGE_SIZE)) {
                return UnitVerdict::Swapped;
            }
        } else if !e.present() || (zero_pfn.is_some() && e.pfn() == zero_pfn) {
            none += 1;
        }
    }
    if none > max_ptes_none { UnitVerdict::Sparse { none } } else { UnitVerdict::Collapse }
}

/// The huge-page view of one process.
#[derive(Debug, Default)]
pub struct ThpState {
    /// 2 MiB units backed by a huge page, sorted and disjoint.
    huge: Vec<AddrRange>,
    /// `VM_NOHUGEPAGE` mappings, from the last refresh.
    nohugepage: Vec<AddrRange>,
    /// Units the kernel refused to collapse (`EINVAL`), until the next refresh.
    refused: Vec<AddrRange>,
    /// Ranges left out of promotion until a time (`now_us`): swapped pages,
    /// failed collapses.
    excluded: Vec<(AddrRange, u64)>,
    last_refresh_us: Option<u64>,
    /// AnonHugePages we expect now: the value at the last refresh, plus our
    /// collapses, minus our verified splits since.
    expected_anon_huge_bytes: Option<u64>,
    /// Refreshes done, and the last one's error (the process may be gone).
    pub refreshes: u64,
    pub last_error: Option<String>,
}

/// Sorted, disjoint, merged.
fn normalize(mut v: Vec<AddrRange>) -> Vec<AddrRange> {
    v.retain(|r| !r.is_empty());
    v.sort_by_key(|r| r.start);
    let mut out: Vec<AddrRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// The whole 2 MiB units inside `r`.
fn units_in(r: AddrRange) -> Option<AddrRange> {
    let s = r.start.align_up(HPAGE_SIZE);
    let e = r.end.align_down(HPAGE_SIZE);
    (s < e).then_some(AddrRange { start: s, end: e })
}

/// What a refresh read.
#[derive(Debug, Default, PartialEq, Eq)]
struct Refreshed {
    huge: Vec<AddrRange>,
    swapped: Vec<AddrRange>,
    nohugepage: Vec<AddrRange>,
}

impl ThpState {
    /// 2 MiB units backed by a huge page, sorted and disjoint.
    pub fn huge(&self) -> &[AddrRange] {
        &self.huge
    }

    pub fn huge_bytes(&self) -> u64 {
        self.huge.iter().map(AddrRange::len).sum()
    }

    /// Refresh when due: never yet, `REFRESH_INTERVAL_US` passed, or
    /// `anon_huge_bytes` (smaps_rollup, read by the engine anyway) differs
    /// from what our own actions explain and `RECHECK_MIN_US` passed.
    /// `probe_pages`: pages the probe just paged out to sample them (not
    /// counted as swapped).
    pub fn maybe_refresh(
        &mut self,
        proc: &ProcTarget,
        now_us: u64,
        anon_huge_bytes: u64,
        probe_pages: &HashSet<u64>,
    ) {
        let due = match self.last_refresh_us {
            None => true,
            Some(last) => {
                let since = now_us.saturating_sub(last);
                since >= REFRESH_INTERVAL_US
                    || (since >= RECHECK_MIN_US && self.expected_anon_huge_bytes != Some(anon_huge_bytes))
            }
        };
        if !due {
            return;
        }
        self.last_refresh_us = Some(now_us);
        match refresh(proc) {
            Ok(r) => {
                self.huge = r.huge;
                self.nohugepage = r.nohugepage;
                self.refused.clear();
                self.excluded.retain(|&(_, until)| until > now_us);
                let until = now_us + SWAPPED_EXCLUSION_US;
                let mut swapped = r.swapped;
                let mut probed: Vec<AddrRange> =
                    probe_pages.iter().map(|&p| AddrRange::new(p, p + PAGE_SIZE)).collect();
                probed.sort_by_key(|r| r.start);
                super::remove_ranges(&mut swapped, &probed);
                self.excluded.extend(swapped.into_iter().map(|s| (s, until)));
                self.expected_anon_huge_bytes = Some(anon_huge_bytes);
                self.refreshes += 1;
                self.last_error = None;
            }
            Err(e) => self.last_error = Some(e),
        }
    }

    /// What must not be collapsed now: no-hugepage mappings, refused units,
    /// and ranges excluded for a while (swapped pages, failed collapses).
    pub fn no_collapse(&mut self, now_us: u64) -> Vec<AddrRange> {
        self.excluded.retain(|&(_, until)| until > now_us);
        let mut all = self.nohugepage.clone();
        all.extend_from_slice(&self.refused);
        all.extend(self.excluded.iter().map(|&(r, _)| r));
        normalize(all)
    }

    /// Bytes of the ranges [`ThpState::no_collapse`] gives, by reason:
    /// (no-hugepage mappings, refused units, excluded for now).
    pub fn no_collapse_bytes(&self) -> (u64, u64, u64) {
        let sum = |v: &[AddrRange]| v.iter().map(AddrRange::len).sum::<u64>();
        let excluded: Vec<AddrRange> = normalize(self.excluded.iter().map(|&(r, _)| r).collect());
        (sum(&self.nohugepage), sum(&self.refused), sum(&excluded))
    }

    /// Screens the units of `ranges` (whole aligned 2 MiB units, as the
    /// planner gives them for a collapse) with one pagemap read each, right
    /// before the collapse:
    /// - a unit holding swapped pages is left out (a collapse would fault
    ///   them all back in); pages in `probe_pages` do not count;
    /// - a unit with more than `max_ptes_none` pages neither present nor
    ///   swapped, or mapping the zero page, is left out: `MADV_COLLAPSE`
    ///   would fill them with new zeroed pages, memory the process never
    ///   used (a fully unpopulated unit the kernel would refuse anyway).
    ///
    /// Both are out of later plans for a while (`SWAPPED_EXCLUSION_US`,
    /// `SPARSE_EXCLUSION_US`). A unit whose pagemap cannot be read is left
    /// out as swapped.
    pub fn screen_units(
        &mut self,
        proc: &ProcTarget,
        ranges: &[AddrRange],
        probe_pages: &HashSet<u64>,
        max_ptes_none: u32,
        now_us: u64,
    ) -> Screened {
        let units: Vec<AddrRange> = madvise::prepare(ranges, MemAction::Collapse)
            .iovs
            .iter()
            .map(|&(s, len)| AddrRange::new(s, s + len))
            .collect();
        let mut entries = Vec::new();
        let mut out = Screened::default();
        let zero_pfn = pagemap::zero_pfn();
        for u in units {
            let verdict = proc.with_pagemap("check units before collapsing", |pm| {
                pm.read_range(u, &mut entries)?;
                Ok(unit_verdict(&entries, u.start.0, probe_pages, max_ptes_none, zero_pfn))
            });
            match verdict.unwrap_or(UnitVerdict::Swapped) {
                UnitVerdict::Collapse => out.keep.push(u),
                UnitVerdict::Swapped => {
                    out.swapped += 1;
                    self.excluded.push((u, now_us + SWAPPED_EXCLUSION_US));
                }
                UnitVerdict::Sparse { none } => {
                    out.sparse += 1;
                    out.sparse_none_pages += u64::from(none);
                    self.excluded.push((u, now_us + SPARSE_EXCLUSION_US));
                }
            }
        }
        out
    }

    /// Record a collapse's per-unit results.
    pub fn on_collapse(&mut self, out: &ActionOutcome, now_us: u64) {
        for u in &out.units {
            match u.result {
                UnitResult::Done => {
                    if !self.huge.iter().any(|h| h.start <= u.range.start && u.range.end <= h.end) {
                        self.expected_anon_huge_bytes =
                            self.expected_anon_huge_bytes.map(|b| b + u.range.len());
                    }
                    super::add_range(&mut self.huge, u.range);
                }
                UnitResult::Refused { .. } => self.refused.push(u.range),
                UnitResult::Failed { .. } => self.excluded.push((u.range, now_us + FAILED_BACKOFF_US)),
                UnitResult::SwappedOut => self.excluded.push((u.range, now_us + SWAPPED_EXCLUSION_US)),
                UnitResult::NotTried => {}
            }
        }
        self.refused = normalize(std::mem::take(&mut self.refused));
    }

    /// After a split (partial `MADV_COLD`), which of its done units are no
    /// longer huge (checked with `PAGEMAP_SCAN`; trusted when the kernel has
    /// no such ioctl). Returns (given back, still huge).
    pub fn on_split(&mut self, proc: &ProcTarget, out: &ActionOutcome) -> (u64, u64) {
        let done: Vec<AddrRange> =
            out.units.iter().filter(|u| u.result == UnitResult::Done).map(|u| u.range).collect();
        let still = still_huge(proc, &done).unwrap_or_else(|_| vec![false; done.len()]);
        let (mut back, mut kept) = (0, 0);
        for (r, still) in done.into_iter().zip(still) {
            if still {
                // Pinned or locked at the moment: the cold rule tries again.
                kept += 1;
            } else {
                back += 1;
                if self.huge.iter().any(|h| h.start <= r.start && r.end <= h.end) {
                    self.expected_anon_huge_bytes =
                        self.expected_anon_huge_bytes.map(|b| b.saturating_sub(r.len()));
                }
                super::remove_range(&mut self.huge, r);
            }
        }
        (back, kept)
    }
}

/// For each unit, whether it is still mapped by a PMD.
fn still_huge(proc: &ProcTarget, units: &[AddrRange]) -> Result<Vec<bool>, String> {
    let mut regions = Vec::new();
    let mut out = Vec::with_capacity(units.len());
    proc.with_pagemap("check split units", |pm| {
        for &u in units {
            if !pm.scan(u, PAGE_IS_HUGE, PAGE_IS_HUGE, &mut regions)? {
                // No PAGEMAP_SCAN: trust the kernel's answer to the split.
                out.push(false);
                continue;
            }
            out.push(!regions.is_empty());
        }
        Ok(())
    })
    .map_err(|e| crate::daemon::chain(&e))?;
    Ok(out)
}

/// Read smaps, then scan the mappings that hold huge or swapped pages.
fn refresh(proc: &ProcTarget) -> Result<Refreshed, String> {
    let vmas = proc.smaps().map_err(|e| crate::daemon::chain(&e))?;
    let mut r = Refreshed::default();
    let mut to_scan = Vec::new();
    for v in &vmas {
        let Some(s) = &v.smaps else { continue };
        if s.has_flag("nh") {
            r.nohugepage.push(v.range);
        }
        if s.anon_huge_pages_bytes > 0 || s.swap_bytes > 0 {
            to_scan.push(v.range);
        }
    }
    let mut regions = Vec::new();
    proc.with_pagemap("find huge and swapped pages", |pm| {
        for &range in &to_scan {
            if !pm.scan(
                range,
                PAGE_IS_HUGE | PAGE_IS_SWAPPED,
                PAGE_IS_HUGE | PAGE_IS_SWAPPED,
                &mut regions,
            )? {
                // Kernel without PAGEMAP_SCAN: huge units stay what we
                // collapsed; swapped pages are found at collapse time.
                return Ok(());
            }
            for p in &regions {
                let pr = AddrRange::new(p.start, p.end);
                if p.categories & PAGE_IS_HUGE != 0
                    && let Some(u) = units_in(pr)
                {
                    r.huge.push(u);
                }
                if p.categories & PAGE_IS_SWAPPED != 0 {
                    r.swapped.push(pr);
                }
            }
        }
        Ok(())
    })
    .map_err(|e| crate::daemon::chain(&e))?;
    r.huge = normalize(r.huge);
    r.swapped = normalize(r.swapped);
    r.nohugepage = normalize(r.nohugepage);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use swap_backends::madvise::{MemAction, UnitOutcome};

    const MIB: u64 = 1 << 20;

    fn r(a: u64, b: u64) -> AddrRange {
        AddrRange::new(a * MIB, b * MIB)
    }

    fn outcome(units: &[(AddrRange, UnitResult)]) -> ActionOutcome {
        let mut o = ActionOutcome::new(MemAction::Collapse);
        o.units = units.iter().map(|&(range, result)| UnitOutcome { range, result }).collect();
        o
    }

    #[test]
    fn collapse_results_feed_huge_and_exclusions() {
        let mut s = ThpState { expected_anon_huge_bytes: Some(0), ..ThpState::default() };
        s.on_collapse(
            &outcome(&[
                (r(0, 2), UnitResult::Done),
                (r(2, 4), UnitResult::Done),
                (r(4, 6), UnitResult::Refused { errno: libc::EINVAL }),
                (r(6, 8), UnitResult::Failed { errno: libc::EAGAIN }),
                (r(8, 10), UnitResult::SwappedOut),
                (r(10, 12), UnitResult::NotTried),
            ]),
            1_000,
        );
        assert_eq!(s.huge(), [r(0, 4)]);
        assert_eq!(s.expected_anon_huge_bytes, Some(4 * MIB));
        assert_eq!(s.no_collapse(1_000), [r(4, 10)]);
        assert_eq!(s.no_collapse_bytes(), (0, 2 * MIB, 4 * MIB));
        // Exclusions end; refusals stay until the next refresh.
        assert_eq!(s.no_collapse(1_000 + FAILED_BACKOFF_US.max(SWAPPED_EXCLUSION_US)), [r(4, 6)]);
        // A unit collapsed again is not counted twice.
        s.on_collapse(&outcome(&[(r(2, 4), UnitResult::Done)]), 2_000);
        assert_eq!(s.expected_anon_huge_bytes, Some(4 * MIB));
    }

    #[test]
    fn units_with_swapped_or_too_many_unpopulated_pages_are_left_out() {
        const PRESENT: u64 = 1 << 63;
        const SWAPPED: u64 = 1 << 62;
        let start = 4 * MIB;
        let unit = |f: &dyn Fn(usize) -> u64| -> Vec<PagemapEntry> {
            (0..512).map(|k| PagemapEntry(f(k))).collect()
        };
        let none = HashSet::new();
        let full = unit(&|_| PRESENT | 1000);
        assert_eq!(unit_verdict(&full, start, &none, 0, None), UnitVerdict::Collapse);
        // Pages only read map the zero page (PFN 7 here): none, as unmapped ones.
        let read_only = unit(&|k| PRESENT | if k < 10 { 7 } else { 1000 + k as u64 });
        assert_eq!(unit_verdict(&read_only, start, &none, 9, Some(7)), UnitVerdict::Sparse { none: 10 });
        assert_eq!(unit_verdict(&read_only, start, &none, 10, Some(7)), UnitVerdict::Collapse);
        assert_eq!(unit_verdict(&read_only, start, &none, 0, None), UnitVerdict::Collapse);
        // Three holes: sparse for 0 and 2, collapsed from 3 up.
        let holes = unit(&|k| if k % 100 == 7 && k < 300 { 0 } else { PRESENT });
        assert_eq!(unit_verdict(&holes, start, &none, 0, None), UnitVerdict::Sparse { none: 3 });
        assert_eq!(unit_verdict(&holes, start, &none, 2, None), UnitVerdict::Sparse { none: 3 });
        assert_eq!(unit_verdict(&holes, start, &none, 3, None), UnitVerdict::Collapse);
        // Never touched at all: sparse, whatever the bound below 512.
        let empty = unit(&|_| 0);
        assert_eq!(unit_verdict(&empty, start, &none, 511, None), UnitVerdict::Sparse { none: 512 });
        // A swapped page counts as populated when the probe sent it out, and
        // keeps the unit out otherwise.
        let one_out = unit(&|k| if k == 9 { SWAPPED } else { PRESENT });
        assert_eq!(unit_verdict(&one_out, start, &none, 0, None), UnitVerdict::Swapped);
        let probed: HashSet<u64> = [start + 9 * PAGE_SIZE].into();
        assert_eq!(unit_verdict(&one_out, start, &probed, 0, None), UnitVerdict::Collapse);
    }

    #[test]
    fn helpers() {
        assert_eq!(units_in(AddrRange::new(MIB, 7 * MIB)), Some(r(2, 6)));
        assert_eq!(units_in(AddrRange::new(MIB, 3 * MIB)), None);
        assert_eq!(normalize(vec![r(4, 6), r(0, 2), r(2, 3)]), [r(0, 3), r(4, 6)]);
    }
}
