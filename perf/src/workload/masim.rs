//! Parser for masim's access-pattern config files (sjp38/masim), so the same
//! `stairs`/`zigzag`-style configs drive `etmem-workload`. Pure: text in, spec out.
//!
//! The format, as masim reads it:
//!
//! ```text
//! # lines starting with '#' are dropped
//! <region name>, <size bytes>            <- paragraph 1: one region per line
//! ...
//!                                        <- an empty line ends a paragraph
//! <phase name>                           <- every later paragraph is a phase
//! <duration ms>
//! <region name>, <random 1|0>, <stride bytes>, <weight>[, ro|wo|rw]
//! ...
//! ```
//!
//! Extensions (all optional, so masim's own files parse unchanged):
//! - region lines may carry more fields after the size: `hugepage` or
//!   `nohugepage` (a THP hint), `fill=64K` (fill one page of every 64 KiB,
//!   the rest stays zero), `none`, or an init-data file path (masim's
//!   newer format; the file is ignored because our content must stay checkable,
//!   and a warning says so);
//! - sizes and strides may carry units (`16M`), durations too (`5s`), and a
//!   duration may be `forever` (last phase only);
//! - the read/write field may be a write ratio between 0 and 1;
//! - several empty lines in a row count as one; a phase may have no patterns (idle).
//!
//! Read/write default: `wo` like masim, or what the caller passes.

use super::spec::{PatternSpec, PhaseSpec, RegionSpec, RwMode, ThpHint, WorkloadSpec};
use super::units::{parse_duration_ms, parse_size_bytes};
use std::fmt;
use thiserror::Error;

/// masim's default read/write mode (`--default_rw_mode`).
pub const MASIM_DEFAULT_RW: RwMode = RwMode::Wo;

/// One problem, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasimProblem {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for MasimProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Every problem found in a masim config file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid masim config: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct MasimParseError {
    pub problems: Vec<MasimProblem>,
}

/// A parsed config: the workload, and remarks about things it ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct MasimConfig {
    pub spec: WorkloadSpec,
    pub warnings: Vec<String>,
}

/// Parses a masim config file's text. Patterns without a read/write field get `default_rw`.
pub fn parse_masim(text: &str, default_rw: RwMode) -> Result<MasimConfig, MasimParseError> {
    let paragraphs = paragraphs(text);
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut problem = |line: usize, message: String| problems.push(MasimProblem { line, message });

    let Some((region_lines, phase_paragraphs)) = paragraphs.split_first() else {
        problem(1, "the file holds no regions paragraph".into());
        return Err(MasimParseError { problems });
    };

    let mut regions = Vec::new();
    for &(line, text) in region_lines {
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        if fields.len() < 2 {
            problem(line, format!("expected '<name>, <size bytes>', found '{text}'"));
            continue;
        }
        let size_bytes = match parse_size_bytes(fields[1]) {
            Ok(s) => s,
            Err(e) => {
                problem(line, format!("region size: {e}"));
                continue;
            }
        };
        let mut thp = ThpHint::None;
        let mut fill_stride_bytes = None;
        for extra in &fields[2..] {
            let lower = extra.to_ascii_lowercase();
            if let Some(stride) = lower.strip_prefix("fill=") {
                match parse_size_bytes(stride) {
                    Ok(b) => fill_stride_bytes = Some(b),
                    Err(e) => problem(line, format!("fill stride: {e}")),
                }
                continue;
            }
            match lower.as_str() {
                "hugepage" | "thp" => thp = ThpHint::Hugepage,
                "nohugepage" | "nothp" => thp = ThpHint::Nohugepage,
                "none" | "" => {}
                _ => warnings.push(format!(
                    "line {line}: init data file '{extra}' ignored: the content must stay checkable"
                )),
            }
        }
        regions.push(RegionSpec { name: fields[0].to_owned(), size_bytes, thp, fill_stride_bytes });
    }

    let mut phases = Vec::new();
    if phase_paragraphs.is_empty() {
        let line = region_lines.last().map_or(1, |&(l, _)| l + 1);
        problem(line, "no phase paragraph after the regions".into());
    }
    for paragraph in phase_paragraphs {
        let (name_line, name) = paragraph[0];
        let Some(&(duration_line, duration_text)) = paragraph.get(1) else {
            problem(name_line, format!("phase '{name}' has no duration line"));
            continue;
        };
        let duration_ms = match parse_duration_ms(duration_text, 1) {
            Ok(d) => d,
            Err(e) => {
                problem(duration_line, format!("phase duration: {e}"));
                continue;
            }
        };
        let mut patterns = Vec::new();
        for &(line, text) in &paragraph[2..] {
            match parse_pattern(text, default_rw) {
                Ok(p) => {
                    if !regions.iter().any(|r: &RegionSpec| r.name == p.region) {
                        problem(line, format!("no region named '{}'", p.region));
                    }
                    patterns.push(p);
                }
                Err(message) => problem(line, message),
            }
        }
        phases.push(PhaseSpec { name: name.to_owned(), duration_ms, patterns });
    }

    if !problems.is_empty() {
        return Err(MasimParseError { problems });
    }
    let spec = WorkloadSpec { regions, phases, repeat: false };
    if let Err(e) = spec.validate() {
        // Spec paths name list positions; the line of the first paragraph is a fair anchor.
        let line = region_lines.first().map_or(1, |&(l, _)| l);
        return Err(MasimParseError {
            problems: e.problems.into_iter().map(|p| MasimProblem { line, message: p.to_string() }).collect(),
        });
    }
    Ok(MasimConfig { spec, warnings })
}

