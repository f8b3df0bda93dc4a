//! bench-pageout: pageout throughput through etmemd against raw
//! `process_madvise(MADV_PAGEOUT)` on the same pages in the same run, zram's
//! own single-core rate for context, and the workload's throughput with 90 %
//! of its memory cold and swapped out.
//!
//! Each run starts an `etmem-workload` child (default 2 GiB, 10 % hot) and
//! pages its cold 90 % out twice, in alternating order:
//! - raw: the benchmark creates a zram device and calls process_madvise over
//!   the cold region in big iovec batches, timing the calls (wall and thread
//!   CPU) and the VmSwap growth;
//! - daemon: an embedded etmemd (the etmemd library, same requests as
//!   `etmem`) runs a project whose policy pages out everything cold
//!   (`cold_min_age` small, no quota) to a zram device the project creates;
//!   the pageout phase is found in VmSwap sampled every 10 ms (see
//!   `pageout_phase`) and its CPU time is the engine's `action_cpu_s`.
//!
//! Between the two, the device is removed (swapoff brings every page back),
//! so both start from the same resident pages.
//!
//! Needs root and zram. Cleans up on any exit but SIGKILL (zram guards, the
//! embedded daemon's projects, the workload child are all dropped).
//!
//! `cargo run --release -p perf --bin bench-pageout [-- --runs 3 --size 2G]`

use anyhow::{Context, Result, bail};
use clap::Parser;
use damon_core::ops::sys::{self as dsys, IOV_MAX, MADV_PAGEOUT};
use perf::bench::procfs::{proc_status, self_swap_bytes};
use perf::bench::stats::MIB;
use perf::bench::sys::{AnonBuffer, thread_cpu_time};
use perf::bench::window::{self, Window};
use perf::bench::{self, EmbeddedDaemon, Machine, human_bytes, median, min_max};
use perf::workload::units::parse_size_bytes;
use perf::workload::{Child, SpawnOptions};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use swap_backends::ZramSwap;

#[derive(Debug, Parser)]
#[command(about = "Pageout throughput: etmemd vs raw process_madvise, zram's single-core rate")]
struct Args {
    /// Workload size (hot + cold).
    #[arg(long, default_value = "2G")]
    size: String,
    /// Hot share of the workload (the rest is cold).
    #[arg(long, default_value = "10%")]
    hot: String,
    /// Runs (each pages the cold memory out raw and through the daemon; the
    /// order alternates, so an even count gives each path the lead equally often).
    #[arg(long, default_value_t = 4)]
    runs: usize,
    /// Seconds of each workload throughput window.
    #[arg(long, default_value_t = 5)]
    window_s: u64,
    /// zram compressor (both paths).
    #[arg(long, default_value = "lzo-rle")]
    compressor: String,
    /// The daemon's cold_min_age.
    #[arg(long, default_value = "2s")]
    cold_min_age: String,
    #[arg(long, default_value = "5ms")]
    sample_interval: String,
    #[arg(long, default_value = "100ms")]
    aggr_interval: String,
    #[arg(long, default_value_t = 1000)]
    max_nr_regions: u32,
    /// Raw path: bytes per iovec, KiB.
    #[arg(long, default_value_t = 2048)]
    iov_kib: u64,
    /// Raw path: iovecs per process_madvise call (at most 1024).
    #[arg(long, default_value_t = 512)]
    iovs_per_call: usize,
    /// Longest wait for the daemon to page the cold memory out, seconds.
    #[arg(long, default_value_t = 180)]
    timeout_s: u64,
    /// zram single-core rate: bytes paged out per measurement, MiB.
    #[arg(long, default_value_t = 1024)]
    zram_rate_mib: u64,
    /// zram single-core rate: runs per content and compressor.
    #[arg(long, default_value_t = 3)]
    zram_rate_runs: usize,
    /// Compressors for the zram rate table (those the kernel offers).
    #[arg(long, value_delimiter = ',', default_values_t = vec!["lzo-rle".to_string(), "lz4".to_string()])]
    zram_rate_compressors: Vec<String>,
    /// Workload access threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print the engine's regions (damo raw form) to stderr every 500 ms of
    /// the daemon phase, to see how the policy's pageout unfolds.
    #[arg(long)]
    trace_regions: bool,
}

/// swapon priority of every device here: the highest. Linux 6.18's swap
/// allocator still lets a CPU keep filling the cluster it last used on
/// another (lower priority) device, so while another program has swap on,
/// part of a pageout may land there; such pages stay swapped when our
/// device is removed and are faulted back in before the next phase.
const PRIORITY: i32 = swap_backends::zram::MAX_SWAP_PRIORITY;
/// Swapped bytes of the child that still count as "everything resident".
const RESIDUE_BYTES: u64 = 1 << 20;

