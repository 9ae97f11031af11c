//! The age v1 file format (C2SP age), classical and post-quantum.
//!
//! An age file is a text header — a version line, one stanza per recipient, and a MAC line
//! — followed by a 16-byte nonce and a STREAM-encrypted payload (ChaCha20-Poly1305, 64 KiB
//! chunks). The file is optionally ASCII-armored. This module reads and writes all of it:
//!
//! * [`Header`]: strict, canonical parsing ([`Header::parse`], [`Header::read_from`]); the
//!   exact bytes are kept ([`Header::as_bytes`]) and re-serialise byte-identically
//!   ([`Header::encode`]); the MAC is checked in constant time when a file key is
//!   recovered ([`Header::unwrap_file_key`]); [`Header::wrap`] builds a fresh header.
//! * Recipient stanzas: `X25519`, `scrypt` and `mlkem768x25519` (X-Wing through HPKE base
//!   mode, see [`hpke`]).
//! * [`stream`]: the payload, as streaming `Read` /
//!   `Write` adapters with bounded memory, and [`stream::verify_payload`].
//! * [`armor`]: strict ASCII armor, streaming in both directions.
//! * [`Decryptor`] / [`encrypt_writer`]: the whole file in one call each way.
//!
//! ```
//! use std::io::{Read, Write};
//! use pqwrap_core::age;
//! use pqwrap_core::keys::Identity;
//!
//! let id = Identity::generate_hybrid()?;
//! let file_key = age::FileKey::generate()?;
//! let header = age::Header::wrap(&file_key, &[id.to_recipient()], false)?;
//! let mut w = age::encrypt_writer(Vec::new(), &file_key, &header, true)?;
//! w.write_all(b"hello")?;
//! let file = w.finish()?;
//!
//! let dec = age::Decryptor::new(&file[..])?;
//! assert!(dec.is_armored());
//! let mut r = dec.decrypt(&[id], &[])?;
//! let mut out = Vec::new();
//! r.read_to_end(&mut out)?;
//! assert_eq!(out, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};

use zeroize::Zeroizing;

pub mod armor;
mod header;
pub mod hpke;
mod mlkem768x25519;
mod primitives;
mod scrypt;
pub mod stream;
mod x25519;

pub use header::{Header, MAX_HEADER_LEN, Protection, Stanza};
pub use scrypt::{
    DEFAULT_MAX_WORK_FACTOR, DEFAULT_WORK_FACTOR, Passphrase, ScryptLimit, scrypt_memory,
};

use crate::keys::{Identity, Recipient};

/// Length of an age file key.
pub const FILE_KEY_LEN: usize = 16;

/// The first line of every binary age v1 file, without its newline.
pub const VERSION_LINE: &str = "age-encryption.org/v1";

/// The prefix every age header starts with, whatever its version.
const VERSION_PREFIX: &[u8] = b"age-encryption.org/";

/// The 16-byte symmetric key that encrypts an age payload. Zeroized on drop; Debug
/// prints nothing secret.
#[derive(Clone)]
pub struct FileKey(Zeroizing<[u8; FILE_KEY_LEN]>);

impl FileKey {
    /// A fresh file key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, AgeError> {
        let mut k = Zeroizing::new([0u8; FILE_KEY_LEN]);
        getrandom::fill(&mut k[..]).map_err(|_| AgeError::Random)?;
        Ok(Self(k))
    }
    /// From raw bytes (for tests and known-answer vectors).
    pub fn from_bytes(bytes: [u8; FILE_KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }
    /// The secret bytes.
    pub fn expose(&self) -> &[u8; FILE_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileKey(<redacted>)")
    }
}

impl PartialEq for FileKey {
    /// Constant-time comparison.
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&*other.0).into()
    }
}
impl Eq for FileKey {}

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
    /// The header is malformed or not canonical, or a stanza is invalid (bad share, bad
    /// lengths, excessive scrypt work factor, scrypt not alone, unsupported version).
    #[error("malformed header: {0}")]
    Header(String),
    /// An scrypt stanza's work factor needs more memory than the caller's
    /// [`ScryptLimit`] allows; refused before anything was allocated. (A header failure in
    /// the age specification's terms, like any excessive work factor.)
    #[error(
        "scrypt work factor {work_factor} needs {} of memory, more than the {} this process \
         can be given",
        binary_size(*needed),
        binary_size(*limit)
    )]
    ScryptMemory {
        /// The stanza's work factor (log2 N).
        work_factor: u8,
        /// Bytes scrypt would allocate ([`scrypt_memory`]).
        needed: u64,
        /// The caller's bound.
        limit: u64,
    },
    /// The payload is truncated, altered, reordered or has trailing data.
    #[error("payload authentication failed: {0}")]
    Payload(String),
    /// The ASCII armor is malformed.
    #[error("malformed ASCII armor: {0}")]
    Armor(String),
    /// Encryption was refused (e.g. post-quantum and classical recipients mixed).
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
    /// The operating system's random number generator failed.
    #[error("operating system random number generator failed")]
    Random,
    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// The failure kind of an [`AgeError`], without its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// Whether a detected age file is ASCII-armored (`Armored(true)`) or binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Armored(pub bool);

