//! The daemon's side of `etmem record`: recording sessions. A session
//! subscribes to the feed of each recorded task (or, for an engine without
//! a feed, polls its latest snapshots and skips the ones it has seen) and
//! hands out record lines when the client polls (`record_poll` long-polls:
//! it waits up to `wait_ms` for the first line).
//!
//! Why the client polls rather than the daemon streaming: every request of
//! the protocol gets exactly one response, and the feed's bounded buffer
//! (not the socket) absorbs a slow client: nothing the engine does waits
//! for a recorder.

use super::feed::{DEFAULT_CAPACITY, FeedItem, SnapshotFeed, Subscription};
use super::{
    BackendsLine, FORMAT_NAME, FORMAT_VERSION, LostLine, MappingsLine, RecordHeader, RecordLine,
    RecordTarget, SnapshotLine, StatsLine,
};
use crate::protocol::{ErrorKind, ProjectView};
use crate::registry::{Registry, RegistryError};
use damon_core::AddrRange;
use damon_core::ops::ProcTarget;
use damon_core::ops::maps::VmaFilter;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A session nobody polled for this long is dropped.
pub const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest `wait_ms` a poll may ask for.
pub const MAX_POLL_WAIT: Duration = Duration::from_secs(5);
/// Sessions at once.
pub const MAX_SESSIONS: usize = 16;
/// Region tuples in one poll's answer (about 40 bytes of JSON each).
const MAX_REGIONS_PER_POLL: usize = 400_000;
/// How often stats and backend lines are taken, and sessions checked.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// How often an engine without a feed is polled for its latest snapshots.
const POLL_SOURCE_INTERVAL: Duration = Duration::from_millis(50);
/// How often the recorder reads /proc/PID/maps for an engine that does
/// not send its mappings.
const MAPS_INTERVAL: Duration = Duration::from_secs(5);

/// Why a recording request failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("project {0} is not started: start it before recording")]
    NotStarted(String),
    #[error("project {project} has no task to record{}", filter.as_deref().map(|f| format!(" matching {f}")).unwrap_or_default())]
    NoTasks { project: String, filter: Option<String> },
    #[error("no recording session {0} (it ended, or nobody polled it for {SESSION_IDLE_TIMEOUT:?})")]
    NoSession(u64),
    #[error("recording session {0} is being polled by another request")]
    Busy(u64),
    #[error("{MAX_SESSIONS} recording sessions are open; stop one first")]
    TooMany,
}

impl RecordError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RecordError::Registry(e) => e.kind(),
            RecordError::NotStarted(_) => ErrorKind::ProjectStopped,
            RecordError::NoTasks { .. } => ErrorKind::TaskNotExist,
            RecordError::NoSession(_) | RecordError::Busy(_) => ErrorKind::InvalidRequest,
            RecordError::TooMany => ErrorKind::Unsupported,
        }
    }
}

/// What one poll hands out.
#[derive(Debug, Default)]
pub struct Batch {
    pub lines: Vec<RecordLine>,
    /// Set when the session is over (project stopped or deleted); the
    /// session is gone after this answer.
    pub ended: Option<String>,
}

/// Per pid: the mappings last written, and when they were last read.
type MappingsSeen = BTreeMap<u32, (Vec<(u64, u64)>, Option<Instant>)>;

struct Source {
    target: RecordTarget,
    feed: Option<(Arc<SnapshotFeed>, Subscription)>,
    lost_reported: u64,
    /// Poll sources: the last snapshot time seen per pid.
    last_time_us: BTreeMap<u32, u64>,
    /// The last mappings written per pid, and when they were read.
    mappings: MappingsSeen,
    last_source_poll: Option<Instant>,
}

struct Session {
    project: String,
    started: Instant,
    last_used: Instant,
    sources: Vec<Source>,
    last_stats: Option<Instant>,
}

/// Every open recording session of the daemon.
#[derive(Debug, Default)]
pub struct Recorders {
    /// `None` while a poll has the session out.
    sessions: Mutex<BTreeMap<u64, Option<SessionBox>>>,
    next_id: AtomicU64,
}

struct SessionBox(Box<Session>);

impl std::fmt::Debug for SessionBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("project", &self.0.project).finish()
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn lock(reg: &Mutex<Registry>) -> std::sync::MutexGuard<'_, Registry> {
    reg.lock().unwrap_or_else(|p| p.into_inner())
}

fn ms_since(start: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(start).as_millis() as u64
}

