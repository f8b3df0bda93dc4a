//! The state directory: the registry's objects (as the config text the user
//! gave) and which projects were started, so a restarted daemon comes back
//! as it was. Written atomically (temporary file, fsync, rename).

use crate::registry::{ObjectKind, SavedObject, Source};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const STATE_FILE: &str = "registry.json";
const STATE_VERSION: u32 = 1;

/// The saved registry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SavedState {
    pub objects: Vec<SavedObject>,
    /// Projects that were running and should run again after a restart.
    pub started: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    objects: Vec<ObjectRecord>,
    started: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectRecord {
    kind: ObjectKind,
    project: String,
    engine: Option<String>,
    name: String,
    file: PathBuf,
    format: String,
    text: String,
}

/// Why the state could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot write state to {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read state from {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is not valid")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("state file {path} has version {found}, this etmemd reads version {STATE_VERSION}")]
    Version { path: PathBuf, found: u32 },
}

/// The daemon's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

fn format_name(f: conf::Format) -> &'static str {
    match f {
        conf::Format::Toml => "toml",
        conf::Format::EtmemIni => "etmem-ini",
    }
}

impl StateDir {
    pub fn new(path: impl Into<PathBuf>) -> StateDir {
        StateDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Save the registry, replacing the previous state atomically.
    pub fn save(&self, state: &SavedState) -> Result<(), StateError> {
        let file = StateFile {
            version: STATE_VERSION,
            objects: state
                .objects
                .iter()
                .map(|o| ObjectRecord {
                    kind: o.kind,
                    project: o.project.clone(),
                    engine: o.engine.clone(),
                    name: o.name.clone(),
                    file: o.source.file.clone(),
                    format: format_name(o.source.format).into(),
                    text: o.source.text.to_string(),
                })
                .collect(),
            started: state.started.clone(),
        };
        let body = serde_json::to_vec_pretty(&file).expect("state always serializes");
        let target = self.path.join(STATE_FILE);
        let err = |source| StateError::Write { path: target.clone(), source };
        std::fs::create_dir_all(&self.path).map_err(err)?;
        let tmp = self.path.join(format!("{STATE_FILE}.tmp"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode_0600()
            .open(&tmp)
            .map_err(err)?;
        f.write_all(&body).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &target).map_err(err)?;
        Ok(())
    }

    /// Load the saved registry; `Ok(None)` when there is none yet.
    pub fn load(&self) -> Result<Option<SavedState>, StateError> {
        let path = self.path.join(STATE_FILE);
        let body = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let file: StateFile = serde_json::from_slice(&body)
            .map_err(|source| StateError::Corrupt { path: path.clone(), source })?;
        if file.version != STATE_VERSION {
            return Err(StateError::Version { path, found: file.version });
        }
        let objects = file
            .objects
            .into_iter()
            .map(|o| SavedObject {
                kind: o.kind,
                project: o.project,
                engine: o.engine,
                name: o.name,
                source: Source {
                    file: o.file,
                    format: if o.format == "toml" { conf::Format::Toml } else { conf::Format::EtmemIni },
                    text: Arc::from(o.text),
                },
            })
            .collect();
        Ok(Some(SavedState { objects, started: file.started }))
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = StateDir::new(dir.path().join("state"));
        assert_eq!(sd.load().expect("load"), None);
        let src = Source { file: "/etc/x.toml".into(), format: conf::Format::Toml, text: Arc::from("a = 1") };
        let state = SavedState {
            objects: vec![SavedObject {
                kind: ObjectKind::Project,
                project: "p".into(),
                engine: None,
                name: "p".into(),
                source: src,
            }],
            started: vec!["p".into()],
        };
        sd.save(&state).expect("save");
        assert_eq!(sd.load().expect("load"), Some(state));
    }

    #[test]
    fn corrupt_state_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").expect("write");
        assert!(matches!(StateDir::new(dir.path()).load(), Err(StateError::Corrupt { .. })));
    }
}
