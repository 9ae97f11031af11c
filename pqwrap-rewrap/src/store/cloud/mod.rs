//! Google Cloud Storage (`gs://bucket/prefix`) and Azure Blob Storage
//! (`az://container/prefix`), through the `object_store` crate: its credential chains
//! (service accounts, workload identity, managed identity, SAS, account keys, the CLIs'
//! tokens), with its async runtime kept inside this module.
//!
//! Objects are replaced whole, never edited:
//! - **Reading**: the first bytes with one GET (all of a small object), which pins the version
//!   read: the ETag on Azure, the generation on GCS; later reads are ranged GETs with that pin.
//! - **Writing**: the new object is built in memory (header, then the old payload read back
//!   through the pin) and PUT whole, under a memory budget shared by the workers. Neither
//!   service lets a multipart upload be completed conditionally, so an object larger than
//!   [`WHOLE_MAX`] is not replaced (the file fails, nothing is written).
//! - **Committing**: the PUT carries the precondition on the version read (`If-Match` on
//!   Azure, `x-goog-if-generation-match` on GCS): an object written by someone else meanwhile
//!   is left alone and reported changed. The new object is read back (header and first chunk)
//!   for the format's check.
//! - **Versions**: on an Azure container with blob versioning the replaced version stays,
//!   and is reported. GCS keeps noncurrent generations only in buckets with object versioning,
//!   which this store cannot see: it reports none. Neither store deletes versions.
//! - **Shards and manifests**: as on S3 ([`crate::store::bucket`]).

mod object;
mod service;
mod upload;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

pub use object::{CloudBlob, CloudSource};
pub use service::{Env, Service};
pub use upload::CloudStaged;

use crate::error::FileError;
use crate::format::{Body, InPlace};
use crate::store::bucket::{Location, ManifestKeys, Scheme, Selection, Shard};
use crate::store::{
    ApplyInPlace, Batching, CommitOutcome, Leftover, Listed, OpenError, Purpose, Store,
};

/// Objects larger than this are not replaced: the replacement is held in memory, since
/// neither service completes a multipart upload under a precondition.
pub const WHOLE_MAX: u64 = 4 << 30;
/// Bytes of replacements held in memory at once, by all workers together (one larger object
/// runs alone).
pub const MEMORY_BUDGET: u64 = 1 << 30;
/// Objects up to this size are read whole when opened.
pub const SMALL_MAX: u64 = 256 << 10;
/// Bytes read ahead of each ranged GET: a header and the first payload chunk of any format in
/// one request.
pub const READ_AHEAD: u64 = 256 << 10;

/// Why an object-store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudError {
    /// What `object_store` reported. Its message already holds its causes, so it is not
    /// offered as a source too (printing the chain would repeat each of them).
    #[error("{0}")]
    Store(object_store::Error),
    /// A key `object_store` cannot address (empty segments, `.` or `..`).
    #[error("{key:?}: not a key this store can address ({error})")]
    Key {
        /// The key.
        key: String,
        /// Why.
        error: object_store::path::Error,
    },
}

impl From<object_store::Error> for CloudError {
    fn from(e: object_store::Error) -> CloudError {
        CloudError::Store(e)
    }
}

impl CloudError {
    /// The HTTP status of the failed request, where the error says it.
    pub fn status(&self) -> Option<u16> {
        match self {
            CloudError::Store(object_store::Error::NotFound { .. }) => Some(404),
            CloudError::Store(object_store::Error::Precondition { .. }) => Some(412),
            CloudError::Store(object_store::Error::PermissionDenied { .. }) => Some(403),
            CloudError::Store(object_store::Error::Unauthenticated { .. }) => Some(401),
            // Listing errors come wrapped: the status is only in the message.
            CloudError::Store(e) => {
                let text = e.to_string();
                let at = text.find("status code: ")? + "status code: ".len();
                text.get(at..at + 3)?.parse().ok()
            }
            CloudError::Key { .. } => None,
        }
    }

    pub(crate) fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub(crate) fn is_precondition(&self) -> bool {
        self.status() == Some(412)
    }

    pub(crate) fn into_io(self) -> std::io::Error {
        let kind = match self.status() {
            Some(404) => std::io::ErrorKind::NotFound,
            Some(401 | 403) => std::io::ErrorKind::PermissionDenied,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, self)
    }
}

