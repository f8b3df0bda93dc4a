//! bench-thp: transparent huge pages three ways, like the etmem DAMON
//! presentation's orig / thp / ethp table (issue 5). An `etmem-workload`
//! child reads at random over a hot set far larger than the TLB's reach
//! (1 GiB by default) next to a large cold area filled sparsely (one 4 KiB
//! page per 64 KiB: mapped but barely used). Three runs in one go:
//!
//! - **orig**: THP `madvise` (this host's setting), nothing acts;
//! - **thp**: THP `always` while the run lasts (the setting is restored
//!   right after, on every exit path: a drop guard, and SIGINT / SIGTERM
//!   only set a flag that unwinds to it; a second guard in the signal path
//!   is not needed because the handler never exits the process itself);
//! - **ethp**: THP `madvise`, etmemd's region engine (embedded, the same
//!   library code as the daemon) with `promote_thp` and `demote_thp`.
//!
//! Reported per mode: throughput (the workload's accesses per second of run
//! time over the window), the task's RSS and AnonHugePages, and the host's
//! MemTotal - MemFree (absolute, and its growth since just before the run).
//! Goal: ethp keeps at least 70 % of thp's throughput gain and adds at most
//! 2 % of memory over orig.
//!
//! Flipping THP to `always` changes it for every process of the machine,
//! and other benchmarks flip it too (the TPC-C harness): before each run the
//! benchmark waits while other benchmarks run (`tpcc`, `mariadbd`,
//! `bench-*`) unless `--force-shared` is given, and a run during which the
//! setting changed under it is run again.
//!
//! Needs root and zram (the refault probe of the ethp run pages its samples
//! out). Leaves no swap, device or process behind but on SIGKILL.
//!
//! `cargo run --release -p perf --bin bench-thp [-- --runs 3 --out perf/results/thp.md]`

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use etmemd::protocol::TaskStats;
use perf::bench::thp::{self, THP_ENABLED, ThpGuard};
use perf::bench::window::{self, Mark};
use perf::bench::{self, EmbeddedDaemon, Machine, human_bytes, median, min_max};
use perf::workload::{Child, SpawnOptions};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// THP `madvise`, no action.
    Orig,
    /// THP `always`.
    Thp,
    /// THP `madvise` with etmemd's promotion and demotion.
    Ethp,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Orig => "orig",
            Mode::Thp => "thp",
            Mode::Ethp => "ethp",
        }
    }
}

#[derive(Debug, Parser)]
#[command(about = "THP madvise vs always vs etmemd promotion + demotion (issue 5)")]
struct Args {
    /// Hot set, MiB (random reads all the time).
    #[arg(long, default_value_t = 1024)]
    hot_mib: u64,
    /// Cold area, MiB (filled once, sparsely, never read again).
    #[arg(long, default_value_t = 2048)]
    cold_mib: u64,
    /// One page of the cold area is filled per this many bytes.
    #[arg(long, default_value = "64K")]
    cold_fill_stride: String,
    /// Repetitions of the three runs (the order rotates each time); tables show medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Modes to run (all three by default).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![Mode::Orig, Mode::Thp, Mode::Ethp])]
    modes: Vec<Mode>,
    /// Seconds after the workload is ready before the window starts (ethp promotes meanwhile).
    #[arg(long, default_value_t = 20)]
    warmup_s: u64,
    /// Seconds of the measured window (long enough for the probe's hold on
    /// huge pages to expire and hot ones to be split and collapsed again).
    #[arg(long, default_value_t = 90)]
    window_s: u64,
    /// Workload access threads (the machine has few cores: one leaves room for the engine).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long, default_value = "20ms")]
    sample_interval: String,
    #[arg(long, default_value = "400ms")]
    aggr_interval: String,
    #[arg(long, default_value_t = 400)]
    max_nr_regions: u32,
    /// Hot this long before a 2 MiB unit is collapsed.
    #[arg(long, default_value = "2s")]
    thp_min_age: String,
    /// Idle this long before a huge page is split back.
    #[arg(long, default_value = "30s")]
    cold_min_age: String,
    /// Write the markdown report here (also printed).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Flip THP to `always` even while other benchmarks run on the machine.
    #[arg(long)]
    force_shared: bool,
    /// How long to wait for other benchmarks to finish before the `thp` run.
    #[arg(long, default_value_t = 3600)]
    wait_quiet_s: u64,
}

