//! Checks the native envelope vectors in `test-vectors/native/` (README.md): they are what
//! the generator produces today, every positive vector opens to its plaintext with each
//! listed identity, and every negative vector fails with its expected error.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use pqwrap_core::envelope::{self, Header, decrypt_to};
use pqwrap_test_vectors::native::{self, apply_ops, identity, pattern};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn load_all() -> Vec<(String, Value)> {
    let dir = native::dir();
    let mut out = Vec::new();
    for sub in ["", "negative"] {
        let d = dir.join(sub);
        let mut names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort_by_key(|e| e.path());
        for e in names {
            let rel = Path::new(sub).join(e.file_name());
            let v: Value = serde_json::from_str(&fs::read_to_string(e.path()).unwrap()).unwrap();
            out.push((rel.to_string_lossy().into_owned(), v));
        }
    }
    out
}

fn file_of(v: &Value) -> Vec<u8> {
    let f = hex::decode(v["file_hex"].as_str().unwrap()).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&f)),
        v["file_sha256"].as_str().unwrap()
    );
    f
}

fn plaintext_of(v: &Value) -> Vec<u8> {
    let p = &v["plaintext"];
    let pt = match p.get("hex") {
        Some(h) => hex::decode(h.as_str().unwrap()).unwrap(),
        None => pattern(p["len"].as_u64().unwrap() as usize),
    };
    assert_eq!(
        hex::encode(Sha256::digest(&pt)),
        p["sha256"].as_str().unwrap()
    );
    pt
}

fn ids(v: &Value) -> Vec<u8> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u8)
        .collect()
}

#[test]
fn vectors_on_disk_are_what_the_generator_produces() {
    let generated = native::generate().unwrap();
    let on_disk = load_all();
    assert_eq!(
        on_disk.len(),
        generated.len(),
        "run `cargo run -p pqwrap-test-vectors --bin regen`"
    );
    for (name, v) in &generated {
        let text = fs::read_to_string(native::dir().join(name))
            .unwrap_or_else(|_| panic!("{name} missing; regenerate"));
        assert!(
            text == native::to_text(v),
            "{name} differs from the generator"
        );
    }
}

#[test]
fn positive_vectors_open_with_every_listed_identity() {
    let mut n = 0;
    for (name, v) in load_all() {
        if v["kind"] == "negative" {
            continue;
        }
        let file = file_of(&v);
        let pt = plaintext_of(&v);
        let h = Header::parse(&file).unwrap();
        let want = &v["header"];
        let info = envelope::inspect(&file, Some(file.len() as u64)).unwrap();
        assert_eq!(want["format_version"], info.format_version, "{name}");
        assert_eq!(want["slot_size"], info.slot_size, "{name}");
        assert_eq!(want["header_area_len"], info.header_area_len, "{name}");
        assert_eq!(want["active_slot"], info.active_slot, "{name}");
        assert_eq!(want["sequence"], info.sequence, "{name}");
        assert_eq!(want["payload_len"], info.payload_len.unwrap(), "{name}");
        assert_eq!(want["plaintext_len"], pt.len(), "{name}");
        assert_eq!(want["header_mac"], hex::encode(h.body().mac()), "{name}");
        assert_eq!(
            v["intermediates"]["key_commitment"],
            hex::encode(h.body().commitment()),
            "{name}"
        );
        for i in ids(&v["open_with"]) {
            let mut out = Vec::new();
            decrypt_to(&file[..], &[identity(i)], &mut out).unwrap();
            assert!(out == pt, "{name}: identity {i}");
        }
        if let Some(no) = v.get("no_match") {
            for i in ids(no) {
                let err = decrypt_to(&file[..], &[identity(i)], std::io::sink()).unwrap_err();
                assert_eq!(err.code(), "no_match", "{name}");
            }
        }
        n += 1;
    }
    assert_eq!(n, 6);
}

#[test]
fn the_rewrapped_vector_is_the_in_place_rewrap_of_its_base() {
    let all: HashMap<String, Value> = load_all().into_iter().collect();
    let rw = &all["rewrapped.json"];
    let base = file_of(&all["single_recipient.json"]);
    let after = file_of(rw);
    assert_eq!(native::rewrapped(base.clone()).unwrap(), after);
    // Same length, same payload bytes, same preamble; slot 0 wiped.
    assert_eq!(base.len(), after.len());
    let p = Header::parse(&base).unwrap().payload_offset() as usize;
    assert_eq!(base[p..], after[p..]);
    assert_eq!(base[..4096], after[..4096]);
    assert!(after[4096..4096 + 8192].iter().all(|&b| b == 0));
}

#[test]
fn negative_vectors_fail_with_the_expected_error() {
    let all: HashMap<String, Value> = load_all().into_iter().collect();
    let mut n = 0;
    for (name, v) in &all {
        if v["kind"] != "negative" {
            continue;
        }
        let base = file_of(&all[&format!("{}.json", v["base"].as_str().unwrap())]);
        let file = apply_ops(base, v["ops"].as_array().unwrap()).unwrap();
        let who = identity(v["identity"].as_u64().unwrap() as u8);
        let err = decrypt_to(&file[..], &[who], std::io::sink()).expect_err(name);
        assert_eq!(
            err.code(),
            v["expected_error"].as_str().unwrap(),
            "{name}: {err}"
        );
        n += 1;
    }
    assert_eq!(n, 25);
}
