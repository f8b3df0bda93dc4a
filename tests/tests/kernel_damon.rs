//! Kernel DAMON on this host (issue 7): the machine runs a kdamond of its
//! own, so a kernel-damon project must refuse to start with a message that
//! says why and points to the region engine, an etmem damon config must
//! run on the userspace region engine instead (or, where no access probe
//! works either, fail saying both), and nothing under /sys/kernel/mm/damon
//! may change. The test only reads the tree: the content of every input
//! file, and the inode number and modification time of every file and
//! directory (a node the kernel removed and created again, as any write to
//! an `nr_*` file does, has a new inode and time even with the same
//! content), compared before and after. Open read-only handles on the tree
//! keep its inodes cached meanwhile, so their times cannot move for any
//! other reason. The kernel engine itself runs for real in the QEMU guest
//! (tests/tests/guest.rs).

use damon_core::ops::kdamond::{DamonSysfs, tree::Stamp};
use etmem_tests::{DaemonConfig, TestDaemon, is_root};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Files the kernel rewrites on its own (scheme stats, tried regions,
/// effective quotas); whoever owns the kdamond may refresh them.
fn is_output(p: &Path) -> bool {
    let s = p.to_string_lossy();
    s.contains("/stats/")
        || s.ends_with("/stats")
        || s.contains("/tried_regions/")
        || s.ends_with("/tried_regions")
        || s.ends_with("/effective_bytes")
}

fn inputs(sysfs: &DamonSysfs) -> Vec<(PathBuf, String)> {
    sysfs.listing().into_iter().filter(|(p, _)| !is_output(p)).collect()
}

fn stamps(sysfs: &DamonSysfs) -> Vec<Stamp> {
    sysfs.stamps().into_iter().filter(|s| !is_output(&s.path)).collect()
}

/// What differs between two sorted listings, one line per path.
fn differences<T: PartialEq + std::fmt::Debug>(
    before: &[T],
    after: &[T],
    path: impl Fn(&T) -> &Path,
) -> Vec<String> {
    let mut out = Vec::new();
    for b in before {
        match after.iter().find(|a| path(a) == path(b)) {
            None => out.push(format!("{} vanished", path(b).display())),
            Some(a) if a != b => out.push(format!("{}: {b:?} -> {a:?}", path(b).display())),
            Some(_) => {}
        }
    }
    for a in after {
        if !before.iter().any(|b| path(b) == path(a)) {
            out.push(format!("{} appeared", path(a).display()));
        }
    }
    out
}

/// A process to name as the task, killed and reaped on every way out. Its
/// output goes nowhere: it must not hold the test's output pipe open.
struct Sleeper(std::process::Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    let stamps_before = stamps(&sysfs);
    // Read-only handles: keep every inode of the tree cached until the end.
    let pins: Vec<std::fs::File> =
        stamps_before.iter().filter_map(|s| std::fs::File::open(&s.path).ok()).collect();
    let record_dir = PathBuf::from(damon_core::ops::kdamond::DEFAULT_RECORD_DIR);
    let record_existed = record_dir.exists();

    let sleeper = Sleeper(
        Command::new("sleep")
            .arg("300")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sleep"),
    );
    let pid = sleeper.0.id();
    let d = TestDaemon::start(DaemonConfig::default());
    let native = d.config(
        "kd.toml",
        &format!(
            "[project]\nname = \"kd\"\n\n[engine]\nkind = \"kernel-damon\"\n\n[[task]]\nname = \"s\"\npid = {pid}\n\n\
             [policy]\ncold_min_age = \"5s\"\ncold_action = \"pageout\"\n"
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
    println!("kernel-damon refused as expected: {}", r.stderr.trim());
    d.etmem(&["project", "show", "-n", "kd"]).ok();

    // etmem's damon config: same kernel, runs on the userspace region engine.
    let etmem = d.config(
        "damon.ini",
        &format!(
            "[project]\nname=plain\nscan_type=region\nsample_interval=5000\naggr_interval=100000\n\
             update_interval=1000000\nmin_nr_regions=10\nmax_nr_regions=1000\n\n[engine]\nname=damon\n\
             project=plain\nmin_size=0\nmax_size=4294967295\nmin_acc=0\nmax_acc=0\nmin_age=50\n\
             max_age=4294967295\naction=stat\n\n[task]\nproject=plain\nengine=damon\nname=s\ntype=pid\nvalue={pid}\n"
        ),
    );
    d.etmem(&["obj", "add", "-f", &etmem.to_string_lossy()]).ok();
    let r = d.etmem(&["project", "start", "-n", "plain"]);
    if r.code == 0 {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let show = d.etmem(&["--json", "project", "show", "-n", "plain"]);
        show.ok();
        assert!(
            show.stdout.contains("not used: ") && show.stdout.contains("did not start"),
            "the fallback says why kernel DAMON is not used:\n{}",
            show.stdout
        );
        d.etmem(&["project", "stop", "-n", "plain"]).ok();
    } else {
        // No access probe works on this kernel either: the refusal says both.
        r.says("no access probe works here")
            .says("kernel DAMON is not used")
            .says("a kdamond this process did not start is running");
        println!("the region engine cannot run here either, and says both reasons: {}", r.stderr.trim());
    }
    drop(d);
    drop(sleeper);

    let after = inputs(&sysfs);
    let stamps_after = stamps(&sysfs);
    drop(pins);
    let changed = differences(&before, &after, |e| e.0.as_path());
    assert!(changed.is_empty(), "files under /sys/kernel/mm/damon changed:\n{}", changed.join("\n"));
    let touched = differences(&stamps_before, &stamps_after, |s| s.path.as_path());
    assert!(
        touched.is_empty(),
        "nodes under /sys/kernel/mm/damon were recreated or modified:\n{}",
        touched.join("\n")
    );
    println!(
        "unchanged: {} input files (content), {} files and directories (inode, mtime)",
        before.len(),
        stamps_before.len()
    );
    assert_eq!(
        record_dir.exists(),
        record_existed,
        "no ownership record is written when nothing was acquired"
    );
}
