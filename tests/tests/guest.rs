//! Kernel DAMON and soft-dirty for real (issue 7): the Debian 6.12 kernel
//! booted under QEMU/TCG with our static binaries as its initramfs; the
//! guest's init runs the scenarios (tests/guest/init/scenarios.rs) and
//! reports over the serial console.
//!
//! Environment: `ETMEM_GUEST=0` skips; `ETMEM_GUEST_SCENARIOS=a,b` runs a
//! subset (coexist, monitor, pageout, memcg, bench); `ETMEM_GUEST_BENCH=1` runs the
//! longer benchmark; `ETMEM_GUEST_WRITE_RESULTS=1` writes
//! perf/results/kernel-damon.md; `ETMEM_GUEST_CACHE` moves the download cache.
//! `scripts/guest-test` sets these for people.

#[path = "../guest/harness.rs"]
mod harness;

use serde_json::Value;
use std::time::Instant;

fn skip(why: &str) {
    println!("skipped: QEMU guest tests: {why}");
}

#[test]
fn guest_scenarios() {
    if std::env::var("ETMEM_GUEST").is_ok_and(|v| v == "0") {
        return skip("ETMEM_GUEST=0");
    }
    if std::env::consts::ARCH != "x86_64" {
        return skip("the guest kernel and static build are x86-64 only");
    }
    let t0 = Instant::now();
    let setup = match harness::setup(&harness::cache_dir()) {
        Ok(s) => s,
        Err(why) => return skip(&why),
    };
    println!("guest: kernel {} ({}), qemu {}", setup.version, setup.kernel.display(), setup.qemu.display());
    let target = etmem_tests::bin_dir().parent().expect("target dir").join("guest-static");
    let bins = harness::build_static(&target).unwrap_or_else(|e| panic!("{e}"));
    let initrd = target.join("initrd.cpio");
    let size = harness::build_initramfs(&initrd, &bins, &setup).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "guest: initramfs {} ({} MiB), prepared in {:.0} s",
        initrd.display(),
        size >> 20,
        t0.elapsed().as_secs_f64()
    );
    let mut opts = harness::GuestOptions::default();
    if let Ok(s) = std::env::var("ETMEM_GUEST_SCENARIOS") {
        opts.scenarios = s.split(',').map(str::to_string).filter(|s| !s.is_empty()).collect();
    }
    opts.bench = std::env::var("ETMEM_GUEST_BENCH").is_ok_and(|v| v == "1");
    if opts.bench {
        // Three workload sizes, three monitors each, 70 s apiece.
        opts.total_timeout = std::time::Duration::from_secs(40 * 60);
    }
    let log = target.join("console.log");
    let run = harness::boot(&setup, &initrd, &opts, &log).unwrap_or_else(|e| panic!("guest failed:\n{e}"));
    println!(
        "guest: ran in {:.0} s, {} console lines in {}",
        run.elapsed.as_secs_f64(),
        run.console.len(),
        log.display()
    );
    let boot = run.events.iter().find(|e| e["event"] == "boot").cloned().unwrap_or(Value::Null);
    assert_eq!(boot["ok"], true, "guest setup failed: {boot}");
    let results: Vec<&Value> = run.events.iter().filter(|e| e["event"] == "result").collect();
    assert!(!results.is_empty(), "the guest ran no scenario");
    for r in &results {
        println!(
            "guest scenario {}: {} in {:.0} s; figures: {}",
            r["scenario"],
            if r["ok"] == true { "ok" } else { "FAILED" },
            r["elapsed_s"].as_f64().unwrap_or(0.0),
            serde_json::to_string_pretty(&r["figures"]).unwrap_or_default()
        );
    }
    if let Some(p) = run.result("pageout") {
        let o = &p["figures"]["ours"];
        println!(
            "guest pageout: ours {} major faults for {} hot pages, {} MiB swapped; plain etmem config {} major faults (mean)",
            o["majflt"],
            o["hot_pages"],
            o["vmswap_bytes"].as_u64().unwrap_or(0) >> 20,
            p["figures"]["plain_majflt_mean"]
        );
    }
    if std::env::var("ETMEM_GUEST_WRITE_RESULTS").is_ok_and(|v| v == "1") {
        let path = harness::workspace_root().join("perf/results/kernel-damon.md");
        let _ = std::fs::create_dir_all(path.parent().expect("results dir"));
        std::fs::write(&path, harness::results_markdown(&setup, &run)).expect("write results");
        println!("guest: wrote {}", path.display());
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r["ok"] != true)
        .map(|r| format!("{}: {}", r["scenario"], r["failures"]))
        .collect();
    assert!(failed.is_empty(), "guest scenarios failed:\n{}", failed.join("\n"));
}
