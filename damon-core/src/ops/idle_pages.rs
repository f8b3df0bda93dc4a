//! etmem's /proc/PID/idle_pages (the etmem_scan kernel module): the stream
//! parser, a reader over address ranges, and a probe on top.
//!
//! Format (reference/etmem.md §3.1, etmemd_scan.c): `lseek` to a page-aligned
//! virtual address, `read` → the kernel walks `count << (3 + PAGE_SHIFT)`
//! bytes of address space (one buffer byte per 8 pages) and test-and-clears
//! the Accessed bits: every read reports and re-arms. Output: byte 0xA0 + an
//! 8-byte big-endian address sets the cursor; any other byte is
//! `(type << 4) | nr` for `nr` consecutive pages of that type; holes only
//! move the cursor.

use crate::ops::pidfd::ProcTarget;
use crate::ops::{ProbeStats, SampleState};
use crate::probe::{AccessProbe, ProbeError, Sees};
use crate::{Addr, AddrRange, PAGE_SIZE};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

/// The set-cursor command byte (`PIP_COMPOSE(PIP_CMD, 0)`).
pub const PIP_CMD_SET_HVA: u8 = 0xA0;
/// Smallest read the kernel takes is 19 bytes (`PAGE_IDLE_BUF_MIN`); etmemd uses 20.
pub const IDLE_PAGES_BUF_MIN: usize = 20;
/// Largest single read: 1 MiB walks 32 GiB of address space.
pub const IDLE_PAGES_BUF_MAX: usize = 1 << 20;

const PMD_SIZE: u64 = 2 << 20;
const PUD_SIZE: u64 = 1 << 30;

/// Record types of the stream (`enum ProcIdlePageType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum IdlePageType {
    PteAccessed = 0,
    PmdAccessed = 1,
    PudPresent = 2,
    PteDirty = 3,
    PmdDirty = 4,
    PteIdle = 5,
    PmdIdle = 6,
    /// A PMD whose 512 PTEs are all idle.
    PmdIdlePtes = 7,
    PteHole = 8,
    PmdHole = 9,
    PipCmd = 10,
}

impl IdlePageType {
    pub fn from_nibble(n: u8) -> Option<IdlePageType> {
        use IdlePageType::*;
        Some(match n {
            0 => PteAccessed,
            1 => PmdAccessed,
            2 => PudPresent,
            3 => PteDirty,
            4 => PmdDirty,
            5 => PteIdle,
            6 => PmdIdle,
            7 => PmdIdlePtes,
            8 => PteHole,
            9 => PmdHole,
            10 => PipCmd,
            _ => return None,
        })
    }

    /// Address space one unit of this type covers (etmemd's
    /// `g_page_type_by_idle_kind`; `PmdIdlePtes` covers a whole PMD).
    pub fn unit_bytes(self) -> u64 {
        use IdlePageType::*;
        match self {
            PteAccessed | PteDirty | PteIdle | PteHole | PipCmd => PAGE_SIZE,
            PmdAccessed | PmdDirty | PmdIdle | PmdIdlePtes | PmdHole => PMD_SIZE,
            PudPresent => PUD_SIZE,
        }
    }

    /// What the record says about its pages (`None` for holes and commands).
    pub fn access(self) -> Option<PageAccess> {
        use IdlePageType::*;
        match self {
            PteAccessed | PmdAccessed | PudPresent => Some(PageAccess::Accessed),
            PteDirty | PmdDirty => Some(PageAccess::Dirty),
            PteIdle | PmdIdle | PmdIdlePtes => Some(PageAccess::Idle),
            PteHole | PmdHole | PipCmd => None,
        }
    }
}

/// What one scan saw of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PageAccess {
    Idle,
    /// Accessed (read, or a write the probe cannot tell apart).
    Accessed,
    /// Written.
    Dirty,
}

