//! Walking the trees named on the command line, as a stream.
//!
//! The walk is an iterator over `walkdir`'s iterator: nothing is collected, so memory does not
//! grow with the number of files (walkdir holds one open directory per level, and buffers the
//! rest of a directory's entries only past its open-handle limit). Symbolic links are never
//! followed below the roots; a root that is a symlink to a directory is followed (like
//! `find -H`), because `pqwrap rewrap /archive` with `/archive -> /mnt/data` is a normal thing to
//! type, but a symlink to a file is reported and never replaced (renaming over it would turn
//! the link into a regular file).
//!
//! Our own temporaries are recognised by name (see [`is_temp_name`]): they are never picked up
//! as candidates and never descended into; a run may remove the ones a killed run left behind
//! ([`remove_leftover`]).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};

/// The marker between the original name and the random suffix of a temporary.
pub const TEMP_MARKER: &str = ".pqwrap-tmp-";
/// Length of the suffix: 16 lowercase hex digits (64 bits, see [`temp_name_for`]).
const TEMP_RANDOM_HEX: usize = 16;
/// Linux NAME_MAX: a temporary's name must fit, so long original names are shortened in it.
const NAME_MAX: usize = 255;

/// What the walk found at one path.
#[derive(Debug)]
pub enum Entry {
    /// A regular file: a candidate for the job.
    File(PathBuf),
    /// A symbolic link (never followed, never replaced).
    Symlink(PathBuf),
    /// A FIFO, socket or device node (never opened: opening a FIFO would block).
    Special(PathBuf),
    /// A file whose name is one of our temporaries (`.<name>.pqwrap-tmp-<16 hex>`).
    Temporary(PathBuf),
    /// A directory with a temporary's name: not descended into.
    TemporaryDir(PathBuf),
    /// A path that could not be read (a directory we may not list, a vanished root, a loop).
    Unreadable {
        /// The path, when walkdir knows it.
        path: PathBuf,
        /// What went wrong.
        error: String,
    },
}

/// Streams the entries under `roots`, in walk order, without collecting them.
pub fn walk(roots: &[PathBuf]) -> Walk {
    Walk {
        roots: Vec::from(roots).into_iter(), // owned: the walk outlives the caller's slice
        current: None,
    }
}

/// The streaming walk returned by [`walk`].
pub struct Walk {
    roots: std::vec::IntoIter<PathBuf>,
    current: Option<walkdir::IntoIter>,
}

impl Iterator for Walk {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        loop {
            let Some(it) = self.current.as_mut() else {
                let root = self.roots.next()?;
                self.current = Some(
                    walkdir::WalkDir::new(root)
                        .follow_links(false)
                        .follow_root_links(true)
                        .into_iter(),
                );
                continue;
            };
            match it.next() {
                None => self.current = None,
                // A root that is a symlink to a directory: walkdir follows it; nothing to report.
                Some(Ok(e))
                    if e.depth() == 0
                        && e.path_is_symlink()
                        && std::fs::metadata(e.path()).is_ok_and(|m| m.is_dir()) => {}
                Some(Ok(e)) if e.file_type().is_dir() => {
                    if e.depth() > 0 && is_temp_name(e.file_name()) {
                        it.skip_current_dir();
                        return Some(Entry::TemporaryDir(e.into_path()));
                    }
                }
                Some(res) => {
                    if let Some(entry) = classify(res) {
                        return Some(entry);
                    }
                }
            }
        }
    }
}

fn classify(res: walkdir::Result<walkdir::DirEntry>) -> Option<Entry> {
    let entry = match res {
        Ok(e) => e,
        Err(err) => {
            let path = err.path().map(Path::to_path_buf).unwrap_or_default();
            let error = match err.io_error() {
                Some(io) => io.to_string(),
                None => err.to_string(),
            };
            return Some(Entry::Unreadable { path, error });
        }
    };
    let ft = entry.file_type();
    let depth = entry.depth();
    let path = entry.into_path();
    if ft.is_dir() {
        return None;
    }
    if ft.is_symlink() {
        return Some(Entry::Symlink(path));
    }
    let temp = path.file_name().is_some_and(is_temp_name);
    if ft.is_file() {
        // A root given as a symlink to a file: walkdir reports the target's type, but the
        // path itself is a link and must not be renamed over.
        if depth == 0 && std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink())
        {
            return Some(Entry::Symlink(path));
        }
        return Some(if temp {
            Entry::Temporary(path)
        } else {
            Entry::File(path)
        });
    }
    Some(Entry::Special(path))
}