/// Why the store could not be set up or reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Not a `gs://` or `az://` location.
    #[error("{0}: this store reaches gs:// and az:// only")]
    Scheme(String),
    /// The environment does not configure the service (no credentials, a bad setting).
    #[error("{service}: {error}")]
    Config {
        /// The service.
        service: &'static str,
        /// What `object_store` said (in the message: it holds its own causes).
        error: Box<object_store::Error>,
    },
    /// A plain-HTTP endpoint without the setting that allows it.
    #[error("{0} is plain http: set {1}=true to send credentials and data unencrypted")]
    PlainHttp(String, &'static str),
    /// The bucket or container does not exist.
    #[error("{word} {name}: no such {word}")]
    NoSuchBucket {
        /// "bucket" or "container".
        word: &'static str,
        /// Its name.
        name: String,
    },
    /// Credentials refused, or no permission to list.
    #[error(
        "{word} {name}: access denied ({error}): check the credentials and that they may list \
         and write the {word}"
    )]
    Denied {
        /// "bucket" or "container".
        word: &'static str,
        /// Its name.
        name: String,
        /// What the service said (in the message).
        error: Box<CloudError>,
    },
    /// Any other failure of the first request.
    #[error("{word} {name}: {error}")]
    Unreachable {
        /// "bucket" or "container".
        word: &'static str,
        /// Its name.
        name: String,
        /// What went wrong (in the message).
        error: Box<CloudError>,
    },
    /// The async runtime could not start.
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// What a store over a bucket or container is asked to do.
#[derive(Debug)]
pub struct CloudConfig {
    /// Bucket (container) and prefix.
    pub location: Location,
    /// Which objects: [`Selection::NoncurrentVersions`] is refused.
    pub selection: Selection,
    /// This worker's shard, if the bucket is shared between workers.
    pub shard: Option<Shard>,
    /// Keys never taken as candidates (the run's own report object).
    pub exclude: Vec<String>,
    /// Attempts per request, the first included.
    pub attempts: u32,
}

/// A listed object.
#[derive(Clone, Debug)]
pub struct CloudEntry {
    /// Its key.
    pub key: String,
    /// `gs://bucket/key` or `az://container/key`, for reports.
    pub name: PathBuf,
    /// Its size, when the listing said.
    pub size: Option<u64>,
    path: ObjPath,
}

/// Bytes of memory the workers may hold for replacements, shared.
#[derive(Debug)]
pub(crate) struct Budget {
    free: Mutex<u64>,
    freed: Condvar,
}

impl Budget {
    fn new(total: u64) -> Budget {
        Budget {
            free: Mutex::new(total),
            freed: Condvar::new(),
        }
    }

    /// Waits until `n` bytes (all of the budget, if `n` is larger) are free, and takes them.
    pub(crate) fn take(self: &Arc<Budget>, n: u64) -> Permit {
        let n = n.min(MEMORY_BUDGET);
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free < n {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= n;
        Permit {
            budget: self.clone(),
            n,
        }
    }
}

/// Bytes of the budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    budget: Arc<Budget>,
    n: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut free = self.budget.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += self.n;
        self.budget.freed.notify_all();
    }
}

/// State shared by the store and what it hands out.
pub(crate) struct Ctx {
    pub store: Arc<dyn ObjectStore>,
    pub service: Service,
    pub runtime: tokio::runtime::Runtime,
    pub location: Location,
    pub budget: Arc<Budget>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("service", &self.service)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    pub fn name(&self, key: &str) -> PathBuf {
        PathBuf::from(self.location.url_of(key))
    }

    /// Runs one request to completion on the store's runtime.
    pub fn block_on<T>(&self, f: impl Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }
}

pub(crate) fn obj_path(key: &str) -> Result<ObjPath, CloudError> {
    ObjPath::parse(key).map_err(|error| CloudError::Key {
        key: key.to_string(),
        error,
    })
}

/// A store over a Google Cloud Storage bucket or an Azure Blob container.
#[derive(Debug)]
pub struct CloudStore {
    ctx: Arc<Ctx>,
    selection: Selection,
    shard: Option<Shard>,
    exclude: Vec<String>,
}

