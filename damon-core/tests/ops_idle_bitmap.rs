//! The idle-bitmap probe on fixture files: this kernel has no idle page
//! tracking (no /sys/kernel/mm/page_idle), so the bitmap, pagemap and
//! kpageflags are files built from `fixtures/idle_bitmap/layout.txt`.

mod ops_common;

use damon_core::ops::idle_bitmap::{IdleBitmapFile, IdleBitmapPaths, IdleBitmapProbe, word_masks};
use damon_core::ops::{ProcTarget, SampleState};
use damon_core::{AccessProbe, Addr};
use ops_common::layout_dir;
use std::sync::Arc;

/// Every page of the layout, plus one unmapped page.
const PAGES: [u64; 9] = [
    0x1000_0000, // pfn 0x5
    0x1000_1000, // pfn 0x40
    0x1000_2000, // pfn 0x82
    0x1000_3000, // pfn 0x83
    0x1000_4000, // swapped
    0x1000_5000, // unmapped
    0x1020_0000, // THP head pfn 0x400
    0x1020_1000, // THP tail pfn 0x401
    0x1020_3000, // THP tail pfn 0x403
];

fn words(bytes: &[u8]) -> Vec<u64> {
    bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes"))).collect()
}

#[test]
fn idle_bitmap_offsets_on_fixture_no_kernel_support_here() {
    let (dir, _) = layout_dir();
    let target = Arc::new(ProcTarget::fixture(4242, dir.path()));
    let paths = IdleBitmapPaths {
        bitmap: dir.path().join("bitmap"),
        kpageflags: Some(dir.path().join("kpageflags")),
    };
    let mut probe = IdleBitmapProbe::new(target, &paths).expect("fixture files open");
    let addrs: Vec<Addr> = PAGES.iter().map(|&p| Addr(p + 0x123)).collect();
    probe.arm(&addrs).expect("arm");

    let w = words(&std::fs::read(dir.path().join("bitmap")).expect("read bitmap"));
    let mut expect = vec![0u64; w.len()];
    expect[0] = 1 << 5; // pfn 0x5: word 0, bit 5
    expect[1] = 1; // pfn 0x40: word 1, bit 0
    expect[2] = 1 << 2 | 1 << 3; // pfns 0x82, 0x83 share word 2
    expect[16] = 1; // THP tails map to the head, pfn 0x400: word 16, bit 0
    assert_eq!(w, expect);
}

#[test]
fn idle_bitmap_check_reads_cleared_bits_as_accessed_on_fixture_no_kernel_support_here() {
    let (dir, _) = layout_dir();
    let target = Arc::new(ProcTarget::fixture(4242, dir.path()));
    let paths = IdleBitmapPaths {
        bitmap: dir.path().join("bitmap"),
        kpageflags: Some(dir.path().join("kpageflags")),
    };
    let mut probe = IdleBitmapProbe::new(target, &paths).expect("fixture files open");
    let addrs: Vec<Addr> = PAGES.iter().map(|&p| Addr(p)).collect();
    probe.arm(&addrs).expect("arm");

    // What the kernel does when pfn 0x40 and the THP are touched: clear their bits.
    let mut bm = IdleBitmapFile::open(&paths.bitmap).expect("open bitmap");
    let mut cur = vec![0u64; 2];
    bm.read_words(&[1, 16], &mut cur).expect("read");
    let path = &paths.bitmap;
    let mut bytes = std::fs::read(path).expect("read");
    bytes[8..16].copy_from_slice(&(cur[0] & !1).to_ne_bytes());
    bytes[128..136].copy_from_slice(&(cur[1] & !1).to_ne_bytes());
    std::fs::write(path, bytes).expect("write");

    let mut accessed = vec![false; addrs.len()];
    probe.check(&addrs, &mut accessed).expect("check");
    assert_eq!(accessed, vec![false, true, false, false, false, false, true, true, true]);
    let mut states = vec![SampleState::Unknown; addrs.len()];
    probe.check_states(&addrs, &mut states).expect("check");
    assert_eq!(states[4], SampleState::NotAccessed, "swapped: not touched since arm");
    assert_eq!(probe.stats().unknown, 0);
    assert_eq!(probe.stats().accessed, 8);
}

#[test]
fn idle_bitmap_without_kpageflags_uses_raw_pfns_on_fixture_no_kernel_support_here() {
    let (dir, _) = layout_dir();
    let target = Arc::new(ProcTarget::fixture(4242, dir.path()));
    let paths = IdleBitmapPaths { bitmap: dir.path().join("bitmap"), kpageflags: None };
    let mut probe = IdleBitmapProbe::new(target, &paths).expect("fixture files open");
    probe.arm(&[Addr(0x1020_1000), Addr(0x1020_3000)]).expect("arm");
    let w = words(&std::fs::read(&paths.bitmap).expect("read"));
    assert_eq!(w[16], 1 << 1 | 1 << 3, "tails' own bits");
    assert_eq!(word_masks([0x401, 0x403]), vec![(16, 1 << 1 | 1 << 3)]);
}

#[test]
fn idle_bitmap_missing_file_is_unavailable_not_a_panic() {
    let (dir, _) = layout_dir();
    let target = Arc::new(ProcTarget::fixture(4242, dir.path()));
    let paths = IdleBitmapPaths { bitmap: dir.path().join("no-such-bitmap"), kpageflags: None };
    let err = IdleBitmapProbe::new(target, &paths).expect_err("no bitmap");
    assert!(err.to_string().contains("no-such-bitmap"), "{err}");
}
