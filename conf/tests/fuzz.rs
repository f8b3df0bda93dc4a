//! Fuzz targets of the config parsers (issue 10, bad input): the native TOML
//! parser, etmem's INI parser, and the two scheme one-liner forms. Each runs
//! 10,000 cases (`PROPTEST_CASES` overrides; `scripts/fuzz-long` runs a
//! million) of random bytes, schema-shaped text and mutated example files,
//! and checks more than "no panic": results are consistent, the etmem
//! scheme form agrees with a model of etmem's numbers, and a hung case fails
//! the run (see `fuzz_harness`).

#![allow(clippy::unwrap_used)] // tests fail by panicking

mod fuzz_harness;

use conf::schema::{ETMEM_SECTIONS, SectionSpec, TOML_SECTIONS};
use conf::scheme::{SchemeForm, parse_line, parse_line_as};
use conf::{AccessBound, AgeBound, Format, parse};
use fuzz_harness::{apply, mutation};
use proptest::prelude::*;
use proptest::sample::Index;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Every example file: (name, bytes).
fn examples() -> &'static [(String, Vec<u8>)] {
    static EXAMPLES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    EXAMPLES.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut out = Vec::new();
        for d in [dir.clone(), dir.join("etmem")] {
            for e in std::fs::read_dir(&d).expect("examples dir").flatten() {
                if e.path().is_file() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    out.push((name, std::fs::read(e.path()).expect("read example")));
                }
            }
        }
        out.sort();
        assert!(out.len() >= 8, "examples missing: {}", out.len());
        out
    })
}

/// The example files of one format.
fn examples_of(format: Format) -> Vec<(String, Vec<u8>)> {
    examples().iter().filter(|(n, _)| conf::detect_format(n) == format).cloned().collect()
}

/// Parses `bytes` as `format`; whatever happens must be consistent: a
/// success has the asked format, a failure has at least one error and
/// every error renders.
fn check_parse(bytes: &[u8], format: Format) -> Result<(), TestCaseError> {
    match parse("fuzz", bytes, Some(format)) {
        Ok(o) => prop_assert_eq!(o.format, format),
        Err(e) => {
            prop_assert!(!e.errors.is_empty());
            prop_assert!(!e.to_string().is_empty());
        }
    }
    Ok(())
}

/// Bytes biased towards the characters configs are made of.
fn config_byte() -> impl Strategy<Value = u8> + Clone {
    prop_oneof![
        4 => prop::sample::select(b"[]=\"'#\n .,;%-_0123456789abcdefgkmsuxGKMT{}".to_vec()),
        1 => any::<u8>(),
    ]
}

fn random_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..512)
}

/// An example of `format` with one to six mutations.
fn mutated_example(format: Format) -> impl Strategy<Value = Vec<u8>> {
    let ex = examples_of(format);
    assert!(!ex.is_empty());
    (any::<Index>(), prop::collection::vec(mutation(config_byte()), 1..6))
        .prop_map(move |(which, muts)| apply(ex[which.index(ex.len())].1.clone(), &muts))
}

/// Raw choices for one value; [`value_for`] shapes them by the key's type.
#[derive(Debug, Clone)]
struct ValueSeed {
    pick: u8,
    n: u64,
    idx: Index,
    wild: String,
}

fn value_seed() -> impl Strategy<Value = ValueSeed> {
    (any::<u8>(), prop_oneof![0u64..2000, any::<u64>()], any::<Index>(), "[a-z0-9 =\"{}\\[\\],.%/-]{0,12}")
        .prop_map(|(pick, n, idx, wild)| ValueSeed { pick, n, idx, wild })
}

/// A value for a key of type `ty` (the schema's type text): mostly of the
/// right shape (a unit for sizes and durations, one of the listed words),
/// sometimes anything. `quote`: TOML strings are quoted, INI values are not.
fn value_for(ty: &str, seed: &ValueSeed, quote: bool) -> String {
    let q = |s: String| if quote { format!("\"{s}\"") } else { s };
    let pick = |v: &[&str]| v[seed.idx.index(v.len())].to_owned();
    if seed.pick.is_multiple_of(8) {
        return seed.wild.clone();
    }
    let words: Vec<&str> = ty.split('`').skip(1).step_by(2).collect();
    let n = seed.n;
    if !words.is_empty() && !seed.pick.is_multiple_of(5) {
        return q(pick(&words));
    }
    if ty.contains("bool") {
        return pick(&["true", "false"]);
    }
    if ty.contains("duration") {
        return q(format!("{n}{}", pick(&["ms", "s", "m", "h", "us", ""])));
    }
    if ty.contains("size") {
        return q(format!("{n}{}", pick(&["K", "M", "G", "", "%"])));
    }
    if ty.contains("percent") || ty.contains("access") {
        return match seed.pick % 3 {
            0 => q(format!("{}%", n % 150)),
            1 => q(pick(&["max", "min"])),
            _ => (n % 150).to_string(),
        };
    }
    if ty.contains("integer") || ty.contains("decimal") {
        return if seed.pick.is_multiple_of(3) { format!("{}.{}", n % 3, n % 10) } else { n.to_string() };
    }
    q(pick(&["test", "db", "mysqld", "region", "/tmp/etmem.swap", "system.slice", "a b", ""]))
}

