//! The engine interface: what the registry drives. An engine instance serves
//! one engine of one started project; it starts and stops tasks and reports
//! their snapshots and figures.

pub mod act;
pub mod cslide;
pub mod kernel_damon;
pub mod page;
pub mod procinfo;
pub mod region;
pub mod test_engine;

use crate::protocol::TaskStats;
use crate::runtime::Backends;
use damon_core::Snapshot;
use std::sync::Arc;

/// The tasks an engine command is about: `task` when the engine runs it,
/// else every task in `running`.
pub(crate) fn command_tasks<'a>(
    task: Option<&str>,
    mut running: impl Iterator<Item = &'a String>,
) -> Result<Vec<String>, EngineError> {
    match task {
        Some(t) if running.any(|r| r == t) => Ok(vec![t.to_string()]),
        Some(t) => Err(EngineError::TaskNotRunning { task: t.into() }),
        None => Ok(running.cloned().collect()),
    }
}

/// The engine commands every snapshot-publishing engine answers:
/// `regions` (damo's raw line form) and `snapshot` (JSON, per task and pid),
/// over `tasks`, reading each task's snapshots through `snapshots`. `None`
/// for any other command, which the engine answers itself.
pub(crate) fn snapshot_command(
    cmd: &str,
    tasks: &[String],
    snapshots: impl Fn(&str) -> Vec<(u32, Snapshot)>,
) -> Option<String> {
    match cmd {
        "regions" => Some(
            tasks
                .iter()
                .flat_map(|t| {
                    snapshots(t).into_iter().map(move |(pid, snap)| region::damo_raw(t, pid, &snap))
                })
                .collect(),
        ),
        "snapshot" => {
            let all: std::collections::BTreeMap<&String, std::collections::BTreeMap<u32, Snapshot>> =
                tasks.iter().map(|t| (t, snapshots(t).into_iter().collect())).collect();
            Some(serde_json::to_string(&all).expect("snapshots serialize") + "\n")
        }
        _ => None,
    }
}

/// One running engine of a started project.
pub trait Engine: Send {
    /// Start monitoring (and acting on) a task. Called at project start for
    /// every task, and when a task is added to a started project.
    fn start_task(&mut self, task: &conf::Task) -> Result<(), EngineError>;

    /// Stop a task; a no-op when it does not run.
    fn stop_task(&mut self, task: &str);

    /// Figures for `project show`; `None` when the task does not run.
    fn task_stats(&self, task: &str) -> Option<TaskStats>;

    /// The latest snapshot of each process of the task, by pid.
    fn snapshots(&self, task: &str) -> Vec<(u32, Snapshot)>;

    /// The task's snapshot feed, which recorders subscribe to so that they
    /// get every aggregation; `None` when the engine has none (recorders
    /// then poll [`Engine::snapshots`] and may miss some).
    fn feed(&self, task: &str) -> Option<Arc<crate::record::feed::SnapshotFeed>> {
        let _ = task;
        None
    }

    /// An engine command (`etmem engine CMD`); `Ok` holds the text to print.
    fn command(&mut self, cmd: &str, task: Option<&str>) -> Result<String, EngineError>;

    /// Stop every task. The registry calls it before dropping the engine.
    fn stop(&mut self);

    /// What actually runs, when it differs from the configured kind (etmem's
    /// `damon` engine on the userspace region engine, say).
    fn running_as(&self) -> Option<String> {
        None
    }
}

/// What a started project gives its engines.
#[derive(Debug, Clone)]
pub struct EngineEnv {
    /// The project's swap devices (empty when it has none of its own).
    pub backends: Arc<Backends>,
}

/// Builds engine instances when a project starts.
pub trait EngineFactory: Send + Sync {
    fn create(
        &self,
        project: &conf::Project,
        engine: &conf::Engine,
        env: &EngineEnv,
    ) -> Result<Box<dyn Engine>, EngineError>;
}

/// Why an engine could not start or serve a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("engine {kind} is not in this build of etmemd")]
    NotInBuild { kind: String },
    #[error("engine {kind} cannot run here: {reason}")]
    Unsupported { kind: String, reason: String },
    #[error("task {task}: {reason}")]
    Task { task: String, reason: String },
    #[error("engine {engine} has no command {cmd:?}; it knows: {known}")]
    UnknownCommand { engine: String, cmd: String, known: String },
    #[error("task {task} is not running in this engine")]
    TaskNotRunning { task: String },
}

/// The name a kind has in messages and in `project show`.
pub fn kind_name(kind: &conf::EngineKind) -> &'static str {
    match kind {
        conf::EngineKind::Page(_) => "page",
        conf::EngineKind::Cslide(_) => "cslide",
        conf::EngineKind::Region(_) => "region",
        conf::EngineKind::KernelDamon(_) => "kernel-damon",
        conf::EngineKind::Psi => "psi",
        conf::EngineKind::Memdcd => "memdcd",
        conf::EngineKind::Thirdparty(_) => "thirdparty",
    }
}

/// The engines this build has.
#[derive(Debug, Default)]
pub struct BuiltinEngines;

impl EngineFactory for BuiltinEngines {
    fn create(
        &self,
        project: &conf::Project,
        engine: &conf::Engine,
        env: &EngineEnv,
    ) -> Result<Box<dyn Engine>, EngineError> {
        match &engine.kind {
            conf::EngineKind::Region(r) => Ok(Box::new(region::RegionEngine::new(project, engine, r, env)?)),
            conf::EngineKind::Page(p) => Ok(Box::new(page::PageEngine::new(project, engine, p, env)?)),
            conf::EngineKind::Cslide(c) => Ok(Box::new(cslide::CslideEngine::new(project, engine, c, env)?)),
            // The kernel's DAMON; etmem's damon engine falls back to the
            // userspace region engine where kernel DAMON vaddr is unusable.
            conf::EngineKind::KernelDamon(k) => kernel_damon::create(project, engine, k, env),
            conf::EngineKind::Thirdparty(t) => Err(EngineError::Unsupported {
                kind: "thirdparty".into(),
                reason: format!(
                    "key libname: etmem-rs does not load engine libraries ({}); use a built-in engine",
                    t.libname.display()
                ),
            }),
            other => Err(EngineError::NotInBuild { kind: kind_name(other).to_string() }),
        }
    }
}
