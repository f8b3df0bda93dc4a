//! The benchmark harness: install and initialise MariaDB, load the TPC-C
//! database once (kept as an image in the work folder), and for each run of
//! each scenario copy the image, start our own mariadbd, start etmemd with
//! the scenario's project (a TOML template in `perf/configs/tpcc/`), drive
//! TPC-C, sample memory and CPU, and stop everything again. Every started
//! process and every changed setting has a guard that undoes it on drop.

use super::driver::{self, RunConfig, RunResult};
use super::load::{self, LoadConfig, LoadSummary};
use super::mariadb::{self, Binaries, Server, ServerConfig};
use super::os;
use super::sample::{Sample, Sampler, SamplerConfig};
use super::thp_ab;
use crate::bench::thp::{THP_ENABLED, ThpGuard, thp_mode};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use thiserror::Error;

/// How long a server may take to start (crash recovery of a copied image).
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the buffer pool load at start may take.
const BUFFER_POOL_LOAD_TIMEOUT: Duration = Duration::from_secs(900);
/// How long a clean mariadbd shutdown may take before SIGKILL.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(300);
/// Bumped when the loader or schema changes, so old images are reloaded.
const IMAGE_FORMAT: u32 = 1;

/// What a scenario does besides running TPC-C.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Scenario {
    pub id: &'static str,
    pub title: &'static str,
    /// The etmemd project template in the config folder, if etmemd runs.
    pub project: Option<&'static str>,
    /// The THP `enabled` mode for the run; `None` keeps the machine's.
    pub thp: Option<&'static str>,
    /// Sample AnonHugePages (a page-table walk) during the run.
    pub sample_thp: bool,
    /// Start mariadbd with the `thp_allow` shim: its own
    /// `prctl(PR_SET_THP_DISABLE)` becomes a no-op, as if it were mysqld.
    pub allow_thp: bool,
    /// Huge pages A/B inside the run (the project then runs during the
    /// warm-up only; see [`thp_ab`]).
    pub ab: Option<thp_ab::Plan>,
}

/// Every scenario the harness knows, in report order.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "baseline",
        title: "no migration (THP madvise, no action)",
        project: None,
        thp: None,
        sample_thp: true,
        allow_thp: false,
        ab: None,
    },
    Scenario {
        id: "cold-zram-watch",
        title: "cold-zram's monitoring only (region engine, refault probe, no action)",
        project: Some("cold-zram-watch.toml"),
        thp: None,
        sample_thp: false,
        allow_thp: false,
        ab: None,
    },
    Scenario {
        id: "cold-zram-watch-dense",
        title: "cold-zram-watch checking every region at every sample (max_probed_accesses 0)",
        project: Some("cold-zram-watch-dense.toml"),
        thp: None,
        sample_thp: false,
        allow_thp: false,
        ab: None,
    },
    Scenario {
        id: "cold-zram",
        title: "cold pages to zram (region engine)",
        project: Some("cold-zram.toml"),
        thp: None,
        sample_thp: false,
        allow_thp: false,
        ab: None,
    },
    Scenario {
        id: "cold-zram-aggressive",
        title: "cold and lukewarm pages to zram (region engine)",
        project: Some("cold-zram-aggressive.toml"),
        thp: None,
        sample_thp: false,
        allow_thp: false,
        ab: None,
    },
    Scenario {
        id: "cold-swapfile",
        title: "cold pages to a swap file (region engine)",
        project: Some("cold-swapfile.toml"),
        thp: None,
        sample_thp: false,
        allow_thp: false,
        ab: None,
    },
    Scenario {
        id: "cold-page",
        title: "cold pages to zram (page engine)",
        project: Some("cold-page.toml"),
        thp: None,
        sample_thp: false,
        allow_thp: false,
        ab: None,
    },
    Scenario {
        id: "thp-always",
        title: "THP always, no action",
        project: None,
        thp: Some("always"),
        sample_thp: true,
        allow_thp: true,
        ab: None,
    },
    Scenario {
        id: "thp-promote",
        title: "THP madvise + our promotion with demotion",
        project: Some("thp-promote.toml"),
        thp: None,
        sample_thp: true,
        allow_thp: true,
        ab: None,
    },
    Scenario {
        id: "thp-promote-all",
        title: "THP madvise + promotion of every fully populated unit (the bound for no added memory)",
        project: Some("thp-promote-all.toml"),
        thp: None,
        sample_thp: true,
        allow_thp: true,
        ab: None,
    },
    Scenario {
        id: "thp-ab",
        title: "THP madvise, in one run: all split / our promotion's choice / every fully populated unit collapsed",
        project: Some("thp-promote.toml"),
        thp: None,
        sample_thp: false,
        allow_thp: true,
        ab: Some(thp_ab::Plan {
            promote_for: Duration::from_secs(240),
            phase: Duration::from_secs(30),
            // A collapse of 3 GiB leaves work behind it (seen: the phase
            // after one ran 7-10 % slow with 5 s of settling).
            settle: Duration::from_secs(15),
            transition_budget: Duration::from_secs(20),
            cycles: 6,
        }),
    },
];