/// After our device is gone: the child's pages still swapped (on a device
/// not ours) are faulted back in by the workload's `verify` (which reads every
/// byte; zram frees the swap entry of a page read back). Returns the bytes
/// that were still swapped.
fn bring_back(child: &mut Child) -> Result<u64> {
    let pid = child.pid();
    let left = proc_status(pid)?.vm_swap_bytes;
    if left > RESIDUE_BYTES {
        let v = child.verify().context("verify (faults the pages back in)")?;
        if !v.ok {
            bail!("the workload's data changed: {} bad bytes", v.mismatches);
        }
        let still = proc_status(pid)?.vm_swap_bytes;
        if still > RESIDUE_BYTES {
            bail!("{} of the workload stay swapped after reading them back", human_bytes(still));
        }
    }
    Ok(left)
}
/// VmSwap polling period during the daemon's pageout.
const POLL: Duration = Duration::from_millis(10);
/// The policy's pageout starts where VmSwap grows by `STEEP_BYTES` within
/// `STEEP_WINDOW_S` (80 MiB/s sustained over 100 ms): well above what the
/// refault probe's one-page samples add (a few MiB/s here), well below any
/// pageout rate, even on a loaded machine.
const STEEP_BYTES: u64 = 8 << 20;
const STEEP_WINDOW_S: f64 = 0.1;
/// Growth rate (bytes/s) above which a step belongs to the pageout: 20 MiB/s.
const SLOW_RATE: f64 = 20.0 * 1024.0 * 1024.0;

fn skip_reason() -> Option<String> {
    if !swap_backends::sys::is_root() {
        return Some("needs root (process_madvise on another process, zram)".into());
    }
    swap_backends::zram::unavailable_reason()
}

fn zram_backend(size_bytes: u64, compressor: &str) -> conf::ZramBackend {
    conf::ZramBackend {
        size_bytes,
        compressor: compressor.to_string(),
        priority: PRIORITY,
        mem_limit_bytes: None,
    }
}

/// `(start, len)` pieces of at most `piece` bytes covering `ranges`.
fn iovecs(ranges: &[(u64, u64)], piece: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(start, len) in ranges {
        let mut s = start;
        while s < start + len {
            let l = (start + len - s).min(piece);
            out.push((s, l));
            s += l;
        }
    }
    out
}

/// Raw pageout: process_madvise over `iovs` in batches; (bytes advised, wall, thread CPU).
fn raw_madvise(pidfd: &OwnedFd, iovs: &[(u64, u64)], per_call: usize) -> Result<(u64, Duration, Duration)> {
    let t0 = Instant::now();
    let c0 = thread_cpu_time();
    let mut advised = 0u64;
    for batch in iovs.chunks(per_call.clamp(1, IOV_MAX)) {
        let want: u64 = batch.iter().map(|x| x.1).sum();
        let done = dsys::process_madvise(pidfd.as_fd(), batch, MADV_PAGEOUT).context("process_madvise")?;
        advised += done as u64;
        if (done as u64) < want {
            bail!("process_madvise advised {done} of {want} bytes");
        }
    }
    Ok((advised, t0.elapsed(), thread_cpu_time().saturating_sub(c0)))
}

/// Polls `read` every 10 ms until it stops changing for 300 ms; returns the last value.
fn settle(mut read: impl FnMut() -> Result<u64>) -> Result<u64> {
    let mut last = read()?;
    let mut since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while since.elapsed() < Duration::from_millis(300) && Instant::now() < deadline {
        std::thread::sleep(POLL);
        let v = read()?;
        if v != last {
            last = v;
            since = Instant::now();
        }
    }
    Ok(last)
}

// ---------------------------------------------------------------- zram rate

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    /// Each 8-byte word holds a random byte value: compresses about as well
    /// as typical anonymous memory (the ratio is measured and shown).
    Compressible,
    /// Random words, like the workload's checkable content: zram stores such
    /// pages uncompressed after trying.
    Random,
}

impl Content {
    fn name(self) -> &'static str {
        match self {
            Content::Compressible => "compressible (random 8-bit values in 64-bit words)",
            Content::Random => "incompressible (random 64-bit words)",
        }
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Debug, Clone, Copy)]
struct RateRun {
    moved_bytes: u64,
    wall: Duration,
    cpu: Duration,
    ratio: Option<f64>,
}

