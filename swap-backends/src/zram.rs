//! zram swap devices the project creates and removes: `hot_add`, compressor,
//! disksize, mem_limit, our own swap header, swapon with a priority; teardown in reverse.
//!
//! Rules (DESIGN.md, issue 4): never touch a device we did not create (never
//! `/dev/zram0`, and every destructive step first checks that the device's
//! `diskseq` is still the one we recorded); never reset or remove a device
//! whose swapoff failed. [`ZramSwap`] is the guard: dropping it tears the
//! device down. Kernel interface: Documentation/admin-guide/blockdev/zram.rst.

use crate::header::{self, SwapUuid};
use crate::state::{self, DeviceRecord, RecordOutcome, StateDir, StateWriteError};
use crate::swaps::{self, SwapEntry};
use conf::ZramBackend;
use serde::{Deserialize, Serialize};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The zram control directory (`hot_add`, `hot_remove`).
pub const ZRAM_CONTROL: &str = "/sys/class/zram-control";
/// The highest priority swapon accepts.
pub const MAX_SWAP_PRIORITY: i32 = crate::sys::SWAP_FLAG_PRIO_MASK;
/// How long to wait for `/dev/zramN` to appear, and for a busy device to be released.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(3);

/// `/sys/block/zramN`.
pub fn sys_dir(index: u32) -> PathBuf {
    PathBuf::from(format!("/sys/block/zram{index}"))
}

/// `/dev/zramN`.
pub fn dev_path(index: u32) -> PathBuf {
    PathBuf::from(format!("/dev/zram{index}"))
}

/// Why zram cannot be used here, or `None` when it can (control dir present, running as root).
pub fn unavailable_reason() -> Option<String> {
    let hot_add = Path::new(ZRAM_CONTROL).join("hot_add");
    if !hot_add.exists() {
        return Some(format!("{} is missing (no zram module, or built without hot_add)", hot_add.display()));
    }
    if !crate::sys::is_root() {
        return Some("creating zram devices needs root".to_string());
    }
    None
}

/// What we recorded about a zram device we created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZramRecord {
    pub index: u32,
    /// `/proc/sys/kernel/random/boot_id` when created: after a reboot the device cannot be ours.
    pub boot_id: String,
    /// `/sys/block/zramN/diskseq`: unique per device instance since boot, so a
    /// device re-created under the same index by someone else is told apart.
    pub diskseq: Option<u64>,
    /// The UUID in the swap header we wrote.
    pub uuid: String,
    pub size_bytes: u64,
    pub compressor: String,
    pub priority: i32,
    pub mem_limit_bytes: Option<u64>,
    pub owner: Option<String>,
}

impl ZramRecord {
    fn backend(&self) -> ZramBackend {
        ZramBackend {
            size_bytes: self.size_bytes,
            compressor: self.compressor.clone(),
            priority: self.priority,
            mem_limit_bytes: self.mem_limit_bytes,
        }
    }
}

