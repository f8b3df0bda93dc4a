//! `etmemd --metrics ADDR`: the Prometheus text exposition format (0.0.4)
//! over a small HTTP/1.1 responder: `GET /metrics` answers with every
//! project's and task's figures, one connection per request.
//!
//! Loopback only unless `--metrics-allow-remote`: the figures name
//! processes and cgroups.

use crate::daemon::Daemon;
use crate::protocol::ProjectView;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest request head read.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes served at once.
const MAX_CLIENTS: usize = 16;

/// Why `--metrics ADDR` is refused.
#[derive(Debug, thiserror::Error)]
pub enum MetricsAddrError {
    #[error(
        "{0} is not a loopback address; metrics name processes and cgroups, add --metrics-allow-remote to serve them on it"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr} for metrics")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Check and bind the metrics address (before the runtime starts, so a bad
/// address stops the daemon at once).
pub fn bind(addr: SocketAddr, allow_remote: bool) -> Result<std::net::TcpListener, MetricsAddrError> {
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(MetricsAddrError::NotLoopback(addr));
    }
    let l = std::net::TcpListener::bind(addr).map_err(|source| MetricsAddrError::Bind { addr, source })?;
    l.set_nonblocking(true).map_err(|source| MetricsAddrError::Bind { addr, source })?;
    Ok(l)
}

/// Daemon-wide figures besides the projects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DaemonFigures {
    pub record_sessions: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<(String, f64)>,
}

/// Escape a label value (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    format!("{{{}}}", inner.join(","))
}

