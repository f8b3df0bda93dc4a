//! bench-page-vs-region: etmem's page scan (the `page` engine, slide) against
//! DAMON's region sampling (the `region` engine) on the same workloads, in
//! the shape of the etmem presentation's "page scan vs region scan" table:
//! CPU seconds per GiB per round, memory saved, workload throughput and
//! accuracy against ground truth.
//!
//! - Simulated at 1, 4 and 16 GiB (damon_core::ops::sim, static hot/cold):
//!   the page engine's round logic over a simulated page probe, the region
//!   engine's Monitor over the simulated sampling probe. The simulator's own
//!   work (deciding each page's accesses) is measured apart and left out.
//! - Real at 256 MiB, 1 GiB and 2 GiB: etmem-workload children, both
//!   engines in-process through the refault probe (the only one this kernel
//!   has), swapping to a zram device the bench creates and removes.
//!
//! `cargo run --release -p perf --bin bench-page-vs-region [-- --out perf/results/page-vs-region.md]`
//!
//! Clean-up: the zram device and the children are guards dropped on every
//! exit path (error or panic); nothing is left swapped on.

use anyhow::{Context, Result, bail};
use clap::Parser;
use damon_core::ops::sim::{Scenario, SimProbe, evaluate};
use damon_core::{AddrRange, Monitor, MonitorAttrs, ProbeError, Snapshot, TargetId};
use etmemd::engine::page::probes::SimPageProbe;
use etmemd::engine::page::round::{self, PageProbe, PageSpace, PageState, ScanCost};
use etmemd::engine::{Engine, EngineEnv, EngineFactory};
use perf::workload::Child;
use policies::{HostMemory, PlanInput, Planner, TaskMemory};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swap_backends::state::RecordOutcome;

#[derive(Debug, Parser)]
#[command(about = "Page scan (etmem slide) against region sampling (DAMON) on the same workloads")]
struct Args {
    /// Simulated sizes, GiB.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 4, 16])]
    sim_gib: Vec<u64>,
    /// Real workload sizes, MiB.
    #[arg(long, value_delimiter = ',', default_values_t = vec![256, 1024, 2048])]
    real_mib: Vec<u64>,
    /// Page-engine rounds measured per simulated size (after one warm-up round).
    #[arg(long, default_value_t = 3)]
    sim_rounds: u64,
    /// Page-engine rounds per real size; the region engine runs as long.
    #[arg(long, default_value_t = 3)]
    real_rounds: u64,
    /// Skip the real part (no root, no zram).
    #[arg(long)]
    sim_only: bool,
    /// Skip the simulated part.
    #[arg(long)]
    real_only: bool,
    /// Where to write the markdown report.
    #[arg(long, default_value = "perf/results/page-vs-region.md")]
    out: std::path::PathBuf,
}

const GIB: f64 = (1u64 << 30) as f64;

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    swap_backends::thread_cpu_time()
}

/// This process's CPU time (every engine thread is in this process).
fn process_cpu() -> Result<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec to the valid pointer given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        bail!("clock_gettime(CLOCK_PROCESS_CPUTIME_ID): {}", std::io::Error::last_os_error());
    }
    Ok(Duration::new(u64::try_from(ts.tv_sec)?, u32::try_from(ts.tv_nsec)?))
}

/// A simulated page probe that keeps its own CPU time apart, so the page
/// engine's cost can be told from the simulator's.
struct TimedSim {
    inner: SimPageProbe,
    probe_cpu: Duration,
}

impl PageProbe for TimedSim {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn max_weight(&self) -> u32 {
        self.inner.max_weight()
    }
    fn arm(&mut self, space: &PageSpace) -> Result<(), ProbeError> {
        let t = thread_cpu();
        let r = self.inner.arm(space);
        self.probe_cpu += thread_cpu().saturating_sub(t);
        r
    }
    fn scan(&mut self, space: &PageSpace, rearm: bool, out: &mut Vec<PageState>) -> Result<(), ProbeError> {
        let t = thread_cpu();
        let r = self.inner.scan(space, rearm, out);
        self.probe_cpu += thread_cpu().saturating_sub(t);
        r
    }
    fn cost(&self) -> ScanCost {
        self.inner.cost()
    }
}

