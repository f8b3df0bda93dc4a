//! The workload's memory: one anonymous private mapping per region, 2 MiB
//! aligned and fenced by PROT_NONE guard pages, filled and verified word by word.
//!
//! Why guards: the kernel merges adjacent anonymous VMAs with equal flags, and
//! every region must show up as its own line in /proc/PID/maps so its range is
//! known to tests and monitors. Why 2 MiB alignment: so a hot region's aligned
//! 2 MiB units can become transparent huge pages (issue 5).
//!
//! The words are seen as `AtomicU64` and accessed with relaxed loads and stores:
//! access threads, the verifier, the kernel (pageout, collapse) and a debugger
//! writing through /proc/PID/mem may all touch the same word at once, and
//! atomics make that well-defined while compiling to plain moves on x86-64.

use super::content::{RegionContent, WORD_BYTES};
use super::os;
use super::protocol::{BadWord, VerifyReport};
use super::spec::ThpHint;
use damon_core::AddrRange;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;

/// Size of a PMD-mapped transparent huge page on x86-64.
pub const HUGE_PAGE_SIZE: u64 = 2 << 20;

/// Why a region could not be mapped.
#[derive(Debug, Error)]
pub enum MapError {
    #[error("cannot reserve {len_bytes} bytes of address space for region '{region}'")]
    Reserve {
        region: String,
        len_bytes: u64,
        #[source]
        source: io::Error,
    },
    #[error("cannot make region '{region}' ({range}) readable and writable")]
    Protect {
        region: String,
        range: AddrRange,
        #[source]
        source: io::Error,
    },
    #[error("madvise({advice}) on region '{region}' ({range}) failed")]
    Madvise {
        region: String,
        range: AddrRange,
        advice: ThpHint,
        #[source]
        source: io::Error,
    },
    #[error("region '{region}' of {len_bytes} bytes does not fit this machine's address space")]
    TooLarge { region: String, len_bytes: u64 },
}

/// One region's mapping; unmapped (with its guards) on drop.
#[derive(Debug)]
pub struct Mapping {
    /// First byte of the region, 2 MiB aligned.
    start: usize,
    /// Bytes, a multiple of the page size.
    len: usize,
    /// Guard size: one page before and one after the region.
    guard: usize,
}

