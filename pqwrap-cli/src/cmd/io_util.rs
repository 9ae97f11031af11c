//! Inputs and outputs shared by the commands: a path or standard input; a path or standard
//! output, where a file output only appears, atomically, on success, and an output path is
//! resolved one component at a time; passphrases; strict numbers for the command line; the
//! memory bound handed to scrypt.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rustix::fs::{AtFlags, CWD, Mode, OFlags};
use rustix::io::Errno;

/// An input: a file, or standard input when no path (or `-`) is given.
pub fn open_input(path: Option<&Path>) -> Result<(Box<dyn Read>, String)> {
    match path {
        Some(p) if p != Path::new("-") => {
            let f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            Ok((Box::new(f), p.display().to_string()))
        }
        _ => Ok((Box::new(io::stdin().lock()), "standard input".to_string())),
    }
}

/// Whether an output may take the place of something already at its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Atomically replace an existing regular file (through a symlink: its target; the link
    /// stays). Devices, FIFOs and pipes are written in place.
    Replace,
    /// Only create: anything already at the path, even a dangling symlink, is an error (key
    /// files are never overwritten).
    Refuse,
}

/// What an output holds, for the terminal check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    /// Binary data, which is never written to a terminal.
    Binary,
    /// Data a terminal may show: armor, decrypted output, tokens, keys.
    Text,
}

/// Where output goes. A file output is written to an anonymous file (`O_TMPFILE`) in the
/// target's directory and only given a name by [`Output::commit`]: if the command fails, or
/// the process dies by any signal (even `SIGKILL`), the kernel frees it and no partial
/// output is left anywhere. Where the filesystem cannot make anonymous files, a named
/// temporary beside the target is used instead (removed on failure, but left behind if the
/// process is killed). An existing device, FIFO, pipe or socket (`-o /dev/null`, a named
/// pipe, `-o >(cmd)`, `-o /dev/stdout`) is written directly, like standard output: renaming
/// over it would put a regular file where it was, and what was written before a failure
/// cannot be taken back — the exit status says whether it all authenticated.
///
/// The path is resolved by [`resolve`], one component at a time through the kernel, and
/// never through a symlink or FIFO another user planted in a sticky world-writable
/// directory.
pub enum Output {
    /// A file in the target's directory that gets its name at commit.
    File(Staged),
    /// An existing non-regular file (or what a `/proc` descriptor link leads to), written in
    /// place.
    Special(File),
    /// Standard output.
    Stdout(io::Stdout),
}

/// A new file being written in the target's directory, named only by [`Output::commit`].
pub struct Staged {
    file: File,
    dir: OwnedFd,
    name: OsString,
    /// The temporary name of a named (not anonymous) file: removed on drop unless committed.
    temp: Option<OsString>,
    existing: Existing,
    shown: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(t) = self.temp.take() {
            let _ = rustix::fs::unlinkat(&self.dir, t.as_os_str(), AtFlags::empty());
        }
    }
}

/// Most symbolic links followed while resolving one output path (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// Where an output path leads.
pub(crate) enum Target {
    /// No entry: a new file `name` in `dir`.
    Absent { dir: OwnedFd, name: OsString },
    /// The regular file `name` in `dir`.
    Regular { dir: OwnedFd, name: OsString },
    /// A device, FIFO, pipe or socket, open for writing.
    Special(File),
}

/// Whether the last component of `path` can only be a directory: empty (a trailing `/`),
/// `.` or `..`.
fn names_a_directory(path: &[u8]) -> bool {
    let last = path.rsplit(|b| *b == b'/').next().unwrap_or_default();
    matches!(last, b"" | b"." | b"..")
}

/// The components of `path` to walk, last first (a stack): empty and `.` components drop
/// out, as in the kernel; `..` stays, for the kernel to resolve from a descriptor.
fn components(path: &[u8]) -> Vec<OsString> {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .rev()
        .map(|c| OsString::from_vec(c.to_vec()))
        .collect()
}

