//! Token Status List (draft-ietf-oauth-status-list), CWT form: how a broker publishes which
//! of the tokens it issued are revoked, and how a verifier consults that.
//!
//! Every token a broker issues carries a `status` claim (label 65535) naming a status list by
//! URI and the token's index in it: `{"status_list": {"idx": uint, "uri": tstr}}`. The
//! broker publishes a **Status List Token**: a COSE_Sign1 with `typ`
//! `application/statuslist+cwt` whose claims are
//!
//! | claim | label | |
//! |---|---|---|
//! | iss | 1 | optional |
//! | sub | 2 | the list's URI, equal to the `uri` of the tokens it covers |
//! | exp | 4 | optional expiry of the list itself |
//! | iat | 6 | when the list was signed |
//! | status_list | 65533 | `{"bits": 1/2/4/8, "lst": bstr}` |
//! | ttl | 65534 | optional: seconds a consumer may cache it |
//!
//! `lst` is the status array compressed with DEFLATE in the ZLIB format; entry `i` occupies
//! bits `(i * bits) % 8 ..` of byte `(i * bits) / 8`, least significant bits first. Status 0
//! is VALID, 1 INVALID (revoked), 2 SUSPENDED; a verifier refuses everything but VALID.
//!
//! ```
//! use pqwrap_core::token::{Algorithm, Issuer, Manifest, SigningKey, TrustSet, Verifier};
//! use pqwrap_core::token::status::{Bits, Status, StatusList, StatusListClaims, StatusRef};
//!
//! let key = SigningKey::from_seed(Algorithm::MlDsa65, &[7u8; 32]);
//! let trust: TrustSet = [key.public_key().clone()].into_iter().collect();
//! let issuer = Issuer::new(key);
//! let uri = "urn:example:status:1";
//! let m = Manifest::from_json(r#"{"agent": "a", "capabilities": {"clipboard": true}}"#)?;
//! let now = 1_760_000_000;
//! let t = issuer.issue_with_status(&m, "clip.local", std::time::Duration::from_secs(60), now,
//!                                  None, StatusRef::new(uri, 5)?)?;
//!
//! let mut list = StatusList::new(Bits::One, 64)?;
//! list.set(5, Status::Invalid)?;
//! let published = issuer.sign_status_list(&StatusListClaims::new(uri, now, list))?;
//!
//! let status = pqwrap_core::token::status::verify(&trust, &published, now)?;
//! let v = Verifier::new(trust, "clip.local").with_status_list(status);
//! assert!(v.verify(&t.bytes, now).is_err()); // revoked
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{Read, Write};

use flate2::Compression;
use thiserror::Error;

use super::cbor::{self, CborError, Value};
use super::cose;
use super::keys::{Kid, hex_lower};
use super::verify::{DEFAULT_LEEWAY_SECS, TrustSet};
use super::{Issuer, TokenError, Unavailable};

/// The `typ` of a Status List Token in CWT form.
pub const STATUS_LIST_TYPE: &str = "application/statuslist+cwt";
/// CWT claim label of the `status` claim in a referenced (capability) token.
pub const LABEL_STATUS: i64 = 65535;
/// CWT claim label of `status_list` in a Status List Token.
pub const LABEL_STATUS_LIST: i64 = 65533;
/// CWT claim label of `ttl` in a Status List Token.
pub const LABEL_TTL: i64 = 65534;
/// Largest uncompressed status array accepted or produced: 1 MiB, i.e. 8,388,608 one-bit
/// entries. Decompression stops there, so a small "zip bomb" cannot make a verifier allocate.
pub const MAX_LIST_BYTES: usize = 1 << 20;
/// Largest Status List Token accepted, checked before parsing.
pub const MAX_STATUS_TOKEN_LEN: usize = MAX_LIST_BYTES + 16 * 1024;
/// Longest URI accepted in a `status` claim or a list's `sub`.
pub const MAX_URI_LEN: usize = 1024;

