//! NUMA placement of a target's pages through `move_pages(2)`: which node
//! each page is on, and moving ranges to a node (etmem's cslide hot/cold moves).
//!
//! `move_pages` takes a pid, not a pidfd, so the pidfd is checked before and
//! after each call: if the process is gone, a reused pid could have been
//! hit, and the outcome says the target vanished instead of reporting pages.

use crate::madvise::{TargetRef, merge_ranges};
use damon_core::ops::sys::pidfd_is_alive;
use damon_core::{AddrRange, PAGE_SIZE};
use serde::Serialize;
use std::collections::BTreeMap;

/// Pages per move_pages call (the kernel works in batches of its own; this bounds our arrays).
pub const PAGES_PER_CALL: usize = 16 * 1024;

/// The outcome of [`move_to_node`] or [`page_nodes`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeMoveOutcome {
    pub pages_tried: u64,
    /// Pages that are on the wanted node afterwards (moved or already there).
    pub pages_on_node: u64,
    /// Per-page failures by errno (`ENOENT`: not present, e.g. swapped or never touched;
    /// `EBUSY`, `EFAULT`, …).
    pub page_errors: BTreeMap<i32, u64>,
    /// Pages found per node (queries and moves).
    pub pages_per_node: BTreeMap<i32, u64>,
    pub calls: u64,
    /// The errno that stopped the whole operation (`ESRCH`, `EPERM`, `ENODEV`, `EINVAL`, …).
    pub stopped: Option<i32>,
    pub vanished: bool,
}

fn page_addrs(ranges: &[AddrRange]) -> Vec<u64> {
    merge_ranges(ranges).iter().flat_map(|r| (r.start.0..r.end.0).step_by(PAGE_SIZE as usize)).collect()
}

fn run(target: TargetRef<'_>, ranges: &[AddrRange], node: Option<u32>) -> NodeMoveOutcome {
    let mut out = NodeMoveOutcome::default();
    let Some(pidfd) = target.pidfd else {
        out.stopped = Some(libc::EBADF);
        return out;
    };
    let pages = page_addrs(ranges);
    out.pages_tried = pages.len() as u64;
    let want = node.and_then(|n| i32::try_from(n).ok());
    if node.is_some() && want.is_none() {
        out.stopped = Some(libc::EINVAL);
        return out;
    }
    let mut status = vec![0i32; PAGES_PER_CALL.min(pages.len())];
    let nodes = want.map(|n| vec![n; PAGES_PER_CALL.min(pages.len())]);
    for chunk in pages.chunks(PAGES_PER_CALL) {
        if !pidfd_is_alive(pidfd) {
            out.vanished = true;
            out.stopped = Some(libc::ESRCH);
            return out;
        }
        let st = &mut status[..chunk.len()];
        out.calls += 1;
        let r = crate::sys::move_pages(target.pid, chunk, nodes.as_ref().map(|n| &n[..chunk.len()]), st);
        if !pidfd_is_alive(pidfd) {
            // The pid may name another process now: nothing of this call counts.
            out.vanished = true;
            out.stopped = Some(libc::ESRCH);
            return out;
        }
        if let Err(e) = r {
            let errno = e.raw_os_error().unwrap_or(0);
            out.stopped = Some(errno);
            out.vanished = errno == libc::ESRCH;
            return out;
        }
        for &s in st.iter() {
            if s >= 0 {
                *out.pages_per_node.entry(s).or_default() += 1;
                if want.is_none_or(|n| n == s) {
                    out.pages_on_node += 1;
                }
            } else {
                *out.page_errors.entry(-s).or_default() += 1;
            }
        }
    }
    out
}

/// Moves the pages of `ranges` to `node` (`MPOL_MF_MOVE`: pages mapped by this process only).
pub fn move_to_node(target: TargetRef<'_>, ranges: &[AddrRange], node: u32) -> NodeMoveOutcome {
    run(target, ranges, Some(node))
}

/// Which node each page of `ranges` is on (a query; nothing moves).
/// `pages_on_node` counts every present page.
pub fn page_nodes(target: TargetRef<'_>, ranges: &[AddrRange]) -> NodeMoveOutcome {
    run(target, ranges, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_of_merged_ranges() {
        let p = page_addrs(&[AddrRange::new(0x3000, 0x5000), AddrRange::new(0x1000, 0x3000)]);
        assert_eq!(p, vec![0x1000, 0x2000, 0x3000, 0x4000]);
    }

    #[test]
    fn no_pidfd_is_ebadf() {
        let o = page_nodes(TargetRef::simulated(1), &[AddrRange::new(0, 4096)]);
        assert_eq!(o.stopped, Some(libc::EBADF));
        assert_eq!(o.calls, 0);
    }
}
