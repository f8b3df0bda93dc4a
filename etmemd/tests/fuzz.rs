//! Fuzz targets of the socket protocol's decoders (issue 10, bad input): the
//! typed JSON frames (requests the daemon reads, responses the CLI reads)
//! and etmem's line protocol. 10,000 cases each (`PROPTEST_CASES`
//! overrides; `scripts/fuzz-long` runs a million) of random bytes, mutated
//! valid frames and lines, and JSON-shaped text. Beyond "no panic": every
//! request survives encode then decode unchanged, so does anything a
//! mutated frame still decodes to, and well-formed etmem lines decode to the
//! command their number names.

#![allow(clippy::unwrap_used)] // tests fail by panicking

#[path = "../../conf/tests/fuzz_harness/mod.rs"]
mod fuzz_harness;

use etmemd::protocol::{
    self, BackendView, EngineView, ErrorKind, ErrorReply, FrameError, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES,
    ProjectView, Request, Response, TaskStats, TaskView, etmem_compat,
};
use fuzz_harness::{Mutation, apply, mutation};
use proptest::prelude::*;
use std::path::PathBuf;

/// Strings with the characters JSON makes hard: quotes, backslashes,
/// control characters, non-ASCII, and plain names.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_.-]{0,12}",
        "[\"\\\\/\\u{0}-\\u{1f}a-zé😀 ]{0,8}",
        any::<String>().prop_map(|s| s.chars().take(24).collect()),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    let opt = || proptest::option::of(text());
    prop_oneof![
        Just(Request::Hello),
        text().prop_map(|f| Request::ObjAdd { file: PathBuf::from(f) }),
        text().prop_map(|f| Request::ObjDel { file: PathBuf::from(f) }),
        text().prop_map(|name| Request::ProjectStart { name }),
        text().prop_map(|name| Request::ProjectStop { name }),
        opt().prop_map(|name| Request::ProjectShow { name }),
        text().prop_map(|name| Request::ProjectDel { name }),
        (text(), text(), text(), opt()).prop_map(|(project, engine, cmd, task)| Request::Engine {
            project,
            engine,
            cmd,
            task
        }),
        (text(), opt(), opt()).prop_map(|(project, engine, task)| Request::RecordStart {
            project,
            engine,
            task
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(session, wait_ms)| Request::RecordPoll { session, wait_ms }),
        any::<u64>().prop_map(|session| Request::RecordStop { session }),
    ]
}

/// Responses of every shape the CLI reads that can be built here.
fn responses() -> Vec<Response> {
    let stats = TaskStats {
        pids: vec![1, 2],
        probe: Some("refault".into()),
        nr_regions: Some(10),
        last_aggregation_age_s: Some(0.25),
        monitor_cpu_s: Some(1.5),
        extra: [("k".to_string(), "v".to_string())].into(),
        action_errors: [("EAGAIN".to_string(), 3)].into(),
        ..TaskStats::default()
    };
    let task = TaskView {
        name: "t".into(),
        target_type: "pid".into(),
        target: "42".into(),
        started: true,
        stats: Some(stats),
    };
    let project = ProjectView {
        name: "p".into(),
        started: true,
        scan: "region".into(),
        engines: vec![EngineView { name: "region".into(), kind: "region".into(), tasks: vec![task] }],
        backends: vec![BackendView {
            kind: "zram".into(),
            device: "/dev/zram1".into(),
            priority: -2,
            size_bytes: 1 << 30,
            used_bytes: 4096,
        }],
        notes: vec!["note".into()],
    };
    vec![
        Response::Hello { version: "0.1.0".into(), protocol: protocol::PROTOCOL_VERSION },
        Response::Done { message: Some("ok".into()) },
        Response::Projects { projects: vec![project] },
        Response::EngineOutput { text: "regions\n".into() },
        Response::RecordBatch { lines: Vec::new(), ended: Some("stopped".into()) },
        Response::Error(ErrorReply { kind: ErrorKind::ProjectNotExist, message: "no".into() }),
    ]
}

/// JSON-shaped bodies: the protocol's own words in random order.
fn json_soup() -> impl Strategy<Value = Vec<u8>> {
    let token = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"op\"",
        "\"reply\"",
        "\"name\"",
        "\"file\"",
        "\"project\"",
        "\"engine\"",
        "\"cmd\"",
        "\"task\"",
        "\"session\"",
        "\"wait_ms\"",
        "\"hello\"",
        "\"obj_add\"",
        "\"project_start\"",
        "\"project_show\"",
        "\"engine\"",
        "\"record_poll\"",
        "\"done\"",
        "\"error\"",
        "\"kind\"",
        "\"message\"",
        "null",
        "true",
        "0",
        "-1",
        "18446744073709551616",
        "1e400",
        "1.5",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"x\"",
        " ",
    ]);
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat().into_bytes())
}