/// Whether `name` is exactly a temporary's name: `.` + anything + `.pqwrap-tmp-` + 16
/// lowercase hex digits. Nothing else is ever removed by [`remove_leftover`].
pub fn is_temp_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    let suffix_len = TEMP_MARKER.len() + TEMP_RANDOM_HEX;
    if b.len() < 1 + suffix_len || b.first() != Some(&b'.') {
        return false;
    }
    let (head, tail) = b.split_at(b.len() - suffix_len);
    let (marker, hex) = tail.split_at(TEMP_MARKER.len());
    !head.is_empty()
        && marker == TEMP_MARKER.as_bytes()
        && hex
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// A fresh temporary name for `name`: `.<name>.pqwrap-tmp-<16 hex digits>`, the name
/// shortened (by bytes) if the result would exceed NAME_MAX.
///
/// The 16 digits are a random 64-bit start, drawn once per process, plus a counter: unique
/// within the run and unguessable before it starts, without a `getrandom` call per file. They
/// need not be secret: the temporary is created with `O_EXCL | O_NOFOLLOW`, so a name someone
/// planted fails the create (which retries with [`random_temp_name_for`]) and is never
/// followed or written through.
pub fn temp_name_for(name: &OsStr) -> io::Result<OsString> {
    let start = match TEMP_START.get() {
        Some(s) => *s,
        None => {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
            *TEMP_START.get_or_init(|| u64::from_le_bytes(b))
        }
    };
    let n = TEMP_NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(temp_name_with(name, start.wrapping_add(n)))
}

/// This process's temporary-name sequence: a random start and how many names were taken.
static TEMP_START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
static TEMP_NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether `name` (a temporary's name) came from this process's [`temp_name_for`]: the walk
/// meets the job's own temporaries in directories it is still listing, and must neither
/// report them nor try to clean them up.
pub fn is_own_temp_name(name: &OsStr) -> bool {
    let Some(start) = TEMP_START.get() else {
        return false;
    };
    let b = name.as_bytes();
    let Some(hex) = b.get(b.len().saturating_sub(TEMP_RANDOM_HEX)..) else {
        return false;
    };
    let Some(suffix) = std::str::from_utf8(hex)
        .ok()
        .and_then(|h| u64::from_str_radix(h, 16).ok())
    else {
        return false;
    };
    is_temp_name(name)
        && suffix.wrapping_sub(*start) < TEMP_NEXT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Like [`temp_name_for`], with all 64 bits of the suffix fresh from the OS.
pub fn random_temp_name_for(name: &OsStr) -> io::Result<OsString> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(temp_name_with(name, u64::from_le_bytes(b)))
}

fn temp_name_with(name: &OsStr, suffix: u64) -> OsString {
    let room = NAME_MAX - 1 - TEMP_MARKER.len() - TEMP_RANDOM_HEX;
    let base = name.as_bytes();
    let base = base.get(..room.min(base.len())).unwrap_or(base);
    let mut out = Vec::with_capacity(NAME_MAX);
    out.push(b'.');
    out.extend_from_slice(base);
    out.extend_from_slice(TEMP_MARKER.as_bytes());
    out.extend_from_slice(format!("{suffix:016x}").as_bytes());
    OsString::from_vec(out)
}

/// What became of a leftover temporary.
#[derive(Debug, PartialEq, Eq)]
pub enum Leftover {
    /// Removed: no process held its lock, so the run that made it is gone.
    Removed,
    /// Another process holds its lock: a run in progress owns it; left alone.
    InUse,
    /// Gone before we got to it: a running job renamed or removed it (its normal end).
    Gone,
    /// Named like a temporary, but its contents are not a pqwrap output: left alone.
    NotOurs,
}

/// Removes a temporary left behind by a killed run.
///
/// A running job holds an exclusive `flock` on each of its temporaries from creation until
/// rename (see `commit::stage`), and the kernel drops that lock when the process dies, even by
/// SIGKILL. So a temporary whose lock we can take belongs to no living run. We also check that
/// the name still refers to the inode we locked before unlinking, so we never remove a file that
/// replaced it meanwhile.
pub fn remove_leftover(path: &Path, is_own_output: &dyn Fn(&[u8]) -> bool) -> io::Result<Leftover> {
    let name = path
        .file_name()
        .filter(|n| is_temp_name(n))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a pqwrap temporary"))?;
    let dir = open_parent(path)?;
    let fd = match rustix::fs::openat(
        &dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(Leftover::Gone),
        Err(e) => return Err(e.into()),
    };
    let file = File::from(fd);
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Ok(Leftover::InUse),
        Err(e) => return Err(e.into()),
    }
    let mut head = [0u8; 64];
    let n = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0)?;
    if !is_own_output(head.get(..n).unwrap_or_default()) {
        return Ok(Leftover::NotOurs);
    }
    let now = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(Leftover::Gone),
        Err(e) => return Err(e.into()),
    };
    #[allow(clippy::unnecessary_cast)]
    if now.st_dev as u64 != meta.dev() || now.st_ino as u64 != meta.ino() {
        return Ok(Leftover::InUse);
    }
    match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
        Ok(()) => Ok(Leftover::Removed),
        Err(rustix::io::Errno::NOENT) => Ok(Leftover::Gone),
        Err(e) => Err(e.into()),
    }
}

