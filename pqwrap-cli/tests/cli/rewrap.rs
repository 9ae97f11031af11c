//! `pqwrap rewrap` and `pqwrap scan` end to end, on real age files made with real keys.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::common::{
    Keys, OldKeys, code, decrypt, encrypt, keys, native, native_open, plaintext, pqwrap, rec,
    report, run, text, write_identities,
};
use pqwrap_core::age::{self, Header};
use pqwrap_core::keys::Identity;

/// An older post-quantum key being rotated out, and its identity file `old-pq.key`.
fn old_pq_key(dir: &Path) -> (Identity, PathBuf) {
    let old_pq = Identity::generate_hybrid().unwrap();
    let file = dir.join("old-pq.key");
    write_identities(&file, &[&old_pq]);
    (old_pq, file)
}

/// The header and the payload (everything after the header) of a binary age file.
fn split(path: &Path) -> (Header, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let (h, n) = Header::parse(&bytes).unwrap();
    (h, bytes[n..].to_vec())
}

#[test]
fn rewrap_binary_and_armored_files_keeps_payload_and_metadata_then_is_idempotent() {
    let d = tempfile::tempdir().unwrap();
    let k = keys(d.path(), OldKeys::X25519);
    let arch = d.path().join("arch");
    std::fs::create_dir_all(arch.join("sub/deeper")).unwrap();
    let files = [
        ("a.age", 0usize, false),
        ("sub/b.age", 65_536, false),
        ("sub/deeper/c.age", 200_001, false),
        ("d.age.asc", 70_000, true),
        ("sub/e.age.asc", 10, true),
    ];
    for (i, (name, len, armored)) in files.iter().enumerate() {
        encrypt(
            &arch.join(name),
            &[&k.old],
            &plaintext(i as u64, *len),
            *armored,
        );
    }
    let c = arch.join("sub/deeper/c.age");
    std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o604)).unwrap();
    rustix::fs::setxattr(
        &c,
        "user.origin",
        b"scanner-7",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let old_payload = split(&c).1;
    let mtime_before = std::fs::metadata(&c).unwrap().mtime();
    std::fs::write(arch.join("notes.txt"), b"plain").unwrap();

    let rep = d.path().join("r.jsonl");
    let o = run(pqwrap()
        .args(["rewrap", "-j", "2", "-i"])
        .arg(&k.old_file)
        .args(["-r", &k.new_pub, "--report"])
        .arg(&rep)
        .arg(&arch));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let recs = report(&rep);
    for (i, (name, len, armored)) in files.iter().enumerate() {
        let p = arch.join(name);
        assert_eq!(
            decrypt(&p, &k.new).unwrap(),
            plaintext(i as u64, *len),
            "{name}"
        );
        assert!(
            matches!(decrypt(&p, &k.old), Err(age::AgeError::NoMatch)),
            "{name}"
        );
        let is_armored = std::fs::read(&p).unwrap().starts_with(b"-----BEGIN AGE");
        assert_eq!(is_armored, *armored, "{name}: armor kept");
        let r = rec(&recs, name);
        assert_eq!(r["outcome"], "rewrapped");
        assert_eq!(r["old_stanzas"], serde_json::json!(["X25519"]));
        assert_eq!(r["new_stanzas"], serde_json::json!(["mlkem768x25519"]));
    }
    // Payload bytes unchanged; header only mlkem768x25519; metadata carried.
    let (h, payload) = split(&c);
    assert_eq!(payload, old_payload);
    assert_eq!(h.stanza_types(), vec!["mlkem768x25519"]);
    let m = std::fs::metadata(&c).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o604);
    assert_eq!(m.mtime(), mtime_before);
    let mut v = [0u8; 32];
    let n = rustix::fs::getxattr(&c, "user.origin", &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"scanner-7");
    assert_eq!(rec(&recs, "notes.txt")["reason"], "not_encrypted");

    // Second run, old identity only: the files look done, but nothing given can verify
    // it, so they are not counted as done (exit 1: the old key must not be retired yet).
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&k.old_file)
        .args(["-r", &k.new_pub])
        .arg(&arch));
    assert_eq!(code(&o), 1, "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("unverified 5") && t.contains("not counted as done"),
        "{t}"
    );
    assert!(
        t.contains("none of the given identities opened any file"),
        "{t}"
    );
    // With the new identity too: verified as done.
    let rep2 = d.path().join("r2.jsonl");
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&k.old_file)
        .arg("-i")
        .arg(&k.new_file)
        .args(["-r", &k.new_pub, "--report"])
        .arg(&rep2)
        .arg(&arch));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let r = rec(&report(&rep2), "c.age").clone();
    assert_eq!(
        r["outcome"], "already_done",
        "verified with the new identity: {r}"
    );
    assert!(text(&o).contains("already done  5"), "{}", text(&o));
    assert_eq!(split(&c).1, old_payload);
}

