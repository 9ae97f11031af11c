//! The broker's policy parser on arbitrary text: never panics, every error names a line
//! inside the text, and an accepted policy's decisions never grant more than was asked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pqwrap_broker::policy::{Policy, SelfIds, intersect};
use pqwrap_core::token::narrow::check_subset;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ids = SelfIds { uid: 1000, gid: 1000 };
    match Policy::parse(text, ids) {
        Err(e) => assert!(e.line >= 1 && e.line <= text.lines().count().max(1) + 1, "{e}"),
        Ok(p) => {
            // Each rule's grant, narrowed against every other rule's, stays inside both.
            for a in &p.rules {
                for b in &p.rules {
                    let (c, _) = intersect(&a.grant, &b.grant);
                    assert!(check_subset(&c, &a.grant).is_ok() && check_subset(&c, &b.grant).is_ok());
                }
            }
        }
    }
});
