//! The implementations the backends were chosen from, measured side by side in one run.
//!
//! `cargo bench -p pqwrap-benches --features candidates --bench candidates`
//!
//! Each group times one operation with every candidate: ML-KEM-768 (RustCrypto `ml-kem`
//! against libcrux, packed and with the public key kept unpacked, portable and AVX2), X25519
//! (`x25519-dalek`, libcrux/HACL*, aws-lc-rs) and ML-DSA-65 (RustCrypto `ml-dsa` against
//! libcrux). The figures and the choice made from them are in BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use pqwrap_benches::ThreadCpuTime;
use std::hint::black_box;

const SEED64: [u8; 64] = [0x42; 64];
const M: [u8; 32] = [0x17; 32];
const SK_X: [u8; 32] = [0x33; 32];
const EPH_X: [u8; 32] = [0x55; 32];

fn mlkem(c: &mut Criterion<ThreadCpuTime>) {
    use libcrux_ml_kem::mlkem768 as lc;
    use ml_kem::{KeyExport, ml_kem_768 as rc};

    let dk = rc::DecapsulationKey::from_seed(SEED64.into());
    let ek = dk.encapsulation_key().clone();
    let ek_bytes = ek.to_bytes();

    let pair = lc::generate_key_pair(SEED64);
    let (lc_sk, lc_pk) = pair.into_parts();
    assert_eq!(
        lc_pk.as_slice()[..],
        ek_bytes[..],
        "the two key generations agree"
    );
    let mut pk_portable = lc::portable::unpacked::init_public_key();
    lc::portable::unpacked::unpacked_public_key(&lc_pk, &mut pk_portable);
    let mut pk_avx2 = lc::avx2::unpacked::init_public_key();
    lc::avx2::unpacked::unpacked_public_key(&lc_pk, &mut pk_avx2);
    let avx2 = std::is_x86_feature_detected!("avx2");

    let mut g = c.benchmark_group("candidates/mlkem768-encapsulate");
    g.bench_function("ml-kem 0.3 (key decoded once)", |b| {
        b.iter(|| ek.encapsulate_deterministic(black_box(&M.into())))
    });
    g.bench_function("ml-kem 0.3 (decode + encapsulate)", |b| {
        b.iter(|| {
            let ek = rc::EncapsulationKey::new(black_box(&ek_bytes)).unwrap();
            ek.encapsulate_deterministic(&M.into())
        })
    });
    g.bench_function("libcrux packed (dispatch)", |b| {
        b.iter(|| lc::encapsulate(black_box(&lc_pk), M))
    });
    g.bench_function("libcrux validate + packed (dispatch)", |b| {
        b.iter(|| {
            assert!(lc::validate_public_key(black_box(&lc_pk)));
            lc::encapsulate(&lc_pk, M)
        })
    });
    g.bench_function("libcrux unpacked portable", |b| {
        b.iter(|| lc::portable::unpacked::encapsulate(black_box(&pk_portable), M))
    });
    if avx2 {
        g.bench_function("libcrux unpacked avx2", |b| {
            b.iter(|| lc::avx2::unpacked::encapsulate(black_box(&pk_avx2), M))
        });
    }
    g.finish();

    let (ct, _) = lc::encapsulate(&lc_pk, M);
    let rc_ct = ml_kem::Ciphertext::<ml_kem::MlKem768>::try_from(ct.as_slice().as_slice()).unwrap();
    let mut g = c.benchmark_group("candidates/mlkem768-decapsulate");
    g.bench_function("ml-kem 0.3", |b| {
        use ml_kem::Decapsulate;
        b.iter(|| dk.decapsulate(black_box(&rc_ct)))
    });
    g.bench_function("libcrux packed (dispatch)", |b| {
        b.iter(|| lc::decapsulate(black_box(&lc_sk), &ct))
    });
    let mut kp_portable = lc::portable::unpacked::init_key_pair();
    lc::portable::unpacked::key_pair_from_private_mut(&lc_sk, &mut kp_portable);
    g.bench_function("libcrux unpacked portable", |b| {
        b.iter(|| lc::portable::unpacked::decapsulate(black_box(&kp_portable), &ct))
    });
    if avx2 {
        let mut kp_avx2 = lc::avx2::unpacked::init_key_pair();
        lc::avx2::unpacked::key_pair_from_private_mut(&lc_sk, &mut kp_avx2);
        g.bench_function("libcrux unpacked avx2", |b| {
            b.iter(|| lc::avx2::unpacked::decapsulate(black_box(&kp_avx2), &ct))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("candidates/mlkem768-keygen");
    g.bench_function("ml-kem 0.3", |b| {
        b.iter(|| rc::DecapsulationKey::from_seed(black_box(SEED64).into()))
    });
    g.bench_function("libcrux (dispatch)", |b| {
        b.iter(|| lc::generate_key_pair(black_box(SEED64)))
    });
    g.finish();
}

fn x25519(c: &mut Criterion<ThreadCpuTime>) {
    use aws_lc_rs::agreement;

    let peer_secret = x25519_dalek::StaticSecret::from([0x77; 32]);
    let peer = *x25519_dalek::PublicKey::from(&peer_secret).as_bytes();

    let dalek_sk = x25519_dalek::StaticSecret::from(SK_X);
    let aws_sk = agreement::PrivateKey::from_private_key(&agreement::X25519, &SK_X).unwrap();

    let mut g = c.benchmark_group("candidates/x25519-shared-secret");
    g.bench_function("x25519-dalek 3", |b| {
        b.iter(|| {
            dalek_sk
                .diffie_hellman(&x25519_dalek::PublicKey::from(black_box(peer)))
                .to_bytes()
        })
    });
    g.bench_function("libcrux-curve25519 (HACL*)", |b| {
        b.iter(|| {
            let mut out = [0u8; 32];
            let _ = libcrux_curve25519::ecdh(&mut out, black_box(&peer), &SK_X);
            out
        })
    });
    g.bench_function("aws-lc-rs", |b| {
        b.iter(|| {
            agreement::agree(
                &aws_sk,
                agreement::UnparsedPublicKey::new(&agreement::X25519, black_box(&peer)),
                (),
                |k| {
                    let mut out = [0u8; 32];
                    out.copy_from_slice(k);
                    Ok(out)
                },
            )
            .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("candidates/x25519-public-key");
    g.bench_function("x25519-dalek 3", |b| {
        b.iter(|| {
            let s = x25519_dalek::StaticSecret::from(black_box(EPH_X));
            *x25519_dalek::PublicKey::from(&s).as_bytes()
        })
    });
    g.bench_function("libcrux-curve25519 (HACL*)", |b| {
        b.iter(|| {
            let mut out = [0u8; 32];
            libcrux_curve25519::secret_to_public(&mut out, black_box(&EPH_X));
            out
        })
    });
    g.bench_function("aws-lc-rs", |b| {
        b.iter(|| {
            let k = agreement::PrivateKey::from_private_key(&agreement::X25519, black_box(&EPH_X))
                .unwrap();
            let p = k.compute_public_key().unwrap();
            let mut out = [0u8; 32];
            out.copy_from_slice(p.as_ref());
            out
        })
    });
    g.finish();
}

fn mldsa(c: &mut Criterion<ThreadCpuTime>) {
    use libcrux_ml_dsa::ml_dsa_65 as lc;
    use ml_dsa::{Keypair, MlDsa65, Signer};

    let seed = [0x21u8; 32];
    let msg = [0x5au8; 600];
    let rc_sk = ml_dsa::SigningKey::<MlDsa65>::from_seed(&seed.into());
    let rc_vk = rc_sk.verifying_key();
    let lc_pair = lc::generate_key_pair(seed);
    assert_eq!(
        rc_vk.encode().as_slice(),
        lc_pair.verification_key.as_slice(),
        "the two key generations agree"
    );
    let rc_sig = rc_sk.sign(&msg);
    let lc_sig = lc::sign(&lc_pair.signing_key, &msg, &[], [0u8; 32]).unwrap();
    assert_eq!(
        rc_sig.encode().as_slice(),
        lc_sig.as_slice(),
        "deterministic signing agrees"
    );
    let sig_bytes = rc_sig.encode().to_vec();
    let vk_bytes = rc_vk.encode().to_vec();

    let mut g = c.benchmark_group("candidates/mldsa65-verify");
    g.bench_function("ml-dsa 0.1 (key decoded once)", |b| {
        b.iter(|| {
            let s =
                ml_dsa::Signature::<MlDsa65>::try_from(black_box(sig_bytes.as_slice())).unwrap();
            assert!(rc_vk.verify_with_context(&msg, &[], &s))
        })
    });
    g.bench_function("ml-dsa 0.1 (decode key + verify)", |b| {
        b.iter(|| {
            let enc =
                ml_dsa::EncodedVerifyingKey::<MlDsa65>::try_from(black_box(vk_bytes.as_slice()))
                    .unwrap();
            let vk = ml_dsa::VerifyingKey::<MlDsa65>::decode(&enc);
            let s = ml_dsa::Signature::<MlDsa65>::try_from(sig_bytes.as_slice()).unwrap();
            assert!(vk.verify_with_context(&msg, &[], &s))
        })
    });
    g.bench_function("libcrux (dispatch)", |b| {
        b.iter(|| lc::verify(black_box(&lc_pair.verification_key), &msg, &[], &lc_sig).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("candidates/mldsa65-sign");
    g.bench_function("ml-dsa 0.1", |b| b.iter(|| rc_sk.sign(black_box(&msg))));
    g.bench_function("libcrux (dispatch)", |b| {
        b.iter(|| lc::sign(&lc_pair.signing_key, black_box(&msg), &[], [0u8; 32]).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("candidates/mldsa65-keygen");
    g.bench_function("ml-dsa 0.1", |b| {
        b.iter(|| ml_dsa::SigningKey::<MlDsa65>::from_seed(&black_box(seed).into()))
    });
    g.bench_function("libcrux (dispatch)", |b| {
        b.iter(|| lc::generate_key_pair(black_box(seed)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(ThreadCpuTime)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = mlkem, x25519, mldsa
}
criterion_main!(benches);
