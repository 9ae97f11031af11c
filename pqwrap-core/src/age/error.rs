//! Why an age operation failed: [`AgeError`], whose variants are the failure kinds of the
//! age specification (and of the C2SP CCTV vectors), each carrying a typed reason.
//!
//! The reasons are enums with static messages, so a caller can match on what went wrong
//! (and a test can pin it) without comparing strings.

use core::fmt;
use std::io;

use crate::kem::KemError;

use super::hpke::HpkeError;

/// Why an age operation failed. The variants are the failure kinds of the age
/// specification (and of the C2SP CCTV test vectors), so callers can tell them apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgeError {
    /// No identity (or passphrase) could unwrap any stanza of the header.
    #[error("no identity matched any of the file's recipients")]
    NoMatch,
    /// The header MAC does not verify under the recovered file key: the header was
    /// altered, or built by someone who knows the file key but not for these stanzas.
    #[error("header MAC verification failed (header tampered with)")]
    HeaderMac,
    /// The header is malformed or not canonical, or a stanza is invalid.
    #[error("malformed header: {0}")]
    Header(#[from] HeaderError),
    /// An scrypt stanza's work factor needs more memory than the caller's
    /// [`ScryptLimit`](super::ScryptLimit) allows; refused before anything was allocated.
    /// (A header failure in the age specification's terms, like any excessive work factor.)
    #[error(
        "scrypt work factor {work_factor} needs {} of memory, more than the {} this process \
         can be given",
        binary_size(*needed),
        binary_size(*limit)
    )]
    ScryptMemory {
        /// The stanza's work factor (log2 N).
        work_factor: u8,
        /// Bytes scrypt would allocate ([`scrypt_memory`](super::scrypt_memory)).
        needed: u64,
        /// The caller's bound.
        limit: u64,
    },
    /// The payload is truncated, altered, reordered or has trailing data.
    #[error("payload authentication failed: {0}")]
    Payload(#[from] PayloadError),
    /// The ASCII armor is malformed.
    #[error("malformed ASCII armor: {0}")]
    Armor(#[from] ArmorError),
    /// Encryption was refused.
    #[error("cannot encrypt: {0}")]
    Encrypt(#[from] EncryptError),
    /// The operating system's random number generator failed.
    #[error("operating system random number generator failed")]
    Random,
    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// A recipient type of age, to say which kind of stanza a [`HeaderError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StanzaKind {
    /// `X25519` (classical).
    X25519,
    /// `mlkem768x25519` (hybrid post-quantum, X-Wing through HPKE).
    MlKem768X25519,
    /// `scrypt` (passphrase).
    Scrypt,
}

impl StanzaKind {
    /// The stanza type as it appears in a header.
    pub fn tag(self) -> &'static str {
        match self {
            StanzaKind::X25519 => "X25519",
            StanzaKind::MlKem768X25519 => "mlkem768x25519",
            StanzaKind::Scrypt => "scrypt",
        }
    }

    /// What its X25519 share is called in messages.
    fn x25519_share(self) -> &'static str {
        match self {
            StanzaKind::MlKem768X25519 => "mlkem768x25519 X25519 share",
            StanzaKind::X25519 | StanzaKind::Scrypt => "X25519 share",
        }
    }

    /// What the stanza's first argument is called, and its decoded length.
    fn share(self) -> (&'static str, usize) {
        match self {
            StanzaKind::X25519 => ("share", 32),
            StanzaKind::MlKem768X25519 => ("enc", crate::kem::CIPHERTEXT_LEN),
            StanzaKind::Scrypt => ("salt", 16),
        }
    }
}