#[test]
fn dry_run_reports_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let k = keys(d.path(), OldKeys::X25519);
    let f = d.path().join("x.age");
    encrypt(&f, &[&k.old], b"hello", false);
    let before = std::fs::read(&f).unwrap();
    let ino = std::fs::metadata(&f).unwrap().ino();
    let rep = d.path().join("r.jsonl");
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&k.old_file)
        .args(["-r", &k.new_pub, "--dry-run", "--report"])
        .arg(&rep)
        .arg(&f));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("would re-wrap 1"), "{}", text(&o));
    assert_eq!(rec(&report(&rep), "x.age")["outcome"], "would_rewrap");
    assert_eq!(std::fs::read(&f).unwrap(), before);
    assert_eq!(std::fs::metadata(&f).unwrap().ino(), ino);
}

#[test]
fn failures_exit_1_and_leave_files_alone() {
    let d = tempfile::tempdir().unwrap();
    let k = keys(d.path(), OldKeys::X25519);
    let stranger = Identity::generate_x25519().unwrap();
    let arch = d.path().join("arch");
    std::fs::create_dir(&arch).unwrap();
    // Not for our key.
    encrypt(&arch.join("foreign.age"), &[&stranger], b"not ours", false);
    // Hard-linked.
    encrypt(&arch.join("linked.age"), &[&k.old], b"linked", false);
    std::fs::hard_link(arch.join("linked.age"), arch.join("link2.age")).unwrap();
    // Damaged in its second chunk: found only with --verify-payload.
    let big = arch.join("damaged.age");
    encrypt(&big, &[&k.old], &plaintext(9, 150_000), false);
    let mut bytes = std::fs::read(&big).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 1;
    std::fs::write(&big, &bytes).unwrap();
    // Damaged in its first chunk: always found.
    let small = arch.join("damaged-first.age");
    encrypt(&small, &[&k.old], b"short", false);
    let mut b2 = std::fs::read(&small).unwrap();
    let m = b2.len();
    b2[m - 3] ^= 1;
    std::fs::write(&small, &b2).unwrap();
    // A good one.
    encrypt(&arch.join("good.age"), &[&k.old], b"fine", false);
    let snapshot = |p: &str| std::fs::read(arch.join(p)).unwrap();
    let before: Vec<_> = [
        "foreign.age",
        "linked.age",
        "damaged.age",
        "damaged-first.age",
    ]
    .iter()
    .map(|p| snapshot(p))
    .collect();

    let rep = d.path().join("r.jsonl");
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&k.old_file)
        .args(["-r", &k.new_pub, "--verify-payload", "--report"])
        .arg(&rep)
        .arg(&arch));
    assert_eq!(code(&o), 1, "{}", text(&o));
    let recs = report(&rep);
    assert_eq!(rec(&recs, "foreign.age")["reason"], "no_identity");
    let l = rec(&recs, "/linked.age");
    assert_eq!(l["reason"], "hard_linked");
    assert!(l["error"].as_str().unwrap().contains("old header"), "{l}");
    assert_eq!(rec(&recs, "/damaged.age")["reason"], "corrupt");
    assert_eq!(rec(&recs, "damaged-first.age")["reason"], "corrupt");
    assert_eq!(rec(&recs, "good.age")["outcome"], "rewrapped");
    let after: Vec<_> = [
        "foreign.age",
        "linked.age",
        "damaged.age",
        "damaged-first.age",
    ]
    .iter()
    .map(|p| snapshot(p))
    .collect();
    assert_eq!(before, after);
    let t = text(&o);
    assert!(t.contains("failed") && t.contains("hard-linked"), "{t}");

    // Without --verify-payload the damage past the first chunk is not looked for.
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&k.old_file)
        .args(["-r", &k.new_pub])
        .arg(&big));
    assert_eq!(code(&o), 0, "{}", text(&o));
}

#[test]
fn usage_errors_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let k = keys(d.path(), OldKeys::X25519);
    let f = d.path().join("x.age");
    encrypt(&f, &[&k.old], b"hello", false);
    let classical = k.old.to_recipient().to_string();
    // Classical recipient without --allow-classical.
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&k.old_file)
        .args(["-r", &classical])
        .arg(&f));
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("--allow-classical"));
    // No recipient at all.
    let o = run(pqwrap().arg("rewrap").arg("-i").arg(&k.old_file).arg(&f));
    assert_eq!(code(&o), 2, "{}", text(&o));
    // A path that does not exist.
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&k.old_file)
        .args(["-r", &k.new_pub])
        .arg(d.path().join("missing")));
    assert_eq!(code(&o), 2, "{}", text(&o));
    // No identity.
    let o = run(pqwrap().arg("rewrap").args(["-r", &k.new_pub]).arg(&f));
    assert_eq!(code(&o), 2, "{}", text(&o));
    // With --allow-classical and both kinds: refused by the mixing rule? No: allowed, mixed.
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&k.old_file)
        .args(["-r", &classical, "-r", &k.new_pub, "--allow-classical"])
        .arg(&f));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(split(&f).0.stanza_types().len(), 2);
}

