//! The pipeline: the store's listing, streamed to N workers that open, detect, plan, stage and
//! verify each file; a committer that commits staged files in batches (or each worker its
//! own, for stores that want that); every entry ending as one record.
//!
//! ```text
//! store.list() --par_bridge--> N workers: open, detect, plan, stage, verify
//!                                        | bounded channel (backpressure)
//!                                        v
//!                                 committer: batches -> store.commit -> events.committed
//!                                        |
//!                                  events.record (report, progress) + summary counters
//! ```
//!
//! Memory is bounded whatever the number or size of files: the listing streams, the channel
//! holds at most a batch, and formats read headers and chunks, never whole payloads.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::time::{Duration, Instant};

use rayon::iter::{ParallelBridge, ParallelIterator};

use crate::blob::read_head;
use crate::error::{FileError, RewrapError, Skip};
use crate::events::{Committed, Durable, Events, Outcome, Record, Summary};
use crate::format::{self, Format, HEAD_LEN, Info, Input, Plan, Verify};
use crate::job::Job;
use crate::store::{
    Batching, CommitOutcome, Leftover, Listed, OpenError, Purpose, Source, Staged, Store,
};

/// Whether a run writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunMode {
    /// Re-wrap and commit.
    #[default]
    Commit,
    /// Report what would change; write nothing (no temporaries, no cleanup).
    DryRun,
}

/// How a run runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Worker threads (also the requests in flight, for object stores).
    pub jobs: usize,
    /// Commit, or only report.
    pub mode: RunMode,
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
            mode: RunMode::Commit,
            // The committer is one thread: while it syncs a batch, workers fill the channel
            // (as large as a batch), so under load each commit takes a full batch and the
            // cost of a sync is shared by up to this many files. Lowered at run time to what
            // the store's resources allow (`Store::fit`).
            batch_files: 1024,
            batch_bytes: 256 << 20,
            batch_wait: Duration::from_millis(20),
        }
    }
}

/// What travels with a staged file to its commit.
struct Pending<'a> {
    name: PathBuf,
    info: Info,
    size: u64,
    verify: Verify<'a>,
}

/// [`Events`] plus the run's own counts.
struct Counted<'e> {
    events: &'e dyn Events,
    summary: Mutex<Summary>,
}

impl Counted<'_> {
    fn record(&self, rec: &Record<'_>) {
        self.summary
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(rec);
        self.events.record(rec);
    }
}

struct Ctx<'a, S: Store> {
    store: &'a S,
    formats: &'a [&'static dyn Format],
    job: &'a Job,
    opts: &'a Options,
    events: &'a Counted<'a>,
}

/// Runs `job` over every entry of `store`, with the formats of `formats` (usually
/// [`format::FORMATS`]). Every entry met ends as exactly one record in `events`; the
/// returned summary counts them. Files that fail do not make this an `Err`: the summary says
/// whether every file is done ([`Summary::all_ok`]).
///
/// ```no_run
/// use pqwrap_core::keys::{Identity, Recipient};
/// use pqwrap_rewrap::{Job, JobOptions, Options, format::FORMATS, store::fs::{Durability, FsStore}};
///
/// let old: Vec<Identity> = vec![/* the identities that open the files today */];
/// let new: Vec<Recipient> = vec![Identity::generate_hybrid()?.to_recipient()];
/// let job = Job::new(old, new, JobOptions::default())?;
/// let store = FsStore::new(vec!["/archive".into()], Durability::Group);
/// let summary = pqwrap_rewrap::run(&store, FORMATS, &job, &Options::default(), &())?;
/// assert!(summary.all_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run<S: Store>(
    store: &S,
    formats: &[&'static dyn Format],
    job: &Job,
    options: &Options,
    events: &dyn Events,
) -> Result<Summary, RewrapError> {
    let (jobs, batch_files) = store.fit(options.jobs.max(1), options.batch_files.max(1));
    let opts = &Options {
        jobs,
        batch_files,
        ..options.clone()
    };
    let counted = Counted {
        events,
        summary: Mutex::new(Summary::default()),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs)
        .thread_name(|i| format!("pqwrap-worker-{i}"))
        .build()
        .map_err(|e| RewrapError::Threads(Box::new(e)))?;
    let ctx = Ctx {
        store,
        formats,
        job,
        opts,
        events: &counted,
    };
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<(S::Staged, Pending<'_>)>(opts.batch_files);
        let committer = scope.spawn(|| committer(rx, &ctx));
        pool.install(|| {
            store
                .list()
                .par_bridge()
                .for_each_with(tx, |tx, item| handle(item, &ctx, tx));
        });
        committer.join().map_err(|_| RewrapError::Committer)
    })?;
    Ok(counted
        .summary
        .into_inner()
        .unwrap_or_else(|p| p.into_inner()))
}

