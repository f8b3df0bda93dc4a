//! Swap backends under pressure, through the real daemon: when the
//! project's zram fills, pageout spills to its swap file when it has one,
//! and otherwise pauses and says so once, without an error storm.

use etmem_tests::{DaemonConfig, TestDaemon, is_root};
use perf::workload::Child;
use std::time::{Duration, Instant};

/// Swap areas are global: tests that fill them run one at a time.
static SWAP: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn skip_reason() -> Option<String> {
    if !is_root() {
        return Some("needs root (zram, process_madvise)".into());
    }
    swap_backends::zram::unavailable_reason()
}

fn project(pid: u32, backends: &str) -> String {
    format!(
        r#"
[project]
name = "full"

[engine]
kind = "region"
sample_interval = "20ms"
aggr_interval = "400ms"
update_interval = "2s"
max_nr_regions = 200
probe = "refault"

[[task]]
name = "wl"
pid = {pid}

[policy]
cold_max_accesses = 0
cold_min_age = "2s"
cold_action = "pageout"

{backends}
"#
    )
}

const SMALL_ZRAM: &str = r#"
[[backend]]
kind = "zram"
size = "32M"
compressor = "lzo-rle"
# Above any other swap area of the machine, so our pages land here.
priority = 32760
"#;

fn swap_of(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmSwap:")?.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

#[test]
fn full_zram_without_a_swap_file_pauses_pageout_and_says_so_once() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let _swap = SWAP.lock().unwrap_or_else(|p| p.into_inner());
    let mut child = Child::spawn(["--size", "256M", "--hot", "10%"]).expect("workload");
    let d = TestDaemon::start(DaemonConfig::default());
    let cfg = d.config("full.toml", &project(child.pid(), SMALL_ZRAM));
    d.etmem(&["obj", "add", "-f", cfg.to_str().expect("utf-8")]).ok();
    d.etmem(&["project", "start", "-n", "full"]).ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut show = d.etmem(&["project", "show", "-n", "full"]);
    while !show.stdout.contains("pageout paused") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        show = d.etmem(&["project", "show", "-n", "full"]);
    }
    show.ok().says("swap devices full").says("pageout paused");
    // Keep it full a while longer: the log must not fill with errors.
    std::thread::sleep(Duration::from_secs(5));
    let log = d.log();
    let pauses = log.matches("pageout paused").count();
    assert_eq!(pauses, 1, "the pause is logged {pauses} times:\n{log}");
    let warnings = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).count();
    assert!(warnings <= 3, "{warnings} warnings while zram was full:\n{log}");
    println!("{}", show.stdout);
    d.etmem(&["project", "stop", "-n", "full"]).ok();
    assert!(child.verify().expect("verify").ok, "the workload's data changed");
}

#[test]
fn full_zram_spills_into_the_projects_swap_file() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let _swap = SWAP.lock().unwrap_or_else(|p| p.into_inner());
    let mut child = Child::spawn(["--size", "256M", "--hot", "10%"]).expect("workload");
    let cold: u64 = child.cold_ranges().iter().map(|r| r.len()).sum();
    let d = TestDaemon::start(DaemonConfig::default());
    // On the same filesystem as the test's temp dir (ext4 here; tmpfs is refused with a reason).
    let swapfile = d.dir().join("spill.swap");
    let backends = format!(
        "{SMALL_ZRAM}\n[[backend]]\nkind = \"swapfile\"\npath = \"{}\"\nsize = \"512M\"\npriority = 32750\n",
        swapfile.display()
    );
    let cfg = d.config("spill.toml", &project(child.pid(), &backends));
    d.etmem(&["obj", "add", "-f", cfg.to_str().expect("utf-8")]).ok();
    let start = d.etmem(&["project", "start", "-n", "full"]);
    if start.code == 1 && start.stderr.contains("swap file") {
        println!("skipped: swap files do not work on this filesystem: {}", start.stderr.trim());
        return;
    }
    start.ok().says("swap file");
    let deadline = Instant::now() + Duration::from_secs(60);
    while swap_of(child.pid()) * 10 < cold * 8 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
    }
    let show = d.etmem(&["project", "show", "-n", "full"]);
    show.ok();
    let swapped = swap_of(child.pid());
    assert!(swapped * 10 >= cold * 8, "only {swapped} of {cold} cold bytes swapped\n{}", show.stdout);
    let file_line =
        show.stdout.lines().find(|l| l.contains("backend swapfile")).expect("swap file listed").to_string();
    assert!(
        !file_line.contains("used 0 B"),
        "nothing spilled into the swap file: {file_line}\n{}",
        show.stdout
    );
    assert!(!show.stdout.contains("pageout paused"), "{}", show.stdout);
    println!("{}", show.stdout);
    d.etmem(&["project", "stop", "-n", "full"]).ok();
    assert!(!swapfile.exists(), "the swap file was not removed at stop");
    assert!(child.verify().expect("verify").ok, "the workload's data changed");
}
