//! The `cslide` engine: etmem's hot/cold migration of a VM's 2 MiB huge
//! pages between NUMA node pairs (hot = DRAM node, cold = AEP/PMEM node, as
//! etmem's code orders `node_pair`), with `move_pages`.
//!
//! The pair arithmetic and the quota rules (`cslide_filter_pfs` in
//! etmemd_cslide.c, reference/etmem.md §4.2) are pure code here, tested on
//! simulated node layouts: move hot pages up within a cap from the quota and
//! the hot node's free memory (hot may displace cold, costing the quota
//! twice), prefetch warm pages while the hot node has more free memory than
//! `node_hot_reserve`, then move cold pages down. The engine itself needs a
//! host with at least two NUMA nodes; on one node it refuses to start.

use super::page::StopSignal;
use super::page::probes::OsPageProbe;
use super::page::round::{self, PageSpace};
use super::procinfo;
use super::{Engine, EngineEnv, EngineError};
use crate::protocol::TaskStats;
use damon_core::ops::ProcTarget;
use damon_core::ops::maps::VmaFilter;
use damon_core::ops::select::{self, HostEnv, ProbeKind};
use damon_core::{AddrRange, PAGE_SIZE, Snapshot};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};
use swap_backends::TargetRef;

/// cslide works on 2 MiB huge pages (`SCAN_AS_HUGE`, hugetlb VMAs).
pub const HUGE_PAGE_BYTES: u64 = 2 << 20;

const NODE_DIR: &str = "/sys/devices/system/node";

/// 2 MiB huge pages of one node, in bytes (etmem's `node_mem`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeMem {
    pub total_bytes: u64,
    pub free_bytes: u64,
}

/// Quota and thresholds of one plan, in bytes (etmem reads MB from the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanParams {
    /// Hot when count >= this (clamped to `max_count + 1`).
    pub hot_threshold: u32,
    /// The highest count a page can have (`3 * loop`).
    pub max_count: u32,
    /// `node_mig_quota`: most bytes moved per direction per pair and round.
    pub quota_bytes: u64,
    /// `node_hot_reserve`: hot-node memory cold pages may not take.
    pub reserve_bytes: u64,
    /// Size of one page (2 MiB for cslide).
    pub page_bytes: u64,
}

/// One process's pages, bucketed by count and node: `buckets[count][node]`
/// holds page addresses in address order (etmem's `count_page_refs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidPages {
    pub pid: u32,
    pub buckets: Vec<BTreeMap<u32, Vec<u64>>>,
}

impl PidPages {
    /// Empty buckets for counts `0..=max_count`.
    pub fn new(pid: u32, max_count: u32) -> PidPages {
        PidPages { pid, buckets: vec![BTreeMap::new(); max_count as usize + 1] }
    }

    /// Add a page with `count` (clamped to the top bucket) on `node`.
    pub fn add(&mut self, addr: u64, count: u32, node: u32) {
        let c = (count as usize).min(self.buckets.len() - 1);
        self.buckets[c].entry(node).or_default().push(addr);
    }
}

/// Hot and cold memory per node, KiB (etmem's `node_pages_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodePagesInfo {
    pub hot_kib: u64,
    pub cold_kib: u64,
}

/// What to move for one process and one pair.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PairMoves {
    /// Pages to move to the pair's hot node.
    pub to_hot: Vec<u64>,
    /// Pages to move to the pair's cold node.
    pub to_cold: Vec<u64>,
}

/// The migrations of one round: per process, per pair (in `pairs` order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationPlan {
    pub moves: BTreeMap<u32, Vec<PairMoves>>,
}

impl MigrationPlan {
    /// Bytes moved to hot and to cold nodes, per pair.
    pub fn bytes_per_pair(&self, pairs: usize, page_bytes: u64) -> Vec<(u64, u64)> {
        let mut out = vec![(0, 0); pairs];
        for m in self.moves.values() {
            for (k, pm) in m.iter().enumerate() {
                out[k].0 += pm.to_hot.len() as u64 * page_bytes;
                out[k].1 += pm.to_cold.len() as u64 * page_bytes;
            }
        }
        out
    }
}

/// Hot and cold KiB per node of one process, before any move
/// (`update_pages_info`): cold is count < T (T clamped to `max_count + 1`).
pub fn pages_info(p: &PidPages, hot_threshold: u32, page_bytes: u64) -> BTreeMap<u32, NodePagesInfo> {
    let t = (hot_threshold as usize).min(p.buckets.len());
    let mut out: BTreeMap<u32, NodePagesInfo> = BTreeMap::new();
    for (c, nodes) in p.buckets.iter().enumerate() {
        for (&node, pages) in nodes {
            let kib = pages.len() as u64 * page_bytes / 1024;
            let e = out.entry(node).or_default();
            if c < t {
                e.cold_kib += kib;
            } else {
                e.hot_kib += kib;
            }
        }
    }
    out
}

