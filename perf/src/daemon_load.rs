//! The daemon under load (issue 10): a real `etmemd` with many projects of
//! region-engine tasks on small real processes, then many concurrent real
//! `etmem` clients. Used by `bench-load` (the figures in
//! perf/results/reliability.md) and by the CI load test (tests/tests/load.rs).
//!
//! Everything [`run`] starts (the daemon, the workload processes, a zram
//! swap device for the refault probe) is held by guards and removed when it
//! returns, also on error or panic.

use crate::workload::{Child, SpawnError, SpawnOptions};
use etmemd::protocol::Response;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub etmemd: PathBuf,
    pub etmem: PathBuf,
    /// `etmem-workload`; `None`: [`crate::workload::locate_binary`].
    pub workload: Option<PathBuf>,
    pub projects: usize,
    pub tasks_per_project: usize,
    /// `etmem-workload --size` of each process (one per task).
    pub workload_size: String,
    /// Concurrent `etmem` processes.
    pub clients: usize,
    /// Requests each client sends, one after the other.
    pub requests_per_client: usize,
    /// The region engine's sampling and aggregation intervals.
    pub sample_interval: String,
    pub aggr_interval: String,
    /// Wait between the last project start and the first client, so that
    /// every task has aggregated at least once.
    pub settle: Duration,
    /// Read back every byte of every process at the end.
    pub verify_memory: bool,
}

impl LoadConfig {
    /// `projects` × `tasks_per_project` tasks and `clients` clients, with
    /// the defaults of `bench-load` for the rest.
    pub fn new(
        etmemd: PathBuf,
        etmem: PathBuf,
        projects: usize,
        tasks_per_project: usize,
        clients: usize,
    ) -> Self {
        LoadConfig {
            etmemd,
            etmem,
            workload: None,
            projects,
            tasks_per_project,
            workload_size: "4M".into(),
            clients,
            requests_per_client: 10,
            sample_interval: "100ms".into(),
            aggr_interval: "1s".into(),
            settle: Duration::from_secs(3),
            verify_memory: true,
        }
    }
}

/// Why the run could not be carried out (a request without an answer is
/// not an error: it is counted in the report).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("needs root (process_madvise on other processes, zram)")]
    NotRoot,
    #[error("zram is unusable: {0}")]
    ZramUnavailable(String),
    #[error("cannot create the zram swap device")]
    Zram(#[source] swap_backends::zram::ZramSetupError),
    #[error("cannot start workload process {index}")]
    Workload {
        index: usize,
        #[source]
        source: SpawnError,
    },
    #[error("workload process {index} (pid {pid}): {what}")]
    WorkloadCommand { index: usize, pid: u32, what: String },
    #[error("cannot run {path}")]
    Exec {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("etmemd did not listen within 30 s; its log:\n{log}")]
    NotListening { log: String },
    #[error("`etmem {args}` failed: {output}")]
    Setup { args: String, output: String },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted by a signal; cleaning up")]
    Interrupted,
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0 with the expected output.
    Answered,
    /// The daemon answered with an error, or the output was not the answer.
    Refused { code: i32, output: String },
    /// No answer: the client could not connect, timed out, or could not run.
    NoAnswer { code: i32, output: String },
}

/// One client request.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub client: usize,
    /// The request family (`project show`, `engine regions`, ...).
    pub kind: &'static str,
    pub args: Vec<String>,
    /// From spawning the `etmem` process to its exit.
    pub latency: Duration,
    pub outcome: Outcome,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub config: LoadConfig,
    /// `etmem obj add` then `etmem project start`, per project.
    pub setup: Vec<Duration>,
    pub requests: Vec<RequestRecord>,
    /// `etmem --version` (no daemon involved), for the cost of starting a client.
    pub cli_start: Vec<Duration>,
    pub client_phase: Duration,
    pub daemon_cpu_client_phase_s: f64,
    pub daemon_cpu_total_s: f64,
    /// From the daemon's start to the end of the client phase.
    pub daemon_wall: Duration,
    pub rss_before_clients_bytes: u64,
    pub rss_after_clients_bytes: u64,
    pub rss_peak_bytes: u64,
    pub daemon_threads: u64,
    pub daemon_alive: bool,
    pub projects_started: usize,
    /// Tasks whose process the engine monitors (per `project show`).
    pub tasks_monitoring: usize,
    pub probe: Option<String>,
    /// VmSwap of all workload processes after the clients: what the
    /// probe's samples paged out (cold_action stat pages out nothing else).
    pub workload_swap_bytes: u64,
    pub verified_bytes: u64,
    pub mismatched_bytes: u64,
}

