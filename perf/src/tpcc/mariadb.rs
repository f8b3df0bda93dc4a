//! Our own MariaDB server: Debian's server binaries (installed with apt when
//! missing), a data directory under the harness's work folder, a unix socket
//! there and no TCP port, the buffer pool size per run. The system service
//! is never used. [`Server`] stops its mariadbd on drop, so an error or a
//! panic leaves nothing running.
//!
//! Why `mariadb-server-core` and not `mariadb-server`: on a machine without
//! systemd (as here), `mariadb-server`'s postinst starts the system service
//! through `invoke-rc.d`; the core package holds `mariadbd` and
//! `mariadb-install-db` and starts nothing. `mariadb-client-core` brings
//! `my_print_defaults`, which `mariadb-install-db` needs.

use super::os;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use thiserror::Error;

/// The Debian packages the harness installs.
pub const PACKAGES: [&str; 2] = ["mariadb-server-core", "mariadb-client-core"];
const MARIADBD: &str = "/usr/sbin/mariadbd";
const INSTALL_DB: &str = "/usr/bin/mariadb-install-db";

/// The server binaries.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Binaries {
    pub mariadbd: PathBuf,
    pub install_db: PathBuf,
    /// `mariadbd --version`.
    pub version: String,
}

#[derive(Debug, Error)]
pub enum InstallError {
    #[error("MariaDB is not installed ({MARIADBD} missing) and installing was not allowed")]
    NotInstalled,
    #[error("`{cmd}` failed ({status}): {tail}")]
    Apt { cmd: String, status: String, tail: String },
    #[error("cannot run `{cmd}`")]
    Exec { cmd: String, source: io::Error },
    #[error("{MARIADBD} still missing after installing {packages}", packages = PACKAGES.join(" "))]
    StillMissing,
}

/// The binaries, when installed.
pub fn locate() -> Option<Binaries> {
    let (mariadbd, install_db) = (PathBuf::from(MARIADBD), PathBuf::from(INSTALL_DB));
    if !mariadbd.exists() || !install_db.exists() || !Path::new("/usr/bin/my_print_defaults").exists() {
        return None;
    }
    let out = Command::new(&mariadbd).arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Some(Binaries { mariadbd, install_db, version })
}

fn apt(args: &[&str]) -> Result<(), InstallError> {
    let cmd = format!("apt-get {}", args.join(" "));
    let out = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| InstallError::Exec { cmd: cmd.clone(), source })?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join(" / ");
    Err(InstallError::Apt { cmd, status: out.status.to_string(), tail })
}

/// The binaries, installing the packages first when they are missing and
/// `allow_install` is set (apt-get update is run only when the first
/// install attempt fails, as on a machine with no package lists yet).
pub fn ensure_installed(
    allow_install: bool,
    log: &(dyn Fn(String) + Sync),
) -> Result<Binaries, InstallError> {
    if let Some(b) = locate() {
        return Ok(b);
    }
    if !allow_install {
        return Err(InstallError::NotInstalled);
    }
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(PACKAGES);
    log(format!("installing {} with apt-get", PACKAGES.join(" ")));
    if apt(&args).is_err() {
        log("apt-get install failed; running apt-get update and trying again".into());
        apt(&["update", "-q"])?;
        apt(&args)?;
    }
    locate().ok_or(InstallError::StillMissing)
}

#[derive(Debug, Error)]
pub enum InitError {
    #[error("cannot create {path}")]
    Io { path: PathBuf, source: io::Error },
    #[error("mariadb-install-db failed ({status}); its output is in {log}")]
    Failed { status: String, log: PathBuf },
}

