//! The refault probe: arm pages out each sampled page with
//! `process_madvise(MADV_PAGEOUT)`; check reads its pagemap present bit, and
//! a page present again was touched. Works on any kernel with swap.
//!
//! Decisions (issue 3, item 4):
//! - **No swap space free** (`SwapFree` of /proc/meminfo, read once per arm):
//!   nothing is paged out; the samples are reported *not accessed* and
//!   counted in [`RefaultStats::skipped_no_swap`]. A pageout would fail and
//!   only move the page to the active list, changing reclaim's view.
//! - **Pages that do not leave RAM** anyway (swap full meanwhile, page
//!   pinned or isolated elsewhere) are found by one pagemap read right after
//!   the pageout: still present with the same PFN. They are reported *not
//!   accessed* and counted in [`RefaultStats::failed_arms`], so the engine
//!   can tell the user that the probe sees nothing there. A page present
//!   with a *different* PFN left RAM and was already faulted back: accessed.
//! - **Pages already out of RAM** at arm (swapped, or never touched) need no
//!   pageout: present at check still means touched.
//! - **Huge pages are never split to probe them.** A sample inside a large
//!   folio (PMD-mapped THP or a PTE-mapped mTHP, found through
//!   /proc/kpageflags) either pages out the whole folio, exactly its mapped
//!   range, so the kernel reclaims it as one unit ([`ThpPolicy::WholeFolio`],
//!   the default; the sample is then accessed when any page of the folio is
//!   back), or is skipped ([`ThpPolicy::Skip`]). A folio that is not mapped
//!   whole and contiguously inside one VMA would be split by the pageout
//!   walk, and reclaim splits a folio it cannot swap whole: such folios, and
//!   any folio while less than twice its size of swap is free, are skipped.
//!   Skips count in [`RefaultStats::skipped_huge`]. (Reclaim may still split
//!   a THP when the swap device has no free 2 MiB cluster; that is reclaim's
//!   own behaviour, as with DAMON's pageout action.)
//! - **Huge pages we promote are held, not probed** ([`ThpPolicy::Hold`],
//!   issue 5): a PMD-sized folio paged out whole comes back as base pages
//!   (anonymous swap-in allocates below PMD order), so probing undoes the
//!   collapse, and this host has no other way to see a huge page's accesses
//!   (no idle page tracking; smaps' `Referenced` is per VMA). A sample in a
//!   large folio is answered from a per-2 MiB-unit hold instead: *accessed*
//!   for `ttl` after the folio is first seen (it is there because it was hot
//!   when collapsed, or because the program asked for it), then *unknown*
//!   (counted as not accessed) until the folio goes away. An expired hold
//!   lets the region go cold; the cold rule then demotes (splits) the unit,
//!   and its base pages are probed again: hot units are collapsed again,
//!   cold ones stay split. Nothing is paged out for a held sample. ARCHITECTURE.md,
//!   "THP and the refault probe", has the trade-off.
//! - Only private anonymous pages mapped by this process alone are probed:
//!   file pages, shared anonymous pages, pages shared after fork (pagemap
//!   "exclusive" bit clear; the kernel would not page them out), the zero
//!   page and KSM pages are skipped and counted.
//! - On disk swap (asynchronous writeback) a page refaulted from the swap
//!   cache before the verification keeps its PFN and is counted as a failed
//!   arm; on zram (synchronous) the PFN always changes.
//!
//! Needs root: PFNs in pagemap and /proc/kpageflags are root-only, and
//! `process_madvise` on another process needs CAP_SYS_NICE.

