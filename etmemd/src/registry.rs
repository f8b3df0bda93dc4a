//! The project registry with etmem's semantics: projects own engines, engines
//! own tasks; add and delete are atomic (all objects of a file or none),
//! adding a task to a started project starts it, deleting stops first.

use crate::engine::{Engine, EngineError, EngineFactory, kind_name};
use crate::protocol::{EngineView, ErrorKind, ProjectView, TaskView};
use crate::runtime::{ProjectRuntime, RuntimeError};
use conf::{EngineKind, Format, Objects, Scan, TaskTarget};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The config file an object came from, kept so the registry can be saved
/// and restored by re-reading the very text the user gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub file: PathBuf,
    pub format: Format,
    pub text: Arc<str>,
}

/// Why a registry operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("project {0} already exists")]
    ProjectExists(String),
    #[error("project {0} does not exist")]
    ProjectNotExist(String),
    #[error("project {0} is already started")]
    ProjectStarted(String),
    #[error("project {0} is stopped")]
    ProjectStopped(String),
    #[error("engine {engine} already exists in project {project}")]
    EngineExists { project: String, engine: String },
    #[error("engine {engine} does not exist in project {project}")]
    EngineNotExist { project: String, engine: String },
    #[error("task {task} already exists in engine {engine} of project {project}")]
    TaskExists { project: String, engine: String, task: String },
    #[error("task {task} does not exist in engine {engine} of project {project}")]
    TaskNotExist { project: String, engine: String, task: String },
    #[error("project {project} scans by {scan}; engine {engine} ({kind}) cannot serve it")]
    EngineMismatch { project: String, scan: &'static str, engine: String, kind: &'static str },
    #[error("the file holds no project, engine or task")]
    Empty,
    #[error("engine {engine}: key {key}: {reason}")]
    Unsupported { engine: String, key: &'static str, reason: String },
    #[error("task {task}: {reason}")]
    SpecialTarget { task: String, reason: String },
    #[error(
        "task {task}: only root may add a task with {key} = true (the client runs as uid {uid})",
        key = crate::engine::procinfo::ALLOW_SPECIAL_KEY
    )]
    SpecialTargetNotRoot { task: String, uid: u32 },
    #[error("project {project}, engine {engine}")]
    Engine {
        project: String,
        engine: String,
        #[source]
        source: EngineError,
    },
    #[error("project {project}")]
    Runtime {
        project: String,
        #[source]
        source: RuntimeError,
    },
}

impl RegistryError {
    /// The protocol's error kind for this refusal.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::ProjectExists(_) => ErrorKind::ProjectExists,
            RegistryError::ProjectNotExist(_) => ErrorKind::ProjectNotExist,
            RegistryError::ProjectStarted(_) => ErrorKind::ProjectStarted,
            RegistryError::ProjectStopped(_) => ErrorKind::ProjectStopped,
            RegistryError::EngineExists { .. } => ErrorKind::EngineExists,
            RegistryError::EngineNotExist { .. } => ErrorKind::EngineNotExist,
            RegistryError::TaskExists { .. } => ErrorKind::TaskExists,
            RegistryError::TaskNotExist { .. } => ErrorKind::TaskNotExist,
            RegistryError::EngineMismatch { .. }
            | RegistryError::Empty
            | RegistryError::Unsupported { .. }
            | RegistryError::SpecialTarget { .. } => ErrorKind::Config,
            RegistryError::SpecialTargetNotRoot { .. } => ErrorKind::PermissionDenied,
            RegistryError::Engine { source, .. } => match source {
                EngineError::NotInBuild { .. } | EngineError::Unsupported { .. } => ErrorKind::Unsupported,
                EngineError::UnknownCommand { .. } => ErrorKind::InvalidRequest,
                EngineError::TaskNotRunning { .. } => ErrorKind::TaskNotExist,
                EngineError::Task { .. } => ErrorKind::Internal,
            },
            RegistryError::Runtime { source, .. } => source.kind(),
        }
    }
}

