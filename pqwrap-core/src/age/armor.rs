//! Strict ASCII armor (C2SP age): `-----BEGIN AGE ENCRYPTED FILE-----`, standard padded
//! base64 in 64-column lines (the last one 1 to 64 columns), `-----END AGE ENCRYPTED
//! FILE-----`. Lines end with LF or CRLF; whitespace is allowed only before the begin line
//! and after the end line. Anything else — empty lines, short inner lines, spaces,
//! non-canonical base64, checksums, other labels — is an [`AgeError::Armor`].
//!
//! Both directions stream: the reader decodes one line at a time, the writer encodes as
//! data arrives.

use std::io::{self, BufRead, Read, Write};

use base64ct::{Base64, Encoding};

use super::ArmorError;

/// The armor's first line.
pub const BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
/// The armor's last line.
pub const END: &str = "-----END AGE ENCRYPTED FILE-----";
/// Columns of a full armor line.
pub const COLUMNS: usize = 64;
/// Bytes encoded by a full line.
const LINE_BYTES: usize = COLUMNS / 4 * 3;
/// Longest line read (a line plus CRLF, with margin), before anything is decoded.
const MAX_LINE: usize = 128;

/// Most whitespace accepted before the begin line, and after the end line. Format detection
/// ([`super::is_age`] on the first [`super::DETECT_LEN`] bytes) sees past this much, so
/// whatever the armor reader accepts is also recognised as age.
pub const MAX_WHITESPACE: usize = 1024;

/// Whitespace allowed around the armor.
pub(crate) fn is_armor_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Begin,
    Body,
    Done,
}

/// Decodes an armored age file into the binary one.
pub struct ArmoredReader<R: BufRead> {
    inner: R,
    state: State,
    line: Vec<u8>,
    decoded: [u8; LINE_BYTES],
    start: usize,
    end: usize,
    /// The previous line was short or padded: only the end line may follow.
    expect_end: bool,
}

impl<R: BufRead> ArmoredReader<R> {
    /// Wraps an armored input.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            state: State::Begin,
            line: Vec::with_capacity(MAX_LINE),
            decoded: [0u8; LINE_BYTES],
            start: 0,
            end: 0,
            expect_end: false,
        }
    }

    /// Reads one line into `self.line` without its LF / CRLF. Returns whether it ended
    /// with a newline (false only at end of input).
    fn read_line(&mut self) -> io::Result<bool> {
        self.line.clear();
        let n = self
            .inner
            .by_ref()
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut self.line)?;
        let eol = self.line.last() == Some(&b'\n');
        if !eol && n == MAX_LINE {
            return Err(io::Error::from(ArmorError::LineTooLong));
        }
        if eol {
            self.line.pop();
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
        }
        Ok(eol)
    }

    /// Skips whitespace (at most [`MAX_WHITESPACE`] bytes); returns whether anything but
    /// whitespace follows.
    fn skip_whitespace(&mut self) -> io::Result<bool> {
        let mut skipped = 0;
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Ok(false);
            }
            let ws = buf.iter().take_while(|b| is_armor_whitespace(**b)).count();
            let all = ws == buf.len();
            self.inner.consume(ws);
            skipped += ws;
            if skipped > MAX_WHITESPACE {
                return Err(io::Error::from(ArmorError::Whitespace));
            }
            if !all {
                return Ok(true);
            }
        }
    }

    /// Decodes the next line into `decoded`; false at the end line.
    fn next_line(&mut self) -> io::Result<bool> {
        if self.state == State::Begin {
            if !self.skip_whitespace()? {
                return Err(io::Error::from(ArmorError::NoBegin));
            }
            let eol = self.read_line()?;
            if self.line != BEGIN.as_bytes() || !eol {
                return Err(io::Error::from(ArmorError::InvalidBegin));
            }
            self.state = State::Body;
        }
        if self.state == State::Done {
            return Ok(false);
        }
        let eol = self.read_line()?;
        if self.line == END.as_bytes() {
            if self.skip_whitespace()? {
                return Err(io::Error::from(ArmorError::DataAfterEnd));
            }
            self.state = State::Done;
            return Ok(false);
        }
        if !eol {
            return Err(io::Error::from(ArmorError::Truncated));
        }
        if self.expect_end {
            return Err(io::Error::from(ArmorError::ShortLine));
        }
        if self.line.is_empty() || self.line.len() > COLUMNS {
            return Err(io::Error::from(ArmorError::LineLength));
        }
        let n = Base64::decode(&self.line, &mut self.decoded)
            .map_err(|_| io::Error::from(ArmorError::Base64))?
            .len();
        // base64ct refuses non-canonical encodings itself (non-zero trailing bits, bad
        // padding); CCTV's armor_not_canonical pins that.
        if self.line.len() < COLUMNS || self.line.last() == Some(&b'=') {
            self.expect_end = true;
        }
        self.start = 0;
        self.end = n;
        Ok(true)
    }
}