use crate::ops::kpageflags::{KPAGEFLAGS_PATH, KpageFlags, KpageflagsFile, PMD_PAGES};
use crate::ops::pagemap::PagemapEntry;
use crate::ops::pidfd::ProcTarget;
use crate::ops::sys::{self, IOV_MAX, MADV_PAGEOUT};
use crate::ops::{ProbeStats, SampleState};
use crate::probe::{AccessProbe, ProbeError, Sees};
use crate::{Addr, AddrRange, PAGE_SIZE};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to do with a sample that falls in a huge (large) folio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThpPolicy {
    /// Page out the whole folio (up to 2 MiB); accessed when any page of it
    /// comes back.
    #[default]
    WholeFolio,
    /// Leave it in RAM and report the sample not accessed (counted).
    Skip,
    /// Leave it in RAM and answer from a hold on its 2 MiB unit: accessed
    /// for `ttl` after the folio was first seen (spread by ±25 % per unit so
    /// that units promoted together do not expire together), then unknown
    /// until the folio is gone. `None`: the hold never expires.
    Hold { ttl: Option<Duration> },
}

/// Options of the refault probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefaultOptions {
    pub thp: ThpPolicy,
    /// Where kpageflags is (a fixture in tests).
    pub kpageflags_path: PathBuf,
    /// Where `SwapFree` is read before each arm (a fixture in tests).
    pub meminfo_path: PathBuf,
}

impl Default for RefaultOptions {
    fn default() -> Self {
        RefaultOptions {
            thp: ThpPolicy::default(),
            kpageflags_path: PathBuf::from(KPAGEFLAGS_PATH),
            meminfo_path: PathBuf::from("/proc/meminfo"),
        }
    }
}

/// Counters since the probe was made; the engine shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RefaultStats {
    /// Sampled base pages we paged out and saw leave RAM.
    pub pages_armed: u64,
    /// Sampled pages already out of RAM at arm (swapped or never touched).
    pub pages_already_out: u64,
    /// Large folios paged out whole for a sample inside them.
    pub folios_armed: u64,
    /// Bytes we asked the kernel to page out.
    pub bytes_paged_out: u64,
    /// Samples found touched at check (refaults).
    pub refaults_seen: u64,
    /// Pages back in RAM between the pageout and its verification (reported accessed).
    pub refaulted_before_verify: u64,
    /// Samples in a huge or large folio left alone (policy, partly mapped folio, hugetlb).
    pub skipped_huge: u64,
    /// Samples in a large folio answered *accessed* from its unit's hold ([`ThpPolicy::Hold`]).
    pub held_huge: u64,
    /// Samples in a large folio whose hold had expired (reported unknown).
    pub held_expired: u64,
    /// Samples on file pages, shared anonymous pages, or pages also mapped
    /// by another process (the kernel would not page those out).
    pub skipped_file_or_shared: u64,
    /// Samples not paged out because no swap space was free: the pageout
    /// would fail and only mark the page active.
    pub skipped_no_swap: u64,
    /// Samples on the zero page or a KSM page.
    pub skipped_zero_or_ksm: u64,
    /// Samples whose PFN was hidden (not root): nothing can be verified.
    pub skipped_pfn_hidden: u64,
    /// Pages still in RAM, same PFN, after the pageout (no swap space, shared, locked...).
    pub failed_arms: u64,
    /// Ranges the kernel refused to page out (unmapped meanwhile, VM_LOCKED, ...).
    pub pageout_errors: u64,
}

/// A sample's state between arm and check.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Armed {
    /// Out of RAM (by our pageout or already): accessed iff present at check.
    Out,
    /// Came back before verification: accessed.
    AccessedEarly,
    /// A large folio paged out whole: index into `Round::folios`.
    Folio(usize),
    /// Not probed (skipped, stayed in RAM, refused): reported not accessed;
    /// [`RefaultStats`] counts why.
    Skipped,
    /// In a held large folio: accessed while the hold lasts.
    Held { accessed: bool },
}

/// The hold on one 2 MiB unit's large folio ([`ThpPolicy::Hold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hold {
    /// The PMD-aligned block of PFNs the folio lies in: another block means
    /// another folio (split and collapsed again, or migrated), a new hold.
    pfn_block: u64,
    first_seen: Instant,
    last_seen: Instant,
}

