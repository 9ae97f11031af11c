//! C2SP CCTV conformance: every vector in `$PQWRAP_VECTORS/cctv-age` (default
//! `../shared/vectors` beside the repository) must succeed with the given plaintext hash
//! and file key, or fail as exactly the kind of failure it names. Prints a tally.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::PathBuf;

use pqwrap_core::age::{self, AgeError, ErrorKind, Passphrase};
use pqwrap_core::keys::Identity;
use sha2::{Digest, Sha256};

fn vectors_dir() -> PathBuf {
    std::env::var_os("PQWRAP_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"))
        .join("cctv-age")
}

struct Vector {
    expect: String,
    payload: Option<String>,
    file_key: Option<String>,
    identities: Vec<String>,
    passphrases: Vec<String>,
    armored: bool,
    body: Vec<u8>,
}

fn parse_vector(raw: &[u8]) -> Vector {
    let split = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("vector has a blank line after its header");
    let head = std::str::from_utf8(&raw[..split]).expect("UTF-8 vector header");
    let mut v = Vector {
        expect: String::new(),
        payload: None,
        file_key: None,
        identities: vec![],
        passphrases: vec![],
        armored: false,
        body: raw[split + 2..].to_vec(),
    };
    let mut compressed = false;
    for line in head.lines() {
        let (k, val) = line.split_once(": ").expect("key: value");
        match k {
            "expect" => v.expect = val.to_owned(),
            "payload" => v.payload = Some(val.to_owned()),
            "file key" => v.file_key = Some(val.to_owned()),
            "identity" => v.identities.push(val.to_owned()),
            "passphrase" => v.passphrases.push(val.to_owned()),
            "armored" => v.armored = val == "yes",
            "compressed" => {
                assert_eq!(val, "zlib");
                compressed = true
            }
            "comment" => {}
            other => panic!("unknown vector key {other:?}"),
        }
    }
    if compressed {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(&v.body[..])
            .read_to_end(&mut out)
            .expect("zlib body");
        v.body = out;
    }
    v
}

fn kind_of(expect: &str) -> Option<ErrorKind> {
    match expect {
        "success" => None,
        "no match" => Some(ErrorKind::NoMatch),
        "HMAC failure" => Some(ErrorKind::HeaderMac),
        "header failure" => Some(ErrorKind::Header),
        "payload failure" => Some(ErrorKind::Payload),
        "armor failure" => Some(ErrorKind::Armor),
        other => panic!("unknown expectation {other:?}"),
    }
}

/// Decrypts, collecting whatever plaintext is released before an error.
fn run(v: &Vector, ids: &[Identity], pws: &[Passphrase]) -> (Vec<u8>, Result<(), AgeError>) {
    let mut released = Vec::new();
    let res = (|| {
        let dec = age::Decryptor::new(&v.body[..])?;
        assert_eq!(dec.is_armored(), v.armored, "armor detection");
        let mut r = dec.decrypt(ids, pws)?;
        loop {
            let buf = r.fill_buf().map_err(AgeError::from_io)?;
            if buf.is_empty() {
                return Ok(());
            }
            released.extend_from_slice(buf);
            let n = buf.len();
            r.consume(n);
        }
    })();
    (released, res)
}

#[test]
fn cctv_age_conformance() {
    let dir = vectors_dir();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    assert!(
        names.len() > 50,
        "expected the CCTV vectors in {}",
        dir.display()
    );

    let mut tally: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut skipped = vec![];
    let mut failures = vec![];
    for path in &names {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with(".md") {
            continue;
        }
        let v = parse_vector(&std::fs::read(path).expect("read vector"));
        let ids: Result<Vec<Identity>, _> = v.identities.iter().map(|s| s.parse()).collect();
        let Ok(ids) = ids else {
            skipped.push(name);
            continue;
        };
        let pws: Vec<Passphrase> = v
            .passphrases
            .iter()
            .map(|p| Passphrase::new(p.clone()))
            .collect();
        let want = kind_of(&v.expect);
        let (released, res) = run(&v, &ids, &pws);
        let got = res.as_ref().err().map(AgeError::kind);
        let hash = hex::encode(Sha256::digest(&released));
        let mut problems = vec![];
        if got != want {
            problems.push(format!("expected {:?}, got {:?}", want, res.as_ref().err()));
        }
        if let Some(p) = &v.payload
            && *p != hash
        {
            problems.push(format!("released plaintext hash {hash} != {p}"));
        }
        // For successes: the file key, and byte-identical header re-serialisation.
        if want.is_none() {
            let dec = age::Decryptor::new(&v.body[..]).expect("header");
            let h = dec.header();
            assert_eq!(h.encode(), h.as_bytes(), "{name}: re-serialisation");
            if !v.armored {
                assert!(v.body.starts_with(h.as_bytes()), "{name}: exact bytes");
                let (h2, len) = age::Header::parse(&v.body).expect("parse");
                assert_eq!(len, h.len());
                assert_eq!(&h2, h);
            }
            let fk = h
                .unwrap_file_key(&ids, &pws, age::DEFAULT_MAX_WORK_FACTOR)
                .expect("file key");
            if let Some(want_fk) = &v.file_key
                && hex::encode(fk.expose()) != *want_fk
            {
                problems.push("file key mismatch".into());
            }
        }
        let e = tally.entry(v.expect.clone()).or_default();
        if problems.is_empty() {
            e.0 += 1;
        } else {
            e.1 += 1;
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    println!("CCTV age conformance ({}):", dir.display());
    for (k, (ok, bad)) in &tally {
        println!("  {k:<16} passed {ok:>3}  failed {bad:>3}");
    }
    let passed: usize = tally.values().map(|t| t.0).sum();
    println!(
        "  total: {passed} passed, {} failed, {} skipped (unknown keys){}",
        failures.len(),
        skipped.len(),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(": {}", skipped.join(", "))
        }
    );
    assert!(
        failures.is_empty(),
        "CCTV failures:\n{}",
        failures.join("\n")
    );
    assert!(passed > 0);
}
