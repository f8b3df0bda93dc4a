//! Records of a running project: the file format (`docs/record-format.md`),
//! reading records back (ours, and damo's JSON), the engines' snapshot feed,
//! the daemon's recording sessions and the `etmem record` client.
//!
//! A record is JSON Lines: a `header` line, then `snapshot`, `mappings`,
//! `stats`, `backends` and `lost` lines in arrival order, and an `end` line.

pub mod client;
pub mod damo;
pub mod feed;
pub mod session;

use crate::protocol::{BackendView, TaskStats};
use damon_core::{AddrRange, RegionSnapshot, Snapshot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `format` value of our header line.
pub const FORMAT_NAME: &str = "etmem-record";
/// The format version this build writes; readers accept versions up to it.
pub const FORMAT_VERSION: u32 = 1;

/// One line of a record file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RecordLine {
    Header(RecordHeader),
    Snapshot(SnapshotLine),
    Mappings(MappingsLine),
    /// Boxed: a task's figures are large next to the other lines.
    Stats(Box<StatsLine>),
    Backends(BackendsLine),
    Lost(LostLine),
    End(EndLine),
}

/// The first line: what was recorded, where and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordHeader {
    /// Always `etmem-record`.
    pub format: String,
    pub version: u32,
    pub project: String,
    pub etmemd_version: String,
    pub host: String,
    /// `uname -r` of the daemon's host.
    pub kernel: String,
    /// Wall-clock start of the recording, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// The tasks being recorded.
    pub targets: Vec<RecordTarget>,
}

/// One recorded task and how its snapshots reach the recorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordTarget {
    pub engine: String,
    /// Engine kind (`region`, `page`, `kernel-damon`, ...).
    pub kind: String,
    pub task: String,
    /// `feed` (the engine pushes every snapshot) or `poll` (the recorder
    /// polls the latest snapshot; may miss some at short intervals).
    pub source: String,
}

/// One aggregation of one process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotLine {
    /// Milliseconds since the recording started, when the engine published it.
    pub at_ms: u64,
    pub engine: String,
    pub task: String,
    pub pid: u32,
    /// End of the aggregation interval, µs on the engine task's clock.
    pub time_us: u64,
    pub aggr_interval_us: u64,
    /// The highest count a region can reach (aggr / sample, or 3 * loop).
    pub max_nr_accesses: u32,
    /// `[start, end, nr_accesses, age]`, sorted by address.
    pub regions: Vec<(u64, u64, u32, u32)>,
}

impl SnapshotLine {
    pub fn from_snapshot(at_ms: u64, engine: &str, task: &str, pid: u32, s: &Snapshot) -> SnapshotLine {
        SnapshotLine {
            at_ms,
            engine: engine.into(),
            task: task.into(),
            pid,
            time_us: s.time_us,
            aggr_interval_us: s.aggr_interval_us,
            max_nr_accesses: s.max_nr_accesses,
            regions: s
                .regions
                .iter()
                .map(|r| (r.range.start.0, r.range.end.0, r.nr_accesses, r.age))
                .collect(),
        }
    }
}

/// The memory mappings the engine watches in a process (written when they change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappingsLine {
    pub at_ms: u64,
    pub engine: String,
    pub task: String,
    pub pid: u32,
    /// `[start, end]`, sorted and disjoint.
    pub ranges: Vec<(u64, u64)>,
}

/// A task's counters (`project show` figures), about once a second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsLine {
    pub at_ms: u64,
    pub engine: String,
    pub task: String,
    pub stats: TaskStats,
}

/// The project's swap devices and how full they are, about once a second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendsLine {
    pub at_ms: u64,
    pub backends: Vec<BackendView>,
}

/// Snapshots that did not make it into the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LostLine {
    pub at_ms: u64,
    pub engine: String,
    pub task: String,
    /// Aggregations lost since the previous `lost` line of this task.
    pub items: u64,
    pub why: String,
}

/// The last line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndLine {
    pub at_ms: u64,
    pub snapshots: u64,
    pub lost: u64,
    pub reason: String,
}

/// One aggregation of one target, as the reports use it.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRecord {
    /// Start and end of the aggregation interval, µs from the record's first snapshot.
    pub start_us: u64,
    pub end_us: u64,
    pub max_nr_accesses: u32,
    pub regions: Vec<RegionSnapshot>,
}

impl SnapshotRecord {
    /// A region's access frequency, 0.0 ..= 1.0 of the samples.
    pub fn frequency(&self, r: &RegionSnapshot) -> f64 {
        if self.max_nr_accesses == 0 {
            return 0.0;
        }
        (r.nr_accesses as f64 / self.max_nr_accesses as f64).min(1.0)
    }
}

