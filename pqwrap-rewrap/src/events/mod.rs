//! What a run tells the world, through [`Events`] (ripgrep's `Sink` is the model): one
//! [`Record`] per entry met, and the files committed durably before they are recorded. The
//! engine knows no printer; the JSON-lines report ([`JsonLines`]), the audit log
//! ([`AuditTrail`]) and the CLI's progress bar are all `Events`.

mod audit;
mod report;
mod summary;

use std::path::Path;

use serde::Serialize;

pub use audit::AuditTrail;
pub use report::JsonLines;
pub use summary::Summary;

use crate::error::BoxError;
use crate::format::Info;

/// How one entry ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Re-wrapped and committed durably.
    Rewrapped,
    /// A dry run: would have been re-wrapped.
    WouldRewrap,
    /// Verified as already wrapped exactly to the targets: nothing to do.
    AlreadyDone,
    /// Not a candidate (see the reason): does not make the run fail.
    Skipped,
    /// A leftover temporary of a killed run, removed (or, in a dry run, that would be).
    Cleaned,
    /// A candidate that was not re-wrapped (see reason and error): the run fails.
    Failed,
}

/// Why an entry was skipped or failed: the report's `reason` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// A symbolic link: never followed, never replaced.
    Symlink,
    /// A FIFO, socket or device.
    SpecialFile,
    /// Not an encrypted file of a format pqwrap knows.
    NotEncrypted,
    /// A format pqwrap recognises but cannot re-wrap (OpenPGP).
    UnsupportedFormat,
    /// No given identity opens it, and its stanzas are what the targets produce: probably
    /// re-wrapped by an earlier run, but not verified (pass the new identity to verify).
    Unverified,
    /// Passphrase-encrypted (age scrypt): no public-key wrap to replace.
    Passphrase,
    /// A pqwrap temporary held by another running job, or not holding a pqwrap output.
    TemporaryInUse,
    /// A directory named like a pqwrap temporary: not descended into.
    TemporaryDirectory,
    /// A mount point inside the tree.
    MountPoint,
    /// A file or directory that could not be read.
    Unreadable,
    /// Another process holds the file's lock (another pqwrap run).
    Locked,
    /// More than one hard link: replacing this name would leave the old header on the others.
    HardLinked,
    /// The file changed while it was being re-wrapped: left alone.
    ChangedUnderUs,
    /// None of the given identities opens the file.
    NoIdentity,
    /// The file's header or payload is malformed or does not authenticate.
    Corrupt,
    /// The new file did not pass verification before commit.
    VerifyFailed,
    /// An I/O error while writing or committing.
    Io,
    /// A SOPS file wrapped by cloud KMS keys only.
    CloudKms,
    /// No new recipients for this file (or not one per key group).
    NoRecipients,
}

impl Reason {
    /// Words for people.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Symlink => "symlink",
            Reason::SpecialFile => "special file",
            Reason::NotEncrypted => "not encrypted",
            Reason::UnsupportedFormat => "format not supported",
            Reason::Unverified => "unverified",
            Reason::Passphrase => "passphrase-encrypted",
            Reason::TemporaryInUse => "temporary of a running job",
            Reason::TemporaryDirectory => "directory named like a temporary",
            Reason::MountPoint => "mount point",
            Reason::Unreadable => "unreadable",
            Reason::Locked => "locked by another run",
            Reason::HardLinked => "hard-linked",
            Reason::ChangedUnderUs => "changed under us",
            Reason::NoIdentity => "no matching identity",
            Reason::Corrupt => "corrupt",
            Reason::VerifyFailed => "verification failed",
            Reason::Io => "I/O error",
            Reason::CloudKms => "cloud KMS only",
            Reason::NoRecipients => "no recipients for it",
        }
    }
}

