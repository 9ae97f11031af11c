//! Token Status List (draft-ietf-oauth-status-list, CWT form): the `status` claim in issued
//! tokens, signing and verifying Status List Tokens, and the `Verifier` refusing what the
//! list says is revoked.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod token_support;

use std::time::Duration;

use pqwrap_core::token::status::{
    self, Bits, MAX_STATUS_TOKEN_LEN, STATUS_LIST_TYPE, Status, StatusError, StatusList,
    StatusListClaims, StatusRef,
};
use pqwrap_core::token::{
    Algorithm, ClaimsError, HeaderParam, Issuer, Manifest, TokenError, Unavailable, Verifier,
};
use token_support::*;

const URI: &str = "file:///run/pqwrap/status.cwt";

fn issuer(b: u8) -> Issuer {
    Issuer::new(key(Algorithm::MlDsa65, b))
}

fn list_with(revoked: &[u64], entries: u64) -> StatusList {
    let mut l = StatusList::new(Bits::One, entries).unwrap();
    for i in revoked {
        l.set(*i, Status::Invalid).unwrap();
    }
    l
}

fn published(i: &Issuer, revoked: &[u64]) -> Vec<u8> {
    let mut c = StatusListClaims::new(URI, NOW, list_with(revoked, 1024));
    c.exp = Some(NOW + 3600);
    c.ttl = Some(300);
    i.sign_status_list(&c).unwrap()
}

fn issued(i: &Issuer, idx: u64) -> Vec<u8> {
    i.issue_with_status(
        &design(),
        AUD,
        Duration::from_secs(600),
        NOW,
        None,
        StatusRef::new(URI, idx).unwrap(),
    )
    .unwrap()
    .bytes
}

#[test]
fn issued_tokens_carry_their_status_entry() {
    let i = issuer(1);
    let t = issued(&i, 77);
    let v = verifier(i.key()).verify(&t, NOW).unwrap();
    let r = v.claims().status.as_ref().unwrap();
    assert_eq!((r.uri(), r.idx()), (URI, 77));
    let j = v.claims().to_json();
    assert_eq!(j["status"]["status_list"]["idx"], 77);
    assert_eq!(j["status"]["status_list"]["uri"], URI);
}

#[test]
fn a_revoked_entry_is_refused_and_the_others_pass() {
    let i = issuer(1);
    let list = status::verify(&trust_of(i.key()), &published(&i, &[3, 9]), NOW).unwrap();
    let v = verifier(i.key()).with_status_list(list);
    for idx in [0, 2, 4, 8, 10, 1023] {
        assert!(v.verify(&issued(&i, idx), NOW).is_ok(), "idx {idx}");
    }
    for idx in [3, 9] {
        assert!(matches!(
            v.verify(&issued(&i, idx), NOW),
            Err(TokenError::StatusRevoked { idx: got, status: Status::Invalid }) if got == idx
        ));
    }
}

#[test]
fn suspended_and_application_statuses_are_refused_too() {
    let i = issuer(1);
    let mut l = StatusList::new(Bits::Two, 16).unwrap();
    l.set(1, Status::Suspended).unwrap();
    l.set(2, Status::Other(3)).unwrap();
    let bytes = i
        .sign_status_list(&StatusListClaims::new(URI, NOW, l))
        .unwrap();
    let list = status::verify(&trust_of(i.key()), &bytes, NOW).unwrap();
    assert_eq!(list.claims().list.bits(), Bits::Two);
    let v = verifier(i.key()).with_status_list(list);
    assert!(v.verify(&issued(&i, 0), NOW).is_ok());
    for idx in [1, 2] {
        assert!(matches!(
            v.verify(&issued(&i, idx), NOW),
            Err(TokenError::StatusRevoked { .. })
        ));
    }
}

#[test]
fn a_list_that_cannot_answer_refuses() {
    let i = issuer(1);
    let list = status::verify(&trust_of(i.key()), &published(&i, &[]), NOW).unwrap();
    let v = verifier(i.key()).with_status_list(list);
    // An index beyond the list (the list is older than the token).
    assert!(matches!(
        v.verify(&issued(&i, 5000), NOW),
        Err(TokenError::StatusUnavailable(_))
    ));
    // A token naming another list.
    let other = i
        .issue_with_status(
            &design(),
            AUD,
            Duration::from_secs(600),
            NOW,
            None,
            StatusRef::new("urn:other", 1).unwrap(),
        )
        .unwrap();
    assert!(matches!(
        v.verify(&other.bytes, NOW),
        Err(TokenError::StatusUnavailable(_))
    ));
    // A token without a status claim is not the list's business.
    assert!(v.verify(&token(i.key()), NOW).is_ok());
    // Once the list has expired, a (still live) token with a status claim is refused.
    let long = i
        .issue_with_status(
            &design(),
            AUD,
            Duration::from_secs(7200),
            NOW,
            None,
            StatusRef::new(URI, 1).unwrap(),
        )
        .unwrap();
    assert!(v.verify(&long.bytes, NOW).is_ok());
    assert!(matches!(
        v.verify(&long.bytes, NOW + 3600 + 31),
        Err(TokenError::StatusUnavailable(Unavailable::Expired { .. }))
    ));
}

