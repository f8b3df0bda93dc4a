//! etmem's own example configs through the real daemon: accepted or refused
//! as the control-plane issue says, and etmem's `damon` config moving the
//! cold memory of a real process on the userspace region path.

use etmem_tests::{DaemonConfig, TestDaemon, is_root};
use perf::workload::Child;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn example(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/examples/etmem").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn add(d: &TestDaemon, name: &str, text: &str) -> (PathBuf, etmem_tests::Run) {
    let p = d.config(name, text);
    let r = d.etmem(&["obj", "add", "-f", p.to_str().expect("utf-8")]);
    (p, r)
}

#[test]
fn thirdparty_is_refused_at_add_naming_libname() {
    let d = TestDaemon::start(DaemonConfig::default());
    let (_, r) = add(&d, "thirdparty_conf.yaml", &example("thirdparty_conf.yaml"));
    r.expect_code(3).says("key libname").says("does not load third-party engine libraries");
    // Nothing of the file was added.
    d.etmem(&["project", "show"]).ok().says("no project exists");
}

#[test]
fn psi_is_accepted_and_start_names_the_missing_engine() {
    let d = TestDaemon::start(DaemonConfig::default());
    add(&d, "psi_conf.yaml", &example("psi_conf.yaml")).1.ok();
    d.etmem(&["project", "start", "-n", "test"]).expect_code(1).says("engine psi is not in this build");
}

/// Tests here that depend on whether swap is on take this lock.
static SWAP: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn damon_config_without_swap_says_why_no_probe_works() {
    let _swap = SWAP.lock().unwrap_or_else(|p| p.into_inner());
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    if swaps.lines().count() > 1 {
        println!("skipped: swap is on here, so the refault probe is available");
        return;
    }
    let d = TestDaemon::start(DaemonConfig::default());
    add(&d, "damon_conf.yaml", &example("damon_conf.yaml")).1.ok();
    d.etmem(&["project", "start", "-n", "test"]).expect_code(1).says("no access probe works here");
}

#[test]
fn etmem_damon_config_pages_out_the_cold_memory_of_a_real_process() {
    if !is_root() {
        println!("skipped: needs root");
        return;
    }
    if let Some(why) = swap_backends::zram::unavailable_reason() {
        println!("skipped: {why}");
        return;
    }
    let _swap = SWAP.lock().unwrap_or_else(|p| p.into_inner());
    // etmem configs have no backends: the operator provides swap. Ours is
    // a zram device this test creates and removes.
    let zram = swap_backends::ZramSwap::create(
        &conf::ZramBackend {
            size_bytes: 512 << 20,
            compressor: "lzo-rle".into(),
            priority: 32000,
            mem_limit_bytes: None,
        },
        None,
    )
    .expect("zram");
    let mut child = Child::spawn(["--size", "256M", "--hot", "10%"]).expect("workload");
    let cold: u64 = child.cold_ranges().iter().map(|r| r.len()).sum();
    // etmem's shipped damon example, with the task pointed at our process.
    let text = example("damon_conf.yaml")
        .replace("type=name\nvalue=mysqld", &format!("type=pid\nvalue={}", child.pid()));
    assert!(text.contains(&format!("value={}", child.pid())), "the example changed shape:\n{text}");
    let d = TestDaemon::start(DaemonConfig::default());
    add(&d, "damon_conf.yaml", &text).1.ok();
    d.etmem(&["project", "start", "-n", "test"]).ok();
    let swap_of = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        s.lines()
            .find_map(|l| {
                l.strip_prefix("VmSwap:")?.trim().trim_end_matches(" kB").trim().parse::<u64>().ok()
            })
            .unwrap_or(0)
            * 1024
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while swap_of(child.pid()) * 2 < cold && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
    }
    let show = d.etmem(&["project", "show", "-n", "test"]);
    show.ok().says("standing in for kernel-damon");
    let swapped = swap_of(child.pid());
    assert!(swapped * 2 >= cold, "only {swapped} of {cold} cold bytes swapped\n{}", show.stdout);
    d.etmem(&["project", "stop", "-n", "test"]).ok();
    let v = child.verify().expect("verify");
    assert!(v.ok, "data changed: {v:?}");
    drop(child);
    zram.teardown().expect("zram teardown");
}
