//! `pqwrap keygen` end to end, on real files.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use crate::common::pqwrap;

#[test]
fn writes_0600_identity_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.txt");
    let out = pqwrap().arg("keygen").arg("-o").arg(&key).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("Public key: age1pq1"), "{stderr}");

    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("# created: "));
    assert!(lines[1].starts_with("# public key: age1pq1"));
    assert!(lines[2].starts_with("AGE-SECRET-KEY-PQ-1"));

    // The printed recipient is the one `-y` derives from the file.
    let y = pqwrap().args(["keygen", "-y"]).arg(&key).output().unwrap();
    assert!(y.status.success());
    let recipient = String::from_utf8(y.stdout).unwrap();
    assert_eq!(
        recipient.trim(),
        stderr.trim().trim_start_matches("Public key: ")
    );
    assert_eq!(
        recipient.trim(),
        lines[1].trim_start_matches("# public key: ")
    );

    // A second keygen to the same path must not clobber the key.
    let again = pqwrap().arg("keygen").arg("-o").arg(&key).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("key.txt"));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
}

#[test]
fn classical_and_stdin_conversion() {
    let out = pqwrap().args(["keygen", "--classical"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\nAGE-SECRET-KEY-1"), "{text}");

    let mut child = pqwrap()
        .args(["keygen", "-y"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let y = child.wait_with_output().unwrap();
    assert!(y.status.success());
    let r = String::from_utf8(y.stdout).unwrap();
    assert!(r.starts_with("age1") && !r.starts_with("age1pq1"), "{r}");
}

#[test]
fn bad_identity_file_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "# comment\nAGE-SECRET-KEY-1NOTAKEY\n").unwrap();
    let out = pqwrap().args(["keygen", "-y"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.txt") && err.contains("line 2"), "{err}");
    // The cause once, not once in the message and again as the error's source.
    let cause = "not a valid Bech32 string";
    assert_eq!(err.matches(cause).count(), 1, "{err}");
}

#[test]
fn identity_file_readable_by_others_gets_a_warning_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("loose.txt");
    assert!(
        pqwrap()
            .arg("keygen")
            .arg("-o")
            .arg(&key)
            .output()
            .unwrap()
            .status
            .success()
    );
    let recipient = pqwrap()
        .args(["keygen", "-y"])
        .arg(&key)
        .output()
        .unwrap()
        .stdout;
    let recipient = String::from_utf8(recipient).unwrap();
    let plain = dir.path().join("p");
    std::fs::write(&plain, b"hello").unwrap();
    let enc = dir.path().join("p.age");
    let out = pqwrap()
        .args(["encrypt", "-r", recipient.trim(), "-o"])
        .arg(&enc)
        .arg(&plain)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let decrypt = || {
        pqwrap()
            .args(["decrypt", "-i"])
            .arg(&key)
            .arg(&enc)
            .output()
            .unwrap()
    };
    let quiet = decrypt();
    assert!(quiet.status.success());
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("warning"));

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loud = decrypt();
    assert!(loud.status.success());
    assert_eq!(loud.stdout, b"hello");
    let err = String::from_utf8_lossy(&loud.stderr);
    assert!(
        err.contains("warning") && err.contains("loose.txt") && err.contains("0644"),
        "{err}"
    );
}
