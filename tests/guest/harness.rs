//! Host side of the QEMU guest tests: get qemu and the Debian 6.12 kernel
//! (`setup.sh`, cached), build our binaries statically, pack them with the
//! zram modules into an initramfs, boot it under TCG and collect what the
//! guest's init prints on the serial console.
//!
//! The guest speaks in lines `ETMEM-GUEST {json}` (see `init/main.rs`):
//! `boot`, then per scenario `begin` (with its time budget) and `result`,
//! then `done`. A guest that does not boot, a scenario past its budget, or
//! a guest that ends without `done` is a failure; qemu is killed (by its
//! pid) on every way out.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Marker of the guest's protocol lines.
pub const MARKER: &str = "ETMEM-GUEST ";

/// The binaries the initramfs carries, built statically.
pub const GUEST_BINS: [&str; 4] = ["etmemd", "etmem", "etmem-workload", "etmem-guest-init"];

/// Kernel modules the guest loads, in this order (zram needs the lz4 ones;
/// zsmalloc and lzo are built in).
pub const MODULES: [&str; 3] =
    ["kernel/lib/lz4/lz4_compress", "kernel/lib/lz4/lz4hc_compress", "kernel/drivers/block/zram/zram"];

/// What setup.sh found.
#[derive(Debug, Clone)]
pub struct Setup {
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub modules: PathBuf,
    pub version: String,
}

/// The workspace root (the tests crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Where downloads are kept between runs: `$ETMEM_GUEST_CACHE`, else
/// `~/.cache/etmem-rs/guest`.
pub fn cache_dir() -> PathBuf {
    if let Ok(d) = std::env::var("ETMEM_GUEST_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    Path::new(&home).join(".cache/etmem-rs/guest")
}

/// Install qemu if needed and fetch the kernel. `Err` is why the guest
/// tests cannot run here.
pub fn setup(cache: &Path) -> Result<Setup, String> {
    let script = workspace_root().join("tests/guest/setup.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(cache)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let why = stderr.lines().find_map(|l| l.strip_prefix("unavailable: ")).unwrap_or("setup.sh failed");
        return Err(format!("{why} ({})", stderr.lines().last().unwrap_or("")));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
            .ok_or_else(|| format!("setup.sh printed no {k}="))
    };
    Ok(Setup {
        qemu: PathBuf::from(get("qemu")?),
        kernel: PathBuf::from(get("kernel")?),
        modules: PathBuf::from(get("modules")?),
        version: get("version")?,
    })
}

/// Build the guest binaries statically (glibc, `+crt-static`) into their
/// own target directory, so the host build is not invalidated. Returns the
/// directory holding them.
pub fn build_static(target_dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--release", "--target", "x86_64-unknown-linux-gnu", "--target-dir"])
        .arg(target_dir)
        .args(["-p", "etmemd", "-p", "perf", "-p", "etmem-tests"]);
    for b in GUEST_BINS {
        cmd.args(["--bin", b]);
    }
    // Per-target flags leave build scripts alone and add to, rather than
    // replace, a RUSTFLAGS the caller may set.
    cmd.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
        .env_remove("CARGO_TARGET_DIR");
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("static build of {} failed ({status})", GUEST_BINS.join(", ")));
    }
    Ok(target_dir.join("x86_64-unknown-linux-gnu/release"))
}

/// A newc ("070701") cpio archive, written entry by entry.
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn new() -> Cpio {
        Cpio { out: Vec::new(), ino: 1 }
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let name_z = name.len() + 1;
        let fields = [self.ino, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, rdev.0, rdev.1, name_z as u32, 0];
        self.ino += 1;
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | mode, (0, 0), data);
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120_777, (0, 0), target.as_bytes());
    }

    fn chardev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020_600, (major, minor), &[]);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        // The kernel reads the archive in 512-byte blocks.
        while !self.out.len().is_multiple_of(512) {
            self.out.push(0);
        }
        self.out
    }
}

