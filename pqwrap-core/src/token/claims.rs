//! The CWT claims set (RFC 8392) carried as a token's payload.
//!
//! | claim | label | CBOR type |
//! |---|---|---|
//! | iss | 1 | tstr (optional) |
//! | sub | 2 | tstr (agent session id) |
//! | aud | 3 | tstr (one audience, mandatory) |
//! | exp | 4 | uint (NumericDate, seconds) |
//! | nbf | 5 | uint |
//! | iat | 6 | uint |
//! | cti | 7 | bstr, 16 bytes |
//! | cnf | 8 | `{1: COSE_Key}` (RFC 8747, optional) |
//! | caps | -65537 | capability map (private-use label) |
//! | anc | -65538 | `[+ bstr .size 16]` ancestor ctis, root first, parent last (optional) |
//! | status | 65535 | `{"status_list": {"idx": uint, "uri": tstr}}` (Token Status List, optional) |

use super::cbor::Value;
use super::keys::{PublicKey, hex_lower};
use super::manifest::{Capabilities, validate_agent};
use super::status::{LABEL_STATUS, StatusRef};

/// Claim label of the capability map (private use, RFC 8392 §9.1).
pub const LABEL_CAPS: i64 = -65537;
/// Claim label of the ancestor cti list (private use).
pub const LABEL_ANC: i64 = -65538;
/// Length of a cti.
pub const CTI_LEN: usize = 16;
/// Deepest chain of narrowings accepted (ancestors of one token).
pub const MAX_ANCESTORS: usize = 8;

/// A token id.
pub type Cti = [u8; CTI_LEN];

/// The claims of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// Issuer (informational: the verifier trusts keys, not names).
    pub iss: Option<String>,
    /// Subject: the agent session id.
    pub sub: String,
    /// Audience: the enforcement point(s) the token is for.
    pub aud: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expiry.
    pub exp: u64,
    /// Unique token id (16 random bytes); what revocation lists name.
    pub cti: Cti,
    /// Holder's public key for proof of possession. Never used to verify the token itself.
    pub cnf: Option<PublicKey>,
    /// What the token allows.
    pub capabilities: Capabilities,
    /// ctis of the tokens this one was narrowed from, root first, parent last.
    pub ancestors: Vec<Cti>,
    /// Where the issuer publishes this token's revocation status (Token Status List).
    pub status: Option<StatusRef>,
}

impl Claims {
    /// The CBOR claims map.
    pub(crate) fn to_cbor(&self) -> Value {
        let mut m = Vec::with_capacity(10);
        if let Some(iss) = &self.iss {
            m.push((Value::int(1), Value::text(iss)));
        }
        m.push((Value::int(2), Value::text(&self.sub)));
        m.push((Value::int(3), Value::text(&self.aud)));
        m.push((Value::int(4), Value::Uint(self.exp)));
        m.push((Value::int(5), Value::Uint(self.nbf)));
        m.push((Value::int(6), Value::Uint(self.iat)));
        m.push((Value::int(7), Value::Bytes(self.cti.to_vec())));
        if let Some(k) = &self.cnf {
            m.push((
                Value::int(8),
                Value::Map(vec![(Value::int(1), k.to_cose_value())]),
            ));
        }
        m.push((Value::int(LABEL_CAPS), self.capabilities.to_cbor()));
        if let Some(r) = &self.status {
            m.push((Value::int(LABEL_STATUS), r.to_cbor()));
        }
        if !self.ancestors.is_empty() {
            m.push((
                Value::int(LABEL_ANC),
                Value::Array(
                    self.ancestors
                        .iter()
                        .map(|c| Value::Bytes(c.to_vec()))
                        .collect(),
                ),
            ));
        }
        Value::Map(m)
    }

