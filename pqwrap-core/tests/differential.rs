//! The backends against the implementations they replaced, side by side on random inputs:
//! libcrux ML-KEM-768 (every backend this CPU runs) against RustCrypto `ml-kem`, AWS-LC's
//! X25519 against `x25519-dalek`, libcrux ML-DSA against RustCrypto `ml-dsa`. Each test runs
//! at least 10,000 random cases, including invalid inputs: implicit rejection of ciphertexts
//! that do not re-encrypt, encapsulation keys with unreduced coefficients, low-order and
//! non-canonical X25519 points, and damaged ML-DSA signatures.
//!
//! The inputs come from SHAKE128 over a seed printed at the start of each test; set
//! `PQWRAP_DIFF_SEED` (64 hex digits) to replay a failure.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use pqwrap_core::kem::{Backend, mlkem768, x25519};
use pqwrap_core::token::keys::{Algorithm, PublicKey, SigningKey};
use shake::{ExtendableOutput, Shake128, Shake128Reader, Update, XofReader};

const CASES: usize = 10_000;

/// A reproducible stream of test inputs.
struct Rng(Shake128Reader);

impl Rng {
    fn new(test: &str) -> Rng {
        let seed: [u8; 32] = match std::env::var("PQWRAP_DIFF_SEED") {
            Ok(h) => hex::decode(h.trim())
                .ok()
                .and_then(|v| v.try_into().ok())
                .expect("PQWRAP_DIFF_SEED must be 64 hex digits"),
            Err(_) => {
                let mut s = [0u8; 32];
                getrandom::fill(&mut s).expect("OS randomness");
                s
            }
        };
        eprintln!("{test}: PQWRAP_DIFF_SEED={}", hex::encode(seed));
        let mut x = Shake128::default();
        x.update(test.as_bytes());
        x.update(&seed);
        Rng(x.finalize_xof())
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        self.0.read(&mut b);
        b
    }
    fn below(&mut self, n: usize) -> usize {
        (u64::from_le_bytes(self.bytes()) % n as u64) as usize
    }
    fn vec(&mut self, max_len: usize) -> Vec<u8> {
        let mut v = vec![0u8; self.below(max_len + 1)];
        self.0.read(&mut v);
        v
    }
}

fn backends() -> Vec<Backend> {
    let all = [Backend::Portable, Backend::Avx2];
    let on: Vec<_> = all.into_iter().filter(|b| b.is_available()).collect();
    if !on.contains(&Backend::Avx2) {
        eprintln!(
            "======== SKIPPED: this CPU has no AVX2; only the portable backend is compared ========"
        );
    }
    on
}