#[test]
fn status_list_tokens_are_verified_like_tokens() {
    let i = issuer(1);
    let other = issuer(2);
    let bytes = published(&i, &[1]);
    assert!(matches!(
        status::verify(&trust_of(other.key()), &bytes, NOW),
        Err(TokenError::UnknownKid(_))
    ));
    assert!(matches!(
        status::verify(&trust_of(i.key()), &bytes, NOW + 3600 + 31),
        Err(TokenError::StatusList(StatusError::Expired { .. }))
    ));
    assert!(matches!(
        status::verify(&trust_of(i.key()), &bytes, NOW - 3600),
        Err(TokenError::IssuedInFuture { .. })
    ));
    // The text form is accepted, surrounding whitespace ignored.
    let text = format!("{}\n", pqwrap_core::token::encode_text(&bytes));
    let v = status::verify(&trust_of(i.key()), text.as_bytes(), NOW).unwrap();
    assert_eq!(v.uri(), URI);
    assert_eq!(v.claims().ttl, Some(300));
    // Oversized input is refused before parsing.
    let huge = vec![b'A'; MAX_STATUS_TOKEN_LEN * 2];
    assert!(matches!(
        status::verify(&trust_of(i.key()), &huge, NOW),
        Err(TokenError::TooLarge(_))
    ));
}

#[test]
fn the_two_token_types_are_not_interchangeable() {
    let i = issuer(1);
    // A capability token is not a status list, and a status list is not a capability token,
    // although the same key signed both.
    assert!(matches!(
        status::verify(&trust_of(i.key()), &token(i.key()), NOW),
        Err(TokenError::Header(HeaderParam::Typ { want })) if want == STATUS_LIST_TYPE
    ));
    assert!(matches!(
        verifier(i.key()).verify(&published(&i, &[]), NOW),
        Err(TokenError::Header(_))
    ));
}

#[test]
fn every_single_bit_flip_of_a_status_list_token_is_rejected() {
    let i = issuer(4);
    let bytes = i
        .sign_status_list(&StatusListClaims::new(URI, NOW, list_with(&[2], 8)))
        .unwrap();
    let trust = trust_of(i.key());
    let mut accepted = Vec::new();
    for bit in 0..bytes.len() * 8 {
        let mut t = bytes.clone();
        t[bit / 8] ^= 1 << (bit % 8);
        if status::verify(&trust, &t, NOW).is_ok() {
            accepted.push(bit);
        }
    }
    assert!(accepted.is_empty(), "accepted flipped bits: {accepted:?}");
}

#[test]
fn narrowed_children_share_or_get_their_own_entry() {
    let i = issuer(1);
    let parent = i
        .issue_with_status(
            &design(),
            AUD,
            Duration::from_secs(600),
            NOW,
            None,
            StatusRef::new(URI, 10).unwrap(),
        )
        .unwrap();
    let pv = Verifier::for_narrowing(trust_of(i.key()))
        .verify(&parent.bytes, NOW)
        .unwrap();
    let child_m = Manifest::from_json(
        r#"{"agent": "child", "capabilities": {"fileAccess":
            [{"path": "/home/user/Documents/Contracts/2024", "mode": "read"}]}}"#,
    )
    .unwrap();
    let shared = i.narrow(&pv, &child_m, None, NOW).unwrap();
    assert_eq!(shared.claims.status.as_ref().unwrap().idx(), 10);
    let own = i
        .narrow_with_status(&pv, &child_m, None, NOW, StatusRef::new(URI, 11).unwrap())
        .unwrap();
    assert_eq!(own.claims.status.as_ref().unwrap().idx(), 11);

    // Revoking the parent's entry revokes the child that shares it; the child with its own
    // entry stays valid until the issuer marks that entry too.
    let list = status::verify(&trust_of(i.key()), &published(&i, &[10]), NOW).unwrap();
    let v = verifier(i.key()).with_status_list(list);
    assert!(v.verify(&shared.bytes, NOW).is_err());
    assert!(v.verify(&own.bytes, NOW).is_ok());
    let list = status::verify(&trust_of(i.key()), &published(&i, &[10, 11]), NOW).unwrap();
    let v = verifier(i.key()).with_status_list(list);
    assert!(v.verify(&own.bytes, NOW).is_err());
}

#[test]
fn malformed_status_claims_are_refused() {
    let k = key(Algorithm::MlDsa65, 1);
    let good_ref = map(&[(
        tstr("status_list"),
        map(&[(tstr("idx"), int(1)), (tstr("uri"), tstr(URI))]),
    )]);
    let bad_refs = [
        map(&[(tstr("status_list"), map(&[(tstr("idx"), int(1))]))]),
        map(&[(
            tstr("status_list"),
            map(&[(tstr("idx"), int(-1)), (tstr("uri"), tstr(URI))]),
        )]),
        map(&[(
            tstr("status_list"),
            map(&[(tstr("idx"), int(1)), (tstr("uri"), tstr(""))]),
        )]),
        map(&[(
            tstr("status_list"),
            map(&[
                (tstr("idx"), int(1)),
                (tstr("uri"), tstr(URI)),
                (tstr("zzz"), int(0)),
            ]),
        )]),
        map(&[(tstr("other"), int(1))]),
        int(5),
    ];
    let with = |r: &[u8]| {
        let mut e = claims_entries(Some(AUD));
        e.push((int(65535), r.to_vec()));
        // Deterministic order: 65535 (0x19ffff) sorts before the negative labels.
        e.sort_by(|a, b| a.0.cmp(&b.0));
        signed(&k, &protected_for(&k, -49), &map(&[]), &map(&e))
    };
    let v = verifier(&k).verify(&with(&good_ref), NOW).unwrap();
    assert_eq!(v.claims().status.as_ref().unwrap().idx(), 1);
    for (n, r) in bad_refs.iter().enumerate() {
        assert!(
            matches!(
                verifier(&k).verify(&with(r), NOW),
                Err(TokenError::Claims(ClaimsError::Status(_)))
            ),
            "bad status claim {n} accepted"
        );
    }
}
