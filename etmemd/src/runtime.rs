//! What a started project owns besides its engines: the swap backends it
//! created. Created at project start, torn down at stop.

use crate::protocol::{BackendView, ErrorKind};
use std::path::PathBuf;

/// Daemon-wide settings a project runtime needs.
#[derive(Debug, Clone)]
pub struct RuntimeContext {
    /// Where created devices are recorded so a restarted daemon can adopt or clean them.
    pub state_dir: PathBuf,
}

/// Why a project's runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("swap backends are not in this build yet ({count} configured)")]
    BackendsNotInBuild { count: usize },
}

impl RuntimeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::BackendsNotInBuild { .. } => ErrorKind::Unsupported,
        }
    }
}

/// The running part of a project that is not an engine.
#[derive(Debug)]
pub struct ProjectRuntime {
    _private: (),
}

impl ProjectRuntime {
    pub fn start(spec: &conf::Project, _ctx: &RuntimeContext) -> Result<ProjectRuntime, RuntimeError> {
        if !spec.backends.is_empty() {
            return Err(RuntimeError::BackendsNotInBuild { count: spec.backends.len() });
        }
        Ok(ProjectRuntime { _private: () })
    }

    /// Messages for the client that started the project.
    pub fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    pub fn backend_views(&self) -> Vec<BackendView> {
        Vec::new()
    }

    pub fn stop(self) {}
}

/// Notes about a project's config that hold whether or not it runs.
pub fn static_notes(_spec: &conf::Project) -> Vec<String> {
    Vec::new()
}