/// Why a status list or a status reference is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StatusError {
    /// `bits` is not 1, 2, 4 or 8.
    #[error("status list: bits must be 1, 2, 4 or 8")]
    Bits,
    /// The index lies beyond the list.
    #[error("status list: index {idx} is beyond the list's {len} entries")]
    OutOfRange {
        /// The index asked for.
        idx: u64,
        /// Entries in the list.
        len: u64,
    },
    /// The status value does not fit in the list's bits.
    #[error("status list: status {value} does not fit in {bits} bit(s)")]
    ValueTooWide {
        /// The value.
        value: u8,
        /// Bits per entry.
        bits: u8,
    },
    /// The list would be larger than [`MAX_LIST_BYTES`].
    #[error("status list: more than {MAX_LIST_BYTES} bytes uncompressed")]
    TooLarge,
    /// `lst` is not a complete ZLIB stream (or has bytes after it).
    #[error("status list: lst is not a single complete zlib stream")]
    Compression,
    /// The CBOR structure is not a status list or status claim.
    #[error("status list: {0}")]
    Structure(&'static str),
    /// The claims of a Status List Token are not CBOR.
    #[error("status list: payload: {0}")]
    Payload(CborError),
    /// A claim this profile does not know, or one of the wrong type (its key, as decoded).
    #[error("status list: unknown or mistyped claim {0}")]
    Claim(String),
    /// The list's own `exp` has passed.
    #[error("status list: the status list expired at {exp} (now {now}): fetch a fresh one")]
    Expired {
        /// The list's `exp`.
        exp: u64,
        /// Verification time.
        now: u64,
    },
    /// A URI that is empty, too long or has control characters.
    #[error("status list: the uri must be 1..={MAX_URI_LEN} bytes without control characters")]
    Uri,
}

/// Bits per entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bits {
    /// Two statuses: valid, invalid.
    One,
    /// Four statuses: valid, invalid, suspended, one application-specific.
    Two,
    /// Sixteen statuses.
    Four,
    /// 256 statuses.
    Eight,
}

impl Bits {
    /// The number of bits.
    pub fn count(self) -> u8 {
        match self {
            Bits::One => 1,
            Bits::Two => 2,
            Bits::Four => 4,
            Bits::Eight => 8,
        }
    }

    /// From the number of bits.
    pub fn from_count(n: u64) -> Result<Bits, StatusError> {
        match n {
            1 => Ok(Bits::One),
            2 => Ok(Bits::Two),
            4 => Ok(Bits::Four),
            8 => Ok(Bits::Eight),
            _ => Err(StatusError::Bits),
        }
    }

    fn per_byte(self) -> u64 {
        u64::from(8 / self.count())
    }
}

/// The status of one token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// 0: the token is valid.
    Valid,
    /// 1: revoked, permanently.
    Invalid,
    /// 2: temporarily not valid.
    Suspended,
    /// Any other value (application-specific); verifiers treat it as not valid.
    Other(u8),
}

impl Status {
    /// The numeric value.
    pub fn value(self) -> u8 {
        match self {
            Status::Valid => 0,
            Status::Invalid => 1,
            Status::Suspended => 2,
            Status::Other(v) => v,
        }
    }

    /// From the numeric value.
    pub fn from_value(v: u8) -> Status {
        match v {
            0 => Status::Valid,
            1 => Status::Invalid,
            2 => Status::Suspended,
            v => Status::Other(v),
        }
    }

    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Status::Valid => "valid",
            Status::Invalid => "invalid (revoked)",
            Status::Suspended => "suspended",
            Status::Other(_) => "not valid (application-specific status)",
        }
    }
}

/// An uncompressed status array: `len` entries of `bits` bits each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusList {
    bits: Bits,
    bytes: Vec<u8>,
}

impl StatusList {
    /// A list of at least `entries` entries (rounded up to whole bytes), all VALID.
    pub fn new(bits: Bits, entries: u64) -> Result<StatusList, StatusError> {
        let n = entries.div_ceil(bits.per_byte());
        let n = usize::try_from(n).map_err(|_| StatusError::TooLarge)?;
        if n > MAX_LIST_BYTES {
            return Err(StatusError::TooLarge);
        }
        Ok(StatusList {
            bits,
            bytes: vec![0; n],
        })
    }

