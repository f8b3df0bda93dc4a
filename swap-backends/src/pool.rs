//! The swap pool: the devices we own, in the order the kernel fills them
//! (priority), their use, and whether pageout can go on, spills, or must pause.
//!
//! The kernel puts a page on the highest-priority swap area with free slots;
//! our zram has a higher priority than our swap file, so zram fills first and
//! the file takes the overflow. A zram device that reached its `mem_limit`
//! still has free slots but its writes fail, so it counts as full here. When
//! every device of ours is full, pageout should pause (and say so) rather
//! than push pages onto devices that are not ours or fail in a storm.

use crate::swapfile::SwapFile;
use crate::swaps::{self, SwapEntry};
use crate::zram::{MmStat, ZramStatError, ZramSwap};
use std::path::PathBuf;

/// A device counts as full when less than this share (per mille) of it is free.
pub const FULL_FREE_PERMIL: u64 = 10;
/// A zram device counts as full when its allocator uses this share (per mille) of `mem_limit`.
pub const ZRAM_LIMIT_FULL_PERMIL: u64 = 990;

/// The kind of device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Zram,
    SwapFile,
}

/// A device of ours, as the pool is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSwap {
    pub path: PathBuf,
    pub tier: Tier,
    /// The zram allocator's use; `None` for swap files.
    pub zram_mm: Option<MmStat>,
}

/// Why a device takes no more pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FullReason {
    /// Its swap slots are (nearly) all used.
    Slots { used_bytes: u64, size_bytes: u64 },
    /// zram's allocator reached `mem_limit`.
    ZramMemLimit { mem_used_bytes: u64, mem_limit_bytes: u64 },
    /// It is not in /proc/swaps.
    NotSwappedOn,
}

impl std::fmt::Display for FullReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FullReason::Slots { used_bytes, size_bytes } => {
                write!(f, "{used_bytes} of {size_bytes} bytes used")
            }
            FullReason::ZramMemLimit { mem_used_bytes, mem_limit_bytes } => {
                write!(f, "zram uses {mem_used_bytes} of its {mem_limit_bytes}-byte mem_limit")
            }
            FullReason::NotSwappedOn => f.write_str("not swapped on"),
        }
    }
}

/// One device of ours in the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDevice {
    pub path: PathBuf,
    pub tier: Tier,
    /// swapon priority; `None` when not swapped on.
    pub priority: Option<i32>,
    pub size_bytes: u64,
    pub used_bytes: u64,
    pub zram_mm: Option<MmStat>,
    /// `Some` when the device takes no more pages.
    pub full: Option<FullReason>,
}

/// Whether pageout can go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolState {
    /// We own no swap device.
    NoDevices,
    /// The highest-priority device of ours has room.
    Room { device: PathBuf },
    /// Higher-priority devices are full; pages go to `into`.
    Spilling { full: Vec<PathBuf>, into: PathBuf },
    /// Every device of ours is full: pause pageout.
    Full { reasons: Vec<(PathBuf, FullReason)> },
}

impl PoolState {
    /// Pageout to our devices can go on.
    pub fn has_room(&self) -> bool {
        matches!(self, PoolState::Room { .. } | PoolState::Spilling { .. })
    }
}

/// Our devices (highest priority first) and the other swap areas of the machine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SwapPool {
    pub devices: Vec<PoolDevice>,
    /// Swap areas in /proc/swaps that are not ours.
    pub foreign: Vec<SwapEntry>,
}

/// Reading the pool's state failed.
#[derive(Debug, thiserror::Error)]
pub enum SwapPoolError {
    #[error("cannot read /proc/swaps")]
    Swaps(#[from] swaps::ReadSwapsError),
    #[error(transparent)]
    Zram(#[from] ZramStatError),
}

fn full_reason(entry: Option<&SwapEntry>, mm: Option<&MmStat>) -> Option<FullReason> {
    let Some(e) = entry else {
        return Some(FullReason::NotSwappedOn);
    };
    let at_limit = |m: &&MmStat| {
        m.mem_limit_bytes > 0 && m.mem_used_bytes * 1000 >= m.mem_limit_bytes * ZRAM_LIMIT_FULL_PERMIL
    };
    if let Some(mm) = mm.filter(at_limit) {
        return Some(FullReason::ZramMemLimit {
            mem_used_bytes: mm.mem_used_bytes,
            mem_limit_bytes: mm.mem_limit_bytes,
        });
    }
    if e.free_bytes() * 1000 < e.size_bytes * FULL_FREE_PERMIL || e.free_bytes() == 0 {
        return Some(FullReason::Slots { used_bytes: e.used_bytes, size_bytes: e.size_bytes });
    }
    None
}

impl SwapPool {
    /// Builds the pool from /proc/swaps entries and the devices we own (pure).
    pub fn build(entries: &[SwapEntry], owned: &[OwnedSwap]) -> SwapPool {
        let mut devices: Vec<PoolDevice> = owned
            .iter()
            .map(|o| {
                let e = swaps::find_swap(entries, &o.path);
                PoolDevice {
                    path: o.path.clone(),
                    tier: o.tier,
                    priority: e.map(|e| e.priority),
                    size_bytes: e.map_or(0, |e| e.size_bytes),
                    used_bytes: e.map_or(0, |e| e.used_bytes),
                    zram_mm: o.zram_mm,
                    full: full_reason(e, o.zram_mm.as_ref()),
                }
            })
            .collect();
        // The kernel's order: higher priority first; devices not swapped on last.
        devices.sort_by_key(|d| std::cmp::Reverse(d.priority.map_or(i64::MIN, i64::from)));
        let foreign = entries.iter().filter(|e| !owned.iter().any(|o| o.path == e.path)).cloned().collect();
        SwapPool { devices, foreign }
    }

    /// Reads /proc/swaps and each zram device's mm_stat.
    pub fn observe(zram: &[&ZramSwap], files: &[&SwapFile]) -> Result<SwapPool, SwapPoolError> {
        let entries = swaps::read_proc_swaps()?;
        let mut owned = Vec::with_capacity(zram.len() + files.len());
        for z in zram {
            owned.push(OwnedSwap { path: z.device_path(), tier: Tier::Zram, zram_mm: Some(z.stat()?.mm) });
        }
        for f in files {
            owned.push(OwnedSwap { path: f.path().to_path_buf(), tier: Tier::SwapFile, zram_mm: None });
        }
        Ok(SwapPool::build(&entries, &owned))
    }

    /// Whether pageout can go on, and where pages go.
    pub fn state(&self) -> PoolState {
        if self.devices.is_empty() {
            return PoolState::NoDevices;
        }
        let mut full = Vec::new();
        for d in &self.devices {
            if d.full.is_none() {
                return if full.is_empty() {
                    PoolState::Room { device: d.path.clone() }
                } else {
                    PoolState::Spilling { full, into: d.path.clone() }
                };
            }
            full.push(d.path.clone());
        }
        PoolState::Full {
            reasons: self
                .devices
                .iter()
                .filter_map(|d| d.full.clone().map(|r| (d.path.clone(), r)))
                .collect(),
        }
    }

    pub fn size_bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.size_bytes).sum()
    }

