//! What can go wrong, typed: per file ([`Skip`], [`FileError`]) and for the whole run
//! ([`RewrapError`], [`JobError`]). [`FileError::reason`] and [`Skip::reason`] are the one
//! mapping from these to the report's [`Reason`]s.

use std::fmt;
use std::io;

use pqwrap_core::age::AgeError;
use pqwrap_core::envelope::EnvelopeError;
use pqwrap_core::sops::SopsError;

use crate::events::Reason;

/// A boxed error for the `source` of typed errors that wrap another layer's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an entry was passed over. Skips do not make a run fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Skip {
    /// A symbolic link: never followed below a root, never replaced.
    #[error("symbolic links are not followed")]
    Symlink,
    /// A FIFO, socket or device node.
    #[error("not a regular file")]
    SpecialFile,
    /// Not a file of any format in the list.
    #[error("")]
    NotEncrypted,
    /// A recognised format that pqwrap cannot re-wrap.
    #[error("{0} (not supported)")]
    UnsupportedFormat(&'static str),
    /// Passphrase-encrypted (age scrypt): no public-key wrap to replace.
    #[error("passphrase-encrypted (scrypt): not re-wrapped")]
    Passphrase,
    /// A temporary whose lock another process holds.
    #[error("a temporary of another running pqwrap")]
    TemporaryInUse,
    /// Named like a temporary but not holding the start of anything a format writes.
    #[error("named like a pqwrap temporary but does not hold a pqwrap output: left alone")]
    TemporaryNotOurs,
    /// A directory named like a temporary: not descended into.
    #[error("a directory named like a pqwrap temporary: not descended into")]
    TemporaryDirectory,
    /// A file that is a mount point (bind-mounted over a name of the tree): replacing it is
    /// impossible, and its contents may live outside the tree.
    #[error(
        "a mount point (a file mounted over this name): not replaced; re-wrap it where it is mounted from"
    )]
    MountPoint,
    /// A SOPS file whose data key only cloud or Vault keys wrap: no public-key wrap in the
    /// file for a quantum computer to break, and none that an age identity opens.
    #[error("SOPS file wrapped by cloud KMS keys only: no age entry to re-wrap")]
    CloudKmsOnly,
}

impl Skip {
    /// The report's reason.
    pub fn reason(&self) -> Reason {
        match self {
            Skip::Symlink => Reason::Symlink,
            Skip::SpecialFile => Reason::SpecialFile,
            Skip::NotEncrypted => Reason::NotEncrypted,
            Skip::UnsupportedFormat(_) => Reason::UnsupportedFormat,
            Skip::Passphrase => Reason::Passphrase,
            Skip::TemporaryInUse | Skip::TemporaryNotOurs => Reason::TemporaryInUse,
            Skip::TemporaryDirectory => Reason::TemporaryDirectory,
            Skip::MountPoint => Reason::MountPoint,
            Skip::CloudKmsOnly => Reason::CloudKms,
        }
    }
}

/// How a file was seen to change between its snapshot and the commit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Change {
    /// Fields of its status moved (each named: `inode`, `size a -> b`, `mtime`, `ctime`).
    #[error("changed while being re-wrapped ({0})")]
    Fields(String),
    /// Its name now refers to another file.
    #[error("the name now refers to another file")]
    Replaced,
    /// It was removed.
    #[error("the file was removed")]
    Removed,
    /// It shrank while its bytes were being copied.
    #[error("the original shrank while being copied")]
    Shrank,
    /// Someone else's write won: the store refused our conditional replace.
    #[error("changed by another writer: the conditional replace was refused ({0})")]
    Precondition(String),
    /// Its status could not be read to check.
    #[error("cannot check the original: {0}")]
    Stat(#[source] io::Error),
}

/// A step of staging or committing, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Creating the temporary.
    Create,
    /// Writing the new contents.
    Write,
    /// Carrying metadata (owner, mode, extended attributes, flags) over.
    Metadata,
    /// Setting the new file's times.
    Times,
    /// Making the new file durable.
    Sync,
    /// Switching the name to the new file.
    Rename,
    /// Making the rename durable.
    DirSync,
    /// Opening the original for writing (in-place re-writes).
    OpenForWrite,
    /// Writing the original in place.
    WriteInPlace,
    /// Removing a leftover temporary.
    Cleanup,
    /// Reading the committed file back.
    ReadBack,
    /// Removing a replaced old version.
    Purge,
    /// Committing a new object (a conditional write to an object store).
    Commit,
}