fn zram_rate_once(content: Content, compressor: &str, mib: u64, seed: u64) -> Result<RateRun> {
    let bytes = mib << 20;
    let zram = ZramSwap::create(&zram_backend(bytes + (64 << 20), compressor), None)
        .context("cannot create a zram device")?;
    let mut buf = AnonBuffer::new(bytes as usize).context("cannot map the buffer")?;
    for (i, w) in buf.words_mut().iter_mut().enumerate() {
        let r = splitmix64(seed ^ i as u64);
        *w = match content {
            Content::Compressible => r & 0xff,
            // Never zero: zram stores same-filled pages without compressing.
            Content::Random => r | 1,
        };
    }
    let pidfd = dsys::pidfd_open(std::process::id()).context("pidfd_open(self)")?;
    let swap0 = self_swap_bytes()?;
    let iovs = iovecs(&[(buf.addr(), buf.len_bytes() as u64)], 2 << 20);
    let (_, wall, cpu) = raw_madvise(&pidfd, &iovs, 512)?;
    let swap1 = settle(|| Ok(self_swap_bytes()?))?;
    let ratio = zram.stat().ok().and_then(|s| s.mm.compression_ratio());
    drop(buf);
    zram.teardown().context("zram teardown")?;
    Ok(RateRun { moved_bytes: swap1.saturating_sub(swap0), wall, cpu, ratio })
}

/// The compressors zram offers, from a device we create and remove.
fn offered_compressors() -> Result<String> {
    let zram = ZramSwap::create(&zram_backend(64 << 20, ""), None).context("cannot create a zram device")?;
    let text = std::fs::read_to_string(swap_backends::zram::sys_dir(zram.index()).join("comp_algorithm"))
        .unwrap_or_default();
    zram.teardown().context("zram teardown")?;
    Ok(text.trim().to_string())
}

// ---------------------------------------------------------------- main runs

/// One pageout of the cold memory, by either path.
#[derive(Debug, Clone, Copy, Default)]
struct Pageout {
    /// VmSwap growth over the pageout phase.
    moved_bytes: u64,
    /// Bytes the kernel accepted MADV_PAGEOUT for.
    advised_bytes: u64,
    wall: Duration,
    cpu: Duration,
    /// Daemon: aggregations the engine published from just before the phase
    /// to just after it (1: one aggregation's plan paged everything out).
    aggregations: u64,
    /// The child's VmSwap after our device was removed: pages that went to
    /// another program's swap device (faulted back in by `bring_back`).
    swap_left_bytes: u64,
    /// Daemon: VmSwap the refault probe's samples added before the phase.
    probe_swapped_bytes: u64,
    /// Daemon: from project start to the phase's start.
    classify_wait: Duration,
    /// The workload right before the pageout (all resident, no engine).
    before: Window,
    /// Right after it (cold memory swapped; the daemon's project still running).
    after: Window,
    /// After the device was removed again (all resident, no engine): with
    /// `before` it brackets `after`, so a drift of the machine's load cancels.
    restored: Window,
}

impl Pageout {
    /// after / mean(before, restored).
    fn throughput_ratio(&self) -> f64 {
        self.after.accesses_per_s / ((self.before.accesses_per_s + self.restored.accesses_per_s) / 2.0)
    }

    fn mib_s_wall(&self) -> f64 {
        self.moved_bytes as f64 / MIB / self.wall.as_secs_f64().max(1e-9)
    }
    fn mib_s_cpu(&self) -> f64 {
        self.moved_bytes as f64 / MIB / self.cpu.as_secs_f64().max(1e-9)
    }
}

/// The first pageout after the workload filled its memory costs up to twice
/// the CPU per byte of any later one (seen in every run on this kernel; the
/// cause is in the kernel, not in either path). So each run first pages the
/// cold memory out once, unmeasured, and back in: both measured phases are
/// then later pageouts. Returns that first pageout's CPU rate, MiB/s, to show it.
fn warm_up(args: &Args, child: &mut Child) -> Result<f64> {
    let pid = child.pid();
    let zram = ZramSwap::create(&zram_backend(child.total_bytes() + (256 << 20), &args.compressor), None)
        .context("cannot create a zram device")?;
    let pidfd = dsys::pidfd_open(pid).context("pidfd_open")?;
    let cold: Vec<(u64, u64)> = child.cold_ranges().iter().map(|r| (r.start.0, r.len())).collect();
    let swap0 = proc_status(pid)?.vm_swap_bytes;
    let (_, _, cpu) = raw_madvise(&pidfd, &iovecs(&cold, args.iov_kib << 10), args.iovs_per_call)?;
    let swap1 = settle(|| Ok(proc_status(pid)?.vm_swap_bytes))?;
    zram.teardown().context("zram teardown (swapoff brings the pages back)")?;
    bring_back(child)?;
    Ok(swap1.saturating_sub(swap0) as f64 / MIB / cpu.as_secs_f64().max(1e-9))
}

