//! The passphrase recipient stanza: `-> scrypt <base64 16-byte salt> <log2 N>`, body the
//! file key sealed under scrypt(passphrase, "age-encryption.org/v1/scrypt" ‖ salt, N, r=8,
//! p=1). It must be the only stanza of its header.

use core::fmt;

use zeroize::Zeroizing;

use super::header::{SCRYPT_TAG, Stanza};
use super::primitives::{b64_decode, b64_encode, open_file_key, seal_file_key};
use super::{AgeError, EncryptError, FileKey, HeaderError, StanzaKind};

const SALT_LABEL: &[u8] = b"age-encryption.org/v1/scrypt";
const SALT_LEN: usize = 16;

/// Work factor (log2 N) used when encrypting with a passphrase: about a second, 256 MiB.
pub const DEFAULT_WORK_FACTOR: u8 = 18;
/// Highest work factor accepted when decrypting unless the caller allows more (log2 N =
/// 22 is 4 GiB of memory for scrypt).
pub const DEFAULT_MAX_WORK_FACTOR: u8 = 22;
/// Work factors above this are refused outright: scrypt's memory would not fit in a
/// 64-bit address space sensibly.
const ABSOLUTE_MAX_WORK_FACTOR: u8 = 40;
/// age's scrypt block size `r` (the cost is always 128 · r · N bytes of memory).
const R: u64 = 8;

/// Bytes of memory scrypt needs at work factor `work_factor` (log2 N) with age's r = 8,
/// p = 1: the 128 · r · N-byte table plus two 128 · r-byte blocks (1 KiB · (N + 2)).
/// Saturates instead of overflowing.
pub const fn scrypt_memory(work_factor: u8) -> u64 {
    let n = if work_factor >= 64 {
        u64::MAX
    } else {
        1u64 << work_factor
    };
    (128 * R).saturating_mul(n.saturating_add(2))
}

/// How much scrypt work a caller accepts: the highest work factor, and optionally the most
/// memory scrypt may allocate. An input that asks for more is refused with a typed error
/// *before* anything is allocated: scrypt allocates its table in one piece, and an
/// allocation the machine cannot give aborts the process (with the passphrase in memory).
///
/// The core makes no system calls to learn the machine's memory; the caller passes the
/// bound it knows ([`ScryptLimit::with_max_memory`]). A `u8` converts to a limit on the work
/// factor alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScryptLimit {
    max_work_factor: u8,
    max_memory: Option<u64>,
}

impl ScryptLimit {
    /// Work factors up to `max_work_factor` (never above 40), any memory they need.
    pub const fn new(max_work_factor: u8) -> ScryptLimit {
        ScryptLimit {
            max_work_factor,
            max_memory: None,
        }
    }

    /// Also refuse a work factor whose [`scrypt_memory`] exceeds `bytes`.
    pub const fn with_max_memory(self, bytes: u64) -> ScryptLimit {
        ScryptLimit {
            max_memory: Some(bytes),
            ..self
        }
    }

    /// The highest work factor accepted.
    pub const fn max_work_factor(&self) -> u8 {
        self.max_work_factor
    }

    /// The memory bound, if one was given.
    pub const fn max_memory(&self) -> Option<u64> {
        self.max_memory
    }

    /// Whether `work_factor`'s memory fits the bound: [`AgeError::ScryptMemory`] if not. Also
    /// for encrypting, where the work factor is the caller's own choice.
    pub fn check_memory(&self, work_factor: u8) -> Result<(), AgeError> {
        let needed = scrypt_memory(work_factor);
        match self.max_memory {
            Some(limit) if needed > limit => Err(AgeError::ScryptMemory {
                work_factor,
                needed,
                limit,
            }),
            _ => Ok(()),
        }
    }
}

impl Default for ScryptLimit {
    /// [`DEFAULT_MAX_WORK_FACTOR`], no memory bound.
    fn default() -> ScryptLimit {
        ScryptLimit::new(DEFAULT_MAX_WORK_FACTOR)
    }
}

impl From<u8> for ScryptLimit {
    fn from(max_work_factor: u8) -> ScryptLimit {
        ScryptLimit::new(max_work_factor)
    }
}

/// A passphrase. Zeroized on drop; Debug prints nothing.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase string.
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }
    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

