//! The idle-bitmap probe: sampled page → PFN (pagemap) → its bit in
//! /sys/kernel/mm/page_idle/bitmap. Arm writes 1 (mark idle); check reads:
//! 1 = still idle, 0 = accessed. Needs CONFIG_IDLE_PAGE_TRACKING and root.
//!
//! Format (Documentation/admin-guide/mm/idle_page_tracking.rst): u64 words,
//! PFN i is bit i % 64 of word i / 64; reads and writes are 8-byte aligned.
//! THP: the idle flag lives on the folio, so a tail PFN is mapped to its
//! compound head (via /proc/kpageflags) and any touch marks the whole huge
//! page accessed. Pages the kernel cannot mark idle (not on an LRU list) read
//! back 0 after arm; they are reported `Unknown`, not accessed.

use crate::ops::kpageflags::{KPAGEFLAGS_PATH, KpageFlags, KpageflagsFile};
use crate::ops::pagemap::PagemapEntry;
use crate::ops::pidfd::ProcTarget;
use crate::ops::{ProbeStats, SampleState};
use crate::probe::{AccessProbe, ProbeError, Sees};
use crate::{Addr, PAGE_SIZE};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Default location of the bitmap.
pub const PAGE_IDLE_BITMAP_PATH: &str = "/sys/kernel/mm/page_idle/bitmap";

/// Byte offset in the bitmap of the word holding `pfn`'s bit.
pub fn word_offset(pfn: u64) -> u64 {
    pfn / 64 * 8
}

/// Index of the word holding `pfn`'s bit.
pub fn word_index(pfn: u64) -> u64 {
    pfn / 64
}

/// The mask of `pfn`'s bit inside its word.
pub fn bit_mask(pfn: u64) -> u64 {
    1 << (pfn % 64)
}

/// Per-word masks of `pfns`: sorted `(word index, mask)`, one entry per word.
pub fn word_masks(pfns: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = pfns.into_iter().map(|p| (word_index(p), bit_mask(p))).collect();
    v.sort_unstable_by_key(|&(w, _)| w);
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (w, m) in v {
        match out.last_mut() {
            Some((lw, lm)) if *lw == w => *lm |= m,
            _ => out.push((w, m)),
        }
    }
    out
}

/// Runs of consecutive word indices in `sorted_words`, as index ranges into
/// it: one `pread`/`pwrite` each. Only strictly consecutive words are
/// joined, so a write never stores a word we have no bit in.
fn word_runs(sorted_words: &[u64]) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for k in 1..=sorted_words.len() {
        if k == sorted_words.len() || sorted_words[k] != sorted_words[k - 1] + 1 {
            if start < k {
                runs.push(start..k);
            }
            start = k;
        }
    }
    runs
}

/// The open bitmap (the kernel's, or a fixture file in tests).
#[derive(Debug)]
pub struct IdleBitmapFile {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
}

