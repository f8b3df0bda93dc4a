//! Actions on a target's memory through its pidfd and `process_madvise`:
//! pageout, cold, willneed, collapse (THP promotion) and split (THP demotion),
//! batched into iovecs, with per-action outcomes (bytes, errors by errno).
//!
//! Kernel behaviour this relies on (mm/madvise.c, `vector_madvise`): one call
//! takes at most `IOV_MAX` iovecs and at most `MAX_RW_COUNT` bytes in all
//! (more is silently truncated by `import_iovec`); it works through them in
//! order and stops at the first one that fails, returning the bytes done
//! before it, or the error if nothing was done. So after a short count we
//! call again from the failing range, which then reports its errno, and go
//! on after it. A target that exited answers `ESRCH`: an ordinary outcome.
//!
//! Demotion (issue 5): a remote `MADV_NOHUGEPAGE` is impossible through
//! process_madvise, so [`MemAction::Split`] gives a huge page back by a
//! partial `MADV_COLD` of its first base page: for a PMD-mapped THP the
//! kernel splits the folio when the range does not cover the whole PMD
//! (`madvise_cold_or_pageout_pte_range`), leaving base pages in RAM that a
//! later pageout can reclaim one by one. Paging the whole cold huge page out
//! ([`MemAction::Pageout`] on the 2 MiB unit) is the other way, for memory
//! that should leave RAM at once.

use damon_core::ops::sys::{self as dsys, IOV_MAX, MADV_COLD, MADV_COLLAPSE, MADV_PAGEOUT, MADV_WILLNEED};
use damon_core::{AddrRange, PAGE_SIZE};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// The PMD huge page size on x86-64 (and arm64 with 4 KiB pages).
pub const HPAGE_SIZE: u64 = 2 << 20;
/// The most bytes one process_madvise call takes (`MAX_RW_COUNT`, `INT_MAX & PAGE_MASK`).
pub const MAX_BYTES_PER_CALL: u64 = 0x7fff_f000;
/// Ranges larger than this are cut into pieces of this size, so a batch
/// never reaches `MAX_BYTES_PER_CALL` through one range.
const MAX_RANGE_PIECE: u64 = 1 << 30;

/// An action on memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemAction {
    /// `MADV_PAGEOUT`: reclaim now (to swap, for anonymous memory).
    Pageout,
    /// `MADV_COLD`: deactivate, reclaim first under pressure.
    Cold,
    /// `MADV_WILLNEED`: start reading swapped pages back (into the swap cache).
    Willneed,
    /// `MADV_COLLAPSE`: back each whole, aligned 2 MiB unit with a huge page now.
    Collapse,
    /// Split the huge page of each whole, aligned 2 MiB unit (partial `MADV_COLD`).
    Split,
}

impl MemAction {
    /// The action a DAMOS / etmem scheme action maps to; `stat` maps to none.
    pub fn from_scheme(a: conf::Action) -> Option<MemAction> {
        Some(match a {
            conf::Action::Pageout => MemAction::Pageout,
            conf::Action::Cold => MemAction::Cold,
            conf::Action::Willneed => MemAction::Willneed,
            conf::Action::Hugepage => MemAction::Collapse,
            conf::Action::Nohugepage => MemAction::Split,
            conf::Action::Stat => return None,
        })
    }

    /// The madvise advice passed to the kernel.
    pub fn advice(self) -> i32 {
        match self {
            MemAction::Pageout => MADV_PAGEOUT,
            MemAction::Cold | MemAction::Split => MADV_COLD,
            MemAction::Willneed => MADV_WILLNEED,
            MemAction::Collapse => MADV_COLLAPSE,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MemAction::Pageout => "pageout",
            MemAction::Cold => "cold",
            MemAction::Willneed => "willneed",
            MemAction::Collapse => "collapse",
            MemAction::Split => "split",
        }
    }

    /// Works per aligned 2 MiB unit, one iovec per unit, reported per unit.
    pub fn per_unit(self) -> bool {
        matches!(self, MemAction::Collapse | MemAction::Split)
    }
}

/// The process an action applies to. Real actors need the pidfd; a
/// simulated actor may go by `pid` alone.
#[derive(Debug, Clone, Copy)]
pub struct TargetRef<'a> {
    pub pid: u32,
    pub pidfd: Option<BorrowedFd<'a>>,
}