/// Whether `entry` in `dir` is what the kernel's `fs.protected_symlinks` (for a symlink)
/// or `fs.protected_fifos` (for a FIFO) refuses: in a sticky world-writable directory, owned
/// neither by the caller nor by the directory's owner. Someone else put it there, and it
/// decides where the output goes (or who reads it); refused whatever the sysctls say.
fn planted(dir: &rustix::fs::Stat, entry: &rustix::fs::Stat) -> bool {
    const STICKY_AND_WORLD_WRITABLE: u32 = 0o1002;
    dir.st_mode & STICKY_AND_WORLD_WRITABLE == STICKY_AND_WORLD_WRITABLE
        && entry.st_uid != rustix::process::geteuid().as_raw()
        && entry.st_uid != dir.st_uid
}

/// Opens `name` in `dir` as a directory to walk on from (`O_PATH`).
fn walk_into(dir: &OwnedFd, name: &OsStr, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | flags,
        Mode::empty(),
    )
}

/// Follows a symlink of `/proc` (such as `/proc/self`) with the kernel, refusing the
/// descriptor "magic links" (`/proc/PID/fd/N`, `cwd`, `root`), which are not paths.
fn follow_proc_link(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match rustix::fs::openat2(
        dir,
        name,
        flags,
        Mode::empty(),
        rustix::fs::ResolveFlags::NO_MAGICLINKS,
    ) {
        // Before Linux 5.6 there is no openat2: the plain kernel walk.
        Err(Errno::NOSYS) => rustix::fs::openat(dir, name, flags, Mode::empty()),
        r => r,
    }
}

