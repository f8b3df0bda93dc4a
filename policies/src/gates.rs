//! Gates that decide whether reclaim may run now: etmem's sysmem_threshold,
//! swap_threshold and dram_percent rules, and DAMON's free-memory watermarks.

use std::fmt;

use conf::{Percent, Watermarks};
use serde::{Deserialize, Serialize};

use crate::classify::duration_us;

/// A task's memory, from `/proc/PID/status` (summed over the task's pids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TaskMemory {
    /// `VmRSS`, in bytes.
    pub rss_bytes: u64,
    /// `VmSwap`, in bytes.
    pub swap_bytes: u64,
}

/// The host's memory, from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostMemory {
    /// `MemTotal`, in bytes.
    pub total_bytes: u64,
    /// `MemFree`, in bytes.
    pub free_bytes: u64,
}

impl HostMemory {
    /// DAMON's `free_mem_rate`: free memory per mille, rounded down.
    pub fn free_permil(&self) -> Option<u32> {
        ratio(self.free_bytes, self.total_bytes, 1000)
    }

    /// Free memory in basis points, rounded down (for messages).
    pub fn free_bp(&self) -> Option<u32> {
        ratio(self.free_bytes, self.total_bytes, 10_000)
    }
}

fn ratio(part: u64, total: u64, scale: u128) -> Option<u32> {
    if total == 0 {
        return None;
    }
    let r = u128::from(part) * scale / u128::from(total);
    Some(u32::try_from(r).unwrap_or(u32::MAX))
}

/// Why a rule did nothing this time. Shown by `project show` and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Blocked {
    /// MemTotal was reported as 0, so no memory gate can be evaluated.
    HostMemoryUnknown,
    /// etmem `sysmem_threshold`: free memory is not below the threshold.
    EnoughFreeMemory { free_bp: u32, threshold: Percent },
    /// DAMON watermarks: free memory is outside `low..=high`, or the rule is
    /// inactive and free memory has not fallen below `mid`.
    WatermarkInactive { free_permil: u32, high_permil: u32, mid_permil: u32, low_permil: u32 },
    /// etmem `swap_threshold`: the task's RSS is not above it.
    RssNotAboveSwapThreshold { rss_bytes: u64, threshold_bytes: u64 },
    /// etmem's rule without `swap_threshold`: the task already has
    /// `sysmem_threshold` percent of its memory in swap.
    SwapShareReached { rss_bytes: u64, swap_bytes: u64, threshold: Percent },
    /// `keep_in_ram` (etmem `dram_percent`): nothing more may leave RAM.
    KeepInRam { rss_bytes: u64, swap_bytes: u64, keep: Percent },
    /// The quota of the current window is used up.
    QuotaExhausted { esz_bytes: u64, charged_bytes: u64 },
    /// The rule's `apply_interval` has not passed since it last ran.
    NotDue { next_apply_us: u64 },
}

struct Pct(Percent);

impl fmt::Display for Pct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bp = self.0.bp;
        match (bp / 100, bp % 100) {
            (whole, 0) => write!(f, "{whole}%"),
            (whole, frac) => write!(f, "{whole}.{frac:02}%"),
        }
    }
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Blocked::HostMemoryUnknown => write!(f, "host memory unknown (MemTotal is 0)"),
            Blocked::EnoughFreeMemory { free_bp, threshold } => write!(
                f,
                "free memory {} is not below sysmem_threshold {}",
                Pct(Percent { bp: free_bp }),
                Pct(threshold)
            ),
            Blocked::WatermarkInactive { free_permil, high_permil, mid_permil, low_permil } => write!(
                f,
                "watermarks inactive: free {free_permil}‰ (high {high_permil}‰, mid {mid_permil}‰, low {low_permil}‰)"
            ),
            Blocked::RssNotAboveSwapThreshold { rss_bytes, threshold_bytes } => {
                write!(f, "RSS {rss_bytes} B is not above swap_threshold {threshold_bytes} B")
            }
            Blocked::SwapShareReached { rss_bytes, swap_bytes, threshold } => write!(
                f,
                "swap {swap_bytes} B already reaches {} of RSS {rss_bytes} B + swap",
                Pct(threshold)
            ),
            Blocked::KeepInRam { rss_bytes, swap_bytes, keep } => write!(
                f,
                "keep_in_ram {} of RSS {rss_bytes} B + swap {swap_bytes} B leaves nothing to page out",
                Pct(keep)
            ),
            Blocked::QuotaExhausted { esz_bytes, charged_bytes } => {
                write!(f, "quota used: {charged_bytes} B of {esz_bytes} B this window")
            }
            Blocked::NotDue { next_apply_us } => write!(f, "next apply at {next_apply_us} µs"),
        }
    }
}

