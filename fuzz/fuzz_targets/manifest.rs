//! Manifest JSON (and quantum job JSON) parsing: must never panic; whatever parses must
//! validate, and check requests without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pqwrap_core::token::{Manifest, QuantumJob, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Manifest::from_json(s) {
        m.capabilities
            .validate()
            .expect("a parsed manifest validates");
        let c = &m.capabilities;
        for g in &c.file_access {
            assert!(c.check(&Request::Read(&g.path)).is_ok() || !g.mode.can_read());
            let _ = c.check(&Request::Write(&format!("{}/../x", g.path)));
        }
        let _ = c.check(&Request::Exec {
            command: s,
            interactive: true,
        });
        pqwrap_core::token::narrow::check_subset(c, c).expect("reflexive");
    }
    let _ = QuantumJob::from_json(s);
});
