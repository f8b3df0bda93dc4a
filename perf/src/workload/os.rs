//! The few system calls the workload generator makes, each wrapped once:
//! anonymous mappings, madvise, signals. Everything unsafe but `memory` lives here.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// The kernel's base page size.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { damon_core::PAGE_SIZE }
}

/// Reserves `len` bytes of address space: anonymous, private, PROT_NONE (no
/// memory committed yet). Returns the start address.
pub fn reserve(len: usize) -> io::Result<usize> {
    // SAFETY: a fresh anonymous mapping at an address the kernel chooses
    // aliases nothing; the result is checked against MAP_FAILED.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED { Err(io::Error::last_os_error()) } else { Ok(ptr as usize) }
}

/// Makes `[addr, addr + len)` of our own reservation readable and writable.
pub fn protect_read_write(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: callers pass page-aligned ranges inside a reservation they own
    // and that nothing references yet; mprotect cannot invalidate Rust references.
    let rc = unsafe { libc::mprotect(addr as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_WRITE) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Unmaps `[addr, addr + len)`.
///
/// # Safety
/// The range must belong to a mapping the caller owns, and no reference into it
/// may be used afterwards.
pub unsafe fn unmap(addr: usize, len: usize) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: the caller guarantees the range is theirs and unreferenced.
    let rc = unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// madvise() on our own mapping; only advice that keeps the content
/// (MADV_HUGEPAGE, MADV_NOHUGEPAGE) is passed here.
pub fn madvise(addr: usize, len: usize, advice: libc::c_int) -> io::Result<()> {
    // SAFETY: the advice values used keep memory content; the range is ours.
    let rc = unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

static TERMINATION_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_termination_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    TERMINATION_REQUESTED.store(true, Ordering::SeqCst);
}

/// Installs handlers so SIGTERM and SIGINT set a flag instead of killing the
/// process; returns the flag, polled by the control loop.
pub fn termination_flag() -> io::Result<&'static AtomicBool> {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value;
        // the handler only stores to an atomic, which is async-signal-safe.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_termination_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(&TERMINATION_REQUESTED)
}

/// Sends `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Which pages of `[addr, addr + len)` (ours, page-aligned) are resident, by `mincore`.
#[cfg(test)]
pub fn resident_pages(addr: usize, len: usize) -> io::Result<Vec<bool>> {
    let page = page_size() as usize;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: mincore only writes one byte per page of the range into `vec`,
    // which has exactly that many bytes; the range is a mapping of ours.
    let rc = unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr()) };
    if rc == 0 { Ok(vec.iter().map(|b| b & 1 != 0).collect()) } else { Err(io::Error::last_os_error()) }
}
