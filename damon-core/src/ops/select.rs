//! Which access probe to use: each probe's availability on this host with a
//! human reason, the automatic choice (best available), an explicit choice
//! that fails with the reason, and building the chosen probe for a target.
//!
//! Preference: etmem idle_pages (reads, writes and dirty, no faults), then
//! idle-bitmap (reads and writes, no faults), then refault (reads and
//! writes, but a fault per hot sample and needs swap), then soft-dirty
//! (writes only: a page that is only read looks cold).

use crate::ops::idle_bitmap::{IdleBitmapPaths, IdleBitmapProbe, PAGE_IDLE_BITMAP_PATH};
use crate::ops::idle_pages::EtmemIdlePagesProbe;
use crate::ops::kpageflags::KPAGEFLAGS_PATH;
use crate::ops::pagemap::{PagemapEntry, PagemapFile};
use crate::ops::pidfd::ProcTarget;
use crate::ops::refault::{RefaultOptions, RefaultProbe, RefaultStats};
use crate::ops::soft_dirty::{self, SoftDirtyProbe};
use crate::ops::sys::{self, AnonMapping, MADV_PAGEOUT};
use crate::ops::{ProbeStats, SampleState};
use crate::probe::{AccessProbe, ProbeError, Sees};
use crate::{Addr, PAGE_SIZE};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The probes that run on a real process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    EtmemIdlePages,
    IdleBitmap,
    Refault,
    SoftDirty,
}

impl ProbeKind {
    /// Best first.
    pub const PREFERENCE: [ProbeKind; 4] =
        [ProbeKind::EtmemIdlePages, ProbeKind::IdleBitmap, ProbeKind::Refault, ProbeKind::SoftDirty];

    /// The name used in configs, logs and `project show`.
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::EtmemIdlePages => "etmem-idle-pages",
            ProbeKind::IdleBitmap => "idle-bitmap",
            ProbeKind::Refault => "refault",
            ProbeKind::SoftDirty => "soft-dirty",
        }
    }

    pub fn from_name(name: &str) -> Option<ProbeKind> {
        ProbeKind::PREFERENCE.into_iter().find(|k| k.name() == name)
    }

    pub fn sees(self) -> Sees {
        match self {
            ProbeKind::SoftDirty => Sees::WritesOnly,
            _ => Sees::ReadsAndWrites,
        }
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the host's interfaces are, and what the daemon will provide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEnv {
    /// /proc (for `self/idle_pages`, `swaps`, `meminfo`).
    pub proc_dir: PathBuf,
    pub page_idle_bitmap: PathBuf,
    pub kpageflags: PathBuf,
    /// A swap device will exist when the probe runs (the project sets up a
    /// zram backend), even if none is on now.
    pub swap_planned: bool,
}

impl Default for HostEnv {
    fn default() -> Self {
        HostEnv {
            proc_dir: PathBuf::from("/proc"),
            page_idle_bitmap: PathBuf::from(PAGE_IDLE_BITMAP_PATH),
            kpageflags: PathBuf::from(KPAGEFLAGS_PATH),
            swap_planned: false,
        }
    }
}

/// One probe and whether it works here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeStatus {
    pub kind: ProbeKind,
    /// `Err(reason)` when it does not.
    pub availability: Result<(), String>,
}

/// A probe chosen, and why each other probe was not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSelection {
    pub chosen: ProbeKind,
    pub not_chosen: Vec<(ProbeKind, String)>,
}

impl fmt::Display for ProbeSelection {
    /// `probe refault; not etmem-idle-pages: ...; not idle-bitmap: ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "probe {}", self.chosen)?;
        for (k, why) in &self.not_chosen {
            write!(f, "; not {k}: {why}")?;
        }
        Ok(())
    }
}

/// Why no probe could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectProbeError {
    #[error("no access probe works here: {}", join(.reasons))]
    NoneAvailable { reasons: Vec<(ProbeKind, String)> },
    #[error("probe {kind} is not available here: {reason}")]
    Unavailable { kind: ProbeKind, reason: String },
}

fn join(reasons: &[(ProbeKind, String)]) -> String {
    reasons.iter().map(|(k, r)| format!("{k}: {r}")).collect::<Vec<_>>().join("; ")
}

/// A fresh page of this process, touched, and its pagemap entry.
fn self_page_entry(env: &HostEnv) -> Result<PagemapEntry, String> {
    let page =
        AnonMapping::new(PAGE_SIZE as usize).map_err(|e| format!("mmap of a test page failed: {e}"))?;
    page.write_byte(0, 1);
    let path = env.proc_dir.join("self/pagemap");
    let mut pm = PagemapFile::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut e = [PagemapEntry::default()];
    pm.read_addrs(&[Addr(page.addr())], &mut e)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(e[0])
}

fn pfns_visible(env: &HostEnv) -> Result<(), String> {
    let e = self_page_entry(env)?;
    if e.pfn().is_none() {
        return Err(
            "pagemap hides page frame numbers from this process (needs CAP_SYS_ADMIN, i.e. root)".into()
        );
    }
    Ok(())
}