    /// Bits per entry.
    pub fn bits(&self) -> Bits {
        self.bits
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64 * self.bits.per_byte()
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Most entries a list of these bits can hold.
    pub fn capacity_limit(bits: Bits) -> u64 {
        MAX_LIST_BYTES as u64 * bits.per_byte()
    }

    /// Grows the list (new entries VALID) to hold at least `entries`.
    pub fn grow_to(&mut self, entries: u64) -> Result<(), StatusError> {
        if entries <= self.len() {
            return Ok(());
        }
        let n = usize::try_from(entries.div_ceil(self.bits.per_byte()))
            .map_err(|_| StatusError::TooLarge)?;
        if n > MAX_LIST_BYTES {
            return Err(StatusError::TooLarge);
        }
        self.bytes.resize(n, 0);
        Ok(())
    }

    fn locate(&self, idx: u64) -> Result<(usize, u32, u8), StatusError> {
        let len = self.len();
        if idx >= len {
            return Err(StatusError::OutOfRange { idx, len });
        }
        let per = self.bits.per_byte();
        let byte = usize::try_from(idx / per).map_err(|_| StatusError::OutOfRange { idx, len })?;
        let shift = ((idx % per) as u32) * u32::from(self.bits.count());
        let mask = (((1u16 << self.bits.count()) - 1) as u8) << shift;
        Ok((byte, shift, mask))
    }

    /// The status at `idx`.
    pub fn get(&self, idx: u64) -> Result<Status, StatusError> {
        let (byte, shift, mask) = self.locate(idx)?;
        let b = self.bytes.get(byte).copied().unwrap_or(0);
        Ok(Status::from_value((b & mask) >> shift))
    }

    /// Sets the status at `idx`.
    pub fn set(&mut self, idx: u64, status: Status) -> Result<(), StatusError> {
        let value = status.value();
        if u16::from(value) >= 1u16 << self.bits.count() {
            return Err(StatusError::ValueTooWide {
                value,
                bits: self.bits.count(),
            });
        }
        let (byte, shift, mask) = self.locate(idx)?;
        let len = self.len();
        let b = self
            .bytes
            .get_mut(byte)
            .ok_or(StatusError::OutOfRange { idx, len })?;
        *b = (*b & !mask) | ((value << shift) & mask);
        Ok(())
    }

    /// The uncompressed bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// From uncompressed bytes.
    pub fn from_bytes(bits: Bits, bytes: Vec<u8>) -> Result<StatusList, StatusError> {
        if bytes.len() > MAX_LIST_BYTES {
            return Err(StatusError::TooLarge);
        }
        Ok(StatusList { bits, bytes })
    }

    /// `lst`: the bytes compressed with DEFLATE in the ZLIB format, at the best level.
    pub fn compressed(&self) -> Vec<u8> {
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), Compression::best());
        // Writing to a Vec cannot fail.
        let _ = enc.write_all(&self.bytes);
        enc.finish().unwrap_or_default()
    }

    /// From `lst`, refusing a stream that is incomplete, has bytes after it, or inflates to
    /// more than [`MAX_LIST_BYTES`].
    pub fn from_compressed(bits: Bits, lst: &[u8]) -> Result<StatusList, StatusError> {
        let mut dec = flate2::bufread::ZlibDecoder::new(lst);
        let mut out = Vec::new();
        (&mut dec)
            .take(MAX_LIST_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|_| StatusError::Compression)?;
        if out.len() > MAX_LIST_BYTES {
            return Err(StatusError::TooLarge);
        }
        // A complete stream with nothing after it: the decoder must have used every byte.
        if !dec.get_ref().is_empty() {
            return Err(StatusError::Compression);
        }
        Ok(StatusList { bits, bytes: out })
    }

    /// The CBOR `StatusList` map `{"bits": n, "lst": bstr}`.
    pub(crate) fn to_cbor(&self) -> Value {
        Value::Map(vec![
            (
                Value::text("bits"),
                Value::Uint(u64::from(self.bits.count())),
            ),
            (Value::text("lst"), Value::Bytes(self.compressed())),
        ])
    }

    pub(crate) fn from_cbor(v: &Value) -> Result<StatusList, StatusError> {
        let Value::Map(m) = v else {
            return Err(StatusError::Structure("status_list is not a map"));
        };
        let (mut bits, mut lst) = (None, None);
        for (k, val) in m {
            match (k, val) {
                (Value::Text(t), Value::Uint(n)) if t == "bits" => {
                    bits = Some(Bits::from_count(*n)?)
                }
                (Value::Text(t), Value::Bytes(b)) if t == "lst" => lst = Some(b),
                // aggregation_uri is informational; it is the only other member defined.
                (Value::Text(t), Value::Text(_)) if t == "aggregation_uri" => {}
                _ => {
                    return Err(StatusError::Structure(
                        "status_list has an unknown or mistyped member",
                    ));
                }
            }
        }
        let bits = bits.ok_or(StatusError::Structure("status_list.bits missing"))?;
        let lst = lst.ok_or(StatusError::Structure("status_list.lst missing"))?;
        StatusList::from_compressed(bits, lst)
    }
}