/// A cap and what is used of it (`struct ctrl_cap`).
#[derive(Debug, Clone, Copy, Default)]
struct Cap {
    cap: i64,
    used: i64,
}

impl Cap {
    fn available(&self) -> bool {
        self.used < self.cap
    }

    /// Spend `cost` (cut to what is left); `false` once the cap is used up.
    fn spend(&mut self, cost: &mut i64) -> bool {
        if *cost < self.cap - self.used {
            self.used += *cost;
            return true;
        }
        *cost = self.cap - self.used;
        self.used = self.cap;
        false
    }
}

/// The flow control of one pair (`struct node_ctrl`), bytes.
#[derive(Debug, Clone, Copy, Default)]
struct PairCtrl {
    hot_move: Cap,
    prefetch: Cap,
    cold_move: Cap,
    /// Cold memory of the hot node displaced by hot memory moved up.
    cold_replaced: i64,
    /// Free memory in the cold node.
    cold_free: i64,
    /// Free memory in the hot node.
    free: i64,
    /// Cold memory in the hot node.
    cold: i64,
    quota: i64,
    reserve: i64,
}

impl PairCtrl {
    /// `node_cal_hot_can_move`.
    fn cal_hot_move(&mut self) -> bool {
        let mut can = if self.quota < self.free {
            self.quota
        } else {
            // Beyond the free memory each byte moved up displaces a cold byte
            // that must move down: half the rest of the quota each way.
            (self.free + (self.quota - self.free) / 2).min(self.free + self.cold_free)
        };
        can = can.min(self.cold + self.free);
        self.hot_move.cap = can;
        can > 0
    }

    /// `node_update_hot_move`.
    fn update_after_hot_move(&mut self) {
        let moved = self.hot_move.used;
        if moved > self.free {
            self.cold_replaced += moved - self.free;
            self.quota -= self.free + (moved - self.free) * 2;
            self.cold_free += self.free;
            self.free = 0;
        } else {
            self.free -= moved;
            self.quota -= moved;
            self.cold_free += moved;
        }
    }

    /// `node_cal_hot_can_prefetch`.
    fn cal_prefetch(&mut self) -> bool {
        let can = if self.free <= self.reserve { 0 } else { (self.free - self.reserve).min(self.quota) };
        self.prefetch.cap = can;
        can > 0
    }

    /// `node_update_hot_prefetch`.
    fn update_after_prefetch(&mut self) {
        let moved = self.prefetch.used;
        self.free -= moved;
        self.quota -= moved;
        self.cold_free += moved;
    }

    /// `node_cal_cold_can_move`.
    fn cal_cold_move(&mut self) -> bool {
        let can = self.quota.min(self.reserve - self.free).min(self.cold_free).max(0);
        self.cold_move.cap = can + self.cold_replaced;
        self.cold_move.cap > 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    MoveHot,
    Prefetch,
    MoveCold,
}

/// Take the longest prefix of `pages` whose size fits `bytes` (`move_npf_to_list`).
fn take_prefix(pages: &mut Vec<u64>, bytes: i64, page_bytes: u64) -> Vec<u64> {
    let n = if bytes <= 0 { 0 } else { ((bytes as u64) / page_bytes).min(pages.len() as u64) as usize };
    pages.drain(..n).collect()
}

/// etmem's `cslide_filter_pfs`: the pages each process moves this round.
/// `pairs` are (hot node, cold node); `nodes` the huge-page memory of every
/// node; `host_cold_bytes[node]` the cold memory on each node (from
/// [`pages_info`] over all processes). Pages chosen are removed from `pids`.
pub fn plan(
    pairs: &[(u32, u32)],
    nodes: &BTreeMap<u32, NodeMem>,
    host_cold_bytes: &BTreeMap<u32, u64>,
    pids: &mut [PidPages],
    params: PlanParams,
) -> MigrationPlan {
    let mem = |n: u32| nodes.get(&n).copied().unwrap_or_default();
    let as_i64 = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
    let mut ctrl: Vec<PairCtrl> = pairs
        .iter()
        .map(|&(hot, cold)| PairCtrl {
            cold_free: as_i64(mem(cold).free_bytes),
            free: as_i64(mem(hot).free_bytes),
            cold: as_i64(host_cold_bytes.get(&hot).copied().unwrap_or(0)),
            quota: as_i64(params.quota_bytes),
            reserve: as_i64(params.reserve_bytes),
            ..PairCtrl::default()
        })
        .collect();
    let mut out = MigrationPlan::default();
    for p in pids.iter() {
        out.moves.insert(p.pid, vec![PairMoves::default(); pairs.len()]);
    }
    let t = i64::from(params.hot_threshold.min(params.max_count + 1));
    let max = i64::from(params.max_count);
    for step in [Step::MoveHot, Step::Prefetch, Step::MoveCold] {
        let mut enough = 0usize;
        for c in ctrl.iter_mut() {
            let has_room = match step {
                Step::MoveHot => c.cal_hot_move(),
                Step::Prefetch => {
                    c.update_after_hot_move();
                    c.cal_prefetch()
                }
                Step::MoveCold => {
                    c.update_after_prefetch();
                    c.cal_cold_move()
                }
            };
            if !has_room {
                enough += 1;
            }
        }
        if enough == pairs.len() {
            continue;
        }
        let counts: Vec<i64> = match step {
            Step::MoveHot => (t..=max).rev().collect(),
            Step::Prefetch => (0..t).rev().collect(),
            Step::MoveCold => (0..t).collect(),
        };
        'counts: for count in counts {
            for p in pids.iter_mut() {
                for (k, &(hot, cold)) in pairs.iter().enumerate() {
                    let from = if step == Step::MoveCold { hot } else { cold };
                    let Some(pages) = p.buckets[count as usize].get_mut(&from) else {
                        continue;
                    };
                    let c = &mut ctrl[k];
                    let cap = match step {
                        Step::MoveHot => &mut c.hot_move,
                        Step::Prefetch => &mut c.prefetch,
                        Step::MoveCold => &mut c.cold_move,
                    };
                    if !cap.available() {
                        continue;
                    }
                    let mut target = as_i64(pages.len() as u64 * params.page_bytes);
                    if !cap.spend(&mut target) {
                        enough += 1;
                    }
                    let moved = take_prefix(pages, target, params.page_bytes);
                    let m = &mut out.moves.get_mut(&p.pid).expect("every pid has moves")[k];
                    if step == Step::MoveCold {
                        m.to_cold.extend(moved);
                    } else {
                        m.to_hot.extend(moved);
                    }
                    if enough >= pairs.len() {
                        break 'counts;
                    }
                }
            }
        }
    }
    out
}

