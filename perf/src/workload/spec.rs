//! What a workload is: memory regions and phases of weighted access patterns
//! (masim's model), validated before any memory is mapped. Pure data, no I/O.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use thiserror::Error;

/// Default stride of sequential patterns: one cache line.
pub const DEFAULT_STRIDE_BYTES: u64 = 64;
/// Default hot share of the `--size/--hot` shortcut.
pub const DEFAULT_HOT_SHARE: f64 = 0.1;
/// Name of the hot region the shortcut creates.
pub const HOT_REGION: &str = "hot";
/// Name of the cold region the shortcut creates.
pub const COLD_REGION: &str = "cold";
/// Name of the single phase the shortcut creates.
pub const SHORTCUT_PHASE: &str = "run";

/// A whole workload: regions to map and phases to run over them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Memory regions, each mapped separately (its own VMA), in this order.
    pub regions: Vec<RegionSpec>,
    /// Phases, run one after the other.
    pub phases: Vec<PhaseSpec>,
    /// Start again at the first phase after the last one ended (masim `--repeat`).
    #[serde(default)]
    pub repeat: bool,
}

/// One memory region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    /// Unique name, used by patterns and reported in the ground truth.
    pub name: String,
    /// Size; rounded up to whole pages when mapped.
    pub size_bytes: u64,
    /// Transparent huge page hint given with madvise() right after mapping.
    #[serde(default)]
    pub thp: ThpHint,
    /// Fill only the first page of every `fill_stride_bytes` (a multiple of
    /// the page size); the pages between are never touched by the fill and
    /// read zero. `None`: fill every page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_stride_bytes: Option<u64>,
}

/// Transparent huge page hint for a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThpHint {
    /// No madvise(): the system-wide THP mode decides.
    #[default]
    None,
    /// madvise(MADV_HUGEPAGE): huge pages even in THP `madvise` mode.
    Hugepage,
    /// madvise(MADV_NOHUGEPAGE): never huge pages, not even by collapse.
    Nohugepage,
}

impl ThpHint {
    pub fn as_str(self) -> &'static str {
        match self {
            ThpHint::None => "none",
            ThpHint::Hugepage => "hugepage",
            ThpHint::Nohugepage => "nohugepage",
        }
    }
}

impl fmt::Display for ThpHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One phase: for `duration_ms`, pick a pattern by weight and run one batch of it, again and again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    /// Name, reported in stats and the ground truth.
    pub name: String,
    /// How long the phase runs (time spent paused does not count); `None`: forever.
    pub duration_ms: Option<u64>,
    /// Access patterns; an empty list makes an idle phase.
    #[serde(default)]
    pub patterns: Vec<PatternSpec>,
}

/// One access pattern over one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternSpec {
    /// Name of the region accessed.
    pub region: String,
    /// Uniformly random 8-byte words (true) or a sequential walk (false).
    pub random: bool,
    /// Step of the sequential walk; ignored by random patterns, as in masim.
    #[serde(default = "default_stride")]
    pub stride_bytes: u64,
    /// Relative weight: the chance this pattern runs the next batch is weight / phase total.
    pub weight: u32,
    /// Reads, writes or a mix.
    #[serde(default)]
    pub rw: RwMode,
}

fn default_stride() -> u64 {
    DEFAULT_STRIDE_BYTES
}

/// What an access does. Writes always store the word's expected value, so the
/// memory stays verifiable (masim's `rw` increments the byte instead).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RwMode {
    /// Loads only (masim `ro`).
    #[default]
    Ro,
    /// Stores only (masim `wo`, masim's default).
    Wo,
    /// A load then a store of the same word (masim `rw`).
    Rw,
    /// Each access is a store with this probability, a load otherwise.
    Mix(f64),
}

impl RwMode {
    /// The share of accesses that store.
    pub fn write_ratio(self) -> f64 {
        match self {
            RwMode::Ro => 0.0,
            RwMode::Wo | RwMode::Rw => 1.0,
            RwMode::Mix(r) => r,
        }
    }

