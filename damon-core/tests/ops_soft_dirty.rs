//! The soft-dirty probe: its logic on fixture files (this kernel lacks
//! CONFIG_MEM_SOFT_DIRTY; real runs happen in the QEMU guest), and the host
//! detection checked against an independent signal (the `sd` VmFlag).

mod ops_common;

use damon_core::ops::ProcTarget;
use damon_core::ops::soft_dirty::{SoftDirtyProbe, detect};
use damon_core::ops::sys::AnonMapping;
use damon_core::{AccessProbe, Addr, Sees};
use ops_common::layout_dir;
use std::sync::Arc;

#[test]
fn soft_dirty_probe_logic_on_fixture_no_kernel_support_here() {
    let (dir, _) = layout_dir();
    let target = Arc::new(ProcTarget::fixture(4242, dir.path()));
    let mut probe = SoftDirtyProbe::new(target);
    assert_eq!(probe.sees(), Sees::WritesOnly);
    let addrs: Vec<Addr> =
        [0x1000_0000u64, 0x1000_1000, 0x1000_2fff, 0x1000_3000, 0x1000_4000, 0x1000_5000].map(Addr).to_vec();
    probe.arm(&addrs).expect("arm");
    assert_eq!(std::fs::read(dir.path().join("clear_refs")).expect("read"), b"4", "one clear_refs write");
    let mut accessed = vec![false; addrs.len()];
    probe.check(&addrs, &mut accessed).expect("check");
    // sd set on 0x10000000, 0x10002000 and the swapped 0x10004000.
    assert_eq!(accessed, vec![true, false, true, false, true, false]);
    assert_eq!(probe.stats().accessed, 3);
}

/// The kernel prints the `sd` VmFlag (VM_SOFTDIRTY, set on every new
/// mapping) only with CONFIG_MEM_SOFT_DIRTY: an independent witness.
fn fresh_mapping_has_sd_flag() -> bool {
    let m = AnonMapping::new(4096).expect("mmap");
    m.write_byte(0, 1);
    let me = ProcTarget::open(std::process::id()).expect("own pidfd");
    let smaps = me.smaps().expect("read own smaps");
    let v = smaps.iter().find(|v| v.range.start.0 <= m.addr() && m.addr() < v.range.end.0).expect("mapping");
    v.smaps.as_ref().is_some_and(|s| s.has_flag("sd"))
}

#[test]
fn soft_dirty_detection_agrees_with_the_sd_vmflag() {
    let witness = fresh_mapping_has_sd_flag();
    let detected = detect();
    match &detected {
        Ok(()) => println!("soft-dirty: tracked by this kernel"),
        Err(reason) => println!("soft-dirty: not available: {reason}"),
    }
    assert_eq!(detected.is_ok(), witness, "detect() = {detected:?}, sd VmFlag on a new mapping = {witness}");
    if let Err(reason) = detected {
        assert!(reason.contains("CONFIG_MEM_SOFT_DIRTY"), "{reason}");
    }
}
