//! DAMON's priority scores: `damon_hot_score` (mm/damon/ops-common.c) and the
//! cold score `99 - hot`, used to rank regions when a quota cannot take them all.

use conf::Quota;
use damon_core::{RegionSnapshot, Snapshot};
use serde::{Deserialize, Serialize};

/// The highest priority score (`DAMOS_MAX_SCORE`).
pub const MAX_SCORE: u8 = 99;

/// `DAMON_MAX_SUBSCORE`: frequency and age subscores are in 0..=100.
const MAX_SUBSCORE: i64 = 100;
/// `DAMON_MAX_AGE_IN_LOG`: ages count up to 2^32 seconds.
const MAX_AGE_IN_LOG: i64 = 32;

/// Prioritisation weights, DAMON's `weight_nr_accesses` and `weight_age`
/// (`weight_sz` is unused in the kernel too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    pub nr_accesses_permil: u32,
    pub age_permil: u32,
}

impl Weights {
    /// Equal weights, used to rank decisions of rules without a quota.
    pub const EQUAL: Weights = Weights { nr_accesses_permil: 1000, age_permil: 1000 };

    pub fn of(quota: &Quota) -> Weights {
        Weights { nr_accesses_permil: quota.weight_nr_accesses_permil, age_permil: quota.weight_age_permil }
    }
}

/// How hot a region is, 0..=99, exactly as `damon_hot_score` computes it:
/// a frequency subscore (`nr_accesses * 100 / max_nr_accesses`) and an age
/// subscore (log2 of the age in seconds, negated when the region is not
/// accessed at all, so an old idle region is colder than a young one),
/// weighted and scaled to 0..=99.
pub fn hot_score(region: &RegionSnapshot, snapshot: &Snapshot, weights: Weights) -> u8 {
    let max = i64::from(snapshot.max_nr_accesses.max(1));
    // The page engine's score can exceed its nominal maximum only through a
    // caller's mistake; clamp so the score stays in range.
    let freq_subscore = (i64::from(region.nr_accesses) * MAX_SUBSCORE / max).min(MAX_SUBSCORE);

    let age_us = u128::from(region.age) * u128::from(snapshot.aggr_interval_us);
    let mut age_in_sec = age_us / 1_000_000;
    let mut age_in_log: i64 = 0;
    while age_in_log < MAX_AGE_IN_LOG && age_in_sec != 0 {
        age_in_log += 1;
        age_in_sec >>= 1;
    }
    // If frequency is 0, higher age means it is colder.
    if freq_subscore == 0 {
        age_in_log = -age_in_log;
    }
    let age_subscore = (age_in_log + MAX_AGE_IN_LOG) * MAX_SUBSCORE / MAX_AGE_IN_LOG / 2;

    let w_freq = i64::from(weights.nr_accesses_permil);
    let w_age = i64::from(weights.age_permil);
    let mut hotness = w_freq * freq_subscore + w_age * age_subscore;
    if w_freq + w_age > 0 {
        hotness /= w_freq + w_age;
    }
    let score = hotness * i64::from(MAX_SCORE) / MAX_SUBSCORE;
    // In 0..=99 by construction; the clamp documents it for the cast.
    score.clamp(0, i64::from(MAX_SCORE)) as u8
}

/// How cold a region is: `DAMOS_MAX_SCORE - hot_score`, DAMON's
/// `damon_cold_score`.
pub fn cold_score(region: &RegionSnapshot, snapshot: &Snapshot, weights: Weights) -> u8 {
    MAX_SCORE - hot_score(region, snapshot, weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use damon_core::AddrRange;

    fn snap(max: u32, aggr_us: u64) -> Snapshot {
        Snapshot { time_us: 0, aggr_interval_us: aggr_us, max_nr_accesses: max, regions: vec![] }
    }

    fn region(nr: u32, age: u32) -> RegionSnapshot {
        RegionSnapshot { range: AddrRange::new(0, 4096), nr_accesses: nr, age }
    }

    /// Hand-computed with the kernel formula: max 20 (5 ms / 100 ms),
    /// weights 1:1.
    #[test]
    fn hot_score_matches_damon_hot_score() {
        let s = snap(20, 100_000);
        let w = Weights::EQUAL;
        // freq 50; age 100 aggrs = 10 s -> log 4 -> (4+32)*100/32/2 = 56;
        // hotness (50+56)/2 = 53; 53*99/100 = 52.
        assert_eq!(hot_score(&region(10, 100), &s, w), 52);
        // freq 100, age 0 -> subscore 50: (100+50)/2 = 75 -> 74.
        assert_eq!(hot_score(&region(20, 0), &s, w), 74);
        // Only frequency counts.
        let w = Weights { nr_accesses_permil: 1000, age_permil: 0 };
        assert_eq!(hot_score(&region(20, 1000), &s, w), 99);
        // No weights at all: every region scores 0, as in the kernel.
        let w = Weights { nr_accesses_permil: 0, age_permil: 0 };
        assert_eq!(hot_score(&region(20, 1000), &s, w), 0);
    }

    #[test]
    fn zero_frequency_makes_age_count_as_colder() {
        let s = snap(20, 1_000_000);
        let w = Weights::EQUAL;
        // Idle for 1 s vs idle for 1024 s: log 1 vs log 11.
        let young = hot_score(&region(0, 1), &s, w);
        let old = hot_score(&region(0, 1024), &s, w);
        // (0 + (32-1)*100/64)/2 = 24 -> 23; (0 + (32-11)*100/64)/2 = 16 -> 15.
        assert_eq!((young, old), (23, 15));
        // While an accessed region gets hotter with age.
        assert!(hot_score(&region(1, 1024), &s, w) > hot_score(&region(1, 1), &s, w));
    }

    #[test]
    fn cold_score_is_99_minus_hot_score() {
        let s = snap(20, 100_000);
        for (nr, age) in [(0, 0), (0, 5000), (7, 3), (20, 100)] {
            let r = region(nr, age);
            assert_eq!(
                u32::from(cold_score(&r, &s, Weights::EQUAL)) + u32::from(hot_score(&r, &s, Weights::EQUAL)),
                99
            );
        }
    }
}