/// Every snapshot of one process of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRecord {
    pub engine: String,
    pub task: String,
    pub pid: u32,
    pub aggr_interval_us: u64,
    pub snapshots: Vec<SnapshotRecord>,
    /// Union of the mappings recorded for the process (empty when unknown).
    pub mappings: Vec<AddrRange>,
}

impl TargetRecord {
    /// `task wl pid 42`.
    pub fn label(&self) -> String {
        format!("task {} pid {}", self.task, self.pid)
    }
}

/// A whole record, read back.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recording {
    pub header: Option<RecordHeader>,
    pub targets: Vec<TargetRecord>,
    pub stats: Vec<StatsLine>,
    pub backends: Vec<BackendsLine>,
    pub lost: Vec<LostLine>,
    pub end: Option<EndLine>,
    /// `etmem-record` or `damo-json`.
    pub source_format: String,
}

impl Recording {
    /// The target with the most snapshots (reports default to it).
    pub fn busiest(&self) -> Option<&TargetRecord> {
        self.targets.iter().max_by_key(|t| t.snapshots.len())
    }

    /// Targets matching the given task name and pid (either may be absent).
    pub fn select(&self, task: Option<&str>, pid: Option<u32>) -> Vec<&TargetRecord> {
        self.targets
            .iter()
            .filter(|t| task.is_none_or(|n| t.task == n) && pid.is_none_or(|p| t.pid == p))
            .collect()
    }
}

/// Why a record file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadRecordError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a record line")]
    BadLine {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: not damo's JSON record format")]
    BadDamo {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path}: format {format:?} version {version} is not one this build reads ({FORMAT_NAME} up to {FORMAT_VERSION})"
    )]
    Version { path: PathBuf, format: String, version: u32 },
    #[error(
        "{path}: not a record (neither etmem-record JSON lines nor damo's JSON, plain or zlib-compressed; damo's perf-data records need `damo record --output_type json_compressed`)"
    )]
    Unknown { path: PathBuf },
    #[error("{path}: the record holds no snapshot")]
    Empty { path: PathBuf },
}

/// Read a record file: ours, or damo's JSON (`damo record --output_type json`).
pub fn read_file(path: &Path) -> Result<Recording, ReadRecordError> {
    let io = |source| ReadRecordError::Io { path: path.to_path_buf(), source };
    let text = std::fs::read(path).map_err(io)?;
    // damo's default record: zlib-compressed JSON (RFC 1950 header: CMF 0x78, FCHECK).
    let text =
        if text.len() > 2 && text[0] == 0x78 && (u16::from(text[0]) << 8 | u16::from(text[1])) % 31 == 0 {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&text[..]), &mut out)
                .map_err(io)?;
            out
        } else {
            text
        };
    let first = text.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let rec = match first {
        Some(b'[') => {
            damo::read(&text).map_err(|source| ReadRecordError::BadDamo { path: path.into(), source })?
        }
        Some(b'{') => read_lines(path, &text[..])?,
        _ => return Err(ReadRecordError::Unknown { path: path.into() }),
    };
    if rec.targets.iter().all(|t| t.snapshots.is_empty()) {
        return Err(ReadRecordError::Empty { path: path.into() });
    }
    Ok(rec)
}

/// A snapshot stretches back to the previous one over at most this many
/// aggregation intervals ...
pub const GAP_AGGRS: u64 = 10;
/// ... or this many µs, whichever is longer.
pub const GAP_MIN_US: u64 = 5_000_000;

/// The wall-clock span `(start_us, end_us)` each snapshot of one process
/// covers, from the times they were published (sorted by `at_ms`): a
/// snapshot ends when it was published and starts where the previous one
/// ended (a slow engine's samples spread over that time), unless that is
/// more than [`GAP_AGGRS`] aggregation intervals and [`GAP_MIN_US`] back:
/// then snapshots were lost or the task was not running, and the gap stays.
pub fn wall_times(lines: &[SnapshotLine]) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(lines.len());
    let mut prev_end: Option<u64> = None;
    for s in lines {
        let end = s.at_ms * 1000;
        let nominal = end.saturating_sub(s.aggr_interval_us);
        let longest = (GAP_AGGRS * s.aggr_interval_us).max(GAP_MIN_US);
        let start = match prev_end {
            Some(p) if p <= end && end - p <= longest => p,
            _ => nominal,
        };
        out.push((start, end));
        prev_end = Some(end);
    }
    out
}

/// Merge a range into a sorted disjoint list.
fn add_range(list: &mut Vec<AddrRange>, r: AddrRange) {
    if r.is_empty() {
        return;
    }
    list.push(r);
    list.sort_by_key(|x| x.start);
    let mut out: Vec<AddrRange> = Vec::with_capacity(list.len());
    for x in list.drain(..) {
        match out.last_mut() {
            Some(last) if x.start <= last.end => last.end = last.end.max(x.end),
            _ => out.push(x),
        }
    }
    *list = out;
}

