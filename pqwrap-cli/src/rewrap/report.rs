//! Per-file records, streamed as JSON lines, and the summary counts.
//!
//! Every file the walk meets ends as exactly one [`Record`]. Records are written as they come
//! (one JSON object per line, through a mutex-guarded buffered writer), so the report never
//! sits in memory; only the counters do.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// How one file ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Re-wrapped and committed durably.
    Rewrapped,
    /// `--dry-run`: would have been re-wrapped.
    WouldRewrap,
    /// Already wrapped exactly to the target recipients: nothing to do.
    AlreadyDone,
    /// Not a candidate (see the reason): does not make the run fail.
    Skipped,
    /// A leftover temporary of a killed run, removed (or, in a dry run, that would be).
    Cleaned,
    /// A candidate that was not re-wrapped (see reason and error): the run fails.
    Failed,
}

/// Why a file was skipped or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A symbolic link: never followed, never replaced.
    Symlink,
    /// A FIFO, socket or device.
    SpecialFile,
    /// Not an encrypted file of a format pqwrap knows.
    NotEncrypted,
    /// No given identity opens it, and its stanzas are what the targets produce: probably
    /// re-wrapped by an earlier run (pass the new identity to verify).
    Unverified,
    /// Passphrase-encrypted (age scrypt): no public-key wrap to replace.
    Passphrase,
    /// A pqwrap temporary held by another running job.
    TemporaryInUse,
    /// A directory named like a pqwrap temporary: not descended into.
    TemporaryDirectory,
    /// A file or directory that could not be read.
    Unreadable,
    /// Another process holds the file's lock (another pqwrap run).
    Locked,
    /// More than one hard link: replacing this name would leave the old header on the others.
    HardLinked,
    /// The file changed while it was being re-wrapped: left alone.
    ChangedUnderUs,
    /// None of the given identities opens the file.
    NoIdentity,
    /// The file's header or payload is malformed or does not authenticate.
    Corrupt,
    /// The new file did not pass verification before commit.
    VerifyFailed,
    /// An I/O error while writing or committing.
    Io,
}

impl Reason {
    /// Words for the summary.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Symlink => "symlink",
            Reason::SpecialFile => "special file",
            Reason::NotEncrypted => "not encrypted",
            Reason::Unverified => "probably done (unverified)",
            Reason::Passphrase => "passphrase-encrypted",
            Reason::TemporaryInUse => "temporary of a running job",
            Reason::TemporaryDirectory => "directory named like a temporary",
            Reason::Unreadable => "unreadable",
            Reason::Locked => "locked by another run",
            Reason::HardLinked => "hard-linked",
            Reason::ChangedUnderUs => "changed under us",
            Reason::NoIdentity => "no matching identity",
            Reason::Corrupt => "corrupt",
            Reason::VerifyFailed => "verification failed",
            Reason::Io => "I/O error",
        }
    }
}

/// One line of the report.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// The path as walked. Non-UTF-8 bytes are replaced (U+FFFD); `path_lossy` says so.
    pub path: String,
    /// True when `path` is not the exact name (it was not valid UTF-8).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_lossy: bool,
    /// The file's format, when known (`age`, `age-armored`, `pqwrap`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'a str>,
    /// Stanza (recipient) types before.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub old_stanzas: &'a [String],
    /// Stanza types after (or that would be written).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub new_stanzas: &'a [String],
    /// How it ended.
    pub outcome: Outcome,
    /// Why, for skipped and failed files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The error or explanation, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Things not carried over that did not stop the re-wrap.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub warnings: &'a [String],
    /// A remark for people (e.g. how "already done" was decided).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'a str>,
    /// Size of the file after the operation (bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

impl<'a> Record<'a> {
    /// A record with only a path and an outcome.
    pub fn new(path: &Path, outcome: Outcome) -> Record<'a> {
        let lossy = path.to_string_lossy();
        Record {
            path_lossy: path.to_str().is_none(),
            path: lossy.into_owned(),
            format: None,
            old_stanzas: &[],
            new_stanzas: &[],
            outcome,
            reason: None,
            error: None,
            warnings: &[],
            note: None,
            bytes: None,
        }
    }

    /// `<path>: failed (<reason>): <error>`, for people.
    pub fn failure_line(&self) -> String {
        let mut s = format!("{}: failed", self.path);
        if let Some(r) = self.reason {
            s.push_str(&format!(" ({})", r.describe()));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!(": {e}"));
        }
        s
    }

    /// With a reason and a message.
    pub fn because(mut self, reason: Reason, error: impl Into<String>) -> Self {
        self.reason = Some(reason);
        let e = error.into();
        self.error = (!e.is_empty()).then_some(e);
        self
    }
}