/// `ZramSwap::create` failed. Whatever was already set up has been removed
/// (or, if that failed too, logged and left recorded for [`crate::state::recover`]).
#[derive(Debug, thiserror::Error)]
pub enum ZramSetupError {
    #[error("invalid zram backend: {reason}")]
    Invalid { reason: String },
    #[error("zram is not available: {reason}")]
    Unavailable { reason: String },
    #[error("cannot create a zram device through {ZRAM_CONTROL}/hot_add")]
    HotAdd(#[source] io::Error),
    #[error("{ZRAM_CONTROL}/hot_add returned {text:?}, not a device index")]
    BadIndex { text: String },
    #[error("hot_add returned zram0, which belongs to the machine; left unconfigured and in place")]
    IndexZero,
    #[error("cannot get a swap UUID")]
    Uuid(#[source] io::Error),
    #[error("zram{index} does not offer compressor {wanted:?} (available: {})", available.join(", "))]
    Compressor { index: u32, wanted: String, available: Vec<String> },
    #[error("cannot set zram{index} {attr} to {value}")]
    Attr { index: u32, attr: &'static str, value: String, source: io::Error },
    #[error("{} did not appear", path.display())]
    DeviceNode { path: PathBuf },
    #[error("cannot write the swap header to {}", path.display())]
    Header { path: PathBuf, source: io::Error },
    #[error("swapon {} with priority {priority} failed", path.display())]
    Swapon { path: PathBuf, priority: i32, source: io::Error },
    #[error("cannot record zram{index} in the state directory")]
    Record { index: u32, source: StateWriteError },
}

/// Tearing a zram device down failed; the device (and its record) are left in place.
#[derive(Debug, thiserror::Error)]
pub enum ZramTeardownError {
    #[error("swapoff {} failed; the device is left swapped on and recorded", path.display())]
    Swapoff { path: PathBuf, source: io::Error },
    #[error("cannot reset zram{index}")]
    Reset { index: u32, source: io::Error },
    #[error("cannot remove zram{index} through {ZRAM_CONTROL}/hot_remove")]
    HotRemove { index: u32, source: io::Error },
    #[error("zram{index} is no longer the device we created ({reason}); not touched")]
    NotOurs { index: u32, reason: String },
    #[error("cannot read /proc/swaps before tearing down zram{index}")]
    Swaps { index: u32, source: swaps::ReadSwapsError },
    #[error("zram{index} is gone but its record could not be removed")]
    Record { index: u32, source: StateWriteError },
}

/// Reading a zram device's statistics failed.
#[derive(Debug, thiserror::Error)]
pub enum ZramStatError {
    #[error("cannot read zram{index} {attr}")]
    Read { index: u32, attr: &'static str, source: io::Error },
    #[error("zram{index} {attr} is malformed: {text:?}")]
    Parse { index: u32, attr: &'static str, text: String },
    #[error("cannot read /proc/swaps for zram{index}")]
    Swaps { index: u32, source: swaps::ReadSwapsError },
}

/// `/sys/block/zramN/mm_stat` (zram.rst "mm_stat"), in bytes except page counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MmStat {
    /// Uncompressed size of the data stored.
    pub orig_data_bytes: u64,
    /// Compressed size of the data stored.
    pub compr_data_bytes: u64,
    /// Memory the allocator uses, overhead and fragmentation included.
    pub mem_used_bytes: u64,
    /// The `mem_limit`, 0 = none.
    pub mem_limit_bytes: u64,
    pub mem_used_max_bytes: u64,
    /// Pages that were all one value and take no memory.
    pub same_pages: u64,
    pub pages_compacted: u64,
    /// Pages that did not compress (absent on old kernels: 0).
    pub huge_pages: u64,
}

impl MmStat {
    /// orig / compressed, when anything is stored.
    pub fn compression_ratio(&self) -> Option<f64> {
        (self.compr_data_bytes > 0).then(|| self.orig_data_bytes as f64 / self.compr_data_bytes as f64)
    }
}

/// Parses mm_stat (7 to 9 whitespace-separated numbers, depending on the kernel).
pub fn parse_mm_stat(text: &str) -> Option<MmStat> {
    let v: Vec<u64> = text.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
    if v.len() < 7 {
        return None;
    }
    Some(MmStat {
        orig_data_bytes: v[0],
        compr_data_bytes: v[1],
        mem_used_bytes: v[2],
        mem_limit_bytes: v[3],
        mem_used_max_bytes: v[4],
        same_pages: v[5],
        pages_compacted: v[6],
        huge_pages: v.get(7).copied().unwrap_or(0),
    })
}

/// Parses `comp_algorithm` (`lzo-rle lzo [lz4] zstd`): the names offered and the selected one.
pub fn parse_comp_algorithm(text: &str) -> (Vec<String>, Option<String>) {
    let mut names = Vec::new();
    let mut selected = None;
    for w in text.split_whitespace() {
        if let Some(n) = w.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
            selected = Some(n.to_string());
            names.push(n.to_string());
        } else {
            names.push(w.to_string());
        }
    }
    (names, selected)
}

/// A zram device's state: sizes, the allocator's use and its /proc/swaps line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZramStat {
    pub index: u32,
    pub disksize_bytes: u64,
    pub mm: MmStat,
    /// `None` when the device is not swapped on.
    pub swap: Option<SwapEntry>,
}

/// A zram swap device we created. Dropping it swaps it off, resets and
/// removes it (errors are logged; use [`ZramSwap::teardown`] to see them).
#[derive(Debug)]
pub struct ZramSwap {
    record: ZramRecord,
    record_path: Option<PathBuf>,
    armed: bool,
    /// Created by this process (not adopted): on kernels without diskseq,
    /// a device that exists under our index before its header is written is still ours.
    created_here: bool,
}

fn check_backend(b: &ZramBackend, page_size: u64) -> Result<(), ZramSetupError> {
    let invalid = |reason: String| Err(ZramSetupError::Invalid { reason });
    if !(0..=MAX_SWAP_PRIORITY).contains(&b.priority) {
        return invalid(format!("priority {} is outside 0..={MAX_SWAP_PRIORITY}", b.priority));
    }
    if b.size_bytes / page_size < header::MIN_SWAP_PAGES {
        return invalid(format!("size {} bytes is below {} pages", b.size_bytes, header::MIN_SWAP_PAGES));
    }
    if b.mem_limit_bytes == Some(0) {
        return invalid("mem_limit of 0 bytes would refuse every page (omit it for no limit)".to_string());
    }
    if b.compressor.contains(char::is_whitespace) {
        return invalid(format!("compressor name {:?} contains whitespace", b.compressor));
    }
    Ok(())
}

/// Refuses any write to zram0: it belongs to the machine, never to us.
fn not_zram0(index: u32) -> io::Result<()> {
    if index == 0 {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, "zram0 is never touched"));
    }
    Ok(())
}