/// A module's bytes, decompressed (`.ko.xz` through `xz -dc`).
fn module_bytes(modules_dir: &Path, stem: &str) -> Result<Vec<u8>, String> {
    let plain = modules_dir.join(format!("{stem}.ko"));
    if plain.exists() {
        return std::fs::read(&plain).map_err(|e| format!("{}: {e}", plain.display()));
    }
    let xz = modules_dir.join(format!("{stem}.ko.xz"));
    let out = Command::new("xz")
        .arg("-dc")
        .arg(&xz)
        .output()
        .map_err(|e| format!("cannot run xz for {}: {e}", xz.display()))?;
    if !out.status.success() {
        return Err(format!("xz -dc {} failed: {}", xz.display(), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(out.stdout)
}

/// Pack the initramfs: /init, /bin/*, /lib/modules/*.ko (decompressed),
/// /dev/console, and the symlinks the scenarios use to give workloads
/// their own process names.
pub fn build_initramfs(out: &Path, bins: &Path, setup: &Setup) -> Result<u64, String> {
    let mut c = Cpio::new();
    for d in ["bin", "dev", "etc", "lib", "lib/modules", "proc", "run", "sys", "tmp"] {
        c.dir(d);
    }
    c.chardev("dev/console", 5, 1);
    c.chardev("dev/null", 1, 3);
    for b in GUEST_BINS {
        let p = bins.join(b);
        let data = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        if b == "etmem-guest-init" {
            c.file("init", 0o755, &data);
        } else {
            c.file(&format!("bin/{b}"), 0o755, &data);
        }
    }
    // comm is the basename the binary was executed by: each name is a task.
    for alias in ["wl-ours", "wl-plain", "wl-watch", "wl-bench", "wl-cg"] {
        c.symlink(&format!("bin/{alias}"), "etmem-workload");
    }
    for m in MODULES {
        let name = Path::new(m).file_name().and_then(|n| n.to_str()).unwrap_or(m);
        c.file(&format!("lib/modules/{name}.ko"), 0o644, &module_bytes(&setup.modules, m)?);
    }
    c.file("etc/kernel-version", 0o644, setup.version.as_bytes());
    let data = c.finish();
    std::fs::write(out, &data).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(data.len() as u64)
}

/// How to run the guest.
#[derive(Debug, Clone)]
pub struct GuestOptions {
    pub scenarios: Vec<String>,
    pub bench: bool,
    pub mem_mib: u32,
    pub smp: u32,
    /// Until the first protocol line.
    pub boot_timeout: Duration,
    /// The whole run.
    pub total_timeout: Duration,
    /// Added to each scenario's own budget.
    pub scenario_slack: Duration,
}

impl Default for GuestOptions {
    fn default() -> Self {
        GuestOptions {
            scenarios: Vec::new(),
            bench: false,
            mem_mib: 1024,
            smp: 2,
            boot_timeout: Duration::from_secs(180),
            total_timeout: Duration::from_secs(20 * 60),
            scenario_slack: Duration::from_secs(90),
        }
    }
}

/// What a finished guest said.
#[derive(Debug)]
pub struct GuestRun {
    /// Every `ETMEM-GUEST` object, in order.
    pub events: Vec<Value>,
    /// The whole serial console.
    pub console: Vec<String>,
    pub elapsed: Duration,
}

impl GuestRun {
    /// The `result` event of a scenario.
    pub fn result(&self, scenario: &str) -> Option<&Value> {
        self.events.iter().find(|e| e["event"] == "result" && e["scenario"] == scenario)
    }
}

/// Why a guest run failed, with the end of its console.
#[derive(Debug)]
pub struct GuestError {
    pub what: String,
    pub tail: Vec<String>,
}

impl std::fmt::Display for GuestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.what)?;
        writeln!(f, "--- last {} console lines ---", self.tail.len())?;
        for l in &self.tail {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

/// qemu, killed and reaped on drop.
struct Qemu {
    child: Child,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's pid only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Boot the guest and follow it to `done`. The console goes to `log` as it comes.
pub fn boot(setup: &Setup, initrd: &Path, opts: &GuestOptions, log: &Path) -> Result<GuestRun, GuestError> {
    let mut append = String::from("console=ttyS0 panic=-1 quiet loglevel=4");
    if !opts.scenarios.is_empty() {
        append.push_str(&format!(" etmem.scenarios={}", opts.scenarios.join(",")));
    }
    if opts.bench {
        append.push_str(" etmem.bench=1");
    }
    let mut cmd = Command::new(&setup.qemu);
    cmd.args(["-accel", "tcg", "-cpu", "max", "-smp"])
        .arg(opts.smp.to_string())
        .arg("-m")
        .arg(opts.mem_mib.to_string())
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(&setup.kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(&append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // qemu dies with the thread that started it, even when this test is
    // killed (SIGKILL runs no Drop): no guest is left running on the host.
    // SAFETY: the closure runs in the forked child before exec and only
    // calls prctl(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let fail = |what: String| GuestError { what, tail: Vec::new() };
    let mut child = cmd.spawn().map_err(|e| fail(format!("cannot start {}: {e}", setup.qemu.display())))?;
    let stdout = child.stdout.take().ok_or_else(|| fail("qemu has no stdout".into()))?;
    let stderr = child.stderr.take();
    let mut qemu = Qemu { child };
    let (tx, rx) = mpsc::channel::<String>();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
            if tx.send(text).is_err() {
                break;
            }
        }
    });
    if let Some(stderr) = stderr {
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx2.send(format!("[qemu stderr] {line}")).is_err() {
                    break;
                }
            }
        });
    }
    let mut logf = std::fs::File::create(log).ok();
    let start = Instant::now();
    let mut console: Vec<String> = Vec::new();
    let mut events: Vec<Value> = Vec::new();
    let mut booted = false;
    let mut scenario: Option<(String, Instant)> = None;
    let tail = |c: &Vec<String>| c.iter().rev().take(80).rev().cloned().collect::<Vec<_>>();
    loop {
        let now = Instant::now();
        let mut deadline = start + opts.total_timeout;
        let mut waiting_for = "the guest to finish".to_string();
        if !booted {
            deadline = deadline.min(start + opts.boot_timeout);
            waiting_for = "the guest to boot (no ETMEM-GUEST line)".into();
        }
        if let Some((name, d)) = &scenario
            && *d < deadline
        {
            deadline = *d;
            waiting_for = format!("scenario {name} to end within its budget");
        }
        if now >= deadline {
            return Err(GuestError {
                what: format!(
                    "timed out after {:.0} s waiting for {waiting_for}",
                    start.elapsed().as_secs_f64()
                ),
                tail: tail(&console),
            });
        }
        match rx.recv_timeout(deadline - now) {
            Ok(line) => {
                if let Some(f) = logf.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if let Some(json) = line.find(MARKER).map(|i| &line[i + MARKER.len()..]) {
                    booted = true;
                    match serde_json::from_str::<Value>(json) {
                        Ok(v) => {
                            match v["event"].as_str() {
                                Some("begin") => {
                                    let budget = Duration::from_secs(v["budget_s"].as_u64().unwrap_or(300));
                                    let name = v["scenario"].as_str().unwrap_or("?").to_string();
                                    scenario = Some((name, Instant::now() + budget + opts.scenario_slack));
                                }
                                Some("result") => scenario = None,
                                _ => {}
                            }
                            let done = v["event"] == "done";
                            events.push(v);
                            console.push(line);
                            if done {
                                // Let it power off; Drop kills it otherwise.
                                let end = Instant::now() + Duration::from_secs(30);
                                while Instant::now() < end {
                                    if let Ok(Some(_)) = qemu.child.try_wait() {
                                        break;
                                    }
                                    std::thread::sleep(Duration::from_millis(100));
                                }
                                return Ok(GuestRun { events, console, elapsed: start.elapsed() });
                            }
                            continue;
                        }
                        Err(e) => console.push(format!("{line}   <-- bad protocol line: {e}")),
                    }
                } else {
                    console.push(line);
                }
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                let status = qemu.child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(GuestError {
                    what: format!(
                        "qemu exited ({status}) after {:.0} s before the guest said done",
                        start.elapsed().as_secs_f64()
                    ),
                    tail: tail(&console),
                });
            }
        }
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// perf/results/kernel-damon.md from a run's figures.
pub fn results_markdown(setup: &Setup, run: &GuestRun) -> String {
    let mut s = String::from("# Kernel DAMON in the QEMU guest\n\n");
    s.push_str(&format!(
        "Written by `scripts/guest-test --bench` (tests/tests/guest.rs). Guest: Debian kernel {}, QEMU TCG \
         (`-cpu max -smp 2 -m 1024`, no KVM), so absolute CPU figures are emulated and only the ratios mean \
         something. Guest run: {:.0} s.\n\n",
        setup.version,
        run.elapsed.as_secs_f64()
    ));
    if let Some(b) = run.result("bench") {
        s.push_str(
            "## Monitoring CPU: kdamond vs the userspace region engine\n\n\
             Same workload (`etmem-workload --size S --hot 10% --write-ratio 1`, random access), same \
             attributes (sample 5 ms, aggregation 100 ms, 10..1000 regions), each monitor alone, no \
             actions. CPU per second of wall time over the window: the kdamond thread's \
             (`/proc/PID/schedstat`) and the region engine's monitoring thread with the soft-dirty \
             probe (Debian's 6.12 has no idle page tracking; the refault probe pages samples out, \
             another cost altogether). The kernel engine's own driver thread (it reads the tried \
             regions and stats back once a second) is listed apart; in 6.12 the kdamond thread \
             itself builds the `tried_regions` directories for that read-back, so its figure grows \
             with its region count.\n\n\
             | workload | window | kdamond | kernel-damon driver | region engine (soft-dirty) | ratio |\n\
             |---|---|---|---|---|---|\n",
        );
        let pct = |v: &Value| {
            if v.is_null() { "-".to_string() } else { format!("{:.2} %", 100.0 * num(&v["cpu_s_per_s"])) }
        };
        // The region engine's cell also says how many aggregations it
        // completed per second (10 when it keeps up) and its regions.
        let region = |v: &Value| {
            if v.is_null() {
                "-".to_string()
            } else {
                format!(
                    "{} ({:.1} aggr/s, {} regions)",
                    pct(v),
                    num(&v["aggregations_per_s"]),
                    v["nr_regions"].as_u64().unwrap_or(0)
                )
            }
        };
        let kdamond = |v: &Value| {
            if v.is_null() {
                "-".to_string()
            } else {
                format!("{} ({} regions)", pct(v), v["nr_regions"].as_u64().unwrap_or(0))
            }
        };
        let ratio = |v: &Value| if v.is_null() { "-".to_string() } else { format!("{:.1}x", num(v)) };
        let rows = b["figures"]["rows"].as_array().cloned().unwrap_or_default();
        for r in &rows {
            s.push_str(&format!(
                "| {} | {} s | {} | {:.2} % | {} | {} |\n",
                r["size"].as_str().unwrap_or("?"),
                r["window_s"],
                kdamond(&r["kdamond"]),
                100.0 * num(&r["kdamond"]["driver_cpu_s_per_s"]),
                region(&r["region_soft_dirty"]),
                ratio(&r["ratio_soft_dirty"]),
            ));
        }
        if rows.is_empty() {
            s.push_str("| (no row: the benchmark measured nothing) | | | | | |\n");
        }
        s.push('\n');
        if !rows.is_empty() {
            s.push_str(
                "*ratio*: the region engine's CPU per second divided by the kdamond's (how many times \
                 more CPU the userspace engine spends watching the same workload). Where the region \
                 engine completes fewer than 10 aggregations a second it cannot keep the 5 ms sampling \
                 pace under emulation, so per aggregation it costs more than the ratio says. Region \
                 counts are at the end of the window (split and merge adapt them), and figures vary \
                 from run to run (an emulated guest on a shared host; the kdamond's region count \
                 especially).\n\n",
            );
        }
        for f in b["failures"].as_array().cloned().unwrap_or_default() {
            s.push_str(&format!("Benchmark failure: {}\n\n", f.as_str().unwrap_or("?")));
        }
    }
    if let Some(p) = run.result("pageout") {
        let f = &p["figures"];
        let o = &f["ours"];
        s.push_str(&format!(
            "## Pageout to zram, hot range kept\n\n\
             Workloads of 96 MiB with a 12 MiB hot range (random, 25 % writes), {} s, zram swap (lz4). \
             *Ours*: a native kernel-damon config (`cold_min_age = 5s`, `cold_action = pageout`, quota \
             32 MiB/s weighted by age and accesses) and the schemes we generate from it (hot guards: \
             `addr` reject filters over the ranges seen accessed within a hold time; no PSI goal, \
             which only the watermark-driven mode gets). *Plain*: etmem's damon config (pageout at 0 accesses \
             after 50 aggregations = 5 s), two processes of the same name, both targets of one kdamond.\n\n\
             | run | pid | major faults | hot pages | swapped | data |\n|---|---|---|---|---|---|\n",
            f["run_s"]
        ));
        let row = |name: &str, v: &Value| {
            format!(
                "| {name} | {} | {} | {} | {} MiB | {} |\n",
                v["pid"],
                v["majflt"],
                v["hot_pages"],
                v["vmswap_bytes"].as_u64().unwrap_or(0) >> 20,
                if v["verify_ok"] == true { "intact" } else { "BAD" }
            )
        };
        s.push_str(&row("ours", o));
        for v in f["plain"].as_array().cloned().unwrap_or_default() {
            s.push_str(&row("plain", &v));
        }
        s.push('\n');
    }
    if let Some(m) = run.result("monitor") {
        let f = &m["figures"];
        let line = |name: &str, v: &Value| {
            format!(
                "| {name} | {:.3} | {:.3} | {:.3} |\n",
                num(&v["recall"]),
                num(&v["precision"]),
                num(&v["jaccard"])
            )
        };
        s.push_str(
            "## Hot range found (128 MiB workload, 16 MiB hot, all writes)\n\n\
             The kernel-damon engine and the region engine (soft-dirty) watch the workload together; \
             each one's hot set is what it saw accessed in any of three snapshots read in a row after \
             40 s. The page \
             engine runs alone afterwards. *overlap* is |found ∩ truth| / |found ∪ truth|.\n\n\
             | monitor | recall | precision | overlap |\n|---|---|---|---|\n",
        );
        s.push_str(&line("kernel-damon vs truth", &f["kernel_damon"]["match"]));
        s.push_str(&line("region (soft-dirty) vs truth", &f["region_soft_dirty"]["match"]));
        if f["page_soft_dirty"].is_object() {
            s.push_str(&line("page (soft-dirty) vs truth", &f["page_soft_dirty"]["match"]));
        }
        s.push_str(&line("kernel-damon vs region", &f["agreement"]));
        s.push('\n');
    }
    if let Some(m) = run.result("memcg") {
        let f = &m["figures"];
        let row = |name: &str, v: &Value| {
            format!(
                "| {name} | {} MiB | {} MiB | {} | {} |\n",
                v["cold_bytes"].as_u64().unwrap_or(0) >> 20,
                v["vmswap_bytes"].as_u64().unwrap_or(0) >> 20,
                v["majflt"],
                if v["verify_ok"] == true { "intact" } else { "BAD" }
            )
        };
        s.push_str(&format!(
            "## paddr with a memcg filter\n\n\
             Two 96 MiB workloads (12 MiB hot), one inside a cgroup: a paddr kdamond over all of System \
             RAM with a memcg filter for that cgroup, `cold_min_age = 5s`, `cold_action = pageout`, \
             until half the cold memory is out or 75 s ({:.0} s here).\n\n\
             | workload | cold | swapped | major faults | data |\n|---|---|---|---|---|\n",
            num(&f["seconds"])
        ));
        s.push_str(&row("in the cgroup", &f["inside"]));
        s.push_str(&row("outside", &f["outside"]));
        s.push('\n');
    }
    s
}
