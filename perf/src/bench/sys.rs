//! The system calls the benchmarks make themselves, each wrapped once:
//! process CPU time and an anonymous buffer to fill and page out.

use std::io;
use std::time::Duration;

/// CPU time (user + system) of this whole process, every thread included.
pub fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec to the valid pointer given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        // Cannot fail for this clock on Linux; zero makes a delta visibly wrong.
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

/// CPU time of the calling thread.
pub fn thread_cpu_time() -> Duration {
    swap_backends::thread_cpu_time()
}

/// A private anonymous mapping of this process, unmapped on drop: memory
/// the benchmark fills with content of a known compressibility and pages out.
#[derive(Debug)]
pub struct AnonBuffer {
    ptr: *mut u64,
    len_bytes: usize,
}

// SAFETY: plain memory owned by this value; nothing else refers to it.
unsafe impl Send for AnonBuffer {}

impl AnonBuffer {
    /// Maps `len_bytes` (rounded up to 8) of zero-filled memory; nothing is committed yet.
    pub fn new(len_bytes: usize) -> io::Result<AnonBuffer> {
        let len_bytes = len_bytes.div_ceil(8) * 8;
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses
        // aliases nothing; the result is checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Keep the buffer in base pages, as the workload's regions are: a THP
        // would be paged out (and split) differently.
        // SAFETY: MADV_NOHUGEPAGE on our own fresh mapping keeps its content.
        unsafe { libc::madvise(p, len_bytes, libc::MADV_NOHUGEPAGE) };
        Ok(AnonBuffer { ptr: p.cast(), len_bytes })
    }

    pub fn addr(&self) -> u64 {
        self.ptr as usize as u64
    }

    pub fn len_bytes(&self) -> usize {
        self.len_bytes
    }

    /// The buffer as 8-byte words (touching them faults the pages in).
    pub fn words_mut(&mut self) -> &mut [u64] {
        // SAFETY: the mapping is len_bytes long, 8-aligned (page-aligned),
        // readable and writable, owned by self and borrowed mutably here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len_bytes / 8) }
    }
}

impl Drop for AnonBuffer {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and no slice of it outlives &mut self borrows.
        unsafe { libc::munmap(self.ptr.cast(), self.len_bytes) };
    }
}
