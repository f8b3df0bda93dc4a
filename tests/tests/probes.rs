//! Access probes on real child processes (issue 3, item 4): the refault
//! probe with a zram swap device this test creates and removes, on a child
//! that keeps touching a known hot range and leaves a cold range alone.

use conf::ZramBackend;
use damon_core::ops::kpageflags::{KPAGEFLAGS_PATH, KpageFlags, KpageflagsFile};
use damon_core::ops::pagemap::PagemapEntry;
use damon_core::ops::refault::{RefaultOptions, RefaultProbe, ThpPolicy};
use damon_core::ops::{ProcTarget, SampleState};
use damon_core::{AccessProbe, Addr, PAGE_SIZE, ProbeError};
use etmem_tests::is_root;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use swap_backends::zram::{MAX_SWAP_PRIORITY, ZramSetupError, ZramSwap};

/// One zram device at a time in this binary: tests run in parallel threads.
static SWAP_LOCK: Mutex<()> = Mutex::new(());

fn swap_lock() -> MutexGuard<'static, ()> {
    SWAP_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why this test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    if !is_root() {
        return Some("the refault probe and zram need root".into());
    }
    swap_backends::zram::unavailable_reason()
}

/// A zram swap of 256 MiB at the highest priority, so the child's pages go
/// to it and to no other device. Dropping it swaps off and removes it.
fn zram() -> ZramSwap {
    let b = ZramBackend {
        size_bytes: 256 << 20,
        compressor: "lz4".into(),
        priority: MAX_SWAP_PRIORITY,
        mem_limit_bytes: None,
    };
    match ZramSwap::create(&b, None) {
        Err(ZramSetupError::Compressor { available, .. }) if !available.is_empty() => {
            ZramSwap::create(&ZramBackend { compressor: available[0].clone(), ..b }, None)
        }
        r => r,
    }
    .expect("create a zram swap device")
}

/// Layout of a child's mapping.
#[derive(Debug, Clone, Copy)]
struct ChildLayout {
    /// Pages mapped in total.
    pages: usize,
    /// The first `hot_pages` are touched (read + write) in a loop forever.
    hot_pages: usize,
    /// `madvise(MADV_HUGEPAGE)` the mapping (else `MADV_NOHUGEPAGE`); the
    /// mapping is then 2 MiB-aligned.
    huge: bool,
}

/// A forked child running [`child_main`]; killed and reaped on drop.
#[derive(Debug)]
struct Child {
    pid: libc::pid_t,
    base: u64,
}

