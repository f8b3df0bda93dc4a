//! Swap files, the SSD tier: created (fallocate, our swap header) and swapped
//! on below zram's priority so cold pages fill zram first and spill to disk.
//!
//! We never touch a file we did not create: the file is made with O_EXCL,
//! recorded (path, device, inode, header UUID) before it is filled, and
//! every later step checks that the path still names that inode. Filesystems
//! where swapon cannot work are refused up front, with the reason.

use crate::header::{self, SwapUuid};
use crate::state::{self, DeviceRecord, RecordOutcome, StateDir, StateWriteError};
use crate::swaps::{self, SwapEntry};
use crate::sys::{self, fs_magic};
use conf::SwapFileBackend;
use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What we recorded about a swap file we created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapFileRecord {
    /// The canonical path (as /proc/swaps shows it).
    pub path: PathBuf,
    /// `st_dev` and `st_ino` of the file we created.
    pub dev: u64,
    pub ino: u64,
    /// Its birth time (statx btime) in ns since the epoch, where the
    /// filesystem has one: a freed inode number is soon reused, a birth time is not.
    pub birth_ns: Option<u64>,
    pub uuid: String,
    pub size_bytes: u64,
    pub priority: i32,
    pub owner: Option<String>,
}

/// `SwapFile::create` failed; what was made has been removed.
#[derive(Debug, thiserror::Error)]
pub enum SwapFileSetupError {
    #[error("invalid swap file backend {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot inspect the directory of {}", path.display())]
    Dir { path: PathBuf, source: io::Error },
    #[error("cannot put a swap file at {}: {reason}", path.display())]
    Filesystem { path: PathBuf, reason: String },
    #[error("{} already exists; a swap file is only ever created, never reused", path.display())]
    Exists { path: PathBuf },
    #[error("cannot create {}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot allocate {size_bytes} bytes for {}", path.display())]
    Allocate { path: PathBuf, size_bytes: u64, source: io::Error },
    #[error("cannot get a swap UUID")]
    Uuid(#[source] io::Error),
    #[error("cannot write the swap header to {}", path.display())]
    Header { path: PathBuf, source: io::Error },
    #[error("swapon {} with priority {priority} failed", path.display())]
    Swapon { path: PathBuf, priority: i32, source: io::Error },
    #[error("cannot record {} in the state directory", path.display())]
    Record { path: PathBuf, source: StateWriteError },
}

/// Tearing a swap file down failed; the file (and its record) are left.
#[derive(Debug, thiserror::Error)]
pub enum SwapFileTeardownError {
    #[error("swapoff {} failed; the file is left swapped on and recorded", path.display())]
    Swapoff { path: PathBuf, source: io::Error },
    #[error("cannot remove {}", path.display())]
    Unlink { path: PathBuf, source: io::Error },
    #[error("{} is no longer the file we created ({reason}); not touched", path.display())]
    NotOurs { path: PathBuf, reason: String },
    #[error("cannot read /proc/swaps before tearing down {}", path.display())]
    Swaps { path: PathBuf, source: swaps::ReadSwapsError },
    #[error("{} is gone but its record could not be removed", path.display())]
    Record { path: PathBuf, source: StateWriteError },
}

/// Why a filesystem (by statfs magic) cannot hold a swap file, or `None`
/// when it can or we cannot tell (then swapon has the last word).
pub fn unsuitable_filesystem(magic: u64) -> Option<&'static str> {
    Some(match magic {
        fs_magic::TMPFS => "tmpfs lives in RAM (and page cache), it cannot back swap",
        fs_magic::RAMFS => "ramfs lives in RAM, it cannot back swap",
        fs_magic::OVERLAYFS => "overlayfs does not support swap files (no swap_activate)",
        fs_magic::SQUASHFS => "squashfs is read-only",
        fs_magic::FUSE => "FUSE filesystems do not support swap files",
        fs_magic::PROC | fs_magic::SYSFS | fs_magic::CGROUP2 => "a pseudo filesystem cannot hold files",
        fs_magic::ZFS => "ZFS does not support swap files",
        fs_magic::BTRFS => {
            "btrfs needs a NOCOW (chattr +C), uncompressed file on a single device; not supported yet"
        }
        _ => return None,
    })
}

