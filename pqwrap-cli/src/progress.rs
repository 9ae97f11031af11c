//! The progress bar: on stderr, only when stderr is a terminal; silent otherwise. It is one of
//! the run's [`Events`]: each record moves it, and each failure is printed above it.
//!
//! The listing is streamed, so the total is not known at the start: a separate counting
//! listing (no file opened) runs beside the job and grows the bar's length as it goes; once it
//! has finished, the ETA is meaningful. The bar counts bytes; its message counts files.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pqwrap_rewrap::events::{Events, Outcome, Record};
use pqwrap_rewrap::store::{Listed, Store};

/// Progress of a job.
#[derive(Clone)]
pub struct Progress {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    bar: ProgressBar,
    files_done: AtomicU64,
    files_total: AtomicU64,
    counted: AtomicBool,
}

impl Progress {
    /// A bar on stderr if stderr is a terminal and `wanted`; otherwise a no-op.
    pub fn new(wanted: bool) -> Progress {
        if !wanted || !std::io::stderr().is_terminal() {
            return Progress { inner: None };
        }
        Progress::with_target(ProgressDrawTarget::stderr_with_hz(10))
    }

    fn with_target(target: ProgressDrawTarget) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} \
                 {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            inner: Some(Arc::new(Inner {
                bar,
                files_done: AtomicU64::new(0),
                files_total: AtomicU64::new(0),
                counted: AtomicBool::new(false),
            })),
        }
    }

    /// Counts the store's entries and their sizes, growing the bar (if one is shown); returns
    /// early once the bar is finished. Run it on a thread beside the job.
    pub fn count<S: Store>(&self, store: &S) {
        let Some(inner) = &self.inner else {
            return;
        };
        for item in store.list() {
            if let Listed::Candidate(e) = item {
                inner.files_total.fetch_add(1, Ordering::Relaxed);
                inner.bar.inc_length(store.size_hint(&e).unwrap_or(0));
            }
            if inner.bar.is_finished() {
                return;
            }
        }
        inner.counted.store(true, Ordering::Relaxed);
        inner.refresh();
    }

    /// One file finished (whatever its outcome); `bytes` is its size.
    pub fn file_done(&self, bytes: u64) {
        if let Some(inner) = &self.inner {
            inner.files_done.fetch_add(1, Ordering::Relaxed);
            inner.bar.inc(bytes);
            inner.refresh();
        }
    }

    /// Prints `line` on standard error, above the bar if one is shown (a plain `eprintln!`
    /// would be overwritten by the next redraw).
    pub fn println(&self, line: &str) {
        match &self.inner {
            Some(inner) => inner.bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(inner) = &self.inner {
            inner.bar.finish_and_clear();
        }
    }
}

/// Every record moves the bar; a failure is named above it (the summary only counts them).
impl Events for Progress {
    fn record(&self, rec: &Record<'_>) {
        if rec.outcome == Outcome::Failed {
            self.println(&format!("pqwrap rewrap: {}", rec.failure_line()));
        }
        let not_a_candidate = rec.outcome == Outcome::Cleaned
            || (rec.outcome == Outcome::Skipped && rec.bytes.is_none());
        if not_a_candidate {
            // Symlinks, special files, leftovers: the counting listing did not count them.
            return;
        }
        self.file_done(rec.bytes.unwrap_or(0));
    }
}

impl Inner {
    fn refresh(&self) {
        let done = self.files_done.load(Ordering::Relaxed);
        let total = self.files_total.load(Ordering::Relaxed);
        let more = if self.counted.load(Ordering::Relaxed) {
            ""
        } else {
            "+"
        };
        self.bar.set_message(format!("{done}/{total}{more} files"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_progress_is_a_no_op_and_counting_fills_totals() {
        // Under `cargo test`, stderr is not a terminal (captured), or we asked for none.
        let p = Progress::new(false);
        assert!(p.inner.is_none());
        p.file_done(10);
        p.finish();

        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::write(d.path().join("b"), vec![0u8; 24]).unwrap();
        let p = Progress::with_target(ProgressDrawTarget::hidden());
        let store = pqwrap_rewrap::store::fs::FsStore::new(
            vec![d.path().to_path_buf()],
            pqwrap_rewrap::store::fs::Durability::Group,
        );
        p.count(&store);
        let inner = p.inner.clone().unwrap();
        assert!(inner.counted.load(Ordering::Relaxed));
        assert_eq!(inner.bar.length(), Some(1024));
        assert_eq!(inner.files_total.load(Ordering::Relaxed), 2);
        p.file_done(1000);
        assert_eq!(inner.bar.position(), 1000);
        assert_eq!(inner.bar.message(), "1/2 files");
        p.finish();
    }
}
