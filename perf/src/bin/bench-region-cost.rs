//! bench-region-cost: CPU time per aggregation interval of the region engine
//! (damon-core + simulated probe) against simulated target size, 256 MiB to
//! 16 GiB, as a markdown table. The cost is bounded by max_nr_regions, so it
//! should stay flat (within 2x) while the size grows 16x or more.
//!
//! `cargo run --release -p perf --bin bench-region-cost [-- --runs 5]`

use anyhow::{Context, Result, bail};
use clap::Parser;
use damon_core::ops::sim::{Scenario, SimProbe};
use damon_core::{Monitor, MonitorAttrs, TargetId};
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(about = "Region engine CPU time per aggregation against simulated target size")]
struct Args {
    /// Target data sizes, MiB.
    #[arg(long, value_delimiter = ',', default_values_t = vec![256, 1024, 4096, 16384])]
    sizes_mib: Vec<u64>,
    /// Runs per size (seeds); the table shows the median.
    #[arg(long, default_value_t = 5)]
    runs: u64,
    /// Aggregations before measuring (regions converge).
    #[arg(long, default_value_t = 50)]
    warmup: u64,
    /// Aggregations measured.
    #[arg(long, default_value_t = 200)]
    measure: u64,
    /// Workloads (static, moving, phase, sparse, islands): `static` keeps a
    /// few dozen regions, `islands` sits near max_nr_regions / 2, the split limit.
    #[arg(long, value_delimiter = ',', default_values_t = vec!["static".to_string(), "islands".to_string()])]
    workloads: Vec<String>,
    /// max_nr_regions (the cost bound).
    #[arg(long, default_value_t = damon_core::monitor::DEFAULT_MAX_NR_REGIONS)]
    max_nr_regions: u32,
}

/// This process's CPU time (user + system), in nanoseconds.
fn process_cpu_ns() -> Result<u64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec to the valid pointer given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        bail!("clock_gettime(CLOCK_PROCESS_CPUTIME_ID): {}", std::io::Error::last_os_error());
    }
    Ok(u64::try_from(ts.tv_sec)? * 1_000_000_000 + u64::try_from(ts.tv_nsec)?)
}

fn scenario(workload: &str, bytes: u64, seed: u64) -> Result<Scenario> {
    Ok(match workload {
        "static" => Scenario::static_hot_cold(bytes, seed),
        "moving" => Scenario::moving_hot_spot(bytes, seed),
        "phase" => Scenario::phase_change(bytes, seed),
        "sparse" => Scenario::sparse_hot_in_cold(bytes, seed),
        "islands" => Scenario::hot_islands(bytes, 1000, seed),
        other => bail!("unknown workload {other:?} (static, moving, phase, sparse, islands)"),
    })
}

struct Run {
    cpu_ns_per_aggr: f64,
    regions_mean: f64,
    checks_per_aggr: f64,
}

fn one_run(args: &Args, workload: &str, bytes: u64, seed: u64) -> Result<Run> {
    let s = scenario(workload, bytes, seed)?;
    let attrs = MonitorAttrs { max_nr_regions: args.max_nr_regions, ..MonitorAttrs::default() };
    let mut m = Monitor::new(attrs, seed)?;
    let id = TargetId(1);
    m.add_target(id, s.space.initial_mappings())?;
    let mut probe = SimProbe::new(Arc::clone(&s.space));
    let mut aggregations = 0u64;
    let mut regions_sum = 0usize;
    let mut start: Option<(u64, u64)> = None;
    while aggregations < args.warmup + args.measure {
        let out = m.step(&mut probe);
        probe.advance(1);
        if let Some(snaps) = out.aggregated {
            aggregations += 1;
            if aggregations == args.warmup {
                start = Some((process_cpu_ns()?, probe.stats().checked));
            } else if aggregations > args.warmup {
                regions_sum += snaps.iter().map(|(_, s)| s.regions.len()).sum::<usize>();
            }
        }
    }
    let (cpu0, checks0) = start.context("warm-up ended")?;
    let cpu = process_cpu_ns()? - cpu0;
    let n = args.measure as f64;
    Ok(Run {
        cpu_ns_per_aggr: cpu as f64 / n,
        regions_mean: regions_sum as f64 / n,
        checks_per_aggr: (probe.stats().checked - checks0) as f64 / n,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn human(mib: u64) -> String {
    match (mib / 1024, mib % 1024) {
        (gib, 0) if gib > 0 => format!("{gib} GiB"),
        _ => format!("{mib} MiB"),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.measure == 0 || args.runs == 0 || args.sizes_mib.is_empty() {
        bail!("--measure, --runs and --sizes-mib must be non-empty");
    }
    println!("# Region engine cost per aggregation (damon-core + simulated probe)\n");
    println!(
        "Kernel-default intervals (5 ms sample, 100 ms aggregation), min 10 / max {} regions; \
         process CPU time over {} aggregations after {} warm-up ones, median of {} runs \
         (one seed each). Sampled pages count the regions after each split.\n",
        args.max_nr_regions, args.measure, args.warmup, args.runs
    );
    let mut all_flat = true;
    for workload in &args.workloads {
        let flat = table(&args, workload)?;
        all_flat &= flat;
    }
    println!("Flat within 2x for every workload: {}.", if all_flat { "yes" } else { "NO" });
    Ok(())
}

/// One table; true when the medians stay within 2x of each other.
fn table(args: &Args, workload: &str) -> Result<bool> {
    println!("## Workload `{workload}`\n");
    println!(
        "| target size | regions | sampled pages / aggr | CPU µs / aggr (median) | range | CPU µs / aggr / GiB | vs smallest |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut medians = Vec::new();
    for &mib in &args.sizes_mib {
        let runs: Vec<Run> =
            (0..args.runs).map(|seed| one_run(args, workload, mib << 20, seed + 1)).collect::<Result<_>>()?;
        let cpu: Vec<f64> = runs.iter().map(|r| r.cpu_ns_per_aggr / 1000.0).collect();
        let lo = cpu.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = cpu.iter().copied().fold(0.0, f64::max);
        let med = median(cpu);
        let base = *medians.first().unwrap_or(&med);
        medians.push(med);
        let regions = runs.iter().map(|r| r.regions_mean).sum::<f64>() / runs.len() as f64;
        let checks = runs.iter().map(|r| r.checks_per_aggr).sum::<f64>() / runs.len() as f64;
        println!(
            "| {} | {:.0} | {:.0} | {:.1} | {:.1}..{:.1} | {:.2} | {:.2}x |",
            human(mib),
            regions,
            checks,
            med,
            lo,
            hi,
            med / (mib as f64 / 1024.0),
            med / base
        );
    }
    let lo = medians.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = medians.iter().copied().fold(0.0, f64::max);
    let sizes = &args.sizes_mib;
    let growth = *sizes.iter().max().unwrap_or(&1) as f64 / *sizes.iter().min().unwrap_or(&1) as f64;
    let flat = hi / lo <= 2.0;
    println!(
        "\nSize grows {growth:.0}x; cost per aggregation spans {:.2}x (max / min median): flat within 2x: {}.\n",
        hi / lo,
        if flat { "yes" } else { "NO" }
    );
    Ok(flat)
}
