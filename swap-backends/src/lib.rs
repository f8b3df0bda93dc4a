//! Actions on memory and swap devices: process_madvise actions through a
//! pidfd (pageout, cold, willneed, collapse, split), quotas, and the swap
//! devices a project creates and removes (zram, swap files), recorded in a
//! state directory so a restarted daemon adopts or cleans them.
//!
//! Architecture invariant: every device this crate tears down is one it
//! created (recorded by diskseq/inode and swap-header UUID); never `/dev/zram0`.

pub mod header;
pub mod madvise;
pub mod numa;
pub mod pool;
pub mod quota;
pub mod state;
pub mod swapfile;
pub mod swaps;
pub mod sys;
pub mod zram;

pub use madvise::{ActionOutcome, ActionStats, MemAction, MemoryActor, ProcessMadvise, TargetRef};
pub use pool::{PoolState, SwapPool};
pub use quota::{QuotaLimits, QuotaState, QuotaUsage};

pub use state::{StateDir, recover};
pub use swapfile::SwapFile;
pub use sys::thread_cpu_time;
pub use zram::ZramSwap;

/// An error and its sources, joined by ": " (for logs that print a chain once).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