impl PageAccess {
    /// etmem's slide weights: idle 0, read 1, dirty 3.
    pub fn etmem_weight(self) -> u32 {
        match self {
            PageAccess::Idle => 0,
            PageAccess::Accessed => 1,
            PageAccess::Dirty => 3,
        }
    }
}

/// `nr_pages` consecutive pages of `page_size` bytes from `start`, all seen the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePageRun {
    pub start: Addr,
    /// 4 KiB, 2 MiB or 1 GiB.
    pub page_size: u64,
    pub nr_pages: u64,
    pub access: PageAccess,
}

impl IdlePageRun {
    pub fn range(&self) -> AddrRange {
        AddrRange::new(self.start.0, self.start.0 + self.page_size * self.nr_pages)
    }
}

/// A stream the parser cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdlePagesParseError {
    #[error("byte {byte:#04x} at offset {offset}: unknown record type {}", byte >> 4)]
    UnknownType { offset: usize, byte: u8 },
    #[error("byte {byte:#04x} at offset {offset}: unknown command")]
    UnknownCommand { offset: usize, byte: u8 },
}

/// Where parsing stopped, and what was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOutcome {
    /// The cursor after the last record: the next read starts here.
    pub end: Addr,
    /// Records at an address not aligned to their page size: skipped, as etmemd does.
    pub unaligned_records: u64,
}

/// Parse one read's worth of stream. The cursor starts at `start` (the
/// `lseek` position; the kernel also sets it explicitly first). A set-cursor
/// command cut off at the end of `bytes` ends the parse there, like etmemd.
pub fn parse_stream(
    start: Addr,
    bytes: &[u8],
    out: &mut dyn FnMut(IdlePageRun),
) -> Result<ParseOutcome, IdlePagesParseError> {
    let mut cursor = start.0;
    let mut unaligned = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == PIP_CMD_SET_HVA {
            let Some(addr) = bytes.get(i + 1..i + 9) else { break };
            cursor = u64::from_be_bytes(addr.try_into().expect("8 bytes"));
            i += 9;
            continue;
        }
        let ty = IdlePageType::from_nibble(b >> 4)
            .ok_or(IdlePagesParseError::UnknownType { offset: i, byte: b })?;
        if ty == IdlePageType::PipCmd {
            return Err(IdlePagesParseError::UnknownCommand { offset: i, byte: b });
        }
        let nr = u64::from(b & 0x0f);
        let unit = ty.unit_bytes();
        if let Some(access) = ty.access().filter(|_| nr > 0) {
            // PMD_IDLE_PTES is nr PMDs of 512 idle 4 KiB pages each (etmemd).
            let (page_size, nr_pages) = if ty == IdlePageType::PmdIdlePtes {
                (PAGE_SIZE, nr * (PMD_SIZE / PAGE_SIZE))
            } else {
                (unit, nr)
            };
            if cursor & (page_size - 1) == 0 {
                out(IdlePageRun { start: Addr(cursor), page_size, nr_pages, access });
            } else {
                unaligned += 1;
            }
        }
        cursor += nr * unit;
        i += 1;
    }
    Ok(ParseOutcome { end: Addr(cursor), unaligned_records: unaligned })
}

/// Something that answers idle_pages reads: `read(fd)` after `lseek(fd, va)`.
pub trait IdlePagesSource: fmt::Debug + Send {
    fn read_from(&mut self, va: u64, buf: &mut [u8]) -> io::Result<usize>;
}

impl IdlePagesSource for File {
    fn read_from(&mut self, va: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.seek(SeekFrom::Start(va))?;
        self.read(buf)
    }
}

/// Read size for `range`: one byte per 8 pages, within
/// [`IDLE_PAGES_BUF_MIN`]..=[`IDLE_PAGES_BUF_MAX`].
pub fn buffer_len(range: AddrRange) -> usize {
    let pages = range.len().div_ceil(PAGE_SIZE);
    usize::try_from(pages.div_ceil(8)).unwrap_or(usize::MAX).clamp(IDLE_PAGES_BUF_MIN, IDLE_PAGES_BUF_MAX)
}