fn skip_reason() -> Option<String> {
    if !swap_backends::sys::is_root() {
        return Some(
            "needs root (THP setting, process_madvise on another process, pagemap PFNs, zram)".into(),
        );
    }
    if !Path::new(THP_ENABLED).exists() {
        return Some(format!("{THP_ENABLED} is missing: no transparent huge pages"));
    }
    swap_backends::zram::unavailable_reason()
}

/// THP `enabled` changed under a run (another process): the run is void.
#[derive(Debug, thiserror::Error)]
#[error("THP `enabled` is `{found}` during the {mode} run, which needs `{expected}`")]
struct ThpModeChanged {
    mode: &'static str,
    expected: &'static str,
    found: String,
}

fn thp_mode() -> String {
    thp::thp_mode().unwrap_or_else(|| "?".to_string())
}

/// Err when THP `enabled` is not what `mode` runs under.
fn check_thp_mode(mode: Mode) -> Result<(), ThpModeChanged> {
    let expected = if mode == Mode::Thp { "always" } else { "madvise" };
    let found = thp_mode();
    if found == expected { Ok(()) } else { Err(ThpModeChanged { mode: mode.name(), expected, found }) }
}

/// Other benchmarks running now (their numbers would change with THP `always`).
fn other_benchmarks() -> Vec<String> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else { continue };
        let comm = comm.trim();
        if comm == "tpcc" || comm == "mariadbd" || (comm.starts_with("bench-") && comm != "bench-thp") {
            found.push(format!("{comm} ({pid})"));
        }
    }
    found
}

fn wait_quiet(args: &Args, flag: Option<&AtomicBool>) -> Result<()> {
    if args.force_shared {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(args.wait_quiet_s);
    let mut said = false;
    loop {
        let others = other_benchmarks();
        if others.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "other benchmarks still run after {} s ({}); THP `always` would change their numbers \
                 (--force-shared to go ahead anyway)",
                args.wait_quiet_s,
                others.join(", ")
            );
        }
        if !said {
            eprintln!("  waiting for other benchmarks to end before THP `always`: {}", others.join(", "));
            said = true;
        }
        bench::sleep_checked(Duration::from_secs(5), flag)?;
    }
}

fn meminfo_kib(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// MemTotal - MemFree, bytes.
fn host_used_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo_kib(&text, "MemTotal").saturating_sub(meminfo_kib(&text, "MemFree")) * 1024
}

/// (VmRSS, AnonHugePages) of a process, bytes.
fn task_memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    (meminfo_kib(&status, "VmRSS") * 1024, meminfo_kib(&rollup, "AnonHugePages") * 1024)
}

fn project_toml(args: &Args, pid: u32) -> String {
    format!(
        r#"[project]
name = "ethp"

[engine]
kind = "region"
probe = "refault"
sample_interval = "{si}"
aggr_interval = "{ai}"
update_interval = "2s"
min_nr_regions = 10
max_nr_regions = {max}

[[task]]
name = "wl"
pid = {pid}

[policy]
hot_min_accesses = "5%"
cold_max_accesses = 0
cold_min_age = "{cold}"
thp_min_age = "{thp}"
promote_thp = true
demote_thp = true
cold_action = "none"

[[backend]]
kind = "zram"
size = "1G"
compressor = "lz4"
priority = 32767
"#,
        si = args.sample_interval,
        ai = args.aggr_interval,
        max = args.max_nr_regions,
        cold = args.cold_min_age,
        thp = args.thp_min_age,
    )
}

/// What the engine reported at the end of an ethp window.
#[derive(Debug, Clone, Default)]
struct EngineFigures {
    collapses: u64,
    demotions: u64,
    /// Seconds from the workload's ready line until 90 % of the hot set was huge.
    promoted_after_s: Option<f64>,
    monitor_cpu_s: f64,
    action_cpu_s: f64,
    lines: Vec<String>,
}

