//! Real swap devices on this machine (root, zram): create, verify in
//! /proc/swaps, tear down, adopt or clean after a simulated daemon death.
//! Prints `skipped: <reason>` where zram or root is missing.

mod support;

use conf::SwapFileBackend;
use support::*;
use swap_backends::pool::{PoolState, SwapPool, Tier};
use swap_backends::state::RecordOutcome;
use swap_backends::{StateDir, SwapFile};

#[test]
fn zram_swap_is_created_with_our_priority_and_removed() {
    if let Some(reason) = zram_skip() {
        println!("skipped: {reason}");
        return;
    }
    let _l = swap_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(dir.path()).with_owner("test-project");
    let backend = conf::ZramBackend { mem_limit_bytes: Some(64 * MIB), ..zram_backend(256 * MIB, 1234) };
    let z = create_zram(&backend, Some(&state)).expect("create zram");
    let index = z.index();
    assert_ne!(index, 0, "zram0 is the machine's");
    let dev = z.device_path();
    let line = swaps_line(&dev).expect("zram is swapped on");
    assert_eq!(line.priority, 1234);
    assert_eq!(line.size_bytes, 256 * MIB - 4096, "all but the header page");
    let st = z.stat().expect("stat");
    assert_eq!(st.disksize_bytes, 256 * MIB);
    assert_eq!(st.mm.mem_limit_bytes, 64 * MIB);
    assert_eq!(st.swap.as_ref().map(|s| s.priority), Some(1234));
    assert_eq!(z.owner(), Some("test-project"));
    let recs = state.records().expect("records");
    assert_eq!(recs.len(), 1, "the device is recorded");

    z.teardown().expect("teardown");
    assert!(swaps_line(&dev).is_none(), "swapped off");
    assert!(!swap_backends::zram::sys_dir(index).exists(), "zram{index} removed");
    assert!(state.records().expect("records").is_empty(), "record removed");
}

#[test]
fn dropping_the_guard_removes_the_device_even_in_a_panic() {
    if let Some(reason) = zram_skip() {
        println!("skipped: {reason}");
        return;
    }
    let _l = swap_lock();
    let mut index = None;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let z = create_zram(&zram_backend(16 * MIB, 7), None).expect("create zram");
        index = Some(z.index());
        panic!("test failure while the device exists");
    }));
    assert!(r.is_err());
    let index = index.expect("device was created");
    assert!(!swap_backends::zram::sys_dir(index).exists(), "zram{index} removed by Drop");
}

#[test]
fn a_restarted_daemon_adopts_what_is_swapped_on_and_cleans_the_rest() {
    if let Some(reason) = zram_skip() {
        println!("skipped: {reason}");
        return;
    }
    let _l = swap_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(dir.path()).with_owner("p1");
    // A daemon that died with one device fully on and one half torn down.
    let on = create_zram(&zram_backend(16 * MIB, 11), Some(&state)).expect("create zram");
    let half = create_zram(&zram_backend(16 * MIB, 12), Some(&state)).expect("create zram");
    let (on_idx, half_idx) = (on.index(), half.index());
    swap_backends::sys::swapoff(&half.device_path()).expect("swapoff");
    let _ = on.detach();
    let _ = half.detach();

    let rec = swap_backends::recover(&state).expect("recover");
    assert!(rec.unreadable.is_empty());
    assert_eq!(rec.zram.len(), 1, "{rec:?}");
    assert_eq!(rec.zram[0].index(), on_idx);
    assert_eq!(rec.zram[0].owner(), Some("p1"));
    assert_eq!(rec.zram[0].priority(), 11);
    assert_eq!(rec.others.len(), 1);
    assert!(matches!(rec.others[0].outcome, RecordOutcome::Cleaned), "{:?}", rec.others[0]);
    assert!(!swap_backends::zram::sys_dir(half_idx).exists(), "half torn down device removed");
    assert_eq!(state.records().expect("records").len(), 1, "only the adopted one stays recorded");

    drop(rec); // tears the adopted device down
    assert!(!swap_backends::zram::sys_dir(on_idx).exists());
    assert!(state.records().expect("records").is_empty());

    // A record whose device was removed by someone else is forgotten, and nothing is touched.
    let gone = create_zram(&zram_backend(16 * MIB, 13), Some(&state)).expect("create zram");
    let rec = gone.detach();
    let path = swap_backends::zram::dev_path(rec.index);
    swap_backends::sys::swapoff(&path).expect("swapoff");
    std::fs::write(swap_backends::zram::sys_dir(rec.index).join("reset"), "1").expect("reset");
    std::fs::write("/sys/class/zram-control/hot_remove", rec.index.to_string()).expect("hot_remove");
    let again = swap_backends::recover(&state).expect("recover");
    assert!(again.zram.is_empty());
    assert!(matches!(again.others[0].outcome, RecordOutcome::Forgotten { .. }), "{:?}", again.others);
    assert!(state.records().expect("records").is_empty());
}

