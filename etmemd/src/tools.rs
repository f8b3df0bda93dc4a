//! The `etmem record`, `etmem report` and `etmem doctor` commands: their
//! arguments and what they run (the `etmem` binary only dispatches here).
//! Exit codes as `etmem`'s: 0 success, 1 refused (or an unusable record
//! file), 2 bad command line, 4 etmemd unreachable, 5 internal or I/O error.

use crate::progress::{Progress, fmt_elapsed};
use crate::protocol::ErrorKind;
use crate::record::client::{RecordFormat, RecordOptions, RecordRunError};
use crate::report::{heatmap, raw, stats, wss};
use crate::server::SocketSpec;
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

const EXIT_OK: u8 = 0;
const EXIT_REFUSED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_CONFIG: u8 = 3;
const EXIT_UNREACHABLE: u8 = 4;
const EXIT_INTERNAL: u8 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// etmem-rs's JSON Lines record (docs/record-format.md).
    Etmem,
    /// damo's record format: zlib-compressed JSON (damo's default; `damo report heatmap --input FILE`).
    Damo,
    /// damo's JSON record list, uncompressed (damo's `--output_type json`).
    DamoJson,
}

/// `etmem record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The (started) project to record.
    #[arg(short = 'n', long = "name", visible_alias = "proj_name")]
    pub project: String,
    /// Only this task.
    #[arg(short = 't', long = "task_name", visible_alias = "task")]
    pub task: Option<String>,
    /// Only this engine's tasks.
    #[arg(short = 'e', long = "engine")]
    pub engine: Option<String>,
    /// The record file (created mode 0600, replaced if it exists).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Stop after this long (`30s`, `5m`); default: until Ctrl-C or the project stops.
    #[arg(short = 'd', long = "duration", value_parser = parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// File format.
    #[arg(long = "format", value_enum, default_value_t = FormatArg::Etmem)]
    pub format: FormatArg,
    /// No progress line.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    conf::units::parse_duration(s).map_err(|e| e.to_string())
}

/// Which target of a record a report is about.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Only this task.
    #[arg(short = 't', long = "task")]
    pub task: Option<String>,
    /// Only this process.
    #[arg(short = 'p', long = "pid")]
    pub pid: Option<u32>,
}

/// `etmem report`.
#[derive(Debug, Subcommand)]
pub enum ReportCmd {
    /// Every snapshot in damo's raw line form.
    Raw {
        /// The record file (ours, or damo's JSON, plain or compressed).
        file: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
        /// Machine-friendly numbers (ns, bytes).
        #[arg(long = "raw-number")]
        raw_number: bool,
    },
    /// Access heatmap: digits 0-9 on the terminal (damo's form), or a PNG.
    Heatmap {
        /// The record file (ours, or damo's JSON, plain or compressed).
        file: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
        /// Write a PNG here instead of printing digits.
        #[arg(long = "png")]
        png: Option<PathBuf>,
        /// PNG width and height in pixels.
        #[arg(long = "size", value_parser = parse_size, default_value = "1200x720")]
        size: (u32, u32),
        /// Text resolution: address columns and time rows.
        #[arg(long = "resol", value_parser = parse_size, default_value = "80x40")]
        resol: (u32, u32),
    },
    /// Working-set size over time and its percentiles, as text or a PNG.
    Wss {
        /// The record file (ours, or damo's JSON, plain or compressed).
        file: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
        /// Write a PNG here as well as printing the percentiles.
        #[arg(long = "png")]
        png: Option<PathBuf>,
        #[arg(long = "size", value_parser = parse_size, default_value = "1000x540")]
        size: (u32, u32),
        /// Fewest accesses per aggregation for a region to be in the working set.
        #[arg(long = "acc-thres", default_value_t = 1)]
        acc_thres: u32,
        /// Smallest region counted (`4K`, `2M`).
        #[arg(long = "sz-thres", value_parser = parse_bytes, default_value = "1")]
        sz_thres: u64,
        /// Snapshots left out of the percentiles (default: damo's 20, at most half).
        #[arg(long = "skip")]
        skip: Option<usize>,
    },
    /// What the engines did: paged out, prefetched, refaults, collapses, CPU, swap fill.
    Stats {
        /// The record file (ours: damo's format has no stats).
        file: PathBuf,
        /// Only this task.
        #[arg(short = 't', long = "task")]
        task: Option<String>,
    },
}

/// `etmem report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub cmd: ReportCmd,
}

/// `etmem doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) =
        s.split_once(['x', 'X']).ok_or_else(|| format!("{s:?}: give WIDTHxHEIGHT, e.g. 1200x720"))?;
    let n = |v: &str| v.trim().parse::<u32>().map_err(|_| format!("{v:?} is not a number of pixels"));
    let (w, h) = (n(w)?, n(h)?);
    if w == 0 || h == 0 || w > 16_384 || h > 16_384 {
        return Err(format!("{w}x{h}: each side must be 1..=16384"));
    }
    Ok((w, h))
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    conf::units::parse_size(s).map_err(|e| e.to_string())
}

