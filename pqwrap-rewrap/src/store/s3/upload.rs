//! Staging and committing a replacement object, and cleaning up after a killed run.

use std::fs::File;
use std::io::{self, BufWriter, Seek};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::client::{Cond, Pin, Written};
use super::error::S3Error;
use super::listing::{S3Entry, marker_key};
use super::object::{ObjSource, ObjectBlob};
use super::{COPIES_AT_ONCE, COPY_PART, Ctx, OldVersions, PART_MIN, READ_AHEAD, SMALL_MAX};
use crate::blob::{Blob, read_exact_at};
use crate::error::{Change, FileError, Step};
use crate::format::Body;
use crate::store::{CommitOutcome, Leftover, Source, Staged};

/// Bytes of the new contents kept to recognise them: a retried write that the server had in
/// fact applied is told from someone else's by these (a new header holds fresh randomness).
const FIRST_KEPT: usize = 4096;
/// Parts of a spooled upload.
const SPOOL_PART: u64 = 8 << 20;
/// S3's limit on parts.
const MAX_PARTS: u64 = 10_000;

/// What a marker object holds.
#[derive(Serialize, Deserialize)]
struct Marker {
    /// Always `"pqwrap multipart upload"`.
    pqwrap: String,
    /// The key being uploaded.
    key: String,
    /// The upload, once started.
    upload_id: Option<String>,
    /// The server's clock when the marker was first written: the worker started no upload of
    /// the key before.
    #[serde(default)]
    since: Option<String>,
}

/// Aborts the uploads of `key` started at or after `since` (less a little: the marker's and
/// the upload's clocks are the server's, but not of one request) and before `before`, except
/// `keep`. While a marker names a key, such uploads are the marker's worker's.
fn abort_started(
    ctx: &Ctx,
    key: &str,
    since: jiff::Timestamp,
    before: jiff::Timestamp,
    keep: Option<&str>,
) -> Result<(), S3Error> {
    let since = since - jiff::SignedDuration::from_secs(2);
    for u in ctx.client.all_uploads(key)? {
        let at: Option<jiff::Timestamp> = u.initiated.as_deref().and_then(|t| t.parse().ok());
        let ours = at.is_some_and(|at| at >= since && at < before);
        if u.key == key && ours && Some(u.id.as_str()) != keep {
            ctx.client.abort(key, &u.id)?;
        }
    }
    Ok(())
}

const MARKER_TAG: &str = "pqwrap multipart upload";

/// A multipart upload in progress, with its marker; aborted (and the marker removed) if
/// dropped before [`Upload::finish`].
struct Upload {
    ctx: Arc<Ctx>,
    key: String,
    id: String,
    marker: String,
    marker_versions: Vec<Option<String>>,
    parts: Vec<(u32, String)>,
    finished: bool,
}

impl Upload {
    fn start(ctx: &Arc<Ctx>, key: &str, meta: &super::client::Meta) -> Result<Upload, S3Error> {
        let marker = marker_key(ctx, key).map_err(|_| S3Error::BadResponse {
            op: "CreateMultipartUpload",
            what: "no randomness for the marker's name",
        })?;
        let body = |id: Option<&str>, since: Option<jiff::Timestamp>| {
            serde_json::to_vec(&Marker {
                pqwrap: MARKER_TAG.into(),
                key: key.into(),
                upload_id: id.map(str::to_string),
                since: since.map(|t| t.to_string()),
            })
            .unwrap_or_default()
        };
        let (w, _) = ctx.client.put(&marker, &body(None, None), Cond::Always)?;
        let since = w.date;
        let mut up = Upload {
            ctx: ctx.clone(),
            key: key.to_string(),
            id: String::new(),
            marker,
            marker_versions: vec![w.version],
            parts: Vec::new(),
            // Nothing to abort yet: only the marker to remove, if the create fails.
            finished: true,
        };
        let soon = || jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
        let (id, retried) = match ctx.client.create_multipart(key, meta) {
            Ok(r) => r,
            Err(e) => {
                // An attempt may have started an upload whose answer was lost: abort it, or
                // leave the marker for the next run to.
                let cleaned =
                    since.is_some_and(|t| abort_started(ctx, key, t, soon(), None).is_ok());
                if cleaned {
                    up.remove_marker();
                }
                return Err(e);
            }
        };
        up.id = id;
        up.finished = false;
        // An attempt whose answer was lost may have started an upload too: it is ours.
        if retried && let Some(since) = since {
            abort_started(ctx, key, since, soon(), Some(&up.id))?;
        }
        let (w, _) = ctx
            .client
            .put(&up.marker, &body(Some(&up.id), since), Cond::Always)?;
        up.marker_versions.push(w.version);
        Ok(up)
    }