/// Check `pairs` against the host's nodes as etmem does: an even number of
/// nodes, each in exactly one pair. `Err` names `node_pair` and says why.
pub fn check_pairs(pairs: &[(u32, u32)], nodes: &[u32]) -> Result<(), String> {
    let spec: Vec<String> = pairs.iter().map(|(h, c)| format!("{h},{c}")).collect();
    let spec = spec.join(";");
    let node_list: Vec<String> = nodes.iter().map(|n| format!("node{n}")).collect();
    if nodes.len() < 2 {
        return Err(format!(
            "key node_pair ({spec}): this host has {} NUMA node ({}); cslide moves hot pages to the DRAM \
             node and cold pages to the slow-memory node of each pair, so it needs a host with at least \
             two NUMA nodes",
            nodes.len(),
            node_list.join(", ")
        ));
    }
    if !nodes.len().is_multiple_of(2) {
        return Err(format!(
            "key node_pair ({spec}): this host has {} NUMA nodes ({}); cslide pairs every node with another, \
             so it needs an even number of nodes",
            nodes.len(),
            node_list.join(", ")
        ));
    }
    for &(h, c) in pairs {
        for n in [h, c] {
            if !nodes.contains(&n) {
                return Err(format!(
                    "key node_pair ({spec}): node {n} does not exist here (nodes: {})",
                    node_list.join(", ")
                ));
            }
        }
    }
    let named: Vec<u32> = pairs.iter().flat_map(|&(h, c)| [h, c]).collect();
    if let Some(n) = nodes.iter().find(|n| !named.contains(n)) {
        return Err(format!(
            "key node_pair ({spec}): node {n} is in no pair; etmem requires every node in exactly one pair"
        ));
    }
    Ok(())
}

/// The host's NUMA nodes (from /sys/devices/system/node).
pub fn host_nodes() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(NODE_DIR) else { return vec![0] };
    let mut v: Vec<u32> =
        rd.filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("node")?.parse().ok()).collect();
    v.sort_unstable();
    if v.is_empty() { vec![0] } else { v }
}

/// 2 MiB huge pages of `node` from sysfs.
fn node_mem(node: u32) -> Option<NodeMem> {
    let dir = Path::new(NODE_DIR).join(format!("node{node}/hugepages/hugepages-2048kB"));
    let read = |f: &str| -> Option<u64> { std::fs::read_to_string(dir.join(f)).ok()?.trim().parse().ok() };
    Some(NodeMem {
        total_bytes: read("nr_hugepages")? * HUGE_PAGE_BYTES,
        free_bytes: read("free_hugepages")? * HUGE_PAGE_BYTES,
    })
}

