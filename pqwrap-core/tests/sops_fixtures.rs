//! SOPS files written by sops itself (test-vectors/sops, made by `make-fixtures.sh` with sops
//! 3.11.0 and GnuPG): every type parses, the data key opens with the fixtures' age keys, the
//! MAC verifies, and a re-wrap changes nothing but the age entries: the byte comparison below
//! cuts the age entries out of the old and the new file, by their text, and compares the rest.
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use pqwrap_core::keys::{Identity, Recipient, parse_identities};
use pqwrap_core::sops::{
    self, FileType, KeyKind, PgpEntries, Protection, SopsError, SopsFile, Targets,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../test-vectors/sops")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap()
}

fn key(name: &str) -> Identity {
    let text = std::fs::read_to_string(dir().join("keys").join(name)).unwrap();
    parse_identities(&text).unwrap().remove(0)
}

/// The fixture keys that open `name`.
fn keys_for(name: &str) -> Vec<Identity> {
    if name.contains("pq") {
        vec![key("pq.txt")]
    } else {
        old_keys()
    }
}

/// Every one of `groups` key groups to `new`, PGP entries kept.
fn all_to(new: &Identity, groups: usize) -> Targets {
    Targets {
        groups: vec![vec![new.to_recipient()]; groups],
        pgp: PgpEntries::Keep,
    }
}

fn old_keys() -> Vec<Identity> {
    ["a.txt", "b.txt", "c.txt"].iter().map(|k| key(k)).collect()
}

const ALL: &[(&str, FileType, usize)] = &[
    ("yaml-age2-pgp.sops.yaml", FileType::Yaml, 1),
    ("yaml-pq.sops.yaml", FileType::Yaml, 1),
    ("yaml-multidoc.sops.yaml", FileType::Yaml, 1),
    ("yaml-regex.sops.yaml", FileType::Yaml, 1),
    ("yaml-2groups.sops.yaml", FileType::Yaml, 2),
    ("yaml-3groups-pgp.sops.yaml", FileType::Yaml, 3),
    ("json-age2.sops.json", FileType::Json, 1),
    ("json-2groups.sops.json", FileType::Json, 2),
    ("dotenv-age2.sops.env", FileType::Dotenv, 1),
    ("dotenv-2groups.sops.env", FileType::Dotenv, 2),
    ("ini-age2.sops.ini", FileType::Ini, 1),
    ("ini-2groups.sops.ini", FileType::Ini, 2),
    ("binary-age2.sops.bin", FileType::Binary, 1),
];

