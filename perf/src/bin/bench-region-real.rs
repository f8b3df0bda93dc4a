//! bench-region-real: the region engine's cost on real targets. etmemd's
//! region engine (embedded in this process through the etmemd library, the
//! same code the daemon runs) monitors an `etmem-workload` child of 256 MiB
//! to 4 GiB (10 % hot) with the refault probe and a zram device the project
//! creates. Reports the engine's monitoring CPU time per aggregation (flat
//! within 2x while the size grows 16x?) and per GiB, and what the refault
//! probe costs the workload: faults per second and the throughput change
//! against windows without any engine, interleaved in the same run.
//!
//! Needs root and zram. Cleans up on any exit but SIGKILL: the project's zram
//! device is removed when the project stops or the embedded daemon drops,
//! and the workload child is killed when dropped.
//!
//! `cargo run --release -p perf --bin bench-region-real [-- --runs 3]`

use anyhow::{Context, Result, bail};
use clap::Parser;
use etmemd::protocol::TaskStats;
use perf::bench::window::{self, Window};
use perf::bench::{self, EmbeddedDaemon, Machine, human_bytes, median, min_max};
use perf::workload::{Child, SpawnOptions};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "Region engine cost on real processes (refault probe, zram)")]
struct Args {
    /// Workload sizes, MiB (hot + cold).
    #[arg(long, value_delimiter = ',', default_values_t = vec![256, 1024, 2048, 4096])]
    sizes_mib: Vec<u64>,
    /// The workload's hot set: a share (10%) or a size (26M: the same hot
    /// set at every size, only the cold memory grows).
    #[arg(long, default_value = "10%")]
    hot: String,
    /// Runs per size: each is one window without an engine and one with it
    /// (alternating which comes first; an even count balances the order);
    /// tables show medians.
    #[arg(long, default_value_t = 4)]
    runs: usize,
    /// Seconds the engine runs before its window starts (regions converge).
    #[arg(long, default_value_t = 8)]
    warmup_s: u64,
    /// Seconds of each measured window.
    #[arg(long, default_value_t = 8)]
    window_s: u64,
    /// Workload access threads (the machine has few cores: one leaves room for the engine).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// DAMON sampling interval (kernel default 5ms).
    #[arg(long, default_value = "5ms")]
    sample_interval: String,
    /// DAMON aggregation interval (kernel default 100ms).
    #[arg(long, default_value = "100ms")]
    aggr_interval: String,
    #[arg(long, default_value_t = 10)]
    min_nr_regions: u32,
    /// The cost bound (kernel default 1000).
    #[arg(long, default_value_t = 1000)]
    max_nr_regions: u32,
    /// zram compressor of the project's device.
    #[arg(long, default_value = "lzo-rle")]
    compressor: String,
}

fn skip_reason() -> Option<String> {
    if !swap_backends::sys::is_root() {
        return Some("needs root (process_madvise on another process, pagemap PFNs, zram)".into());
    }
    swap_backends::zram::unavailable_reason()
}

/// The project: region engine with the refault probe, classification only
/// (`cold_action = "stat"`: nothing is paged out but the probe's samples),
/// and a zram device for the probe's pageouts, at the highest swap priority
/// so they land there even when other swap devices are on.
fn project_toml(args: &Args, name: &str, pid: u32, zram_mib: u64) -> String {
    format!(
        r#"[project]
name = "{name}"

[engine]
kind = "region"
probe = "refault"
sample_interval = "{si}"
aggr_interval = "{ai}"
update_interval = "1s"
min_nr_regions = {min}
max_nr_regions = {max}

[[task]]
name = "wl"
pid = {pid}

[policy]
hot_min_accesses = 1
cold_max_accesses = 0
cold_min_age = "4s"
cold_action = "stat"

[[backend]]
kind = "zram"
size = "{zram_mib}M"
compressor = "{comp}"
priority = 32767
"#,
        si = args.sample_interval,
        ai = args.aggr_interval,
        min = args.min_nr_regions,
        max = args.max_nr_regions,
        comp = args.compressor,
    )
}

