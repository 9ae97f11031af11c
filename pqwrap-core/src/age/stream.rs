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
use super::{AgeError, FileKey, HeaderError, PayloadError};

/// Plaintext bytes per chunk (64 KiB).
pub const CHUNK_LEN: usize = 64 * 1024;
/// Ciphertext bytes per full chunk (plaintext + tag).
pub const ENCRYPTED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;
/// Length of the payload nonce that precedes the chunks.
pub const NONCE_LEN: usize = 16;
/// Chunks per batch, sealed or opened in parallel (1 MiB of plaintext).
const BATCH_CHUNKS: usize = 16;
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

/// Decrypting reader over a payload (nonce first). Also implements [`BufRead`], which
/// hands out each authenticated chunk without a copy.
///
/// Chunks are read in batches of up to 16 (about 1 MiB) and, with the `parallel` feature,
/// authenticated on the rayon pool; what is released, and when an error surfaces, is exactly as if they were read one
/// by one: every chunk before a failure is released, then the error is returned.
pub struct StreamReader<R: Read> {
    inner: R,
    cipher: ChaCha20Poly1305,
    /// Global index of the first chunk of the current batch.
    counter: u128,
    /// Chunks per batch (1 for a single-chunk check).
    batch: usize,
    /// The current batch: chunk `i` at `i * ENCRYPTED_CHUNK_LEN`, decrypted in place.
    buf: Vec<u8>,
    /// Plaintext lengths of the released chunks of the current batch.
    lens: [usize; BATCH_CHUNKS],
    /// Released chunks in the current batch.
    ready: usize,
    /// Chunk being consumed, and the offset in it.
    cur: usize,
    off: usize,
    /// An error found in the batch, returned once the chunks before it are consumed.
    pending: Option<AgeError>,
    /// An error was returned: every later read fails too, with the same kind of error
    /// (`Some(true)` if it was an I/O error, which says nothing about the payload).
    failed: Option<bool>,
    /// The final chunk has been authenticated.
    done: bool,
    /// After the final chunk: the input was checked to end there.
    eof_checked: bool,
    /// Plaintext bytes released so far.
    released: u64,
}

impl<R: Read> StreamReader<R> {
    /// Reads the payload nonce from `inner` and prepares to decrypt. A missing or short
    /// nonce is a header error, as the age specification counts it.
    pub fn new(file_key: &FileKey, inner: R) -> Result<Self, AgeError> {
        Self::with_batch(file_key, inner, BATCH_CHUNKS)
    }