    /// Decodes a claims map, strictly: unknown labels and wrong types are errors.
    pub(crate) fn from_cbor(v: &Value) -> Result<Claims, ClaimsError> {
        let Value::Map(entries) = v else {
            return Err(ClaimsError::NotMap);
        };
        let mut iss = None;
        let (mut sub, mut aud) = (None, None);
        let (mut exp, mut nbf, mut iat) = (None, None, None);
        let (mut cti, mut cnf, mut caps, mut anc) = (None, None, None, Vec::new());
        let mut status = None;
        let text = |name: &'static str, v: &Value| match v {
            Value::Text(s) if !s.is_empty() && s.len() <= 256 => Ok(s.clone()),
            _ => Err(ClaimsError::Text(name)),
        };
        let time = |name: &'static str, v: &Value| match v {
            Value::Uint(n) => Ok(*n),
            _ => Err(ClaimsError::Time(name)),
        };
        for (k, val) in entries {
            match k.as_i64() {
                Some(1) => iss = Some(text("iss", val)?),
                Some(2) => sub = Some(text("sub", val)?),
                Some(3) => aud = Some(text("aud", val)?),
                Some(4) => exp = Some(time("exp", val)?),
                Some(5) => nbf = Some(time("nbf", val)?),
                Some(6) => iat = Some(time("iat", val)?),
                Some(7) => cti = Some(cti_of("cti", val)?),
                Some(8) => {
                    let Value::Map(m) = val else {
                        return Err(ClaimsError::CnfNotMap);
                    };
                    match m.as_slice() {
                        [(Value::Uint(1), key)] => {
                            cnf =
                                Some(PublicKey::from_cose_value(key).map_err(ClaimsError::CnfKey)?)
                        }
                        _ => return Err(ClaimsError::CnfShape),
                    }
                }
                Some(LABEL_CAPS) => {
                    caps = Some(Capabilities::from_cbor(val).map_err(ClaimsError::Manifest)?);
                }
                Some(LABEL_ANC) => {
                    let Value::Array(a) = val else {
                        return Err(ClaimsError::AncNotArray);
                    };
                    if a.is_empty() || a.len() > MAX_ANCESTORS {
                        return Err(ClaimsError::AncLength);
                    }
                    for x in a {
                        anc.push(cti_of("anc", x)?);
                    }
                }
                Some(LABEL_STATUS) => {
                    status = Some(StatusRef::from_cbor(val).map_err(ClaimsError::Status)?);
                }
                _ => return Err(ClaimsError::UnknownLabel(format!("{k:?}"))),
            }
        }
        let sub = sub.ok_or(ClaimsError::Missing("sub"))?;
        validate_agent("claims.sub", &sub).map_err(ClaimsError::Manifest)?;
        let c = Claims {
            iss,
            sub,
            aud: aud.ok_or(ClaimsError::AudienceMissing)?,
            exp: exp.ok_or(ClaimsError::Missing("exp"))?,
            nbf: nbf.ok_or(ClaimsError::Missing("nbf"))?,
            iat: iat.ok_or(ClaimsError::Missing("iat"))?,
            cti: cti.ok_or(ClaimsError::Missing("cti"))?,
            cnf,
            capabilities: caps.ok_or(ClaimsError::Missing("caps (-65537)"))?,
            ancestors: anc,
            status,
        };
        if c.exp <= c.nbf {
            return Err(ClaimsError::Lifetime);
        }
        Ok(c)
    }

    /// The token this one was narrowed from (the last of its ancestors), if any.
    pub fn parent(&self) -> Option<&Cti> {
        self.ancestors.last()
    }

    /// The quota accounts a job submitted under this token counts against: its own `cti`
    /// first, then its parent's, up to the root's. Each of those tokens' `maxJobs` is a
    /// ceiling for that token alone ([`super::manifest::JobCeiling`]); a broker that counts
    /// every job against all of these accounts keeps the children of a token, together,
    /// within that token's ceiling.
    pub fn quota_accounts(&self) -> impl Iterator<Item = &Cti> {
        std::iter::once(&self.cti).chain(self.ancestors.iter().rev())
    }

    /// The claims as JSON (times as seconds and RFC 3339, ids as hex).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let rfc = |t: u64| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.min(253_402_300_799)),
            )
            .to_string()
        };
        let mut v = json!({
            "sub": self.sub,
            "aud": self.aud,
            "iat": self.iat, "iat_rfc3339": rfc(self.iat),
            "nbf": self.nbf, "nbf_rfc3339": rfc(self.nbf),
            "exp": self.exp, "exp_rfc3339": rfc(self.exp),
            "cti": hex_lower(&self.cti),
            "capabilities": self.capabilities.to_json(),
            "ancestors": self.ancestors.iter().map(|c| hex_lower(c)).collect::<Vec<_>>(),
        });
        if let Some(m) = v.as_object_mut() {
            if let Some(iss) = &self.iss {
                m.insert("iss".into(), iss.clone().into());
            }
            if let Some(r) = &self.status {
                m.insert("status".into(), r.to_json());
            }
            if let Some(k) = &self.cnf {
                m.insert(
                    "cnf".into(),
                    serde_json::from_str(&k.to_jwk()).unwrap_or(serde_json::Value::Null),
                );
            }
        }
        v
    }
}