#[test]
fn mlkem768_agrees_with_rustcrypto_ml_kem() {
    use ml_kem::array::Array;
    use ml_kem::ml_kem_768::{DecapsulationKey, EncapsulationKey};
    use ml_kem::{Decapsulate, KeyExport};

    let mut rng = Rng::new("mlkem768");
    let backends = backends();
    for case in 0..CASES {
        let seed: [u8; 64] = rng.bytes();
        let m: [u8; 32] = rng.bytes();
        let old_dk = DecapsulationKey::from_seed(seed.into());
        let old_ek = old_dk.encapsulation_key();
        let ek_bytes: [u8; mlkem768::ENCAPSULATION_KEY_LEN] =
            old_ek.to_bytes().as_slice().try_into().unwrap();
        let (old_ct, old_ss) = old_ek.encapsulate_deterministic(&m.into());

        // A ciphertext that does not re-encrypt: random, or the valid one with one bit
        // flipped. Both sides must take the implicit-rejection path to the same key.
        let bad_ct: [u8; mlkem768::CIPHERTEXT_LEN] = if case.is_multiple_of(2) {
            let mut c = [0u8; mlkem768::CIPHERTEXT_LEN];
            rng.0.read(&mut c);
            c
        } else {
            let mut c: [u8; mlkem768::CIPHERTEXT_LEN] = old_ct.as_slice().try_into().unwrap();
            let bit = rng.below(c.len() * 8);
            c[bit / 8] ^= 1 << (bit % 8);
            c
        };
        let old_bad_ss = old_dk.decapsulate(&ml_kem::Ciphertext::<ml_kem::MlKem768>::from(bad_ct));

        // An encapsulation key with one coefficient set to a random 12-bit value: valid
        // exactly when it stays below q = 3329.
        let mut odd_ek = ek_bytes;
        let coeff = rng.below(768);
        let value = rng.below(4096) as u16;
        let at = coeff / 2 * 3;
        if coeff.is_multiple_of(2) {
            odd_ek[at] = value as u8;
            odd_ek[at + 1] = (odd_ek[at + 1] & 0xf0) | (value >> 8) as u8;
        } else {
            odd_ek[at + 1] = (odd_ek[at + 1] & 0x0f) | ((value & 0x0f) << 4) as u8;
            odd_ek[at + 2] = (value >> 4) as u8;
        }
        let old_valid = EncapsulationKey::new(&Array::try_from(&odd_ek[..]).unwrap()).is_ok();

        for &b in &backends {
            let dk = mlkem768::DecapsulationKey::from_seed_with(&seed, b).unwrap();
            assert_eq!(dk.backend(), b);
            let ek = dk.encapsulation_key();
            assert_eq!(
                ek.as_bytes(),
                &ek_bytes,
                "case {case} {b:?}: key generation"
            );
            let parsed = mlkem768::EncapsulationKey::from_bytes_with(&ek_bytes, b).unwrap();
            let (ct, ss) = parsed.encapsulate_derand(&m);
            assert_eq!(&ct[..], &old_ct[..], "case {case} {b:?}: ciphertext");
            assert_eq!(&ss[..], &old_ss[..], "case {case} {b:?}: shared secret");
            assert_eq!(&dk.decapsulate(&ct)[..], &old_ss[..], "case {case} {b:?}");
            assert_eq!(
                &dk.decapsulate(&bad_ct)[..],
                &old_bad_ss[..],
                "case {case} {b:?}: implicit rejection"
            );
            assert_eq!(
                mlkem768::EncapsulationKey::from_bytes_with(&odd_ek, b).is_ok(),
                old_valid,
                "case {case} {b:?}: coefficient {coeff} = {value}"
            );
        }
    }
}

/// The points of small order and their non-canonical encodings (u + p, and the top bit
/// set), where X25519 yields all zeros for every scalar.
fn low_order_points() -> Vec<[u8; 32]> {
    let canonical = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];
    let mut out = Vec::new();
    for h in canonical {
        let p: [u8; 32] = hex::decode(h).unwrap().try_into().unwrap();
        out.push(p);
        let mut high = p;
        high[31] |= 0x80;
        out.push(high);
    }
    out
}

/// X25519's answer from x25519-dalek, `None` for the all-zero result.
fn dalek(k: &[u8; 32], u: &[u8; 32]) -> Option<[u8; 32]> {
    let ss =
        x25519_dalek::StaticSecret::from(*k).diffie_hellman(&x25519_dalek::PublicKey::from(*u));
    ss.was_contributory().then(|| *ss.as_bytes())
}

#[test]
fn x25519_agrees_with_x25519_dalek() {
    let mut rng = Rng::new("x25519");
    let low = low_order_points();
    for case in 0..CASES {
        let k: [u8; 32] = rng.bytes();
        let expected_pk =
            *x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(k)).as_bytes();
        assert_eq!(
            x25519::public_key(&k),
            expected_pk,
            "case {case}: public key"
        );

        // A random u (its top bit set half of the time), a real public key, a low-order
        // point, and a u at or above p = 2^255 - 19 that must be reduced.
        let mut above_p = [0xffu8; 32];
        above_p[0] = 0xed + (rng.below(0x13) as u8);
        above_p[31] = 0x7f | (rng.bytes::<1>()[0] & 0x80);
        let peers = [
            rng.bytes::<32>(),
            x25519::public_key(&rng.bytes()),
            low[case % low.len()],
            above_p,
        ];
        for u in peers {
            let ours = x25519::shared_secret(&k, &u).ok().map(|s| *s);
            assert_eq!(
                ours,
                dalek(&k, &u),
                "case {case}: k = {}, u = {}",
                hex::encode(k),
                hex::encode(u)
            );
        }
    }
    // Every low-order point is refused, whatever the scalar.
    for u in &low {
        assert!(x25519::shared_secret(&[0x42; 32], u).is_err());
    }
}

