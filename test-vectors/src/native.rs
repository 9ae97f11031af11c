//! Known-answer vectors for the native envelope (docs/FORMAT.md).
//!
//! Everything is deterministic: identities from fixed X-Wing seeds, a fixed file key and
//! salt, fixed encapsulation eseeds. Positive vectors carry the whole file; negative
//! vectors name a positive vector as their base and list byte edits (see README.md).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use hkdf::Hkdf;
use pqwrap_core::envelope::{
    self, EncryptOptions, Encryptor, EnvelopeError, FileKey, Header, SlotIo, SlotStatus,
};
use pqwrap_core::kem;
use pqwrap_core::keys::{Identity, Recipient};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Directory of the native vectors inside this crate.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("native")
}

/// X-Wing seed of KAT identity `i`: bytes `16*i + j`.
pub fn seed(i: u8) -> [u8; 32] {
    core::array::from_fn(|j| i.wrapping_mul(16).wrapping_add(j as u8))
}

/// KAT identity `i`.
pub fn identity(i: u8) -> Identity {
    Identity::Hybrid(Box::new(kem::SecretKey::from_seed(&seed(i))))
}

/// Encapsulation eseed number `k`: bytes `0x80 + 64*k + j` (mod 256).
pub fn eseed(k: u8) -> [u8; 64] {
    core::array::from_fn(|j| {
        0x80u8
            .wrapping_add(k.wrapping_mul(64))
            .wrapping_add(j as u8)
    })
}

/// The fixed file key: bytes `0x40 + j`.
pub fn file_key() -> [u8; 32] {
    core::array::from_fn(|j| 0x40 + j as u8)
}

/// The fixed payload salt: bytes `0x60 + j`.
pub fn salt() -> [u8; 32] {
    core::array::from_fn(|j| 0x60 + j as u8)
}

/// Pattern plaintext: byte `i` is `i mod 251`.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// An in-memory file for the deterministic re-wrap.
pub struct MemIo(pub Vec<u8>);

