//! Property tests of the planner on random snapshots, policies, schemes and
//! caller range sets, over several windows with random outcomes.

use std::time::Duration;

use conf::{AccessBound, AccessPattern, Action, AgeBound, Percent, Policy, Quota, Scheme, Watermarks};
use damon_core::{AddrRange, PAGE_SIZE, RegionSnapshot, Snapshot};
use policies::{HPAGE_SIZE, HostMemory, Outcome, PlanInput, Planner, TaskMemory};
use proptest::prelude::*;

/// Regions as (gap_pages, len_pages, nr_accesses, age), laid out from 64 MiB.
fn snapshot_strategy() -> impl Strategy<Value = Snapshot> {
    prop::collection::vec((0u64..3, 1u64..3000, 0u32..=20, 0u32..2000), 1..24).prop_map(|specs| {
        let mut at = 64 << 20;
        let mut regions = Vec::new();
        for (gap, len, nr_accesses, age) in specs {
            // Some gaps are whole huge pages, most regions are adjacent.
            at += gap * gap * HPAGE_SIZE / 2;
            let end = at + len * PAGE_SIZE;
            regions.push(RegionSnapshot { range: AddrRange::new(at, end), nr_accesses, age });
            at = end;
        }
        Snapshot { time_us: 0, aggr_interval_us: 100_000, max_nr_accesses: 20, regions }
    })
}

fn access_bound() -> impl Strategy<Value = AccessBound> {
    prop_oneof![
        (0u32..=21).prop_map(AccessBound::Count),
        (0u32..=10_000).prop_map(AccessBound::Bp),
        Just(AccessBound::Max)
    ]
}

fn quota_strategy() -> impl Strategy<Value = Quota> {
    (
        prop::option::of(0u64..(64 << 20)),
        prop::option::of(0u32..20),
        prop_oneof![Just(0u64), Just(250), Just(1000)],
        0u32..2000,
        0u32..2000,
    )
        .prop_map(|(bytes_per_s, cpu_ms_per_s, reset_ms, w_nr, w_age)| Quota {
            bytes_per_s,
            cpu_ms_per_s,
            reset_interval: Duration::from_millis(reset_ms),
            weight_nr_accesses_permil: w_nr,
            weight_age_permil: w_age,
            ..Quota::default()
        })
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Willneed),
        Just(Action::Cold),
        Just(Action::Pageout),
        Just(Action::Hugepage),
        Just(Action::Nohugepage),
        Just(Action::Stat),
    ]
}

fn scheme_strategy() -> impl Strategy<Value = Scheme> {
    (access_bound(), access_bound(), 0u64..50, prop::option::of(quota_strategy()), action(), any::<bool>())
        .prop_map(|(min_accesses, max_accesses, min_age, quota, action, timed)| Scheme {
            pattern: AccessPattern {
                min_accesses,
                max_accesses,
                min_age: AgeBound::Aggregations(min_age),
                ..AccessPattern::default()
            },
            action,
            quota,
            watermarks: None,
            apply_interval: timed.then_some(Duration::from_millis(300)),
        })
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    (
        (access_bound(), access_bound(), 0u64..5, 0u64..5, 0u64..10),
        (prop::option::of(prop_oneof![Just(Action::Pageout), Just(Action::Cold)]), any::<[bool; 3]>()),
        (
            prop::option::of(0u32..=10_000),
            prop::option::of(0u32..=10_000),
            prop::option::of(0u64..(256 << 20)),
        ),
        (quota_strategy(), any::<bool>()),
    )
        .prop_map(
            |((hot, cold, hot_age, cold_age, thp_age), (cold_action, flags), gates, (quota, wm))| Policy {
                hot_min_accesses: hot,
                hot_min_age: Duration::from_secs(hot_age),
                cold_max_accesses: cold,
                cold_min_age: Duration::from_secs(cold_age),
                thp_min_age: Duration::from_secs(thp_age),
                thp_min_size_bytes: HPAGE_SIZE,
                thp_max_ptes_none: 0,
                cold_action,
                promote_thp: flags[0],
                demote_thp: flags[1],
                prefetch_warm: flags[2],
                sysmem_threshold: gates.0.map(|bp| Percent { bp }),
                keep_in_ram: gates.1.map(|bp| Percent { bp }),
                swap_threshold_bytes: gates.2,
                watermarks: wm.then_some(Watermarks {
                    interval: Duration::from_millis(500),
                    high_permil: 900,
                    mid_permil: 600,
                    low_permil: 10,
                }),
                quota,
                ..Policy::default()
            },
        )
}

/// Page-aligned sub-ranges picked by fractions of the snapshot's span.
fn pick_ranges(s: &Snapshot, picks: &[(u16, u16)]) -> Vec<AddrRange> {
    let (Some(first), Some(last)) = (s.regions.first(), s.regions.last()) else { return vec![] };
    let lo = first.range.start.0;
    let span_pages = (last.range.end.0 - lo) / PAGE_SIZE;
    picks
        .iter()
        .map(|&(at, len)| {
            let start = lo + u64::from(at) * span_pages / 65_536 * PAGE_SIZE;
            let end = (start + (u64::from(len) % 1024 + 1) * PAGE_SIZE).min(last.range.end.0.max(start));
            AddrRange::new(start, end)
        })
        .collect()
}

fn overlaps_any(r: &AddrRange, set: &[AddrRange]) -> bool {
    set.iter().any(|s| s.intersect(r).is_some())
}

