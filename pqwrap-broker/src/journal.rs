//! The write-ahead journal in the state directory, and the group commit that makes a
//! request's records durable — journal, audit log and OCSF stream — before it is answered.
//!
//! The journal is JSON lines, `{"sum":"<hex SHA-256 of the record's JSON>","rec":{…}}`.
//! Replaying it rebuilds everything the broker must not forget: issued tokens and their
//! status-list indices, revocations, quota use, keys. A last line that is incomplete or whose
//! sum does not match was never acknowledged (a record is answered only after its sync), so
//! opening the journal cuts it off; a bad line anywhere else is corruption and stops the
//! broker.
//!
//! Many connection threads commit at once: the first to arrive writes everyone's pending
//! records with one write and one `fdatasync` per file, the others wait for it, so the cost
//! of a sync is shared by all requests of a batch.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Condvar, Mutex};

use pqwrap_core::audit::AuditLog;
use pqwrap_core::ocsf::OcsfLog;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Longest journal line accepted.
const MAX_LINE: usize = 1 << 20;

/// Why the journal could not be opened, replayed or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum JournalError {
    /// File I/O failed.
    #[error("journal {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A line other than the last is damaged.
    #[error("journal line {line} is corrupt ({what}); the state directory was modified")]
    Corrupt {
        /// 1-based line.
        line: usize,
        /// How.
        what: String,
    },
    /// The audit log could not be written.
    #[error("audit log: {0}")]
    Audit(#[from] pqwrap_core::audit::AuditError),
    /// An earlier batch failed in a way that could not be undone; nothing more is written.
    #[error("an earlier write failed and could not be undone: {0}")]
    Broken(String),
}

/// One thing the broker must remember.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum Record {
    /// A token was issued (before it was handed out).
    Issued {
        /// cti, hex.
        cti: String,
        /// Its status-list index.
        idx: u64,
        /// Its agent session.
        sub: String,
        /// Its audience.
        aud: String,
        /// Its expiry.
        exp: u64,
        /// The signing key's kid, hex.
        kid: String,
        /// Its ancestors' ctis, root first.
        ancestors: Vec<String>,
        /// Its maxJobs, if it may submit quantum jobs.
        jobs_max: Option<u64>,
    },
    /// These tokens are revoked.
    Revoked {
        /// ctis, hex.
        ctis: Vec<String>,
    },
    /// An agent session is revoked: no more tokens for it.
    AgentRevoked {
        /// The session.
        agent: String,
    },
    /// A quantum job was charged to every token of `chain` (root first).
    Consumed {
        /// ctis, hex.
        chain: Vec<String>,
        /// Its shots.
        shots: u64,
        /// Its runtime, seconds (rounded up).
        runtime_secs: u64,
    },
    /// A rotated-in signing key, stored as `keys/<seq>.jwk`.
    KeyAdded {
        /// Its number.
        seq: u64,
        /// Its kid, hex.
        kid: String,
    },
    /// A key whose tokens have all expired was removed.
    KeyRetired {
        /// Its number.
        seq: u64,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    sum: String,
    rec: Record,
}

fn sum_of(rec_json: &str) -> String {
    pqwrap_core::token::keys::hex_lower(&Sha256::digest(rec_json.as_bytes()))
}

fn encode_line(r: &Record) -> String {
    let rec = serde_json::to_string(r).unwrap_or_default();
    format!("{{\"sum\":\"{}\",\"rec\":{rec}}}\n", sum_of(&rec))
}

fn decode_line(bytes: &[u8]) -> Result<Record, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let l: Line = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let rec = serde_json::to_string(&l.rec).map_err(|e| e.to_string())?;
    if sum_of(&rec) != l.sum {
        return Err("checksum mismatch".into());
    }
    Ok(l.rec)
}

/// The journal file, open for appending.
pub struct Journal {
    file: File,
    len: u64,
}