impl LoadReport {
    pub fn answered(&self) -> usize {
        self.requests.iter().filter(|r| r.outcome == Outcome::Answered).count()
    }

    pub fn all_answered(&self) -> bool {
        self.answered() == self.requests.len()
    }

    /// The requests that were not answered, one line each.
    pub fn failures(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter(|r| r.outcome != Outcome::Answered)
            .map(|r| format!("client {}: etmem {}: {:?}", r.client, r.args.join(" "), r.outcome))
            .collect()
    }

    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let c = &self.config;
        let mut o = String::new();
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
        let tasks = c.projects * c.tasks_per_project;
        let _ = writeln!(
            o,
            "## etmemd under load: {} projects × {} tasks, {} concurrent clients\n",
            c.projects, c.tasks_per_project, c.clients
        );
        let _ = writeln!(
            o,
            "Real etmemd, {tasks} region-engine tasks (probe {}, sample {}, aggregation {}, cold_action \
             stat), each on its own `etmem-workload --size {}` process (filled, then paused); \
             {} real `etmem` processes at once, {} requests each, mixing `project show` (all \
             projects, one, JSON) and `engine regions` / `engine snapshot` of one task. Latency is \
             from spawning the client to its exit, so it includes starting the `etmem` process \
             (alone: p50 {} ms).\n",
            self.probe.as_deref().unwrap_or("?"),
            c.sample_interval,
            c.aggr_interval,
            c.workload_size,
            c.clients,
            c.requests_per_client,
            ms(percentile(&self.cli_start, 50.0)),
        );
        let lat: Vec<Duration> = self.requests.iter().map(|r| r.latency).collect();
        let slowest = self.requests.iter().max_by_key(|r| r.latency);
        let _ = writeln!(o, "| figure | value |\n|---|---|");
        let _ = writeln!(o, "| requests answered | {} of {} |", self.answered(), self.requests.len());
        let _ = writeln!(
            o,
            "| latency p50 / p99 / max | {} / {} / {} ms |",
            ms(percentile(&lat, 50.0)),
            ms(percentile(&lat, 99.0)),
            ms(percentile(&lat, 100.0))
        );
        if let Some(s) = slowest {
            let _ = writeln!(o, "| slowest request | `etmem {}`: {} ms |", s.args.join(" "), ms(s.latency));
        }
        let _ = writeln!(
            o,
            "| client phase | {:.1} s, {:.0} requests/s |",
            self.client_phase.as_secs_f64(),
            self.requests.len() as f64 / self.client_phase.as_secs_f64().max(1e-9)
        );
        let _ = writeln!(
            o,
            "| setup per project (obj add + project start) p50 / max | {} / {} ms |",
            ms(percentile(&self.setup, 50.0)),
            ms(percentile(&self.setup, 100.0))
        );
        let _ = writeln!(
            o,
            "| etmemd RSS before / after clients, peak (VmHWM) | {} / {}, {} |",
            mib(self.rss_before_clients_bytes),
            mib(self.rss_after_clients_bytes),
            mib(self.rss_peak_bytes)
        );
        let _ = writeln!(
            o,
            "| etmemd CPU during the client phase | {:.1} s = {:.0} % of one CPU |",
            self.daemon_cpu_client_phase_s,
            100.0 * self.daemon_cpu_client_phase_s / self.client_phase.as_secs_f64().max(1e-9)
        );
        let _ = writeln!(
            o,
            "| etmemd CPU, whole run | {:.1} s in {:.0} s = {:.0} % of one CPU |",
            self.daemon_cpu_total_s,
            self.daemon_wall.as_secs_f64(),
            100.0 * self.daemon_cpu_total_s / self.daemon_wall.as_secs_f64().max(1e-9)
        );
        let _ = writeln!(o, "| etmemd threads | {} |", self.daemon_threads);
        let _ = writeln!(
            o,
            "| after the clients | daemon {}, {} of {} projects started, {} of {tasks} tasks monitoring their process |",
            if self.daemon_alive { "alive" } else { "DEAD" },
            self.projects_started,
            c.projects,
            self.tasks_monitoring
        );
        let _ = writeln!(
            o,
            "| workload memory in swap after the clients (the probe's samples) | {} of {} |",
            mib(self.workload_swap_bytes),
            mib(tasks as u64 * crate::workload::units::parse_size_bytes(&c.workload_size).unwrap_or(0))
        );
        if c.verify_memory {
            let _ = writeln!(
                o,
                "| workload memory verified / lost | {} / {} bytes |",
                self.verified_bytes, self.mismatched_bytes
            );
        }
        let _ = writeln!(
            o,
            "\n| request | count | answered | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|"
        );
        let mut kinds: Vec<&str> = self.requests.iter().map(|r| r.kind).collect();
        kinds.sort();
        kinds.dedup();
        for k in kinds {
            let of: Vec<&RequestRecord> = self.requests.iter().filter(|r| r.kind == k).collect();
            let lat: Vec<Duration> = of.iter().map(|r| r.latency).collect();
            let _ = writeln!(
                o,
                "| `{k}` | {} | {} | {} | {} | {} |",
                of.len(),
                of.iter().filter(|r| r.outcome == Outcome::Answered).count(),
                ms(percentile(&lat, 50.0)),
                ms(percentile(&lat, 99.0)),
                ms(percentile(&lat, 100.0))
            );
        }
        let failures = self.failures();
        if !failures.is_empty() {
            let _ = writeln!(o, "\nUnanswered ({}):\n", failures.len());
            for f in failures.iter().take(20) {
                let _ = writeln!(o, "- {f}");
            }
        }
        o
    }
}

