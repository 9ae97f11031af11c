//! Keys in age's own encodings.
//!
//! A pqwrap hybrid key *is* an age post-quantum key: the identity is the Bech32 encoding of
//! the 32-byte X-Wing seed under the HRP `AGE-SECRET-KEY-PQ-` (upper case), the recipient
//! the Bech32 encoding of the 1216-byte X-Wing public key under `age1pq` (lower case). Both
//! use Bech32 without BIP 173's 90-character limit, as age does. The classical pair is
//! age's X25519 one: `AGE-SECRET-KEY-1…` / `age1…`.
//!
//! Parsing is strict: the expected case only, a valid checksum, the exact length, and a
//! canonical encoding (the string must re-encode to itself).
//!
//! ```
//! use pqwrap_core::keys::{Identity, Recipient};
//! let id = Identity::generate_hybrid()?;
//! let r: Recipient = id.to_recipient().to_string().parse()?;
//! assert!(r.to_string().starts_with("age1pq1"));
//! assert!(r.is_post_quantum());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use core::str::FromStr;

use bech32::{Checksum, Hrp, primitives::decode::CheckedHrpstring};
use zeroize::Zeroizing;

use crate::kem::{self, KemError};

/// HRP of a hybrid (X-Wing) recipient, `age1pq1…`.
pub const HYBRID_RECIPIENT_HRP: &str = "age1pq";
/// HRP of a hybrid identity, `AGE-SECRET-KEY-PQ-1…`.
pub const HYBRID_IDENTITY_HRP: &str = "AGE-SECRET-KEY-PQ-";
/// HRP of a classical X25519 recipient, `age1…`.
pub const X25519_RECIPIENT_HRP: &str = "age";
/// HRP of a classical X25519 identity, `AGE-SECRET-KEY-1…`.
pub const X25519_IDENTITY_HRP: &str = "AGE-SECRET-KEY-";

/// Longest key string accepted, checked before any decoding (a hybrid recipient is 1,960
/// characters).
const MAX_KEY_STRING: usize = 4096;

/// Bech32 (BIP 173 checksum) without the 90/1023-character length limit, as age uses it.
enum Bech32Long {}

impl Checksum for Bech32Long {
    type MidstateRepr = u32;
    const CODE_LENGTH: usize = usize::MAX;
    const CHECKSUM_LENGTH: usize = 6;
    // The BIP 173 generator, identical to bech32::Bech32's.
    const GENERATOR_SH: [u32; 5] = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
    const TARGET_RESIDUE: u32 = 1;
}