/// `Www Mmm dd hh:mm:ss yyyy` (asctime's layout), in UTC.
fn asctime_utc(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MO: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {y}",
        WD[days.rem_euclid(7) as usize],
        MO[(m - 1) as usize],
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// etmem's `showhostpages` text.
pub fn show_host_pages(
    at: SystemTime,
    nodes: &BTreeMap<u32, NodeMem>,
    info: &BTreeMap<u32, NodePagesInfo>,
) -> String {
    let mut out = format!("[{}] host pages info (KB):\n", asctime_utc(at));
    let _ = writeln!(out, "{:>5} {:>10} {:>10} {:>10} {:>10}", "node", "total", "used", "hot", "cold");
    for (n, m) in nodes {
        let i = info.get(n).copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "{:>5} {:>10} {:>10} {:>10} {:>10}",
            n,
            m.total_bytes / 1024,
            i.hot_kib + i.cold_kib,
            i.hot_kib,
            i.cold_kib
        );
    }
    out
}

/// etmem's `showtaskpages` text for one process.
pub fn show_task_pages(
    at: SystemTime,
    pid: u32,
    nodes: &[u32],
    info: &BTreeMap<u32, NodePagesInfo>,
) -> String {
    let mut out = format!("[{}] task {pid} pages info (KB):\n", asctime_utc(at));
    let _ = writeln!(out, "{:>5} {:>10} {:>10} {:>10}", "node", "used", "hot", "cold");
    for n in nodes {
        let i = info.get(n).copied().unwrap_or_default();
        let _ = writeln!(out, "{:>5} {:>10} {:>10} {:>10}", n, i.hot_kib + i.cold_kib, i.hot_kib, i.cold_kib);
    }
    out
}

/// What the worker publishes.
#[derive(Debug, Default, Clone)]
struct Published {
    at: Option<SystemTime>,
    nodes: BTreeMap<u32, NodeMem>,
    host: BTreeMap<u32, NodePagesInfo>,
    /// Per task: per pid, per node.
    tasks: BTreeMap<String, BTreeMap<u32, BTreeMap<u32, NodePagesInfo>>>,
    stats: BTreeMap<String, TaskStats>,
    last_error: Option<String>,
}

/// One `cslide` engine: one worker thread for all its tasks, as etmem's.
pub struct CslideEngine {
    name: String,
    pairs: Vec<(u32, u32)>,
    nodes: Vec<u32>,
    tasks: Arc<Mutex<BTreeMap<String, conf::Task>>>,
    published: Arc<Mutex<Published>>,
    stop: Arc<StopSignal>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for CslideEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CslideEngine").field("name", &self.name).field("pairs", &self.pairs).finish()
    }
}

/// The worker's fixed settings.
#[derive(Debug, Clone)]
struct Worker {
    scan: conf::PageScan,
    cfg: conf::CslideEngine,
    probe: ProbeKind,
    pairs: Vec<(u32, u32)>,
    nodes: Vec<u32>,
}

impl CslideEngine {
    /// Refuses a host whose nodes `node_pair` cannot pair (one node here).
    pub fn new(
        project: &conf::Project,
        engine: &conf::Engine,
        cfg: &conf::CslideEngine,
        _env: &EngineEnv,
    ) -> Result<CslideEngine, EngineError> {
        let unsupported = |reason: String| EngineError::Unsupported { kind: "cslide".into(), reason };
        let conf::Scan::Page(scan) = &project.scan else {
            return Err(unsupported(format!(
                "project {} has no page scan parameters (scan_type=page)",
                project.name
            )));
        };
        let nodes = host_nodes();
        check_pairs(&cfg.node_pairs, &nodes).map_err(unsupported)?;
        // Huge pages are not on the LRU: refault skips hugetlb and the idle
        // bitmap cannot mark them.
        let env = HostEnv::default();
        let sel =
            select::select_auto(&env, None, &[ProbeKind::Refault, ProbeKind::IdleBitmap]).map_err(|e| {
                unsupported(format!(
                    "cslide scans hugetlb pages, which only etmem idle_pages and soft-dirty see: {e}"
                ))
            })?;
        let w = Worker {
            scan: scan.clone(),
            cfg: cfg.clone(),
            probe: sel.chosen,
            pairs: cfg.node_pairs.clone(),
            nodes: nodes.clone(),
        };
        let tasks = Arc::new(Mutex::new(BTreeMap::new()));
        let published = Arc::new(Mutex::new(Published::default()));
        let stop = Arc::new(StopSignal::default());
        let (t2, p2, s2) = (Arc::clone(&tasks), Arc::clone(&published), Arc::clone(&stop));
        let worker = std::thread::Builder::new()
            .name(format!("cslide:{}", engine.name))
            .spawn(move || w.run(&t2, &p2, &s2))
            .map_err(|e| unsupported(format!("cannot start the worker thread: {e}")))?;
        Ok(CslideEngine {
            name: engine.name.clone(),
            pairs: cfg.node_pairs.clone(),
            nodes,
            tasks,
            published,
            stop,
            worker: Some(worker),
        })
    }
}

