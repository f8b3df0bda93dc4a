//! The daemon's request handling: one `Daemon` holds the registry and the
//! state directory and turns each `Request` into one `Response`. Transport
//! (sockets, peer credentials) lives in `server`.

use crate::config_file::{self, ConfigLoadError};
use crate::engine::EngineFactory;
use crate::protocol::{ErrorKind, ErrorReply, PROTOCOL_VERSION, Request, Response};
use crate::registry::{ObjectKind, Registry, RegistryError, SavedObject};
use crate::runtime::RuntimeContext;
use crate::state::{SavedState, StateDir};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// How the daemon runs (flags, not config).
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub state_dir: PathBuf,
    /// Accept config files regardless of owner and mode (development only).
    pub allow_insecure_config: bool,
}

/// Who sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// The daemon: registry + state directory.
pub struct Daemon {
    registry: Mutex<Registry>,
    state: StateDir,
    runtime_ctx: RuntimeContext,
    opts: DaemonOptions,
    /// Open `etmem record` sessions.
    recorders: crate::record::session::Recorders,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").field("state", &self.state).finish()
    }
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error(ErrorReply { kind, message: message.into() })
}

/// The message of an error with its whole source chain, each cause once.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

fn registry_error(e: RegistryError) -> Response {
    error(e.kind(), chain(&e))
}

