//! Classification: every region of a snapshot is cold, warm or hot, from an
//! access-count watermark and age thresholds; hot runs old enough become THP-eligible.

use std::time::Duration;

use conf::{AccessBound, AgeBound, Policy, ThpMinClass};
use damon_core::{AddrRange, RegionSnapshot, Snapshot};
use serde::{Deserialize, Serialize};

use crate::ranges::{HPAGE_SIZE, huge_inward};

/// What the policy thinks of some memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Class {
    /// Accessed at most the cold watermark, for at least the cold age.
    Cold,
    /// Neither hot nor cold.
    Warm,
    /// Accessed at least the hot watermark, for at least the hot age.
    Hot,
    /// Whole 2 MiB units of hot memory (of warm too, with `thp_min_class =
    /// "warm"`) old and large enough for a huge page. Only decisions carry
    /// this class; a region is at most [`Class::Hot`].
    ThpEligible,
}

/// The policy's thresholds resolved against one snapshot (its maximum count
/// and its aggregation interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Hot when `nr_accesses >= hot_min_accesses` ...
    pub hot_min_accesses: u32,
    /// ... and `age * aggr_interval >= hot_min_age_us`.
    pub hot_min_age_us: u64,
    /// Cold when `nr_accesses <= cold_max_accesses` ...
    pub cold_max_accesses: u32,
    /// ... and `age * aggr_interval >= cold_min_age_us`.
    pub cold_min_age_us: u64,
    /// Hot (or warm, per `thp_min_class`) regions at least this old may get huge pages.
    pub thp_min_age_us: u64,
    /// A THP-eligible run must cover at least this many bytes of whole units.
    pub thp_min_size_bytes: u64,
}

impl Thresholds {
    pub fn resolve(policy: &Policy, snapshot: &Snapshot) -> Thresholds {
        Thresholds {
            hot_min_accesses: resolve_accesses(policy.hot_min_accesses, snapshot.max_nr_accesses),
            hot_min_age_us: duration_us(policy.hot_min_age),
            cold_max_accesses: resolve_accesses(policy.cold_max_accesses, snapshot.max_nr_accesses),
            cold_min_age_us: duration_us(policy.cold_min_age),
            thp_min_age_us: duration_us(policy.thp_min_age),
            thp_min_size_bytes: policy.thp_min_size_bytes,
        }
    }

    /// The class of one region. A region that meets both the hot and the cold
    /// rule (overlapping watermarks) is hot: keeping memory is the safe error.
    pub fn class_of(&self, region: &RegionSnapshot, aggr_interval_us: u64) -> Class {
        let age_us = region_age_us(region, aggr_interval_us);
        if region.nr_accesses >= self.hot_min_accesses && age_us >= self.hot_min_age_us {
            Class::Hot
        } else if region.nr_accesses <= self.cold_max_accesses && age_us >= self.cold_min_age_us {
            Class::Cold
        } else {
            Class::Warm
        }
    }

    /// Hot and old enough for a huge page.
    fn thp_age_reached(&self, region: &RegionSnapshot, aggr_interval_us: u64) -> bool {
        region_age_us(region, aggr_interval_us) >= self.thp_min_age_us
    }
}

/// An [`AccessBound`] as a count: `Count` as is, `Bp` as
/// `floor(max * bp / 10000)` (damo's percent conversion), `Max` as `max`.
pub fn resolve_accesses(bound: AccessBound, max_nr_accesses: u32) -> u32 {
    match bound {
        AccessBound::Count(n) => n,
        AccessBound::Bp(bp) => {
            let n = u64::from(max_nr_accesses) * u64::from(bp) / 10_000;
            u32::try_from(n).unwrap_or(u32::MAX)
        }
        AccessBound::Max => max_nr_accesses,
    }
}

/// How many accesses in an aggregation interval settle every access-count
/// decision of `policy` and `schemes`: once a region has shown this many, no
/// further check can change whether it is cold (`> cold_max_accesses`), hot
/// (`>= hot_min_accesses`, when the policy acts on hot memory: THP promotion
/// or prefetch) or inside a scheme's access range. The region engine stops
/// checking a region there (`max_probed_accesses` unset, refault probe): the
/// decisions stay exactly those of checking every sample. 0 when no count
/// below `max_nr_accesses` settles them (check every sample).
pub fn settled_after(policy: &Policy, schemes: &[conf::Scheme], max_nr_accesses: u32) -> u32 {
    let acc = |b: AccessBound| resolve_accesses(b, max_nr_accesses);
    let mut need = acc(policy.cold_max_accesses).saturating_add(1);
    if policy.promote_thp || policy.prefetch_warm {
        need = need.max(acc(policy.hot_min_accesses));
    }
    for s in schemes {
        need = need.max(acc(s.pattern.min_accesses));
        let max = acc(s.pattern.max_accesses);
        if max < max_nr_accesses {
            need = need.max(max + 1);
        }
    }
    if need >= max_nr_accesses { 0 } else { need.max(1) }
}