fn raw_phase(args: &Args, child: &mut Child, flag: Option<&AtomicBool>) -> Result<Pageout> {
    let pid = child.pid();
    let zram = ZramSwap::create(&zram_backend(child.total_bytes() + (256 << 20), &args.compressor), None)
        .context("cannot create a zram device")?;
    let before = window::measure(child, Duration::from_secs(args.window_s), flag)?;
    let pidfd = dsys::pidfd_open(pid).context("pidfd_open")?;
    let cold: Vec<(u64, u64)> = child.cold_ranges().iter().map(|r| (r.start.0, r.len())).collect();
    let iovs = iovecs(&cold, args.iov_kib << 10);
    let swap0 = proc_status(pid)?.vm_swap_bytes;
    let (advised, wall, cpu) = raw_madvise(&pidfd, &iovs, args.iovs_per_call)?;
    let swap1 = settle(|| Ok(proc_status(pid)?.vm_swap_bytes))?;
    let after = window::measure(child, Duration::from_secs(args.window_s), flag)?;
    zram.teardown().context("zram teardown (swapoff brings the pages back)")?;
    let swap_left_bytes = bring_back(child)?;
    let restored = window::measure(child, Duration::from_secs(args.window_s), flag)?;
    eprintln!(
        "  raw: VmSwap {} -> {} in {:.2} s ({:.2} s CPU); {} left after swapoff",
        human_bytes(swap0),
        human_bytes(swap1),
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        human_bytes(swap_left_bytes)
    );
    Ok(Pageout {
        moved_bytes: swap1.saturating_sub(swap0),
        advised_bytes: advised,
        wall,
        cpu,
        swap_left_bytes,
        before,
        after,
        restored,
        ..Pageout::default()
    })
}

fn project_toml(args: &Args, name: &str, pid: u32, zram_bytes: u64) -> String {
    format!(
        r#"[project]
name = "{name}"

[engine]
kind = "region"
probe = "refault"
sample_interval = "{si}"
aggr_interval = "{ai}"
max_nr_regions = {max}

[[task]]
name = "wl"
pid = {pid}

[policy]
hot_min_accesses = 1
cold_max_accesses = 0
cold_min_age = "{age}"
cold_action = "pageout"

[[backend]]
kind = "zram"
size = "{mib}M"
compressor = "{comp}"
priority = {PRIORITY}
"#,
        si = args.sample_interval,
        ai = args.aggr_interval,
        max = args.max_nr_regions,
        age = args.cold_min_age,
        mib = zram_bytes >> 20,
        comp = args.compressor,
    )
}

/// The policy's pageout phase in a VmSwap trace `(seconds, bytes)`: the
/// first sample from which VmSwap grows by `STEEP_BYTES` within
/// `STEEP_WINDOW_S` is found, then the phase starts at the first sample from
/// there on whose next step grows faster than `SLOW_RATE` (the probe's
/// trickle stays below it); it ends when VmSwap first reaches 99 % of the
/// way from there to its final level. Returns (start index, end index).
fn pageout_phase(trace: &[(f64, u64)]) -> Option<(usize, usize)> {
    let steep = |i: usize| -> bool {
        trace[i + 1..]
            .iter()
            .take_while(|x| x.0 - trace[i].0 <= STEEP_WINDOW_S + 1e-9)
            .any(|x| x.1.saturating_sub(trace[i].1) >= STEEP_BYTES)
    };
    let rate = |k: usize| -> f64 {
        let (a, b) = (trace[k], trace[k + 1]);
        b.1.saturating_sub(a.1) as f64 / (b.0 - a.0).max(1e-6)
    };
    let first = (0..trace.len().saturating_sub(1)).find(|&i| steep(i))?;
    let start = (first..trace.len() - 1).find(|&k| rate(k) >= SLOW_RATE)?;
    let s = trace[start].1;
    let f = trace.last()?.1;
    let target = s + f.saturating_sub(s) * 99 / 100;
    let end = start + trace[start..].iter().position(|x| x.1 >= target)?;
    Some((start, end))
}

