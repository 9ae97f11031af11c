//! X-Wing: pqwrap's KEM (libcrux ML-KEM with the fastest backend this CPU runs, and with the
//! portable one; AWS-LC X25519) against the `x-wing` crate (RustCrypto `ml-kem` and
//! `x25519-dalek`, the implementations pqwrap used before), measured in the same run.
//!
//! `cargo bench -p pqwrap-benches --bench kem`

use criterion::{Criterion, criterion_group, criterion_main};
use pqwrap_benches::ThreadCpuTime;
use std::hint::black_box;
use x_wing::{Decapsulate, Decapsulator};

const SEED: [u8; 32] = [0x42; 32];
const ESEED: [u8; 64] = [0x17; 64];

fn keygen(c: &mut Criterion<ThreadCpuTime>) {
    let mut g = c.benchmark_group("xwing/keygen");
    g.bench_function("pqwrap", |b| {
        b.iter(|| pqwrap_core::kem::SecretKey::from_seed(black_box(&SEED)))
    });
    g.bench_function("x-wing", |b| {
        b.iter(|| x_wing::DecapsulationKey::from(black_box(SEED)))
    });
    g.finish();
}

fn encapsulate(c: &mut Criterion<ThreadCpuTime>) {
    use pqwrap_core::kem::{Backend, PublicKey};
    let ours = pqwrap_core::kem::SecretKey::from_seed(&SEED);
    let portable = PublicKey::from_bytes_with(ours.public_key().as_bytes(), Backend::Portable)
        .expect("public key");
    let theirs = x_wing::DecapsulationKey::from(SEED);
    let mut g = c.benchmark_group("xwing/encapsulate");
    g.bench_function(
        format!("pqwrap ({})", ours.public_key().backend().name()),
        |b| {
            b.iter(|| {
                ours.public_key()
                    .encapsulate_derand(black_box(&ESEED))
                    .unwrap()
            })
        },
    );
    g.bench_function("pqwrap (portable)", |b| {
        b.iter(|| portable.encapsulate_derand(black_box(&ESEED)).unwrap())
    });
    g.bench_function("pqwrap (decode key + encapsulate)", |b| {
        b.iter(|| {
            PublicKey::from_bytes(black_box(ours.public_key().as_bytes()))
                .unwrap()
                .encapsulate_derand(&ESEED)
                .unwrap()
        })
    });
    g.bench_function("x-wing", |b| {
        b.iter(|| {
            theirs
                .encapsulation_key()
                .encapsulate_deterministic(black_box(&ESEED.into()))
        })
    });
    g.finish();
}

fn decapsulate(c: &mut Criterion<ThreadCpuTime>) {
    let ours = pqwrap_core::kem::SecretKey::from_seed(&SEED);
    let theirs = x_wing::DecapsulationKey::from(SEED);
    let (ct, _) = ours.public_key().encapsulate_derand(&ESEED).unwrap();
    let (their_ct, _) = theirs
        .encapsulation_key()
        .encapsulate_deterministic(&ESEED.into());
    let mut g = c.benchmark_group("xwing/decapsulate");
    g.bench_function("pqwrap", |b| {
        b.iter(|| ours.decapsulate(black_box(&ct)).unwrap())
    });
    g.bench_function("x-wing", |b| {
        b.iter(|| theirs.decapsulate(black_box(&their_ct)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = keygen, encapsulate, decapsulate
}
criterion_main!(benches);