/// An [`AgeBound`] in aggregation intervals: `Time` as
/// `floor(time / aggr_interval)` (damo's conversion), `Max` as `u64::MAX`.
pub fn resolve_age(bound: AgeBound, aggr_interval_us: u64) -> u64 {
    match bound {
        AgeBound::Aggregations(n) => n,
        AgeBound::Time(d) => duration_us(d) / aggr_interval_us.max(1),
        AgeBound::Max => u64::MAX,
    }
}

/// A duration in µs, saturating.
pub(crate) fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// How long a region's access count has stayed about the same, in µs.
pub(crate) fn region_age_us(region: &RegionSnapshot, aggr_interval_us: u64) -> u64 {
    u64::from(region.age).saturating_mul(aggr_interval_us)
}

/// Bytes per class in one snapshot. `hot + warm + cold` is the snapshot's
/// total; THP-eligible bytes are a part of the hot bytes (of hot + warm with
/// `thp_min_class = "warm"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClassTotals {
    pub hot_bytes: u64,
    pub warm_bytes: u64,
    pub cold_bytes: u64,
    pub thp_eligible_bytes: u64,
}

impl ClassTotals {
    pub fn total_bytes(&self) -> u64 {
        self.hot_bytes + self.warm_bytes + self.cold_bytes
    }
}

/// The classes of a snapshot's regions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// One class per region, parallel to `Snapshot::regions` (never `ThpEligible`).
    pub classes: Vec<Class>,
    /// Whole 2 MiB units of hot memory (hot or warm, per `thp_min_class`) at
    /// least `thp_min_age` old, in runs of at least `thp_min_size_bytes`,
    /// sorted and disjoint. Adjacent eligible regions are joined first, so a
    /// unit split between two regions still counts.
    pub thp_eligible: Vec<AddrRange>,
    pub totals: ClassTotals,
}

/// Classifies every region of `snapshot` under `policy`.
pub fn classify(policy: &Policy, snapshot: &Snapshot) -> Classification {
    let thr = Thresholds::resolve(policy, snapshot);
    let aggr = snapshot.aggr_interval_us;
    let classes: Vec<Class> = snapshot.regions.iter().map(|r| thr.class_of(r, aggr)).collect();
    let min_size = thr.thp_min_size_bytes.max(HPAGE_SIZE);
    let promoted = |class: Class| match policy.thp_min_class {
        ThpMinClass::Hot => class == Class::Hot,
        ThpMinClass::Warm => class != Class::Cold,
    };
    let thp_eligible = aligned_runs(&snapshot.regions, min_size, |i, r| {
        promoted(classes[i]) && thr.thp_age_reached(r, aggr)
    });

    let mut totals = ClassTotals::default();
    for (r, class) in snapshot.regions.iter().zip(&classes) {
        let len = r.range.len();
        match class {
            Class::Hot | Class::ThpEligible => totals.hot_bytes += len,
            Class::Warm => totals.warm_bytes += len,
            Class::Cold => totals.cold_bytes += len,
        }
    }
    totals.thp_eligible_bytes = thp_eligible.iter().map(AddrRange::len).sum();
    Classification { classes, thp_eligible, totals }
}