/// One engine's figures at one size.
#[derive(Debug, Clone, Default)]
struct Row {
    engine: &'static str,
    size: String,
    size_bytes: u64,
    rounds: u64,
    round_s: f64,
    /// Pages (page engine) or sampled pages (region engine) checked per round.
    checked_per_round: f64,
    cpu_s_per_round: f64,
    /// Memory that left RAM (real) or that the policy would page out (sim), bytes.
    saved_bytes: u64,
    /// Workload accesses per second relative to running alone (real only).
    throughput: Option<f64>,
    f1: f64,
    wss_error: f64,
    note: String,
}

impl Row {
    fn cpu_per_gib_round(&self) -> f64 {
        self.cpu_s_per_round / (self.size_bytes as f64 / GIB)
    }
    fn cpu_share(&self) -> f64 {
        self.cpu_s_per_round / self.round_s
    }
}

/// The etmem slide policy with T, for the simulated page engine's verdicts.
fn slide_policy(t: u32) -> conf::Policy {
    let mut task = conf::Task::new("bench", "page", "t", conf::TaskTarget::Pid(1));
    task.page.hot_threshold = Some(t);
    round::task_policy(&conf::Policy::etmem_slide(), &conf::PageEngine::default(), &task)
}

/// Region policy: cold = no access in 10 aggregations (1 s), hot = any access.
fn region_policy() -> conf::Policy {
    conf::Policy {
        hot_min_accesses: conf::AccessBound::Count(1),
        hot_min_age: Duration::ZERO,
        cold_max_accesses: conf::AccessBound::Count(0),
        cold_min_age: Duration::from_secs(1),
        cold_action: Some(conf::Action::Pageout),
        ..conf::Policy::default()
    }
}

/// Bytes a policy would page out of `snap` (the cold rule's decisions).
fn planned_pageout(policy: conf::Policy, snap: &Snapshot) -> u64 {
    let total = snap.total_bytes();
    let plan = Planner::new(policy, vec![]).plan(&PlanInput {
        now_us: snap.time_us,
        snapshot: snap,
        task: TaskMemory { rss_bytes: total, swap_bytes: 0 },
        host: HostMemory { total_bytes: 64 << 30, free_bytes: 1 << 30 },
        paged_out: &[],
        huge: &[],
        no_collapse: &[],
    });
    plan.decisions.iter().filter(|d| d.action == conf::Action::Pageout).map(|d| d.range.len()).sum()
}

fn size_name(bytes: u64) -> String {
    if bytes >= 1 << 30 { format!("{} GiB", bytes >> 30) } else { format!("{} MiB", bytes >> 20) }
}

