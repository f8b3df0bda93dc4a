//! `etmem-workload` as a child process, for tests, demos and benchmarks:
//! spawn it, wait for its `ready` line, send commands, kill and reap it on drop.
//!
//! Finding the binary: `$ETMEM_WORKLOAD_BIN` if set; otherwise, when running
//! under cargo (`$CARGO` set, e.g. in `cargo test`), it runs
//! `cargo build -p perf --bin etmem-workload` once per process into the target
//! directory the current executable lives in (cargo does not hold its lock while
//! tests run), so the binary is never missing or stale; set
//! `ETMEM_WORKLOAD_AUTOBUILD=0` to skip that. Then it looks next to the current
//! executable and one directory up (`target/<profile>/deps/..`).

use super::os;
use super::protocol::{
    Event, GroundTruth, PROTOCOL_VERSION, PauseAck, PhaseChange, Ready, RegionInfo, StatsReport, VerifyReport,
};
use damon_core::AddrRange;
use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Names the binary to run, overriding every search.
pub const ENV_BIN: &str = "ETMEM_WORKLOAD_BIN";
/// `0` turns the automatic `cargo build` off.
pub const ENV_AUTOBUILD: &str = "ETMEM_WORKLOAD_AUTOBUILD";
/// The binary's file name.
pub const BIN_NAME: &str = "etmem-workload";
/// How long [`Child::spawn`] waits for the ready line (filling GiBs takes seconds).
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a command waits for its reply (a verify that swaps in GiBs is slow).
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long [`Child::quit`] waits for the process to exit.
pub const DEFAULT_EXIT_TIMEOUT: Duration = Duration::from_secs(300);

/// Why the binary was not found.
#[derive(Debug, Clone, Error)]
pub enum LocateError {
    #[error("{ENV_BIN}={path} does not name an existing file")]
    EnvNotAFile { path: PathBuf },
    #[error(
        "{BIN_NAME} not found (looked in {searched}); build it with `cargo build -p perf --bin {BIN_NAME}` \
         (same target dir and profile as the tests) or set {ENV_BIN}{build_note}"
    )]
    NotFound { searched: String, build_note: String },
}

/// Why [`Child::spawn`] failed.
#[derive(Debug, Error)]
pub enum SpawnError {
    #[error(transparent)]
    Locate(#[from] LocateError),
    #[error("cannot start {binary}")]
    Exec {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{binary} printed no ready line within {timeout_s} s")]
    ReadyTimeout { binary: PathBuf, timeout_s: u64 },
    #[error("{binary} exited before it was ready ({status}); its stderr says why")]
    ExitedBeforeReady { binary: PathBuf, status: String },
    #[error("{binary} printed '{line}' where the ready line was expected")]
    BadReady { binary: PathBuf, line: String },
    #[error("{binary} speaks protocol {found}, this library {expected}: rebuild it")]
    Protocol { binary: PathBuf, expected: u32, found: u32 },
}

/// Why a command to the child failed.
#[derive(Debug, Error)]
pub enum CommandError {
    #[error("cannot send '{command}' to workload pid {pid}")]
    Send {
        command: String,
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("workload pid {pid} did not answer '{command}' within {timeout_s} s")]
    Timeout { command: String, pid: u32, timeout_s: u64 },
    #[error("workload pid {pid} exited before answering '{command}'")]
    Exited { command: String, pid: u32 },
    #[error("workload pid {pid} refused '{command}': {message}")]
    Refused { command: String, pid: u32, message: String },
    #[error("cannot signal workload pid {pid}")]
    Signal {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot wait for workload pid {pid}")]
    Wait {
        pid: u32,
        #[source]
        source: io::Error,
    },
}

/// How to spawn.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// The binary; `None`: [`locate_binary`].
    pub binary: Option<PathBuf>,
    pub ready_timeout: Duration,
    pub reply_timeout: Duration,
    /// Pass the child's stderr through (true) or discard it.
    pub inherit_stderr: bool,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            binary: None,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            inherit_stderr: true,
        }
    }
}

/// How the child ended.
#[derive(Debug, Clone)]
pub struct ExitReport {
    pub status: ExitStatus,
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    pub final_stats: Option<StatsReport>,
    pub final_verify: Option<VerifyReport>,
    /// Every other line seen after the last command.
    pub events: Vec<Event>,
}

/// A stdout line as the reader thread passes it on.
#[derive(Debug)]
enum Line {
    Event(Event),
    /// Not a protocol line (kept out of the way, not an error).
    Garbage(String),
}

