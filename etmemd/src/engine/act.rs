//! The acting half shared by the page and region engines: for one process,
//! turn each snapshot into a plan (policies) and carry it out through
//! process_madvise (swap-backends), keeping what we paged out, what came
//! back, and the counters `project show` reports.

use super::procinfo::{HostMemInfo, ProcMemory};
use crate::runtime::Backends;
use damon_core::ops::pagemap::PagemapEntry;
use damon_core::ops::pidfd::ProcTarget;
use damon_core::{AddrRange, PAGE_SIZE, Snapshot};
use policies::{ClassTotals, Decision, HostMemory, Outcome, PlanInput, Planner, RuleId, TaskMemory};
use std::collections::BTreeMap;
use std::time::Duration;
use swap_backends::madvise::UnitResult;
use swap_backends::{MemAction, MemoryActor, ProcessMadvise, TargetRef};

/// How often the paged-out ranges are checked against pagemap for pages
/// that came back (refaults). Costs 8 bytes of pagemap per paged-out page.
const RECONCILE_INTERVAL_US: u64 = 1_000_000;

/// Cumulative figures of what we did to one process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActCounters {
    /// Bytes the kernel accepted MADV_PAGEOUT for, over time.
    pub paged_out_bytes: u64,
    /// Bytes prefetched back with MADV_WILLNEED.
    pub prefetched_bytes: u64,
    /// Pages we paged out that the process touched again.
    pub refaulted_pages: u64,
    pub collapses_done: u64,
    pub collapses_refused: u64,
    pub collapses_failed: u64,
    pub demotions: u64,
    /// Failed ranges by errno name.
    pub errors: BTreeMap<String, u64>,
    pub action_cpu: Duration,
}

/// The acting state of one process of a task.
#[derive(Debug)]
pub struct PidActor {
    pid: u32,
    planner: Planner,
    actor: ProcessMadvise,
    /// Sorted, disjoint ranges we paged out that are still out of RAM.
    paged_out: Vec<AddrRange>,
    /// Ranges we collapsed into huge pages.
    huge: Vec<AddrRange>,
    last_reconcile_us: u64,
    pub counters: ActCounters,
    pub totals: ClassTotals,
    /// Why the last plan did nothing, if it did nothing.
    pub idle_reason: Option<String>,
    /// Whether pageout was paused for a full swap pool at the last plan.
    paused_full: bool,
}

/// Merge a new range into a sorted disjoint list.
fn add_range(list: &mut Vec<AddrRange>, r: AddrRange) {
    list.push(r);
    list.sort_by_key(|x| x.start);
    let mut out: Vec<AddrRange> = Vec::with_capacity(list.len());
    for x in list.drain(..) {
        match out.last_mut() {
            Some(last) if x.start <= last.end => last.end = last.end.max(x.end),
            _ => out.push(x),
        }
    }
    *list = out;
}

/// Remove a range from a sorted disjoint list.
fn remove_range(list: &mut Vec<AddrRange>, r: AddrRange) {
    let mut out = Vec::with_capacity(list.len() + 1);
    for x in list.drain(..) {
        if x.end <= r.start || x.start >= r.end {
            out.push(x);
            continue;
        }
        if x.start < r.start {
            out.push(AddrRange { start: x.start, end: r.start });
        }
        if r.end < x.end {
            out.push(AddrRange { start: r.end, end: x.end });
        }
    }
    *list = out;
}

fn errno_name(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).kind().to_string().replace(' ', "_") + &format!("({errno})")
}

impl PidActor {
    pub fn new(pid: u32, policy: conf::Policy, schemes: Vec<conf::Scheme>) -> PidActor {
        PidActor {
            pid,
            planner: Planner::new(policy, schemes),
            actor: ProcessMadvise::default(),
            paged_out: Vec::new(),
            huge: Vec::new(),
            last_reconcile_us: 0,
            counters: ActCounters::default(),
            totals: ClassTotals::default(),
            idle_reason: None,
            paused_full: false,
        }
    }

    /// Bytes we paged out that are still out of RAM.
    pub fn paged_out_now_bytes(&self) -> u64 {
        self.paged_out.iter().map(AddrRange::len).sum()
    }

    /// Quota use of the cold rule in this window, per mille, and windows that ran out.
    pub fn quota(&self) -> (Option<u64>, u64) {
        let stats = self.planner.stats();
        let exceeded = stats.iter().map(|s| s.qt_exceeds).sum();
        let cold = stats.iter().find(|s| s.rule == RuleId::Cold);
        let used = cold
            .filter(|s| s.esz_bytes > 0 && s.esz_bytes != u64::MAX)
            .map(|s| s.charged_bytes * 1000 / s.esz_bytes);
        (used, exceeded)
    }

    /// Pages we paged out that are back in RAM are no longer ours: count
    /// them as refaults and keep only what is still swapped.
    fn reconcile(&mut self, proc: &ProcTarget) {
        if self.paged_out.is_empty() {
            return;
        }
        let ranges = std::mem::take(&mut self.paged_out);
        let mut still_out = Vec::new();
        let mut back = 0u64;
        let mut entries: Vec<PagemapEntry> = Vec::new();
        let r = proc.with_pagemap("reconcile paged-out ranges", |pm| {
            for r in &ranges {
                pm.read_range(*r, &mut entries)?;
                let mut run_start: Option<u64> = None;
                for (i, e) in entries.iter().enumerate() {
                    let addr = r.start.0 + i as u64 * PAGE_SIZE;
                    let out = !e.present();
                    if e.present() {
                        back += 1;
                    }
                    match (out, run_start) {
                        (true, None) => run_start = Some(addr),
                        (false, Some(s)) => {
                            still_out.push(AddrRange::new(s, addr));
                            run_start = None;
                        }
                        _ => {}
                    }
                }
                if let Some(s) = run_start {
                    still_out.push(AddrRange::new(s, r.end.0));
                }
            }
            Ok(())
        });
        match r {
            Ok(()) => {
                self.paged_out = still_out;
                self.counters.refaulted_pages += back;
            }
            // Keep the list when pagemap could not be read; the target may be gone.
            Err(_) => self.paged_out = ranges,
        }
    }