/// Create an empty data directory with mariadb-install-db (root without a
/// password, reachable over the socket only).
pub fn init_datadir(bins: &Binaries, datadir: &Path, log: &Path) -> Result<(), InitError> {
    std::fs::create_dir_all(datadir).map_err(|source| InitError::Io { path: datadir.into(), source })?;
    let out = std::fs::File::create(log).map_err(|source| InitError::Io { path: log.into(), source })?;
    let err = out.try_clone().map_err(|source| InitError::Io { path: log.into(), source })?;
    let status = Command::new(&bins.install_db)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .args(["--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|source| InitError::Io { path: bins.install_db.clone(), source })?;
    if status.success() {
        Ok(())
    } else {
        Err(InitError::Failed { status: status.to_string(), log: log.into() })
    }
}

/// How a server is started.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerConfig {
    pub buffer_pool_bytes: u64,
    pub log_file_bytes: u64,
    /// `innodb_flush_log_at_trx_commit`: 2 writes the log at commit and
    /// syncs it once a second (the disk's fsync latency would otherwise be
    /// what the benchmark measures).
    pub flush_log_at_trx_commit: u32,
    /// Read the pages listed in `ib_buffer_pool` at start (a warm restart).
    pub load_buffer_pool_at_startup: bool,
    pub max_connections: u32,
    /// A library for `LD_PRELOAD` (the THP scenarios' `thp_allow` shim).
    pub preload: Option<std::path::PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            buffer_pool_bytes: 4 << 30,
            log_file_bytes: 1 << 30,
            flush_log_at_trx_commit: 2,
            load_buffer_pool_at_startup: true,
            max_connections: 200,
            preload: None,
        }
    }
}

/// The command line of a server on `datadir`, with its socket, pid file,
/// logs and temporary files in `rundir`.
pub fn server_args(datadir: &Path, rundir: &Path, cfg: &ServerConfig) -> Vec<String> {
    let on = |b: bool| if b { "ON" } else { "OFF" };
    vec![
        "--no-defaults".into(),
        format!("--datadir={}", datadir.display()),
        format!("--socket={}", rundir.join("mariadbd.sock").display()),
        format!("--pid-file={}", rundir.join("mariadbd.pid").display()),
        format!("--log-error={}", rundir.join("mariadbd.err").display()),
        format!("--tmpdir={}", rundir.display()),
        "--skip-networking".into(),
        "--user=root".into(),
        "--skip-name-resolve".into(),
        "--performance-schema=OFF".into(),
        format!("--max-connections={}", cfg.max_connections),
        format!("--innodb-buffer-pool-size={}", cfg.buffer_pool_bytes),
        format!("--innodb-log-file-size={}", cfg.log_file_bytes),
        format!("--innodb-flush-log-at-trx-commit={}", cfg.flush_log_at_trx_commit),
        "--innodb-doublewrite=OFF".into(),
        format!("--innodb-buffer-pool-load-at-startup={}", on(cfg.load_buffer_pool_at_startup)),
        "--innodb-buffer-pool-dump-at-shutdown=ON".into(),
        "--innodb-buffer-pool-dump-pct=100".into(),
    ]
}

#[derive(Debug, Error)]
pub enum StartError {
    #[error("cannot start {mariadbd}")]
    Spawn { mariadbd: PathBuf, source: io::Error },
    #[error("mariadbd exited at start ({status}); last lines of {log}:\n{tail}")]
    Exited { status: String, log: PathBuf, tail: String },
    #[error("mariadbd did not accept connections within {timeout_s} s; last lines of {log}:\n{tail}")]
    Timeout { timeout_s: u64, log: PathBuf, tail: String },
    #[error("stopped before the server was up")]
    Interrupted,
}

#[derive(Debug, Error)]
pub enum WaitError {
    #[error("cannot query the server")]
    Query(#[source] mysql::Error),
    #[error("the buffer pool load did not finish within {timeout_s} s (last status: {status})")]
    Timeout { timeout_s: u64, status: String },
}

/// A running mariadbd of ours; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    pid: u32,
    socket: PathBuf,
    log: PathBuf,
}