impl SlotIo for MemIo {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let o = usize::try_from(offset).map_err(io::Error::other)?;
        let src = self
            .0
            .get(o..o + buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let o = usize::try_from(offset).map_err(io::Error::other)?;
        let dst = self
            .0
            .get_mut(o..o + buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        dst.copy_from_slice(buf);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn len(&mut self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }
}

/// Intermediate values of the key schedule (FORMAT.md §5), computed here from the spec.
fn intermediates(key: &[u8; 32], salt: &[u8; 32]) -> Value {
    let hk = Hkdf::<Sha256>::new(Some(salt), key);
    let mut out = serde_json::Map::new();
    for (name, label) in [
        ("key_commitment", "pqwrap/v1 key commitment"),
        ("mac_key", "pqwrap/v1 header mac"),
        ("payload_key", "pqwrap/v1 payload"),
        ("tag_key", "pqwrap/v1 recipient tag"),
    ] {
        let mut k = [0u8; 32];
        // 32 bytes is always a valid HKDF-SHA256 output length.
        hk.expand(label.as_bytes(), &mut k)
            .expect("HKDF-SHA256 expands 32 bytes");
        out.insert(name.into(), Value::String(hex::encode(k)));
    }
    Value::Object(out)
}

fn header_json(file: &[u8]) -> Result<Value, EnvelopeError> {
    let i = envelope::inspect(file, Some(file.len() as u64))?;
    Ok(json!({
        "format_version": i.format_version,
        "suite": i.suite,
        "slot_size": i.slot_size,
        "header_area_len": i.header_area_len,
        "active_slot": i.active_slot,
        "sequence": i.sequence,
        "other_slot": match i.other_slot {
            SlotStatus::Empty => "empty",
            SlotStatus::Valid { .. } => "valid",
            SlotStatus::Invalid => "invalid",
        },
        "stanza_kems": i.stanzas.iter().map(|s| s.kem).collect::<Vec<_>>(),
        "payload_len": i.payload_len,
        "plaintext_len": i.plaintext_len,
        "header_mac": hex::encode(Header::parse(file)?.body().mac()),
    }))
}

fn plaintext_json(pt: &[u8], small: bool) -> Value {
    if small {
        json!({ "hex": hex::encode(pt), "len": pt.len(), "sha256": sha256_hex(pt) })
    } else {
        json!({ "pattern": "byte i = i mod 251", "len": pt.len(), "sha256": sha256_hex(pt) })
    }
}

/// Builds a positive vector's file.
pub fn encrypt(
    recipients: &[u8],
    eseeds: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let rs: Vec<Recipient> = recipients
        .iter()
        .map(|&i| identity(i).to_recipient())
        .collect();
    let es: Vec<[u8; 64]> = eseeds.iter().map(|&k| eseed(k)).collect();
    let mut enc = Encryptor::new_derand(
        Vec::new(),
        &rs,
        &EncryptOptions::default(),
        FileKey::from_bytes(file_key()),
        salt(),
        &es,
    )?;
    enc.write_all(plaintext)?;
    enc.finish()
}

struct Positive {
    name: &'static str,
    description: &'static str,
    recipients: &'static [u8],
    eseeds: &'static [u8],
    plaintext: Vec<u8>,
    small: bool,
}

fn positives() -> Vec<Positive> {
    vec![
        Positive {
            name: "single_recipient",
            description: "one X-Wing recipient, a short plaintext (one partial chunk)",
            recipients: &[1],
            eseeds: &[0],
            plaintext: b"pqwrap native envelope v1: single recipient\n".to_vec(),
            small: true,
        },
        Positive {
            name: "multi_recipient",
            description: "three X-Wing recipients; each identity opens the file",
            recipients: &[1, 2, 3],
            eseeds: &[1, 2, 3],
            plaintext: b"pqwrap native envelope v1: three recipients\n".to_vec(),
            small: true,
        },
        Positive {
            name: "empty",
            description: "empty plaintext: exactly one chunk, empty, marked final (16 payload bytes)",
            recipients: &[1],
            eseeds: &[4],
            plaintext: Vec::new(),
            small: true,
        },
        Positive {
            name: "exactly_one_chunk",
            description: "65536-byte plaintext: one full chunk, marked final",
            recipients: &[1],
            eseeds: &[5],
            plaintext: pattern(65536),
            small: false,
        },
        Positive {
            name: "multi_chunk",
            description: "2*65536+1000-byte plaintext: two full chunks and a 1000-byte final chunk",
            recipients: &[1],
            eseeds: &[6],
            plaintext: pattern(2 * 65536 + 1000),
            small: false,
        },
    ]
}

/// Recipients and eseeds of the re-wrap vector.
const REWRAP_TO: &[u8] = &[2, 3];
const REWRAP_ESEEDS: &[u8] = &[7, 8];

/// The `rewrapped` vector's file: `single_recipient` re-wrapped in place from identity 1 to
/// identities 2 and 3.
pub fn rewrapped(base: Vec<u8>) -> Result<Vec<u8>, EnvelopeError> {
    let mut io = MemIo(base);
    let rs: Vec<Recipient> = REWRAP_TO
        .iter()
        .map(|&i| identity(i).to_recipient())
        .collect();
    let es: Vec<[u8; 64]> = REWRAP_ESEEDS.iter().map(|&k| eseed(k)).collect();
    envelope::rewrap_io_derand(&mut io, &[identity(1)], &rs, &es)?;
    Ok(io.0)
}

fn common_inputs() -> Value {
    json!({
        "identity_seed_rule": "seed(i)[j] = (16*i + j) mod 256, X-Wing seed (pqwrap_core::kem::SecretKey::from_seed)",
        "eseed_rule": "eseed(k)[j] = (0x80 + 64*k + j) mod 256, X-Wing encapsulation randomness",
        "file_key": hex::encode(file_key()),
        "payload_salt": hex::encode(salt()),
    })
}

/// A negative vector: base, edits, identity and expected error.
struct Negative {
    name: &'static str,
    description: &'static str,
    base: &'static str,
    identity: u8,
    ops: Vec<Value>,
    expected: &'static str,
}

const S: usize = 8192;
const P: usize = 4096 + 2 * S;
const CT: usize = 65552;
/// Offset of a field of the header body in slot 0.
const fn body(off: usize) -> usize {
    4096 + 48 + off
}
/// First stanza's offset in the body; stanzas are 20 + 1168 = 1188 bytes.
const ST0: usize = 68;

fn negatives(multi_recipient_k2_stanza_b: &[u8]) -> Vec<Negative> {
    let xor = |off: usize| json!({ "xor": [off, 1] });
    let fix = json!({ "fix_checksum": 0 });
    vec![
        Negative {
            name: "truncated_at_chunk_boundary",
            description: "the final chunk removed: the last remaining chunk is not marked final",
            base: "multi_chunk",
            identity: 1,
            ops: vec![json!({ "truncate": P + 2 * CT })],
            expected: "truncated",
        },
        Negative {
            name: "truncated_inside_final_chunk",
            description: "the last 10 bytes removed",
            base: "multi_chunk",
            identity: 1,
            ops: vec![json!({ "truncate": P + 2 * CT + 1000 + 16 - 10 })],
            expected: "payload_auth",
        },
        Negative {
            name: "header_only",
            description: "no payload at all",
            base: "single_recipient",
            identity: 1,
            ops: vec![json!({ "truncate": P })],
            expected: "truncated",
        },
        Negative {
            name: "chunks_reordered",
            description: "chunks 0 and 1 swapped",
            base: "multi_chunk",
            identity: 1,
            ops: vec![json!({ "swap": [P, P + CT, CT] })],
            expected: "payload_auth",
        },
        Negative {
            name: "chunk_duplicated",
            description: "chunk 0 inserted again after itself",
            base: "multi_chunk",
            identity: 1,
            ops: vec![json!({ "insert_copy": [P, CT, P + CT] })],
            expected: "payload_auth",
        },
        Negative {
            name: "byte_appended",
            description: "one byte appended after a full final chunk",
            base: "exactly_one_chunk",
            identity: 1,
            ops: vec![json!({ "append_hex": "00" })],
            expected: "trailing_data",
        },
        Negative {
            name: "chunk_appended",
            description: "a copy of the (full, final) chunk appended",
            base: "exactly_one_chunk",
            identity: 1,
            ops: vec![json!({ "insert_copy": [P, CT, P + CT] })],
            expected: "trailing_data",
        },
        Negative {
            name: "payload_bit_flipped",
            description: "one bit of chunk 1 flipped",
            base: "multi_chunk",
            identity: 1,
            ops: vec![xor(P + CT + 100)],
            expected: "payload_auth",
        },
        Negative {
            name: "slot_corrupted",
            description: "one byte of the only valid slot changed, checksum not updated",
            base: "single_recipient",
            identity: 1,
            ops: vec![xor(body(ST0 + 40))],
            expected: "no_valid_slot",
        },
        Negative {
            name: "recipient_tag_modified",
            description: "a recipient tag changed (checksum updated): the header MAC fails",
            base: "single_recipient",
            identity: 1,
            ops: vec![xor(body(ST0 + 4)), fix.clone()],
            expected: "header_mac",
        },
        Negative {
            name: "salt_modified",
            description: "payload salt changed (checksum updated): the key commitment fails",
            base: "single_recipient",
            identity: 1,
            ops: vec![xor(body(2)), fix.clone()],
            expected: "key_commitment",
        },
        Negative {
            name: "commitment_modified",
            description: "key commitment changed (checksum updated)",
            base: "single_recipient",
            identity: 1,
            ops: vec![xor(body(34)), fix.clone()],
            expected: "key_commitment",
        },
        Negative {
            name: "mac_modified",
            description: "header MAC changed (checksum updated)",
            base: "single_recipient",
            identity: 1,
            ops: vec![xor(body(ST0 + 1188 + 31)), fix.clone()],
            expected: "header_mac",
        },
        Negative {
            name: "sequence_modified",
            description: "slot sequence changed 1 -> 257 (checksum updated): the MAC covers it",
            base: "single_recipient",
            identity: 1,
            ops: vec![xor(4096 + 10), fix.clone()],
            expected: "header_mac",
        },
        Negative {
            name: "wrapped_key_modified",
            description: "the wrapped file key of the only stanza changed (checksum updated)",
            base: "single_recipient",
            identity: 1,
            ops: vec![xor(body(ST0 + 20 + 1120 + 5)), fix.clone()],
            expected: "no_match",
        },
        Negative {
            name: "wrong_identity",
            description: "an identity that is not a recipient",
            base: "single_recipient",
            identity: 9,
            ops: vec![],
            expected: "no_match",
        },
        Negative {
            name: "unknown_version",
            description: "format version 2",
            base: "single_recipient",
            identity: 1,
            ops: vec![json!({ "xor": [9, 3] })],
            expected: "unsupported_version",
        },
        Negative {
            name: "unknown_flags",
            description: "reserved flags set",
            base: "single_recipient",
            identity: 1,
            ops: vec![xor(11)],
            expected: "unsupported_flags",
        },
        Negative {
            name: "unknown_suite",
            description: "suite 0x0003 (checksum updated)",
            base: "single_recipient",
            identity: 1,
            ops: vec![json!({ "xor": [body(1), 2] }), fix.clone()],
            expected: "unknown_suite",
        },
        Negative {
            name: "unknown_kem",
            description: "the only stanza's KEM id changed to 0x647b (checksum updated)",
            base: "single_recipient",
            identity: 1,
            ops: vec![xor(body(ST0 + 1)), fix.clone()],
            expected: "unknown_kem",
        },
        Negative {
            name: "bad_slot_size",
            description: "slot size 8193 (not a multiple of 4096)",
            base: "single_recipient",
            identity: 1,
            ops: vec![xor(15)],
            expected: "bad_slot_size",
        },
        Negative {
            name: "reserved_preamble_byte",
            description: "a reserved preamble byte set",
            base: "single_recipient",
            identity: 1,
            ops: vec![xor(4000)],
            expected: "malformed_preamble",
        },
        Negative {
            name: "ambiguous_slots",
            description: "slot 0 copied over slot 1: two valid slots with sequence 1",
            base: "single_recipient",
            identity: 1,
            ops: vec![json!({ "copy": [4096, S, 4096 + S] })],
            expected: "ambiguous_slots",
        },
        Negative {
            name: "salamander_other_recipient",
            description: "invisible-salamander splice: identity 2's stanza replaced by one \
                          wrapping a different file key (0x41..) to identity 2; identity 2 \
                          unwraps that key and the key commitment rejects it",
            base: "multi_recipient",
            identity: 2,
            ops: vec![
                json!({ "replace_hex": [body(ST0 + 1188), hex::encode(multi_recipient_k2_stanza_b)] }),
                fix.clone(),
            ],
            expected: "key_commitment",
        },
        Negative {
            name: "salamander_first_recipient",
            description: "the same splice seen by identity 1: its key is right, the MAC fails",
            base: "multi_recipient",
            identity: 1,
            ops: vec![
                json!({ "replace_hex": [body(ST0 + 1188), hex::encode(multi_recipient_k2_stanza_b)] }),
                fix,
            ],
            expected: "header_mac",
        },
    ]
}

/// The stanza for identity 2 from a `multi_recipient`-shaped file under file key
/// `0x41, 0x42, …` (a different key): what a salamander splice inserts.
fn other_key_stanza() -> Result<Vec<u8>, EnvelopeError> {
    let rs: Vec<Recipient> = [1u8, 2, 3]
        .iter()
        .map(|&i| identity(i).to_recipient())
        .collect();
    let es = [eseed(1), eseed(2), eseed(3)];
    let other: [u8; 32] = core::array::from_fn(|j| 0x41 + j as u8);
    let f = Encryptor::new_derand(
        Vec::new(),
        &rs,
        &EncryptOptions::default(),
        FileKey::from_bytes(other),
        salt(),
        &es,
    )?
    .finish()?;
    let start = body(ST0 + 1188);
    Ok(f.get(start..start + 1188)
        .ok_or(EnvelopeError::TruncatedHeader)?
        .to_vec())
}

/// Applies a negative vector's edits (README.md) to `file`.
pub fn apply_ops(mut f: Vec<u8>, ops: &[Value]) -> Result<Vec<u8>, String> {
    let num = |v: &Value, i: usize| -> Result<usize, String> {
        v.get(i)
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .ok_or_else(|| format!("bad operand in {v}"))
    };
    for op in ops {
        let (name, arg) = op
            .as_object()
            .and_then(|o| o.iter().next())
            .ok_or_else(|| format!("bad op {op}"))?;
        let oob = || format!("{name} out of range");
        match name.as_str() {
            "truncate" => f.truncate(arg.as_u64().ok_or_else(oob)? as usize),
            "xor" => *f.get_mut(num(arg, 0)?).ok_or_else(oob)? ^= num(arg, 1)? as u8,
            "append_hex" => {
                f.extend(hex::decode(arg.as_str().ok_or_else(oob)?).map_err(|e| e.to_string())?)
            }
            "swap" => {
                let (a, b, n) = (num(arg, 0)?, num(arg, 1)?, num(arg, 2)?);
                let x = f.get(a..a + n).ok_or_else(oob)?.to_vec();
                let y = f.get(b..b + n).ok_or_else(oob)?.to_vec();
                f[a..a + n].copy_from_slice(&y);
                f[b..b + n].copy_from_slice(&x);
            }
            "insert_copy" => {
                let (src, n, at) = (num(arg, 0)?, num(arg, 1)?, num(arg, 2)?);
                let x = f.get(src..src + n).ok_or_else(oob)?.to_vec();
                if at > f.len() {
                    return Err(oob());
                }
                f.splice(at..at, x);
            }
            "copy" => {
                let (src, n, dst) = (num(arg, 0)?, num(arg, 1)?, num(arg, 2)?);
                let x = f.get(src..src + n).ok_or_else(oob)?.to_vec();
                f.get_mut(dst..dst + n).ok_or_else(oob)?.copy_from_slice(&x);
            }
            "replace_hex" => {
                let at = num(arg, 0)?;
                let x = hex::decode(arg.get(1).and_then(Value::as_str).ok_or_else(oob)?)
                    .map_err(|e| e.to_string())?;
                f.get_mut(at..at + x.len())
                    .ok_or_else(oob)?
                    .copy_from_slice(&x);
            }
            "fix_checksum" => {
                let slot = arg.as_u64().ok_or_else(oob)? as usize;
                let s = u32::from_be_bytes(
                    f.get(12..16)
                        .ok_or_else(oob)?
                        .try_into()
                        .map_err(|_| oob())?,
                ) as usize;
                let off = 4096 + slot * s;
                let sl = f.get_mut(off..off + s).ok_or_else(oob)?;
                sl[16..48].fill(0);
                let sum = Sha256::digest(&*sl);
                sl[16..48].copy_from_slice(&sum);
            }
            other => return Err(format!("unknown op {other}")),
        }
    }
    Ok(f)
}

/// Generates every vector: `(file name, JSON)`.
pub fn generate() -> Result<Vec<(String, Value)>, EnvelopeError> {
    let mut out = Vec::new();
    let mut files = std::collections::HashMap::new();
    for p in positives() {
        let file = encrypt(p.recipients, p.eseeds, &p.plaintext)?;
        let v = json!({
            "name": p.name,
            "description": p.description,
            "kind": "positive",
            "inputs": {
                "common": common_inputs(),
                "recipients": p.recipients,
                "eseeds": p.eseeds,
                "slot_size": "default",
            },
            "plaintext": plaintext_json(&p.plaintext, p.small),
            "intermediates": intermediates(&file_key(), &salt()),
            "header": header_json(&file)?,
            "open_with": p.recipients,
            "file_sha256": sha256_hex(&file),
            "file_hex": hex::encode(&file),
        });
        files.insert(p.name, file);
        out.push((format!("{}.json", p.name), v));
    }
    let base = files
        .get("single_recipient")
        .cloned()
        .ok_or(EnvelopeError::Crypto("missing base"))?;
    let rw = rewrapped(base)?;
    out.push((
        "rewrapped.json".into(),
        json!({
            "name": "rewrapped",
            "description": "single_recipient re-wrapped in place from identity 1 to identities 2 and 3: \
                            slot 1 written with sequence 2, slot 0 wiped; payload bytes unchanged",
            "kind": "rewrap",
            "inputs": {
                "common": common_inputs(),
                "base": "single_recipient",
                "unwrap_with": [1],
                "recipients": REWRAP_TO,
                "eseeds": REWRAP_ESEEDS,
            },
            "plaintext": plaintext_json(b"pqwrap native envelope v1: single recipient\n", true),
            "intermediates": intermediates(&file_key(), &salt()),
            "header": header_json(&rw)?,
            "open_with": REWRAP_TO,
            "no_match": [1],
            "file_sha256": sha256_hex(&rw),
            "file_hex": hex::encode(&rw),
        }),
    ));
    let k2 = other_key_stanza()?;
    for n in negatives(&k2) {
        out.push((
            format!("negative/{}.json", n.name),
            json!({
                "name": n.name,
                "description": n.description,
                "kind": "negative",
                "base": n.base,
                "ops": n.ops,
                "identity": n.identity,
                "expected_error": n.expected,
            }),
        ));
    }
    Ok(out)
}

/// Serializes a vector the way the files on disk are written.
pub fn to_text(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}
