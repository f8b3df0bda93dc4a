//! The real etmemd and etmem inside the guest: start the daemon on a
//! socket under /run, drive it with the CLI, read `project show` and engine
//! commands back as JSON.

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ETMEMD: &str = "/bin/etmemd";
pub const ETMEM: &str = "/bin/etmem";

/// One CLI run.
#[derive(Debug, Clone)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        format!("exit {}; stdout: {}; stderr: {}", self.code, self.stdout.trim(), self.stderr.trim())
    }
}

/// etmemd, killed on drop.
#[derive(Debug)]
pub struct Etmemd {
    child: Option<Child>,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub log: PathBuf,
}

impl Etmemd {
    pub fn start(name: &str) -> Result<Etmemd, String> {
        let socket = PathBuf::from(format!("/run/{name}.sock"));
        let state_dir = PathBuf::from(format!("/run/{name}-state"));
        let log = PathBuf::from(format!("/tmp/{name}.log"));
        let _ = std::fs::remove_file(&socket);
        // A fresh daemon: no projects left from an earlier one of this name.
        let _ = std::fs::remove_dir_all(&state_dir);
        let mut d = Etmemd { child: None, socket, state_dir, log };
        d.spawn()?;
        Ok(d)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let child = Command::new(ETMEMD)
            .arg("-s")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(["-l", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("cannot start etmemd: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                return Err(format!("etmemd exited at start ({st}): {}", self.log_tail(20)));
            }
            if Instant::now() > deadline {
                return Err(format!("etmemd did not listen within 60 s: {}", self.log_tail(20)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// SIGKILL, no cleanup by the daemon (its kdamonds keep running).
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same socket and state directory.
    pub fn restart_after_kill(&mut self) -> Result<(), String> {
        self.kill_hard();
        let _ = std::fs::remove_file(&self.socket);
        self.spawn()
    }

    /// SIGTERM and wait (the daemon stops its projects).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::os::kill(c.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join(" | ")
    }

    pub fn etmem(&self, args: &[&str]) -> Run {
        let out = Command::new(ETMEM).args(args).arg("-s").arg(&self.socket).output();
        match out {
            Ok(o) => Run {
                code: o.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            },
            Err(e) => Run { code: -1, stdout: String::new(), stderr: format!("cannot run etmem: {e}") },
        }
    }

    /// Run the CLI and require success.
    pub fn ok(&self, args: &[&str]) -> Result<Run, String> {
        let r = self.etmem(args);
        if r.code != 0 {
            return Err(format!("etmem {}: {}", args.join(" "), r.text()));
        }
        Ok(r)
    }

    /// Write a config file (0600, as etmemd requires) and `obj add` it.
    pub fn add(&self, name: &str, text: &str) -> Result<PathBuf, String> {
        let p = write_config(name, text)?;
        self.ok(&["obj", "add", "-f", &p.to_string_lossy()])?;
        Ok(p)
    }

    /// `project show -n NAME` as JSON.
    pub fn show(&self, project: &str) -> Result<Value, String> {
        let r = self.ok(&["--json", "project", "show", "-n", project])?;
        serde_json::from_str(&r.stdout).map_err(|e| format!("project show is not JSON ({e}): {}", r.stdout))
    }

    /// The stats of the first task of a project, from `project show`.
    pub fn task_stats(&self, project: &str) -> Result<Value, String> {
        let v = self.show(project)?;
        let stats = &v["projects"][0]["engines"][0]["tasks"][0]["stats"];
        if stats.is_null() {
            return Err(format!("project {project} shows no task stats: {v}"));
        }
        Ok(stats.clone())
    }

    /// An engine command's output.
    pub fn engine(&self, cmd: &str, project: &str, engine: &str) -> Result<String, String> {
        Ok(self.ok(&["engine", cmd, "-n", project, "-e", engine])?.stdout)
    }
}

impl Drop for Etmemd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Write a config under /tmp with mode 0600.
pub fn write_config(name: &str, text: &str) -> Result<PathBuf, String> {
    let p = Path::new("/tmp").join(name);
    std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    Ok(p)
}
