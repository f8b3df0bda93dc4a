//! What PID 1 of the test guest needs from the kernel: mounts, module
//! loading, power off, and a few /proc readings. The only unsafe code of
//! the guest init is here.

use std::ffi::CString;
use std::path::Path;

/// Mount a filesystem; an already mounted target is fine.
pub fn mount(source: &str, target: &str, fstype: &str, data: Option<&str>) -> Result<(), String> {
    let _ = std::fs::create_dir_all(target);
    let c = |s: &str| CString::new(s).map_err(|e| e.to_string());
    let (src, tgt, fs) = (c(source)?, c(target)?, c(fstype)?);
    let data = data.map(c).transpose()?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call
    // (or null for data), as mount(2) requires.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fs.as_ptr(),
            0,
            data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(format!("mount {fstype} on {target}: {e}"));
        }
    }
    Ok(())
}

/// Load a kernel module from a file (init_module(2) with its image).
pub fn insmod(path: &Path) -> Result<(), String> {
    let image = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let params = CString::default();
    // SAFETY: the image buffer and the empty parameter string are valid for
    // the duration of the call; the kernel copies both.
    let rc = unsafe { libc::syscall(libc::SYS_init_module, image.as_ptr(), image.len(), params.as_ptr()) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(format!("init_module {}: {e}", path.display()));
        }
    }
    Ok(())
}

/// Flush and power the guest off; qemu then exits.
pub fn power_off() -> ! {
    // SAFETY: sync and reboot have no memory preconditions; we are PID 1.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    // reboot(2) does not return on success; if it failed, let the kernel
    // panic (panic=-1 reboots, and qemu runs with -no-reboot).
    std::process::exit(1)
}

/// Reap every exited child (we are PID 1: orphans land here).
pub fn reap_zombies() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with WNOHANG and a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
    }
}

/// Send a signal to a process we started.
pub fn kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid of a child this program spawned.
    unsafe { libc::kill(pid as i32, sig) };
}

/// Field `n` (1-based, as proc(5) counts) of /proc/PID/stat.
pub fn stat_field(pid: u32, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
}

/// Major faults of a process so far.
pub fn majflt(pid: u32) -> Option<u64> {
    stat_field(pid, 12)
}

/// A `Key: N kB` line of /proc/PID/status, in bytes.
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        Some(v.split_whitespace().next()?.parse::<u64>().ok()? * 1024)
    })
}

/// A `Key: N kB` line of /proc/meminfo, in bytes.
pub fn meminfo_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        Some(v.split_whitespace().next()?.parse::<u64>().ok()? * 1024)
    })
}