    fn with_batch(file_key: &FileKey, mut inner: R, batch: usize) -> Result<Self, AgeError> {
        let mut nonce = [0u8; NONCE_LEN];
        let mut got = 0;
        while got < NONCE_LEN {
            let n = match inner.read(&mut nonce[got..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(AgeError::from_io(e)),
            };
            if n == 0 {
                return Err(AgeError::from(HeaderError::NonceMissing));
            }
            got += n;
        }
        let batch = batch.clamp(1, BATCH_CHUNKS);
        Ok(Self {
            inner,
            cipher: payload_cipher(file_key, &nonce),
            counter: 0,
            batch,
            buf: vec![0u8; batch * ENCRYPTED_CHUNK_LEN],
            lens: [0; BATCH_CHUNKS],
            ready: 0,
            cur: 0,
            off: 0,
            pending: None,
            failed: None,
            done: false,
            eof_checked: false,
            released: 0,
        })
    }

    /// Plaintext bytes released (authenticated) so far.
    pub fn released(&self) -> u64 {
        self.released
    }

    /// Whether the final chunk has been authenticated and the input ended right after it.
    pub fn is_done(&self) -> bool {
        self.done && self.eof_checked
    }

    /// Reads up to `len` bytes into `buf`, fewer only at end of input.
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

    fn open_chunk(&self, i: usize, len: usize, last: bool, slot: &mut [u8]) -> bool {
        open_chunk(&self.cipher, self.counter + i as u128, len, last, slot)
    }

    /// Reads and authenticates the next batch. Returns false at the end of the payload
    /// (after checking that nothing follows the final chunk).
    fn next_batch(&mut self) -> Result<bool, AgeError> {
        let r = self.next_batch_inner();
        if let Err(e) = &r
            && self.failed.is_none()
        {
            self.failed = Some(matches!(e, AgeError::Io(_)));
        }
        r
    }

    fn next_batch_inner(&mut self) -> Result<bool, AgeError> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        match self.failed {
            Some(true) => {
                return Err(AgeError::Io(io::Error::other(
                    "an earlier read of the payload failed",
                )));
            }
            Some(false) => {
                return Err(AgeError::from(PayloadError::AlreadyFailed));
            }
            None => {}
        }
        if self.done {
            if !self.eof_checked {
                if self.read_full(1)? != 0 {
                    return Err(AgeError::from(PayloadError::TrailingData));
                }
                self.eof_checked = true;
            }
            return Ok(false);
        }
        if self.counter + self.batch as u128 > MAX_COUNTER {
            return Err(AgeError::from(PayloadError::TooManyChunks));
        }
        let n = self.read_full(self.batch * ENCRYPTED_CHUNK_LEN)?;
        let full = n / ENCRYPTED_CHUNK_LEN;
        let rem = n % ENCRYPTED_CHUNK_LEN;
        self.ready = 0;
        self.cur = 0;
        self.off = 0;

        // Every full chunk is first tried as a non-final one, in parallel.
        let mut ok = [false; BATCH_CHUNKS];
        {
            let cipher = &self.cipher;
            let base = self.counter;
            let region = &mut self.buf[..full * ENCRYPTED_CHUNK_LEN];
            let one = |i: usize, slot: &mut [u8], ok: &mut bool| {
                *ok = open_chunk(cipher, base + i as u128, CHUNK_LEN, false, slot);
            };
            #[cfg(feature = "parallel")]
            let parallel = full > 1;
            #[cfg(not(feature = "parallel"))]
            let parallel = false;
            if parallel {
                #[cfg(feature = "parallel")]
                {
                    use rayon::prelude::*;
                    region
                        .par_chunks_mut(ENCRYPTED_CHUNK_LEN)
                        .zip(ok[..full].par_iter_mut())
                        .enumerate()
                        .for_each(|(i, (slot, ok))| one(i, slot, ok));
                }
            } else {
                for (i, (slot, ok)) in region
                    .chunks_mut(ENCRYPTED_CHUNK_LEN)
                    .zip(ok.iter_mut())
                    .enumerate()
                {
                    one(i, slot, ok);
                }
            }
        }
        for (i, &good) in ok.iter().enumerate().take(full) {
            let at = i * ENCRYPTED_CHUNK_LEN;
            if good {
                self.release(CHUNK_LEN);
                continue;
            }
            // A full chunk that is not a valid non-final one may be the final chunk. The
            // buffer is intact after a failed open (ChaCha20-Poly1305 authenticates before
            // decrypting; CCTV's stream_last_chunk_full_second pins this).
            let slot = &mut self.buf[at..at + ENCRYPTED_CHUNK_LEN];
            if open_chunk(
                &self.cipher,
                self.counter + i as u128,
                CHUNK_LEN,
                true,
                slot,
            ) {
                self.release(CHUNK_LEN);
                self.done = true;
                if at + ENCRYPTED_CHUNK_LEN < n {
                    self.defer(AgeError::from(PayloadError::TrailingData));
                }
            } else {
                self.defer(self.chunk_failure(i));
            }
            return Ok(true);
        }
        let idx = self.counter + full as u128;
        if rem > 0 {
            // A short chunk is the final one.
            let at = full * ENCRYPTED_CHUNK_LEN;
            if rem < TAG_LEN {
                self.defer(AgeError::from(PayloadError::ShortChunk));
            } else if rem == TAG_LEN && idx > 0 {
                self.defer(AgeError::from(PayloadError::EmptyFinalChunk));
            } else {
                let mut slot = std::mem::take(&mut self.buf);
                let good = self.open_chunk(full, rem - TAG_LEN, true, &mut slot[at..at + rem]);
                self.buf = slot;
                if good {
                    self.release(rem - TAG_LEN);
                    self.done = true;
                } else {
                    self.defer(self.chunk_failure(full));
                }
            }
        } else if full < self.batch {
            // The input ended right after a non-final chunk (or at once).
            self.defer(AgeError::from(if idx == 0 {
                PayloadError::Missing
            } else {
                PayloadError::NoFinalChunk
            }));
        }
        self.counter += full as u128;
        Ok(true)
    }

