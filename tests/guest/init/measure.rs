//! Range arithmetic for judging snapshots against a workload's ground truth
//! and against each other.

use damon_core::{AddrRange, Snapshot};

/// Sort and merge overlapping or touching ranges.
pub fn union(mut v: Vec<AddrRange>) -> Vec<AddrRange> {
    v.retain(|r| !r.is_empty());
    v.sort();
    let mut out: Vec<AddrRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(l) if r.start <= l.end => l.end = l.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

pub fn total(v: &[AddrRange]) -> u64 {
    v.iter().map(AddrRange::len).sum()
}

/// The intersection of two sets of ranges (each sorted and disjoint).
pub fn intersect(a: &[AddrRange], b: &[AddrRange]) -> Vec<AddrRange> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if let Some(x) = a[i].intersect(&b[j]) {
            out.push(x);
        }
        if a[i].end < b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// The parts of `snap` with at least `min_nr` accesses, inside `within`.
pub fn hot(snap: &Snapshot, min_nr: u32, within: &[AddrRange]) -> Vec<AddrRange> {
    let h = union(snap.regions.iter().filter(|r| r.nr_accesses >= min_nr).map(|r| r.range).collect());
    intersect(&h, &union(within.to_vec()))
}

/// How well `found` matches `truth`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Match {
    /// Share of the truth that was found.
    pub recall: f64,
    /// Share of what was found that is true.
    pub precision: f64,
    /// |found ∩ truth| / |found ∪ truth|.
    pub jaccard: f64,
    pub found_bytes: u64,
    pub truth_bytes: u64,
}

pub fn compare(found: &[AddrRange], truth: &[AddrRange]) -> Match {
    let (f, t) = (union(found.to_vec()), union(truth.to_vec()));
    let both = total(&intersect(&f, &t));
    let either = total(&f) + total(&t) - both;
    let ratio = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    Match {
        recall: ratio(both, total(&t)),
        precision: ratio(both, total(&f)),
        jaccard: ratio(both, either),
        found_bytes: total(&f),
        truth_bytes: total(&t),
    }
}