/// The simulated part: both engines on `Scenario::static_hot_cold`.
fn simulated(args: &Args, gib: u64) -> Result<(Row, Row)> {
    let bytes = gib << 30;
    let s = Scenario::static_hot_cold(bytes, 7);
    let tick_us = s.space.tick_us();
    // Page engine: loop 3, sleep 100 ms (20 ticks) per scan, interval 1 s, T = 2.
    let (loops, window, interval_ticks, t) = (3u32, 20u64, 200u64, 2u32);
    let mut probe = TimedSim { inner: SimPageProbe::new(Arc::clone(&s.space)), probe_cpu: Duration::ZERO };
    probe.inner.advance(s.warmup_ticks);
    let vmas = s.space.initial_mappings().to_vec();
    let mut prev: Option<Snapshot> = None;
    let (mut cpu, mut probe_cpu, mut pages) = (Duration::ZERO, Duration::ZERO, 0u64);
    let (mut f1, mut wss, mut saved) = (0.0, 0.0, 0u64);
    let round_s = (u64::from(loops) * window + interval_ticks) as f64 * tick_us as f64 / 1e6;
    for r in 0..=args.sim_rounds {
        let (c0, p0) = (thread_cpu(), probe.probe_cpu);
        let space = PageSpace::new(vmas.iter().copied());
        let scores = round::run_round(&mut probe, space, loops, |p| {
            p.inner.advance(window);
            true
        })
        .context("simulated page round")?;
        let snap = scores.to_snapshot(
            prev.as_ref(),
            probe.inner.now() * tick_us,
            (u64::from(loops) * window + interval_ticks) * tick_us,
            round::max_score(loops, 1),
        );
        let pageout = planned_pageout(slide_policy(t), &snap);
        let c1 = thread_cpu();
        if r > 0 {
            cpu += c1.saturating_sub(c0);
            probe_cpu += probe.probe_cpu.saturating_sub(p0);
            pages += scores.space().len() as u64;
            let truth = s.space.hot_set(probe.inner.now(), s.hot_min_prob);
            let acc = evaluate(&snap, &truth, f64::from(t) / f64::from(loops));
            f1 += acc.f1();
            wss += acc.wss_error();
            saved += pageout;
        }
        probe.inner.advance(interval_ticks);
        prev = Some(snap);
    }
    let n = args.sim_rounds as f64;
    let engine_cpu = cpu.saturating_sub(probe_cpu).as_secs_f64() / n;
    let page = Row {
        engine: "page (slide)",
        size: format!("{gib} GiB sim"),
        size_bytes: bytes,
        rounds: args.sim_rounds,
        round_s,
        checked_per_round: pages as f64 / n,
        cpu_s_per_round: engine_cpu,
        saved_bytes: (saved as f64 / n) as u64,
        throughput: None,
        f1: f1 / n,
        wss_error: wss / n,
        note: format!(
            "scores, snapshot and plan only; the simulator's {:.2} s/round of page lookups left out",
            probe_cpu.as_secs_f64() / n
        ),
    };

    // Region engine: kernel-default attributes, as long as the page rounds.
    let attrs = MonitorAttrs::default();
    let mut m = Monitor::new(attrs.clone(), 7)?;
    let id = TargetId(1);
    m.add_target(id, s.space.initial_mappings())?;
    let mut sp = SimProbe::new(Arc::clone(&s.space));
    let total_ticks = s.warmup_ticks + (args.sim_rounds + 1) * (u64::from(loops) * window + interval_ticks);
    let (mut rcpu, mut aggrs, mut checks0) = (Duration::ZERO, 0u64, 0u64);
    let (mut rf1, mut rwss, mut rsaved) = (0.0, 0.0, 0u64);
    let mut window_start = 0;
    while sp.now() < total_ticks {
        let c0 = thread_cpu();
        let out = m.step(&mut sp);
        let c1 = thread_cpu();
        if sp.now() >= s.warmup_ticks {
            rcpu += c1.saturating_sub(c0);
        } else {
            checks0 = sp.stats().checked;
        }
        if let Some(snaps) = out.aggregated {
            if window_start >= s.warmup_ticks {
                for (_, snap) in &snaps {
                    let mid = window_start + (sp.now() - window_start) / 2;
                    let acc = evaluate(snap, &s.space.hot_set(mid.max(1), s.hot_min_prob), s.hot_nr_frac);
                    rf1 += acc.f1();
                    rwss += acc.wss_error();
                    rsaved += planned_pageout(region_policy(), snap);
                    aggrs += 1;
                }
            }
            window_start = sp.now();
        }
        sp.advance((m.sample_interval_us() / tick_us).max(1));
    }
    let an = aggrs.max(1) as f64;
    let region = Row {
        engine: "region (DAMON)",
        size: format!("{gib} GiB sim"),
        size_bytes: bytes,
        rounds: aggrs,
        round_s: attrs.aggr_interval_us as f64 / 1e6,
        checked_per_round: (sp.stats().checked - checks0) as f64 / an,
        cpu_s_per_round: rcpu.as_secs_f64() / an,
        saved_bytes: (rsaved as f64 / an) as u64,
        throughput: None,
        f1: rf1 / an,
        wss_error: rwss / an,
        note: format!("{:.0} regions on average", m.nr_regions()),
    };
    Ok((page, region))
}

