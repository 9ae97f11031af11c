//! Revocation, asked before the start and polled during the run.
//!
//! The supervisor only knows [`RevocationSource`]; [`RevocationFile`] is the revocation list
//! of `pqwrap token verify --revoked` (one hex cti per line), read again at every poll (it
//! is small and bounded, and a modification time can miss a same-length rewrite).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pqwrap_core::token::keys::hex_lower;
use pqwrap_core::token::{RevocationList, VerifiedToken};

use crate::error::SandboxError;

/// What a revocation source says about a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Not revoked.
    Valid,
    /// Revoked; the text says which cti (the token's or an ancestor's).
    Revoked(String),
}

/// Something that can say whether a token is revoked, polled every
/// [`poll_interval`](RevocationSource::poll_interval) while the agent runs.
pub trait RevocationSource: Send {
    /// Whether `token` is revoked now. A source that cannot be read answers `Err`, and the
    /// supervisor fails closed: the agent is ended.
    fn check(&mut self, token: &VerifiedToken) -> Result<Status, SandboxError>;

    /// How often the supervisor asks during the run.
    fn poll_interval(&self) -> Duration;

    /// A name for messages and the audit log.
    fn describe(&self) -> String;

    /// [`check`](RevocationSource::check) for admission, where an unreadable source refuses.
    fn status(&mut self, token: &VerifiedToken) -> Status {
        match self.check(token) {
            Ok(s) => s,
            Err(e) => Status::Revoked(format!("cannot be checked: {e}")),
        }
    }
}

/// How often a revocation file is looked at during the run.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// Largest revocation file read (a cti line is 33 bytes: about 30,000 entries).
pub const MAX_LIST_LEN: u64 = 1 << 20;

/// A revocation list file, parsed again at every check.
pub struct RevocationFile {
    path: PathBuf,
    interval: Duration,
    list: RevocationList,
}

impl RevocationFile {
    /// Reads the list at `path` now (a malformed or unreadable file is an error).
    pub fn open(path: &Path, interval: Duration) -> Result<RevocationFile, SandboxError> {
        let mut f = RevocationFile {
            path: path.to_owned(),
            interval,
            list: RevocationList::new(),
        };
        f.refresh()?;
        Ok(f)
    }

    fn err(&self, what: impl Into<String>) -> SandboxError {
        SandboxError::Revocation {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    fn refresh(&mut self) -> Result<(), SandboxError> {
        let file = std::fs::File::open(&self.path).map_err(|e| self.err(e.to_string()))?;
        let meta = file.metadata().map_err(|e| self.err(e.to_string()))?;
        if meta.len() > MAX_LIST_LEN {
            return Err(self.err(format!("larger than {MAX_LIST_LEN} bytes")));
        }
        let mut text = String::new();
        file.take(MAX_LIST_LEN + 1)
            .read_to_string(&mut text)
            .map_err(|e| self.err(e.to_string()))?;
        self.list = RevocationList::parse(&text).map_err(|e| self.err(e.to_string()))?;
        Ok(())
    }
}

impl RevocationSource for RevocationFile {
    fn check(&mut self, token: &VerifiedToken) -> Result<Status, SandboxError> {
        self.refresh()?;
        let c = token.claims();
        if self.list.contains(&c.cti) {
            return Ok(Status::Revoked(format!("cti {}", hex_lower(&c.cti))));
        }
        if let Some(a) = c.ancestors.iter().find(|a| self.list.contains(a)) {
            return Ok(Status::Revoked(format!("ancestor cti {}", hex_lower(a))));
        }
        Ok(Status::Valid)
    }

    fn poll_interval(&self) -> Duration {
        self.interval
    }

    fn describe(&self) -> String {
        format!("revocation list {}", self.path.display())
    }
}
