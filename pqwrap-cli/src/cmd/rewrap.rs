//! `pqwrap rewrap`: re-wrap every encrypted file under the given paths to post-quantum
//! recipients, in place, in parallel, crash-safe. The machinery is in `crate::rewrap`; this
//! module reads the keys and the options, and holds the per-format work (the [`Job`]).

use std::num::NonZeroUsize;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use pqwrap_core::keys::{self, Recipient};

use crate::exit::Status;
use crate::rewrap::{self, commit::Durability, progress::Progress, report::Reporter};

const AFTER_HELP: &str = "\
WHEN IS RE-WRAPPING ENOUGH?
  Re-wrapping replaces only the header of each file: the wrapping of its file key. The file
  key and the encrypted payload stay exactly the same. That protects every copy made from now
  on, as long as no copy of the old file (old header + payload) has left your control.

  If old copies may already have been collected (backups, sync services, a stolen disk:
  \"harvest now, decrypt later\"), a future quantum computer that breaks their classical
  X25519 wrap recovers the file key, and because re-wrapping keeps that key, it then opens the
  re-wrapped file and all its future copies as well. For such data use --reencrypt: each file
  is decrypted and encrypted again under a fresh file key (the whole payload is rewritten, so
  it is slower), and old copies reveal nothing about the new file. No tool can protect what a
  harvested copy already contains: treat those contents (passwords, keys) as exposed and
  rotate them.

SAFETY
  Every file opens with the old identity or the new one at every instant, even if pqwrap is
  killed: new contents go to a temporary beside the file, are synced, then renamed over it
  (native files: the spare header slot is written and synced before the old one is wiped).
  A file changed while being re-wrapped is left alone and reported. A re-run skips files
  already done and removes temporaries left by a killed run. Each file is locked while it is
  re-wrapped, so two runs never re-wrap the same file. Keep the old identity until a run ends
  with exit status 0.

EXIT STATUS
  0 every encrypted file was re-wrapped or already done; 1 some failed (see the summary and
  the report); 2 bad usage.";

/// Re-wrap encrypted files to post-quantum recipients, in place (age and pqwrap files).
#[derive(clap::Args)]
#[command(after_long_help = AFTER_HELP)]
#[command(group(clap::ArgGroup::new("to").required(true).multiple(true).args(["recipient", "recipients_file"])))]
pub struct Args {
    /// Identity file that opens the files today (the old key). Repeatable; any that matches
    /// is used.
    #[arg(
        short = 'i',
        long = "identity",
        value_name = "IDENTITY_FILE",
        required = true
    )]
    identity: Vec<PathBuf>,

    /// Recipient to wrap to (`age1pq1...`). Repeatable.
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT")]
    recipient: Vec<String>,

    /// File of recipients, one per line (`#` comments). Repeatable.
    #[arg(short = 'R', long = "recipients-file", value_name = "RECIPIENTS_FILE")]
    recipients_file: Vec<PathBuf>,

    /// Report what would change; write nothing.
    #[arg(long)]
    dry_run: bool,

    /// Worker threads (default: the number of CPUs).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    jobs: Option<NonZeroUsize>,

    /// Write one JSON object per file to FILE (`-` for standard output).
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,

    /// Append one hash-chained line per re-wrapped file to FILE (check it with `pqwrap audit
    /// verify FILE`).
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,

    /// Decrypt and re-encrypt each payload under a fresh file key, instead of re-wrapping
    /// the existing key (for data whose old ciphertext may have leaked; see below).
    #[arg(long)]
    reencrypt: bool,

    /// Allow classical (X25519) recipients among the new ones.
    #[arg(long)]
    allow_classical: bool,

    /// Before committing, authenticate every payload chunk (default: the first one).
    #[arg(long)]
    verify_payload: bool,

    /// How new files are made durable: `group` (one filesystem sync per batch, the
    /// default) or `per-file` (an fsync per file and per directory: for FUSE mounts such as
    /// sshfs, whose filesystem sync may not reach the backing store).
    #[arg(long, value_name = "MODE", default_value = "group")]
    sync: SyncMode,

    /// Files and directories to re-wrap (directories recursively; symlinks not followed).
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SyncMode {
    Group,
    PerFile,
}

pub use super::keygen::load_identities;