/// A swap file we created. Dropping it swaps it off and unlinks it (errors
/// are logged; use [`SwapFile::teardown`] to see them).
#[derive(Debug)]
pub struct SwapFile {
    record: SwapFileRecord,
    record_path: Option<PathBuf>,
    armed: bool,
    /// Created by this process (not adopted): without a birth time, the
    /// file is still ours before its header is written.
    created_here: bool,
}

fn check_backend(b: &SwapFileBackend, page_size: u64) -> Result<(), SwapFileSetupError> {
    let invalid = |reason: String| Err(SwapFileSetupError::Invalid { path: b.path.clone(), reason });
    if !b.path.is_absolute() {
        return invalid("the path must be absolute".to_string());
    }
    if b.path.file_name().is_none() {
        return invalid("the path names no file".to_string());
    }
    if !(0..=sys::SWAP_FLAG_PRIO_MASK).contains(&b.priority) {
        return invalid(format!("priority {} is outside 0..={}", b.priority, sys::SWAP_FLAG_PRIO_MASK));
    }
    if b.size_bytes / page_size < header::MIN_SWAP_PAGES {
        return invalid(format!("size {} bytes is below {} pages", b.size_bytes, header::MIN_SWAP_PAGES));
    }
    Ok(())
}

/// Does `path` still name the inode we created?
enum Ownership {
    Ours,
    Gone,
    NotOurs(String),
}

fn birth_ns(m: &std::fs::Metadata) -> Option<u64> {
    let d = m.created().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(d.as_nanos()).ok()
}

fn ownership(rec: &SwapFileRecord, created_here: bool) -> Ownership {
    let m = match std::fs::symlink_metadata(&rec.path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ownership::Gone,
        Err(e) => return Ownership::NotOurs(format!("cannot stat it: {e}")),
        Ok(m) => m,
    };
    if m.dev() != rec.dev || m.ino() != rec.ino || !m.file_type().is_file() {
        return Ownership::NotOurs("another file now has this path".to_string());
    }
    match rec.birth_ns {
        Some(b) if birth_ns(&m) == Some(b) => Ownership::Ours,
        Some(_) => Ownership::NotOurs("a new file reuses the inode number".to_string()),
        None if created_here => Ownership::Ours,
        // No birth time on this filesystem: only our swap header can tell.
        None if crate::zram::read_header_uuid(&rec.path).is_some_and(|u| u.to_string() == rec.uuid) => {
            Ownership::Ours
        }
        None => Ownership::NotOurs("no birth time and the swap header is not ours".to_string()),
    }
}

fn teardown_file(rec: &SwapFileRecord, created_here: bool) -> Result<(), SwapFileTeardownError> {
    let path = rec.path.clone();
    match ownership(rec, created_here) {
        Ownership::Ours => {}
        Ownership::Gone => return Ok(()),
        Ownership::NotOurs(reason) => return Err(SwapFileTeardownError::NotOurs { path, reason }),
    }
    let entries = swaps::read_proc_swaps()
        .map_err(|source| SwapFileTeardownError::Swaps { path: path.clone(), source })?;
    if swaps::find_swap(&entries, &path).is_some() {
        sys::swapoff(&path)
            .map_err(|source| SwapFileTeardownError::Swapoff { path: path.clone(), source })?;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SwapFileTeardownError::Unlink { path, source }),
    }
}

