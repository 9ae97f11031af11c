//! age round trips through the public API, and every way a file can be damaged.

use std::io::{Cursor, Read, Write};

use pqwrap_core::age::{self, AgeError, ErrorKind, FileKey, Header, Passphrase, Stanza};
use pqwrap_core::keys::{Identity, Recipient};

const CHUNK: usize = age::stream::CHUNK_LEN;

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 251) as u8).collect()
}

fn encrypt(recipients: &[Recipient], pt: &[u8], armor: bool, piece: usize) -> Vec<u8> {
    let (fk, header) = age::new_header(recipients, false).expect("header");
    let mut w = age::encrypt_writer(Vec::new(), &fk, &header, armor).expect("writer");
    for c in pt.chunks(piece.max(1)) {
        w.write_all(c).expect("write");
    }
    w.finish().expect("finish")
}

fn decrypt(file: &[u8], ids: &[Identity]) -> Result<Vec<u8>, AgeError> {
    let mut r = age::Decryptor::new(file)?.decrypt(ids, &[])?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(AgeError::from_io)?;
    Ok(out)
}

fn kind(r: Result<Vec<u8>, AgeError>) -> ErrorKind {
    r.expect_err("must fail").kind()
}

#[test]
fn round_trip_sizes_recipients_and_armor() {
    let pq = Identity::generate_hybrid().expect("rng");
    let cl = Identity::generate_x25519().expect("rng");
    for n in [
        0,
        1,
        47,
        48,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        2 * CHUNK,
        3 * CHUNK + 5,
    ] {
        let pt = data(n);
        for id in [&pq, &cl] {
            for armor in [false, true] {
                for piece in [n.max(1), 7777] {
                    let file = encrypt(&[id.to_recipient()], &pt, armor, piece);
                    assert_eq!(age::is_age(&file), Some(age::Armored(armor)));
                    let out = decrypt(&file, std::slice::from_ref(id)).expect("decrypts");
                    assert_eq!(out, pt, "size {n} armor {armor}");
                    if !armor {
                        let (h, len) = Header::parse(&file).expect("parse");
                        assert_eq!(h.encode(), h.as_bytes());
                        assert_eq!(&file[..len], h.as_bytes());
                        let payload = (file.len() - len) as u64;
                        assert_eq!(age::stream::plaintext_len(payload), Some(n as u64));
                    }
                }
            }
        }
    }
}

#[test]
fn armor_lines_are_strict_64_columns() {
    let id = Identity::generate_x25519().expect("rng");
    let file = encrypt(&[id.to_recipient()], &data(5000), true, 100);
    let text = std::str::from_utf8(&file).expect("ASCII");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], age::armor::BEGIN);
    assert_eq!(*lines.last().unwrap(), age::armor::END);
    assert!(text.ends_with('\n'));
    let body = &lines[1..lines.len() - 1];
    for l in &body[..body.len() - 1] {
        assert_eq!(l.len(), 64);
    }
    assert!(!body.last().unwrap().is_empty() && body.last().unwrap().len() <= 64);
}

#[test]
fn second_identity_matches_and_no_match_is_reported() {
    let a = Identity::generate_hybrid().expect("rng");
    let b = Identity::generate_hybrid().expect("rng");
    let c = Identity::generate_x25519().expect("rng");
    let file = encrypt(&[b.to_recipient()], b"secret", false, 6);
    assert_eq!(
        decrypt(&file, &[a.clone(), c.clone(), b]).expect("ok"),
        b"secret"
    );
    assert_eq!(kind(decrypt(&file, &[a, c])), ErrorKind::NoMatch);
    assert_eq!(kind(decrypt(&file, &[])), ErrorKind::NoMatch);
}

#[test]
fn multi_recipient_each_can_decrypt() {
    let ids: Vec<Identity> = (0..3)
        .map(|_| Identity::generate_hybrid().expect("rng"))
        .collect();
    let rs: Vec<Recipient> = ids.iter().map(Identity::to_recipient).collect();
    let file = encrypt(&rs, &data(1000), false, 1000);
    for id in &ids {
        assert_eq!(
            decrypt(&file, std::slice::from_ref(id)).expect("ok"),
            data(1000)
        );
    }
    let (h, _) = Header::parse(&file).expect("parse");
    assert_eq!(h.stanza_types(), vec!["mlkem768x25519"; 3]);
    assert_eq!(h.protection(), age::Protection::PostQuantum);
}