/// The engine's counters at one moment.
#[derive(Debug, Clone, Copy)]
struct EngineMark {
    monitor_cpu_s: f64,
    aggregations: u64,
    nr_regions: u64,
    samples_checked: Option<u64>,
    hot_bytes: u64,
    swap_bytes: u64,
}

fn engine_mark(stats: &TaskStats) -> Result<EngineMark> {
    let samples_checked = stats
        .extra
        .get("probe_samples")
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    Ok(EngineMark {
        monitor_cpu_s: stats.monitor_cpu_s.context("the engine reports no monitor_cpu_s")?,
        aggregations: stats.aggregations.context("the engine reports no aggregations")?,
        nr_regions: stats.nr_regions.unwrap_or(0),
        samples_checked,
        hot_bytes: stats.hot_bytes.unwrap_or(0),
        swap_bytes: stats.swap_bytes.unwrap_or(0),
    })
}

/// One run of one size.
#[derive(Debug, Clone, Copy)]
struct Run {
    base: Window,
    engine: Window,
    monitor_us_per_aggr: f64,
    /// Whole-process CPU (engine thread, policy, /proc reads, this harness) per aggregation.
    process_us_per_aggr: f64,
    aggr_per_s: f64,
    regions: f64,
    samples_per_aggr: Option<f64>,
    hot_share: f64,
    swap_end_bytes: u64,
}

struct SizeResult {
    size_bytes: u64,
    runs: Vec<Run>,
    notes: Vec<String>,
}

fn stats_now(d: &EmbeddedDaemon, project: &str) -> Result<EngineMark> {
    let s =
        d.task_stats(project, "wl")?.with_context(|| format!("project {project}: task wl does not run"))?;
    if let Some(e) = &s.last_error {
        eprintln!("  note: engine reports: {e}");
    }
    engine_mark(&s)
}

/// Starts the project, warms up, measures one window, stops the project.
fn engine_window(
    args: &Args,
    d: &EmbeddedDaemon,
    project: &str,
    child: &mut Child,
    flag: Option<&AtomicBool>,
) -> Result<(Window, EngineMark, EngineMark)> {
    d.start(project)?;
    let result = (|| -> Result<_> {
        bench::sleep_checked(Duration::from_secs(args.warmup_s), flag)?;
        // Stats are published at each aggregation; wait for one to have happened.
        let deadline = Instant::now() + Duration::from_secs(30);
        let e0 = loop {
            let m = stats_now(d, project)?;
            if m.aggregations > 0 {
                break m;
            }
            if Instant::now() > deadline {
                bail!("project {project}: no aggregation within 30 s of warm-up");
            }
            bench::sleep_checked(Duration::from_millis(100), flag)?;
        };
        let a = window::mark(child)?;
        bench::sleep_checked(Duration::from_secs(args.window_s), flag)?;
        let e1 = stats_now(d, project)?;
        let b = window::mark(child)?;
        Ok((window::between(&a, &b), e0, e1))
    })();
    // Stop in every case: the engine thread ends, the zram device goes
    // (swapoff brings the probe's sampled pages back).
    let stopped = d.stop(project);
    let r = result?;
    stopped?;
    Ok(r)
}

