//! Property tests: random bytes, config-like text and mutations of the
//! example files never make the parsers panic (10,500 cases in all).

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::path::PathBuf;
use std::sync::OnceLock;

use conf::{Format, parse};
use proptest::prelude::*;

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

/// Parses `bytes` in both formats; the result must be consistent.
fn parse_both(bytes: &[u8]) {
    for format in [Format::Toml, Format::EtmemIni] {
        match parse("f", bytes, Some(format)) {
            Ok(o) => assert_eq!(o.format, format),
            Err(e) => {
                assert!(!e.errors.is_empty());
                let _ = e.to_string();
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, u8),
    Delete(usize),
    Replace(usize, u8),
    /// Copy the line at .0 to after line .1.
    DupLine(usize, usize),
    /// Truncate at.
    Truncate(usize),
}

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => prop::sample::select(b"[]=\"'#\n .,;%-_0123456789abcdefgkmsuxGKMT{}".to_vec()),
        1 => any::<u8>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), byte()).prop_map(|(p, b)| Mutation::Insert(p, b)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), byte()).prop_map(|(p, b)| Mutation::Replace(p, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::DupLine(a, b)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Insert(p, b) => bytes.insert(p % (bytes.len() + 1), b),
            Mutation::Delete(p) if !bytes.is_empty() => {
                bytes.remove(p % len);
            }
            Mutation::Replace(p, b) if !bytes.is_empty() => bytes[p % len] = b,
            Mutation::DupLine(a, b) => {
                let lines: Vec<&[u8]> = bytes.split(|&c| c == b'\n').collect();
                let (a, b) = (a % lines.len(), b % lines.len());
                let mut out: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
                out.insert(b + 1, lines[a].to_vec());
                bytes = out.join(&b'\n');
            }
            Mutation::Truncate(p) => bytes.truncate(p % len),
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_both(&bytes);
    }

    #[test]
    fn config_like_text_never_panics(text in "([\\[\\]=\"#\n a-z_0-9.%,;{}]|project|engine|task|scheme|backend|policy|kind|name|loop|max|min){0,80}") {
        parse_both(text.as_bytes());
        let _ = conf::scheme::parse_line(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_examples_never_panic(
        which in any::<prop::sample::Index>(),
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let ex = examples();
        let (name, bytes) = &ex[which.index(ex.len())];
        let mutated = apply(bytes.clone(), &muts);
        let _ = parse(name, &mutated, None);
        parse_both(&mutated);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn scheme_lines_never_panic(fields in prop::collection::vec(
        "(min|max|[0-9]{1,22}(\\.[0-9]{1,3})?(K|M|G|P|%|ms|s|m|d|us|samples|x)?|pageout|stat|hugepage|damo:|etmem:)", 0..9)
    ) {
        let line = fields.join(" ");
        if let Ok(s) = conf::scheme::parse_line(&line) {
            prop_assert!(conf::scheme::check_pattern(&s.pattern).is_ok());
        }
    }
}
