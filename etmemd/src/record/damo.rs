//! damo's JSON record format (`damo record --output_type json`,
//! damo's `_damo_records.py`): a list of records, one per monitoring target,
//! each with its intervals and snapshots. We write it so damo users can load
//! our records (`damo report heatmap -i FILE`), and read it so `etmem report`
//! works on damo's records too.

use super::{Recording, SnapshotLine, SnapshotRecord, TargetRecord};
use damon_core::{AddrRange, RegionSnapshot};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;

/// DAMON's default ops update interval; our snapshots do not carry one.
const DEFAULT_OPS_UPDATE_US: u64 = 1_000_000;

/// The sampling interval that makes damo's percentages right:
/// damo computes `percent = samples * 100 / (aggr / sample)`.
fn sample_us(aggr_us: u64, max_nr_accesses: u32) -> u64 {
    if max_nr_accesses == 0 { aggr_us.max(1) } else { (aggr_us / max_nr_accesses as u64).max(1) }
}

/// Write `snapshots` as damo's JSON record list: one record per process,
/// `context_idx` numbering the tasks, `target_id` the pid.
pub fn write(out: &mut impl Write, snapshots: &[SnapshotLine]) -> std::io::Result<()> {
    let mut tasks: Vec<(String, String)> = Vec::new();
    let mut order: Vec<(String, String, u32)> = Vec::new();
    let mut by_target: BTreeMap<(String, String, u32), Vec<&SnapshotLine>> = BTreeMap::new();
    let mut sorted: Vec<&SnapshotLine> = snapshots.iter().collect();
    sorted.sort_by_key(|s| s.at_ms);
    for s in sorted {
        let task = (s.engine.clone(), s.task.clone());
        if !tasks.contains(&task) {
            tasks.push(task);
        }
        let key = (s.engine.clone(), s.task.clone(), s.pid);
        if !by_target.contains_key(&key) {
            order.push(key.clone());
        }
        by_target.entry(key).or_default().push(s);
    }
    let mut records = Vec::new();
    for key in order {
        let snaps = &by_target[&key];
        let Some(first) = snaps.first() else { continue };
        let ctx = tasks.iter().position(|t| t.0 == key.0 && t.1 == key.1).unwrap_or(0);
        let aggr_us = first.aggr_interval_us;
        let sample = sample_us(aggr_us, first.max_nr_accesses);
        let owned: Vec<SnapshotLine> = snaps.iter().map(|s| (*s).clone()).collect();
        let times = super::wall_times(&owned);
        let snapshots: Vec<Value> = snaps
            .iter()
            .zip(times)
            .map(|(s, (start_us, end_us))| {
                let max = s.max_nr_accesses.max(1) as u64;
                let regions: Vec<Value> = s
                    .regions
                    .iter()
                    .map(|&(start, end, nr, age)| {
                        json!({
                            "start": start,
                            "end": end,
                            "nr_accesses": {"samples": nr, "percent": nr as u64 * 100 / max},
                            "age": {"usec": age as u64 * s.aggr_interval_us, "aggr_intervals": age},
                            "sz_filter_passed": 0,
                        })
                    })
                    .collect();
                let total: u64 = s.regions.iter().map(|r| r.1.saturating_sub(r.0)).sum();
                json!({
                    "start_time": start_us * 1000,
                    "end_time": end_us * 1000,
                    "regions": regions,
                    "total_bytes": total,
                })
            })
            .collect();
        records.push(json!({
            "kdamond_idx": 0,
            "context_idx": ctx,
            "intervals": {"sample_us": sample, "aggr_us": aggr_us, "ops_update_us": DEFAULT_OPS_UPDATE_US},
            "scheme_idx": null,
            "target_id": key.2,
            "scheme_filters": [],
            "snapshots": snapshots,
        }));
    }
    serde_json::to_writer_pretty(&mut *out, &Value::Array(records)).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}

fn num(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn invalid(what: &str) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(what)
}

