//! Readings from /proc about a process: fault counters, RSS and swap.

use std::io;

/// Counters of /proc/PID/stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcStat {
    /// Minor faults (no I/O: page found in RAM or the swap cache).
    pub minflt: u64,
    /// Major faults (the page was read back, from zram here).
    pub majflt: u64,
}

/// Parses the text of /proc/PID/stat (fields after the command name's ')').
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(3) ppid pgrp session tty_nr tpgid flags minflt(10) cminflt majflt(12).
    Some(ProcStat { minflt: f.get(7)?.parse().ok()?, majflt: f.get(9)?.parse().ok()? })
}

pub fn proc_stat(pid: u32) -> io::Result<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "cannot parse /proc/PID/stat"))
}

/// Memory figures of /proc/PID/status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcStatus {
    pub vm_rss_bytes: u64,
    pub vm_swap_bytes: u64,
}

/// Parses the text of /proc/PID/status.
pub fn parse_status(text: &str) -> ProcStatus {
    let kib = |key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    ProcStatus { vm_rss_bytes: kib("VmRSS:"), vm_swap_bytes: kib("VmSwap:") }
}

pub fn proc_status(pid: u32) -> io::Result<ProcStatus> {
    Ok(parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status"))?))
}

/// This process's VmSwap (for buffers the benchmark pages out itself).
pub fn self_swap_bytes() -> io::Result<u64> {
    Ok(parse_status(&std::fs::read_to_string("/proc/self/status")?).vm_swap_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_command_with_spaces_and_parens() {
        let text = "4242 (etmem (wl) x) S 1 4242 4242 0 -1 4194560 1234 0 56 0 10 3 0 0 20 0 2 0 100";
        assert_eq!(parse_stat(text), Some(ProcStat { minflt: 1234, majflt: 56 }));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_rss_and_swap() {
        let text = "Name:\twl\nVmRSS:\t  204800 kB\nVmSwap:\t    1024 kB\n";
        assert_eq!(
            parse_status(text),
            ProcStatus { vm_rss_bytes: 204_800 * 1024, vm_swap_bytes: 1024 * 1024 }
        );
    }
}
