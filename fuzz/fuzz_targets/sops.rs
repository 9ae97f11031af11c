//! SOPS files and `.sops.yaml` creation rules: `SopsFile::parse` (YAML, JSON, dotenv, INI,
//! binary) and `CreationRules::parse`. Nothing may panic; a file that parses parses the same as
//! its detected type; and when a seed's own age key opens a file whose MAC verifies, its
//! re-wrap to a post-quantum recipient verifies too (only the age entries change).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pqwrap_core::keys::{Identity, parse_identities};
use pqwrap_core::sops::config::CreationRules;
use pqwrap_core::sops::{PgpEntries, SopsFile, Targets};

/// The fixtures' key `a` (test-vectors/sops/keys/a.txt), which opens most seeds.
const SEED_KEY: &str = include_str!("../../test-vectors/sops/keys/a.txt");

fn keys() -> &'static (Vec<Identity>, Identity) {
    static K: OnceLock<(Vec<Identity>, Identity)> = OnceLock::new();
    K.get_or_init(|| {
        let ids = parse_identities(SEED_KEY).expect("the seed key parses");
        (ids, Identity::generate_hybrid().expect("keygen"))
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = CreationRules::parse(data).map(|r| r.recipients_for("a/b.yaml").map(<[_]>::len));
    let Ok(f) = SopsFile::parse(data) else {
        return;
    };
    let again = SopsFile::parse_as(data, f.file_type()).expect("parses as its own type");
    assert_eq!(again.groups(), f.groups());
    let _ = (f.protection(), f.threshold(), f.lastmodified());
    let (ids, new) = keys();
    let Ok(key) = f.data_key(ids) else {
        return;
    };
    if f.verify_mac(&key).is_err() {
        return;
    }
    let targets = Targets {
        groups: vec![vec![new.to_recipient()]; f.groups().len()],
        pgp: PgpEntries::Keep,
    };
    if let Ok(out) = f.rewrap(&key, &targets) {
        out.verify(&out.bytes).expect("a re-wrap verifies");
    }
});
