//! A target process: its pid plus a pidfd, so a recycled pid is never acted
//! on. Every /proc access of the probes goes through [`ProcTarget`].
//!
//! The rule: a /proc file is opened, then the pidfd is checked. While the
//! pidfd says our process has not exited, its pid cannot have been reused,
//! so the file opened belongs to it; an open /proc fd stays bound to that
//! process for good. Reads are followed by a check too, so an error (or an
//! empty read) from a process that just exited becomes
//! [`ProbeError::TargetGone`], an ordinary outcome.

use crate::AddrRange;
use crate::ops::maps::{self, Vma};
use crate::ops::pagemap::{PageCounts, PagemapFile};
use crate::ops::sys;
use crate::probe::ProbeError;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Why a target could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenTargetError {
    #[error("no process with pid {pid}")]
    NoSuchProcess { pid: u32 },
    #[error("pidfd_open of pid {pid}")]
    Pidfd {
        pid: u32,
        #[source]
        source: io::Error,
    },
}

/// A process whose memory the probes read and act on.
#[derive(Debug)]
pub struct ProcTarget {
    pid: u32,
    /// `None` only for fixture targets (a directory of files standing in for /proc/PID).
    pidfd: Option<OwnedFd>,
    dir: PathBuf,
    pagemap: Mutex<Option<PagemapFile>>,
}

impl ProcTarget {
    /// Open a pidfd for `pid`. Its /proc files are read from `/proc/<pid>/`.
    pub fn open(pid: u32) -> Result<ProcTarget, OpenTargetError> {
        let pidfd = sys::pidfd_open(pid).map_err(|source| match source.raw_os_error() {
            Some(libc::ESRCH) => OpenTargetError::NoSuchProcess { pid },
            _ => OpenTargetError::Pidfd { pid, source },
        })?;
        Ok(ProcTarget {
            pid,
            pidfd: Some(pidfd),
            dir: PathBuf::from(format!("/proc/{pid}")),
            pagemap: Mutex::new(None),
        })
    }

    /// A target whose "/proc/PID" is the directory `dir` (files `maps`,
    /// `smaps`, `pagemap`, `clear_refs`, `idle_pages` in their kernel formats).
    /// It has no pidfd and is always alive: for tests on fixture files.
    pub fn fixture(pid: u32, dir: impl Into<PathBuf>) -> ProcTarget {
        ProcTarget { pid, pidfd: None, dir: dir.into(), pagemap: Mutex::new(None) }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The pidfd (`None` for fixture targets).
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }

    /// The directory standing for /proc/PID.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a file under /proc/PID.
    pub fn proc_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether the process has not exited yet (a zombie has exited).
    pub fn is_alive(&self) -> bool {
        match &self.pidfd {
            None => true,
            // A poll error on a pidfd we own cannot mean "alive"; treat it as gone.
            Some(fd) => matches!(sys::pidfd_has_exited(fd.as_fd()), Ok(false)),
        }
    }

    /// `Err(TargetGone)` once the process has exited.
    pub fn ensure_alive(&self) -> Result<(), ProbeError> {
        if self.is_alive() { Ok(()) } else { Err(ProbeError::TargetGone { pid: self.pid }) }
    }

    /// Turn an I/O error on this target into `TargetGone` when the process
    /// has exited (or the kernel says so with ESRCH), else into `Io`.
    pub fn error(&self, what: impl Into<String>, source: io::Error) -> ProbeError {
        if source.raw_os_error() == Some(libc::ESRCH) || !self.is_alive() {
            ProbeError::TargetGone { pid: self.pid }
        } else {
            ProbeError::Io { pid: self.pid, what: what.into(), source }
        }
    }

    /// Open /proc/PID/`name` (read-only or write-only), then check liveness.
    pub fn open_file(&self, name: &str, write: bool) -> Result<File, ProbeError> {
        let path = self.proc_path(name);
        let f = OpenOptions::new()
            .read(!write)
            .write(write)
            .open(&path)
            .map_err(|e| self.error(format!("open {}", path.display()), e))?;
        self.ensure_alive()?;
        Ok(f)
    }

