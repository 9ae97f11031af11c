//! `pqwrap inspect`: what an encrypted file is and how it is protected, without any key.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Result, anyhow};
use pqwrap_core::{age, envelope};

use super::format::{self, Format, detect, not_supported};
use super::io_util::open_input;
use crate::exit::Status;
use pqwrap_rewrap::format::FormatId;

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
    match detect(&prefix) {
        Some(FormatId::Age) => inspect_age(&args, input, &name),
        Some(FormatId::Native) => inspect_native(&args, input, &name),
        Some(_) => Err(anyhow!("{name}: {}", not_supported(&prefix))),
        None => Err(anyhow!(
            "{name}: not an encrypted file in a format pqwrap knows"
        )),
    }
}

fn inspect_age(args: &Args, input: impl io::Read, name: &str) -> Result<Status> {
    let dec = age::Decryptor::new(input).map_err(|e| anyhow!("{name}: {e}"))?;
    let armored = dec.armor() == age::Armor::Armored;
    let (header, mut rest) = dec.into_payload();
    // The payload size (nonce included) in binary bytes: from the file size when it is a
    // binary regular file, otherwise by reading through (the armor decoder, if armored).
    let file_len = std::fs::metadata(&args.file)
        .ok()
        .filter(|m| m.is_file() && args.file.as_os_str() != "-")
        .map(|m| m.len());
    let payload = match file_len {
        Some(len) if !armored => len.saturating_sub(header.len() as u64),
        _ => io::copy(&mut rest, &mut io::sink())
            .map_err(|e| anyhow!("{name}: {}", age::AgeError::from_io(e)))?,
    };
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
            "mixed: post-quantum next to classical or unrecognised recipients (no stronger than those)"
        }
        age::Protection::Passphrase => "passphrase (scrypt)",
        age::Protection::Unknown => "unknown recipient types (plugins?)",
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

fn inspect_native(args: &Args, input: impl io::Read, name: &str) -> Result<Status> {
    // A regular file: read only the header area and take the length from metadata.
    // Anything else (standard input): read at most the largest possible header area.
    // Stat before opening a second time: opening a FIFO again would wait for a new writer.
    let regular =
        args.file.as_os_str() != "-" && std::fs::metadata(&args.file).is_ok_and(|m| m.is_file());
    let info = match regular.then(|| std::fs::File::open(&args.file)) {
        Some(Ok(f)) => envelope::inspect_file(&f),
        _ => {
            let limit = envelope::BLOCK as u64 + 2 * u64::from(envelope::MAX_SLOT_SIZE);
            let mut head = Vec::new();
            io::Read::read_to_end(&mut io::Read::take(input, limit), &mut head)
                .map_err(|e| anyhow!("cannot read {name}: {e}"))?;
            envelope::inspect(&head, None)
        }
    }
    .map_err(|e| anyhow!("{name}: {e} ({})", e.code()))?;
    let kems: Vec<String> = info
        .stanzas
        .iter()
        .map(|s| match s.kem_name {
            Some(n) => n.to_string(),
            None => format!("unknown KEM 0x{:04x}", s.kem),
        })
        .collect();
    let protection = if info.is_post_quantum() {
        "post-quantum"
    } else {
        "unknown"
    };
    if args.json {
        let v = serde_json::json!({
            "file": name,
            "format": "pqwrap",
            "version": info.format_version,
            "armored": false,
            "suite": info.suite_name,
            "stanzas": kems,
            "protection": protection,
            "post_quantum": info.is_post_quantum(),
            "header_bytes": info.header_area_len,
            "slot_size": info.slot_size,
            "active_slot": info.active_slot,
            "sequence": info.sequence,
            "payload_bytes": info.payload_len,
            "plaintext_bytes": info.plaintext_len,
        });
        println!("{v:#}");
        return Ok(Status::Success);
    }
    let mut out = io::stdout().lock();
    writeln!(out, "file:        {name}")?;
    writeln!(
        out,
        "format:      {} ({})",
        Format::Pqwrap.name(),
        info.suite_name
    )?;
    writeln!(out, "stanzas:     {}", kems.len())?;
    for k in &kems {
        writeln!(out, "  - {k}")?;
    }
    writeln!(
        out,
        "protection:  {}",
        if info.is_post_quantum() {
            "post-quantum (every recipient is X-Wing)"
        } else {
            "unknown recipient types"
        }
    )?;
    writeln!(
        out,
        "header:      {} bytes (two slots of {}; slot {} active, sequence {})",
        info.header_area_len, info.slot_size, info.active_slot, info.sequence
    )?;
    match (info.payload_len, info.plaintext_len) {
        (Some(p), Some(t)) => writeln!(out, "payload:     {p} bytes ({t} bytes of plaintext)")?,
        (Some(p), None) => writeln!(
            out,
            "payload:     {p} bytes (malformed: not a whole number of chunks)"
        )?,
        _ => writeln!(out, "payload:     unknown (not a regular file)")?,
    }
    Ok(Status::Success)
}