/// Look a scenario up by id.
pub fn scenario(id: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.id == id)
}

/// The whole benchmark's settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchConfig {
    pub warehouses: u32,
    pub buffer_pool_bytes: u64,
    /// innodb_log_file_size.
    pub log_file_bytes: u64,
    pub terminals: u32,
    pub warmup: Duration,
    pub measure: Duration,
    pub runs: u32,
    pub load_threads: u32,
    /// Images, run directories and raw results live here.
    pub work_dir: PathBuf,
    /// The project templates (`perf/configs/tpcc`).
    pub config_dir: PathBuf,
    pub etmemd: PathBuf,
    pub etmem: PathBuf,
    pub scenarios: Vec<String>,
    pub seed: u64,
    /// Install MariaDB with apt-get when it is missing.
    pub allow_install: bool,
    /// Keep each run's data directory (for debugging).
    pub keep_data: bool,
    /// Free-text lines for the report's setup section (e.g. which etmemd build ran).
    pub notes: Vec<String>,
}

impl BenchConfig {
    pub fn server(&self) -> ServerConfig {
        ServerConfig {
            buffer_pool_bytes: self.buffer_pool_bytes,
            log_file_bytes: self.log_file_bytes,
            ..ServerConfig::default()
        }
    }
}

/// Why the benchmark could not go on.
#[derive(Debug, Error)]
pub enum BenchError {
    #[error(transparent)]
    Install(#[from] mariadb::InstallError),
    #[error(transparent)]
    Init(#[from] mariadb::InitError),
    #[error(transparent)]
    Start(#[from] mariadb::StartError),
    #[error(transparent)]
    Load(#[from] load::LoadError),
    #[error("{what} ({path})")]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    #[error("unknown scenario {0:?}; known: {known}", known = SCENARIOS.iter().map(|s| s.id).collect::<Vec<_>>().join(", "))]
    UnknownScenario(String),
    #[error("stopped by a signal")]
    Interrupted,
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BenchError + 'a {
    move |source| BenchError::Io { what, path: path.to_path_buf(), source }
}

fn stopped() -> bool {
    os::STOP.load(Ordering::Relaxed)
}

/// The loaded database kept for the runs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Image {
    pub format: u32,
    pub warehouses: u32,
    pub mariadb: String,
    pub load_s: f64,
    pub rows: u64,
    /// The whole data directory (redo log included).
    pub bytes: u64,
    /// The `tpcc` database's files.
    pub tables_bytes: u64,
}

/// Bytes in a directory tree.
pub fn tree_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Load the database once: `work_dir/image-wW/data`, described by
/// `image.json`; reused while its format, warehouse count and MariaDB
/// version match.
pub fn prepare_image(
    cfg: &BenchConfig,
    bins: &Binaries,
    log: &(dyn Fn(String) + Sync),
) -> Result<(PathBuf, Image), BenchError> {
    let dir = cfg.work_dir.join(format!("image-w{}", cfg.warehouses));
    let (data, marker) = (dir.join("data"), dir.join("image.json"));
    if let Some(image) = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|t| serde_json::from_str::<Image>(&t).ok())
        .filter(|i| i.format == IMAGE_FORMAT && i.warehouses == cfg.warehouses && i.mariadb == bins.version)
    {
        log(format!("reusing the loaded image {} ({} MiB)", dir.display(), image.bytes >> 20));
        return Ok((data, image));
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io_err("cannot remove the old image", &dir))?;
    }
    let run = dir.join("run");
    std::fs::create_dir_all(&run).map_err(io_err("cannot create", &run))?;
    log(format!("initialising {}", data.display()));
    mariadb::init_datadir(bins, &data, &run.join("install-db.log"))?;
    // Loading: no log sync at all, no buffer pool to restore.
    let server_cfg =
        ServerConfig { flush_log_at_trx_commit: 0, load_buffer_pool_at_startup: false, ..cfg.server() };
    let mut server = Server::start(bins, &data, &run, &server_cfg, SERVER_START_TIMEOUT)?;
    log(format!("loading {} warehouses with {} threads", cfg.warehouses, cfg.load_threads));
    let summary: LoadSummary = load::load(
        &server.opts(),
        &LoadConfig { warehouses: cfg.warehouses, threads: cfg.load_threads, seed: cfg.seed },
        &os::STOP,
        log,
    )?;
    // A clean shutdown writes ib_buffer_pool (every page, dump_pct = 100):
    // each run starts warm, as a database that has been up for a while.
    server.stop(SERVER_STOP_TIMEOUT);
    let image = Image {
        format: IMAGE_FORMAT,
        warehouses: cfg.warehouses,
        mariadb: bins.version.clone(),
        load_s: summary.elapsed_s,
        rows: summary.rows,
        bytes: tree_bytes(&data),
        tables_bytes: tree_bytes(&data.join(super::schema::DATABASE)),
    };
    log(format!(
        "loaded {} rows in {:.0} s; the tables take {} MiB, the data directory {} MiB",
        image.rows,
        image.load_s,
        image.tables_bytes >> 20,
        image.bytes >> 20
    ));
    let text = serde_json::to_string_pretty(&image).unwrap_or_default();
    std::fs::write(&marker, text).map_err(io_err("cannot write", &marker))?;
    Ok((data, image))
}

/// Why etmemd or the project could not be started.
#[derive(Debug, Error)]
pub enum DaemonError {
    #[error("cannot run {path}")]
    Exec { path: PathBuf, source: io::Error },
    #[error("etmemd did not listen within 20 s; its log:\n{log}")]
    NotListening { log: String },
    #[error("`etmem {args}` failed: {output}")]
    Refused { args: String, output: String },
    #[error("cannot write {path}")]
    Config { path: PathBuf, source: io::Error },
}

/// A real etmemd on a socket in the run directory; on drop the project is
/// stopped (removing its swap devices) and the daemon gets SIGTERM.
#[derive(Debug)]
pub struct EtmemDaemon {
    child: Option<Child>,
    socket: PathBuf,
    etmem: PathBuf,
    log: PathBuf,
    project: Option<String>,
}

impl EtmemDaemon {
    pub fn start(etmemd: &Path, etmem: &Path, dir: &Path) -> Result<EtmemDaemon, DaemonError> {
        let log = dir.join("etmemd.log");
        let socket = dir.join("etmemd.sock");
        let file =
            std::fs::File::create(&log).map_err(|source| DaemonError::Exec { path: log.clone(), source })?;
        let child = Command::new(etmemd)
            .arg("-s")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["-l", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|source| DaemonError::Exec { path: etmemd.into(), source })?;
        let mut d = EtmemDaemon { child: Some(child), socket, etmem: etmem.into(), log, project: None };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&d.socket).is_err() {
            let exited = d.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                d.child = None;
                return Err(DaemonError::NotListening { log: mariadb::tail(&d.log, 20) });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Run the etmem CLI against this daemon: (success, stdout + stderr).
    pub fn etmem(&self, args: &[&str]) -> Result<(bool, String), DaemonError> {
        let out = Command::new(&self.etmem)
            .args(args)
            .arg("-s")
            .arg(&self.socket)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| DaemonError::Exec { path: self.etmem.clone(), source })?;
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Ok((out.status.success(), text))
    }

