//! What engines read about processes and the host: which pids a task names
//! (pid, process name with its direct children, cgroup), memory figures from
//! /proc, and which targets are refused (pid 1, kernel threads, etmemd).

use conf::TaskTarget;
use std::collections::BTreeSet;
use std::path::Path;

/// The pids a task resolves to now, and the ones it named but we refuse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub pids: BTreeSet<u32>,
    /// (pid, why it is not monitored)
    pub refused: Vec<(u32, String)>,
}

/// `PF_KTHREAD` in /proc/PID/stat's flags.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Why a pid may not be a target, if it may not.
pub fn refuse_reason(pid: u32) -> Option<String> {
    if pid == 1 {
        return Some("pid 1 (init) is never a target".into());
    }
    if pid == std::process::id() {
        return Some("etmemd does not monitor itself".into());
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let flags = stat_field(&stat, 9)?.parse::<u64>().ok()?;
    (flags & PF_KTHREAD != 0).then(|| format!("pid {pid} is a kernel thread"))
}

/// Field `n` (1-based, as proc(5) counts) of /proc/PID/stat, past the comm.
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the comm.
    after_comm.split_ascii_whitespace().nth(n.checked_sub(3)?)
}

/// The parent pid of a process.
fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_field(&stat, 4)?.parse().ok()
}

fn all_pids() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// Resolve a task's target to pids, as etmem does: a pid as given (if it
/// lives), a name as every process with that exact comm plus their direct
/// children (read from /proc, no pgrep), a cgroup as its member processes.
pub fn resolve(target: &TaskTarget) -> Resolved {
    let mut wanted: BTreeSet<u32> = BTreeSet::new();
    match target {
        TaskTarget::Pid(p) => {
            if Path::new(&format!("/proc/{p}")).exists() {
                wanted.insert(*p);
            }
        }
        TaskTarget::Name(name) => {
            let pids = all_pids();
            let matching: BTreeSet<u32> = pids
                .iter()
                .copied()
                .filter(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim_end_matches('\n') == name)
                })
                .collect();
            if !matching.is_empty() {
                for p in &pids {
                    if ppid(*p).is_some_and(|pp| matching.contains(&pp)) {
                        wanted.insert(*p);
                    }
                }
            }
            wanted.extend(matching);
        }
        TaskTarget::Cgroup(dir) => {
            let dir = if dir.is_absolute() { dir.clone() } else { Path::new("/sys/fs/cgroup").join(dir) };
            if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                wanted.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
    }
    let mut out = Resolved::default();
    for p in wanted {
        match refuse_reason(p) {
            Some(why) => out.refused.push((p, why)),
            None => {
                out.pids.insert(p);
            }
        }
    }
    out
}

/// A process's memory, from /proc/PID/status and smaps_rollup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcMemory {
    pub rss_bytes: u64,
    pub swap_bytes: u64,
    pub anon_huge_bytes: u64,
}

/// A `Key:   123 kB` value of a /proc status-like file, in bytes.
pub fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.split_ascii_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// VmRSS, VmSwap and AnonHugePages of a process (zero when it is gone).
pub fn proc_memory(dir: &Path) -> ProcMemory {
    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(dir.join("smaps_rollup")).unwrap_or_default();
    ProcMemory {
        rss_bytes: kb_field(&status, "VmRSS").unwrap_or(0),
        swap_bytes: kb_field(&status, "VmSwap").unwrap_or(0),
        anon_huge_bytes: kb_field(&rollup, "AnonHugePages").unwrap_or(0),
    }
}

/// The host's memory from /proc/meminfo.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostMemInfo {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
}

pub fn host_memory() -> HostMemInfo {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    HostMemInfo {
        total_bytes: kb_field(&text, "MemTotal").unwrap_or(0),
        free_bytes: kb_field(&text, "MemFree").unwrap_or(0),
        swap_total_bytes: kb_field(&text, "SwapTotal").unwrap_or(0),
        swap_free_bytes: kb_field(&text, "SwapFree").unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_skip_a_comm_with_spaces_and_parens() {
        let stat = "1234 (a (b) c) S 77 1234 1234 0 -1 4194560 100 0 0";
        assert_eq!(stat_field(stat, 3), Some("S"));
        assert_eq!(stat_field(stat, 4), Some("77"));
        assert_eq!(stat_field(stat, 9), Some("4194560"));
    }

    #[test]
    fn kb_fields_parse() {
        let s = "Name:\tx\nVmRSS:\t  2048 kB\nVmSwap:\t0 kB\n";
        assert_eq!(kb_field(s, "VmRSS"), Some(2048 * 1024));
        assert_eq!(kb_field(s, "VmSwap"), Some(0));
        assert_eq!(kb_field(s, "VmPeak"), None);
    }

    #[test]
    fn init_ourselves_and_kernel_threads_are_refused() {
        assert!(refuse_reason(1).is_some());
        assert!(refuse_reason(std::process::id()).is_some());
        // kthreadd is pid 2 on every Linux system.
        assert!(refuse_reason(2).is_some_and(|r| r.contains("kernel thread")));
    }

    #[test]
    fn a_name_resolves_to_the_process_and_its_children() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let r = resolve(&TaskTarget::Name("sleep".into()));
        assert!(r.pids.contains(&child.id()), "{r:?}");
        let r = resolve(&TaskTarget::Pid(child.id()));
        assert_eq!(r.pids.iter().copied().collect::<Vec<_>>(), vec![child.id()]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(resolve(&TaskTarget::Pid(child.id())).pids.is_empty());
    }
}
