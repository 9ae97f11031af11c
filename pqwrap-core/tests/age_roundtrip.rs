//! age round trips through the public API, and every way a file can be damaged.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod io_support;

use std::io::{Cursor, Read, Write};

use pqwrap_core::age::{self, AgeError, ErrorKind, FileKey, Header, Passphrase, Stanza};
use pqwrap_core::keys::{Identity, Recipient};

const CHUNK: usize = age::stream::CHUNK_LEN;

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 251) as u8).collect()
}

fn encrypt(recipients: &[Recipient], pt: &[u8], armor: bool, piece: usize) -> Vec<u8> {
    let (fk, header) = age::new_header(recipients, age::Mixing::Refuse).expect("header");
    let mut w = age::encrypt_writer(
        Vec::new(),
        &fk,
        &header,
        if armor {
            age::Armor::Armored
        } else {
            age::Armor::Binary
        },
    )
    .expect("writer");
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
                    assert_eq!(
                        age::is_age(&file),
                        Some(if armor {
                            age::Armor::Armored
                        } else {
                            age::Armor::Binary
                        })
                    );
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

/// The writer seals 16 chunks per batch: sizes around batch boundaries.
#[test]
fn round_trip_across_write_batches() {
    let id = Identity::generate_x25519().expect("rng");
    for n in [
        16 * CHUNK - 1,
        16 * CHUNK,
        16 * CHUNK + 1,
        17 * CHUNK,
        32 * CHUNK + 7,
    ] {
        let pt = data(n);
        for piece in [n, 100_000] {
            let file = encrypt(&[id.to_recipient()], &pt, false, piece);
            let (_, len) = Header::parse(&file).expect("parse");
            assert_eq!(
                age::stream::plaintext_len((file.len() - len) as u64),
                Some(n as u64)
            );
            assert_eq!(
                decrypt(&file, std::slice::from_ref(&id)).expect("ok"),
                pt,
                "{n}"
            );
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
    let e = Header::wrap(&fk, &[pq.clone(), cl.clone()], age::Mixing::Refuse).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Encrypt);
    let h = Header::wrap(&fk, &[pq, cl], age::Mixing::Allow).expect("allowed explicitly");
    assert_eq!(h.protection(), age::Protection::Mixed);
    assert_eq!(
        Header::wrap(&fk, &[], age::Mixing::Refuse)
            .unwrap_err()
            .kind(),
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
    let base = Header::wrap(&fk, &[id.to_recipient()], age::Mixing::Refuse).expect("wrap");
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
        Some(age::Armor::Armored)
    );
    assert_eq!(
        age::is_age(b"age-encryption.org/v1\n"),
        Some(age::Armor::Binary)
    );
}

#[test]
fn a_header_without_stanzas_is_refused_both_ways() {
    // `header = v1-line 1*stanza end`: a MAC line straight after the version line is not a
    // header, even with a MAC that verifies, and none is built.
    let fk = FileKey::from_bytes([3; 16]);
    let e = Header::from_stanzas(&fk, Vec::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Encrypt);
    let id = Identity::generate_x25519().expect("rng");
    let file = encrypt(&[id.to_recipient()], b"hi", false, 1);
    let one = Header::parse(&file).expect("parses").0;
    let mac_line = one
        .as_bytes()
        .split(|&b| b == b'\n')
        .rev()
        .nth(1)
        .expect("MAC line");
    let mut bare = b"age-encryption.org/v1\n".to_vec();
    bare.extend_from_slice(mac_line);
    bare.push(b'\n');
    let e = Header::parse(&bare).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Header, "{e}");
    assert!(e.to_string().contains("no stanza"), "{e}");
}

#[test]
fn a_header_for_another_file_key_is_refused_before_writing() {
    let id = Identity::generate_x25519().expect("rng");
    let (_, header) = age::new_header(&[id.to_recipient()], age::Mixing::Refuse).expect("header");
    let other = FileKey::generate().expect("rng");
    let mut out = Vec::new();
    let e = age::encrypt_writer(&mut out, &other, &header, age::Armor::Binary)
        .err()
        .expect("refused");
    assert_eq!(e.kind(), ErrorKind::Encrypt);
    assert!(out.is_empty(), "nothing written");
}

#[test]
fn leading_whitespace_before_armor_is_detected_and_bounded_the_same_way() {
    let id = Identity::generate_x25519().expect("rng");
    let armored = encrypt(&[id.to_recipient()], b"hello", true, 1);
    let limit = age::armor::MAX_WHITESPACE;
    for (ws, ok) in [(300, true), (limit, true), (limit + 1, false)] {
        let mut file = vec![b'\n'; ws];
        file.extend_from_slice(&armored);
        assert_eq!(
            age::is_age(&file[..age::DETECT_LEN.min(file.len())]),
            Some(age::Armor::Armored),
            "{ws} bytes of whitespace: detection"
        );
        let r = decrypt(&file, std::slice::from_ref(&id));
        if ok {
            assert_eq!(r.expect("decrypts"), b"hello", "{ws} bytes of whitespace");
        } else {
            assert_eq!(kind(r), ErrorKind::Armor, "{ws} bytes of whitespace");
        }
    }
    // The same bound after the end line.
    let mut trailing = armored.clone();
    trailing.extend(std::iter::repeat_n(b' ', limit));
    assert_eq!(
        decrypt(&trailing, std::slice::from_ref(&id)).expect("ok"),
        b"hello"
    );
    trailing.push(b' ');
    assert_eq!(
        kind(decrypt(&trailing, std::slice::from_ref(&id))),
        ErrorKind::Armor
    );
}

#[test]
fn verify_payload_first_chunk_and_whole() {
    let id = Identity::generate_x25519().expect("rng");
    let fk = FileKey::generate().expect("rng");
    let header = Header::wrap(&fk, &[id.to_recipient()], age::Mixing::Refuse).expect("wrap");
    let pt = data(2 * CHUNK + 3);
    let mut w = age::encrypt_writer(Vec::new(), &fk, &header, age::Armor::Binary).expect("w");
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

/// Reads until the error, returning what was released before it.
fn released_then_error(file: &[u8], id: &Identity) -> (usize, ErrorKind) {
    use std::io::BufRead;
    let mut r = age::Decryptor::new(file)
        .expect("header")
        .decrypt(std::slice::from_ref(id), &[])
        .expect("unwrap");
    let mut n = 0;
    loop {
        match r.fill_buf() {
            Ok([]) => panic!("no error after {n} bytes"),
            Ok(b) => {
                let l = b.len();
                n += l;
                r.consume(l);
            }
            Err(e) => {
                // Errors are sticky.
                assert!(r.fill_buf().is_err());
                return (n, AgeError::from_io(e).kind());
            }
        }
    }
}

/// Chunks are authenticated in parallel batches of 16, but released and failed exactly as
/// if read one by one: everything before the bad chunk, then the error.
#[test]
fn damage_across_read_batches_releases_the_authentic_prefix() {
    let id = Identity::generate_x25519().expect("rng");
    let pt = data(40 * CHUNK + 5);
    let file = encrypt(&[id.to_recipient()], &pt, false, pt.len());
    let (_, hlen) = Header::parse(&file).expect("parse");
    let start = hlen + 16;
    let enc = CHUNK + 16;
    for bad in [0, 5, 15, 16, 17, 31, 32, 40] {
        let mut f = file.clone();
        f[start + bad * enc + 3] ^= 0x80;
        assert_eq!(
            released_then_error(&f, &id),
            (bad * CHUNK, ErrorKind::Payload),
            "chunk {bad}"
        );
    }
    for whole in [1, 15, 16, 17, 32, 40] {
        let f = &file[..start + whole * enc];
        assert_eq!(
            released_then_error(f, &id),
            (whole * CHUNK, ErrorKind::Payload),
            "cut {whole}"
        );
    }
    let mut f = file.clone();
    f.extend_from_slice(&[0; 20]);
    assert_eq!(released_then_error(&f, &id).1, ErrorKind::Payload);

    // A final chunk that is full and last in its batch, then trailing data in the same
    // batch or the next one.
    let pt16 = data(16 * CHUNK);
    let file16 = encrypt(&[id.to_recipient()], &pt16, false, pt16.len());
    for extra in [1usize, 17, enc] {
        let mut f = file16.clone();
        f.extend(std::iter::repeat_n(7u8, extra));
        assert_eq!(
            released_then_error(&f, &id),
            (16 * CHUNK, ErrorKind::Payload),
            "+{extra}"
        );
    }
    let pt15 = data(15 * CHUNK);
    let file15 = encrypt(&[id.to_recipient()], &pt15, false, pt15.len());
    let mut f = file15.clone();
    f.extend(std::iter::repeat_n(7u8, enc));
    assert_eq!(
        released_then_error(&f, &id),
        (15 * CHUNK, ErrorKind::Payload)
    );
}

#[test]
fn protection_classification_is_conservative() {
    let fk = FileKey::generate().expect("rng");
    let pq = Identity::generate_hybrid().expect("rng").to_recipient();
    let base = Header::wrap(&fk, &[pq], age::Mixing::Refuse).expect("wrap");
    let with = |tags: &[&str]| {
        let mut st = base.stanzas().to_vec();
        for t in tags {
            st.push(Stanza::new(t, vec![], vec![]).expect("stanza"));
        }
        Header::from_stanzas(&fk, st).expect("header").protection()
    };
    use age::Protection::*;
    assert_eq!(with(&[]), PostQuantum);
    assert_eq!(with(&["grease"]), PostQuantum);
    assert_eq!(with(&["x7-grease"]), PostQuantum);
    assert_eq!(with(&["ssh-ed25519"]), Mixed);
    assert_eq!(with(&["age-plugin-thing"]), Mixed);
    let only = |tags: &[&str]| {
        let st = tags
            .iter()
            .map(|t| Stanza::new(t, vec![], vec![]).expect("stanza"))
            .collect();
        Header::from_stanzas(&fk, st).expect("header").protection()
    };
    assert_eq!(only(&["X25519", "piv-p256"]), Classical);
    assert_eq!(only(&["X25519", "plugin"]), Classical);
    assert_eq!(only(&["plugin"]), Unknown);
    assert_eq!(only(&["scrypt"]), Passphrase);
}

#[test]
fn after_a_failed_write_the_writers_refuse_and_never_emit_plaintext() {
    let id = Identity::generate_x25519().expect("rng");
    let (fk, header) = age::new_header(&[id.to_recipient()], age::Mixing::Refuse).expect("header");
    // One full write batch (16 chunks) and a little more: the batch is sealed, and its
    // write fails, when the extra bytes arrive.
    let secret = vec![b'S'; 16 * CHUNK + 10];
    for armor in [false, true] {
        for retry in [true, false] {
            // The header goes through; the first batch of chunks fails.
            let (sink, out) = io_support::FailsOnce::new(1000);
            let mut w = age::encrypt_writer(
                sink,
                &fk,
                &header,
                if armor {
                    age::Armor::Armored
                } else {
                    age::Armor::Binary
                },
            )
            .expect("writer");
            let failed_at = secret
                .chunks(4096)
                .position(|piece| w.write_all(piece).is_err());
            assert!(
                failed_at.is_some(),
                "armor {armor}: the inner failure must surface"
            );
            if retry {
                assert!(
                    w.write_all(b"retry").is_err(),
                    "armor {armor}: retried write"
                );
            }
            // Finishing a failed writer fails too: it must not seal the batch a second time
            // (which would XOR the keystream back out) or re-send lines.
            assert!(w.finish().is_err(), "armor {armor} retry {retry}: finish");
            // Neither the plaintext nor its base64 ("SSS" is "U1NT") reached the output.
            let out = out.borrow();
            let run = |pat: &[u8]| {
                out.windows(64 * pat.len())
                    .any(|w| w.chunks(pat.len()).all(|c| c == pat))
            };
            assert!(
                !run(b"S"),
                "armor {armor} retry {retry}: plaintext in the output"
            );
            assert!(
                !run(b"U1NT"),
                "armor {armor} retry {retry}: plaintext in the output"
            );
        }
    }
}

/// Serves `data`, but fails once with `TimedOut` after `at` bytes.
struct TimesOutOnce {
    data: Vec<u8>,
    pos: usize,
    at: usize,
    fired: bool,
}

impl Read for TimesOutOnce {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.fired && self.pos >= self.at {
            self.fired = true;
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        let end = self
            .data
            .len()
            .min(self.pos + buf.len())
            .min(if self.fired { usize::MAX } else { self.at });
        let n = end - self.pos;
        buf[..n].copy_from_slice(&self.data[self.pos..end]);
        self.pos = end;
        Ok(n)
    }
}

#[test]
fn an_io_failure_stays_an_io_failure_on_later_reads() {
    let id = Identity::generate_x25519().expect("rng");
    let file = encrypt(&[id.to_recipient()], &data(3 * CHUNK), false, CHUNK);
    let header_len = Header::parse(&file).expect("header").1;
    let src = TimesOutOnce {
        data: file,
        pos: 0,
        at: header_len + 2 * CHUNK,
        fired: false,
    };
    let mut r = age::Decryptor::new(src)
        .expect("header")
        .decrypt(std::slice::from_ref(&id), &[])
        .expect("key");
    let mut buf = vec![0u8; 4096];
    for attempt in 0..2 {
        let e = r.read(&mut buf).expect_err("the source failed");
        assert_eq!(AgeError::from_io(e).kind(), ErrorKind::Io, "read {attempt}");
    }
}
