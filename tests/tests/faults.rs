//! Faults injected into the real daemon (issue 10, points 1 and 2): targets
//! that exit mid-scan and mid-pageout, a reused pid, etmemd SIGKILLed during
//! pageout and restarted, a swap file's filesystem full, the state directory
//! unwritable, a zram device removed behind the daemon's back, clocks far
//! off and jumping, a `type=name` process coming back; then pageout, refault,
//! collapse and demotion cycles on every engine and backend of this host,
//! with every byte of the workload checked.
//!
//! Each test prints `reliability:` lines (faults injected and survived, bytes
//! verified and lost) for `perf/results/reliability.md`. A full zram is
//! covered by `backends.rs` (`full_zram_without_a_swap_file_pauses_pageout_and_says_so_once`).

use etmem_tests::{DaemonConfig, Launch, TestDaemon, is_root};
use etmemd::protocol::{ProjectView, TaskStats};
use perf::workload::{Child, SpawnOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// The swap devices' priority in tests that check where pages go (they
/// hold [`SWAP`]): above any other of the machine, so the pages land on the
/// devices the test is about.
const TOP_PRIORITY: i32 = 32767;
/// The priority in the other tests, which may run meanwhile: below
/// [`TOP_PRIORITY`], so their devices do not take the pages of those tests.
const LOW_PRIORITY: i32 = 1000;

/// Tests whose checks depend on where pages go take this lock.
static SWAP: Mutex<()> = Mutex::new(());

fn swap_lock() -> MutexGuard<'static, ()> {
    SWAP.lock().unwrap_or_else(PoisonError::into_inner)
}

fn skip_reason() -> Option<String> {
    if !is_root() {
        return Some("needs root (process_madvise on another process, zram, swapon)".into());
    }
    swap_backends::zram::unavailable_reason()
}

macro_rules! skip_unless_ready {
    () => {
        if let Some(why) = skip_reason() {
            println!("skipped: {why}");
            return;
        }
    };
}

/// One line for the reliability table.
fn reliability(what: &str, fields: &[(&str, String)]) {
    let f: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("reliability: {what} {}", f.join(" "));
}

// ---------------------------------------------------------------- configs

const SCAN: &str = r#"kind = "region"
sample_interval = "20ms"
aggr_interval = "200ms"
update_interval = "1s"
min_nr_regions = 10
max_nr_regions = 100
probe = "refault""#;

/// Cold after a second unaccessed, then paged out.
const PAGEOUT: &str = r#"hot_min_accesses = 1
cold_max_accesses = 0
cold_min_age = "1s"
cold_action = "pageout""#;

/// A native project: `[engine]` body, tasks, `[policy]` body (plus any
/// `[policy.*]` tables after it), backends.
fn project(name: &str, engine: &str, tasks: &str, policy: &str, backends: &str) -> String {
    format!(
        "[project]\nname = \"{name}\"\n\n[engine]\n{engine}\n\n{tasks}\n[policy]\n{policy}\n\n{backends}\n"
    )
}

fn pid_task(name: &str, pid: u32) -> String {
    format!("[[task]]\nname = \"{name}\"\npid = {pid}\n\n")
}

fn zram(size_mib: u64, priority: i32) -> String {
    format!(
        "[[backend]]\nkind = \"zram\"\nsize = \"{size_mib}M\"\ncompressor = \"lzo-rle\"\npriority = {priority}\n\n"
    )
}

fn swapfile(path: &Path, size_mib: u64, priority: i32) -> String {
    format!(
        "[[backend]]\nkind = \"swapfile\"\npath = \"{}\"\nsize = \"{size_mib}M\"\npriority = {priority}\n\n",
        path.display()
    )
}

/// Add `text` as a config file and start its project; panics on failure.
fn add_and_start(d: &TestDaemon, project: &str, text: &str) -> String {
    let cfg = d.config(&format!("{project}.toml"), text);
    d.etmem(&["obj", "add", "-f", cfg.to_str().expect("utf-8 path")]).ok();
    let r = d.etmem(&["project", "start", "-n", project]);
    r.ok();
    r.stdout.clone() + &r.stderr
}

// ---------------------------------------------------------------- observing

/// `project show` of one project, as the daemon's JSON.
fn show(d: &TestDaemon, project: &str) -> ProjectView {
    let out = d.etmem(&["--json", "project", "show", "-n", project]);
    out.ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("project show --json");
    let mut projects: Vec<ProjectView> =
        serde_json::from_value(v["projects"].clone()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(projects.len(), 1, "{}", out.stdout);
    projects.remove(0)
}

fn show_text(d: &TestDaemon, project: &str) -> String {
    d.etmem(&["project", "show", "-n", project]).stdout
}

fn stats(p: &ProjectView, task: &str) -> TaskStats {
    p.engines
        .iter()
        .flat_map(|e| &e.tasks)
        .find(|t| t.name == task)
        .and_then(|t| t.stats.clone())
        .unwrap_or_default()
}

/// A `Key:  N kB` field of /proc/PID/status, bytes (0 when gone).
fn status_bytes(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn swap_of(pid: u32) -> u64 {
    status_bytes(pid, "VmSwap")
}

fn anon_huge_of(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:")?.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn cold_bytes(c: &Child) -> u64 {
    c.cold_ranges().iter().map(|r| r.len()).sum()
}

/// Poll `f` every 100 ms until it holds or `timeout` passes.
fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The daemon process exists and is not a zombie.
fn daemon_alive(d: &TestDaemon) -> bool {
    let Some(pid) = d.pid() else { return false };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().unwrap_or("").split_whitespace().next().unwrap_or("");
    !state.is_empty() && state != "Z"
}

/// WARN and ERROR lines of a log excerpt.
fn warnings(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" WARN ") || l.contains("ERROR")).collect()
}

fn swaps() -> String {
    std::fs::read_to_string("/proc/swaps").unwrap_or_default()
}

fn swapped_on(path: &str) -> bool {
    swaps().lines().any(|l| l.split_whitespace().next() == Some(path))
}

/// Swap areas in /proc/swaps, other than `ours`, whose priority is close
/// to ours: the kernel may put our pages there (another job on the machine).
fn rival_swaps(ours: &[&str]) -> Vec<String> {
    swaps()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let prio: i32 = f.get(4)?.parse().ok()?;
            (!ours.contains(&f[0]) && prio >= TOP_PRIORITY - 2).then(|| format!("{} (priority {prio})", f[0]))
        })
        .collect()
}

/// The zram device paths a project shows.
fn zram_devices(p: &ProjectView) -> Vec<String> {
    p.backends.iter().filter(|b| b.kind == "zram").map(|b| b.device.clone()).collect()
}

fn zram_index(dev: &str) -> u32 {
    dev.trim_start_matches("/dev/zram").parse().unwrap_or_else(|_| panic!("not a zram device: {dev}"))
}

fn diskseq(index: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/block/zram{index}/diskseq")).ok()?.trim().parse().ok()
}

