//! The re-wrap job's machinery: the streaming walk, the per-file work in parallel, the group
//! commit, the report and the progress bar. It knows no format: a [`Job`] looks at each file
//! and returns a [`Plan`] (skip it, it is done, replace it with these bytes, or re-write it in
//! place), and this module carries the plan out safely.
//!
//! Data flow (memory bounded whatever the number or size of files):
//!
//! ```text
//! walk (iterator) --par_bridge--> N rayon workers: open+lock, plan, write temporary
//!                                        | bounded channel (backpressure)
//!                                        v
//!                                 committer thread: batches -> commit::commit_batch
//!                                        |
//!                   report (JSON lines, streamed) + progress + summary counters
//! ```

pub mod commit;
pub mod formats;
pub mod inventory;
pub mod progress;
pub mod report;
pub mod walk;

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::time::{Duration, Instant};

use rayon::iter::{ParallelBridge, ParallelIterator};

use commit::{Body, CommitError, Durability, OpenError, Source, Staged};
use progress::Progress;
use report::{Outcome, Reason, Record, Reporter};
use walk::Entry;

/// What a job knows of a file's format, for the report.
#[derive(Clone, Debug, Default)]
pub struct Info {
    /// `age`, `age-armored`, `pqwrap`, ...
    pub format: Option<&'static str>,
    /// Stanza (recipient) types found.
    pub old_stanzas: Vec<String>,
    /// Stanza types written (or that would be).
    pub new_stanzas: Vec<String>,
    /// A remark for the report (e.g. how "already done" was decided).
    pub note: Option<String>,
    /// SHA-256 (hex) of the header replaced, for the audit log.
    pub old_header_sha256: Option<String>,
    /// SHA-256 (hex) of the header written, for the audit log (when known before writing).
    pub new_header_sha256: Option<String>,
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A check run on the finished temporary before it is committed (read it back, open it with
/// the new identity, ...), given the temporary and the number of bytes written to it. `Err`
/// leaves the original alone.
pub type Verify<'a> = Box<dyn FnOnce(&File, u64) -> Result<(), String> + Send + 'a>;

/// An in-place re-write: called with the locked source once it was re-checked unchanged.
/// Returns the SHA-256 (hex) of the header written, if known, for the audit log.
pub type InPlace<'a> =
    Box<dyn FnOnce(&Source) -> Result<Option<String>, (Reason, String)> + Send + 'a>;

/// The audit log shared by the workers and the committer.
pub type Audit = std::sync::Mutex<pqwrap_core::audit::AuditLog>;

/// The audit record of a committed file.
fn audit_record(path: &std::path::Path, info: &Info, new_hash: Option<&str>) -> serde_json::Value {
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    serde_json::json!({
        "event": "file.rewrap",
        "path": path.to_string_lossy(),
        "format": info.format,
        "old_header_sha256": info.old_header_sha256,
        "new_header_sha256": new_hash.or(info.new_header_sha256.as_deref()),
        "old_stanzas": info.old_stanzas,
        "new_stanzas": info.new_stanzas,
        "time": time,
    })
}

/// Appends the audit lines of committed files, with one sync. An error here fails the files
/// in the report: they were re-wrapped, but the log does not say so.
fn audit_append(audit: &Audit, records: &[serde_json::Value]) -> Result<(), String> {
    let mut log = audit.lock().unwrap_or_else(|p| p.into_inner());
    log.append_all(records)
        .map(|_| ())
        .map_err(|e| format!("re-wrapped, but the audit log could not be written: {e}"))
}

/// What to do with one file.
pub enum Plan<'a> {
    /// Not a candidate (not encrypted, unknown format): reported, does not fail the run.
    Skip {
        /// What is known.
        info: Info,
        /// Why.
        reason: Reason,
        /// Details for people (may be empty).
        message: String,
    },
    /// Already wrapped exactly to the target: nothing to write.
    AlreadyDone {
        /// What is known.
        info: Info,
    },
    /// A candidate that cannot be re-wrapped (no identity opens it, corrupt, ...).
    Fail {
        /// What is known.
        info: Info,
        /// Why.
        reason: Reason,
        /// Details for people.
        message: String,
    },
    /// Write new contents to a temporary and rename it over the original (age files).
    Replace {
        /// For the report.
        info: Info,
        /// The new contents.
        body: Body<'a>,
        /// Run on the temporary before commit.
        verify: Option<Verify<'a>>,
    },
    /// Re-write in place, keeping the inode (native files).
    InPlace {
        /// For the report.
        info: Info,
        /// The re-write.
        apply: InPlace<'a>,
    },
}

/// The per-file format work. Implementations must be cheap to share between threads.
pub trait Job: Sync {
    /// Looks at `src` (open, locked, snapshotted) and decides. Must not write to it: writing
    /// happens through the returned plan only.
    fn plan<'a>(&'a self, src: &Source) -> Plan<'a>;

