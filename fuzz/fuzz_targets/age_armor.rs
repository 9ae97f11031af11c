//! The strict armor decoder: never panics, and what decodes re-encodes to armor that
//! decodes to the same bytes.
#![no_main]

use std::io::{BufReader, Read, Write};

use libfuzzer_sys::fuzz_target;
use pqwrap_core::age::armor::{ArmoredReader, ArmoredWriter};

fuzz_target!(|data: &[u8]| {
    let mut decoded = Vec::new();
    if ArmoredReader::new(BufReader::new(data))
        .read_to_end(&mut decoded)
        .is_ok()
    {
        let mut w = ArmoredWriter::new(Vec::new()).expect("vec");
        w.write_all(&decoded).expect("vec");
        let armored = w.finish().expect("vec");
        let mut again = Vec::new();
        ArmoredReader::new(BufReader::new(&armored[..]))
            .read_to_end(&mut again)
            .expect("own armor decodes");
        assert_eq!(again, decoded);
    }
});
