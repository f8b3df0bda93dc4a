//! The typed request/response protocol between `etmem` and `etmemd`.
//! Frames are a 4-byte big-endian length followed by that many bytes of JSON;
//! `docs/protocol.md` describes it for other clients.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

/// Protocol version, sent in `Hello` replies; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest request frame the daemon accepts. Requests carry paths and names,
/// never file contents, so this is generous.
pub const MAX_REQUEST_BYTES: u32 = 64 * 1024;

/// Largest response frame a client accepts.
pub const MAX_RESPONSE_BYTES: u32 = 64 * 1024 * 1024;

/// Every action a client can ask of the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Daemon and protocol version.
    Hello,
    /// `etmem obj add -f FILE` / `etmem project add -f FILE`: add the
    /// project, engines and tasks of a config file. The daemon reads the file
    /// itself (it must be an absolute path on the daemon's filesystem).
    ObjAdd {
        file: PathBuf,
    },
    /// `etmem obj del -f FILE`: remove the objects a config file names.
    ObjDel {
        file: PathBuf,
    },
    ProjectStart {
        name: String,
    },
    ProjectStop {
        name: String,
    },
    /// `name: None` shows every project.
    ProjectShow {
        name: Option<String>,
    },
    /// Stop (if started) and remove a project with its engines and tasks.
    ProjectDel {
        name: String,
    },
    /// `etmem engine CMD -n PROJECT -e ENGINE [-t TASK]`.
    Engine {
        project: String,
        engine: String,
        cmd: String,
        task: Option<String>,
    },
    /// `etmem record`: open a recording session on the tasks of a started
    /// project (all, or those of `engine` and/or named `task`).
    RecordStart {
        project: String,
        engine: Option<String>,
        task: Option<String>,
    },
    /// The record lines gathered since the previous poll; waits up to
    /// `wait_ms` (at most 5000) for the first snapshot.
    RecordPoll {
        session: u64,
        wait_ms: u64,
    },
    /// Close a recording session.
    RecordStop {
        session: u64,
    },
}

/// The daemon's answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Hello {
        version: String,
        protocol: u32,
    },
    /// Success, with an optional human message (warnings included).
    Done {
        message: Option<String>,
    },
    Projects {
        projects: Vec<ProjectView>,
    },
    /// Free text from an engine command.
    EngineOutput {
        text: String,
    },
    /// A recording session is open; `header` is the record's first line.
    RecordStarted {
        session: u64,
        header: crate::record::RecordHeader,
    },
    /// Record lines (`docs/record-format.md`); `ended` says why the session
    /// is over (it is closed after this answer).
    RecordBatch {
        lines: Vec<crate::record::RecordLine>,
        ended: Option<String>,
    },
    Error(ErrorReply),
}

/// A refused or failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
}

/// Why a request failed; the CLI maps these to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    InvalidRequest,
    /// The config file could not be read, was refused, or is invalid.
    Config,
    ProjectExists,
    ProjectNotExist,
    ProjectStarted,
    ProjectStopped,
    EngineExists,
    EngineNotExist,
    TaskExists,
    TaskNotExist,
    /// The engine, probe or backend cannot run on this host or in this build.
    Unsupported,
    PermissionDenied,
    Internal,
}

impl ErrorKind {
    /// etmem's wording for the same outcome (`g_resp_msg_arr`), used in the
    /// etmem-compatible line protocol.
    pub fn etmem_message(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::Config => "error: invalid parameters",
            ErrorKind::ProjectExists => "error: project has been existed",
            ErrorKind::ProjectNotExist => "error: project is not exist",
            ErrorKind::ProjectStarted => "error: project has been started",
            ErrorKind::ProjectStopped => "error: project has been stopped",
            ErrorKind::EngineExists => "error: engine has been existed",
            ErrorKind::EngineNotExist => "error: engine is not exist",
            ErrorKind::TaskExists => "error: task has been existed",
            ErrorKind::TaskNotExist => "error: task is not exist",
            ErrorKind::Unsupported | ErrorKind::PermissionDenied | ErrorKind::Internal => {
                "error: etmemd has internal error, see reason details in messages"
            }
        }
    }
}