fn cti_of(name: &'static str, v: &Value) -> Result<Cti, ClaimsError> {
    match v {
        Value::Bytes(b) => <Cti>::try_from(b.as_slice()).map_err(|_| ClaimsError::CtiLength(name)),
        _ => Err(ClaimsError::NotBytes(name)),
    }
}

/// Why a token's (authenticated) claims are not acceptable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// The payload is not strict deterministic CBOR.
    #[error("payload: {0}")]
    Payload(super::cbor::CborError),
    /// The claims are not a CBOR map.
    #[error("claims: not a map")]
    NotMap,
    /// A text claim that is empty, too long or not text.
    #[error("claims.{0}: not a text string of 1..=256 bytes")]
    Text(&'static str),
    /// A time claim that is not an unsigned integer.
    #[error("claims.{0}: not an unsigned integer NumericDate")]
    Time(&'static str),
    /// `cnf` is not a map.
    #[error("claims.cnf: not a map")]
    CnfNotMap,
    /// `cnf` is not exactly `{1: COSE_Key}`.
    #[error("claims.cnf: must be exactly {{1: COSE_Key}}")]
    CnfShape,
    /// The `cnf` key does not parse.
    #[error("claims.cnf: {0}")]
    CnfKey(super::keys::KeyError),
    /// The capabilities or the subject break the manifest rules.
    #[error("{}", .0.detail())]
    Manifest(super::manifest::ManifestError),
    /// `anc` is not an array.
    #[error("claims.anc: not an array")]
    AncNotArray,
    /// `anc` is empty or longer than [`MAX_ANCESTORS`].
    #[error("claims.anc: must have 1..={MAX_ANCESTORS} entries")]
    AncLength,
    /// The `status` claim is malformed.
    #[error("claims.status: {0}")]
    Status(super::status::StatusError),
    /// A claim label this profile does not define (as decoded).
    #[error("claims: unknown claim label {0}")]
    UnknownLabel(String),
    /// A required claim is absent.
    #[error("claims.{0}: missing")]
    Missing(&'static str),
    /// No audience: it is mandatory.
    #[error("claims.aud: missing (audience is mandatory)")]
    AudienceMissing,
    /// `exp` is not after `nbf`.
    #[error("claims: exp is not after nbf")]
    Lifetime,
    /// A cti that is not [`CTI_LEN`] bytes.
    #[error("claims.{0}: must be {CTI_LEN} bytes")]
    CtiLength(&'static str),
    /// A cti that is not a byte string.
    #[error("claims.{0}: not a byte string")]
    NotBytes(&'static str),
}