/// Nearest-rank percentile (`p` in 0..=100) of unsorted durations; zero when empty.
pub fn percentile(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let mut s = v.to_vec();
    s.sort();
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// The real etmemd on a socket in `dir`; SIGTERM then SIGKILL on drop.
#[derive(Debug)]
struct DaemonGuard {
    child: Option<std::process::Child>,
    socket: PathBuf,
    log: PathBuf,
}

impl DaemonGuard {
    fn start(etmemd: &Path, dir: &Path) -> Result<DaemonGuard, LoadError> {
        let log = dir.join("etmemd.log");
        let socket = dir.join("etmemd.sock");
        let file = std::fs::File::create(&log)
            .map_err(|source| LoadError::Io { what: format!("create {}", log.display()), source })?;
        let child = Command::new(etmemd)
            .arg("-s")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["-l", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|source| LoadError::Exec { path: etmemd.into(), source })?;
        let mut d = DaemonGuard { child: Some(child), socket, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&d.socket).is_err() {
            if !d.alive() || Instant::now() > deadline {
                let log = std::fs::read_to_string(&d.log).unwrap_or_default();
                return Err(LoadError::NotListening { log });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(d)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SIGTERM: the daemon stops every project (their threads) and exits.
        let _ = crate::tpcc::os::signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Run `etmem ARGS -s SOCKET`: (exit code, stdout, stderr, time taken).
fn etmem(cfg: &LoadConfig, socket: &Path, args: &[String]) -> (i32, String, String, Duration) {
    let t = Instant::now();
    let out = Command::new(&cfg.etmem).args(args).arg("-s").arg(socket).stdin(Stdio::null()).output();
    let took = t.elapsed();
    match out {
        Ok(o) => (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
            took,
        ),
        Err(e) => (-1, String::new(), format!("cannot run {}: {e}", cfg.etmem.display()), took),
    }
}

fn must(cfg: &LoadConfig, socket: &Path, args: &[&str]) -> Result<(String, Duration), LoadError> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    match etmem(cfg, socket, &args) {
        (0, out, _, took) => Ok((out, took)),
        (code, out, err, _) => {
            Err(LoadError::Setup { args: args.join(" "), output: format!("exit {code}: {out}{err}") })
        }
    }
}

fn project_name(i: usize) -> String {
    format!("load-{i:03}")
}

/// One project: the region engine, `tasks` tasks on the given pids, and a
/// policy that only counts (cold_action stat: nothing is paged out but the
/// probe's own samples).
fn project_toml(cfg: &LoadConfig, name: &str, pids: &[u32]) -> String {
    let mut t = format!(
        "[project]\nname = \"{name}\"\n\n[engine]\nkind = \"region\"\nsample_interval = \"{}\"\n\
         aggr_interval = \"{}\"\nupdate_interval = \"10s\"\nmin_nr_regions = 3\nmax_nr_regions = 20\n\n",
        cfg.sample_interval, cfg.aggr_interval
    );
    for (i, pid) in pids.iter().enumerate() {
        let _ = writeln!(t, "[[task]]\nname = \"t{i}\"\npid = {pid}\n");
    }
    t.push_str("[policy]\ncold_max_accesses = 0\ncold_min_age = \"5s\"\ncold_action = \"stat\"\n");
    t
}

/// A config file as etmemd requires it: root's, mode 0600.
fn write_private(path: &Path, text: &str) -> Result<(), LoadError> {
    let io = |source| LoadError::Io { what: format!("write {}", path.display()), source };
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

/// VmRSS, VmHWM and Threads of a process, in bytes (threads as a count).
fn proc_status(pid: u32) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok()).unwrap_or(0)
    };
    (field("VmRSS:") * 1024, field("VmHWM:") * 1024, field("Threads:"))
}

fn cpu_s(pid: u32) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| crate::tpcc::sample::cpu_ticks(&s))
        .unwrap_or(0);
    ticks as f64 / crate::tpcc::os::clock_ticks_per_s() as f64
}

