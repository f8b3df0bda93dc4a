//! Once a second, in a thread: mariadbd's VmRSS and VmSwap, the system's
//! MemTotal - MemFree, the CPU the daemon (and mariadbd) used since the last
//! sample, and optionally AnonHugePages and the zram devices' RAM.

use super::os;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One sample.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub t_s: f64,
    #[serde(skip)]
    pub at: Option<Instant>,
    pub rss_kib: u64,
    pub swap_kib: u64,
    /// MemTotal - MemFree.
    pub sys_used_kib: u64,
    /// MemTotal - MemAvailable.
    pub sys_unavailable_kib: u64,
    /// The daemon's CPU since the previous sample, in % of one CPU.
    pub daemon_cpu_pct: Option<f64>,
    pub db_cpu_pct: Option<f64>,
    /// mariadbd's AnonHugePages (smaps_rollup), when asked for.
    pub anon_huge_kib: Option<u64>,
    /// RAM the zram devices use (mm_stat mem_used_total), when there are any.
    pub zram_used_bytes: Option<u64>,
}

/// What to sample.
#[derive(Debug, Clone)]
pub struct SamplerConfig {
    pub db_pid: u32,
    pub daemon_pid: Option<u32>,
    pub interval: Duration,
    /// Read smaps_rollup (a page-table walk of mariadbd) every this many samples.
    pub smaps_every: Option<u32>,
}

/// A running sampler.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    samples: Arc<Mutex<Vec<Sample>>>,
    zram: Arc<Mutex<Vec<String>>>,
}

/// `key:   123 kB` from a /proc status-like file.
pub fn field_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// utime + stime, in clock ticks, of /proc/PID/stat.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn read(path: impl Into<PathBuf>) -> Option<String> {
    std::fs::read_to_string(path.into()).ok()
}

fn ticks_of(pid: u32) -> Option<u64> {
    cpu_ticks(&read(format!("/proc/{pid}/stat"))?)
}

impl Sampler {
    pub fn start(cfg: SamplerConfig) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let zram: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let (s2, samples2, zram2) = (stop.clone(), samples.clone(), zram.clone());
        let handle = std::thread::spawn(move || {
            let tick = os::clock_ticks_per_s() as f64;
            let t0 = Instant::now();
            let mut last = (Instant::now(), cfg.daemon_pid.and_then(ticks_of), ticks_of(cfg.db_pid));
            let mut n: u64 = 0;
            while !s2.load(Ordering::Relaxed) {
                let next = t0 + cfg.interval * (n as u32 + 1);
                while Instant::now() < next {
                    if s2.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep((next - Instant::now()).min(Duration::from_millis(100)));
                }
                n += 1;
                let now = Instant::now();
                let dt = now.duration_since(last.0).as_secs_f64();
                let pct = |before: Option<u64>, after: Option<u64>| match (before, after) {
                    (Some(b), Some(a)) if dt > 0.0 => Some(a.saturating_sub(b) as f64 / tick / dt * 100.0),
                    _ => None,
                };
                let daemon_ticks = cfg.daemon_pid.and_then(ticks_of);
                let db_ticks = ticks_of(cfg.db_pid);
                let status = read(format!("/proc/{}/status", cfg.db_pid)).unwrap_or_default();
                let meminfo = read("/proc/meminfo").unwrap_or_default();
                let total = field_kib(&meminfo, "MemTotal").unwrap_or(0);
                let anon_huge_kib =
                    cfg.smaps_every.filter(|e| n.is_multiple_of(u64::from(*e))).and_then(|_| {
                        field_kib(&read(format!("/proc/{}/smaps_rollup", cfg.db_pid))?, "AnonHugePages")
                    });
                let devs = zram2.lock().map(|d| d.clone()).unwrap_or_default();
                let zram_used_bytes = (!devs.is_empty()).then(|| {
                    devs.iter()
                        .filter_map(|d| {
                            let name = d.trim_start_matches("/dev/");
                            let stat = read(format!("/sys/block/{name}/mm_stat"))?;
                            stat.split_whitespace().nth(2)?.parse::<u64>().ok()
                        })
                        .sum()
                });
                let s = Sample {
                    t_s: now.duration_since(t0).as_secs_f64(),
                    at: Some(now),
                    rss_kib: field_kib(&status, "VmRSS").unwrap_or(0),
                    swap_kib: field_kib(&status, "VmSwap").unwrap_or(0),
                    sys_used_kib: total.saturating_sub(field_kib(&meminfo, "MemFree").unwrap_or(0)),
                    sys_unavailable_kib: total
                        .saturating_sub(field_kib(&meminfo, "MemAvailable").unwrap_or(0)),
                    daemon_cpu_pct: pct(last.1, daemon_ticks),
                    db_cpu_pct: pct(last.2, db_ticks),
                    anon_huge_kib,
                    zram_used_bytes,
                };
                last = (now, daemon_ticks, db_ticks);
                if let Ok(mut v) = samples2.lock() {
                    v.push(s);
                }
            }
        });
        Sampler { stop, handle: Some(handle), samples, zram }
    }

    /// The zram devices (`/dev/zramN`) whose RAM to sample from now on.
    pub fn set_zram(&self, devices: Vec<String>) {
        if let Ok(mut d) = self.zram.lock() {
            *d = devices;
        }
    }

    /// Stop sampling and return the samples.
    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.samples.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_fields() {
        let status = "Name:\tmariadbd\nVmRSS:\t  123456 kB\nVmSwap:\t       0 kB\n";
        assert_eq!(field_kib(status, "VmRSS"), Some(123456));
        assert_eq!(field_kib(status, "VmSwap"), Some(0));
        assert_eq!(field_kib(status, "VmHWM"), None);
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 3 0";
        assert_eq!(cpu_ticks(stat), Some(281));
    }

    #[test]
    fn samples_this_process() {
        let s = Sampler::start(SamplerConfig {
            db_pid: std::process::id(),
            daemon_pid: Some(std::process::id()),
            interval: Duration::from_millis(50),
            smaps_every: Some(1),
        });
        std::thread::sleep(Duration::from_millis(300));
        let v = s.finish();
        assert!(v.len() >= 3, "{} samples", v.len());
        assert!(v.iter().all(|x| x.rss_kib > 0 && x.sys_used_kib > 0));
        assert!(v.iter().all(|x| x.daemon_cpu_pct.is_some() && x.anon_huge_kib.is_some()));
    }
}
