//! `etmem record`: open a recording session, long-poll it, and write the
//! lines to a file as they come (our format), or gather them and write
//! damo's JSON at the end. Shows progress; stops at `--duration`, on
//! Ctrl-C / SIGTERM, or when the project stops.

use super::{EndLine, RecordLine, SnapshotLine, damo};
use crate::progress::{Progress, fmt_elapsed};
use crate::protocol::{self, ErrorReply, FrameError, MAX_RESPONSE_BYTES, Request, Response};
use crate::server::SocketSpec;
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long one poll waits for the daemon's first new line.
const POLL_WAIT: Duration = Duration::from_millis(500);

/// Which file format `etmem record` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// Our JSON Lines format (`docs/record-format.md`), written as it comes.
    Etmem,
    /// damo's JSON record list, plain.
    DamoJson,
    /// damo's JSON record list, zlib-compressed: damo's own default record
    /// format (`json_compressed`), which every damo reads.
    Damo,
}

/// What to record, where to.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub project: String,
    pub engine: Option<String>,
    pub task: Option<String>,
    pub output: PathBuf,
    /// Stop after this long; `None`: until interrupted or the project stops.
    pub duration: Option<Duration>,
    pub format: RecordFormat,
}

/// What a finished recording holds.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSummary {
    pub snapshots: u64,
    pub lost: u64,
    pub targets: usize,
    pub elapsed: Duration,
    pub reason: String,
}

/// Why a recording failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordRunError {
    #[error("cannot connect to etmemd at {spec} (is etmemd running? is -s right?)")]
    Connect {
        spec: SocketSpec,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to etmemd at {spec}")]
    Frame {
        spec: SocketSpec,
        #[source]
        source: FrameError,
    },
    #[error("{}", .0.message)]
    Refused(ErrorReply),
    #[error("cannot write {path}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("etmemd answered {0} to a recording request")]
    Unexpected(String),
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Make SIGINT and SIGTERM set a flag instead of killing the process, so a
/// recording ends with a complete file. Returns the flag.
pub fn interrupt_flag() -> &'static AtomicBool {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; the sigaction struct is fully initialised.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    &INTERRUPTED
}

struct Conn {
    spec: SocketSpec,
    stream: UnixStream,
}

impl Conn {
    fn open(spec: &SocketSpec) -> Result<Conn, RecordRunError> {
        let connect = |source| RecordRunError::Connect { spec: spec.clone(), source };
        let addr = spec.to_addr().map_err(connect)?;
        let stream = UnixStream::connect_addr(&addr).map_err(connect)?;
        stream
            .set_read_timeout(Some(POLL_WAIT + Duration::from_secs(60)))
            .map_err(|e| RecordRunError::Frame { spec: spec.clone(), source: FrameError::Io(e) })?;
        Ok(Conn { spec: spec.clone(), stream })
    }

    fn ask(&mut self, req: &Request) -> Result<Response, RecordRunError> {
        let frame = |source| RecordRunError::Frame { spec: self.spec.clone(), source };
        protocol::write_frame(&mut self.stream, req).map_err(frame)?;
        let body = protocol::read_frame(&mut self.stream, MAX_RESPONSE_BYTES).map_err(frame)?;
        match protocol::decode::<Response>(&body).map_err(frame)? {
            Response::Error(e) => Err(RecordRunError::Refused(e)),
            other => Ok(other),
        }
    }
}

fn create(path: &Path) -> Result<BufWriter<std::fs::File>, RecordRunError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map(BufWriter::new)
        .map_err(|source| RecordRunError::Output { path: path.into(), source })
}

fn write_line(out: &mut impl Write, line: &RecordLine) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, line).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}

/// Record until the duration is reached, `stop` is set, or the project stops.
pub fn run(
    spec: &SocketSpec,
    opts: &RecordOptions,
    progress: &mut Progress,
    stop: &AtomicBool,
) -> Result<RecordSummary, RecordRunError> {
    let mut conn = Conn::open(spec)?;
    let started = conn.ask(&Request::RecordStart {
        project: opts.project.clone(),
        engine: opts.engine.clone(),
        task: opts.task.clone(),
    })?;
    let Response::RecordStarted { session, header } = started else {
        return Err(RecordRunError::Unexpected(format!("{started:?}")));
    };
    let out_err = |source| RecordRunError::Output { path: opts.output.clone(), source };
    let mut out = match create(&opts.output) {
        Ok(f) => f,
        Err(e) => {
            let _ = conn.ask(&Request::RecordStop { session });
            return Err(e);
        }
    };
    let targets = header.targets.len();
    if opts.format == RecordFormat::Etmem {
        write_line(&mut out, &RecordLine::Header(header)).map_err(out_err)?;
        out.flush().map_err(out_err)?;
    }
    let t0 = Instant::now();
    let mut damo_snaps: Vec<SnapshotLine> = Vec::new();
    let (mut snapshots, mut lost) = (0u64, 0u64);
    let mut pids = std::collections::BTreeSet::new();
    let reason = loop {
        if stop.load(Ordering::SeqCst) {
            break "interrupted".to_string();
        }
        if let Some(d) = opts.duration
            && t0.elapsed() >= d
        {
            break format!("duration of {} reached", fmt_elapsed(d));
        }
        let wait = opts.duration.map_or(POLL_WAIT, |d| d.saturating_sub(t0.elapsed()).min(POLL_WAIT));
        let reply = conn.ask(&Request::RecordPoll { session, wait_ms: wait.as_millis() as u64 })?;
        let Response::RecordBatch { lines, ended } = reply else {
            return Err(RecordRunError::Unexpected(format!("{reply:?}")));
        };
        for line in lines {
            match &line {
                RecordLine::Snapshot(s) => {
                    snapshots += 1;
                    pids.insert(s.pid);
                }
                RecordLine::Lost(l) => lost += l.items,
                _ => {}
            }
            match (opts.format, line) {
                (RecordFormat::Etmem, line) => write_line(&mut out, &line).map_err(out_err)?,
                (RecordFormat::DamoJson | RecordFormat::Damo, RecordLine::Snapshot(s)) => damo_snaps.push(s),
                (RecordFormat::DamoJson | RecordFormat::Damo, _) => {}
            }
        }
        out.flush().map_err(out_err)?;
        progress.update(|| {
            let total = opts.duration.map(|d| format!(" of {}", fmt_elapsed(d))).unwrap_or_default();
            format!(
                "{}{total}, {snapshots} snapshots of {} process(es) written{}",
                fmt_elapsed(t0.elapsed()),
                pids.len(),
                if lost > 0 { format!(", {lost} lost") } else { String::new() }
            )
        });
        if let Some(why) = ended {
            break why;
        }
    };
    // The session may already be gone (the project stopped): not an error.
    let _ = conn.ask(&Request::RecordStop { session });
    let elapsed = t0.elapsed();
    match opts.format {
        RecordFormat::Etmem => {
            let end = RecordLine::End(EndLine {
                at_ms: elapsed.as_millis() as u64,
                snapshots,
                lost,
                reason: reason.clone(),
            });
            write_line(&mut out, &end).map_err(out_err)?;
        }
        RecordFormat::DamoJson => damo::write(&mut out, &damo_snaps).map_err(out_err)?,
        RecordFormat::Damo => {
            let mut z = flate2::write::ZlibEncoder::new(&mut out, flate2::Compression::default());
            damo::write(&mut z, &damo_snaps).map_err(out_err)?;
            z.finish().map_err(out_err)?;
        }
    }
    out.flush().map_err(out_err)?;
    Ok(RecordSummary { snapshots, lost, targets, elapsed, reason })
}
