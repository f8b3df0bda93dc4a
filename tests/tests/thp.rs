//! THP promotion and demotion on a real child workload through the real
//! daemon (issue 5): the region engine (refault probe, zram for its
//! pageouts) collapses the hot 2 MiB units of an etmem-workload process with
//! process_madvise(MADV_COLLAPSE), never collapses units holding swapped-out
//! pages nor cold memory, and splits the huge pages again once they cool.
//!
//! The workload: `dense` (32 MiB, random reads: every page hot), `sparse`
//! (16 MiB read sequentially with a stride of 33/32 pages: one page in 33 is
//! never touched, the others all the time) and `cold` (96 MiB, filled once).
//! Right after the project starts, the test pages out the untouched pages of
//! the first half of `sparse`'s units: those units look hot but hold
//! swapped pages for good. A collapse would swap them back in; nothing else
//! would (the workload never touches them, the probe only reads pagemap for
//! pages that are out).
//!
//! `holey` (8 MiB, only every other page written, random reads all the
//! time): hot, but half of each unit maps the zero page, which a collapse
//! would turn into new memory; with `thp_max_ptes_none` at its default (0)
//! it is never collapsed.

use damon_core::ProbeError;
use damon_core::ops::ProcTarget;
use damon_core::ops::kpageflags::{KPAGEFLAGS_PATH, KpageFlags, KpageflagsFile};
use damon_core::ops::pagemap::PagemapEntry;
use damon_core::ops::sys::{IOV_MAX, MADV_PAGEOUT};
use damon_core::{AddrRange, PAGE_SIZE};
use etmem_tests::{DaemonConfig, TestDaemon, is_root};
use perf::workload::Child;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const UNIT: u64 = 2 * MIB;
const THP_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
/// Units of `sparse` whose untouched pages the test pages out.
const SWAPPED_UNITS: usize = 4;
/// The stride of the sequential walk over `sparse`: 33/32 of a page, so
/// offset k × stride lands on page ⌊33k/32⌋ and one page in 33 is skipped.
const SPARSE_STRIDE: u64 = PAGE_SIZE * 33 / 32;

const WORKLOAD: &str = "\
dense, 32M
sparse, 16M
cold, 96M
holey, 8M, fill=8K

run
forever
dense, 1, 64, 1, ro
sparse, 0, 4224, 1, ro
holey, 1, 64, 1, ro
";

fn skip_reason() -> Option<String> {
    if !is_root() {
        return Some(
            "needs root (process_madvise on another process, pagemap PFNs, kpageflags, zram)".into(),
        );
    }
    match std::fs::read_to_string(THP_ENABLED) {
        Err(_) => return Some("the kernel has no transparent huge pages".into()),
        Ok(t) if !t.contains("[madvise]") => {
            return Some(format!("THP is `{}` here; the test needs `madvise`", t.trim()));
        }
        Ok(_) => {}
    }
    if std::fs::File::open(KPAGEFLAGS_PATH).is_err() {
        return Some(format!("{KPAGEFLAGS_PATH} cannot be read"));
    }
    swap_backends::zram::unavailable_reason()
}

fn project(pid: u32) -> String {
    format!(
        r#"
[project]
name = "thp"

[engine]
kind = "region"
sample_interval = "20ms"
aggr_interval = "200ms"
update_interval = "1s"
min_nr_regions = 20
max_nr_regions = 200
probe = "refault"

[[task]]
name = "wl"
pid = {pid}

[policy]
hot_min_accesses = 1
cold_max_accesses = 0
cold_min_age = "3s"
thp_min_age = "1s"
promote_thp = true
demote_thp = true
cold_action = "none"

[[backend]]
kind = "zram"
size = "512M"
compressor = "lzo-rle"
"#
    )
}

/// Per-unit views of the child's memory through pagemap and kpageflags.
struct Pages {
    proc: ProcTarget,
    kpf: KpageflagsFile,
}

impl Pages {
    fn entries(&self, range: AddrRange) -> Vec<PagemapEntry> {
        let mut out = Vec::new();
        self.proc.with_pagemap("test read", |pm| pm.read_range(range, &mut out)).expect("pagemap");
        out
    }

    /// Whether any present page of `unit` is part of a transparent huge page.
    fn has_thp(&mut self, unit: AddrRange) -> bool {
        let pfns: Vec<u64> = self.entries(unit).iter().filter_map(|e| e.pfn()).collect();
        let mut flags = vec![KpageFlags::default(); pfns.len()];
        self.kpf.read_pfns(&pfns, &mut flags).expect("kpageflags");
        flags.iter().any(|f| f.thp())
    }

