//! The page engine's probes: every page of a process checked per scan, in
//! large batches, through the OS probes of damon-core (refault,
//! idle-bitmap, soft-dirty, etmem idle_pages) or a simulated address space.
//!
//! Batching: residency and soft-dirty bits come from `PAGEMAP_SCAN` runs
//! where the kernel has the ioctl (6.7+), else from 256 KiB pagemap reads;
//! refault pages out whole runs of pages per iovec; idle_pages is read a
//! VMA at a time (one byte per 8 pages); bring-back reads /proc/PID/mem in
//! 1 MiB chunks.

use super::round::{PageProbe, PageSpace, PageState, ScanCost};
use damon_core::ops::idle_pages::{EtmemIdlePagesProbe, IdlePagesSource, PageAccess};
use damon_core::ops::select::{self, OsProbe, ProbeKind, ProbeOptions};
use damon_core::ops::sim::{SimSpace, Tick};
use damon_core::ops::sys::{PAGE_IS_PRESENT, PAGE_IS_SOFT_DIRTY, PageRegion};
use damon_core::ops::{ProcTarget, SampleState};
use damon_core::{Addr, AddrRange, PAGE_SIZE, ProbeError};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// etmem_scan's `VMA_SCAN_ADD_FLAGS` = `_IOW(0x66, 0x2, unsigned int)`
/// (reference/etmem.md §3.1): restrict the walk to flagged VMAs.
const VMA_SCAN_ADD_FLAGS: libc::c_ulong = 0x4004_6602;
/// etmem_scan's `VMA_SCAN_FLAG`: only VMAs marked with `MADV_SWAPFLAG`.
const VMA_SCAN_FLAG: libc::c_uint = 0x1000;

/// Largest /proc/PID/mem read when bringing pages back.
const MEM_CHUNK_BYTES: u64 = 1 << 20;

/// The highest weight a scan of `kind` gives a page.
pub fn max_weight(kind: ProbeKind) -> u32 {
    match kind {
        // idle_pages reports dirty PTEs; soft-dirty sees only writes.
        ProbeKind::EtmemIdlePages | ProbeKind::SoftDirty => conf::PAGE_DIRTY_WEIGHT,
        ProbeKind::IdleBitmap | ProbeKind::Refault => 1,
    }
}

/// How the OS probe of one process is driven.
#[derive(Debug)]
enum Inner {
    /// refault and idle-bitmap: damon-core's address-list probes, given every page.
    Addrs(Box<OsProbe>),
    /// soft-dirty: `clear_refs` "4", then runs of soft-dirty pages.
    SoftDirty,
    /// etmem idle_pages: whole VMAs per read; every read also re-arms.
    IdlePages(EtmemIdlePagesProbe),
}

/// A page probe on one real (or fixture) process.
#[derive(Debug)]
pub struct OsPageProbe {
    kind: ProbeKind,
    target: Arc<ProcTarget>,
    inner: Inner,
    /// Every page of the space being scanned (address-list probes).
    addrs: Vec<Addr>,
    /// Pages known to hold memory this round: resident at arm, or seen
    /// accessed since. A page the probe finds not accessed is idle if known,
    /// absent otherwise.
    known: Vec<bool>,
    samples: Vec<SampleState>,
    cost: ScanCost,
    /// Refault pages armed before the last scan (to count evictions).
    evicted_before: u64,
}

impl OsPageProbe {
    /// A probe of `kind` on `target`. `swap_flag`: etmem's `swap_flag=yes`,
    /// honoured by idle_pages (the `VMA_SCAN_ADD_FLAGS` ioctl); the caller
    /// says what it means for the other probes.
    pub fn new(kind: ProbeKind, target: Arc<ProcTarget>, swap_flag: bool) -> Result<OsPageProbe, ProbeError> {
        let inner = match kind {
            ProbeKind::Refault | ProbeKind::IdleBitmap => {
                Inner::Addrs(Box::new(select::build(kind, Arc::clone(&target), &ProbeOptions::default())?))
            }
            ProbeKind::SoftDirty => Inner::SoftDirty,
            ProbeKind::EtmemIdlePages => {
                let file = target.open_file("idle_pages", false)?;
                if swap_flag {
                    let flags: libc::c_uint = VMA_SCAN_FLAG;
                    // SAFETY: the fd is open for the duration of the call and
                    // the argument points to an unsigned int, as etmem_scan's
                    // VMA_SCAN_ADD_FLAGS expects (reference/etmem.md §3.1).
                    let r = unsafe { libc::ioctl(file.as_raw_fd(), VMA_SCAN_ADD_FLAGS as _, &flags) };
                    if r != 0 {
                        return Err(target.error(
                            "ioctl VMA_SCAN_ADD_FLAGS on idle_pages",
                            std::io::Error::last_os_error(),
                        ));
                    }
                }
                Inner::IdlePages(EtmemIdlePagesProbe::with_source(Arc::clone(&target), Box::new(file)))
            }
        };
        Ok(OsPageProbe {
            kind,
            target,
            inner,
            addrs: Vec::new(),
            known: Vec::new(),
            samples: Vec::new(),
            cost: ScanCost::default(),
            evicted_before: 0,
        })
    }

