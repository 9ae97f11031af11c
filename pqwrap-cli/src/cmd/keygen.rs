//! `pqwrap keygen`: new identities, and `-y` to print the recipients of existing ones.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use pqwrap_core::keys::{self, Identity};

use super::io_util::{Content, Existing, Output};
use crate::exit::Status;
use crate::keyfiles::{load_identities, read_to_string_bounded};

/// Generate an identity, or print the recipients of existing identities (`-y`).
#[derive(clap::Args)]
pub struct Args {
    /// Write the new identity to FILE (created with mode 0600; never overwritten, never
    /// through a symlink) instead of standard output.
    #[arg(short, long, value_name = "FILE", conflicts_with = "convert")]
    output: Option<PathBuf>,

    /// Generate a classical X25519 identity instead of a post-quantum hybrid one.
    #[arg(long, conflicts_with = "convert")]
    classical: bool,

    /// Print the recipient (public key) of each identity in FILE, or in standard input.
    #[arg(short = 'y', id = "convert")]
    convert: bool,

    /// With -y: the identity file to read (default: standard input).
    #[arg(value_name = "FILE", requires = "convert")]
    input: Option<PathBuf>,
}

/// Runs `pqwrap keygen`.
pub fn run(args: Args) -> Result<Status> {
    if args.convert {
        return convert(args.input);
    }
    let identity = if args.classical {
        Identity::generate_x25519()?
    } else {
        Identity::generate_hybrid()?
    };
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let contents = identity.to_file_contents(&created);
    match &args.output {
        Some(path) => {
            // A new 0600 file that appears, complete, only if the name is still free.
            let mut f = Output::open(Some(path), Content::Text, Existing::Refuse)
                .with_context(|| format!("cannot create identity file {}", path.display()))?;
            f.write_all(contents.as_bytes())
                .with_context(|| format!("cannot write identity file {}", path.display()))?;
            f.commit()
                .with_context(|| format!("cannot create identity file {}", path.display()))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(contents.as_bytes())?;
            out.flush()?;
        }
    }
    // On stderr, so that `pqwrap keygen > key.txt` still shows it and the file stays clean.
    if args.output.is_some() || !std::io::stdout().is_terminal() {
        eprintln!("Public key: {}", identity.to_recipient());
    }
    Ok(Status::Success)
}

fn convert(input: Option<PathBuf>) -> Result<Status> {
    let ids = match input {
        Some(path) => load_identities(&[path])?,
        None => {
            let text = read_to_string_bounded(std::io::stdin().lock())
                .context("cannot read identities from standard input")?;
            keys::parse_identities(&text).context("standard input: not a valid identity file")?
        }
    };
    let mut out = std::io::stdout().lock();
    for id in ids {
        writeln!(out, "{}", id.to_recipient())?;
    }
    Ok(Status::Success)
}
