//! `tpcc`: the TPC-C driver and the MariaDB + etmemd benchmark harness of
//! issue 8. `tpcc bench` runs the scenarios and writes
//! `perf/results/tpcc.md` (scripts/tpcc is the documented way to call it);
//! `tpcc load` and `tpcc run` drive any MySQL-compatible server.

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use perf::tpcc::harness::{self, BenchConfig, RunRecord};
use perf::tpcc::{driver, load, mariadb, os, report};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// TPC-C on MariaDB under etmemd.
///
/// Exit status: 0 on success, 1 on an error, 2 on a bad command line,
/// 130 when stopped by SIGINT/SIGTERM (after cleaning up).
#[derive(Debug, Parser)]
#[command(name = "tpcc", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install MariaDB if needed, load once, run every scenario, write the results file.
    Bench(BenchArgs),
    /// Load a TPC-C database into a running server (drops `tpcc` first).
    Load(LoadArgs),
    /// Run the TPC-C mix against a loaded server and print the result as JSON.
    Run(RunArgs),
    /// Write the results file again from the raw results of the last bench
    /// (`WORK_DIR/results.json`), with the same arguments as that bench.
    Report(BenchArgs),
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// The server's unix socket (root, no password).
    #[arg(long, conflicts_with = "url")]
    socket: Option<PathBuf>,
    /// A mysql:// URL instead of a socket.
    #[arg(long)]
    url: Option<String>,
}

impl ServerArgs {
    fn opts(&self) -> anyhow::Result<mysql::Opts> {
        match (&self.socket, &self.url) {
            (Some(s), _) => Ok(mariadb::socket_opts(s)),
            (None, Some(u)) => mysql::Opts::from_url(u).context("bad --url"),
            (None, None) => bail!("give --socket or --url"),
        }
    }
}

#[derive(Debug, Args)]
struct LoadArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(short, long, default_value_t = 1)]
    warehouses: u32,
    /// Loader connections.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(short, long, default_value_t = 8)]
    terminals: u32,
    /// Warm-up (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    warmup: Duration,
    /// Measured time.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    measure: Duration,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Warehouses. Each terminal has a home warehouse (terminal i: warehouse
    /// i mod W + 1), so with more warehouses than terminals the rest are
    /// touched only by remote payments and remote supply lines: a database
    /// larger than its working set, the case tiering is for.
    #[arg(short, long, default_value_t = 40)]
    warehouses: u32,
    /// innodb_buffer_pool_size (e.g. 6G): large enough for every page.
    #[arg(long, default_value = "6G", value_parser = parse_size)]
    buffer_pool: u64,
    /// innodb_log_file_size.
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    log_file: u64,
    #[arg(short, long, default_value_t = 8)]
    terminals: u32,
    /// Before the measured window; etmemd starts with it, so its steady
    /// state is what is measured.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    warmup: Duration,
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    measure: Duration,
    /// Runs per scenario.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Loader connections.
    #[arg(long, default_value_t = 4)]
    load_threads: u32,
    /// Comma-separated scenario ids (default: all but the in-run A/B `thp-ab`).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Images, run folders and raw results (default: target/tpcc-work).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The project templates.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/tpcc"))]
    config_dir: PathBuf,
    /// etmemd and etmem binaries (default: next to this one).
    #[arg(long)]
    etmemd: Option<PathBuf>,
    #[arg(long)]
    etmem: Option<PathBuf>,
    /// The results file.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results/tpcc.md"))]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Never run apt-get: fail when MariaDB is missing.
    #[arg(long)]
    no_install: bool,
    /// Keep each run's data directory.
    #[arg(long)]
    keep_data: bool,
    /// A line of text for the results file's setup section (repeatable).
    #[arg(long)]
    note: Vec<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("{s:?} is not a duration (e.g. 90s, 3m)"))?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        _ => (s, 0),
    };
    let v: f64 = num.parse().map_err(|_| format!("{s:?} is not a size (e.g. 512M, 4G)"))?;
    Ok((v * (1u64 << shift) as f64) as u64)
}

fn log(msg: String) {
    let t =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    eprintln!("[{:02}:{:02}:{:02}] {msg}", (t / 3600) % 24, (t / 60) % 60, t % 60);
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(e) = os::install_stop_handler() {
        eprintln!("tpcc: cannot install signal handlers: {e}");
    }
    let r = match cli.cmd {
        Cmd::Bench(a) => bench(a),
        Cmd::Load(a) => load_cmd(a),
        Cmd::Run(a) => run_cmd(a),
        Cmd::Report(a) => report_cmd(a),
    };
    match r {
        Ok(()) if os::STOP.load(std::sync::atomic::Ordering::Relaxed) => std::process::ExitCode::from(130),
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tpcc: {e:#}");
            if os::STOP.load(std::sync::atomic::Ordering::Relaxed) {
                std::process::ExitCode::from(130)
            } else {
                std::process::ExitCode::from(1)
            }
        }
    }
}

fn load_cmd(a: LoadArgs) -> anyhow::Result<()> {
    let s = load::load(
        &a.server.opts()?,
        &load::LoadConfig { warehouses: a.warehouses, threads: a.threads, seed: a.seed },
        &os::STOP,
        &log,
    )?;
    println!("{}", serde_json::to_string_pretty(&s)?);
    Ok(())
}

