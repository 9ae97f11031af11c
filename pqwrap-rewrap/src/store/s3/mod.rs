//! Object storage (`s3://bucket/prefix`, and S3-compatible services): objects are replaced,
//! never edited.
//!
//! - **Reading**: a ranged GET of the first bytes (the whole object when it is small), pinned
//!   to the ETag (or version id) first seen; later reads are ranged GETs with the same pin.
//! - **Writing**: an object whose payload fits in [`PART_MIN`] is written whole with one PUT.
//!   A larger one becomes a multipart upload whose first part is the new header plus the first
//!   [`PART_MIN`] bytes of the old payload (fetched with a ranged GET), and whose other parts
//!   are server-side copies of the rest (`UploadPartCopy` with `x-amz-copy-source-range`,
//!   pinned by `x-amz-copy-source-if-match`): about 2 × 5 MiB cross the network whatever the
//!   object's size. Bodies that must be streamed (armored files, re-encryption) are spooled to
//!   a local temporary file and uploaded from it.
//! - **Committing**: each worker commits its own object ([`Batching::Single`]) with
//!   `If-Match: <ETag read>` on the PutObject or CompleteMultipartUpload, so an object written
//!   by someone else meanwhile is left alone and reported changed. The new object is then read
//!   back (header and first chunk) for the format's check.
//! - **Versioned buckets**: the replaced version stays (it still holds the old wrapping) and is
//!   reported, unless [`OldVersions::Purge`]: then, after the check of the new version passed,
//!   exactly the version id that was read is deleted.
//! - **Multipart uploads of a killed run**: before it starts an upload, a worker writes a small
//!   marker object `<prefix>.pqwrap-uploads/<16 hex of the key's shard hash>-<random>` naming
//!   the key, and writes it again with the upload id once the upload exists; the marker is
//!   deleted when the upload is completed or aborted. A later run over the same prefix (and
//!   shard) lists the markers first and aborts exactly the uploads they name, and the uploads
//!   of that key that a retried CreateMultipartUpload may have started unseen: those begun
//!   between the marker's two writes, or, for a marker without an id (killed between the two
//!   writes), within the longest that call can take with its retries after the first write.
//!   Uploads of keys no marker names, and those begun later, are never touched.
//! - **Shards**: [`Shard`] `K/N` takes the keys whose [`shard_hash`] is `K` modulo `N`.

mod client;
mod creds;
mod error;
mod listing;
mod object;
mod upload;
mod xml;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use rusty_s3::UrlStyle;
use url::Url;

pub use crate::store::bucket::{
    Location, ManifestError, OldVersions, Scheme, Selection, Shard, ShardError, UrlError,
    shard_hash,
};
pub use client::{Client, Cond, Got, Meta, Pin, Retry, Written};
pub use creds::{Credentials, CredentialsError, Env, Provider};
pub use error::S3Error;
pub use listing::S3Entry;
pub use object::{ObjSource, ObjectBlob};
pub use upload::ObjStaged;

use crate::error::FileError;
use crate::format::{Body, InPlace};
use crate::store::{
    ApplyInPlace, Batching, CommitOutcome, Leftover, Listed, OpenError, Purpose, Store,
};

/// The smallest part a multipart upload may have (but its last): S3's 5 MiB.
pub const PART_MIN: u64 = 5 << 20;
/// The largest server-side copy made in one request.
pub const COPY_PART: u64 = 128 << 20;
/// Server-side copies of one object in flight at once.
pub const COPIES_AT_ONCE: usize = 8;
/// Objects up to this size are read whole when re-wrapped (one GET, one PUT).
pub const SMALL_MAX: u64 = PART_MIN + crate::format::HEAD_LEN as u64;
/// Bytes read ahead of each ranged GET: the header and the first payload chunk of any format in
/// one request.
pub const READ_AHEAD: u64 = 256 << 10;
/// Where the markers of multipart uploads go, after the prefix.
pub const MARKER_DIR: &str = ".pqwrap-uploads/";

/// Where and how to reach the service.
#[derive(Debug)]
pub struct Endpoint {
    /// Base URL.
    pub url: Url,
    /// Path-style (`endpoint/bucket/key`) or virtual-hosted (`bucket.endpoint/key`).
    pub path_style: bool,
    /// Signing region.
    pub region: String,
}