    fn part(&mut self, body: &[u8]) -> Result<(), S3Error> {
        let n = self.parts.len() as u32 + 1;
        let etag = self.ctx.client.upload_part(&self.key, &self.id, n, body)?;
        self.parts.push((n, etag));
        Ok(())
    }

    /// The rest of the object from `start` to `end` as server-side copies of [`COPY_PART`]
    /// each, [`COPIES_AT_ONCE`] at a time: the server copies, the client only waits, and a
    /// server copies several ranges faster than one long one.
    fn copy_rest(&mut self, pin: &Pin, start: u64, end: u64) -> Result<(), S3Error> {
        let first = self.parts.len() as u32 + 1;
        let ranges: Vec<(u32, (u64, u64))> = (0..)
            .map(|i| start + i * COPY_PART)
            .take_while(|s| *s < end)
            .enumerate()
            .map(|(i, s)| (first + i as u32, (s, (s + COPY_PART).min(end))))
            .collect();
        for batch in ranges.chunks(COPIES_AT_ONCE) {
            let done: Vec<Result<(u32, String), S3Error>> = std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|(n, range)| {
                        let (ctx, key, id) = (&self.ctx, &self.key, &self.id);
                        scope.spawn(move || {
                            ctx.client
                                .upload_part_copy(key, id, *n, key, pin, *range)
                                .map(|etag| (*n, etag))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or(Err(S3Error::BadResponse {
                            op: "UploadPartCopy",
                            what: "the copying thread panicked",
                        }))
                    })
                    .collect()
            });
            for d in done {
                self.parts.push(d?);
            }
        }
        Ok(())
    }

    fn remove_marker(&self) {
        let versions: Vec<&str> = self
            .marker_versions
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if versions.is_empty() {
            let _ = self.ctx.client.delete(&self.marker, None);
        }
        for v in versions {
            let _ = self.ctx.client.delete(&self.marker, Some(v));
        }
    }

    fn finish(mut self) {
        self.finished = true;
        self.remove_marker();
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.ctx.client.abort(&self.key, &self.id);
            self.remove_marker();
        }
    }
}

/// The new contents.
enum New {
    /// In memory: written with one PUT.
    Bytes(Vec<u8>),
    /// A new header, then the original from `tail` (uploaded as parts already).
    Prefixed { prefix: Vec<u8>, tail: u64 },
    /// Spooled to a local temporary file (uploaded as parts already).
    Spooled(File),
}

/// A replacement object ready to be committed: in memory, or a multipart upload waiting for
/// its completion.
pub struct ObjStaged {
    src: ObjSource,
    new: New,
    len: u64,
    first: Vec<u8>,
    moved: u64,
    upload: Option<Upload>,
}

impl std::fmt::Debug for ObjStaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjStaged")
            .field("key", &self.src.key)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Blob for ObjStaged {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match &self.new {
            New::Bytes(b) => b.read_at(buf, offset),
            New::Spooled(f) => crate::blob::read_file_at(f, self.len, buf, offset),
            New::Prefixed { prefix, tail } => {
                let p = prefix.len() as u64;
                if offset < p {
                    (&prefix[..]).read_at(buf, offset)
                } else {
                    self.src.blob.read_at(buf, tail + (offset - p))
                }
            }
        }
    }
}

impl Staged for ObjStaged {
    fn blob(&self) -> &dyn Blob {
        self
    }

    fn source(&self) -> &dyn Source {
        &self.src
    }
}

fn changed(op: &str, e: &S3Error) -> FileError {
    FileError::Changed(Change::Precondition(format!("{op}: {e}")))
}

fn staging(e: S3Error) -> FileError {
    if e.is_precondition() {
        return changed("the original changed while its parts were copied", &e);
    }
    if e.is_not_found() {
        return FileError::Changed(Change::Removed);
    }
    FileError::io(Step::Write, e.into_io())
}