/// Holds not looked at for this long are forgotten (bounds the map).
const HOLD_FORGET: Duration = Duration::from_secs(600);
/// The map is pruned of forgotten holds when it grows past this.
const HOLD_PRUNE_LEN: usize = 1 << 16;
/// Bytes of the unit a hold covers (a PMD on x86-64).
const HOLD_UNIT_BYTES: u64 = 2 << 20;
/// The most pages [`RefaultProbe::take_paged_out`] keeps between two takes
/// (8 MiB of addresses; the actor that takes them keeps as many).
pub const PAGED_BY_ARMS_MAX: usize = 1 << 20;

/// `ttl` spread to 75..125 % by a hash of the unit, so that units collapsed
/// in the same aggregation do not all expire (and get split) at once.
fn spread_ttl(ttl: Duration, unit: u64) -> Duration {
    let h = (unit / HOLD_UNIT_BYTES).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54; // 0..1024
    ttl.mul_f64(0.75 + h as f64 / 2048.0)
}

/// A folio paged out whole, and which of its pages were verified out of RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ArmedFolio {
    range: AddrRange,
    /// Bit k: page k of `range` left RAM.
    out: Vec<u64>,
}

impl ArmedFolio {
    fn was_out(&self, k: usize) -> bool {
        self.out[k / 64] & (1 << (k % 64)) != 0
    }
}

/// The refault probe on one target.
#[derive(Debug)]
pub struct RefaultProbe {
    target: Arc<ProcTarget>,
    kpageflags: KpageflagsFile,
    thp: ThpPolicy,
    meminfo_path: PathBuf,
    /// The pages of the last `arm`, sorted, and their states.
    armed_pages: Vec<u64>,
    armed: Vec<Armed>,
    folios: Vec<ArmedFolio>,
    /// Holds by 2 MiB unit start ([`ThpPolicy::Hold`]).
    holds: HashMap<u64, Hold>,
    /// Base pages the arms since the last [`RefaultProbe::take_paged_out`]
    /// paged out and saw leave RAM (at most [`PAGED_BY_ARMS_MAX`]).
    paged_by_arm: Vec<u64>,
    stats: RefaultStats,
    common: ProbeStats,
}

fn page_of(a: Addr) -> u64 {
    a.0 / PAGE_SIZE * PAGE_SIZE
}

impl RefaultProbe {
    /// A refault probe on `target`. Fails when kpageflags cannot be opened
    /// (needed to never split a huge page).
    pub fn new(target: Arc<ProcTarget>, options: RefaultOptions) -> Result<RefaultProbe, ProbeError> {
        let kpageflags =
            KpageflagsFile::open(&options.kpageflags_path).map_err(|e| ProbeError::Unavailable {
                probe: "refault",
                reason: format!(
                    "cannot open {} ({e}); it tells huge pages apart so that probing never splits one",
                    options.kpageflags_path.display()
                ),
            })?;
        Ok(RefaultProbe {
            target,
            kpageflags,
            thp: options.thp,
            meminfo_path: options.meminfo_path,
            armed_pages: Vec::new(),
            armed: Vec::new(),
            folios: Vec::new(),
            holds: HashMap::new(),
            paged_by_arm: Vec::new(),
            stats: RefaultStats::default(),
            common: ProbeStats::default(),
        })
    }

    pub fn target(&self) -> &Arc<ProcTarget> {
        &self.target
    }

    /// The base pages the arms since the last call paged out (and saw leave
    /// RAM), sorted and deduplicated: swapped only because they were probed.
    /// A hot one comes back within milliseconds, an idle one stays out;
    /// whoever checks a range for swapped pages (the THP promotion, issue 5)
    /// should not count them. Every arm of an aggregation counts, not only
    /// the last: a warm region's sampled pages stay out for minutes. When
    /// nobody takes them, only the latest [`PAGED_BY_ARMS_MAX`] are kept.
    pub fn take_paged_out(&mut self) -> Vec<u64> {
        let mut pages = std::mem::take(&mut self.paged_by_arm);
        pages.sort_unstable();
        pages.dedup();
        pages
    }

