//! Token issue and verify against raw ML-DSA-65 sign and verify, in the same run: the raw
//! operations of the backend the tokens use (libcrux) and of RustCrypto's `ml-dsa` 0.1, the
//! backend before it.
//!
//! `cargo bench -p pqwrap-benches --bench token`. Prints the size of the token for the
//! DESIGN.md example manifest. The raw baselines sign/verify a message of the same length as
//! the token's Sig_structure; raw verify includes decoding the signature bytes, as a real
//! verifier must.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ml_dsa::{KeyInit, Keypair, MlDsa65, Signer};
use pqwrap_benches::ThreadCpuTime;
use pqwrap_core::token::{Algorithm, Issuer, Manifest, SigningKey, TrustSet, Verifier};

use pqwrap_core::token::manifest::DESIGN_EXAMPLE as DESIGN;

fn bench(c: &mut Criterion<ThreadCpuTime>) {
    let seed = [7u8; 32];
    let manifest = Manifest::from_json(DESIGN).expect("design manifest");
    let key = SigningKey::from_seed(Algorithm::MlDsa65, &seed);
    let trust: TrustSet = [key.public_key().clone()].into_iter().collect();
    let issuer = Issuer::new(key);
    let now = 1_780_000_000;
    let ttl = Duration::from_secs(3600);
    let token = issuer
        .issue(&manifest, "files.local", ttl, now, None)
        .expect("issue");
    let verifier = Verifier::new(trust, "files.local");
    verifier.verify(&token.bytes, now).expect("verify");
    println!(
        "design-manifest token: {} bytes ({} base64url characters)",
        token.bytes.len(),
        token.to_text().len()
    );

    // Raw ML-DSA-65 over a message as long as the token's Sig_structure.
    let sig_len = Algorithm::MlDsa65.signature_len();
    let msg = vec![0x5au8; token.bytes.len() - sig_len + 8];
    let raw_sk = ml_dsa::SigningKey::<MlDsa65>::new(&seed.into());
    let raw_vk = raw_sk.verifying_key();
    let raw_sig = raw_sk.sign(&msg).encode().to_vec();

    let lc_pair = libcrux_ml_dsa::ml_dsa_65::generate_key_pair(seed);
    let lc_sig =
        libcrux_ml_dsa::ml_dsa_65::sign(&lc_pair.signing_key, &msg, &[], [0u8; 32]).expect("sign");
    assert_eq!(lc_sig.as_slice(), raw_sig.as_slice(), "the backends agree");

    let mut g = c.benchmark_group("ml-dsa-65");
    g.bench_function("raw sign (libcrux)", |b| {
        b.iter(|| {
            libcrux_ml_dsa::ml_dsa_65::sign(&lc_pair.signing_key, black_box(&msg), &[], [0u8; 32])
                .expect("sign")
        })
    });
    g.bench_function("raw verify (libcrux)", |b| {
        b.iter(|| {
            let s = libcrux_ml_dsa::MLDSASignature::new(
                black_box(lc_sig.as_slice()).try_into().expect("length"),
            );
            libcrux_ml_dsa::ml_dsa_65::verify(&lc_pair.verification_key, black_box(&msg), &[], &s)
                .expect("verify")
        })
    });
    g.bench_function("raw sign (ml-dsa 0.1)", |b| {
        b.iter(|| raw_sk.sign(black_box(&msg)))
    });
    // Deterministic ML-DSA's rejection-sampling loop count depends on the message; a token
    // always has a fresh cti, so compare issuing with signing fresh messages too.
    let mut fresh = msg.clone();
    let mut n = 0u64;
    g.bench_function("raw sign (ml-dsa 0.1, fresh message)", |b| {
        b.iter(|| {
            n += 1;
            fresh[..8].copy_from_slice(&n.to_le_bytes());
            raw_sk.sign(black_box(&fresh))
        })
    });
    g.bench_function("token issue", |b| {
        b.iter(|| issuer.issue(black_box(&manifest), "files.local", ttl, now, None))
    });
    g.bench_function("raw verify (ml-dsa 0.1)", |b| {
        b.iter(|| {
            let s =
                ml_dsa::Signature::<MlDsa65>::try_from(black_box(raw_sig.as_slice())).expect("sig");
            assert!(raw_vk.verify_with_context(black_box(&msg), &[], &s));
        })
    });
    g.bench_function("token verify", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&token.bytes), now)
                .expect("verify")
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench
}
criterion_main!(benches);