    fn chunk_failure(&self, i: usize) -> AgeError {
        AgeError::from(PayloadError::Chunk {
            index: self.counter + i as u128,
        })
    }

    fn release(&mut self, len: usize) {
        self.lens[self.ready] = len;
        self.ready += 1;
        self.released += len as u64;
    }

    fn defer(&mut self, e: AgeError) {
        self.pending = Some(e);
    }

    /// Authenticates the next chunk only (for [`verify_payload`]).
    fn first_chunk(&mut self) -> Result<(), AgeError> {
        self.next_batch()?;
        if self.ready == 0
            && let Some(e) = self.pending.take()
        {
            return Err(e);
        }
        Ok(())
    }
}

/// Opens chunk `index` in place: `slot` holds `len` bytes of ciphertext and the tag.
fn open_chunk(
    cipher: &ChaCha20Poly1305,
    index: u128,
    len: usize,
    last: bool,
    slot: &mut [u8],
) -> bool {
    let Some((ct, rest)) = slot.split_at_mut_checked(len) else {
        return false;
    };
    let Some(tag) = rest
        .get(..TAG_LEN)
        .and_then(|t| <[u8; TAG_LEN]>::try_from(t).ok())
    else {
        return false;
    };
    open_in_place(cipher, &chunk_nonce(index, last), &[], ct, &tag).is_ok()
}

impl<R: Read> BufRead for StreamReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        loop {
            while self.cur < self.ready && self.off == self.lens[self.cur] {
                self.cur += 1;
                self.off = 0;
            }
            if self.cur < self.ready {
                break;
            }
            if !self.next_batch().map_err(AgeError::into_io)? {
                return Ok(&[]);
            }
        }
        let at = self.cur * ENCRYPTED_CHUNK_LEN;
        Ok(&self.buf[at + self.off..at + self.lens[self.cur]])
    }
    fn consume(&mut self, amt: usize) {
        if self.cur < self.ready {
            self.off = (self.off + amt).min(self.lens[self.cur]);
        }
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
    if first_chunk_only {
        let mut r = StreamReader::with_batch(file_key, reader, 1)?;
        r.first_chunk()?;
        return Ok(r.released);
    }
    let mut r = StreamReader::new(file_key, reader)?;
    while r.next_batch()? {}
    Ok(r.released)
}

/// Encrypting writer: writes the payload nonce, then sealed chunks. Call
/// [`StreamWriter::finish`] at the end; a writer dropped without it leaves a payload
/// without a final chunk, which every reader rejects.
///
/// Plaintext is gathered in batches of 16 chunks laid out with room for their tags, and a
/// full batch is sealed (on the rayon pool with the `parallel` feature; each chunk's nonce
/// depends only on its index), then written with one call. Memory stays at one batch, about 1 MiB.
pub struct StreamWriter<W: Write> {
    inner: W,
    cipher: ChaCha20Poly1305,
    /// Index of the first chunk in `buf`.
    counter: u128,
    /// `BATCH_CHUNKS` slots of `ENCRYPTED_CHUNK_LEN` bytes: plaintext then room for a tag.
    buf: Vec<u8>,
    /// Plaintext bytes gathered in `buf` (slot `pos / CHUNK_LEN`, offset `pos % CHUNK_LEN`).
    pos: usize,
    /// Set while a batch is sealed but not yet written, and left set if writing it failed:
    /// `buf` then holds ciphertext, and sealing it again (a retried `write`, or `finish`)
    /// would XOR the same keystream back out and write plaintext. A failed writer refuses
    /// all further work.
    failed: bool,
}

