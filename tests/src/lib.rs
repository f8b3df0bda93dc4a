//! Helpers for the workspace integration tests: find the built binaries, run
//! a real `etmemd` on a temporary socket, drive the real `etmem` CLI.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The directory holding the workspace's built binaries: `$ETMEM_BIN_DIR`,
/// or the profile directory this test executable was built into.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("ETMEM_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent().and_then(Path::parent).expect("test executable lives in target/<profile>/deps").to_path_buf()
}

/// Path of a workspace binary, panicking with the fix when it is not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (scripts/test does), or set ETMEM_BIN_DIR",
        p.display()
    );
    p
}

/// Whether the tests run as root (most real tests need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The result of one CLI run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panic with the whole output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
    #[track_caller]
    pub fn ok(&self) -> &Run {
        self.expect_code(0)
    }
    /// Panic unless stdout or stderr contains `needle`.
    #[track_caller]
    pub fn says(&self, needle: &str) -> &Run {
        assert!(
            self.stdout.contains(needle) || self.stderr.contains(needle),
            "expected output to contain {needle:?}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// How to start a test daemon.
#[derive(Debug, Clone, Default)]
pub struct DaemonConfig {
    /// Serve every engine with the test engine (`--test-engine`).
    pub test_engine: bool,
    pub extra_args: Vec<String>,
}

/// How the daemon process is launched, beyond its flags (fault tests).
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Extra environment variables (e.g. `LD_PRELOAD` of libfaketime).
    pub env: Vec<(String, String)>,
    /// Run etmemd in a new time namespace whose `CLOCK_MONOTONIC` and
    /// `CLOCK_BOOTTIME` are shifted by this many seconds (time_namespaces(7)).
    pub clock_offset_s: Option<i64>,
}

/// A real `etmemd` on a socket in a temporary directory; stopped on drop.
#[derive(Debug)]
pub struct TestDaemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
    cfg: DaemonConfig,
    launch: Launch,
}

impl TestDaemon {
    pub fn start(cfg: DaemonConfig) -> TestDaemon {
        TestDaemon::start_with(cfg, Launch::default())
    }

    /// [`TestDaemon::start`], launched as `launch` says (also on restarts).
    pub fn start_with(cfg: DaemonConfig, launch: Launch) -> TestDaemon {
        let dir = tempfile::Builder::new().prefix("etmemd-test").tempdir().expect("temp dir");
        let mut d = TestDaemon { dir, child: None, cfg, launch };
        d.spawn();
        d
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("etmemd.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A directory for the test's config files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("etmemd.log")).expect("log file");
        let mut cmd = Command::new(bin("etmemd"));
        cmd.arg("-s").arg(self.socket()).arg("--state-dir").arg(self.state_dir()).arg("-l").arg("0");
        if self.cfg.test_engine {
            cmd.arg("--test-engine");
        }
        cmd.args(&self.cfg.extra_args);
        cmd.envs(self.launch.env.iter().map(|(k, v)| (k, v)));
        if let Some(offset) = self.launch.clock_offset_s {
            in_time_namespace(&mut cmd, offset);
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn().expect("spawn etmemd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("etmemd exited at start with {status}; log:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "etmemd did not listen within 20 s; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etmemd.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stop with SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: kill on the pid of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill with SIGKILL (no cleanup by the daemon) and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop and start again on the same socket and state directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Start again after `kill` or `stop`.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "daemon still running");
        self.spawn();
    }

    /// Run the real `etmem` CLI against this daemon.
    pub fn etmem(&self, args: &[&str]) -> Run {
        self.etmem_with(args, |_| {})
    }

    /// Run `etmem` with a hook to adjust the command (e.g. run as another uid).
    pub fn etmem_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Run {
        let mut cmd = Command::new(bin("etmem"));
        cmd.args(args).arg("-s").arg(self.socket()).current_dir(self.dir.path());
        adjust(&mut cmd);
        let out = cmd.output().expect("run etmem");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Write a config file (mode 0600, as etmemd requires) and return its path.
    pub fn config(&self, name: &str, text: &str) -> PathBuf {
        write_config(self.dir.path(), name, text)
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Make `cmd` unshare a time namespace with both clocks shifted by
/// `offset_s` seconds and enter it at exec (Linux 6.0+ switches a process
/// into its `time_for_children` namespace on execve).
fn in_time_namespace(cmd: &mut Command, offset_s: i64) {
    use std::os::unix::process::CommandExt;
    let offsets = format!("monotonic {offset_s} 0\nboottime {offset_s} 0\n").into_bytes();
    let file = c"/proc/self/timens_offsets";
    // SAFETY: the closure runs between fork and exec and calls only
    // async-signal-safe functions (unshare, open, write, close) on memory
    // allocated before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWTIME) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, offsets.as_ptr().cast(), offsets.len());
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if n != offsets.len() as isize {
                return Err(err);
            }
            Ok(())
        });
    }
}

/// Write a file with mode 0600.
pub fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod config");
    p
}

/// `63.9 MiB` (as `project show` and the reports print sizes) -> bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let mut it = s.split_whitespace();
    let v: f64 = it.next()?.parse().ok()?;
    let unit = match it.next()? {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((v * unit) as u64)
}
