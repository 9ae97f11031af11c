//! age payload throughput (STREAM ChaCha20-Poly1305, 64 KiB chunks) and header costs.
//!
//! `cargo bench -p pqwrap-benches --bench age`

use std::hint::black_box;
use std::io::{Read, Write};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pqwrap_benches::ThreadCpuTime;
use pqwrap_core::age::{self, FileKey, Header};
use pqwrap_core::keys::Identity;

const SIZE: usize = 16 << 20;

fn payload(c: &mut Criterion<ThreadCpuTime>) {
    let id = Identity::generate_x25519().expect("rng");
    let fk = FileKey::generate().expect("rng");
    let header = Header::wrap(&fk, &[id.to_recipient()], age::Mixing::Refuse).expect("wrap");
    let pt = vec![0x5au8; SIZE];
    let mut w = age::encrypt_writer(
        Vec::with_capacity(SIZE + 4096),
        &fk,
        &header,
        age::Armor::Binary,
    )
    .expect("writer");
    w.write_all(&pt).expect("write");
    let file = w.finish().expect("finish");

    let mut g = c.benchmark_group("age_payload_16MiB");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(20);
    g.bench_function("encrypt", |b| {
        let mut out = Vec::with_capacity(SIZE + 4096);
        b.iter(|| {
            out.clear();
            let mut w =
                age::encrypt_writer(&mut out, &fk, &header, age::Armor::Binary).expect("writer");
            w.write_all(black_box(&pt)).expect("write");
            w.finish().expect("finish");
        })
    });
    g.bench_function("decrypt", |b| {
        let mut out = Vec::with_capacity(SIZE);
        b.iter(|| {
            out.clear();
            let mut r = age::Decryptor::new(black_box(&file[..]))
                .expect("header")
                .decrypt_with_file_key(&fk)
                .expect("mac");
            r.read_to_end(&mut out).expect("payload");
        })
    });
    g.bench_function("verify_payload", |b| {
        let payload = &file[header.len()..];
        b.iter(|| age::stream::verify_payload(&fk, black_box(payload), false).expect("ok"))
    });
    g.finish();
}

fn headers(c: &mut Criterion<ThreadCpuTime>) {
    let pq = Identity::generate_hybrid().expect("rng");
    let cl = Identity::generate_x25519().expect("rng");
    let fk = FileKey::generate().expect("rng");
    let mut g = c.benchmark_group("age_header");
    for (name, id) in [("mlkem768x25519", &pq), ("x25519", &cl)] {
        let r = id.to_recipient();
        let h = Header::wrap(&fk, std::slice::from_ref(&r), age::Mixing::Refuse).expect("wrap");
        g.bench_function(format!("wrap_{name}"), |b| {
            b.iter(|| {
                Header::wrap(&fk, std::slice::from_ref(&r), age::Mixing::Refuse).expect("wrap")
            })
        });
        g.bench_function(format!("unwrap_{name}"), |b| {
            b.iter(|| {
                h.unwrap_file_key(std::slice::from_ref(id), &[], 22)
                    .expect("unwrap")
            })
        });
        g.bench_function(format!("parse_{name}"), |b| {
            b.iter(|| Header::parse(black_box(h.as_bytes())).expect("parse"))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = payload, headers
}
criterion_main!(benches);
