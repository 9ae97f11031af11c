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
//! let header = age::Header::wrap(&file_key, &[id.to_recipient()], age::Mixing::Refuse)?;
//! let mut w = age::encrypt_writer(Vec::new(), &file_key, &header, age::Armor::Armored)?;
//! w.write_all(b"hello")?;
//! let file = w.finish()?;
//!
//! let dec = age::Decryptor::new(&file[..])?;
//! assert_eq!(dec.armor(), age::Armor::Armored);
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
mod error;
mod header;
pub mod hpke;
mod mlkem768x25519;
mod primitives;
mod scrypt;
pub mod stream;
mod x25519;

pub use error::{
    AgeError, ArmorError, EncryptError, ErrorKind, HeaderError, PayloadError, StanzaKind,
};
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

/// How an age file is encoded: the binary format, or the binary format inside the age
/// specification's strict ASCII armor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Armor {
    /// The binary format.
    Binary,
    /// ASCII armor (`-----BEGIN AGE ENCRYPTED FILE-----`) around the binary format.
    Armored,
}

/// Whether one header may wrap a file key to post-quantum and classical recipients together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mixing {
    /// Refuse: such a file is only as strong as its classical stanza, and the age
    /// specification says it should not exist.
    Refuse,
    /// Allow it (a deliberate transition choice of the caller).
    Allow,
}

/// Cheap format detection from the first bytes of a file (at least [`DETECT_LEN`] bytes, or
/// the whole file if shorter, for a reliable answer): `Some(Armor::Binary)` for a binary age
/// file (any version — the header parser refuses unsupported ones), `Some(Armor::Armored)`
/// for an armored one (up to [`armor::MAX_WHITESPACE`] bytes of leading whitespace allowed),
/// `None` otherwise.
pub fn is_age(prefix: &[u8]) -> Option<Armor> {
    if prefix.starts_with(VERSION_PREFIX) {
        return Some(Armor::Binary);
    }
    let start = prefix
        .iter()
        .position(|b| !armor::is_armor_whitespace(*b))
        .unwrap_or(prefix.len());
    let rest = prefix.get(start..).unwrap_or_default();
    if rest.starts_with(armor::BEGIN.as_bytes()) {
        Some(Armor::Armored)
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
    armor: Armor,
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
                .then_some(Armor::Armored)
        });
        let chained = io::Cursor::new(prefix).chain(input);
        let mut input = match detected {
            // A capacity of one plaintext chunk lets the payload reader's full-chunk
            // reads (64 KiB + tag) bypass the buffer once the header is consumed.
            Some(Armor::Binary) => {
                AgeInput::Binary(BufReader::with_capacity(stream::CHUNK_LEN, chained))
            }
            Some(Armor::Armored) => AgeInput::Armored(BufReader::with_capacity(
                stream::ENCRYPTED_CHUNK_LEN + 1,
                armor::ArmoredReader::new(BufReader::new(chained)),
            )),
            None => return Err(HeaderError::NotAge.into()),
        };
        let armor = if matches!(input, AgeInput::Armored(_)) {
            Armor::Armored
        } else {
            Armor::Binary
        };
        let header = Header::read_from(&mut input, MAX_HEADER_LEN)?;
        Ok(Self {
            header,
            armor,
            input,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Whether the file was ASCII-armored.
    pub fn armor(&self) -> Armor {
        self.armor
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
/// [`Header::wrap`]) and the payload nonce, in the `armor` asked for, and returns the plaintext
/// writer. Call [`AgeWriter::finish`] at the end. A header whose MAC does not verify under
/// `file_key` is refused before anything is written: the file could never be opened.
pub fn encrypt_writer<W: Write>(
    output: W,
    file_key: &FileKey,
    header: &Header,
    armor: Armor,
) -> Result<AgeWriter<W>, AgeError> {
    header
        .verify_mac(file_key)
        .map_err(|_| EncryptError::HeaderKeyMismatch)?;
    let mut out = match armor {
        Armor::Armored => AgeOutput::Armored(armor::ArmoredWriter::new(output)?),
        Armor::Binary => AgeOutput::Binary(output),
    };
    out.write_all(header.as_bytes())?;
    Ok(AgeWriter(stream::StreamWriter::new(file_key, out)?))
}

/// Builds a header for `recipients` under a fresh file key. See [`Header::wrap`].
pub fn new_header(recipients: &[Recipient], mixing: Mixing) -> Result<(FileKey, Header), AgeError> {
    let file_key = FileKey::generate()?;
    let header = Header::wrap(&file_key, recipients, mixing)?;
    Ok((file_key, header))
}
