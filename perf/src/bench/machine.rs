//! What machine a benchmark ran on: CPUs, memory, kernel, THP and zswap
//! settings and the load other processes put on it, as a markdown list.

use std::path::Path;

/// The machine, as far as the numbers depend on it.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_total_bytes: u64,
    pub mem_available_bytes: u64,
    pub kernel: String,
    /// `/sys/kernel/mm/transparent_hugepage/enabled`, e.g. `always [madvise] never`.
    pub thp_enabled: String,
    /// `/sys/module/zswap/parameters/enabled` (`Y`/`N`), or "absent".
    pub zswap: String,
    /// The compressors zram offers (from a device's `comp_algorithm`), when known.
    pub zram_compressors: Option<String>,
    /// `/proc/loadavg` when described.
    pub loadavg: String,
}

fn read_trim(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn meminfo_bytes(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

impl Machine {
    /// Reads the machine's description now.
    pub fn describe() -> Machine {
        let meminfo = read_trim("/proc/meminfo").unwrap_or_default();
        let cpuinfo = read_trim("/proc/cpuinfo").unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
                .unwrap_or_else(|| "unknown".into()),
            mem_total_bytes: meminfo_bytes(&meminfo, "MemTotal:"),
            mem_available_bytes: meminfo_bytes(&meminfo, "MemAvailable:"),
            kernel: read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
            thp_enabled: read_trim("/sys/kernel/mm/transparent_hugepage/enabled")
                .unwrap_or_else(|| "absent".into()),
            zswap: read_trim("/sys/module/zswap/parameters/enabled").unwrap_or_else(|| "absent".into()),
            zram_compressors: None,
            loadavg: read_trim("/proc/loadavg").unwrap_or_default(),
        }
    }

    /// The description as a markdown bullet list.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "- CPUs: {} x {}\n- memory: {} total, {} available at start\n- kernel: {}\n\
             - THP: `{}`\n- zswap enabled: {}\n",
            self.cpus,
            self.cpu_model,
            super::human_bytes(self.mem_total_bytes),
            super::human_bytes(self.mem_available_bytes),
            self.kernel,
            self.thp_enabled,
            self.zswap
        );
        if let Some(z) = &self.zram_compressors {
            s.push_str(&format!("- zram compressors offered: `{z}`\n"));
        }
        s.push_str(&format!(
            "- load average at start (1, 5, 15 min; other work on the machine): {}\n",
            self.loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(", ")
        ));
        s
    }
}

/// The THP mode now (`/sys/kernel/mm/transparent_hugepage/enabled`), for an
/// "at end" line: other programs on a shared machine may change it meanwhile.
pub fn thp_now() -> String {
    read_trim("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_else(|| "absent".into())
}

/// `/proc/loadavg`'s first three fields, for an "at end" line.
pub fn loadavg_now() -> String {
    read_trim("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(", ")
}
