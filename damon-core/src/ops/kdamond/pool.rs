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

/// How long [`KdamondPool::command`] tries to read the pid of a kdamond it turned on.
const PID_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// The kdamond thread's pid, learnt when we turned it on: the ownership
    /// record must not depend on a `pid` read that can fail later (EBUSY
    /// while another process holds DAMON's sysfs lock).
    pid: Option<u32>,
    /// Recorded before `on` is written (with pid 0), so a daemon killed
    /// between `on` and learning the pid leaves a record that a
    /// successor can match by start time.
    turning_on: bool,
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

/// Whether thread `pid` started between just before `when` and
/// [`INTENT_WINDOW`] after it (its start time from /proc, in wall time).
fn started_soon_after(pid: u32, when: std::time::SystemTime) -> bool {
    let (Some(ticks), Some(btime)) = (start_time(pid), boot_time()) else { return false };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let Ok(hz) = u64::try_from(hz) else { return false };
    if hz == 0 {
        return false;
    }
    let started = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(btime)
        + std::time::Duration::from_millis(ticks * 1000 / hz);
    // Boot time is whole seconds: allow that much before the record.
    let from = when - std::time::Duration::from_secs(2);
    started >= from && started <= when + INTENT_WINDOW
}

/// How soon after a "turning on" record its kdamond must have started to be
/// taken for the one the record announced.
const INTENT_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);

fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
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

    /// Kdamonds recorded by owners that are gone, still running with the
    /// recorded pid, or (recorded as being turned on when the owner died)
    /// started within moments of the record being written.
    fn leftovers(&self, survey: &[KdamondInfo]) -> Vec<(usize, PathBuf)> {
        let mut out = Vec::new();
        for (path, rec) in self.records() {
            let alive = start_time(rec.owner_pid).is_some_and(|t| t == rec.owner_start);
            if alive || rec.owner_pid == std::process::id() {
                continue;
            }
            let written = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            for (index, pid) in &rec.kdamonds {
                let ours = |k: &KdamondInfo| match (*pid, k.pid) {
                    (0, Some(running)) => written.is_some_and(|w| started_soon_after(running, w)),
                    (recorded, running) => running == Some(recorded),
                };
                if survey.iter().any(|k| k.index == *index && k.running && ours(k)) {
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
            match (s.pid, s.turning_on) {
                (Some(pid), _) => kdamonds.push((*i, pid)),
                (None, true) => kdamonds.push((*i, 0)),
                (None, false) => {}
            }
        }
        if kdamonds.is_empty() {
            let _ = std::fs::remove_file(&path);
            return;
        }
        let rec = Record { owner_pid: me, owner_start: start_time(me).unwrap_or(0), kdamonds };
        let tmp = dir.join(format!(".{me}.tmp"));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, rec.render()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(
                "cannot record the kdamonds this daemon owns in {}: {e}; a daemon started after a crash \
                 will take them for foreign",
                path.display()
            );
        }
    }

    /// The pid of our kdamond `index` just turned on. The kernel sets it
    /// before `on` returns, but a read can meet EBUSY for a while, so try
    /// for up to [`PID_WAIT`].
    fn learn_pid(&mut self, index: usize) -> Option<u32> {
        let end = std::time::Instant::now() + PID_WAIT;
        let pid = loop {
            match read::kdamond_info(&self.sysfs.kdamond_dir(index), index) {
                Ok(KdamondInfo { running: true, pid: Some(pid), .. }) => break Some(pid),
                Ok(KdamondInfo { running: false, .. }) => break None,
                Ok(_) | Err(_) if std::time::Instant::now() < end => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Ok(_) => break None,
                Err(e) => {
                    tracing::warn!(index, "cannot read the pid of our kdamond: {e}");
                    break None;
                }
            }
        };
        if let Some(s) = self.slots.get_mut(&index) {
            s.pid = pid;
        }
        pid
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
            self.slots.insert(index, Slot { spec: None, in_use: true, pid: None, turning_on: false });
            return Ok(index);
        }
        // An idle directory nobody runs (a stopped damo session, say).
        if let Some(k) = survey.iter().find(|k| !k.running && !self.slots.contains_key(&k.index)) {
            tracing::info!(index = k.index, "taking over an idle kdamond directory");
            self.slots.insert(k.index, Slot { spec: None, in_use: true, pid: None, turning_on: false });
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
        self.slots.insert(n, Slot { spec: None, in_use: true, pid: None, turning_on: false });
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
        let turning_on = matches!(cmd, StateCommand::On);
        if turning_on && let Some(s) = self.slots.get_mut(&index) {
            s.turning_on = true;
            self.write_record();
        }
        let written = tree::write(&self.sysfs.state_file(index), cmd.as_str());
        if let Some(s) = self.slots.get_mut(&index) {
            s.turning_on = false;
        }
        if let Err(source) = written {
            if turning_on {
                self.write_record();
            }
            return Err(PoolError::Command { index, cmd: cmd.as_str(), source });
        }
        match cmd {
            StateCommand::On => {
                self.learn_pid(index);
            }
            StateCommand::Off => {
                if let Some(s) = self.slots.get_mut(&index) {
                    s.pid = None;
                }
            }
            _ => return Ok(()),
        }
        self.write_record();
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
            s.pid = None;
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

    #[test]
    fn a_thread_started_just_now_matches_a_record_written_just_now() {
        let now = std::time::SystemTime::now();
        let me = std::process::id();
        // This process started before `now` (possibly by more than the
        // 2 s slack); a record written an hour ago is older than the window.
        let hour_ago = now - std::time::Duration::from_secs(3600);
        assert!(!started_soon_after(me, hour_ago));
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() } as u32).expect("test fixture");
            std::thread::sleep(std::time::Duration::from_millis(200));
        });
        let tid = rx.recv().expect("test fixture");
        // A thread's /proc/PID/stat is reachable through its tid.
        assert!(started_soon_after(tid, now), "a thread started after the record matches it");
        assert!(
            !started_soon_after(tid, now + std::time::Duration::from_secs(60)),
            "nor one started before it"
        );
        t.join().expect("test fixture");
    }

    /// A DAMON tree with one kdamond, running as `pid` when given.
    fn fake_tree(root: &Path, pid: Option<u32>) -> DamonSysfs {
        let k = root.join("kdamonds/0");
        std::fs::create_dir_all(k.join("contexts")).expect("test fixture");
        std::fs::write(root.join("kdamonds/nr_kdamonds"), "1\n").expect("test fixture");
        std::fs::write(k.join("state"), if pid.is_some() { "on\n" } else { "off\n" }).expect("test fixture");
        std::fs::write(k.join("pid"), format!("{}\n", pid.map_or(-1, i64::from))).expect("test fixture");
        std::fs::write(k.join("contexts/nr_contexts"), "0\n").expect("test fixture");
        DamonSysfs::new(root)
    }

    /// A record left by a dead owner (pid 1's start time never matches a
    /// made-up one), naming kdamond 0 as `kdamond_pid`.
    fn dead_owner_record(dir: &Path, kdamond_pid: u32) {
        std::fs::create_dir_all(dir).expect("test fixture");
        let rec = Record { owner_pid: 1, owner_start: u64::MAX, kdamonds: vec![(0, kdamond_pid)] };
        std::fs::write(dir.join("1.owner"), rec.render()).expect("test fixture");
    }

    #[test]
    fn a_kdamond_left_by_a_dead_owner_is_not_foreign() {
        let dir = tempfile::tempdir().expect("test fixture");
        let sysfs = fake_tree(&dir.path().join("admin"), Some(4242));
        let records = dir.path().join("records");
        let pool = KdamondPool::new(sysfs.clone(), Some(records.clone()));
        assert_eq!(pool.foreign_running().expect("test fixture").len(), 1, "no record: foreign");
        dead_owner_record(&records, 4242);
        assert!(pool.foreign_running().expect("test fixture").is_empty(), "recorded with its pid: left over");
        dead_owner_record(&records, 4243);
        assert_eq!(pool.foreign_running().expect("test fixture").len(), 1, "another pid: foreign");
    }

    /// The owner died after recording that it was turning kdamond 0 on,
    /// before it could learn the pid: a kdamond started just after the
    /// record is its, one started long before is not.
    #[test]
    fn a_kdamond_turned_on_as_the_owner_died_is_matched_by_start_time() {
        let dir = tempfile::tempdir().expect("test fixture");
        let records = dir.path().join("records");
        dead_owner_record(&records, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() } as u32).expect("test fixture");
            let _ = stop_rx.recv();
        });
        let tid = rx.recv().expect("test fixture");
        let sysfs = fake_tree(&dir.path().join("admin"), Some(tid));
        let pool = KdamondPool::new(sysfs, Some(records.clone()));
        assert!(
            pool.foreign_running().expect("test fixture").is_empty(),
            "started right after the record: left over"
        );
        // This process started before the test, at least as long ago as
        // its start time says; pretend it is the running kdamond.
        let old = fake_tree(&dir.path().join("admin2"), Some(std::process::id()));
        let f = std::fs::File::options().write(true).open(records.join("1.owner")).expect("test fixture");
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(120))
            .expect("test fixture");
        let pool = KdamondPool::new(old, Some(records));
        assert_eq!(
            pool.foreign_running().expect("test fixture").len(),
            1,
            "started before the record: foreign"
        );
        stop_tx.send(()).expect("test fixture");
        t.join().expect("test fixture");
    }
}
