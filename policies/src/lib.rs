//! Policies: classify snapshots into cold / warm / hot / THP-eligible memory,
//! evaluate DAMOS schemes, quotas, prioritisation and memory gates.
//!
//! Pure code: time, the task's and the host's memory and what the caller has
//! already done are passed in; nothing here reads a file or a clock.
//!
//! The engine thread owns one [`Planner`] per task and, once per snapshot:
//!
//! ```
//! use policies::{HostMemory, Outcome, PlanInput, Planner, TaskMemory};
//! # fn demo(policy: conf::Policy, schemes: Vec<conf::Scheme>, snapshot: damon_core::Snapshot) {
//! let mut planner = Planner::new(policy, schemes);
//! let plan = planner.plan(&PlanInput {
//!     now_us: snapshot.time_us,
//!     snapshot: &snapshot,
//!     task: TaskMemory { rss_bytes: 512 << 20, swap_bytes: 0 },
//!     host: HostMemory { total_bytes: 24 << 30, free_bytes: 1 << 30 },
//!     paged_out: &[],
//!     huge: &[],
//!     no_collapse: &[],
//! });
//! for (rule, why) in plan.blocked() {
//!     println!("{rule}: {why}");
//! }
//! // ... apply plan.decisions through a backend, then per rule:
//! for report in &plan.rules {
//!     let outcome = Outcome { tried_bytes: report.planned_bytes, applied_bytes: 0, cpu_ns: 0 };
//!     planner.record(report.rule, &outcome).expect("the rule comes from this planner");
//! }
//! # }
//! ```
//!
//! Architecture invariant: no I/O, no clock, no randomness in this crate.

pub mod classify;
pub mod gates;
pub mod planner;
pub mod quota;
mod ranges;
pub mod scheme;
pub mod score;
#[cfg(test)]
mod testutil;

pub use classify::{
    Class, ClassTotals, Classification, Thresholds, classify, resolve_accesses, resolve_age, settled_after,
};
pub use gates::{Blocked, HostMemory, TaskMemory, WatermarkState};
pub use planner::{
    Decision, Outcome, Plan, PlanInput, Planner, RecordError, RuleId, RuleReport, RuleStats, task_policy,
};
pub use quota::effective_size_bytes;
pub use ranges::HPAGE_SIZE;
pub use scheme::ResolvedPattern;
pub use score::{MAX_SCORE, Weights, cold_score, hot_score};
