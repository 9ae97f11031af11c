//! The small text parsers that read files a user or another program hands pqwrap: identity
//! and recipient files (age Bech32 encodings), private JWK signing keys, revocation lists,
//! durations, and hash-chained audit logs. The first byte picks the parser. Nothing may
//! panic, and every recipient that parses re-encodes to a string that parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pqwrap_core::keys::{self, Recipient};
use pqwrap_core::token::{RevocationList, SigningKey, manifest::parse_duration};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 6 == 5 {
        // Audit logs are bytes (lines are checked before any UTF-8 decoding).
        let _ = pqwrap_core::audit::verify_reader(rest);
        return;
    }
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 6 {
        0 => {
            if let Ok(ids) = keys::parse_identities(s) {
                for id in ids {
                    let text = id.to_recipient().to_string();
                    let _: Recipient = text.parse().expect("own recipient parses");
                }
            }
        }
        1 => {
            if let Ok(rs) = keys::parse_recipients(s) {
                for r in rs {
                    let again: Recipient = r.to_string().parse().expect("re-parses");
                    assert_eq!(again, r);
                }
            }
        }
        2 => {
            let _ = SigningKey::from_jwk_private(s);
        }
        3 => {
            let _ = RevocationList::parse(s);
        }
        _ => {
            let _ = parse_duration("fuzz", s);
        }
    }
});
