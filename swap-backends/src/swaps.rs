//! /proc/swaps: every active swap area with its size, use and priority.
//! Parsing is pure ([`parse_proc_swaps`]); [`read_proc_swaps`] reads the file.

use std::path::{Path, PathBuf};

/// Where /proc/swaps lives.
pub const PROC_SWAPS: &str = "/proc/swaps";

/// What backs a swap area, as /proc/swaps says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapKind {
    /// A block device (zram, a disk partition).
    Partition,
    /// A regular file.
    File,
}

/// One line of /proc/swaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapEntry {
    /// The path, with the kernel's octal escapes (`\040` …) undone and a
    /// trailing " (deleted)" removed.
    pub path: PathBuf,
    /// The file was unlinked while it was still swapped on.
    pub deleted: bool,
    pub kind: SwapKind,
    /// Usable size (the header page excluded).
    pub size_bytes: u64,
    pub used_bytes: u64,
    pub priority: i32,
}

impl SwapEntry {
    pub fn free_bytes(&self) -> u64 {
        self.size_bytes.saturating_sub(self.used_bytes)
    }
}

/// A line of /proc/swaps that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("/proc/swaps line {line_no}: {reason}: {line:?}")]
pub struct SwapsParseError {
    pub line_no: usize,
    pub line: String,
    pub reason: &'static str,
}

/// Reading /proc/swaps failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadSwapsError {
    #[error("cannot read {PROC_SWAPS}")]
    Io(#[source] std::io::Error),
    #[error(transparent)]
    Parse(#[from] SwapsParseError),
}

/// Undoes seq_file's `mangle_path` escaping (`\ooo` for space, tab, newline, backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (u32::from(b[i + 1] - b'0') << 6)
                | (u32::from(b[i + 2] - b'0') << 3)
                | u32::from(b[i + 3] - b'0');
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the text of /proc/swaps (header line first, sizes in KiB).
pub fn parse_proc_swaps(text: &str) -> Result<Vec<SwapEntry>, SwapsParseError> {
    let mut out = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let line_no = idx + 1;
        if line.trim().is_empty() || (idx == 0 && line.starts_with("Filename")) {
            continue;
        }
        let err = |reason| SwapsParseError { line_no, line: line.to_string(), reason };
        // The path has its whitespace escaped, so splitting on whitespace is exact.
        let f: Vec<&str> = line.split_whitespace().collect();
        let [path, kind, size, used, prio] = f[..] else {
            return Err(err("expected 5 fields"));
        };
        let kind = match kind {
            "partition" => SwapKind::Partition,
            "file" => SwapKind::File,
            _ => return Err(err("unknown type")),
        };
        let size_kib: u64 = size.parse().map_err(|_| err("bad size"))?;
        let used_kib: u64 = used.parse().map_err(|_| err("bad used"))?;
        let priority: i32 = prio.parse().map_err(|_| err("bad priority"))?;
        let mut path = unescape(path);
        let deleted = path.ends_with(" (deleted)");
        if deleted {
            path.truncate(path.len() - " (deleted)".len());
        }
        out.push(SwapEntry {
            path: PathBuf::from(path),
            deleted,
            kind,
            size_bytes: size_kib * 1024,
            used_bytes: used_kib * 1024,
            priority,
        });
    }
    Ok(out)
}

/// Reads and parses /proc/swaps.
pub fn read_proc_swaps() -> Result<Vec<SwapEntry>, ReadSwapsError> {
    let text = std::fs::read_to_string(PROC_SWAPS).map_err(ReadSwapsError::Io)?;
    Ok(parse_proc_swaps(&text)?)
}

/// The entry for `path`, if it is swapped on.
pub fn find_swap<'a>(entries: &'a [SwapEntry], path: &Path) -> Option<&'a SwapEntry> {
    entries.iter().find(|e| e.path == path && !e.deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
/dev/zram1                              partition\t262140\t\t1024\t\t100\n\
/work/swap\\040dir/swapfile               file\t\t1048572\t\t0\t\t-2\n\
/tmp/gone\\040(deleted)                  file\t\t4092\t\t0\t\t5\n";

    #[test]
    fn parses_every_field() {
        let e = parse_proc_swaps(SAMPLE).expect("sample parses");
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0],
            SwapEntry {
                path: "/dev/zram1".into(),
                deleted: false,
                kind: SwapKind::Partition,
                size_bytes: 262140 * 1024,
                used_bytes: 1024 * 1024,
                priority: 100,
            }
        );
        assert_eq!(e[0].free_bytes(), 261116 * 1024);
        assert_eq!(e[1].path, PathBuf::from("/work/swap dir/swapfile"));
        assert_eq!(e[1].kind, SwapKind::File);
        assert_eq!(e[1].priority, -2);
        assert_eq!(e[2].path, PathBuf::from("/tmp/gone"));
        assert!(e[2].deleted);
        assert_eq!(
            find_swap(&e, Path::new("/tmp/gone")),
            None,
            "a deleted file is not the file at that path"
        );
        assert_eq!(find_swap(&e, Path::new("/dev/zram1")).map(|x| x.priority), Some(100));
    }

    #[test]
    fn empty_table_is_empty() {
        let e = parse_proc_swaps("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n").expect("header only");
        assert!(e.is_empty());
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let err = parse_proc_swaps("Filename Type Size Used Priority\n/dev/x partition 1 2\n")
            .expect_err("4 fields");
        assert_eq!(err.line_no, 2);
        let err = parse_proc_swaps("Filename\n/dev/x disk 1 2 3\n").expect_err("bad type");
        assert_eq!(err.reason, "unknown type");
        let err = parse_proc_swaps("Filename\n/dev/x file 1 -2 3\n").expect_err("negative used");
        assert_eq!(err.reason, "bad used");
    }

    #[test]
    fn unescape_handles_octal_and_plain_backslashes() {
        assert_eq!(unescape("a\\040b\\011c\\134d"), "a b\tc\\d");
        assert_eq!(unescape("a\\9b\\"), "a\\9b\\");
    }
}
