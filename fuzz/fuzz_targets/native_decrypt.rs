//! Fuzzes native decryption with a fixed identity. Three modes, chosen by the first byte:
//! the input is a whole file; or a payload behind a valid header for that identity (so the
//! fuzzer reaches the STREAM chunking, truncation and trailing-data logic instead of stopping
//! at the header MAC); or byte edits of a valid file. Nothing may panic, and a payload the
//! fuzzer wrote must never authenticate.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pqwrap_core::envelope::{Encryptor, Header, decrypt_to};
use pqwrap_core::kem;
use pqwrap_core::keys::Identity;

fn identity() -> Identity {
    Identity::Hybrid(Box::new(kem::SecretKey::from_seed(&[7u8; 32])))
}

/// A valid file for `identity()` and its payload offset.
fn valid() -> &'static (Vec<u8>, usize) {
    static V: OnceLock<(Vec<u8>, usize)> = OnceLock::new();
    V.get_or_init(|| {
        let mut enc = Encryptor::new(Vec::new(), &[identity().to_recipient()]).unwrap();
        enc.write_all(&[0x5a; 70_000]).unwrap();
        let f = enc.finish().unwrap();
        let off = Header::parse(&f).unwrap().payload_offset() as usize;
        (f, off)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let id = [identity()];
    match mode % 3 {
        0 => {
            let _ = decrypt_to(rest, &id, std::io::sink());
        }
        1 => {
            let (f, off) = valid();
            let mut file = f[..*off].to_vec();
            file.extend_from_slice(rest);
            let forged = decrypt_to(&file[..], &id, std::io::sink()).is_ok();
            assert!(!forged || rest == &f[*off..], "fuzzer-written payload authenticated");
        }
        _ => {
            // Byte edits of a valid file: (24-bit offset, xor mask) quadruples.
            let (f, _) = valid();
            let mut file = f.clone();
            for q in rest.chunks_exact(4) {
                let off = u32::from_le_bytes([q[0], q[1], q[2], 0]) as usize % f.len();
                file[off] ^= q[3];
            }
            let _ = decrypt_to(&file[..], &id, std::io::sink());
        }
    }
});
