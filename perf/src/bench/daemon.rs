//! etmemd embedded in the benchmark process: the real request handling,
//! registry, project runtime (zram devices) and engines of the `etmemd`
//! library, driven with the same `Request`s the `etmem` CLI sends, without
//! the socket. Every project is stopped (and its devices removed) on drop.

use etmemd::daemon::{Daemon, DaemonOptions, Peer};
use etmemd::engine::BuiltinEngines;
use etmemd::protocol::{ProjectView, Request, Response, TaskStats};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

/// Why a request to the embedded daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedDaemonError {
    #[error("cannot set up the daemon's temporary directory")]
    TempDir(#[source] std::io::Error),
    #[error("cannot write config file {}", path.display())]
    WriteConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("etmemd refused '{request}': {message}")]
    Refused { request: String, message: String },
    #[error("etmemd answered '{request}' with an unexpected reply")]
    Unexpected { request: String },
    #[error("project {project} is not known to etmemd")]
    NoProject { project: String },
}

/// An in-process etmemd with a temporary state directory.
pub struct EmbeddedDaemon {
    daemon: Daemon,
    peer: Peer,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for EmbeddedDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedDaemon").field("dir", &self.dir.path()).finish()
    }
}

impl EmbeddedDaemon {
    /// A daemon with the built-in engines and a fresh temporary state directory.
    pub fn new() -> Result<EmbeddedDaemon, EmbeddedDaemonError> {
        let dir =
            tempfile::Builder::new().prefix("etmem-bench").tempdir().map_err(EmbeddedDaemonError::TempDir)?;
        // The directory is ours: its owner is the uid the config files belong to.
        let uid = std::fs::metadata(dir.path()).map_err(EmbeddedDaemonError::TempDir)?.uid();
        let options = DaemonOptions { state_dir: dir.path().join("state"), allow_insecure_config: false };
        let daemon = Daemon::new(options, Arc::new(BuiltinEngines));
        Ok(EmbeddedDaemon { daemon, peer: Peer { uid, gid: uid, pid: Some(std::process::id() as i32) }, dir })
    }

    fn request(&self, req: Request) -> Result<Response, EmbeddedDaemonError> {
        let what = format!("{req:?}");
        match self.daemon.handle(req, self.peer) {
            Response::Error(e) => Err(EmbeddedDaemonError::Refused { request: what, message: e.message }),
            r => Ok(r),
        }
    }

    /// Writes `toml` to `file_name` (mode 0600) in the daemon's directory
    /// and adds its objects (`etmem obj add -f`).
    pub fn add_config(&self, file_name: &str, toml: &str) -> Result<(), EmbeddedDaemonError> {
        let path = self.dir.path().join(file_name);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(toml.as_bytes())
        };
        write().map_err(|source| EmbeddedDaemonError::WriteConfig { path: path.clone(), source })?;
        self.request(Request::ObjAdd { file: path }).map(|_| ())
    }

    /// `etmem project start`; returns the daemon's notes (devices created...).
    pub fn start(&self, project: &str) -> Result<String, EmbeddedDaemonError> {
        match self.request(Request::ProjectStart { name: project.into() })? {
            Response::Done { message } => Ok(message.unwrap_or_default()),
            _ => Err(EmbeddedDaemonError::Unexpected { request: format!("project start {project}") }),
        }
    }

    /// `etmem project stop`: engines stop, the project's devices are removed.
    pub fn stop(&self, project: &str) -> Result<(), EmbeddedDaemonError> {
        self.request(Request::ProjectStop { name: project.into() }).map(|_| ())
    }

    /// `etmem project del`.
    pub fn delete(&self, project: &str) -> Result<(), EmbeddedDaemonError> {
        self.request(Request::ProjectDel { name: project.into() }).map(|_| ())
    }

    /// `etmem project show -n PROJECT`.
    pub fn show(&self, project: &str) -> Result<ProjectView, EmbeddedDaemonError> {
        match self.request(Request::ProjectShow { name: Some(project.into()) })? {
            Response::Projects { projects } => projects
                .into_iter()
                .find(|p| p.name == project)
                .ok_or_else(|| EmbeddedDaemonError::NoProject { project: project.into() }),
            _ => Err(EmbeddedDaemonError::Unexpected { request: format!("project show {project}") }),
        }
    }

    /// `etmem engine CMD -n PROJECT -e ENGINE -t TASK`: the engine's text answer.
    pub fn engine_command(
        &self,
        project: &str,
        engine: &str,
        cmd: &str,
        task: Option<&str>,
    ) -> Result<String, EmbeddedDaemonError> {
        let req = Request::Engine {
            project: project.into(),
            engine: engine.into(),
            cmd: cmd.into(),
            task: task.map(str::to_string),
        };
        match self.request(req)? {
            Response::EngineOutput { text } => Ok(text),
            _ => Err(EmbeddedDaemonError::Unexpected { request: format!("engine {cmd} -n {project}") }),
        }
    }

    /// The figures of one task of a project, when it runs.
    pub fn task_stats(&self, project: &str, task: &str) -> Result<Option<TaskStats>, EmbeddedDaemonError> {
        let view = self.show(project)?;
        Ok(view.engines.into_iter().flat_map(|e| e.tasks).find(|t| t.name == task).and_then(|t| t.stats))
    }
}

impl Drop for EmbeddedDaemon {
    fn drop(&mut self) {
        // Stops every project: engine threads end, zram devices are removed.
        self.daemon.shutdown();
    }
}