/// Why a key string or key file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The string is not Bech32 at all, or mixes upper and lower case.
    #[error("not a valid Bech32 string: {0}")]
    Encoding(&'static str),
    /// The Bech32 checksum does not match: the key was mistyped or truncated.
    #[error("bad Bech32 checksum (mistyped or truncated key)")]
    Checksum,
    /// The human-readable prefix is not one this kind of key uses.
    #[error("wrong prefix {found:?}: expected {expected}")]
    WrongPrefix {
        /// The prefix found.
        found: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The key is in the wrong case (identities are upper case, recipients lower case).
    #[error("key must be {expected} case")]
    Case {
        /// "upper" or "lower".
        expected: &'static str,
    },
    /// The decoded key has the wrong number of bytes.
    #[error("wrong key length: expected {expected} bytes, got {got}")]
    Length {
        /// Bytes expected.
        expected: usize,
        /// Bytes found.
        got: usize,
    },
    /// The encoding is not canonical (non-zero padding bits).
    #[error("non-canonical Bech32 encoding")]
    NonCanonical,
    /// The string is far longer than any key.
    #[error("key string too long ({0} characters)")]
    TooLong(usize),
    /// The key bytes were refused by the KEM (e.g. an invalid ML-KEM public key).
    #[error("invalid key: {0}")]
    Kem(#[from] KemError),
    /// A line in a key file is not a key.
    // Not named `source`: the message already includes it, and a source would print twice
    // in an error chain.
    #[error("line {line}: {error}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What was wrong with it.
        error: Box<KeyError>,
    },
    /// A key file holds no key at all.
    #[error("no keys found")]
    Empty,
}

/// Decodes `s` as long Bech32, checking HRP, case, checksum and canonical form.
fn decode(s: &str, hrp: &'static str, upper: bool) -> Result<Vec<u8>, KeyError> {
    if s.len() > MAX_KEY_STRING {
        return Err(KeyError::TooLong(s.len()));
    }
    let checked = CheckedHrpstring::new::<Bech32Long>(s).map_err(|e| {
        use bech32::primitives::decode::{
            CharError as C, CheckedHrpstringError as E, UncheckedHrpstringError as U,
        };
        match e {
            E::Checksum(_) => KeyError::Checksum,
            E::Parse(U::Char(C::MissingSeparator)) => KeyError::Encoding("no separator \"1\""),
            E::Parse(U::Char(C::NothingAfterSeparator)) => {
                KeyError::Encoding("nothing after the separator")
            }
            E::Parse(U::Char(C::InvalidChar(_))) => {
                KeyError::Encoding("a character outside the Bech32 alphabet")
            }
            E::Parse(U::Char(C::MixedCase)) => KeyError::Encoding("mixed upper and lower case"),
            E::Parse(U::Hrp(_)) => KeyError::Encoding("invalid human-readable prefix"),
            _ => KeyError::Encoding("malformed"),
        }
    })?;
    let found = checked.hrp();
    if !found.as_str().eq_ignore_ascii_case(hrp) {
        return Err(KeyError::WrongPrefix {
            found: found.to_string(),
            expected: hrp,
        });
    }
    let has_lower = s.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = s.bytes().any(|b| b.is_ascii_uppercase());
    if upper && has_lower {
        return Err(KeyError::Case { expected: "upper" });
    }
    if !upper && has_upper {
        return Err(KeyError::Case { expected: "lower" });
    }
    let data: Vec<u8> = checked.byte_iter().collect();
    // Refuse non-zero padding bits: only one string may encode a key.
    if encode(hrp, &data, upper).as_str() != s {
        return Err(KeyError::NonCanonical);
    }
    Ok(data)
}

fn encode(hrp: &'static str, data: &[u8], upper: bool) -> Zeroizing<String> {
    let hrp = Hrp::parse(hrp).expect("constant HRPs are valid");
    let s = if upper {
        bech32::encode_upper::<Bech32Long>(hrp, data)
    } else {
        bech32::encode_lower::<Bech32Long>(hrp, data)
    };
    Zeroizing::new(s.expect("no length limit for Bech32Long"))
}

/// Case-insensitive prefix test that cannot split a UTF-8 character.
fn has_prefix(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

fn exact<const N: usize>(data: &[u8]) -> Result<[u8; N], KeyError> {
    data.try_into().map_err(|_| KeyError::Length {
        expected: N,
        got: data.len(),
    })
}

/// A classical age X25519 recipient (`age1…`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct X25519Recipient([u8; 32]);

impl X25519Recipient {
    /// The X25519 public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// From raw public key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for X25519Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "X25519Recipient({self})")
    }
}

/// A classical age X25519 identity (`AGE-SECRET-KEY-1…`). Zeroized on drop.
///
/// Its public key is computed once, when the identity is made, and the scalar is kept as
/// the backend's key object, so each unwrap costs one X25519 multiplication.
pub struct X25519Identity {
    secret: Zeroizing<[u8; 32]>,
    key: kem::x25519::StaticSecret,
    public: X25519Recipient,
}

impl Clone for X25519Identity {
    fn clone(&self) -> Self {
        Self::from_bytes(*self.secret)
    }
}

impl X25519Identity {
    /// From the 32-byte secret scalar.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let secret = Zeroizing::new(bytes);
        let key = kem::x25519::StaticSecret::from_bytes(&secret);
        let public = X25519Recipient(key.public_key());
        Self {
            secret,
            key,
            public,
        }
    }
    /// A fresh identity from the OS CSPRNG.
    pub fn generate() -> Result<Self, KemError> {
        let mut b = Zeroizing::new([0u8; 32]);
        kem::os_random(&mut b[..])?;
        Ok(Self::from_bytes(*b))
    }
    /// The matching recipient.
    pub fn public(&self) -> X25519Recipient {
        self.public
    }
    /// The secret scalar as the backend's key object, for the X25519 stanza code.
    pub(crate) fn secret(&self) -> &kem::x25519::StaticSecret {
        &self.key
    }
}

impl fmt::Debug for X25519Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X25519Identity")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// Something a file key can be wrapped to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// Post-quantum hybrid X-Wing recipient, `age1pq1…`.
    Hybrid(Box<kem::PublicKey>),
    /// Classical X25519 recipient, `age1…`.
    X25519(X25519Recipient),
}

