//! Thin wrappers over the syscalls libc does not wrap: `pidfd_open` and
//! `process_madvise`. Each syscall is wrapped here once; everything else calls these.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `MADV_COLD` (5.4+): deactivate, reclaim later.
pub const MADV_COLD: i32 = 20;
/// `MADV_PAGEOUT` (5.4+): reclaim now.
pub const MADV_PAGEOUT: i32 = 21;
/// `MADV_WILLNEED`: read back in.
pub const MADV_WILLNEED: i32 = libc::MADV_WILLNEED;
/// `MADV_COLLAPSE` (6.1+): collapse into transparent huge pages now.
pub const MADV_COLLAPSE: i32 = 25;

/// Largest iovec count one `process_madvise` call takes (`UIO_MAXIOV`).
pub const IOV_MAX: usize = 1024;

/// `pidfd_open(pid, 0)`: a handle that keeps naming this very process even
/// after its pid is reused.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel returned a fresh fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(pidfd, 0, NULL, 0)`: `Ok` while the process lives.
pub fn pidfd_is_alive(pidfd: BorrowedFd<'_>) -> bool {
    // SAFETY: signal 0 only checks existence and permission; null siginfo is allowed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    r == 0
}

/// `process_madvise(pidfd, iov, advice, 0)` over ranges of the target's
/// address space, given as `(start, len)`. Returns the bytes advised; the
/// kernel stops at the first range it fails on, so a short count means the
/// rest was not advised. At most [`IOV_MAX`] ranges per call.
pub fn process_madvise(pidfd: BorrowedFd<'_>, ranges: &[(u64, u64)], advice: i32) -> io::Result<usize> {
    if ranges.len() > IOV_MAX {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let iov: Vec<libc::iovec> = ranges
        .iter()
        .map(|&(start, len)| libc::iovec {
            iov_base: start as usize as *mut libc::c_void,
            iov_len: len as usize,
        })
        .collect();
    // SAFETY: the iovecs describe the *target's* address space; the kernel
    // never dereferences them in ours. iov and its length are valid for the call.
    let r = unsafe {
        libc::syscall(libc::SYS_process_madvise, pidfd.as_raw_fd(), iov.as_ptr(), iov.len(), advice, 0u32)
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}
