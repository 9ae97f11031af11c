//! Fuzzes the native header parser: preamble, slot selection and body codec must never
//! panic, and a body that parses re-encodes to the same bytes (canonical codec).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pqwrap_core::envelope::{self, Header, HeaderBody};

fuzz_target!(|data: &[u8]| {
    let _ = envelope::is_native(data);
    let _ = envelope::inspect(data, Some(data.len() as u64));
    if let Ok(h) = Header::parse(data) {
        let enc = h.body().encode();
        let again = HeaderBody::parse(&enc).expect("an encoded body parses");
        assert_eq!(&again, h.body());
        assert_eq!(again.encode(), enc);
    }
    // The body codec on its own, without the slot framing.
    if let Ok(b) = HeaderBody::parse(data) {
        assert_eq!(b.encode(), data);
    }
    // And the streaming reader path.
    let _ = Header::read_from(&mut &data[..]);
});