fn open_read(path: &Path) -> Result<File, String> {
    File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// Whether a swap device is on with free space (from /proc/swaps).
fn swap_available(env: &HostEnv) -> Result<(), String> {
    let path = env.proc_dir.join("swaps");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let free_kib: u64 = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let size = f.get(2)?.parse::<u64>().ok()?;
            let used = f.get(3)?.parse::<u64>().ok()?;
            Some(size.saturating_sub(used))
        })
        .sum();
    if text.lines().skip(1).all(|l| l.trim().is_empty()) {
        return Err("no swap device is on (the refault probe pages sampled pages out; \
                    configure a zram or swap-file backend)"
            .into());
    }
    if free_kib == 0 {
        return Err("every swap device is full".into());
    }
    Ok(())
}

/// Whether `kind` works here (and on `target`, when given).
pub fn check(kind: ProbeKind, env: &HostEnv, target: Option<&ProcTarget>) -> Result<(), String> {
    match kind {
        ProbeKind::EtmemIdlePages => {
            let path = match target {
                Some(t) => t.proc_path("idle_pages"),
                None => env.proc_dir.join("self/idle_pages"),
            };
            if !path.exists() {
                return Err(format!(
                    "{} does not exist: the etmem_scan kernel module is not loaded (openEuler kernels: \
                     modprobe etmem_scan)",
                    path.display()
                ));
            }
            open_read(&path).map(drop)
        }
        ProbeKind::IdleBitmap => {
            let path = &env.page_idle_bitmap;
            if !path.exists() {
                return Err(format!(
                    "{} does not exist: the kernel is built without CONFIG_IDLE_PAGE_TRACKING",
                    path.display()
                ));
            }
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| format!("cannot open {} read-write: {e}", path.display()))?;
            pfns_visible(env)
        }
        ProbeKind::Refault => {
            let pidfd = match target.and_then(|t| t.pidfd()) {
                Some(fd) => sys::process_madvise(fd, &[], MADV_PAGEOUT),
                None => sys::pidfd_open(std::process::id())
                    .and_then(|fd| sys::process_madvise(std::os::fd::AsFd::as_fd(&fd), &[], MADV_PAGEOUT)),
            };
            pidfd.map_err(|e| format!("process_madvise(MADV_PAGEOUT) does not work here: {e}"))?;
            pfns_visible(env)?;
            open_read(&env.kpageflags)
                .map_err(|e| format!("{e} (it tells huge pages apart so that probing never splits one)"))?;
            if env.swap_planned { Ok(()) } else { swap_available(env) }
        }
        ProbeKind::SoftDirty => soft_dirty::detect(),
    }
}

/// Every probe, in preference order, with its availability.
pub fn check_all(env: &HostEnv, target: Option<&ProcTarget>) -> Vec<ProbeStatus> {
    ProbeKind::PREFERENCE
        .into_iter()
        .map(|kind| ProbeStatus { kind, availability: check(kind, env, target) })
        .collect()
}

/// The best available probe that is not `forbidden`, with a reason for each other one.
pub fn select_auto(
    env: &HostEnv,
    target: Option<&ProcTarget>,
    forbidden: &[ProbeKind],
) -> Result<ProbeSelection, SelectProbeError> {
    select_from(&check_all(env, target), forbidden)
}

/// Pure part of [`select_auto`].
pub fn select_from(
    statuses: &[ProbeStatus],
    forbidden: &[ProbeKind],
) -> Result<ProbeSelection, SelectProbeError> {
    let mut chosen = None;
    let mut not_chosen = Vec::new();
    for s in statuses {
        let why = match (&s.availability, forbidden.contains(&s.kind), chosen) {
            (Err(reason), _, _) => reason.clone(),
            (Ok(()), true, _) => "available, but the configuration forbids it".to_string(),
            (Ok(()), false, Some(c)) => format!("available, but {c} is preferred"),
            (Ok(()), false, None) => {
                chosen = Some(s.kind);
                continue;
            }
        };
        not_chosen.push((s.kind, why));
    }
    match chosen {
        Some(chosen) => Ok(ProbeSelection { chosen, not_chosen }),
        None => Err(SelectProbeError::NoneAvailable { reasons: not_chosen }),
    }
}

/// `kind`, or the reason it cannot run here.
pub fn select_explicit(
    kind: ProbeKind,
    env: &HostEnv,
    target: Option<&ProcTarget>,
) -> Result<ProbeSelection, SelectProbeError> {
    check(kind, env, target).map_err(|reason| SelectProbeError::Unavailable { kind, reason })?;
    let not_chosen = ProbeKind::PREFERENCE
        .into_iter()
        .filter(|&k| k != kind)
        .map(|k| (k, "not the configured probe".into()))
        .collect();
    Ok(ProbeSelection { chosen: kind, not_chosen })
}

/// Options of the probes [`build`] makes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProbeOptions {
    pub refault: RefaultOptions,
    pub idle_bitmap: IdleBitmapPaths,
}

