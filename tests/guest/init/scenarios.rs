//! The in-guest scenarios (issue 7, item 5), each a function returning its
//! failures and figures. Sizes are scaled for TCG: workloads of 64-256 MiB,
//! runs of 30-90 s.

use crate::daemon::Etmemd;
use crate::measure::{self, Match};
use crate::{note, os};
use conf::ZramBackend;
use damon_core::ops::kdamond::{self, DamonSysfs, KdamondInfo, tree};
use damon_core::{AddrRange, Snapshot};
use perf::workload::{Child, SpawnOptions};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use swap_backends::zram::ZramSwap;

/// What every scenario gets.
#[derive(Debug)]
pub struct Ctx {
    /// `etmem.bench=1`: the longer benchmark variants.
    pub bench: bool,
    pub has_swap: bool,
}

/// A scenario's outcome: it passed when `failures` is empty.
#[derive(Debug, Default)]
pub struct Outcome {
    pub failures: Vec<String>,
    pub figures: Value,
}

impl Outcome {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            let what = what.into();
            note(format!("check failed: {what}"));
            self.failures.push(what);
        }
    }
}

type Scenario = fn(&Ctx) -> Result<Outcome, String>;

/// Every scenario: name, time budget in seconds, function.
pub const ALL: &[(&str, u64, Scenario)] = &[
    ("coexist", 240, coexist),
    ("monitor", 360, monitor),
    ("pageout", 480, pageout),
    ("memcg", 300, memcg),
    ("bench", 900, bench),
];

/// Bytes of one page.
const PAGE: u64 = 4096;

/// A zram swap device for the whole run (lz4, highest priority).
pub fn zram_swap() -> Result<ZramSwap, String> {
    let b =
        ZramBackend { size_bytes: 768 << 20, compressor: "lz4".into(), priority: 100, mem_limit_bytes: None };
    ZramSwap::create(&b, None).map_err(|e| swap_backends::error_chain(&e))
}

fn workload(alias: &str, args: &[&str]) -> Result<Child, String> {
    let opts = SpawnOptions {
        binary: Some(PathBuf::from(format!("/bin/{alias}"))),
        inherit_stderr: true,
        ..SpawnOptions::default()
    };
    let mut all: Vec<&str> = args.to_vec();
    all.push("--quiet");
    Child::spawn_with(&opts, all).map_err(|e| format!("spawn {alias}: {e}"))
}

fn sleep_s(s: u64) {
    std::thread::sleep(Duration::from_secs(s));
}

/// The task snapshots an engine command returns: task -> pid -> snapshot.
fn snapshots(
    d: &Etmemd,
    project: &str,
    engine: &str,
) -> Result<BTreeMap<String, BTreeMap<u32, Snapshot>>, String> {
    let text = d.engine("snapshot", project, engine)?;
    serde_json::from_str(&text).map_err(|e| format!("engine snapshot of {project} is not JSON ({e}): {text}"))
}