impl<'a> TargetRef<'a> {
    pub fn process(pid: u32, pidfd: BorrowedFd<'a>) -> TargetRef<'a> {
        TargetRef { pid, pidfd: Some(pidfd) }
    }

    /// A target without a pidfd (simulated address spaces).
    pub fn simulated(pid: u32) -> TargetRef<'static> {
        TargetRef { pid, pidfd: None }
    }
}

/// Something that applies actions to a target's memory: the real
/// [`ProcessMadvise`], or a simulated actor in tests and demos.
pub trait MemoryActor {
    fn apply(&mut self, target: TargetRef<'_>, ranges: &[AddrRange], action: MemAction) -> ActionOutcome;
}

/// Failures of one errno.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrnoCount {
    pub ranges: u64,
    pub bytes: u64,
}

/// What happened to one 2 MiB unit of a collapse or split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitResult {
    Done,
    /// The kernel says this unit cannot be collapsed (`EINVAL`: no-hugepage
    /// mapping, unsuitable VMA, …); retrying will not help.
    Refused {
        errno: i32,
    },
    /// It could not be done now (`EAGAIN`, `ENOMEM`, …); it may work later.
    Failed {
        errno: i32,
    },
    /// The action stopped before this unit (target gone, no permission).
    NotTried,
    /// Left alone: it holds swapped-out pages, which a collapse would fault back in.
    SwappedOut,
}

/// One 2 MiB unit of a collapse or split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UnitOutcome {
    pub range: AddrRange,
    pub result: UnitResult,
}

/// Counts of per-unit results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UnitCounts {
    pub done: u64,
    pub refused: u64,
    pub failed: u64,
    pub not_tried: u64,
    pub swapped_out: u64,
}

/// The outcome of one `apply`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionOutcome {
    pub action: MemAction,
    /// Bytes handed to the kernel (after merging; for collapse and split,
    /// the whole units).
    pub bytes_tried: u64,
    /// Bytes the kernel accepted the advice for. For pageout this is not
    /// the memory reclaimed (pages already swapped, or not reclaimable, count
    /// too): measure that with VmSwap / pagemap.
    pub bytes_applied: u64,
    pub ranges_tried: u64,
    pub ranges_applied: u64,
    /// Bytes in the given ranges not tried: for collapse and split, the
    /// parts that do not fill a whole aligned 2 MiB unit.
    pub bytes_skipped: u64,
    /// process_madvise calls made.
    pub calls: u64,
    /// Per-range failures by errno (the range's bytes count as not applied,
    /// though for `ENOMEM` on a range with holes the mapped parts were advised).
    pub errors: BTreeMap<i32, ErrnoCount>,
    /// The errno that stopped the whole action (`ESRCH`, `EPERM`, `EBADF` …).
    pub stopped: Option<i32>,
    /// The target exited (`ESRCH`).
    pub vanished: bool,
    /// Per-unit results, for collapse and split (empty otherwise).
    pub units: Vec<UnitOutcome>,
    /// CPU time the calling thread spent in the action (user + system), to
    /// charge a CPU-time quota; zero for actors that do not measure it.
    pub cpu_time: Duration,
}

impl ActionOutcome {
    pub fn new(action: MemAction) -> ActionOutcome {
        ActionOutcome {
            action,
            bytes_tried: 0,
            bytes_applied: 0,
            ranges_tried: 0,
            ranges_applied: 0,
            bytes_skipped: 0,
            calls: 0,
            errors: BTreeMap::new(),
            stopped: None,
            vanished: false,
            units: Vec::new(),
            cpu_time: Duration::ZERO,
        }
    }

    pub fn unit_counts(&self) -> UnitCounts {
        let mut c = UnitCounts::default();
        for u in &self.units {
            match u.result {
                UnitResult::Done => c.done += 1,
                UnitResult::Refused { .. } => c.refused += 1,
                UnitResult::Failed { .. } => c.failed += 1,
                UnitResult::NotTried => c.not_tried += 1,
                UnitResult::SwappedOut => c.swapped_out += 1,
            }
        }
        c
    }

