//! /proc/PID/maps and smaps: a target's VMAs, and which of them the engines
//! monitor (etmem's rule by default: anonymous and private-writable).
//!
//! Pure parsers here; [`crate::ops::pidfd::ProcTarget`] reads the files.

use crate::{AddrRange, PAGE_SIZE};
use std::fmt;

/// Access permissions of a VMA (`rwxp` / `rwxs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// `s`: may be shared (MAP_SHARED); `p`: private.
    pub shared: bool,
}

impl Perms {
    /// No access at all (`---p`): guard pages, reserved address space.
    pub fn none(&self) -> bool {
        !self.read && !self.write && !self.exec
    }
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |b: bool, ch: char| if b { ch } else { '-' };
        write!(
            f,
            "{}{}{}{}",
            c(self.read, 'r'),
            c(self.write, 'w'),
            c(self.exec, 'x'),
            if self.shared { 's' } else { 'p' }
        )
    }
}

/// What backs a VMA, from the pathname column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmaKind {
    /// No pathname.
    Anonymous,
    /// `[anon:NAME]` (prctl PR_SET_VMA_ANON_NAME).
    NamedAnonymous(String),
    /// `[heap]`.
    Heap,
    /// `[stack]` (or the old `[stack:TID]`).
    Stack,
    /// `[vdso]`, `[vvar]`, `[vvar_vclock]`, `[vsyscall]`, `[uprobes]` and any
    /// other bracketed name: kernel-provided, never monitored.
    Special(String),
    /// A file (or `/dev/zero` for shared anonymous memory, `/memfd:...`).
    File {
        path: String,
        /// The pathname ended in ` (deleted)`.
        deleted: bool,
    },
}

/// Fields of one smaps entry (sizes in bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmapsInfo {
    pub rss_bytes: u64,
    pub anonymous_bytes: u64,
    pub anon_huge_pages_bytes: u64,
    pub swap_bytes: u64,
    /// Two-letter VmFlags (`rd`, `wr`, `hg`, `nh`, `sd`, ...).
    pub vm_flags: Vec<String>,
}

impl SmapsInfo {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.vm_flags.iter().any(|f| f == flag)
    }
}

/// One mapping of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vma {
    pub range: AddrRange,
    pub perms: Perms,
    /// Offset into the file (pages of a file mapping), in bytes.
    pub offset: u64,
    /// Device (major, minor) of the file.
    pub dev: (u32, u32),
    pub inode: u64,
    pub kind: VmaKind,
    /// Filled when read from smaps.
    pub smaps: Option<SmapsInfo>,
}

impl Vma {
    /// etmem's `is_anonymous` (etmemd_scan.c): not shared, not executable,
    /// and either without a file (inode 0) or writable (private-writable
    /// file mappings hold copy-on-write anonymous pages).
    pub fn etmem_anonymous(&self) -> bool {
        !self.perms.shared && !self.perms.exec && (self.inode == 0 || self.perms.write)
    }

    /// Kernel-provided mapping (vdso, vvar, vsyscall, uprobes).
    pub fn is_special(&self) -> bool {
        matches!(self.kind, VmaKind::Special(_))
    }

    pub fn is_file_backed(&self) -> bool {
        matches!(self.kind, VmaKind::File { .. })
    }
}

/// A maps or smaps line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line_no}: {reason}: {line:?}")]
pub struct ParseMapsError {
    /// 1-based.
    pub line_no: usize,
    pub line: String,
    pub reason: &'static str,
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok()
}

/// Split off the next space-separated field.
fn field(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ');
    if s.is_empty() {
        return None;
    }
    Some(s.split_once(' ').unwrap_or((s, "")))
}

fn kind_of(path: &str) -> VmaKind {
    if path.is_empty() {
        return VmaKind::Anonymous;
    }
    if let Some(name) = path.strip_prefix("[anon:").and_then(|p| p.strip_suffix(']')) {
        return VmaKind::NamedAnonymous(name.to_string());
    }
    if path == "[heap]" {
        return VmaKind::Heap;
    }
    if path == "[stack]" || path.starts_with("[stack:") {
        return VmaKind::Stack;
    }
    if path.starts_with('[') && path.ends_with(']') {
        return VmaKind::Special(path.to_string());
    }
    match path.strip_suffix(" (deleted)") {
        Some(p) => VmaKind::File { path: p.to_string(), deleted: true },
        None => VmaKind::File { path: path.to_string(), deleted: false },
    }
}

/// Parse one maps line: `start-end perms offset major:minor inode   [path]`.
/// The path may contain spaces; it is everything after the inode's padding.
pub fn parse_maps_line(line: &str) -> Result<Vma, &'static str> {
    let (range, rest) = field(line).ok_or("empty line")?;
    let (start, end) = range.split_once('-').ok_or("address range without '-'")?;
    let (start, end) = (hex(start).ok_or("bad start address")?, hex(end).ok_or("bad end address")?);
    if start > end || start % PAGE_SIZE != 0 || end % PAGE_SIZE != 0 {
        return Err("address range inverted or not page-aligned");
    }
    let (perms, rest) = field(rest).ok_or("missing permissions")?;
    let p = perms.as_bytes();
    if p.len() != 4 {
        return Err("permissions are not 4 characters");
    }
    let perms = Perms { read: p[0] == b'r', write: p[1] == b'w', exec: p[2] == b'x', shared: p[3] == b's' };
    let (offset, rest) = field(rest).ok_or("missing offset")?;
    let offset = hex(offset).ok_or("bad offset")?;
    let (dev, rest) = field(rest).ok_or("missing device")?;
    let (major, minor) = dev.split_once(':').ok_or("device without ':'")?;
    let dev = (
        u32::from_str_radix(major, 16).map_err(|_| "bad device major")?,
        u32::from_str_radix(minor, 16).map_err(|_| "bad device minor")?,
    );
    let (inode, rest) = field(rest).ok_or("missing inode")?;
    let inode = inode.parse::<u64>().map_err(|_| "bad inode")?;
    let path = rest.trim_start_matches(' ').trim_end_matches('\n');
    Ok(Vma { range: AddrRange::new(start, end), perms, offset, dev, inode, kind: kind_of(path), smaps: None })
}