/// etmem's `check_sysmem_lower_threshold`: reclaim only while
/// `MemFree * 100 / MemTotal < sysmem_threshold`. Compared exactly
/// (`free * 10000 < bp * total`), which for whole percents is etmem's
/// integer test. No threshold: open.
pub fn sysmem_gate(threshold: Option<Percent>, host: &HostMemory) -> Result<(), Blocked> {
    let Some(threshold) = threshold else { return Ok(()) };
    let free_bp = host.free_bp().ok_or(Blocked::HostMemoryUnknown)?;
    let below =
        u128::from(host.free_bytes) * 10_000 < u128::from(threshold.bp) * u128::from(host.total_bytes);
    if below { Ok(()) } else { Err(Blocked::EnoughFreeMemory { free_bp, threshold }) }
}

/// etmem's `check_pidmem_lower_threshold`, per task:
/// - with `swap_threshold`: reclaim only while `VmRSS > swap_threshold`;
/// - without it but with `sysmem_threshold`: only while
///   `(VmRSS + VmSwap) / 100 * sysmem_threshold > VmSwap`, in KiB with
///   etmem's integer rounding (the swapped share stays below the threshold);
/// - with neither: open.
///
/// etmem checks `swap_threshold` only when `sysmem_threshold` is set; here it
/// applies on its own too, as its config documentation promises.
pub fn task_swap_gate(
    swap_threshold_bytes: Option<u64>,
    sysmem_threshold: Option<Percent>,
    task: &TaskMemory,
) -> Result<(), Blocked> {
    if let Some(threshold_bytes) = swap_threshold_bytes {
        return if task.rss_bytes > threshold_bytes {
            Ok(())
        } else {
            Err(Blocked::RssNotAboveSwapThreshold { rss_bytes: task.rss_bytes, threshold_bytes })
        };
    }
    let Some(threshold) = sysmem_threshold else { return Ok(()) };
    let rss_kib = u128::from(task.rss_bytes / 1024);
    let swap_kib = u128::from(task.swap_bytes / 1024);
    // (rss + swap) / 100 * pct, with pct = bp / 100 kept exact for fractions.
    let allowed_kib = (rss_kib + swap_kib) / 100 * u128::from(threshold.bp) / 100;
    if allowed_kib > swap_kib {
        Ok(())
    } else {
        Err(Blocked::SwapShareReached { rss_bytes: task.rss_bytes, swap_bytes: task.swap_bytes, threshold })
    }
}

/// etmem's `dram_percent`: bytes of the task that may still leave RAM,
/// `RSS - (RSS + Swap) * keep / 100`, at least 0. `None`: unlimited.
pub fn swappable_bytes(keep: Option<Percent>, task: &TaskMemory) -> u64 {
    let Some(keep) = keep else { return u64::MAX };
    let all = u128::from(task.rss_bytes) + u128::from(task.swap_bytes);
    let kept = all * u128::from(keep.bp) / 10_000;
    let may = u128::from(task.rss_bytes).saturating_sub(kept);
    u64::try_from(may).unwrap_or(u64::MAX)
}

/// DAMON's watermark activation (`damos_wmark_wait_us`), one per rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatermarkState {
    active: bool,
    /// An inactive rule re-reads the metric only after `interval`.
    next_check_us: u64,
}