/// Resolves an output path without handing it to the kernel as one string: each directory
/// is opened from the one before (`O_PATH | O_NOFOLLOW`, `..` by the kernel from a
/// descriptor), each symlink is checked with [`planted`], read, and its target walked the
/// same way. A symlink of `/proc` that names an open descriptor (`/dev/stdout`,
/// `/dev/fd/63`) is opened through, as the shell's `>` would. A dangling symlink as the
/// last component is refused rather than followed into creating its target (as `cp` does):
/// the link, not the caller, would choose where the new file appears.
pub(crate) fn resolve(shown: &Path, existing: Existing) -> Result<Target> {
    use rustix::fs::{FileType, fstat};
    let bytes = shown.as_os_str().as_bytes();
    let cannot = |what: &str| format!("cannot open {}: {what}", shown.display());
    if bytes.is_empty() {
        bail!("the output path is empty");
    }
    if names_a_directory(bytes) {
        bail!("{} is a directory", shown.display());
    }
    let start = if bytes.starts_with(b"/") { "/" } else { "." };
    let mut dir = rustix::fs::openat(
        CWD,
        start,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
    .with_context(|| cannot("the starting directory"))?;
    let mut todo = components(bytes);
    let (mut links, mut last_from_link) = (0usize, None::<OsString>);
    while let Some(name) = todo.pop() {
        let last = todo.is_empty();
        if name == ".." {
            dir = walk_into(&dir, &name, OFlags::NOFOLLOW)
                .map_err(io::Error::from)
                .with_context(|| cannot("\"..\""))?;
            continue;
        }
        let entry = match rustix::fs::openat(
            &dir,
            &name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(e) => e,
            Err(Errno::NOENT) if last => {
                if let Some(target) = last_from_link {
                    bail!(
                        "{} is a symbolic link to {:?}, which does not exist: refusing to create \
                         a file where a dangling link points (name the target itself)",
                        shown.display(),
                        target
                    );
                }
                return Ok(Target::Absent {
                    dir: reopen_dir(&dir).with_context(|| cannot("its directory"))?,
                    name,
                });
            }
            Err(e) => {
                return Err(io::Error::from(e)).with_context(|| cannot(&format!("{name:?}")));
            }
        };
        let st = fstat(&entry).map_err(io::Error::from)?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if last && existing == Existing::Refuse {
            bail!(
                "{} already exists (it is never overwritten)",
                shown.display()
            );
        }
        match kind {
            FileType::Directory if !last => dir = entry,
            FileType::Directory => bail!("{} is a directory", shown.display()),
            FileType::Symlink => {
                let dst = fstat(&dir).map_err(io::Error::from)?;
                if planted(&dst, &st) {
                    bail!(
                        "refusing to follow {name:?} in {}: it is a symbolic link owned by uid \
                         {} in a sticky world-writable directory owned by uid {}, so another \
                         user chose where it points (the kernel's fs.protected_symlinks rule, \
                         applied whatever that setting is)",
                        shown.display(),
                        st.st_uid,
                        dst.st_uid
                    );
                }
                links += 1;
                if links > MAX_LINKS {
                    bail!("{}: too many levels of symbolic links", shown.display());
                }
                if rustix::fs::fstatfs(&dir).map_err(io::Error::from)?.f_type
                    == rustix::fs::PROC_SUPER_MAGIC
                {
                    if last {
                        return open_descriptor_link(&dir, &name, shown).map(Target::Special);
                    }
                    dir = match follow_proc_link(&dir, &name) {
                        Err(Errno::LOOP) => bail!(
                            "cannot open {}: {name:?} is a /proc link to an open file or \
                             directory, not a path to walk",
                            shown.display()
                        ),
                        r => r
                            .map_err(io::Error::from)
                            .with_context(|| cannot(&format!("{name:?}")))?,
                    };
                    continue;
                }
                let target = rustix::fs::readlinkat(&entry, "", Vec::new())
                    .map_err(io::Error::from)
                    .with_context(|| cannot(&format!("the link {name:?}")))?
                    .into_bytes();
                if target.is_empty() {
                    bail!("{}: {name:?} is an empty symbolic link", shown.display());
                }
                if last {
                    if names_a_directory(&target) {
                        bail!(
                            "{} is a symbolic link to a directory ({:?})",
                            shown.display(),
                            OsStr::from_bytes(&target)
                        );
                    }
                    last_from_link = Some(OsString::from_vec(target.clone()));
                }
                if target.starts_with(b"/") {
                    dir = walk_into(&dir, OsStr::new("/"), OFlags::empty())
                        .map_err(io::Error::from)?;
                }
                todo.extend(components(&target));
            }
            FileType::RegularFile if last => {
                return Ok(Target::Regular {
                    dir: reopen_dir(&dir).with_context(|| cannot("its directory"))?,
                    name,
                });
            }
            FileType::Fifo
            | FileType::Socket
            | FileType::CharacterDevice
            | FileType::BlockDevice
                if last =>
            {
                let dst = fstat(&dir).map_err(io::Error::from)?;
                if planted(&dst, &st) {
                    bail!(
                        "refusing to write into {}: it is a FIFO or device owned by uid {} in a \
                         sticky world-writable directory owned by uid {}, so another user would \
                         read what is written (the kernel's fs.protected_fifos rule)",
                        shown.display(),
                        st.st_uid,
                        dst.st_uid
                    );
                }
                let f = rustix::fs::openat(
                    &dir,
                    &name,
                    OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io::Error::from)
                .with_context(|| cannot("for writing"))?;
                let now = fstat(&f).map_err(io::Error::from)?;
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
                    bail!("{} changed while it was being opened", shown.display());
                }
                return Ok(Target::Special(File::from(f)));
            }
            _ => bail!(
                "cannot open {}: {name:?} is not a directory",
                shown.display()
            ),
        }
    }
    bail!("{} is a directory", shown.display())
}

/// A non-`O_PATH` descriptor of the directory `dir` (to make files in and to sync).
fn reopen_dir(dir: &OwnedFd) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Opens, for writing, what a `/proc/PID/fd/N`-style link names (the kernel follows it): a
/// pipe, terminal or device is written in place; a regular file (`-o /dev/stdout > f`) is
/// appended to, as through the descriptor itself, never truncated or replaced.
fn open_descriptor_link(dir: &OwnedFd, name: &OsStr, shown: &Path) -> Result<File> {
    let f = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
    .with_context(|| format!("cannot open {} for writing", shown.display()))?;
    let st = rustix::fs::fstat(&f).map_err(io::Error::from)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile {
        let flags = rustix::fs::fcntl_getfl(&f).map_err(io::Error::from)?;
        rustix::fs::fcntl_setfl(&f, flags | OFlags::APPEND).map_err(io::Error::from)?;
    }
    Ok(File::from(f))
}

