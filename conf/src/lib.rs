//! etmem-rs configuration: the native TOML schema, etmem's INI files, the
//! DAMOS scheme one-liners, and validation that reports every error at once.
//!
//! Entry points: [`parse`] turns a config file's bytes into [`Objects`];
//! [`scheme::parse_line`] reads one scheme line; [`docs::render`] writes
//! `docs/config.md`. This crate does no I/O: the daemon reads files (and
//! checks their owner, mode and symlinks) and hands the bytes over.

// Tests may unwrap: a panic is how they fail (STYLE.md: no unwrap outside tests).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod checks;
pub mod docs;
pub mod errors;
mod etmem;
pub mod model;
mod native;
pub mod schema;
pub mod scheme;
pub mod units;

pub use errors::{ConfigError, ConfigErrors};
pub use model::*;

use errors::Diag;

/// The format a file name suggests: `*.toml` is the native format, anything
/// else (`*.conf`, `*.config`, `*.yaml`, as etmem's files are named) etmem's INI.
pub fn detect_format(file_name: &str) -> Format {
    let lower = file_name.to_ascii_lowercase();
    if lower.ends_with(".toml") { Format::Toml } else { Format::EtmemIni }
}

/// Parses one config file.
///
/// `file_name` names the file in messages and, when `format` is `None`,
/// selects the format ([`detect_format`]). Inputs over 10 MiB, non-UTF-8
/// or binary data are refused before parsing. On failure every error found
/// is returned, each with file, line and key; when the file looks like the
/// other format, a first error (line 0) says so.
pub fn parse(file_name: &str, bytes: &[u8], format: Option<Format>) -> Result<Objects, ConfigErrors> {
    let text = match check_text(file_name, bytes) {
        Ok(t) => t,
        Err(e) => return Err(ConfigErrors { errors: vec![e] }),
    };
    let format = format.unwrap_or_else(|| detect_format(file_name));
    let mut d = Diag::new(file_name, text);
    let objects = match format {
        Format::Toml => native::parse(text, &mut d),
        Format::EtmemIni => etmem::parse(text, &mut d),
    };
    if objects.is_none() {
        let other = match format {
            Format::Toml if looks_like_etmem(text) => {
                Some("an etmem INI file (they are read when the name does not end in .toml)")
            }
            Format::EtmemIni if looks_like_toml(text) => {
                Some("a native TOML config (those are read when the name ends in .toml)")
            }
            _ => None,
        };
        if let Some(other) = other {
            d.at_line(
                0,
                "",
                format!(
                    "read as {} but this looks like {other}; rename the file or give the format explicitly",
                    match format {
                        Format::Toml => "native TOML",
                        Format::EtmemIni => "etmem INI",
                    }
                ),
            );
        }
    }
    d.finish(objects)
}

/// Size, UTF-8 and binary-data checks; the text without a byte-order mark.
fn check_text<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, ConfigError> {
    let err = |line: usize, message: String| ConfigError {
        file: file.to_owned(),
        line,
        key: String::new(),
        message,
    };
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(err(0, format!("{} bytes is larger than the 10 MiB a config may have", bytes.len())));
    }
    let line_at = |offset: usize| bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            return Err(err(
                line_at(e.valid_up_to()),
                "not UTF-8 text (is this a binary file?); configs are UTF-8".to_owned(),
            ));
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some((i, c)) =
        text.char_indices().find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        let offset = bytes.len() - text.len() + i;
        return Err(err(line_at(offset), format!("binary data: control character U+{:04X}", u32::from(c))));
    }
    Ok(text)
}

/// Unquoted `key=value` lines under etmem's group names.
fn looks_like_etmem(text: &str) -> bool {
    let mut groups = false;
    let mut bare = false;
    for l in text.lines().map(str::trim) {
        groups |= matches!(l, "[project]" | "[engine]" | "[task]");
        if let Some((_, v)) = l.split_once('=') {
            let v = v.trim();
            bare |= v.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
                && !matches!(v, "true" | "false");
        }
    }
    groups && bare
}

/// `[[arrays]]`, dotted tables or quoted string values (etmem's values are bare).
fn looks_like_toml(text: &str) -> bool {
    text.lines().map(str::trim).any(|l| {
        l.starts_with("[[")
            || (l.starts_with('[') && l.contains('.') && l.ends_with(']'))
            || l.split_once('=').is_some_and(|(_, v)| v.trim().starts_with(['"', '\'', '{']))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection() {
        assert_eq!(detect_format("db.toml"), Format::Toml);
        assert_eq!(detect_format("DB.TOML"), Format::Toml);
        assert_eq!(detect_format("/etc/etmem/slide_conf.yaml"), Format::EtmemIni);
        assert_eq!(detect_format("proj.config"), Format::EtmemIni);
    }

    #[test]
    fn wrong_extension_gets_a_hint() {
        let toml = b"[project]\nname = \"db\"\n[engine]\nkind = \"region\"\n";
        let e = parse("db.conf", toml, None).unwrap_err().to_string();
        assert!(e.starts_with("db.conf: read as etmem INI but this looks like a native TOML config"), "{e}");
        assert!(parse("db.conf", toml, Some(Format::Toml)).is_ok());
        let ini = b"[project]\nname=test\nloop=1\ninterval=1\nsleep=1\n";
        let e = parse("slide.toml", ini, None).unwrap_err().to_string();
        assert!(
            e.starts_with("slide.toml: read as native TOML but this looks like an etmem INI file"),
            "{e}"
        );
    }

    #[test]
    fn refuses_garbage() {
        let e = parse("a.conf", &[0xff, 0xfe, 0], None).unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        let e = parse("a.conf", b"[project]\nname=\0x\n", None).unwrap_err();
        assert_eq!(e.errors[0].line, 2);
        assert!(e.to_string().contains("U+0000"), "{e}");
        let big = vec![b'#'; MAX_CONFIG_BYTES + 1];
        assert!(parse("a.conf", &big, None).unwrap_err().to_string().contains("10 MiB"));
        let e = parse("a.conf", b"", None).unwrap_err().to_string();
        assert!(e.contains("empty config"), "{e}");
        let e = parse("a.toml", b"# nothing\n", None).unwrap_err().to_string();
        assert!(e.contains("empty config"), "{e}");
    }
}
