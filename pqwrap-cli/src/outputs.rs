//! The files a re-wrap run writes itself (its report, its audit log), guarded so that an
//! option can never destroy what the run is about: no such file lies inside a tree being
//! re-wrapped, none is a key file, a report only ever replaces an earlier report, and no
//! final-component symlink is followed. Everything is checked before anything is written.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use pqwrap_core::audit::AuditLog;
use rustix::fs::{Mode, OFlags};

type Inode = (u64, u64);

#[allow(clippy::unnecessary_cast)]
fn inode_of(fd: &OwnedFd) -> std::io::Result<Inode> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// What the run's own outputs must stay clear of.
pub struct Guard {
    /// Directories being re-wrapped (roots, followed as the walk follows them), with a name.
    dirs: Vec<(Inode, PathBuf)>,
    /// Files given as roots.
    files: HashSet<Inode>,
    /// Identity and recipients files.
    keys: HashSet<Inode>,
}

impl Guard {
    /// The guard for a run over `roots` with key files `keys`.
    pub fn new(roots: &[PathBuf], keys: &[&Path]) -> Guard {
        let mut dirs = Vec::new();
        let mut files = HashSet::new();
        for r in roots {
            match std::fs::metadata(r) {
                Ok(m) if m.is_dir() => dirs.push(((m.dev(), m.ino()), r.clone())),
                Ok(m) => {
                    files.insert((m.dev(), m.ino()));
                }
                Err(_) => {}
            }
        }
        let keys = keys
            .iter()
            .filter_map(|k| std::fs::metadata(k).ok())
            .map(|m| (m.dev(), m.ino()))
            .collect();
        Guard { dirs, files, keys }
    }

    /// Refuses `path` if it is a symlink, a key file, a file being re-wrapped, or lies inside a
    /// tree being re-wrapped. Its ancestors are found through the kernel (`..` of an open
    /// directory, one level at a time), so neither symlinks nor bind mounts hide a tree.
    pub fn check(&self, path: &Path, what: &str) -> Result<()> {
        let shown = path.display();
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                bail!("{what} {shown} is a symbolic link: refusing to write through it")
            }
            Ok(m) if self.keys.contains(&(m.dev(), m.ino())) => {
                bail!("{what} {shown} is an identity or recipients file: refusing to write it")
            }
            Ok(m) if self.files.contains(&(m.dev(), m.ino())) => {
                bail!("{what} {shown} is a file being re-wrapped: refusing to write it")
            }
            _ => {}
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut dir = rustix::fs::open(
            parent,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open the directory of {what} {shown}"))?;
        let mut here = inode_of(&dir)?;
        loop {
            if let Some((_, root)) = self.dirs.iter().find(|(i, _)| *i == here) {
                bail!(
                    "{what} {shown} lies inside {}, which is being re-wrapped: put it \
                     elsewhere",
                    root.display()
                );
            }
            let up = rustix::fs::openat(
                &dir,
                "..",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let above = inode_of(&up)?;
            if above == here {
                return Ok(());
            }
            (dir, here) = (up, above);
        }
    }
}

/// Opens (creating, mode 0640) the audit log at `path` after the guard's checks, without
/// following a final symlink, and verifies its chain. Returns the file (to exclude it from
/// the walk) and the log.
pub fn open_audit_log(path: &Path, guard: &Guard) -> Result<(File, AuditLog)> {
    guard.check(path, "the audit log")?;
    let fd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o640),
    )
    .with_context(|| format!("cannot open the audit log {}", path.display()))?;
    let file = File::from(fd);
    let log = AuditLog::from_file(file.try_clone()?)
        .with_context(|| format!("cannot open the audit log {}", path.display()))?;
    Ok((file, log))
}

/// The report file of a run: new (created with `O_EXCL | O_NOFOLLOW`), or a temporary that
/// replaces an earlier report when the run ends.
pub enum ReportFile {
    /// A file that did not exist.
    New(File),
    /// A temporary beside an earlier report, renamed over it by [`ReportFile::finish`].
    Replacing(tempfile::NamedTempFile, PathBuf),
}

/// Whether the first line of `file` is a record of a pqwrap report (or the file is empty).
fn is_report(file: &File) -> bool {
    let mut line = String::new();
    let mut r = BufReader::new(file.take(64 * 1024));
    if r.read_line(&mut line).is_err() {
        return false;
    }
    if line.is_empty() {
        return true;
    }
    serde_json::from_str::<serde_json::Value>(&line).is_ok_and(|v| {
        v.get("path").is_some_and(serde_json::Value::is_string)
            && v.get("outcome").is_some_and(serde_json::Value::is_string)
    })
}

impl ReportFile {
    /// Creates the report at `path`, after the guard's checks.
    pub fn create(path: &Path, guard: &Guard, _dry_run: bool) -> Result<ReportFile> {
        guard.check(path, "the report")?;
        let shown = path.display();
        match rustix::fs::open(
            path,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(fd) => return Ok(ReportFile::New(File::from(fd))),
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("cannot create the report {shown}"));
            }
        }
        let existing = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(File::from)
        .with_context(|| format!("cannot open the existing report {shown}"))?;
        if !existing.metadata()?.is_file() || !is_report(&existing) {
            bail!(
                "the report {shown} exists and is not a pqwrap report: refusing to overwrite \
                 it (remove it, or choose another name)"
            );
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".pqwrap-report-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a file beside {shown}"))?;
        Ok(ReportFile::Replacing(temp, path.to_path_buf()))
    }

    /// The file written to.
    pub fn file(&self) -> &File {
        match self {
            ReportFile::New(f) => f,
            ReportFile::Replacing(t, _) => t.as_file(),
        }
    }

    /// A writer on it.
    pub fn writer(&self) -> Result<File> {
        Ok(self.file().try_clone()?)
    }

    /// Puts a replacing report in place of the earlier one.
    pub fn finish(self) -> Result<()> {
        match self {
            ReportFile::New(_) => Ok(()),
            ReportFile::Replacing(temp, path) => {
                temp.persist(&path)
                    .with_context(|| format!("cannot replace the report {}", path.display()))?;
                Ok(())
            }
        }
    }
}