    /// Whether `head`, the first bytes (at most 64) of a file named like a temporary, is what
    /// this job's temporaries start with: nothing yet, or all or part of the start of a file
    /// it writes. Only such a file is removed as the leftover of a killed run; anything else
    /// that merely has the name is left alone.
    fn is_own_output(&self, head: &[u8]) -> bool;
}

/// How the job runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Worker threads.
    pub jobs: usize,
    /// Report what would change; write nothing (no temporaries, no cleanup).
    pub dry_run: bool,
    /// How temporaries are made durable.
    pub durability: Durability,
    /// Commit a batch once it holds this many files...
    pub batch_files: usize,
    /// ...or this many bytes...
    pub batch_bytes: u64,
    /// ...or when no new file arrived for this long.
    pub batch_wait: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            dry_run: false,
            durability: Durability::Group,
            // The committer is one thread: while it syncs a batch, workers fill the channel
            // (as large as a batch), so under load each commit takes a full batch and the
            // cost of a sync is shared by up to this many files. Lowered at run time to fit
            // the descriptor limit (see `run`).
            batch_files: 1024,
            batch_bytes: 256 << 20,
            batch_wait: Duration::from_millis(20),
        }
    }
}

/// What travels with a staged file to the committer.
struct Pending {
    info: Info,
    size: u64,
}

/// Runs `job` over every file under `roots`. Every file met ends as one record in `reporter`.
pub fn run(
    roots: &[PathBuf],
    job: &dyn Job,
    opts: &Options,
    reporter: &Reporter,
    progress: &Progress,
    audit: Option<&Audit>,
) -> anyhow::Result<()> {
    // Descriptors: a worker holds up to five at once (the original, its directory, a
    // temporary, the original re-opened for writing, the directory it walks); a staged file
    // three (original, directory, temporary), in the batch being committed and in the
    // channel; and a reserve serves the standard streams, the report, the audit log and the
    // walk's open directories. Workers and batches are cut to fit the limit, so a large `-j`
    // under a low limit runs slower instead of failing files with EMFILE.
    const RESERVE: u64 = 64;
    const PER_WORKER: u64 = 5;
    const PER_STAGED: u64 = 3;
    let usable = raise_fd_limit().saturating_sub(RESERVE);
    let jobs = (opts.jobs.max(1) as u64).min((usable / (PER_WORKER + 2 * PER_STAGED)).max(1));
    let fit = usable.saturating_sub(jobs * PER_WORKER) / (2 * PER_STAGED);
    let opts = &Options {
        jobs: usize::try_from(jobs).unwrap_or(1),
        batch_files: opts
            .batch_files
            .min(usize::try_from(fit).unwrap_or(usize::MAX))
            .max(1),
        ..opts.clone()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .thread_name(|i| format!("pqwrap-worker-{i}"))
        .build()?;
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Staged<Pending>>(opts.batch_files);
        let committer = scope.spawn(|| committer(rx, opts, reporter, progress, audit));
        let ctx = Ctx {
            job,
            opts,
            reporter,
            progress,
            audit,
            locks: Arc::new(commit::Locks::default()),
            dirs: commit::DirCache::default(),
        };
        pool.install(|| {
            walk::walk(roots)
                .par_bridge()
                .for_each_with(tx, |tx, entry| handle(entry, &ctx, tx));
        });
        committer
            .join()
            .map_err(|_| anyhow::anyhow!("the commit thread panicked"))
    })
}

/// What every worker shares.
struct Ctx<'a> {
    job: &'a dyn Job,
    opts: &'a Options,
    reporter: &'a Reporter,
    progress: &'a Progress,
    audit: Option<&'a Audit>,
    locks: Arc<commit::Locks>,
    dirs: commit::DirCache,
}

