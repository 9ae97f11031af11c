//! Helpers shared by the CLI integration tests: running the binary, keys, plaintexts, real age
//! and native files, JSON-lines reports.
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};

use pqwrap_core::age::{self, FileKey, Header};
use pqwrap_core::envelope;
use pqwrap_core::keys::Identity;

pub const BIN: &str = env!("CARGO_BIN_EXE_pqwrap");

pub fn pqwrap() -> Command {
    Command::new(BIN)
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
