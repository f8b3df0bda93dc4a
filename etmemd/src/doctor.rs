//! `etmem doctor`: what this host offers (DAMON, idle page tracking,
//! soft-dirty, etmem's modules, process_madvise advices tried for real on a
//! child, THP, swap, zram, zswap, PSI, cgroups, privileges) and, from that,
//! which engines, probes and backends work here and why the others do not.
//! The daemon logs the same verdicts at start.
//!
//! Architecture invariant: the doctor only reads under
//! /sys/kernel/mm/damon (the host's kdamond is not ours), and the only
//! process it acts on is a short-lived child of its own.

use damon_core::PAGE_SIZE;
use damon_core::ops::kdamond::{DamonSysfs, KdamondPool};
use damon_core::ops::select::{self, HostEnv, ProbeKind, ProbeStatus};
use damon_core::ops::sys::{self, AnonMapping, MADV_COLD, MADV_COLLAPSE, MADV_PAGEOUT, MADV_WILLNEED};
use serde::Serialize;
use std::fmt::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One fact about the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

fn check(name: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check { name: name.into(), ok, detail: detail.into() }
}

/// A group of facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    pub title: String,
    pub checks: Vec<Check>,
}

/// Whether an engine, probe or backend works here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub name: String,
    pub works: bool,
    /// What the project must have for it to work (e.g. a swap backend).
    pub needs: Option<String>,
    /// How it works here, or why it does not.
    pub detail: String,
}

impl Verdict {
    fn yes(name: &str, detail: impl Into<String>) -> Verdict {
        Verdict { name: name.into(), works: true, needs: None, detail: detail.into() }
    }
    fn no(name: &str, detail: impl Into<String>) -> Verdict {
        Verdict { name: name.into(), works: false, needs: None, detail: detail.into() }
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorReport {
    pub kernel: String,
    pub host: Vec<Section>,
    pub engines: Vec<Verdict>,
    pub probes: Vec<Verdict>,
    pub backends: Vec<Verdict>,
}

impl DoctorReport {
    pub fn engine(&self, name: &str) -> Option<&Verdict> {
        self.engines.iter().find(|v| v.name == name)
    }
    pub fn probe(&self, name: &str) -> Option<&Verdict> {
        self.probes.iter().find(|v| v.name == name)
    }
    pub fn backend(&self, name: &str) -> Option<&Verdict> {
        self.backends.iter().find(|v| v.name == name)
    }
}

/// The state of kernel DAMON, read only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamonState {
    /// `Err(why)` when the sysfs interface is missing or unreadable.
    pub sysfs: Result<(), String>,
    /// Every kdamond, described.
    pub kdamonds: Vec<String>,
    /// Running kdamonds this daemon did not start (their description).
    pub foreign: Vec<String>,
    /// `avail_operations` of an existing context, when one exists.
    pub avail_operations: Option<Vec<String>>,
}

/// The facts the verdicts are drawn from (gathered by [`inspect`]; tests
/// build them by hand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub root: bool,
    /// Probe availability with no swap planned, and with a swap backend in the project.
    pub probes_now: Vec<ProbeStatus>,
    pub probes_with_swap: Vec<ProbeStatus>,
    /// `None` when zram can be used; else why not.
    pub zram_unavailable: Option<String>,
    pub swapfile: Result<(), String>,
    pub damon: DamonState,
    pub numa_nodes: usize,
    /// process_madvise on another process, by advice name.
    pub madvise: Vec<(String, Result<(), String>)>,
    pub psi: Result<(), String>,
}

fn status_of(list: &[ProbeStatus], kind: ProbeKind) -> Result<(), String> {
    list.iter()
        .find(|s| s.kind == kind)
        .map(|s| s.availability.clone())
        .unwrap_or_else(|| Err("not checked".into()))
}

fn best(list: &[ProbeStatus], forbidden: &[ProbeKind]) -> Option<ProbeKind> {
    select::select_from(list, forbidden).ok().map(|s| s.chosen)
}

