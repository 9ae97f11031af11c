//! Faults during `pqwrap rewrap` on real filesystems: a disk that fills up
//! in the middle of a payload copy, a read-only filesystem, and, as an unprivileged user, a
//! read-only directory, a file without read permission and a read-only file.
//!
//! Each case mounts its own small tmpfs under its own temporary directory (tests run in
//! parallel threads; mounts are process-wide but the mount points differ), and unmounts it in
//! a guard's `Drop`, so a failing assertion does not leave a mount behind. The unprivileged
//! cases run the real binary as `nobody` (uid 65534) through `setpriv`. Where mounting or
//! changing user is impossible (not root, no CAP_SYS_ADMIN, no `setpriv`), a test prints a
//! boxed SKIPPED banner on stderr saying why, and returns: it checked nothing.
//!
//! All files are real age (and pqwrap native) files made with real keys; the originals are
//! compared byte for byte and decrypted with the old key, the re-wrapped ones with the new.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{
    BIN, Keys, OldKeys, code, decrypt, encrypt, keys, native, native_open, plaintext, pqwrap, rec,
    report, run, skipped, text,
};
use pqwrap_core::age;

const NOBODY: u32 = 65534;

/// The binary, run as `nobody` with no supplementary groups.
fn pqwrap_as_nobody() -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        BIN,
    ]);
    c
}

/// A tmpfs mounted on a directory; unmounted on drop (also when the test panics).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "pqwrap-test"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .next()
                    .unwrap_or_default()
            ));
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    fn remount(&self, options: &str) {
        let o = run(Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.dir));
        assert!(o.status.success(), "remount,{options}: {}", text(&o));
    }

    /// Bytes available to an unprivileged writer.
    fn available(&self) -> u64 {
        let s = rustix::fs::statvfs(&self.dir).expect("statvfs");
        s.f_bavail * s.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a child not yet reaped?): detach it rather than leave it mounted.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// A temporary directory with a tmpfs mounted at `mnt` inside it. Field order matters: the
/// tmpfs is unmounted before the directory is removed.
struct Sandbox {
    mnt: Tmpfs,
    tmp: tempfile::TempDir,
}

impl Sandbox {
    /// A tmpfs with `options`, or `None` after printing why it is impossible here.
    fn new(test: &str, options: &str) -> Option<Sandbox> {
        let tmp = tempfile::tempdir().expect("tempdir");
        match Tmpfs::mount(&tmp.path().join("mnt"), options) {
            Ok(mnt) => Some(Sandbox { mnt, tmp }),
            Err(e) => {
                skipped(test, &format!("a tmpfs cannot be mounted here ({e})"));
                None
            }
        }
    }

    /// For the tests run as `nobody`: the tmpfs belongs to nobody, the directory above it is
    /// traversable, and `setpriv` can run the binary as nobody. `None` (after the banner)
    /// when any of that is impossible.
    fn for_nobody(test: &str) -> Option<Sandbox> {
        let sb = Sandbox::new(
            test,
            &format!("size=4m,mode=0755,uid={NOBODY},gid={NOBODY}"),
        )?;
        std::fs::set_permissions(sb.tmp.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        // The probe: nobody runs the binary (so can reach it) and walks the tmpfs (so can
        // reach the sandbox, e.g. not when TMPDIR is under a 0700 home).
        match pqwrap_as_nobody()
            .args(["scan", "--json"])
            .arg(sb.root())
            .output()
        {
            Ok(o) if o.status.success() => Some(sb),
            Ok(o) => {
                let e = String::from_utf8_lossy(&o.stderr).trim().to_string();
                skipped(
                    test,
                    &format!("pqwrap cannot run as nobody on the sandbox with setpriv ({e})"),
                );
                None
            }
            Err(e) => {
                skipped(test, &format!("setpriv cannot be run ({e})"));
                None
            }
        }
    }

    fn root(&self) -> &Path {
        &self.mnt.dir
    }
}

/// Asserts a failed record with `reason` whose error contains `needle` (case-insensitive),
/// and that stderr names the file with that error.
fn assert_failed(recs: &[serde_json::Value], o: &Output, name: &str, reason: &str, needle: &str) {
    let r = rec(recs, name);
    assert_eq!(r["outcome"], "failed", "{name}: {r}");
    assert_eq!(r["reason"], reason, "{name}: {r}");
    let err = r["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        err.contains(needle),
        "{name}: error {err:?} lacks {needle:?}"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&format!("/{name}: failed")) && l.to_lowercase().contains(needle)),
        "stderr does not name {name} with {needle:?}:\n{stderr}"
    );
}