    fn fail(&mut self, errno: i32, bytes: u64) {
        let e = self.errors.entry(errno).or_default();
        e.ranges += 1;
        e.bytes += bytes;
    }
}

/// Cumulative counters over many outcomes of one action (for reports).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActionStats {
    pub applies: u64,
    pub bytes_tried: u64,
    pub bytes_applied: u64,
    pub calls: u64,
    pub errors: BTreeMap<i32, ErrnoCount>,
    pub vanished: u64,
    pub units: UnitCounts,
    pub cpu_time: Duration,
}

impl ActionStats {
    pub fn add(&mut self, o: &ActionOutcome) {
        self.applies += 1;
        self.bytes_tried += o.bytes_tried;
        self.bytes_applied += o.bytes_applied;
        self.calls += o.calls;
        for (errno, c) in &o.errors {
            let e = self.errors.entry(*errno).or_default();
            e.ranges += c.ranges;
            e.bytes += c.bytes;
        }
        self.vanished += u64::from(o.vanished);
        let u = o.unit_counts();
        self.units.done += u.done;
        self.units.refused += u.refused;
        self.units.failed += u.failed;
        self.units.not_tried += u.not_tried;
        self.units.swapped_out += u.swapped_out;
        self.cpu_time += o.cpu_time;
    }
}

/// The iovecs for an action, ready to be issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub action: MemAction,
    /// `(start, len)` in the target's address space, in issue order.
    pub iovs: Vec<(u64, u64)>,
    /// Bytes of the input not covered by `iovs` (collapse and split only).
    pub bytes_skipped: u64,
}

impl Prepared {
    /// The bytes iov `i` stands for (a split's one-page iovec stands for its 2 MiB unit).
    fn weight(&self, i: usize) -> u64 {
        if self.action == MemAction::Split { HPAGE_SIZE } else { self.iovs[i].1 }
    }

    fn unit(&self, i: usize) -> AddrRange {
        let s = self.iovs[i].0;
        AddrRange::new(s, s + HPAGE_SIZE)
    }
}

/// Sorted, page-aligned (start down, end up) ranges with overlapping and
/// adjacent ones merged.
pub fn merge_ranges(ranges: &[AddrRange]) -> Vec<AddrRange> {
    let mut v: Vec<AddrRange> = ranges
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| AddrRange { start: r.start.align_down(PAGE_SIZE), end: r.end.align_up(PAGE_SIZE) })
        .collect();
    v.sort();
    let mut out: Vec<AddrRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Turns ranges into the iovecs for `action`: merged and cut into pieces
/// for pageout / cold / willneed; one iovec per whole aligned 2 MiB unit
/// for collapse (the unit) and split (its first page).
pub fn prepare(ranges: &[AddrRange], action: MemAction) -> Prepared {
    let merged = merge_ranges(ranges);
    let mut iovs = Vec::new();
    let mut bytes_skipped = 0;
    for r in merged {
        if action.per_unit() {
            let start = r.start.align_up(HPAGE_SIZE).0;
            let end = r.end.align_down(HPAGE_SIZE).0;
            if start >= end {
                bytes_skipped += r.len();
                continue;
            }
            bytes_skipped += r.len() - (end - start);
            let len = if action == MemAction::Split { PAGE_SIZE } else { HPAGE_SIZE };
            iovs.extend((start..end).step_by(HPAGE_SIZE as usize).map(|s| (s, len)));
        } else {
            let mut s = r.start.0;
            while s < r.end.0 {
                let len = (r.end.0 - s).min(MAX_RANGE_PIECE);
                iovs.push((s, len));
                s += len;
            }
        }
    }
    Prepared { action, iovs, bytes_skipped }
}

/// Errors that concern the whole call, not one range: stop the action.
fn stops_everything(errno: i32) -> bool {
    matches!(
        errno,
        libc::ESRCH | libc::EPERM | libc::EACCES | libc::EBADF | libc::ENOSYS | libc::EFAULT | libc::EINTR
    )
}