#[test]
fn reencrypt_changes_the_file_key_and_keeps_the_plaintext() {
    let d = tempfile::tempdir().unwrap();
    let k = keys(d.path(), OldKeys::X25519);
    let f = d.path().join("x.age");
    let a = d.path().join("y.age.asc");
    let data = plaintext(3, 140_000);
    encrypt(&f, &[&k.old], &data, false);
    encrypt(&a, &[&k.old], &data, true);
    let old_payload = split(&f).1;
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&k.old_file)
        .args(["-r", &k.new_pub, "--reencrypt", "--verify-payload"])
        .arg(&f)
        .arg(&a));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let new_payload = split(&f).1;
    assert_eq!(new_payload.len(), old_payload.len());
    assert_ne!(new_payload[..16], old_payload[..16], "fresh nonce");
    assert_ne!(new_payload[16..64], old_payload[16..64], "fresh key");
    assert_eq!(decrypt(&f, &k.new).unwrap(), data);
    assert_eq!(decrypt(&a, &k.new).unwrap(), data);
    assert!(std::fs::read(&a).unwrap().starts_with(b"-----BEGIN AGE"));
    assert!(decrypt(&f, &k.old).is_err());
}

#[test]
fn scan_counts_by_protection_without_keys() {
    let d = tempfile::tempdir().unwrap();
    let k = keys(d.path(), OldKeys::X25519);
    let arch = d.path().join("arch");
    std::fs::create_dir(&arch).unwrap();
    encrypt(&arch.join("c1.age"), &[&k.old], &plaintext(1, 1000), false);
    encrypt(&arch.join("c2.age.asc"), &[&k.old], &plaintext(2, 10), true);
    encrypt(&arch.join("pq.age"), &[&k.new], &plaintext(3, 100), false);
    encrypt(
        &arch.join("mixed.age"),
        &[&k.old, &k.new],
        &plaintext(4, 100),
        false,
    );
    std::fs::write(arch.join("plain"), b"hello").unwrap();
    std::fs::write(
        arch.join("broken.age"),
        b"age-encryption.org/v1\n-> X25519 !!\n",
    )
    .unwrap();
    let o = run(pqwrap().args(["scan", "--json"]).arg(&arch));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["total"]["files"], 6);
    assert_eq!(j["by_protection"]["classical"]["files"], 2);
    assert_eq!(j["by_protection"]["post_quantum"]["files"], 1);
    assert_eq!(j["by_protection"]["mixed"]["files"], 1);
    assert_eq!(j["by_protection"]["unknown"]["files"], 1);
    assert_eq!(j["by_protection"]["not_encrypted"]["files"], 1);
    assert_eq!(j["by_protection"]["not_encrypted"]["bytes"], 5);
    assert_eq!(j["to_rewrap"]["files"], 3);
    let o = run(pqwrap().arg("scan").arg(&arch));
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(
        t.contains("age-armored") && t.contains("classical only"),
        "{t}"
    );
    assert!(t.contains("to re-wrap (classical or mixed): 3"), "{t}");
}

#[test]
fn help_says_when_rewrapping_is_not_enough() {
    let o = run(pqwrap().args(["rewrap", "--help"]));
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("WHEN IS RE-WRAPPING ENOUGH?"), "{t}");
    assert!(t.contains("--reencrypt"));
    assert!(t.contains("harvest now, decrypt later"));
}

#[test]
fn native_files_are_rewrapped_in_place_keeping_inode_links_and_times() {
    let d = tempfile::tempdir().unwrap();
    let k = keys(d.path(), OldKeys::X25519);
    let (old_pq, old_pq_file) = old_pq_key(d.path());
    let arch = d.path().join("arch");
    std::fs::create_dir(&arch).unwrap();
    let f = arch.join("big.pqw");
    let data = plaintext(5, 300_000);
    native(&f, &[&old_pq], &data);
    std::fs::hard_link(&f, arch.join("other-name.pqw")).unwrap();
    let past = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 1_500_000_000,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 1_500_000_000,
            tv_nsec: 7,
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, &f, &past, rustix::fs::AtFlags::empty()).unwrap();
    let before = std::fs::metadata(&f).unwrap();
    let payload_before = std::fs::read(&f).unwrap()[before.len() as usize - 1000..].to_vec();

    let rep = d.path().join("r.jsonl");
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&old_pq_file)
        .args(["-r", &k.new_pub, "--report"])
        .arg(&rep)
        .arg(&arch));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let after = std::fs::metadata(&f).unwrap();
    assert_eq!(after.ino(), before.ino(), "same inode");
    assert_eq!(after.nlink(), 2, "hard link kept");
    assert_eq!((after.mtime(), after.mtime_nsec()), (1_500_000_000, 7));
    assert_eq!(native_open(&f, &k.new).unwrap(), data);
    assert_eq!(
        native_open(&arch.join("other-name.pqw"), &k.new).unwrap(),
        data
    );
    assert!(native_open(&f, &old_pq).is_err(), "old wrapping wiped");
    let bytes = std::fs::read(&f).unwrap();
    assert_eq!(
        bytes[bytes.len() - 1000..],
        payload_before[..],
        "payload untouched"
    );
    let recs = report(&rep);
    // Both names are the same inode: one re-wrap; the other name is then done by this run.
    let outcomes: Vec<_> = recs
        .iter()
        .map(|r| {
            r["reason"]
                .as_str()
                .unwrap_or(r["outcome"].as_str().unwrap())
        })
        .collect();
    assert!(
        outcomes.contains(&"rewrapped") && outcomes.contains(&"already_done"),
        "{recs:?}"
    );
    let r = recs.iter().find(|r| r["outcome"] == "rewrapped").unwrap();
    assert_eq!(r["format"], "pqwrap");
    assert_eq!(r["old_stanzas"], serde_json::json!(["xwing"]));

    // A second run with the new identity: verified done, nothing written.
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&old_pq_file)
        .arg("-i")
        .arg(&k.new_file)
        .args(["-r", &k.new_pub])
        .arg(&arch));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("already done  2"), "{}", text(&o));

    // Scan sees it as post-quantum.
    let o = run(pqwrap().args(["scan", "--json"]).arg(&arch));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["rows"][0]["format"], "pqwrap");
    assert_eq!(j["by_protection"]["post_quantum"]["files"], 2);
}

