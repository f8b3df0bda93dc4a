//! Actions on a real child process through pidfd + process_madvise:
//! pageout to our zram, willneed back, spill to a swap file, collapse and
//! split of huge pages, and ESRCH once the child is gone. Prints
//! `skipped: <reason>` where zram or root is missing.

mod support;

use damon_core::AddrRange;
use support::child::{Child, Region, proc_kb};
use support::*;
use swap_backends::madvise::UnitResult;
use swap_backends::pool::{PoolState, SwapPool};
use swap_backends::{MemAction, MemoryActor, ProcessMadvise, SwapFile, TargetRef};

const PAGE: u64 = 4096;

fn plain(len: u64) -> Region {
    Region { len, align: PAGE, no_hugepage: false }
}

#[test]
fn pageout_then_willneed_on_a_real_child() {
    if let Some(reason) = zram_skip() {
        println!("skipped: {reason}");
        return;
    }
    let _l = swap_lock();
    let z = create_zram(&zram_backend(256 * MIB, 32000), None).expect("create zram");
    let len = 64 * MIB;
    let mut child = Child::spawn(&[plain(len)]);
    let range = AddrRange::new(child.addrs[0], child.addrs[0] + len);
    let target = TargetRef::process(child.pid, child.pidfd());
    let (present, swapped) = child.pagemap_counts(range.start.0, len);
    assert_eq!((present, swapped), (len / PAGE, 0), "filled and resident");

    let out = ProcessMadvise::default().apply(target, &[range], MemAction::Pageout);
    assert_eq!(out.bytes_applied, len, "{out:?}");
    assert!(out.errors.is_empty() && out.stopped.is_none(), "{out:?}");
    assert_eq!(out.calls, 1);
    let (present, swapped) = child.pagemap_counts(range.start.0, len);
    let vm_swap = child.status_kb("VmSwap");
    println!("after pageout: present {present} swapped {swapped} VmSwap {vm_swap} cpu {:?}", out.cpu_time);
    assert!(swapped * 10 >= len / PAGE * 9, "at least 90% swapped, got {swapped} pages");
    assert!(vm_swap * 10 >= len * 9, "VmSwap {vm_swap}");
    let st = z.stat().expect("zram stat");
    println!("zram: {st:?}");
    assert!(st.mm.orig_data_bytes > 0, "pages went to our zram");

    let cached0 = proc_kb("/proc/meminfo", "SwapCached");
    let out = ProcessMadvise::default().apply(target, &[range], MemAction::Willneed);
    assert_eq!(out.bytes_applied, len, "{out:?}");
    let cached1 = proc_kb("/proc/meminfo", "SwapCached");
    println!("after willneed: SwapCached {cached0} -> {cached1}");
    // WILLNEED reads swapped anonymous pages into the swap cache (the PTEs
    // stay swap entries until the next touch, which is then a minor fault).
    assert!(
        cached1.saturating_sub(cached0) >= len / 2,
        "swap cache grew by {}",
        cached1.saturating_sub(cached0)
    );

    assert!(child.verify_and_exit(), "every byte the child wrote reads back unchanged");
    // The child is gone (reaped); its pidfd stays valid and names a dead process.
    let out = ProcessMadvise::default().apply(
        TargetRef::process(child.pid, child.pidfd()),
        &[range],
        MemAction::Pageout,
    );
    assert!(out.vanished, "{out:?}");
    assert_eq!(out.stopped, Some(libc::ESRCH));
    assert_eq!(out.bytes_applied, 0);
    drop(child);
    z.teardown().expect("teardown");
}

