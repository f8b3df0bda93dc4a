//! What a started project owns besides its engines: the swap backends it
//! created (zram devices, swap files). Created at project start — or adopted
//! from a previous daemon that died — and torn down at stop.

use crate::protocol::{BackendView, ErrorKind};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use swap_backends::{PoolState, SwapFile, SwapPool, ZramSwap};

/// Daemon-wide settings and state a project runtime needs.
#[derive(Debug, Clone)]
pub struct RuntimeContext {
    /// Where created devices are recorded so a restarted daemon can adopt or clean them.
    pub state_dir: PathBuf,
    /// Devices a previous daemon left swapped on, waiting for their project.
    pub adopted: Arc<Mutex<Adopted>>,
}

impl RuntimeContext {
    pub fn new(state_dir: PathBuf) -> RuntimeContext {
        RuntimeContext { state_dir, adopted: Arc::new(Mutex::new(Adopted::default())) }
    }

    fn device_state(&self, project: &str) -> swap_backends::StateDir {
        swap_backends::StateDir::new(&self.state_dir).with_owner(project)
    }

    /// Adopt or clean the devices recorded by a previous daemon. Returns a
    /// line per device for the log.
    pub fn recover_devices(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let rec = match swap_backends::recover(&swap_backends::StateDir::new(&self.state_dir)) {
            Ok(r) => r,
            Err(e) => return vec![format!("cannot read device records: {}", swap_backends::error_chain(&e))],
        };
        let mut adopted = self.adopted.lock().unwrap_or_else(|p| p.into_inner());
        for z in rec.zram {
            lines.push(format!(
                "adopted {} (project {})",
                z.device_path().display(),
                z.owner().unwrap_or("?")
            ));
            adopted.zram.push(z);
        }
        for f in rec.swap_files {
            lines.push(format!(
                "adopted swap file {} (project {})",
                f.path().display(),
                f.owner().unwrap_or("?")
            ));
            adopted.files.push(f);
        }
        for o in rec.others {
            lines.push(format!("device record {}: {:?}", o.record_path.display(), o.outcome));
        }
        for (p, e) in rec.unreadable {
            lines.push(format!("unreadable device record {}: {e}", p.display()));
        }
        lines
    }

    /// Tear down adopted devices no project took back.
    pub fn release_unclaimed(&self) -> Vec<String> {
        let mut adopted = self.adopted.lock().unwrap_or_else(|p| p.into_inner());
        let mut lines = Vec::new();
        for z in adopted.zram.drain(..) {
            let dev = z.device_path();
            match z.teardown() {
                Ok(()) => lines.push(format!("removed unclaimed {}", dev.display())),
                Err(e) => {
                    lines.push(format!("cannot remove {}: {}", dev.display(), swap_backends::error_chain(&e)))
                }
            }
        }
        for f in adopted.files.drain(..) {
            let path = f.path().to_path_buf();
            match f.teardown() {
                Ok(()) => lines.push(format!("removed unclaimed swap file {}", path.display())),
                Err(e) => lines.push(format!(
                    "cannot remove {}: {}",
                    path.display(),
                    swap_backends::error_chain(&e)
                )),
            }
        }
        lines
    }
}

/// Devices recovered at daemon start, by owner project.
#[derive(Debug, Default)]
pub struct Adopted {
    zram: Vec<ZramSwap>,
    files: Vec<SwapFile>,
}

/// Why a project's runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot create zram swap")]
    Zram(#[source] swap_backends::zram::ZramSetupError),
    #[error("cannot create swap file {path}")]
    SwapFile {
        path: PathBuf,
        #[source]
        source: swap_backends::swapfile::SwapFileSetupError,
    },
}

impl RuntimeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::Zram(swap_backends::zram::ZramSetupError::Unavailable { .. }) => {
                ErrorKind::Unsupported
            }
            _ => ErrorKind::Internal,
        }
    }
}