#[test]
fn native_reencrypt_and_verify_payload() {
    let d = tempfile::tempdir().unwrap();
    let k = keys(d.path(), OldKeys::X25519);
    let (old_pq, old_pq_file) = old_pq_key(d.path());
    let f = d.path().join("x.pqw");
    let data = plaintext(8, 200_000);
    native(&f, &[&old_pq], &data);
    // Damage past the first chunk: only --verify-payload sees it; the file stays as it was.
    let bad = d.path().join("bad.pqw");
    native(&bad, &[&old_pq], &data);
    let mut b = std::fs::read(&bad).unwrap();
    let n = b.len();
    b[n - 50] ^= 1;
    std::fs::write(&bad, &b).unwrap();
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&old_pq_file)
        .arg("-i")
        .arg(&k.new_file)
        .args(["-r", &k.new_pub, "--reencrypt", "--verify-payload"])
        .arg(&f)
        .arg(&bad));
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert_eq!(std::fs::read(&bad).unwrap(), b);
    assert_eq!(native_open(&f, &k.new).unwrap(), data);
    assert!(native_open(&f, &old_pq).is_err());
}

#[test]
fn audit_log_has_one_verified_line_per_rewrapped_file() {
    let d = tempfile::tempdir().unwrap();
    let k = keys(d.path(), OldKeys::X25519);
    let old_pq = Identity::generate_hybrid().unwrap();
    let ids = d.path().join("ids.key");
    write_identities(&ids, &[&k.old, &old_pq]);
    let arch = d.path().join("arch");
    std::fs::create_dir(&arch).unwrap();
    encrypt(&arch.join("a.age"), &[&k.old], b"one", false);
    encrypt(&arch.join("b.age.asc"), &[&k.old], b"two", true);
    native(&arch.join("c.pqw"), &[&old_pq], b"three");
    let old_header = split(&arch.join("a.age")).0;
    let log = d.path().join("audit.jsonl");
    let dry = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&ids)
        .args(["-r", &k.new_pub, "--dry-run", "--audit-log"])
        .arg(&log)
        .arg(&arch));
    assert_eq!(code(&dry), 0, "{}", text(&dry));
    assert!(!log.exists(), "a dry run writes no audit line");
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&ids)
        .args(["-r", &k.new_pub, "--audit-log"])
        .arg(&log)
        .arg(&arch));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v = run(pqwrap().args(["audit", "verify"]).arg(&log));
    assert_eq!(code(&v), 0, "{}", text(&v));
    assert!(
        String::from_utf8_lossy(&v.stdout).starts_with("ok: 3 lines"),
        "{}",
        text(&v)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let a = lines
        .iter()
        .map(|l| &l["record"])
        .find(|r| r["path"].as_str().unwrap().ends_with("a.age"))
        .unwrap();
    assert_eq!(a["event"], "file.rewrap");
    let sha = |b: &[u8]| {
        use sha2::Digest;
        sha2::Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    assert_eq!(a["old_header_sha256"], sha(old_header.as_bytes()));
    assert_eq!(
        a["new_header_sha256"],
        sha(split(&arch.join("a.age")).0.as_bytes())
    );
    assert_eq!(a["old_stanzas"], serde_json::json!(["X25519"]));
    let c = lines
        .iter()
        .map(|l| &l["record"])
        .find(|r| r["path"].as_str().unwrap().ends_with("c.pqw"))
        .unwrap();
    assert_eq!(c["format"], "pqwrap");
    assert_ne!(c["old_header_sha256"], c["new_header_sha256"]);
    assert!(c["new_header_sha256"].is_string());
    // A second run (with the new identity, to verify what is done) adds nothing.
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&ids)
        .arg("-i")
        .arg(&k.new_file)
        .args(["-r", &k.new_pub, "--audit-log"])
        .arg(&log)
        .arg(&arch));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v = run(pqwrap().args(["audit", "verify"]).arg(&log));
    assert!(
        String::from_utf8_lossy(&v.stdout).starts_with("ok: 3 lines"),
        "{}",
        text(&v)
    );
}

