//! pagemap reads and the pidfd target on real processes: this test process
//! and short-lived children.

mod ops_common;

use damon_core::ops::pagemap::{PageCounts, PagemapEntry, PagemapFile};
use damon_core::ops::refault::{RefaultOptions, RefaultProbe};
use damon_core::ops::sys::AnonMapping;
use damon_core::ops::{OpenTargetError, ProcTarget};
use damon_core::{AccessProbe, Addr, AddrRange, PAGE_SIZE, ProbeError};
use ops_common::is_root;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;

/// 256 pages; every other page of the first half touched.
fn touched_mapping() -> (AnonMapping, AddrRange) {
    let m = AnonMapping::new(256 * PAGE_SIZE as usize).expect("mmap");
    for k in (0..128).step_by(2) {
        m.write_byte(k * PAGE_SIZE as usize, 1);
    }
    let r = AddrRange::new(m.addr(), m.addr() + 256 * PAGE_SIZE);
    (m, r)
}

#[test]
fn counts_agree_between_pagemap_scan_and_pread() {
    let (_m, r) = touched_mapping();
    let halves = [
        r,
        AddrRange::new(r.start.0, r.start.0 + 128 * PAGE_SIZE),
        AddrRange::new(r.start.0 + 128 * PAGE_SIZE, r.end.0),
    ];
    let path = Path::new("/proc/self/pagemap");
    let mut scan = PagemapFile::open(path).expect("open");
    let via_scan = scan.count_ranges(&halves).expect("count");
    let mut pread = PagemapFile::open(path).expect("open").without_scan_ioctl();
    let via_pread = pread.count_ranges(&halves).expect("count");
    println!("PAGEMAP_SCAN works here: {:?}", scan.scan_ioctl_works());
    let strip = |c: &[PageCounts]| c.iter().map(|c| (c.present_pages, c.swapped_pages)).collect::<Vec<_>>();
    assert_eq!(strip(&via_scan), strip(&via_pread));
    assert_eq!(strip(&via_pread), vec![(64, 0), (64, 0), (0, 0)]);
    assert_eq!(via_pread[0].present_bytes(), 64 * PAGE_SIZE);
}

/// More runs than one `PAGEMAP_SCAN` call returns (1024 regions): the
/// calls continue where the kernel stopped and count no page twice.
#[test]
fn counts_stay_exact_when_the_scan_takes_several_calls() {
    let pages = 8192u64;
    let m = AnonMapping::new((pages * PAGE_SIZE) as usize).expect("mmap");
    for k in (0..pages).step_by(2) {
        m.write_byte((k * PAGE_SIZE) as usize, 1);
    }
    let r = AddrRange::new(m.addr(), m.addr() + pages * PAGE_SIZE);
    let path = Path::new("/proc/self/pagemap");
    let mut scan = PagemapFile::open(path).expect("open");
    let via_scan = scan.count_ranges(&[r]).expect("count");
    let mut pread = PagemapFile::open(path).expect("open").without_scan_ioctl();
    let via_pread = pread.count_ranges(&[r]).expect("count");
    println!("PAGEMAP_SCAN works here: {:?}; {via_scan:?} vs {via_pread:?}", scan.scan_ioctl_works());
    assert_eq!(via_pread[0].present_pages, pages / 2);
    assert_eq!(via_scan[0].present_pages, via_pread[0].present_pages);
}

/// `kinds_of` by `PAGEMAP_SCAN` runs and by `pread` agree: ranges inside
/// and across the touched and untouched parts, more runs than one call
/// returns.
#[test]
fn page_kinds_agree_between_pagemap_scan_and_pread() {
    let pages = 4096u64;
    let m = AnonMapping::new((pages * PAGE_SIZE) as usize).expect("mmap");
    for k in (0..pages / 2).step_by(2) {
        m.write_byte((k * PAGE_SIZE) as usize, 1);
    }
    let at = |p: u64| m.addr() + p * PAGE_SIZE;
    let ranges = [
        AddrRange::new(at(0), at(1)),
        AddrRange::new(at(3), at(1500)),
        AddrRange::new(at(1500), at(2100)),
        AddrRange::new(at(2200), at(2300)),
        AddrRange::new(at(4000), at(pages)),
    ];
    let path = Path::new("/proc/self/pagemap");
    let mut scan = PagemapFile::open(path).expect("open");
    let via_scan = scan.kinds_of(&ranges).expect("kinds");
    let mut pread = PagemapFile::open(path).expect("open").without_scan_ioctl();
    let via_pread = pread.kinds_of(&ranges).expect("kinds");
    println!("PAGEMAP_SCAN works here: {:?}", scan.scan_ioctl_works());
    assert_eq!(via_scan, via_pread);
    let bytes = |v: &[AddrRange]| v.iter().map(AddrRange::len).sum::<u64>() / PAGE_SIZE;
    // Touched: pages 0, 4, ..., 1498 of the second range, and 1500..2046 step 2.
    assert_eq!(bytes(&via_pread.present), 1 + 748 + 274);
    assert_eq!(bytes(&via_pread.swapped), 0);
    assert_eq!(bytes(&via_pread.present) + bytes(&via_pread.unpopulated), 1 + 1497 + 600 + 100 + 96);
}

