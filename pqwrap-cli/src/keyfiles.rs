//! Reading identity and recipient files: the one place every command loads keys from.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use pqwrap_core::keys::{self, Identity, Recipient};

/// Key files are small; refuse anything over 1 MiB rather than read a disk image by mistake.
pub fn read_to_string_bounded(r: impl Read) -> Result<zeroize::Zeroizing<String>> {
    const MAX: u64 = 1 << 20;
    let mut buf = zeroize::Zeroizing::new(String::new());
    r.take(MAX + 1).read_to_string(&mut buf)?;
    if buf.len() as u64 > MAX {
        bail!("file is larger than 1 MiB: not a key file");
    }
    Ok(buf)
}

/// Reads every identity in `paths`, warning (naming the file) when one is readable or
/// writable by anyone but its owner: a secret key file should be mode 0600.
pub fn load_identities(paths: &[PathBuf]) -> Result<Vec<Identity>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for p in paths {
        let file = std::fs::File::open(p)
            .with_context(|| format!("cannot open identity file {}", p.display()))?;
        if let Ok(meta) = file.metadata() {
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_file() && mode & 0o077 != 0 {
                eprintln!(
                    "pqwrap: warning: identity file {} has mode {mode:04o}: others can read or \
                     change this secret key; run chmod 600 on it",
                    p.display()
                );
            }
        }
        let text = read_to_string_bounded(file)
            .with_context(|| format!("cannot read identity file {}", p.display()))?;
        out.extend(
            keys::parse_identities(&text)
                .with_context(|| format!("{}: not a valid identity file", p.display()))?,
        );
    }
    Ok(out)
}

/// Reads the recipients given inline (`-r`) and in files (`-R`), in order, duplicates removed
/// (the same recipient twice would only add a stanza that opens the same way).
pub fn load_recipients(inline: &[String], files: &[PathBuf]) -> Result<Vec<Recipient>> {
    let mut out = Vec::new();
    for r in inline {
        out.push(
            r.parse::<Recipient>()
                .with_context(|| format!("invalid recipient {r:?}"))?,
        );
    }
    for p in files {
        let text = read_to_string_bounded(
            std::fs::File::open(p)
                .with_context(|| format!("cannot open recipients file {}", p.display()))?,
        )
        .with_context(|| format!("cannot read recipients file {}", p.display()))?;
        out.extend(
            keys::parse_recipients(&text)
                .with_context(|| format!("{}: not a valid recipients file", p.display()))?,
        );
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|r| seen.insert(r.to_string()));
    Ok(out)
}