    /// An etmem idle_pages probe reading from `src` instead of the target's
    /// idle_pages file (tests: this kernel has no etmem_scan module).
    pub fn with_idle_pages_source(target: Arc<ProcTarget>, src: Box<dyn IdlePagesSource>) -> OsPageProbe {
        OsPageProbe {
            kind: ProbeKind::EtmemIdlePages,
            inner: Inner::IdlePages(EtmemIdlePagesProbe::with_source(Arc::clone(&target), src)),
            target,
            addrs: Vec::new(),
            known: Vec::new(),
            samples: Vec::new(),
            cost: ScanCost::default(),
            evicted_before: 0,
        }
    }

    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    /// The refault probe's own counters, when this is the refault probe.
    pub fn refault_stats(&self) -> Option<damon_core::ops::refault::RefaultStats> {
        match &self.inner {
            Inner::Addrs(p) => p.refault_stats(),
            _ => None,
        }
    }

    fn refault_armed(&self) -> u64 {
        self.refault_stats().map_or(0, |s| s.pages_armed + s.folios_armed * 512)
    }

    fn resident(&mut self, space: &PageSpace) -> Result<Vec<bool>, ProbeError> {
        self.cost.bytes_read += space.len() as u64 * 8;
        resident_pages(&self.target, space)
    }

    fn arm_addrs(&mut self) -> Result<(), ProbeError> {
        self.evicted_before = self.refault_armed();
        if let Inner::Addrs(p) = &mut self.inner {
            damon_core::AccessProbe::arm(p.as_mut(), &self.addrs)?;
        }
        self.cost.pages_evicted += self.refault_armed().saturating_sub(self.evicted_before);
        Ok(())
    }

    fn clear_soft_dirty(&self) -> Result<(), ProbeError> {
        self.target.write_file("clear_refs", b"4")
    }
}