/// Counts by outcome and reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// (outcome, reason) -> number of files.
    pub counts: BTreeMap<(Outcome, Option<Reason>), u64>,
    /// Bytes of the files re-wrapped (or that would be).
    pub bytes_rewrapped: u64,
    /// The report file could not be written completely.
    pub report_error: Option<String>,
}

impl Summary {
    /// Files with this outcome, whatever the reason.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.counts
            .iter()
            .filter(|((o, _), _)| *o == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    /// True when every candidate ended re-wrapped (or would be) or already done, and the
    /// report was written.
    pub fn all_ok(&self) -> bool {
        self.count(Outcome::Failed) == 0 && self.report_error.is_none()
    }

    fn by_reason(&self, outcome: Outcome) -> String {
        let parts: Vec<String> = self
            .counts
            .iter()
            .filter(|((o, _), _)| *o == outcome)
            .map(|((_, r), n)| format!("{} {n}", r.map_or("other", Reason::describe)))
            .collect();
        parts.join(", ")
    }

    /// The summary for people.
    pub fn render(&self, dry_run: bool) -> String {
        let mut s = String::new();
        let (done_word, n) = if dry_run {
            ("would re-wrap", self.count(Outcome::WouldRewrap))
        } else {
            ("re-wrapped", self.count(Outcome::Rewrapped))
        };
        s.push_str(&format!(
            "{done_word:<14}{n} ({})\n",
            indicatif::HumanBytes(self.bytes_rewrapped)
        ));
        s.push_str(&format!(
            "{:<14}{}\n",
            "already done",
            self.count(Outcome::AlreadyDone)
        ));
        for (word, outcome) in [("skipped", Outcome::Skipped), ("failed", Outcome::Failed)] {
            let n = self.count(outcome);
            if n == 0 {
                s.push_str(&format!("{word:<14}0\n"));
            } else {
                s.push_str(&format!("{word:<14}{n} ({})\n", self.by_reason(outcome)));
            }
        }
        let unverified = self
            .counts
            .get(&(Outcome::Skipped, Some(Reason::Unverified)))
            .copied()
            .unwrap_or(0);
        if n == 0 && self.count(Outcome::Failed) == 0 {
            s.push_str("nothing to change");
            if unverified > 0 {
                s.push_str(&format!(
                    ": {unverified} file(s) that no given identity opens look re-wrapped \
                     already; add the new identity (-i) to verify them"
                ));
            }
            s.push('\n');
        }
        let cleaned = self.count(Outcome::Cleaned);
        if cleaned > 0 {
            let word = if dry_run {
                "leftover temporaries (would remove)"
            } else {
                "leftover temporaries removed"
            };
            s.push_str(&format!("{word}: {cleaned}\n"));
        }
        if let Some(e) = &self.report_error {
            s.push_str(&format!("report: {e}\n"));
        }
        s
    }
}

/// Called with one line (`<path>: failed (<reason>): <error>`) for each failed file.
pub type FailureEcho = Box<dyn Fn(&str) + Send + Sync>;

/// Where records go: the optional JSON-lines writer, the counters, and the optional echo of
/// failures (for standard error: without `--report` the summary alone would count failed
/// files without naming them).
pub struct Reporter {
    out: Option<Mutex<Box<dyn Write + Send>>>,
    summary: Mutex<Summary>,
    echo: Option<FailureEcho>,
}

impl Reporter {
    /// Records go to `out` (if any), one JSON object per line.
    pub fn new(out: Option<Box<dyn Write + Send>>) -> Reporter {
        Reporter {
            out: out.map(|w| Mutex::new(Box::new(io::BufWriter::new(w)) as Box<dyn Write + Send>)),
            summary: Mutex::new(Summary::default()),
            echo: None,
        }
    }

    /// Also passes a line naming each failed file, its reason and its error to `echo`.
    pub fn echo_failures(mut self, echo: FailureEcho) -> Reporter {
        self.echo = Some(echo);
        self
    }

