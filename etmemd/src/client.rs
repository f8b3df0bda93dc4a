//! The client side of the protocol, used by the `etmem` CLI.

use crate::protocol::{self, FrameError, MAX_RESPONSE_BYTES, Request, Response};
use crate::server::SocketSpec;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// How long the CLI waits for an answer. Starting a project creates swap
/// devices and starts engines, which can take a while on a busy host.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
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
}

/// Send one request and wait for its response.
pub fn request(spec: &SocketSpec, req: &Request) -> Result<Response, ClientError> {
    let addr = spec.to_addr().map_err(|source| ClientError::Connect { spec: spec.clone(), source })?;
    let mut stream = UnixStream::connect_addr(&addr)
        .map_err(|source| ClientError::Connect { spec: spec.clone(), source })?;
    let frame_err = |source| ClientError::Frame { spec: spec.clone(), source };
    stream.set_read_timeout(Some(RESPONSE_TIMEOUT)).map_err(|e| frame_err(FrameError::Io(e)))?;
    protocol::write_frame(&mut stream, req).map_err(frame_err)?;
    let body = protocol::read_frame(&mut stream, MAX_RESPONSE_BYTES).map_err(frame_err)?;
    protocol::decode(&body).map_err(frame_err)
}
