//! The age header: stanza codec, strict canonical parsing, MAC.
//!
//! ```text
//! age-encryption.org/v1
//! -> X25519 <base64 share>
//! <base64 body, 64-column lines, the last one shorter (possibly empty)>
//! --- <base64 HMAC-SHA-256>
//! ```

use std::io::BufRead;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::primitives::{b64_decode, b64_encode, hkdf32};
use super::{
    AgeError, EncryptError, FileKey, HeaderError, Mixing, Passphrase, ScryptLimit, VERSION_LINE,
    VERSION_PREFIX, mlkem768x25519, scrypt, x25519,
};
use crate::keys::{Identity, Recipient};

/// Longest header accepted (1 MiB), checked while reading, before anything is kept: room
/// for about 600 post-quantum recipients.
pub const MAX_HEADER_LEN: usize = 1 << 20;
/// Most stanzas accepted in one header.
const MAX_STANZAS: usize = 4096;
/// Columns of a full stanza body line.
const BODY_COLUMNS: usize = 64;
/// Length of the MAC line after `---`: a space, 43 base64 characters.
const MAC_B64_LEN: usize = 43;

/// Stanza type of the classical X25519 recipient.
pub(crate) const X25519_TAG: &str = "X25519";
/// Stanza type of the passphrase recipient.
pub(crate) const SCRYPT_TAG: &str = "scrypt";
/// Stanza type of the post-quantum hybrid recipient.
pub(crate) const MLKEM768X25519_TAG: &str = "mlkem768x25519";

/// One recipient stanza: a type, arguments, and a binary body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stanza {
    tag: String,
    args: Vec<String>,
    body: Vec<u8>,
}

/// Whether `s` is a valid stanza argument: non-empty, printable ASCII without spaces.
fn valid_arg(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|b| (0x21..=0x7e).contains(b))
}

impl Stanza {
    /// Builds a stanza, checking that the type and arguments are non-empty printable ASCII
    /// without spaces.
    pub fn new(tag: &str, args: Vec<String>, body: Vec<u8>) -> Result<Self, AgeError> {
        if !valid_arg(tag.as_bytes()) || !args.iter().all(|a| valid_arg(a.as_bytes())) {
            return Err(AgeError::from(HeaderError::StanzaArgument));
        }
        Ok(Self {
            tag: tag.to_owned(),
            args,
            body,
        })
    }
    /// The stanza type (its first argument), e.g. `X25519`.
    pub fn tag(&self) -> &str {
        &self.tag
    }
    /// The remaining arguments.
    pub fn args(&self) -> &[String] {
        &self.args
    }
    /// The decoded body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"-> ");
        out.extend_from_slice(self.tag.as_bytes());
        for a in &self.args {
            out.push(b' ');
            out.extend_from_slice(a.as_bytes());
        }
        out.push(b'\n');
        let b64 = b64_encode(&self.body);
        let mut chunks = b64.as_bytes().chunks(BODY_COLUMNS);
        let mut last_len = 0;
        for c in chunks.by_ref() {
            out.extend_from_slice(c);
            out.push(b'\n');
            last_len = c.len();
        }
        // The body always ends with a line shorter than 64 columns, possibly empty.
        if last_len == BODY_COLUMNS || b64.is_empty() {
            out.push(b'\n');
        }
    }
}

/// Stanza types of post-quantum recipients (age's hybrid and tagged hybrid types).
const PQ_TYPES: &[&str] = &[MLKEM768X25519_TAG, "mlkem768p256tag"];
/// Stanza types of classical public-key recipients: age's own (X25519, SSH, P-256 tag) and
/// the common PIV plugin.
const CLASSICAL_TYPES: &[&str] = &[X25519_TAG, "ssh-rsa", "ssh-ed25519", "p256tag", "piv-p256"];

/// Whether a stanza type is GREASE (random filler some implementations add, e.g. rage's
/// `…-grease`), which protects nothing and is not counted.
fn is_grease(tag: &str) -> bool {
    tag.ends_with("grease")
}

/// How a file is protected, judged from its stanza types (no key needed). Conservative:
/// "post-quantum" only when every stanza that is not GREASE is of a post-quantum type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// Every (non-GREASE) stanza is post-quantum (`mlkem768x25519`).
    PostQuantum,
    /// Every stanza of a known type is classical public-key (`X25519`, SSH, …) and none is
    /// post-quantum.
    Classical,
    /// Post-quantum stanzas next to classical or unrecognised ones: the file is only as
    /// strong as its weakest recipient.
    Mixed,
    /// A passphrase (`scrypt`) stanza.
    Passphrase,
    /// No stanza of a type this implementation recognises (e.g. plugin recipients).
    Unknown,
}

