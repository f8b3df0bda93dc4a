//! What engines read about processes and the host: which pids a task names
//! (pid, process name with its direct children, cgroup), memory figures from
//! /proc, and which targets are refused (pid 1, kernel threads, etmemd)
//! unless a task sets `allow_special_target`.

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

/// The task key that lets a task target pid 1, kernel threads and etmemd.
pub const ALLOW_SPECIAL_KEY: &str = "allow_special_target";

/// What makes a pid a special target (init, etmemd itself, a kernel
/// thread), if it is one. Acting on these can take the whole host down
/// (init's memory paged out under pressure, a kernel thread has no user
/// memory to manage, etmemd would page out its own working set), so they are
/// refused unless the task says otherwise.
pub fn special_target(pid: u32) -> Option<String> {
    if pid == 1 {
        return Some("pid 1 is init".into());
    }
    if pid == std::process::id() {
        return Some(format!("pid {pid} is etmemd itself"));
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let flags = stat_field(&stat, 9)?.parse::<u64>().ok()?;
    (flags & PF_KTHREAD != 0).then(|| format!("pid {pid} is a kernel thread"))
}

/// Why a pid may not be a target by default, naming the key that allows it.
pub fn refuse_reason(pid: u32) -> Option<String> {
    special_target(pid).map(|what| {
        format!(
            "{what}: refused as a target unless the task sets {ALLOW_SPECIAL_KEY} = true (root clients only)"
        )
    })
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

/// Resolve a task to pids: its target, with special targets (see
/// [`special_target`]) kept only when the task sets `allow_special_target`.
pub fn resolve_task(task: &conf::Task) -> Resolved {
    resolve(&task.target, task.allow_special_target)
}

/// Resolve a task's target to pids, as etmem does: a pid as given (if it
/// lives), a name as every process with that exact comm plus their direct
/// children (read from /proc, no pgrep), a cgroup as its member processes.
/// Special targets go to `refused` unless `allow_special`.
pub fn resolve(target: &TaskTarget, allow_special: bool) -> Resolved {
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
        match refuse_reason(p).filter(|_| !allow_special) {
            Some(why) => out.refused.push((p, why)),
            None => {
                out.pids.insert(p);
            }
        }
    }
    out
}

/// `(state, start time)` of a process, from /proc/PID/stat fields 3 and 22
/// (the start time in clock ticks after boot).
fn state_and_start(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat_field(&stat, 3)?.chars().next()?;
    let start = stat_field(&stat, 22)?.parse().ok()?;
    Some((state, start))
}

/// What a task's engine thread remembers from one resolve to the next, so
/// that a `pid` task stays on the process it found first: once that process
/// has exited, a new process handed the same pid is refused, never monitored
/// (ARCHITECTURE.md: a reused pid is never touched; issue 10). Processes that
/// have exited but are not reaped yet (zombies) are left out of every task:
/// they have no memory left, and trying to monitor one fails at each resolve.
#[derive(Debug, Clone, Default)]
pub struct PidHistory {
    /// (pid, start time) of the process a `pid` task found first.
    first: Option<(u32, u64)>,
}

impl PidHistory {
    /// Leave zombies and a reused pid out of `resolved` (the latter goes to `refused`).
    pub fn filter(&mut self, target: &TaskTarget, resolved: &mut Resolved) {
        let mut reused = None;
        resolved.pids.retain(|&pid| {
            // Gone meanwhile: opening it fails, as for any vanished process.
            let Some((state, start)) = state_and_start(pid) else { return true };
            if matches!(state, 'Z' | 'X') {
                return false;
            }
            if *target == TaskTarget::Pid(pid) {
                match self.first {
                    None => self.first = Some((pid, start)),
                    Some((_, first)) if first != start => {
                        reused = Some(pid);
                        return false;
                    }
                    Some(_) => {}
                }
            }
            true
        });
        if let Some(pid) = reused {
            resolved.refused.push((
                pid,
                format!(
                    "pid {pid} was reused: the task's process exited and another process has its pid now \
                     (a pid task never follows a reused pid)"
                ),
            ));
        }
    }
}

/// A process's memory, from /proc/PID/status and smaps_rollup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcMemory {
    pub rss_bytes: u64,
    pub swap_bytes: u64,
    pub anon_huge_bytes: u64,
    /// `THP_enabled: 0` in status: the process turned THP off for itself
    /// (`prctl(PR_SET_THP_DISABLE)`, as mariadbd does), so the kernel
    /// refuses every `MADV_COLLAPSE` on it.
    pub thp_disabled: bool,
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
    proc_status_memory(dir, anon_huge_bytes(dir))
}