/// Read our JSON Lines format. Unknown line types are skipped (newer
/// writers may add some); a truncated last line (a recorder that was
/// killed) is ignored.
fn read_lines(path: &Path, text: &[u8]) -> Result<Recording, ReadRecordError> {
    let mut rec = Recording { source_format: FORMAT_NAME.into(), ..Recording::default() };
    let mut targets: BTreeMap<(String, String, u32), TargetRecord> = BTreeMap::new();
    let mut order: Vec<(String, String, u32)> = Vec::new();
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    let last_nonempty = lines.iter().rposition(|l| !l.iter().all(u8::is_ascii_whitespace));
    let mut raw: Vec<(u64, SnapshotLine)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(_) if Some(i) == last_nonempty && i > 0 => break,
            Err(source) => return Err(ReadRecordError::BadLine { path: path.into(), line: i + 1, source }),
        };
        let known = ["header", "snapshot", "mappings", "stats", "backends", "lost", "end"];
        if !value.get("type").and_then(|t| t.as_str()).is_some_and(|t| known.contains(&t)) {
            if i == 0 {
                return Err(ReadRecordError::Unknown { path: path.into() });
            }
            continue;
        }
        let parsed: RecordLine = serde_json::from_value(value)
            .map_err(|source| ReadRecordError::BadLine { path: path.into(), line: i + 1, source })?;
        match parsed {
            RecordLine::Header(h) => {
                if h.format != FORMAT_NAME || h.version > FORMAT_VERSION {
                    return Err(ReadRecordError::Version {
                        path: path.into(),
                        format: h.format,
                        version: h.version,
                    });
                }
                rec.header = Some(h);
            }
            RecordLine::Snapshot(s) => raw.push((i as u64, s)),
            RecordLine::Mappings(m) => {
                let key = (m.engine.clone(), m.task.clone(), m.pid);
                let t = target_entry(&mut targets, &mut order, &key);
                for (s, e) in m.ranges {
                    if s < e {
                        add_range(&mut t.mappings, AddrRange::new(s, e));
                    }
                }
            }
            RecordLine::Stats(s) => rec.stats.push(*s),
            RecordLine::Backends(b) => rec.backends.push(b),
            RecordLine::Lost(l) => rec.lost.push(l),
            RecordLine::End(e) => rec.end = Some(e),
        }
    }
    if rec.header.is_none() {
        return Err(ReadRecordError::Unknown { path: path.into() });
    }
    // Wall-clock times: when each snapshot was published (`at_ms`). The
    // engine's own clock (`time_us`) counts samples and falls behind on a
    // busy host, so it is not used for the time axis.
    raw.sort_by_key(|(line, s)| (s.at_ms, *line));
    let mut by_key: BTreeMap<(String, String, u32), Vec<SnapshotLine>> = BTreeMap::new();
    for (_, s) in raw {
        let key = (s.engine.clone(), s.task.clone(), s.pid);
        target_entry(&mut targets, &mut order, &key);
        by_key.entry(key).or_default().push(s);
    }
    for (key, lines) in by_key {
        let t = target_entry(&mut targets, &mut order, &key);
        let times = wall_times(&lines);
        for (s, (start_us, end_us)) in lines.into_iter().zip(times) {
            if t.aggr_interval_us == 0 {
                t.aggr_interval_us = s.aggr_interval_us;
            }
            t.snapshots.push(SnapshotRecord {
                start_us,
                end_us,
                max_nr_accesses: s.max_nr_accesses,
                regions: s
                    .regions
                    .iter()
                    .filter(|r| r.0 < r.1)
                    .map(|&(start, end, nr_accesses, age)| RegionSnapshot {
                        range: AddrRange::new(start, end),
                        nr_accesses,
                        age,
                    })
                    .collect(),
            });
        }
    }
    for key in order {
        if let Some(t) = targets.remove(&key) {
            rec.targets.push(t);
        }
    }
    Ok(rec)
}