/// Bytes of `r` covered by the snapshot's regions.
fn covered(r: &AddrRange, s: &Snapshot) -> u64 {
    s.regions.iter().filter_map(|x| x.range.intersect(r)).map(|x| x.len()).sum()
}

fn huge_grown(r: &AddrRange) -> AddrRange {
    AddrRange { start: r.start.align_down(HPAGE_SIZE), end: r.end.align_up(HPAGE_SIZE) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn plans_respect_every_invariant(
        snapshot in snapshot_strategy(),
        policy in policy_strategy(),
        schemes in prop::collection::vec(scheme_strategy(), 0..4),
        picks in prop::collection::vec((any::<u16>(), any::<u16>()), 0..12),
        steps in prop::collection::vec((0u64..700_000, 0u64..=100, 0u64..5_000_000, 0u64..1000), 1..6),
        rss_mib in 0u64..512,
        swap_mib in 0u64..512,
    ) {
        let paged_out = pick_ranges(&snapshot, &picks[..picks.len() / 3]);
        let huge = pick_ranges(&snapshot, &picks[picks.len() / 3..2 * picks.len() / 3]);
        let no_collapse = pick_ranges(&snapshot, &picks[2 * picks.len() / 3..]);
        let task = TaskMemory { rss_bytes: rss_mib << 20, swap_bytes: swap_mib << 20 };
        let keep_in_ram = policy.keep_in_ram;
        let mut planner = Planner::new(policy, schemes);
        let mut now_us = 0;
        for (dt_us, tried_pct, cpu_ns, free_permil) in steps {
            now_us += dt_us;
            let input = PlanInput {
                now_us,
                snapshot: &snapshot,
                task,
                host: HostMemory { total_bytes: 1000 << 20, free_bytes: free_permil << 20 },
                paged_out: &paged_out,
                huge: &huge,
                no_collapse: &no_collapse,
            };
            let plan = planner.plan(&input);

            // Totals add up.
            let t = plan.totals;
            prop_assert_eq!(t.hot_bytes + t.warm_bytes + t.cold_bytes, snapshot.total_bytes());
            prop_assert!(t.thp_eligible_bytes <= t.hot_bytes);

            // Decisions are non-empty, page-aligned, inside the regions, disjoint.
            let mut sorted: Vec<AddrRange> = plan.decisions.iter().map(|d| d.range).collect();
            sorted.sort();
            for w in sorted.windows(2) {
                prop_assert!(w[0].end <= w[1].start, "overlap {} {}", w[0], w[1]);
            }
            for d in &plan.decisions {
                prop_assert!(!d.range.is_empty());
                prop_assert_eq!(d.range.start.0 % PAGE_SIZE, 0);
                prop_assert_eq!(d.range.end.0 % PAGE_SIZE, 0);
                prop_assert_eq!(covered(&d.range, &snapshot), d.range.len(), "{} outside regions", d.range);
                prop_assert!(d.score <= policies::MAX_SCORE);
                prop_assert!(d.action != Action::Stat);
                match d.action {
                    Action::Hugepage => {
                        prop_assert_eq!(d.range.start.0 % HPAGE_SIZE, 0);
                        prop_assert_eq!(d.range.end.0 % HPAGE_SIZE, 0);
                        for set in [&paged_out, &huge, &no_collapse] {
                            let grown: Vec<AddrRange> = set.iter().map(huge_grown).collect();
                            prop_assert!(!overlaps_any(&d.range, &grown), "collapse {} touches {:?}", d.range, set);
                        }
                    }
                    Action::Pageout | Action::Cold | Action::Nohugepage => {
                        prop_assert!(!overlaps_any(&d.range, &paged_out), "{} is paged out already", d.range);
                    }
                    Action::Willneed | Action::Stat => {}
                }
            }

            // Per rule: decisions add up to the report, never beyond the quota
            // or the keep-in-RAM share, nothing when blocked.
            for r in &plan.rules {
                let bytes: u64 = plan.decisions.iter().filter(|d| d.rule == r.rule).map(|d| d.range.len()).sum();
                prop_assert_eq!(bytes, r.planned_bytes);
                prop_assert!(r.planned_bytes <= r.matched_bytes);
                if r.blocked.is_some() {
                    prop_assert_eq!(r.planned_bytes, 0);
                }
                if r.esz_bytes != u64::MAX {
                    prop_assert!(r.charged_bytes <= r.esz_bytes, "{}: charged {} > esz {}", r.rule, r.charged_bytes, r.esz_bytes);
                }
                if r.rule == policies::RuleId::Cold {
                    let swappable = keep_in_ram.map_or(u64::MAX, |keep| {
                        let all = u128::from(task.rss_bytes + task.swap_bytes);
                        let kept = u64::try_from(all * u128::from(keep.bp) / 10_000).unwrap_or(u64::MAX);
                        task.rss_bytes.saturating_sub(kept)
                    });
                    prop_assert!(r.planned_bytes <= swappable);
                }
            }

            // Report part of it as done; the quota is charged with that.
            for r in &plan.rules {
                let tried_bytes = r.planned_bytes / 100 * tried_pct;
                let outcome = Outcome { tried_bytes, applied_bytes: tried_bytes / 2, cpu_ns };
                prop_assert!(planner.record(r.rule, &outcome).is_ok());
            }
        }
    }
}