/// Make a probe of `kind` on `target`.
pub fn build(
    kind: ProbeKind,
    target: Arc<ProcTarget>,
    options: &ProbeOptions,
) -> Result<OsProbe, ProbeError> {
    Ok(match kind {
        ProbeKind::EtmemIdlePages => OsProbe::EtmemIdlePages(EtmemIdlePagesProbe::new(target)?),
        ProbeKind::IdleBitmap => OsProbe::IdleBitmap(IdleBitmapProbe::new(target, &options.idle_bitmap)?),
        ProbeKind::Refault => OsProbe::Refault(RefaultProbe::new(target, options.refault.clone())?),
        ProbeKind::SoftDirty => OsProbe::SoftDirty(SoftDirtyProbe::new(target)),
    })
}

/// Any of the OS probes, concrete (no `dyn`), so the engine can read their counters.
#[derive(Debug)]
pub enum OsProbe {
    EtmemIdlePages(EtmemIdlePagesProbe),
    IdleBitmap(IdleBitmapProbe),
    Refault(RefaultProbe),
    SoftDirty(SoftDirtyProbe),
}

macro_rules! each {
    ($self:expr, $p:ident => $e:expr) => {
        match $self {
            OsProbe::EtmemIdlePages($p) => $e,
            OsProbe::IdleBitmap($p) => $e,
            OsProbe::Refault($p) => $e,
            OsProbe::SoftDirty($p) => $e,
        }
    };
}

impl OsProbe {
    pub fn kind(&self) -> ProbeKind {
        match self {
            OsProbe::EtmemIdlePages(_) => ProbeKind::EtmemIdlePages,
            OsProbe::IdleBitmap(_) => ProbeKind::IdleBitmap,
            OsProbe::Refault(_) => ProbeKind::Refault,
            OsProbe::SoftDirty(_) => ProbeKind::SoftDirty,
        }
    }

    pub fn target(&self) -> &Arc<ProcTarget> {
        each!(self, p => p.target())
    }

    pub fn stats(&self) -> ProbeStats {
        each!(self, p => p.stats())
    }

    /// The refault probe's own counters.
    pub fn refault_stats(&self) -> Option<RefaultStats> {
        match self {
            OsProbe::Refault(p) => Some(p.refault_stats()),
            _ => None,
        }
    }

    /// Like [`AccessProbe::check`], telling "could not observe" apart.
    pub fn check_states(&mut self, addrs: &[Addr], out: &mut [SampleState]) -> Result<(), ProbeError> {
        each!(self, p => p.check_states(addrs, out))
    }
}

impl AccessProbe for OsProbe {
    fn name(&self) -> &'static str {
        self.kind().name()
    }

    fn sees(&self) -> Sees {
        self.kind().sees()
    }

    fn arm(&mut self, addrs: &[Addr]) -> Result<(), ProbeError> {
        each!(self, p => p.arm(addrs))
    }

    fn check(&mut self, addrs: &[Addr], accessed: &mut [bool]) -> Result<(), ProbeError> {
        each!(self, p => p.check(addrs, accessed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(kind: ProbeKind, ok: bool) -> ProbeStatus {
        ProbeStatus { kind, availability: if ok { Ok(()) } else { Err(format!("no {kind} here")) } }
    }

    #[test]
    fn auto_takes_the_best_available_and_says_why_not_the_others() {
        let s = [
            st(ProbeKind::EtmemIdlePages, false),
            st(ProbeKind::IdleBitmap, false),
            st(ProbeKind::Refault, true),
            st(ProbeKind::SoftDirty, true),
        ];
        let sel = select_from(&s, &[]).expect("one works");
        assert_eq!(sel.chosen, ProbeKind::Refault);
        assert_eq!(
            sel.not_chosen,
            vec![
                (ProbeKind::EtmemIdlePages, "no etmem-idle-pages here".into()),
                (ProbeKind::IdleBitmap, "no idle-bitmap here".into()),
                (ProbeKind::SoftDirty, "available, but refault is preferred".into()),
            ]
        );
        let sel = select_from(&s, &[ProbeKind::Refault]).expect("soft-dirty left");
        assert_eq!(sel.chosen, ProbeKind::SoftDirty);
        assert!(
            sel.not_chosen
                .contains(&(ProbeKind::Refault, "available, but the configuration forbids it".into()))
        );
        let err = select_from(&s[..3], &[ProbeKind::Refault]).expect_err("nothing left");
        assert!(err.to_string().contains("refault: available, but the configuration forbids it"), "{err}");
    }

    #[test]
    fn probes_and_targets_can_move_to_engine_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<ProcTarget>();
        send::<OsProbe>();
    }

    #[test]
    fn names_round_trip() {
        for k in ProbeKind::PREFERENCE {
            assert_eq!(ProbeKind::from_name(k.name()), Some(k));
        }
        assert_eq!(ProbeKind::from_name("simulated"), None);
    }
}