    /// How many of `pages` are swapped out.
    fn swapped(&self, pages: &[u64]) -> usize {
        let mut n = 0;
        for &p in pages {
            n += usize::from(self.entries(AddrRange::new(p, p + PAGE_SIZE))[0].swapped());
        }
        n
    }

    /// AnonHugePages of the mapping that holds `range`.
    fn anon_huge_in(&self, range: AddrRange) -> u64 {
        let vmas = self.proc.smaps().expect("smaps");
        vmas.iter()
            .filter(|v| v.range.start <= range.start && range.end <= v.range.end)
            .filter_map(|v| v.smaps.as_ref())
            .map(|s| s.anon_huge_pages_bytes)
            .sum()
    }

    fn anon_huge_total(&self) -> u64 {
        let text = self.proc.read_file("smaps_rollup").expect("smaps_rollup");
        text.lines()
            .find_map(|l| l.strip_prefix("AnonHugePages:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }
}

fn units(range: AddrRange) -> Vec<AddrRange> {
    (range.start.0..range.end.0).step_by(UNIT as usize).map(|s| AddrRange::new(s, s + UNIT)).collect()
}

/// The pages of `unit` (inside `sparse`) the sequential walk never touches.
fn untouched_pages(sparse: AddrRange, unit: AddrRange) -> Vec<u64> {
    let pages = sparse.len() / PAGE_SIZE;
    let mut touched = vec![false; pages as usize];
    for k in 0..sparse.len().div_ceil(SPARSE_STRIDE) {
        touched[(k * SPARSE_STRIDE / PAGE_SIZE) as usize] = true;
    }
    (unit.start.0..unit.end.0)
        .step_by(PAGE_SIZE as usize)
        .filter(|&p| !touched[((p - sparse.start.0) / PAGE_SIZE) as usize])
        .collect()
}

/// Bytes of `ranges` the engine's last snapshot finds hot for `thp_min_age`
/// (regions with `nr_accesses >= 1`, the policy's hot threshold, at least 5
/// aggregations of 200 ms old): THP-eligible as far as access goes.
fn eligible_cover(d: &TestDaemon, pid: u32, ranges: &[AddrRange]) -> u64 {
    let out = d.etmem(&["engine", "snapshot", "-n", "thp", "-e", "region", "-t", "wl"]);
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&out.stdout) else { return 0 };
    let regions = v["wl"][pid.to_string()]["regions"].as_array().cloned().unwrap_or_default();
    let mut covered = 0;
    for r in regions {
        if r["nr_accesses"].as_u64().unwrap_or(0) == 0 || r["age"].as_u64().unwrap_or(0) < 5 {
            continue;
        }
        let (Some(s), Some(e)) = (r["range"]["start"].as_u64(), r["range"]["end"].as_u64()) else { continue };
        let reg = AddrRange::new(s, e);
        covered += ranges.iter().filter_map(|x| x.intersect(&reg)).map(|x| x.len()).sum::<u64>();
    }
    covered
}

/// Units left alone as too sparsely populated, from `project show`.
fn left_sparse(show: &str) -> u64 {
    show.split_once("left alone (swapped pages), ")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Watches THP `enabled` from a thread: another process on a shared machine
/// (a benchmark) may switch it to `always` for a while, and then khugepaged
/// collapses cold memory too, which says nothing about etmemd.
struct ThpWatch {
    changed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl ThpWatch {
    fn start() -> ThpWatch {
        let (changed, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (c, s) = (Arc::clone(&changed), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if !std::fs::read_to_string(THP_ENABLED).unwrap_or_default().contains("[madvise]") {
                    c.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        ThpWatch { changed, stop }
    }

    fn changed(&self) -> bool {
        self.changed.load(Ordering::Relaxed)
    }
}

impl Drop for ThpWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

const THP_CHANGED: &str = "THP `enabled` left `madvise` during the test (another process on this machine)";
const SWAP_GONE: &str = "a swap device that held the test's paged-out pages was switched off during the test \
     (another process on this machine): its pages came back without a collapse";

/// The two tests run one at a time: each one's daemon adds a zram device of
/// the same priority, so the pages this file's first test pages out by hand
/// may go to the other's device, and come back without a collapse when that
/// test ends and switches it off.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The swap devices listed in /proc/swaps.
fn swap_devices() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    text.lines().skip(1).filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect()
}

#[test]
fn hot_units_become_huge_pages_and_cold_ones_are_split_back() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let _serial = serial();
    let watch = ThpWatch::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("thp.cfg");
    std::fs::write(&cfg, WORKLOAD).expect("write workload config");
    // Small batches: both patterns run every few milliseconds, so every
    // touched page of `sparse` is touched between two samples too.
    let mut child = Child::spawn([cfg.as_os_str(), "--batch".as_ref(), "4096".as_ref()]).expect("workload");
    let region = |name: &str| child.region(name).expect("region").range();
    let (dense, sparse, cold, holey) = (region("dense"), region("sparse"), region("cold"), region("holey"));
    let mut pages = Pages {
        proc: ProcTarget::open(child.pid()).expect("open child"),
        kpf: KpageflagsFile::open(Path::new(KPAGEFLAGS_PATH)).expect("kpageflags"),
    };
    assert!(units(dense).iter().all(|&u| !pages.has_thp(u)), "dense starts with huge pages");
    let huge_before = pages.anon_huge_total();

    let d = TestDaemon::start(DaemonConfig::default());
    let file = d.config("thp.toml", &project(child.pid()));
    d.etmem(&["obj", "add", "-f", file.to_str().expect("utf-8")]).ok();
    d.etmem(&["project", "start", "-n", "thp"]).ok().says("zram");

    // Within thp_min_age of the start: nothing can be collapsed yet.
    let swapped_units: Vec<AddrRange> = units(sparse).into_iter().take(SWAPPED_UNITS).collect();
    let untouched: Vec<Vec<u64>> = swapped_units.iter().map(|&u| untouched_pages(sparse, u)).collect();
    let iov: Vec<(u64, u64)> = untouched.iter().flatten().map(|&p| (p, PAGE_SIZE)).collect();
    for batch in iov.chunks(IOV_MAX) {
        let r: Result<usize, ProbeError> = pages.proc.process_madvise(batch, MADV_PAGEOUT);
        assert_eq!(r.expect("page out untouched pages"), batch.len() * PAGE_SIZE as usize);
    }
    let swapped_at_start: Vec<usize> = untouched.iter().map(|p| pages.swapped(p)).collect();
    let devices_at_start = swap_devices();
    for (k, n) in swapped_at_start.iter().enumerate() {
        assert!(
            *n * 10 >= untouched[k].len() * 8,
            "untouched pages did not leave RAM (no swap space?): {n} of {} in unit {k}",
            untouched[k].len()
        );
    }

    // A unit is huge now only if it held no swapped page at the last look.
    // (Its pages can come back without a collapse only when a swap device
    // they went to is switched off: the machine may be shared.)
    let mut last_out = swapped_at_start.clone();
    // Returns why the results are void when the host's THP mode changed or a
    // swap device it paged out to went away meanwhile.
    let mut never_collapsed = |pages: &mut Pages, when: &str| -> Result<(), &'static str> {
        let huge_cold = pages.anon_huge_in(cold);
        let thp: Vec<bool> = swapped_units.iter().map(|&u| pages.has_thp(u)).collect();
        if watch.changed() {
            return Err(THP_CHANGED);
        }
        let devices = swap_devices();
        if devices_at_start.iter().any(|d| !devices.contains(d)) {
            return Err(SWAP_GONE);
        }
        for (k, p) in untouched.iter().enumerate() {
            let out = pages.swapped(p);
            assert!(
                !thp[k] || last_out[k] == 0,
                "{when}: sparse unit {k} was collapsed while {} of its pages were swapped out\n{}",
                last_out[k],
                d.etmem(&["project", "show", "-n", "thp"]).stdout
            );
            if out + 2 < last_out[k] {
                println!(
                    "note: {} swapped pages of sparse unit {k} came back without a collapse",
                    last_out[k] - out
                );
            }
            last_out[k] = out;
        }
        assert_eq!(huge_cold, 0, "{when}: cold memory became huge pages");
        let huge_holey = pages.anon_huge_in(holey);
        assert_eq!(huge_holey, 0, "{when}: half-populated units became huge pages");
        Ok(())
    };

    // Promotion: the dense (hot, fully resident) units become huge pages,
    // while the sparse units holding swapped pages, THP-eligible as far as
    // access goes, stay small.
    let hot_aligned = dense.len();
    let swapped_bytes: u64 = swapped_units.iter().map(AddrRange::len).sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut grown, mut eligible_seen) = (0, 0);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        if let Err(why) = never_collapsed(&mut pages, "promotion") {
            println!("skipped: {why}");
            return;
        }
        grown = pages.anon_huge_total().saturating_sub(huge_before);
        eligible_seen = eligible_seen.max(eligible_cover(&d, child.pid(), &swapped_units));
        let sparse_seen = left_sparse(&d.etmem(&["project", "show", "-n", "thp"]).stdout) > 0;
        if grown * 10 >= hot_aligned * 9 && eligible_seen * 10 >= swapped_bytes * 9 && sparse_seen {
            break;
        }
    }
    let show = d.etmem(&["project", "show", "-n", "thp"]);
    println!(
        "AnonHugePages grew by {} MiB for {} MiB of hot aligned units; dense VMA: {} MiB huge; \
         at most {} of {} MiB of sparse units holding swapped pages THP-eligible at once\n{}",
        grown / MIB,
        hot_aligned / MIB,
        pages.anon_huge_in(dense) / MIB,
        eligible_seen / MIB,
        swapped_bytes / MIB,
        show.stdout
    );
    assert!(
        grown * 10 >= hot_aligned * 8,
        "AnonHugePages grew by only {} MiB of {} MiB hot\n{}",
        grown / MIB,
        hot_aligned / MIB,
        show.stdout
    );
    assert!(
        eligible_seen * 2 >= swapped_bytes,
        "the sparse units holding swapped pages were not THP-eligible ({eligible_seen} of {swapped_bytes} \
         bytes): the test shows nothing about them\n{}",
        show.stdout
    );
    // The probe holds huge pages for max(cold_min_age, 10 × (thp_min_age + aggr_interval)).
    show.ok().says("thp_collapses").says("anon-huge").says("hold 12s ±25 % (thp_hold)");
    assert!(
        left_sparse(&show.stdout) > 0,
        "no unit of `holey` was planned and left alone as sparse: the test shows nothing about it\n{}",
        show.stdout
    );

    // Demotion: once nothing is accessed, the huge pages are split back
    // (after the probe's hold on them expires and they stay idle for cold_min_age).
    child.pause().expect("pause");
    let dense_huge = pages.anon_huge_in(dense);
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut left = dense_huge;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        if let Err(why) = never_collapsed(&mut pages, "demotion") {
            println!("skipped: {why}");
            return;
        }
        left = pages.anon_huge_in(dense);
        if left == 0 {
            break;
        }
    }
    if watch.changed() {
        println!("skipped: {THP_CHANGED}");
        return;
    }
    let show = d.etmem(&["project", "show", "-n", "thp"]);
    println!(
        "after the pause: dense {} MiB huge (was {} MiB)\n{}",
        left / MIB,
        dense_huge / MIB,
        show.stdout
    );
    assert!(
        left * 5 <= dense_huge,
        "only {} of {} MiB of idle huge pages were split back\n{}",
        (dense_huge - left) / MIB,
        dense_huge / MIB,
        show.stdout
    );
    let demotions_line = show.stdout.lines().find(|l| l.contains("thp_demotions")).unwrap_or_default();
    assert!(
        !demotions_line.contains(" 0 split back"),
        "no demotion counted: {demotions_line}\n{}",
        show.stdout
    );
    if let Err(why) = never_collapsed(&mut pages, "the end") {
        println!("skipped: {why}");
        return;
    }

    d.etmem(&["project", "stop", "-n", "thp"]).ok();
    child.resume().expect("resume");
    let v = child.verify().expect("verify");
    assert!(v.ok, "the workload's data changed: {v:?}");
}

/// A process that turned THP off for itself (prctl PR_SET_THP_DISABLE, as
/// mariadbd does): the kernel would refuse every collapse, so none is
/// tried, and `project show` says why.
#[test]
fn a_process_with_thp_disabled_is_not_collapsed_and_show_says_why() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let _serial = serial();
    let child = Child::spawn(["--size", "64M", "--hot", "50%", "--thp-disable"]).expect("workload");
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.pid())).expect("status");
    assert!(status.contains("THP_enabled:\t0"), "the child did not turn THP off:\n{status}");
    let d = TestDaemon::start(DaemonConfig::default());
    let file = d.config("thp.toml", &project(child.pid()));
    d.etmem(&["obj", "add", "-f", file.to_str().expect("utf-8")]).ok();
    d.etmem(&["project", "start", "-n", "thp"]).ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let show = loop {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let show = d.etmem(&["project", "show", "-n", "thp"]);
        show.ok();
        // Wait until some memory is THP-eligible: a collapse would be
        // planned (and refused with EINVAL) now if it were tried.
        let eligible = show.stdout.contains("thp-eligible") && !show.stdout.contains("thp-eligible 0 B");
        if eligible || std::time::Instant::now() > deadline {
            break show;
        }
    };
    println!("{}", show.stdout);
    assert!(
        !show.stdout.contains("thp-eligible 0 B"),
        "nothing became THP-eligible in 60 s:\n{}",
        show.stdout
    );
    show.says("turned transparent huge pages off").says("0 done, 0 refused, 0 failed");
}

