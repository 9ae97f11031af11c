//! The client side: one request, one response.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::proto::{self, ProtoError, Request, Response};

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot connect to the broker at {path}: {source}")]
    Connect {
        /// The socket.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The exchange failed.
    #[error("broker at {path}: {source}")]
    Exchange {
        /// The socket.
        path: std::path::PathBuf,
        /// Why.
        source: ProtoError,
    },
}

/// Sends `req` to the broker at `socket` and reads its response, each within `timeout`.
pub fn call(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let s = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.to_owned(),
        source,
    })?;
    let exchange = |source| ClientError::Exchange {
        path: socket.to_owned(),
        source,
    };
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(|e| exchange(e.into()))?;
    let mut w = &s;
    proto::write_request(&mut w, req).map_err(exchange)?;
    let mut r = &s;
    proto::read_response(&mut r).map_err(exchange)
}