#[test]
fn demo_builds_scans_rewraps_and_checks() {
    let d = tempfile::tempdir().unwrap();
    let o = run(pqwrap()
        .args(["demo", "--files", "60", "--dir"])
        .arg(d.path()));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(text(&o).contains("re-wrapped    68"), "{}", text(&o));
    assert!(t.contains("to re-wrap (classical or mixed): 63"), "{t}");
    assert!(t.contains("to re-wrap (classical or mixed): 0 "), "{t}");
    assert!(
        t.contains("same contents, and the old keys no longer open them"),
        "{t}"
    );
    let root = std::fs::read_dir(d.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let v = run(pqwrap()
        .args(["audit", "verify"])
        .arg(root.join("audit.jsonl")));
    assert_eq!(code(&v), 0, "{}", text(&v));
    assert!(
        String::from_utf8_lossy(&v.stdout).starts_with("ok: 68 lines"),
        "{}",
        text(&v)
    );
}

#[test]
fn target_shaped_files_the_target_identity_does_not_open_fail_instead_of_unverified() {
    // Files wrapped to somebody else's post-quantum key look like re-wrapped ones (one
    // mlkem768x25519 / xwing stanza). Without the target's identity that is ambiguous (failed,
    // "unverified": never counted as done); with it, it is not: a file wrapped to the target
    // would open.
    let d = tempfile::tempdir().unwrap();
    let k = keys(d.path(), OldKeys::X25519);
    let stranger = Identity::generate_hybrid().unwrap();
    let arch = d.path().join("arch");
    std::fs::create_dir(&arch).unwrap();
    encrypt(&arch.join("other.age"), &[&stranger], b"not ours", false);
    native(&arch.join("other.pqw"), &[&stranger], b"not ours either");
    let before = [
        std::fs::read(arch.join("other.age")).unwrap(),
        std::fs::read(arch.join("other.pqw")).unwrap(),
    ];
    let rewrap = |with_target: bool, rep: &Path| {
        let mut c = pqwrap();
        c.arg("rewrap").arg("-i").arg(&k.old_file);
        if with_target {
            c.arg("-i").arg(&k.new_file);
        }
        run(c.args(["-r", &k.new_pub, "--report"]).arg(rep).arg(&arch))
    };
    let rep = d.path().join("r1.jsonl");
    let o = rewrap(false, &rep);
    assert_eq!(code(&o), 1, "{}", text(&o));
    for name in ["other.age", "other.pqw"] {
        let r = rec(&report(&rep), name).clone();
        assert_eq!(
            (r["outcome"].as_str(), r["reason"].as_str()),
            (Some("failed"), Some("unverified")),
            "{r}"
        );
    }
    let rep = d.path().join("r2.jsonl");
    let o = rewrap(true, &rep);
    assert_eq!(code(&o), 1, "{}", text(&o));
    for name in ["other.age", "other.pqw"] {
        let r = rec(&report(&rep), name).clone();
        assert_eq!(
            (r["outcome"].as_str(), r["reason"].as_str()),
            (Some("failed"), Some("no_identity")),
            "{r}"
        );
        assert!(
            text(&o).contains(&format!("{name}: failed")),
            "{}",
            text(&o)
        );
    }
    assert_eq!(std::fs::read(arch.join("other.age")).unwrap(), before[0]);
    assert_eq!(std::fs::read(arch.join("other.pqw")).unwrap(), before[1]);
}

#[test]
fn native_files_needing_a_larger_header_are_rewritten_through_the_jobs_own_commit() {
    let d = tempfile::tempdir().unwrap();
    let (old_pq, old_file) = old_pq_key(d.path());
    // Seven post-quantum targets: one more than a default native slot holds.
    let targets: Vec<Identity> = (0..7)
        .map(|_| Identity::generate_hybrid().unwrap())
        .collect();
    let rfile = d.path().join("targets.txt");
    let lines: Vec<String> = targets
        .iter()
        .map(|t| t.to_recipient().to_string())
        .collect();
    std::fs::write(&rfile, lines.join("\n") + "\n").unwrap();
    let last_file = d.path().join("last.key");
    write_identities(&last_file, &[&targets[6]]);

    let arch = d.path().join("arch");
    std::fs::create_dir(&arch).unwrap();
    let f = arch.join("grow.pqw");
    let data = plaintext(9, 200_000);
    native(&f, &[&old_pq], &data);
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    rustix::fs::setxattr(&f, "user.kept", b"yes", rustix::fs::XattrFlags::empty()).unwrap();
    let linked = arch.join("linked.pqw");
    native(&linked, &[&old_pq], b"two names");
    std::fs::hard_link(&linked, d.path().join("elsewhere.pqw")).unwrap();
    let linked_before = std::fs::read(&linked).unwrap();
    let before = std::fs::metadata(&f).unwrap();
    let payload_before = std::fs::read(&f).unwrap()[before.len() as usize - 5000..].to_vec();

    let rep = d.path().join("r.jsonl");
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&old_file)
        .arg("-R")
        .arg(&rfile)
        .arg("--report")
        .arg(&rep)
        .arg(&arch));
    // The hard-linked one cannot be replaced without leaving its old header behind.
    assert_eq!(code(&o), 1, "{}", text(&o));
    let recs = report(&rep);
    let r = rec(&recs, "grow.pqw");
    assert_eq!(r["outcome"], "rewrapped", "{r}");
    assert_eq!(r["new_stanzas"].as_array().unwrap().len(), 7);
    let r = rec(&recs, "linked.pqw");
    assert_eq!(r["reason"], "hard_linked", "{r}");
    assert_eq!(std::fs::read(&linked).unwrap(), linked_before);

    let after = std::fs::metadata(&f).unwrap();
    assert_ne!(
        after.ino(),
        before.ino(),
        "a new file with a larger header area"
    );
    assert_eq!(after.mode() & 0o7777, 0o640);
    let mut v = [0u8; 8];
    let n = rustix::fs::getxattr(&f, "user.kept", &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"yes");
    let bytes = std::fs::read(&f).unwrap();
    assert_eq!(
        bytes[bytes.len() - 5000..],
        payload_before[..],
        "payload copied"
    );
    for t in &targets {
        assert_eq!(native_open(&f, t).unwrap(), data);
    }
    assert!(native_open(&f, &old_pq).is_err());
    // No temporary of any kind is left (the job's, or the envelope module's own).
    let names: Vec<_> = std::fs::read_dir(&arch)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // Done, verifiably, on the next run; the larger area now takes the header in place.
    let o = run(pqwrap()
        .arg("rewrap")
        .arg("-i")
        .arg(&old_file)
        .arg("-i")
        .arg(&last_file)
        .arg("-R")
        .arg(&rfile)
        .arg(&f));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("already done  1"), "{}", text(&o));
}

