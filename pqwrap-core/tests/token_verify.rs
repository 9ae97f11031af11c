//! Verification must not be talked into accepting a forgery: one test per rule of the
//! verifier (docs/TOKENS.md), plus the exhaustive single-bit-flip test.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod token_support;

use pqwrap_core::token::{
    Algorithm, CborError, ClaimsError, HeaderParam, Issuer, RevocationList, TokenError, Verifier,
    decode_text, encode_text,
};
use token_support::*;

#[test]
fn valid_token_verifies_and_round_trips_text() {
    let k = key(Algorithm::MlDsa65, 1);
    let t = token(&k);
    let text = encode_text(&t);
    assert!(!text.contains('=') && !text.contains('+') && !text.contains('/'));
    assert_eq!(decode_text(&text).unwrap(), t);
    let v = verifier(&k)
        .verify_text(&format!("{text}\n"), NOW + 10)
        .unwrap();
    let c = v.claims();
    assert_eq!(c.sub, "cowork-session-1234");
    assert_eq!(c.aud, AUD);
    assert_eq!((c.iat, c.nbf, c.exp), (NOW, NOW, NOW + 3600));
    assert_eq!(c.capabilities, design().capabilities);
    assert_eq!(v.kid(), k.public_key().kid());
    assert_eq!(v.algorithm(), Algorithm::MlDsa65);
}

#[test]
fn design_token_is_under_3800_bytes() {
    let t = token(&key(Algorithm::MlDsa65, 1));
    assert!(t.len() < 3800, "token is {} bytes", t.len());
}

#[test]
fn all_three_parameter_sets_work_and_use_their_cose_alg() {
    for (alg, id) in [
        (Algorithm::MlDsa44, -48),
        (Algorithm::MlDsa65, -49),
        (Algorithm::MlDsa87, -50),
    ] {
        let k = key(alg, 2);
        let t = token(&k);
        let (p, _, sig) = split(&t);
        assert_eq!(p, protected_for(&k, id));
        assert_eq!(sig.len(), alg.signature_len());
        verifier(&k).verify(&t, NOW).unwrap();
    }
}