impl Worker {
    fn run(
        &self,
        tasks: &Mutex<BTreeMap<String, conf::Task>>,
        published: &Mutex<Published>,
        stop: &StopSignal,
    ) {
        let mut probes: BTreeMap<u32, (Arc<ProcTarget>, OsPageProbe)> = BTreeMap::new();
        let mut history: BTreeMap<String, procinfo::PidHistory> = BTreeMap::new();
        while !stop.is_stopped() {
            let tasks_now = tasks.lock().map(|t| t.clone()).unwrap_or_default();
            history.retain(|name, _| tasks_now.contains_key(name));
            if let Err(e) = self.round(&tasks_now, &mut history, &mut probes, published, stop)
                && let Ok(mut p) = published.lock()
            {
                p.last_error = Some(e);
            }
            if !stop.sleep(self.scan.interval) {
                break;
            }
        }
    }

    fn round(
        &self,
        tasks: &BTreeMap<String, conf::Task>,
        history: &mut BTreeMap<String, procinfo::PidHistory>,
        probes: &mut BTreeMap<u32, (Arc<ProcTarget>, OsPageProbe)>,
        published: &Mutex<Published>,
        stop: &StopSignal,
    ) -> Result<(), String> {
        let mut nodes = BTreeMap::new();
        for &n in &self.nodes {
            nodes.insert(
                n,
                node_mem(n).ok_or_else(|| format!("cannot read the 2 MiB huge pages of node {n}"))?,
            );
        }
        let max_count = round::max_score(self.scan.loops, super::page::probes::max_weight(self.probe));
        let mut pids: Vec<PidPages> = Vec::new();
        let mut owner: BTreeMap<u32, String> = BTreeMap::new();
        for (name, t) in tasks {
            let mut resolved = procinfo::resolve_task(t);
            history.entry(name.clone()).or_default().filter(&t.target, &mut resolved);
            for (pid, why) in &resolved.refused {
                tracing::debug!(task = %name, pid, "not monitored: {why}");
            }
            for pid in resolved.pids {
                let filter = VmaFilter {
                    file_backed: !t.cslide.as_ref().is_some_and(|c| c.anon_only),
                    required_vm_flags: vec!["ht".into()],
                };
                let (proc, probe) = match probes.entry(pid) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        let proc = Arc::new(ProcTarget::open(pid).map_err(|e| e.to_string())?);
                        let probe = OsPageProbe::new(self.probe, Arc::clone(&proc), false)
                            .map_err(|e| e.to_string())?;
                        e.insert((proc, probe))
                    }
                };
                let vmas = proc.eligible_vmas(&filter).map_err(|e| e.to_string())?;
                let space = PageSpace::new(vmas.into_iter().map(|v| v.range));
                let sleep = self.scan.sleep;
                let scores = match round::run_round(probe, space, self.scan.loops, |_| stop.sleep(sleep)) {
                    Ok(s) => s,
                    Err(round::RoundError::Stopped) => return Ok(()),
                    Err(round::RoundError::Probe(e)) => return Err(crate::daemon::chain(&e)),
                };
                // One count per huge page: the highest of its base pages.
                let mut per_huge: BTreeMap<u64, u32> = BTreeMap::new();
                for (addr, count) in scores.page_counts() {
                    let e = per_huge.entry(addr.0 / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES).or_default();
                    *e = (*e).max(count);
                }
                let ranges: Vec<AddrRange> =
                    per_huge.keys().map(|&a| AddrRange::new(a, a + PAGE_SIZE)).collect();
                let node_of = node_per_page(proc, &ranges)?;
                let mut pp = PidPages::new(pid, max_count);
                for ((addr, count), node) in per_huge.into_iter().zip(node_of) {
                    if let Some(node) = node {
                        pp.add(addr, count, node);
                    }
                }
                owner.insert(pid, name.clone());
                pids.push(pp);
            }
        }
        let params = PlanParams {
            hot_threshold: self.cfg.hot_threshold,
            max_count,
            quota_bytes: self.cfg.node_mig_quota_bytes,
            reserve_bytes: self.cfg.node_hot_reserve_bytes,
            page_bytes: HUGE_PAGE_BYTES,
        };
        let mut host: BTreeMap<u32, NodePagesInfo> = BTreeMap::new();
        let mut per_task: BTreeMap<String, BTreeMap<u32, BTreeMap<u32, NodePagesInfo>>> = BTreeMap::new();
        for p in &pids {
            let info = pages_info(p, params.hot_threshold, params.page_bytes);
            for (n, i) in &info {
                let h = host.entry(*n).or_default();
                h.hot_kib += i.hot_kib;
                h.cold_kib += i.cold_kib;
            }
            per_task.entry(owner[&p.pid].clone()).or_default().insert(p.pid, info);
        }
        let host_cold: BTreeMap<u32, u64> = host.iter().map(|(n, i)| (*n, i.cold_kib * 1024)).collect();
        let plan = plan(&self.pairs, &nodes, &host_cold, &mut pids, params);
        let mut moved: BTreeMap<u32, u64> = BTreeMap::new();
        for (pid, pair_moves) in &plan.moves {
            let Some((proc, _)) = probes.get(pid) else { continue };
            let Some(pidfd) = proc.pidfd() else { continue };
            for (k, m) in pair_moves.iter().enumerate() {
                let (hot, cold) = self.pairs[k];
                for (pages, node) in [(&m.to_cold, cold), (&m.to_hot, hot)] {
                    let ranges: Vec<AddrRange> =
                        pages.iter().map(|&a| AddrRange::new(a, a + HUGE_PAGE_BYTES)).collect();
                    let o = swap_backends::numa::move_to_node(TargetRef::process(*pid, pidfd), &ranges, node);
                    *moved.entry(*pid).or_default() += o.pages_on_node * PAGE_SIZE;
                }
            }
        }
        let mut stats = BTreeMap::new();
        for (name, pids) in &per_task {
            let mut s = TaskStats {
                pids: pids.keys().copied().collect(),
                probe: Some(self.probe.name().into()),
                ..TaskStats::default()
            };
            let (hot, cold) = pids
                .values()
                .flat_map(|m| m.values())
                .fold((0, 0), |a, i| (a.0 + i.hot_kib, a.1 + i.cold_kib));
            s.hot_bytes = Some(hot * 1024);
            s.cold_bytes = Some(cold * 1024);
            s.extra
                .insert("moved".into(), crate::render::bytes(pids.keys().filter_map(|p| moved.get(p)).sum()));
            stats.insert(name.clone(), s);
        }
        if let Ok(mut p) = published.lock() {
            *p = Published {
                at: Some(SystemTime::now()),
                nodes,
                host,
                tasks: per_task,
                stats,
                last_error: None,
            };
        }
        Ok(())
    }
}