/// Parse /proc/PID/maps.
pub fn parse_maps(text: &str) -> Result<Vec<Vma>, ParseMapsError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_maps_line(l).map_err(|reason| ParseMapsError {
                line_no: i + 1,
                line: l.to_string(),
                reason,
            })
        })
        .collect()
}

/// Parse /proc/PID/smaps: maps headers, each followed by `Key: value [kB]`
/// lines and `VmFlags:`.
pub fn parse_smaps(text: &str) -> Result<Vec<Vma>, ParseMapsError> {
    let mut vmas: Vec<Vma> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |reason| ParseMapsError { line_no: i + 1, line: line.to_string(), reason };
        let first = line.split(' ').next().unwrap_or("");
        if !first.ends_with(':') {
            let mut vma = parse_maps_line(line).map_err(err)?;
            vma.smaps = Some(SmapsInfo::default());
            vmas.push(vma);
            continue;
        }
        let Some(info) = vmas.last_mut().and_then(|v| v.smaps.as_mut()) else {
            return Err(err("smaps field before any mapping"));
        };
        let key = &first[..first.len() - 1];
        let value = line[first.len()..].trim();
        if key == "VmFlags" {
            info.vm_flags = value.split_whitespace().map(str::to_string).collect();
            continue;
        }
        let kib = || -> Result<u64, ParseMapsError> {
            let n = value.strip_suffix(" kB").ok_or_else(|| err("size without kB"))?;
            n.trim().parse::<u64>().map(|n| n * 1024).map_err(|_| err("bad size"))
        };
        match key {
            "Rss" => info.rss_bytes = kib()?,
            "Anonymous" => info.anonymous_bytes = kib()?,
            "AnonHugePages" => info.anon_huge_pages_bytes = kib()?,
            "Swap" => info.swap_bytes = kib()?,
            _ => {}
        }
    }
    Ok(vmas)
}

/// Which VMAs an engine monitors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VmaFilter {
    /// Also accept file-backed, shared and executable mappings (etmem's
    /// `anon_only=no`). Default: etmem's anonymous rule only.
    pub file_backed: bool,
    /// VmFlags a VMA must all carry (etmem's `vm_flags`, e.g. `["ht"]`, or
    /// etmem's swap flag). Non-empty means smaps is read.
    pub required_vm_flags: Vec<String>,
}

impl VmaFilter {
    /// etmem's default: anonymous and private-writable mappings.
    pub fn anonymous() -> VmaFilter {
        VmaFilter::default()
    }

    pub fn needs_smaps(&self) -> bool {
        !self.required_vm_flags.is_empty()
    }

    /// Whether `vma` is monitored.
    ///
    /// Beyond etmem's rule this also skips mappings with no access rights
    /// (`---p`): nothing in them can be touched, yet glibc reserves 64 MiB of
    /// them per malloc arena and thread stacks have guard pages, which would
    /// only cost regions. Kernel-provided mappings (`[vdso]`, `[vvar]`,
    /// `[vsyscall]`, `[uprobes]`) are never monitored.
    pub fn accepts(&self, vma: &Vma) -> bool {
        if vma.is_special() || vma.perms.none() || vma.range.is_empty() {
            return false;
        }
        if !self.file_backed && !vma.etmem_anonymous() {
            return false;
        }
        if self.required_vm_flags.is_empty() {
            return true;
        }
        vma.smaps.as_ref().is_some_and(|s| self.required_vm_flags.iter().all(|f| s.has_flag(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_with_spaces_and_deleted() {
        let v = parse_maps_line("7f00000000-7f00001000 rw-s 00002000 00:05 1234   /tmp/my file (deleted)")
            .expect("parses");
        assert_eq!(v.kind, VmaKind::File { path: "/tmp/my file".into(), deleted: true });
        assert!(v.perms.shared && v.perms.write && !v.perms.exec);
        assert_eq!((v.offset, v.dev, v.inode), (0x2000, (0, 5), 1234));
    }

    #[test]
    fn bad_lines_are_errors() {
        for line in [
            "zz-1000 rw-p 0 00:00 0",
            "1000-0 rw-p 0 00:00 0",
            "1000-2000 rw 0 00:00 0",
            "1000-2000 rw-p 0 0000 0",
            "1000-2000 rw-p 0 00:00",
            "1001-2000 rw-p 0 00:00 0",
        ] {
            assert!(parse_maps_line(line).is_err(), "{line}");
        }
    }

    #[test]
    fn etmem_rule() {
        let v = |perms: &str, inode: u64| {
            parse_maps_line(&format!("1000-2000 {perms} 0 00:00 {inode} /x")).expect("parses")
        };
        assert!(v("rw-p", 0).etmem_anonymous());
        assert!(v("rw-p", 7).etmem_anonymous());
        assert!(v("r--p", 0).etmem_anonymous());
        assert!(!v("r--p", 7).etmem_anonymous());
        assert!(!v("rw-s", 0).etmem_anonymous());
        assert!(!v("rwxp", 0).etmem_anonymous());
    }
}