/// Cheap format detection from the first bytes of a file (at least [`DETECT_LEN`] bytes, or
/// the whole file if shorter, for a reliable answer): `Some(Armored(false))` for a binary age
/// file (any version — the header parser refuses unsupported ones), `Some(Armored(true))`
/// for an armored one (up to [`armor::MAX_WHITESPACE`] bytes of leading whitespace allowed),
/// `None` otherwise.
pub fn is_age(prefix: &[u8]) -> Option<Armored> {
    if prefix.starts_with(VERSION_PREFIX) {
        return Some(Armored(false));
    }
    let start = prefix
        .iter()
        .position(|b| !armor::is_armor_whitespace(*b))
        .unwrap_or(prefix.len());
    let rest = prefix.get(start..).unwrap_or_default();
    if rest.starts_with(armor::BEGIN.as_bytes()) {
        Some(Armored(true))
    } else {
        None
    }
}

/// The input of a [`Decryptor`]: the binary bytes, read directly or through the armor
/// decoder.
pub enum AgeInput<R: Read> {
    /// A binary age file.
    Binary(BufReader<R>),
    /// An armored age file, decoded on the fly.
    Armored(BufReader<armor::ArmoredReader<BufReader<R>>>),
}

impl<R: Read> Read for AgeInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            AgeInput::Binary(r) => r.read(buf),
            AgeInput::Armored(r) => r.read(buf),
        }
    }
}

impl<R: Read> BufRead for AgeInput<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match self {
            AgeInput::Binary(r) => r.fill_buf(),
            AgeInput::Armored(r) => r.fill_buf(),
        }
    }
    fn consume(&mut self, amt: usize) {
        match self {
            AgeInput::Binary(r) => r.consume(amt),
            AgeInput::Armored(r) => r.consume(amt),
        }
    }
}

/// The input after format detection: the peeked prefix, then the rest of the source.
pub type Prefixed<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// Bytes peeked for format detection: enough to see the armor's begin line after the most
/// leading whitespace the armor reader accepts.
pub const DETECT_LEN: usize = armor::MAX_WHITESPACE + armor::BEGIN.len() + 2;

/// Reads up to `n` bytes (fewer only at end of input).
fn read_prefix<R: Read>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    r.by_ref().take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Reads an age file: detects armor, parses the header (bounded by [`MAX_HEADER_LEN`]),
/// then unwraps the file key and hands back a streaming plaintext reader.
pub struct Decryptor<R: Read> {
    header: Header,
    armored: bool,
    input: AgeInput<Prefixed<R>>,
}