// SAFETY: the mapping is plain memory owned by this value; all access goes
// through `words()`, i.e. through atomics, so sharing it between threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len_bytes` (rounded up to whole pages) for region `name` and gives it `thp` as madvise hint.
    pub fn new(name: &str, len_bytes: u64, thp: ThpHint, page_size: u64) -> Result<Mapping, MapError> {
        let too_large = || MapError::TooLarge { region: name.to_owned(), len_bytes };
        let page = usize::try_from(page_size).map_err(|_| too_large())?;
        let huge = HUGE_PAGE_SIZE as usize;
        let len = usize::try_from(len_bytes.div_ceil(page_size) * page_size).map_err(|_| too_large())?;
        // Room to align the start to 2 MiB with a guard page before it, plus a guard after.
        let reserve_len = len.checked_add(huge + 2 * page).ok_or_else(too_large)?;
        let base = os::reserve(reserve_len).map_err(|source| MapError::Reserve {
            region: name.to_owned(),
            len_bytes: reserve_len as u64,
            source,
        })?;
        let start = (base + page).div_ceil(huge) * huge;
        let guarded_start = start - page;
        let guarded_end = start + len + page;
        let reserve_end = base + reserve_len;
        debug_assert!(base <= guarded_start && guarded_end <= reserve_end);
        let range = AddrRange::new(start as u64, (start + len) as u64);
        // SAFETY: both trimmed pieces lie inside the reservation just made,
        // outside the guarded range, and nothing references them.
        let trimmed = unsafe {
            os::unmap(base, guarded_start - base)
                .and_then(|()| os::unmap(guarded_end, reserve_end - guarded_end))
        };
        let mapping = Mapping { start, len, guard: page };
        if let Err(source) = trimmed {
            // Dropping `mapping` unmaps the guarded range; the failed piece stays reserved (harmless).
            drop(mapping);
            return Err(MapError::Reserve { region: name.to_owned(), len_bytes: reserve_len as u64, source });
        }
        os::protect_read_write(start, len).map_err(|source| MapError::Protect {
            region: name.to_owned(),
            range,
            source,
        })?;
        let advice = match thp {
            ThpHint::None => None,
            ThpHint::Hugepage => Some(libc::MADV_HUGEPAGE),
            ThpHint::Nohugepage => Some(libc::MADV_NOHUGEPAGE),
        };
        if let Some(advice) = advice {
            os::madvise(start, len, advice).map_err(|source| MapError::Madvise {
                region: name.to_owned(),
                range,
                advice: thp,
                source,
            })?;
        }
        Ok(mapping)
    }

    /// The region's address range (guards excluded).
    pub fn range(&self) -> AddrRange {
        AddrRange::new(self.start as u64, (self.start + self.len) as u64)
    }

    pub fn len_bytes(&self) -> u64 {
        self.len as u64
    }

    /// The region as 8-byte words.
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: [start, start + len) is mapped readable and writable for as
        // long as `self` lives; start is 2 MiB aligned and len a multiple of the
        // page size, so the slice is aligned and whole; AtomicU64 has u64's
        // layout, and every access through it is atomic.
        unsafe { std::slice::from_raw_parts(self.start as *const AtomicU64, self.len / WORD_BYTES as usize) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the guarded range is this value's own mapping; `words()`
        // borrows `self`, so no reference into it outlives this call.
        // A failure here cannot be handled better than by leaking the range.
        let _ = unsafe { os::unmap(self.start - self.guard, self.len + 2 * self.guard) };
    }
}

/// Stores the expected value into `words`, the region's words starting at
/// index `first_word`. In a sparse region only the filled pages are written;
/// the others are not touched at all (not even read), so they stay unmapped.
pub fn fill_words(words: &[AtomicU64], first_word: u64, content: &RegionContent) {
    let start = first_word * WORD_BYTES;
    let store = |offset: u64| {
        words[((offset - start) / WORD_BYTES) as usize].store(content.expected(offset), Ordering::Relaxed);
    };
    let end = start + words.len() as u64 * WORD_BYTES;
    match content.sparse {
        None => (start..end).step_by(WORD_BYTES as usize).for_each(store),
        Some((stride, page)) => {
            let mut filled = start / stride * stride;
            while filled < end {
                let from = filled.max(start);
                let to = (filled + page).min(end);
                if from < to {
                    (from..to).step_by(WORD_BYTES as usize).for_each(store);
                }
                filled += stride;
            }
        }
    }
}

/// Most mismatches listed in a [`VerifyReport`]; the counts cover all of them.
pub const MAX_REPORTED_MISMATCHES: usize = 16;