impl Recorders {
    pub fn new() -> Recorders {
        Recorders::default()
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expire(&self) {
        let Ok(mut s) = self.sessions.lock() else { return };
        s.retain(|_, v| v.as_ref().is_none_or(|b| b.0.last_used.elapsed() < SESSION_IDLE_TIMEOUT));
    }

    /// Open a session on the tasks of a started project (all of them, or
    /// those of `engine` and/or named `task`).
    pub fn start(
        &self,
        reg: &Registry,
        project: &str,
        engine: Option<&str>,
        task: Option<&str>,
    ) -> Result<(u64, RecordHeader), RecordError> {
        self.expire();
        let view = reg
            .show(Some(project))?
            .into_iter()
            .next()
            .ok_or_else(|| RegistryError::ProjectNotExist(project.into()))?;
        if !view.started {
            return Err(RecordError::NotStarted(project.into()));
        }
        if let Some(e) = engine
            && !view.engines.iter().any(|x| x.name == e)
        {
            return Err(RegistryError::EngineNotExist { project: project.into(), engine: e.into() }.into());
        }
        let mut sources = Vec::new();
        for e in view.engines.iter().filter(|e| engine.is_none_or(|n| n == e.name)) {
            for t in e.tasks.iter().filter(|t| task.is_none_or(|n| n == t.name)) {
                let feed = reg.feed(project, &e.name, &t.name).map(|f| {
                    let sub = f.subscribe(DEFAULT_CAPACITY);
                    (f, sub)
                });
                sources.push(Source {
                    target: RecordTarget {
                        engine: e.name.clone(),
                        kind: e.kind.clone(),
                        task: t.name.clone(),
                        source: if feed.is_some() { "feed" } else { "poll" }.into(),
                    },
                    feed,
                    lost_reported: 0,
                    last_time_us: BTreeMap::new(),
                    mappings: BTreeMap::new(),
                    last_source_poll: None,
                });
            }
        }
        if sources.is_empty() {
            let filter = match (engine, task) {
                (None, None) => None,
                (e, t) => Some(
                    [e.map(|e| format!("engine {e}")), t.map(|t| format!("task {t}"))]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            };
            return Err(RecordError::NoTasks { project: project.into(), filter });
        }
        let header = RecordHeader {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            project: project.into(),
            etmemd_version: env!("CARGO_PKG_VERSION").into(),
            host: read_trimmed("/proc/sys/kernel/hostname"),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            started_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            targets: sources.iter().map(|s| s.target.clone()).collect(),
        };
        let now = Instant::now();
        let session =
            Session { project: project.into(), started: now, last_used: now, sources, last_stats: None };
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            return Err(RecordError::TooMany);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        sessions.insert(id, Some(SessionBox(Box::new(session))));
        tracing::info!(project, session = id, targets = header.targets.len(), "recording started");
        Ok((id, header))
    }

    /// Hand out the lines gathered since the last poll, waiting up to
    /// `wait` for the first one.
    pub fn poll(&self, reg: &Mutex<Registry>, id: u64, wait: Duration) -> Result<Batch, RecordError> {
        self.expire();
        let mut session = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            match sessions.get_mut(&id) {
                None => return Err(RecordError::NoSession(id)),
                Some(slot) => slot.take().ok_or(RecordError::Busy(id))?,
            }
        };
        let batch = session.0.poll(reg, wait.min(MAX_POLL_WAIT));
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &batch.ended {
            sessions.remove(&id);
            tracing::info!(session = id, "recording ended: {why}");
        } else {
            session.0.last_used = Instant::now();
            sessions.insert(id, Some(session));
        }
        Ok(batch)
    }

    /// Close a session.
    pub fn stop(&self, id: u64) -> Result<(), RecordError> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.remove(&id) {
            Some(_) => {
                tracing::info!(session = id, "recording stopped by the client");
                Ok(())
            }
            None => Err(RecordError::NoSession(id)),
        }
    }
}

/// The anonymous mappings of a process, as the engines watch them.
fn read_mappings(pid: u32) -> Option<Vec<(u64, u64)>> {
    let t = ProcTarget::open(pid).ok()?;
    let vmas = t.eligible_vmas(&VmaFilter::anonymous()).ok()?;
    Some(vmas.into_iter().map(|v| (v.range.start.0, v.range.end.0)).collect())
}