#[derive(Debug, Clone)]
struct RunResult {
    mode: Mode,
    accesses_per_s: f64,
    rss_bytes: u64,
    anon_huge_bytes: u64,
    /// Smallest share of the hot set backed by huge pages seen during the window.
    hot_huge_min: f64,
    /// Mean share over the window's samples.
    hot_huge_mean: f64,
    host_used_bytes: u64,
    host_used_growth_bytes: u64,
    engine: Option<EngineFigures>,
}

fn engine_figures(stats: &TaskStats, promoted_after_s: Option<f64>) -> EngineFigures {
    let mut lines = Vec::new();
    for key in ["thp_collapses", "thp_demotions", "thp_state", "probe_huge_pages", "probe_samples"] {
        if let Some(v) = stats.extra.get(key) {
            lines.push(format!("{key}: {v}"));
        }
    }
    EngineFigures {
        collapses: stats.collapses.unwrap_or(0),
        demotions: stats.demotions.unwrap_or(0),
        promoted_after_s,
        monitor_cpu_s: stats.monitor_cpu_s.unwrap_or(0.0),
        action_cpu_s: stats.action_cpu_s.unwrap_or(0.0),
        lines,
    }
}

fn run_one(args: &Args, mode: Mode, flag: Option<&AtomicBool>) -> Result<RunResult> {
    eprintln!("== {} run", mode.name());
    let hot_bytes = args.hot_mib * MIB;
    wait_quiet(args, flag)?;
    let used_before = host_used_bytes();
    // Guards drop in reverse order: the workload dies first, then the
    // daemon stops the project (removing its zram device), then THP is restored.
    let _thp = match mode {
        Mode::Thp => {
            let guard = ThpGuard::set("always").context("cannot set THP enabled = always")?;
            eprintln!("  THP enabled: {} -> always (restored when the run ends)", guard.previous());
            Some(guard)
        }
        _ => None,
    };
    check_thp_mode(mode)?;
    let daemon = if mode == Mode::Ethp { Some(EmbeddedDaemon::new()?) } else { None };
    let size = format!("{}M", args.hot_mib + args.cold_mib);
    let hot = format!("{}M", args.hot_mib);
    let threads = args.threads.to_string();
    let opts = SpawnOptions { inherit_stderr: true, ..SpawnOptions::default() };
    let mut child = Child::spawn_with(
        &opts,
        [
            "--size",
            size.as_str(),
            "--hot",
            hot.as_str(),
            "--cold-fill-stride",
            args.cold_fill_stride.as_str(),
            "--threads",
            threads.as_str(),
            "--quiet",
        ],
    )
    .context("cannot start etmem-workload")?;
    let ready = Instant::now();
    let pid = child.pid();
    if let Some(d) = &daemon {
        d.add_config("ethp.toml", &project_toml(args, pid))?;
        d.start("ethp")?;
    }

    // Warm-up: watch the hot set become huge (ethp).
    let mut promoted_after_s = None;
    let warm_end = ready + Duration::from_secs(args.warmup_s);
    while Instant::now() < warm_end {
        bench::sleep_checked(Duration::from_millis(500), flag)?;
        check_thp_mode(mode)?;
        let (_, huge) = task_memory(pid);
        if promoted_after_s.is_none() && huge * 10 >= hot_bytes * 9 {
            promoted_after_s = Some(ready.elapsed().as_secs_f64());
        }
    }

    let a: Mark = window::mark(&mut child)?;
    let mut shares = Vec::new();
    let end = Instant::now() + Duration::from_secs(args.window_s);
    while Instant::now() < end {
        bench::sleep_checked(
            Duration::from_secs(2).min(end.saturating_duration_since(Instant::now())),
            flag,
        )?;
        check_thp_mode(mode)?;
        let (_, huge) = task_memory(pid);
        shares.push((huge as f64 / hot_bytes as f64).min(1.0));
        if promoted_after_s.is_none() && huge * 10 >= hot_bytes * 9 {
            promoted_after_s = Some(ready.elapsed().as_secs_f64());
        }
    }
    let b: Mark = window::mark(&mut child)?;
    let w = window::between(&a, &b);
    let (rss, huge) = task_memory(pid);
    let used = host_used_bytes();
    let engine = match &daemon {
        Some(d) => {
            let stats = d.task_stats("ethp", "wl")?.context("the ethp task does not run")?;
            Some(engine_figures(&stats, promoted_after_s))
        }
        None => None,
    };
    let (lo, _) = min_max(&shares);
    let r = RunResult {
        mode,
        accesses_per_s: w.accesses_per_s,
        rss_bytes: rss,
        anon_huge_bytes: huge,
        hot_huge_min: lo,
        hot_huge_mean: shares.iter().sum::<f64>() / shares.len().max(1) as f64,
        host_used_bytes: used,
        host_used_growth_bytes: used.saturating_sub(used_before),
        engine,
    };
    eprintln!(
        "  {}: {:.2} M accesses/s, RSS {}, AnonHugePages {}, host used +{}",
        mode.name(),
        r.accesses_per_s / 1e6,
        human_bytes(r.rss_bytes),
        human_bytes(r.anon_huge_bytes),
        human_bytes(r.host_used_growth_bytes)
    );
    if let Some(d) = &daemon {
        d.stop("ethp")?;
    }
    Ok(r)
}