/// A frame: 4-byte length then body.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

#[derive(Debug, Clone)]
enum FrameInput {
    /// A request as the CLI sends it; must round-trip exactly.
    Valid(Request),
    /// A valid request's frame, then edited.
    Mutated(Request, Vec<Mutation>),
    /// A response's frame, then edited.
    MutatedResponse(usize, Vec<Mutation>),
    /// Any bytes on the wire.
    Raw(Vec<u8>),
    /// JSON-shaped body in a correct frame.
    Soup(Vec<u8>),
}

fn frame_input() -> impl Strategy<Value = FrameInput> {
    let muts = || prop::collection::vec(mutation(any::<u8>()), 1..5);
    prop_oneof![
        2 => request().prop_map(FrameInput::Valid),
        4 => (request(), muts()).prop_map(|(r, m)| FrameInput::Mutated(r, m)),
        2 => (0usize..6, muts()).prop_map(|(i, m)| FrameInput::MutatedResponse(i, m)),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(FrameInput::Raw),
        2 => json_soup().prop_map(FrameInput::Soup),
    ]
}

/// Whatever a frame holds: reading and decoding it as a request and as a
/// response never panics, and a request that decodes re-encodes to itself.
fn check_frame(wire: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(body) = protocol::read_frame(&mut &wire[..], MAX_REQUEST_BYTES) {
        match protocol::decode::<Request>(&body) {
            Ok(req) => round_trips(&req)?,
            Err(e) => prop_assert!(matches!(e, FrameError::Malformed(_)), "{e:?}"),
        }
    }
    if let Ok(body) = protocol::read_frame(&mut &wire[..], MAX_RESPONSE_BYTES) {
        let _ = protocol::decode::<Response>(&body);
    }
    Ok(())
}

fn round_trips(req: &Request) -> Result<(), TestCaseError> {
    let wire = protocol::encode(req);
    let body = protocol::read_frame(&mut &wire[..], MAX_REQUEST_BYTES);
    prop_assert!(body.is_ok(), "{req:?} does not frame: {body:?}");
    let back = protocol::decode::<Request>(&body.unwrap());
    prop_assert!(back.as_ref().is_ok_and(|b| b == req), "{req:?} came back as {back:?}");
    Ok(())
}

#[test]
fn json_frames() {
    let responses = responses();
    fuzz_harness::run("json_frames", frame_input(), |input| match input {
        FrameInput::Valid(r) => round_trips(r),
        FrameInput::Mutated(r, m) => check_frame(&apply(protocol::encode(r), m)),
        FrameInput::MutatedResponse(i, m) => check_frame(&apply(protocol::encode(&responses[*i]), m)),
        FrameInput::Raw(bytes) => check_frame(bytes),
        FrameInput::Soup(body) => check_frame(&framed(body)),
    });
}

/// One of etmem's six key/value pairs, usually in order, with values that
/// are names, `-` (absent), numbers or junk.
#[derive(Debug, Clone)]
struct Line {
    values: [Option<String>; 6],
    /// Keys swapped (positions), or `None`.
    swap: Option<(usize, usize)>,
    separator: &'static str,
    trailer: &'static str,
}

const KEYS: [&str; 6] = ["proj_name", "file_name", "cmd", "eng_name", "eng_cmd", "task_name"];

impl Line {
    fn render(&self) -> String {
        let mut keys = KEYS;
        if let Some((a, b)) = self.swap {
            keys.swap(a % 6, b % 6);
        }
        let mut parts = Vec::new();
        for (k, v) in keys.iter().zip(&self.values) {
            parts.push(k.to_string());
            parts.push(v.clone().unwrap_or_else(|| "-".into()));
        }
        format!("{}{}", parts.join(self.separator), self.trailer)
    }