/// One object of the registry as saved in the state directory.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedObject {
    pub kind: ObjectKind,
    pub project: String,
    pub engine: Option<String>,
    pub name: String,
    pub source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Project,
    Engine,
    Task,
}

struct ProjectEntry {
    spec: conf::Project,
    source: Source,
    seq: u64,
    engines: Vec<EngineEntry>,
    /// Set while the project runs: its backends and engine instances.
    runtime: Option<ProjectRuntime>,
}

struct EngineEntry {
    spec: conf::Engine,
    source: Source,
    seq: u64,
    tasks: Vec<TaskEntry>,
    instance: Option<Box<dyn Engine>>,
}

struct TaskEntry {
    spec: conf::Task,
    source: Source,
    seq: u64,
}

/// All projects of the daemon.
pub struct Registry {
    projects: BTreeMap<String, ProjectEntry>,
    factory: Arc<dyn EngineFactory>,
    runtime_ctx: crate::runtime::RuntimeContext,
    next_seq: u64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("projects", &self.projects.keys().collect::<Vec<_>>()).finish()
    }
}

fn scan_name(scan: &Scan) -> &'static str {
    match scan {
        Scan::Page(_) => "page",
        Scan::Region(_) => "region",
        Scan::Psi(_) => "psi",
    }
}

/// Whether an engine kind can serve a project's scan type (etmem: a region
/// project's engines must all be damon; page projects take slide/cslide/thirdparty).
fn engine_fits(scan: &Scan, kind: &EngineKind) -> bool {
    matches!(
        (scan, kind),
        (Scan::Page(_), EngineKind::Page(_) | EngineKind::Cslide(_) | EngineKind::Thirdparty(_))
            | (Scan::Region(_), EngineKind::Region(_) | EngineKind::KernelDamon(_))
            | (Scan::Psi(_), EngineKind::Psi)
    )
}

/// Engines etmem-rs accepts in configs but can never run, refused at add
/// with the key that asks for them.
fn never_runs(kind: &EngineKind) -> Option<(&'static str, String)> {
    match kind {
        EngineKind::Thirdparty(t) => Some((
            "libname",
            format!(
                "etmem-rs does not load third-party engine libraries ({}); use a built-in engine (page, region, kernel-damon)",
                t.libname.display()
            ),
        )),
        EngineKind::Memdcd => Some((
            "name",
            "the memdcd engine needs etmem's memdcd daemon and userswap, which etmem-rs does not drive"
                .into(),
        )),
        _ => None,
    }
}

fn target_strings(t: &TaskTarget) -> (String, String) {
    match t {
        TaskTarget::Pid(p) => ("pid".into(), p.to_string()),
        TaskTarget::Name(n) => ("name".into(), n.clone()),
        TaskTarget::Cgroup(c) => ("cgroup".into(), c.display().to_string()),
    }
}

