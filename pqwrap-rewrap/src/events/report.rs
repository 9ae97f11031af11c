//! The per-file report: one JSON object per line, streamed as records come.

use std::io::{self, Write};
use std::sync::Mutex;

use super::{Events, Record};

/// An [`Events`] writing each record as one JSON line, through a buffered writer behind a
/// mutex: the report never sits in memory. The first write error stops the report and is
/// returned by [`JsonLines::finish`].
pub struct JsonLines {
    state: Mutex<State>,
}

struct State {
    out: io::BufWriter<Box<dyn Write + Send>>,
    error: Option<io::Error>,
}

impl JsonLines {
    /// Records go to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        JsonLines {
            state: Mutex::new(State {
                out: io::BufWriter::new(out),
                error: None,
            }),
        }
    }

    /// Flushes; the first error met while writing, if any.
    pub fn finish(self) -> io::Result<()> {
        let mut s = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        s.out.flush()
    }
}

impl Events for JsonLines {
    fn record(&self, rec: &Record<'_>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.error.is_some() {
            return;
        }
        let res = serde_json::to_writer(&mut s.out, rec)
            .map_err(io::Error::from)
            .and_then(|()| s.out.write_all(b"\n"));
        if let Err(e) = res {
            s.error = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Outcome, Reason};
    use std::path::Path;
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
    fn records_stream_as_json_lines() {
        let buf = Shared::default();
        let r = JsonLines::new(Box::new(buf.clone()));
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
        r.finish().unwrap();
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
    }

    #[test]
    fn a_write_error_is_kept_and_returned() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::Error::other("disk full"))
            }
        }
        let r = JsonLines::new(Box::new(Full));
        // Larger than the buffer, so the write reaches the writer.
        let long = "x".repeat(20_000);
        r.record(&Record::new(Path::new(&long), Outcome::Rewrapped));
        assert!(r.finish().unwrap_err().to_string().contains("disk full"));
    }
}