/// The swap devices of one started project.
#[derive(Debug, Default)]
pub struct Backends {
    zram: Mutex<Vec<ZramSwap>>,
    files: Mutex<Vec<SwapFile>>,
    /// zram devices of ours that someone else removed (swapoff, reset,
    /// hot_remove): device path -> why it is no longer ours. They are left
    /// out of the pool and never touched again; stop drops their records.
    lost: Mutex<BTreeMap<PathBuf, String>>,
}

impl Backends {
    /// Whether the project has swap devices of its own.
    pub fn is_empty(&self) -> bool {
        self.zram.lock().map(|z| z.is_empty()).unwrap_or(true)
            && self.files.lock().map(|f| f.is_empty()).unwrap_or(true)
    }

    /// The pool's state: room, spilling to the swap file, or full. zram
    /// devices that are no longer ours are left out (and logged once).
    pub fn pool(&self) -> Option<SwapPool> {
        let z = self.zram.lock().ok()?;
        let f = self.files.lock().ok()?;
        let mut zr: Vec<&ZramSwap> = Vec::with_capacity(z.len());
        for dev in z.iter() {
            match dev.lost_reason() {
                None => zr.push(dev),
                Some(why) => self.note_lost(dev.device_path(), why),
            }
        }
        let fr: Vec<&SwapFile> = f.iter().collect();
        SwapPool::observe(&zr, &fr).ok()
    }

    fn note_lost(&self, path: PathBuf, why: String) {
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        if let std::collections::btree_map::Entry::Vacant(e) = lost.entry(path) {
            tracing::warn!(
                device = %e.key().display(),
                "swap device {} is gone ({why}): someone else removed it; no longer used, never touched again",
                e.key().display()
            );
            e.insert(why);
        }
    }

    /// A line per device of ours someone else removed, for `project show`.
    pub fn lost_notes(&self) -> Vec<String> {
        let lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        lost.iter()
            .map(|(p, why)| {
                format!("backend {} is gone ({why}): removed outside etmemd, no longer used", p.display())
            })
            .collect()
    }

    /// `None` when pageout may go on; the reason when it must pause.
    pub fn full_reason(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let pool = self.pool()?;
        if pool.devices.is_empty() {
            // Every device of ours is gone: pageout would go to swap areas that are not ours.
            return Some("every swap device of the project is gone".into());
        }
        match pool.state() {
            PoolState::Full { reasons } => Some(
                reasons.iter().map(|(p, r)| format!("{} {r}", p.display())).collect::<Vec<_>>().join("; "),
            ),
            _ => None,
        }
    }

    fn views(&self) -> Vec<BackendView> {
        let Some(pool) = self.pool() else { return Vec::new() };
        pool.devices
            .iter()
            .map(|d| BackendView {
                kind: match d.tier {
                    swap_backends::pool::Tier::Zram => "zram".into(),
                    swap_backends::pool::Tier::SwapFile => "swapfile".into(),
                },
                device: d.path.display().to_string(),
                priority: d.priority.unwrap_or(0),
                size_bytes: d.size_bytes,
                used_bytes: d.used_bytes,
            })
            .collect()
    }

    fn teardown(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // Reverse order of creation: swap files (the lower tier) were created last.
        if let Ok(mut files) = self.files.lock() {
            while let Some(f) = files.pop() {
                let path = f.path().to_path_buf();
                if let Err(e) = f.teardown() {
                    problems.push(format!(
                        "swap file {}: {}",
                        path.display(),
                        swap_backends::error_chain(&e)
                    ));
                }
            }
        }
        if let Ok(mut zram) = self.zram.lock() {
            while let Some(z) = zram.pop() {
                let dev = z.device_path();
                if let Err(e) = z.teardown() {
                    problems.push(format!("{}: {}", dev.display(), swap_backends::error_chain(&e)));
                }
            }
        }
        problems
    }
}

