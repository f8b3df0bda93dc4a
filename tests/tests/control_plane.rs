//! The control plane end to end: the real etmemd on a temporary socket,
//! driven by the real etmem CLI through every lifecycle step and error path.

use etmem_tests::{DaemonConfig, TestDaemon};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

const PROJECT: &str = "[project]\nname=test\nscan_type=page\nloop=1\ninterval=1\nsleep=1\n";
const ENGINE: &str = "[engine]\nname=slide\nproject=test\n";

/// A pid for tasks of the test engine, which never looks at it: above
/// PID_MAX_LIMIT, so never a live process (pid 1 would be refused as a
/// special target).
const NO_PID: u32 = 4_194_304;

fn task(name: &str, pid: u32) -> String {
    format!("[task]\nproject=test\nengine=slide\nname={name}\ntype=pid\nvalue={pid}\nT=1\n")
}

fn test_daemon() -> TestDaemon {
    TestDaemon::start(DaemonConfig { test_engine: true, ..Default::default() })
}

#[test]
fn lifecycle_add_start_show_stop_del_and_restart() {
    let mut d = test_daemon();
    let p = d.config("proj.conf", PROJECT);
    let e = d.config("eng.conf", ENGINE);
    let t1 = d.config("task1.conf", &task("t1", NO_PID));
    let t2 = d.config("task2.conf", &task("t2", NO_PID));
    let ps = |x: &std::path::Path| x.to_str().expect("utf-8 path").to_string();

    d.etmem(&["project", "show"]).ok().says("no project exists");
    d.etmem(&["obj", "add", "-f", &ps(&p)]).ok();
    d.etmem(&["obj", "add", "-f", &ps(&e)]).ok();
    d.etmem(&["obj", "add", "-f", &ps(&t1)]).ok();
    d.etmem(&["project", "show", "-n", "test"])
        .ok()
        .says("project test  stopped")
        .says(&format!("task t1  pid={NO_PID}  idle"));

    d.etmem(&["project", "start", "-n", "test"]).ok();
    d.etmem(&["project", "show"])
        .ok()
        .says("project test  started")
        .says(&format!("task t1  pid={NO_PID}  running"));
    d.etmem(&["engine", "tasks", "-n", "test", "-e", "slide"]).ok().says("t1");

    // A task added to a started project starts at once.
    d.etmem(&["obj", "add", "-f", &ps(&t2)]).ok().says("task t2 started");
    d.etmem(&["project", "show", "-n", "test"]).ok().says(&format!("task t2  pid={NO_PID}  running"));

    // Restart: the project comes back, started, with both tasks.
    d.restart();
    d.etmem(&["project", "show", "-n", "test"])
        .ok()
        .says("project test  started")
        .says(&format!("task t2  pid={NO_PID}  running"));
    let json = d.etmem(&["project", "show", "--json"]);
    json.ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("--json prints JSON");
    assert_eq!(v["projects"][0]["engines"][0]["tasks"].as_array().map(Vec::len), Some(2), "{}", json.stdout);

    // Deleting a running task stops it.
    d.etmem(&["obj", "del", "-f", &ps(&t2)]).ok();
    let tasks = d.etmem(&["engine", "tasks", "-n", "test", "-e", "slide"]);
    tasks.ok();
    assert!(!tasks.stdout.contains("t2"), "t2 still runs: {}", tasks.stdout);

    d.etmem(&["project", "stop", "-n", "test"]).ok();
    d.etmem(&["project", "show", "-n", "test"]).ok().says("project test  stopped");

    // A stopped project stays stopped across a restart.
    d.restart();
    d.etmem(&["project", "show", "-n", "test"]).ok().says("project test  stopped").says("task t1");

    d.etmem(&["project", "del", "-n", "test"]).ok();
    d.etmem(&["project", "show"]).ok().says("no project exists");
    d.restart();
    d.etmem(&["project", "show"]).ok().says("no project exists");
    assert_eq!(d.stop(), Some(0), "SIGTERM ends etmemd cleanly; log:\n{}", d.log());
}

#[test]
fn one_file_with_project_engine_and_task() {
    let d = test_daemon();
    let all = d.config("all.conf", &format!("{PROJECT}\n{ENGINE}\n{}", task("t1", NO_PID)));
    let all = all.to_str().expect("utf-8");
    d.etmem(&["obj", "add", "-f", all]).ok();
    d.etmem(&["project", "start", "-n", "test"]).ok();
    d.etmem(&["obj", "del", "-f", all]).ok();
    d.etmem(&["project", "show"]).ok().says("no project exists");
}