/// Which pages of `space` are in RAM, from `PAGEMAP_SCAN` runs where the
/// kernel has it, else from big pagemap reads.
pub fn resident_pages(target: &ProcTarget, space: &PageSpace) -> Result<Vec<bool>, ProbeError> {
    let mut out = vec![false; space.len()];
    let mut regions: Vec<PageRegion> = Vec::new();
    let mut entries = Vec::new();
    target.with_pagemap("read resident pages", |pm| {
        for (k, v) in space.vmas().iter().enumerate() {
            let base = space.first_page(k);
            if pm.scan(*v, PAGE_IS_PRESENT, PAGE_IS_PRESENT, &mut regions)? {
                for r in &regions {
                    let a = r.start.max(v.start.0);
                    let b = r.end.min(v.end.0);
                    for addr in (a..b).step_by(PAGE_SIZE as usize) {
                        out[base + ((addr - v.start.0) / PAGE_SIZE) as usize] = true;
                    }
                }
            } else {
                pm.read_range(*v, &mut entries)?;
                for (j, e) in entries.iter().enumerate() {
                    out[base + j] = e.present();
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// Soft-dirty state of every page: `Some(dirty)` for pages in RAM.
fn soft_dirty_pages(target: &ProcTarget, space: &PageSpace) -> Result<Vec<Option<bool>>, ProbeError> {
    let mut out = vec![None; space.len()];
    let mut regions: Vec<PageRegion> = Vec::new();
    let mut entries = Vec::new();
    target.with_pagemap("read soft-dirty bits", |pm| {
        for (k, v) in space.vmas().iter().enumerate() {
            let base = space.first_page(k);
            if pm.scan(*v, PAGE_IS_PRESENT, PAGE_IS_PRESENT | PAGE_IS_SOFT_DIRTY, &mut regions)? {
                for r in &regions {
                    let dirty = r.categories & PAGE_IS_SOFT_DIRTY != 0;
                    let a = r.start.max(v.start.0);
                    let b = r.end.min(v.end.0);
                    for addr in (a..b).step_by(PAGE_SIZE as usize) {
                        out[base + ((addr - v.start.0) / PAGE_SIZE) as usize] = Some(dirty);
                    }
                }
            } else {
                pm.read_range(*v, &mut entries)?;
                for (j, e) in entries.iter().enumerate() {
                    out[base + j] = e.present().then(|| e.soft_dirty());
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

impl PageProbe for OsPageProbe {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn max_weight(&self) -> u32 {
        max_weight(self.kind)
    }

    fn evicts(&self) -> bool {
        self.kind == ProbeKind::Refault
    }

    fn arm(&mut self, space: &PageSpace) -> Result<(), ProbeError> {
        match &mut self.inner {
            Inner::Addrs(_) => {
                self.addrs = space.addrs();
                self.known = self.resident(space)?;
                self.arm_addrs()
            }
            Inner::SoftDirty => {
                self.known = self.resident(space)?;
                self.clear_soft_dirty()
            }
            Inner::IdlePages(p) => {
                // A read reports and clears the Accessed bits: arming is a scan.
                for v in space.vmas() {
                    let s = p.scan(*v, &mut |_| {})?;
                    self.cost.bytes_read += s.bytes_read;
                }
                Ok(())
            }
        }
    }

    fn scan(&mut self, space: &PageSpace, rearm: bool, out: &mut Vec<PageState>) -> Result<(), ProbeError> {
        out.clear();
        out.resize(space.len(), PageState::Absent);
        self.cost.pages_scanned += space.len() as u64;
        match &mut self.inner {
            Inner::Addrs(p) => {
                if self.addrs.len() != space.len() {
                    self.addrs = space.addrs();
                    self.known = vec![false; space.len()];
                }
                self.samples.clear();
                self.samples.resize(space.len(), SampleState::Unknown);
                p.check_states(&self.addrs, &mut self.samples)?;
                self.cost.bytes_read += space.len() as u64 * 8;
                for (i, s) in self.samples.iter().enumerate() {
                    out[i] = match s {
                        SampleState::Accessed => {
                            self.known[i] = true;
                            PageState::Accessed
                        }
                        SampleState::NotAccessed if self.known[i] => PageState::Idle,
                        SampleState::NotAccessed | SampleState::Unknown => PageState::Absent,
                    };
                }
                if rearm {
                    self.arm_addrs()?;
                }
            }
            Inner::SoftDirty => {
                if self.known.len() != space.len() {
                    self.known = vec![false; space.len()];
                }
                let sd = soft_dirty_pages(&self.target, space)?;
                self.cost.bytes_read += space.len() as u64 * 8;
                for (i, s) in sd.into_iter().enumerate() {
                    out[i] = match s {
                        Some(true) => {
                            self.known[i] = true;
                            PageState::Dirty
                        }
                        Some(false) => {
                            self.known[i] = true;
                            PageState::Idle
                        }
                        // Left RAM since (reclaim): not touched, so idle.
                        None if self.known[i] => PageState::Idle,
                        None => PageState::Absent,
                    };
                }
                if rearm {
                    self.clear_soft_dirty()?;
                }
            }
            Inner::IdlePages(p) => {
                for v in space.vmas() {
                    let s = p.scan(*v, &mut |run| {
                        let state = match run.access {
                            PageAccess::Idle => PageState::Idle,
                            PageAccess::Accessed => PageState::Accessed,
                            PageAccess::Dirty => PageState::Dirty,
                        };
                        let r = run.range();
                        let (a, b) = (r.start.max(v.start), r.end.min(v.end));
                        for addr in (a.0..b.0).step_by(PAGE_SIZE as usize) {
                            if let Some(i) = space.index_of(Addr(addr)) {
                                out[i] = state;
                            }
                        }
                    })?;
                    self.cost.bytes_read += s.bytes_read;
                }
            }
        }
        Ok(())
    }

    fn cost(&self) -> ScanCost {
        self.cost
    }
}

/// Fault `ranges` of the target back into RAM by reading them through
/// /proc/PID/mem (the kernel faults each page in for the read, mapped as
/// before). Returns the bytes read. Used after a refault round for pages the
/// probe took out that the policy keeps.
pub fn bring_back(target: &ProcTarget, ranges: &[AddrRange]) -> Result<u64, ProbeError> {
    if ranges.is_empty() {
        return Ok(0);
    }
    let f = target.open_file("mem", false)?;
    let mut buf = vec![0u8; MEM_CHUNK_BYTES as usize];
    let mut done = 0u64;
    for r in ranges {
        let mut at = r.start.0;
        while at < r.end.0 {
            let n = (r.end.0 - at).min(MEM_CHUNK_BYTES) as usize;
            match f.read_at(&mut buf[..n], at) {
                Ok(0) => break,
                Ok(got) => {
                    done += got as u64;
                    at += got as u64;
                }
                // Unmapped meanwhile: skip to the next page.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    at = (at + PAGE_SIZE) / PAGE_SIZE * PAGE_SIZE
                }
                Err(e) => return Err(target.error(format!("read /proc/{}/mem at {at:#x}", target.pid()), e)),
            }
        }
    }
    target.ensure_alive()?;
    Ok(done)
}

/// A page probe over a simulated address space (benchmarks, model tests):
/// every mapped page is in RAM; a scan reports whether the page was touched
/// in any tick since the last arm. It has its own clock.
#[derive(Debug, Clone)]
pub struct SimPageProbe {
    space: Arc<SimSpace>,
    now: Tick,
    armed_at: Tick,
    cost: ScanCost,
}

impl SimPageProbe {
    pub fn new(space: Arc<SimSpace>) -> SimPageProbe {
        SimPageProbe { space, now: 0, armed_at: 0, cost: ScanCost::default() }
    }

    /// Let `ticks` of simulated time pass.
    pub fn advance(&mut self, ticks: Tick) {
        self.now += ticks;
    }

    pub fn now(&self) -> Tick {
        self.now
    }

    pub fn sim(&self) -> &Arc<SimSpace> {
        &self.space
    }
}

impl PageProbe for SimPageProbe {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn max_weight(&self) -> u32 {
        1
    }

    fn arm(&mut self, _space: &PageSpace) -> Result<(), ProbeError> {
        self.armed_at = self.now;
        Ok(())
    }

    fn scan(&mut self, space: &PageSpace, rearm: bool, out: &mut Vec<PageState>) -> Result<(), ProbeError> {
        out.clear();
        out.resize(space.len(), PageState::Absent);
        let mapped = self.space.mappings_at(self.now).to_vec();
        for (k, v) in space.vmas().iter().enumerate() {
            let base = space.first_page(k);
            for m in mapped.iter().filter_map(|m| m.intersect(v)) {
                for addr in (m.start.0..m.end.0).step_by(PAGE_SIZE as usize) {
                    let i = base + ((addr - v.start.0) / PAGE_SIZE) as usize;
                    out[i] = if self.space.accessed_between(Addr(addr), self.armed_at, self.now) {
                        PageState::Accessed
                    } else {
                        PageState::Idle
                    };
                }
            }
        }
        self.cost.pages_scanned += space.len() as u64;
        if rearm {
            self.armed_at = self.now;
        }
        Ok(())
    }

    fn cost(&self) -> ScanCost {
        self.cost
    }
}

#[cfg(test)]
mod tests {
    //! The OS probes on fixture files (no soft-dirty, idle_pages or idle
    //! bitmap on this kernel), and the simulated probe.
    use super::*;
    use crate::engine::page::round::run_round;
    use damon_core::ops::pagemap::{PM_MMAP_EXCLUSIVE, PM_PRESENT, PM_SOFT_DIRTY};
    use damon_core::ops::sim::{Pattern, Phase};
    use std::path::Path;

    const P: u64 = PAGE_SIZE;
    const BASE: u64 = 0x7f00_0000_0000;

    /// A /proc/PID stand-in with a pagemap covering `BASE..BASE + entries.len() pages`.
    /// (A sparse file: only the entries' bytes are written.)
    fn write_pagemap(dir: &Path, entries: &[u64]) {
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("pagemap"))
            .expect("pagemap fixture");
        f.write_all_at(&bytes, BASE / P * 8).expect("write pagemap fixture");
    }

    #[test]
    fn soft_dirty_probe_scores_written_pages_3_and_clears_refs_no_soft_dirty_here() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("clear_refs"), b"").expect("clear_refs");
        let present = PM_PRESENT | PM_MMAP_EXCLUSIVE | 0x1234;
        // Pages: resident clean, resident, resident, not resident.
        write_pagemap(dir.path(), &[present, present, present, 0]);
        let target = Arc::new(ProcTarget::fixture(4242, dir.path()));
        let mut probe = OsPageProbe::new(ProbeKind::SoftDirty, Arc::clone(&target), false).expect("probe");
        let space = PageSpace::new([AddrRange::new(BASE, BASE + 4 * P)]);
        let mut scans = 0;
        let scores = run_round(&mut probe, space, 2, |_| {
            // Between arm and the first scan page 1 is written; before the
            // second page 1 again and page 2; page 0 leaves RAM.
            scans += 1;
            let e = if scans == 1 {
                [present, present | PM_SOFT_DIRTY, present, 0]
            } else {
                [0, present | PM_SOFT_DIRTY, present | PM_SOFT_DIRTY, 0]
            };
            write_pagemap(dir.path(), &e);
            true
        })
        .expect("round");
        let got: Vec<u32> = (0..4).map(|i| scores.score(i)).collect();
        assert_eq!(got, vec![0, 6, 3, 0]);
        assert!(scores.seen(0) && !scores.seen(3), "page 0 was resident at arm; page 3 never");
        assert_eq!(std::fs::read(dir.path().join("clear_refs")).expect("read"), b"4");
        assert_eq!(probe.cost().pages_scanned, 8);
    }

    /// Answers every idle_pages read with the same stream.
    #[derive(Debug)]
    struct Replay(Vec<u8>);

    impl IdlePagesSource for Replay {
        fn read_from(&mut self, _va: u64, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            Ok(n)
        }
    }

    #[test]
    fn idle_pages_probe_reads_runs_with_dirty_no_etmem_module_here() {
        use damon_core::ops::idle_pages::{IdlePageType, PIP_CMD_SET_HVA};
        let dir = tempfile::tempdir().expect("tempdir");
        // One read's output: cursor at BASE, 2 accessed, 1 dirty, 1 hole, 3 idle.
        let mut stream = vec![PIP_CMD_SET_HVA];
        stream.extend_from_slice(&BASE.to_be_bytes());
        stream.push((IdlePageType::PteAccessed as u8) << 4 | 2);
        stream.push((IdlePageType::PteDirty as u8) << 4 | 1);
        stream.push((IdlePageType::PteHole as u8) << 4 | 1);
        stream.push((IdlePageType::PteIdle as u8) << 4 | 3);
        let target = Arc::new(ProcTarget::fixture(4243, dir.path()));
        let mut probe = OsPageProbe::with_idle_pages_source(target, Box::new(Replay(stream)));
        let space = PageSpace::new([AddrRange::new(BASE, BASE + 7 * P)]);
        let scores = run_round(&mut probe, space, 1, |_| true).expect("round");
        let got: Vec<u32> = (0..7).map(|i| scores.score(i)).collect();
        assert_eq!(got, vec![1, 1, 3, 0, 0, 0, 0]);
        assert!(!scores.seen(3), "a hole is never counted");
        assert!(scores.seen(4));
    }

    #[test]
    fn simulated_probe_sees_hot_pages_every_scan() {
        let maps = [AddrRange::new(0, 64 * P)];
        let phase =
            Phase::new("p", u64::MAX, vec![Pattern::Uniform { range: AddrRange::new(0, 8 * P), prob: 1.0 }]);
        let sim = Arc::new(SimSpace::new(3, 5_000, &maps, vec![phase]).expect("space"));
        let mut probe = SimPageProbe::new(Arc::clone(&sim));
        let space = PageSpace::new(maps);
        let scores = run_round(&mut probe, space, 3, |p| {
            p.advance(20);
            true
        })
        .expect("round");
        assert!((0..8).all(|i| scores.score(i) == 3));
        assert!((8..64).all(|i| scores.score(i) == 0 && scores.seen(i)));
        assert_eq!(probe.now(), 60);
    }
}
