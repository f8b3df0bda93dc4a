//! The TPC-C harness's huge pages A/B (`perf::tpcc::thp_ab`) on a real
//! child: it freezes the units that are huge when the warm-up ends, then
//! brings the process to each state (all split, the frozen choice, every
//! fully populated unit collapsed) with real process_madvise calls, and the
//! process's data stays as it was.

use damon_core::ops::ProcTarget;
use damon_core::ops::sys::MADV_COLLAPSE;
use etmem_tests::is_root;
use perf::tpcc::thp_ab::{self, Plan, State};
use perf::workload::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const UNIT: u64 = 2 * MIB;
const THP_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

#[test]
fn the_ab_brings_a_process_to_each_state_and_keeps_its_data() {
    if !is_root() {
        println!("skipped: needs root (process_madvise on another process, pagemap PFNs)");
        return;
    }
    match std::fs::read_to_string(THP_ENABLED) {
        Ok(t) if t.contains("[madvise]") => {}
        other => {
            println!("skipped: the test needs THP `madvise` ({other:?})");
            return;
        }
    }
    // 64 MiB, every page written once, half of it read all the time.
    let mut child = Child::spawn(["--size", "64M", "--hot", "50%"]).expect("workload");
    let region = child.regions()[0].range();
    let first = region.start.0.next_multiple_of(UNIT);
    // The "promotion" of the warm-up: two units made huge by hand.
    let proc = ProcTarget::open(child.pid()).expect("pidfd");
    let n = proc.process_madvise(&[(first, UNIT), (first + UNIT, UNIT)], MADV_COLLAPSE).expect("collapse");
    assert_eq!(n as u64, 2 * UNIT);

    let plan = Plan {
        promote_for: Duration::ZERO,
        phase: Duration::from_secs(1),
        settle: Duration::ZERO,
        transition_budget: Duration::from_secs(10),
        cycles: 1,
    };
    let stopped = AtomicBool::new(false);
    let start = Instant::now();
    let never = AtomicBool::new(false);
    let run = thp_ab::control(
        child.pid(),
        &plan,
        start,
        start + Duration::from_secs(60),
        &never,
        || stopped.store(true, Ordering::SeqCst),
        &|line| println!("{line}"),
    );
    for p in &run.phases {
        println!("{}: {} collapsed, {} split, {} MiB huge", p.state.name(), p.collapsed, p.split, p.huge_mib);
    }
    assert!(stopped.load(Ordering::SeqCst), "the promotion was not stopped");
    assert_eq!(run.error, None);
    assert_eq!(run.ours_mib, 4.0, "the frozen choice is the two units made huge");
    let states: Vec<State> = run.phases.iter().map(|p| p.state).collect();
    assert_eq!(states, thp_ab::order(0).to_vec());
    let phase = |s: State| run.phases.iter().find(|p| p.state == s).expect("phase");
    assert_eq!(phase(State::Small).huge_mib, 0.0, "small: every huge page split");
    assert_eq!(phase(State::Ours).huge_mib, 4.0, "ours: exactly the frozen units");
    // All: every unit of the region is fully populated (written once), so
    // every whole unit inside it is huge.
    let whole = (region.end.0 / UNIT * UNIT).saturating_sub(first) / UNIT;
    assert!(
        phase(State::All).huge_mib >= (whole * 2) as f64,
        "all: {} MiB huge of {} whole units",
        phase(State::All).huge_mib,
        whole
    );
    assert!(phase(State::All).collapsed + 2 >= whole, "all: {:?}", phase(State::All));
    let v = child.verify().expect("verify");
    assert!(v.ok, "the workload's data changed: {v:?}");
}
