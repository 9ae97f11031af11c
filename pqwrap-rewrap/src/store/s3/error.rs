//! What can go wrong talking to an object store.

use super::creds::CredentialsError;
use super::xml::ApiError;

/// An object-store request that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    /// The request did not get an answer (connection refused or dropped, timeout, TLS).
    #[error("{op}: {source}")]
    Transport {
        /// The operation.
        op: &'static str,
        /// What the client said.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The server answered with an error status.
    #[error("{op}: HTTP {status}{}{}", if code.is_empty() { String::new() } else { format!(" {code}") }, if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        /// The operation.
        op: &'static str,
        /// The HTTP status.
        status: u16,
        /// The S3 error code (`NoSuchKey`, `AccessDenied`, ...), if the body had one.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The answer was not what the API promises.
    #[error("{op}: unexpected answer: {what}")]
    BadResponse {
        /// The operation.
        op: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// No credentials could be found or refreshed.
    #[error("credentials: {0}")]
    Credentials(#[from] CredentialsError),
    /// The endpoint or bucket name is unusable.
    #[error("endpoint: {0}")]
    Endpoint(String),
}

impl S3Error {
    pub(crate) fn status(op: &'static str, status: u16, e: ApiError) -> Self {
        S3Error::Status {
            op,
            status,
            code: e.code,
            message: e.message,
        }
    }

    /// No such key, version or upload.
    pub fn is_not_found(&self) -> bool {
        matches!(self, S3Error::Status { status: 404, .. })
    }

    /// A precondition (`If-Match`, `x-amz-copy-source-if-match`) was not met: someone else
    /// wrote the object.
    pub fn is_precondition(&self) -> bool {
        matches!(self, S3Error::Status { status: 412, .. })
            || matches!(self, S3Error::Status { code, .. } if code == "PreconditionFailed")
    }

    /// The bucket does not exist.
    pub fn is_no_such_bucket(&self) -> bool {
        matches!(self, S3Error::Status { code, .. } if code == "NoSuchBucket")
    }

    /// Credentials refused or access denied.
    pub fn is_denied(&self) -> bool {
        matches!(
            self,
            S3Error::Status {
                status: 401 | 403,
                ..
            }
        ) || matches!(self, S3Error::Credentials(_))
    }

    /// The error as an `io::Error`, for blob reads.
    pub fn into_io(self) -> std::io::Error {
        let kind = if self.is_not_found() {
            std::io::ErrorKind::NotFound
        } else {
            std::io::ErrorKind::Other
        };
        std::io::Error::new(kind, self)
    }
}