    /// Refault-specific counters.
    pub fn refault_stats(&self) -> RefaultStats {
        self.stats
    }

    /// Counters common to every probe.
    pub fn stats(&self) -> ProbeStats {
        self.common
    }

    /// `SwapFree` of meminfo, in bytes.
    fn swap_free_bytes(&self) -> Result<u64, ProbeError> {
        let io = |source| ProbeError::Io {
            pid: self.target.pid(),
            what: format!("read {}", self.meminfo_path.display()),
            source,
        };
        let text = std::fs::read_to_string(&self.meminfo_path).map_err(io)?;
        parse_swap_free_bytes(&text)
            .ok_or_else(|| io(std::io::Error::new(std::io::ErrorKind::InvalidData, "no SwapFree line")))
    }

    fn kpf_error(&self, e: std::io::Error) -> ProbeError {
        ProbeError::Io {
            pid: self.target.pid(),
            what: format!("read {}", self.kpageflags.path().display()),
            source: e,
        }
    }

    /// The mapped virtual range of the large folio holding the page `page`
    /// (PFN `pfn`), when it is mapped whole, contiguously, inside one VMA;
    /// `None` when paging it out would split it.
    fn whole_folio_range(
        &mut self,
        page: u64,
        pfn: u64,
        vmas: &[AddrRange],
    ) -> Result<Option<AddrRange>, ProbeError> {
        let Some(folio) = self.kpageflags.folio_of(pfn).map_err(|e| self.kpf_error(e))? else {
            return Ok(None);
        };
        if folio.head_flags.hugetlb() || !folio.head_flags.compound_head() {
            return Ok(None);
        }
        let start = page - (pfn - folio.head) * PAGE_SIZE;
        let range = AddrRange::new(start, start + folio.nr_pages() * PAGE_SIZE);
        if !vmas.iter().any(|v| v.start <= range.start && range.end <= v.end) {
            return Ok(None);
        }
        // The folio is the tail run after the head in PFN space; make sure it
        // has no tail beyond `end` (mapped only in part) and that every page
        // is mapped here, in order.
        let mut after = [KpageFlags::default()];
        if self.kpageflags.read_pfns(&[folio.end], &mut after).is_err()
            || (after[0].compound_tail() && !after[0].compound_head())
        {
            // Cannot tell (past the last PFN) or mapped in part: leave it alone.
            return Ok(None);
        }
        let mut entries = Vec::new();
        self.target.with_pagemap("read a folio's pages", |pm| pm.read_range(range, &mut entries))?;
        let contiguous = entries.iter().enumerate().all(|(k, e)| e.pfn() == Some(folio.head + k as u64));
        Ok(contiguous.then_some(range))
    }

    /// `process_madvise(MADV_PAGEOUT)` over `ranges` (any order):
    /// adjacent ranges are joined into one iovec (a page scan passes whole
    /// runs of pages), iovecs go in batches of [`IOV_MAX`], and one the
    /// kernel refuses is skipped and the rest resubmitted. Returns which of
    /// `ranges` were accepted.
    fn pageout(&mut self, ranges: &[(u64, u64)]) -> Result<Vec<bool>, ProbeError> {
        let (merged, member_of) = merge_adjacent(ranges);
        let ok = self.pageout_iovecs(&merged)?;
        Ok(member_of.iter().map(|&m| ok[m]).collect())
    }

