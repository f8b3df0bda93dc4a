//! `docs/config.md` is generated from the schema; this test fails when it is stale.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::path::PathBuf;

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md")
}

#[test]
fn config_md_is_current() {
    let want = conf::docs::render();
    let path = doc_path();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).expect("write docs/config.md");
        println!("wrote {}", path.display());
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/config.md is stale (or missing): regenerate it with\n\n    \
         UPDATE_DOCS=1 cargo test -p conf --test docs\n\nand commit the result"
    );
}

#[test]
fn every_key_is_documented() {
    let doc = conf::docs::render();
    for s in conf::schema::TOML_SECTIONS.iter().chain(conf::schema::ETMEM_SECTIONS) {
        assert!(doc.contains(&format!("### {}", s.header)), "{} missing", s.header);
        for k in s.keys {
            assert!(doc.contains(&format!("| `{}` |", k.key)), "{}.{} missing", s.id, k.key);
        }
    }
}