impl Journal {
    /// Opens (creating, mode 0600) the journal and returns it with its records; an
    /// unacknowledged torn last line is cut off.
    pub fn open(path: &Path) -> Result<(Journal, Vec<Record>), JournalError> {
        let io = |what| move |source| JournalError::Io { what, source };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(io("open"))?;
        let mut records = Vec::new();
        let mut good_len = 0u64;
        let mut torn: Option<(usize, String)> = None;
        {
            let mut r = BufReader::new(&file);
            let mut buf = Vec::new();
            let mut line = 0usize;
            loop {
                buf.clear();
                let n = std::io::Read::take(&mut r, MAX_LINE as u64 + 1)
                    .read_until(b'\n', &mut buf)
                    .map_err(io("read"))?;
                if n == 0 {
                    break;
                }
                line += 1;
                if let Some((l, what)) = torn.take() {
                    // A damaged line followed by more lines is not a torn tail.
                    return Err(JournalError::Corrupt { line: l, what });
                }
                let complete = buf.last() == Some(&b'\n');
                let body = if complete {
                    &buf[..buf.len() - 1]
                } else {
                    &buf[..]
                };
                match (complete, decode_line(body)) {
                    (true, Ok(rec)) => {
                        records.push(rec);
                        good_len += n as u64;
                    }
                    (false, _) => torn = Some((line, "incomplete".into())),
                    (true, Err(e)) => torn = Some((line, e)),
                }
            }
        }
        if torn.is_some() {
            file.set_len(good_len).map_err(io("truncate"))?;
            file.sync_data().map_err(io("sync"))?;
        }
        file.seek(std::io::SeekFrom::End(0)).map_err(io("seek"))?;
        Ok((
            Journal {
                file,
                len: good_len,
            },
            records,
        ))
    }

    fn append(&mut self, recs: &[Record]) -> Result<(), JournalError> {
        if recs.is_empty() {
            return Ok(());
        }
        let mut out = String::new();
        for r in recs {
            out.push_str(&encode_line(r));
        }
        let res = self
            .file
            .write_all(out.as_bytes())
            .and_then(|()| self.file.sync_data());
        if let Err(source) = res {
            // Cut back to the last acknowledged line, so a half-written batch never counts.
            if self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data())
                .is_err()
            {
                return Err(JournalError::Broken(source.to_string()));
            }
            return Err(JournalError::Io {
                what: "write",
                source,
            });
        }
        self.len += out.len() as u64;
        Ok(())
    }
}

/// Where a batch goes.
pub struct Sinks {
    /// The journal.
    pub journal: Journal,
    /// The hash-chained audit log.
    pub audit: AuditLog,
    /// The OCSF JSON-lines stream, if configured.
    pub ocsf: Option<OcsfLog>,
}

/// What one request commits.
#[derive(Default)]
pub struct Batch {
    /// Journal records.
    pub records: Vec<Record>,
    /// Audit log records (JSON objects).
    pub audit: Vec<serde_json::Value>,
    /// OCSF events (JSON objects).
    pub ocsf: Vec<serde_json::Value>,
}

struct Inner {
    pending: Vec<(u64, Batch)>,
    next_ticket: u64,
    /// Every ticket below this has been written (successfully or not).
    done_below: u64,
    /// Tickets whose batch failed, and why.
    failed: Vec<(u64, String)>,
    sinks: Option<Sinks>,
    broken: Option<String>,
}

/// Group commit over the [`Sinks`].
pub struct Committer {
    inner: Mutex<Inner>,
    cv: Condvar,
}

impl Committer {
    /// A committer writing to `sinks`.
    pub fn new(sinks: Sinks) -> Committer {
        Committer {
            inner: Mutex::new(Inner {
                pending: Vec::new(),
                next_ticket: 0,
                done_below: 0,
                failed: Vec::new(),
                sinks: Some(sinks),
                broken: None,
            }),
            cv: Condvar::new(),
        }
    }

