//! S3 requests: presigned with SigV4 (the `rusty-s3` signer), sent with a blocking HTTP client
//! (the engine's workers are the requests in flight, so no async runtime is needed), retried
//! with capped exponential backoff and jitter on throttling and transient failures.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rusty_s3::{Bucket, Method, UrlStyle};
use url::Url;

use super::creds::{CredentialsError, Provider};
use super::error::S3Error;
use super::xml;

/// Largest body read into memory from one response (a part is at most this).
const MAX_BODY: u64 = 64 << 20;
/// How long a presigned request stays valid: long enough for a slow upload to start.
const EXPIRES_SECS: u64 = 900;
/// How long one attempt of a small request (no body to speak of) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How requests are retried.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// First backoff.
    pub base: Duration,
    /// Largest backoff.
    pub cap: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        // About a minute of patience in all: enough for a server restart or a burst of
        // throttling, short enough that a dead endpoint fails the object, not the night.
        Retry {
            attempts: 12,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(8),
        }
    }
}

/// A version of an object that reads and copies are pinned to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The ETag, as the server quotes it.
    pub etag: String,
    /// The version id, in a versioned bucket.
    pub version: Option<String>,
}

/// What a GET returned.
#[derive(Debug)]
pub struct Got {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The object's ETag and version.
    pub pin: Pin,
    /// The object's whole length.
    pub total: u64,
    /// Its `Last-Modified` (the server's clock).
    pub last_modified: Option<String>,
    /// What a replacement carries over.
    pub meta: Meta,
    /// How many tags the object has (`x-amz-tagging-count`): a replacement does not carry
    /// them (they need requests of their own).
    pub tags: u64,
}

/// The headers of an object that a replacement must carry over: its content headers, user
/// metadata (`x-amz-meta-*`), storage class and server-side encryption settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta(pub Vec<(String, String)>);

/// Content headers kept as they are.
const CONTENT_HEADERS: [&str; 6] = [
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-type",
    "expires",
];

/// S3 headers kept as they are (SSE-C needs the customer's key: such objects cannot be read
/// without it anyway).
const AMZ_HEADERS: [&str; 5] = [
    "x-amz-storage-class",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-bucket-key-enabled",
    "x-amz-website-redirect-location",
];

impl Meta {
    fn of(headers: &ureq::http::HeaderMap) -> Meta {
        let mut out = Vec::new();
        for (name, value) in headers {
            let n = name.as_str();
            let keep = CONTENT_HEADERS.contains(&n)
                || AMZ_HEADERS.contains(&n)
                || n.starts_with("x-amz-meta-");
            if keep && let Ok(v) = value.to_str() {
                // `STANDARD` is the default; `AES256` is what unencrypted-by-request objects
                // of a bucket with default encryption report: both are implied by the bucket.
                if (n == "x-amz-storage-class" && v == "STANDARD")
                    || (n == "x-amz-server-side-encryption" && v == "AES256")
                {
                    continue;
                }
                out.push((n.to_string(), v.to_string()));
            }
        }
        out.sort();
        Meta(out)
    }

