//! `pqwrap rewrap`: re-wrap every encrypted file under the given paths to post-quantum
//! recipients, in place, in parallel, crash-safe. The engine is `pqwrap_rewrap`; this module
//! reads the keys and the options, guards the run's own output files, and prints.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::Result;
use pqwrap_rewrap::events::{AuditTrail, Events, JsonLines, Summary, Tee};
use pqwrap_rewrap::format::FORMATS;
use pqwrap_rewrap::sops_config::SopsConfig;
use pqwrap_rewrap::store::Store;
use pqwrap_rewrap::store::fs::{Durability, FsStore};
use pqwrap_rewrap::{
    Classical, Job, JobError, JobOptions, Mode, Options, PayloadCheck, PgpEntries, RunMode,
};

use crate::exit::Status;
use crate::keyfiles::{load_identities, load_recipients};
use crate::objects::Target;
use crate::outputs::{self, Guard, ReportFile};
use crate::progress::Progress;

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

A file counts as done only if an identity given to the run shows it: a re-run after an
  interrupted one needs the new identity too (-i old.key -i new.key), or the files already
  re-wrapped are reported unverified and the run exits 1.

EXIT STATUS
  0 every encrypted file was re-wrapped or verified done; 1 some failed or could not be
  verified (see the summary and the report); 2 bad usage.";

/// Re-wrap encrypted files to post-quantum recipients, in place (age, pqwrap and SOPS files).
#[derive(clap::Args)]
#[command(after_long_help = AFTER_HELP)]
#[command(group(clap::ArgGroup::new("to").required(true).multiple(true).args(["recipient", "recipients_file", "sops_config"])))]
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

    /// Worker threads (default: the number of CPUs; 32 for an object store, where each
    /// worker is a request in flight).
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = super::io_util::nonzero)]
    jobs: Option<NonZeroUsize>,

    /// Write one JSON object per file to FILE (`-` for standard output, `s3://BUCKET/KEY` (or
    /// `gs://`, `az://`) for an object written when the run ends). FILE must not exist yet, or be an earlier report
    /// (which is replaced when the run ends); it may not lie inside a tree being re-wrapped,
    /// nor be a key file.
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,

    /// Append one hash-chained line per re-wrapped file to FILE (check it with `pqwrap audit
    /// verify FILE`). FILE may not lie inside a tree being re-wrapped, nor be a key file.
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

    /// How new files are made durable: `group` (one filesystem sync per batch, the default;
    /// on FUSE mounts, where a filesystem sync reaches nothing, it syncs each file and
    /// directory instead) or `per-file` (an fsync per file and per directory: use it on NFS
    /// and other network filesystems).
    #[arg(long, value_name = "MODE", default_value = "group")]
    sync: SyncMode,

    #[command(flatten)]
    sops: SopsArgs,

    /// Files and directories to re-wrap (directories recursively; symlinks not followed), or
    /// one object-store URL (`s3://BUCKET[/PREFIX]`, `gs://BUCKET[/PREFIX]`,
    /// `az://CONTAINER[/PREFIX]`).
    #[arg(value_name = "PATH|URL", required = true)]
    paths: Vec<PathBuf>,

    #[command(flatten)]
    objects: crate::objects::RewrapArgs,
}

/// The options for SOPS files.
#[derive(clap::Args)]
struct SopsArgs {
    /// SOPS files: take each file's new age recipients from the creation rules of this
    /// `.sops.yaml` (path_regex, age, key_groups), as `sops updatekeys` does. Needed for
    /// files with several key groups.
    #[arg(long = "sops-config", value_name = "FILE")]
    sops_config: Option<PathBuf>,