impl Step {
    fn describe(self) -> &'static str {
        match self {
            Step::Create => "cannot create the new file",
            Step::Write => "cannot write the new file",
            Step::Metadata => "cannot carry the file's metadata over",
            Step::Times => "cannot set the new file's times",
            Step::Sync => "cannot sync the new file",
            Step::Rename => "cannot rename the new file",
            Step::DirSync => {
                "the new file is in place but syncing its directory failed: it may not survive \
                 a crash"
            }
            Step::OpenForWrite => "cannot open for writing",
            Step::WriteInPlace => "cannot re-write in place",
            Step::Cleanup => "cannot remove leftover temporary",
            Step::ReadBack => "the committed file does not read back",
            Step::Purge => "re-wrapped, but the old version could not be deleted",
            Step::Commit => "cannot commit the new object",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Which check of a new file failed before (or after) its commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Check {
    /// It parses as its format.
    Parses,
    /// It is armored exactly when the original was.
    SameArmor,
    /// Its header is exactly the one built.
    HeaderAsBuilt,
    /// Its header carries the file key (MAC, commitment).
    CarriesFileKey,
    /// Its payload authenticates under the file key.
    PayloadAuthenticates,
    /// It decrypts with a target identity.
    Decrypts,
    /// Its header has the stanzas the targets produce.
    Shape,
    /// It can be read back.
    ReadBack,
}

impl Check {
    fn describe(self) -> &'static str {
        match self {
            Check::Parses => "the new file does not parse",
            Check::SameArmor => "the new file's armor does not match the original's",
            Check::HeaderAsBuilt => "the new file's header is not the one built",
            Check::CarriesFileKey => "the new header does not carry the file key",
            Check::PayloadAuthenticates => "the new file's payload does not authenticate",
            Check::Decrypts => "the new file does not decrypt",
            Check::Shape => "the new file's header has the wrong stanzas",
            Check::ReadBack => "cannot read the new file back",
        }
    }
}

/// A failed check of a new file: which one, and the underlying error if any.
#[derive(Debug)]
pub struct VerifyError {
    /// The check.
    pub check: Check,
    /// What the format or the store said.
    pub source: Option<BoxError>,
}

impl VerifyError {
    /// A failed check without further detail.
    pub fn new(check: Check) -> Self {
        VerifyError {
            check,
            source: None,
        }
    }