/// One project as `project show` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectView {
    pub name: String,
    pub started: bool,
    /// `page`, `region` or `psi`.
    pub scan: String,
    pub engines: Vec<EngineView>,
    pub backends: Vec<BackendView>,
    /// Notes the user should see (e.g. keys with no effect on this host).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineView {
    pub name: String,
    pub kind: String,
    pub tasks: Vec<TaskView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskView {
    pub name: String,
    /// `pid`, `name` or `cgroup`.
    pub target_type: String,
    pub target: String,
    pub started: bool,
    /// Engine figures for this task, when it runs.
    pub stats: Option<TaskStats>,
}

/// What an engine reports about one task. Every field is optional so each
/// engine fills what it knows; the CLI prints what is present.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskStats {
    /// Processes the task resolves to now.
    pub pids: Vec<u32>,
    pub probe: Option<String>,
    pub nr_regions: Option<u64>,
    pub hot_bytes: Option<u64>,
    pub cold_bytes: Option<u64>,
    pub thp_eligible_bytes: Option<u64>,
    pub rss_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
    pub anon_huge_bytes: Option<u64>,
    pub paged_out_bytes: Option<u64>,
    pub prefetched_bytes: Option<u64>,
    pub refaults: Option<u64>,
    pub collapses: Option<u64>,
    pub demotions: Option<u64>,
    pub quota_used_permil: Option<u64>,
    pub quota_exceeded: Option<u64>,
    /// Seconds since the last aggregation (or scan round).
    pub last_aggregation_age_s: Option<f64>,
    pub aggregations: Option<u64>,
    /// CPU time the engine spent monitoring this task.
    pub monitor_cpu_s: Option<f64>,
    /// CPU time spent acting (madvise) for this task.
    pub action_cpu_s: Option<f64>,
    /// Why the engine is not acting right now (gate closed, quota, ...).
    pub idle_reason: Option<String>,
    pub last_error: Option<String>,
    /// Engine-specific figures that have no field of their own.
    pub extra: BTreeMap<String, String>,
    /// Failed actions (madvise ranges) by kind (errno name), cumulative.
    pub action_errors: BTreeMap<String, u64>,
}

/// A swap device a project created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendView {
    pub kind: String,
    pub device: String,
    pub priority: i32,
    pub size_bytes: u64,
    pub used_bytes: u64,
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {len} bytes is larger than the limit of {limit} bytes")]
    TooLarge { len: u32, limit: u32 },
    #[error("truncated frame: expected {expected} bytes, got {got}")]
    Truncated { expected: u32, got: usize },
    #[error("malformed message")]
    Malformed(#[source] serde_json::Error),
    #[error("i/o")]
    Io(#[source] std::io::Error),
}

/// Encode a message as one frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let body = serde_json::to_vec(msg).expect("protocol types always serialize");
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decode a frame body.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(FrameError::Malformed)
}

/// Read one frame body (blocking), refusing lengths above `limit`.
pub fn read_frame(r: &mut impl Read, limit: u32) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(FrameError::Io(e)),
    }
    let len = u32::from_be_bytes(len);
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    let mut body = vec![0u8; len as usize];
    let mut got = 0;
    while got < body.len() {
        match r.read(&mut body[got..]) {
            Ok(0) => return Err(FrameError::Truncated { expected: len, got }),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(body)
}

/// Write one frame (blocking).
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), FrameError> {
    w.write_all(&encode(msg)).map_err(FrameError::Io)?;
    w.flush().map_err(FrameError::Io)
}

/// etmem's wire format: one ASCII line
/// `proj_name %s file_name %s cmd %d eng_name %s eng_cmd %s task_name %s`,
/// absent fields sent as `-`; the reply is free text then one finish byte.
pub mod etmem_compat {
    use super::Request;
    use std::path::PathBuf;

