//! X-Wing conformance beyond the draft's vectors (those are the test-vectors crate's `xwing`
//! suite): agreement with the `x-wing` crate on random keys, and Go's accumulated ML-KEM-768
//! test pinning the ML-KEM implementation to final FIPS 203.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use pqwrap_core::kem::SecretKey;

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

/// Go's crypto/mlkem accumulated test (TestAccumulated), for ML-KEM-768.
fn mlkem768_accumulated(rounds: usize) -> String {
    use ml_kem::{B32, Decapsulate, KeyExport, Seed, ml_kem_768::DecapsulationKey};
    use shake::{ExtendableOutput, Shake128, Update, XofReader};

    let mut source = Shake128::default().finalize_xof();
    let mut acc = Shake128::default();
    let mut seed = Seed::default();
    let mut m = B32::default();
    let mut ct = ml_kem::Ciphertext::<ml_kem::MlKem768>::default();
    for _ in 0..rounds {
        source.read(&mut seed);
        let dk = DecapsulationKey::from_seed(seed);
        let ek = dk.encapsulation_key();
        acc.update(&ek.to_bytes());

        source.read(&mut m);
        let (c, k) = ek.encapsulate_deterministic(&m);
        acc.update(&c);
        acc.update(&k);
        assert_eq!(dk.decapsulate(&c), k, "decapsulation disagrees");

        source.read(&mut ct);
        let k = dk.decapsulate(&ct);
        acc.update(&k);
    }
    let mut out = [0u8; 32];
    acc.finalize_xof().read(&mut out);
    hex::encode(out)
}

#[test]
fn mlkem768_accumulated_100() {
    assert_eq!(
        mlkem768_accumulated(100),
        "1114b1b6699ed191734fa339376afa7e285c9e6acf6ff0177d346696ce564415"
    );
}

#[test]
fn mlkem768_accumulated_10000() {
    assert_eq!(
        mlkem768_accumulated(10_000),
        "8a518cc63da366322a8e7a818c7a0d63483cb3528d34a4cf42f35d5ad73f22fc"
    );
}
