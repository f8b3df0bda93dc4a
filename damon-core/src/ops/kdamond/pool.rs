//! The kdamonds this process owns, and the coexistence rules that keep it
//! off everybody else's.
//!
//! `nr_kdamonds` is global and rewriting it recreates every kdamond
//! directory (the kernel refuses it while any kdamond runs). So:
//! - a kdamond that runs and is neither ours nor left over by a dead owner
//!   makes [`KdamondPool::acquire`] fail before anything is written;
//! - ours are reused when free; an idle directory nobody runs is taken over;
//!   growing `nr_kdamonds` stops our running kdamonds, resizes, stages their
//!   specs again and restarts them (their monitoring state starts over);
//! - ownership is recorded per owner process in `record_dir` (one file named
//!   after the owner's pid), so a daemon that was killed leaves
//!   kdamonds the next one recognises as left over and takes back.

use super::read::{self, Features, KdamondInfo};
use super::spec::KdamondSpec;
use super::tree::{self, ReadError, WriteError};
use super::write::{self, StageError};
use super::{DamonSysfs, StateCommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where daemons record the kdamonds they own, by default.
pub const DEFAULT_RECORD_DIR: &str = "/run/etmem-rs/kdamonds";

/// Why no kdamond could be had.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error("kernel DAMON sysfs is not available here: {reason}")]
    Unavailable { reason: String },
    #[error(
        "a kdamond this process did not start is running ({}): DAMON's nr_kdamonds is global and \
         cannot change while it runs, so nothing under {} was written",
        kdamonds.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        admin.display()
    )]
    ForeignRunning { kdamonds: Vec<KdamondInfo>, admin: PathBuf },
    #[error("cannot survey the kdamonds")]
    Survey(#[from] ReadError),
    #[error("cannot resize kdamonds")]
    Resize(#[source] WriteError),
    #[error("cannot stage kdamond {index} again after resizing")]
    Restage {
        index: usize,
        #[source]
        source: Box<PoolError>,
    },
}

/// Why an operation on one of our kdamonds failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("kdamond {index} is not one this process owns")]
    NotOurs { index: usize },
    #[error("kdamond {index} is running: stop it before staging a new spec without commit")]
    Running { index: usize },
    #[error("cannot stage kdamond {index}")]
    Stage {
        index: usize,
        #[source]
        source: StageError,
    },
    #[error("kdamond {index}: `{cmd}` failed")]
    Command {
        index: usize,
        cmd: &'static str,
        #[source]
        source: WriteError,
    },
    #[error("kdamond {index}")]
    Read {
        index: usize,
        #[source]
        source: ReadError,
    },
}

#[derive(Debug, Clone, Default)]
struct Slot {
    spec: Option<KdamondSpec>,
    in_use: bool,
}

/// One ownership record file: `owner_pid owner_start` on the first line,
/// then `index kdamond_pid` per kdamond.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Record {
    owner_pid: u32,
    /// Start time of the owner (field 22 of /proc/PID/stat), so a reused pid is not taken for the owner.
    owner_start: u64,
    /// (kdamond index, kdamond thread pid)
    kdamonds: Vec<(usize, u32)>,
}

impl Record {
    fn parse(text: &str) -> Option<Record> {
        let mut lines = text.lines();
        let mut head = lines.next()?.split_whitespace();
        let owner_pid = head.next()?.parse().ok()?;
        let owner_start = head.next()?.parse().ok()?;
        let mut kdamonds = Vec::new();
        for l in lines {
            let mut f = l.split_whitespace();
            kdamonds.push((f.next()?.parse().ok()?, f.next()?.parse().ok()?));
        }
        Some(Record { owner_pid, owner_start, kdamonds })
    }

    fn render(&self) -> String {
        let mut s = format!("{} {}\n", self.owner_pid, self.owner_start);
        for (i, p) in &self.kdamonds {
            s.push_str(&format!("{i} {p}\n"));
        }
        s
    }
}

