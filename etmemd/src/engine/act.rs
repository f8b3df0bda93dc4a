//! The acting half shared by the page and region engines: for one process,
//! turn each snapshot into a plan (policies) and carry it out through
//! process_madvise (swap-backends), keeping what we paged out, what came
//! back, and the counters `project show` reports.

use super::procinfo::{HostMemInfo, ProcMemory};
use crate::runtime::Backends;
use damon_core::ops::pagemap::PageKinds;
use damon_core::ops::pidfd::ProcTarget;
use damon_core::ops::sim::overlap_bytes;
use damon_core::{AddrRange, PAGE_SIZE, ProbeError, Snapshot};
use policies::{ClassTotals, Decision, HostMemory, Outcome, PlanInput, Planner, RuleId, TaskMemory};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use swap_backends::madvise::UnitResult;
use swap_backends::{MemAction, MemoryActor, ProcessMadvise, TargetRef};

mod thp;
pub use thp::ThpState;

/// How often the paged-out ranges are checked against pagemap for pages
/// that came back (refaults), at most ...
const RECONCILE_INTERVAL_US: u64 = 1_000_000;
/// ... and at least this many times the last check's duration apart, so
/// the check costs at most 0.2 % of a CPU however much is paged out (the
/// kernel walks every paged-out page table entry: 8 ms per second for
/// 2.5 GiB of a TPC-C mariadbd) ...
const RECONCILE_COST_FACTOR: u64 = 500;
/// ... but never further apart than this. A late check only delays the
/// refault count and the start of `refault_protect`: pages we paged out
/// are not paged out again before a check finds them swapped.
const RECONCILE_MAX_INTERVAL_US: u64 = 30_000_000;

/// How often the unpopulated pages our pageouts spanned are checked for
/// having been populated since (they then become ordinary candidates).
const UNPOPULATED_RECHECK_US: u64 = 10_000_000;

/// Cumulative figures of what we did to one process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActCounters {
    /// Bytes the kernel accepted MADV_PAGEOUT for, over time: the whole
    /// ranges advised, unpopulated pages included.
    pub paged_out_bytes: u64,
    /// What pagemap showed right after each pageout, summed: pages swapped
    /// out, pages unpopulated (never touched, or freed), and pages still in
    /// RAM (shared, locked or busy pages the kernel kept), in bytes.
    pub pageout_swapped_bytes: u64,
    pub pageout_unpopulated_bytes: u64,
    pub pageout_stayed_bytes: u64,
    /// Bytes prefetched back with MADV_WILLNEED.
    pub prefetched_bytes: u64,
    /// Pages we paged out that the process touched again.
    pub refaulted_pages: u64,
    /// ... of which had come back before (their protection was doubled).
    pub refaulted_again_pages: u64,
    /// Bytes swapped out by a pageout that had come back before: the churn
    /// `refault_protect` is there to cut.
    pub repageout_bytes: u64,
    /// Bytes a pageout left in RAM because they had refaulted within the
    /// policy's `refault_protect` (summed over plans).
    pub refault_protected_bytes: u64,
    /// 2 MiB units collapsed into huge pages (`MADV_COLLAPSE` succeeded).
    pub collapses_done: u64,
    /// Units the kernel will not collapse (`EINVAL`: no-hugepage mapping, ...).
    pub collapses_refused: u64,
    /// Units the kernel could not collapse now (`EAGAIN`, `ENOMEM`, ...).
    pub collapses_failed: u64,
    /// Units left alone because they held swapped-out pages (issue 5: a
    /// collapse would fault them all back in).
    pub collapses_skipped_swapped: u64,
    /// Units left alone because more than the policy's `thp_max_ptes_none`
    /// of their pages were unpopulated, and those pages summed (what the
    /// collapses would have added to the process).
    pub collapses_skipped_sparse: u64,
    pub collapses_skipped_sparse_none_pages: u64,
    /// Refused and failed collapses by errno name (`EINVAL`, `EAGAIN`, ...).
    pub collapse_errors: BTreeMap<String, u64>,
    /// Huge pages split back (demotion), checked in pagemap after the split.
    pub demotions: u64,
    /// Splits the kernel took but after which the unit was still huge.
    pub demotions_failed: u64,
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
    /// Sorted, disjoint ranges we paged out that are still swapped out.
    paged_out: Vec<AddrRange>,
    /// Sorted, disjoint ranges our pageouts spanned that held no page (a
    /// buffer pool's never-touched part): kept out of later pageouts like
    /// `paged_out`, but neither counted as paged out nor, once populated,
    /// as refaults. Rechecked every [`UNPOPULATED_RECHECK_US`].
    unpopulated: Vec<AddrRange>,
    last_unpopulated_check_us: u64,
    /// Pages we paged out that came back, kept out of pageouts for the
    /// policy's `refault_protect`, doubled each time the same page comes
    /// back again. A page touched again soon after its pageout is in the
    /// working set, however cold its region looked to the sampler; sending
    /// it out again only buys another fault (the kernel's own reclaim keeps
    /// refault distances for the same reason).
    refaults: RefaultHistory,
    /// The `now_us` of the last snapshot.
    last_now_us: u64,
    /// Huge pages and what must not be collapsed (issue 5); kept up to date
    /// only when a rule collapses or splits (`thp_rules`).
    thp: ThpState,
    thp_rules: bool,
    /// Pages the access probe paged out to sample them (refault probe) and
    /// that no pageout of ours has taken since: swapped because they were
    /// sampled, not because a policy sent them out, so they do not keep a
    /// unit from being collapsed. A sampled 4 KiB page that is not touched
    /// again stays out until something touches it; without this history
    /// the samples of the last minutes would leave almost every 2 MiB unit
    /// of a sparsely touched heap (a database's buffer pool) uncollapsible.
    /// At most [`PROBE_HISTORY_MAX`] pages; past that it starts over.
    probe_pages: HashSet<u64>,
    last_reconcile_us: u64,
    /// The wait until the next check (see [`RECONCILE_COST_FACTOR`]).
    reconcile_every_us: u64,
    pub counters: ActCounters,
    pub totals: ClassTotals,
    /// Why the last plan did nothing, if it did nothing.
    pub idle_reason: Option<String>,
    /// Whether pageout was paused for a full swap pool at the last plan.
    paused_full: bool,
    /// The process turned THP off for itself (status `THP_enabled: 0`):
    /// collapses are not tried, and `project show` says why.
    thp_disabled: bool,
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

