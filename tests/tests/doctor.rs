//! `etmem doctor` (issue 9): its verdicts match what happens when each
//! engine kind is started through the real daemon, the probe it names is
//! the one the region engine picks, the daemon logs the same verdicts at
//! start, and nothing under /sys/kernel/mm/damon changes.

use damon_core::ops::kdamond::DamonSysfs;
use etmem_tests::{DaemonConfig, TestDaemon, is_root};
use perf::workload::Child;
use serde_json::Value;

fn example(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/examples/etmem").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn verdict<'a>(report: &'a Value, list: &str, name: &str) -> &'a Value {
    report[list]
        .as_array()
        .and_then(|v| v.iter().find(|x| x["name"] == name))
        .unwrap_or_else(|| panic!("doctor has no {list} verdict for {name}:\n{report:#}"))
}

fn works(v: &Value) -> bool {
    v["works"].as_bool().expect("works is a bool")
}

/// A native TOML project of `kind` on `pid`, with a zram backend.
fn native(name: &str, kind: &str, pid: u32) -> String {
    format!(
        "[project]\nname = \"{name}\"\n\n[engine]\nkind = \"{kind}\"\n\n[[task]]\nname = \"t\"\npid = {pid}\n\n\
         [policy]\ncold_action = \"stat\"\n\n[[backend]]\nkind = \"zram\"\nsize = \"64M\"\n"
    )
}

/// Add and start a project; `Ok(show)` when it started, `Err(output)` when refused.
fn start(d: &TestDaemon, file: &str, text: &str, project: &str) -> Result<String, String> {
    let p = d.config(file, text);
    d.etmem(&["obj", "add", "-f", p.to_str().expect("utf-8")]).ok();
    let r = d.etmem(&["project", "start", "-n", project]);
    let out = format!("{}{}", r.stdout, r.stderr);
    let result = if r.code == 0 {
        let show = d.etmem(&["project", "show", "-n", project]);
        d.etmem(&["project", "stop", "-n", project]).ok();
        Ok(show.stdout)
    } else {
        Err(out)
    };
    d.etmem(&["project", "del", "-n", project]).ok();
    result
}

#[track_caller]
fn agrees(name: &str, doctor: &Value, outcome: &Result<String, String>) {
    match (works(doctor), outcome) {
        (true, Ok(_)) | (false, Err(_)) => {
            println!("{name}: doctor says works={}, and so it is", works(doctor));
        }
        (true, Err(out)) => {
            panic!("doctor says {name} works ({}), but it did not start:\n{out}", doctor["detail"])
        }
        (false, Ok(show)) => {
            panic!("doctor says {name} does not work ({}), but it started:\n{show}", doctor["detail"])
        }
    }
}