/// The engines' verdicts: `region` and `page` need a probe, `kernel-damon`
/// a usable kdamond, etmem's `damon` falls back to `region`, `cslide` needs
/// two NUMA nodes and a probe that sees hugetlb pages, `psi` is not built.
fn engine_verdicts(f: &Facts) -> Vec<Verdict> {
    let swap_backend = f.zram_unavailable.is_none() || f.swapfile.is_ok();
    let monitor = |name: &str| -> Verdict {
        if let Some(p) = best(&f.probes_now, &[]) {
            return Verdict::yes(name, format!("probe {p}, the best this host offers"));
        }
        match best(&f.probes_with_swap, &[]) {
            Some(p) if swap_backend => Verdict {
                name: name.into(),
                works: true,
                needs: Some("a zram or swapfile [[backend]] in the project".into()),
                detail: format!(
                    "probe {p}, which pages sampled pages out and needs swap: no other probe works here and no \
                     swap is on"
                ),
            },
            _ => {
                let why: Vec<String> = f
                    .probes_with_swap
                    .iter()
                    .filter_map(|s| s.availability.as_ref().err().map(|e| format!("{}: {e}", s.kind)))
                    .collect();
                Verdict::no(name, format!("no access probe works here ({})", why.join("; ")))
            }
        }
    };
    let region = monitor("region");
    let page = monitor("page");

    let kernel = match &f.damon.sysfs {
        Err(why) => Verdict::no("kernel-damon", why.clone()),
        Ok(()) if !f.root => Verdict::no("kernel-damon", "driving kernel DAMON needs root"),
        Ok(()) if !f.damon.foreign.is_empty() => Verdict::no(
            "kernel-damon",
            format!(
                "{}: a kdamond this daemon did not start runs, and etmem-rs never touches the host's own kdamond",
                f.damon.foreign.join("; ")
            ),
        ),
        Ok(()) => match &f.damon.avail_operations {
            Some(ops) if !ops.iter().any(|o| o == "vaddr") => Verdict {
                name: "kernel-damon".into(),
                works: true,
                needs: Some("ops = \"paddr\" with cgroup tasks".into()),
                detail: format!("this kernel's DAMON has no vaddr operations (it has: {})", ops.join(" ")),
            },
            Some(ops) => {
                Verdict::yes("kernel-damon", format!("DAMON sysfs with operations {}", ops.join(" ")))
            }
            None => Verdict::yes("kernel-damon", "DAMON sysfs; its operations show once a kdamond exists"),
        },
    };
    let damon = if kernel.works && kernel.needs.is_none() {
        Verdict::yes("damon (etmem)", "etmem's damon engine runs on kernel DAMON")
    } else if region.works {
        Verdict {
            name: "damon (etmem)".into(),
            works: true,
            // etmem's INI files have no [[backend]]: the swap must be on already.
            needs: region
                .needs
                .as_ref()
                .map(|_| "swap on the host (etmem configs have no [[backend]])".into()),
            detail: format!(
                "runs on the userspace region engine ({}): kernel DAMON: {}",
                region.detail, kernel.detail
            ),
        }
    } else {
        Verdict::no(
            "damon (etmem)",
            format!("kernel DAMON: {}; region engine: {}", kernel.detail, region.detail),
        )
    };

    let hugetlb_probe = best(&f.probes_now, &[ProbeKind::Refault, ProbeKind::IdleBitmap]);
    let cslide = if f.numa_nodes < 2 {
        Verdict::no(
            "cslide",
            format!(
                "this host has {} NUMA node; cslide moves pages between a DRAM and a PMEM node and needs at least two",
                f.numa_nodes
            ),
        )
    } else if let Some(p) = hugetlb_probe {
        Verdict::yes("cslide", format!("{} NUMA nodes, probe {p}", f.numa_nodes))
    } else {
        Verdict::no(
            "cslide",
            "cslide scans hugetlb pages, which only etmem idle_pages and soft-dirty see, and neither works here",
        )
    };
    let psi = Verdict::no(
        "psi",
        match &f.psi {
            Ok(()) => "the psi engine is not in this build of etmemd (memory PSI is available)".to_string(),
            Err(e) => format!("the psi engine is not in this build of etmemd; memory PSI: {e}"),
        },
    );
    vec![region, page, kernel, damon, cslide, psi]
}

fn probe_verdicts(f: &Facts) -> Vec<Verdict> {
    ProbeKind::PREFERENCE
        .iter()
        .map(|&k| match (status_of(&f.probes_now, k), status_of(&f.probes_with_swap, k)) {
            (Ok(()), _) => Verdict::yes(k.name(), format!("sees {}", sees(k))),
            (Err(now), Ok(())) => Verdict {
                name: k.name().into(),
                works: true,
                needs: Some("a zram or swapfile [[backend]] in the project".into()),
                detail: format!("sees {}; now: {now}", sees(k)),
            },
            (Err(now), Err(_)) => Verdict::no(k.name(), now),
        })
        .collect()
}

