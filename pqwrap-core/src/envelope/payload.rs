//! STREAM-style AES-256-GCM payload (FORMAT.md §6) and the streaming `Encryptor` /
//! `Decryptor`.

use std::io::{self, Read, Write};

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};

use super::header::Preamble;
use super::{EnvelopeError, Header, UnlockedHeader};
use crate::keys::{Identity, Recipient};

/// Plaintext bytes per chunk.
pub const CHUNK_SIZE: usize = 65536;
/// AES-GCM tag length.
pub const TAG_SIZE: usize = 16;
/// Ciphertext bytes per full chunk.
pub const CT_CHUNK_SIZE: usize = CHUNK_SIZE + TAG_SIZE;

/// The payload AEAD under one file's payload key.
pub(crate) struct PayloadCipher(Aes256Gcm);

impl PayloadCipher {
    pub fn new(key: &[u8; 32]) -> Self {
        PayloadCipher(Aes256Gcm::new(&(*key).into()))
    }

    fn nonce(counter: u64, last: bool) -> Nonce<aes_gcm::aead::consts::U12> {
        let mut n = [0u8; 12];
        n[3..11].copy_from_slice(&counter.to_be_bytes());
        n[11] = u8::from(last);
        Nonce::from(n)
    }

    /// Encrypts `buf` (a plaintext chunk) in place and appends the tag.
    pub fn seal(&self, counter: u64, last: bool, buf: &mut Vec<u8>) -> Result<(), EnvelopeError> {
        let tag = self
            .0
            .encrypt_inout_detached(&Self::nonce(counter, last), b"", buf.as_mut_slice().into())
            .map_err(|_| EnvelopeError::Crypto("AES-GCM seal"))?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// Opens a ciphertext chunk (with its tag) in place; on success the first
    /// `buf.len() - 16` bytes are the plaintext. On failure `buf` is unchanged.
    pub fn open(&self, counter: u64, last: bool, buf: &mut [u8]) -> bool {
        if buf.len() < TAG_SIZE {
            return false;
        }
        let (ct, tag) = buf.split_at_mut(buf.len() - TAG_SIZE);
        let mut t = [0u8; TAG_SIZE];
        t.copy_from_slice(tag);
        self.0
            .decrypt_inout_detached(&Self::nonce(counter, last), b"", ct.into(), &t.into())
            .is_ok()
    }

    /// Opens the piece `buf` that is chunk `counter`, `is_final` telling whether it is the
    /// last piece of the payload, and classifies failures as FORMAT.md §6 says. Returns the
    /// plaintext length (a prefix of `buf`).
    pub fn open_piece(
        &self,
        counter: u64,
        is_final: bool,
        buf: &mut [u8],
    ) -> Result<usize, EnvelopeError> {
        let pt_len = buf.len().saturating_sub(TAG_SIZE);
        if is_final {
            if buf.len() < TAG_SIZE {
                return Err(EnvelopeError::Truncated);
            }
            if self.open(counter, true, buf) {
                if pt_len == 0 && counter != 0 {
                    return Err(EnvelopeError::NonCanonicalPayload);
                }
                return Ok(pt_len);
            }
            if buf.len() == CT_CHUNK_SIZE && self.open(counter, false, buf) {
                return Err(EnvelopeError::Truncated);
            }
            Err(EnvelopeError::PayloadAuth { chunk: counter })
        } else {
            if self.open(counter, false, buf) {
                return Ok(pt_len);
            }
            if self.open(counter, true, buf) {
                return Err(EnvelopeError::TrailingData);
            }
            Err(EnvelopeError::PayloadAuth { chunk: counter })
        }
    }
}

/// Plaintext length of a payload of `ct_len` ciphertext bytes, if that length is possible.
pub fn plaintext_len(ct_len: u64) -> Option<u64> {
    let full = ct_len / CT_CHUNK_SIZE as u64;
    let rem = ct_len % CT_CHUNK_SIZE as u64;
    if rem == 0 {
        if full == 0 {
            None
        } else {
            Some(full * CHUNK_SIZE as u64)
        }
    } else if rem < TAG_SIZE as u64 {
        None
    } else {
        Some(full * CHUNK_SIZE as u64 + rem - TAG_SIZE as u64)
    }
}

/// Options for [`Encryptor`].
#[derive(Clone, Debug, Default)]
pub struct EncryptOptions {
    /// Slot size in bytes (multiple of 4096, 4096..=1 MiB). `None`: the default of
    /// FORMAT.md §7 (8 KiB, which holds six X-Wing stanzas, for up to four recipients;
    /// always room for two more recipients in a later in-place re-wrap).
    pub slot_size: Option<u32>,
}

/// Streaming encryption to the native format. Memory is bounded by one chunk (64 KiB)
/// whatever the input size.
///
/// The header is written by [`Encryptor::new`]; the payload as data is written; the last
/// chunk by [`Encryptor::finish`], which **must** be called (a file without it is detected
/// as truncated).
///
/// ```
/// use std::io::{Read, Write};
/// use pqwrap_core::envelope::{Decryptor, Encryptor};
/// use pqwrap_core::keys::Identity;
///
/// let id = Identity::generate_hybrid()?;
/// let mut enc = Encryptor::new(Vec::new(), &[id.to_recipient()])?;
/// enc.write_all(b"hello, archive")?;
/// let file = enc.finish()?;
///
/// let mut dec = Decryptor::new(&file[..], &[id])?;
/// let mut out = Vec::new();
/// dec.read_to_end(&mut out)?;
/// assert_eq!(out, b"hello, archive");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Encryptor<W: Write> {
    inner: W,
    cipher: PayloadCipher,
    counter: u64,
    buf: Vec<u8>,
    /// Set from sealing a chunk until it is written, and left set if that failed: `buf`
    /// then holds ciphertext and a tag, and neither a retried `write` nor `finish` may use
    /// it. A failed encryptor refuses all further work.
    failed: bool,
}