#[test]
fn a_failing_range_is_recorded_and_the_rest_is_still_done() {
    if let Some(reason) = root_skip() {
        println!("skipped: {reason}");
        return;
    }
    let _l = swap_lock();
    let len = 4 * MIB;
    let mut child = Child::spawn(&[plain(len)]);
    let target = TargetRef::process(child.pid, child.pidfd());
    let a = child.addrs[0];
    // Below mmap_min_addr nothing is ever mapped: MADV_COLD says ENOMEM for it.
    let hole = AddrRange::new(0x1000, 0x3000);
    let ranges = [AddrRange::new(a + MIB, a + len), hole, AddrRange::new(a, a + MIB)];
    let out = ProcessMadvise::default().apply(target, &ranges, MemAction::Cold);
    assert_eq!(out.ranges_tried, 2, "the two child ranges merge into one");
    assert_eq!(out.bytes_applied, len, "{out:?}");
    assert_eq!(out.errors.get(&libc::ENOMEM).map(|e| (e.ranges, e.bytes)), Some((1, 0x2000)), "{out:?}");
    assert_eq!(out.calls, 2, "one call failing on the hole, one going on after it");
    assert!(child.verify_and_exit());
}

#[test]
fn zram_full_spills_to_the_swap_file() {
    if let Some(reason) = zram_skip() {
        println!("skipped: {reason}");
        return;
    }
    let _l = swap_lock();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir on disk");
    let z = create_zram(&zram_backend(16 * MIB, 32000), None).expect("create zram");
    let f = SwapFile::create(
        &conf::SwapFileBackend { path: dir.path().join("spill"), size_bytes: 128 * MIB, priority: 31999 },
        None,
    )
    .expect("create swap file");
    let len = 40 * MIB;
    let mut child = Child::spawn(&[plain(len)]);
    let range = AddrRange::new(child.addrs[0], child.addrs[0] + len);
    let out = ProcessMadvise::default().apply(
        TargetRef::process(child.pid, child.pidfd()),
        &[range],
        MemAction::Pageout,
    );
    assert_eq!(out.bytes_applied, len, "{out:?}");
    let pool = SwapPool::observe(&[&z], &[&f]).expect("pool");
    println!("{pool:#?}");
    let file_dev = pool.devices.iter().find(|d| d.path == f.path()).expect("file in pool");
    assert!(file_dev.used_bytes > 0, "the swap file took the overflow");
    assert_eq!(
        pool.state(),
        PoolState::Spilling { full: vec![z.device_path()], into: f.path().to_path_buf() }
    );
    assert!(child.verify_and_exit());
    f.teardown().expect("file teardown");
    z.teardown().expect("zram teardown");
}

#[test]
fn collapse_promotes_whole_units_and_split_gives_them_back() {
    if let Some(reason) = root_skip() {
        println!("skipped: {reason}");
        return;
    }
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if thp.is_empty() || thp.contains("[never]") {
        println!("skipped: transparent huge pages are off ({})", thp.trim());
        return;
    }
    let _l = swap_lock();
    let h = 2 * MIB;
    let mut child = Child::spawn(&[
        Region { len: 8 * MIB, align: h, no_hugepage: false },
        Region { len: 4 * MIB, align: h, no_hugepage: true },
    ]);
    let target = TargetRef::process(child.pid, child.pidfd());
    let (a, b) = (child.addrs[0], child.addrs[1]);
    let thp0 = child.smaps_kb("AnonHugePages");
    let ranges = [AddrRange::new(a, a + 8 * MIB), AddrRange::new(b, b + 4 * MIB)];
    let out = ProcessMadvise::default().apply(target, &ranges, MemAction::Collapse);
    println!("collapse: {:?} errors {:?}", out.unit_counts(), out.errors);
    let thp1 = child.smaps_kb("AnonHugePages");
    assert_eq!(out.units.len(), 6);
    for u in &out.units {
        let expect_done = u.range.start.0 >= a && u.range.end.0 <= a + 8 * MIB;
        if expect_done {
            assert_eq!(u.result, UnitResult::Done, "{u:?}");
        } else {
            assert_eq!(u.result, UnitResult::Refused { errno: libc::EINVAL }, "no-hugepage mapping: {u:?}");
        }
    }
    assert!(thp1 >= thp0 + 8 * MIB, "AnonHugePages {thp0} -> {thp1}");

    let out = ProcessMadvise::default().apply(target, &[AddrRange::new(a, a + 8 * MIB)], MemAction::Split);
    assert_eq!(out.unit_counts().done, 4, "{out:?}");
    let thp2 = child.smaps_kb("AnonHugePages");
    println!("AnonHugePages {thp0} -> {thp1} -> {thp2}");
    assert!(thp2 + 8 * MIB <= thp1, "split gave the huge pages back: {thp1} -> {thp2}");
    let rss = child.status_kb("VmRSS");
    assert!(rss >= 12 * MIB, "split keeps the memory resident: VmRSS {rss}");
    assert!(child.verify_and_exit());
}

