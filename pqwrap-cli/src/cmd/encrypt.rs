//! `pqwrap encrypt`: encrypt a file to recipients (or a passphrase).

use std::io::{BufReader, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use pqwrap_core::keys::Recipient;
use pqwrap_core::{age, envelope};

use super::format::Format;
use super::io_util::{
    Content, Existing, Output, copy_buffered, open_input, read_passphrase, scrypt_limit,
};
use crate::exit::Status;

/// Encrypt a file (standard input by default) to recipients or with a passphrase.
#[derive(clap::Args)]
pub struct Args {
    /// Output format. age (the default) opens in any age implementation with post-quantum
    /// support; pqwrap is the native envelope, for archives that will be re-wrapped again and
    /// again (the re-wrap rewrites only its header, in place).
    #[arg(long, value_enum, default_value = "age")]
    format: Format,

    /// Encrypt to RECIPIENT (`age1pq1…` post-quantum or `age1…` classical). Repeatable.
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT")]
    recipients: Vec<String>,

    /// Encrypt to every recipient listed in FILE (one per line, `#` comments). Repeatable.
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    recipients_files: Vec<PathBuf>,

    /// Encrypt with a passphrase (read from the terminal, or --passphrase-file).
    #[arg(short, long, conflicts_with_all = ["recipients", "recipients_files"])]
    passphrase: bool,

    /// With -p: read the passphrase from the first line of FILE.
    #[arg(long, value_name = "FILE", requires = "passphrase")]
    passphrase_file: Option<PathBuf>,

    /// With -p: scrypt work factor (log2 N), 1..=30; one whose memory this machine cannot
    /// give is refused.
    #[arg(long, value_name = "N", default_value_t = age::DEFAULT_WORK_FACTOR,
          value_parser = super::io_util::work_factor, requires = "passphrase")]
    work_factor: u8,

    /// Allow post-quantum and classical recipients in one file (the classical stanza
    /// makes the file only classically secure).
    #[arg(long)]
    allow_mixed: bool,

    /// ASCII-armor the output.
    #[arg(short, long)]
    armor: bool,

    /// Write to FILE instead of standard output (appears only once complete).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// The file to encrypt (default: standard input).
    #[arg(value_name = "INPUT")]
    input: Option<PathBuf>,
}

fn collect_recipients(args: &Args) -> Result<Vec<Recipient>> {
    crate::keyfiles::load_recipients(&args.recipients, &args.recipients_files)
}

/// Runs `pqwrap encrypt`.
pub fn run(args: Args) -> Result<Status> {
    match args.format {
        Format::Age => encrypt_age(&args),
        Format::Pqwrap => encrypt_native(&args),
    }
}

fn encrypt_native(args: &Args) -> Result<Status> {
    if args.passphrase || args.armor {
        eprintln!(
            "pqwrap: the pqwrap format has no {} mode; use --format age",
            if args.passphrase {
                "passphrase"
            } else {
                "armor"
            }
        );
        return Ok(Status::Usage);
    }
    let recipients = collect_recipients(args)?;
    if recipients.is_empty() {
        eprintln!("pqwrap: give at least one -r/-R recipient");
        return Ok(Status::Usage);
    }
    if let Some(r) = recipients.iter().find(|r| !r.is_post_quantum()) {
        eprintln!(
            "pqwrap: the pqwrap format wraps only to post-quantum (age1pq1…) recipients, not {}",
            abbreviate(&r.to_string())
        );
        return Ok(Status::Usage);
    }
    let (input, name) = open_input(args.input.as_deref())?;
    let out = Output::open(args.output.as_deref(), Content::Binary, Existing::Replace)?;
    let mut w = envelope::Encryptor::new(out, &recipients)?;
    let mut input = BufReader::with_capacity(1 << 16, input);
    copy_buffered(&mut input, &mut w).with_context(|| format!("encrypting {name}"))?;
    let out = w.finish().with_context(|| format!("encrypting {name}"))?;
    out.commit()?;
    Ok(Status::Success)
}

/// The start of a long key string, for messages.
fn abbreviate(s: &str) -> String {
    match s.char_indices().nth(20) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn encrypt_age(args: &Args) -> Result<Status> {
    let file_key = age::FileKey::generate()?;
    let header = if args.passphrase {
        // Before asking for the passphrase: scrypt allocates its table in one piece, and an
        // allocation the machine cannot give aborts the process.
        scrypt_limit(args.work_factor).check_memory(args.work_factor)?;
        let pass = read_passphrase(args.passphrase_file.as_deref(), true)?;
        age::Header::wrap_passphrase(
            &file_key,
            &age::Passphrase::new(pass.to_string()),
            args.work_factor,
        )?
    } else {
        let recipients = collect_recipients(args)?;
        if recipients.is_empty() {
            eprintln!("pqwrap: give at least one -r/-R recipient, or -p");
            return Ok(Status::Usage);
        }
        let mixing = if args.allow_mixed {
            age::Mixing::Allow
        } else {
            age::Mixing::Refuse
        };
        age::Header::wrap(&file_key, &recipients, mixing).map_err(|e| {
            if matches!(e, age::AgeError::Encrypt(age::EncryptError::Mixed)) {
                anyhow::anyhow!("{e} (pass --allow-mixed to do it anyway)")
            } else {
                e.into()
            }
        })?
    };
    let (input, name) = open_input(args.input.as_deref())?;
    let (content, armor) = if args.armor {
        (Content::Text, age::Armor::Armored)
    } else {
        (Content::Binary, age::Armor::Binary)
    };
    let out = Output::open(args.output.as_deref(), content, Existing::Replace)?;
    let mut w = age::encrypt_writer(out, &file_key, &header, armor)?;
    let mut input = BufReader::with_capacity(age::stream::CHUNK_LEN, input);
    copy_buffered(&mut input, &mut w).with_context(|| format!("encrypting {name}"))?;
    w.flush()?;
    let out = w.finish().with_context(|| format!("encrypting {name}"))?;
    out.commit()?;
    Ok(Status::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pqwrap_core::keys;

    #[test]
    fn unknown_format_is_rejected_by_clap() {
        use clap::ValueEnum;
        assert!(Format::from_str("age", false).is_ok());
        assert!(Format::from_str("pqwrap", false).is_ok());
        assert!(Format::from_str("nope", false).is_err());
    }

    #[test]
    fn mixed_refused_without_flag() {
        let pq = keys::Identity::generate_hybrid()
            .expect("rng")
            .to_recipient();
        let cl = keys::Identity::generate_x25519()
            .expect("rng")
            .to_recipient();
        let fk = age::FileKey::generate().expect("rng");
        let e = age::Header::wrap(&fk, &[pq.clone(), cl.clone()], age::Mixing::Refuse).unwrap_err();
        assert_eq!(e.kind(), age::ErrorKind::Encrypt);
        assert!(age::Header::wrap(&fk, &[pq, cl], age::Mixing::Allow).is_ok());
    }
}