/// The node of the page at each range's start (a `move_pages` query; the
/// pidfd is checked after it, as the pid could name another process by then).
fn node_per_page(proc: &ProcTarget, ranges: &[AddrRange]) -> Result<Vec<Option<u32>>, String> {
    let pid = proc.pid();
    let pages: Vec<u64> = ranges.iter().map(|r| r.start.0).collect();
    let mut status = vec![0i32; pages.len()];
    swap_backends::sys::move_pages(pid, &pages, None, &mut status)
        .map_err(|e| format!("move_pages query of pid {pid}: {e}"))?;
    if !proc.is_alive() {
        return Ok(vec![None; pages.len()]);
    }
    Ok(status.into_iter().map(|s| u32::try_from(s).ok()).collect())
}

impl Engine for CslideEngine {
    fn start_task(&mut self, task: &conf::Task) -> Result<(), EngineError> {
        if task.cslide.is_none() {
            return Err(EngineError::Task {
                task: task.name.clone(),
                reason: "a cslide task needs vm_flags, anon_only and ign_host".into(),
            });
        }
        if let Ok(mut t) = self.tasks.lock() {
            t.insert(task.name.clone(), task.clone());
        }
        Ok(())
    }

    fn stop_task(&mut self, task: &str) {
        if let Ok(mut t) = self.tasks.lock() {
            t.remove(task);
        }
    }

    fn task_stats(&self, task: &str) -> Option<TaskStats> {
        if !self.tasks.lock().is_ok_and(|t| t.contains_key(task)) {
            return None;
        }
        let p = self.published.lock().ok()?;
        let mut s = p.stats.get(task).cloned().unwrap_or_default();
        s.last_error = s.last_error.or_else(|| p.last_error.clone());
        Some(s)
    }

    fn snapshots(&self, _task: &str) -> Vec<(u32, Snapshot)> {
        Vec::new()
    }

    fn command(&mut self, cmd: &str, task: Option<&str>) -> Result<String, EngineError> {
        let p = self.published.lock().map(|p| p.clone()).unwrap_or_default();
        let at = p.at.unwrap_or_else(SystemTime::now);
        match cmd {
            "showhostpages" => Ok(show_host_pages(at, &p.nodes, &p.host)),
            "showtaskpages" => {
                let Some(t) = task else {
                    return Err(EngineError::Task {
                        task: "-".into(),
                        reason: "showtaskpages needs -t <task>".into(),
                    });
                };
                if !self.tasks.lock().is_ok_and(|m| m.contains_key(t)) {
                    return Err(EngineError::TaskNotRunning { task: t.into() });
                }
                let pids = p.tasks.get(t).cloned().unwrap_or_default();
                Ok(pids.iter().map(|(pid, info)| show_task_pages(at, *pid, &self.nodes, info)).collect())
            }
            _ => Err(EngineError::UnknownCommand {
                engine: self.name.clone(),
                cmd: cmd.into(),
                known: "showhostpages, showtaskpages".into(),
            }),
        }
    }

