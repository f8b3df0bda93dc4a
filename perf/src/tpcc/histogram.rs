//! A log-linear latency histogram in microseconds (32 buckets per power of
//! two, so a percentile is within 3.2 % of the true value): recorded per
//! terminal, merged at the end. Pure.

/// log2 of the buckets per power of two.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets for every u64 value.
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

/// Latencies in microseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
    max_us: u64,
    sum_us: u128,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram { counts: vec![0; BUCKETS], total: 0, max_us: 0, sum_us: 0 }
    }
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = e - SUB_BITS;
    let mantissa = v >> shift; // SUB..2*SUB
    ((shift as u64 + 1) * SUB + (mantissa - SUB)) as usize
}

/// The largest value that falls into bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let group = i / SUB; // >= 1
    let mantissa = i % SUB + SUB;
    let shift = group - 1;
    (((mantissa + 1) as u128) << shift).saturating_sub(1).min(u64::MAX as u128) as u64
}

impl LatencyHistogram {
    pub fn record(&mut self, us: u64) {
        self.counts[index(us)] += 1;
        self.total += 1;
        self.max_us = self.max_us.max(us);
        self.sum_us += us as u128;
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
        self.sum_us += other.sum_us;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    pub fn mean_us(&self) -> f64 {
        if self.total == 0 { 0.0 } else { self.sum_us as f64 / self.total as f64 }
    }

    /// The value below which a share `q` (0..=1) of the samples fall: the
    /// upper bound of the bucket holding that rank, capped at the maximum.
    /// 0 when empty.
    pub fn percentile_us(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max_us);
            }
        }
        self.max_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let i = index(v);
            assert!(i >= last, "index not monotone at {v}");
            last = i;
            let up = upper(i);
            assert!(up >= v, "value {v} above its bucket's bound {up}");
            // Relative width below 1/32.
            assert!((up - v) as f64 <= v as f64 / 32.0 + 1.0, "bucket of {v} too wide: {up}");
        }
        assert!(index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = LatencyHistogram::default();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        assert_eq!(h.count(), 10_000);
        let p50 = h.percentile_us(0.5);
        assert!((5_000..=5_160).contains(&p50), "p50 {p50}");
        let p99 = h.percentile_us(0.99);
        assert!((9_900..=10_000).contains(&p99), "p99 {p99}");
        assert_eq!(h.percentile_us(1.0), 10_000);
        assert!((h.mean_us() - 5000.5).abs() < 1e-9);
    }

    #[test]
    fn merge_adds_counts() {
        let (mut a, mut b) = (LatencyHistogram::default(), LatencyHistogram::default());
        a.record(10);
        b.record(1_000_000);
        b.record(20);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.max_us(), 1_000_000);
        assert_eq!(a.percentile_us(0.5), 20);
        assert_eq!(LatencyHistogram::default().percentile_us(0.9), 0);
    }
}