/// Every file under `dir` (relative path -> contents), read as the test's user.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Names of pqwrap temporaries under `dir`.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    contents(dir)
        .into_keys()
        .filter(|p| p.to_string_lossy().contains(".pqwrap-tmp-"))
        .collect()
}

fn chown_nobody(p: &Path) {
    std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Disk full in the middle of copying an age payload: a 1.7 MiB tmpfs holds several small age
/// files and two large ones, a binary file of 720 KB (its payload is copied by the kernel,
/// `copy_file_range`) and an armored one of 690 KB (its payload is streamed through a
/// buffered writer). The free space left is less than either large file but more than a
/// 64 KiB chunk plus the new header, so each copy starts and runs out of space midway
/// (ENOSPC). One worker (`-j 1`), so that no other file's temporary competes for the space
/// at that moment and the outcome does not depend on scheduling.
///
/// Must hold: the large files' bytes are untouched and open with the old key; their
/// temporaries are removed (no name left, and the space is given back); the report and stderr
/// name each as failed with "no space left"; the small files are re-wrapped (they open with
/// the new key only); exit status 1. Then, with space added, a re-run finishes the job.
#[test]
fn disk_full_mid_payload_keeps_the_original_removes_the_temporary_and_continues() {
    let Some(sb) = Sandbox::new(
        "disk_full_mid_payload_keeps_the_original_removes_the_temporary_and_continues",
        "size=1700k,mode=0755",
    ) else {
        return;
    };
    let k = keys(sb.tmp.path(), OldKeys::X25519AndPostQuantum);
    let arch = sb.root().join("arch");
    std::fs::create_dir(&arch).unwrap();
    let bigs: Vec<(&str, Vec<u8>)> = vec![
        ("big.age", plaintext(1, 720_000)),
        ("big.age.asc", plaintext(2, 500_000)),
    ];
    for (name, data) in &bigs {
        encrypt(&arch.join(name), &[&k.old], data, name.ends_with(".asc"));
    }
    let small: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| {
            let name = if i == 4 {
                "s4.age.asc".to_string()
            } else {
                format!("s{i}.age")
            };
            let data = plaintext(10 + i, 100 + 300 * i as usize);
            encrypt(&arch.join(&name), &[&k.old], &data, i == 4);
            (name, data)
        })
        .collect();
    let bigs_before: Vec<Vec<u8>> = bigs
        .iter()
        .map(|(n, _)| std::fs::read(arch.join(n)).unwrap())
        .collect();
    let free_before = sb.mnt.available();
    let smallest = bigs_before.iter().map(Vec::len).min().unwrap() as u64;
    assert!(
        free_before < smallest,
        "the tmpfs must be too small for a second copy of either large file: {free_before} free"
    );
    assert!(
        free_before > 65_536 + 4096,
        "the copy must get past the header and a chunk: {free_before} free"
    );

    let rep = sb.tmp.path().join("r.jsonl");
    let o = run(pqwrap()
        .args(["rewrap", "-j", "1", "-i"])
        .arg(&k.old_file)
        .args(["-r", &k.new_pub, "--report"])
        .arg(&rep)
        .arg(&arch));
    assert_eq!(code(&o), 1, "{}", text(&o));
    let recs = report(&rep);
    for ((name, data), before) in bigs.iter().zip(&bigs_before) {
        let p = arch.join(name);
        assert_failed(&recs, &o, name, "io", "no space left");
        assert_eq!(
            &std::fs::read(&p).unwrap(),
            before,
            "{name}: original changed"
        );
        assert_eq!(&decrypt(&p, &k.old).unwrap(), data, "{name}");
    }
    assert_eq!(temporaries(&arch), Vec::<PathBuf>::new());
    // The temporaries' blocks were freed too (not only their names): the small files, one or
    // two pages each before and after, are the only difference.
    let free_after = sb.mnt.available();
    assert!(
        free_after + 4 * 4096 >= free_before,
        "space not given back: {free_before} -> {free_after}"
    );
    for (name, data) in &small {
        let p = arch.join(name);
        assert_eq!(rec(&recs, name)["outcome"], "rewrapped", "{name}");
        assert_eq!(&decrypt(&p, &k.new).unwrap(), data, "{name}");
        assert!(
            matches!(decrypt(&p, &k.old), Err(age::AgeError::NoMatch)),
            "{name}"
        );
    }
    assert_eq!(recs.len(), 7, "{recs:?}");

    // Room again: the re-run (given the new identity too, to verify the done ones) re-wraps
    // the large files and skips the done ones.
    sb.mnt.remount("size=8m");
    let o = run(pqwrap()
        .args(["rewrap", "-j", "1", "-i"])
        .arg(&k.old_file)
        .arg("-i")
        .arg(&k.new_file)
        .args(["-r", &k.new_pub])
        .arg(&arch));
    assert_eq!(code(&o), 0, "{}", text(&o));
    for (name, data) in &bigs {
        assert_eq!(&decrypt(&arch.join(name), &k.new).unwrap(), data, "{name}");
    }
    assert_eq!(temporaries(&arch), Vec::<PathBuf>::new());
}