impl<R: BufRead> Read for ArmoredReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.start == self.end {
            if !self.next_line()? {
                return Ok(0);
            }
        }
        let n = (self.end - self.start).min(out.len());
        out[..n].copy_from_slice(&self.decoded[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

/// Encodes a binary age file as armor. Call [`ArmoredWriter::finish`] to write the last
/// line and the end line.
pub struct ArmoredWriter<W: Write> {
    inner: W,
    pending: Vec<u8>,
    out: Vec<u8>,
    /// Set once a write to `inner` failed: how much of `out` got through is unknown, so a
    /// retry could only duplicate or drop lines. A failed writer refuses all further work.
    failed: bool,
}

fn armor_failed() -> io::Error {
    io::Error::other("an earlier write of this armored file failed; it cannot be completed")
}

/// Bytes encoded per batch written to the inner writer.
const BATCH_LINES: usize = 1024;

impl<W: Write> ArmoredWriter<W> {
    /// Writes the begin line.
    pub fn new(mut inner: W) -> io::Result<Self> {
        inner.write_all(BEGIN.as_bytes())?;
        inner.write_all(b"\n")?;
        Ok(Self {
            inner,
            pending: Vec::with_capacity(LINE_BYTES),
            out: Vec::with_capacity(BATCH_LINES * (COLUMNS + 1)),
            failed: false,
        })
    }

    /// Writes `bytes` to the inner writer, or marks this writer failed.
    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.failed {
            return Err(armor_failed());
        }
        let r = self.inner.write_all(bytes);
        self.failed = r.is_err();
        r
    }

    /// Writes and clears `out`.
    fn emit_out(&mut self) -> io::Result<()> {
        let out = std::mem::take(&mut self.out);
        let r = self.emit(&out);
        self.out = out;
        self.out.clear();
        r
    }

    fn encode_line(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut line = [0u8; COLUMNS];
        let s = Base64::encode(bytes, &mut line).map_err(io::Error::other)?;
        self.out.extend_from_slice(s.as_bytes());
        self.out.push(b'\n');
        if self.out.len() >= BATCH_LINES * (COLUMNS + 1) {
            self.emit_out()?;
        }
        Ok(())
    }

    /// Writes the remaining bytes and the end line; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.pending.is_empty() {
            let p = std::mem::take(&mut self.pending);
            self.encode_line(&p)?;
        }
        self.emit_out()?;
        self.emit(END.as_bytes())?;
        self.emit(b"\n")?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ArmoredWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(armor_failed());
        }
        let mut rest = data;
        // A full pending line is only written once more data arrives, so the last line is
        // never followed by an empty one.
        while !rest.is_empty() {
            if self.pending.len() == LINE_BYTES {
                let p = std::mem::take(&mut self.pending);
                self.encode_line(&p)?;
                self.pending = p;
                self.pending.clear();
            }
            let n = (LINE_BYTES - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.emit_out()?;
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::age::AgeError;

    fn decode(s: &str) -> Result<Vec<u8>, AgeError> {
        let mut out = Vec::new();
        ArmoredReader::new(s.as_bytes())
            .read_to_end(&mut out)
            .map_err(AgeError::from_io)?;
        Ok(out)
    }

    #[test]
    fn canonical_base64_only() {
        assert_eq!(
            decode(&format!("{BEGIN}\nYQ==\n{END}\n")).expect("ok"),
            b"a"
        );
        // Same bits but non-zero padding bits: refused.
        let e = decode(&format!("{BEGIN}\nYR==\n{END}\n")).unwrap_err();
        assert!(matches!(e, AgeError::Armor(ArmorError::Base64)), "{e:?}");
        let e = decode(&format!("{BEGIN}\nYQ\n{END}\n")).unwrap_err();
        assert!(matches!(e, AgeError::Armor(ArmorError::Base64)), "{e:?}");
        let e = decode(&format!("{BEGIN}\nYQ==\nYQ==\n{END}\n")).unwrap_err();
        assert!(matches!(e, AgeError::Armor(ArmorError::ShortLine)), "{e:?}");
    }
}
