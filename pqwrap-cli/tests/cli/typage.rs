//! Interop with typage (npm `age-encryption` 0.3.1), a second implementation of age's
//! post-quantum `mlkem768x25519` recipients, pinned in tests/typage/package-lock.json and
//! installed by `.ci/run` (`npm ci`). Both directions, binary and armored; files written by
//! `pqwrap rewrap` (age files and the age entries of SOPS files); a typage hybrid identity in
//! `pqwrap decrypt`. Without Node (or without the installed package) the test says SKIPPED.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{
    code, encrypt, plaintext, pqwrap, run, skipped_banner, text, write_identities,
};
use pqwrap_core::keys::Identity;

fn typage_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/typage")
}

/// `node interop.mjs ARGS`, if Node and the package are there.
fn typage(args: &[&str]) -> Result<String, String> {
    let o = Command::new("node")
        .arg(typage_dir().join("interop.mjs"))
        .args(args)
        .current_dir(typage_dir())
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

fn available() -> bool {
    let why = if Command::new("node").arg("--version").output().is_err() {
        Some("node is not installed")
    } else if !typage_dir().join("node_modules/age-encryption").is_dir() {
        Some("age-encryption is not installed in pqwrap-cli/tests/typage")
    } else {
        None
    };
    if let Some(why) = why {
        skipped_banner(
            "typage interop",
            why,
            "npm ci --prefix pqwrap-cli/tests/typage, as .ci/run does",
        );
    }
    why.is_none()
}

/// A typage hybrid identity: its identity file and its recipient.
fn typage_keygen(dir: &Path) -> (PathBuf, String) {
    let out = typage(&["keygen"]).expect("typage keygen");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v["identity"].as_str().unwrap();
    assert!(id.starts_with("AGE-SECRET-KEY-PQ-1"), "{id}");
    let path = dir.join("typage.key");
    std::fs::write(&path, format!("{id}\n")).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (path, v["recipient"].as_str().unwrap().to_string())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn typage_and_pqwrap_open_each_others_post_quantum_files() {
    if !available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (ty_key, ty_rec) = typage_keygen(dir);
    assert!(ty_rec.starts_with("age1pq1"), "{ty_rec}");
    // Several 64 KiB chunks, and a short last one.
    let data = plaintext(7, 200_000);
    let input = dir.join("plain");
    std::fs::write(&input, &data).unwrap();

    for armor in [false, true] {
        // typage -> pqwrap, with typage's identity in pqwrap decrypt.
        let ct = dir.join(format!("typage-{armor}.age"));
        let mut a = vec!["encrypt", &ty_rec, s(&input), s(&ct)];
        if armor {
            a.push("armor");
        }
        typage(&a).unwrap();
        let out = dir.join(format!("typage-{armor}.out"));
        let o = run(pqwrap().args(["decrypt", "-i", s(&ty_key), "-o", s(&out), s(&ct)]));
        assert_eq!(code(&o), 0, "{}", text(&o));
        assert_eq!(std::fs::read(&out).unwrap(), data);

        // pqwrap -> typage, to typage's recipient.
        let ct = dir.join(format!("pqwrap-{armor}.age"));
        let mut cmd = pqwrap();
        cmd.args(["encrypt", "-r", &ty_rec, "-o", s(&ct)]);
        if armor {
            cmd.arg("-a");
        }
        let o = run(cmd.arg(&input));
        assert_eq!(code(&o), 0, "{}", text(&o));
        let out = dir.join(format!("pqwrap-{armor}.out"));
        typage(&["decrypt", s(&ty_key), s(&ct), s(&out)]).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), data);

        // A pqwrap identity opens in typage.
        let id = Identity::generate_hybrid().unwrap();
        let id_file = dir.join("pqwrap.key");
        write_identities(&id_file, &[&id]);
        let ct = dir.join(format!("pqwrap-own-{armor}.age"));
        encrypt(&ct, &[&id], &data, armor);
        let out = dir.join(format!("pqwrap-own-{armor}.out"));
        typage(&["decrypt", s(&id_file), s(&ct), s(&out)]).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), data);
    }
}

#[test]
fn what_pqwrap_rewrap_writes_opens_in_typage() {
    if !available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (ty_key, ty_rec) = typage_keygen(dir);
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let old = Identity::generate_x25519().unwrap();
    let old_file = dir.join("old.key");
    write_identities(&old_file, &[&old]);
    let data = plaintext(9, 70_000);
    encrypt(&tree.join("binary.age"), &[&old], &data, false);
    encrypt(&tree.join("armored.age"), &[&old], &data, true);
    let vectors = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../test-vectors/sops");
    std::fs::copy(
        vectors.join("yaml-age2-pgp.sops.yaml"),
        tree.join("s.sops.yaml"),
    )
    .unwrap();
    let mut cmd = pqwrap();
    cmd.args(["rewrap", "-i", s(&old_file), "-r", &ty_rec]);
    cmd.args(["-i", s(&vectors.join("keys/a.txt"))]);
    let o = run(cmd.arg(&tree));
    assert_eq!(code(&o), 0, "{}", text(&o));
    for f in ["binary.age", "armored.age"] {
        let out = dir.join(format!("{f}.out"));
        typage(&["decrypt", s(&ty_key), s(&tree.join(f)), s(&out)]).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), data, "{f}");
    }
    // The SOPS file's new age entry is an armored age file typage opens, to the data key that
    // sops's own entry in the original wraps (opened by pqwrap decrypt with the old key).
    let first_entry = |yaml: &str, to: &Path| {
        let begin = yaml.find("-----BEGIN AGE ENCRYPTED FILE-----").unwrap();
        let end = yaml.find("-----END AGE ENCRYPTED FILE-----").unwrap();
        let armor: String = yaml[begin..end + 32]
            .lines()
            .map(|l| format!("{}\n", l.trim()))
            .collect();
        std::fs::write(to, armor).unwrap();
    };
    let entry = dir.join("entry.age");
    first_entry(
        &std::fs::read_to_string(tree.join("s.sops.yaml")).unwrap(),
        &entry,
    );
    let out = dir.join("entry.out");
    typage(&["decrypt", s(&ty_key), s(&entry), s(&out)]).unwrap();
    let old_entry = dir.join("old-entry.age");
    first_entry(
        &std::fs::read_to_string(vectors.join("yaml-age2-pgp.sops.yaml")).unwrap(),
        &old_entry,
    );
    let old_out = dir.join("old-entry.out");
    let o = run(pqwrap().args([
        "decrypt",
        "-i",
        s(&vectors.join("keys/a.txt")),
        "-i",
        s(&vectors.join("keys/b.txt")),
        "-o",
        s(&old_out),
        s(&old_entry),
    ]));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let data_key = std::fs::read(&old_out).unwrap();
    assert_eq!(data_key.len(), 32);
    assert_eq!(std::fs::read(&out).unwrap(), data_key);
}