fn parse_pattern(text: &str, default_rw: RwMode) -> Result<PatternSpec, String> {
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    if fields.len() != 4 && fields.len() != 5 {
        return Err(format!(
            "expected '<region>, <random 1|0>, <stride>, <weight>[, ro|wo|rw]', found '{text}'"
        ));
    }
    let random = match fields[1].parse::<i64>() {
        Ok(v) => v != 0,
        Err(_) => return Err(format!("randomness '{}' is not an integer", fields[1])),
    };
    let stride_bytes = parse_size_bytes(fields[2]).map_err(|e| format!("stride: {e}"))?;
    let weight = fields[3].parse::<u32>().map_err(|_| format!("weight '{}' is not an integer", fields[3]))?;
    let rw = match fields.get(4) {
        None => default_rw,
        Some(m) => parse_rw(m)?,
    };
    Ok(PatternSpec { region: fields[0].to_owned(), random, stride_bytes, weight, rw })
}

/// `ro`, `wo`, `rw`, or a write ratio between 0 and 1.
pub fn parse_rw(text: &str) -> Result<RwMode, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "ro" => Ok(RwMode::Ro),
        "wo" => Ok(RwMode::Wo),
        "rw" => Ok(RwMode::Rw),
        other => match other.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(RwMode::from_write_ratio(r)),
            _ => Err(format!("read/write mode '{text}' is not ro, wo, rw or a ratio between 0 and 1")),
        },
    }
}

/// Non-comment lines grouped into paragraphs, each line with its 1-based number.
fn paragraphs(text: &str) -> Vec<Vec<(usize, &str)>> {
    let mut out: Vec<Vec<(usize, &str)>> = Vec::new();
    let mut current = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') {
            // masim drops comment lines entirely: they do not end a paragraph.
            continue;
        }
        if line.is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        current.push((i + 1, line));
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_regions_two_phases() {
        let text = "# regions\na, 8192, fill=4K\nb, 4096, hugepage\n\n# phases\nfirst\n100\na, 1, 64, 3\nb, 0, 4096, 1, ro\n\nidle\nforever\n";
        let cfg = parse_masim(text, MASIM_DEFAULT_RW).expect("valid");
        let spec = cfg.spec;
        assert_eq!(spec.regions[1].thp, ThpHint::Hugepage);
        assert_eq!(
            (spec.regions[0].fill_stride_bytes, spec.regions[1].fill_stride_bytes),
            (Some(4096), None)
        );
        assert_eq!(spec.phases.len(), 2);
        assert_eq!(spec.phases[0].duration_ms, Some(100));
        assert_eq!(spec.phases[0].patterns[0].rw, RwMode::Wo);
        assert_eq!(spec.phases[0].patterns[1].rw, RwMode::Ro);
        assert!(spec.phases[0].patterns[0].random);
        assert!(!spec.phases[0].patterns[1].random);
        assert_eq!(spec.phases[1].duration_ms, None);
        assert!(spec.phases[1].patterns.is_empty());
    }

    #[test]
    fn problems_carry_line_numbers() {
        let text = "a, 4096\nb, lots\n\np\n10\nc, 1, 64, 1\na, x, 64, 1\na, 1, 64, 1, sometimes\n";
        let err = parse_masim(text, MASIM_DEFAULT_RW).expect_err("invalid");
        let lines: Vec<usize> = err.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![2, 6, 7, 8], "{err}");
    }

    #[test]
    fn init_file_is_ignored_with_a_warning() {
        let cfg = parse_masim("a, 4096, /tmp/data\n\np\n10\na, 1, 64, 1\n", MASIM_DEFAULT_RW).expect("valid");
        assert_eq!(cfg.warnings.len(), 1);
    }

    #[test]
    fn regions_only_is_an_error() {
        assert!(parse_masim("a, 4096\n", MASIM_DEFAULT_RW).is_err());
        assert!(parse_masim("", MASIM_DEFAULT_RW).is_err());
    }
}