impl IdleBitmapFile {
    /// Open read-write.
    pub fn open(path: &Path) -> io::Result<IdleBitmapFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(IdleBitmapFile { file, path: path.to_path_buf(), buf: Vec::new() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Mark idle every PFN set in `masks` (sorted `(word, mask)` as from
    /// [`word_masks`]); consecutive words go in one `pwrite`.
    pub fn mark_idle(&mut self, masks: &[(u64, u64)]) -> io::Result<()> {
        let words: Vec<u64> = masks.iter().map(|&(w, _)| w).collect();
        for run in word_runs(&words) {
            self.buf.clear();
            for &(_, m) in &masks[run.clone()] {
                self.buf.extend_from_slice(&m.to_ne_bytes());
            }
            self.file.write_all_at(&self.buf, words[run.start] * 8)?;
        }
        Ok(())
    }

    /// Read the words `words` (sorted, unique) into `out[i]`.
    pub fn read_words(&mut self, words: &[u64], out: &mut [u64]) -> io::Result<()> {
        assert_eq!(words.len(), out.len(), "one output slot per word");
        for run in word_runs(words) {
            self.buf.resize(run.len() * 8, 0);
            self.file.read_exact_at(&mut self.buf, words[run.start] * 8)?;
            for (k, c) in self.buf.chunks_exact(8).enumerate() {
                out[run.start + k] = u64::from_ne_bytes(c.try_into().expect("8-byte chunk"));
            }
        }
        Ok(())
    }

    /// Whether each PFN is still idle (bit set).
    pub fn still_idle(&mut self, pfns: &[u64]) -> io::Result<Vec<bool>> {
        let masks = word_masks(pfns.iter().copied());
        let words: Vec<u64> = masks.iter().map(|&(w, _)| w).collect();
        let mut values = vec![0u64; words.len()];
        self.read_words(&words, &mut values)?;
        let by_word: HashMap<u64, u64> = words.into_iter().zip(values).collect();
        Ok(pfns.iter().map(|&p| by_word.get(&word_index(p)).is_some_and(|v| v & bit_mask(p) != 0)).collect())
    }
}

/// Where the probe's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleBitmapPaths {
    pub bitmap: PathBuf,
    /// To map THP tail pages to their head; `None`: use PFNs as they are.
    pub kpageflags: Option<PathBuf>,
}

impl Default for IdleBitmapPaths {
    fn default() -> Self {
        IdleBitmapPaths {
            bitmap: PathBuf::from(PAGE_IDLE_BITMAP_PATH),
            kpageflags: Some(PathBuf::from(KPAGEFLAGS_PATH)),
        }
    }
}

/// The idle-bitmap probe on one target.
#[derive(Debug)]
pub struct IdleBitmapProbe {
    target: Arc<ProcTarget>,
    bitmap: IdleBitmapFile,
    kpageflags: Option<KpageflagsFile>,
    /// Pages of the last arm that could not be marked idle.
    untracked: HashSet<u64>,
    armed: HashSet<u64>,
    stats: ProbeStats,
}

impl IdleBitmapProbe {
    pub fn new(target: Arc<ProcTarget>, paths: &IdleBitmapPaths) -> Result<IdleBitmapProbe, ProbeError> {
        let bitmap = IdleBitmapFile::open(&paths.bitmap).map_err(|e| ProbeError::Unavailable {
            probe: "idle-bitmap",
            reason: format!("cannot open {} read-write: {e}", paths.bitmap.display()),
        })?;
        let kpageflags = match &paths.kpageflags {
            None => None,
            Some(p) => Some(KpageflagsFile::open(p).map_err(|e| ProbeError::Unavailable {
                probe: "idle-bitmap",
                reason: format!("cannot open {}: {e}", p.display()),
            })?),
        };
        Ok(IdleBitmapProbe {
            target,
            bitmap,
            kpageflags,
            untracked: HashSet::new(),
            armed: HashSet::new(),
            stats: ProbeStats::default(),
        })
    }

    pub fn target(&self) -> &Arc<ProcTarget> {
        &self.target
    }

    pub fn stats(&self) -> ProbeStats {
        self.stats
    }

    fn io(&self, what: &str, path: &Path, e: io::Error) -> ProbeError {
        ProbeError::Io { pid: self.target.pid(), what: format!("{what} {}", path.display()), source: e }
    }

    /// The PFN whose idle bit stands for each page (`None`: not present or
    /// PFN hidden): the compound head for THP tails.
    fn tracked_pfns(&mut self, pages: &[Addr]) -> Result<Vec<Option<u64>>, ProbeError> {
        let mut entries = vec![PagemapEntry::default(); pages.len()];
        self.target.with_pagemap("read sampled pages", |pm| pm.read_addrs(pages, &mut entries))?;
        let mut pfns: Vec<Option<u64>> = entries.iter().map(|e| e.pfn()).collect();
        let Some(kpf) = self.kpageflags.as_mut() else {
            return Ok(pfns);
        };
        let present: Vec<(usize, u64)> =
            pfns.iter().enumerate().filter_map(|(i, p)| p.map(|p| (i, p))).collect();
        let raw: Vec<u64> = present.iter().map(|&(_, p)| p).collect();
        let mut flags = vec![KpageFlags::default(); raw.len()];
        let path = kpf.path().to_path_buf();
        kpf.read_pfns(&raw, &mut flags).map_err(|e| self.io("read", &path, e))?;
        for (&(i, pfn), f) in present.iter().zip(&flags) {
            if f.compound_tail() {
                let kpf = self.kpageflags.as_mut().expect("checked above");
                let head = kpf.folio_of(pfn).map_err(|e| self.io("read", &path, e))?.map(|f| f.head);
                pfns[i] = head.or(Some(pfn));
            }
        }
        Ok(pfns)
    }

    /// Like [`AccessProbe::check`], with pages that could not be tracked as `Unknown`.
    pub fn check_states(&mut self, addrs: &[Addr], out: &mut [SampleState]) -> Result<(), ProbeError> {
        assert_eq!(addrs.len(), out.len(), "one result per address");
        let pages: Vec<Addr> = addrs.iter().map(|a| a.align_down(PAGE_SIZE)).collect();
        let pfns = self.tracked_pfns(&pages)?;
        let present: Vec<u64> = pfns.iter().flatten().copied().collect();
        let idle = self.bitmap.still_idle(&present).map_err(|e| self.io("read", &self.bitmap.path, e))?;
        let mut idle_it = idle.into_iter();
        self.stats.check_calls += 1;
        for (i, pfn) in pfns.iter().enumerate() {
            let page = pages[i].0;
            let state = match pfn {
                // Not in RAM now: it cannot have been touched without a fault.
                None if self.armed.contains(&page) => SampleState::NotAccessed,
                None => SampleState::Unknown,
                Some(_) => {
                    let still_idle = idle_it.next().unwrap_or(false);
                    if !self.armed.contains(&page) || self.untracked.contains(&page) {
                        SampleState::Unknown
                    } else if still_idle {
                        SampleState::NotAccessed
                    } else {
                        SampleState::Accessed
                    }
                }
            };
            self.stats.addrs_checked += 1;
            match state {
                SampleState::Accessed => self.stats.accessed += 1,
                SampleState::Unknown => self.stats.unknown += 1,
                SampleState::NotAccessed => {}
            }
            out[i] = state;
        }
        Ok(())
    }
}

impl AccessProbe for IdleBitmapProbe {
    fn name(&self) -> &'static str {
        "idle-bitmap"
    }

    fn sees(&self) -> Sees {
        Sees::ReadsAndWrites
    }

    fn arm(&mut self, addrs: &[Addr]) -> Result<(), ProbeError> {
        self.stats.arm_calls += 1;
        self.stats.addrs_armed += addrs.len() as u64;
        self.armed.clear();
        self.untracked.clear();
        let pages: Vec<Addr> = addrs.iter().map(|a| a.align_down(PAGE_SIZE)).collect();
        let pfns = self.tracked_pfns(&pages)?;
        let present: Vec<u64> = pfns.iter().flatten().copied().collect();
        let masks = word_masks(present.iter().copied());
        self.bitmap.mark_idle(&masks).map_err(|e| self.io("write", &self.bitmap.path, e))?;
        // Read back: pages the kernel could not mark idle stay 0.
        let idle = self.bitmap.still_idle(&present).map_err(|e| self.io("read", &self.bitmap.path, e))?;
        let mut idle_it = idle.into_iter();
        for (i, pfn) in pfns.iter().enumerate() {
            self.armed.insert(pages[i].0);
            if pfn.is_some() && !idle_it.next().unwrap_or(false) {
                self.untracked.insert(pages[i].0);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_arithmetic() {
        assert_eq!((word_index(0), word_offset(0), bit_mask(0)), (0, 0, 1));
        assert_eq!((word_index(63), word_offset(63), bit_mask(63)), (0, 0, 1 << 63));
        assert_eq!((word_index(64), word_offset(64), bit_mask(64)), (1, 8, 1));
        assert_eq!((word_index(130), word_offset(130), bit_mask(130)), (2, 16, 4));
        assert_eq!(word_masks([130, 5, 64, 0, 129]), vec![(0, 1 | 1 << 5), (1, 1), (2, 2 | 4)]);
    }

    #[test]
    fn runs_join_only_consecutive_words() {
        assert_eq!(word_runs(&[1, 2, 3, 5, 9, 10]), vec![0..3, 3..4, 4..6]);
        assert_eq!(word_runs(&[]), Vec::<std::ops::Range<usize>>::new());
    }
}
