//! `etmem-demo`: the main job in one command. It starts the built-in
//! workload (a known hot set inside a large cold area), an embedded etmemd
//! with a region project, and a temporary zram device; it watches the cold
//! memory leave RAM while the hot set stays, prints before and after, and
//! cleans up. Without root it runs on the simulated address space and says so.

use anyhow::{Context, bail};
use clap::Parser;
use etmemd::daemon::{Daemon, DaemonOptions, Peer};
use etmemd::engine::BuiltinEngines;
use etmemd::protocol::{Request, Response, TaskStats};
use etmemd::render::bytes;
use perf::workload::Child;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Show etmem-rs moving a workload's cold memory to zram while its hot set
/// stays in RAM, with before/after figures.
///
/// As root: a real workload process, an embedded daemon, a temporary zram
/// device (removed at the end, also on Ctrl-C). Otherwise: the same engine
/// and policy on a simulated address space.
#[derive(Debug, Parser)]
#[command(name = "etmem-demo", version, about, long_about)]
struct Args {
    /// Workload size.
    #[arg(long, default_value = "1G")]
    size: String,
    /// Share of the workload that is hot (accessed all the time).
    #[arg(long, default_value = "15%")]
    hot: String,
    /// How long the daemon works on the workload.
    #[arg(long, default_value = "40s", value_parser = parse_secs)]
    duration: Duration,
    /// Idle time after which memory counts as cold.
    #[arg(long, default_value = "5s")]
    cold_after: String,
    /// Run on the simulated address space even as root.
    #[arg(long)]
    simulated: bool,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    conf::units::parse_duration(s).map_err(|e| e.to_string())
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_sigint as *const () as libc::sighandler_t);
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if args.simulated || !root {
        if !root {
            println!(
                "etmem-demo: not root, so no real process or zram device: running on the simulated address space."
            );
        }
        return simulated(&args);
    }
    if let Some(why) = swap_backends::zram::unavailable_reason() {
        println!("etmem-demo: zram is not usable here ({why}): running on the simulated address space.");
        return simulated(&args);
    }
    real(&args)
}

/// Stops the embedded daemon's projects (and so removes its zram) on every exit path.
struct DaemonGuard(Arc<Daemon>);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

fn ask(d: &Daemon, req: Request) -> anyhow::Result<Response> {
    match d.handle(req, Peer { uid: 0, gid: 0, pid: None }) {
        Response::Error(e) => bail!("{}", e.message),
        r => Ok(r),
    }
}

fn task_stats(d: &Daemon) -> Option<TaskStats> {
    match d.handle(Request::ProjectShow { name: Some("demo".into()) }, Peer { uid: 0, gid: 0, pid: None }) {
        Response::Projects { projects } => projects.first()?.engines.first()?.tasks.first()?.stats.clone(),
        _ => None,
    }
}

/// Accesses per second over a window, from the workload's own counters.
fn rate(child: &mut Child, window: Duration) -> anyhow::Result<f64> {
    let a = child.stats().context("workload stats")?;
    std::thread::sleep(window);
    let b = child.stats().context("workload stats")?;
    let ms = b.run_ms.saturating_sub(a.run_ms).max(1);
    Ok(b.accesses.saturating_sub(a.accesses) as f64 * 1000.0 / ms as f64)
}

fn proc_mem(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k)?.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmRSS:"), kb("VmSwap:"))
}

