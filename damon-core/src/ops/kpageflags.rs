//! /proc/kpageflags: per-PFN page flags (one u64 per page frame), read in
//! batches. Used to tell huge and large folios from base pages (root only).
//!
//! Format: Documentation/admin-guide/mm/pagemap.rst, "kpageflags".

use crate::ops::pagemap::coalesce_runs;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Default location.
pub const KPAGEFLAGS_PATH: &str = "/proc/kpageflags";

pub const KPF_LOCKED: u32 = 0;
pub const KPF_REFERENCED: u32 = 2;
pub const KPF_DIRTY: u32 = 4;
pub const KPF_LRU: u32 = 5;
pub const KPF_ACTIVE: u32 = 6;
pub const KPF_MMAP: u32 = 11;
pub const KPF_ANON: u32 = 12;
pub const KPF_SWAPCACHE: u32 = 13;
pub const KPF_SWAPBACKED: u32 = 14;
pub const KPF_COMPOUND_HEAD: u32 = 15;
pub const KPF_COMPOUND_TAIL: u32 = 16;
/// hugetlbfs page.
pub const KPF_HUGE: u32 = 17;
pub const KPF_UNEVICTABLE: u32 = 18;
pub const KPF_NOPAGE: u32 = 20;
pub const KPF_KSM: u32 = 21;
/// Transparent huge page (any large anonymous or page-cache folio).
pub const KPF_THP: u32 = 22;
pub const KPF_ZERO_PAGE: u32 = 24;
pub const KPF_IDLE: u32 = 25;

/// The flags of one page frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KpageFlags(pub u64);

impl KpageFlags {
    pub fn has(self, bit: u32) -> bool {
        self.0 & (1 << bit) != 0
    }
    pub fn compound_head(self) -> bool {
        self.has(KPF_COMPOUND_HEAD)
    }
    pub fn compound_tail(self) -> bool {
        self.has(KPF_COMPOUND_TAIL)
    }
    /// Part of a large folio (head or tail).
    pub fn in_large_folio(self) -> bool {
        self.compound_head() || self.compound_tail()
    }
    pub fn thp(self) -> bool {
        self.has(KPF_THP)
    }
    pub fn hugetlb(self) -> bool {
        self.has(KPF_HUGE)
    }
    pub fn anon(self) -> bool {
        self.has(KPF_ANON)
    }
    pub fn lru(self) -> bool {
        self.has(KPF_LRU)
    }
    pub fn ksm(self) -> bool {
        self.has(KPF_KSM)
    }
    pub fn zero_page(self) -> bool {
        self.has(KPF_ZERO_PAGE)
    }
    pub fn idle(self) -> bool {
        self.has(KPF_IDLE)
    }
}

/// Pages per PMD (2 MiB / 4 KiB): the largest anonymous folio on x86-64, and
/// the alignment (in PFNs) of any folio up to that size.
pub const PMD_PAGES: u64 = 512;

/// An open kpageflags file (the kernel's or a fixture).
#[derive(Debug)]
pub struct KpageflagsFile {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
}

impl KpageflagsFile {
    pub fn open(path: &Path) -> io::Result<KpageflagsFile> {
        Ok(KpageflagsFile { file: File::open(path)?, path: path.to_path_buf(), buf: Vec::new() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flags of PFNs `[first, first + n)`, appended to `out`.
    pub fn read_run(&mut self, first: u64, n: u64, out: &mut Vec<KpageFlags>) -> io::Result<()> {
        let want = usize::try_from(n * 8).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        self.buf.resize(want, 0);
        let mut got = 0;
        while got < want {
            let r = self.file.read_at(&mut self.buf[got..], first * 8 + got as u64)?;
            if r == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} ended at pfn {:#x}", self.path.display(), first + (got / 8) as u64),
                ));
            }
            got += r;
        }
        out.extend(
            self.buf
                .chunks_exact(8)
                .map(|c| KpageFlags(u64::from_le_bytes(c.try_into().expect("8-byte chunk")))),
        );
        Ok(())
    }

