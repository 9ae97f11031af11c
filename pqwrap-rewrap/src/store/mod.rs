//! Where encrypted files live: the [`Store`] trait, and its implementations (one module
//! each). A store lists candidates, opens one (its bytes, and a snapshot that detects a
//! change), stages a replacement, and commits staged replacements durably; a filesystem can
//! also re-write a file in place.

#[cfg(any(feature = "s3", feature = "cloud"))]
pub mod bucket;
#[cfg(feature = "cloud")]
pub mod cloud;
pub mod fs;
#[cfg(feature = "s3")]
pub mod s3;

use std::path::{Path, PathBuf};

use pqwrap_core::envelope::SlotIo;

use crate::blob::Blob;
use crate::error::{Change, FileError, Skip};
use crate::format::{Body, InPlace};

/// What a listing yields for one entry.
#[derive(Debug)]
pub enum Listed<E> {
    /// A candidate: opened, detected and planned by the engine.
    Candidate(E),
    /// Named like a temporary of this tool: possibly the leftover of a killed run.
    Leftover(E),
    /// Passed over (a symlink, a special file, a directory named like a temporary, ...).
    Skipped {
        /// Its name.
        name: PathBuf,
        /// Why.
        skip: Skip,
    },
    /// Could not be listed or examined.
    Unreadable {
        /// Its name, when known.
        name: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
}

/// Why a candidate could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// It is (now) something the store passes over, such as a symlink.
    #[error("{0}")]
    Skip(Skip),
    /// It cannot be worked on.
    #[error("{0}")]
    Fail(FileError),
    /// It is gone, or it is an inode this run met already under another name it was given
    /// (overlapping roots, its own outputs): nothing to report.
    #[error("gone")]
    Gone,
    /// Another name of an inode this run has just re-written in place (a hard link).
    #[error("re-wrapped in this run through another hard link")]
    DoneThisRun,
}

/// How an open candidate is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Re-wrapping: the store takes whatever lock or pin it needs against other runs.
    Rewrap,
    /// Reading only (`scan`): no lock.
    Inspect,
}

/// An open candidate: its bytes as of its snapshot, and a way to tell whether it changed.
pub trait Source: Send {
    /// Its name, for reports.
    fn name(&self) -> &Path;

    /// Its bytes, of the snapshot's length.
    fn blob(&self) -> &dyn Blob;

    /// `Ok` if it is still exactly as opened and its name still refers to it.
    fn check_unchanged(&self) -> Result<(), Change>;
}

/// A replacement ready to be committed.
pub trait Staged: Send {
    /// The new contents as written, for the check before the commit.
    fn blob(&self) -> &dyn Blob;

    /// The original it replaces.
    fn source(&self) -> &dyn Source;
}

/// The in-place write a format hands the store: gets the original's slot I/O, returns the new
/// header's hash when known.
pub type ApplyInPlace<'f> = dyn FnMut(&mut dyn SlotIo) -> Result<Option<String>, FileError> + 'f;

/// How a store wants staged replacements committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batching {
    /// In batches, by one committer: the store shares the cost of durability between many
    /// files (a filesystem's group commit).
    Group,
    /// Each on its own, by the worker that staged it (object stores: conditional writes).
    Single,
}

/// What became of one staged replacement.
pub struct CommitOutcome {
    /// `Ok` if the replacement is durably in place.
    pub result: Result<(), FileError>,
    /// Bytes of the new file.
    pub bytes: u64,
    /// Bytes that crossed the network for this file (object stores).
    pub transferred: Option<u64>,
    /// Things not carried over that did not stop the re-wrap.
    pub warnings: Vec<String>,
    /// The committed file as read back from the store, for the format's check after the
    /// commit (stores that can read their own writes back cheaply and may not be trusted to
    /// have stored what was sent).
    pub read_back: Option<Box<dyn Blob + Send>>,
    /// Work left for once the read-back check passed (deleting the version replaced, in a
    /// versioned bucket); its error fails the file, whose new contents stay committed.
    pub after_check: Option<AfterCheck>,
    /// The replaced version that remains readable (a versioned bucket keeps it): it still
    /// holds the old wrapping.
    pub kept_version: Option<String>,
}

/// See [`CommitOutcome::after_check`].
pub type AfterCheck = Box<dyn FnOnce() -> Result<(), FileError> + Send>;

/// What became of a leftover temporary.
#[derive(Debug, PartialEq, Eq)]
pub enum Leftover {
    /// Removed: no live process owned it.
    Removed,
    /// A live run owns it; left alone.
    InUse,
    /// Gone before we got to it.
    Gone,
    /// Named like a temporary, but not holding the start of anything a format writes.
    NotOurs,
}

/// A place holding encrypted files. See the module documentation of the crate for how to add
/// one.
pub trait Store: Sync {
    /// A listed candidate.
    type Entry: Send;
    /// An open candidate.
    type Source: Source;
    /// A staged replacement.
    type Staged: Staged;

    /// Every entry under the store's roots, streamed: memory does not grow with the number of
    /// entries. An error that stops the listing altogether is returned as the last item's
    /// `Unreadable`.
    fn list(&self) -> Box<dyn Iterator<Item = Listed<Self::Entry>> + Send + '_>;

    /// An entry's name, for reports.
    fn name_of<'e>(&self, entry: &'e Self::Entry) -> &'e Path;

    /// An entry's size, if the listing knows it or it can be had cheaply (progress totals).
    fn size_hint(&self, entry: &Self::Entry) -> Option<u64> {
        let _ = entry;
        None
    }

    /// Opens a candidate and snapshots it before anything is read.
    fn open(&self, entry: Self::Entry, purpose: Purpose) -> Result<Self::Source, OpenError>;

    /// Whether the candidate may be replaced by a new file at all (a hard-linked file may
    /// not: the old header would stay readable through its other names).
    fn check_replaceable(&self, src: &Self::Source) -> Result<(), FileError>;

    /// Writes the new contents beside the original, without committing them.
    fn stage(&self, src: Self::Source, body: Body<'_>) -> Result<Self::Staged, FileError>;

    /// How [`Store::commit`] wants to be called.
    fn batching(&self) -> Batching;

    /// Commits staged replacements, each only if its original is unchanged; returns one
    /// outcome per input, in order, with the caller's payload.
    fn commit<T: Send>(&self, batch: Vec<(Self::Staged, T)>) -> Vec<(T, CommitOutcome)>;

    /// Whether [`Store::write_in_place`] works.
    fn in_place(&self) -> InPlace;

    /// Re-writes the (unchanged) original in place through `apply`, and makes it durable.
    /// Returns what `apply` returned (the new header's hash).
    fn write_in_place(
        &self,
        src: &Self::Source,
        apply: &mut ApplyInPlace<'_>,
    ) -> Result<Option<String>, FileError>;

    /// Removes a leftover temporary if no live run owns it and `is_own_output` says its first
    /// bytes are what a format writes.
    fn remove_leftover(
        &self,
        entry: Self::Entry,
        is_own_output: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Leftover, FileError>;

    /// How many workers and how large a batch fit the store's resources (open descriptors),
    /// given those asked for.
    fn fit(&self, jobs: usize, batch_files: usize) -> (usize, usize) {
        (jobs, batch_files)
    }
}