fn check_uri(uri: &str) -> Result<(), StatusError> {
    if uri.is_empty() || uri.len() > MAX_URI_LEN || uri.chars().any(char::is_control) {
        return Err(StatusError::Uri);
    }
    Ok(())
}

/// A token's `status` claim: which status list covers it, and where in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StatusRef {
    uri: String,
    idx: u64,
}

impl StatusRef {
    /// A reference to entry `idx` of the list published under `uri`.
    pub fn new(uri: impl Into<String>, idx: u64) -> Result<StatusRef, StatusError> {
        let uri = uri.into();
        check_uri(&uri)?;
        Ok(StatusRef { uri, idx })
    }

    /// The status list's URI (the `sub` of its Status List Token).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The token's index in that list.
    pub fn idx(&self) -> u64 {
        self.idx
    }

    /// `{"status_list": {"idx": idx, "uri": uri}}`.
    pub(crate) fn to_cbor(&self) -> Value {
        Value::Map(vec![(
            Value::text("status_list"),
            Value::Map(vec![
                (Value::text("idx"), Value::Uint(self.idx)),
                (Value::text("uri"), Value::text(&self.uri)),
            ]),
        )])
    }

    pub(crate) fn from_cbor(v: &Value) -> Result<StatusRef, StatusError> {
        let Value::Map(m) = v else {
            return Err(StatusError::Structure("status is not a map"));
        };
        let [(Value::Text(k), Value::Map(inner))] = m.as_slice() else {
            return Err(StatusError::Structure(
                "status must be exactly {\"status_list\": {...}}",
            ));
        };
        if k != "status_list" {
            return Err(StatusError::Structure(
                "status must be exactly {\"status_list\": {...}}",
            ));
        }
        let [
            (Value::Text(ki), Value::Uint(idx)),
            (Value::Text(ku), Value::Text(uri)),
        ] = inner.as_slice()
        else {
            return Err(StatusError::Structure(
                "status.status_list must be exactly {\"idx\": uint, \"uri\": tstr}",
            ));
        };
        if ki != "idx" || ku != "uri" {
            return Err(StatusError::Structure(
                "status.status_list must be exactly {\"idx\": uint, \"uri\": tstr}",
            ));
        }
        StatusRef::new(uri.clone(), *idx)
    }

    /// As JSON, for printing claims.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"status_list": {"idx": self.idx, "uri": self.uri}})
    }
}

/// The claims of a Status List Token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusListClaims {
    /// Issuer name (informational).
    pub iss: Option<String>,
    /// The list's URI: what the `uri` of covered tokens says.
    pub sub: String,
    /// When the list was signed.
    pub iat: u64,
    /// When the list itself stops being valid, if ever.
    pub exp: Option<u64>,
    /// Seconds a consumer may cache it before fetching a fresh one.
    pub ttl: Option<u64>,
    /// The statuses.
    pub list: StatusList,
}

impl StatusListClaims {
    /// Claims for `list` under `uri`, signed at `iat`, with no expiry or ttl.
    pub fn new(uri: impl Into<String>, iat: u64, list: StatusList) -> StatusListClaims {
        StatusListClaims {
            iss: None,
            sub: uri.into(),
            iat,
            exp: None,
            ttl: None,
            list,
        }
    }

    fn to_cbor(&self) -> Value {
        let mut m = Vec::with_capacity(6);
        if let Some(iss) = &self.iss {
            m.push((Value::int(1), Value::text(iss)));
        }
        m.push((Value::int(2), Value::text(&self.sub)));
        if let Some(exp) = self.exp {
            m.push((Value::int(4), Value::Uint(exp)));
        }
        m.push((Value::int(6), Value::Uint(self.iat)));
        m.push((Value::int(LABEL_STATUS_LIST), self.list.to_cbor()));
        if let Some(ttl) = self.ttl {
            m.push((Value::int(LABEL_TTL), Value::Uint(ttl)));
        }
        Value::Map(m)
    }