impl fmt::Display for StanzaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// Why a header is malformed: the grammar of the age specification's header, and the
/// rules of each known stanza type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The first line is not `age-encryption.org/v1`, nor any other age version line.
    #[error("not an age file")]
    NotAge,
    /// The first line names an age version other than v1.
    #[error("unsupported age version")]
    UnsupportedVersion,
    /// The input ended inside a header line.
    #[error("header is truncated (missing line end)")]
    MissingLineEnd,
    /// The input ended before the MAC line.
    #[error("header is truncated")]
    Truncated,
    /// The header is longer than [`MAX_HEADER_LEN`](super::MAX_HEADER_LEN).
    #[error("header too long")]
    TooLong,
    /// The MAC line came before any stanza.
    #[error("no stanza before the MAC line")]
    NoStanza,
    /// More stanzas than this implementation accepts.
    #[error("too many stanzas")]
    TooManyStanzas,
    /// A line that is neither a stanza (`-> `) nor the MAC line (`--- `).
    #[error("expected a stanza (\"-> \") or the MAC line")]
    ExpectedStanza,
    /// The MAC line is not `--- ` followed by the MAC.
    #[error("MAC line must be \"--- \" and the MAC")]
    MacLine,
    /// The MAC is not 32 bytes.
    #[error("MAC has the wrong length")]
    MacLength,
    /// The MAC is not canonical unpadded base64.
    #[error("MAC is not canonical base64")]
    MacEncoding,
    /// A stanza line has no type.
    #[error("stanza without a type")]
    StanzaType,
    /// A stanza's type or an argument is empty or has characters outside visible ASCII.
    #[error("invalid stanza type or argument")]
    StanzaArgument,
    /// A stanza body line is longer than 64 columns.
    #[error("stanza body line longer than 64 columns")]
    BodyLineTooLong,
    /// A stanza body is not canonical unpadded base64 (or lacks its short final line).
    #[error("stanza body is not canonical unpadded base64")]
    BodyEncoding,
    /// An `scrypt` stanza next to other stanzas.
    #[error("an scrypt stanza must be the only stanza")]
    ScryptNotAlone,
    /// A known stanza with the wrong number of arguments.
    #[error("{kind} stanza must have exactly {expected} argument(s)")]
    ArgumentCount {
        /// The stanza type.
        kind: StanzaKind,
        /// How many arguments the type has.
        expected: u8,
    },
    /// A known stanza's first argument (share, enc or salt) is not the canonical base64
    /// of the right number of bytes.
    #[error("{kind} {} is not {} canonical bytes", kind.share().0, kind.share().1)]
    Share {
        /// The stanza type.
        kind: StanzaKind,
    },
    /// A known stanza's body does not have the wrapped file key's length.
    #[error("{kind} stanza body is not 32 bytes")]
    BodyLength {
        /// The stanza type.
        kind: StanzaKind,
    },
    /// The X25519 share of a stanza is a low-order point (the shared secret would be zero).
    #[error("{} is a low-order point", kind.x25519_share())]
    LowOrderShare {
        /// The stanza type.
        kind: StanzaKind,
    },
    /// The hybrid KEM refused a stanza's encapsulation.
    #[error("{kind}: {source}")]
    Kem {
        /// The stanza type.
        kind: StanzaKind,
        /// What the KEM refused.
        source: KemError,
    },
    /// An `scrypt` work factor that is not a canonical decimal.
    #[error("scrypt work factor is not a canonical decimal")]
    WorkFactorEncoding,
    /// An `scrypt` work factor above the caller's limit.
    #[error("scrypt work factor {work_factor} exceeds the limit {limit}")]
    WorkFactorTooHigh {
        /// The stanza's work factor (log2 N).
        work_factor: u8,
        /// The largest accepted.
        limit: u8,
    },
    /// scrypt refused the parameters (cannot happen for work factors this parser accepts).
    #[error("invalid scrypt parameters")]
    ScryptParameters,
    /// The 16-byte payload nonce after the header is missing or short.
    #[error("payload nonce missing or truncated")]
    NonceMissing,
}

/// Why a payload does not authenticate, or ends wrongly (the STREAM rules of the age
/// specification).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// No chunk at all after the nonce.
    #[error("payload is missing")]
    Missing,
    /// A chunk that does not authenticate under its counter.
    #[error("chunk {index} does not authenticate (altered, reordered or truncated)")]
    Chunk {
        /// The chunk's counter.
        index: u128,
    },
    /// The input ends after a full chunk that was not the final one.
    #[error("payload truncated (no final chunk)")]
    NoFinalChunk,
    /// The input ends inside a chunk's tag.
    #[error("payload truncated (chunk shorter than its tag)")]
    ShortChunk,
    /// The final chunk is empty although the payload is not.
    #[error("final chunk is empty in a non-empty payload")]
    EmptyFinalChunk,
    /// Bytes follow the final chunk.
    #[error("trailing data after the final chunk")]
    TrailingData,
    /// The chunk counter would overflow its 11 bytes.
    #[error("too many chunks")]
    TooManyChunks,
    /// A read after an authentication failure (the reader refuses to go on).
    #[error("the payload already failed to authenticate")]
    AlreadyFailed,
}

