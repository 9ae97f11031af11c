//! Encrypted-file formats the CLI reads and writes, and detection from a file's first
//! bytes. A new format is a new variant, a detection rule and a match arm in the
//! `encrypt`, `decrypt` and `inspect` commands.

use std::io::{self, Read};

use pqwrap_core::{age, envelope};

/// Bytes read from the start of an input to detect its format: the age decoder's own
/// detection length, which sees an armor's begin line past the most leading whitespace the
/// armor reader accepts.
pub const DETECT_LEN: usize = age::DETECT_LEN;

/// An encrypted-file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// age v1 (C2SP), with the post-quantum `mlkem768x25519` recipient type.
    Age,
    /// pqwrap's native envelope (docs/FORMAT.md): AES-256-GCM, X-Wing recipients, a
    /// header that re-wraps in place.
    Pqwrap,
}

impl Format {
    /// The name shown to users.
    pub fn name(self) -> &'static str {
        match self {
            Format::Age => "age v1",
            Format::Pqwrap => "pqwrap envelope v1",
        }
    }
}

/// Detects the format from the first bytes of a file (up to [`DETECT_LEN`]); also says
/// whether it is ASCII-armored. Anything PEM-like (`-----` after whitespace) is taken as
/// armored age, so that a damaged armor is reported as such.
pub fn detect(prefix: &[u8]) -> Option<(Format, bool)> {
    if envelope::is_native(prefix) {
        return Some((Format::Pqwrap, false));
    }
    if let Some(age::Armored(a)) = age::is_age(prefix) {
        return Some((Format::Age, a));
    }
    let start = prefix
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))?;
    prefix
        .get(start..)?
        .starts_with(b"-----")
        .then_some((Format::Age, true))
}

/// Reads the detection prefix from `input` and returns it with a reader that replays it.
pub fn peek<R: Read>(mut input: R) -> io::Result<(Vec<u8>, age::Prefixed<R>)> {
    let mut prefix = Vec::with_capacity(DETECT_LEN);
    (&mut input)
        .take(DETECT_LEN as u64)
        .read_to_end(&mut prefix)?;
    Ok((prefix.clone(), io::Cursor::new(prefix).chain(input)))
}