impl Child {
    fn spawn(layout: ChildLayout) -> Child {
        let mut fds = [0i32; 2];
        // SAFETY: fds has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2");
        // SAFETY: the child runs only async-signal-safe code (child_main: raw
        // syscalls and volatile memory accesses, no allocation, no locks).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: see above; child_main never returns.
            unsafe { child_main(layout, fds[1]) }
        }
        let mut base = [0u8; 8];
        // SAFETY: closing our copy of the write end; reading 8 bytes into `base`.
        let n = unsafe {
            libc::close(fds[1]);
            let n = libc::read(fds[0], base.as_mut_ptr().cast(), 8);
            libc::close(fds[0]);
            n
        };
        let child = Child { pid, base: u64::from_ne_bytes(base) };
        assert_eq!(n, 8, "the child reports its mapping's address");
        child
    }

    fn pid(&self) -> u32 {
        u32::try_from(self.pid).expect("positive pid")
    }

    fn page(&self, k: usize) -> Addr {
        Addr(self.base + k as u64 * PAGE_SIZE)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: kill and reap our own child; a null status pointer is allowed.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// The child: map, fill every page, report the address, then touch the hot
/// pages forever. Dies with the parent (PR_SET_PDEATHSIG).
///
/// # Safety
/// Call only in a freshly forked child: it uses raw syscalls only.
unsafe fn child_main(layout: ChildLayout, report_fd: i32) -> ! {
    // SAFETY: raw syscalls on our own memory and descriptors; every pointer
    // used stays inside the mapping made here.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        let len = layout.pages * PAGE_SIZE as usize;
        let extra = if layout.huge { 2 << 20 } else { 0 };
        let raw = libc::mmap(
            std::ptr::null_mut(),
            len + extra,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if raw == libc::MAP_FAILED {
            libc::_exit(2);
        }
        let base = ((raw as usize).next_multiple_of(if layout.huge { 2 << 20 } else { 1 })) as *mut u8;
        let advice = if layout.huge { libc::MADV_HUGEPAGE } else { libc::MADV_NOHUGEPAGE };
        libc::madvise(base.cast(), len, advice);
        for k in 0..layout.pages {
            // Varied bytes, so zram compresses real data rather than same-filled pages.
            let p = base.add(k * PAGE_SIZE as usize);
            for j in (0..PAGE_SIZE as usize).step_by(512) {
                std::ptr::write_volatile(p.add(j), (k ^ j) as u8 | 1);
            }
        }
        let addr = (base as u64).to_ne_bytes();
        libc::write(report_fd, addr.as_ptr().cast(), 8);
        libc::close(report_fd);
        loop {
            for k in 0..layout.hot_pages {
                let p = base.add(k * PAGE_SIZE as usize);
                std::ptr::write_volatile(p, std::ptr::read_volatile(p).wrapping_add(1));
            }
        }
    }
}

/// `(accessed, not accessed, unknown)` of `states`.
fn tally(states: &[SampleState]) -> (usize, usize, usize) {
    let c = |s| states.iter().filter(|&&x| x == s).count();
    (c(SampleState::Accessed), c(SampleState::NotAccessed), c(SampleState::Unknown))
}

#[test]
fn refault_probe_sees_the_hot_range_of_a_real_child_and_not_the_cold_one() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let _lock = swap_lock();
    let _zram = zram();
    // 64 MiB, the first 4 MiB hot; dropped (killed, reaped) before the zram.
    let layout = ChildLayout { pages: 16384, hot_pages: 1024, huge: false };
    let child = Child::spawn(layout);
    let target = Arc::new(ProcTarget::open(child.pid()).expect("pidfd of the child"));
    let mut probe = RefaultProbe::new(target.clone(), RefaultOptions::default()).expect("refault probe");

    // 64 hot samples and 64 cold ones, interleaved as a region engine would pass them.
    let hot: Vec<Addr> = (0..64).map(|i| child.page(i * 16 + 3)).collect();
    let cold: Vec<Addr> = (0..64).map(|i| child.page(1024 + i * 240 + 7)).collect();
    let addrs: Vec<Addr> = hot.iter().zip(&cold).flat_map(|(h, c)| [*h, *c]).collect();

    let mut hot_accessed = 0;
    for round in 0..3 {
        probe.arm(&addrs).expect("arm");
        std::thread::sleep(Duration::from_millis(300));
        let mut states = vec![SampleState::Unknown; addrs.len()];
        probe.check_states(&addrs, &mut states).expect("check");
        let hot_states: Vec<SampleState> = states.iter().step_by(2).copied().collect();
        let cold_states: Vec<SampleState> = states.iter().skip(1).step_by(2).copied().collect();
        let (h_acc, h_not, h_unk) = tally(&hot_states);
        let (c_acc, c_not, c_unk) = tally(&cold_states);
        println!(
            "round {round}: hot {h_acc} accessed / {h_not} not / {h_unk} unknown; \
             cold {c_acc} accessed / {c_not} not / {c_unk} unknown; {:?}",
            probe.refault_stats()
        );
        assert_eq!(h_not, 0, "a hot page the child keeps touching was reported not accessed");
        assert_eq!(c_acc, 0, "a cold page nobody touches was reported accessed");
        // A hot page touched while the kernel reclaims it stays in RAM (the
        // arm does not take): inherent to the refault probe, and more so on a
        // loaded machine. Cold pages must all be observable.
        // Hot pages that just faulted back in can still sit in a per-CPU LRU
        // batch of the child's CPU, where MADV_PAGEOUT cannot isolate them:
        // how many depends on the machine's timing, so the hot side is
        // judged over all rounds below.
        assert!(c_unk <= cold.len() / 10, "more than 10% of cold samples could not be probed");
        hot_accessed += h_acc;
        let mut accessed = vec![false; addrs.len()];
        probe.check(&addrs, &mut accessed).expect("check again");
        assert_eq!(accessed.iter().step_by(2).filter(|&&a| a).count(), h_acc);
    }

    assert!(
        hot_accessed * 12 >= hot.len() * 3,
        "the probe saw only {hot_accessed} of {} hot samples accessed over 3 rounds",
        hot.len() * 3
    );

    // The cold samples really left RAM: they sit in swap.
    let mut e = vec![PagemapEntry::default(); cold.len()];
    target.with_pagemap("read cold samples", |pm| pm.read_addrs(&cold, &mut e)).expect("pagemap");
    let swapped = e.iter().filter(|e| e.swapped()).count();
    assert!(swapped >= cold.len() * 9 / 10, "only {swapped} of {} cold samples are in swap", cold.len());
    let s = probe.refault_stats();
    assert!(s.pages_armed >= 64 && s.bytes_paged_out >= 64 * PAGE_SIZE, "{s:?}");
    assert_eq!(s.skipped_no_swap, 0);
    // The cold samples went out at the first arm and stayed out: the probe
    // still names them as its own pages after two more arms, and once
    // taken, they are not named again.
    let own = probe.take_paged_out();
    let still_out: Vec<u64> =
        cold.iter().zip(&e).filter(|(_, e)| e.swapped()).map(|(a, _)| a.0 & !(PAGE_SIZE - 1)).collect();
    let named = still_out.iter().filter(|p| own.binary_search(p).is_ok()).count();
    assert_eq!(named, still_out.len(), "cold samples in swap that the probe does not name as its own");
    assert!(own.windows(2).all(|w| w[0] < w[1]), "sorted and without duplicates");
    assert!(probe.take_paged_out().is_empty(), "taken twice");

    // Once the child is gone, the probe says so instead of failing.
    drop(child);
    assert!(matches!(probe.arm(&addrs), Err(ProbeError::TargetGone { .. })));
}