fn read_attr(index: u32, attr: &str) -> io::Result<String> {
    std::fs::read_to_string(sys_dir(index).join(attr))
}

fn write_attr(index: u32, attr: &str, value: &str) -> io::Result<()> {
    not_zram0(index)?;
    let mut f = std::fs::OpenOptions::new().write(true).open(sys_dir(index).join(attr))?;
    io::Write::write_all(&mut f, value.as_bytes())
}

fn read_diskseq(index: u32) -> Option<u64> {
    read_attr(index, "diskseq").ok()?.trim().parse().ok()
}

/// Retries `f` while it fails with EBUSY (a device just released, or udev probing it).
fn retry_busy(mut f: impl FnMut() -> io::Result<()>) -> io::Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        match f() {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

fn hot_remove(index: u32) -> io::Result<()> {
    not_zram0(index)?;
    retry_busy(|| {
        let mut f =
            std::fs::OpenOptions::new().write(true).open(Path::new(ZRAM_CONTROL).join("hot_remove"))?;
        io::Write::write_all(&mut f, index.to_string().as_bytes())
    })
}

/// Is the device at `index` still the instance we recorded?
enum Ownership {
    Ours,
    Gone,
    /// Ours is gone and another device instance has its index (its diskseq
    /// differs): nothing of ours is left to remove, and that one is not ours.
    Replaced(String),
    NotOurs(String),
}

fn ownership(rec: &ZramRecord, created_here: bool) -> Ownership {
    if rec.index == 0 {
        return Ownership::NotOurs("zram0 is never ours".to_string());
    }
    match state::boot_id() {
        Ok(b) if b != rec.boot_id => return Ownership::Gone,
        Ok(_) => {}
        Err(e) => return Ownership::NotOurs(format!("cannot read boot_id: {e}")),
    }
    if !sys_dir(rec.index).exists() {
        return Ownership::Gone;
    }
    match (rec.diskseq, read_diskseq(rec.index)) {
        (Some(want), Some(have)) if want == have => Ownership::Ours,
        (Some(want), Some(have)) => Ownership::Replaced(format!(
            "zram{} is another device now (diskseq {have}, we created {want})",
            rec.index
        )),
        (Some(_), None) => Ownership::NotOurs("cannot read its diskseq".to_string()),
        (None, _) if created_here => Ownership::Ours,
        // Kernels without diskseq: only the swap header can tell.
        (None, _) => match read_header_uuid(&dev_path(rec.index)) {
            Some(u) if u.to_string() == rec.uuid => Ownership::Ours,
            _ => Ownership::NotOurs("no diskseq and the swap header is not ours".to_string()),
        },
    }
}

/// The UUID of the swap header at the start of `path`, if it carries one.
pub(crate) fn read_header_uuid(path: &Path) -> Option<SwapUuid> {
    let f = std::fs::File::open(path).ok()?;
    let mut page = vec![0u8; usize::try_from(crate::sys::page_size()).ok()?];
    f.read_exact_at(&mut page, 0).ok()?;
    header::parse_swap_header(&page).map(|h| h.uuid)
}

/// Swapoff (if on), reset, hot_remove; each step only while the device is still ours.
fn teardown_device(rec: &ZramRecord, created_here: bool) -> Result<(), ZramTeardownError> {
    let index = rec.index;
    match ownership(rec, created_here) {
        Ownership::Ours => {}
        Ownership::Gone => return Ok(()),
        Ownership::Replaced(reason) => {
            tracing::info!(index, "{reason}: left alone");
            return Ok(());
        }
        Ownership::NotOurs(reason) => return Err(ZramTeardownError::NotOurs { index, reason }),
    }
    let path = dev_path(index);
    let entries = swaps::read_proc_swaps().map_err(|source| ZramTeardownError::Swaps { index, source })?;
    if swaps::find_swap(&entries, &path).is_some() {
        crate::sys::swapoff(&path)
            .map_err(|source| ZramTeardownError::Swapoff { path: path.clone(), source })?;
    }
    retry_busy(|| write_attr(index, "reset", "1"))
        .map_err(|source| ZramTeardownError::Reset { index, source })?;
    hot_remove(index).map_err(|source| ZramTeardownError::HotRemove { index, source })?;
    Ok(())
}

fn wait_for_block_device(path: &Path) -> bool {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn write_header(path: &Path, size_bytes: u64, uuid: SwapUuid) -> io::Result<()> {
    let page = header::swap_header(size_bytes, crate::sys::page_size(), uuid).map_err(io::Error::other)?;
    // O_EXCL on a block device: fail with EBUSY rather than write over a
    // device someone has mounted or swapped on.
    let f = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_EXCL).open(path)?;
    f.write_all_at(&page, 0)?;
    f.sync_all()
}

impl ZramSwap {
    /// Creates a zram device, configures it from `backend`, writes a swap
    /// header and swaps it on with `backend.priority`. With `state`, the
    /// device is recorded there (tagged with the state's owner) from right
    /// after `hot_add` until it is removed.
    pub fn create(backend: &ZramBackend, state: Option<&StateDir>) -> Result<ZramSwap, ZramSetupError> {
        let page_size = crate::sys::page_size();
        check_backend(backend, page_size)?;
        if let Some(reason) = unavailable_reason() {
            return Err(ZramSetupError::Unavailable { reason });
        }
        let uuid = SwapUuid::random().map_err(ZramSetupError::Uuid)?;
        let boot_id = state::boot_id().map_err(ZramSetupError::Uuid)?;
        let size_bytes = backend.size_bytes / page_size * page_size;

        let text = std::fs::read_to_string(Path::new(ZRAM_CONTROL).join("hot_add"))
            .map_err(ZramSetupError::HotAdd)?;
        let index: u32 = text.trim().parse().map_err(|_| ZramSetupError::BadIndex { text: text.clone() })?;
        if index == 0 {
            // Only possible if the machine's own zram0 was removed. The name
            // belongs to the machine: leave the fresh, unconfigured device alone.
            return Err(ZramSetupError::IndexZero);
        }
        let record = ZramRecord {
            index,
            boot_id,
            diskseq: read_diskseq(index),
            uuid: uuid.to_string(),
            size_bytes,
            compressor: backend.compressor.clone(),
            priority: backend.priority,
            mem_limit_bytes: backend.mem_limit_bytes,
            owner: state.and_then(|s| s.owner().map(str::to_string)),
        };
        let mut guard = ZramSwap { record, record_path: None, armed: true, created_here: true };
        if let Some(state) = state {
            let path = state
                .write_record(&guard.record_name(), &DeviceRecord::Zram(guard.record.clone()))
                .map_err(|source| ZramSetupError::Record { index, source })?;
            guard.record_path = Some(path);
        }
        // From here on, an early return drops `guard`, which tears down what was made.
        guard.configure(backend, size_bytes, uuid)?;
        tracing::info!(index, size_bytes, priority = backend.priority, compressor = %backend.compressor, "zram swap on");
        Ok(guard)
    }

    fn record_name(&self) -> String {
        format!("zram-{}.json", self.record.uuid)
    }

    fn configure(
        &self,
        backend: &ZramBackend,
        size_bytes: u64,
        uuid: SwapUuid,
    ) -> Result<(), ZramSetupError> {
        let index = self.record.index;
        let attr = |attr: &'static str, value: String| {
            write_attr(index, attr, &value).map_err(|source| ZramSetupError::Attr {
                index,
                attr,
                value,
                source,
            })
        };
        if !backend.compressor.is_empty() {
            let list = read_attr(index, "comp_algorithm").map_err(|source| ZramSetupError::Attr {
                index,
                attr: "comp_algorithm",
                value: backend.compressor.clone(),
                source,
            })?;
            let (available, _) = parse_comp_algorithm(&list);
            if !available.contains(&backend.compressor) {
                return Err(ZramSetupError::Compressor {
                    index,
                    wanted: backend.compressor.clone(),
                    available,
                });
            }
            attr("comp_algorithm", backend.compressor.clone())?;
        }
        if let Some(limit) = backend.mem_limit_bytes {
            attr("mem_limit", limit.to_string())?;
        }
        attr("disksize", size_bytes.to_string())?;
        let path = dev_path(index);
        if !wait_for_block_device(&path) {
            return Err(ZramSetupError::DeviceNode { path });
        }
        write_header(&path, size_bytes, uuid)
            .map_err(|source| ZramSetupError::Header { path: path.clone(), source })?;
        crate::sys::swapon(&path, backend.priority).map_err(|source| ZramSetupError::Swapon {
            path,
            priority: backend.priority,
            source,
        })
    }

    pub fn index(&self) -> u32 {
        self.record.index
    }

    /// `/dev/zramN`, as /proc/swaps names it.
    pub fn device_path(&self) -> PathBuf {
        dev_path(self.record.index)
    }

    pub fn uuid(&self) -> &str {
        &self.record.uuid
    }

    pub fn priority(&self) -> i32 {
        self.record.priority
    }

    /// The backend this device was created from (size rounded down to whole pages).
    pub fn backend(&self) -> ZramBackend {
        self.record.backend()
    }

    pub fn owner(&self) -> Option<&str> {
        self.record.owner.as_deref()
    }

    pub fn record(&self) -> &ZramRecord {
        &self.record
    }

    /// `None` while the device is the one we created; otherwise why it is
    /// not (removed, or another device instance under its index), e.g.
    /// after someone else swapped it off, reset and removed it.
    pub fn lost_reason(&self) -> Option<String> {
        match ownership(&self.record, self.created_here) {
            Ownership::Ours => None,
            Ownership::Gone => Some(format!("zram{} no longer exists", self.record.index)),
            Ownership::Replaced(reason) | Ownership::NotOurs(reason) => Some(reason),
        }
    }

    /// Sizes, allocator use (mm_stat) and the device's /proc/swaps line.
    pub fn stat(&self) -> Result<ZramStat, ZramStatError> {
        let index = self.record.index;
        let read = |attr: &'static str| {
            read_attr(index, attr).map_err(|source| ZramStatError::Read { index, attr, source })
        };
        let mm_text = read("mm_stat")?;
        let mm =
            parse_mm_stat(&mm_text).ok_or(ZramStatError::Parse { index, attr: "mm_stat", text: mm_text })?;
        let ds_text = read("disksize")?;
        let disksize_bytes = ds_text.trim().parse().map_err(|_| ZramStatError::Parse {
            index,
            attr: "disksize",
            text: ds_text,
        })?;
        let entries = swaps::read_proc_swaps().map_err(|source| ZramStatError::Swaps { index, source })?;
        let swap = swaps::find_swap(&entries, &self.device_path()).cloned();
        Ok(ZramStat { index, disksize_bytes, mm, swap })
    }

    /// Swapoff, reset, hot_remove, then drop the record. On error the device
    /// and its record stay (a failed swapoff leaves it swapped on).
    pub fn teardown(mut self) -> Result<(), ZramTeardownError> {
        self.armed = false;
        self.teardown_now()
    }

    fn teardown_now(&self) -> Result<(), ZramTeardownError> {
        teardown_device(&self.record, self.created_here)?;
        tracing::info!(index = self.record.index, "zram swap removed");
        if let Some(p) = &self.record_path {
            state::remove_record(p)
                .map_err(|source| ZramTeardownError::Record { index: self.record.index, source })?;
        }
        Ok(())
    }

    /// Leaves the device swapped on and recorded (for a daemon restart that
    /// will adopt it) and returns its record.
    pub fn detach(mut self) -> ZramRecord {
        self.armed = false;
        self.record.clone()
    }
}

