//! Property tests of the region invariants over random mappings, attributes,
//! access traces and mapping changes, through the monitor's sample-level API.
//!
//! What DAMON really guarantees, and so what is asserted:
//! - regions are sorted, non-empty, aligned, never overlap, and cover the
//!   target's monitoring ranges exactly (so total size is conserved by every
//!   merge and split, and changes only at mapping updates);
//! - `max_nr_regions` holds after every aggregation, provided it leaves room
//!   for a full merge (max >= 2 * min + a few: merges stop at the size limit);
//!   an update may exceed it until the next aggregation;
//! - `min_nr_regions` is NOT a bound on the count: mainline enforces it only
//!   as a merge size limit (total / min), so what holds is that no merge makes
//!   a region larger than that limit (regions from the init or an update can
//!   be larger); with strict min_nr_regions every region is at most the
//!   (page-aligned) limit after each aggregation, which still allows fewer
//!   than min regions when total / min is not a page multiple.

#![allow(clippy::unwrap_used)]

use damon_core::ops::sim::intersect_sorted;
use damon_core::regions::normalize_ranges;
use damon_core::{AddrRange, Monitor, MonitorAttrs, PAGE_SIZE, RangeLayout, TargetId};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

const P: u64 = PAGE_SIZE;

/// Sorted mappings with gaps: (gap pages, size pages) pairs from a base.
fn mappings_strategy() -> impl Strategy<Value = Vec<AddrRange>> {
    prop::collection::vec((0u64..2000, 1u64..3000), 1..8).prop_map(|parts| {
        let mut at = 0x1000 * P;
        parts
            .into_iter()
            .map(|(gap, size)| {
                at += gap * P;
                let r = AddrRange::new(at, at + size * P);
                at += size * P;
                r
            })
            .collect()
    })
}

#[derive(Debug, Clone)]
struct Case {
    mappings: Vec<AddrRange>,
    later_mappings: Vec<AddrRange>,
    min: u32,
    extra_max: u32,
    strict: bool,
    exact: bool,
    seed: u64,
    hot_per_mille: Vec<u16>,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        mappings_strategy(),
        mappings_strategy(),
        3u32..40,
        10u32..300,
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
        prop::collection::vec(0u16..=1000, 1..6),
    )
        .prop_map(|(mappings, later_mappings, min, extra_max, strict, exact, seed, hot_per_mille)| {
            Case { mappings, later_mappings, min, extra_max, strict, exact, seed, hot_per_mille }
        })
}

fn union(regions: &[damon_core::Region]) -> Vec<AddrRange> {
    normalize_ranges(&regions.iter().map(|r| r.range).collect::<Vec<_>>(), P)
}

fn check_shape(regions: &[damon_core::Region], ranges: &[AddrRange], min_sz: u64) {
    for r in regions {
        assert!(!r.is_empty(), "empty region {}", r.range);
        assert_eq!(r.range.start.0 % min_sz, 0, "unaligned {}", r.range);
        assert_eq!(r.range.end.0 % min_sz, 0, "unaligned {}", r.range);
    }
    for w in regions.windows(2) {
        assert!(w[0].range.end <= w[1].range.start, "overlap or disorder: {} {}", w[0].range, w[1].range);
    }
    assert_eq!(union(regions), ranges, "regions must cover the monitoring ranges exactly");
}