/// The snapshot of `pid` in a project, waiting up to `wait` for one with regions.
fn snapshot_of(
    d: &Etmemd,
    project: &str,
    engine: &str,
    pid: u32,
    wait: Duration,
) -> Result<Snapshot, String> {
    let end = Instant::now() + wait;
    loop {
        let all = snapshots(d, project, engine)?;
        if let Some(s) = all.values().find_map(|m| m.get(&pid)).filter(|s| !s.regions.is_empty()) {
            return Ok(s.clone());
        }
        if Instant::now() > end {
            return Err(format!("{project}: no snapshot of pid {pid} within {} s: {all:?}", wait.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

fn extra_f(v: &Value, key: &str) -> f64 {
    v["extra"][key].as_str().and_then(|s| s.parse().ok()).unwrap_or(0.0)
}

fn survey() -> Vec<KdamondInfo> {
    DamonSysfs::system().survey().unwrap_or_else(|e| {
        note(format!("cannot survey the kdamonds: {}", swap_backends::error_chain(&e)));
        Vec::new()
    })
}

fn kernel_damon_toml(project: &str, process: &str, policy: &str) -> String {
    format!(
        "[project]\nname = \"{project}\"\n\n[engine]\nkind = \"kernel-damon\"\n\n[[task]]\nname = \"w\"\n\
         process = \"{process}\"\n\n[policy]\n{policy}\n"
    )
}

fn region_toml(project: &str, process: &str, probe: &str) -> String {
    format!(
        "[project]\nname = \"{project}\"\n\n[engine]\nkind = \"region\"\nprobe = \"{probe}\"\n\n[[task]]\n\
         name = \"w\"\nprocess = \"{process}\"\n\n[policy]\ncold_action = \"none\"\n"
    )
}

/// etmem's damon config: pageout after 5 s (50 aggregations) at zero
/// accesses, every process named `process`.
fn etmem_damon_ini(project: &str, process: &str) -> String {
    format!(
        "[project]\nname={project}\nscan_type=region\nsample_interval=5000\naggr_interval=100000\n\
         update_interval=1000000\nmin_nr_regions=10\nmax_nr_regions=1000\n\n[engine]\nname=damon\n\
         project={project}\nmin_size=0\nmax_size=4294967295\nmin_acc=0\nmax_acc=0\nmin_age=50\n\
         max_age=4294967295\naction=pageout\n\n[task]\nproject={project}\nengine=damon\nname=w\ntype=name\n\
         value={process}\n"
    )
}

/// Act as another DAMON user (as damo would): one paddr kdamond over the
/// biggest System RAM range, turned on.
fn foreign_kdamond_on() -> Result<(), String> {
    let admin = PathBuf::from(kdamond::DEFAULT_ADMIN_DIR);
    let ram = kdamond::system_ram_ranges()
        .into_iter()
        .max_by_key(AddrRange::len)
        .ok_or("no System RAM in /proc/iomem")?;
    let k = "kdamonds/0/contexts/0";
    let writes = [
        ("kdamonds/nr_kdamonds", "1".to_string()),
        ("kdamonds/0/contexts/nr_contexts", "1".into()),
        (&format!("{k}/operations"), "paddr".into()),
        (&format!("{k}/targets/nr_targets"), "1".into()),
        (&format!("{k}/targets/0/regions/nr_regions"), "1".into()),
        (&format!("{k}/targets/0/regions/0/end"), ram.end.0.to_string()),
        (&format!("{k}/targets/0/regions/0/start"), ram.start.0.to_string()),
        ("kdamonds/0/state", "on".into()),
    ];
    for (p, v) in writes {
        tree::write(&admin.join(p), &v).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn foreign_kdamond_off() {
    let admin = PathBuf::from(kdamond::DEFAULT_ADMIN_DIR);
    let _ = tree::write(&admin.join("kdamonds/0/state"), "off");
    let _ = tree::write(&admin.join("kdamonds/nr_kdamonds"), "0");
}

/// Differences between two tree listings, as paths.
fn listing_diff(a: &[(PathBuf, String)], b: &[(PathBuf, String)]) -> Vec<String> {
    let ma: BTreeMap<_, _> = a.iter().cloned().collect();
    let mb: BTreeMap<_, _> = b.iter().cloned().collect();
    let mut out = Vec::new();
    for (p, v) in &ma {
        match mb.get(p) {
            None => out.push(format!("{} removed", p.display())),
            Some(w) if w != v => out.push(format!("{} {:?} -> {:?}", p.display(), v.trim(), w.trim())),
            _ => {}
        }
    }
    out.extend(mb.keys().filter(|p| !ma.contains_key(*p)).map(|p| format!("{} added", p.display())));
    out
}

/// Coexistence and ownership, on the real 6.12 tree:
/// 1. a kdamond of another user runs: a kernel-damon project refuses to
///    start with the coexistence message and writes nothing; etmem's damon
///    config runs on the userspace region engine instead;
/// 2. a daemon killed with its kdamond running: the next daemon takes the
///    kdamond back instead of calling it foreign; a clean stop leaves
///    nr_kdamonds at 0.
fn coexist(_ctx: &Ctx) -> Result<Outcome, String> {
    let mut out = Outcome::default();
    let sysfs = DamonSysfs::system();
    let mut figures = serde_json::Map::new();

    // Features, through a pool of our own (nothing else runs yet).
    let mut pool = kdamond::KdamondPool::new(sysfs.clone(), None);
    let idx = pool.acquire().map_err(|e| swap_backends::error_chain(&e))?;
    let features = pool.features(idx).map_err(|e| swap_backends::error_chain(&e))?;
    pool.release(idx).map_err(|e| swap_backends::error_chain(&e))?;
    figures.insert("features".into(), serde_json::to_value(&features).unwrap_or_default());
    out.check(features.has_operations(kdamond::OpsKind::Vaddr), "the guest kernel has DAMON vaddr");
    out.check(survey().is_empty(), "a released pool leaves nr_kdamonds at 0");

    let wl = workload("wl-ours", &["--size", "32M", "--hot", "4M"])?;
    foreign_kdamond_on()?;
    let before = sysfs.listing();
    out.check(survey().first().is_some_and(|k| k.running), "the foreign kdamond runs");
    let d = Etmemd::start("coexist")?;
    d.add("kd-co.toml", &kernel_damon_toml("kd-co", "wl-ours", "cold_action = \"none\""))?;
    let r = d.etmem(&["project", "start", "-n", "kd-co"]);
    figures.insert("refusal".into(), json!(r.stderr.trim()));
    out.check(r.code != 0, format!("kernel-damon start must fail beside a foreign kdamond: {}", r.text()));
    out.check(
        r.stderr.contains("did not start") && r.stderr.contains("region engine"),
        format!("the refusal explains coexistence and suggests the region engine: {}", r.stderr.trim()),
    );
    let after = sysfs.listing();
    let diff = listing_diff(&before, &after);
    out.check(diff.is_empty(), format!("nothing under the DAMON tree changed: {diff:?}"));
    // etmem's damon config falls back to the userspace region engine.
    d.add("plain-co.ini", &etmem_damon_ini("plain-co", "wl-ours"))?;
    let r = d.etmem(&["project", "start", "-n", "plain-co"]);
    out.check(r.code == 0, format!("etmem damon config starts on the region engine: {}", r.text()));
    sleep_s(3);
    let stats = d.task_stats("plain-co").unwrap_or_default();
    figures.insert("fallback_stats".into(), stats.clone());
    out.check(
        stats["extra"]["kernel_damon"].as_str().is_some_and(|s| s.contains("did not start")),
        format!("the fallback says why: {stats}"),
    );
    let diff = listing_diff(&before, &sysfs.listing());
    out.check(diff.is_empty(), format!("the fallback wrote nothing under the DAMON tree: {diff:?}"));
    let _ = d.etmem(&["project", "stop", "-n", "plain-co"]);
    drop(d);
    foreign_kdamond_off();
    out.check(survey().is_empty(), "the foreign kdamond is gone");

    // Take-over after a crash.
    let mut d = Etmemd::start("takeover")?;
    d.add("kd-left.toml", &kernel_damon_toml("kd-left", "wl-ours", "cold_action = \"none\""))?;
    d.ok(&["project", "start", "-n", "kd-left"])?;
    let end = Instant::now() + Duration::from_secs(30);
    while !survey().iter().any(|k| k.running && k.target_pids.contains(&wl.pid())) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
    }
    let first = survey();
    out.check(
        first.len() == 1 && first[0].running && first[0].target_pids == vec![wl.pid()],
        format!("the project's kdamond runs with the workload as target: {first:?}"),
    );
    d.restart_after_kill()?;
    // The restarted daemon brings wanted-started projects back; start it if not.
    sleep_s(2);
    let shown = d.show("kd-left").unwrap_or_default();
    if shown["projects"][0]["started"] != true {
        let r = d.etmem(&["project", "start", "-n", "kd-left"]);
        out.check(
            r.code == 0,
            format!("after a crash the project starts again: {}; daemon log: {}", r.text(), d.log_tail(12)),
        );
    }
    let end = Instant::now() + Duration::from_secs(30);
    while !survey().iter().any(|k| k.running && k.pid != first.first().and_then(|k| k.pid))
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let second = survey();
    figures.insert("takeover".into(), json!({"before": first, "after": second}));
    out.check(
        second.len() == 1 && second[0].running && second[0].target_pids == vec![wl.pid()],
        format!("the left-over kdamond was taken back, not added to: {second:?}"),
    );
    d.stop();
    let last = survey();
    out.check(last.is_empty(), format!("a clean daemon stop leaves nr_kdamonds at 0: {last:?}"));
    drop(wl);
    out.figures = Value::Object(figures);
    Ok(out)
}

/// Snapshots read in a row to judge what a monitor found hot.
const HOT_ROUNDS: usize = 3;

/// Hot-set figures of one snapshot against the workload.
fn judge(snap: &Snapshot, wl: &Child) -> (Vec<AddrRange>, Match) {
    let within: Vec<AddrRange> = wl.regions().iter().map(|r| r.range()).collect();
    let found = measure::hot(snap, 1, &within);
    let m = measure::compare(&found, &wl.hot_ranges());
    (found, m)
}

/// The kernel-damon engine and the userspace region engine (soft-dirty
/// probe) watch the same workload: each must find the known hot range, and
/// they must agree with each other. Then the page engine, when this build
/// has it, with the soft-dirty probe.
fn monitor(_ctx: &Ctx) -> Result<Outcome, String> {
    let mut out = Outcome::default();
    let mut figures = serde_json::Map::new();
    // Writes, so that soft-dirty sees what the kdamond's accessed bits see.
    let wl = workload("wl-watch", &["--size", "128M", "--hot", "16M", "--write-ratio", "1"])?;
    let pid = wl.pid();
    let d = Etmemd::start("monitor")?;
    d.add("kd-watch.toml", &kernel_damon_toml("kd-watch", "wl-watch", "cold_action = \"none\""))?;
    d.add("rg-watch.toml", &region_toml("rg-watch", "wl-watch", "soft-dirty"))?;
    d.ok(&["project", "start", "-n", "kd-watch"])?;
    d.ok(&["project", "start", "-n", "rg-watch"])?;
    sleep_s(40);
    // What each engine saw accessed over a few aggregations in a row (one
    // 100 ms aggregation under TCG can miss a page or two of a hot region).
    let (mut kd_hot, mut rg_hot) = (Vec::new(), Vec::new());
    let (mut kd, mut rg) = (Snapshot::default(), Snapshot::default());
    for _ in 0..HOT_ROUNDS {
        kd = snapshot_of(&d, "kd-watch", "kernel-damon", pid, Duration::from_secs(30))?;
        rg = snapshot_of(&d, "rg-watch", "region", pid, Duration::from_secs(30))?;
        kd_hot.extend(judge(&kd, &wl).0);
        rg_hot.extend(judge(&rg, &wl).0);
        std::thread::sleep(Duration::from_millis(700));
    }
    let (kd_hot, rg_hot) = (measure::union(kd_hot), measure::union(rg_hot));
    let kd_m = measure::compare(&kd_hot, &wl.hot_ranges());
    let rg_m = measure::compare(&rg_hot, &wl.hot_ranges());
    let agree = measure::compare(&kd_hot, &rg_hot);
    note(format!(
        "kernel-damon vs truth {kd_m:?}; region(soft-dirty) vs truth {rg_m:?}; agreement {agree:?}"
    ));
    let kd_stats = d.task_stats("kd-watch")?;
    let rg_stats = d.task_stats("rg-watch")?;
    figures.insert(
        "kernel_damon".into(),
        json!({"match": kd_m, "nr_regions": kd.regions.len(), "stats": kd_stats}),
    );
    figures.insert(
        "region_soft_dirty".into(),
        json!({"match": rg_m, "nr_regions": rg.regions.len(), "stats": rg_stats}),
    );
    figures.insert("agreement".into(), json!(agree));
    out.check(
        kd_m.recall >= 0.8 && kd_m.precision >= 0.8,
        format!("kernel-damon finds the hot range: {kd_m:?}"),
    );
    out.check(
        rg_m.recall >= 0.8 && rg_m.precision >= 0.8,
        format!("region engine with soft-dirty finds it: {rg_m:?}"),
    );
    out.check(
        agree.jaccard >= 0.8,
        format!("the two engines agree on the hot ranges (overlap >= 80 %): {agree:?}"),
    );
    out.check(kd_stats["pids"] == json!([pid]), format!("project show lists the workload pid: {kd_stats}"));
    out.check(f(&kd_stats, "monitor_cpu_s") > 0.0, "project show has the kdamond's CPU time");
    out.check(kd_stats["probe"].as_str().is_some_and(|p| p.starts_with("kdamond")), "the probe says kdamond");
    out.check(
        rg_stats["probe"].as_str().is_some_and(|p| p.contains("soft")),
        format!("the region engine used the soft-dirty probe: {}", rg_stats["probe"]),
    );
    let s = survey();
    out.check(
        s.iter().any(|k| k.running && k.target_pids == vec![pid]),
        format!("one kdamond watches the workload: {s:?}"),
    );
    d.ok(&["project", "stop", "-n", "rg-watch"])?;
    d.ok(&["project", "stop", "-n", "kd-watch"])?;

    // The page engine, alone (two soft-dirty users would clear each other's bits).
    let page = "[project]\nname = \"pg-watch\"\n\n[engine]\nkind = \"page\"\nprobe = \"soft-dirty\"\nloop = 1\n\
                sleep = \"1s\"\ninterval = \"1s\"\n\n[[task]]\nname = \"w\"\nprocess = \"wl-watch\"\n\n[policy]\n\
                cold_action = \"none\"\n";
    d.add("pg-watch.toml", page)?;
    let r = d.etmem(&["project", "start", "-n", "pg-watch"]);
    if r.code != 0 {
        figures.insert("page_engine".into(), json!(format!("did not start: {}", r.stderr.trim())));
        note(format!("page engine not run: {}", r.text()));
    } else {
        sleep_s(30);
        match snapshot_of(&d, "pg-watch", "page", pid, Duration::from_secs(60)) {
            Ok(pg) => {
                let (_, pg_m) = judge(&pg, &wl);
                let st = d.task_stats("pg-watch").unwrap_or_default();
                figures.insert("page_soft_dirty".into(), json!({"match": pg_m, "stats": st}));
                out.check(
                    pg_m.recall >= 0.8 && pg_m.precision >= 0.8,
                    format!("page engine with soft-dirty finds the hot range: {pg_m:?}"),
                );
            }
            Err(e) => out.check(false, format!("page engine gave no snapshot: {e}")),
        }
        let _ = d.etmem(&["project", "stop", "-n", "pg-watch"]);
    }
    drop(d);
    out.check(survey().is_empty(), "stopping the projects leaves no kdamond");
    out.figures = Value::Object(figures);
    Ok(out)
}

/// Per-process figures of the pageout scenario.
#[derive(Debug, Clone, serde::Serialize)]
struct PidFigures {
    pid: u32,
    majflt: u64,
    vmswap_bytes: u64,
    hot_pages: u64,
    cold_bytes: u64,
    verify_ok: bool,
}

fn finish_pid(wl: &mut Child, majflt0: u64) -> PidFigures {
    let pid = wl.pid();
    let majflt = os::majflt(pid).unwrap_or(0).saturating_sub(majflt0);
    let vmswap_bytes = os::status_kb(pid, "VmSwap").unwrap_or(0);
    let hot: u64 = wl.hot_ranges().iter().map(AddrRange::len).sum();
    let cold: u64 = wl.cold_ranges().iter().map(AddrRange::len).sum();
    PidFigures { pid, majflt, vmswap_bytes, hot_pages: hot / PAGE, cold_bytes: cold, verify_ok: false }
}

/// Cold memory to zram while the hot range stays: our generated schemes
/// (policy cold rule + hot guards + quota) on one workload, plain kernel
/// DAMON with etmem's config (pageout after 5 s at 0 accesses) on two
/// others, side by side for 90 s.
fn pageout(ctx: &Ctx) -> Result<Outcome, String> {
    let mut out = Outcome::default();
    if !ctx.has_swap {
        return Err("no zram swap in the guest".into());
    }
    let args = ["--size", "96M", "--hot", "12M", "--write-ratio", "0.25"];
    let mut ours = workload("wl-ours", &args)?;
    let mut plain = [workload("wl-plain", &args)?, workload("wl-plain", &args)?];
    let d = Etmemd::start("pageout")?;
    let policy = "cold_max_accesses = 0\ncold_min_age = \"5s\"\ncold_action = \"pageout\"\n\n[policy.quota]\n\
                  bytes_per_s = \"32M\"\nweight_nr_accesses = 1000\nweight_age = 1000\n";
    d.add("ours.toml", &kernel_damon_toml("ours", "wl-ours", policy))?;
    d.add("plain.ini", &etmem_damon_ini("plain", "wl-plain"))?;
    let m0: Vec<u64> =
        std::iter::once(&ours).chain(plain.iter()).map(|w| os::majflt(w.pid()).unwrap_or(0)).collect();
    d.ok(&["project", "start", "-n", "ours"])?;
    d.ok(&["project", "start", "-n", "plain"])?;
    let t0 = Instant::now();
    let run = Duration::from_secs(90);
    let mut timeline = Vec::new();
    while t0.elapsed() < run {
        sleep_s(10);
        let row: Vec<Value> = std::iter::once(&ours)
            .chain(plain.iter())
            .map(|w| {
                json!({"pid": w.pid(), "swap_mib": os::status_kb(w.pid(), "VmSwap").unwrap_or(0) >> 20,
                       "majflt": os::majflt(w.pid()).unwrap_or(0)})
            })
            .collect();
        let ours_extra = d.task_stats("ours").map(|s| s["extra"].clone()).unwrap_or_default();
        note(format!(
            "t={:.0}s {} ours: {ours_extra}",
            t0.elapsed().as_secs_f64(),
            Value::Array(row.clone())
        ));
        timeline.push(json!({"t_s": t0.elapsed().as_secs(), "pids": row, "ours_extra": ours_extra}));
    }
    let kdamonds = survey();
    let ours_stats = d.task_stats("ours").unwrap_or_default();
    let plain_stats = d.task_stats("plain").unwrap_or_default();
    let mut of = finish_pid(&mut ours, m0[0]);
    let mut pf: Vec<PidFigures> = plain.iter_mut().zip(&m0[1..]).map(|(w, m)| finish_pid(w, *m)).collect();
    d.ok(&["project", "stop", "-n", "ours"])?;
    d.ok(&["project", "stop", "-n", "plain"])?;
    drop(d);
    // Every byte must be intact (verify faults everything back in).
    of.verify_ok = ours.verify().map(|v| v.ok).unwrap_or(false);
    for (w, p) in plain.iter_mut().zip(pf.iter_mut()) {
        p.verify_ok = w.verify().map(|v| v.ok).unwrap_or(false);
    }
    let plain_pids: Vec<u32> = plain.iter().map(Child::pid).collect();
    out.check(
        kdamonds.iter().any(|k| k.running && plain_pids.iter().all(|p| k.target_pids.contains(p))),
        format!("etmem's damon config runs on every task pid {plain_pids:?}: {kdamonds:?}"),
    );
    let mut shown: Vec<u64> = plain_stats["pids"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    shown.sort_unstable();
    let mut want: Vec<u64> = plain_pids.iter().map(|p| u64::from(*p)).collect();
    want.sort_unstable();
    out.check(
        shown == want,
        format!("project show lists both pids of etmem's task: {}", plain_stats["pids"]),
    );
    out.check(
        kdamonds.iter().any(|k| k.running && k.target_pids == vec![ours.pid()]),
        format!("our project has its own kdamond: {kdamonds:?}"),
    );
    for p in &pf {
        out.check(p.vmswap_bytes > 0, format!("plain DAMON paged pid {} out too: {p:?}", p.pid));
        out.check(p.verify_ok, format!("pid {} data intact", p.pid));
    }
    out.check(of.verify_ok, "our workload's data is intact");
    out.check(
        of.vmswap_bytes * 2 >= of.cold_bytes,
        format!("our scheme pushed at least half the cold memory to zram: {of:?}"),
    );
    out.check(
        of.majflt < of.hot_pages,
        format!(
            "the hot range was barely disturbed: {} major faults < {} hot pages",
            of.majflt, of.hot_pages
        ),
    );
    let plain_majflt = pf.iter().map(|p| p.majflt).sum::<u64>() as f64 / pf.len().max(1) as f64;
    out.figures = json!({
        "run_s": run.as_secs(),
        "ours": of, "plain": pf,
        "plain_majflt_mean": plain_majflt,
        "ours_stats": ours_stats, "plain_stats": plain_stats,
        "timeline": timeline,
    });
    Ok(out)
}

const CGROUP: &str = "/sys/fs/cgroup/etmem-cg";

/// Move a process (with its threads) into a cgroup.
fn join_cgroup(dir: &str, pid: u32) -> Result<(), String> {
    std::fs::write(format!("{dir}/cgroup.procs"), pid.to_string()).map_err(|e| format!("join {dir}: {e}"))
}

/// paddr with a memcg filter: a cgroup task's cold memory goes to zram,
/// the rest of the machine is left alone.
fn memcg(ctx: &Ctx) -> Result<Outcome, String> {
    let mut out = Outcome::default();
    if !ctx.has_swap {
        return Err("no zram swap in the guest".into());
    }
    let root = "/sys/fs/cgroup";
    std::fs::write(format!("{root}/cgroup.subtree_control"), "+memory")
        .map_err(|e| format!("+memory: {e}"))?;
    let _ = std::fs::create_dir(CGROUP);
    let args = ["--size", "96M", "--hot", "12M", "--write-ratio", "0.25"];
    let mut outside = workload("wl-watch", &args)?;
    // Children inherit the cgroup, and in cgroup v2 pages stay charged where
    // they were first touched: start the workload from inside.
    join_cgroup(CGROUP, std::process::id())?;
    let inside = workload("wl-cg", &args);
    join_cgroup(root, std::process::id())?;
    let mut inside = inside?;
    let d = Etmemd::start("memcg")?;
    let cfg = "[project]\nname = \"cg\"\n\n[engine]\nkind = \"kernel-damon\"\nops = \"paddr\"\nmin_nr_regions = 100\n\n[[task]]\n\
               name = \"cg\"\ncgroup = \"etmem-cg\"\n\n[policy]\ncold_min_age = \"5s\"\ncold_action = \"pageout\"\n";
    d.add("cg.toml", cfg)?;
    let (m_in, m_out) = (os::majflt(inside.pid()).unwrap_or(0), os::majflt(outside.pid()).unwrap_or(0));
    d.ok(&["project", "start", "-n", "cg"])?;
    let t0 = Instant::now();
    let cold: u64 = inside.cold_ranges().iter().map(AddrRange::len).sum();
    while t0.elapsed() < Duration::from_secs(75) {
        sleep_s(5);
        let swapped = os::status_kb(inside.pid(), "VmSwap").unwrap_or(0);
        note(format!("memcg t={:.0}s inside {} MiB swapped", t0.elapsed().as_secs_f64(), swapped >> 20));
        if swapped * 2 >= cold {
            break;
        }
    }
    let kdamonds = survey();
    let stats = d.task_stats("cg").unwrap_or_default();
    let mut fin = finish_pid(&mut inside, m_in);
    let mut other = finish_pid(&mut outside, m_out);
    d.ok(&["project", "stop", "-n", "cg"])?;
    drop(d);
    fin.verify_ok = inside.verify().map(|v| v.ok).unwrap_or(false);
    other.verify_ok = outside.verify().map(|v| v.ok).unwrap_or(false);
    drop(inside);
    drop(outside);
    os::reap_zombies();
    std::thread::sleep(Duration::from_millis(500));
    let _ = std::fs::remove_dir(CGROUP);
    out.check(
        kdamonds.iter().any(|k| k.running && k.ops.as_deref() == Some("paddr")),
        format!("a paddr kdamond ran: {kdamonds:?}"),
    );
    // Physical regions mix pages of every process, and paddr pageout skips
    // young pages: it gets less of the cold memory than vaddr does.
    out.check(
        fin.vmswap_bytes * 4 >= cold,
        format!("a quarter of the cgroup's cold memory went to zram: {fin:?}"),
    );
    out.check(other.vmswap_bytes == 0, format!("memory outside the cgroup was left alone: {other:?}"));
    out.check(fin.verify_ok && other.verify_ok, "data intact inside and outside the cgroup");
    out.figures =
        json!({"inside": fin, "outside": other, "stats": stats, "seconds": t0.elapsed().as_secs_f64()});
    Ok(out)
}

/// CPU per second of wall time a monitor spends on one workload, measured
/// over `window` after `warmup`, from `project show` (`monitor_cpu_s`).
fn cpu_rate(d: &Etmemd, project: &str, warmup: u64, window: u64) -> Result<(f64, Value), String> {
    sleep_s(warmup);
    let a = d.task_stats(project)?;
    let t = Instant::now();
    sleep_s(window);
    let b = d.task_stats(project)?;
    let dt = t.elapsed().as_secs_f64();
    let rate = (f(&b, "monitor_cpu_s") - f(&a, "monitor_cpu_s")) / dt;
    let driver = (extra_f(&b, "driver_cpu_s") - extra_f(&a, "driver_cpu_s")) / dt;
    // The region engine counts the aggregations it completed; the kernel
    // engine counts wall time in aggregation intervals (the kdamond's own
    // count is not in sysfs).
    let aggr = (f(&b, "aggregations") - f(&a, "aggregations")) / dt;
    Ok((
        rate,
        json!({"cpu_s_per_s": rate, "driver_cpu_s_per_s": driver, "aggregations_per_s": aggr,
               "nr_regions": b["nr_regions"], "stats": b}),
    ))
}

/// kdamond CPU against the userspace region engine's on the same workload
/// with the same attributes (5 ms / 100 ms, 10..1000 regions), each alone.
/// The region engine runs with the soft-dirty probe (Debian's 6.12 has no
/// idle page tracking). A size that fails is reported and the others still
/// run: the figures keep every row measured.
fn bench(ctx: &Ctx) -> Result<Outcome, String> {
    let mut out = Outcome::default();
    let sizes: &[&str] = if ctx.bench { &["64M", "256M", "512M"] } else { &["256M"] };
    // Soft-dirty only: the refault probe pages sampled pages out (another
    // cost altogether), and in this guest it armed none (every sample unknown).
    let probes: &[&str] = &["soft-dirty"];
    let window = if ctx.bench { 60 } else { 30 };
    let mut rows = Vec::new();
    for size in sizes {
        match bench_size(&mut out, size, probes, window) {
            Ok(row) => rows.push(row),
            Err(e) => out.check(false, format!("{size}: {e}")),
        }
        os::reap_zombies();
    }
    out.check(!rows.is_empty(), "at least one workload size was measured");
    out.figures = json!({"rows": rows});
    Ok(out)
}

/// One row of the benchmark: the kdamond, then the region engine with each probe.
fn bench_size(out: &mut Outcome, size: &str, probes: &[&str], window: u64) -> Result<Value, String> {
    let wl = workload("wl-bench", &["--size", size, "--hot", "10%", "--write-ratio", "1"])?;
    let d = Etmemd::start("bench")?;
    d.add("kd-bench.toml", &kernel_damon_toml("kd-bench", "wl-bench", "cold_action = \"none\""))?;
    d.ok(&["project", "start", "-n", "kd-bench"])?;
    let (kd, kd_v) = cpu_rate(&d, "kd-bench", 10, window)?;
    d.ok(&["project", "stop", "-n", "kd-bench"])?;
    out.check(kd > 0.0, format!("{size}: the kdamond's CPU time is measured"));
    let mut row = json!({"size": size, "window_s": window, "kdamond": kd_v});
    for probe in probes {
        let name = format!("rg-{probe}");
        d.add(&format!("{name}.toml"), &region_toml(&name, "wl-bench", probe))?;
        d.ok(&["project", "start", "-n", &name])?;
        let (rg, rg_v) = cpu_rate(&d, &name, 10, window)?;
        d.ok(&["project", "stop", "-n", &name])?;
        let ratio = if kd > 0.0 { rg / kd } else { f64::INFINITY };
        note(format!(
            "{size}: kdamond {kd:.5} CPU-s/s, region engine ({probe}) {rg:.5} CPU-s/s, ratio {ratio:.2}"
        ));
        out.check(rg > 0.0, format!("{size}: the region engine's CPU time ({probe}) is measured"));
        row[format!("region_{}", probe.replace('-', "_"))] = rg_v;
        row[format!("ratio_{}", probe.replace('-', "_"))] = json!(ratio);
    }
    drop(d);
    drop(wl);
    Ok(row)
}
