//! bench-load: etmemd under load (issue 10). Starts the real etmemd, adds
//! 64 projects of 4 region-engine tasks (cold_action stat), each task on its
//! own small `etmem-workload` process, starts them, then runs 100 concurrent
//! real `etmem` clients (project show and engine commands mixed). Prints
//! markdown: requests answered, latency p50/p99/max and the slowest request,
//! the daemon's RSS and CPU, and whether every byte of the processes'
//! memory reads back (the lead keeps it in perf/results/reliability.md).
//!
//! Needs root and zram (the refault probe needs a swap device; the run
//! creates one and removes it). Everything it starts is stopped when it
//! ends, also on error or Ctrl-C.
//!
//! ```sh
//! cargo build --release -p etmemd -p perf --bins
//! target/release/bench-load            # or: cargo run --release -p perf --bin bench-load
//! ```
//! Exit status: 0 when every request was answered and the daemon lived,
//! 1 otherwise, 2 on a bad command line.

use anyhow::Context;
use clap::Parser;
use perf::bench::Machine;
use perf::daemon_load::{self, LoadConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(about = "etmemd under load: many projects on real processes, many concurrent etmem clients")]
struct Args {
    #[arg(long, default_value_t = 64)]
    projects: usize,
    #[arg(long, default_value_t = 4)]
    tasks_per_project: usize,
    /// Concurrent etmem clients.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Requests per client, sent one after the other.
    #[arg(long, default_value_t = 20)]
    requests: usize,
    /// Size of each workload process.
    #[arg(long, default_value = "4M")]
    size: String,
    #[arg(long, default_value = "100ms")]
    sample_interval: String,
    #[arg(long, default_value = "1s")]
    aggr_interval: String,
    /// Seconds between starting the last project and the first client.
    #[arg(long, default_value_t = 5)]
    settle_s: u64,
    /// The etmemd and etmem binaries (default: next to this one).
    #[arg(long)]
    etmemd: Option<PathBuf>,
    #[arg(long)]
    etmem: Option<PathBuf>,
}

fn next_to_me(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("bench-load: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let a = Args::parse();
    let etmemd = a.etmemd.unwrap_or_else(|| next_to_me("etmemd"));
    let etmem = a.etmem.unwrap_or_else(|| next_to_me("etmem"));
    for b in [&etmemd, &etmem] {
        anyhow::ensure!(
            b.is_file(),
            "{} is not built: run `cargo build --release -p etmemd -p perf --bins` first (or give --etmemd/--etmem)",
            b.display()
        );
    }
    let mut cfg = LoadConfig::new(etmemd, etmem, a.projects, a.tasks_per_project, a.clients);
    cfg.requests_per_client = a.requests;
    cfg.workload_size = a.size;
    cfg.sample_interval = a.sample_interval;
    cfg.aggr_interval = a.aggr_interval;
    cfg.settle = Duration::from_secs(a.settle_s);
    let machine = Machine::describe();
    let stop = perf::bench::interrupt_flag();
    let report = daemon_load::run(&cfg, stop, &|line| eprintln!("bench-load: {line}")).context("load run")?;
    println!("{}", report.markdown());
    println!("{}", machine.markdown());
    Ok(report.all_answered() && report.daemon_alive && report.mismatched_bytes == 0)
}
