//! DAMOS-like quotas on acting: a byte rate (bytes/s) and a CPU-time share
//! (ms/s), charged per window of `reset_interval`. Pure: time is passed in.
//!
//! As in DAMOS (mm/damon/core.c `damos_set_effective_quota`), the CPU-time
//! quota is turned into an effective byte budget for each window from the
//! throughput measured so far (bytes acted on per CPU time spent acting),
//! starting from DAMOS's guess of 4 MiB per ms; the window's budget is the
//! smaller of that and the byte-rate budget. CPU actually spent is charged
//! too, so a window whose CPU time is used up gives no more bytes even if
//! the estimate was too generous. A window ends after `reset_interval`; if
//! its budget was used up it counts as one exhaustion (DAMOS `qt_exceeds`).
//!
//! `now` is any monotonic clock reading as a [`Duration`] since a fixed
//! origin (e.g. `Instant::now() - start`); tests step it by hand.

use damon_core::{AddrRange, PAGE_SIZE};
use serde::Serialize;
use std::time::Duration;

/// DAMOS's initial throughput guess before anything was measured: `PAGE_SIZE * 1024` bytes per ms.
pub const INITIAL_BYTES_PER_CPU_MS: u64 = 4096 * 1024;
/// The smallest non-zero byte budget per window: one page (DAMOS's `min_region_sz` floor).
pub const MIN_WINDOW_BYTES: u64 = 4096;
/// The shortest window; a zero `reset_interval` is treated as this.
pub const MIN_RESET_INTERVAL: Duration = Duration::from_millis(1);

/// The limits of a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuotaLimits {
    /// Bytes per second (`None` = unlimited).
    pub bytes_per_s: Option<u64>,
    /// CPU milliseconds per second spent acting (`None` = unlimited).
    pub cpu_ms_per_s: Option<u32>,
    /// The charge window.
    pub reset_interval: Duration,
}

impl QuotaLimits {
    pub const UNLIMITED: QuotaLimits =
        QuotaLimits { bytes_per_s: None, cpu_ms_per_s: None, reset_interval: Duration::from_secs(1) };

    pub fn is_unlimited(&self) -> bool {
        self.bytes_per_s.is_none() && self.cpu_ms_per_s.is_none()
    }

    fn interval(&self) -> Duration {
        self.reset_interval.max(MIN_RESET_INTERVAL)
    }

    /// The byte budget of one window from the byte rate alone.
    pub fn window_bytes(&self) -> Option<u64> {
        self.bytes_per_s.map(|b| {
            let v = (u128::from(b) * self.interval().as_nanos() / 1_000_000_000) as u64;
            if b == 0 { 0 } else { v.max(MIN_WINDOW_BYTES) }
        })
    }

    /// The CPU time one window may use.
    pub fn window_cpu(&self) -> Option<Duration> {
        self.cpu_ms_per_s.map(|ms| {
            let ns = u128::from(ms) * 1_000_000 * self.interval().as_nanos() / 1_000_000_000;
            Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
        })
    }
}

impl Default for QuotaLimits {
    fn default() -> QuotaLimits {
        QuotaLimits::UNLIMITED
    }
}

impl From<&conf::Quota> for QuotaLimits {
    fn from(q: &conf::Quota) -> QuotaLimits {
        QuotaLimits {
            bytes_per_s: q.bytes_per_s,
            cpu_ms_per_s: q.cpu_ms_per_s,
            reset_interval: q.reset_interval,
        }
    }
}

/// A quota's use, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct QuotaUsage {
    /// Bytes charged in the current window.
    pub window_bytes: u64,
    pub window_cpu: Duration,
    /// The current window's byte budget (`u64::MAX` when unlimited).
    pub effective_bytes: u64,
    /// Windows that ended.
    pub windows: u64,
    /// Windows that ended with their budget used up (DAMOS `qt_exceeds`).
    pub exhausted_windows: u64,
    pub total_bytes: u64,
    pub total_cpu: Duration,
}

/// A quota's state across windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaState {
    limits: QuotaLimits,
    window_start: Option<Duration>,
    window_bytes: u64,
    window_cpu: Duration,
    effective_bytes: u64,
    windows: u64,
    exhausted_windows: u64,
    total_bytes: u64,
    total_cpu: Duration,
}

impl QuotaState {
    pub fn new(limits: QuotaLimits) -> QuotaState {
        QuotaState {
            limits,
            window_start: None,
            window_bytes: 0,
            window_cpu: Duration::ZERO,
            effective_bytes: u64::MAX,
            windows: 0,
            exhausted_windows: 0,
            total_bytes: 0,
            total_cpu: Duration::ZERO,
        }
    }