/// The error of every call on an [`Encryptor`] after one failed.
fn encryptor_failed() -> EnvelopeError {
    EnvelopeError::Io(io::Error::other(
        "an earlier write of this file failed; it cannot be completed",
    ))
}

impl<W: Write> Encryptor<W> {
    /// Starts a file for `recipients` (hybrid X-Wing recipients only) with default options.
    pub fn new(writer: W, recipients: &[Recipient]) -> Result<Self, EnvelopeError> {
        Self::with_options(writer, recipients, &EncryptOptions::default())
    }

    /// Starts a file with explicit options.
    pub fn with_options(
        writer: W,
        recipients: &[Recipient],
        options: &EncryptOptions,
    ) -> Result<Self, EnvelopeError> {
        let key = super::FileKey::generate()?;
        let mut salt = [0u8; super::SALT_LEN];
        crate::kem::os_random(&mut salt)?;
        Self::start(writer, recipients, options, key, salt, None)
    }

    /// Deterministic variant for known-answer tests: fixed file key, salt and one X-Wing
    /// `eseed` per recipient. Never use it for real data: reusing any of these is fatal.
    #[cfg(feature = "hazmat")]
    pub fn new_derand(
        writer: W,
        recipients: &[Recipient],
        options: &EncryptOptions,
        file_key: super::FileKey,
        payload_salt: [u8; super::SALT_LEN],
        eseeds: &[[u8; crate::kem::ESEED_LEN]],
    ) -> Result<Self, EnvelopeError> {
        if eseeds.len() != recipients.len() {
            return Err(EnvelopeError::Crypto("one eseed per recipient"));
        }
        Self::start(
            writer,
            recipients,
            options,
            file_key,
            payload_salt,
            Some(eseeds),
        )
    }

    fn start(
        mut writer: W,
        recipients: &[Recipient],
        options: &EncryptOptions,
        key: super::FileKey,
        salt: [u8; super::SALT_LEN],
        eseeds: Option<&[[u8; crate::kem::ESEED_LEN]]>,
    ) -> Result<Self, EnvelopeError> {
        let schedule = super::schedule::Schedule::derive(&key, &salt);
        let body = super::build_body(&key, &schedule, salt, recipients, eseeds)?;
        let slot_size = match options.slot_size {
            Some(s) => Preamble::new(s)?.slot_size(),
            None => super::default_slot_size(body.encoded_len())?,
        };
        let preamble = Preamble::new(slot_size)?;
        let area = super::encode_fresh_area(&preamble, 1, body, &schedule)?;
        writer.write_all(&area)?;
        Ok(Encryptor {
            inner: writer,
            cipher: PayloadCipher::new(&schedule.payload_key),
            counter: 0,
            buf: Vec::with_capacity(CT_CHUNK_SIZE),
            failed: false,
        })
    }

    fn flush_full_chunk(&mut self) -> Result<(), EnvelopeError> {
        if self.failed {
            return Err(encryptor_failed());
        }
        let next = self
            .counter
            .checked_add(1)
            .ok_or(EnvelopeError::Crypto("chunk counter overflow"))?;
        self.failed = true;
        self.cipher.seal(self.counter, false, &mut self.buf)?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        self.counter = next;
        self.failed = false;
        Ok(())
    }

