//! Encrypted-file formats: how each is recognised, classified without keys, and re-wrapped
//! with them. [`FORMATS`] is the one list every command goes through (`decrypt`, `inspect`,
//! `scan`, `rewrap`, and the cleanup of leftover temporaries), so a format is named and
//! recognised the same way everywhere.
//!
//! A format looks at a file through a [`Blob`] and returns a [`Plan`]; it never writes. The
//! engine carries the plan out through a [`crate::Store`].

mod age;
mod native;
mod openpgp;
mod sops;

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

pub use self::age::Age;
pub use self::native::Native;
pub use self::openpgp::OpenPgp;
pub use self::sops::Sops;

use crate::blob::Blob;
use crate::error::{FileError, Skip, VerifyError};
use crate::job::Job;

/// Every format, in detection order. Adding a format is one module and one line here.
pub static FORMATS: &[&dyn Format] = &[&Native, &Age, &OpenPgp, &Sops];

/// Bytes read from the start of a file in one read: enough to recognise every format (age's
/// armor may follow up to 1 KiB of whitespace) and, for most files, to hold the whole
/// header. Formats read on from where these bytes end.
pub const HEAD_LEN: usize = 8 * 1024;

/// Which format, for callers that act on it themselves (`decrypt`, `inspect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FormatId {
    /// age v1 (C2SP), with `mlkem768x25519` recipients.
    Age,
    /// pqwrap's native envelope.
    Native,
    /// OpenPGP messages: recognised, not supported.
    OpenPgp,
    /// SOPS files (YAML, JSON, dotenv, INI, binary).
    Sops,
    /// A format defined outside this crate.
    External,
}

/// Whether a file is ASCII-armored (age's own armor, or OpenPGP's).
pub use pqwrap_core::age::Armor;

/// What detection found.
#[derive(Clone, Copy)]
pub struct Detected {
    /// The format.
    pub format: &'static dyn Format,
    /// The name reports give this variant (`age`, `age-armored`, `pqwrap`, `openpgp`).
    pub label: &'static str,
    /// Armored or binary.
    pub armor: Armor,
}

impl std::fmt::Debug for Detected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detected")
            .field("format", &self.format.id())
            .field("label", &self.label)
            .field("armor", &self.armor)
            .finish()
    }
}

/// Recognises the format of a file from its first bytes (up to [`HEAD_LEN`]).
///
/// ```
/// use pqwrap_rewrap::format::{detect, FormatId};
/// let found = detect(b"age-encryption.org/v1\n-> X25519 ...").unwrap();
/// assert_eq!((found.format.id(), found.label), (FormatId::Age, "age"));
/// let pgp = detect(b"-----BEGIN PGP MESSAGE-----\n").unwrap();
/// assert_eq!(pgp.format.id(), FormatId::OpenPgp);
/// assert!(detect(b"hello").is_none());
/// ```
pub fn detect(head: &[u8]) -> Option<Detected> {
    detect_in(FORMATS, head)
}