#[test]
fn mixed_and_empty_recipients_refused() {
    let pq = Identity::generate_hybrid().expect("rng").to_recipient();
    let cl = Identity::generate_x25519().expect("rng").to_recipient();
    let fk = FileKey::generate().expect("rng");
    let e = Header::wrap(&fk, &[pq.clone(), cl.clone()], false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Encrypt);
    let h = Header::wrap(&fk, &[pq, cl], true).expect("allowed explicitly");
    assert_eq!(h.protection(), age::Protection::Mixed);
    assert_eq!(
        Header::wrap(&fk, &[], false).unwrap_err().kind(),
        ErrorKind::Encrypt
    );
}

#[test]
fn payload_damage_is_a_payload_failure() {
    let id = Identity::generate_x25519().expect("rng");
    let pt = data(3 * CHUNK + 100);
    let file = encrypt(&[id.to_recipient()], &pt, false, pt.len());
    let (_, hlen) = Header::parse(&file).expect("parse");
    let start = hlen + 16;
    let enc = CHUNK + 16;
    let ids = std::slice::from_ref(&id);

    let mut flipped = file.clone();
    flipped[start + enc + 10] ^= 1;
    assert_eq!(kind(decrypt(&flipped, ids)), ErrorKind::Payload);

    for cut in [
        start,
        start + enc,
        start + 2 * enc,
        file.len() - 1,
        file.len() - 17,
    ] {
        assert_eq!(
            kind(decrypt(&file[..cut], ids)),
            ErrorKind::Payload,
            "cut at {cut}"
        );
    }

    let mut trailing = file.clone();
    trailing.push(0);
    assert_eq!(kind(decrypt(&trailing, ids)), ErrorKind::Payload);

    let mut swapped = file.clone();
    let (a, b) = (start, start + enc);
    let first = file[a..a + enc].to_vec();
    swapped.copy_within(b..b + enc, a);
    swapped[b..b + enc].copy_from_slice(&first);
    assert_eq!(kind(decrypt(&swapped, ids)), ErrorKind::Payload);

    // A missing or short nonce is a header failure, as the spec counts it.
    assert_eq!(kind(decrypt(&file[..hlen + 5], ids)), ErrorKind::Header);
}

#[test]
fn header_damage_is_mac_or_no_match() {
    let id = Identity::generate_x25519().expect("rng");
    let file = encrypt(&[id.to_recipient()], b"x", false, 1);
    let (h, hlen) = Header::parse(&file).expect("parse");
    // Change the MAC's last base64 character (A and E both leave the two unused bits
    // zero, so it stays canonical): the MAC no longer verifies.
    let mut bad_mac = file.clone();
    let mac_pos = hlen - 2;
    bad_mac[mac_pos] = if bad_mac[mac_pos] == b'A' { b'E' } else { b'A' };
    assert_eq!(
        kind(decrypt(&bad_mac, std::slice::from_ref(&id))),
        ErrorKind::HeaderMac
    );
    // Add an unknown stanza but keep the old MAC: the header no longer authenticates.
    let grease = Stanza::new("grease", vec!["x".into()], vec![1, 2, 3]).expect("stanza");
    let fk = FileKey::generate().expect("rng");
    let mut stanzas = h.stanzas().to_vec();
    stanzas.push(grease);
    let other = Header::from_stanzas(&fk, stanzas).expect("header");
    let mut forged = other.as_bytes().to_vec();
    forged.extend_from_slice(&file[hlen..]);
    assert_eq!(
        kind(decrypt(&forged, std::slice::from_ref(&id))),
        ErrorKind::HeaderMac
    );
}

