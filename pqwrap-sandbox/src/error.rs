//! The typed errors of the sandbox.

use std::path::PathBuf;

use thiserror::Error;

/// Why a command was not admitted: nothing was started.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AdmissionError {
    /// The token did not verify (signature, pinned key, audience, time, revocation).
    #[error("the token is not valid")]
    Token(#[from] pqwrap_core::token::TokenError),
    /// The token expires before anything could run.
    #[error("the token expired at {exp} (now {now})")]
    Expired {
        /// Its `exp`.
        exp: u64,
        /// The time of admission.
        now: u64,
    },
    /// The token is revoked by the revocation source.
    #[error("the token is revoked ({0})")]
    Revoked(String),
    /// A revocation source cannot say whether the token is revoked (it cannot be read, or
    /// does not cover the token): nothing starts without an answer.
    #[error("the token's revocation status is unknown ({0}); nothing was started")]
    RevocationUnknown(String),
    /// The command could not be found on `PATH` or is not an executable file.
    #[error("command {0:?} not found (or not an executable regular file)")]
    NotFound(String),
    /// The command's path has a `..` or is otherwise not canonical (it is refused, not
    /// tidied, as in the token's own checks).
    #[error("command path refused: {0}; give the granted path itself")]
    NotCanonical(String),
    /// The command's name or path is not UTF-8 (grants are UTF-8 paths).
    #[error("command {0:?} is not a UTF-8 path")]
    NotUtf8(String),
    /// The resolved command is not a granted command.
    #[error("{0}")]
    Denied(pqwrap_core::token::Denied),
}

/// Why the sandbox could not be set up or run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The command was not admitted.
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    /// The kernel cannot enforce the token as written (and `--best-effort` was not given).
    #[error("the kernel cannot enforce this token as written: {}", .0.join("; "))]
    Unenforceable(Vec<String>),
    /// A `--system-paths` file is malformed.
    #[error("system paths file, line {line}: {what}")]
    SystemPaths {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// A path that must be opened for a rule could not be.
    #[error("cannot open {path} for a sandbox rule")]
    RulePath {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Building or applying the Landlock ruleset failed.
    #[error("cannot build the Landlock ruleset")]
    Landlock(#[from] landlock::RulesetError),
    /// Building or applying the seccomp filter failed.
    #[error("cannot apply the seccomp filter")]
    Seccomp(#[from] seccompiler::Error),
    /// Compiling the seccomp rules failed.
    #[error("cannot compile the seccomp filter")]
    SeccompRules(#[from] seccompiler::BackendError),
    /// Starting the egress proxy failed.
    #[error("cannot start the egress proxy")]
    Proxy(#[source] std::io::Error),
    /// Dropping capabilities or another process attribute failed.
    #[error("cannot {what}")]
    Process {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The command could not be started.
    #[error("cannot start {command}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// The audit log could not be written.
    #[error("cannot write the audit log")]
    Audit(#[from] pqwrap_core::audit::AuditError),
    /// The revocation source could not be read.
    #[error("revocation source {path}: {what}")]
    Revocation {
        /// The source.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A Token Status List file cannot be used.
    #[error("status list {path}: {problem}")]
    StatusList {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: StatusListProblem,
    },
}

/// Why a Token Status List file cannot be used (each fails closed).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StatusListProblem {
    /// It cannot be opened or read (e.g. it is missing).
    #[error("cannot be read: {0}")]
    Read(std::io::Error),
    /// It is larger than any status list can be.
    #[error("{0} bytes is larger than a status list can be")]
    TooLarge(u64),
    /// It does not verify against the pinned keys, is malformed, or is past its `exp`.
    #[error("does not verify: {0}")]
    Invalid(pqwrap_core::token::TokenError),
    /// It has no `exp`, so it cannot show that it is current.
    #[error("has no expiry (exp), so it cannot show that it is current")]
    NoExpiry,
    /// It was signed before the list accepted earlier in this run: an old list put back.
    #[error("was signed at {iat}, before the list already accepted (signed at {newest})")]
    Older {
        /// Its `iat`.
        iat: u64,
        /// The `iat` of the list accepted before.
        newest: u64,
    },
}

impl SandboxError {
    pub(crate) fn process(what: &'static str, e: impl Into<std::io::Error>) -> SandboxError {
        SandboxError::Process {
            what,
            source: e.into(),
        }
    }
}
