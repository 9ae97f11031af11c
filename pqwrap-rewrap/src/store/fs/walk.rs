//! Walking the trees under the roots, by directory descriptors, as a stream.
//!
//! Each directory is opened relative to its parent's descriptor, one component at a time,
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` (or
//! `O_NOFOLLOW | O_DIRECTORY` where openat2 is missing), and every file is later opened,
//! staged, renamed and unlinked relative to the descriptor of the directory it was listed
//! in. Nothing below a root is resolved by path again, so swapping a directory of the tree
//! for a symlink while the walk runs cannot lead it outside: the swapped name is a symlink,
//! and symlinks are reported, never followed.
//!
//! A root is opened by its path, as the user typed it: a root that is a symlink to a
//! directory is followed (like `find -H`), a symlink to a file is reported and never
//! replaced. Each directory (device, inode) is walked once per run whatever the roots (one
//! root inside another, a bind mount of a directory inside the tree), and a file given as a
//! root is not met again through a directory.
//!
//! Memory: one open directory (two descriptors) per level of the current path, and the set
//! of directories walked; nothing grows with the number of files.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::temp::is_temp_name;
use crate::error::Skip;
use crate::store::Listed;

/// An open directory of the walk.
#[derive(Debug)]
pub struct DirFd {
    /// The descriptor every `*at` call of its files goes through.
    pub fd: OwnedFd,
    /// Its path as walked (for names in reports only; never opened again).
    pub path: PathBuf,
}

/// A file met by the walk: its directory's descriptor and its name there.
#[derive(Debug, Clone)]
pub struct FsEntry {
    /// The directory it was listed in.
    pub dir: Arc<DirFd>,
    /// Its name in that directory.
    pub name: OsString,
    /// Its path as walked, for reports.
    pub path: PathBuf,
    /// Given as a root itself (not met through a directory).
    pub is_root: bool,
}

/// The identity of an inode.
pub type Inode = (u64, u64);

/// Opens `name` in `dir` as a directory without following any symlink or leaving `dir`.
fn open_subdir(dir: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(dir, name, flags, Mode::empty(), resolve) {
        Err(Errno::NOSYS) => Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?),
        r => Ok(r?),
    }
}

/// Opens a directory named by the user (a root, or a root file's parent), following links.
pub fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

#[allow(clippy::unnecessary_cast)]
fn inode_of(fd: &OwnedFd) -> io::Result<Inode> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// The inodes of the roots that are regular files (followed if they are symlinks: the check
/// that a root link is not replaced happens when it is met).
pub fn root_files(roots: &[PathBuf]) -> HashSet<Inode> {
    roots
        .iter()
        .filter_map(|r| std::fs::symlink_metadata(r).ok())
        .filter(|m| m.is_file())
        .map(|m| (m.dev(), m.ino()))
        .collect()
}

struct Level {
    dir: Arc<DirFd>,
    iter: rustix::fs::Dir,
}

/// The streaming walk.
pub struct Walk<'a> {
    roots: std::slice::Iter<'a, PathBuf>,
    stack: Vec<Level>,
    /// Directories already walked (or being walked).
    visited: HashSet<Inode>,
    /// Root files already yielded.
    roots_seen: HashSet<Inode>,
}

impl<'a> Walk<'a> {
    /// Walks `roots` in order.
    pub fn new(roots: &'a [PathBuf]) -> Self {
        Walk {
            roots: roots.iter(),
            stack: Vec::new(),
            visited: HashSet::new(),
            roots_seen: HashSet::new(),
        }
    }

    /// Starts walking the directory `fd` named `path`, unless it was walked already.
    fn enter(&mut self, fd: OwnedFd, path: PathBuf) -> Option<Listed<FsEntry>> {
        let inode = match inode_of(&fd) {
            Ok(i) => i,
            Err(error) => return Some(Listed::Unreadable { name: path, error }),
        };
        if !self.visited.insert(inode) {
            return None;
        }
        let iter = match rustix::fs::Dir::read_from(&fd) {
            Ok(it) => it,
            Err(e) => {
                return Some(Listed::Unreadable {
                    name: path,
                    error: e.into(),
                });
            }
        };
        self.stack.push(Level {
            dir: Arc::new(DirFd { fd, path }),
            iter,
        });
        None
    }

    /// The next root: a directory to enter, or an entry of its own.
    fn root(&mut self, root: &Path) -> Option<Listed<FsEntry>> {
        let meta = match std::fs::symlink_metadata(root) {
            Ok(m) => m,
            Err(error) => {
                return Some(Listed::Unreadable {
                    name: root.to_path_buf(),
                    error,
                });
            }
        };
        let ft = meta.file_type();
        let is_dir =
            ft.is_dir() || (ft.is_symlink() && std::fs::metadata(root).is_ok_and(|m| m.is_dir()));
        if is_dir {
            return match open_dir_path(root) {
                Ok(fd) => self.enter(fd, root.to_path_buf()),
                Err(error) => Some(Listed::Unreadable {
                    name: root.to_path_buf(),
                    error,
                }),
            };
        }
        if ft.is_symlink() {
            // A link to a file: renaming over it would turn the link into a regular file.
            return Some(Listed::Skipped {
                name: root.to_path_buf(),
                skip: Skip::Symlink,
            });
        }
        if !ft.is_file() {
            return Some(Listed::Skipped {
                name: root.to_path_buf(),
                skip: Skip::SpecialFile,
            });
        }
        if !self.roots_seen.insert((meta.dev(), meta.ino())) {
            return None;
        }
        let Some(name) = root.file_name() else {
            return Some(Listed::Unreadable {
                name: root.to_path_buf(),
                error: io::Error::other("path has no file name"),
            });
        };
        let parent = match root.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = match open_dir_path(parent) {
            Ok(fd) => Arc::new(DirFd {
                fd,
                path: parent.to_path_buf(),
            }),
            Err(error) => {
                return Some(Listed::Unreadable {
                    name: root.to_path_buf(),
                    error,
                });
            }
        };
        let entry = FsEntry {
            dir,
            name: name.to_os_string(),
            path: root.to_path_buf(),
            is_root: true,
        };
        Some(if is_temp_name(name) {
            Listed::Leftover(entry)
        } else {
            Listed::Candidate(entry)
        })
    }

    /// One entry of the directory on top of the stack.
    fn entry(&mut self, dir: &Arc<DirFd>, name: &OsStr, ft: FileType) -> Option<Listed<FsEntry>> {
        let path = dir.path.join(name);
        let ft = if ft == FileType::Unknown {
            // Filesystems that do not fill in d_type.
            match rustix::fs::statat(&dir.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => FileType::from_raw_mode(st.st_mode),
                Err(Errno::NOENT) => return None,
                Err(e) => {
                    return Some(Listed::Unreadable {
                        name: path,
                        error: e.into(),
                    });
                }
            }
        } else {
            ft
        };
        match ft {
            FileType::Directory => {
                if is_temp_name(name) {
                    return Some(Listed::Skipped {
                        name: path,
                        skip: Skip::TemporaryDirectory,
                    });
                }
                match open_subdir(&dir.fd, name) {
                    Ok(fd) => self.enter(fd, path),
                    // Swapped for a symlink since it was listed: never followed.
                    Err(e) if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
                        Some(Listed::Skipped {
                            name: path,
                            skip: Skip::Symlink,
                        })
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                    Err(error) => Some(Listed::Unreadable { name: path, error }),
                }
            }
            FileType::Symlink => Some(Listed::Skipped {
                name: path,
                skip: Skip::Symlink,
            }),
            FileType::RegularFile => {
                let entry = FsEntry {
                    dir: Arc::clone(dir),
                    name: name.to_os_string(),
                    path,
                    is_root: false,
                };
                Some(if is_temp_name(name) {
                    Listed::Leftover(entry)
                } else {
                    Listed::Candidate(entry)
                })
            }
            _ => Some(Listed::Skipped {
                name: path,
                skip: Skip::SpecialFile,
            }),
        }
    }
}

impl Iterator for Walk<'_> {
    type Item = Listed<FsEntry>;

    fn next(&mut self) -> Option<Listed<FsEntry>> {
        loop {
            let Some(level) = self.stack.last_mut() else {
                let root = self.roots.next()?;
                if let Some(item) = self.root(root) {
                    return Some(item);
                }
                continue;
            };
            match level.iter.read() {
                None => {
                    self.stack.pop();
                }
                Some(Err(e)) => {
                    let name = level.dir.path.clone();
                    self.stack.pop();
                    return Some(Listed::Unreadable {
                        name,
                        error: e.into(),
                    });
                }
                Some(Ok(ent)) => {
                    let name = ent.file_name().to_bytes();
                    if name == b"." || name == b".." {
                        continue;
                    }
                    let name = OsStr::from_bytes(name).to_os_string();
                    let ft = ent.file_type();
                    let dir = Arc::clone(&level.dir);
                    if let Some(item) = self.entry(&dir, &name, ft) {
                        return Some(item);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fs::temp::temp_name_for;
    use std::os::unix::fs::symlink;

    fn kinds(roots: &[PathBuf], base: &Path) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = Walk::new(roots)
            .map(|e| {
                let (k, p) = match e {
                    Listed::Candidate(e) => ("file", e.path),
                    Listed::Leftover(e) => ("temporary", e.path),
                    Listed::Skipped { name, skip } => (
                        match skip {
                            Skip::Symlink => "symlink",
                            Skip::SpecialFile => "special",
                            Skip::TemporaryDirectory => "tempdir",
                            _ => "other",
                        },
                        name,
                    ),
                    Listed::Unreadable { name, .. } => ("unreadable", name),
                };
                let rel = p.strip_prefix(base).unwrap_or(&p).display().to_string();
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
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let tmp = temp_name_for(OsStr::new("top")).unwrap();
        std::fs::write(r.join(&tmp), b"x").unwrap();
        let tmpdir = temp_name_for(OsStr::new("dir")).unwrap();
        std::fs::create_dir(r.join(&tmpdir)).unwrap();
        std::fs::write(r.join(&tmpdir).join("inside"), b"x").unwrap();

        let got = kinds(&[r.to_path_buf()], r);
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
        let roots = [d.path().join("via"), d.path().join("flink")];
        let got = kinds(&roots, d.path());
        assert_eq!(
            got,
            vec![
                ("file".to_string(), "via/f".to_string()),
                ("symlink".into(), "flink".into())
            ]
        );
    }

    #[test]
    fn missing_root_is_unreadable() {
        let d = tempfile::tempdir().unwrap();
        let got = kinds(&[d.path().join("nope")], d.path());
        assert_eq!(got, vec![("unreadable".to_string(), "nope".to_string())]);
    }

    #[test]
    fn overlapping_roots_walk_each_directory_once() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("t/sub")).unwrap();
        std::fs::write(r.join("t/f1"), b"x").unwrap();
        std::fs::write(r.join("t/sub/f2"), b"x").unwrap();
        // The subdirectory first, then the tree that holds it, then the tree again.
        let roots = [r.join("t/sub"), r.join("t"), r.join("t")];
        let got = kinds(&roots, r);
        assert_eq!(
            got,
            vec![
                ("file".to_string(), "t/f1".to_string()),
                ("file".into(), "t/sub/f2".into())
            ]
        );
    }
}