/// [`detect`] over another list of formats (tests, or a program with formats of its own).
pub fn detect_in(formats: &[&'static dyn Format], head: &[u8]) -> Option<Detected> {
    formats.iter().find_map(|f| {
        f.detect(head).map(|(label, armor)| Detected {
            format: *f,
            label,
            armor,
        })
    })
}

/// [`detect_in`], then the formats recognised anywhere in a file ([`Format::detect_file`],
/// SOPS's metadata at the end), for a file no format recognised by its head.
pub fn detect_file_in(
    formats: &[&'static dyn Format],
    head: &[u8],
    blob: &dyn Blob,
) -> io::Result<Option<Detected>> {
    if let Some(d) = detect_in(formats, head) {
        return Ok(Some(d));
    }
    for f in formats {
        if let Some((label, armor)) = f.detect_file(head, blob)? {
            return Ok(Some(Detected {
                format: *f,
                label,
                armor,
            }));
        }
    }
    Ok(None)
}

/// Whether `head`, the first bytes (at most 64) of a file named like a temporary, is what a
/// format writes at the start of a file: nothing yet, or all or part of the start of one.
/// Only such a file is removed as the leftover of a killed run.
pub fn is_own_output(head: &[u8]) -> bool {
    never_written(head) || FORMATS.iter().any(|f| f.is_own_output(head))
}

/// Whether `head` shows that nothing was written at the start of the file: it is empty, or
/// all zeros — what a power cut leaves when a later part of the file reached the disk and
/// its first sector did not.
pub fn never_written(head: &[u8]) -> bool {
    head.iter().all(|&b| b == 0)
}

/// How a file is protected, from its header alone (no key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Protection {
    /// Only post-quantum (hybrid) recipients.
    PostQuantum,
    /// Only classical recipients (X25519): exposed to harvest-now-decrypt-later.
    Classical,
    /// Both: the classical stanza still exposes the file key.
    Mixed,
    /// Passphrase-wrapped (age scrypt): no public-key wrap for a quantum computer to break; as
    /// strong as the passphrase.
    Passphrase,
    /// Wrapped by cloud KMS keys only (SOPS): no public-key wrap in the file.
    CloudKms,
    /// Recognised as encrypted, but the protection cannot be told (unknown stanza types,
    /// malformed header, unsupported format).
    Unknown,
    /// Not an encrypted file of a known format.
    NotEncrypted,
}

impl Protection {
    /// Every variant, in display order.
    pub const ALL: [Protection; 7] = [
        Protection::PostQuantum,
        Protection::Classical,
        Protection::Mixed,
        Protection::Passphrase,
        Protection::CloudKms,
        Protection::Unknown,
        Protection::NotEncrypted,
    ];

    /// Words for people.
    pub fn describe(self) -> &'static str {
        match self {
            Protection::PostQuantum => "post-quantum only",
            Protection::Classical => "classical only",
            Protection::Mixed => "mixed",
            Protection::Passphrase => "passphrase",
            Protection::CloudKms => "cloud KMS only",
            Protection::Unknown => "unknown",
            Protection::NotEncrypted => "not encrypted",
        }
    }
}

/// Whether the store can re-write a file's bytes in place (a filesystem) or only replace it
/// whole (an object store).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InPlace {
    /// Header slots can be re-written in place, keeping the inode.
    Supported,
    /// Only whole replacements.
    Unsupported,
}

/// What a format gets to look at: the file's name and bytes, the first of them already read,
/// and what the store can do.
pub struct Input<'s> {
    /// The file's name as the store gives it (for formats whose recipients depend on it).
    pub name: &'s Path,
    /// The file, of its snapshot's length.
    pub blob: &'s dyn Blob,
    /// Its first bytes (up to [`HEAD_LEN`]).
    pub head: &'s [u8],
    /// Whether in-place re-writes are possible.
    pub in_place: InPlace,
}

/// What a format knows of a file, for the report and the audit log.
#[derive(Clone, Debug, Default)]
pub struct Info {
    /// `age`, `age-armored`, `pqwrap`, ...
    pub format: Option<&'static str>,
    /// Stanza (recipient) types found.
    pub old_stanzas: Vec<String>,
    /// Stanza types written (or that would be).
    pub new_stanzas: Vec<String>,
    /// A remark for the report.
    pub note: Option<String>,
    /// SHA-256 (hex) of the header replaced, for the audit log.
    pub old_header_sha256: Option<String>,
    /// SHA-256 (hex) of the header written, for the audit log (when known before writing).
    pub new_header_sha256: Option<String>,
}

impl Info {
    /// Info naming only the format.
    pub fn of(format: &'static str) -> Self {
        Info {
            format: Some(format),
            ..Info::default()
        }
    }
}

/// Writes new contents: called with the original and a buffered writer on the replacement.
pub type StreamFn<'a> = Box<dyn FnOnce(&dyn Blob, &mut dyn Write) -> io::Result<()> + Send + 'a>;