#[test]
fn unknown_stanzas_are_kept_and_ignored() {
    let id = Identity::generate_hybrid().expect("rng");
    let fk = FileKey::generate().expect("rng");
    let base = Header::wrap(&fk, &[id.to_recipient()], false).expect("wrap");
    for body_len in [0, 1, 48, 96, 100] {
        let mut stanzas = vec![Stanza::new("grease", vec![], data(body_len)).expect("stanza")];
        stanzas.extend(base.stanzas().iter().cloned());
        let h = Header::from_stanzas(&fk, stanzas).expect("header");
        let (parsed, len) = Header::parse(h.as_bytes()).expect("parses");
        assert_eq!(len, h.len());
        assert_eq!(parsed, h);
        assert_eq!(parsed.encode(), h.as_bytes());
        let got = parsed
            .unwrap_file_key(std::slice::from_ref(&id), &[], 22)
            .expect("unwraps");
        assert_eq!(got, fk);
    }
    assert!(Stanza::new("has space", vec![], vec![]).is_err());
    assert!(Stanza::new("t", vec![String::new()], vec![]).is_err());
}

#[test]
fn passphrase_round_trip_and_work_factor_bound() {
    let pw = Passphrase::new("correct horse".into());
    let fk = FileKey::generate().expect("rng");
    let h = Header::wrap_passphrase(&fk, &pw, 10).expect("wrap");
    assert_eq!(h.protection(), age::Protection::Passphrase);
    assert_eq!(
        h.unwrap_file_key(&[], std::slice::from_ref(&pw), 22)
            .expect("ok"),
        fk
    );
    let wrong = Passphrase::new("wrong".into());
    assert_eq!(
        h.unwrap_file_key(&[], &[wrong], 22).unwrap_err().kind(),
        ErrorKind::NoMatch
    );
    assert_eq!(
        h.unwrap_file_key(&[], &[pw], 9).unwrap_err().kind(),
        ErrorKind::Header
    );
    assert_eq!(
        format!("{:?}", Passphrase::new("hunter2".into())),
        "Passphrase(<redacted>)"
    );
}

#[test]
fn header_reading_is_bounded() {
    // A header line that never ends: refused at the bound, not read to the end.
    let mut endless = b"age-encryption.org/v1\n-> X25519 ".to_vec();
    endless.extend(std::iter::repeat_n(b'A', 10_000));
    let e = Header::read_from(&mut Cursor::new(&endless), 4096).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Header);
    // Not age at all: refused at the first line.
    let e = Header::read_from(&mut Cursor::new(b"hello\nworld\n"), 4096).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Header);
    assert_eq!(age::is_age(b"hello"), None);
    assert_eq!(
        age::is_age(b"  \n-----BEGIN AGE ENCRYPTED FILE-----\n"),
        Some(age::Armored(true))
    );
    assert_eq!(
        age::is_age(b"age-encryption.org/v1\n"),
        Some(age::Armored(false))
    );
}

#[test]
fn verify_payload_first_chunk_and_whole() {
    let id = Identity::generate_x25519().expect("rng");
    let fk = FileKey::generate().expect("rng");
    let header = Header::wrap(&fk, &[id.to_recipient()], false).expect("wrap");
    let pt = data(2 * CHUNK + 3);
    let mut w = age::encrypt_writer(Vec::new(), &fk, &header, false).expect("w");
    w.write_all(&pt).expect("write");
    let file = w.finish().expect("finish");
    let payload = &file[header.len()..];
    assert_eq!(
        age::stream::verify_payload(&fk, payload, false).expect("ok"),
        pt.len() as u64
    );
    assert_eq!(
        age::stream::verify_payload(&fk, payload, true).expect("ok"),
        CHUNK as u64
    );
    let other = FileKey::generate().expect("rng");
    let e = age::stream::verify_payload(&other, payload, true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Payload);
    let mut late = payload.to_vec();
    let n = late.len();
    late[n - 1] ^= 1;
    assert!(age::stream::verify_payload(&fk, &late[..], true).is_ok());
    assert_eq!(
        age::stream::verify_payload(&fk, &late[..], false)
            .unwrap_err()
            .kind(),
        ErrorKind::Payload
    );
    assert_eq!(format!("{fk:?}"), "FileKey(<redacted>)");
}