fn skipped(events: &Counted<'_>, name: &Path, skip: &Skip) {
    events.record(&Record::new(name, Outcome::Skipped).because(skip.reason(), skip.to_string()));
}

fn failed(events: &Counted<'_>, name: &Path, info: &Info, size: Option<u64>, e: &FileError) {
    let mut rec = Record::new(name, Outcome::Failed)
        .with_info(info)
        .because(e.reason(), e.to_string());
    rec.bytes = size;
    events.record(&rec);
}

fn handle<'a, S: Store>(
    item: Listed<S::Entry>,
    ctx: &Ctx<'a, S>,
    tx: &SyncSender<(S::Staged, Pending<'a>)>,
) {
    let events = ctx.events;
    match item {
        Listed::Candidate(entry) => process(entry, ctx, tx),
        Listed::Skipped { name, skip } => skipped(events, &name, &skip),
        Listed::Unreadable { name, error } => {
            failed(
                events,
                &name,
                &Info::default(),
                None,
                &FileError::Unreadable(error),
            );
        }
        Listed::Leftover(entry) => {
            let name = ctx.store.name_of(&entry).to_path_buf();
            if ctx.opts.mode == RunMode::DryRun {
                let mut rec = Record::new(&name, Outcome::Cleaned);
                rec.note = Some("leftover temporary (dry run: not removed)");
                events.record(&rec);
                return;
            }
            let own = |head: &[u8]| {
                crate::format::never_written(head)
                    || ctx.formats.iter().any(|f| f.is_own_output(head))
            };
            match ctx.store.remove_leftover(entry, &own) {
                Ok(Leftover::Removed) => events.record(&Record::new(&name, Outcome::Cleaned)),
                Ok(Leftover::InUse) => skipped(events, &name, &Skip::TemporaryInUse),
                Ok(Leftover::NotOurs) => skipped(events, &name, &Skip::TemporaryNotOurs),
                Ok(Leftover::Gone) => {}
                Err(e) => failed(events, &name, &Info::default(), None, &e),
            }
        }
    }
}

fn process<'a, S: Store>(
    entry: S::Entry,
    ctx: &Ctx<'a, S>,
    tx: &SyncSender<(S::Staged, Pending<'a>)>,
) {
    let (store, events, opts) = (ctx.store, ctx.events, ctx.opts);
    let name = store.name_of(&entry).to_path_buf();
    let src = match store.open(entry, Purpose::Rewrap) {
        Ok(s) => s,
        Err(OpenError::Skip(skip)) => return skipped(events, &name, &skip),
        Err(OpenError::Fail(e)) => return failed(events, &name, &Info::default(), None, &e),
        Err(OpenError::Gone) => return,
        Err(e @ OpenError::DoneThisRun) => {
            let mut rec = Record::new(&name, Outcome::AlreadyDone);
            let note = e.to_string();
            rec.note = Some(&note);
            return events.record(&rec);
        }
    };
    let size = src.blob().len();
    let record = |info: &Info, outcome: Outcome| {
        let mut rec = Record::new(&name, outcome).with_info(info);
        rec.bytes = Some(size);
        events.record(&rec);
    };
    let mut head = vec![0u8; HEAD_LEN];
    let found = read_head(src.blob(), &mut head).and_then(|n| {
        head.truncate(n);
        format::detect_file_in(ctx.formats, &head, src.blob())
    });
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            return failed(
                events,
                &name,
                &Info::default(),
                Some(size),
                &FileError::Unreadable(e),
            );
        }
    };
    let Some(found) = found else {
        let mut rec = Record::new(&name, Outcome::Skipped)
            .because(Skip::NotEncrypted.reason(), String::new());
        rec.bytes = Some(size);
        return events.record(&rec);
    };
    let input = Input {
        name: &name,
        blob: src.blob(),
        head: &head,
        in_place: store.in_place(),
    };
    match found.format.plan(ctx.job, &found, &input) {
        Plan::Skip { info, skip } => {
            let mut rec = Record::new(&name, Outcome::Skipped)
                .with_info(&info)
                .because(skip.reason(), skip.to_string());
            rec.bytes = Some(size);
            events.record(&rec);
        }
        Plan::AlreadyDone { info } => record(&info, Outcome::AlreadyDone),
        Plan::Fail { info, error } => failed(events, &name, &info, Some(size), &error),
        Plan::Replace { info, body, verify } => {
            if let Err(e) = store.check_replaceable(&src) {
                return failed(events, &name, &info, Some(size), &e);
            }
            if opts.mode == RunMode::DryRun {
                return record(&info, Outcome::WouldRewrap);
            }
            let staged = match store.stage(src, body) {
                Ok(s) => s,
                Err(e) => return failed(events, &name, &info, Some(size), &e),
            };
            if let Err(e) = verify(staged.blob()) {
                // A change under us explains a bad copy better than the copy does.
                let e = match staged.source().check_unchanged() {
                    Err(change) => FileError::Changed(change),
                    Ok(()) => FileError::Verify(e),
                };
                // Dropping `staged` removes the temporary.
                return failed(events, &name, &info, Some(size), &e);
            }
            let pending = Pending {
                name,
                info,
                size,
                verify,
            };
            match store.batching() {
                Batching::Group => {
                    if let Err(e) = tx.send((staged, pending)) {
                        // Only if the committer is gone (it panicked): the temporary is
                        // dropped.
                        let p = (e.0).1;
                        failed(
                            events,
                            &p.name,
                            &p.info,
                            Some(p.size),
                            &FileError::CommitterGone,
                        );
                    }
                }
                Batching::Single => finish(ctx, store.commit(vec![(staged, pending)])),
            }
        }
        Plan::InPlace { info, apply } => {
            if opts.mode == RunMode::DryRun {
                return record(&info, Outcome::WouldRewrap);
            }
            let mut apply = Some(apply);
            let res = store.write_in_place(&src, &mut |io| match apply.take() {
                Some(f) => f(io),
                None => Err(FileError::CommitterGone),
            });
            let hash = match res {
                Ok(h) => h,
                Err(e) => return failed(events, &name, &info, Some(size), &e),
            };
            let done = Committed {
                name: &name,
                info: &info,
                new_header_sha256: hash.as_deref(),
                durable: Durable::Confirmed,
            };
            match events.events.committed(&[done]) {
                Ok(()) => record(&info, Outcome::Rewrapped),
                Err(e) => failed(events, &name, &info, Some(size), &FileError::Audit(e)),
            }
        }
    }
}

