//! The age payload: a 16-byte nonce, then STREAM (ChaCha20-Poly1305) over 64 KiB chunks.
//!
//! The payload key is HKDF-SHA-256(ikm = file key, salt = nonce, info = "payload"). Chunk
//! `i` is sealed under the nonce `i` (11 bytes, big-endian) ‖ `last` (1 byte, 0x01 for the
//! final chunk). Every chunk but the last holds exactly 64 KiB of plaintext; the last one
//! holds 1 byte to 64 KiB, or nothing when the whole payload is empty. A short chunk is
//! final; a full one is final if it authenticates as such, and then the input must end
//! there. Truncation, reordering, trailing data and a spurious empty final chunk all fail.
//!
//! [`StreamReader`] releases a chunk's plaintext only after its tag verifies, and holds
//! one chunk at a time: memory is bounded whatever the payload size. Chunks are released
//! as soon as they authenticate (as the reference implementation does), so a truncated
//! payload yields its authentic prefix and then an error: callers writing plaintext to a
//! file must discard it on error.

use std::io::{self, BufRead, Read, Write};

use chacha20poly1305::ChaCha20Poly1305;

use super::primitives::{TAG_LEN, aead, hkdf32, open_in_place, seal_in_place};
use super::{AgeError, FileKey};

/// Plaintext bytes per chunk (64 KiB).
pub const CHUNK_LEN: usize = 64 * 1024;
/// Ciphertext bytes per full chunk (plaintext + tag).
pub const ENCRYPTED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;
/// Length of the payload nonce that precedes the chunks.
pub const NONCE_LEN: usize = 16;
/// The chunk counter is 11 bytes: at most 2^88 chunks.
const MAX_COUNTER: u128 = (1u128 << 88) - 1;

fn payload_cipher(file_key: &FileKey, nonce: &[u8; NONCE_LEN]) -> ChaCha20Poly1305 {
    aead(&hkdf32(nonce, file_key.expose(), b"payload"))
}

fn chunk_nonce(counter: u128, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..11].copy_from_slice(&counter.to_be_bytes()[5..]);
    n[11] = u8::from(last);
    n
}

fn payload_err(msg: impl Into<String>) -> AgeError {
    AgeError::Payload(msg.into())
}

/// Decrypting reader over a payload (nonce first). Also implements [`BufRead`], which
/// hands out each authenticated chunk without a copy.
pub struct StreamReader<R: Read> {
    inner: R,
    cipher: ChaCha20Poly1305,
    counter: u128,
    /// Ciphertext of the current chunk, decrypted in place.
    buf: Vec<u8>,
    /// After the final chunk: the input was checked to end there.
    eof_checked: bool,
    /// Range of `buf` holding released, not yet consumed plaintext.
    start: usize,
    end: usize,
    /// The final chunk has been authenticated.
    done: bool,
    /// Plaintext bytes released so far.
    released: u64,
}

impl<R: Read> StreamReader<R> {
    /// Reads the payload nonce from `inner` and prepares to decrypt. A missing or short
    /// nonce is a header error, as the age specification counts it.
    pub fn new(file_key: &FileKey, mut inner: R) -> Result<Self, AgeError> {
        let mut nonce = [0u8; NONCE_LEN];
        let mut got = 0;
        while got < NONCE_LEN {
            let n = match inner.read(&mut nonce[got..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(AgeError::from_io(e)),
            };
            if n == 0 {
                return Err(AgeError::Header(
                    "payload nonce missing or truncated".into(),
                ));
            }
            got += n;
        }
        Ok(Self {
            inner,
            cipher: payload_cipher(file_key, &nonce),
            counter: 0,
            buf: vec![0u8; ENCRYPTED_CHUNK_LEN],
            eof_checked: false,
            start: 0,
            end: 0,
            done: false,
            released: 0,
        })
    }

    /// Plaintext bytes released (authenticated) so far.
    pub fn released(&self) -> u64 {
        self.released
    }

    /// Whether the final chunk has been authenticated and the input ended right after it.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Reads up to `buf.len()` bytes, fewer only at end of input.
    fn read_full(&mut self, len: usize) -> Result<usize, AgeError> {
        let mut filled = 0;
        while filled < len {
            match self.inner.read(&mut self.buf[filled..len]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(AgeError::from_io(e)),
            }
        }
        Ok(filled)
    }

    /// Reads and authenticates the next chunk into `buf[start..end]`. Returns false at the
    /// end of the payload (after checking that nothing follows the final chunk).
    fn next_chunk(&mut self) -> Result<bool, AgeError> {
        if self.done {
            if !self.eof_checked {
                if self.read_full(1)? != 0 {
                    return Err(payload_err("trailing data after the final chunk"));
                }
                self.eof_checked = true;
            }
            return Ok(false);
        }
        let n = self.read_full(ENCRYPTED_CHUNK_LEN)?;
        if n == 0 {
            return Err(payload_err(if self.counter == 0 {
                "payload is missing"
            } else {
                "payload truncated (no final chunk)"
            }));
        }
        // A short chunk can only be the final one; a full chunk is final only if it
        // authenticates as such (then the input must end right after it).
        let mut last = n < ENCRYPTED_CHUNK_LEN;
        if n < TAG_LEN {
            return Err(payload_err(
                "payload truncated (chunk shorter than its tag)",
            ));
        }
        if last && n == TAG_LEN && self.counter > 0 {
            return Err(payload_err("final chunk is empty in a non-empty payload"));
        }
        let pt_len = n - TAG_LEN;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&self.buf[pt_len..n]);
        // On a tag failure the ChaCha20-Poly1305 implementation leaves the buffer
        // untouched (it authenticates before decrypting), so a full chunk can be retried
        // as the final one without a copy. CCTV's stream_last_chunk_full_second pins this.
        let mut ok = open_in_place(
            &self.cipher,
            &chunk_nonce(self.counter, last),
            &[],
            &mut self.buf[..pt_len],
            &tag,
        )
        .is_ok();
        if !ok && !last {
            last = true;
            ok = open_in_place(
                &self.cipher,
                &chunk_nonce(self.counter, true),
                &[],
                &mut self.buf[..pt_len],
                &tag,
            )
            .is_ok();
        }
        if !ok {
            return Err(payload_err(format!(
                "chunk {} does not authenticate (altered, reordered or truncated)",
                self.counter
            )));
        }
        if last {
            self.done = true;
        } else if self.counter >= MAX_COUNTER {
            return Err(payload_err("too many chunks"));
        } else {
            self.counter += 1;
        }
        self.start = 0;
        self.end = pt_len;
        self.released += pt_len as u64;
        Ok(true)
    }
}