    /// SOPS files: remove the PGP entries of every key group that gets new age entries
    /// (kept, they still wrap the data key classically).
    #[arg(long = "remove-pgp")]
    remove_pgp: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SyncMode {
    Group,
    PerFile,
}

/// Runs `pqwrap rewrap`.
pub fn run(args: Args) -> Result<Status> {
    let target = match crate::objects::target(&args.paths) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("pqwrap rewrap: {e:#}");
            return Ok(Status::Usage);
        }
    };
    let local = matches!(target, Target::Local);
    if local && args.objects.any() {
        eprintln!(
            "pqwrap rewrap: --shard, --manifest and --purge-old-versions apply to object stores \
             (s3://, gs://, az://), not to local paths"
        );
        return Ok(Status::Usage);
    }
    for p in args.paths.iter().filter(|_| local) {
        // The real reason: "no such file" would be wrong for a path we may not reach.
        if let Err(e) = std::fs::symlink_metadata(p) {
            eprintln!("pqwrap rewrap: {}: {e}", p.display());
            return Ok(Status::Usage);
        }
    }
    let identities = load_identities(&args.identity)?;
    let recipients = load_recipients(&args.recipient, &args.recipients_file)?;
    let options = JobOptions {
        mode: if args.reencrypt {
            Mode::Reencrypt
        } else {
            Mode::Rewrap
        },
        payload_check: if args.verify_payload {
            PayloadCheck::AllChunks
        } else {
            PayloadCheck::FirstChunk
        },
        classical: if args.allow_classical {
            Classical::Allow
        } else {
            Classical::Refuse
        },
        pgp: if args.sops.remove_pgp {
            PgpEntries::Remove
        } else {
            PgpEntries::Keep
        },
    };
    let sops_config = match &args.sops.sops_config {
        Some(p) => match SopsConfig::load(p) {
            Ok(c) => Some(std::sync::Arc::new(c)),
            Err(e) => {
                eprintln!("pqwrap rewrap: {e}");
                return Ok(Status::Usage);
            }
        },
        None => None,
    };
    let job = match sops_config {
        Some(c) => Job::with_recipients_for(identities, recipients, c, options),
        None => Job::new(identities, recipients, options),
    };
    let job = match job {
        Ok(j) => j,
        Err(e @ (JobError::NoRecipients | JobError::Classical(_))) => {
            eprintln!("pqwrap rewrap: {e}");
            return Ok(Status::Usage);
        }
        Err(e) => return Err(e.into()),
    };
    // The run's own outputs are checked before anything is written: never inside a tree being
    // re-wrapped, never a key file, never something a report would destroy.
    let keys: Vec<&Path> = args
        .identity
        .iter()
        .chain(&args.recipients_file)
        .chain(&args.sops.sops_config)
        .map(PathBuf::as_path)
        .collect();
    let roots: &[PathBuf] = if local { &args.paths } else { &[] };
    let guard = Guard::new(roots, &keys);
    let jobs = args.jobs.map_or(
        if local {
            Options::default().jobs
        } else {
            crate::objects::DEFAULT_JOBS
        },
        NonZeroUsize::get,
    );
    // A report object in the bucket being re-wrapped is never one of its candidates.
    let mut report_key: Option<(String, String)> = None;
    let report = match &args.report {
        Some(p) if p.as_os_str() != "-" => {
            let created = match p.to_str() {
                #[cfg(any(feature = "s3", feature = "cloud"))]
                Some(url)
                    if crate::objects::target(std::slice::from_ref(p))
                        .is_ok_and(|t| !matches!(t, Target::Local)) =>
                {
                    crate::objects::report_object(url, jobs).map(|(r, loc)| {
                        report_key = Some((loc.bucket, loc.prefix));
                        r
                    })
                }
                _ => ReportFile::create(p, &guard),
            };
            match created {
                Ok(r) => Some(r),
                Err(e) => {
                    eprintln!("pqwrap rewrap: {e:#}");
                    return Ok(Status::Usage);
                }
            }
        }
        _ => None,
    };
    // A dry run writes nothing, not even the log's first line.
    let audit = match &args.audit_log {
        Some(p) if !args.dry_run => match outputs::open_audit_log(p, &guard) {
            Ok(log) => Some(log),
            Err(e) => {
                eprintln!("pqwrap rewrap: {e:#}");
                return Ok(Status::Usage);
            }
        },
        _ => None,
    };
    let opts = Options {
        jobs,
        mode: if args.dry_run {
            RunMode::DryRun
        } else {
            RunMode::Commit
        },
        ..Options::default()
    };
    let stdout_report = matches!(&args.report, Some(p) if p.as_os_str() == "-");
    // Read only by the object-store arm.
    let _ = &report_key;
    let summary = match target {
        Target::Local => {
            let durability = match args.sync {
                SyncMode::Group => Durability::Group,
                SyncMode::PerFile => Durability::PerFile,
            };
            let mut store = FsStore::new(args.paths.clone(), durability);
            for f in report
                .iter()
                .map(ReportFile::file)
                .chain(audit.iter().map(|(f, _)| f))
            {
                store = store.exclude(f)?;
            }
            let outputs = Outputs {
                report,
                stdout_report,
                audit: audit.map(|(_, log)| AuditTrail::new(log)),
            };
            execute(&store, &job, &opts, outputs, true)?
        }
        #[cfg(any(feature = "s3", feature = "cloud"))]
        Target::Object(location) => {
            use pqwrap_rewrap::store::bucket::Selection;
            let selection = match &args.objects.manifest {
                Some(m) => Selection::Manifest(m.clone()),
                None => Selection::Prefix,
            };
            let exclude = report_key
                .filter(|(b, _)| *b == location.bucket)
                .map(|(_, k)| k)
                .into_iter()
                .collect();
            let outputs = Outputs {
                report,
                stdout_report,
                audit: audit.map(|(_, log)| AuditTrail::new(log)),
            };
            let request = crate::objects::Request {
                selection,
                args: &args.objects,
                exclude,
                jobs,
            };
            let run = Execute {
                job: &job,
                opts: &opts,
                outputs,
            };
            match crate::objects::connect(location, request, run) {
                Ok(finished) => finished?,
                Err(e) => {
                    eprintln!("pqwrap rewrap: {e:#}");
                    return Ok(Status::Usage);
                }
            }
        }
    };
    Ok(if summary.all_ok() {
        Status::Success
    } else {
        Status::Failure
    })
}