/// Totals of one [`scan_range`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScanSummary {
    pub reads: u64,
    pub bytes_read: u64,
    pub unaligned_records: u64,
}

/// Scan `range` (page-aligned outward): read, parse, and re-read from the
/// cursor until the range is covered — unlike etmemd, which reads once per
/// VMA and misses the rest when the output fills its buffer. Runs are
/// clipped to `range`.
pub fn scan_range(
    src: &mut dyn IdlePagesSource,
    range: AddrRange,
    out: &mut dyn FnMut(IdlePageRun),
) -> io::Result<ScanSummary> {
    let range = AddrRange::new(range.start.align_down(PAGE_SIZE).0, range.end.align_up(PAGE_SIZE).0);
    let mut summary = ScanSummary::default();
    let mut buf = Vec::new();
    let mut cursor = range.start;
    while cursor < range.end {
        let len = buffer_len(AddrRange { start: cursor, end: range.end });
        buf.resize(len, 0);
        let n = src.read_from(cursor.0, &mut buf)?;
        summary.reads += 1;
        summary.bytes_read += n as u64;
        if n == 0 {
            break;
        }
        let outcome = parse_stream(cursor, &buf[..n], &mut |run| {
            if let Some(clipped) = clip(run, range) {
                out(clipped);
            }
        })
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        summary.unaligned_records += outcome.unaligned_records;
        // A read that left room for more walked its whole span
        // (`len << (3 + PAGE_SHIFT)`); what it did not report there is
        // unmapped. A full buffer stopped the walk at the cursor.
        let walked_end = cursor.0.saturating_add((len as u64) << 15);
        let next = if n + 9 < len { outcome.end.0.max(walked_end) } else { outcome.end.0 };
        if next <= cursor.0 {
            break; // no progress: never spin
        }
        cursor = Addr(next);
    }
    Ok(summary)
}

/// The part of `run` inside `range`: whole pages only, so a huge page that
/// starts before `range` is kept when it overlaps (it is one unit).
fn clip(run: IdlePageRun, range: AddrRange) -> Option<IdlePageRun> {
    let r = run.range();
    r.intersect(&range)?;
    let first = if r.start < range.start { (range.start.0 - r.start.0) / run.page_size } else { 0 };
    let last = (range.end.0.min(r.end.0) - r.start.0).div_ceil(run.page_size);
    Some(IdlePageRun { start: Addr(r.start.0 + first * run.page_size), nr_pages: last - first, ..run })
}

/// Pages this close (in pages) are scanned with one read: the smallest read
/// walks `IDLE_PAGES_BUF_MIN * 8` pages anyway.
const SAMPLE_WINDOW_PAGES: u64 = IDLE_PAGES_BUF_MIN as u64 * 8;

/// The etmem idle_pages probe on one target.
#[derive(Debug)]
pub struct EtmemIdlePagesProbe {
    target: Arc<ProcTarget>,
    src: Box<dyn IdlePagesSource>,
    stats: ProbeStats,
}

