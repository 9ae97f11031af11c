//! Every vector suite the project is checked against, each run vector by vector with a
//! tally: the project's own native vectors and the external ones (X-Wing draft, HPKE-PQ,
//! C2SP CCTV age, RFC 9964 Appendix A). The `check-all` binary prints the tallies; the
//! crate's `all_suites` test requires them to pass.
//!
//! A vector's check returns `Err(reason)` on a mismatch; a panic inside pqwrap is caught and
//! counted as a failure of that vector (it is a bug), so one bad vector never hides the rest.

use std::collections::HashMap;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use pqwrap_core::age;
use pqwrap_core::envelope::{self, Header, decrypt_to};
use pqwrap_core::kem;
use pqwrap_core::token::{Algorithm, PublicKey, SigningKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{cctv, native};

/// The outcome of one suite.
#[derive(Debug, Default)]
pub struct Tally {
    /// Suite name as printed.
    pub suite: &'static str,
    /// Vectors that matched.
    pub passed: usize,
    /// Vectors that did not (see `failures`).
    pub failed: usize,
    /// Vectors not applicable to pqwrap (other algorithms, unknown keys), with `notes` saying why.
    pub skipped: usize,
    /// One line per failed vector: its name and what differed.
    pub failures: Vec<String>,
    /// What was skipped and why, and where the vectors were read from.
    pub notes: Vec<String>,
}

impl Tally {
    pub(crate) fn new(suite: &'static str) -> Self {
        Tally {
            suite,
            ..Tally::default()
        }
    }

    /// Runs one vector's check, catching panics.
    pub(crate) fn check(&mut self, name: &str, f: impl FnOnce() -> Result<(), String>) {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(())) => self.passed += 1,
            Ok(Err(why)) => self.fail(name, &why),
            Err(p) => {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                self.fail(name, &format!("panicked: {msg}"));
            }
        }
    }

    pub(crate) fn fail(&mut self, name: &str, why: &str) {
        self.failed += 1;
        self.failures.push(format!("{name}: {why}"));
    }

    pub(crate) fn skip(&mut self, what: String) {
        self.skipped += 1;
        self.notes.push(format!("skipped {what}"));
    }

    /// `suite: N passed, M failed, K skipped`.
    pub fn line(&self) -> String {
        format!(
            "{}: {} passed, {} failed, {} skipped",
            self.suite, self.passed, self.failed, self.skipped
        )
    }
}

/// All suites, in the order `check-all` prints them.
pub fn all() -> Vec<Tally> {
    vec![native_suite(), xwing(), hpke_pq(), cctv_age(), rfc9964()]
}