fn handle(entry: Entry, ctx: &Ctx<'_>, tx: &SyncSender<Staged<Pending>>) {
    let (opts, reporter) = (ctx.opts, ctx.reporter);
    let skipped = |p: &PathBuf, reason, msg: &str| {
        reporter.record(&Record::new(p, Outcome::Skipped).because(reason, msg));
    };
    match entry {
        Entry::File(path) => process_file(path, ctx, tx),
        Entry::Symlink(p) => skipped(&p, Reason::Symlink, "symbolic links are not followed"),
        Entry::Special(p) => skipped(&p, Reason::SpecialFile, "not a regular file"),
        Entry::TemporaryDir(p) => skipped(
            &p,
            Reason::TemporaryDirectory,
            "a directory named like a pqwrap temporary: not descended into",
        ),
        Entry::Temporary(p) => {
            // This run's own, met while listing a directory it is working in.
            if p.file_name().is_some_and(walk::is_own_temp_name) {
                return;
            }
            if opts.dry_run {
                reporter.record(&Record::new(&p, Outcome::Cleaned).because(
                    Reason::Unreadable,
                    "leftover temporary (dry run: not removed)",
                ));
                return;
            }
            match walk::remove_leftover(&p, &|head| ctx.job.is_own_output(head)) {
                Ok(walk::Leftover::Removed) => {
                    reporter.record(&Record::new(&p, Outcome::Cleaned));
                }
                Ok(walk::Leftover::InUse) => skipped(
                    &p,
                    Reason::TemporaryInUse,
                    "a temporary of another running pqwrap",
                ),
                Ok(walk::Leftover::Gone) => {}
                Ok(walk::Leftover::NotOurs) => skipped(
                    &p,
                    Reason::TemporaryInUse,
                    "named like a pqwrap temporary but does not hold a pqwrap output: left alone",
                ),
                Err(e) => reporter.record(
                    &Record::new(&p, Outcome::Failed)
                        .because(Reason::Io, format!("cannot remove leftover temporary: {e}")),
                ),
            }
        }
        Entry::Unreadable { path, error } => {
            reporter
                .record(&Record::new(&path, Outcome::Failed).because(Reason::Unreadable, error));
        }
    }
}

fn process_file(path: PathBuf, ctx: &Ctx<'_>, tx: &SyncSender<Staged<Pending>>) {
    let (job, opts, reporter, progress) = (ctx.job, ctx.opts, ctx.reporter, ctx.progress);
    let src = match commit::open_source(&path, &ctx.locks, &ctx.dirs) {
        Ok(s) => s,
        Err(e) => {
            let (outcome, reason, msg) = match e {
                OpenError::Symlink => (Outcome::Skipped, Reason::Symlink, String::new()),
                OpenError::Special => (Outcome::Skipped, Reason::SpecialFile, String::new()),
                OpenError::Locked => (
                    Outcome::Failed,
                    Reason::Locked,
                    "another process holds its lock (another pqwrap run?)".into(),
                ),
                OpenError::Io(e) => (Outcome::Failed, Reason::Unreadable, e.to_string()),
            };
            reporter.record(&Record::new(&path, outcome).because(reason, msg));
            progress.file_done(0);
            return;
        }
    };
    let size = src.snap.size;
    let record =
        |info: &Info, outcome: Outcome, why: Option<(Reason, String)>, warnings: &[String]| {
            let mut rec = Record::new(&path, outcome);
            rec.format = info.format;
            rec.old_stanzas = &info.old_stanzas;
            rec.new_stanzas = &info.new_stanzas;
            rec.note = info.note.as_deref();
            rec.warnings = warnings;
            rec.bytes = Some(size);
            if let Some((reason, msg)) = why {
                rec = rec.because(reason, msg);
            }
            reporter.record(&rec);
            progress.file_done(size);
        };
    match job.plan(&src) {
        Plan::Skip {
            info,
            reason,
            message,
        } => record(&info, Outcome::Skipped, Some((reason, message)), &[]),
        Plan::AlreadyDone { info } => record(&info, Outcome::AlreadyDone, None, &[]),
        Plan::Fail {
            info,
            reason,
            message,
        } => record(&info, Outcome::Failed, Some((reason, message)), &[]),
        Plan::Replace { info, body, verify } => {
            if src.snap.nlink > 1 {
                let others = src.snap.nlink - 1;
                let msg = format!(
                    "has {} hard links: replacing this name with a new file would leave the \
                     old header, with its old key wraps, readable through the other \
                     {others} name(s); remove the other links, or re-wrap a copy",
                    src.snap.nlink
                );
                record(&info, Outcome::Failed, Some((Reason::HardLinked, msg)), &[]);
                return;
            }
            if opts.dry_run {
                record(&info, Outcome::WouldRewrap, None, &[]);
                return;
            }
            let staged = match commit::stage(src, body, Pending { info, size }) {
                Ok(s) => s,
                Err((pending, e)) => {
                    // The original was checked whole before the copy: running out of it
                    // now means someone truncated it under us.
                    let reason = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        Reason::ChangedUnderUs
                    } else {
                        Reason::Io
                    };
                    let why = Some((reason, format!("cannot write the new file: {e}")));
                    record(&pending.info, Outcome::Failed, why, &[]);
                    return;
                }
            };
            if let Some(verify) = verify
                && let Err(msg) = verify(&staged.temp.file, staged.bytes)
            {
                // A change under us explains a bad copy better than the copy does.
                let why = match staged.src.check_unchanged() {
                    Err(changed) => Some((Reason::ChangedUnderUs, changed)),
                    Ok(()) => Some((Reason::VerifyFailed, msg)),
                };
                record(&staged.payload.info, Outcome::Failed, why, &[]);
                return; // dropping `staged` removes the temporary
            }
            if let Err(e) = tx.send(staged) {
                // Only if the committer is gone (it panicked): the temporary is dropped.
                let pending = e.0.payload;
                let why = Some((Reason::Io, "the commit thread stopped".to_string()));
                record(&pending.info, Outcome::Failed, why, &[]);
            }
        }
        Plan::InPlace { info, apply } => {
            if opts.dry_run {
                record(&info, Outcome::WouldRewrap, None, &[]);
                return;
            }
            if let Err(msg) = src.check_unchanged() {
                record(
                    &info,
                    Outcome::Failed,
                    Some((Reason::ChangedUnderUs, msg)),
                    &[],
                );
                return;
            }
            match apply(&src) {
                Ok(new_hash) => match ctx.audit.map_or(Ok(()), |a| {
                    audit_append(a, &[audit_record(&path, &info, new_hash.as_deref())])
                }) {
                    Ok(()) => record(&info, Outcome::Rewrapped, None, &[]),
                    Err(m) => record(&info, Outcome::Failed, Some((Reason::Io, m)), &[]),
                },
                Err(why) => record(&info, Outcome::Failed, Some(why), &[]),
            }
        }
    }
}