    fn pageout_iovecs(&mut self, ranges: &[(u64, u64)]) -> Result<Vec<bool>, ProbeError> {
        let mut ok = vec![true; ranges.len()];
        let Some(pidfd) = self.target.pidfd() else {
            return Err(ProbeError::Unavailable {
                probe: "refault",
                reason: format!("target {} is a fixture without a pidfd", self.target.pid()),
            });
        };
        let mut i = 0;
        while i < ranges.len() {
            let batch = &ranges[i..ranges.len().min(i + IOV_MAX)];
            match sys::process_madvise(pidfd, batch, MADV_PAGEOUT) {
                Ok(n) => {
                    let mut done = 0u64;
                    let mut k = 0;
                    while k < batch.len() && done + batch[k].1 <= n as u64 {
                        done += batch[k].1;
                        k += 1;
                    }
                    self.stats.bytes_paged_out += done;
                    if k < batch.len() {
                        ok[i + k] = false;
                        self.stats.pageout_errors += 1;
                        k += 1;
                    }
                    i += k;
                }
                Err(e) => match e.raw_os_error() {
                    // This range only: unmapped meanwhile, or VM_LOCKED/PFNMAP/hugetlb.
                    Some(libc::ENOMEM | libc::EINVAL | libc::EAGAIN | libc::EINTR) => {
                        ok[i] = false;
                        self.stats.pageout_errors += 1;
                        i += 1;
                    }
                    _ => return Err(self.target.error("process_madvise(MADV_PAGEOUT)", e)),
                },
            }
        }
        Ok(ok)
    }

    /// The state of a sample at `page` (PFN `pfn`) in a large folio, from
    /// its unit's hold, made now if the unit has none or holds another folio.
    fn hold(&mut self, page: u64, pfn: u64, ttl: Option<Duration>, now: Instant) -> Armed {
        let unit = page / HOLD_UNIT_BYTES * HOLD_UNIT_BYTES;
        let pfn_block = pfn / PMD_PAGES;
        let fresh = Hold { pfn_block, first_seen: now, last_seen: now };
        let h = self.holds.entry(unit).or_insert(fresh);
        if h.pfn_block != pfn_block {
            *h = fresh;
        }
        h.last_seen = now;
        let accessed = ttl.is_none_or(|t| now.duration_since(h.first_seen) < spread_ttl(t, unit));
        if accessed {
            self.stats.held_huge += 1;
        } else {
            self.stats.held_expired += 1;
        }
        Armed::Held { accessed }
    }

    /// Units whose hold has expired (their huge page looks idle until it is
    /// split), and units held now, in bytes.
    pub fn held_bytes(&self) -> (u64, u64) {
        let now = Instant::now();
        let ThpPolicy::Hold { ttl } = self.thp else { return (0, 0) };
        let expired = self
            .holds
            .iter()
            .filter(|(unit, h)| {
                ttl.is_some_and(|t| now.duration_since(h.first_seen) >= spread_ttl(t, **unit))
            })
            .count() as u64;
        (expired * HOLD_UNIT_BYTES, self.holds.len() as u64 * HOLD_UNIT_BYTES)
    }

