//! X-Wing conformance beyond the draft's vectors (those are the test-vectors crate's `xwing`
//! suite): agreement with the `x-wing` crate on random keys, Go's accumulated ML-KEM-768
//! test pinning the ML-KEM implementation (libcrux, on every backend this CPU runs) to final
//! FIPS 203, and the backends' agreement with each other.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use pqwrap_core::kem::{Backend, PublicKey, SecretKey, mlkem768};

/// The `x-wing` crate (RustCrypto) is an independent assembly of the same KEM.
#[test]
fn agrees_with_x_wing_crate() {
    use x_wing::{Decapsulate, Decapsulator, KeyExport};
    const N: usize = 1000;
    let mut rnd = [0u8; 32 + 64];
    for _ in 0..N {
        getrandom::fill(&mut rnd).unwrap();
        let seed: [u8; 32] = rnd[..32].try_into().unwrap();
        let eseed: [u8; 64] = rnd[32..].try_into().unwrap();

        let ours = SecretKey::from_seed(&seed);
        let theirs = x_wing::DecapsulationKey::from(seed);
        let their_pk = theirs.encapsulation_key();
        assert_eq!(&ours.public_key().as_bytes()[..], &their_pk.to_bytes()[..]);

        let (ct, ss) = ours.public_key().encapsulate_derand(&eseed).unwrap();
        let (their_ct, their_ss) = their_pk.encapsulate_deterministic(&eseed.into());
        assert_eq!(&ct.as_bytes()[..], &their_ct[..]);
        assert_eq!(&ss.as_bytes()[..], &their_ss[..]);
        assert_eq!(
            &theirs.decapsulate(&their_ct)[..],
            &ours.decapsulate(&ct).unwrap().as_bytes()[..]
        );
    }
}

/// Go's crypto/mlkem accumulated test (TestAccumulated), for ML-KEM-768, run on the ML-KEM
/// the core uses, with the given backend.
fn mlkem768_accumulated(rounds: usize, backend: Backend) -> String {
    use shake::{ExtendableOutput, Shake128, Update, XofReader};

    let mut source = Shake128::default().finalize_xof();
    let mut acc = Shake128::default();
    let mut seed = [0u8; mlkem768::SEED_LEN];
    let mut m = [0u8; 32];
    let mut ct = [0u8; mlkem768::CIPHERTEXT_LEN];
    for _ in 0..rounds {
        source.read(&mut seed);
        let dk = mlkem768::DecapsulationKey::from_seed_with(&seed, backend).expect("backend");
        let ek = dk.encapsulation_key();
        acc.update(ek.as_bytes());

        source.read(&mut m);
        let (c, k) = ek.encapsulate_derand(&m);
        acc.update(&c);
        acc.update(&k[..]);
        assert_eq!(dk.decapsulate(&c)[..], k[..], "decapsulation disagrees");

        source.read(&mut ct);
        let k = dk.decapsulate(&ct);
        acc.update(&k[..]);
    }
    let mut out = [0u8; 32];
    acc.finalize_xof().read(&mut out);
    hex::encode(out)
}

/// Every backend this CPU runs (a loud line when AVX2 cannot be checked here).
fn backends() -> Vec<Backend> {
    let on: Vec<_> = [Backend::Portable, Backend::Avx2]
        .into_iter()
        .filter(|b| b.is_available())
        .collect();
    if !on.contains(&Backend::Avx2) {
        eprintln!(
            "======== SKIPPED: this CPU has no AVX2; only the portable backend is checked ========"
        );
    }
    on
}

#[test]
fn mlkem768_accumulated_100() {
    for b in backends() {
        assert_eq!(
            mlkem768_accumulated(100, b),
            "1114b1b6699ed191734fa339376afa7e285c9e6acf6ff0177d346696ce564415",
            "{b:?}"
        );
    }
}

#[test]
fn mlkem768_accumulated_10000() {
    for b in backends() {
        assert_eq!(
            mlkem768_accumulated(10_000, b),
            "8a518cc63da366322a8e7a818c7a0d63483cb3528d34a4cf42f35d5ad73f22fc",
            "{b:?}"
        );
    }
}

/// X-Wing on each backend gives the same keys, ciphertexts and secrets.
#[test]
fn xwing_backends_agree() {
    let all = backends();
    let mut rnd = [0u8; 32 + 64];
    for _ in 0..200 {
        getrandom::fill(&mut rnd).unwrap();
        let seed: [u8; 32] = rnd[..32].try_into().unwrap();
        let eseed: [u8; 64] = rnd[32..].try_into().unwrap();
        let mut seen = None;
        for &b in &all {
            let sk = SecretKey::from_seed_with(&seed, b).unwrap();
            let pk = PublicKey::from_bytes_with(sk.public_key().as_bytes(), b).unwrap();
            assert_eq!(pk.backend(), b);
            let (ct, ss) = pk.encapsulate_derand(&eseed).unwrap();
            assert_eq!(sk.decapsulate(&ct).unwrap(), ss);
            let this = (*pk.as_bytes(), *ct.as_bytes(), *ss.as_bytes());
            if let Some(prev) = &seen {
                assert!(prev == &this, "{b:?} differs");
            }
            seen = Some(this);
        }
    }
}
