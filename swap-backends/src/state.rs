//! The record of swap devices we created, kept as one JSON file per device
//! in a state directory, so a restarted daemon adopts or removes what a killed one left.
//!
//! A record is written before the device is configured (right after zram's
//! `hot_add`, before a swap file is filled) and removed only after a full
//! teardown, so there is no moment when a device of ours exists unrecorded.
//! [`recover`] walks the records: a device that is still ours and swapped on
//! is adopted (returned as a guard), one that is ours but half set up or half
//! torn down is removed, and a record whose device is gone or no longer ours
//! is dropped without touching anything.

use crate::swapfile::{SwapFile, SwapFileRecord};
use crate::zram::{ZramRecord, ZramSwap};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The subdirectory of the state directory that holds our records.
pub const DEVICES_SUBDIR: &str = "devices";

/// Where device records are kept, and the owner tag put on new records
/// (typically a project name, so a restarted daemon gives each adopted device
/// back to its project). Creating the value does no I/O; the directory is
/// created (mode 0700) on the first write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
    owner: Option<String>,
}

/// One device record, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeviceRecord {
    Zram(ZramRecord),
    SwapFile(SwapFileRecord),
}

/// A file in the records directory and what it decodes to (the decode
/// error as text when it is not a record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFile {
    pub path: PathBuf,
    pub record: Result<DeviceRecord, String>,
}

/// Writing or removing a record failed.
#[derive(Debug, thiserror::Error)]
pub enum StateWriteError {
    #[error("cannot create state directory {path}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot write device record {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot encode device record {path}")]
    Encode { path: PathBuf, source: serde_json::Error },
    #[error("cannot remove device record {path}")]
    Remove { path: PathBuf, source: std::io::Error },
}

/// Listing the records failed (one unreadable record is not this: see
/// [`Recovery::unreadable`]).
#[derive(Debug, thiserror::Error)]
#[error("cannot list device records in {path}")]
pub struct StateReadError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into(), owner: None }
    }

    /// The same directory; new records carry `owner`.
    pub fn with_owner(mut self, owner: impl Into<String>) -> StateDir {
        self.owner = Some(owner.into());
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// The directory the records live in.
    pub fn devices_dir(&self) -> PathBuf {
        self.root.join(DEVICES_SUBDIR)
    }

    /// Writes (or replaces) the record `name` atomically (temp file + rename).
    pub(crate) fn write_record(&self, name: &str, record: &DeviceRecord) -> Result<PathBuf, StateWriteError> {
        let dir = self.devices_dir();
        create_private_dir(&dir)
            .map_err(|source| StateWriteError::CreateDir { path: dir.clone(), source })?;
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let text = serde_json::to_vec_pretty(record)
            .map_err(|source| StateWriteError::Encode { path: path.clone(), source })?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|source| StateWriteError::Write { path: path.clone(), source })?;
        Ok(path)
    }

    /// Every `*.json` record with what it decodes to, sorted by path.
    pub fn records(&self) -> Result<Vec<RecordFile>, StateReadError> {
        let dir = self.devices_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StateReadError { path: dir, source }),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|source| StateReadError { path: dir.clone(), source })?;
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let rec = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<DeviceRecord>(&b).map_err(|e| e.to_string()));
            out.push(RecordFile { path, record: rec });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

/// Removes a record file; a missing file is fine.
pub(crate) fn remove_record(path: &Path) -> Result<(), StateWriteError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StateWriteError::Remove { path: path.to_path_buf(), source }),
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// The kernel's boot id: a device recorded under another boot id cannot exist any more.
pub(crate) fn boot_id() -> std::io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?.trim().to_string())
}

/// What [`recover`] did with one record whose device was not adopted.
#[derive(Debug)]
pub struct RecoveredRecord {
    pub record_path: PathBuf,
    pub record: DeviceRecord,
    pub outcome: RecordOutcome,
}

/// The fate of a record that was not adopted.
#[derive(Debug)]
pub enum RecordOutcome {
    /// The device was ours but not (fully) swapped on; it was removed.
    Cleaned,
    /// The device is gone or no longer ours; nothing was touched and the record was dropped.
    Forgotten { reason: String },
    /// Removing the device failed; it and its record are left for the next try.
    Failed { error: String },
}

/// The result of [`recover`].
#[derive(Debug, Default)]
pub struct Recovery {
    /// Still ours and swapped on: dropping a guard tears the device down.
    pub zram: Vec<ZramSwap>,
    pub swap_files: Vec<SwapFile>,
    /// Records whose devices were cleaned, forgotten, or failed to clean.
    pub others: Vec<RecoveredRecord>,
    /// Files in the records directory that do not decode, left in place.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Adopts or cleans every device recorded in `state` (zram devices and swap
/// files). Call once at daemon start, before creating devices.
pub fn recover(state: &StateDir) -> Result<Recovery, StateReadError> {
    let mut out = Recovery::default();
    for RecordFile { path, record } in state.records()? {
        match record {
            Err(e) => out.unreadable.push((path, e)),
            Ok(DeviceRecord::Zram(r)) => match crate::zram::adopt_or_clean_one(path.clone(), r.clone()) {
                Ok(guard) => out.zram.push(guard),
                Err(outcome) => out.others.push(RecoveredRecord {
                    record_path: path,
                    record: DeviceRecord::Zram(r),
                    outcome,
                }),
            },
            Ok(DeviceRecord::SwapFile(r)) => {
                match crate::swapfile::adopt_or_clean_one(path.clone(), r.clone()) {
                    Ok(guard) => out.swap_files.push(guard),
                    Err(outcome) => out.others.push(RecoveredRecord {
                        record_path: path,
                        record: DeviceRecord::SwapFile(r),
                        outcome,
                    }),
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::SwapUuid;

    #[test]
    fn records_round_trip_and_bad_files_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path()).with_owner("proj");
        let rec = DeviceRecord::Zram(ZramRecord {
            index: 3,
            boot_id: "b".into(),
            diskseq: Some(17),
            uuid: SwapUuid([7; 16]).to_string(),
            size_bytes: 1 << 20,
            compressor: "lz4".into(),
            priority: 100,
            mem_limit_bytes: None,
            owner: Some("proj".into()),
        });
        let p = state.write_record("zram-x.json", &rec).expect("write");
        std::fs::write(state.devices_dir().join("junk.json"), b"{").expect("write junk");
        std::fs::write(state.devices_dir().join("notes.txt"), b"ignored").expect("write txt");
        let recs = state.records().expect("list");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].path, p);
        assert_eq!(recs[1].record.as_ref().expect("decodes"), &rec);
        assert!(recs[0].record.is_err(), "junk.json does not decode");
        remove_record(&p).expect("remove");
        remove_record(&p).expect("removing twice is fine");
        assert_eq!(state.records().expect("list").len(), 1);
    }

    #[test]
    fn missing_dir_has_no_records() {
        let state = StateDir::new("/nonexistent/etmem-state");
        assert!(state.records().expect("missing dir is empty").is_empty());
    }
}