/// An anonymous regular file (mode 0600) in `dir`, or `None` where the filesystem or kernel
/// cannot make one, or `/proc/self/fd` (needed to give it a name) is missing.
fn anonymous_in(dir: &OwnedFd) -> io::Result<Option<File>> {
    if !Path::new("/proc/self/fd").is_dir() {
        return Ok(None);
    }
    match rustix::fs::openat(
        dir,
        ".",
        OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(fd) => Ok(Some(File::from(fd))),
        // Kernels before 3.11 see O_DIRECTORY without O_TMPFILE (EISDIR); filesystems
        // without support say EOPNOTSUPP.
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A fresh hidden name for a temporary in the target's directory.
fn temp_name() -> io::Result<OsString> {
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(format!(".pqwrap-{:016x}", u64::from_le_bytes(r)).into())
}

/// Calls `make` with fresh temporary names until one does not exist yet.
fn with_fresh_name<T>(
    mut make: impl FnMut(&OsStr) -> rustix::io::Result<T>,
) -> io::Result<(T, OsString)> {
    let mut attempts = 0;
    loop {
        let name = temp_name()?;
        match make(&name) {
            Ok(t) => return Ok((t, name)),
            Err(Errno::EXIST) if attempts < 8 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

impl Staged {
    /// A new file in `dir`, to be named `name`: anonymous where possible.
    fn new(dir: OwnedFd, name: OsString, existing: Existing, shown: &Path) -> Result<Staged> {
        let cannot = || format!("cannot create a file beside {}", shown.display());
        let (file, temp) = match anonymous_in(&dir).with_context(cannot)? {
            Some(f) => (f, None),
            None => {
                let (fd, temp) = with_fresh_name(|n| {
                    rustix::fs::openat(
                        &dir,
                        n,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                })
                .with_context(cannot)?;
                (File::from(fd), Some(temp))
            }
        };
        Ok(Staged {
            file,
            dir,
            name,
            temp,
            existing,
            shown: shown.to_path_buf(),
        })
    }

    /// Syncs the file and gives it its name: a rename over what is there ([`Existing::Replace`])
    /// or a name that must still be free ([`Existing::Refuse`]); then syncs the directory.
    fn commit(mut self) -> io::Result<()> {
        use rustix::fs::{RenameFlags, linkat, renameat, renameat_with};
        self.file.sync_all()?;
        let temp = match self.temp.take() {
            Some(t) => t,
            None => {
                // Only a link through /proc names an anonymous file (without privileges).
                let proc = format!("/proc/self/fd/{}", self.file.as_raw_fd());
                if self.existing == Existing::Refuse {
                    linkat(
                        CWD,
                        proc.as_str(),
                        &self.dir,
                        &self.name,
                        AtFlags::SYMLINK_FOLLOW,
                    )?;
                    return Ok(rustix::fs::fsync(&self.dir)?);
                }
                with_fresh_name(|n| {
                    linkat(CWD, proc.as_str(), &self.dir, n, AtFlags::SYMLINK_FOLLOW)
                })?
                .1
            }
        };
        let named = match self.existing {
            Existing::Replace => renameat(&self.dir, &temp, &self.dir, &self.name),
            Existing::Refuse => {
                match renameat_with(
                    &self.dir,
                    &temp,
                    &self.dir,
                    &self.name,
                    RenameFlags::NOREPLACE,
                ) {
                    // Filesystems without RENAME_NOREPLACE: a hard link fails if the name is taken.
                    Err(Errno::INVAL | Errno::NOSYS) => {
                        linkat(&self.dir, &temp, &self.dir, &self.name, AtFlags::empty())
                            .and_then(|()| rustix::fs::unlinkat(&self.dir, &temp, AtFlags::empty()))
                    }
                    r => r,
                }
            }
        };
        if let Err(e) = named {
            let _ = rustix::fs::unlinkat(&self.dir, &temp, AtFlags::empty());
            return Err(e.into());
        }
        rustix::fs::fsync(&self.dir)?;
        Ok(())
    }
}

impl Output {
    /// Opens the output: `path` (resolved by [`resolve`]), or standard output when there is
    /// none or it is `-`. Fails rather than write binary data to a terminal.
    pub fn open(path: Option<&Path>, content: Content, existing: Existing) -> Result<Self> {
        let refuse_terminal = || {
            anyhow::anyhow!(
                "refusing to write binary data to a terminal: use -o FILE, redirect standard \
                 output, or -a for armored output"
            )
        };
        match path {
            Some(p) if p != Path::new("-") => match resolve(p, existing)? {
                Target::Special(f) => {
                    if content == Content::Binary && f.is_terminal() {
                        return Err(refuse_terminal());
                    }
                    Ok(Output::Special(f))
                }
                Target::Absent { dir, name } | Target::Regular { dir, name } => {
                    Ok(Output::File(Staged::new(dir, name, existing, p)?))
                }
            },
            _ => {
                let out = io::stdout();
                if content == Content::Binary && out.is_terminal() {
                    return Err(refuse_terminal());
                }
                Ok(Output::Stdout(out))
            }
        }
    }

    /// Flushes, syncs and moves a file output into place.
    pub fn commit(self) -> Result<()> {
        match self {
            Output::File(staged) => {
                let shown = staged.shown.clone();
                staged
                    .commit()
                    .with_context(|| format!("cannot write {}", shown.display()))
            }
            Output::Special(mut f) => Ok(f.flush()?),
            Output::Stdout(mut s) => Ok(s.flush()?),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::File(s) => s.file.write(buf),
            Output::Special(f) => f.write(buf),
            Output::Stdout(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::File(s) => s.file.flush(),
            Output::Special(f) => f.flush(),
            Output::Stdout(s) => s.flush(),
        }
    }
}

/// Opens `path` for reading and appending, creating it with `mode` if it does not exist (an
/// audit log): resolved as an output path is ([`resolve`]), so never through a link or to a
/// FIFO another user planted, and it must be a regular file.
pub fn open_append(path: &Path, mode: u32) -> Result<File> {
    let (dir, name, new) = match resolve(path, Existing::Replace)? {
        Target::Special(_) => bail!("{} is not a regular file", path.display()),
        Target::Absent { dir, name } => (dir, name, true),
        Target::Regular { dir, name } => (dir, name, false),
    };
    let fd = rustix::fs::openat(
        &dir,
        &name,
        OFlags::RDWR | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map_err(io::Error::from)
    .with_context(|| format!("cannot open {}", path.display()))?;
    if new {
        // A new name survives a power cut only once its directory is synced.
        rustix::fs::fsync(&dir)
            .map_err(io::Error::from)
            .with_context(|| format!("cannot sync the directory of {}", path.display()))?;
    }
    Ok(File::from(fd))
}

/// Copies a buffered reader to a writer without an intermediate buffer.
pub fn copy_buffered<R: BufRead + ?Sized, W: Write + ?Sized>(
    r: &mut R,
    w: &mut W,
) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(total);
        }
        w.write_all(buf)?;
        let n = buf.len();
        total += n as u64;
        r.consume(n);
    }
}

/// Reads a passphrase: the first line of `file` if given, otherwise from the terminal
/// without echo (asking twice when `confirm`).
pub fn read_passphrase(file: Option<&Path>, confirm: bool) -> Result<zeroize::Zeroizing<String>> {
    let pass = match file {
        Some(p) => {
            let text = crate::keyfiles::read_to_string_bounded(
                File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
            )
            .with_context(|| format!("cannot read {}", p.display()))?;
            let line = text.lines().next().unwrap_or("");
            zeroize::Zeroizing::new(line.trim_end_matches('\r').to_owned())
        }
        None => {
            let p = zeroize::Zeroizing::new(
                rpassword::prompt_password("Enter passphrase: ")
                    .context("cannot read a passphrase from the terminal")?,
            );
            if confirm {
                let again = zeroize::Zeroizing::new(
                    rpassword::prompt_password("Confirm passphrase: ")
                        .context("cannot read a passphrase from the terminal")?,
                );
                if *again != *p {
                    anyhow::bail!("passphrases do not match");
                }
            }
            p
        }
    };
    if pass.is_empty() {
        anyhow::bail!("empty passphrase");
    }
    Ok(pass)
}

/// A command-line number: a canonical decimal (ASCII digits, no sign, no leading zero, no
/// spaces) that fits `T`. `str::parse`, and so clap's own parsers, also take `+5`.
pub fn decimal<T: TryFrom<u64>>(s: &str) -> Result<T, String> {
    let n = pqwrap_core::token::manifest::canonical_decimal(s).ok_or_else(|| {
        format!("{s:?} is not a decimal number (digits only: no sign, leading zero or space)")
    })?;
    T::try_from(n).map_err(|_| format!("{s} is too large"))
}

/// A count that must be at least 1 (worker threads): a canonical decimal.
pub fn nonzero(s: &str) -> Result<std::num::NonZeroUsize, String> {
    std::num::NonZeroUsize::new(decimal::<usize>(s)?).ok_or_else(|| "must be at least 1".into())
}

/// A scrypt work factor (log2 N) for encrypting: a decimal in 1..=30.
pub fn work_factor(s: &str) -> Result<u8, String> {
    match decimal::<u8>(s)? {
        n @ 1..=30 => Ok(n),
        n => Err(format!("{n} is not in 1..=30")),
    }
}

/// A `HOST:PORT` request: the port a decimal in 1..=65535.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// The host, as given.
    pub host: String,
    /// The port.
    pub port: u16,
}

/// Parses `HOST:PORT` (the last `:` separates them).
pub fn host_port(s: &str) -> Result<HostPort, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not HOST:PORT"))?;
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    match decimal::<u16>(port) {
        Ok(p) if p != 0 => Ok(HostPort {
            host: host.to_owned(),
            port: p,
        }),
        _ => Err(format!("{port:?} is not a port (a decimal in 1..=65535)")),
    }
}

/// The most memory this process can hope to allocate in one piece, for scrypt: the smallest
/// of the machine's physical memory, the address-space and data limits (`RLIMIT_AS`,
/// `RLIMIT_DATA`) less what the process already uses, and the `memory.max` of its cgroup
/// (v2). Swap does not count: scrypt touches all its memory at random, so a table that only
/// fits in swap would take hours. `None` if none of these is known.
pub fn memory_bound() -> Option<u64> {
    use rustix::process::{Resource, getrlimit};
    let info = rustix::system::sysinfo();
    // `c_ulong` is 32 bits on some targets: the conversion is not useless there.
    #[allow(clippy::useless_conversion)]
    let physical = u64::from(info.totalram).checked_mul(u64::from(info.mem_unit.max(1)));
    // What the limits already count: "VmSize:  1234 kB" (RLIMIT_AS), "VmData:" (RLIMIT_DATA).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let used = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().strip_suffix(" kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .map_or(0, |kb| kb.saturating_mul(1024))
    };
    let limit_less = |r: Resource, used: u64| getrlimit(r).current.map(|l| l.saturating_sub(used));
    [
        physical,
        limit_less(Resource::As, used("VmSize:")),
        limit_less(Resource::Data, used("VmData:")),
        cgroup_memory_max(),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// `memory.max` of this process's cgroup v2 (`None` for `max`, cgroup v1, or no access).
fn cgroup_memory_max() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
    let file = Path::new("/sys/fs/cgroup")
        .join(path.trim_start_matches('/'))
        .join("memory.max");
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// The scrypt limit for this process: work factors up to `max_work_factor`, and no more
/// memory than [`memory_bound`] (refused with a typed error before scrypt allocates).
pub fn scrypt_limit(max_work_factor: u8) -> pqwrap_core::age::ScryptLimit {
    let limit = pqwrap_core::age::ScryptLimit::new(max_work_factor);
    match memory_bound() {
        Some(bytes) => limit.with_max_memory(bytes),
        None => limit,
    }
}