/// Print a report; a reader that went away (`| head`) is not an error.
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Run `etmem record`.
pub fn record(spec: &SocketSpec, a: &RecordArgs) -> u8 {
    let opts = RecordOptions {
        project: a.project.clone(),
        engine: a.engine.clone(),
        task: a.task.clone(),
        output: a.output.clone(),
        duration: a.duration,
        format: match a.format {
            FormatArg::Etmem => RecordFormat::Etmem,
            FormatArg::DamoJson => RecordFormat::DamoJson,
            FormatArg::Damo => RecordFormat::Damo,
        },
    };
    let mut progress =
        if a.quiet { Progress::quiet() } else { Progress::new(format!("recording {}", a.project)) };
    let stop = crate::record::client::interrupt_flag();
    match crate::record::client::run(spec, &opts, &mut progress, stop) {
        Ok(s) => {
            progress.finish(&format!(
                "{} snapshots of {} task(s) in {} written to {} ({}){}",
                s.snapshots,
                s.targets,
                fmt_elapsed(s.elapsed),
                a.output.display(),
                s.reason,
                if s.lost > 0 { format!("; {} aggregations lost", s.lost) } else { String::new() }
            ));
            if s.snapshots == 0 {
                eprintln!(
                    "etmem: warning: no snapshot was recorded (did the engine aggregate during the recording?)"
                );
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("etmem: {}", crate::daemon::chain(&e));
            match e {
                RecordRunError::Connect { .. } => EXIT_UNREACHABLE,
                RecordRunError::Refused(r) => match r.kind {
                    ErrorKind::Config => EXIT_CONFIG,
                    ErrorKind::PermissionDenied => EXIT_UNREACHABLE,
                    ErrorKind::Internal => EXIT_INTERNAL,
                    _ => EXIT_REFUSED,
                },
                _ => EXIT_INTERNAL,
            }
        }
    }
}

fn load(file: &Path) -> Result<crate::record::Recording, u8> {
    crate::record::read_file(file).map_err(|e| {
        eprintln!("etmem: {}", crate::daemon::chain(&e));
        EXIT_REFUSED
    })
}

fn targets<'a>(
    rec: &'a crate::record::Recording,
    t: &TargetArgs,
) -> Result<Vec<&'a crate::record::TargetRecord>, u8> {
    let v = rec.select(t.task.as_deref(), t.pid);
    if v.is_empty() {
        let have: Vec<String> = rec.targets.iter().map(|t| t.label()).collect();
        eprintln!("etmem: the record has no target matching the filter; it has: {}", have.join(", "));
        return Err(EXIT_REFUSED);
    }
    Ok(v)
}

fn report_error(e: &crate::report::ReportError) -> u8 {
    eprintln!("etmem: {}", crate::daemon::chain(e));
    match e {
        crate::report::ReportError::Draw { .. } => EXIT_INTERNAL,
        crate::report::ReportError::TooSmall(..) => EXIT_USAGE,
        _ => EXIT_REFUSED,
    }
}

/// Run `etmem report ...`.
pub fn report(a: &ReportArgs) -> u8 {
    let run = || -> Result<(), u8> {
        match &a.cmd {
            ReportCmd::Raw { file, target, raw_number } => {
                let rec = load(file)?;
                targets(&rec, target)?;
                emit(&raw::text(&rec, target.task.as_deref(), target.pid, *raw_number));
            }
            ReportCmd::Heatmap { file, target, png, size, resol } => {
                let rec = load(file)?;
                let list = targets(&rec, target)?;
                // Like damo: one target per map; the busiest one by default.
                let t = list.iter().max_by_key(|t| t.snapshots.len()).copied().ok_or(EXIT_REFUSED)?;
                if list.len() > 1 {
                    eprintln!(
                        "etmem: {} targets match; drawing {} (choose with --task/--pid)",
                        list.len(),
                        t.label()
                    );
                }
                match png {
                    Some(out) => {
                        heatmap::png(t, out, size.0, size.1).map_err(|e| report_error(&e))?;
                        println!("wrote {} ({}x{}): heatmap of {}", out.display(), size.0, size.1, t.label());
                    }
                    None => {
                        let h = heatmap::build(t, resol.1 as usize, resol.0 as usize)
                            .map_err(|e| report_error(&e))?;
                        emit(&heatmap::text(&h));
                    }
                }
            }
            ReportCmd::Wss { file, target, png, size, acc_thres, sz_thres, skip } => {
                let rec = load(file)?;
                let list = targets(&rec, target)?;
                let opts = wss::WssOptions { acc_thres: *acc_thres, sz_thres: *sz_thres, skip: *skip };
                let series: Vec<wss::WssSeries> = list
                    .iter()
                    .filter(|t| !t.snapshots.is_empty())
                    .map(|t| wss::series(t, &opts))
                    .collect::<Result<_, _>>()
                    .map_err(|e| report_error(&e))?;
                emit(&wss::text(&series, &opts));
                if let Some(out) = png {
                    wss::png(&series, &opts, out, size.0, size.1).map_err(|e| report_error(&e))?;
                    println!("wrote {} ({}x{})", out.display(), size.0, size.1);
                }
            }
            ReportCmd::Stats { file, task } => {
                let rec = load(file)?;
                emit(&stats::text(&rec, task.as_deref()).map_err(|e| report_error(&e))?);
            }
        }
        Ok(())
    };
    match run() {
        Ok(()) => EXIT_OK,
        Err(code) => code,
    }
}

/// Run `etmem doctor`.
pub fn doctor(_a: &DoctorArgs, json: bool) -> u8 {
    let r = crate::doctor::inspect();
    if json {
        match serde_json::to_string_pretty(&r) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("etmem: {e}");
                return EXIT_INTERNAL;
            }
        }
    } else {
        emit(&crate::doctor::render(&r));
    }
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1200x720"), Ok((1200, 720)));
        assert!(parse_size("12").is_err());
        assert!(parse_size("0x5").is_err());
        assert!(parse_size("axb").is_err());
    }
}