impl<R: Read> BufRead for StreamReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.start == self.end {
            if !self.next_chunk().map_err(AgeError::into_io)? {
                return Ok(&[]);
            }
        }
        Ok(&self.buf[self.start..self.end])
    }
    fn consume(&mut self, amt: usize) {
        self.start = (self.start + amt).min(self.end);
    }
}

impl<R: Read> Read for StreamReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// The plaintext length of a well-formed payload of `payload_len` bytes (nonce included),
/// or `None` if no valid payload has that length. Needs no key: for inventories.
pub fn plaintext_len(payload_len: u64) -> Option<u64> {
    let ct = payload_len.checked_sub(NONCE_LEN as u64)?;
    let enc = ENCRYPTED_CHUNK_LEN as u64;
    let tag = TAG_LEN as u64;
    let (full, rem) = (ct / enc, ct % enc);
    match rem {
        0 if full > 0 => Some(full * CHUNK_LEN as u64),
        r if r < tag => None,
        r if r == tag && full > 0 => None,
        r => Some(full * CHUNK_LEN as u64 + r - tag),
    }
}

/// Authenticates a payload (`reader` positioned at the nonce) under `file_key` without
/// releasing plaintext. With `first_chunk_only`, stops after the first chunk (a cheap
/// check that the key is right, e.g. before a re-wrap commits). Returns the number of
/// plaintext bytes authenticated.
pub fn verify_payload<R: Read>(
    file_key: &FileKey,
    reader: R,
    first_chunk_only: bool,
) -> Result<u64, AgeError> {
    let mut r = StreamReader::new(file_key, reader)?;
    while r.next_chunk()? {
        if first_chunk_only {
            break;
        }
    }
    Ok(r.released)
}

/// Encrypting writer: writes the payload nonce, then sealed chunks. Call
/// [`StreamWriter::finish`] at the end; a writer dropped without it leaves a payload
/// without a final chunk, which every reader rejects.
pub struct StreamWriter<W: Write> {
    inner: W,
    cipher: ChaCha20Poly1305,
    counter: u128,
    buf: Vec<u8>,
    pos: usize,
}

impl<W: Write> StreamWriter<W> {
    /// Writes a fresh random nonce to `inner` and prepares to encrypt under `file_key`.
    pub fn new(file_key: &FileKey, mut inner: W) -> Result<Self, AgeError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| AgeError::Random)?;
        inner.write_all(&nonce)?;
        Ok(Self {
            inner,
            cipher: payload_cipher(file_key, &nonce),
            counter: 0,
            buf: vec![0u8; ENCRYPTED_CHUNK_LEN],
            pos: 0,
        })
    }

    fn seal_chunk(&mut self, last: bool) -> io::Result<()> {
        if self.counter > MAX_COUNTER {
            return Err(AgeError::Payload("too many chunks".into()).into_io());
        }
        let nonce = chunk_nonce(self.counter, last);
        let pt_len = self.pos;
        let tag = seal_in_place(&self.cipher, &nonce, &[], &mut self.buf[..pt_len]);
        self.buf[pt_len..pt_len + TAG_LEN].copy_from_slice(&tag);
        self.inner.write_all(&self.buf[..pt_len + TAG_LEN])?;
        self.counter += 1;
        self.pos = 0;
        Ok(())
    }

    /// Seals the final chunk, flushes, and returns the inner writer.
    pub fn finish(mut self) -> Result<W, AgeError> {
        self.seal_chunk(true).map_err(AgeError::from_io)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for StreamWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut data = data;
        let mut written = 0;
        while !data.is_empty() {
            // A full buffer is sealed as non-final only once more data arrives, so the
            // final chunk is never empty unless the whole payload is.
            if self.pos == CHUNK_LEN {
                self.seal_chunk(false)?;
            }
            let n = (CHUNK_LEN - self.pos).min(data.len());
            self.buf[self.pos..self.pos + n].copy_from_slice(&data[..n]);
            self.pos += n;
            written += n;
            data = &data[n..];
        }
        Ok(written)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