impl Recipient {
    /// Whether wrapping to this recipient resists a quantum adversary.
    pub fn is_post_quantum(&self) -> bool {
        matches!(self, Recipient::Hybrid(_))
    }
}

impl FromStr for Recipient {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        // age1pq1… also begins with "age1", so look at the full prefix first.
        if has_prefix(s, "age1pq1") {
            let data = decode(s, HYBRID_RECIPIENT_HRP, false)?;
            Ok(Recipient::Hybrid(Box::new(
                kem::PublicKey::from_bytes(&data).map_err(|e| match e {
                    KemError::Length { expected, got, .. } => KeyError::Length { expected, got },
                    other => KeyError::Kem(other),
                })?,
            )))
        } else {
            let data = decode(s, X25519_RECIPIENT_HRP, false).map_err(|e| match e {
                KeyError::WrongPrefix { found, .. } => KeyError::WrongPrefix {
                    found,
                    expected: "age (age1… or age1pq1…)",
                },
                other => other,
            })?;
            Ok(Recipient::X25519(X25519Recipient::from_bytes(exact(
                &data,
            )?)))
        }
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipient::Hybrid(pk) => {
                f.write_str(&encode(HYBRID_RECIPIENT_HRP, pk.as_bytes(), false))
            }
            Recipient::X25519(pk) => {
                f.write_str(&encode(X25519_RECIPIENT_HRP, pk.as_bytes(), false))
            }
        }
    }
}

impl fmt::Display for X25519Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode(X25519_RECIPIENT_HRP, self.as_bytes(), false))
    }
}

/// A secret key that can unwrap file keys.
#[derive(Clone, Debug)]
pub enum Identity {
    /// Post-quantum hybrid X-Wing identity, `AGE-SECRET-KEY-PQ-1…`.
    Hybrid(Box<kem::SecretKey>),
    /// Classical X25519 identity, `AGE-SECRET-KEY-1…`.
    X25519(X25519Identity),
}

impl Identity {
    /// A fresh hybrid (X-Wing) identity.
    pub fn generate_hybrid() -> Result<Self, KemError> {
        kem::SecretKey::generate().map(|k| Identity::Hybrid(Box::new(k)))
    }
    /// A fresh classical X25519 identity.
    pub fn generate_x25519() -> Result<Self, KemError> {
        X25519Identity::generate().map(Identity::X25519)
    }
    /// The recipient that wraps to this identity.
    pub fn to_recipient(&self) -> Recipient {
        match self {
            Identity::Hybrid(sk) => Recipient::Hybrid(Box::new(sk.public_key().clone())),
            Identity::X25519(id) => Recipient::X25519(id.public()),
        }
    }
    /// The secret encoding (`AGE-SECRET-KEY-…`), in a string zeroized on drop.
    pub fn to_encoded(&self) -> Zeroizing<String> {
        match self {
            Identity::Hybrid(sk) => encode(HYBRID_IDENTITY_HRP, sk.seed(), true),
            Identity::X25519(id) => encode(X25519_IDENTITY_HRP, &id.secret[..], true),
        }
    }
    /// An identity file in age's layout: creation time, public key, then the key line.
    pub fn to_file_contents(&self, created_rfc3339: &str) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "# created: {created_rfc3339}\n# public key: {}\n{}\n",
            self.to_recipient(),
            self.to_encoded().as_str()
        ))
    }
}

impl FromStr for Identity {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        if has_prefix(s, "AGE-SECRET-KEY-PQ-1") {
            let data = Zeroizing::new(decode(s, HYBRID_IDENTITY_HRP, true)?);
            let seed: Zeroizing<[u8; 32]> = Zeroizing::new(exact(&data)?);
            Ok(Identity::Hybrid(Box::new(kem::SecretKey::from_seed(&seed))))
        } else {
            let data =
                Zeroizing::new(decode(s, X25519_IDENTITY_HRP, true).map_err(|e| match e {
                    KeyError::WrongPrefix { found, .. } => KeyError::WrongPrefix {
                        found,
                        expected: "AGE-SECRET-KEY- (or AGE-SECRET-KEY-PQ-)",
                    },
                    other => other,
                })?);
            let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(exact(&data)?);
            Ok(Identity::X25519(X25519Identity::from_bytes(*bytes)))
        }
    }
}

