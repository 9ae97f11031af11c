//! The files a re-wrap run writes itself (its report, its audit log), guarded so that an
//! option can never destroy what the run is about: no such file lies inside a tree being
//! re-wrapped, none is a key file, a report only ever replaces an earlier report, and no
//! final-component symlink is followed. Everything is checked before anything is written,
//! and the paths are resolved as every output path is (`io_util::resolve`: through the
//! kernel, one component at a time, never through a link another user planted).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use pqwrap_core::audit::AuditLog;
use rustix::fs::{AtFlags, Mode, OFlags};

use crate::cmd::io_util::{self, Existing, Target};

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

/// Opens (creating, mode 0640) the audit log at `path` after the guard's checks, and
/// verifies its chain. Returns the file (to exclude it from the walk) and the log.
pub fn open_audit_log(path: &Path, guard: &Guard) -> Result<(File, AuditLog)> {
    guard.check(path, "the audit log")?;
    let file = io_util::open_append(path, 0o640)?;
    let log = AuditLog::from_file(file.try_clone()?)
        .with_context(|| format!("cannot open the audit log {}", path.display()))?;
    Ok((file, log))
}

/// Uploads a finished report (to an object store).
pub type UploadFn = Box<dyn FnOnce(File) -> Result<()>>;

/// The report file of a run: new (created with `O_EXCL | O_NOFOLLOW`), or a temporary that
/// replaces an earlier report when the run ends.
pub enum ReportFile {
    /// A file that did not exist.
    New(File),
    /// A temporary beside an earlier report, renamed over it by [`ReportFile::finish`].
    Replacing {
        /// The temporary.
        file: File,
        /// The directory of both.
        dir: OwnedFd,
        /// The temporary's name.
        temp: std::ffi::OsString,
        /// The earlier report's name.
        name: std::ffi::OsString,
        /// The path, for messages.
        shown: PathBuf,
    },
    /// A temporary file handed to an upload by [`ReportFile::finish`] (a report object).
    Upload(File, Option<UploadFn>),
}

/// Whether the first line of `file` is a record of a pqwrap report (or the file is empty).
fn is_report(file: &File) -> bool {
    let mut head = Vec::new();
    if file.take(64 * 1024).read_to_end(&mut head).is_err() {
        return false;
    }
    is_report_bytes(&head)
}

/// Whether `head`, the first bytes of a file or object, starts with a record of a pqwrap
/// report (or is empty).
pub fn is_report_bytes(head: &[u8]) -> bool {
    let mut line = String::new();
    if BufReader::new(head).read_line(&mut line).is_err() {
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
    pub fn create(path: &Path, guard: &Guard) -> Result<ReportFile> {
        guard.check(path, "the report")?;
        let shown = path.display();
        let create = OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match io_util::resolve(path, Existing::Replace)? {
            Target::Absent { dir, name } => {
                let fd = rustix::fs::openat(
                    &dir,
                    &name,
                    OFlags::WRONLY | create,
                    Mode::from_raw_mode(0o644),
                )
                .map_err(std::io::Error::from)
                .with_context(|| format!("cannot create the report {shown}"))?;
                Ok(ReportFile::New(File::from(fd)))
            }
            Target::Regular { dir, name } => {
                let existing = rustix::fs::openat(
                    &dir,
                    &name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map(File::from)
                .map_err(std::io::Error::from)
                .with_context(|| format!("cannot open the existing report {shown}"))?;
                if !is_report(&existing) {
                    bail!(
                        "the report {shown} exists and is not a pqwrap report: refusing to \
                         overwrite it (remove it, or choose another name)"
                    );
                }
                let mut r = [0u8; 8];
                getrandom::fill(&mut r).map_err(|e| anyhow::anyhow!("random: {e}"))?;
                let temp = std::ffi::OsString::from(format!(
                    ".pqwrap-report-{:016x}",
                    u64::from_le_bytes(r)
                ));
                let fd = rustix::fs::openat(
                    &dir,
                    &temp,
                    OFlags::WRONLY | create,
                    Mode::from_raw_mode(0o644),
                )
                .map_err(std::io::Error::from)
                .with_context(|| format!("cannot create a file beside {shown}"))?;
                Ok(ReportFile::Replacing {
                    file: File::from(fd),
                    dir,
                    temp,
                    name,
                    shown: path.to_path_buf(),
                })
            }
            Target::Special(_) => bail!("the report {shown} is not a regular file"),
        }
    }

    /// The file written to.
    pub fn file(&self) -> &File {
        match self {
            ReportFile::New(f)
            | ReportFile::Upload(f, _)
            | ReportFile::Replacing { file: f, .. } => f,
        }
    }

    /// A writer on it.
    pub fn writer(&self) -> Result<File> {
        Ok(self.file().try_clone()?)
    }

    /// Puts a replacing report in place of the earlier one.
    pub fn finish(mut self) -> Result<()> {
        if let ReportFile::Upload(file, upload) = &mut self
            && let Some(upload) = upload.take()
        {
            return upload(file.try_clone()?);
        }
        if let ReportFile::Replacing {
            dir,
            temp,
            name,
            shown,
            ..
        } = &mut self
        {
            rustix::fs::renameat(&*dir, temp.as_os_str(), &*dir, name.as_os_str())
                .map_err(std::io::Error::from)
                .with_context(|| format!("cannot replace the report {}", shown.display()))?;
            // Renamed: nothing left to remove on drop.
            temp.clear();
        }
        Ok(())
    }
}

impl Drop for ReportFile {
    fn drop(&mut self) {
        if let ReportFile::Replacing { dir, temp, .. } = self
            && !temp.is_empty()
        {
            let _ = rustix::fs::unlinkat(&*dir, temp.as_os_str(), AtFlags::empty());
        }
    }
}