/// One line of the report: an entry and how it ended.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// The entry's name (a path, or a URL for object stores). Non-UTF-8 bytes are replaced
    /// (U+FFFD); `path_lossy` says so.
    pub path: String,
    /// True when `path` is not the exact name (it was not valid UTF-8).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_lossy: bool,
    /// The file's format, when known (`age`, `age-armored`, `pqwrap`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'a str>,
    /// Stanza (recipient) types before.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub old_stanzas: &'a [String],
    /// Stanza types after (or that would be written).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub new_stanzas: &'a [String],
    /// How it ended.
    pub outcome: Outcome,
    /// Why, for skipped and failed entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The error or explanation, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Things not carried over that did not stop the re-wrap.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub warnings: &'a [String],
    /// A remark for people (e.g. that an interrupted re-wrap was finished).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'a str>,
    /// Size of the file after the operation (bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Bytes that crossed the network for this entry (object stores).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transferred: Option<u64>,
    /// The version this re-wrap replaced, still readable in a versioned bucket (it holds the
    /// old wrapping until it is deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_version_kept: Option<&'a str>,
}

impl<'a> Record<'a> {
    /// A record with only a name and an outcome.
    pub fn new(path: &Path, outcome: Outcome) -> Record<'a> {
        let lossy = path.to_string_lossy();
        Record {
            path_lossy: path.to_str().is_none(),
            path: lossy.into_owned(),
            format: None,
            old_stanzas: &[],
            new_stanzas: &[],
            outcome,
            reason: None,
            error: None,
            warnings: &[],
            note: None,
            bytes: None,
            transferred: None,
            old_version_kept: None,
        }
    }

    /// With what a format knows of the file.
    pub fn with_info(mut self, info: &'a Info) -> Self {
        self.format = info.format;
        self.old_stanzas = &info.old_stanzas;
        self.new_stanzas = &info.new_stanzas;
        self.note = info.note.as_deref();
        self
    }

    /// With a reason and a message (an empty message is left out).
    pub fn because(mut self, reason: Reason, error: impl Into<String>) -> Self {
        self.reason = Some(reason);
        let e = error.into();
        self.error = (!e.is_empty()).then_some(e);
        self
    }

    /// `<path>: failed (<reason>): <error>`, for people.
    pub fn failure_line(&self) -> String {
        let mut s = format!("{}: failed", self.path);
        if let Some(r) = self.reason {
            s.push_str(&format!(" ({})", r.describe()));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!(": {e}"));
        }
        s
    }
}

/// A file whose replacement is in place, told to [`Events::committed`] before its record.
#[derive(Debug)]
pub struct Committed<'a> {
    /// Its name.
    pub name: &'a Path,
    /// What the format knew.
    pub info: &'a Info,
    /// SHA-256 (hex) of the header now in place, when known only after writing.
    pub new_header_sha256: Option<&'a str>,
    /// Whether the replacement is known to survive a power cut.
    pub durable: Durable,
}

/// Whether a committed file's replacement is known to survive a power cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durable {
    /// Its contents and its name were synced.
    Confirmed,
    /// Its name refers to the new file, but syncing its directory failed: a power cut may
    /// bring the old file back. The file is reported failed; the audit log still says what
    /// happened to it.
    Unconfirmed,
}

/// Where a run reports. Every method has a no-op default; implement what you need.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use pqwrap_rewrap::events::{Events, Outcome, Record};
///
/// /// Counts failed files.
/// struct Failures(AtomicU64);
/// impl Events for Failures {
///     fn record(&self, rec: &Record<'_>) {
///         if rec.outcome == Outcome::Failed {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
/// ```
pub trait Events: Sync {
    /// One entry ended (every entry met ends as exactly one record).
    fn record(&self, rec: &Record<'_>) {
        let _ = rec;
    }

    /// These files were just replaced durably. An error fails them in the report: they are
    /// re-wrapped, but whatever this records (the audit log) does not say so.
    fn committed(&self, files: &[Committed<'_>]) -> Result<(), BoxError> {
        let _ = files;
        Ok(())
    }
}

/// Several [`Events`] as one, in order.
pub struct Tee<'a>(pub Vec<&'a dyn Events>);

impl Events for Tee<'_> {
    fn record(&self, rec: &Record<'_>) {
        for e in &self.0 {
            e.record(rec);
        }
    }

    fn committed(&self, files: &[Committed<'_>]) -> Result<(), BoxError> {
        for e in &self.0 {
            e.committed(files)?;
        }
        Ok(())
    }
}

/// No events.
impl Events for () {}