/// Issues `prepared` through `call` (a process_madvise over a batch of
/// iovecs, returning bytes done), batching at most [`IOV_MAX`] iovecs and
/// [`MAX_BYTES_PER_CALL`] bytes per call, continuing after failing ranges.
/// `call` is a parameter so the same loop drives the real syscall and unit
/// tests of the short-count handling.
pub fn execute(
    prepared: &Prepared,
    mut call: impl FnMut(&[(u64, u64)]) -> io::Result<usize>,
) -> ActionOutcome {
    let p = prepared;
    let mut out = ActionOutcome::new(p.action);
    out.bytes_skipped = p.bytes_skipped;
    out.ranges_tried = p.iovs.len() as u64;
    out.bytes_tried = (0..p.iovs.len()).map(|i| p.weight(i)).sum();
    let mut unit_results: Vec<UnitResult> =
        if p.action.per_unit() { vec![UnitResult::NotTried; p.iovs.len()] } else { Vec::new() };
    let unit_error = |errno: i32| {
        if errno == libc::EINVAL { UnitResult::Refused { errno } } else { UnitResult::Failed { errno } }
    };

    let mut i = 0; // first iovec not done yet
    let mut off = 0; // bytes of iovs[i] already done
    let mut batch: Vec<(u64, u64)> = Vec::with_capacity(IOV_MAX.min(p.iovs.len()));
    while i < p.iovs.len() {
        batch.clear();
        let mut total = p.iovs[i].1 - off;
        batch.push((p.iovs[i].0 + off, total));
        let mut j = i + 1;
        while j < p.iovs.len() && batch.len() < IOV_MAX && total + p.iovs[j].1 <= MAX_BYTES_PER_CALL {
            batch.push(p.iovs[j]);
            total += p.iovs[j].1;
            j += 1;
        }
        out.calls += 1;
        match call(&batch) {
            Ok(0) => {
                // No progress and no error: should not happen; count the
                // first range as failed (errno 0) so the loop always advances.
                out.fail(0, p.weight(i));
                if p.action.per_unit() {
                    unit_results[i] = UnitResult::Failed { errno: 0 };
                }
                i += 1;
                off = 0;
            }
            Ok(done) => {
                let mut rem = (done as u64).min(total);
                while rem > 0 {
                    let left = p.iovs[i].1 - off;
                    if rem >= left {
                        rem -= left;
                        out.ranges_applied += 1;
                        out.bytes_applied += if p.action == MemAction::Split { HPAGE_SIZE } else { left };
                        if p.action.per_unit() {
                            unit_results[i] = UnitResult::Done;
                        }
                        i += 1;
                        off = 0;
                    } else {
                        // Only a call truncated by the kernel ends inside a range.
                        out.bytes_applied += rem;
                        off += rem;
                        rem = 0;
                    }
                }
            }
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(0);
                if stops_everything(errno) {
                    out.stopped = Some(errno);
                    out.vanished = errno == libc::ESRCH;
                    break;
                }
                let weight = if p.action == MemAction::Split { HPAGE_SIZE } else { p.iovs[i].1 - off };
                out.fail(errno, weight);
                if p.action.per_unit() {
                    unit_results[i] = unit_error(errno);
                }
                i += 1;
                off = 0;
            }
        }
    }
    if p.action.per_unit() {
        out.units = unit_results
            .into_iter()
            .enumerate()
            .map(|(k, result)| UnitOutcome { range: p.unit(k), result })
            .collect();
    }
    out
}

/// The real actor: `process_madvise` on the target's pidfd, batched by
/// [`execute`], with the thread CPU time it cost.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessMadvise {
    /// Also collapse units holding swapped-out pages. Off by default:
    /// MADV_COLLAPSE would fault every one of them back in (issue 5: never
    /// collapse a range holding swapped pages), so such units are checked in
    /// /proc/PID/pagemap first and reported as [`UnitResult::SwappedOut`].
    pub collapse_swapped_units: bool,
}

/// Bit 62 of a pagemap entry: the page is swapped out (Documentation/admin-guide/mm/pagemap.rst).
const PAGEMAP_SWAPPED: u64 = 1 << 62;