/// Lines of a key file that carry keys: comments (`#`) and blank lines are skipped.
fn key_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r').trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Parses an identity file in age's layout (several keys allowed; comments and blank lines
/// ignored). Errors carry the 1-based line number.
pub fn parse_identities(text: &str) -> Result<Vec<Identity>, KeyError> {
    let ids = key_lines(text)
        .map(|(line, l)| {
            l.parse().map_err(|e| KeyError::Line {
                line,
                error: Box::new(e),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(KeyError::Empty);
    }
    Ok(ids)
}

/// Parses a recipients file: one recipient per line, comments and blank lines ignored.
pub fn parse_recipients(text: &str) -> Result<Vec<Recipient>, KeyError> {
    let rs = key_lines(text)
        .map(|(line, l)| {
            l.parse().map_err(|e| KeyError::Line {
                line,
                error: Box::new(e),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if rs.is_empty() {
        return Err(KeyError::Empty);
    }
    Ok(rs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_roundtrip_and_prefixes() {
        let id = Identity::Hybrid(Box::new(kem::SecretKey::from_seed(&[9u8; 32])));
        let enc = id.to_encoded();
        assert!(enc.starts_with("AGE-SECRET-KEY-PQ-1"), "{}", enc.as_str());
        let r = id.to_recipient().to_string();
        assert!(r.starts_with("age1pq1"));
        assert_eq!(r.len(), 6 + 1 + (1216usize * 8).div_ceil(5) + 6);
        let back: Identity = enc.parse().unwrap();
        assert_eq!(back.to_recipient().to_string(), r);
        assert_eq!(r.parse::<Recipient>().unwrap(), id.to_recipient());
    }

    #[test]
    fn x25519_matches_age_spec_example() {
        // The age README's example key pair.
        let id: Identity =
            "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
                .parse()
                .unwrap();
        let r = id.to_recipient().to_string();
        assert!(r.starts_with("age1"), "{r}");
        assert!(!id.to_recipient().is_post_quantum());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let id = Identity::Hybrid(Box::new(kem::SecretKey::from_seed(&[3u8; 32])));
        let enc = id.to_encoded().to_string();
        // Lower-cased identity.
        assert_eq!(
            enc.to_lowercase().parse::<Identity>().unwrap_err(),
            KeyError::Case { expected: "upper" }
        );
        // One character changed: checksum.
        let mut bad = enc.clone().into_bytes();
        let i = bad.len() - 10;
        bad[i] = if bad[i] == b'Q' { b'P' } else { b'Q' };
        assert_eq!(
            String::from_utf8(bad)
                .unwrap()
                .parse::<Identity>()
                .unwrap_err(),
            KeyError::Checksum
        );
        // Wrong length: a 31-byte X25519 key.
        let short = encode(X25519_IDENTITY_HRP, &[1u8; 31], true);
        assert!(matches!(
            short.parse::<Identity>().unwrap_err(),
            KeyError::Length {
                expected: 32,
                got: 31
            }
        ));
        // Wrong prefix.
        let other = encode(X25519_RECIPIENT_HRP, &[1u8; 32], false);
        assert!(matches!(
            other.to_uppercase().parse::<Identity>().unwrap_err(),
            KeyError::WrongPrefix { .. }
        ));
        assert!(matches!(
            "".parse::<Recipient>(),
            Err(KeyError::Encoding(_))
        ));
        assert!(matches!(
            "garbage".parse::<Recipient>(),
            Err(KeyError::Encoding(_))
        ));
        assert!(matches!(
            "x".repeat(5000).parse::<Recipient>(),
            Err(KeyError::TooLong(5000))
        ));
    }

    #[test]
    fn identity_file_layout() {
        let a = Identity::generate_hybrid().unwrap();
        let b = Identity::generate_x25519().unwrap();
        let text = format!(
            "{}\n\n# a comment\n{}",
            a.to_file_contents("2026-11-25T00:00:00Z").as_str(),
            b.to_file_contents("2026-11-25T00:00:00Z").as_str()
        );
        let ids = parse_identities(&text).unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0].to_recipient(), a.to_recipient());
        assert_eq!(ids[1].to_recipient(), b.to_recipient());
        let err = parse_identities("# c\nAGE-SECRET-KEY-1XYZ\n").unwrap_err();
        assert!(matches!(err, KeyError::Line { line: 2, .. }), "{err}");
        assert_eq!(parse_identities("# only\n\n").unwrap_err(), KeyError::Empty);
    }

    #[test]
    fn debug_reveals_no_secret() {
        let id = Identity::generate_x25519().unwrap();
        let enc = id.to_encoded();
        let dbg = format!("{id:?}");
        assert!(!dbg.contains(&enc[15..40]));
    }
}