/// `thp_min_class = "warm"` collapses memory that is in use but too seldom
/// sampled to be hot (here: never touched, but not yet `cold_min_age` old,
/// which is warm as well): under the default `hot` the same memory stays in
/// base pages while the hot units around it become huge. Each class gets a
/// workload of its own: pages the first project's probe paged out would be
/// swapped pages, not probe pages, to the second.
#[test]
fn warm_units_become_huge_pages_only_with_thp_min_class_warm() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let _serial = serial();
    let watch = ThpWatch::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("warm.cfg");
    std::fs::write(&cfg, "dense, 16M\nidle, 32M\n\nrun\nforever\ndense, 1, 64, 1, ro\n")
        .expect("workload config");
    let d = TestDaemon::start(DaemonConfig::default());
    // `idle` is never cold within the test (cold_min_age 1 h): warm all along.
    // Returns the huge bytes of `dense` and `idle` and their sizes.
    let run = |class: &str, until: &dyn Fn(u64, u64, u64, u64) -> bool| -> ([u64; 4], String) {
        let mut child =
            Child::spawn([cfg.as_os_str(), "--batch".as_ref(), "4096".as_ref()]).expect("workload");
        let (dense, idle) =
            (child.region("dense").expect("dense").range(), child.region("idle").expect("idle").range());
        let pages = Pages {
            proc: ProcTarget::open(child.pid()).expect("open child"),
            kpf: KpageflagsFile::open(Path::new(KPAGEFLAGS_PATH)).expect("kpageflags"),
        };
        let name = format!("thp-{class}");
        let text = project(child.pid())
            .replace("name = \"thp\"", &format!("name = \"{name}\""))
            .replace("cold_min_age = \"3s\"", "cold_min_age = \"1h\"")
            .replace("promote_thp = true", &format!("promote_thp = true\nthp_min_class = \"{class}\""));
        let file = d.config(&format!("{name}.toml"), &text);
        d.etmem(&["obj", "add", "-f", file.to_str().expect("utf-8")]).ok();
        d.etmem(&["project", "start", "-n", &name]).ok();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut huge = [0, 0, dense.len(), idle.len()];
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            (huge[0], huge[1]) = (pages.anon_huge_in(dense), pages.anon_huge_in(idle));
            if until(huge[0], huge[1], huge[2], huge[3]) {
                break;
            }
        }
        let show = d.etmem(&["project", "show", "-n", &name]).stdout.clone();
        d.etmem(&["project", "stop", "-n", &name]).ok();
        d.etmem(&["obj", "del", "-f", file.to_str().expect("utf-8")]).ok();
        child.resume().ok();
        let v = child.verify().expect("verify");
        assert!(v.ok, "the workload's data changed under {class}: {v:?}");
        (huge, show)
    };

    let ([dense_hot, idle_hot, dense_len, _], show) = run("hot", &|dense, _, len, _| dense * 10 >= len * 9);
    println!("hot: dense {} MiB huge, idle {} MiB huge\n{show}", dense_hot / MIB, idle_hot / MIB);
    assert!(dense_hot * 10 >= dense_len * 8, "hot units did not become huge: the test shows nothing\n{show}");
    assert_eq!(idle_hot, 0, "thp_min_class = \"hot\" collapsed memory never accessed\n{show}");

    let ([_, idle_warm, _, idle_len], show) = run("warm", &|_, idle, _, len| idle * 10 >= len * 9);
    println!("warm: idle {} MiB huge of {} MiB\n{show}", idle_warm / MIB, idle_len / MIB);
    if watch.changed() {
        println!("skipped: {THP_CHANGED}");
        return;
    }
    assert!(
        idle_warm * 10 >= idle_len * 8,
        "thp_min_class = \"warm\" left warm memory in base pages: {} of {} MiB huge\n{show}",
        idle_warm / MIB,
        idle_len / MIB
    );
}