#[test]
fn doctor_verdicts_match_what_the_engines_do() {
    if !is_root() {
        println!("skipped: needs root (engines, zram)");
        return;
    }
    let damon_before = DamonSysfs::system().listing();
    let d = TestDaemon::start(DaemonConfig::default());
    let run = d.etmem(&["doctor", "--json"]);
    run.ok();
    let report: Value = serde_json::from_str(&run.stdout).expect("doctor --json is JSON");
    let human = d.etmem(&["doctor"]);
    human.ok().says("engines").says("probes").says("backends").says("MADV_PAGEOUT");

    // Every engine, probe and backend has a verdict, with a reason for each "no".
    for list in ["engines", "probes", "backends"] {
        for v in report[list].as_array().expect("list") {
            assert!(!v["detail"].as_str().unwrap_or("").is_empty(), "{list}: {v} without a reason");
        }
    }
    // The daemon logged the same verdicts at start.
    let log = d.log();
    for e in report["engines"].as_array().expect("engines") {
        let word = if works(e) { "doctor: works" } else { "doctor: does not work" };
        let name = e["name"].as_str().expect("name");
        assert!(
            log.lines().any(|l| l.contains(word)
                && (l.contains(&format!("name={name}")) || l.contains(&format!("name=\"{name}\"")))),
            "the daemon's log has no verdict for {name}:\n{log}"
        );
    }

    let child = Child::spawn(["--size", "32M", "--hot", "25%"]).expect("workload");
    let pid = child.pid();
    let zram_ok = works(verdict(&report, "backends", "zram"));

    // region and page: a native project with a zram backend (the refault
    // probe needs swap).
    for kind in ["region", "page"] {
        let v = verdict(&report, "engines", kind);
        if !zram_ok && v["needs"].is_string() {
            println!("skipped: {kind} needs a swap backend and zram is unavailable here");
            continue;
        }
        let outcome = start(&d, &format!("{kind}.toml"), &native(kind, kind, pid), kind);
        agrees(kind, v, &outcome);
        if kind == "region"
            && let Ok(show) = &outcome
        {
            // The probe doctor names first among the working ones is the one the engine took.
            let probe = report["probes"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| works(p)))
                .and_then(|p| p["name"].as_str())
                .expect("a working probe");
            assert!(
                show.contains(&format!("probe {probe}")),
                "doctor's probe {probe} is not the engine's:\n{show}"
            );
        }
    }

    // kernel-damon: refused before anything is written when doctor says so.
    let v = verdict(&report, "engines", "kernel-damon");
    if works(v) {
        println!("skipped: kernel DAMON is free here; the QEMU guest tests drive it, not this host test");
    } else {
        let outcome = start(&d, "kd.toml", &native("kd", "kernel-damon", pid), "kd");
        agrees("kernel-damon", v, &outcome);
    }

    // etmem's damon engine (no backends in etmem configs: it needs swap on the host).
    let v = verdict(&report, "engines", "damon (etmem)");
    let swap_on = std::fs::read_to_string("/proc/swaps").unwrap_or_default().lines().count() > 1;
    let text =
        example("damon_conf.yaml").replace("type=name\nvalue=mysqld", &format!("type=pid\nvalue={pid}"));
    let outcome = start(&d, "damon.yaml", &text, "test");
    if v["needs"].is_string() && !swap_on {
        assert!(outcome.is_err(), "doctor says etmem damon needs swap, none is on, yet it started");
        println!("damon (etmem): needs swap, none is on, and it did not start");
    } else {
        agrees("damon (etmem)", v, &outcome);
    }

    // cslide and psi from etmem's own example files.
    let text = example("cslide_conf.yaml").replace("value=23456", &format!("value={pid}"));
    agrees("cslide", verdict(&report, "engines", "cslide"), &start(&d, "cslide.yaml", &text, "test"));
    agrees(
        "psi",
        verdict(&report, "engines", "psi"),
        &start(&d, "psi.yaml", &example("psi_conf.yaml"), "test"),
    );

    // Nothing under /sys/kernel/mm/damon changed.
    assert!(DamonSysfs::system().listing() == damon_before, "the DAMON sysfs tree changed during the test");
}

#[test]
fn doctor_reports_madvise_advices_tried_on_a_child() {
    let d = TestDaemon::start(DaemonConfig { test_engine: true, ..DaemonConfig::default() });
    let run = d.etmem(&["doctor", "--json"]);
    run.ok();
    let report: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let section = report["host"]
        .as_array()
        .and_then(|s| {
            s.iter().find(|s| s["title"].as_str().is_some_and(|t| t.starts_with("process_madvise")))
        })
        .expect("a process_madvise section");
    let names: Vec<&str> =
        section["checks"].as_array().expect("checks").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["MADV_PAGEOUT", "MADV_COLD", "MADV_WILLNEED", "MADV_COLLAPSE"]);
    if is_root() {
        // process_madvise works on this kind of machine (DESIGN.md); the doctor must see it.
        let pageout = &section["checks"][0];
        assert!(pageout["ok"].as_bool() == Some(true), "MADV_PAGEOUT on our own child failed: {pageout}");
    }
}
