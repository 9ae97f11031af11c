//! An independent, deliberately naive implementation of docs/FORMAT.md, written from the
//! document with the primitives only (no code from `pqwrap_core::envelope`). Tests use it
//! to check that the library follows the spec byte for byte, and to build files the library
//! would refuse to write (mixed file keys, tampered fields).
#![allow(dead_code)]

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use pqwrap_core::kem;
use sha2::{Digest, Sha256};

pub const MAGIC: [u8; 8] = [0x89, b'P', b'Q', b'W', 0x0D, 0x0A, 0x1A, 0x0A];
pub const CHUNK: usize = 65536;

pub struct Keys {
    pub commitment: [u8; 32],
    pub mac_key: [u8; 32],
    pub payload_key: [u8; 32],
    pub tag_key: [u8; 32],
}

pub fn keys(file_key: &[u8; 32], salt: &[u8; 32]) -> Keys {
    let hk = Hkdf::<Sha256>::new(Some(salt), file_key);
    let mut k = Keys {
        commitment: [0; 32],
        mac_key: [0; 32],
        payload_key: [0; 32],
        tag_key: [0; 32],
    };
    hk.expand(b"pqwrap/v1 key commitment", &mut k.commitment)
        .unwrap();
    hk.expand(b"pqwrap/v1 header mac", &mut k.mac_key).unwrap();
    hk.expand(b"pqwrap/v1 payload", &mut k.payload_key).unwrap();
    hk.expand(b"pqwrap/v1 recipient tag", &mut k.tag_key)
        .unwrap();
    k
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn gcm_seal(key: &[u8; 32], nonce: [u8; 12], pt: &[u8]) -> Vec<u8> {
    let c = Aes256Gcm::new(&(*key).into());
    let mut buf = pt.to_vec();
    let tag = c
        .encrypt_inout_detached(&Nonce::from(nonce), b"", buf.as_mut_slice().into())
        .unwrap();
    buf.extend_from_slice(&tag);
    buf
}

/// One encoded X-Wing stanza (kem, length, tag, body) wrapping `wrapped_key`, with the tag
/// computed under `tag_key`.
pub fn xwing_stanza(
    wrapped_key: &[u8; 32],
    tag_key: &[u8; 32],
    pk: &kem::PublicKey,
    eseed: &[u8; 64],
) -> Vec<u8> {
    let (ct, ss) = pk.encapsulate_derand(eseed).unwrap();
    let hk = Hkdf::<Sha256>::new(Some(b"pqwrap/v1 x-wing wrap"), ss.as_bytes());
    let mut wk = [0u8; 32];
    hk.expand_multi_info(&[ct.as_bytes(), pk.as_bytes()], &mut wk)
        .unwrap();
    let wrapped = gcm_seal(&wk, [0; 12], wrapped_key);
    let mut body = ct.as_bytes().to_vec();
    body.extend_from_slice(&wrapped);
    assert_eq!(body.len(), 1168);
    let mut tagged = 0x647Au16.to_be_bytes().to_vec();
    tagged.extend_from_slice(pk.as_bytes());
    let mut out = 0x647Au16.to_be_bytes().to_vec();
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&hmac(tag_key, &[&tagged])[..16]);
    out.extend_from_slice(&body);
    out
}

pub fn preamble_fields(slot_size: u32) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&MAGIC);
    p[8..10].copy_from_slice(&1u16.to_be_bytes());
    p[12..16].copy_from_slice(&slot_size.to_be_bytes());
    p
}

/// Header body without MAC.
pub fn body_unmaced(
    suite: u16,
    salt: &[u8; 32],
    commitment: &[u8; 32],
    stanzas: &[Vec<u8>],
) -> Vec<u8> {
    let mut b = suite.to_be_bytes().to_vec();
    b.extend_from_slice(salt);
    b.extend_from_slice(commitment);
    b.extend_from_slice(&(stanzas.len() as u16).to_be_bytes());
    for s in stanzas {
        b.extend_from_slice(s);
    }
    b
}

/// Appends the MAC (under `mac_key`) to a body.
pub fn seal_body(mac_key: &[u8; 32], slot_size: u32, seq: u64, unmaced: &[u8]) -> Vec<u8> {
    let mac = hmac(
        mac_key,
        &[&preamble_fields(slot_size), &seq.to_be_bytes(), unmaced],
    );
    let mut b = unmaced.to_vec();
    b.extend_from_slice(&mac);
    b
}

pub fn slot(seq: u64, body: &[u8], slot_size: u32) -> Vec<u8> {
    let mut s = vec![0u8; slot_size as usize];
    s[..4].copy_from_slice(b"PQWS");
    s[4..12].copy_from_slice(&seq.to_be_bytes());
    s[12..16].copy_from_slice(&(body.len() as u32).to_be_bytes());
    s[48..48 + body.len()].copy_from_slice(body);
    let sum: [u8; 32] = Sha256::digest(&s).into(); // checksum field is still zero here
    s[16..48].copy_from_slice(&sum);
    s
}

pub fn payload(payload_key: &[u8; 32], plaintext: &[u8]) -> Vec<u8> {
    let mut chunks: Vec<&[u8]> = plaintext.chunks(CHUNK).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let n = chunks.len();
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let mut nonce = [0u8; 12];
        nonce[3..11].copy_from_slice(&(i as u64).to_be_bytes());
        nonce[11] = u8::from(i + 1 == n);
        out.extend_from_slice(&gcm_seal(payload_key, nonce, c));
    }
    out
}

pub fn file(slot_size: u32, slot0: &[u8], slot1: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 4096];
    f[..16].copy_from_slice(&preamble_fields(slot_size));
    f.extend_from_slice(slot0);
    f.extend_from_slice(slot1);
    f.extend_from_slice(payload);
    f
}

/// A complete file, all from the spec: stanzas wrap `file_key` for each `pk`.
pub fn build(
    file_key: &[u8; 32],
    salt: &[u8; 32],
    pks: &[&kem::PublicKey],
    eseeds: &[[u8; 64]],
    slot_size: u32,
    plaintext: &[u8],
) -> Vec<u8> {
    let k = keys(file_key, salt);
    let stanzas: Vec<Vec<u8>> = pks
        .iter()
        .zip(eseeds)
        .map(|(pk, e)| xwing_stanza(file_key, &k.tag_key, pk, e))
        .collect();
    let body = seal_body(
        &k.mac_key,
        slot_size,
        1,
        &body_unmaced(1, salt, &k.commitment, &stanzas),
    );
    file(
        slot_size,
        &slot(1, &body, slot_size),
        &vec![0u8; slot_size as usize],
        &payload(&k.payload_key, plaintext),
    )
}