    fn must(&self, args: &[&str]) -> Result<String, DaemonError> {
        match self.etmem(args)? {
            (true, out) => Ok(out),
            (false, output) => {
                Err(DaemonError::Refused { args: args.join(" "), output: output.trim().into() })
            }
        }
    }

    /// Add the project file and start it.
    pub fn start_project(&mut self, config: &Path, name: &str) -> Result<(), DaemonError> {
        let path = config.to_string_lossy().into_owned();
        self.must(&["obj", "add", "-f", &path])?;
        self.must(&["project", "start", "-n", name])?;
        self.project = Some(name.to_string());
        Ok(())
    }

    /// `etmem project show` of the running project.
    pub fn show(&self) -> String {
        let Some(p) = &self.project else { return String::new() };
        self.etmem(&["project", "show", "-n", p]).map(|(_, t)| t).unwrap_or_default()
    }

    /// The swap devices the project set up (`backend KIND DEVICE ...` lines).
    pub fn devices(&self) -> Vec<String> {
        self.show()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("backend "))
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect()
    }

    /// Stop the project (its swap devices go) and the daemon.
    pub fn stop(&mut self) {
        if let Some(p) = self.project.take()
            && let Ok((false, out)) = self.etmem(&["project", "stop", "-n", &p])
        {
            eprintln!("tpcc: etmem project stop -n {p} failed: {}", out.trim());
        }
        if let Some(mut child) = self.child.take() {
            let _ = os::signal(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for EtmemDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The project's name: the first `name = "..."` after `[project]`.
pub fn project_name(toml: &str) -> Option<String> {
    let after = &toml[toml.find("[project]")?..];
    after.lines().skip(1).find_map(|l| {
        let v = l.trim().strip_prefix("name")?.trim_start().strip_prefix('=')?.trim();
        Some(v.trim_matches('"').to_string())
    })
}

/// A template with `@PID@` and `@RUN_DIR@` filled in.
pub fn render_project(template: &str, pid: u32, run_dir: &Path) -> String {
    template.replace("@PID@", &pid.to_string()).replace("@RUN_DIR@", &run_dir.to_string_lossy())
}

/// The swap areas in /proc/swaps.
pub fn active_swaps() -> Vec<String> {
    std::fs::read_to_string("/proc/swaps")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RunStatus {
    Done,
    /// The scenario cannot run on this build or host (e.g. its engine is
    /// not there yet).
    Pending(String),
    Failed(String),
}

/// One run of one scenario.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    pub scenario: String,
    pub run: u32,
    pub status: RunStatus,
    pub tpm_total: f64,
    pub tpmc: f64,
    /// mariadbd VmRSS at the end of the measured window, MiB.
    pub rss_mib_end: f64,
    /// Median VmRSS over the measured window, MiB.
    pub rss_mib_median: f64,
    pub swap_mib_end: f64,
    /// Median MemTotal - MemFree over the measured window, MiB.
    pub sys_used_mib_median: f64,
    /// Median MemTotal - MemAvailable over the measured window, MiB.
    pub sys_unavailable_mib_median: f64,
    /// etmemd's mean CPU over the measured window, % of one CPU.
    pub daemon_cpu_pct: Option<f64>,
    /// etmemd's mean CPU over warm-up and measurement.
    pub daemon_cpu_pct_all: Option<f64>,
    pub db_cpu_pct: Option<f64>,
    pub anon_huge_mib_end: Option<f64>,
    pub zram_used_mib_end: Option<f64>,
    pub thp_mode: Option<String>,
    /// The 1-minute load average at the end (other work on the machine shows here).
    pub loadavg_end: Option<f64>,
    /// Swap areas active at the end of the run that the project did not
    /// create (another job's): pageouts may have gone there too.
    #[serde(default)]
    pub foreign_swaps: Vec<String>,
    pub project_show: String,
    pub driver: Option<RunResult>,
    pub samples: Vec<Sample>,
    pub elapsed_s: f64,
    /// The huge pages A/B of a `thp-ab` run.
    #[serde(default)]
    pub ab: Option<thp_ab::AbRun>,
}

impl RunRecord {
    fn empty(scenario: &str, run: u32, status: RunStatus) -> RunRecord {
        RunRecord {
            scenario: scenario.to_string(),
            run,
            status,
            tpm_total: 0.0,
            tpmc: 0.0,
            rss_mib_end: 0.0,
            rss_mib_median: 0.0,
            swap_mib_end: 0.0,
            sys_used_mib_median: 0.0,
            sys_unavailable_mib_median: 0.0,
            daemon_cpu_pct: None,
            daemon_cpu_pct_all: None,
            db_cpu_pct: None,
            anon_huge_mib_end: None,
            zram_used_mib_end: None,
            thp_mode: None,
            loadavg_end: None,
            foreign_swaps: Vec::new(),
            project_show: String::new(),
            driver: None,
            samples: Vec::new(),
            elapsed_s: 0.0,
            ab: None,
        }
    }
}

/// The median of some values (the mean of the middle two for an even count); 0 when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Fill a record's memory and CPU figures from the samples of its window.
fn summarise(rec: &mut RunRecord, samples: &[Sample], window: (Instant, Instant)) {
    let in_window: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at.is_some_and(|a| a >= window.0 && a <= window.1 + Duration::from_secs(1)))
        .collect();
    let mib = |kib: u64| kib as f64 / 1024.0;
    if let Some(last) = in_window.last() {
        rec.rss_mib_end = mib(last.rss_kib);
        rec.swap_mib_end = mib(last.swap_kib);
        rec.zram_used_mib_end = last.zram_used_bytes.map(|b| b as f64 / (1 << 20) as f64);
    }
    rec.anon_huge_mib_end = in_window.iter().rev().find_map(|s| s.anon_huge_kib).map(mib);
    rec.rss_mib_median = median(in_window.iter().map(|s| mib(s.rss_kib)).collect());
    rec.sys_used_mib_median = median(in_window.iter().map(|s| mib(s.sys_used_kib)).collect());
    rec.sys_unavailable_mib_median = median(in_window.iter().map(|s| mib(s.sys_unavailable_kib)).collect());
    let daemon: Vec<f64> = in_window.iter().filter_map(|s| s.daemon_cpu_pct).collect();
    rec.daemon_cpu_pct = mean(&daemon);
    let all: Vec<f64> = samples.iter().filter_map(|s| s.daemon_cpu_pct).collect();
    rec.daemon_cpu_pct_all = mean(&all);
    let db: Vec<f64> = in_window.iter().filter_map(|s| s.db_cpu_pct).collect();
    rec.db_cpu_pct = mean(&db);
}

/// Run one scenario once on a fresh copy of the image.
pub fn run_once(
    cfg: &BenchConfig,
    bins: &Binaries,
    image: &Path,
    sc: &Scenario,
    run: u32,
    log: &(dyn Fn(String) + Sync),
) -> Result<RunRecord, BenchError> {
    let started = Instant::now();
    let dir = cfg.work_dir.join("runs").join(format!("{}-{run}", sc.id));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io_err("cannot clean", &dir))?;
    }
    std::fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
    // Only root may read the configs etmemd is given.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io_err("cannot chmod", &dir))?;
    let template = match sc.project {
        Some(file) => {
            let path = cfg.config_dir.join(file);
            Some(std::fs::read_to_string(&path).map_err(io_err("cannot read the project template", &path))?)
        }
        None => None,
    };
    let data = dir.join("data");
    let bytes = mariadb::copy_tree(image, &data).map_err(io_err("cannot copy the image", &data))?;
    log(format!("{} run {run}: copied {} MiB of data", sc.id, bytes >> 20));
    let _thp = match sc.thp {
        Some(mode) => Some(ThpGuard::set(mode).map_err(io_err("cannot set THP", Path::new(THP_ENABLED)))?),
        None => None,
    };
    let result = run_in(cfg, bins, &dir, &data, sc, run, template.as_deref(), log);
    if !cfg.keep_data {
        let _ = std::fs::remove_dir_all(&data);
    }
    let mut rec = result?;
    rec.elapsed_s = started.elapsed().as_secs_f64();
    Ok(rec)
}

#[allow(clippy::too_many_arguments)]
fn run_in(
    cfg: &BenchConfig,
    bins: &Binaries,
    dir: &Path,
    data: &Path,
    sc: &Scenario,
    run: u32,
    template: Option<&str>,
    log: &(dyn Fn(String) + Sync),
) -> Result<RunRecord, BenchError> {
    let mut server_cfg = cfg.server();
    if sc.allow_thp {
        match crate::tpcc::thp_allow::build(&cfg.work_dir) {
            Ok(shim) => server_cfg.preload = Some(shim),
            Err(e) => return Ok(RunRecord::empty(sc.id, run, RunStatus::Failed(e))),
        }
    }
    let mut server = Server::start(bins, data, dir, &server_cfg, SERVER_START_TIMEOUT)?;
    let t = Instant::now();
    if let Err(e) = server.wait_buffer_pool_loaded(BUFFER_POOL_LOAD_TIMEOUT) {
        return Ok(RunRecord::empty(sc.id, run, RunStatus::Failed(e.to_string())));
    }
    if stopped() {
        return Err(BenchError::Interrupted);
    }
    log(format!(
        "{} run {run}: mariadbd {} up, buffer pool loaded in {:.0} s",
        sc.id,
        server.pid(),
        t.elapsed().as_secs_f64()
    ));
    let mut daemon = None;
    if let Some(template) = template {
        let text = render_project(template, server.pid(), dir);
        let name = project_name(&text).unwrap_or_else(|| "tpcc".into());
        let path = dir.join("project.toml");
        std::fs::write(&path, &text).map_err(io_err("cannot write", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err("cannot chmod", &path))?;
        let mut d = match EtmemDaemon::start(&cfg.etmemd, &cfg.etmem, dir) {
            Ok(d) => d,
            Err(e) => return Ok(RunRecord::empty(sc.id, run, RunStatus::Failed(e.to_string()))),
        };
        if let Err(e) = d.start_project(&path, &name) {
            log(format!("{} run {run}: the project did not start: {e}", sc.id));
            return Ok(RunRecord::empty(sc.id, run, RunStatus::Pending(e.to_string())));
        }
        daemon = Some(d);
    }
    let sampler = Sampler::start(SamplerConfig {
        db_pid: server.pid(),
        daemon_pid: daemon.as_ref().and_then(EtmemDaemon::pid),
        interval: Duration::from_secs(1),
        smaps_every: sc.sample_thp.then_some(5),
    });
    if let Some(d) = &daemon {
        sampler.set_zram(d.devices().into_iter().filter(|x| x.starts_with("/dev/zram")).collect());
    }
    // An A/B run measures as long as its phases need; etmemd's promotion
    // runs during the warm-up only, then the controller takes over.
    let (warmup, measure) = match &sc.ab {
        Some(plan) => (cfg.warmup.max(plan.promote_for), plan.measured()),
        None => (cfg.warmup, cfg.measure),
    };
    log(format!(
        "{} run {run}: {} terminals, {} s warm-up, {} s measured",
        sc.id,
        cfg.terminals,
        warmup.as_secs(),
        measure.as_secs()
    ));
    let run_cfg = RunConfig {
        terminals: cfg.terminals,
        warmup,
        measure,
        seed: cfg.seed.wrapping_add(run as u64),
        ..RunConfig::default()
    };
    let ab_daemon = if sc.ab.is_some() { daemon.take() } else { None };
    let mut ab_show = String::new();
    let db_pid = server.pid();
    // The A/B ends the driver once its last phase is measured (or on SIGINT).
    let ab_done = std::sync::atomic::AtomicBool::new(false);
    let (driven, ab) = std::thread::scope(|s| {
        let controller = sc.ab.map(|plan| {
            let ab_done = &ab_done;
            let plan = thp_ab::Plan { promote_for: warmup, ..plan };
            let start = Instant::now();
            let show = &mut ab_show;
            s.spawn(move || {
                let stop_promotion = move || {
                    if let Some(mut d) = ab_daemon {
                        *show = d.show();
                        d.stop();
                    }
                };
                let ab = thp_ab::control(
                    db_pid,
                    &plan,
                    start,
                    start + warmup + measure,
                    &os::STOP,
                    stop_promotion,
                    log,
                );
                ab_done.store(true, Ordering::SeqCst);
                ab
            })
        });
        let stop = if sc.ab.is_some() { &ab_done } else { &os::STOP };
        let driven = driver::run(&server.opts(), &run_cfg, stop);
        (driven, controller.map(|h| h.join().unwrap_or_default()))
    });
    // An A/B run's daemon was taken and stopped by its controller.
    let show = daemon.as_ref().map(EtmemDaemon::show).unwrap_or(ab_show);
    let ours = daemon.as_ref().map(EtmemDaemon::devices).unwrap_or_default();
    let foreign_swaps = active_swaps().into_iter().filter(|s| !ours.contains(s)).collect();
    let samples = sampler.finish();
    // mariadbd first: the project's swapoff then has nothing to bring back.
    server.stop(SERVER_STOP_TIMEOUT);
    drop(daemon);
    if stopped() {
        return Err(BenchError::Interrupted);
    }
    let mut rec = RunRecord::empty(sc.id, run, RunStatus::Done);
    rec.thp_mode = thp_mode();
    rec.loadavg_end = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|x| x.parse().ok()));
    rec.project_show = show;
    rec.foreign_swaps = foreign_swaps;
    match driven {
        Ok(r) => {
            rec.tpm_total = r.tpm_total;
            rec.tpmc = r.tpmc;
            summarise(&mut rec, &samples, r.window);
            log(format!(
                "{} run {run}: tpmTotal {:.0}, tpmC {:.0}, VmRSS {:.0} MiB, VmSwap {:.0} MiB, etmemd CPU {}",
                sc.id,
                rec.tpm_total,
                rec.tpmc,
                rec.rss_mib_end,
                rec.swap_mib_end,
                rec.daemon_cpu_pct.map_or("-".into(), |c| format!("{c:.1} %"))
            ));
            if let Some(mut ab) = ab {
                let t0 = r.window.0 - warmup;
                let points: Vec<(Instant, Option<f64>, f64)> = samples
                    .iter()
                    .filter_map(|x| x.at.map(|at| (at, x.db_cpu_pct, x.rss_kib as f64 / 1024.0)))
                    .collect();
                ab.fill(t0, &r.per_second, &points);
                rec.ab = Some(ab);
            }
            rec.driver = Some(r);
        }
        Err(e) => rec.status = RunStatus::Failed(e.to_string()),
    }
    rec.samples = samples;
    Ok(rec)
}

