//! /proc/PID/pagemap: entry decoding and batched reads (one `pread` per run
//! of pages, big buffers), plus the `PAGEMAP_SCAN` ioctl (6.7+) where it works.
//!
//! Format: Documentation/admin-guide/mm/pagemap.rst — one little-endian u64
//! per virtual page at file offset `vaddr / PAGE_SIZE * 8`.

use crate::ops::sys::{self, PAGE_IS_HUGE, PAGE_IS_PRESENT, PAGE_IS_SWAPPED, PageRegion};
use crate::{Addr, AddrRange, PAGE_SIZE};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;

/// Bit 63: page present in RAM.
pub const PM_PRESENT: u64 = 1 << 63;
/// Bit 62: page swapped out.
pub const PM_SWAPPED: u64 = 1 << 62;
/// Bit 61: file page or shared anonymous page.
pub const PM_FILE_OR_SHARED_ANON: u64 = 1 << 61;
/// Bit 58: guard region (MADV_GUARD_INSTALL, 6.15+).
pub const PM_GUARD_REGION: u64 = 1 << 58;
/// Bit 57: write-protected by userfaultfd.
pub const PM_UFFD_WP: u64 = 1 << 57;
/// Bit 56: page exclusively mapped (this process only).
pub const PM_MMAP_EXCLUSIVE: u64 = 1 << 56;
/// Bit 55: soft-dirty (written since the last `clear_refs` "4").
pub const PM_SOFT_DIRTY: u64 = 1 << 55;
/// Bits 0-54: page frame number when present (zero without CAP_SYS_ADMIN).
pub const PM_PFN_MASK: u64 = (1 << 55) - 1;

/// The PFN of the shared zero page, which the kernel maps for reads of
/// anonymous memory never written; learnt once from a page of our own that
/// was only read. `None` without CAP_SYS_ADMIN (PFNs read as 0) or when the
/// kernel maps no zero page (a read fault then allocated a page).
pub fn zero_pfn() -> Option<u64> {
    static ZERO_PFN: OnceLock<Option<u64>> = OnceLock::new();
    *ZERO_PFN.get_or_init(|| {
        let page = sys::AnonMapping::new(PAGE_SIZE as usize).ok()?;
        let _ = page.read_byte(0);
        let mut pm = PagemapFile::open(Path::new("/proc/self/pagemap")).ok()?;
        let mut entry = [PagemapEntry::default()];
        pm.read_addrs(&[Addr(page.addr())], &mut entry).ok()?;
        // A private page of ours (exclusive) means no zero page was mapped.
        entry[0].pfn().filter(|_| !entry[0].exclusive())
    })
}

/// Bytes of pagemap read per `pread` at most: 256 KiB = 32768 pages = 128 MiB
/// of address space (peers.md §8 measured 256 KiB preads at 14-21 ms per GiB).
pub const PAGEMAP_CHUNK_BYTES: usize = 256 * 1024;
const CHUNK_PAGES: u64 = (PAGEMAP_CHUNK_BYTES / 8) as u64;

/// Two sampled pages this close (in pages) are read with one `pread`: walking
/// 64 extra page table entries costs less than another syscall.
pub const COALESCE_GAP_PAGES: u64 = 64;

/// One pagemap entry.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PagemapEntry(pub u64);

impl PagemapEntry {
    pub fn present(self) -> bool {
        self.0 & PM_PRESENT != 0
    }
    pub fn swapped(self) -> bool {
        self.0 & PM_SWAPPED != 0
    }
    /// A file page or a shared anonymous page (not a private anonymous page).
    pub fn file_or_shared_anon(self) -> bool {
        self.0 & PM_FILE_OR_SHARED_ANON != 0
    }
    pub fn exclusive(self) -> bool {
        self.0 & PM_MMAP_EXCLUSIVE != 0
    }
    pub fn soft_dirty(self) -> bool {
        self.0 & PM_SOFT_DIRTY != 0
    }
    pub fn uffd_wp(self) -> bool {
        self.0 & PM_UFFD_WP != 0
    }
    pub fn guard_region(self) -> bool {
        self.0 & PM_GUARD_REGION != 0
    }
    /// The page frame number, when present and visible (the kernel zeroes it
    /// for readers without CAP_SYS_ADMIN).
    pub fn pfn(self) -> Option<u64> {
        let pfn = self.0 & PM_PFN_MASK;
        (self.present() && pfn != 0).then_some(pfn)
    }
    /// Swap type (bits 0-4), when swapped.
    pub fn swap_type(self) -> Option<u8> {
        self.swapped().then_some((self.0 & 0x1f) as u8)
    }
    /// Swap offset (bits 5-54), when swapped.
    pub fn swap_offset(self) -> Option<u64> {
        self.swapped().then_some((self.0 & PM_PFN_MASK) >> 5)
    }
}