/// A read-only filesystem (a tmpfs remounted `ro`): nothing can be created, renamed or
/// written, not even by root. Every candidate — binary and armored age files, which need a
/// temporary, and a native file, which is re-written in place — is reported failed with
/// "read-only file system", on stderr too; a leftover temporary that cannot be removed is
/// reported as well; nothing changes; exit status 1.
#[test]
fn read_only_filesystem_reports_every_file_and_changes_nothing() {
    let Some(sb) = Sandbox::new(
        "read_only_filesystem_reports_every_file_and_changes_nothing",
        "size=4m,mode=0755",
    ) else {
        return;
    };
    let k = keys(sb.tmp.path(), OldKeys::X25519AndPostQuantum);
    let arch = sb.root().join("arch");
    std::fs::create_dir_all(arch.join("sub")).unwrap();
    encrypt(&arch.join("a.age"), &[&k.old], &plaintext(1, 70_000), false);
    encrypt(
        &arch.join("sub/b.age.asc"),
        &[&k.old],
        &plaintext(2, 500),
        true,
    );
    native(&arch.join("c.pqw"), &[&k.old_pq], &plaintext(3, 5000));
    let leftover = ".a.age.pqwrap-tmp-0123456789abcdef";
    std::fs::write(arch.join(leftover), b"age-encryption.org/v1\n-> X25519").unwrap();
    let before = contents(&arch);
    sb.mnt.remount("ro");

    let rep = sb.tmp.path().join("r.jsonl");
    let o = run(pqwrap()
        .args(["rewrap", "-i"])
        .arg(&k.old_file)
        .args(["-r", &k.new_pub, "--report"])
        .arg(&rep)
        .arg(&arch));
    assert_eq!(code(&o), 1, "{}", text(&o));
    let recs = report(&rep);
    for name in ["a.age", "b.age.asc", "c.pqw", leftover] {
        assert_failed(&recs, &o, name, "io", "read-only file system");
    }
    assert_eq!(recs.len(), 4, "{recs:?}");
    assert_eq!(contents(&arch), before, "something changed");
    assert_eq!(
        decrypt(&arch.join("a.age"), &k.old).unwrap(),
        plaintext(1, 70_000)
    );
    assert_eq!(
        native_open(&arch.join("c.pqw"), &k.old_pq).unwrap(),
        plaintext(3, 5000)
    );
}

/// A read-only *file* (mode 0444) in a writable directory is re-wrapped, keeping mode 0444.
///
/// Why that is the expected behaviour: the mode bits of a file protect its contents from
/// being written through that inode; they do not protect its name. Whoever may write the
/// directory may replace the name (`rename`), which is exactly how `age`-based tools, `sops`
/// and editors' atomic saves treat such files, and for root the bits would not even stop an
/// in-place write. pqwrap never writes to the original: it writes a new file and renames it
/// over the name, carrying the mode (and owner, times, xattrs) over. So the file stays
/// read-only, and only its key wrap changes. This case runs as the test's own user (no mount
/// needed, never skipped); `as_nobody_a_read_only_file_in_a_writable_directory_is_rewrapped`
/// checks the same without root's privileges.
#[test]
fn read_only_file_in_a_writable_directory_is_rewrapped_keeping_mode_0444() {
    let d = tempfile::tempdir().unwrap();
    let k = keys(d.path(), OldKeys::X25519AndPostQuantum);
    let f = d.path().join("ro.age");
    let data = plaintext(4, 3000);
    encrypt(&f, &[&k.old], &data, false);
    chmod(&f, 0o444);
    let o = run(pqwrap()
        .args(["rewrap", "-i"])
        .arg(&k.old_file)
        .args(["-r", &k.new_pub])
        .arg(&f));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(decrypt(&f, &k.new).unwrap(), data);
    assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o7777, 0o444);
}