fn real(args: &Args) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("etmem-demo").tempdir().context("temp dir")?;
    println!(
        "== etmem-demo: {} workload, {} of it hot; cold = idle for {}",
        args.size, args.hot, args.cold_after
    );
    print!("starting the workload (filling memory with checkable data) ... ");
    std::io::stdout().flush().ok();
    let mut child = Child::spawn(["--size", &args.size, "--hot", &args.hot, "--write-ratio", "0.1"])
        .context("cannot start etmem-workload")?;
    println!("pid {}", child.pid());
    let hot: u64 = child.hot_ranges().iter().map(|r| r.len()).sum();
    let cold: u64 = child.cold_ranges().iter().map(|r| r.len()).sum();
    println!("  hot set {}  cold area {}", bytes(hot), bytes(cold));

    println!("measuring the workload's throughput before (5 s) ...");
    let before_rate = rate(&mut child, Duration::from_secs(5))?;
    let (rss0, swap0) = proc_mem(child.pid());

    let compressor = ["lz4", "lzo-rle", "lzo"]
        .into_iter()
        .find(|c| {
            std::fs::read_to_string("/sys/block/zram0/comp_algorithm").map(|s| s.contains(c)).unwrap_or(true)
        })
        .unwrap_or("lzo-rle");
    let config = format!(
        r#"# written by etmem-demo
[project]
name = "demo"

[engine]
kind = "region"
sample_interval = "20ms"
aggr_interval = "400ms"
update_interval = "2s"
min_nr_regions = 10
max_nr_regions = 200
probe = "auto"

[[task]]
name = "workload"
pid = {pid}

[policy]
hot_min_accesses = 1
cold_max_accesses = 0
cold_min_age = "{cold_after}"
cold_action = "pageout"
prefetch_warm = true

[[backend]]
kind = "zram"
size = "{zram}"
compressor = "{compressor}"
"#,
        pid = child.pid(),
        cold_after = args.cold_after,
        zram = bytes_arg(cold * 2),
    );
    let cfg_path = dir.path().join("demo.toml");
    std::fs::write(&cfg_path, &config)?;
    std::fs::set_permissions(&cfg_path, std::fs::Permissions::from_mode(0o600))?;

    let daemon = Arc::new(Daemon::new(
        DaemonOptions { state_dir: dir.path().join("state"), allow_insecure_config: false },
        Arc::new(BuiltinEngines),
    ));
    let guard = DaemonGuard(Arc::clone(&daemon));
    ask(&daemon, Request::ObjAdd { file: cfg_path.clone() })?;
    if let Response::Done { message: Some(m) } = ask(&daemon, Request::ProjectStart { name: "demo".into() })?
    {
        for l in m.lines() {
            println!("  {l}");
        }
    }
    // The engine publishes its probe choice with its first figures.
    let wait = Instant::now();
    let mut probe = None;
    while probe.is_none() && wait.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
        probe = task_stats(&daemon).and_then(|s| s.probe);
    }
    let probe = probe.unwrap_or_else(|| "not chosen yet".into());
    println!(
        "embedded etmemd started: region engine, probe {probe}, project config in {}",
        cfg_path.display()
    );

    let start = Instant::now();
    println!(
        "{:>6}  {:>10}  {:>10}  {:>10}  {:>10}  {:>8}",
        "time", "RSS", "swapped", "hot", "cold", "regions"
    );
    while start.elapsed() < args.duration && !interrupted() {
        std::thread::sleep(Duration::from_secs(2));
        let (rss, swap) = proc_mem(child.pid());
        let s = task_stats(&daemon).unwrap_or_default();
        println!(
            "{:>5.0}s  {:>10}  {:>10}  {:>10}  {:>10}  {:>8}",
            start.elapsed().as_secs_f64(),
            bytes(rss),
            bytes(swap),
            s.hot_bytes.map(bytes).unwrap_or_default(),
            s.cold_bytes.map(bytes).unwrap_or_default(),
            s.nr_regions.unwrap_or(0)
        );
    }
    let wall = start.elapsed();
    if interrupted() {
        println!("interrupted: cleaning up");
        drop(guard);
        return Ok(());
    }
    println!("measuring the workload's throughput after (5 s) ...");
    let after_rate = rate(&mut child, Duration::from_secs(5))?;
    let (rss1, swap1) = proc_mem(child.pid());
    let stats = task_stats(&daemon).unwrap_or_default();
    let run_s = wall.as_secs_f64() + 5.0;
    let monitor_share = stats.monitor_cpu_s.unwrap_or(0.0) / run_s * 100.0;
    let action_s = stats.action_cpu_s.unwrap_or(0.0);
    print!("verifying every byte the workload wrote ... ");
    std::io::stdout().flush().ok();
    let v = child.verify().context("verify")?;
    println!("{}", if v.ok { "all intact".to_string() } else { format!("{} bytes differ!", v.mismatches) });

    drop(guard);
    let gone = !std::fs::read_to_string("/proc/swaps").unwrap_or_default().contains("etmem");
    println!();
    println!("{:<22} {:>12} {:>12} {:>10}", "", "before", "after", "change");
    let pct = |a: f64, b: f64| if a > 0.0 { format!("{:+.1} %", (b - a) / a * 100.0) } else { "-".into() };
    println!(
        "{:<22} {:>12} {:>12} {:>10}",
        "workload RSS",
        bytes(rss0),
        bytes(rss1),
        pct(rss0 as f64, rss1 as f64)
    );
    println!("{:<22} {:>12} {:>12} {:>10}", "workload swapped", bytes(swap0), bytes(swap1), "");
    println!(
        "{:<22} {:>10.1}M/s {:>10.1}M/s {:>10}",
        "workload accesses",
        before_rate / 1e6,
        after_rate / 1e6,
        pct(before_rate, after_rate)
    );
    println!("{:<22} {:>12} {:>11.2}% {:>10}", "monitoring CPU", "-", monitor_share, "of a core");
    println!(
        "pageout CPU (compression into zram, charged to the daemon): {action_s:.2} s for {}",
        bytes(stats.paged_out_bytes.unwrap_or(0))
    );
    println!(
        "moved to zram: {} (the cold area is {}); still in RAM: {} for a {} hot set",
        bytes(swap1.saturating_sub(swap0)),
        bytes(cold),
        bytes(rss1),
        bytes(hot)
    );
    println!("zram device removed: {}", if gone { "yes" } else { "NO (see scripts/cleanup-machine)" });
    if !v.ok {
        bail!("the workload's data did not verify");
    }
    Ok(())
}