fn daemon_phase(
    args: &Args,
    d: &EmbeddedDaemon,
    project: &str,
    child: &mut Child,
    flag: Option<&AtomicBool>,
) -> Result<Pageout> {
    let pid = child.pid();
    let cold_bytes: u64 = child.cold_ranges().iter().map(|r| r.len()).sum();
    let before = window::measure(child, Duration::from_secs(args.window_s), flag)?;
    let swap_before_start = proc_status(pid)?.vm_swap_bytes;
    d.start(project)?;
    let result = (|| -> Result<Pageout> {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(args.timeout_s);
        let mut trace: Vec<(f64, u64)> = Vec::new();
        // (seconds, paged_out_bytes, action_cpu_s, aggregations), read at every poll.
        let mut acts: Vec<(f64, u64, f64, u64)> = Vec::new();
        let mut last_growth = Instant::now();
        let mut polls = 0u64;
        loop {
            bench::check(flag)?;
            let swap = proc_status(pid)?.vm_swap_bytes;
            let now = Instant::now();
            if trace.last().is_some_and(|l| swap > l.1 + (1 << 20)) {
                last_growth = now;
            }
            trace.push((now.duration_since(t0).as_secs_f64(), swap));
            let s = d.task_stats(project, "wl")?.context("task wl does not run")?;
            acts.push((
                now.duration_since(t0).as_secs_f64(),
                s.paged_out_bytes.unwrap_or(0),
                s.action_cpu_s.unwrap_or(0.0),
                s.aggregations.unwrap_or(0),
            ));
            if args.trace_regions && polls.is_multiple_of(50) {
                let text = d.engine_command(project, "region", "regions", Some("wl"))?;
                eprintln!(
                    "t={:.2}s VmSwap {}\n{text}",
                    now.duration_since(t0).as_secs_f64(),
                    human_bytes(swap)
                );
            }
            polls += 1;
            // Done when VmSwap is near the cold size and stopped growing, or
            // stopped growing for long (what is left is not classified cold;
            // on a loaded machine plans can be seconds apart).
            let acted = acts.last().is_some_and(|a| a.1 > 0);
            let idle = last_growth.elapsed();
            let near_all = swap.saturating_sub(swap_before_start) >= cold_bytes / 100 * 97;
            if acted && ((near_all && idle >= Duration::from_secs(1)) || idle >= Duration::from_secs(20)) {
                break;
            }
            if now > deadline {
                bail!(
                    "the daemon did not finish paging out within {} s (VmSwap {})",
                    args.timeout_s,
                    human_bytes(swap)
                );
            }
            std::thread::sleep(POLL);
        }
        let s = d.task_stats(project, "wl")?.context("task wl does not run")?;
        let (cpu_end, advised_end) = (s.action_cpu_s.unwrap_or(0.0), s.paged_out_bytes.unwrap_or(0));
        let (i, j) = pageout_phase(&trace).context("no pageout phase in the VmSwap trace")?;
        // The action's counters before the phase: the last reading before it started.
        let (_, advised0, cpu0, aggr0) =
            acts.iter().rev().find(|a| a.0 <= trace[i].0).copied().unwrap_or((0.0, 0, 0.0, 0));
        // Aggregations up to the first reading after the phase's end (a plan's
        // figures are published when it is done).
        let aggr1 = acts
            .iter()
            .find(|a| a.0 >= trace[j].0 && a.1 > advised0)
            .map_or(s.aggregations.unwrap_or(0), |a| a.3);
        if args.trace_regions {
            let head: Vec<String> =
                trace.iter().take(30).map(|x| format!("{:.3}s:{}", x.0, human_bytes(x.1))).collect();
            eprintln!("  trace head: {}", head.join(" "));
        }
        eprintln!(
            "  daemon: VmSwap {} at project start, {} at {:.2} s (phase start), {} at {:.2} s (phase end), {} final; {} aggregation(s)",
            human_bytes(swap_before_start),
            human_bytes(trace[i].1),
            trace[i].0,
            human_bytes(trace[j].1),
            trace[j].0,
            human_bytes(trace.last().map_or(0, |x| x.1)),
            aggr1.saturating_sub(aggr0)
        );
        let after = window::measure(child, Duration::from_secs(args.window_s), flag)?;
        Ok(Pageout {
            moved_bytes: trace[j].1 - trace[i].1,
            advised_bytes: advised_end - advised0,
            wall: Duration::from_secs_f64(trace[j].0 - trace[i].0),
            cpu: Duration::from_secs_f64((cpu_end - cpu0).max(0.0)),
            aggregations: aggr1.saturating_sub(aggr0),
            swap_left_bytes: 0,
            probe_swapped_bytes: trace[i].1.saturating_sub(swap_before_start),
            classify_wait: Duration::from_secs_f64(trace[i].0),
            before,
            after,
            restored: Window::default(),
        })
    })();
    let stopped = d.stop(project);
    let mut r = result?;
    stopped.context("project stop (swapoff brings the pages back)")?;
    r.swap_left_bytes = bring_back(child)?;
    r.restored = window::measure(child, Duration::from_secs(args.window_s), flag)?;
    Ok(r)
}

#[derive(Debug, Clone, Copy)]
struct Run {
    raw_first: bool,
    /// The unmeasured first pageout's CPU rate, MiB/s (see `warm_up`).
    warm_up_mib_s_cpu: f64,
    cold_bytes: u64,
    raw: Pageout,
    daemon: Pageout,
    verified: bool,
}