fn value(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

/// The exposition text for these projects.
pub fn exposition(projects: &[ProjectView], daemon: DaemonFigures) -> String {
    use Kind::*;
    let mut fams: Vec<Family> = Vec::new();
    let mut fam = |name: &'static str, kind: Kind, help: &'static str| -> usize {
        fams.push(Family { name, help, kind, samples: Vec::new() });
        fams.len() - 1
    };
    let up = fam("etmem_up", Gauge, "1 while etmemd serves metrics.");
    let info = fam("etmem_build_info", Gauge, "etmemd version, as a label; always 1.");
    let sessions = fam("etmem_record_sessions", Gauge, "Open etmem record sessions.");
    let started = fam("etmem_project_started", Gauge, "1 when the project is started.");
    let running = fam("etmem_task_running", Gauge, "1 when the task runs in its engine.");
    let procs = fam("etmem_task_processes", Gauge, "Processes the task resolves to now.");
    let regions =
        fam("etmem_regions", Gauge, "Monitoring regions of the task (region and kernel-damon engines).");
    let hot = fam("etmem_hot_bytes", Gauge, "Bytes classified hot at the last aggregation.");
    let cold = fam("etmem_cold_bytes", Gauge, "Bytes classified cold at the last aggregation.");
    let thp = fam("etmem_thp_eligible_bytes", Gauge, "Hot bytes eligible for huge pages.");
    let rss = fam("etmem_rss_bytes", Gauge, "Resident memory of the task's processes.");
    let swap = fam("etmem_swap_bytes", Gauge, "Swapped-out memory of the task's processes.");
    let huge = fam("etmem_anon_huge_bytes", Gauge, "Anonymous huge-page memory of the task's processes.");
    let paged = fam("etmem_paged_out_bytes_total", Counter, "Bytes paged out (MADV_PAGEOUT accepted).");
    let prefetched = fam("etmem_prefetched_bytes_total", Counter, "Bytes prefetched back (MADV_WILLNEED).");
    let refaults =
        fam("etmem_refaulted_pages_total", Counter, "Pages paged out that the task touched again.");
    let collapses = fam("etmem_collapses_total", Counter, "2 MiB units collapsed into huge pages.");
    let demotions = fam("etmem_demotions_total", Counter, "Huge pages split back.");
    let quota_ex =
        fam("etmem_quota_exceeded_total", Counter, "Quota windows that ran out before the plan was done.");
    let quota_used =
        fam("etmem_quota_used_ratio", Gauge, "Share of the cold rule's quota used in the current window.");
    let aggrs = fam("etmem_aggregations_total", Counter, "Aggregation intervals (or scan rounds) completed.");
    let age = fam("etmem_last_aggregation_age_seconds", Gauge, "Seconds since the last aggregation.");
    let mcpu =
        fam("etmem_monitor_cpu_seconds_total", Counter, "CPU time spent scanning (monitoring) the task.");
    let acpu = fam("etmem_action_cpu_seconds_total", Counter, "CPU time spent acting (madvise) on the task.");
    let errors = fam("etmem_action_errors_total", Counter, "Failed action ranges, by errno kind.");
    let task_err =
        fam("etmem_task_error", Gauge, "1 when the task's engine reports an error (see etmem project show).");
    let bsize = fam("etmem_backend_size_bytes", Gauge, "Size of a swap device the project created.");
    let bused = fam("etmem_backend_used_bytes", Gauge, "Bytes used on a swap device the project created.");
    let bfill =
        fam("etmem_backend_fill_ratio", Gauge, "Used share (0..1) of a swap device the project created.");

    fams[up].samples.push((String::new(), 1.0));
    fams[info].samples.push((labels(&[("version", env!("CARGO_PKG_VERSION"))]), 1.0));
    fams[sessions].samples.push((String::new(), daemon.record_sessions as f64));
    for p in projects {
        fams[started].samples.push((labels(&[("project", &p.name)]), if p.started { 1.0 } else { 0.0 }));
        for e in &p.engines {
            for t in &e.tasks {
                let l = labels(&[("project", &p.name), ("engine", &e.name), ("task", &t.name)]);
                fams[running].samples.push((l.clone(), if t.started { 1.0 } else { 0.0 }));
                let Some(s) = &t.stats else { continue };
                let mut put = |i: usize, v: Option<f64>| {
                    if let Some(v) = v {
                        fams[i].samples.push((l.clone(), v));
                    }
                };
                let f = |v: Option<u64>| v.map(|x| x as f64);
                put(procs, Some(s.pids.len() as f64));
                put(regions, f(s.nr_regions));
                put(hot, f(s.hot_bytes));
                put(cold, f(s.cold_bytes));
                put(thp, f(s.thp_eligible_bytes));
                put(rss, f(s.rss_bytes));
                put(swap, f(s.swap_bytes));
                put(huge, f(s.anon_huge_bytes));
                put(paged, f(s.paged_out_bytes));
                put(prefetched, f(s.prefetched_bytes));
                put(refaults, f(s.refaults));
                put(collapses, f(s.collapses));
                put(demotions, f(s.demotions));
                put(quota_ex, f(s.quota_exceeded));
                put(quota_used, s.quota_used_permil.map(|v| v as f64 / 1000.0));
                put(aggrs, f(s.aggregations));
                put(age, s.last_aggregation_age_s);
                put(mcpu, s.monitor_cpu_s);
                put(acpu, s.action_cpu_s);
                put(task_err, Some(if s.last_error.is_some() { 1.0 } else { 0.0 }));
                for (kind, n) in &s.action_errors {
                    let el = labels(&[
                        ("project", &p.name),
                        ("engine", &e.name),
                        ("task", &t.name),
                        ("kind", kind),
                    ]);
                    fams[errors].samples.push((el, *n as f64));
                }
            }
        }
        for b in &p.backends {
            let l = labels(&[("project", &p.name), ("kind", &b.kind), ("device", &b.device)]);
            fams[bsize].samples.push((l.clone(), b.size_bytes as f64));
            fams[bused].samples.push((l.clone(), b.used_bytes as f64));
            let ratio = if b.size_bytes > 0 { b.used_bytes as f64 / b.size_bytes as f64 } else { 0.0 };
            fams[bfill].samples.push((l, ratio));
        }
    }
    let mut out = String::new();
    for f in &fams {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, if f.kind == Counter { "counter" } else { "gauge" });
        for (l, v) in &f.samples {
            let _ = writeln!(out, "{}{l} {}", f.name, value(*v));
        }
    }
    out
}

fn response(status: &str, content_type: &str, body: &str, head_only: bool, extra: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// The answer to one request head.
fn answer(head: &str, daemon: &Daemon) -> Vec<u8> {
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return response("405 Method Not Allowed", "text/plain", "only GET\n", false, "Allow: GET, HEAD\r\n");
    }
    match path {
        "/metrics" => {
            let body =
                exposition(&daemon.projects(), DaemonFigures { record_sessions: daemon.record_sessions() });
            response("200 OK", "text/plain; version=0.0.4; charset=utf-8", &body, head_only, "")
        }
        "/" => response("200 OK", "text/plain", "etmemd: metrics at /metrics\n", head_only, ""),
        _ => response("404 Not Found", "text/plain", "not found; try /metrics\n", head_only, ""),
    }
}

