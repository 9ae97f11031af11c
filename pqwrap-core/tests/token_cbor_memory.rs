//! The token decoder's memory stays a small multiple of its input whatever counts the input
//! declares. Its own test binary: dhat counts every allocation of the process.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use pqwrap_core::token::{TokenError, TrustSet, Verifier};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Tag 18 (COSE_Sign1), then 16 nested arrays (`0x99`) or maps (`0xb9`) each declaring as
/// many elements as the bytes left allow, padded with zeros to `total` bytes.
fn nested(major: u8, total: usize) -> Vec<u8> {
    let mut b = vec![0xd2u8];
    for _ in 0..16 {
        let left = total - b.len() - 3;
        let n = if major == 0xb9 { left / 2 } else { left };
        b.push(major);
        b.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
        if major == 0xb9 {
            b.push(0x00); // key 0; its value is the next map
        }
    }
    b.resize(total, 0x00);
    b
}

#[test]
fn nested_containers_declaring_huge_counts_do_not_amplify_memory() {
    let _profiler = dhat::Profiler::builder().testing().build();
    // An empty trust set: the bytes are refused while parsing, before any key is needed.
    let verifier = Verifier::new(TrustSet::new(), "files.local");
    const TOTAL: usize = 16 * 1024;
    for major in [0x99u8, 0xb9] {
        let token = nested(major, TOTAL);
        let r = verifier.verify(&token, 0);
        assert!(
            matches!(r, Err(TokenError::Cbor(_) | TokenError::Structure(_))),
            "{major:#x}: {r:?}"
        );
    }
    let stats = dhat::HeapStats::get();
    eprintln!("peak heap: {} bytes", stats.max_bytes);
    // The input itself is 16 KiB; before the fix the array case peaked at 8.4 MB.
    dhat::assert!(
        stats.max_bytes < 8 * TOTAL,
        "peak heap {} bytes for {TOTAL}-byte inputs",
        stats.max_bytes
    );
}