#[test]
fn swap_file_below_zram_takes_the_overflow() {
    if let Some(reason) = zram_skip() {
        println!("skipped: {reason}");
        return;
    }
    let _l = swap_lock();
    // On the target dir's filesystem (the real disk), not tmpfs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir on disk");
    let state = StateDir::new(dir.path().join("state"));
    let z = create_zram(&zram_backend(32 * MIB, 200), Some(&state)).expect("create zram");
    let b = SwapFileBackend { path: dir.path().join("swapfile"), size_bytes: 64 * MIB, priority: 20 };
    let f = SwapFile::create(&b, Some(&state)).expect("create swap file");
    let line = swaps_line(f.path()).expect("file swapped on");
    assert_eq!(line.priority, 20);
    assert_eq!(line.size_bytes, 64 * MIB - 4096);
    assert_eq!(state.records().expect("records").len(), 2);

    let pool = SwapPool::observe(&[&z], &[&f]).expect("pool");
    assert_eq!(pool.devices.len(), 2);
    assert_eq!(pool.devices[0].tier, Tier::Zram, "zram is filled first");
    assert_eq!(pool.state(), PoolState::Room { device: z.device_path() });

    // Creating over an existing file is refused and leaves it alone.
    let err = SwapFile::create(&b, None).expect_err("exists");
    assert!(matches!(err, swap_backends::swapfile::SwapFileSetupError::Exists { .. }), "{err:?}");
    assert!(swaps_line(&b.path).is_some(), "the first one is untouched");

    let path = f.path().to_path_buf();
    f.teardown().expect("swap file teardown");
    assert!(swaps_line(&path).is_none());
    assert!(!path.exists(), "unlinked");
    z.teardown().expect("zram teardown");
    assert!(state.records().expect("records").is_empty());
}

#[test]
fn an_unknown_compressor_is_refused_and_the_device_removed() {
    if let Some(reason) = zram_skip() {
        println!("skipped: {reason}");
        return;
    }
    let _l = swap_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(dir.path());
    let b = conf::ZramBackend { compressor: "no-such-compressor".into(), ..zram_backend(16 * MIB, 1) };
    let err = swap_backends::ZramSwap::create(&b, Some(&state)).expect_err("unknown compressor");
    let swap_backends::zram::ZramSetupError::Compressor { index, available, .. } = err else {
        panic!("expected a compressor error, got {err:?}");
    };
    assert!(!available.is_empty(), "the error lists what the device offers");
    assert!(!swap_backends::zram::sys_dir(index).exists(), "zram{index} was removed again");
    assert!(state.records().expect("records").is_empty(), "and its record");
}

#[test]
fn swap_files_are_adopted_or_cleaned_after_a_restart() {
    if !swap_backends::sys::is_root() {
        println!("skipped: swapon needs root");
        return;
    }
    let _l = swap_lock();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir on disk");
    let state = StateDir::new(dir.path().join("state")).with_owner("p2");
    let backend =
        |name: &str, priority| SwapFileBackend { path: dir.path().join(name), size_bytes: 8 * MIB, priority };
    let on = SwapFile::create(&backend("on", 3), Some(&state)).expect("create");
    let half = SwapFile::create(&backend("half", 4), Some(&state)).expect("create");
    let replaced = SwapFile::create(&backend("replaced", 5), Some(&state)).expect("create");
    swap_backends::sys::swapoff(half.path()).expect("swapoff");
    swap_backends::sys::swapoff(replaced.path()).expect("swapoff");
    let (on_path, half_path, replaced_path) =
        (on.path().to_path_buf(), half.path().to_path_buf(), replaced.path().to_path_buf());
    let _ = (on.detach(), half.detach(), replaced.detach());
    // Someone else now has a file at `replaced`'s path: it must not be touched.
    std::fs::remove_file(&replaced_path).expect("rm");
    std::fs::write(&replaced_path, b"not ours").expect("write");

    let rec = swap_backends::recover(&state).expect("recover");
    assert_eq!(rec.swap_files.len(), 1, "{rec:?}");
    assert_eq!(rec.swap_files[0].path(), on_path);
    assert_eq!(rec.swap_files[0].owner(), Some("p2"));
    let outcome = |p: &std::path::Path| {
        rec.others
            .iter()
            .find(|o| matches!(&o.record, swap_backends::state::DeviceRecord::SwapFile(r) if r.path == p))
            .map(|o| format!("{:?}", o.outcome))
    };
    assert_eq!(outcome(&half_path).as_deref(), Some("Cleaned"));
    assert!(
        outcome(&replaced_path).is_some_and(|o| o.starts_with("Forgotten")),
        "{:?}",
        outcome(&replaced_path)
    );
    assert!(!half_path.exists(), "the half torn down file was removed");
    assert_eq!(std::fs::read(&replaced_path).expect("still there"), b"not ours");
    drop(rec);
    assert!(swaps_line(&on_path).is_none() && !on_path.exists(), "the adopted file is torn down on drop");
    assert!(state.records().expect("records").is_empty());
}