    /// The request etmem's daemon would take this line for, when the line
    /// is well formed (keys in order, values without blanks).
    fn expected_cmd(&self) -> Option<u8> {
        if self.swap.is_some_and(|(a, b)| a % 6 != b % 6) || !matches!(self.trailer, "" | "\n" | "\0") {
            return None;
        }
        let clean = |v: &Option<String>| {
            v.as_ref().is_none_or(|s| !s.is_empty() && !s.starts_with('-') && !s.contains(c_isspace))
        };
        if !self.values.iter().all(clean) {
            return None;
        }
        let present = |i: usize| self.values[i].is_some();
        let cmd_text = self.values[2].as_deref()?;
        let cmd: u8 = cmd_text.parse().ok()?;
        if cmd.to_string() != cmd_text {
            return None;
        }
        let ok = match cmd {
            0 | 1 => present(1),
            2 | 3 => present(0),
            4 => true,
            5 => present(0) && present(3) && present(4),
            _ => false,
        };
        ok.then_some(cmd)
    }
}

fn line() -> impl Strategy<Value = Line> {
    let value = prop_oneof![
        3 => "[a-z0-9_/.]{1,10}".prop_map(Some),
        2 => Just(None),
        1 => "[ -~]{0,6}".prop_map(Some),
    ];
    let cmd = prop_oneof![
        4 => (0u8..6).prop_map(|c| Some(c.to_string())),
        1 => "[-0-9a-z]{0,3}".prop_map(Some),
        1 => Just(None),
    ];
    (
        value.clone(),
        value.clone(),
        cmd,
        value.clone(),
        value.clone(),
        value,
        prop_oneof![6 => Just(None), 1 => (0usize..6, 0usize..6).prop_map(Some)],
        prop::sample::select(vec![" ", "  ", "\t", " \n "]),
        prop::sample::select(vec!["", "\n", "\0", " extra", "\r\n\0\0"]),
    )
        .prop_map(|(a, b, c, d, e, f, swap, separator, trailer)| Line {
            values: [a, b, c, d, e, f],
            swap,
            separator,
            trailer,
        })
}

#[derive(Debug, Clone)]
enum LineInput {
    Shaped(Line),
    Mutated(Line, Vec<Mutation>),
    Raw(Vec<u8>),
}

fn line_input() -> impl Strategy<Value = LineInput> {
    prop_oneof![
        3 => line().prop_map(LineInput::Shaped),
        3 => (line(), prop::collection::vec(mutation(any::<u8>()), 1..5)).prop_map(|(l, m)| LineInput::Mutated(l, m)),
        1 => prop::collection::vec(any::<u8>(), 0..600).prop_map(LineInput::Raw),
    ]
}

/// C's isspace() in the C locale: what etmem's sscanf("%s") splits on.
fn c_isspace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// What the daemon does with a line: it starts with `proj` or it is not
/// etmem's protocol at all; parsing it never panics; a request it yields
/// holds no blank and no absent (`-`) value.
fn check_line(bytes: &[u8]) -> Result<(), TestCaseError> {
    let _ = etmem_compat::looks_like(bytes);
    if let Ok(req) = etmem_compat::parse(bytes) {
        let values: Vec<String> = match &req {
            Request::ObjAdd { file } | Request::ObjDel { file } => vec![file.display().to_string()],
            Request::ProjectStart { name } | Request::ProjectStop { name } => vec![name.clone()],
            Request::ProjectShow { name } => name.iter().cloned().collect(),
            Request::Engine { project, engine, cmd, task } => {
                [project, engine, cmd].into_iter().cloned().chain(task.iter().cloned()).collect()
            }
            other => return Err(TestCaseError::fail(format!("etmem line gave {other:?}"))),
        };
        for v in values {
            prop_assert!(!v.is_empty() && !v.starts_with('-') && !v.contains(c_isspace), "{v:?}");
        }
        round_trips(&req)?;
    }
    Ok(())
}

#[test]
fn etmem_line_protocol() {
    fuzz_harness::run("etmem_line_protocol", line_input(), |input| match input {
        LineInput::Shaped(l) => {
            let text = l.render();
            check_line(text.as_bytes())?;
            let got = etmem_compat::parse(text.as_bytes());
            if let Some(cmd) = l.expected_cmd() {
                let number = match got {
                    Ok(Request::ObjAdd { .. }) => 0,
                    Ok(Request::ObjDel { .. }) => 1,
                    Ok(Request::ProjectStart { .. }) => 2,
                    Ok(Request::ProjectStop { .. }) => 3,
                    Ok(Request::ProjectShow { .. }) => 4,
                    Ok(Request::Engine { .. }) => 5,
                    ref other => return Err(TestCaseError::fail(format!("{text:?} gave {other:?}"))),
                };
                prop_assert_eq!(number, cmd, "{:?}", text);
            }
            Ok(())
        }
        LineInput::Mutated(l, m) => check_line(&apply(l.render().into_bytes(), m)),
        LineInput::Raw(bytes) => check_line(bytes),
    });
}