/// The last `n` lines of a file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Connection options for a server listening on `socket` (root, no password).
pub fn socket_opts(socket: &Path) -> Opts {
    OptsBuilder::new()
        .socket(Some(socket.to_string_lossy().into_owned()))
        .user(Some("root"))
        .prefer_socket(true)
        .into()
}

impl Server {
    /// Start mariadbd on `datadir` and wait until it accepts connections
    /// (crash recovery of a copied data directory may take a while).
    pub fn start(
        bins: &Binaries,
        datadir: &Path,
        rundir: &Path,
        cfg: &ServerConfig,
        timeout: Duration,
    ) -> Result<Server, StartError> {
        let out = std::fs::File::create(rundir.join("mariadbd.out"))
            .map_err(|source| StartError::Spawn { mariadbd: bins.mariadbd.clone(), source })?;
        let err = out
            .try_clone()
            .map_err(|source| StartError::Spawn { mariadbd: bins.mariadbd.clone(), source })?;
        let mut cmd = Command::new(&bins.mariadbd);
        if let Some(lib) = &cfg.preload {
            cmd.env("LD_PRELOAD", lib);
        }
        let child = cmd
            .args(server_args(datadir, rundir, cfg))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| StartError::Spawn { mariadbd: bins.mariadbd.clone(), source })?;
        let mut server = Server {
            pid: child.id(),
            child: Some(child),
            socket: rundir.join("mariadbd.sock"),
            log: rundir.join("mariadbd.err"),
        };
        let deadline = Instant::now() + timeout;
        loop {
            if os::STOP.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(StartError::Interrupted);
            }
            if let Some(c) = server.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                server.child = None;
                return Err(StartError::Exited {
                    status: status.to_string(),
                    log: server.log.clone(),
                    tail: tail(&server.log, 15),
                });
            }
            if server.socket.exists() && Conn::new(server.opts()).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(StartError::Timeout {
                    timeout_s: timeout.as_secs(),
                    log: server.log.clone(),
                    tail: tail(&server.log, 15),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Options to connect as root over the socket.
    pub fn opts(&self) -> Opts {
        socket_opts(&self.socket)
    }

    /// Wait until the buffer pool load at startup has finished (or was not
    /// asked for).
    pub fn wait_buffer_pool_loaded(&self, timeout: Duration) -> Result<(), WaitError> {
        let mut conn = Conn::new(self.opts()).map_err(WaitError::Query)?;
        let deadline = Instant::now() + timeout;
        loop {
            let status: Option<(String, String)> = conn
                .query_first("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_load_status'")
                .map_err(WaitError::Query)?;
            let status = status.map(|s| s.1).unwrap_or_default();
            let done = status.is_empty()
                || status.contains("completed")
                || status.contains("not started")
                || status.contains("aborted")
                || status.contains("Cannot open");
            if done || os::STOP.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(WaitError::Timeout { timeout_s: timeout.as_secs(), status });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Stop the server: SIGTERM (a clean shutdown, which dumps the buffer
    /// pool list), SIGKILL after `timeout`. Returns how it exited.
    pub fn stop(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = os::signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                _ => {
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(120));
    }
}

/// Copy a directory tree (regular files and directories), syncing each
/// file and dropping both copies from the page cache, so that the copy does
/// not show up as used memory during the run.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<u64> {
    std::fs::create_dir_all(dst)?;
    let mut bytes = 0;
    let mut buf = vec![0u8; 1 << 20];
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        if ty.is_dir() {
            bytes += copy_tree(&from, &to)?;
        } else if ty.is_file() {
            let mut r = std::fs::File::open(&from)?;
            let mut w = std::fs::File::create(&to)?;
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                w.write_all(&buf[..n])?;
                bytes += n as u64;
            }
            w.sync_data()?;
            std::fs::set_permissions(&to, entry.metadata()?.permissions())?;
            let _ = os::drop_file_cache(&w);
            let _ = os::drop_file_cache(&r);
        }
    }
    Ok(bytes)
}
