//! The daemon under load, CI size (issue 10): the real etmemd with 16
//! projects of 4 region-engine tasks on real `etmem-workload` processes,
//! then 32 concurrent real `etmem` clients. Every request must be answered
//! (exit 0 with the expected output), the daemon must still live and every
//! project still run, and the processes' memory must read back intact. No
//! timing assertions: the figures are printed; `bench-load` is the full run
//! (64 × 4 tasks, 100 clients) with its report.

use etmem_tests::{bin, is_root};
use perf::daemon_load::{self, LoadConfig, LoadError};

#[test]
fn every_request_is_answered_under_load() {
    if !is_root() {
        println!("skipped: needs root (process_madvise on other processes, zram)");
        return;
    }
    if let Some(why) = swap_backends::zram::unavailable_reason() {
        println!("skipped: {why}");
        return;
    }
    let mut cfg = LoadConfig::new(bin("etmemd"), bin("etmem"), 16, 4, 32);
    cfg.workload = Some(bin("etmem-workload"));
    cfg.requests_per_client = 5;
    let report = match daemon_load::run(&cfg, None, &|line| eprintln!("load: {line}")) {
        Ok(r) => r,
        Err(e @ (LoadError::NotRoot | LoadError::ZramUnavailable(_))) => {
            println!("skipped: {e}");
            return;
        }
        Err(e) => panic!("load run failed: {}", etmemd::daemon::chain(&e)),
    };
    println!("{}", report.markdown());
    assert_eq!(report.requests.len(), 32 * 5, "every client sent every request");
    assert!(report.all_answered(), "unanswered requests:\n{}", report.failures().join("\n"));
    assert!(report.daemon_alive, "etmemd died under load");
    assert_eq!(report.projects_started, 16, "projects stopped under load");
    assert_eq!(report.tasks_monitoring, 64, "tasks lost their process under load");
    assert!(report.verified_bytes >= 64 * (4 << 20), "memory verified: {}", report.verified_bytes);
    assert_eq!(report.mismatched_bytes, 0, "workload memory changed");
}