#[test]
fn scattered_reads_match_one_big_read() {
    let (_m, r) = touched_mapping();
    let target = ProcTarget::open(std::process::id()).expect("own pidfd");
    let mut all = Vec::new();
    target.with_pagemap("read range", |pm| pm.read_range(r, &mut all)).expect("read");
    assert_eq!(all.len(), 256);
    let counts = target.page_counts(&[r]).expect("count");
    assert_eq!((counts[0].present_bytes(), counts[0].swapped_bytes()), (64 * PAGE_SIZE, 0));
    // Far apart, close together, duplicated, unsorted, unaligned.
    let picks = [255u64, 0, 1, 2, 200, 64, 65, 0, 127, 128];
    let addrs: Vec<Addr> = picks.iter().map(|&k| Addr(r.start.0 + k * PAGE_SIZE + 17)).collect();
    let mut got = vec![PagemapEntry::default(); addrs.len()];
    target.with_pagemap("read addrs", |pm| pm.read_addrs(&addrs, &mut got)).expect("read");
    for (k, e) in picks.iter().zip(&got) {
        assert_eq!(e.present(), all[*k as usize].present(), "page {k}");
        assert_eq!(e.present(), *k < 128 && k % 2 == 0, "page {k}");
    }
    if is_root() {
        assert!(got[1].pfn().is_some(), "root sees PFNs");
        assert!(got[1].exclusive(), "a private page of this process alone");
    }
}

struct Sleeper(Child);

impl Sleeper {
    fn spawn() -> Sleeper {
        Sleeper(Command::new("sleep").arg("60").spawn().expect("spawn sleep"))
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn reaped_child_is_target_gone_everywhere() {
    let mut child = Sleeper::spawn();
    let target = Arc::new(ProcTarget::open(child.0.id()).expect("pidfd"));
    assert!(target.is_alive());
    let vmas = target.maps().expect("maps of a live child");
    assert!(!vmas.is_empty());
    let stack = vmas.iter().find(|v| v.kind == damon_core::ops::maps::VmaKind::Stack).expect("stack").range;
    child.0.kill().expect("kill");
    child.0.wait().expect("reap");
    assert!(!target.is_alive());
    assert!(matches!(target.maps(), Err(ProbeError::TargetGone { .. })));
    let mut v = Vec::new();
    assert!(matches!(
        target.with_pagemap("read", |pm| pm.read_range(stack, &mut v)),
        Err(ProbeError::TargetGone { .. })
    ));
    if is_root() {
        let mut probe = RefaultProbe::new(target.clone(), RefaultOptions::default()).expect("probe");
        let r = probe.arm(&[stack.start]);
        assert!(matches!(r, Err(ProbeError::TargetGone { .. })), "{r:?}");
    }
}

#[test]
fn zombie_child_is_target_gone_and_a_pagemap_opened_before_stays_its_own() {
    let mut child = Sleeper::spawn();
    let target = ProcTarget::open(child.0.id()).expect("pidfd");
    let stack =
        target.maps().expect("maps").into_iter().find(|v| v.kind == damon_core::ops::maps::VmaKind::Stack);
    let stack = stack.expect("stack").range;
    let mut v = Vec::new();
    target.with_pagemap("read", |pm| pm.read_range(stack, &mut v)).expect("pagemap of a live child");
    child.0.kill().expect("kill");
    // Not reaped yet: a zombie. Its memory is gone; so is the target.
    while target.is_alive() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let r = target.with_pagemap("read", |pm| pm.read_range(stack, &mut v));
    assert!(matches!(r, Err(ProbeError::TargetGone { .. })), "{r:?}");
    assert!(matches!(target.read_file("status"), Err(ProbeError::TargetGone { .. })));
}

#[test]
fn opening_a_pid_that_does_not_exist_says_so() {
    let err = ProcTarget::open(1 << 30).expect_err("no such pid");
    assert!(matches!(err, OpenTargetError::NoSuchProcess { pid } if pid == 1 << 30), "{err:?}");
}
