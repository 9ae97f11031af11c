//! Token parsing and verification on arbitrary bytes: must never panic, and must never accept
//! anything but the seed token itself (which the fuzzer is given as a starting point).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pqwrap_core::token::{Algorithm, Claims, Issuer, Manifest, SigningKey, TrustSet, Verifier};

const NOW: u64 = 1_780_000_000;

struct Fixture {
    verifier: Verifier,
    token: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = SigningKey::from_seed(Algorithm::MlDsa65, &[1u8; 32]);
        let trust: TrustSet = [key.public_key().clone()].into_iter().collect();
        let m = Manifest::from_json(
            r#"{"agent":"fuzz","capabilities":{"fileAccess":[{"path":"/a","mode":"read"}]}}"#,
        )
        .expect("manifest");
        // Fixed claims (fixed cti) and deterministic ML-DSA: the same token on every run, so
        // a corpus seed made from it stays the one genuine token.
        let claims = Claims {
            iss: None,
            sub: "fuzz".into(),
            aud: "aud".into(),
            iat: NOW,
            nbf: NOW,
            exp: NOW + 60,
            cti: [7u8; 16],
            cnf: None,
            capabilities: m.capabilities,
            ancestors: vec![[6u8; 16]],
            status: None,
        };
        let token = Issuer::new(key).sign_claims(claims).expect("sign").bytes;
        Fixture {
            verifier: Verifier::new(trust, "aud"),
            token,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    if let Ok(v) = f.verifier.verify(data, NOW) {
        // Deterministic CBOR + a signature over the exact bytes: the only acceptable input is
        // the genuine token.
        assert_eq!(
            data,
            f.token.as_slice(),
            "accepted a token that was not issued"
        );
        let _ = v.may_read("/a/b");
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = f.verifier.verify_text(s, NOW);
        let _ = pqwrap_core::token::PublicKey::from_text(s);
    }
    let _ = pqwrap_core::token::PublicKey::from_cose_key(data);
});