impl Registry {
    pub fn new(factory: Arc<dyn EngineFactory>, runtime_ctx: crate::runtime::RuntimeContext) -> Registry {
        Registry { projects: BTreeMap::new(), factory, runtime_ctx, next_seq: 0 }
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Add every object of a file, or none of them, for a client with uid
    /// `peer_uid` (0 when the daemon restores its own state).
    pub fn add(
        &mut self,
        objects: Objects,
        source: &Source,
        peer_uid: u32,
    ) -> Result<Vec<String>, RegistryError> {
        if objects.project.is_none() && objects.engines.is_empty() && objects.tasks.is_empty() {
            return Err(RegistryError::Empty);
        }
        // Check everything first: nothing changes unless all of it can be added.
        let new_project = objects.project.as_ref();
        if let Some(p) = new_project
            && self.projects.contains_key(&p.name)
        {
            return Err(RegistryError::ProjectExists(p.name.clone()));
        }
        let scan_of = |name: &str| -> Option<&Scan> {
            new_project
                .filter(|p| p.name == name)
                .map(|p| &p.scan)
                .or_else(|| self.projects.get(name).map(|e| &e.spec.scan))
        };
        for e in &objects.engines {
            if let Some((key, reason)) = never_runs(&e.kind) {
                return Err(RegistryError::Unsupported { engine: e.name.clone(), key, reason });
            }
            let Some(scan) = scan_of(&e.project) else {
                return Err(RegistryError::ProjectNotExist(e.project.clone()));
            };
            if !engine_fits(scan, &e.kind) {
                return Err(RegistryError::EngineMismatch {
                    project: e.project.clone(),
                    scan: scan_name(scan),
                    engine: e.name.clone(),
                    kind: kind_name(&e.kind),
                });
            }
            if self.engine(&e.project, &e.name).is_some() {
                return Err(RegistryError::EngineExists {
                    project: e.project.clone(),
                    engine: e.name.clone(),
                });
            }
        }
        for t in &objects.tasks {
            if scan_of(&t.project).is_none() {
                return Err(RegistryError::ProjectNotExist(t.project.clone()));
            }
            let in_file = objects.engines.iter().any(|e| e.project == t.project && e.name == t.engine);
            let Some(existing) = self.engine(&t.project, &t.engine) else {
                if in_file {
                    continue;
                }
                return Err(RegistryError::EngineNotExist {
                    project: t.project.clone(),
                    engine: t.engine.clone(),
                });
            };
            if existing.tasks.iter().any(|x| x.spec.name == t.name) {
                return Err(RegistryError::TaskExists {
                    project: t.project.clone(),
                    engine: t.engine.clone(),
                    task: t.name.clone(),
                });
            }
        }
        check_special_targets(&objects, peer_uid)?;

        let mut added = Vec::new();
        let mut notes = Vec::new();
        let mut undo: Vec<(ObjectKind, String, Option<String>, String)> = Vec::new();
        if let Some(p) = objects.project {
            added.push(format!("project {}", p.name));
            undo.push((ObjectKind::Project, p.name.clone(), None, p.name.clone()));
            let seq = self.seq();
            self.projects.insert(
                p.name.clone(),
                ProjectEntry { spec: p, source: source.clone(), seq, engines: Vec::new(), runtime: None },
            );
        }
        let result = (|| {
            for e in objects.engines {
                added.push(format!("engine {} of project {}", e.name, e.project));
                undo.push((ObjectKind::Engine, e.project.clone(), Some(e.name.clone()), e.name.clone()));
                let seq = self.seq();
                let factory = Arc::clone(&self.factory);
                let entry = self.projects.get_mut(&e.project).expect("checked above");
                let instance = match &entry.runtime {
                    Some(rt) => Some(factory.create(&entry.spec, &e, &rt.env()).map_err(|source| {
                        RegistryError::Engine { project: e.project.clone(), engine: e.name.clone(), source }
                    })?),
                    None => None,
                };
                entry.engines.push(EngineEntry {
                    spec: e,
                    source: source.clone(),
                    seq,
                    tasks: Vec::new(),
                    instance,
                });
            }
            for t in objects.tasks {
                added.push(format!("task {} of engine {}", t.name, t.engine));
                undo.push((ObjectKind::Task, t.project.clone(), Some(t.engine.clone()), t.name.clone()));
                let seq = self.seq();
                let engine = self.engine_mut(&t.project, &t.engine).expect("checked above");
                if let Some(instance) = engine.instance.as_mut() {
                    instance.start_task(&t).map_err(|source| RegistryError::Engine {
                        project: t.project.clone(),
                        engine: t.engine.clone(),
                        source,
                    })?;
                    notes.push(format!("task {} started", t.name));
                }
                engine.tasks.push(TaskEntry { spec: t, source: source.clone(), seq });
            }
            Ok(())
        })();
        if let Err(e) = result {
            for (kind, project, engine, name) in undo.into_iter().rev() {
                self.remove_object(kind, &project, engine.as_deref(), &name);
            }
            return Err(e);
        }
        added.extend(notes);
        Ok(added)
    }

    /// Remove every object a file names, or none of them.
    pub fn del(&mut self, objects: &Objects) -> Result<Vec<String>, RegistryError> {
        if objects.project.is_none() && objects.engines.is_empty() && objects.tasks.is_empty() {
            return Err(RegistryError::Empty);
        }
        for t in &objects.tasks {
            let Some(e) = self.engine(&t.project, &t.engine) else {
                if !self.projects.contains_key(&t.project) {
                    return Err(RegistryError::ProjectNotExist(t.project.clone()));
                }
                return Err(RegistryError::EngineNotExist {
                    project: t.project.clone(),
                    engine: t.engine.clone(),
                });
            };
            if !e.tasks.iter().any(|x| x.spec.name == t.name) {
                return Err(RegistryError::TaskNotExist {
                    project: t.project.clone(),
                    engine: t.engine.clone(),
                    task: t.name.clone(),
                });
            }
        }
        for e in &objects.engines {
            if !self.projects.contains_key(&e.project) {
                return Err(RegistryError::ProjectNotExist(e.project.clone()));
            }
            if self.engine(&e.project, &e.name).is_none() {
                return Err(RegistryError::EngineNotExist {
                    project: e.project.clone(),
                    engine: e.name.clone(),
                });
            }
        }
        if let Some(p) = &objects.project
            && !self.projects.contains_key(&p.name)
        {
            return Err(RegistryError::ProjectNotExist(p.name.clone()));
        }
        let mut removed = Vec::new();
        for t in &objects.tasks {
            self.remove_object(ObjectKind::Task, &t.project, Some(&t.engine), &t.name);
            removed.push(format!("task {}", t.name));
        }
        for e in &objects.engines {
            self.remove_object(ObjectKind::Engine, &e.project, Some(&e.name), &e.name);
            removed.push(format!("engine {}", e.name));
        }
        if let Some(p) = &objects.project {
            self.remove_object(ObjectKind::Project, &p.name, None, &p.name);
            removed.push(format!("project {}", p.name));
        }
        Ok(removed)
    }

    /// Stop (if needed) and remove one object and everything under it.
    fn remove_object(&mut self, kind: ObjectKind, project: &str, engine: Option<&str>, name: &str) {
        match kind {
            ObjectKind::Project => {
                if let Some(mut p) = self.projects.remove(project) {
                    stop_entry(&mut p);
                }
            }
            ObjectKind::Engine => {
                if let Some(p) = self.projects.get_mut(project)
                    && let Some(i) = p.engines.iter().position(|e| e.spec.name == name)
                {
                    let mut e = p.engines.remove(i);
                    if let Some(mut inst) = e.instance.take() {
                        inst.stop();
                    }
                }
            }
            ObjectKind::Task => {
                if let Some(e) = engine.and_then(|engine| self.engine_mut(project, engine))
                    && let Some(i) = e.tasks.iter().position(|t| t.spec.name == name)
                {
                    e.tasks.remove(i);
                    if let Some(inst) = e.instance.as_mut() {
                        inst.stop_task(name);
                    }
                }
            }
        }
    }

    /// Delete a whole project, stopping it first.
    pub fn del_project(&mut self, name: &str) -> Result<(), RegistryError> {
        if !self.projects.contains_key(name) {
            return Err(RegistryError::ProjectNotExist(name.into()));
        }
        self.remove_object(ObjectKind::Project, name, None, name);
        Ok(())
    }

    /// Start a project: its backends, then each engine and its tasks. On any
    /// failure everything started so far is stopped again.
    pub fn start(&mut self, name: &str) -> Result<Vec<String>, RegistryError> {
        let factory = Arc::clone(&self.factory);
        let ctx = self.runtime_ctx.clone();
        let entry = self.projects.get_mut(name).ok_or_else(|| RegistryError::ProjectNotExist(name.into()))?;
        if entry.runtime.is_some() {
            return Err(RegistryError::ProjectStarted(name.into()));
        }
        let runtime = ProjectRuntime::start(&entry.spec, &ctx)
            .map_err(|source| RegistryError::Runtime { project: name.into(), source })?;
        let mut notes = runtime.notes();
        let env = runtime.env();
        entry.runtime = Some(runtime);
        let result = (|| {
            for e in entry.engines.iter_mut() {
                let err = |source| RegistryError::Engine {
                    project: name.into(),
                    engine: e.spec.name.clone(),
                    source,
                };
                let mut inst = factory.create(&entry.spec, &e.spec, &env).map_err(err)?;
                for t in &e.tasks {
                    if let Err(source) = inst.start_task(&t.spec) {
                        inst.stop();
                        return Err(RegistryError::Engine {
                            project: name.into(),
                            engine: e.spec.name.clone(),
                            source,
                        });
                    }
                }
                notes.push(format!("engine {} started with {} task(s)", e.spec.name, e.tasks.len()));
                e.instance = Some(inst);
            }
            Ok(())
        })();
        if let Err(e) = result {
            stop_entry(entry);
            return Err(e);
        }
        Ok(notes)
    }

    /// Stop a started project.
    pub fn stop(&mut self, name: &str) -> Result<(), RegistryError> {
        let entry = self.projects.get_mut(name).ok_or_else(|| RegistryError::ProjectNotExist(name.into()))?;
        if entry.runtime.is_none() {
            return Err(RegistryError::ProjectStopped(name.into()));
        }
        stop_entry(entry);
        Ok(())
    }

    /// Stop every started project (daemon shutdown). Returns their names so
    /// the caller can keep them marked as wanted-started.
    pub fn stop_all(&mut self) -> Vec<String> {
        let mut stopped = Vec::new();
        for (name, entry) in self.projects.iter_mut() {
            if entry.runtime.is_some() {
                stop_entry(entry);
                stopped.push(name.clone());
            }
        }
        stopped
    }

    pub fn is_started(&self, name: &str) -> bool {
        self.projects.get(name).is_some_and(|p| p.runtime.is_some())
    }

    pub fn started_projects(&self) -> Vec<String> {
        self.projects.iter().filter(|(_, p)| p.runtime.is_some()).map(|(n, _)| n.clone()).collect()
    }

    /// `project show`: one project or all.
    pub fn show(&self, name: Option<&str>) -> Result<Vec<ProjectView>, RegistryError> {
        let pick: Vec<&ProjectEntry> = match name {
            Some(n) => vec![self.projects.get(n).ok_or_else(|| RegistryError::ProjectNotExist(n.into()))?],
            None => self.projects.values().collect(),
        };
        Ok(pick.into_iter().map(project_view).collect())
    }

    /// `etmem engine CMD`.
    pub fn engine_command(
        &mut self,
        project: &str,
        engine: &str,
        cmd: &str,
        task: Option<&str>,
    ) -> Result<String, RegistryError> {
        let p =
            self.projects.get_mut(project).ok_or_else(|| RegistryError::ProjectNotExist(project.into()))?;
        let started = p.runtime.is_some();
        let e = p.engines.iter_mut().find(|e| e.spec.name == engine).ok_or_else(|| {
            RegistryError::EngineNotExist { project: project.into(), engine: engine.into() }
        })?;
        if let Some(t) = task
            && !e.tasks.iter().any(|x| x.spec.name == t)
        {
            return Err(RegistryError::TaskNotExist {
                project: project.into(),
                engine: engine.into(),
                task: t.into(),
            });
        }
        if !started {
            return Err(RegistryError::ProjectStopped(project.into()));
        }
        let inst = e.instance.as_mut().expect("a started project has engine instances");
        inst.command(cmd, task).map_err(|source| RegistryError::Engine {
            project: project.into(),
            engine: engine.into(),
            source,
        })
    }

    /// The latest snapshots of a task, for records and reports.
    pub fn snapshots(&self, project: &str, engine: &str, task: &str) -> Vec<(u32, damon_core::Snapshot)> {
        self.engine(project, engine)
            .and_then(|e| e.instance.as_ref())
            .map(|i| i.snapshots(task))
            .unwrap_or_default()
    }

    /// The snapshot feed of a running task, for recorders.
    pub fn feed(
        &self,
        project: &str,
        engine: &str,
        task: &str,
    ) -> Option<Arc<crate::record::feed::SnapshotFeed>> {
        self.engine(project, engine).and_then(|e| e.instance.as_ref()).and_then(|i| i.feed(task))
    }

    /// Every object, in the order it was added, for the state directory.
    pub fn saved_objects(&self) -> Vec<SavedObject> {
        let mut out: Vec<(u64, SavedObject)> = Vec::new();
        for (pname, p) in &self.projects {
            out.push((
                p.seq,
                SavedObject {
                    kind: ObjectKind::Project,
                    project: pname.clone(),
                    engine: None,
                    name: pname.clone(),
                    source: p.source.clone(),
                },
            ));
            for e in &p.engines {
                out.push((
                    e.seq,
                    SavedObject {
                        kind: ObjectKind::Engine,
                        project: pname.clone(),
                        engine: None,
                        name: e.spec.name.clone(),
                        source: e.source.clone(),
                    },
                ));
                for t in &e.tasks {
                    out.push((
                        t.seq,
                        SavedObject {
                            kind: ObjectKind::Task,
                            project: pname.clone(),
                            engine: Some(e.spec.name.clone()),
                            name: t.spec.name.clone(),
                            source: t.source.clone(),
                        },
                    ));
                }
            }
        }
        out.sort_by_key(|(seq, _)| *seq);
        out.into_iter().map(|(_, o)| o).collect()
    }

    fn engine(&self, project: &str, engine: &str) -> Option<&EngineEntry> {
        self.projects.get(project)?.engines.iter().find(|e| e.spec.name == engine)
    }

    fn engine_mut(&mut self, project: &str, engine: &str) -> Option<&mut EngineEntry> {
        self.projects.get_mut(project)?.engines.iter_mut().find(|e| e.spec.name == engine)
    }
}

/// Special targets (pid 1, kernel threads, etmemd): a task may name one
/// only with `allow_special_target`, and only a root client may set that.
/// Tasks that name processes by name or cgroup are resolved later; the
/// engines leave special pids out of them then (`procinfo::resolve_task`).
fn check_special_targets(objects: &Objects, peer_uid: u32) -> Result<(), RegistryError> {
    for t in &objects.tasks {
        if t.allow_special_target {
            if peer_uid != 0 {
                return Err(RegistryError::SpecialTargetNotRoot { task: t.name.clone(), uid: peer_uid });
            }
        } else if let TaskTarget::Pid(pid) = t.target
            && let Some(reason) = crate::engine::procinfo::refuse_reason(pid)
        {
            return Err(RegistryError::SpecialTarget { task: t.name.clone(), reason });
        }
    }
    Ok(())
}

/// Stop a project's engines, then its backends.
fn stop_entry(entry: &mut ProjectEntry) {
    for e in entry.engines.iter_mut() {
        if let Some(mut inst) = e.instance.take() {
            inst.stop();
        }
    }
    if let Some(rt) = entry.runtime.take() {
        rt.stop();
    }
}

fn project_view(p: &ProjectEntry) -> ProjectView {
    let engines = p
        .engines
        .iter()
        .map(|e| EngineView {
            name: e.spec.name.clone(),
            kind: e
                .instance
                .as_ref()
                .and_then(|i| i.running_as())
                .unwrap_or_else(|| kind_name(&e.spec.kind).to_string()),
            tasks: e
                .tasks
                .iter()
                .map(|t| {
                    let (target_type, target) = target_strings(&t.spec.target);
                    let stats = e.instance.as_ref().and_then(|i| i.task_stats(&t.spec.name));
                    TaskView {
                        name: t.spec.name.clone(),
                        target_type,
                        target,
                        started: stats.is_some(),
                        stats,
                    }
                })
                .collect(),
        })
        .collect();
    ProjectView {
        name: p.spec.name.clone(),
        started: p.runtime.is_some(),
        scan: scan_name(&p.spec.scan).to_string(),
        engines,
        backends: p.runtime.as_ref().map(|r| r.backend_views()).unwrap_or_default(),
        notes: {
            let mut notes = crate::runtime::static_notes(&p.spec);
            notes.extend(p.runtime.as_ref().map(|r| r.live_notes()).unwrap_or_default());
            notes
        },
    }
}
