//! An object as the formats read it: a [`Blob`] of ranged GETs pinned to one version, with a
//! read-ahead window so that a header and its first payload chunk cost one request.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::client::{Meta, Pin};
use super::error::S3Error;
use super::listing::S3Entry;
use super::{Ctx, READ_AHEAD, SMALL_MAX};
use crate::blob::Blob;
use crate::error::{Change, FileError};
use crate::store::bucket::ReadAhead;
use crate::store::{OpenError, Purpose, Source};

/// An object's bytes, of the length it had when first read, every read pinned to that
/// version: a read after someone replaced the object fails instead of mixing versions.
pub struct ObjectBlob {
    ctx: Arc<Ctx>,
    key: String,
    len: u64,
    pin: Pin,
    window: ReadAhead,
    moved: AtomicU64,
    pub(crate) meta: Meta,
    pub(crate) tags: u64,
}

impl std::fmt::Debug for ObjectBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBlob")
            .field("key", &self.key)
            .field("len", &self.len)
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl ObjectBlob {
    pub(crate) fn new(ctx: Arc<Ctx>, key: String, len: u64, pin: Pin, first: Vec<u8>) -> Self {
        let moved = first.len() as u64;
        ObjectBlob {
            ctx,
            key,
            len,
            pin,
            window: ReadAhead::new(len, READ_AHEAD, first),
            moved: AtomicU64::new(moved),
            meta: Meta::default(),
            tags: 0,
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

    /// Whether every byte is in memory.
    pub(crate) fn is_whole(&self) -> bool {
        self.window.is_whole()
    }

    /// Fetches `start..end` (not through the window), pinned.
    pub(crate) fn fetch(&self, start: u64, end: u64) -> Result<Vec<u8>, S3Error> {
        let got = self
            .ctx
            .client
            .get(&self.key, Some((start, end)), Some(&read_pin(&self.pin)))?;
        self.moved
            .fetch_add(got.bytes.len() as u64, Ordering::Relaxed);
        Ok(got.bytes)
    }
}

/// Reads by version id where the bucket has real ones, else by `If-Match` on the ETag.
fn read_pin(pin: &Pin) -> Pin {
    Pin {
        etag: pin.etag.clone(),
        version: pin.version.clone().filter(|v| v != "null"),
    }
}

impl Blob for ObjectBlob {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.window.read_at(buf, offset, |start, end| {
            self.fetch(start, end).map_err(S3Error::into_io)
        })
    }
}

/// An open object.
pub struct ObjSource {
    pub(crate) ctx: Arc<Ctx>,
    pub(crate) key: String,
    pub(crate) name: PathBuf,
    pub(crate) blob: ObjectBlob,
}

impl std::fmt::Debug for ObjSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjSource")
            .field("blob", &self.blob)
            .finish_non_exhaustive()
    }
}

impl ObjSource {
    /// The object's key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl Source for ObjSource {
    fn name(&self) -> &Path {
        &self.name
    }

    fn blob(&self) -> &dyn Blob {
        &self.blob
    }

    fn check_unchanged(&self) -> Result<(), Change> {
        match self.ctx.client.head(&self.key) {
            Ok(None) => Err(Change::Removed),
            Ok(Some((pin, len))) if pin.etag != self.blob.pin.etag || len != self.blob.len => {
                Err(Change::Precondition(format!(
                    "its ETag is now {} (was {})",
                    pin.etag, self.blob.pin.etag
                )))
            }
            Ok(Some(_)) => Ok(()),
            Err(e) => Err(Change::Stat(e.into_io())),
        }
    }
}

/// Opens an object: its first bytes (all of it when small and being re-wrapped) in one GET,
/// which also tells its version and length.
pub(crate) fn open(
    ctx: &Arc<Ctx>,
    entry: S3Entry,
    purpose: Purpose,
) -> Result<ObjSource, OpenError> {
    let small = entry.size.is_some_and(|s| s <= SMALL_MAX);
    let first = if small && purpose == Purpose::Rewrap {
        SMALL_MAX
    } else {
        READ_AHEAD
    };
    let got = match &entry.version {
        Some(v) => get_version(ctx, &entry.key, v, first),
        None => match ctx.client.get(&entry.key, Some((0, first)), None) {
            // An empty object has no byte to range over.
            Err(S3Error::Status { status: 416, .. }) => ctx.client.get(&entry.key, None, None),
            other => other,
        },
    };
    let got = match got {
        Ok(g) => g,
        // Deleted since it was listed: nothing to report. A key named by a manifest that is
        // not there is a failure, though: it was asked for.
        Err(e) if e.is_not_found() && entry.size.is_some() => return Err(OpenError::Gone),
        Err(e) => return Err(OpenError::Fail(FileError::Unreadable(e.into_io()))),
    };
    let mut bytes = got.bytes;
    bytes.truncate(usize::try_from(got.total).unwrap_or(usize::MAX));
    let mut blob = ObjectBlob::new(ctx.clone(), entry.key.clone(), got.total, got.pin, bytes);
    blob.meta = got.meta;
    blob.tags = got.tags;
    Ok(ObjSource {
        ctx: ctx.clone(),
        name: entry.name,
        key: entry.key,
        blob,
    })
}

fn get_version(
    ctx: &Ctx,
    key: &str,
    version: &str,
    first: u64,
) -> Result<super::client::Got, S3Error> {
    let pin = Pin {
        etag: String::new(),
        version: Some(version.to_string()),
    };
    match ctx.client.get(key, Some((0, first)), Some(&pin)) {
        Err(S3Error::Status { status: 416, .. }) => ctx.client.get(key, None, Some(&pin)),
        other => other,
    }
}
