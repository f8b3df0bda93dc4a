//! DAMOS access patterns: closed ranges on region size, access count and age,
//! resolved against one snapshot (`__damos_valid_target` without the score check).

use conf::{AccessPattern, Action};
use damon_core::{RegionSnapshot, Snapshot};

use crate::classify::{resolve_accesses, resolve_age};

/// An [`AccessPattern`] with its bounds in the snapshot's raw units: bytes,
/// samples per aggregation interval and aggregation intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedPattern {
    pub min_size_bytes: u64,
    pub max_size_bytes: u64,
    pub min_nr_accesses: u32,
    pub max_nr_accesses: u32,
    pub min_age: u64,
    pub max_age: u64,
}

impl ResolvedPattern {
    pub fn resolve(pattern: &AccessPattern, snapshot: &Snapshot) -> ResolvedPattern {
        let max = snapshot.max_nr_accesses;
        let aggr = snapshot.aggr_interval_us;
        ResolvedPattern {
            min_size_bytes: pattern.min_size_bytes,
            max_size_bytes: pattern.max_size_bytes,
            min_nr_accesses: resolve_accesses(pattern.min_accesses, max),
            max_nr_accesses: resolve_accesses(pattern.max_accesses, max),
            min_age: resolve_age(pattern.min_age, aggr),
            max_age: resolve_age(pattern.max_age, aggr),
        }
    }

    /// Whether the whole region matches: every bound is inclusive, as DAMOS's.
    pub fn matches(&self, region: &RegionSnapshot) -> bool {
        let sz = region.range.len();
        let age = u64::from(region.age);
        (self.min_size_bytes..=self.max_size_bytes).contains(&sz)
            && (self.min_nr_accesses..=self.max_nr_accesses).contains(&region.nr_accesses)
            && (self.min_age..=self.max_age).contains(&age)
    }
}

/// Whether an action gives memory back (ranked coldest first) rather than
/// pulling it closer (ranked hottest first). DAMON's vaddr scores only
/// `pageout` by coldness; we rank every action by the direction it moves
/// memory, which is what "coldest first" and "hottest first" ask for.
pub fn is_reclaim(action: Action) -> bool {
    matches!(action, Action::Pageout | Action::Cold | Action::Nohugepage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{MIB, Region, snap};
    use conf::{AccessBound, AgeBound};
    use std::time::Duration;

    fn pattern() -> AccessPattern {
        AccessPattern {
            min_size_bytes: MIB,
            max_size_bytes: 4 * MIB,
            min_accesses: AccessBound::Count(2),
            max_accesses: AccessBound::Count(5),
            min_age: AgeBound::Aggregations(10),
            max_age: AgeBound::Aggregations(20),
        }
    }

    /// `(start_mib, end_mib, nr, age) -> matches` against [`pattern`].
    fn check(pattern: &AccessPattern, cases: &[(Region, bool)]) {
        for &(region, expect) in cases {
            let s = snap(&[region]);
            let p = ResolvedPattern::resolve(pattern, &s);
            assert_eq!(p.matches(&s.regions[0]), expect, "{region:?}");
        }
    }

    #[test]
    fn scheme_pattern_ranges_are_closed() {
        check(
            &pattern(),
            &[
                ((0, 1, 2, 10), true),  // every lower bound itself
                ((0, 4, 5, 20), true),  // every upper bound itself
                ((0, 5, 3, 15), false), // too large
                ((0, 1, 1, 15), false), // too few accesses
                ((0, 1, 6, 15), false), // too many accesses
                ((0, 1, 3, 9), false),  // too young
                ((0, 1, 3, 21), false), // too old
            ],
        );
    }

    #[test]
    fn scheme_bounds_resolve_against_snapshot() {
        // 25 %..max of 20 samples = 5..20; 1 s..max at 100 ms = 10 aggregations..
        let p = AccessPattern {
            min_size_bytes: 0,
            max_size_bytes: u64::MAX,
            min_accesses: AccessBound::Bp(2500),
            max_accesses: AccessBound::Max,
            min_age: AgeBound::Time(Duration::from_secs(1)),
            max_age: AgeBound::Max,
        };
        check(
            &p,
            &[
                ((0, 1, 5, 10), true),
                ((0, 1, 4, 10), false),
                ((0, 1, 20, 9), false),
                ((0, 1, 20, 99_999), true),
            ],
        );
    }
}
