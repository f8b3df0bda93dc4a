//! DAMOS quotas: the effective size quota of a charge window (bytes, or CPU
//! time turned into bytes with the measured throughput), and the histogram
//! prioritisation that picks what the window can afford, resuming round robin.

use conf::{Action, Quota};
use damon_core::{Addr, AddrRange, PAGE_SIZE};

use crate::classify::{Class, duration_us};
use crate::ranges::addr_plus;
use crate::score::MAX_SCORE;

/// Throughput assumed before any outcome was recorded, in bytes per ms of
/// CPU (DAMOS starts with `PAGE_SIZE * 1024`).
pub const INITIAL_THROUGHPUT_BYTES_PER_MS: u64 = PAGE_SIZE * 1024;

/// Used when a quota's `reset_interval` is zero: a zero-length window would
/// turn every per-second rate into zero bytes.
pub const DEFAULT_RESET_INTERVAL_US: u64 = 1_000_000;

/// The length of a quota's charge window, in µs.
pub fn reset_interval_us(quota: &Quota) -> u64 {
    match duration_us(quota.reset_interval) {
        0 => DEFAULT_RESET_INTERVAL_US,
        us => us,
    }
}

/// DAMOS's effective size quota (`damos_set_effective_quota`) for one window:
/// `bytes_per_s * reset_interval`, and `throughput * cpu_ms_per_s *
/// reset_interval` (at least one page, as in newer kernels) for a CPU quota;
/// the smaller of the two when both are set; `u64::MAX` when neither is.
pub fn effective_size_bytes(quota: &Quota, throughput_bytes_per_ms: u64) -> u64 {
    let reset_us = u128::from(reset_interval_us(quota));
    let mut esz = u64::MAX;
    if let Some(cpu_ms_per_s) = quota.cpu_ms_per_s {
        // ms per window * bytes per ms; ms = cpu_ms_per_s * reset_us / 1e6.
        let bytes = u128::from(cpu_ms_per_s) * reset_us * u128::from(throughput_bytes_per_ms) / 1_000_000;
        esz = u64::try_from(bytes).unwrap_or(u64::MAX).max(PAGE_SIZE);
    }
    if let Some(bytes_per_s) = quota.bytes_per_s {
        let bytes = u128::from(bytes_per_s) * reset_us / 1_000_000;
        esz = esz.min(u64::try_from(bytes).unwrap_or(u64::MAX));
    }
    esz
}

/// One rule's quota accounting across windows.
#[derive(Debug, Clone, Default)]
pub(crate) struct QuotaState {
    window_start_us: Option<u64>,
    /// Effective size quota of the current window (`u64::MAX`: unlimited).
    pub esz: u64,
    /// Bytes charged in the current window.
    pub charged: u64,
    /// Bytes the last plan reserved and no outcome has replaced yet.
    pending: u64,
    /// Where the next selection starts (`charge_addr_from`).
    pub cursor: Option<Addr>,
    /// Windows that ended with the quota used up (`qt_exceeds`).
    pub qt_exceeds: u64,
    pub tried_bytes: u64,
    pub applied_bytes: u64,
    pub cpu_ns: u64,
}