fn med(results: &[RunResult], mode: Mode, f: impl Fn(&RunResult) -> f64) -> f64 {
    let v: Vec<f64> = results.iter().filter(|r| r.mode == mode).map(f).collect();
    median(&v)
}

fn report(args: &Args, machine: &Machine, results: &[RunResult], started: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# THP: madvise vs always vs etmemd promotion and demotion\n");
    let _ = writeln!(
        s,
        "`cargo run --release -p perf --bin bench-thp -- --runs {}` ({started}). The etmem DAMON \
         presentation's orig / thp / ethp comparison at this machine's scale (issue 5).\n",
        args.runs
    );
    let _ = writeln!(s, "## Machine\n\n{}", machine.markdown());
    let _ = writeln!(
        s,
        "## Setup\n\n- workload: `etmem-workload --size {}M --hot {}M --cold-fill-stride {} --threads {}`: \
         random 8-byte reads over a {} hot set (the TLB reaches a few MiB with 4 KiB pages), and a {} \
         cold area of which one 4 KiB page per {} was written once (mapped but barely used)\n\
         - orig: THP `madvise`, nothing acts\n- thp: THP `always` for the whole run (restored after)\n\
         - ethp: THP `madvise`; etmemd region engine, refault probe (zram 1G lz4 for its samples), \
         sample {} / aggr {}, <= {} regions; policy: hot = >= 5 % of samples, `thp_min_age` {}, \
         `promote_thp`, `demote_thp`, `cold_min_age` {}, `cold_action = \"none\"`\n\
         - each run: {} s warm-up after the workload's memory is filled, then a {} s window; {} \
         repetitions, the order of the three runs rotating; medians (min..max)\n",
        args.hot_mib + args.cold_mib,
        args.hot_mib,
        args.cold_fill_stride,
        args.threads,
        human_bytes(args.hot_mib * MIB),
        human_bytes(args.cold_mib * MIB),
        args.cold_fill_stride,
        args.sample_interval,
        args.aggr_interval,
        args.max_nr_regions,
        args.thp_min_age,
        args.cold_min_age,
        args.warmup_s,
        args.window_s,
        args.runs
    );
    let _ = writeln!(
        s,
        "## Results\n\n| mode | throughput (M accesses/s) | vs orig | task RSS | AnonHugePages | \
         hot set huge (window min / mean) | MemTotal-MemFree | its growth during the run |\n\
         |---|---|---|---|---|---|---|---|"
    );
    let orig_tp = med(results, Mode::Orig, |r| r.accesses_per_s);
    for mode in [Mode::Orig, Mode::Thp, Mode::Ethp] {
        let mine: Vec<&RunResult> = results.iter().filter(|r| r.mode == mode).collect();
        if mine.is_empty() {
            continue;
        }
        let tp: Vec<f64> = mine.iter().map(|r| r.accesses_per_s / 1e6).collect();
        let (lo, hi) = min_max(&tp);
        let _ = writeln!(
            s,
            "| {} | {:.2} ({:.2}..{:.2}) | {:+.1} % | {} | {} | {:.0} % / {:.0} % | {} | +{} |",
            mode.name(),
            median(&tp),
            lo,
            hi,
            (median(&tp) * 1e6 / orig_tp - 1.0) * 100.0,
            human_bytes(med(results, mode, |r| r.rss_bytes as f64) as u64),
            human_bytes(med(results, mode, |r| r.anon_huge_bytes as f64) as u64),
            med(results, mode, |r| r.hot_huge_min) * 100.0,
            med(results, mode, |r| r.hot_huge_mean) * 100.0,
            human_bytes(med(results, mode, |r| r.host_used_bytes as f64) as u64),
            human_bytes(med(results, mode, |r| r.host_used_growth_bytes as f64) as u64),
        );
    }
    let thp_tp = med(results, Mode::Thp, |r| r.accesses_per_s);
    let ethp_tp = med(results, Mode::Ethp, |r| r.accesses_per_s);
    let kept = (ethp_tp - orig_tp) / (thp_tp - orig_tp);
    let rss = |m| med(results, m, |r| r.rss_bytes as f64);
    let growth = |m| med(results, m, |r| r.host_used_growth_bytes as f64);
    let ethp_rss_added = rss(Mode::Ethp) / rss(Mode::Orig) - 1.0;
    let thp_rss_added = rss(Mode::Thp) / rss(Mode::Orig) - 1.0;
    let ethp_host_added = growth(Mode::Ethp) / growth(Mode::Orig) - 1.0;
    let thp_host_added = growth(Mode::Thp) / growth(Mode::Orig) - 1.0;
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let _ = writeln!(
        s,
        "\n## Against the goal\n\n\
         - throughput gain kept: ethp {:+.1} % vs thp {:+.1} % over orig: **{:.0} %** of thp's gain \
         (goal >= 70 %: {})\n\
         - memory added over orig, task RSS: ethp **{:+.2} %**, thp {:+.1} % (goal <= 2 %: {})\n\
         - memory added over orig, growth of MemTotal-MemFree during the run (includes the zram \
         device's compressed samples and the engine; noisy, the machine is shared): ethp {:+.1} %, thp {:+.1} %\n",
        (ethp_tp / orig_tp - 1.0) * 100.0,
        (thp_tp / orig_tp - 1.0) * 100.0,
        kept * 100.0,
        verdict(kept >= 0.7),
        ethp_rss_added * 100.0,
        thp_rss_added * 100.0,
        verdict(ethp_rss_added <= 0.02),
        ethp_host_added * 100.0,
        thp_host_added * 100.0,
    );
    let engines: Vec<&EngineFigures> = results.iter().filter_map(|r| r.engine.as_ref()).collect();
    if !engines.is_empty() {
        let _ = writeln!(s, "## The ethp engine\n");
        for (k, e) in engines.iter().enumerate() {
            let _ = writeln!(
                s,
                "- run {}: {} collapses, {} demotions; hot set 90 % huge {} after the workload was ready; \
                 engine CPU {:.1} s monitoring + {:.1} s acting over the run",
                k + 1,
                e.collapses,
                e.demotions,
                e.promoted_after_s.map_or("never".to_string(), |t| format!("{t:.1} s")),
                e.monitor_cpu_s,
                e.action_cpu_s
            );
            for l in &e.lines {
                let _ = writeln!(s, "  - {l}");
            }
        }
        s.push('\n');
    }
    let _ = writeln!(s, "Load average at the end: {}.", bench::machine::loadavg_now());
    s
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return Ok(());
    }
    let flag = bench::interrupt_flag();
    if flag.is_none() {
        bail!("cannot install the SIGINT / SIGTERM handlers that make the THP setting come back");
    }
    if thp::thp_mode().as_deref() != Some("madvise") {
        bail!("THP is `{}` here; orig and ethp need `madvise`", thp_mode());
    }
    let machine = Machine::describe();
    let started = format!("started at uptime {:.0} s", uptime_s());
    let mut results = Vec::new();
    for rep in 0..args.runs {
        let mut order = args.modes.clone();
        let n = order.len().max(1);
        order.rotate_left(rep % n);
        for mode in order {
            let mut tries = 0;
            let r = loop {
                match run_one(&args, mode, flag) {
                    Err(e) if e.is::<ThpModeChanged>() && tries < 3 => {
                        eprintln!("  {e}: another process changed it; this run is done again");
                        tries += 1;
                    }
                    other => break other?,
                }
            };
            results.push(r);
        }
    }
    let text = report(&args, &machine, &results, &started);
    println!("{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, &text).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

fn uptime_s() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}