impl EtmemIdlePagesProbe {
    /// Open /proc/PID/idle_pages of `target`.
    pub fn new(target: Arc<ProcTarget>) -> Result<EtmemIdlePagesProbe, ProbeError> {
        let f = target.open_file("idle_pages", false).map_err(|e| match e {
            ProbeError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ProbeError::Unavailable {
                    probe: "etmem-idle-pages",
                    reason: format!(
                        "{} does not exist (etmem_scan module not loaded)",
                        target.proc_path("idle_pages").display()
                    ),
                }
            }
            e => e,
        })?;
        Ok(EtmemIdlePagesProbe::with_source(target, Box::new(f)))
    }

    /// A probe reading from `src` instead of the target's idle_pages file.
    pub fn with_source(target: Arc<ProcTarget>, src: Box<dyn IdlePagesSource>) -> EtmemIdlePagesProbe {
        EtmemIdlePagesProbe { target, src, stats: ProbeStats::default() }
    }

    pub fn target(&self) -> &Arc<ProcTarget> {
        &self.target
    }

    pub fn stats(&self) -> ProbeStats {
        self.stats
    }

    /// Scan `range` (one etmem scan: reports and re-arms every page).
    pub fn scan(
        &mut self,
        range: AddrRange,
        out: &mut dyn FnMut(IdlePageRun),
    ) -> Result<ScanSummary, ProbeError> {
        let s = scan_range(self.src.as_mut(), range, out)
            .map_err(|e| self.target.error(format!("read idle_pages over {range}"), e))?;
        self.target.ensure_alive()?;
        Ok(s)
    }

    /// What one scan says of each address (`None`: no page there).
    pub fn sample(&mut self, addrs: &[Addr]) -> Result<Vec<Option<PageAccess>>, ProbeError> {
        let mut order: Vec<usize> = (0..addrs.len()).collect();
        order.sort_unstable_by_key(|&i| addrs[i]);
        let mut result = vec![None; addrs.len()];
        let mut g = 0;
        while g < order.len() {
            let first = addrs[order[g]].align_down(PAGE_SIZE);
            let mut e = g + 1;
            while e < order.len() && addrs[order[e]].0 / PAGE_SIZE - first.0 / PAGE_SIZE < SAMPLE_WINDOW_PAGES
            {
                e += 1;
            }
            let last = addrs[order[e - 1]].align_down(PAGE_SIZE);
            let group = &order[g..e];
            self.scan(AddrRange::new(first.0, last.0 + PAGE_SIZE), &mut |run| {
                let r = run.range();
                for &i in group {
                    if r.contains(addrs[i]) {
                        result[i] = Some(run.access);
                    }
                }
            })?;
            g = e;
        }
        Ok(result)
    }

    /// Like [`AccessProbe::check`], in three states: `Unknown` never occurs
    /// (a hole is an unmapped page: not accessed).
    pub fn check_states(&mut self, addrs: &[Addr], out: &mut [SampleState]) -> Result<(), ProbeError> {
        let seen = self.sample(addrs)?;
        self.stats.check_calls += 1;
        self.stats.addrs_checked += addrs.len() as u64;
        for (o, s) in out.iter_mut().zip(seen) {
            *o = match s {
                Some(PageAccess::Accessed | PageAccess::Dirty) => {
                    self.stats.accessed += 1;
                    SampleState::Accessed
                }
                Some(PageAccess::Idle) | None => SampleState::NotAccessed,
            };
        }
        Ok(())
    }
}

