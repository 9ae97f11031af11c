//! An append-only, hash-chained JSON-lines log, for issued tokens and re-wrapped files alike.
//!
//! Each line is one JSON object, written exactly as
//!
//! ```text
//! {"seq":N,"prev":"<hex SHA-256 of line N-1>","record":{…},"hash":"<hex SHA-256>"}
//! ```
//!
//! where `hash` is SHA-256 over the exact bytes of the line before `,"hash":"` (so no
//! canonical JSON is needed to check it), `seq` counts from 1 and `prev` of line 1 is 64 zeros.
//! [`verify`] recomputes every hash and link and names the first line that was edited,
//! removed, inserted or moved. Removing lines from the *end* leaves a valid shorter chain; to
//! detect that, keep the head hash ([`Summary::head`]) somewhere else (a ticket, a second log).
//!
//! One [`AuditLog`] holds an exclusive `flock` on the file while open, so two processes cannot
//! interleave appends; within a process, share it behind a `Mutex`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Longest line accepted (bytes, without the newline).
pub const MAX_LINE: usize = 1 << 20;
/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Length of `,"hash":"` + 64 hex digits + `"}`.
const SUFFIX_LEN: usize = 9 + 64 + 2;

/// Why a log could not be read, written or verified.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Reading or writing the file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Line `line` (1-based) breaks the chain; `what` says how.
    #[error("audit log line {line}: {what}")]
    Broken {
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        what: String,
    },
    /// The record to append is not a JSON object.
    #[error("audit record must be a JSON object")]
    NotAnObject,
    /// The log ends in a partial line after line `lines`: an append the power cut (or a
    /// crash) interrupted before its sync, which was never reported as written.
    /// [`AuditLog::open`] cuts it off; everything before it verified.
    #[error(
        "audit log ends in a torn append after line {lines} ({torn} bytes of a partial line \
         at offset {valid_len}: an append interrupted before its sync)"
    )]
    TornTail {
        /// Complete, verified lines before it.
        lines: u64,
        /// Length of those lines in bytes: where the torn part starts.
        valid_len: u64,
        /// Bytes of the torn part.
        torn: u64,
    },
}

/// The state of a verified log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Number of lines.
    pub lines: u64,
    /// Hash of the last line (GENESIS for an empty log): anchor it elsewhere to detect
    /// truncation.
    pub head: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    seq: u64,
    prev: String,
    record: serde_json::Value,
    hash: String,
}

fn sha256_hex(b: &[u8]) -> String {
    crate::token::keys::hex_lower(&Sha256::digest(b))
}

fn broken(line: u64, what: impl Into<String>) -> AuditError {
    AuditError::Broken {
        line,
        what: what.into(),
    }
}

/// Checks one line given the expected sequence number and previous hash; returns its hash.
fn check_line(line_no: u64, line: &[u8], prev_hash: &str) -> Result<String, AuditError> {
    let text = std::str::from_utf8(line).map_err(|_| broken(line_no, "not UTF-8 (edited)"))?;
    let parsed: Line = serde_json::from_str(text).map_err(|e| {
        broken(
            line_no,
            format!("not a log entry ({e}); edited or inserted"),
        )
    })?;
    if !parsed.record.is_object() {
        return Err(broken(line_no, "record is not an object (edited)"));
    }
    let expected_suffix = format!(",\"hash\":\"{}\"}}", parsed.hash);
    if parsed.hash.len() != 64 || text.len() < SUFFIX_LEN || !text.ends_with(&expected_suffix) {
        return Err(broken(line_no, "malformed hash field (edited)"));
    }
    let prefix = &line[..line.len() - SUFFIX_LEN];
    let computed = sha256_hex(prefix);
    if computed != parsed.hash {
        return Err(broken(
            line_no,
            "content does not match its hash (line edited)",
        ));
    }
    if parsed.seq != line_no {
        return Err(broken(
            line_no,
            format!(
                "sequence number {} where {line_no} was expected (lines removed, inserted or reordered)",
                parsed.seq
            ),
        ));
    }
    if parsed.prev != prev_hash {
        return Err(broken(
            line_no,
            "does not chain to the line before it (that line was edited, or lines were removed, inserted or reordered)",
        ));
    }
    Ok(parsed.hash)
}