    /// A failed check caused by `source`.
    pub fn because(check: Check, source: impl Into<BoxError>) -> Self {
        VerifyError {
            check,
            source: Some(source.into()),
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.check.describe())?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Why a candidate was not re-wrapped. Every one of these makes the run fail (exit 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// Another process holds the file's lock.
    #[error("another process holds its lock (another pqwrap run?)")]
    Locked,
    /// More than one hard link: replacing this name would leave the old header on the others.
    #[error(
        "has {links} hard links: replacing this name with a new file would leave the old \
         header, with its old key wraps, readable through the other {} name(s); remove the \
         other links, or re-wrap a copy",
        links.saturating_sub(1)
    )]
    HardLinked {
        /// The link count.
        links: u64,
    },
    /// Changed under us: left alone.
    #[error("{0}")]
    Changed(#[from] Change),
    /// The file (or its directory) could not be read.
    #[error("{0}")]
    Unreadable(#[source] io::Error),
    /// None of the given identities opens the file.
    #[error("none of the given identities opens this file")]
    NoIdentity,
    /// Shaped like the targets' output, but no given target identity opens it.
    #[error(
        "none of the given identities opens this file, not even the target recipients' own: \
         it is not wrapped to them (damaged, or for somebody else's key)"
    )]
    NotTheTargets,
    /// Shaped like the targets' output and no given identity opens it: probably done by an
    /// earlier run, but nothing the run was given can tell.
    #[error(
        "no given identity opens it and its stanzas match the target recipients: probably \
         re-wrapped by an earlier run, but unverified; pass the new identity with -i to verify"
    )]
    Unverified,
    /// The age file is malformed or does not authenticate.
    #[error("{0}")]
    Age(#[source] AgeError),
    /// The age file's payload does not authenticate.
    #[error("payload: {0}")]
    AgePayload(#[source] AgeError),
    /// The native file is malformed or does not authenticate.
    #[error("{0}")]
    Native(#[source] EnvelopeError),
    /// The native file's payload does not authenticate.
    #[error("payload: {0}")]
    NativePayload(#[source] EnvelopeError),
    /// A native file takes post-quantum recipients only.
    #[error("pqwrap native files take post-quantum recipients only, not {0}")]
    ClassicalForNative(String),
    /// Building the new header failed.
    #[error("{0}")]
    Wrap(#[source] BoxError),
    /// The new file did not pass verification.
    #[error("{0}")]
    Verify(#[from] VerifyError),
    /// An I/O error at a step of staging or committing.
    #[error("{step}: {source}")]
    Io {
        /// Where.
        step: Step,
        /// What.
        #[source]
        source: io::Error,
    },
    /// Committed, but the audit log could not record it.
    #[error("re-wrapped, but the audit log could not be written: {0}")]
    Audit(#[source] BoxError),
    /// The commit thread stopped.
    #[error("the commit thread stopped")]
    CommitterGone,
    /// A SOPS file that cannot be read, opened, verified or rewritten.
    #[error("SOPS: {0}")]
    Sops(#[source] SopsError),
    /// No new recipients for this file (with `--sops-config`, for files it does not cover;
    /// a SOPS file with several key groups and only `-r`).
    #[error("{0}")]
    NoRecipients(String),
}

impl FileError {
    /// An I/O error at `step`.
    /// Whether the new file is in place although this error failed it (its directory sync
    /// failed after the rename).
    pub fn in_place_but_not_durable(&self) -> bool {
        matches!(
            self,
            FileError::Io {
                step: Step::DirSync,
                ..
            }
        )
    }

    /// An I/O error at `step`.
    pub fn io(step: Step, source: impl Into<io::Error>) -> Self {
        FileError::Io {
            step,
            source: source.into(),
        }
    }

    /// An age error met while reading a file: no identity, unreadable, or corrupt.
    pub fn from_age(e: AgeError) -> Self {
        match e {
            AgeError::NoMatch => FileError::NoIdentity,
            AgeError::Io(io) => FileError::Unreadable(io),
            other => FileError::Age(other),
        }
    }

    /// An age or native file in a job whose recipients come from SOPS creation rules only.
    pub fn no_recipients() -> Self {
        FileError::NoRecipients(
            "no recipients for this file: --sops-config gives recipients to SOPS files only; \
             add -r/-R for the others"
                .into(),
        )
    }

    /// A native-envelope error met while reading a file.
    pub fn from_native(e: EnvelopeError) -> Self {
        match e {
            EnvelopeError::NoMatch => FileError::NoIdentity,
            EnvelopeError::Io(io) => FileError::Unreadable(io),
            other => FileError::Native(other),
        }
    }

    /// The report's reason: the one mapping from errors to reasons.
    pub fn reason(&self) -> Reason {
        match self {
            FileError::Locked => Reason::Locked,
            FileError::HardLinked { .. } => Reason::HardLinked,
            FileError::Changed(_) => Reason::ChangedUnderUs,
            FileError::Unreadable(_) => Reason::Unreadable,
            FileError::NoIdentity | FileError::NotTheTargets => Reason::NoIdentity,
            FileError::Unverified => Reason::Unverified,
            FileError::Age(_) | FileError::AgePayload(_) => Reason::Corrupt,
            FileError::Native(EnvelopeError::Verify(_)) => Reason::ChangedUnderUs,
            FileError::Native(_) | FileError::NativePayload(_) => Reason::Corrupt,
            FileError::ClassicalForNative(_) | FileError::Wrap(_) => Reason::Io,
            FileError::Verify(_) => Reason::VerifyFailed,
            FileError::Io { .. } | FileError::Audit(_) | FileError::CommitterGone => Reason::Io,
            FileError::Sops(e) => match e {
                SopsError::GroupLocked { .. }
                | SopsError::NoAgeEntry { .. }
                | SopsError::BelowThreshold { .. } => Reason::NoIdentity,
                SopsError::Plan(_) => Reason::NoRecipients,
                SopsError::Unsupported(_) => Reason::UnsupportedFormat,
                SopsError::Verify(_) => Reason::VerifyFailed,
                SopsError::Random | SopsError::Wrap(_) => Reason::Io,
                _ => Reason::Corrupt,
            },
            FileError::NoRecipients(_) => Reason::NoRecipients,
        }
    }
}

/// Why a whole run could not go on (as opposed to one file failing).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RewrapError {
    /// The worker threads could not be started.
    #[error("cannot start the worker threads: {0}")]
    Threads(#[source] BoxError),
    /// The commit thread panicked.
    #[error("the commit thread panicked")]
    Committer,
    /// The store could not list its candidates at all (a missing bucket, bad credentials).
    #[error("{0}")]
    Store(#[source] BoxError),
}

/// Why a [`crate::Job`] could not be built from its keys and options.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// No recipient to wrap to.
    #[error("no recipients given")]
    NoRecipients,
    /// A classical recipient without [`crate::Classical::Allow`].
    #[error(
        "{0} is a classical (X25519) recipient: files wrapped to it stay exposed to a future \
         quantum computer; pass --allow-classical to use it anyway"
    )]
    Classical(String),
}
