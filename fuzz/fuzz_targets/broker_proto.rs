//! The broker's frame and body parser on arbitrary bytes: never panics, and whatever it
//! accepts encodes back to a frame it accepts again as the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pqwrap_broker::proto;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = proto::decode_request(data) {
        let again = proto::decode_request(&proto::encode_request(&r)).expect("re-encoded request");
        assert_eq!(again, r);
    }
    if let Ok(r) = proto::decode_response(data) {
        let again =
            proto::decode_response(&proto::encode_response(&r)).expect("re-encoded response");
        assert_eq!(again, r);
    }
    // The streaming reader agrees with the whole-frame decoder on the header.
    let mut rd = data;
    let _ = proto::read_request(&mut rd);
});