/// The device records in a state directory: (file name, JSON).
fn device_records(state: &Path) -> Vec<(String, serde_json::Value)> {
    let Ok(rd) = std::fs::read_dir(state.join("devices")) else { return Vec::new() };
    let mut out: Vec<(String, serde_json::Value)> = rd
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), serde_json::from_str(&text).unwrap_or_default())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A zram device we recorded is gone: no /sys/block entry, or another
/// device instance (diskseq) under its index.
fn zram_record_gone(rec: &serde_json::Value) -> bool {
    let index = rec["index"].as_u64().expect("zram record index") as u32;
    let want = rec["diskseq"].as_u64();
    match diskseq(index) {
        None => !Path::new(&format!("/sys/block/zram{index}")).exists(),
        Some(have) => want.is_some_and(|w| w != have),
    }
}

/// Every byte of the workload checked; returns (bytes checked, bytes wrong).
#[track_caller]
fn verify(child: &mut Child, when: &str) -> (u64, u64) {
    let v = child.verify().expect("verify");
    assert!(v.ok && v.mismatches == 0, "{when}: the workload's data changed: {v:?}");
    (v.bytes_checked, v.mismatches)
}

fn workload_binary() -> PathBuf {
    perf::workload::locate_binary().expect("etmem-workload is built")
}

fn spawn_opts(binary: PathBuf) -> SpawnOptions {
    SpawnOptions { binary: Some(binary), ..SpawnOptions::default() }
}