/// A TOML file shaped like the schema: sections in order, each once (the
/// arrays of tables may repeat), with the keys every file needs when
/// `skeleton`, and random keys of each section with typed values.
fn toml_shaped() -> impl Strategy<Value = Vec<u8>> {
    let section = (any::<Index>(), prop::collection::vec((any::<Index>(), value_seed()), 0..6));
    (any::<bool>(), prop::collection::vec(section, 0..8))
        .prop_map(|(skeleton, sections)| render(TOML_SECTIONS, skeleton, &sections, true).into_bytes())
}

/// An etmem INI file shaped like the schema, as [`toml_shaped`].
fn ini_shaped() -> impl Strategy<Value = Vec<u8>> {
    let section = (any::<Index>(), prop::collection::vec((any::<Index>(), value_seed()), 0..8));
    (any::<bool>(), prop::collection::vec(section, 0..6))
        .prop_map(|(skeleton, sections)| render(ETMEM_SECTIONS, skeleton, &sections, false).into_bytes())
}

/// The keys a minimal file has, per section id.
fn skeleton_keys(id: &str, toml: bool) -> &'static [(&'static str, &'static str)] {
    match (id, toml) {
        ("project", true) => &[("name", "\"p\"")],
        ("engine", true) => &[("kind", "\"region\"")],
        ("task", true) => &[("name", "\"t\""), ("pid", "42")],
        ("project", false) => {
            &[("name", "test"), ("scan_type", "page"), ("loop", "1"), ("interval", "1"), ("sleep", "1")]
        }
        ("engine", false) => &[("name", "slide"), ("project", "test")],
        ("task", false) => &[
            ("project", "test"),
            ("engine", "slide"),
            ("name", "t"),
            ("type", "pid"),
            ("value", "42"),
            ("T", "1"),
        ],
        _ => &[],
    }
}

fn render(
    all: &[SectionSpec],
    skeleton: bool,
    chosen: &[(Index, Vec<(Index, ValueSeed)>)],
    toml: bool,
) -> String {
    let eq = if toml { " = " } else { "=" };
    let mut out = String::new();
    for (i, sec) in all.iter().enumerate() {
        let mut lines: Vec<(String, String)> = Vec::new();
        if skeleton {
            for (k, v) in skeleton_keys(sec.id, toml) {
                lines.push((k.to_string(), v.to_string()));
            }
        }
        for (_, keys) in chosen.iter().filter(|(s, _)| s.index(all.len()) == i) {
            for (k, seed) in keys {
                // One key in twelve is unknown, to reach the "did you mean" paths.
                let (key, ty) = match (sec.keys.is_empty(), seed.pick % 12 == 11) {
                    (false, false) => {
                        let spec = &sec.keys[k.index(sec.keys.len())];
                        (spec.key, spec.ty)
                    }
                    _ => ("nmae", "name"),
                };
                let value = value_for(ty, seed, toml);
                match lines.iter_mut().find(|(k, _)| k == key) {
                    Some(l) => l.1 = value,
                    None => lines.push((key.to_string(), value)),
                }
            }
        }
        if lines.is_empty() {
            continue;
        }
        if !sec.id.is_empty() {
            out.push_str(sec.header);
            out.push('\n');
        }
        for (k, v) in lines {
            out.push_str(&format!("{k}{eq}{v}\n"));
        }
        out.push('\n');
    }
    out
}

fn toml_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => random_bytes(),
        4 => toml_shaped(),
        3 => mutated_example(Format::Toml),
    ]
}

fn ini_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => random_bytes(),
        4 => ini_shaped(),
        3 => mutated_example(Format::EtmemIni),
    ]
}

#[test]
fn toml_parser() {
    fuzz_harness::run("toml_parser", toml_input(), |bytes| check_parse(bytes, Format::Toml));
}

#[test]
fn etmem_ini_parser() {
    fuzz_harness::run("etmem_ini_parser", ini_input(), |bytes| check_parse(bytes, Format::EtmemIni));
}

/// damo's seven fields: sizes with units, percentages, sample counts,
/// durations, `min`/`max`, actions, and some noise.
fn damo_line() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        prop::sample::select(vec![
            "min", "max", "MAX", "pageout", "stat", "hugepage", "willneed", "lru_prio"
        ])
        .prop_map(str::to_owned),
        (
            "[0-9]{1,22}(\\.[0-9]{1,3})?",
            prop::sample::select(vec![
                "", "K", "M", "G", "T", "P", "%", "ms", "s", "m", "h", "d", "us", "samples", "x", "B", "KiB",
            ])
        )
            .prop_map(|(n, u)| format!("{n}{u}")),
        "[-+a-z0-9.%:]{0,6}",
    ];
    (prop::sample::select(vec!["", "damo:", "etmem:", "  "]), prop::collection::vec(field, 0..9))
        .prop_map(|(prefix, fields)| format!("{prefix}{}", fields.join(" ")))
}