fn vmstat(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/vmstat").expect("/proc/vmstat");
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Whether `addr` of `target` is the head of a transparent huge page now.
fn is_thp_head(target: &ProcTarget, addr: Addr) -> bool {
    let mut e = [PagemapEntry::default()];
    target.with_pagemap("read", |pm| pm.read_addrs(&[addr], &mut e)).expect("pagemap");
    let Some(pfn) = e[0].pfn() else { return false };
    let mut kpf = KpageflagsFile::open(Path::new(KPAGEFLAGS_PATH)).expect("kpageflags");
    let mut f = [KpageFlags::default()];
    kpf.read_pfns(&[pfn], &mut f).expect("kpageflags");
    f[0].thp() && f[0].compound_head()
}

#[test]
fn refault_probe_pages_out_a_huge_page_whole_and_never_splits_it() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let _lock = swap_lock();
    let _zram = zram();
    // Four huge pages: the first hot, the other three cold.
    let child = Child::spawn(ChildLayout { pages: 2048, hot_pages: 512, huge: true });
    let target = Arc::new(ProcTarget::open(child.pid()).expect("pidfd of the child"));
    let heads: Vec<Addr> = (0..4).map(|k| child.page(k * 512)).collect();
    if !heads.iter().all(|&h| is_thp_head(&target, h)) {
        println!("skipped: the kernel did not back the child's mapping with huge pages");
        return;
    }

    // Skip policy: nothing moves.
    let skip = RefaultOptions { thp: ThpPolicy::Skip, ..RefaultOptions::default() };
    let mut p = RefaultProbe::new(target.clone(), skip).expect("probe");
    let samples = [child.page(100), child.page(512 + 7), child.page(1024 + 300)];
    p.arm(&samples).expect("arm");
    assert_eq!((p.refault_stats().skipped_huge, p.refault_stats().bytes_paged_out), (3, 0));
    assert!(heads.iter().all(|&h| is_thp_head(&target, h)), "still huge pages");

    // Whole-folio policy: each sampled huge page goes out as one unit.
    let splits_before = vmstat("thp_split_page");
    let mut p = RefaultProbe::new(target.clone(), RefaultOptions::default()).expect("probe");
    p.arm(&samples).expect("arm");
    let s = p.refault_stats();
    println!(
        "{s:?}; thp_swpout {} thp_swpout_fallback {}",
        vmstat("thp_swpout"),
        vmstat("thp_swpout_fallback")
    );
    assert_eq!(s.folios_armed + s.failed_arms, 3, "{s:?}");
    assert_eq!(s.bytes_paged_out, 3 * (2 << 20));
    assert_eq!(vmstat("thp_split_page"), splits_before, "a huge page was split");
    assert!(is_thp_head(&target, heads[3]), "the unsampled huge page was left alone");

    std::thread::sleep(Duration::from_millis(300));
    let mut states = [SampleState::Unknown; 3];
    p.check_states(&samples, &mut states).expect("check");
    println!("{states:?}");
    if s.folios_armed == 3 {
        assert_eq!(states, [SampleState::Accessed, SampleState::NotAccessed, SampleState::NotAccessed]);
    }
}

#[test]
fn refault_probe_takes_every_page_of_a_range_in_one_batch() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let _lock = swap_lock();
    let _zram = zram();
    // 16 MiB, the first 2 MiB hot; a page scan passes every page.
    let child = Child::spawn(ChildLayout { pages: 4096, hot_pages: 512, huge: false });
    let target = Arc::new(ProcTarget::open(child.pid()).expect("pidfd of the child"));
    let mut probe = RefaultProbe::new(target, RefaultOptions::default()).expect("refault probe");
    let addrs: Vec<Addr> = (0..4096).map(|k| child.page(k)).collect();
    probe.arm(&addrs).expect("arm");
    std::thread::sleep(Duration::from_millis(300));
    let mut states = vec![SampleState::Unknown; addrs.len()];
    probe.check_states(&addrs, &mut states).expect("check");
    let (h_acc, h_not, h_unk) = tally(&states[..512]);
    let (c_acc, c_not, c_unk) = tally(&states[512..]);
    println!(
        "hot {h_acc}/{h_not}/{h_unk} cold {c_acc}/{c_not}/{c_unk} (accessed/not/unknown); {:?}",
        probe.refault_stats()
    );
    assert_eq!(h_not, 0, "a hot page was reported not accessed");
    assert_eq!(c_acc, 0, "a cold page was reported accessed");
    assert!(c_unk <= (addrs.len() - 512) / 10, "more than 10% of cold pages could not be probed");
    assert!(h_unk <= 512 / 2, "more than half of the hot pages could not be probed");
}