/// For each iovec (a 2 MiB unit) of `prepared`, whether any of its pages is
/// swapped out, from /proc/PID/pagemap. The pidfd is checked after opening
/// the file, so a reused pid cannot be read by mistake.
fn swapped_units(pid: u32, pidfd: BorrowedFd<'_>, prepared: &Prepared) -> io::Result<Vec<bool>> {
    use std::os::unix::fs::FileExt;
    let gone = || io::Error::from_raw_os_error(libc::ESRCH);
    let f = std::fs::File::open(format!("/proc/{pid}/pagemap"))
        .map_err(|e| if dsys::pidfd_is_alive(pidfd) { e } else { gone() })?;
    if !dsys::pidfd_is_alive(pidfd) {
        return Err(gone());
    }
    let mut buf = vec![0u8; (HPAGE_SIZE / PAGE_SIZE * 8) as usize];
    let mut out = Vec::with_capacity(prepared.iovs.len());
    for &(start, _) in &prepared.iovs {
        f.read_exact_at(&mut buf, start / PAGE_SIZE * 8)?;
        let any = buf.chunks_exact(8).any(|e| {
            let v = u64::from_ne_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
            v & PAGEMAP_SWAPPED != 0
        });
        out.push(any);
    }
    Ok(out)
}

/// Splits the units of `prepared` into those to issue and those left out
/// because `left_out[i]` is set (reported with `why`).
pub fn leave_out_units(
    prepared: &Prepared,
    left_out: &[bool],
    why: UnitResult,
) -> (Prepared, Vec<UnitOutcome>) {
    let mut keep =
        Prepared { action: prepared.action, iovs: Vec::new(), bytes_skipped: prepared.bytes_skipped };
    let mut out = Vec::new();
    for (i, &iov) in prepared.iovs.iter().enumerate() {
        if left_out.get(i).copied().unwrap_or(false) {
            out.push(UnitOutcome { range: prepared.unit(i), result: why });
            keep.bytes_skipped += HPAGE_SIZE;
        } else {
            keep.iovs.push(iov);
        }
    }
    (keep, out)
}