/// The external vectors: `$PQWRAP_VECTORS` if set, else the copies carried in the
/// repository (`test-vectors/external/`, with their sources in its README).
pub fn external_dir() -> PathBuf {
    std::env::var_os("PQWRAP_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("external"))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn read_json(path: &Path) -> Result<Value, String> {
    serde_json::from_slice(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

/// The JSON array in `external_dir()/rel`, noting where it came from; `None` (and a failure
/// in the tally) if it cannot be read or is not an array.
fn external_json_array(t: &mut Tally, rel: &str) -> Option<Vec<Value>> {
    let path = external_dir().join(rel);
    t.notes.push(format!("from {}", path.display()));
    match read_json(&path) {
        Ok(Value::Array(a)) => Some(a),
        Ok(_) => {
            t.fail("file", "not a JSON array");
            None
        }
        Err(e) => {
            t.fail("file", &e);
            None
        }
    }
}

fn field<'a>(v: &'a Value, k: &str) -> Result<&'a Value, String> {
    v.get(k).ok_or_else(|| format!("missing field {k}"))
}

fn hexf(v: &Value, k: &str) -> Result<Vec<u8>, String> {
    let s = field(v, k)?
        .as_str()
        .ok_or_else(|| format!("{k} is not a string"))?;
    hex::decode(s).map_err(|e| format!("{k}: {e}"))
}

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

// ---------------------------------------------------------------------------------------
// native envelope (this project)

/// The native envelope vectors in `test-vectors/native/`: each file is what the generator
/// produces today; positive ones open to their plaintext with every listed identity (and
/// not with `no_match`); negative ones fail with their expected error code.
pub fn native_suite() -> Tally {
    let mut t = Tally::new("native envelope (test-vectors/native)");
    let dir = native::dir();
    t.notes.push(format!("from {}", dir.display()));
    let generated: HashMap<String, Value> = match native::generate() {
        Ok(g) => g.into_iter().collect(),
        Err(e) => {
            t.fail("generator", &e.to_string());
            return t;
        }
    };
    let mut on_disk: Vec<(String, Value)> = Vec::new();
    for sub in ["", "negative"] {
        let Ok(rd) = fs::read_dir(dir.join(sub)) else {
            t.fail(sub, "cannot read the directory");
            continue;
        };
        let mut names: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        for p in names {
            let rel = Path::new(sub)
                .join(p.file_name().unwrap_or_default())
                .to_string_lossy()
                .into_owned();
            match read_json(&p) {
                Ok(v) => on_disk.push((rel, v)),
                Err(e) => t.fail(&rel, &e),
            }
        }
    }
    for name in generated.keys() {
        if !on_disk.iter().any(|(n, _)| n == name) {
            t.fail(
                name,
                "missing on disk (cargo run -p pqwrap-test-vectors --bin regen)",
            );
        }
    }
    let by_name: HashMap<&str, &Value> = on_disk.iter().map(|(n, v)| (n.as_str(), v)).collect();
    for (name, v) in &on_disk {
        t.check(name, || {
            let text = fs::read_to_string(dir.join(name)).map_err(|e| e.to_string())?;
            let g = generated
                .get(name)
                .ok_or("not produced by the generator (stale file?)")?;
            ensure(text == native::to_text(g), || {
                "differs from what the generator produces".into()
            })?;
            if v["kind"] == "negative" {
                native_negative(v, &by_name)
            } else {
                native_positive(v)
            }
        });
    }
    t
}

fn native_file(v: &Value) -> Result<Vec<u8>, String> {
    let f = hexf(v, "file_hex")?;
    ensure(sha256_hex(&f) == v["file_sha256"], || {
        "file_sha256 does not match file_hex".into()
    })?;
    Ok(f)
}

fn native_ids(v: &Value) -> Result<Vec<u8>, String> {
    v.as_array()
        .ok_or("identity list is not an array")?
        .iter()
        .map(|x| {
            x.as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| "bad identity number".to_string())
        })
        .collect()
}

fn native_positive(v: &Value) -> Result<(), String> {
    let file = native_file(v)?;
    let p = &v["plaintext"];
    let pt = match p.get("hex") {
        Some(_) => hexf(p, "hex")?,
        None => native::pattern(p["len"].as_u64().ok_or("plaintext.len")? as usize),
    };
    ensure(sha256_hex(&pt) == p["sha256"], || {
        "plaintext sha256 mismatch".into()
    })?;
    let h = Header::parse(&file).map_err(|e| format!("header: {e}"))?;
    let info = envelope::inspect(&file, Some(file.len() as u64)).map_err(|e| e.to_string())?;
    let want = &v["header"];
    let checks = [
        ("format_version", Value::from(info.format_version)),
        ("slot_size", Value::from(info.slot_size)),
        ("header_area_len", Value::from(info.header_area_len)),
        ("active_slot", Value::from(info.active_slot)),
        ("sequence", Value::from(info.sequence)),
        ("payload_len", Value::from(info.payload_len)),
        ("plaintext_len", Value::from(pt.len())),
        ("header_mac", Value::from(hex::encode(h.body().mac()))),
    ];
    for (k, got) in checks {
        ensure(want[k] == got, || {
            format!("header.{k}: {} != {got}", want[k])
        })?;
    }
    ensure(
        v["intermediates"]["key_commitment"] == hex::encode(h.body().commitment()),
        || "key_commitment mismatch".into(),
    )?;
    for i in native_ids(&v["open_with"])? {
        let mut out = Vec::new();
        decrypt_to(&file[..], &[native::identity(i)], &mut out)
            .map_err(|e| format!("identity {i}: {e}"))?;
        ensure(out == pt, || format!("identity {i}: wrong plaintext"))?;
    }
    if let Some(no) = v.get("no_match") {
        for i in native_ids(no)? {
            match decrypt_to(&file[..], &[native::identity(i)], std::io::sink()) {
                Err(e) if e.code() == "no_match" => {}
                other => return Err(format!("identity {i} should not open: {other:?}")),
            }
        }
    }
    Ok(())
}

