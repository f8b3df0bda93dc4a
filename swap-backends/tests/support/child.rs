//! A forked child process that maps anonymous memory, fills it with a
//! pattern, reports the addresses over a pipe and waits for commands. After
//! fork only async-signal-safe calls are made (mmap, madvise, read, write,
//! _exit) and nothing allocates or panics.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Commands (one byte on the command pipe).
const CMD_VERIFY: u8 = b'v';

/// A child with `regions.len()` mappings; killed and reaped on drop.
#[derive(Debug)]
pub struct Child {
    pub pid: u32,
    pidfd: OwnedFd,
    cmd: Option<OwnedFd>,
    /// Start addresses of the regions, each aligned as asked.
    pub addrs: Vec<u64>,
    reaped: bool,
}

/// One region the child maps: length, alignment, and whether it is marked MADV_NOHUGEPAGE.
#[derive(Debug, Clone, Copy)]
pub struct Region {
    pub len: u64,
    pub align: u64,
    pub no_hugepage: bool,
}

const MAX_REGIONS: usize = 4;

fn pattern(i: u64) -> u64 {
    // xorshift of the word index: incompressible enough to be stored as data,
    // never a same-filled page.
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// The child's whole life after fork. Only async-signal-safe calls.
unsafe fn child_main(regions: &[Region], report: i32, cmd: i32) -> ! {
    let mut addrs = [0u64; MAX_REGIONS];
    for (k, r) in regions.iter().enumerate() {
        // SAFETY: a fresh private anonymous mapping; arguments are plain integers.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                (r.len + r.align) as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(3) };
        }
        let base = (p as u64).div_ceil(r.align) * r.align;
        if r.no_hugepage {
            // SAFETY: the range lies inside the mapping just made.
            unsafe { libc::madvise(base as *mut libc::c_void, r.len as usize, libc::MADV_NOHUGEPAGE) };
        }
        let words = base as *mut u64;
        for i in 0..r.len / 8 {
            // SAFETY: base..base+len lies inside the mapping.
            unsafe { words.add(i as usize).write_volatile(pattern(i ^ (k as u64) << 40)) };
        }
        addrs[k] = base;
    }
    // SAFETY: writes from a stack buffer to our pipe end.
    unsafe { libc::write(report, addrs.as_ptr().cast(), regions.len() * 8) };
    loop {
        let mut c = 0u8;
        // SAFETY: reads one byte into a stack variable.
        let n = unsafe { libc::read(cmd, (&raw mut c).cast(), 1) };
        if n != 1 {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(2) };
        }
        if c == CMD_VERIFY {
            let mut ok = true;
            for (k, r) in regions.iter().enumerate() {
                let words = addrs[k] as *const u64;
                for i in 0..r.len / 8 {
                    // SAFETY: inside the mapping; reading faults swapped pages back in.
                    if unsafe { words.add(i as usize).read_volatile() } != pattern(i ^ (k as u64) << 40) {
                        ok = false;
                    }
                }
            }
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a two-int buffer for pipe2.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 returned two fresh fds that we now own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Child {
    pub fn spawn(regions: &[Region]) -> Child {
        assert!(regions.len() <= MAX_REGIONS);
        let (report_r, report_w) = pipe();
        let (cmd_r, cmd_w) = pipe();
        // SAFETY: the child runs only async-signal-safe code (child_main) and never returns.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: in the child right after fork; see child_main.
            unsafe { child_main(regions, report_w.as_raw_fd(), cmd_r.as_raw_fd()) };
        }
        drop(report_w);
        drop(cmd_r);
        let pid = pid as u32;
        let pidfd = damon_core::ops::sys::pidfd_open(pid).expect("pidfd_open");
        let mut child = Child { pid, pidfd, cmd: Some(cmd_w), addrs: Vec::new(), reaped: false };
        let mut buf = [0u8; MAX_REGIONS * 8];
        let want = regions.len() * 8;
        let mut got = 0;
        while got < want {
            // SAFETY: reads into the stack buffer within its bounds.
            let n = unsafe { libc::read(report_r.as_raw_fd(), buf[got..].as_mut_ptr().cast(), want - got) };
            assert!(n > 0, "child {pid} died before reporting its addresses");
            got += n as usize;
        }
        child.addrs =
            buf[..want].chunks(8).map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes"))).collect();
        child
    }

    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Asks the child to read all its memory back and compare; true when every byte matched.
    pub fn verify_and_exit(&mut self) -> bool {
        let cmd = self.cmd.take().expect("command pipe");
        // SAFETY: writes one byte from a stack variable.
        let n = unsafe { libc::write(cmd.as_raw_fd(), [CMD_VERIFY].as_ptr().cast(), 1) };
        assert_eq!(n, 1);
        self.wait() == Some(0)
    }

    pub fn kill(&mut self) {
        // SAFETY: kill of our own child's pid, not yet reaped, so not reused.
        unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        self.wait();
    }

    fn wait(&mut self) -> Option<i32> {
        if self.reaped {
            return None;
        }
        let mut status = 0;
        // SAFETY: waits for our own child; status is a valid int.
        let r = unsafe { libc::waitpid(self.pid as i32, &mut status, 0) };
        self.reaped = true;
        (r == self.pid as i32 && libc::WIFEXITED(status)).then(|| libc::WEXITSTATUS(status))
    }

    /// A `/proc/PID/status` field in kB, as bytes.
    pub fn status_kb(&self, field: &str) -> u64 {
        proc_kb(&format!("/proc/{}/status", self.pid), field)
    }

    /// A `/proc/PID/smaps_rollup` field in kB, as bytes.
    pub fn smaps_kb(&self, field: &str) -> u64 {
        proc_kb(&format!("/proc/{}/smaps_rollup", self.pid), field)
    }

    /// Pages of `[start, start+len)` that pagemap reports (present, swapped).
    pub fn pagemap_counts(&self, start: u64, len: u64) -> (u64, u64) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(format!("/proc/{}/pagemap", self.pid)).expect("open pagemap");
        let pages = (len / 4096) as usize;
        let mut buf = vec![0u8; pages * 8];
        f.read_exact_at(&mut buf, start / 4096 * 8).expect("read pagemap");
        let mut present = 0;
        let mut swapped = 0;
        for e in buf.chunks(8) {
            let v = u64::from_ne_bytes(e.try_into().expect("8 bytes"));
            present += v >> 63 & 1;
            swapped += v >> 62 & 1;
        }
        (present, swapped)
    }
}

pub fn proc_kb(path: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
        }
    }
}
