//! The host's THP `enabled` mode, changed for a benchmark run and always put
//! back: on drop (normal end, error, panic, an interrupt turned into an
//! error) and, after a SIGKILL or a crash, by `scripts/cleanup-machine`,
//! which reads the mode to restore from [`RESTORE_FILE`].

use std::io;
use std::path::Path;

pub const THP_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// Written before the mode is changed, removed once it is restored: the
/// mode found before the first change. `scripts/cleanup-machine` restores
/// it when a benchmark died without doing so. Under /run, like the setting
/// itself it does not outlive a reboot.
pub const RESTORE_FILE: &str = "/run/etmem-rs/thp-enabled.restore";

/// The bracketed word of a `[always] madvise never` line.
pub fn selected(text: &str) -> Option<&str> {
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(&text[start..end])
}

/// The THP `enabled` mode now (`always`, `madvise`, `never`).
pub fn thp_mode() -> Option<String> {
    let text = std::fs::read_to_string(THP_ENABLED).ok()?;
    selected(&text).map(str::to_string)
}

/// THP `enabled` set to a mode for as long as the guard lives.
#[derive(Debug)]
pub struct ThpGuard {
    previous: String,
}

impl ThpGuard {
    /// Set `mode`, remembering the mode to restore (in memory and in
    /// [`RESTORE_FILE`]). When that file is already there, an earlier run
    /// died before restoring: the mode it names is the one to go back to.
    pub fn set(mode: &str) -> io::Result<ThpGuard> {
        let now = thp_mode().ok_or_else(|| io::Error::other(format!("cannot read {THP_ENABLED}")))?;
        let previous = match std::fs::read_to_string(RESTORE_FILE) {
            Ok(saved) if !saved.trim().is_empty() => saved.trim().to_string(),
            _ => {
                let file = Path::new(RESTORE_FILE);
                if let Some(dir) = file.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(file, format!("{now}\n"))?;
                now
            }
        };
        let guard = ThpGuard { previous };
        std::fs::write(THP_ENABLED, mode)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write {mode} to {THP_ENABLED}: {e}")))?;
        Ok(guard)
    }

    /// The mode that is written back on drop.
    pub fn previous(&self) -> &str {
        &self.previous
    }
}

impl Drop for ThpGuard {
    fn drop(&mut self) {
        match std::fs::write(THP_ENABLED, &self.previous) {
            Ok(()) => {
                let _ = std::fs::remove_file(RESTORE_FILE);
                if let Some(dir) = Path::new(RESTORE_FILE).parent() {
                    let _ = std::fs::remove_dir(dir); // only when empty
                }
            }
            // The file stays: scripts/cleanup-machine tries again.
            Err(e) => eprintln!("CANNOT RESTORE {THP_ENABLED} to {}: {e}", self.previous),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_is_the_bracketed_word() {
        assert_eq!(selected("always [madvise] never\n"), Some("madvise"));
        assert_eq!(selected("[always] madvise never"), Some("always"));
        assert_eq!(selected("always madvise never"), None);
    }
}