/// The running part of a project that is not an engine.
#[derive(Debug)]
pub struct ProjectRuntime {
    pub backends: Arc<Backends>,
    notes: Vec<String>,
}

impl ProjectRuntime {
    /// Create (or take back from a dead daemon) the project's swap devices.
    /// On failure, whatever was created is removed again.
    pub fn start(spec: &conf::Project, ctx: &RuntimeContext) -> Result<ProjectRuntime, RuntimeError> {
        let backends = Arc::new(Backends::default());
        let mut notes = Vec::new();
        let state = ctx.device_state(&spec.name);
        let result = (|| {
            for b in &spec.backends {
                match b {
                    conf::Backend::Zram(z) => {
                        let adopted = take_adopted_zram(ctx, &spec.name, z);
                        let dev = match adopted {
                            Some(dev) => {
                                notes.push(format!(
                                    "took back {} from the previous daemon",
                                    dev.device_path().display()
                                ));
                                dev
                            }
                            None => ZramSwap::create(z, Some(&state)).map_err(RuntimeError::Zram)?,
                        };
                        notes.push(format!(
                            "zram {} ({}, {}, priority {})",
                            dev.device_path().display(),
                            crate::render::bytes(z.size_bytes),
                            z.compressor,
                            dev.priority()
                        ));
                        backends.zram.lock().unwrap_or_else(|p| p.into_inner()).push(dev);
                    }
                    conf::Backend::SwapFile(f) => {
                        let adopted = take_adopted_file(ctx, &spec.name, f);
                        let dev = match adopted {
                            Some(dev) => dev,
                            None => SwapFile::create(f, Some(&state))
                                .map_err(|source| RuntimeError::SwapFile { path: f.path.clone(), source })?,
                        };
                        notes.push(format!(
                            "swap file {} ({}, priority {})",
                            dev.path().display(),
                            crate::render::bytes(dev.size_bytes()),
                            dev.priority()
                        ));
                        backends.files.lock().unwrap_or_else(|p| p.into_inner()).push(dev);
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            for p in backends.teardown() {
                tracing::warn!(project = %spec.name, "after a failed start: {p}");
            }
            return Err(e);
        }
        Ok(ProjectRuntime { backends, notes })
    }

    /// What the project's engines get.
    pub fn env(&self) -> crate::engine::EngineEnv {
        crate::engine::EngineEnv { backends: Arc::clone(&self.backends) }
    }

    /// Messages for the client that started the project.
    pub fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    pub fn backend_views(&self) -> Vec<BackendView> {
        self.backends.views()
    }

    /// Notes about the running project's devices (one removed by someone else).
    pub fn live_notes(&self) -> Vec<String> {
        self.backends.lost_notes()
    }

    /// Remove the project's swap devices (swapoff brings their pages back).
    pub fn stop(self) {
        for p in self.backends.teardown() {
            tracing::warn!("backend teardown: {p}");
        }
    }
}

fn take_adopted_zram(ctx: &RuntimeContext, project: &str, want: &conf::ZramBackend) -> Option<ZramSwap> {
    let mut a = ctx.adopted.lock().unwrap_or_else(|p| p.into_inner());
    let i = a.zram.iter().position(|z| {
        let have = z.backend();
        z.owner() == Some(project) && have.size_bytes == want.size_bytes && have.priority == want.priority
    })?;
    Some(a.zram.remove(i))
}

fn take_adopted_file(ctx: &RuntimeContext, project: &str, want: &conf::SwapFileBackend) -> Option<SwapFile> {
    let mut a = ctx.adopted.lock().unwrap_or_else(|p| p.into_inner());
    let i = a.files.iter().position(|f| f.owner() == Some(project) && f.path() == want.path)?;
    Some(a.files.remove(i))
}

/// Notes about a project's config that hold whether or not it runs.
pub fn static_notes(spec: &conf::Project) -> Vec<String> {
    let _ = spec;
    Vec::new()
}