    /// Plan on one snapshot and carry the plan out.
    pub fn on_snapshot(
        &mut self,
        proc: &ProcTarget,
        snapshot: &Snapshot,
        now_us: u64,
        mem: ProcMemory,
        host: HostMemInfo,
        backends: &Backends,
    ) {
        if now_us.saturating_sub(self.last_reconcile_us) >= RECONCILE_INTERVAL_US {
            self.reconcile(proc);
            self.last_reconcile_us = now_us;
        }
        let plan = self.planner.plan(&PlanInput {
            now_us,
            snapshot,
            task: TaskMemory { rss_bytes: mem.rss_bytes, swap_bytes: mem.swap_bytes },
            host: HostMemory { total_bytes: host.total_bytes, free_bytes: host.free_bytes },
            paged_out: &self.paged_out,
            huge: &self.huge,
            no_collapse: &[],
        });
        self.totals = plan.totals;
        let mut reasons: Vec<String> = plan.blocked().map(|(rule, why)| format!("{rule}: {why}")).collect();

        // Pageout needs somewhere to go.
        let pause = if host.swap_total_bytes == 0 {
            Some("no swap space on this host: pageout paused".to_string())
        } else {
            backends.full_reason().map(|r| format!("swap devices full ({r}): pageout paused"))
        };
        match (&pause, self.paused_full) {
            (Some(why), false) => tracing::warn!(pid = self.pid, "{why}"),
            (None, true) => tracing::info!(pid = self.pid, "swap has room again: pageout resumes"),
            _ => {}
        }
        self.paused_full = pause.is_some();

        let Some(pidfd) = proc.pidfd() else { return };
        for report in &plan.rules {
            let mine: Vec<&Decision> = plan.decisions.iter().filter(|d| d.rule == report.rule).collect();
            let mut outcome = Outcome { tried_bytes: 0, applied_bytes: 0, cpu_ns: 0 };
            let mut actions: Vec<conf::Action> = mine.iter().map(|d| d.action).collect();
            actions.sort();
            actions.dedup();
            for action in actions {
                let Some(mem_action) = MemAction::from_scheme(action) else { continue };
                if mem_action == MemAction::Pageout && pause.is_some() {
                    continue;
                }
                let ranges: Vec<AddrRange> =
                    mine.iter().filter(|d| d.action == action).map(|d| d.range).collect();
                let out = self.actor.apply(TargetRef::process(self.pid, pidfd), &ranges, mem_action);
                outcome.tried_bytes += out.bytes_tried;
                outcome.applied_bytes += out.bytes_applied;
                outcome.cpu_ns += out.cpu_time.as_nanos() as u64;
                self.counters.action_cpu += out.cpu_time;
                for (errno, c) in &out.errors {
                    *self.counters.errors.entry(errno_name(*errno)).or_default() += c.ranges;
                }
                match mem_action {
                    MemAction::Pageout => {
                        self.counters.paged_out_bytes += out.bytes_applied;
                        if out.errors.is_empty() && out.stopped.is_none() {
                            for r in &ranges {
                                add_range(&mut self.paged_out, *r);
                            }
                        }
                    }
                    MemAction::Willneed => {
                        self.counters.prefetched_bytes += out.bytes_applied;
                        for r in &ranges {
                            remove_range(&mut self.paged_out, *r);
                        }
                    }
                    MemAction::Collapse => {
                        for u in &out.units {
                            match u.result {
                                UnitResult::Done => {
                                    self.counters.collapses_done += 1;
                                    add_range(&mut self.huge, u.range);
                                }
                                UnitResult::Refused { .. } | UnitResult::SwappedOut => {
                                    self.counters.collapses_refused += 1
                                }
                                UnitResult::Failed { .. } => self.counters.collapses_failed += 1,
                                UnitResult::NotTried => {}
                            }
                        }
                    }
                    MemAction::Split => {
                        for u in &out.units {
                            if u.result == UnitResult::Done {
                                self.counters.demotions += 1;
                                remove_range(&mut self.huge, u.range);
                            }
                        }
                    }
                    MemAction::Cold => {}
                }
                if out.vanished {
                    return;
                }
            }
            // Cannot fail: the rule comes from this planner's plan.
            let _ = self.planner.record(report.rule, &outcome);
        }
        if let Some(p) = pause {
            reasons.insert(0, p);
        }
        self.idle_reason = (!reasons.is_empty()).then(|| reasons.join("; "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u64, b: u64) -> AddrRange {
        AddrRange::new(a, b)
    }

    #[test]
    fn ranges_merge_and_split() {
        let mut v = Vec::new();
        add_range(&mut v, r(0x3000, 0x4000));
        add_range(&mut v, r(0x1000, 0x2000));
        add_range(&mut v, r(0x2000, 0x3000));
        assert_eq!(v, vec![r(0x1000, 0x4000)]);
        remove_range(&mut v, r(0x2000, 0x3000));
        assert_eq!(v, vec![r(0x1000, 0x2000), r(0x3000, 0x4000)]);
        remove_range(&mut v, r(0, 0x10000));
        assert!(v.is_empty());
    }
}