/// Reads the recipients given with `-r` and `-R`.
pub fn load_recipients(inline: &[String], files: &[PathBuf]) -> Result<Vec<Recipient>> {
    let mut out = Vec::new();
    for r in inline {
        out.push(
            r.parse::<Recipient>()
                .with_context(|| format!("invalid recipient {r:?}"))?,
        );
    }
    for p in files {
        let text = super::keygen::read_to_string_bounded(
            std::fs::File::open(p)
                .with_context(|| format!("cannot open recipients file {}", p.display()))?,
        )
        .with_context(|| format!("cannot read recipients file {}", p.display()))?;
        out.extend(
            keys::parse_recipients(&text)
                .with_context(|| format!("{}: not a valid recipients file", p.display()))?,
        );
    }
    // The same recipient twice would only add a stanza that opens the same way.
    let mut seen = std::collections::HashSet::new();
    out.retain(|r| seen.insert(r.to_string()));
    Ok(out)
}

/// Runs `pqwrap rewrap`.
pub fn run(args: Args) -> Result<Status> {
    for p in &args.paths {
        // The real reason: "no such file" would be wrong for a path we may not reach.
        if let Err(e) = std::fs::symlink_metadata(p) {
            eprintln!("pqwrap rewrap: {}: {e}", p.display());
            return Ok(Status::Usage);
        }
    }
    let identities = load_identities(&args.identity)?;
    let recipients = load_recipients(&args.recipient, &args.recipients_file)?;
    if recipients.is_empty() {
        eprintln!("pqwrap rewrap: no recipients given (-r or -R)");
        return Ok(Status::Usage);
    }
    if let Some(c) = recipients.iter().find(|r| !r.is_post_quantum())
        && !args.allow_classical
    {
        eprintln!(
            "pqwrap rewrap: {c} is a classical (X25519) recipient: files wrapped to it stay \
             exposed to a future quantum computer; pass --allow-classical to use it anyway"
        );
        return Ok(Status::Usage);
    }
    let report: Option<Box<dyn std::io::Write + Send>> = match &args.report {
        None => None,
        Some(p) if p.as_os_str() == "-" => Some(Box::new(std::io::stdout())),
        Some(p) => {
            Some(Box::new(std::fs::File::create(p).with_context(|| {
                format!("cannot create the report {}", p.display())
            })?))
        }
    };
    let job = rewrap::formats::FormatJob::new(
        identities,
        recipients,
        args.reencrypt,
        args.verify_payload,
        args.allow_classical,
    );
    let opts = rewrap::Options {
        jobs: args
            .jobs
            .map_or(rewrap::Options::default().jobs, NonZeroUsize::get),
        dry_run: args.dry_run,
        durability: match args.sync {
            SyncMode::Group => Durability::Group,
            SyncMode::PerFile => Durability::PerFile,
        },
        ..rewrap::Options::default()
    };
    // A dry run writes nothing, not even the log's first line.
    let audit = match &args.audit_log {
        Some(p) if !args.dry_run => Some(std::sync::Mutex::new(
            pqwrap_core::audit::AuditLog::open(p)
                .with_context(|| format!("cannot open the audit log {}", p.display()))?,
        )),
        _ => None,
    };
    let summary = execute(&args.paths, &job, &opts, report, true, audit.as_ref())?;
    Ok(if summary.all_ok() {
        Status::Success
    } else {
        Status::Failure
    })
}

/// Runs the job with a progress bar (if `progress` and stderr is a terminal) and prints each
/// failed file, then the summary, on stderr. Shared with `pqwrap demo`.
pub fn execute(
    paths: &[PathBuf],
    job: &rewrap::formats::FormatJob,
    opts: &rewrap::Options,
    report: Option<Box<dyn std::io::Write + Send>>,
    progress: bool,
    audit: Option<&rewrap::Audit>,
) -> Result<rewrap::report::Summary> {
    for p in paths {
        if let Err(e) = std::fs::symlink_metadata(p) {
            bail!("{}: {e}", p.display());
        }
    }
    let bar = Progress::new(progress);
    let echo = bar.clone();
    // Each failure named on stderr as it happens: the summary only counts them.
    let reporter = Reporter::new(report).echo_failures(Box::new(move |line: &str| {
        echo.println(&format!("pqwrap rewrap: {line}"))
    }));
    bar.count_in_background(paths);
    rewrap::run(paths, job, opts, &reporter, &bar, audit)?;
    bar.finish();
    let summary = reporter.finish();
    eprint!("{}", summary.render(opts.dry_run));
    Ok(summary)
}