#[test]
fn every_error_path_gets_a_clear_message_and_changes_nothing() {
    let d = test_daemon();
    let p = d.config("proj.conf", PROJECT);
    let e = d.config("eng.conf", ENGINE);
    let t = d.config("task.conf", &task("t1", NO_PID));
    let orphan = d.config("orphan.conf", &task("t9", NO_PID).replace("engine=slide", "engine=nosuch"));
    let bad = d.config("bad.conf", "[project]\nname=test\nloop=0\nbogus=1\n");
    let ps = |x: &std::path::Path| x.to_str().expect("utf-8 path").to_string();

    d.etmem(&["project", "start", "-n", "test"]).expect_code(1).says("project test does not exist");
    d.etmem(&["project", "stop", "-n", "test"]).expect_code(1).says("does not exist");
    d.etmem(&["project", "del", "-n", "test"]).expect_code(1).says("does not exist");
    d.etmem(&["obj", "add", "-f", &ps(&e)]).expect_code(1).says("project test does not exist");
    d.etmem(&["obj", "add", "-f", &ps(&p)]).ok();
    d.etmem(&["obj", "add", "-f", &ps(&p)]).expect_code(1).says("already exists");
    d.etmem(&["obj", "add", "-f", &ps(&t)]).expect_code(1).says("engine slide does not exist");
    d.etmem(&["obj", "add", "-f", &ps(&e)]).ok();
    d.etmem(&["obj", "add", "-f", &ps(&e)]).expect_code(1).says("engine slide already exists");
    d.etmem(&["obj", "add", "-f", &ps(&orphan)]).expect_code(1).says("engine nosuch does not exist");
    d.etmem(&["obj", "add", "-f", &ps(&t)]).ok();
    d.etmem(&["obj", "add", "-f", &ps(&t)]).expect_code(1).says("task t1 already exists");
    d.etmem(&["engine", "tasks", "-n", "test", "-e", "slide"]).expect_code(1).says("project test is stopped");
    d.etmem(&["project", "stop", "-n", "test"]).expect_code(1).says("is stopped");
    d.etmem(&["project", "start", "-n", "test"]).ok();
    d.etmem(&["project", "start", "-n", "test"]).expect_code(1).says("already started");
    d.etmem(&["engine", "nosuch", "-n", "test", "-e", "slide"]).expect_code(1).says("has no command");
    d.etmem(&["engine", "tasks", "-n", "test", "-e", "nope"])
        .expect_code(1)
        .says("engine nope does not exist");
    d.etmem(&["engine", "tasks", "-n", "test", "-e", "slide", "-t", "zz"])
        .expect_code(1)
        .says("task zz does not exist");

    // Config problems: exit 3, with file and key named.
    d.etmem(&["obj", "add", "-f", &ps(&bad)]).expect_code(3).says("bad.conf").says("bogus");
    d.etmem(&["obj", "add", "-f", "/nonexistent/x.conf"]).expect_code(3).says("cannot open");
    let link = d.dir().join("link.conf");
    std::os::unix::fs::symlink(&t, &link).expect("symlink");
    d.etmem(&["obj", "add", "-f", &ps(&link)]).expect_code(3).says("symbolic link");
    let open = d.config("open.conf", &task("t5", NO_PID));
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    d.etmem(&["obj", "add", "-f", &ps(&open)]).expect_code(3).says("0644");
    d.etmem(&["obj", "add", "-f", d.dir().to_str().expect("utf-8")])
        .expect_code(3)
        .says("not a regular file");
    // A task whose engine start fails is not added.
    let failing = d.config("fail.conf", &task("failing", NO_PID));
    d.etmem(&["obj", "add", "-f", &ps(&failing)]).expect_code(5).says("refused by the test engine");
    let show = d.etmem(&["project", "show", "-n", "test"]);
    show.ok();
    assert!(!show.stdout.contains("failing"), "a failed add left a task behind:\n{}", show.stdout);
    // Relative paths are resolved by the CLI against its working directory.
    d.etmem(&["obj", "del", "-f", "task.conf"]).ok();
    d.etmem(&["project", "show", "-n", "test"]).ok().says("no tasks");
    // Nothing above broke the daemon.
    d.etmem(&["project", "show"]).ok().says("project test  started");
}