/// A zram swap device for the real runs, removed on drop (also on error or
/// panic). A swapoff can fail for a moment on a busy host (ENOMEM while
/// other processes allocate): removal retries through the device's record.
struct ZramGuard {
    dev: Option<swap_backends::ZramSwap>,
    state: swap_backends::StateDir,
    _dir: tempfile::TempDir,
}

impl ZramGuard {
    fn create(size_bytes: u64) -> Result<ZramGuard> {
        let dir = tempfile::Builder::new().prefix("bench-page-zram").tempdir()?;
        let state = swap_backends::StateDir::new(dir.path()).with_owner("bench-page-vs-region");
        let dev = swap_backends::ZramSwap::create(
            &conf::ZramBackend {
                size_bytes,
                compressor: "lzo-rle".into(),
                // The highest priority: the child's pages go to this device,
                // not to one another job on the host may swap off meanwhile.
                priority: 32767,
                mem_limit_bytes: None,
            },
            Some(&state),
        )
        .map_err(|e| anyhow::anyhow!(swap_backends::error_chain(&e)))
        .context("create a zram swap device")?;
        Ok(ZramGuard { dev: Some(dev), state, _dir: dir })
    }

    fn remove(&mut self) -> Result<()> {
        let mut last = String::new();
        for _ in 0..20 {
            let dev = match self.dev.take() {
                Some(d) => d,
                None => match swap_backends::recover(&self.state) {
                    Ok(r) => match r.zram.into_iter().next() {
                        Some(d) => d,
                        None if r
                            .others
                            .iter()
                            .any(|o| matches!(o.outcome, RecordOutcome::Failed { .. })) =>
                        {
                            last = format!("{:?}", r.others.iter().map(|o| &o.outcome).collect::<Vec<_>>());
                            std::thread::sleep(Duration::from_secs(1));
                            continue;
                        }
                        None => return Ok(()),
                    },
                    Err(e) => bail!("read the zram record: {e}"),
                },
            };
            match dev.teardown() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    last = swap_backends::error_chain(&e);
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        bail!("cannot remove the bench's zram device: {last}")
    }
}

impl Drop for ZramGuard {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("{e:#}");
        }
    }
}

/// Accesses per second of the child over `d`.
fn throughput_over(child: &mut Child, d: Duration) -> Result<f64> {
    let a = child.stats()?;
    std::thread::sleep(d);
    let b = child.stats()?;
    let ms = b.run_ms.saturating_sub(a.run_ms).max(1);
    Ok((b.accesses - a.accesses) as f64 * 1000.0 / ms as f64)
}

fn status_bytes(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    etmemd::engine::procinfo::kb_field(&s, key).unwrap_or(0)
}

/// Classification of a snapshot against the child's hot regions:
/// regions scoring at least `min` are the estimated working set.
fn real_accuracy(snap: &Snapshot, hot: &[AddrRange], min: u32) -> (f64, f64) {
    let est: Vec<AddrRange> = snap.regions.iter().filter(|r| r.nr_accesses >= min).map(|r| r.range).collect();
    let tp: u64 =
        est.iter().flat_map(|e| hot.iter().filter_map(move |h| h.intersect(e))).map(|x| x.len()).sum();
    let est_b: u64 = est.iter().map(AddrRange::len).sum();
    let hot_b: u64 = hot.iter().map(AddrRange::len).sum();
    let f1 = if est_b + hot_b == 0 { 1.0 } else { 2.0 * tp as f64 / (est_b + hot_b) as f64 };
    let wss = if hot_b == 0 { 0.0 } else { est_b.abs_diff(hot_b) as f64 / hot_b as f64 };
    (f1, wss)
}