    /// Writes the final chunk, flushes, and returns the writer.
    pub fn finish(mut self) -> Result<W, EnvelopeError> {
        if self.failed {
            return Err(encryptor_failed());
        }
        self.cipher.seal(self.counter, true, &mut self.buf)?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Encryptor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(encryptor_failed().into_io());
        }
        if data.is_empty() {
            return Ok(0);
        }
        // A full buffer is sealed as non-final only once more data arrives, so that a
        // plaintext of an exact multiple of the chunk size ends with a full final chunk.
        if self.buf.len() == CHUNK_SIZE {
            self.flush_full_chunk().map_err(EnvelopeError::into_io)?;
        }
        let n = data.len().min(CHUNK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Streaming decryption of a native file. Memory is bounded by the header area (at most
/// 2 MiB + 4 KiB) and one chunk; plaintext is released chunk by chunk, each only after its
/// tag verified. Truncation is detected at the end: treat a read error at any point as a
/// failure of the whole file. Errors are `io::Error`s of kind `InvalidData` wrapping an
/// [`EnvelopeError`]; [`EnvelopeError::from_io`] recovers it.
pub struct Decryptor<R: Read> {
    inner: R,
    header: Header,
    cipher: PayloadCipher,
    counter: u64,
    /// Ciphertext buffer: one chunk plus one byte of look-ahead.
    buf: Vec<u8>,
    /// Bytes of `buf` holding read-ahead ciphertext.
    filled: usize,
    /// Plaintext of the current chunk is `buf[pos..end]`.
    pos: usize,
    end: usize,
    done: bool,
    failed: Option<EnvelopeError>,
}

impl<R: Read> Decryptor<R> {
    /// Reads the header from `reader`, unwraps the file key with one of `identities`,
    /// checks the key commitment and the header MAC.
    pub fn new(mut reader: R, identities: &[Identity]) -> Result<Self, EnvelopeError> {
        let header = Header::read_from(&mut reader)?;
        let unlocked = header.unlock(identities)?;
        Ok(Self::from_unlocked(reader, unlocked))
    }

    /// Continues with a header already unlocked (`reader` positioned at the payload).
    pub fn from_unlocked(reader: R, unlocked: UnlockedHeader) -> Self {
        let cipher = PayloadCipher::new(&unlocked.schedule.payload_key);
        Decryptor {
            inner: reader,
            header: unlocked.header,
            cipher,
            counter: 0,
            buf: vec![0u8; CT_CHUNK_SIZE + 1],
            filled: 0,
            pos: 0,
            end: 0,
            done: false,
            failed: None,
        }
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Decrypts the next chunk into `buf[..n]`.
    fn next_chunk(&mut self) -> Result<(), EnvelopeError> {
        // Fill to one chunk plus one byte, so we know whether this chunk is the final one.
        while self.filled < self.buf.len() {
            match self.inner.read(&mut self.buf[self.filled..]) {
                Ok(0) => break,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(EnvelopeError::Io(e)),
            }
        }
        let is_final = self.filled <= CT_CHUNK_SIZE;
        let piece_len = self.filled.min(CT_CHUNK_SIZE);
        if is_final && piece_len == 0 {
            return Err(EnvelopeError::Truncated);
        }
        let pt = self
            .cipher
            .open_piece(self.counter, is_final, &mut self.buf[..piece_len])?;
        self.pos = 0;
        self.end = pt;
        if is_final {
            self.done = true;
        } else {
            self.counter = self
                .counter
                .checked_add(1)
                .ok_or(EnvelopeError::Crypto("chunk counter overflow"))?;
        }
        Ok(())
    }
}

impl<R: Read> Read for Decryptor<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(e.clone_for_io());
        }
        loop {
            if self.pos < self.end {
                let n = out.len().min(self.end - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                if self.pos == self.end && !self.done {
                    // Move the look-ahead byte to the front for the next chunk.
                    self.buf.copy_within(CT_CHUNK_SIZE..self.filled, 0);
                    self.filled -= CT_CHUNK_SIZE;
                    self.pos = 0;
                    self.end = 0;
                }
                return Ok(n);
            }
            if self.done || out.is_empty() {
                return Ok(0);
            }
            if let Err(e) = self.next_chunk() {
                let io = e.clone_for_io();
                self.failed = Some(e);
                return Err(io);
            }
            // An empty chunk 0 (empty plaintext) is final: loop returns Ok(0).
        }
    }
}

/// Decrypts a whole native file from `reader` into `writer` with typed errors; returns the
/// plaintext length. Convenience over [`Decryptor`].
pub fn decrypt_to<R: Read, W: Write>(
    reader: R,
    identities: &[Identity],
    mut writer: W,
) -> Result<u64, EnvelopeError> {
    let mut dec = Decryptor::new(reader, identities)?;
    let mut buf = vec![0u8; CHUNK_SIZE];
    let mut total = 0u64;
    loop {
        let n = dec.read(&mut buf).map_err(EnvelopeError::from_io)?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok(total)
}