impl Drop for ZramSwap {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(e) = self.teardown_now() {
            tracing::error!(index = self.record.index, error = %crate::error_chain(&e), "zram teardown failed");
        }
    }
}

/// Adopts the recorded device if it is still ours and swapped on with our
/// header; otherwise removes it if it is ours, or forgets the record.
pub(crate) fn adopt_or_clean_one(record_path: PathBuf, rec: ZramRecord) -> Result<ZramSwap, RecordOutcome> {
    let forget = |reason: String| {
        if let Err(e) = state::remove_record(&record_path) {
            return RecordOutcome::Failed { error: crate::error_chain(&e) };
        }
        RecordOutcome::Forgotten { reason }
    };
    match ownership(&rec, false) {
        Ownership::Gone => return Err(forget(format!("zram{} no longer exists", rec.index))),
        Ownership::NotOurs(reason) | Ownership::Replaced(reason) => return Err(forget(reason)),
        Ownership::Ours => {}
    }
    let path = dev_path(rec.index);
    let on = swaps::read_proc_swaps().map(|e| swaps::find_swap(&e, &path).is_some()).unwrap_or(false);
    let header_ours = read_header_uuid(&path).is_some_and(|u| u.to_string() == rec.uuid);
    if on && header_ours {
        tracing::info!(index = rec.index, "adopted zram swap");
        return Ok(ZramSwap {
            record: rec,
            record_path: Some(record_path),
            armed: true,
            created_here: false,
        });
    }
    let guard = ZramSwap { record: rec, record_path: Some(record_path), armed: false, created_here: false };
    match guard.teardown_now() {
        Ok(()) => Err(RecordOutcome::Cleaned),
        Err(e) => Err(RecordOutcome::Failed { error: crate::error_chain(&e) }),
    }
}