/// Merge many ranges into a sorted disjoint list at once: the same result
/// as [`add_range`] for each, in one sort (a page engine pages out tens of
/// thousands of page runs per round).
fn add_ranges(list: &mut Vec<AddrRange>, rs: &[AddrRange]) {
    if rs.is_empty() {
        return;
    }
    list.extend_from_slice(rs);
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

/// Remove many ranges from a sorted disjoint list at once (the same result
/// as [`remove_range`] for each).
fn remove_ranges(list: &mut Vec<AddrRange>, rs: &[AddrRange]) {
    if rs.is_empty() || list.is_empty() {
        return;
    }
    let mut cut = rs.to_vec();
    cut.sort_by_key(|x| x.start);
    let mut merged: Vec<AddrRange> = Vec::with_capacity(cut.len());
    for x in cut {
        match merged.last_mut() {
            Some(last) if x.start <= last.end => last.end = last.end.max(x.end),
            _ => merged.push(x),
        }
    }
    let mut out = Vec::with_capacity(list.len() + 1);
    let mut j = 0;
    for x in list.drain(..) {
        let mut cur = x.start;
        while j < merged.len() && merged[j].end <= cur {
            j += 1;
        }
        let mut k = j;
        while k < merged.len() && merged[k].start < x.end {
            if merged[k].start > cur {
                out.push(AddrRange { start: cur, end: merged[k].start });
            }
            cur = cur.max(merged[k].end);
            k += 1;
        }
        if cur < x.end {
            out.push(AddrRange { start: cur, end: x.end });
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

/// The C name of an errno a collapse or split may get, for counters.
fn errno_label(errno: i32) -> String {
    match errno {
        libc::EINVAL => "EINVAL".into(),
        libc::EAGAIN => "EAGAIN".into(),
        libc::ENOMEM => "ENOMEM".into(),
        libc::EBUSY => "EBUSY".into(),
        libc::EFAULT => "EFAULT".into(),
        libc::EPERM => "EPERM".into(),
        0 => "no progress".into(),
        n => format!("errno {n}"),
    }
}

fn errno_name(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).kind().to_string().replace(' ', "_") + &format!("({errno})")
}

impl PidActor {
    pub fn new(pid: u32, policy: conf::Policy, schemes: Vec<conf::Scheme>) -> PidActor {
        let thp_rules = policy.promote_thp
            || policy.demote_thp
            || schemes.iter().any(|s| matches!(s.action, conf::Action::Hugepage | conf::Action::Nohugepage));
        let protect_us = u64::try_from(policy.refault_protect.as_micros()).unwrap_or(u64::MAX);
        PidActor {
            pid,
            planner: Planner::new(policy, schemes),
            // Units holding swapped pages are left out before the collapse,
            // by `ThpState::screen_units`, which knows the probe's pages.
            actor: ProcessMadvise { collapse_swapped_units: true },
            paged_out: Vec::new(),
            unpopulated: Vec::new(),
            last_unpopulated_check_us: 0,
            refaults: RefaultHistory::new(protect_us),
            last_now_us: 0,
            thp: ThpState::default(),
            thp_rules,
            probe_pages: HashSet::new(),
            last_reconcile_us: 0,
            reconcile_every_us: RECONCILE_INTERVAL_US,
            counters: ActCounters::default(),
            totals: ClassTotals::default(),
            idle_reason: None,
            paused_full: false,
            thp_disabled: false,
        }
    }

    /// Tell the actor which pages the access probe paged out at its arms
    /// since the last snapshot, before [`PidActor::on_snapshot`]: a collapse
    /// does not count them as swapped pages (see `probe_pages`). Without a
    /// THP rule nothing reads them, and they are not kept (every pageout
    /// would otherwise filter the whole set).
    pub fn set_probe_pages(&mut self, pages: &[u64]) {
        if !self.thp_rules {
            return;
        }
        if self.probe_pages.len() + pages.len() > PROBE_HISTORY_MAX {
            // Starting over only makes collapses more careful for a while.
            self.probe_pages.clear();
        }
        self.probe_pages.extend(pages.iter().copied());
    }

    /// Whether a rule collapses or splits huge pages (and so needs the
    /// process's AnonHugePages often).
    pub fn thp_rules(&self) -> bool {
        self.thp_rules
    }

    /// Bytes kept out of pageouts by `refault_protect` now.
    pub fn protected_bytes(&self) -> u64 {
        self.refaults.protected_bytes(self.last_now_us)
    }

    /// The ranges we paged out that are still out of RAM, sorted and disjoint.
    pub fn paged_out_ranges(&self) -> &[AddrRange] {
        &self.paged_out
    }

    /// Bytes we paged out that are still swapped out.
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
    /// them as refaults and keep only what is still swapped (a page the
    /// process freed meanwhile is neither). Unpopulated pages that got
    /// populated are dropped from their list, not counted: new memory of
    /// the process, not a refault.
    fn reconcile(&mut self, proc: &ProcTarget, now_us: u64) {
        self.refaults.forget_old(now_us);
        if !self.paged_out.is_empty() {
            // Keep the list when pagemap could not be read; the target may be gone.
            if let Ok(k) = read_kinds(proc, "reconcile paged-out ranges", &self.paged_out) {
                self.paged_out = k.swapped;
                self.counters.refaulted_pages +=
                    k.present.iter().map(AddrRange::len).sum::<u64>() / PAGE_SIZE;
                let again = self.refaults.record(&k.present, now_us);
                self.counters.refaulted_again_pages += again / PAGE_SIZE;
            }
        }
        if !self.unpopulated.is_empty()
            && now_us.saturating_sub(self.last_unpopulated_check_us) >= UNPOPULATED_RECHECK_US
        {
            self.last_unpopulated_check_us = now_us;
            if let Ok(k) = read_kinds(proc, "recheck unpopulated ranges", &self.unpopulated) {
                // Swapped since (sampled by the probe): still not ours.
                let mut left = k.unpopulated;
                add_ranges(&mut left, &k.swapped);
                self.unpopulated = left;
            }
        }
    }

    /// After a pageout of `ranges`: what pagemap shows now decides what is
    /// ours to follow (swapped pages), what only spanned holes, and what
    /// the kernel kept in RAM. Returns the bytes that were holes.
    fn note_pageout(&mut self, proc: &ProcTarget, ranges: &[AddrRange], clean: bool) -> u64 {
        let mut sorted = ranges.to_vec();
        sorted.sort_by_key(|r| r.start);
        match read_kinds(proc, "check pageout", &sorted) {
            Ok(k) => {
                let bytes = |v: &[AddrRange]| v.iter().map(AddrRange::len).sum::<u64>();
                self.counters.pageout_swapped_bytes += bytes(&k.swapped);
                self.counters.pageout_unpopulated_bytes += bytes(&k.unpopulated);
                self.counters.pageout_stayed_bytes += bytes(&k.present);
                self.counters.repageout_bytes += self.refaults.overlap_bytes(&k.swapped);
                add_ranges(&mut self.paged_out, &k.swapped);
                add_ranges(&mut self.unpopulated, &k.unpopulated);
                bytes(&k.unpopulated)
            }
            // Without pagemap, follow the whole ranges when the call took them.
            Err(_) if clean => {
                add_ranges(&mut self.paged_out, &sorted);
                0
            }
            Err(_) => 0,
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
        self.last_now_us = now_us;
        if now_us.saturating_sub(self.last_reconcile_us) >= self.reconcile_every_us {
            let t0 = std::time::Instant::now();
            self.reconcile(proc, now_us);
            let took_us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.reconcile_every_us = took_us
                .saturating_mul(RECONCILE_COST_FACTOR)
                .clamp(RECONCILE_INTERVAL_US, RECONCILE_MAX_INTERVAL_US);
            self.last_reconcile_us = now_us;
        }
        let no_collapse = if self.thp_rules {
            self.thp.maybe_refresh(proc, now_us, mem.anon_huge_bytes, &self.probe_pages);
            self.thp.no_collapse(now_us)
        } else {
            Vec::new()
        };
        // Unpopulated spans are left out of pageouts like what is paged out.
        let mut not_again = self.paged_out.clone();
        add_ranges(&mut not_again, &self.unpopulated);
        let plan = self.planner.plan(&PlanInput {
            now_us,
            snapshot,
            task: TaskMemory { rss_bytes: mem.rss_bytes, swap_bytes: mem.swap_bytes },
            host: HostMemory { total_bytes: host.total_bytes, free_bytes: host.free_bytes },
            paged_out: &not_again,
            huge: self.thp.huge(),
            no_collapse: &no_collapse,
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
                if mem_action == MemAction::Collapse && mem.thp_disabled {
                    continue;
                }
                let mut ranges: Vec<AddrRange> =
                    mine.iter().filter(|d| d.action == action).map(|d| d.range).collect();
                let keep = if mem_action == MemAction::Pageout {
                    self.refaults.protected(now_us)
                } else {
                    Vec::new()
                };
                if !keep.is_empty() {
                    let before: u64 = ranges.iter().map(AddrRange::len).sum();
                    ranges.sort_by_key(|r| r.start);
                    remove_ranges(&mut ranges, &keep);
                    let after: u64 = ranges.iter().map(AddrRange::len).sum();
                    self.counters.refault_protected_bytes += before.saturating_sub(after);
                }
                if mem_action == MemAction::Collapse {
                    let max_none = self.planner.policy().thp_max_ptes_none;
                    let screened = self.thp.screen_units(proc, &ranges, &self.probe_pages, max_none, now_us);
                    self.counters.collapses_skipped_swapped += screened.swapped;
                    self.counters.collapses_skipped_sparse += screened.sparse;
                    self.counters.collapses_skipped_sparse_none_pages += screened.sparse_none_pages;
                    ranges = screened.keep;
                }
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
                        if !out.vanished {
                            let t0 = swap_backends::thread_cpu_time();
                            let holes = self.note_pageout(
                                proc,
                                &ranges,
                                out.errors.is_empty() && out.stopped.is_none(),
                            );
                            // Holes cost the kernel next to nothing: the quota
                            // is for pages sent out (a buffer pool's untouched
                            // part would use it up first).
                            outcome.tried_bytes = outcome.tried_bytes.saturating_sub(holes);
                            let spent = swap_backends::thread_cpu_time().saturating_sub(t0);
                            self.counters.action_cpu += spent;
                            outcome.cpu_ns += spent.as_nanos() as u64;
                        }
                        // Sent out by a policy now, not only sampled.
                        if !self.probe_pages.is_empty() {
                            let mut sorted = ranges.clone();
                            sorted.sort_by_key(|r| r.start);
                            self.probe_pages.retain(|&p| !in_sorted(&sorted, p));
                        }
                    }
                    MemAction::Willneed => {
                        self.counters.prefetched_bytes += out.bytes_applied;
                        remove_ranges(&mut self.paged_out, &ranges);
                    }
                    MemAction::Collapse => {
                        let c = &mut self.counters;
                        for u in &out.units {
                            match u.result {
                                UnitResult::Done => c.collapses_done += 1,
                                UnitResult::Refused { errno } => {
                                    c.collapses_refused += 1;
                                    *c.collapse_errors.entry(errno_label(errno)).or_default() += 1;
                                }
                                UnitResult::Failed { errno } => {
                                    c.collapses_failed += 1;
                                    *c.collapse_errors.entry(errno_label(errno)).or_default() += 1;
                                }
                                UnitResult::SwappedOut => c.collapses_skipped_swapped += 1,
                                UnitResult::NotTried => {}
                            }
                        }
                        self.thp.on_collapse(&out, now_us);
                    }
                    MemAction::Split => {
                        let (back, kept) = self.thp.on_split(proc, &out);
                        self.counters.demotions += back;
                        self.counters.demotions_failed += kept;
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
        if mem.thp_disabled != self.thp_disabled && self.thp_rules {
            tracing::warn!(pid = self.pid, "{}", THP_DISABLED_NOTE);
        }
        self.thp_disabled = mem.thp_disabled;
        if self.thp_disabled && self.thp_rules {
            reasons.push(THP_DISABLED_NOTE.to_string());
        }
        if let Some(p) = pause {
            reasons.insert(0, p);
        }
        self.idle_reason = (!reasons.is_empty()).then(|| reasons.join("; "));
    }
}

fn read_kinds(proc: &ProcTarget, what: &str, ranges: &[AddrRange]) -> Result<PageKinds, ProbeError> {
    proc.with_pagemap(what, |pm| pm.kinds_of(ranges))
}

/// The `project show` line of what the pageouts did, from the counters of
/// the processes of a task; `None` before any pageout.
pub fn pageout_note(counters: &[&ActCounters]) -> Option<String> {
    let sum = |f: fn(&ActCounters) -> u64| counters.iter().map(|c| f(c)).sum::<u64>();
    let advised = sum(|c| c.paged_out_bytes);
    if advised == 0 {
        return None;
    }
    let b = crate::render::bytes;
    Some(format!(
        "{} advised: {} swapped out, {} unpopulated (no page there), {} stayed in RAM (shared, locked or busy), by pagemap right after each call",
        b(advised),
        b(sum(|c| c.pageout_swapped_bytes)),
        b(sum(|c| c.pageout_unpopulated_bytes)),
        b(sum(|c| c.pageout_stayed_bytes)),
    ))
}

/// The `project show` line for `refault_protect`, from the bytes protected
/// now and the counters of the processes of a task: pageout bytes skipped
/// for it so far (summed over plans), what came back more than once and
/// what was paged out again after coming back; `None` while nothing was
/// protected.
pub fn protected_note(now_bytes: u64, counters: &[&ActCounters]) -> Option<String> {
    let sum = |f: fn(&ActCounters) -> u64| counters.iter().map(|c| f(c)).sum::<u64>();
    let skipped_bytes = sum(|c| c.refault_protected_bytes);
    if now_bytes + skipped_bytes == 0 {
        return None;
    }
    Some(format!(
        "{} MiB touched again after a pageout, kept in RAM for refault_protect (doubled each time a page \
         comes back again, up to {}x); {} MiB of pageouts skipped so far; {} MiB came back more than once; \
         {} MiB paged out again after coming back",
        now_bytes >> 20,
        1u64 << MAX_DOUBLINGS,
        skipped_bytes >> 20,
        (sum(|c| c.refaulted_again_pages) * PAGE_SIZE) >> 20,
        sum(|c| c.repageout_bytes) >> 20
    ))
}

/// Protection doubles at most this many times (16x `refault_protect`).
const MAX_DOUBLINGS: u32 = 4;
/// A page's refault is remembered this many times its last protection
/// after the protection ran out: a page back within that time counts as
/// coming back again.
const HISTORY_FACTOR: u64 = 4;

/// Pages we paged out that came back, by range (sorted, disjoint): how many
/// times in a row, and until when they stay out of pageouts.
#[derive(Debug, Default)]
pub(crate) struct RefaultHistory {
    entries: Vec<Refaulted>,
    /// `refault_protect` in µs (0: nothing is protected or remembered).
    base_us: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refaulted {
    range: AddrRange,
    /// Times in a row (1 = the first), capped at `MAX_DOUBLINGS + 1`.
    times: u32,
    /// Protection length and end.
    span_us: u64,
    until_us: u64,
}

impl RefaultHistory {
    pub(crate) fn new(base_us: u64) -> RefaultHistory {
        RefaultHistory { entries: Vec::new(), base_us }
    }

    /// `came_back` (sorted, disjoint) came back at `now_us`: protect each
    /// range for `base << (n - 1)`, n being one more than the most times a
    /// page of it came back before (remembered). Returns the bytes that had
    /// come back before.
    pub(crate) fn record(&mut self, came_back: &[AddrRange], now_us: u64) -> u64 {
        if self.base_us == 0 || came_back.is_empty() {
            return 0;
        }
        let mut old = std::mem::take(&mut self.entries);
        let mut out = Vec::with_capacity(old.len() + came_back.len());
        let mut again = 0;
        let mut i = 0;
        for &p in came_back {
            while i < old.len() && old[i].range.end <= p.start {
                out.push(old[i]);
                i += 1;
            }
            let mut prior = 0;
            while i < old.len() && old[i].range.start < p.end {
                let e = old[i];
                prior = prior.max(e.times);
                again += e.range.intersect(&p).map_or(0, |x| x.len());
                if e.range.start < p.start {
                    out.push(Refaulted { range: AddrRange { start: e.range.start, end: p.start }, ..e });
                }
                if e.range.end > p.end {
                    // The rest may meet the next range that came back.
                    old[i].range.start = p.end;
                    break;
                }
                i += 1;
            }
            let times = (prior + 1).min(MAX_DOUBLINGS + 1);
            let span_us = self.base_us.saturating_mul(1 << (times - 1));
            out.push(Refaulted { range: p, times, span_us, until_us: now_us.saturating_add(span_us) });
        }
        out.extend_from_slice(&old[i..]);
        self.entries = out;
        again
    }

    /// Drop refaults not protected nor remembered any more.
    pub(crate) fn forget_old(&mut self, now_us: u64) {
        self.entries.retain(|e| now_us < e.until_us.saturating_add(e.span_us.saturating_mul(HISTORY_FACTOR)));
    }

    /// The ranges kept out of pageouts at `now_us`, sorted and disjoint.
    pub(crate) fn protected(&self, now_us: u64) -> Vec<AddrRange> {
        self.entries.iter().filter(|e| e.until_us > now_us).map(|e| e.range).collect()
    }

    pub(crate) fn protected_bytes(&self, now_us: u64) -> u64 {
        self.entries.iter().filter(|e| e.until_us > now_us).map(|e| e.range.len()).sum()
    }

    /// Bytes of `ranges` (sorted, disjoint) that came back before.
    pub(crate) fn overlap_bytes(&self, ranges: &[AddrRange]) -> u64 {
        let known: Vec<AddrRange> = self.entries.iter().map(|e| e.range).collect();
        overlap_bytes(ranges, &known)
    }
}

/// Why no collapse is tried on a process that turned THP off for itself.
const THP_DISABLED_NOTE: &str = "the process turned transparent huge pages off for itself \
     (prctl PR_SET_THP_DISABLE; THP_enabled: 0 in /proc/PID/status): the kernel refuses every \
     MADV_COLLAPSE on it, so none is tried";

/// The most sampled pages [`PidActor`] remembers (8 B each, 4 GiB of pages).
pub const PROBE_HISTORY_MAX: usize = 1 << 20;

/// Whether `addr` lies in one of `ranges` (sorted by start, disjoint).
fn in_sorted(ranges: &[AddrRange], addr: u64) -> bool {
    let i = ranges.partition_point(|r| r.start.0 <= addr);
    i > 0 && ranges[i - 1].end.0 > addr
}

/// `project show` lines about THP promotion and demotion over `actors` (the
/// processes of one task); none when no actor runs a THP rule.
pub fn thp_extra(actors: &[&PidActor]) -> Vec<(String, String)> {
    let on: Vec<&&PidActor> = actors.iter().filter(|a| a.thp_rules).collect();
    if on.is_empty() {
        return Vec::new();
    }
    let sum = |f: &dyn Fn(&PidActor) -> u64| -> u64 { on.iter().map(|a| f(a)).sum() };
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for a in &on {
        for (k, v) in &a.counters.collapse_errors {
            *errors.entry(k.clone()).or_default() += v;
        }
    }
    let mut collapses = format!(
        "{} done, {} refused, {} failed, {} left alone (swapped pages), {} left alone (sparse: \
         would add {})",
        sum(&|a| a.counters.collapses_done),
        sum(&|a| a.counters.collapses_refused),
        sum(&|a| a.counters.collapses_failed),
        sum(&|a| a.counters.collapses_skipped_swapped),
        sum(&|a| a.counters.collapses_skipped_sparse),
        crate::render::bytes(sum(&|a| a.counters.collapses_skipped_sparse_none_pages) * PAGE_SIZE),
    );
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
        collapses.push_str(&format!("; errors: {}", list.join(", ")));
    }
    let demotions = format!(
        "{} split back, {} still huge after a split",
        sum(&|a| a.counters.demotions),
        sum(&|a| a.counters.demotions_failed)
    );
    let (mut nh, mut refused, mut excluded) = (0, 0, 0);
    for a in &on {
        let (x, y, z) = a.thp.no_collapse_bytes();
        nh += x;
        refused += y;
        excluded += z;
    }
    let b = crate::render::bytes;
    let mut state = format!(
        "huge now {} (pagemap, refreshed {} times); not collapsed: {} no-hugepage mappings, {} refused, {} waiting (swapped pages, sparse units, failed collapses)",
        b(sum(&|a| a.thp.huge_bytes())),
        sum(&|a| a.thp.refreshes),
        b(nh),
        b(refused),
        b(excluded)
    );
    if let Some(e) = on.iter().find_map(|a| a.thp.last_error.clone()) {
        state.push_str(&format!("; last refresh failed: {e}"));
    }
    if on.iter().any(|a| a.thp_disabled) {
        state.push_str(&format!("; {THP_DISABLED_NOTE}"));
    }
    vec![
        ("thp_collapses".into(), collapses),
        ("thp_demotions".into(), demotions),
        ("thp_state".into(), state),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000_000;

    #[test]
    fn a_page_back_again_is_protected_twice_as_long_up_to_16x() {
        let mut h = RefaultHistory::new(MIN);
        let page = [r(0x1000, 0x2000)];
        assert_eq!(h.record(&page, 0), 0, "first time back");
        assert_eq!(h.protected(MIN - 1), page);
        assert!(h.protected(MIN).is_empty(), "one refault_protect, then it may go out again");
        // Back again 30 s after its protection ran out: remembered, 2 minutes now.
        let mut t = MIN + 30_000_000;
        assert_eq!(h.record(&page, t), 0x1000);
        assert_eq!(h.protected(t + 2 * MIN - 1), page);
        assert!(h.protected(t + 2 * MIN).is_empty());
        let mut last = 2;
        for span in [4, 8, 16, 16] {
            // Back a minute after the last protection ran out.
            t += last * MIN + MIN;
            last = span;
            h.forget_old(t);
            assert_eq!(h.record(&page, t), 0x1000);
            assert_eq!(h.protected(t + span * MIN - 1), page, "{span} minutes");
            assert!(h.protected(t + span * MIN).is_empty());
        }
        // Not back for 4x its last protection after it ran out: forgotten.
        t += 16 * MIN + 4 * 16 * MIN;
        h.forget_old(t);
        assert_eq!(h.record(&page, t), 0, "a fresh start");
        assert!(h.protected(t + MIN).is_empty());
    }

    #[test]
    fn refaults_split_and_join_history_by_range() {
        let mut h = RefaultHistory::new(MIN);
        h.record(&[r(0x0, 0x4000), r(0x8000, 0xa000)], 0);
        // Later, a range over the end of one and the start of the other, and
        // one untouched before.
        let t = 2 * MIN;
        assert_eq!(h.record(&[r(0x3000, 0x9000), r(0xc000, 0xd000)], t), 0x2000);
        assert_eq!(
            h.entries.iter().map(|e| (e.range, e.times)).collect::<Vec<_>>(),
            vec![(r(0x0, 0x3000), 1), (r(0x3000, 0x9000), 2), (r(0x9000, 0xa000), 1), (r(0xc000, 0xd000), 1)]
        );
        assert_eq!(h.protected(t + MIN - 1), vec![r(0x3000, 0x9000), r(0xc000, 0xd000)]);
        assert_eq!(h.protected_bytes(t + MIN - 1), 0x7000);
        assert_eq!(h.protected(t + MIN), vec![r(0x3000, 0x9000)]);
        assert_eq!(h.overlap_bytes(&[r(0x2000, 0x4000), r(0x9800, 0xc800)]), 0x2000 + 0x800 + 0x800);
    }

    #[test]
    fn one_old_range_meets_several_new_ones() {
        let mut h = RefaultHistory::new(MIN);
        h.record(&[r(0x0, 0x10000)], 0);
        let t = 2 * MIN;
        assert_eq!(h.record(&[r(0x1000, 0x2000), r(0x4000, 0x5000)], t), 0x2000);
        assert_eq!(
            h.entries.iter().map(|e| (e.range, e.times)).collect::<Vec<_>>(),
            vec![
                (r(0x0, 0x1000), 1),
                (r(0x1000, 0x2000), 2),
                (r(0x2000, 0x4000), 1),
                (r(0x4000, 0x5000), 2),
                (r(0x5000, 0x10000), 1)
            ]
        );
    }

    #[test]
    fn no_refault_protect_keeps_no_history() {
        let mut h = RefaultHistory::new(0);
        assert_eq!(h.record(&[r(0x0, 0x1000)], 0), 0);
        assert!(h.protected(0).is_empty() && h.entries.is_empty());
    }

    fn r(a: u64, b: u64) -> AddrRange {
        AddrRange::new(a, b)
    }

    #[test]
    fn pageout_note_sums_the_processes() {
        assert_eq!(pageout_note(&[&ActCounters::default()]), None);
        let a = ActCounters {
            paged_out_bytes: 6 << 20,
            pageout_swapped_bytes: 3 << 20,
            pageout_unpopulated_bytes: 2 << 20,
            pageout_stayed_bytes: 1 << 20,
            ..ActCounters::default()
        };
        let note = pageout_note(&[&a, &a]).expect("a note after pageouts");
        assert!(note.starts_with("12.0 MiB advised: 6.0 MiB swapped out, 4.0 MiB unpopulated"), "{note}");
        assert!(note.contains("2.0 MiB stayed in RAM"), "{note}");
    }

    #[test]
    fn in_sorted_finds_addresses_inside_ranges_only() {
        let rs = [r(0x1000, 0x3000), r(0x8000, 0x9000)];
        assert!(in_sorted(&rs, 0x1000) && in_sorted(&rs, 0x2fff) && in_sorted(&rs, 0x8000));
        assert!(!in_sorted(&rs, 0x0) && !in_sorted(&rs, 0x3000) && !in_sorted(&rs, 0x9000));
        assert!(!in_sorted(&[], 0x1000));
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

    #[test]
    fn batch_merge_and_removal_equal_one_at_a_time() {
        let adds =
            [r(0x9000, 0xa000), r(0x1000, 0x3000), r(0x3000, 0x4000), r(0x2000, 0x2800), r(0x6000, 0x7000)];
        let cuts = [r(0x2000, 0x2400), r(0x6800, 0x9800), r(0x0, 0x1000), r(0x3f00, 0x4000)];
        let (mut one, mut batch) = (vec![r(0x5000, 0x6000)], vec![r(0x5000, 0x6000)]);
        for a in adds {
            add_range(&mut one, a);
        }
        add_ranges(&mut batch, &adds);
        assert_eq!(one, batch);
        for c in cuts {
            remove_range(&mut one, c);
        }
        remove_ranges(&mut batch, &cuts);
        assert_eq!(one, batch);
        assert_eq!(batch, vec![r(0x1000, 0x2000), r(0x2400, 0x3f00), r(0x5000, 0x6800), r(0x9800, 0xa000)]);
    }
}
