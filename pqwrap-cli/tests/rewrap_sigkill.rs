//! `pqwrap rewrap` killed with SIGKILL at random moments never leaves a file
//! that opens with neither the old nor the new identity, or that yields anything but the
//! original plaintext; the next run cleans up and finishes. One file in ten is a pqwrap
//! native file re-wrapped in place (two header slots); the others are age files, some armored.
//!
//! `cargo test -p pqwrap-cli --test rewrap_sigkill` runs the CI size (2,000 files, 12 kills);
//! `cargo test -p pqwrap-cli --test rewrap_sigkill -- --ignored --nocapture` the big one
//! (5,000 files, 60 kills).
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{age_bytes, decrypt, native_bytes, plaintext, pqwrap, write_identities};
use pqwrap_core::age;
use pqwrap_core::envelope;
use pqwrap_core::keys::Identity;

fn size(i: usize) -> usize {
    match i % 40 {
        0 => 0,
        1 => 65_536,
        2 => 150_000,
        _ => 200 + (i * 7_919) % 6_000,
    }
}

struct Sample {
    path: PathBuf,
    native: bool,
    original: Vec<u8>,
    plaintext: Vec<u8>,
}

/// Opens a native file; `None` when the identity does not match.
fn native_open(path: &Path, id: &Identity) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match envelope::decrypt_to(
        std::io::BufReader::new(std::fs::File::open(path).ok()?),
        std::slice::from_ref(id),
        &mut out,
    ) {
        Ok(_) => Some(out),
        Err(envelope::EnvelopeError::NoMatch) => None,
        Err(e) => panic!("{} is damaged: {e}", path.display()),
    }
}

/// Every file opens with the old or the new identity and yields its plaintext. Returns how
/// many are new.
fn check_all(
    samples: &[Sample],
    old: &Identity,
    old_pq: &Identity,
    new: &Identity,
    run: usize,
) -> usize {
    let mut new_count = 0;
    for s in samples {
        if s.native {
            let got = match native_open(&s.path, old_pq) {
                Some(p) => p,
                None => {
                    new_count += 1;
                    native_open(&s.path, new).unwrap_or_else(|| {
                        panic!(
                            "run {run}: {} opens with neither identity",
                            s.path.display()
                        )
                    })
                }
            };
            assert!(
                got == s.plaintext,
                "run {run}: {} yields other plaintext",
                s.path.display()
            );
            continue;
        }
        let got = match decrypt(&s.path, old) {
            Ok(p) => p,
            Err(age::AgeError::NoMatch) => {
                new_count += 1;
                decrypt(&s.path, new).unwrap_or_else(|e| {
                    panic!(
                        "run {run}: {} opens with neither identity: {e}",
                        s.path.display()
                    )
                })
            }
            Err(e) => panic!("run {run}: {} is damaged: {e}", s.path.display()),
        };
        assert!(
            got == s.plaintext,
            "run {run}: {} yields other plaintext",
            s.path.display()
        );
    }
    new_count
}

fn temporaries(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".pqwrap-tmp-"))
        .count()
}

fn sigkill_test(files: usize, runs: usize) {
    let d = tempfile::tempdir().unwrap();
    let old = Identity::generate_x25519().unwrap();
    let new = Identity::generate_hybrid().unwrap();
    // Native files were made for an older post-quantum key: a rotation, in place.
    let old_pq = Identity::generate_hybrid().unwrap();
    let old_file = d.path().join("old.key");
    write_identities(&old_file, &[&old, &old_pq]);
    // Given to every run too: a resumed run verifies the files done before the kill with it.
    let new_file = d.path().join("new.key");
    write_identities(&new_file, &[&new]);
    let arch = d.path().join("arch");
    let mut samples = Vec::with_capacity(files);
    for i in 0..files {
        let dir = arch
            .join(format!("d{}", i % 20))
            .join(format!("e{}", i % 3));
        std::fs::create_dir_all(&dir).unwrap();
        let armored = i % 9 == 4;
        let data = plaintext(i as u64 + 1, size(i));
        if i % 10 == 7 {
            let path = dir.join(format!("f{i}.pqw"));
            let original = native_bytes(&[&old_pq], &data);
            std::fs::write(&path, &original).unwrap();
            samples.push(Sample {
                path,
                native: true,
                original,
                plaintext: data,
            });
            continue;
        }
        let path = dir.join(format!("f{i}.age"));
        let original = age_bytes(&[&old], &data, armored);
        std::fs::write(&path, &original).unwrap();
        samples.push(Sample {
            path,
            native: false,
            original,
            plaintext: data,
        });
    }
    let rewrap = || {
        let mut c = pqwrap();
        c.args(["rewrap", "-j", "2", "-i"])
            .arg(&old_file)
            .arg("-i")
            .arg(&new_file)
            .args(["-r", &new.to_recipient().to_string()])
            .arg(&arch)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };

    let started = Instant::now();
    // One full run first: how long the job takes on this machine sets the kill window, so
    // that the kills land mid-way on a fast machine as on a slow one. Three quarters of it:
    // a run after a kill has less left to do (it resumes), so it ends sooner.
    let t = Instant::now();
    assert!(rewrap().status().unwrap().success());
    let full_run = t.elapsed();
    assert_eq!(check_all(&samples, &old, &old_pq, &new, 0), files);
    for s in &samples {
        std::fs::write(&s.path, &s.original).unwrap();
    }
    let max_delay_ms = u64::try_from(full_run.as_millis() * 3 / 4)
        .unwrap_or(u64::MAX)
        .max(20);

    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let (mut killed_mid_way, mut checked, mut completed) = (0, files, 0);
    for run in 0..runs {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(5 + seed % max_delay_ms);
        let mut child = rewrap().spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let n = check_all(&samples, &old, &old_pq, &new, run);
        checked += samples.len();
        if n > 0 && n < files {
            killed_mid_way += 1;
        }
        if status.success() || n == files {
            completed += 1;
            // Back to the old files, so that later runs are interrupted again.
            for s in &samples {
                std::fs::write(&s.path, &s.original).unwrap();
            }
        }
    }
    // A run to completion: removes the leftovers and finishes the job.
    let status = rewrap().status().unwrap();
    assert!(status.success());
    assert_eq!(check_all(&samples, &old, &old_pq, &new, runs), files);
    assert_eq!(temporaries(&arch), 0, "leftover temporaries");
    checked += samples.len();
    eprintln!(
        "rewrap SIGKILL test: {runs} killed runs ({killed_mid_way} mid-way, {completed} had \
         finished; kills within {max_delay_ms} ms, 3/4 of a full run) + 2 full runs, \
         {files} files: {checked} file checks, 0 lost, in {:.1?}",
        started.elapsed()
    );
    assert!(
        killed_mid_way * 2 >= runs,
        "too few runs were killed mid-way: adjust delays"
    );
}

#[test]
fn sigkill_during_rewrap_never_loses_a_file() {
    sigkill_test(2_000, 12);
}

#[test]
#[ignore = "long: 5,000 files x 60 kills"]
fn sigkill_during_rewrap_never_loses_a_file_big() {
    sigkill_test(5_000, 60);
}