impl Session {
    fn poll(&mut self, reg: &Mutex<Registry>, wait: Duration) -> Batch {
        let deadline = Instant::now() + wait;
        let mut batch = Batch::default();
        if self.last_stats.is_none_or(|t| t.elapsed() >= STATS_INTERVAL) {
            self.last_stats = Some(Instant::now());
            let view = lock(reg).show(Some(&self.project)).ok().and_then(|v| v.into_iter().next());
            match view {
                None => batch.ended = Some(format!("project {} was deleted", self.project)),
                Some(v) if !v.started => batch.ended = Some(format!("project {} was stopped", self.project)),
                Some(v) => self.stats_lines(reg, &v, &mut batch.lines),
            }
        }
        let mut regions = 0usize;
        loop {
            for i in 0..self.sources.len() {
                regions +=
                    self.gather(i, reg, &mut batch.lines, MAX_REGIONS_PER_POLL.saturating_sub(regions));
            }
            let got_snapshot = batch.lines.iter().any(|l| matches!(l, RecordLine::Snapshot(_)));
            if got_snapshot || batch.ended.is_some() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(
                Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now())),
            );
        }
        batch
    }

    /// Stats of every recorded task and the project's backends; resubscribe
    /// to feeds that changed (the project was restarted).
    fn stats_lines(&mut self, reg: &Mutex<Registry>, view: &ProjectView, out: &mut Vec<RecordLine>) {
        let at_ms = ms_since(self.started, Instant::now());
        for s in &mut self.sources {
            let Some(t) = view
                .engines
                .iter()
                .filter(|e| e.name == s.target.engine)
                .flat_map(|e| e.tasks.iter())
                .find(|t| t.name == s.target.task)
            else {
                continue;
            };
            if let Some(stats) = &t.stats {
                out.push(RecordLine::Stats(Box::new(StatsLine {
                    at_ms,
                    engine: s.target.engine.clone(),
                    task: s.target.task.clone(),
                    stats: stats.clone(),
                })));
            }
            if let Some((feed, _)) = &s.feed {
                let now = lock(reg).feed(&self.project, &s.target.engine, &s.target.task);
                if let Some(now) = now
                    && !Arc::ptr_eq(&now, feed)
                {
                    let sub = now.subscribe(DEFAULT_CAPACITY);
                    s.feed = Some((now, sub));
                    s.lost_reported = 0;
                }
            }
        }
        if !view.backends.is_empty() {
            out.push(RecordLine::Backends(BackendsLine { at_ms, backends: view.backends.clone() }));
        }
    }

    /// Lines from one source; returns the number of region tuples added.
    fn gather(&mut self, i: usize, reg: &Mutex<Registry>, out: &mut Vec<RecordLine>, budget: usize) -> usize {
        let started = self.started;
        let project = self.project.clone();
        let s = &mut self.sources[i];
        let mut items: Vec<FeedItem> = Vec::new();
        match &s.feed {
            Some((_, sub)) => {
                // Take feed items one by one until the region budget is used.
                let mut used = 0;
                while used < budget {
                    let Some(item) = sub.take(Duration::ZERO, 1).pop() else { break };
                    used += item.snapshots.values().map(|x| x.regions.len()).sum::<usize>();
                    items.push(item);
                }
                let dropped = sub.dropped();
                if dropped > s.lost_reported {
                    out.push(RecordLine::Lost(LostLine {
                        at_ms: ms_since(started, Instant::now()),
                        engine: s.target.engine.clone(),
                        task: s.target.task.clone(),
                        items: dropped - s.lost_reported,
                        why: "the recorder fell behind and its buffer was full".into(),
                    }));
                    s.lost_reported = dropped;
                }
            }
            None => {
                if s.last_source_poll.is_none_or(|t| t.elapsed() >= POLL_SOURCE_INTERVAL) {
                    s.last_source_poll = Some(Instant::now());
                    let snaps = lock(reg).snapshots(&project, &s.target.engine, &s.target.task);
                    let mut item = FeedItem {
                        at: Instant::now(),
                        snapshots: BTreeMap::new(),
                        mappings: BTreeMap::new(),
                        stats: None,
                    };
                    for (pid, snap) in snaps {
                        let last = s.last_time_us.entry(pid).or_insert(0);
                        if snap.time_us > *last || (*last == 0 && snap.time_us == 0) {
                            *last = snap.time_us.max(1);
                            item.snapshots.insert(pid, snap);
                        }
                    }
                    if !item.snapshots.is_empty() {
                        items.push(item);
                    }
                }
            }
        }
        let mut added = 0;
        for item in items {
            let at_ms = ms_since(started, item.at);
            for (pid, snap) in &item.snapshots {
                let ranges: Option<Vec<(u64, u64)>> = match item.mappings.get(pid) {
                    Some(m) => Some(m.iter().map(|r: &AddrRange| (r.start.0, r.end.0)).collect()),
                    None => {
                        let due = s
                            .mappings
                            .get(pid)
                            .is_none_or(|(_, read)| read.is_none_or(|t| t.elapsed() >= MAPS_INTERVAL));
                        if due {
                            let m = read_mappings(*pid);
                            if m.is_none() {
                                s.mappings.entry(*pid).or_insert((Vec::new(), None)).1 = Some(Instant::now());
                            }
                            m
                        } else {
                            None
                        }
                    }
                };
                if let Some(ranges) = ranges {
                    let changed = s.mappings.get(pid).is_none_or(|(old, _)| *old != ranges);
                    if changed && !ranges.is_empty() {
                        out.push(RecordLine::Mappings(MappingsLine {
                            at_ms,
                            engine: s.target.engine.clone(),
                            task: s.target.task.clone(),
                            pid: *pid,
                            ranges: ranges.clone(),
                        }));
                    }
                    s.mappings.insert(*pid, (ranges, Some(Instant::now())));
                }
                added += snap.regions.len();
                out.push(RecordLine::Snapshot(SnapshotLine::from_snapshot(
                    at_ms,
                    &s.target.engine,
                    &s.target.task,
                    *pid,
                    snap,
                )));
            }
        }
        added
    }
}