fn run_case(c: &Case) {
    let max = 2 * c.min + 8 + c.extra_max;
    let attrs = MonitorAttrs {
        min_nr_regions: c.min,
        max_nr_regions: max,
        strict_min_nr_regions: c.strict,
        update_interval_us: 500_000, // 100 samples
        ..MonitorAttrs::default()
    };
    let layout = if c.exact { RangeLayout::Exact } else { RangeLayout::ThreeRegions };
    // Exact layout: each range needs a region, and ranges never merge.
    let max = if c.exact {
        max.max(u32::try_from(c.mappings.len() + c.later_mappings.len()).unwrap())
    } else {
        max
    };
    let mut m = Monitor::new(MonitorAttrs { max_nr_regions: max, ..attrs }, c.seed).unwrap();
    let id = TargetId(1);
    m.add_target_with_layout(id, &c.mappings, layout).unwrap();
    let mut ranges = layout.ranges(&c.mappings, P);
    let mut rng = Pcg64Mcg::seed_from_u64(c.seed ^ 0x5eed);
    // Regions never grow beyond the largest of: every size limit in force so
    // far, and every region an init or update created.
    let largest = |m: &Monitor| m.regions(id).unwrap().iter().map(|r| r.len()).max().unwrap_or(0);
    let mut bound = largest(&m).max(m.region_sz_limit());
    check_shape(m.regions(id).unwrap(), &ranges, P);
    let mut updates = 0;

    for _ in 0..260 {
        m.prepare_sample();
        let regions = m.regions(id).unwrap();
        // Access probability depends on where the sampled page is: a few
        // bands with their own hotness.
        let accessed: Vec<bool> = regions
            .iter()
            .map(|r| {
                let band = (r.sampling_addr.0 / (512 * P)) as usize % c.hot_per_mille.len();
                rng.random_range(0..1000) < c.hot_per_mille[band]
            })
            .collect();
        m.record(id, &accessed).unwrap();
        let total_before: u64 = m.regions(id).unwrap().iter().map(|r| r.len()).sum();
        let out = m.finish_sample();
        let regions = m.regions(id).unwrap();
        check_shape(regions, &ranges, P);
        assert_eq!(regions.iter().map(|r| r.len()).sum::<u64>(), total_before, "merge/split conserve size");

        if let Some(snaps) = &out.aggregated {
            let snap = &snaps[0].1;
            // Snapshot: merged regions, counts within the window's maximum.
            assert!(snap.regions.iter().all(|r| r.nr_accesses <= snap.max_nr_accesses));
            assert_eq!(snap.total_bytes(), total_before);
            assert!(m.nr_regions() <= max as usize, "{} regions > max {max}", m.nr_regions());
            if c.strict {
                let limit = m.region_sz_limit();
                assert!(regions.iter().all(|r| r.len() <= limit), "strict: a region above {limit}");
            }
            bound = bound.max(m.region_sz_limit());
            assert!(regions.iter().all(|r| r.len() <= bound), "a merge went above the size limit");
            for r in regions {
                assert_eq!(r.nr_accesses, 0);
                assert_eq!(r.nr_accesses_bp, r.last_nr_accesses * 10_000);
            }
        }
        if out.update_due {
            updates += 1;
            let maps = if updates % 2 == 1 { &c.later_mappings } else { &c.mappings };
            m.update_target(id, maps).unwrap();
            ranges = layout.ranges(maps, P);
            check_shape(m.regions(id).unwrap(), &ranges, P);
            bound = bound.max(largest(&m)).max(m.region_sz_limit());
        }
    }
    assert_eq!(updates, 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn core_region_invariants_hold_over_random_traces(c in case_strategy()) {
        run_case(&c);
    }

    #[test]
    fn core_vaddr_ranges_cover_every_mapping(maps in mappings_strategy()) {
        let ranges = RangeLayout::ThreeRegions.ranges(&maps, P);
        prop_assert!(ranges.len() <= 3 && !ranges.is_empty());
        // Every mapped byte is inside a monitoring range.
        let norm = normalize_ranges(&maps, P);
        let covered: u64 = intersect_sorted(&norm, &ranges).iter().map(AddrRange::len).sum();
        prop_assert_eq!(covered, norm.iter().map(AddrRange::len).sum::<u64>());
        // The ranges span from the first mapping to the last.
        prop_assert_eq!(ranges[0].start, norm[0].start);
        prop_assert_eq!(ranges[ranges.len() - 1].end, norm[norm.len() - 1].end);
    }
}
