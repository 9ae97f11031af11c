//! Native envelope: every kind of tampering gives its typed error, and the multi-recipient
//! "invisible salamander" attack fails on key commitment.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod envelope_spec;

use std::io::Write;

use pqwrap_core::envelope::{
    CHUNK_SIZE, CT_CHUNK_SIZE, Encryptor, EnvelopeError, Header, decrypt_to,
};
use pqwrap_core::kem;
use pqwrap_core::keys::Identity;
use sha2::{Digest, Sha256};

const S: usize = 8192;
const P: usize = 4096 + 2 * S;

fn id(seed: u8) -> Identity {
    Identity::Hybrid(Box::new(kem::SecretKey::from_seed(&[seed; 32])))
}

fn pk(i: &Identity) -> &kem::PublicKey {
    match i {
        Identity::Hybrid(sk) => sk.public_key(),
        Identity::X25519(_) => unreachable!(),
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A file to recipients a (seed 1) and b (seed 2) with `n` plaintext bytes.
fn file(n: usize) -> (Vec<u8>, Vec<u8>) {
    let pt = pattern(n);
    let mut enc =
        Encryptor::new(Vec::new(), &[id(1).to_recipient(), id(2).to_recipient()]).unwrap();
    enc.write_all(&pt).unwrap();
    (enc.finish().unwrap(), pt)
}

fn open(f: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    decrypt_to(f, &[id(1)], &mut out)?;
    Ok(out)
}

fn expect(f: &[u8], want: &str) {
    let err = open(f).expect_err("tampered file must not open");
    assert_eq!(err.code(), want, "got {err:?}");
}

/// Recomputes the checksum of slot `i` so that only the MAC/commitment can catch a change.
fn fix_checksum(f: &mut [u8], i: usize) {
    let off = 4096 + i * S;
    let slot = &mut f[off..off + S];
    slot[16..48].fill(0);
    let sum: [u8; 32] = Sha256::digest(&*slot).into();
    slot[16..48].copy_from_slice(&sum);
}

/// Offset of a header-body field in slot 0.
fn body(off: usize) -> usize {
    4096 + 48 + off
}

#[test]
fn untampered_file_opens() {
    let (f, pt) = file(2 * CHUNK_SIZE + 100);
    assert_eq!(open(&f).unwrap(), pt);
}

#[test]
fn payload_truncation_reordering_duplication_and_appending_are_detected() {
    let (f, _) = file(2 * CHUNK_SIZE + 100); // chunks: full, full, 100 bytes (final)
    let c = |i: usize| P + i * CT_CHUNK_SIZE;

    // Truncated at a chunk boundary: the last full chunk is not marked final.
    expect(&f[..c(2)], "truncated");
    // Only the header: no chunk at all.
    expect(&f[..P], "truncated");
    // Cut inside the final chunk.
    assert!(matches!(
        open(&f[..f.len() - 10]),
        Err(EnvelopeError::PayloadAuth { chunk: 2 })
    ));
    // Fewer than 16 bytes of a final chunk.
    expect(&f[..c(2) + 5], "truncated");

    // Reordered: chunk 1 before chunk 0.
    let mut r = f[..P].to_vec();
    r.extend_from_slice(&f[c(1)..c(2)]);
    r.extend_from_slice(&f[c(0)..c(1)]);
    r.extend_from_slice(&f[c(2)..]);
    assert!(matches!(
        open(&r),
        Err(EnvelopeError::PayloadAuth { chunk: 0 })
    ));

    // Duplicated: chunk 0 twice.
    let mut d = f[..c(1)].to_vec();
    d.extend_from_slice(&f[c(0)..]);
    assert!(matches!(
        open(&d),
        Err(EnvelopeError::PayloadAuth { chunk: 1 })
    ));

    // Bit flip in the middle chunk.
    let mut b = f.clone();
    b[c(1) + 7] ^= 0x01;
    assert!(matches!(
        open(&b),
        Err(EnvelopeError::PayloadAuth { chunk: 1 })
    ));

    // Appended bytes after a partial final chunk: the final piece no longer opens.
    let mut a = f.clone();
    a.extend_from_slice(b"more");
    assert!(matches!(
        open(&a),
        Err(EnvelopeError::PayloadAuth { chunk: 2 })
    ));
}

#[test]
fn data_appended_after_a_full_final_chunk_is_trailing_data() {
    let (f, pt) = file(2 * CHUNK_SIZE); // two full chunks, the second final
    assert_eq!(open(&f).unwrap(), pt);
    let mut a = f.clone();
    a.push(0);
    expect(&a, "trailing_data");
    // A whole copy of the final chunk appended.
    let mut a2 = f.clone();
    a2.extend_from_slice(&f[P + CT_CHUNK_SIZE..]);
    expect(&a2, "trailing_data");
    // And cut at the chunk boundary: the first chunk is not final.
    expect(&f[..P + CT_CHUNK_SIZE], "truncated");
}

#[test]
fn empty_final_chunk_after_data_is_non_canonical() {
    // Built from the spec by hand: one full chunk (not final), then an empty final chunk.
    let a = id(1);
    let key = [5u8; 32];
    let salt = [6u8; 32];
    let k = envelope_spec::keys(&key, &salt);
    let st = envelope_spec::xwing_stanza(&key, &k.tag_key, pk(&a), &[7u8; 64]);
    let body = envelope_spec::seal_body(
        &k.mac_key,
        S as u32,
        1,
        &envelope_spec::body_unmaced(1, &salt, &k.commitment, &[st]),
    );
    // payload(pt of exactly one chunk) marks chunk 0 final; rebuild as non-final + empty.
    use aes_gcm::aead::AeadInOut;
    use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
    let c = Aes256Gcm::new(&k.payload_key.into());
    let mut payload = Vec::new();
    for (i, (pt, last)) in [(pattern(CHUNK_SIZE), 0u8), (Vec::new(), 1u8)]
        .into_iter()
        .enumerate()
    {
        let mut n = [0u8; 12];
        n[3..11].copy_from_slice(&(i as u64).to_be_bytes());
        n[11] = last;
        let mut buf = pt;
        let tag = c
            .encrypt_inout_detached(&Nonce::from(n), b"", buf.as_mut_slice().into())
            .unwrap();
        buf.extend_from_slice(&tag);
        payload.extend_from_slice(&buf);
    }
    let f = envelope_spec::file(
        S as u32,
        &envelope_spec::slot(1, &body, S as u32),
        &[0u8; S],
        &payload,
    );
    expect(&f, "non_canonical_payload");
}

#[test]
fn header_tampering_is_detected_by_checksum_mac_or_commitment() {
    let (f, _) = file(1000);
    // Slot layout: body at slot+48; salt at body+2, commitment at body+34, first stanza at
    // body+68 (kem, len, tag at +4, ciphertext at +20).
    let cases: &[(&str, usize, bool, &str)] = &[
        (
            "byte in a stanza, checksum not fixed",
            body(68 + 30),
            false,
            "no_valid_slot",
        ),
        ("recipient tag", body(68 + 4), true, "header_mac"),
        ("suite id", body(1), true, "unknown_suite"),
        ("salt", body(2), true, "key_commitment"),
        ("commitment", body(34), true, "key_commitment"),
        ("sequence", 4096 + 10, true, "header_mac"),
        ("stanza count", body(67), true, "malformed_header"),
        ("MAC", 4096 + 48 + 100 + 2 * 1188 - 1, true, "header_mac"),
        (
            "stanza 0 wrapped key",
            body(68 + 20 + 1120 + 3),
            true,
            "no_match",
        ),
    ];
    for &(what, off, fix, want) in cases {
        let mut t = f.clone();
        t[off] ^= 0x01;
        if fix {
            fix_checksum(&mut t, 0);
        }
        let err = open(&t).expect_err(what);
        assert_eq!(err.code(), want, "{what}: {err:?}");
    }
}

#[test]
fn a_stanza_that_does_not_open_is_skipped_and_then_no_match() {
    let (f, pt) = file(10);
    // Damage a's stanza (the first): a cannot open it, b's stanza still works for b.
    let mut t = f.clone();
    t[body(68 + 20 + 1120 + 3)] ^= 0x01;
    fix_checksum(&mut t, 0);
    expect(&t, "no_match");
    let mut out = Vec::new();
    // b's stanza is intact but the MAC now fails for b too: the header was changed.
    let err = decrypt_to(&t[..], &[id(2)], &mut out).unwrap_err();
    assert_eq!(err.code(), "header_mac");
    assert_eq!(open(&f).unwrap(), pt);
}

#[test]
fn preamble_and_slot_structure_errors() {
    let (f, _) = file(10);
    let mut v = f.clone();
    v[9] = 2;
    assert!(matches!(
        open(&v),
        Err(EnvelopeError::UnsupportedVersion(2))
    ));
    assert!(open(&v).unwrap_err().to_string().contains("version 2"));
    let mut fl = f.clone();
    fl[11] = 1;
    assert!(matches!(open(&fl), Err(EnvelopeError::UnsupportedFlags(1))));
    let mut ss = f.clone();
    ss[14] = 0x21; // 0x2100 = 8448, not a multiple of 4096
    assert!(matches!(open(&ss), Err(EnvelopeError::BadSlotSize(8448))));
    let mut res = f.clone();
    res[100] = 1;
    expect(&res, "malformed_preamble");
    expect(&f[..4096 + S], "truncated_header");
    expect(&f[..5], "not_native");
    expect(b"age-encryption.org/v1\n-> X25519 abc\n", "not_native");

    // Both slots valid with the same sequence.
    let mut amb = f.clone();
    let s0 = f[4096..4096 + S].to_vec();
    amb[4096 + S..4096 + 2 * S].copy_from_slice(&s0);
    expect(&amb, "ambiguous_slots");

    // Both slots empty.
    let mut none = f.clone();
    none[4096..P].fill(0);
    expect(&none, "no_valid_slot");

    // Non-zero padding after the body makes the slot invalid even with a good checksum.
    let mut pad = f.clone();
    pad[4096 + S - 1] = 1;
    fix_checksum(&mut pad, 0);
    expect(&pad, "no_valid_slot");

    // The header is parsed without keys; the typed errors come before any key is tried.
    assert!(Header::parse(&f).is_ok());
}

#[test]
fn invisible_salamander_multi_recipient_attack_fails() {
    // A malicious sender wraps file key K1 to a and K2 to b, hoping each sees a different
    // plaintext. Whichever key the commitment and MAC are computed under, the other
    // recipient's key is rejected on the key commitment before it is used.
    let (a, b) = (id(1), id(2));
    let salt = [0x33u8; 32];
    let (k1, k2) = ([0x11u8; 32], [0x22u8; 32]);
    let (s1, s2) = (
        envelope_spec::keys(&k1, &salt),
        envelope_spec::keys(&k2, &salt),
    );
    let stanzas = [
        envelope_spec::xwing_stanza(&k1, &s1.tag_key, pk(&a), &[1u8; 64]),
        envelope_spec::xwing_stanza(&k2, &s2.tag_key, pk(&b), &[2u8; 64]),
    ];
    let open_as = |f: &[u8], who: &Identity| {
        let mut out = Vec::new();
        decrypt_to(f, std::slice::from_ref(who), &mut out).map(|_| out)
    };
    for (commit, mac, payload) in [
        (&s1, &s1, &s1),
        (&s2, &s2, &s2),
        (&s1, &s2, &s1),
        (&s1, &s1, &s2),
    ] {
        let body = envelope_spec::seal_body(
            &mac.mac_key,
            S as u32,
            1,
            &envelope_spec::body_unmaced(1, &salt, &commit.commitment, &stanzas),
        );
        let pt = if std::ptr::eq(payload, &s1) {
            b"to a".as_slice()
        } else {
            b"to b".as_slice()
        };
        let f = envelope_spec::file(
            S as u32,
            &envelope_spec::slot(1, &body, S as u32),
            &[0u8; S],
            &envelope_spec::payload(&payload.payload_key, pt),
        );
        let ra = open_as(&f, &a);
        let rb = open_as(&f, &b);
        // Never both: at most one file key is accepted for this header.
        assert!(
            ra.is_err() || rb.is_err(),
            "both recipients opened the file"
        );
        let loser = if std::ptr::eq(commit, &s1) { &rb } else { &ra };
        assert!(
            matches!(loser, Err(EnvelopeError::KeyCommitment)),
            "{loser:?}"
        );
    }
}