fn native_negative(v: &Value, all: &HashMap<&str, &Value>) -> Result<(), String> {
    let base_name = format!("{}.json", v["base"].as_str().ok_or("base")?);
    let base = native_file(all.get(base_name.as_str()).ok_or("unknown base")?)?;
    let file = native::apply_ops(base, v["ops"].as_array().ok_or("ops")?)?;
    let who = native::identity(
        v["identity"]
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .ok_or("identity")?,
    );
    let want = v["expected_error"].as_str().ok_or("expected_error")?;
    match decrypt_to(&file[..], &[who], std::io::sink()) {
        Ok(_) => Err(format!("opened; expected {want}")),
        Err(e) if e.code() == want => Ok(()),
        Err(e) => Err(format!("expected {want}, got {} ({e})", e.code())),
    }
}

// ---------------------------------------------------------------------------------------
// X-Wing draft

/// draft-connolly-cfrg-xwing-kem vectors: key derivation from the seed, deterministic
/// encapsulation from the eseed, decapsulation.
pub fn xwing() -> Tally {
    let mut t = Tally::new("X-Wing (draft-connolly-cfrg-xwing-kem)");
    let Some(vectors) = external_json_array(&mut t, "xwing/test-vectors.json") else {
        return t;
    };
    for (i, v) in vectors.iter().enumerate() {
        t.check(&format!("vector {i}"), || {
            let seed: [u8; 32] = hexf(v, "seed")?.try_into().map_err(|_| "seed length")?;
            let eseed: [u8; 64] = hexf(v, "eseed")?.try_into().map_err(|_| "eseed length")?;
            let sk = kem::SecretKey::from_seed(&seed);
            ensure(sk.seed()[..] == hexf(v, "sk")?[..], || "sk".into())?;
            let pk_bytes = hexf(v, "pk")?;
            ensure(sk.public_key().as_bytes()[..] == pk_bytes[..], || {
                "pk".into()
            })?;
            let pk = kem::PublicKey::from_bytes(&pk_bytes).map_err(|e| e.to_string())?;
            let (ct, ss) = pk.encapsulate_derand(&eseed).map_err(|e| e.to_string())?;
            ensure(ct.as_bytes()[..] == hexf(v, "ct")?[..], || "ct".into())?;
            ensure(ss.as_bytes()[..] == hexf(v, "ss")?[..], || "ss".into())?;
            let ct = kem::Ciphertext::from_bytes(&hexf(v, "ct")?).map_err(|e| e.to_string())?;
            let ss2 = sk.decapsulate(&ct).map_err(|e| e.to_string())?;
            ensure(ss2.as_bytes()[..] == hexf(v, "ss")?[..], || {
                "decapsulated ss".into()
            })
        });
    }
    t
}

// ---------------------------------------------------------------------------------------
// HPKE-PQ draft

/// draft-ietf-hpke-pq vectors. The KEM 0x647a (MLKEM768-X25519 = X-Wing) ones check the KEM
/// (public key from the seed, decapsulation of `enc`); the one with KDF HKDF-SHA256 and
/// AEAD ChaCha20-Poly1305 (age's stanza suite) also checks pqwrap's key schedule, every
/// encryption and every export. Other KEMs are skipped (pqwrap does not implement them).
pub fn hpke_pq() -> Tally {
    let mut t = Tally::new("HPKE-PQ (draft-ietf-hpke-pq)");
    let Some(vectors) = external_json_array(&mut t, "hpke-pq/test-vectors.json") else {
        return t;
    };
    for v in &vectors {
        let (mode, kem_id, kdf, aead) = (&v["mode"], &v["kem_id"], &v["kdf_id"], &v["aead_id"]);
        let name = format!("mode {mode} kem {kem_id} kdf {kdf} aead {aead}");
        if *kem_id != u64::from(age::hpke::KEM_ID) {
            t.skip(format!("{name}: a KEM pqwrap does not implement"));
            continue;
        }
        let full = *mode == 0
            && *kdf == u64::from(age::hpke::KDF_ID)
            && *aead == u64::from(age::hpke::AEAD_ID);
        if !full {
            t.notes.push(format!(
                "{name}: KEM part only (pqwrap's HPKE is base mode, HKDF-SHA256, ChaCha20-Poly1305)"
            ));
        }
        t.check(&name, || hpke_vector(v, full));
    }
    t
}