fn sees(k: ProbeKind) -> &'static str {
    match k {
        ProbeKind::SoftDirty => "writes only",
        ProbeKind::Refault => "reads and writes, at a fault per hot sample",
        _ => "reads and writes",
    }
}

fn backend_verdicts(f: &Facts) -> Vec<Verdict> {
    let pageout = f.madvise.iter().find(|(a, _)| a == "PAGEOUT").map(|(_, r)| r.clone());
    let note = match &pageout {
        Some(Err(e)) => {
            format!("; but process_madvise(MADV_PAGEOUT) fails here ({e}), so nothing is paged out")
        }
        _ => String::new(),
    };
    let zram = match &f.zram_unavailable {
        None => Verdict::yes("zram", format!("compressed RAM swap devices can be created{note}")),
        Some(why) => Verdict::no("zram", why.clone()),
    };
    let swapfile = match &f.swapfile {
        Ok(()) => Verdict::yes(
            "swapfile",
            format!("swap files can be created (root; check the file's filesystem){note}"),
        ),
        Err(why) => Verdict::no("swapfile", why.clone()),
    };
    vec![zram, swapfile]
}

/// Every verdict from the facts.
pub fn verdicts(f: &Facts) -> (Vec<Verdict>, Vec<Verdict>, Vec<Verdict>) {
    (engine_verdicts(f), probe_verdicts(f), backend_verdicts(f))
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// `always [madvise] never` -> `madvise`.
pub fn bracketed(s: &str) -> Option<&str> {
    let a = s.find('[')?;
    let b = s[a..].find(']')? + a;
    Some(&s[a + 1..b])
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Effective capabilities from /proc/self/status.
fn cap_eff() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

fn damon_state() -> DamonState {
    let sysfs = DamonSysfs::system();
    let mut st = DamonState {
        sysfs: sysfs.available(),
        kdamonds: Vec::new(),
        foreign: Vec::new(),
        avail_operations: None,
    };
    if st.sysfs.is_err() {
        return st;
    }
    if let Ok(survey) = sysfs.survey() {
        st.kdamonds = survey.iter().map(|k| k.to_string()).collect();
        for k in &survey {
            let avail = sysfs.kdamond_dir(k.index).join("contexts/0/avail_operations");
            if let Ok(text) = std::fs::read_to_string(avail) {
                st.avail_operations = Some(text.split_whitespace().map(str::to_string).collect());
                break;
            }
        }
    }
    let pool = KdamondPool::new(sysfs, Some(damon_core::ops::kdamond::DEFAULT_RECORD_DIR.into()));
    if let Ok(f) = pool.foreign_running() {
        st.foreign = f.iter().map(|k| k.to_string()).collect();
    }
    st
}

fn numa_nodes() -> usize {
    std::fs::read_dir("/sys/devices/system/node")
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.starts_with("node") && n[4..].parse::<u32>().is_ok()
                })
                .count()
        })
        .unwrap_or(1)
        .max(1)
}