impl Daemon {
    pub fn new(opts: DaemonOptions, factory: Arc<dyn EngineFactory>) -> Daemon {
        let ctx = RuntimeContext::new(opts.state_dir.clone());
        Daemon {
            registry: Mutex::new(Registry::new(factory, ctx.clone())),
            state: StateDir::new(&opts.state_dir),
            runtime_ctx: ctx,
            opts,
            recorders: crate::record::session::Recorders::new(),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock must not take the daemon down with it:
        // the registry's operations leave it consistent between statements.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bring back the projects of the state directory. Returns one line per
    /// problem; a broken object is skipped, the rest still comes back.
    pub fn restore(&self) -> Vec<String> {
        // Devices a killed daemon left behind go back to their projects when
        // those start again below; the rest are removed at the end.
        let mut problems = self.runtime_ctx.recover_devices();
        let saved = match self.state.load() {
            Ok(Some(s)) => s,
            Ok(None) => {
                problems.extend(self.runtime_ctx.release_unclaimed());
                return problems;
            }
            Err(e) => {
                problems.push(chain(&e));
                problems.extend(self.runtime_ctx.release_unclaimed());
                return problems;
            }
        };
        let mut reg = self.registry();
        for obj in &saved.objects {
            if let Err(e) = restore_object(&mut reg, obj) {
                problems.push(format!(
                    "cannot restore {:?} {} from {}: {e}",
                    obj.kind,
                    obj.name,
                    obj.source.file.display()
                ));
            }
        }
        for name in &saved.started {
            if let Err(e) = reg.start(name) {
                problems.push(format!("cannot restart project {name}: {}", chain(&e)));
            }
        }
        problems.extend(self.runtime_ctx.release_unclaimed());
        problems
    }

    fn save(&self, reg: &Registry) -> Option<String> {
        let state = SavedState { objects: reg.saved_objects(), started: reg.started_projects() };
        self.state.save(&state).err().map(|e| format!("warning: the change is not saved: {}", chain(&e)))
    }

    /// Answer one request.
    pub fn handle(&self, req: Request, peer: Peer) -> Response {
        tracing::debug!(?req, uid = peer.uid, pid = ?peer.pid, "request");
        match req {
            Request::Hello => {
                Response::Hello { version: env!("CARGO_PKG_VERSION").to_string(), protocol: PROTOCOL_VERSION }
            }
            Request::ObjAdd { file } => {
                let (source, objects) =
                    match config_file::load(&file, peer.uid, self.opts.allow_insecure_config) {
                        Ok(x) => x,
                        Err(e) => return config_error(e),
                    };
                let mut reg = self.registry();
                match reg.add(objects, &source, peer.uid) {
                    Ok(added) => {
                        tracing::info!(file = %file.display(), ?added, "objects added");
                        self.done(&reg, added.join("\n"))
                    }
                    Err(e) => registry_error(e),
                }
            }
            Request::ObjDel { file } => {
                let (_, objects) = match config_file::load(&file, peer.uid, self.opts.allow_insecure_config) {
                    Ok(x) => x,
                    Err(e) => return config_error(e),
                };
                let mut reg = self.registry();
                match reg.del(&objects) {
                    Ok(removed) => {
                        tracing::info!(file = %file.display(), ?removed, "objects removed");
                        self.done(&reg, removed.join("\n"))
                    }
                    Err(e) => registry_error(e),
                }
            }
            Request::ProjectStart { name } => {
                let mut reg = self.registry();
                match reg.start(&name) {
                    Ok(notes) => {
                        tracing::info!(project = %name, "project started");
                        self.done(&reg, notes.join("\n"))
                    }
                    Err(e) => {
                        tracing::warn!(project = %name, error = %chain(&e), "project start failed");
                        registry_error(e)
                    }
                }
            }
            Request::ProjectStop { name } => {
                let mut reg = self.registry();
                match reg.stop(&name) {
                    Ok(()) => {
                        tracing::info!(project = %name, "project stopped");
                        self.done(&reg, String::new())
                    }
                    Err(e) => registry_error(e),
                }
            }
            Request::ProjectDel { name } => {
                let mut reg = self.registry();
                match reg.del_project(&name) {
                    Ok(()) => {
                        tracing::info!(project = %name, "project deleted");
                        self.done(&reg, String::new())
                    }
                    Err(e) => registry_error(e),
                }
            }
            Request::ProjectShow { name } => match self.registry().show(name.as_deref()) {
                Ok(projects) => Response::Projects { projects },
                Err(e) => registry_error(e),
            },
            Request::Engine { project, engine, cmd, task } => {
                match self.registry().engine_command(&project, &engine, &cmd, task.as_deref()) {
                    Ok(text) => Response::EngineOutput { text },
                    Err(e) => registry_error(e),
                }
            }
            Request::RecordStart { project, engine, task } => {
                let started =
                    self.recorders.start(&self.registry(), &project, engine.as_deref(), task.as_deref());
                match started {
                    Ok((session, header)) => Response::RecordStarted { session, header },
                    Err(e) => error(e.kind(), chain(&e)),
                }
            }
            Request::RecordPoll { session, wait_ms } => {
                match self.recorders.poll(&self.registry, session, std::time::Duration::from_millis(wait_ms))
                {
                    Ok(batch) => Response::RecordBatch { lines: batch.lines, ended: batch.ended },
                    Err(e) => error(e.kind(), chain(&e)),
                }
            }
            Request::RecordStop { session } => match self.recorders.stop(session) {
                Ok(()) => Response::Done { message: None },
                Err(e) => error(e.kind(), chain(&e)),
            },
        }
    }

    /// Every project as `project show` has it (for the metrics endpoint).
    pub fn projects(&self) -> Vec<crate::protocol::ProjectView> {
        self.registry().show(None).unwrap_or_default()
    }

    /// Recording sessions open now.
    pub fn record_sessions(&self) -> usize {
        self.recorders.len()
    }

    fn done(&self, reg: &Registry, message: String) -> Response {
        let mut message = message;
        if let Some(w) = self.save(reg) {
            tracing::warn!("{w}");
            if !message.is_empty() {
                message.push('\n');
            }
            message.push_str(&w);
        }
        Response::Done { message: (!message.is_empty()).then_some(message) }
    }

    /// Stop every project, keeping them marked as started in the state
    /// directory so the next daemon starts them again.
    pub fn shutdown(&self) {
        let mut reg = self.registry();
        let state = SavedState { objects: reg.saved_objects(), started: reg.started_projects() };
        if let Err(e) = self.state.save(&state) {
            tracing::warn!(error = %chain(&e), "state not saved at shutdown");
        }
        let stopped = reg.stop_all();
        tracing::info!(?stopped, "all projects stopped");
    }
}

fn config_error(e: ConfigLoadError) -> Response {
    error(ErrorKind::Config, chain(&e))
}

/// Add one saved object back: re-parse its source and pick the object out.
fn restore_object(reg: &mut Registry, obj: &SavedObject) -> Result<(), String> {
    let file = obj.source.file.display().to_string();
    let mut objects =
        conf::parse(&file, obj.source.text.as_bytes(), Some(obj.source.format)).map_err(|e| e.to_string())?;
    match obj.kind {
        ObjectKind::Project => {
            objects.engines.clear();
            objects.tasks.clear();
            if objects.project.as_ref().is_none_or(|p| p.name != obj.name) {
                return Err("the saved file no longer holds this project".into());
            }
        }
        ObjectKind::Engine => {
            objects.project = None;
            objects.tasks.clear();
            objects.engines.retain(|e| e.name == obj.name && e.project == obj.project);
            if objects.engines.len() != 1 {
                return Err("the saved file no longer holds this engine".into());
            }
        }
        ObjectKind::Task => {
            objects.project = None;
            objects.engines.clear();
            objects.tasks.retain(|t| t.name == obj.name && Some(&t.engine) == obj.engine.as_ref());
            if objects.tasks.len() != 1 {
                return Err("the saved file no longer holds this task".into());
            }
        }
    }
    // The state directory is the daemon's own (root-owned) record of
    // requests it accepted, so restoring acts as root.
    reg.add(objects, &obj.source, 0).map(|_| ()).map_err(|e| chain(&e))
}