/// [`execute`] on whichever object store the URL names.
#[cfg(any(feature = "s3", feature = "cloud"))]
struct Execute<'a> {
    job: &'a Job,
    opts: &'a Options,
    outputs: Outputs,
}

#[cfg(any(feature = "s3", feature = "cloud"))]
impl crate::objects::WithStore for Execute<'_> {
    type Out = Result<Finished>;

    fn with<S: Store>(self, store: &S) -> Result<Finished> {
        execute(store, self.job, self.opts, self.outputs, true)
    }
}

/// Where a run's records go besides standard error.
pub struct Outputs {
    /// The report file.
    pub report: Option<ReportFile>,
    /// The report on standard output instead.
    pub stdout_report: bool,
    /// The audit log.
    pub audit: Option<AuditTrail>,
}

/// How a run ended.
pub struct Finished {
    /// The counts.
    pub summary: Summary,
    /// What went wrong writing the report, if anything.
    pub report_error: Option<String>,
}

impl Finished {
    /// Every file done, and the report says so.
    pub fn all_ok(&self) -> bool {
        self.summary.all_ok() && self.report_error.is_none()
    }
}

/// Runs the job with a progress bar (if `progress` and stderr is a terminal), names each
/// failed file on stderr, then prints the summary. Shared with `pqwrap demo`.
pub fn execute<S: Store>(
    store: &S,
    job: &Job,
    opts: &Options,
    outputs: Outputs,
    progress: bool,
) -> Result<Finished> {
    let bar = Progress::new(progress);
    let json = match (&outputs.report, outputs.stdout_report) {
        (Some(r), _) => Some(JsonLines::new(Box::new(r.writer()?))),
        (None, true) => Some(JsonLines::new(Box::new(std::io::stdout()))),
        (None, false) => None,
    };
    let mut sinks: Vec<&dyn Events> = vec![&bar];
    if let Some(j) = &json {
        sinks.push(j);
    }
    if let Some(a) = &outputs.audit {
        sinks.push(a);
    }
    let events = Tee(sinks);
    let summary = std::thread::scope(|s| {
        s.spawn(|| bar.count(store));
        let summary = pqwrap_rewrap::run(store, FORMATS, job, opts, &events);
        bar.finish();
        summary
    })?;
    drop(events);
    let mut report_error = json
        .map(JsonLines::finish)
        .and_then(Result::err)
        .map(|e| format!("cannot write the report: {e}"));
    if report_error.is_none()
        && let Some(r) = outputs.report
        && let Err(e) = r.finish()
    {
        report_error = Some(format!("{e:#}"));
    }
    eprint!(
        "{}",
        crate::render::summary(
            &summary,
            opts.mode == RunMode::DryRun,
            report_error.as_deref()
        )
    );
    Ok(Finished {
        summary,
        report_error,
    })
}
