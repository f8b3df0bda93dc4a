//! Monitoring-intervals auto-tuning (`intervals_goal`, kernel 6.15+) and the
//! feedback loop it uses (`damon_feed_loop_next_input`), ported from core.c.

use crate::regions::Region;

/// The feedback loop's fixed goal score: 10 000 bp = "exactly on target".
pub const FEED_LOOP_GOAL: u64 = 10_000;

/// `damon_feed_loop_next_input`: the next input that should move `score`
/// towards [`FEED_LOOP_GOAL`], assuming score grows with input:
/// `next = max(last * (2 - score / goal), 10000)`, saturating.
pub fn feed_loop_next_input(last_input: u64, score: u64) -> u64 {
    const MIN_INPUT: u64 = 10_000;
    let goal = FEED_LOOP_GOAL;
    if score == goal {
        return last_input;
    }
    if score >= goal * 2 {
        return MIN_INPUT;
    }
    let over = score > goal;
    let diff = score.abs_diff(goal);
    let compensation =
        if last_input < u64::MAX / diff { last_input * diff / goal } else { last_input / goal * diff };
    if over {
        return last_input.saturating_sub(compensation).max(MIN_INPUT);
    }
    last_input.saturating_add(compensation)
}

/// `mult_frac(x, n, d)` without overflow.
fn mult_frac(x: u64, n: u64, d: u64) -> u64 {
    u64::try_from(u128::from(x) * u128::from(n) / u128::from(d.max(1))).unwrap_or(u64::MAX)
}

/// `damon_get_intervals_score`: observed access events (bytes x accesses)
/// against the goal's share of the maximum possible, in bp (10 000 = on goal).
pub fn intervals_score<'a>(
    regions: impl Iterator<Item = &'a Region>,
    aggr_samples: u64,
    access_bp: u64,
) -> u64 {
    let mut max_events: u128 = 0;
    let mut events: u128 = 0;
    for r in regions {
        let sz = u128::from(r.len());
        max_events += sz * u128::from(aggr_samples);
        events += sz * u128::from(r.nr_accesses);
    }
    let target = (max_events * u128::from(access_bp) / 10_000).max(1);
    u64::try_from(events * 10_000 / target).unwrap_or(u64::MAX)
}

/// `damon_get_intervals_adaptation_bp`: the factor (bp) to scale the sample
/// interval by. Too few accesses seen (score < goal) gives > 10 000 (longer
/// intervals); too many gives 5 000..10 000 (shrinks at most 2x per step).
pub fn adaptation_bp(score_bp: u64) -> u64 {
    let bp = feed_loop_next_input(100_000_000, score_bp) / 10_000;
    if bp <= 10_000 { 5_000 + bp / 2 } else { bp }
}

/// `kdamond_tune_intervals`'s arithmetic: the new sample interval, clamped.
pub fn tuned_sample_interval_us(sample_us: u64, adaptation_bp: u64, min_us: u64, max_us: u64) -> u64 {
    mult_frac(sample_us, adaptation_bp, 10_000).min(max_us).max(min_us)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AddrRange;

    #[test]
    fn feed_loop_moves_towards_goal() {
        assert_eq!(feed_loop_next_input(50_000, 10_000), 50_000);
        assert_eq!(feed_loop_next_input(50_000, 20_000), 10_000, "2x over goal: minimum input");
        // half the goal: input grows by half
        assert_eq!(feed_loop_next_input(50_000, 5_000), 75_000);
        // 1.5x the goal: input shrinks by half
        assert_eq!(feed_loop_next_input(50_000, 15_000), 25_000);
        assert_eq!(feed_loop_next_input(12_000, 19_000), 10_000, "never below the minimum");
        assert_eq!(feed_loop_next_input(u64::MAX, 0), u64::MAX, "saturates");
    }

    #[test]
    fn adaptation_direction() {
        assert_eq!(adaptation_bp(10_000), 10_000, "on goal: no change");
        assert_eq!(adaptation_bp(0), 20_000, "no accesses seen: double the interval");
        assert!(adaptation_bp(5_000) > 10_000, "too few accesses: grow");
        assert!(adaptation_bp(15_000) < 10_000, "too many accesses: shrink");
        assert_eq!(adaptation_bp(30_000), 5_000, "shrink at most 2x");
    }

    #[test]
    fn score_is_accessed_share_against_goal() {
        let mut a = Region::new(AddrRange::new(0, 4096));
        a.nr_accesses = 20;
        let b = Region::new(AddrRange::new(4096, 4096 * 4));
        // 1 of 4 pages fully accessed = 25 % of the maximum; goal 4 % → 6.25x.
        assert_eq!(intervals_score([a, b].iter(), 20, 400), 62_500);
    }

    #[test]
    fn tuned_interval_is_clamped() {
        assert_eq!(tuned_sample_interval_us(5_000, 20_000, 5_000, 8_000), 8_000);
        assert_eq!(tuned_sample_interval_us(5_000, 5_000, 4_000, 8_000), 4_000);
        assert_eq!(tuned_sample_interval_us(5_000, 12_000, 1, 1_000_000), 6_000);
    }
}
