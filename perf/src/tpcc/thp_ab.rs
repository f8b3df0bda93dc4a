//! Huge pages A/B inside one run (scenario `thp-ab`). Runs of different
//! scenarios drift apart by more than THP's effect on this host (13-22 %
//! between rounds of the same baseline), so this scenario compares the
//! states inside one mariadbd, minutes apart, where the drift cancels:
//!
//! - **small**: every huge page of mariadbd split (a partial `MADV_COLD`
//!   on each PMD-mapped unit, as etmemd's demotion does);
//! - **ours**: huge pages exactly where etmemd's promotion had put them
//!   after the warm-up (`thp-promote.toml` runs during the warm-up and is
//!   then stopped; its choice is frozen);
//! - **all**: every fully populated 2 MiB unit collapsed (`MADV_COLLAPSE`),
//!   the bound of promotion that adds no memory.
//!
//! Each cycle runs the three states in a rotated order (so that each state
//! takes each position equally often); a phase's transition and a settle
//! time are left out of its measurement. The gain of a state is its tpm over
//! the `small` phase of the same cycle. The harness does the splits and
//! collapses itself, with the actor and the collapse screen etmemd uses, so
//! the states are exact.

use damon_core::AddrRange;
use damon_core::ops::maps::{Vma, VmaFilter};
use damon_core::ops::pidfd::ProcTarget;
use damon_core::ops::sys::{PAGE_IS_HUGE, PageRegion};
use etmemd::engine::act::ThpState;
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use swap_backends::madvise::{self, HPAGE_SIZE as UNIT, MemAction, MemoryActor, ProcessMadvise, TargetRef};

/// Units collapsed per call of the actor, between looks at the stop flag.
const COLLAPSE_BATCH: usize = 64;

/// A huge-page state of mariadbd.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Small,
    Ours,
    All,
}

impl State {
    pub const ALL: [State; 3] = [State::Small, State::Ours, State::All];

    pub fn name(self) -> &'static str {
        match self {
            State::Small => "small",
            State::Ours => "ours",
            State::All => "all",
        }
    }
}

/// The phase order of cycle `c` (from 0): the states rotated by `c`.
pub fn order(c: u32) -> [State; 3] {
    let mut o = State::ALL;
    o.rotate_left((c % 3) as usize);
    o
}

/// The timing of the A/B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// etmemd's promotion runs this long (the driver's warm-up) before its
    /// choice is frozen.
    pub promote_for: Duration,
    /// Measured length of one phase.
    pub phase: Duration,
    /// Left out after a transition, before the phase's measurement.
    pub settle: Duration,
    /// Time kept per phase for its transition (collapsing 3 GiB takes
    /// seconds of CPU beside the workload).
    pub transition_budget: Duration,
    pub cycles: u32,
}

impl Plan {
    /// The driver's measured window: room for every phase.
    pub fn measured(&self) -> Duration {
        (self.phase + self.settle + self.transition_budget) * 3 * self.cycles
    }
}

/// One phase as measured.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Phase {
    pub cycle: u32,
    pub state: State,
    /// The measured part, in seconds since the driver's start.
    pub from_s: f64,
    pub to_s: f64,
    #[serde(skip)]
    pub at: Option<(Instant, Instant)>,
    /// Wall and CPU time (of the harness thread) of the transition.
    pub transition_s: f64,
    pub transition_cpu_s: f64,
    pub collapsed: u64,
    /// Collapses the kernel refused or failed (the unit stays small).
    pub collapse_failed: u64,
    pub split: u64,
    /// mariadbd's PMD-mapped memory after the transition.
    pub huge_mib: f64,
    /// Filled from the driver's per-second counts and the sampler.
    pub txns: u64,
    pub tpm: f64,
    pub db_ms_per_txn: Option<f64>,
    pub rss_mib: Option<f64>,
}

/// The A/B of one run.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AbRun {
    /// What etmemd's promotion had made huge when it was stopped.
    pub ours_mib: f64,
    pub phases: Vec<Phase>,
    /// Why the A/B stopped early, if it did.
    pub error: Option<String>,
}