/// The kdamonds of this process under one DAMON sysfs root.
#[derive(Debug)]
pub struct KdamondPool {
    sysfs: DamonSysfs,
    record_dir: Option<PathBuf>,
    slots: BTreeMap<usize, Slot>,
    features: Option<Features>,
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    // `rest` starts at field 3; field 22 is starttime.
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl KdamondPool {
    /// A pool over `sysfs`; `record_dir` None keeps no ownership records.
    pub fn new(sysfs: DamonSysfs, record_dir: Option<PathBuf>) -> KdamondPool {
        KdamondPool { sysfs, record_dir, slots: BTreeMap::new(), features: None }
    }

    pub fn sysfs(&self) -> &DamonSysfs {
        &self.sysfs
    }

    /// The kdamond indexes this pool owns and uses.
    pub fn in_use(&self) -> Vec<usize> {
        self.slots.iter().filter(|(_, s)| s.in_use).map(|(i, _)| *i).collect()
    }

    fn records(&self) -> Vec<(PathBuf, Record)> {
        let Some(dir) = &self.record_dir else { return Vec::new() };
        let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
        rd.flatten()
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                Some((e.path(), Record::parse(&text)?))
            })
            .collect()
    }

    /// Kdamonds recorded by owners that are gone, still running with the recorded pid.
    fn leftovers(&self, survey: &[KdamondInfo]) -> Vec<(usize, PathBuf)> {
        let mut out = Vec::new();
        for (path, rec) in self.records() {
            let alive = start_time(rec.owner_pid).is_some_and(|t| t == rec.owner_start);
            if alive || rec.owner_pid == std::process::id() {
                continue;
            }
            for (index, pid) in &rec.kdamonds {
                if survey.iter().any(|k| k.index == *index && k.running && k.pid == Some(*pid)) {
                    out.push((*index, path.clone()));
                }
            }
        }
        out
    }

    fn write_record(&self) {
        let Some(dir) = &self.record_dir else { return };
        let me = std::process::id();
        let path = dir.join(format!("{me}.owner"));
        let mut kdamonds = Vec::new();
        for (i, s) in &self.slots {
            if !s.in_use {
                continue;
            }
            if let Ok(info) = read::kdamond_info(&self.sysfs.kdamond_dir(*i), *i)
                && let Some(pid) = info.pid
            {
                kdamonds.push((*i, pid));
            }
        }
        if kdamonds.is_empty() {
            let _ = std::fs::remove_file(&path);
            return;
        }
        let rec = Record { owner_pid: me, owner_start: start_time(me).unwrap_or(0), kdamonds };
        let _ = std::fs::create_dir_all(dir);
        let tmp = dir.join(format!(".{me}.tmp"));
        if std::fs::write(&tmp, rec.render()).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }

    /// Running kdamonds that are neither ours nor left over by a dead owner.
    /// Read-only.
    pub fn foreign_running(&self) -> Result<Vec<KdamondInfo>, AcquireError> {
        self.sysfs.available().map_err(|reason| AcquireError::Unavailable { reason })?;
        let survey = self.sysfs.survey()?;
        let left: Vec<usize> = self.leftovers(&survey).into_iter().map(|(i, _)| i).collect();
        Ok(survey
            .into_iter()
            .filter(|k| k.running && !self.slots.contains_key(&k.index) && !left.contains(&k.index))
            .collect())
    }

    /// Get a kdamond directory of our own. Writes nothing when a foreign
    /// kdamond runs.
    pub fn acquire(&mut self) -> Result<usize, AcquireError> {
        let foreign = self.foreign_running()?;
        if !foreign.is_empty() {
            return Err(AcquireError::ForeignRunning {
                kdamonds: foreign,
                admin: self.sysfs.admin().to_path_buf(),
            });
        }
        if let Some((i, s)) = self.slots.iter_mut().find(|(_, s)| !s.in_use) {
            s.in_use = true;
            s.spec = None;
            return Ok(*i);
        }
        let survey = self.sysfs.survey()?;
        // Left over by a dead owner: stop and take it back.
        for (index, record) in self.leftovers(&survey) {
            tracing::info!(index, "taking back a kdamond left by a previous owner");
            if let Err(e) = tree::write(&self.sysfs.state_file(index), StateCommand::Off.as_str()) {
                tracing::warn!(index, "cannot stop the left-over kdamond: {e}");
                continue;
            }
            let _ = std::fs::remove_file(record);
            self.slots.insert(index, Slot { spec: None, in_use: true });
            return Ok(index);
        }
        // An idle directory nobody runs (a stopped damo session, say).
        if let Some(k) = survey.iter().find(|k| !k.running && !self.slots.contains_key(&k.index)) {
            tracing::info!(index = k.index, "taking over an idle kdamond directory");
            self.slots.insert(k.index, Slot { spec: None, in_use: true });
            return Ok(k.index);
        }
        // Grow: the kernel refuses while any kdamond runs, and all that run are ours.
        let running: Vec<usize> = survey.iter().filter(|k| k.running).map(|k| k.index).collect();
        for i in &running {
            tree::write(&self.sysfs.state_file(*i), StateCommand::Off.as_str())
                .map_err(AcquireError::Resize)?;
        }
        let n = survey.len();
        tree::write(&self.sysfs.kdamonds_dir().join("nr_kdamonds"), &(n + 1).to_string())
            .map_err(AcquireError::Resize)?;
        for (i, s) in self.slots.clone() {
            if let Some(spec) = &s.spec {
                self.stage(i, spec).map_err(|e| AcquireError::Restage { index: i, source: Box::new(e) })?;
            }
        }
        for i in running {
            self.command(i, StateCommand::On)
                .map_err(|e| AcquireError::Restage { index: i, source: Box::new(e) })?;
        }
        self.slots.insert(n, Slot { spec: None, in_use: true });
        Ok(n)
    }

    fn ours(&self, index: usize) -> Result<&Slot, PoolError> {
        self.slots.get(&index).filter(|s| s.in_use).ok_or(PoolError::NotOurs { index })
    }

    /// Write `spec` into kdamond `index`. While it runs, follow with
    /// [`StateCommand::Commit`] for the kernel to take it.
    pub fn stage(&mut self, index: usize, spec: &KdamondSpec) -> Result<(), PoolError> {
        self.ours(index)?;
        write::stage(&self.sysfs.kdamond_dir(index), spec)
            .map_err(|source| PoolError::Stage { index, source })?;
        if let Some(s) = self.slots.get_mut(&index) {
            s.spec = Some(spec.clone());
        }
        Ok(())
    }

    /// The last spec staged into kdamond `index`.
    pub fn spec(&self, index: usize) -> Option<&KdamondSpec> {
        self.slots.get(&index)?.spec.as_ref()
    }

    /// Send a `state` command to one of our kdamonds.
    pub fn command(&mut self, index: usize, cmd: StateCommand) -> Result<(), PoolError> {
        self.ours(index)?;
        tree::write(&self.sysfs.state_file(index), cmd.as_str()).map_err(|source| PoolError::Command {
            index,
            cmd: cmd.as_str(),
            source,
        })?;
        if matches!(cmd, StateCommand::On | StateCommand::Off) {
            self.write_record();
        }
        Ok(())
    }

    /// Whether kdamond `index` runs, and its pid.
    pub fn state(&self, index: usize) -> Result<KdamondInfo, PoolError> {
        read::kdamond_info(&self.sysfs.kdamond_dir(index), index)
            .map_err(|source| PoolError::Read { index, source })
    }

    /// The kernel's DAMON features, found by sizing our own (stopped)
    /// kdamond `index` to one target, scheme, filter and goal and looking
    /// at the files. Cached: a kernel's features do not change.
    pub fn features(&mut self, index: usize) -> Result<Features, PoolError> {
        if let Some(f) = &self.features {
            return Ok(f.clone());
        }
        self.ours(index)?;
        let dir = self.sysfs.kdamond_dir(index);
        if self.state(index)?.running {
            return Err(PoolError::Running { index });
        }
        let stage = |source| PoolError::Stage { index, source };
        let size = |p: &Path| -> Result<(), StageError> {
            if tree::read_u64(p)? == 0 {
                tree::write(p, "1")?;
            }
            Ok(())
        };
        let ctx = dir.join("contexts").join("0");
        size(&dir.join("contexts/nr_contexts")).map_err(stage)?;
        size(&ctx.join("targets/nr_targets")).map_err(stage)?;
        size(&ctx.join("schemes/nr_schemes")).map_err(stage)?;
        let s0 = ctx.join("schemes/0");
        for f in ["core_filters", "filters"] {
            if s0.join(f).exists() {
                size(&s0.join(f).join("nr_filters")).map_err(stage)?;
                break;
            }
        }
        if s0.join("quotas/goals").exists() {
            size(&s0.join("quotas/goals/nr_goals")).map_err(stage)?;
        }
        let f = Features::read(&dir);
        self.features = Some(f.clone());
        // The sizing wiped what was staged; stage it again.
        if let Some(spec) = self.slots.get(&index).and_then(|s| s.spec.clone()) {
            self.stage(index, &spec)?;
        }
        Ok(f)
    }

    /// Stop kdamond `index` and give it back. When no kdamond of ours is
    /// left and every directory was ours, `nr_kdamonds` goes back to 0.
    pub fn release(&mut self, index: usize) -> Result<(), PoolError> {
        self.ours(index)?;
        if self.state(index)?.running {
            self.command(index, StateCommand::Off)?;
        }
        if let Some(s) = self.slots.get_mut(&index) {
            s.in_use = false;
            s.spec = None;
        }
        self.write_record();
        if self.slots.values().all(|s| !s.in_use)
            && let Ok(survey) = self.sysfs.survey()
            && survey.iter().all(|k| self.slots.contains_key(&k.index) && !k.running)
        {
            match tree::write(&self.sysfs.kdamonds_dir().join("nr_kdamonds"), "0") {
                Ok(()) => self.slots.clear(),
                Err(e) => tracing::warn!("cannot set nr_kdamonds back to 0: {e}"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let r = Record { owner_pid: 12, owner_start: 345, kdamonds: vec![(0, 77), (2, 99)] };
        assert_eq!(Record::parse(&r.render()), Some(r));
        assert_eq!(Record::parse("x"), None);
    }

    #[test]
    fn our_start_time_is_known() {
        assert!(start_time(std::process::id()).is_some());
    }
}
