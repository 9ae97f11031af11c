//! The progress bar: on stderr, only when stderr is a terminal; silent otherwise.
//!
//! The walk is streamed, so the total is not known at the start: a separate counting walk
//! (metadata only, no file opened) runs beside the job and grows the bar's length as it goes;
//! once it has finished, the ETA is meaningful. The bar counts bytes; its message counts files.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::walk::{self, Entry};

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

    /// Starts the counting walk over `roots` in a background thread (if a bar is shown).
    pub fn count_in_background(&self, roots: &[PathBuf]) {
        let Some(inner) = self.inner.clone() else {
            return;
        };
        let roots = roots.to_vec();
        std::thread::spawn(move || {
            for entry in walk::walk(&roots) {
                if let Entry::File(p) = entry {
                    let size = std::fs::symlink_metadata(&p).map_or(0, |m| m.len());
                    inner.files_total.fetch_add(1, Ordering::Relaxed);
                    inner.bar.inc_length(size);
                }
                if inner.bar.is_finished() {
                    return;
                }
            }
            inner.counted.store(true, Ordering::Relaxed);
            inner.refresh();
        });
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
        p.count_in_background(&[d.path().to_path_buf()]);
        let inner = p.inner.clone().unwrap();
        for _ in 0..500 {
            if inner.counted.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(inner.counted.load(Ordering::Relaxed));
        assert_eq!(inner.bar.length(), Some(1024));
        assert_eq!(inner.files_total.load(Ordering::Relaxed), 2);
        p.file_done(1000);
        assert_eq!(inner.bar.position(), 1000);
        assert_eq!(inner.bar.message(), "1/2 files");
        p.finish();
    }
}
