//! Two simulated targets in one monitor, driven by `Monitor::step`, with
//! mappings that change under it (a new hot mmap appears, half of the data is
//! unmapped): snapshots per target, regions following the mappings, and the
//! hot set found in both targets.

#![allow(clippy::unwrap_used)]

use damon_core::ops::sim::{Phase, ProcessLayout, Scenario, SimProbe, SimSpace, SimTargets, evaluate};
use damon_core::{AddrRange, Monitor, MonitorAttrs, RangeLayout, Snapshot, TargetId};
use std::sync::Arc;

const MIB: u64 = 1 << 20;

/// The data mapping, a hot 10-20 % block; at aggregation 60 a new 16 MiB
/// mapping appears 64 MiB below the data and is fully hot; at 120 the upper
/// half of the data is unmapped.
fn changing_space(seed: u64) -> (SimSpace, ProcessLayout, AddrRange) {
    let l = ProcessLayout::new(64 * MIB);
    let fresh = AddrRange::new(l.data.start.0 - 64 * MIB, l.data.start.0 - 48 * MIB);
    let hot = |extra: Option<AddrRange>| {
        let mut v = vec![
            damon_core::ops::sim::Pattern::Uniform { range: l.data_part(0.1, 0.2), prob: 0.8 },
            damon_core::ops::sim::Pattern::Uniform { range: l.stack, prob: 0.8 },
        ];
        if let Some(r) = extra {
            v.push(damon_core::ops::sim::Pattern::Uniform { range: r, prob: 0.8 });
        }
        v
    };
    let mut with_fresh = l.mappings();
    with_fresh.push(fresh);
    let mut shrunk: Vec<AddrRange> = with_fresh.iter().copied().filter(|m| *m != l.data).collect();
    shrunk.push(l.data_part(0.0, 0.5));
    let mut grow = Phase::new("mmap", 60 * 20, hot(Some(fresh)));
    grow.mappings = Some(with_fresh);
    let mut shrink = Phase::new("munmap", u64::MAX, hot(Some(fresh)));
    shrink.mappings = Some(shrunk);
    let phases = vec![Phase::new("start", 60 * 20, hot(None)), grow, shrink];
    (SimSpace::new(seed, 5_000, &l.mappings(), phases).unwrap(), l, fresh)
}

fn covered(m: &Monitor, id: TargetId) -> Vec<AddrRange> {
    let ranges: Vec<AddrRange> = m.regions(id).unwrap().iter().map(|r| r.range).collect();
    damon_core::regions::normalize_ranges(&ranges, damon_core::PAGE_SIZE)
}

#[test]
fn sim_two_targets_with_changing_mappings() {
    let static_target = Scenario::static_hot_cold(64 * MIB, 3);
    let (space, layout, fresh) = changing_space(4);
    let space = Arc::new(space);
    let (a, b) = (TargetId(100), TargetId(200));

    let mut m = Monitor::new(MonitorAttrs::default(), 5).unwrap();
    m.add_target(a, static_target.space.initial_mappings()).unwrap();
    m.add_target(b, space.initial_mappings()).unwrap();
    let mut ops = SimTargets::new();
    ops.add(a, SimProbe::new(Arc::clone(&static_target.space)));
    ops.add(b, SimProbe::new(Arc::clone(&space)));

    let mut last: Vec<(TargetId, Snapshot)> = Vec::new();
    let mut aggregations = 0;
    let mut updates = 0;
    while aggregations < 180 {
        let out = m.step(&mut ops);
        updates += usize::from(out.updated);
        if let Some(snaps) = out.aggregated {
            aggregations += 1;
            assert_eq!(snaps.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![a, b]);
            last = snaps;
            if aggregations == 110 {
                // 50 aggregations after the mmap: the new mapping is monitored...
                let cov = covered(&m, b);
                assert!(cov.iter().any(|r| r.start <= fresh.start && fresh.end <= r.end), "{cov:?}");
                // ...and found hot.
                let now = ops.get(b).unwrap().now();
                let acc = evaluate(&last[1].1, &space.hot_set(now, 0.4), 0.4);
                assert!(acc.f1() >= 0.9, "target b after mmap: F1 {}", acc.f1());
            }
        }
        ops.advance(1);
    }
    assert_eq!(updates, 180 / 10, "update every second (10 aggregations)");

    // After the munmap the regions cover exactly the three ranges of the
    // remaining mappings. The unmapped upper half of the data is now a 32 MiB
    // gap, smaller than the two biggest, so it stays inside the middle range
    // (as in the kernel) and reads as never accessed.
    let now = ops.get(b).unwrap().now();
    let want = RangeLayout::ThreeRegions.ranges(space.mappings_at(now), damon_core::PAGE_SIZE);
    assert_eq!(covered(&m, b), want);
    let unmapped = layout.data_part(0.5, 1.0);
    let in_gap: Vec<_> =
        last[1].1.regions.iter().filter(|r| unmapped.intersect(&r.range).is_some()).collect();
    assert!(!in_gap.is_empty());
    assert!(in_gap.iter().all(|r| r.nr_accesses == 0 || r.range.start < unmapped.start), "{in_gap:?}");

    for (i, (id, snap)) in last.iter().enumerate() {
        let (space, min_prob) =
            if i == 0 { (&static_target.space, static_target.hot_min_prob) } else { (&space, 0.4) };
        let now = ops.get(*id).unwrap().now();
        let acc = evaluate(snap, &space.hot_set(now, min_prob), 0.4);
        assert!(acc.f1() >= 0.9, "target {id}: F1 {}", acc.f1());
        assert!(acc.wss_error() <= 0.05, "target {id}: WSS error {}", acc.wss_error());
    }
}