fn run_size(args: &Args, d: &EmbeddedDaemon, mib: u64, flag: Option<&AtomicBool>) -> Result<SizeResult> {
    let size = format!("{mib}M");
    let threads = args.threads.to_string();
    eprintln!("== {} workload: starting (fills its memory first)", human_bytes(mib << 20));
    let opts = SpawnOptions { inherit_stderr: true, ..SpawnOptions::default() };
    let mut child = Child::spawn_with(
        &opts,
        [
            "--size",
            size.as_str(),
            "--hot",
            args.hot.as_str(),
            "--threads",
            threads.as_str(),
            "--nohugepage",
            "--quiet",
        ],
    )
    .context("cannot start etmem-workload")?;
    let size_bytes = child.total_bytes();
    let project = format!("region-real-{mib}m");
    let zram_mib = mib + 256;
    d.add_config(&format!("{project}.toml"), &project_toml(args, &project, child.pid(), zram_mib))?;
    let mut runs = Vec::new();
    let mut notes = Vec::new();
    let result = (|| -> Result<()> {
        for run in 0..args.runs {
            // Alternate the order so a drift of the machine's load cancels out.
            let engine_first = !run.is_multiple_of(2);
            let (base, (engine, e0, e1)) = if engine_first {
                let e = engine_window(args, d, &project, &mut child, flag)?;
                (window::measure(&mut child, Duration::from_secs(args.window_s), flag)?, e)
            } else {
                let b = window::measure(&mut child, Duration::from_secs(args.window_s), flag)?;
                (b, engine_window(args, d, &project, &mut child, flag)?)
            };
            let aggrs = e1.aggregations.saturating_sub(e0.aggregations);
            if aggrs == 0 {
                bail!("no aggregation during the {} s window", args.window_s);
            }
            let n = aggrs as f64;
            let r = Run {
                base,
                engine,
                monitor_us_per_aggr: (e1.monitor_cpu_s - e0.monitor_cpu_s) * 1e6 / n,
                process_us_per_aggr: engine.process_cpu_s * 1e6 / n,
                aggr_per_s: n / engine.secs,
                regions: (e0.nr_regions + e1.nr_regions) as f64 / 2.0,
                samples_per_aggr: match (e0.samples_checked, e1.samples_checked) {
                    (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / n),
                    _ => None,
                },
                hot_share: e1.hot_bytes as f64 / size_bytes as f64,
                swap_end_bytes: e1.swap_bytes,
            };
            eprintln!(
                "  run {}: monitor {:.0} µs/aggr, {:.0} regions, {:.1} aggr/s, majflt {:.0}/s, accesses {:.3}x",
                run + 1,
                r.monitor_us_per_aggr,
                r.regions,
                r.aggr_per_s,
                r.engine.majflt_per_s,
                r.engine.accesses_per_s / r.base.accesses_per_s
            );
            runs.push(r);
        }
        Ok(())
    })();
    if let Err(e) = d.delete(&project) {
        notes.push(format!("project delete: {e}"));
    }
    result?;
    match child.verify() {
        Ok(v) if v.ok => {}
        Ok(v) => notes.push(format!("the workload's data changed: {} bad bytes", v.mismatches)),
        Err(e) => notes.push(format!("cannot verify the workload's data: {e}")),
    }
    Ok(SizeResult { size_bytes, runs, notes })
}

fn col(runs: &[Run], f: impl Fn(&Run) -> f64) -> Vec<f64> {
    runs.iter().map(f).collect()
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.runs == 0 || args.window_s == 0 || args.sizes_mib.is_empty() {
        bail!("--runs, --window-s and --sizes-mib must be non-zero");
    }
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return Ok(());
    }
    let flag = bench::interrupt_flag();
    let machine = Machine::describe();
    let started = Instant::now();
    let d = EmbeddedDaemon::new()?;
    let mut results = Vec::new();
    for &mib in &args.sizes_mib {
        results.push(run_size(&args, &d, mib, flag)?);
    }
    drop(d);
    print_report(&args, &machine, &results, started.elapsed());
    Ok(())
}

