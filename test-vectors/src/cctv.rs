//! The C2SP CCTV age vectors: the one parser and the one check, used by the `check-all`
//! binary (through [`crate::suites::cctv_age`]) and by the crate's `age_cctv` conformance
//! test.
//!
//! File layout (see the README beside the vectors): header lines `key: value` (`expect`,
//! `payload` = SHA-256 hex of the plaintext released, `file key`, `identity` and `passphrase`
//! (may repeat), `armored: yes`, `compressed: zlib`, `comment`), one empty line, then the age
//! file, zlib-compressed when the header says so.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use pqwrap_core::age::{self, AgeError, ErrorKind, Passphrase};
use pqwrap_core::keys::Identity;
use sha2::{Digest, Sha256};

use crate::suites::{Tally, external_dir};

/// `$PQWRAP_VECTORS/cctv-age` (default `test-vectors/external/cctv-age`).
pub fn dir() -> PathBuf {
    external_dir().join("cctv-age")
}

/// One parsed vector.
#[derive(Debug, Clone)]
pub struct Vector {
    /// `success`, `no match`, `HMAC failure`, `header failure`, `payload failure` or
    /// `armor failure`.
    pub expect: String,
    /// SHA-256 hex of the plaintext released (before the failure, for failures).
    pub payload: Option<String>,
    /// The file key, hex.
    pub file_key: Option<String>,
    /// Identities to try, as strings.
    pub identities: Vec<String>,
    /// Passphrases to try.
    pub passphrases: Vec<String>,
    /// Whether the file is ASCII-armored.
    pub armored: bool,
    /// The age file (decompressed).
    pub body: Vec<u8>,
}

/// Why a vector file was not parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// A header key this checker does not know. The vectors' README asks for such a vector
    /// to be skipped, not failed: it may test a feature added after this checker.
    UnknownKey(String),
    /// Anything else: the file is not a well-formed vector.
    Malformed(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::UnknownKey(k) => write!(f, "unknown vector key {k:?}"),
            ParseError::Malformed(m) => f.write_str(m),
        }
    }
}

impl From<&str> for ParseError {
    fn from(m: &str) -> Self {
        ParseError::Malformed(m.to_owned())
    }
}

impl From<String> for ParseError {
    fn from(m: String) -> Self {
        ParseError::Malformed(m)
    }
}

/// Parses a vector file. An unknown header key is [`ParseError::UnknownKey`]; a compression
/// other than zlib, or a malformed header, is [`ParseError::Malformed`].
pub fn parse(raw: &[u8]) -> Result<Vector, ParseError> {
    let split = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or("no blank line after the vector header")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "header is not UTF-8")?;
    let mut v = Vector {
        expect: String::new(),
        payload: None,
        file_key: None,
        identities: vec![],
        passphrases: vec![],
        armored: false,
        body: raw[split + 2..].to_vec(),
    };
    let mut compressed = false;
    for line in head.lines() {
        let (k, val) = line
            .split_once(": ")
            .ok_or_else(|| format!("header line without ': ': {line:?}"))?;
        match k {
            "expect" => v.expect = val.to_owned(),
            "payload" => v.payload = Some(val.to_owned()),
            "file key" => v.file_key = Some(val.to_owned()),
            "identity" => v.identities.push(val.to_owned()),
            "passphrase" => v.passphrases.push(val.to_owned()),
            "armored" => v.armored = val == "yes",
            "compressed" if val == "zlib" => compressed = true,
            "compressed" => return Err(format!("unknown compression {val:?}").into()),
            "comment" => {}
            other => return Err(ParseError::UnknownKey(other.to_owned())),
        }
    }
    if compressed {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(&v.body[..])
            .read_to_end(&mut out)
            .map_err(|e| format!("zlib: {e}"))?;
        v.body = out;
    }
    Ok(v)
}

/// The error kind an `expect` value names (`None` for success).
pub fn expected_kind(expect: &str) -> Result<Option<ErrorKind>, String> {
    Ok(match expect {
        "success" => None,
        "no match" => Some(ErrorKind::NoMatch),
        "HMAC failure" => Some(ErrorKind::HeaderMac),
        "header failure" => Some(ErrorKind::Header),
        "payload failure" => Some(ErrorKind::Payload),
        "armor failure" => Some(ErrorKind::Armor),
        other => return Err(format!("unknown expectation {other:?}")),
    })
}