#[test]
fn a_rerun_finishes_a_native_rewrap_interrupted_before_its_wipe() {
    use pqwrap_core::envelope;
    let d = tempfile::tempdir().unwrap();
    let k = keys(d.path(), OldKeys::X25519);
    let (old_pq, old_file) = old_pq_key(d.path());
    let arch = d.path().join("arch");
    std::fs::create_dir(&arch).unwrap();
    let f = arch.join("half.pqw");
    native(&f, &[&old_pq], b"half done");
    let before = std::fs::read(&f).unwrap();
    let h = envelope::Header::parse(&before).unwrap();
    let at = h.preamble().slot_offset(h.active_slot()) as usize;
    let old_slot = at..at + h.preamble().slot_size() as usize;
    let rewrap = |rep: &Path| {
        run(pqwrap()
            .arg("rewrap")
            .arg("-i")
            .arg(&old_file)
            .arg("-i")
            .arg(&k.new_file)
            .arg("-r")
            .arg(&k.new_pub)
            .arg("--report")
            .arg(rep)
            .arg(&arch))
    };
    let o = rewrap(&d.path().join("1.jsonl"));
    assert_eq!(code(&o), 0, "{}", text(&o));
    // The job "died" after syncing the new slot, before wiping the old one.
    let mut torn = std::fs::read(&f).unwrap();
    torn[old_slot.clone()].copy_from_slice(&before[old_slot.clone()]);
    std::fs::write(&f, &torn).unwrap();

    let rep = d.path().join("2.jsonl");
    let o = rewrap(&rep);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let r = rec(&report(&rep), "half.pqw").clone();
    assert_eq!(r["outcome"], "rewrapped", "{r}");
    assert!(
        r["note"].as_str().unwrap_or("").contains("interrupted"),
        "{r}"
    );
    let now = std::fs::read(&f).unwrap();
    assert!(now[old_slot].iter().all(|&b| b == 0), "old wrapping wiped");
    assert_eq!(native_open(&f, &k.new).unwrap(), b"half done");

    let rep = d.path().join("3.jsonl");
    let o = rewrap(&rep);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rec(&report(&rep), "half.pqw")["outcome"], "already_done");
}

/// A large `-j` under a low descriptor limit: workers and batches are cut to fit, so files
/// are not failed with "Too many open files" (before: 2,783 of 3,000 failed at `ulimit -n
/// 120`, `-j 64`).
#[test]
fn a_low_descriptor_limit_slows_the_job_instead_of_failing_files() {
    let d = tempfile::tempdir().unwrap();
    let k = keys(d.path(), OldKeys::X25519);
    let arch = d.path().join("arch");
    let one = crate::common::age_bytes(&[&k.old], b"x", false);
    for i in 0..300 {
        let dir = arch.join(format!("d{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f.age"), &one).unwrap();
    }
    let rep = d.path().join("r.jsonl");
    let o = run(std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 120 && exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_pqwrap"))
        .args(["rewrap", "-j", "64", "-i"])
        .arg(&k.old_file)
        .args(["-r", &k.new_pub, "--report"])
        .arg(&rep)
        .arg(&arch));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let recs = report(&rep);
    assert_eq!(
        recs.iter().filter(|r| r["outcome"] == "rewrapped").count(),
        300,
        "{}",
        text(&o)
    );
}

/// The outside review's findings on `rewrap`: each test failed on the code it was found in.
mod review_findings {
    use super::*;

    fn tree(d: &Path, k: &Keys) -> PathBuf {
        let t = d.join("t");
        std::fs::create_dir_all(t.join("sub")).unwrap();
        encrypt(&t.join("a.age"), &[&k.old], b"a", false);
        encrypt(&t.join("b.age"), &[&k.old], b"b", false);
        encrypt(&t.join("sub/f1.age"), &[&k.old], b"f1", true);
        t
    }