pub(crate) fn stage(
    ctx: &Arc<Ctx>,
    src: ObjSource,
    body: Body<'_>,
) -> Result<ObjStaged, FileError> {
    match body {
        Body::PrefixCopy {
            prefix,
            tail_offset,
        } => {
            let len = src.blob.len();
            if tail_offset > len {
                return Err(FileError::Changed(Change::Shrank));
            }
            let new_len = prefix.len() as u64 + (len - tail_offset);
            if src.blob.is_whole() {
                let mut bytes = prefix;
                let mut tail = vec![0u8; usize::try_from(len - tail_offset).unwrap_or(0)];
                read_exact_at(&src.blob, &mut tail, tail_offset)
                    .map_err(|e| FileError::io(Step::Write, e))?;
                bytes.extend_from_slice(&tail);
                return Ok(staged_bytes(src, bytes));
            }
            // First part: the new header and the first bytes of the payload, which must come
            // through the client; the rest are copied by the server, pinned to the version
            // read.
            let first_n = PART_MIN.min(len - tail_offset);
            let head = src
                .blob
                .fetch(tail_offset, tail_offset + first_n)
                .map_err(staging)?;
            if head.len() as u64 != first_n {
                return Err(FileError::Changed(Change::Shrank));
            }
            let mut part1 = prefix.clone();
            part1.extend_from_slice(&head);
            drop(head);
            let mut up = Upload::start(ctx, &src.key, &src.blob.meta).map_err(staging)?;
            up.part(&part1).map_err(staging)?;
            let moved = part1.len() as u64;
            let first = part1
                .get(..FIRST_KEPT.min(part1.len()))
                .unwrap_or_default()
                .to_vec();
            drop(part1);
            let pin = src.blob.pin().clone();
            up.copy_rest(&pin, tail_offset + first_n, len)
                .map_err(staging)?;
            Ok(ObjStaged {
                src,
                new: New::Prefixed {
                    prefix,
                    tail: tail_offset,
                },
                len: new_len,
                first,
                moved,
                upload: Some(up),
            })
        }
        Body::Stream(f) => {
            if src.blob.len() <= SMALL_MAX {
                let mut bytes = Vec::new();
                f(&src.blob, &mut bytes).map_err(|e| FileError::io(Step::Write, e))?;
                return Ok(staged_bytes(src, bytes));
            }
            let file = tempfile::tempfile().map_err(|e| FileError::io(Step::Create, e))?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            f(&src.blob, &mut w).map_err(|e| FileError::io(Step::Write, e))?;
            let mut file = w
                .into_inner()
                .map_err(|e| FileError::io(Step::Write, e.into_error()))?;
            let len = file
                .stream_position()
                .map_err(|e| FileError::io(Step::Write, e))?;
            let part = SPOOL_PART.max(len.div_ceil(MAX_PARTS - 1));
            let mut up = Upload::start(ctx, &src.key, &src.blob.meta).map_err(staging)?;
            let mut first = Vec::new();
            let mut off = 0;
            let mut buf = Vec::new();
            while off < len {
                let n = part.min(len - off);
                buf.resize(usize::try_from(n).unwrap_or(0), 0);
                file.read_exact_at(&mut buf, off)
                    .map_err(|e| FileError::io(Step::Write, e))?;
                if first.is_empty() {
                    first = buf
                        .get(..FIRST_KEPT.min(buf.len()))
                        .unwrap_or_default()
                        .to_vec();
                }
                up.part(&buf).map_err(staging)?;
                off += n;
            }
            Ok(ObjStaged {
                src,
                new: New::Spooled(file),
                len,
                first,
                moved: len,
                upload: Some(up),
            })
        }
    }
}

fn staged_bytes(src: ObjSource, bytes: Vec<u8>) -> ObjStaged {
    let first = bytes
        .get(..FIRST_KEPT.min(bytes.len()))
        .unwrap_or_default()
        .to_vec();
    ObjStaged {
        src,
        len: bytes.len() as u64,
        first,
        moved: 0,
        new: New::Bytes(bytes),
        upload: None,
    }
}

/// Whether the object now starts with our new contents: after a refused or failed write whose
/// earlier attempt may have landed.
fn landed(ctx: &Ctx, key: &str, first: &[u8]) -> Option<Written> {
    let got = ctx
        .client
        .get(key, Some((0, first.len().max(1) as u64)), None)
        .ok()?;
    (!first.is_empty() && got.bytes == first).then_some(Written {
        etag: Some(got.pin.etag),
        version: got.pin.version,
        date: None,
    })
}

