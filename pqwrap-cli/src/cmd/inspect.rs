//! `pqwrap inspect`: what an encrypted file is and how it is protected, without any key.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Result, anyhow};
use pqwrap_core::age;

use super::format::{self, Format};
use super::io_util::open_input;
use crate::exit::Status;

/// Show an encrypted file's format, recipients' types and protection, without a key.
#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,

    /// The file to inspect (`-` for standard input).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Runs `pqwrap inspect`.
pub fn run(args: Args) -> Result<Status> {
    let (input, name) = open_input(Some(&args.file))?;
    let (prefix, input) = format::peek(input).map_err(|e| anyhow!("cannot read {name}: {e}"))?;
    match format::detect(&prefix) {
        Some((Format::Age, _)) => inspect_age(&args, input, &name),
        None => Err(anyhow!(
            "{name}: not an encrypted file in a format pqwrap knows"
        )),
    }
}

fn inspect_age(args: &Args, input: impl io::Read, name: &str) -> Result<Status> {
    let dec = age::Decryptor::new(input).map_err(|e| anyhow!("{name}: {e}"))?;
    let armored = dec.is_armored();
    let (header, mut rest) = dec.into_payload();
    // Count the payload (nonce included) as binary bytes; through the armor decoder if
    // armored, so the figure is the same either way.
    let payload = io::copy(&mut rest, &mut io::sink())
        .map_err(|e| anyhow!("{name}: {}", age::AgeError::from_io(e)))?;
    let plaintext = age::stream::plaintext_len(payload);
    let protection = header.protection();
    let types = header.stanza_types();
    if args.json {
        let v = serde_json::json!({
            "file": name,
            "format": "age",
            "version": "v1",
            "armored": armored,
            "stanzas": types,
            "protection": protection.as_str(),
            "post_quantum": protection == age::Protection::PostQuantum,
            "header_bytes": header.len(),
            "payload_bytes": payload,
            "plaintext_bytes": plaintext,
        });
        println!("{v:#}");
        return Ok(Status::Success);
    }
    let mut out = io::stdout().lock();
    writeln!(out, "file:        {name}")?;
    writeln!(
        out,
        "format:      {}{}",
        Format::Age.name(),
        if armored { " (ASCII-armored)" } else { "" }
    )?;
    writeln!(out, "stanzas:     {}", types.len())?;
    for t in &types {
        writeln!(out, "  - {t}")?;
    }
    let what = match protection {
        age::Protection::PostQuantum => "post-quantum (every recipient is mlkem768x25519)",
        age::Protection::Classical => "classical only (X25519): re-wrap to post-quantum recipients",
        age::Protection::Mixed => {
            "mixed: post-quantum and classical recipients (only classically secure)"
        }
        age::Protection::Passphrase => "passphrase (scrypt)",
        age::Protection::Unknown => "unknown recipient types",
    };
    writeln!(out, "protection:  {what}")?;
    writeln!(out, "header:      {} bytes", header.len())?;
    match plaintext {
        Some(p) => writeln!(out, "payload:     {payload} bytes ({p} bytes of plaintext)")?,
        None => writeln!(
            out,
            "payload:     {payload} bytes (malformed: not a whole number of chunks)"
        )?,
    }
    Ok(Status::Success)
}
