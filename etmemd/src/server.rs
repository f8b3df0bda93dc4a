//! The daemon's socket: a unix stream socket at a path (mode 0600) or in the
//! abstract namespace (as etmem uses), peer credentials checked with
//! SO_PEERCRED, several clients at once, typed frames or etmem's line protocol.

use crate::daemon::{Daemon, Peer};
use crate::protocol::{
    self, ErrorKind, ErrorReply, FrameError, MAX_REQUEST_BYTES, Request, Response, etmem_compat,
};
use std::os::linux::net::SocketAddrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// Where the daemon listens when `-s` is not given.
pub const DEFAULT_SOCKET: &str = "/run/etmemd.sock";

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Clients served at once; further connections wait in the backlog.
const MAX_CLIENTS: usize = 128;

/// A socket address as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketSpec {
    Path(PathBuf),
    /// Abstract namespace name (no filesystem node).
    Abstract(String),
}

/// Why a socket argument is not usable.
#[derive(Debug, thiserror::Error)]
pub enum SocketSpecError {
    #[error("socket name is empty")]
    Empty,
    #[error("socket name {0:?} is {1} bytes; the limit is 107")]
    TooLong(String, usize),
}

impl SocketSpec {
    /// `@name` is an abstract socket; a value with a `/` is a path; a bare
    /// name is an abstract socket too, as in etmem (`-s etmemd_socket`).
    pub fn parse(s: &str) -> Result<SocketSpec, SocketSpecError> {
        if s.is_empty() || s == "@" {
            return Err(SocketSpecError::Empty);
        }
        if s.len() > 107 {
            return Err(SocketSpecError::TooLong(s.into(), s.len()));
        }
        Ok(if let Some(name) = s.strip_prefix('@') {
            SocketSpec::Abstract(name.into())
        } else if s.contains('/') {
            SocketSpec::Path(s.into())
        } else {
            SocketSpec::Abstract(s.into())
        })
    }

    pub fn to_addr(&self) -> std::io::Result<std::os::unix::net::SocketAddr> {
        match self {
            SocketSpec::Path(p) => std::os::unix::net::SocketAddr::from_pathname(p),
            SocketSpec::Abstract(n) => std::os::unix::net::SocketAddr::from_abstract_name(n.as_bytes()),
        }
    }
}

impl std::fmt::Display for SocketSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketSpec::Path(p) => write!(f, "{}", p.display()),
            SocketSpec::Abstract(n) => write!(f, "@{n}"),
        }
    }
}

/// Why the daemon could not listen.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another etmemd already listens on {0}")]
    InUse(SocketSpec),
    #[error("cannot listen on {spec}")]
    Bind {
        spec: SocketSpec,
        #[source]
        source: std::io::Error,
    },
}

/// Bind the socket (mode 0600 for a path), replacing a stale socket file
/// but never one a live daemon answers on. Call before starting the runtime.
pub fn bind(spec: &SocketSpec) -> Result<std::os::unix::net::UnixListener, BindError> {
    let err = |source| BindError::Bind { spec: spec.clone(), source };
    let addr = spec.to_addr().map_err(err)?;
    if let SocketSpec::Path(p) = spec
        && std::fs::symlink_metadata(p).is_ok()
    {
        if std::os::unix::net::UnixStream::connect(p).is_ok() {
            return Err(BindError::InUse(spec.clone()));
        }
        std::fs::remove_file(p).map_err(err)?;
    }
    // SAFETY: umask only changes this process's file-creation mask; it is
    // restored right after bind, before any other thread creates files.
    let old = unsafe { libc::umask(0o177) };
    let r = std::os::unix::net::UnixListener::bind_addr(&addr);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    match r {
        Ok(l) => {
            l.set_nonblocking(true).map_err(err)?;
            Ok(l)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(BindError::InUse(spec.clone())),
        Err(e) => Err(err(e)),
    }
}

/// Who may talk to the daemon.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    /// Non-root uids allowed besides root.
    pub allow_uids: Vec<u32>,
}

impl AccessPolicy {
    fn allows(&self, peer: &Peer) -> bool {
        peer.uid == 0 || self.allow_uids.contains(&peer.uid)
    }
}

/// Serve until `shutdown` resolves.
pub async fn serve(
    listener: UnixListener,
    daemon: Arc<Daemon>,
    access: AccessPolicy,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    let access = Arc::new(access);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            p = Arc::clone(&slots).acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let daemon = Arc::clone(&daemon);
        let access = Arc::clone(&access);
        tokio::spawn(async move {
            if let Err(e) = connection(stream, daemon, &access).await {
                tracing::debug!(error = %e, "connection ended");
            }
            drop(permit);
        });
    }
}