impl WatermarkState {
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Updates the activation state at `now_us` and says whether the rule may
    /// act. Free memory per mille above `high` or below `low` deactivates; an
    /// inactive rule stays inactive while free memory is within `mid..=high`;
    /// otherwise the rule is active. An inactive rule keeps its state until
    /// `interval` has passed since its last check.
    pub fn update(&mut self, wm: &Watermarks, now_us: u64, host: &HostMemory) -> Result<(), Blocked> {
        let inactive = |free_permil| Blocked::WatermarkInactive {
            free_permil,
            high_permil: wm.high_permil,
            mid_permil: wm.mid_permil,
            low_permil: wm.low_permil,
        };
        let metric = host.free_permil();
        if !self.active && now_us < self.next_check_us {
            return Err(inactive(metric.unwrap_or(0)));
        }
        let Some(metric) = metric else {
            self.active = false;
            return Err(Blocked::HostMemoryUnknown);
        };
        let wait = now_us.saturating_add(duration_us(wm.interval));
        if metric > wm.high_permil || metric < wm.low_permil {
            self.active = false;
            self.next_check_us = wait;
            return Err(inactive(metric));
        }
        if !self.active && metric >= wm.mid_permil {
            self.next_check_us = wait;
            return Err(inactive(metric));
        }
        self.active = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const GIB: u64 = 1 << 30;

    fn pct(p: u32) -> Percent {
        Percent { bp: p * 100 }
    }

    fn host(total: u64, free: u64) -> HostMemory {
        HostMemory { total_bytes: total, free_bytes: free }
    }

    #[test]
    fn sysmem_threshold_gate_opens_only_below_threshold() {
        // 100 GiB total: 29 % free < 30 % opens; exactly 30 % stays closed.
        assert_eq!(sysmem_gate(Some(pct(30)), &host(100 * GIB, 29 * GIB)), Ok(()));
        assert_eq!(
            sysmem_gate(Some(pct(30)), &host(100 * GIB, 30 * GIB)),
            Err(Blocked::EnoughFreeMemory { free_bp: 3000, threshold: pct(30) })
        );
        // etmem's integer test: 29.99 % free floors to 29 < 30, so open.
        assert_eq!(sysmem_gate(Some(pct(30)), &host(10_000, 2_999)), Ok(()));
        assert_eq!(sysmem_gate(None, &host(100, 100)), Ok(()));
        assert_eq!(sysmem_gate(Some(pct(30)), &host(0, 0)), Err(Blocked::HostMemoryUnknown));
    }

    #[test]
    fn watermarks_activation_state_machine() {
        let wm = Watermarks {
            interval: Duration::from_secs(1),
            high_permil: 500,
            mid_permil: 400,
            low_permil: 50,
        };
        let mut st = WatermarkState::default();
        // (now_s, free per mille, expect active)
        let steps: &[(u64, u64, bool)] = &[
            (0, 450, false), // inactive, within mid..=high: stays inactive
            (1, 600, false), // above high
            (2, 399, true),  // below mid: activates
            (3, 450, true),  // active within low..=high: stays active
            (4, 40, false),  // below low: deactivates (OOM is near, nothing helps)
            (4, 300, false), // before interval has passed: not re-read
            (5, 300, true),  // re-read: below mid, activates
            (6, 501, false), // above high
        ];
        for &(now_s, free, expect) in steps {
            let r = st.update(&wm, now_s * 1_000_000, &host(1000, free));
            assert_eq!(r.is_ok(), expect, "at {now_s} s with {free}‰ free");
            assert_eq!(st.is_active(), expect);
        }
    }

    #[test]
    fn swap_threshold_requires_rss_above_it() {
        let task = TaskMemory { rss_bytes: GIB, swap_bytes: 0 };
        assert_eq!(task_swap_gate(Some(GIB - 1), None, &task), Ok(()));
        assert_eq!(
            task_swap_gate(Some(GIB), Some(pct(50)), &task),
            Err(Blocked::RssNotAboveSwapThreshold { rss_bytes: GIB, threshold_bytes: GIB })
        );
    }

    #[test]
    fn swap_share_rule_when_sysmem_set_without_swap_threshold() {
        // (VmRSS + VmSwap) / 100 * sysmem > VmSwap, in KiB.
        // rss 700 KiB + swap 300 KiB: 1000/100*30 = 300, not > 300: closed.
        let t = |rss_kib: u64, swap_kib: u64| TaskMemory {
            rss_bytes: rss_kib * 1024,
            swap_bytes: swap_kib * 1024,
        };
        assert!(matches!(
            task_swap_gate(None, Some(pct(30)), &t(700, 300)),
            Err(Blocked::SwapShareReached { .. })
        ));
        assert_eq!(task_swap_gate(None, Some(pct(30)), &t(701, 299)), Ok(()));
        // etmem's rounding: (100 + 50) / 100 = 1, * 50 = 50, not > 50: closed,
        // although 150 * 50 % = 75 would allow it.
        assert_eq!(task_swap_gate(None, Some(pct(50)), &t(100, 49)), Ok(()));
        assert!(task_swap_gate(None, Some(pct(50)), &t(100, 50)).is_err());
        // Neither threshold: open.
        assert_eq!(task_swap_gate(None, None, &t(0, 1 << 20)), Ok(()));
    }

    #[test]
    fn keep_in_ram_caps_swappable_bytes() {
        // dram_percent 60: of 1000 + 0, 600 stay, 400 may go; with 300 already
        // swapped, (700+300)*60 % = 600 stay, 100 of the 700 may go.
        assert_eq!(swappable_bytes(Some(pct(60)), &TaskMemory { rss_bytes: 1000, swap_bytes: 0 }), 400);
        assert_eq!(swappable_bytes(Some(pct(60)), &TaskMemory { rss_bytes: 700, swap_bytes: 300 }), 100);
        assert_eq!(swappable_bytes(Some(pct(60)), &TaskMemory { rss_bytes: 500, swap_bytes: 500 }), 0);
        assert_eq!(swappable_bytes(None, &TaskMemory { rss_bytes: 5, swap_bytes: 5 }), u64::MAX);
    }

    #[test]
    fn blocked_reasons_read_well() {
        assert_eq!(
            Blocked::EnoughFreeMemory { free_bp: 4550, threshold: pct(30) }.to_string(),
            "free memory 45.50% is not below sysmem_threshold 30%"
        );
    }
}