/// A running `etmem-workload`. Killed (SIGKILL) and reaped on drop unless it already exited.
#[derive(Debug)]
pub struct Child {
    process: std::process::Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    ready: Ready,
    backlog: Vec<Event>,
    reply_timeout: Duration,
    reaped: bool,
}

impl Child {
    /// Spawns `etmem-workload ARGS` and waits for its ready line.
    pub fn spawn<I, S>(args: I) -> Result<Child, SpawnError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Child::spawn_with(&SpawnOptions::default(), args)
    }

    /// [`Child::spawn`] with options.
    pub fn spawn_with<I, S>(options: &SpawnOptions, args: I) -> Result<Child, SpawnError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let binary = match &options.binary {
            Some(b) => b.clone(),
            None => locate_binary()?,
        };
        let mut process = Command::new(&binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if options.inherit_stderr { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .map_err(|source| SpawnError::Exec { binary: binary.clone(), source })?;
        let stdin = process.stdin.take();
        let stdout = process.stdout.take();
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = stdout {
            // Ends at EOF, when the child exits; dropping `tx` then disconnects `rx`.
            let spawned = std::thread::Builder::new().name("wl-child-stdout".into()).spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let msg = match serde_json::from_str::<Event>(&line) {
                        Ok(e) => Line::Event(e),
                        Err(_) => Line::Garbage(line),
                    };
                    if tx.send(msg).is_err() {
                        break;
                    }
                }
            });
            if let Err(source) = spawned {
                let _ = process.kill();
                let _ = process.wait();
                return Err(SpawnError::Exec { binary, source });
            }
        }
        let ready = match rx.recv_timeout(options.ready_timeout) {
            Ok(Line::Event(Event::Ready(ready))) if ready.protocol == PROTOCOL_VERSION => Ok(ready),
            Ok(Line::Event(Event::Ready(ready))) => {
                Err(SpawnError::Protocol { binary, expected: PROTOCOL_VERSION, found: ready.protocol })
            }
            Ok(Line::Event(other)) => {
                Err(SpawnError::BadReady { binary, line: serde_json::to_string(&other).unwrap_or_default() })
            }
            Ok(Line::Garbage(line)) => Err(SpawnError::BadReady { binary, line }),
            Err(RecvTimeoutError::Timeout) => {
                Err(SpawnError::ReadyTimeout { binary, timeout_s: options.ready_timeout.as_secs() })
            }
            Err(RecvTimeoutError::Disconnected) => {
                // Stdout closed: the process has exited or is about to; wait reaps it.
                let status = match process.wait() {
                    Ok(s) => s.to_string(),
                    Err(e) => format!("status unknown: {e}"),
                };
                Err(SpawnError::ExitedBeforeReady { binary, status })
            }
        };
        match ready {
            Ok(ready) => Ok(Child {
                process,
                stdin,
                lines: rx,
                ready,
                backlog: Vec::new(),
                reply_timeout: options.reply_timeout,
                reaped: false,
            }),
            Err(e) => {
                // Already reaped after an early exit: kill and wait then fail harmlessly.
                let _ = process.kill();
                let _ = process.wait();
                Err(e)
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The ready line.
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    pub fn regions(&self) -> &[RegionInfo] {
        &self.ready.regions
    }

    pub fn region(&self, name: &str) -> Option<&RegionInfo> {
        self.ready.regions.iter().find(|r| r.name == name)
    }

    /// Ranges of the regions accessed in the first phase.
    pub fn hot_ranges(&self) -> Vec<AddrRange> {
        self.ready.regions.iter().filter(|r| r.hot).map(RegionInfo::range).collect()
    }

    /// Ranges of the regions not accessed in the first phase.
    pub fn cold_ranges(&self) -> Vec<AddrRange> {
        self.ready.regions.iter().filter(|r| !r.hot).map(RegionInfo::range).collect()
    }

    /// Sum of all region sizes.
    pub fn total_bytes(&self) -> u64 {
        self.ready.regions.iter().map(|r| r.size).sum()
    }

    pub fn stats(&mut self) -> Result<StatsReport, CommandError> {
        match self.request("stats", |e| matches!(e, Event::Stats(_)))? {
            Event::Stats(s) => Ok(s),
            _ => unreachable!("request returns only matching events"),
        }
    }

    pub fn verify(&mut self) -> Result<VerifyReport, CommandError> {
        match self.request("verify", |e| matches!(e, Event::Verify(_)))? {
            Event::Verify(v) => Ok(v),
            _ => unreachable!("request returns only matching events"),
        }
    }

    /// Stops accesses; check `complete` for whether every access thread stopped.
    pub fn pause(&mut self) -> Result<PauseAck, CommandError> {
        match self.request("pause", |e| matches!(e, Event::Paused(_)))? {
            Event::Paused(a) => Ok(a),
            _ => unreachable!("request returns only matching events"),
        }
    }

    pub fn resume(&mut self) -> Result<(), CommandError> {
        self.request("resume", |e| matches!(e, Event::Resumed)).map(|_| ())
    }

    pub fn ground_truth(&mut self) -> Result<GroundTruth, CommandError> {
        match self.request("ground-truth", |e| matches!(e, Event::GroundTruth(_)))? {
            Event::GroundTruth(g) => Ok(g),
            _ => unreachable!("request returns only matching events"),
        }
    }

    /// Waits for the phase named `name` to start (or to have started since the
    /// last call that consumed events).
    pub fn wait_for_phase(&mut self, name: &str, timeout: Duration) -> Result<PhaseChange, CommandError> {
        match self.wait_for_event(timeout, |e| matches!(e, Event::Phase(p) if p.name == name))? {
            Event::Phase(p) => Ok(p),
            _ => unreachable!("wait_event returns only matching events"),
        }
    }

    /// Events seen while waiting for replies (phase changes, intervals), oldest first.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.backlog)
    }

    /// Sends one raw command line and returns the first event `want` accepts;
    /// other events are kept for [`Child::take_events`].
    pub fn request(&mut self, command: &str, want: impl Fn(&Event) -> bool) -> Result<Event, CommandError> {
        self.send(command)?;
        self.wait_for_reply(command, self.reply_timeout, want)
    }

    /// Sends a command line without waiting for its reply.
    pub fn send(&mut self, command: &str) -> Result<(), CommandError> {
        let pid = self.pid();
        let stdin = self.stdin.as_mut().ok_or_else(|| CommandError::Send {
            command: command.to_owned(),
            pid,
            source: io::Error::from(io::ErrorKind::BrokenPipe),
        })?;
        writeln!(stdin, "{command}").and_then(|()| stdin.flush()).map_err(|source| CommandError::Send {
            command: command.to_owned(),
            pid,
            source,
        })
    }

    /// Waits for an event `want` accepts (phase, interval, done, ...), looking
    /// first at the events seen while waiting for replies; earlier events are dropped.
    pub fn wait_for_event(
        &mut self,
        timeout: Duration,
        want: impl Fn(&Event) -> bool,
    ) -> Result<Event, CommandError> {
        if let Some(i) = self.backlog.iter().position(&want) {
            let event = self.backlog.remove(i);
            // Drop what came before it: it is history now.
            self.backlog.drain(..i);
            return Ok(event);
        }
        self.wait_for_reply("(wait for an event)", timeout, want)
    }

    fn wait_for_reply(
        &mut self,
        command: &str,
        timeout: Duration,
        want: impl Fn(&Event) -> bool,
    ) -> Result<Event, CommandError> {
        let pid = self.pid();
        let deadline = Instant::now() + timeout;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(wait) {
                Ok(Line::Event(e)) if want(&e) => return Ok(e),
                Ok(Line::Event(Event::Error(err))) => {
                    return Err(CommandError::Refused {
                        command: command.to_owned(),
                        pid,
                        message: err.message,
                    });
                }
                Ok(Line::Event(e)) => self.backlog.push(e),
                Ok(Line::Garbage(_)) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(CommandError::Timeout {
                        command: command.to_owned(),
                        pid,
                        timeout_s: timeout.as_secs(),
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(CommandError::Exited { command: command.to_owned(), pid });
                }
            }
        }
    }

    /// Sends `quit` and waits for the process to exit, collecting its final lines.
    pub fn quit(mut self) -> Result<ExitReport, CommandError> {
        self.send("quit")?;
        self.wait_exit(DEFAULT_EXIT_TIMEOUT)
    }

    /// Sends SIGTERM and waits for the process to exit, collecting its final lines.
    pub fn terminate(mut self) -> Result<ExitReport, CommandError> {
        let pid = self.pid();
        os::send_signal(pid, libc::SIGTERM).map_err(|source| CommandError::Signal { pid, source })?;
        self.wait_exit(DEFAULT_EXIT_TIMEOUT)
    }

    /// Closes stdin (the child then exits unless run with --no-stdin) and waits for the exit.
    pub fn close_stdin(mut self) -> Result<ExitReport, CommandError> {
        self.stdin = None;
        self.wait_exit(DEFAULT_EXIT_TIMEOUT)
    }

    /// Reads lines until stdout closes, then reaps the process.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitReport, CommandError> {
        let pid = self.pid();
        let deadline = Instant::now() + timeout;
        let mut report_stats = None;
        let mut report_verify = None;
        let mut events = std::mem::take(&mut self.backlog);
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(wait) {
                Ok(Line::Event(Event::Stats(s))) if s.is_final => report_stats = Some(s),
                Ok(Line::Event(Event::Verify(v))) => report_verify = Some(v),
                Ok(Line::Event(e)) => events.push(e),
                Ok(Line::Garbage(_)) => {}
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.backlog = events;
                    return Err(CommandError::Timeout {
                        command: "(wait for exit)".into(),
                        pid,
                        timeout_s: timeout.as_secs(),
                    });
                }
            }
        }
        let status = self.process.wait().map_err(|source| CommandError::Wait { pid, source })?;
        self.reaped = true;
        Ok(ExitReport {
            status,
            code: status.code(),
            final_stats: report_stats,
            final_verify: report_verify,
            events,
        })
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            // Already exited is fine: kill then fails and wait reaps it.
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// Finds (and, under cargo, first builds) the `etmem-workload` binary.
pub fn locate_binary() -> Result<PathBuf, LocateError> {
    if let Some(path) = std::env::var_os(ENV_BIN) {
        let path = PathBuf::from(path);
        return if path.is_file() { Ok(path) } else { Err(LocateError::EnvNotAFile { path }) };
    }
    let exe = std::env::current_exe().ok();
    let build_note = match exe.as_deref() {
        Some(exe) => match autobuild(exe) {
            Ok(()) => String::new(),
            Err(note) => format!(" ({note})"),
        },
        None => String::new(),
    };
    let mut searched = Vec::new();
    if let Some(exe_dir) = exe.as_deref().and_then(Path::parent) {
        for dir in [Some(exe_dir), exe_dir.parent()].into_iter().flatten() {
            let candidate = dir.join(BIN_NAME);
            if candidate.is_file() {
                return Ok(candidate);
            }
            searched.push(dir.display().to_string());
        }
    }
    Err(LocateError::NotFound { searched: searched.join(", "), build_note })
}

