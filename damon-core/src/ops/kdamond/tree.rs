//! File access to the DAMON sysfs tree: one read and one write primitive
//! with the path in every error, so the rest of the driver never touches
//! `std::fs` directly. Writes open without `O_CREAT` (a missing file means
//! the kernel lacks the feature, never a file to create).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a file of the tree could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} holds {text:?}, expected {expected}", path.display())]
    Parse { path: PathBuf, text: String, expected: &'static str },
}

/// Why a value could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("this kernel has no {} ({what})", path.display())]
    Missing { path: PathBuf, what: String },
    #[error("cannot write {value:?} to {}", path.display())]
    Io {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
}

/// How long a file busy with another writer is retried. DAMON sysfs
/// answers `EBUSY` to a `state` write and to a `pid` read while another
/// process holds its lock (another `state` command, or a read of `pid`),
/// before it does anything: the same call a moment later is safe.
const BUSY_RETRY: Duration = Duration::from_secs(3);
const BUSY_PAUSE: Duration = Duration::from_millis(10);

fn is_busy(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EBUSY)
}

/// `op` again while it fails with `EBUSY`, for up to [`BUSY_RETRY`].
fn unless_busy<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let end = Instant::now() + BUSY_RETRY;
    loop {
        match op() {
            Err(e) if is_busy(&e) && Instant::now() < end => std::thread::sleep(BUSY_PAUSE),
            other => return other,
        }
    }
}

/// Read a whole file, trimmed of its trailing newline.
pub fn read(path: &Path) -> Result<String, ReadError> {
    unless_busy(|| std::fs::read_to_string(path))
        .map(|s| s.trim_end_matches('\n').to_string())
        .map_err(|source| ReadError::Io { path: path.to_path_buf(), source })
}

/// Read an unsigned decimal file.
pub fn read_u64(path: &Path) -> Result<u64, ReadError> {
    let text = read(path)?;
    text.trim().parse().map_err(|_| ReadError::Parse {
        path: path.to_path_buf(),
        text,
        expected: "an unsigned integer",
    })
}

/// Read a signed decimal file (`pid` holds -1 when off).
pub fn read_i64(path: &Path) -> Result<i64, ReadError> {
    let text = read(path)?;
    text.trim().parse().map_err(|_| ReadError::Parse {
        path: path.to_path_buf(),
        text,
        expected: "an integer",
    })
}

/// Write one value with a single `write(2)`, as sysfs needs.
pub fn write(path: &Path, value: &str) -> Result<(), WriteError> {
    let mut f = match OpenOptions::new().write(true).truncate(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(WriteError::Missing { path: path.to_path_buf(), what: "file not found".into() });
        }
        Err(source) => return Err(WriteError::Io { path: path.to_path_buf(), value: value.into(), source }),
    };
    // One write(2) per try: a busy answer consumed nothing.
    unless_busy(|| f.write(value.as_bytes()))
        .and_then(|n| {
            if n == value.len() {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short write ({n} of {} bytes)", value.len()),
                ))
            }
        })
        .map_err(|source| WriteError::Io { path: path.to_path_buf(), value: value.into(), source })
}

/// Whether a file or directory exists.
pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// The numbered subdirectories (`0`, `1`, ...) of a directory, sorted by number.
pub fn numbered_dirs(dir: &Path) -> Result<Vec<(usize, PathBuf)>, ReadError> {
    let rd = std::fs::read_dir(dir).map_err(|source| ReadError::Io { path: dir.to_path_buf(), source })?;
    let mut out: Vec<(usize, PathBuf)> = rd
        .filter_map(|e| {
            let e = e.ok()?;
            let n: usize = e.file_name().to_str()?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

/// Every regular file under `dir` with its content (unreadable files as
/// `<error: ...>`), sorted by path: a read-only fingerprint of the tree
/// that tests compare before and after.
pub fn listing(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            // symlink_metadata: sysfs has no symlinks here, but never follow one.
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(m) if m.is_file() => {
                    let content = match unless_busy(|| std::fs::read_to_string(&p)) {
                        Ok(s) => s,
                        Err(e) => format!("<error: {e}>"),
                    };
                    out.push((p, content));
                }
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// Identity of one file or directory of the tree: a node the kernel
/// removes and creates again (as writing any `nr_*` file does, even with the
/// same number) comes back with another inode number and modification time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    pub path: PathBuf,
    pub is_dir: bool,
    pub ino: u64,
    pub mtime: Option<std::time::SystemTime>,
}

/// `dir` and every directory and regular file under it with its [`Stamp`],
/// sorted by path (metadata and directory listings only: no file is opened,
/// nothing is written).
pub fn stamps(dir: &Path) -> Vec<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        // symlink_metadata: never follow a link out of the tree.
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        if !m.is_dir() && !m.is_file() {
            continue;
        }
        if m.is_dir()
            && let Ok(rd) = std::fs::read_dir(&p)
        {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
        out.push(Stamp { path: p, is_dir: m.is_dir(), ino: m.ino(), mtime: m.modified().ok() });
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_lists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("nr");
        std::fs::write(&f, "3\n").expect("seed");
        assert_eq!(read_u64(&f).expect("read"), 3);
        write(&f, "7").expect("write");
        assert_eq!(read(&f).expect("read"), "7");
        assert!(matches!(write(&dir.path().join("absent"), "1"), Err(WriteError::Missing { .. })));
        std::fs::write(dir.path().join("bad"), "x\n").expect("seed");
        let e = read_u64(&dir.path().join("bad")).expect_err("not a number");
        assert!(e.to_string().contains("expected an unsigned integer"), "{e}");
        for n in ["10", "2", "x"] {
            std::fs::create_dir(dir.path().join(n)).expect("mkdir");
        }
        let nums: Vec<usize> = numbered_dirs(dir.path()).expect("list").into_iter().map(|(n, _)| n).collect();
        assert_eq!(nums, vec![2, 10]);
        let l = listing(dir.path());
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].1, "7");
        let st = stamps(dir.path());
        // The root, three directories, two files.
        assert_eq!(st.len(), 6, "{st:?}");
        assert!(st[0].is_dir && st[0].path == dir.path());
        let nr = st.iter().find(|s| s.path == f).expect("nr stamped");
        assert!(!nr.is_dir && nr.mtime.is_some());
        // A file created again is another inode (the old one stays alive
        // through a second link, so its number cannot be reused).
        std::fs::hard_link(&f, dir.path().join("old")).expect("link");
        std::fs::remove_file(&f).expect("rm");
        std::fs::write(&f, "7").expect("again");
        let again = stamps(dir.path()).into_iter().find(|s| s.path == f).expect("nr stamped");
        assert_ne!(again.ino, nr.ino);
    }
}