/// Checks one vector against pqwrap's age implementation, reporting every mismatch (joined
/// by `; `):
///
/// - armor detection agrees with the vector's `armored`;
/// - decryption succeeds, or fails with exactly the kind the vector names;
/// - the SHA-256 of the plaintext released (before any failure) equals `payload`;
/// - for successes: the header re-serialises byte-identically; unarmored, the file starts with
///   exactly those bytes and `Header::parse` reads back an equal header of the same length;
///   the identities unwrap the file key, which equals `file key`.
pub fn check(v: &Vector, ids: &[Identity]) -> Result<(), String> {
    let pws: Vec<Passphrase> = v
        .passphrases
        .iter()
        .map(|p| Passphrase::new(p.clone()))
        .collect();
    let want = expected_kind(&v.expect)?;
    let mut problems: Vec<String> = vec![];
    let mut released = Vec::new();
    let res = (|| {
        let dec = age::Decryptor::new(&v.body[..])?;
        let armored = dec.armor() == age::Armor::Armored;
        if armored != v.armored {
            problems.push(format!(
                "armor detection: decoder says armored={armored}, vector says {}",
                v.armored
            ));
        }
        let mut r = dec.decrypt(ids, &pws)?;
        loop {
            let buf = r.fill_buf().map_err(AgeError::from_io)?;
            if buf.is_empty() {
                return Ok(());
            }
            released.extend_from_slice(buf);
            let n = buf.len();
            r.consume(n);
        }
    })();
    let got = res.as_ref().err().map(AgeError::kind);
    if got != want {
        problems.push(format!("expected {:?}, got {:?}", want, res.as_ref().err()));
    }
    if let Some(p) = &v.payload {
        let hash = hex::encode(Sha256::digest(&released));
        if *p != hash {
            problems.push(format!("released plaintext hash {hash} != {p}"));
        }
    }
    if want.is_none()
        && let Err(e) = check_success(v, ids, &pws)
    {
        problems.push(e);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// For successes: the file key, and byte-identical header re-serialisation.
fn check_success(v: &Vector, ids: &[Identity], pws: &[Passphrase]) -> Result<(), String> {
    let dec = age::Decryptor::new(&v.body[..]).map_err(|e| format!("header: {e}"))?;
    let h = dec.header();
    if h.encode() != h.as_bytes() {
        return Err("header does not re-serialise byte-identically".into());
    }
    if !v.armored {
        if !v.body.starts_with(h.as_bytes()) {
            return Err("header bytes are not exactly the start of the file".into());
        }
        let (h2, len) = age::Header::parse(&v.body).map_err(|e| format!("Header::parse: {e}"))?;
        if len != h.len() {
            return Err(format!("Header::parse read {len} bytes, not {}", h.len()));
        }
        if &h2 != h {
            return Err("Header::parse disagrees with the decryptor's header".into());
        }
    }
    let fk = h
        .unwrap_file_key(ids, pws, age::DEFAULT_MAX_WORK_FACTOR)
        .map_err(|e| format!("file key: {e}"))?;
    if let Some(want_fk) = &v.file_key
        && hex::encode(fk.expose()) != *want_fk
    {
        return Err("file key mismatch".into());
    }
    Ok(())
}

/// The outcome of running every vector in a directory.
#[derive(Debug)]
pub struct Run {
    /// Passed / failed / skipped, failures and notes (as `check-all` prints them).
    pub tally: Tally,
    /// Per `expect` value: (passed, failed). Vectors that did not parse are not in it.
    pub by_expect: BTreeMap<String, (usize, usize)>,
    /// The vectors skipped because an identity did not parse, by file name.
    pub skipped: Vec<String>,
    /// The vectors skipped because their header has a key this checker does not know (as the
    /// vectors' README asks), as `name: key`.
    pub unknown_keys: Vec<String>,
}

impl Run {
    /// The vectors looked at: passed, failed or skipped.
    pub fn total(&self) -> usize {
        self.tally.passed + self.tally.failed + self.tally.skipped
    }

    /// The per-expectation tally and the totals, as the conformance test prints them.
    pub fn report(&self, dir: &Path) -> String {
        let mut s = format!("CCTV age conformance ({}):\n", dir.display());
        for (k, (ok, bad)) in &self.by_expect {
            s.push_str(&format!("  {k:<16} passed {ok:>3}  failed {bad:>3}\n"));
        }
        s.push_str(&format!(
            "  total: {} passed, {} failed, {} skipped",
            self.tally.passed, self.tally.failed, self.tally.skipped,
        ));
        if !self.skipped.is_empty() {
            s.push_str(&format!(
                "\n  skipped, identity did not parse: {}",
                self.skipped.join(", ")
            ));
        }
        if !self.unknown_keys.is_empty() {
            s.push_str(&format!(
                "\n  skipped, unknown vector key: {}",
                self.unknown_keys.join(", ")
            ));
        }
        s
    }
}

/// Runs [`check`] on every vector file in `dir` (in name order; dot-files and `*.md` are not
/// vectors). A malformed vector fails; one with an unknown header key, or with an identity
/// pqwrap cannot parse, is skipped; a panic inside pqwrap fails that vector only.
pub fn run(dir: &Path) -> Run {
    let mut out = Run {
        tally: Tally::new("CCTV age (C2SP)"),
        by_expect: BTreeMap::new(),
        skipped: vec![],
        unknown_keys: vec![],
    };
    let t = &mut out.tally;
    t.notes.push(format!("from {}", dir.display()));
    let mut names: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect(),
        Err(e) => {
            t.fail("directory", &format!("cannot read {}: {e}", dir.display()));
            return out;
        }
    };
    names.sort();
    for path in names {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with('.') || name.ends_with(".md") {
            continue;
        }
        let raw = match fs::read(&path) {
            Ok(raw) => raw,
            Err(e) => {
                t.fail(&name, &format!("cannot read {}: {e}", path.display()));
                continue;
            }
        };
        let v = match parse(&raw) {
            Ok(v) => v,
            Err(ParseError::UnknownKey(k)) => {
                t.skip(format!("{name}: unknown vector key {k:?}"));
                out.unknown_keys.push(format!("{name}: {k}"));
                continue;
            }
            Err(e) => {
                t.fail(&name, &e.to_string());
                continue;
            }
        };
        let ids: Result<Vec<Identity>, _> = v.identities.iter().map(|s| s.parse()).collect();
        let Ok(ids) = ids else {
            t.skip(format!("{name}: an identity type pqwrap does not know"));
            out.skipped.push(name);
            continue;
        };
        let failed_before = t.failed;
        t.check(&name, || check(&v, &ids));
        let e = out.by_expect.entry(v.expect.clone()).or_default();
        if t.failed == failed_before {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    for (k, (ok, bad)) in &out.by_expect {
        out.tally
            .notes
            .push(format!("{k}: {ok} passed, {bad} failed"));
    }
    out
}