    /// The mode for a write ratio: `Ro` at 0, `Wo` at 1, `Mix` between.
    pub fn from_write_ratio(ratio: f64) -> RwMode {
        if ratio <= 0.0 {
            RwMode::Ro
        } else if ratio >= 1.0 {
            RwMode::Wo
        } else {
            RwMode::Mix(ratio)
        }
    }
}

/// One problem found by [`WorkloadSpec::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{path}: {message}")]
pub struct SpecProblem {
    /// Where: `regions[2].size_bytes`, `phases[1].patterns[0].region`, ...
    pub path: String,
    pub message: String,
}

/// Every problem of an invalid [`WorkloadSpec`], not only the first.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid workload: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct SpecError {
    pub problems: Vec<SpecProblem>,
}

impl WorkloadSpec {
    /// Checks names, sizes, references and weights; returns every problem found.
    pub fn validate(&self) -> Result<(), SpecError> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| problems.push(SpecProblem { path, message });
        if self.regions.is_empty() {
            problem("regions".into(), "at least one region is needed".into());
        }
        let mut names = HashSet::new();
        for (i, r) in self.regions.iter().enumerate() {
            if r.name.is_empty() || r.name.contains(',') || r.name.trim() != r.name {
                problem(
                    format!("regions[{i}].name"),
                    format!("'{}' is not a valid name (non-empty, no comma, no outer spaces)", r.name),
                );
            }
            if !names.insert(r.name.as_str()) {
                problem(format!("regions[{i}].name"), format!("region '{}' is defined twice", r.name));
            }
            if r.size_bytes == 0 {
                problem(format!("regions[{i}].size_bytes"), "size must be above 0".into());
            }
            if r.fill_stride_bytes == Some(0) {
                problem(format!("regions[{i}].fill_stride_bytes"), "a fill stride must be above 0".into());
            }
            // The mapping reserves size + 2 MiB of address space: keep far below 2^47.
            if r.size_bytes > 1 << 44 {
                problem(format!("regions[{i}].size_bytes"), format!("{} bytes is too large", r.size_bytes));
            }
        }
        if self.phases.is_empty() {
            problem("phases".into(), "at least one phase is needed".into());
        }
        for (i, p) in self.phases.iter().enumerate() {
            if p.duration_ms.is_none() && i + 1 != self.phases.len() {
                problem(
                    format!("phases[{i}].duration_ms"),
                    format!("phase '{}' runs forever but is not the last phase", p.name),
                );
            }
            let mut total_weight = 0u64;
            for (j, pat) in p.patterns.iter().enumerate() {
                let path = format!("phases[{i}].patterns[{j}]");
                if !names.contains(pat.region.as_str()) {
                    problem(format!("{path}.region"), format!("no region named '{}'", pat.region));
                }
                if !pat.random && pat.stride_bytes == 0 {
                    problem(
                        format!("{path}.stride_bytes"),
                        "a sequential pattern needs a stride above 0".into(),
                    );
                }
                match pat.rw {
                    RwMode::Mix(r) if !(0.0..=1.0).contains(&r) => {
                        problem(format!("{path}.rw"), format!("write ratio {r} is not between 0 and 1"));
                    }
                    _ => {}
                }
                total_weight += u64::from(pat.weight);
            }
            if !p.patterns.is_empty() && total_weight == 0 {
                problem(format!("phases[{i}].patterns"), "the weights add up to 0".into());
            }
        }
        if self.repeat && self.phases.iter().all(|p| p.duration_ms == Some(0)) {
            problem("repeat".into(), "repeating phases that all last 0 ms would spin".into());
        }
        if problems.is_empty() { Ok(()) } else { Err(SpecError { problems }) }
    }

    /// Checks what depends on the page size: every fill stride is a multiple of it.
    pub fn validate_for_page_size(&self, page_size: u64) -> Result<(), SpecError> {
        let problems: Vec<SpecProblem> = self
            .regions
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let stride = r.fill_stride_bytes?;
                (stride % page_size.max(1) != 0).then(|| SpecProblem {
                    path: format!("regions[{i}].fill_stride_bytes"),
                    message: format!("{stride} is not a multiple of the page size ({page_size})"),
                })
            })
            .collect();
        if problems.is_empty() { Ok(()) } else { Err(SpecError { problems }) }
    }

    /// Index of a region by name.
    pub fn region_index(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.name == name)
    }

    /// Names of the regions a phase accesses (patterns with a weight above 0), in region order.
    pub fn hot_regions(&self, phase_index: usize) -> Vec<&str> {
        let Some(phase) = self.phases.get(phase_index) else { return Vec::new() };
        self.regions
            .iter()
            .filter(|r| phase.patterns.iter().any(|p| p.weight > 0 && p.region == r.name))
            .map(|r| r.name.as_str())
            .collect()
    }
}