async fn connection(mut stream: TcpStream, daemon: Arc<Daemon>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.len() > MAX_HEAD_BYTES {
                return Ok::<bool, std::io::Error>(false);
            }
        }
        Ok(true)
    };
    let ok = match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(r) => r?,
        Err(_) => return Ok(()),
    };
    let reply = if ok {
        let text = String::from_utf8_lossy(&head).into_owned();
        tokio::task::spawn_blocking(move || answer(&text, &daemon)).await.unwrap_or_else(|_| {
            response("500 Internal Server Error", "text/plain", "internal error\n", false, "")
        })
    } else {
        response("431 Request Header Fields Too Large", "text/plain", "request too large\n", false, "")
    };
    stream.write_all(&reply).await?;
    stream.shutdown().await
}

/// Serve metrics until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    daemon: Arc<Daemon>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            p = Arc::clone(&slots).acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let d = Arc::clone(&daemon);
        tokio::spawn(async move {
            if let Err(e) = connection(stream, d).await {
                tracing::debug!(error = %e, "metrics connection ended");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{BackendView, EngineView, TaskStats, TaskView};

    fn project() -> ProjectView {
        let mut stats = TaskStats {
            pids: vec![1, 2],
            nr_regions: Some(42),
            paged_out_bytes: Some(1 << 20),
            monitor_cpu_s: Some(0.25),
            quota_used_permil: Some(500),
            ..TaskStats::default()
        };
        stats.action_errors.insert("out_of_memory(12)".into(), 3);
        ProjectView {
            name: "db \"x\"".into(),
            started: true,
            scan: "region".into(),
            engines: vec![EngineView {
                name: "region".into(),
                kind: "region".into(),
                tasks: vec![TaskView {
                    name: "wl".into(),
                    target_type: "pid".into(),
                    target: "1".into(),
                    started: true,
                    stats: Some(stats),
                }],
            }],
            backends: vec![BackendView {
                kind: "zram".into(),
                device: "/dev/zram1".into(),
                priority: 100,
                size_bytes: 1000,
                used_bytes: 250,
            }],
            notes: vec![],
        }
    }

    #[test]
    fn exposition_has_help_type_and_labelled_samples() {
        let text = exposition(&[project()], DaemonFigures { record_sessions: 1 });
        let l = r#"project="db \"x\"",engine="region",task="wl""#;
        for want in [
            "# HELP etmem_paged_out_bytes_total ".to_string(),
            "# TYPE etmem_paged_out_bytes_total counter".into(),
            "# TYPE etmem_hot_bytes gauge".into(),
            format!("etmem_paged_out_bytes_total{{{l}}} 1048576"),
            format!("etmem_regions{{{l}}} 42"),
            format!("etmem_monitor_cpu_seconds_total{{{l}}} 0.25"),
            format!("etmem_quota_used_ratio{{{l}}} 0.5"),
            format!("etmem_task_processes{{{l}}} 2"),
            format!("etmem_action_errors_total{{{l},kind=\"out_of_memory(12)\"}} 3"),
            r#"etmem_backend_fill_ratio{project="db \"x\"",kind="zram",device="/dev/zram1"} 0.25"#.into(),
            "etmem_record_sessions 1".into(),
            "etmem_up 1".into(),
        ] {
            let found =
                text.lines().any(|line| line == want || (want.ends_with(' ') && line.starts_with(&want)));
            assert!(found, "missing {want:?} in\n{text}");
        }
        // Every sample line belongs to a family declared before it.
        let mut declared = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap_or("").to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                assert!(declared.contains(name) && name.starts_with("etmem_"), "{line}");
            }
        }
    }

    #[test]
    fn remote_addresses_need_permission() {
        let any: SocketAddr = "0.0.0.0:0".parse().expect("addr");
        assert!(matches!(bind(any, false), Err(MetricsAddrError::NotLoopback(_))));
        let lo: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        assert!(bind(lo, false).is_ok());
    }
}