    fn stop(&mut self) {
        self.stop.stop();
        if let Some(h) = self.worker.take() {
            let _ = h.join();
        }
    }
}

impl Drop for CslideEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long a cslide round waits between scans (for tests of the worker's pacing).
pub fn round_duration(scan: &conf::PageScan) -> Duration {
    scan.sleep * scan.loops + scan.interval
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const H: u64 = HUGE_PAGE_BYTES;

    fn params(t: u32, quota_mib: u64, reserve_mib: u64) -> PlanParams {
        PlanParams {
            hot_threshold: t,
            max_count: 3,
            quota_bytes: quota_mib * MIB,
            reserve_bytes: reserve_mib * MIB,
            page_bytes: H,
        }
    }

    fn nodes(list: &[(u32, u64, u64)]) -> BTreeMap<u32, NodeMem> {
        list.iter()
            .map(|&(n, total, free)| (n, NodeMem { total_bytes: total * MIB, free_bytes: free * MIB }))
            .collect()
    }

    /// `count` pages on `node` starting at `base`, each 2 MiB apart.
    fn fill(p: &mut PidPages, base: u64, n: u64, count: u32, node: u32) {
        for k in 0..n {
            p.add(base + k * H, count, node);
        }
    }

    fn host_cold(pids: &[PidPages], t: u32) -> BTreeMap<u32, u64> {
        let mut out = BTreeMap::new();
        for p in pids {
            for (n, i) in pages_info(p, t, H) {
                *out.entry(n).or_default() += i.cold_kib * 1024;
            }
        }
        out
    }

    #[test]
    fn pairs_must_cover_an_even_number_of_existing_nodes() {
        let e = check_pairs(&[(0, 2), (1, 3)], &[0]).expect_err("one node");
        assert!(e.contains("node_pair") && e.contains("1 NUMA node") && e.contains("at least two"), "{e}");
        assert!(check_pairs(&[(0, 1)], &[0, 1, 2]).expect_err("odd").contains("even number"));
        assert!(check_pairs(&[(0, 2)], &[0, 1]).expect_err("missing").contains("node 2 does not exist"));
        assert!(
            check_pairs(&[(0, 1)], &[0, 1, 2, 3]).expect_err("unpaired").contains("node 2 is in no pair")
        );
        assert_eq!(check_pairs(&[(0, 2), (1, 3)], &[0, 1, 2, 3]), Ok(()));
    }

    #[test]
    fn hot_pages_move_up_within_the_quota_when_the_hot_node_has_room() {
        // Pair (0 hot, 1 cold): 100 MiB free on node 0; 10 hot pages (20 MiB)
        // on node 1; quota 8 MiB < free: 4 pages move up, hottest first.
        let mut p = PidPages::new(7, 3);
        fill(&mut p, 0x1000_0000, 6, 3, 1);
        fill(&mut p, 0x2000_0000, 4, 2, 1);
        let mut pids = vec![p];
        let hc = host_cold(&pids, 2);
        let plan =
            plan(&[(0, 1)], &nodes(&[(0, 1024, 100), (1, 4096, 2000)]), &hc, &mut pids, params(2, 8, 0));
        let m = &plan.moves[&7][0];
        assert_eq!(m.to_hot, (0..4).map(|k| 0x1000_0000 + k * H).collect::<Vec<_>>());
        assert!(m.to_cold.is_empty());
        assert_eq!(pids[0].buckets[3][&1].len(), 2, "moved pages leave their bucket");
    }

    #[test]
    fn hot_displaces_cold_at_twice_the_quota_and_the_cold_then_moves_down() {
        // Hot node 0 has 4 MiB free and 40 MiB of cold pages; quota 20 MiB.
        // can_move = free + (quota - free) / 2 = 4 + 8 = 12 MiB: 6 hot pages up,
        // 2 fit the free memory, 4 displace cold (quota left 20 - 4 - 2*8 = 0).
        // The cold step may then move the 8 MiB displaced: 4 cold pages down.
        let mut p = PidPages::new(9, 3);
        fill(&mut p, 0x4000_0000, 10, 3, 1);
        fill(&mut p, 0x8000_0000, 20, 0, 0);
        let mut pids = vec![p];
        let hc = host_cold(&pids, 1);
        assert_eq!(hc[&0], 40 * MIB);
        let plan = plan(&[(0, 1)], &nodes(&[(0, 512, 4), (1, 4096, 1000)]), &hc, &mut pids, params(1, 20, 0));
        let m = &plan.moves[&9][0];
        assert_eq!(m.to_hot.len(), 6);
        assert_eq!(m.to_cold, (0..4).map(|k| 0x8000_0000 + k * H).collect::<Vec<_>>());
    }

    #[test]
    fn warm_pages_are_prefetched_only_above_the_reserve() {
        // Node 0: 64 MiB free, reserve 40 MiB: 24 MiB may be prefetched; the
        // quota (100 MiB) does not bind. Warm pages (count 1 < T 2) on node 1:
        // 20 of them (40 MiB) -> 12 move up, count 1 before count 0.
        let mut p = PidPages::new(3, 3);
        fill(&mut p, 0x1_0000_0000, 8, 1, 1);
        fill(&mut p, 0x2_0000_0000, 12, 0, 1);
        let mut pids = vec![p];
        let hc = host_cold(&pids, 2);
        let plan =
            plan(&[(0, 1)], &nodes(&[(0, 256, 64), (1, 4096, 1000)]), &hc, &mut pids, params(2, 100, 40));
        let m = &plan.moves[&3][0];
        assert_eq!(m.to_hot.len(), 12);
        assert_eq!(&m.to_hot[..8], &(0..8).map(|k| 0x1_0000_0000 + k * H).collect::<Vec<_>>()[..]);
        assert!(m.to_cold.is_empty(), "free 40 MiB is not below the reserve: nothing cold moves down");
    }

    #[test]
    fn cold_pages_move_down_until_the_hot_node_regains_its_reserve() {
        // Node 0 has 10 MiB free, reserve 30 MiB: 20 MiB of cold pages move
        // down (cap = min(quota 64, reserve - free 20, cold free 500)), coldest first.
        let mut p = PidPages::new(5, 3);
        fill(&mut p, 0x10_0000_0000, 8, 1, 0);
        fill(&mut p, 0x20_0000_0000, 8, 0, 0);
        fill(&mut p, 0x30_0000_0000, 8, 3, 0);
        let mut pids = vec![p];
        let hc = host_cold(&pids, 2);
        let plan =
            plan(&[(0, 1)], &nodes(&[(0, 256, 10), (1, 4096, 500)]), &hc, &mut pids, params(2, 64, 30));
        let m = &plan.moves[&5][0];
        let want: Vec<u64> =
            (0..8).map(|k| 0x20_0000_0000 + k * H).chain((0..2).map(|k| 0x10_0000_0000 + k * H)).collect();
        assert_eq!(m.to_cold, want);
        assert!(m.to_hot.is_empty());
    }

    #[test]
    fn two_pairs_have_their_own_caps_and_zero_quota_moves_nothing() {
        let mut p = PidPages::new(1, 3);
        fill(&mut p, 0x1000_0000, 4, 3, 2); // hot pages on cold node 2 (pair 0,2)
        fill(&mut p, 0x9000_0000, 4, 3, 3); // hot pages on cold node 3 (pair 1,3)
        let layout = nodes(&[(0, 512, 4), (1, 512, 100), (2, 4096, 1000), (3, 4096, 1000)]);
        let mut pids = vec![p.clone()];
        let hc = host_cold(&pids, 2);
        let plan1 = plan(&[(0, 2), (1, 3)], &layout, &hc, &mut pids, params(2, 100, 0));
        let m = &plan1.moves[&1];
        // Pair (0,2): node 0 has 4 MiB free and no cold memory: 2 pages.
        assert_eq!(m[0].to_hot.len(), 2);
        assert_eq!(m[1].to_hot.len(), 4);
        assert_eq!(plan1.bytes_per_pair(2, H), vec![(4 * MIB, 0), (8 * MIB, 0)]);
        let mut pids = vec![p];
        let plan0 = plan(&[(0, 2), (1, 3)], &layout, &hc, &mut pids, params(2, 0, 0));
        assert!(plan0.moves[&1].iter().all(|m| m.to_hot.is_empty() && m.to_cold.is_empty()));
    }

    #[test]
    fn show_commands_print_etmems_tables() {
        let mut p = PidPages::new(42, 3);
        fill(&mut p, 0, 3, 3, 0);
        fill(&mut p, 0x1000_0000, 2, 0, 1);
        let info = pages_info(&p, 2, H);
        assert_eq!(info[&0], NodePagesInfo { hot_kib: 6144, cold_kib: 0 });
        assert_eq!(info[&1], NodePagesInfo { hot_kib: 0, cold_kib: 4096 });
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let host = show_host_pages(at, &nodes(&[(0, 1024, 10), (1, 2048, 20)]), &info);
        let want = [
            "[Tue Nov 14 22:13:20 2023] host pages info (KB):",
            " node      total       used        hot       cold",
            "    0    1048576       6144       6144          0",
            "    1    2097152       4096          0       4096",
        ];
        assert_eq!(host, want.join("\n") + "\n");
        let task = show_task_pages(at, 42, &[0, 1], &info);
        assert!(task.starts_with("[Tue Nov 14 22:13:20 2023] task 42 pages info (KB):\n"), "{task}");
        assert!(task.contains("    1       4096          0       4096\n"), "{task}");
    }
}
