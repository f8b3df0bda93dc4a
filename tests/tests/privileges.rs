//! Privileges end to end (issue 10; SECURITY.md has the threat model): who
//! may talk to etmemd (root, and uids given with --allow-uid, checked with
//! SO_PEERCRED on path and abstract sockets alike), the socket file's mode,
//! which config files the daemon reads for a client (root's or the client's
//! own, mode 0600/0400, no symlinks; --allow-insecure-config relaxes owner
//! and mode only), and which processes may be targets (pid 1, kernel
//! threads and etmemd itself only with `allow_special_target`, which only
//! root may set).
//!
//! The clients run as uid 65534 (nobody) through setuid in the spawned
//! `etmem` process. Nothing here starts a project on pid 1 or a kernel
//! thread: special targets are added to stopped projects only.

use etmem_tests::{DaemonConfig, Run, TestDaemon, bin, is_root, write_config};
use etmemd::protocol::Response;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

/// Run the spawned command as `uid` (and the same gid, no extra groups).
fn as_uid(uid: u32) -> impl FnOnce(&mut Command) {
    move |c: &mut Command| {
        c.uid(uid).gid(uid);
    }
}

/// Let other users reach the daemon's socket (directory 0755, socket 0666),
/// so that a refusal can only come from the peer-credential check.
fn open_to_others(d: &TestDaemon) {
    std::fs::set_permissions(d.dir(), PermissionsExt::from_mode(0o755)).expect("chmod dir");
    std::fs::set_permissions(d.socket(), PermissionsExt::from_mode(0o666)).expect("chmod socket");
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A config file owned by `uid` with `mode`.
fn config_as(d: &TestDaemon, name: &str, text: &str, uid: u32, mode: u32) -> PathBuf {
    let p = write_config(d.dir(), name, text);
    std::os::unix::fs::chown(&p, Some(uid), Some(uid)).expect("chown config");
    std::fs::set_permissions(&p, PermissionsExt::from_mode(mode)).expect("chmod config");
    p
}

fn project_ini(name: &str) -> String {
    format!("[project]\nname={name}\nscan_type=page\nloop=1\ninterval=1\nsleep=1\n")
}

#[test]
fn non_root_clients_are_refused_unless_allowed() {
    if !is_root() {
        println!("skipped: needs root to run the client as another uid");
        return;
    }
    let d = TestDaemon::start(DaemonConfig { test_engine: true, ..Default::default() });
    open_to_others(&d);
    d.etmem_with(&["project", "show"], as_uid(NOBODY)).expect_code(4).says("uid 65534 may not use etmemd");
    // Refused before the daemon reads anything for the client.
    let p = config_as(&d, "mine.conf", &project_ini("mine"), NOBODY, 0o600);
    d.etmem_with(&["obj", "add", "-f", path_str(&p)], as_uid(NOBODY))
        .expect_code(4)
        .says("may not use etmemd");
    d.etmem(&["project", "show"]).ok().says("no project exists");
    drop(d);

    let d = TestDaemon::start(DaemonConfig {
        test_engine: true,
        extra_args: vec!["--allow-uid".into(), NOBODY.to_string()],
    });
    open_to_others(&d);
    d.etmem_with(&["project", "show"], as_uid(NOBODY)).ok().says("no project exists");
    // The client's own file (owned by it, 0600) is accepted for it.
    let p = config_as(&d, "mine.conf", &project_ini("mine"), NOBODY, 0o600);
    d.etmem_with(&["obj", "add", "-f", path_str(&p)], as_uid(NOBODY)).ok();
    d.etmem(&["project", "show"]).ok().says("project mine");
    // Root's files are not: the daemon reads as root, and its errors quote
    // the file, so they would leak root's private files to the client.
    let roots = d.config("roots.conf", &project_ini("roots"));
    d.etmem_with(&["obj", "add", "-f", path_str(&roots)], as_uid(NOBODY))
        .expect_code(3)
        .says("owned by uid 0")
        .says("must belong to the user who adds them (uid 65534)");
    // Only the uid given is let in.
    d.etmem_with(&["project", "show"], as_uid(NOBODY - 1))
        .expect_code(4)
        .says("uid 65533 may not use etmemd");
}

/// An etmemd on an abstract socket (no file, so no file permissions):
/// killed on drop.
struct AbstractDaemon {
    child: std::process::Child,
    name: String,
    _dir: tempfile::TempDir,
}

impl AbstractDaemon {
    fn start() -> AbstractDaemon {
        let dir = tempfile::Builder::new().prefix("etmemd-abstract").tempdir().expect("temp dir");
        let name = format!("etmem-rs-test-{}", std::process::id());
        let log = std::fs::File::create(dir.path().join("etmemd.log")).expect("log");
        let child = Command::new(bin("etmemd"))
            .args(["-s", &format!("@{name}"), "--test-engine", "--state-dir"])
            .arg(dir.path().join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etmemd");
        let mut d = AbstractDaemon { child, name, _dir: dir };
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(d.name.as_bytes()).expect("address");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect_addr(&addr).is_err() {
            assert!(matches!(d.child.try_wait(), Ok(None)), "etmemd exited at start");
            assert!(Instant::now() < deadline, "etmemd did not listen on @{} within 20 s", d.name);
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn etmem(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Run {
        let mut cmd = Command::new(bin("etmem"));
        cmd.args(args).args(["-s", &format!("@{}", self.name)]).current_dir("/");
        adjust(&mut cmd);
        let out = cmd.output().expect("run etmem");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for AbstractDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn abstract_sockets_are_guarded_by_peer_credentials_alone() {
    if !is_root() {
        println!("skipped: needs root to run the client as another uid");
        return;
    }
    // Anyone in the network namespace can connect to an abstract socket;
    // the daemon must still turn non-root peers away.
    let d = AbstractDaemon::start();
    d.etmem(&["project", "show"], as_uid(NOBODY)).expect_code(4).says("uid 65534 may not use etmemd");
    d.etmem(&["project", "show"], |_| {}).ok().says("no project exists");
}

#[test]
fn socket_file_is_private() {
    let d = TestDaemon::start(DaemonConfig { test_engine: true, ..Default::default() });
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(d.socket()).expect("socket");
    let mode = meta.permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    // The daemon runs as the test's user, who created the directory.
    let me = std::fs::metadata(d.dir()).expect("dir").uid();
    assert_eq!(meta.uid(), me, "the socket belongs to the daemon's user");
}

#[test]
fn config_files_others_could_change_are_refused_unless_relaxed() {
    if !is_root() {
        println!("skipped: needs root to give files to another owner");
        return;
    }
    // Already covered in control_plane.rs: a symlink, mode 0644 (others
    // read), a directory. Here: every other way a file can be changed by
    // someone else, and the flag that relaxes owner and mode.
    let d = TestDaemon::start(DaemonConfig { test_engine: true, ..Default::default() });
    let group_w = config_as(&d, "g.conf", &project_ini("g"), 0, 0o660);
    let other_w = config_as(&d, "o.conf", &project_ini("o"), 0, 0o602);
    let other_r = config_as(&d, "r.conf", &project_ini("r"), 0, 0o604);
    let theirs = config_as(&d, "n.conf", &project_ini("n"), NOBODY, 0o600);
    let readonly = config_as(&d, "ro.conf", &project_ini("ro"), 0, 0o400);
    let link = d.dir().join("link.conf");
    std::os::unix::fs::symlink(&readonly, &link).expect("symlink");
    let add = |d: &TestDaemon, p: &Path| d.etmem(&["obj", "add", "-f", path_str(p)]);

    add(&d, &group_w).expect_code(3).says("mode 0660").says("--allow-insecure-config");
    add(&d, &other_w).expect_code(3).says("mode 0602");
    add(&d, &other_r).expect_code(3).says("mode 0604");
    add(&d, &theirs).expect_code(3).says("owned by uid 65534").says("--allow-insecure-config");
    add(&d, &link).expect_code(3).says("symbolic link");
    add(&d, &readonly).ok();
    d.etmem(&["project", "show"]).ok().says("project ro");
    for p in ["g", "o", "r", "n"] {
        d.etmem(&["project", "show", "-n", p]).expect_code(1).says("does not exist");
    }
    drop(d);

    let d = TestDaemon::start(DaemonConfig {
        test_engine: true,
        extra_args: vec!["--allow-insecure-config".into()],
    });
    for (name, uid, mode) in [("g", 0, 0o660), ("o", 0, 0o666), ("n", NOBODY, 0o644)] {
        let p = config_as(&d, &format!("{name}.conf"), &project_ini(name), uid, mode);
        add(&d, &p).ok();
    }
    d.etmem(&["project", "show"]).ok().says("project g").says("project o").says("project n");
    // Symlinks stay refused, as etmem refuses them: the daemon opens the
    // path it is given with O_NOFOLLOW whatever the flags.
    let target = config_as(&d, "t.conf", &project_ini("t"), 0, 0o600);
    let link = d.dir().join("link.conf");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    add(&d, &link).expect_code(3).says("symbolic link");
}

const SPECIAL_PROJECT: &str = "[project]\nname = \"special\"\n\n[engine]\nkind = \"region\"\n\n\
                               [policy]\ncold_action = \"stat\"\n";

/// A file adding one task on `pid` to the (stopped) project `special`.
fn special_task(name: &str, pid: u32, allow: bool) -> String {
    format!(
        "project = \"special\"\nengine = \"region\"\n\n[[task]]\nname = \"{name}\"\npid = {pid}\n{}",
        if allow { "allow_special_target = true\n" } else { "" }
    )
}

fn is_kernel_thread_kthreadd(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "kthreadd")
}

#[test]
fn special_targets_are_refused_unless_the_task_allows_them() {
    if !is_root() {
        println!("skipped: needs root (only root may allow special targets)");
        return;
    }
    // The real engines, but the project is never started: adding a task to
    // a stopped project runs nothing, so no special process is touched.
    let d = TestDaemon::start(DaemonConfig::default());
    let p = d.config("special.toml", SPECIAL_PROJECT);
    d.etmem(&["obj", "add", "-f", path_str(&p)]).ok();
    let daemon_pid = d.pid().expect("daemon pid");
    let mut targets = vec![("on-init", 1, "pid 1 is init"), ("on-etmemd", daemon_pid, "is etmemd itself")];
    if is_kernel_thread_kthreadd(2) {
        targets.push(("on-kthreadd", 2, "pid 2 is a kernel thread"));
    } else {
        println!("skipped: pid 2 is not kthreadd here; kernel threads not checked");
    }
    for (name, pid, why) in &targets {
        let f = d.config(&format!("{name}.toml"), &special_task(name, *pid, false));
        d.etmem(&["obj", "add", "-f", path_str(&f)])
            .expect_code(3)
            .says(&format!("task {name}: "))
            .says(why)
            .says("allow_special_target = true");
    }
    d.etmem(&["project", "show", "-n", "special"]).ok().says("no tasks");
    for (name, pid, _) in &targets {
        let f = d.config(&format!("{name}-allowed.toml"), &special_task(name, *pid, true));
        d.etmem(&["obj", "add", "-f", path_str(&f)]).ok();
    }
    let show = d.etmem(&["project", "show", "-n", "special"]);
    show.ok().says("project special  stopped");
    for (name, _, _) in &targets {
        show.says(name);
    }
    d.etmem(&["project", "del", "-n", "special"]).ok();
}

#[test]
fn only_root_may_allow_special_targets() {
    if !is_root() {
        println!("skipped: needs root to run the client as another uid");
        return;
    }
    let d = TestDaemon::start(DaemonConfig {
        extra_args: vec!["--allow-uid".into(), NOBODY.to_string()],
        ..Default::default()
    });
    open_to_others(&d);
    let p = config_as(&d, "special.toml", SPECIAL_PROJECT, NOBODY, 0o600);
    d.etmem_with(&["obj", "add", "-f", path_str(&p)], as_uid(NOBODY)).ok();
    let mine = config_as(&d, "init.toml", &special_task("init", 1, true), NOBODY, 0o600);
    d.etmem_with(&["obj", "add", "-f", path_str(&mine)], as_uid(NOBODY))
        .expect_code(4)
        .says("only root may add a task with allow_special_target = true")
        .says("uid 65534");
    d.etmem(&["project", "show", "-n", "special"]).ok().says("no tasks");
    // The same task from root (in a root-owned file) is accepted.
    let root_copy = d.config("init-root.toml", &special_task("init", 1, true));
    d.etmem(&["obj", "add", "-f", path_str(&root_copy)]).ok();
    d.etmem(&["project", "show", "-n", "special"]).ok().says("init");
    d.etmem(&["project", "del", "-n", "special"]).ok();
}

#[test]
fn name_targets_leave_kernel_threads_out_at_run_time() {
    if !is_root() {
        println!("skipped: needs root (zram, process_madvise)");
        return;
    }
    if let Some(why) = swap_backends::zram::unavailable_reason() {
        println!("skipped: {why}");
        return;
    }
    if !is_kernel_thread_kthreadd(2) {
        println!("skipped: pid 2 is not kthreadd here");
        return;
    }
    // The refault probe needs a swap device; nothing is paged out of a
    // kernel thread (it has no user memory, and it is refused anyway).
    let _zram = swap_backends::ZramSwap::create(
        &conf::ZramBackend {
            size_bytes: 64 << 20,
            compressor: "lzo-rle".into(),
            priority: 32000,
            mem_limit_bytes: None,
        },
        None,
    )
    .expect("zram");
    let d = TestDaemon::start(DaemonConfig::default());
    // kthreadd and its children: every kernel thread, all refused.
    let f = d.config(
        "kthreads.toml",
        "[project]\nname = \"kt\"\n\n[engine]\nkind = \"region\"\n\n[[task]]\nname = \"kthreads\"\n\
         process = \"kthreadd\"\n\n[policy]\ncold_action = \"stat\"\n",
    );
    d.etmem(&["obj", "add", "-f", path_str(&f)]).ok();
    d.etmem(&["project", "start", "-n", "kt"]).ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.log().contains("pid 2 is a kernel thread: refused as a target") {
        assert!(Instant::now() < deadline, "no refusal logged; log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.log().contains("allow_special_target = true"), "the log names the key:\n{}", d.log());
    let show = d.etmem(&["project", "show", "--json", "-n", "kt"]);
    show.ok();
    d.etmem(&["project", "stop", "-n", "kt"]).ok();
    let Ok(Response::Projects { projects }) = serde_json::from_str::<Response>(&show.stdout) else {
        panic!("project show --json: {}", show.stdout)
    };
    let task = &projects[0].engines[0].tasks[0];
    let pids = task.stats.as_ref().map(|s| s.pids.clone()).unwrap_or_default();
    assert!(pids.is_empty(), "kernel threads monitored: {pids:?}");
}
