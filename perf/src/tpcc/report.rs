//! `perf/results/tpcc.md` from the run records: the machine and the
//! configs, then the presentation's three tables (cold-page migration,
//! engines, THP) as medians over the runs, the issue's goals with a
//! verdict each, latency percentiles, and every run. Pure but for
//! [`Machine::describe`].

use super::harness::{BenchConfig, Image, RunRecord, RunStatus, SCENARIOS, median};
use super::mariadb;
use super::thp_ab::{AbRun, State};
use std::fmt::Write as _;

/// What the report says about the host.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub mem_total_gib: f64,
    pub kernel: String,
    pub os: String,
    pub thp_enabled: String,
    pub thp_defrag: String,
}

impl Machine {
    /// Read the host's description from /proc and /sys.
    pub fn describe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|x| x.1.trim().to_string())
            })
            .unwrap_or_default();
        let mem = super::sample::field_kib(&read("/proc/meminfo"), "MemTotal").unwrap_or(0);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
            .unwrap_or_default();
        let bracket = |t: String| {
            t.split_whitespace()
                .find(|w| w.starts_with('['))
                .map(|w| w.trim_matches(['[', ']']).to_string())
                .unwrap_or_default()
        };
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            mem_total_gib: mem as f64 / (1 << 20) as f64,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            os,
            thp_enabled: bracket(read("/sys/kernel/mm/transparent_hugepage/enabled")),
            thp_defrag: bracket(read("/sys/kernel/mm/transparent_hugepage/defrag")),
        }
    }
}

/// Everything the report is made from.
#[derive(Debug)]
pub struct ReportInput<'a> {
    pub cfg: &'a BenchConfig,
    pub mariadb_version: &'a str,
    pub image: &'a Image,
    pub machine: &'a Machine,
    pub records: &'a [RunRecord],
    /// (file name, text) of the project templates used.
    pub templates: Vec<(String, String)>,
    pub date: String,
    pub elapsed_s: f64,
    /// False while runs are still going.
    pub complete: bool,
}

/// Medians of one scenario's finished runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Medians {
    pub runs: usize,
    pub tpm_total: f64,
    pub tpmc: f64,
    pub rss_mib: f64,
    pub rss_window_mib: f64,
    pub swap_mib: f64,
    pub sys_used_mib: f64,
    pub sys_unavailable_mib: f64,
    pub daemon_cpu_pct: Option<f64>,
    pub daemon_cpu_pct_all: Option<f64>,
    pub anon_huge_mib: Option<f64>,
    pub zram_mib: Option<f64>,
    /// The engine's monitoring and acting CPU seconds over the whole run,
    /// from `project show` (`monitor-cpu`, `action-cpu`) at its end.
    pub monitor_cpu_s: Option<f64>,
    pub action_cpu_s: Option<f64>,
    /// mariadbd's CPU time per transaction over the measured window, ms.
    pub db_ms_per_txn: Option<f64>,
}

/// mariadbd's CPU time (all threads, user + system) per transaction over
/// the measured window, ms: what THP should lower (fewer TLB misses per
/// transaction), read beside tpmTotal because it does not count the time
/// mariadbd waited for a CPU the driver or another job held.
pub fn db_ms_per_txn(r: &RunRecord) -> Option<f64> {
    r.db_cpu_pct.filter(|_| r.tpm_total > 0.0).map(|pct| pct / 100.0 * 60_000.0 / r.tpm_total)
}