    /// Flags of each PFN of `pfns` (any order) into `out[i]`; close PFNs share a read.
    pub fn read_pfns(&mut self, pfns: &[u64], out: &mut [KpageFlags]) -> io::Result<()> {
        assert_eq!(pfns.len(), out.len(), "one output slot per pfn");
        let mut order: Vec<usize> = (0..pfns.len()).collect();
        order.sort_unstable_by_key(|&i| pfns[i]);
        let mut run = Vec::new();
        for group in coalesce_runs(&order, |i| pfns[i]) {
            let first = pfns[group[0]];
            let last = pfns[group[group.len() - 1]];
            run.clear();
            self.read_run(first, last - first + 1, &mut run)?;
            for &i in group {
                out[i] = run[(pfns[i] - first) as usize];
            }
        }
        Ok(())
    }

    /// The large folio holding `pfn`, as PFNs `[head, end)`, read from the
    /// PMD-aligned block of PFNs around it (folios up to PMD size are
    /// naturally aligned). `None` when `pfn` is a base page.
    pub fn folio_of(&mut self, pfn: u64) -> io::Result<Option<FolioPfns>> {
        let mut flags = Vec::with_capacity(PMD_PAGES as usize);
        let block = pfn / PMD_PAGES * PMD_PAGES;
        self.read_run(block, PMD_PAGES, &mut flags)?;
        Ok(folio_in_block(block, &flags, pfn))
    }
}

/// A large folio in PFN space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolioPfns {
    pub head: u64,
    /// One past the last PFN.
    pub end: u64,
    /// The head's flags (THP, hugetlb, anon, ...).
    pub head_flags: KpageFlags,
}

impl FolioPfns {
    pub fn nr_pages(&self) -> u64 {
        self.end - self.head
    }
}

/// Pure part of [`KpageflagsFile::folio_of`]: `flags[k]` are the flags of PFN
/// `block + k`. Walks back from `pfn` to the compound head and forward over
/// the tails. A tail whose head is not in the block (a folio larger than
/// PMD size, e.g. hugetlb 1 GiB) gives a folio starting at the block.
pub fn folio_in_block(block: u64, flags: &[KpageFlags], pfn: u64) -> Option<FolioPfns> {
    let i = usize::try_from(pfn.checked_sub(block)?).ok()?;
    let f = *flags.get(i)?;
    if !f.in_large_folio() {
        return None;
    }
    let mut h = i;
    while h > 0 && !flags[h].compound_head() && flags[h].compound_tail() {
        h -= 1;
    }
    let mut e = i + 1;
    while e < flags.len() && flags[e].compound_tail() && !flags[e].compound_head() {
        e += 1;
    }
    Some(FolioPfns { head: block + h as u64, end: block + e as u64, head_flags: flags[h] })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> KpageFlags {
        KpageFlags(1 << KPF_COMPOUND_HEAD | 1 << KPF_THP | 1 << KPF_ANON)
    }
    fn tail() -> KpageFlags {
        KpageFlags(1 << KPF_COMPOUND_TAIL | 1 << KPF_THP | 1 << KPF_ANON)
    }

    #[test]
    fn folio_walk_finds_head_and_end() {
        // PFNs 1000..1016: base page, 4-page folio at 1004, base, 8-page folio at 1008.
        let mut flags = vec![KpageFlags(1 << KPF_ANON); 16];
        flags[4] = head();
        flags[5..8].fill(tail());
        flags[8] = head();
        flags[9..16].fill(tail());
        assert_eq!(folio_in_block(1000, &flags, 1001), None);
        let f = folio_in_block(1000, &flags, 1006).expect("large");
        assert_eq!((f.head, f.end, f.nr_pages()), (1004, 1008, 4));
        assert!(f.head_flags.thp());
        let g = folio_in_block(1000, &flags, 1008).expect("large");
        assert_eq!((g.head, g.end), (1008, 1016));
        assert_eq!(folio_in_block(1000, &flags, 999), None);
        assert_eq!(folio_in_block(1000, &flags, 1016), None);
    }
}