fn run_cmd(a: RunArgs) -> anyhow::Result<()> {
    let cfg = driver::RunConfig {
        terminals: a.terminals,
        warmup: a.warmup,
        measure: a.measure,
        seed: a.seed,
        ..driver::RunConfig::default()
    };
    let r = driver::run(&a.server.opts()?, &cfg, &os::STOP)?;
    println!("{}", serde_json::to_string_pretty(&r)?);
    Ok(())
}

fn next_to_me(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn config(a: &BenchArgs) -> anyhow::Result<BenchConfig> {
    let work_dir = a.work_dir.clone().unwrap_or_else(|| {
        next_to_me("").parent().map(|d| d.join("tpcc-work")).unwrap_or_else(|| PathBuf::from("tpcc-work"))
    });
    let scenarios = if a.scenarios.is_empty() {
        // The in-run A/B (about 20 min a run) is asked for by name.
        harness::SCENARIOS.iter().filter(|s| s.ab.is_none()).map(|s| s.id.to_string()).collect()
    } else {
        a.scenarios.clone()
    };
    for id in &scenarios {
        if harness::scenario(id).is_none() {
            bail!(harness::BenchError::UnknownScenario(id.clone()));
        }
    }
    Ok(BenchConfig {
        warehouses: a.warehouses,
        buffer_pool_bytes: a.buffer_pool,
        log_file_bytes: a.log_file,
        terminals: a.terminals,
        warmup: a.warmup,
        measure: a.measure,
        runs: a.runs,
        load_threads: a.load_threads,
        work_dir,
        config_dir: a.config_dir.clone(),
        etmemd: a.etmemd.clone().unwrap_or_else(|| next_to_me("etmemd")),
        etmem: a.etmem.clone().unwrap_or_else(|| next_to_me("etmem")),
        scenarios,
        seed: a.seed,
        allow_install: !a.no_install,
        keep_data: a.keep_data,
        notes: a.note.clone(),
    })
}

fn templates(cfg: &BenchConfig) -> Vec<(String, String)> {
    harness::SCENARIOS
        .iter()
        .filter(|s| cfg.scenarios.iter().any(|x| x == s.id))
        .filter_map(|s| s.project)
        .filter_map(|p| std::fs::read_to_string(cfg.config_dir.join(p)).ok().map(|t| (p.to_string(), t)))
        .collect()
}

fn report_cmd(a: BenchArgs) -> anyhow::Result<()> {
    let cfg = config(&a)?;
    let raw = cfg.work_dir.join("results.json");
    let records: Vec<RunRecord> = serde_json::from_str(
        &std::fs::read_to_string(&raw).with_context(|| format!("cannot read {}", raw.display()))?,
    )
    .with_context(|| format!("cannot parse {}", raw.display()))?;
    let image_json = cfg.work_dir.join(format!("image-w{}/image.json", cfg.warehouses));
    let image: harness::Image = serde_json::from_str(
        &std::fs::read_to_string(&image_json)
            .with_context(|| format!("cannot read {}", image_json.display()))?,
    )?;
    let text = report::render(&report::ReportInput {
        cfg: &cfg,
        mariadb_version: &image.mariadb,
        image: &image,
        machine: &report::Machine::describe(),
        records: &records,
        templates: templates(&cfg),
        date: date(),
        elapsed_s: image.load_s + records.iter().map(|r| r.elapsed_s).sum::<f64>(),
        complete: true,
    });
    write_file(&a.out, &text)?;
    for g in report::goals(&records) {
        log(g);
    }
    Ok(())
}

fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let cfg = config(&a)?;
    for bin in [&cfg.etmemd, &cfg.etmem] {
        if !bin.exists() {
            bail!(
                "{} is not built: run `cargo build --release --bins` first (scripts/tpcc does)",
                bin.display()
            );
        }
    }
    std::fs::create_dir_all(&cfg.work_dir)
        .with_context(|| format!("cannot create {}", cfg.work_dir.display()))?;
    let machine = report::Machine::describe();
    let bins = mariadb::ensure_installed(cfg.allow_install, &log)?;
    log(format!("{}; work folder {}", bins.version, cfg.work_dir.display()));
    let (image_dir, image) = harness::prepare_image(&cfg, &bins, &log)?;
    let templates = templates(&cfg);
    let date = date();
    let write = |records: &[RunRecord], complete: bool| -> anyhow::Result<()> {
        let text = report::render(&report::ReportInput {
            cfg: &cfg,
            mariadb_version: &bins.version,
            image: &image,
            machine: &machine,
            records,
            templates: templates.clone(),
            date: date.clone(),
            elapsed_s: started.elapsed().as_secs_f64(),
            complete,
        });
        write_file(&a.out, &text)?;
        let raw = serde_json::to_string(&records)?;
        write_file(&cfg.work_dir.join("results.json"), &raw)?;
        Ok(())
    };
    let mut on_record = |records: &[RunRecord]| {
        if let Err(e) = write(records, false) {
            log(format!("cannot write partial results: {e:#}"));
        }
    };
    let records = harness::run_all(&cfg, &bins, &image_dir, &log, &mut on_record)?;
    write(&records, true)?;
    for g in report::goals(&records) {
        log(g);
    }
    log(format!(
        "results in {} (raw: {}); {:.0} min",
        a.out.display(),
        cfg.work_dir.join("results.json").display(),
        started.elapsed().as_secs_f64() / 60.0
    ));
    Ok(())
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