/// A `key 1.234s` figure of `project show` (summed over its tasks).
fn show_seconds(show: &str, key: &str) -> Option<f64> {
    let mut total = None;
    for word in show.split_whitespace().collect::<Vec<_>>().windows(2) {
        if word[0] == key
            && let Some(v) = word[1].strip_suffix('s').and_then(|v| v.parse::<f64>().ok())
        {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

/// A `1234 word` figure of `project show`: the number right before each
/// word starting with `word`, summed over its tasks (`22374 checked,`,
/// `paged out 7605 sampled pages`).
fn show_count(show: &str, word: &str) -> Option<f64> {
    let mut total = None;
    for w in show.split_whitespace().collect::<Vec<_>>().windows(2) {
        if w[1].starts_with(word)
            && let Ok(v) = w[0].parse::<f64>()
        {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

/// The median over the finished runs of `id` of a `project show` count.
fn show_count_median(records: &[RunRecord], id: &str, word: &str) -> Option<f64> {
    let done = records.iter().filter(|r| r.scenario == id && r.status == RunStatus::Done);
    opt_median(done.map(|r| show_count(&r.project_show, word)).collect())
}

/// How a scenario stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    Measured(Medians),
    Pending(String),
    Failed(String),
    NotRun,
}

fn opt_median(v: Vec<Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = v.into_iter().flatten().collect();
    (!v.is_empty()).then(|| median(v))
}

/// The standing of scenario `id` in `records`.
pub fn standing(records: &[RunRecord], id: &str) -> Standing {
    let mine: Vec<&RunRecord> = records.iter().filter(|r| r.scenario == id).collect();
    let done: Vec<&RunRecord> = mine.iter().copied().filter(|r| r.status == RunStatus::Done).collect();
    if !done.is_empty() {
        let m = |f: fn(&RunRecord) -> f64| median(done.iter().map(|r| f(r)).collect());
        let o = |f: fn(&RunRecord) -> Option<f64>| opt_median(done.iter().map(|r| f(r)).collect());
        return Standing::Measured(Medians {
            runs: done.len(),
            tpm_total: m(|r| r.tpm_total),
            tpmc: m(|r| r.tpmc),
            rss_mib: m(|r| r.rss_mib_end),
            rss_window_mib: m(|r| r.rss_mib_median),
            swap_mib: m(|r| r.swap_mib_end),
            sys_used_mib: m(|r| r.sys_used_mib_median),
            sys_unavailable_mib: m(|r| r.sys_unavailable_mib_median),
            daemon_cpu_pct: o(|r| r.daemon_cpu_pct),
            daemon_cpu_pct_all: o(|r| r.daemon_cpu_pct_all),
            anon_huge_mib: o(|r| r.anon_huge_mib_end),
            zram_mib: o(|r| r.zram_used_mib_end),
            monitor_cpu_s: o(|r| show_seconds(&r.project_show, "monitor-cpu")),
            action_cpu_s: o(|r| show_seconds(&r.project_show, "action-cpu")),
            db_ms_per_txn: o(db_ms_per_txn),
        });
    }
    for r in &mine {
        if let RunStatus::Pending(why) = &r.status {
            return Standing::Pending(why.clone());
        }
    }
    match mine.last().map(|r| &r.status) {
        Some(RunStatus::Failed(why)) => Standing::Failed(why.clone()),
        _ => Standing::NotRun,
    }
}

fn pct_change(new: f64, base: f64) -> f64 {
    if base == 0.0 { 0.0 } else { (new - base) / base * 100.0 }
}

fn signed(v: f64) -> String {
    format!("{v:+.1} %")
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// One line of text for a status cell (no table-breaking characters).
fn cell(s: &str) -> String {
    let one: String = s.lines().next().unwrap_or("").replace('|', "/");
    if one.len() > 160 {
        format!("{}…", &one[..one.char_indices().nth(157).map_or(one.len(), |x| x.0)])
    } else {
        one
    }
}

fn status_text(s: &Standing) -> String {
    match s {
        Standing::Measured(m) => format!("{} runs", m.runs),
        Standing::Pending(why) => format!("pending: {}", cell(why)),
        Standing::Failed(why) => format!("failed: {}", cell(why)),
        Standing::NotRun => "not run".into(),
    }
}

/// tpmTotal change of each finished run of `id` against the baseline run
/// with the same number (runs are interleaved, so each pair shared the
/// machine's state of the moment), %, in run order.
pub fn paired_changes(records: &[RunRecord], id: &str) -> Vec<f64> {
    let done = |r: &&RunRecord| r.status == RunStatus::Done;
    records
        .iter()
        .filter(|r| r.scenario == id)
        .filter(done)
        .filter_map(|r| {
            let b = records.iter().filter(done).find(|b| b.scenario == "baseline" && b.run == r.run)?;
            Some(pct_change(r.tpm_total, b.tpm_total))
        })
        .collect()
}

/// Signed changes with one decimal, `+1.0 / -2.5`.
fn per_run(v: &[f64]) -> String {
    v.iter().map(|c| format!("{c:+.1}")).collect::<Vec<_>>().join(" / ")
}

/// `; paired with the baseline run by run: -3.1 / -8.0 / +1.2 %, median -3.1 %`, or nothing.
fn paired_text(records: &[RunRecord], id: &str) -> String {
    let v = paired_changes(records, id);
    if v.is_empty() {
        return String::new();
    }
    format!("; paired with the baseline run by run: {} %, median {:+.1} %", per_run(&v), median(v))
}

/// The verdicts on the issue's goals, one line each.
pub fn goals(records: &[RunRecord]) -> Vec<String> {
    let base = standing(records, "baseline");
    let mut out = Vec::new();
    let Standing::Measured(b) = &base else {
        let mut out = vec!["no baseline measured: no verdict on goals 1-3 across runs".to_string()];
        out.extend(ab_goal(records));
        return out;
    };
    // 1. Cold pages: >= 50 % RSS saved for <= 10 % tpmTotal loss.
    for id in ["cold-zram", "cold-zram-aggressive", "cold-swapfile"] {
        out.push(match standing(records, id) {
            Standing::Measured(c) => {
                let saved = -pct_change(c.rss_mib, b.rss_mib);
                let loss = -pct_change(c.tpm_total, b.tpm_total);
                let ok = saved >= 50.0 && loss <= 10.0;
                format!(
                    "`{id}` saves >= 50 % of mariadbd's RSS for <= 10 % tpmTotal loss: **{}** — {saved:.1} % saved, {loss:.1} % tpmTotal lost by medians{} (presentation: 52 % for 17 %)",
                    if ok { "met" } else { "not met" },
                    paired_text(records, id)
                )
            }
            other => format!("`{id}`: {}", status_text(&other)),
        });
    }
    // 2. Region engine CPU <= 1/10 of the page engine's at equal memory saved.
    out.push(match (standing(records, "cold-zram"), standing(records, "cold-page")) {
        (Standing::Measured(r), Standing::Measured(p)) => {
            let (rc, pc) = (r.daemon_cpu_pct.unwrap_or(0.0), p.daemon_cpu_pct.unwrap_or(0.0));
            // Memory saved as the median VmRSS over the measured window, for
            // the baseline too: the page engine's refault probe pages out the
            // whole resident set at each round and the workload faults its
            // working set back, so its VmRSS at one instant (the window's
            // end) depends on where in its round that instant falls.
            let (bw, rw, pw) = (b.rss_window_mib, r.rss_window_mib, p.rss_window_mib);
            let (rs, ps) = (-pct_change(rw, bw), -pct_change(pw, bw));
            // "At equal memory saved": CPU per GiB of RSS saved; a run that
            // saved nothing is charged as if it had saved 1 MiB.
            let per_gib = |cpu: f64, rss: f64| cpu / ((bw - rss).max(1.0) / 1024.0);
            let (rg, pg) = (per_gib(rc, rw), per_gib(pc, pw));
            let ok = pc > 0.0 && rg <= pg / 10.0;
            let mut line = format!(
                "Region engine CPU <= 1/10 of the page engine's at equal memory saved: **{}** — etmemd's CPU: region {rc:.2} % of a CPU for {rs:.1} % saved ({rg:.2} % per GiB saved), page {pc:.2} % for {ps:.1} % saved ({pg:.2} % per GiB saved): {:.1}x (memory saved: median VmRSS over the measured window, see section 2)",
                if ok { "met" } else { "not met" },
                if rg > 0.0 { pg / rg } else { f64::INFINITY }
            );
            // The monitoring part alone (the page engine's refault probe
            // pages out as it scans; the region engine's pageouts are
            // acting CPU, the same work per byte for either engine).
            if let (Some(rm), Some(pm)) = (r.monitor_cpu_s, p.monitor_cpu_s) {
                let (rmg, pmg) = (per_gib(rm, rw), per_gib(pm, pw));
                line.push_str(&format!(
                    "; monitoring CPU alone: region {rm:.1} s ({rmg:.2} s per GiB saved), page {pm:.1} s ({pmg:.2} s per GiB saved): {:.1}x, but the page engine's monitoring includes the pageouts of what it saves (section 2), so the whole-CPU ratio is the like-for-like one",
                    if rmg > 0.0 { pmg / rmg } else { f64::INFINITY }
                ));
            }
            line
        }
        (_, Standing::Measured(_)) => "Region vs page engine: the region run is missing".into(),
        (_, other) => format!("Region engine CPU <= 1/10 of the page engine's: {}", status_text(&other)),
    });
    // 3. THP: >= 70 % of always's gain for <= 2 % more memory.
    out.push(match (standing(records, "thp-always"), standing(records, "thp-promote")) {
        (Standing::Measured(a), Standing::Measured(p)) => {
            let gain_always = pct_change(a.tpm_total, b.tpm_total);
            let gain_ours = pct_change(p.tpm_total, b.tpm_total);
            let kept = if gain_always > 0.0 { gain_ours / gain_always * 100.0 } else { f64::NAN };
            let mem = pct_change(p.rss_mib, b.rss_mib);
            let ok = gain_always > 0.0 && kept >= 70.0 && mem <= 2.0;
            let mut line = format!(
                "THP promotion keeps >= 70 % of THP-always's gain for <= 2 % more memory: **{}** — always {gain_always:+.2} %, ours {gain_ours:+.2} % ({}), mariadbd RSS {mem:+.2} %{} (presentation: 10.25 % of 12.47 % for +1.31 %)",
                if ok { "met" } else { "not met" },
                if kept.is_finite() { format!("{kept:.0} % of always's gain") } else { "always gained nothing here".into() },
                paired_text(records, "thp-promote").replacen("; paired", "; ours paired", 1),
            );
            if let (Some(bc), Some(ac), Some(pc)) = (b.db_ms_per_txn, a.db_ms_per_txn, p.db_ms_per_txn) {
                let (sa, sp) = (-pct_change(ac, bc), -pct_change(pc, bc));
                line.push_str(&format!(
                    "; mariadbd CPU per transaction ({bc:.2} ms with `madvise`): always {:+.1} %, ours {:+.1} %{}",
                    -sa,
                    -sp,
                    if sa > 0.0 { format!(" ({:.0} % of always's saving)", sp / sa * 100.0) } else { String::new() }
                ));
            }
            // The bound for promotion that adds no memory: what collapsing
            // every fully populated unit keeps of always's gain.
            if let Standing::Measured(all) = standing(records, "thp-promote-all") {
                let gain = pct_change(all.tpm_total, b.tpm_total);
                let cpu = b.db_ms_per_txn.zip(all.db_ms_per_txn).map_or(String::new(), |(bc, lc)| {
                    format!(", mariadbd CPU per transaction {:+.1} %", pct_change(lc, bc))
                });
                line.push_str(&format!(
                    "; the bound, every fully populated unit collapsed (`thp-promote-all`): {gain:+.2} %{}, RSS {:+.2} %{cpu}{}",
                    if gain_always > 0.0 { format!(" ({:.0} % of always's gain)", gain / gain_always * 100.0) } else { String::new() },
                    pct_change(all.rss_mib, b.rss_mib),
                    paired_text(records, "thp-promote-all"),
                ));
            }
            line
        }
        (Standing::Measured(_), other) | (other, _) => format!("THP promotion: {}", status_text(&other)),
    });
    out.extend(ab_goal(records));
    out
}

/// The goal-3 verdict of the in-run A/B: `all` (every fully populated unit
/// huge) stands for always's gain without its added memory.
fn ab_goal(records: &[RunRecord]) -> Option<String> {
    let (ours, ours_cpu) = ab_changes(records, State::Ours);
    let (all, all_cpu) = ab_changes(records, State::All);
    if ours.is_empty() || all.is_empty() {
        return None;
    }
    let (go, ga) = (median(ours.clone()), median(all.clone()));
    let rss = |s: State| {
        median(
            ab_runs(records)
                .iter()
                .flat_map(|(_, a)| a.phases.iter().filter(move |p| p.state == s).filter_map(|p| p.rss_mib))
                .collect(),
        )
    };
    let mem = pct_change(rss(State::Ours), rss(State::Small));
    let kept = go / ga * 100.0;
    let ok = ga > 0.0 && kept >= 70.0 && mem <= 2.0;
    let cpu = if ours_cpu.is_empty() || all_cpu.is_empty() {
        String::new()
    } else {
        format!(
            "; mariadbd CPU per transaction: all {:+.1} %, ours {:+.1} %",
            median(all_cpu),
            median(ours_cpu)
        )
    };
    Some(format!(
        "THP promotion keeps >= 70 % of the gain of huge pages everywhere for <= 2 % more memory, inside one run (`thp-ab`, {} cycles): **{}** — every fully populated unit huge (standing for `always` without its added memory) {ga:+.2} % over all split (per cycle {} %), ours {go:+.2} % (per cycle {} %){}, VmRSS {mem:+.2} % over all split{cpu}",
        all.len(),
        if ok { "met" } else { "not met" },
        per_run(&all),
        per_run(&ours),
        match (ga > 0.0, go > 0.0) {
            (true, true) => format!(", {kept:.0} % of it"),
            (true, false) => ", none of it".to_string(),
            (false, _) => String::new(),
        },
    ))
}

/// The A/B runs' records that have phases.
fn ab_runs(records: &[RunRecord]) -> Vec<(u32, &AbRun)> {
    records
        .iter()
        .filter(|r| r.status == RunStatus::Done)
        .filter_map(|r| r.ab.as_ref().filter(|a| !a.phases.is_empty()).map(|a| (r.run, a)))
        .collect()
}

/// Per state, over every complete cycle of every A/B run: the tpm and CPU
/// per transaction changes over the cycle's `small` phase.
fn ab_changes(records: &[RunRecord], state: State) -> (Vec<f64>, Vec<f64>) {
    let all: Vec<(f64, Option<f64>)> = ab_runs(records).iter().flat_map(|(_, a)| a.changes(state)).collect();
    (all.iter().map(|c| c.0).collect(), all.iter().filter_map(|c| c.1).collect())
}

/// Section 3b: huge pages A/B inside one run.
fn ab_section(o: &mut String, records: &[RunRecord]) {
    let runs = ab_runs(records);
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(o, "### Huge pages inside one run (`thp-ab`)\n");
    let _ = writeln!(
        o,
        "Runs of different scenarios drift apart by more than huge pages change, so `thp-ab` compares three states inside one mariadbd: \
         **small** (every huge page split), **ours** (huge pages where etmemd's promotion, `thp-promote.toml`, had put them by the end of the warm-up; etmemd is then stopped and its choice frozen) \
         and **all** (every fully populated 2 MiB unit collapsed: the bound of promotion that adds no memory). \
         The harness splits (a partial `MADV_COLD`) and collapses (`MADV_COLLAPSE`, fully populated units only) through a pidfd. \
         Each cycle runs the three in a rotated order; a phase's transition and the settling after it are not measured. \
         Changes are over the `small` phase of the same cycle, medians over every complete cycle of every run.\n"
    );
    if let Some(plan) = SCENARIOS.iter().find_map(|sc| sc.ab) {
        let _ = writeln!(
            o,
            "The scenario's plan: a warm-up of at least {} s under etmemd's promotion, then {} cycles of three {} s phases, each after its transition and {} s of settling.\n",
            plan.promote_for.as_secs(),
            plan.cycles,
            plan.phase.as_secs(),
            plan.settle.as_secs()
        );
    }
    let _ = writeln!(
        o,
        "| state | tpmTotal change | per cycle | mariadbd CPU ms per transaction change | huge MiB | VmRSS MiB | transition s (CPU s) |"
    );
    let _ = writeln!(o, "|---|---:|---|---:|---:|---:|---:|");
    for state in State::ALL {
        let (tpm, cpu) = ab_changes(records, state);
        let phases: Vec<&super::thp_ab::Phase> =
            runs.iter().flat_map(|(_, a)| a.phases.iter().filter(move |p| p.state == state)).collect();
        let med =
            |f: fn(&super::thp_ab::Phase) -> Option<f64>| opt_median(phases.iter().map(|p| f(p)).collect());
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} ({}) |",
            state.name(),
            if state == State::Small || tpm.is_empty() { "–".into() } else { signed(median(tpm.clone())) },
            if state == State::Small || tpm.is_empty() { "–".into() } else { per_run(&tpm) + " %" },
            if state == State::Small || cpu.is_empty() { "–".into() } else { signed(median(cpu)) },
            opt(med(|p| Some(p.huge_mib)), 0),
            opt(med(|p| p.rss_mib), 0),
            opt(med(|p| Some(p.transition_s)), 1),
            opt(med(|p| Some(p.transition_cpu_s)), 1),
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "| run | cycle | state | tpmTotal | mariadbd CPU ms per transaction | huge MiB | VmRSS MiB | collapsed | failed | split | transition s | CPU s |"
    );
    let _ = writeln!(o, "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (run, a) in &runs {
        for p in &a.phases {
            let _ = writeln!(
                o,
                "| {run} | {} | {} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {:.1} | {:.1} |",
                p.cycle + 1,
                p.state.name(),
                p.tpm,
                opt(p.db_ms_per_txn, 3),
                p.huge_mib,
                opt(p.rss_mib, 0),
                p.collapsed,
                p.collapse_failed,
                p.split,
                p.transition_s,
                p.transition_cpu_s
            );
        }
    }
    let _ = writeln!(o);
    for (run, a) in &runs {
        let _ = writeln!(
            o,
            "- run {run}: etmemd's promotion had made {:.0} MiB huge when it was stopped",
            a.ours_mib
        );
        if let Some(e) = &a.error {
            let _ = writeln!(o, "- run {run} stopped early: {e}");
        }
    }
    let _ = writeln!(o);
}

/// Render the whole results file.
pub fn render(input: &ReportInput<'_>) -> String {
    let cfg = input.cfg;
    let m = input.machine;
    let records = input.records;
    let mut o = String::new();
    let _ = writeln!(o, "# TPC-C on MariaDB under etmemd\n");
    let _ = writeln!(
        o,
        "Issue 8: the etmem DAMON presentation's MySQL + TPC-C tables, reproduced at this machine's scale.\n\
         Generated by `scripts/tpcc` (`target/release/tpcc bench`) on {}{}; do not edit by hand.\n",
        input.date,
        if input.complete { "" } else { " — **partial: runs still going**" }
    );
    let _ = writeln!(o, "## Machine and setup\n");
    let _ = writeln!(
        o,
        "- {} × {}, {:.1} GiB RAM, Linux {}, {}; THP `enabled` = {}, `defrag` = {} before the run.",
        m.cpus, m.cpu, m.mem_total_gib, m.kernel, m.os, m.thp_enabled, m.thp_defrag
    );
    let _ = writeln!(
        o,
        "- {}, our own `mariadbd` (Debian's mariadb-server-core), unix socket only, data directory under `{}`.",
        input.mariadb_version,
        cfg.work_dir.display()
    );
    let _ = writeln!(
        o,
        "- TPC-C: {} warehouses ({} rows, {} MiB of table files, loaded in {:.0} s, kept as an image and copied for every run), \
         buffer pool {} MiB (every page of the image is read in at start: `ib_buffer_pool` dumped at 100 %, as a server that has been up for a while).",
        input.image.warehouses,
        input.image.rows,
        input.image.tables_bytes >> 20,
        input.image.load_s,
        cfg.buffer_pool_bytes >> 20
    );
    let _ = writeln!(
        o,
        "- {} terminals, no keying or think time, standard mix (45/43/4/4/4, 1 % new-order rollbacks, 60 % by last name); \
         {} s warm-up, {} s measured; {} runs per scenario, interleaved; figures are medians over the runs.",
        cfg.terminals,
        cfg.warmup.as_secs(),
        cfg.measure.as_secs(),
        cfg.runs
    );
    let _ = writeln!(
        o,
        "- Memory: mariadbd's VmRSS and VmSwap at the end of the measured window; MemTotal − MemFree as the median over the window \
         (it includes the page cache and zram's compressed pages). etmemd's CPU: utime + stime over the measured window, % of one CPU; \
         it starts with the project before the warm-up.\n\
         - On a shared machine other jobs compete for the 2 CPUs (see the load average column): differences in throughput of less \
         than about 10 % between scenarios are then within the noise.\n\
         - Whole benchmark: {:.0} min.",
        input.elapsed_s / 60.0
    );
    for note in &cfg.notes {
        let _ = writeln!(o, "- {note}");
    }
    let mut foreign: Vec<&String> = records.iter().flat_map(|r| &r.foreign_swaps).collect();
    foreign.sort();
    foreign.dedup();
    if !foreign.is_empty() {
        let _ = writeln!(
            o,
            "- **Caveat:** swap areas of other jobs were active during some runs ({}); pages paged out \
             may have gone to them (same or higher priority) instead of the project's own device.",
            foreign.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
        );
    }
    let _ = writeln!(o);

    let base = standing(records, "baseline");
    let b = match &base {
        Standing::Measured(b) => Some(b.clone()),
        _ => None,
    };
    let change =
        |v: f64, f: fn(&Medians) -> f64| b.as_ref().map_or("–".into(), |b| signed(pct_change(v, f(b))));
    let saved = |v: f64| b.as_ref().map_or("–".into(), |b| format!("{:.1} %", -pct_change(v, b.rss_mib)));

    let _ = writeln!(o, "## Goals\n");
    for g in goals(records) {
        let _ = writeln!(o, "- {g}");
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "## 1. Cold-page migration vs none\n");
    let _ = writeln!(
        o,
        "| scenario | tpmTotal | change | tpmC | VmRSS MiB | VmSwap MiB | RSS saved | MemTotal−MemFree MiB | zram RAM MiB | etmemd CPU % | runs |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for id in [
        "baseline",
        "cold-zram-watch-dense",
        "cold-zram-watch",
        "cold-zram",
        "cold-zram-aggressive",
        "cold-swapfile",
    ] {
        row_memory(&mut o, id, &standing(records, id), &change, &saved);
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "### What watching costs: the refault probe with and without stopping early\n");
    let _ = writeln!(
        o,
        "Monitoring alone (no action) against the baseline run beside it; cold-zram adds the pageouts. Per run, medians: the probe's checks, the sampled pages it paged out (each one the workload touches faults back in) and the samples filled in for regions already seen accessed (`max_probed_accesses`).\n"
    );
    let _ = writeln!(
        o,
        "| scenario | tpmTotal change | paired, run by run | etmemd CPU % | checks | sampled pages paged out | filled in | runs |"
    );
    let _ = writeln!(o, "|---|---:|---|---:|---:|---:|---:|---|");
    for id in ["cold-zram-watch-dense", "cold-zram-watch", "cold-zram"] {
        match standing(records, id) {
            Standing::Measured(s) => {
                let paired = paired_changes(records, id);
                let count = |w: &str| opt(show_count_median(records, id, w), 0);
                let _ = writeln!(
                    o,
                    "| {id} | {} | {} % | {} | {} | {} | {} | {} |",
                    change(s.tpm_total, |b| b.tpm_total),
                    per_run(&paired),
                    opt(s.daemon_cpu_pct, 2),
                    count("checked"),
                    count("sampled"),
                    count("filled"),
                    s.runs
                );
            }
            other => {
                let _ = writeln!(o, "| {id} | – | – | – | – | – | – | {} |", status_text(&other));
            }
        }
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "## 2. Engines: page vs region vs kernel DAMON\n");
    let _ = writeln!(
        o,
        "| engine | etmemd CPU % (measured window) | CPU % (whole run) | monitoring / acting CPU s (whole run) | memory saved MiB (window median) | CPU % per GiB saved | RSS saved (window median) | tpmTotal | change | runs |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (engine, id) in [("region (zram)", "cold-zram"), ("page (zram)", "cold-page")] {
        match standing(records, id) {
            Standing::Measured(s) => {
                let saved_mib = b
                    .as_ref()
                    .map_or("–".into(), |b| format!("{:.0}", b.rss_window_mib - s.rss_window_mib));
                let saved_pct = b.as_ref().map_or("–".into(), |b| {
                    format!("{:.1} %", -pct_change(s.rss_window_mib, b.rss_window_mib))
                });
                let per_gib = match (b.as_ref(), s.daemon_cpu_pct) {
                    (Some(b), Some(cpu)) if b.rss_window_mib > s.rss_window_mib => {
                        format!("{:.2}", cpu / ((b.rss_window_mib - s.rss_window_mib) / 1024.0))
                    }
                    _ => "–".into(),
                };
                let _ = writeln!(
                    o,
                    "| {engine} | {} | {} | {} / {} | {saved_mib} | {per_gib} | {} | {:.0} | {} | {} |",
                    opt(s.daemon_cpu_pct, 2),
                    opt(s.daemon_cpu_pct_all, 2),
                    opt(s.monitor_cpu_s, 1),
                    opt(s.action_cpu_s, 1),
                    saved_pct,
                    s.tpm_total,
                    change(s.tpm_total, |b| b.tpm_total),
                    s.runs
                );
            }
            other => {
                let _ = writeln!(o, "| {engine} | – | – | – | – | – | – | – | – | {} |", status_text(&other));
            }
        }
    }
    let _ = writeln!(
        o,
        "| kernel-damon | – | – | – | – | – | – | – | – | not run: this kernel has no DAMON vaddr (and its kdamond belongs to the machine); the kernel-damon engine is exercised in the QEMU guest |"
    );
    let _ = writeln!(
        o,
        "\n*monitoring / acting*: with the refault probe (this kernel has no idle page tracking) the page engine \
         pages out every resident page it checks, faults back in those the policy keeps and leaves the rest out, \
         so the pageouts of the memory it saves are in its monitoring CPU and its acting CPU is about nil; the region engine's probe pages out \
         only its samples, and the policy's pageouts are its acting CPU (the same kernel work per byte as the \
         page engine's). Compare whole CPU per GiB saved.\n\n\
         *memory saved*: the baseline's median VmRSS over the measured window minus the engine's (section 1 \
         gives VmRSS at the window's end). The page engine's refault probe pages out the whole resident set at \
         each round and the workload faults its working set back in over the following seconds, so its VmRSS \
         swings within a window (from about 200 MiB to 2 GiB in these runs) and its value at one instant depends \
         on where in the round that instant falls; the region engine's stays within a few percent."
    );
    let _ = writeln!(o);

    let _ = writeln!(o, "## 3. Transparent huge pages\n");
    let _ = writeln!(
        o,
        "| setting | tpmTotal | change vs madvise | paired, run by run | mariadbd CPU ms per transaction | change | mariadbd VmRSS MiB | RSS change | AnonHugePages MiB | MemTotal−MemFree MiB | runs |"
    );
    let _ = writeln!(o, "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|");
    for (title, id) in [
        ("`madvise`, no action", "baseline"),
        ("`always`", "thp-always"),
        ("`madvise` + our promotion with demotion", "thp-promote"),
        ("`madvise` + every fully populated unit collapsed (bound)", "thp-promote-all"),
    ] {
        match standing(records, id) {
            Standing::Measured(s) => {
                let paired = paired_changes(records, id);
                let ms_change = b
                    .as_ref()
                    .and_then(|b| b.db_ms_per_txn)
                    .zip(s.db_ms_per_txn)
                    .map(|(bm, ms)| signed(pct_change(ms, bm)));
                let _ = writeln!(
                    o,
                    "| {title} | {:.0} | {} | {} | {} | {} | {:.0} | {} | {} | {:.0} | {} |",
                    s.tpm_total,
                    change(s.tpm_total, |b| b.tpm_total),
                    if id == "baseline" || paired.is_empty() {
                        "–".to_string()
                    } else {
                        per_run(&paired) + " %"
                    },
                    opt(s.db_ms_per_txn, 3),
                    ms_change.unwrap_or_else(|| "–".into()),
                    s.rss_mib,
                    change(s.rss_mib, |b| b.rss_mib),
                    opt(s.anon_huge_mib, 0),
                    s.sys_used_mib,
                    s.runs
                );
            }
            other => {
                let _ = writeln!(
                    o,
                    "| {title} | – | – | – | – | – | – | – | – | – | – | {} |",
                    status_text(&other)
                );
            }
        }
    }
    let _ = writeln!(o);

    ab_section(&mut o, records);

    let _ = writeln!(o, "## Latency (ms, medians over the runs)\n");
    let _ = writeln!(o, "| scenario | transaction | p50 | p90 | p95 | p99 | max | retries | failed |");
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for sc in SCENARIOS.iter().filter(|sc| sc.ab.is_none()) {
        let done: Vec<&RunRecord> = records
            .iter()
            .filter(|r| r.scenario == sc.id && r.status == RunStatus::Done && r.driver.is_some())
            .collect();
        if done.is_empty() {
            continue;
        }
        for (i, kind) in super::txn::Kind::ALL.iter().enumerate() {
            let col = |f: fn(&super::driver::TypeResult) -> f64| {
                median(
                    done.iter()
                        .filter_map(|r| r.driver.as_ref().and_then(|d| d.types.get(i)).map(f))
                        .collect(),
                )
            };
            let _ = writeln!(
                o,
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} |",
                sc.id,
                kind.name(),
                col(|t| t.p50_ms),
                col(|t| t.p90_ms),
                col(|t| t.p95_ms),
                col(|t| t.p99_ms),
                col(|t| t.max_ms),
                col(|t| t.retries as f64),
                col(|t| t.failed as f64)
            );
        }
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "## Every run\n");
    let _ = writeln!(
        o,
        "| scenario | run | status | tpmTotal | tpmC | VmRSS MiB | VmSwap MiB | MemTotal−MemFree MiB | etmemd CPU % | mariadbd CPU ms per transaction | AnonHugePages MiB | load avg | minutes |"
    );
    let _ = writeln!(o, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in records {
        let status = match &r.status {
            RunStatus::Done => "done".to_string(),
            RunStatus::Pending(w) => format!("pending: {}", cell(w)),
            RunStatus::Failed(w) => format!("failed: {}", cell(w)),
        };
        let _ = writeln!(
            o,
            "| {} | {} | {status} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {:.1} |",
            r.scenario,
            r.run,
            r.tpm_total,
            r.tpmc,
            r.rss_mib_end,
            r.swap_mib_end,
            r.sys_used_mib_median,
            opt(r.daemon_cpu_pct, 2),
            opt(db_ms_per_txn(r), 3),
            opt(r.anon_huge_mib_end, 0),
            opt(r.loadavg_end, 1),
            r.elapsed_s / 60.0
        );
    }
    let _ = writeln!(o);
    for sc in SCENARIOS {
        let last = records.iter().rev().find(|r| r.scenario == sc.id && r.status == RunStatus::Done);
        if let Some(r) = last.filter(|r| !r.project_show.is_empty()) {
            let _ = writeln!(
                o,
                "`etmem project show` at the end of {} run {}:\n\n```\n{}\n```\n",
                sc.id,
                r.run,
                r.project_show.trim_end()
            );
        }
    }

    let _ = writeln!(o, "## Configs\n");
    let _ =
        writeln!(o, "mariadbd command line (per run; `DATADIR` and `RUNDIR` are the run's folders):\n\n```");
    let args =
        mariadb::server_args(std::path::Path::new("DATADIR"), std::path::Path::new("RUNDIR"), &cfg.server());
    let _ = writeln!(o, "mariadbd {}\n```\n", args.join(" \\\n  "));
    let _ = writeln!(o, "Scenarios:\n");
    for sc in SCENARIOS {
        let _ = writeln!(
            o,
            "- `{}`: {}{}{}",
            sc.id,
            sc.title,
            sc.project.map_or(String::new(), |p| format!("; project `perf/configs/tpcc/{p}`")),
            sc.thp.map_or(String::new(), |t| format!("; THP `enabled` = {t} for the run, restored after"))
        );
    }
    let _ = writeln!(o);
    for (name, text) in &input.templates {
        let _ = writeln!(
            o,
            "`perf/configs/tpcc/{name}` (`@PID@` is mariadbd's pid, `@RUN_DIR@` the run's folder):\n\n```toml\n{}\n```\n",
            text.trim_end()
        );
    }
    o
}

fn row_memory(
    o: &mut String,
    id: &str,
    s: &Standing,
    change: &dyn Fn(f64, fn(&Medians) -> f64) -> String,
    saved: &dyn Fn(f64) -> String,
) {
    let title = SCENARIOS.iter().find(|x| x.id == id).map_or(id, |x| x.title);
    match s {
        Standing::Measured(m) => {
            let _ = writeln!(
                o,
                "| {title} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {} | {:.0} | {} | {} | {} |",
                m.tpm_total,
                change(m.tpm_total, |b| b.tpm_total),
                m.tpmc,
                m.rss_mib,
                m.swap_mib,
                saved(m.rss_mib),
                m.sys_used_mib,
                opt(m.zram_mib, 0),
                opt(m.daemon_cpu_pct, 2),
                m.runs
            );
        }
        other => {
            let _ = writeln!(o, "| {title} | – | – | – | – | – | – | – | – | – | {} |", status_text(other));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, run: u32, tpm: f64, rss: f64, cpu: Option<f64>) -> RunRecord {
        let mut r = blank(id, run);
        r.tpm_total = tpm;
        r.rss_mib_end = rss;
        r.rss_mib_median = rss;
        r.daemon_cpu_pct = cpu;
        r
    }

    fn blank(id: &str, run: u32) -> RunRecord {
        RunRecord {
            scenario: id.into(),
            run,
            status: RunStatus::Done,
            tpm_total: 0.0,
            tpmc: 0.0,
            rss_mib_end: 0.0,
            rss_mib_median: 0.0,
            swap_mib_end: 0.0,
            sys_used_mib_median: 0.0,
            sys_unavailable_mib_median: 0.0,
            daemon_cpu_pct: None,
            daemon_cpu_pct_all: None,
            db_cpu_pct: None,
            anon_huge_mib_end: None,
            zram_used_mib_end: None,
            thp_mode: None,
            loadavg_end: None,
            foreign_swaps: Vec::new(),
            project_show: String::new(),
            driver: None,
            samples: Vec::new(),
            elapsed_s: 0.0,
            ab: None,
        }
    }

    #[test]
    fn goals_judge_medians() {
        let mut recs = vec![
            rec("baseline", 1, 1000.0, 2000.0, None),
            rec("baseline", 2, 1100.0, 2000.0, None),
            rec("baseline", 3, 900.0, 2000.0, None),
            rec("cold-zram", 1, 950.0, 900.0, Some(2.0)),
            rec("cold-zram", 2, 940.0, 950.0, Some(2.0)),
            rec("cold-zram", 3, 500.0, 2000.0, Some(2.0)),
        ];
        let mut pending = blank("cold-page", 1);
        pending.status = RunStatus::Pending("engine page is not in this build".into());
        recs.push(pending);
        let g = goals(&recs);
        assert!(g[0].contains("**met**") && g[0].contains("52.5 % saved"), "{}", g[0]);
        // Run by run: 950/1000, 940/1100, 500/900.
        assert!(g[0].contains("-5.0 / -14.5 / -44.4 %, median -14.5 %"), "{}", g[0]);
        assert!(g[1].contains("not run"), "{}", g[1]);
        assert!(g[2].contains("`cold-swapfile`: not run"), "{}", g[2]);
        assert!(g[3].contains("pending: engine page"), "{}", g[3]);
        assert!(g[4].contains("not run"), "{}", g[4]);
        // The page engine's VmRSS at the window's end caught its probe's
        // round (100 MiB: 1900 MiB "saved", 16.2 % per GiB, 8.3x); over the
        // window its median was 950 MiB: 29.3 % per GiB against the region
        // engine's 1.95 % (1050 MiB saved by its median), 15.0x.
        let mut page = rec("cold-page", 2, 900.0, 100.0, Some(30.0));
        page.rss_mib_median = 950.0;
        recs.push(page);
        recs.retain(|r| r.status == RunStatus::Done);
        let g = goals(&recs);
        assert!(g[3].contains("**met**") && g[3].contains("15.0x"), "{}", g[3]);
    }

    #[test]
    fn the_ab_goal_pairs_each_state_with_small_in_its_cycle() {
        use crate::tpcc::thp_ab::Phase;
        let p = |cycle, state, tpm, rss| Phase {
            cycle,
            state,
            tpm,
            rss_mib: Some(rss),
            db_ms_per_txn: Some(3000.0 / tpm),
            ..Phase::default()
        };
        let mut r = blank("thp-ab", 1);
        r.ab = Some(AbRun {
            ours_mib: 100.0,
            phases: vec![
                p(0, State::Small, 1000.0, 2000.0),
                p(0, State::Ours, 1080.0, 2000.0),
                p(0, State::All, 1100.0, 2010.0),
                p(1, State::Ours, 1300.0, 2000.0),
                p(1, State::All, 1330.0, 2000.0),
                p(1, State::Small, 1200.0, 2000.0),
                // An unfinished cycle: left out.
                p(2, State::All, 5000.0, 2000.0),
            ],
            error: None,
        });
        let g = goals(&[r.clone()]);
        assert_eq!(g.len(), 2, "{g:?}");
        // ours: +8 and +8.33 %, all: +10 and +10.83 %: 78 % kept, no memory added.
        assert!(g[1].contains("(`thp-ab`, 2 cycles): **met**"), "{}", g[1]);
        assert!(g[1].contains("+10.42 % over all split (per cycle +10.0 / +10.8 %)"), "{}", g[1]);
        assert!(g[1].contains("ours +8.17 % (per cycle +8.0 / +8.3 %), 78 % of it"), "{}", g[1]);
        // Ours adding memory fails the goal.
        for ph in &mut r.ab.as_mut().expect("ab").phases {
            if ph.state == State::Ours {
                ph.rss_mib = Some(2100.0);
            }
        }
        assert!(goals(&[r])[1].contains("**not met**"));
    }

    #[test]
    fn thp_goal_reads_throughput_and_cpu_per_transaction() {
        let with_db = |id: &str, run: u32, tpm: f64, rss: f64, db: f64| {
            let mut r = rec(id, run, tpm, rss, None);
            r.db_cpu_pct = Some(db);
            r
        };
        // 100 % of a CPU over 60,000 transactions a minute: 1 ms each.
        assert_eq!(db_ms_per_txn(&with_db("baseline", 1, 60_000.0, 1.0, 100.0)), Some(1.0));
        assert_eq!(db_ms_per_txn(&with_db("baseline", 1, 0.0, 1.0, 100.0)), None);
        let recs = vec![
            with_db("baseline", 1, 1000.0, 2000.0, 100.0),
            with_db("thp-always", 1, 1100.0, 2400.0, 90.0),
            with_db("thp-promote", 1, 1080.0, 2010.0, 95.0),
        ];
        let g = goals(&recs);
        // Always: +10 %, 20 % more RSS; ours +8 % (80 %) for +0.5 %.
        assert!(g[4].contains("**met**") && g[4].contains("80 % of always's gain"), "{}", g[4]);
        assert!(g[4].contains("ours paired with the baseline run by run: +8.0 %"), "{}", g[4]);
        // 60.0 ms -> 49.1 ms (-18.2 %) and 52.8 ms (-12.0 %): 66 % of always's saving.
        assert!(
            g[4].contains(
                "(60.00 ms with `madvise`): always -18.2 %, ours -12.0 % (66 % of always's saving)"
            ),
            "{}",
            g[4]
        );
        assert!(!g[4].contains("the bound"), "no thp-promote-all run, no bound: {}", g[4]);
        let mut recs = recs;
        recs.push(with_db("thp-promote-all", 1, 1095.0, 2000.0, 91.0));
        let g = goals(&recs);
        // +9.5 % of always's +10 %: 95 %, for no memory; 60.0 -> 49.9 ms.
        assert!(
            g[4].contains(
                "the bound, every fully populated unit collapsed (`thp-promote-all`): +9.50 % (95 % of always's gain), \
                 RSS +0.00 %, mariadbd CPU per transaction -16.9 %; paired"
            ),
            "{}",
            g[4]
        );
    }

    #[test]
    fn show_count_reads_the_number_before_a_word() {
        let show = "      probe_cost the refault probe paged out 7605 sampled pages; each hot one faults back in\n      probe_samples 22374 checked, 1130 accessed, 12 unknown, 17746 filled in for regions";
        assert_eq!(show_count(show, "checked"), Some(22374.0));
        assert_eq!(show_count(show, "sampled"), Some(7605.0));
        assert_eq!(show_count(show, "filled"), Some(17746.0));
        assert_eq!(show_count("probe_samples 5 accessed", "filled"), None);
    }

    #[test]
    fn show_seconds_sums_the_tasks() {
        let show = "task a\n      monitor-cpu 2.5s  action-cpu 1.0s\ntask b\n      monitor-cpu 0.5s  action-cpu 0.000s";
        assert_eq!(show_seconds(show, "monitor-cpu"), Some(3.0));
        assert_eq!(show_seconds(show, "action-cpu"), Some(1.0));
        assert_eq!(show_seconds("", "monitor-cpu"), None);
    }

    #[test]
    fn standing_reports_failures_and_pending() {
        let mut f = blank("thp-always", 1);
        f.status = RunStatus::Failed("boom\nsecond line".into());
        assert_eq!(standing(&[f], "thp-always"), Standing::Failed("boom\nsecond line".into()));
        assert_eq!(standing(&[], "baseline"), Standing::NotRun);
        assert_eq!(cell("a|b\nc"), "a/b");
    }
}
