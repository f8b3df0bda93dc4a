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

/// `poll(pidfd, POLLIN, 0)`: `true` once the process has exited (a zombie
/// counts as exited: its memory is gone even before it is reaped).
pub fn pidfd_has_exited(pidfd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one valid pollfd, zero timeout.
        let r = unsafe { libc::poll(&mut pfd, 1, 0) };
        if r >= 0 {
            return Ok(r > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP) != 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
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

/// `PAGEMAP_SCAN` ioctl number on a pagemap fd (6.7+): `_IOWR('f', 16, struct pm_scan_arg)`.
pub const PAGEMAP_SCAN: libc::c_ulong = 0xC060_6610;

/// `PAGEMAP_SCAN` page categories (include/uapi/linux/fs.h).
pub const PAGE_IS_WPALLOWED: u64 = 1 << 0;
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;
pub const PAGE_IS_FILE: u64 = 1 << 2;
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
pub const PAGE_IS_PFNZERO: u64 = 1 << 5;
/// PMD-mapped THP or hugetlb.
pub const PAGE_IS_HUGE: u64 = 1 << 6;
pub const PAGE_IS_SOFT_DIRTY: u64 = 1 << 7;

/// `struct pm_scan_arg` of the `PAGEMAP_SCAN` ioctl.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region`: one run of pages `[start, end)` sharing `categories`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

/// `ioctl(pagemap_fd, PAGEMAP_SCAN)` over `[start, end)` of the target,
/// returning runs of pages that have any of `anyof_mask` (all pages when 0),
/// with their categories masked by `return_mask`. Returns the number of runs
/// written to `out` and the address where the walk stopped (`end` when it
/// covered the whole range; less when `out` filled up).
pub fn pagemap_scan(
    pagemap: BorrowedFd<'_>,
    start: u64,
    end: u64,
    anyof_mask: u64,
    return_mask: u64,
    out: &mut [PageRegion],
) -> io::Result<(usize, u64)> {
    let mut arg = PmScanArg {
        size: std::mem::size_of::<PmScanArg>() as u64,
        start,
        end,
        vec: out.as_mut_ptr() as usize as u64,
        vec_len: out.len() as u64,
        category_anyof_mask: anyof_mask,
        return_mask,
        ..PmScanArg::default()
    };
    // SAFETY: arg is a valid pm_scan_arg for the duration of the call, and
    // vec/vec_len describe `out`, which the kernel fills with at most vec_len
    // page_region structs (same layout as PageRegion).
    let r = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg as *mut PmScanArg) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = usize::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok((n.min(out.len()), arg.walk_end))
}

/// A private anonymous mapping in this process, unmapped on drop. Used by
/// host self-tests (is soft-dirty tracked? are PFNs visible?).
#[derive(Debug)]
pub struct AnonMapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; it can move across threads.
unsafe impl Send for AnonMapping {}

impl AnonMapping {
    /// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS)`.
    pub fn new(len: usize) -> io::Result<AnonMapping> {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(AnonMapping { ptr: p.cast(), len })
    }

    /// Start address of the mapping.
    pub fn addr(&self) -> u64 {
        self.ptr as usize as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Write `value` at `offset` (a volatile store, so it really touches the page).
    pub fn write_byte(&self, offset: usize, value: u8) {
        assert!(offset < self.len, "offset {offset} outside a {}-byte mapping", self.len);
        // SAFETY: offset is inside the mapping, which is readable and writable.
        unsafe { std::ptr::write_volatile(self.ptr.add(offset), value) }
    }

    /// Read the byte at `offset` (a volatile load).
    pub fn read_byte(&self, offset: usize) -> u8 {
        assert!(offset < self.len, "offset {offset} outside a {}-byte mapping", self.len);
        // SAFETY: offset is inside the mapping, which is readable.
        unsafe { std::ptr::read_volatile(self.ptr.add(offset)) }
    }
}

impl Drop for AnonMapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing borrows the memory.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}
