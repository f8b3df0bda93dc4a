//! `etmem-workload`: a masim-style memory access generator with a known hot
//! set and checkable content; a thin shell over `perf::workload::Workload`.

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use perf::workload::engine::{DEFAULT_BATCH_ACCESSES, DEFAULT_SEED, DEFAULT_THREADS};
use perf::workload::masim::{parse_masim, parse_rw};
use perf::workload::protocol::{ErrorReport, IntervalReport};
use perf::workload::spec::DEFAULT_STRIDE_BYTES;
use perf::workload::units::{parse_duration_ms, parse_share, parse_size_bytes};
use perf::workload::{
    Event, HotColdConfig, HotSize, PROTOCOL_VERSION, Ready, RunOptions, ScheduleEvent, StatsReport, ThpHint,
    Workload, WorkloadSpec,
};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Exit code: bad arguments or config.
const EXIT_USAGE: u8 = 2;
/// Exit code: runtime failure.
const EXIT_FAILURE: u8 = 1;
/// Exit code: the final verification found bad bytes.
const EXIT_VERIFY_FAILED: u8 = 3;
/// How long `pause` waits for the access threads to stop.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between checks for SIGTERM.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Pattern {
    Random,
    #[value(alias = "sequential")]
    Seq,
}

#[derive(Debug, Clone, Copy)]
struct DurationArg(Option<u64>);

fn duration_arg(s: &str) -> Result<DurationArg, String> {
    parse_duration_ms(s, 1000).map(DurationArg).map_err(|e| e.to_string())
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size_bytes(s).map_err(|e| e.to_string())
}

fn hot_arg(s: &str) -> Result<HotSize, String> {
    let fraction = s.contains('.') && s.trim().parse::<f64>().is_ok_and(|v| v <= 1.0);
    if s.trim_end().ends_with('%') || fraction {
        parse_share(s).map(HotSize::Share).map_err(|e| e.to_string())
    } else {
        parse_size_bytes(s).map(HotSize::Bytes).map_err(|e| e.to_string())
    }
}