#[test]
fn an_engine_this_build_lacks_is_named_at_start() {
    let d = TestDaemon::start(DaemonConfig::default());
    let all = d.config("all.conf", &format!("{PROJECT}\n[engine]\nname=psi\nproject=test\n"));
    // psi engines belong to psi projects: the mismatch is refused at add,
    // by the parser within one file and by the registry across files.
    d.etmem(&["obj", "add", "-f", all.to_str().expect("utf-8")])
        .expect_code(3)
        .says("needs a project with scan_type psi");
    let proj = d.config("proj.conf", PROJECT);
    let eng = d.config("eng.conf", "[engine]\nname=psi\nproject=test\n");
    d.etmem(&["obj", "add", "-f", proj.to_str().expect("utf-8")]).ok();
    d.etmem(&["obj", "add", "-f", eng.to_str().expect("utf-8")]).expect_code(3).says("cannot serve it");
    let psi = d.config(
        "psi.conf",
        "[project]\nname=p\nscan_type=psi\ninterval=6\n\n[engine]\nname=psi\nproject=p\n",
    );
    d.etmem(&["obj", "add", "-f", psi.to_str().expect("utf-8")]).ok();
    d.etmem(&["project", "start", "-n", "p"]).expect_code(1).says("engine psi is not in this build");
    d.etmem(&["project", "show", "-n", "p"]).ok().says("project p  stopped");
}

#[test]
fn unreachable_daemon_exits_4() {
    let out = std::process::Command::new(etmem_tests::bin("etmem"))
        .args(["project", "show", "-s", "/nonexistent/etmemd.sock"])
        .output()
        .expect("run etmem");
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

// Peer credentials, the socket's mode and config-file ownership are in
// privileges.rs.

fn raw(d: &TestDaemon, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(d.socket()).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(15))).expect("timeout");
    s.write_all(bytes).expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

#[test]
fn malformed_protocol_messages_get_errors_and_the_daemon_keeps_serving() {
    let d = test_daemon();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated body", {
            let mut f = frame(br#"{"op":"hello"}"#);
            f.truncate(8);
            f
        }),
        ("oversized length", (u32::MAX).to_be_bytes().to_vec()),
        ("wrong type", frame(br#"{"op":"project_start","name":42}"#)),
        ("unknown op", frame(br#"{"op":"format_disk"}"#)),
        ("unknown field", frame(br#"{"op":"project_show","name":null,"x":1}"#)),
        ("not json", frame(b"\x00\x01garbage\xff")),
        ("short header", vec![0, 0]),
        ("empty body", frame(b"")),
    ];
    for (what, bytes) in cases {
        let reply = raw(&d, &bytes);
        if reply.len() > 4 {
            let text = String::from_utf8_lossy(&reply[4..]);
            assert!(text.contains("invalid_request"), "{what}: unexpected reply {text}");
        }
        // Whatever happened, the daemon still answers.
        d.etmem(&["project", "show"]).ok();
    }
}

#[test]
fn etmem_line_protocol_is_understood() {
    let d = test_daemon();
    let p = d.config("proj.conf", &format!("{PROJECT}\n{ENGINE}\n{}", task("t1", NO_PID)));
    let line = format!("proj_name - file_name {} cmd 0 eng_name - eng_cmd - task_name -", p.display());
    let reply = raw(&d, line.as_bytes());
    assert_eq!(reply.last(), Some(&0xff), "obj add over etmem's protocol: {reply:?}");
    let reply = raw(&d, b"proj_name test file_name - cmd 4 eng_name - eng_cmd - task_name -");
    assert_eq!(reply.last(), Some(&0xff));
    let text = String::from_utf8_lossy(&reply[..reply.len() - 1]);
    assert!(text.contains("project: test") && text.contains("t1"), "{text}");
    let reply = raw(&d, b"proj_name nope file_name - cmd 2 eng_name - eng_cmd - task_name -");
    assert_eq!(reply.last(), Some(&0xfe));
    assert!(String::from_utf8_lossy(&reply).contains("error: project is not exist"));
    let reply = raw(&d, b"proj_name nope file_name - cmd 77 eng_name - eng_cmd - task_name -");
    assert_eq!(reply.last(), Some(&0xfe));
}

#[test]
fn many_clients_at_once_are_all_answered() {
    let d = test_daemon();
    let p = d.config("proj.conf", PROJECT);
    d.etmem(&["obj", "add", "-f", p.to_str().expect("utf-8")]).ok();
    std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..16).map(|_| s.spawn(|| d.etmem(&["project", "show", "-n", "test"]))).collect();
        for h in handles {
            h.join().expect("client thread").ok().says("project test");
        }
    });
}