/// Verifies a whole log read from `reader`.
///
/// A log whose end is a torn append — bytes after the last valid line that hold a NUL (a
/// sector the disk never wrote) or do not end in a newline — is reported as
/// [`AuditError::TornTail`], not as tampering: that is what a power cut during an unsynced
/// append leaves, and no reader was ever told those lines existed. A complete line that does
/// not verify is [`AuditError::Broken`], wherever it is.
pub fn verify_reader(reader: impl Read) -> Result<Summary, AuditError> {
    let mut r = BufReader::new(reader);
    let mut buf = Vec::new();
    let mut prev = GENESIS.to_owned();
    let mut n = 0u64;
    let mut valid_len = 0u64;
    loop {
        buf.clear();
        let got = (&mut r)
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut buf)?;
        if got == 0 {
            break;
        }
        let complete = buf.last() == Some(&b'\n');
        if !complete && buf.len() > MAX_LINE {
            return Err(broken(n + 1, "line too long"));
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let checked = if complete && !line.contains(&0) {
            check_line(n + 1, line, &prev)
        } else {
            Err(broken(n + 1, "torn"))
        };
        match checked {
            Ok(hash) => {
                prev = hash;
                n += 1;
                valid_len += got as u64;
            }
            Err(e) => {
                // Torn only if this line or what follows it shows the marks of an unfinished
                // write; a well-formed line that does not verify is an edit.
                let (rest, nul, last) = rest_of(&mut r)?;
                let ends_in_newline = if rest == 0 { complete } else { last == b'\n' };
                if line.contains(&0) || nul || !ends_in_newline {
                    return Err(AuditError::TornTail {
                        lines: n,
                        valid_len,
                        torn: got as u64 + rest,
                    });
                }
                return Err(e);
            }
        }
    }
    Ok(Summary {
        lines: n,
        head: prev,
    })
}

/// Reads the rest of `r`: its length, whether it holds a NUL byte, and its last byte.
fn rest_of(r: &mut impl BufRead) -> std::io::Result<(u64, bool, u8)> {
    let (mut len, mut nul, mut last) = (0u64, false, 0u8);
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok((len, nul, last));
        }
        nul |= chunk.contains(&0);
        last = chunk[chunk.len() - 1];
        len += chunk.len() as u64;
        let k = chunk.len();
        r.consume(k);
    }
}

/// Verifies the log at `path`.
pub fn verify(path: &Path) -> Result<Summary, AuditError> {
    verify_reader(File::open(path)?)
}

/// An open log, positioned for appending.
pub struct AuditLog {
    file: File,
    seq: u64,
    head: String,
    /// The file's length after its last verified line: what a failed append truncates back
    /// to, so that a half-written or unsynced batch never stays in the chain.
    verified_len: u64,
    /// A failed append could not be undone: the file may end in a partial line, so nothing
    /// more is appended (the next `open` verifies it and says what is wrong).
    broken: bool,
}