fn check_stop(stop: Option<&AtomicBool>) -> Result<(), LoadError> {
    if stop.is_some_and(|s| s.load(Ordering::SeqCst)) { Err(LoadError::Interrupted) } else { Ok(()) }
}

/// The request client `client` sends as its `i`th: a deterministic mix of
/// the read-only commands an operator or a monitoring script runs.
fn request_for(cfg: &LoadConfig, client: usize, i: usize) -> (&'static str, Vec<String>) {
    // A small LCG over (client, i): every client sees every kind, spread
    // over projects and tasks.
    let h = (client as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add((i as u64).wrapping_mul(1442695040888963407));
    let h = h ^ (h >> 29);
    let project = project_name((h as usize / 7) % cfg.projects);
    let task = format!("t{}", (h as usize / 131) % cfg.tasks_per_project);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match (client + i) % 5 {
        0 => ("project show", s(&["project", "show"])),
        1 => ("project show -n", s(&["project", "show", "-n", &project])),
        2 => ("project show --json -n", s(&["project", "show", "--json", "-n", &project])),
        3 => ("engine regions", s(&["engine", "regions", "-n", &project, "-e", "region", "-t", &task])),
        _ => ("engine snapshot", s(&["engine", "snapshot", "-n", &project, "-e", "region", "-t", &task])),
    }
}

/// Whether `stdout` is the answer to `args` (exit 0 already seen).
fn is_answer(kind: &str, args: &[String], stdout: &str) -> bool {
    match kind {
        "project show" => stdout.contains("project load-"),
        "project show -n" | "project show --json -n" => {
            args.last().is_some_and(|p| stdout.contains(p.as_str()))
        }
        // A task with no aggregation yet answers with nothing: still an answer.
        _ => true,
    }
}

/// Carry out a run. `progress` gets a line per phase; `stop` (a signal
/// flag) ends the run early with [`LoadError::Interrupted`].
pub fn run(
    cfg: &LoadConfig,
    stop: Option<&AtomicBool>,
    progress: &dyn Fn(&str),
) -> Result<LoadReport, LoadError> {
    if !running_as_root() {
        return Err(LoadError::NotRoot);
    }
    if let Some(why) = swap_backends::zram::unavailable_reason() {
        return Err(LoadError::ZramUnavailable(why));
    }
    let dir = tempfile::Builder::new()
        .prefix("etmem-load")
        .tempdir()
        .map_err(|source| LoadError::Io { what: "create a temporary directory".into(), source })?;
    let tasks = cfg.projects * cfg.tasks_per_project;

    // Dropped last (locals drop in reverse order): swapoff after the
    // processes whose pages it holds are gone.
    let size_bytes = crate::workload::units::parse_size_bytes(&cfg.workload_size).unwrap_or(4 << 20);
    let zram = swap_backends::ZramSwap::create(
        &conf::ZramBackend {
            size_bytes: tasks as u64 * size_bytes * 5 / 4 + (64 << 20),
            compressor: "lzo-rle".into(),
            // The top priority, so that the probe's pages go here first.
            priority: swap_backends::zram::MAX_SWAP_PRIORITY,
            mem_limit_bytes: None,
        },
        None,
    )
    .map_err(LoadError::Zram)?;
    progress(&format!("zram swap {} for the refault probe", zram.device_path().display()));

    progress(&format!("starting {tasks} etmem-workload --size {} processes", cfg.workload_size));
    let opts =
        SpawnOptions { binary: cfg.workload.clone(), inherit_stderr: false, ..SpawnOptions::default() };
    let mut children: Vec<Child> = Vec::with_capacity(tasks);
    for index in 0..tasks {
        check_stop(stop)?;
        let mut c = Child::spawn_with(&opts, ["--size", cfg.workload_size.as_str(), "--threads", "1"])
            .map_err(|source| LoadError::Workload { index, source })?;
        let pid = c.pid();
        let ack = c.pause().map_err(|e| LoadError::WorkloadCommand { index, pid, what: e.to_string() })?;
        if !ack.complete {
            return Err(LoadError::WorkloadCommand { index, pid, what: format!("did not pause: {ack:?}") });
        }
        children.push(c);
    }

    let t_daemon = Instant::now();
    let mut daemon = DaemonGuard::start(&cfg.etmemd, dir.path())?;
    let dpid = daemon.pid();
    let socket = daemon.socket.clone();
    progress(&format!("etmemd pid {dpid}: adding and starting {} projects", cfg.projects));
    let mut setup = Vec::with_capacity(cfg.projects);
    for p in 0..cfg.projects {
        check_stop(stop)?;
        let name = project_name(p);
        let pids: Vec<u32> = children[p * cfg.tasks_per_project..(p + 1) * cfg.tasks_per_project]
            .iter()
            .map(Child::pid)
            .collect();
        let file = dir.path().join(format!("{name}.toml"));
        write_private(&file, &project_toml(cfg, &name, &pids))?;
        let path = file.to_string_lossy().into_owned();
        let (_, add) = must(cfg, &socket, &["obj", "add", "-f", &path])?;
        let (_, start) = must(cfg, &socket, &["project", "start", "-n", &name])?;
        setup.push(add + start);
    }
    progress(&format!("settling for {:.0} s", cfg.settle.as_secs_f64()));
    let settle_end = Instant::now() + cfg.settle;
    while Instant::now() < settle_end {
        check_stop(stop)?;
        std::thread::sleep(Duration::from_millis(50));
    }

    let cli_start: Vec<Duration> =
        (0..20).map(|_| etmem(cfg, &socket, &["--version".to_string()]).3).collect();

    progress(&format!("{} clients × {} requests", cfg.clients, cfg.requests_per_client));
    let (rss_before, _, _) = proc_status(dpid);
    let cpu_before = cpu_s(dpid);
    let records: Mutex<Vec<RequestRecord>> = Mutex::new(Vec::new());
    let barrier = Barrier::new(cfg.clients);
    let t_clients = Instant::now();
    std::thread::scope(|s| {
        for client in 0..cfg.clients {
            let (records, barrier, socket) = (&records, &barrier, &socket);
            s.spawn(move || {
                barrier.wait();
                for i in 0..cfg.requests_per_client {
                    if stop.is_some_and(|f| f.load(Ordering::SeqCst)) {
                        return;
                    }
                    let (kind, args) = request_for(cfg, client, i);
                    let (code, out, err, latency) = etmem(cfg, socket, &args);
                    let outcome = match code {
                        0 if is_answer(kind, &args, &out) => Outcome::Answered,
                        // 4: unreachable; 5: protocol error; -1: killed or not run.
                        4 | 5 | -1 => Outcome::NoAnswer { code, output: format!("{out}{err}") },
                        _ => Outcome::Refused { code, output: format!("{out}{err}") },
                    };
                    let rec = RequestRecord { client, kind, args, latency, outcome };
                    records.lock().unwrap_or_else(|p| p.into_inner()).push(rec);
                }
            });
        }
    });
    let client_phase = t_clients.elapsed();
    check_stop(stop)?;
    let cpu_after = cpu_s(dpid);
    let daemon_wall = t_daemon.elapsed();
    let (rss_after, hwm, threads) = proc_status(dpid);
    let daemon_alive = daemon.alive();

    let (mut projects_started, mut tasks_monitoring, mut probe) = (0, 0, None);
    if daemon_alive {
        let (out, _) = must(cfg, &socket, &["project", "show", "--json"])?;
        if let Ok(Response::Projects { projects }) = serde_json::from_str::<Response>(&out) {
            for p in &projects {
                projects_started += usize::from(p.started);
                for t in p.engines.iter().flat_map(|e| &e.tasks) {
                    if let Some(st) = &t.stats {
                        tasks_monitoring += usize::from(!st.pids.is_empty());
                        probe = probe.or_else(|| st.probe.clone());
                    }
                }
            }
        }
    }

    let workload_swap_bytes: u64 = children
        .iter()
        .map(|c| {
            std::fs::read_to_string(format!("/proc/{}/status", c.pid()))
                .ok()
                .and_then(|t| {
                    t.lines().find_map(|l| {
                        l.strip_prefix("VmSwap:")?.split_whitespace().next()?.parse::<u64>().ok()
                    })
                })
                .unwrap_or(0)
                * 1024
        })
        .sum();
    let (mut verified_bytes, mut mismatched_bytes) = (0, 0);
    if cfg.verify_memory {
        progress("verifying every byte of every workload process");
        for (index, c) in children.iter_mut().enumerate() {
            check_stop(stop)?;
            let pid = c.pid();
            let v = c.verify().map_err(|e| LoadError::WorkloadCommand { index, pid, what: e.to_string() })?;
            verified_bytes += v.bytes_checked;
            mismatched_bytes += v.mismatches;
        }
    }
    progress("stopping etmemd, the processes and the zram device");
    drop(daemon);
    drop(children);
    drop(zram);
    let requests = records.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(LoadReport {
        config: cfg.clone(),
        setup,
        requests,
        cli_start,
        client_phase,
        daemon_cpu_client_phase_s: cpu_after - cpu_before,
        daemon_cpu_total_s: cpu_after,
        daemon_wall,
        rss_before_clients_bytes: rss_before,
        rss_after_clients_bytes: rss_after,
        rss_peak_bytes: hwm,
        daemon_threads: threads,
        daemon_alive,
        projects_started,
        tasks_monitoring,
        probe,
        workload_swap_bytes,
        verified_bytes,
        mismatched_bytes,
    })
}

/// Effective uid 0, from /proc/self/status (`Uid: real effective ...`).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Uid:").and_then(|r| r.split_whitespace().nth(1)).map(|u| u == "0")
            })
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&v, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&v, 0.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn every_client_mixes_every_request_kind() {
        let cfg = LoadConfig::new("d".into(), "c".into(), 64, 4, 100);
        for client in 0..100 {
            let kinds: std::collections::BTreeSet<&str> =
                (0..5).map(|i| request_for(&cfg, client, i).0).collect();
            assert_eq!(kinds.len(), 5);
        }
        let projects: std::collections::BTreeSet<String> = (0..100)
            .flat_map(|c| (0..10).map(move |i| (c, i)))
            .map(|(c, i)| request_for(&cfg, c, i).1.join(" "))
            .collect();
        assert!(projects.len() > 200, "requests spread over projects and tasks: {}", projects.len());
    }
}