impl SwapFile {
    /// Creates `backend.path` (which must not exist) on a filesystem that
    /// can hold swap, allocates it, writes a swap header and swaps it on with
    /// `backend.priority`. With `state`, it is recorded there until removed.
    pub fn create(
        backend: &SwapFileBackend,
        state: Option<&StateDir>,
    ) -> Result<SwapFile, SwapFileSetupError> {
        let page_size = sys::page_size();
        check_backend(backend, page_size)?;
        let size_bytes = backend.size_bytes / page_size * page_size;
        let given = &backend.path;
        let (Some(parent), Some(name)) = (given.parent(), given.file_name()) else {
            return Err(SwapFileSetupError::Invalid {
                path: given.clone(),
                reason: "the path names no file".into(),
            });
        };
        // /proc/swaps shows the resolved path; resolve the directory now.
        let dir = std::fs::canonicalize(parent)
            .map_err(|source| SwapFileSetupError::Dir { path: given.clone(), source })?;
        let path = dir.join(name);
        let dir_file = std::fs::File::open(&dir)
            .map_err(|source| SwapFileSetupError::Dir { path: path.clone(), source })?;
        let magic = sys::fstatfs_type(dir_file.as_fd())
            .map_err(|source| SwapFileSetupError::Dir { path: path.clone(), source })?;
        if let Some(reason) = unsuitable_filesystem(magic) {
            return Err(SwapFileSetupError::Filesystem { path, reason: reason.to_string() });
        }
        let uuid = SwapUuid::random().map_err(SwapFileSetupError::Uuid)?;

        let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(
            |source| {
                if source.kind() == io::ErrorKind::AlreadyExists {
                    SwapFileSetupError::Exists { path: path.clone() }
                } else {
                    SwapFileSetupError::Create { path: path.clone(), source }
                }
            },
        )?;
        let meta =
            file.metadata().map_err(|source| SwapFileSetupError::Create { path: path.clone(), source })?;
        let record = SwapFileRecord {
            path: path.clone(),
            dev: meta.dev(),
            ino: meta.ino(),
            birth_ns: birth_ns(&meta),
            uuid: uuid.to_string(),
            size_bytes,
            priority: backend.priority,
            owner: state.and_then(|s| s.owner().map(str::to_string)),
        };
        let mut guard = SwapFile { record, record_path: None, armed: true, created_here: true };
        if let Some(state) = state {
            let rp = state
                .write_record(&format!("swapfile-{uuid}.json"), &DeviceRecord::SwapFile(guard.record.clone()))
                .map_err(|source| SwapFileSetupError::Record { path: path.clone(), source })?;
            guard.record_path = Some(rp);
        }
        // From here on, an early return drops `guard`, which unlinks the file.
        sys::fallocate(file.as_fd(), size_bytes).map_err(|source| SwapFileSetupError::Allocate {
            path: path.clone(),
            size_bytes,
            source,
        })?;
        let page = header::swap_header(size_bytes, page_size, uuid)
            .map_err(|e| SwapFileSetupError::Header { path: path.clone(), source: io::Error::other(e) })?;
        file.write_all_at(&page, 0)
            .and_then(|()| file.sync_all())
            .map_err(|source| SwapFileSetupError::Header { path: path.clone(), source })?;
        drop(file);
        sys::swapon(&path, backend.priority).map_err(|source| SwapFileSetupError::Swapon {
            path: path.clone(),
            priority: backend.priority,
            source,
        })?;
        tracing::info!(path = %path.display(), size_bytes, priority = backend.priority, "swap file on");
        Ok(guard)
    }

    /// The canonical path, as /proc/swaps names it.
    pub fn path(&self) -> &Path {
        &self.record.path
    }

    pub fn priority(&self) -> i32 {
        self.record.priority
    }

    pub fn size_bytes(&self) -> u64 {
        self.record.size_bytes
    }

    pub fn uuid(&self) -> &str {
        &self.record.uuid
    }

    pub fn owner(&self) -> Option<&str> {
        self.record.owner.as_deref()
    }

    pub fn record(&self) -> &SwapFileRecord {
        &self.record
    }

    /// The file's /proc/swaps line; `None` when it is not swapped on.
    pub fn stat(&self) -> Result<Option<SwapEntry>, swaps::ReadSwapsError> {
        Ok(swaps::find_swap(&swaps::read_proc_swaps()?, &self.record.path).cloned())
    }

    /// Swapoff, unlink, then drop the record. On error the file and its
    /// record stay (a failed swapoff leaves it swapped on).
    pub fn teardown(mut self) -> Result<(), SwapFileTeardownError> {
        self.armed = false;
        self.teardown_now()
    }

    fn teardown_now(&self) -> Result<(), SwapFileTeardownError> {
        teardown_file(&self.record, self.created_here)?;
        tracing::info!(path = %self.record.path.display(), "swap file removed");
        if let Some(p) = &self.record_path {
            state::remove_record(p)
                .map_err(|source| SwapFileTeardownError::Record { path: self.record.path.clone(), source })?;
        }
        Ok(())
    }