/// Mean hot-set accuracy over the distinct snapshots of a measured window.
#[derive(Default)]
struct Accuracy {
    f1: f64,
    wss: f64,
    n: u32,
    last_time_us: Option<u64>,
}

impl Accuracy {
    /// Count the task's latest snapshot if it is new.
    fn take(&mut self, inst: &dyn Engine, hot: &[AddrRange]) {
        if let Some((_, s)) = inst.snapshots("wl").first()
            && self.last_time_us != Some(s.time_us)
        {
            self.add(s, hot);
        }
    }

    fn add(&mut self, s: &Snapshot, hot: &[AddrRange]) {
        let (f1, wss) = real_accuracy(s, hot, 1);
        self.f1 += f1;
        self.wss += wss;
        self.n += 1;
        self.last_time_us = Some(s.time_us);
    }

    /// Mean F1 and WSS error; (0, 1) when no snapshot came.
    fn mean(&self) -> (f64, f64) {
        if self.n == 0 { (0.0, 1.0) } else { (self.f1 / f64::from(self.n), self.wss / f64::from(self.n)) }
    }
}

/// Run one engine on a fresh child of `bytes` and take its figures: the
/// page engine for `rounds` rounds, the region engine for `run_for`.
fn real_engine(
    which: &str,
    bytes: u64,
    rounds: u64,
    run_for: Duration,
    log: &mut String,
) -> Result<(Row, Duration)> {
    let mut child = Child::spawn(["--size", &format!("{}M", bytes >> 20), "--hot", "10%"])?;
    let pid = child.pid();
    let hot = child.hot_ranges();
    let alone = throughput_over(&mut child, Duration::from_secs(3))?;
    let swap0 = status_bytes(pid, "VmSwap");
    let mut task = conf::Task::new("bench", which, "wl", conf::TaskTarget::Pid(pid));
    task.page.hot_threshold = Some(1);
    let env = EngineEnv { backends: Arc::new(etmemd::runtime::Backends::default()) };
    let (project, engine) = if which == "slide" {
        // etmem's slide example timing: loop 1, sleep 1 s, interval 1 s, T 1.
        let scan =
            conf::PageScan { loops: 1, sleep: Duration::from_secs(1), interval: Duration::from_secs(1) };
        let p = conf::Project {
            name: "bench".into(),
            scan: conf::Scan::Page(scan),
            policy: conf::Policy::etmem_slide(),
            schemes: vec![],
            backends: vec![],
        };
        let e = conf::Engine {
            project: "bench".into(),
            name: "slide".into(),
            kind: conf::EngineKind::Page(conf::PageEngine::default()),
        };
        (p, e)
    } else {
        let p = conf::Project {
            name: "bench".into(),
            scan: conf::Scan::Region(conf::RegionScan::default()),
            policy: region_policy(),
            schemes: vec![],
            backends: vec![],
        };
        let e = conf::Engine {
            project: "bench".into(),
            name: "region".into(),
            kind: conf::EngineKind::Region(conf::RegionEngine {
                probe: conf::ProbeChoice::Refault,
                ..conf::RegionEngine::default()
            }),
        };
        (p, e)
    };
    let mut inst: Box<dyn Engine> =
        etmemd::engine::BuiltinEngines.create(&project, &engine, &env).map_err(|e| anyhow::anyhow!("{e}"))?;
    inst.start_task(&task).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rounds_now = |inst: &dyn Engine| inst.task_stats("wl").and_then(|s| s.aggregations).unwrap_or(0);
    let wait_rounds = |inst: &dyn Engine, n: u64| {
        let deadline = Instant::now() + Duration::from_secs(900);
        while rounds_now(inst) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Warm-up: the cold memory goes out once (a one-time pageout both
    // engines pay); the steady state after it is what is measured.
    let cold: u64 = child.cold_ranges().iter().map(AddrRange::len).sum();
    if which == "slide" {
        wait_rounds(inst.as_ref(), 1);
    } else {
        let deadline = Instant::now() + Duration::from_secs(120);
        while status_bytes(pid, "VmSwap").saturating_sub(swap0) * 10 < cold * 8 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let (cpu0, t0, acc0, rounds0) =
        (process_cpu()?, Instant::now(), child.stats()?, rounds_now(inst.as_ref()));
    // The page engine's rounds; the region engine runs as long as they took.
    // Accuracy is the mean over every snapshot published meanwhile (one
    // aggregation alone swings with the sampling).
    // The snapshot already there is the warm-up's: not counted.
    let mut accuracy = Accuracy {
        last_time_us: inst.snapshots("wl").first().map(|(_, s)| s.time_us),
        ..Accuracy::default()
    };
    let deadline = t0 + Duration::from_secs(900);
    loop {
        accuracy.take(inst.as_ref(), &hot);
        let done = if which == "slide" {
            rounds_now(inst.as_ref()) >= rounds0 + rounds || Instant::now() >= deadline
        } else {
            t0.elapsed() >= run_for
        };
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Between two page rounds (the 1 s interval): only the policy's
    // pageouts are out of RAM, not the probe's.
    let swapped = status_bytes(pid, "VmSwap").saturating_sub(swap0);
    let elapsed = t0.elapsed();
    let acc1 = child.stats()?;
    let cpu = process_cpu()?.saturating_sub(cpu0);
    let measured_rounds = rounds_now(inst.as_ref()).saturating_sub(rounds0).max(1);
    let stats = inst.task_stats("wl").unwrap_or_default();
    let snaps = inst.snapshots("wl");
    inst.stop();
    // The host is shared: take "alone" as the mean of before and after.
    let alone = (alone + throughput_over(&mut child, Duration::from_secs(3))?) / 2.0;
    let with = (acc1.accesses - acc0.accesses) as f64 * 1000.0
        / acc1.run_ms.saturating_sub(acc0.run_ms).max(1) as f64;
    if accuracy.n == 0
        && let Some((_, s)) = snaps.first()
    {
        accuracy.add(s, &hot);
    }
    let (f1, wss) = accuracy.mean();
    let rounds_done = measured_rounds;
    let round_s = elapsed.as_secs_f64() / rounds_done as f64;
    // Pages checked: every page per scan (page), one sampled page per region per sample (region).
    let total_rounds = stats.aggregations.unwrap_or(0).max(1) as f64;
    let checked = stats.extra.get("pages_scanned").and_then(|v| v.parse::<f64>().ok()).or_else(|| {
        stats.extra.get("probe_samples").and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
    });
    let _ = writeln!(
        log,
        "- {which} {}: {rounds_done} rounds measured in {:.1} s after warm-up (accuracy over {} snapshots), process CPU {:.2} s, swapped {}, {}",
        size_name(bytes),
        elapsed.as_secs_f64(),
        accuracy.n,
        cpu.as_secs_f64(),
        size_name(swapped),
        stats.extra.get("scan_cost").cloned().unwrap_or_default()
    );
    let v = child.verify()?;
    if !v.ok {
        bail!("the workload's data changed under the {which} engine: {v:?}");
    }
    let row = Row {
        engine: if which == "slide" { "page (slide)" } else { "region (DAMON)" },
        size: size_name(bytes),
        size_bytes: bytes,
        rounds: rounds_done,
        round_s,
        checked_per_round: checked.map_or(f64::NAN, |c| c / total_rounds),
        cpu_s_per_round: cpu.as_secs_f64() / rounds_done as f64,
        saved_bytes: swapped,
        throughput: Some(with / alone.max(1.0)),
        f1,
        wss_error: wss,
        note: format!("alone {:.1} M accesses/s", alone / 1e6),
    };
    Ok((row, elapsed))
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1).map(str::trim))
        .unwrap_or("unknown CPU")
        .to_string();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mem = etmemd::engine::procinfo::host_memory();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let probes: Vec<String> = damon_core::ops::select::check_all(&Default::default(), None)
        .into_iter()
        .map(|s| format!("{} {}", s.kind, if s.availability.is_ok() { "yes" } else { "no" }))
        .collect();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{model}, {cpus} vCPUs, {:.1} GiB RAM, Linux {}, one NUMA node; probes: {} (refault needs swap: \
         the bench's zram counts); swap: zram lzo-rle created by the bench; load average at start {}",
        mem.total_bytes as f64 / GIB,
        kernel.trim(),
        probes.join(", "),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

fn table(rows: &[Row], out: &mut String) {
    let _ = writeln!(
        out,
        "| size | engine | round × measured | checked / round | CPU s / round | CPU s / GiB / round | CPU share of a core | memory saved | throughput | hot-set F1 | WSS error |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} s × {} | {:.0} | {:.4} | {:.4} | {:.2} % | {} ({:.0} %) | {} | {:.3} | {:.1} % |",
            r.size,
            r.engine,
            r.round_s,
            r.rounds,
            r.checked_per_round,
            r.cpu_s_per_round,
            r.cpu_per_gib_round(),
            r.cpu_share() * 100.0,
            size_name(r.saved_bytes),
            r.saved_bytes as f64 * 100.0 / r.size_bytes as f64,
            r.throughput.map_or("—".into(), |t| format!("{:.1} %", t * 100.0)),
            r.f1,
            r.wss_error * 100.0
        );
    }
}

/// What the real rows say, in numbers: how each engine's cost per round
/// grows with memory, and what each costs per second of monitoring.
fn summary(rows: &[Row]) -> String {
    let of = |prefix: &str| -> Vec<&Row> { rows.iter().filter(|r| r.engine.starts_with(prefix)).collect() };
    let growth = |rs: &[&Row]| -> Option<(f64, f64)> {
        let (a, b) = (rs.first()?, rs.last()?);
        Some((b.size_bytes as f64 / a.size_bytes as f64, b.cpu_s_per_round / a.cpu_s_per_round.max(1e-9)))
    };
    let list =
        |rs: &[&Row], f: &dyn Fn(&Row) -> String| rs.iter().map(|r| f(r)).collect::<Vec<_>>().join(", ");
    let (page, region) = (of("page"), of("region"));
    let mut out = String::new();
    if let (Some((size_x, page_x)), Some((_, region_x))) = (growth(&page), growth(&region)) {
        let _ = write!(
            out,
            "From the smallest to the largest real size (memory x{size_x:.0}), CPU per round grew x{page_x:.1} \
             for the page scan and x{region_x:.1} for the region sampling. "
        );
    }
    let mean_share = |rs: &[&Row]| rs.iter().map(|r| r.cpu_share()).sum::<f64>() / rs.len().max(1) as f64;
    let per_second = if mean_share(&region) > mean_share(&page) {
        "per second of monitoring the region engine costs more here: it samples every 5 ms with the refault \
         probe (a pageout and a pagemap read per sampled page), while a slide round scans once per loop * \
         sleep + interval"
    } else {
        "per second of monitoring the region engine costs less too"
    };
    let _ = write!(
        out,
        "CPU per GiB per round: page {}; region {} (page / region: {:.0}x). CPU share of a core over the \
         same minutes: page {}; region {}: {per_second}.",
        list(&page, &|r| format!("{:.3} s", r.cpu_per_gib_round())),
        list(&region, &|r| format!("{:.4} s", r.cpu_per_gib_round())),
        page.iter().map(|r| r.cpu_per_gib_round()).sum::<f64>()
            / region.iter().map(|r| r.cpu_per_gib_round()).sum::<f64>().max(1e-9),
        list(&page, &|r| format!("{:.1} %", r.cpu_share() * 100.0)),
        list(&region, &|r| format!("{:.1} %", r.cpu_share() * 100.0)),
    );
    out
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut report = String::new();
    let _ = writeln!(report, "# Page scan vs region scan\n");
    let _ = writeln!(report, "Machine: {}.\n", machine());
    let _ = writeln!(
        report,
        "Generated by `cargo run --release -p perf --bin bench-page-vs-region`. The page engine is etmem's \
         slide scan (every page of every eligible VMA, every scan); the region engine is DAMON's sampling \
         (one page per region per 5 ms sample, 100 ms aggregations, 10..1000 regions). A round is one slide \
         round (loop scans + interval) or one DAMON aggregation. *CPU share* is CPU per round over the \
         round's length. *Memory saved*: simulated, what the policy would page out per round (page: score < T; \
         region: no access for 1 s); real, the child's swap at the end. *Throughput*: the child's accesses per \
         second while monitored, relative to the same child running alone (mean of 3 s before and 3 s after). *F1 / WSS error*: the estimated \
         working set (page: score >= T; region: accessed regions) against the ground truth; for the real rows \
         the mean over every snapshot of the measured window.\n"
    );
    if !args.real_only {
        let mut rows = Vec::new();
        for &g in &args.sim_gib {
            eprintln!("simulated {g} GiB ...");
            let (p, r) = simulated(&args, g)?;
            rows.push(p);
            rows.push(r);
        }
        let _ = writeln!(
            report,
            "## Simulated (static hot/cold: 10 % hot, per-tick access probability 0.8 hot, 0.001 cold; 5 ms ticks)\n\n\
             Page engine: loop 3, sleep 100 ms, interval 1 s, T = 2, a simulated probe that sees reads (score \
             1 per scan). The simulated probe's own time is left out: the page engine's column is what it costs \
             beyond the probe, which is O(pages) too; the real OS probe cost per page is measured below.\n"
        );
        table(&rows, &mut report);
        let _ = writeln!(report);
        for r in &rows {
            let _ = writeln!(report, "- {} {}: {}", r.engine, r.size, r.note);
        }
        let _ = writeln!(report);
    }
    if !args.sim_only {
        if let Some(why) = swap_backends::zram::unavailable_reason() {
            bail!("the real part needs zram: {why} (use --sim-only)");
        }
        let mut rows = Vec::new();
        let mut log = String::new();
        for &mib in &args.real_mib {
            let bytes = mib << 20;
            // The refault page scan has the whole resident set out at each scan.
            let mut dev = ZramGuard::create(bytes + bytes / 2 + (64 << 20))?;
            eprintln!("real {} page engine ...", size_name(bytes));
            let (row, took) = real_engine("slide", bytes, args.real_rounds, Duration::ZERO, &mut log)?;
            rows.push(row);
            eprintln!("real {} region engine ...", size_name(bytes));
            rows.push(real_engine("region", bytes, args.real_rounds, took, &mut log)?.0);
            dev.remove()?;
        }
        let _ = writeln!(
            report,
            "## Real (etmem-workload children, 10 % hot random reads, the rest written once; refault probe)\n\n\
             Page engine: etmem's slide example timing (loop 1, sleep 1 s, interval 1 s, T = 1). Region engine: \
             DAMON defaults, cold after 1 s without access, pageout. Measured in the steady state, after a \
             warm-up in which the cold memory went out (one page round; the region engine until 80 % of the \
             cold memory is out), the region engine for as long as the measured page rounds took. CPU is the \
             bench process's CPU time (every engine thread, including the probe's and the policy's \
             process_madvise calls). The host was shared with other jobs: round lengths, and throughput most \
             of all, carry their noise.\n"
        );
        table(&rows, &mut report);
        let _ = writeln!(report, "\n{log}");
        let _ = writeln!(report, "{}", summary(&rows));
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(&args.out, &report).with_context(|| format!("write {}", args.out.display()))?;
    print!("{report}");
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