impl CloudStore {
    /// A store as `config` says, reached as `env` says (the service's own variables:
    /// `GOOGLE_*` and `SERVICE_ACCOUNT` for GCS, `AZURE_*` for Azure). Makes one request,
    /// which proves the bucket exists and the credentials work.
    pub fn connect(config: CloudConfig, env: &Env) -> Result<CloudStore, ConnectError> {
        let service = match config.location.scheme {
            Scheme::Gcs => Service::Gcs,
            Scheme::Azure => Service::Azure,
            _ => {
                return Err(ConnectError::Scheme(
                    config.location.url_of(&config.location.prefix),
                ));
            }
        };
        let store = service.build(&config.location.bucket, env, config.attempts)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pqwrap-cloud-io")
            .enable_all()
            .build()
            .map_err(ConnectError::Runtime)?;
        let ctx = Ctx {
            store,
            service,
            runtime,
            location: config.location,
            budget: Arc::new(Budget::new(MEMORY_BUDGET)),
        };
        probe(&ctx)?;
        Ok(CloudStore {
            ctx: Arc::new(ctx),
            selection: config.selection,
            shard: config.shard,
            exclude: config.exclude,
        })
    }

    /// The bucket (container) and prefix.
    pub fn location(&self) -> &Location {
        &self.ctx.location
    }

    /// Writes a whole object (a run's report), replacing any object of that key.
    pub fn put_object(&self, key: &str, body: &[u8]) -> Result<(), CloudError> {
        let path = obj_path(key)?;
        let payload = object_store::PutPayload::from(bytes::Bytes::copy_from_slice(body));
        self.ctx.block_on(self.ctx.store.put(&path, payload))?;
        Ok(())
    }

    /// The first `len` bytes of an object, or `None` if there is none.
    pub fn object_head(&self, key: &str, len: u64) -> Result<Option<Vec<u8>>, CloudError> {
        let path = obj_path(key)?;
        match object::get(&self.ctx, &path, Some(0..len.max(1)), None) {
            Ok(g) => Ok(Some(g.bytes)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The first request: one listed object under the prefix, which tells a missing bucket and
/// refused credentials apart from an empty prefix.
fn probe(ctx: &Ctx) -> Result<(), ConnectError> {
    let (word, name) = (
        ctx.location.scheme.bucket_word(),
        ctx.location.bucket.clone(),
    );
    let prefix = list_prefix(&ctx.location.prefix);
    let first = ctx.block_on(async {
        let mut s = ctx.store.list(prefix.as_ref());
        s.next().await
    });
    match first.map(|r| r.map_err(CloudError::from)) {
        None | Some(Ok(_)) => Ok(()),
        Some(Err(e)) if e.is_not_found() => Err(ConnectError::NoSuchBucket { word, name }),
        Some(Err(e)) if matches!(e.status(), Some(401 | 403)) => Err(ConnectError::Denied {
            word,
            name,
            error: Box::new(e),
        }),
        Some(Err(e)) => Err(ConnectError::Unreachable {
            word,
            name,
            error: Box::new(e),
        }),
    }
}

/// The directory to list for a key prefix: object_store lists whole path segments, so
/// `backups/2024` lists `backups/` and the keys are filtered by the prefix.
fn list_prefix(prefix: &str) -> Option<ObjPath> {
    let dir = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    (!dir.is_empty()).then(|| ObjPath::from(dir))
}

type Item = Listed<CloudEntry>;

/// Objects under the prefix, page by page as the service returns them.
struct Objects<'a> {
    ctx: &'a Ctx,
    stream: futures_util::stream::BoxStream<'static, object_store::Result<ObjectMeta>>,
    shard: Option<Shard>,
    exclude: &'a [String],
    done: bool,
}

impl Objects<'_> {
    fn item(&self, meta: ObjectMeta) -> Option<Item> {
        let key = meta.location.as_ref().to_string();
        if !key.starts_with(&self.ctx.location.prefix) || self.exclude.contains(&key) {
            return None;
        }
        if let Some(s) = self.shard
            && !s.takes(&key)
        {
            return None;
        }
        Some(Listed::Candidate(CloudEntry {
            name: self.ctx.name(&key),
            size: Some(meta.size),
            key,
            path: meta.location,
        }))
    }
}

impl Iterator for Objects<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        while !self.done {
            match self.ctx.block_on(self.stream.next()) {
                None => self.done = true,
                Some(Ok(meta)) => {
                    if let Some(item) = self.item(meta) {
                        return Some(item);
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Listed::Unreadable {
                        name: self.ctx.name(&self.ctx.location.prefix),
                        error: CloudError::from(e).into_io(),
                    });
                }
            }
        }
        None
    }
}