/// Adopts or cleans the zram devices recorded in `state` (see [`crate::state::recover`],
/// which does this for swap files too).
pub fn adopt_or_clean(state: &StateDir) -> Result<crate::state::Recovery, crate::state::StateReadError> {
    let mut out = crate::state::Recovery::default();
    for crate::state::RecordFile { path, record } in state.records()? {
        match record {
            Ok(DeviceRecord::Zram(r)) => match adopt_or_clean_one(path.clone(), r.clone()) {
                Ok(g) => out.zram.push(g),
                Err(outcome) => out.others.push(crate::state::RecoveredRecord {
                    record_path: path,
                    record: DeviceRecord::Zram(r),
                    outcome,
                }),
            },
            Ok(DeviceRecord::SwapFile(_)) => {}
            Err(e) => out.unreadable.push((path, e)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mm_stat_parses_old_and_new_layouts() {
        let new = "  4096000  1024000  1200000  0  1300000  10  2  3  4\n";
        let m = parse_mm_stat(new).expect("9 fields");
        assert_eq!(m.orig_data_bytes, 4_096_000);
        assert_eq!(m.compr_data_bytes, 1_024_000);
        assert_eq!(m.mem_used_bytes, 1_200_000);
        assert_eq!(m.mem_limit_bytes, 0);
        assert_eq!(m.mem_used_max_bytes, 1_300_000);
        assert_eq!(m.same_pages, 10);
        assert_eq!(m.pages_compacted, 2);
        assert_eq!(m.huge_pages, 3);
        assert_eq!(m.compression_ratio(), Some(4.0));
        let old = parse_mm_stat("1 2 3 4 5 6 7").expect("7 fields");
        assert_eq!(old.huge_pages, 0);
        assert_eq!(parse_mm_stat("1 2 3"), None);
        assert_eq!(parse_mm_stat("1 2 3 4 5 6 x"), None);
        assert_eq!(parse_mm_stat("0 0 0 0 0 0 0 0 0").and_then(|m| m.compression_ratio()), None);
    }

    #[test]
    fn comp_algorithm_lists_names_and_the_selected_one() {
        let (names, sel) = parse_comp_algorithm("[lzo-rle] lzo lz4 \n");
        assert_eq!(names, ["lzo-rle", "lzo", "lz4"]);
        assert_eq!(sel.as_deref(), Some("lzo-rle"));
        let (names, sel) = parse_comp_algorithm("lzo [zstd]");
        assert_eq!(names, ["lzo", "zstd"]);
        assert_eq!(sel.as_deref(), Some("zstd"));
    }

    #[test]
    fn backend_checks() {
        let ok = ZramBackend {
            size_bytes: 1 << 20,
            compressor: "lz4".into(),
            priority: 100,
            mem_limit_bytes: None,
        };
        assert!(check_backend(&ok, 4096).is_ok());
        for bad in [
            ZramBackend { priority: -1, ..ok.clone() },
            ZramBackend { priority: 40000, ..ok.clone() },
            ZramBackend { size_bytes: 4096, ..ok.clone() },
            ZramBackend { mem_limit_bytes: Some(0), ..ok.clone() },
            ZramBackend { compressor: "lz4 zstd".into(), ..ok.clone() },
        ] {
            assert!(matches!(check_backend(&bad, 4096), Err(ZramSetupError::Invalid { .. })), "{bad:?}");
        }
    }

    #[test]
    fn zram0_is_never_written() {
        assert_eq!(write_attr(0, "reset", "1").map_err(|e| e.kind()), Err(io::ErrorKind::PermissionDenied));
        assert_eq!(hot_remove(0).map_err(|e| e.kind()), Err(io::ErrorKind::PermissionDenied));
    }
}