impl AccessProbe for EtmemIdlePagesProbe {
    fn name(&self) -> &'static str {
        "etmem-idle-pages"
    }

    fn sees(&self) -> Sees {
        Sees::ReadsAndWrites
    }

    /// A read clears the Accessed bits it reports: arming is a scan whose
    /// result is dropped.
    fn arm(&mut self, addrs: &[Addr]) -> Result<(), ProbeError> {
        self.stats.arm_calls += 1;
        self.stats.addrs_armed += addrs.len() as u64;
        self.sample(addrs).map(drop)
    }

    fn check(&mut self, addrs: &[Addr], accessed: &mut [bool]) -> Result<(), ProbeError> {
        let mut states = vec![SampleState::NotAccessed; addrs.len()];
        self.check_states(addrs, &mut states)?;
        for (a, s) in accessed.iter_mut().zip(states) {
            *a = s == SampleState::Accessed;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The reader's loop over a fake kernel (pure logic: no module here).
    use super::*;
    use std::collections::BTreeMap;

    /// Emulates etmem_scan's read: set the cursor, then one record per page
    /// (nr = 1, the worst case for buffer size), until the buffer is full or
    /// the walk range `len << 15` is covered.
    #[derive(Debug)]
    struct FakeKernel {
        pages: BTreeMap<u64, IdlePageType>,
        reads: Vec<(u64, usize)>,
    }

    impl IdlePagesSource for FakeKernel {
        fn read_from(&mut self, va: u64, buf: &mut [u8]) -> io::Result<usize> {
            self.reads.push((va, buf.len()));
            let walk_end = va + ((buf.len() as u64) << 15);
            let mut n = 0;
            buf[..9].copy_from_slice(&[&[PIP_CMD_SET_HVA][..], &va.to_be_bytes()].concat());
            n += 9;
            let mut cursor = va;
            for (&a, &t) in self.pages.range(va..walk_end) {
                let holes = (a - cursor) / PAGE_SIZE;
                let need = holes.div_ceil(15) as usize + 1;
                if n + need > buf.len() {
                    break;
                }
                let mut h = holes;
                while h > 0 {
                    let k = h.min(15);
                    buf[n] = (IdlePageType::PteHole as u8) << 4 | k as u8;
                    n += 1;
                    h -= k;
                }
                buf[n] = (t as u8) << 4 | 1;
                n += 1;
                cursor = a + PAGE_SIZE;
            }
            Ok(n)
        }
    }

    #[test]
    fn reader_rereads_from_cursor_when_output_fills_the_buffer_no_kernel_module_here() {
        let base = 0x7f00_0000_0000u64;
        let mut pages = BTreeMap::new();
        // 4096 pages alternating accessed / idle: 1 byte per page, 8x the sized buffer.
        for k in 0..4096u64 {
            let t = if k % 2 == 0 { IdlePageType::PteAccessed } else { IdlePageType::PteIdle };
            pages.insert(base + k * PAGE_SIZE, t);
        }
        let mut fake = FakeKernel { pages, reads: Vec::new() };
        let range = AddrRange::new(base, base + 4096 * PAGE_SIZE);
        let mut seen = BTreeMap::new();
        let s = scan_range(&mut fake, range, &mut |run| {
            for k in 0..run.nr_pages {
                seen.insert(run.start.0 + k * run.page_size, run.access);
            }
        })
        .expect("scan");
        assert_eq!(seen.len(), 4096, "every page reported once the reader re-reads");
        assert_eq!(seen[&base], PageAccess::Accessed);
        assert_eq!(seen[&(base + PAGE_SIZE)], PageAccess::Idle);
        assert!(s.reads > 1);
        assert_eq!(fake.reads[0], (base, 512), "first read sized 1 byte per 8 pages");
        assert!(fake.reads.windows(2).all(|w| w[1].0 > w[0].0), "each read starts past the last");
    }

    #[test]
    fn probe_samples_through_a_source_no_kernel_module_here() {
        let base = 0x1000_0000u64;
        let mut pages = BTreeMap::new();
        pages.insert(base, IdlePageType::PteAccessed);
        pages.insert(base + 3 * PAGE_SIZE, IdlePageType::PteDirty);
        pages.insert(base + 500 * PAGE_SIZE, IdlePageType::PteIdle);
        let fake = FakeKernel { pages, reads: Vec::new() };
        let target = Arc::new(ProcTarget::fixture(1, "/nonexistent"));
        let mut p = EtmemIdlePagesProbe::with_source(target, Box::new(fake));
        let addrs = [
            Addr(base + 500 * PAGE_SIZE + 8),
            Addr(base + 3 * PAGE_SIZE),
            Addr(base + PAGE_SIZE),
            Addr(base),
        ];
        p.arm(&addrs).expect("arm");
        let mut acc = [false; 4];
        p.check(&addrs, &mut acc).expect("check");
        assert_eq!(acc, [false, true, false, true]);
        assert_eq!(
            p.sample(&addrs).expect("sample"),
            vec![Some(PageAccess::Idle), Some(PageAccess::Dirty), None, Some(PageAccess::Accessed)]
        );
    }
}
