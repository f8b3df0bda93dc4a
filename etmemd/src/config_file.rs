//! Reading a config file on behalf of a client: the daemon opens the path
//! itself (as etmem does), refusing symlinks, non-regular files, files over
//! 10 MiB and, unless relaxed, files another user owns or that others may
//! read or write.

use crate::registry::Source;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest config file accepted (etmem's `MAX_CONFIG_FILE_SIZE`).
pub const MAX_CONFIG_BYTES: u64 = 10 * 1024 * 1024;

/// Why a config file was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigLoadError {
    #[error("{path}: config paths must be absolute (the daemon has its own working directory)")]
    Relative { path: PathBuf },
    #[error("{path}: is a symbolic link; give the real path")]
    Symlink { path: PathBuf },
    #[error("{path}: cannot open")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a regular file")]
    NotRegular { path: PathBuf },
    #[error("{path}: {size} bytes is larger than the limit of {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: PathBuf, size: u64 },
    #[error(
        "{path}: owned by uid {owner}; config files must belong to the user who adds them (uid {peer}) (etmemd --allow-insecure-config relaxes this)"
    )]
    Owner { path: PathBuf, owner: u32, peer: u32 },
    #[error(
        "{path}: mode {mode:04o} lets other users read or write it; use 0600 or 0400 (etmemd --allow-insecure-config relaxes this)"
    )]
    Mode { path: PathBuf, mode: u32 },
    #[error("{0}")]
    Invalid(conf::ConfigErrors),
}

/// Read and parse a config file for a client with uid `peer_uid`.
pub fn load(path: &Path, peer_uid: u32, relaxed: bool) -> Result<(Source, conf::Objects), ConfigLoadError> {
    let path_buf = path.to_path_buf();
    if !path.is_absolute() {
        return Err(ConfigLoadError::Relative { path: path_buf });
    }
    // O_NOFOLLOW: a symlink fails with ELOOP instead of being followed;
    // O_NONBLOCK: a FIFO cannot block the daemon at open.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| {
            if source.raw_os_error() == Some(libc::ELOOP) {
                ConfigLoadError::Symlink { path: path_buf.clone() }
            } else {
                ConfigLoadError::Open { path: path_buf.clone(), source }
            }
        })?;
    let meta = file.metadata().map_err(|source| ConfigLoadError::Open { path: path_buf.clone(), source })?;
    if !meta.file_type().is_file() {
        return Err(ConfigLoadError::NotRegular { path: path_buf });
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigLoadError::TooLarge { path: path_buf, size: meta.len() });
    }
    if !relaxed {
        // The requesting user's own file (root's for root, as etmem). Not
        // "root's or the requester's": the daemon reads as root, and its
        // parse errors quote the file, so a non-root client could otherwise
        // have it read root's private files (SECURITY.md).
        if meta.uid() != peer_uid {
            return Err(ConfigLoadError::Owner { path: path_buf, owner: meta.uid(), peer: peer_uid });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(ConfigLoadError::Mode { path: path_buf, mode });
        }
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ConfigLoadError::Open { path: path_buf.clone(), source })?;
    let name = path.display().to_string();
    let objects = conf::parse(&name, &bytes, None).map_err(ConfigLoadError::Invalid)?;
    let text: Arc<str> = Arc::from(String::from_utf8_lossy(&bytes).into_owned());
    Ok((Source { file: path_buf, format: objects.format, text }, objects))
}