fn committer(
    rx: Receiver<Staged<Pending>>,
    opts: &Options,
    reporter: &Reporter,
    progress: &Progress,
    audit: Option<&Audit>,
) {
    let mut batch: Vec<Staged<Pending>> = Vec::with_capacity(opts.batch_files);
    let mut bytes = 0u64;
    let flush = |batch: &mut Vec<Staged<Pending>>, bytes: &mut u64| {
        *bytes = 0;
        if batch.is_empty() {
            return;
        }
        let committed = commit::commit_batch(std::mem::take(batch), opts.durability);
        // One audit append (one sync) for the batch.
        let logged = audit.map_or(Ok(()), |a| {
            let records: Vec<_> = committed
                .iter()
                .filter(|c| c.result.is_ok())
                .map(|c| audit_record(&c.path, &c.payload.info, None))
                .collect();
            audit_append(a, &records)
        });
        for c in committed {
            let (outcome, why) = match c.result {
                Ok(()) => match &logged {
                    Ok(()) => (Outcome::Rewrapped, None),
                    Err(m) => (Outcome::Failed, Some((Reason::Io, m.clone()))),
                },
                Err(CommitError::Changed(m)) => {
                    (Outcome::Failed, Some((Reason::ChangedUnderUs, m)))
                }
                Err(CommitError::Io(m)) => (Outcome::Failed, Some((Reason::Io, m))),
            };
            let mut rec = Record::new(&c.path, outcome);
            rec.format = c.payload.info.format;
            rec.old_stanzas = &c.payload.info.old_stanzas;
            rec.new_stanzas = &c.payload.info.new_stanzas;
            rec.note = c.payload.info.note.as_deref();
            rec.warnings = &c.warnings;
            rec.bytes = Some(if outcome == Outcome::Rewrapped {
                c.bytes
            } else {
                c.payload.size
            });
            if let Some((reason, msg)) = why {
                rec = rec.because(reason, msg);
            }
            reporter.record(&rec);
            progress.file_done(c.payload.size);
        }
    };
    // Block only for the first file of a batch. After that, drain the channel and, when it is
    // empty, sleep briefly instead of parking on it: a parked receiver makes every worker's
    // send a futex wake-up and a context switch, one per file, which at a few thousand
    // files per second cost more CPU than the polling does.
    let poll = opts.batch_wait.min(Duration::from_millis(1));
    // Every pass ends with a flush, so the batch is empty whenever `recv` blocks.
    while let Ok(first) = rx.recv() {
        bytes += first.bytes;
        batch.push(first);
        let mut last = Instant::now();
        let mut open = true;
        while open && batch.len() < opts.batch_files && bytes < opts.batch_bytes {
            match rx.try_recv() {
                Ok(s) => {
                    bytes += s.bytes;
                    batch.push(s);
                    last = Instant::now();
                }
                Err(TryRecvError::Empty) if last.elapsed() < opts.batch_wait => {
                    std::thread::sleep(poll);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        flush(&mut batch, &mut bytes);
        if !open {
            return;
        }
    }
}

/// Batches hold descriptors open; take the hard limit, as most tools that walk trees do.
/// Returns the soft limit in force.
fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        let before = lim.current;
        lim.current = lim.maximum;
        if setrlimit(Resource::Nofile, lim).is_err() {
            lim.current = before;
        }
    }
    lim.current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