fn derive(
    passphrase: &Passphrase,
    salt: &[u8; SALT_LEN],
    log_n: u8,
) -> Result<Zeroizing<[u8; 32]>, AgeError> {
    let mut full_salt = [0u8; SALT_LABEL.len() + SALT_LEN];
    full_salt[..SALT_LABEL.len()].copy_from_slice(SALT_LABEL);
    full_salt[SALT_LABEL.len()..].copy_from_slice(salt);
    let params = ::scrypt::Params::new(log_n, 8, 1)
        .map_err(|_| AgeError::from(HeaderError::ScryptParameters))?;
    let mut key = Zeroizing::new([0u8; 32]);
    ::scrypt::scrypt(passphrase.bytes(), &full_salt, &params, &mut key[..])
        .map_err(|_| AgeError::from(HeaderError::ScryptParameters))?;
    Ok(key)
}

/// Wraps `file_key` under `passphrase` with log2 N = `work_factor`.
pub(crate) fn wrap(
    file_key: &FileKey,
    passphrase: &Passphrase,
    work_factor: u8,
) -> Result<Stanza, AgeError> {
    if work_factor == 0 || work_factor > ABSOLUTE_MAX_WORK_FACTOR {
        return Err(AgeError::from(EncryptError::WorkFactor));
    }
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|_| AgeError::Random)?;
    let key = derive(passphrase, &salt, work_factor)?;
    let body = seal_file_key(&key, &[0u8; 12], file_key.expose());
    Stanza::new(
        SCRYPT_TAG,
        vec![b64_encode(&salt), work_factor.to_string()],
        body.to_vec(),
    )
}

/// Parses a work factor: decimal, no sign, no leading zero, 1..=max.
fn parse_work_factor(s: &str, max: u8) -> Result<u8, AgeError> {
    let bad = || AgeError::from(HeaderError::WorkFactorEncoding);
    if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
        return Err(bad());
    }
    let n: u8 = s.parse().map_err(|_| bad())?;
    if n > max {
        return Err(AgeError::from(HeaderError::WorkFactorTooHigh {
            work_factor: n,
            limit: max,
        }));
    }
    Ok(n)
}

/// Tries to unwrap an `scrypt` stanza with `passphrase`: `Ok(None)` for a wrong
/// passphrase, an error for a malformed stanza or a work factor above `limit` (in work
/// factor or in memory).
pub(crate) fn unwrap(
    passphrase: &Passphrase,
    stanza: &Stanza,
    limit: ScryptLimit,
) -> Result<Option<FileKey>, AgeError> {
    let [salt, wf] = stanza.args() else {
        return Err(AgeError::from(HeaderError::ArgumentCount {
            kind: StanzaKind::Scrypt,
            expected: 2,
        }));
    };
    let salt: [u8; SALT_LEN] = b64_decode(salt.as_bytes())
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| {
            AgeError::from(HeaderError::Share {
                kind: StanzaKind::Scrypt,
            })
        })?;
    let log_n = parse_work_factor(wf, limit.max_work_factor.min(ABSOLUTE_MAX_WORK_FACTOR))?;
    limit.check_memory(log_n)?;
    let body: &[u8; 32] = stanza.body().try_into().map_err(|_| {
        AgeError::from(HeaderError::BodyLength {
            kind: StanzaKind::Scrypt,
        })
    })?;
    let key = derive(passphrase, &salt, log_n)?;
    Ok(open_file_key(&key, &[0u8; 12], body).map(FileKey))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_of_a_work_factor() {
        assert_eq!(scrypt_memory(10), 1024 * (1024 + 2));
        assert_eq!(scrypt_memory(22), (4u64 << 30) + 2048);
        assert_eq!(scrypt_memory(64), u64::MAX);
        let l = ScryptLimit::new(40).with_max_memory(1 << 30);
        l.check_memory(19).unwrap();
        assert!(matches!(
            l.check_memory(20),
            Err(AgeError::ScryptMemory {
                work_factor: 20,
                limit: 1073741824,
                ..
            })
        ));
    }

    #[test]
    fn work_factor_canonical() {
        assert_eq!(parse_work_factor("10", 22).ok(), Some(10));
        for bad in ["", "0", "010", "+1", "1a", "23", "255", "-1", " 1"] {
            assert!(parse_work_factor(bad, 22).is_err(), "{bad:?} accepted");
        }
    }
}
