//! Building a replacement object in memory, and writing it whole under the precondition on
//! the version read.

use std::io;

use bytes::Bytes;
use object_store::{PutMode, PutOptions, PutPayload};

use super::object::{CloudBlob, CloudSource, get};
use super::service::Pin;
use super::{CloudError, Ctx, Permit, READ_AHEAD, WHOLE_MAX};
use crate::blob::Blob;
use crate::error::{Change, FileError, Step};
use crate::format::Body;
use crate::store::{CommitOutcome, Source, Staged};

/// Bytes of the new contents kept to recognise them: a write whose answer was lost is told
/// from someone else's by these (a new header holds fresh randomness).
const FIRST_KEPT: usize = 4096;

/// A replacement object, in memory, ready to be written.
pub struct CloudStaged {
    src: CloudSource,
    bytes: Bytes,
    _permit: Permit,
}

impl std::fmt::Debug for CloudStaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudStaged")
            .field("key", &self.src.key)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl Blob for CloudStaged {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (&self.bytes[..]).read_at(buf, offset)
    }
}

impl Staged for CloudStaged {
    fn blob(&self) -> &dyn Blob {
        self
    }

    fn source(&self) -> &dyn Source {
        &self.src
    }
}

fn too_large(len: u64) -> FileError {
    FileError::io(
        Step::Write,
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!(
                "{len} bytes: objects over {} GiB are not replaced on gs:// and az:// (the \
                 replacement is written whole, from memory)",
                WHOLE_MAX >> 30
            ),
        ),
    )
}

/// A failed read of the original, pinned to the version first read: a refused pin or a
/// version gone means someone else changed it.
fn reading(e: io::Error) -> FileError {
    let status = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<CloudError>())
        .and_then(CloudError::status);
    match status {
        Some(404 | 412) => FileError::Changed(Change::Precondition(format!(
            "the version read is no longer there: {e}"
        ))),
        _ => FileError::io(Step::Write, e),
    }
}

pub(crate) fn stage(
    ctx: &std::sync::Arc<Ctx>,
    src: CloudSource,
    body: Body<'_>,
) -> Result<CloudStaged, FileError> {
    let len = src.blob.len();
    if len > WHOLE_MAX {
        return Err(too_large(len));
    }
    let bytes = match body {
        Body::PrefixCopy {
            prefix,
            tail_offset,
        } => {
            if tail_offset > len {
                return Err(FileError::Changed(Change::Shrank));
            }
            let new_len = prefix.len() as u64 + (len - tail_offset);
            let permit = ctx.budget.take(new_len);
            let mut bytes = Vec::new();
            bytes
                .try_reserve_exact(usize::try_from(new_len).unwrap_or(usize::MAX))
                .map_err(|_| too_large(new_len))?;
            bytes.extend_from_slice(&prefix);
            src.blob
                .read_into(&mut bytes, tail_offset, len)
                .map_err(reading)?;
            (bytes, permit)
        }
        Body::Stream(f) => {
            // Armored and re-encrypted files change length a little: room for the original and
            // a margin.
            let permit = ctx.budget.take(len + (1 << 20));
            let mut bytes = Vec::new();
            f(&src.blob, &mut bytes).map_err(reading)?;
            if bytes.len() as u64 > WHOLE_MAX {
                return Err(too_large(bytes.len() as u64));
            }
            (bytes, permit)
        }
    };
    Ok(CloudStaged {
        src,
        bytes: Bytes::from(bytes.0),
        _permit: bytes.1,
    })
}

/// Whether the object now starts with our new contents: after a refused or failed write whose
/// earlier attempt may have landed.
fn landed(ctx: &Ctx, st: &CloudStaged) -> Option<Pin> {
    let first = st.bytes.get(..FIRST_KEPT.min(st.bytes.len()))?;
    if first.is_empty() {
        return None;
    }
    let got = get(ctx, &st.src.path, Some(0..first.len() as u64), None).ok()?;
    (got.bytes == first && got.total == st.bytes.len() as u64).then_some(got.pin)
}

pub(crate) fn commit(ctx: &std::sync::Arc<Ctx>, st: CloudStaged) -> CommitOutcome {
    let old = st.src.blob.pin().clone();
    let len = st.bytes.len() as u64;
    let mut moved = len;
    let opts = PutOptions {
        mode: PutMode::Update(ctx.service.update(&old)),
        attributes: st.src.attributes.clone(),
        ..Default::default()
    };
    let payload = PutPayload::from(st.bytes.clone());
    let res = ctx
        .block_on(ctx.store.put_opts(&st.src.path, payload, opts))
        .map_err(CloudError::from);
    let written = match res {
        Ok(r) => Ok(Pin {
            etag: r.e_tag,
            version: r.version,
        }),
        Err(e) => match landed(ctx, &st) {
            Some(p) => Ok(p),
            None if e.is_precondition() => Err(FileError::Changed(Change::Precondition(format!(
                "the conditional write was refused: {e}"
            )))),
            None if e.is_not_found() => Err(FileError::Changed(Change::Removed)),
            None => Err(FileError::io(Step::Commit, e.into_io())),
        },
    };
    let base = |result: Result<(), FileError>, moved: u64| CommitOutcome {
        result,
        bytes: len,
        transferred: Some(moved),
        warnings: Vec::new(),
        read_back: None,
        after_check: None,
        kept_version: None,
    };
    let written = match written {
        Ok(p) => p,
        Err(e) => return base(Err(e), moved + st.src.blob.moved()),
    };
    // Read back the new header and first chunk, pinned to what we wrote.
    let head_len = (FIRST_KEPT as u64 + READ_AHEAD).min(len);
    let pinned = (written.etag.is_some() || written.version.is_some()).then_some(&written);
    let back = if head_len == 0 {
        Ok(Vec::new())
    } else {
        get(ctx, &st.src.path, Some(0..head_len), pinned).map(|g| g.bytes)
    };
    let src_moved = st.src.blob.moved();
    let back = match back {
        Ok(b) => b,
        // Someone wrote the object after our commit: theirs stands, and ours is gone.
        Err(e) if e.is_precondition() || e.is_not_found() => {
            return base(
                Err(FileError::Changed(Change::Precondition(format!(
                    "written again by someone else after the commit, before its read-back: {e}"
                )))),
                moved + src_moved,
            );
        }
        Err(e) => {
            return base(
                Err(FileError::io(Step::ReadBack, e.into_io())),
                moved + src_moved,
            );
        }
    };
    moved += back.len() as u64 + src_moved;
    let mut out = base(Ok(()), moved);
    out.kept_version = ctx.service.kept_version(&old, &written);
    out.read_back = Some(Box::new(CloudBlob::new(
        ctx.clone(),
        st.src.path.clone(),
        len,
        written,
        back,
    )));
    out
}
