//! Helpers shared by this crate's real-system tests: skip checks, a lock
//! that serialises tests touching swap, and backends sized for tests.

#![allow(dead_code)]

pub mod child;

use conf::ZramBackend;
use std::sync::{Mutex, MutexGuard};
use swap_backends::zram::{ZramSetupError, ZramSwap};

static SWAP_LOCK: Mutex<()> = Mutex::new(());

/// Serialises the tests of one binary that turn swap on or off, so one
/// test's swapoff does not pull another test's pages back in.
pub fn swap_lock() -> MutexGuard<'static, ()> {
    SWAP_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// `Some(reason)` when zram cannot be used here.
pub fn zram_skip() -> Option<String> {
    swap_backends::zram::unavailable_reason()
}

/// `Some(reason)` when not running as root (process_madvise on another
/// process needs CAP_SYS_NICE).
pub fn root_skip() -> Option<String> {
    (!swap_backends::sys::is_root()).then(|| "acting on another process needs root".to_string())
}

pub const MIB: u64 = 1 << 20;

/// A zram swap of `size_bytes`: lz4 when the host offers it, else the
/// first compressor it lists.
pub fn zram_backend(size_bytes: u64, priority: i32) -> ZramBackend {
    ZramBackend { size_bytes, compressor: "lz4".into(), priority, mem_limit_bytes: None }
}

pub fn create_zram(
    backend: &ZramBackend,
    state: Option<&swap_backends::StateDir>,
) -> Result<ZramSwap, ZramSetupError> {
    match ZramSwap::create(backend, state) {
        Err(ZramSetupError::Compressor { available, .. }) if !available.is_empty() => {
            let b = ZramBackend { compressor: available[0].clone(), ..backend.clone() };
            ZramSwap::create(&b, state)
        }
        r => r,
    }
}

/// The /proc/swaps line for `path`.
pub fn swaps_line(path: &std::path::Path) -> Option<swap_backends::swaps::SwapEntry> {
    let e = swap_backends::swaps::read_proc_swaps().expect("/proc/swaps readable");
    swap_backends::swaps::find_swap(&e, path).cloned()
}