    /// Counts the record and streams it.
    pub fn record(&self, rec: &Record<'_>) {
        if rec.outcome == Outcome::Failed
            && let Some(echo) = &self.echo
        {
            echo(&rec.failure_line());
        }
        let report_failed = {
            let mut sum = self.summary.lock().unwrap_or_else(|p| p.into_inner());
            *sum.counts.entry((rec.outcome, rec.reason)).or_default() += 1;
            if matches!(rec.outcome, Outcome::Rewrapped | Outcome::WouldRewrap) {
                sum.bytes_rewrapped += rec.bytes.unwrap_or(0);
            }
            sum.report_error.is_some()
        };
        if report_failed {
            return;
        }
        if let Some(out) = &self.out {
            let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
            let res = serde_json::to_writer(&mut *w, rec)
                .map_err(io::Error::from)
                .and_then(|()| w.write_all(b"\n"));
            if let Err(e) = res {
                self.summary
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .report_error = Some(format!("cannot write the report: {e}"));
            }
        }
    }

    /// Flushes the report and returns the counts.
    pub fn finish(self) -> Summary {
        let mut sum = self.summary.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(out) = self.out {
            let mut w = out.into_inner().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = w.flush()
                && sum.report_error.is_none()
            {
                sum.report_error = Some(format!("cannot write the report: {e}"));
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn records_stream_as_json_lines_and_count() {
        let buf = Shared::default();
        let r = Reporter::new(Some(Box::new(buf.clone())));
        let old = vec!["X25519".to_string()];
        let new = vec!["mlkem768x25519".to_string()];
        let mut rec = Record::new(Path::new("a/b.age"), Outcome::Rewrapped);
        rec.format = Some("age");
        rec.old_stanzas = &old;
        rec.new_stanzas = &new;
        rec.bytes = Some(10);
        r.record(&rec);
        r.record(&Record::new(Path::new("l"), Outcome::Skipped).because(Reason::Symlink, ""));
        r.record(
            &Record::new(Path::new("h"), Outcome::Failed).because(Reason::HardLinked, "2 links"),
        );
        let sum = r.finish();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["path"], "a/b.age");
        assert_eq!(lines[0]["old_stanzas"][0], "X25519");
        assert_eq!(lines[0]["new_stanzas"][0], "mlkem768x25519");
        assert_eq!(lines[0]["outcome"], "rewrapped");
        assert_eq!(lines[1]["reason"], "symlink");
        assert!(lines[1].get("error").is_none());
        assert_eq!(lines[2]["outcome"], "failed");
        assert_eq!(lines[2]["error"], "2 links");
        assert_eq!(sum.count(Outcome::Rewrapped), 1);
        assert_eq!(sum.count(Outcome::Failed), 1);
        assert_eq!(sum.bytes_rewrapped, 10);
        assert!(!sum.all_ok());
        let text = sum.render(false);
        assert!(text.contains("failed        1 (hard-linked 1)"), "{text}");
        assert!(text.contains("skipped       1 (symlink 1)"), "{text}");
    }

    #[test]
    fn failures_are_echoed_with_path_reason_and_error() {
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = Arc::clone(&lines);
        let r = Reporter::new(None).echo_failures(Box::new(move |l: &str| {
            sink.lock().unwrap().push(l.to_string())
        }));
        r.record(&Record::new(Path::new("ok.age"), Outcome::Rewrapped));
        r.record(&Record::new(Path::new("n"), Outcome::Skipped).because(Reason::Symlink, ""));
        r.record(
            &Record::new(Path::new("d/big.age"), Outcome::Failed)
                .because(Reason::Io, "No space left on device"),
        );
        assert_eq!(
            *lines.lock().unwrap(),
            vec!["d/big.age: failed (I/O error): No space left on device".to_string()]
        );
        assert_eq!(r.finish().count(Outcome::Failed), 1);
    }

    #[test]
    fn non_utf8_paths_are_flagged() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"bad\xffname"));
        let rec = Record::new(p, Outcome::Skipped);
        assert!(rec.path_lossy);
        let v: serde_json::Value = serde_json::to_value(&rec).unwrap();
        assert_eq!(v["path_lossy"], true);
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::other("disk full"))
        }
    }

    #[test]
    fn a_report_that_cannot_be_written_fails_the_run() {
        let r = Reporter::new(Some(Box::new(Broken)));
        r.record(&Record::new(Path::new("x"), Outcome::AlreadyDone));
        let sum = r.finish();
        assert!(!sum.all_ok());
        assert!(sum.report_error.unwrap().contains("disk full"));
    }
}