    /// Whether there is nothing to carry over.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a write returned.
#[derive(Clone, Debug)]
pub struct Written {
    /// The new object's ETag.
    pub etag: Option<String>,
    /// The new version's id, in a versioned bucket.
    pub version: Option<String>,
    /// The server's clock when it answered.
    pub date: Option<Timestamp>,
}

/// A precondition on a write.
#[derive(Clone, Copy, Debug)]
pub enum Cond<'a> {
    /// None.
    Always,
    /// Only if the object's ETag is this one.
    IfMatch(&'a str),
}

/// A response: status, the headers we use, the body.
pub(crate) struct Resp {
    pub status: u16,
    pub etag: Option<String>,
    pub version: Option<String>,
    pub content_range: Option<String>,
    pub last_modified: Option<String>,
    pub date: Option<String>,
    pub content_length: Option<u64>,
    pub meta: Meta,
    pub tags: u64,
    pub body: Vec<u8>,
    /// True if an earlier attempt of this request may have reached the server.
    pub retried: bool,
}

/// One request, before signing.
pub(crate) struct Req<'a> {
    pub op: &'static str,
    pub method: Method,
    /// The object key, or `None` for the bucket.
    pub key: Option<&'a str>,
    /// Query parameters, sorted by name.
    pub query: Vec<(&'static str, String)>,
    /// Headers to sign and send, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Headers sent unsigned (`range`).
    pub plain_headers: Vec<(&'static str, String)>,
    pub body: &'a [u8],
    pub timeout: Duration,
}

impl<'a> Req<'a> {
    pub fn new(op: &'static str, method: Method, key: Option<&'a str>) -> Self {
        Req {
            op,
            method,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            plain_headers: Vec::new(),
            body: &[],
            timeout: REQUEST_TIMEOUT,
        }
    }

    pub fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    fn meta(mut self, meta: &Meta) -> Self {
        for (k, v) in &meta.0 {
            self = self.header(k, v.clone());
        }
        self
    }

    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = body;
        self
    }
}

/// The connection to one bucket.
pub struct Client {
    bucket: Bucket,
    creds: Provider,
    agent: ureq::Agent,
    retry: Retry,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bucket", &self.bucket.name())
            .field("endpoint", &self.bucket.base_url().as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `bucket` at `endpoint`, with connections for `connections` requests at
    /// once.
    pub fn new(
        endpoint: Url,
        style: UrlStyle,
        bucket: &str,
        region: &str,
        creds: Provider,
        connections: usize,
        retry: Retry,
    ) -> Result<Client, S3Error> {
        let bucket = Bucket::new(endpoint, style, bucket.to_string(), region.to_string())
            .map_err(|e| S3Error::Endpoint(e.to_string()))?;
        // rustls with the aws-lc-rs provider, set on this agent rather than process-wide so
        // a library user's own choice is left alone; server certificates are checked
        // against the Mozilla roots bundled by webpki-roots.
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::WebPki)
            .unversioned_rustls_crypto_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(10)))
            .max_idle_connections(connections.max(4) * 2)
            .max_idle_connections_per_host(connections.max(4) * 2)
            .build()
            .into();
        Ok(Client {
            bucket,
            creds,
            agent,
            retry,
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        self.bucket.name()
    }

    fn url(&self, key: Option<&str>) -> Url {
        match key {
            Some(k) => self.bucket.object_url(k),
            None => self.bucket.base_url().clone(),
        }
    }

    fn presign(&self, req: &Req<'_>) -> Result<Url, CredentialsError> {
        let c = self.creds.get()?;
        // The signer wants both sorted by name.
        let mut query: Vec<(&str, &str)> =
            req.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        query.sort();
        let mut headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        headers.sort();
        let (query, headers) = (query.into_iter(), headers.into_iter());
        Ok(rusty_s3::signing::sign(
            &Timestamp::now(),
            req.method,
            self.url(req.key),
            c.key_id(),
            c.secret(),
            c.token(),
            self.bucket.region(),
            EXPIRES_SECS,
            query,
            headers,
        ))
    }

    /// Sends `req`, retrying transient failures. Statuses other than 2xx come back as
    /// [`S3Error`]s, except those in `ok_statuses`.
    pub(crate) fn send(&self, req: &Req<'_>, ok_statuses: &[u16]) -> Result<Resp, S3Error> {
        let mut attempt = 0u32;
        let mut retried = false;
        loop {
            attempt += 1;
            let last = attempt >= self.retry.attempts;
            match self.send_once(req) {
                Ok(mut resp) => {
                    resp.retried = retried;
                    if (200..300).contains(&resp.status) || ok_statuses.contains(&resp.status) {
                        // A 200 carrying an error document (CompleteMultipartUpload does this
                        // when the failure happens after the response started).
                        if req.method == Method::Post
                            && let Some(e) = xml::error_in(&resp.body)
                        {
                            if e.retryable() && !last {
                                retried = true;
                                self.backoff(attempt);
                                continue;
                            }
                            return Err(S3Error::status(req.op, resp.status, e));
                        }
                        return Ok(resp);
                    }
                    let e = xml::error_in(&resp.body).unwrap_or_default();
                    let transient =
                        matches!(resp.status, 429 | 500 | 502 | 503 | 504) || e.retryable();
                    if transient && !last {
                        retried = true;
                        self.backoff(attempt);
                        continue;
                    }
                    return Err(S3Error::status(req.op, resp.status, e));
                }
                Err(Failure::Creds(e)) => return Err(S3Error::Credentials(e)),
                Err(Failure::Transport(e)) => {
                    // A certificate the client refuses will be refused again: fail at once.
                    let refused = match &e {
                        ureq::Error::Rustls(r) => Some(r),
                        // Handshake errors reach ureq through the stream's I/O.
                        ureq::Error::Io(io) => {
                            io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
                        }
                        _ => None,
                    }
                    .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
                    if last || refused {
                        return Err(S3Error::Transport {
                            op: req.op,
                            source: Box::new(e),
                        });
                    }
                    // The request may have reached the server: callers of conditional writes
                    // check what landed before calling a refusal a change.
                    retried = true;
                    self.backoff(attempt);
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) {
        let exp = self
            .retry
            .base
            .saturating_mul(1u32 << attempt.min(16).saturating_sub(1))
            .min(self.retry.cap);
        // Full jitter: many workers retrying at once must not stay in step.
        let mut b = [0u8; 4];
        let r = getrandom::fill(&mut b).map_or(0.5, |()| {
            f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
        });
        std::thread::sleep(exp.mul_f64(0.5 + r / 2.0));
    }

    fn send_once(&self, req: &Req<'_>) -> Result<Resp, Failure> {
        let url = self.presign(req).map_err(Failure::Creds)?;
        let uri = url.as_str();
        let mut headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(req.plain_headers.iter().map(|(k, v)| (*k, v.as_str())))
            .collect();
        let len;
        let result = match req.method {
            Method::Get | Method::Head | Method::Delete => {
                let mut b = match req.method {
                    Method::Get => self.agent.get(uri),
                    Method::Head => self.agent.head(uri),
                    _ => self.agent.delete(uri),
                };
                for (k, v) in headers.drain(..) {
                    b = b.header(k, v);
                }
                b.config().timeout_global(Some(req.timeout)).build().call()
            }
            Method::Put | Method::Post => {
                let mut b = if req.method == Method::Put {
                    self.agent.put(uri)
                } else {
                    self.agent.post(uri)
                };
                len = req.body.len().to_string();
                headers.push(("content-length", &len));
                for (k, v) in headers.drain(..) {
                    b = b.header(k, v);
                }
                b.config()
                    .timeout_global(Some(req.timeout))
                    .build()
                    .send(req.body)
            }
        };
        let mut resp = result.map_err(Failure::Transport)?;
        let h = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let status = resp.status().as_u16();
        let (etag, version, content_range, last_modified, date) = (
            h("etag"),
            h("x-amz-version-id"),
            h("content-range"),
            h("last-modified"),
            h("date"),
        );
        let content_length = h("content-length").and_then(|v| v.parse().ok());
        let meta = Meta::of(resp.headers());
        let tags = h("x-amz-tagging-count")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = if req.method == Method::Head {
            Vec::new()
        } else {
            let mut body = Vec::new();
            resp.body_mut()
                .as_reader()
                .take(MAX_BODY)
                .read_to_end(&mut body)
                .map_err(|e| Failure::Transport(ureq::Error::Io(e)))?;
            body
        };
        Ok(Resp {
            status,
            etag,
            version: version.filter(|v| !v.is_empty()),
            content_range,
            last_modified,
            date,
            content_length,
            meta,
            tags,
            body,
            retried: false,
        })
    }
}

enum Failure {
    Creds(CredentialsError),
    Transport(ureq::Error),
}

/// The operations the store needs, one method each.
impl Client {
    /// GET of `range` (`start..end`, or all) of `key`, pinned to `pin` when given.
    pub fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        pin: Option<&Pin>,
    ) -> Result<Got, S3Error> {
        let mut req = Req::new("GetObject", Method::Get, Some(key));
        if let Some(p) = pin {
            match &p.version {
                Some(v) => req = req.query("versionId", v.clone()),
                None => req = req.header("if-match", p.etag.clone()),
            }
        }
        if let Some((start, end)) = range {
            if end <= start {
                return Err(S3Error::BadResponse {
                    op: "GetObject",
                    what: "an empty range was asked for",
                });
            }
            req.plain_headers
                .push(("range", format!("bytes={start}-{}", end - 1)));
        }
        let resp = self.send(&req, &[])?;
        let total = match (&resp.content_range, resp.status) {
            (Some(cr), 206) => parse_content_range_total(cr).ok_or(S3Error::BadResponse {
                op: "GetObject",
                what: "a Content-Range without the object's length",
            })?,
            _ => resp.body.len() as u64,
        };
        let etag = resp.etag.ok_or(S3Error::BadResponse {
            op: "GetObject",
            what: "no ETag",
        })?;
        Ok(Got {
            meta: resp.meta,
            tags: resp.tags,
            last_modified: resp.last_modified,
            bytes: resp.body,
            pin: Pin {
                etag,
                version: resp.version,
            },
            total,
        })
    }

    /// HEAD of `key`: its pin and length, or `None` if there is no such object.
    pub fn head(&self, key: &str) -> Result<Option<(Pin, u64)>, S3Error> {
        let req = Req::new("HeadObject", Method::Head, Some(key));
        match self.send(&req, &[]) {
            Ok(r) => {
                let etag = r.etag.ok_or(S3Error::BadResponse {
                    op: "HeadObject",
                    what: "no ETag",
                })?;
                let total = r.content_length.ok_or(S3Error::BadResponse {
                    op: "HeadObject",
                    what: "no Content-Length",
                })?;
                Ok(Some((
                    Pin {
                        etag,
                        version: r.version,
                    },
                    total,
                )))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// PUT of a whole object.
    pub fn put(&self, key: &str, body: &[u8], cond: Cond<'_>) -> Result<(Written, bool), S3Error> {
        self.put_with(key, body, cond, &Meta::default())
    }

    /// PUT of a whole object with the headers `meta`.
    pub fn put_with(
        &self,
        key: &str,
        body: &[u8],
        cond: Cond<'_>,
        meta: &Meta,
    ) -> Result<(Written, bool), S3Error> {
        let mut req = Req::new("PutObject", Method::Put, Some(key))
            .body(body)
            .header("content-md5", content_md5(body))
            .meta(meta);
        if let Cond::IfMatch(etag) = cond {
            req = req.header("if-match", etag.to_string());
        }
        req.timeout = Duration::from_secs(300);
        let r = self.send(&req, &[])?;
        Ok((
            Written {
                date: r.date.as_deref().and_then(parse_http_date),
                etag: r.etag,
                version: r.version,
            },
            r.retried,
        ))
    }

    /// The longest a small request (CreateMultipartUpload, a marker's PUT) can go on with
    /// all its retries, under this client's retry policy or the default one, whichever is
    /// more patient (a killed run may have had either).
    pub(crate) fn longest_small_request(&self) -> Duration {
        let d = Retry::default();
        let attempts = self.retry.attempts.max(d.attempts);
        let cap = self.retry.cap.max(d.cap);
        (REQUEST_TIMEOUT + cap) * attempts
    }

    /// Starts a multipart upload of `key`; returns its id, and whether the request was sent
    /// more than once (then an earlier attempt may have started another upload).
    pub fn create_multipart(&self, key: &str, meta: &Meta) -> Result<(String, bool), S3Error> {
        let req = Req::new("CreateMultipartUpload", Method::Post, Some(key))
            .query("uploads", "")
            .meta(meta);
        let r = self.send(&req, &[])?;
        let id = xml::upload_id(&r.body).ok_or(S3Error::BadResponse {
            op: "CreateMultipartUpload",
            what: "no UploadId",
        })?;
        Ok((id, r.retried))
    }

    /// Uploads part `n` of an upload; returns its ETag.
    pub fn upload_part(&self, key: &str, id: &str, n: u32, body: &[u8]) -> Result<String, S3Error> {
        let mut req = Req::new("UploadPart", Method::Put, Some(key))
            .query("partNumber", n.to_string())
            .query("uploadId", id)
            .body(body)
            .header("content-md5", content_md5(body));
        req.timeout = Duration::from_secs(300);
        let r = self.send(&req, &[])?;
        r.etag.ok_or(S3Error::BadResponse {
            op: "UploadPart",
            what: "no ETag",
        })
    }

    /// Part `n` of an upload as a server-side copy of `start..end` of `src`, pinned to `pin`.
    pub fn upload_part_copy(
        &self,
        key: &str,
        id: &str,
        n: u32,
        src: &str,
        pin: &Pin,
        (start, end): (u64, u64),
    ) -> Result<String, S3Error> {
        let mut source = format!("/{}/{}", self.bucket(), encode_key(src));
        if let Some(v) = &pin.version {
            source.push_str("?versionId=");
            source.push_str(&encode_key(v));
        }
        let mut req = Req::new("UploadPartCopy", Method::Put, Some(key))
            .query("partNumber", n.to_string())
            .query("uploadId", id)
            .header("x-amz-copy-source", source)
            .header("x-amz-copy-source-if-match", pin.etag.clone())
            .header(
                "x-amz-copy-source-range",
                format!("bytes={start}-{}", end - 1),
            );
        // Copying a large range takes the server a while before it answers.
        req.timeout = Duration::from_secs(900);
        let r = self.send(&req, &[])?;
        xml::copy_part_etag(&r.body).ok_or(S3Error::BadResponse {
            op: "UploadPartCopy",
            what: "no ETag in CopyPartResult",
        })
    }

    /// Completes an upload from its parts, only if the object's ETag is still `if_match`.
    pub fn complete(
        &self,
        key: &str,
        id: &str,
        parts: &[(u32, String)],
        if_match: &str,
    ) -> Result<(Written, bool), S3Error> {
        let body = xml::complete_body(parts);
        let mut req = Req::new("CompleteMultipartUpload", Method::Post, Some(key))
            .query("uploadId", id)
            .body(body.as_bytes())
            .header("if-match", if_match.to_string());
        req.timeout = Duration::from_secs(900);
        let r = self.send(&req, &[])?;
        let etag = xml::complete_etag(&r.body).or(r.etag);
        Ok((
            Written {
                etag,
                version: r.version,
                date: r.date.as_deref().and_then(parse_http_date),
            },
            r.retried,
        ))
    }

    /// Aborts an upload; an upload already gone is not an error.
    pub fn abort(&self, key: &str, id: &str) -> Result<(), S3Error> {
        let req = Req::new("AbortMultipartUpload", Method::Delete, Some(key)).query("uploadId", id);
        match self.send(&req, &[]) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes `key`, or exactly one version of it.
    pub fn delete(&self, key: &str, version: Option<&str>) -> Result<(), S3Error> {
        let mut req = Req::new("DeleteObject", Method::Delete, Some(key));
        if let Some(v) = version {
            req = req.query("versionId", v);
        }
        match self.send(&req, &[]) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One page of ListObjectsV2.
    pub fn list(
        &self,
        prefix: &str,
        token: Option<&str>,
        max: Option<u32>,
    ) -> Result<xml::ObjectsPage, S3Error> {
        let mut req = Req::new("ListObjectsV2", Method::Get, None);
        if let Some(t) = token {
            req = req.query("continuation-token", t);
        }
        req = req.query("list-type", "2");
        if let Some(m) = max {
            req = req.query("max-keys", m.to_string());
        }
        req = req.query("prefix", prefix);
        let r = self.send(&req, &[])?;
        xml::objects_page(&r.body).ok_or(S3Error::BadResponse {
            op: "ListObjectsV2",
            what: "an unreadable ListBucketResult",
        })
    }

    /// The server's clock (`Date` of a cheap request), and whether the bucket answers.
    pub fn probe(&self, prefix: &str) -> Result<Option<Timestamp>, S3Error> {
        let req = Req::new("ListObjectsV2", Method::Get, None)
            .query("list-type", "2")
            .query("max-keys", "1")
            .query("prefix", prefix);
        let r = self.send(&req, &[])?;
        Ok(r.date.as_deref().and_then(parse_http_date))
    }

    /// One page of ListObjectVersions.
    pub fn list_versions(
        &self,
        prefix: &str,
        key_marker: Option<&str>,
        version_marker: Option<&str>,
    ) -> Result<xml::VersionsPage, S3Error> {
        let mut req = Req::new("ListObjectVersions", Method::Get, None);
        if let Some(k) = key_marker {
            req = req.query("key-marker", k);
        }
        req = req.query("prefix", prefix);
        if let Some(v) = version_marker {
            req = req.query("version-id-marker", v);
        }
        req = req.query("versions", "");
        let r = self.send(&req, &[])?;
        xml::versions_page(&r.body).ok_or(S3Error::BadResponse {
            op: "ListObjectVersions",
            what: "an unreadable ListVersionsResult",
        })
    }

    /// One page of ListMultipartUploads.
    pub fn list_uploads(
        &self,
        prefix: &str,
        key_marker: Option<&str>,
        upload_marker: Option<&str>,
    ) -> Result<xml::UploadsPage, S3Error> {
        let mut req = Req::new("ListMultipartUploads", Method::Get, None);
        if let Some(k) = key_marker {
            req = req.query("key-marker", k);
        }
        req = req.query("prefix", prefix);
        if let Some(u) = upload_marker {
            req = req.query("upload-id-marker", u);
        }
        req = req.query("uploads", "");
        let r = self.send(&req, &[])?;
        xml::uploads_page(&r.body).ok_or(S3Error::BadResponse {
            op: "ListMultipartUploads",
            what: "an unreadable ListMultipartUploadsResult",
        })
    }

    /// Every multipart upload in progress under `prefix`.
    pub fn all_uploads(&self, prefix: &str) -> Result<Vec<xml::Upload>, S3Error> {
        let mut out = Vec::new();
        let (mut km, mut um) = (None::<String>, None::<String>);
        loop {
            let page = self.list_uploads(prefix, km.as_deref(), um.as_deref())?;
            out.extend(page.uploads);
            if !page.truncated || out.len() > 100_000 {
                return Ok(out);
            }
            km = page.next_key_marker;
            um = page.next_upload_id_marker;
            if km.is_none() {
                return Ok(out);
            }
        }
    }
}

/// Bucket administration, for setting up tests and tools (the re-wrap needs none of it).
impl Client {
    /// Creates the bucket (an existing one of ours is not an error).
    pub fn create_bucket(&self) -> Result<(), S3Error> {
        let req = Req::new("CreateBucket", Method::Put, None);
        match self.send(&req, &[]) {
            Ok(_) => Ok(()),
            Err(S3Error::Status { code, .. }) if code == "BucketAlreadyOwnedByYou" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Turns versioning on (or suspends it).
    pub fn set_versioning(&self, enabled: bool) -> Result<(), S3Error> {
        let status = if enabled { "Enabled" } else { "Suspended" };
        let body = format!(
            "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>{status}</Status></VersioningConfiguration>"
        );
        let req = Req::new("PutBucketVersioning", Method::Put, None)
            .query("versioning", "")
            .body(body.as_bytes())
            .header("content-md5", content_md5(body.as_bytes()));
        self.send(&req, &[]).map(drop)
    }
}

/// The `Content-MD5` of a body: the server refuses a part damaged on the way.
pub fn content_md5(body: &[u8]) -> String {
    use base64::Engine as _;
    use md5::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

/// A key percent-encoded for `x-amz-copy-source` (`/` kept).
pub fn encode_key(key: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(key, SET).to_string()
}

/// `bytes a-b/total` -> total.
fn parse_content_range_total(cr: &str) -> Option<u64> {
    cr.rsplit_once('/').and_then(|(_, t)| t.trim().parse().ok())
}

/// An HTTP date (`Tue, 01 Dec 2026 22:42:26 GMT`).
pub fn parse_http_date(s: &str) -> Option<Timestamp> {
    jiff::fmt::rfc2822::parse(s).ok().map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_dates_and_copy_sources() {
        assert_eq!(parse_content_range_total("bytes 0-9/1234"), Some(1234));
        assert_eq!(parse_content_range_total("bytes 0-9/*"), None);
        assert!(parse_http_date("Tue, 01 Dec 2026 22:42:26 GMT").is_some());
        assert_eq!(encode_key("a b/ü+x.age"), "a%20b/%C3%BC%2Bx.age");
        // RFC 1864's example digest shape: base64 of 16 bytes.
        assert_eq!(content_md5(b"").len(), 24);
    }

    /// A self-signed certificate for 127.0.0.1 (P-256, valid until 2126) and its key, made
    /// with `openssl req -x509 -newkey ec -addext subjectAltName=IP:127.0.0.1
    /// -addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=serverAuth`:
    /// a well-formed server certificate that no public root vouches for. Test-only.
    const SELF_SIGNED_CERT: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBvjCCAWSgAwIBAgIUBcmILQw4F5ItqIEseJE0p3J0vkwwCgYIKoZIzj0EAwIw\n\
IjEgMB4GA1UEAwwXcHF3cmFwLXRlc3Qtc2VsZi1zaWduZWQwIBcNMjYxMjAyMDQx\n\
NjAzWhgPMjEyNjExMDgwNDE2MDNaMCIxIDAeBgNVBAMMF3Bxd3JhcC10ZXN0LXNl\n\
bGYtc2lnbmVkMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEjUvTtvrT8wbj4LH1\n\
qtUvpmNirVfH0shI8AyIA5gn8Cv++sCHmSzwIVNKwJdElJ7uHt2cP/cOUcIdPiLI\n\
r8bY2aN2MHQwHQYDVR0OBBYEFE4sg1HPjjk1meKm0BRamiDKTSamMB8GA1UdIwQY\n\
MBaAFE4sg1HPjjk1meKm0BRamiDKTSamMA8GA1UdEQQIMAaHBH8AAAEwDAYDVR0T\n\
AQH/BAIwADATBgNVHSUEDDAKBggrBgEFBQcDATAKBggqhkjOPQQDAgNIADBFAiAe\n\
/0DTZv/hBApXo6sNiA9HJMbEs0Z1i6XyVYu02URjbwIhALhi8JFjIEXssaS29c3f\n\
04lL+XXxy9IM5bz0tVSGr2bR\n\
-----END CERTIFICATE-----";
    const SELF_SIGNED_KEY: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgTaAowYUCIltn4izy\n\
WIn3ETDASb/rYgynypfuZ8emTbShRANCAASNS9O2+tPzBuPgsfWq1S+mY2KtV8fS\n\
yEjwDIgDmCfwK/76wIeZLPAhU0rAl0SUnu4e3Zw/9w5Rwh0+IsivxtjZ\n\
-----END PRIVATE KEY-----";

    /// An `https://` endpoint gets TLS that verifies the server: a loopback server with a
    /// self-signed certificate is refused, the error naming the certificate, and the client
    /// offered the hybrid X25519MLKEM768 key exchange, which only the aws-lc-rs provider has.
    #[test]
    fn https_refuses_an_unknown_certificate_and_offers_hybrid_key_exchange() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let cert = CertificateDer::from_pem_slice(SELF_SIGNED_CERT.as_bytes()).expect("cert");
        let key = PrivateKeyDer::from_pem_slice(SELF_SIGNED_KEY.as_bytes()).expect("key");
        let server_config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config"),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("local address").port();
        let server = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().expect("accept");
            tcp.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("read timeout");
            let mut conn = rustls::ServerConnection::new(server_config).expect("connection");
            // Runs until the client aborts the handshake (or, wrongly, completes it).
            let outcome = conn.complete_io(&mut tcp).map(|_| ());
            let group = conn.negotiated_key_exchange_group().map(|g| g.name());
            // The next connection: the test's sentinel, unless the client tried again.
            let (mut next, _) = listener.accept().expect("accept");
            let mut first = [0u8; 1];
            let _ = std::io::Read::read(&mut next, &mut first);
            (outcome, group, first[0])
        });

        let endpoint = Url::parse(&format!("https://127.0.0.1:{port}/")).expect("endpoint");
        let creds = Provider::fixed(super::super::creds::Credentials::new(
            "AKIDEXAMPLE".to_string(),
            "not-a-secret".to_string(),
            None,
        ));
        // Patient about everything else: a refused certificate is still not retried.
        let patient = Retry {
            attempts: 5,
            base: Duration::ZERO,
            cap: Duration::ZERO,
        };
        let client = Client::new(
            endpoint,
            UrlStyle::Path,
            "bucket",
            "us-east-1",
            creds,
            1,
            patient,
        )
        .expect("client");
        let err = client
            .get("key", None, None)
            .expect_err("a certificate no trusted root signed must be refused");
        let shown = err.to_string();
        assert!(
            matches!(err, S3Error::Transport { .. })
                && shown.contains("invalid peer certificate")
                && shown.contains("UnknownIssuer"),
            "{shown}"
        );

        let mut sentinel = std::net::TcpStream::connect(("127.0.0.1", port)).expect("sentinel");
        std::io::Write::write_all(&mut sentinel, b"S").expect("sentinel byte");
        let (outcome, group, next) = server.join().expect("server thread");
        assert!(outcome.is_err(), "the handshake must not complete");
        assert_eq!(group, Some(rustls::NamedGroup::X25519MLKEM768));
        assert_eq!(
            next, b'S',
            "the refused certificate was retried (a TLS record came next)"
        );
    }
}
