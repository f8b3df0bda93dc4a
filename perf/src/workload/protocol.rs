//! The JSON lines `etmem-workload` writes to stdout, as typed structs shared
//! by the binary (which writes them) and [`super::Child`] (which reads them).
//!
#![doc = include_str!("PROTOCOL.md")]

use super::spec::{RwMode, ThpHint};
use damon_core::{Addr, AddrRange};
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change of these types; the ready line carries it
/// and [`super::Child`] refuses a binary that speaks another version.
pub const PROTOCOL_VERSION: u32 = 1;

/// One stdout line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Memory is mapped and filled; accesses start now. Always the first line.
    Ready(Ready),
    /// A phase started (also the first one, right after `ready`).
    Phase(PhaseChange),
    /// Reply to `stats`, and the last stats before exit (`final: true`).
    Stats(StatsReport),
    /// Every `--log-interval`: accesses since the previous interval line.
    Interval(IntervalReport),
    /// Reply to `verify`, and the final check with `--verify-on-exit`.
    Verify(VerifyReport),
    /// Reply to `ground-truth`; also after `ready` with `--ground-truth -`.
    GroundTruth(GroundTruth),
    /// Reply to `pause`.
    Paused(PauseAck),
    /// Reply to `resume`.
    Resumed,
    /// The last phase ended (without `--repeat`); the process exits next.
    Done,
    /// A command was not understood or failed.
    Error(ErrorReport),
}

/// The `ready` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    pub pid: u32,
    pub protocol: u32,
    pub page_size: u64,
    pub huge_page_size: u64,
    pub seed: u64,
    pub threads: usize,
    pub regions: Vec<RegionInfo>,
    /// Phase names, in order.
    pub phases: Vec<String>,
}

/// A mapped region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionInfo {
    pub name: String,
    pub index: usize,
    /// First byte (2 MiB aligned).
    pub start: Addr,
    /// One past the last byte; `[start, end)` is exactly one line of /proc/PID/maps.
    pub end: Addr,
    pub size: u64,
    /// Accessed in the first phase.
    pub hot: bool,
    /// Names of the phases that access it.
    pub hot_phases: Vec<String>,
    pub thp: ThpHint,
    /// Sparse fill: one page of every this many bytes was filled, the rest reads zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_stride: Option<u64>,
}

impl RegionInfo {
    pub fn range(&self) -> AddrRange {
        AddrRange { start: self.start, end: self.end }
    }
}

/// The `phase` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseChange {
    pub name: String,
    pub index: usize,
    /// Completed passes over all phases (with `--repeat`).
    pub cycle: u64,
}

/// Access counts so far.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StatsReport {
    /// Wall time since accesses started.
    pub elapsed_ms: u64,
    /// Time spent running phases (pauses excluded).
    pub run_ms: u64,
    /// 8-byte accesses done, all phases.
    pub accesses: u64,
    /// accesses / run time.
    pub accesses_per_s: f64,
    /// Current phase; `None` once all phases are done.
    pub phase: Option<String>,
    pub phase_index: Option<usize>,
    pub cycle: u64,
    pub paused: bool,
    pub done: bool,
    pub threads: usize,
    pub phases: Vec<PhaseStats>,
    /// The last stats line before the process exits.
    #[serde(rename = "final", default)]
    pub is_final: bool,
}

/// Access counts of one phase, over all its runs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PhaseStats {
    pub name: String,
    pub accesses: u64,
    pub run_ms: u64,
    pub accesses_per_s: f64,
}

/// The `interval` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalReport {
    pub phase: Option<String>,
    pub interval_ms: u64,
    pub accesses: u64,
    pub accesses_per_s: f64,
    pub total_accesses: u64,
}

/// Result of checking every byte of every region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub bytes_checked: u64,
    /// Bytes that differ from their expected value.
    pub mismatches: u64,
    /// 8-byte words with at least one bad byte.
    pub bad_words: u64,
    /// Pages with at least one bad byte.
    pub bad_pages: u64,
    /// The first few bad words, in address order within each region.
    pub first_bad: Vec<BadWord>,
    pub duration_ms: u64,
}

impl Default for VerifyReport {
    fn default() -> Self {
        VerifyReport {
            ok: true,
            bytes_checked: 0,
            mismatches: 0,
            bad_words: 0,
            bad_pages: 0,
            first_bad: Vec::new(),
            duration_ms: 0,
        }
    }
}

/// One word that does not hold its expected value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BadWord {
    /// Address of the first bad byte in the word.
    pub addr: u64,
    /// Address of the word (8-byte aligned).
    pub word_addr: u64,
    pub region: String,
    /// Offset of the first bad byte in the region.
    pub offset: u64,
    /// The word's expected and found values (little-endian, as in memory).
    pub expected: u64,
    pub found: u64,
}

/// Which memory is hot in which phase: what a monitor should find.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub pid: u32,
    pub page_size: u64,
    pub huge_page_size: u64,
    pub repeat: bool,
    pub regions: Vec<RegionInfo>,
    pub phases: Vec<PhaseTruth>,
}

/// One phase of the ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseTruth {
    pub name: String,
    pub index: usize,
    /// `None`: forever.
    pub duration_ms: Option<u64>,
    /// Regions accessed in this phase.
    pub hot_regions: Vec<String>,
    /// Their address ranges; all other regions are cold in this phase.
    pub hot_ranges: Vec<AddrRange>,
    pub patterns: Vec<PatternTruth>,
}

/// One access pattern of a phase, with its share of the phase's batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternTruth {
    pub region: String,
    pub random: bool,
    /// Sequential walks touch one word every `stride_bytes`; random ones any word.
    pub stride_bytes: u64,
    pub weight: u32,
    /// weight / total weight of the phase.
    pub share: f64,
    pub rw: RwMode,
}

/// Reply to `pause`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PauseAck {
    /// Access threads that have stopped between batches.
    pub parked_threads: usize,
    pub threads: usize,
    /// All access threads are parked: no access happens until `resume`.
    pub complete: bool,
}

/// The `error` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_tagged_by_event() {
        let line = serde_json::to_string(&Event::Resumed).expect("serialise");
        assert_eq!(line, r#"{"event":"resumed"}"#);
        let ready = Event::Ready(Ready {
            pid: 7,
            protocol: PROTOCOL_VERSION,
            page_size: 4096,
            huge_page_size: 2 << 20,
            seed: 1,
            threads: 1,
            regions: vec![RegionInfo {
                name: "hot".into(),
                index: 0,
                start: Addr(0x20_0000),
                end: Addr(0x40_0000),
                size: 0x20_0000,
                hot: true,
                hot_phases: vec!["run".into()],
                thp: ThpHint::None,
                fill_stride: None,
            }],
            phases: vec!["run".into()],
        });
        let line = serde_json::to_string(&ready).expect("serialise");
        assert!(line.starts_with(r#"{"event":"ready","pid":7,"#), "{line}");
        assert!(line.contains(r#""start":2097152,"end":4194304"#), "{line}");
        assert_eq!(serde_json::from_str::<Event>(&line).expect("parse"), ready);
        let stats = r#"{"event":"stats","elapsed_ms":1,"run_ms":1,"accesses":5,"accesses_per_s":5000.0,"phase":"run","phase_index":0,"cycle":0,"paused":false,"done":false,"threads":1,"phases":[],"final":true}"#;
        match serde_json::from_str::<Event>(stats).expect("parse") {
            Event::Stats(s) => assert!(s.is_final),
            other => panic!("unexpected {other:?}"),
        }
    }
}