/// Records the outcomes of a commit: read-back checks first, then the committed files go to
/// [`Events::committed`] together (one audit append, one sync), then each file's record.
fn finish<S: Store>(ctx: &Ctx<'_, S>, outcomes: Vec<(Pending<'_>, CommitOutcome)>) {
    let mut outcomes = outcomes;
    for (p, out) in &mut outcomes {
        if out.result.is_ok()
            && let Some(back) = out.read_back.take()
            && let Err(e) = (p.verify)(&*back)
        {
            out.result = Err(FileError::Verify(e));
        }
        // Only a verified replacement may take the old contents' last copy away.
        if let Some(then) = out.after_check.take() {
            if out.result.is_ok() {
                out.result = then();
            } else {
                drop(then);
            }
        }
    }
    // Also those in place whose directory sync failed: re-wrapped for anyone who looks, so
    // the audit log must say so (as not confirmed durable), though they are reported failed.
    let done: Vec<Committed<'_>> = outcomes
        .iter()
        .filter_map(|(p, o)| {
            let durable = match &o.result {
                Ok(()) => Durable::Confirmed,
                Err(e) if e.in_place_but_not_durable() => Durable::Unconfirmed,
                Err(_) => return None,
            };
            Some(Committed {
                name: &p.name,
                info: &p.info,
                new_header_sha256: None,
                durable,
            })
        })
        .collect();
    let logged = ctx.events.events.committed(&done);
    drop(done);
    let logged = logged.map_err(|e| e.to_string());
    for (p, out) in outcomes {
        let result = match (&out.result, &logged) {
            (Ok(()), Err(msg)) => Err(FileError::Audit(msg.clone().into())),
            _ => out.result,
        };
        let mut rec = match &result {
            Ok(()) => Record::new(&p.name, Outcome::Rewrapped).with_info(&p.info),
            Err(e) => Record::new(&p.name, Outcome::Failed)
                .with_info(&p.info)
                .because(e.reason(), e.to_string()),
        };
        rec.warnings = &out.warnings;
        rec.bytes = Some(if result.is_ok() { out.bytes } else { p.size });
        rec.transferred = out.transferred;
        rec.old_version_kept = out.kept_version.as_deref();
        ctx.events.record(&rec);
    }
}

fn committer<'a, S: Store>(rx: Receiver<(S::Staged, Pending<'a>)>, ctx: &Ctx<'a, S>) {
    let opts = ctx.opts;
    let mut batch = Vec::with_capacity(opts.batch_files);
    let mut bytes = 0u64;
    // Block only for the first file of a batch. After that, drain the channel and, when it is
    // empty, sleep briefly instead of parking on it: a parked receiver makes every worker's
    // send a futex wake-up and a context switch, one per file, which at a few thousand
    // files per second cost more CPU than the polling does.
    let poll = opts.batch_wait.min(Duration::from_millis(1));
    while let Ok(first) = rx.recv() {
        bytes += first.0.blob().len();
        batch.push(first);
        let mut last = Instant::now();
        let mut open = true;
        while open && batch.len() < opts.batch_files && bytes < opts.batch_bytes {
            match rx.try_recv() {
                Ok(s) => {
                    bytes += s.0.blob().len();
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
        bytes = 0;
        finish(ctx, ctx.store.commit(std::mem::take(&mut batch)));
        if !open {
            return;
        }
    }
}