/// Run every selected scenario `runs` times, interleaved (run 1 of each,
/// then run 2 of each, ...) so that slow drifts of the machine spread over
/// all scenarios. A scenario found pending is not tried again. `on_record`
/// sees each record as it comes (to write partial results).
pub fn run_all(
    cfg: &BenchConfig,
    bins: &Binaries,
    image: &Path,
    log: &(dyn Fn(String) + Sync),
    on_record: &mut dyn FnMut(&[RunRecord]),
) -> Result<Vec<RunRecord>, BenchError> {
    let scenarios: Vec<&Scenario> = cfg
        .scenarios
        .iter()
        .map(|id| scenario(id).ok_or_else(|| BenchError::UnknownScenario(id.clone())))
        .collect::<Result<_, _>>()?;
    let mut records: Vec<RunRecord> = Vec::new();
    for run in 1..=cfg.runs {
        for sc in &scenarios {
            if records.iter().any(|r| r.scenario == sc.id && matches!(r.status, RunStatus::Pending(_))) {
                continue;
            }
            if stopped() {
                return Err(BenchError::Interrupted);
            }
            let rec = match run_once(cfg, bins, image, sc, run, log) {
                Ok(r) => r,
                Err(BenchError::Interrupted) => return Err(BenchError::Interrupted),
                Err(e) => {
                    log(format!("{} run {run} failed: {e}", sc.id));
                    RunRecord::empty(sc.id, run, RunStatus::Failed(e.to_string()))
                }
            };
            records.push(rec);
            on_record(&records);
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_and_named() {
        let t = "[project]\nname = \"tpcc-cold\"\n\n[[task]]\npid = @PID@\npath = \"@RUN_DIR@/swap\"\n";
        let r = render_project(t, 4242, Path::new("/tmp/x"));
        assert!(r.contains("pid = 4242") && r.contains("\"/tmp/x/swap\""));
        assert_eq!(project_name(&r).as_deref(), Some("tpcc-cold"));
        assert_eq!(project_name("name = \"x\""), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn every_project_template_exists_and_names_its_project() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tpcc");
        for sc in SCENARIOS {
            let Some(file) = sc.project else { continue };
            let text = std::fs::read_to_string(dir.join(file)).expect("template");
            assert!(text.contains("@PID@"), "{file} does not target the server by pid");
            assert!(project_name(&text).is_some(), "{file} has no [project] name");
        }
    }
}
