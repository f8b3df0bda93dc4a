//! `etmem-guest-init`: PID 1 of the QEMU test guest (issue 7). It mounts
//! the pseudo filesystems, loads the zram modules, sets up a zram swap, runs
//! the scenarios named on the kernel command line (`etmem.scenarios=a,b`;
//! all when absent) and reports on the serial console in lines
//! `ETMEM-GUEST {json}`: `boot`, per scenario `begin` (with its time budget)
//! and `result` (ok, failures, figures), then `done`. Then it powers off.
//!
//! The host side is tests/guest/harness.rs. Run outside a guest it refuses
//! to do anything (it is not PID 1).

mod daemon;
mod measure;
mod os;
mod scenarios;

use serde_json::{Value, json};
use std::time::Instant;

/// Print one protocol line on the console.
pub fn emit(v: Value) {
    println!("ETMEM-GUEST {v}");
}

/// Free text on the console, for people reading the log.
pub fn note(msg: impl AsRef<str>) {
    println!("[guest] {}", msg.as_ref());
}

fn cmdline_value(cmdline: &str, key: &str) -> Option<String> {
    cmdline.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
}

fn setup() -> Result<Value, String> {
    os::mount("proc", "/proc", "proc", None)?;
    os::mount("sysfs", "/sys", "sysfs", None)?;
    os::mount("devtmpfs", "/dev", "devtmpfs", None)?;
    os::mount("tmpfs", "/tmp", "tmpfs", None)?;
    os::mount("tmpfs", "/run", "tmpfs", None)?;
    os::mount("cgroup2", "/sys/fs/cgroup", "cgroup2", None)?;
    let mut loaded = Vec::new();
    let mut rd: Vec<_> = std::fs::read_dir("/lib/modules")
        .map_err(|e| format!("/lib/modules: {e}"))?
        .flatten()
        .map(|e| e.path())
        .collect();
    // lz4_compress, lz4hc_compress, then zram: the harness names them so.
    rd.sort_by_key(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("zram")));
    for m in rd {
        os::insmod(&m)?;
        loaded.push(m.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    }
    // Like the development machines (DESIGN.md): THP only where madvised.
    let _ = std::fs::write("/sys/kernel/mm/transparent_hugepage/enabled", "madvise");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    Ok(json!({
        "kernel": kernel,
        "modules": loaded,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "mem_total_bytes": os::meminfo_kb("MemTotal"),
    }))
}

fn main() {
    if std::process::id() != 1 {
        eprintln!("etmem-guest-init is the test guest's /init; it runs only as PID 1 inside the guest");
        std::process::exit(2);
    }
    let start = Instant::now();
    let boot = match setup() {
        Ok(v) => v,
        Err(e) => {
            emit(json!({"event": "boot", "ok": false, "error": e}));
            emit(json!({"event": "done", "ok": false}));
            os::power_off();
        }
    };
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let wanted: Vec<String> = cmdline_value(&cmdline, "etmem.scenarios")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| scenarios::ALL.iter().map(|(n, _, _)| (*n).to_string()).collect());
    let bench = cmdline_value(&cmdline, "etmem.bench").is_some_and(|v| v == "1");
    emit(json!({"event": "boot", "ok": true, "info": boot, "boot_s": start.elapsed().as_secs_f64()}));
    let swap = scenarios::zram_swap();
    if let Err(e) = &swap {
        note(format!("no zram swap: {e}"));
    }
    let ctx = scenarios::Ctx { bench, has_swap: swap.is_ok() };
    for name in &wanted {
        let Some((_, budget_s, run)) = scenarios::ALL.iter().find(|(n, _, _)| n == name) else {
            emit(json!({"event": "result", "scenario": name, "ok": false, "failures": ["no such scenario"]}));
            continue;
        };
        emit(json!({"event": "begin", "scenario": name, "budget_s": budget_s}));
        let t0 = Instant::now();
        let outcome = std::panic::catch_unwind(|| run(&ctx));
        os::reap_zombies();
        let (ok, failures, figures) = match outcome {
            Ok(Ok(r)) => (r.failures.is_empty(), r.failures, r.figures),
            Ok(Err(e)) => (false, vec![e], Value::Null),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                (false, vec![format!("panicked: {msg}")], Value::Null)
            }
        };
        emit(json!({
            "event": "result", "scenario": name, "ok": ok, "failures": failures,
            "figures": figures, "elapsed_s": t0.elapsed().as_secs_f64(),
        }));
    }
    if let Ok(z) = swap
        && let Err(e) = z.teardown()
    {
        note(format!("zram teardown: {e}"));
    }
    emit(json!({"event": "done", "ok": true, "elapsed_s": start.elapsed().as_secs_f64()}));
    os::power_off();
}