/// Runs `pqwrap rewrap` as nobody with nobody's keys (0600, owned by nobody: no warning)
/// over `paths`, the report in `out/r.jsonl`. Returns the output and the records.
fn rewrap_as_nobody(sb: &Sandbox, k: &Keys, paths: &[&Path]) -> (Output, Vec<serde_json::Value>) {
    let rep = sb.root().join("out/r.jsonl");
    let o = run(pqwrap_as_nobody()
        .current_dir(sb.root())
        .args(["rewrap", "-j", "2", "-i"])
        .arg(&k.old_file)
        .args(["-r", &k.new_pub, "--report"])
        .arg(&rep)
        .args(paths));
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("warning"),
        "{}",
        text(&o)
    );
    let recs = report(&rep);
    (o, recs)
}

/// nobody's keys and report directory inside the sandbox.
fn nobody_setup(sb: &Sandbox) -> Keys {
    let keys_dir = sb.root().join("keys");
    let out = sb.root().join("out");
    for d in [&keys_dir, &out] {
        std::fs::create_dir(d).unwrap();
        chown_nobody(d);
    }
    let k = keys(&keys_dir, OldKeys::X25519AndPostQuantum);
    chown_nobody(&k.old_file);
    k
}

/// As nobody, a directory of nobody's with mode 0555: age files need a new directory entry
/// (the temporary), which nobody may not create there, so each is reported failed with
/// "permission denied" and left exactly as it was; exit status 1. A native file there is
/// re-wrapped all the same: its header is re-written in place, which needs write permission
/// on the file (0644, nobody's) and none on the directory.
#[test]
fn as_nobody_a_read_only_directory_reports_each_age_file_and_changes_nothing() {
    let test = "as_nobody_a_read_only_directory_reports_each_age_file_and_changes_nothing";
    let Some(sb) = Sandbox::for_nobody(test) else {
        return;
    };
    let k = nobody_setup(&sb);
    let arch = sb.root().join("arch");
    std::fs::create_dir(&arch).unwrap();
    encrypt(&arch.join("a.age"), &[&k.old], &plaintext(1, 70_000), false);
    encrypt(&arch.join("b.age.asc"), &[&k.old], &plaintext(2, 100), true);
    native(&arch.join("c.pqw"), &[&k.old_pq], &plaintext(3, 5000));
    for name in ["a.age", "b.age.asc", "c.pqw"] {
        chown_nobody(&arch.join(name));
    }
    chown_nobody(&arch);
    chmod(&arch, 0o555);
    let before = contents(&arch);

    let (o, recs) = rewrap_as_nobody(&sb, &k, &[&arch]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    for name in ["a.age", "b.age.asc"] {
        assert_failed(&recs, &o, name, "io", "permission denied");
    }
    assert_eq!(recs.len(), 3, "{recs:?}");
    let after = contents(&arch);
    for name in ["a.age", "b.age.asc"] {
        assert_eq!(after[Path::new(name)], before[Path::new(name)], "{name}");
    }
    assert_eq!(after.len(), 3, "no temporary left: {after:?}");
    assert_eq!(
        decrypt(&arch.join("a.age"), &k.old).unwrap(),
        plaintext(1, 70_000)
    );
    assert_eq!(rec(&recs, "c.pqw")["outcome"], "rewrapped");
    assert_eq!(
        native_open(&arch.join("c.pqw"), &k.new).unwrap(),
        plaintext(3, 5000)
    );
}

/// As nobody, a file of nobody's with mode 0000 (and a directory with mode 0000): they cannot
/// be opened, so each is reported failed as "unreadable" with "permission denied" (a
/// candidate pqwrap could not check is not a success); the file keeps its bytes and its mode;
/// a readable file beside it is re-wrapped; exit status 1.
#[test]
fn as_nobody_a_file_without_read_permission_is_reported_unreadable() {
    let test = "as_nobody_a_file_without_read_permission_is_reported_unreadable";
    let Some(sb) = Sandbox::for_nobody(test) else {
        return;
    };
    let k = nobody_setup(&sb);
    let arch = sb.root().join("arch");
    std::fs::create_dir_all(arch.join("closed")).unwrap();
    let secret = arch.join("secret.age");
    encrypt(&secret, &[&k.old], &plaintext(5, 2000), false);
    encrypt(&arch.join("ok.age"), &[&k.old], &plaintext(6, 2000), false);
    encrypt(
        &arch.join("closed/inner.age"),
        &[&k.old],
        &plaintext(7, 10),
        false,
    );
    for p in ["secret.age", "ok.age", "closed/inner.age", "closed", ""] {
        chown_nobody(&arch.join(p));
    }
    chmod(&secret, 0o000);
    chmod(&arch.join("closed"), 0o000);
    let before = contents(&arch);

    let (o, recs) = rewrap_as_nobody(&sb, &k, &[&arch]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert_failed(&recs, &o, "secret.age", "unreadable", "permission denied");
    assert_failed(&recs, &o, "closed", "unreadable", "permission denied");
    assert_eq!(rec(&recs, "ok.age")["outcome"], "rewrapped");
    assert_eq!(recs.len(), 3, "{recs:?}");
    let after = contents(&arch);
    for name in ["secret.age", "closed/inner.age"] {
        assert_eq!(after[Path::new(name)], before[Path::new(name)], "{name}");
    }
    assert_eq!(after.len(), 3, "no temporary left: {after:?}");
    assert_eq!(std::fs::metadata(&secret).unwrap().mode() & 0o7777, 0);
    assert_eq!(decrypt(&secret, &k.old).unwrap(), plaintext(5, 2000));
    assert_eq!(
        decrypt(&arch.join("ok.age"), &k.new).unwrap(),
        plaintext(6, 2000)
    );
}

/// As nobody, a read-only file (0444, nobody's) in nobody's writable directory: re-wrapped,
/// keeping mode 0444 and its owner (see
/// `read_only_file_in_a_writable_directory_is_rewrapped_keeping_mode_0444` for why); exit 0.
#[test]
fn as_nobody_a_read_only_file_in_a_writable_directory_is_rewrapped() {
    let test = "as_nobody_a_read_only_file_in_a_writable_directory_is_rewrapped";
    let Some(sb) = Sandbox::for_nobody(test) else {
        return;
    };
    let k = nobody_setup(&sb);
    let arch = sb.root().join("arch");
    std::fs::create_dir(&arch).unwrap();
    chown_nobody(&arch);
    let f = arch.join("ro.age");
    encrypt(&f, &[&k.old], &plaintext(8, 90_000), false);
    chown_nobody(&f);
    chmod(&f, 0o444);
    let ino = std::fs::metadata(&f).unwrap().ino();

    let (o, recs) = rewrap_as_nobody(&sb, &k, &[&f]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rec(&recs, "ro.age")["outcome"], "rewrapped");
    let m = std::fs::metadata(&f).unwrap();
    assert_ne!(m.ino(), ino, "replaced by rename, not written through");
    assert_eq!(m.mode() & 0o7777, 0o444);
    assert_eq!((m.uid(), m.gid()), (NOBODY, NOBODY));
    assert_eq!(decrypt(&f, &k.new).unwrap(), plaintext(8, 90_000));
    assert_eq!(temporaries(&arch), Vec::<PathBuf>::new());
}

/// The audit log on a filesystem that fills up: a batch's lines that do not fit are cut off
/// again, so the log still verifies and holds exactly one line per file reported
/// re-wrapped; the files whose lines could not be written are reported failed, naming the
/// audit log (they were re-wrapped: a re-run reports them done).
#[test]
fn a_full_disk_under_the_audit_log_leaves_it_verifiable() {
    let Some(sb) = Sandbox::new(
        "a_full_disk_under_the_audit_log_leaves_it_verifiable",
        "size=8k,mode=0755",
    ) else {
        return;
    };
    let k = keys(sb.tmp.path(), OldKeys::X25519AndPostQuantum);
    // The archive is outside the tiny tmpfs; only the log is on it.
    let arch = sb.tmp.path().join("arch");
    std::fs::create_dir(&arch).unwrap();
    for i in 0..60 {
        encrypt(&arch.join(format!("f{i:02}.age")), &[&k.old], b"x", false);
    }
    let log = sb.root().join("audit.jsonl");
    let rep = sb.tmp.path().join("r.jsonl");
    let o = run(pqwrap()
        .args(["rewrap", "-i"])
        .arg(&k.old_file)
        .args(["-r", &k.new_pub, "--report"])
        .arg(&rep)
        .arg("--audit-log")
        .arg(&log)
        .arg(&arch));
    assert_eq!(code(&o), 1, "60 lines cannot fit in 8 KiB: {}", text(&o));
    let recs = report(&rep);
    let rewrapped = recs.iter().filter(|r| r["outcome"] == "rewrapped").count();
    let unlogged: Vec<_> = recs.iter().filter(|r| r["outcome"] == "failed").collect();
    assert_eq!(rewrapped + unlogged.len(), 60, "{recs:?}");
    assert!(!unlogged.is_empty());
    for r in &unlogged {
        let err = r["error"].as_str().unwrap_or_default();
        assert!(err.contains("audit log"), "{r}");
    }
    let v = run(pqwrap().args(["audit", "verify"]).arg(&log));
    assert_eq!(code(&v), 0, "the log must still verify: {}", text(&v));
    let lines = std::fs::read_to_string(&log).unwrap().lines().count();
    assert_eq!(lines, rewrapped, "one line per file reported re-wrapped");
}