fn one_run(args: &Args, d: &EmbeddedDaemon, run: usize, flag: Option<&AtomicBool>) -> Result<Run> {
    let threads = args.threads.to_string();
    let opts = SpawnOptions { inherit_stderr: true, ..SpawnOptions::default() };
    let mut child = Child::spawn_with(
        &opts,
        [
            "--size",
            args.size.as_str(),
            "--hot",
            args.hot.as_str(),
            "--threads",
            threads.as_str(),
            "--nohugepage",
            "--quiet",
        ],
    )
    .context("cannot start etmem-workload")?;
    let cold_bytes: u64 = child.cold_ranges().iter().map(|r| r.len()).sum();
    let project = format!("pageout-{run}");
    d.add_config(
        &format!("{project}.toml"),
        &project_toml(args, &project, child.pid(), child.total_bytes() + (256 << 20)),
    )?;
    let warm_up_mib_s_cpu = warm_up(args, &mut child)?;
    eprintln!("  first (unmeasured) pageout: {warm_up_mib_s_cpu:.0} MiB/s CPU");
    let raw_first = run.is_multiple_of(2);
    let result = (|| -> Result<(Pageout, Pageout)> {
        if raw_first {
            let raw = raw_phase(args, &mut child, flag)?;
            Ok((raw, daemon_phase(args, d, &project, &mut child, flag)?))
        } else {
            let daemon = daemon_phase(args, d, &project, &mut child, flag)?;
            Ok((raw_phase(args, &mut child, flag)?, daemon))
        }
    })();
    let deleted = d.delete(&project);
    let (raw, daemon) = result?;
    deleted?;
    let verified = child.verify().map(|v| v.ok).unwrap_or(false);
    let r = Run { raw_first, warm_up_mib_s_cpu, cold_bytes, raw, daemon, verified };
    eprintln!(
        "  run {}: raw {:.0} MiB/s ({:.0} MiB/s CPU), daemon {:.0} MiB/s ({:.0} MiB/s CPU)",
        run + 1,
        raw.mib_s_wall(),
        raw.mib_s_cpu(),
        daemon.mib_s_wall(),
        daemon.mib_s_cpu()
    );
    Ok(r)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.runs == 0 || args.window_s == 0 {
        bail!("--runs and --window-s must be non-zero");
    }
    parse_size_bytes(&args.size).map_err(|e| anyhow::anyhow!("--size {}: {e}", args.size))?;
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return Ok(());
    }
    let flag = bench::interrupt_flag();
    let mut machine = Machine::describe();
    let started = Instant::now();
    let offered = offered_compressors()?;
    machine.zram_compressors = Some(offered.clone());
    let offered: Vec<String> =
        offered.split_whitespace().map(|w| w.trim_matches(['[', ']']).to_string()).collect();

    eprintln!("== zram single-core rate");
    let mut rates = Vec::new();
    for content in [Content::Compressible, Content::Random] {
        for comp in args.zram_rate_compressors.iter().filter(|c| offered.contains(c)) {
            let mut v = Vec::new();
            for r in 0..args.zram_rate_runs {
                bench::check(flag)?;
                v.push(zram_rate_once(content, comp, args.zram_rate_mib, r as u64 + 1)?);
            }
            rates.push((content, comp.clone(), v));
        }
    }

    let d = EmbeddedDaemon::new()?;
    let mut runs = Vec::new();
    for run in 0..args.runs {
        eprintln!("== run {} of {}", run + 1, args.runs);
        runs.push(one_run(&args, &d, run, flag)?);
    }
    drop(d);
    print_report(&args, &machine, &rates, &runs, started.elapsed());
    Ok(())
}

