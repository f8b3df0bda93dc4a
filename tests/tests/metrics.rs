//! `etmemd --metrics` (issue 9): scrape the real daemon's Prometheus
//! endpoint while it pages out the cold part of a real workload, and see
//! the counters move; a non-loopback address is refused without
//! `--metrics-allow-remote`.

use etmem_tests::{DaemonConfig, TestDaemon, bin, is_root};
use perf::workload::Child;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A port nobody listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// `GET path` on the metrics port: (status line, body).
fn get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.lines().next().unwrap_or("").to_string(), body.to_string())
}

/// Samples of the exposition by `name{labels}`.
fn samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn task_metric(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    let key = format!(r#"{name}{{project="met",engine="region",task="wl"}}"#);
    m.get(&key).copied().unwrap_or(-1.0)
}

#[test]
fn counters_move_as_the_workload_is_acted_on() {
    if !is_root() {
        println!("skipped: needs root (process_madvise on another process, zram)");
        return;
    }
    if let Some(why) = swap_backends::zram::unavailable_reason() {
        println!("skipped: {why}");
        return;
    }
    let child = Child::spawn(["--size", "128M", "--hot", "10%"]).expect("workload");
    let port = free_port();
    let d = TestDaemon::start(DaemonConfig {
        extra_args: vec!["--metrics".into(), format!("127.0.0.1:{port}")],
        ..DaemonConfig::default()
    });
    let cfg = d.config(
        "met.toml",
        &format!(
            r#"
[project]
name = "met"

[engine]
kind = "region"
sample_interval = "20ms"
aggr_interval = "400ms"
min_nr_regions = 10
max_nr_regions = 200
probe = "refault"

[[task]]
name = "wl"
pid = {}

[policy]
hot_min_accesses = 1
cold_max_accesses = 0
cold_min_age = "4s"
cold_action = "pageout"

[[backend]]
kind = "zram"
size = "512M"
"#,
            child.pid()
        ),
    );
    // Before any project: the endpoint answers, with HELP and TYPE lines.
    let (status, body) = get(port, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(
        body.contains("# TYPE etmem_paged_out_bytes_total counter") && body.contains("etmem_up 1"),
        "{body}"
    );
    assert_eq!(get(port, "/nothing").0, "HTTP/1.1 404 Not Found");

    d.etmem(&["obj", "add", "-f", cfg.to_str().expect("utf-8")]).ok();
    d.etmem(&["project", "start", "-n", "met"]).ok();
    let first = samples(&get(port, "/metrics").1);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = first.clone();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        last = samples(&get(port, "/metrics").1);
        if task_metric(&last, "etmem_paged_out_bytes_total") > 0.0
            && task_metric(&last, "etmem_aggregations_total")
                > task_metric(&first, "etmem_aggregations_total")
        {
            break;
        }
    }
    let show = d.etmem(&["project", "show", "-n", "met"]);
    let report: Vec<String> =
        last.iter().filter(|(k, _)| k.contains("met")).map(|(k, v)| format!("{k} {v}")).collect();
    let report = report.join("\n");
    assert!(
        task_metric(&last, "etmem_paged_out_bytes_total") > 0.0,
        "nothing paged out:\n{report}\n{}",
        show.stdout
    );
    assert!(
        task_metric(&last, "etmem_aggregations_total")
            > task_metric(&first, "etmem_aggregations_total").max(0.0),
        "aggregations did not move:\n{report}"
    );
    assert!(task_metric(&last, "etmem_monitor_cpu_seconds_total") > 0.0, "{report}");
    assert!(task_metric(&last, "etmem_regions") >= 10.0, "{report}");
    assert_eq!(task_metric(&last, "etmem_task_running"), 1.0, "{report}");
    assert_eq!(last.get(r#"etmem_project_started{project="met"}"#), Some(&1.0), "{report}");
    let used =
        last.iter().find(|(k, _)| k.starts_with("etmem_backend_used_bytes{project=\"met\"")).map(|(_, v)| *v);
    assert!(used.is_some(), "no backend metrics:\n{report}");
    // Pages go to the swap device of the highest priority: ours (100)
    // only fills when no other device outranks it.
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    let outranked = swaps
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(4).and_then(|p| p.parse::<i32>().ok()).is_some_and(|p| p > 100));
    if outranked {
        println!("another swap device outranks the project's zram; not checking its fill level");
    } else {
        assert!(used.is_some_and(|u| u > 0.0), "the zram backend shows no use:\n{report}");
    }
    println!("{report}");
    d.etmem(&["project", "stop", "-n", "met"]).ok();
    let after = samples(&get(port, "/metrics").1);
    assert_eq!(after.get(r#"etmem_project_started{project="met"}"#), Some(&0.0));
}

#[test]
fn non_loopback_metrics_address_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(bin("etmemd"))
        .args(["-s"])
        .arg(dir.path().join("s.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--metrics", "0.0.0.0:0"])
        .output()
        .expect("run etmemd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not a loopback address") && err.contains("--metrics-allow-remote"), "{err}");
}