/// Runs `cargo build -p perf --bin etmem-workload` once per process, into the
/// target directory and profile `exe` was built in. `Err` explains why not.
fn autobuild(exe: &Path) -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT.get_or_init(|| autobuild_once(exe)).clone()
}

fn autobuild_once(exe: &Path) -> Result<(), String> {
    if std::env::var_os(ENV_AUTOBUILD).is_some_and(|v| v == "0") {
        return Err(format!("automatic build turned off by {ENV_AUTOBUILD}=0"));
    }
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Err("not running under cargo, no automatic build".into());
    };
    let (target_dir, triple, profile_dir) = target_layout(exe)
        .ok_or_else(|| format!("{} is not inside a cargo target directory", exe.display()))?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "perf", "--bin", BIN_NAME, "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target_dir)
        .stdin(Stdio::null());
    match profile_dir.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    if let Some(triple) = &triple {
        cmd.args(["--target", triple]);
    }
    let output = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("cargo build failed: {}", String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// For `<target>/[<triple>/]<profile>/[deps/]exe`: (target dir, triple, profile dir name).
/// The target dir is the nearest ancestor holding cargo's `CACHEDIR.TAG`.
fn target_layout(exe: &Path) -> Option<(PathBuf, Option<String>, String)> {
    let target = exe.ancestors().skip(1).find(|d| d.join("CACHEDIR.TAG").is_file())?;
    let rel = exe.parent()?.strip_prefix(target).ok()?;
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "deps" || p == "examples") {
        parts.pop();
    }
    match parts.as_slice() {
        [profile] => Some((target.to_path_buf(), None, profile.clone())),
        [triple, profile] => Some((target.to_path_buf(), Some(triple.clone()), profile.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_layout_of_test_and_cross_binaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55")
            .expect("tag");
        let t = dir.path();
        assert_eq!(
            target_layout(&t.join("debug/deps/x-123")),
            Some((t.to_path_buf(), None, "debug".to_string()))
        );
        assert_eq!(
            target_layout(&t.join("release/etmemd")),
            Some((t.to_path_buf(), None, "release".to_string()))
        );
        assert_eq!(
            target_layout(&t.join("x86_64-unknown-linux-gnu/debug/deps/x")),
            Some((t.to_path_buf(), Some("x86_64-unknown-linux-gnu".to_string()), "debug".to_string()))
        );
        assert_eq!(target_layout(Path::new("/usr/bin/true")), None);
    }
}