    /// Like [`AccessProbe::check`], with "not probed" told apart from "not accessed".
    pub fn check_states(&mut self, addrs: &[Addr], out: &mut [SampleState]) -> Result<(), ProbeError> {
        assert_eq!(addrs.len(), out.len(), "one result per address");
        let pages: Vec<Addr> = addrs.iter().map(|&a| Addr(page_of(a))).collect();
        let mut entries = vec![PagemapEntry::default(); pages.len()];
        self.target.with_pagemap("check sampled pages", |pm| pm.read_addrs(&pages, &mut entries))?;
        // Folios: read each one touched by this check once.
        let mut folio_back: HashMap<usize, bool> = HashMap::new();
        // Held samples are presumed accessed: not refaults.
        let mut held = 0u64;
        for (i, p) in pages.iter().enumerate() {
            let state = self.armed_pages.binary_search(&p.0).ok().map(|k| &self.armed[k]);
            out[i] = match state {
                None | Some(Armed::Skipped) | Some(Armed::Held { accessed: false }) => SampleState::Unknown,
                Some(Armed::AccessedEarly) => SampleState::Accessed,
                Some(Armed::Held { accessed: true }) => {
                    held += 1;
                    SampleState::Accessed
                }
                Some(Armed::Out) => {
                    if entries[i].present() {
                        SampleState::Accessed
                    } else {
                        SampleState::NotAccessed
                    }
                }
                Some(&Armed::Folio(f)) => {
                    let back = match folio_back.get(&f) {
                        Some(&b) => b,
                        None => {
                            let folio = &self.folios[f];
                            let mut es = Vec::new();
                            self.target
                                .with_pagemap("check a folio", |pm| pm.read_range(folio.range, &mut es))?;
                            let b = es.iter().enumerate().any(|(k, e)| folio.was_out(k) && e.present());
                            folio_back.insert(f, b);
                            b
                        }
                    };
                    if back { SampleState::Accessed } else { SampleState::NotAccessed }
                }
            };
        }
        self.common.check_calls += 1;
        for s in out.iter() {
            self.common.addrs_checked += 1;
            match s {
                SampleState::Accessed => {
                    self.common.accessed += 1;
                    self.stats.refaults_seen += 1;
                }
                SampleState::NotAccessed => {}
                SampleState::Unknown => self.common.unknown += 1,
            }
        }
        self.stats.refaults_seen = self.stats.refaults_seen.saturating_sub(held);
        Ok(())
    }
}

