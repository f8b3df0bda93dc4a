//! Shared helpers of the ops tests: fixture paths, hex streams, and the
//! text layout that stands for a target's pagemap and the host's kpageflags
//! (built into binary files in a temporary directory).
#![allow(dead_code)] // each test file uses a different part

use damon_core::ops::kpageflags::{KPF_ANON, KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL, KPF_LRU, KPF_THP};
use damon_core::ops::pagemap::{PM_MMAP_EXCLUSIVE, PM_PRESENT, PM_SOFT_DIRTY, PM_SWAPPED};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

pub fn fixture_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

pub fn read_fixture(rel: &str) -> String {
    let p = fixture_path(rel);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Bytes of a `.hex` fixture: hex pairs separated by blanks, `#` comments.
pub fn read_hex(rel: &str) -> Vec<u8> {
    read_fixture(rel)
        .lines()
        .flat_map(|l| {
            l.split('#').next().unwrap_or("").split_whitespace().map(str::to_string).collect::<Vec<_>>()
        })
        .map(|b| u8::from_str_radix(&b, 16).unwrap_or_else(|_| panic!("bad hex byte {b:?} in {rel}")))
        .collect()
}

fn num(s: &str) -> u64 {
    let s = s.trim_start_matches("0x");
    u64::from_str_radix(s, 16).unwrap_or_else(|_| panic!("bad hex number {s:?}"))
}

/// The layout of `idle_bitmap/layout.txt`.
#[derive(Debug, Default)]
pub struct Layout {
    /// PFN → kpageflags word.
    pub kpf: BTreeMap<u64, u64>,
    /// Page address → pagemap entry.
    pub map: BTreeMap<u64, u64>,
}

impl Layout {
    pub fn parse(text: &str) -> Layout {
        let mut l = Layout::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                [] => {}
                ["kpf", pfn, flags @ ..] => {
                    let mut v = 0u64;
                    for fl in flags {
                        v |= 1
                            << match *fl {
                                "lru" => KPF_LRU,
                                "anon" => KPF_ANON,
                                "thp" => KPF_THP,
                                "head" => KPF_COMPOUND_HEAD,
                                "tail" => KPF_COMPOUND_TAIL,
                                other => panic!("unknown flag {other}"),
                            };
                    }
                    l.kpf.insert(num(pfn), v);
                }
                ["folio", head, nr] => {
                    let (head, nr) = (num(head), nr.parse::<u64>().expect("decimal nr"));
                    let common = 1 << KPF_THP | 1 << KPF_LRU | 1 << KPF_ANON;
                    l.kpf.insert(head, common | 1 << KPF_COMPOUND_HEAD);
                    for p in head + 1..head + nr {
                        l.kpf.insert(p, common | 1 << KPF_COMPOUND_TAIL);
                    }
                }
                ["map", vaddr, what, rest @ ..] => {
                    let sd = if rest.contains(&"sd") { PM_SOFT_DIRTY } else { 0 };
                    let e = match *what {
                        "swapped" => PM_SWAPPED | (0x42 << 5) | sd,
                        pfn => PM_PRESENT | PM_MMAP_EXCLUSIVE | num(pfn) | sd,
                    };
                    l.map.insert(num(vaddr), e);
                }
                other => panic!("bad layout line {other:?}"),
            }
        }
        l
    }

    /// Write `pagemap`, `kpageflags`, `bitmap` (all idle bits clear) and an
    /// empty `clear_refs` into `dir`.
    pub fn write_files(&self, dir: &Path) {
        let last_page = self.map.keys().max().copied().unwrap_or(0) / 4096;
        let mut pm = vec![0u8; (last_page as usize + 2) * 8];
        for (&va, &e) in &self.map {
            let o = (va / 4096 * 8) as usize;
            pm[o..o + 8].copy_from_slice(&e.to_le_bytes());
        }
        fs::write(dir.join("pagemap"), pm).expect("write pagemap");
        // Cover whole 512-PFN blocks plus one, as the kernel's file would.
        let max_pfn = self.kpf.keys().max().copied().unwrap_or(0);
        let nr_pfns = (max_pfn / 512 + 1) * 512 + 1;
        let mut kpf = vec![0u8; nr_pfns as usize * 8];
        for (&pfn, &f) in &self.kpf {
            let o = pfn as usize * 8;
            kpf[o..o + 8].copy_from_slice(&f.to_le_bytes());
        }
        fs::write(dir.join("kpageflags"), kpf).expect("write kpageflags");
        fs::write(dir.join("bitmap"), vec![0u8; nr_pfns.div_ceil(64) as usize * 8]).expect("write bitmap");
        fs::write(dir.join("clear_refs"), b"").expect("write clear_refs");
    }
}

/// A temporary directory holding the files of `idle_bitmap/layout.txt`.
pub fn layout_dir() -> (tempfile::TempDir, Layout) {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::parse(&read_fixture("idle_bitmap/layout.txt"));
    layout.write_files(dir.path());
    (dir, layout)
}

/// Whether a swap device is on now (tests that need no swap skip then).
pub fn swap_is_on() -> bool {
    fs::read_to_string("/proc/swaps")
        .map(|s| s.lines().skip(1).any(|l| !l.trim().is_empty()))
        .unwrap_or(false)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