    /// Leaves the file swapped on and recorded, and returns its record.
    pub fn detach(mut self) -> SwapFileRecord {
        self.armed = false;
        self.record.clone()
    }
}

impl Drop for SwapFile {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(e) = self.teardown_now() {
            tracing::error!(path = %self.record.path.display(), error = %crate::error_chain(&e), "swap file teardown failed");
        }
    }
}

/// Adopts the recorded file if it is still ours and swapped on with our
/// header; otherwise removes it if it is ours, or forgets the record.
pub(crate) fn adopt_or_clean_one(
    record_path: PathBuf,
    rec: SwapFileRecord,
) -> Result<SwapFile, RecordOutcome> {
    let forget = |reason: String| {
        if let Err(e) = state::remove_record(&record_path) {
            return RecordOutcome::Failed { error: crate::error_chain(&e) };
        }
        RecordOutcome::Forgotten { reason }
    };
    match ownership(&rec, false) {
        Ownership::Gone => return Err(forget(format!("{} no longer exists", rec.path.display()))),
        Ownership::NotOurs(reason) => return Err(forget(reason)),
        Ownership::Ours => {}
    }
    let on = swaps::read_proc_swaps().map(|e| swaps::find_swap(&e, &rec.path).is_some()).unwrap_or(false);
    let header_ours = crate::zram::read_header_uuid(&rec.path).is_some_and(|u| u.to_string() == rec.uuid);
    if on && header_ours {
        tracing::info!(path = %rec.path.display(), "adopted swap file");
        return Ok(SwapFile {
            record: rec,
            record_path: Some(record_path),
            armed: true,
            created_here: false,
        });
    }
    let guard = SwapFile { record: rec, record_path: Some(record_path), armed: false, created_here: false };
    match guard.teardown_now() {
        Ok(()) => Err(RecordOutcome::Cleaned),
        Err(e) => Err(RecordOutcome::Failed { error: crate::error_chain(&e) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystems_that_cannot_swap_are_named() {
        assert!(unsuitable_filesystem(fs_magic::TMPFS).is_some_and(|r| r.contains("tmpfs")));
        assert!(unsuitable_filesystem(fs_magic::OVERLAYFS).is_some_and(|r| r.contains("overlayfs")));
        assert_eq!(unsuitable_filesystem(fs_magic::EXT4), None);
        assert_eq!(unsuitable_filesystem(fs_magic::XFS), None);
    }

    #[test]
    fn backend_checks() {
        let ok = SwapFileBackend { path: "/var/swap/etmem".into(), size_bytes: 1 << 20, priority: 10 };
        assert!(check_backend(&ok, 4096).is_ok());
        for bad in [
            SwapFileBackend { path: "relative/swap".into(), ..ok.clone() },
            SwapFileBackend { path: "/".into(), ..ok.clone() },
            SwapFileBackend { priority: -5, ..ok.clone() },
            SwapFileBackend { size_bytes: 8192, ..ok.clone() },
        ] {
            assert!(matches!(check_backend(&bad, 4096), Err(SwapFileSetupError::Invalid { .. })), "{bad:?}");
        }
    }

    #[test]
    fn tmpfs_is_refused_before_anything_is_created() {
        // /dev/shm is tmpfs on every Linux this runs on; skip when it is not.
        let Ok(d) = std::fs::File::open("/dev/shm") else {
            println!("skipped: no /dev/shm");
            return;
        };
        if sys::fstatfs_type(d.as_fd()).ok() != Some(fs_magic::TMPFS) {
            println!("skipped: /dev/shm is not tmpfs here");
            return;
        }
        let b =
            SwapFileBackend { path: "/dev/shm/etmem-rs-swap-test".into(), size_bytes: 1 << 20, priority: 1 };
        let err = SwapFile::create(&b, None).expect_err("tmpfs refused");
        assert!(matches!(err, SwapFileSetupError::Filesystem { .. }), "{err:?}");
        assert!(!b.path.exists(), "nothing was created");
    }
}