/// Runs of address-adjacent regions that satisfy `pred`, shrunk to whole
/// huge pages, kept when at least `min_size` bytes remain.
pub(crate) fn aligned_runs(
    regions: &[RegionSnapshot],
    min_size: u64,
    pred: impl Fn(usize, &RegionSnapshot) -> bool,
) -> Vec<AddrRange> {
    let mut runs: Vec<AddrRange> = Vec::new();
    let mut open: Option<AddrRange> = None;
    for (i, r) in regions.iter().enumerate() {
        if !pred(i, r) {
            runs.extend(open.take());
            continue;
        }
        open = match open {
            Some(run) if run.end == r.range.start => Some(AddrRange { start: run.start, end: r.range.end }),
            Some(run) => {
                runs.push(run);
                Some(r.range)
            }
            None => Some(r.range),
        };
    }
    runs.extend(open);
    runs.into_iter().filter_map(huge_inward).filter(|r| r.len() >= min_size).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{MIB, Region, policy, snap};

    #[test]
    fn settled_after_is_the_largest_count_a_decision_still_needs() {
        let mut p = policy(); // cold <= 1, hot >= 10
        assert_eq!(settled_after(&p, &[], 20), 2, "cold only: 2 accesses rule cold out");
        p.cold_max_accesses = AccessBound::Count(0);
        assert_eq!(settled_after(&p, &[], 20), 1);
        p.promote_thp = true;
        assert_eq!(settled_after(&p, &[], 20), 10, "hot decides promotion: 10 settle it");
        assert_eq!(settled_after(&p, &[], 10), 0, "10 of 10 samples: nothing to save");
        p.promote_thp = false;
        let scheme = |min, max| conf::Scheme {
            pattern: conf::AccessPattern {
                min_accesses: AccessBound::Count(min),
                max_accesses: max,
                ..conf::AccessPattern::default()
            },
            action: conf::Action::Pageout,
            quota: None,
            watermarks: None,
            apply_interval: None,
        };
        assert_eq!(settled_after(&p, &[scheme(4, AccessBound::Max)], 20), 4);
        assert_eq!(settled_after(&p, &[scheme(0, AccessBound::Count(6))], 20), 7);
        assert_eq!(settled_after(&p, &[scheme(0, AccessBound::Bp(5000))], 20), 11);
        p.cold_max_accesses = AccessBound::Max;
        assert_eq!(settled_after(&p, &[], 20), 0);
    }

    /// Data-driven: regions as `(start_mib, end_mib, nr_accesses, age)` with
    /// max_nr_accesses 20 and a 100 ms aggregation interval; the policy is
    /// [`policy`] (hot >= 10 for 1 s, cold <= 1 for 2 s).
    fn check(p: &Policy, regions: &[Region], expect: &[Class]) {
        let s = snap(regions);
        let got = classify(p, &s);
        assert_eq!(got.classes, expect, "regions {regions:?}");
    }

    #[test]
    fn hot_when_accesses_reach_watermark_for_hot_min_age() {
        check(&policy(), &[(0, 1, 10, 10), (1, 2, 20, 500)], &[Class::Hot, Class::Hot]);
    }

    #[test]
    fn hot_needs_hot_min_age() {
        check(&policy(), &[(0, 1, 20, 9)], &[Class::Warm]);
    }

    #[test]
    fn cold_when_accesses_at_most_watermark_for_cold_min_age() {
        check(&policy(), &[(0, 1, 0, 20), (1, 2, 1, 20)], &[Class::Cold, Class::Cold]);
    }

    #[test]
    fn cold_needs_cold_min_age() {
        check(&policy(), &[(0, 1, 0, 19)], &[Class::Warm]);
    }

    #[test]
    fn warm_between_watermarks() {
        check(&policy(), &[(0, 1, 2, 1000), (1, 2, 9, 1000)], &[Class::Warm, Class::Warm]);
    }

    #[test]
    fn hot_wins_when_watermarks_overlap() {
        let mut p = policy();
        p.cold_max_accesses = AccessBound::Count(15);
        check(&p, &[(0, 1, 12, 100)], &[Class::Hot]);
    }

    #[test]
    fn bp_bound_resolves_against_max_nr_accesses_rounding_down() {
        assert_eq!(resolve_accesses(AccessBound::Bp(5000), 20), 10);
        assert_eq!(resolve_accesses(AccessBound::Bp(3333), 20), 6);
        assert_eq!(resolve_accesses(AccessBound::Bp(10_000), 20), 20);
        let mut p = policy();
        p.hot_min_accesses = AccessBound::Bp(7500); // 15 of 20
        check(&p, &[(0, 1, 14, 100), (1, 2, 15, 100)], &[Class::Warm, Class::Hot]);
    }

    #[test]
    fn max_bound_means_engine_maximum() {
        assert_eq!(resolve_accesses(AccessBound::Max, 36), 36);
        let mut p = policy();
        p.hot_min_accesses = AccessBound::Max;
        check(&p, &[(0, 1, 19, 100), (1, 2, 20, 100)], &[Class::Warm, Class::Hot]);
    }

    #[test]
    fn ages_convert_with_aggr_interval() {
        // The same region is cold under a 100 ms interval (20 * 100 ms = 2 s)
        // and warm under a 50 ms one (1 s < 2 s).
        let p = policy();
        let mut s = snap(&[(0, 1, 0, 20)]);
        assert_eq!(classify(&p, &s).classes, [Class::Cold]);
        s.aggr_interval_us = 50_000;
        assert_eq!(classify(&p, &s).classes, [Class::Warm]);
        assert_eq!(resolve_age(AgeBound::Time(Duration::from_millis(250)), 100_000), 2);
        assert_eq!(resolve_age(AgeBound::Aggregations(7), 100_000), 7);
        assert_eq!(resolve_age(AgeBound::Max, 100_000), u64::MAX);
    }

    #[test]
    fn thp_eligible_needs_thp_min_age() {
        // Hot (age 1 s) but thp_min_age is 5 s = 50 aggregations.
        let p = policy();
        let young = classify(&p, &snap(&[(0, 8, 20, 49)]));
        assert_eq!(young.classes, [Class::Hot]);
        assert!(young.thp_eligible.is_empty());
        let old = classify(&p, &snap(&[(0, 8, 20, 50)]));
        assert_eq!(old.thp_eligible, [AddrRange::new(0, 8 * MIB)]);
    }

    #[test]
    fn thp_eligible_covers_whole_aligned_units_across_adjacent_regions() {
        // Two adjacent hot regions 1..3 MiB and 3..7 MiB: joined 1..7 MiB,
        // whole units 2..6 MiB. A warm region and a gap break the run.
        let p = policy();
        let c = classify(
            &p,
            &snap(&[(1, 3, 20, 100), (3, 7, 15, 100), (7, 8, 0, 0), (10, 14, 20, 100), (14, 15, 0, 100)]),
        );
        assert_eq!(c.thp_eligible, [AddrRange::new(2 * MIB, 6 * MIB), AddrRange::new(10 * MIB, 14 * MIB)]);
        assert_eq!(c.totals.thp_eligible_bytes, 8 * MIB);
    }

    #[test]
    fn thp_min_class_warm_makes_everything_not_cold_eligible() {
        // Hot 0..4, warm (few accesses) 4..8, warm (idle, too young to be
        // cold) 8..12, cold 12..16, hot 16..20.
        let regions = [(0, 4, 20, 100), (4, 8, 5, 100), (8, 12, 0, 19), (12, 16, 0, 20), (16, 20, 20, 100)];
        let mut p = policy();
        p.thp_min_age = Duration::ZERO;
        let hot = classify(&p, &snap(&regions));
        assert_eq!(hot.thp_eligible, [AddrRange::new(0, 4 * MIB), AddrRange::new(16 * MIB, 20 * MIB)]);
        p.thp_min_class = ThpMinClass::Warm;
        let warm = classify(&p, &snap(&regions));
        assert_eq!(warm.classes, hot.classes, "the classes themselves do not change");
        assert_eq!(warm.thp_eligible, [AddrRange::new(0, 12 * MIB), AddrRange::new(16 * MIB, 20 * MIB)]);
        assert_eq!(warm.totals.thp_eligible_bytes, 16 * MIB);
        // thp_min_age still applies to warm regions (5 s = 50 aggregations).
        p.thp_min_age = Duration::from_secs(5);
        let young = classify(&p, &snap(&[(0, 4, 20, 100), (4, 8, 5, 49)]));
        assert_eq!(young.thp_eligible, [AddrRange::new(0, 4 * MIB)]);
    }

    #[test]
    fn thp_eligible_needs_thp_min_size() {
        let mut p = policy();
        p.thp_min_size_bytes = 6 * MIB;
        let c = classify(&p, &snap(&[(0, 4, 20, 100), (4, 5, 0, 100), (6, 12, 20, 100)]));
        assert_eq!(c.thp_eligible, [AddrRange::new(6 * MIB, 12 * MIB)]);
    }

    #[test]
    fn class_totals_add_up() {
        let s = snap(&[(0, 1, 20, 100), (1, 3, 5, 100), (3, 7, 0, 100), (8, 12, 20, 100)]);
        let c = classify(&policy(), &s);
        assert_eq!(
            c.totals,
            ClassTotals {
                hot_bytes: 5 * MIB,
                warm_bytes: 2 * MIB,
                cold_bytes: 4 * MIB,
                thp_eligible_bytes: 4 * MIB
            }
        );
        assert_eq!(c.totals.total_bytes(), s.total_bytes());
    }
}