fn hpke_vector(v: &Value, full: bool) -> Result<(), String> {
    let seed: [u8; 32] = hexf(v, "skRm")?
        .try_into()
        .map_err(|_| "skRm is not a 32-byte seed")?;
    let sk = kem::SecretKey::from_seed(&seed);
    ensure(
        sk.public_key().as_bytes()[..] == hexf(v, "pkRm")?[..],
        || "pkRm".into(),
    )?;
    let enc = kem::Ciphertext::from_bytes(&hexf(v, "enc")?).map_err(|e| e.to_string())?;
    let ss = sk.decapsulate(&enc).map_err(|e| e.to_string())?;
    ensure(ss.as_bytes()[..] == hexf(v, "shared_secret")?[..], || {
        "shared_secret".into()
    })?;
    if !full {
        return Ok(());
    }
    let mut suite_id = b"HPKE".to_vec();
    for id in [age::hpke::KEM_ID, age::hpke::KDF_ID, age::hpke::AEAD_ID] {
        suite_id.extend_from_slice(&id.to_be_bytes());
    }
    ensure(hexf(v, "suite_id")? == suite_id, || "suite_id".into())?;
    let info = hexf(v, "info")?;
    let mut r = age::hpke::setup_base_r(&enc, &sk, &info).map_err(|e| e.to_string())?;
    ensure(r.key()[..] == hexf(v, "key")?[..], || "key".into())?;
    ensure(r.base_nonce()[..] == hexf(v, "base_nonce")?[..], || {
        "base_nonce".into()
    })?;
    ensure(
        r.exporter_secret()[..] == hexf(v, "exporter_secret")?[..],
        || "exporter_secret".into(),
    )?;
    let mut s = age::hpke::Context::base(ss.as_bytes(), &info);
    let encs = v["encryptions"].as_array().ok_or("encryptions")?;
    for (i, e) in encs.iter().enumerate() {
        let (aad, ct, pt) = (hexf(e, "aad")?, hexf(e, "ct")?, hexf(e, "pt")?);
        ensure(s.seal(&aad, &pt).map_err(|e| e.to_string())? == ct, || {
            format!("encryption {i}: seal")
        })?;
        let opened = r
            .open(&aad, &ct)
            .map_err(|e| format!("encryption {i}: {e}"))?;
        ensure(opened[..] == pt[..], || format!("encryption {i}: open"))?;
    }
    for (i, x) in v["exports"].as_array().ok_or("exports")?.iter().enumerate() {
        let len = x["L"].as_u64().ok_or("L")? as usize;
        ensure(
            r.export(&hexf(x, "exporter_context")?, len)
                .map_err(|e| format!("export {i}: {e}"))?[..]
                == hexf(x, "exported_value")?[..],
            || format!("export {i}"),
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// C2SP CCTV age

/// C2SP CCTV age vectors, checked by [`cctv::check`]: each succeeds with the given plaintext
/// hash and file key (and its header re-serialises byte-identically), or fails as exactly the
/// kind it names, releasing exactly the plaintext whose hash it gives. Vectors with
/// identities pqwrap cannot parse are skipped.
pub fn cctv_age() -> Tally {
    cctv::run(&cctv::dir()).tally
}

// ---------------------------------------------------------------------------------------
// RFC 9964 Appendix A

/// RFC 9964 Appendix A (kept in `test-vectors/external/rfc9964-appendix-a.json`): the
/// all-zeros-seed ML-DSA-44 key's public key and thumbprints, and the A.2 COSE_Sign1 verifying
/// under pqwrap's ML-DSA over the RFC 9052 `Sig_structure` (and not after a one-bit change).
pub fn rfc9964() -> Tally {
    let mut t = Tally::new("RFC 9964 Appendix A (ML-DSA in COSE/JOSE)");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("external/rfc9964-appendix-a.json");
    t.notes.push(format!("from {}", path.display()));
    let v = match read_json(&path) {
        Ok(v) => v,
        Err(e) => {
            t.fail("file", &e);
            return t;
        }
    };
    let key = || -> Result<SigningKey, String> {
        ensure(v["algorithm"] == "ML-DSA-44", || "algorithm".into())?;
        let seed: [u8; 32] = hexf(&v, "seed")?.try_into().map_err(|_| "seed length")?;
        Ok(SigningKey::from_seed(Algorithm::MlDsa44, &seed))
    };
    t.check("A.1 public key and thumbprints", || {
        let sk = key()?;
        let pk = sk.public_key();
        let pk_hex = hex::encode(pk.as_bytes());
        let s = |k: &str| v[k].as_str().unwrap_or("?").to_owned();
        ensure(pk_hex.starts_with(&s("public_key_prefix")), || {
            "public key prefix".into()
        })?;
        ensure(pk_hex.ends_with(&s("public_key_suffix")), || {
            "public key suffix".into()
        })?;
        ensure(hex::encode(pk.kid()) == s("cose_key_thumbprint"), || {
            "COSE Key Thumbprint".into()
        })?;
        use base64ct::Encoding;
        ensure(
            base64ct::Base64UrlUnpadded::encode_string(&pk.jwk_thumbprint()) == s("jwk_thumbprint"),
            || "JWK Thumbprint".into(),
        )
    });
    t.check("A.2 COSE_Sign1", || {
        let pk: PublicKey = key()?.public_key().clone();
        let bytes = hexf(&v, "cose_sign1_hex")?;
        let (protected, payload, sig) = split_sign1(&bytes)?;
        ensure(
            payload == v["cose_sign1_payload"].as_str().unwrap_or("?").as_bytes(),
            || "payload".into(),
        )?;
        let tbs = sig_structure(protected, payload);
        ensure(pk.verify(&tbs, sig), || "signature does not verify".into())?;
        let mut bad = tbs.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        ensure(!pk.verify(&bad, sig), || {
            "signature verifies over a changed message".into()
        })
    });
    t
}

/// Reads a CBOR byte string header at the start of `b` (major type 2, lengths < 2^16).
fn cbor_bstr(b: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let (&first, rest) = b.split_first().ok_or("truncated")?;
    ensure(first >> 5 == 2, || {
        format!("expected a byte string, got {first:#x}")
    })?;
    let (len, rest) = match first & 0x1f {
        n @ 0..=23 => (usize::from(n), rest),
        24 => (usize::from(*rest.first().ok_or("truncated")?), &rest[1..]),
        25 => {
            let l = rest.get(..2).ok_or("truncated")?;
            (usize::from(u16::from_be_bytes([l[0], l[1]])), &rest[2..])
        }
        _ => return Err("unsupported length".into()),
    };
    ensure(rest.len() >= len, || "truncated".into())?;
    Ok(rest.split_at(len))
}

/// The (protected, payload, signature) byte strings of a COSE_Sign1.
type Sign1Parts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// Splits a tagged COSE_Sign1 with an empty unprotected map into its parts.
fn split_sign1(b: &[u8]) -> Result<Sign1Parts<'_>, String> {
    let rest = b
        .strip_prefix(&[0xd2, 0x84])
        .ok_or("not a tagged 4-element COSE_Sign1")?;
    let (protected, rest) = cbor_bstr(rest)?;
    let rest = rest
        .strip_prefix(&[0xa0])
        .ok_or("unprotected header not {}")?;
    let (payload, rest) = cbor_bstr(rest)?;
    let (sig, rest) = cbor_bstr(rest)?;
    ensure(rest.is_empty(), || "trailing bytes".into())?;
    Ok((protected, payload, sig))
}

fn cbor_bstr_header(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=23 => out.push(0x40 | len as u8),
        24..=255 => out.extend_from_slice(&[0x58, len as u8]),
        _ => {
            out.push(0x59);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
}

/// RFC 9052 `Sig_structure` for COSE_Sign1 with empty external AAD.
fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x84, 0x6a];
    out.extend_from_slice(b"Signature1");
    cbor_bstr_header(&mut out, protected.len());
    out.extend_from_slice(protected);
    out.push(0x40);
    cbor_bstr_header(&mut out, payload.len());
    out.extend_from_slice(payload);
    out
}
