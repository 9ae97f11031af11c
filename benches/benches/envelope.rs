//! Native envelope benchmarks.
//!
//! - `payload/*`: encrypt/decrypt throughput (MiB/s) of the native AES-256-GCM STREAM
//!   envelope (whole `Encryptor`/`Decryptor`, header included) against an age-style
//!   ChaCha20-Poly1305 STREAM payload (64 KiB chunks, 11-byte counter + last-chunk flag
//!   nonces, as age v1) measured in the same run. `payload/native-header-only` is the fixed
//!   per-file cost (X-Wing encapsulation, key schedule, 20 KiB header) to subtract.
//! - `rewrap_in_place/{4KiB,1GiB}`: one in-place re-wrap (unwrap, first-chunk check, new
//!   stanza, two slot writes, two `sync_data`). The 1 GiB file is sparse beyond its first
//!   two chunks: a re-wrap reads the header area and the first chunk only, which is the point.
//!
//! Run: `cargo bench -p pqwrap-benches --bench envelope`.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{Read, Write};

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pqwrap_core::envelope::{Decryptor, Encryptor, rewrap_in_place};
use pqwrap_core::kem;
use pqwrap_core::keys::Identity;

const SIZE: usize = 16 << 20;
const CHUNK: usize = 65536;

fn id(seed: u8) -> Identity {
    Identity::Hybrid(Box::new(kem::SecretKey::from_seed(&[seed; 32])))
}

fn age_nonce(counter: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::from(n)
}

/// age v1 payload: ChaCha20-Poly1305, 64 KiB chunks, STREAM nonces. Writes to `out`.
fn age_stream_encrypt(key: &[u8; 32], pt: &[u8], out: &mut Vec<u8>) {
    let c = ChaCha20Poly1305::new(&(*key).into());
    let n = pt.len().div_ceil(CHUNK).max(1);
    let mut buf = Vec::with_capacity(CHUNK + 16);
    for (i, chunk) in pt.chunks(CHUNK).enumerate() {
        buf.clear();
        buf.extend_from_slice(chunk);
        let tag = c
            .encrypt_inout_detached(
                &age_nonce(i as u64, i + 1 == n),
                b"",
                buf.as_mut_slice().into(),
            )
            .unwrap();
        out.extend_from_slice(&buf);
        out.extend_from_slice(&tag);
    }
}

fn age_stream_decrypt(key: &[u8; 32], ct: &[u8], out: &mut [u8]) {
    let c = ChaCha20Poly1305::new(&(*key).into());
    let pieces: Vec<&[u8]> = ct.chunks(CHUNK + 16).collect();
    let mut buf = vec![0u8; CHUNK + 16];
    for (i, piece) in pieces.iter().enumerate() {
        let (body, tag) = piece.split_at(piece.len() - 16);
        let b = &mut buf[..body.len()];
        b.copy_from_slice(body);
        let mut t = [0u8; 16];
        t.copy_from_slice(tag);
        c.decrypt_inout_detached(
            &age_nonce(i as u64, i + 1 == pieces.len()),
            b"",
            b.into(),
            &t.into(),
        )
        .unwrap();
        out[i * CHUNK..i * CHUNK + b.len()].copy_from_slice(b);
    }
}

fn payload(c: &mut Criterion) {
    let pt: Vec<u8> = (0..SIZE).map(|i| i as u8).collect();
    let a = id(1);
    let rs = [a.to_recipient()];
    let key = [7u8; 32];

    let mut g = c.benchmark_group("payload");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(SIZE as u64));

    let mut sink = Vec::with_capacity(SIZE + SIZE / 1000 + 65536);
    g.bench_function(BenchmarkId::new("encrypt", "native-aes256gcm"), |b| {
        b.iter(|| {
            sink.clear();
            let mut enc = Encryptor::new(&mut sink, &rs).unwrap();
            enc.write_all(&pt).unwrap();
            enc.finish().unwrap();
            black_box(sink.len());
        })
    });
    g.bench_function(BenchmarkId::new("encrypt", "age-chacha20poly1305"), |b| {
        b.iter(|| {
            sink.clear();
            age_stream_encrypt(&key, &pt, &mut sink);
            black_box(sink.len());
        })
    });

    let native_ct = {
        let mut enc = Encryptor::new(Vec::new(), &rs).unwrap();
        enc.write_all(&pt).unwrap();
        enc.finish().unwrap()
    };
    let mut age_ct = Vec::new();
    age_stream_encrypt(&key, &pt, &mut age_ct);
    let mut out = vec![0u8; SIZE];
    let ids = [a.clone()];
    g.bench_function(BenchmarkId::new("decrypt", "native-aes256gcm"), |b| {
        b.iter(|| {
            let mut dec = Decryptor::new(&native_ct[..], &ids).unwrap();
            dec.read_exact(&mut out).unwrap();
            assert_eq!(dec.read(&mut [0u8; 1]).unwrap(), 0);
            black_box(out[0]);
        })
    });
    g.bench_function(BenchmarkId::new("decrypt", "age-chacha20poly1305"), |b| {
        b.iter(|| {
            age_stream_decrypt(&key, &age_ct, &mut out);
            black_box(out[0]);
        })
    });
    g.finish();

    let mut h = c.benchmark_group("payload-fixed-cost");
    h.sample_size(20);
    h.bench_function("native-header-only", |b| {
        b.iter(|| {
            black_box(
                Encryptor::new(Vec::new(), &rs)
                    .unwrap()
                    .finish()
                    .unwrap()
                    .len(),
            )
        })
    });
    h.finish();
}

/// A native file of `len` bytes for identity `who`: a real 4 KiB file, or for large sizes
/// two real chunks and then a sparse extension to `len`.
fn make_file(len: u64, who: &Identity) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let path = dir.path().join("f.pqw");
    let pt_len = if len <= 4096 {
        len as usize
    } else {
        2 * CHUNK + 1
    };
    let mut enc = Encryptor::new(File::create(&path).unwrap(), &[who.to_recipient()]).unwrap();
    enc.write_all(&vec![0xA5; pt_len]).unwrap();
    let f = enc.finish().unwrap();
    if len > 4096 {
        f.set_len(len).unwrap();
    }
    f.sync_all().unwrap();
    (dir, path)
}

fn rewrap(c: &mut Criterion) {
    let (a, b) = (id(11), id(12));
    let mut g = c.benchmark_group("rewrap_in_place");
    g.sample_size(30);
    for (name, len) in [("4KiB", 4096u64), ("1GiB", 1u64 << 30)] {
        let (_dir, path) = make_file(len, &a);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let on_a = Cell::new(true);
        g.bench_function(name, |bch| {
            bch.iter(|| {
                // Alternate a -> b -> a, unwrapping with the current identity only, so every
                // iteration does the same work.
                let (from, to) = if on_a.get() { (&a, &b) } else { (&b, &a) };
                let out =
                    rewrap_in_place(&mut file, std::slice::from_ref(from), &[to.to_recipient()])
                        .unwrap();
                on_a.set(!on_a.get());
                black_box(out.bytes_written)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, payload, rewrap);
criterion_main!(benches);
