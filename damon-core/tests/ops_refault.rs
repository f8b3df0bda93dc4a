//! The refault probe on this test process, without swap: what it does when
//! pages cannot leave RAM, and that it never splits a huge page. (With swap,
//! on a child process: tests/tests/probes.rs of the workspace.)

mod ops_common;

use damon_core::ops::kpageflags::{KPAGEFLAGS_PATH, KpageFlags, KpageflagsFile};
use damon_core::ops::pagemap::PagemapEntry;
use damon_core::ops::refault::{RefaultOptions, RefaultProbe, ThpPolicy};
use damon_core::ops::sys::AnonMapping;
use damon_core::ops::{ProcTarget, SampleState};
use damon_core::{AccessProbe, Addr, PAGE_SIZE};
use ops_common::{is_root, swap_is_on};
use std::path::Path;
use std::sync::Arc;

fn own_target() -> Arc<ProcTarget> {
    Arc::new(ProcTarget::open(std::process::id()).expect("own pidfd"))
}

#[test]
fn refault_without_swap_leaves_pages_alone_and_reports_them_unknown() {
    if !is_root() {
        println!("skipped: the refault probe needs root (PFNs, kpageflags)");
        return;
    }
    if swap_is_on() {
        println!("skipped: a swap device is on; this test is about having none");
        return;
    }
    let m = AnonMapping::new(32 * PAGE_SIZE as usize).expect("mmap");
    for k in 0..16 {
        m.write_byte(k * PAGE_SIZE as usize, 1);
    }
    let addrs: Vec<Addr> = (0..32).map(|k| Addr(m.addr() + k * PAGE_SIZE)).collect();
    let mut probe = RefaultProbe::new(own_target(), RefaultOptions::default()).expect("probe");
    probe.arm(&addrs).expect("arm");
    let s = probe.refault_stats();
    assert_eq!((s.skipped_no_swap, s.pages_already_out, s.bytes_paged_out), (16, 16, 0), "{s:?}");

    // First touches of never-touched pages are accesses the probe sees.
    for k in 16..24 {
        m.write_byte(k * PAGE_SIZE as usize, 1);
    }
    let mut states = vec![SampleState::Unknown; 32];
    probe.check_states(&addrs, &mut states).expect("check");
    assert!(states[..16].iter().all(|&s| s == SampleState::Unknown), "{states:?}");
    assert!(states[16..24].iter().all(|&s| s == SampleState::Accessed), "{states:?}");
    assert!(states[24..].iter().all(|&s| s == SampleState::NotAccessed), "{states:?}");
    let mut accessed = vec![false; 32];
    probe.check(&addrs, &mut accessed).expect("check");
    assert_eq!(accessed.iter().filter(|&&a| a).count(), 8);
    assert_eq!(probe.stats().unknown, 32, "16 per check");
    // Still in RAM: nothing was paged out.
    let mut e = vec![PagemapEntry::default(); 16];
    probe.target().with_pagemap("read", |pm| pm.read_addrs(&addrs[..16], &mut e)).expect("read");
    assert!(e.iter().all(|e| e.present()));
}

/// A 2 MiB-aligned THP in this process, or `None` when the kernel gave none.
fn thp_in(m: &AnonMapping) -> Option<u64> {
    let start = m.addr().next_multiple_of(2 << 20);
    // SAFETY: [start, start + 2 MiB) lies inside the 4 MiB mapping `m`.
    let r = unsafe { libc::madvise(start as *mut libc::c_void, 2 << 20, libc::MADV_HUGEPAGE) };
    assert_eq!(r, 0, "madvise(MADV_HUGEPAGE)");
    for k in 0..512 {
        m.write_byte((start - m.addr()) as usize + k * PAGE_SIZE as usize, 1);
    }
    let target = ProcTarget::open(std::process::id()).expect("own pidfd");
    let mut e = [PagemapEntry::default()];
    target.with_pagemap("read", |pm| pm.read_addrs(&[Addr(start)], &mut e)).expect("read");
    let mut kpf = KpageflagsFile::open(Path::new(KPAGEFLAGS_PATH)).ok()?;
    let mut f = [KpageFlags::default()];
    kpf.read_pfns(&[e[0].pfn()?], &mut f).ok()?;
    (f[0].thp() && f[0].compound_head()).then_some(start)
}