/// How big the hot region of the shortcut is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HotSize {
    /// A share of the total size, 0..=1.
    Share(f64),
    /// A number of bytes.
    Bytes(u64),
}

/// The common case as one struct: `--size 1G --hot 10%` is one hot region
/// accessed all the time and one cold region touched only when filled.
#[derive(Debug, Clone, PartialEq)]
pub struct HotColdConfig {
    /// Hot plus cold.
    pub size_bytes: u64,
    pub hot: HotSize,
    /// Random (true) or sequential access to the hot region.
    pub hot_random: bool,
    /// Stride of sequential access.
    pub stride_bytes: u64,
    /// Share of accesses that store.
    pub write_ratio: f64,
    /// `None`: forever.
    pub duration_ms: Option<u64>,
    /// Hint for both regions.
    pub thp: ThpHint,
    /// Fill only one page of every this many bytes of the cold region
    /// (`--cold-fill-stride`): memory that is mapped but barely used.
    pub cold_fill_stride_bytes: Option<u64>,
}

impl Default for HotColdConfig {
    fn default() -> Self {
        HotColdConfig {
            size_bytes: 64 << 20,
            hot: HotSize::Share(DEFAULT_HOT_SHARE),
            hot_random: true,
            stride_bytes: DEFAULT_STRIDE_BYTES,
            write_ratio: 0.0,
            duration_ms: None,
            thp: ThpHint::None,
            cold_fill_stride_bytes: None,
        }
    }
}