fn interval_arg(s: &str) -> Result<u64, String> {
    match parse_duration_ms(s, 1000) {
        Ok(Some(ms)) if ms > 0 => Ok(ms),
        Ok(_) => Err("the interval must be above 0".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Generate memory accesses with a known hot set over checkable memory.
///
/// Either a config file (masim format, or a JSON workload spec when the file
/// starts with '{') or the shortcut `--size S [--hot H]`: region "hot" (H of S,
/// accessed all the time) and region "cold" (the rest, touched once when filled).
#[derive(Debug, Parser)]
#[command(name = "etmem-workload", version, after_long_help = perf::workload::protocol_help())]
struct Args {
    /// masim config file, or a JSON workload spec.
    #[arg(required_unless_present = "size", conflicts_with_all = ["size", "hot", "hot_pattern", "stride", "write_ratio", "duration", "cold_fill_stride"])]
    config: Option<PathBuf>,

    /// Shortcut: total size of hot + cold (e.g. 16M, 1G).
    #[arg(long, value_parser = size_arg)]
    size: Option<u64>,
    /// Shortcut: hot set, a share (10%, 0.25) or a size (64M).
    #[arg(long, value_parser = hot_arg, default_value = "10%")]
    hot: HotSize,
    /// Shortcut: how the hot region is accessed.
    #[arg(long, value_enum, default_value_t = Pattern::Random)]
    hot_pattern: Pattern,
    /// Shortcut: stride of sequential access.
    #[arg(long, value_parser = size_arg, default_value_t = DEFAULT_STRIDE_BYTES)]
    stride: u64,
    /// Shortcut: share of accesses that store (0..1).
    #[arg(long, default_value_t = 0.0)]
    write_ratio: f64,
    /// Shortcut: how long to run (60s, 5min; a bare number is seconds), or "forever".
    #[arg(long, value_parser = duration_arg)]
    duration: Option<DurationArg>,
    /// Shortcut: fill only one page of every this many bytes of the cold
    /// region (e.g. 64K); the rest is never touched and reads zero (memory
    /// mapped but barely used, which THP `always` backs with huge pages).
    #[arg(long, value_parser = size_arg)]
    cold_fill_stride: Option<u64>,

    /// madvise(MADV_HUGEPAGE) on every region (overrides config hints).
    #[arg(long, conflicts_with = "nohugepage")]
    thp: bool,
    /// madvise(MADV_NOHUGEPAGE) on every region (overrides config hints).
    #[arg(long)]
    nohugepage: bool,
    /// prctl(PR_SET_THP_DISABLE) before mapping anything: the process turns
    /// THP off for itself, as mariadbd does.
    #[arg(long, conflicts_with = "thp")]
    thp_disable: bool,

    /// Access threads (each runs the phases' patterns with its own RNG; they also share the fill).
    #[arg(long, default_value_t = DEFAULT_THREADS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    threads: usize,
    /// Seed of the memory content and access RNGs.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Accesses per batch (pause and phase changes take effect between batches).
    #[arg(long, default_value_t = DEFAULT_BATCH_ACCESSES, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Start over at the first phase after the last one.
    #[arg(long)]
    repeat: bool,
    /// Read/write mode of masim patterns that do not give one: ro, wo, rw or a write ratio.
    #[arg(long, default_value = "wo")]
    default_rw_mode: String,

    /// Print an "interval" line this often (1s, 500ms).
    #[arg(long, value_parser = interval_arg)]
    log_interval: Option<u64>,
    /// Write the ground truth (hot ranges per phase) as JSON to this file; "-": a stdout line.
    #[arg(long)]
    ground_truth: Option<String>,
    /// Verify every byte before exiting; exit code 3 if any is wrong.
    #[arg(long)]
    verify_on_exit: bool,
    /// Do not read commands from stdin (run until the phases end or SIGTERM).
    #[arg(long)]
    no_stdin: bool,
    /// Print the workload spec as JSON and exit without mapping memory.
    #[arg(long)]
    print_spec: bool,
    /// No summary on stderr at exit.
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let spec = match build_spec(&args) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("etmem-workload: {e:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if args.print_spec {
        match serde_json::to_string_pretty(&spec) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("etmem-workload: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        }
        return ExitCode::SUCCESS;
    }
    match run(&args, &spec) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("etmem-workload: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn build_spec(args: &Args) -> Result<WorkloadSpec> {
    let page_size = perf::workload::page_size();
    let mut spec = match (&args.config, args.size) {
        (Some(path), _) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            if text.trim_start().starts_with('{') {
                let spec: WorkloadSpec = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a valid JSON workload spec", path.display()))?;
                spec.validate().with_context(|| path.display().to_string())?;
                spec
            } else {
                let rw = parse_rw(&args.default_rw_mode).map_err(anyhow::Error::msg)?;
                let cfg = parse_masim(&text, rw).with_context(|| path.display().to_string())?;
                for w in &cfg.warnings {
                    eprintln!("etmem-workload: warning: {}: {w}", path.display());
                }
                cfg.spec
            }
        }
        (None, Some(size_bytes)) => HotColdConfig {
            size_bytes,
            hot: args.hot,
            hot_random: args.hot_pattern == Pattern::Random,
            stride_bytes: args.stride,
            write_ratio: args.write_ratio,
            duration_ms: args.duration.and_then(|d| d.0),
            thp: ThpHint::None,
            cold_fill_stride_bytes: args.cold_fill_stride,
        }
        .to_spec(page_size)?,
        (None, None) => bail!("give a config file or --size"),
    };
    if args.repeat {
        spec.repeat = true;
    }
    let hint = if args.thp {
        Some(ThpHint::Hugepage)
    } else if args.nohugepage {
        Some(ThpHint::Nohugepage)
    } else {
        None
    };
    if let Some(hint) = hint {
        for r in &mut spec.regions {
            r.thp = hint;
        }
    }
    spec.validate()?;
    Ok(spec)
}

/// Writes one protocol line and flushes it. A closed stdout is not an error
/// worth stopping the workload for, so write errors are dropped.
fn emit(event: &Event) {
    if let Ok(line) = serde_json::to_string(event) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}

enum Input {
    Command(String),
    StdinClosed,
    Schedule(ScheduleEvent),
}

fn run(args: &Args, spec: &WorkloadSpec) -> Result<ExitCode> {
    if args.thp_disable {
        // SAFETY: PR_SET_THP_DISABLE takes an integer flag and no pointers.
        let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if r != 0 {
            bail!("prctl(PR_SET_THP_DISABLE): {}", std::io::Error::last_os_error());
        }
    }
    let terminate = perf::workload::termination_flag().context("cannot install signal handlers")?;
    let options = RunOptions { threads: args.threads, seed: args.seed, batch_accesses: args.batch };
    let mut workload = Workload::start(spec, &options)?;

    emit(&Event::Ready(Ready {
        pid: std::process::id(),
        protocol: PROTOCOL_VERSION,
        page_size: workload.page_size(),
        huge_page_size: perf::workload::memory::HUGE_PAGE_SIZE,
        seed: workload.seed(),
        threads: workload.threads(),
        regions: workload.regions().to_vec(),
        phases: spec.phases.iter().map(|p| p.name.clone()).collect(),
    }));
    match args.ground_truth.as_deref() {
        None => {}
        Some("-") => emit(&Event::GroundTruth(workload.ground_truth())),
        Some(path) => {
            let text = serde_json::to_string_pretty(&workload.ground_truth())?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("cannot write the ground truth to {path}"))?;
        }
    }

    let (tx, rx) = mpsc::channel();
    if let Some(events) = workload.take_events() {
        // The first phase's event is already queued: put it ahead of any command.
        for e in events.try_iter() {
            let _ = tx.send(Input::Schedule(e));
        }
        let tx = tx.clone();
        std::thread::Builder::new().name("wl-schedule".into()).spawn(move || {
            for e in events {
                if tx.send(Input::Schedule(e)).is_err() {
                    break;
                }
            }
        })?;
    }
    if !args.no_stdin {
        let tx = tx.clone();
        std::thread::Builder::new().name("wl-stdin".into()).spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(Input::Command(line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Input::StdinClosed);
        })?;
    }
    drop(tx);

    let interval = args.log_interval.map(Duration::from_millis);
    let mut last_tick = (Instant::now(), 0u64);
    loop {
        if terminate.load(Ordering::SeqCst) {
            break;
        }
        let mut wait = POLL;
        if let Some(every) = interval {
            let due = last_tick.0 + every;
            let now = Instant::now();
            if now >= due {
                let stats = workload.stats();
                let ms = now.saturating_duration_since(last_tick.0);
                let accesses = stats.accesses - last_tick.1.min(stats.accesses);
                emit(&Event::Interval(IntervalReport {
                    phase: stats.phase.clone(),
                    interval_ms: u64::try_from(ms.as_millis()).unwrap_or(u64::MAX),
                    accesses,
                    accesses_per_s: if ms.is_zero() { 0.0 } else { accesses as f64 / ms.as_secs_f64() },
                    total_accesses: stats.accesses,
                }));
                last_tick = (now, stats.accesses);
                continue;
            }
            wait = wait.min(due - now);
        }
        match rx.recv_timeout(wait) {
            Ok(Input::Command(line)) => match line.trim() {
                "" => {}
                "stats" => emit(&Event::Stats(workload.stats())),
                "verify" => emit(&Event::Verify(workload.verify())),
                "pause" => emit(&Event::Paused(workload.pause(PAUSE_TIMEOUT))),
                "resume" => {
                    workload.resume();
                    emit(&Event::Resumed);
                }
                "ground-truth" | "ground_truth" => emit(&Event::GroundTruth(workload.ground_truth())),
                "quit" | "exit" => break,
                other => emit(&Event::Error(ErrorReport {
                    message: format!(
                        "unknown command '{other}' (expected stats, verify, pause, resume, ground-truth or quit)"
                    ),
                })),
            },
            Ok(Input::StdinClosed) => break,
            Ok(Input::Schedule(ScheduleEvent::Phase(p))) => emit(&Event::Phase(p)),
            Ok(Input::Schedule(ScheduleEvent::Done)) => {
                emit(&Event::Done);
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // No stdin reader and the schedule ended: only a signal can stop us now.
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
        }
    }

    workload.shutdown();
    let stats = StatsReport { is_final: true, ..workload.stats() };
    emit(&Event::Stats(stats.clone()));
    let mut code = ExitCode::SUCCESS;
    let mut verdict = None;
    if args.verify_on_exit {
        let report = workload.verify();
        if !report.ok {
            code = ExitCode::from(EXIT_VERIFY_FAILED);
        }
        verdict = Some((report.ok, report.bytes_checked, report.mismatches));
        emit(&Event::Verify(report));
    }
    if !args.quiet {
        summarise(&stats, verdict);
    }
    Ok(code)
}

/// masim-style summary on stderr.
fn summarise(stats: &StatsReport, verdict: Option<(bool, u64, u64)>) {
    let mut err = std::io::stderr().lock();
    for p in &stats.phases {
        let _ = writeln!(err, "{}:\t{:>16.0} accesses/s, {} ms run", p.name, p.accesses_per_s, p.run_ms);
    }
    let _ = writeln!(
        err,
        "total:\t{:>16.0} accesses/s, {} accesses in {} ms",
        stats.accesses_per_s, stats.accesses, stats.run_ms
    );
    if let Some((ok, checked, bad)) = verdict {
        let _ = writeln!(
            err,
            "verify:\t{} ({checked} bytes checked, {bad} bad)",
            if ok { "ok" } else { "FAILED" }
        );
    }
}
