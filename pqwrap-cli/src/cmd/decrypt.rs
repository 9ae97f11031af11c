//! `pqwrap decrypt`: decrypt a file, recognising its format by itself.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use pqwrap_core::age::{self, AgeError};
use pqwrap_core::envelope;

use super::format::{self, detect, not_supported};
use super::io_util::{
    Content, Existing, Output, copy_buffered, decimal, open_input, read_passphrase, scrypt_limit,
};
use crate::exit::Status;
use pqwrap_rewrap::format::FormatId;

/// Decrypt a file (standard input by default); the format is detected.
#[derive(clap::Args)]
pub struct Args {
    /// Identity file (`AGE-SECRET-KEY-PQ-1…` / `AGE-SECRET-KEY-1…` lines). Repeatable.
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    identities: Vec<PathBuf>,

    /// For passphrase-encrypted files: read the passphrase from the first line of FILE
    /// instead of the terminal.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,

    /// Highest scrypt work factor (log2 N) accepted for passphrase-encrypted files. A work
    /// factor whose memory this machine (or this process's limits) cannot give is refused
    /// whatever this says.
    #[arg(long, value_name = "N", default_value_t = age::DEFAULT_MAX_WORK_FACTOR,
          value_parser = decimal::<u8>)]
    max_work_factor: u8,

    /// Write the plaintext to FILE (appears only if the whole file authenticates).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// The file to decrypt (default: standard input).
    #[arg(value_name = "INPUT")]
    input: Option<PathBuf>,
}

use crate::keyfiles::load_identities;

/// A failure message naming the file and the failure kind.
fn describe(name: &str, e: AgeError) -> anyhow::Error {
    let e = match e {
        AgeError::Io(io) => AgeError::from_io(io),
        other => other,
    };
    anyhow!("{name}: {e}")
}

/// Runs `pqwrap decrypt`.
pub fn run(args: Args) -> Result<Status> {
    let (input, name) = open_input(args.input.as_deref())?;
    let (prefix, input) = format::peek(input).with_context(|| format!("cannot read {name}"))?;
    match detect(&prefix) {
        Some(FormatId::Age) => decrypt_age(&args, input, &name),
        Some(FormatId::Native) => decrypt_native(&args, input, &name),
        Some(_) => Err(anyhow!("{name}: {}", not_supported(&prefix))),
        None => Err(anyhow!(
            "{name}: not an encrypted file in a format pqwrap knows"
        )),
    }
}

fn decrypt_age(args: &Args, input: impl Read, name: &str) -> Result<Status> {
    let dec = age::Decryptor::new(input).map_err(|e| describe(name, e))?;
    let needs_passphrase = dec.header().protection() == age::Protection::Passphrase;
    let identities = load_identities(&args.identities)?;
    let mut passphrases = Vec::new();
    if needs_passphrase {
        let p = read_passphrase(args.passphrase_file.as_deref(), false)?;
        passphrases.push(age::Passphrase::new(p.to_string()));
    } else if identities.is_empty() {
        eprintln!("pqwrap: {name} is encrypted to recipients: give an identity with -i FILE");
        return Ok(Status::Usage);
    }
    let file_key = dec
        .header()
        .unwrap_file_key(
            &identities,
            &passphrases,
            scrypt_limit(args.max_work_factor),
        )
        .map_err(|e| describe(name, e))?;
    let mut reader = dec
        .decrypt_with_file_key(&file_key)
        .map_err(|e| describe(name, e))?;
    let mut out = Output::open(args.output.as_deref(), Content::Text, Existing::Replace)?;
    // On error `out` is dropped uncommitted: a file output never appears.
    copy_buffered(&mut reader, &mut out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            anyhow::Error::from(e) // the reader of the output left: see main
        } else {
            describe(name, AgeError::from_io(e))
        }
    })?;
    out.commit()?;
    Ok(Status::Success)
}

fn decrypt_native(args: &Args, input: impl Read, name: &str) -> Result<Status> {
    let identities = load_identities(&args.identities)?;
    if identities.is_empty() {
        eprintln!("pqwrap: {name} is a pqwrap envelope: give an identity with -i FILE");
        return Ok(Status::Usage);
    }
    let mut out = Output::open(args.output.as_deref(), Content::Text, Existing::Replace)?;
    // On error `out` is dropped uncommitted: a file output never appears.
    envelope::decrypt_to(input, &identities, &mut out).map_err(|e| match e {
        envelope::EnvelopeError::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe => {
            anyhow::Error::from(io) // the reader of the output left: see main
        }
        e => anyhow!("{name}: {e} ({})", e.code()),
    })?;
    out.commit()?;
    Ok(Status::Success)
}
