//! Shared helpers for the token tests: keys, the design manifest, and a raw CBOR writer that
//! can produce the malformed encodings the verifier must refuse.
#![allow(dead_code)]

use pqwrap_core::token::{Algorithm, Issuer, Manifest, SigningKey, TrustSet, Verifier};

pub const NOW: u64 = 1_780_000_000;
pub const AUD: &str = "files.enforcer.local";

pub use pqwrap_core::token::manifest::DESIGN_EXAMPLE as DESIGN_MANIFEST;

pub fn key(alg: Algorithm, b: u8) -> SigningKey {
    SigningKey::from_seed(alg, &[b; 32])
}

pub fn design() -> Manifest {
    Manifest::from_json(DESIGN_MANIFEST).unwrap()
}

pub fn trust_of(k: &SigningKey) -> TrustSet {
    [k.public_key().clone()].into_iter().collect()
}

pub fn verifier(k: &SigningKey) -> Verifier {
    Verifier::new(trust_of(k), AUD)
}

/// A valid design-manifest token from `k` at NOW for an hour.
pub fn token(k: &SigningKey) -> Vec<u8> {
    let issuer = Issuer::new(SigningKey::from_seed(k.algorithm(), &k.seed()));
    issuer
        .issue(
            &design(),
            AUD,
            std::time::Duration::from_secs(3600),
            NOW,
            None,
        )
        .unwrap()
        .bytes
}

// ---- raw CBOR writer (no sorting, no checks: tests need to write bad encodings) ----

pub fn head(major: u8, n: u64) -> Vec<u8> {
    let m = major << 5;
    if n < 24 {
        vec![m | n as u8]
    } else if n <= 0xff {
        vec![m | 24, n as u8]
    } else if n <= 0xffff {
        let mut v = vec![m | 25];
        v.extend_from_slice(&(n as u16).to_be_bytes());
        v
    } else if n <= 0xffff_ffff {
        let mut v = vec![m | 26];
        v.extend_from_slice(&(n as u32).to_be_bytes());
        v
    } else {
        let mut v = vec![m | 27];
        v.extend_from_slice(&n.to_be_bytes());
        v
    }
}

pub fn int(i: i64) -> Vec<u8> {
    if i >= 0 {
        head(0, i as u64)
    } else {
        head(1, (-1 - i) as u64)
    }
}

pub fn bstr(b: &[u8]) -> Vec<u8> {
    let mut v = head(2, b.len() as u64);
    v.extend_from_slice(b);
    v
}

pub fn tstr(s: &str) -> Vec<u8> {
    let mut v = head(3, s.len() as u64);
    v.extend_from_slice(s.as_bytes());
    v
}

/// A map with entries exactly in the given order.
pub fn map(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut v = head(5, entries.len() as u64);
    for (k, val) in entries {
        v.extend_from_slice(k);
        v.extend_from_slice(val);
    }
    v
}

pub fn array(items: &[Vec<u8>]) -> Vec<u8> {
    let mut v = head(4, items.len() as u64);
    for i in items {
        v.extend_from_slice(i);
    }
    v
}

/// The normal protected header for `k`.
pub fn protected_for(k: &SigningKey, alg: i64) -> Vec<u8> {
    map(&[
        (int(1), int(alg)),
        (int(4), bstr(k.public_key().kid())),
        (int(16), tstr("application/pqwrap-cap+cwt")),
    ])
}

pub fn sig_structure(protected: &[u8], aad: &[u8], payload: &[u8]) -> Vec<u8> {
    array(&[
        tstr("Signature1"),
        bstr(protected),
        bstr(aad),
        bstr(payload),
    ])
}

/// `18([protected, unprotected, payload, sig])` with a correct signature by `k`.
pub fn signed(k: &SigningKey, protected: &[u8], unprotected: &[u8], payload: &[u8]) -> Vec<u8> {
    let sig = k.sign(&sig_structure(protected, b"", payload));
    let mut v = vec![0xd2];
    v.extend(array(&[
        bstr(protected),
        unprotected.to_vec(),
        bstr(payload),
        bstr(&sig),
    ]));
    v
}

/// Splits a tagged COSE_Sign1 produced by pqwrap into (protected, payload, signature).
pub fn split(token: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    assert_eq!(&token[..2], &[0xd2, 0x84]);
    let mut pos = 2;
    let next = |pos: &mut usize| -> Vec<u8> {
        let ib = token[*pos];
        if ib == 0xa0 {
            *pos += 1;
            return vec![];
        }
        assert_eq!(ib >> 5, 2);
        let ai = ib & 0x1f;
        let (len, hl) = match ai {
            0..=23 => (ai as usize, 1),
            24 => (token[*pos + 1] as usize, 2),
            25 => (
                u16::from_be_bytes([token[*pos + 1], token[*pos + 2]]) as usize,
                3,
            ),
            _ => panic!("unexpected length form"),
        };
        let out = token[*pos + hl..*pos + hl + len].to_vec();
        *pos += hl + len;
        out
    };
    let p = next(&mut pos);
    let u = next(&mut pos);
    assert!(u.is_empty());
    let payload = next(&mut pos);
    let sig = next(&mut pos);
    assert_eq!(pos, token.len());
    (p, payload, sig)
}

/// A minimal valid claims payload with the given extra/replaced entries appended raw.
pub fn claims_entries(aud: Option<&str>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut e = vec![(int(2), tstr("agent-1"))];
    if let Some(a) = aud {
        e.push((int(3), tstr(a)));
    }
    e.push((int(4), int((NOW + 600) as i64)));
    e.push((int(5), int(NOW as i64)));
    e.push((int(6), int(NOW as i64)));
    e.push((int(7), bstr(&[9u8; 16])));
    e.push((int(-65537), map(&[(int(3), vec![0xf5])])));
    e
}