fn anon_huge_bytes_at(addr: u64) -> u64 {
    let me = ProcTarget::open(std::process::id()).expect("own pidfd");
    let smaps = me.smaps().expect("smaps");
    let v = smaps.iter().find(|v| v.range.start.0 <= addr && addr < v.range.end.0).expect("vma");
    v.smaps.as_ref().map_or(0, |s| s.anon_huge_pages_bytes)
}

#[test]
fn refault_never_splits_a_huge_page() {
    if !is_root() {
        println!("skipped: the refault probe needs root (PFNs, kpageflags)");
        return;
    }
    let m = AnonMapping::new(4 << 20).expect("mmap");
    let Some(thp) = thp_in(&m) else {
        println!("skipped: no transparent huge page could be allocated");
        return;
    };
    assert_eq!(anon_huge_bytes_at(thp), 2 << 20);
    let samples = [Addr(thp + 5 * PAGE_SIZE), Addr(thp + 300 * PAGE_SIZE)];

    let options = RefaultOptions { thp: ThpPolicy::Skip, ..RefaultOptions::default() };
    let mut skip = RefaultProbe::new(own_target(), options).expect("probe");
    skip.arm(&samples).expect("arm");
    let s = skip.refault_stats();
    if swap_is_on() {
        assert_eq!(s.skipped_huge, 2, "{s:?}");
    } else {
        assert_eq!(s.skipped_no_swap + s.skipped_huge, 2, "{s:?}");
    }
    assert_eq!(s.bytes_paged_out, 0);
    assert_eq!(anon_huge_bytes_at(thp), 2 << 20, "still one PMD-mapped huge page");

    if !swap_is_on() {
        // Whole-folio policy with no swap: a pageout would make reclaim split
        // the folio, so nothing is paged out.
        let mut whole = RefaultProbe::new(own_target(), RefaultOptions::default()).expect("probe");
        whole.arm(&samples).expect("arm");
        assert_eq!(whole.refault_stats().bytes_paged_out, 0);
        assert_eq!(anon_huge_bytes_at(thp), 2 << 20, "still one PMD-mapped huge page");
    }
}

#[test]
fn refault_holds_huge_pages_instead_of_probing_them() {
    if !is_root() {
        println!("skipped: the refault probe needs root (PFNs, kpageflags)");
        return;
    }
    if !swap_is_on() {
        println!("skipped: no swap device is on; without swap the probe arms nothing");
        return;
    }
    let m = AnonMapping::new(4 << 20).expect("mmap");
    let Some(thp) = thp_in(&m) else {
        println!("skipped: no transparent huge page could be allocated");
        return;
    };
    let samples = [Addr(thp + 5 * PAGE_SIZE), Addr(thp + 300 * PAGE_SIZE)];
    let mut states = vec![SampleState::NotAccessed; 2];

    // A hold that never expires: accessed, nothing paged out.
    let forever = RefaultOptions { thp: ThpPolicy::Hold { ttl: None }, ..RefaultOptions::default() };
    let mut held = RefaultProbe::new(own_target(), forever).expect("probe");
    for _ in 0..3 {
        held.arm(&samples).expect("arm");
        held.check_states(&samples, &mut states).expect("check");
        assert_eq!(states, [SampleState::Accessed; 2]);
    }
    let s = held.refault_stats();
    assert_eq!((s.held_huge, s.held_expired, s.bytes_paged_out, s.refaults_seen), (6, 0, 0, 0), "{s:?}");
    assert_eq!(held.held_bytes(), (0, 2 << 20), "one unit held, not expired");
    assert_eq!(anon_huge_bytes_at(thp), 2 << 20, "still one PMD-mapped huge page");

    // An expired hold: unknown (not accessed), still nothing paged out.
    let expired = RefaultOptions {
        thp: ThpPolicy::Hold { ttl: Some(std::time::Duration::ZERO) },
        ..RefaultOptions::default()
    };
    let mut old = RefaultProbe::new(own_target(), expired).expect("probe");
    old.arm(&samples).expect("arm");
    old.check_states(&samples, &mut states).expect("check");
    assert_eq!(states, [SampleState::Unknown; 2]);
    let s = old.refault_stats();
    assert_eq!((s.held_huge, s.held_expired, s.bytes_paged_out), (0, 2, 0), "{s:?}");
    assert_eq!(old.held_bytes(), (2 << 20, 2 << 20));
    assert_eq!(anon_huge_bytes_at(thp), 2 << 20, "still one PMD-mapped huge page");
}