/// Why ASCII armor is malformed (the age specification's strict PEM subset).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArmorError {
    /// More whitespace around the armor than [`MAX_WHITESPACE`](super::armor::MAX_WHITESPACE).
    #[error("more than 1024 bytes of whitespace before or after the armor")]
    Whitespace,
    /// A line longer than any armor line.
    #[error("line too long")]
    LineTooLong,
    /// The input does not start with the begin line.
    #[error("no armor begin line")]
    NoBegin,
    /// A begin line other than `-----BEGIN AGE ENCRYPTED FILE-----`.
    #[error("invalid armor begin line")]
    InvalidBegin,
    /// Anything but whitespace after the end line.
    #[error("data after the armor end line")]
    DataAfterEnd,
    /// The input ends before the end line.
    #[error("armor is truncated (no end line)")]
    Truncated,
    /// A short line that is not the last before the end line.
    #[error("short line before the end of the armor")]
    ShortLine,
    /// An empty line, or one longer than 64 columns.
    #[error("armor line is empty or longer than 64 columns")]
    LineLength,
    /// Base64 that is not canonical or not padded as the armor requires.
    #[error("invalid base64 in armor")]
    Base64,
}

/// Why a file cannot be encrypted as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// No recipient was given.
    #[error("no recipients")]
    NoRecipients,
    /// A header needs at least one stanza.
    #[error("a header needs at least one stanza")]
    NoStanzas,
    /// More recipients than a header may have.
    #[error("too many recipients")]
    TooManyRecipients,
    /// The stanzas would make the header longer than
    /// [`MAX_HEADER_LEN`](super::MAX_HEADER_LEN).
    #[error("header would be too long")]
    HeaderTooLong,
    /// Post-quantum and classical recipients together, with [`Mixing::Refuse`](super::Mixing).
    #[error(
        "refusing to mix post-quantum and classical recipients: the classical stanza would \
         make the file only classically secure"
    )]
    Mixed,
    /// An scrypt work factor outside `1..=`[`ABSOLUTE_MAX_WORK_FACTOR`](super::ABSOLUTE_MAX_WORK_FACTOR).
    #[error("scrypt work factor out of range")]
    WorkFactor,
    /// An X25519 recipient that is a low-order point.
    #[error("X25519 recipient is a low-order point")]
    LowOrderRecipient,
    /// The header's MAC does not verify under the file key it was handed with.
    #[error("the header was not made for this file key")]
    HeaderKeyMismatch,
    /// The hybrid KEM refused the recipient.
    #[error("mlkem768x25519: {0}")]
    Kem(KemError),
    /// HPKE refused to seal the file key.
    #[error("mlkem768x25519: {0}")]
    Hpke(HpkeError),
}

/// The failure kind of an [`AgeError`], without its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`AgeError::NoMatch`].
    NoMatch,
    /// See [`AgeError::HeaderMac`].
    HeaderMac,
    /// See [`AgeError::Header`].
    Header,
    /// See [`AgeError::Payload`].
    Payload,
    /// See [`AgeError::Armor`].
    Armor,
    /// See [`AgeError::Encrypt`].
    Encrypt,
    /// See [`AgeError::Random`].
    Random,
    /// See [`AgeError::Io`].
    Io,
}

impl AgeError {
    /// The failure kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AgeError::NoMatch => ErrorKind::NoMatch,
            AgeError::HeaderMac => ErrorKind::HeaderMac,
            AgeError::Header(_) | AgeError::ScryptMemory { .. } => ErrorKind::Header,
            AgeError::Payload(_) => ErrorKind::Payload,
            AgeError::Armor(_) => ErrorKind::Armor,
            AgeError::Encrypt(_) => ErrorKind::Encrypt,
            AgeError::Random => ErrorKind::Random,
            AgeError::Io(_) => ErrorKind::Io,
        }
    }

    /// Recovers an `AgeError` carried inside an `io::Error` (as the streaming readers and
    /// writers must return `io::Error`), or wraps a genuine I/O error.
    pub fn from_io(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<AgeError>()) {
            match e.into_inner().map(|b| b.downcast::<AgeError>()) {
                Some(Ok(age)) => *age,
                Some(Err(other)) => AgeError::Io(io::Error::other(other)),
                None => AgeError::Io(io::Error::other("unknown I/O error")),
            }
        } else {
            AgeError::Io(e)
        }
    }

    /// Wraps this error in an `io::Error` so it can cross a `Read`/`Write` boundary;
    /// [`AgeError::from_io`] recovers it.
    pub fn into_io(self) -> io::Error {
        match self {
            AgeError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

impl From<HeaderError> for io::Error {
    fn from(e: HeaderError) -> Self {
        AgeError::from(e).into_io()
    }
}

impl From<PayloadError> for io::Error {
    fn from(e: PayloadError) -> Self {
        AgeError::from(e).into_io()
    }
}

impl From<ArmorError> for io::Error {
    fn from(e: ArmorError) -> Self {
        AgeError::from(e).into_io()
    }
}

/// `bytes` in the largest binary unit that keeps one decimal (`4.0 GiB`), for messages.
fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut unit = 0;
    let mut v = bytes as f64;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{v:.1} {}", UNITS[unit]),
    }
}