/// How the new contents of a replaced file are produced.
pub enum Body<'a> {
    /// `prefix`, then the original's bytes from `tail_offset` to its end, unchanged: the store
    /// copies them without reading them through the process where it can (`copy_file_range`,
    /// server-side copies).
    PrefixCopy {
        /// The new leading bytes (a new header).
        prefix: Vec<u8>,
        /// Where in the original the bytes to keep start.
        tail_offset: u64,
    },
    /// Anything else (armored files, re-encryption).
    Stream(StreamFn<'a>),
}

/// A check of the new contents, run before the commit (and again on what the store reads
/// back after it, where the store does). `Err` leaves the original alone.
pub type Verify<'a> = Box<dyn Fn(&dyn Blob) -> Result<(), VerifyError> + Send + Sync + 'a>;

/// The in-place header write for files that support it: gets the slot I/O of the locked,
/// re-checked original. Returns the SHA-256 (hex) of the header area now in place, if known.
pub type InPlaceFn<'a> = Box<
    dyn FnOnce(&mut dyn pqwrap_core::envelope::SlotIo) -> Result<Option<String>, FileError>
        + Send
        + 'a,
>;

/// What to do with one file.
pub enum Plan<'a> {
    /// Not a candidate: reported, does not fail the run.
    Skip {
        /// What is known.
        info: Info,
        /// Why.
        skip: Skip,
    },
    /// Verified as wrapped exactly to the targets: nothing to write.
    AlreadyDone {
        /// What is known.
        info: Info,
    },
    /// A candidate that cannot be re-wrapped.
    Fail {
        /// What is known.
        info: Info,
        /// Why.
        error: FileError,
    },
    /// Replace the file with new contents (a temporary renamed over it, a new object).
    Replace {
        /// For the report.
        info: Info,
        /// The new contents.
        body: Body<'a>,
        /// Run on the new contents before they are committed.
        verify: Verify<'a>,
    },
    /// Re-write in place, keeping the inode (only when [`InPlace::Supported`]).
    InPlace {
        /// For the report.
        info: Info,
        /// The re-write.
        apply: InPlaceFn<'a>,
    },
}

impl Plan<'_> {
    /// A failure.
    pub fn fail(info: Info, error: FileError) -> Self {
        Plan::Fail { info, error }
    }
}

/// One encrypted-file format. Implementations are unit structs listed in [`FORMATS`].
pub trait Format: Sync {
    /// Which format this is.
    fn id(&self) -> FormatId;

    /// Its name for people (`age v1`, `pqwrap envelope v1`, `OpenPGP`).
    fn name(&self) -> &'static str;

    /// Whether `head` (a file's first bytes, up to [`HEAD_LEN`]) is this format: the label
    /// reports give the variant, and whether it is armored.
    fn detect(&self, head: &[u8]) -> Option<(&'static str, Armor)>;

    /// How the file is protected, without any key (what `scan` counts). I/O errors are
    /// returned; a malformed file is [`Protection::Unknown`].
    fn classify(&self, found: &Detected, input: &Input<'_>) -> io::Result<Protection>;

    /// What to do with the file, given the job's keys and options.
    fn plan<'a>(&'a self, job: &'a Job, found: &Detected, input: &Input<'_>) -> Plan<'a>;

    /// Whether `head` is all or part of the start of a file this format writes.
    fn is_own_output(&self, head: &[u8]) -> bool;

    /// For formats that show anywhere in a file rather than at its start (SOPS keeps its
    /// metadata at the end): whether the file is this format, reading what it needs of
    /// `blob` within a bound of its own. Called only for files no format recognised by their
    /// head.
    fn detect_file(
        &self,
        head: &[u8],
        blob: &dyn Blob,
    ) -> io::Result<Option<(&'static str, Armor)>> {
        let _ = (head, blob);
        Ok(None)
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex_lower(&sha2::Sha256::digest(bytes))
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Whether `head` starts like `magic`, or `magic` starts like `head` (a cut-off start).
pub(crate) fn starts_like(head: &[u8], magic: &[u8]) -> bool {
    magic.starts_with(head) || head.starts_with(magic)
}