impl AbRun {
    /// Per complete cycle, for `state`: (tpm change, CPU per transaction
    /// change) in % over the cycle's `small` phase.
    pub fn changes(&self, state: State) -> Vec<(f64, Option<f64>)> {
        let cycles: BTreeSet<u32> = self.phases.iter().map(|p| p.cycle).collect();
        cycles
            .into_iter()
            .filter(|&c| State::ALL.iter().all(|&s| self.phase(c, s).is_some_and(|p| p.tpm > 0.0)))
            .filter_map(|c| {
                let (small, p) = (self.phase(c, State::Small)?, self.phase(c, state)?);
                let cpu = small.db_ms_per_txn.zip(p.db_ms_per_txn).map(|(b, x)| (x / b - 1.0) * 100.0);
                Some(((p.tpm / small.tpm - 1.0) * 100.0, cpu))
            })
            .collect()
    }

    fn phase(&self, cycle: u32, state: State) -> Option<&Phase> {
        self.phases.iter().find(|p| p.cycle == cycle && p.state == state)
    }

    /// Fill each phase's transactions, tpm, CPU per transaction and RSS.
    /// `per_second[i]`: transactions completed in second `i` since `t0`;
    /// `samples`: (instant, mariadbd CPU % of one CPU, VmRSS MiB).
    pub fn fill(&mut self, t0: Instant, per_second: &[u64], samples: &[(Instant, Option<f64>, f64)]) {
        for p in &mut self.phases {
            let Some((from, to)) = p.at else { continue };
            p.from_s = from.saturating_duration_since(t0).as_secs_f64();
            p.to_s = to.saturating_duration_since(t0).as_secs_f64();
            let (first, last) = (p.from_s.ceil() as usize, p.to_s.floor() as usize);
            let secs = last.saturating_sub(first);
            p.txns = per_second.iter().skip(first).take(secs).sum();
            p.tpm = if secs > 0 { p.txns as f64 * 60.0 / secs as f64 } else { 0.0 };
            let inside: Vec<&(Instant, Option<f64>, f64)> =
                samples.iter().filter(|(at, ..)| *at > from && *at <= to).collect();
            let cpu: Vec<f64> = inside.iter().filter_map(|s| s.1).collect();
            p.db_ms_per_txn = (!cpu.is_empty() && p.txns > 0).then(|| {
                let mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
                mean / 100.0 * (to - from).as_secs_f64() * 1000.0 / p.txns as f64
            });
            p.rss_mib =
                (!inside.is_empty()).then(|| super::harness::median(inside.iter().map(|s| s.2).collect()));
        }
    }
}

/// The starts of the whole 2 MiB units inside `ranges`, sorted.
fn unit_starts(ranges: &[AddrRange]) -> Vec<u64> {
    madvise::prepare(ranges, MemAction::Collapse).iovs.into_iter().map(|(s, _)| s).collect()
}

fn unit_ranges(starts: impl IntoIterator<Item = u64>) -> Vec<AddrRange> {
    starts.into_iter().map(|u| AddrRange::new(u, u + UNIT)).collect()
}

fn anon_vmas(proc: &ProcTarget) -> Result<Vec<Vma>, String> {
    let filter = VmaFilter::anonymous();
    Ok(proc.maps().map_err(|e| e.to_string())?.into_iter().filter(|v| filter.accepts(v)).collect())
}