    /// A wrong identity opens no file: that is a failure (exit 1) that the summary names
    /// first, never "skipped, probably done" with exit 0 — following the README (keep the
    /// old key until a run exits 0) would then delete the only key.
    #[test]
    fn an_identity_that_opens_no_file_fails_the_run_and_says_so_first() {
        let d = tempfile::tempdir().unwrap();
        let k = keys(d.path(), OldKeys::X25519);
        let a = Identity::generate_hybrid().unwrap();
        let t = d.path().join("t");
        std::fs::create_dir(&t).unwrap();
        // Files already wrapped to a post-quantum key A (age and native), opened by nothing
        // the run is given.
        encrypt(&t.join("1.age"), &[&a], b"1", false);
        encrypt(&t.join("2.age"), &[&a], b"2", true);
        native(&t.join("3.pqw"), &[&a], b"3");
        let wrong = d.path().join("wrong.key");
        write_identities(&wrong, &[&Identity::generate_hybrid().unwrap()]);
        let b = Identity::generate_hybrid()
            .unwrap()
            .to_recipient()
            .to_string();
        let o = run(pqwrap()
            .arg("rewrap")
            .arg("-i")
            .arg(&wrong)
            .args(["-r", &b])
            .arg(&t));
        assert_eq!(code(&o), 1, "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        let summary = err
            .lines()
            .find(|l| !l.starts_with("pqwrap"))
            .unwrap_or_default();
        assert!(
            summary.starts_with("none of the given identities opened any file"),
            "{err}"
        );
        assert!(err.contains("unverified 3"), "{err}");
        let _ = k;
    }

    /// `--report` never destroys anything: not a file in the tree, not a key file, not a
    /// file that is not a report, not through a symlink — refused before anything is written,
    /// exit 2. An earlier report is replaced.
    #[test]
    fn the_report_never_destroys_a_file() {
        let d = tempfile::tempdir().unwrap();
        let k = keys(d.path(), OldKeys::X25519);
        let t = tree(d.path(), &k);
        let before = std::fs::read(t.join("b.age")).unwrap();
        let key_before = std::fs::read(&k.old_file).unwrap();
        let notes = d.path().join("notes.txt");
        std::fs::write(&notes, b"precious").unwrap();
        let link = d.path().join("link.jsonl");
        std::os::unix::fs::symlink(&notes, &link).unwrap();
        let fresh_in_tree = t.join("new-report.jsonl");
        for (report, needle) in [
            (t.join("b.age"), "inside"),
            (fresh_in_tree.clone(), "inside"),
            (k.old_file.clone(), "identity"),
            (notes.clone(), "not a pqwrap report"),
            (link.clone(), "symbolic link"),
        ] {
            let o = run(pqwrap()
                .arg("rewrap")
                .arg("-i")
                .arg(&k.old_file)
                .args(["-r", &k.new_pub, "--report"])
                .arg(&report)
                .arg(&t));
            assert_eq!(code(&o), 2, "{}: {}", report.display(), text(&o));
            assert!(
                text(&o).contains(needle),
                "{}: {}",
                report.display(),
                text(&o)
            );
        }
        assert_eq!(std::fs::read(t.join("b.age")).unwrap(), before);
        assert_eq!(std::fs::read(&k.old_file).unwrap(), key_before);
        assert_eq!(std::fs::read(&notes).unwrap(), b"precious");
        assert!(!fresh_in_tree.exists());
        assert_eq!(
            decrypt(&t.join("b.age"), &k.old).unwrap(),
            b"b",
            "nothing ran"
        );
        // The audit log follows the same rule.
        for log in [t.join("audit.jsonl"), k.old_file.clone(), link.clone()] {
            let o = run(pqwrap()
                .arg("rewrap")
                .arg("-i")
                .arg(&k.old_file)
                .args(["-r", &k.new_pub, "--audit-log"])
                .arg(&log)
                .arg(&t));
            assert_eq!(code(&o), 2, "{}: {}", log.display(), text(&o));
        }
        assert!(!t.join("audit.jsonl").exists());
        // Outside the tree: a new report, then a re-run replaces it (it is a report).
        let rep = d.path().join("r.jsonl");
        for _ in 0..2 {
            let o = run(pqwrap()
                .arg("rewrap")
                .arg("-i")
                .arg(&k.old_file)
                .arg("-i")
                .arg(&k.new_file)
                .args(["-r", &k.new_pub, "--report"])
                .arg(&rep)
                .arg(&t));
            assert_eq!(code(&o), 0, "{}", text(&o));
            assert_eq!(report(&rep).len(), 3);
        }
        assert!(report(&rep).iter().all(|r| r["outcome"] == "already_done"));
    }

    /// Overlapping roots visit each file once: nothing "locked by another run" or "changed
    /// under us" that was in fact re-wrapped.
    #[test]
    fn overlapping_roots_are_one_run_over_each_file() {
        let d = tempfile::tempdir().unwrap();
        let k = keys(d.path(), OldKeys::X25519);
        let t = tree(d.path(), &k);
        let rep = d.path().join("r.jsonl");
        let o = run(pqwrap()
            .arg("rewrap")
            .arg("-i")
            .arg(&k.old_file)
            .args(["-r", &k.new_pub, "--report"])
            .arg(&rep)
            .arg(&t)
            .arg(t.join("sub"))
            .arg(t.join("a.age"))
            .arg(t.join("sub/f1.age")));
        assert_eq!(code(&o), 0, "{}", text(&o));
        let recs = report(&rep);
        assert_eq!(recs.len(), 3, "{recs:?}");
        assert!(recs.iter().all(|r| r["outcome"] == "rewrapped"), "{recs:?}");
        for (name, data) in [("a.age", &b"a"[..]), ("b.age", b"b"), ("sub/f1.age", b"f1")] {
            assert_eq!(decrypt(&t.join(name), &k.new).unwrap(), data);
        }
    }

    /// A bind mount of a directory of the tree inside the tree (root only): its files are
    /// the same inodes, re-wrapped once, and nothing fails.
    #[test]
    fn a_bind_mount_inside_the_tree_is_walked_once() {
        let d = tempfile::tempdir().unwrap();
        let k = keys(d.path(), OldKeys::X25519);
        let t = tree(d.path(), &k);
        let mnt = t.join("again");
        std::fs::create_dir(&mnt).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["--bind"])
            .arg(t.join("sub"))
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "############################################################\n\
                 ## SKIPPED a_bind_mount_inside_the_tree_is_walked_once: cannot bind-mount \
                 (not root?)\n\
                 ############################################################"
            );
            return;
        }
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(&self.0).status();
            }
        }
        let _guard = Unmount(mnt.clone());
        let rep = d.path().join("r.jsonl");
        let o = run(pqwrap()
            .arg("rewrap")
            .arg("-i")
            .arg(&k.old_file)
            .args(["-r", &k.new_pub, "--report"])
            .arg(&rep)
            .arg(&t));
        assert_eq!(code(&o), 0, "{}", text(&o));
        let recs = report(&rep);
        assert_eq!(recs.len(), 3, "{recs:?}");
        assert!(recs.iter().all(|r| r["outcome"] == "rewrapped"), "{recs:?}");
        assert_eq!(decrypt(&mnt.join("f1.age"), &k.new).unwrap(), b"f1");
    }

    /// An OpenPGP message is named for what it is, by every command: never "broken age
    /// armor", never "not encrypted".
    #[test]
    fn openpgp_messages_are_recognised_everywhere() {
        let d = tempfile::tempdir().unwrap();
        let k = keys(d.path(), OldKeys::X25519);
        let t = d.path().join("t");
        std::fs::create_dir(&t).unwrap();
        let pgp = t.join("m.asc");
        std::fs::write(
            &pgp,
            b"-----BEGIN PGP MESSAGE-----\n\nhF4DAAAAAAAAAAASAQdA\n=abcd\n-----END PGP MESSAGE-----\n",
        )
        .unwrap();
        let o = run(pqwrap().arg("decrypt").arg("-i").arg(&k.old_file).arg(&pgp));
        assert_eq!(code(&o), 1, "{}", text(&o));
        assert!(text(&o).contains("OpenPGP (not supported)"), "{}", text(&o));
        let o = run(pqwrap().arg("inspect").arg(&pgp));
        assert!(text(&o).contains("OpenPGP (not supported)"), "{}", text(&o));
        let o = run(pqwrap().args(["scan", "--json"]).arg(&t));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(j["rows"][0]["format"], "openpgp-armored", "{j}");
        let rep = d.path().join("r.jsonl");
        let o = run(pqwrap()
            .arg("rewrap")
            .arg("-i")
            .arg(&k.old_file)
            .args(["-r", &k.new_pub, "--report"])
            .arg(&rep)
            .arg(&t));
        assert_eq!(code(&o), 0, "{}", text(&o));
        assert_eq!(report(&rep)[0]["reason"], "unsupported_format");
    }
}