impl Store for CloudStore {
    type Entry = CloudEntry;
    type Source = CloudSource;
    type Staged = CloudStaged;

    fn list(&self) -> Box<dyn Iterator<Item = Listed<CloudEntry>> + Send + '_> {
        let ctx = &self.ctx;
        match &self.selection {
            Selection::Manifest(path) => Box::new(
                ManifestKeys::open(path.clone(), &ctx.location, self.shard, None).map(move |key| {
                    match key.map_err(|e| (e.path().to_path_buf(), e.into_io())) {
                        Ok(key) => match obj_path(&key) {
                            Ok(path) => Listed::Candidate(CloudEntry {
                                name: ctx.name(&key),
                                key,
                                size: None,
                                path,
                            }),
                            Err(e) => Listed::Unreadable {
                                name: ctx.name(&key),
                                error: e.into_io(),
                            },
                        },
                        Err((name, error)) => Listed::Unreadable { name, error },
                    }
                }),
            ),
            Selection::NoncurrentVersions => Box::new(std::iter::once(Listed::Unreadable {
                name: ctx.name(&ctx.location.prefix),
                error: std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "listing noncurrent versions is not supported on gs:// and az://",
                ),
            })),
            _ => Box::new(Objects {
                ctx,
                stream: ctx.store.list(list_prefix(&ctx.location.prefix).as_ref()),
                shard: self.shard,
                exclude: &self.exclude,
                done: false,
            }),
        }
    }

    fn name_of<'e>(&self, entry: &'e CloudEntry) -> &'e Path {
        &entry.name
    }

    fn size_hint(&self, entry: &CloudEntry) -> Option<u64> {
        entry.size
    }

    fn open(&self, entry: CloudEntry, purpose: Purpose) -> Result<CloudSource, OpenError> {
        object::open(&self.ctx, entry, purpose)
    }

    fn check_replaceable(&self, _src: &CloudSource) -> Result<(), FileError> {
        // An object has one name: replacing it leaves no other copy of the old header behind
        // (but a replaced version, which is reported).
        Ok(())
    }

    fn stage(&self, src: CloudSource, body: Body<'_>) -> Result<CloudStaged, FileError> {
        upload::stage(&self.ctx, src, body)
    }

    fn batching(&self) -> Batching {
        Batching::Single
    }

    fn commit<T: Send>(&self, batch: Vec<(CloudStaged, T)>) -> Vec<(T, CommitOutcome)> {
        batch
            .into_iter()
            .map(|(s, t)| (t, upload::commit(&self.ctx, s)))
            .collect()
    }

    fn in_place(&self) -> InPlace {
        InPlace::Unsupported
    }

    fn write_in_place(
        &self,
        _src: &CloudSource,
        _apply: &mut ApplyInPlace<'_>,
    ) -> Result<Option<String>, FileError> {
        Err(crate::store::bucket::no_in_place())
    }

    fn remove_leftover(
        &self,
        _entry: CloudEntry,
        _is_own_output: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Leftover, FileError> {
        // Whole-object writes leave no temporaries: the listing yields no leftovers.
        Ok(Leftover::NotOurs)
    }
}

/// How long one request may take with its retries, at most.
pub(crate) fn retry_config(attempts: u32) -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: attempts.saturating_sub(1) as usize,
        retry_timeout: Duration::from_secs(120),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_prefixes_are_whole_segments() {
        assert_eq!(list_prefix(""), None);
        assert_eq!(list_prefix("backups/2024"), Some(ObjPath::from("backups")));
        assert_eq!(
            list_prefix("backups/2024/"),
            Some(ObjPath::from("backups/2024"))
        );
        assert_eq!(list_prefix("flat"), None);
    }

    #[test]
    fn the_budget_lets_one_large_object_through_alone() {
        let b = Arc::new(Budget::new(MEMORY_BUDGET));
        let big = b.take(WHOLE_MAX);
        assert_eq!(*b.free.lock().unwrap(), 0);
        drop(big);
        let a = b.take(10);
        let c = b.take(MEMORY_BUDGET - 10);
        drop((a, c));
        assert_eq!(*b.free.lock().unwrap(), MEMORY_BUDGET);
    }
}