fn swapfile_ok(root: bool) -> Result<(), String> {
    if !root {
        return Err("creating swap files (swapon) needs root".into());
    }
    // Where swap files usually go; the project's own path is checked at start.
    let dir = Path::new("/var/lib");
    let fd = std::fs::File::open(dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    match swap_backends::sys::fstatfs_type(fd.as_fd()) {
        Ok(magic) => match swap_backends::swapfile::unsuitable_filesystem(magic) {
            Some(why) => Err(format!("{}: {why}", dir.display())),
            None => Ok(()),
        },
        Err(e) => Err(format!("statfs {}: {e}", dir.display())),
    }
}

/// A child process of ours with 4 MiB of its own anonymous memory, for
/// trying process_madvise on another process. Killed and reaped on drop.
struct MadviseChild {
    pid: libc::pid_t,
    hold: Option<OwnedFd>,
}

impl Drop for MadviseChild {
    fn drop(&mut self) {
        // Closing the pipe lets the child exit; SIGKILL in case it cannot.
        self.hold.take();
        // SAFETY: pid is our own child, not yet reaped.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            let mut status = 0;
            libc::waitpid(self.pid, &mut status, 0);
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Bytes of the child's test memory: two aligned 2 MiB units.
const CHILD_BYTES: u64 = 4 << 20;
const HUGE: u64 = 2 << 20;

/// Fork a child that writes its own copy of `[base, base + CHILD_BYTES)`
/// (inherited from `map`), says so on a pipe, and waits for us.
fn spawn_child(map: &AnonMapping, base: u64) -> Result<MadviseChild, String> {
    let (ready_r, ready_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let (hold_r, hold_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let first = (base - map.addr()) as usize;
    // SAFETY: the child runs only async-signal-safe code (volatile stores
    // to memory it inherited, write, read, _exit): no allocation, no locks,
    // so forking a multi-threaded daemon is sound.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let mut off = 0;
        while off < CHILD_BYTES as usize {
            map.write_byte(first + off, 1);
            off += PAGE_SIZE as usize;
        }
        let b = [1u8];
        let mut r = [0u8];
        // SAFETY: plain syscalls on descriptors this process holds.
        unsafe {
            libc::write(ready_w.as_raw_fd(), b.as_ptr().cast(), 1);
            libc::read(hold_r.as_raw_fd(), r.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    drop(ready_w);
    drop(hold_r);
    let child = MadviseChild { pid, hold: Some(hold_w) };
    let mut b = [0u8];
    // SAFETY: reading one byte into a local buffer.
    let n = unsafe { libc::read(ready_r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
    if n != 1 {
        return Err("the test child died before it was ready".into());
    }
    Ok(child)
}

/// Try each advice through process_madvise on a child of ours.
fn madvise_checks() -> Vec<(String, Result<(), String>)> {
    let advices = [
        ("PAGEOUT", MADV_PAGEOUT),
        ("COLD", MADV_COLD),
        ("WILLNEED", MADV_WILLNEED),
        ("COLLAPSE", MADV_COLLAPSE),
    ];
    let all = |why: String| advices.iter().map(|(n, _)| (n.to_string(), Err(why.clone()))).collect();
    let map = match AnonMapping::new((CHILD_BYTES + HUGE) as usize) {
        Ok(m) => m,
        Err(e) => return all(format!("mmap: {e}")),
    };
    let base = map.addr().div_ceil(HUGE) * HUGE;
    let child = match spawn_child(&map, base) {
        Ok(c) => c,
        Err(e) => return all(e),
    };
    let pidfd = match sys::pidfd_open(child.pid as u32) {
        Ok(fd) => fd,
        Err(e) => return all(format!("pidfd_open: {e}")),
    };
    let mib = 1 << 20;
    advices
        .iter()
        .map(|(name, advice)| {
            let range = match *advice {
                MADV_COLD => (base, mib),
                MADV_COLLAPSE => (base + HUGE, HUGE),
                _ => (base + mib, mib),
            };
            let r = sys::process_madvise(pidfd.as_fd(), &[range], *advice).map(drop).map_err(|e| {
                match e.raw_os_error() {
                    Some(libc::EINVAL) => {
                        format!("{e}: the kernel does not accept this advice from another process")
                    }
                    Some(libc::EPERM) => {
                        format!("{e}: needs CAP_SYS_NICE (and ptrace access) to act on another process")
                    }
                    Some(libc::ENOSYS) => format!("{e}: no process_madvise (Linux 5.10+)"),
                    _ => e.to_string(),
                }
            });
            (name.to_string(), r)
        })
        .collect()
}

fn host_sections(f: &Facts) -> Vec<Section> {
    let mut out = Vec::new();

    let caps = cap_eff();
    let cap = |bit: u32| caps.is_some_and(|c| c & (1 << bit) != 0);
    out.push(Section {
        title: "privileges".into(),
        checks: vec![
            check(
                "root",
                f.root,
                if f.root {
                    "running as root"
                } else {
                    "not root: most engines, probes and backends need root"
                },
            ),
            check("CAP_SYS_ADMIN", cap(21), "pagemap page frame numbers, idle bitmap, swapon"),
            check("CAP_SYS_NICE", cap(23), "process_madvise on other processes"),
            check(
                "CAP_SYS_PTRACE",
                cap(19),
                "pidfds and /proc/PID/mem-like access to other users' processes",
            ),
        ],
    });

    let mut damon = Vec::new();
    match &f.damon.sysfs {
        Ok(()) => {
            let kd = if f.damon.kdamonds.is_empty() {
                "no kdamond".to_string()
            } else {
                f.damon.kdamonds.join("; ")
            };
            damon.push(check("DAMON sysfs", true, format!("/sys/kernel/mm/damon/admin: {kd}")));
            damon.push(check(
                "kdamond in use",
                f.damon.foreign.is_empty(),
                if f.damon.foreign.is_empty() {
                    "no kdamond of someone else runs".to_string()
                } else {
                    format!("{} (not ours: left alone)", f.damon.foreign.join("; "))
                },
            ));
            damon.push(match &f.damon.avail_operations {
                Some(ops) => check("avail operations", ops.iter().any(|o| o == "vaddr"), ops.join(" ")),
                None => check(
                    "avail operations",
                    true,
                    "unknown until a kdamond context exists (read only: none is made)",
                ),
            });
        }
        Err(e) => damon.push(check("DAMON sysfs", false, e.clone())),
    }
    for m in ["damon_reclaim", "damon_lru_sort", "damon_stat"] {
        if let Some(en) = read_trim(&format!("/sys/module/{m}/parameters/enabled")) {
            damon.push(check(m, true, format!("enabled={en}")));
        }
    }
    out.push(Section { title: "DAMON".into(), checks: damon });

    let mut access = Vec::new();
    let idle = status_of(&f.probes_now, ProbeKind::IdleBitmap);
    access.push(check(
        "idle page tracking",
        idle.is_ok(),
        idle.err().unwrap_or_else(|| "/sys/kernel/mm/page_idle/bitmap".into()),
    ));
    let sd = status_of(&f.probes_now, ProbeKind::SoftDirty);
    access.push(check(
        "soft-dirty",
        sd.is_ok(),
        sd.err().unwrap_or_else(|| "pagemap bit 55 after clear_refs 4".into()),
    ));
    for (file, module, what) in [
        ("/proc/self/idle_pages", "etmem_scan", "page access scan"),
        ("/proc/self/swap_pages", "etmem_swap", "swap by address"),
    ] {
        let there = Path::new(file).exists();
        access.push(check(
            module,
            there,
            if there {
                format!("{file}: etmem's {what}")
            } else {
                format!("{file} missing: module {module} not loaded")
            },
        ));
    }
    let pagemap = Path::new("/proc/self/pagemap").exists();
    access.push(check(
        "pagemap",
        pagemap,
        match (pagemap, cap(21)) {
            (false, _) => "no /proc/PID/pagemap".to_string(),
            (true, true) => "present bits and page frame numbers (CAP_SYS_ADMIN)".to_string(),
            (true, false) => "present bits only: page frame numbers need CAP_SYS_ADMIN".to_string(),
        },
    ));
    out.push(Section { title: "access tracking".into(), checks: access });

    out.push(Section {
        title: "process_madvise on another process (tried on a child of ours)".into(),
        checks: f
            .madvise
            .iter()
            .map(|(n, r)| {
                check(&format!("MADV_{n}"), r.is_ok(), r.clone().err().unwrap_or_else(|| "works".into()))
            })
            .collect(),
    });

    let thp_dir = "/sys/kernel/mm/transparent_hugepage";
    let mut thp = Vec::new();
    for (file, what) in [("enabled", "enabled"), ("defrag", "defrag"), ("shmem_enabled", "shmem")] {
        match read_trim(&format!("{thp_dir}/{file}")) {
            Some(v) => {
                let mode = bracketed(&v).unwrap_or(&v).to_string();
                let ok = mode != "never" && mode != "deny";
                thp.push(check(&format!("THP {what}"), ok, format!("{mode} ({v})")));
            }
            None if file == "enabled" => {
                thp.push(check("THP", false, format!("no {thp_dir}: kernel without THP")))
            }
            None => {}
        }
    }
    if let Some(v) = read_trim(&format!("{thp_dir}/khugepaged/defrag")) {
        thp.push(check("khugepaged defrag", v == "1", v));
    }
    out.push(Section { title: "transparent huge pages".into(), checks: thp });

    let mut swap = Vec::new();
    match swap_backends::swaps::read_proc_swaps() {
        Ok(list) if list.is_empty() => swap.push(check("swap devices", false, "none is on")),
        Ok(list) => {
            for s in list {
                swap.push(check(
                    "swap device",
                    true,
                    format!(
                        "{} ({:?}, priority {}): {} of {} used",
                        s.path.display(),
                        s.kind,
                        s.priority,
                        crate::render::bytes(s.used_bytes),
                        crate::render::bytes(s.size_bytes)
                    ),
                ));
            }
        }
        Err(e) => swap.push(check("swap devices", false, swap_backends::error_chain(&e))),
    }
    swap.push(check(
        "zram",
        f.zram_unavailable.is_none(),
        f.zram_unavailable
            .clone()
            .unwrap_or_else(|| "/sys/class/zram-control/hot_add: new devices can be created".into()),
    ));
    match read_trim("/sys/module/zswap/parameters/enabled") {
        Some(en) => {
            let comp = read_trim("/sys/module/zswap/parameters/compressor").unwrap_or_default();
            let pool = read_trim("/sys/module/zswap/parameters/max_pool_percent").unwrap_or_default();
            swap.push(check(
                "zswap",
                en == "Y",
                format!("enabled={en}, compressor {comp}, max_pool_percent {pool} (zswap compresses in front of any swap device)"),
            ));
        }
        None => swap.push(check("zswap", false, "no /sys/module/zswap: kernel without zswap")),
    }
    out.push(Section { title: "swap".into(), checks: swap });

    let mut sys = Vec::new();
    sys.push(match &f.psi {
        Ok(()) => check(
            "PSI memory",
            true,
            read("/proc/pressure/memory").unwrap_or_default().lines().next().unwrap_or("").to_string(),
        ),
        Err(e) => check("PSI memory", false, e.clone()),
    });
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let v2 = mounts.lines().find(|l| l.split_whitespace().nth(2) == Some("cgroup2"));
    let v1_mem = mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(2) == Some(&"cgroup") && f.get(3).is_some_and(|o| o.split(',').any(|x| x == "memory"))
    });
    match v2 {
        Some(line) => {
            let at = line.split_whitespace().nth(1).unwrap_or("?");
            let ctrl = std::fs::read_to_string(format!("{at}/cgroup.controllers")).unwrap_or_default();
            let mem = ctrl.split_whitespace().any(|c| c == "memory");
            sys.push(check(
                "cgroup v2",
                true,
                format!(
                    "mounted at {at}; memory controller {}",
                    if mem { "on" } else { "not enabled there" }
                ),
            ));
        }
        None => sys.push(check("cgroup v2", false, "not mounted")),
    }
    sys.push(check("cgroup v1 memory", v1_mem, if v1_mem { "mounted" } else { "not mounted" }));
    sys.push(check("NUMA nodes", true, f.numa_nodes.to_string()));
    out.push(Section { title: "system".into(), checks: sys });
    out
}

/// Look at this host. Runs real checks: a soft-dirty self-test on a page of
/// this process and process_madvise on a short-lived child.
pub fn inspect() -> DoctorReport {
    let root = is_root();
    let probes_now = select::check_all(&HostEnv::default(), None);
    let probes_with_swap = select::check_all(&HostEnv { swap_planned: true, ..HostEnv::default() }, None);
    let psi = read("/proc/pressure/memory").map(drop);
    let facts = Facts {
        root,
        probes_now,
        probes_with_swap,
        zram_unavailable: swap_backends::zram::unavailable_reason(),
        swapfile: swapfile_ok(root),
        damon: damon_state(),
        numa_nodes: numa_nodes(),
        madvise: madvise_checks(),
        psi,
    };
    let (engines, probes, backends) = verdicts(&facts);
    DoctorReport {
        kernel: read_trim("/proc/sys/kernel/osrelease").unwrap_or_default(),
        host: host_sections(&facts),
        engines,
        probes,
        backends,
    }
}

fn verdict_lines(out: &mut String, title: &str, list: &[Verdict]) {
    let _ = writeln!(out, "\n{title}");
    let width = list.iter().map(|v| v.name.len()).max().unwrap_or(0);
    for v in list {
        let mark = if v.works { "yes" } else { "no " };
        let needs = v.needs.as_ref().map(|n| format!(" [needs {n}]")).unwrap_or_default();
        let _ = writeln!(out, "  {mark}  {:<width$}  {}{needs}", v.name, v.detail);
    }
}

/// The human report.
pub fn render(r: &DoctorReport) -> String {
    let mut out = format!("etmem doctor: kernel {}\n", r.kernel);
    for s in &r.host {
        let _ = writeln!(out, "\n{}", s.title);
        let width = s.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &s.checks {
            let _ = writeln!(out, "  {}  {:<width$}  {}", if c.ok { "ok" } else { "--" }, c.name, c.detail);
        }
    }
    verdict_lines(&mut out, "engines", &r.engines);
    verdict_lines(&mut out, "probes", &r.probes);
    verdict_lines(&mut out, "backends", &r.backends);
    out
}

/// Log the verdicts (the daemon does at start).
pub fn log(r: &DoctorReport) {
    for (what, list) in [("engine", &r.engines), ("probe", &r.probes), ("backend", &r.backends)] {
        for v in list.iter() {
            if let (true, Some(needs)) = (v.works, &v.needs) {
                tracing::info!(kind = what, name = %v.name, "doctor: works with {needs}: {}", v.detail);
            } else if v.works {
                tracing::info!(kind = what, name = %v.name, "doctor: works: {}", v.detail);
            } else {
                tracing::info!(kind = what, name = %v.name, "doctor: does not work: {}", v.detail);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(kind: ProbeKind, ok: bool) -> ProbeStatus {
        ProbeStatus { kind, availability: if ok { Ok(()) } else { Err(format!("{kind} missing")) } }
    }

    /// This machine's kind: only refault, and only with swap; a foreign paddr kdamond.
    fn facts() -> Facts {
        let probes = |refault: bool| {
            vec![
                status(ProbeKind::EtmemIdlePages, false),
                status(ProbeKind::IdleBitmap, false),
                status(ProbeKind::Refault, refault),
                status(ProbeKind::SoftDirty, false),
            ]
        };
        Facts {
            root: true,
            probes_now: probes(false),
            probes_with_swap: probes(true),
            zram_unavailable: None,
            swapfile: Ok(()),
            damon: DamonState {
                sysfs: Ok(()),
                kdamonds: vec!["kdamond 0 (pid 9) is on, paddr".into()],
                foreign: vec!["kdamond 0 (pid 9) is on, paddr".into()],
                avail_operations: Some(vec!["paddr".into()]),
            },
            numa_nodes: 1,
            madvise: vec![("PAGEOUT".into(), Ok(()))],
            psi: Ok(()),
        }
    }

    #[test]
    fn verdicts_on_a_host_like_this_one() {
        let (engines, probes, backends) = verdicts(&facts());
        let e = |n: &str| engines.iter().find(|v| v.name == n).expect(n).clone();
        assert!(e("region").works && e("region").needs.is_some() && e("region").detail.contains("refault"));
        assert!(e("page").works);
        assert!(!e("kernel-damon").works && e("kernel-damon").detail.contains("kdamond 0"));
        assert!(e("damon (etmem)").works && e("damon (etmem)").detail.contains("region engine"));
        assert!(!e("cslide").works && e("cslide").detail.contains("1 NUMA node"));
        assert!(!e("psi").works);
        assert!(probes.iter().find(|p| p.name == "refault").is_some_and(|p| p.works && p.needs.is_some()));
        assert!(probes.iter().find(|p| p.name == "soft-dirty").is_some_and(|p| !p.works));
        assert!(backends.iter().all(|b| b.works));
    }

    #[test]
    fn no_probe_and_no_swap_means_no_monitoring_engine() {
        let mut f = facts();
        f.zram_unavailable = Some("no zram".into());
        f.swapfile = Err("not root".into());
        let (engines, _, backends) = verdicts(&f);
        assert!(!engines[0].works && engines[0].detail.contains("no access probe"));
        assert!(!engines.iter().find(|v| v.name == "damon (etmem)").expect("damon").works);
        assert!(backends.iter().all(|b| !b.works));
    }

    #[test]
    fn a_free_damon_with_vaddr_runs_kernel_damon() {
        let mut f = facts();
        f.damon.foreign.clear();
        f.damon.avail_operations = Some(vec!["vaddr".into(), "fvaddr".into(), "paddr".into()]);
        let (engines, _, _) = verdicts(&f);
        assert!(engines[2].works && engines[2].needs.is_none());
        assert!(engines[3].detail.contains("kernel DAMON"));
    }

    #[test]
    fn thp_mode_parsing() {
        assert_eq!(bracketed("always [madvise] never"), Some("madvise"));
        assert_eq!(bracketed("never"), None);
    }
}
