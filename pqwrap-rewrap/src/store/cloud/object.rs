//! An object as the formats read it: a [`Blob`] of ranged GETs pinned to the version first
//! read, with a read-ahead window so that a header and its first payload chunk cost one
//! request.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use object_store::path::Path as ObjPath;
use object_store::{Attributes, GetOptions, GetRange, ObjectStoreExt};

use super::service::Pin;
use super::{CloudEntry, CloudError, Ctx, READ_AHEAD, SMALL_MAX};
use crate::blob::Blob;
use crate::error::{Change, FileError};
use crate::store::bucket::ReadAhead;
use crate::store::{OpenError, Purpose, Source};

/// What a GET returned.
pub(crate) struct Got {
    pub bytes: Vec<u8>,
    /// The object's whole length.
    pub total: u64,
    pub pin: Pin,
    pub attributes: Attributes,
}

/// One GET of `range` (all of the object without one), pinned to `pin` when given.
pub(crate) fn get(
    ctx: &Ctx,
    path: &ObjPath,
    range: Option<Range<u64>>,
    pin: Option<&Pin>,
) -> Result<Got, CloudError> {
    let (if_match, version) = pin.map(|p| ctx.service.read_pin(p)).unwrap_or_default();
    let opts = GetOptions {
        if_match,
        version,
        range: range.map(GetRange::Bounded),
        ..Default::default()
    };
    ctx.block_on(async {
        let r = ctx.store.get_opts(path, opts).await?;
        let meta = r.meta.clone();
        let attributes = r.attributes.clone();
        let bytes = r.bytes().await?;
        Ok(Got {
            bytes: bytes.to_vec(),
            total: meta.size,
            pin: Pin {
                etag: meta.e_tag,
                version: meta.version,
            },
            attributes,
        })
    })
}

/// An object's bytes, of the length it had when first read, every read pinned to that
/// version: a read after someone replaced the object fails instead of mixing versions.
pub struct CloudBlob {
    ctx: Arc<Ctx>,
    path: ObjPath,
    len: u64,
    pin: Pin,
    window: ReadAhead,
    moved: AtomicU64,
}

impl std::fmt::Debug for CloudBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudBlob")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl CloudBlob {
    pub(crate) fn new(ctx: Arc<Ctx>, path: ObjPath, len: u64, pin: Pin, first: Vec<u8>) -> Self {
        let moved = first.len() as u64;
        CloudBlob {
            ctx,
            path,
            len,
            pin,
            window: ReadAhead::new(len, READ_AHEAD, first),
            moved: AtomicU64::new(moved),
        }
    }

    /// The version read.
    pub fn pin(&self) -> &Pin {
        &self.pin
    }

    /// Bytes fetched so far.
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// Appends `start..end` of the object to `out`: from the window where it holds them, else
    /// with one pinned GET.
    pub(crate) fn read_into(&self, out: &mut Vec<u8>, start: u64, end: u64) -> io::Result<()> {
        if self.window.copy_if_held(out, start, end) {
            return Ok(());
        }
        if start >= end {
            return Ok(());
        }
        let got = self.fetch(start, end)?;
        if got.len() as u64 != end - start {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                Change::Shrank.to_string(),
            ));
        }
        out.extend_from_slice(&got);
        Ok(())
    }

    fn fetch(&self, start: u64, end: u64) -> io::Result<Vec<u8>> {
        let got = get(&self.ctx, &self.path, Some(start..end), Some(&self.pin))
            .map_err(CloudError::into_io)?;
        self.moved
            .fetch_add(got.bytes.len() as u64, Ordering::Relaxed);
        Ok(got.bytes)
    }
}

impl Blob for CloudBlob {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.window
            .read_at(buf, offset, |start, end| self.fetch(start, end))
    }
}

/// An open object.
pub struct CloudSource {
    pub(crate) key: String,
    pub(crate) path: ObjPath,
    pub(crate) name: PathBuf,
    pub(crate) blob: CloudBlob,
    /// Its content type and the like, carried over to the replacement.
    pub(crate) attributes: Attributes,
}

impl std::fmt::Debug for CloudSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudSource")
            .field("blob", &self.blob)
            .finish_non_exhaustive()
    }
}

impl CloudSource {
    /// The object's key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl Source for CloudSource {
    fn name(&self) -> &Path {
        &self.name
    }

    fn blob(&self) -> &dyn Blob {
        &self.blob
    }

    fn check_unchanged(&self) -> Result<(), Change> {
        let ctx = &self.blob.ctx;
        match ctx
            .block_on(ctx.store.head(&self.path))
            .map_err(CloudError::from)
        {
            Err(e) if e.is_not_found() => Err(Change::Removed),
            Err(e) => Err(Change::Stat(e.into_io())),
            Ok(meta) => {
                let now = Pin {
                    etag: meta.e_tag,
                    version: meta.version,
                };
                let same = match ctx.service {
                    super::Service::Azure => now.etag == self.blob.pin.etag,
                    super::Service::Gcs => now.version == self.blob.pin.version,
                };
                if same && meta.size == self.blob.len {
                    Ok(())
                } else {
                    Err(Change::Precondition(format!(
                        "it is now {} (was {})",
                        describe(&now),
                        describe(&self.blob.pin)
                    )))
                }
            }
        }
    }
}

fn describe(pin: &Pin) -> String {
    match (&pin.etag, &pin.version) {
        (_, Some(v)) => format!("version {v}"),
        (Some(e), None) => format!("ETag {e}"),
        (None, None) => "unversioned".into(),
    }
}

/// Opens an object: its first bytes (all of it when small) in one GET, which also tells its
/// version and length.
pub(crate) fn open(
    ctx: &Arc<Ctx>,
    entry: CloudEntry,
    _purpose: Purpose,
) -> Result<CloudSource, OpenError> {
    let fail = |e: CloudError| OpenError::Fail(FileError::Unreadable(e.into_io()));
    // An object of unknown size (named by a manifest): its size first, since a range past
    // the end of a small object is an error on some services.
    let size = match entry.size {
        Some(s) => s,
        None => match ctx.block_on(ctx.store.head(&entry.path)) {
            Ok(m) => m.size,
            Err(e) => return Err(fail(e.into())),
        },
    };
    let range = (size > SMALL_MAX).then_some(0..READ_AHEAD);
    let got = match get(ctx, &entry.path, range, None) {
        Ok(g) => g,
        // Deleted since it was listed: nothing to report. A key named by a manifest that is
        // not there is a failure, though: it was asked for.
        Err(e) if e.is_not_found() && entry.size.is_some() => return Err(OpenError::Gone),
        Err(e) => return Err(fail(e)),
    };
    let mut bytes = got.bytes;
    bytes.truncate(usize::try_from(got.total).unwrap_or(usize::MAX));
    let blob = CloudBlob::new(ctx.clone(), entry.path.clone(), got.total, got.pin, bytes);
    Ok(CloudSource {
        name: entry.name,
        key: entry.key,
        path: entry.path,
        blob,
        attributes: got.attributes,
    })
}