#[test]
fn a_killed_target_is_an_ordinary_outcome() {
    if let Some(reason) = root_skip() {
        println!("skipped: {reason}");
        return;
    }
    let mut child = Child::spawn(&[plain(MIB)]);
    let a = child.addrs[0];
    child.kill();
    for action in [MemAction::Pageout, MemAction::Cold, MemAction::Willneed, MemAction::Collapse] {
        let out = ProcessMadvise::default().apply(
            TargetRef::process(child.pid, child.pidfd()),
            &[AddrRange::new(a & !(2 * MIB - 1), (a & !(2 * MIB - 1)) + 4 * MIB)],
            action,
        );
        assert!(out.vanished, "{action:?}: {out:?}");
        assert!(out.calls <= 1, "no retry storm: {out:?}");
    }
}

#[test]
fn pages_are_found_on_their_node_and_moved() {
    if !swap_backends::sys::is_root() {
        println!("skipped: move_pages on another process needs root (CAP_SYS_NICE)");
        return;
    }
    let len = 4 * MIB;
    let child = Child::spawn(&[plain(len)]);
    let target = TargetRef::process(child.pid, child.pidfd());
    let range = AddrRange::new(child.addrs[0], child.addrs[0] + len);
    let q = swap_backends::numa::page_nodes(target, &[range]);
    assert_eq!(q.pages_tried, len / PAGE);
    assert_eq!(q.pages_per_node.values().sum::<u64>(), len / PAGE, "{q:?}");
    let (&node, _) = q.pages_per_node.iter().next().expect("a node");
    let m = swap_backends::numa::move_to_node(target, &[range], node as u32);
    assert_eq!(m.pages_on_node, len / PAGE, "{m:?}");
    let nodes = std::fs::read_dir("/sys/devices/system/node").map_or(0, |d| {
        d.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("node"))).count()
    });
    if nodes == 1 {
        let m = swap_backends::numa::move_to_node(target, &[range], 1);
        assert_eq!(m.stopped, Some(libc::ENODEV), "no node 1 here: {m:?}");
        assert_eq!(m.pages_on_node, 0);
    }
}

#[test]
fn a_unit_holding_swapped_pages_is_never_collapsed() {
    if let Some(reason) = zram_skip() {
        println!("skipped: {reason}");
        return;
    }
    let _l = swap_lock();
    let z = create_zram(&zram_backend(64 * MIB, 32000), None).expect("create zram");
    let h = 2 * MIB;
    let mut child = Child::spawn(&[Region { len: 2 * h, align: h, no_hugepage: false }]);
    let target = TargetRef::process(child.pid, child.pidfd());
    let a = child.addrs[0];
    let out = ProcessMadvise::default().apply(target, &[AddrRange::new(a, a + MIB)], MemAction::Pageout);
    assert_eq!(out.bytes_applied, MIB);
    let (_, swapped0) = child.pagemap_counts(a, 2 * h);
    assert!(swapped0 > 0, "some of the first unit is swapped out");

    let out = ProcessMadvise::default().apply(target, &[AddrRange::new(a, a + 2 * h)], MemAction::Collapse);
    let res: Vec<UnitResult> = out.units.iter().map(|u| u.result).collect();
    assert_eq!(res, vec![UnitResult::SwappedOut, UnitResult::Done], "{out:?}");
    let (_, swapped1) = child.pagemap_counts(a, 2 * h);
    assert_eq!(swapped1, swapped0, "nothing was faulted back in");
    assert!(child.smaps_kb("AnonHugePages") >= h, "the other unit was collapsed");
    assert!(child.verify_and_exit());
    z.teardown().expect("teardown");
}
