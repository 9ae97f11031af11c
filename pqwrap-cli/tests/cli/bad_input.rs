//! Bad input everywhere: a generated corpus of malformed inputs driven
//! through the real `pqwrap` binary. For every case: no panic, no death by signal; where the
//! input is malformed the exit status is non-zero, standard error names the file, standard
//! output is empty and no output file (nor a leftover temporary) is written.
//!
//! The corpus: empty files, truncation at every header byte (exhaustively for the classical
//! and passphrase age files, whose headers are ~200 bytes; every 7th byte plus every line
//! boundary for the ~1.7 KB post-quantum header and the armored file, to keep each test at a
//! few seconds on 2 cores), truncation at payload boundaries, one flipped bit per header byte
//! (same sampling) and at payload positions (nonce, first/second chunk, tags), oversized
//! stanzas and lines, huge declared lengths (scrypt work factor, native slot size), binary
//! garbage with and without an age/armor prefix, invalid UTF-8 in arguments and file names,
//! directories named like files, and bad identity / output arguments.
//!
//! A native corpus is derived the same way from a valid pqwrap native file: cuts and flips in
//! the preamble, in the active slot, in the empty spare slot (where a flip is harmless: the
//! file stays valid) and in the payload.
//!
//! One helper per command (`decrypt`, `inspect`, `scan`, `token_verify`) runs a case and
//! checks the outcome; `rewrap`, which takes a whole directory, runs once over every case of
//! both corpora laid out side by side and checks each file through its line of the JSON
//! report. To add a command: a `fn cmd(fx, path) -> Output` and a loop over [`corpus`] with
//! the expectation that command has.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{in_dir, ok_doing};

/// What a case must do.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Exit non-zero with a clear error.
    Fail,
    /// The input may be acceptable to this command (e.g. `inspect` does not check MACs):
    /// success is allowed, but a failure must still be clean.
    Either,
}

/// One input of the corpus.
struct Case {
    name: String,
    content: Content,
    /// For `decrypt` (which authenticates everything).
    decrypt: Expect,
    /// For `inspect` (which reads the structure, not the MACs).
    inspect: Expect,
    /// For `scan` (which reads the header only, not the MACs, not an armored file's end).
    scan: Expect,
}

enum Content {
    Bytes(Vec<u8>),
    /// A directory where a file is expected.
    Directory,
    /// Nothing at that path.
    Missing,
}

impl Case {
    fn bytes(name: impl Into<String>, b: Vec<u8>, decrypt: Expect, inspect: Expect) -> Self {
        Case {
            name: name.into(),
            content: Content::Bytes(b),
            decrypt,
            inspect,
            scan: inspect,
        }
    }
    fn malformed(name: impl Into<String>, b: Vec<u8>) -> Self {
        Case::bytes(name, b, Expect::Fail, Expect::Fail)
    }
    /// The header is intact (only what follows it is damaged): `scan` may classify it.
    fn header_intact(mut self) -> Self {
        self.scan = Expect::Either;
        self
    }
}

/// Keys, valid files and scratch directories shared by the cases.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    /// Valid age files: classical (X25519), post-quantum, passphrase, armored post-quantum.
    valid: Vec<(&'static str, Vec<u8>)>,
    /// A valid native file, to the post-quantum key.
    native: Vec<u8>,
    /// A fresh post-quantum recipient (`new.key` is its identity): the target of `rewrap`.
    new_pub: String,
}

/// Plaintext of the valid files: two full chunks and a bit, so payload cases reach the
/// second and third chunks.
fn plaintext() -> Vec<u8> {
    (0..2 * 65536 + 1000u32).map(|i| (i % 251) as u8).collect()
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    for d in ["cases", "out"] {
        fs::create_dir(dir.join(d)).expect("mkdir");
    }
    fs::write(dir.join("plain"), plaintext()).expect("write");
    fs::write(dir.join("pw.txt"), "correct horse\n").expect("write");
    let recipient = |name: &str, classical: bool| {
        let mut a = vec!["keygen", "-o", name];
        if classical {
            a.push("--classical");
        }
        let o = in_dir(&dir, &a);
        ok_doing(&o, "keygen");
        String::from_utf8(o.stderr)
            .expect("UTF-8")
            .trim()
            .trim_start_matches("Public key: ")
            .to_owned()
    };
    let pq = recipient("pq.key", false);
    let cl = recipient("cl.key", true);
    let new_pub = recipient("new.key", false);
    let enc = |args: &[&str], out: &str| {
        let mut a = vec!["encrypt"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", out, "plain"]);
        ok_doing(&in_dir(&dir, &a), "encrypt");
        fs::read(dir.join(out)).expect("read")
    };
    let valid = vec![
        ("cl.age", enc(&["-r", &cl], "cl.age")),
        ("pq.age", enc(&["-r", &pq], "pq.age")),
        (
            "pw.age",
            enc(
                &["-p", "--passphrase-file", "pw.txt", "--work-factor", "10"],
                "pw.age",
            ),
        ),
        ("pq.asc", enc(&["-r", &pq, "-a"], "pq.asc")),
    ];
    let native = enc(&["-r", &pq, "--format", "pqwrap"], "pq.pqw");
    let fx = Fixture {
        _tmp: tmp,
        dir,
        valid,
        native,
        new_pub,
    };
    // The valid files decrypt and inspect, so every failure below is the input's doing.
    for name in fx.valid.iter().map(|(n, _)| *n).chain(["pq.pqw"]) {
        let o = decrypt(&fx, Path::new(name), Some(Path::new("out/plain")));
        ok_doing(&o, name);
        assert_eq!(
            fs::read(fx.dir.join("out/plain")).expect("out"),
            plaintext()
        );
        fs::remove_file(fx.dir.join("out/plain")).expect("rm");
        ok_doing(&inspect(&fx, Path::new(name)), name);
    }
    fx
}

/// `pqwrap decrypt` with both identities and the passphrase file, output to `out`.
fn decrypt(fx: &Fixture, input: &Path, out: Option<&Path>) -> Output {
    let mut a: Vec<OsString> = ["decrypt", "-i", "pq.key", "-i", "cl.key"]
        .iter()
        .map(OsString::from)
        .collect();
    a.extend(["--passphrase-file", "pw.txt"].map(OsString::from));
    if let Some(o) = out {
        a.push("-o".into());
        a.push(o.into());
    }
    a.push(input.into());
    in_dir(&fx.dir, &a)
}

/// `pqwrap inspect --json`.
fn inspect(fx: &Fixture, input: &Path) -> Output {
    in_dir(
        &fx.dir,
        &[
            OsStr::new("inspect"),
            OsStr::new("--json"),
            input.as_os_str(),
        ],
    )
}

/// Checks one outcome: never a panic or a signal; on failure an exit code 1 or 2, a message
/// naming one of `names`, nothing on standard output; and never an output file or a
/// temporary left in `out/` (unless `allow_output` and the command succeeded).
fn check(fx: &Fixture, what: &str, o: &Output, expect: Expect, names: &[&str], allow_output: bool) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{what}: panic: {err}"
    );
    let code = o
        .status
        .code()
        .unwrap_or_else(|| panic!("{what}: killed by a signal: {:?}", o.status));
    if expect == Expect::Fail {
        assert_ne!(code, 0, "{what}: accepted a malformed input");
    }
    if code != 0 {
        assert!(matches!(code, 1 | 2), "{what}: exit code {code}: {err}");
        assert!(
            names.iter().any(|n| err.contains(n)),
            "{what}: the error does not name {names:?}: {err}"
        );
        assert!(
            o.stdout.is_empty(),
            "{what}: wrote to standard output on failure"
        );
    }
    // Files only: a test may put a directory there on purpose.
    let left: Vec<_> = fs::read_dir(fx.dir.join("out"))
        .expect("out dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .map(|e| e.file_name())
        .collect();
    if code != 0 || !allow_output {
        assert!(left.is_empty(), "{what}: left {left:?} behind");
    }
    for f in left {
        fs::remove_file(fx.dir.join("out").join(f)).expect("rm");
    }
}

/// Puts a case at `cases/<name>` (as a file, a directory or nothing) and returns that path.
fn materialise(fx: &Fixture, case: &Case) -> PathBuf {
    let rel = Path::new("cases").join(&case.name);
    let abs = fx.dir.join(&rel);
    match &case.content {
        Content::Bytes(b) => fs::write(&abs, b).expect("write case"),
        Content::Directory => fs::create_dir(&abs).expect("mkdir case"),
        Content::Missing => {}
    }
    rel
}

fn remove(fx: &Fixture, rel: &Path) {
    let abs = fx.dir.join(rel);
    if abs.is_dir() {
        fs::remove_dir(&abs).expect("rmdir");
    } else if abs.exists() {
        fs::remove_file(&abs).expect("rm");
    }
}