impl HotColdConfig {
    /// The workload: region `hot` (the hot share, rounded up to whole pages)
    /// then region `cold` (the rest, left out when empty), one phase `run`.
    pub fn to_spec(&self, page_size: u64) -> Result<WorkloadSpec, SpecError> {
        let page_size = page_size.max(1);
        let total = self.size_bytes.div_ceil(page_size) * page_size;
        let hot_raw = match self.hot {
            HotSize::Share(s) => (self.size_bytes as f64 * s).round() as u64,
            HotSize::Bytes(b) => b,
        };
        let hot = hot_raw.div_ceil(page_size) * page_size;
        let mut problems = Vec::new();
        if hot == 0 {
            problems.push(SpecProblem { path: "hot".into(), message: "the hot set is empty".into() });
        }
        if hot > total {
            problems.push(SpecProblem {
                path: "hot".into(),
                message: format!("the hot set ({hot} bytes) is larger than the size ({total} bytes)"),
            });
        }
        if !(0.0..=1.0).contains(&self.write_ratio) {
            problems.push(SpecProblem {
                path: "write_ratio".into(),
                message: format!("{} is not between 0 and 1", self.write_ratio),
            });
        }
        if !problems.is_empty() {
            return Err(SpecError { problems });
        }
        let mut regions = vec![RegionSpec {
            name: HOT_REGION.into(),
            size_bytes: hot,
            thp: self.thp,
            fill_stride_bytes: None,
        }];
        if total > hot {
            regions.push(RegionSpec {
                name: COLD_REGION.into(),
                size_bytes: total - hot,
                thp: self.thp,
                fill_stride_bytes: self.cold_fill_stride_bytes,
            });
        }
        let spec = WorkloadSpec {
            regions,
            phases: vec![PhaseSpec {
                name: SHORTCUT_PHASE.into(),
                duration_ms: self.duration_ms,
                patterns: vec![PatternSpec {
                    region: HOT_REGION.into(),
                    random: self.hot_random,
                    stride_bytes: self.stride_bytes,
                    weight: 1,
                    rw: RwMode::from_write_ratio(self.write_ratio),
                }],
            }],
            repeat: false,
        };
        spec.validate()?;
        spec.validate_for_page_size(page_size)?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(region: &str, weight: u32) -> PatternSpec {
        PatternSpec { region: region.into(), random: true, stride_bytes: 64, weight, rw: RwMode::Ro }
    }

    #[test]
    fn shortcut_splits_hot_and_cold() {
        let cfg = HotColdConfig { size_bytes: 16 << 20, hot: HotSize::Share(0.1), ..Default::default() };
        let spec = cfg.to_spec(4096).expect("valid");
        assert_eq!(spec.regions.len(), 2);
        // 10 % of 16 MiB is 1677721.6 bytes, rounded up to 410 pages.
        assert_eq!(spec.regions[0].size_bytes, 410 * 4096);
        assert_eq!(spec.regions[0].size_bytes + spec.regions[1].size_bytes, 16 << 20);
        assert_eq!(spec.hot_regions(0), vec!["hot"]);
    }

    #[test]
    fn shortcut_all_hot_has_no_cold_region() {
        let cfg = HotColdConfig { size_bytes: 1 << 20, hot: HotSize::Share(1.0), ..Default::default() };
        let spec = cfg.to_spec(4096).expect("valid");
        assert_eq!(spec.regions.len(), 1);
    }

    #[test]
    fn shortcut_rejects_hot_larger_than_size() {
        let cfg = HotColdConfig { size_bytes: 1 << 20, hot: HotSize::Bytes(2 << 20), ..Default::default() };
        assert!(cfg.to_spec(4096).is_err());
    }

    #[test]
    fn validate_reports_every_problem() {
        let spec = WorkloadSpec {
            regions: vec![
                RegionSpec { name: "a".into(), size_bytes: 0, thp: ThpHint::None, fill_stride_bytes: None },
                RegionSpec {
                    name: "a".into(),
                    size_bytes: 4096,
                    thp: ThpHint::None,
                    fill_stride_bytes: Some(0),
                },
            ],
            phases: vec![
                PhaseSpec { name: "p0".into(), duration_ms: None, patterns: vec![pattern("zz", 1)] },
                PhaseSpec { name: "p1".into(), duration_ms: Some(5), patterns: vec![pattern("a", 0)] },
            ],
            repeat: false,
        };
        let err = spec.validate().expect_err("invalid");
        let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "regions[0].size_bytes",
                "regions[1].name",
                "regions[1].fill_stride_bytes",
                "phases[0].duration_ms",
                "phases[0].patterns[0].region",
                "phases[1].patterns"
            ]
        );
    }

    #[test]
    fn cold_fill_stride_makes_the_cold_region_sparse() {
        let cfg = HotColdConfig {
            size_bytes: 16 << 20,
            cold_fill_stride_bytes: Some(64 << 10),
            ..Default::default()
        };
        let spec = cfg.to_spec(4096).expect("valid");
        assert_eq!(spec.regions[0].fill_stride_bytes, None);
        assert_eq!(spec.regions[1].fill_stride_bytes, Some(64 << 10));
        let odd = HotColdConfig { cold_fill_stride_bytes: Some(6000), ..cfg };
        let err = odd.to_spec(4096).expect_err("not a page multiple");
        assert_eq!(err.problems[0].path, "regions[1].fill_stride_bytes");
    }

    #[test]
    fn json_round_trip_and_unknown_fields() {
        let spec = HotColdConfig::default().to_spec(4096).expect("valid");
        let text = serde_json::to_string(&spec).expect("serialise");
        let back: WorkloadSpec = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, spec);
        let bad = text.replacen("\"repeat\"", "\"repeats\"", 1);
        assert!(serde_json::from_str::<WorkloadSpec>(&bad).is_err());
    }
}
