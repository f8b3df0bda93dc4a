//! CI accuracy test: the region engine (damon-core + simulated probe) on the
//! simulated workloads, judged by byte-weighted hot-set F1 and working-set-size
//! error after convergence. Fails below F1 0.9 (the goal, F1 >= 0.95 and WSS
//! error <= 5 %, is reported by `bench-accuracy`).
//!
//! Findings pinned here (details in `bench-accuracy`'s notes):
//! - sparse hot pages (1 in 64) inside a cold region are invisible to region
//!   sampling: any region bigger than a page sees 1/64 of the hot count, so the
//!   F1 ceiling is dense / (dense + sparse) hot bytes; only page granularity
//!   (min_nr_regions >= monitored pages) finds them;
//! - 1,000 small hot islands look, at region scale, like uniform 25 % activity:
//!   neighbouring regions merge again as soon as they are split, so with the
//!   default 10..1000 regions F1 stays near 0.35. Regions no bigger than an
//!   island (strict min_nr_regions 2000) and room to split (max_nr_regions
//!   10000: splitting stops above max / 2) fix it within ~60 aggregations.

#![allow(clippy::unwrap_used)]

use damon_core::MonitorAttrs;
use damon_core::ops::sim::{Scenario, ScenarioReport, run_scenario};

const MIB: u64 = 1 << 20;
const SEED: u64 = 7;

fn run(mut s: Scenario, attrs: &MonitorAttrs, aggregations: Option<(u64, u64)>) -> ScenarioReport {
    if let Some((warmup, total)) = aggregations {
        s.warmup_ticks = warmup * 20;
        s.total_ticks = total * 20;
    }
    let r = run_scenario(&s, attrs, SEED).unwrap();
    println!(
        "{}: F1 {:.3} (min {:.3}) precision {:.3} recall {:.3} WSS error {:.1} % regions {:.0} judged {}",
        r.scenario,
        r.f1_mean,
        r.f1_min,
        r.precision_mean,
        r.recall_mean,
        r.wss_error_mean * 100.0,
        r.nr_regions_mean,
        r.judged
    );
    assert!(r.judged >= 20, "too few snapshots judged: {}", r.judged);
    r
}

#[test]
fn sim_static_hot_cold_with_kernel_defaults() {
    let r = run(Scenario::static_hot_cold(256 * MIB, SEED), &MonitorAttrs::default(), Some((60, 120)));
    assert!(r.f1_mean >= 0.9, "F1 {}", r.f1_mean);
    assert!(r.wss_error_mean <= 0.05, "WSS error {}", r.wss_error_mean);
}

#[test]
fn sim_moving_hot_spot_with_kernel_defaults() {
    let r = run(Scenario::moving_hot_spot(256 * MIB, SEED), &MonitorAttrs::default(), Some((60, 160)));
    assert!(r.f1_mean >= 0.9, "F1 {}", r.f1_mean);
    assert!(r.wss_error_mean <= 0.05, "WSS error {}", r.wss_error_mean);
}

#[test]
fn sim_phase_change_with_kernel_defaults() {
    // Phases change at aggregations 100 and 200; the 20 after each are skipped.
    let r = run(Scenario::phase_change(256 * MIB, SEED), &MonitorAttrs::default(), Some((40, 260)));
    assert!(r.f1_mean >= 0.9, "F1 {}", r.f1_mean);
    assert!(r.wss_error_mean <= 0.05, "WSS error {}", r.wss_error_mean);
}

#[test]
fn sim_sparse_hot_pages_in_cold_region() {
    let s = Scenario::sparse_hot_in_cold(256 * MIB, SEED);
    let r = run(s, &MonitorAttrs::default(), Some((60, 120)));
    assert!(r.f1_mean >= 0.9, "F1 {}", r.f1_mean);
    // The sparse pages do not drag the cold region hot...
    assert!(r.precision_mean >= 0.98, "precision {}", r.precision_mean);
    // ...and are themselves missed: recall stays at the dense share,
    // 10 % / (10 % + 50 % / 64) = 0.928 of the data's hot bytes.
    assert!(r.recall_mean < 0.95, "recall {}", r.recall_mean);
}

#[test]
fn sim_1000_hot_islands_need_island_sized_regions() {
    let defaults =
        run(Scenario::hot_islands(256 * MIB, 1000, SEED), &MonitorAttrs::default(), Some((40, 70)));
    assert!(
        defaults.f1_mean < 0.6,
        "defaults were not expected to resolve the islands: {}",
        defaults.f1_mean
    );
    let fixed = MonitorAttrs {
        min_nr_regions: 2000,
        max_nr_regions: 10_000,
        strict_min_nr_regions: true,
        ..MonitorAttrs::default()
    };
    let r = run(Scenario::hot_islands(256 * MIB, 1000, SEED), &fixed, Some((40, 70)));
    assert!(r.f1_mean >= 0.9, "F1 {}", r.f1_mean);
    assert!(r.wss_error_mean <= 0.05, "WSS error {}", r.wss_error_mean);
}