/// Opens the directory containing `path` (`.` for a bare name), for `*at` calls.
pub fn open_parent(path: &Path) -> io::Result<rustix::fd::OwnedFd> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    open_dir(parent)
}

/// Opens the directory `dir`, for `*at` calls.
pub fn open_dir(dir: &Path) -> io::Result<rustix::fd::OwnedFd> {
    Ok(rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn temp_names_round_trip_and_nothing_else_matches() {
        let t = temp_name_for(OsStr::new("secret.age")).unwrap();
        assert!(is_temp_name(&t), "{t:?}");
        assert!(t.as_bytes().starts_with(b".secret.age.pqwrap-tmp-"));
        assert_eq!(t.len(), 1 + 10 + TEMP_MARKER.len() + 16);
        for not in [
            "secret.age",
            ".secret.age.pqwrap-tmp-",
            ".secret.age.pqwrap-tmp-0123456789abcdeg",
            ".secret.age.pqwrap-tmp-0123456789ABCDEF",
            ".secret.age.pqwrap-tmp-0123456789abcdef0",
            "x.pqwrap-tmp-0123456789abcdef",
            "..pqwrap-tmp-0123456789abcdef",
        ] {
            let expect = not == "..pqwrap-tmp-0123456789abcdef";
            assert_eq!(is_temp_name(OsStr::new(not)), expect, "{not}");
        }
        // A name at NAME_MAX still gives a legal temporary name.
        let long = "a".repeat(255);
        let t = temp_name_for(OsStr::new(&long)).unwrap();
        assert_eq!(t.len(), 255);
        assert!(is_temp_name(&t));
        // Two calls differ.
        assert_ne!(
            temp_name_for(OsStr::new("x")).unwrap(),
            temp_name_for(OsStr::new("x")).unwrap()
        );
    }

    fn kinds(root: &Path) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = walk(&[root.to_path_buf()])
            .map(|e| {
                let (k, p) = match e {
                    Entry::File(p) => ("file", p),
                    Entry::Symlink(p) => ("symlink", p),
                    Entry::Special(p) => ("special", p),
                    Entry::Temporary(p) => ("temporary", p),
                    Entry::TemporaryDir(p) => ("tempdir", p),
                    Entry::Unreadable { path, .. } => ("unreadable", path),
                };
                let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
                (k.to_string(), rel)
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn walk_classifies_and_does_not_follow_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::write(r.join("top"), b"x").unwrap();
        std::fs::write(r.join("a/b/deep"), b"x").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("elsewhere"), b"x").unwrap();
        symlink(outside.path(), r.join("a/linkdir")).unwrap();
        symlink(r.join("top"), r.join("linkfile")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("fifo"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let tmp = temp_name_for(OsStr::new("top")).unwrap();
        std::fs::write(r.join(&tmp), b"x").unwrap();
        let tmpdir = temp_name_for(OsStr::new("dir")).unwrap();
        std::fs::create_dir(r.join(&tmpdir)).unwrap();
        std::fs::write(r.join(&tmpdir).join("inside"), b"x").unwrap();

        let got = kinds(r);
        let tmp = tmp.to_string_lossy().into_owned();
        let mut want = vec![
            ("file".to_string(), "a/b/deep".to_string()),
            ("file".into(), "top".into()),
            ("special".into(), "fifo".into()),
            ("symlink".into(), "a/linkdir".into()),
            ("symlink".into(), "linkfile".into()),
            ("temporary".into(), tmp),
            ("tempdir".into(), tmpdir.to_string_lossy().into_owned()),
        ];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn symlink_roots_to_dirs_are_followed_to_files_are_not() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::fs::write(d.path().join("real/f"), b"x").unwrap();
        symlink(d.path().join("real"), d.path().join("via")).unwrap();
        symlink(d.path().join("real/f"), d.path().join("flink")).unwrap();
        let files: Vec<_> = walk(&[d.path().join("via"), d.path().join("flink")]).collect();
        assert!(
            matches!(&files[0], Entry::File(p) if p.ends_with("via/f")),
            "{files:?}"
        );
        assert!(
            matches!(&files[1], Entry::Symlink(p) if p.ends_with("flink")),
            "{files:?}"
        );
        assert_eq!(files.len(), 2);
    }

    #[test]
    fn missing_root_is_unreadable() {
        let d = tempfile::tempdir().unwrap();
        let got: Vec<_> = walk(&[d.path().join("nope")]).collect();
        assert!(matches!(&got[..], [Entry::Unreadable { .. }]), "{got:?}");
    }

    /// What `FormatJob` accepts as its own output.
    fn age_or_native(head: &[u8]) -> bool {
        use crate::rewrap::Job;
        crate::rewrap::formats::FormatJob::new(Vec::new(), Vec::new(), false, false, false)
            .is_own_output(head)
    }

    #[test]
    fn leftover_removed_only_when_unlocked() {
        let d = tempfile::tempdir().unwrap();
        let name = temp_name_for(OsStr::new("f")).unwrap();
        let p = d.path().join(&name);
        std::fs::write(&p, b"age-encryption.org/v1\n-> X25519 ").unwrap();
        // Held by a "live run": left alone.
        let holder = File::open(&p).unwrap();
        rustix::fs::flock(&holder, FlockOperation::LockExclusive).unwrap();
        assert_eq!(
            remove_leftover(&p, &age_or_native).unwrap(),
            Leftover::InUse
        );
        assert!(p.exists());
        drop(holder);
        assert_eq!(
            remove_leftover(&p, &age_or_native).unwrap(),
            Leftover::Removed
        );
        assert!(!p.exists());
        // Refuses anything not named like a temporary.
        let other = d.path().join("f");
        std::fs::write(&other, b"data").unwrap();
        assert!(remove_leftover(&other, &age_or_native).is_err());
        assert!(other.exists());
    }

    #[test]
    fn a_file_named_like_a_temporary_without_a_pqwrap_start_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".notes.pqwrap-tmp-0123456789abcdef");
        std::fs::write(&p, b"precious").unwrap();
        assert_eq!(
            remove_leftover(&p, &age_or_native).unwrap(),
            Leftover::NotOurs
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"precious");
        // Empty, or any part of a header's first line: what a killed run leaves.
        for start in [
            &b""[..],
            b"age-enc",
            b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl",
            &pqwrap_core::envelope::MAGIC[..3],
        ] {
            std::fs::write(&p, start).unwrap();
            assert_eq!(
                remove_leftover(&p, &age_or_native).unwrap(),
                Leftover::Removed,
                "{start:?}"
            );
        }
        // Already gone (a live run renamed it): nothing to report.
        assert_eq!(remove_leftover(&p, &age_or_native).unwrap(), Leftover::Gone);
    }

    #[test]
    fn this_processs_own_temporaries_are_recognised() {
        let mine = temp_name_for(OsStr::new("f.age")).unwrap();
        assert!(is_own_temp_name(&mine));
        // Another process's sequence (or a planted name) is not ours.
        let suffix = u64::from_str_radix(
            std::str::from_utf8(&mine.as_bytes()[mine.len() - 16..]).unwrap(),
            16,
        )
        .unwrap();
        let far = temp_name_with(OsStr::new("f.age"), suffix.wrapping_add(1 << 40));
        assert!(!is_own_temp_name(&far));
        assert!(!is_own_temp_name(OsStr::new("f.age")));
    }
}