impl QuotaState {
    /// Bytes acted on per ms of CPU, measured from outcomes.
    pub fn throughput_bytes_per_ms(&self) -> u64 {
        if self.cpu_ns == 0 {
            return INITIAL_THROUGHPUT_BYTES_PER_MS;
        }
        let t = u128::from(self.tried_bytes) * 1_000_000 / u128::from(self.cpu_ns);
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// Called once per plan: forgets the previous plan's reservation (an
    /// outcome now refers to this plan; an unreported reservation stays
    /// charged), and starts a new window when `reset_interval` has passed
    /// (or on first use, or when the clock went backwards), recomputing the
    /// effective quota.
    pub fn roll(&mut self, quota: Option<&Quota>, now_us: u64) {
        self.pending = 0;
        let Some(quota) = quota.filter(|q| q.is_limited()) else {
            self.esz = u64::MAX;
            self.charged = 0;
            return;
        };
        let new_window = match self.window_start_us {
            None => true,
            Some(start) => now_us < start || now_us >= start.saturating_add(reset_interval_us(quota)),
        };
        if !new_window {
            return;
        }
        if self.window_start_us.is_some() && self.charged >= self.esz {
            self.qt_exceeds += 1;
        }
        self.window_start_us = Some(now_us);
        self.charged = 0;
        self.pending = 0;
        self.esz = effective_size_bytes(quota, self.throughput_bytes_per_ms());
    }

    pub fn remaining(&self) -> u64 {
        self.esz.saturating_sub(self.charged)
    }

    /// Charges what a plan proposes until an outcome says what was done.
    pub fn reserve(&mut self, bytes: u64) {
        self.charged = self.charged.saturating_add(bytes);
        self.pending = bytes;
    }

    /// Replaces the last reservation with what was really tried, and learns
    /// the throughput (DAMOS's `total_charged_sz / total_charged_ns`).
    pub fn record(&mut self, tried_bytes: u64, applied_bytes: u64, cpu_ns: u64) {
        if self.esz != u64::MAX {
            self.charged = self.charged.saturating_sub(self.pending).saturating_add(tried_bytes);
        }
        self.pending = 0;
        self.tried_bytes = self.tried_bytes.saturating_add(tried_bytes);
        self.applied_bytes = self.applied_bytes.saturating_add(applied_bytes);
        self.cpu_ns = self.cpu_ns.saturating_add(cpu_ns);
    }
}

/// A range a rule could act on, with its priority score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub range: AddrRange,
    pub score: u8,
    pub class: Class,
    pub action: Action,
}

/// What a window's budget affords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selection {
    /// In address order.
    pub chosen: Vec<Candidate>,
    /// Lowest score that may be taken (`quota->min_score`).
    pub min_score: u8,
    /// Where the next selection resumes; `None` when everything eligible fit.
    pub cursor: Option<Addr>,
}

/// DAMOS prioritisation (`damos_adjust_quota`): a histogram of candidate
/// bytes per score gives `min_score`, the highest score at which the bytes
/// scoring at least that much reach `budget`. Everything scoring above
/// `min_score` fits and is taken; the `min_score` tier is taken in address
/// order from `cursor` (wrapping around), and its last piece is cut at a
/// `granularity` boundary so the total never exceeds `budget`.
///
/// DAMOS walks all regions scoring `>= min_score` in address order, so a
/// window can spend its budget on the `min_score` tier before reaching a
/// better region; taking the higher tiers first makes "coldest first" exact.
/// `budget == u64::MAX` takes everything.
pub(crate) fn select(
    mut cands: Vec<Candidate>,
    budget: u64,
    granularity: u64,
    cursor: Option<Addr>,
) -> Selection {
    cands.sort_unstable_by_key(|c| c.range.start);
    if budget == u64::MAX {
        return Selection { chosen: cands, min_score: 0, cursor: None };
    }
    let mut histogram = [0u64; MAX_SCORE as usize + 1];
    for c in &mut cands {
        c.score = c.score.min(MAX_SCORE);
        histogram[usize::from(c.score)] = histogram[usize::from(c.score)].saturating_add(c.range.len());
    }
    let max_score = cands.iter().map(|c| c.score).max().unwrap_or(0);
    let mut min_score = max_score;
    let mut cumulated = 0u64;
    loop {
        cumulated = cumulated.saturating_add(histogram[usize::from(min_score)]);
        if cumulated >= budget || min_score == 0 {
            break;
        }
        min_score -= 1;
    }
    let (mut chosen, tier): (Vec<Candidate>, Vec<Candidate>) =
        cands.into_iter().filter(|c| c.score >= min_score).partition(|c| c.score > min_score);
    if chosen.is_empty() && tier.is_empty() {
        return Selection { chosen, min_score, cursor };
    }

    // Strictly below `budget` by the choice of `min_score`.
    let mut left = budget - chosen.iter().map(|c| c.range.len()).sum::<u64>();
    let mut next_cursor = None;
    for c in rotate(tier, cursor.map(|a| a.align_down(granularity))) {
        let len = c.range.len();
        if len <= left {
            left -= len;
            chosen.push(c);
            if left == 0 {
                next_cursor = Some(c.range.end);
                break;
            }
            continue;
        }
        let take = left / granularity * granularity;
        let cut = addr_plus(c.range.start, take);
        if take > 0 {
            chosen.push(Candidate { range: AddrRange { start: c.range.start, end: cut }, ..c });
        }
        next_cursor = Some(cut);
        break;
    }
    chosen.sort_unstable_by_key(|c| c.range.start);
    Selection { chosen, min_score, cursor: next_cursor }
}