/// Why the store could not be set up or reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// `AWS_ENDPOINT_URL` is not a URL.
    #[error("AWS_ENDPOINT_URL {0:?} is not a URL")]
    BadEndpoint(String),
    /// A plain-HTTP endpoint without `AWS_ALLOW_HTTP=true`.
    #[error(
        "AWS_ENDPOINT_URL {0} is plain http: set AWS_ALLOW_HTTP=true to send credentials and \
         data unencrypted"
    )]
    PlainHttp(String),
    /// No credentials.
    #[error("{0}")]
    Credentials(#[from] CredentialsError),
    /// The bucket does not exist.
    #[error("bucket {0}: no such bucket")]
    NoSuchBucket(String),
    /// Credentials refused, or no permission to list.
    #[error(
        "bucket {bucket}: access denied ({source}): check the credentials and that they may list and write the bucket"
    )]
    Denied {
        /// The bucket.
        bucket: String,
        /// What the server said.
        #[source]
        source: S3Error,
    },
    /// Any other failure of the first request.
    #[error("bucket {bucket}: {source}")]
    Unreachable {
        /// The bucket.
        bucket: String,
        /// What went wrong.
        #[source]
        source: S3Error,
    },
}

impl Endpoint {
    /// The endpoint the environment names: `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`
    /// (path-style addressing; `http://` only with `AWS_ALLOW_HTTP=true`), else AWS's regional
    /// endpoint (virtual-hosted addressing).
    pub fn from_env(env: &Env) -> Result<Endpoint, ConnectError> {
        let region = creds::region(env);
        let named = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .iter()
            .find_map(|k| env.get(*k).filter(|v| !v.is_empty()));
        match named {
            Some(u) => {
                let url = Url::parse(u).map_err(|_| ConnectError::BadEndpoint(u.clone()))?;
                let allow_http = env
                    .get("AWS_ALLOW_HTTP")
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"));
                match url.scheme() {
                    "https" => {}
                    "http" if allow_http => {}
                    "http" => return Err(ConnectError::PlainHttp(u.clone())),
                    _ => return Err(ConnectError::BadEndpoint(u.clone())),
                }
                Ok(Endpoint {
                    url,
                    path_style: true,
                    region,
                })
            }
            None => {
                let u = format!("https://s3.{region}.amazonaws.com");
                let url = Url::parse(&u).map_err(|_| ConnectError::BadEndpoint(u))?;
                Ok(Endpoint {
                    url,
                    path_style: false,
                    region,
                })
            }
        }
    }
}

/// What a store over a bucket is asked to do.
#[derive(Debug)]
pub struct S3Config {
    /// Bucket and prefix.
    pub location: Location,
    /// Which objects.
    pub selection: Selection,
    /// This worker's shard, if the bucket is shared between workers.
    pub shard: Option<Shard>,
    /// Replaced versions kept or deleted.
    pub old_versions: OldVersions,
    /// Keys never taken as candidates (the run's own report object).
    pub exclude: Vec<String>,
    /// Requests in flight at once (the engine's workers).
    pub connections: usize,
    /// Retries.
    pub retry: Retry,
}

/// State shared by the store and what it hands out.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub client: Client,
    pub location: Location,
    pub old_versions: OldVersions,
    pub shard: Option<Shard>,
    /// The server's clock when this run started: uploads started later are never a killed
    /// run's.
    pub started: Timestamp,
}

impl Ctx {
    pub fn marker_prefix(&self) -> String {
        format!("{}{MARKER_DIR}", self.location.prefix)
    }

    pub fn name(&self, key: &str) -> PathBuf {
        PathBuf::from(self.location.url_of(key))
    }
}

/// The object store: a bucket, a prefix (or a manifest), perhaps a shard.
#[derive(Debug)]
pub struct S3Store {
    ctx: Arc<Ctx>,
    selection: Selection,
    exclude: Vec<String>,
}

impl S3Store {
    /// A store as `config` says, reached as `env` says (endpoint, region, credentials).
    /// Makes one request, which proves the bucket exists and the credentials work.
    pub fn connect(config: S3Config, env: &Env) -> Result<S3Store, ConnectError> {
        let endpoint = Endpoint::from_env(env)?;
        let provider = Provider::from_env(env, &endpoint.region)?;
        S3Store::with(config, endpoint, provider)
    }