    pub fn limits(&self) -> &QuotaLimits {
        &self.limits
    }

    /// Changes the limits; they apply from the next window.
    pub fn set_limits(&mut self, limits: QuotaLimits) {
        self.limits = limits;
    }

    fn exhausted(&self) -> bool {
        self.window_bytes >= self.effective_bytes
            || self.limits.window_cpu().is_some_and(|c| self.window_cpu >= c)
    }

    /// The byte budget of a new window (DAMOS's effective size quota).
    fn effective(&self) -> u64 {
        let mut esz = u64::MAX;
        if let Some(cpu) = self.limits.window_cpu() {
            let est = if self.total_cpu.is_zero() || self.total_bytes == 0 {
                u128::from(INITIAL_BYTES_PER_CPU_MS) * cpu.as_nanos() / 1_000_000
            } else {
                u128::from(self.total_bytes) * cpu.as_nanos() / self.total_cpu.as_nanos()
            };
            esz = u64::try_from(est).unwrap_or(u64::MAX).max(MIN_WINDOW_BYTES);
        }
        if let Some(b) = self.limits.window_bytes() {
            esz = esz.min(b);
        }
        esz
    }

    fn roll(&mut self, now: Duration) {
        let interval = self.limits.interval();
        match self.window_start {
            None => {}
            Some(start) if now < start + interval => return,
            Some(_) => {
                self.windows += 1;
                if self.exhausted() {
                    self.exhausted_windows += 1;
                }
            }
        }
        self.window_start = Some(now);
        self.window_bytes = 0;
        self.window_cpu = Duration::ZERO;
        self.effective_bytes = self.effective();
    }

    /// Bytes that may still be acted on in the window `now` falls in
    /// (`u64::MAX` when unlimited; 0 when the window's bytes or CPU time are used up).
    pub fn budget(&mut self, now: Duration) -> u64 {
        self.roll(now);
        if self.limits.window_cpu().is_some_and(|c| self.window_cpu >= c) {
            return 0;
        }
        self.effective_bytes.saturating_sub(self.window_bytes)
    }

    /// Charges `bytes` acted on and the `cpu` time it took to the current window.
    pub fn charge(&mut self, now: Duration, bytes: u64, cpu: Duration) {
        if self.window_start.is_none() {
            self.roll(now);
        }
        self.window_bytes = self.window_bytes.saturating_add(bytes);
        self.window_cpu += cpu;
        self.total_bytes = self.total_bytes.saturating_add(bytes);
        self.total_cpu += cpu;
    }

    /// When the current window ends (`None` before the first use).
    pub fn window_end(&self) -> Option<Duration> {
        self.window_start.map(|s| s + self.limits.interval())
    }

    pub fn usage(&self) -> QuotaUsage {
        QuotaUsage {
            window_bytes: self.window_bytes,
            window_cpu: self.window_cpu,
            effective_bytes: self.effective_bytes,
            windows: self.windows,
            exhausted_windows: self.exhausted_windows,
            total_bytes: self.total_bytes,
            total_cpu: self.total_cpu,
        }
    }
}