impl fmt::Debug for PagemapEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PagemapEntry({:#018x}", self.0)?;
        if self.present() {
            write!(f, " present pfn={:#x}", self.0 & PM_PFN_MASK)?;
        }
        if self.swapped() {
            write!(f, " swapped")?;
        }
        for (bit, name) in [
            (PM_FILE_OR_SHARED_ANON, "file/shared"),
            (PM_MMAP_EXCLUSIVE, "exclusive"),
            (PM_SOFT_DIRTY, "soft-dirty"),
            (PM_UFFD_WP, "uffd-wp"),
            (PM_GUARD_REGION, "guard"),
        ] {
            if self.0 & bit != 0 {
                write!(f, " {name}")?;
            }
        }
        write!(f, ")")
    }
}

/// File offset of the entry for `addr`.
pub fn pagemap_offset(addr: Addr) -> u64 {
    addr.0 / PAGE_SIZE * 8
}

/// Resident and swapped pages of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageCounts {
    pub present_pages: u64,
    pub swapped_pages: u64,
    /// Present pages mapped by a PMD (THP or hugetlb). Only the
    /// `PAGEMAP_SCAN` path can tell; the `pread` path leaves it 0.
    pub huge_present_pages: u64,
}

impl PageCounts {
    pub fn present_bytes(&self) -> u64 {
        self.present_pages * PAGE_SIZE
    }
    pub fn swapped_bytes(&self) -> u64 {
        self.swapped_pages * PAGE_SIZE
    }
    /// Add the counts of `entries`.
    pub fn add_entries(&mut self, entries: &[PagemapEntry]) {
        for e in entries {
            self.present_pages += u64::from(e.present());
            self.swapped_pages += u64::from(e.swapped());
        }
    }
}

