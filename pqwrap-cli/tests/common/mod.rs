//! Helpers shared by the CLI integration tests: running the binary, keys, plaintexts, real age
//! and native files, JSON-lines reports.
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pqwrap_core::age::{self, FileKey, Header};
use pqwrap_core::envelope;
use pqwrap_core::keys::Identity;

pub const BIN: &str = env!("CARGO_BIN_EXE_pqwrap");

pub fn pqwrap() -> Command {
    Command::new(BIN)
}

/// Runs `pqwrap ARGS` with no standard input (a passphrase prompt can never block).
pub fn pqwrap_args<S: AsRef<OsStr>>(args: &[S]) -> Output {
    pqwrap()
        .args(args)
        .stdin(Stdio::null())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("pqwrap runs")
}

/// [`pqwrap_args`] in the working directory `dir`.
pub fn in_dir<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Output {
    pqwrap()
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("pqwrap runs")
}

/// Asserts success, showing standard error otherwise.
pub fn ok(o: &Output) {
    ok_doing(o, "pqwrap");
}

/// Asserts that `what` succeeded, showing standard error otherwise.
pub fn ok_doing(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the command runs")
}

/// The exit status, -1 when killed by a signal.
pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Both streams, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Deterministic bytes (xorshift), so a file's plaintext can be made again to compare.
pub fn plaintext(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An identity file holding `ids`, one after the other.
pub fn write_identities(path: &Path, ids: &[&Identity]) {
    let mut contents = String::new();
    for id in ids {
        contents.push_str(&id.to_file_contents("2026-01-01T00:00:00Z"));
    }
    std::fs::write(path, contents).unwrap();
}

/// A real age file to `to` (mixed recipients allowed), binary or armored.
pub fn age_bytes(to: &[&Identity], data: &[u8], armored: bool) -> Vec<u8> {
    let fk = FileKey::generate().unwrap();
    let rs: Vec<_> = to.iter().map(|i| i.to_recipient()).collect();
    let header = Header::wrap(&fk, &rs, age::Mixing::Allow).unwrap();
    let mut w = age::encrypt_writer(
        Vec::new(),
        &fk,
        &header,
        if armored {
            age::Armor::Armored
        } else {
            age::Armor::Binary
        },
    )
    .unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

pub fn encrypt(path: &Path, to: &[&Identity], data: &[u8], armored: bool) {
    std::fs::write(path, age_bytes(to, data, armored)).unwrap();
}

/// Opens an age file; a file that cannot be opened is an `Err` too.
pub fn decrypt(path: &Path, id: &Identity) -> Result<Vec<u8>, age::AgeError> {
    let dec = age::Decryptor::new(std::io::BufReader::new(std::fs::File::open(path)?))?;
    let mut r = dec.decrypt(std::slice::from_ref(id), &[])?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(age::AgeError::from_io)?;
    Ok(out)
}

/// A real pqwrap native file to `to`.
pub fn native_bytes(to: &[&Identity], data: &[u8]) -> Vec<u8> {
    let rs: Vec<_> = to.iter().map(|i| i.to_recipient()).collect();
    let mut enc = envelope::Encryptor::new(Vec::new(), &rs).unwrap();
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn native(path: &Path, to: &[&Identity], data: &[u8]) {
    std::fs::write(path, native_bytes(to, data)).unwrap();
}

pub fn native_open(path: &Path, id: &Identity) -> Result<Vec<u8>, envelope::EnvelopeError> {
    let mut out = Vec::new();
    envelope::decrypt_to(
        std::fs::File::open(path).unwrap(),
        std::slice::from_ref(id),
        &mut out,
    )?;
    Ok(out)
}

/// Opens age bytes, or native ones if `native`, with `id`: `Ok(None)` if they are not for
/// `id`, `Err` what else is wrong.
pub fn open_bytes(bytes: &[u8], native: bool, id: &Identity) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    if native {
        return match envelope::decrypt_to(bytes, std::slice::from_ref(id), &mut out) {
            Ok(_) => Ok(Some(out)),
            Err(envelope::EnvelopeError::NoMatch) => Ok(None),
            Err(e) => Err(e.to_string()),
        };
    }
    let dec = age::Decryptor::new(bytes).map_err(|e| e.to_string())?;
    match dec.decrypt(std::slice::from_ref(id), &[]) {
        Ok(mut r) => {
            r.read_to_end(&mut out).map_err(|e| e.to_string())?;
            Ok(Some(out))
        }
        Err(age::AgeError::NoMatch) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The records of a `--report` JSON-lines file.
pub fn report(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Makes a named pipe (mode 0600) at `path`.
pub fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
}

/// The loud banner of a test that could not run here, written at once (tests run in
/// parallel; one write keeps banners from interleaving).
pub fn skipped(test: &str, because: &str) {
    skipped_banner(test, because, "run it as root to check it");
}

/// [`skipped`], naming what would let the test run (`remedy`).
pub fn skipped_banner(test: &str, because: &str, remedy: &str) {
    let because = because.lines().next().unwrap_or_default();
    let lines = [
        format!("SKIPPED {test}"),
        format!("because {because}"),
        format!("nothing was checked by this test ({remedy})"),
    ];
    let w = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let bar = "*".repeat(w + 8);
    let mut banner = format!("\n{bar}\n");
    for l in &lines {
        banner.push_str(&format!("*** {l:<w$} ***\n"));
    }
    banner.push_str(&format!("{bar}\n"));
    eprint!("{banner}");
}

/// Which old identities a re-wrap test's old identity file holds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OldKeys {
    /// The old X25519 identity alone.
    X25519,
    /// The old X25519 and the old post-quantum identity.
    X25519AndPostQuantum,
}

/// Keys of a re-wrap test: old ones being rotated out, a new post-quantum one.
pub struct Keys {
    pub old: Identity,
    pub old_pq: Identity,
    pub new: Identity,
    /// `old.key`: the old identities `OldKeys` names.
    pub old_file: PathBuf,
    /// `new.key`: the new identity.
    pub new_file: PathBuf,
    pub new_pub: String,
}

/// Fresh keys; the identity files go in `dir` with mode 0600.
pub fn keys(dir: &Path, old: OldKeys) -> Keys {
    let k = Keys {
        old: Identity::generate_x25519().unwrap(),
        old_pq: Identity::generate_hybrid().unwrap(),
        new: Identity::generate_hybrid().unwrap(),
        old_file: dir.join("old.key"),
        new_file: dir.join("new.key"),
        new_pub: String::new(),
    };
    match old {
        OldKeys::X25519 => write_identities(&k.old_file, &[&k.old]),
        OldKeys::X25519AndPostQuantum => write_identities(&k.old_file, &[&k.old, &k.old_pq]),
    }
    write_identities(&k.new_file, &[&k.new]);
    for f in [&k.old_file, &k.new_file] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    Keys {
        new_pub: k.new.to_recipient().to_string(),
        ..k
    }
}

/// The one record of a JSON-lines report whose path ends with `/name` (`name` may start with
/// the slash, or hold several components).
pub fn rec<'a>(recs: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    let suffix = format!("/{}", name.trim_start_matches('/'));
    let found: Vec<_> = recs
        .iter()
        .filter(|r| r["path"].as_str().unwrap().ends_with(&suffix))
        .collect();
    assert_eq!(found.len(), 1, "records for {name}: {recs:?}");
    found[0]
}