pub(crate) fn commit(ctx: &Arc<Ctx>, mut st: ObjStaged) -> CommitOutcome {
    let key = st.src.key.clone();
    let old = st.src.blob.pin().clone();
    let mut moved = st.moved;
    let upload = st.upload.take();
    let res = match (&st.new, &upload) {
        (New::Bytes(b), None) => {
            moved += b.len() as u64;
            let meta = &st.src.blob.meta;
            ctx.client.put_with(&key, b, Cond::IfMatch(&old.etag), meta)
        }
        (_, Some(up)) => ctx.client.complete(&key, &up.id, &up.parts, &old.etag),
        (_, None) => Err(S3Error::BadResponse {
            op: "CompleteMultipartUpload",
            what: "a staged upload without its upload",
        }),
    };
    let written = match res {
        Ok((w, _)) => Ok(w),
        Err(e) => match landed(ctx, &key, &st.first) {
            Some(w) => Ok(w),
            None if e.is_precondition() => Err(changed("the conditional write was refused", &e)),
            None if e.is_not_found() && upload.is_none() => {
                Err(FileError::Changed(Change::Removed))
            }
            None => Err(FileError::io(Step::Commit, e.into_io())),
        },
    };
    let base = |result: Result<(), FileError>, moved: u64| CommitOutcome {
        result,
        bytes: st.len,
        transferred: Some(moved),
        warnings: Vec::new(),
        read_back: None,
        after_check: None,
        kept_version: None,
    };
    let written = match written {
        Ok(w) => w,
        // Dropping the upload aborts it and removes its marker.
        Err(e) => return base(Err(e), moved + st.src.blob.moved()),
    };
    if let Some(up) = upload {
        up.finish();
    }
    // Read back the new header and first chunk, pinned to what we wrote.
    let pin = Pin {
        etag: written.etag.clone().unwrap_or_default(),
        version: written.version.clone(),
    };
    let head_len = (st.first.len() as u64 + READ_AHEAD).min(st.len);
    let back = if head_len == 0 {
        Ok(Vec::new())
    } else if pin.etag.is_empty() && pin.version.is_none() {
        ctx.client
            .get(&key, Some((0, head_len)), None)
            .map(|g| g.bytes)
    } else {
        let read = Pin {
            etag: pin.etag.clone(),
            version: pin.version.clone().filter(|v| v != "null"),
        };
        ctx.client
            .get(&key, Some((0, head_len)), Some(&read))
            .map(|g| g.bytes)
    };
    let src_moved = st.src.blob.moved();
    let back = match back {
        Ok(b) => b,
        Err(e) => {
            return base(
                Err(FileError::io(Step::ReadBack, e.into_io())),
                moved + src_moved,
            );
        }
    };
    moved += back.len() as u64 + src_moved;
    let read_back: Box<dyn Blob + Send> =
        Box::new(ObjectBlob::new(ctx.clone(), key.clone(), st.len, pin, back));
    let mut out = base(Ok(()), moved);
    out.read_back = Some(read_back);
    if st.src.blob.tags > 0 {
        out.warnings.push(format!(
            "its {} tag(s) were not carried over to the new object",
            st.src.blob.tags
        ));
    }
    // The replaced version stays in a versioned bucket: it still holds the old wrapping.
    if let (Some(was), Some(now)) = (&old.version, &written.version)
        && was != now
    {
        match ctx.old_versions {
            OldVersions::Keep => out.kept_version = Some(was.clone()),
            OldVersions::Purge => {
                let (ctx, was) = (ctx.clone(), was.clone());
                out.after_check = Some(Box::new(move || {
                    ctx.client
                        .delete(&key, Some(&was))
                        .map_err(|e| FileError::io(Step::Purge, e.into_io()))
                }));
            }
        }
    }
    out
}

pub(crate) fn remove_leftover(ctx: &Arc<Ctx>, entry: S3Entry) -> Result<Leftover, FileError> {
    let io = |e: S3Error| FileError::io(Step::Cleanup, e.into_io());
    let got = match ctx.client.get(&entry.key, Some((0, 64 << 10)), None) {
        Ok(g) => g,
        Err(e) if e.is_not_found() => return Ok(Leftover::Gone),
        Err(e) => return Err(io(e)),
    };
    let Ok(marker) = serde_json::from_slice::<Marker>(&got.bytes) else {
        return Ok(Leftover::NotOurs);
    };
    if marker.pqwrap != MARKER_TAG {
        return Ok(Leftover::NotOurs);
    }
    if let Some(id) = &marker.upload_id {
        ctx.client.abort(&marker.key, id).map_err(io)?;
    }
    // Killed before the marker named the upload, or after a lost answer made it start two:
    // the uploads of that key that the killed worker's CreateMultipartUpload (with its
    // retries) started are its. They began after the marker's first write, and before its
    // second one (the marker's Last-Modified) if there was one, else within the longest
    // that call can take; never after this run began. Another writer's upload of the same
    // key started later, even while this marker waited for a run, is left alone.
    let written = got
        .last_modified
        .as_deref()
        .and_then(super::client::parse_http_date);
    let since = marker
        .since
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .or(written);
    if let Some(since) = since {
        let slack = jiff::SignedDuration::from_secs(2);
        let until = match (&marker.upload_id, written) {
            (Some(_), Some(w)) => w + slack,
            _ => jiff::SignedDuration::try_from(ctx.client.longest_small_request())
                .ok()
                .and_then(|d| since.checked_add(d + slack).ok())
                .unwrap_or(ctx.started),
        };
        abort_started(ctx, &marker.key, since, until.min(ctx.started), None).map_err(io)?;
    }
    ctx.client.delete(&entry.key, None).map_err(io)?;
    // In a versioned bucket the marker's versions stay behind a delete marker: remove them.
    if let Ok(page) = ctx.client.list_versions(&entry.key, None, None) {
        for v in page.versions.iter().chain(&page.delete_markers) {
            if v.key == entry.key {
                ctx.client
                    .delete(&entry.key, Some(&v.version))
                    .map_err(io)?;
            }
        }
    }
    Ok(Leftover::Removed)
}
