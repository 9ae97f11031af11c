//! `pqwrap encrypt --format pqwrap`, `decrypt` and `inspect` on the native envelope, end to
//! end through the binary.

use std::process::{Command, Stdio};

use crate::common::pqwrap_args;

fn keygen(dir: &std::path::Path, name: &str, classical: bool) -> (String, String) {
    let path = dir.join(name);
    let mut args = vec!["keygen", "-o", path.to_str().unwrap()];
    if classical {
        args.push("--classical");
    }
    assert!(pqwrap_args(&args).status.success());
    let y = pqwrap_args(&["keygen", "-y", path.to_str().unwrap()]);
    (
        path.to_str().unwrap().to_string(),
        String::from_utf8(y.stdout).unwrap().trim().to_string(),
    )
}

/// `pqwrap encrypt --format pqwrap -r RCPT -o OUT PLAIN`, which must succeed.
fn encrypt_native(rcpt: &str, plain: &std::path::Path, out: &std::path::Path) {
    let o = pqwrap_args(&[
        "encrypt",
        "--format",
        "pqwrap",
        "-r",
        rcpt,
        "-o",
        out.to_str().unwrap(),
        plain.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn native_round_trip_inspect_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (id, rcpt) = keygen(d, "id", false);
    let (other, _) = keygen(d, "other", false);
    let (_, classical) = keygen(d, "cl", true);
    let plain = d.join("plain");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&plain, &data).unwrap();
    let enc = d.join("f.pqw");
    let (p, e) = (plain.to_str().unwrap(), enc.to_str().unwrap());

    encrypt_native(&rcpt, &plain, &enc);

    let out = pqwrap_args(&["inspect", "--json", e]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format"], "pqwrap");
    assert_eq!(v["post_quantum"], true);
    assert_eq!(v["plaintext_bytes"], 200_000);
    assert_eq!(v["sequence"], 1);

    // decrypt detects the format by itself.
    let dec = d.join("dec");
    let out = pqwrap_args(&["decrypt", "-i", &id, "-o", dec.to_str().unwrap(), e]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&dec).unwrap(), data);

    // A wrong identity: a clear error naming the file, and no output file.
    let dec2 = d.join("dec2");
    let out = pqwrap_args(&["decrypt", "-i", &other, "-o", dec2.to_str().unwrap(), e]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("f.pqw") && err.contains("no_match"), "{err}");
    assert!(!dec2.exists());

    // A damaged payload byte: fails, and nothing is left behind.
    let mut bytes = std::fs::read(&enc).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 1;
    let bad = d.join("bad.pqw");
    std::fs::write(&bad, &bytes).unwrap();
    let out = pqwrap_args(&[
        "decrypt",
        "-i",
        &id,
        "-o",
        dec2.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!dec2.exists());

    // The native format is post-quantum only, and has no passphrase or armor mode.
    for args in [
        vec!["encrypt", "--format", "pqwrap", "-r", classical.as_str(), p],
        vec!["encrypt", "--format", "pqwrap", "-p", p],
        vec![
            "encrypt",
            "--format",
            "pqwrap",
            "-a",
            "-r",
            rcpt.as_str(),
            p,
        ],
    ] {
        let out = pqwrap_args(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}

#[test]
fn closed_stdout_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (_, rcpt) = keygen(dir.path(), "id", false);
    let enc = dir.path().join("f.pqw");
    let plain = dir.path().join("p");
    std::fs::write(&plain, b"x").unwrap();
    encrypt_native(&rcpt, &plain, &enc);
    let mut child = Command::new(env!("CARGO_BIN_EXE_pqwrap"))
        .args(["inspect", "--json", enc.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before anything is printed
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

/// `inspect` on a named pipe holding a native file reads the pipe once: opening it a second
/// time would wait for a writer that already left.
#[test]
fn inspect_reads_a_fifo_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, rcpt) = keygen(d, "id", false);
    let plain = d.join("plain");
    std::fs::write(&plain, b"in a pipe").unwrap();
    let enc = d.join("f.pqw");
    encrypt_native(&rcpt, &plain, &enc);
    let fifo = d.join("pipe");
    crate::common::mkfifo(&fifo);
    let bytes = std::fs::read(&enc).unwrap();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            // The pipe may close before everything is read: inspect needs the header only.
            let _ = w.write_all(&bytes);
        })
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_pqwrap"))
        .args(["inspect", fifo.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            panic!("inspect hangs on a FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    writer.join().unwrap();
    assert!(status.success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(out.contains("pqwrap envelope"), "{out}");
}