/// The PMD-mapped units of `vmas`, sorted.
fn huge_units(proc: &ProcTarget, vmas: &[Vma]) -> Result<Vec<u64>, String> {
    let mut regions: Vec<PageRegion> = Vec::new();
    let mut huge = Vec::new();
    proc.with_pagemap("find huge pages", |pm| {
        for v in vmas {
            if !pm.scan(v.range, PAGE_IS_HUGE, PAGE_IS_HUGE, &mut regions)? {
                return Err(std::io::Error::other("PAGEMAP_SCAN (Linux 6.7+) is needed to find huge pages"));
            }
            huge.extend(regions.iter().map(|r| AddrRange::new(r.start, r.end)));
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok(unit_starts(&huge))
}

/// What a transition did.
#[derive(Debug, Default)]
struct Applied {
    collapsed: u64,
    collapse_failed: u64,
    split: u64,
    huge_units: u64,
}

/// Bring mariadbd to `state` (`ours`: the frozen set of unit starts).
/// Splits and collapses go through the actor etmemd uses; only fully
/// populated units are collapsed (etmemd's screen with `thp_max_ptes_none`
/// 0), so no state adds memory.
fn apply(
    proc: &ProcTarget,
    state: State,
    ours: &BTreeSet<u64>,
    stop: &AtomicBool,
) -> Result<Applied, String> {
    let vmas = anon_vmas(proc)?;
    let huge: BTreeSet<u64> = huge_units(proc, &vmas)?.into_iter().collect();
    let wanted = |u: u64| match state {
        State::Small => false,
        State::Ours => ours.contains(&u),
        State::All => true,
    };
    let pidfd = proc.pidfd().ok_or("the target has no pidfd")?;
    let target = TargetRef::process(proc.pid(), pidfd);
    // The screen already left out units holding swapped pages.
    let mut actor = ProcessMadvise { collapse_swapped_units: true };
    let mut done = Applied::default();
    let split = unit_ranges(huge.iter().copied().filter(|&u| !wanted(u)));
    done.split = actor.apply(target, &split, MemAction::Split).unit_counts().done;
    let vma_ranges: Vec<AddrRange> = vmas.iter().map(|v| v.range).collect();
    let candidates =
        unit_ranges(unit_starts(&vma_ranges).into_iter().filter(|u| wanted(*u) && !huge.contains(u)));
    let full = ThpState::default().screen_units(proc, &candidates, &HashSet::new(), 0, 0).keep;
    for batch in full.chunks(COLLAPSE_BATCH) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let c = actor.apply(target, batch, MemAction::Collapse).unit_counts();
        done.collapsed += c.done;
        done.collapse_failed += c.refused + c.failed + c.not_tried;
    }
    done.huge_units = huge_units(proc, &vmas)?.len() as u64;
    Ok(done)
}

/// Sleep until `t`, or until `stop`; false when stopped.
fn sleep_until(t: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= t {
            return true;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(200)));
    }
}