fn target_entry<'a>(
    targets: &'a mut BTreeMap<(String, String, u32), TargetRecord>,
    order: &mut Vec<(String, String, u32)>,
    key: &(String, String, u32),
) -> &'a mut TargetRecord {
    if !targets.contains_key(key) {
        order.push(key.clone());
    }
    targets.entry(key.clone()).or_insert_with(|| TargetRecord {
        engine: key.0.clone(),
        task: key.1.clone(),
        pid: key.2,
        aggr_interval_us: 0,
        snapshots: Vec::new(),
        mappings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RecordLine {
        RecordLine::Header(RecordHeader {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            project: "p".into(),
            etmemd_version: "0".into(),
            host: "h".into(),
            kernel: "k".into(),
            started_unix_ms: 1,
            targets: vec![],
        })
    }

    fn snap(time_us: u64, pid: u32) -> RecordLine {
        RecordLine::Snapshot(SnapshotLine {
            at_ms: time_us / 1000,
            engine: "region".into(),
            task: "wl".into(),
            pid,
            time_us,
            aggr_interval_us: 100_000,
            max_nr_accesses: 20,
            regions: vec![(0x1000, 0x3000, 5, 1), (0x3000, 0x9000, 0, 7)],
        })
    }

    fn write(lines: &[RecordLine], tail: &str) -> tempfile::NamedTempFile {
        let mut text = String::new();
        for l in lines {
            text.push_str(&serde_json::to_string(l).expect("serialize"));
            text.push('\n');
        }
        text.push_str(tail);
        let f = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(f.path(), text).expect("write");
        f
    }

    #[test]
    fn lines_round_trip_into_targets() {
        let maps = RecordLine::Mappings(MappingsLine {
            at_ms: 0,
            engine: "region".into(),
            task: "wl".into(),
            pid: 7,
            ranges: vec![(0x1000, 0x2000), (0x2000, 0x4000), (0x8000, 0x9000)],
        });
        let f = write(&[header(), maps, snap(1_100_000, 7), snap(1_200_000, 7), snap(1_200_000, 8)], "");
        let rec = read_file(f.path()).expect("read");
        assert_eq!(rec.targets.len(), 2);
        let t = &rec.targets[0];
        assert_eq!((t.pid, t.snapshots.len()), (7, 2));
        assert_eq!((t.snapshots[0].start_us, t.snapshots[0].end_us), (1_000_000, 1_100_000));
        assert_eq!((t.snapshots[1].start_us, t.snapshots[1].end_us), (1_100_000, 1_200_000));
        assert_eq!(t.mappings, vec![AddrRange::new(0x1000, 0x4000), AddrRange::new(0x8000, 0x9000)]);
        assert_eq!(rec.busiest().map(|t| t.pid), Some(7));
    }

    #[test]
    fn wall_times_follow_publication_and_break_at_gaps() {
        let line = |at_ms: u64| SnapshotLine {
            at_ms,
            engine: "e".into(),
            task: "t".into(),
            pid: 1,
            time_us: 0,
            aggr_interval_us: 100_000,
            max_nr_accesses: 20,
            regions: vec![],
        };
        // A slow engine (250 ms apart for a 100 ms interval, then a 3 s
        // stall), then a gap of 10 s.
        let t = wall_times(&[line(50), line(300), line(3300), line(13_300)]);
        assert_eq!(t, vec![(0, 50_000), (50_000, 300_000), (300_000, 3_300_000), (13_200_000, 13_300_000)]);
    }

    #[test]
    fn truncated_last_line_and_unknown_types_are_tolerated() {
        let f =
            write(&[header(), snap(100_000, 1)], "{\"type\":\"future_thing\"}\n{\"type\":\"snapshot\",\"at_");
        let rec = read_file(f.path()).expect("read");
        assert_eq!(rec.targets[0].snapshots.len(), 1);
    }

    #[test]
    fn damo_records_read_plain_and_compressed() {
        let line = SnapshotLine {
            at_ms: 500,
            engine: "region".into(),
            task: "wl".into(),
            pid: 3,
            time_us: 0,
            aggr_interval_us: 100_000,
            max_nr_accesses: 20,
            regions: vec![(0x1000, 0x2000, 4, 2)],
        };
        let mut plain = Vec::new();
        damo::write(&mut plain, std::slice::from_ref(&line)).expect("write");
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut z, &plain).expect("compress");
        for bytes in [plain.clone(), z.finish().expect("finish")] {
            let f = tempfile::NamedTempFile::new().expect("temp");
            std::fs::write(f.path(), bytes).expect("write");
            let rec = read_file(f.path()).expect("read");
            assert_eq!(rec.source_format, "damo-json");
            assert_eq!(rec.targets[0].pid, 3);
            assert_eq!(rec.targets[0].snapshots[0].regions[0].nr_accesses, 4);
        }
    }

    #[test]
    fn garbage_and_empty_records_are_refused() {
        let f = write(&[], "hello\n");
        assert!(matches!(read_file(f.path()), Err(ReadRecordError::Unknown { .. })));
        let f = write(&[header()], "");
        assert!(matches!(read_file(f.path()), Err(ReadRecordError::Empty { .. })));
        let f = write(&[header(), snap(1, 1)], "");
        std::fs::write(f.path(), "{\"type\":\"snapshot\"}\n{\"type\":\"header\"}\n").expect("write");
        assert!(read_file(f.path()).is_err());
    }
}