/// The file without its age entries, cut out by their text: YAML lines under an `age:` key
/// (up to the next line indented no deeper than the key), the JSON array after `"age":`,
/// dotenv and INI lines of flattened age entries.
fn without_age_entries(bytes: &[u8], t: FileType) -> String {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    match t {
        FileType::Yaml => {
            let mut out = String::new();
            let mut skip: Option<usize> = None;
            for line in text.split_inclusive('\n') {
                let indent = line.len() - line.trim_start_matches([' ', '-']).len();
                if let Some(i) = skip {
                    if line.trim().is_empty() || indent > i {
                        continue;
                    }
                    skip = None;
                }
                let key = line.trim_start_matches([' ', '-']);
                if key.starts_with("age:") {
                    skip = Some(indent);
                    out.push_str(&line[..indent]);
                    out.push_str("age:<cut>\n");
                    continue;
                }
                out.push_str(line);
            }
            out
        }
        FileType::Json | FileType::Binary => {
            let mut out = String::new();
            let mut rest = text.as_str();
            while let Some(i) = rest.find("\"age\": ") {
                out.push_str(&rest[..i + 7]);
                let after = &rest[i + 7..];
                let end = if after.starts_with("null") {
                    4
                } else {
                    let mut depth = 0;
                    let mut end = 0;
                    for (j, c) in after.char_indices() {
                        match c {
                            '[' => depth += 1,
                            ']' => {
                                depth -= 1;
                                if depth == 0 {
                                    end = j + 1;
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                    end
                };
                out.push_str("<cut>");
                rest = &after[end..];
            }
            out.push_str(rest);
            out
        }
        _ => text
            .split_inclusive('\n')
            .filter(|l| !l.contains("age__list_"))
            .collect(),
    }
}

#[test]
fn every_fixture_parses_opens_and_verifies() {
    for (name, t, groups) in ALL {
        let bytes = fixture(name);
        let f = SopsFile::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(f.file_type(), *t, "{name}");
        assert_eq!(f.groups().len(), *groups, "{name}");
        let dk = f
            .data_key(&keys_for(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        f.verify_mac(&dk).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = match *name {
            "yaml-pq.sops.yaml" => Protection::PostQuantum,
            _ => Protection::Classical,
        };
        assert_eq!(f.protection(), expected, "{name}");
    }
}

#[test]
fn shamir_groups_open_with_any_two_of_three() {
    let bytes = fixture("yaml-3groups-pgp.sops.yaml");
    let f = SopsFile::parse(&bytes).unwrap();
    assert_eq!(f.threshold(), 2);
    for pair in [["a.txt", "b.txt"], ["b.txt", "c.txt"], ["a.txt", "c.txt"]] {
        let dk = f.data_key(&[key(pair[0]), key(pair[1])]).unwrap();
        f.verify_mac(&dk).unwrap();
    }
    assert!(matches!(
        f.data_key(&[key("a.txt")]),
        Err(SopsError::BelowThreshold {
            opened: 1,
            threshold: 2,
            groups: 3
        })
    ));
}

#[test]
fn rewrap_changes_only_the_age_entries() {
    let new = Identity::generate_hybrid().unwrap();
    for (name, t, groups) in ALL {
        let bytes = fixture(name);
        let f = SopsFile::parse(&bytes).unwrap();
        let dk = f.data_key(&keys_for(name)).unwrap();
        let targets = all_to(&new, *groups);
        let out = f
            .rewrap(&dk, &targets)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        out.verify(&out.bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            without_age_entries(&bytes, *t),
            without_age_entries(&out.bytes, *t),
            "{name}: bytes outside the age entries changed"
        );
        assert_ne!(out.bytes, bytes);
        let g = SopsFile::parse(&out.bytes).unwrap();
        assert!(g.has_shape(&targets), "{name}");
        // Every group opens with the new key alone, and the MAC still verifies.
        let dk2 = g
            .data_key(std::slice::from_ref(&new))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        g.verify_mac(&dk2).unwrap();
        // The old keys open nothing any more.
        if !name.contains("pq") {
            assert!(g.data_key(&old_keys()).is_err(), "{name}");
        }
        let expect = if name.contains("pgp") {
            Protection::Mixed
        } else {
            Protection::PostQuantum
        };
        assert_eq!(g.protection(), expect, "{name}");
    }
}

#[test]
fn remove_pgp_drops_pgp_entries_of_rewrapped_groups() {
    let new = Identity::generate_hybrid().unwrap();
    for (name, groups) in [
        ("yaml-age2-pgp.sops.yaml", 1),
        ("yaml-3groups-pgp.sops.yaml", 3),
    ] {
        let bytes = fixture(name);
        let f = SopsFile::parse(&bytes).unwrap();
        let dk = f.data_key(&old_keys()).unwrap();
        let targets = Targets {
            groups: vec![vec![new.to_recipient()]; groups],
            pgp: PgpEntries::Remove,
        };
        let out = f.rewrap(&dk, &targets).unwrap();
        out.verify(&out.bytes).unwrap();
        let text = String::from_utf8(out.bytes.clone()).unwrap();
        assert!(!text.contains("PGP MESSAGE"), "{name}");
        let g = SopsFile::parse(&out.bytes).unwrap();
        assert_eq!(g.protection(), Protection::PostQuantum, "{name}");
        g.verify_mac(&g.data_key(std::slice::from_ref(&new)).unwrap())
            .unwrap();
    }
}

#[test]
fn reencrypt_rotates_the_data_key() {
    let new = Identity::generate_hybrid().unwrap();
    for (name, t, groups) in ALL {
        if name.contains("pgp") {
            continue;
        }
        let bytes = fixture(name);
        let f = SopsFile::parse(&bytes).unwrap();
        let dk = f.data_key(&keys_for(name)).unwrap();
        let targets = all_to(&new, *groups);
        let out = f
            .reencrypt(&dk, &targets, "2030-01-02T03:04:05Z")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        out.verify(&out.bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let g = SopsFile::parse(&out.bytes).unwrap();
        assert_eq!(g.lastmodified(), "2030-01-02T03:04:05Z");
        let dk2 = g.data_key(std::slice::from_ref(&new)).unwrap();
        g.verify_mac(&dk2).unwrap();
        // The old data key opens none of the values now.
        assert!(g.verify_mac(&dk).is_err(), "{name}");
        let _ = t;
    }
    // PGP entries would still wrap the old key: refused unless removed.
    let bytes = fixture("yaml-age2-pgp.sops.yaml");
    let f = SopsFile::parse(&bytes).unwrap();
    let dk = f.data_key(&old_keys()).unwrap();
    let keep = Targets {
        groups: vec![vec![new.to_recipient()]],
        pgp: PgpEntries::Keep,
    };
    assert!(f.reencrypt(&dk, &keep, "2030-01-02T03:04:05Z").is_err());
}

#[test]
fn damaged_files_fail_clearly() {
    let bytes = fixture("yaml-age2-pgp.sops.yaml");
    let text = String::from_utf8(bytes.clone()).unwrap();
    let ids = old_keys();
    // Truncated inside the age entries.
    let cut = &bytes[..text.find("lastmodified").unwrap() - 200];
    assert!(SopsFile::parse(cut).is_err());
    // A value changed: the MAC no longer matches (or the value no longer decrypts).
    let i = text.find("password: ENC[AES256_GCM,data:").unwrap() + 30;
    let mut v = bytes.clone();
    v[i] = if v[i] == b'A' { b'B' } else { b'A' };
    let f = SopsFile::parse(&v).unwrap();
    let dk = f.data_key(&ids).unwrap();
    assert!(matches!(
        f.verify_mac(&dk),
        Err(SopsError::ValueDecrypt { .. })
    ));
    // A flipped byte in an age entry's `enc`.
    let j = text.find("-----BEGIN AGE ENCRYPTED FILE-----").unwrap() + 60;
    let mut e = bytes.clone();
    e[j] = if e[j] == b'A' { b'B' } else { b'A' };
    let f = SopsFile::parse(&e).unwrap();
    assert!(matches!(f.data_key(&ids), Err(SopsError::AgeEntry { .. })));
    // No `mac`.
    let no_mac: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("mac:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(matches!(
        SopsFile::parse(no_mac.as_bytes()),
        Err(SopsError::Metadata(_))
    ));
    // A duplicate key.
    let dup = format!("password: x\n{text}").replace("database:", "password: y\ndatabase:");
    assert!(matches!(
        SopsFile::parse(dup.as_bytes()),
        Err(SopsError::DuplicateKey { .. })
    ));
    // The MAC itself altered.
    let k = text.find("mac: ENC[AES256_GCM,data:").unwrap() + 26;
    let mut m = bytes.clone();
    m[k] = if m[k] == b'A' { b'B' } else { b'A' };
    let f = SopsFile::parse(&m).unwrap();
    let dk = f.data_key(&ids).unwrap();
    assert!(matches!(
        f.verify_mac(&dk),
        Err(SopsError::MacUndecryptable)
    ));
}

#[test]
fn new_recipients_that_do_not_fit_are_refused() {
    let bytes = fixture("yaml-2groups.sops.yaml");
    let f = SopsFile::parse(&bytes).unwrap();
    let dk = f.data_key(&old_keys()).unwrap();
    let r: Recipient = Identity::generate_hybrid().unwrap().to_recipient();
    let one = Targets {
        groups: vec![vec![r]],
        pgp: PgpEntries::Keep,
    };
    assert!(matches!(f.rewrap(&dk, &one), Err(SopsError::Plan(_))));
}

/// The metadata block re-indented as formatters leave it: two spaces, and (`indentless`)
/// sequences not indented under their key.
fn reformatted(yaml: &str, indentless: bool) -> String {
    let (values, meta) = yaml.split_at(yaml.find("\nsops:").unwrap() + 1);
    let mut out = values.to_string();
    for line in meta.split_inclusive('\n') {
        // sops's columns 4, 8 (dashes), 10 (keys after a dash), 12 (block content) become
        // 2, 4, 6, 8; indentless moves the dashes and what is under them back by 2 more.
        let old = line.len() - line.trim_start_matches(' ').len();
        let mut n = if old <= 8 { old / 2 } else { old - 4 };
        if indentless && old >= 8 {
            n -= 2;
        }
        out.push_str(&" ".repeat(n));
        out.push_str(line.trim_start_matches(' '));
    }
    out
}

/// The age list of a one-group YAML fixture in flow style, as JSON-like text.
fn flow_style(yaml: &str) -> String {
    let start = yaml.find("    age:\n").unwrap();
    let end = yaml.find("    lastmodified:").unwrap();
    let mut items = Vec::new();
    let mut rec = String::new();
    let mut armor = String::new();
    for line in yaml[start..end].lines().skip(1) {
        let t = line.trim();
        if let Some(r) = t.strip_prefix("- recipient: ") {
            rec = r.to_string();
        } else if t.starts_with("-----") || (!t.is_empty() && !t.starts_with("enc:")) {
            armor.push_str(t);
            armor.push_str("\\n");
            if t.starts_with("-----END") {
                items.push(format!("{{recipient: {rec}, enc: \"{armor}\"}}"));
                armor.clear();
            }
        }
    }
    format!(
        "{}    age: [{}]\n{}",
        &yaml[..start],
        items.join(", "),
        &yaml[end..]
    )
}

#[test]
fn reformatted_metadata_keeps_its_layout() {
    let base = String::from_utf8(fixture("yaml-age2-pgp.sops.yaml")).unwrap();
    let targets = Targets {
        groups: vec![vec![
            Identity::generate_hybrid().unwrap().to_recipient(),
            Identity::generate_hybrid().unwrap().to_recipient(),
        ]],
        pgp: PgpEntries::Keep,
    };
    let cases = [
        (reformatted(&base, false), "\n    - recipient: age1pq1"),
        (reformatted(&base, true), "\n  - recipient: age1pq1"),
        (flow_style(&base), "{\"recipient\": \"age1pq1"),
    ];
    for (text, marker) in cases {
        let f = SopsFile::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let dk = f.data_key(&old_keys()).unwrap();
        f.verify_mac(&dk).unwrap();
        let out = f.rewrap(&dk, &targets).unwrap();
        out.verify(&out.bytes).unwrap();
        let got = String::from_utf8(out.bytes.clone()).unwrap();
        assert_eq!(got.matches(marker).count(), 2, "{got}");
        assert_eq!(
            without_age_entries(text.as_bytes(), FileType::Yaml),
            without_age_entries(&out.bytes, FileType::Yaml)
        );
    }
}

/// A one-group file whose age and PGP entries are replaced by an AWS KMS entry.
pub fn kms_only(yaml: &str) -> String {
    let start = yaml.find("    age:\n").unwrap();
    let end = yaml.find("    lastmodified:").unwrap();
    let pgp = yaml.find("    pgp:\n").unwrap();
    let pgp_end = yaml.find("    unencrypted_suffix:").unwrap();
    let kms = "    kms:\n        - arn: arn:aws:kms:eu-west-1:111122223333:key/0000\n          created_at: \"2026-12-01T22:50:29Z\"\n          enc: AQICAHhJ\n          aws_profile: \"\"\n";
    format!(
        "{}{kms}{}{}",
        &yaml[..start],
        &yaml[end..pgp],
        &yaml[pgp_end..]
    )
}

#[test]
fn cloud_kms_only_files_are_told_apart() {
    let base = String::from_utf8(fixture("yaml-age2-pgp.sops.yaml")).unwrap();
    let text = kms_only(&base);
    let f = SopsFile::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(f.protection(), Protection::CloudKms);
    assert_eq!(f.groups()[0].len(), 1);
    assert!(matches!(
        f.data_key(&old_keys()),
        Err(SopsError::NoAgeEntry { .. })
    ));
}

/// Files from other projects' test suites (test-vectors/sops/public, see its README): written
/// by sops 3.5.0, 3.7.1 and 3.7.3, long before this code, with the age keys their projects
/// publish.
fn public(name: &str) -> Vec<u8> {
    std::fs::read(dir().join("public").join(name)).unwrap()
}

fn public_key(name: &str) -> Identity {
    let text = String::from_utf8(public(name)).unwrap();
    parse_identities(&text).unwrap().remove(0)
}

/// The age-wrapped public files, their type, the key that opens them, and what the file is
/// after a re-wrap that keeps PGP entries.
const PUBLIC_AGE: &[(&str, &str, Protection)] = &[
    // Two X25519 age entries and two PGP entries, sops 3.7.1 (`kms: []` and the like).
    (
        "sops-nix/secrets.yaml",
        "sops-nix/age-keys.txt",
        Protection::Mixed,
    ),
    // One X25519 age entry, an `int` value, a multi-line value, sops 3.7.1.
    (
        "helm-secrets/secrets.age.yaml",
        "helm-secrets/key.txt",
        Protection::PostQuantum,
    ),
];

#[test]
fn public_fixtures_open_and_rewrap_byte_exactly() {
    let new = Identity::generate_hybrid().unwrap();
    for (name, key, after) in PUBLIC_AGE {
        let bytes = public(name);
        assert_eq!(sops::detect(&bytes), Some(FileType::Yaml), "{name}");
        let f = SopsFile::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(f.protection(), Protection::Classical, "{name}");
        let dk = f
            .data_key(&[public_key(key)])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        f.verify_mac(&dk).unwrap_or_else(|e| panic!("{name}: {e}"));
        let targets = all_to(&new, 1);
        let out = f
            .rewrap(&dk, &targets)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        out.verify(&out.bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            without_age_entries(&bytes, FileType::Yaml),
            without_age_entries(&out.bytes, FileType::Yaml),
            "{name}: bytes outside the age entries changed"
        );
        let g = SopsFile::parse(&out.bytes).unwrap();
        assert_eq!(g.protection(), *after, "{name}");
        g.verify_mac(&g.data_key(std::slice::from_ref(&new)).unwrap())
            .unwrap();
        assert!(g.data_key(&[public_key(key)]).is_err(), "{name}");
    }
}

#[test]
fn public_pgp_only_fixtures_are_classical_and_do_not_open_with_age_keys() {
    let age = public_key("sops-nix/age-keys.txt");
    for (name, t) in [
        ("sops-nix/secrets.json", FileType::Json),
        ("sops-nix/secrets.bin", FileType::Binary),
        ("sops-nix/secrets.env", FileType::Dotenv),
        ("sops-nix/secrets.ini", FileType::Ini),
    ] {
        let bytes = public(name);
        assert_eq!(sops::detect(&bytes), Some(t), "{name}");
        let f = SopsFile::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(f.file_type(), t, "{name}");
        assert_eq!(f.protection(), Protection::Classical, "{name}");
        assert!(
            f.groups()[0].iter().all(|k| k.kind == KeyKind::Pgp),
            "{name}"
        );
        assert!(
            matches!(
                f.data_key(std::slice::from_ref(&age)),
                Err(SopsError::NoAgeEntry {
                    group: 1,
                    groups: 1
                })
            ),
            "{name}"
        );
    }
}
