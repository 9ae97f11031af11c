//! The age header parser: never panics; whatever parses re-serialises byte-identically,
//! and the streaming reader agrees with the slice parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pqwrap_core::age::Header;

fuzz_target!(|data: &[u8]| {
    let parsed = Header::parse(data);
    if let Ok((h, len)) = &parsed {
        assert_eq!(h.as_bytes(), &data[..*len]);
        assert_eq!(h.encode(), h.as_bytes());
        let (again, len2) = Header::parse(h.as_bytes()).expect("re-parses");
        assert_eq!(&again, h);
        assert_eq!(len2, *len);
    }
    let mut cursor = std::io::Cursor::new(data);
    let streamed = Header::read_from(&mut cursor, 1 << 16);
    if let (Ok((h, _)), Ok(s)) = (&parsed, &streamed) {
        assert_eq!(h, s);
    }
});