fn print_report(args: &Args, machine: &Machine, results: &[SizeResult], took: Duration) {
    println!("# Region engine cost on real targets (refault probe, zram)\n");
    println!("{}", machine.markdown());
    println!(
        "Engine: etmemd's `region` engine embedded in the benchmark process (the etmemd library's \
         Daemon, same requests as `etmem`), probe `refault`, sample {} / aggregation {}, regions {}..{}, \
         policy classification only (`cold_action = \"stat\"`), a {} zram device created by the project. \
         Workload: `etmem-workload --size S --hot {} --threads {} --nohugepage` (base pages whatever \
         the THP mode; random reads of the hot region; \
         the cold region is only written once, when filled). Each run: one {} s window without any \
         engine and one {} s window with the engine (after {} s of warm-up), order alternating; \
         {} runs per size, medians shown. Run time {:.0} s; load average at end {}; THP at end `{}`.\n",
        args.sample_interval,
        args.aggr_interval,
        args.min_nr_regions,
        args.max_nr_regions,
        args.compressor,
        args.hot,
        args.threads,
        args.window_s,
        args.window_s,
        args.warmup_s,
        args.runs,
        took.as_secs_f64(),
        bench::machine::loadavg_now(),
        bench::machine::thp_now()
    );
    println!("## Monitoring CPU time per aggregation\n");
    println!(
        "`monitor CPU` is the engine thread's CPU time inside the monitor's steps (sampling: the \
         probe's pageout of each sampled page, its pagemap/kpageflags reads, split/merge, target \
         updates), as `project show` reports it (`monitor_cpu_s` / `aggregations`). `process CPU` is \
         this whole process over the window per aggregation (also the policy, /proc reads, the harness).\n"
    );
    println!(
        "| target size | regions | sampled pages / aggr | aggr / s | monitor CPU µs / aggr (median, range) | µs / aggr / GiB | vs smallest | monitor CPU, % of a core | process CPU µs / aggr | classified hot | swapped by the probe at window end |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut medians = Vec::new();
    for r in results {
        let m = col(&r.runs, |x| x.monitor_us_per_aggr);
        let med = median(&m);
        let base = *medians.first().unwrap_or(&med);
        medians.push(med);
        let (lo, hi) = min_max(&m);
        let gib = r.size_bytes as f64 / (1u64 << 30) as f64;
        let samples: Vec<f64> = r.runs.iter().filter_map(|x| x.samples_per_aggr).collect();
        println!(
            "| {} | {:.0} | {} | {:.1} | {:.0} ({:.0}..{:.0}) | {:.0} | {:.2}x | {:.1} % | {:.0} | {:.1} % | {} |",
            human_bytes(r.size_bytes),
            median(&col(&r.runs, |x| x.regions)),
            if samples.is_empty() { "-".to_string() } else { format!("{:.0}", median(&samples)) },
            median(&col(&r.runs, |x| x.aggr_per_s)),
            med,
            lo,
            hi,
            med / gib,
            med / base,
            median(&col(&r.runs, |x| x.monitor_us_per_aggr * x.aggr_per_s / 1e4)),
            median(&col(&r.runs, |x| x.process_us_per_aggr)),
            median(&col(&r.runs, |x| x.hot_share)) * 100.0,
            human_bytes(median(&col(&r.runs, |x| x.swap_end_bytes as f64)) as u64),
        );
    }
    let (lo, hi) = min_max(&medians);
    let sizes: Vec<f64> = results.iter().map(|r| r.size_bytes as f64).collect();
    let (smin, smax) = min_max(&sizes);
    println!(
        "\nSize grows {:.0}x; monitoring CPU per aggregation spans {:.2}x (max / min median): flat within 2x: {}.\n",
        smax / smin,
        hi / lo,
        if hi / lo <= 2.0 { "yes" } else { "NO" }
    );

    println!("## The refault probe's cost to the workload\n");
    println!(
        "Faults per second are the workload's /proc/PID/stat `majflt` / `minflt` deltas per second \
         (a hot sampled page the probe paged out faults back from zram: a major fault). Throughput is \
         the workload's own accesses per second of run time; the ratio is taken per run (engine window / \
         no-engine window of the same run), median and range over runs.\n"
    );
    println!(
        "| target size | majflt / s, no engine | majflt / s, engine | minflt / s, engine | accesses / s, no engine | accesses / s, engine | throughput ratio engine / none (median, range) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in results {
        let ratios = col(&r.runs, |x| x.engine.accesses_per_s / x.base.accesses_per_s);
        let (lo, hi) = min_max(&ratios);
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.3e} | {:.3e} | {:.3} ({:.3}..{:.3}) |",
            human_bytes(r.size_bytes),
            median(&col(&r.runs, |x| x.base.majflt_per_s)),
            median(&col(&r.runs, |x| x.engine.majflt_per_s)),
            median(&col(&r.runs, |x| x.engine.minflt_per_s)),
            median(&col(&r.runs, |x| x.base.accesses_per_s)),
            median(&col(&r.runs, |x| x.engine.accesses_per_s)),
            median(&ratios),
            lo,
            hi
        );
    }
    println!();
    for r in results {
        for n in &r.notes {
            println!("Note ({}): {n}", human_bytes(r.size_bytes));
        }
    }
}