fn print_report(
    args: &Args,
    machine: &Machine,
    rates: &[(Content, String, Vec<RateRun>)],
    runs: &[Run],
    took: Duration,
) {
    println!("# Pageout throughput: etmemd against raw process_madvise\n");
    println!("{}", machine.markdown());
    println!(
        "Run time {:.0} s; load average at end {}; THP at end `{}`.\n",
        took.as_secs_f64(),
        bench::machine::loadavg_now(),
        bench::machine::thp_now()
    );

    println!("## zram's own single-core rate\n");
    println!(
        "{} MiB of this process's own memory paged out with process_madvise(MADV_PAGEOUT) in 2 MiB \
         iovecs, 512 per call, into a fresh zram device, nothing else of ours running. zram \
         compresses synchronously in the calling thread, so this is what one core can push into zram \
         (wall and the calling thread's CPU time; the moved bytes are the VmSwap growth). Median \
         (range) of {} runs.\n",
        args.zram_rate_mib, args.zram_rate_runs
    );
    println!("| content | compressor | compression ratio | MiB/s (wall) | MiB/s (CPU) |");
    println!("|---|---|---|---|---|");
    for (content, comp, v) in rates {
        let wall: Vec<f64> =
            v.iter().map(|r| r.moved_bytes as f64 / MIB / r.wall.as_secs_f64().max(1e-9)).collect();
        let cpu: Vec<f64> =
            v.iter().map(|r| r.moved_bytes as f64 / MIB / r.cpu.as_secs_f64().max(1e-9)).collect();
        let ratio: Vec<f64> = v.iter().filter_map(|r| r.ratio).collect();
        println!(
            "| {} | {} | {:.2} | {} | {} |",
            content.name(),
            comp,
            median(&ratio),
            bench::stats::median_range(&wall, 0),
            bench::stats::median_range(&cpu, 0)
        );
    }

    println!("\n## Pageout through the daemon against raw process_madvise\n");
    println!(
        "Workload: `etmem-workload --size {} --hot {} --threads {} --nohugepage` (base pages \
         whatever the THP mode; cold region: random, \
         incompressible words, filled once). Both paths page out the same cold pages of the same \
         process in each run; between them the zram device is removed, and swapoff brings every page \
         back; which path goes first alternates. Before both, each run pages the cold memory out and \
         back in once, unmeasured (`first pageout`): on this kernel the first pageout after the \
         workload filled its memory costs up to twice the CPU per byte of any later one, which would \
         otherwise favour whichever path goes second. Compressor {}.\n\n\
         - raw: process_madvise(MADV_PAGEOUT) over the cold region in {} KiB iovecs, {} per call; \
         wall time of the calls, CPU time of the calling thread; bytes = VmSwap growth.\n\
         - daemon: project with the region engine (refault probe, sample {}, aggregation {}, up to \
         {} regions) and a policy paging out everything cold (`cold_max_accesses = 0`, \
         `cold_min_age = \"{}\"`, no quota). The region engine needs a few seconds to classify \
         (`classify wait`); meanwhile its refault probe pages out the sampled cold pages one by one \
         (`probe pre-swapped`). The pageout phase is read from the child's VmSwap sampled every 10 ms: \
         it starts where VmSwap first grows by >= 8 MiB within 100 ms (80 MiB/s; the probe adds a few \
         MiB/s) and ends when VmSwap has covered 99 % of the way to its final level; bytes = VmSwap \
         growth over the phase; wall = its duration (+-10 ms at each end); CPU = the growth of the \
         engine's `action_cpu_s` (thread CPU time of its process_madvise calls) over the phase. \
         `aggrs` counts the aggregations the engine published from just before the phase to just \
         after it: the engine thread carries out a whole plan in one go (sampling waits), so 1 means \
         one plan paged everything out, more means regions turned cold over several aggregations.\n\n\
         Our devices have the highest swap priority, but Linux 6.18's swap allocator lets a CPU \
         keep filling the cluster it last used on another device, so while another program has \
         swap on, part of a pageout can land there (`elsewhere`: still swapped after our device was \
         removed). Those pages are faulted back in (the workload's verify reads every byte) before \
         the next phase, so each phase starts with everything resident. VmSwap counts them wherever \
         they went, and the compression work is the same, so the run still counts.\n",
        args.size,
        args.hot,
        args.threads,
        args.compressor,
        args.iov_kib,
        args.iovs_per_call,
        args.sample_interval,
        args.aggr_interval,
        args.max_nr_regions,
        args.cold_min_age
    );
    println!(
        "| run | first | cold bytes | raw moved | raw wall s | raw MiB/s wall | raw MiB/s CPU | daemon moved | daemon wall s | daemon MiB/s wall | daemon MiB/s CPU | aggrs | classify wait s | probe pre-swapped | ratio wall | ratio CPU | elsewhere raw / daemon | first pageout MiB/s CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut rw = Vec::new();
    let mut rc = Vec::new();
    for (k, r) in runs.iter().enumerate() {
        let ratio_wall = r.daemon.mib_s_wall() / r.raw.mib_s_wall();
        let ratio_cpu = r.daemon.mib_s_cpu() / r.raw.mib_s_cpu();
        rw.push(ratio_wall);
        rc.push(ratio_cpu);
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.0} | {:.0} | {} | {:.2} | {:.0} | {:.0} | {} | {:.1} | {} | {:.2} | {:.2} | {} / {} | {:.0} |",
            k + 1,
            if r.raw_first { "raw" } else { "daemon" },
            human_bytes(r.cold_bytes),
            human_bytes(r.raw.moved_bytes),
            r.raw.wall.as_secs_f64(),
            r.raw.mib_s_wall(),
            r.raw.mib_s_cpu(),
            human_bytes(r.daemon.moved_bytes),
            r.daemon.wall.as_secs_f64(),
            r.daemon.mib_s_wall(),
            r.daemon.mib_s_cpu(),
            r.daemon.aggregations,
            r.daemon.classify_wait.as_secs_f64(),
            human_bytes(r.daemon.probe_swapped_bytes),
            ratio_wall,
            ratio_cpu,
            human_bytes(r.raw.swap_left_bytes),
            human_bytes(r.daemon.swap_left_bytes),
            r.warm_up_mib_s_cpu
        );
    }
    let col = |f: &dyn Fn(&Run) -> f64| -> Vec<f64> { runs.iter().map(f).collect() };
    let (lo_w, hi_w) = min_max(&rw);
    let (lo_c, hi_c) = min_max(&rc);
    println!(
        "\nMedians: raw {:.0} MiB/s wall, {:.0} MiB/s CPU; daemon {:.0} MiB/s wall, {:.0} MiB/s CPU. \
         Ratio daemon / raw: wall {:.2} ({:.2}..{:.2}), CPU {:.2} ({:.2}..{:.2}); goal >= 0.9: {}.\n",
        median(&col(&|r| r.raw.mib_s_wall())),
        median(&col(&|r| r.raw.mib_s_cpu())),
        median(&col(&|r| r.daemon.mib_s_wall())),
        median(&col(&|r| r.daemon.mib_s_cpu())),
        median(&rw),
        lo_w,
        hi_w,
        median(&rc),
        lo_c,
        hi_c,
        if median(&rw) >= 0.9 { "met (wall)" } else { "NOT met (wall)" }
    );
    println!(
        "Bytes the kernel accepted MADV_PAGEOUT for in the phase (median): raw {}, daemon {}.\n",
        human_bytes(median(&col(&|r| r.raw.advised_bytes as f64)) as u64),
        human_bytes(median(&col(&|r| r.daemon.advised_bytes as f64)) as u64)
    );

    println!("## Workload throughput with its cold 90 % swapped out\n");
    println!(
        "Accesses per second of the workload (all to its hot 10 %) in {} s windows: right before \
         each pageout (everything resident, no engine), right after it (cold memory in zram) and \
         once more after the device was removed (everything resident again, no engine). After the \
         raw pageout nothing else runs; after the daemon's pageout its project keeps running, so the \
         refault probe's faults are included. Ratio = after / mean(before, restored), which cancels \
         a linear drift of the machine's load; per run, then the median.\n",
        args.window_s
    );
    println!(
        "| run | raw: before / after / restored | ratio | daemon: before / after (engine running) / restored | ratio | majflt/s after daemon | data verified |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (k, r) in runs.iter().enumerate() {
        println!(
            "| {} | {:.3e} / {:.3e} / {:.3e} | {:.3} | {:.3e} / {:.3e} / {:.3e} | {:.3} | {:.0} | {} |",
            k + 1,
            r.raw.before.accesses_per_s,
            r.raw.after.accesses_per_s,
            r.raw.restored.accesses_per_s,
            r.raw.throughput_ratio(),
            r.daemon.before.accesses_per_s,
            r.daemon.after.accesses_per_s,
            r.daemon.restored.accesses_per_s,
            r.daemon.throughput_ratio(),
            r.daemon.after.majflt_per_s,
            if r.verified { "yes" } else { "NO" }
        );
    }
    let raw_ratio = col(&|r| r.raw.throughput_ratio());
    let d_ratio = col(&|r| r.daemon.throughput_ratio());
    println!(
        "\nThroughput loss with 90 % cold and swapped (median): {:.1} % with nothing running after the \
         raw pageout, {:.1} % with the daemon's project still monitoring.",
        (1.0 - median(&raw_ratio)) * 100.0,
        (1.0 - median(&d_ratio)) * 100.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_starts_where_growth_outruns_the_probe_and_ends_at_99_percent() {
        let m = 1u64 << 20;
        // Probe trickle of 0.05 MiB per 10 ms (5 MiB/s) for 30 samples, a
        // slower first step of the pageout, the pageout, then flat.
        let mut levels: Vec<u64> = (0..30).map(|i| i * m / 20).collect();
        let t = levels[29];
        levels.extend([t + m / 2, t + 3 * m, t + 20 * m, t + 60 * m, t + 100 * m, t + 100 * m, t + 100 * m]);
        let trace: Vec<(f64, u64)> = levels.iter().enumerate().map(|(i, &s)| (i as f64 * 0.01, s)).collect();
        // Starts at index 29 (the step 29 -> 30 grows 50 MiB/s), ends at 34 (100 MiB of 100.5).
        assert_eq!(pageout_phase(&trace), Some((29, 34)));
        // The trickle alone is no pageout phase.
        assert_eq!(pageout_phase(&trace[..30]), None);
    }

    #[test]
    fn iovecs_cover_ranges_in_pieces() {
        assert_eq!(iovecs(&[(0, 5), (10, 2)], 2), vec![(0, 2), (2, 2), (4, 1), (10, 2)]);
    }
}