#[test]
fn damo_scheme_lines() {
    fuzz_harness::run("damo_scheme_lines", damo_line(), |line| {
        let auto = parse_line(line);
        if let Ok(s) = &auto {
            prop_assert!(
                conf::scheme::check_pattern(&s.pattern).is_ok(),
                "accepted an inverted range: {s:?}"
            );
        }
        // Stating the form is the same as detecting it when the line says
        // nothing or says the same; a line that says `etmem:` is refused as damo.
        let t = line.trim_start();
        let (says, body) = match (t.strip_prefix("damo:"), t.strip_prefix("etmem:")) {
            (Some(b), _) => (Some(SchemeForm::Damo), b),
            (_, Some(b)) => (Some(SchemeForm::Etmem), b),
            _ => (None, t),
        };
        let fields: Vec<&str> = body.split_whitespace().collect();
        let as_damo = parse_line_as(line, Some(SchemeForm::Damo));
        let detected = conf::scheme::detect_form(&fields);
        if says == Some(SchemeForm::Damo) || (says.is_none() && detected == SchemeForm::Damo) {
            prop_assert_eq!(&as_damo, &auto);
        }
        if says == Some(SchemeForm::Etmem) && fields.len() == 7 {
            prop_assert!(as_damo.is_err(), "`etmem:` line read as damo: {line:?}");
        }
        Ok(())
    });
}

/// A number as etmem configs hold them: small, at the u32/u64 edges, or any.
fn etmem_number() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..200,
        prop::sample::select(vec![
            0,
            1,
            u64::from(u32::MAX) - 1,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX
        ]),
        any::<u64>(),
    ]
}

fn etmem_action() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(conf::Action::ALL.iter().map(|a| a.as_str().to_owned()).collect::<Vec<_>>()),
        1 => "[a-z0-9_]{0,8}",
    ]
}

/// etmem's seven numbers, mostly well formed, sometimes with a field
/// replaced by junk.
#[derive(Debug, Clone)]
struct EtmemLine {
    nums: [u64; 6],
    action: String,
    /// (field index, replacement) applied to the rendered line.
    junk: Option<(usize, String)>,
}

impl EtmemLine {
    fn render(&self) -> String {
        let mut f: Vec<String> = self.nums.iter().map(u64::to_string).collect();
        f.push(self.action.clone());
        if let Some((i, j)) = &self.junk {
            f[i % 7] = j.clone();
        }
        f.join(" ")
    }
}

fn etmem_line() -> impl Strategy<Value = EtmemLine> {
    (
        prop::array::uniform6(etmem_number()),
        etmem_action(),
        prop_oneof![3 => Just(None), 1 => (0usize..7, "[-+0-9a-z.%]{0,6}").prop_map(Some)],
    )
        .prop_map(|(nums, action, junk)| EtmemLine { nums, action, junk })
}

#[test]
fn etmem_scheme_lines() {
    fuzz_harness::run("etmem_scheme_lines", etmem_line(), |l| {
        let line = l.render();
        let got = parse_line_as(&line, Some(SchemeForm::Etmem));
        let prefixed = parse_line(&format!("etmem: {line}"));
        prop_assert_eq!(&got, &prefixed);
        if l.junk.is_some() {
            return Ok(());
        }
        // The model: etmem's sizes in bytes, raw access counts (a max that
        // does not fit DAMON's u32 means "any"), ages in aggregations.
        let [min_sz, max_sz, min_acc, max_acc, min_age, max_age] = l.nums;
        let max_acc_bound = match u32::try_from(max_acc) {
            Ok(n) if n < u32::MAX => Some(n),
            _ => None,
        };
        let valid = conf::Action::from_name(&l.action).is_some()
            && min_sz <= max_sz
            && u32::try_from(min_acc).is_ok()
            && max_acc_bound.is_none_or(|m| min_acc <= u64::from(m))
            && min_age <= max_age;
        match got {
            Ok(s) => {
                prop_assert!(valid, "accepted {line:?}");
                prop_assert_eq!(s.pattern.min_size_bytes, min_sz);
                prop_assert_eq!(s.pattern.max_size_bytes, max_sz);
                prop_assert_eq!(s.pattern.min_accesses, AccessBound::Count(min_acc as u32));
                let want_max = max_acc_bound.map_or(AccessBound::Max, AccessBound::Count);
                prop_assert_eq!(s.pattern.max_accesses, want_max);
                prop_assert_eq!(s.pattern.min_age, AgeBound::Aggregations(min_age));
                prop_assert_eq!(s.pattern.max_age, AgeBound::Aggregations(max_age));
            }
            Err(e) => {
                prop_assert!(!valid, "refused {line:?}: {e}");
                prop_assert!(!e.to_string().is_empty());
            }
        }
        Ok(())
    });
}