impl<R: Read> Decryptor<R> {
    /// Detects the encoding and reads the header. Fails with [`AgeError::Header`] if the
    /// input is not an age file or its header is malformed, [`AgeError::Armor`] if its
    /// armor is malformed.
    pub fn new(mut input: R) -> Result<Self, AgeError> {
        let prefix = read_prefix(&mut input, DETECT_LEN)?;
        // Anything that looks like a PEM-style block goes to the armor decoder, so a
        // malformed armor (wrong label, case, spacing) is reported as an armor failure.
        let detected = is_age(&prefix).or_else(|| {
            let start = prefix
                .iter()
                .position(|b| !armor::is_armor_whitespace(*b))?;
            prefix
                .get(start..)?
                .starts_with(b"-----")
                .then_some(Armored(true))
        });
        let chained = io::Cursor::new(prefix).chain(input);
        let mut input = match detected {
            // A capacity of one plaintext chunk lets the payload reader's full-chunk
            // reads (64 KiB + tag) bypass the buffer once the header is consumed.
            Some(Armored(false)) => {
                AgeInput::Binary(BufReader::with_capacity(stream::CHUNK_LEN, chained))
            }
            Some(Armored(true)) => AgeInput::Armored(BufReader::with_capacity(
                stream::ENCRYPTED_CHUNK_LEN + 1,
                armor::ArmoredReader::new(BufReader::new(chained)),
            )),
            None => return Err(AgeError::Header("not an age file".into())),
        };
        let header = Header::read_from(&mut input, MAX_HEADER_LEN)?;
        Ok(Self {
            header,
            armored: detected == Some(Armored(true)),
            input,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Whether the file was ASCII-armored.
    pub fn is_armored(&self) -> bool {
        self.armored
    }

    /// Unwraps the file key with `identities` (and `passphrases`, for an scrypt stanza),
    /// verifies the header MAC and returns a reader of the authenticated plaintext.
    /// Uses [`DEFAULT_MAX_WORK_FACTOR`]; see [`Decryptor::decrypt_with_file_key`] to unwrap
    /// with other limits.
    pub fn decrypt(
        self,
        identities: &[Identity],
        passphrases: &[Passphrase],
    ) -> Result<stream::StreamReader<AgeInput<Prefixed<R>>>, AgeError> {
        let file_key =
            self.header
                .unwrap_file_key(identities, passphrases, DEFAULT_MAX_WORK_FACTOR)?;
        self.decrypt_with_file_key(&file_key)
    }

    /// Verifies the header MAC under `file_key` and returns a reader of the authenticated
    /// plaintext. Reads the payload nonce now: a missing or short nonce is a header error.
    pub fn decrypt_with_file_key(
        self,
        file_key: &FileKey,
    ) -> Result<stream::StreamReader<AgeInput<Prefixed<R>>>, AgeError> {
        self.header.verify_mac(file_key)?;
        stream::StreamReader::new(file_key, self.input)
    }

    /// The remaining input (the payload nonce and the payload), e.g. to copy it unchanged.
    pub fn into_payload(self) -> (Header, AgeInput<Prefixed<R>>) {
        (self.header, self.input)
    }
}

/// The output of [`encrypt_writer`]: the binary bytes, written directly or armored.
pub enum AgeOutput<W: Write> {
    /// Binary output.
    Binary(W),
    /// ASCII-armored output.
    Armored(armor::ArmoredWriter<W>),
}

impl<W: Write> Write for AgeOutput<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            AgeOutput::Binary(w) => w.write(buf),
            AgeOutput::Armored(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            AgeOutput::Binary(w) => w.flush(),
            AgeOutput::Armored(w) => w.flush(),
        }
    }
}

impl<W: Write> AgeOutput<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            AgeOutput::Binary(w) => Ok(w),
            AgeOutput::Armored(w) => w.finish(),
        }
    }
}

/// Writer of a whole age file, from [`encrypt_writer`]: takes plaintext; call
/// [`AgeWriter::finish`] at the end.
pub struct AgeWriter<W: Write>(stream::StreamWriter<AgeOutput<W>>);

impl<W: Write> AgeWriter<W> {
    /// Seals the final chunk, closes the armor if any, and returns the output.
    pub fn finish(self) -> Result<W, AgeError> {
        let out = self.0.finish()?;
        out.finish().map_err(AgeError::from_io)
    }
}

impl<W: Write> Write for AgeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Starts writing an age file: writes `header` (already wrapping `file_key`, e.g. from
/// [`Header::wrap`]) and the payload nonce, armored if asked, and returns the plaintext
/// writer. Call [`AgeWriter::finish`] at the end. A header whose MAC does not verify under
/// `file_key` is refused before anything is written: the file could never be opened.
pub fn encrypt_writer<W: Write>(
    output: W,
    file_key: &FileKey,
    header: &Header,
    armor: bool,
) -> Result<AgeWriter<W>, AgeError> {
    header
        .verify_mac(file_key)
        .map_err(|_| AgeError::Encrypt("the header was not made for this file key".into()))?;
    let mut out = if armor {
        AgeOutput::Armored(armor::ArmoredWriter::new(output)?)
    } else {
        AgeOutput::Binary(output)
    };
    out.write_all(header.as_bytes())?;
    Ok(AgeWriter(stream::StreamWriter::new(file_key, out)?))
}

/// Builds a header for `recipients` under a fresh file key. See [`Header::wrap`].
pub fn new_header(
    recipients: &[Recipient],
    allow_mixed: bool,
) -> Result<(FileKey, Header), AgeError> {
    let file_key = FileKey::generate()?;
    let header = Header::wrap(&file_key, recipients, allow_mixed)?;
    Ok((file_key, header))
}