impl AccessProbe for RefaultProbe {
    fn name(&self) -> &'static str {
        "refault"
    }

    fn sees(&self) -> Sees {
        Sees::ReadsAndWrites
    }

    fn arm(&mut self, addrs: &[Addr]) -> Result<(), ProbeError> {
        self.armed_pages.clear();
        self.armed.clear();
        self.folios.clear();
        if self.paged_by_arm.len() >= PAGED_BY_ARMS_MAX {
            // Nobody takes them (no THP rule): forget the older ones.
            self.paged_by_arm.clear();
        }
        self.common.arm_calls += 1;
        self.common.addrs_armed += addrs.len() as u64;

        let mut pages: Vec<Addr> = addrs.iter().map(|&a| Addr(page_of(a))).collect();
        pages.sort_unstable();
        pages.dedup();
        let mut entries = vec![PagemapEntry::default(); pages.len()];
        self.target.with_pagemap("read sampled pages", |pm| pm.read_addrs(&pages, &mut entries))?;
        let mut states = vec![Armed::Skipped; pages.len()];

        // Private anonymous present pages need a pageout; look at their frames.
        let mut candidates: Vec<(usize, u64)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let state = if !e.present() {
                self.stats.pages_already_out += 1;
                Armed::Out
            } else if e.file_or_shared_anon() || !e.exclusive() {
                self.stats.skipped_file_or_shared += 1;
                Armed::Skipped
            } else if let Some(pfn) = e.pfn() {
                candidates.push((i, pfn));
                continue;
            } else {
                self.stats.skipped_pfn_hidden += 1;
                Armed::Skipped
            };
            states[i] = state;
        }
        let swap_free = if candidates.is_empty() { 0 } else { self.swap_free_bytes()? };
        if swap_free == 0 {
            for &(i, _) in &candidates {
                self.stats.skipped_no_swap += 1;
                states[i] = Armed::Skipped;
            }
            candidates.clear();
        }
        let pfns: Vec<u64> = candidates.iter().map(|&(_, p)| p).collect();
        let mut flags = vec![KpageFlags::default(); pfns.len()];
        self.kpageflags.read_pfns(&pfns, &mut flags).map_err(|e| self.kpf_error(e))?;

        // (page index, pfn) of base pages, and folio ranges → sample indices.
        let mut small: Vec<(usize, u64)> = Vec::new();
        // Folio range → (head PFN, sample indices).
        let mut folio_of_range: HashMap<AddrRange, (u64, Vec<usize>)> = HashMap::new();
        let mut vmas: Option<Vec<AddrRange>> = None;
        // The folio found last: pages of a scan come in order, 512 per THP.
        let mut last_folio: Option<AddrRange> = None;
        let now = Instant::now();
        if self.holds.len() > HOLD_PRUNE_LEN {
            self.holds.retain(|_, h| now.duration_since(h.last_seen) < HOLD_FORGET);
        }
        for (&(i, pfn), f) in candidates.iter().zip(&flags) {
            let page = pages[i].0;
            if f.zero_page() || f.ksm() {
                self.stats.skipped_zero_or_ksm += 1;
                states[i] = Armed::Skipped;
            } else if !f.in_large_folio() && !f.hugetlb() {
                if !self.holds.is_empty() {
                    // A base page in a held unit: its folio was split.
                    self.holds.remove(&(page / HOLD_UNIT_BYTES * HOLD_UNIT_BYTES));
                }
                small.push((i, pfn));
            } else if f.hugetlb() || self.thp == ThpPolicy::Skip {
                self.stats.skipped_huge += 1;
                states[i] = Armed::Skipped;
            } else if let ThpPolicy::Hold { ttl } = self.thp {
                states[i] = self.hold(page, pfn, ttl, now);
            } else if let Some(entry) =
                last_folio.filter(|r| r.contains(Addr(page))).and_then(|r| folio_of_range.get_mut(&r))
            {
                entry.1.push(i);
            } else {
                if vmas.is_none() {
                    vmas = Some(self.target.maps()?.into_iter().map(|v| v.range).collect());
                }
                let vma_ranges = vmas.as_deref().unwrap_or_default();
                match self.whole_folio_range(page, pfn, vma_ranges)? {
                    // Without room to swap it whole, reclaim would split it.
                    Some(range) if swap_free >= 2 * range.len() => {
                        let head = pfn - (page - range.start.0) / PAGE_SIZE;
                        folio_of_range.entry(range).or_insert_with(|| (head, Vec::new())).1.push(i);
                        last_folio = Some(range);
                    }
                    _ => {
                        self.stats.skipped_huge += 1;
                        states[i] = Armed::Skipped;
                    }
                }
            }
        }

        // One pageout for everything, in address order.
        let mut folio_list: Vec<(AddrRange, (u64, Vec<usize>))> = folio_of_range.into_iter().collect();
        folio_list.sort_unstable_by_key(|(r, _)| r.start);
        let mut ranges: Vec<(u64, u64)> = small.iter().map(|&(i, _)| (pages[i].0, PAGE_SIZE)).collect();
        ranges.extend(folio_list.iter().map(|(r, _)| (r.start.0, r.len())));
        let accepted = self.pageout(&ranges)?;

        // Verify with one more pagemap read: did the pages leave RAM?
        let small_pages: Vec<Addr> = small.iter().map(|&(i, _)| pages[i]).collect();
        let mut after = vec![PagemapEntry::default(); small_pages.len()];
        self.target.with_pagemap("verify pageout", |pm| pm.read_addrs(&small_pages, &mut after))?;
        for (k, &(i, pfn)) in small.iter().enumerate() {
            let state = if !accepted[k] {
                Armed::Skipped
            } else if !after[k].present() {
                self.stats.pages_armed += 1;
                self.paged_by_arm.push(pages[i].0);
                Armed::Out
            } else if after[k].pfn() == Some(pfn) {
                self.stats.failed_arms += 1;
                Armed::Skipped
            } else {
                self.stats.refaulted_before_verify += 1;
                Armed::AccessedEarly
            };
            states[i] = state;
        }
        let mut es = Vec::new();
        for (k, (range, (head, samples))) in folio_list.into_iter().enumerate() {
            let state = if !accepted[small.len() + k] {
                Armed::Skipped
            } else {
                self.target.with_pagemap("verify folio pageout", |pm| pm.read_range(range, &mut es))?;
                let mut out = vec![0u64; es.len().div_ceil(64)];
                let mut back = false;
                for (j, e) in es.iter().enumerate() {
                    match e.pfn() {
                        None if !e.present() => out[j / 64] |= 1 << (j % 64),
                        // Left RAM and already faulted back in: touched.
                        Some(p) if p != head + j as u64 => back = true,
                        _ => {}
                    }
                }
                if back {
                    self.stats.folios_armed += 1;
                    self.stats.refaulted_before_verify += 1;
                    Armed::AccessedEarly
                } else if out.iter().all(|&w| w == 0) {
                    self.stats.failed_arms += 1;
                    Armed::Skipped
                } else {
                    self.stats.folios_armed += 1;
                    self.folios.push(ArmedFolio { range, out });
                    Armed::Folio(self.folios.len() - 1)
                }
            };
            for i in samples {
                states[i] = state.clone();
            }
        }
        self.armed_pages = pages.iter().map(|p| p.0).collect();
        self.armed = states;
        Ok(())
    }

    fn check(&mut self, addrs: &[Addr], accessed: &mut [bool]) -> Result<(), ProbeError> {
        let mut states = vec![SampleState::Unknown; addrs.len()];
        self.check_states(addrs, &mut states)?;
        for (a, s) in accessed.iter_mut().zip(states) {
            *a = s == SampleState::Accessed;
        }
        Ok(())
    }
}