/// A size for a config value, rounded up to MiB.
fn bytes_arg(n: u64) -> String {
    format!("{}M", n.div_ceil(1 << 20).max(64))
}

/// The same engine and policy on a simulated address space: no process, no swap.
fn simulated(args: &Args) -> anyhow::Result<()> {
    use damon_core::monitor::{Monitor, MonitorAttrs, TargetId};
    use damon_core::ops::sim::{Scenario, SimProbe};
    let size = conf::units::parse_size(&args.size).map_err(|e| anyhow::anyhow!("--size: {e}"))?;
    let scenario = Scenario::static_hot_cold(size, 42);
    let space = Arc::clone(&scenario.space);
    let attrs =
        MonitorAttrs { sample_interval_us: 5_000, aggr_interval_us: 100_000, ..MonitorAttrs::default() };
    let mut monitor = Monitor::new(attrs.clone(), 7)?;
    monitor.add_target(TargetId(1), space.initial_mappings())?;
    let mut probe = SimProbe::new(Arc::clone(&space));
    let policy = conf::Policy {
        cold_min_age: conf::units::parse_duration(&args.cold_after).map_err(|e| anyhow::anyhow!("{e}"))?,
        cold_action: Some(conf::Action::Pageout),
        ..conf::Policy::default()
    };
    let mut planner = policies::Planner::new(policy, Vec::new());
    let total: u64 = space.initial_mappings().iter().map(|r| r.len()).sum();
    let mut paged: Vec<damon_core::AddrRange> = Vec::new();
    let sim_secs = args.duration.as_secs().max(10);
    println!(
        "== simulated {} process, hot set in the middle; {} s of simulated time",
        bytes(total),
        sim_secs
    );
    let ticks_per_sample = (monitor.sample_interval_us() / space.tick_us()).max(1);
    let mut last_print = 0;
    while probe.now() * space.tick_us() < sim_secs * 1_000_000 && !interrupted() {
        let out = monitor.step(&mut probe);
        if let Some(snaps) = out.aggregated {
            for (_, snap) in snaps {
                let plan = planner.plan(&policies::PlanInput {
                    now_us: snap.time_us,
                    snapshot: &snap,
                    task: policies::TaskMemory { rss_bytes: total, swap_bytes: 0 },
                    host: policies::HostMemory { total_bytes: 24 << 30, free_bytes: 1 << 30 },
                    paged_out: &paged,
                    huge: &[],
                    no_collapse: &[],
                });
                for d in plan.decisions.iter().filter(|d| d.action == conf::Action::Pageout) {
                    paged.push(d.range);
                }
                let secs = snap.time_us / 1_000_000;
                if secs >= last_print + 2 {
                    last_print = secs;
                    let out: u64 = paged.iter().map(|r| r.len()).sum();
                    println!(
                        "{secs:>4}s  regions {:>4}  hot {:>10}  cold {:>10}  would page out {:>10}",
                        snap.regions.len(),
                        bytes(plan.totals.hot_bytes),
                        bytes(plan.totals.cold_bytes),
                        bytes(out)
                    );
                }
            }
        }
        probe.advance(ticks_per_sample);
    }
    let out: u64 = paged.iter().map(|r| r.len()).sum();
    println!(
        "simulated result: {} of {} would leave RAM ({:.0} %); run as root for the real thing.",
        bytes(out),
        bytes(total),
        out as f64 * 100.0 / total.max(1) as f64
    );
    Ok(())
}