/// Address-ordered candidates reordered to start at `cursor`: the part at
/// or after it first, then the part before it (round robin).
fn rotate(sorted: Vec<Candidate>, cursor: Option<Addr>) -> Vec<Candidate> {
    let Some(at) = cursor else { return sorted };
    let mut after = Vec::with_capacity(sorted.len() + 1);
    let mut before = Vec::new();
    for c in sorted {
        if c.range.end <= at {
            before.push(c);
        } else if c.range.start >= at {
            after.push(c);
        } else {
            after.push(Candidate { range: AddrRange { start: at, end: c.range.end }, ..c });
            before.push(Candidate { range: AddrRange { start: c.range.start, end: at }, ..c });
        }
    }
    after.extend(before);
    after
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{MIB, quota};
    use std::time::Duration;

    fn cand(start_mib: u64, end_mib: u64, score: u8) -> Candidate {
        Candidate {
            range: AddrRange::new(start_mib * MIB, end_mib * MIB),
            score,
            class: Class::Cold,
            action: Action::Pageout,
        }
    }

    fn ranges(sel: &Selection) -> Vec<(u64, u64)> {
        sel.chosen.iter().map(|c| (c.range.start.0, c.range.end.0)).collect()
    }

    #[test]
    fn byte_quota_per_window_is_rate_times_reset_interval() {
        let mut q = quota(Some(10 * MIB), None);
        q.reset_interval = Duration::from_millis(250);
        assert_eq!(effective_size_bytes(&q, INITIAL_THROUGHPUT_BYTES_PER_MS), 10 * MIB / 4);
        q.reset_interval = Duration::ZERO;
        assert_eq!(effective_size_bytes(&q, INITIAL_THROUGHPUT_BYTES_PER_MS), 10 * MIB);
        assert_eq!(effective_size_bytes(&quota(None, None), 1), u64::MAX);
    }

    #[test]
    fn cpu_quota_converts_with_measured_throughput() {
        // 10 ms/s over 1 s windows = 10 ms; at 1 MiB/ms that is 10 MiB.
        let q = quota(None, Some(10));
        assert_eq!(effective_size_bytes(&q, MIB), 10 * MIB);
        // Before any outcome, DAMOS's initial 4 MiB/ms.
        assert_eq!(effective_size_bytes(&q, INITIAL_THROUGHPUT_BYTES_PER_MS), 40 * MIB);
        // Both quotas: the smaller wins.
        assert_eq!(effective_size_bytes(&quota(Some(3 * MIB), Some(10)), MIB), 3 * MIB);
        // A measured throughput of zero still allows one page.
        assert_eq!(effective_size_bytes(&q, 0), PAGE_SIZE);

        let mut st = QuotaState::default();
        assert_eq!(st.throughput_bytes_per_ms(), INITIAL_THROUGHPUT_BYTES_PER_MS);
        st.record(8 * MIB, 8 * MIB, 4_000_000); // 8 MiB in 4 ms of CPU
        assert_eq!(st.throughput_bytes_per_ms(), 2 * MIB);
        st.roll(Some(&q), 0);
        assert_eq!(st.esz, 20 * MIB);
    }

    #[test]
    fn quota_window_resets_after_reset_interval() {
        let q = quota(Some(4 * MIB), None);
        let mut st = QuotaState::default();
        st.roll(Some(&q), 0);
        st.reserve(4 * MIB);
        assert_eq!(st.remaining(), 0);
        st.roll(Some(&q), 999_999);
        assert_eq!((st.remaining(), st.qt_exceeds), (0, 0));
        st.roll(Some(&q), 1_000_000);
        assert_eq!((st.remaining(), st.qt_exceeds), (4 * MIB, 1));
        st.roll(Some(&q), 2_000_000); // nothing charged: not an excess
        assert_eq!(st.qt_exceeds, 1);
    }

    #[test]
    fn outcome_replaces_reservation() {
        let q = quota(Some(10 * MIB), None);
        let mut st = QuotaState::default();
        st.roll(Some(&q), 0);
        st.reserve(6 * MIB);
        assert_eq!(st.remaining(), 4 * MIB);
        // Only 2 MiB were really tried: the window gets 4 MiB back.
        st.record(2 * MIB, MIB, 1000);
        assert_eq!(st.remaining(), 8 * MIB);
        // A further outcome without a reservation adds to the charge.
        st.record(MIB, MIB, 1000);
        assert_eq!(st.remaining(), 7 * MIB);
        assert_eq!((st.tried_bytes, st.applied_bytes), (3 * MIB, 2 * MIB));
    }

    #[test]
    fn quota_takes_highest_scores_first_by_histogram() {
        // Scores 10, 90, 50, 90: budget 3 MiB covers both 90s (2 MiB) and
        // reaches 50 (3 MiB cumulated), so 10 is left out. The 50 tier ends
        // the window: the next one resumes after it.
        let c = vec![cand(0, 1, 10), cand(1, 2, 90), cand(2, 3, 50), cand(3, 4, 90)];
        let sel = select(c, 3 * MIB, PAGE_SIZE, None);
        assert_eq!(sel.min_score, 50);
        assert_eq!(ranges(&sel), [(MIB, 2 * MIB), (2 * MIB, 3 * MIB), (3 * MIB, 4 * MIB)]);
        assert_eq!(sel.cursor, Some(Addr(3 * MIB)));
    }

    #[test]
    fn quota_splits_last_region_at_granularity_boundary() {
        let budget = MIB + 3 * PAGE_SIZE + 100;
        let sel = select(vec![cand(0, 4, 50)], budget, PAGE_SIZE, None);
        assert_eq!(ranges(&sel), [(0, MIB + 3 * PAGE_SIZE)]);
        assert_eq!(sel.cursor, Some(Addr(MIB + 3 * PAGE_SIZE)));
        // With huge-page granularity the cut falls at 2 MiB.
        let sel = select(vec![cand(0, 8, 50)], 5 * MIB, 2 * MIB, None);
        assert_eq!(ranges(&sel), [(0, 4 * MIB)]);
    }

    #[test]
    fn quota_resumes_where_last_window_stopped() {
        // Equal scores, 2 MiB per window over 0..3 MiB and 5..6 MiB:
        // window 1 takes 0..2, window 2 takes 2..3 + 5..6, window 3 wraps to 0..2.
        let c = vec![cand(0, 3, 50), cand(5, 6, 50)];
        let w1 = select(c.clone(), 2 * MIB, PAGE_SIZE, None);
        assert_eq!(ranges(&w1), [(0, 2 * MIB)]);
        let w2 = select(c.clone(), 2 * MIB, PAGE_SIZE, w1.cursor);
        assert_eq!(ranges(&w2), [(2 * MIB, 3 * MIB), (5 * MIB, 6 * MIB)]);
        let w3 = select(c, 2 * MIB, PAGE_SIZE, w2.cursor);
        assert_eq!(ranges(&w3), [(0, 2 * MIB)]);
    }
}