    /// Largest etmem request (`RPC_BUFF_LEN_MAX`).
    pub const MAX_LEN: usize = 512;
    /// Finish byte for success.
    pub const FINISH_OK: u8 = 0xff;
    /// Finish byte for failure.
    pub const FINISH_FAIL: u8 = 0xfe;

    /// Whether the first bytes of a connection look like etmem's line protocol.
    pub fn looks_like(prefix: &[u8]) -> bool {
        prefix.starts_with(b"proj")
    }

    /// Why an etmem line could not be understood.
    #[derive(Debug, PartialEq, Eq, thiserror::Error)]
    pub enum LineError {
        #[error("expected key {expected:?}, found {found:?}")]
        Key { expected: &'static str, found: String },
        #[error("missing value for key {0:?}")]
        MissingValue(&'static str),
        #[error("unknown command number {0:?}")]
        BadCmd(String),
        #[error("command {cmd} needs {key}")]
        Needs { cmd: &'static str, key: &'static str },
        #[error("trailing data after task_name")]
        Trailing,
        #[error("request is not ASCII text")]
        NotText,
    }

    /// Parse one etmem request line into a typed request.
    pub fn parse(line: &[u8]) -> Result<Request, LineError> {
        let text = std::str::from_utf8(line).map_err(|_| LineError::NotText)?;
        let text = text.trim_end_matches(['\0', '\n', '\r']);
        // Fields are split as etmem's sscanf("%s") splits them: on C's
        // isspace(), which (unlike split_ascii_whitespace) includes \v.
        let mut words = text.split([' ', '\t', '\n', '\x0b', '\x0c', '\r']).filter(|w| !w.is_empty());
        let mut field = |key: &'static str| -> Result<Option<String>, LineError> {
            match words.next() {
                Some(k) if k == key => {}
                Some(k) => return Err(LineError::Key { expected: key, found: k.to_string() }),
                None => return Err(LineError::Key { expected: key, found: String::new() }),
            }
            let v = words.next().ok_or(LineError::MissingValue(key))?;
            // etmem: a value starting with '-' means "absent".
            Ok((!v.starts_with('-')).then(|| v.to_string()))
        };
        let proj = field("proj_name")?;
        let file = field("file_name")?;
        let cmd = field("cmd")?;
        let eng = field("eng_name")?;
        let eng_cmd = field("eng_cmd")?;
        let task = field("task_name")?;
        if words.next().is_some() {
            return Err(LineError::Trailing);
        }
        let need =
            |v: Option<String>, cmd: &'static str, key: &'static str| v.ok_or(LineError::Needs { cmd, key });
        let cmd = cmd.unwrap_or_default();
        Ok(match cmd.as_str() {
            "0" => Request::ObjAdd { file: PathBuf::from(need(file, "obj add", "file_name")?) },
            "1" => Request::ObjDel { file: PathBuf::from(need(file, "obj del", "file_name")?) },
            "2" => Request::ProjectStart { name: need(proj, "project start", "proj_name")? },
            "3" => Request::ProjectStop { name: need(proj, "project stop", "proj_name")? },
            "4" => Request::ProjectShow { name: proj },
            "5" => Request::Engine {
                project: need(proj, "engine", "proj_name")?,
                engine: need(eng, "engine", "eng_name")?,
                cmd: need(eng_cmd, "engine", "eng_cmd")?,
                task,
            },
            other => return Err(LineError::BadCmd(other.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let req = Request::Engine {
            project: "p".into(),
            engine: "region".into(),
            cmd: "regions".into(),
            task: None,
        };
        let bytes = encode(&req);
        let body = read_frame(&mut &bytes[..], MAX_REQUEST_BYTES).expect("frame");
        assert_eq!(decode::<Request>(&body).expect("decode"), req);
    }

    #[test]
    fn oversized_frame_is_refused_before_reading_it() {
        let bytes = (MAX_REQUEST_BYTES + 1).to_be_bytes();
        assert!(matches!(read_frame(&mut &bytes[..], MAX_REQUEST_BYTES), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let mut bytes = encode(&Request::Hello);
        bytes.truncate(bytes.len() - 2);
        assert!(matches!(read_frame(&mut &bytes[..], MAX_REQUEST_BYTES), Err(FrameError::Truncated { .. })));
    }

    #[test]
    fn wrong_types_are_malformed() {
        for body in [
            &br#"{"op":"project_start","name":3}"#[..],
            br#"{"op":"no_such_op"}"#,
            br#"{"op":"project_start","name":"x","extra":1}"#,
            br#"[1,2,3]"#,
            b"\xff\xfe",
        ] {
            assert!(matches!(decode::<Request>(body), Err(FrameError::Malformed(_))), "{body:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]

        /// Arbitrary bytes never panic the decoders.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = decode::<Request>(&bytes);
            let _ = read_frame(&mut &bytes[..], MAX_REQUEST_BYTES);
            let _ = etmem_compat::parse(&bytes);
        }

        /// Valid requests with one byte changed, cut or extended never panic
        /// and, when they still decode, decode to a request.
        #[test]
        fn mutated_requests_never_panic(which in 0usize..6, pos in 0usize..200, byte in proptest::num::u8::ANY, cut in proptest::bool::ANY) {
            let reqs = [
                Request::Hello,
                Request::ObjAdd { file: "/etc/etmem/a.toml".into() },
                Request::ProjectStart { name: "db".into() },
                Request::ProjectShow { name: None },
                Request::Engine { project: "p".into(), engine: "region".into(), cmd: "regions".into(), task: Some("t".into()) },
                Request::ProjectDel { name: "x".into() },
            ];
            let mut frame = encode(&reqs[which]);
            let i = pos % frame.len();
            if cut { frame.truncate(i) } else { frame[i] = byte }
            if let Ok(body) = read_frame(&mut &frame[..], MAX_REQUEST_BYTES) {
                let _ = decode::<Request>(&body);
            }
            let line = format!("proj_name p file_name /x cmd {which} eng_name e eng_cmd c task_name t").into_bytes();
            let mut line = line;
            let j = pos % line.len();
            if cut { line.truncate(j) } else { line[j] = byte }
            let _ = etmem_compat::parse(&line);
        }
    }

    #[test]
    fn etmem_line_fields_split_on_c_isspace() {
        // Found by scripts/fuzz-long: a vertical tab ended up inside a value.
        assert_eq!(
            etmem_compat::parse(b"proj_name\x0bp file_name - cmd 2 eng_name - eng_cmd - task_name -"),
            Ok(Request::ProjectStart { name: "p".into() })
        );
    }

    #[test]
    fn etmem_line_requests_parse() {
        use etmem_compat::parse;
        assert_eq!(
            parse(b"proj_name - file_name /etc/etmem/a.conf cmd 0 eng_name - eng_cmd - task_name -"),
            Ok(Request::ObjAdd { file: "/etc/etmem/a.conf".into() })
        );
        assert_eq!(
            parse(b"proj_name test file_name - cmd 4 eng_name - eng_cmd - task_name -"),
            Ok(Request::ProjectShow { name: Some("test".into()) })
        );
        assert_eq!(
            parse(b"proj_name test file_name - cmd 5 eng_name cslide eng_cmd showhostpages task_name -"),
            Ok(Request::Engine {
                project: "test".into(),
                engine: "cslide".into(),
                cmd: "showhostpages".into(),
                task: None
            })
        );
        assert!(parse(b"proj_name test file_name - cmd 9 eng_name - eng_cmd - task_name -").is_err());
        assert!(parse(b"proj_name test file_name - cmd 2").is_err());
        assert!(parse(b"proj_name - file_name - cmd 2 eng_name - eng_cmd - task_name -").is_err());
    }
}