/// Run the A/B on `pid`: wait for the warm-up (`start + plan.promote_for`),
/// freeze the huge units etmemd's promotion made, call `stop_promotion`,
/// then run the cycles while they fit before `end`. The phases' figures
/// are filled later ([`AbRun::fill`]).
pub fn control(
    pid: u32,
    plan: &Plan,
    start: Instant,
    end: Instant,
    stop: &AtomicBool,
    stop_promotion: impl FnOnce(),
    log: &(dyn Fn(String) + Sync),
) -> AbRun {
    let mut run = AbRun::default();
    let proc = match ProcTarget::open(pid) {
        Ok(p) => p,
        Err(e) => {
            stop_promotion();
            run.error = Some(e.to_string());
            return run;
        }
    };
    if !sleep_until(start + plan.promote_for, stop) {
        stop_promotion();
        return run;
    }
    let ours: BTreeSet<u64> = match anon_vmas(&proc).and_then(|v| huge_units(&proc, &v)) {
        Ok(u) => u.into_iter().collect(),
        Err(e) => {
            stop_promotion();
            run.error = Some(e);
            return run;
        }
    };
    stop_promotion();
    run.ours_mib = (ours.len() as u64 * UNIT) as f64 / (1 << 20) as f64;
    log(format!("thp-ab: etmemd's promotion made {:.0} MiB huge; its choice is frozen", run.ours_mib));
    let per_phase = plan.phase + plan.settle + plan.transition_budget;
    'cycles: for c in 0..plan.cycles {
        for state in order(c) {
            if Instant::now() + per_phase > end || stop.load(Ordering::Relaxed) {
                break 'cycles;
            }
            let (t, cpu) = (Instant::now(), crate::bench::sys::thread_cpu_time());
            let applied = match apply(&proc, state, &ours, stop) {
                Ok(a) => a,
                Err(e) => {
                    run.error = Some(format!("cycle {c}, {}: {e}", state.name()));
                    break 'cycles;
                }
            };
            let (transition_s, transition_cpu_s) =
                (t.elapsed().as_secs_f64(), (crate::bench::sys::thread_cpu_time() - cpu).as_secs_f64());
            if !sleep_until(Instant::now() + plan.settle, stop) {
                break 'cycles;
            }
            let from = Instant::now();
            if !sleep_until(from + plan.phase, stop) {
                break 'cycles;
            }
            let huge_mib = (applied.huge_units * UNIT) as f64 / (1 << 20) as f64;
            log(format!(
                "thp-ab: cycle {} {}: {} collapsed ({} failed), {} split in {transition_s:.1} s ({transition_cpu_s:.1} s CPU); {huge_mib:.0} MiB huge",
                c + 1,
                state.name(),
                applied.collapsed,
                applied.collapse_failed,
                applied.split
            ));
            run.phases.push(Phase {
                cycle: c,
                state,
                at: Some((from, Instant::now())),
                transition_s,
                transition_cpu_s,
                collapsed: applied.collapsed,
                collapse_failed: applied.collapse_failed,
                split: applied.split,
                huge_mib,
                ..Phase::default()
            });
        }
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_takes_every_position_over_three_cycles() {
        for pos in 0..3 {
            let seen: BTreeSet<&str> = (0..3).map(|c| order(c)[pos].name()).collect();
            assert_eq!(seen.len(), 3, "position {pos}");
        }
        assert_eq!(order(3), order(0));
    }

    #[test]
    fn phases_count_whole_seconds_inside_and_cycles_pair_with_small() {
        let t0 = Instant::now();
        let s = |x: f64| t0 + Duration::from_secs_f64(x);
        let phase = |cycle, state, from: f64, to: f64| Phase {
            cycle,
            state,
            at: Some((s(from), s(to))),
            ..Phase::default()
        };
        let mut run = AbRun {
            ours_mib: 0.0,
            phases: vec![
                phase(0, State::Small, 0.5, 3.5),
                phase(0, State::Ours, 3.5, 6.5),
                phase(0, State::All, 6.5, 9.5),
                // An incomplete cycle gives no gain.
                phase(1, State::Small, 9.5, 12.0),
            ],
            error: None,
        };
        let per_second = [100, 10, 10, 100, 11, 11, 100, 12, 12, 100, 10, 10];
        let samples = vec![(s(2.0), Some(50.0), 100.0), (s(3.0), Some(50.0), 120.0), (s(5.0), None, 130.0)];
        run.fill(t0, &per_second, &samples);
        // Seconds 1 and 2 (whole seconds inside 0.5..3.5).
        assert_eq!(run.phases[0].txns, 20);
        assert_eq!(run.phases[0].tpm, 600.0);
        assert_eq!(run.phases[1].txns, 22);
        assert_eq!(run.phases[3].txns, 20);
        // 50 % of a CPU over 3 s = 1500 ms for 20 transactions.
        assert_eq!(run.phases[0].db_ms_per_txn, Some(75.0));
        assert_eq!(run.phases[0].rss_mib, Some(110.0));
        assert_eq!(run.phases[1].db_ms_per_txn, None);
        let (ours, all) = (run.changes(State::Ours), run.changes(State::All));
        assert_eq!((ours.len(), all.len()), (1, 1), "the incomplete cycle gives no change");
        assert!((ours[0].0 - 10.0).abs() < 1e-9 && (all[0].0 - 20.0).abs() < 1e-9, "{ours:?} {all:?}");
        assert_eq!(ours[0].1, None, "no CPU samples in the ours phase");
        assert_eq!(run.changes(State::Small), vec![(0.0, Some(0.0))]);
    }
}