    pub fn used_bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.used_bytes).sum()
    }

    /// Free slots on our devices that still take pages.
    pub fn free_bytes(&self) -> u64 {
        self.devices
            .iter()
            .filter(|d| d.full.is_none())
            .map(|d| d.size_bytes.saturating_sub(d.used_bytes))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swaps::SwapKind;

    const MIB: u64 = 1 << 20;

    fn entry(path: &str, size: u64, used: u64, prio: i32) -> SwapEntry {
        SwapEntry {
            path: path.into(),
            deleted: false,
            kind: if path.starts_with("/dev/") { SwapKind::Partition } else { SwapKind::File },
            size_bytes: size,
            used_bytes: used,
            priority: prio,
        }
    }

    fn zram(path: &str, mm: MmStat) -> OwnedSwap {
        OwnedSwap { path: path.into(), tier: Tier::Zram, zram_mm: Some(mm) }
    }

    fn file(path: &str) -> OwnedSwap {
        OwnedSwap { path: path.into(), tier: Tier::SwapFile, zram_mm: None }
    }

    #[test]
    fn zram_first_while_it_has_room() {
        let e = [entry("/swapfile", 1024 * MIB, 0, 10), entry("/dev/zram1", 256 * MIB, 10 * MIB, 100)];
        let p = SwapPool::build(&e, &[file("/swapfile"), zram("/dev/zram1", MmStat::default())]);
        assert_eq!(p.devices[0].path, PathBuf::from("/dev/zram1"), "higher priority first");
        assert_eq!(p.state(), PoolState::Room { device: "/dev/zram1".into() });
        assert_eq!(p.used_bytes(), 10 * MIB);
        assert_eq!(p.free_bytes(), 1270 * MIB);
        assert!(p.foreign.is_empty());
    }

    #[test]
    fn full_zram_spills_to_the_swap_file() {
        let e =
            [entry("/dev/zram1", 256 * MIB, 256 * MIB - 4096, 100), entry("/swapfile", 1024 * MIB, 0, 10)];
        let p = SwapPool::build(&e, &[zram("/dev/zram1", MmStat::default()), file("/swapfile")]);
        assert_eq!(
            p.state(),
            PoolState::Spilling { full: vec!["/dev/zram1".into()], into: "/swapfile".into() }
        );
        assert!(p.state().has_room());
    }

    #[test]
    fn zram_at_mem_limit_is_full_despite_free_slots() {
        let mm = MmStat { mem_used_bytes: 64 * MIB, mem_limit_bytes: 64 * MIB, ..MmStat::default() };
        let e = [entry("/dev/zram1", 256 * MIB, 100 * MIB, 100)];
        let p = SwapPool::build(&e, &[zram("/dev/zram1", mm)]);
        match p.state() {
            PoolState::Full { reasons } => {
                assert_eq!(reasons.len(), 1);
                assert!(matches!(reasons[0].1, FullReason::ZramMemLimit { .. }));
            }
            s => panic!("expected Full, got {s:?}"),
        }
        assert!(!p.state().has_room());
        assert_eq!(p.free_bytes(), 0);
    }

    #[test]
    fn everything_full_pauses_and_foreign_devices_are_listed_apart() {
        let e = [entry("/dev/zram0", 8192 * MIB, 0, 5), entry("/dev/zram1", 256 * MIB, 256 * MIB, 100)];
        let p = SwapPool::build(&e, &[zram("/dev/zram1", MmStat::default()), file("/gone")]);
        assert_eq!(p.foreign.len(), 1);
        assert_eq!(p.foreign[0].path, PathBuf::from("/dev/zram0"));
        let PoolState::Full { reasons } = p.state() else { panic!("expected Full") };
        assert_eq!(reasons[1], ("/gone".into(), FullReason::NotSwappedOn));
        assert_eq!(p.devices[1].priority, None, "not swapped on sorts last");
    }

    #[test]
    fn no_devices() {
        assert_eq!(SwapPool::build(&[], &[]).state(), PoolState::NoDevices);
    }
}
