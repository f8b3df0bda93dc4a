//! Kernel DAMON on this host (issue 7): the machine runs a kdamond of its
//! own, so a kernel-damon project must refuse to start with a message that
//! says why and points to the region engine, an etmem damon config must
//! run on the userspace region engine instead, and nothing under
//! /sys/kernel/mm/damon may change (compared by a read-only listing of
//! every file's content before and after). The kernel engine itself runs
//! for real in the QEMU guest (tests/tests/guest.rs).

use damon_core::ops::kdamond::DamonSysfs;
use etmem_tests::{DaemonConfig, TestDaemon, is_root};
use std::path::PathBuf;

/// Files the kernel rewrites on its own (scheme stats, tried regions,
/// effective quotas); whoever owns the kdamond may refresh them.
fn is_output(p: &std::path::Path) -> bool {
    let s = p.to_string_lossy();
    s.contains("/stats/") || s.contains("/tried_regions/") || s.ends_with("/effective_bytes")
}

fn inputs(sysfs: &DamonSysfs) -> Vec<(PathBuf, String)> {
    sysfs.listing().into_iter().filter(|(p, _)| !is_output(p)).collect()
}

#[test]
fn a_kernel_damon_project_refuses_to_start_beside_a_foreign_kdamond_and_writes_nothing() {
    if !is_root() {
        println!("skipped: kernel DAMON coexistence needs root to read the DAMON sysfs tree");
        return;
    }
    let sysfs = DamonSysfs::system();
    if let Err(why) = sysfs.available() {
        println!("skipped: kernel DAMON coexistence: {why}");
        return;
    }
    let foreign: Vec<_> =
        sysfs.survey().expect("survey the kdamonds").into_iter().filter(|k| k.running).collect();
    if foreign.is_empty() {
        println!("skipped: no kdamond of another user runs on this host (the guest test covers this case)");
        return;
    }
    let before = inputs(&sysfs);
    let record_dir = PathBuf::from(damon_core::ops::kdamond::DEFAULT_RECORD_DIR);
    let record_existed = record_dir.exists();

    let mut sleeper = std::process::Command::new("sleep").arg("300").spawn().expect("spawn sleep");
    let d = TestDaemon::start(DaemonConfig::default());
    let native = d.config(
        "kd.toml",
        &format!(
            "[project]\nname = \"kd\"\n\n[engine]\nkind = \"kernel-damon\"\n\n[[task]]\nname = \"s\"\npid = {}\n\n\
             [policy]\ncold_min_age = \"5s\"\ncold_action = \"pageout\"\n",
            sleeper.id()
        ),
    );
    d.etmem(&["obj", "add", "-f", &native.to_string_lossy()]).ok();
    let r = d.etmem(&["project", "start", "-n", "kd"]);
    r.expect_code(1)
        .says("a kdamond this process did not start is running")
        .says(&format!("pid {}", foreign[0].pid.expect("a running kdamond has a pid")))
        .says("nr_kdamonds is global")
        .says("nothing under /sys/kernel/mm/damon/admin was written")
        .says("userspace region engine");
    d.etmem(&["project", "show", "-n", "kd"]).ok();

    // etmem's damon config: same kernel, runs on the userspace region engine.
    let etmem = d.config(
        "damon.ini",
        &format!(
            "[project]\nname=plain\nscan_type=region\nsample_interval=5000\naggr_interval=100000\n\
             update_interval=1000000\nmin_nr_regions=10\nmax_nr_regions=1000\n\n[engine]\nname=damon\n\
             project=plain\nmin_size=0\nmax_size=4294967295\nmin_acc=0\nmax_acc=0\nmin_age=50\n\
             max_age=4294967295\naction=stat\n\n[task]\nproject=plain\nengine=damon\nname=s\ntype=pid\nvalue={}\n",
            sleeper.id()
        ),
    );
    d.etmem(&["obj", "add", "-f", &etmem.to_string_lossy()]).ok();
    d.etmem(&["project", "start", "-n", "plain"]).ok();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let show = d.etmem(&["--json", "project", "show", "-n", "plain"]);
    show.ok();
    assert!(
        show.stdout.contains("not used: ") && show.stdout.contains("did not start"),
        "the fallback says why kernel DAMON is not used:\n{}",
        show.stdout
    );
    d.etmem(&["project", "stop", "-n", "plain"]).ok();
    drop(d);
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    let after = inputs(&sysfs);
    let changed: Vec<String> = after
        .iter()
        .zip(before.iter())
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("{}: {:?} -> {:?}", b.0.display(), b.1, a.1))
        .collect();
    assert_eq!(before.len(), after.len(), "files appeared or vanished under /sys/kernel/mm/damon");
    assert!(changed.is_empty(), "files under /sys/kernel/mm/damon changed:\n{}", changed.join("\n"));
    assert_eq!(
        record_dir.exists(),
        record_existed,
        "no ownership record is written when nothing was acquired"
    );
}