async fn connection(
    mut stream: UnixStream,
    daemon: Arc<Daemon>,
    access: &AccessPolicy,
) -> Result<(), FrameError> {
    let cred = stream.peer_cred().map_err(FrameError::Io)?;
    let peer = Peer { uid: cred.uid(), gid: cred.gid(), pid: cred.pid() };
    let mut head = [0u8; 4];
    match tokio::time::timeout(REQUEST_TIMEOUT, stream.read_exact(&mut head)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return Err(FrameError::Closed),
        Err(_) => return Err(FrameError::Closed),
    }
    if etmem_compat::looks_like(&head) {
        return etmem_connection(stream, head, daemon, access, peer).await;
    }
    if !access.allows(&peer) {
        tracing::warn!(uid = peer.uid, pid = ?peer.pid, "client refused: not root and not allowed by --allow-uid");
        let reply = Response::Error(ErrorReply {
            kind: ErrorKind::PermissionDenied,
            message: format!(
                "uid {} may not use etmemd (root only; etmemd --allow-uid widens this)",
                peer.uid
            ),
        });
        return write(&mut stream, &reply).await;
    }
    let mut first = Some(head);
    loop {
        let body = match read_frame(&mut stream, first.take()).await {
            Ok(b) => b,
            Err(FrameError::Closed) => return Ok(()),
            Err(e @ (FrameError::TooLarge { .. } | FrameError::Truncated { .. })) => {
                let reply = invalid(&e);
                let _ = write(&mut stream, &reply).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let reply = match protocol::decode::<Request>(&body) {
            Ok(req) => {
                let d = Arc::clone(&daemon);
                tokio::task::spawn_blocking(move || d.handle(req, peer)).await.unwrap_or_else(|e| {
                    Response::Error(ErrorReply {
                        kind: ErrorKind::Internal,
                        message: format!("request failed: {e}"),
                    })
                })
            }
            Err(e) => invalid(&e),
        };
        write(&mut stream, &reply).await?;
    }
}

fn invalid(e: &FrameError) -> Response {
    Response::Error(ErrorReply { kind: ErrorKind::InvalidRequest, message: crate::daemon::chain(e) })
}

async fn read_frame(stream: &mut UnixStream, head: Option<[u8; 4]>) -> Result<Vec<u8>, FrameError> {
    let len = match head {
        Some(h) => h,
        None => {
            let mut h = [0u8; 4];
            match stream.read_exact(&mut h).await {
                Ok(_) => h,
                Err(_) => return Err(FrameError::Closed),
            }
        }
    };
    let len = u32::from_be_bytes(len);
    if len > MAX_REQUEST_BYTES {
        return Err(FrameError::TooLarge { len, limit: MAX_REQUEST_BYTES });
    }
    let mut body = vec![0u8; len as usize];
    let mut got = 0;
    while got < body.len() {
        let n = match tokio::time::timeout(REQUEST_TIMEOUT, stream.read(&mut body[got..])).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(FrameError::Io(e)),
            Err(_) => 0,
        };
        if n == 0 {
            return Err(FrameError::Truncated { expected: len, got });
        }
        got += n;
    }
    Ok(body)
}

async fn write(stream: &mut UnixStream, reply: &Response) -> Result<(), FrameError> {
    stream.write_all(&protocol::encode(reply)).await.map_err(FrameError::Io)
}

/// etmem's protocol: one line of at most 512 bytes, a text reply and a finish byte.
async fn etmem_connection(
    mut stream: UnixStream,
    head: [u8; 4],
    daemon: Arc<Daemon>,
    access: &AccessPolicy,
    peer: Peer,
) -> Result<(), FrameError> {
    if !access.allows(&peer) {
        // As etmem: refused peers get the connection closed without a finish byte.
        tracing::warn!(uid = peer.uid, pid = ?peer.pid, "etmem-protocol client refused");
        return Ok(());
    }
    let mut line = head.to_vec();
    let mut buf = [0u8; etmem_compat::MAX_LEN];
    // etmem's client sends the whole line in one send() and then waits for
    // the reply, so read until the line parses, the limit, or a quiet moment.
    while etmem_compat::parse(&line).is_err() && line.len() < etmem_compat::MAX_LEN {
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => line.extend_from_slice(&buf[..n.min(etmem_compat::MAX_LEN - line.len())]),
            Ok(Err(e)) => return Err(FrameError::Io(e)),
        }
    }
    let (text, ok) = match etmem_compat::parse(&line) {
        Ok(req) => {
            let d = Arc::clone(&daemon);
            let reply = tokio::task::spawn_blocking(move || d.handle(req, peer)).await.unwrap_or_else(|e| {
                Response::Error(ErrorReply {
                    kind: ErrorKind::Internal,
                    message: format!("request failed: {e}"),
                })
            });
            crate::render::etmem_reply(&reply)
        }
        Err(e) => {
            tracing::warn!(error = %e, "bad etmem-protocol request");
            (format!("{}\n", ErrorKind::InvalidRequest.etmem_message()), false)
        }
    };
    // The reply text must never contain the finish bytes.
    let mut out: Vec<u8> = text
        .into_bytes()
        .into_iter()
        .filter(|b| *b != etmem_compat::FINISH_OK && *b != etmem_compat::FINISH_FAIL)
        .collect();
    out.push(if ok { etmem_compat::FINISH_OK } else { etmem_compat::FINISH_FAIL });
    stream.write_all(&out).await.map_err(FrameError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_specs() {
        assert_eq!(SocketSpec::parse("@etm").expect("ok"), SocketSpec::Abstract("etm".into()));
        assert_eq!(
            SocketSpec::parse("etmemd_socket").expect("ok"),
            SocketSpec::Abstract("etmemd_socket".into())
        );
        assert_eq!(SocketSpec::parse("/run/x.sock").expect("ok"), SocketSpec::Path("/run/x.sock".into()));
        assert_eq!(SocketSpec::parse("./x.sock").expect("ok"), SocketSpec::Path("./x.sock".into()));
        assert!(SocketSpec::parse("").is_err());
        assert!(SocketSpec::parse(&"a".repeat(108)).is_err());
    }
}