/// The leading ranges that fit in `budget_bytes`, in the given order (the
/// caller ranks them first), the last one cut at a page boundary, as DAMOS
/// splits the region that would overrun its quota.
pub fn take_within_budget(ranges: &[AddrRange], budget_bytes: u64) -> Vec<AddrRange> {
    let mut left = budget_bytes;
    let mut out = Vec::new();
    for r in ranges {
        if left < PAGE_SIZE.min(r.len()) || left == 0 {
            break;
        }
        if r.len() <= left {
            out.push(*r);
            left -= r.len();
        } else {
            let cut = left / PAGE_SIZE * PAGE_SIZE;
            out.push(AddrRange::new(r.start.0, r.start.0 + cut));
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn limits(bytes_per_s: Option<u64>, cpu_ms_per_s: Option<u32>, reset_ms: u64) -> QuotaLimits {
        QuotaLimits { bytes_per_s, cpu_ms_per_s, reset_interval: ms(reset_ms) }
    }

    #[test]
    fn unlimited_never_limits() {
        let mut q = QuotaState::new(QuotaLimits::UNLIMITED);
        assert_eq!(q.budget(ms(0)), u64::MAX);
        q.charge(ms(1), 1 << 40, ms(500));
        assert_eq!(q.budget(ms(2)), u64::MAX - (1 << 40));
        assert_eq!(q.budget(ms(2000)), u64::MAX, "a new window");
        assert_eq!(q.usage().exhausted_windows, 0);
    }

    #[test]
    fn byte_rate_is_per_window_and_resets() {
        // 100 MiB/s in 100 ms windows = 10 MiB per window.
        let mut q = QuotaState::new(limits(Some(100 * MIB), None, 100));
        assert_eq!(q.budget(ms(0)), 10 * MIB);
        q.charge(ms(10), 6 * MIB, Duration::ZERO);
        assert_eq!(q.budget(ms(50)), 4 * MIB);
        q.charge(ms(60), 4 * MIB, Duration::ZERO);
        assert_eq!(q.budget(ms(99)), 0, "used up until the window ends");
        assert_eq!(q.budget(ms(100)), 10 * MIB, "new window");
        let u = q.usage();
        assert_eq!((u.windows, u.exhausted_windows), (1, 1));
        // A window that is not used up does not count as exhausted.
        q.charge(ms(120), MIB, Duration::ZERO);
        assert_eq!(q.budget(ms(250)), 10 * MIB);
        assert_eq!(q.usage().exhausted_windows, 1);
        assert_eq!(q.usage().windows, 2);
        assert_eq!(q.usage().total_bytes, 11 * MIB);
    }

    #[test]
    fn cpu_quota_uses_measured_throughput() {
        // 10 ms/s in 1 s windows: 10 ms of CPU per window.
        let mut q = QuotaState::new(limits(None, Some(10), 1000));
        // Nothing measured yet: DAMOS's guess, 4 MiB per ms.
        assert_eq!(q.budget(ms(0)), 40 * MIB);
        // Measured: 8 MiB took 4 ms → 2 MiB/ms; CPU use is not exhausted yet.
        q.charge(ms(100), 8 * MIB, ms(4));
        assert_eq!(q.budget(ms(200)), 32 * MIB, "this window keeps its estimate");
        // Next window: 2 MiB/ms * 10 ms.
        assert_eq!(q.budget(ms(1000)), 20 * MIB);
        assert_eq!(q.usage().exhausted_windows, 0);
    }

    #[test]
    fn spent_cpu_closes_the_window() {
        let mut q = QuotaState::new(limits(None, Some(10), 1000));
        let _ = q.budget(ms(0));
        q.charge(ms(5), MIB, ms(11)); // far slower than the guess
        assert_eq!(q.budget(ms(6)), 0, "CPU time used up");
        assert_eq!(q.budget(ms(1005)), MIB * 10 / 11, "new estimate: 1 MiB per 11 ms");
        assert_eq!(q.usage().exhausted_windows, 1);
    }

    #[test]
    fn the_smaller_of_both_limits_applies() {
        let mut q = QuotaState::new(limits(Some(MIB), Some(1000), 1000));
        assert_eq!(q.budget(ms(0)), MIB);
    }

    #[test]
    fn tiny_rates_still_allow_a_page_and_zero_allows_nothing() {
        let mut q = QuotaState::new(limits(Some(10), None, 1000));
        assert_eq!(q.budget(ms(0)), 4096);
        let mut z = QuotaState::new(limits(Some(0), None, 1000));
        assert_eq!(z.budget(ms(0)), 0);
    }

    #[test]
    fn zero_interval_is_the_minimum_window() {
        let mut q = QuotaState::new(limits(Some(1_000_000), None, 0));
        assert_eq!(q.budget(ms(0)), 4096, "1 MB/s over 1 ms = 1000 bytes, floored to a page");
        assert_eq!(q.window_end(), Some(ms(1)));
    }

    #[test]
    fn ranges_are_taken_in_order_until_the_budget_is_spent() {
        let r = |s: u64, e: u64| AddrRange::new(s, e);
        let ranges = [r(0x10000, 0x12000), r(0x1000, 0x5000), r(0x40000, 0x41000)];
        assert_eq!(take_within_budget(&ranges, u64::MAX), ranges.to_vec());
        assert_eq!(take_within_budget(&ranges, 0x4000), vec![r(0x10000, 0x12000), r(0x1000, 0x3000)]);
        assert_eq!(take_within_budget(&ranges, 0x2fff), vec![r(0x10000, 0x12000)], "cut at a page boundary");
        assert_eq!(take_within_budget(&ranges, 0x1000), vec![r(0x10000, 0x11000)]);
        assert!(take_within_budget(&ranges, 0xfff).is_empty());
        assert!(take_within_budget(&ranges, 0).is_empty());
    }

    #[test]
    fn conf_quota_converts() {
        let c = conf::Quota {
            bytes_per_s: Some(5),
            cpu_ms_per_s: Some(7),
            reset_interval: ms(250),
            weight_sz_permil: 0,
            weight_nr_accesses_permil: 0,
            weight_age_permil: 0,
        };
        assert_eq!(QuotaLimits::from(&c), limits(Some(5), Some(7), 250));
    }
}