/// Checks every word of one region against its expected value and adds the
/// result to `report` (bytes checked, mismatching bytes, words and pages, and
/// the first [`MAX_REPORTED_MISMATCHES`] bad words).
pub fn verify_region(
    mapping: &Mapping,
    region_name: &str,
    content: &RegionContent,
    page_size: u64,
    report: &mut VerifyReport,
) {
    let start = mapping.range().start.0;
    let mut last_bad_page = None;
    for (i, w) in mapping.words().iter().enumerate() {
        let offset = i as u64 * WORD_BYTES;
        let expected = content.expected(offset);
        let found = w.load(Ordering::Relaxed);
        if found == expected {
            continue;
        }
        // Little-endian: byte k of the word is bits 8k..8k+8.
        let diff = found ^ expected;
        let bad_bytes = (0..WORD_BYTES).filter(|k| (diff >> (8 * k)) & 0xff != 0).count() as u64;
        let first_bad_byte = u64::from(diff.trailing_zeros() / 8);
        report.mismatches += bad_bytes;
        report.bad_words += 1;
        let page = (start + offset) / page_size;
        if last_bad_page != Some(page) {
            report.bad_pages += 1;
            last_bad_page = Some(page);
        }
        if report.first_bad.len() < MAX_REPORTED_MISMATCHES {
            report.first_bad.push(BadWord {
                addr: start + offset + first_bad_byte,
                word_addr: start + offset,
                region: region_name.to_owned(),
                offset: offset + first_bad_byte,
                expected,
                found,
            });
        }
    }
    report.bytes_checked += mapping.len_bytes();
    report.ok = report.mismatches == 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_aligned_fenced_and_verifiable() {
        let page = os::page_size();
        let m = Mapping::new("t", 3 * page + 5, ThpHint::None, page).expect("map");
        assert_eq!(m.range().start.0 % HUGE_PAGE_SIZE, 0);
        assert_eq!(m.len_bytes(), 4 * page);
        let content = RegionContent { seed: 9, region_index: 1, sparse: None };
        fill_words(m.words(), 0, &content);
        let mut report = VerifyReport::default();
        verify_region(&m, "t", &content, page, &mut report);
        assert!(report.ok);
        assert_eq!(report.bytes_checked, 4 * page);

        // Flip the second byte of word 10 and the whole of word 600 (another page).
        let w = &m.words()[10];
        w.store(w.load(Ordering::Relaxed) ^ 0xff00, Ordering::Relaxed);
        m.words()[600].store(0, Ordering::Relaxed);
        let mut report = VerifyReport::default();
        verify_region(&m, "t", &content, page, &mut report);
        assert!(!report.ok);
        assert_eq!(report.bad_words, 2);
        assert_eq!(report.bad_pages, 2);
        assert_eq!(report.first_bad[0].addr, m.range().start.0 + 81);
        assert_eq!(report.first_bad[0].offset, 81);
        assert_eq!(report.first_bad[1].found, 0);
    }

    #[test]
    fn sparse_fill_touches_one_page_per_stride_and_verifies() {
        let page = os::page_size();
        let m = Mapping::new("s", 16 * page, ThpHint::Nohugepage, page).expect("map");
        let content = RegionContent { seed: 5, region_index: 0, sparse: Some((4 * page, page)) };
        // Two fill threads, split in the middle of a filled page's stride.
        let words = m.words();
        let half = words.len() / 2 + 3;
        fill_words(&words[..half], 0, &content);
        fill_words(&words[half..], half as u64, &content);
        let resident = os::resident_pages(m.range().start.0 as usize, 16 * page as usize).expect("mincore");
        assert_eq!(resident, [true, false, false, false].repeat(4), "only the filled pages were touched");
        let mut report = VerifyReport::default();
        verify_region(&m, "s", &content, page, &mut report);
        assert!(report.ok, "{report:?}");
        // A filled word lost, or a zero page written, is caught.
        words[1].store(0, Ordering::Relaxed);
        words[(page / 8 + 1) as usize].store(7, Ordering::Relaxed);
        let mut report = VerifyReport::default();
        verify_region(&m, "s", &content, page, &mut report);
        assert_eq!(report.bad_words, 2);
    }

    #[test]
    fn wrong_seed_fails_everywhere() {
        let page = os::page_size();
        let m = Mapping::new("t", page, ThpHint::Nohugepage, page).expect("map");
        fill_words(m.words(), 0, &RegionContent { seed: 1, region_index: 0, sparse: None });
        let mut report = VerifyReport::default();
        verify_region(&m, "t", &RegionContent { seed: 2, region_index: 0, sparse: None }, page, &mut report);
        assert_eq!(report.bad_words, page / 8);
        assert_eq!(report.first_bad.len(), MAX_REPORTED_MISMATCHES);
    }
}
