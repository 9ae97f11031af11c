//! Status List Token verification on arbitrary bytes, and on the genuine list with the
//! input XORed over it: never panics, and nothing but the genuine list verifies.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pqwrap_core::token::status::{self, Bits, Status, StatusList, StatusListClaims};
use pqwrap_core::token::{Algorithm, Issuer, SigningKey, TrustSet};

const NOW: u64 = 1_780_000_000;

fn fixture() -> &'static (TrustSet, Vec<u8>) {
    static F: OnceLock<(TrustSet, Vec<u8>)> = OnceLock::new();
    F.get_or_init(|| {
        let key = SigningKey::from_seed(Algorithm::MlDsa44, &[3u8; 32]);
        let trust: TrustSet = [key.public_key().clone()].into_iter().collect();
        let mut l = StatusList::new(Bits::Two, 64).expect("list");
        l.set(5, Status::Invalid).expect("set");
        let mut c = StatusListClaims::new("urn:fuzz", NOW, l);
        c.exp = Some(NOW + 60);
        let t = Issuer::new(key).sign_status_list(&c).expect("sign");
        (trust, t)
    })
}

fuzz_target!(|data: &[u8]| {
    let (trust, genuine) = fixture();
    if let Ok(v) = status::verify(trust, data, NOW) {
        assert_eq!(data, genuine.as_slice(), "a forged status list verified");
        assert_eq!(v.claims().list.get(5).ok(), Some(Status::Invalid));
    }
    let mut edited = genuine.clone();
    for (i, b) in data.iter().enumerate() {
        if let Some(x) = edited.get_mut(i % genuine.len().max(1)) {
            *x ^= b;
        }
    }
    if status::verify(trust, &edited, NOW).is_ok() {
        assert_eq!(&edited, genuine, "an edited status list verified");
    }
});