/// The report and audit-log paths resolve like every output path: a directory symlink
/// another user planted in a sticky world-writable directory is refused (root only: the
/// attacker is played by uid 1001 with `setpriv`).
#[test]
fn review_findings_a_planted_directory_link_does_not_redirect_the_report() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let k = keys(d.path(), OldKeys::X25519);
    let t = d.path().join("t");
    std::fs::create_dir(&t).unwrap();
    encrypt(&t.join("a.age"), &[&k.old], b"a", false);
    let shared = d.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let victim = d.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let planted = std::process::Command::new("setpriv")
        .args(["--reuid=1001", "--regid=1001", "--clear-groups", "ln", "-s"])
        .arg(&victim)
        .arg(shared.join("d"))
        .status();
    if !rustix::process::geteuid().is_root() || !planted.is_ok_and(|s| s.success()) {
        crate::common::skipped(
            "review_findings_a_planted_directory_link_does_not_redirect_the_report",
            "cannot act as a second user (not root, or no setpriv)",
        );
        return;
    }
    for opt in ["--report", "--audit-log"] {
        let o = run(pqwrap()
            .arg("rewrap")
            .arg("-i")
            .arg(&k.old_file)
            .args(["-r", &k.new_pub, opt])
            .arg(shared.join("d/out.jsonl"))
            .arg(&t));
        assert_eq!(code(&o), 2, "{opt}: {}", text(&o));
    }
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
    assert_eq!(decrypt(&t.join("a.age"), &k.old).unwrap(), b"a");
}
