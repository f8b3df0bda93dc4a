//! The soft-dirty probe (sees writes only): arm writes "4" to
//! /proc/PID/clear_refs once per round (it clears the whole process); check
//! reads pagemap bit 55 of each sampled page.
//!
//! Needs CONFIG_MEM_SOFT_DIRTY (Documentation/admin-guide/mm/soft-dirty.rst).
//! Without it the kernel still accepts "4" and simply never sets bit 55, so
//! availability is found by a self-test ([`detect`]), not by the write.

use crate::ops::pagemap::{PagemapEntry, PagemapFile};
use crate::ops::pidfd::ProcTarget;
use crate::ops::sys::AnonMapping;
use crate::ops::{ProbeStats, SampleState};
use crate::probe::{AccessProbe, ProbeError, Sees};
use crate::{Addr, PAGE_SIZE};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// The soft-dirty probe on one target.
#[derive(Debug)]
pub struct SoftDirtyProbe {
    target: Arc<ProcTarget>,
    stats: ProbeStats,
}

impl SoftDirtyProbe {
    /// Make the probe. Whether the kernel tracks soft-dirty is [`detect`]'s
    /// business (the selector runs it); here nothing is checked.
    pub fn new(target: Arc<ProcTarget>) -> SoftDirtyProbe {
        SoftDirtyProbe { target, stats: ProbeStats::default() }
    }

    pub fn target(&self) -> &Arc<ProcTarget> {
        &self.target
    }

    pub fn stats(&self) -> ProbeStats {
        self.stats
    }

    /// Like [`AccessProbe::check`]; soft-dirty always knows (never `Unknown`).
    pub fn check_states(&mut self, addrs: &[Addr], out: &mut [SampleState]) -> Result<(), ProbeError> {
        let mut entries = vec![PagemapEntry::default(); addrs.len()];
        self.target.with_pagemap("read soft-dirty bits", |pm| pm.read_addrs(addrs, &mut entries))?;
        self.stats.check_calls += 1;
        self.stats.addrs_checked += addrs.len() as u64;
        for (o, e) in out.iter_mut().zip(&entries) {
            *o = if e.soft_dirty() {
                self.stats.accessed += 1;
                SampleState::Accessed
            } else {
                SampleState::NotAccessed
            };
        }
        Ok(())
    }
}

impl AccessProbe for SoftDirtyProbe {
    fn name(&self) -> &'static str {
        "soft-dirty"
    }

    fn sees(&self) -> Sees {
        Sees::WritesOnly
    }

    fn arm(&mut self, addrs: &[Addr]) -> Result<(), ProbeError> {
        self.stats.arm_calls += 1;
        self.stats.addrs_armed += addrs.len() as u64;
        self.target.write_file("clear_refs", b"4")
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

/// Whether this kernel tracks soft-dirty, by a self-test on a fresh page of
/// this process: written → bit 55 set; after `clear_refs` "4" → clear;
/// written again → set. `Err` says which step failed. (It clears this
/// process's own soft-dirty bits, which nothing else here uses.)
pub fn detect() -> Result<(), String> {
    detect_in(Path::new("/proc/self"))
}

fn detect_in(proc_self: &Path) -> Result<(), String> {
    let page =
        AnonMapping::new(PAGE_SIZE as usize).map_err(|e| format!("mmap of a test page failed: {e}"))?;
    let addr = [Addr(page.addr())];
    let pagemap_path = proc_self.join("pagemap");
    let mut pm = PagemapFile::open(&pagemap_path)
        .map_err(|e| format!("cannot open {}: {e}", pagemap_path.display()))?;
    let mut entry = [PagemapEntry::default()];
    let read = |pm: &mut PagemapFile, entry: &mut [PagemapEntry; 1]| {
        pm.read_addrs(&addr, entry).map_err(|e| format!("cannot read {}: {e}", pagemap_path.display()))
    };

    page.write_byte(0, 1);
    read(&mut pm, &mut entry)?;
    if !entry[0].soft_dirty() {
        return Err("pagemap never sets the soft-dirty bit (55) on a freshly written page: \
                    the kernel is built without CONFIG_MEM_SOFT_DIRTY"
            .to_string());
    }
    let clear_refs = proc_self.join("clear_refs");
    OpenOptions::new()
        .write(true)
        .open(&clear_refs)
        .and_then(|mut f| f.write_all(b"4"))
        .map_err(|e| format!("writing \"4\" to {} failed: {e}", clear_refs.display()))?;
    read(&mut pm, &mut entry)?;
    if entry[0].soft_dirty() {
        return Err("clear_refs \"4\" does not clear the soft-dirty bit".to_string());
    }
    page.write_byte(0, 2);
    read(&mut pm, &mut entry)?;
    if !entry[0].soft_dirty() {
        return Err("a write after clear_refs \"4\" does not set the soft-dirty bit again".to_string());
    }
    Ok(())
}