/// VmRSS and VmSwap from /proc/PID/status (O(1) in the kernel), with an
/// `anon_huge_bytes` read earlier: smaps_rollup walks every page table of
/// the process (tens of ms at a few GiB), too dear for every aggregation.
pub fn proc_status_memory(dir: &Path, anon_huge_bytes: u64) -> ProcMemory {
    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    ProcMemory {
        rss_bytes: kb_field(&status, "VmRSS").unwrap_or(0),
        swap_bytes: kb_field(&status, "VmSwap").unwrap_or(0),
        anon_huge_bytes,
        thp_disabled: status.lines().any(|l| l.strip_prefix("THP_enabled:").is_some_and(|v| v.trim() == "0")),
    }
}

/// AnonHugePages from /proc/PID/smaps_rollup (a page-table walk: O(RSS)).
pub fn anon_huge_bytes(dir: &Path) -> u64 {
    let rollup = std::fs::read_to_string(dir.join("smaps_rollup")).unwrap_or_default();
    kb_field(&rollup, "AnonHugePages").unwrap_or(0)
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
        assert!(refuse_reason(1).is_some_and(|r| r.contains("init") && r.contains(ALLOW_SPECIAL_KEY)));
        assert!(refuse_reason(std::process::id()).is_some_and(|r| r.contains("etmemd itself")));
        // kthreadd is pid 2 on every Linux system.
        assert!(refuse_reason(2).is_some_and(|r| r.contains("kernel thread")));
        // Above PID_MAX_LIMIT: never a live pid, nothing to refuse.
        assert_eq!(refuse_reason(4_194_304), None);
    }

    #[test]
    fn allow_special_target_keeps_special_pids() {
        for pid in [1, 2, std::process::id()] {
            let strict = resolve(&TaskTarget::Pid(pid), false);
            assert!(strict.pids.is_empty() && strict.refused.iter().any(|(p, _)| *p == pid), "{strict:?}");
            let mut task = conf::Task::new("p", "e", "t", TaskTarget::Pid(pid));
            assert_eq!(resolve_task(&task), strict);
            task.allow_special_target = true;
            let allowed = resolve_task(&task);
            assert!(allowed.pids.contains(&pid) && allowed.refused.is_empty(), "{allowed:?}");
        }
    }

    #[test]
    fn a_reused_pid_and_zombies_are_left_out() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let pid = child.id();
        let target = TaskTarget::Pid(pid);
        let mut history = PidHistory::default();
        let mut r = resolve(&target, false);
        history.filter(&target, &mut r);
        assert!(r.pids.contains(&pid), "{r:?}");
        // The same process again: kept.
        let mut r = resolve(&target, false);
        history.filter(&target, &mut r);
        assert!(r.pids.contains(&pid), "{r:?}");
        // Another process with this pid (another start time): refused, with the reason.
        let (_, start) = state_and_start(pid).expect("stat");
        let mut other = PidHistory { first: Some((pid, start + 1)) };
        let mut r = resolve(&target, false);
        other.filter(&target, &mut r);
        assert!(r.pids.is_empty(), "{r:?}");
        assert!(r.refused.iter().any(|(p, why)| *p == pid && why.contains("reused")), "{r:?}");
        // Killed, not reaped: a zombie is no target.
        child.kill().expect("kill");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while state_and_start(pid).is_some_and(|(s, _)| s != 'Z') && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut r = resolve(&target, false);
        assert!(r.pids.contains(&pid), "the zombie is still in /proc: {r:?}");
        history.filter(&target, &mut r);
        assert!(r.pids.is_empty() && r.refused.is_empty(), "{r:?}");
        let _ = child.wait();
    }

    #[test]
    fn a_name_resolves_to_the_process_and_its_children() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let r = resolve(&TaskTarget::Name("sleep".into()), false);
        assert!(r.pids.contains(&child.id()), "{r:?}");
        let r = resolve(&TaskTarget::Pid(child.id()), false);
        assert_eq!(r.pids.iter().copied().collect::<Vec<_>>(), vec![child.id()]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(resolve(&TaskTarget::Pid(child.id()), false).pids.is_empty());
    }
}