/// Read damo's JSON record list.
pub fn read(text: &[u8]) -> Result<Recording, serde_json::Error> {
    let records: Vec<Value> = serde_json::from_slice(text)?;
    let mut rec = Recording { source_format: "damo-json".into(), ..Recording::default() };
    let mut base_ns: Option<u64> = None;
    for r in &records {
        for s in r["snapshots"].as_array().into_iter().flatten() {
            if let Some(t) = num(&s["start_time"]).or_else(|| num(&s["end_time"])) {
                base_ns = Some(base_ns.map_or(t, |b| b.min(t)));
            }
        }
    }
    let base_ns = base_ns.unwrap_or(0);
    for r in &records {
        let aggr_us = num(&r["intervals"]["aggr_us"]).unwrap_or(100_000);
        let sample_us = num(&r["intervals"]["sample_us"]).unwrap_or(5_000).max(1);
        let max_nr = u32::try_from((aggr_us / sample_us).max(1)).unwrap_or(u32::MAX);
        let target_id = num(&r["target_id"]).unwrap_or(0);
        let ctx = num(&r["context_idx"]).unwrap_or(0);
        let mut t = TargetRecord {
            engine: "damon".into(),
            task: format!("context{ctx}"),
            pid: u32::try_from(target_id).unwrap_or(u32::MAX),
            aggr_interval_us: aggr_us,
            snapshots: Vec::new(),
            mappings: Vec::new(),
        };
        let snaps = r["snapshots"].as_array().ok_or_else(|| invalid("a record without snapshots"))?;
        for s in snaps {
            let end_ns = num(&s["end_time"]).ok_or_else(|| invalid("a snapshot without end_time"))?;
            let start_ns = num(&s["start_time"]).unwrap_or(end_ns.saturating_sub(aggr_us * 1000));
            let mut regions = Vec::new();
            for reg in s["regions"].as_array().into_iter().flatten() {
                let (Some(start), Some(end)) = (num(&reg["start"]), num(&reg["end"])) else {
                    return Err(invalid("a region without start/end"));
                };
                if start >= end {
                    continue;
                }
                let nr = num(&reg["nr_accesses"]["samples"])
                    .or_else(|| num(&reg["nr_accesses"]["percent"]).map(|p| p * max_nr as u64 / 100))
                    .unwrap_or(0);
                let age = num(&reg["age"]["aggr_intervals"])
                    .or_else(|| num(&reg["age"]["usec"]).map(|u| u / aggr_us.max(1)))
                    .unwrap_or(0);
                regions.push(RegionSnapshot {
                    range: AddrRange::new(start, end),
                    nr_accesses: u32::try_from(nr).unwrap_or(u32::MAX),
                    age: u32::try_from(age).unwrap_or(u32::MAX),
                });
            }
            regions.sort_by_key(|r| r.range.start);
            t.snapshots.push(SnapshotRecord {
                start_us: start_ns.saturating_sub(base_ns) / 1000,
                end_us: end_ns.saturating_sub(base_ns) / 1000,
                max_nr_accesses: max_nr,
                regions,
            });
        }
        t.snapshots.sort_by_key(|s| s.end_us);
        rec.targets.push(t);
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(pid: u32, time_us: u64) -> SnapshotLine {
        SnapshotLine {
            at_ms: time_us / 1000,
            engine: "region".into(),
            task: "wl".into(),
            pid,
            time_us,
            aggr_interval_us: 100_000,
            max_nr_accesses: 20,
            regions: vec![(0x1000, 0x5000, 10, 3), (0x5000, 0x9000, 0, 12)],
        }
    }

    #[test]
    fn damo_json_has_damo_keys_and_reads_back() {
        let mut out = Vec::new();
        write(&mut out, &[line(7, 200_000), line(7, 300_000), line(9, 300_000)]).expect("write");
        let v: Value = serde_json::from_slice(&out).expect("json");
        let recs = v.as_array().expect("list");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0]["target_id"], 7);
        assert_eq!(recs[0]["intervals"]["sample_us"], 5000);
        let r = &recs[0]["snapshots"][0]["regions"][0];
        assert_eq!(r["nr_accesses"]["percent"], 50);
        assert_eq!(r["age"]["usec"], 300_000);
        assert_eq!(recs[0]["snapshots"][0]["start_time"], 100_000_000u64);
        assert_eq!(recs[0]["snapshots"][0]["total_bytes"], 0x8000);

        let rec = read(&out).expect("read back");
        assert_eq!(rec.targets.len(), 2);
        let t = &rec.targets[0];
        assert_eq!((t.pid, t.snapshots.len(), t.aggr_interval_us), (7, 2, 100_000));
        assert_eq!((t.snapshots[0].start_us, t.snapshots[0].end_us), (0, 100_000));
        assert_eq!(t.snapshots[0].max_nr_accesses, 20);
        assert_eq!(t.snapshots[0].regions[0].nr_accesses, 10);
        assert_eq!(t.snapshots[0].regions[1].age, 12);
    }

    #[test]
    fn damo_percent_only_regions_are_converted() {
        let text = br#"[{"intervals":{"sample_us":5000,"aggr_us":100000,"ops_update_us":1000000},
            "target_id":0,"snapshots":[{"start_time":0,"end_time":100000000,
            "regions":[{"start":4096,"end":8192,"nr_accesses":{"samples":null,"percent":50},
            "age":{"usec":200000,"aggr_intervals":null}}]}]}]"#;
        let rec = read(text).expect("read");
        let r = &rec.targets[0].snapshots[0].regions[0];
        assert_eq!((r.nr_accesses, r.age), (10, 2));
    }
}