    /// As [`S3Store::connect`], with the endpoint and credentials given.
    pub fn with(
        config: S3Config,
        endpoint: Endpoint,
        provider: Provider,
    ) -> Result<S3Store, ConnectError> {
        let bucket = config.location.bucket.clone();
        // Virtual-hosted names cannot hold dots under TLS: such buckets go path-style.
        let style = if endpoint.path_style || bucket.contains('.') {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let client = Client::new(
            endpoint.url,
            style,
            &bucket,
            &endpoint.region,
            provider,
            config.connections,
            config.retry,
        )
        .map_err(|source| ConnectError::Unreachable {
            bucket: bucket.clone(),
            source,
        })?;
        let started = match client.probe(&config.location.prefix) {
            Ok(t) => t.unwrap_or_else(Timestamp::now),
            Err(e) if e.is_no_such_bucket() => return Err(ConnectError::NoSuchBucket(bucket)),
            Err(S3Error::Credentials(c)) => return Err(ConnectError::Credentials(c)),
            Err(e) if e.is_denied() => return Err(ConnectError::Denied { bucket, source: e }),
            Err(e) if e.is_not_found() => return Err(ConnectError::NoSuchBucket(bucket)),
            Err(source) => return Err(ConnectError::Unreachable { bucket, source }),
        };
        Ok(S3Store {
            ctx: Arc::new(Ctx {
                client,
                location: config.location,
                old_versions: config.old_versions,
                shard: config.shard,
                started,
            }),
            selection: config.selection,
            exclude: config.exclude,
        })
    }

    /// The connection to the bucket (for tools and tests that set buckets up).
    pub fn client(&self) -> &Client {
        &self.ctx.client
    }

    /// The bucket and prefix.
    pub fn location(&self) -> &Location {
        &self.ctx.location
    }

    /// Writes a whole object (a run's report), replacing any object of that key.
    pub fn put_object(&self, key: &str, body: &[u8]) -> Result<(), S3Error> {
        self.ctx
            .client
            .put(key, body, client::Cond::Always)
            .map(drop)
    }

    /// The first `len` bytes of an object, or `None` if there is none.
    pub fn object_head(&self, key: &str, len: u64) -> Result<Option<Vec<u8>>, S3Error> {
        match self.ctx.client.get(key, Some((0, len.max(1))), None) {
            Ok(g) => Ok(Some(g.bytes)),
            Err(S3Error::Status { status: 416, .. }) => Ok(Some(Vec::new())),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Multipart uploads in progress under the prefix (all of them, pqwrap's or not).
    pub fn uploads_in_progress(&self) -> Result<Vec<(String, String)>, S3Error> {
        Ok(self
            .ctx
            .client
            .all_uploads(&self.ctx.location.prefix)?
            .into_iter()
            .map(|u| (u.key, u.id))
            .collect())
    }
}

impl Store for S3Store {
    type Entry = S3Entry;
    type Source = ObjSource;
    type Staged = ObjStaged;

    fn list(&self) -> Box<dyn Iterator<Item = Listed<S3Entry>> + Send + '_> {
        listing::list(&self.ctx, &self.selection, &self.exclude)
    }

    fn name_of<'e>(&self, entry: &'e S3Entry) -> &'e Path {
        &entry.name
    }

    fn size_hint(&self, entry: &S3Entry) -> Option<u64> {
        entry.size
    }

    fn open(&self, entry: S3Entry, purpose: Purpose) -> Result<ObjSource, OpenError> {
        object::open(&self.ctx, entry, purpose)
    }

    fn check_replaceable(&self, _src: &ObjSource) -> Result<(), FileError> {
        // An object has one name: replacing it leaves no other copy of the old header behind
        // (except the replaced version of a versioned bucket, which is reported or purged).
        Ok(())
    }

    fn stage(&self, src: ObjSource, body: Body<'_>) -> Result<ObjStaged, FileError> {
        upload::stage(&self.ctx, src, body)
    }

    fn batching(&self) -> Batching {
        Batching::Single
    }

    fn commit<T: Send>(&self, batch: Vec<(ObjStaged, T)>) -> Vec<(T, CommitOutcome)> {
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
        _src: &ObjSource,
        _apply: &mut ApplyInPlace<'_>,
    ) -> Result<Option<String>, FileError> {
        Err(crate::store::bucket::no_in_place())
    }

    fn remove_leftover(
        &self,
        entry: S3Entry,
        _is_own_output: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Leftover, FileError> {
        upload::remove_leftover(&self.ctx, entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_from_the_environment() {
        let env = |p: &[(&str, &str)]| -> Env {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let e = Endpoint::from_env(&env(&[("AWS_REGION", "eu-central-1")])).unwrap();
        assert_eq!(e.url.as_str(), "https://s3.eu-central-1.amazonaws.com/");
        assert!(!e.path_style);
        let e =
            Endpoint::from_env(&env(&[("AWS_ENDPOINT_URL", "https://minio.local:9000")])).unwrap();
        assert!(e.path_style);
        assert_eq!(e.region, "us-east-1");
        assert!(matches!(
            Endpoint::from_env(&env(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")])),
            Err(ConnectError::PlainHttp(_))
        ));
        assert!(
            Endpoint::from_env(&env(&[
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
                ("AWS_ALLOW_HTTP", "true")
            ]))
            .is_ok()
        );
        assert!(matches!(
            Endpoint::from_env(&env(&[("AWS_ENDPOINT_URL", "not a url")])),
            Err(ConnectError::BadEndpoint(_))
        ));
    }
}