/// Join ranges `(start, len)` that touch into one: the joined ranges in
/// address order, and for each input range the index of the one holding it.
fn merge_adjacent(ranges: &[(u64, u64)]) -> (Vec<(u64, u64)>, Vec<usize>) {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_unstable_by_key(|&i| ranges[i].0);
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    let mut member_of = vec![0; ranges.len()];
    for i in order {
        let (start, len) = ranges[i];
        match merged.last_mut() {
            Some((s, l)) if *s + *l == start => *l += len,
            _ => merged.push((start, len)),
        }
        member_of[i] = merged.len() - 1;
    }
    (merged, member_of)
}

/// `SwapFree:` of /proc/meminfo, in bytes.
pub fn parse_swap_free_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("SwapFree:"))?;
    let kib = line["SwapFree:".len()..].trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_ranges_become_one_iovec() {
        let r = [(0x5000, 0x1000), (0x3000, 0x1000), (0x4000, 0x1000), (0x9000, 0x2000), (0xb000, 0x1000)];
        let (merged, member_of) = merge_adjacent(&r);
        assert_eq!(merged, vec![(0x3000, 0x3000), (0x9000, 0x3000)]);
        assert_eq!(member_of, vec![0, 0, 0, 1, 1]);
        assert_eq!(merge_adjacent(&[]), (vec![], vec![]));
    }

    #[test]
    fn hold_ttls_spread_over_three_quarters_to_five_quarters() {
        let ttl = Duration::from_secs(100);
        let spread: Vec<Duration> = (0..4096u64).map(|u| spread_ttl(ttl, u * HOLD_UNIT_BYTES)).collect();
        assert!(spread.iter().all(|d| *d >= ttl * 3 / 4 && *d < ttl * 5 / 4), "{spread:?}");
        let min = spread.iter().min().copied().unwrap_or_default();
        let max = spread.iter().max().copied().unwrap_or_default();
        assert!(max - min > ttl * 4 / 10, "spread too narrow: {min:?}..{max:?}");
        assert_eq!(spread_ttl(ttl, 7 * HOLD_UNIT_BYTES), spread_ttl(ttl, 7 * HOLD_UNIT_BYTES + 4096));
    }

    #[test]
    fn swap_free_from_meminfo() {
        let m = "MemTotal:       24000000 kB\nSwapTotal:       1048576 kB\nSwapFree:         524288 kB\n";
        assert_eq!(parse_swap_free_bytes(m), Some(512 << 20));
        assert_eq!(parse_swap_free_bytes("MemTotal: 1 kB\n"), None);
    }
}
