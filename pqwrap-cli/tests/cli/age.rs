//! The `pqwrap encrypt/decrypt/inspect` commands on real files, for age.

use std::path::Path;
use std::process::Command;

use crate::common::{in_dir, ok};

fn keygen(dir: &Path, name: &str, classical: bool) -> String {
    let mut args = vec!["keygen", "-o", name];
    if classical {
        args.push("--classical");
    }
    let o = in_dir(dir, &args);
    ok(&o);
    String::from_utf8(o.stderr)
        .expect("UTF-8")
        .trim()
        .trim_start_matches("Public key: ")
        .to_owned()
}

#[test]
fn encrypt_decrypt_inspect_and_failures() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let pq = keygen(d, "pq.key", false);
    let cl = keygen(d, "cl.key", true);
    let other = keygen(d, "other.key", false);
    let pt: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.join("plain"), &pt).expect("write");
    std::fs::write(d.join("recips"), format!("# mine\n{pq}\n")).expect("write");

    // Post-quantum, via -R, binary; decrypt to -o.
    ok(&in_dir(
        d,
        &[
            "encrypt", "--format", "age", "-R", "recips", "-o", "pq.age", "plain",
        ],
    ));
    ok(&in_dir(
        d,
        &["decrypt", "-i", "pq.key", "-o", "out", "pq.age"],
    ));
    assert_eq!(std::fs::read(d.join("out")).expect("out"), pt);

    // Armored, to stdout; decrypt detects the armor.
    let o = in_dir(d, &["encrypt", "-r", &pq, "-a", "plain"]);
    ok(&o);
    assert!(
        o.stdout
            .starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----\n")
    );
    std::fs::write(d.join("pq.asc"), &o.stdout).expect("write");
    let o = in_dir(d, &["decrypt", "-i", "pq.key", "pq.asc"]);
    ok(&o);
    assert_eq!(o.stdout, pt);

    // Wrong identity: a clear message, non-zero exit, no output file.
    let o = in_dir(d, &["decrypt", "-i", "other.key", "-o", "nope", "pq.age"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("pq.age") && err.contains("no identity matched"),
        "{err}"
    );
    assert!(!d.join("nope").exists());
    let _ = other;

    // Truncated payload: the partial plaintext never appears at -o.
    let file = std::fs::read(d.join("pq.age")).expect("read");
    std::fs::write(d.join("trunc.age"), &file[..file.len() - 1000]).expect("write");
    let o = in_dir(
        d,
        &["decrypt", "-i", "pq.key", "-o", "partial", "trunc.age"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("payload"));
    assert!(!d.join("partial").exists());
    assert!(
        std::fs::read_dir(d).expect("dir").all(|e| !e
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .starts_with(".pqwrap-")),
        "temporary file left behind"
    );

    // Mixing post-quantum and classical recipients needs --allow-mixed.
    let o = in_dir(
        d,
        &["encrypt", "-r", &pq, "-r", &cl, "-o", "mixed.age", "plain"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--allow-mixed"));
    assert!(!d.join("mixed.age").exists());
    ok(&in_dir(
        d,
        &[
            "encrypt",
            "--allow-mixed",
            "-r",
            &pq,
            "-r",
            &cl,
            "-o",
            "mixed.age",
            "plain",
        ],
    ));
    ok(&in_dir(
        d,
        &["decrypt", "-i", "cl.key", "-o", "out2", "mixed.age"],
    ));
    assert_eq!(std::fs::read(d.join("out2")).expect("out2"), pt);

    // Passphrase, from a file.
    std::fs::write(d.join("pw"), "correct horse\n").expect("write");
    ok(&in_dir(
        d,
        &[
            "encrypt",
            "-p",
            "--passphrase-file",
            "pw",
            "--work-factor",
            "10",
            "-o",
            "pw.age",
            "plain",
        ],
    ));
    ok(&in_dir(
        d,
        &["decrypt", "--passphrase-file", "pw", "-o", "out3", "pw.age"],
    ));
    assert_eq!(std::fs::read(d.join("out3")).expect("out3"), pt);

    // Inspect, without keys.
    for (f, prot, armored) in [
        ("pq.age", "post-quantum", false),
        ("pq.asc", "post-quantum", true),
        ("mixed.age", "mixed", false),
        ("pw.age", "passphrase", false),
    ] {
        let o = in_dir(d, &["inspect", "--json", f]);
        ok(&o);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
        assert_eq!(v["format"], "age");
        assert_eq!(v["protection"], prot, "{f}");
        assert_eq!(v["armored"], armored, "{f}");
        assert_eq!(v["plaintext_bytes"], pt.len() as u64, "{f}");
    }
    let o = in_dir(d, &["inspect", "plain"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an encrypted file"));

    // Unknown format names are a usage error.
    let o = in_dir(d, &["encrypt", "--format", "nope", "-r", &pq, "plain"]);
    assert_eq!(o.status.code(), Some(2));
}

/// `-o` naming a named pipe (as `-o /dev/null` names a device) writes into it; it must not
/// be replaced by a regular file. `-o` naming a symlink writes through it; the link stays.
#[test]
fn output_to_a_fifo_or_through_a_symlink_keeps_what_is_there() {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;

    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let pq = keygen(d, "pq.key", false);
    let pt: Vec<u8> = (0..150_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(d.join("plain"), &pt).expect("write");
    ok(&in_dir(d, &["encrypt", "-r", &pq, "-o", "f.age", "plain"]));

    let fifo = d.join("pipe");
    crate::common::mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            std::fs::File::open(&fifo)
                .expect("open fifo")
                .read_to_end(&mut got)
                .expect("read fifo");
            got
        })
    };
    ok(&in_dir(
        d,
        &["decrypt", "-i", "pq.key", "-o", "pipe", "f.age"],
    ));
    // Before joining: a replaced FIFO leaves the reader waiting for a writer forever.
    let m = std::fs::symlink_metadata(&fifo).expect("stat");
    assert!(m.file_type().is_fifo(), "the FIFO was replaced: {m:?}");
    assert_eq!(reader.join().expect("reader"), pt);

    std::fs::create_dir(d.join("real")).expect("mkdir");
    std::fs::write(d.join("real/out"), b"old").expect("write");
    std::os::unix::fs::symlink("real/out", d.join("link")).expect("symlink");
    ok(&in_dir(
        d,
        &["decrypt", "-i", "pq.key", "-o", "link", "f.age"],
    ));
    assert!(
        std::fs::symlink_metadata(d.join("link"))
            .expect("stat")
            .file_type()
            .is_symlink(),
        "the link was replaced"
    );
    assert_eq!(std::fs::read(d.join("real/out")).expect("read"), pt);
    // A directory is refused by name, not written into.
    let o = in_dir(d, &["decrypt", "-i", "pq.key", "-o", "real", "f.age"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is a directory"));
}

/// A decrypt killed half-way (here SIGTERM while it waits for the rest of its input; the
/// same holds for SIGKILL or a file-size limit) leaves no partial plaintext anywhere: the
/// output is an anonymous file until the commit names it.
#[test]
fn a_killed_decrypt_leaves_no_partial_plaintext() {
    use std::io::Write;

    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let pq = keygen(d, "pq.key", false);
    let pt: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.join("plain"), &pt).expect("write");
    ok(&in_dir(d, &["encrypt", "-r", &pq, "-o", "f.age", "plain"]));
    std::fs::remove_file(d.join("plain")).expect("rm");
    let file = std::fs::read(d.join("f.age")).expect("read");

    let out = d.join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let fifo = d.join("pipe");
    crate::common::mkfifo(&fifo);
    let mut child = Command::new(env!("CARGO_BIN_EXE_pqwrap"))
        .args(["decrypt", "-i", "pq.key", "-o", "out/plain", "pipe"])
        .current_dir(d)
        .spawn()
        .expect("spawn");
    // Two thirds of the file, then the writer holds the pipe open: decrypt has written
    // plaintext and waits for more.
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open fifo");
    w.write_all(&file[..2_000_000]).expect("write fifo");
    std::thread::sleep(std::time::Duration::from_millis(500));
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .expect("kill");
    let status = child.wait().expect("wait");
    assert!(!status.success());
    drop(w);
    let left: Vec<_> = std::fs::read_dir(&out)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(
        left.is_empty(),
        "left behind in the output directory: {left:?}"
    );
}

/// `-o /dev/fd/N` for a pipe (what `-o >(cmd)` passes) and `-o /dev/stdout` write into the
/// pipe instead of failing to resolve `pipe:[N]`.
#[test]
fn output_to_a_pipe_behind_dev_fd() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let pq = keygen(d, "pq.key", false);
    std::fs::write(d.join("plain"), b"through a pipe").expect("write");
    ok(&in_dir(d, &["encrypt", "-r", &pq, "-o", "f.age", "plain"]));
    let o = Command::new(env!("CARGO_BIN_EXE_pqwrap"))
        .args(["decrypt", "-i", "pq.key", "-o", "/dev/stdout", "f.age"])
        .current_dir(d)
        .stdout(std::process::Stdio::piped())
        .output()
        .expect("runs");
    ok(&o);
    assert_eq!(o.stdout, b"through a pipe");
}

/// `pqwrap decrypt f | head -c1`: when the reader of standard output goes away, decrypt and
/// encrypt end quietly with the shell's SIGPIPE code, 141, not an I/O error.
#[test]
fn a_closed_standard_output_ends_quietly_with_141() {
    use std::io::Read;
    use std::process::Stdio;

    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let pq = keygen(d, "pq.key", false);
    let pt: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(d.join("plain"), &pt).expect("write");
    ok(&in_dir(d, &["encrypt", "-r", &pq, "-o", "f.age", "plain"]));
    let r = &["-r", pq.as_str()];
    let cases: [Vec<&str>; 3] = [
        vec!["decrypt", "-i", "pq.key", "f.age"],
        [&["encrypt"][..], r, &["plain"]].concat(),
        [&["encrypt", "-a"][..], r, &["plain"]].concat(),
    ];
    for args in cases {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pqwrap"))
            .args(&args)
            .current_dir(d)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut first = [0u8; 1];
        child
            .stdout
            .take()
            .expect("stdout")
            .read_exact(&mut first)
            .expect("one byte");
        // The pipe's read end is dropped here.
        let o = child.wait_with_output().expect("wait");
        assert_eq!(o.status.code(), Some(141), "{args:?}: {o:?}");
        assert!(
            o.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