/// Flips each bit in `bits` (one at a time) and returns those whose flip still verified.
/// The verifying key is parsed once; the work is spread over the available cores.
fn accepted_flips(bits: &[usize]) -> Vec<usize> {
    let k = key(Algorithm::MlDsa65, 3);
    let t = token(&k);
    let v = verifier(&k);
    v.verify(&t, NOW).unwrap();
    assert!(bits.iter().all(|b| b / 8 < t.len()));
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    std::thread::scope(|s| {
        let handles: Vec<_> = bits
            .chunks(bits.len().div_ceil(threads).max(1))
            .map(|chunk| {
                let (t, v) = (&t, &v);
                s.spawn(move || {
                    let mut bad = Vec::new();
                    let mut m = t.clone();
                    for &bit in chunk {
                        m[bit / 8] ^= 1 << (bit % 8);
                        if v.verify(&m, NOW).is_ok() {
                            bad.push(bit);
                        }
                        m[bit / 8] ^= 1 << (bit % 8);
                    }
                    bad
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// Every single-bit flip of a valid token is rejected — exhaustively, all 8 × len flips
/// (about 29,000 ML-DSA-65 verifications). ml-dsa's generic verify is instantiated in the
/// core, which the workspace builds at opt-level 2 even for tests, so this runs by default
/// in a few seconds.
#[test]
fn every_single_bit_flip_is_rejected() {
    let len = token(&key(Algorithm::MlDsa65, 3)).len();
    let all: Vec<usize> = (0..len * 8).collect();
    let accepted = accepted_flips(&all);
    assert!(accepted.is_empty(), "accepted flipped bits: {accepted:?}");
}

#[test]
fn unknown_kid_is_rejected() {
    let trusted = key(Algorithm::MlDsa65, 1);
    let other = key(Algorithm::MlDsa65, 2);
    let t = token(&other);
    assert!(matches!(
        verifier(&trusted).verify(&t, NOW),
        Err(TokenError::UnknownKid(_))
    ));
}

#[test]
fn header_alg_disagreeing_with_pinned_key_is_rejected() {
    let k = key(Algorithm::MlDsa65, 1);
    let (_, payload, _) = split(&token(&k));
    // Properly signed by the pinned key, but the header claims ML-DSA-44 / ML-DSA-87 / EdDSA.
    for alg in [-48, -50, -8] {
        let t = signed(&k, &protected_for(&k, alg), &map(&[]), &payload);
        assert!(
            matches!(
                verifier(&k).verify(&t, NOW),
                Err(TokenError::AlgorithmMismatch { header, .. }) if header == alg
            ),
            "alg {alg}"
        );
    }
}

#[test]
fn key_carried_in_the_token_is_never_trusted() {
    let pinned = key(Algorithm::MlDsa65, 1);
    let attacker = key(Algorithm::MlDsa65, 66);
    let (_, payload, _) = split(&token(&pinned));
    let cose_key = attacker.public_key().to_cose_key();
    // Attacker key in the unprotected header (COSE "kid"/key slots): refused outright.
    let unprot = map(&[
        (int(4), bstr(attacker.public_key().kid())),
        (int(-1), cose_key.clone()),
    ]);
    let t = signed(&attacker, &protected_for(&pinned, -49), &unprot, &payload);
    assert!(matches!(
        verifier(&pinned).verify(&t, NOW),
        Err(TokenError::UnprotectedHeader)
    ));
    // Attacker key in the protected header: an unknown parameter, refused.
    let prot = map(&[
        (int(1), int(-49)),
        (int(4), bstr(attacker.public_key().kid())),
        (int(16), tstr("application/pqwrap-cap+cwt")),
        (int(-1), cose_key),
    ]);
    let t = signed(&attacker, &prot, &map(&[]), &payload);
    assert!(matches!(
        verifier(&pinned).verify(&t, NOW),
        Err(TokenError::Header(_))
    ));
    // Attacker's own kid in the header: not pinned.
    let t = signed(
        &attacker,
        &protected_for(&attacker, -49),
        &map(&[]),
        &payload,
    );
    assert!(matches!(
        verifier(&pinned).verify(&t, NOW),
        Err(TokenError::UnknownKid(_))
    ));
    // Attacker signs but names the pinned kid: signature fails.
    let t = signed(&attacker, &protected_for(&pinned, -49), &map(&[]), &payload);
    assert!(matches!(
        verifier(&pinned).verify(&t, NOW),
        Err(TokenError::BadSignature)
    ));
}

#[test]
fn signature_is_over_the_exact_received_bytes() {
    let k = key(Algorithm::MlDsa65, 1);
    let (p, payload, _) = split(&token(&k));
    // Signed with a non-empty external_aad: the verifier's Sig_structure differs.
    let sig = k.sign(&sig_structure(&p, b"x", &payload));
    let mut t = vec![0xd2];
    t.extend(array(&[bstr(&p), map(&[]), bstr(&payload), bstr(&sig)]));
    assert!(matches!(
        verifier(&k).verify(&t, NOW),
        Err(TokenError::BadSignature)
    ));
    // Signed over the payload alone.
    let sig = k.sign(&payload);
    let mut t = vec![0xd2];
    t.extend(array(&[bstr(&p), map(&[]), bstr(&payload), bstr(&sig)]));
    assert!(matches!(
        verifier(&k).verify(&t, NOW),
        Err(TokenError::BadSignature)
    ));
    // The original signature over a re-encoded (non-shortest) protected header: the header
    // is refused as non-deterministic, and would not verify anyway.
    let (_, _, good_sig) = split(&token(&k));
    assert_eq!(&p[..4], &[0xa3, 0x01, 0x38, 0x30]);
    let mut p2 = vec![0xa3, 0x01, 0x39, 0x00, 0x30];
    p2.extend_from_slice(&p[4..]);
    let mut t = vec![0xd2];
    t.extend(array(&[
        bstr(&p2),
        map(&[]),
        bstr(&payload),
        bstr(&good_sig),
    ]));
    assert!(verifier(&k).verify(&t, NOW).is_err());
}

#[test]
fn oversized_input_is_rejected_before_parsing() {
    let k = key(Algorithm::MlDsa65, 1);
    // A syntactically broken 16 KiB + 1 blob: the size error comes first.
    let big = vec![0xffu8; 16 * 1024 + 1];
    assert!(matches!(
        verifier(&k).verify(&big, NOW),
        Err(TokenError::TooLarge(_))
    ));
    let text = "A".repeat(30_000);
    assert!(matches!(
        verifier(&k).verify_text(&text, NOW),
        Err(TokenError::TooLarge(_))
    ));
}

#[test]
fn duplicate_map_keys_are_rejected() {
    let k = key(Algorithm::MlDsa65, 1);
    let (_, payload, _) = split(&token(&k));
    let prot = map(&[
        (int(1), int(-49)),
        (int(1), int(-49)),
        (int(4), bstr(k.public_key().kid())),
        (int(16), tstr("application/pqwrap-cap+cwt")),
    ]);
    let t = signed(&k, &prot, &map(&[]), &payload);
    assert!(matches!(
        verifier(&k).verify(&t, NOW),
        Err(TokenError::Cbor(CborError::DuplicateKey))
    ));
    // In the (validly signed) claims.
    let mut e = claims_entries(Some(AUD));
    e.insert(1, (int(2), tstr("agent-2")));
    let t = signed(&k, &protected_for(&k, -49), &map(&[]), &map(&e));
    assert!(matches!(
        verifier(&k).verify(&t, NOW),
        Err(TokenError::Claims(ClaimsError::Payload(
            CborError::DuplicateKey
        )))
    ));
}

#[test]
fn indefinite_lengths_are_rejected() {
    let k = key(Algorithm::MlDsa65, 1);
    let (p, payload, sig) = split(&token(&k));
    // Indefinite-length outer array.
    let mut t = vec![0xd2, 0x9f];
    for item in [bstr(&p), map(&[]), bstr(&payload), bstr(&sig)] {
        t.extend(item);
    }
    t.push(0xff);
    assert!(matches!(
        verifier(&k).verify(&t, NOW),
        Err(TokenError::Cbor(CborError::Indefinite))
    ));
    // Indefinite-length byte string for the payload (chunks of the real payload).
    let mut t = vec![0xd2, 0x84];
    t.extend(bstr(&p));
    t.extend(map(&[]));
    t.push(0x5f);
    t.extend(bstr(&payload[..10]));
    t.extend(bstr(&payload[10..]));
    t.push(0xff);
    t.extend(bstr(&sig));
    assert!(matches!(
        verifier(&k).verify(&t, NOW),
        Err(TokenError::Cbor(CborError::Indefinite))
    ));
    // Indefinite-length map inside validly signed claims.
    let mut claims = vec![0xbf];
    for (kk, vv) in claims_entries(Some(AUD)) {
        claims.extend(kk);
        claims.extend(vv);
    }
    claims.push(0xff);
    let t = signed(&k, &protected_for(&k, -49), &map(&[]), &claims);
    assert!(matches!(
        verifier(&k).verify(&t, NOW),
        Err(TokenError::Claims(_))
    ));
}

#[test]
fn unknown_critical_header_is_rejected() {
    let k = key(Algorithm::MlDsa65, 1);
    let (_, payload, _) = split(&token(&k));
    let prot = map(&[
        (int(1), int(-49)),
        (int(2), array(&[int(99)])),
        (int(4), bstr(k.public_key().kid())),
        (int(16), tstr("application/pqwrap-cap+cwt")),
        (int(99), int(0)),
    ]);
    let t = signed(&k, &prot, &map(&[]), &payload);
    let r = verifier(&k).verify(&t, NOW);
    assert!(matches!(r, Err(TokenError::UnknownCritical(_))), "{r:?}");
    // Marking an understood parameter critical is fine.
    let prot = map(&[
        (int(1), int(-49)),
        (int(2), array(&[int(16)])),
        (int(4), bstr(k.public_key().kid())),
        (int(16), tstr("application/pqwrap-cap+cwt")),
    ]);
    let t = signed(&k, &prot, &map(&[]), &payload);
    verifier(&k).verify(&t, NOW).unwrap();
}

#[test]
fn missing_or_wrong_type_header_is_rejected() {
    let k = key(Algorithm::MlDsa65, 1);
    let (_, payload, _) = split(&token(&k));
    let no_typ = map(&[(int(1), int(-49)), (int(4), bstr(k.public_key().kid()))]);
    let t = signed(&k, &no_typ, &map(&[]), &payload);
    assert!(matches!(
        verifier(&k).verify(&t, NOW),
        Err(TokenError::Header(HeaderParam::Missing("typ")))
    ));
    let wrong = map(&[
        (int(1), int(-49)),
        (int(4), bstr(k.public_key().kid())),
        (int(16), tstr("application/cwt")),
    ]);
    let t = signed(&k, &wrong, &map(&[]), &payload);
    assert!(matches!(
        verifier(&k).verify(&t, NOW),
        Err(TokenError::Header(HeaderParam::Typ { .. }))
    ));
}

#[test]
fn untagged_or_wrongly_tagged_sign1_is_rejected() {
    let k = key(Algorithm::MlDsa65, 1);
    let t = token(&k);
    assert!(matches!(
        verifier(&k).verify(&t[1..], NOW),
        Err(TokenError::Structure(_))
    ));
    let mut cwt = vec![0xd8, 0x3d];
    cwt.extend_from_slice(&t);
    assert!(matches!(
        verifier(&k).verify(&cwt, NOW),
        Err(TokenError::Structure(_))
    ));
}

#[test]
fn expiry_and_not_before_use_a_small_fixed_leeway() {
    let k = key(Algorithm::MlDsa65, 1);
    let t = token(&k); // nbf = NOW, exp = NOW + 3600
    let v = verifier(&k); // default leeway 30 s
    v.verify(&t, NOW + 3600 + 29).unwrap();
    assert!(matches!(
        v.verify(&t, NOW + 3600 + 30),
        Err(TokenError::Expired { .. })
    ));
    v.verify(&t, NOW - 30).unwrap();
    assert!(matches!(
        v.verify(&t, NOW - 31),
        Err(TokenError::IssuedInFuture { .. })
    ));
    let strict = verifier(&k).with_leeway(0).unwrap();
    assert!(matches!(
        strict.verify(&t, NOW + 3600),
        Err(TokenError::Expired { .. })
    ));
    assert!(strict.verify(&t, NOW - 1).is_err());
    assert!(matches!(
        verifier(&k).with_leeway(301),
        Err(TokenError::Leeway(301))
    ));
    // nbf later than iat.
    let mut e = claims_entries(Some(AUD));
    e[3] = (int(5), int((NOW + 100) as i64));
    let t = signed(&k, &protected_for(&k, -49), &map(&[]), &map(&e));
    assert!(matches!(
        strict.verify(&t, NOW + 50),
        Err(TokenError::NotYetValid { .. })
    ));
    strict.verify(&t, NOW + 100).unwrap();
}

#[test]
fn audience_is_mandatory_and_checked() {
    let k = key(Algorithm::MlDsa65, 1);
    let t = token(&k);
    let other = Verifier::new(trust_of(&k), "clipboard.enforcer.local");
    assert!(matches!(
        other.verify(&t, NOW),
        Err(TokenError::WrongAudience { .. })
    ));
    let no_aud = map(&claims_entries(None));
    let t = signed(&k, &protected_for(&k, -49), &map(&[]), &no_aud);
    assert!(matches!(
        verifier(&k).verify(&t, NOW),
        Err(TokenError::Claims(ClaimsError::AudienceMissing))
    ));
    // Even the narrowing verifier (which does not compare audiences) requires one.
    assert!(
        Verifier::for_narrowing(trust_of(&k))
            .verify(&t, NOW)
            .is_err()
    );
}

#[test]
fn revoked_cti_and_children_of_revoked_parents_are_refused() {
    let k = key(Algorithm::MlDsa65, 1);
    let issuer = Issuer::new(key(Algorithm::MlDsa65, 1));
    let parent = issuer
        .issue(
            &design(),
            AUD,
            std::time::Duration::from_secs(3600),
            NOW,
            None,
        )
        .unwrap();
    let vp = verifier(&k).verify(&parent.bytes, NOW).unwrap();
    let mut child_m = design();
    child_m.ttl = None; // the child inherits what remains of the parent's lifetime
    child_m.capabilities.network.clear();
    let child = issuer.narrow(&vp.into(), &child_m, None, NOW + 1).unwrap();
    let vc = verifier(&k).verify(&child.bytes, NOW + 1).unwrap();
    let grandchild = issuer.narrow(&vc.into(), &child_m, None, NOW + 2).unwrap();

    let mut rl = RevocationList::new();
    rl.insert(parent.claims.cti);
    let v = verifier(&k).with_revocations(rl);
    assert!(matches!(
        v.verify(&parent.bytes, NOW),
        Err(TokenError::Revoked(_))
    ));
    assert!(matches!(
        v.verify(&child.bytes, NOW + 1),
        Err(TokenError::AncestorRevoked(_))
    ));
    assert!(matches!(
        v.verify(&grandchild.bytes, NOW + 2),
        Err(TokenError::AncestorRevoked(_))
    ));

    let text = format!(
        "# revoked\n\n{}\n",
        pqwrap_core::token::keys::hex_lower(&child.claims.cti)
    );
    let v = verifier(&k).with_revocations(RevocationList::parse(&text).unwrap());
    v.verify(&parent.bytes, NOW).unwrap();
    assert!(matches!(
        v.verify(&child.bytes, NOW + 1),
        Err(TokenError::Revoked(_))
    ));
    assert!(matches!(
        v.verify(&grandchild.bytes, NOW + 2),
        Err(TokenError::AncestorRevoked(_))
    ));
    assert!(RevocationList::parse("zz").is_err());
}

/// A cti is exactly 32 lowercase hex digits: `u8::from_str_radix` on pairs took `+9` as a
/// digit pair, so `+9ddf…` (and other signed spellings) parsed as some other cti.
#[test]
fn revocation_lines_are_strict_hex() {
    let good = "9ddf0123456789abcdef0123456789ab";
    assert!(RevocationList::parse(good).is_ok());
    for bad in [
        "+9ddf0123456789abcdef0123456789a",
        "9d+f0123456789abcdef0123456789ab",
        "++++++++++++++++++++++++++++++++",
        "+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0",
        "9DDF0123456789ABCDEF0123456789AB",
        "9ddf0123456789abcdef0123456789a",
        "9ddf0123456789abcdef0123456789abc",
        "9ddf 0123456789abcdef0123456789a",
        "0x9ddf0123456789abcdef0123456789",
        "９ddf0123456789abcdef0123456789a",
    ] {
        let e = RevocationList::parse(&format!("# list\n{bad}\n")).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{bad:?}: {e}");
    }
}

#[test]
fn unknown_claims_and_bad_claim_types_are_rejected() {
    let k = key(Algorithm::MlDsa65, 1);
    let mut e = claims_entries(Some(AUD));
    e.push((int(-70000), int(1)));
    let t = signed(&k, &protected_for(&k, -49), &map(&e), &[]);
    // (unprotected not empty) — first the unprotected-header rule.
    assert!(verifier(&k).verify(&t, NOW).is_err());
    let t = signed(&k, &protected_for(&k, -49), &map(&[]), &map(&e));
    assert!(matches!(
        verifier(&k).verify(&t, NOW),
        Err(TokenError::Claims(ClaimsError::UnknownLabel(_)))
    ));
    let mut e = claims_entries(Some(AUD));
    e[5] = (int(7), bstr(&[1u8; 15]));
    let t = signed(&k, &protected_for(&k, -49), &map(&[]), &map(&e));
    assert!(matches!(
        verifier(&k).verify(&t, NOW),
        Err(TokenError::Claims(ClaimsError::CtiLength("cti")))
    ));
}

/// The token decoded in docs/TOKENS.md §9 is exactly what these inputs produce, and verifies.
#[test]
fn documented_token_vector_is_reproduced_and_verifies() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/TOKENS.md")).unwrap();
    let after = doc.split("The same token in its text form").nth(1).unwrap();
    let block = after.split("```").nth(1).unwrap();
    let text: String = block.split_whitespace().collect();
    let k = key(Algorithm::MlDsa65, 0x2a);
    assert_eq!(
        pqwrap_core::token::keys::hex_lower(k.public_key().kid()),
        "037d2ea9ac05e0a3c12598f44fe1a84f75a39a08c48acf2a7747d185f2a920f9"
    );
    let m = pqwrap_core::token::Manifest::from_json(DESIGN_MANIFEST).unwrap();
    let claims = pqwrap_core::token::Claims {
        iss: Some("broker.example".into()),
        sub: m.agent.clone(),
        aud: "files.local".into(),
        iat: 1_780_000_000,
        nbf: 1_780_000_000,
        exp: 1_780_003_600,
        cti: *b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff",
        cnf: None,
        capabilities: m.capabilities,
        ancestors: vec![],
        status: None,
    };
    let t = Issuer::new(key(Algorithm::MlDsa65, 0x2a))
        .sign_claims(claims.clone())
        .unwrap();
    assert_eq!(t.to_text(), text);
    assert_eq!(t.bytes.len(), 3603);
    let v = Verifier::new(trust_of(&k), "files.local")
        .verify_text(&text, 1_780_000_100)
        .unwrap();
    assert_eq!(*v.claims(), claims);
}

#[test]
fn text_form_is_canonical_base64url() {
    let k = key(Algorithm::MlDsa65, 1);
    let text = encode_text(&token(&k));
    // 3587-ish bytes: the last character carries unused low bits; setting them must fail.
    let last = text.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    let mut accepted = 0;
    for other in alphabet.chars() {
        if other == last {
            continue;
        }
        let t = format!("{}{other}", &text[..text.len() - 1]);
        if verifier(&k).verify_text(&t, NOW).is_ok() {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 0, "last char {last} (index {idx}) has aliases");
    for bad in [
        format!("{text}="),
        text.replace('-', "+"),
        format!("{} {}", &text[..10], &text[10..]),
    ] {
        if bad != text {
            assert!(verifier(&k).verify_text(&bad, NOW).is_err());
        }
    }
}