    fn from_cbor(v: &Value) -> Result<StatusListClaims, TokenError> {
        let Value::Map(entries) = v else {
            return Err(StatusError::Structure("claims are not a map").into());
        };
        let (mut iss, mut sub, mut iat, mut exp, mut ttl, mut list) =
            (None, None, None, None, None, None);
        for (k, val) in entries {
            match (k.as_i64(), val) {
                (Some(1), Value::Text(s)) if !s.is_empty() && s.len() <= 256 => {
                    iss = Some(s.clone())
                }
                (Some(2), Value::Text(s)) => {
                    check_uri(s)?;
                    sub = Some(s.clone())
                }
                (Some(4), Value::Uint(n)) => exp = Some(*n),
                (Some(6), Value::Uint(n)) => iat = Some(*n),
                (Some(LABEL_TTL), Value::Uint(n)) if *n > 0 => ttl = Some(*n),
                (Some(LABEL_STATUS_LIST), v) => list = Some(StatusList::from_cbor(v)?),
                _ => {
                    return Err(StatusError::Claim(format!("{k:?}")).into());
                }
            }
        }
        let claims = StatusListClaims {
            iss,
            sub: sub.ok_or_else(|| {
                TokenError::from(StatusError::Structure("sub (the list's uri) missing"))
            })?,
            iat: iat.ok_or_else(|| TokenError::from(StatusError::Structure("iat missing")))?,
            exp,
            ttl,
            list: list
                .ok_or_else(|| TokenError::from(StatusError::Structure("status_list missing")))?,
        };
        if claims.exp.is_some_and(|e| e <= claims.iat) {
            return Err(TokenError::from(StatusError::Structure(
                "exp is not after iat",
            )));
        }
        Ok(claims)
    }
}