/// The error of every call on a [`StreamWriter`] after one failed.
fn writer_failed() -> io::Error {
    io::Error::other("an earlier write of this age payload failed; it cannot be completed")
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
            buf: vec![0u8; BATCH_CHUNKS * ENCRYPTED_CHUNK_LEN],
            pos: 0,
            failed: false,
        })
    }

    /// Seals slots `0..full` as full non-final chunks and, if `last_len` is given, slot
    /// `full` as the final chunk holding that many bytes; then writes them all.
    fn seal_and_write(&mut self, full: usize, last_len: Option<usize>) -> io::Result<()> {
        if self.failed {
            return Err(writer_failed());
        }
        let slots = full + usize::from(last_len.is_some());
        if self.counter + slots as u128 > MAX_COUNTER + 1 {
            return Err(AgeError::from(PayloadError::TooManyChunks).into_io());
        }
        self.failed = true;
        let cipher = &self.cipher;
        let base = self.counter;
        let seal = |i: usize, slot: &mut [u8]| {
            let (pt, tag) = slot.split_at_mut(CHUNK_LEN);
            let t = seal_in_place(cipher, &chunk_nonce(base + i as u128, false), &[], pt);
            tag.copy_from_slice(&t);
        };
        let region = &mut self.buf[..full * ENCRYPTED_CHUNK_LEN];
        #[cfg(feature = "parallel")]
        let parallel = full > 1;
        #[cfg(not(feature = "parallel"))]
        let parallel = false;
        if parallel {
            #[cfg(feature = "parallel")]
            {
                use rayon::prelude::*;
                region
                    .par_chunks_mut(ENCRYPTED_CHUNK_LEN)
                    .enumerate()
                    .for_each(|(i, slot)| seal(i, slot));
            }
        } else {
            region
                .chunks_mut(ENCRYPTED_CHUNK_LEN)
                .enumerate()
                .for_each(|(i, slot)| seal(i, slot));
        }
        let mut end = full * ENCRYPTED_CHUNK_LEN;
        if let Some(len) = last_len {
            let start = end;
            let nonce = chunk_nonce(base + full as u128, true);
            let t = seal_in_place(cipher, &nonce, &[], &mut self.buf[start..start + len]);
            self.buf[start + len..start + len + TAG_LEN].copy_from_slice(&t);
            end = start + len + TAG_LEN;
        }
        self.inner.write_all(&self.buf[..end])?;
        self.counter += slots as u128;
        self.pos = 0;
        self.failed = false;
        Ok(())
    }

    /// Seals the final chunk, flushes, and returns the inner writer.
    pub fn finish(mut self) -> Result<W, AgeError> {
        // The final chunk is the last non-empty slot, or an empty slot 0 for an empty
        // payload.
        let (full, last_len) = match (self.pos / CHUNK_LEN, self.pos % CHUNK_LEN) {
            (0, 0) => (0, 0),
            (f, 0) => (f - 1, CHUNK_LEN),
            (f, r) => (f, r),
        };
        self.seal_and_write(full, Some(last_len))
            .map_err(AgeError::from_io)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for StreamWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(writer_failed());
        }
        let mut data = data;
        let mut written = 0;
        while !data.is_empty() {
            // A full batch is sealed as non-final only once more data arrives, so the
            // final chunk is never empty unless the whole payload is.
            if self.pos == BATCH_CHUNKS * CHUNK_LEN {
                self.seal_and_write(BATCH_CHUNKS, None)?;
            }
            let (slot, off) = (self.pos / CHUNK_LEN, self.pos % CHUNK_LEN);
            let n = (CHUNK_LEN - off).min(data.len());
            let at = slot * ENCRYPTED_CHUNK_LEN + off;
            self.buf[at..at + n].copy_from_slice(&data[..n]);
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
