//! The formats `encrypt` writes, and the detection prefix `decrypt` and `inspect` read
//! (detection itself is `pqwrap_rewrap::format::detect`: one rule for every command).

use std::io::{self, Read};

use pqwrap_core::age;

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

/// Reads the detection prefix from `input` and returns it with a reader that replays it.
pub fn peek<R: Read>(mut input: R) -> io::Result<(Vec<u8>, age::Prefixed<R>)> {
    let mut prefix = Vec::with_capacity(DETECT_LEN);
    (&mut input)
        .take(DETECT_LEN as u64)
        .read_to_end(&mut prefix)?;
    Ok((prefix.clone(), io::Cursor::new(prefix).chain(input)))
}

/// The format of an input, from its detection prefix.
pub fn detect(prefix: &[u8]) -> Option<pqwrap_rewrap::format::FormatId> {
    pqwrap_rewrap::format::detect(prefix).map(|d| d.format.id())
}

/// What to say of a recognised format that `decrypt` and `inspect` do not read.
pub fn not_supported(prefix: &[u8]) -> String {
    match pqwrap_rewrap::format::detect(prefix) {
        Some(d) => format!("{} (not supported)", d.format.name()),
        None => "not an encrypted file in a format pqwrap knows".into(),
    }
}
