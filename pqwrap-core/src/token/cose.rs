//! COSE_Sign1 (RFC 9052 §4.2) framing for tokens.
//!
//! `18([protected: bstr .cbor {1: alg, 4: kid, 16: typ}, unprotected: {}, payload: bstr,
//! signature: bstr])`. The unprotected header must be empty: nothing unauthenticated is ever
//! read, in particular no key. The signature is over the RFC 9052 `Sig_structure`
//! `["Signature1", protected, h'', payload]` built from the protected and payload bytes exactly
//! as received.

use super::cbor::{self, Value};
use super::keys::{KID_LEN, Kid};
use super::{HeaderParam, TokenError};

/// CBOR tag of COSE_Sign1.
pub const TAG_COSE_SIGN1: u64 = 18;
/// Header label `alg`.
pub const HDR_ALG: i64 = 1;
/// Header label `crit`.
pub const HDR_CRIT: i64 = 2;
/// Header label `kid`.
pub const HDR_KID: i64 = 4;
/// Header label `typ` (RFC 9596).
pub const HDR_TYP: i64 = 16;
/// The explicit token type carried in `typ`.
pub const TOKEN_TYPE: &str = "application/pqwrap-cap+cwt";

/// The pieces of a received COSE_Sign1, with the header already checked for shape.
pub(crate) struct Sign1 {
    pub protected: Vec<u8>,
    pub alg: i64,
    pub kid: Kid,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// The protected header bytes for `alg` and `kid`.
pub(crate) fn protected_header(alg: i64, kid: &Kid) -> Vec<u8> {
    protected_header_typed(alg, kid, TOKEN_TYPE)
}

/// The protected header bytes for `alg`, `kid` and an explicit type `typ`.
pub(crate) fn protected_header_typed(alg: i64, kid: &Kid, typ: &str) -> Vec<u8> {
    cbor::to_vec(&Value::Map(vec![
        (Value::int(HDR_ALG), Value::int(alg)),
        (Value::int(HDR_KID), Value::Bytes(kid.to_vec())),
        (Value::int(HDR_TYP), Value::text(typ)),
    ]))
}

/// The bytes ML-DSA signs: the deterministic encoding of
/// `["Signature1", protected, h'', payload]`.
pub(crate) fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(protected.len() + payload.len() + 24);
    cbor::write_head(&mut out, 4, 4);
    cbor::write_head(&mut out, 3, 10);
    out.extend_from_slice(b"Signature1");
    cbor::write_head(&mut out, 2, protected.len() as u64);
    out.extend_from_slice(protected);
    cbor::write_head(&mut out, 2, 0);
    cbor::write_head(&mut out, 2, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// The tagged COSE_Sign1 bytes.
pub(crate) fn assemble(protected: Vec<u8>, payload: Vec<u8>, signature: Vec<u8>) -> Vec<u8> {
    cbor::to_vec(&Value::Tag(
        TAG_COSE_SIGN1,
        Box::new(Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(vec![]),
            Value::Bytes(payload),
            Value::Bytes(signature),
        ])),
    ))
}

/// Parses the outer structure and the protected header; does not look at the payload.
pub(crate) fn parse(bytes: &[u8]) -> Result<Sign1, TokenError> {
    parse_typed(bytes, TOKEN_TYPE)
}

/// [`parse`] for a COSE_Sign1 whose `typ` must be `typ` (a capability token or a status list
/// token: the explicit type keeps one from being accepted as the other).
pub(crate) fn parse_typed(bytes: &[u8], typ: &'static str) -> Result<Sign1, TokenError> {
    let v = cbor::decode(bytes)?;
    let Value::Tag(TAG_COSE_SIGN1, inner) = v else {
        return Err(TokenError::Structure("not a tagged COSE_Sign1 (tag 18)"));
    };
    let Value::Array(items) = *inner else {
        return Err(TokenError::Structure("COSE_Sign1 is not an array"));
    };
    let Ok::<[Value; 4], _>([prot, unprot, payload, sig]) = items.try_into() else {
        return Err(TokenError::Structure(
            "COSE_Sign1 does not have four elements",
        ));
    };
    let Value::Bytes(protected) = prot else {
        return Err(TokenError::Structure(
            "protected header is not a byte string",
        ));
    };
    match unprot {
        Value::Map(m) if m.is_empty() => {}
        Value::Map(_) => return Err(TokenError::UnprotectedHeader),
        _ => return Err(TokenError::Structure("unprotected header is not a map")),
    }
    let Value::Bytes(payload) = payload else {
        return Err(TokenError::Structure(
            "payload is not a byte string (detached payloads are not accepted)",
        ));
    };
    let Value::Bytes(signature) = sig else {
        return Err(TokenError::Structure("signature is not a byte string"));
    };
    let (alg, kid) = parse_protected(&protected, typ)?;
    Ok(Sign1 {
        protected,
        alg,
        kid,
        payload,
        signature,
    })
}

fn parse_protected(bytes: &[u8], want_typ: &'static str) -> Result<(i64, Kid), TokenError> {
    let Value::Map(entries) = cbor::decode(bytes)? else {
        return Err(TokenError::Header(HeaderParam::NotMap));
    };
    let (mut alg, mut kid, mut typ, mut crit) = (None, None, None, None);
    let mut unknown: Vec<&Value> = Vec::new();
    for (k, v) in &entries {
        match k.as_i64() {
            Some(HDR_ALG) => {
                alg = Some(v.as_i64().ok_or(TokenError::Header(HeaderParam::AlgType))?)
            }
            Some(HDR_KID) => match v {
                Value::Bytes(b) if b.len() == KID_LEN => {
                    let mut k = [0u8; KID_LEN];
                    k.copy_from_slice(b);
                    kid = Some(k);
                }
                _ => {
                    return Err(TokenError::Header(HeaderParam::KidType));
                }
            },
            Some(HDR_TYP) => match v {
                Value::Text(t) if t == want_typ => typ = Some(()),
                _ => return Err(TokenError::Header(HeaderParam::Typ { want: want_typ })),
            },
            Some(HDR_CRIT) => crit = Some(v),
            _ => unknown.push(k),
        }
    }
    if let Some(c) = crit {
        // RFC 9052 §3.1: a non-empty array of labels, each present in the protected header.
        // Every label we understand is fine to mark critical; any other is refused.
        let Value::Array(labels) = c else {
            return Err(TokenError::Header(HeaderParam::CritType));
        };
        if labels.is_empty() {
            return Err(TokenError::Header(HeaderParam::CritEmpty));
        }
        for l in labels {
            match l.as_i64() {
                Some(HDR_ALG | HDR_KID | HDR_TYP) => {}
                _ => return Err(TokenError::UnknownCritical(format!("{l:?}"))),
            }
        }
    }
    // This profile accepts no parameters beyond alg, crit, kid and typ, critical or not.
    if let Some(k) = unknown.first() {
        return Err(TokenError::Header(HeaderParam::UnknownLabel(format!(
            "{k:?}"
        ))));
    }
    let alg = alg.ok_or(TokenError::Header(HeaderParam::Missing("alg")))?;
    let kid = kid.ok_or(TokenError::Header(HeaderParam::Missing("kid")))?;
    typ.ok_or(TokenError::Header(HeaderParam::Missing("typ")))?;
    Ok((alg, kid))
}