// ---------------------------------------------------------------- guards

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A small ext4 filesystem on a loop device (the image lives in /dev/shm,
/// to keep off the host's disk): swap files cannot live on tmpfs. Unmounted,
/// detached and deleted on drop, also on panic; a swap file still on under
/// it is swapped off first.
struct LoopFs {
    image: PathBuf,
    dev: Option<String>,
    mnt: tempfile::TempDir,
    mounted: bool,
}

impl LoopFs {
    fn create(size_mib: u64) -> Result<LoopFs, String> {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        let image = tempfile::Builder::new()
            .prefix("etmem-faults-fs")
            .suffix(".img")
            .tempfile_in(base)
            .map_err(|e| e.to_string())?
            .into_temp_path()
            .keep()
            .map_err(|e| e.to_string())?;
        let mnt = tempfile::Builder::new().prefix("etmem-faults-mnt").tempdir().map_err(|e| e.to_string())?;
        let mut fs = LoopFs { image, dev: None, mnt, mounted: false };
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fs.image)
            .and_then(|f| f.set_len(size_mib * MIB))
            .map_err(|e| e.to_string())?;
        let image = fs.image.to_str().ok_or("non-UTF-8 temp path")?.to_string();
        fs.dev = Some(run("losetup", &["-f", "--show", &image])?);
        let dev = fs.dev.clone().unwrap_or_default();
        run("mkfs.ext4", &["-q", "-F", "-m", "0", &dev])?;
        let mnt = fs.mnt.path().to_str().ok_or("non-UTF-8 temp path")?.to_string();
        run("mount", &[&dev, &mnt])?;
        fs.mounted = true;
        Ok(fs)
    }

    fn path(&self) -> &Path {
        self.mnt.path()
    }

    /// Bytes free (for root: the image has no reserved blocks).
    fn free_bytes(&self) -> u64 {
        let out =
            run("stat", &["-f", "-c", "%f %S", self.path().to_str().unwrap_or("/")]).unwrap_or_default();
        let v: Vec<u64> = out.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        v.first().zip(v.get(1)).map_or(0, |(b, s)| b * s)
    }

    /// Fill the filesystem with `name` until at most `leave_bytes` are free.
    fn fill(&self, name: &str, leave_bytes: u64) {
        let path = self.path().join(name);
        let mut want = self.free_bytes().saturating_sub(leave_bytes);
        while want > 0 {
            if run("fallocate", &["-l", &want.to_string(), path.to_str().expect("utf-8")]).is_ok() {
                break;
            }
            want = want.saturating_sub(MIB);
        }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let mnt = self.path().to_path_buf();
        for l in swaps().lines().skip(1) {
            if let Some(p) = l.split_whitespace().next()
                && Path::new(p).starts_with(&mnt)
            {
                let _ = run("swapoff", &[p]);
            }
        }
        if self.mounted {
            for _ in 0..20 {
                if run("umount", &[mnt.to_str().unwrap_or("")]).is_ok() {
                    self.mounted = false;
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            if self.mounted {
                let _ = run("umount", &["-l", mnt.to_str().unwrap_or("")]);
            }
        }
        if let Some(dev) = self.dev.take() {
            let _ = run("losetup", &["-d", &dev]);
        }
        let _ = std::fs::remove_file(&self.image);
    }
}

/// A zram device "someone else" creates (unconfigured); removed on drop if
/// it is still that device instance.
struct ForeignZram {
    index: u32,
    diskseq: Option<u64>,
}

impl ForeignZram {
    fn hot_add() -> ForeignZram {
        let text = std::fs::read_to_string("/sys/class/zram-control/hot_add").expect("hot_add");
        let index: u32 = text.trim().parse().expect("hot_add index");
        assert_ne!(index, 0, "hot_add returned zram0");
        ForeignZram { index, diskseq: diskseq(index) }
    }
}

impl Drop for ForeignZram {
    fn drop(&mut self) {
        if self.index != 0 && diskseq(self.index) == self.diskseq {
            let _ = std::fs::write(format!("/sys/block/zram{}/reset", self.index), "1");
            let _ = std::fs::write("/sys/class/zram-control/hot_remove", self.index.to_string());
        }
    }
}

/// Remove a zram device the way an operator would: swapoff, reset, hot_remove.
fn remove_zram_from_outside(index: u32) {
    assert_ne!(index, 0, "zram0 is never touched");
    run("swapoff", &[&format!("/dev/zram{index}")]).expect("swapoff");
    let mut ok = false;
    for _ in 0..50 {
        if std::fs::write(format!("/sys/block/zram{index}/reset"), "1").is_ok() {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok, "cannot reset zram{index}");
    std::fs::write("/sys/class/zram-control/hot_remove", index.to_string()).expect("hot_remove");
}

/// `chattr +i` on a directory, undone on drop.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Result<Immutable, String> {
        run("chattr", &["+i", path.to_str().ok_or("non-UTF-8 path")?])?;
        Ok(Immutable(path.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = run("chattr", &["-i", self.0.to_str().unwrap_or("")]);
    }
}

// ---------------------------------------------------------------- 1a

/// A target that exits while it is being scanned, and one killed while its
/// cold memory is being paged out (a quota stretches that pageout over
/// seconds, so the kill lands in its middle), are dropped once each: the
/// daemon keeps running, `project show` reports them gone, the log holds no
/// error storm, and the project's other task keeps being monitored and
/// paged out. The scan victim is left a zombie (its parent does not reap
/// it) for the rest of the test, as a slow parent would.
#[test]
fn targets_exiting_mid_scan_and_mid_pageout_are_dropped_and_the_rest_goes_on() {
    skip_unless_ready!();
    let mut scan_victim = Child::spawn(["--size", "64M", "--hot", "10%"]).expect("workload");
    let pageout_victim = Child::spawn(["--size", "128M", "--hot", "10%"]).expect("workload");
    let mut survivor = Child::spawn(["--size", "64M", "--hot", "10%"]).expect("workload");
    let (sv, pv, su) = (scan_victim.pid(), pageout_victim.pid(), survivor.pid());
    let d = TestDaemon::start(DaemonConfig::default());
    let tasks = pid_task("scan-victim", sv) + &pid_task("pageout-victim", pv) + &pid_task("survivor", su);
    // The scan victim is killed before its memory has been cold for 4 s.
    let policy = "hot_min_accesses = 1\ncold_max_accesses = 0\ncold_min_age = \"4s\"\ncold_action = \"pageout\"\n\n\
                  [policy.quota]\nbytes_per_s = \"16M\"";
    add_and_start(&d, "exits", &project("exits", SCAN, &tasks, policy, &zram(256, LOW_PRIORITY)));

    // Mid-scan: sampled for a while, nothing paged out by the policy yet.
    assert!(
        wait_for(Duration::from_secs(20), || stats(&show(&d, "exits"), "scan-victim").aggregations
            >= Some(5)),
        "the scan victim is not monitored:\n{}",
        show_text(&d, "exits")
    );
    let scanned = stats(&show(&d, "exits"), "scan-victim");
    assert_eq!(scanned.pids, vec![sv]);
    assert_eq!(scanned.paged_out_bytes.unwrap_or(0), 0, "paged out before cold_min_age");
    let log_at_first_kill = d.log().len();
    // SIGKILL, not reaped: a zombie stays in /proc under that pid.
    // SAFETY: kill on the pid of our own child process.
    assert_eq!(unsafe { libc::kill(sv as i32, libc::SIGKILL) }, 0);

    // Mid-pageout: some of the victim's cold memory out, most still in.
    let pv_cold = cold_bytes(&pageout_victim);
    assert!(
        wait_for(Duration::from_secs(30), || swap_of(pv) >= 8 * MIB),
        "the pageout victim was not paged out:\n{}",
        show_text(&d, "exits")
    );
    let pv_swapped_at_kill = swap_of(pv);
    drop(pageout_victim);
    assert!(
        pv_swapped_at_kill * 10 < pv_cold * 9,
        "the pageout had finished ({pv_swapped_at_kill} of {pv_cold} B) before the kill"
    );
    let aggr_at_kill = stats(&show(&d, "exits"), "survivor").aggregations.unwrap_or(0);

    // Both are reported gone; the survivor goes on.
    let gone = |p: &ProjectView, t: &str| {
        let s = stats(p, t);
        s.pids.is_empty() && s.idle_reason.as_deref() == Some("no live process matches the task")
    };
    assert!(
        wait_for(Duration::from_secs(10), || {
            let p = show(&d, "exits");
            gone(&p, "scan-victim") && gone(&p, "pageout-victim")
        }),
        "the dead targets are still listed:\n{}",
        show_text(&d, "exits")
    );
    let su_cold = cold_bytes(&survivor);
    assert!(
        wait_for(Duration::from_secs(30), || swap_of(su) * 10 >= su_cold * 8),
        "the survivor's cold memory was not paged out ({} of {su_cold} B):\n{}",
        swap_of(su),
        show_text(&d, "exits")
    );
    // A few more seconds with the zombie around: no storm.
    std::thread::sleep(Duration::from_secs(3));
    let p = show(&d, "exits");
    let s = stats(&p, "survivor");
    assert_eq!(s.pids, vec![su], "{}", show_text(&d, "exits"));
    assert!(s.aggregations.unwrap_or(0) > aggr_at_kill + 5, "the survivor's monitoring stalled");
    assert!(daemon_alive(&d), "etmemd died:\n{}", d.log());
    let log = d.log();
    let after = &log[log_at_first_kill..];
    let warns = warnings(after);
    assert!(warns.len() <= 2, "{} warnings after the kills:\n{}", warns.len(), warns.join("\n"));
    for pid in [sv, pv] {
        let n = after
            .lines()
            .filter(|l| l.contains("no longer monitored") && l.contains(&format!("pid={pid}")))
            .count();
        assert_eq!(n, 1, "pid {pid} dropped {n} times:\n{after}");
    }
    let checked = verify(&mut survivor, "survivor");
    println!("{}", show_text(&d, "exits"));
    d.etmem(&["project", "stop", "-n", "exits"]).ok();
    let _ = scan_victim.wait_exit(Duration::from_secs(5));
    reliability(
        "fault=target-exits-mid-scan",
        &[("injected", "1".into()), ("survived", "1".into()), ("warnings_after", warns.len().to_string())],
    );
    reliability(
        "fault=target-exits-mid-pageout",
        &[
            ("injected", "1".into()),
            ("survived", "1".into()),
            ("swapped_at_kill_mib", (pv_swapped_at_kill / MIB).to_string()),
            ("cold_mib", (pv_cold / MIB).to_string()),
            ("other_task_bytes_verified", checked.0.to_string()),
            ("bytes_lost", checked.1.to_string()),
        ],
    );
}

// ---------------------------------------------------------------- 1b

/// The pid of a dead target handed to a new process (forced through
/// /proc/sys/kernel/ns_last_pid, retried when another process on the host
/// takes it first): the task's pidfd and the process start time tell them
/// apart, so the new process is never monitored nor acted on (nothing of
/// it is paged out, not even by the refault probe's samples).
#[test]
fn a_reused_pid_is_never_acted_on() {
    skip_unless_ready!();
    let binary = workload_binary();
    let first =
        Child::spawn_with(&spawn_opts(binary.clone()), ["--size", "32M", "--hot", "10%"]).expect("workload");
    let pid = first.pid();
    let d = TestDaemon::start(DaemonConfig::default());
    add_and_start(
        &d,
        "reuse",
        &project("reuse", SCAN, &pid_task("wl", pid), PAGEOUT, &zram(128, LOW_PRIORITY)),
    );
    assert!(
        wait_for(Duration::from_secs(20), || swap_of(pid) > 0
            && stats(&show(&d, "reuse"), "wl").pids == vec![pid]),
        "the first process was not acted on:\n{}",
        show_text(&d, "reuse")
    );
    drop(first);
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} still exists after the kill");

    // Hand `pid` to a new process.
    let mut tries = 0;
    let mut second = None;
    while tries < 200 && second.is_none() {
        tries += 1;
        if std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).is_err() {
            break;
        }
        let c = Child::spawn_with(&spawn_opts(binary.clone()), ["--size", "32M", "--hot", "10%"])
            .expect("workload");
        if c.pid() == pid {
            second = Some(c);
        }
    }
    let Some(mut second) = second else {
        println!("skipped: could not hand pid {pid} to a new process in {tries} tries (ns_last_pid)");
        return;
    };
    let all: Vec<damon_core::AddrRange> = second.regions().iter().map(|r| r.range()).collect();
    let total: u64 = all.iter().map(|r| r.len()).sum();
    let proc = damon_core::ops::ProcTarget::open(pid).expect("open the new process");
    let log_at_reuse = d.log().len();
    // Several resolve intervals (1 s), cold_min_ages and many samples.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        assert_eq!(
            swap_of(pid),
            0,
            "the new process behind pid {pid} was paged out:\n{}",
            show_text(&d, "reuse")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = stats(&show(&d, "reuse"), "wl");
    assert!(s.pids.is_empty(), "the task follows the reused pid: {:?}\n{}", s.pids, show_text(&d, "reuse"));
    let resident: u64 = proc.page_counts(&all).expect("pagemap").iter().map(|c| c.present_bytes()).sum();
    assert_eq!(resident, total, "pages of the new process left RAM");
    let log = d.log();
    let said = log[log_at_reuse..].lines().find(|l| l.contains("reused")).map(str::to_string);
    assert!(said.is_some(), "the daemon does not say the pid was reused:\n{}", &log[log_at_reuse..]);
    let checked = verify(&mut second, "the new process");
    println!("pid {pid} reused after {tries} tries; {}", said.unwrap_or_default());
    d.etmem(&["project", "stop", "-n", "reuse"]).ok();
    reliability(
        "fault=pid-reused",
        &[
            ("injected", "1".into()),
            ("survived", "1".into()),
            ("same_pid", "yes".into()),
            ("new_process_swapped_bytes", "0".into()),
            ("bytes_verified", checked.0.to_string()),
        ],
    );
}

// ---------------------------------------------------------------- 1c

/// etmemd SIGKILLed in the middle of a pageout (a quota stretches it) with
/// a zram device and a swap file on, twice. The first restart adopts both
/// devices (the project comes back on them, pageout goes on); before the
/// second, the state marks the project stopped, so the restarted daemon
/// removes both as unclaimed. After the last stop nothing is left: no swap
/// area, no zram device, no swap file, no device record.
#[test]
fn etmemd_killed_during_pageout_adopts_or_removes_every_device_on_restart() {
    skip_unless_ready!();
    let fs = match LoopFs::create(96) {
        Ok(fs) => fs,
        Err(e) => {
            println!("skipped: cannot make a loop filesystem for the swap file: {e}");
            return;
        }
    };
    let _swap = swap_lock();
    let mut child = Child::spawn(["--size", "96M", "--hot", "10%"]).expect("workload");
    let (pid, cold) = (child.pid(), cold_bytes(&child));
    let mut d = TestDaemon::start(DaemonConfig::default());
    let file = fs.path().join("crash.swap");
    let policy = format!("{PAGEOUT}\n\n[policy.quota]\nbytes_per_s = \"16M\"");
    let backends = zram(32, TOP_PRIORITY) + &swapfile(&file, 64, TOP_PRIORITY - 1);
    add_and_start(&d, "crash", &project("crash", SCAN, &pid_task("wl", pid), &policy, &backends));
    let devs = zram_devices(&show(&d, "crash"));
    assert_eq!(devs.len(), 1);
    let zdev = devs[0].clone();
    let file_s = file.to_str().expect("utf-8").to_string();
    let mut injected = 0;

    // 1. SIGKILL mid-pageout; restart adopts.
    assert!(
        wait_for(Duration::from_secs(30), || swap_of(pid) >= 8 * MIB),
        "no pageout:\n{}",
        show_text(&d, "crash")
    );
    d.kill();
    injected += 1;
    let at_kill = swap_of(pid);
    assert!(at_kill * 10 < cold * 9, "the pageout had finished ({at_kill} of {cold} B) before the kill");
    assert!(swapped_on(&zdev) && swapped_on(&file_s), "the devices went away with the daemon:\n{}", swaps());
    let records = device_records(&d.state_dir());
    assert_eq!(records.len(), 2, "device records after the kill: {records:?}");
    d.start_again();
    let p = show(&d, "crash");
    assert!(p.started, "the project did not come back:\n{}", show_text(&d, "crash"));
    assert_eq!(
        zram_devices(&p),
        vec![zdev.clone()],
        "the zram device was not taken back:\n{}",
        show_text(&d, "crash")
    );
    assert!(p.backends.iter().any(|b| b.device == file_s), "the swap file was not taken back");
    assert!(d.log().contains(&format!("adopted {zdev}")), "{}", d.log());
    assert!(
        wait_for(Duration::from_secs(30), || swap_of(pid) * 10 >= cold * 8),
        "pageout did not go on after the restart ({} of {cold} B):\n{}",
        swap_of(pid),
        show_text(&d, "crash")
    );
    let mut checked = verify(&mut child, "after the adopting restart");

    // 2. SIGKILL again, the project marked stopped: the devices are unclaimed.
    d.kill();
    injected += 1;
    let reg = d.state_dir().join("registry.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&reg).expect("registry.json")).expect("state JSON");
    state["started"] = serde_json::json!([]);
    std::fs::write(&reg, serde_json::to_vec_pretty(&state).expect("JSON")).expect("write registry.json");
    // (The log starts afresh with each daemon; it answers once it has restored.)
    d.start_again();
    d.etmem(&["project", "show"]).ok();
    let restart_log = d.log();
    let restart_log = restart_log.as_str();
    assert!(restart_log.contains(&format!("removed unclaimed {zdev}")), "{restart_log}");
    assert!(restart_log.contains(&format!("removed unclaimed swap file {file_s}")), "{restart_log}");
    assert!(!swapped_on(&zdev) && !swapped_on(&file_s), "unclaimed devices still on:\n{}", swaps());
    assert!(
        records.iter().all(|(_, r)| r["kind"] != "zram" || zram_record_gone(r)),
        "the zram device is still there"
    );
    assert!(!file.exists(), "the unclaimed swap file is still there");
    assert!(device_records(&d.state_dir()).is_empty(), "records left: {:?}", device_records(&d.state_dir()));
    assert!(!show(&d, "crash").started);
    let v = verify(&mut child, "after the unclaimed devices were removed");
    checked = (checked.0 + v.0, checked.1 + v.1);

    // 3. Start and stop normally: nothing orphaned.
    d.etmem(&["project", "start", "-n", "crash"]).ok();
    let devs = zram_devices(&show(&d, "crash"));
    let records = device_records(&d.state_dir());
    d.etmem(&["project", "stop", "-n", "crash"]).ok();
    for dev in devs {
        assert!(!swapped_on(&dev), "{dev} still on after stop");
    }
    assert!(!swapped_on(&file_s) && !file.exists(), "the swap file is left after stop");
    assert!(records.iter().all(|(_, r)| r["kind"] != "zram" || zram_record_gone(r)), "a zram device is left");
    assert!(device_records(&d.state_dir()).is_empty(), "records left after stop");
    assert!(!swaps().lines().any(|l| l.contains(fs.path().to_str().unwrap_or("?"))), "{}", swaps());
    let v = verify(&mut child, "at the end");
    checked = (checked.0 + v.0, checked.1 + v.1);
    reliability(
        "fault=etmemd-sigkill-mid-pageout",
        &[
            ("injected", injected.to_string()),
            ("survived", injected.to_string()),
            ("adopted", "zram+swapfile".into()),
            ("removed_unclaimed", "zram+swapfile".into()),
            ("orphans", "0".into()),
            ("bytes_verified", checked.0.to_string()),
            ("bytes_lost", checked.1.to_string()),
        ],
    );
    drop(d);
    drop(fs);
}

// ---------------------------------------------------------------- 1d

/// A swap file whose filesystem has no room: the project start fails with
/// the reason (ENOSPC), and whatever the start had created (its zram
/// device, the partial file, their records) is removed again; the daemon
/// keeps serving. With room, the file is made; a filesystem that fills up
/// afterwards does not matter to it (its blocks are allocated up front):
/// pageout goes on into it and no byte is lost.
#[test]
fn a_swap_files_full_filesystem_fails_the_start_cleanly() {
    skip_unless_ready!();
    let fs = match LoopFs::create(96) {
        Ok(fs) => fs,
        Err(e) => {
            println!("skipped: cannot make a loop filesystem: {e}");
            return;
        }
    };
    let _swap = swap_lock();
    let mut child = Child::spawn(["--size", "64M", "--hot", "10%"]).expect("workload");
    let (pid, cold) = (child.pid(), cold_bytes(&child));
    let d = TestDaemon::start(DaemonConfig::default());
    let file = fs.path().join("full.swap");
    fs.fill("filler", 4 * MIB);
    let backends = zram(8, TOP_PRIORITY) + &swapfile(&file, 64, TOP_PRIORITY - 1);
    let cfg = d.config("full.toml", &project("full", SCAN, &pid_task("wl", pid), PAGEOUT, &backends));
    d.etmem(&["obj", "add", "-f", cfg.to_str().expect("utf-8")]).ok();
    let log_before = d.log().len();
    let r = d.etmem(&["project", "start", "-n", "full"]);
    assert_ne!(r.code, 0, "started on a full filesystem:\n{}", r.stdout);
    r.says("No space left on device").says(file.to_str().expect("utf-8"));
    println!("start on a full filesystem: {}", r.stderr.trim());
    let log = d.log();
    let zram_on: Vec<&str> = log[log_before..].lines().filter(|l| l.contains("zram swap on")).collect();
    assert_eq!(zram_on.len(), 1, "{}", &log[log_before..]);
    let index: u32 = zram_on[0]
        .split("index=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("index in the log");
    assert!(!swapped_on(&format!("/dev/zram{index}")), "the zram device of the failed start is on");
    assert!(log[log_before..].contains("zram swap removed"), "{}", &log[log_before..]);
    assert!(!file.exists(), "the partial swap file is left");
    assert!(device_records(&d.state_dir()).is_empty(), "records left: {:?}", device_records(&d.state_dir()));
    assert!(daemon_alive(&d));
    assert!(!show(&d, "full").started);

    // Room again: the start works; then the filesystem fills up, pageout goes on.
    std::fs::remove_file(fs.path().join("filler")).expect("remove filler");
    d.etmem(&["project", "start", "-n", "full"]).ok().says("swap file");
    fs.fill("filler2", 0);
    assert!(fs.free_bytes() < 2 * MIB, "the filesystem is not full: {} B free", fs.free_bytes());
    let file_s = file.to_str().expect("utf-8").to_string();
    let file_used =
        || show(&d, "full").backends.iter().find(|b| b.device == file_s).map_or(0, |b| b.used_bytes);
    assert!(
        wait_for(Duration::from_secs(30), || swap_of(pid) * 10 >= cold * 8 && file_used() > 0),
        "pageout into the swap file on the full filesystem did not happen ({} of {cold} B out):\n{}",
        swap_of(pid),
        show_text(&d, "full")
    );
    println!("{}", show_text(&d, "full"));
    let checked = verify(&mut child, "with the swap file's filesystem full");
    d.etmem(&["project", "stop", "-n", "full"]).ok();
    assert!(!file.exists() && !swapped_on(&file_s), "the swap file is left after stop");
    reliability(
        "fault=swapfile-filesystem-full",
        &[
            ("injected", "2".into()),
            ("survived", "2".into()),
            ("start_refused_with", "ENOSPC".into()),
            ("left_behind", "0".into()),
            ("bytes_verified", checked.0.to_string()),
            ("bytes_lost", checked.1.to_string()),
        ],
    );
    drop(d);
    drop(fs);
}

/// The state directory made unwritable (immutable, which binds root too)
/// while a project runs: a registry change still happens but the reply says
/// it is not saved and why; a project start that must record a new zram
/// device fails with the reason and leaves no device behind; the running
/// project keeps running and the daemon keeps serving. Writable again,
/// everything works and no record is left over.
#[test]
fn an_unwritable_state_directory_is_reported_and_the_daemon_keeps_serving() {
    skip_unless_ready!();
    let mut child = Child::spawn(["--size", "32M", "--hot", "10%"]).expect("workload");
    let pid = child.pid();
    let d = TestDaemon::start(DaemonConfig::default());
    let quiet =
        project("quiet", SCAN, &pid_task("wl", pid), "cold_action = \"none\"", &zram(64, LOW_PRIORITY - 1));
    add_and_start(&d, "quiet", &quiet);
    let state = d.state_dir();
    assert!(state.join("registry.json").exists() && state.join("devices").is_dir());
    let guards = match Immutable::set(&state.join("devices")).and_then(|a| Ok((a, Immutable::set(&state)?))) {
        Ok(g) => g,
        Err(e) => {
            println!("skipped: cannot make the state directory immutable: {e}");
            return;
        }
    };
    let text = project("swapper", SCAN, &pid_task("wl", pid), PAGEOUT, &zram(64, LOW_PRIORITY));
    let cfg = d.config("swapper.toml", &text);
    let r = d.etmem(&["obj", "add", "-f", cfg.to_str().expect("utf-8")]);
    r.ok().says("not saved").says(state.to_str().expect("utf-8")).says("Operation not permitted");
    println!("obj add with the state directory immutable: {}", (r.stdout.clone() + &r.stderr).trim());
    // A start that must record a device fails, and leaves nothing.
    let log_before = d.log().len();
    let r = d.etmem(&["project", "start", "-n", "swapper"]);
    assert_ne!(r.code, 0, "started without recording its device:\n{}", r.stdout);
    r.says("cannot record zram").says("Operation not permitted");
    println!("project start with the state directory immutable: {}", r.stderr.trim());
    let log = d.log();
    let excerpt = &log[log_before..];
    let indexes: Vec<u32> = excerpt
        .lines()
        .filter(|l| l.contains("zram"))
        .filter_map(|l| l.split("index=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect();
    for index in &indexes {
        assert!(!swapped_on(&format!("/dev/zram{index}")), "zram{index} of the failed start is on");
    }
    println!("zram devices the failed start made and removed: {indexes:?}");
    assert!(!indexes.is_empty() && excerpt.contains("zram swap removed"), "{excerpt}");
    assert!(daemon_alive(&d));
    assert!(!show(&d, "swapper").started);
    let aggr = || stats(&show(&d, "quiet"), "wl").aggregations.unwrap_or(0);
    let a0 = aggr();
    assert!(wait_for(Duration::from_secs(10), || aggr() > a0 + 3), "the running project stalled");
    assert_eq!(stats(&show(&d, "quiet"), "wl").pids, vec![pid]);

    drop(guards);
    let r = d.etmem(&["project", "start", "-n", "swapper"]);
    r.ok();
    assert!(!r.stdout.contains("not saved") && !r.stderr.contains("not saved"), "{}", r.stderr);
    assert_eq!(device_records(&state).len(), 2);
    d.etmem(&["project", "stop", "-n", "swapper"]).ok();
    d.etmem(&["project", "stop", "-n", "quiet"]).ok();
    assert!(device_records(&state).is_empty(), "records left: {:?}", device_records(&state));
    let checked = verify(&mut child, "after the state directory faults");
    reliability(
        "fault=state-dir-unwritable",
        &[
            ("injected", "2".into()),
            ("survived", "2".into()),
            ("bytes_verified", checked.0.to_string()),
            ("bytes_lost", checked.1.to_string()),
        ],
    );
}

/// One of a project's two zram devices swapped off, reset and removed by
/// someone else: the daemon says so (once, in the log and in `project
/// show`), does not crash, and pages out into its other device. Another
/// device then created under the removed one's index is not taken for
/// ours: at stop only the remaining device is removed, the newcomer is left
/// untouched, and no record is left over.
#[test]
fn a_zram_device_removed_by_someone_else_is_noticed_and_nothing_else_is_touched() {
    skip_unless_ready!();
    let _swap = swap_lock();
    let mut child = Child::spawn(["--size", "64M", "--hot", "10%"]).expect("workload");
    let (pid, cold) = (child.pid(), cold_bytes(&child));
    let d = TestDaemon::start(DaemonConfig::default());
    let backends = zram(128, TOP_PRIORITY) + &zram(128, TOP_PRIORITY - 1);
    add_and_start(&d, "lost", &project("lost", SCAN, &pid_task("wl", pid), PAGEOUT, &backends));
    let p = show(&d, "lost");
    let devs = zram_devices(&p);
    assert_eq!(devs.len(), 2, "{}", show_text(&d, "lost"));
    // The kernel fills the higher priority first: that is the one to remove.
    let top = p.backends.iter().max_by_key(|b| b.priority).expect("a backend").device.clone();
    let other = devs.iter().find(|x| **x != top).expect("two devices").clone();
    assert!(
        wait_for(Duration::from_secs(30), || swap_of(pid) * 10 >= cold * 8),
        "no pageout:\n{}",
        show_text(&d, "lost")
    );
    let mut checked = verify(&mut child, "before the removal");
    let log_before = d.log().len();
    let index = zram_index(&top);
    remove_zram_from_outside(index);

    // The swapoff brought the pages back; the daemon pages them out again, into the other device.
    let used =
        |dev: &str| show(&d, "lost").backends.iter().find(|b| b.device == dev).map_or(0, |b| b.used_bytes);
    assert!(
        wait_for(Duration::from_secs(30), || used(&other) * 10 >= cold * 7
            && d.log()[log_before..].contains(&top)),
        "pageout did not go on into {other}, or the daemon did not mention {top}:\n{}\n{}",
        show_text(&d, "lost"),
        &d.log()[log_before..]
    );
    let p = show(&d, "lost");
    assert!(p.notes.iter().any(|n| n.contains(&top) && n.contains("gone")), "{}", show_text(&d, "lost"));
    assert!(p.backends.iter().all(|b| b.device != top), "{}", show_text(&d, "lost"));
    // Someone creates devices until one has the freed index (hot_add takes the lowest free one).
    let mut newcomers: Vec<ForeignZram> = Vec::new();
    while newcomers.len() < 8 && newcomers.last().is_none_or(|n| n.index != index) {
        newcomers.push(ForeignZram::hot_add());
    }
    let newcomer = newcomers.pop().expect("one device");
    drop(newcomers);
    std::thread::sleep(Duration::from_secs(2));
    let text = show_text(&d, "lost");
    println!("removed {top}; the newcomer is zram{}\n{text}", newcomer.index);
    assert!(daemon_alive(&d), "etmemd died:\n{}", d.log());
    let newcomer_dev = format!("/dev/zram{}", newcomer.index);
    assert!(
        show(&d, "lost").backends.iter().all(|b| b.device != newcomer_dev),
        "the newcomer is taken for ours:\n{text}"
    );
    let log = d.log();
    let excerpt = &log[log_before..];
    let warns = warnings(excerpt);
    assert!(warns.len() <= 2, "{} warnings after the removal:\n{}", warns.len(), warns.join("\n"));
    let v = verify(&mut child, "after the removal");
    checked = (checked.0 + v.0, checked.1 + v.1);

    d.etmem(&["project", "stop", "-n", "lost"]).ok();
    assert!(!swapped_on(&other), "{other} still on after stop");
    assert!(diskseq(newcomer.index).is_some(), "the newcomer zram{} was removed", newcomer.index);
    assert_eq!(diskseq(newcomer.index), newcomer.diskseq, "the newcomer zram{} was touched", newcomer.index);
    assert!(device_records(&d.state_dir()).is_empty(), "records left: {:?}", device_records(&d.state_dir()));
    let v = verify(&mut child, "after stop");
    checked = (checked.0 + v.0, checked.1 + v.1);
    reliability(
        "fault=zram-removed-by-someone-else",
        &[
            ("injected", "1".into()),
            ("survived", "1".into()),
            ("newcomer_same_index", (newcomer.index == index).to_string()),
            ("newcomer_touched", "no".into()),
            ("bytes_verified", checked.0.to_string()),
            ("bytes_lost", checked.1.to_string()),
        ],
    );
    drop(newcomer);
}

// ---------------------------------------------------------------- 1e

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The clocks. etmemd schedules and ages everything on `Instant`
/// (CLOCK_MONOTONIC), which never jumps; the wall clock does (NTP steps,
/// `date -s`). Changing the host's wall clock would disturb every other
/// process of this shared machine, so the daemon alone gets:
/// - a time namespace (time_namespaces(7)) whose monotonic and boot clocks
///   read a few seconds, as on a daemon started at boot (subtracting an
///   interval from `Instant::now()` would underflow there), and
/// - libfaketime (`LD_PRELOAD`, monotonic left alone) whose wall clock
///   jumps a day forward, then two days back, while the project runs.
///
/// Cold memory is still paged out after `cold_min_age`, hot memory stays,
/// aggregations go on at their pace (not stalled by the backward jump, no
/// burst after the forward one), and the log's timestamps show the jumps
/// reached the daemon.
#[test]
fn clock_jumps_and_a_just_booted_clock_change_nothing() {
    skip_unless_ready!();
    let mut child = Child::spawn(["--size", "64M", "--hot", "10%"]).expect("workload");
    let (pid, cold) = (child.pid(), cold_bytes(&child));
    let hot = child.hot_ranges();
    let uptime_s: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let ctl = tempfile::NamedTempFile::new().expect("faketime control file");
    std::fs::write(ctl.path(), "+0\n").expect("write");
    let mut launch = Launch::default();
    let mut skipped = Vec::new();
    if uptime_s > 30.0 {
        launch.clock_offset_s = Some(-(uptime_s as i64 - 5));
    } else {
        skipped.push("the host booted less than 30 s ago".to_string());
    }
    let faketime = Path::new(LIBFAKETIME).exists();
    if faketime {
        launch.env = vec![
            ("LD_PRELOAD".into(), LIBFAKETIME.into()),
            ("FAKETIME_TIMESTAMP_FILE".into(), ctl.path().display().to_string()),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("DONT_FAKE_MONOTONIC".into(), "1".into()),
        ];
    } else {
        skipped.push(format!("{LIBFAKETIME} is missing (apt-get install faketime)"));
    }
    let d = TestDaemon::start_with(DaemonConfig::default(), launch.clone());
    if launch.clock_offset_s.is_some() {
        let daemon_pid = d.pid().expect("daemon pid");
        let offsets =
            std::fs::read_to_string(format!("/proc/{daemon_pid}/timens_offsets")).unwrap_or_default();
        assert!(offsets.contains(&format!("{}", -(uptime_s as i64 - 5))), "no time namespace: {offsets}");
    }
    let policy =
        "hot_min_accesses = 1\ncold_max_accesses = 0\ncold_min_age = \"3s\"\ncold_action = \"pageout\"";
    add_and_start(
        &d,
        "clock",
        &project("clock", SCAN, &pid_task("wl", pid), policy, &zram(128, LOW_PRIORITY)),
    );
    let aggr = || stats(&show(&d, "clock"), "wl").aggregations.unwrap_or(0);
    assert!(wait_for(Duration::from_secs(10), || aggr() >= 2), "no aggregation");
    // Wall clock: +1 day, then -1 day (two days back), well within cold_min_age.
    let (a0, t0) = (aggr(), Instant::now());
    // (A request in each window: its log line carries the daemon's wall-clock time.)
    std::fs::write(ctl.path(), "+1d\n").expect("write");
    std::thread::sleep(Duration::from_secs(1));
    show(&d, "clock");
    std::fs::write(ctl.path(), "-1d\n").expect("write");
    std::thread::sleep(Duration::from_secs(1));
    show(&d, "clock");
    std::thread::sleep(Duration::from_secs(1));
    let (a1, elapsed) = (aggr(), t0.elapsed());
    let expected = elapsed.as_millis() as u64 / 200;
    assert!(a1 > a0, "aggregations stalled after the wall clock jumped back");
    assert!(a1 - a0 <= expected * 3 + 5, "{} aggregations in {elapsed:?} (200 ms each)", a1 - a0);
    assert!(
        wait_for(Duration::from_secs(30), || swap_of(pid) * 10 >= cold * 8),
        "cold memory was not paged out ({} of {cold} B):\n{}",
        swap_of(pid),
        show_text(&d, "clock")
    );
    let proc = damon_core::ops::ProcTarget::open(pid).expect("open child");
    let hot_total: u64 = hot.iter().map(|r| r.len()).sum();
    let hot_in: u64 = proc.page_counts(&hot).expect("pagemap").iter().map(|c| c.present_bytes()).sum();
    assert!(hot_in * 10 >= hot_total * 9, "hot memory left RAM: {hot_in} of {hot_total} B resident");
    if faketime {
        // tracing's timestamps are wall-clock: the jumps reached the daemon.
        let day = |offset_days: i64| {
            let out =
                run("date", &["-u", "-d", &format!("{offset_days} day"), "+%Y-%m-%d"]).unwrap_or_default();
            out.trim().to_string()
        };
        let log = d.log();
        for (label, date) in [("a day ahead", day(1)), ("a day behind", day(-1))] {
            assert!(
                log.contains(&date),
                "no log line dated {label} ({date}): libfaketime had no effect?\n{log}"
            );
        }
    }
    let text = show_text(&d, "clock");
    println!("{text}");
    let checked = verify(&mut child, "after the clock faults");
    d.etmem(&["project", "stop", "-n", "clock"]).ok();
    for s in &skipped {
        println!("skipped: part of the clock test: {s}");
    }
    let mut injected = 0;
    if launch.clock_offset_s.is_some() {
        injected += 1;
        reliability(
            "fault=monotonic-clock-near-zero",
            &[
                ("injected", "1".into()),
                ("survived", "1".into()),
                ("daemon_monotonic_s_at_start", "5".into()),
            ],
        );
    }
    if faketime {
        injected += 2;
        reliability(
            "fault=wall-clock-jumps",
            &[
                ("injected", "2".into()),
                ("survived", "2".into()),
                ("jumps", "+1d,-2d".into()),
                ("bytes_verified", checked.0.to_string()),
                ("bytes_lost", checked.1.to_string()),
            ],
        );
    }
    assert!(injected > 0, "neither clock fault could be injected here");
}

// ---------------------------------------------------------------- 1f

/// A `type=name` task (`process = NAME`): its process exits, and a new one
/// with the same name starts; the task picks the new pid up and acts on it.
/// The workload binary runs under a name of its own (a copy), so no other
/// test's processes match.
#[test]
fn a_process_that_comes_back_under_its_name_is_picked_up_again() {
    skip_unless_ready!();
    let dir = tempfile::tempdir().expect("temp dir");
    let name = format!("flt-{}", std::process::id() % 1_000_000);
    let binary = dir.path().join(&name);
    std::fs::copy(workload_binary(), &binary).expect("copy etmem-workload");
    let opts = spawn_opts(binary);
    let first = Child::spawn_with(&opts, ["--size", "32M", "--hot", "10%"]).expect("workload");
    let (pid1, cold) = (first.pid(), cold_bytes(&first));
    let d = TestDaemon::start(DaemonConfig::default());
    let task = format!("[[task]]\nname = \"byname\"\nprocess = \"{name}\"\n\n");
    add_and_start(&d, "byname", &project("byname", SCAN, &task, PAGEOUT, &zram(128, LOW_PRIORITY)));
    let pids = || stats(&show(&d, "byname"), "byname").pids;
    assert!(
        wait_for(Duration::from_secs(20), || pids() == vec![pid1] && swap_of(pid1) * 10 >= cold * 8),
        "the first process was not acted on:\n{}",
        show_text(&d, "byname")
    );
    drop(first);
    assert!(wait_for(Duration::from_secs(10), || pids().is_empty()), "{}", show_text(&d, "byname"));
    let mut second = Child::spawn_with(&opts, ["--size", "32M", "--hot", "10%"]).expect("workload");
    let pid2 = second.pid();
    assert!(
        wait_for(Duration::from_secs(20), || pids() == vec![pid2]),
        "the task did not pick up pid {pid2}:\n{}",
        show_text(&d, "byname")
    );
    assert!(
        wait_for(Duration::from_secs(20), || swap_of(pid2) * 10 >= cold * 8),
        "the new process was not acted on ({} of {cold} B out):\n{}",
        swap_of(pid2),
        show_text(&d, "byname")
    );
    println!("{}", show_text(&d, "byname"));
    let checked = verify(&mut second, "the returning process");
    d.etmem(&["project", "stop", "-n", "byname"]).ok();
    reliability(
        "fault=named-process-restarts",
        &[
            ("injected", "1".into()),
            ("survived", "1".into()),
            ("picked_up", "yes".into()),
            ("bytes_verified", checked.0.to_string()),
            ("bytes_lost", checked.1.to_string()),
        ],
    );
}

// ---------------------------------------------------------------- 2

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EngineCase {
    Region,
    Page,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackendCase {
    Zram,
    SwapFile,
    ZramSpillingIntoSwapFile,
}

fn thp_madvise() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|t| t.contains("[madvise]"))
}

/// Issue 10, point 2: on every engine of this host (region, page; the
/// kernel-damon engine runs only in the QEMU guest) and every backend (zram,
/// a swap file, a small zram spilling into a swap file), cycles of pageout
/// and refault (the workload reads every byte back), plus, on the region
/// engine where THP is `madvise`, collapse of the hot units, demotion once
/// they idle and pageout of their base pages: every byte is checked after
/// each cycle and after the project stops (swapoff brings the rest back).
#[test]
fn no_byte_is_lost_across_engines_backends_and_cycles() {
    skip_unless_ready!();
    let fs = match LoopFs::create(192) {
        Ok(fs) => Some(fs),
        Err(e) => {
            println!("skipped: the swap-file cases: cannot make a loop filesystem: {e}");
            None
        }
    };
    let _swap = swap_lock();
    let d = TestDaemon::start(DaemonConfig::default());
    let mut total = (0u64, 0u64);
    let mut n = 0;
    for engine in [EngineCase::Region, EngineCase::Page] {
        for backend in [BackendCase::Zram, BackendCase::SwapFile, BackendCase::ZramSpillingIntoSwapFile] {
            let dir = match (&fs, backend) {
                (Some(fs), BackendCase::SwapFile | BackendCase::ZramSpillingIntoSwapFile) => fs.path(),
                (None, BackendCase::SwapFile | BackendCase::ZramSpillingIntoSwapFile) => continue,
                (_, BackendCase::Zram) => Path::new("/"),
            };
            n += 1;
            let (checked, lost) = no_data_lost_case(&d, n, engine, backend, dir);
            total.0 += checked;
            total.1 += lost;
        }
    }
    reliability(
        "no-data-lost total",
        &[
            ("cases", n.to_string()),
            ("bytes_verified", total.0.to_string()),
            ("bytes_lost", total.1.to_string()),
        ],
    );
    assert_eq!(total.1, 0);
    drop(d);
    drop(fs);
}

fn no_data_lost_case(
    d: &TestDaemon,
    n: usize,
    engine: EngineCase,
    backend: BackendCase,
    dir: &Path,
) -> (u64, u64) {
    let thp = engine == EngineCase::Region && thp_madvise();
    let mut child = Child::spawn(["--size", "64M", "--hot", "8M", "--write-ratio", "0.3"]).expect("workload");
    let (pid, cold) = (child.pid(), cold_bytes(&child));
    let name = format!("nodl{n}");
    let file = dir.join(format!("{name}.swap"));
    let backends = match backend {
        BackendCase::Zram => zram(128, TOP_PRIORITY),
        BackendCase::SwapFile => swapfile(&file, 96, TOP_PRIORITY),
        BackendCase::ZramSpillingIntoSwapFile => {
            zram(16, TOP_PRIORITY) + &swapfile(&file, 96, TOP_PRIORITY - 1)
        }
    };
    let (engine_toml, policy) = match engine {
        EngineCase::Region if thp => (
            SCAN.to_string(),
            format!("{PAGEOUT}\nthp_min_age = \"200ms\"\npromote_thp = true\ndemote_thp = true"),
        ),
        EngineCase::Region => (SCAN.to_string(), PAGEOUT.to_string()),
        EngineCase::Page => (
            "kind = \"page\"\nloop = 1\nsleep = \"1s\"\ninterval = \"1s\"".to_string(),
            "hot_min_accesses = 1\ncold_max_accesses = 0\ncold_min_age = \"0s\"\ncold_action = \"pageout\""
                .to_string(),
        ),
    };
    add_and_start(d, &name, &project(&name, &engine_toml, &pid_task("wl", pid), &policy, &backends));
    let mut checked = (0u64, 0u64);
    let mut cycles = 0;
    // The most each of the project's devices held, as `project show` says.
    let mut peak: Vec<(String, u64)> = Vec::new();
    // Another job's swap area at our priority takes pages round-robin with ours.
    let mut rivals: Vec<String> = Vec::new();
    let mut note_use = |p: &ProjectView| {
        let ours: Vec<&str> = p.backends.iter().map(|b| b.device.as_str()).collect();
        for r in rival_swaps(&ours) {
            if !rivals.contains(&r) {
                rivals.push(r);
            }
        }
        for b in &p.backends {
            match peak.iter_mut().find(|(k, _)| *k == b.kind) {
                Some((_, u)) => *u = (*u).max(b.used_bytes),
                None => peak.push((b.kind.clone(), b.used_bytes)),
            }
        }
    };
    for cycle in 0..2 {
        assert!(
            wait_for(Duration::from_secs(30), || swap_of(pid) * 10 >= cold * 6),
            "{engine:?}/{backend:?} cycle {cycle}: no pageout ({} of {cold} B out):\n{}",
            swap_of(pid),
            show_text(d, &name)
        );
        note_use(&show(d, &name));
        // Reading every byte faults every paged-out page back in.
        let v = verify(&mut child, &format!("{engine:?}/{backend:?} cycle {cycle}"));
        checked = (checked.0 + v.0, checked.1 + v.1);
        cycles += 1;
    }
    let (mut collapsed, mut demoted) = (0u64, 0u64);
    if thp {
        // Collapse the hot units, let them idle until split and paged out, read everything back.
        if wait_for(Duration::from_secs(15), || anon_huge_of(pid) >= 2 * MIB) {
            collapsed = anon_huge_of(pid);
            let v = verify(&mut child, &format!("{engine:?}/{backend:?} with huge pages"));
            checked = (checked.0 + v.0, checked.1 + v.1);
            child.pause().expect("pause");
            let split = wait_for(Duration::from_secs(20), || {
                stats(&show(d, &name), "wl").demotions.unwrap_or(0) > 0 && anon_huge_of(pid) < collapsed
            });
            demoted = stats(&show(d, &name), "wl").demotions.unwrap_or(0);
            let swapped_after_split = swap_of(pid);
            child.resume().expect("resume");
            assert!(
                split,
                "{engine:?}/{backend:?}: idle huge pages were not split:\n{}",
                show_text(d, &name)
            );
            let v = verify(&mut child, &format!("{engine:?}/{backend:?} after demotion"));
            checked = (checked.0 + v.0, checked.1 + v.1);
            println!(
                "{engine:?}/{backend:?}: collapsed {} MiB, {demoted} demotions, {} MiB swapped after the split",
                collapsed / MIB,
                swapped_after_split / MIB
            );
        } else {
            println!(
                "skipped: {engine:?}/{backend:?}: no huge page collapsed within 15 s (THP cycle not run)\n{}",
                show_text(d, &name)
            );
        }
    }
    let text = show_text(d, &name);
    note_use(&show(d, &name));
    println!("{text}");
    d.etmem(&["project", "stop", "-n", &name]).ok();
    assert!(!file.exists(), "the swap file is left after stop");
    let v = verify(&mut child, &format!("{engine:?}/{backend:?} after stop (swapoff)"));
    checked = (checked.0 + v.0, checked.1 + v.1);
    let peak_of = |kind: &str| peak.iter().find(|(k, _)| k == kind).map_or(0, |(_, u)| *u);
    if !rivals.is_empty() {
        println!(
            "note: {engine:?}/{backend:?}: where pages went is not checked: other swap areas at our priority: {rivals:?}"
        );
    } else {
        if backend != BackendCase::Zram {
            assert!(
                peak_of("swapfile") > 0,
                "{engine:?}/{backend:?}: nothing went into the swap file:\n{text}"
            );
        }
        if backend != BackendCase::SwapFile {
            assert!(peak_of("zram") > 0, "{engine:?}/{backend:?}: nothing went into zram:\n{text}");
        }
    }
    let used: Vec<String> = peak.iter().map(|(k, u)| format!("{k}:{}MiB", u / MIB)).collect();
    reliability(
        &format!("no-data-lost engine={engine:?} backend={backend:?}"),
        &[
            ("pageout_refault_cycles", cycles.to_string()),
            ("thp_collapsed_mib", (collapsed / MIB).to_string()),
            ("thp_demotions", demoted.to_string()),
            ("backend_peak_use", used.join(",")),
            ("bytes_verified", checked.0.to_string()),
            ("bytes_lost", checked.1.to_string()),
        ],
    );
    checked
}
