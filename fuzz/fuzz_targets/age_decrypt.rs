//! Whole-file decryption with fixed identities: never panics, whatever the input.
//!
//! The identities and passphrase are the C2SP CCTV ones, so the CCTV files (decompressed)
//! make a seed corpus whose mutations reach the stanza, MAC and payload code; the scrypt
//! work factor is capped at the vectors' 10 so the fuzzer stays fast.
#![no_main]

use std::io::Read;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use pqwrap_core::age::{Decryptor, Passphrase};
use pqwrap_core::keys::Identity;

static IDS: LazyLock<Vec<Identity>> = LazyLock::new(|| {
    [
        "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0",
        "AGE-SECRET-KEY-PQ-1HZLGZUPT4ETPKDEV8HSGFDCYZ4E522W0A7PU2LHT8EH9W6YLNC3SW78XKG",
    ]
    .iter()
    .map(|s| s.parse().expect("valid CCTV identity"))
    .collect()
});

fuzz_target!(|data: &[u8]| {
    let Ok(dec) = Decryptor::new(data) else {
        return;
    };
    let pw = [Passphrase::new("password".into())];
    let Ok(key) = dec.header().unwrap_file_key(&IDS, &pw, 10) else {
        return;
    };
    if let Ok(mut r) = dec.decrypt_with_file_key(&key) {
        let mut sink = Vec::new();
        let _ = r.read_to_end(&mut sink);
    }
});
