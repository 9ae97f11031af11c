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

/// Where output goes. A file output is written to a temporary file beside the target and
/// renamed over it only by [`Output::commit`]; dropped uncommitted, nothing is left behind
/// (so no partial plaintext survives a failure). A symlink is written through (the temporary
/// goes beside its target, and the link stays). An existing device, FIFO or socket
/// (`-o /dev/null`, a named pipe) is written directly, like standard output: renaming over
/// it would put a regular file where the device was, and what was written before a failure
/// cannot be taken back — the exit status says whether it all authenticated.
pub enum Output {
    /// A temporary file and its final path.
    File(tempfile::NamedTempFile, PathBuf),
    /// An existing non-regular file, written in place.
    Special(File),
    /// Standard output.
    Stdout(io::Stdout),
}

impl Output {
    /// Opens the output. Fails if it would write binary data to a terminal.
    pub fn open(path: Option<&Path>, binary: bool) -> Result<Self> {
        match path {
            Some(p) if p != Path::new("-") => {
                let target = match std::fs::symlink_metadata(p) {
                    Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(p)
                        .with_context(|| format!("cannot follow the link {}", p.display()))?,
                    _ => p.to_path_buf(),
                };
                match std::fs::metadata(&target) {
                    Ok(m) if m.is_dir() => anyhow::bail!("{} is a directory", p.display()),
                    Ok(m) if !m.is_file() => {
                        let f = std::fs::OpenOptions::new()
                            .write(true)
                            .open(&target)
                            .with_context(|| format!("cannot open {}", p.display()))?;
                        return Ok(Output::Special(f));
                    }
                    _ => {}
                }
                let dir = match target.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
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
            Output::File(f, _) => f.write(buf),
            Output::Special(f) => f.write(buf),
            Output::Stdout(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
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