impl std::ops::AddAssign for PageCounts {
    fn add_assign(&mut self, o: PageCounts) {
        self.present_pages += o.present_pages;
        self.swapped_pages += o.swapped_pages;
        self.huge_present_pages += o.huge_present_pages;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScanIoctl {
    Untried,
    Works,
    Missing,
}

/// An open pagemap file (of a process, or a fixture in the same format),
/// with a reusable read buffer.
#[derive(Debug)]
pub struct PagemapFile {
    file: File,
    buf: Vec<u8>,
    scan_ioctl: ScanIoctl,
}

/// Page-aligned outward bounds of `range`, as page numbers `[first, end)`.
fn page_span(range: AddrRange) -> (u64, u64) {
    (range.start.0 / PAGE_SIZE, range.end.0.div_ceil(PAGE_SIZE))
}

impl PagemapFile {
    pub fn open(path: &Path) -> io::Result<PagemapFile> {
        Ok(PagemapFile::from_file(File::open(path)?))
    }

    pub fn from_file(file: File) -> PagemapFile {
        PagemapFile { file, buf: Vec::new(), scan_ioctl: ScanIoctl::Untried }
    }

    /// Never use `PAGEMAP_SCAN`: always the `pread` path (to compare the
    /// two in tests and benchmarks).
    pub fn without_scan_ioctl(mut self) -> PagemapFile {
        self.scan_ioctl = ScanIoctl::Missing;
        self
    }

    /// Whether the `PAGEMAP_SCAN` ioctl worked on this file (`None`: not tried yet).
    pub fn scan_ioctl_works(&self) -> Option<bool> {
        match self.scan_ioctl {
            ScanIoctl::Untried => None,
            ScanIoctl::Works => Some(true),
            ScanIoctl::Missing => Some(false),
        }
    }

    /// Append the entries of pages `[first_page, first_page + n)` to `out`,
    /// in `pread`s of at most [`PAGEMAP_CHUNK_BYTES`]. A read that returns
    /// nothing (a process without memory, or past the end of a fixture) is
    /// `UnexpectedEof`.
    fn read_pages(&mut self, first_page: u64, n: u64, out: &mut Vec<PagemapEntry>) -> io::Result<()> {
        let mut page = first_page;
        let end = first_page + n;
        while page < end {
            let want = (end - page).min(CHUNK_PAGES) as usize * 8;
            self.buf.resize(want, 0);
            let mut got = 0;
            while got < want {
                let r = self.file.read_at(&mut self.buf[got..want], page * 8 + got as u64)?;
                if r == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("pagemap ended at page {:#x}", page + (got / 8) as u64),
                    ));
                }
                got += r;
            }
            out.extend(
                self.buf[..want]
                    .chunks_exact(8)
                    .map(|c| PagemapEntry(u64::from_le_bytes(c.try_into().expect("8-byte chunk")))),
            );
            page += (want / 8) as u64;
        }
        Ok(())
    }

    /// The entries of every page of `range` (widened to page boundaries), in order.
    pub fn read_range(&mut self, range: AddrRange, out: &mut Vec<PagemapEntry>) -> io::Result<()> {
        out.clear();
        let (first, end) = page_span(range);
        out.reserve((end - first) as usize);
        self.read_pages(first, end - first, out)
    }

    /// The entry of each address in `addrs` (any order), written to `out[i]`.
    /// Addresses within [`COALESCE_GAP_PAGES`] of each other share one `pread`.
    pub fn read_addrs(&mut self, addrs: &[Addr], out: &mut [PagemapEntry]) -> io::Result<()> {
        assert_eq!(addrs.len(), out.len(), "one output slot per address");
        let mut order: Vec<usize> = (0..addrs.len()).collect();
        order.sort_unstable_by_key(|&i| addrs[i].0);
        let mut run = Vec::new();
        for group in coalesce_runs(&order, |i| addrs[i].0 / PAGE_SIZE) {
            let first = addrs[group[0]].0 / PAGE_SIZE;
            let last = addrs[group[group.len() - 1]].0 / PAGE_SIZE;
            run.clear();
            self.read_pages(first, last - first + 1, &mut run)?;
            for &i in group {
                out[i] = run[(addrs[i].0 / PAGE_SIZE - first) as usize];
            }
        }
        Ok(())
    }

    /// Runs of pages of `range` that have any of `anyof_mask`, with their
    /// categories masked by `return_mask`, through `PAGEMAP_SCAN`. `Ok(false)`
    /// when the ioctl does not work on this file (kernel before 6.7, or a
    /// fixture file); `out` is then empty.
    pub fn scan(
        &mut self,
        range: AddrRange,
        anyof_mask: u64,
        return_mask: u64,
        out: &mut Vec<PageRegion>,
    ) -> io::Result<bool> {
        out.clear();
        if self.scan_ioctl == ScanIoctl::Missing {
            return Ok(false);
        }
        let (first, end_page) = page_span(range);
        let end = end_page * PAGE_SIZE;
        let mut start = first * PAGE_SIZE;
        let mut vec = vec![PageRegion::default(); 1024];
        while start < end {
            match sys::pagemap_scan(self.file.as_fd(), start, end, anyof_mask, return_mask, &mut vec) {
                Ok((n, walk_end)) => {
                    self.scan_ioctl = ScanIoctl::Works;
                    // The walk_end the kernel reports can lie before the
                    // end of regions it returned: a call that walks in
                    // several rounds (its buffer holds 512 regions) and then
                    // reaches the end reports where an earlier round stopped
                    // (seen on 6.18; a next call from there returned up to
                    // 512 regions again). Keep only what lies past the last
                    // page received, and go on from there.
                    let done = out.last().map_or(start, |r| r.end);
                    for r in &vec[..n] {
                        if r.end > done {
                            out.push(PageRegion { start: r.start.max(done), ..*r });
                        }
                    }
                    let next = walk_end.max(out.last().map_or(start, |r| r.end));
                    if next <= start {
                        // No progress: never loop forever on a kernel quirk.
                        return Err(io::Error::other(format!("PAGEMAP_SCAN made no progress at {start:#x}")));
                    }
                    start = next;
                }
                Err(e)
                    if self.scan_ioctl == ScanIoctl::Untried
                        && matches!(
                            e.raw_os_error(),
                            Some(libc::ENOTTY | libc::EINVAL | libc::EOPNOTSUPP)
                        ) =>
                {
                    self.scan_ioctl = ScanIoctl::Missing;
                    out.clear();
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// [`PageKinds`] of `ranges` (sorted, disjoint). Ranges less than
    /// [`COALESCE_GAP_PAGES`] apart share one read, as in
    /// [`PagemapFile::read_addrs`], while the group starts within one read
    /// chunk: a page engine pages out tens of thousands of short runs.
    pub fn kinds_of(&mut self, ranges: &[AddrRange]) -> io::Result<PageKinds> {
        let mut kinds = PageKinds::default();
        let mut entries = Vec::new();
        let mut regions = Vec::new();
        let mut i = 0;
        while i < ranges.len() {
            let first = ranges[i].start.0 / PAGE_SIZE;
            let mut j = i + 1;
            while j < ranges.len()
                && ranges[j].start.0 / PAGE_SIZE
                    <= ranges[j - 1].end.0.div_ceil(PAGE_SIZE) + COALESCE_GAP_PAGES
                && ranges[j].start.0 / PAGE_SIZE - first < CHUNK_PAGES
            {
                j += 1;
            }
            let span = AddrRange::new(ranges[i].start.0, ranges[j - 1].end.0);
            // PAGEMAP_SCAN returns runs, not 8 bytes per page: a process's
            // swapped-out gigabytes cost a few runs to look at.
            let both = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
            if self.scan(span, both, both, &mut regions)? {
                kinds.add_runs(&ranges[i..j], &regions);
            } else {
                self.read_range(span, &mut entries)?;
                for r in &ranges[i..j] {
                    let (from, to) = page_span(*r);
                    let (from, to) = ((from - first) as usize, ((to - first) as usize).min(entries.len()));
                    kinds.add((first + from as u64) * PAGE_SIZE, &entries[from..to]);
                }
            }
            i = j;
        }
        Ok(kinds)
    }

    /// Present and swapped pages of each range: `PAGEMAP_SCAN` where it
    /// works, otherwise big `pread`s.
    pub fn count_ranges(&mut self, ranges: &[AddrRange]) -> io::Result<Vec<PageCounts>> {
        let mut counts = Vec::with_capacity(ranges.len());
        let mut regions = Vec::new();
        let mut entries = Vec::new();
        for &range in ranges {
            let mut c = PageCounts::default();
            if self.scan(
                range,
                PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_HUGE,
                &mut regions,
            )? {
                for r in &regions {
                    let pages = (r.end - r.start) / PAGE_SIZE;
                    if r.categories & PAGE_IS_PRESENT != 0 {
                        c.present_pages += pages;
                        if r.categories & PAGE_IS_HUGE != 0 {
                            c.huge_present_pages += pages;
                        }
                    }
                    if r.categories & PAGE_IS_SWAPPED != 0 {
                        c.swapped_pages += pages;
                    }
                }
            } else {
                let (first, end) = page_span(range);
                let mut page = first;
                while page < end {
                    let n = (end - page).min(CHUNK_PAGES);
                    entries.clear();
                    self.read_pages(page, n, &mut entries)?;
                    c.add_entries(&entries);
                    page += n;
                }
            }
            counts.push(c);
        }
        Ok(counts)
    }
}

/// The pages of some ranges by what pagemap shows: runs of present,
/// swapped and unpopulated (neither present nor swapped) pages, each sorted
/// and disjoint when the ranges are ([`PagemapFile::kinds_of`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PageKinds {
    pub present: Vec<AddrRange>,
    pub swapped: Vec<AddrRange>,
    pub unpopulated: Vec<AddrRange>,
}

impl PageKinds {
    /// Add `ranges` (sorted, disjoint) as `PAGEMAP_SCAN` found them: `runs`
    /// (sorted) of present or swapped pages; what no run covers is
    /// unpopulated.
    pub fn add_runs(&mut self, ranges: &[AddrRange], runs: &[PageRegion]) {
        let mut k = 0;
        for r in ranges {
            let (from, to) = page_span(*r);
            let (from, to) = (from * PAGE_SIZE, to * PAGE_SIZE);
            while k < runs.len() && runs[k].end <= from {
                k += 1;
            }
            let mut cur = from;
            let mut m = k;
            while m < runs.len() && runs[m].start < to {
                let (start, end) = (runs[m].start.max(from), runs[m].end.min(to));
                if start > cur {
                    push_run(&mut self.unpopulated, cur, start);
                }
                let list = if runs[m].categories & PAGE_IS_PRESENT != 0 {
                    &mut self.present
                } else {
                    &mut self.swapped
                };
                push_run(list, start, end);
                cur = end;
                m += 1;
            }
            if cur < to {
                push_run(&mut self.unpopulated, cur, to);
            }
        }
    }

    /// Add the entries of the pages from address `start` on.
    pub fn add(&mut self, start: u64, entries: &[PagemapEntry]) {
        for (i, e) in entries.iter().enumerate() {
            let addr = start + i as u64 * PAGE_SIZE;
            let list = if e.present() {
                &mut self.present
            } else if e.swapped() {
                &mut self.swapped
            } else {
                &mut self.unpopulated
            };
            push_run(list, addr, addr + PAGE_SIZE);
        }
    }
}

/// Append `[start, end)` to a sorted list, joined to its last range when
/// they touch.
fn push_run(list: &mut Vec<AddrRange>, start: u64, end: u64) {
    match list.last_mut() {
        Some(r) if r.end.0 == start => r.end.0 = end,
        _ => list.push(AddrRange::new(start, end)),
    }
}

/// Split `sorted` (indices sorted by `page_of`) into groups read by one
/// `pread` each: consecutive pages at most [`COALESCE_GAP_PAGES`] apart and
/// one group spanning at most one read chunk.
pub(crate) fn coalesce_runs<F: Fn(usize) -> u64>(sorted: &[usize], page_of: F) -> Vec<&[usize]> {
    let mut groups = Vec::new();
    let mut start = 0;
    for k in 1..=sorted.len() {
        let split = k == sorted.len() || {
            let prev = page_of(sorted[k - 1]);
            let here = page_of(sorted[k]);
            here - prev > COALESCE_GAP_PAGES || here - page_of(sorted[start]) >= CHUNK_PAGES
        };
        if split {
            if start < k {
                groups.push(&sorted[start..k]);
            }
            start = k;
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u64, b: u64) -> AddrRange {
        AddrRange::new(a, b)
    }

    #[test]
    fn page_kinds_split_ranges_into_runs() {
        let e = |bits: &[u64]| bits.iter().map(|&b| PagemapEntry(b)).collect::<Vec<_>>();
        let mut k = PageKinds::default();
        // present, swapped, swapped, hole, present | next range: swapped, hole
        k.add(0x10000, &e(&[PM_PRESENT, PM_SWAPPED, PM_SWAPPED, 0, PM_PRESENT]));
        k.add(0x20000, &e(&[PM_SWAPPED, 0]));
        assert_eq!(k.present, vec![r(0x10000, 0x11000), r(0x14000, 0x15000)]);
        assert_eq!(k.swapped, vec![r(0x11000, 0x13000), r(0x20000, 0x21000)]);
        assert_eq!(k.unpopulated, vec![r(0x13000, 0x14000), r(0x21000, 0x22000)]);
        // A run continues across ranges that touch.
        let mut k = PageKinds::default();
        k.add(0x1000, &e(&[PM_SWAPPED]));
        k.add(0x2000, &e(&[PM_SWAPPED]));
        assert_eq!(k.swapped, vec![r(0x1000, 0x3000)]);
    }

    #[test]
    fn kinds_of_reads_only_the_pages_of_the_ranges() {
        // A fixture in pagemap's format: page p swapped when p % 3 == 0,
        // present when p % 3 == 1, unpopulated otherwise, pages 0..4096.
        let path = std::env::temp_dir().join(format!("pagemap-kinds-{}", std::process::id()));
        let bytes: Vec<u8> =
            (0..4096u64).flat_map(|p| [PM_SWAPPED, PM_PRESENT, 0][(p % 3) as usize].to_le_bytes()).collect();
        std::fs::write(&path, bytes).expect("write fixture");
        let mut pm = PagemapFile::open(&path).expect("open fixture").without_scan_ioctl();
        let _ = std::fs::remove_file(&path);
        let page = |p: u64| p * PAGE_SIZE;
        // Two ranges close enough to share a read, one far away.
        let ranges = [r(page(3), page(5)), r(page(10), page(11)), r(page(3000), page(3003))];
        let k = pm.kinds_of(&ranges).expect("kinds");
        let pages = |v: &[AddrRange]| -> Vec<u64> {
            v.iter().flat_map(|x| (x.start.0 / PAGE_SIZE)..(x.end.0 / PAGE_SIZE)).collect()
        };
        assert_eq!(pages(&k.swapped), vec![3, 3000]);
        assert_eq!(pages(&k.present), vec![4, 10, 3001]);
        assert_eq!(pages(&k.unpopulated), vec![3002]);
    }

    #[test]
    fn entry_bits_decode() {
        let e = PagemapEntry(PM_PRESENT | PM_MMAP_EXCLUSIVE | PM_SOFT_DIRTY | 0x1234);
        assert!(e.present() && e.exclusive() && e.soft_dirty());
        assert!(!e.swapped() && !e.file_or_shared_anon());
        assert_eq!(e.pfn(), Some(0x1234));
        assert_eq!(e.swap_type(), None);

        let s = PagemapEntry(PM_SWAPPED | (0x77 << 5) | 3);
        assert!(s.swapped() && !s.present());
        assert_eq!(s.pfn(), None);
        assert_eq!(s.swap_type(), Some(3));
        assert_eq!(s.swap_offset(), Some(0x77));

        // Present but PFN hidden (no CAP_SYS_ADMIN).
        assert_eq!(PagemapEntry(PM_PRESENT).pfn(), None);
        assert!(PagemapEntry(PM_FILE_OR_SHARED_ANON).file_or_shared_anon());
    }

    /// Real pagemap of this process: a page only read maps the zero page
    /// `zero_pfn` finds; a written one does not. PFNs need root.
    #[test]
    fn the_zero_page_is_found_and_only_read_pages_map_it() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            println!("skipped: PFNs in pagemap need root");
            return;
        }
        let zero = zero_pfn().expect("root sees the zero page's PFN");
        let m = sys::AnonMapping::new(2 * PAGE_SIZE as usize).expect("mmap");
        let _ = m.read_byte(0);
        m.write_byte(PAGE_SIZE as usize, 1);
        let mut pm = PagemapFile::open(Path::new("/proc/self/pagemap")).expect("pagemap");
        let mut out = Vec::new();
        pm.read_range(AddrRange::new(m.addr(), m.addr() + 2 * PAGE_SIZE), &mut out).expect("read");
        assert_eq!(out[0].pfn(), Some(zero), "{:?}", out[0]);
        assert!(out[1].pfn().is_some_and(|p| p != zero), "{:?}", out[1]);
    }

    #[test]
    fn offsets() {
        assert_eq!(pagemap_offset(Addr(0)), 0);
        assert_eq!(pagemap_offset(Addr(0x1000)), 8);
        assert_eq!(pagemap_offset(Addr(0x1fff)), 8);
        assert_eq!(pagemap_offset(Addr(0x7fff_ffff_f000)), 0x7fff_ffff_f000 / 4096 * 8);
    }

    #[test]
    fn coalescing_groups_close_pages_only() {
        let pages = [10u64, 11, 11 + COALESCE_GAP_PAGES, 12 + 2 * COALESCE_GAP_PAGES + 1, 1 << 30];
        let order: Vec<usize> = (0..pages.len()).collect();
        let groups = coalesce_runs(&order, |i| pages[i]);
        let got: Vec<Vec<usize>> = groups.iter().map(|g| g.to_vec()).collect();
        assert_eq!(got, vec![vec![0, 1, 2], vec![3], vec![4]]);
    }

    #[test]
    fn coalescing_caps_a_group_at_one_chunk() {
        let pages: Vec<u64> = (0..3).map(|k| k * (CHUNK_PAGES / 2)).collect();
        let order: Vec<usize> = (0..pages.len()).collect();
        // Gaps are larger than COALESCE_GAP_PAGES anyway; make them small but long in total.
        let dense: Vec<u64> =
            (0..=(CHUNK_PAGES / COALESCE_GAP_PAGES) + 1).map(|k| k * COALESCE_GAP_PAGES).collect();
        let dorder: Vec<usize> = (0..dense.len()).collect();
        assert_eq!(coalesce_runs(&order, |i| pages[i]).len(), 3);
        let groups = coalesce_runs(&dorder, |i| dense[i]);
        assert_eq!(groups.len(), 2);
        for g in groups {
            assert!(dense[g[g.len() - 1]] - dense[g[0]] < CHUNK_PAGES);
        }
    }
}