impl MemoryActor for ProcessMadvise {
    fn apply(&mut self, target: TargetRef<'_>, ranges: &[AddrRange], action: MemAction) -> ActionOutcome {
        let cpu0 = crate::sys::thread_cpu_time();
        let mut prepared = prepare(ranges, action);
        let mut left_out = Vec::new();
        let stop = |errno: i32| {
            let mut o = ActionOutcome::new(action);
            o.bytes_tried = (0..prepared.iovs.len()).map(|i| prepared.weight(i)).sum();
            o.ranges_tried = prepared.iovs.len() as u64;
            o.stopped = Some(errno);
            o.vanished = errno == libc::ESRCH;
            o
        };
        let mut out = match target.pidfd {
            None => stop(libc::EBADF),
            Some(fd) => {
                let check = (action == MemAction::Collapse && !self.collapse_swapped_units)
                    .then(|| swapped_units(target.pid, fd, &prepared));
                match check {
                    Some(Err(e)) => stop(e.raw_os_error().unwrap_or(libc::EIO)),
                    Some(Ok(swapped)) => {
                        let (keep, out) = leave_out_units(&prepared, &swapped, UnitResult::SwappedOut);
                        prepared = keep;
                        left_out = out;
                        execute(&prepared, |iov| dsys::process_madvise(fd, iov, action.advice()))
                    }
                    None => execute(&prepared, |iov| dsys::process_madvise(fd, iov, action.advice())),
                }
            }
        };
        if !left_out.is_empty() {
            out.units.extend(left_out);
            out.units.sort_by_key(|u| u.range.start);
        }
        out.cpu_time = crate::sys::thread_cpu_time().saturating_sub(cpu0);
        if out.vanished {
            tracing::debug!(pid = target.pid, action = action.name(), "target vanished");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn r(s: u64, e: u64) -> AddrRange {
        AddrRange::new(s, e)
    }

    #[test]
    fn merge_sorts_aligns_and_joins_adjacent_ranges() {
        let m = merge_ranges(&[
            r(0x5000, 0x6000),
            r(0x1000, 0x2000),
            r(0x2000, 0x3001),
            r(0x2800, 0x2900),
            r(9, 9),
        ]);
        assert_eq!(m, vec![r(0x1000, 0x4000), r(0x5000, 0x6000)]);
    }

    #[test]
    fn prepare_cuts_huge_ranges_into_pieces() {
        let p = prepare(&[r(0, 3 << 30)], MemAction::Pageout);
        assert_eq!(p.iovs, vec![(0, 1 << 30), (1 << 30, 1 << 30), (2 << 30, 1 << 30)]);
    }

    #[test]
    fn prepare_collapse_keeps_whole_aligned_units_only() {
        // 1 MiB .. 7 MiB: units at 2 and 4 MiB; 1 MiB head and 1 MiB tail skipped.
        let p = prepare(&[r(MIB, 7 * MIB)], MemAction::Collapse);
        assert_eq!(p.iovs, vec![(2 * MIB, 2 * MIB), (4 * MIB, 2 * MIB)]);
        assert_eq!(p.bytes_skipped, 2 * MIB);
        let s = prepare(&[r(MIB, 7 * MIB), r(10 * MIB, 11 * MIB)], MemAction::Split);
        assert_eq!(s.iovs, vec![(2 * MIB, 4096), (4 * MIB, 4096)], "split: first page of each unit");
        assert_eq!(s.bytes_skipped, 3 * MIB);
    }

    /// A fake kernel for the loop: fails the ranges starting at `bad`
    /// addresses with their errno and stops at them, like `vector_madvise`.
    struct FakeKernel {
        bad: Vec<(u64, i32)>,
        calls: Vec<usize>,
    }

    impl FakeKernel {
        fn call(&mut self, iov: &[(u64, u64)]) -> io::Result<usize> {
            self.calls.push(iov.len());
            assert!(iov.len() <= IOV_MAX);
            assert!(iov.iter().map(|v| v.1).sum::<u64>() <= MAX_BYTES_PER_CALL);
            let mut done = 0usize;
            for &(s, l) in iov {
                if let Some(&(_, errno)) = self.bad.iter().find(|b| b.0 == s) {
                    return if done > 0 { Ok(done) } else { Err(io::Error::from_raw_os_error(errno)) };
                }
                done += l as usize;
            }
            Ok(done)
        }
    }

    #[test]
    fn short_counts_continue_after_the_failing_range() {
        let ranges: Vec<AddrRange> = (0..10).map(|k| r(k * 2 * 4096, k * 2 * 4096 + 4096)).collect();
        let p = prepare(&ranges, MemAction::Pageout);
        let mut k =
            FakeKernel { bad: vec![(3 * 8192, libc::ENOMEM), (4 * 8192, libc::EINVAL)], calls: vec![] };
        let o = execute(&p, |iov| k.call(iov));
        assert_eq!(o.ranges_tried, 10);
        assert_eq!(o.ranges_applied, 8);
        assert_eq!(o.bytes_applied, 8 * 4096);
        assert_eq!(o.errors[&libc::ENOMEM], ErrnoCount { ranges: 1, bytes: 4096 });
        assert_eq!(o.errors[&libc::EINVAL], ErrnoCount { ranges: 1, bytes: 4096 });
        // 10 ranges → short (3 done) → ENOMEM → EINVAL → the last 5.
        assert_eq!(k.calls, vec![10, 7, 6, 5]);
        assert_eq!(o.calls, 4);
        assert_eq!(o.stopped, None);
    }

    #[test]
    fn batches_respect_iov_max() {
        let ranges: Vec<AddrRange> = (0..2500u64).map(|k| r(k * 8192, k * 8192 + 4096)).collect();
        let p = prepare(&ranges, MemAction::Cold);
        let mut k = FakeKernel { bad: vec![], calls: vec![] };
        let o = execute(&p, |iov| k.call(iov));
        assert_eq!(k.calls, vec![1024, 1024, 452]);
        assert_eq!(o.bytes_applied, 2500 * 4096);
    }

    #[test]
    fn batches_respect_the_byte_limit_and_truncation() {
        let p = prepare(&[r(0, 4 << 30)], MemAction::Pageout);
        // A kernel that truncates to MAX_RW_COUNT, as import_iovec does.
        let mut sizes = vec![];
        let o = execute(&p, |iov| {
            let total: u64 = iov.iter().map(|v| v.1).sum();
            sizes.push(total);
            Ok(total.min(MAX_BYTES_PER_CALL) as usize)
        });
        assert!(sizes.iter().all(|&s| s <= MAX_BYTES_PER_CALL));
        assert_eq!(o.bytes_applied, 4 << 30);
        assert!(o.errors.is_empty());
    }

    #[test]
    fn a_vanished_target_stops_the_action() {
        let p = prepare(&[r(0, 4096), r(8192, 12288)], MemAction::Pageout);
        let o = execute(&p, |_| Err(io::Error::from_raw_os_error(libc::ESRCH)));
        assert!(o.vanished);
        assert_eq!(o.stopped, Some(libc::ESRCH));
        assert_eq!(o.calls, 1);
        assert_eq!(o.bytes_applied, 0);
        assert!(o.errors.is_empty(), "not a per-range error");
    }

    #[test]
    fn collapse_reports_each_unit() {
        let p = prepare(&[r(0, 8 * MIB)], MemAction::Collapse);
        let mut k = FakeKernel { bad: vec![(2 * MIB, libc::EINVAL), (4 * MIB, libc::EAGAIN)], calls: vec![] };
        let o = execute(&p, |iov| k.call(iov));
        let res: Vec<UnitResult> = o.units.iter().map(|u| u.result).collect();
        assert_eq!(
            res,
            vec![
                UnitResult::Done,
                UnitResult::Refused { errno: libc::EINVAL },
                UnitResult::Failed { errno: libc::EAGAIN },
                UnitResult::Done
            ]
        );
        assert_eq!(o.units[1].range, r(2 * MIB, 4 * MIB));
        assert_eq!(
            o.unit_counts(),
            UnitCounts { done: 2, refused: 1, failed: 1, not_tried: 0, swapped_out: 0 }
        );
        let mut stats = ActionStats::default();
        stats.add(&o);
        stats.add(&o);
        assert_eq!(stats.units.done, 4);
        assert_eq!(stats.errors[&libc::EAGAIN].ranges, 2);
    }

    #[test]
    fn split_counts_whole_units() {
        let p = prepare(&[r(0, 4 * MIB)], MemAction::Split);
        let o = execute(&p, |iov| Ok(iov.iter().map(|v| v.1 as usize).sum()));
        assert_eq!(o.bytes_tried, 4 * MIB);
        assert_eq!(o.bytes_applied, 4 * MIB);
        assert_eq!(o.unit_counts().done, 2);
    }

    #[test]
    fn units_after_a_stop_are_not_tried() {
        let p = prepare(&[r(0, 6 * MIB)], MemAction::Collapse);
        let mut n = 0;
        let o = execute(&p, |iov| {
            n += 1;
            if n == 1 { Ok(iov[0].1 as usize) } else { Err(io::Error::from_raw_os_error(libc::ESRCH)) }
        });
        assert_eq!(
            o.unit_counts(),
            UnitCounts { done: 1, refused: 0, failed: 0, not_tried: 2, swapped_out: 0 }
        );
        assert!(o.vanished);
    }

    #[test]
    fn units_left_out_are_reported_and_not_issued() {
        let p = prepare(&[r(0, 6 * MIB)], MemAction::Collapse);
        let (keep, out) = leave_out_units(&p, &[false, true, false], UnitResult::SwappedOut);
        assert_eq!(keep.iovs, vec![(0, 2 * MIB), (4 * MIB, 2 * MIB)]);
        assert_eq!(keep.bytes_skipped, 2 * MIB);
        assert_eq!(out, vec![UnitOutcome { range: r(2 * MIB, 4 * MIB), result: UnitResult::SwappedOut }]);
    }

    #[test]
    fn scheme_actions_map() {
        assert_eq!(MemAction::from_scheme(conf::Action::Hugepage), Some(MemAction::Collapse));
        assert_eq!(MemAction::from_scheme(conf::Action::Nohugepage), Some(MemAction::Split));
        assert_eq!(MemAction::from_scheme(conf::Action::Stat), None);
        assert_eq!(MemAction::Split.advice(), MADV_COLD);
    }

    #[test]
    fn no_pidfd_means_ebadf() {
        let o = ProcessMadvise::default().apply(TargetRef::simulated(1), &[r(0, 4096)], MemAction::Pageout);
        assert_eq!(o.stopped, Some(libc::EBADF));
        assert_eq!(o.calls, 0);
    }
}