    /// Read /proc/PID/`name` whole, then check liveness.
    pub fn read_file(&self, name: &str) -> Result<String, ProbeError> {
        let mut f = self.open_file(name, false)?;
        let mut s = String::new();
        f.read_to_string(&mut s)
            .map_err(|e| self.error(format!("read {}", self.proc_path(name).display()), e))?;
        self.ensure_alive()?;
        Ok(s)
    }

    /// Write `data` to /proc/PID/`name` in one `write`, then check liveness.
    pub fn write_file(&self, name: &str, data: &[u8]) -> Result<(), ProbeError> {
        let mut f = self.open_file(name, true)?;
        f.write_all(data).map_err(|e| self.error(format!("write {}", self.proc_path(name).display()), e))?;
        self.ensure_alive()
    }

    /// The VMAs of /proc/PID/maps.
    pub fn maps(&self) -> Result<Vec<Vma>, ProbeError> {
        let text = self.read_file("maps")?;
        maps::parse_maps(&text).map_err(|e| ProbeError::Io {
            pid: self.pid,
            what: format!("parse {}", self.proc_path("maps").display()),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })
    }

    /// The VMAs of /proc/PID/smaps, with their smaps fields.
    pub fn smaps(&self) -> Result<Vec<Vma>, ProbeError> {
        let text = self.read_file("smaps")?;
        maps::parse_smaps(&text).map_err(|e| ProbeError::Io {
            pid: self.pid,
            what: format!("parse {}", self.proc_path("smaps").display()),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })
    }

    /// The VMAs `filter` accepts (reads smaps only when the filter needs VmFlags).
    pub fn eligible_vmas(&self, filter: &maps::VmaFilter) -> Result<Vec<Vma>, ProbeError> {
        let vmas = if filter.needs_smaps() { self.smaps()? } else { self.maps()? };
        Ok(vmas.into_iter().filter(|v| filter.accepts(v)).collect())
    }

    fn lock_pagemap(&self) -> MutexGuard<'_, Option<PagemapFile>> {
        // A panic while holding the lock leaves at worst a half-filled read
        // buffer, which every read overwrites: the poison carries no meaning.
        self.pagemap.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `f` on this target's pagemap (opened once and kept). A read that
    /// finds no memory while the process lives (it exec'd: the old fd names
    /// the old mm) reopens the file and retries once; from a process that has
    /// exited, it is `TargetGone`.
    pub fn with_pagemap<R>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut PagemapFile) -> io::Result<R>,
    ) -> Result<R, ProbeError> {
        let mut guard = self.lock_pagemap();
        for attempt in 0..2 {
            if guard.is_none() {
                let file = self.open_file("pagemap", false)?;
                *guard = Some(PagemapFile::from_file(file));
            }
            let pm = guard.as_mut().expect("opened just above");
            match f(pm) {
                Ok(r) => {
                    self.ensure_alive()?;
                    return Ok(r);
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && attempt == 0 && self.is_alive() => {
                    *guard = None;
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && self.pidfd.is_some() => {
                    // Still empty after a reopen: no mm any more (exiting).
                    return Err(ProbeError::TargetGone { pid: self.pid });
                }
                Err(e) => return Err(self.error(format!("{what} (pagemap of pid {})", self.pid), e)),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Resident and swapped pages of each range (for `project show`):
    /// `PAGEMAP_SCAN` where the kernel has it, else big pagemap reads.
    pub fn page_counts(&self, ranges: &[AddrRange]) -> Result<Vec<PageCounts>, ProbeError> {
        self.with_pagemap("count resident pages", |pm| pm.count_ranges(ranges))
    }

    /// `process_madvise` on this target through its pidfd. Fixture targets
    /// have no pidfd: `Unavailable`.
    pub fn process_madvise(&self, ranges: &[(u64, u64)], advice: i32) -> Result<usize, ProbeError> {
        let Some(fd) = &self.pidfd else {
            return Err(ProbeError::Unavailable {
                probe: "process_madvise",
                reason: format!("fixture target {} has no pidfd", self.pid),
            });
        };
        sys::process_madvise(fd.as_fd(), ranges, advice).map_err(|e| {
            self.error(format!("process_madvise(advice {advice}) of {} ranges", ranges.len()), e)
        })
    }
}