/// Byte offset just past the age header (the `---` MAC line), in the binary files.
fn header_len(f: &[u8]) -> usize {
    let mac = f
        .windows(4)
        .position(|w| w == b"\n---")
        .expect("header has a MAC line");
    mac + 1 + f[mac + 1..].iter().position(|&b| b == b'\n').expect("EOL") + 1
}

/// Positions to cut or flip at in `0..end`: every `step`-th, plus each line break and the
/// byte after it (where the parser changes state).
fn header_positions(f: &[u8], end: usize, step: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..end).step_by(step).collect();
    for (i, &b) in f[..end].iter().enumerate() {
        if b == b'\n' {
            v.extend([i, i + 1]);
        }
    }
    v.retain(|&i| i < end);
    v.sort_unstable();
    v.dedup();
    v
}

/// A small deterministic generator for garbage (xorshift64*).
fn garbage(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// The malformed age-file corpus derived from the valid files, plus hand-made cases.
/// `full`: cut and flip at every header byte of every file (~9,000 cases, about two
/// minutes); otherwise every byte of the classical file's header, and a sample with every line
/// boundary of the others (~600 cases, a few seconds).
fn age_corpus(fx: &Fixture, full: bool) -> Vec<Case> {
    use Expect::{Either, Fail};
    let mut cases = Vec::new();
    for (name, f) in &fx.valid {
        let stem = name.replace('.', "_");
        // Cuts: every byte of the classical header; flips: every third byte of it.
        let (step, flip_step) = match *name {
            _ if full => (1, 1),
            "cl.age" => (1, 3),
            "pw.age" => (9, 9),
            _ => (41, 41),
        };
        if name.ends_with(".asc") {
            // Armored: the whole file is text; cutting anywhere before the final newline
            // loses the END line or part of the base64 (dropping only the final newline is
            // valid armor).
            let ends = [f.len() / 2, f.len() - 35, f.len() - 20, f.len() - 2];
            for i in header_positions(f, 2000, step) {
                cases.push(Case::malformed(format!("{stem}-cut{i}"), f[..i].to_vec()));
            }
            for i in ends {
                let cut = Case::malformed(format!("{stem}-cut{i}"), f[..i].to_vec());
                cases.push(cut.header_intact());
            }
            for i in header_positions(f, 2000, flip_step) {
                let mut g = f.clone();
                g[i] ^= 1 << (i % 8);
                cases.push(Case::bytes(format!("{stem}-flip{i}"), g, Fail, Either));
            }
            continue;
        }
        let h = header_len(f);
        for i in header_positions(f, h, step) {
            cases.push(Case::malformed(format!("{stem}-cut{i}"), f[..i].to_vec()));
        }
        for i in header_positions(f, h, flip_step) {
            let mut g = f.clone();
            g[i] ^= 1 << (i % 8);
            // A flipped header bit may still parse (inspect checks no MAC) but never decrypts.
            cases.push(Case::bytes(format!("{stem}-flip{i}"), g, Fail, Either));
        }
        // The payload: 16-byte nonce, then chunks of 65536 + 16 bytes.
        let chunk = 65536 + 16;
        let cuts = [
            h,
            h + 1,
            h + 15,
            h + 16,
            h + 17,
            h + 16 + 15,
            h + 16 + chunk - 1,
            h + 16 + chunk,
            h + 16 + chunk + 1,
            h + 16 + 2 * chunk,
            f.len() - 17,
            f.len() - 1,
        ];
        for i in cuts {
            cases.push(Case::bytes(
                format!("{stem}-pcut{i}"),
                f[..i].to_vec(),
                Fail,
                Either,
            ));
        }
        for i in [
            h,
            h + 15,
            h + 16,
            h + 16 + 1000,
            h + 16 + chunk - 1,
            h + 16 + chunk,
            f.len() - 17,
            f.len() - 1,
        ] {
            let mut g = f.clone();
            g[i] ^= 0x80;
            cases.push(Case::bytes(format!("{stem}-pflip{i}"), g, Fail, Either));
        }
        let mut g = f.clone();
        g.push(0);
        cases.push(Case::bytes(format!("{stem}-appended"), g, Fail, Either));
    }

    let cl = &fx.valid[0].1;
    let cl_h = header_len(cl);
    let cl_header = std::str::from_utf8(&cl[..cl_h]).expect("ASCII header");
    let stanza_start = cl_header.find("\n-> ").expect("stanza") + 1;
    let mac_line = cl_header.rfind("---").expect("mac");
    let intro = &cl_header[..stanza_start];
    let body_line = "A".repeat(64);

    // Oversized stanzas: a body of 1 MiB + 64 B of full lines (over the header limit), a
    // body just under it, an argument line of 2 MiB, a single 2 MiB line with no newline.
    let big = |lines: usize| {
        let mut s = String::from(intro);
        s.push_str("-> X25519 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
        for _ in 0..lines {
            s.push_str(&body_line);
            s.push('\n');
        }
        s.push_str("AAAA\n");
        s.push_str(&cl_header[mac_line..]);
        s.into_bytes()
    };
    cases.push(Case::malformed("stanza-over-1MiB", big((1 << 20) / 65 + 1)));
    cases.push(Case::bytes(
        "stanza-under-1MiB",
        big((1 << 20) / 65 - 40),
        Fail,
        Either,
    ));
    let mut many_args = String::from(intro);
    many_args.push_str("-> X25519");
    for _ in 0..(1 << 20) {
        many_args.push_str(" a");
    }
    many_args.push('\n');
    cases.push(Case::malformed(
        "stanza-2MiB-of-arguments",
        many_args.into_bytes(),
    ));
    let mut long = intro.as_bytes().to_vec();
    long.extend(std::iter::repeat_n(b'a', 2 << 20));
    cases.push(Case::malformed("line-2MiB-no-newline", long));
    // Huge declared lengths: scrypt work factors far beyond the limit; a native preamble
    // declaring a 4 GiB slot; an armored file with a 1 MiB line.
    for wf in ["23", "64", "255", "99999999999999999999"] {
        let s = format!(
            "{intro}-> scrypt AAAAAAAAAAAAAAAAAAAAAA {wf}\n{}\n{}",
            "A".repeat(43),
            &cl_header[mac_line..]
        );
        cases.push(Case::bytes(
            format!("scrypt-work-factor-{wf}"),
            s.into_bytes(),
            Fail,
            Either,
        ));
    }
    let mut native = b"\x89PQW\r\n\x1a\n\x00\x01\x00\x00\xff\xff\xf0\x00".to_vec();
    native.resize(4096 + 64, 0);
    cases.push(Case::malformed("native-huge-slot", native));
    let mut armored = b"-----BEGIN AGE ENCRYPTED FILE-----\n".to_vec();
    armored.extend(std::iter::repeat_n(b'Y', 1 << 20));
    armored.extend_from_slice(b"\n-----END AGE ENCRYPTED FILE-----\n");
    cases.push(Case::malformed("armor-1MiB-line", armored));
    // Garbage.
    cases.push(Case::malformed("empty", Vec::new()));
    cases.push(Case::malformed("zeros-1MiB", vec![0; 1 << 20]));
    for (i, n) in [1usize, 7, 100, 4096, 100_000].into_iter().enumerate() {
        cases.push(Case::malformed(
            format!("garbage-{n}"),
            garbage(i as u64, n),
        ));
        let mut g = b"age-encryption.org/v1\n".to_vec();
        g.extend(garbage(100 + i as u64, n));
        cases.push(Case::malformed(format!("age-prefix-garbage-{n}"), g));
        let mut g = b"-----BEGIN AGE ENCRYPTED FILE-----\n".to_vec();
        g.extend(garbage(200 + i as u64, n));
        cases.push(Case::malformed(format!("armor-prefix-garbage-{n}"), g));
    }
    cases.push(Case::malformed("text.age", b"hello, world\n".to_vec()));
    // Directories named like files, and a name that is not there.
    cases.push(Case {
        name: "dir.age".into(),
        content: Content::Directory,
        decrypt: Fail,
        inspect: Fail,
        scan: Fail,
    });
    cases.push(Case {
        name: "missing.age".into(),
        content: Content::Missing,
        decrypt: Fail,
        inspect: Fail,
        scan: Fail,
    });
    cases
}

/// The malformed native-file corpus, derived from the valid native file (preamble of 4096
/// bytes, two slots of `S` bytes, the payload). `full`: every byte of the preamble's first
/// 64 and of the active slot; otherwise a sample with every field boundary.
fn native_corpus(fx: &Fixture, full: bool) -> Vec<Case> {
    use Expect::{Either, Fail};
    let f = &fx.native;
    let slot = u32::from_be_bytes(f[12..16].try_into().expect("4 bytes")) as usize;
    let (s0, s1, payload) = (4096, 4096 + slot, 4096 + 2 * slot);
    assert!(f.len() > payload + 2 * 65536, "three payload chunks");
    let body_len = u32::from_be_bytes(f[s0 + 12..s0 + 16].try_into().expect("4 bytes")) as usize;
    let step = if full { 1 } else { 97 };
    let mut preamble: Vec<usize> = (0..17).chain([100, 4095]).collect();
    // Slot fields (magic, sequence, length, checksum), the body's fixed fields and stanza
    // boundaries, its end (the MAC, then the zero padding) and the slot's last byte.
    let mut active: Vec<usize> = [0, 3, 4, 11, 12, 15, 16, 47, 48, 49, 50, 81, 82, 113, 114]
        .into_iter()
        .chain([116, 117, 118, 119, 120, 135, 136, 1303])
        .chain((0..48 + body_len).step_by(step))
        .chain([48 + body_len - 33, 48 + body_len - 1, 48 + body_len])
        .chain([48 + body_len + 1, slot - 1])
        .map(|i| s0 + i)
        .collect();
    if full {
        preamble = (0..64).chain([100, 4095]).collect();
        // Every byte of the slot up to one past its body; the rest is zero padding, sampled.
        active = (s0..s0 + 48 + body_len + 2).chain([s1 - 1]).collect();
    }
    active.sort_unstable();
    active.dedup();
    let chunk = 65536 + 16;
    let in_payload = [
        payload,
        payload + 1,
        payload + 15,
        payload + 16,
        payload + 17,
        payload + 16 + chunk - 1,
        payload + 16 + chunk,
        payload + 16 + 2 * chunk,
        f.len() - 17,
        f.len() - 1,
    ];
    let mut cases = Vec::new();
    // Cuts: nothing survives a cut (the payload is always short); `inspect` reads the header
    // area only, so from the spare slot on it may succeed.
    for &i in preamble.iter().chain(&active) {
        cases.push(Case::malformed(format!("pqw-cut{i}"), f[..i].to_vec()));
    }
    for i in [s1, s1 + 1, s1 + slot / 2, payload - 1]
        .into_iter()
        .chain(in_payload)
    {
        cases.push(Case::bytes(
            format!("pqw-cut{i}"),
            f[..i].to_vec(),
            Fail,
            Either,
        ));
    }
    // Flips: the preamble and the active slot are checked (magic, version, flags, slot
    // size, zero padding, checksum); the spare slot is empty, and an invalid spare slot is
    // what a torn write leaves: ignored, the file stays valid. The payload fails decryption.
    let flip = |i: usize| {
        let mut g = f.clone();
        g[i] ^= 1 << (i % 8);
        g
    };
    for &i in preamble.iter().chain(&active) {
        cases.push(Case::malformed(format!("pqw-flip{i}"), flip(i)));
    }
    for i in [s1, s1 + 4, s1 + slot - 1] {
        cases.push(Case::bytes(format!("pqw-flip{i}"), flip(i), Either, Either));
    }
    for i in in_payload.into_iter().filter(|&i| i < f.len()) {
        cases.push(Case::bytes(format!("pqw-flip{i}"), flip(i), Fail, Either));
    }
    let mut g = f.clone();
    g.push(0);
    cases.push(Case::bytes("pqw-appended", g, Fail, Either));
    // Only the first 8 bytes (the magic) of a native file: sniffed as native, then too short.
    cases.push(Case::malformed("pqw-magic-only", f[..8].to_vec()));
    cases
}

/// Both corpora.
fn corpus(fx: &Fixture, full: bool) -> Vec<Case> {
    let mut c = age_corpus(fx, full);
    c.extend(native_corpus(fx, full));
    c
}

/// Runs `run` on every case of both corpora with the expectation `pick` gives.
fn drive(
    fx: &Fixture,
    full: bool,
    command: &str,
    pick: fn(&Case) -> Expect,
    run: impl Fn(&Fixture, &Path) -> Output,
) -> usize {
    let cases = corpus(fx, full);
    for case in &cases {
        let rel = materialise(fx, case);
        let o = run(fx, &rel);
        let shown = rel.display().to_string();
        // An input that is still valid (e.g. a flip in a native file's empty spare slot) may
        // decrypt: then to exactly the original plaintext.
        let out = fx.dir.join("out/plain");
        if o.status.success() && out.exists() {
            assert_eq!(
                fs::read(&out).expect("out"),
                plaintext(),
                "{command} {}: wrong plaintext",
                case.name
            );
        }
        check(
            fx,
            &format!("{command} {}", case.name),
            &o,
            pick(case),
            &[&shown],
            pick(case) == Expect::Either,
        );
        remove(fx, &rel);
    }
    cases.len()
}

#[test]
fn decrypt_refuses_every_malformed_file_cleanly() {
    let fx = fixture();
    let n = drive(&fx, false, "decrypt", |c| c.decrypt, decrypt_to_out);
    println!("{n} cases");
    assert!(n > 450, "{n} cases");
}

#[test]
fn inspect_refuses_every_malformed_file_cleanly() {
    let fx = fixture();
    let n = drive(&fx, false, "inspect", |c| c.inspect, inspect);
    assert!(n > 450, "{n} cases");
}

/// Every header byte of every age file and of the native file's active slot, cut and
/// flipped: `cargo test -p pqwrap-cli --test bad_input -- --ignored` (about a minute on two
/// cores).
#[test]
#[ignore = "exhaustive: ~11,000 runs of the binary per command"]
fn decrypt_and_inspect_every_header_byte_of_every_file() {
    let fx = fixture();
    let n = drive(&fx, true, "decrypt", |c| c.decrypt, decrypt_to_out);
    drive(&fx, true, "inspect", |c| c.inspect, inspect);
    assert!(n > 5000, "{n} cases");
}

/// `pqwrap scan --json` (no key at all).
fn scan(fx: &Fixture, input: &Path) -> Output {
    in_dir(
        &fx.dir,
        &[OsStr::new("scan"), OsStr::new("--json"), input.as_os_str()],
    )
}

fn no_panic(what: &str, o: &Output) -> i32 {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{what}: panic: {err}"
    );
    o.status
        .code()
        .unwrap_or_else(|| panic!("{what}: killed by a signal: {:?}", o.status))
}

/// `scan` reads every case of both corpora, one run each, without a key: exit 0 with one
/// file counted (or, for a directory named like a file, none), a malformed file classified
/// as unknown or not encrypted (or listed as not scanned) and never as protected, a file that
/// may still parse counted once in any class; a missing path is a usage error naming it; the
/// case is never written to and nothing appears beside it.
#[test]
fn scan_classifies_every_malformed_file_and_writes_nothing() {
    let fx = fixture();
    let cases = corpus(&fx, false);
    for case in &cases {
        let rel = materialise(&fx, case);
        let what = format!("scan {}", case.name);
        let o = scan(&fx, &rel);
        let code = no_panic(&what, &o);
        match &case.content {
            Content::Missing => {
                assert_eq!(code, 2, "{what}");
                let shown = rel.display().to_string();
                assert!(
                    String::from_utf8_lossy(&o.stderr).contains(&shown),
                    "{what}"
                );
                assert!(o.stdout.is_empty(), "{what}");
            }
            Content::Directory => {
                assert_eq!(code, 0, "{what}: {}", String::from_utf8_lossy(&o.stderr));
                let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
                assert_eq!(j["total"]["files"], 0, "{what}: {j}");
            }
            Content::Bytes(b) => {
                assert_eq!(code, 0, "{what}: {}", String::from_utf8_lossy(&o.stderr));
                let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
                let files = |p: &str| j["by_protection"][p]["files"].as_u64().expect("count");
                let unreadable = j["not_scanned"]["unreadable"].as_u64().unwrap_or(0);
                assert_eq!(
                    j["total"]["files"].as_u64().expect("total") + unreadable,
                    1,
                    "{what}: {j}"
                );
                if unreadable == 0 {
                    assert_eq!(j["total"]["bytes"], b.len(), "{what}: {j}");
                }
                if case.scan == Expect::Fail {
                    assert_eq!(
                        files("unknown") + files("not_encrypted") + unreadable,
                        1,
                        "{what}: a malformed file was classified as protected: {j}"
                    );
                }
                assert_eq!(&fs::read(fx.dir.join(&rel)).expect("case"), b, "{what}");
            }
        }
        let beside = fs::read_dir(fx.dir.join("cases")).expect("cases").count();
        let expected = usize::from(!matches!(case.content, Content::Missing));
        assert_eq!(
            beside, expected,
            "{what}: something was written beside the case"
        );
        remove(&fx, &rel);
    }
    assert!(cases.len() > 550, "{} cases", cases.len());
}

/// `scan`, then `rewrap`, over every case of both corpora at once (one directory, one run,
/// one JSON line per file), with valid old identities (classical and post-quantum), the target's identity and
/// `--verify-payload` (so damage anywhere in a payload is looked for). Beside them: files
/// whose names are not UTF-8, a malformed file given directly as a non-UTF-8 argument, and two
/// valid control files, which must be re-wrapped (so every refusal is the input's doing).
///
/// Must hold: exit status 1, no panic; exactly one report line per file and none for the
/// directories named like files; a malformed file is failed (reason and error given, and
/// named on stderr) or skipped as not encrypted (or, for a passphrase-shaped header, as
/// passphrase-encrypted), never re-wrapped or "already done"; nothing is written: every case
/// keeps its bytes and no temporary is left. Only a case that is still valid (a flip in a
/// native file's empty spare slot) may be re-wrapped, and then it decrypts with the new key
/// to the original plaintext. A missing path is a usage error (2) naming it.
#[test]
fn rewrap_reports_every_malformed_file_and_writes_nothing() {
    let fx = fixture();
    let d = &fx.dir;
    let cases = corpus(&fx, false);
    fs::create_dir_all(d.join("rw")).expect("mkdir");
    fs::create_dir_all(d.join("rw-arg")).expect("mkdir");
    // name in rw/ -> (bytes, may it be re-wrapped, may it be skipped as passphrase)
    let mut files: Vec<(OsString, Vec<u8>, bool, bool)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    assert!(
        cases.iter().all(|c| seen.insert(&c.name)),
        "case names are unique"
    );
    let mut dirs = 0;
    for case in &cases {
        match &case.content {
            Content::Bytes(b) => {
                let pw = case.name.starts_with("pw_age") || case.name.starts_with("scrypt-");
                let name = OsString::from(&case.name);
                files.push((name, b.clone(), case.decrypt == Expect::Either, pw));
            }
            Content::Directory => {
                fs::create_dir(d.join("rw").join(&case.name)).expect("mkdir");
                dirs += 1;
            }
            Content::Missing => {}
        }
    }
    let cl = fx.valid[0].1.clone();
    files.push((
        OsString::from_vec(b"bad-\xff\xfe.age".to_vec()),
        cl[..100].to_vec(),
        false,
        false,
    ));
    files.push((
        OsString::from_vec(b"\xff".to_vec()),
        garbage(21, 700),
        false,
        false,
    ));
    files.push(("control.age".into(), cl.clone(), true, false));
    files.push(("control.pqw".into(), fx.native.clone(), true, false));
    for (name, b, _, _) in &files {
        fs::write(d.join("rw").join(name), b).expect("write");
    }
    // A malformed file (header MAC flipped) given directly, under a non-UTF-8 name.
    let mut mac_flipped = cl.clone();
    let h = header_len(&cl);
    mac_flipped[h - 5] ^= 1;
    let arg = PathBuf::from(OsString::from_vec(b"rw-arg/\xfe-arg.age".to_vec()));
    fs::write(d.join(&arg), &mac_flipped).expect("write");

    // The whole lot, non-UTF-8 names included, through one `scan` first: every file counted
    // once, nothing written (checked with the rest below).
    let o = scan(&fx, Path::new("rw"));
    assert_eq!(
        no_panic("scan rw", &o),
        0,
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let unreadable = j["not_scanned"]["unreadable"].as_u64().unwrap_or(0);
    assert_eq!(
        j["total"]["files"].as_u64().expect("total") + unreadable,
        files.len() as u64,
        "{j}"
    );

    let mut args: Vec<OsString> = ["rewrap", "-j", "2", "-i", "cl.key", "-i", "pq.key"]
        .map(OsString::from)
        .to_vec();
    args.extend(["-i", "new.key", "-r", &fx.new_pub, "--verify-payload"].map(OsString::from));
    args.extend(["--report", "rw.jsonl", "rw"].map(OsString::from));
    args.push(arg.clone().into_os_string());
    let o = in_dir(d, &args);
    let code = no_panic("rewrap", &o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code, 1, "{stderr}");
    let recs: Vec<serde_json::Value> = fs::read_to_string(d.join("rw.jsonl"))
        .expect("report")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(
        recs.len(),
        files.len() + 1,
        "one line per file, none per directory"
    );

    let lossy = |p: &Path| String::from_utf8_lossy(p.as_os_str().as_bytes()).into_owned();
    let find = |path: &str| -> &serde_json::Value {
        let found: Vec<_> = recs.iter().filter(|r| r["path"] == path).collect();
        assert_eq!(found.len(), 1, "records for {path}");
        found[0]
    };
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for (name, before, may_rewrap, may_be_passphrase) in &files {
        let rel = Path::new("rw").join(name);
        let shown = lossy(&rel);
        let r = find(&shown);
        assert_eq!(
            r["path_lossy"].as_bool().unwrap_or(false),
            rel.to_str().is_none(),
            "{r}"
        );
        let outcome = r["outcome"].as_str().expect("outcome");
        let reason = r["reason"].as_str().unwrap_or("");
        *tally.entry(format!("{outcome} {reason}")).or_default() += 1;
        let now = fs::read(d.join(&rel)).expect("still there");
        match outcome {
            "rewrapped" => {
                assert!(may_rewrap, "{shown}: a malformed file was re-wrapped: {r}");
                let out = d.join("out/plain");
                let o = in_dir(
                    d,
                    &[
                        OsStr::new("decrypt"),
                        OsStr::new("-i"),
                        OsStr::new("new.key"),
                        OsStr::new("-o"),
                    ]
                    .into_iter()
                    .chain([out.as_os_str(), rel.as_os_str()])
                    .collect::<Vec<_>>(),
                );
                ok_doing(&o, &shown);
                assert_eq!(fs::read(&out).expect("out"), plaintext(), "{shown}");
                fs::remove_file(&out).expect("rm");
                continue;
            }
            "failed" => {
                assert!(!reason.is_empty() && r["error"].is_string(), "{shown}: {r}");
                assert!(
                    stderr.contains(&format!("pqwrap rewrap: {shown}: failed")),
                    "{shown} not named on stderr"
                );
            }
            "skipped" => assert!(
                reason == "not_encrypted" || (reason == "passphrase" && *may_be_passphrase),
                "{shown}: skipped as {reason}: {r}"
            ),
            other => panic!("{shown}: {other}: {r}"),
        }
        assert_eq!(&now, before, "{shown}: changed");
    }
    let r = find(&lossy(&arg));
    assert_eq!(
        (r["outcome"].as_str(), r["reason"].as_str()),
        (Some("failed"), Some("corrupt")),
        "{r}"
    );
    assert_eq!(fs::read(d.join(&arg)).expect("arg"), mac_flipped);
    assert_eq!(find("rw/control.age")["outcome"], "rewrapped");
    assert_eq!(find("rw/control.pqw")["outcome"], "rewrapped");
    // Nothing else appeared: no temporary, no stray file.
    let names = |dir: &str| {
        let mut v: Vec<OsString> = fs::read_dir(d.join(dir))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("rw").len(), files.len() + dirs, "{:?}", names("rw"));
    assert_eq!(names("rw-arg").len(), 1);
    println!("{} files, {dirs} directories: {tally:?}", files.len());

    // A path that does not exist: bad usage, named, nothing written.
    let o = in_dir(
        d,
        &[
            "rewrap",
            "-i",
            "cl.key",
            "-r",
            &fx.new_pub,
            "rw/missing.age",
        ],
    );
    assert_eq!(no_panic("rewrap missing", &o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("rw/missing.age"));
    assert_eq!(names("rw").len(), files.len() + dirs);
}

fn decrypt_to_out(fx: &Fixture, p: &Path) -> Output {
    decrypt(fx, p, Some(Path::new("out/plain")))
}

/// Arguments: invalid UTF-8 in file names, bad identity files, bad output paths.
#[test]
fn decrypt_and_inspect_bad_arguments() {
    let fx = fixture();
    let d = &fx.dir;
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    // A file name that is not UTF-8: missing, and holding garbage, and a valid file.
    let bad_name = b"cases/bad-\xff\xfe.age".to_vec();
    let bad_path = PathBuf::from(OsString::from_vec(bad_name.clone()));
    let shown = lossy(&bad_name);
    for content in [None, Some(garbage(9, 300))] {
        if let Some(c) = &content {
            fs::write(d.join(&bad_path), c).expect("write");
        }
        let o = decrypt(&fx, &bad_path, Some(Path::new("out/plain")));
        check(
            &fx,
            "decrypt non-UTF-8 name",
            &o,
            Expect::Fail,
            &[&shown],
            false,
        );
        let o = inspect(&fx, &bad_path);
        check(
            &fx,
            "inspect non-UTF-8 name",
            &o,
            Expect::Fail,
            &[&shown],
            false,
        );
    }
    fs::write(d.join(&bad_path), &fx.valid[0].1).expect("write");
    let out = PathBuf::from(OsString::from_vec(b"out/\xff.txt".to_vec()));
    let o = decrypt(&fx, &bad_path, Some(&out));
    check(
        &fx,
        "decrypt to a non-UTF-8 name",
        &o,
        Expect::Either,
        &[&shown],
        true,
    );
    assert!(o.status.success(), "a non-UTF-8 name is a valid name");

    // Bad identity files: garbage, invalid UTF-8, a directory, missing, a non-UTF-8 name,
    // a public key instead of a secret key.
    fs::write(d.join("cases/garbage.key"), garbage(3, 500)).expect("write");
    fs::write(d.join("cases/latin1.key"), b"AGE-SECRET-KEY-1\xe9\n").expect("write");
    fs::create_dir(d.join("cases/dir.key")).expect("mkdir");
    let o = in_dir(d, &["keygen", "-y", "pq.key"]);
    ok_doing(&o, "keygen -y");
    fs::write(d.join("cases/public.key"), &o.stdout).expect("write");
    let mut bad_ids: Vec<OsString> = [
        "cases/garbage.key",
        "cases/latin1.key",
        "cases/dir.key",
        "cases/missing.key",
        "cases/public.key",
    ]
    .map(OsString::from)
    .to_vec();
    bad_ids.push(OsString::from_vec(b"cases/\xff.key".to_vec()));
    for id in bad_ids {
        let id_shown = lossy(id.as_bytes());
        let o = in_dir(
            d,
            &[
                OsStr::new("decrypt"),
                OsStr::new("-i"),
                &id,
                OsStr::new("-o"),
                OsStr::new("out/plain"),
                OsStr::new("pq.age"),
            ],
        );
        check(
            &fx,
            &format!("decrypt -i {id_shown}"),
            &o,
            Expect::Fail,
            &[&id_shown],
            false,
        );
    }

    // Outputs that cannot be written: an existing directory, a missing directory. The
    // plaintext must not be left behind in a temporary either.
    fs::create_dir(d.join("out/existing-dir")).expect("mkdir");
    let o = decrypt(
        &fx,
        Path::new("cl.age"),
        Some(Path::new("out/existing-dir")),
    );
    check(
        &fx,
        "decrypt -o DIR",
        &o,
        Expect::Either,
        &["out/existing-dir"],
        true,
    );
    assert!(!o.status.success(), "decrypt -o onto a directory succeeded");
    assert!(d.join("out/existing-dir").is_dir());
    fs::remove_dir(d.join("out/existing-dir")).expect("rmdir");
    let o = decrypt(&fx, Path::new("cl.age"), Some(Path::new("out/nope/plain")));
    check(
        &fx,
        "decrypt -o missing/dir",
        &o,
        Expect::Fail,
        &["out/nope"],
        false,
    );

    // Garbage on standard input: the error names it.
    for args in [&["decrypt", "-i", "cl.key"][..], &["inspect", "-"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pqwrap"))
            .args(args)
            .current_dir(d)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            // The command may stop reading early; a broken pipe here is fine.
            let _ = stdin.write_all(&garbage(11, 5000));
        }
        let o = child.wait_with_output().expect("wait");
        check(
            &fx,
            &format!("{args:?} < garbage"),
            &o,
            Expect::Fail,
            &["standard input"],
            false,
        );
    }

    // A decryption that fails in the last chunk (after plaintext was produced) does not
    // touch an existing output file.
    let mut damaged = fx.valid[0].1.clone();
    *damaged.last_mut().expect("non-empty") ^= 1;
    fs::write(d.join("cases/damaged.age"), damaged).expect("write");
    fs::write(d.join("out/keep"), b"precious").expect("write");
    let o = decrypt(
        &fx,
        Path::new("cases/damaged.age"),
        Some(Path::new("out/keep")),
    );
    assert!(!o.status.success());
    assert_eq!(fs::read(d.join("out/keep")).expect("keep"), b"precious");
    let left = fs::read_dir(d.join("out")).expect("out").count();
    assert_eq!(left, 1, "a temporary was left beside out/keep");
}

/// `pqwrap token verify` on malformed tokens and trust files.
#[test]
fn token_verify_refuses_every_malformed_token_cleanly() {
    let fx = fixture();
    let d = &fx.dir;
    ok_doing(
        &in_dir(d, &["token", "keygen", "-o", "tk.jwk"]),
        "token keygen",
    );
    let o = in_dir(d, &["token", "pubkey", "tk.jwk"]);
    ok_doing(&o, "token pubkey");
    fs::write(d.join("tk.pub"), &o.stdout).expect("write");
    fs::write(
        d.join("m.json"),
        r#"{"agent":"a","capabilities":{"fileAccess":[{"path":"/srv","mode":"read"}]}}"#,
    )
    .expect("write");
    // An existing, world-readable file at the -o path: the token replaces it as 0600.
    fs::write(d.join("tok"), b"old").expect("write");
    fs::set_permissions(
        d.join("tok"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("chmod");
    ok_doing(
        &in_dir(
            d,
            &[
                "token",
                "issue",
                "--key",
                "tk.jwk",
                "--manifest",
                "m.json",
                "--aud",
                "svc",
                "--ttl",
                "600s",
                "-o",
                "tok",
            ],
        ),
        "token issue",
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &fs::metadata(d.join("tok")).expect("stat").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "a bearer token must not stay 0644");
    let verify = |token: &OsStr, trust: &OsStr, aud: &OsStr| {
        in_dir(
            d,
            &[
                OsStr::new("token"),
                OsStr::new("verify"),
                OsStr::new("--trust"),
                trust,
                OsStr::new("--aud"),
                aud,
                token,
            ],
        )
    };
    let tk = OsStr::new("tk.pub");
    let svc = OsStr::new("svc");
    ok_doing(
        &verify(OsStr::new("tok"), tk, svc),
        "the genuine token verifies",
    );
    let text = fs::read_to_string(d.join("tok")).expect("tok");
    let t = text.trim_end().as_bytes();

    let mut cases: Vec<(String, Content)> = vec![
        ("empty".into(), Content::Bytes(Vec::new())),
        ("garbage".into(), Content::Bytes(garbage(5, 3000))),
        ("not-utf8".into(), Content::Bytes(b"0oRY\xff\xfe".to_vec())),
        ("padded".into(), Content::Bytes([t, b"=="].concat())),
        (
            "space-inside".into(),
            Content::Bytes([&t[..100], b" ", &t[100..]].concat()),
        ),
        ("binary-cose".into(), Content::Bytes(garbage(6, 3600))),
        ("over-16KiB".into(), Content::Bytes(vec![b'A'; 22_000])),
        (
            "over-1MiB".into(),
            Content::Bytes(vec![b'A'; (1 << 20) + 10]),
        ),
        ("dir.tok".into(), Content::Directory),
        ("missing.tok".into(), Content::Missing),
    ];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for i in (0..t.len()).step_by(97).chain([t.len() - 1]) {
        cases.push((format!("cut{i}"), Content::Bytes(t[..i].to_vec())));
        let mut g = t.to_vec();
        let pos = alphabet.iter().position(|&c| c == g[i]).expect("base64url");
        g[i] = alphabet[(pos + 1 + i % 63) % 64];
        cases.push((format!("subst{i}"), Content::Bytes(g)));
    }
    let n = cases.len();
    for (name, content) in cases {
        let case = Case {
            name,
            content,
            decrypt: Expect::Fail,
            inspect: Expect::Fail,
            scan: Expect::Fail,
        };
        let rel = materialise(&fx, &case);
        let o = verify(rel.as_os_str(), tk, svc);
        let shown = rel.display().to_string();
        check(
            &fx,
            &format!("token verify {}", case.name),
            &o,
            Expect::Fail,
            &[&shown],
            false,
        );
        remove(&fx, &rel);
    }
    assert!(n > 80, "{n} cases");

    // Bad trust files, a non-UTF-8 token file name, a non-UTF-8 audience.
    fs::write(d.join("cases/garbage.pub"), garbage(7, 2000)).expect("write");
    fs::write(d.join("cases/empty.pub"), b"").expect("write");
    fs::create_dir(d.join("cases/dir.pub")).expect("mkdir");
    for trust in [
        "cases/garbage.pub",
        "cases/empty.pub",
        "cases/dir.pub",
        "cases/none.pub",
    ] {
        let o = verify(OsStr::new("tok"), OsStr::new(trust), svc);
        check(
            &fx,
            &format!("token verify --trust {trust}"),
            &o,
            Expect::Fail,
            &[trust],
            false,
        );
    }
    let bad = OsString::from_vec(b"cases/\xff.tok".to_vec());
    let o = verify(&bad, tk, svc);
    check(
        &fx,
        "token verify non-UTF-8 name",
        &o,
        Expect::Fail,
        &["cases/\u{fffd}.tok"],
        false,
    );
    let o = verify(OsStr::new("tok"), tk, OsStr::from_bytes(b"sv\xffc"));
    check(
        &fx,
        "token verify --aud non-UTF-8",
        &o,
        Expect::Fail,
        &["--aud", "UTF-8"],
        false,
    );
}

/// The outside review's findings (outside the re-wrap engine): each test reproduces, through
/// the real binary, one way to lose data or to slip past an enforcement point, and fails on
/// the code before its fix. The output-path attacks need root and a second user (`setpriv`);
/// without them those tests print a SKIPPED banner.
mod review_findings {
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output, Stdio};

    use crate::common::{in_dir, ok_doing};

    /// The user who plants links in the shared directory.
    const ATTACKER: u32 = 1001;
    /// The owner of the shared (sticky, world-writable) directory.
    const DIR_OWNER: u32 = 1002;
    /// What the victim file holds before, and must hold after.
    const VICTIM: &[u8] = b"victim: root's important configuration\n";

    fn code(o: &Output) -> Option<i32> {
        o.status.code()
    }

    fn stdout(o: &Output) -> String {
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn stderr(o: &Output) -> String {
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// Runs a program as `uid` (its own group, no others) through `setpriv`.
    fn as_user(uid: u32, dir: &Path, program: &str, args: &[&Path]) -> Output {
        Command::new("setpriv")
            .args([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".into(),
                program.into(),
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("setpriv runs")
    }

    /// Why a second user cannot be played here (not root, or no working `setpriv`).
    fn no_second_user() -> Option<String> {
        if !rustix::process::geteuid().is_root() {
            return Some("the test is not running as root".into());
        }
        match Command::new("setpriv")
            .args([&format!("--reuid={ATTACKER}"), "--clear-groups", "true"])
            .output()
        {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!("setpriv does not work here: {}", stderr(&o))),
            Err(e) => Some(format!("setpriv is not installed: {e}")),
        }
    }

    /// Keys, an age file and a token setup in a temporary directory.
    struct Setup {
        _tmp: tempfile::TempDir,
        dir: PathBuf,
        recipient: String,
    }

    fn setup() -> Setup {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = fs::canonicalize(tmp.path()).expect("canonical tempdir");
        // Other users must be able to reach the shared directory inside.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let o = in_dir(&dir, &["keygen", "-o", "pq.key"]);
        ok_doing(&o, "keygen");
        let recipient = stderr(&o)
            .trim()
            .trim_start_matches("Public key: ")
            .to_owned();
        fs::write(dir.join("plain"), b"the plaintext\n").expect("write");
        ok_doing(
            &in_dir(&dir, &["encrypt", "-r", &recipient, "-o", "b.age", "plain"]),
            "encrypt",
        );
        ok_doing(
            &in_dir(&dir, &["token", "keygen", "-o", "k.jwk"]),
            "token keygen",
        );
        let o = in_dir(&dir, &["token", "pubkey", "k.jwk"]);
        ok_doing(&o, "token pubkey");
        fs::write(dir.join("k.pub"), &o.stdout).expect("write");
        fs::create_dir_all(dir.join("docs")).expect("mkdir");
        fs::write(dir.join("docs/a.txt"), b"a").expect("write");
        let manifest = serde_json::json!({
            "agent": "review",
            "capabilities": {
                "fileAccess": [{"path": dir.join("docs"), "mode": "read"}],
                "network": [{"host": "internal-api.company.local", "port": 443}],
                "shell": {"allowedCommands": ["/usr/bin/less"], "interactive": false},
                "quantum": {"backends": ["qpu-sim-1"], "maxQubits": 32, "maxShots": 10000,
                            "maxJobs": 5, "maxRuntime": "600s", "algorithms": ["vqe"]}
            },
            "ttl": "3600s"
        });
        fs::write(dir.join("m.json"), manifest.to_string()).expect("write");
        ok_doing(&in_dir(&dir, &token_issue("t.tok")), "token issue");
        Setup {
            _tmp: tmp,
            dir,
            recipient,
        }
    }

    /// `token issue` of `m.json` signed with `k.jwk`, to `out`.
    fn token_issue(out: &str) -> [&str; 10] {
        [
            "token",
            "issue",
            "--key",
            "k.jwk",
            "--manifest",
            "m.json",
            "--aud",
            "svc",
            "-o",
            out,
        ]
    }

    /// `pqwrap token check` of `t.tok` (or `token`) with `request`.
    fn check(s: &Setup, token: &str, request: &[&str]) -> Output {
        let mut a = vec!["token", "check", "--trust", "k.pub", "--aud", "svc", token];
        a.extend_from_slice(request);
        in_dir(&s.dir, &a)
    }

    /// Every command that writes an output path, writing to `out`.
    fn output_commands(s: &Setup, out: &str) -> Vec<Vec<String>> {
        let cmds: [&[&str]; 6] = [
            &["decrypt", "-i", "pq.key", "-o", out, "b.age"],
            &["encrypt", "-r", &s.recipient, "-o", out, "plain"],
            &token_issue(out),
            &[
                "token",
                "narrow",
                "--key",
                "k.jwk",
                "--parent",
                "t.tok",
                "--manifest",
                "m.json",
                "--ttl",
                "60s",
                "-o",
                out,
            ],
            &["keygen", "-o", out],
            &["token", "keygen", "-o", out],
        ];
        cmds.iter()
            .map(|c| c.iter().map(|a| a.to_string()).collect())
            .collect()
    }

    /// What a file is: contents, mode, owner, inode.
    fn snapshot(p: &Path) -> (Vec<u8>, u32, u32, u64) {
        let m = fs::symlink_metadata(p).expect("stat");
        (fs::read(p).expect("read"), m.mode(), m.uid(), m.ino())
    }

    /// Finding 1. In a sticky world-writable directory, another user's symlink (or FIFO)
    /// decides where an output goes: root writing `-o /tmp/shared/out.txt` replaced the file
    /// the link points at. No command may follow such a link — not at the last component,
    /// not as a directory on the way — whatever `fs.protected_symlinks` says (it is 0 here
    /// when this runs in CI containers). Links the caller or the directory's owner made are
    /// still followed, as the kernel's rule allows.
    #[test]
    fn outputs_never_follow_a_link_planted_in_a_sticky_directory() {
        if let Some(why) = no_second_user() {
            crate::common::skipped(
                "review_findings::outputs_never_follow_a_link_planted_in_a_sticky_directory",
                &why,
            );
            return;
        }
        let s = setup();
        let d = &s.dir;
        let shared = d.join("shared");
        fs::create_dir(&shared).expect("mkdir");
        rustix::fs::chown(
            &shared,
            Some(rustix::fs::Uid::from_raw(DIR_OWNER)),
            Some(rustix::fs::Gid::from_raw(DIR_OWNER)),
        )
        .expect("chown");
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).expect("chmod");
        fs::create_dir(d.join("victim")).expect("mkdir");
        let victim = d.join("victim/important.conf");
        fs::write(&victim, VICTIM).expect("write");
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).expect("chmod");
        let before = snapshot(&victim);

        for (i, cmd) in output_commands(&s, "OUT").into_iter().enumerate() {
            let link = shared.join(format!("out{i}.txt"));
            let o = as_user(ATTACKER, d, "ln", &[Path::new("-s"), &victim, &link]);
            assert!(o.status.success(), "ln -s as {ATTACKER}: {}", stderr(&o));
            let args: Vec<String> = cmd
                .iter()
                .map(|a| {
                    if a == "OUT" {
                        link.display().to_string()
                    } else {
                        a.clone()
                    }
                })
                .collect();
            let o = in_dir(d, &args);
            assert_eq!(code(&o), Some(1), "{args:?} must fail: {}", stderr(&o));
            let e = stderr(&o);
            assert!(
                e.contains("refusing to follow") || e.contains("already exists"),
                "{args:?}: {e}"
            );
            assert_eq!(snapshot(&victim), before, "{args:?} touched the victim");
            let l = fs::symlink_metadata(&link).expect("the link is still there");
            assert!(
                l.file_type().is_symlink() && l.uid() == ATTACKER,
                "{args:?}"
            );
        }

        // The audit log of `token issue` is an output path too: an empty victim would
        // otherwise start a hash chain of issuance records.
        let empty = d.join("victim/empty.conf");
        fs::write(&empty, b"").expect("write");
        let link = shared.join("audit.log");
        let o = as_user(ATTACKER, d, "ln", &[Path::new("-s"), &empty, &link]);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut args = token_issue("audited.tok").to_vec();
        args.extend(["--audit-log", link.to_str().expect("UTF-8")]);
        let o = in_dir(d, &args);
        assert_eq!(code(&o), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("refusing to follow"), "{}", stderr(&o));
        assert_eq!(
            fs::read(&empty).expect("read"),
            b"",
            "the audit log went to the victim"
        );
        assert!(
            !d.join("audited.tok").exists(),
            "a token was issued unlogged"
        );

        // A planted link as a directory on the way.
        let o = as_user(
            ATTACKER,
            d,
            "ln",
            &[Path::new("-s"), &d.join("victim"), &shared.join("dir")],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let through = shared.join("dir/important.conf");
        let o = in_dir(
            d,
            &[
                "decrypt",
                "-i",
                "pq.key",
                "-o",
                through.to_str().unwrap(),
                "b.age",
            ],
        );
        assert_eq!(code(&o), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("refusing to follow"), "{}", stderr(&o));
        assert_eq!(
            snapshot(&victim),
            before,
            "written through a planted directory link"
        );

        // A planted FIFO: whoever holds its other end would read the plaintext.
        let fifo = shared.join("pipe");
        let o = as_user(ATTACKER, d, "mkfifo", &[&fifo]);
        assert!(o.status.success(), "{}", stderr(&o));
        let reader = rustix::fs::open(
            &fifo,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK,
            rustix::fs::Mode::empty(),
        )
        .expect("the attacker's end of the FIFO");
        let o = in_dir(
            d,
            &[
                "decrypt",
                "-i",
                "pq.key",
                "-o",
                fifo.to_str().unwrap(),
                "b.age",
            ],
        );
        assert_eq!(code(&o), Some(1), "{}", stderr(&o));
        let mut got = [0u8; 64];
        let n = rustix::io::read(&reader, &mut got).unwrap_or(0);
        assert_eq!(n, 0, "the planted FIFO received {:?}", &got[..n]);
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

        // Links the kernel's rule allows are followed: the directory owner's, and the
        // caller's own; the link stays, its target gets the output.
        for (owner, name) in [(DIR_OWNER, "owners"), (0, "mine")] {
            let target = d.join(format!("victim/{name}.txt"));
            fs::write(&target, b"old").expect("write");
            let link = shared.join(format!("{name}.link"));
            if owner == 0 {
                symlink(&target, &link).expect("symlink");
            } else {
                let o = as_user(owner, d, "ln", &[Path::new("-s"), &target, &link]);
                assert!(o.status.success(), "{}", stderr(&o));
            }
            ok_doing(
                &in_dir(
                    d,
                    &[
                        "decrypt",
                        "-i",
                        "pq.key",
                        "-o",
                        link.to_str().unwrap(),
                        "b.age",
                    ],
                ),
                "decrypt through an allowed link",
            );
            assert_eq!(fs::read(&target).expect("read"), b"the plaintext\n");
            assert!(
                fs::symlink_metadata(&link)
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
        }
    }

    /// Finding 1, what keeps working: standard output and pipes behind `/proc` descriptor
    /// links, devices, FIFOs, links the caller made (relative ones, chains, directory
    /// links), with a dangling link refused explicitly (nothing created where it points)
    /// and names that can only be directories refused.
    #[test]
    fn outputs_that_keep_working_and_dangling_links() {
        let s = setup();
        let d = &s.dir;
        let dec = |out: &str| in_dir(d, &["decrypt", "-i", "pq.key", "-o", out, "b.age"]);
        ok_doing(&dec("/dev/null"), "-o /dev/null");
        // /dev/stdout redirected to a file opened for appending: appended to, in place.
        let f = d.join("appended");
        fs::write(&f, b"before\n").expect("write");
        let o = Command::new(env!("CARGO_BIN_EXE_pqwrap"))
            .args(["decrypt", "-i", "pq.key", "-o", "/dev/stdout", "b.age"])
            .current_dir(d)
            .stdout(Stdio::from(
                fs::OpenOptions::new().append(true).open(&f).expect("open"),
            ))
            .output()
            .expect("runs");
        ok_doing(&o, "-o /dev/stdout >> file");
        assert_eq!(fs::read(&f).unwrap(), b"before\nthe plaintext\n");

        fs::create_dir_all(d.join("real/sub")).expect("mkdir");
        symlink("real", d.join("dirlink")).expect("symlink");
        symlink("../real/sub/target", d.join("real/rel")).expect("symlink");
        symlink("rel", d.join("real/chain")).expect("symlink");
        fs::write(d.join("real/sub/target"), b"old").expect("write");
        for out in ["real/chain", "dirlink/rel", "dirlink/../real/sub/target"] {
            fs::write(d.join("real/sub/target"), b"old").expect("write");
            ok_doing(&dec(out), out);
            assert_eq!(
                fs::read(d.join("real/sub/target")).unwrap(),
                b"the plaintext\n"
            );
        }
        assert!(
            fs::symlink_metadata(d.join("real/chain"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        ok_doing(
            &dec("dirlink/new.txt"),
            "a new file through a directory link",
        );
        assert_eq!(
            fs::read(d.join("real/new.txt")).unwrap(),
            b"the plaintext\n"
        );

        symlink("real/nowhere", d.join("dangling")).expect("symlink");
        for cmd in output_commands(&s, "dangling") {
            let o = in_dir(d, &cmd);
            assert_eq!(code(&o), Some(1), "{cmd:?}: {}", stderr(&o));
            assert!(
                stderr(&o).contains("dangling") || stderr(&o).contains("already exists"),
                "{cmd:?}: {}",
                stderr(&o)
            );
            assert!(
                !d.join("real/nowhere").exists(),
                "{cmd:?} created the target"
            );
        }
        for out in ["real/", "real/.", "real/sub/..", "dirlink"] {
            let o = dec(out);
            assert_eq!(code(&o), Some(1), "{out}: {}", stderr(&o));
            assert!(stderr(&o).contains("directory"), "{out}: {}", stderr(&o));
        }
    }

    /// Finding 4. `token check --exec` resolved `..` on the string: with `xlink` pointing
    /// deep into a directory of the attacker's, `…/xlink/../../usr/bin/less` was "allowed"
    /// as `/usr/bin/less`, and the kernel runs the attacker's `…/evil/usr/bin/less`. Only
    /// the granted command, byte for byte, is allowed, and the check prints the path to
    /// execute (the token's).
    #[test]
    fn exec_is_allowed_only_for_the_granted_command_byte_for_byte() {
        let s = setup();
        let d = &s.dir;
        let depth = d.components().count() - 1;
        let mut deep = d.join("evil");
        for i in 0..depth + 1 {
            deep.push(format!("p{i}"));
        }
        fs::create_dir_all(&deep).expect("mkdir");
        fs::create_dir_all(d.join("evil/usr/bin")).expect("mkdir");
        fs::write(d.join("evil/usr/bin/less"), b"#!/bin/sh\necho evil\n").expect("write");
        symlink(&deep, d.join("xlink")).expect("symlink");
        let sneaky = format!(
            "{}/xlink/{}usr/bin/less",
            d.display(),
            "../".repeat(depth + 1)
        );
        // What the kernel runs for that string: the attacker's program.
        assert_eq!(
            fs::canonicalize(&sneaky).expect("resolves"),
            d.join("evil/usr/bin/less")
        );
        for c in [
            sneaky.as_str(),
            "/usr/bin/less/.",
            "/usr/bin//less",
            "/usr/bin/../bin/less",
            "/usr/bin/less/",
            "//usr/bin/less",
        ] {
            let o = check(&s, "t.tok", &["--exec", c]);
            assert_eq!(code(&o), Some(3), "{c:?} allowed: {}", stdout(&o));
            assert!(stdout(&o).starts_with("denied: "), "{c:?}: {}", stdout(&o));
        }
        let o = check(&s, "t.tok", &["--exec", "/usr/bin/less"]);
        assert_eq!(code(&o), Some(0), "{}{}", stdout(&o), stderr(&o));
        assert_eq!(stdout(&o), "allowed\nexecute /usr/bin/less\n");
    }

    /// Finding 4, file grants: the same string `..` resolution let `docs/xlink/../secret`
    /// pass as `docs/secret` while the kernel opens `private/secret`; `//`, `.` and a
    /// trailing `/` were tidied up too. They are refused; an allowed path comes back as the
    /// grant root and the part to open beneath it.
    #[test]
    fn file_requests_must_be_canonical() {
        let s = setup();
        let d = &s.dir;
        fs::create_dir_all(d.join("private/a")).expect("mkdir");
        fs::write(d.join("private/secret"), b"secret").expect("write");
        symlink(d.join("private/a"), d.join("docs/xlink")).expect("symlink");
        let docs = d.join("docs").display().to_string();
        let sneaky = format!("{docs}/xlink/../secret");
        assert_eq!(
            fs::canonicalize(&sneaky).expect("resolves"),
            d.join("private/secret")
        );
        for p in [
            sneaky.clone(),
            format!("{docs}//a.txt"),
            format!("{docs}/./a.txt"),
            format!("{docs}/a.txt/"),
            format!("{docs}/.."),
        ] {
            let o = check(&s, "t.tok", &["--read", &p]);
            assert_eq!(code(&o), Some(3), "{p:?} allowed: {}", stdout(&o));
        }
        let o = check(&s, "t.tok", &["--read", &format!("{docs}/a.txt")]);
        assert_eq!(code(&o), Some(0), "{}{}", stdout(&o), stderr(&o));
        assert_eq!(stdout(&o), format!("allowed\nopen a.txt beneath {docs}\n"));
    }

    /// Finding 6b. Numbers from users are strict: a revocation line `+9ddf…` (or one of
    /// `+0` pairs) was read as a cti, `--connect host:+443` as port 443, a `--ttl` of
    /// `6 0s` as 60 s. Now each is refused, naming what is wrong.
    #[test]
    fn revocation_lines_ports_and_durations_are_strict_numbers() {
        let s = setup();
        let d = &s.dir;
        for line in [
            "+9ddf0123456789abcdef0123456789a",
            "+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0",
        ] {
            fs::write(d.join("revoked"), format!("{line}\n")).expect("write");
            let o = check(
                &s,
                "t.tok",
                &["--revoked", "revoked", "--exec", "/usr/bin/less"],
            );
            assert_eq!(code(&o), Some(1), "{line:?}: {}{}", stdout(&o), stderr(&o));
            assert!(stderr(&o).contains("revocation list"), "{}", stderr(&o));
        }
        for hp in [
            "internal-api.company.local:+443",
            "internal-api.company.local:0443",
            "internal-api.company.local: 443",
        ] {
            let o = check(&s, "t.tok", &["--connect", hp]);
            assert_eq!(code(&o), Some(2), "{hp:?}: {}{}", stdout(&o), stderr(&o));
        }
        ok_doing(
            &check(
                &s,
                "t.tok",
                &["--connect", "internal-api.company.local:443"],
            ),
            "the canonical port",
        );
        for (arg, value) in [("--leeway", "+30"), ("--jobs-submitted", "+1")] {
            let o = check(&s, "t.tok", &[arg, value, "--clipboard"]);
            assert_eq!(code(&o), Some(2), "{arg} {value}: {}", stderr(&o));
        }
        let o = in_dir(
            d,
            &[
                "token",
                "issue",
                "--key",
                "k.jwk",
                "--manifest",
                "m.json",
                "--aud",
                "svc",
                "--ttl",
                "6 0s",
            ],
        );
        assert_eq!(code(&o), Some(1), "--ttl '6 0s': {}", stderr(&o));
        let o = in_dir(
            d,
            &[
                "decrypt",
                "--max-work-factor",
                "+22",
                "-i",
                "pq.key",
                "b.age",
            ],
        );
        assert_eq!(code(&o), Some(2), "{}", stderr(&o));
    }

    /// A passphrase-encrypted age file whose scrypt stanza declares work factor `wf`: a real
    /// one made at 10, edited. Its header MAC no longer matches, but scrypt runs before the
    /// MAC can be checked, and that is all a hostile file needs.
    fn scrypt_file(d: &Path, wf: u8) -> PathBuf {
        fs::write(d.join("pw"), "correct horse\n").expect("write");
        let base = d.join("wf10.age");
        if !base.exists() {
            ok_doing(
                &in_dir(
                    d,
                    &[
                        "encrypt",
                        "-p",
                        "--passphrase-file",
                        "pw",
                        "--work-factor",
                        "10",
                        "-o",
                        "wf10.age",
                        "plain",
                    ],
                ),
                "encrypt -p",
            );
        }
        let bytes = fs::read(&base).expect("read");
        let line_end = bytes.iter().skip(22).position(|b| *b == b'\n').unwrap() + 22;
        let line = &bytes[22..line_end];
        assert!(line.starts_with(b"-> scrypt ") && line.ends_with(b" 10"));
        let mut edited = bytes[..line_end - 2].to_vec();
        edited.extend_from_slice(wf.to_string().as_bytes());
        edited.extend_from_slice(&bytes[line_end..]);
        let p = d.join(format!("wf{wf}.age"));
        fs::write(&p, edited).expect("write");
        p
    }

    /// Finding 6c. `--max-work-factor 64` let a hostile scrypt file make scrypt allocate
    /// 1 PiB: the allocation failed and the process aborted (SIGABRT, a core dump with the
    /// passphrase in it). A work factor whose memory the process cannot be given is refused
    /// before allocating, with an error; so is one beyond an address-space limit (`prlimit
    /// --as`), decrypting and encrypting.
    #[test]
    fn scrypt_work_factors_beyond_memory_are_refused_before_allocating() {
        let s = setup();
        let d = &s.dir;
        let hostile = scrypt_file(d, 40);
        let o = in_dir(
            d,
            &[
                "decrypt",
                "--passphrase-file",
                "pw",
                "--max-work-factor",
                "64",
                "-o",
                "out",
                hostile.to_str().unwrap(),
            ],
        );
        assert_eq!(
            code(&o),
            Some(1),
            "killed or wrong status: {:?} {}",
            o.status,
            stderr(&o)
        );
        assert!(
            stderr(&o).contains("scrypt work factor 40 needs 1.0 PiB of memory"),
            "{}",
            stderr(&o)
        );
        assert!(!d.join("out").exists());

        if Command::new("prlimit").arg("--version").output().is_err() {
            crate::common::skipped(
                "review_findings::scrypt_work_factors_beyond_memory_are_refused_before_allocating \
                 (the RLIMIT_AS half)",
                "prlimit (util-linux) is not installed",
            );
            return;
        }
        let wf22 = scrypt_file(d, 22);
        let limited = |args: &[&str]| {
            Command::new("prlimit")
                .arg(format!("--as={}", 1u64 << 30))
                .arg(env!("CARGO_BIN_EXE_pqwrap"))
                .args(args)
                .current_dir(d)
                .stdin(Stdio::null())
                .output()
                .expect("prlimit runs")
        };
        let o = limited(&[
            "decrypt",
            "--passphrase-file",
            "pw",
            "-o",
            "out",
            wf22.to_str().unwrap(),
        ]);
        assert_eq!(code(&o), Some(1), "{:?} {}", o.status, stderr(&o));
        assert!(
            stderr(&o).contains("needs 4.0 GiB of memory"),
            "{}",
            stderr(&o)
        );
        let o = limited(&[
            "encrypt",
            "-p",
            "--passphrase-file",
            "pw",
            "--work-factor",
            "22",
            "-o",
            "e.age",
            "plain",
        ]);
        assert_eq!(code(&o), Some(1), "{:?} {}", o.status, stderr(&o));
        assert!(
            stderr(&o).contains("needs 4.0 GiB of memory"),
            "{}",
            stderr(&o)
        );
        assert!(!d.join("e.age").exists());
    }

    /// Finding 6d. Narrowing copies `maxJobs` into each child, so N children could submit
    /// N × the parent's jobs if each were counted alone. The totals are the broker's, which
    /// counts a job against the child and every ancestor: `token check --quantum` says
    /// which accounts those are.
    #[test]
    fn a_narrowed_childs_jobs_count_against_its_parent_too() {
        let s = setup();
        let d = &s.dir;
        for n in 1..=2 {
            ok_doing(
                &in_dir(
                    d,
                    &[
                        "token",
                        "narrow",
                        "--key",
                        "k.jwk",
                        "--parent",
                        "t.tok",
                        "--manifest",
                        "m.json",
                        "--ttl",
                        "60s",
                        "-o",
                        &format!("child{n}.tok"),
                    ],
                ),
                "token narrow",
            );
        }
        fs::write(
            d.join("job.json"),
            r#"{"backend":"qpu-sim-1","algorithm":"vqe","qubits":4,"shots":100,"runtime":"60s"}"#,
        )
        .expect("write");
        let cti = |tok: &str| {
            let o = in_dir(
                d,
                &["token", "verify", "--trust", "k.pub", "--aud", "svc", tok],
            );
            ok_doing(&o, "token verify");
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
            v["cti"].as_str().expect("cti").to_owned()
        };
        let parent = cti("t.tok");
        for child in ["child1.tok", "child2.tok"] {
            let o = check(
                &s,
                child,
                &["--quantum", "job.json", "--jobs-submitted", "4"],
            );
            assert_eq!(code(&o), Some(0), "{}{}", stdout(&o), stderr(&o));
            assert_eq!(
                stdout(&o),
                format!("allowed\ncount against {} {parent}\n", cti(child))
            );
        }
    }
}
