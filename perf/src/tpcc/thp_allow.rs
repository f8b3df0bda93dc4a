//! The THP scenarios' `LD_PRELOAD` shim (`perf/tpcc/thp-allow.c`):
//! mariadbd turns transparent huge pages off for itself with
//! `prctl(PR_SET_THP_DISABLE)` when THP is not `always`, after which the
//! kernel refuses every `MADV_COLLAPSE` on it. MySQL, which the etmem
//! presentation measured, does not. The shim makes that one call a no-op,
//! for the THP scenarios only, so promotion can be compared at all. It is
//! built with the system C compiler into the work folder, once.

use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = include_str!("../../tpcc/thp-allow.c");

/// Build the shim into `work_dir` (again only when its source changed) and
/// return its path.
pub fn build(work_dir: &Path) -> Result<PathBuf, String> {
    let src = work_dir.join("thp-allow.c");
    let lib = work_dir.join("thp-allow.so");
    let same = std::fs::read_to_string(&src).is_ok_and(|s| s == SOURCE);
    if same && lib.exists() {
        return Ok(lib);
    }
    std::fs::create_dir_all(work_dir).map_err(|e| format!("{}: {e}", work_dir.display()))?;
    std::fs::write(&src, SOURCE).map_err(|e| format!("{}: {e}", src.display()))?;
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .map_err(|e| format!("cannot run cc to build the THP shim (install gcc): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cc could not build the THP shim {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(lib)
}