impl Issuer {
    /// Signs a Status List Token (tagged COSE_Sign1, `typ` `application/statuslist+cwt`).
    pub fn sign_status_list(&self, claims: &StatusListClaims) -> Result<Vec<u8>, TokenError> {
        check_uri(&claims.sub)?;
        let key = self.key();
        let payload = cbor::to_vec(&claims.to_cbor());
        let kid = *key.public_key().kid();
        let protected =
            cose::protected_header_typed(key.algorithm().cose_alg(), &kid, STATUS_LIST_TYPE);
        let sig = key.sign(&cose::sig_structure(&protected, &payload));
        let bytes = cose::assemble(protected, payload, sig);
        if bytes.len() > MAX_STATUS_TOKEN_LEN {
            return Err(TokenError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }
}

/// A Status List Token whose signature, type and time window were checked. Give it to
/// [`super::Verifier::with_status_list`], or ask it about a [`StatusRef`] directly.
#[derive(Clone, Debug)]
pub struct VerifiedStatusList {
    claims: StatusListClaims,
    kid: Kid,
}

impl VerifiedStatusList {
    /// The verified claims.
    pub fn claims(&self) -> &StatusListClaims {
        &self.claims
    }

    /// The kid of the key that signed it.
    pub fn kid(&self) -> &Kid {
        &self.kid
    }

    /// The list's URI.
    pub fn uri(&self) -> &str {
        &self.claims.sub
    }

    /// The status of the token `r` refers to: an error if `r` names another list or an index
    /// beyond this one (neither can be answered, so a verifier refuses).
    pub fn status_of(&self, r: &StatusRef) -> Result<Status, TokenError> {
        if r.uri != self.claims.sub {
            return Err(TokenError::StatusUnavailable(Unavailable::OtherList {
                token: r.uri.clone(),
                given: self.claims.sub.clone(),
            }));
        }
        self.claims
            .list
            .get(r.idx)
            .map_err(|e| TokenError::StatusUnavailable(Unavailable::Entry(e)))
    }

    /// Whether the list is still within its lifetime at `now` (with the default leeway):
    /// pollers call this before trusting an old copy.
    pub fn is_live_at(&self, now: u64) -> bool {
        self.claims
            .exp
            .is_none_or(|e| now < e.saturating_add(DEFAULT_LEEWAY_SECS))
    }
}

/// Verifies a Status List Token (bytes, or the text form: base64url) at `now` against the
/// pinned keys in `trust`: size bound, strict CBOR, `typ`, a pinned kid whose algorithm the
/// header agrees with, the ML-DSA signature over the exact bytes, then the claims, `iat` not
/// in the future and `exp` (if any) not passed, with the default leeway.
pub fn verify(trust: &TrustSet, token: &[u8], now: u64) -> Result<VerifiedStatusList, TokenError> {
    if token.len() > MAX_STATUS_TOKEN_LEN.div_ceil(3) * 4 {
        return Err(TokenError::TooLarge(token.len()));
    }
    // The text form is accepted too (as files are written by the broker), trimmed.
    let decoded;
    let bytes = match token.first() {
        Some(0xd2) => token,
        _ => {
            let t = std::str::from_utf8(token).map_err(|_| TokenError::Encoding)?;
            decoded = super::decode_text(t.trim())?;
            &decoded
        }
    };
    if bytes.len() > MAX_STATUS_TOKEN_LEN {
        return Err(TokenError::TooLarge(bytes.len()));
    }
    let s = cose::parse_typed(bytes, STATUS_LIST_TYPE)?;
    let key = trust
        .get(&s.kid)
        .ok_or_else(|| TokenError::UnknownKid(hex_lower(&s.kid)))?;
    if s.alg != key.algorithm().cose_alg() {
        return Err(TokenError::AlgorithmMismatch {
            header: s.alg,
            key: key.algorithm(),
        });
    }
    if s.signature.len() != key.algorithm().signature_len()
        || !key.verify(&cose::sig_structure(&s.protected, &s.payload), &s.signature)
    {
        return Err(TokenError::BadSignature);
    }
    let v = cbor::decode(&s.payload).map_err(StatusError::Payload)?;
    let claims = StatusListClaims::from_cbor(&v)?;
    if claims.iat > now.saturating_add(DEFAULT_LEEWAY_SECS) {
        return Err(TokenError::IssuedInFuture {
            iat: claims.iat,
            now,
        });
    }
    if let Some(exp) = claims.exp
        && now >= exp.saturating_add(DEFAULT_LEEWAY_SECS)
    {
        return Err(StatusError::Expired { exp, now }.into());
    }
    Ok(VerifiedStatusList { claims, kid: s.kid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_example_bit_layout() {
        // The draft's 16-entry one-bit example: bytes b9 a3.
        let set = [0u64, 3, 4, 5, 7, 8, 9, 13, 15];
        let mut l = StatusList::new(Bits::One, 16).unwrap();
        for i in set {
            l.set(i, Status::Invalid).unwrap();
        }
        assert_eq!(l.as_bytes(), [0xb9, 0xa3]);
        let back = StatusList::from_compressed(Bits::One, &l.compressed()).unwrap();
        assert_eq!(back, l);
        for i in 0..16 {
            let want = if set.contains(&i) {
                Status::Invalid
            } else {
                Status::Valid
            };
            assert_eq!(back.get(i).unwrap(), want);
        }
        assert!(back.get(16).is_err());
    }

    #[test]
    fn two_bit_entries_and_value_bounds() {
        let mut l = StatusList::new(Bits::Two, 12).unwrap();
        l.set(0, Status::Invalid).unwrap();
        l.set(1, Status::Suspended).unwrap();
        l.set(3, Status::Other(3)).unwrap();
        assert_eq!(l.as_bytes()[0], 0b1100_1001);
        assert_eq!(
            l.set(2, Status::Other(4)),
            Err(StatusError::ValueTooWide { value: 4, bits: 2 })
        );
        l.set(1, Status::Valid).unwrap();
        assert_eq!(l.get(1).unwrap(), Status::Valid);
        assert_eq!(l.get(0).unwrap(), Status::Invalid);
    }

    #[test]
    fn inflation_is_bounded_and_streams_must_be_exact() {
        let big = StatusList::from_bytes(Bits::One, vec![0; MAX_LIST_BYTES]).unwrap();
        let mut z = big.compressed();
        assert!(StatusList::from_compressed(Bits::One, &z).is_ok());
        // One byte more than the limit, compressed to a few hundred bytes: refused.
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), Compression::best());
        enc.write_all(&vec![0u8; MAX_LIST_BYTES + 1]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 4096);
        assert_eq!(
            StatusList::from_compressed(Bits::One, &bomb),
            Err(StatusError::TooLarge)
        );
        z.push(0);
        assert_eq!(
            StatusList::from_compressed(Bits::One, &z),
            Err(StatusError::Compression)
        );
        let short = &big.compressed()[..10];
        assert!(StatusList::from_compressed(Bits::One, short).is_err());
    }
}