impl Protection {
    /// A short lower-case name: `post-quantum`, `classical`, `mixed`, `passphrase`,
    /// `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protection::PostQuantum => "post-quantum",
            Protection::Classical => "classical",
            Protection::Mixed => "mixed",
            Protection::Passphrase => "passphrase",
            Protection::Unknown => "unknown",
        }
    }
}

/// A parsed age header. It keeps the exact bytes it was parsed from (through the MAC
/// line's newline), which are also the bytes [`Header::encode`] produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    bytes: Vec<u8>,
    stanzas: Vec<Stanza>,
    mac: [u8; 32],
}

/// Splits the next `\n`-terminated line off `input[*pos..]`, without its newline.
fn next_line<'a>(input: &'a [u8], pos: &mut usize) -> Result<&'a [u8], AgeError> {
    let rest = input.get(*pos..).unwrap_or_default();
    let n = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| AgeError::from(HeaderError::MissingLineEnd))?;
    *pos += n + 1;
    Ok(rest.get(..n).unwrap_or_default())
}

fn compute_mac(file_key: &FileKey, mac_input: &[u8]) -> Hmac<Sha256> {
    let key = hkdf32(&[], file_key.expose(), b"header");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key[..])
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(mac_input);
    mac
}

impl Header {
    /// Parses a header at the start of `input`, strictly: the version line, stanzas with
    /// valid arguments and canonical 64-column unpadded base64 bodies, and the MAC line.
    /// Returns the header and its length (the offset of the payload nonce). Does not verify
    /// the MAC (that needs the file key: [`Header::unwrap_file_key`]).
    pub fn parse(input: &[u8]) -> Result<(Header, usize), AgeError> {
        let limit = input.len().min(MAX_HEADER_LEN);
        let input = input.get(..limit).unwrap_or_default();
        let mut pos = 0;
        let version = next_line(input, &mut pos)?;
        if version != VERSION_LINE.as_bytes() {
            return Err(if version.starts_with(VERSION_PREFIX) {
                AgeError::from(HeaderError::UnsupportedVersion)
            } else {
                AgeError::from(HeaderError::NotAge)
            });
        }
        let mut stanzas = Vec::new();
        loop {
            let line = next_line(input, &mut pos)?;
            if let Some(rest) = line.strip_prefix(b"---") {
                // The spec's grammar: `header = v1-line 1*stanza end`.
                if stanzas.is_empty() {
                    return Err(AgeError::from(HeaderError::NoStanza));
                }
                let b64 = rest
                    .strip_prefix(b" ")
                    .ok_or_else(|| AgeError::from(HeaderError::MacLine))?;
                if b64.len() != MAC_B64_LEN {
                    return Err(AgeError::from(HeaderError::MacLength));
                }
                let mac: [u8; 32] = b64_decode(b64)
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| AgeError::from(HeaderError::MacEncoding))?;
                let bytes = input.get(..pos).unwrap_or_default().to_vec();
                return Ok((
                    Header {
                        bytes,
                        stanzas,
                        mac,
                    },
                    pos,
                ));
            }
            let args = line
                .strip_prefix(b"-> ")
                .ok_or_else(|| AgeError::from(HeaderError::ExpectedStanza))?;
            if stanzas.len() >= MAX_STANZAS {
                return Err(AgeError::from(HeaderError::TooManyStanzas));
            }
            let mut parts = Vec::new();
            for a in args.split(|&b| b == b' ') {
                if !valid_arg(a) {
                    return Err(AgeError::from(HeaderError::StanzaArgument));
                }
                // valid_arg guarantees ASCII.
                parts.push(String::from_utf8_lossy(a).into_owned());
            }
            let mut parts = parts.into_iter();
            let tag = parts
                .next()
                .ok_or_else(|| AgeError::from(HeaderError::StanzaType))?;
            let args: Vec<String> = parts.collect();
            let mut b64 = Vec::new();
            loop {
                let l = next_line(input, &mut pos)?;
                if l.len() > BODY_COLUMNS {
                    return Err(AgeError::from(HeaderError::BodyLineTooLong));
                }
                b64.extend_from_slice(l);
                if l.len() < BODY_COLUMNS {
                    break;
                }
            }
            let body = b64_decode(&b64).ok_or_else(|| AgeError::from(HeaderError::BodyEncoding))?;
            stanzas.push(Stanza { tag, args, body });
        }
    }

    /// Reads a header from `r`, line by line, refusing to buffer more than `max_len` bytes
    /// (use [`MAX_HEADER_LEN`]). Leaves `r` positioned at the payload nonce.
    pub fn read_from<R: BufRead + ?Sized>(r: &mut R, max_len: usize) -> Result<Header, AgeError> {
        let mut buf = Vec::new();
        loop {
            let remaining = max_len.saturating_sub(buf.len());
            if remaining == 0 {
                return Err(AgeError::from(HeaderError::TooLong));
            }
            let line_start = buf.len();
            let n = <&mut R as std::io::Read>::take(&mut *r, remaining as u64)
                .read_until(b'\n', &mut buf)
                .map_err(AgeError::from_io)?;
            let line = buf.get(line_start..).unwrap_or_default();
            if n == 0 || line.last() != Some(&b'\n') {
                return Err(if buf.len() >= max_len {
                    AgeError::from(HeaderError::TooLong)
                } else {
                    AgeError::from(HeaderError::Truncated)
                });
            }
            if line_start > 0 && line.starts_with(b"---") {
                break;
            }
            // The version line is checked early so a non-age file is not read to the limit.
            if line_start == 0 && !line.starts_with(VERSION_PREFIX) {
                return Err(AgeError::from(HeaderError::NotAge));
            }
        }
        let (header, len) = Header::parse(&buf)?;
        if len != buf.len() {
            return Err(AgeError::from(HeaderError::Truncated));
        }
        Ok(header)
    }

    /// The exact header bytes, from the version line through the MAC line's newline.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The header length: the offset of the payload nonce in a binary file.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a header holds at least the version and MAC lines.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The stanzas, in file order.
    pub fn stanzas(&self) -> &[Stanza] {
        &self.stanzas
    }

    /// The stanza types, in file order.
    pub fn stanza_types(&self) -> Vec<&str> {
        self.stanzas.iter().map(|s| s.tag()).collect()
    }

    /// How the file is protected, judged from the stanza types; see [`Protection`].
    pub fn protection(&self) -> Protection {
        let (mut pq, mut classical, mut other) = (false, false, false);
        for s in &self.stanzas {
            let t = s.tag.as_str();
            if t == SCRYPT_TAG {
                return Protection::Passphrase;
            } else if PQ_TYPES.contains(&t) {
                pq = true;
            } else if CLASSICAL_TYPES.contains(&t) {
                classical = true;
            } else if !is_grease(t) {
                other = true;
            }
        }
        match (pq, classical, other) {
            (true, false, false) => Protection::PostQuantum,
            (true, _, _) => Protection::Mixed,
            (false, true, _) => Protection::Classical,
            (false, false, _) => Protection::Unknown,
        }
    }

    /// The 32-byte MAC as found in the header.
    pub fn mac(&self) -> &[u8; 32] {
        &self.mac
    }

    /// Re-serialises the header from its parsed parts. For a parsed header this equals
    /// [`Header::as_bytes`] (parsing accepts canonical encodings only).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Self::encode_without_mac(&self.stanzas);
        out.push(b' ');
        out.extend_from_slice(b64_encode(&self.mac).as_bytes());
        out.push(b'\n');
        out
    }

    /// The MAC input: everything through `---`.
    fn encode_without_mac(stanzas: &[Stanza]) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + stanzas.len() * 128);
        out.extend_from_slice(VERSION_LINE.as_bytes());
        out.push(b'\n');
        for s in stanzas {
            s.encode_into(&mut out);
        }
        out.extend_from_slice(b"---");
        out
    }

    /// Builds a header from stanzas, with the MAC under `file_key`.
    pub fn from_stanzas(file_key: &FileKey, stanzas: Vec<Stanza>) -> Result<Header, AgeError> {
        if stanzas.is_empty() {
            return Err(AgeError::from(EncryptError::NoStanzas));
        }
        if stanzas.len() > MAX_STANZAS {
            return Err(AgeError::from(EncryptError::TooManyRecipients));
        }
        let mut bytes = Self::encode_without_mac(&stanzas);
        let mac: [u8; 32] = compute_mac(file_key, &bytes).finalize().into_bytes().into();
        bytes.push(b' ');
        bytes.extend_from_slice(b64_encode(&mac).as_bytes());
        bytes.push(b'\n');
        if bytes.len() > MAX_HEADER_LEN {
            return Err(AgeError::from(EncryptError::HeaderTooLong));
        }
        Ok(Header {
            bytes,
            stanzas,
            mac,
        })
    }

    /// Wraps `file_key` to every recipient and builds a fresh header with its MAC.
    ///
    /// Refuses an empty recipient list, and — with [`Mixing::Refuse`] — post-quantum and
    /// classical recipients together: such a file is only as strong as its classical
    /// stanza, and the age specification says it should not exist.
    pub fn wrap(
        file_key: &FileKey,
        recipients: &[Recipient],
        mixing: Mixing,
    ) -> Result<Header, AgeError> {
        if recipients.is_empty() {
            return Err(AgeError::from(EncryptError::NoRecipients));
        }
        let pq = recipients.iter().filter(|r| r.is_post_quantum()).count();
        if pq > 0 && pq < recipients.len() && mixing == Mixing::Refuse {
            return Err(AgeError::from(EncryptError::Mixed));
        }
        let stanzas = recipients
            .iter()
            .map(|r| match r {
                Recipient::X25519(pk) => x25519::wrap(file_key, pk),
                Recipient::Hybrid(pk) => mlkem768x25519::wrap(file_key, pk),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Header::from_stanzas(file_key, stanzas)
    }

    /// Wraps `file_key` with a passphrase (one `scrypt` stanza, log2 N = `work_factor`).
    pub fn wrap_passphrase(
        file_key: &FileKey,
        passphrase: &Passphrase,
        work_factor: u8,
    ) -> Result<Header, AgeError> {
        let stanza = scrypt::wrap(file_key, passphrase, work_factor)?;
        Header::from_stanzas(file_key, vec![stanza])
    }

    /// Checks the header MAC under `file_key`, in constant time.
    pub fn verify_mac(&self, file_key: &FileKey) -> Result<(), AgeError> {
        let mac_input_len = self
            .bytes
            .len()
            .checked_sub(1 + MAC_B64_LEN + 1)
            .ok_or_else(|| AgeError::from(HeaderError::Truncated))?;
        let input = self.bytes.get(..mac_input_len).unwrap_or_default();
        compute_mac(file_key, input)
            .verify_slice(&self.mac)
            .map_err(|_| AgeError::HeaderMac)
    }

    /// Recovers the file key with the first identity or passphrase that opens a stanza,
    /// and verifies the header MAC with it.
    ///
    /// `scrypt_limit` bounds an scrypt stanza's cost: a work factor (`u8`), or a
    /// [`ScryptLimit`] that also bounds its memory.
    ///
    /// Errors: [`AgeError::NoMatch`] if nothing opens; [`AgeError::Header`] for a malformed
    /// stanza of a type an identity handles, an scrypt stanza that is not alone, or a work
    /// factor above the limit; [`AgeError::ScryptMemory`] for one whose memory is above it
    /// (refused before allocating); [`AgeError::HeaderMac`] if the MAC fails.
    pub fn unwrap_file_key(
        &self,
        identities: &[Identity],
        passphrases: &[Passphrase],
        scrypt_limit: impl Into<ScryptLimit>,
    ) -> Result<FileKey, AgeError> {
        let scrypt_limit = scrypt_limit.into();
        if self.stanzas.iter().any(|s| s.tag == SCRYPT_TAG) && self.stanzas.len() != 1 {
            return Err(AgeError::from(HeaderError::ScryptNotAlone));
        }
        let mut found = None;
        'outer: for id in identities {
            for s in &self.stanzas {
                let fk = match (id, s.tag.as_str()) {
                    (Identity::X25519(k), X25519_TAG) => x25519::unwrap(k, s)?,
                    (Identity::Hybrid(k), MLKEM768X25519_TAG) => mlkem768x25519::unwrap(k, s)?,
                    _ => None,
                };
                if fk.is_some() {
                    found = fk;
                    break 'outer;
                }
            }
        }
        if found.is_none() {
            'pw: for p in passphrases {
                for s in self.stanzas.iter().filter(|s| s.tag == SCRYPT_TAG) {
                    if let Some(fk) = scrypt::unwrap(p, s, scrypt_limit)? {
                        found = Some(fk);
                        break 'pw;
                    }
                }
            }
        }
        let file_key = found.ok_or(AgeError::NoMatch)?;
        self.verify_mac(&file_key)?;
        Ok(file_key)
    }
}