/// RustCrypto `ml-dsa` as the reference: the public key and the deterministic signature.
fn reference(alg: Algorithm, seed: &[u8; 32], msg: &[u8]) -> (Vec<u8>, Vec<u8>) {
    use ml_dsa::{Keypair, Signer};
    fn run<P: ml_dsa::MlDsaParams>(seed: &[u8; 32], msg: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let sk = ml_dsa::SigningKey::<P>::from_seed(&(*seed).into());
        let sig: ml_dsa::Signature<P> = sk.sign(msg);
        (sk.verifying_key().encode().to_vec(), sig.encode().to_vec())
    }
    match alg {
        Algorithm::MlDsa44 => run::<ml_dsa::MlDsa44>(seed, msg),
        Algorithm::MlDsa65 => run::<ml_dsa::MlDsa65>(seed, msg),
        Algorithm::MlDsa87 => run::<ml_dsa::MlDsa87>(seed, msg),
    }
}

fn reference_verify(alg: Algorithm, pk: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    fn run<P: ml_dsa::MlDsaParams>(pk: &[u8], msg: &[u8], sig: &[u8]) -> bool {
        let enc = ml_dsa::EncodedVerifyingKey::<P>::try_from(pk).unwrap();
        let vk = ml_dsa::VerifyingKey::<P>::decode(&enc);
        ml_dsa::Signature::<P>::try_from(sig).is_ok_and(|s| vk.verify_with_context(msg, &[], &s))
    }
    match alg {
        Algorithm::MlDsa44 => run::<ml_dsa::MlDsa44>(pk, msg, sig),
        Algorithm::MlDsa65 => run::<ml_dsa::MlDsa65>(pk, msg, sig),
        Algorithm::MlDsa87 => run::<ml_dsa::MlDsa87>(pk, msg, sig),
    }
}

/// `cases` random keys and messages for one parameter set: the same public key, the same
/// deterministic signature, and the same verdict on the signature, on a wrong message, on
/// one flipped bit, on a randomised hint section and on a signature of the wrong length.
fn mldsa_agrees(alg: Algorithm, cases: usize) {
    let mut rng = Rng::new(alg.name());
    // ω + k: the hint section at the end of the signature.
    let hint_len = match alg {
        Algorithm::MlDsa44 => 80 + 4,
        Algorithm::MlDsa65 => 55 + 6,
        Algorithm::MlDsa87 => 75 + 8,
    };
    for case in 0..cases {
        let seed: [u8; 32] = rng.bytes();
        let msg = rng.vec(300);
        let (ref_pk, ref_sig) = reference(alg, &seed, &msg);
        let sk = SigningKey::from_seed(alg, &seed);
        let pk = sk.public_key();
        assert_eq!(pk.as_bytes(), &ref_pk[..], "case {case}: public key");
        let sig = sk.sign(&msg);
        assert_eq!(sig, ref_sig, "case {case}: signature");
        let parsed = PublicKey::from_bytes(alg, &ref_pk).unwrap();

        let mut wrong_msg = msg.clone();
        wrong_msg.push(rng.bytes::<1>()[0]);
        let mut flipped = sig.clone();
        let bit = rng.below(flipped.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        let mut hints = sig.clone();
        let n = hints.len();
        for b in &mut hints[n - hint_len..] {
            // Mostly plausible indices and counts, so that both decoders get past the
            // first checks and disagreements in the canonical-form rules would show.
            *b = if rng.below(4) == 0 {
                rng.bytes::<1>()[0]
            } else {
                (rng.below(64) * 4) as u8
            };
        }
        let short = &sig[..sig.len() - 1 - rng.below(8)];

        for (what, m, s) in [
            ("valid", &msg[..], &sig[..]),
            ("wrong message", &wrong_msg[..], &sig[..]),
            ("flipped bit", &msg[..], &flipped[..]),
            ("random hints", &msg[..], &hints[..]),
            ("short", &msg[..], short),
        ] {
            let ours = parsed.verify(m, s);
            assert_eq!(
                ours,
                reference_verify(alg, &ref_pk, m, s),
                "case {case}: {what} (seed {})",
                hex::encode(seed)
            );
            if what == "valid" {
                assert!(ours, "case {case}: a valid signature is refused");
            }
        }
    }
}

#[test]
fn mldsa44_agrees_with_rustcrypto_ml_dsa() {
    mldsa_agrees(Algorithm::MlDsa44, 3_334);
}

#[test]
fn mldsa65_agrees_with_rustcrypto_ml_dsa() {
    mldsa_agrees(Algorithm::MlDsa65, 3_333);
}

#[test]
fn mldsa87_agrees_with_rustcrypto_ml_dsa() {
    mldsa_agrees(Algorithm::MlDsa87, 3_333);
}