    /// Makes `batch` durable in every sink; returns once it is (or why it is not).
    pub fn commit(&self, batch: Batch) -> Result<(), String> {
        let mut g = self.inner.lock().map_err(|_| "state lock poisoned")?;
        if let Some(b) = &g.broken {
            return Err(b.clone());
        }
        let ticket = g.next_ticket;
        g.next_ticket += 1;
        g.pending.push((ticket, batch));
        loop {
            if g.done_below > ticket {
                if let Some(pos) = g.failed.iter().position(|(t, _)| *t == ticket) {
                    return Err(g.failed.swap_remove(pos).1);
                }
                return Ok(());
            }
            if let Some(mut sinks) = g.sinks.take() {
                // This thread leads: write everything pending, outside the lock.
                let batches = std::mem::take(&mut g.pending);
                drop(g);
                let top = batches.last().map(|(t, _)| *t).unwrap_or(ticket);
                let result = write_all(&mut sinks, &batches);
                g = self.inner.lock().map_err(|_| "state lock poisoned")?;
                g.sinks = Some(sinks);
                g.done_below = g.done_below.max(top + 1);
                if let Err(e) = result {
                    let msg = e.to_string();
                    if matches!(e, JournalError::Broken(_)) {
                        g.broken = Some(msg.clone());
                    }
                    for (t, _) in &batches {
                        g.failed.push((*t, msg.clone()));
                    }
                }
                self.cv.notify_all();
                continue;
            }
            g = self.cv.wait(g).map_err(|_| "state lock poisoned")?;
        }
    }
}

fn write_all(sinks: &mut Sinks, batches: &[(u64, Batch)]) -> Result<(), JournalError> {
    let records: Vec<Record> = batches
        .iter()
        .flat_map(|(_, b)| b.records.iter().cloned())
        .collect();
    // The journal first: what it holds is what the broker acts on after a restart.
    sinks.journal.append(&records)?;
    let audit: Vec<serde_json::Value> = batches
        .iter()
        .flat_map(|(_, b)| b.audit.iter().cloned())
        .collect();
    sinks.audit.append_all(&audit)?;
    if let Some(f) = sinks.ocsf.as_mut() {
        let events: Vec<serde_json::Value> = batches
            .iter()
            .flat_map(|(_, b)| b.ocsf.iter().cloned())
            .collect();
        f.append_all(&events).map_err(|source| JournalError::Io {
            what: "OCSF write",
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u64) -> Record {
        Record::Consumed {
            chain: vec![format!("{n:032x}")],
            shots: n,
            runtime_secs: 1,
        }
    }

    #[test]
    fn torn_tail_is_cut_and_corruption_elsewhere_stops() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal");
        {
            let (mut j, recs) = Journal::open(&p).unwrap();
            assert!(recs.is_empty());
            j.append(&[rec(1), rec(2)]).unwrap();
        }
        let full = std::fs::read(&p).unwrap();
        // A torn last line.
        let mut torn = full.clone();
        torn.extend_from_slice(b"{\"sum\":\"00");
        std::fs::write(&p, &torn).unwrap();
        let (_, recs) = Journal::open(&p).unwrap();
        assert_eq!(recs, vec![rec(1), rec(2)]);
        assert_eq!(std::fs::read(&p).unwrap(), full);
        // An edited middle line.
        let text = String::from_utf8(full)
            .unwrap()
            .replacen("\"shots\":1", "\"shots\":9", 1);
        std::fs::write(&p, text).unwrap();
        assert!(matches!(
            Journal::open(&p),
            Err(JournalError::Corrupt { line: 1, .. })
        ));
    }

    #[test]
    fn group_commit_writes_every_batch_once() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(&dir.path().join("journal")).unwrap();
        let audit = AuditLog::open(&dir.path().join("audit")).unwrap();
        let c = std::sync::Arc::new(Committer::new(Sinks {
            journal,
            audit,
            ocsf: None,
        }));
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for k in 0..20 {
                        c.commit(Batch {
                            records: vec![rec(i * 100 + k)],
                            audit: vec![serde_json::json!({"event": "x", "n": i * 100 + k})],
                            ocsf: vec![],
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(c);
        let (_, recs) = Journal::open(&dir.path().join("journal")).unwrap();
        assert_eq!(recs.len(), 320);
        assert_eq!(
            pqwrap_core::audit::verify(&dir.path().join("audit"))
                .unwrap()
                .lines,
            320
        );
    }
}
