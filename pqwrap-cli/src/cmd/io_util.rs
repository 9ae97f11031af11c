//! Inputs and outputs shared by `encrypt` and `decrypt`: a path or standard input, and a
//! path or standard output where a file output only appears, atomically, on success.

use std::fs::File;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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

/// Where output goes. A file output is written to an anonymous file (`O_TMPFILE`) in the
/// target's directory and only given a name by [`Output::commit`]: if the command fails, or
/// the process dies by any signal (even `SIGKILL`), the kernel frees it and no partial
/// plaintext is left anywhere. Where the filesystem cannot make anonymous files, a named
/// temporary beside the target is used instead (removed on failure, but left behind if the
/// process is killed). A symlink is written through (the new file goes beside its target,
/// and the link stays). An existing device, FIFO, pipe or socket (`-o /dev/null`, a named
/// pipe, `-o >(cmd)`, `-o /dev/stdout`) is written directly, like standard output: renaming
/// over it would put a regular file where it was, and what was written before a failure
/// cannot be taken back — the exit status says whether it all authenticated.
pub enum Output {
    /// An anonymous file, its directory and the final path.
    Anonymous(File, std::os::fd::OwnedFd, PathBuf),
    /// A named temporary file and its final path.
    File(tempfile::NamedTempFile, PathBuf),
    /// An existing non-regular file, written in place.
    Special(File),
    /// Standard output.
    Stdout(io::Stdout),
}

/// An anonymous regular file (mode 0600) in `dir`, or `None` where the filesystem or kernel
/// cannot make one, or `/proc/self/fd` (needed to give it a name) is missing.
fn anonymous_in(dir: &Path) -> Result<Option<(File, std::os::fd::OwnedFd)>> {
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    if !Path::new("/proc/self/fd").is_dir() {
        return Ok(None);
    }
    let d = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open the directory {}", dir.display()))?;
    match rustix::fs::openat(
        &d,
        ".",
        OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(fd) => Ok(Some((File::from(fd), d))),
        // Kernels before 3.11 see O_DIRECTORY without O_TMPFILE (EISDIR); filesystems
        // without support say EOPNOTSUPP.
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS) => Ok(None),
        Err(e) => Err(io::Error::from(e))
            .with_context(|| format!("cannot create a file in {}", dir.display())),
    }
}

/// Gives the anonymous `file` the name `target` (in `dir`): a link under a fresh hidden
/// name, then a rename over the target, then a sync of the directory.
fn link_into_place(file: &File, dir: &std::os::fd::OwnedFd, target: &Path) -> io::Result<()> {
    use rustix::fs::{AtFlags, CWD};
    use std::os::fd::AsRawFd;
    let name = target
        .file_name()
        .ok_or_else(|| io::Error::other("the output path has no file name"))?;
    let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
    let mut attempts = 0;
    let temp = loop {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).map_err(|e| io::Error::other(e.to_string()))?;
        let temp = format!(".pqwrap-{:016x}", u64::from_le_bytes(r));
        match rustix::fs::linkat(
            CWD,
            proc.as_str(),
            dir,
            temp.as_str(),
            AtFlags::SYMLINK_FOLLOW,
        ) {
            Ok(()) => break temp,
            Err(rustix::io::Errno::EXIST) if attempts < 8 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    };
    if let Err(e) = rustix::fs::renameat(dir, temp.as_str(), dir, name) {
        let _ = rustix::fs::unlinkat(dir, temp.as_str(), AtFlags::empty());
        return Err(e.into());
    }
    rustix::fs::fsync(dir)?;
    Ok(())
}

impl Output {
    /// Opens the output. Fails if it would write binary data to a terminal.
    pub fn open(path: Option<&Path>, binary: bool) -> Result<Self> {
        match path {
            Some(p) if p != Path::new("-") => {
                // Through links: what the path finally names decides (a pipe behind
                // /dev/fd/N has no canonical path, so this comes first).
                match std::fs::metadata(p) {
                    Ok(m) if m.is_dir() => anyhow::bail!("{} is a directory", p.display()),
                    Ok(m) if !m.is_file() => {
                        let f = std::fs::OpenOptions::new()
                            .write(true)
                            .open(p)
                            .with_context(|| format!("cannot open {}", p.display()))?;
                        return Ok(Output::Special(f));
                    }
                    _ => {}
                }
                let target = match std::fs::symlink_metadata(p) {
                    Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(p)
                        .with_context(|| format!("cannot follow the link {}", p.display()))?,
                    _ => p.to_path_buf(),
                };
                let dir = match target.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                if let Some((file, dirfd)) = anonymous_in(dir)? {
                    return Ok(Output::Anonymous(file, dirfd, target));
                }
                let tmp = tempfile::Builder::new()
                    .prefix(".pqwrap-")
                    .tempfile_in(dir)
                    .with_context(|| format!("cannot create a file in {}", dir.display()))?;
                Ok(Output::File(tmp, target))
            }
            _ => {
                let out = io::stdout();
                if binary && out.is_terminal() {
                    anyhow::bail!(
                        "refusing to write binary data to a terminal: use -o FILE, redirect \
                         standard output, or -a for armored output"
                    );
                }
                Ok(Output::Stdout(out))
            }
        }
    }

    /// Flushes, syncs and moves a file output into place.
    pub fn commit(self) -> Result<()> {
        match self {
            Output::Anonymous(file, dir, path) => {
                file.sync_all()?;
                link_into_place(&file, &dir, &path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(())
            }
            Output::File(mut tmp, path) => {
                tmp.flush()?;
                tmp.as_file().sync_all()?;
                tmp.persist(&path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(())
            }
            Output::Special(mut f) => Ok(f.flush()?),
            Output::Stdout(mut s) => Ok(s.flush()?),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Anonymous(f, _, _) => f.write(buf),
            Output::File(f, _) => f.write(buf),
            Output::Special(f) => f.write(buf),
            Output::Stdout(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Anonymous(f, _, _) => f.flush(),
            Output::File(f, _) => f.flush(),
            Output::Special(f) => f.flush(),
            Output::Stdout(s) => s.flush(),
        }
    }
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
            let text = crate::cmd::keygen::read_to_string_bounded(
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
