//! Safe wrappers over the syscalls this crate needs that damon-core's
//! `ops::sys` does not wrap: swapon/swapoff, fallocate, fstatfs, move_pages and
//! the thread CPU clock. Each syscall is wrapped here once; the rest of the crate calls these.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

/// `SWAP_FLAG_PREFER` (linux/swap.h): use the priority in the low bits.
pub const SWAP_FLAG_PREFER: i32 = 0x8000;
/// `SWAP_FLAG_PRIO_MASK` (linux/swap.h): the highest priority swapon accepts.
pub const SWAP_FLAG_PRIO_MASK: i32 = 0x7fff;

/// Filesystem magic numbers (linux/magic.h) that [`fstatfs_type`] reports.
pub mod fs_magic {
    pub const EXT4: u64 = 0xef53;
    pub const XFS: u64 = 0x5846_5342;
    pub const BTRFS: u64 = 0x9123_683e;
    pub const F2FS: u64 = 0xf2f5_2010;
    pub const TMPFS: u64 = 0x0102_1994;
    pub const RAMFS: u64 = 0x8584_58f6;
    pub const OVERLAYFS: u64 = 0x794c_7630;
    pub const SQUASHFS: u64 = 0x7371_7368;
    pub const FUSE: u64 = 0x6573_5546;
    pub const NFS: u64 = 0x6969;
    pub const PROC: u64 = 0x9fa0;
    pub const SYSFS: u64 = 0x6265_6572;
    pub const CGROUP2: u64 = 0x6367_7270;
    pub const ZFS: u64 = 0x2fc1_2fc1;
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `swapon(path, SWAP_FLAG_PREFER | priority)`. `priority` must be in
/// `0..=SWAP_FLAG_PRIO_MASK` (callers validate; out of range gives `EINVAL`).
pub fn swapon(path: &Path, priority: i32) -> io::Result<()> {
    if !(0..=SWAP_FLAG_PRIO_MASK).contains(&priority) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let c = cpath(path)?;
    // SAFETY: c is a valid NUL-terminated path for the duration of the call.
    let r = unsafe { libc::swapon(c.as_ptr(), SWAP_FLAG_PREFER | priority) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `swapoff(path)`: moves every page on the device back to RAM, then disables it.
pub fn swapoff(path: &Path) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: c is a valid NUL-terminated path for the duration of the call.
    let r = unsafe { libc::swapoff(c.as_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fallocate(fd, 0, 0, len)`: allocate every block of the file (no holes).
pub fn fallocate(fd: BorrowedFd<'_>, len_bytes: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len_bytes).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: fallocate only reads its integer arguments; fd is open for the call.
    let r = unsafe { libc::fallocate(fd.as_raw_fd(), 0, 0, len) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fstatfs(fd)`, returning the filesystem's magic number (`f_type`).
pub fn fstatfs_type(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut buf = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: buf is a writable statfs-sized buffer; fd is open for the call.
    let r = unsafe { libc::fstatfs(fd.as_raw_fd(), buf.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatfs returned 0, so it filled the buffer.
    let st = unsafe { buf.assume_init() };
    // f_type is a signed word holding a 32-bit magic; keep its low 32 bits.
    Ok((st.f_type as u64) & 0xffff_ffff)
}

/// The base page size of the running kernel (`sysconf(_SC_PAGESIZE)`).
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let r = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(r).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`), to
/// charge CPU-time quotas with what acting really cost.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec to fill; the clock id is a constant.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        // Cannot fail for this clock on Linux; a zero reading charges nothing.
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

/// `MPOL_MF_MOVE` (linux/mempolicy.h): move pages mapped only by this process.
pub const MPOL_MF_MOVE: i32 = 1 << 1;

/// `move_pages(pid, count, pages, nodes, status, MPOL_MF_MOVE)`.
///
/// With `nodes == None` only queries: `status[i]` receives the node of
/// `pages[i]` or a negative errno. With nodes, moves each page to its node
/// and `status[i]` receives the node it is now on or a negative errno.
/// Returns the number of pages that could not be moved (the kernel's
/// non-negative return). `move_pages` takes a pid, not a pidfd: callers check
/// that their pidfd is still alive afterwards to rule out pid reuse.
pub fn move_pages(pid: u32, pages: &[u64], nodes: Option<&[i32]>, status: &mut [i32]) -> io::Result<usize> {
    if status.len() != pages.len() || nodes.is_some_and(|n| n.len() != pages.len()) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let ptrs: Vec<*const libc::c_void> = pages.iter().map(|&a| a as usize as *const libc::c_void).collect();
    let nodes_ptr = nodes.map_or(std::ptr::null(), |n| n.as_ptr());
    // SAFETY: ptrs, nodes and status all hold `pages.len()` elements and live
    // for the call; the page addresses name the target's address space and are
    // never dereferenced in ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_pages,
            pid,
            ptrs.len() as libc::c_ulong,
            ptrs.as_ptr(),
            nodes_ptr,
            status.as_mut_ptr(),
            MPOL_MF_MOVE,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(r).unwrap_or(0))
}

/// Whether the process runs with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