impl AuditLog {
    /// Opens (creating if needed, mode 0640) and locks the log, verifying the existing chain
    /// first: a broken log is not appended to. A torn final append (see [`verify_reader`]) is
    /// cut off, durably, before anything is appended. A new log's name is made durable (its
    /// directory synced) before it is returned, so that lines synced into it survive a power
    /// cut.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let options = |create_new: bool| {
            let mut o = OpenOptions::new();
            o.read(true).append(true).mode(0o640);
            if create_new {
                o.create_new(true);
            }
            o
        };
        let file = match options(false).open(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match options(true).open(path) {
                    Ok(f) => {
                        let dir = match path.parent() {
                            Some(d) if !d.as_os_str().is_empty() => d,
                            _ => Path::new("."),
                        };
                        File::open(dir)?.sync_all()?;
                        f
                    }
                    // Created meanwhile by another process: open that one.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        options(false).open(path)?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            r => r?,
        };
        AuditLog::from_file(file)
    }

    /// Takes a log file the caller opened itself (for reading, and appending), locks it, and
    /// verifies the existing chain first, as [`AuditLog::open`] does, cutting off a torn final
    /// append. For callers that open paths with rules of their own (no symlinks followed,
    /// say); a caller that created the file syncs its directory itself.
    pub fn from_file(file: File) -> Result<AuditLog, AuditError> {
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(std::io::Error::from)?;
        let summary = match verify_reader(&file) {
            Ok(s) => s,
            Err(AuditError::TornTail {
                lines, valid_len, ..
            }) => {
                file.set_len(valid_len)?;
                file.sync_data()?;
                (&file).seek(std::io::SeekFrom::Start(0))?;
                verify_reader(&file).and_then(|s| {
                    if s.lines == lines {
                        Ok(s)
                    } else {
                        Err(broken(lines + 1, "changed while being repaired"))
                    }
                })?
            }
            Err(e) => return Err(e),
        };
        let verified_len = file.metadata()?.len();
        Ok(AuditLog {
            file,
            seq: summary.lines,
            head: summary.head,
            verified_len,
            broken: false,
        })
    }

    /// Appends `record` (a JSON object) and syncs it to disk; returns the new line's hash.
    pub fn append(&mut self, record: &serde_json::Value) -> Result<String, AuditError> {
        let mut hashes = self.append_all(std::slice::from_ref(record))?;
        hashes
            .pop()
            .ok_or_else(|| broken(self.seq, "no line appended"))
    }

    /// Appends `records` (JSON objects) in order with one write and one sync, and returns
    /// their lines' hashes: a job that commits files in batches pays one sync per batch, not
    /// one per file. Nothing is written unless every record is valid.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("audit.log");
    /// let mut log = pqwrap_core::audit::AuditLog::open(&path)?;
    /// let hashes = log.append_all(&[
    ///     serde_json::json!({"event": "a"}),
    ///     serde_json::json!({"event": "b"}),
    /// ])?;
    /// assert_eq!(hashes.len(), 2);
    /// assert_eq!(pqwrap_core::audit::verify(&path)?.lines, 2);
    /// # Ok(()) }
    /// ```
    pub fn append_all(&mut self, records: &[serde_json::Value]) -> Result<Vec<String>, AuditError> {
        let (mut seq, mut head) = (self.seq, self.head.clone());
        let mut out = String::new();
        let mut hashes = Vec::with_capacity(records.len());
        for record in records {
            if !record.is_object() {
                return Err(AuditError::NotAnObject);
            }
            seq += 1;
            let prefix = format!(
                "{{\"seq\":{seq},\"prev\":\"{head}\",\"record\":{}",
                serde_json::to_string(record).map_err(std::io::Error::other)?
            );
            let hash = sha256_hex(prefix.as_bytes());
            let line = format!("{prefix},\"hash\":\"{hash}\"}}\n");
            if line.len() > MAX_LINE {
                return Err(broken(seq, "record too large"));
            }
            out.push_str(&line);
            head = hash.clone();
            hashes.push(hash);
        }
        if records.is_empty() {
            return Ok(hashes);
        }
        if self.broken {
            return Err(broken(
                self.seq + 1,
                "an earlier append failed and could not be undone",
            ));
        }
        let written = self
            .file
            .write_all(out.as_bytes())
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Part of the batch may be in the file (a full disk, a file-size limit), or all
            // of it without being durable (a failed sync): either way these lines are not
            // in the log. Cut the file back to its last verified line.
            if self
                .file
                .set_len(self.verified_len)
                .and_then(|()| self.file.sync_data())
                .is_err()
            {
                self.broken = true;
            }
            return Err(e.into());
        }
        self.verified_len += out.len() as u64;
        self.seq = seq;
        self.head = head;
        Ok(hashes)
    }

    /// Lines in the log.
    pub fn len(&self) -> u64 {
        self.seq
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.seq == 0
    }

    /// Hash of the last line.
    pub fn head(&self) -> &str {
        &self.head
    }
}
